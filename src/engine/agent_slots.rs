//! Agent slots: a machine-wide cap on agent sessions running at once, across every run of the
//! user.
//!
//! A Claude Code process takes 150–250 MB of memory, so ten reviewers fanned out by three runs
//! could take a laptop down, while bash nodes (mostly waiting on I/O) can run by the dozen.
//! Every agent attempt therefore holds one *slot* while its process runs: an exclusive `flock`
//! on one of the files `agent-slots/slot-N.lock` (N from 0 to the cap) in the user's state
//! folder. The kernel drops a `flock` when its process dies, however it dies, so a killed run
//! never leaks a slot. An attempt that finds every slot taken waits (polling, cancellable).
//!
//! The cap, first found wins: `reins run --max-agents N`, `REINS_MAX_AGENTS`, `max_agents:` in
//! the user config file (`config.yaml` in the user-global folder: `$REINS_HOME`, else
//! `$XDG_CONFIG_HOME/reins`, else `~/.config/reins`), else a default that fits memory
//! ([`default_max`]). The state folder is `$XDG_STATE_HOME/reins`, else
//! `~/.local/state/reins`.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};

use super::cancel::{CancelLevel, CancelToken};

/// Memory one agent session is budgeted (a Claude Code process takes 150–250 MB).
const MEMORY_PER_AGENT: u64 = 256 << 20;

/// The default cap never goes above this, however much memory the machine has.
const MOST_AGENTS_BY_DEFAULT: usize = 16;

/// How often a waiting attempt looks for a free slot.
const POLL: Duration = Duration::from_millis(100);

/// The machine-wide agent slots; cheap to clone.
#[derive(Debug, Clone)]
pub struct AgentSlots {
    dir: PathBuf,
    max: usize,
}

/// A held slot; dropping it frees the slot.
#[derive(Debug)]
pub struct Slot {
    _lock: Flock<File>,
}

/// Where the cap came from, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// `--max-agents`.
    Flag,
    /// `REINS_MAX_AGENTS`.
    Env,
    /// `max_agents:` in the user config file.
    Config,
    /// Derived from the machine's memory.
    Memory,
}

impl AgentSlots {
    /// At most `max` agent sessions at once, counted through the lock files in `dir`.
    pub fn new(dir: PathBuf, max: usize) -> Self {
        Self {
            dir,
            max: max.max(1),
        }
    }

    /// The slots of this user: the folder `agent-slots` in the state folder (see the module
    /// docs). `None` when there is no home folder to put it in.
    pub fn for_user(max: usize) -> Option<Self> {
        let env = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let state = env("XDG_STATE_HOME")
            .filter(|p| p.is_absolute())
            .or_else(|| env("HOME").map(|h| h.join(".local").join("state")))?;
        Some(Self::new(state.join("reins").join("agent-slots"), max))
    }

    /// The cap.
    pub fn max(&self) -> usize {
        self.max
    }

    /// The folder of the slot files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Takes a free slot, waiting while every slot is taken. `Ok(None)` when the run was
    /// cancelled meanwhile; an error when the slot files cannot be used.
    pub async fn acquire(&self, cancel: &CancelToken) -> io::Result<Option<Slot>> {
        std::fs::create_dir_all(&self.dir)?;
        loop {
            if let Some(slot) = self.try_acquire()? {
                return Ok(Some(slot));
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = cancel.at_least(CancelLevel::Graceful) => return Ok(None),
            }
        }
    }

    /// Takes a free slot if there is one.
    pub fn try_acquire(&self) -> io::Result<Option<Slot>> {
        for n in 0..self.max {
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(self.dir.join(format!("slot-{n}.lock")))?;
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => return Ok(Some(Slot { _lock: lock })),
                Err((_, nix::errno::Errno::EWOULDBLOCK)) => continue,
                Err((_, e)) => return Err(io::Error::from(e)),
            }
        }
        Ok(None)
    }
}

