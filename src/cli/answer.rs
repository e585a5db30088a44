//! `reins approve` and `reins reject`: answer a waiting approval gate.
//!
//! The answering itself is [`crate::engine::approval::answer`] (shared with any other front
//! end): it refuses from inside the run and on a tampered run, writes the answer (first answer
//! wins) and records it when no process executes the run. `--resume` then continues the run in
//! this command.

use super::args::{AnswerArgs, ResumeArgs};
use super::common::{current_store, resolve_run, say};
use super::error::{self, Error, Outcome};
use crate::engine::approval::{self, os_user, AnswerFile, Given, Refused};
use crate::engine::launch::read_state;
use crate::store::RunDir;

/// Runs `reins approve` (`approved`) or `reins reject`.
pub(super) fn run(args: AnswerArgs, approved: bool) -> error::Result {
    let (store, run) = resolve_run(&args.run)?;
    let given = Given {
        gate: args.node.clone(),
        approved,
        by: os_user(),
        comment: args.message.clone(),
    };
    let answered = match approval::answer(&store, &run, given) {
        Ok(a) => a,
        Err(Refused::Usage(m)) => return Err(Error::usage(m)),
        Err(Refused::Io(m)) => return Err(Error::internal(m)),
    };
    say!(
        "{} `{}` of run {} (by {})",
        if approved { "approved" } else { "rejected" },
        answered.gate,
        run.id,
        answered.answer.by
    );
    if let Some(pid) = answered.owner {
        say!(
            "run {} is executing (pid {pid}); it continues past the gate on its own",
            answered.resume
        );
        return Ok(Outcome::Success);
    }
    if args.resume {
        return super::run::resume(ResumeArgs {
            run: answered.resume.clone(),
            from: None,
            concurrency: None,
            max_agents: None,
            format: args.format,
            json: args.json,
        });
    }
    say!("continue the run with `reins resume {}`", answered.resume);
    Ok(Outcome::Success)
}

/// What came of asking at the gates on the terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Asked {
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
pub(super) fn ask_inline(run: &RunDir) -> Asked {
    use std::io::Write;
    if read_state(run).is_err() {
        return Asked::Nothing;
    }
    let Ok(store) = current_store() else {
        return Asked::Nothing;
    };
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return Asked::Nothing;
    };
    let mut answered = false;
    // The run's own gates, and those of its child runs (`NODE/GATE`).
    for gate in approval::waiting_gates_in(run) {
        let (n, owner) = (&gate.state, &gate.run);
        let Some(asked) = &n.approval else { continue };
        let _ = write!(
            std::io::stdout(),
            "\n{}\napprove {}? [y/N] ",
            asked.message,
            gate.path
        );
        let _ = std::io::stdout().flush();
        let approved = match runtime.block_on(read_reply(owner, &n.id, &asked.request)) {
            Reply::Line(line) => matches!(line.trim().to_lowercase().as_str(), "y" | "yes"),
            Reply::EndOfInput => break,
            Reply::Interrupted => return interrupted(run, &n.id),
            Reply::AnsweredElsewhere(a) => {
                elsewhere(&n.id, &a);
                answered = true;
                continue;
            }
        };
        let _ = write!(std::io::stdout(), "comment (optional): ");
        let _ = std::io::stdout().flush();
        let comment = match runtime.block_on(read_reply(owner, &n.id, &asked.request)) {
            Reply::Line(line) => Some(line.trim().to_string()).filter(|c| !c.is_empty()),
            Reply::EndOfInput => None,
            Reply::Interrupted => return interrupted(run, &n.id),
            Reply::AnsweredElsewhere(a) => {
                elsewhere(&n.id, &a);
                answered = true;
                continue;
            }
        };
        let given = Given {
            gate: Some(gate.path.clone()),
            approved,
            by: os_user(),
            comment,
        };
        match approval::answer(&store, run, given) {
            Ok(_) => answered = true,
            Err(Refused::Usage(m)) => {
                eprintln!("{m}");
                answered = true;
            }
            Err(Refused::Io(m)) => {
                eprintln!("error: {m}");
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

/// Waits for a line on stdin, Ctrl-C, or an answer to `request` of `gate` written from
/// elsewhere, whichever comes first.
async fn read_reply(run: &RunDir, gate: &str, request: &str) -> Reply {
    use std::io::BufRead;
    use std::os::fd::AsFd;
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt()).ok();
    loop {
        if let approval::Found::Answer(a) = approval::find_answer(run, gate, request) {
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
