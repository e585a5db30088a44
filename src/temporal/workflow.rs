//! The Temporal workflow of a reins run: it drives the engine's own decision machine.
//!
//! The workflow builds the run's [`Plan`] from the frozen workflow text its submission carries
//! and keeps an [`engine::machine::Machine`](crate::engine::machine::Machine) — the same one
//! the local scheduler drives — fed only with what Temporal's history holds: the placement, what
//! the `open` activity says of the run, and each activity's result. It carries out the
//! machine's decisions:
//!
//! * `Start` → a `node` activity on the run's worker queue (one attempt of one node: a bash
//!   script, an agent turn, a gate looked at), heartbeating; a loop's attempt is one such
//!   activity per iteration, run again while the worker answers `continues`;
//! * `Retry` → a durable timer for the backoff, then the next attempt;
//! * `Expand` → an `expand` activity that lists the fan-out's items on the worker;
//! * `Skip`, `Fail`, `FanOutSettled`, `Pause`, `Finish` → their events, recorded on the worker
//!   by a `record` activity before anything that follows them starts;
//! * a gate that waits → the `answer` update (first answer wins), or a durable timer for the
//!   gate's timeout, then the gate's node is looked at again.
//!
//! Workflow code is deterministic: it reads no clock but the workflow's, no files, no
//! environment; every map it iterates is ordered; it has no randomness. History grows with
//! every attempt (about six events each, a `record` batch a few more), and continue-as-new is
//! not done: see `docs/temporal.md` for how many nodes a run can have.

#![allow(missing_docs)] // the macros generate public items

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use temporalio_common::RetryPolicy;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    ActivityCancellationType, ActivityExecutionError, ActivityOptions, ApplicationFailure,
    MemoValue, SyncWorkflowContext, TimerResult, WaitConditionOptions, WorkflowCancellationToken,
    WorkflowContext, WorkflowContextView, WorkflowResult, WorkflowTermination,
};

use super::activities::{frozen, Activities};
use super::types::{
    Accepted, Answer, AnswerInput, ExpandInput, Finished, Gate, NodeInput, NodeResult, Opened,
    Placement, RecordInput, Submission, View,
};
use crate::engine::context::RunInfo;
use crate::engine::fanout::FanOutError;
use crate::engine::machine::{Decision, Ended, Input, Machine, Pace};
use crate::engine::plan::Plan;
use crate::engine::scheduler::DEFAULT_CONCURRENCY;
use crate::store::{Event, NodeStatus, RunDir, RunState, RunStatus, Truncation};

/// A reins run as a Temporal workflow.
#[workflow]
pub(crate) struct ReinsRun {
    submission: Submission,
    view: View,
    /// Answers taken by the update, not yet written on the worker.
    pending: VecDeque<Accepted>,
}

fn retry(initial: Duration, max: Duration) -> RetryPolicy {
    RetryPolicy::builder()
        .initial_interval(initial)
        .backoff_coefficient(1.5)
        .maximum_interval(max)
        .build()
}

fn rejected(message: String) -> Box<dyn std::error::Error + Send + Sync> {
    message.into()
}

fn failure(message: String) -> WorkflowTermination {
    ApplicationFailure::non_retryable(rejected(message)).into()
}

/// How an attempt came back.
enum Came {
    /// The activity's result.
    Result(Box<NodeResult>),
    /// Cancelled (the run was).
    Cancelled,
    /// The activity failed for good (not the node: the worker could not run it).
    Error(String),
}

type Attempt<'a> = Pin<Box<dyn Future<Output = (usize, u32, Came)> + 'a>>;

/// A durable timer.
type Timer<'a> = Pin<Box<dyn Future<Output = TimerResult> + 'a>>;

/// What woke the workflow up.
#[allow(clippy::large_enum_variant)] // one at a time, never stored
enum Woke {
    Cancel,
    Done(usize, u32, Box<Came>),
    Answer,
    GateTimer,
}

/// Carries out the machine's decisions with activities and timers.
struct Driver<'a> {
    ctx: &'a WorkflowContext<ReinsRun>,
    machine: Machine,
    /// The attempts under way, polled in the order they started (the SDK wants its own
    /// wakers: no `FuturesUnordered`).
    running: Vec<Attempt<'a>>,
    run_id: String,
    placement: Placement,
    heartbeat: Duration,
    finished: Option<RunStatus>,
    /// Waiting gates' deadlines (milliseconds since the epoch), by node index.
    deadlines: BTreeMap<usize, u64>,
    /// The durable timer of the earliest deadline, kept across wake-ups (one timer per
    /// deadline in the history, not one per wake-up).
    gate_timer: Option<(u64, Timer<'a>)>,
}

