//! `reins approve` and `reins reject`: answer a waiting approval gate.
//!
//! The answer is written first, atomically (`nodes/<gate>/answer.json`, first answer wins),
//! then recorded: by the run's own process when one is executing it (it polls its waiting
//! gates), else here, under the run's lock. `--resume` then continues the run in this command.

use std::time::SystemTime;

use super::args::{AnswerArgs, ResumeArgs};
use super::run::{fail, resolve_run, say};
use crate::diagnostic::suggestion;
use crate::engine::approval::{
    self, answer_path, deadline, os_user, read_answer, write_answer, AnswerError, AnswerFile,
};
use crate::engine::launch::read_state;
use crate::exit;
use crate::source::SourceFile;
use crate::store::lock::live_owner;
use crate::store::{time, EventLog, NodeState, NodeStatus, RunDir, RunLock, RunState, RunStatus};
use crate::workflow::{self, Node, NodeKind};

/// Runs `reins approve` (`approved`) or `reins reject`.
pub fn run(args: AnswerArgs, approved: bool) -> i32 {
    let verb = if approved { "approve" } else { "reject" };
    let (_, run) = match resolve_run(&args.run) {
        Ok(found) => found,
        Err(code) => return code,
    };
    let manifest = match run.manifest() {
        Ok(m) => m,
        Err(e) => return fail(&format!("cannot read run {}: {e}", run.id), exit::USAGE),
    };
    let loaded = workflow::load_source(SourceFile::new(
        manifest.workflow_path.clone(),
        manifest.workflow_text.clone(),
    ));
    let Some(wf) = loaded.workflow else {
        return fail(
            &format!("the workflow frozen in run {} cannot be read", run.id),
            exit::USAGE,
        );
    };
    let state = match read_state(&run) {
        Ok(s) => s,
        Err(e) => return fail(&format!("cannot read run {}: {e}", run.id), exit::USAGE),
    };
    let gate = match pick_gate(&args, &wf.nodes, &state, &run, verb) {
        Ok(g) => g,
        Err(message) => return fail(&message, exit::USAGE),
    };
    let node = wf
        .nodes
        .iter()
        .find(|n| n.id.value == gate)
        .expect("picked");
    let dir = run.node_dir(&gate);
    let node_state = state.node(&gate).cloned().unwrap_or_default();
    if let Some(at) = deadline(node, &node_state).filter(|d| SystemTime::now() >= *d) {
        // Expired: the gate is rejected by reins, whoever asks.
        let _ = write_answer(&dir, &approval::timed_out(node));
        if let Some(a) = read_answer(&dir) {
            record(&run, &gate, &a);
        }
        return fail(
            &format!(
                "gate `{gate}` of run {} timed out at {} and was rejected; it cannot be answered any more (`reins resume {} --from {gate}` asks again)",
                run.id,
                time::format(at),
                run.id
            ),
            exit::USAGE,
        );
    }
    let answer = AnswerFile::now(approved, os_user(), args.message.clone());
    match write_answer(&dir, &answer) {
        Ok(()) => {}
        Err(AnswerError::AlreadyAnswered(first)) => {
            return fail(&already_answered(&gate, &run, first.as_ref()), exit::USAGE)
        }
        Err(AnswerError::Io(e)) => {
            return fail(
                &format!("cannot write {}: {e}", answer_path(&dir).display()),
                exit::NODE_FAILED,
            )
        }
    }
    let recorded_here = record(&run, &gate, &answer);
    say!(
        "{} `{gate}` of run {} (by {})",
        if approved { "approved" } else { "rejected" },
        run.id,
        answer.by
    );
    if !recorded_here {
        if let Some(owner) = live_owner(&run.lock_path()) {
            say!(
                "run {} is executing (pid {}); it continues past the gate on its own",
                run.id,
                owner.pid
            );
            return exit::SUCCESS;
        }
    }
    if args.resume {
        return super::run::resume(ResumeArgs {
            run: run.id.clone(),
            from: None,
            concurrency: None,
            format: args.format,
            json: args.json,
        });
    }
    say!("continue the run with `reins resume {}`", run.id);
    exit::SUCCESS
}

