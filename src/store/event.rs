//! The events of a run: one JSON object per line of `events.jsonl`.
//!
//! Every line is a [`Record`]: a sequence number, a timestamp and an [`Event`], flattened into
//! one object, like
//! `{"seq":3,"ts":"2026-11-21T05:26:00.123Z","type":"node_started","node":"build","attempt":1}`.
//! The events are the only state of a run; [`super::RunState`] is a fold over them. Readers
//! ignore fields they do not know, and an event type they do not know becomes
//! [`Event::Unknown`], so logs written by a newer reins stay readable.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// One line of the event log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Position in the log, from 1, without gaps.
    pub seq: u64,
    /// When it happened.
    #[serde(with = "super::time")]
    pub ts: SystemTime,
    /// What happened.
    #[serde(flatten)]
    pub event: Event,
}

/// Something that happened in a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// The run began. Always the first event.
    RunStarted {
        /// The run id.
        run_id: String,
        /// The workflow's name.
        workflow: String,
        /// Every node id, in the workflow's order.
        nodes: Vec<String>,
        /// The inputs, defaults applied.
        #[serde(default)]
        inputs: BTreeMap<String, String>,
        /// The process executing the run.
        pid: u32,
        /// The digest of `run.json` when the run began (see [`super::Manifest::digest`]);
        /// a resume refuses a `run.json` that no longer matches it.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        digest: String,
    },
    /// `reins resume` took the run up again.
    RunResumed {
        /// The process executing the run from now on.
        pid: u32,
        /// The node named by `--from`, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<String>,
        /// Nodes set back to pending: they run (again) in this execution.
        #[serde(default)]
        reset: Vec<String>,
    },
    /// An attempt of a node began.
    NodeStarted {
        /// The node id.
        node: String,
        /// 1 for the first attempt, 2 for the first retry...
        attempt: u32,
    },
    /// A node finished successfully.
    NodeSucceeded {
        /// The node id.
        node: String,
        /// What it produced: stdout of bash (trailing newlines trimmed), an agent's final text,
        /// a gate's comment.
        output: String,
        /// Tokens and cost of an agent node.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        usage: Option<Usage>,
    },
    /// An attempt of a node failed.
    NodeFailed {
        /// The node id.
        node: String,
        /// What went wrong, in words.
        error: String,
        /// The exit code of its process, when it exited normally.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
        /// True when another attempt follows (`retries`); the node is not settled yet.
        #[serde(default)]
        will_retry: bool,
        /// What it printed before failing.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        output: String,
        /// Tokens and cost of an agent node.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        usage: Option<Usage>,
        /// The last lines of its stderr (or, when that is empty, stdout): why it failed.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        log_tail: Vec<String>,
        /// Where the whole log is, relative to the run directory (`nodes/ID/stderr.log`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        log: Option<String>,
    },
    /// An agent's CLI retries a model API call that failed (`system/api_retry`).
    AgentRetry {
        /// The node id.
        node: String,
        /// Which retry this is, from 1.
        attempt: u64,
        /// How many retries the CLI makes in all.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_retries: Option<u64>,
        /// What failed, in words (`connection refused`, `HTTP 529 overloaded`...).
        reason: String,
    },
    /// An agent attempt waits for one of the machine-wide agent slots: `max_agents` agent
    /// sessions already run on this machine (see `engine::agent_slots`).
    AgentSlotWait {
        /// The node id.
        node: String,
        /// The cap in force.
        max_agents: u64,
    },
    /// An attempt that waited for an agent slot got one and starts its agent.
    AgentSlotTaken {
        /// The node id.
        node: String,
        /// How long it waited, in milliseconds.
        waited_ms: u64,
    },
    /// A node printed more than reins keeps as its output (`{{nodes.ID.output}}`): the output
    /// holds the first `kept_bytes`; the whole output is in `nodes/ID/output.txt`
    /// (`{{nodes.ID.output_file}}`). Recorded before the attempt's end.
    OutputTruncated {
        /// The node id.
        node: String,
        /// Bytes kept as the output.
        kept_bytes: u64,
        /// Bytes the node printed.
        total_bytes: u64,
    },
    /// A node did not run: its trigger rule or `when` condition said no.
    NodeSkipped {
        /// The node id.
        node: String,
        /// Why, in words.
        reason: String,
    },
    /// A node was stopped by `reins cancel` or Ctrl-C.
    NodeCancelled {
        /// The node id.
        node: String,
    },
    /// An agent node runs in a conversation; a later node of the same sticky session (or a
    /// resumed run) continues it.
    AgentSession {
        /// The node id.
        node: String,
        /// The session name (`fresh` for a one-off conversation).
        session: String,
        /// The agent's own session id.
        session_id: String,
        /// The conversation's running token totals after a turn, for agents that report
        /// totals rather than each turn's use (Codex); recorded again when a turn ends.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        thread_usage: Option<Usage>,
    },
    /// An approval gate waits for a human.
    ApprovalRequested {
        /// The node id.
        node: String,
        /// The rendered question.
        message: String,
        /// A random id of this request: an answer counts only if it names it (empty in logs
        /// written before requests had ids).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        request: String,
    },
    /// A human answered an approval gate.
    ApprovalAnswered {
        /// The node id.
        node: String,
        /// Approved or rejected.
        approved: bool,
        /// Who answered (user name).
        by: String,
        /// What they said.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        comment: Option<String>,
        /// The request it answers.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        request: String,
    },
    /// One iteration of a loop node ended.
    LoopIteration {
        /// The node id.
        node: String,
        /// 1-based.
        iteration: u32,
        /// What the body produced.
        output: String,
        /// How the iteration ended.
        status: IterationStatus,
    },
    /// A `workflow:` node started (or took up again) its child run, `.reins/runs/<run_id>/`.
    ChildRun {
        /// The node id.
        node: String,
        /// The child run's id.
        run_id: String,
    },
    /// The run stopped with approval gates waiting; everything else that could run has run.
    RunPaused {
        /// The waiting gates.
        waiting: Vec<String>,
    },
    /// The run ended.
    RunFinished {
        /// `success`, `failed` or `cancelled`.
        status: RunStatus,
        /// Why the run failed when no node did (a workflow `env:` value that cannot be
        /// rendered, a log that cannot be written...).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A fan-out (`for_each`) was expanded: one instance `NODE[KEY]` per item, in order.
    /// Recorded before any instance starts; a resume uses this list, never expanding again.
    FanOutExpanded {
        /// The fan-out node's id.
        node: String,
        /// Its items, each with its instance's key.
        items: Vec<FanOutItem>,
    },
    /// An event this version of reins does not know (written by a newer one).
    #[serde(other)]
    Unknown,
}