impl<'a> Driver<'a> {
    /// Options of an activity on the run's worker, `summary` shown in the Temporal UI.
    fn on_worker(&self, timeout: Duration, summary: String) -> ActivityOptions {
        ActivityOptions::with_start_to_close_timeout(timeout)
            .task_queue(self.placement.queue.clone())
            .retry_policy(retry(Duration::from_secs(1), Duration::from_secs(10)))
            .summary(summary)
            .build()
    }

    /// Records events on the worker (even while the run is being cancelled).
    async fn record(&self, events: Vec<Event>) -> Result<(), WorkflowTermination> {
        if events.is_empty() {
            return Ok(());
        }
        let mut options = self.on_worker(
            Duration::from_secs(120),
            format!("record {} event(s)", events.len()),
        );
        options.cancellation_token = Some(WorkflowCancellationToken::new());
        let input = RecordInput {
            run_id: self.run_id.clone(),
            events,
        };
        self.ctx
            .execute_activity(Activities::record, input, options)
            .await
            .map_err(|e| failure(format!("cannot record run {}'s events: {e}", self.run_id)))
    }

    /// Starts attempt `attempt` of node `i` after `delay`.
    fn start(&mut self, i: usize, attempt: u32, delay: Duration) {
        let ctx = self.ctx;
        let id = self.machine.id(i).to_string();
        let mut input = NodeInput {
            run_id: self.run_id.clone(),
            node: id.clone(),
            attempt,
            retry: self.machine.retries_left(i, attempt),
            usage: None,
        };
        let options = |first: bool| {
            let summary = if first {
                format!("{id} #{attempt}")
            } else {
                format!("{id} #{attempt}, next iteration")
            };
            let mut options = self.on_worker(Duration::from_secs(366 * 24 * 3600), summary);
            options.heartbeat_timeout = Some(self.heartbeat);
            options.cancellation_type = ActivityCancellationType::WaitCancellationCompleted;
            options
        };
        let first = options(true);
        let later = options(false);
        ctx.state_mut(|s| s.view.attempts += 1);
        self.running.push(Box::pin(async move {
            if !delay.is_zero() && ctx.timer(delay).await == TimerResult::Cancelled {
                return (i, attempt, Came::Cancelled);
            }
            // A loop runs one iteration per activity: while it goes on, the same attempt's
            // next iteration is another activity.
            let mut options = first;
            let came = loop {
                match ctx
                    .execute_activity(Activities::node, input.clone(), options)
                    .await
                {
                    Ok(r) if r.status == "continues" => {
                        if ctx.cancellation_token().is_cancelled() {
                            break Came::Cancelled;
                        }
                        input.usage = r.usage;
                        options = later.clone();
                    }
                    Ok(r) => break Came::Result(Box::new(r)),
                    Err(ActivityExecutionError::Cancelled(_)) => break Came::Cancelled,
                    Err(e) => break Came::Error(e.to_string()),
                }
            };
            (i, attempt, came)
        }));
    }

