//! Starting and resuming runs: the steps around the scheduler.
//!
//! [`start`] takes the working tree's lock, creates the run directory with its frozen
//! `run.json` and an empty event log. [`resume`] takes the lock, reloads the frozen workflow
//! (never the file as it is now), reopens the log (cutting a torn last line) and works out
//! which nodes run again. Either returns a [`Prepared`] run; [`Prepared::execute`] records
//! `run_started` or `run_resumed` and runs the scheduler to the end.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::cancel::Canceller;
use super::context::RunInfo;
use super::plan::{FrozenCommands, Plan};
use super::recorder::{Observer, Recorder};
use super::runners::Runners;
use super::scheduler::{self, Execution, Options};
use crate::diagnostic::suggestion;
use crate::process::Watchdog;
use crate::source::SourceFile;
use crate::store::{
    log, CreateError, Event, EventLog, FrozenFile, LockError, Manifest, NodeStatus, RunDir,
    RunLock, RunState, RunStatus, Store,
};
use crate::workflow::command_file::CommandLookup;
use crate::workflow::{self, Workflow};

/// Why a run could not start or resume.
#[derive(Debug)]
pub struct LaunchError {
    /// What is wrong, in words.
    pub message: String,
    /// Whose mistake it is.
    pub kind: LaunchErrorKind,
}

/// Whose mistake a [`LaunchError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaunchErrorKind {
    /// The request cannot be met as asked: bad inputs, an unknown agent, a busy working tree,
    /// a tampered run. Nothing ran.
    Refused,
    /// The store could not be read or written.
    Io,
}

impl LaunchError {
    fn usage(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            kind: LaunchErrorKind::Refused,
        }
    }

    fn io(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            kind: LaunchErrorKind::Io,
        }
    }
}

impl std::fmt::Display for LaunchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<super::agent::UnknownAgent> for LaunchError {
    fn from(e: super::agent::UnknownAgent) -> Self {
        LaunchError::usage(e.to_string())
    }
}

impl From<LockError> for LaunchError {
    fn from(e: LockError) -> Self {
        match e {
            LockError::Busy(_) => {
                LaunchError::usage(format!("{e}; wait for it, or stop it with `reins cancel`"))
            }
            LockError::Io(_) => LaunchError::io(e.to_string()),
        }
    }
}

/// Takes the working tree's lock (one run at a time edits a checkout).
fn lock_tree(store: &Store, run_id: &str) -> Result<RunLock, LaunchError> {
    RunLock::acquire(&store.tree_lock_path(), run_id).map_err(|e| match e {
        LockError::Busy(_) => LaunchError::usage(format!(
            "{e}; one run at a time works in a checkout (wait, stop it with `reins cancel`, or run with `--worktree`)"
        )),
        LockError::Io(_) => LaunchError::io(e.to_string()),
    })
}

/// A run ready to execute.
pub struct Prepared {
    /// The store.
    pub store: Store,
    /// The run's directory.
    pub run: RunDir,
    /// Its frozen description.
    pub manifest: Manifest,
    /// The workflow, ready to execute.
    pub plan: Arc<Plan>,
    /// On a resume: the workflow file and command files that changed on disk since the run
    /// started (the run still executes them as frozen in `run.json`).
    pub changed: Vec<std::path::PathBuf>,
    locks: Vec<RunLock>,
    log: EventLog,
    state: RunState,
    first: Event,
}

/// What [`resume`] found.
pub enum Resumed {
    /// Ready to execute.
    Ready(Box<Prepared>),
    /// The run already succeeded and `--from` was not given.
    AlreadySucceeded(RunDir),
}

