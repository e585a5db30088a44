//! The loop runner: runs a node's body again and again until a condition holds.
//!
//! Each iteration is one call of the body's runner (see the loop contract in
//! [`super::runner`]). After a successful iteration the loop is done when `until` renders true
//! (it reads `{{output}}`, this iteration's output, and `{{loop.iteration}}`) or `until_bash`
//! exits 0. Every iteration is recorded (`loop_iteration`: its output and whether the loop
//! goes on, is done, or failed). The node's output is the last iteration's output.
//!
//! * Reaching `max_iterations` without being done fails the node, and says so.
//! * A failing iteration fails this attempt of the node; a retry (`retries`) runs *that
//!   iteration* again, not the loop from the start.
//! * A resumed run continues after the last recorded iteration, with `{{loop.previous}}` set
//!   to its output. A loop that had finished (a `done` iteration, or `max_iterations` used up)
//!   starts over at 1 when it runs again (`resume` of the failed loop, `resume --from`).
//! * `timeout` applies to each iteration.
//! * A job with [`Job::new_iterations`] runs that many iterations at most, then, when the loop
//!   goes on, ends with [`Outcome::Continues`]: the next call picks up after them, as a
//!   resume does (a Temporal worker runs each iteration as its own activity so).
//! * When the iteration whose output becomes the node's (the last one run) printed more than
//!   the output limit, the loop records `output_truncated` for the node and keeps that
//!   iteration's whole output as the node's `output.txt`, as a bash node does.
//! * `until_bash` reads this iteration's output from the file `$REINS_OUTPUT_FILE`, always,
//!   and from `$REINS_OUTPUT` too when it fits the environment (up to 100 KiB, no NUL).

use serde_json::json;

use super::runner::{BoxFuture, Job, NodeRunner, Outcome, SessionChoice};
use crate::process::{self, Ending, Spec};
use crate::store::{Event, IterationStatus, Usage};
use crate::workflow::template::{is_truthy, RenderError};
use crate::workflow::NodeKind;
use crate::workflow::TemplateField;

/// Runs `loop` nodes around the runner of their body's kind.
pub(crate) struct LoopRunner {
    /// The runner of the body's kind.
    pub body: std::sync::Arc<dyn NodeRunner>,
}

impl NodeRunner for LoopRunner {
    fn run(&self, job: Job) -> BoxFuture<Outcome> {
        let body = self.body.clone();
        Box::pin(run(body, job))
    }
}

/// Where the loop picks up: the last iteration recorded and its output, unless the loop
/// finished (done, or `max` iterations used up: then it starts over).
fn start_point(job: &Job, max: u32) -> (u32, String) {
    let iterations = job
        .recorder
        .with_state(|s| s.node(&job.node).map(|n| n.iterations.clone()))
        .unwrap_or_default();
    let current = match iterations.iter().rposition(|it| {
        it.status == IterationStatus::Done
            || it.status == IterationStatus::Continue && it.iteration >= max
    }) {
        Some(done) => &iterations[done + 1..],
        None => &iterations[..],
    };
    current
        .iter()
        .rev()
        .find(|it| it.status == IterationStatus::Continue)
        .map(|it| (it.iteration, it.output.clone()))
        .unwrap_or((0, String::new()))
}

async fn run(body: std::sync::Arc<dyn NodeRunner>, job: Job) -> Outcome {
    let node = &job.plan.workflow.nodes[job.index];
    let NodeKind::Loop(spec) = &node.kind else {
        return Outcome::fatal("internal error: the loop runner got a node that is not a loop");
    };
    let max = spec.max_iterations.value;
    let session = if spec.fresh.as_ref().is_some_and(|f| f.value) {
        SessionChoice::Fresh
    } else {
        match SessionChoice::of(node) {
            SessionChoice::Fresh => SessionChoice::Sticky(format!("loop-{}", job.node)),
            sticky => sticky,
        }
    };
    let (mut n, mut previous) = start_point(&job, max);
    let mut usage: Option<Usage> = job.usage_before;
    let mut ran = 0u32;
    // The whole output of the last iteration run, when it was cut to the limit.
    let mut cut: Option<std::path::PathBuf> = None;
    loop {
        if n >= max {
            keep_truncation(&job, cut.as_deref());
            return Outcome::Failure {
                error: format!(
                    "the loop ran {max} iteration{} (`max_iterations`) and its condition never held",
                    if max == 1 { "" } else { "s" }
                ),
                exit_code: None,
                output: previous,
                usage,
                retryable: false,
            };
        }
        n += 1;
        let mut context = job.context.clone();
        context["loop"] = json!({ "iteration": n, "previous": previous });
        let mut iteration = job.clone();
        iteration.context = context.clone();
        iteration.iteration = Some(n);
        iteration.new_iterations = None;
        iteration.usage_before = None;
        iteration.session = session.clone();
        iteration.dir = job.dir.join(format!("iteration-{n}"));
        iteration
            .env
            .push(("REINS_LOOP_ITERATION".into(), n.to_string()));
        let iteration_dir = iteration.dir.clone();
        // A file left by an earlier attempt of this iteration must not pass for this one's.
        let whole = super::context::output_file(&iteration_dir);
        let _ = std::fs::remove_file(&whole);
        let outcome = body.run(iteration).await;
        ran += 1;
        // The node's output is the last iteration's: so is its truncation.
        cut = std::fs::symlink_metadata(&whole)
            .is_ok_and(|m| m.is_file())
            .then_some(whole);
        let record = |output: &str, status| {
            job.recorder.record(Event::LoopIteration {
                node: job.node.clone(),
                iteration: n,
                output: output.to_string(),
                status,
            });
        };
        match outcome {
            Outcome::Success {
                output,
                usage: used,
            } => {
                add(&mut usage, used);
                context["output"] = json!(output);
                let done = match until(&job, &context, n, &output).await {
                    Ok(done) => done,
                    Err(e) => {
                        record(&output, IterationStatus::Failed);
                        keep_truncation(&job, cut.as_deref());
                        return Outcome::Failure {
                            error: format!("iteration {n}: {e}"),
                            exit_code: None,
                            output,
                            usage,
                            retryable: false,
                        };
                    }
                };
                if done {
                    record(&output, IterationStatus::Done);
                    keep_truncation(&job, cut.as_deref());
                    return Outcome::Success { output, usage };
                }
                record(&output, IterationStatus::Continue);
                previous = output;
                // Past `max_iterations` the next turn fails the node: that is not a pause.
                if n < max && job.new_iterations.is_some_and(|cap| ran >= cap) {
                    return Outcome::Continues { usage };
                }
            }
            Outcome::Failure {
                error,
                exit_code,
                output,
                usage: used,
                retryable,
            } => {
                add(&mut usage, used);
                record(&output, IterationStatus::Failed);
                keep_truncation(&job, cut.as_deref());
                return Outcome::Failure {
                    error: format!("iteration {n}: {error}"),
                    exit_code,
                    output,
                    usage,
                    retryable,
                };
            }
            Outcome::Cancelled => return Outcome::Cancelled,
            Outcome::Waiting | Outcome::Continues { .. } => {
                return Outcome::fatal(
                    "internal error: a loop body cannot wait for approval or loop itself",
                )
            }
        }
    }
}

