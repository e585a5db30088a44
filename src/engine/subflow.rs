//! `workflow:` nodes: another workflow run as a child run.
//!
//! The child is a real run in the same store (`.reins/runs/<child-id>/`), started from the
//! workflow frozen in the parent's `run.json` (so a resumed parent runs the child it started
//! with), with `run.json` naming its parent run and node ([`crate::store::ParentLink`]). The
//! parent records `child_run` in its log and keeps the child's id in `nodes/<id>/child-run`.
//! The child executes in this process through the same launch and scheduler code as any run,
//! sharing the watchdog, the agent slots and, through a linked canceller, the parent's cancel.
//!
//! * Its `inputs:` are rendered as plain text and handed over as the child's inputs: data, never
//!   code (a child's bash nodes read them by reference, like any input).
//! * The node's output is the output of the child's `output:` node, else of its single sink;
//!   `{{nodes.ID.artifacts}}` is the child's artifacts folder.
//! * A gate in the child makes the node *wait* ([`Outcome::Waiting`]): only the branch behind it
//!   pauses. [`child_ready`] tells the scheduler when one of the child's gates has an answer,
//!   and the node starts again, which resumes the child.
//! * Every attempt after the first (a retry, a resume) resumes the same child: only its
//!   unfinished nodes run again. `reins resume --from` starts a new child.

use std::path::{Path, PathBuf};

use super::cancel::{CancelLevel, Canceller};
use super::launch::{self, ChildSpec, Resumed};
use super::plan::FrozenCommands;
use super::recorder::Observer;
use super::runner::{BoxFuture, Job, NodeRunner, Outcome};
use super::runners::Runners;
use super::scheduler::Options;
use crate::store::{safe_fs, Event, NodeState, NodeStatus, ParentLink, RunDir, RunState, Store};
use crate::workflow::TemplateField;
use crate::workflow::{Isolation, NodeKind};

/// A child run's events are in its own log; the parent's view shows the `workflow:` node.
struct Unseen;

impl Observer for Unseen {
    fn on_event(&mut self, _: &crate::store::Record, _: &RunState) {}
}

/// The runner of `workflow:` nodes.
pub(crate) struct SubflowRunner;

impl NodeRunner for SubflowRunner {
    fn run(&self, job: Job) -> BoxFuture<Outcome> {
        Box::pin(run(job))
    }
}

/// The artifacts folder of a `workflow:` node's child run (`{{nodes.ID.artifacts}}`), from
/// the parent's state.
pub(crate) fn child_artifacts(run: &RunDir, node: &NodeState) -> Option<PathBuf> {
    let child = node.child_run.as_deref()?;
    Some(sibling(run, child)?.artifacts_dir())
}

/// The artifacts folder of the child run a `workflow:` node (`node`, of `run`) noted in
/// `nodes/<node>/child-run` as it started it: read never through a link, and only a run whose
/// `run.json` names this run and node as its parent counts.
pub(crate) fn noted_artifacts(run: &RunDir, node: &str) -> Option<PathBuf> {
    use std::io::Read;
    let file = run.node_dir(node).join("child-run");
    let rel = safe_fs::relative(&run.path, &file).ok()?;
    let mut text = String::new();
    safe_fs::open(&run.path, rel, safe_fs::Access::Read)
        .ok()?
        .take(256)
        .read_to_string(&mut text)
        .ok()?;
    let child = sibling(run, text.trim())?;
    let parent = child.manifest().ok()?.parent?;
    (parent.run_id == run.id && parent.node == node).then(|| child.artifacts_dir())
}

/// Why a `NODE/CHILD_NODE` path names no child run.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ChildError {
    /// The run's log could not be read.
    #[error("cannot read run {run}: {source}")]
    Unreadable {
        /// The run.
        run: String,
        /// Why.
        source: std::io::Error,
    },
    /// The run has no such node.
    #[error("run {run} has no node `{node}`{hint}")]
    NoNode {
        /// The run.
        run: String,
        /// The name asked for.
        node: String,
        /// `; did you mean ...?`, or nothing.
        hint: String,
    },
    /// The node has no child run.
    #[error("node `{node}` of run {run} has no child run (only a `workflow:` node that started has one)")]
    NoChild {
        /// The run.
        run: String,
        /// The node.
        node: String,
    },
}

