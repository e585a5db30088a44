//! A child process in a pseudo-terminal (portable-pty), driven from tokio.
//!
//! One dedicated thread per child spawns it, then waits for it: on Linux the child gets a
//! parent-death signal through `setpriv --pdeathsig`, which fires when the *thread* that
//! forked it ends, so that thread lives exactly as long as the child. A second thread reads
//! the PTY and forwards chunks over a channel, so the runtime never blocks. The child leads
//! its own session and process group (portable-pty calls `setsid`); once it exits, whatever
//! is left of its group is killed before the child is reaped, so no grandchild outlives it
//! and the group id cannot be reused meanwhile. Every child is waited for.

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use portable_pty::{native_pty_system, CommandBuilder, PtySize};
use tokio::sync::{mpsc, oneshot};

/// The longest single argument Linux accepts (`MAX_ARG_STRLEN`, 32 pages), NUL included.
pub const MAX_ARG_BYTES: usize = 128 * 1024;
/// The most argument and environment bytes reins passes to one child; the kernel's own limit
/// (`ARG_MAX`) is a quarter of the stack limit, 2 MiB by default.
pub const MAX_ARGV_TOTAL_BYTES: usize = 1024 * 1024;

/// What to run.
#[derive(Debug, Clone)]
pub struct PtyCommand {
    /// The executable (a path; resolve names with `which` first).
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Variables set on top of reins' own environment.
    pub env: Vec<(String, String)>,
    /// Variables removed from reins' environment.
    pub env_remove: Vec<String>,
    /// The working directory; it must exist.
    pub cwd: PathBuf,
}

/// Something the child did.
#[derive(Debug)]
pub enum PtyEvent {
    /// Bytes it wrote to the terminal.
    Output(Vec<u8>),
    /// It exited; always the last event.
    Exited(ExitStatus),
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// It exited with this code.
    Code(i32),
    /// A signal killed it.
    Signal(Signal),
}

impl ExitStatus {
    /// True for exit code 0.
    pub fn success(self) -> bool {
        self == ExitStatus::Code(0)
    }

    /// The exit code, if it exited normally.
    pub fn code(self) -> Option<i32> {
        match self {
            ExitStatus::Code(code) => Some(code),
            ExitStatus::Signal(_) => None,
        }
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Code(code) => write!(f, "exit code {code}"),
            ExitStatus::Signal(signal) => write!(f, "signal {}", signal.as_str()),
        }
    }
}

/// A running child in a PTY. Dropping it kills the child's process group.
#[derive(Debug)]
pub struct PtyChild {
    pid: Pid,
    events: mpsc::UnboundedReceiver<PtyEvent>,
    exited: bool,
}

impl PtyChild {
    /// Spawns `command` in a new pseudo-terminal.
    pub async fn spawn(command: PtyCommand) -> Result<PtyChild, String> {
        check(&command)?;
        let (started_tx, started_rx) = oneshot::channel();
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("reins-pty-wait".into())
            .spawn(move || supervise(command, started_tx, events_tx))
            .map_err(|e| format!("cannot start a thread for the child: {e}"))?;
        let pid = started_rx.await.map_err(|_| {
            "the child's supervising thread ended before the child started".to_string()
        })??;
        Ok(PtyChild {
            pid,
            events: events_rx,
            exited: false,
        })
    }

    /// The child's pid, which is also its process group id.
    pub fn pid(&self) -> u32 {
        self.pid.as_raw().unsigned_abs()
    }

    /// The next output chunk or the exit; `None` after the exit was returned.
    pub async fn next(&mut self) -> Option<PtyEvent> {
        let event = self.events.recv().await;
        if matches!(event, Some(PtyEvent::Exited(_))) {
            self.exited = true;
        }
        event
    }

    /// Sends `signal` to the child's whole process group (ignored once it is gone).
    pub fn signal_group(&self, signal: Signal) {
        if !self.exited {
            let _ = killpg(self.pid, signal);
        }
    }

    /// Stops the whole group: SIGTERM, up to `grace` for the child to exit, then SIGKILL.
    /// Output that arrives meanwhile goes to `on_output`. Returns the exit status, or `None`
    /// if the child outlived even SIGKILL for 5 s (it is still reaped when it finally exits).
    pub async fn terminate(
        &mut self,
        grace: Duration,
        mut on_output: impl FnMut(Vec<u8>),
    ) -> Option<ExitStatus> {
        for (signal, wait) in [
            (Signal::SIGTERM, grace),
            (Signal::SIGKILL, Duration::from_secs(5)),
        ] {
            self.signal_group(signal);
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                match tokio::time::timeout_at(deadline, self.next()).await {
                    Ok(Some(PtyEvent::Output(bytes))) => on_output(bytes),
                    Ok(Some(PtyEvent::Exited(status))) => return Some(status),
                    Ok(None) => return None,
                    Err(_) => break,
                }
            }
        }
        None
    }
}

impl Drop for PtyChild {
    fn drop(&mut self) {
        // The run was abandoned (its future dropped) or ended without waiting: leave nothing
        // behind. The supervising thread still reaps the child.
        self.signal_group(Signal::SIGKILL);
    }
}

