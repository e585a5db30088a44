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
    /// Show a workflow's layers, width and critical path.
    Graph(GraphArgs),
    /// Run a workflow.
    Run(RunArgs),
    /// Continue a paused, failed, cancelled or interrupted run.
    Resume(ResumeArgs),
    /// Pass a waiting approval gate.
    Approve(AnswerArgs),
    /// Reject a waiting approval gate: its dependents are skipped.
    Reject(AnswerArgs),
    /// Stop a run that is executing (or mark an interrupted one cancelled).
    Cancel(CancelArgs),
    /// Remove the worktrees of finished isolated runs (their branches stay); with `--runs`, old
    /// run folders.
    Clean(CleanArgs),
    /// List the runs of this working tree.
    Runs(RunsArgs),
    /// Show the state of each node of a run.
    Status(StatusArgs),
    /// Show what a run's nodes printed.
    Logs(LogsArgs),
    /// Scaffold `.workflows/` with a starter workflow and a commands folder.
    Init(InitArgs),
    /// Scaffold one more workflow in `.workflows/` (or copy one with `--from`).
    New(NewArgs),
    /// Print a workflow's file, bundled ones included.
    Show(ShowArgs),
    /// Check what runs need: agent CLIs, credentials, git, `gh`, `.reins/`, the user folders.
    Doctor(DoctorArgs),
    /// List the workflows found: project `.workflows/`, user-global, bundled.
    List(ListArgs),
    /// Print the JSON Schema of the workflow format, for editors.
    Schema,
    /// Show the runs in the browser, live, and answer gates there.
    Serve(ServeArgs),
    /// Execute runs submitted to Temporal, in this checkout (see docs/temporal.md).
    Worker(WorkerArgs),
}

/// Where a run on Temporal is: `--temporal HOST:PORT`, else `REINS_TEMPORAL`, else
/// `temporal.address` in the user config file; nothing: the run is local.
#[derive(Debug, Clone, Default, Args)]
pub struct TemporalArgs {
    /// The Temporal server (`HOST:PORT`): the run is (or goes) there, executed by `reins worker`s.
    #[arg(long, value_name = "HOST:PORT")]
    pub temporal: Option<String>,
    /// With Temporal: the namespace (default `default`).
    #[arg(long, value_name = "NS")]
    pub namespace: Option<String>,
    /// With Temporal: the shared task queue of the workers (default `reins`).
    #[arg(long, value_name = "QUEUE")]
    pub task_queue: Option<String>,
}

/// `reins worker`.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// The Temporal server and queue.
    #[command(flatten)]
    pub temporal: TemporalArgs,
    /// Runs this worker executes at once (default 1: runs in the checkout take turns; give
    /// more for `--worktree` runs).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub runs: Option<u32>,
    /// Agent sessions running at once on this machine.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_agents: Option<u32>,
}

/// `reins serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The address to listen on. Anything but a loopback address requires a token.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: std::net::IpAddr,
    /// The port (0: any free port).
    #[arg(long, default_value_t = 7878)]
    pub port: u16,
    /// The token every request must carry (default: none on loopback, else a new random one).
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
    /// Show runs only: no answering, cancelling or resuming.
    #[arg(long)]
    pub read_only: bool,
}

/// `reins run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The workflow: a name in `.workflows/`, or a path to a file.
    pub workflow: String,
    /// The value of the workflow's only required input (`reins run fix-issue "add is broken"`).
    #[arg(value_name = "VALUE")]
    pub value: Option<String>,
    /// An input of the workflow, as `name=value` (repeat for more).
    #[arg(short, long = "input", value_name = "NAME=VALUE", value_parser = parse_input)]
    pub inputs: Vec<(String, String)>,
    /// Nodes running at once (default: the workflow's `concurrency`, else every ready node, up
    /// to 64).
    #[arg(short = 'j', long, value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrency: Option<u32>,
    /// Agent sessions running at once on this machine, across all your runs (default:
    /// `REINS_MAX_AGENTS`, else `max_agents` in the user config file, else what fits memory).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_agents: Option<u32>,
    /// `json`: print the event stream as JSON lines instead of progress.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<ListFormat>,
    /// The same as `--format json`.
    #[arg(long)]
    pub json: bool,
    /// Print each rendered command in schedule order; run nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Never ask at a gate on the terminal: stop there and exit 3.
    #[arg(long)]
    pub no_input: bool,
    /// Work in a fresh git worktree on the branch `reins/<workflow>-<run-id>` (like
    /// `isolation: worktree`).
    #[arg(long)]
    pub worktree: bool,
    /// With `--worktree` (or `isolation: worktree`): cut the run's branch from BRANCH (a
    /// branch, tag or commit) instead of `HEAD`.
    #[arg(long, value_name = "BRANCH")]
    pub base: Option<String>,
    /// Run on this agent instead of the default one (`claude`, `codex` or a profile of the
    /// workflow); profiles that `use:` the default follow it.
    #[arg(long, value_name = "AGENT")]
    pub agent: Option<String>,
    /// Submit the run to Temporal instead of running it here.
    #[command(flatten)]
    pub temporal: TemporalArgs,
    /// With Temporal: wait for the run to end (and say where it waits) instead of returning.
    #[arg(long)]
    pub follow: bool,
}

impl RunArgs {
    /// True when the event stream is asked for (`--format json` or `--json`).
    pub fn wants_json(&self) -> bool {
        self.json || self.format == Some(ListFormat::Json)
    }
}

