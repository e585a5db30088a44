//! The watchdog: kills every process group of a run when reins dies, even by `kill -9`.
//!
//! Each node's direct child gets the parent-death signal (`PR_SET_PDEATHSIG`, see
//! [`super::spawn`]), but that signal reaches only the direct child: a `bash -c` script's own
//! children (`sleep` in `touch x; sleep 30`) would survive reins as orphans. So reins forks one
//! small watchdog process per run. The two share a table of live process groups in a shared
//! memory page: registering a group is one atomic store, with no system call and no wake-up.
//! The watchdog sleeps in `read` on a pipe whose only writer is reins; when it reaches
//! end-of-file (reins exited or was killed: the kernel closes its end), the watchdog sends TERM
//! to every group in the table, waits up to two seconds for them, sends KILL and exits. When
//! reins exits normally the table is empty and the watchdog just exits.
//!
//! The watchdog is forked, not executed: its code runs between `fork` and `_exit` using only
//! async-signal-safe calls (`read`, `kill`, `nanosleep`, `close`, `dup2`, `_exit`) and no
//! allocation, so it is safe to fork from a multi-threaded process.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};

use nix::fcntl::OFlag;
use nix::libc;
use nix::sys::wait::waitpid;
use nix::unistd::{fork, pipe2, ForkResult, Pid};

/// Most process groups the watchdog tracks at once (one page of slots per 1024).
const MAX_GROUPS: usize = 4096;

/// A running watchdog; dropping it lets the watchdog exit and waits for it.
#[derive(Debug)]
pub struct Watchdog {
    lifeline: Option<OwnedFd>,
    pid: Pid,
    table: Table,
}

/// The shared table: `MAX_GROUPS` slots, 0 for free, else a process group id.
#[derive(Debug)]
struct Table(*mut AtomicI32);

// SAFETY: the table is a fixed mapping of atomics, valid until the Watchdog is dropped.
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
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
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

/// Keeps a process group registered with the watchdog; unregisters it when dropped.
#[derive(Debug)]
pub struct Watched<'a> {
    slot: Option<&'a AtomicI32>,
}

impl Watchdog {
    /// Forks the watchdog.
    pub fn start() -> io::Result<Watchdog> {
        let table = Table::new()?;
        let (read, write) = pipe2(OFlag::O_CLOEXEC)?;
        // SAFETY: the child only runs `watch_loop`, which makes async-signal-safe calls only.
        match unsafe { fork() }? {
            ForkResult::Child => watch_loop(read, table.0),
            ForkResult::Parent { child } => {
                drop(read);
                Ok(Watchdog {
                    lifeline: Some(write),
                    pid: child,
                    table,
                })
            }
        }
    }

    /// The watchdog's pid.
    pub fn pid(&self) -> u32 {
        self.pid.as_raw() as u32
    }

    /// Registers a process group until the returned guard is dropped. With the table full
    /// (thousands of groups at once) the group is left to its parent-death signal.
    pub fn watch(&self, pgid: u32) -> Watched<'_> {
        let pgid = pgid as i32;
        let slot = self.table.slots().iter().find(|s| {
            s.compare_exchange(0, pgid, Ordering::SeqCst, Ordering::Relaxed)
                .is_ok()
        });
        Watched { slot }
    }
}

impl Drop for Watched<'_> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot {
            slot.store(0, Ordering::SeqCst);
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        // Closing the lifeline tells the watchdog to check the table (empty) and exit.
        self.lifeline.take();
        let _ = waitpid(self.pid, None);
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
        if libc::syscall(libc::SYS_close_range, 4u32, u32::MAX, 0u32) != 0 {
            for other in 4..4096 {
                libc::close(other);
            }
        }
        // Sleep until reins is gone: nobody ever writes to the lifeline.
        let mut buf = [0u8; 64];
        loop {
            let n = libc::read(3, buf.as_mut_ptr().cast(), buf.len());
            if n < 0 && *libc::__errno_location() == libc::EINTR {
                continue;
            }
            if n <= 0 {
                break;
            }
        }
        let slots = std::slice::from_raw_parts(table, MAX_GROUPS);
        let mut groups = [0i32; MAX_GROUPS];
        let mut count = 0;
        for slot in slots {
            let g = slot.load(Ordering::SeqCst);
            if g > 1 {
                groups[count] = g;
                count += 1;
            }
        }
        for &g in groups.iter().take(count) {
            libc::kill(-g, libc::SIGTERM);
        }
        let pause = libc::timespec {
            tv_sec: 0,
            tv_nsec: 50_000_000,
        };
        for _ in 0..40 {
            let mut alive = false;
            for &g in groups.iter().take(count) {
                if libc::kill(-g, 0) == 0 {
                    alive = true;
                }
            }
            if !alive {
                break;
            }
            libc::nanosleep(&pause, std::ptr::null_mut());
        }
        for &g in groups.iter().take(count) {
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
        // A group registered and not released: as if reins died while it ran.
        std::mem::forget(watchdog.watch(kept.id()));
        drop(watchdog.watch(released.id()));
        drop(watchdog);
        let status = kept.wait().unwrap();
        assert_eq!(status.signal(), Some(nix::libc::SIGTERM));
        assert!(released.wait().unwrap().success());
    }
}
