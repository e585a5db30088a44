//! `reins clean`: remove the worktrees of finished isolated runs; `reins clean --runs`: remove
//! the folders of finished runs.
//!
//! Only runs that ended (`success`, `failed`, `cancelled`) are touched; a running, waiting or
//! interrupted run keeps its worktree (it may be resumed), and so does any run whose lock a live
//! process holds (a `reins resume` that has not recorded `run_resumed` yet). A worktree with
//! uncommitted changes is kept unless `--force`. Branches (and the commits on them) always
//! stay. Removing the worktree of a failed or cancelled run says that the run can no longer be
//! resumed.
//!
//! Both also sweep the half-built run folders (`runs/.new-*`) a crash while creating a run left
//! behind, once they are a minute old and no process holds their lock.

use super::args::CleanArgs;
use super::common::{current_store, say};
use super::error::{self, Error, Outcome};
use crate::engine::worktree;
use crate::store::{RunLock, RunStatus, RunSummary, Store, Swept, STAGED_MIN_AGE};

/// Runs `reins clean`.
pub(super) fn run(args: CleanArgs) -> error::Result {
    if args.runs {
        return clean_runs(&args);
    }
    let store = current_store()?;
    let (mut removed, mut kept) = sweep_staged(&store, args.dry_run);
    let runs = match store.list() {
        Ok(r) => r,
        Err(e) => return Err(Error::internal(format!("cannot list runs: {e}"))),
    };
    let mut busy = 0;
    let mut dirty = 0;
    for r in &runs {
        let Some(path) = r.manifest.as_ref().and_then(|m| m.worktree.clone()) else {
            continue;
        };
        if !path.exists() {
            continue;
        }
        if !matches!(
            r.status,
            RunStatus::Success | RunStatus::Failed | RunStatus::Cancelled
        ) {
            continue;
        }
        if let Some(owner) = crate::store::lock::live_owner(&r.run.lock_path()) {
            say!(
                "kept {} (run {}): pid {} is executing the run",
                path.display(),
                r.run.id,
                owner.pid
            );
            busy += 1;
            continue;
        }
        let branch = r.branch().unwrap_or_default();
        let last_word = if r.status == RunStatus::Success {
            String::new()
        } else {
            format!("; run {} can no longer be resumed", r.run.id)
        };
        if !args.force {
            match worktree::is_dirty(&path) {
                Ok(false) => {}
                Ok(true) => {
                    say!(
                        "kept {} (run {}): uncommitted changes; commit them on {branch}, or pass --force to discard them",
                        path.display(),
                        r.run.id
                    );
                    dirty += 1;
                    continue;
                }
                Err(e) => {
                    say!("kept {} (run {}): {e}", path.display(), r.run.id);
                    kept += 1;
                    continue;
                }
            }
        }
        if args.dry_run {
            say!(
                "would remove {} (run {}, branch {branch} stays){last_word}",
                path.display(),
                r.run.id
            );
            removed += 1;
            continue;
        }
        match worktree::remove(store.root(), &path, args.force) {
            Ok(()) => {
                say!(
                    "removed {} (run {}, branch {branch} stays){last_word}",
                    path.display(),
                    r.run.id
                );
                removed += 1;
            }
            Err(e) => {
                eprintln!("error: cannot remove {}: {e}", path.display());
                kept += 1;
            }
        }
    }
    if removed == 0 && kept == 0 && dirty == 0 && busy == 0 {
        say!("no finished run has a worktree to remove");
    }
    if kept > 0 {
        Err(Error::internal(format!(
            "{kept} could not be removed (see above)"
        )))
    } else if dirty > 0 {
        // Kept to protect the user's work: not a failure of reins, but not done either.
        Ok(Outcome::Failed)
    } else {
        Ok(Outcome::Success)
    }
}

