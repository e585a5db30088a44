//! The scheduler: drives the decisions of [`Machine`] on tokio.
//!
//! The machine decides (see [`super::machine`]): a node is *decided* the moment its last
//! dependency settles — its trigger rule and `when` condition either skip it or put it in the
//! ready queue — a ready node starts as soon as one of the `concurrency` slots is free,
//! critical path first, and a retryable failure is retried after an exponential backoff.
//! There are no layers and no barriers: a slow node delays only what depends on it.
//!
//! This driver carries the decisions out: it records the event each stands for, runs each
//! attempt in a task of its own (which records `node_started` and how the attempt ended, but
//! `node_failed`, recorded here once the machine said whether it retries), waits out a retry's
//! backoff in the node's task (the slot stays taken meanwhile), polls waiting gates for their
//! answers, and passes cancellation on.
//!
//! On cancel nothing new starts or is decided; running nodes are stopped and recorded as
//! cancelled, and pending ones stay pending (a resume runs them).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use super::approval;
use super::cancel::{CancelLevel, Canceller};
use super::context::RunInfo;
use super::fanout;
use super::machine::{self, Decision, Ended, Input, Machine, Pace};
use super::plan::Plan;
use super::recorder::Recorder;
use super::runner::{Job, Limits, NodeRunner, Outcome, SessionChoice};
use super::runners::Runners;
use crate::process::Watchdog;
use crate::store::{Event, NodeStatus, RunStatus};
use crate::workflow::TemplateField;

/// How often waiting gates are checked for an answer while other nodes run.
const GATE_POLL: Duration = Duration::from_millis(200);

/// Nodes running at once unless `concurrency:` or `--concurrency` says otherwise. Nodes mostly
/// wait (on agents, the network, `sleep`), so this is not the number of CPUs; it only keeps a
/// fan-out of hundreds from using up file descriptors.
pub(crate) const DEFAULT_CONCURRENCY: usize = 64;

/// How a run executes.
#[derive(Debug, Clone)]
pub struct Options {
    /// Nodes running at once: by default every ready node, up to [`DEFAULT_CONCURRENCY`]
    /// (agent sessions have their own machine-wide cap, [`Limits::agent_slots`]).
    pub concurrency: usize,
    /// Wait before the first retry; it doubles for each later one (at most a minute).
    pub retry_delay: Duration,
    /// Process-level settings.
    pub limits: Limits,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            concurrency: DEFAULT_CONCURRENCY,
            retry_delay: Duration::from_secs(1),
            limits: Limits {
                grace: crate::process::DEFAULT_GRACE,
                output_limit: 1 << 20,
                agent_slots: None,
            },
        }
    }
}

/// Everything an execution needs.
pub(crate) struct Execution {
    /// The workflow, ready to execute.
    pub plan: Arc<Plan>,
    /// The run.
    pub run: Arc<RunInfo>,
    /// Where events go; its state says which nodes are already settled (a resume).
    pub recorder: Recorder,
    /// The runner of each node kind.
    pub runners: Runners,
    /// Concurrency, retries, limits.
    pub options: Options,
    /// Registers process groups so they die with reins.
    pub watchdog: Option<Arc<Watchdog>>,
    /// Cancels the run (Ctrl-C, `reins cancel`, a log that cannot be written).
    pub canceller: Canceller,
}

/// What an attempt's task reports.
enum Attempt {
    /// It succeeded (`node_succeeded` is recorded).
    Succeeded(String),
    /// It failed; `node_failed` is recorded once the machine said whether it retries.
    Failed(Failure),
    /// A gate waits for its answer.
    Waiting,
    /// The run was cancelled (`node_cancelled` is recorded).
    Cancelled,
    /// A loop ran the iterations it was allowed and goes on (nothing is recorded for the
    /// node: the attempt is not over). Only an attempt with `new_iterations` ends so.
    Continues(Option<crate::store::Usage>),
}

/// A failed attempt, as the runner told it.
struct Failure {
    error: String,
    exit_code: Option<i32>,
    output: String,
    usage: Option<crate::store::Usage>,
    retryable: bool,
    /// Where this attempt's lines begin in the node's stderr and stdout logs.
    log_start: [u64; 2],
}

/// Executes a run to its end and records how it ended (`run_finished` or `run_paused`).
/// The caller records `run_started` or `run_resumed` first.
pub(crate) async fn execute(x: Execution) -> RunStatus {
    let mut s = Scheduler::new(x);
    s.run().await
}

/// What a node's attempts share: taken when its first attempt starts.
struct Started {
    prior: crate::store::NodeState,
    sessions: std::collections::BTreeMap<String, String>,
}