/// Resolves `--input name=value` pairs against the workflow's inputs: every name must be
/// declared, every required input given; defaults fill the rest.
pub fn resolve_inputs(
    wf: &Workflow,
    given: &[(String, String)],
) -> Result<BTreeMap<String, String>, LaunchError> {
    let mut values = BTreeMap::new();
    for (name, value) in given {
        if wf.inputs.get(name).is_none() {
            let declared: Vec<&str> = wf.inputs.names().collect();
            let hint = suggestion(name, declared.iter().copied()).unwrap_or_else(|| {
                if declared.is_empty() {
                    "the workflow declares no inputs".into()
                } else {
                    format!("its inputs are {}", quoted(&declared))
                }
            });
            return Err(LaunchError::usage(format!(
                "workflow `{}` has no input `{name}`; {hint}",
                wf.name.value
            )));
        }
        values.insert(name.clone(), value.clone());
    }
    let mut missing = Vec::new();
    for (name, input) in wf.inputs.iter() {
        if values.contains_key(&name.value) {
            continue;
        }
        match &input.default {
            Some(d) => {
                values.insert(name.value.clone(), d.value.clone());
            }
            None if input.required.as_ref().is_some_and(|r| r.value) => {
                missing.push(name.value.as_str())
            }
            None => {
                values.insert(name.value.clone(), String::new());
            }
        }
    }
    if !missing.is_empty() {
        let flags: Vec<String> = missing.iter().map(|m| format!("--input {m}=...")).collect();
        return Err(LaunchError::usage(format!(
            "missing required input{} {}; pass {}",
            if missing.len() == 1 { "" } else { "s" },
            quoted(&missing),
            flags.join(" ")
        )));
    }
    Ok(values)
}

