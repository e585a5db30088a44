//! The Linux fast path: starting a child the way `posix_spawn` does, plus what it cannot do,
//! and what only Linux offers (pidfds, the parent-death signal, the child subreaper).
//!
//! Every node's process must lead its own process group, register it with the watchdog, and
//! carry the parent-death signal (`PR_SET_PDEATHSIG`), which takes code between `fork` and
//! `exec`. With `std`'s `pre_exec` that means a real `fork`: the kernel copies reins' page
//! tables, and every page reins writes afterwards faults and is copied. That cost about half a
//! millisecond per node. So, like glibc's `posix_spawn`, this module uses
//! `clone(CLONE_VM | CLONE_VFORK)`: the child borrows reins' memory on a stack of its own, runs
//! a few async-signal-safe system calls (`dup2`, `setpgid`, an atomic store into the watchdog's
//! table, `prctl`, `chdir`, signal resets) and `execve`s; reins' calling thread resumes once
//! the exec happened. Everything the child needs (paths, argv, envp) is prepared before the
//! clone, so the child never allocates or takes a lock. An exec failure travels back through a
//! close-on-exec pipe.
//!
//! The exit is awaited through a pidfd (`pidfd_open`, Linux 5.3), readable once the child
//! exits, then reaped with `waitpid`; stdout and stderr are pipes read asynchronously.
//!
//! reins is also a child subreaper (`PR_SET_CHILD_SUBREAPER`): a descendant that leaves its
//! node's process group (`setsid`, a double fork) is reparented to reins instead of init, so
//! [`escaped`] finds it by walking reins' descendants in `/proc` and reading the node tag in
//! their environment.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use nix::libc;
use tokio::io::unix::AsyncFd;
use tokio::net::unix::pipe;

use super::command::{parse_tag, Spawn, Step, TAG_VAR};
use super::group::stops_with;

/// A started child: its pid (also its process group), its output pipes, its exit.
pub(super) struct Child {
    pid: libc::pid_t,
    pidfd: Option<AsyncFd<OwnedFd>>,
    status: Option<ExitStatus>,
    /// Its stdout.
    pub(super) stdout: Option<pipe::Receiver>,
    /// Its stderr.
    pub(super) stderr: Option<pipe::Receiver>,
}

/// Where the child's setup failed (reported through the error pipe with the errno).
const STEP_SETUP: i32 = 1;
const STEP_CWD: i32 = 2;
const STEP_EXEC: i32 = 3;

/// What the child reads; raw pointers into buffers the parent keeps alive across the clone.
struct ChildArgs {
    path: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    cwd: *const libc::c_char,
    stdin: RawFd,
    stdout: RawFd,
    stderr: RawFd,
    report: RawFd,
    parent: libc::pid_t,
    slot: *const AtomicI32,
}

