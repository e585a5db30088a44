//! Process exit codes, in one place. docs/runs.md has the same table (a test keeps them in step).

/// Everything succeeded.
pub const SUCCESS: u8 = 0;
/// A node failed, a gate was rejected without a path that handles it, or a `doctor` check failed.
pub const NODE_FAILED: u8 = 1;
/// The command line was wrong, a workflow is invalid, or the working tree is busy with another
/// run: nothing ran.
pub const USAGE: u8 = 2;
/// The run stopped at an approval gate and waits for a human.
pub const WAITING_FOR_APPROVAL: u8 = 3;
/// reins itself failed: an I/O error, an unreadable or corrupt `.reins` store, an internal error.
pub const INTERNAL: u8 = 4;
/// The run was cancelled (Ctrl-C or `reins cancel`).
pub const CANCELLED: u8 = 130;

/// Every exit code with its meaning, in the words of docs/runs.md.
pub const TABLE: &[(u8, &str)] = &[
    (
        SUCCESS,
        "the command succeeded; a run succeeded (failures under `continue_on_error` aside)",
    ),
    (
        NODE_FAILED,
        "a node failed (or a gate was rejected); `reins doctor` found a failing check",
    ),
    (
        USAGE,
        "usage error or invalid workflow (nothing ran), or the working tree is busy with another run",
    ),
    (
        WAITING_FOR_APPROVAL,
        "the run stopped at an approval gate and waits for `reins approve`",
    ),
    (
        INTERNAL,
        "reins itself failed: an I/O error, an unreadable or corrupt `.reins` store, an internal error",
    ),
    (CANCELLED, "the run was cancelled (Ctrl-C, `reins cancel`)"),
];