/// Checks what portable-pty would get wrong silently: a missing working directory (it falls
/// back to `$HOME`) and an argument list the kernel refuses (the child dies of SIGABRT).
fn check(command: &PtyCommand) -> Result<(), String> {
    if !command.cwd.is_dir() {
        return Err(format!(
            "working directory {} does not exist or is not a directory",
            command.cwd.display()
        ));
    }
    let mut total = command.program.as_os_str().len() + 1;
    for arg in &command.args {
        if arg.len() + 1 > MAX_ARG_BYTES {
            return Err(format!(
                "an argument of {} bytes is longer than the {} KiB the system allows for one argument",
                arg.len(),
                MAX_ARG_BYTES / 1024
            ));
        }
        total += arg.len() + 1 + std::mem::size_of::<usize>();
    }
    for (key, value) in &command.env {
        if key.len() + value.len() + 2 > MAX_ARG_BYTES {
            return Err(format!(
                "environment variable {key} is longer than the {} KiB the system allows",
                MAX_ARG_BYTES / 1024
            ));
        }
    }
    let env_total: usize = std::env::vars_os()
        .map(|(k, v)| k.len() + v.len() + 2)
        .chain(command.env.iter().map(|(k, v)| k.len() + v.len() + 2))
        .sum();
    if total + env_total > MAX_ARGV_TOTAL_BYTES {
        return Err(format!(
            "the command line and environment take {} KiB, more than the {} KiB reins allows",
            (total + env_total) / 1024,
            MAX_ARGV_TOTAL_BYTES / 1024
        ));
    }
    Ok(())
}

/// `setpriv`, when present: it sets the parent-death signal and execs the real program.
fn setpriv() -> Option<&'static Path> {
    static SETPRIV: OnceLock<Option<PathBuf>> = OnceLock::new();
    SETPRIV
        .get_or_init(|| {
            if cfg!(target_os = "linux") {
                which::which("setpriv").ok()
            } else {
                None
            }
        })
        .as_deref()
}

fn builder(command: &PtyCommand) -> CommandBuilder {
    let mut argv: Vec<OsString> = Vec::with_capacity(command.args.len() + 5);
    if let Some(setpriv) = setpriv() {
        argv.extend([
            setpriv.into(),
            "--pdeathsig".into(),
            "TERM".into(),
            "--".into(),
        ]);
    }
    argv.push(command.program.clone().into());
    argv.extend(command.args.iter().map(OsString::from));
    let mut builder = CommandBuilder::from_argv(argv);
    for key in &command.env_remove {
        builder.env_remove(key);
    }
    for (key, value) in &command.env {
        builder.env(key, value);
    }
    builder.cwd(&command.cwd);
    builder
}

/// The body of the supervising thread: spawn, read, wait, clean up, report.
fn supervise(
    command: PtyCommand,
    started: oneshot::Sender<Result<Pid, String>>,
    events: mpsc::UnboundedSender<PtyEvent>,
) {
    let program = command.program.display().to_string();
    let spawned = (|| {
        let pair = native_pty_system()
            .openpty(PtySize {
                rows: 50,
                cols: 200,
                pixel_width: 0,
                pixel_height: 0,
            })
            .map_err(|e| format!("cannot open a pseudo-terminal: {e}"))?;
        let child = pair
            .slave
            .spawn_command(builder(&command))
            .map_err(|e| format!("cannot start {program}: {e}"))?;
        // The parent must not keep the slave open, or the reader never sees EOF.
        drop(pair.slave);
        Ok::<_, String>((pair.master, child))
    })();
    let (master, mut child) = match spawned {
        Ok(spawned) => spawned,
        Err(message) => {
            let _ = started.send(Err(message));
            return;
        }
    };
    let Some(pid) = child.process_id().map(|pid| Pid::from_raw(pid as i32)) else {
        let _ = child.kill();
        let _ = child.wait();
        let _ = started.send(Err(format!("{program} started without a process id")));
        return;
    };

    let (reader_done_tx, reader_done_rx) = std::sync::mpsc::channel::<()>();
    let reader = master.try_clone_reader();
    match reader {
        Ok(mut reader) => {
            let output = events.clone();
            let spawned = std::thread::Builder::new()
                .name("reins-pty-read".into())
                .spawn(move || {
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        match reader.read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => {
                                if output.send(PtyEvent::Output(buf[..n].to_vec())).is_err() {
                                    break;
                                }
                            }
                            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                            Err(_) => break,
                        }
                    }
                    drop(reader_done_tx);
                });
            if spawned.is_err() {
                tracing::warn!("cannot start the PTY reader thread; the child's output is lost");
            }
        }
        Err(e) => {
            drop(reader_done_tx);
            tracing::warn!("cannot read the child's PTY: {e}");
        }
    }
    let _ = started.send(Ok(pid));

    // Wait for the exit without reaping, so the pid (and group id) stays ours while the rest
    // of the group is killed.
    let status = loop {
        match waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {
            Ok(WaitStatus::Exited(_, code)) => break Some(ExitStatus::Code(code)),
            Ok(WaitStatus::Signaled(_, signal, _)) => break Some(ExitStatus::Signal(signal)),
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break None,
        }
    };
    let _ = killpg(pid, Signal::SIGKILL);
    let reaped = child.wait();
    let status = status.unwrap_or_else(|| match reaped {
        Ok(s) if s.success() => ExitStatus::Code(0),
        Ok(s) => ExitStatus::Code(s.exit_code() as i32),
        Err(_) => ExitStatus::Code(-1),
    });
    // The hung-up terminal ends the reader at once; bound the wait anyway.
    let _ = reader_done_rx.recv_timeout(Duration::from_secs(2));
    drop(master);
    let _ = events.send(PtyEvent::Exited(status));
}
