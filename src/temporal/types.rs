//! What crosses Temporal: the workflow's input, activity inputs and results, the answer update
//! and the status query. All of it is JSON in the workflow's history, so it is kept small:
//! node attempts name their node and the worker reads the rest from the run's log.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A frozen file: a workflow or one of its command files, as the submitter read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FrozenSource {
    /// Where it was read from (shown in messages).
    pub path: String,
    /// Its text.
    pub text: String,
}

/// A run submitted to Temporal: the workflow's input. The submitter validated the workflow;
/// the worker freezes exactly this text and these command files in the run's `run.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Submission {
    /// The reins run id, also the workflow id.
    pub run_id: String,
    /// The workflow's name.
    pub workflow: String,
    /// The workflow file.
    pub source: FrozenSource,
    /// Its command files, by command name.
    pub commands: BTreeMap<String, FrozenSource>,
    /// The workflows its `workflow:` nodes run (and theirs), by name.
    #[serde(default)]
    pub workflows: BTreeMap<String, FrozenSource>,
    /// `--input` pairs as given (the worker resolves defaults, like a local run).
    pub inputs: Vec<(String, String)>,
    /// `--worktree`.
    pub worktree: bool,
    /// `--base`.
    pub base: Option<String>,
    /// `--agent`.
    pub agent: Option<String>,
    /// Who submitted it (the OS user).
    pub by: String,
    /// Seconds without a heartbeat after which a worker counts as dead and its activity is
    /// retried.
    pub heartbeat_timeout_secs: u64,
}

/// Where a run executes: what the placement activity returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Placement {
    /// The worker's own task queue: every later activity of the run goes there.
    pub queue: String,
    /// The worker's host name.
    pub host: String,
    /// The worker's checkout (the run's folder is `.reins/runs/<id>/` in it).
    pub root: String,
}

/// A gate that waits for an answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Gate {
    /// The gate's node id.
    pub node: String,
    /// The request id of `approval_requested`: an answer names it.
    pub request: String,
    /// The message shown to whoever answers.
    pub message: String,
    /// When the gate times out (rejected by reins), milliseconds since the Unix epoch.
    pub deadline_ms: Option<u64>,
}

/// The run as its worker opened it: what the `open` activity returns, and all the workflow's
/// machine needs besides the submission (it reads nothing else, so it replays the same).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Opened {
    /// The run's folder on the worker.
    pub run_dir: String,
    /// The working tree its nodes run in (the checkout, or the run's worktree).
    pub root: String,
    /// The inputs, defaults applied.
    pub inputs: BTreeMap<String, String>,
    /// The `{{env.X}}` values the workflow's `when` conditions read (only those: the rest of
    /// the worker's environment never reaches Temporal's history).
    pub env: BTreeMap<String, String>,
    /// Wait before a node's first retry, in milliseconds (the worker's `REINS_RETRY_DELAY`).
    pub retry_delay_ms: u64,
    /// Set when the run ended before any node (its workflow `env:` does not render).
    pub error: Option<String>,
}

/// The input of the `node` activity: one attempt of one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct NodeInput {
    /// The run.
    pub run_id: String,
    /// The node: its id, or `ID[KEY]` for an instance of a fan-out.
    pub node: String,
    /// The attempt, from 1 (the machine's count, not Temporal's).
    pub attempt: u32,
    /// A retryable failure of this attempt is retried (the machine's `retries_left`): the
    /// worker records the failure so.
    pub retry: bool,
    /// A loop's attempt runs one iteration per activity: tokens and cost of the iterations
    /// this attempt's earlier activities ran (the last one's [`NodeResult::usage`]).
    #[serde(default)]
    pub usage: Option<crate::store::Usage>,
}

/// How an attempt of a node ended: what the `node` activity returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct NodeResult {
    /// `success`, `failed`, `cancelled` or `waiting`; `continues` when a loop ran one
    /// iteration and goes on (the attempt is not over: the workflow runs the activity again).
    pub status: String,
    /// Its output (`{{nodes.ID.output}}`), or what it printed before failing.
    pub output: String,
    /// With `failed`: another attempt could help.
    pub retryable: bool,
    /// Bytes kept and printed, when the output holds less than the node printed.
    pub truncated: Option<(u64, u64)>,
    /// The artifacts folder of a `workflow:` node's child run.
    pub artifacts: Option<String>,
    /// With `waiting`: the gate's request.
    pub gate: Option<Gate>,
    /// True when the store had settled the node already and it did not run again.
    pub recorded: bool,
    /// With `continues`: tokens and cost of the attempt's iterations so far.
    #[serde(default)]
    pub usage: Option<crate::store::Usage>,
}

/// The input of the `expand` activity: list a fan-out's items.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ExpandInput {
    /// The run.
    pub run_id: String,
    /// The fan-out's id.
    pub node: String,
}

/// A fan-out's items (recorded as `fan_out_expanded`), or why there are none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Expanded {
    /// The items, in order.
    pub items: Vec<crate::store::FanOutItem>,
    /// What went wrong (the fan-out then fails).
    pub error: Option<String>,
}

/// The input of the `record` activity: events the machine's decisions stand for (a skip, a
/// failure without an attempt, a fan-out settling, the run pausing or ending), recorded on the
/// worker in order, each at most once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct RecordInput {
    /// The run.
    pub run_id: String,
    /// The events.
    pub events: Vec<crate::store::Event>,
}

/// An answer to a gate: the `answer` update's argument.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Answer {
    /// The gate (`None`: the only waiting one).
    pub gate: Option<String>,
    /// The request it answers (`None`: the gate's current one).
    pub request: Option<String>,
    /// Approve or reject.
    pub approved: bool,
    /// Who answers.
    pub by: String,
    /// What they say.
    pub comment: Option<String>,
}

/// An answer the workflow took, for a gate it knows waits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Accepted {
    /// The gate.
    pub gate: String,
    /// The request answered.
    pub request: String,
    /// Approve or reject.
    pub approved: bool,
    /// Who answered.
    pub by: String,
    /// What they said.
    pub comment: Option<String>,
}

/// The input of the `answer` activity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AnswerInput {
    /// The run.
    pub run_id: String,
    /// The answer.
    pub answer: Accepted,
}

/// What the `status` query returns: the run as Temporal knows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct View {
    /// The run id.
    pub run_id: String,
    /// The workflow's name.
    pub workflow: String,
    /// Where it executes, once placed.
    pub placement: Option<Placement>,
    /// `placing`, `running`, `waiting`, `success`, `failed`, `cancelled`.
    pub phase: String,
    /// The gates that wait.
    pub waiting: Vec<Gate>,
    /// Answers taken, in order.
    pub answers: Vec<Accepted>,
    /// Node statuses, instances of fan-outs included, as the machine has them.
    pub nodes: BTreeMap<String, String>,
    /// Node attempts started as activities so far (retries and gates looked at again
    /// included).
    pub attempts: u32,
    /// Why the run failed, when no node says.
    pub error: Option<String>,
}

/// What the workflow returns when the run ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Finished {
    /// `success`, `failed` or `cancelled`.
    pub status: String,
    /// Where it ran.
    pub placement: Option<Placement>,
    /// Node statuses at the end.
    pub nodes: BTreeMap<String, String>,
}
