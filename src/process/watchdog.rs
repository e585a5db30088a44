//! The watchdog: kills every process group of a run when reins dies, even by `kill -9`.
//!
//! reins forks one small watchdog process per run (twice, so that it is not reins' child and
//! reins can tell cheaply whether it has children left). The two share a table of process
//! groups in a shared memory page. A group is registered *by the child itself*, between its
//! `fork` and its `exec` (see [`Watched::slot`]): before the program runs, so before it can
//! start anything of its own. The watchdog sleeps in `read` on a pipe whose only writer is
//! reins. When reins ends normally it writes a byte first and the watchdog just exits; at
//! end-of-file without that byte (reins was killed: the kernel closed its end) the watchdog
//! sends TERM to every group in the table, looks again for groups registered meanwhile, waits
//! up to two seconds for them, sends KILL and exits.
//!
//! The watchdog is forked, not executed: its code runs between `fork` and `_exit` using only
//! async-signal-safe calls (`read`, `kill`, `nanosleep`, `close`, `dup2`, `fork`, `_exit`) and
//! no allocation, so it is safe to fork from a multi-threaded process.

use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

use nix::libc;
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult};

use super::sys;

/// Most process groups the watchdog tracks at once (one page of slots per 1024).
const MAX_GROUPS: usize = 4096;
/// A slot taken by a child that has not registered its group yet.
const RESERVED: i32 = 1;
/// What reins writes to the lifeline when it ends normally.
const BYE: u8 = b'b';

/// A running watchdog; dropping it lets the watchdog exit.
#[derive(Debug)]
pub struct Watchdog {
    lifeline: Option<std::fs::File>,
    table: Arc<Table>,
}

/// The shared table: `MAX_GROUPS` slots, 0 for free, [`RESERVED`], or a process group id.
#[derive(Debug)]
struct Table(*mut AtomicI32);

// SAFETY: the table is a fixed mapping of atomics, valid until the last Arc is dropped.
unsafe impl Send for Table {}
// SAFETY: as above; every access goes through atomic operations.
unsafe impl Sync for Table {}

impl Table {
    fn new() -> io::Result<Table> {
        let len = MAX_GROUPS * std::mem::size_of::<AtomicI32>();
        // SAFETY: a fresh anonymous shared mapping, zero-filled by the kernel.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANON,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Table(ptr.cast()))
    }

    fn slots(&self) -> &[AtomicI32] {
        // SAFETY: the mapping holds MAX_GROUPS atomics and outlives `self`.
        unsafe { std::slice::from_raw_parts(self.0, MAX_GROUPS) }
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping, no longer referenced.
        unsafe { libc::munmap(self.0.cast(), MAX_GROUPS * std::mem::size_of::<AtomicI32>()) };
    }
}

/// A slot of the table: keeps a process group registered until dropped.
#[derive(Debug)]
pub struct Watched {
    table: Arc<Table>,
    index: Option<usize>,
}

impl Watched {
    /// The slot a child stores its own pid (= its group id) into before it `exec`s; `None`
    /// with the table full (thousands of groups at once): the group is then left to its
    /// parent-death signal.
    pub(super) fn slot(&self) -> Option<&AtomicI32> {
        self.index.map(|i| &self.table.slots()[i])
    }

    /// Registers the group (again: the child did it already).
    pub(super) fn set(&self, pgid: u32) {
        if let Some(slot) = self.slot() {
            slot.store(pgid as i32, Ordering::SeqCst);
        }
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        if let Some(slot) = self.slot() {
            slot.store(0, Ordering::SeqCst);
        }
    }
}

impl Watchdog {
    /// Forks the watchdog. On Linux this also makes reins the subreaper of everything its
    /// nodes start (see [`super`]).
    pub fn start() -> io::Result<Watchdog> {
        let table = Arc::new(Table::new()?);
        let (read, write) = io::pipe()?;
        let read: OwnedFd = read.into();
        // SAFETY: the child only forks again and runs `watch_loop`, which makes
        // async-signal-safe calls only.
        match unsafe { fork() }? {
            ForkResult::Child => {
                // SAFETY: as above.
                match unsafe { fork() } {
                    Ok(ForkResult::Child) => watch_loop(read, table.0),
                    // SAFETY: leaving the intermediate process at once.
                    _ => unsafe { libc::_exit(0) },
                }
            }
            ForkResult::Parent { child } => {
                drop(read);
                let _ = waitpid(child, None);
                sys::become_subreaper();
                Ok(Watchdog {
                    lifeline: Some(std::fs::File::from(OwnedFd::from(write))),
                    table,
                })
            }
        }
    }

