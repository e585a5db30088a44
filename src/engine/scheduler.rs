//! The scheduler: a ready queue on tokio.
//!
//! A node is *decided* the moment its last dependency settles: its trigger rule and `when`
//! condition either skip it (recorded with the reason, which may in turn decide its
//! dependents) or put it in the ready queue. A ready node starts as soon as one of the
//! `concurrency` slots is free; among ready nodes the one with the heaviest chain of work
//! behind it goes first (critical path first). There are no layers and no barriers: a slow
//! node delays only what depends on it.
//!
//! Each started node runs in a task of its own: it records `node_started`, asks the node
//! kind's runner for one attempt, retries a retryable failure after an exponential backoff
//! (the slot stays taken meanwhile), and records how the node ended.
//!
//! On cancel nothing new starts or is decided; running nodes are stopped and recorded as
//! cancelled, and pending ones stay pending (a resume runs them).

use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use super::approval;
use super::cancel::{CancelLevel, Canceller};
use super::context::{NodeValue, RunInfo};
use super::plan::{Field, Plan, Ready};
use super::recorder::Recorder;
use super::runner::{Job, Limits, NodeRunner, Outcome, Runners, SessionChoice};
use super::trigger::{self, Decision};
use crate::process::Watchdog;
use crate::store::{Event, NodeStatus, RunStatus};
use crate::workflow::template::is_truthy;

/// How often waiting gates are checked for an answer while other nodes run.
const GATE_POLL: Duration = Duration::from_millis(200);

/// Longest wait between two attempts.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);

