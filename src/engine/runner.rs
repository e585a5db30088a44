//! The seam between the scheduler and what a node does.
//!
//! The scheduler decides *when* a node runs (dependencies, trigger rule, `when`, a free slot),
//! records `node_started` for each attempt, retries with backoff, and records how the node
//! ended. A [`NodeRunner`] does *one attempt* of one kind of node and returns an [`Outcome`].
//! [`Runners`] maps node kinds to runners: bash, agent (`prompt`, `command`) and approval are
//! built in; loops wrap the runner of their body (below). A workflow that uses a kind with
//! no runner is refused before anything runs ([`Runners::missing`]).
//!
//! ## Loop bodies
//!
//! A `loop` node has no runner of its own in the map: [`Runners::get`] wraps the runner of
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
use crate::workflow::NodeKind;

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

/// The kinds of runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// `bash` nodes.
    Bash,
    /// `prompt` and `command` nodes.
    Agent,
    /// `approval` nodes.
    Approval,
    /// `loop` nodes.
    Loop,
}

impl Kind {
    /// The kind of runner a node needs.
    pub fn of(kind: &NodeKind) -> Kind {
        match kind {
            NodeKind::Bash(_) => Kind::Bash,
            NodeKind::Prompt(_) | NodeKind::Command(_) => Kind::Agent,
            NodeKind::Approval(_) => Kind::Approval,
            NodeKind::Loop(_) => Kind::Loop,
        }
    }

    /// The kind of runner a loop body needs.
    pub fn of_body(body: &crate::workflow::LoopBody) -> Kind {
        match body {
            crate::workflow::LoopBody::Bash(_) => Kind::Bash,
            _ => Kind::Agent,
        }
    }

    /// In words, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            Kind::Bash => "bash",
            Kind::Agent => "agent (`prompt`/`command`)",
            Kind::Approval => "approval",
            Kind::Loop => "loop",
        }
    }
}

/// The runner of each kind of node.
#[derive(Clone)]
pub struct Runners {
    map: BTreeMap<Kind, Arc<dyn NodeRunner>>,
}

impl Default for Runners {
    fn default() -> Self {
        Self::new()
    }
}

impl Runners {
    /// The runners built into the engine (bash, agents for `prompt`/`command`, approval).
    pub fn new() -> Self {
        let mut map: BTreeMap<Kind, Arc<dyn NodeRunner>> = BTreeMap::new();
        map.insert(Kind::Bash, Arc::new(super::bash::BashRunner));
        map.insert(Kind::Agent, Arc::new(super::agent::AgentRunner));
        map.insert(Kind::Approval, Arc::new(super::approval::ApprovalRunner));
        Self { map }
    }

    /// The runner of a node kind. A loop gets a loop runner around its body's runner.
    pub fn get(&self, kind: &NodeKind) -> Option<Arc<dyn NodeRunner>> {
        match kind {
            NodeKind::Loop(l) => {
                let body = self.map.get(&Kind::of_body(&l.body))?.clone();
                Some(Arc::new(super::loops::LoopRunner { body }))
            }
            _ => self.map.get(&Kind::of(kind)).cloned(),
        }
    }

    /// Nodes of the plan whose kind has no runner: `(node id, kind)`.
    pub fn missing(&self, plan: &Plan) -> Vec<(String, Kind)> {
        plan.workflow
            .nodes
            .iter()
            .filter_map(|n| {
                let kind = match &n.kind {
                    NodeKind::Loop(l) => Kind::of_body(&l.body),
                    k => Kind::of(k),
                };
                (!self.map.contains_key(&kind)).then(|| (n.id.value.clone(), kind))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SourceFile;
    use crate::workflow::command_file::DirCommands;
    use crate::workflow::load_source;

    #[test]
    fn a_loop_needs_the_runner_of_its_body() {
        let wf = load_source(SourceFile::new(
            "t.yaml",
            "nodes:
  - id: sh
    loop: {bash: echo, until: 'true', max_iterations: 2}
  - id: ask
    loop: {prompt: hi, until: 'true', max_iterations: 2}
",
        ))
        .workflow
        .unwrap();
        let plan = Plan::new(wf, &DirCommands::default()).unwrap();
        assert!(Runners::new().missing(&plan).is_empty());
        let mut runners = Runners::new();
        runners.map.remove(&Kind::Agent);
        assert_eq!(runners.missing(&plan), [("ask".to_string(), Kind::Agent)]);
        assert!(runners.get(&plan.workflow.nodes[0].kind).is_some());
        assert!(runners.get(&plan.workflow.nodes[1].kind).is_none());
    }
}
