//! Durable runs: `.reins/runs/<id>/` with an append-only event log as the only run state.
//!
//! * [`id`]: run ids that sort by time;
//! * [`run`]: the run directory and `run.json`, the frozen workflow;
//! * [`event`]: the events of `events.jsonl`;
//! * [`log`]: appending them durably and reading them back tolerantly;
//! * [`state`]: [`RunState`], the fold over the events;
//! * [`lock`]: the working tree's run lock;
//! * [`index`]: listing runs and resolving `RUN` arguments;
//! * [`safe_fs`]: opening files of a run directory without following a symlink.

pub mod event;
pub mod id;
pub mod index;
pub mod lock;
pub mod log;
pub mod run;
pub mod safe_fs;
pub mod state;
pub mod time;

pub use event::{Event, FanOutItem, IterationStatus, NodeStatus, Record, RunStatus, Usage};
pub use index::{ResolveError, RunSummary};
pub use lock::{LockError, Owner, RunLock};
pub use log::EventLog;
pub use run::{
    CreateError, FrozenFile, Manifest, ParentLink, RunDir, Store, Swept, Tampered, STAGED_MIN_AGE,
};
pub use state::{NodeState, RunState, Truncation};
