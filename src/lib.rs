//! reins: a workflow engine for coding-agent harnesses.
//!
//! A workflow is a YAML file of nodes (`bash`, `prompt`, `command`, `approval`, `loop`) that
//! form a DAG. The pipeline reads like the module tree:
//!
//! * [`workflow`] loads a file into a typed [`workflow::Workflow`] whose every value keeps its
//!   source span, and validates it, reporting every problem at once as a [`diagnostic`];
//! * [`graph`] turns it into a DAG: cycles, layers, critical path;
//! * [`engine`] schedules the DAG on a ready queue and runs each node;
//! * [`process`] runs every OS process a node starts, in its own process group, on Linux and
//!   the other Unixes;
//! * [`agent`] runs coding agents (Claude Code) in pseudo-terminal sessions;
//! * [`store`] keeps every run durable as an append-only event log;
//! * [`serve`] shows runs in the browser and answers gates there (`reins serve`);
//! * [`temporal`] runs the same workflows on Temporal: workers on many hosts, gates as updates;
//! * [`cli`] is the thin command-line layer over all of it.

pub mod agent;
pub mod cli;
pub mod diagnostic;
pub mod engine;
pub mod exit;
pub mod graph;
pub mod process;
pub mod serve;
pub mod source;
pub mod store;
pub mod temporal;
pub mod workflow;