/// Drives the [`Machine`]: records the events of its decisions, runs attempts as tokio
/// tasks, polls waiting gates and passes cancellation on.
struct Scheduler {
    x: Execution,
    machine: Machine,
    started: Vec<Option<Arc<Started>>>,
    tasks: JoinSet<(usize, u32, Attempt)>,
    task_nodes: HashMap<tokio::task::Id, (usize, u32)>,
    ended: Option<RunStatus>,
    /// Fan-outs the machine asked to expand, started once its current decisions are out.
    to_expand: Vec<usize>,
    /// Expansions under way, each on a blocking thread (a glob may walk a large tree): the
    /// driver goes on meanwhile.
    expansions: JoinSet<(
        usize,
        Result<Vec<crate::store::FanOutItem>, fanout::FanOutError>,
    )>,
}

impl Scheduler {
    fn new(x: Execution) -> Self {
        let plan = x.plan.clone();
        let state = x.recorder.state();
        let pace = Pace {
            concurrency: x.options.concurrency,
            retry_delay: x.options.retry_delay,
        };
        let machine = Machine::new(plan.clone(), &x.run, &state, pace);
        for i in 0..plan.len() {
            if let Some(node) = state.node(plan.id(i)).filter(|n| n.status.is_settled()) {
                let output = node.output.as_deref().unwrap_or_default();
                keep_output(
                    &plan,
                    &x.run,
                    i,
                    node.status,
                    output,
                    node.output_truncated,
                    false,
                );
            }
        }
        Self {
            started: vec![None; plan.len()],
            x,
            machine,
            tasks: JoinSet::new(),
            task_nodes: HashMap::new(),
            ended: None,
            to_expand: Vec::new(),
            expansions: JoinSet::new(),
        }
    }

    async fn run(&mut self) -> RunStatus {
        let token = self.x.canceller.token();
        self.step(Input::Begin);
        loop {
            if let Some(status) = self.ended {
                return status;
            }
            if self.tasks.is_empty() && self.expansions.is_empty() {
                // The machine ends the run once nothing runs; this is a last resort.
                debug_assert!(false, "nothing runs but the run did not end");
                return self.finish(RunStatus::Failed);
            }
            let gates_wait = self.machine.has_waiting();
            tokio::select! {
                _ = tokio::time::sleep(GATE_POLL), if gates_wait => self.wake_answered_gates(),
                Some(expanded) = self.expansions.join_next(), if !self.expansions.is_empty() => {
                    self.expanded(expanded);
                }
                joined = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => match joined {
                    Some(Ok((id, (i, attempt, ended)))) => {
                        self.task_nodes.remove(&id);
                        self.attempt_ended(i, attempt, ended);
                    }
                    Some(Err(e)) => {
                        if let Some((i, attempt)) = self.task_nodes.remove(&e.id()) {
                            let error = format!("internal error: the node's task ended abnormally ({e})");
                            self.record_failure(i, error);
                            self.settled(i, attempt, NodeStatus::Failed, String::new());
                        }
                    }
                    None => {}
                },
                _ = token.at_least(CancelLevel::Graceful), if !self.machine.is_cancelled() => {}
            }
            if self.x.recorder.error().is_some() {
                self.x.canceller.raise(CancelLevel::Graceful);
            }
            self.sync_cancel();
        }
    }

    /// Tells the machine about a cancel raised since its last input.
    fn sync_cancel(&mut self) {
        if self.x.canceller.level() != CancelLevel::None && !self.machine.is_cancelled() {
            self.step(Input::Cancel);
        }
    }

    /// Feeds the machine one input and carries out its decisions in order.
    fn step(&mut self, input: Input) {
        if !matches!(input, Input::Cancel) {
            self.sync_cancel();
        }
        for decision in self.machine.step(input) {
            self.carry_out(decision);
        }
        self.spawn_expansions();
    }

    /// Starts the expansions the machine asked for, each on a blocking thread with what it
    /// reads: the plan, the fan-out's context and the working tree.
    fn spawn_expansions(&mut self) {
        while let Some(node) = self.to_expand.pop() {
            let plan = self.x.plan.clone();
            let context = self.machine.context(node);
            let root = self.x.run.root.clone();
            self.expansions.spawn_blocking(move || {
                let expand = || fanout::expand(&plan, node, &context, &root);
                let items = std::panic::catch_unwind(std::panic::AssertUnwindSafe(expand))
                    .unwrap_or(Err(fanout::FanOutError::Panicked));
                (node, items)
            });
        }
    }

