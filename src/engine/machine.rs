//! The scheduler's decisions as a pure state machine: inputs in, decisions out.
//!
//! [`Machine`] holds everything the scheduler decides on — each node's status and value, how
//! many of its dependencies are still unsettled, the nodes whose dependencies have all settled
//! but that are not decided yet, the ready queue (critical path first, [`Plan::ready`]) and the
//! concurrency cap — and nothing else: no I/O, no clock, no randomness, no recorder. Given the
//! same inputs it makes the same decisions, so the local tokio scheduler
//! ([`super::scheduler`]) and a durable workflow engine can both drive it without restating the
//! semantics.
//!
//! A driver feeds [`Input`]s to [`Machine::step`] and carries out the [`Decision`]s it returns,
//! in order: it records the event each decision stands for, starts attempts, waits before
//! retries, and watches waiting gates for their answers.
//!
//! Nodes live in plain vectors indexed like the [`Plan`], and grow at run time: a fan-out
//! (`for_each`) whose trigger rule and `when` let it run is not started but expanded
//! ([`Decision::Expand`]: the driver lists its items, which may take I/O, records them and
//! answers [`Input::Expanded`]). Each item then adds one node at the end of every vector, the
//! instance `ID[KEY]`: the fan-out's settings and templates, its own item, no dependencies of
//! its own (the fan-out's have settled) and the fan-out as its only dependent. The fan-out
//! itself takes no slot; `max_parallel` caps its running instances, and once they have all
//! settled it settles too ([`Decision::FanOutSettled`]), its output the JSON array of theirs.
//! A resumed run re-adds the instances of the recorded expansion, never expanding again.

use std::collections::BinaryHeap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value as Json;

use super::context::{self, NodeValue, RunInfo};
use super::plan::{Plan, Ready};
use super::trigger;
use crate::store::{FanOutItem, NodeStatus, RunDir, RunState, RunStatus, Truncation};
use crate::workflow::template::is_truthy;
use crate::workflow::TemplateField;
use crate::workflow::Trigger;

/// Longest wait between two attempts.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);

/// How a run is paced.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// Nodes running at once (at least one); a node waiting for its next attempt counts.
    pub concurrency: usize,
    /// Wait before the first retry; it doubles for each later one, up to [`MAX_RETRY_DELAY`].
    pub retry_delay: Duration,
}

/// The wait before the attempt after failed attempt `attempt` (from 1).
pub fn retry_delay(first: Duration, attempt: u32) -> Duration {
    first
        .saturating_mul(1 << attempt.saturating_sub(1).min(16))
        .min(MAX_RETRY_DELAY)
}

/// What happened, as the driver tells it.
#[derive(Debug, Clone)]
pub enum Input {
    /// The run begins (or resumes): decide what can be decided.
    Begin,
    /// An attempt of a node ended.
    AttemptEnded {
        /// The node.
        node: usize,
        /// Which attempt, from 1.
        attempt: u32,
        /// How it ended.
        ended: Ended,
    },
    /// The items of a fan-out the machine asked for ([`Decision::Expand`]), recorded by the
    /// driver, or why there are none (the fan-out then fails).
    Expanded {
        /// The fan-out.
        node: usize,
        /// Its items in order, or what went wrong.
        items: Result<Vec<FanOutItem>, super::fanout::FanOutError>,
    },
    /// A waiting gate has its answer (or its timeout passed): look at it again.
    GateReady {
        /// The gate.
        node: usize,
    },
    /// The run is cancelled: nothing new starts or is decided.
    Cancel,
}

/// How an attempt ended.
#[derive(Debug, Clone)]
pub enum Ended {
    /// It settled for good: succeeded, was cancelled, or failed in a way the driver settles
    /// itself (no runner, a task that died).
    Settled {
        /// Its status.
        status: NodeStatus,
        /// Its output.
        output: String,
        /// Set when the output holds less than the node printed.
        truncated: Option<Truncation>,
        /// The artifacts folder of a `workflow:` node's child run, which the driver looked up
        /// ([`super::subflow::noted_artifacts`]): the machine itself reads no files.
        artifacts: Option<PathBuf>,
    },
    /// It failed; whether another attempt follows is the machine's decision
    /// ([`Decision::Retry`] first among the decisions, or none: it failed for good).
    Failed {
        /// Another attempt could help.
        retryable: bool,
        /// What it printed before failing.
        output: String,
        /// Set when the output holds less than the node printed.
        truncated: Option<Truncation>,
        /// As for [`Ended::Settled`].
        artifacts: Option<PathBuf>,
    },
    /// It is a gate waiting for its answer.
    Waiting,
}

/// What the driver does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Start the node's attempt (1 for a node's first; a gate looked at again also starts
    /// at 1).
    Start {
        /// The node.
        node: usize,
        /// The attempt.
        attempt: u32,
    },
    /// The attempt that just failed is retried: wait `delay`, then start `attempt`. The node
    /// keeps its slot meanwhile.
    Retry {
        /// The node.
        node: usize,
        /// The next attempt.
        attempt: u32,
        /// How long to wait first.
        delay: Duration,
    },
    /// The node does not run, for this reason.
    Skip {
        /// The node.
        node: usize,
        /// Why, in words.
        reason: String,
    },
    /// The node fails without running (its `when` cannot be rendered).
    Fail {
        /// The node.
        node: usize,
        /// What went wrong, in words.
        error: String,
    },
    /// List the items of a fan-out and answer with [`Input::Expanded`]. It takes no slot.
    Expand {
        /// The fan-out.
        node: usize,
    },
    /// Every instance of a fan-out has settled, and so does the fan-out: record it so
    /// (`node_succeeded` with `output`, `node_failed` with `error`, or `node_cancelled`).
    FanOutSettled {
        /// The fan-out.
        node: usize,
        /// `success`, `failed` or `cancelled`.
        status: NodeStatus,
        /// The JSON array of the instances' outputs, in item order.
        output: String,
        /// Why it failed.
        error: Option<String>,
    },
    /// Nothing runs and nothing more can start: the run ended so.
    Finish {
        /// How.
        status: RunStatus,
    },
    /// Nothing runs and only gates are left, waiting for answers (node ids). An answer
    /// ([`Input::GateReady`]) still continues the run.
    Pause {
        /// The waiting gates.
        waiting: Vec<String>,
    },
}