/// Holds a slot for one agent attempt (see the module docs); `Err(Outcome::Cancelled)` when
/// the run was cancelled while it waited. Slot files that cannot be used do not stop the run:
/// it goes on without the cap, with a warning in the debug log.
pub(crate) async fn hold(job: &super::runner::Job) -> Result<Option<Slot>, super::runner::Outcome> {
    let Some(slots) = &job.limits.agent_slots else {
        return Ok(None);
    };
    // Free at once, as usual: nothing to say. Otherwise the wait is recorded, so the live
    // view and the web page show the node waiting for a slot rather than working.
    let waiting = match slots.try_acquire() {
        Ok(Some(slot)) => return Ok(Some(slot)),
        Ok(None) => {
            job.recorder.record(crate::store::Event::AgentSlotWait {
                node: job.node.clone(),
                max_agents: slots.max as u64,
            });
            Some(std::time::Instant::now())
        }
        Err(_) => None, // `acquire` meets the same error and says so below
    };
    match slots.acquire(&job.cancel).await {
        Ok(Some(slot)) => {
            if let Some(since) = waiting {
                job.recorder.record(crate::store::Event::AgentSlotTaken {
                    node: job.node.clone(),
                    waited_ms: since.elapsed().as_millis() as u64,
                });
            }
            Ok(Some(slot))
        }
        Ok(None) => Err(super::runner::Outcome::Cancelled),
        Err(e) => {
            tracing::warn!(
                "cannot use the agent slots in {}: {e}; `{}` runs without the machine-wide cap",
                slots.dir().display(),
                job.node
            );
            Ok(None)
        }
    }
}

/// The default cap: half the machine's memory at [`MEMORY_PER_AGENT`] each, from 1 to 16
/// (4 when the memory cannot be read).
pub(crate) fn default_max() -> usize {
    match total_memory() {
        Some(bytes) => ((bytes / 2 / MEMORY_PER_AGENT) as usize).clamp(1, MOST_AGENTS_BY_DEFAULT),
        None => 4,
    }
}

/// The machine's physical memory in bytes.
fn total_memory() -> Option<u64> {
    use nix::libc;
    // SAFETY: sysconf takes an integer name and returns a number; it touches no memory of ours.
    let (pages, size) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    (pages > 0 && size > 0).then(|| (pages as u64).saturating_mul(size as u64))
}

/// Why the cap on agent sessions could not be worked out: a setting that is not a positive
/// number, or a config file that cannot be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MaxAgentsError {
    /// `REINS_MAX_AGENTS` is not a positive whole number.
    #[error("REINS_MAX_AGENTS is `{0}`; set it to a whole number of agent sessions, 1 or more")]
    Env(String),
    /// The config file exists but cannot be read.
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        /// The config file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The config file is too large to be a settings file.
    #[error("{} is larger than 64 KiB; it holds a few settings", .0.display())]
    TooLarge(PathBuf),
    /// The config file is not YAML of the expected shape.
    #[error("{}: {source}", .path.display())]
    Parse {
        /// The config file.
        path: PathBuf,
        /// What the YAML parser said.
        source: Box<serde_saphyr::Error>,
    },
    /// `max_agents` in the config file is not positive.
    #[error(
        "{}:{line}: `max_agents` is {value}; set it to a whole number of agent sessions, 1 or more",
        .path.display()
    )]
    NotPositive {
        /// The config file.
        path: PathBuf,
        /// The line of `max_agents`.
        line: usize,
        /// The value found.
        value: i64,
    },
}

/// Works out the cap: the flag, else `REINS_MAX_AGENTS`, else the user config file, else
/// [`default_max`]. A value that is not a positive number is an error naming where it came
/// from.
pub(crate) fn resolve_max(
    flag: Option<u32>,
    env: impl Fn(&str) -> Option<String>,
    config: Option<&Path>,
) -> Result<(usize, Source), MaxAgentsError> {
    if let Some(n) = flag {
        return Ok((n.max(1) as usize, Source::Flag));
    }
    if let Some(text) = env("REINS_MAX_AGENTS").filter(|t| !t.trim().is_empty()) {
        return match text.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok((n, Source::Env)),
            _ => Err(MaxAgentsError::Env(text)),
        };
    }
    if let Some(path) = config {
        if let Some(n) = read_config(path)? {
            return Ok((n, Source::Config));
        }
    }
    Ok((default_max(), Source::Memory))
}

