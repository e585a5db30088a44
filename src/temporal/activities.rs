//! The activities a worker executes: placement, opening a run, one attempt of one node, listing
//! a fan-out's items, recording what the workflow decided, writing a gate's answer.
//!
//! The worker's store is the run's record, with the same events as a local run: the `open`
//! activity records `run_started` (or `run_resumed` when a restarted worker takes the run up
//! again: the nodes that were running run again), a `node` attempt records what a local
//! attempt records (`node_started`, the runner's own events, how it ended), and the `record`
//! activity records the events of the workflow's decisions (skips, failures without an
//! attempt, fan-outs settling, `run_paused`, `run_finished`).
//!
//! Every activity is idempotent under Temporal's at-least-once delivery: before it does
//! anything it looks at the run's log. A node the log has settled returns its recorded result
//! and never runs again; a delivery of an attempt that still runs in this worker waits for it;
//! an event the log already reflects is not recorded twice. An attempt's events are on disk
//! (`fsync`) before the activity reports, so what Temporal's history holds the log holds too.

#![allow(missing_docs)] // the macros generate public items

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use temporalio_common::error::ApplicationFailure;
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};

use super::types::{
    AnswerInput, ExpandInput, Expanded, FrozenSource, Gate, NodeInput, NodeResult, Opened,
    Placement, RecordInput, Submission,
};
use crate::engine::agent_slots::AgentSlots;
use crate::engine::approval;
use crate::engine::context::RunInfo;
use crate::engine::fanout;
use crate::engine::launch::{self, Begun, LaunchError};
use crate::engine::machine::{Machine, Pace};
use crate::engine::plan::FrozenCommands;
use crate::engine::scheduler::{self, Execution, Single};
use crate::engine::{CancelLevel, Canceller, Options, Plan, Recorder, Runners};
use crate::process::Watchdog;
use crate::source::SourceFile;
use crate::store::{
    Event, FrozenFile, NodeStatus, RunDir, RunLock, RunState, RunStatus, Store, Truncation,
};
use crate::workflow;

/// A placement not followed by its run's opening within this time is forgotten (the run was
/// cancelled, or went elsewhere after a retry).
const PLACEMENT_HOLD: Duration = Duration::from_secs(30);

/// One worker: its checkout, its own task queue, and the runs it holds.
pub(crate) struct Host {
    /// The checkout the worker runs in.
    pub store: Store,
    /// The worker's own task queue.
    pub queue: String,
    /// The host name.
    pub host: String,
    /// Runs executing at once on this worker (runs in the checkout itself take turns: each
    /// holds the checkout's lock while it is open).
    pub slots: usize,
    /// Kills the process groups of running nodes if the worker dies.
    pub watchdog: Option<Arc<Watchdog>>,
    /// The machine-wide cap on agent sessions.
    pub agent_slots: Option<AgentSlots>,
    /// Runs placed here (with when, until they open) or open (`None`).
    held: Mutex<BTreeMap<String, Option<Instant>>>,
    /// The runs open on this worker.
    lives: Mutex<BTreeMap<String, Arc<Live>>>,
}

/// A run open on this worker: its recorder (the one writer of its log), its plan and locks.
struct Live {
    plan: Arc<Plan>,
    run: Arc<RunInfo>,
    recorder: Recorder,
    runners: Runners,
    _locks: Vec<RunLock>,
    /// One attempt of a node at a time: a second delivery of an attempt still running here
    /// waits for it, then finds it settled.
    nodes: Mutex<BTreeMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Live {
    fn of(begun: Begun) -> Self {
        Self {
            plan: begun.plan,
            run: begun.run,
            recorder: begun.recorder,
            runners: Runners::new(),
            _locks: begun.locks,
            nodes: Mutex::new(BTreeMap::new()),
        }
    }

    fn node_lock(&self, node: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        nodes.entry(node.to_string()).or_default().clone()
    }

    /// A machine rebuilt from the log: it gives a node the context, environment and item a
    /// local run would give it (the machine that decides lives in the workflow).
    fn machine(&self, state: &RunState) -> Machine {
        let pace = Pace {
            concurrency: 1,
            retry_delay: Duration::from_secs(1),
        };
        Machine::new(self.plan.clone(), &self.run, state, pace)
    }
}

/// Where a run stands on this worker.
#[allow(clippy::large_enum_variant)] // one per request, never stored
enum Found {
    /// Open, ready for work.
    Open(Arc<Live>),
    /// It ended: only its record is left.
    Ended(RunDir, Box<RunState>),
}

impl Host {
    /// A worker's host state.
    pub(crate) fn new(
        store: Store,
        queue: String,
        host: String,
        slots: usize,
        watchdog: Option<Arc<Watchdog>>,
        agent_slots: Option<AgentSlots>,
    ) -> Self {
        Self {
            store,
            queue,
            host,
            slots: slots.max(1),
            watchdog,
            agent_slots,
            held: Mutex::new(BTreeMap::new()),
            lives: Mutex::new(BTreeMap::new()),
        }
    }

