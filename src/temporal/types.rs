//! What crosses Temporal: the workflow's input, activity inputs and results, the answer update
//! and the status query. All of it is JSON in the workflow's history.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A frozen file: a workflow or one of its command files, as the submitter read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrozenSource {
    /// Where it was read from (shown in messages).
    pub path: String,
    /// Its text.
    pub text: String,
}

/// A run submitted to Temporal: the workflow's input. The submitter validated the workflow;
/// the worker freezes exactly this text and these command files in the run's `run.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submission {
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
pub struct Placement {
    /// The worker's own task queue: every later activity of the run goes there.
    pub queue: String,
    /// The worker's host name.
    pub host: String,
    /// The worker's checkout (the run's folder is `.reins/runs/<id>/` in it).
    pub root: String,
}

/// A gate that waits for an answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gate {
    /// The gate's node id.
    pub node: String,
    /// The request id of `approval_requested`: an answer names it.
    pub request: String,
    /// The message shown to whoever answers.
    pub message: String,
    /// When the gate times out (rejected by reins), milliseconds since the Unix epoch.
    pub deadline_ms: Option<u64>,
}

/// How a stretch of the run on its worker ended: what the `execute` activity returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// `success`, `failed`, `cancelled` or `waiting`.
    pub status: String,
    /// With `waiting`: the gates that wait.
    pub waiting: Vec<Gate>,
    /// Node statuses at the end of the stretch, by node id.
    pub nodes: BTreeMap<String, String>,
    /// What went wrong, when the run failed before any node did.
    pub error: Option<String>,
}

/// The input of the `execute` activity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecuteInput {
    /// The run.
    pub submission: Submission,
}

/// An answer to a gate: the `answer` update's argument.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
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
pub struct Accepted {
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
pub struct AnswerInput {
    /// The run.
    pub run_id: String,
    /// The answer.
    pub answer: Accepted,
}

/// The input of the `cancelled` activity: a run cancelled while no stretch of it executed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelInput {
    /// The run.
    pub run_id: String,
}

/// What the `status` query returns: the run as Temporal knows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct View {
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
    /// Node statuses after the last stretch.
    pub nodes: BTreeMap<String, String>,
    /// Stretches executed (1 + resumes after answers, timeouts and worker deaths).
    pub segments: u32,
    /// Why the run failed, when no node says.
    pub error: Option<String>,
}

/// What the workflow returns when the run ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finished {
    /// `success`, `failed` or `cancelled`.
    pub status: String,
    /// Where it ran.
    pub placement: Option<Placement>,
    /// Node statuses at the end.
    pub nodes: BTreeMap<String, String>,
}