    /// Feeds the machine one input and carries out what follows, to the end.
    async fn step(&mut self, input: Input) -> Result<(), WorkflowTermination> {
        let mut decisions = self.machine.step(input);
        loop {
            let mut events = Vec::new();
            let mut starts = Vec::new();
            let mut expand = Vec::new();
            for d in decisions {
                match d {
                    Decision::Start { node, attempt } => {
                        starts.push((node, attempt, Duration::ZERO))
                    }
                    Decision::Retry {
                        node,
                        attempt,
                        delay,
                    } => starts.push((node, attempt, delay)),
                    Decision::Skip { node, reason } => events.push(Event::NodeSkipped {
                        node: self.machine.id(node).to_string(),
                        reason,
                    }),
                    Decision::Fail { node, error } => {
                        events.push(Event::failed_unrun(self.machine.id(node), error))
                    }
                    Decision::Expand { node } => expand.push(node),
                    Decision::FanOutSettled {
                        node,
                        status,
                        output,
                        error,
                    } => {
                        let id = self.machine.id(node).to_string();
                        events.push(match status {
                            NodeStatus::Success => Event::NodeSucceeded {
                                node: id,
                                output,
                                usage: None,
                            },
                            NodeStatus::Cancelled => Event::NodeCancelled { node: id },
                            _ => Event::NodeFailed {
                                node: id,
                                error: error.unwrap_or_default(),
                                exit_code: None,
                                will_retry: false,
                                output,
                                usage: None,
                                log_tail: Vec::new(),
                                log: None,
                            },
                        });
                    }
                    Decision::Pause { waiting } => events.push(Event::RunPaused { waiting }),
                    Decision::Finish { status } => {
                        events.push(Event::RunFinished {
                            status,
                            error: None,
                        });
                        self.finished = Some(status);
                    }
                }
            }
            // What the decisions settled is on the worker before what depends on it starts.
            self.record(events).await?;
            for (node, attempt, delay) in starts {
                self.start(node, attempt, delay);
            }
            self.show();
            let Some(node) = expand.pop() else {
                return Ok(());
            };
            decisions = Vec::new();
            for node in std::iter::once(node).chain(expand) {
                let input = ExpandInput {
                    run_id: self.run_id.clone(),
                    node: self.machine.id(node).to_string(),
                };
                let options =
                    self.on_worker(Duration::from_secs(600), format!("expand {}", input.node));
                let items = match self
                    .ctx
                    .execute_activity(Activities::expand, input, options)
                    .await
                {
                    Ok(e) => match e.error {
                        Some(error) => Err(FanOutError::OnWorker(error)),
                        None => Ok(e.items),
                    },
                    Err(e) => Err(FanOutError::OnWorker(format!(
                        "cannot list the items on the worker: {e}"
                    ))),
                };
                decisions.extend(self.machine.step(Input::Expanded { node, items }));
            }
        }
    }

    /// An attempt came back: the machine hears how it ended.
    async fn ended(
        &mut self,
        i: usize,
        attempt: u32,
        came: Came,
    ) -> Result<(), WorkflowTermination> {
        let truncation = |r: &NodeResult| {
            r.truncated.map(|(kept_bytes, total_bytes)| Truncation {
                kept_bytes,
                total_bytes,
            })
        };
        let id = self.machine.id(i).to_string();
        let ended = match came {
            Came::Cancelled => Ended::Settled {
                status: NodeStatus::Cancelled,
                output: String::new(),
                truncated: None,
                artifacts: None,
            },
            Came::Error(error) => {
                let message = format!("the worker could not run `{id}`: {error}");
                self.ctx.state_mut(|s| s.view.error = Some(message.clone()));
                self.record(vec![Event::failed_unrun(self.machine.id(i), message)])
                    .await?;
                Ended::Settled {
                    status: NodeStatus::Failed,
                    output: String::new(),
                    truncated: None,
                    artifacts: None,
                }
            }
            Came::Result(r) => {
                let truncated = truncation(&r);
                let artifacts = r.artifacts.clone().map(std::path::PathBuf::from);
                self.deadlines.remove(&i);
                self.ctx
                    .state_mut(|s| s.view.waiting.retain(|g| g.node != id));
                match r.status.as_str() {
                    "success" => Ended::Settled {
                        status: NodeStatus::Success,
                        output: r.output,
                        truncated,
                        artifacts,
                    },
                    "cancelled" => Ended::Settled {
                        status: NodeStatus::Cancelled,
                        output: String::new(),
                        truncated: None,
                        artifacts,
                    },
                    "waiting" => {
                        if let Some(gate) = r.gate {
                            if let Some(d) = gate.deadline_ms {
                                self.deadlines.insert(i, d);
                            }
                            self.ctx.state_mut(|s| s.view.waiting.push(gate));
                        }
                        Ended::Waiting
                    }
                    _ => Ended::Failed {
                        retryable: r.retryable,
                        output: r.output,
                        truncated,
                        artifacts,
                    },
                }
            }
        };
        self.step(Input::AttemptEnded {
            node: i,
            attempt,
            ended,
        })
        .await
    }

