//! The Temporal workflow of a reins run.
//!
//! It places the run on a worker (the shared queue), then executes it there stretch by stretch
//! with the `execute` activity: the worker runs the run's DAG with the engine's own scheduler
//! and node runners until the run ends or pauses at gates. At a pause the workflow waits,
//! durably, for an answer (the `answer` update) or for the earliest gate timeout (a timer);
//! the answer is written on the worker by the `answer` activity, and the next stretch resumes
//! the run, so the gate's runner records the answer (or the timeout's rejection) exactly as in
//! a local run. The decisions (ready queue, trigger rules, `when`, retries, loops, what an
//! answer does) are the engine's; nothing here re-states them.
//!
//! Workflow code must be deterministic: it reads only its own state, the history (activity
//! results, updates, timers) and the workflow clock.

#![allow(missing_docs)] // the macros generate public items

use std::collections::VecDeque;
use std::time::Duration;

use temporalio_common::RetryPolicy;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    ActivityCancellationType, ActivityExecutionError, ActivityOptions, ApplicationFailure,
    MemoValue, SyncWorkflowContext, TimerResult, WorkflowCancellationToken, WorkflowContext,
    WorkflowContextView, WorkflowResult, WorkflowTermination,
};

use super::activities::Activities;
use super::types::{
    Accepted, Answer, AnswerInput, CancelInput, ExecuteInput, Finished, Gate, Segment, Submission,
    View,
};

/// A reins run as a Temporal workflow.
#[workflow]
pub struct ReinsRun {
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

#[workflow_methods]
impl ReinsRun {
    #[init]
    pub fn new(_ctx: &WorkflowContextView, submission: Submission) -> Self {
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
    pub async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<Finished> {
        let submission = ctx.state(|s| s.submission.clone());
        let run_id = submission.run_id.clone();
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
        let on_worker = |timeout: Duration| {
            ActivityOptions::with_start_to_close_timeout(timeout)
                .task_queue(placement.queue.clone())
                .retry_policy(retry(Duration::from_secs(1), Duration::from_secs(10)))
        };
        let heartbeat = Duration::from_secs(submission.heartbeat_timeout_secs.max(1));
        loop {
            ctx.set_current_details(format!("running on {}", placement.host));
            let segment = ctx
                .execute_activity(
                    Activities::execute,
                    ExecuteInput {
                        submission: submission.clone(),
                    },
                    on_worker(Duration::from_secs(366 * 24 * 3600))
                        .heartbeat_timeout(heartbeat)
                        .cancellation_type(ActivityCancellationType::WaitCancellationCompleted)
                        .summary(format!("run {run_id}"))
                        .build(),
                )
                .await;
            let segment: Segment = match segment {
                Ok(s) => s,
                Err(ActivityExecutionError::Cancelled(_)) => {
                    ctx.state_mut(|s| s.view.phase = "cancelled".into());
                    return Err(WorkflowTermination::cancelled());
                }
                Err(e) => return Err(e.into()),
            };
            ctx.state_mut(|s| {
                s.view.segments += 1;
                s.view.nodes = segment.nodes.clone();
                s.view.error = segment.error.clone();
                s.view.phase = segment.status.clone();
                s.view.waiting = segment.waiting.clone();
            });
            match segment.status.as_str() {
                "success" => {
                    let _ = ctx.upsert_memo([("reins_waiting", None::<MemoValue>)]);
                    return Ok(Finished {
                        status: segment.status,
                        placement: Some(placement.clone()),
                        nodes: segment.nodes,
                    });
                }
                "cancelled" => return Err(WorkflowTermination::cancelled()),
                "waiting" => {}
                _ => {
                    let failed: Vec<&str> = segment
                        .nodes
                        .iter()
                        .filter(|(_, s)| *s == "failed")
                        .map(|(n, _)| n.as_str())
                        .collect();
                    let why = segment
                        .error
                        .clone()
                        .unwrap_or_else(|| format!("failed nodes: {}", failed.join(", ")));
                    return Err(ApplicationFailure::non_retryable(rejected(format!(
                        "run {run_id} failed on {}: {why}",
                        placement.host
                    )))
                    .into());
                }
            }
            // Waiting at gates: show them, then wait for an answer or the first timeout.
            let gates: Vec<String> = segment.waiting.iter().map(|g| g.node.clone()).collect();
            let _ = ctx.upsert_memo([("reins_waiting", Some(MemoValue::new(gates.clone())))]);
            ctx.set_current_details(format!(
                "waiting for an answer at {} (reins approve {run_id} GATE --temporal ...)",
                gates
                    .iter()
                    .map(|g| format!("`{g}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            let now_ms = ctx
                .workflow_time()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_millis() as u64);
            let first_deadline = segment.waiting.iter().filter_map(|g| g.deadline_ms).min();
            let answered = match first_deadline {
                Some(deadline) => {
                    // At least a second, so a worker whose clock is a little behind sees the
                    // timeout passed too (and the loop does not spin if it does not).
                    let wait = Duration::from_millis(deadline.saturating_sub(now_ms))
                        .max(Duration::from_secs(1));
                    temporalio_sdk::workflows::select! {
                        r = ctx.wait_condition(|s: &Self| !s.pending.is_empty()) => r.is_ok(),
                        t = ctx.timer(wait) => t != TimerResult::Cancelled,
                    }
                }
                None => ctx
                    .wait_condition(|s: &Self| !s.pending.is_empty())
                    .await
                    .is_ok(),
            };
            if !answered || ctx.cancellation_token().is_cancelled() {
                // Cancelled while no stretch executes: mark the run cancelled on its worker.
                let _ = ctx
                    .execute_activity(
                        Activities::cancelled,
                        CancelInput {
                            run_id: run_id.clone(),
                        },
                        on_worker(Duration::from_secs(60))
                            .cancellation_token(WorkflowCancellationToken::new())
                            .build(),
                    )
                    .await;
                ctx.state_mut(|s| s.view.phase = "cancelled".into());
                return Err(WorkflowTermination::cancelled());
            }
            while let Some(answer) = ctx.state_mut(|s| s.pending.pop_front()) {
                let written = ctx
                    .execute_activity(
                        Activities::answer,
                        AnswerInput {
                            run_id: run_id.clone(),
                            answer,
                        },
                        on_worker(Duration::from_secs(60)).build(),
                    )
                    .await;
                if let Err(e) = written {
                    ctx.state_mut(|s| s.view.error = Some(format!("an answer was refused: {e}")));
                }
            }
            // The gates stay listed until the next stretch says which still wait, so an answer
            // given meanwhile is taken (and written after that stretch).
            ctx.state_mut(|s| s.view.phase = "running".into());
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
    pub fn answer(&mut self, _ctx: &mut SyncWorkflowContext<Self>, answer: Answer) -> Accepted {
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
    pub fn status(&self, _ctx: &WorkflowContextView) -> View {
        self.view.clone()
    }
}

impl ReinsRun {
    /// The waiting gate an answer is for, or why it cannot be taken.
    fn pick(&self, answer: &Answer) -> Result<Gate, String> {
        let run = &self.view.run_id;
        let open: Vec<&Gate> = self
            .view
            .waiting
            .iter()
            .filter(|g| {
                !self
                    .view
                    .answers
                    .iter()
                    .any(|a| a.gate == g.node && a.request == g.request)
            })
            .collect();
        let gate = match &answer.gate {
            Some(name) => {
                if let Some(a) = self.view.answers.iter().rev().find(|a| &a.gate == name) {
                    if self.view.waiting.iter().any(|g| g.request == a.request) {
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
