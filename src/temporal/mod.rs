//! Running reins workflows on Temporal: workers on many hosts, gates as workflow updates.
//!
//! A run submitted with `reins run --temporal` is a Temporal workflow execution whose id is the
//! reins run id ([`workflow::ReinsRun`]). The workflow is the run's scheduler: it drives
//! [`crate::engine::machine`], the decision machine the local scheduler drives, built from the
//! frozen workflow text the submission carries. Its first activity,
//! [`activities::Activities::place`], runs on the *shared* task queue: whichever worker takes it
//! pins the run to that worker's own queue, because the run's working tree, artifacts and agent
//! sessions live on that host. Every later activity runs there:
//!
//! * `open` creates the run in the worker's checkout (`run.json`, `run_started`), or takes it
//!   up again after a restart or a pause (`run_resumed`);
//! * `node` runs one attempt of one node (bash, an agent turn, a gate looked at) with the
//!   engine's own task and runner, heartbeating; a cancellation from Temporal kills the node's
//!   process group. A loop's attempt is one `node` activity per iteration: each runs the next
//!   iteration and says whether the loop goes on (`continues`: the workflow runs the next);
//! * `expand` lists a fan-out's items; `record` records the events of the machine's decisions
//!   (skips, a fan-out settling, the run pausing or ending);
//! * `answer` writes a gate's answer with the same code as `reins approve` (first answer wins,
//!   never implicit).
//!
//! Each is idempotent against the worker's event log (see [`activities`]). The workflow waits at
//! gates for an answer (a Temporal *update*, so the one who answers learns at once whether the
//! answer was taken) or for the gate's timeout (a durable timer), and shows each waiting gate in
//! its memo, its current details and the `status` query.
//!
//! * [`config`]: where the server is (`--temporal`, `REINS_TEMPORAL`, the user config), TLS
//!   and API keys;
//! * [`client`]: submit, follow, answer, cancel, status;
//! * [`worker`]: `reins worker`.

#[cfg(feature = "temporal")]
pub(crate) mod activities;
#[cfg(feature = "temporal")]
pub(crate) mod client;
pub(crate) mod config;
#[cfg(feature = "temporal")]
pub(crate) mod types;
#[cfg(feature = "temporal")]
pub(crate) mod worker;
#[cfg(feature = "temporal")]
pub(crate) mod workflow;

pub(crate) use config::Endpoint;

/// The shared task queue when `--task-queue` is not given.
pub(crate) const DEFAULT_TASK_QUEUE: &str = "reins";

/// Why talking to Temporal failed.
#[cfg(feature = "temporal")]
#[derive(Debug)]
pub(crate) struct TemporalError {
    /// What failed, in words.
    pub message: String,
}

#[cfg(feature = "temporal")]
impl TemporalError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

#[cfg(feature = "temporal")]
impl std::fmt::Display for TemporalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

#[cfg(feature = "temporal")]
impl std::error::Error for TemporalError {}
