//! `reins clean`: remove the worktrees of finished isolated runs.
//!
//! Only runs that ended (`success`, `failed`, `cancelled`) are touched; a running, waiting or
//! interrupted run keeps its worktree (it may be resumed), and so does any run whose lock a live
//! process holds (a `reins resume` that has not recorded `run_resumed` yet). A worktree with
//! uncommitted changes is kept unless `--force`. Branches (and the commits on them) always
//! stay. Removing the worktree of a failed or cancelled run says that the run can no longer be
//! resumed.

use super::args::CleanArgs;
use super::run::{current_store, fail, say};
use super::runs::branch;
use crate::engine::worktree;
use crate::exit;
use crate::store::RunStatus;

/// Runs `reins clean`.
pub fn run(args: CleanArgs) -> i32 {
    let store = match current_store() {
        Ok(s) => s,
        Err(code) => return code,
    };
    let runs = match store.list() {
        Ok(r) => r,
        Err(e) => return fail(&format!("cannot list runs: {e}"), exit::NODE_FAILED),
    };
    let (mut removed, mut kept, mut busy) = (0, 0, 0);
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
        let branch = branch(r).unwrap_or_default();
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
                    kept += 1;
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
    if removed == 0 && kept == 0 && busy == 0 {
        say!("no finished run has a worktree to remove");
    }
    if kept > 0 {
        exit::NODE_FAILED
    } else {
        exit::SUCCESS
    }
}
