//! `reins approve` and `reins reject`: answer a waiting approval gate.
//!
//! The answering itself is [`crate::engine::approval::answer`] (shared with any other front
//! end): it refuses from inside the run and on a tampered run, writes the answer (first answer
//! wins) and records it when no process executes the run. `--resume` then continues the run in
//! this command.

use super::args::{AnswerArgs, ResumeArgs};
use super::run::{current_store, fail, resolve_run, say};
use crate::engine::approval::{self, os_user, Given, Refused};
use crate::engine::launch::read_state;
use crate::exit;
use crate::store::RunDir;

/// Runs `reins approve` (`approved`) or `reins reject`.
pub fn run(args: AnswerArgs, approved: bool) -> i32 {
    let (store, run) = match resolve_run(&args.run) {
        Ok(found) => found,
        Err(code) => return code,
    };
    let given = Given {
        gate: args.node.clone(),
        approved,
        by: os_user(),
        comment: args.message.clone(),
    };
    let answered = match approval::answer(&store, &run, given) {
        Ok(a) => a,
        Err(Refused::Usage(m)) => return fail(&m, exit::USAGE),
        Err(Refused::Io(m)) => return fail(&m, exit::NODE_FAILED),
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
            run.id
        );
        return exit::SUCCESS;
    }
    if args.resume {
        return super::run::resume(ResumeArgs {
            run: run.id.clone(),
            from: None,
            concurrency: None,
            max_agents: None,
            json: args.json,
        });
    }
    say!("continue the run with `reins resume {}`", run.id);
    exit::SUCCESS
}

/// Asks at each waiting gate of a paused run on the terminal (`approve GATE? [y/N]`, then an
/// optional comment) and records the answers. False when nothing was answered (end of input).
pub fn ask_inline(run: &RunDir) -> bool {
    use std::io::{BufRead, Write};
    let Ok(state) = read_state(run) else {
        return false;
    };
    let Ok(store) = current_store() else {
        return false;
    };
    let mut answered = false;
    let stdin = std::io::stdin();
    for n in state.nodes.iter().filter(|n| approval::is_waiting(n, run)) {
        let message = n
            .approval
            .as_ref()
            .map(|a| a.message.as_str())
            .unwrap_or("");
        let mut line = String::new();
        print!("\n{message}\napprove {}? [y/N] ", n.id);
        let _ = std::io::stdout().flush();
        if stdin.lock().read_line(&mut line).unwrap_or(0) == 0 {
            return answered;
        }
        let approved = matches!(line.trim().to_lowercase().as_str(), "y" | "yes");
        print!("comment (optional): ");
        let _ = std::io::stdout().flush();
        let mut comment = String::new();
        let _ = stdin.lock().read_line(&mut comment);
        let comment = Some(comment.trim().to_string()).filter(|c| !c.is_empty());
        let given = Given {
            gate: Some(n.id.clone()),
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
                return false;
            }
        }
    }
    answered
}
