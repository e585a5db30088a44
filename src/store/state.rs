//! [`RunState`]: what a run's events add up to.
//!
//! The state is never stored; it is a fold over `events.jsonl` ([`RunState::apply`]), the same
//! fold the engine runs live as it records events. Everything `reins status`, `resume` and the
//! node runners need is here: per node its status, attempts, output, error, skip reason, times,
//! usage, loop iterations and approval; per run the agent sessions by name.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::event::{Event, FanOutItem, IterationStatus, NodeStatus, Record, RunStatus, Usage};

/// The state of a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunState {
    /// The run id.
    pub run_id: String,
    /// The workflow's name.
    pub workflow: String,
    /// Where the run stands, from its events alone: a run with no live owner that is still
    /// `running` here was interrupted (see [`RunState::status_given`]).
    pub status: RunStatus,
    /// The inputs.
    pub inputs: BTreeMap<String, String>,
    /// When the run began.
    #[serde(with = "super::time::option")]
    pub started_at: Option<SystemTime>,
    /// When it last finished or paused.
    #[serde(with = "super::time::option")]
    pub finished_at: Option<SystemTime>,
    /// The process that last executed it.
    pub pid: Option<u32>,
    /// How many times it was resumed.
    pub resumes: u32,
    /// Every node, in the workflow's order.
    pub nodes: Vec<NodeState>,
    /// Agent session ids by session name (`fresh` sessions excluded).
    pub sessions: BTreeMap<String, String>,
    /// Running token totals of agent conversations by session id, where the agent reports
    /// totals (Codex threads).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub thread_usage: BTreeMap<String, Usage>,
    /// Gates waiting when the run paused.
    pub waiting: Vec<String>,
    /// Why the run failed when no node did.
    pub error: Option<String>,
    /// The sequence number of the last event applied.
    pub last_seq: u64,
    /// When the last event applied happened.
    #[serde(with = "super::time::option")]
    pub last_event_at: Option<SystemTime>,
    #[serde(skip)]
    index: HashMap<String, usize>,
}

/// The state of one node.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NodeState {
    /// The node id.
    pub id: String,
    /// Where it stands.
    pub status: NodeStatus,
    /// The current (or last) attempt, from 1; 0 before the first.
    pub attempt: u32,
    /// What it produced (success), or printed before failing.
    pub output: Option<String>,
    /// Set when its output holds less than it printed (see [`Event::OutputTruncated`]).
    pub output_truncated: Option<Truncation>,
    /// Why it failed (also set while it waits for a retry).
    pub error: Option<String>,
    /// The last lines of its log when it failed (see [`Event::NodeFailed`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub log_tail: Vec<String>,
    /// Where its whole log is, relative to the run directory, when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
    /// Exit code of its process, when it failed by exiting.
    pub exit_code: Option<i32>,
    /// Why it was skipped.
    pub skip_reason: Option<String>,
    /// When its current (or last) attempt started.
    #[serde(with = "super::time::option")]
    pub started_at: Option<SystemTime>,
    /// When it settled.
    #[serde(with = "super::time::option")]
    pub finished_at: Option<SystemTime>,
    /// Tokens and cost, summed over attempts.
    pub usage: Usage,
    /// The agent session it ran in, if any.
    pub session_id: Option<String>,
    /// Loop iterations of the current attempt.
    pub iterations: Vec<Iteration>,
    /// The approval gate's question and answer.
    pub approval: Option<ApprovalState>,
    /// The child run of a `workflow:` node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub child_run: Option<String>,
    /// A fan-out's items, once expanded: its instances are `ID[KEY]`, listed right after it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fan_out: Option<Vec<FanOutItem>>,
}

/// An output cut to the limit: how much was kept of how much.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Truncation {
    /// Bytes kept as `{{nodes.ID.output}}`.
    pub kept_bytes: u64,
    /// Bytes the node printed (all in `nodes/ID/output.txt`).
    pub total_bytes: u64,
}

impl Truncation {
    /// In words: `output truncated: 1 MiB of 2.9 MiB kept`.
    pub fn describe(&self) -> String {
        format!(
            "output truncated: {} of {} kept",
            size_text(self.kept_bytes),
            size_text(self.total_bytes)
        )
    }
}