    /// Shows where the run stands: the `status` query, the memo, the current details.
    fn show(&self) {
        let m = &self.machine;
        let nodes: BTreeMap<String, String> = (0..m.len())
            .map(|i| (m.id(i).to_string(), m.status(i).to_string()))
            .collect();
        let phase = match self.finished {
            Some(status) => status.to_string(),
            None if self.running.is_empty() && m.has_waiting() => "waiting".into(),
            None => "running".into(),
        };
        let waiting = m.waiting();
        self.ctx.state_mut(|s| {
            s.view.nodes = nodes;
            s.view.phase = phase.clone();
        });
        let memo = (!waiting.is_empty()).then(|| MemoValue::new(waiting.clone()));
        let _ = self.ctx.upsert_memo([("reins_waiting", memo)]);
        self.ctx.set_current_details(if waiting.is_empty() {
            format!("{phase} on {}", self.placement.host)
        } else {
            format!(
                "waiting for an answer at {} (reins approve {} GATE --temporal ...)",
                waiting
                    .iter()
                    .map(|g| format!("`{g}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                self.run_id
            )
        });
    }

    /// Waits for the next thing that happens: a cancel, an attempt back, an answer, a gate's
    /// timeout. Polled in that order (deterministic).
    async fn next(&mut self) -> Woke {
        let ctx = self.ctx;
        let watch_cancel = !self.machine.is_cancelled();
        let mut cancelled = Box::pin(ctx.cancelled());
        // Not ended by the run's cancel (that is the branch above): it would be ready forever.
        let mut waits = WaitConditionOptions::default();
        waits.cancellation_token = Some(WorkflowCancellationToken::new());
        let mut answered =
            Box::pin(ctx.wait_condition_with_options(|s: &ReinsRun| !s.pending.is_empty(), waits));
        let first_deadline = self.deadlines.values().min().copied();
        if self.gate_timer.as_ref().map(|(d, _)| *d) != first_deadline {
            // A new earliest deadline (dropping the old timer cancels it).
            self.gate_timer = first_deadline.map(|deadline| {
                let now_ms = ctx
                    .workflow_time()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_millis() as u64);
                // At least a second, so a worker whose clock is a little behind sees the
                // timeout passed too (and the loop does not spin if it does not).
                let wait = Duration::from_millis(deadline.saturating_sub(now_ms))
                    .max(Duration::from_secs(1));
                let timer: Timer<'a> = Box::pin(ctx.timer(wait));
                (deadline, timer)
            });
        }
        let timer = &mut self.gate_timer;
        let running = &mut self.running;
        std::future::poll_fn(|cx| {
            if watch_cancel && cancelled.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Woke::Cancel);
            }
            for k in 0..running.len() {
                if let Poll::Ready((i, attempt, came)) = running[k].as_mut().poll(cx) {
                    drop(running.remove(k));
                    return Poll::Ready(Woke::Done(i, attempt, Box::new(came)));
                }
            }
            if answered.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Woke::Answer);
            }
            if let Some((_, t)) = timer.as_mut() {
                if t.as_mut().poll(cx).is_ready() {
                    *timer = None;
                    return Poll::Ready(Woke::GateTimer);
                }
            }
            Poll::Pending
        })
        .await
    }

    /// Writes the answers taken on the worker; each gate is then looked at again.
    async fn answers(&mut self) -> Result<(), WorkflowTermination> {
        while let Some(answer) = self.ctx.state_mut(|s| s.pending.pop_front()) {
            let gate = answer.gate.clone();
            let options = self.on_worker(Duration::from_secs(60), format!("answer {gate}"));
            let input = AnswerInput {
                run_id: self.run_id.clone(),
                answer,
            };
            let written = self
                .ctx
                .execute_activity(Activities::answer, input, options)
                .await;
            if let Err(e) = written {
                self.ctx
                    .state_mut(|s| s.view.error = Some(format!("an answer was refused: {e}")));
            }
            let node = (0..self.machine.len()).find(|&i| self.machine.id(i) == gate);
            if let Some(node) = node {
                self.step(Input::GateReady { node }).await?;
            }
        }
        Ok(())
    }

    /// The earliest gate timeout passed: those gates are looked at again (the worker rejects
    /// them, by the same rule as a local run).
    async fn timed_out(&mut self) -> Result<(), WorkflowTermination> {
        let Some(first) = self.deadlines.values().min().copied() else {
            return Ok(());
        };
        let due: Vec<usize> = self
            .deadlines
            .iter()
            .filter(|(_, d)| **d <= first)
            .map(|(i, _)| *i)
            .collect();
        for node in due {
            self.deadlines.remove(&node);
            self.step(Input::GateReady { node }).await?;
        }
        Ok(())
    }
}

