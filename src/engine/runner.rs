//! The seam between the scheduler and what a node does.
//!
//! The scheduler decides *when* a node runs (dependencies, trigger rule, `when`, a free slot),
//! records `node_started` for each attempt, retries with backoff, and records how the node
//! ended. A [`NodeRunner`] does *one attempt* of one kind of node and returns an [`Outcome`].
//! [`super::runners::Runners`] maps node kinds to runners (bash, agent, approval; loops wrap the
//! runner of their body, below).
//!
//! ## Loop bodies
//!
//! A `loop` node has no runner of its own in the map: [`super::runners::Runners::get`] wraps the runner of
//! its body's kind (bash, or agent for `prompt`/`command`) in a
//! [`super::loops::LoopRunner`], and a loop whose body kind has no runner is refused like any
//! other node. The loop runner calls the body runner once per iteration with a [`Job`] for the
//! *loop node* (same `index`, so `plan.workflow.nodes[index].kind` is `NodeKind::Loop`) where:
//! * `plan.render(index, TemplateField::Body, &context)` renders the body (prompt, command text or
//!   script) — the same call a plain node makes;
//! * `context` also holds `loop.iteration` (from 1) and `loop.previous` (the previous
//!   iteration's output, empty at first); `env` has `REINS_LOOP_ITERATION`;
//! * `iteration` is `Some(n)`, and `dir` is `nodes/<id>/iteration-<n>/`;
//! * `session` is [`SessionChoice::Fresh`] with `fresh: true`, else
//!   [`SessionChoice::Sticky`] of the node's `session:` name (or `loop-<id>`), so iterations
//!   continue one conversation.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value as Json;

use super::cancel::CancelToken;
use super::context::RunInfo;
use super::plan::Plan;
use super::recorder::Recorder;
use crate::process::Watchdog;
use crate::store::{NodeState, Usage};

/// A boxed future, as runners return them.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// How one attempt of a node ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// It succeeded with this output.
    Success {
        /// The node's output (`{{nodes.ID.output}}`).
        output: String,
        /// Tokens and cost, for agents.
        usage: Option<Usage>,
    },
    /// It failed.
    Failure {
        /// What went wrong, in words.
        error: String,
        /// The exit code, when a process exited.
        exit_code: Option<i32>,
        /// What it produced before failing.
        output: String,
        /// Tokens and cost, for agents.
        usage: Option<Usage>,
        /// False when another attempt cannot help (a template that does not render, a
        /// missing program, a rejected gate): `retries` are not used.
        retryable: bool,
    },
    /// An approval gate waits for a human: the branch behind it pauses; the rest of the run
    /// goes on, then reins exits 3. The runner records `approval_requested` itself.
    Waiting,
    /// The run was cancelled while it ran.
    Cancelled,
    /// A loop ran the iterations [`Job::new_iterations`] allowed and goes on: the attempt is
    /// not over (nothing settles the node); the next call runs the next iteration.
    Continues {
        /// Tokens and cost of this attempt's iterations so far.
        usage: Option<Usage>,
    },
}

impl Outcome {
    /// A failure that retrying cannot fix.
    pub fn fatal(error: impl Into<String>) -> Self {
        Outcome::Failure {
            error: error.into(),
            exit_code: None,
            output: String::new(),
            usage: None,
            retryable: false,
        }
    }
}

/// Process-level settings shared by runners.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Time between TERM and KILL when stopping a process group.
    pub grace: Duration,
    /// Most bytes of stdout kept as a node's output.
    pub output_limit: usize,
    /// The machine-wide cap on agent sessions; `None`: no cap.
    pub agent_slots: Option<super::agent_slots::AgentSlots>,
}

/// Everything one attempt of a node needs.
#[derive(Clone)]
pub struct Job {
    /// The node's index in the plan.
    pub index: usize,
    /// The node's id.
    pub node: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The workflow, its templates and settings.
    pub plan: Arc<Plan>,
    /// The run.
    pub run: Arc<RunInfo>,
    /// The template context (render with `plan.render(job.index, field, &job.context)`).
    pub context: Json,
    /// Environment for the node's processes: the workflow's `env:`, the node's `env:`, then
    /// the `REINS_*` variables.
    pub env: Vec<(String, String)>,
    /// Working directory: the working tree, or the node's `cwd`.
    pub cwd: PathBuf,
    /// The node's folder, `nodes/<id>/`. Not created beforehand: a runner creates it
    /// (`create_dir_all`) when it writes there, so a node that writes nothing costs no inode.
    pub dir: PathBuf,
    /// Wall-clock limit of this attempt.
    pub timeout: Option<Duration>,
    /// The node's state before this attempt started: after a resume, what earlier attempts
    /// left (loop iterations, agent session, approval answer).
    pub prior: NodeState,
    /// Agent session ids by session name, when the attempt started.
    pub sessions: BTreeMap<String, String>,
    /// The conversation an agent runs in (from the node's `session:`; per iteration in loops).
    pub session: SessionChoice,
    /// In a loop body: the iteration (from 1).
    pub iteration: Option<u32>,
    /// In a loop node: run at most this many new iterations, then, when the loop goes on, end
    /// with [`Outcome::Continues`] (a Temporal worker runs each iteration as an activity).
    /// `None`: iterate until the loop ends.
    pub new_iterations: Option<u32>,
    /// Tokens and cost earlier iterations of this attempt used (run by earlier calls, see
    /// [`Job::new_iterations`]): the loop adds them to what it reports.
    pub usage_before: Option<Usage>,
    /// Records the runner's own events.
    pub recorder: Recorder,
    /// Cancellation of the run.
    pub cancel: CancelToken,
    /// Registers process groups so they die with reins.
    pub watchdog: Option<Arc<Watchdog>>,
    /// Process-level settings.
    pub limits: Limits,
}

/// Which conversation an agent node (or loop iteration) runs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionChoice {
    /// A new conversation with an id reins chooses (`session: fresh`, the default).
    Fresh,
    /// The sticky conversation of this name: continued if it exists, else started.
    Sticky(String),
}

impl SessionChoice {
    /// The choice a node's `session:` makes.
    pub fn of(node: &crate::workflow::Node) -> SessionChoice {
        match node.sticky_session() {
            Some(name) => SessionChoice::Sticky(name.to_string()),
            None => SessionChoice::Fresh,
        }
    }

    /// The name recorded in `agent_session` events (`fresh` for a one-off conversation).
    pub fn name(&self) -> &str {
        match self {
            SessionChoice::Fresh => "fresh",
            SessionChoice::Sticky(name) => name,
        }
    }
}

/// Runs one attempt of one kind of node.
pub trait NodeRunner: Send + Sync {
    /// Runs the attempt. Process groups must be registered with `job.watchdog`, stopped on
    /// `job.cancel`, and waited for.
    fn run(&self, job: Job) -> BoxFuture<Outcome>;
}