    /// An expansion ended: its items are recorded (`fan_out_expanded`) before the machine
    /// starts any instance.
    fn expanded(
        &mut self,
        joined: Result<
            (
                usize,
                Result<Vec<crate::store::FanOutItem>, fanout::FanOutError>,
            ),
            tokio::task::JoinError,
        >,
    ) {
        // A panic is caught in the thread; only the runtime shutting down gets here.
        let Ok((node, items)) = joined else { return };
        if let Ok(items) = &items {
            self.x.recorder.record(Event::FanOutExpanded {
                node: self.x.plan.id(node).to_string(),
                items: items.clone(),
            });
        }
        self.step(Input::Expanded { node, items });
    }

    fn carry_out(&mut self, decision: Decision) {
        let plan = self.x.plan.clone();
        match decision {
            Decision::Start { node, attempt } => self.start(node, attempt, Duration::ZERO),
            Decision::Retry {
                node,
                attempt,
                delay,
            } => self.start(node, attempt, delay),
            Decision::Skip { node, reason } => {
                self.x.recorder.record(Event::NodeSkipped {
                    node: self.machine.id(node).to_string(),
                    reason,
                });
            }
            Decision::Expand { node } => self.to_expand.push(node),
            Decision::FanOutSettled {
                node,
                status,
                output,
                error,
            } => {
                let id = plan.id(node).to_string();
                match status {
                    NodeStatus::Success => self.x.recorder.record(Event::NodeSucceeded {
                        node: id,
                        output: output.clone(),
                        usage: None,
                    }),
                    NodeStatus::Cancelled => {
                        self.x.recorder.record(Event::NodeCancelled { node: id })
                    }
                    _ => self.x.recorder.record(Event::NodeFailed {
                        node: id,
                        error: error.unwrap_or_default(),
                        exit_code: None,
                        will_retry: false,
                        output: output.clone(),
                        usage: None,
                        log_tail: Vec::new(),
                        log: None,
                    }),
                };
                keep_output(&plan, &self.x.run, node, status, &output, None, true);
            }
            Decision::Fail { node, error } => {
                self.record_failure(node, error);
                keep_output(&plan, &self.x.run, node, NodeStatus::Failed, "", None, true);
            }
            Decision::Finish { status } => {
                self.finish(status);
            }
            Decision::Pause { waiting } => {
                let recorder = &self.x.recorder;
                if recorder.error().is_some() {
                    self.finish(RunStatus::Failed);
                } else {
                    recorder.record(Event::RunPaused { waiting });
                    let _ = recorder.flush();
                    self.ended = Some(RunStatus::Waiting);
                }
            }
        }
    }

    /// Records how the run ended: a log that could not be written fails it whatever else.
    fn finish(&mut self, status: RunStatus) -> RunStatus {
        let recorder = &self.x.recorder;
        let (status, error) = match recorder.error() {
            Some(e) => (RunStatus::Failed, Some(e)),
            None => (status, None),
        };
        recorder.record(Event::RunFinished { status, error });
        let _ = recorder.flush();
        self.ended = Some(status);
        status
    }

    /// Records a failure that no attempt reported (no runner, `when`, a task that died).
    fn record_failure(&self, i: usize, error: String) {
        self.x
            .recorder
            .record(Event::failed_unrun(self.machine.id(i), error));
    }

    /// A node settled: its output file is kept, then the machine decides what follows.
    fn settled(&mut self, i: usize, attempt: u32, status: NodeStatus, output: String) {
        let truncated = truncation(&self.x, &self.machine, i);
        let plan = self.x.plan.clone();
        keep_output(&plan, &self.x.run, i, status, &output, truncated, true);
        let artifacts = child_artifacts(&self.x, &self.machine, i);
        self.step(Input::AttemptEnded {
            node: i,
            attempt,
            ended: Ended::Settled {
                status,
                output,
                truncated,
                artifacts,
            },
        });
    }

    fn attempt_ended(&mut self, i: usize, attempt: u32, ended: Attempt) {
        match ended {
            Attempt::Succeeded(output) => self.settled(i, attempt, NodeStatus::Success, output),
            Attempt::Cancelled => self.settled(i, attempt, NodeStatus::Cancelled, String::new()),
            Attempt::Waiting => self.step(Input::AttemptEnded {
                node: i,
                attempt,
                ended: Ended::Waiting,
            }),
            Attempt::Continues(usage) => {
                // The local scheduler never caps a loop's iterations: not a way to end.
                let f = Failure {
                    error: "internal error: the attempt ended before its node did".into(),
                    exit_code: None,
                    output: String::new(),
                    usage,
                    retryable: false,
                    log_start: [0, 0],
                };
                self.attempt_ended(i, attempt, Attempt::Failed(f))
            }
            Attempt::Failed(f) => {
                self.sync_cancel();
                let truncated = truncation(&self.x, &self.machine, i);
                let decisions = self.machine.step(Input::AttemptEnded {
                    node: i,
                    attempt,
                    ended: Ended::Failed {
                        retryable: f.retryable,
                        output: f.output.clone(),
                        truncated,
                        artifacts: child_artifacts(&self.x, &self.machine, i),
                    },
                });
                let will_retry =
                    matches!(decisions.first(), Some(Decision::Retry { node, .. }) if *node == i);
                record_failed(&self.x, &self.machine, i, f, will_retry, truncated);
                for decision in decisions {
                    self.carry_out(decision);
                }
                self.spawn_expansions();
            }
        }
    }

