//! Starting a child on any Unix with std and tokio: pipes or a pseudo-terminal.
//!
//! Used for pseudo-terminals on every path (agents) and for pipes on the portable path. The
//! child leads a process group of its own (`process_group(0)`; `setsid` and the terminal as
//! its controlling one for a PTY) and, before it `exec`s, stores its pid into the watchdog's
//! slot, then runs the platform's last check ([`super::sys::after_fork`]). That code between
//! `fork` and `exec` makes std fork rather than `posix_spawn`: the price of registering the
//! group before the program can start anything.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};

use nix::libc;
use nix::pty::{openpty, Winsize};
use tokio::io::AsyncRead;
use tokio::net::unix::pipe;

use super::command::{tag_value, Spawn, Step, TAG_VAR};
use super::sys;

/// How the child's standard streams are wired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Io {
    /// stdin from `/dev/null`, stdout and stderr piped.
    #[cfg_attr(
        all(target_os = "linux", not(feature = "portable-process")),
        allow(dead_code)
    )]
    Pipes,
    /// All three on the slave side of a new pseudo-terminal of this size; output comes from the
    /// master side, as `stdout`.
    Pty { rows: u16, cols: u16 },
}

/// A started child.
pub(super) struct Child {
    child: tokio::process::Child,
    pid: u32,
    /// Its stdout, or the PTY's master side.
    pub(super) stdout: Option<Box<dyn AsyncRead + Unpin + Send>>,
    /// Its stderr (none with a PTY).
    #[cfg_attr(
        all(target_os = "linux", not(feature = "portable-process")),
        allow(dead_code)
    )]
    pub(super) stderr: Option<Box<dyn AsyncRead + Unpin + Send>>,
}

impl Child {
    /// The pid, which is also the process group id.
    pub(super) fn id(&self) -> u32 {
        self.pid
    }

    /// Waits for the child to exit and reaps it. Safe to call again (and to cancel).
    pub(super) async fn wait(&mut self) -> io::Result<ExitStatus> {
        self.child.wait().await
    }
}

/// Starts `cmd` with `tag` in its environment, registered in `slot` before it execs.
pub(super) fn spawn(
    cmd: &Spawn,
    tag: u64,
    slot: Option<&AtomicI32>,
    wiring: Io,
) -> io::Result<Child> {
    let program = cmd.executable()?;
    if !cmd.cwd.is_dir() {
        let errno = if cmd.cwd.exists() {
            libc::ENOTDIR
        } else {
            libc::ENOENT
        };
        return Err(cmd.failure(Step::Cwd, io::Error::from_raw_os_error(errno)));
    }
    let mut command = tokio::process::Command::new(&program);
    command
        .arg0(cmd.program)
        .args(cmd.args)
        .current_dir(cmd.cwd)
        .kill_on_drop(true);
    for key in cmd.env_remove {
        command.env_remove(key);
    }
    command.envs(cmd.env.iter().map(|(k, v)| (k, v)));
    command.env(TAG_VAR, tag_value(tag));

    let mut master = None;
    let pty = match wiring {
        Io::Pipes => {
            command
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .process_group(0);
            false
        }
        Io::Pty { rows, cols } => {
            let size = Winsize {
                ws_row: rows,
                ws_col: cols,
                ws_xpixel: 0,
                ws_ypixel: 0,
            };
            let pair = openpty(&size, None).map_err(io::Error::from)?;
            for fd in [&pair.master, &pair.slave] {
                close_on_exec(fd)?;
            }
            command
                .stdin(Stdio::from(pair.slave.try_clone()?))
                .stdout(Stdio::from(pair.slave.try_clone()?))
                .stderr(Stdio::from(pair.slave));
            master = Some(pair.master);
            true
        }
    };
    let slot = slot.map_or(0, |s| s as *const AtomicI32 as usize);
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the forked child before exec and makes only
    // async-signal-safe calls (setsid, ioctl, getpid, an atomic store into the shared
    // watchdog table, which the parent keeps mapped until the child's group is gone).
    unsafe {
        command.pre_exec(move || {
            if pty {
                if libc::setsid() < 0 {
                    return Err(io::Error::last_os_error());
                }
                if libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            if slot != 0 {
                (*(slot as *const AtomicI32)).store(libc::getpid(), Ordering::SeqCst);
            }
            if !sys::after_fork(parent) {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().map_err(|e| {
        let step = match e.raw_os_error() {
            Some(libc::E2BIG | libc::EACCES | libc::ENOENT | libc::ENOEXEC) => Step::Exec,
            _ => Step::Setup,
        };
        cmd.failure(step, e)
    })?;
    // The parent's copies of the slave side close with `command`: the reader sees the end.
    drop(command);
    let pid = child
        .id()
        .ok_or_else(|| io::Error::other("the child exited before its pid was known"))?;
    let (stdout, stderr) = match master {
        Some(master) => {
            nonblocking(&master)?;
            let reader = pipe::Receiver::from_owned_fd_unchecked(master)?;
            (Some(boxed(Pty(reader))), None)
        }
        None => (
            child.stdout.take().map(boxed),
            child.stderr.take().map(boxed),
        ),
    };
    Ok(Child {
        child,
        pid,
        stdout,
        stderr,
    })
}

fn boxed(r: impl AsyncRead + Unpin + Send + 'static) -> Box<dyn AsyncRead + Unpin + Send> {
    Box::new(r)
}

/// A PTY's master side: the end of output reads as `EIO` once every slave is closed.
struct Pty(pipe::Receiver);

impl AsyncRead for Pty {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        match std::pin::Pin::new(&mut self.0).poll_read(cx, buf) {
            std::task::Poll::Ready(Err(e)) if e.raw_os_error() == Some(libc::EIO) => {
                std::task::Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

fn close_on_exec(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: setting a flag on a descriptor we own.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn nonblocking(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: reading and setting the flags of a descriptor we own.
    unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
