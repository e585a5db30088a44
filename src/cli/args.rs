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
    /// List the workflows found: project `.workflows/`, user-global, bundled.
    List(ListArgs),
    /// Print the JSON Schema of the workflow format, for editors.
    Schema,
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

/// `reins list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = ListFormat::Text)]
    pub format: ListFormat,
}

/// Output format of `reins list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ListFormat {
    /// One line per workflow: name, source, path, description.
    Text,
    /// A JSON array of objects.
    Json,
}
