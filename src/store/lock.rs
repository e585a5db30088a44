//! Locks: one per run (`.reins/runs/<id>/lock`: which process executes it) and one per working
//! tree (`.reins/lock`: one run at a time edits a checkout; runs in their own worktree skip it).
//!
//! A lock is an exclusive `flock` on its file, and the file says who holds it: pid, run id,
//! start time. The kernel drops a `flock` when its process dies, however it dies, so the lock
//! of a dead owner is simply taken over by the next `reins run` or `resume`; it can never get
//! stuck. The file is never deleted (deleting a locked file races with the next locker).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

/// Who holds the lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// The reins process.
    pub pid: u32,
    /// The run it executes.
    pub run_id: String,
    /// When it took the lock.
    #[serde(with = "super::time")]
    pub since: SystemTime,
}

/// A held lock; dropping it releases it.
#[derive(Debug)]
pub struct RunLock {
    file: Flock<File>,
    path: PathBuf,
}

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// A live process holds it.
    #[error("{}", busy(.0.as_ref()))]
    Busy(Option<Owner>),
    /// The file could not be used.
    #[error("cannot use the run lock: {0}")]
    Io(#[source] io::Error),
}

/// Who holds a busy lock, in words.
fn busy(owner: Option<&Owner>) -> String {
    match owner {
        Some(owner) => format!(
            "run {} is being executed by pid {} in this working tree",
            owner.run_id, owner.pid
        ),
        None => "another reins process is executing a run in this working tree".into(),
    }
}

impl RunLock {
    /// Takes the lock at `path` for `run_id`, without waiting.
    pub fn acquire(path: &Path, run_id: &str) -> Result<Self, LockError> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(LockError::Io)?;
        }
        let path = path.to_path_buf();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(LockError::Io)?;
        let mut file = file;
        let mut tries = 0;
        let mut locked = loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(l) => break l,
                Err((mut back, Errno::EWOULDBLOCK)) => {
                    let owner = read_owner(&mut back);
                    // `live_owner` probes with a brief shared lock; a holder whose process is
                    // gone is such a probe: try again shortly.
                    let holder_alive = owner.as_ref().is_some_and(|o| pid_alive(o.pid));
                    tries += 1;
                    if holder_alive || tries > 10 {
                        return Err(LockError::Busy(owner.filter(|o| pid_alive(o.pid))));
                    }
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    file = back;
                }
                Err((_, e)) => return Err(LockError::Io(e.into())),
            }
        };
        write_owner(&mut locked, run_id).map_err(LockError::Io)?;
        Ok(Self { file: locked, path })
    }

    /// Records the run the lock is held for (a new run gets its id after taking the lock).
    pub fn set_run_id(&mut self, run_id: &str) -> io::Result<()> {
        write_owner(&mut self.file, run_id)
    }

    /// Notes that the lock file was moved with its folder (a new run's directory is renamed
    /// from its staging name while the lock is held; a `flock` follows the open file).
    pub fn moved_to(&mut self, path: PathBuf) {
        self.path = path;
    }
}

/// Who holds the lock at `path` right now, if anyone. Never blocks and never takes the lock
/// away from a live owner.
pub fn live_owner(path: &Path) -> Option<Owner> {
    let mut file = OpenOptions::new().read(true).open(path).ok()?;
    // If a shared lock can be taken, nobody holds the exclusive one.
    match Flock::lock(file.try_clone().ok()?, FlockArg::LockSharedNonblock) {
        Ok(probe) => {
            drop(probe);
            None
        }
        Err((_, Errno::EWOULDBLOCK)) => read_owner(&mut file),
        Err(_) => None,
    }
}

/// True when some process holds the lock at `path` (whether or not it recorded itself);
/// creates nothing.
pub fn is_held(path: &Path) -> bool {
    let Ok(file) = OpenOptions::new().read(true).open(path) else {
        return false;
    };
    matches!(
        Flock::lock(file, FlockArg::LockSharedNonblock),
        Err((_, Errno::EWOULDBLOCK))
    )
}

/// True when a process with this pid exists.
pub fn pid_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    !matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
        Err(Errno::ESRCH)
    )
}

/// The ancestors of process `pid`, parent first, up to (not including) pid 1. Bounded: at most
/// 4,096 steps, and a process whose parent cannot be read ends the chain.
pub fn ancestors(pid: u32) -> Vec<u32> {
    let mut chain = Vec::new();
    let mut current = pid;
    while chain.len() < 4096 {
        match parent_of(current) {
            Some(p) if p > 1 && p != current && !chain.contains(&p) => {
                chain.push(p);
                current = p;
            }
            _ => break,
        }
    }
    chain
}

/// The parent of a process, from `/proc/PID/stat` (the field after the command name, which
/// may itself hold spaces and parentheses).
#[cfg(target_os = "linux")]
fn parent_of(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}

/// The parent of a process, from `ps` (macOS and the BSDs have no `/proc`).
#[cfg(not(target_os = "linux"))]
fn parent_of(pid: u32) -> Option<u32> {
    let out = std::process::Command::new("ps")
        .args(["-o", "ppid=", "-p", &pid.to_string()])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

fn write_owner(file: &mut File, run_id: &str) -> io::Result<()> {
    let owner = Owner {
        pid: std::process::id(),
        run_id: run_id.to_string(),
        since: super::time::now(),
    };
    let text = serde_json::to_vec(&owner).map_err(io::Error::other)?;
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    // Not synced: the flock is what counts, and it dies with the process anyway.
    file.write_all(&text)
}

fn read_owner(file: &mut File) -> Option<Owner> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut text).ok()?;
    serde_json::from_str(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_released_on_drop() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(".reins/lock");
        assert_eq!(live_owner(&dir), None);
        let lock = RunLock::acquire(&dir, "run-a").unwrap();
        let owner = live_owner(&dir).expect("held");
        assert_eq!(owner.run_id, "run-a");
        assert_eq!(owner.pid, std::process::id());
        match RunLock::acquire(&dir, "run-b") {
            Err(e @ LockError::Busy(Some(_))) => {
                assert!(
                    e.to_string().contains("run run-a is being executed by pid"),
                    "{e}"
                )
            }
            other => panic!("expected busy, got {other:?}"),
        }
        drop(lock);
        assert_eq!(live_owner(&dir), None);
        let again = RunLock::acquire(&dir, "run-b").unwrap();
        assert_eq!(live_owner(&dir).unwrap().run_id, "run-b");
        drop(again);
    }

    #[test]
    fn ancestors_lead_back_to_this_process() {
        let child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let chain = ancestors(child.id());
        let mut child = child;
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(chain.first(), Some(&std::process::id()), "{chain:?}");
    }

    #[test]
    fn a_dead_owners_lock_is_taken_over() {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir_all(tmp.path().join(".reins")).unwrap();
        let dir = tmp.path().join(".reins/lock");
        // A lock file left by a process that died: its flock is gone with it.
        fs::write(
            &dir,
            r#"{"pid":999999,"run_id":"old","since":"2026-01-01T00:00:00Z"}"#,
        )
        .unwrap();
        assert_eq!(live_owner(&dir), None);
        let lock = RunLock::acquire(&dir, "new").unwrap();
        assert_eq!(live_owner(&dir).unwrap().run_id, "new");
        drop(lock);
    }
}
