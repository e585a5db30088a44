//! The portable Unix path (macOS, the BSDs; Linux with the `portable-process` feature): only
//! POSIX calls, through std and tokio.
//!
//! There is no parent-death signal and no subreaper: when reins is killed, the watchdog stops
//! every registered group; a descendant that left its node's group (`setsid`) is not found,
//! but the output captured up to the node's end is still recorded.

use std::io;
use std::sync::atomic::AtomicI32;

use nix::libc;
use nix::sys::signal::kill;
use nix::unistd::Pid;

use super::command::Spawn;
use super::unix::{self, Io};

/// A started child.
pub(super) type Child = unix::Child;

/// Starts a child in a process group of its own with its output piped; see [`unix::spawn`].
pub(super) fn spawn(cmd: &Spawn, tag: u64, slot: Option<&AtomicI32>) -> io::Result<Child> {
    unix::spawn(cmd, tag, slot, Io::Pipes)
}

/// In a freshly forked child, before `exec` (async-signal-safe): exits if reins is already
/// gone (its watchdog may have looked at the table before this child registered).
pub(super) fn after_fork(parent: libc::pid_t) -> bool {
    // SAFETY: plain system calls on integers.
    unsafe {
        if libc::getppid() != parent {
            libc::_exit(137);
        }
    }
    true
}

/// Nothing to do: there is no subreaper outside Linux.
pub(super) fn become_subreaper() {}

/// Descendants that left their group cannot be found here.
pub(super) fn may_have_escaped() -> bool {
    false
}

/// Descendants that left their group cannot be found here.
pub(super) fn escaped(_ending: u64) -> Vec<i32> {
    Vec::new()
}

/// True while `pid` exists (callers reap their own zombies first).
pub(super) fn running(pid: Pid) -> bool {
    kill(pid, None).is_ok()
}

/// Closes every descriptor from `first` on (async-signal-safe).
pub(super) fn close_from(first: u32) {
    for fd in first as i32..4096 {
        // SAFETY: closing descriptors in a process that keeps only the ones below `first`.
        unsafe { libc::close(fd) };
    }
}
