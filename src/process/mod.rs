//! OS processes: every child a node starts, the same way for every node kind.
//!
//! * [`run`] runs a program with its output piped (`bash` nodes, `until_bash`); [`pty`] runs one
//!   in a pseudo-terminal (agents). Both go through one core: spawn, stream, stop, reap.
//! * The child leads a process group of its own, so a timeout or a cancel stops everything it
//!   started. Stopping is one policy for every node kind ([`group`]): `killpg` TERM, the grace
//!   period (`REINS_KILL_GRACE`), `killpg` KILL. A group that outlives its leader (a script
//!   that backgrounded something) is stopped the same way once the leader exits.
//! * The child registers its group with the [`Watchdog`] itself, between `fork` and `exec`,
//!   before the program can start anything; the watchdog stops every registered group when
//!   reins dies, even by `kill -9`.
//! * On Linux the child also gets `PR_SET_PDEATHSIG = SIGKILL`, and reins is a child subreaper:
//!   descendants that leave the group (`setsid`, a double fork) are reparented to reins, found
//!   by the node tag in their environment ([`command::TAG_VAR`]) and stopped with the node.
//!   Linux sends the parent-death signal when the *thread* that forked the child exits, not
//!   the process. reins runs its engine on a current-thread tokio runtime on the main thread,
//!   so every child is forked by a thread that lives as long as the process. Never spawn a
//!   child from `spawn_blocking` (its threads exit after a few idle seconds, and with them the
//!   child).
//! * stdin is `/dev/null`; stdout is kept (up to a limit) as the node's output and, like
//!   stderr, written to a log file as it arrives (`reins logs -f` reads it live). What was
//!   captured is recorded even when a process that escaped the group holds the pipe open.
//! * The child is always waited for: no zombies.
//!
//! Two implementations sit behind `cfg` (see `docs/platforms.md`): the Linux fast path
//! (`linux.rs`: `clone(CLONE_VM | CLONE_VFORK)`, pidfds, the parent-death signal, the
//! subreaper) and the portable Unix path (`portable.rs` over `unix.rs`: std and tokio, POSIX
//! calls only) for macOS and the BSDs. The cargo feature `portable-process` forces the
//! portable path on Linux.

#[cfg(not(any(
    target_os = "linux",
    target_os = "macos",
    target_os = "freebsd",
    target_os = "openbsd",
    target_os = "netbsd",
    target_os = "dragonfly"
)))]
compile_error!(
    "reins runs on Linux, macOS and the BSDs only: it needs Unix process groups, signals and \
     pseudo-terminals (see docs/platforms.md)"
);

pub mod command;
pub mod group;
pub mod pty;
mod unix;
pub mod watchdog;

#[cfg(all(target_os = "linux", not(feature = "portable-process")))]
mod linux;
#[cfg(all(target_os = "linux", not(feature = "portable-process")))]
use linux as sys;
#[cfg(any(not(target_os = "linux"), feature = "portable-process"))]
mod portable;
#[cfg(any(not(target_os = "linux"), feature = "portable-process"))]
use portable as sys;

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use nix::libc;
use nix::sys::signal::Signal;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use command::Spawn;
pub use group::{NoStop, StopRequest};
pub use watchdog::{Watchdog, Watched};

use group::{Group, Membership};

/// The grace period between TERM and KILL unless the run says otherwise (`REINS_KILL_GRACE`).
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3);

/// How long to wait for a stopped group's output to end before keeping what arrived.
const OUTPUT_DRAIN_LIMIT: Duration = Duration::from_secs(1);

/// The name of the process path this build uses: `linux` or `portable`.
pub const PATH: &str = if cfg!(all(target_os = "linux", not(feature = "portable-process"))) {
    "linux"
} else {
    "portable"
};

/// What to run.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The program (looked up on `PATH`).
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Working directory.
    pub cwd: PathBuf,
    /// Variables added to (or replacing) the inherited environment.
    pub env: Vec<(String, String)>,
    /// Where stdout goes, besides the captured output (appended; the file and its folder are
    /// created when the first bytes arrive; a symlink there is refused).
    pub stdout_log: PathBuf,
    /// Where stderr goes.
    pub stderr_log: PathBuf,
    /// Wall-clock limit.
    pub timeout: Option<Duration>,
    /// Time between TERM and KILL.
    pub grace: Duration,
    /// Most bytes of stdout kept as the output (the log keeps everything).
    pub output_limit: usize,
}