/// The scheduler's state; see the module docs.
#[derive(Clone)]
pub struct Machine {
    plan: Arc<Plan>,
    base: Json,
    dir: RunDir,
    pace: Pace,
    status: Vec<NodeStatus>,
    values: Vec<Option<Arc<NodeValue>>>,
    unsettled_deps: Vec<usize>,
    undecided: Vec<usize>,
    ready: BinaryHeap<Ready>,
    running: usize,
    cancelled: bool,
    finished: bool,
    /// Per node: the plan node whose settings and templates it runs (itself, or an
    /// instance's fan-out).
    template: Vec<usize>,
    /// The instances, from index `plan.len()` on.
    instances: Vec<Instance>,
    /// Per plan node: its instances, once it is expanded.
    fan_outs: Vec<Option<FanOut>>,
    /// Fan-outs asked for ([`Decision::Expand`]) and not answered yet.
    expanding: usize,
    /// Fan-outs whose every instance has settled, to settle in turn.
    fan_outs_done: Vec<usize>,
}

/// One instance of a fan-out.
#[derive(Debug, Clone)]
struct Instance {
    id: String,
    item: Json,
    index: usize,
}

/// A fan-out's instances.
#[derive(Debug, Clone, Default)]
struct FanOut {
    /// Their node indices, in item order.
    nodes: Vec<usize>,
    /// How many have not settled.
    unsettled: usize,
    /// How many are running (a retry's wait included).
    active: usize,
}