    /// Gates answered from another terminal (or whose timeout passed) while other work still
    /// runs: the machine starts them again, so the runner records the answer and the branch
    /// goes on.
    fn wake_answered_gates(&mut self) {
        let plan = self.x.plan.clone();
        for i in 0..self.machine.len() {
            if self.machine.status(i) != NodeStatus::Waiting {
                continue;
            }
            let id = self.machine.id(i);
            let state = self
                .x
                .recorder
                .with_state(|s| s.node(id).cloned().unwrap_or_default());
            let dir = self.x.run.dir.node_dir(id);
            let node = &plan.workflow.nodes[self.machine.template(i)];
            if approval::ready_to_settle(node, &state, &dir) {
                self.step(Input::GateReady { node: i });
            }
        }
    }

    /// Starts attempt `attempt` of node `i` after `delay` (a retry's backoff, during which
    /// the node keeps its slot).
    fn start(&mut self, i: usize, attempt: u32, delay: Duration) {
        let plan = self.x.plan.clone();
        let template = self.machine.template(i);
        let node = &plan.workflow.nodes[template];
        if self.started.len() < self.machine.len() {
            self.started.resize(self.machine.len(), None);
        }
        let Some(runner) = self.x.runners.get(&node.kind) else {
            // `Runners::missing` is checked before a run starts; this is a last resort.
            self.record_failure(
                i,
                format!("reins has no runner for `{}` nodes", node.kind.name()),
            );
            return self.settled(i, attempt, NodeStatus::Failed, String::new());
        };
        let started = match (&self.started[i], attempt) {
            (Some(s), a) if a > 1 => s.clone(),
            _ => {
                let s = first_started(&self.x, &self.machine, i);
                self.started[i] = Some(s.clone());
                s
            }
        };
        let task = task(&self.x, &self.machine, i, attempt, delay, runner, started);
        let handle = self.tasks.spawn(task.run(self.x.run.env.clone()));
        self.task_nodes.insert(handle.id(), (i, attempt));
    }
}

/// Before node `i` starts: for each upstream output it reads that holds less than the
/// node printed (truncated, or too large for `REINS_NODE_<ID>_OUTPUT`), a note at the top
/// of its `stderr.log` saying so and where the whole output is.
fn note_cut_outputs(x: &Execution, machine: &Machine, i: usize, me: &str) {
    let plan = &x.plan;
    let texts = plan.template_texts(i);
    let mut notes = String::new();
    for a in plan.ancestors.of(i) {
        let Some(v) = machine.value(a) else {
            continue;
        };
        let id = plan.id(a);
        let Some(file) = &v.output_file else { continue };
        let key = crate::workflow::env_suffix(id);
        let reads = |needle: &str, longer: &str| {
            texts.iter().any(|t| {
                t.match_indices(needle)
                    .any(|(at, _)| !t[at..].starts_with(longer))
            })
        };
        let in_template = reads(
            &format!("nodes.{id}.output"),
            &format!("nodes.{id}.output_file"),
        );
        let env_var = format!("REINS_NODE_{key}_OUTPUT");
        let in_env = reads(&env_var, &format!("{env_var}_FILE"));
        let file = file.display();
        if let Some(t) = v.truncated.filter(|_| in_template || in_env) {
            notes.push_str(&format!(
                "reins: the output of `{id}` was cut: {}; `{{{{nodes.{id}.output}}}}` holds the first part, the whole output is in {file} (`{{{{nodes.{id}.output_file}}}}`, ${env_var}_FILE)\n",
                t.describe(),
            ));
        } else if in_env && v.output.len() > super::context::ENV_VALUE_LIMIT {
            notes.push_str(&format!(
                "reins: ${env_var} is not set: the output of `{id}` is {}, more than one environment variable may hold; read {file} (${env_var}_FILE)\n",
                crate::store::state::size_text(v.output.len() as u64),
            ));
        }
    }
    if notes.is_empty() {
        return;
    }
    let base = &x.run.dir.path;
    let log = x.run.dir.node_dir(me).join("stderr.log");
    // Never through a link a node planted in the run directory.
    let written = crate::store::safe_fs::relative(base, &log).and_then(|rel| {
        use std::io::Write;
        crate::store::safe_fs::open(base, rel, crate::store::safe_fs::Access::Append)?
            .write_all(notes.as_bytes())
    });
    if let Err(e) = written {
        tracing::warn!("cannot write to the log of `{me}`: {e}");
    }
}

