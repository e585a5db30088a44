//! The engine: schedules a workflow's DAG on a ready queue and runs each node.
//!
//! * [`plan`]: a validated workflow compiled once per run (templates, settings, priorities);
//! * [`launch`]: starting and resuming runs around the scheduler (lock, run directory, log);
//! * [`machine`]: the scheduler's decisions (ready queue, trigger rules, `when`, retries,
//!   gates, cancellation, how a run ends) as a pure state machine;
//! * [`scheduler`]: drives the machine on tokio: records events, runs attempts, polls gates;
//! * [`runner`]: the seam between the scheduler and what a node does; [`runners`]: which runner
//!   does each kind of node ([`bash`] for `bash` nodes, [`agent`] for `prompt` and `command`);
//! * [`agent_slots`]: the machine-wide cap on agent sessions running at once;
//!   [`api_retry`]: the agent CLI's API retries, recorded as they happen;
//! * [`context`]: the template context and the `REINS_*` environment of a node;
//! * [`recorder`]: recording events into the log, the live state and the progress view;
//! * [`cancel`]: graceful and forced cancellation (what [`crate::process`], which runs the
//!   child processes themselves, is told to stop).
//! * [`worktree`]: fresh git worktrees for isolated runs.

pub(crate) mod agent;
pub(crate) mod agent_slots;
pub(crate) mod api_retry;
pub(crate) mod approval;
pub(crate) mod bash;
pub(crate) mod budget;
pub(crate) mod cancel;
pub mod context;
pub(crate) mod fanout;
pub mod launch;
pub(crate) mod loops;
pub mod machine;
pub mod plan;
pub(crate) mod recorder;
pub(crate) mod runner;
pub(crate) mod runners;
pub(crate) mod scheduler;
pub(crate) mod subflow;
pub(crate) mod trigger;
pub(crate) mod worktree;

pub use cancel::{CancelLevel, CancelToken, Canceller};
pub use launch::{resume, start, LaunchError, LaunchErrorKind, Prepared, Report, Resumed};
pub use plan::Plan;
pub use recorder::{Observer, Recorder};
pub use runner::{BoxFuture, Job, Limits, NodeRunner, Outcome, SessionChoice};
pub use runners::{RunnerKind, Runners};
pub use scheduler::Options;