/// The user config file: `config.yaml` in the user-global folder.
pub(crate) fn config_path() -> Option<PathBuf> {
    crate::workflow::discover::user_dir(|k| std::env::var_os(k)).map(|d| d.join("config.yaml"))
}

/// The settings of the user config file reins reads here; other keys are left alone.
#[derive(Debug, Default, serde::Deserialize)]
struct UserConfig {
    #[serde(default)]
    max_agents: Option<i64>,
}

/// `max_agents` from the config file, if the file exists and sets it.
fn read_config(path: &Path) -> Result<Option<usize>, MaxAgentsError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(MaxAgentsError::Read {
                path: path.into(),
                source,
            })
        }
    };
    if text.len() > 64 * 1024 {
        return Err(MaxAgentsError::TooLarge(path.into()));
    }
    if text.trim().is_empty() {
        return Ok(None);
    }
    let config: UserConfig =
        serde_saphyr::from_str(&text).map_err(|source| MaxAgentsError::Parse {
            path: path.into(),
            source: Box::new(source),
        })?;
    match config.max_agents {
        None => Ok(None),
        Some(n) if n > 0 => Ok(Some(usize::try_from(n).unwrap_or(usize::MAX))),
        Some(value) => {
            let line = text
                .lines()
                .position(|l| l.trim_start().starts_with("max_agents"))
                .map_or(1, |i| i + 1);
            Err(MaxAgentsError::NotPositive {
                path: path.into(),
                line,
                value,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_shared_by_every_holder_and_freed_on_drop() {
        let tmp = tempfile::tempdir().unwrap();
        let slots = AgentSlots::new(tmp.path().join("agent-slots"), 2);
        std::fs::create_dir_all(slots.dir()).unwrap();
        // Another handle on the same folder (another run) counts against the same cap.
        let other = AgentSlots::new(tmp.path().join("agent-slots"), 2);
        let a = slots.try_acquire().unwrap().expect("first slot");
        let b = other.try_acquire().unwrap().expect("second slot");
        assert!(slots.try_acquire().unwrap().is_none());
        drop(a);
        let c = other.try_acquire().unwrap().expect("freed slot");
        drop((b, c));
    }

    #[test]
    fn the_cap_comes_from_the_flag_then_the_environment_then_the_config() {
        let tmp = tempfile::tempdir().unwrap();
        let config = tmp.path().join("config.yaml");
        std::fs::write(&config, "max_agents: 3\nother: kept\n").unwrap();
        let env = |v: Option<&'static str>| move |_: &str| v.map(str::to_string);
        assert_eq!(
            resolve_max(Some(5), env(Some("7")), Some(&config)).unwrap(),
            (5, Source::Flag)
        );
        assert_eq!(
            resolve_max(None, env(Some("7")), Some(&config)).unwrap(),
            (7, Source::Env)
        );
        assert_eq!(
            resolve_max(None, env(None), Some(&config)).unwrap(),
            (3, Source::Config)
        );
        let (n, source) = resolve_max(None, env(None), None).unwrap();
        assert_eq!(source, Source::Memory);
        assert!((1..=MOST_AGENTS_BY_DEFAULT).contains(&n));
        let e = resolve_max(None, env(Some("lots")), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("REINS_MAX_AGENTS is `lots`"), "{e}");
        std::fs::write(&config, "max_agents: 0\n").unwrap();
        let e = resolve_max(None, env(None), Some(&config))
            .unwrap_err()
            .to_string();
        assert!(e.contains("config.yaml:1: `max_agents` is 0"), "{e}");
    }
}