/// Starts a child in a process group of its own, registered in `slot` (the watchdog's) before
/// it execs, with `PR_SET_PDEATHSIG = SIGKILL`, stdin from `/dev/null`, stdout and stderr
/// piped, and `tag` in its environment. Must run on a tokio runtime (for the pipes), on a
/// thread that lives as long as reins (the parent-death signal follows the spawning thread).
pub(super) fn spawn(cmd: &Spawn, tag: u64, slot: Option<&AtomicI32>) -> io::Result<Child> {
    let program = cmd.executable()?;

    let c = |bytes: &[u8]| {
        CString::new(bytes).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "an argument contains a NUL byte",
            )
        })
    };
    let path = c(program.as_os_str().as_bytes())?;
    let mut argv_owned = vec![c(cmd.program.as_bytes())?];
    for a in cmd.args {
        argv_owned.push(c(a.as_bytes())?);
    }
    let envp_owned = cmd
        .environment(tag)
        .into_iter()
        .map(|kv| c(&kv))
        .collect::<io::Result<Vec<_>>>()?;
    let argv: Vec<*const libc::c_char> = argv_owned
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let envp: Vec<*const libc::c_char> = envp_owned
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let cwd = c(cmd.cwd.as_os_str().as_bytes())?;

    let stdin = above_stdio(open_dev_null()?)?;
    let (out_r, out_w) = pipe_pair()?;
    let (err_r, err_w) = pipe_pair()?;
    let (report_r, report_w) = pipe_pair()?;

    let args = ChildArgs {
        path: path.as_ptr(),
        argv: argv.as_ptr(),
        envp: envp.as_ptr(),
        cwd: cwd.as_ptr(),
        stdin: stdin.as_raw_fd(),
        stdout: out_w.as_raw_fd(),
        stderr: err_w.as_raw_fd(),
        report: report_w.as_raw_fd(),
        parent: std::process::id() as libc::pid_t,
        slot: slot.map_or(std::ptr::null(), |s| s as *const AtomicI32),
    };
    let mut stack = vec![0u8; 64 * 1024];
    // SAFETY: the child runs `child_main` on `stack` and only makes async-signal-safe system
    // calls on data prepared above, which stays alive until `clone` returns (CLONE_VFORK
    // suspends this thread until the child has exec'd or exited). Signals are blocked around
    // the clone so no handler of reins runs in the child.
    let pid = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let top = stack.as_mut_ptr().add(stack.len());
        let top = (top as usize & !15) as *mut libc::c_void;
        let pid = libc::clone(
            child_main,
            top,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            &args as *const ChildArgs as *mut libc::c_void,
        );
        let clone_error = io::Error::last_os_error();
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        if pid < 0 {
            return Err(clone_error);
        }
        pid
    };
    drop(stack);
    drop((out_w, err_w, report_w, stdin));

    // The child exec'd (the report pipe closed on exec: end of file) or failed (step, errno).
    let mut report = [0u8; 8];
    let n = read_full(&report_r, &mut report);
    if n == 8 {
        let step = i32::from_ne_bytes(report[..4].try_into().expect("4 bytes"));
        let errno = i32::from_ne_bytes(report[4..].try_into().expect("4 bytes"));
        let mut status = 0;
        // SAFETY: reaping our own child, which has exited.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        let step = match step {
            STEP_CWD => Step::Cwd,
            STEP_EXEC => Step::Exec,
            _ => Step::Setup,
        };
        return Err(cmd.failure(step, io::Error::from_raw_os_error(errno)));
    }

    let pidfd = pidfd_open(pid).and_then(|fd| {
        // SAFETY: `fd` is an open pidfd owned by the AsyncFd for its whole life.
        unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }.ok()
    });
    Ok(Child {
        pid,
        pidfd,
        status: None,
        stdout: Some(pipe::Receiver::from_owned_fd(out_r)?),
        stderr: Some(pipe::Receiver::from_owned_fd(err_r)?),
    })
}

extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` points to the parent's `ChildArgs`, alive while the parent is suspended.
    // Only async-signal-safe calls follow; nothing allocates or locks.
    unsafe {
        let a = &*(arg as *const ChildArgs);
        let fail = |step: i32| -> ! {
            let errno = *libc::__errno_location();
            let mut msg = [0u8; 8];
            msg[..4].copy_from_slice(&step.to_ne_bytes());
            msg[4..].copy_from_slice(&errno.to_ne_bytes());
            libc::write(a.report, msg.as_ptr().cast(), 8);
            libc::_exit(127)
        };
        // Default dispositions for every handled signal (exec would reset them, but a signal
        // arriving before it must not run reins' handlers here), SIGPIPE back to default
        // (Rust ignores it), and an empty signal mask.
        for sig in 1..65 {
            if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                continue;
            }
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut old) != 0 {
                continue;
            }
            if old.sa_sigaction != libc::SIG_IGN || sig == libc::SIGPIPE {
                let mut dfl: libc::sigaction = std::mem::zeroed();
                dfl.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(sig, &dfl, std::ptr::null_mut());
            }
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());

        if libc::dup2(a.stdin, 0) < 0 || libc::dup2(a.stdout, 1) < 0 || libc::dup2(a.stderr, 2) < 0
        {
            fail(STEP_SETUP);
        }
        if libc::setpgid(0, 0) != 0 {
            fail(STEP_SETUP);
        }
        // Register the group before the program can start anything.
        if let Some(slot) = a.slot.as_ref() {
            slot.store(libc::getpid(), Ordering::SeqCst);
        }
        if !after_fork(a.parent) {
            fail(STEP_SETUP);
        }
        if libc::chdir(a.cwd) != 0 {
            fail(STEP_CWD);
        }
        libc::execve(a.path, a.argv, a.envp);
        fail(STEP_EXEC)
    }
}

impl Child {
    /// The pid, which is also the process group id.
    pub(super) fn id(&self) -> u32 {
        self.pid as u32
    }

    /// Waits for the child to exit and reaps it. Safe to call again (and to cancel).
    pub(super) async fn wait(&mut self) -> io::Result<ExitStatus> {
        loop {
            if let Some(status) = self.status {
                return Ok(status);
            }
            if let Some(status) = self.try_reap()? {
                self.status = Some(status);
                return Ok(status);
            }
            match &self.pidfd {
                Some(fd) => {
                    let mut guard = fd.readable().await?;
                    guard.clear_ready();
                }
                // Without pidfds (Linux before 5.3): poll.
                None => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }

    fn try_reap(&mut self) -> io::Result<Option<ExitStatus>> {
        let mut status = 0;
        // SAFETY: waiting for our own child without blocking.
        let r = unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) };
        match r {
            0 => Ok(None),
            r if r == self.pid => Ok(Some(ExitStatus::from_raw(status))),
            _ => Err(io::Error::last_os_error()),
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        // Never leave a zombie: a child dropped before it was waited for is killed and reaped.
        if self.status.is_none() {
            // SAFETY: signalling and reaping our own child.
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
                let mut status = 0;
                libc::waitpid(self.pid, &mut status, 0);
            }
        }
    }
}

/// reins' environment (read once) with `overrides` applied, as `KEY=VALUE` byte strings.
/// In a freshly forked child, before `exec` (async-signal-safe): the parent-death signal, and
/// the check that reins did not die before it was set (then nobody would signal us: exit).
/// False if the signal cannot be set.
pub(super) fn after_fork(parent: libc::pid_t) -> bool {
    // SAFETY: plain system calls on integers.
    unsafe {
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
            return false;
        }
        if libc::getppid() != parent {
            libc::_exit(137);
        }
    }
    true
}

/// Makes reins the subreaper of its descendants: orphans are reparented to it, not to init.
pub(super) fn become_subreaper() {
    // SAFETY: a plain system call.
    let r = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong) };
    if r != 0 {
        tracing::warn!(
            "cannot become a child subreaper ({}); processes that leave a node's group may survive it",
            io::Error::last_os_error()
        );
    }
}

/// False when reins has no child at all (then nothing escaped): one system call.
pub(super) fn may_have_escaped() -> bool {
    // SAFETY: `info` is ours; WNOWAIT leaves any child as it is.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let r = libc::waitid(
            libc::P_ALL,
            0,
            &mut info,
            libc::WEXITED | libc::WSTOPPED | libc::WCONTINUED | libc::WNOHANG | libc::WNOWAIT,
        );
        !(r < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD))
    }
}

/// One line of `/proc/PID/stat`.
struct Stat {
    pid: i32,
    ppid: i32,
    pgid: i32,
    sid: i32,
    zombie: bool,
}

fn stat(pid: i32) -> Option<Stat> {
    let text = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid pgrp session ...`; comm may hold anything, even `)`.
    let close = text.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&text[close + 1..]).ok()?;
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?;
    let mut num = || fields.next().and_then(|f| f.parse::<i32>().ok());
    Some(Stat {
        pid,
        ppid: num()?,
        pgid: num()?,
        sid: num()?,
        zombie: state == "Z" || state == "X",
    })
}

