//! The engine: schedules a workflow's DAG on a ready queue and runs each node.
pub mod worktree;
