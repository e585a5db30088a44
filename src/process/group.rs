//! A node's processes as one unit: its process group, the descendants that left it, the
//! registry of nodes still running, and the one stop policy every node kind follows.
//!
//! Stopping is always the same: TERM to the group (and to every descendant found outside it),
//! up to the grace period for them to go, then KILL. When the leader exits by itself, what is
//! left of its group is stopped the same way.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, killpg, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;

use super::sys;

/// How long members may linger after KILL (a zombie whose parent never reaps it) before reins
/// stops waiting for them.
pub(super) const KILL_LINGER: Duration = Duration::from_secs(1);

/// When the process layer must stop a running group: what the engine's cancellation tells it.
pub trait StopRequest: Sync {
    /// Resolves when the group should be stopped; `true` when it must be killed at once.
    fn requested(&self) -> impl Future<Output = bool> + Send;
    /// Resolves when the group must be killed at once.
    fn forced(&self) -> impl Future<Output = ()> + Send;
}

/// Never asks for a stop.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoStop;

impl StopRequest for NoStop {
    async fn requested(&self) -> bool {
        std::future::pending().await
    }
    async fn forced(&self) {
        std::future::pending().await
    }
}

static NEXT_TAG: AtomicU64 = AtomicU64::new(1);
/// Tags of the nodes whose processes are running, with their leader's pid (0 while starting).
static LIVE: Mutex<Option<HashMap<u64, i32>>> = Mutex::new(None);

fn live<T>(f: impl FnOnce(&mut HashMap<u64, i32>) -> T) -> T {
    let mut guard = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    f(guard.get_or_insert_with(HashMap::new))
}

/// A node's processes, registered as running until dropped. Its tag is in every descendant's
/// environment ([`super::command::TAG_VAR`]).
#[derive(Debug)]
pub(super) struct Membership {
    tag: u64,
}

impl Membership {
    pub(super) fn new() -> Membership {
        let tag = NEXT_TAG.fetch_add(1, Ordering::Relaxed);
        live(|l| l.insert(tag, 0));
        Membership { tag }
    }

    pub(super) fn tag(&self) -> u64 {
        self.tag
    }

    pub(super) fn started(&self, pid: i32) {
        live(|l| l.insert(self.tag, pid));
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        live(|l| l.remove(&self.tag));
    }
}

/// True when a process of tag `found` must be stopped with the node of tag `ending`: it is
/// that node's, or a node's that has ended.
#[cfg_attr(
    any(not(target_os = "linux"), feature = "portable-process"),
    allow(dead_code)
)]
pub(super) fn stops_with(found: u64, ending: u64) -> bool {
    found == ending
        || found != 0
            && found < NEXT_TAG.load(Ordering::Relaxed)
            && live(|l| !l.contains_key(&found))
}

/// Process groups of nodes (the most recent few thousand): a zombie child of reins in one of
/// them is a node's orphan that reins, as its subreaper, must reap.
static NODE_GROUPS: Mutex<Vec<i32>> = Mutex::new(Vec::new());
const NODE_GROUPS_KEPT: usize = 4096;

fn remember_group(pgid: i32) {
    let mut groups = NODE_GROUPS.lock().unwrap_or_else(|e| e.into_inner());
    if groups.len() >= NODE_GROUPS_KEPT {
        groups.drain(..NODE_GROUPS_KEPT / 2);
    }
    groups.push(pgid);
}

/// True when `pgid` was a node's process group.
#[cfg_attr(
    any(not(target_os = "linux"), feature = "portable-process"),
    allow(dead_code)
)]
pub(super) fn was_node_group(pgid: i32) -> bool {
    NODE_GROUPS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains(&pgid)
}

/// True when `pid` leads the processes of a node still running (its own code reaps it).
#[cfg_attr(
    any(not(target_os = "linux"), feature = "portable-process"),
    allow(dead_code)
)]
pub(super) fn is_running_leader(pid: i32) -> bool {
    live(|l| l.values().any(|&p| p == pid))
}

/// At the end of a run: stops what its nodes left running outside their groups (TERM, up to
/// two seconds, KILL), and reaps it.
pub(super) fn sweep_escaped() {
    if !sys::may_have_escaped() {
        return;
    }
    let pids: Vec<Pid> = sys::escaped(0).into_iter().map(Pid::from_raw).collect();
    if pids.is_empty() {
        return;
    }
    let left = |pids: &[Pid]| -> Vec<Pid> {
        pids.iter()
            .copied()
            .filter(|&pid| {
                let _ = waitpid(pid, Some(WaitPidFlag::WNOHANG));
                sys::running(pid)
            })
            .collect()
    };
    for &pid in &pids {
        let _ = kill(pid, Signal::SIGTERM);
    }
    let started = Instant::now();
    let mut pids = left(&pids);
    while !pids.is_empty() && started.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(20));
        pids = left(&pids);
    }
    for &pid in &pids {
        let _ = kill(pid, Signal::SIGKILL);
    }
    let started = Instant::now();
    while !pids.is_empty() && started.elapsed() < KILL_LINGER {
        std::thread::sleep(Duration::from_millis(10));
        pids = left(&pids);
    }
}