/// The child run of `run`'s `workflow:` node `node`, or why there is none.
pub(crate) fn child_of(run: &RunDir, node: &str) -> Result<RunDir, ChildError> {
    let state = launch::read_state(run).map_err(|source| ChildError::Unreadable {
        run: run.id.clone(),
        source,
    })?;
    let Some(n) = state.node(node) else {
        let hint = crate::diagnostic::suggestion(node, state.nodes.iter().map(|n| n.id.as_str()))
            .map(|h| format!("; {h}"))
            .unwrap_or_default();
        return Err(ChildError::NoNode {
            run: run.id.clone(),
            node: node.to_string(),
            hint,
        });
    };
    match n.child_run.as_deref().and_then(|id| sibling(run, id)) {
        Some(child) => Ok(child),
        None => Err(ChildError::NoChild {
            run: run.id.clone(),
            node: node.to_string(),
        }),
    }
}

/// Follows a path of `workflow:` nodes from `run` (`NODE/CHILD_NODE/...`): the run the last
/// name belongs to, and that name.
pub(crate) fn descend(run: &RunDir, path: &str) -> Result<(RunDir, String), ChildError> {
    let mut run = run.clone();
    let mut rest = path;
    while let Some((node, tail)) = rest.split_once('/') {
        run = child_of(&run, node)?;
        rest = tail;
    }
    Ok((run, rest.to_string()))
}

/// A run of the same store as `run`, if `id` is a run id (what a log says is never a path).
pub(crate) fn sibling(run: &RunDir, id: &str) -> Option<RunDir> {
    if !crate::store::id::is_run_id(id) {
        return None;
    }
    let runs = run.path.parent().unwrap_or(Path::new("."));
    Some(RunDir {
        id: id.to_string(),
        path: runs.join(id),
    })
}

/// True when the child run of a waiting `workflow:` node (`node_dir` is the parent's
/// `nodes/<id>/`) has a gate with an answer waiting to be looked at, or whose timeout has
/// passed, in it or in one of its own children: the node starts again and resumes the child
/// (which rejects a gate that timed out).
pub(crate) fn child_ready(state: &NodeState, node_dir: &Path) -> bool {
    let Some(child) = state.child_run.as_deref() else {
        return false;
    };
    // `nodes/<id>` → the run → `runs/`.
    let Some(runs) = node_dir
        .parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
    else {
        return false;
    };
    if !crate::store::id::is_run_id(child) {
        return false;
    }
    let run = RunDir {
        id: child.to_string(),
        path: runs.join(child),
    };
    answered_inside(&run, 0)
}

fn answered_inside(run: &RunDir, depth: usize) -> bool {
    if depth > 16 {
        return false;
    }
    let Ok(state) = launch::read_state(run) else {
        return false;
    };
    // The child's workflow, read once a gate of it could have timed out.
    let mut workflow: Option<Option<crate::workflow::Workflow>> = None;
    state.nodes.iter().any(|n| {
        n.status == NodeStatus::Waiting
            && if n.approval.is_some() {
                let dir = run.node_dir(&n.id);
                std::fs::symlink_metadata(super::approval::answer_path(&dir)).is_ok()
                    || workflow
                        .get_or_insert_with(|| frozen_workflow(run))
                        .as_ref()
                        .is_some_and(|wf| timed_out(wf, n))
            } else {
                n.child_run
                    .as_deref()
                    .and_then(|c| sibling(run, c))
                    .is_some_and(|c| answered_inside(&c, depth + 1))
            }
    })
}