/// What the attempts of node `i` share, taken as its first attempt starts: its state before
/// (a resume's, a gate's request) and the agent sessions so far. Notes cut upstream outputs
/// in its log.
fn first_started(x: &Execution, machine: &Machine, i: usize) -> Arc<Started> {
    let id = machine.id(i).to_string();
    let (prior, sessions) = x
        .recorder
        .with_state(|s| (s.node(&id).cloned().unwrap_or_default(), s.sessions.clone()));
    note_cut_outputs(x, machine, machine.template(i), &id);
    Arc::new(Started { prior, sessions })
}

/// Attempt `attempt` of node `i`, to run after `delay`.
fn task(
    x: &Execution,
    machine: &Machine,
    i: usize,
    attempt: u32,
    delay: Duration,
    runner: Arc<dyn NodeRunner>,
    started: Arc<Started>,
) -> Task {
    let id = machine.id(i).to_string();
    let upstream = machine.upstream(i);
    let mut reins_env = x.run.reins_env(&id, upstream);
    if let (Some((item, index)), Some((_, key))) = (machine.item(i), fanout::split_instance_id(&id))
    {
        reins_env.extend(fanout::item_env(item, index, key));
    }
    Task {
        slot: i,
        index: machine.template(i),
        attempt,
        delay,
        id,
        plan: x.plan.clone(),
        run: x.run.clone(),
        recorder: x.recorder.clone(),
        runner,
        context: machine.context(i),
        reins_env,
        started,
        canceller: x.canceller.clone(),
        watchdog: x.watchdog.clone(),
        options: x.options.clone(),
        new_iterations: None,
        usage_before: None,
        under_way: false,
    }
}

/// How much of node `i`'s output its state says was kept.
fn truncation(x: &Execution, machine: &Machine, i: usize) -> Option<crate::store::Truncation> {
    let id = machine.id(i);
    x.recorder
        .with_state(|s| s.node(id).and_then(|n| n.output_truncated))
}

/// The artifacts folder of the child run of node `i`, when it is a `workflow:` node.
fn child_artifacts(x: &Execution, machine: &Machine, i: usize) -> Option<std::path::PathBuf> {
    match &x.plan.workflow.nodes[machine.template(i)].kind {
        crate::workflow::NodeKind::Workflow(_) => {
            super::subflow::noted_artifacts(&x.run.dir, machine.id(i))
        }
        _ => None,
    }
}

/// Records a failed attempt (`node_failed`, with the tail of its log when it fails for good)
/// and, when no attempt follows, keeps its output for the nodes after it.
fn record_failed(
    x: &Execution,
    machine: &Machine,
    i: usize,
    f: Failure,
    will_retry: bool,
    truncated: Option<crate::store::Truncation>,
) {
    let plan = &x.plan;
    let id = machine.id(i);
    let (log_tail, log) = if will_retry {
        (Vec::new(), None)
    } else {
        failure_log(
            plan,
            machine.template(i),
            id,
            &x.run.dir.path,
            &x.run.dir.node_dir(id),
            f.log_start,
        )
    };
    x.recorder.record(Event::NodeFailed {
        node: id.to_string(),
        error: f.error,
        exit_code: f.exit_code,
        will_retry,
        output: f.output.clone(),
        usage: f.usage,
        log_tail,
        log,
    });
    if !will_retry {
        keep_output(
            plan,
            &x.run,
            i,
            NodeStatus::Failed,
            &f.output,
            truncated,
            true,
        );
    }
}

/// How one attempt run by [`run_one`] ended.
#[cfg(feature = "temporal")]
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Single {
    /// It succeeded with this output (`node_succeeded` is recorded).
    Succeeded(String),
    /// It failed (`node_failed` is recorded, `will_retry` as asked).
    Failed {
        /// Another attempt could help.
        retryable: bool,
        /// What it printed.
        output: String,
    },
    /// A gate waits for its answer.
    Waiting,
    /// The run was cancelled while it ran (`node_cancelled` is recorded).
    Cancelled,
    /// A loop ran its `new_iterations` and goes on: nothing settles the node, the attempt is
    /// not over (call again for the same attempt to run the next iteration).
    Continues {
        /// Tokens and cost of the attempt's iterations so far (pass them on to the next call).
        usage: Option<crate::store::Usage>,
    },
}

