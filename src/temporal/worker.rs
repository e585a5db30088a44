//! `reins worker`: a Temporal worker in a checkout of the repository.
//!
//! It polls two task queues: the shared one (workflow tasks of every run, and placements) and
//! its own, `<shared>@<host>-<checkout digest>`, where the activities of the runs placed on it
//! go (node attempts, fan-out listings, records, answers). The own queue's name depends only on the host and the checkout's path, so a worker
//! restarted in the same checkout picks up exactly the work its predecessor left.

use std::future::Future;
use std::sync::Arc;

use sha2::Digest;
use temporalio_sdk::{Runtime, Worker, WorkerOptions};

use super::activities::{Activities, Host};
use super::client::connect;
use super::config::Endpoint;
use super::workflow::ReinsRun;
use super::TemporalError;

/// The own task queue of a worker on `host` in the checkout at `root`.
pub(crate) fn own_queue(shared: &str, host: &str, root: &std::path::Path) -> String {
    let digest = sha2::Sha256::digest(root.as_os_str().as_encoded_bytes());
    let short: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("{shared}@{host}-{short}")
}

/// Runs the worker until `stop` completes (then it shuts down: running activities finish or
/// are retried elsewhere) or a worker fails. `ready` is called once it is connected and about
/// to poll.
pub(crate) async fn run(
    endpoint: &Endpoint,
    host: Arc<Host>,
    ready: impl FnOnce(),
    stop: impl Future<Output = ()>,
) -> Result<(), TemporalError> {
    let runtime = Runtime::from_current_tokio(Default::default())
        .map_err(|e| TemporalError::new(format!("cannot start the Temporal runtime: {e}")))?;
    let identity = format!("reins-worker {}@{}", std::process::id(), host.host);
    let client = connect(endpoint, &identity).await?;
    let make = |queue: &str, shared: bool| {
        let mut options = WorkerOptions::new(queue.to_string());
        let options = if shared {
            options = options.register_workflow::<ReinsRun>().map_err(|e| {
                TemporalError::new(format!("cannot register the reins workflow: {e}"))
            })?;
            options
        } else {
            options
        };
        let options = options
            .register_activities(Activities { host: host.clone() })
            .client_identity_override(identity.clone())
            // A dead worker's cached workflows move to another worker after 3 s, not 10: the
            // recovery after a kill waits for this as well as for the heartbeat timeout.
            .sticky_queue_schedule_to_start_timeout(std::time::Duration::from_secs(3))
            // Heartbeats reach the server within a second, and with them cancellations.
            .max_heartbeat_throttle_interval(std::time::Duration::from_secs(1))
            .default_heartbeat_throttle_interval(std::time::Duration::from_secs(1))
            .build();
        Worker::new(&runtime, client.clone(), options)
            .map_err(|e| TemporalError::new(format!("cannot make a worker for `{queue}`: {e}")))
    };
    let mut shared = make(&endpoint.task_queue, true)?;
    let mut own = make(&host.queue, false)?;
    let stop_shared = shared.shutdown_handle();
    let stop_own = own.shutdown_handle();
    ready();
    let ran = async {
        let (a, b) = tokio::join!(shared.run(), own.run());
        a.and(b)
    };
    tokio::pin!(ran);
    tokio::select! {
        r = &mut ran => {
            return r.map_err(|e| TemporalError::new(format!("the worker stopped: {e}")));
        }
        _ = stop => {
            stop_shared();
            stop_own();
        }
    }
    // A graceful shutdown waits for the server to hear of it; with the server gone it would
    // wait forever. Node attempts still running are retried when a worker for this checkout
    // returns, so the worker need not wait long.
    match tokio::time::timeout(SHUTDOWN_LIMIT, ran).await {
        Ok(r) => r.map_err(|e| TemporalError::new(format!("the worker stopped: {e}"))),
        Err(_) => {
            tracing::warn!(
                "the worker did not shut down within {SHUTDOWN_LIMIT:?}; leaving without waiting for the server"
            );
            Ok(())
        }
    }
}

/// How long a stopping worker waits for its graceful shutdown.
pub(crate) const SHUTDOWN_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);
