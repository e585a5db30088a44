//! reins: a workflow engine for coding-agent harnesses.
//!
//! A workflow is a YAML file of nodes (`bash`, `prompt`, `command`, `approval`, `loop`) that
//! form a DAG. The module tree is the architecture, one layer per line, each using only the
//! lines above it (no module cycles):
//!
//! * [`source`]: source files and spans; [`graph`]: generic DAGs (cycles, layers, ancestors);
//!   [`exit`]: the exit codes;
//! * [`diagnostic`]: problems found in input, with codes, spans, help and three renderers;
//! * [`workflow`]: the language: loads a file into a typed [`workflow::Workflow`] whose every
//!   value keeps its span, and validates it, reporting every problem at once;
//! * [`process`]: every OS process a node starts, in its own process group, on Linux and the
//!   other Unixes; [`store`]: every run durable as an append-only event log;
//! * [`agent`]: coding-agent harnesses (Claude Code, Codex) in pseudo-terminal sessions;
//! * [`engine`]: the decisions and scheduling: runs the DAG on a ready queue, each node on its
//!   runner;
//! * `temporal`: the same workflows on Temporal: workers on many hosts, gates as updates;
//! * `serve`: shows runs in the browser and answers gates there (`reins serve`);
//! * [`cli`]: the thin command-line layer over all of it.
//!
//! `pub` is the library's API: loading and validating workflows, the store, the engine's entry
//! points and its decision machine, the agent harnesses and the process layer. Everything only
//! the crate uses is `pub(crate)` (the `unreachable_pub` lint keeps it so), and `serve` and
//! `temporal` are reached through [`cli`].

pub mod agent;
pub mod cli;
pub mod diagnostic;
pub mod engine;
pub mod exit;
pub mod graph;
pub mod process;
pub(crate) mod serve;
pub mod source;
pub mod store;
pub(crate) mod temporal;
pub mod workflow;