/// Removes the half-built run folders a crash left (see [`Store::sweep_staged`]), saying so;
/// how many were removed and how many kept.
fn sweep_staged(store: &Store, dry_run: bool) -> (usize, usize) {
    let swept = match store.sweep_staged(STAGED_MIN_AGE, dry_run) {
        Ok(swept) => swept,
        Err(e) => {
            eprintln!("error: cannot look for half-built runs: {e}");
            return (0, 1);
        }
    };
    let (mut removed, mut kept) = (0, 0);
    for (path, outcome) in swept {
        let shown = crate::source::display_path(&path);
        match outcome {
            Swept::Removed if dry_run => {
                say!(
                    "would remove {}: a run a crash left half-built",
                    shown.display()
                );
                removed += 1;
            }
            Swept::Removed => {
                say!("removed {}: a run a crash left half-built", shown.display());
                removed += 1;
            }
            Swept::Busy => {
                // Not a failure: it becomes a run, or its own process removes it.
                say!(
                    "kept {}: a reins process is creating that run",
                    shown.display()
                );
            }
            Swept::Failed(e) => {
                eprintln!("error: cannot remove {}: {e}", shown.display());
                kept += 1;
            }
        }
    }
    (removed, kept)
}

/// True for a run that ended and can never continue by itself: `success`, `failed`,
/// `cancelled`. Running, waiting and interrupted runs may still be resumed or answered.
fn finished(r: &RunSummary) -> bool {
    matches!(
        r.status,
        RunStatus::Success | RunStatus::Failed | RunStatus::Cancelled
    )
}

/// `reins clean --runs [--older-than AGE] [--keep N]`: removes the folders of finished runs,
/// oldest first, keeping the `N` most recent finished ones and those that ended less than AGE
/// ago. A run whose worktree still exists keeps its folder (`reins clean` removes the worktree
/// first); a run whose lock is held is never touched.
fn clean_runs(args: &CleanArgs) -> error::Result {
    let store = current_store()?;
    let runs = match store.list() {
        Ok(r) => r,
        Err(e) => return Err(Error::internal(format!("cannot list runs: {e}"))),
    };
    let now = std::time::SystemTime::now();
    let mut done: Vec<&RunSummary> = runs.iter().filter(|r| finished(r)).collect();
    // Newest first, so `--keep N` keeps the first N.
    done.sort_by_key(|r| {
        std::cmp::Reverse((r.state.finished_at.or(r.started_at()), r.run.id.clone()))
    });
    let keep = args.keep.unwrap_or(0);
    let (mut removed, mut kept) = sweep_staged(&store, args.dry_run);
    for r in done.into_iter().skip(keep) {
        let ended = r.state.finished_at.or(r.started_at());
        if let (Some(age), Some(ended)) = (args.older_than, ended) {
            if now.duration_since(ended).unwrap_or_default() < age {
                continue;
            }
        }
        if let Some(wt) = r
            .manifest
            .as_ref()
            .and_then(|m| m.worktree.clone())
            .filter(|p| p.exists())
        {
            say!(
                "kept run {}: its worktree {} still exists (remove it first with `reins clean`)",
                r.run.id,
                crate::source::display_path(&wt).display()
            );
            kept += 1;
            continue;
        }
        let shown = crate::source::display_path(&r.run.path);
        if args.dry_run {
            say!(
                "would remove run {} ({}, {})",
                r.run.id,
                r.status,
                shown.display()
            );
            removed += 1;
            continue;
        }
        // Holding the run's lock: no resume can start while its folder goes.
        let Ok(lock) = RunLock::acquire(&r.run.lock_path(), &r.run.id) else {
            say!("kept run {}: a reins process holds its lock", r.run.id);
            kept += 1;
            continue;
        };
        match std::fs::remove_dir_all(&r.run.path) {
            Ok(()) => {
                say!(
                    "removed run {} ({}, {})",
                    r.run.id,
                    r.status,
                    shown.display()
                );
                removed += 1;
            }
            Err(e) => {
                eprintln!("error: cannot remove {}: {e}", shown.display());
                kept += 1;
            }
        }
        drop(lock);
    }
    if removed == 0 && kept == 0 {
        say!("no finished run to remove");
    }
    if kept > 0 {
        Err(Error::internal(format!(
            "{kept} could not be removed (see above)"
        )))
    } else {
        Ok(Outcome::Success)
    }
}