/// Runs attempt `attempt` of node `i` of `machine` exactly as the local scheduler runs it —
/// same task, same runner, same events — for a driver that keeps the machine elsewhere (a
/// Temporal worker: the machine that decides lives in the Temporal workflow; `machine` here is
/// rebuilt from the run's log and only gives the node's context). A failure is recorded with
/// `will_retry` set when `retry` (the deciding machine's [`Machine::retries_left`]) and the
/// failure is retryable. The recorder is flushed before it returns: what it reports is on
/// disk.
///
/// A loop runs at most `new_iterations` new iterations (`None`: to its end), then reports
/// [`Single::Continues`]; the next call for the same attempt picks up after the iterations the
/// log holds, adds `usage_before` (what earlier calls reported) to the node's usage, and does
/// not record `node_started` again while the log shows the attempt running.
#[cfg(feature = "temporal")]
pub(crate) async fn run_one(
    x: &Execution,
    machine: &Machine,
    i: usize,
    attempt: u32,
    retry: bool,
    new_iterations: Option<u32>,
    usage_before: Option<crate::store::Usage>,
) -> Single {
    let node = &x.plan.workflow.nodes[machine.template(i)];
    let Some(runner) = x.runners.get(&node.kind) else {
        let error = format!("reins has no runner for `{}` nodes", node.kind.name());
        x.recorder.record(Event::failed_unrun(machine.id(i), error));
        let _ = x.recorder.flush();
        return Single::Failed {
            retryable: false,
            output: String::new(),
        };
    };
    let started = first_started(x, machine, i);
    let under_way = started.prior.status == NodeStatus::Running
        && started.prior.attempt == attempt
        && started.prior.error.is_none();
    let mut t = task(x, machine, i, attempt, Duration::ZERO, runner, started);
    t.new_iterations = new_iterations;
    t.usage_before = usage_before;
    t.under_way = under_way;
    let (_, _, ended) = t.run(x.run.env.clone()).await;
    let truncated = truncation(x, machine, i);
    let single = match ended {
        Attempt::Succeeded(output) => {
            keep_output(
                &x.plan,
                &x.run,
                i,
                NodeStatus::Success,
                &output,
                truncated,
                true,
            );
            Single::Succeeded(output)
        }
        Attempt::Cancelled => Single::Cancelled,
        Attempt::Waiting => Single::Waiting,
        Attempt::Continues(usage) => Single::Continues { usage },
        Attempt::Failed(f) => {
            let retryable = f.retryable;
            let output = f.output.clone();
            record_failed(x, machine, i, f, retry && retryable, truncated);
            Single::Failed { retryable, output }
        }
    };
    let _ = x.recorder.flush();
    single
}

/// Writes the file with the whole output of node `i` ([`machine::output_path`]) unless the
/// runner already kept it there (a truncated output) or, on a resume (`fresh` false), it is
/// there already.
pub(crate) fn keep_output(
    plan: &Plan,
    run: &RunInfo,
    i: usize,
    status: NodeStatus,
    output: &str,
    truncated: Option<crate::store::Truncation>,
    fresh: bool,
) {
    let Some(file) = machine::output_path(plan, &run.dir, i, status) else {
        return;
    };
    if truncated.is_none() && (fresh || !file.exists()) {
        // Never through a link a node planted in the run directory.
        let base = &run.dir.path;
        let written = crate::store::safe_fs::relative(base, &file)
            .and_then(|rel| crate::store::safe_fs::write(base, rel, output.as_bytes()));
        if let Err(e) = written {
            tracing::warn!("cannot write {}: {e}", file.display());
        }
    }
}

/// Lines of a failed node's log shown with its failure.
const TAIL_LINES: usize = 5;

/// The last lines this attempt wrote to a failed node's log (its stderr, else its stdout; from
/// `log_start`, where each stood when the attempt began), each at most 200 characters, and
/// where the whole log is, relative to the run directory. An agent's log is its
/// transcript: its error text is in the failure already, so no lines are shown.
fn failure_log(
    plan: &Plan,
    i: usize,
    id: &str,
    base: &std::path::Path,
    dir: &std::path::Path,
    log_start: [u64; 2],
) -> (Vec<String>, Option<String>) {
    let rel = |file: &str| format!("nodes/{id}/{file}");
    if plan.workflow.nodes[i].kind.uses_agent() {
        return (Vec::new(), Some(rel("transcript.jsonl")));
    }
    if matches!(
        plan.workflow.nodes[i].kind,
        crate::workflow::NodeKind::Approval(_)
    ) {
        return (Vec::new(), None);
    }
    for (file, from) in LOGS.into_iter().zip(log_start) {
        let lines = tail(base, &dir.join(file), from, TAIL_LINES);
        if !lines.is_empty() {
            return (lines, Some(rel(file)));
        }
    }
    (Vec::new(), None)
}