/// How the process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// It exited with this code.
    Exited(i32),
    /// A signal (not sent by reins) ended it.
    Signaled(i32),
    /// reins stopped it after the timeout.
    TimedOut(Duration),
    /// reins stopped it because the run was cancelled.
    Cancelled,
}

/// A finished process.
#[derive(Debug, Clone)]
pub struct Finished {
    /// How it ended.
    pub ending: Ending,
    /// Its stdout (lossy UTF-8), up to the limit.
    pub stdout: String,
    /// True when stdout was longer than the limit.
    pub truncated: bool,
    /// Bytes the process printed on stdout in all (the log has them all).
    pub total_bytes: u64,
    /// Wall-clock time from spawn to the end of its group.
    pub elapsed: Duration,
}

impl Ending {
    /// True for exit code 0.
    pub fn success(self) -> bool {
        self == Ending::Exited(0)
    }

    /// The exit code, when it exited.
    pub fn exit_code(self) -> Option<i32> {
        match self {
            Ending::Exited(c) => Some(c),
            _ => None,
        }
    }

    /// In words: `exited with code 2`, `killed by SIGSEGV`, `timed out after 5s`.
    pub fn describe(self) -> String {
        match self {
            Ending::Exited(c) => format!("exited with code {c}"),
            Ending::Signaled(s) => match Signal::try_from(s) {
                Ok(sig) => format!("killed by {}", sig.as_str()),
                Err(_) => format!("killed by signal {s}"),
            },
            Ending::TimedOut(t) => {
                format!("timed out after {}", crate::workflow::duration::format(t))
            }
            Ending::Cancelled => "cancelled".into(),
        }
    }
}