/// A size in bytes for people: `300 B`, `12 KiB`, `2.9 MiB`.
pub fn size_text(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 || (value - value.round()).abs() < 0.05 {
        format!("{} {}", value.round(), UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// One loop iteration.
#[derive(Debug, Clone, Serialize)]
pub struct Iteration {
    /// 1-based.
    pub iteration: u32,
    /// What the body produced.
    pub output: String,
    /// How it ended.
    pub status: IterationStatus,
}

/// An approval gate's question and, once given, its answer.
#[derive(Debug, Clone, Serialize)]
pub struct ApprovalState {
    /// The rendered question.
    pub message: String,
    /// When the question was asked (a gate's `timeout` counts from here).
    #[serde(with = "super::time::option")]
    pub requested_at: Option<SystemTime>,
    /// The request's random id (empty in logs written before requests had ids).
    pub request: String,
    /// The answer.
    pub answer: Option<Answer>,
}

/// A human's answer to a gate.
#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    /// Approved or rejected.
    pub approved: bool,
    /// Who answered.
    pub by: String,
    /// What they said.
    pub comment: Option<String>,
}

impl NodeState {
    fn new(id: &str) -> Self {
        Self {
            id: id.to_string(),
            ..Self::default()
        }
    }

    /// Wall-clock time of the current (or last) attempt: until it settled, or until `now`.
    pub fn elapsed(&self, now: SystemTime) -> Option<Duration> {
        let start = self.started_at?;
        let end = self.finished_at.unwrap_or(now);
        Some(end.duration_since(start).unwrap_or_default())
    }
}

impl RunState {
    /// An empty state (no events yet).
    pub fn new() -> Self {
        Self::default()
    }

    /// The state a sequence of events adds up to.
    pub fn from_records<'a>(records: impl IntoIterator<Item = &'a Record>) -> Self {
        let mut state = Self::new();
        for r in records {
            state.apply(r);
        }
        state
    }

    /// A node by id.
    pub fn node(&self, id: &str) -> Option<&NodeState> {
        self.index.get(id).map(|&i| &self.nodes[i])
    }

    fn node_mut(&mut self, id: &str) -> &mut NodeState {
        let i = match self.index.get(id) {
            Some(&i) => i,
            None => {
                self.nodes.push(NodeState::new(id));
                self.index.insert(id.to_string(), self.nodes.len() - 1);
                self.nodes.len() - 1
            }
        };
        &mut self.nodes[i]
    }

    /// Folds one event into the state.
    pub fn apply(&mut self, record: &Record) {
        self.last_seq = record.seq;
        let ts = record.ts;
        self.last_event_at = Some(ts);
        match &record.event {
            Event::RunStarted {
                run_id,
                workflow,
                nodes,
                inputs,
                pid,
                ..
            } => {
                self.run_id = run_id.clone();
                self.workflow = workflow.clone();
                self.inputs = inputs.clone();
                self.pid = Some(*pid);
                self.status = RunStatus::Running;
                self.started_at = Some(ts);
                for id in nodes {
                    self.node_mut(id);
                }
            }
            Event::RunResumed {
                pid, reset, from, ..
            } => {
                self.pid = Some(*pid);
                self.status = RunStatus::Running;
                self.finished_at = None;
                self.error = None;
                self.waiting.clear();
                self.resumes += 1;
                for id in reset {
                    let node = self.node_mut(id);
                    let keep_iterations = std::mem::take(&mut node.iterations);
                    // A child run is taken up again, and a fan-out runs over the items it
                    // recorded, unless `--from` asks for the node anew (it is expanded again).
                    let child_run = node.child_run.take().filter(|_| from.is_none());
                    let fan_out = node.fan_out.take().filter(|_| from.is_none());
                    // A fan-out taken up again runs from now: its instances are re-added
                    // without a new `fan_out_expanded`.
                    let (status, started_at) = match fan_out {
                        Some(_) => (NodeStatus::Running, Some(ts)),
                        None => (NodeStatus::Pending, None),
                    };
                    *node = NodeState {
                        iterations: keep_iterations,
                        fan_out,
                        status,
                        started_at,
                        usage: node.usage,
                        session_id: node.session_id.take(),
                        child_run,
                        ..NodeState::new(id)
                    };
                }
            }
            Event::NodeStarted { node, attempt } => {
                let n = self.node_mut(node);
                n.status = NodeStatus::Running;
                n.attempt = *attempt;
                n.started_at = Some(ts);
                n.finished_at = None;
                n.output = None;
                n.output_truncated = None;
                n.log_tail.clear();
                n.log = None;
                n.error = None;
                n.exit_code = None;
                n.skip_reason = None;
            }
            Event::NodeSucceeded {
                node,
                output,
                usage,
            } => {
                let n = self.node_mut(node);
                n.status = NodeStatus::Success;
                n.output = Some(output.clone());
                n.error = None;
                n.finished_at = Some(ts);
                if let Some(u) = usage {
                    n.usage.add(u);
                }
            }
            Event::NodeFailed {
                node,
                error,
                exit_code,
                will_retry,
                output,
                usage,
                log_tail,
                log,
            } => {
                let n = self.node_mut(node);
                n.error = Some(error.clone());
                n.log_tail = log_tail.clone();
                n.log = log.clone();
                n.exit_code = *exit_code;
                n.output = Some(output.clone());
                if let Some(u) = usage {
                    n.usage.add(u);
                }
                if !will_retry {
                    n.status = NodeStatus::Failed;
                    n.finished_at = Some(ts);
                }
            }
            Event::OutputTruncated {
                node,
                kept_bytes,
                total_bytes,
            } => {
                self.node_mut(node).output_truncated = Some(Truncation {
                    kept_bytes: *kept_bytes,
                    total_bytes: *total_bytes,
                });
            }
            Event::NodeSkipped { node, reason } => {
                let n = self.node_mut(node);
                n.status = NodeStatus::Skipped;
                n.skip_reason = Some(reason.clone());
                n.started_at = None;
                n.finished_at = Some(ts);
            }
            Event::NodeCancelled { node } => {
                let n = self.node_mut(node);
                n.status = NodeStatus::Cancelled;
                n.finished_at = Some(ts);
            }
            Event::FanOutExpanded { node, items } => {
                let n = self.node_mut(node);
                n.status = NodeStatus::Running;
                if n.started_at.is_none() || n.finished_at.is_some() {
                    n.started_at = Some(ts);
                }
                n.finished_at = None;
                n.fan_out = Some(items.clone());
                // The instances stand right after their fan-out, in item order; those of an
                // earlier expansion (`--from` expands again) give way to the new list, each
                // keeping its state if its key is in it.
                let prefix = format!("{node}[");
                let mut old: HashMap<String, NodeState> = HashMap::new();
                self.nodes.retain(|n| {
                    let mine = n.id.starts_with(&prefix) && n.id.ends_with(']');
                    if mine {
                        old.insert(n.id.clone(), n.clone());
                    }
                    !mine
                });
                let at = self
                    .nodes
                    .iter()
                    .position(|n| n.id == *node)
                    .map_or(self.nodes.len(), |i| i + 1);
                let new: Vec<NodeState> = items
                    .iter()
                    .map(|item| format!("{node}[{}]", item.key))
                    .map(|id| old.remove(&id).unwrap_or_else(|| NodeState::new(&id)))
                    .collect();
                self.nodes.splice(at..at, new);
                self.index = self
                    .nodes
                    .iter()
                    .enumerate()
                    .map(|(i, n)| (n.id.clone(), i))
                    .collect();
            }
            Event::AgentSession {
                node,
                session,
                session_id,
                thread_usage,
            } => {
                if let Some(total) = thread_usage {
                    self.thread_usage.insert(session_id.clone(), *total);
                }
                if session != "fresh" {
                    self.sessions.insert(session.clone(), session_id.clone());
                }
                self.node_mut(node).session_id = Some(session_id.clone());
            }
            Event::ApprovalRequested {
                node,
                message,
                request,
            } => {
                let n = self.node_mut(node);
                n.status = NodeStatus::Waiting;
                n.approval = Some(ApprovalState {
                    message: message.clone(),
                    requested_at: Some(ts),
                    request: request.clone(),
                    answer: None,
                });
            }
            Event::ApprovalAnswered {
                node,
                approved,
                by,
                comment,
                ..
            } => {
                let n = self.node_mut(node);
                let answer = Answer {
                    approved: *approved,
                    by: by.clone(),
                    comment: comment.clone(),
                };
                match &mut n.approval {
                    Some(a) => a.answer = Some(answer),
                    None => {
                        n.approval = Some(ApprovalState {
                            message: String::new(),
                            requested_at: None,
                            request: String::new(),
                            answer: Some(answer),
                        })
                    }
                }
            }
            Event::AgentRetry { .. }
            | Event::AgentSlotWait { .. }
            | Event::AgentSlotTaken { .. } => {}
            Event::LoopIteration {
                node,
                iteration,
                output,
                status,
            } => {
                self.node_mut(node).iterations.push(Iteration {
                    iteration: *iteration,
                    output: output.clone(),
                    status: *status,
                });
            }
            Event::ChildRun { node, run_id } => {
                self.node_mut(node).child_run = Some(run_id.clone());
            }
            Event::RunPaused { waiting } => {
                // A `workflow:` node waits on a gate of its child run: it records no request.
                for id in waiting {
                    if let Some(&i) = self.index.get(id) {
                        if self.nodes[i].status == NodeStatus::Running {
                            self.nodes[i].status = NodeStatus::Waiting;
                        }
                    }
                }
                self.status = RunStatus::Waiting;
                self.waiting = waiting.clone();
                self.finished_at = Some(ts);
            }
            Event::RunFinished { status, error } => {
                self.status = *status;
                self.error = error.clone();
                self.finished_at = Some(ts);
            }
            Event::Unknown => {}
        }
    }

    /// The run's status, given whether a live process executes it: a run that is still
    /// `running` in its events but has no live owner was interrupted.
    pub fn status_given(&self, live: bool) -> RunStatus {
        match self.status {
            RunStatus::Running if !live => RunStatus::Interrupted,
            s => s,
        }
    }

    /// Stops the clocks of an interrupted run (no process executes it any more): the run and
    /// its running nodes count as having stopped at the last event, so their durations do not
    /// keep growing while nobody works on them.
    pub fn stop_clocks(&mut self) {
        let Some(last) = self.last_event_at else {
            return;
        };
        self.finished_at.get_or_insert(last);
        for n in &mut self.nodes {
            if n.status == NodeStatus::Running {
                n.finished_at.get_or_insert(last);
            }
        }
    }

    /// Tokens and cost of every node together.
    pub fn total_usage(&self) -> Usage {
        let mut total = Usage::default();
        for n in &self.nodes {
            total.add(&n.usage);
        }
        total
    }

    /// Wall-clock time from start to finish (or to `now`).
    pub fn elapsed(&self, now: SystemTime) -> Option<Duration> {
        let start = self.started_at?;
        let end = self.finished_at.unwrap_or(now);
        Some(end.duration_since(start).unwrap_or_default())
    }

    /// Number of nodes in each status.
    pub fn counts(&self) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::new();
        for n in &self.nodes {
            *counts.entry(n.status.as_str()).or_insert(0) += 1;
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(seq: u64, event: Event) -> Record {
        Record {
            seq,
            ts: SystemTime::UNIX_EPOCH + Duration::from_secs(seq),
            event,
        }
    }

    #[test]
    fn a_child_run_is_kept_across_a_resume_but_not_a_resume_from() {
        let start = Event::RunStarted {
            run_id: "r1".into(),
            workflow: "wf".into(),
            nodes: vec!["w".into()],
            inputs: BTreeMap::new(),
            pid: 1,
            digest: String::new(),
        };
        let mut events = vec![
            start,
            Event::NodeStarted {
                node: "w".into(),
                attempt: 1,
            },
            Event::ChildRun {
                node: "w".into(),
                run_id: "c1".into(),
            },
            Event::RunPaused {
                waiting: vec!["w".into()],
            },
        ];
        let fold = |events: &[Event]| {
            let records: Vec<Record> = events
                .iter()
                .enumerate()
                .map(|(i, e)| rec(i as u64 + 1, e.clone()))
                .collect();
            RunState::from_records(&records)
        };
        let paused = fold(&events);
        let w = paused.node("w").unwrap();
        assert_eq!(w.status, NodeStatus::Waiting, "waits on its child's gate");
        assert_eq!(w.child_run.as_deref(), Some("c1"));
        events.push(Event::RunResumed {
            pid: 2,
            from: None,
            reset: vec!["w".into()],
        });
        assert_eq!(
            fold(&events).node("w").unwrap().child_run.as_deref(),
            Some("c1")
        );
        events.push(Event::RunResumed {
            pid: 3,
            from: Some("w".into()),
            reset: vec!["w".into()],
        });
        assert_eq!(fold(&events).node("w").unwrap().child_run, None);
    }

    #[test]
    fn folds_a_run_with_a_retry_a_skip_and_a_resume() {
        let events = vec![
            Event::RunStarted {
                run_id: "r1".into(),
                workflow: "wf".into(),
                nodes: vec!["a".into(), "b".into(), "c".into()],
                inputs: BTreeMap::new(),
                pid: 1,
                digest: String::new(),
            },
            Event::NodeStarted {
                node: "a".into(),
                attempt: 1,
            },
            Event::NodeFailed {
                node: "a".into(),
                error: "exited with code 1".into(),
                exit_code: Some(1),
                will_retry: true,
                output: String::new(),
                usage: None,
                log_tail: Vec::new(),
                log: None,
            },
            Event::NodeStarted {
                node: "a".into(),
                attempt: 2,
            },
            Event::NodeSucceeded {
                node: "a".into(),
                output: "hello".into(),
                usage: None,
            },
            Event::NodeStarted {
                node: "b".into(),
                attempt: 1,
            },
            Event::NodeSkipped {
                node: "c".into(),
                reason: "`when` is false".into(),
            },
        ];
        let records: Vec<Record> = events
            .into_iter()
            .enumerate()
            .map(|(i, e)| rec(i as u64 + 1, e))
            .collect();
        let state = RunState::from_records(&records);
        assert_eq!(state.run_id, "r1");
        let a = state.node("a").unwrap();
        assert_eq!((a.status, a.attempt), (NodeStatus::Success, 2));
        assert_eq!(a.output.as_deref(), Some("hello"));
        assert_eq!(a.error, None);
        assert_eq!(state.node("b").unwrap().status, NodeStatus::Running);
        assert_eq!(state.node("c").unwrap().status, NodeStatus::Skipped);
        assert_eq!(state.status, RunStatus::Running);
        assert_eq!(state.status_given(false), RunStatus::Interrupted);
        assert_eq!(state.status_given(true), RunStatus::Running);

        let mut state = state;
        state.apply(&rec(
            8,
            Event::RunResumed {
                pid: 2,
                from: None,
                reset: vec!["b".into(), "c".into()],
            },
        ));
        assert_eq!(state.node("b").unwrap().status, NodeStatus::Pending);
        assert_eq!(state.node("c").unwrap().skip_reason, None);
        assert_eq!(state.node("a").unwrap().status, NodeStatus::Success);
        assert_eq!(state.resumes, 1);
        assert_eq!(state.last_seq, 8);
    }

    #[test]
    fn sizes_read_like_people_write_them() {
        assert_eq!(size_text(300), "300 B");
        assert_eq!(size_text(1 << 20), "1 MiB");
        assert_eq!(size_text(3040870), "2.9 MiB");
        assert_eq!(size_text(12 * 1024 + 10), "12 KiB");
    }

    #[test]
    fn sessions_approvals_and_iterations() {
        let mut s = RunState::new();
        s.apply(&rec(
            1,
            Event::AgentSession {
                node: "plan".into(),
                session: "impl".into(),
                session_id: "u-1".into(),
                thread_usage: None,
            },
        ));
        s.apply(&rec(
            2,
            Event::ApprovalRequested {
                node: "gate".into(),
                message: "ok?".into(),
                request: "q-1".into(),
            },
        ));
        s.apply(&rec(
            3,
            Event::ApprovalAnswered {
                node: "gate".into(),
                approved: false,
                by: "ann".into(),
                comment: None,
                request: "q-1".into(),
            },
        ));
        s.apply(&rec(
            4,
            Event::LoopIteration {
                node: "l".into(),
                iteration: 1,
                output: "x".into(),
                status: IterationStatus::Continue,
            },
        ));
        s.apply(&rec(
            5,
            Event::RunPaused {
                waiting: vec!["gate".into()],
            },
        ));
        assert_eq!(s.sessions.get("impl").map(String::as_str), Some("u-1"));
        let gate = s.node("gate").unwrap();
        assert_eq!(gate.status, NodeStatus::Waiting);
        assert!(
            !gate
                .approval
                .as_ref()
                .unwrap()
                .answer
                .as_ref()
                .unwrap()
                .approved
        );
        assert_eq!(s.node("l").unwrap().iterations.len(), 1);
        assert_eq!(s.status, RunStatus::Waiting);
        assert_eq!(s.status_given(false), RunStatus::Waiting);
    }
}
