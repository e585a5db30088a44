//! The command line: parse arguments, run one command, return an exit code.
//!
//! Every command returns [`Result<Outcome, Error>`](error::Result); [`main`] prints an error
//! once and turns either into the exit code ([`crate::exit`] lists them).

mod answer;
mod args;
mod clean;
mod common;
mod doctor;
mod error;
mod graph;
mod init;
mod list;
mod load;
mod logs;
mod progress;
mod run;
mod runs;
mod schema;
mod serve;
mod validate;

use clap::Parser;

use crate::exit;
pub use args::{Cli, Command};
pub use error::{Error, Outcome};

/// Runs reins with the process arguments and returns the exit code.
pub fn main() -> std::process::ExitCode {
    init_tracing();
    let code = match Cli::try_parse() {
        Ok(cli) => match execute(cli.command) {
            Ok(outcome) => outcome.exit_code(),
            Err(err) => {
                err.print();
                err.exit_code()
            }
        },
        Err(err) => {
            let _ = err.print();
            if err.use_stderr() {
                exit::USAGE
            } else {
                exit::SUCCESS
            }
        }
    };
    std::process::ExitCode::from(code)
}

/// Runs one command.
fn execute(command: Command) -> error::Result {
    match command {
        Command::Validate(opts) => validate::run(opts),
        Command::Graph(opts) => graph::run(opts),
        Command::Run(opts) => run::run(opts),
        Command::Resume(opts) => run::resume(opts),
        Command::Approve(opts) => answer::run(opts, true),
        Command::Reject(opts) => answer::run(opts, false),
        Command::Clean(opts) => clean::run(opts),
        Command::Cancel(opts) => runs::cancel(opts),
        Command::Runs(opts) => runs::list(opts),
        Command::Status(opts) => runs::status(opts),
        Command::Logs(opts) => logs::run(opts),
        Command::List(opts) => list::run(opts),
        Command::Schema => schema::run(),
        Command::Serve(opts) => serve::run(opts),
        Command::Init(opts) => init::init(opts),
        Command::New(opts) => init::new(opts),
        Command::Show(opts) => init::show(opts),
        Command::Doctor(opts) => doctor::run(opts),
    }
}

/// Whether to colour a stream: `NO_COLOR` turns colours off, `CLICOLOR_FORCE` on even when the
/// stream is not a terminal, `CLICOLOR=0` off; otherwise colours go to terminals only.
pub(crate) fn use_color(is_terminal: bool) -> bool {
    if anstyle_query::no_color() {
        false
    } else if anstyle_query::clicolor_force() {
        true
    } else {
        anstyle_query::clicolor() != Some(false) && is_terminal
    }
}

/// `REINS_LOG=debug` (an env filter, like `reins=debug,warn`) turns on tracing to stderr.
fn init_tracing() {
    let Some(filter) = std::env::var_os("REINS_LOG").filter(|v| !v.is_empty()) else {
        return;
    };
    match tracing_subscriber::EnvFilter::try_new(filter.to_string_lossy()) {
        Ok(filter) => {
            use std::io::IsTerminal;
            let ansi = use_color(std::io::stderr().is_terminal());
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(std::io::stderr)
                .with_ansi(ansi)
                .try_init();
        }
        Err(e) => eprintln!(
            "warning: ignoring REINS_LOG: {e} (use a level like `debug`, or `reins=debug,warn`)"
        ),
    }
}
