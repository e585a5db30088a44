//! Cancellation of a run: the first request is graceful (TERM, grace, KILL), the second forces.

use std::sync::Arc;

use tokio::sync::watch;

/// How hard a run is being stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CancelLevel {
    /// Not cancelled.
    None,
    /// Stop: start nothing new, TERM running process groups, KILL them after a grace period.
    Graceful,
    /// Stop now: KILL every running process group.
    Force,
}

/// The side that cancels (signal handlers, `reins cancel`).
#[derive(Debug, Clone)]
pub struct Canceller {
    tx: Arc<watch::Sender<CancelLevel>>,
}

/// The side that watches; cheap to clone into every node.
#[derive(Debug, Clone)]
pub struct CancelToken {
    rx: watch::Receiver<CancelLevel>,
}

impl Canceller {
    /// A new pair.
    pub fn new() -> (Canceller, CancelToken) {
        let (tx, rx) = watch::channel(CancelLevel::None);
        (Canceller { tx: Arc::new(tx) }, CancelToken { rx })
    }

    /// Raises the level (never lowers it).
    pub fn raise(&self, level: CancelLevel) {
        self.tx.send_if_modified(|l| {
            if level > *l {
                *l = level;
                true
            } else {
                false
            }
        });
    }

    /// Graceful on the first call, forced on the next: what Ctrl-C does.
    pub fn escalate(&self) -> CancelLevel {
        let next = match *self.tx.borrow() {
            CancelLevel::None => CancelLevel::Graceful,
            _ => CancelLevel::Force,
        };
        self.raise(next);
        next
    }

    /// The current level.
    pub fn level(&self) -> CancelLevel {
        *self.tx.borrow()
    }

    /// A token watching this canceller.
    pub fn token(&self) -> CancelToken {
        CancelToken {
            rx: self.tx.subscribe(),
        }
    }
}

impl CancelToken {
    /// A token that is never cancelled.
    pub fn never() -> CancelToken {
        Canceller::new().1
    }

    /// The current level.
    pub fn level(&self) -> CancelLevel {
        *self.rx.borrow()
    }

    /// Waits until the level is at least `level`, and returns the level reached.
    pub async fn at_least(&self, level: CancelLevel) -> CancelLevel {
        let mut rx = self.rx.clone();
        let reached = rx.wait_for(|l| *l >= level).await.map(|l| *l);
        match reached {
            Ok(l) => l,
            Err(_) => std::future::pending().await,
        }
    }
}

impl crate::process::StopRequest for CancelToken {
    async fn requested(&self) -> bool {
        self.at_least(CancelLevel::Graceful).await == CancelLevel::Force
    }

    async fn forced(&self) {
        self.at_least(CancelLevel::Force).await;
    }
}