impl fmt::Debug for Machine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Machine")
            .field("status", &self.status)
            .field("unsettled_deps", &self.unsettled_deps)
            .field("undecided", &self.undecided)
            .field("ready", &self.ready)
            .field("running", &self.running)
            .field("cancelled", &self.cancelled)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl Machine {
    /// A machine for `plan`, with the nodes `settled` already holds as settled (a resume)
    /// and the run's template context (`when` is rendered against it).
    pub fn new(plan: Arc<Plan>, run: &RunInfo, settled: &RunState, pace: Pace) -> Self {
        let n = plan.len();
        let mut status = vec![NodeStatus::Pending; n];
        let mut values = vec![None; n];
        for i in 0..n {
            if let Some(node) = settled.node(plan.id(i)) {
                if node.status.is_settled() {
                    status[i] = node.status;
                    let output = node.output.clone().unwrap_or_default();
                    let file = output_path(&plan, &run.dir, i, node.status);
                    values[i] = Some(Arc::new(
                        NodeValue::new(node.status, output)
                            .with_file(file, node.output_truncated)
                            .with_artifacts(super::subflow::child_artifacts(&run.dir, node)),
                    ));
                }
            }
        }
        let unsettled_deps: Vec<usize> = (0..n)
            .map(|i| {
                plan.dag.deps[i]
                    .iter()
                    .filter(|&&d| !status[d].is_settled())
                    .count()
            })
            .collect();
        // A fan-out expanded before (and not settled) is running again, over the same items.
        let expanded: Vec<(usize, Vec<FanOutItem>)> = (0..n)
            .filter(|&i| !status[i].is_settled())
            .filter_map(|i| Some((i, settled.node(plan.id(i))?.fan_out.clone()?)))
            .collect();
        for (i, _) in &expanded {
            status[*i] = NodeStatus::Running;
        }
        let undecided = (0..n)
            .rev()
            .filter(|&i| status[i] == NodeStatus::Pending && unsettled_deps[i] == 0)
            .collect();
        let mut machine = Self {
            base: run.base_context(),
            dir: run.dir.clone(),
            pace,
            status,
            values,
            unsettled_deps,
            undecided,
            ready: BinaryHeap::new(),
            running: 0,
            cancelled: false,
            finished: false,
            template: (0..n).collect(),
            instances: Vec::new(),
            fan_outs: vec![None; n],
            expanding: 0,
            fan_outs_done: Vec::new(),
            plan,
        };
        for i in 0..n {
            if machine.plan.workflow.nodes[i].fans_out() {
                if let Some(v) = machine.values[i].take() {
                    machine.values[i] = Some(Arc::new(with_outputs(&v)));
                }
            }
        }
        for (i, items) in expanded {
            machine.add_instances(i, items, Some(settled));
        }
        machine
    }

    /// Adds the instances of fan-out `f`, one per item, with what `settled` says of them (a
    /// resume).
    fn add_instances(&mut self, f: usize, items: Vec<FanOutItem>, settled: Option<&RunState>) {
        let mut fan_out = FanOut::default();
        for (index, item) in items.into_iter().enumerate() {
            let i = self.status.len();
            let id = super::fanout::instance_id(self.plan.id(f), &item.key);
            let prior = settled
                .and_then(|s| s.node(&id))
                .filter(|n| n.status.is_settled());
            match prior {
                Some(node) => {
                    let output = node.output.clone().unwrap_or_default();
                    self.status.push(node.status);
                    self.values
                        .push(Some(Arc::new(NodeValue::new(node.status, output))));
                }
                None => {
                    self.status.push(NodeStatus::Pending);
                    self.values.push(None);
                    fan_out.unsettled += 1;
                    self.ready.push(Ready {
                        priority: self.plan.priority[f],
                        index: i,
                    });
                }
            }
            self.unsettled_deps.push(0);
            self.template.push(f);
            self.instances.push(Instance {
                id,
                item: item.value,
                index,
            });
            fan_out.nodes.push(i);
        }
        if fan_out.unsettled == 0 {
            self.fan_outs_done.push(f);
        }
        self.fan_outs[f] = Some(fan_out);
    }

    /// The fan-out node `i` is an instance of, if it is one.
    pub fn fan_out_of(&self, i: usize) -> Option<usize> {
        (i >= self.plan.len()).then(|| self.template[i])
    }

    /// Number of nodes, instances included.
    pub fn len(&self) -> usize {
        self.status.len()
    }

    /// True when there are no nodes.
    pub fn is_empty(&self) -> bool {
        self.status.is_empty()
    }

    /// The id of node `i`: the plan's, or `ID[KEY]` for an instance.
    pub fn id(&self, i: usize) -> &str {
        match i.checked_sub(self.plan.len()) {
            Some(k) => &self.instances[k].id,
            None => self.plan.id(i),
        }
    }

    /// The plan node whose settings and templates node `i` runs: itself, or an instance's
    /// fan-out.
    pub fn template(&self, i: usize) -> usize {
        self.template[i]
    }

    /// The item of instance `i` and its place in the list.
    pub fn item(&self, i: usize) -> Option<(&Json, usize)> {
        let k = i.checked_sub(self.plan.len())?;
        let instance = &self.instances[k];
        Some((&instance.item, instance.index))
    }

    /// Takes a slot for node `i`.
    fn occupy(&mut self, i: usize) {
        self.running += 1;
        if let Some(f) = self.fan_out_of(i) {
            if let Some(fan_out) = self.fan_outs[f].as_mut() {
                fan_out.active += 1;
            }
        }
    }

    /// Gives node `i`'s slot back.
    fn release(&mut self, i: usize) {
        self.running -= 1;
        if let Some(f) = self.fan_out_of(i) {
            if let Some(fan_out) = self.fan_outs[f].as_mut() {
                fan_out.active -= 1;
            }
        }
    }

    /// True when instance `i` may not start yet: its fan-out runs `max_parallel` already.
    fn held_back(&self, i: usize) -> bool {
        let Some(f) = self.fan_out_of(i) else {
            return false;
        };
        let max = self.plan.workflow.nodes[f]
            .max_parallel
            .as_ref()
            .map(|m| m.value as usize);
        match (max, &self.fan_outs[f]) {
            (Some(max), Some(fan_out)) => fan_out.active >= max,
            _ => false,
        }
    }

    /// Takes one input and returns what follows from it, in the order the driver carries it
    /// out. After [`Decision::Finish`] nothing more is decided.
    pub fn step(&mut self, input: Input) -> Vec<Decision> {
        let mut out = Vec::new();
        if self.finished {
            return out;
        }
        match input {
            Input::Begin => {}
            Input::Cancel => self.cancelled = true,
            Input::Expanded { node, items } => {
                if self.status[node] != NodeStatus::Running || self.fan_outs[node].is_some() {
                    return out; // not an expansion the machine asked for
                }
                self.expanding -= 1;
                match items {
                    Ok(items) => self.add_instances(node, items, None),
                    Err(error) => {
                        let error = error.to_string();
                        out.push(Decision::Fail { node, error });
                        self.settle(node, NodeStatus::Failed, String::new(), None);
                    }
                }
            }
            Input::GateReady { node } => {
                if self.status[node] == NodeStatus::Waiting && !self.cancelled {
                    self.status[node] = NodeStatus::Pending;
                    self.ready.push(self.plan.ready(node));
                }
            }
            Input::AttemptEnded {
                node,
                attempt,
                ended,
            } => {
                if self.status[node] != NodeStatus::Running {
                    return out; // not an attempt the machine started
                }
                match ended {
                    Ended::Settled {
                        status,
                        output,
                        truncated,
                        artifacts,
                    } => {
                        self.release(node);
                        self.settle_with(node, status, output, truncated, artifacts);
                    }
                    Ended::Failed {
                        retryable,
                        output,
                        truncated,
                        artifacts,
                    } => {
                        if retryable && self.retries_left(node, attempt) && !self.cancelled {
                            out.push(Decision::Retry {
                                node,
                                attempt: attempt + 1,
                                delay: retry_delay(self.pace.retry_delay, attempt),
                            });
                        } else {
                            self.release(node);
                            self.settle_with(
                                node,
                                NodeStatus::Failed,
                                output,
                                truncated,
                                artifacts,
                            );
                        }
                    }
                    Ended::Waiting => {
                        self.release(node);
                        self.status[node] = NodeStatus::Waiting;
                    }
                }
            }
        }
        self.advance(&mut out);
        out
    }

    /// Decides what can be decided, fills the free slots, and says when the run is over.
    fn advance(&mut self, out: &mut Vec<Decision>) {
        if !self.cancelled {
            // A fan-out that settles decides its dependents.
            self.settle_fan_outs(out);
            while let Some(i) = self.undecided.pop() {
                if self.status[i] == NodeStatus::Pending {
                    self.decide(i, out);
                }
            }
            let mut held = Vec::new();
            while self.running < self.pace.concurrency.max(1) {
                let Some(next) = self.ready.pop() else { break };
                if self.status[next.index] != NodeStatus::Pending {
                    continue; // never start a node twice
                }
                if self.held_back(next.index) {
                    held.push(next);
                    continue;
                }
                self.status[next.index] = NodeStatus::Running;
                self.occupy(next.index);
                out.push(Decision::Start {
                    node: next.index,
                    attempt: 1,
                });
            }
            self.ready.extend(held);
        }
        // A cancelled run does not wait for a listing of items: that may never end (a walk
        // blocked on a FIFO), and a late answer is ignored (the fan-out has settled).
        if self.running > 0 || (self.expanding > 0 && !self.cancelled) {
            return;
        }
        if self.cancelled {
            // A fan-out cut short, or whose items were still being listed, is cancelled; a
            // resume runs its instances that did not finish (or lists its items then).
            for f in 0..self.plan.len() {
                let fans_out = self.fan_outs[f].is_some() || self.plan.workflow.nodes[f].fans_out();
                if fans_out && self.status[f] == NodeStatus::Running {
                    self.status[f] = NodeStatus::Cancelled;
                    out.push(Decision::FanOutSettled {
                        node: f,
                        status: NodeStatus::Cancelled,
                        output: String::new(),
                        error: None,
                    });
                }
            }
        }
        let failed = (0..self.status.len())
            .any(|i| self.status[i] == NodeStatus::Failed && !self.handled(i));
        let waiting = self.waiting();
        if self.cancelled {
            self.finish(RunStatus::Cancelled, out);
        } else if failed {
            self.finish(RunStatus::Failed, out);
        } else if !waiting.is_empty() {
            out.push(Decision::Pause { waiting });
        } else {
            self.finish(RunStatus::Success, out);
        }
    }

    fn finish(&mut self, status: RunStatus, out: &mut Vec<Decision>) {
        self.finished = true;
        out.push(Decision::Finish { status });
    }

    fn decide(&mut self, i: usize, out: &mut Vec<Decision>) {
        let plan = self.plan.clone();
        let deps: Vec<(&str, NodeStatus)> = plan.dag.deps[i]
            .iter()
            .map(|&d| (plan.id(d), self.status[d]))
            .collect();
        if let trigger::Decision::Skip(reason) = trigger::decide(plan.settings[i].trigger, &deps) {
            out.push(Decision::Skip { node: i, reason });
            return self.settle(i, NodeStatus::Skipped, String::new(), None);
        }
        if plan.has(i, TemplateField::When) {
            match plan.render(i, TemplateField::When, &self.context(i)) {
                Ok(text) if !is_truthy(&text) => {
                    let shown: String = text.trim().chars().take(60).collect();
                    let reason = format!("`when` is false (it rendered `{shown}`)");
                    out.push(Decision::Skip { node: i, reason });
                    return self.settle(i, NodeStatus::Skipped, String::new(), None);
                }
                Ok(_) => {}
                Err(e) => {
                    let error = format!("cannot render `when`: {e}");
                    out.push(Decision::Fail { node: i, error });
                    return self.settle(i, NodeStatus::Failed, String::new(), None);
                }
            }
        }
        if plan.workflow.nodes[i].fans_out() {
            self.status[i] = NodeStatus::Running;
            self.expanding += 1;
            out.push(Decision::Expand { node: i });
            return;
        }
        self.ready.push(plan.ready(i));
    }

    /// Settles the fan-outs whose instances have all settled: success when every instance
    /// succeeded (or `min_success` of them), else failed; the output is their outputs.
    fn settle_fan_outs(&mut self, out: &mut Vec<Decision>) {
        while let Some(f) = self.fan_outs_done.pop() {
            let Some(fan_out) = &self.fan_outs[f] else {
                continue;
            };
            let statuses: Vec<NodeStatus> = fan_out.nodes.iter().map(|&i| self.status[i]).collect();
            let outputs: Vec<&str> = fan_out
                .nodes
                .iter()
                .map(|&i| self.values[i].as_deref().map_or("", |v| v.output.as_str()))
                .collect();
            let output = super::fanout::outputs(&outputs);
            let min = self.plan.workflow.nodes[f]
                .min_success
                .as_ref()
                .map(|m| m.value);
            let (status, error) = match super::fanout::outcome(&statuses, min) {
                Ok(()) => (NodeStatus::Success, None),
                Err(why) => (NodeStatus::Failed, Some(why.to_string())),
            };
            out.push(Decision::FanOutSettled {
                node: f,
                status,
                output: output.clone(),
                error,
            });
            self.settle(f, status, output, None);
        }
    }

    /// True when a retryable failure of attempt `attempt` of node `i` is retried: the node's
    /// `retries` allow another attempt (and the run is not cancelled meanwhile). A driver that
    /// records the failure before the machine sees it (a Temporal worker) asks this first.
    pub fn retries_left(&self, i: usize, attempt: u32) -> bool {
        attempt <= self.plan.settings[self.template[i]].retries
    }

    fn settle(&mut self, i: usize, status: NodeStatus, output: String, t: Option<Truncation>) {
        self.settle_with(i, status, output, t, None);
    }

    fn settle_with(
        &mut self,
        i: usize,
        status: NodeStatus,
        output: String,
        t: Option<Truncation>,
        artifacts: Option<PathBuf>,
    ) {
        self.status[i] = status;
        let file = output_path(&self.plan, &self.dir, i, status);
        let value = NodeValue::new(status, output)
            .with_file(file, t)
            .with_artifacts(artifacts);
        let fans_out = i < self.plan.len() && self.plan.workflow.nodes[i].fans_out();
        self.values[i] = Some(Arc::new(if fans_out {
            with_outputs(&value)
        } else {
            value
        }));
        if let Some(f) = self.fan_out_of(i) {
            if let Some(fan_out) = self.fan_outs[f].as_mut() {
                fan_out.unsettled -= 1;
                if fan_out.unsettled == 0 {
                    self.fan_outs_done.push(f);
                }
            }
            return;
        }
        for &d in &self.plan.dag.dependents[i] {
            self.unsettled_deps[d] -= 1;
            if self.unsettled_deps[d] == 0 && self.status[d] == NodeStatus::Pending {
                self.undecided.push(d);
            }
        }
    }

    /// A failed node is *handled* when its failure does not fail the run: it has
    /// `continue_on_error`, or a node ran *because of* the failure: one whose `when` reads
    /// this node's status (a rework branch), or a direct dependent with `trigger: one_success`.
    /// A dependent that merely runs anyway (`trigger: all_done` cleanup) does not hide it.
    pub fn handled(&self, i: usize) -> bool {
        if self.fan_out_of(i).is_some() {
            return true; // its fan-out's status says whether it matters
        }
        let plan = &self.plan;
        let ran = |d: usize| {
            matches!(
                self.status[d],
                NodeStatus::Success
                    | NodeStatus::Failed
                    | NodeStatus::Running
                    | NodeStatus::Waiting
            )
        };
        plan.settings[i].continue_on_error
            || plan.dag.dependents[i]
                .iter()
                .any(|&d| ran(d) && plan.settings[d].trigger == Trigger::OneSuccess)
            || (0..plan.len()).any(|d| ran(d) && plan.when_reads_status_of(d, i))
    }

    /// The status of node `i`.
    pub fn status(&self, i: usize) -> NodeStatus {
        self.status[i]
    }

    /// The gates waiting for an answer, by id.
    pub fn waiting(&self) -> Vec<String> {
        (0..self.status.len())
            .filter(|&i| self.status[i] == NodeStatus::Waiting)
            .map(|i| self.id(i).to_string())
            .collect()
    }

    /// True while a gate waits for its answer.
    pub fn has_waiting(&self) -> bool {
        self.status.contains(&NodeStatus::Waiting)
    }

    /// True once [`Input::Cancel`] came.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled
    }

    /// The value of settled node `i`.
    pub fn value(&self, i: usize) -> Option<&NodeValue> {
        self.values[i].as_deref()
    }

    /// The settled values node `i` can read: those of the nodes it depends on, directly or not.
    pub fn upstream(&self, i: usize) -> Vec<(&str, &NodeValue)> {
        self.plan
            .ancestors
            .of(self.template[i])
            .filter_map(|a| self.values[a].as_deref().map(|v| (self.plan.id(a), v)))
            .collect()
    }

    /// The template context of node `i`.
    pub fn context(&self, i: usize) -> Json {
        let context = context::with_nodes(self.base.clone(), self.upstream(i));
        match self.item(i) {
            Some((item, index)) => super::fanout::with_item(context, item, index),
            None => context,
        }
    }
}