/// The node tag in a process's environment (`None`: none of this reins', or unreadable).
fn tag_of(pid: i32) -> Option<u64> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let prefix = format!("{TAG_VAR}=");
    environ
        .split(|&b| b == 0)
        .find_map(|kv| kv.strip_prefix(prefix.as_bytes()))
        .and_then(parse_tag)
}

/// reins' descendants that must stop with the node of tag `ending` (0: every node that has
/// ended): they carry its tag (or an ended node's) in their environment. Reaps, on the way,
/// reins' zombie children that were processes of nodes (orphans that exited by themselves).
pub(super) fn escaped(ending: u64) -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let all: Vec<Stat> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(stat)
        .collect();
    let mut descendants = vec![me];
    let mut i = 0;
    while i < descendants.len() {
        let parent = descendants[i];
        descendants.extend(all.iter().filter(|s| s.ppid == parent).map(|s| s.pid));
        i += 1;
    }
    let mut found = Vec::new();
    for s in all.iter().filter(|s| descendants[1..].contains(&s.pid)) {
        if s.zombie {
            let ours = s.ppid == me && (super::group::was_node_group(s.pgid) || s.sid == s.pid);
            if ours && !super::group::is_running_leader(s.pid) {
                let mut status = 0;
                // SAFETY: reaping our own exited child, which nothing else waits for.
                unsafe { libc::waitpid(s.pid, &mut status, libc::WNOHANG) };
            }
            continue;
        }
        if tag_of(s.pid).is_some_and(|t| stops_with(t, ending)) {
            found.push(s.pid);
        }
    }
    found
}

/// True while `pid` exists and is not a zombie.
pub(super) fn running(pid: nix::unistd::Pid) -> bool {
    stat(pid.as_raw()).is_some_and(|s| !s.zombie)
}

/// Closes every descriptor from `first` on (async-signal-safe).
pub(super) fn close_from(first: u32) {
    // SAFETY: plain system calls on integers.
    unsafe {
        if libc::syscall(libc::SYS_close_range, first, u32::MAX, 0u32) != 0 {
            for fd in first as i32..4096 {
                libc::close(fd);
            }
        }
    }
}

fn pipe_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    Ok((above_stdio(r)?, above_stdio(w)?))
}

