//! The activities a worker executes: placement, a stretch of a run, an answer, a cancel.
//!
//! A stretch of a run is executed by the engine exactly as `reins run`/`reins resume` execute
//! it in a terminal — [`crate::engine::launch`], the scheduler, the node runners, the event log
//! in the worker's `.reins/runs/<id>/` — on a thread of its own, while the activity heartbeats
//! and turns a cancellation from Temporal into the run's own cancel (running nodes stopped,
//! their process groups killed).

#![allow(missing_docs)] // the macros generate public items

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use temporalio_common::error::ApplicationFailure;
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};

use super::types::{
    AnswerInput, CancelInput, ExecuteInput, FrozenSource, Gate, Placement, Segment, Submission,
};
use crate::engine::agent_slots::AgentSlots;
use crate::engine::approval;
use crate::engine::launch::{self, Prepared, Resumed};
use crate::engine::plan::FrozenCommands;
use crate::engine::{CancelLevel, Canceller, Options, Runners};
use crate::process::Watchdog;
use crate::source::SourceFile;
use crate::store::{
    Event, EventLog, FrozenFile, NodeStatus, RunDir, RunLock, RunState, RunStatus, Store,
};
use crate::workflow;

/// A placement not followed by its first stretch within this time is forgotten (the run was
/// cancelled, or went elsewhere after a retry).
const PLACEMENT_HOLD: Duration = Duration::from_secs(30);

/// One worker: its checkout, its own task queue, and the runs it holds.
pub struct Host {
    /// The checkout the worker runs in.
    pub store: Store,
    /// The worker's own task queue.
    pub queue: String,
    /// The host name.
    pub host: String,
    /// Runs executing at once on this worker (runs in the checkout itself take turns).
    pub slots: usize,
    /// Kills the process groups of running nodes if the worker dies.
    pub watchdog: Option<Arc<Watchdog>>,
    /// The machine-wide cap on agent sessions.
    pub agent_slots: Option<AgentSlots>,
    /// Runs placed here (with when, until their first stretch starts) or executing (`None`).
    held: Mutex<BTreeMap<String, Option<Instant>>>,
    /// One run at a time edits the checkout (worktree runs do not take it).
    checkout: Mutex<()>,
}

impl Host {
    /// A worker's host state.
    pub fn new(
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
            checkout: Mutex::new(()),
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

    fn set_executing(&self, run: &str, executing: bool) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if executing {
            held.insert(run.to_string(), None);
        } else {
            held.remove(run);
        }
    }
}

/// The worker shows no progress: the run's events go to its log only.
struct Silent;

impl crate::engine::Observer for Silent {
    fn on_event(&mut self, _: &crate::store::Record, _: &RunState) {}
}

