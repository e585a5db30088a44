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
#[cfg(feature = "temporal")]
mod temporal;
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
        Command::Run(opts) => on_temporal(opts.temporal.clone(), opts, run::run, temporal_run),
        Command::Resume(opts) => run::resume(opts),
        Command::Approve(opts) => on_temporal(
            opts.temporal.clone(),
            opts,
            |o| answer::run(o, true),
            |o, e| temporal_answer(o, true, e),
        ),
        Command::Reject(opts) => on_temporal(
            opts.temporal.clone(),
            opts,
            |o| answer::run(o, false),
            |o, e| temporal_answer(o, false, e),
        ),
        Command::Clean(opts) => clean::run(opts),
        Command::Cancel(opts) => {
            on_temporal(opts.temporal.clone(), opts, runs::cancel, temporal_cancel)
        }
        Command::Runs(opts) => runs::list(opts),
        Command::Status(opts) => {
            on_temporal(opts.temporal.clone(), opts, runs::status, temporal_status)
        }
        Command::Logs(opts) => on_temporal(opts.temporal.clone(), opts, logs::run, temporal_logs),
        Command::Worker(opts) => temporal_worker(opts),
        Command::List(opts) => list::run(opts),
        Command::Schema => schema::run(),
        Command::Serve(opts) => serve::run(opts),
        Command::Init(opts) => init::init(opts),
        Command::New(opts) => init::new(opts),
        Command::Show(opts) => init::show(opts),
        Command::Doctor(opts) => doctor::run(opts),
    }
}

/// Runs `local` unless a Temporal server is named (`--temporal`, `REINS_TEMPORAL`, the user
/// config), then `remote`.
fn on_temporal<A>(
    given: args::TemporalArgs,
    opts: A,
    local: impl FnOnce(A) -> error::Result,
    remote: impl FnOnce(A, crate::temporal::Endpoint) -> error::Result,
) -> error::Result {
    let config = crate::engine::agent_slots::config_path();
    let given = crate::temporal::config::Given {
        address: given.temporal.clone(),
        namespace: given.namespace.clone(),
        task_queue: given.task_queue.clone(),
    };
    match crate::temporal::Endpoint::resolve(&given, |k| std::env::var(k).ok(), config.as_deref()) {
        Ok(None) => local(opts),
        Ok(Some(endpoint)) => remote(opts, endpoint),
        Err(e) => Err(Error::usage(e.0)),
    }
}

#[cfg(feature = "temporal")]
use temporal::{
    answer as temporal_answer, logs as temporal_logs, run as temporal_run,
    worker as temporal_worker,
};

#[cfg(feature = "temporal")]
fn temporal_cancel(opts: args::CancelArgs, endpoint: crate::temporal::Endpoint) -> error::Result {
    temporal::cancel(&opts.run, endpoint)
}

#[cfg(feature = "temporal")]
fn temporal_status(opts: args::StatusArgs, endpoint: crate::temporal::Endpoint) -> error::Result {
    temporal::status(&opts.run, opts.format == args::ListFormat::Json, endpoint)
}

#[cfg(not(feature = "temporal"))]
fn without_temporal<A>(_: A, _: crate::temporal::Endpoint) -> error::Result {
    Err(no_temporal())
}
#[cfg(not(feature = "temporal"))]
fn no_temporal() -> Error {
    Error::usage(
        "this reins was built without the `temporal` feature; rebuild with `--features temporal`",
    )
}
#[cfg(not(feature = "temporal"))]
use without_temporal as temporal_run;
#[cfg(not(feature = "temporal"))]
use without_temporal as temporal_answer_any;
#[cfg(not(feature = "temporal"))]
fn temporal_answer(o: args::AnswerArgs, _: bool, e: crate::temporal::Endpoint) -> error::Result {
    temporal_answer_any(o, e)
}
#[cfg(not(feature = "temporal"))]
use without_temporal as temporal_cancel;
#[cfg(not(feature = "temporal"))]
use without_temporal as temporal_status;
#[cfg(not(feature = "temporal"))]
use without_temporal as temporal_logs;
#[cfg(not(feature = "temporal"))]
fn temporal_worker(_: args::WorkerArgs) -> error::Result {
    Err(no_temporal())
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