#[workflow_methods]
impl ReinsRun {
    #[init]
    pub(crate) fn new(_ctx: &WorkflowContextView, submission: Submission) -> Self {
        let view = View {
            run_id: submission.run_id.clone(),
            workflow: submission.workflow.clone(),
            phase: "placing".into(),
            ..View::default()
        };
        Self {
            submission,
            view,
            pending: VecDeque::new(),
        }
    }

    #[run(name = "reins-run")]
    pub(crate) async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<Finished> {
        let ctx: &WorkflowContext<Self> = ctx;
        let submission = ctx.state(|s| s.submission.clone());
        let run_id = submission.run_id.clone();
        // The plan, from the frozen text the submission carries: the same on every replay.
        let (mut wf, commands) = frozen(&submission).map_err(|e| failure(e.to_string()))?;
        if let Some(agent) = &submission.agent {
            crate::engine::agent::switch_default_agent(&mut wf, agent)
                .map_err(|e| failure(e.to_string()))?;
        }
        let plan = Arc::new(Plan::new(wf, &commands).map_err(|e| failure(e.to_string()))?);
        // Placement: any worker of the shared queue; one with no room for another run says so
        // and the activity goes to another (or to it again, later).
        let placed = ctx
            .execute_activity(
                Activities::place,
                run_id.clone(),
                ActivityOptions::with_start_to_close_timeout(Duration::from_secs(30))
                    .retry_policy(retry(Duration::from_millis(300), Duration::from_secs(3)))
                    .build(),
            )
            .await;
        let placement = match placed {
            Ok(p) => p,
            Err(ActivityExecutionError::Cancelled(_)) => {
                return Err(WorkflowTermination::cancelled())
            }
            Err(e) => return Err(e.into()),
        };
        let _ = ctx.upsert_memo([
            (
                "reins_worker",
                Some(MemoValue::new(placement.queue.clone())),
            ),
            ("reins_host", Some(MemoValue::new(placement.host.clone()))),
        ]);
        ctx.state_mut(|s| {
            s.view.placement = Some(placement.clone());
            s.view.phase = "running".into();
        });
        let heartbeat = Duration::from_secs(submission.heartbeat_timeout_secs.max(1));
        let opened: Opened = match ctx
            .execute_activity(
                Activities::open,
                submission.clone(),
                ActivityOptions::with_start_to_close_timeout(Duration::from_secs(600))
                    .task_queue(placement.queue.clone())
                    .retry_policy(retry(Duration::from_secs(1), Duration::from_secs(10)))
                    .summary(format!("open run {run_id}"))
                    .build(),
            )
            .await
        {
            Ok(o) => o,
            Err(ActivityExecutionError::Cancelled(_)) => {
                return Err(WorkflowTermination::cancelled())
            }
            Err(e) => return Err(e.into()),
        };
        if let Some(error) = opened.error {
            ctx.state_mut(|s| {
                s.view.phase = "failed".into();
                s.view.error = Some(error.clone());
            });
            return Err(failure(format!(
                "run {run_id} failed on {}: {error}",
                placement.host
            )));
        }
        // The run as the worker has it: its folder, inputs and the `env` values `when` reads.
        let dir = RunDir {
            id: run_id.clone(),
            path: opened.run_dir.into(),
        };
        let mut info = RunInfo::new(
            run_id.clone(),
            submission.workflow.clone(),
            opened.root.into(),
            dir,
            opened.inputs,
        );
        info.template_env = opened.env;
        let concurrency = plan
            .workflow
            .concurrency
            .as_ref()
            .map_or(DEFAULT_CONCURRENCY, |c| c.value as usize);
        let pace = Pace {
            concurrency,
            retry_delay: Duration::from_millis(opened.retry_delay_ms),
        };
        let machine = Machine::new(plan, &info, &RunState::new(), pace);
        let mut driver = Driver {
            ctx,
            machine,
            running: Vec::new(),
            run_id: run_id.clone(),
            placement: placement.clone(),
            heartbeat,
            finished: None,
            deadlines: BTreeMap::new(),
            gate_timer: None,
        };
        driver.step(Input::Begin).await?;
        while driver.finished.is_none() {
            match driver.next().await {
                Woke::Cancel => driver.step(Input::Cancel).await?,
                Woke::Done(i, attempt, came) => driver.ended(i, attempt, *came).await?,
                Woke::Answer => driver.answers().await?,
                Woke::GateTimer => driver.timed_out().await?,
            }
        }
        let status = driver.finished.unwrap_or(RunStatus::Failed);
        driver.show();
        let nodes = ctx.state(|s| s.view.nodes.clone());
        match status {
            RunStatus::Success => Ok(Finished {
                status: status.to_string(),
                placement: Some(placement),
                nodes,
            }),
            RunStatus::Cancelled => Err(WorkflowTermination::cancelled()),
            _ => {
                let failed: Vec<&str> = nodes
                    .iter()
                    .filter(|(_, s)| *s == "failed")
                    .map(|(n, _)| n.as_str())
                    .collect();
                let why = ctx
                    .state(|s| s.view.error.clone())
                    .unwrap_or_else(|| format!("failed nodes: {}", failed.join(", ")));
                Err(failure(format!(
                    "run {run_id} failed on {}: {why}",
                    placement.host
                )))
            }
        }
    }

