//! Raw command-line arguments, as clap parses them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::diagnostic::Format;

/// reins: run YAML workflows of coding agents, shell steps and human gates.
#[derive(Debug, Parser)]
#[command(name = "reins", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check workflow files and report every problem (exit 2 if any error).
    Validate(ValidateArgs),
    /// Scaffold `.workflows/` with a starter workflow and a commands folder.
    Init(InitArgs),
    /// Scaffold one more workflow in `.workflows/`.
    New(NewArgs),
}

/// `reins init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The project folder (default: the enclosing git repository, else the current folder).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// `reins new`.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// Name of the workflow: `.workflows/NAME.yaml`.
    pub name: String,
}

/// `reins validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Files or folders to check (default: `.workflows/`).
    pub paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
}