/// True when gate `n` (a node or a fan-out's instance) of a run of `wf` has a timeout that
/// has passed: looked at again, it is rejected.
fn timed_out(wf: &crate::workflow::Workflow, n: &NodeState) -> bool {
    let id = super::fanout::split_instance_id(&n.id).map_or(n.id.as_str(), |(f, _)| f);
    wf.nodes
        .iter()
        .find(|x| x.id.value == id)
        .and_then(|node| super::approval::deadline(node, n))
        .is_some_and(|d| std::time::SystemTime::now() >= d)
}

/// The workflow frozen in a run's `run.json`, if it reads.
fn frozen_workflow(run: &RunDir) -> Option<crate::workflow::Workflow> {
    let m = run.manifest().ok()?;
    crate::workflow::load_source(crate::source::SourceFile::new(
        m.workflow_path,
        m.workflow_text,
    ))
    .workflow
}

/// The child run of a `workflow:` node as the parent's log has it now.
fn recorded_child(job: &Job) -> Option<String> {
    job.recorder
        .with_state(|s| s.node(&job.node).and_then(|n| n.child_run.clone()))
}

async fn run(job: Job) -> Outcome {
    let node = &job.plan.workflow.nodes[job.index];
    let NodeKind::Workflow(name) = &node.kind else {
        return Outcome::fatal("internal error: not a `workflow` node");
    };
    let manifest = match job.run.dir.manifest() {
        Ok(m) => m,
        Err(e) => return Outcome::fatal(format!("cannot read run {}: {e}", job.run.run_id)),
    };
    let store = Store::new(&manifest.root);
    let runners = Runners::new();
    let link = ParentLink {
        run_id: job.run.run_id.clone(),
        node: job.node.clone(),
    };
    let recorded = recorded_child(&job)
        .filter(|id| crate::store::id::is_run_id(id) && store.run(id).manifest_path().exists());
    if let Some(id) = &recorded {
        // Only the run this node started: a log that names another run adopts nothing.
        let parent = store.run(id).manifest().ok().and_then(|m| m.parent);
        if parent.as_ref() != Some(&link) {
            return Outcome::fatal(format!(
                "run {id} is not the child run of node `{}` of run {}",
                job.node, job.run.run_id
            ));
        }
    }
    let prepared = match recorded {
        Some(id) => match launch::resume_child(&store, store.run(&id), &runners) {
            Ok(Resumed::Ready(p)) => *p,
            Ok(Resumed::AlreadySucceeded(run)) => {
                return match launch::read_state(&run) {
                    Ok(state) => success(&run, &state, result_of(&run)),
                    Err(e) => Outcome::fatal(format!("cannot read child run {}: {e}", run.id)),
                };
            }
            Err(e) => {
                return Outcome::fatal(format!("cannot resume child run {id}: {}", e.message))
            }
        },
        None => {
            let mut inputs = Vec::new();
            for (input, _) in node.inputs.iter() {
                match job
                    .plan
                    .render(job.index, TemplateField::Input(&input.value), &job.context)
                {
                    Ok(v) => inputs.push((input.value.clone(), v)),
                    Err(e) => {
                        return Outcome::fatal(format!(
                            "cannot render `inputs.{}`: {e}",
                            input.value
                        ))
                    }
                }
            }
            let isolated = node
                .isolation
                .as_ref()
                .is_some_and(|i| i.value == Isolation::Worktree);
            let spec = ChildSpec {
                name: name.value.clone(),
                commands: FrozenCommands(manifest.commands.clone(), manifest.workflows.clone()),
                inputs,
                parent: link,
                shared_tree: (!isolated).then(|| job.run.root.clone()),
                base: isolated
                    .then(|| super::worktree::head(&job.run.root))
                    .flatten(),
                agent: manifest.agent.clone(),
            };
            let prepared = match launch::start_child(&store, spec) {
                Ok(p) => p,
                Err(e) => {
                    return Outcome::fatal(format!(
                        "cannot start workflow `{}`: {}",
                        name.value, e.message
                    ))
                }
            };
            job.recorder.record(Event::ChildRun {
                node: job.node.clone(),
                run_id: prepared.run.id.clone(),
            });
            note_child(&job, &prepared.run.id);
            prepared
        }
    };
    let child = prepared.run.clone();
    let result = prepared.plan.workflow.result_node().map(str::to_string);
    let mut options = Options {
        limits: job.limits.clone(),
        ..Options::default()
    };
    if let Some(c) = prepared.plan.workflow.concurrency.as_ref() {
        options.concurrency = c.value as usize;
    }
    if let Some(d) = std::env::var("REINS_RETRY_DELAY")
        .ok()
        .and_then(|t| crate::workflow::duration::parse(&t).ok())
    {
        options.retry_delay = d;
    }
    let (canceller, _) = Canceller::new();
    let link = tokio::spawn(follow(job.cancel.clone(), canceller.clone()));
    let report = prepared
        .execute(
            Box::new(Unseen),
            runners,
            options,
            job.watchdog.clone(),
            canceller,
        )
        .await;
    link.abort();
    match report.status {
        crate::store::RunStatus::Success => success(&child, &report.state, result),
        crate::store::RunStatus::Waiting => Outcome::Waiting,
        crate::store::RunStatus::Cancelled => Outcome::Cancelled,
        status => {
            let failed: Vec<String> = report
                .state
                .nodes
                .iter()
                .filter(|n| n.status == NodeStatus::Failed)
                .map(|n| match &n.error {
                    Some(e) => format!("`{}`: {e}", n.id),
                    None => format!("`{}`", n.id),
                })
                .collect();
            let why = match (&report.state.error, failed.is_empty()) {
                (Some(e), _) => e.clone(),
                (None, false) => format!("failed nodes: {}", failed.join("; ")),
                (None, true) => String::new(),
            };
            Outcome::Failure {
                error: format!(
                    "child run {} of workflow `{}` {status}{}{why} (see `reins status {}`)",
                    child.id,
                    name.value,
                    if why.is_empty() { "" } else { ": " },
                    child.id
                ),
                exit_code: None,
                output: result
                    .and_then(|r| report.state.node(&r).and_then(|n| n.output.clone()))
                    .unwrap_or_default(),
                usage: spent(&report.state),
                retryable: true,
            }
        }
    }
}

