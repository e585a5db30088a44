//! Running one child process the way every node runs them.
//!
//! * The child leads a process group of its own, so a timeout or a cancel stops everything it
//!   started: `killpg` TERM, a grace period, `killpg` KILL. A group that outlives its leader
//!   (a script that backgrounded something) is stopped the same way once the leader exits.
//! * The child gets `PR_SET_PDEATHSIG = SIGKILL` ([`super::spawn`]), so it dies with reins
//!   even on `kill -9`; the [`Watchdog`] covers the rest of its group. Linux sends the parent-death signal when
//!   the *thread* that forked the child exits, not the process. reins runs its engine on a
//!   current-thread tokio runtime on the main thread, so every child is forked by a thread that
//!   lives as long as the process. Never spawn a child from `spawn_blocking` (its threads exit
//!   after a few idle seconds, and with them the child).
//! * stdin is `/dev/null`; stdout is kept (up to a limit) as the node's output and, like
//!   stderr, written to a log file as it arrives (`reins logs -f` reads it live).
//! * The child is always waited for: no zombies.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::task::JoinHandle;

use super::cancel::{CancelLevel, CancelToken};
use super::spawn;
use super::watchdog::Watchdog;

/// How long to wait for a stopped group's pipes to close before giving up on them.
const PIPE_DRAIN_LIMIT: Duration = Duration::from_secs(1);

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
    /// created when the first bytes arrive).
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

/// Runs a process to its end (and the end of its whole group).
pub async fn run(
    spec: &Spec,
    cancel: &CancelToken,
    watchdog: Option<&Watchdog>,
) -> io::Result<Finished> {
    let started = Instant::now();

    let mut child = spawn::spawn(&spawn::Command {
        program: &spec.program,
        args: &spec.args,
        cwd: &spec.cwd,
        env: &spec.env,
    })?;
    let pid = child.id();
    let _watched = watchdog.map(|w| w.watch(pid));
    let pgid = Pid::from_raw(pid as i32);

    let stdout = pump(
        child.stdout.take().expect("stdout is piped"),
        spec.stdout_log.clone(),
        spec.output_limit,
    );
    let stderr = pump(
        child.stderr.take().expect("stderr is piped"),
        spec.stderr_log.clone(),
        0,
    );

    // Phase 1: the leader exits, the timeout passes, or the run is cancelled.
    let timeout = async {
        match spec.timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    let mut status: Option<ExitStatus> = None;
    let mut reason: Option<Ending> = None;
    let mut killed = false;
    let mut term_at: Option<Instant> = None;
    tokio::select! {
        s = child.wait() => status = Some(s?),
        _ = timeout => reason = spec.timeout.map(Ending::TimedOut),
        level = cancel.at_least(CancelLevel::Graceful) => {
            reason = Some(Ending::Cancelled);
            if level == CancelLevel::Force {
                signal_group(pgid, Signal::SIGKILL);
                killed = true;
            }
        }
    }
    if reason.is_some() && !killed {
        signal_group(pgid, Signal::SIGTERM);
        term_at = Some(Instant::now());
    }

    // Phase 2: until the leader is reaped and the group is empty. Stragglers get TERM, then
    // KILL after the grace period; a forced cancel KILLs at once.
    let mut killed_at: Option<Instant> = killed.then(Instant::now);
    loop {
        if status.is_some() {
            if !group_alive(pgid) {
                break;
            }
            if term_at.is_none() && !killed {
                signal_group(pgid, Signal::SIGTERM);
                term_at = Some(Instant::now());
            }
            // Killed members vanish at once; a member that stays is a zombie its parent
            // never reaps, or was reparented to an init that does not reap. Stop waiting.
            if killed_at.is_some_and(|k| k.elapsed() > PIPE_DRAIN_LIMIT) {
                break;
            }
        }
        if let Some(t) = term_at {
            if !killed && t.elapsed() >= spec.grace {
                signal_group(pgid, Signal::SIGKILL);
                killed = true;
                killed_at = Some(Instant::now());
            }
        }
        let tick = if status.is_some() || term_at.is_some() {
            Duration::from_millis(20)
        } else {
            Duration::from_secs(3600)
        };
        tokio::select! {
            s = child.wait(), if status.is_none() => status = Some(s?),
            _ = tokio::time::sleep(tick) => {}
            _ = cancel.at_least(CancelLevel::Force), if !killed => {
                reason.get_or_insert(Ending::Cancelled);
                signal_group(pgid, Signal::SIGKILL);
                killed = true;
                killed_at = Some(Instant::now());
            }
        }
    }

    let (stdout, truncated) = drain(stdout).await;
    let _ = drain(stderr).await;
    let status = status.expect("the loop ends after the leader is reaped");
    let ending = reason.unwrap_or_else(|| match (status.code(), status.signal()) {
        (Some(c), _) => Ending::Exited(c),
        (None, Some(s)) => Ending::Signaled(s),
        (None, None) => Ending::Exited(-1),
    });
    Ok(Finished {
        ending,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        truncated,
        elapsed: started.elapsed(),
    })
}

fn signal_group(pgid: Pid, signal: Signal) {
    let _ = killpg(pgid, signal);
}

fn group_alive(pgid: Pid) -> bool {
    !matches!(killpg(pgid, None), Err(Errno::ESRCH))
}

type Pump = JoinHandle<(Vec<u8>, bool)>;

/// Opens a log for appending, creating its folder if needed.
fn open_log(path: &std::path::Path) -> Option<File> {
    let open = || OpenOptions::new().create(true).append(true).open(path);
    open()
        .or_else(|_| {
            std::fs::create_dir_all(path.parent().unwrap_or(path))?;
            open()
        })
        .ok()
}

/// Copies a pipe to a log file, keeping the first `keep` bytes. The file is created (or
/// appended to) when the first bytes arrive: a silent process leaves no empty file.
fn pump(mut pipe: impl AsyncRead + Unpin + Send + 'static, path: PathBuf, keep: usize) -> Pump {
    tokio::spawn(async move {
        let mut kept = Vec::new();
        let mut truncated = false;
        let mut log: Option<File> = None;
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match pipe.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if log.is_none() {
                        log = open_log(&path);
                    }
                    if let Some(log) = &mut log {
                        let _ = log.write_all(&buf[..n]);
                    }
                    let room = keep.saturating_sub(kept.len());
                    if n > room {
                        truncated = true;
                    }
                    kept.extend_from_slice(&buf[..n.min(room)]);
                }
            }
        }
        (kept, truncated)
    })
}

/// Waits for a pump to reach end-of-file, but not forever: a process that escaped its group
/// (`setsid`) may hold the pipe open.
async fn drain(pump: Pump) -> (Vec<u8>, bool) {
    let abort = pump.abort_handle();
    match tokio::time::timeout(PIPE_DRAIN_LIMIT, pump).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => (Vec::new(), false),
        Err(_) => {
            abort.abort();
            (Vec::new(), false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::cancel::Canceller;

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
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => {
                let state = stat.rsplit(')').next().unwrap_or("").trim_start();
                !state.starts_with('Z')
            }
            Err(_) => false,
        }
    }
}