/// `reins resume`.
#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// The run: an id, a unique prefix of one, or `last`.
    pub run: String,
    /// Run this node and everything downstream of it again, even if they succeeded.
    #[arg(long, value_name = "NODE")]
    pub from: Option<String>,
    /// Nodes running at once.
    #[arg(short = 'j', long, value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrency: Option<u32>,
    /// Agent sessions running at once on this machine, across all your runs.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_agents: Option<u32>,
    /// `json`: print the event stream as JSON lines instead of progress.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<ListFormat>,
    /// The same as `--format json`.
    #[arg(long)]
    pub json: bool,
}

impl ResumeArgs {
    /// True when the event stream is asked for (`--format json` or `--json`).
    pub fn wants_json(&self) -> bool {
        self.json || self.format == Some(ListFormat::Json)
    }
}

/// `reins approve` and `reins reject`.
#[derive(Debug, Args)]
pub struct AnswerArgs {
    /// The run: an id, a unique prefix of one, or `last`.
    pub run: String,
    /// The gate (may be left out when exactly one gate waits).
    pub node: Option<String>,
    /// A comment: the gate's output (`{{nodes.GATE.output}}`).
    #[arg(short, long = "message", value_name = "TEXT")]
    pub message: Option<String>,
    /// Continue the run in this command when no reins process executes it.
    #[arg(long)]
    pub resume: bool,
    /// A run on Temporal.
    #[command(flatten)]
    pub temporal: TemporalArgs,
    /// With `--resume`: `json` prints the event stream as JSON lines instead of progress.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<ListFormat>,
    /// The same as `--format json`.
    #[arg(long)]
    pub json: bool,
}

/// `reins clean`.
#[derive(Debug, Args)]
pub struct CleanArgs {
    /// Also remove worktrees with uncommitted changes (the changes are lost).
    #[arg(long)]
    pub force: bool,
    /// Say what would be removed; remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Remove the folders of finished runs (`success`, `failed`, `cancelled`) instead of
    /// worktrees; a running, waiting or interrupted run is never removed.
    #[arg(long)]
    pub runs: bool,
    /// With `--runs`: only runs that finished longer ago than this (`30d`, `12h`).
    #[arg(long, value_name = "AGE", requires = "runs", value_parser = crate::workflow::duration::parse)]
    pub older_than: Option<std::time::Duration>,
    /// With `--runs`: keep the N most recent finished runs.
    #[arg(long, value_name = "N", requires = "runs")]
    pub keep: Option<usize>,
}

/// `reins cancel`.
#[derive(Debug, Args)]
pub struct CancelArgs {
    /// The run: an id, a unique prefix of one, or `last`.
    pub run: String,
    /// A run on Temporal.
    #[command(flatten)]
    pub temporal: TemporalArgs,
}

/// `reins runs`.
#[derive(Debug, Args)]
pub struct RunsArgs {
    /// `text`: a table, one run a line; `json`: an array with one object per run.
    #[arg(long, value_enum, default_value_t = ListFormat::Text)]
    pub format: ListFormat,
}

/// `reins status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The run: an id, a unique prefix of one, or `last`.
    #[arg(default_value = "last")]
    pub run: String,
    /// `text`: one line per node; `json`: the run's state as one object.
    #[arg(long, value_enum, default_value_t = ListFormat::Text)]
    pub format: ListFormat,
    /// A run on Temporal.
    #[command(flatten)]
    pub temporal: TemporalArgs,
}

/// `reins logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The run: an id, a unique prefix of one, or `last`.
    pub run: String,
    /// Only this node.
    pub node: Option<String>,
    /// Keep printing as the run goes on, until it ends.
    #[arg(short, long)]
    pub follow: bool,
    /// Show an agent's transcript as the JSON lines the agent printed, not as readable text.
    #[arg(long)]
    pub raw: bool,
    /// A run on Temporal.
    #[command(flatten)]
    pub temporal: TemporalArgs,
}

fn parse_input(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_string(), value.to_string()))
        }
        _ => Err(format!("`{text}` is not NAME=VALUE")),
    }
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
    /// Copy this workflow (a name: project, user-global or bundled; or a path) instead of the
    /// starter text.
    #[arg(long, value_name = "WORKFLOW")]
    pub from: Option<String>,
}

/// `reins show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Workflow name (`.workflows/NAME.yaml`, user-global, bundled) or path.
    pub workflow: String,
}

/// `reins doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = ListFormat::Text)]
    pub format: ListFormat,
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
    /// `text`: one line per workflow: name, source, path, description; `json`: an array.
    #[arg(long, value_enum, default_value_t = ListFormat::Text)]
    pub format: ListFormat,
}

/// Output format of `list`, `runs`, `status`, `doctor` (and `run`, `resume`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ListFormat {
    /// Lines for people.
    Text,
    /// JSON for programs.
    Json,
}

/// `reins graph`.
#[derive(Debug, Args)]
pub struct GraphArgs {
    /// Workflow name (`.workflows/NAME.yaml`, user-global, bundled) or path.
    pub workflow: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = GraphFormat::Text)]
    pub format: GraphFormat,
}

/// Output formats of `reins graph`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GraphFormat {
    /// Layers and the critical path, for people.
    Text,
    /// Layers as arrays of node ids, the critical path, every node with its dependencies.
    Json,
    /// A Mermaid flowchart (renders in GitHub Markdown).
    Mermaid,
    /// Graphviz dot.
    Dot,
}