/// One item of a fan-out, with the key of its instance (`NODE[KEY]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FanOutItem {
    /// The key: the item's index, or its rendered `key:`.
    pub key: String,
    /// The item, as `{{item}}` reads it.
    pub value: serde_json::Value,
}

impl Event {
    /// `node_failed` for a node that failed without an attempt that could record it (no
    /// runner, a `when` that does not render, a task that died): no exit code, output or log.
    pub fn failed_unrun(node: impl Into<String>, error: String) -> Event {
        Event::NodeFailed {
            node: node.into(),
            error,
            exit_code: None,
            will_retry: false,
            output: String::new(),
            usage: None,
            log_tail: Vec::new(),
            log: None,
        }
    }

    /// The node the event is about, if any.
    pub fn node(&self) -> Option<&str> {
        match self {
            Event::NodeStarted { node, .. }
            | Event::NodeSucceeded { node, .. }
            | Event::NodeFailed { node, .. }
            | Event::NodeSkipped { node, .. }
            | Event::NodeCancelled { node }
            | Event::AgentSession { node, .. }
            | Event::ApprovalRequested { node, .. }
            | Event::ApprovalAnswered { node, .. }
            | Event::LoopIteration { node, .. }
            | Event::ChildRun { node, .. }
            | Event::OutputTruncated { node, .. }
            | Event::AgentSlotWait { node, .. }
            | Event::AgentSlotTaken { node, .. }
            | Event::AgentRetry { node, .. }
            | Event::FanOutExpanded { node, .. } => Some(node),
            _ => None,
        }
    }
}