/// A node's logs, as [`failure_log`] reads them.
const LOGS: [&str; 2] = ["stderr.log", "stdout.log"];

/// The size of each of a node's [`LOGS`] (0 for one that is not there).
fn log_sizes(dir: &std::path::Path) -> [u64; 2] {
    LOGS.map(|f| std::fs::symlink_metadata(dir.join(f)).map_or(0, |m| m.len()))
}

/// The last `n` lines of `base/path` from byte `from` on (from the start if it is shorter now)
/// that are not blank, reading at most its last 16 KiB, never through a link.
fn tail(base: &std::path::Path, path: &std::path::Path, from: u64, n: usize) -> Vec<String> {
    use crate::store::safe_fs;
    use std::io::{Read, Seek, SeekFrom};
    let opened = safe_fs::relative(base, path)
        .and_then(|rel| safe_fs::open(base, rel, safe_fs::Access::Read));
    let Ok(mut f) = opened else {
        return Vec::new();
    };
    let len = f.metadata().map_or(0, |m| m.len());
    let from = if from > len { 0 } else { from };
    let start = len.saturating_sub(16 * 1024).max(from);
    let mut bytes = Vec::new();
    if f.seek(SeekFrom::Start(start)).is_err() || f.read_to_end(&mut bytes).is_err() {
        return Vec::new();
    }
    let text = String::from_utf8_lossy(&bytes);
    let mut lines: Vec<String> = text
        .lines()
        .skip(usize::from(start > from)) // a cut first line
        .filter(|l| !l.trim().is_empty() && !l.starts_with("==> attempt "))
        .map(|l| {
            let l = l.trim_end();
            if l.chars().count() > 200 {
                format!("{}…", l.chars().take(200).collect::<String>())
            } else {
                l.to_string()
            }
        })
        .collect();
    let keep = lines.len().saturating_sub(n);
    lines.drain(..keep);
    lines
}

/// One attempt of a node.
struct Task {
    /// The node's index in the machine (an instance's is past the plan's nodes).
    slot: usize,
    /// The plan node it runs: itself, or an instance's fan-out.
    index: usize,
    attempt: u32,
    /// Wait this long first (a retry's backoff).
    delay: Duration,
    id: String,
    plan: Arc<Plan>,
    run: Arc<RunInfo>,
    recorder: Recorder,
    runner: Arc<dyn NodeRunner>,
    context: serde_json::Value,
    reins_env: Vec<(String, String)>,
    started: Arc<Started>,
    canceller: Canceller,
    watchdog: Option<Arc<Watchdog>>,
    options: Options,
    /// In a loop: new iterations this call may run ([`Job::new_iterations`]).
    new_iterations: Option<u32>,
    /// Tokens and cost the attempt's earlier calls used ([`Job::usage_before`]).
    usage_before: Option<crate::store::Usage>,
    /// The attempt is under way already (an earlier call recorded its `node_started`).
    under_way: bool,
}