/// True when some other node than `tag` is running.
fn others_running(tag: u64) -> bool {
    live(|l| l.keys().any(|&t| t != tag))
}

/// A process group being watched and, when asked, stopped.
#[derive(Debug)]
pub(super) struct Group {
    pgid: Pid,
    tag: u64,
    term_at: Option<Instant>,
    killed_at: Option<Instant>,
    /// Descendants found outside the group (Linux: reins is their subreaper).
    escaped: Vec<Pid>,
}

impl Group {
    pub(super) fn new(pgid: i32, membership: &Membership) -> Group {
        remember_group(pgid);
        Group {
            pgid: Pid::from_raw(pgid),
            tag: membership.tag,
            term_at: None,
            killed_at: None,
            escaped: Vec::new(),
        }
    }

    /// Sends TERM to the group and the escaped descendants (once).
    pub(super) fn term(&mut self) {
        if self.term_at.is_none() && self.killed_at.is_none() {
            self.signal(Signal::SIGTERM);
            self.term_at = Some(Instant::now());
        }
    }

    /// Sends KILL to the group and the escaped descendants.
    pub(super) fn kill(&mut self) {
        self.signal(Signal::SIGKILL);
        self.killed_at.get_or_insert_with(Instant::now);
    }

    pub(super) fn killed(&self) -> bool {
        self.killed_at.is_some()
    }

    /// When KILL is due: the grace period after TERM.
    pub(super) fn kill_due(&self, grace: Duration) -> Option<Instant> {
        match (self.term_at, self.killed_at) {
            (Some(t), None) => Some(t + grace),
            _ => None,
        }
    }

    fn signal(&self, signal: Signal) {
        let _ = killpg(self.pgid, signal);
        for &pid in &self.escaped {
            let _ = kill(pid, signal);
        }
    }

    /// True while a member of the group or an escaped descendant is left (reaping those that
    /// are reins' children: as a subreaper, reins adopts the group's orphans, and a zombie
    /// still counts as a member).
    fn alive(&mut self) -> bool {
        self.escaped.retain(|&pid| {
            let _ = waitpid(pid, Some(WaitPidFlag::WNOHANG));
            sys::running(pid)
        });
        let members = Pid::from_raw(-self.pgid.as_raw());
        while let Ok(
            nix::sys::wait::WaitStatus::Exited(..) | nix::sys::wait::WaitStatus::Signaled(..),
        ) = waitpid(members, Some(WaitPidFlag::WNOHANG))
        {}
        !self.escaped.is_empty() || !matches!(killpg(self.pgid, None), Err(Errno::ESRCH))
    }

    /// Looks for descendants that left the group, when they may exist: always when the node
    /// was stopped or its output is still held open, else only when no other node runs (then
    /// the check is one system call; a later node's end finds what this one left).
    pub(super) fn find_escaped(&mut self, output_open: bool) {
        let stopped = self.term_at.is_some() || self.killed_at.is_some();
        if !(stopped || output_open || !others_running(self.tag)) || !sys::may_have_escaped() {
            return;
        }
        for pid in sys::escaped(self.tag) {
            let pid = Pid::from_raw(pid);
            if self.escaped.contains(&pid) {
                continue;
            }
            self.escaped.push(pid);
            // Already being stopped: the newcomer gets the same signal, and a grace period of
            // its own after TERM.
            if self.killed_at.is_some() {
                let _ = kill(pid, Signal::SIGKILL);
            } else if self.term_at.is_some() {
                let _ = kill(pid, Signal::SIGTERM);
                self.term_at = Some(Instant::now());
            }
        }
    }

    /// After the leader was reaped: stops what is left (the group, the escaped descendants)
    /// with TERM, the grace period, then KILL; a forced stop KILLs at once. Returns when
    /// nothing is left, or when killed members linger past [`KILL_LINGER`].
    pub(super) async fn settle(&mut self, grace: Duration, stop: &impl StopRequest) {
        loop {
            if !self.alive() {
                return;
            }
            self.term();
            if self.killed_at.is_some_and(|k| k.elapsed() > KILL_LINGER) {
                return;
            }
            if self
                .kill_due(grace)
                .is_some_and(|due| Instant::now() >= due)
            {
                self.kill();
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                _ = stop.forced(), if !self.killed() => self.kill(),
            }
        }
    }
}