/// A fan-out's value: `outputs` is its output, the JSON text of an array (`[]` when it did not
/// run), so `{{nodes.ID.outputs}}` renders as JSON; `{{nodes.ID.json}}` is the array itself.
fn with_outputs(v: &NodeValue) -> NodeValue {
    let outputs = match &v.json {
        Some(Json::Array(_)) => Json::String(v.output.clone()),
        _ => Json::String("[]".into()),
    };
    let mut v = v.clone();
    v.outputs = Some(outputs);
    v
}

/// Where the whole output of node `i` is kept (`{{nodes.ID.output_file}}`): only for a node
/// that ran and has dependents.
pub fn output_path(
    plan: &Plan,
    dir: &RunDir,
    i: usize,
    status: NodeStatus,
) -> Option<std::path::PathBuf> {
    (i < plan.len()
        && matches!(status, NodeStatus::Success | NodeStatus::Failed)
        && !plan.dag.dependents[i].is_empty())
    .then(|| context::output_file(&dir.node_dir(plan.id(i))))
}

#[cfg(test)]
mod tests {
    //! The machine as data: inputs in, decisions out, no processes.

    use super::*;
    use crate::source::SourceFile;
    use crate::store::{Event, Record};
    use crate::workflow::command_file::DirCommands;
    use crate::workflow::load_source;