/// Runs a process to its end (and the end of its whole group, and of what left the group).
pub async fn run(
    spec: &Spec,
    stop: &impl StopRequest,
    watchdog: Option<&Watchdog>,
) -> io::Result<Finished> {
    let started = Instant::now();
    let membership = Membership::new();
    let watched = watchdog.map(Watchdog::reserve);
    let mut child = sys::spawn(
        &Spawn {
            program: &spec.program,
            args: &spec.args,
            cwd: &spec.cwd,
            env: &spec.env,
            env_remove: &[],
        },
        membership.tag(),
        watched.as_ref().and_then(Watched::slot),
    )?;
    let pid = child.id();
    membership.started(pid as i32);
    if let Some(w) = &watched {
        w.set(pid);
    }
    let mut group = Group::new(pid as i32, &membership);

    let mut stdout = Pump::start(
        child.stdout.take().map(boxed),
        spec.stdout_log.clone(),
        spec.output_limit,
    );
    let mut stderr = Pump::start(child.stderr.take().map(boxed), spec.stderr_log.clone(), 0);

    // Phase 1: the leader exits, the timeout passes, or the run is cancelled.
    let timeout = async {
        match spec.timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    let mut status: Option<ExitStatus> = None;
    let mut reason: Option<Ending> = None;
    tokio::select! {
        s = child.wait() => status = Some(s?),
        _ = timeout => {
            reason = spec.timeout.map(Ending::TimedOut);
            group.term();
        }
        forced = stop.requested() => {
            reason = Some(Ending::Cancelled);
            if forced { group.kill() } else { group.term() }
        }
    }

    // Phase 2: the leader is reaped (KILL after the grace period, or at once when forced).
    while status.is_none() {
        let due = group.kill_due(spec.grace);
        tokio::select! {
            s = child.wait() => status = Some(s?),
            _ = sleep_until(due), if due.is_some() => group.kill(),
            _ = stop.forced(), if !group.killed() => {
                reason.get_or_insert(Ending::Cancelled);
                group.kill();
            }
        }
    }

    // Phase 3: what is left of the group, and what left it, goes the same way. While the
    // output stays open, something that left the group holds it: look again.
    let drain_by = Instant::now() + OUTPUT_DRAIN_LIMIT;
    loop {
        group.settle(spec.grace, stop).await;
        let open = !stdout.ended_soon().await || !stderr.ended_soon().await;
        group.find_escaped(open);
        if !open || Instant::now() >= drain_by {
            group.settle(spec.grace, stop).await;
            break;
        }
    }

    let out = stdout.finish(drain_by).await;
    let _ = stderr.finish(drain_by).await;
    let status = status.expect("the loop ends after the leader is reaped");
    let ending = reason.unwrap_or_else(|| match (status.code(), status.signal()) {
        (Some(c), _) => Ending::Exited(c),
        (None, Some(s)) => Ending::Signaled(s),
        (None, None) => Ending::Exited(-1),
    });
    drop(watched);
    drop(membership);
    Ok(Finished {
        ending,
        stdout: String::from_utf8_lossy(&out.kept).into_owned(),
        truncated: out.truncated,
        total_bytes: out.total,
        elapsed: started.elapsed(),
    })
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// A child's output stream.
type Output = Box<dyn AsyncRead + Unpin + Send>;

fn boxed(r: impl AsyncRead + Unpin + Send + 'static) -> Output {
    Box::new(r)
}

/// Opens a log for appending, creating its folder if needed; a symlink in its place is
/// refused (`O_NOFOLLOW`): a node must not point reins' writes elsewhere.
fn open_log(path: &std::path::Path) -> Option<File> {
    let open = || {
        OpenOptions::new()
            .create(true)
            .append(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
    };
    match open() {
        Ok(f) => Some(f),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            tracing::warn!("not writing {}: it is a symbolic link", path.display());
            None
        }
        Err(_) => std::fs::create_dir_all(path.parent().unwrap_or(path))
            .and_then(|_| open())
            .map_err(|e| tracing::warn!("cannot write {}: {e}", path.display()))
            .ok(),
    }
}

/// What a pump kept of a stream.
#[derive(Debug, Default)]
struct Captured {
    kept: Vec<u8>,
    truncated: bool,
    total: u64,
}

/// Copies a stream to a log file, keeping the first `keep` bytes, until the end of the
/// stream or until told to stop (then it returns what it has).
struct Pump {
    task: Option<JoinHandle<Captured>>,
    stop: Option<oneshot::Sender<()>>,
    /// What the task returned, once it ended.
    got: Option<Captured>,
}

impl Pump {
    /// The file is created (or appended to) when the first bytes arrive: a silent process
    /// leaves no empty file.
    fn start(pipe: Option<Output>, path: PathBuf, keep: usize) -> Pump {
        let Some(mut pipe) = pipe else {
            return Pump {
                task: None,
                stop: None,
                got: None,
            };
        };
        let (stop_tx, mut stop_rx) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut got = Captured::default();
            let mut log: Option<File> = None;
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let n = tokio::select! {
                    biased;
                    r = pipe.read(&mut buf) => match r {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    },
                    _ = &mut stop_rx => break,
                };
                if log.is_none() {
                    log = open_log(&path);
                }
                if let Some(log) = &mut log {
                    let _ = log.write_all(&buf[..n]);
                }
                got.total += n as u64;
                let room = keep.saturating_sub(got.kept.len());
                if n > room {
                    got.truncated = true;
                }
                got.kept.extend_from_slice(&buf[..n.min(room)]);
            }
            got
        });
        Pump {
            task: Some(task),
            stop: Some(stop_tx),
            got: None,
        }
    }

    /// True when the stream ends within a moment (nobody else holds it open).
    async fn ended_soon(&mut self) -> bool {
        let Some(task) = &mut self.task else {
            return true;
        };
        match tokio::time::timeout(Duration::from_millis(10), task).await {
            Ok(got) => {
                self.task = None;
                self.got = Some(got.unwrap_or_default());
                true
            }
            Err(_) => false,
        }
    }

    /// Waits for the end of the stream until `by`, not forever: a process that escaped the
    /// group (and, off Linux, was not found) may hold it open. Then keeps what arrived.
    async fn finish(mut self, by: Instant) -> Captured {
        let Some(mut task) = self.task.take() else {
            return self.got.take().unwrap_or_default();
        };
        if let Ok(Ok(got)) = tokio::time::timeout_at(by.into(), &mut task).await {
            return got;
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        task.await.unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::cancel::{CancelLevel, CancelToken, Canceller};

    fn spec(dir: &std::path::Path, script: &str) -> Spec {
        Spec {
            program: "bash".into(),
            args: vec!["-c".into(), script.into()],
            cwd: dir.to_path_buf(),
            env: vec![("REINS_TEST".into(), "v a l".into())],
            stdout_log: dir.join("out.log"),
            stderr_log: dir.join("err.log"),
            timeout: None,
            grace: Duration::from_millis(500),
            output_limit: 1 << 20,
        }
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn captures_stdout_and_logs_both_streams() {
        let dir = tempfile::tempdir().unwrap();
        let s = spec(dir.path(), "echo \"$REINS_TEST\"; echo oops >&2; exit 3");
        let f = rt().block_on(run(&s, &CancelToken::never(), None)).unwrap();
        assert_eq!(f.ending, Ending::Exited(3));
        assert_eq!(f.stdout, "v a l\n");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("out.log")).unwrap(),
            "v a l\n"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("err.log")).unwrap(),
            "oops\n"
        );
        assert_eq!(f.ending.describe(), "exited with code 3");
    }

    #[test]
    fn output_is_capped_but_the_log_is_whole() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = spec(dir.path(), "printf '%0100d' 0");
        s.output_limit = 10;
        let f = rt().block_on(run(&s, &CancelToken::never(), None)).unwrap();
        assert_eq!(f.stdout.len(), 10);
        assert!(f.truncated);
        assert_eq!(
            std::fs::read(dir.path().join("out.log")).unwrap().len(),
            100
        );
    }

    #[test]
    fn a_timeout_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let script = format!(
            "sleep 30 & echo $! > {}; trap '' TERM; wait",
            pidfile.display()
        );
        let mut s = spec(dir.path(), &script);
        s.timeout = Some(Duration::from_millis(300));
        let f = rt().block_on(run(&s, &CancelToken::never(), None)).unwrap();
        assert_eq!(f.ending, Ending::TimedOut(Duration::from_millis(300)));
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(!process_exists(pid), "the background sleep must be gone");
    }

    #[test]
    fn stragglers_are_stopped_when_the_leader_exits() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let script = format!("sleep 30 & echo $! > {}; echo done", pidfile.display());
        let s = spec(dir.path(), &script);
        let f = rt().block_on(run(&s, &CancelToken::never(), None)).unwrap();
        assert_eq!(f.ending, Ending::Exited(0));
        assert_eq!(f.stdout, "done\n");
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(!process_exists(pid));
    }

    #[test]
    fn cancel_stops_the_group() {
        let dir = tempfile::tempdir().unwrap();
        let s = spec(dir.path(), "sleep 30");
        let (canceller, token) = Canceller::new();
        let f = rt()
            .block_on(async {
                let run = run(&s, &token, None);
                let cancel = async {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    canceller.raise(CancelLevel::Graceful);
                    std::future::pending::<()>().await
                };
                tokio::select! { f = run => f, _ = cancel => unreachable!() }
            })
            .unwrap();
        assert_eq!(f.ending, Ending::Cancelled);
    }

    #[test]
    fn a_missing_program_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = spec(dir.path(), "");
        s.program = "reins-no-such-shell".into();
        let err = rt()
            .block_on(run(&s, &CancelToken::never(), None))
            .unwrap_err();
        assert!(err.to_string().contains("is not installed"), "{err}");
    }

    /// True if the pid exists and is not a zombie.
    pub(crate) fn process_exists(pid: i32) -> bool {
        if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err() {
            return false;
        }
        let ps = std::process::Command::new("ps")
            .args(["-o", "stat=", "-p", &pid.to_string()])
            .output()
            .expect("ps runs");
        let state = String::from_utf8_lossy(&ps.stdout);
        !state.trim().is_empty() && !state.trim_start().starts_with('Z')
    }
}