impl Task {
    async fn run(self, workflow_env: Vec<(String, String)>) -> (usize, u32, Attempt) {
        let i = self.index;
        let slot = self.slot;
        let attempt = self.attempt;
        let token = self.canceller.token();
        if !self.delay.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(self.delay) => {}
                _ = token.at_least(CancelLevel::Graceful) => return self.cancelled(),
            }
        }
        let prior = &self.started.prior;
        // A gate that already asked is looked at again (a resume, an answer that arrived): it
        // is not a new attempt, and it stays `waiting` until its answer settles it.
        let gate_asked_before = matches!(
            self.plan.workflow.nodes[i].kind,
            crate::workflow::NodeKind::Approval(_)
        ) && prior.approval.is_some();
        if token.level() != CancelLevel::None {
            if gate_asked_before {
                return (slot, attempt, Attempt::Waiting); // its request stays open
            }
            return self.cancelled();
        }
        if !(gate_asked_before && attempt == 1 || self.under_way) {
            self.recorder.record(Event::NodeStarted {
                node: self.id.clone(),
                attempt,
            });
        }
        let dir = self.run.dir.node_dir(&self.id);
        let log_start = log_sizes(&dir);
        let outcome = match self.prepare(workflow_env) {
            Ok((mut env, cwd, dir)) => {
                env.push(("REINS_ATTEMPT".into(), attempt.to_string()));
                let job = Job {
                    index: i,
                    node: self.id.clone(),
                    attempt,
                    plan: self.plan.clone(),
                    run: self.run.clone(),
                    context: self.context.clone(),
                    env,
                    cwd,
                    dir,
                    timeout: self.plan.settings[i].timeout,
                    prior: prior.clone(),
                    sessions: self.started.sessions.clone(),
                    session: SessionChoice::of(&self.plan.workflow.nodes[i]),
                    iteration: None,
                    new_iterations: self.new_iterations,
                    usage_before: self.usage_before,
                    recorder: self.recorder.clone(),
                    cancel: token.clone(),
                    watchdog: self.watchdog.clone(),
                    limits: self.options.limits.clone(),
                };
                let outcome = self.runner.run(job).await;
                self.check_outputs(outcome)
            }
            Err(e) => Outcome::fatal(e),
        };
        let ended = match outcome {
            Outcome::Success { output, usage } => {
                self.recorder.record(Event::NodeSucceeded {
                    node: self.id.clone(),
                    output: output.clone(),
                    usage,
                });
                Attempt::Succeeded(output)
            }
            Outcome::Waiting => Attempt::Waiting,
            Outcome::Cancelled => return self.cancelled(),
            Outcome::Continues { usage } if self.new_iterations.is_some() => {
                Attempt::Continues(usage)
            }
            Outcome::Continues { usage } => Attempt::Failed(Failure {
                error: "internal error: the runner ended the attempt before the node".into(),
                exit_code: None,
                output: String::new(),
                usage,
                retryable: false,
                log_start,
            }),
            Outcome::Failure {
                error,
                exit_code,
                output,
                usage,
                retryable,
            } => Attempt::Failed(Failure {
                error,
                exit_code,
                output,
                usage,
                retryable,
                log_start,
            }),
        };
        (slot, attempt, ended)
    }

    /// A node's `outputs` are a contract whatever its kind: a success that did not leave each
    /// of them inside the artifacts folder (a link that leads out of it does not count) fails.
    fn check_outputs(&self, outcome: Outcome) -> Outcome {
        let node = &self.plan.workflow.nodes[self.index];
        let Outcome::Success { output, usage } = outcome else {
            return outcome;
        };
        if matches!(node.kind, crate::workflow::NodeKind::Approval(_)) {
            return Outcome::Success { output, usage }; // `validate` warns: no effect
        }
        let artifacts = self.run.artifacts();
        let problems: Vec<String> = node
            .outputs
            .iter()
            .filter_map(|o| crate::store::safe_fs::check_output(&artifacts, &o.value).err())
            .map(|e| e.to_string())
            .collect();
        if problems.is_empty() {
            return Outcome::Success { output, usage };
        }
        Outcome::Failure {
            error: format!(
                "the node finished but its declared outputs are not in {}: {}",
                artifacts.display(),
                problems.join("; ")
            ),
            exit_code: None,
            output,
            usage,
            retryable: false,
        }
    }

    fn cancelled(&self) -> (usize, u32, Attempt) {
        self.recorder.record(Event::NodeCancelled {
            node: self.id.clone(),
        });
        (self.slot, self.attempt, Attempt::Cancelled)
    }

    /// The node's environment, working directory and folder (not created: runners create it
    /// when they write there). Rendering errors fail the node.
    #[allow(clippy::type_complexity)]
    fn prepare(
        &self,
        mut env: Vec<(String, String)>,
    ) -> Result<
        (
            Vec<(String, String)>,
            std::path::PathBuf,
            std::path::PathBuf,
        ),
        String,
    > {
        let i = self.index;
        let node = &self.plan.workflow.nodes[i];
        for (name, _) in node.env.iter() {
            let value = self
                .plan
                .render(i, TemplateField::Env(&name.value), &self.context)
                .map_err(|e| format!("cannot render `env.{}`: {e}", name.value))?;
            if value.contains('\0') {
                return Err(format!(
                    "`env.{}` cannot be set: {} contains a NUL byte, which no environment can hold",
                    name.value,
                    crate::workflow::template::describe_value(&self.context, &value)
                ));
            }
            env.push((name.value.clone(), value));
        }
        env.extend(self.reins_env.iter().cloned());
        let cwd = if self.plan.has(i, TemplateField::Cwd) {
            let rel = self
                .plan
                .render(i, TemplateField::Cwd, &self.context)
                .map_err(|e| format!("cannot render `cwd`: {e}"))?;
            let dir = self.run.root.join(rel.trim());
            if !dir.is_dir() {
                return Err(format!(
                    "`cwd` is {}, which is not a directory",
                    dir.display()
                ));
            }
            dir
        } else {
            self.run.root.clone()
        };
        Ok((env, cwd, self.run.dir.node_dir(&self.id)))
    }
}