    const SECOND: Duration = Duration::from_secs(1);

    /// A machine for `yaml` with `concurrency` slots and the settled nodes `events` hold.
    fn machine(yaml: &str, concurrency: usize, events: Vec<Event>) -> Machine {
        let wf = load_source(SourceFile::new("t.yaml", yaml))
            .workflow
            .unwrap();
        let plan = Arc::new(Plan::new(wf, &DirCommands::default()).unwrap());
        let dir = RunDir {
            id: "r".into(),
            path: "/nonexistent/.reins/runs/r".into(),
        };
        let run = RunInfo::new(
            "r".into(),
            "t".into(),
            "/nonexistent".into(),
            dir,
            [].into(),
        );
        let records: Vec<Record> = events
            .into_iter()
            .enumerate()
            .map(|(i, event)| Record {
                seq: i as u64 + 1,
                ts: std::time::SystemTime::UNIX_EPOCH,
                event,
            })
            .collect();
        let pace = Pace {
            concurrency,
            retry_delay: SECOND,
        };
        Machine::new(plan, &run, &RunState::from_records(&records), pace)
    }

    /// Decisions in words, with node ids: `start a#1`, `skip b: why`, `finish success`...
    fn said(m: &Machine, decisions: Vec<Decision>) -> Vec<String> {
        let id = |i: usize| m.id(i).to_string();
        decisions
            .into_iter()
            .map(|d| match d {
                Decision::Start { node, attempt } => format!("start {}#{attempt}", id(node)),
                Decision::Retry {
                    node,
                    attempt,
                    delay,
                } => format!("retry {}#{attempt} in {delay:?}", id(node)),
                Decision::Skip { node, reason } => format!("skip {}: {reason}", id(node)),
                Decision::Fail { node, error } => format!("fail {}: {error}", id(node)),
                Decision::Finish { status } => format!("finish {status}"),
                Decision::Pause { waiting } => format!("pause {}", waiting.join(" ")),
                Decision::Expand { node } => format!("expand {}", id(node)),
                Decision::FanOutSettled {
                    node,
                    status,
                    output,
                    error,
                } => match error {
                    Some(e) => format!("fan-out {} {status}: {e}", id(node)),
                    None => format!("fan-out {} {status} {output}", id(node)),
                },
            })
            .collect()
    }

    fn index(m: &Machine, id: &str) -> usize {
        (0..m.len()).find(|&i| m.id(i) == id).unwrap()
    }

    fn expanded(m: &mut Machine, id: &str, keys: &[&str]) -> Vec<String> {
        let node = index(m, id);
        let items = Ok(keys
            .iter()
            .map(|k| FanOutItem {
                key: k.to_string(),
                value: Json::String(format!("item {k}")),
            })
            .collect());
        let d = m.step(Input::Expanded { node, items });
        said(m, d)
    }

    fn begin(m: &mut Machine) -> Vec<String> {
        let d = m.step(Input::Begin);
        said(m, d)
    }

    fn ended(m: &mut Machine, id: &str, attempt: u32, ended: Ended) -> Vec<String> {
        let node = index(m, id);
        let d = m.step(Input::AttemptEnded {
            node,
            attempt,
            ended,
        });
        said(m, d)
    }

    fn gate_ready(m: &mut Machine, id: &str) -> Vec<String> {
        let node = index(m, id);
        let d = m.step(Input::GateReady { node });
        said(m, d)
    }

