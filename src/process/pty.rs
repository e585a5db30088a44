//! A child process in a pseudo-terminal, driven from tokio: how agents run.
//!
//! The child leads its own session and process group, with the terminal as its controlling
//! one, registers the group with the watchdog before it execs and (on Linux) gets the
//! parent-death signal, like every node's process (see [`super`]). A task reads the terminal
//! and forwards chunks, and waits for the child; once the child exits, whatever is left of its
//! group (and, on Linux, what left the group) is stopped by the same policy as a `bash` node's:
//! TERM, the grace period, KILL. Then the exit is reported. Every child is waited for.

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, oneshot};

use super::command::Spawn;
use super::group::{Group, Membership, NoStop};
use super::unix::{self, Io};
use super::{Watchdog, Watched, OUTPUT_DRAIN_LIMIT};

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
    /// Time between TERM and KILL when the group is stopped.
    pub grace: Duration,
    /// Registers the child's process group so that it dies with reins.
    pub watchdog: Option<Arc<Watchdog>>,
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

/// Why a child could not be started in a PTY.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The working directory is missing or not a directory.
    #[error("working directory {} does not exist or is not a directory", .0.display())]
    NoWorkingDirectory(PathBuf),
    /// One argument is longer than the kernel takes ([`MAX_ARG_BYTES`]).
    #[error(
        "an argument of {bytes} bytes is longer than the {} KiB the system allows for one argument",
        MAX_ARG_BYTES / 1024
    )]
    ArgumentTooLong {
        /// Its length.
        bytes: usize,
    },
    /// One environment variable is longer than the kernel takes ([`MAX_ARG_BYTES`]).
    #[error(
        "environment variable {name} is longer than the {} KiB the system allows",
        MAX_ARG_BYTES / 1024
    )]
    VariableTooLong {
        /// Its name.
        name: String,
    },
    /// Arguments and environment together pass [`MAX_ARGV_TOTAL_BYTES`].
    #[error(
        "the command line and environment take {} KiB, more than the {} KiB reins allows",
        .bytes / 1024,
        MAX_ARGV_TOTAL_BYTES / 1024
    )]
    CommandLineTooLong {
        /// Their size.
        bytes: usize,
    },
    /// The system refused to start it (no such program, not executable, no terminal left).
    #[error("cannot start {}: {source}", .program.display())]
    Start {
        /// The program.
        program: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
}

/// A running child in a PTY. Dropping it kills the child's process group.
#[derive(Debug)]
pub struct PtyChild {
    pid: Pid,
    events: mpsc::UnboundedReceiver<PtyEvent>,
    exited: bool,
}

impl PtyChild {
    /// Spawns `command` in a new pseudo-terminal (50 rows of 200 columns). Must run on a
    /// tokio runtime, on a thread that lives as long as reins (see [`super`]).
    pub async fn spawn(command: PtyCommand) -> Result<PtyChild, SpawnError> {
        check(&command)?;
        let membership = Membership::new();
        let watched = command.watchdog.as_deref().map(Watchdog::reserve);
        let mut child = unix::spawn(
            &Spawn {
                program: &command.program.to_string_lossy(),
                args: &command.args,
                cwd: &command.cwd,
                env: &command.env,
                env_remove: &command.env_remove,
            },
            membership.tag(),
            watched.as_ref().and_then(Watched::slot),
            Io::Pty {
                rows: 50,
                cols: 200,
            },
        )
        .map_err(|source| SpawnError::Start {
            program: command.program.clone(),
            source,
        })?;
        let pid = child.id();
        membership.started(pid as i32);
        if let Some(w) = &watched {
            w.set(pid);
        }
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let reader = child.stdout.take();
        tokio::spawn(async move {
            let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
            let output = events_tx.clone();
            let pump = tokio::spawn(async move {
                let Some(mut reader) = reader else { return };
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    tokio::select! {
                        biased;
                        r = reader.read(&mut buf) => match r {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if output.send(PtyEvent::Output(buf[..n].to_vec())).is_err() {
                                    break;
                                }
                            }
                        },
                        _ = &mut stop_rx => break,
                    }
                }
            });
            let status = match child.wait().await {
                Ok(s) => match (s.code(), s.signal().and_then(|s| Signal::try_from(s).ok())) {
                    (Some(code), _) => ExitStatus::Code(code),
                    (None, Some(signal)) => ExitStatus::Signal(signal),
                    (None, None) => ExitStatus::Code(-1),
                },
                Err(_) => ExitStatus::Code(-1),
            };
            let mut group = Group::new(pid as i32, &membership);
            let drain_by = tokio::time::Instant::now() + OUTPUT_DRAIN_LIMIT;
            let mut pump = Some(pump);
            loop {
                group.settle(command.grace, &NoStop).await;
                let open = !ended_soon(&mut pump).await;
                group.find_escaped(open);
                if !open || tokio::time::Instant::now() >= drain_by {
                    group.settle(command.grace, &NoStop).await;
                    break;
                }
            }
            // The hung-up terminal ends the reader at once; bound the wait anyway.
            if let Some(mut pump) = pump {
                if tokio::time::timeout_at(drain_by, &mut pump).await.is_err() {
                    let _ = stop_tx.send(());
                    let _ = pump.await;
                }
            }
            drop(watched);
            drop(membership);
            let _ = events_tx.send(PtyEvent::Exited(status));
        });
        Ok(PtyChild {
            pid: Pid::from_raw(pid as i32),
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
        // behind. The supervising task still reaps the child.
        self.signal_group(Signal::SIGKILL);
    }
}

/// Checks what would otherwise fail late or unclearly: a missing working directory and an
/// argument list the kernel refuses.
fn check(command: &PtyCommand) -> Result<(), SpawnError> {
    if !command.cwd.is_dir() {
        return Err(SpawnError::NoWorkingDirectory(command.cwd.clone()));
    }
    let mut total = command.program.as_os_str().len() + 1;
    for arg in &command.args {
        if arg.len() + 1 > MAX_ARG_BYTES {
            return Err(SpawnError::ArgumentTooLong { bytes: arg.len() });
        }
        total += arg.len() + 1 + std::mem::size_of::<usize>();
    }
    for (key, value) in &command.env {
        if key.len() + value.len() + 2 > MAX_ARG_BYTES {
            return Err(SpawnError::VariableTooLong { name: key.clone() });
        }
    }
    let env_total: usize = std::env::vars_os()
        .map(|(k, v)| k.len() + v.len() + 2)
        .chain(command.env.iter().map(|(k, v)| k.len() + v.len() + 2))
        .sum();
    if total + env_total > MAX_ARGV_TOTAL_BYTES {
        return Err(SpawnError::CommandLineTooLong {
            bytes: total + env_total,
        });
    }
    Ok(())
}

/// True when the reader ends within a moment (nobody else holds the terminal open).
async fn ended_soon(task: &mut Option<tokio::task::JoinHandle<()>>) -> bool {
    let Some(handle) = task else {
        return true;
    };
    if tokio::time::timeout(Duration::from_millis(10), handle)
        .await
        .is_ok()
    {
        *task = None;
    }
    task.is_none()
}
