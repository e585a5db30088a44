//! The command line: parse arguments, run one command, return an exit code.

mod args;
mod init;
mod validate;

use clap::Parser;

use crate::exit;
pub use args::{Cli, Command};

/// Runs reins with the process arguments and returns the exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let code = if err.use_stderr() {
                exit::USAGE
            } else {
                exit::SUCCESS
            };
            let _ = err.print();
            return code;
        }
    };
    match cli.command {
        Command::Validate(opts) => validate::run(opts),
        Command::Init(opts) => init::init(opts),
        Command::New(opts) => init::new(opts),
    }
}