    fn settled(status: NodeStatus, output: &str) -> Ended {
        Ended::Settled {
            status,
            output: output.into(),
            truncated: None,
            artifacts: None,
        }
    }

    fn ok(output: &str) -> Ended {
        settled(NodeStatus::Success, output)
    }

    fn failed(retryable: bool) -> Ended {
        Ended::Failed {
            retryable,
            output: String::new(),
            truncated: None,
            artifacts: None,
        }
    }

    #[test]
    fn fan_in_waits_for_every_dependency_and_the_cap_holds() {
        let mut m = machine(
            "nodes:
  - {id: a, bash: x}
  - {id: b, bash: x}
  - {id: c, bash: x, depends_on: [a, b]}
",
            1,
            vec![],
        );
        assert_eq!(begin(&mut m), ["start a#1"]);
        assert_eq!(ended(&mut m, "a", 1, ok("")), ["start b#1"]);
        assert_eq!(ended(&mut m, "b", 1, ok("")), ["start c#1"]);
        assert_eq!(ended(&mut m, "c", 1, ok("")), ["finish success"]);
        assert_eq!(m.step(Input::Begin), [], "nothing after the finish");
    }

    #[test]
    fn the_critical_path_starts_first() {
        let mut m = machine(
            "nodes:
  - {id: short, bash: x, timeout: 1s}
  - {id: long, bash: x, timeout: 10s}
  - {id: after, bash: x, depends_on: [long], timeout: 10s}
",
            1,
            vec![],
        );
        assert_eq!(begin(&mut m), ["start long#1"]);
        assert_eq!(ended(&mut m, "long", 1, ok("")), ["start after#1"]);
        assert_eq!(ended(&mut m, "after", 1, ok("")), ["start short#1"]);
    }

    #[test]
    fn trigger_rules_after_a_failure() {
        let mut m = machine(
            "nodes:
  - {id: a, bash: x}
  - {id: strict, bash: x, depends_on: [a]}
  - {id: cleanup, bash: x, depends_on: [a], trigger: all_done}
  - {id: careful, bash: x, depends_on: [a], trigger: none_failed}
",
            8,
            vec![],
        );
        assert_eq!(begin(&mut m), ["start a#1"]);
        assert_eq!(
            ended(&mut m, "a", 1, failed(false)),
            [
                "skip careful: dependency `a` failed (trigger `none_failed`)",
                "skip strict: dependency `a` failed (trigger `all_success`)",
                "start cleanup#1",
            ]
        );
        // A cleanup that merely runs anyway does not hide the failure.
        assert_eq!(ended(&mut m, "cleanup", 1, ok("")), ["finish failed"]);
    }

    #[test]
    fn a_skip_decides_what_depends_on_it() {
        let mut m = machine(
            "nodes:
  - {id: a, bash: x}
  - {id: b, bash: x, depends_on: [a]}
  - {id: c, bash: x, depends_on: [b]}
  - {id: d, bash: x, depends_on: [c], trigger: all_done}
",
            8,
            vec![],
        );
        begin(&mut m);
        assert_eq!(
            ended(&mut m, "a", 1, settled(NodeStatus::Cancelled, "")),
            [
                "skip b: dependency `a` was cancelled (trigger `all_success`)",
                "skip c: dependency `b` was skipped (trigger `all_success`)",
                "start d#1",
            ]
        );
    }

