//! Approval gates: a human says yes or no.
//!
//! Reaching a gate records `approval_requested` with a fresh random request id, and the gate
//! *waits* ([`Outcome::Waiting`]): the branch behind it pauses, everything else runs on. An
//! answer is a file, `nodes/<gate>/answer.json`, naming the request it answers, created with
//! `O_EXCL | O_NOFOLLOW` ([`write_answer`]), so the first answer wins and a second one is
//! refused, whichever process gives it. A file that names no request or another one (planted
//! by a node before the gate asked, left from an earlier request) is not an answer: it is set
//! aside as `answer.refused.N.json` and the gate keeps waiting. The run that owns the gate
//! notices the file (the scheduler polls waiting gates) and starts the gate again; this runner
//! then records `approval_answered` and settles the gate: approved is a success whose output is
//! the comment, rejected is a failure that is never retried (its output is the comment too, so
//! a rework branch can read `{{nodes.GATE.output}}`).
//!
//! [`answer`] is what `reins approve`/`reject` (and any other front end) call: it refuses to
//! answer from inside the run the gate belongs to ([`inside_run`]) and a run whose frozen
//! workflow was edited, picks the gate, writes the answer and records it when no process
//! executes the run. See `docs/security.md` for what this does and does not protect against.
//!
//! A gate's `timeout` counts from `approval_requested`; once it has passed, the gate is
//! rejected by `reins` with the comment `timed out after X`. Nothing is ever approved
//! implicitly.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::runner::{BoxFuture, Job, NodeRunner, Outcome};
use crate::diagnostic::suggestion;
use crate::source::SourceFile;
use crate::store::lock::live_owner;
use crate::store::safe_fs::{self, Access};
use crate::store::{
    time, Event, EventLog, NodeState, NodeStatus, RunDir, RunLock, RunState, RunStatus, Store,
};
use crate::workflow::TemplateField;
use crate::workflow::{self, duration, Node, NodeKind};

/// Who answers for reins itself (a timed-out gate).
pub(crate) const REINS: &str = "reins";

/// An answer, as kept in `nodes/<gate>/answer.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct AnswerFile {
    /// Approved or rejected.
    pub approved: bool,
    /// Who answered: the OS user, or `reins` for a timeout.
    pub by: String,
    /// When, RFC 3339.
    pub at: String,
    /// What they said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// The id of the request it answers (from `approval_requested`).
    #[serde(default)]
    pub request: String,
}

impl AnswerFile {
    /// An answer to `request` given now by `by`.
    pub(crate) fn now(
        approved: bool,
        by: impl Into<String>,
        comment: Option<String>,
        request: &str,
    ) -> Self {
        Self {
            approved,
            by: by.into(),
            at: time::format(time::now()),
            comment,
            request: request.to_string(),
        }
    }

    /// The event that records it.
    pub(crate) fn event(&self, node: &str) -> Event {
        Event::ApprovalAnswered {
            node: node.to_string(),
            approved: self.approved,
            by: self.by.clone(),
            comment: self.comment.clone(),
            request: self.request.clone(),
        }
    }

    /// True when it answers `request` (any answer counts for a request recorded before
    /// requests had ids).
    pub(crate) fn answers(&self, request: &str) -> bool {
        request.is_empty() || self.request == request
    }
}

/// A fresh request id.
pub(crate) fn new_request_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The answer file of a gate, given its node folder.
pub(crate) fn answer_path(node_dir: &Path) -> PathBuf {
    node_dir.join("answer.json")
}

/// `nodes/<gate>/answer.json` relative to the run directory.
fn answer_rel(run: &RunDir, gate: &str) -> PathBuf {
    let dir = run.node_dir(gate);
    let rel = dir.strip_prefix(&run.path).unwrap_or(&dir).to_path_buf();
    rel.join("answer.json")
}