/// The loop settles with the output of an iteration that was cut to the output limit (its
/// whole output in `whole`): keeps that as the node's `output.txt` and records the truncation.
fn keep_truncation(job: &Job, whole: Option<&std::path::Path>) {
    let Some(whole) = whole else { return };
    let dest = super::context::output_file(&job.dir);
    match super::bash::copy_in_run(&job.run.dir.path, whole, &dest) {
        Ok(total) => {
            job.recorder.record(Event::OutputTruncated {
                node: job.node.clone(),
                kept_bytes: job.limits.output_limit as u64,
                total_bytes: total,
            });
        }
        Err(e) => tracing::warn!("cannot keep the whole output of `{}`: {e}", job.node),
    }
}

fn add(total: &mut Option<Usage>, used: Option<Usage>) {
    if let Some(u) = used {
        total.get_or_insert_with(Usage::default).add(&u);
    }
}

/// Why `until` or `until_bash` could not decide whether the loop is done.
#[derive(Debug, thiserror::Error)]
enum UntilError {
    #[error("cannot render `until`: {0}")]
    Render(#[source] RenderError),
    #[error("cannot render `until_bash`: {0}")]
    Script(#[source] super::bash::ScriptError),
    #[error("cannot write {}: {source}", .path.display())]
    Output {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot run `until_bash`: {0}")]
    Run(#[source] std::io::Error),
    #[error("cancelled")]
    Cancelled,
    /// `until_bash` timed out or was killed.
    #[error("`until_bash` {}", .0.describe())]
    Ended(Ending),
}

/// Whether the loop is done after this iteration: `until` renders true or `until_bash` exits 0.
async fn until(
    job: &Job,
    context: &serde_json::Value,
    n: u32,
    output: &str,
) -> Result<bool, UntilError> {
    let plan = &job.plan;
    if plan.has(job.index, TemplateField::Until) {
        let text = plan
            .render(job.index, TemplateField::Until, context)
            .map_err(UntilError::Render)?;
        if is_truthy(&text) {
            return Ok(true);
        }
    }
    if !plan.has(job.index, TemplateField::UntilBash) {
        return Ok(false);
    }
    let dir = job.dir.join(format!("iteration-{n}"));
    let mut env = job.env.clone();
    let script = plan
        .render_script(job.index, TemplateField::UntilBash, context)
        .map_err(super::bash::ScriptError::from)
        .and_then(|s| super::bash::pass_values(s, &job.run.dir.path, &dir.join("until"), &mut env))
        .map_err(UntilError::Script)?;
    let shell = &plan.settings[job.index].shell;
    let mut args: Vec<String> = shell[1..].to_vec();
    args.push("-c".into());
    args.push(script);
    env.push(("REINS_LOOP_ITERATION".into(), n.to_string()));
    // Always as a file, whatever its size; in the environment too when it fits.
    let output_file = dir.join("until.output");
    if let Err(source) =
        super::bash::write_value(&job.run.dir.path, &output_file, output.as_bytes())
    {
        return Err(UntilError::Output {
            path: output_file,
            source,
        });
    }
    env.push((
        "REINS_OUTPUT_FILE".into(),
        output_file.display().to_string(),
    ));
    if output.len() <= super::context::ENV_VALUE_LIMIT && !output.contains('\0') {
        env.push(("REINS_OUTPUT".into(), output.to_string()));
    }
    let spec = Spec {
        program: shell[0].clone(),
        args,
        cwd: job.cwd.clone(),
        env,
        stdout_log: dir.join("until.stdout.log"),
        stderr_log: dir.join("until.stderr.log"),
        timeout: job.timeout,
        grace: job.limits.grace,
        output_limit: job.limits.output_limit,
    };
    let finished = process::run(&spec, &job.cancel, job.watchdog.as_deref())
        .await
        .map_err(UntilError::Run)?;
    match finished.ending {
        Ending::Exited(0) => Ok(true),
        Ending::Exited(_) => Ok(false),
        Ending::Cancelled => Err(UntilError::Cancelled),
        ending => Err(UntilError::Ended(ending)),
    }
}