/// How one loop iteration ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IterationStatus {
    /// The body ran; the loop is not done yet.
    Continue,
    /// The body ran and the `until` condition holds: the loop is done.
    Done,
    /// The body failed.
    Failed,
}

/// Tokens and cost of agent work. Every field defaults to zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Usage {
    /// Cost in US dollars, as the agent reports it.
    pub cost_usd: f64,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Input tokens read from the prompt cache.
    pub cache_read_input_tokens: u64,
    /// Input tokens written to the prompt cache.
    pub cache_creation_input_tokens: u64,
    /// Model calls.
    pub turns: u32,
    /// Time the agent ran, in milliseconds.
    pub duration_ms: u64,
    /// True when some agent turn reported no cost (Codex): `cost_usd` then counts only the
    /// turns that did, and the rest is known by its tokens alone.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub unpriced: bool,
}

impl Usage {
    /// Adds another usage to this one.
    pub fn add(&mut self, other: &Usage) {
        self.cost_usd += other.cost_usd;
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cache_read_input_tokens += other.cache_read_input_tokens;
        self.cache_creation_input_tokens += other.cache_creation_input_tokens;
        self.turns += other.turns;
        self.duration_ms += other.duration_ms;
        self.unpriced |= other.unpriced;
    }

    /// Every token: input (uncached, written to and read from the cache) and output.
    pub fn tokens(&self) -> u64 {
        self.input_tokens
            + self.cache_read_input_tokens
            + self.cache_creation_input_tokens
            + self.output_tokens
    }

    /// True when nothing was used.
    pub fn is_zero(&self) -> bool {
        *self == Usage::default()
    }
}

/// Where a node stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeStatus {
    /// Not started (yet).
    #[default]
    Pending,
    /// An attempt is running (or it waits for its next attempt).
    Running,
    /// Finished successfully.
    Success,
    /// Finished with a failure, every attempt used.
    Failed,
    /// Did not run: its trigger rule or `when` condition said no.
    Skipped,
    /// Stopped by `reins cancel` or Ctrl-C.
    Cancelled,
    /// An approval gate waiting for a human.
    Waiting,
}

impl NodeStatus {
    /// The status as written in events and templates.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Pending => "pending",
            NodeStatus::Running => "running",
            NodeStatus::Success => "success",
            NodeStatus::Failed => "failed",
            NodeStatus::Skipped => "skipped",
            NodeStatus::Cancelled => "cancelled",
            NodeStatus::Waiting => "waiting",
        }
    }

    /// True once the node will not change in this execution: success, failed, skipped or
    /// cancelled.
    pub fn is_settled(self) -> bool {
        matches!(
            self,
            NodeStatus::Success | NodeStatus::Failed | NodeStatus::Skipped | NodeStatus::Cancelled
        )
    }
}

impl std::fmt::Display for NodeStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Being executed (or, with no live owner, see [`RunStatus::Interrupted`]).
    #[default]
    Running,
    /// Every node that ran succeeded (failures under `continue_on_error` aside).
    Success,
    /// A node failed.
    Failed,
    /// Stopped by `reins cancel` or Ctrl-C.
    Cancelled,
    /// Stopped at approval gates that wait for a human.
    Waiting,
    /// Not finished, and no process executes it: reins was killed. `reins resume` continues it.
    Interrupted,
}

