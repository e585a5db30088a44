//! The watchdog: kills every process group of a run when reins dies, even by `kill -9`.
//!
//! Each node's direct child gets the parent-death signal (`PR_SET_PDEATHSIG`, see
//! [`super::process`]), but that signal reaches only the direct child: a `bash -c` script's own
//! children (`sleep` in `touch x; sleep 30`) would survive reins as orphans. So reins forks one
//! small watchdog process per run. reins tells it, through a pipe, which process groups exist;
//! when that pipe reaches end-of-file (reins exited or was killed: the kernel closes its end),
//! the watchdog sends TERM to every group still registered, waits up to two seconds, sends KILL
//! and exits. When reins exits normally no group is registered and the watchdog just exits.
//!
//! The watchdog is forked, not executed: its code runs between `fork` and `_exit` using only
//! async-signal-safe calls (`read`, `kill`, `nanosleep`, `close`, `dup2`, `_exit`) and no
//! allocation, so it is safe to fork from a multi-threaded process.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};

use nix::fcntl::OFlag;
use nix::sys::wait::waitpid;
use nix::unistd::{fork, pipe2, ForkResult, Pid};

/// Most process groups the watchdog tracks at once.
const MAX_GROUPS: usize = 4096;

/// A running watchdog; dropping it lets the watchdog exit and waits for it.
#[derive(Debug)]
pub struct Watchdog {
    pipe: Option<File>,
    pid: Pid,
}

/// Keeps a process group registered with the watchdog; unregisters it when dropped.
#[derive(Debug)]
pub struct Watched<'a> {
    watchdog: &'a Watchdog,
    pgid: i32,
}

impl Watchdog {
    /// Forks the watchdog.
    pub fn start() -> io::Result<Watchdog> {
        let (read, write) = pipe2(OFlag::O_CLOEXEC)?;
        // SAFETY: the child only runs `watch_loop`, which makes async-signal-safe calls only.
        match unsafe { fork() }? {
            ForkResult::Child => watch_loop(read),
            ForkResult::Parent { child } => {
                drop(read);
                Ok(Watchdog {
                    pipe: Some(File::from(write)),
                    pid: child,
                })
            }
        }
    }

    /// The watchdog's pid.
    pub fn pid(&self) -> u32 {
        self.pid.as_raw() as u32
    }

    /// Registers a process group until the returned guard is dropped.
    pub fn watch(&self, pgid: u32) -> Watched<'_> {
        let pgid = pgid as i32;
        self.send(b'+', pgid);
        Watched {
            watchdog: self,
            pgid,
        }
    }

    fn send(&self, op: u8, pgid: i32) {
        // One short write is atomic on a pipe, so threads never interleave.
        let line = format!("{}{pgid}\n", op as char);
        if let Some(pipe) = &self.pipe {
            let _ = (&*pipe).write_all(line.as_bytes());
        }
    }
}

impl Drop for Watched<'_> {
    fn drop(&mut self) {
        self.watchdog.send(b'-', self.pgid);
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        // Closing our end tells the watchdog to exit; with no group registered it does so at once.
        self.pipe.take();
        let _ = waitpid(self.pid, None);
    }
}

/// The watchdog process. Never returns.
fn watch_loop(read: OwnedFd) -> ! {
    use nix::libc;
    // SAFETY: only async-signal-safe libc calls on plain integers and stack buffers.
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
        // Keep only the pipe, as fd 3; stdio to /dev/null; close everything else (the run
        // lock, pipes of running nodes...).
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

        let mut groups = [0i32; MAX_GROUPS];
        let mut count = 0usize;
        let mut buf = [0u8; 4096];
        let mut op = 0u8;
        let mut number: i64 = 0;
        loop {
            let n = libc::read(3, buf.as_mut_ptr().cast(), buf.len());
            if n < 0 {
                if *libc::__errno_location() == libc::EINTR {
                    continue;
                }
                break;
            }
            if n == 0 {
                break;
            }
            for &b in buf.iter().take(n as usize) {
                match b {
                    b'+' | b'-' => {
                        op = b;
                        number = 0;
                    }
                    b'0'..=b'9' => number = (number * 10 + (b - b'0') as i64).min(i32::MAX as i64),
                    b'\n' => {
                        let pgid = number as i32;
                        if pgid > 1 {
                            if op == b'+' && count < MAX_GROUPS {
                                groups[count] = pgid;
                                count += 1;
                            } else if op == b'-' {
                                let mut i = 0;
                                while i < count {
                                    if groups[i] == pgid {
                                        count -= 1;
                                        groups[i] = groups[count];
                                    } else {
                                        i += 1;
                                    }
                                }
                            }
                        }
                        op = 0;
                    }
                    _ => {}
                }
            }
        }
        // reins is gone: stop every group it left behind.
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