/// Records an answer in the run's log when no process executes the run (under its lock).
/// False when a live owner holds the lock: it records the answer itself.
fn record(run: &RunDir, gate: &str, answer: &AnswerFile) -> bool {
    let Ok(lock) = RunLock::acquire(&run.lock_path(), &run.id) else {
        return false;
    };
    // A log that cannot be written here: the next resume records the answer file.
    if let Ok((mut log, contents)) = EventLog::open(&run.events_path()) {
        let state = RunState::from_records(&contents.records);
        let known = state
            .node(gate)
            .and_then(|n| n.approval.as_ref())
            .is_some_and(|a| a.answer.is_some());
        if !known {
            let _ = log.append(answer.event(gate));
        }
        let _ = log.close();
    }
    drop(lock);
    true
}

/// The gate to answer: the one named, or the only one waiting.
fn pick_gate(
    args: &AnswerArgs,
    nodes: &[Node],
    state: &RunState,
    run: &RunDir,
    verb: &str,
) -> Result<String, String> {
    let waiting: Vec<&NodeState> = state.nodes.iter().filter(|n| is_waiting(n, run)).collect();
    if waiting.is_empty()
        && matches!(
            state.status,
            RunStatus::Success | RunStatus::Failed | RunStatus::Cancelled
        )
    {
        return Err(format!(
            "run {} already ended ({}); no gate of it can be answered",
            run.id, state.status
        ));
    }
    let Some(id) = &args.node else {
        return match waiting.as_slice() {
            [one] => Ok(one.id.clone()),
            [] => Err(state
                .nodes
                .iter()
                .find(|n| n.status == NodeStatus::Waiting)
                .map(|n| already_answered(&n.id, run, read_answer(&run.node_dir(&n.id)).as_ref()))
                .unwrap_or_else(|| {
                    format!(
                        "no approval gate waits in run {} (it is {})",
                        run.id, state.status
                    )
                })),
            many => Err(format!(
                "{} gates wait in run {}: {}; name one: `reins {verb} {} GATE`",
                many.len(),
                run.id,
                many.iter()
                    .map(|n| format!("`{}`", n.id))
                    .collect::<Vec<_>>()
                    .join(", "),
                run.id
            )),
        };
    };
    let Some(node) = nodes.iter().find(|n| &n.id.value == id) else {
        let hint = suggestion(id, nodes.iter().map(|n| n.id.value.as_str()))
            .map(|h| format!("; {h}"))
            .unwrap_or_default();
        return Err(format!("run {} has no node `{id}`{hint}", run.id));
    };
    if !matches!(node.kind, NodeKind::Approval(_)) {
        return Err(format!(
            "`{id}` is a {} node, not an approval gate",
            node.kind.name()
        ));
    }
    let dir = run.node_dir(id);
    let ns = state.node(id).cloned().unwrap_or_default();
    if let Some(first) = read_answer(&dir) {
        return Err(already_answered(id, run, Some(&first)));
    }
    if let Some(a) = ns.approval.as_ref().and_then(|a| a.answer.as_ref()) {
        let first = AnswerFile {
            approved: a.approved,
            by: a.by.clone(),
            at: String::new(),
            comment: a.comment.clone(),
        };
        return Err(already_answered(id, run, Some(&first)));
    }
    if !is_waiting(&ns, run) {
        return Err(format!(
            "gate `{id}` of run {} is not waiting for an answer (it is {}, the run is {})",
            run.id, ns.status, state.status
        ));
    }
    Ok(id.clone())
}

/// A gate that asked and has no answer yet.
fn is_waiting(n: &NodeState, run: &RunDir) -> bool {
    matches!(n.status, NodeStatus::Waiting | NodeStatus::Running)
        && n.approval.as_ref().is_some_and(|a| a.answer.is_none())
        && !answer_path(&run.node_dir(&n.id)).exists()
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

/// What came of asking at the gates on the terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asked {
    /// At least one gate was answered (here, or from another shell meanwhile): resume.
    Answered,
    /// Ctrl-C at the prompt: the run keeps waiting.
    Interrupted,
    /// Nothing was answered (end of input).
    Nothing,
}

/// One line read at the prompt, or why none was.
enum Reply {
    Line(String),
    EndOfInput,
    Interrupted,
    AnsweredElsewhere(AnswerFile),
}

