//! Keeping up with the event logs.
//!
//! [`Runs`] caches each run's summary and reads a run's log again only when the file changed
//! (its length or modification time). [`watch`] looks at every log every [`POLL`] and
//! broadcasts the list item of each run that changed: the run list's live stream. A run's own
//! stream ([`run_events`]) tails its log and sends each record as it is committed, numbered
//! by its `seq`, so a browser that reconnects (`Last-Event-ID`) gets exactly what it missed.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::stream::{self, Stream};
use tokio::sync::broadcast;

use super::Shared;
use crate::store::log::Tail;
use crate::store::{RunState, RunStatus, RunSummary, Store};

/// How often the logs are looked at.
pub(crate) const POLL: Duration = Duration::from_millis(50);

#[derive(Clone, PartialEq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
}

struct Cached {
    stamp: Stamp,
    summary: RunSummary,
}

/// The summaries of a store's runs, kept up to date.
pub(crate) struct Runs {
    store: Store,
    cache: Mutex<HashMap<String, Cached>>,
    changes: broadcast::Sender<String>,
}

impl Runs {
    /// An empty cache over `store`.
    pub(crate) fn new(store: Store) -> Self {
        Self {
            store,
            cache: Mutex::new(HashMap::new()),
            changes: broadcast::channel(1024).0,
        }
    }

    /// Every run, fresh, oldest first.
    pub(crate) fn all(&self) -> Vec<RunSummary> {
        let (runs, _) = self.refresh();
        runs
    }

    /// One run, fresh; `None` when it does not exist.
    pub(crate) fn one(&self, id: &str) -> Option<RunSummary> {
        if !crate::store::id::is_run_id(id) {
            return None;
        }
        let run = self.store.run(id);
        if !run.path.is_dir() {
            return None;
        }
        let stamp = stamp(&run.events_path());
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        Some(fresh(&self.store, &mut cache, id, stamp).0)
    }

    /// Re-reads what changed; returns every run and the ids that changed.
    fn refresh(&self) -> (Vec<RunSummary>, Vec<String>) {
        let ids = self.store.run_ids().unwrap_or_default();
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.retain(|id, _| ids.binary_search(id).is_ok());
        let mut runs = Vec::with_capacity(ids.len());
        let mut changed = Vec::new();
        for id in &ids {
            let stamp = stamp(&self.store.run(id).events_path());
            let (summary, did_change) = fresh(&self.store, &mut cache, id, stamp);
            if did_change {
                changed.push(id.clone());
            }
            runs.push(summary);
        }
        runs.sort_by_key(|r| (r.started_at(), r.run.id.clone()));
        (runs, changed)
    }

    /// Ids of the runs that change from now on.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<String> {
        self.changes.subscribe()
    }
}

fn stamp(path: &std::path::Path) -> Stamp {
    match std::fs::metadata(path) {
        Ok(m) => Stamp {
            len: m.len(),
            modified: m.modified().ok(),
        },
        Err(_) => Stamp {
            len: 0,
            modified: None,
        },
    }
}

/// The summary of `id`, read again when its log changed; whether it changed.
fn fresh(
    store: &Store,
    cache: &mut HashMap<String, Cached>,
    id: &str,
    stamp: Stamp,
) -> (RunSummary, bool) {
    if let Some(c) = cache.get_mut(id) {
        if c.stamp == stamp {
            // Same log; only whether a process still executes it can have changed.
            if c.summary.state.status == RunStatus::Running {
                let status = c.summary.state.status_given(c.summary.run.is_live());
                if status != c.summary.status {
                    c.summary.status = status;
                    return (c.summary.clone(), true);
                }
            }
            return (c.summary.clone(), false);
        }
    }
    let run = store.run(id);
    let summary = store.summary(&run).unwrap_or_else(|_| RunSummary {
        manifest: None,
        state: RunState::new(),
        status: RunStatus::Interrupted,
        run: run.clone(),
    });
    cache.insert(
        id.to_string(),
        Cached {
            stamp,
            summary: summary.clone(),
        },
    );
    (summary, true)
}

/// Looks at every log every [`POLL`] and announces the runs that changed.
pub(crate) async fn watch(app: Shared) {
    let mut closing = app.closing.clone();
    let mut first = true;
    loop {
        let started = Instant::now();
        let runs = app.clone();
        let changed = tokio::task::spawn_blocking(move || runs.runs.refresh().1)
            .await
            .unwrap_or_default();
        if !first {
            for id in changed {
                let _ = app.runs.changes.send(id);
            }
        }
        first = false;
        // Never more than a tenth of a core, however many runs there are.
        let pause = POLL.max(started.elapsed() * 10);
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = closing.changed() => return,
        }
    }
}

/// The run list's stream: a `run` event with the list item of each run that changes.
pub(crate) fn runs_stream(app: Shared) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let changes = app.runs.subscribe();
    let closing = app.closing.clone();
    let stream = stream::unfold(
        (app, changes, closing),
        |(app, mut changes, mut closing)| async move {
            loop {
                if *closing.borrow() {
                    return None;
                }
                let id = tokio::select! {
                    got = changes.recv() => got,
                    _ = closing.changed() => return None,
                };
                let id = match id {
                    Ok(id) => id,
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        // Too much at once: tell the page to read the whole list again.
                        let event = SseEvent::default().event("reload").data("{}");
                        return Some((Ok(event), (app, changes, closing)));
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                };
                let Some(summary) = app.runs.one(&id) else {
                    continue;
                };
                let item = super::api::list_item(&summary, SystemTime::now());
                let event = SseEvent::default().event("run").data(item.to_string());
                return Some((Ok(event), (app, changes, closing)));
            }
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::default())
}

struct Follow {
    app: Shared,
    id: String,
    tail: Tail,
    after: u64,
    state: RunState,
    status: Option<RunStatus>,
    pending: std::collections::VecDeque<SseEvent>,
    checked: Instant,
}

/// A run's stream: each event record (`record`, with `id:` its `seq`) after `after`, and a
/// `status` event whenever the run's status changes without an event (its process died).
pub(crate) fn run_events(
    app: Shared,
    id: String,
    after: u64,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let tail = Tail::new(&app.store.run(&id).events_path());
    let follow = Follow {
        app,
        id,
        tail,
        after,
        state: RunState::new(),
        status: None,
        pending: Default::default(),
        checked: Instant::now(),
    };
    let stream = stream::unfold(follow, |mut f| async move {
        let mut closing = f.app.closing.clone();
        loop {
            if let Some(event) = f.pending.pop_front() {
                return Some((Ok(event), f));
            }
            if *closing.borrow() {
                return None;
            }
            for record in f.tail.poll().unwrap_or_default() {
                f.state.apply(&record);
                if record.seq <= f.after {
                    continue;
                }
                f.after = record.seq;
                let data = serde_json::to_string(&record).unwrap_or_default();
                f.pending.push_back(
                    SseEvent::default()
                        .event("record")
                        .id(record.seq.to_string())
                        .data(data),
                );
            }
            if f.pending.is_empty() && (f.status.is_none() || f.checked.elapsed() > POLL * 10) {
                f.checked = Instant::now();
                let live = f.app.store.run(&f.id).is_live();
                let status = f.state.status_given(live);
                if f.status != Some(status) {
                    f.status = Some(status);
                    let data = serde_json::json!({ "status": status, "live": live });
                    f.pending
                        .push_back(SseEvent::default().event("status").data(data.to_string()));
                }
            }
            if f.pending.is_empty() {
                tokio::select! {
                    _ = tokio::time::sleep(POLL) => {}
                    _ = closing.changed() => return None,
                }
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