    /// Reserves a slot for a child about to start; see [`Watched::slot`].
    pub fn reserve(&self) -> Watched {
        self.claim(RESERVED)
    }

    /// Registers a process group that is already running, until the guard is dropped.
    pub fn watch(&self, pgid: u32) -> Watched {
        self.claim(pgid as i32)
    }

    fn claim(&self, value: i32) -> Watched {
        let index = self.table.slots().iter().position(|s| {
            s.compare_exchange(0, value, Ordering::SeqCst, Ordering::Relaxed)
                .is_ok()
        });
        Watched {
            table: self.table.clone(),
            index,
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        // The run is over: stop what its nodes left outside their groups, then tell the
        // watchdog to exit without killing anything.
        super::group::sweep_escaped();
        if let Some(mut lifeline) = self.lifeline.take() {
            let _ = lifeline.write_all(&[BYE]);
        }
    }
}

/// The watchdog process. Never returns.
fn watch_loop(read: OwnedFd, table: *mut AtomicI32) -> ! {
    // SAFETY: only async-signal-safe libc calls on plain integers, stack buffers and the
    // shared mapping (which fork kept mapped in this process).
    unsafe {
        // Leave reins' process group (a terminal's Ctrl-C must not kill the watchdog) and
        // ignore the signals a terminal or `kill` of the group would send.
        libc::setpgid(0, 0);
        for sig in [
            libc::SIGINT,
            libc::SIGTERM,
            libc::SIGHUP,
            libc::SIGQUIT,
            libc::SIGTSTP,
            libc::SIGPIPE,
        ] {
            libc::signal(sig, libc::SIG_IGN);
        }
        // Keep only the lifeline, as fd 3; stdio to /dev/null; close everything else (the
        // run lock, pipes of running nodes...).
        let fd = read.as_raw_fd();
        if fd != 3 {
            libc::dup2(fd, 3);
        }
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            libc::dup2(null, 0);
            libc::dup2(null, 1);
            libc::dup2(null, 2);
        }
        sys::close_from(4);
        // Sleep until reins is gone: it writes only when it ends normally.
        let mut buf = [0u8; 64];
        loop {
            let n = libc::read(3, buf.as_mut_ptr().cast(), buf.len());
            if n < 0 && nix::errno::Errno::last_raw() == libc::EINTR {
                continue;
            }
            if n > 0 && buf[0] == BYE {
                libc::_exit(0);
            }
            if n <= 0 {
                break;
            }
        }
        let slots = std::slice::from_raw_parts(table, MAX_GROUPS);
        let mut groups = [0i32; MAX_GROUPS];
        let mut count = 0;
        let pause = libc::timespec {
            tv_sec: 0,
            tv_nsec: 50_000_000,
        };
        // TERM every group, looking again for a while: a child between its registration
        // and its parent-death check when reins died registers a little late.
        for round in 0..40 {
            for slot in slots {
                let g = slot.load(Ordering::SeqCst);
                if g > RESERVED && count < MAX_GROUPS && !groups[..count].contains(&g) {
                    groups[count] = g;
                    count += 1;
                    libc::kill(-g, libc::SIGTERM);
                }
            }
            let alive = groups[..count].iter().any(|&g| libc::kill(-g, 0) == 0);
            if !alive && round >= 3 {
                break;
            }
            libc::nanosleep(&pause, std::ptr::null_mut());
        }
        for &g in &groups[..count] {
            libc::kill(-g, libc::SIGKILL);
        }
        libc::_exit(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::{CommandExt, ExitStatusExt};

    #[test]
    fn groups_still_registered_when_reins_goes_away_are_killed() {
        let watchdog = Watchdog::start().unwrap();
        let mut kept = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        let mut released = std::process::Command::new("sleep")
            .arg("0.3")
            .process_group(0)
            .spawn()
            .unwrap();
        // A group registered and not released, and reins "dies" (its lifeline closes
        // without the goodbye).
        std::mem::forget(watchdog.watch(kept.id()));
        drop(watchdog.watch(released.id()));
        let mut watchdog = std::mem::ManuallyDrop::new(watchdog);
        drop(watchdog.lifeline.take());
        let status = kept.wait().unwrap();
        assert_eq!(status.signal(), Some(nix::libc::SIGTERM));
        assert!(released.wait().unwrap().success());
    }
}