/// The activities of `reins worker`.
pub struct Activities {
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

#[activities]
impl Activities {
    /// Pins a run to this worker: returns the worker's own queue, or fails (to be retried,
    /// perhaps elsewhere) when the worker has no room for another run.
    #[activity]
    pub async fn place(
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

    /// Executes the run until it ends or pauses at gates (starting it the first time, resuming
    /// it after that), heartbeating meanwhile.
    #[activity]
    pub async fn execute(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: ExecuteInput,
    ) -> Result<Segment, ActivityError> {
        let submission = input.submission;
        checked_id(&submission.run_id)?;
        let run_id = submission.run_id.clone();
        self.host.set_executing(&run_id, true);
        let (canceller, _) = Canceller::new();
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        let host = self.host.clone();
        let thread_canceller = canceller.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("run-{run_id}"))
            .spawn(move || {
                let _ = tx.send(execute_stretch(&host, &submission, thread_canceller));
            });
        if let Err(e) = spawned {
            self.host.set_executing(&run_id, false);
            return Err(retryable(format!("cannot start a thread for the run: {e}")));
        }
        let beat = ctx
            .info()
            .heartbeat_timeout
            .map_or(Duration::from_secs(1), |t| t / 4)
            .clamp(Duration::from_millis(100), Duration::from_secs(1));
        let result = loop {
            tokio::select! {
                r = &mut rx => break r,
                _ = tokio::time::sleep(beat) => {
                    let _ = ctx.record_heartbeat(()).await;
                }
                _ = ctx.cancelled(), if canceller.level() == CancelLevel::None => {
                    canceller.raise(CancelLevel::Graceful);
                }
            }
        };
        self.host.set_executing(&run_id, false);
        match result {
            Ok(Ok(segment)) => {
                if ctx.is_cancelled() && segment.status == "cancelled" {
                    return Err(ActivityError::cancelled());
                }
                Ok(segment)
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(retryable("the run's thread ended without a result")),
        }
    }

    /// Writes an answer to a waiting gate, by the same rules as `reins approve`.
    #[activity]
    pub async fn answer(
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

    /// Marks a run cancelled on this worker when it was cancelled while no stretch executed
    /// (at a gate): what `reins cancel` does to a run no process executes.
    #[activity]
    pub async fn cancelled(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: CancelInput,
    ) -> Result<(), ActivityError> {
        checked_id(&input.run_id)?;
        let run = self.host.store.run(&input.run_id);
        if !run.path.is_dir() {
            return Ok(());
        }
        mark_cancelled(&run).map_err(|e| retryable(format!("cannot mark run cancelled: {e}")))
    }
}

/// Records `node_cancelled` for each node that waits or runs and `run_finished: cancelled`,
/// unless the run has ended already.
fn mark_cancelled(run: &RunDir) -> std::io::Result<()> {
    let _lock = RunLock::acquire(&run.lock_path(), &run.id)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let (mut log, contents) = EventLog::open(&run.events_path())?;
    let state = RunState::from_records(&contents.records);
    if matches!(
        state.status,
        RunStatus::Success | RunStatus::Failed | RunStatus::Cancelled
    ) {
        return Ok(());
    }
    for node in &state.nodes {
        if matches!(node.status, NodeStatus::Running | NodeStatus::Waiting) {
            log.append(Event::NodeCancelled {
                node: node.id.clone(),
            })?;
        }
    }
    log.append(Event::RunFinished {
        status: RunStatus::Cancelled,
        error: None,
    })?;
    log.close()
}

/// The segment a finished run's state describes.
fn segment_of(state: &RunState, status: RunStatus, run: &RunDir) -> Segment {
    segment_with(state, status, run, |_| None)
}

fn segment_with(
    state: &RunState,
    status: RunStatus,
    run: &RunDir,
    deadline: impl Fn(&crate::store::NodeState) -> Option<SystemTime>,
) -> Segment {
    let waiting = if status == RunStatus::Waiting {
        state
            .nodes
            .iter()
            .filter(|n| approval::is_waiting(n, run))
            .filter_map(|n| {
                let a = n.approval.as_ref()?;
                Some(Gate {
                    node: n.id.clone(),
                    request: a.request.clone(),
                    message: a.message.clone(),
                    deadline_ms: deadline(n)
                        .and_then(|d| d.duration_since(SystemTime::UNIX_EPOCH).ok())
                        .map(|d| d.as_millis() as u64),
                })
            })
            .collect()
    } else {
        Vec::new()
    };
    Segment {
        status: status.to_string(),
        waiting,
        nodes: state
            .nodes
            .iter()
            .map(|n| (n.id.clone(), n.status.to_string()))
            .collect(),
        error: state.error.clone(),
    }
}

/// Executes one stretch of a run on this thread: start or resume, then the scheduler.
fn execute_stretch(
    host: &Host,
    submission: &Submission,
    canceller: Canceller,
) -> Result<Segment, ActivityError> {
    let _checkout = if submission.worktree {
        None
    } else {
        Some(host.checkout.lock().unwrap_or_else(|p| p.into_inner()))
    };
    let store = &host.store;
    let run = store.run(&submission.run_id);
    let runners = Runners::new();
    let prepared: Prepared = if run.path.is_dir() {
        let state = launch::read_state(&run).unwrap_or_default();
        if matches!(
            state.status,
            RunStatus::Success | RunStatus::Failed | RunStatus::Cancelled
        ) {
            // It ended already (the worker died before it could say so): never again.
            return Ok(segment_of(&state, state.status, &run));
        }
        match launch::resume(store, run.clone(), None, &runners) {
            Ok(Resumed::Ready(p)) => *p,
            Ok(Resumed::AlreadySucceeded(_)) => {
                return Ok(segment_of(&state, RunStatus::Success, &run))
            }
            Err(e) => return Err(fatal(e.message)),
        }
    } else {
        let (workflow, commands) = frozen_workflow(submission)?;
        launch::start_as(
            store,
            Some(&submission.run_id),
            workflow,
            &commands,
            &submission.inputs,
            &runners,
            submission.worktree,
            submission.base.as_deref(),
            submission.agent.as_deref(),
        )
        .map_err(|e| fatal(e.message))?
    };
    let plan = prepared.plan.clone();
    let mut options = Options::default();
    options.limits.agent_slots = host.agent_slots.clone();
    if let Some(c) = plan.workflow.concurrency.as_ref().map(|c| c.value) {
        options.concurrency = c as usize;
    }
    if let Some(d) = env_duration("REINS_RETRY_DELAY") {
        options.retry_delay = d;
    }
    if let Some(d) = env_duration("REINS_KILL_GRACE") {
        options.limits.grace = d;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| retryable(format!("cannot start the async runtime: {e}")))?;
    let report = runtime.block_on(prepared.execute(
        Box::new(Silent),
        runners,
        options,
        host.watchdog.clone(),
        canceller,
    ));
    let nodes = &plan.workflow.nodes;
    Ok(segment_with(&report.state, report.status, &run, |n| {
        let node = nodes.iter().find(|w| w.id.value == n.id)?;
        approval::deadline(node, n)
    }))
}

/// The submitted workflow, loaded and validated again from the frozen text (a worker never
/// trusts that the submitter did).
fn frozen_workflow(
    submission: &Submission,
) -> Result<(workflow::Workflow, FrozenCommands), ActivityError> {
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
        (_, Some(d)) => Err(fatal(format!(
            "the submitted workflow is not valid for this worker's reins: {}",
            d.message
        ))),
        (None, None) => Err(fatal("the submitted workflow cannot be read")),
    }
}

fn env_duration(name: &str) -> Option<Duration> {
    let text = std::env::var(name).ok()?;
    workflow::duration::parse(&text).ok()
}