/// What a gate's answer file holds.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Found {
    /// No file.
    Nothing,
    /// An answer to the request asked.
    Answer(AnswerFile),
    /// A file that is not an answer to it: unreadable, a symlink, not JSON, or for another
    /// request.
    Foreign(String),
}

/// Reads a gate's answer file (never through a symlink) and checks it answers `request`.
pub(crate) fn find_answer(run: &RunDir, gate: &str, request: &str) -> Found {
    let rel = answer_rel(run, gate);
    let mut text = String::new();
    let read = safe_fs::open(&run.path, &rel, Access::Read)
        .and_then(|f| f.take(64 * 1024).read_to_string(&mut text));
    match read {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Found::Nothing,
        Err(e) => Found::Foreign(e.to_string()),
        Ok(_) => match serde_json::from_str::<AnswerFile>(&text) {
            Ok(a) if a.answers(request) => Found::Answer(a),
            Ok(_) => Found::Foreign(format!(
                "{} answers another request than the one the gate asked; only `reins approve` or \
                 `reins reject` writes an answer",
                run.path.join(&rel).display()
            )),
            Err(e) => Found::Foreign(format!(
                "{} is not an answer ({e})",
                run.path.join(&rel).display()
            )),
        },
    }
}

/// Moves whatever is at a gate's `answer.json` aside as `answer.<tag>.N.json` (nothing is
/// deleted). Renaming moves a planted symlink itself, never what it points at.
fn set_aside(run: &RunDir, gate: &str, tag: &str) -> std::io::Result<()> {
    let dir = run.node_dir(gate);
    let path = answer_path(&dir);
    if std::fs::symlink_metadata(&dir).is_ok_and(|m| m.file_type().is_symlink()) {
        // A planted folder link: move the link away, never into where it points.
        return std::fs::rename(&dir, dir.with_extension("refused-link"));
    }
    if std::fs::symlink_metadata(&path).is_err() {
        return Ok(());
    }
    let mut n = 1;
    loop {
        let old = dir.join(format!("answer.{tag}{n}.json"));
        if std::fs::symlink_metadata(&old).is_err() {
            return std::fs::rename(&path, old);
        }
        n += 1;
    }
}

/// Why an answer was not written.
#[derive(Debug)]
pub(crate) enum WriteError {
    /// Someone answered this request first: their answer.
    AlreadyAnswered(Option<AnswerFile>),
    /// The file could not be written.
    Io(std::io::Error),
}

/// Writes a gate's answer unless the request has one already (the first answer wins). A file
/// there that does not answer this request is set aside first.
pub(crate) fn write_answer(
    run: &RunDir,
    gate: &str,
    answer: &AnswerFile,
) -> Result<(), WriteError> {
    let rel = answer_rel(run, gate);
    for _ in 0..3 {
        let mut file = match safe_fs::open(&run.path, &rel, Access::CreateNew) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                // The winner may still be writing it: give it a moment.
                for _ in 0..20 {
                    match find_answer(run, gate, &answer.request) {
                        Found::Answer(a) => return Err(WriteError::AlreadyAnswered(Some(a))),
                        Found::Nothing => break,
                        Found::Foreign(_) => {}
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                if let Found::Foreign(why) = find_answer(run, gate, &answer.request) {
                    tracing::warn!("set aside: {why}");
                    set_aside(run, gate, "refused.").map_err(WriteError::Io)?;
                }
                continue;
            }
            Err(e) => {
                // A planted link on the way: move it aside and try again.
                if e.kind() == std::io::ErrorKind::InvalidInput {
                    set_aside(run, gate, "refused.").map_err(WriteError::Io)?;
                    continue;
                }
                return Err(WriteError::Io(e));
            }
        };
        let text = serde_json::to_string_pretty(answer).map_err(|e| WriteError::Io(e.into()))?;
        return file
            .write_all(text.as_bytes())
            .and_then(|_| file.sync_all())
            .map_err(WriteError::Io);
    }
    Err(WriteError::AlreadyAnswered(None))
}