fn open_dev_null() -> io::Result<OwnedFd> {
    Ok(std::fs::File::open("/dev/null")?.into())
}

/// Moves a descriptor above 0-2, so the child's `dup2` onto 0, 1 and 2 never clobbers one it
/// still needs (when reins itself runs with a standard stream closed).
fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    // SAFETY: duplicating a descriptor we own; the new one is owned by the result.
    let dup = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if dup < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `dup` is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(dup) })
}

fn pidfd_open(pid: libc::pid_t) -> Option<OwnedFd> {
    // SAFETY: a plain system call; a non-negative result is a new descriptor we own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return None;
    }
    let fd = fd as RawFd;
    // SAFETY: `fd` is fresh and ours (pidfd_open makes it close-on-exec).
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn read_full(fd: &OwnedFd, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        // SAFETY: reading into our own buffer.
        let r = unsafe { libc::read(fd.as_raw_fd(), buf[n..].as_mut_ptr().cast(), buf.len() - n) };
        if r < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            break;
        }
        if r == 0 {
            break;
        }
        n += r as usize;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use tokio::io::AsyncReadExt;

    fn run(program: &str, args: &[&str], cwd: &Path) -> io::Result<(String, ExitStatus, u32)> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            let env = vec![("REINS_SPAWN_TEST".to_string(), "yes".to_string())];
            let mut child = spawn(
                &Spawn {
                    program,
                    args: &args,
                    cwd,
                    env: &env,
                    env_remove: &[],
                },
                1,
                None,
            )?;
            let mut out = String::new();
            child
                .stdout
                .take()
                .unwrap()
                .read_to_string(&mut out)
                .await?;
            let status = child.wait().await?;
            Ok((out, status, child.id()))
        })
    }

    #[test]
    fn leads_its_group_with_default_signals_and_our_environment() {
        let dir = tempfile::tempdir().unwrap();
        let (out, status, pid) = run(
            "bash",
            &[
                "-c",
                "cut -d' ' -f5 /proc/$$/stat; echo $REINS_SPAWN_TEST; pwd; cat",
            ],
            dir.path(),
        )
        .unwrap();
        assert!(status.success());
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], pid.to_string(), "pgid is the pid");
        assert_eq!(lines[1], "yes");
        assert_eq!(
            Path::new(lines[2]).canonicalize().unwrap(),
            dir.path().canonicalize().unwrap()
        );
        assert_eq!(lines.len(), 3, "stdin is empty: {out}");
        // The test harness ignores SIGPIPE, as reins does: the child must not inherit that.
        let (out, _, _) = run(
            "grep",
            &["-E", "^Sig(Blk|Ign)", "/proc/self/status"],
            dir.path(),
        )
        .unwrap();
        let mask = |name: &str| {
            let line = out.lines().find(|l| l.starts_with(name)).unwrap();
            u64::from_str_radix(line.split('\t').nth(1).unwrap(), 16).unwrap()
        };
        assert_eq!(mask("SigBlk"), 0, "{out}");
        assert_eq!(mask("SigIgn") & (1 << (libc::SIGPIPE - 1)), 0, "{out}");
    }

    #[test]
    fn failures_before_exec_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let err = run("bash", &["-c", "true"], &dir.path().join("missing")).unwrap_err();
        assert!(err.to_string().starts_with("cannot work in"), "{err}");
        let err = run("reins-no-such-program", &[], dir.path()).unwrap_err();
        assert!(err.to_string().contains("is not installed"), "{err}");
        let script = dir.path().join("script");
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        let err = run(script.to_str().unwrap(), &[], dir.path()).unwrap_err();
        assert!(err.to_string().contains("is not executable"), "{err}");
    }

    #[test]
    fn the_child_dies_when_the_thread_that_spawned_it_dies() {
        // PR_SET_PDEATHSIG fires when the spawning thread exits: show it is set.
        let pid = std::thread::spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let args = vec!["300".to_string()];
                let child = spawn(
                    &Spawn {
                        program: "sleep",
                        args: &args,
                        cwd: Path::new("/"),
                        env: &[],
                        env_remove: &[],
                    },
                    1,
                    None,
                )
                .unwrap();
                let pid = child.pid;
                std::mem::forget(child);
                pid
            })
        })
        .join()
        .unwrap();
        let start = std::time::Instant::now();
        let mut status = 0;
        loop {
            // SAFETY: reaping our own child.
            let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            if r == pid {
                break;
            }
            if start.elapsed() > Duration::from_secs(10) {
                // SAFETY: a signal to our own child, not yet reaped; no memory is touched.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                panic!("the child outlived the thread that spawned it");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(ExitStatus::from_raw(status).signal(), Some(libc::SIGKILL));
    }
}