/// Asks at each waiting gate of a paused run on the terminal (`approve GATE? [y/N]`, then an
/// optional comment) and records the answers. Ctrl-C ends the prompt (the run keeps waiting);
/// an answer given meanwhile from another shell (`reins approve`) ends it with who answered.
pub fn ask_inline(run: &RunDir) -> Asked {
    use std::io::Write;
    let Ok(state) = read_state(run) else {
        return Asked::Nothing;
    };
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return Asked::Nothing;
    };
    let mut answered = false;
    for n in state.nodes.iter().filter(|n| is_waiting(n, run)) {
        let message = n
            .approval
            .as_ref()
            .map(|a| a.message.as_str())
            .unwrap_or("");
        let dir = run.node_dir(&n.id);
        print!("\n{message}\napprove {}? [y/N] ", n.id);
        let _ = std::io::stdout().flush();
        let approved = match runtime.block_on(read_reply(&dir)) {
            Reply::Line(line) => matches!(line.trim().to_lowercase().as_str(), "y" | "yes"),
            Reply::EndOfInput => break,
            Reply::Interrupted => return interrupted(run, &n.id),
            Reply::AnsweredElsewhere(a) => {
                elsewhere(&n.id, &a);
                answered = true;
                continue;
            }
        };
        print!("comment (optional): ");
        let _ = std::io::stdout().flush();
        let comment = match runtime.block_on(read_reply(&dir)) {
            Reply::Line(line) => Some(line.trim().to_string()).filter(|c| !c.is_empty()),
            Reply::EndOfInput => None,
            Reply::Interrupted => return interrupted(run, &n.id),
            Reply::AnsweredElsewhere(a) => {
                elsewhere(&n.id, &a);
                answered = true;
                continue;
            }
        };
        let answer = AnswerFile::now(approved, os_user(), comment);
        match write_answer(&dir, &answer) {
            Ok(()) => {
                record(run, &n.id, &answer);
                answered = true;
            }
            Err(AnswerError::AlreadyAnswered(first)) => {
                eprintln!("{}", already_answered(&n.id, run, first.as_ref()));
                answered = true;
            }
            Err(AnswerError::Io(e)) => {
                eprintln!("error: cannot write {}: {e}", answer_path(&dir).display());
                return Asked::Nothing;
            }
        }
    }
    if answered {
        Asked::Answered
    } else {
        Asked::Nothing
    }
}

fn interrupted(run: &RunDir, gate: &str) -> Asked {
    say!(
        "\nnot answered: run {id} still waits at `{gate}`; answer it later with `reins approve {id} {gate} --resume` or `reins reject {id} {gate} -m WHY --resume`",
        id = run.id
    );
    Asked::Interrupted
}

fn elsewhere(gate: &str, a: &AnswerFile) {
    say!(
        "\n`{gate}` was {} by {} from another shell{}",
        if a.approved { "approved" } else { "rejected" },
        a.by,
        a.comment
            .as_ref()
            .map(|c| format!(": {c}"))
            .unwrap_or_default()
    );
}

/// Waits for a line on stdin, Ctrl-C, or an answer file in `dir`, whichever comes first.
async fn read_reply(dir: &std::path::Path) -> Reply {
    use std::io::BufRead;
    use std::os::fd::AsFd;
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt()).ok();
    loop {
        if let Some(a) = read_answer(dir) {
            return Reply::AnsweredElsewhere(a);
        }
        let stdin = std::io::stdin();
        let ready = {
            let mut fds = [nix::poll::PollFd::new(
                stdin.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO).unwrap_or(0) > 0
        };
        if ready {
            // A terminal in canonical mode is readable once a whole line (or end of input) is.
            let mut line = String::new();
            return match stdin.lock().read_line(&mut line) {
                Ok(0) | Err(_) => Reply::EndOfInput,
                Ok(_) => Reply::Line(line),
            };
        }
        let tick = tokio::time::sleep(std::time::Duration::from_millis(100));
        match &mut interrupt {
            Some(sig) => tokio::select! {
                _ = sig.recv() => return Reply::Interrupted,
                _ = tick => {}
            },
            None => tick.await,
        }
    }
}