    /// Checks an answer before the workflow takes it: the gate must wait now, the request be
    /// its current one, and no answer to it taken yet. First answer wins.
    #[update_validator(answer)]
    fn validate_answer(
        &self,
        _ctx: &WorkflowContextView,
        answer: &Answer,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.pick(answer).map(|_| ()).map_err(rejected)
    }

    /// Takes an answer to a waiting gate; the run writes it on its worker and goes on.
    #[update]
    pub(crate) fn answer(
        &mut self,
        _ctx: &mut SyncWorkflowContext<Self>,
        answer: Answer,
    ) -> Accepted {
        let gate = self.pick(&answer).expect("validated");
        let accepted = Accepted {
            gate: gate.node.clone(),
            request: gate.request.clone(),
            approved: answer.approved,
            by: answer.by,
            comment: answer.comment,
        };
        self.view.answers.push(accepted.clone());
        self.pending.push_back(accepted.clone());
        accepted
    }

    /// The run as the workflow knows it: placement, phase, waiting gates, answers, nodes.
    #[query]
    pub(crate) fn status(&self, _ctx: &WorkflowContextView) -> View {
        self.view.clone()
    }
}

impl ReinsRun {
    /// The waiting gate an answer is for, or why it cannot be taken.
    fn pick(&self, answer: &Answer) -> Result<Gate, String> {
        let run = &self.view.run_id;
        let answered = |g: &Gate| {
            self.view
                .answers
                .iter()
                .any(|a| a.gate == g.node && a.request == g.request)
        };
        let open: Vec<&Gate> = self.view.waiting.iter().filter(|g| !answered(g)).collect();
        let gate = match &answer.gate {
            Some(name) => {
                let asks_anew = open.iter().any(|g| &g.node == name);
                if let Some(a) = self.view.answers.iter().rev().find(|a| &a.gate == name) {
                    if !asks_anew {
                        return Err(format!(
                            "gate `{name}` of run {run} was already {} by {}; an answer cannot be changed",
                            if a.approved { "approved" } else { "rejected" },
                            a.by
                        ));
                    }
                }
                open.iter()
                    .find(|g| &g.node == name)
                    .copied()
                    .ok_or_else(|| {
                        format!(
                            "gate `{name}` of run {run} is not waiting for an answer (phase: {})",
                            self.view.phase
                        )
                    })?
            }
            None => match open.as_slice() {
                [one] => *one,
                [] => {
                    return Err(format!(
                        "no gate of run {run} waits for an answer (phase: {})",
                        self.view.phase
                    ))
                }
                many => {
                    return Err(format!(
                        "{} gates of run {run} wait ({}); name one",
                        many.len(),
                        many.iter()
                            .map(|g| format!("`{}`", g.node))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                }
            },
        };
        if let Some(request) = &answer.request {
            if request != &gate.request {
                return Err(format!(
                    "the answer names request {request}, but gate `{}` now asks request {}",
                    gate.node, gate.request
                ));
            }
        }
        Ok(gate.clone())
    }
}