/// Moves an old answer aside (`answer.N.json`) so the gate can be asked again
/// (`reins resume --from`). Nothing is deleted.
pub(crate) fn retire_answer(node_dir: &Path) -> std::io::Result<()> {
    let path = answer_path(node_dir);
    if std::fs::symlink_metadata(&path).is_err() {
        return Ok(());
    }
    let mut n = 1;
    loop {
        let old = node_dir.join(format!("answer.{n}.json"));
        if std::fs::symlink_metadata(&old).is_err() {
            return std::fs::rename(&path, old);
        }
        n += 1;
    }
}

/// How long a gate waits: its `approval.timeout`, else its node `timeout` (never the
/// workflow's default timeout, which is meant for work, not for humans).
pub(crate) fn gate_timeout(node: &Node) -> Option<Duration> {
    match &node.kind {
        NodeKind::Approval(a) => a
            .timeout
            .as_ref()
            .or(node.timeout.as_ref())
            .map(|t| t.value),
        _ => None,
    }
}

/// When a waiting gate times out, if it has a timeout and was asked.
pub(crate) fn deadline(node: &Node, state: &NodeState) -> Option<SystemTime> {
    let asked = state.approval.as_ref()?.requested_at?;
    Some(asked + gate_timeout(node)?)
}

/// The rejection reins gives a gate whose timeout passed.
pub(crate) fn timed_out(node: &Node, request: &str) -> AnswerFile {
    let after = gate_timeout(node).map(duration::format).unwrap_or_default();
    AnswerFile::now(
        false,
        REINS,
        Some(format!("timed out after {after}")),
        request,
    )
}

/// The OS user answering: the account name, else `$USER`, else the uid.
pub(crate) fn os_user() -> String {
    let uid = nix::unistd::getuid();
    if let Ok(Some(user)) = nix::unistd::User::from_uid(uid) {
        return user.name;
    }
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| format!("uid {uid}"))
}

/// True when a gate has an answer file waiting to be looked at (the runner checks it answers
/// the request), or its timeout has passed; for a waiting `workflow:` node, when a gate of its
/// child run has one.
pub(crate) fn ready_to_settle(node: &Node, state: &NodeState, node_dir: &Path) -> bool {
    if let NodeKind::Workflow(_) = node.kind {
        return super::subflow::child_ready(state, node_dir);
    }
    std::fs::symlink_metadata(answer_path(node_dir)).is_ok()
        || deadline(node, state).is_some_and(|d| SystemTime::now() >= d)
}

/// An answer someone gives to a run's gate (`reins approve`/`reject`, or the web view).
#[derive(Debug, Clone)]
pub(crate) struct Given {
    /// The gate; `None` picks the only gate waiting.
    pub gate: Option<String>,
    /// Approve or reject.
    pub approved: bool,
    /// Who answers (see [`os_user`]).
    pub by: String,
    /// What they say.
    pub comment: Option<String>,
}

/// An answer that was written.
#[derive(Debug, Clone)]
pub(crate) struct Answered {
    /// The gate answered.
    pub gate: String,
    /// The answer as written.
    pub answer: AnswerFile,
    /// The live process executing the run, which records the answer and continues the
    /// gate's branch itself; `None` when the answer was recorded here.
    pub owner: Option<u32>,
    /// The run to resume to go on: the run itself, or for a gate of a child run, the run at
    /// the top of its tree (a child is resumed through its parent).
    pub resume: String,
}