fn quoted(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn check_runners(plan: &Plan, runners: &Runners) -> Result<(), LaunchError> {
    let missing = runners.missing(plan);
    let Some((_, kind)) = missing.first() else {
        return Ok(());
    };
    let nodes: Vec<&str> = missing
        .iter()
        .filter(|(_, k)| k == kind)
        .map(|(id, _)| id.as_str())
        .collect();
    Err(LaunchError::usage(format!(
        "no runner is registered for {} nodes ({}); nothing was run",
        kind.describe(),
        quoted(&nodes)
    )))
}

/// Prepares a new run of a validated workflow. With `isolate` (or `isolation: worktree` in the
/// workflow) the run works in a fresh git worktree on a branch of its own, cut from `base`
/// (default `HEAD`), and does not take the working tree's lock. With `agent` that agent
/// replaces the workflow's default ([`super::agent::switch_default_agent`]), for this run and
/// its resumes.
#[allow(clippy::too_many_arguments)] // one per `reins run` option; a struct would only rename them
pub fn start(
    store: &Store,
    workflow: Workflow,
    commands: &dyn CommandLookup,
    inputs: &[(String, String)],
    runners: &Runners,
    isolate: bool,
    base: Option<&str>,
    agent: Option<&str>,
) -> Result<Prepared, LaunchError> {
    start_as(
        store, None, workflow, commands, inputs, runners, isolate, base, agent,
    )
}

/// [`start`] with the run id chosen beforehand (`None`: a fresh one): a run submitted to
/// Temporal keeps the id that names its workflow execution.
#[allow(clippy::too_many_arguments)]
pub fn start_as(
    store: &Store,
    run_id: Option<&str>,
    workflow: Workflow,
    commands: &dyn CommandLookup,
    inputs: &[(String, String)],
    runners: &Runners,
    isolate: bool,
    base: Option<&str>,
    agent: Option<&str>,
) -> Result<Prepared, LaunchError> {
    store
        .check_dir()
        .map_err(|e| LaunchError::usage(e.to_string()))?;
    let mut workflow = workflow;
    if let Some(agent) = agent {
        super::agent::switch_default_agent(&mut workflow, agent)?;
    }
    let inputs = resolve_inputs(&workflow, inputs)?;
    let isolate = isolate
        || workflow
            .isolation
            .as_ref()
            .is_some_and(|i| i.value == workflow::Isolation::Worktree);
    if let (Some(base), false) = (base, isolate) {
        return Err(LaunchError::usage(format!(
            "`--base {base}` picks what a run's worktree is cut from, and this run works in the checkout; add `--worktree`"
        )));
    }
    let path = workflow.source.path.clone();
    let text = workflow.source.text.clone();
    let name = workflow.name.value.clone();
    let plan = Plan::new(workflow, commands).map_err(|e| LaunchError::usage(e.to_string()))?;
    check_runners(&plan, runners)?;
    let frozen: BTreeMap<String, FrozenFile> = plan
        .commands
        .iter()
        .map(|(name, file)| {
            (
                name.clone(),
                FrozenFile {
                    path: file.file.path.clone(),
                    text: file.file.text.clone(),
                },
            )
        })
        .collect();
    let mut locks = Vec::new();
    if !isolate {
        locks.push(lock_tree(store, "")?);
    }
    let mut manifest = Manifest::new(&name, &path, &text, frozen, inputs, store.root());
    manifest.agent = agent.map(str::to_string);
    if let Some(id) = run_id {
        manifest.id = id.to_string();
    }
    manifest.workflows = freeze_workflows(&plan);
    manifest.digest = manifest.compute_digest();
    let root = store.root().to_path_buf();
    let wf_name = name.clone();
    let (run, run_lock) = store
        .create_run(&mut manifest, |id, manifest| {
            if isolate {
                let wt = super::worktree::create(&root, &wf_name, id, base)?;
                manifest.worktree = Some(wt.path);
            }
            Ok(())
        })
        .map_err(|e| match e {
            CreateError::Io(_) => LaunchError::io(e.to_string()),
            _ => LaunchError::usage(e.to_string()),
        })?;
    for lock in &mut locks {
        lock.set_run_id(&run.id)
            .map_err(|e| LaunchError::io(format!("cannot write the run lock: {e}")))?;
    }
    locks.push(run_lock);
    fresh(store, run, manifest, plan, locks)
}

/// A new run ready to begin: its event log created, `run_started` its first event.
/// `run.json` and the run's folder are durable already (`create_run`).
fn fresh(
    store: &Store,
    run: RunDir,
    manifest: Manifest,
    plan: Plan,
    locks: Vec<RunLock>,
) -> Result<Prepared, LaunchError> {
    let log = EventLog::create(&run.events_path(), Vec::new())
        .map_err(|e| LaunchError::io(format!("cannot create the event log: {e}")))?;
    let first = Event::RunStarted {
        run_id: run.id.clone(),
        workflow: manifest.workflow.clone(),
        nodes: plan.dag.ids.clone(),
        inputs: manifest.inputs.clone(),
        pid: std::process::id(),
        digest: manifest.digest.clone(),
    };
    Ok(Prepared {
        store: store.clone(),
        run,
        manifest,
        plan: Arc::new(plan),
        changed: Vec::new(),
        locks,
        log,
        state: RunState::new(),
        first,
    })
}

/// The child workflows of a plan, as `run.json` freezes them.
fn freeze_workflows(plan: &Plan) -> BTreeMap<String, FrozenFile> {
    plan.workflows
        .iter()
        .map(|(name, file)| {
            (
                name.clone(),
                FrozenFile {
                    path: file.path.clone(),
                    text: file.text.clone(),
                },
            )
        })
        .collect()
}

/// What a `workflow:` node starts its child run with.
pub struct ChildSpec {
    /// The child workflow's name, as frozen in the parent's `run.json`.
    pub name: String,
    /// The parent's frozen command files and child workflows (the child's are among them).
    pub commands: FrozenCommands,
    /// The inputs the node gives, rendered.
    pub inputs: Vec<(String, String)>,
    /// The parent run and node.
    pub parent: crate::store::ParentLink,
    /// The working tree the child shares with its parent; `None`: a worktree of its own.
    pub shared_tree: Option<std::path::PathBuf>,
    /// The commit an isolated child's worktree is cut from.
    pub base: Option<String>,
    /// The agent that replaced the parent's default (`reins run --agent`), inherited.
    pub agent: Option<String>,
}

/// Prepares a child run for a `workflow:` node, in the same store as its parent, from the
/// workflow frozen in the parent's `run.json`. It takes no lock on the working tree: its parent
/// holds it (or works in a worktree of its own).
pub fn start_child(store: &Store, spec: ChildSpec) -> Result<Prepared, LaunchError> {
    let Some(file) = spec.commands.1.get(&spec.name) else {
        return Err(LaunchError::usage(format!(
            "workflow `{}` is not frozen in run {}",
            spec.name, spec.parent.run_id
        )));
    };
    let source = SourceFile::new(file.path.clone(), file.text.clone());
    let mut wf = valid_workflow(source, &spec.commands).map_err(|first| {
        LaunchError::usage(format!("workflow `{}` is not valid: {first}", spec.name))
    })?;
    if let Some(agent) = &spec.agent {
        super::agent::switch_default_agent(&mut wf, agent)?;
    }
    let inputs = resolve_inputs(&wf, &spec.inputs)?;
    let name = wf.name.value.clone();
    let path = wf.source.path.clone();
    let text = wf.source.text.clone();
    let plan = Plan::new(wf, &spec.commands).map_err(|e| LaunchError::usage(e.to_string()))?;
    let frozen: BTreeMap<String, FrozenFile> = plan
        .commands
        .keys()
        .filter_map(|n| spec.commands.0.get(n).map(|f| (n.clone(), f.clone())))
        .collect();
    let mut manifest = Manifest::new(&name, &path, &text, frozen, inputs, store.root());
    manifest.agent = spec.agent.clone();
    manifest.workflows = freeze_workflows(&plan);
    manifest.parent = Some(spec.parent.clone());
    manifest.worktree = spec
        .shared_tree
        .clone()
        .filter(|tree| tree.as_path() != store.root());
    manifest.digest = manifest.compute_digest();
    let root = store.root().to_path_buf();
    let isolate = spec.shared_tree.is_none();
    let base = spec.base.clone();
    let (run, run_lock) = store
        .create_run(&mut manifest, |id, manifest| {
            if isolate {
                let wt = super::worktree::create(&root, &name, id, base.as_deref())?;
                manifest.worktree = Some(wt.path);
                manifest.digest = manifest.compute_digest();
            }
            Ok(())
        })
        .map_err(|e| match e {
            CreateError::Io(_) => LaunchError::io(e.to_string()),
            _ => LaunchError::usage(e.to_string()),
        })?;
    fresh(store, run, manifest, plan, vec![run_lock])
}

/// Prepares a resume of `run`: nodes that succeeded (or failed with `continue_on_error`) stay
/// settled; every other node runs (again), and with `from`, that node and everything downstream
/// of it too. A child run is resumed through its parent (see [`resume_child`]).
pub fn resume(
    store: &Store,
    run: RunDir,
    from: Option<&str>,
    runners: &Runners,
) -> Result<Resumed, LaunchError> {
    resume_run(store, run, from, runners, false)
}

/// Prepares a resume of a child run by its parent's `workflow:` node (no lock on the working
/// tree: the parent holds it).
pub fn resume_child(store: &Store, run: RunDir, runners: &Runners) -> Result<Resumed, LaunchError> {
    resume_run(store, run, None, runners, true)
}

/// Prepares to take up a run whose executing process died or let it go (a Temporal worker
/// restarted, or a run paused at gates going on): unlike [`resume`], only the nodes that were
/// running are reset (they run again: at least once); every settled node, skipped and failed
/// ones too, stays as it is, because the decisions about them were taken elsewhere (in the
/// Temporal workflow) and stand.
pub fn reopen(store: &Store, run: RunDir, runners: &Runners) -> Result<Prepared, LaunchError> {
    match resume_mode(store, run, None, runners, false, true)? {
        Resumed::Ready(p) => Ok(*p),
        Resumed::AlreadySucceeded(run) => Err(LaunchError::usage(format!(
            "run {} already succeeded",
            run.id
        ))),
    }
}

fn resume_run(
    store: &Store,
    run: RunDir,
    from: Option<&str>,
    runners: &Runners,
    as_child: bool,
) -> Result<Resumed, LaunchError> {
    resume_mode(store, run, from, runners, as_child, false)
}

fn resume_mode(
    store: &Store,
    run: RunDir,
    from: Option<&str>,
    runners: &Runners,
    as_child: bool,
    reopen: bool,
) -> Result<Resumed, LaunchError> {
    store
        .check_dir()
        .map_err(|e| LaunchError::usage(e.to_string()))?;
    let manifest = run
        .manifest()
        .map_err(|e| LaunchError::io(format!("cannot read run {}: {e}", run.id)))?;
    manifest
        .verify(&run, store.root())
        .map_err(|e| LaunchError::usage(e.to_string()))?;
    if let (Some(parent), false) = (&manifest.parent, as_child) {
        return Err(LaunchError::usage(format!(
            "run {} is a child of run {} (its node `{}`); resume the parent: `reins resume {}`",
            run.id, parent.run_id, parent.node, parent.run_id
        )));
    }
    let mut locks = vec![RunLock::acquire(&run.lock_path(), &run.id)?];
    if manifest.worktree.is_none() && !as_child {
        locks.push(lock_tree(store, &run.id)?);
    }
    let file = SourceFile::new(
        manifest.workflow_path.clone(),
        manifest.workflow_text.clone(),
    );
    let commands = FrozenCommands(manifest.commands.clone(), manifest.workflows.clone());
    let mut wf = valid_workflow(file, &commands).map_err(|first| {
        LaunchError::usage(format!(
            "the workflow frozen in run {} is not valid for this version of reins: {first}",
            run.id
        ))
    })?;
    if let Some(agent) = &manifest.agent {
        super::agent::switch_default_agent(&mut wf, agent)?;
    }
    let plan = Plan::new(wf, &commands).map_err(|e| LaunchError::usage(e.to_string()))?;
    check_runners(&plan, runners)?;
    let events = run.events_path();
    let opened = if events.exists() {
        EventLog::open(&events)
    } else {
        // Killed after creating the run directory, before its log: start the log now.
        EventLog::create(&events, run.durable_paths()).map(|log| (log, Default::default()))
    };
    let (log, contents) = opened.map_err(|e| {
        LaunchError::io(format!("cannot open the event log of run {}: {e}", run.id))
    })?;
    check_started_digest(&run, &manifest, &contents.records)?;
    let state = RunState::from_records(&contents.records);

    let mut rerun = vec![false; plan.len()];
    if let Some(from) = from {
        let Some(i) = plan.dag.index_of(from) else {
            let hint =
                suggestion(from, plan.dag.ids.iter().map(String::as_str)).unwrap_or_else(|| {
                    format!(
                        "its nodes are {}",
                        quoted(&plan.dag.ids.iter().map(String::as_str).collect::<Vec<_>>())
                    )
                });
            return Err(LaunchError::usage(format!(
                "run {} has no node `{from}`; {hint}",
                run.id
            )));
        };
        rerun[i] = true;
        for (d, below) in plan.dag.descendants(i).into_iter().enumerate() {
            rerun[d] |= below;
        }
    } else if state.status == RunStatus::Success && !reopen {
        return Ok(Resumed::AlreadySucceeded(run));
    }
    let mut reset = Vec::new();
    // Every node, and the instances of every fan-out expanded so far (which run its settings).
    let nodes = plan
        .dag
        .ids
        .iter()
        .cloned()
        .enumerate()
        .flat_map(|(i, id)| {
            let instances: Vec<(usize, String)> = state
                .node(&id)
                .and_then(|n| n.fan_out.as_ref())
                .into_iter()
                .flatten()
                .map(|item| (i, super::fanout::instance_id(&id, &item.key)))
                .collect();
            std::iter::once((i, id)).chain(instances)
        });
    for (i, id) in nodes {
        let id = &id;
        let node = state.node(id);
        let status = node.map(|n| n.status).unwrap_or_default();
        // A rejection is a decision, not a failure to retry: only `--from` asks again.
        let rejected = node
            .and_then(|n| n.approval.as_ref())
            .and_then(|a| a.answer.as_ref())
            .is_some_and(|a| !a.approved);
        // A gate that asked keeps its request (and its answer, if it has one) across any
        // number of resumes: one answer per request. Only `--from` asks again.
        let asked = matches!(plan.workflow.nodes[i].kind, workflow::NodeKind::Approval(_))
            && node.is_some_and(|n| {
                n.approval
                    .as_ref()
                    .is_some_and(|a| a.answer.is_some() || !n.status.is_settled())
            });
        // A failure that `continue_on_error` accepted is as settled as a success.
        let accepted = status == NodeStatus::Failed && plan.settings[i].continue_on_error;
        let again = if reopen {
            // Only what was running: a fan-out whose instances run keeps its items.
            status == NodeStatus::Running && node.is_some_and(|n| n.fan_out.is_none())
        } else {
            rerun[i]
                || !(asked
                    || matches!(status, NodeStatus::Success | NodeStatus::Waiting)
                    || status == NodeStatus::Failed && rejected
                    || accepted)
        };
        if again && status != NodeStatus::Pending {
            reset.push(id.clone());
        }
        if again && matches!(plan.workflow.nodes[i].kind, workflow::NodeKind::Approval(_)) {
            super::approval::retire_answer(&run.node_dir(id)).map_err(|e| {
                LaunchError::io(format!("cannot set aside the old answer of `{id}`: {e}"))
            })?;
        }
    }
    // A run killed before its first event was written starts over.
    let first = if contents.records.is_empty() {
        Event::RunStarted {
            run_id: run.id.clone(),
            workflow: manifest.workflow.clone(),
            nodes: plan.dag.ids.clone(),
            inputs: manifest.inputs.clone(),
            pid: std::process::id(),
            digest: manifest.digest.clone(),
        }
    } else {
        Event::RunResumed {
            pid: std::process::id(),
            from: from.map(str::to_string),
            reset,
        }
    };
    let changed = changed_sources(&manifest);
    Ok(Resumed::Ready(Box::new(Prepared {
        store: store.clone(),
        run,
        changed,
        manifest,
        plan: Arc::new(plan),
        locks,
        log,
        state,
        first,
    })))
}

/// Refuses a log whose `run_started` recorded another digest than `run.json` holds now.
fn check_started_digest(
    run: &RunDir,
    manifest: &Manifest,
    records: &[crate::store::Record],
) -> Result<(), LaunchError> {
    let recorded = records.iter().find_map(|r| match &r.event {
        Event::RunStarted { digest, .. } if !digest.is_empty() => Some(digest.as_str()),
        _ => None,
    });
    match recorded {
        Some(d) if d != manifest.digest => Err(LaunchError::usage(format!(
            "run {} was changed after it started: it began with digest {d}, but {} now records {}; \
             reins does not resume or answer a run whose frozen workflow was edited (start a new \
             run with `reins run {}`)",
            run.id,
            run.manifest_path().display(),
            manifest.digest,
            manifest.workflow
        ))),
        _ => Ok(()),
    }
}

/// Checks that a run is still what it was frozen as: `run.json` ([`Manifest::verify`]) and the
/// digest its `run_started` event recorded. `approve`/`reject` call it before answering.
pub fn verify_frozen(store: &Store, run: &RunDir, manifest: &Manifest) -> Result<(), LaunchError> {
    store
        .check_dir()
        .map_err(|e| LaunchError::usage(e.to_string()))?;
    manifest
        .verify(run, store.root())
        .map_err(|e| LaunchError::usage(e.to_string()))?;
    match log::read(&run.events_path()) {
        Ok(contents) => check_started_digest(run, manifest, &contents.records),
        Err(_) => Ok(()),
    }
}

/// The files frozen in a run's manifest (the workflow, its command files) whose text on disk
/// differs now, or that are gone. Bundled files are left out: they change only with reins.
fn changed_sources(manifest: &Manifest) -> Vec<std::path::PathBuf> {
    let frozen = std::iter::once((&manifest.workflow_path, &manifest.workflow_text))
        .chain(manifest.commands.values().map(|f| (&f.path, &f.text)));
    frozen
        .filter(|(path, _)| !path.starts_with("<bundled>"))
        .filter(|(path, text)| {
            let on_disk = if path.is_absolute() {
                path.to_path_buf()
            } else {
                manifest.root.join(path)
            };
            let now = std::fs::read_to_string(&on_disk).or_else(|_| std::fs::read_to_string(path));
            now.map_or(true, |now| now != **text)
        })
        .map(|(path, _)| path.clone())
        .collect()
}

/// What ran.
pub struct Report {
    /// How the run ended.
    pub status: RunStatus,
    /// Its state at the end.
    pub state: RunState,
}

impl Prepared {
    /// The state the log holds before this execution.
    pub fn state(&self) -> &RunState {
        &self.state
    }

    /// Records `run_started`/`run_resumed` and executes the run to its end.
    pub async fn execute(
        self,
        observer: Box<dyn Observer>,
        runners: Runners,
        options: Options,
        watchdog: Option<Arc<Watchdog>>,
        canceller: Canceller,
    ) -> Report {
        let begun = match self.begin(observer) {
            Ok(b) => b,
            Err(report) => return report,
        };
        let Begun {
            plan,
            run,
            recorder,
            locks,
        } = begun;
        let status = scheduler::execute(Execution {
            plan,
            run,
            recorder: recorder.clone(),
            runners,
            options,
            watchdog,
            canceller,
        })
        .await;
        let state = recorder.state();
        drop(recorder);
        drop(locks);
        Report { status, state }
    }

    /// Records `run_started`/`run_resumed` and renders the workflow's `env:`: the run is ready
    /// for its nodes. A workflow `env:` that cannot be rendered ends the run (failed, recorded).
    #[allow(clippy::result_large_err)] // the run's final report, returned once per run
    pub fn begin(self, observer: Box<dyn Observer>) -> Result<Begun, Report> {
        let Prepared {
            run,
            manifest,
            plan,
            locks,
            log,
            state,
            first,
            ..
        } = self;
        let recorder = Recorder::new(log, state, observer);
        recorder.record(first);
        let mut info = RunInfo::new(
            run.id.clone(),
            manifest.workflow.clone(),
            manifest
                .worktree
                .clone()
                .unwrap_or_else(|| manifest.root.clone()),
            run.clone(),
            manifest.inputs.clone(),
        );
        for (name, _) in plan.workflow.env.iter() {
            match plan.render_workflow_env(&name.value, &info.base_context()) {
                Ok(value) => {
                    info.template_env.insert(name.value.clone(), value.clone());
                    info.env.push((name.value.clone(), value));
                }
                Err(e) => {
                    recorder.record(Event::RunFinished {
                        status: RunStatus::Failed,
                        error: Some(format!(
                            "cannot render the workflow's `env.{}`: {e}",
                            name.value
                        )),
                    });
                    let _ = recorder.flush();
                    drop(locks);
                    return Err(Report {
                        status: RunStatus::Failed,
                        state: recorder.state(),
                    });
                }
            }
        }
        Ok(Begun {
            plan,
            run: Arc::new(info),
            recorder,
            locks,
        })
    }
}

/// A run that has begun ([`Prepared::begin`]): what its nodes need, and its locks.
pub struct Begun {
    /// The workflow, ready to execute.
    pub plan: Arc<Plan>,
    /// The run.
    pub run: Arc<RunInfo>,
    /// Where its events go.
    pub recorder: Recorder,
    /// The run's lock (and the working tree's): released when this is dropped.
    pub locks: Vec<RunLock>,
}

/// Reads a run's state from its log.
pub fn read_state(run: &RunDir) -> std::io::Result<RunState> {
    let contents = log::read(&run.events_path())?;
    Ok(RunState::from_records(&contents.records))
}

/// A frozen workflow loaded and validated again; the first error's message when it is not
/// valid (the caller says which workflow).
fn valid_workflow(
    source: std::sync::Arc<SourceFile>,
    commands: &dyn crate::workflow::command_file::CommandLookup,
) -> Result<workflow::Workflow, String> {
    let loaded = workflow::load_source(source);
    let diagnostics = workflow::validate::validate(&loaded, commands);
    match diagnostics.iter().find(|d| d.is_error()) {
        Some(first) => Err(first.message.clone()),
        None => loaded.workflow.ok_or_else(String::new),
    }
}
