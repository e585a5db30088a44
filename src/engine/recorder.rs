//! [`Recorder`]: the one place where a run's events are recorded.
//!
//! Recording an event appends it to the log, folds it into the live [`RunState`] and shows it
//! to the [`Observer`] (the progress view, the `--json` stream), in that order and under one
//! lock, so the three never disagree. Runners record their own events (`agent_session`,
//! `loop_iteration`, `approval_requested`...) through the same handle.

use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::store::{Event, EventLog, Record, RunState};

/// Sees every event as it is recorded, with the state after it.
pub trait Observer: Send {
    /// Called once per event, in order.
    fn on_event(&mut self, record: &Record, state: &RunState);
}

/// Records events; cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    log: EventLog,
    state: RunState,
    observer: Box<dyn Observer>,
    error: Option<String>,
}

impl Recorder {
    /// Records into `log`, starting from `state` (what the log already holds).
    pub fn new(log: EventLog, state: RunState, observer: Box<dyn Observer>) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                log,
                state,
                observer,
                error: None,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records an event. The state and the observer see it even if the log cannot be written;
    /// the first write error is kept (see [`Recorder::error`]) and the run stops.
    pub fn record(&self, event: Event) -> Record {
        let mut inner = self.lock();
        let record = match inner.log.append(event.clone()) {
            Ok(r) => r,
            Err(e) => {
                inner.error.get_or_insert_with(|| e.to_string());
                Record {
                    seq: inner.state.last_seq + 1,
                    ts: crate::store::time::now(),
                    event,
                }
            }
        };
        let Inner {
            state, observer, ..
        } = &mut *inner;
        state.apply(&record);
        observer.on_event(&record, state);
        record
    }

    /// Reads the live state.
    pub fn with_state<R>(&self, f: impl FnOnce(&RunState) -> R) -> R {
        f(&self.lock().state)
    }

    /// A copy of the live state.
    pub fn state(&self) -> RunState {
        self.lock().state.clone()
    }

    /// The first error writing the log, if any.
    pub fn error(&self) -> Option<String> {
        self.lock().error.clone()
    }

    /// Waits until every recorded event is on disk.
    pub fn flush(&self) -> io::Result<()> {
        let inner = self.lock();
        inner.log.flush()
    }
}