/// Why an answer was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Not an answer that can be given (no such gate, already answered, from inside the run,
    /// a tampered run...).
    Usage(String),
    /// The answer could not be written.
    Io(String),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Usage(m) | Refused::Io(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Refused {}

/// Answers a waiting gate of `run`: refuses from inside the run and on a tampered run, picks
/// the gate, writes the answer (the first answer to a request wins) and records it in the log
/// unless a live process executes the run (which then records it and goes on by itself).
pub(crate) fn answer(store: &Store, run: &RunDir, given: Given) -> Result<Answered, Refused> {
    let verb = if given.approved { "approve" } else { "reject" };
    // A gate of a child run, named from its parent: `NODE/GATE` (at any depth).
    let named = match given.gate.clone() {
        Some(g) => Some(g),
        None => match waiting_gates(run).as_slice() {
            [one] if one.contains('/') => Some(one.clone()),
            _ => None,
        },
    };
    if let Some((node, rest)) = named.as_deref().and_then(|g| g.split_once('/')) {
        if let Some(why) = inside_run(run) {
            return Err(Refused::Usage(format!(
                "refusing to {verb} a gate of run {} from inside that run ({why}); a gate is answered \
                 by a human from outside the run it guards, never by one of its nodes",
                run.id
            )));
        }
        let child = child_of(run, node).map_err(|e| Refused::Usage(e.to_string()))?;
        let mut answered = answer(
            store,
            &child,
            Given {
                gate: Some(rest.to_string()),
                ..given
            },
        )?;
        answered.gate = format!("{node}/{}", answered.gate);
        return Ok(answered);
    }
    if let Some(why) = inside_ancestors(run) {
        return Err(Refused::Usage(format!(
            "refusing to {verb} a gate of run {} from inside {why}; a gate is answered by a human \
             from outside the runs it guards, never by one of their nodes",
            run.id
        )));
    }
    if let Some(why) = inside_run(run) {
        return Err(Refused::Usage(format!(
            "refusing to {verb} a gate of run {} from inside that run ({why}); a gate is answered \
             by a human from outside the run it guards, never by one of its nodes",
            run.id
        )));
    }
    let manifest = run
        .manifest()
        .map_err(|e| Refused::Usage(format!("cannot read run {}: {e}", run.id)))?;
    super::launch::verify_frozen(store, run, &manifest).map_err(|e| Refused::Usage(e.message))?;
    let loaded = workflow::load_source(SourceFile::new(
        manifest.workflow_path.clone(),
        manifest.workflow_text.clone(),
    ));
    let Some(wf) = loaded.workflow else {
        return Err(Refused::Usage(format!(
            "the workflow frozen in run {} cannot be read",
            run.id
        )));
    };
    let state = super::launch::read_state(run)
        .map_err(|e| Refused::Usage(format!("cannot read run {}: {e}", run.id)))?;
    let gate = pick_gate(given.gate.as_deref(), &wf.nodes, &state, run, verb)?;
    let node = workflow_node(&wf.nodes, &state, &gate).expect("picked");
    let node_state = state.node(&gate).cloned().unwrap_or_default();
    let request = node_state
        .approval
        .as_ref()
        .map(|a| a.request.clone())
        .unwrap_or_default();
    if let Some(at) = deadline(node, &node_state).filter(|d| SystemTime::now() >= *d) {
        // Expired: the gate is rejected by reins, whoever asks.
        let _ = write_answer(run, &gate, &timed_out(node, &request));
        if let Found::Answer(a) = find_answer(run, &gate, &request) {
            record(run, &gate, &a);
        }
        return Err(Refused::Usage(format!(
            "gate `{gate}` of run {} timed out at {} and was rejected; it cannot be answered any more (`reins resume {} --from {gate}` asks again)",
            run.id,
            time::format(at),
            run.id
        )));
    }
    let answer = AnswerFile::now(given.approved, given.by, given.comment, &request);
    match write_answer(run, &gate, &answer) {
        Ok(()) => {}
        Err(WriteError::AlreadyAnswered(first)) => {
            return Err(Refused::Usage(already_answered(&gate, run, first.as_ref())))
        }
        Err(WriteError::Io(e)) => {
            return Err(Refused::Io(format!(
                "cannot write {}: {e}",
                answer_path(&run.node_dir(&gate)).display()
            )))
        }
    }
    let owner = if record(run, &gate, &answer) {
        None
    } else {
        live_owner(&run.lock_path()).map(|o| o.pid)
    };
    // A child paused while its parent still executes: the parent takes the answer up.
    let top = top_of(run);
    let owner = owner.or_else(|| {
        (top.id != run.id)
            .then(|| live_owner(&top.lock_path()).map(|o| o.pid))
            .flatten()
    });
    Ok(Answered {
        gate,
        answer,
        owner,
        resume: top.id,
    })
}

use super::subflow::{child_of, sibling};

/// The parent run of a child run, from its `run.json`.
fn parent_of(run: &RunDir) -> Option<RunDir> {
    let parent = run.manifest().ok()?.parent?;
    sibling(run, &parent.run_id)
}

/// The run at the top of `run`'s tree (`run` itself when it has no parent).
pub(crate) fn top_of(run: &RunDir) -> RunDir {
    let mut top = run.clone();
    for _ in 0..MAX_DEPTH {
        match parent_of(&top) {
            Some(p) => top = p,
            None => break,
        }
    }
    top
}

/// How deep a tree of child runs is followed.
const MAX_DEPTH: usize = 32;

/// Why the current process counts as part of one of `run`'s ancestors, if it does: a node of a
/// parent run must not answer its child's gates either.
fn inside_ancestors(run: &RunDir) -> Option<String> {
    let mut at = run.clone();
    for _ in 0..MAX_DEPTH {
        at = parent_of(&at)?;
        if let Some(why) = inside_run(&at) {
            return Some(format!("its parent run {} ({why})", at.id));
        }
    }
    None
}

/// The gates waiting in `run` and in its child runs, as paths from it: `GATE`, `NODE/GATE`.
pub(crate) fn waiting_gates(run: &RunDir) -> Vec<String> {
    waiting_gates_in(run).into_iter().map(|g| g.path).collect()
}

/// A gate waiting in a run's tree.
#[derive(Debug, Clone)]
pub(crate) struct TreeGate {
    /// The run the gate belongs to (the run asked about, or one of its child runs).
    pub run: RunDir,
    /// The gate's state there.
    pub state: NodeState,
    /// Its path from the run asked about: `GATE`, `NODE/GATE`, ...
    pub path: String,
}

/// The gates waiting in `run` and in its child runs, depth first in node order.
pub(crate) fn waiting_gates_in(run: &RunDir) -> Vec<TreeGate> {
    fn walk(run: &RunDir, prefix: &str, depth: usize, out: &mut Vec<TreeGate>) {
        let Ok(state) = super::launch::read_state(run) else {
            return;
        };
        for n in &state.nodes {
            if is_waiting(n, run) {
                out.push(TreeGate {
                    run: run.clone(),
                    state: n.clone(),
                    path: format!("{prefix}{}", n.id),
                });
            } else if let (Some(child), NodeStatus::Waiting, true) = (
                n.child_run.as_deref().and_then(|c| sibling(run, c)),
                n.status,
                depth < MAX_DEPTH,
            ) {
                walk(&child, &format!("{prefix}{}/", n.id), depth + 1, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(run, "", 0, &mut out);
    out
}

/// Why the current process counts as part of `run`, if it does: its environment says it is a
/// node of the run (`REINS_RUN_ID`, `REINS_RUN_DIR`), or the process executing the run is
/// among its ancestors. A node can unset variables, and a process that detaches from its
/// parents (double fork) escapes the second test; `docs/security.md` says what that means.
pub(crate) fn inside_run(run: &RunDir) -> Option<String> {
    if std::env::var("REINS_RUN_ID").is_ok_and(|id| id == run.id) {
        return Some(format!("REINS_RUN_ID is {}", run.id));
    }
    if let Some(dir) = std::env::var_os("REINS_RUN_DIR") {
        let dir = PathBuf::from(dir);
        let same = dir == run.path
            || matches!((dir.canonicalize(), run.path.canonicalize()), (Ok(a), Ok(b)) if a == b);
        if same {
            return Some(format!("REINS_RUN_DIR is {}", dir.display()));
        }
    }
    let owner = live_owner(&run.lock_path())?;
    if owner.pid == std::process::id() {
        return None;
    }
    crate::store::lock::ancestors(std::process::id())
        .contains(&owner.pid)
        .then(|| format!("it descends from pid {}, which executes the run", owner.pid))
}

/// Records an answer in the run's log when no process executes the run (under its lock),
/// unless the request has an answer already. False when a live owner holds the lock: it
/// records the answer itself.
fn record(run: &RunDir, gate: &str, answer: &AnswerFile) -> bool {
    let Ok(lock) = RunLock::acquire(&run.lock_path(), &run.id) else {
        return false;
    };
    // A log that cannot be written here: the next resume records the answer file.
    if let Ok((mut log, contents)) = EventLog::open(&run.events_path()) {
        let state = RunState::from_records(&contents.records);
        let open = state
            .node(gate)
            .and_then(|n| n.approval.as_ref())
            .is_some_and(|a| a.answer.is_none() && answer.answers(&a.request));
        if open {
            let _ = log.append(answer.event(gate));
        }
        let _ = log.close();
    }
    drop(lock);
    true
}

/// The gate to answer: the one named, or the only one waiting.
fn pick_gate(
    named: Option<&str>,
    nodes: &[Node],
    state: &RunState,
    run: &RunDir,
    verb: &str,
) -> Result<String, Refused> {
    let waiting: Vec<&NodeState> = state.nodes.iter().filter(|n| is_waiting(n, run)).collect();
    if waiting.is_empty()
        && matches!(
            state.status,
            RunStatus::Success | RunStatus::Failed | RunStatus::Cancelled
        )
    {
        return Err(Refused::Usage(format!(
            "run {} already ended ({}); no gate of it can be answered",
            run.id, state.status
        )));
    }
    let Some(id) = named else {
        return match waiting.as_slice() {
            [one] => Ok(one.id.clone()),
            [] => Err(Refused::Usage(
                state
                    .nodes
                    .iter()
                    .find(|n| n.status == NodeStatus::Waiting)
                    .map(|n| already_answered(&n.id, run, recorded_answer(n).as_ref()))
                    .unwrap_or_else(|| {
                        format!(
                            "no approval gate waits in run {} (it is {})",
                            run.id, state.status
                        )
                    }),
            )),
            many => Err(Refused::Usage(format!(
                "{} gates wait in run {}: {}; name one: `reins {verb} {} GATE`",
                many.len(),
                run.id,
                many.iter()
                    .map(|n| format!("`{}`", n.id))
                    .collect::<Vec<_>>()
                    .join(", "),
                run.id
            ))),
        };
    };
    let Some(node) = workflow_node(nodes, state, id) else {
        let hint = suggestion(id, nodes.iter().map(|n| n.id.value.as_str()))
            .map(|h| format!("; {h}"))
            .unwrap_or_default();
        return Err(Refused::Usage(format!(
            "run {} has no node `{id}`{hint}",
            run.id
        )));
    };
    if let NodeKind::Workflow(_) = node.kind {
        let gates: Vec<String> = waiting_gates(run)
            .into_iter()
            .filter(|g| g.starts_with(&format!("{id}/")))
            .map(|g| format!("`{g}`"))
            .collect();
        return Err(Refused::Usage(format!(
            "`{id}` is a `workflow` node: name a gate of its child run, like `reins {verb} {} {id}/GATE`{}",
            run.id,
            if gates.is_empty() {
                String::new()
            } else {
                format!(" (waiting: {})", gates.join(", "))
            }
        )));
    }
    if !matches!(node.kind, NodeKind::Approval(_)) {
        return Err(Refused::Usage(format!(
            "`{id}` is a {} node, not an approval gate",
            node.kind.name()
        )));
    }
    let ns = state.node(id).cloned().unwrap_or_default();
    if let Some(first) = recorded_answer(&ns) {
        return Err(Refused::Usage(already_answered(id, run, Some(&first))));
    }
    if let Some(a) = &ns.approval {
        if let Found::Answer(first) = find_answer(run, id, &a.request) {
            return Err(Refused::Usage(already_answered(id, run, Some(&first))));
        }
    }
    if !is_waiting(&ns, run) {
        return Err(Refused::Usage(format!(
            "gate `{id}` of run {} is not waiting for an answer (it is {}, the run is {})",
            run.id, ns.status, state.status
        )));
    }
    Ok(id.to_string())
}

/// The workflow node a node of the run runs: itself, or the fan-out of an instance `ID[KEY]`
/// the run has.
fn workflow_node<'n>(nodes: &'n [Node], state: &RunState, id: &str) -> Option<&'n Node> {
    let template = match super::fanout::split_instance_id(id) {
        Some((fan_out, _)) if state.node(id).is_some() => fan_out,
        _ => id,
    };
    nodes.iter().find(|n| n.id.value == template)
}

/// The answer the log records for a gate's current request.
fn recorded_answer(n: &NodeState) -> Option<AnswerFile> {
    let a = n.approval.as_ref()?.answer.as_ref()?;
    Some(AnswerFile {
        approved: a.approved,
        by: a.by.clone(),
        at: String::new(),
        comment: a.comment.clone(),
        request: String::new(),
    })
}

/// A gate that asked and has no answer yet (an answer file for another request does not count).
pub(crate) fn is_waiting(n: &NodeState, run: &RunDir) -> bool {
    let Some(a) = &n.approval else { return false };
    matches!(n.status, NodeStatus::Waiting | NodeStatus::Running)
        && a.answer.is_none()
        && !matches!(find_answer(run, &n.id, &a.request), Found::Answer(_))
}

fn already_answered(gate: &str, run: &RunDir, first: Option<&AnswerFile>) -> String {
    match first {
        Some(a) => format!(
            "gate `{gate}` of run {} was already {} by {}{}; an answer cannot be changed",
            run.id,
            if a.approved { "approved" } else { "rejected" },
            a.by,
            if a.at.is_empty() {
                String::new()
            } else {
                format!(" at {}", a.at)
            }
        ),
        None => format!(
            "gate `{gate}` of run {} was already answered; an answer cannot be changed",
            run.id
        ),
    }
}

/// Runs `approval` nodes.
pub(crate) struct ApprovalRunner;

impl NodeRunner for ApprovalRunner {
    fn run(&self, job: Job) -> BoxFuture<Outcome> {
        Box::pin(async move { run(job) })
    }
}

fn run(job: Job) -> Outcome {
    let node = &job.plan.workflow.nodes[job.index];
    let prior = job.prior.approval.clone();
    if let Some(a) = prior.as_ref().and_then(|a| a.answer.clone()) {
        return outcome(&AnswerFile {
            approved: a.approved,
            by: a.by,
            at: String::new(),
            comment: a.comment,
            request: String::new(),
        });
    }
    let mut state = job.prior.clone();
    let request = match &prior {
        Some(p) => p.request.clone(),
        None => {
            let message = match job
                .plan
                .render(job.index, TemplateField::Body, &job.context)
            {
                Ok(m) => m,
                Err(e) => return Outcome::fatal(format!("cannot render the message: {e}")),
            };
            let request = new_request_id();
            job.recorder.record(Event::ApprovalRequested {
                node: job.node.clone(),
                message,
                request: request.clone(),
            });
            state = job
                .recorder
                .with_state(|s| s.node(&job.node).cloned().unwrap_or_default());
            request
        }
    };
    let run = &job.run.dir;
    let answer = match find_answer(run, &job.node, &request) {
        Found::Answer(a) => a,
        found => {
            if let Found::Foreign(why) = found {
                tracing::warn!("gate `{}`: {why}; it was set aside", job.node);
                if let Err(e) = set_aside(run, &job.node, "refused.") {
                    return Outcome::fatal(format!("cannot set aside a forged answer: {e}"));
                }
            }
            if deadline(node, &state).is_none_or(|d| SystemTime::now() < d) {
                return Outcome::Waiting;
            }
            let rejection = timed_out(node, &request);
            match write_answer(run, &job.node, &rejection) {
                Ok(()) => rejection,
                Err(WriteError::AlreadyAnswered(Some(a))) => a,
                Err(WriteError::AlreadyAnswered(None)) => return Outcome::Waiting,
                Err(WriteError::Io(e)) => {
                    return Outcome::fatal(format!(
                        "cannot record the gate's timeout in {}: {e}",
                        answer_path(&job.dir).display()
                    ))
                }
            }
        }
    };
    job.recorder.record(answer.event(&job.node));
    outcome(&answer)
}

/// How an answer settles the gate.
fn outcome(answer: &AnswerFile) -> Outcome {
    let comment = answer.comment.clone().unwrap_or_default();
    if answer.approved {
        return Outcome::Success {
            output: comment,
            usage: None,
        };
    }
    let error = if answer.by == REINS {
        format!("rejected: {comment}")
    } else if comment.is_empty() {
        format!("rejected by {}", answer.by)
    } else {
        format!("rejected by {}: {comment}", answer.by)
    };
    Outcome::Failure {
        error,
        exit_code: None,
        output: comment,
        usage: None,
        retryable: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_answer_to_a_request_wins_and_others_are_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir {
            id: "r".into(),
            path: dir.path().to_path_buf(),
        };
        std::fs::create_dir_all(run.path.join("nodes")).unwrap();
        // Planted before the gate asked: names no request.
        std::fs::create_dir_all(run.node_dir("gate")).unwrap();
        std::fs::write(
            answer_path(&run.node_dir("gate")),
            r#"{"approved":true,"by":"node","at":""}"#,
        )
        .unwrap();
        assert!(matches!(find_answer(&run, "gate", "q1"), Found::Foreign(_)));
        let yes = AnswerFile::now(true, "ann", Some("ok".into()), "q1");
        write_answer(&run, "gate", &yes).unwrap();
        assert!(run.node_dir("gate").join("answer.refused.1.json").exists());
        assert_eq!(find_answer(&run, "gate", "q1"), Found::Answer(yes.clone()));
        let no = AnswerFile::now(false, "bob", None, "q1");
        match write_answer(&run, "gate", &no) {
            Err(WriteError::AlreadyAnswered(Some(a))) => assert_eq!(a, yes),
            other => panic!("{other:?}"),
        }
        // The next request does not take the old answer.
        assert!(matches!(find_answer(&run, "gate", "q2"), Found::Foreign(_)));
        retire_answer(&run.node_dir("gate")).unwrap();
        assert!(run.node_dir("gate").join("answer.1.json").exists());
        let no = AnswerFile::now(false, "bob", None, "q2");
        write_answer(&run, "gate", &no).unwrap();
        assert_eq!(find_answer(&run, "gate", "q2"), Found::Answer(no));
    }

    #[test]
    fn a_rejection_is_not_retried_and_keeps_the_comment() {
        match outcome(&AnswerFile::now(false, "ann", Some("too big".into()), "q")) {
            Outcome::Failure {
                error,
                output,
                retryable,
                ..
            } => {
                assert_eq!(error, "rejected by ann: too big");
                assert_eq!(output, "too big");
                assert!(!retryable);
            }
            other => panic!("{other:?}"),
        }
    }
}