/// Nodes running at once unless `concurrency:` or `--concurrency` says otherwise. Nodes mostly
/// wait (on agents, the network, `sleep`), so this is not the number of CPUs; it only keeps a
/// fan-out of hundreds from using up file descriptors.
pub const DEFAULT_CONCURRENCY: usize = 64;

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
pub struct Execution {
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

/// How a node's task ended.
enum Final {
    Settled(NodeStatus, String),
    Waiting,
}

/// Executes a run to its end and records how it ended (`run_finished` or `run_paused`).
/// The caller records `run_started` or `run_resumed` first.
pub async fn execute(x: Execution) -> RunStatus {
    let mut s = Scheduler::new(x);
    s.run().await;
    s.finish()
}

struct Scheduler {
    x: Execution,
    status: Vec<NodeStatus>,
    values: Vec<Option<Arc<NodeValue>>>,
    unsettled_deps: Vec<usize>,
    undecided: Vec<usize>,
    ready: BinaryHeap<Ready>,
    tasks: JoinSet<(usize, Final)>,
    task_nodes: HashMap<tokio::task::Id, usize>,
}

impl Scheduler {
    fn new(x: Execution) -> Self {
        let plan = x.plan.clone();
        let n = plan.len();
        let state = x.recorder.state();
        let mut status = vec![NodeStatus::Pending; n];
        let mut values = vec![None; n];
        for i in 0..n {
            if let Some(node) = state.node(plan.id(i)) {
                if node.status.is_settled() {
                    status[i] = node.status;
                    let output = node.output.clone().unwrap_or_default();
                    let file = keep_output(
                        &plan,
                        &x.run,
                        i,
                        node.status,
                        &output,
                        node.output_truncated,
                        false,
                    );
                    values[i] = Some(Arc::new(
                        NodeValue::new(node.status, output)
                            .with_file(file, node.output_truncated)
                            .with_artifacts(super::subflow::child_artifacts(&x.run, node)),
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
        let undecided = (0..n)
            .rev()
            .filter(|&i| status[i] == NodeStatus::Pending && unsettled_deps[i] == 0)
            .collect();
        Self {
            x,
            status,
            values,
            unsettled_deps,
            undecided,
            ready: BinaryHeap::new(),
            tasks: JoinSet::new(),
            task_nodes: HashMap::new(),
        }
    }

    fn cancelled(&self) -> bool {
        self.x.canceller.level() != CancelLevel::None
    }

    async fn run(&mut self) {
        let token = self.x.canceller.token();
        let mut cancel_seen = false;
        loop {
            self.decide_all();
            while self.tasks.len() < self.x.options.concurrency.max(1) && !self.cancelled() {
                let Some(next) = self.ready.pop() else { break };
                self.start(next.index);
            }
            if self.tasks.is_empty() {
                break;
            }
            let gates_wait = self.status.contains(&NodeStatus::Waiting);
            tokio::select! {
                _ = tokio::time::sleep(GATE_POLL), if gates_wait => self.wake_answered_gates(),
                joined = self.tasks.join_next_with_id() => match joined {
                    Some(Ok((id, (i, fin)))) => {
                        self.task_nodes.remove(&id);
                        self.finished(i, fin);
                    }
                    Some(Err(e)) => {
                        if let Some(i) = self.task_nodes.remove(&e.id()) {
                            self.x.recorder.record(Event::NodeFailed {
                                node: self.x.plan.id(i).to_string(),
                                error: format!("internal error: the node's task ended abnormally ({e})"),
                                exit_code: None,
                                will_retry: false,
                                output: String::new(),
                                usage: None,
                                log_tail: Vec::new(),
                                log: None,
                            });
                            self.settle(i, NodeStatus::Failed, String::new());
                        }
                    }
                    None => {}
                },
                _ = token.at_least(CancelLevel::Graceful), if !cancel_seen => cancel_seen = true,
            }
            if self.x.recorder.error().is_some() {
                self.x.canceller.raise(CancelLevel::Graceful);
            }
        }
    }

    /// Gates answered from another terminal (or whose timeout passed) while other work still
    /// runs: start them again, so the runner records the answer and the branch goes on.
    fn wake_answered_gates(&mut self) {
        let plan = self.x.plan.clone();
        for i in 0..self.status.len() {
            if self.status[i] != NodeStatus::Waiting {
                continue;
            }
            let id = plan.id(i);
            let state = self
                .x
                .recorder
                .with_state(|s| s.node(id).cloned().unwrap_or_default());
            let dir = self.x.run.dir.node_dir(id);
            if approval::ready_to_settle(&plan.workflow.nodes[i], &state, &dir) {
                self.status[i] = NodeStatus::Pending;
                self.ready.push(plan.ready(i));
            }
        }
    }

    /// A failed node is *handled* when its failure does not fail the run: it has
    /// `continue_on_error`, or a node ran *because of* the failure: one whose `when` reads
    /// this node's status (a rework branch), or a direct dependent with `trigger: one_success`.
    /// A dependent that merely runs anyway (`trigger: all_done` cleanup) does not hide it.
    fn handled(&self, i: usize) -> bool {
        let plan = &self.x.plan;
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
            || plan.dag.dependents[i].iter().any(|&d| {
                ran(d) && plan.settings[d].trigger == crate::workflow::Trigger::OneSuccess
            })
            || (0..plan.len()).any(|d| ran(d) && plan.when_reads_status_of(d, i))
    }

    /// Decides every node whose dependencies have all settled.
    fn decide_all(&mut self) {
        while !self.cancelled() {
            let Some(i) = self.undecided.pop() else { break };
            if self.status[i] == NodeStatus::Pending {
                self.decide(i);
            }
        }
    }

    fn decide(&mut self, i: usize) {
        let plan = self.x.plan.clone();
        let deps: Vec<(&str, NodeStatus)> = plan.dag.deps[i]
            .iter()
            .map(|&d| (plan.id(d), self.status[d]))
            .collect();
        if let Decision::Skip(reason) = trigger::decide(plan.settings[i].trigger, &deps) {
            return self.skip(i, reason);
        }
        if plan.has(i, Field::When) {
            match plan.render(i, Field::When, &self.context(i)) {
                Ok(text) if !is_truthy(&text) => {
                    let shown: String = text.trim().chars().take(60).collect();
                    return self.skip(i, format!("`when` is false (it rendered `{shown}`)"));
                }
                Ok(_) => {}
                Err(e) => {
                    self.x.recorder.record(Event::NodeFailed {
                        node: plan.id(i).to_string(),
                        error: format!("cannot render `when`: {e}"),
                        exit_code: None,
                        will_retry: false,
                        output: String::new(),
                        usage: None,
                        log_tail: Vec::new(),
                        log: None,
                    });
                    return self.settle(i, NodeStatus::Failed, String::new());
                }
            }
        }
        self.ready.push(plan.ready(i));
    }

    fn skip(&mut self, i: usize, reason: String) {
        self.x.recorder.record(Event::NodeSkipped {
            node: self.x.plan.id(i).to_string(),
            reason,
        });
        self.settle(i, NodeStatus::Skipped, String::new());
    }

    fn settle(&mut self, i: usize, status: NodeStatus, output: String) {
        self.status[i] = status;
        let plan = self.x.plan.clone();
        let (truncated, artifacts) = self.x.recorder.with_state(|s| {
            let n = s.node(plan.id(i));
            (
                n.and_then(|n| n.output_truncated),
                n.and_then(|n| super::subflow::child_artifacts(&self.x.run, n)),
            )
        });
        let file = keep_output(&plan, &self.x.run, i, status, &output, truncated, true);
        self.values[i] = Some(Arc::new(
            NodeValue::new(status, output)
                .with_file(file, truncated)
                .with_artifacts(artifacts),
        ));
        for &d in &plan.dag.dependents[i] {
            self.unsettled_deps[d] -= 1;
            if self.unsettled_deps[d] == 0 && self.status[d] == NodeStatus::Pending {
                self.undecided.push(d);
            }
        }
    }

    fn upstream(&self, i: usize) -> Vec<(&str, &NodeValue)> {
        self.x.plan.ancestors[i]
            .iter()
            .filter_map(|&a| self.values[a].as_deref().map(|v| (self.x.plan.id(a), v)))
            .collect()
    }

    fn context(&self, i: usize) -> serde_json::Value {
        self.x.run.context(self.upstream(i))
    }

    fn start(&mut self, i: usize) {
        let plan = self.x.plan.clone();
        let node = &plan.workflow.nodes[i];
        let id = plan.id(i).to_string();
        self.status[i] = NodeStatus::Running;
        let Some(runner) = self.x.runners.get(&node.kind) else {
            // `Runners::missing` is checked before a run starts; this is a last resort.
            self.x.recorder.record(Event::NodeFailed {
                node: id,
                error: format!("reins has no runner for `{}` nodes", node.kind.name()),
                exit_code: None,
                will_retry: false,
                output: String::new(),
                usage: None,
                log_tail: Vec::new(),
                log: None,
            });
            return self.settle(i, NodeStatus::Failed, String::new());
        };
        let (prior, sessions) = self
            .x
            .recorder
            .with_state(|s| (s.node(&id).cloned().unwrap_or_default(), s.sessions.clone()));
        self.note_cut_outputs(i);
        let context = self.context(i);
        let env = self.x.run.env.clone();
        let reins_env = self.x.run.reins_env(&id, self.upstream(i));
        let task = Task {
            index: i,
            id,
            plan: plan.clone(),
            run: self.x.run.clone(),
            recorder: self.x.recorder.clone(),
            runner,
            context,
            reins_env,
            prior,
            sessions,
            canceller: self.x.canceller.clone(),
            watchdog: self.x.watchdog.clone(),
            options: self.x.options.clone(),
        };
        let handle = self.tasks.spawn(task.run(env));
        self.task_nodes.insert(handle.id(), i);
    }

    /// Before node `i` starts: for each upstream output it reads that holds less than the
    /// node printed (truncated, or too large for `REINS_NODE_<ID>_OUTPUT`), a note at the top
    /// of its `stderr.log` saying so and where the whole output is.
    fn note_cut_outputs(&self, i: usize) {
        let plan = &self.x.plan;
        let texts = plan.template_texts(i);
        let mut notes = String::new();
        for &a in &plan.ancestors[i] {
            let Some(v) = self.values[a].as_deref() else {
                continue;
            };
            let id = plan.id(a);
            let Some(file) = &v.output_file else { continue };
            let key = crate::workflow::validate::env_suffix(id);
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
        let base = &self.x.run.dir.path;
        let log = self.x.run.dir.node_dir(plan.id(i)).join("stderr.log");
        // Never through a link a node planted in the run directory.
        let written = crate::store::safe_fs::relative(base, &log).and_then(|rel| {
            use std::io::Write;
            crate::store::safe_fs::open(base, rel, crate::store::safe_fs::Access::Append)?
                .write_all(notes.as_bytes())
        });
        if let Err(e) = written {
            tracing::warn!("cannot write to the log of `{}`: {e}", plan.id(i));
        }
    }

    fn finished(&mut self, i: usize, fin: Final) {
        match fin {
            Final::Settled(status, output) => self.settle(i, status, output),
            Final::Waiting => self.status[i] = NodeStatus::Waiting,
        }
    }

    /// Records how the run ended.
    fn finish(self) -> RunStatus {
        let recorder = &self.x.recorder;
        let failed = (0..self.status.len())
            .any(|i| self.status[i] == NodeStatus::Failed && !self.handled(i));
        let waiting: Vec<String> = (0..self.status.len())
            .filter(|&i| self.status[i] == NodeStatus::Waiting)
            .map(|i| self.x.plan.id(i).to_string())
            .collect();
        let (status, error) = if let Some(e) = recorder.error() {
            (RunStatus::Failed, Some(e))
        } else if self.cancelled() {
            (RunStatus::Cancelled, None)
        } else if failed {
            (RunStatus::Failed, None)
        } else if !waiting.is_empty() {
            recorder.record(Event::RunPaused { waiting });
            let _ = recorder.flush();
            return RunStatus::Waiting;
        } else {
            (RunStatus::Success, None)
        };
        recorder.record(Event::RunFinished { status, error });
        let _ = recorder.flush();
        status
    }
}

/// The file with the whole output of node `i` (`{{nodes.ID.output_file}}`), for a node that
/// ran and has dependents: written here from `output` unless the runner already kept it
/// there (a truncated output) or, on a resume (`fresh` false), it is there already.
fn keep_output(
    plan: &Plan,
    run: &RunInfo,
    i: usize,
    status: NodeStatus,
    output: &str,
    truncated: Option<crate::store::Truncation>,
    fresh: bool,
) -> Option<std::path::PathBuf> {
    if !matches!(status, NodeStatus::Success | NodeStatus::Failed)
        || plan.dag.dependents[i].is_empty()
    {
        return None;
    }
    let dir = run.dir.node_dir(plan.id(i));
    let file = super::context::output_file(&dir);
    if truncated.is_none() && (fresh || !file.exists()) {
        // Never through a link a node planted in the run directory.
        let base = &run.dir.path;
        let written = crate::store::safe_fs::relative(base, &file)
            .and_then(|rel| crate::store::safe_fs::write(base, rel, output.as_bytes()));
        if let Err(e) = written {
            tracing::warn!("cannot write {}: {e}", file.display());
        }
    }
    Some(file)
}

/// Lines of a failed node's log shown with its failure.
const TAIL_LINES: usize = 5;

/// The last lines of a failed node's log (its stderr, else its stdout), each at most 200
/// characters, and where the whole log is, relative to the run directory. An agent's log is its
/// transcript: its error text is in the failure already, so no lines are shown.
fn failure_log(
    plan: &Plan,
    i: usize,
    id: &str,
    base: &std::path::Path,
    dir: &std::path::Path,
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
    for file in ["stderr.log", "stdout.log"] {
        let lines = tail(base, &dir.join(file), TAIL_LINES);
        if !lines.is_empty() {
            return (lines, Some(rel(file)));
        }
    }
    (Vec::new(), None)
}

/// The last `n` lines of `base/path` that are not blank, reading at most its last 16 KiB, never
/// through a link.
fn tail(base: &std::path::Path, path: &std::path::Path, n: usize) -> Vec<String> {
    use crate::store::safe_fs;
    use std::io::{Read, Seek, SeekFrom};
    let opened = safe_fs::relative(base, path)
        .and_then(|rel| safe_fs::open(base, rel, safe_fs::Access::Read));
    let Ok(mut f) = opened else {
        return Vec::new();
    };
    let len = f.metadata().map_or(0, |m| m.len());
    let start = len.saturating_sub(16 * 1024);
    let mut bytes = Vec::new();
    if f.seek(SeekFrom::Start(start)).is_err() || f.read_to_end(&mut bytes).is_err() {
        return Vec::new();
    }
    let text = String::from_utf8_lossy(&bytes);
    let mut lines: Vec<String> = text
        .lines()
        .skip(usize::from(start > 0)) // a cut first line
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

/// One node's attempts.
struct Task {
    index: usize,
    id: String,
    plan: Arc<Plan>,
    run: Arc<RunInfo>,
    recorder: Recorder,
    runner: Arc<dyn NodeRunner>,
    context: serde_json::Value,
    reins_env: Vec<(String, String)>,
    prior: crate::store::NodeState,
    sessions: std::collections::BTreeMap<String, String>,
    canceller: Canceller,
    watchdog: Option<Arc<Watchdog>>,
    options: Options,
}

impl Task {
    async fn run(self, workflow_env: Vec<(String, String)>) -> (usize, Final) {
        let i = self.index;
        let settings = &self.plan.settings[i];
        let prepared = self.prepare(workflow_env);
        let token = self.canceller.token();
        // A gate that already asked is looked at again (a resume, an answer that arrived): it
        // is not a new attempt, and it stays `waiting` until its answer settles it.
        let gate_asked_before = matches!(
            self.plan.workflow.nodes[i].kind,
            crate::workflow::NodeKind::Approval(_)
        ) && self.prior.approval.is_some();
        let mut attempt = 1;
        loop {
            if token.level() != CancelLevel::None {
                if gate_asked_before {
                    return (i, Final::Waiting); // its request stays open
                }
                return self.cancelled();
            }
            if !(gate_asked_before && attempt == 1) {
                self.recorder.record(Event::NodeStarted {
                    node: self.id.clone(),
                    attempt,
                });
            }
            let outcome = match &prepared {
                Ok((env, cwd, dir)) => {
                    let mut env = env.clone();
                    env.push(("REINS_ATTEMPT".into(), attempt.to_string()));
                    let job = Job {
                        index: i,
                        node: self.id.clone(),
                        attempt,
                        plan: self.plan.clone(),
                        run: self.run.clone(),
                        context: self.context.clone(),
                        env,
                        cwd: cwd.clone(),
                        dir: dir.clone(),
                        timeout: settings.timeout,
                        prior: self.prior.clone(),
                        sessions: self.sessions.clone(),
                        session: SessionChoice::of(&self.plan.workflow.nodes[i]),
                        iteration: None,
                        recorder: self.recorder.clone(),
                        cancel: token.clone(),
                        watchdog: self.watchdog.clone(),
                        limits: self.options.limits.clone(),
                    };
                    let outcome = self.runner.run(job).await;
                    self.check_outputs(outcome)
                }
                Err(e) => Outcome::fatal(e.clone()),
            };
            match outcome {
                Outcome::Success { output, usage } => {
                    self.recorder.record(Event::NodeSucceeded {
                        node: self.id.clone(),
                        output: output.clone(),
                        usage,
                    });
                    return (i, Final::Settled(NodeStatus::Success, output));
                }
                Outcome::Waiting => return (i, Final::Waiting),
                Outcome::Cancelled => return self.cancelled(),
                Outcome::Failure {
                    error,
                    exit_code,
                    output,
                    usage,
                    retryable,
                } => {
                    let will_retry = retryable
                        && attempt <= settings.retries
                        && token.level() == CancelLevel::None;
                    let (log_tail, log) = if will_retry {
                        (Vec::new(), None)
                    } else {
                        failure_log(
                            &self.plan,
                            i,
                            &self.id,
                            &self.run.dir.path,
                            &self.run.dir.node_dir(&self.id),
                        )
                    };
                    self.recorder.record(Event::NodeFailed {
                        node: self.id.clone(),
                        error,
                        exit_code,
                        will_retry,
                        output: output.clone(),
                        usage,
                        log_tail,
                        log,
                    });
                    if !will_retry {
                        return (i, Final::Settled(NodeStatus::Failed, output));
                    }
                    let delay = self
                        .options
                        .retry_delay
                        .saturating_mul(1 << (attempt - 1).min(16))
                        .min(MAX_RETRY_DELAY);
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = token.at_least(CancelLevel::Graceful) => return self.cancelled(),
                    }
                    attempt += 1;
                }
            }
        }
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

    fn cancelled(&self) -> (usize, Final) {
        self.recorder.record(Event::NodeCancelled {
            node: self.id.clone(),
        });
        (
            self.index,
            Final::Settled(NodeStatus::Cancelled, String::new()),
        )
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
                .render(i, Field::Env(&name.value), &self.context)
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
        let cwd = if self.plan.has(i, Field::Cwd) {
            let rel = self
                .plan
                .render(i, Field::Cwd, &self.context)
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