impl RunStatus {
    /// The status as written in events.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Success => "success",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
            RunStatus::Waiting => "waiting",
            RunStatus::Interrupted => "interrupted",
        }
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_flat_json_objects() {
        let rec = Record {
            seq: 3,
            ts: crate::store::time::parse("2026-11-21T05:26:00.123Z").unwrap(),
            event: Event::NodeStarted {
                node: "build".into(),
                attempt: 1,
            },
        };
        let line = serde_json::to_string(&rec).unwrap();
        assert_eq!(
            line,
            r#"{"seq":3,"ts":"2026-11-21T05:26:00.123Z","type":"node_started","node":"build","attempt":1}"#
        );
        assert_eq!(serde_json::from_str::<Record>(&line).unwrap(), rec);
    }

    #[test]
    fn unknown_types_and_fields_are_tolerated() {
        let rec: Record = serde_json::from_str(
            r#"{"seq":1,"ts":"2026-11-21T05:26:00Z","type":"node_teleported","node":"x"}"#,
        )
        .unwrap();
        assert_eq!(rec.event, Event::Unknown);
        let rec: Record = serde_json::from_str(
            r#"{"seq":2,"ts":"2026-11-21T05:26:00Z","type":"node_cancelled","node":"x","why":"new field"}"#,
        )
        .unwrap();
        assert_eq!(rec.event, Event::NodeCancelled { node: "x".into() });
    }

    #[test]
    fn every_event_round_trips() {
        let events = vec![
            Event::RunStarted {
                run_id: "r".into(),
                workflow: "w".into(),
                nodes: vec!["a".into()],
                inputs: [("k".to_string(), "v".to_string())].into(),
                pid: 7,
                digest: "sha256:00".into(),
            },
            Event::RunResumed {
                pid: 8,
                from: Some("a".into()),
                reset: vec!["a".into()],
            },
            Event::NodeSucceeded {
                node: "a".into(),
                output: "out".into(),
                usage: Some(Usage {
                    cost_usd: 0.5,
                    turns: 2,
                    ..Usage::default()
                }),
            },
            Event::NodeFailed {
                node: "a".into(),
                error: "exited with code 1".into(),
                exit_code: Some(1),
                will_retry: true,
                output: String::new(),
                usage: None,
                log_tail: vec!["boom".into()],
                log: Some("nodes/a/stderr.log".into()),
            },
            Event::AgentRetry {
                node: "a".into(),
                attempt: 3,
                max_retries: Some(10),
                reason: "connection refused".into(),
            },
            Event::AgentSlotWait {
                node: "a".into(),
                max_agents: 2,
            },
            Event::AgentSlotTaken {
                node: "a".into(),
                waited_ms: 1500,
            },
            Event::NodeSkipped {
                node: "a".into(),
                reason: "why".into(),
            },
            Event::OutputTruncated {
                node: "a".into(),
                kept_bytes: 1 << 20,
                total_bytes: 3 << 20,
            },
            Event::AgentSession {
                node: "a".into(),
                session: "impl".into(),
                session_id: "uuid".into(),
                thread_usage: None,
            },
            Event::ApprovalRequested {
                node: "g".into(),
                message: "ok?".into(),
                request: "q-1".into(),
            },
            Event::ApprovalAnswered {
                node: "g".into(),
                approved: true,
                by: "me".into(),
                comment: Some("fine".into()),
                request: "q-1".into(),
            },
            Event::LoopIteration {
                node: "l".into(),
                iteration: 2,
                output: "o".into(),
                status: IterationStatus::Done,
            },
            Event::ChildRun {
                node: "w".into(),
                run_id: "20260101-000000-abcd".into(),
            },
            Event::RunPaused {
                waiting: vec!["g".into()],
            },
            Event::RunFinished {
                status: RunStatus::Failed,
                error: Some("boom".into()),
            },
        ];
        for event in events {
            let rec = Record {
                seq: 1,
                ts: SystemTime::UNIX_EPOCH,
                event,
            };
            let line = serde_json::to_string(&rec).unwrap();
            assert_eq!(
                serde_json::from_str::<Record>(&line).unwrap(),
                rec,
                "{line}"
            );
        }
    }
}