/// What a child run's agents spent, counted as the `workflow:` node's own use.
fn spent(state: &RunState) -> Option<crate::store::Usage> {
    let usage = state.total_usage();
    (!usage.is_zero()).then_some(usage)
}

/// The node whose output is a child run's result, from its frozen workflow.
fn result_of(run: &RunDir) -> Option<String> {
    frozen_workflow(run)?.result_node().map(str::to_string)
}

fn success(child: &RunDir, state: &RunState, result: Option<String>) -> Outcome {
    let Some(result) = result else {
        return Outcome::fatal(format!(
            "child run {} succeeded, but its workflow has several final nodes and no `output:` to say which one's output is the result",
            child.id
        ));
    };
    Outcome::Success {
        output: state
            .node(&result)
            .and_then(|n| n.output.clone())
            .unwrap_or_default(),
        usage: spent(state),
    }
}

/// Keeps the child's id in the parent's `nodes/<id>/child-run`, for people (the log is what
/// reins reads), never through a link planted in the run directory.
fn note_child(job: &Job, child: &str) {
    let base = &job.run.dir.path;
    let file = job.dir.join("child-run");
    let written = safe_fs::relative(base, &file)
        .and_then(|rel| safe_fs::write(base, rel, format!("{child}\n").as_bytes()));
    if let Err(e) = written {
        tracing::warn!("cannot write {}: {e}", file.display());
    }
}

/// Raises the child's cancel level as the parent's rises.
async fn follow(parent: super::cancel::CancelToken, child: Canceller) {
    let level = parent.at_least(CancelLevel::Graceful).await;
    child.raise(level);
    parent.at_least(CancelLevel::Force).await;
    child.raise(CancelLevel::Force);
}