    /// Takes `run` if there is room for it.
    fn hold(&self, run: &str) -> bool {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.retain(|_, placed| placed.is_none_or(|at| at.elapsed() < PLACEMENT_HOLD));
        if held.contains_key(run) {
            return true;
        }
        if held.len() >= self.slots {
            return false;
        }
        held.insert(run.to_string(), Some(Instant::now()));
        true
    }

    fn lives(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Arc<Live>>> {
        self.lives.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn opened(&self, run_id: &str, live: Arc<Live>) -> Arc<Live> {
        self.lives().insert(run_id.to_string(), live.clone());
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.insert(run_id.to_string(), None);
        live
    }

    /// Lets the run go: it ended or paused at gates (its locks are released; the next
    /// activity after an answer opens it again).
    fn close(&self, run_id: &str) {
        self.lives().remove(run_id);
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.remove(run_id);
    }

    /// The run, open: as this worker has it, or taken up again from its log (after a restart
    /// or a pause), or ended.
    fn find(&self, run_id: &str) -> Result<Found, ActivityError> {
        checked_id(run_id)?;
        let mut lives = self.lives();
        if let Some(live) = lives.get(run_id) {
            return Ok(Found::Open(live.clone()));
        }
        let run = self.store.run(run_id);
        if !run.path.is_dir() {
            return Err(fatal(format!(
                "run {run_id} is not in this worker's checkout {}",
                self.store.root().display()
            )));
        }
        let state = launch::read_state(&run).unwrap_or_default();
        if ended(state.status) {
            return Ok(Found::Ended(run, Box::new(state)));
        }
        let prepared = launch::reopen(&self.store, run.clone(), &Runners::new())
            .map_err(|e| launch_error(&self.store, &run, e))?;
        let begun = prepared
            .begin(Box::new(Silent))
            .map_err(|r| fatal(r.state.error.unwrap_or_else(|| "the run failed".into())))?;
        let _ = begun.recorder.flush();
        let live = Arc::new(Live::of(begun));
        lives.insert(run_id.to_string(), live.clone());
        drop(lives);
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.insert(run_id.to_string(), None);
        Ok(Found::Open(live))
    }
}

/// A run that cannot be opened because another holds the checkout (or the run) is retried;
/// any other refusal (a tampered run) is final.
fn launch_error(store: &Store, run: &RunDir, e: LaunchError) -> ActivityError {
    let busy = crate::store::lock::live_owner(&store.tree_lock_path()).is_some()
        || crate::store::lock::live_owner(&run.lock_path()).is_some();
    if busy || e.kind == crate::engine::LaunchErrorKind::Io {
        retryable(e.message)
    } else {
        fatal(e.message)
    }
}

fn ended(status: RunStatus) -> bool {
    matches!(
        status,
        RunStatus::Success | RunStatus::Failed | RunStatus::Cancelled
    )
}

/// The worker shows no progress: the run's events go to its log only.
struct Silent;

impl crate::engine::Observer for Silent {
    fn on_event(&mut self, _: &crate::store::Record, _: &RunState) {}
}

/// The activities of `reins worker`.
pub(crate) struct Activities {
    /// The worker they run on.
    pub host: Arc<Host>,
}

fn fatal(message: impl Into<String>) -> ActivityError {
    let message: String = message.into();
    ActivityError::application(ApplicationFailure::non_retryable(Box::<
        dyn std::error::Error + Send + Sync,
    >::from(message)))
}

fn retryable(message: impl Into<String>) -> ActivityError {
    let message: String = message.into();
    ActivityError::application(ApplicationFailure::new(Box::<
        dyn std::error::Error + Send + Sync,
    >::from(message)))
}

fn checked_id(run_id: &str) -> Result<(), ActivityError> {
    if crate::store::id::is_run_id(run_id) {
        Ok(())
    } else {
        Err(fatal(format!("`{run_id}` is not a reins run id")))
    }
}

/// Runs `work` while heartbeating; a cancellation from Temporal (it comes with a heartbeat's
/// answer) raises `canceller`, which stops the node and kills its process group.
async fn beating<T>(
    ctx: &ActivityContext,
    canceller: &Canceller,
    work: impl Future<Output = T>,
) -> T {
    let beat = ctx
        .info()
        .heartbeat_timeout
        .map_or(Duration::from_secs(1), |t| t / 4)
        .clamp(Duration::from_millis(100), Duration::from_secs(1));
    tokio::pin!(work);
    loop {
        tokio::select! {
            r = &mut work => return r,
            _ = tokio::time::sleep(beat) => {
                let _ = ctx.record_heartbeat(()).await;
            }
            _ = ctx.cancelled(), if canceller.level() == CancelLevel::None => {
                canceller.raise(CancelLevel::Graceful);
            }
        }
    }
}

/// The result a settled node's log records: success, or a failure for good. An attempt that
/// failed and is retried also counts (its delivery came again after it reported).
fn recorded(state: &RunState, node: &str, attempt: u32) -> Option<NodeResult> {
    let n = state.node(node)?;
    let result = |status: &str, retryable: bool| NodeResult {
        status: status.into(),
        output: n.output.clone().unwrap_or_default(),
        retryable,
        truncated: n.output_truncated.map(|t| (t.kept_bytes, t.total_bytes)),
        artifacts: None,
        gate: None,
        recorded: true,
        usage: None,
    };
    match n.status {
        NodeStatus::Success => Some(result("success", false)),
        NodeStatus::Failed => Some(result("failed", false)),
        NodeStatus::Running if n.attempt == attempt && n.error.is_some() => {
            Some(result("failed", true))
        }
        _ => None,
    }
}

#[activities]
impl Activities {
    /// Pins a run to this worker: returns the worker's own queue, or fails (to be retried,
    /// perhaps elsewhere) when the worker has no room for another run.
    #[activity]
    pub(crate) async fn place(
        self: Arc<Self>,
        _ctx: ActivityContext,
        run_id: String,
    ) -> Result<Placement, ActivityError> {
        checked_id(&run_id)?;
        if !self.host.hold(&run_id) {
            return Err(retryable(format!(
                "worker {} is busy with {} run(s)",
                self.host.queue, self.host.slots
            )));
        }
        Ok(Placement {
            queue: self.host.queue.clone(),
            host: self.host.host.clone(),
            root: self.host.store.root().display().to_string(),
        })
    }

    /// Opens the run: creates it in this checkout from the frozen workflow the first time
    /// (`run_started`), takes it up again after that.
    #[activity]
    pub(crate) async fn open(
        self: Arc<Self>,
        _ctx: ActivityContext,
        submission: Submission,
    ) -> Result<Opened, ActivityError> {
        let run_id = submission.run_id.clone();
        checked_id(&run_id)?;
        let host = &self.host;
        let run = host.store.run(&run_id);
        if !run.path.is_dir() {
            let (workflow, commands) = frozen_workflow(&submission)?;
            let prepared = launch::start_as(
                &host.store,
                Some(&run_id),
                workflow,
                &commands,
                &submission.inputs,
                &Runners::new(),
                submission.worktree,
                submission.base.as_deref(),
                submission.agent.as_deref(),
            )
            .map_err(|e| launch_error(&host.store, &run, e))?;
            match prepared.begin(Box::new(Silent)) {
                Ok(begun) => {
                    let _ = begun.recorder.flush();
                    host.opened(&run_id, Arc::new(Live::of(begun)));
                }
                Err(report) => {
                    host.close(&run_id);
                    return Ok(Opened {
                        run_dir: run.path.display().to_string(),
                        root: host.store.root().display().to_string(),
                        inputs: report.state.inputs.clone(),
                        env: BTreeMap::new(),
                        retry_delay_ms: 0,
                        error: Some(report.state.error.unwrap_or_default()),
                    });
                }
            }
        }
        match host.find(&run_id)? {
            Found::Open(live) => Ok(opened_of(&live)),
            Found::Ended(run, state) => Ok(Opened {
                run_dir: run.path.display().to_string(),
                root: host.store.root().display().to_string(),
                inputs: state.inputs.clone(),
                env: BTreeMap::new(),
                retry_delay_ms: 0,
                error: Some(format!("run {run_id} ended already ({})", state.status)),
            }),
        }
    }

    /// Runs one attempt of one node with the engine's own task and runner, heartbeating; a
    /// node the log has settled returns its recorded result and does not run again. A loop
    /// runs one iteration (after those the log holds) and, when it goes on, returns
    /// `continues`: the workflow calls again for the same attempt.
    #[activity]
    pub(crate) async fn node(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: NodeInput,
    ) -> Result<NodeResult, ActivityError> {
        let live = match self.host.find(&input.run_id)? {
            Found::Open(live) => live,
            Found::Ended(_, state) => {
                return recorded(&state, &input.node, input.attempt).ok_or_else(|| {
                    fatal(format!(
                        "run {} ended ({}) before `{}` settled",
                        input.run_id, state.status, input.node
                    ))
                })
            }
        };
        let lock = live.node_lock(&input.node);
        let _one = lock.lock().await;
        let state = live.recorder.state();
        let machine = live.machine(&state);
        let Some(i) = (0..machine.len()).find(|&i| machine.id(i) == input.node) else {
            if let Some(r) = recorded(&state, &input.node, input.attempt) {
                return Ok(r); // a fan-out instance whose fan-out settled since
            }
            return Err(fatal(format!(
                "run {} has no node `{}` ready to run",
                input.run_id, input.node
            )));
        };
        let wanted = output_wanted(&live.plan, &machine, i);
        if let Some(mut r) = recorded(&state, &input.node, input.attempt) {
            if !wanted {
                r.output.clear();
            }
            return Ok(r);
        }
        let (canceller, _) = Canceller::new();
        let x = Execution {
            plan: live.plan.clone(),
            run: live.run.clone(),
            recorder: live.recorder.clone(),
            runners: live.runners.clone(),
            options: self.options(),
            watchdog: self.host.watchdog.clone(),
            canceller: canceller.clone(),
        };
        let single = beating(
            &ctx,
            &canceller,
            // A loop runs one iteration per activity; other nodes ignore the cap.
            scheduler::run_one(
                &x,
                &machine,
                i,
                input.attempt,
                input.retry,
                Some(1),
                input.usage,
            ),
        )
        .await;
        let state = live.recorder.state();
        let n = state.node(&input.node).cloned().unwrap_or_default();
        let template = &live.plan.workflow.nodes[machine.template(i)];
        let artifacts = match &template.kind {
            workflow::NodeKind::Workflow(_) => {
                crate::engine::subflow::noted_artifacts(&live.run.dir, &input.node)
            }
            _ => None,
        };
        let truncated = n
            .output_truncated
            .map(|t: Truncation| (t.kept_bytes, t.total_bytes));
        let result = |status: &str, output: String, retryable: bool| NodeResult {
            status: status.into(),
            output: if wanted { output } else { String::new() },
            retryable,
            truncated,
            artifacts: artifacts.as_ref().map(|a| a.display().to_string()),
            gate: None,
            recorded: false,
            usage: None,
        };
        Ok(match single {
            Single::Succeeded(output) => result("success", output, false),
            Single::Failed { retryable, output } => result("failed", output, retryable),
            Single::Continues { usage } => NodeResult {
                usage,
                ..result("continues", String::new(), false)
            },
            Single::Cancelled => {
                if ctx.is_cancelled() {
                    return Err(ActivityError::cancelled());
                }
                result("cancelled", String::new(), false)
            }
            Single::Waiting => {
                let gate = n.approval.as_ref().map(|a| Gate {
                    node: input.node.clone(),
                    request: a.request.clone(),
                    message: a.message.clone(),
                    deadline_ms: approval::deadline(template, &n)
                        .and_then(|d| d.duration_since(SystemTime::UNIX_EPOCH).ok())
                        .map(|d| d.as_millis() as u64),
                });
                NodeResult {
                    gate,
                    ..result("waiting", String::new(), false)
                }
            }
        })
    }

    /// Lists a fan-out's items on this worker (a template rendered against the run's values,
    /// or files in its working tree) and records them (`fan_out_expanded`), once.
    #[activity]
    pub(crate) async fn expand(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: ExpandInput,
    ) -> Result<Expanded, ActivityError> {
        let live = match self.host.find(&input.run_id)? {
            Found::Open(live) => live,
            Found::Ended(..) => return Err(fatal(format!("run {} ended", input.run_id))),
        };
        let state = live.recorder.state();
        if let Some(items) = state.node(&input.node).and_then(|n| n.fan_out.clone()) {
            return Ok(Expanded { items, error: None });
        }
        let Some(i) = live.plan.dag.index_of(&input.node) else {
            return Err(fatal(format!(
                "run {} has no node `{}`",
                input.run_id, input.node
            )));
        };
        let (plan, root) = (live.plan.clone(), live.run.root.clone());
        let context = live.machine(&state).context(i);
        // Globs walk the working tree: off the worker's async threads.
        let listed = tokio::task::spawn_blocking(move || fanout::expand(&plan, i, &context, &root))
            .await
            .unwrap_or(Err(fanout::FanOutError::Panicked));
        Ok(match listed {
            Ok(items) => {
                live.recorder.record(Event::FanOutExpanded {
                    node: input.node.clone(),
                    items: items.clone(),
                });
                live.recorder
                    .flush()
                    .map_err(|e| retryable(format!("cannot write the run's log: {e}")))?;
                Expanded { items, error: None }
            }
            Err(error) => Expanded {
                items: Vec::new(),
                error: Some(error.to_string()),
            },
        })
    }

    /// Records the events of the workflow's decisions, each unless the log reflects it
    /// already; a run that pauses or ends is let go (its locks released).
    #[activity]
    pub(crate) async fn record(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: RecordInput,
    ) -> Result<(), ActivityError> {
        let live = match self.host.find(&input.run_id)? {
            Found::Open(live) => live,
            Found::Ended(..) => return Ok(()),
        };
        let mut close = false;
        for event in input.events {
            let state = live.recorder.state();
            let settled = |node: &str| state.node(node).is_some_and(|n| n.status.is_settled());
            #[allow(clippy::collapsible_match)] // one arm per kind of event reads best
            match &event {
                Event::NodeSkipped { node, .. }
                | Event::NodeSucceeded { node, .. }
                | Event::NodeCancelled { node }
                | Event::NodeFailed {
                    node,
                    will_retry: false,
                    ..
                } if settled(node) => continue,
                Event::RunPaused { .. } => close = true,
                Event::RunFinished { status, .. } => {
                    if ended(state.status) {
                        close = true;
                        continue;
                    }
                    if *status == RunStatus::Cancelled {
                        // What `reins cancel` does to a run: what waits or runs is cancelled.
                        for n in &state.nodes {
                            if matches!(n.status, NodeStatus::Running | NodeStatus::Waiting) {
                                live.recorder
                                    .record(Event::NodeCancelled { node: n.id.clone() });
                            }
                        }
                    }
                    close = true;
                }
                _ => {}
            }
            let kept = match &event {
                Event::NodeSucceeded { node, output, .. } => {
                    Some((node.clone(), NodeStatus::Success, output.clone()))
                }
                Event::NodeFailed {
                    node,
                    output,
                    will_retry: false,
                    ..
                } => Some((node.clone(), NodeStatus::Failed, output.clone())),
                _ => None,
            };
            live.recorder.record(event);
            if let Some((node, status, output)) = kept {
                if let Some(i) = live.plan.dag.index_of(&node) {
                    scheduler::keep_output(&live.plan, &live.run, i, status, &output, None, true);
                }
            }
        }
        live.recorder
            .flush()
            .map_err(|e| retryable(format!("cannot write the run's log: {e}")))?;
        if close {
            self.host.close(&input.run_id);
        }
        Ok(())
    }

    /// Writes an answer to a waiting gate, by the same rules as `reins approve` (first answer
    /// wins); the gate's next attempt records it.
    #[activity]
    pub(crate) async fn answer(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: AnswerInput,
    ) -> Result<String, ActivityError> {
        checked_id(&input.run_id)?;
        let store = self.host.store.clone();
        let run = store.run(&input.run_id);
        let a = input.answer;
        let given = approval::Given {
            gate: Some(a.gate.clone()),
            approved: a.approved,
            by: a.by.clone(),
            comment: a.comment.clone(),
        };
        match approval::answer(&store, &run, given) {
            Ok(done) => Ok(format!(
                "{} `{}` (by {})",
                if a.approved { "approved" } else { "rejected" },
                done.gate,
                done.answer.by
            )),
            Err(approval::Refused::Usage(m)) => Err(fatal(m)),
            Err(approval::Refused::Io(m)) => Err(retryable(m)),
        }
    }
}

impl Activities {
    /// How this worker runs a node's processes.
    fn options(&self) -> Options {
        let mut options = Options::default();
        options.limits.agent_slots = self.host.agent_slots.clone();
        if let Some(d) = env_duration("REINS_KILL_GRACE") {
            options.limits.grace = d;
        }
        options
    }
}

/// True when the workflow's machine reads node `i`'s output: a `when` names the node, or it is
/// an instance of a fan-out (whose output gathers its instances'). Other outputs stay on the
/// worker, out of Temporal's history.
fn output_wanted(plan: &Plan, machine: &Machine, i: usize) -> bool {
    if machine.fan_out_of(i).is_some() {
        return true;
    }
    let name = format!("nodes.{}", plan.id(machine.template(i)));
    plan.workflow
        .nodes
        .iter()
        .filter_map(|n| n.when.as_ref())
        .any(|w| w.value.contains(&name))
}

/// What the workflow learns of an open run.
fn opened_of(live: &Live) -> Opened {
    let plan = &live.plan;
    // Only the `{{env.X}}` values a `when` reads: the machine renders nothing else.
    let whens: Vec<&str> = plan
        .workflow
        .nodes
        .iter()
        .filter_map(|n| n.when.as_ref().map(|w| w.value.as_str()))
        .collect();
    let env = live
        .run
        .template_env
        .iter()
        .filter(|(k, _)| whens.iter().any(|w| w.contains(&format!("env.{k}"))))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Opened {
        run_dir: live.run.dir.path.display().to_string(),
        root: live.run.root.display().to_string(),
        inputs: live.run.inputs.clone(),
        env,
        retry_delay_ms: env_duration("REINS_RETRY_DELAY")
            .unwrap_or(Duration::from_secs(1))
            .as_millis() as u64,
        error: None,
    }
}

/// The submitted workflow, loaded and validated again from the frozen text (a worker never
/// trusts that the submitter did; the workflow code builds its plan from the same text).
pub(crate) fn frozen_workflow(
    submission: &Submission,
) -> Result<(workflow::Workflow, FrozenCommands), ActivityError> {
    frozen(submission).map_err(|e| fatal(e.to_string()))
}

/// Why a submitted workflow cannot run here.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FrozenError {
    /// It does not validate with this worker's reins: the first error's message.
    #[error("the submitted workflow is not valid for this worker's reins: {0}")]
    Invalid(String),
    /// It does not load at all.
    #[error("the submitted workflow cannot be read")]
    Unreadable,
}

/// [`frozen_workflow`], with a typed error.
pub(crate) fn frozen(
    submission: &Submission,
) -> Result<(workflow::Workflow, FrozenCommands), FrozenError> {
    let frozen = |files: &BTreeMap<String, FrozenSource>| {
        files
            .iter()
            .map(|(name, f)| {
                (
                    name.clone(),
                    FrozenFile {
                        path: PathBuf::from(&f.path),
                        text: f.text.clone(),
                    },
                )
            })
            .collect()
    };
    let commands = FrozenCommands(frozen(&submission.commands), frozen(&submission.workflows));
    let loaded = workflow::load_source(SourceFile::new(
        PathBuf::from(&submission.source.path),
        submission.source.text.clone(),
    ));
    let diagnostics = workflow::validate::validate(&loaded, &commands);
    let first = diagnostics.iter().find(|d| d.is_error());
    match (loaded.workflow, first) {
        (Some(wf), None) => Ok((wf, commands)),
        (_, Some(d)) => Err(FrozenError::Invalid(d.message.clone())),
        (None, None) => Err(FrozenError::Unreadable),
    }
}

fn env_duration(name: &str) -> Option<Duration> {
    let text = std::env::var(name).ok()?;
    workflow::duration::parse(&text).ok()
}