    #[test]
    fn when_reads_the_values_the_machine_holds() {
        let yaml = "nodes:
  - {id: probe, bash: x}
  - {id: deploy, bash: x, depends_on: [probe], when: '{{nodes.probe.json.deploy}}'}
  - {id: rework, bash: x, depends_on: [probe], when: \"{{eq nodes.probe.status 'failed'}}\"}
";
        let mut m = machine(yaml, 8, vec![]);
        begin(&mut m);
        assert_eq!(
            ended(&mut m, "probe", 1, ok(r#"{"deploy": true}"#)),
            [
                "skip rework: `when` is false (it rendered `false`)",
                "start deploy#1",
            ]
        );
        let mut m = machine(yaml, 8, vec![]);
        begin(&mut m);
        assert_eq!(
            ended(&mut m, "probe", 1, failed(false)),
            [
                "skip rework: dependency `probe` failed (trigger `all_success`)",
                "skip deploy: dependency `probe` failed (trigger `all_success`)",
                "finish failed",
            ]
        );
    }

    #[test]
    fn a_rework_branch_handles_the_failure_it_runs_for() {
        let mut m = machine(
            "nodes:
  - {id: test, bash: x}
  - {id: fix, bash: x, depends_on: [test], trigger: all_done, when: \"{{eq nodes.test.status 'failed'}}\"}
",
            8,
            vec![],
        );
        begin(&mut m);
        assert_eq!(ended(&mut m, "test", 1, failed(false)), ["start fix#1"]);
        assert_eq!(ended(&mut m, "fix", 1, ok("")), ["finish success"]);
    }

    #[test]
    fn continue_on_error_and_one_success_handle_a_failure() {
        let mut m = machine(
            "nodes:
  - {id: lint, bash: x, continue_on_error: true}
  - {id: a, bash: x}
  - {id: b, bash: x}
  - {id: either, bash: x, depends_on: [a, b], trigger: one_success}
",
            8,
            vec![],
        );
        // `a` and `b` have more work behind them.
        assert_eq!(begin(&mut m), ["start a#1", "start b#1", "start lint#1"]);
        assert_eq!(
            ended(&mut m, "lint", 1, failed(false)),
            Vec::<String>::new()
        );
        assert_eq!(ended(&mut m, "a", 1, failed(false)), Vec::<String>::new());
        assert_eq!(ended(&mut m, "b", 1, ok("")), ["start either#1"]);
        assert_eq!(ended(&mut m, "either", 1, ok("")), ["finish success"]);
    }

    #[test]
    fn retries_back_off_exponentially_and_keep_their_slot() {
        let mut m = machine(
            "nodes:
  - {id: flaky, bash: x, retries: 3}
  - {id: other, bash: x}
",
            1,
            vec![],
        );
        assert_eq!(begin(&mut m), ["start flaky#1"]);
        assert_eq!(
            ended(&mut m, "flaky", 1, failed(true)),
            ["retry flaky#2 in 1s"]
        );
        assert_eq!(
            ended(&mut m, "flaky", 2, failed(true)),
            ["retry flaky#3 in 2s"]
        );
        assert_eq!(
            ended(&mut m, "flaky", 3, failed(true)),
            ["retry flaky#4 in 4s"]
        );
        assert_eq!(ended(&mut m, "flaky", 4, failed(true)), ["start other#1"]);
        assert_eq!(ended(&mut m, "other", 1, ok("")), ["finish failed"]);
        assert_eq!(retry_delay(SECOND, 7), MAX_RETRY_DELAY);
        assert_eq!(retry_delay(SECOND, u32::MAX), MAX_RETRY_DELAY);
    }

    #[test]
    fn a_failure_retries_cannot_help_is_final() {
        let mut m = machine("nodes:\n  - {id: a, bash: x, retries: 5}\n", 1, vec![]);
        begin(&mut m);
        assert_eq!(ended(&mut m, "a", 1, failed(false)), ["finish failed"]);
    }

    #[test]
    fn a_gate_waits_then_its_answer_continues_the_branch() {
        let mut m = machine(
            "nodes:
  - {id: gate, approval: Ship?}
  - {id: ship, bash: x, depends_on: [gate]}
  - {id: other, bash: x}
",
            8,
            vec![],
        );
        assert_eq!(begin(&mut m), ["start gate#1", "start other#1"]);
        assert_eq!(
            ended(&mut m, "gate", 1, Ended::Waiting),
            Vec::<String>::new()
        );
        assert!(m.has_waiting());
        assert_eq!(ended(&mut m, "other", 1, ok("")), ["pause gate"]);
        assert_eq!(gate_ready(&mut m, "gate"), ["start gate#1"]);
        assert_eq!(
            gate_ready(&mut m, "gate"),
            Vec::<String>::new(),
            "started once"
        );
        assert_eq!(ended(&mut m, "gate", 1, ok("")), ["start ship#1"]);
        assert_eq!(ended(&mut m, "ship", 1, ok("")), ["finish success"]);
    }

    #[test]
    fn cancel_starts_and_decides_nothing_new() {
        let mut m = machine(
            "nodes:
  - {id: a, bash: x}
  - {id: b, bash: x}
  - {id: after, bash: x, depends_on: [a]}
  - {id: gate, approval: Ship?}
",
            2,
            vec![],
        );
        assert_eq!(begin(&mut m), ["start a#1", "start b#1"]);
        assert_eq!(m.step(Input::Cancel), []);
        assert_eq!(ended(&mut m, "a", 1, ok("")), Vec::<String>::new());
        assert_eq!(m.status(index(&m, "after")), NodeStatus::Pending);
        assert_eq!(
            ended(&mut m, "b", 1, settled(NodeStatus::Cancelled, "")),
            ["finish cancelled"]
        );
        assert_eq!(m.status(index(&m, "gate")), NodeStatus::Pending);
    }

    #[test]
    fn a_retry_after_cancel_does_not_happen() {
        let mut m = machine("nodes:\n  - {id: a, bash: x, retries: 2}\n", 1, vec![]);
        begin(&mut m);
        m.step(Input::Cancel);
        assert_eq!(ended(&mut m, "a", 1, failed(true)), ["finish cancelled"]);
    }

    #[test]
    fn a_resume_starts_from_the_settled_state() {
        let done = |node: &str, output: &str| {
            [
                Event::NodeStarted {
                    node: node.into(),
                    attempt: 1,
                },
                Event::NodeSucceeded {
                    node: node.into(),
                    output: output.into(),
                    usage: None,
                },
            ]
        };
        let mut events: Vec<Event> = done("a", "from before").into();
        // `b` was running when the run was killed: it runs again.
        events.push(Event::NodeStarted {
            node: "b".into(),
            attempt: 1,
        });
        let mut m = machine(
            "nodes:
  - {id: a, bash: x}
  - {id: b, bash: x, depends_on: [a]}
  - {id: c, bash: x, depends_on: [b]}
",
            8,
            events,
        );
        assert_eq!(begin(&mut m), ["start b#1"]);
        let b = index(&m, "b");
        assert_eq!(m.context(b)["nodes"]["a"]["output"], "from before");
        assert_eq!(ended(&mut m, "b", 1, ok("")), ["start c#1"]);
        assert_eq!(ended(&mut m, "c", 1, ok("")), ["finish success"]);
    }

    #[test]
    fn a_fan_out_expands_caps_its_instances_and_gathers_their_outputs() {
        let mut m = machine(
            "nodes:
  - {id: a, bash: x}
  - {id: f, bash: x, depends_on: [a], for_each: '{{nodes.a.output}}', max_parallel: 2}
  - {id: g, bash: x, depends_on: [f]}
",
            8,
            vec![],
        );
        assert_eq!(begin(&mut m), ["start a#1"]);
        assert_eq!(ended(&mut m, "a", 1, ok("x\ny\nz")), ["expand f"]);
        assert_eq!(m.status(index(&m, "f")), NodeStatus::Running);
        assert_eq!(
            expanded(&mut m, "f", &["x", "y", "z"]),
            ["start f[x]#1", "start f[y]#1"]
        );
        let fy = index(&m, "f[y]");
        assert_eq!(m.context(fy)["item"], "item y");
        assert_eq!(m.context(fy)["item_index"], 1);
        assert_eq!(
            m.upstream(fy).len(),
            1,
            "an instance reads what its fan-out reads"
        );
        assert_eq!(ended(&mut m, "f[y]", 1, ok("Y")), ["start f[z]#1"]);
        assert_eq!(ended(&mut m, "f[x]", 1, ok("X")), Vec::<String>::new());
        assert_eq!(
            ended(&mut m, "f[z]", 1, ok("Z")),
            [r#"fan-out f success ["X","Y","Z"]"#, "start g#1"]
        );
        let g = index(&m, "g");
        assert_eq!(m.context(g)["nodes"]["f"]["outputs"], r#"["X","Y","Z"]"#);
        assert_eq!(m.context(g)["nodes"]["f"]["json"][2], "Z");
        assert_eq!(ended(&mut m, "g", 1, ok("")), ["finish success"]);
    }

    #[test]
    fn a_fan_out_fails_unless_enough_instances_succeed() {
        let yaml = |min: &str| {
            format!("nodes:\n  - {{id: f, bash: x, for_each: [1, 2, 3]{min}}}\n  - {{id: g, bash: x, depends_on: [f]}}\n")
        };
        let mut m = machine(&yaml(""), 8, vec![]);
        assert_eq!(begin(&mut m), ["expand f"]);
        expanded(&mut m, "f", &["0", "1", "2"]);
        ended(&mut m, "f[0]", 1, ok(""));
        assert_eq!(
            ended(&mut m, "f[1]", 1, failed(false)),
            Vec::<String>::new()
        );
        assert_eq!(
            ended(&mut m, "f[2]", 1, ok("")),
            [
                "fan-out f failed: 2 of 3 instances succeeded (1 failed); a fan-out needs all of them (or set `min_success`)",
                "skip g: dependency `f` failed (trigger `all_success`)",
                "finish failed",
            ]
        );
        let mut m = machine(&yaml(", min_success: 2"), 8, vec![]);
        begin(&mut m);
        expanded(&mut m, "f", &["0", "1", "2"]);
        ended(&mut m, "f[0]", 1, ok(""));
        ended(&mut m, "f[1]", 1, failed(false));
        assert_eq!(
            ended(&mut m, "f[2]", 1, ok("")),
            [r#"fan-out f success ["","",""]"#, "start g#1"],
            "a failed instance does not fail the run when its fan-out succeeds"
        );
        assert_eq!(ended(&mut m, "g", 1, ok("")), ["finish success"]);
    }

    #[test]
    fn an_empty_fan_out_succeeds_and_a_broken_one_fails() {
        let yaml =
            "nodes:\n  - {id: f, bash: x, for_each: []}\n  - {id: g, bash: x, depends_on: [f]}\n";
        let mut m = machine(yaml, 8, vec![]);
        assert_eq!(begin(&mut m), ["expand f"]);
        assert_eq!(
            expanded(&mut m, "f", &[]),
            ["fan-out f success []", "start g#1"]
        );
        let mut m = machine(yaml, 8, vec![]);
        begin(&mut m);
        let node = index(&m, "f");
        let d = m.step(Input::Expanded {
            node,
            items: Err(crate::engine::fanout::FanOutError::TooMany {
                count: 10_001,
                at_least: false,
            }),
        });
        assert_eq!(
            said(&m, d),
            [
                "fail f: `for_each` gives 10,001 items; a fan-out may have at most 10000",
                "skip g: dependency `f` failed (trigger `all_success`)",
                "finish failed"
            ]
        );
    }

    #[test]
    fn a_resumed_fan_out_runs_only_its_unfinished_instances() {
        let items = |keys: &[&str]| {
            keys.iter()
                .map(|k| FanOutItem {
                    key: k.to_string(),
                    value: Json::from(*k),
                })
                .collect()
        };
        let events = vec![
            Event::FanOutExpanded {
                node: "f".into(),
                items: items(&["a", "b", "c"]),
            },
            Event::NodeStarted {
                node: "f[a]".into(),
                attempt: 1,
            },
            Event::NodeSucceeded {
                node: "f[a]".into(),
                output: "A".into(),
                usage: None,
            },
            Event::NodeStarted {
                node: "f[b]".into(),
                attempt: 1,
            },
        ];
        let mut m = machine("nodes:\n  - {id: f, bash: x, for_each: [x]}\n", 8, events);
        assert_eq!(
            begin(&mut m),
            ["start f[b]#1", "start f[c]#1"],
            "never expanded again"
        );
        ended(&mut m, "f[c]", 1, ok("C"));
        assert_eq!(
            ended(&mut m, "f[b]", 1, ok("B")),
            [r#"fan-out f success ["A","B","C"]"#, "finish success"]
        );
    }

    #[test]
    fn a_cancelled_fan_out_is_cancelled_not_failed() {
        let mut m = machine(
            "nodes:\n  - {id: f, bash: x, for_each: [1, 2]}\n",
            1,
            vec![],
        );
        begin(&mut m);
        assert_eq!(expanded(&mut m, "f", &["0", "1"]), ["start f[0]#1"]);
        assert_eq!(m.step(Input::Cancel), []);
        assert_eq!(
            ended(&mut m, "f[0]", 1, settled(NodeStatus::Cancelled, "")),
            ["fan-out f cancelled ", "finish cancelled"]
        );
    }

    #[test]
    fn a_cancel_does_not_wait_for_a_listing_of_items() {
        let mut m = machine(
            "nodes:\n  - {id: f, bash: x, for_each: [1, 2]}\n",
            1,
            vec![],
        );
        assert_eq!(begin(&mut m), ["expand f"]);
        let d = m.step(Input::Cancel);
        assert_eq!(said(&m, d), ["fan-out f cancelled ", "finish cancelled"]);
        // The listing ends late: nothing more happens.
        assert_eq!(expanded(&mut m, "f", &["0", "1"]), Vec::<String>::new());
    }

    #[test]
    fn a_settled_run_finishes_at_once() {
        let mut m = machine("nodes: []\n", 8, vec![]);
        assert_eq!(begin(&mut m), ["finish success"]);
    }

    #[test]
    fn an_attempt_the_machine_did_not_start_is_ignored() {
        let mut m = machine(
            "nodes:\n  - {id: a, bash: x}\n  - {id: b, bash: x, depends_on: [a]}\n",
            8,
            vec![],
        );
        begin(&mut m);
        assert_eq!(ended(&mut m, "b", 1, ok("")), Vec::<String>::new());
        assert_eq!(ended(&mut m, "a", 1, ok("")), ["start b#1"]);
    }
}
