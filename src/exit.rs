//! Process exit codes, in one place.

/// Everything succeeded.
pub const SUCCESS: i32 = 0;
/// A node failed, or a gate was rejected without a path that handles it.
pub const NODE_FAILED: i32 = 1;
/// The command line was wrong, or a workflow is invalid.
pub const USAGE: i32 = 2;
/// The run stopped at an approval gate and waits for a human.
pub const WAITING_FOR_APPROVAL: i32 = 3;
/// The run was cancelled (Ctrl-C or `reins cancel`).
pub const CANCELLED: i32 = 130;
