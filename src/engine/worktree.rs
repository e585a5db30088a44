//! Isolated runs: a fresh git worktree on a new branch, so parallel runs and the user's own
//! checkout never collide.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A worktree created for a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Worktree {
    /// Where it is checked out.
    pub path: PathBuf,
    /// The branch it is on, `reins/<workflow>-<run-id>`.
    pub branch: String,
    /// The commit it was cut from.
    pub base_commit: String,
}

pub(crate) use crate::store::run::branch_name;

/// Why a worktree could not be created or removed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WorktreeError {
    /// The repository has no commit to branch from.
    #[error(
        "the repository has no commit yet; `--worktree` needs one to branch from (make a first commit)"
    )]
    NoCommit,
    /// `--base` names nothing in the repository.
    #[error("`{0}` is not a branch, tag or commit of this repository")]
    UnknownBase(String),
    /// The folder of worktrees cannot be created.
    #[error("cannot create {}: {source}", .path.display())]
    CreateDir {
        /// The folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `git worktree add` failed.
    #[error("cannot create the worktree: {0}")]
    Add(#[source] Box<WorktreeError>),
    /// The worktree has uncommitted changes (and removing was not forced).
    #[error(
        "{} has uncommitted changes; commit them on its branch, or pass --force to discard them",
        .0.display()
    )]
    Dirty(PathBuf),
    /// git cannot be started.
    #[error("cannot run git: {0}")]
    Spawn(#[source] std::io::Error),
    /// git failed; its message.
    #[error("{0}")]
    Git(String),
}

/// Where the worktree of a run lives: `<repo>/.reins/worktrees/<run-id>`.
pub(crate) fn path_for(repo_root: &Path, run_id: &str) -> PathBuf {
    repo_root.join(".reins").join("worktrees").join(run_id)
}

/// The commit checked out in `dir`, if it is in a git repository with a commit.
pub(crate) fn head(dir: &Path) -> Option<String> {
    git(dir, &["rev-parse", "--verify", "--quiet", "HEAD^{commit}"]).ok()
}

/// Creates a worktree for a run on a new branch cut from `base` (default `HEAD`).
pub(crate) fn create(
    repo_root: &Path,
    workflow: &str,
    run_id: &str,
    base: Option<&str>,
) -> Result<Worktree, WorktreeError> {
    let base = base.unwrap_or("HEAD");
    let base_commit = git(
        repo_root,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{base}^{{commit}}"),
        ],
    )
    .map_err(|_| match base {
        "HEAD" => WorktreeError::NoCommit,
        other => WorktreeError::UnknownBase(other.to_string()),
    })?;
    let branch = branch_name(workflow, run_id);
    let path = path_for(repo_root, run_id);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| WorktreeError::CreateDir {
            path: parent.to_path_buf(),
            source: e,
        })?;
    }
    git(
        repo_root,
        &[
            "worktree",
            "add",
            "--quiet",
            "-b",
            &branch,
            &path.to_string_lossy(),
            &base_commit,
        ],
    )
    .map_err(|e| WorktreeError::Add(Box::new(e)))?;
    Ok(Worktree {
        path,
        branch,
        base_commit,
    })
}

/// True when the worktree has uncommitted changes (tracked or untracked files).
pub(crate) fn is_dirty(path: &Path) -> Result<bool, WorktreeError> {
    git(path, &["status", "--porcelain", "--untracked-files=normal"])
        .map(|out| !out.trim().is_empty())
}

/// Removes a worktree; its branch (and the commits on it) stay. Refuses a dirty worktree
/// unless `force`.
pub(crate) fn remove(repo_root: &Path, path: &Path, force: bool) -> Result<(), WorktreeError> {
    if !path.exists() {
        // Already gone: let git forget about it.
        let _ = git(repo_root, &["worktree", "prune"]);
        return Ok(());
    }
    if !force && is_dirty(path)? {
        return Err(WorktreeError::Dirty(path.to_path_buf()));
    }
    let path_text = path.to_string_lossy();
    let mut args = vec!["worktree", "remove"];
    if force {
        args.push("--force");
    }
    args.push(&path_text);
    git(repo_root, &args).map(|_| ())
}

fn git(dir: &Path, args: &[&str]) -> Result<String, WorktreeError> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .map_err(WorktreeError::Spawn)?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        Err(WorktreeError::Git(
            err.trim().trim_start_matches("fatal: ").to_string(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let run = |args: &[&str]| {
            let ok = Command::new("git")
                .args(args)
                .current_dir(dir.path())
                .output()
                .unwrap()
                .status
                .success();
            assert!(ok, "git {args:?}");
        };
        run(&["init", "-q", "-b", "main"]);
        run(&[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "first",
        ]);
        dir
    }

    #[test]
    fn create_commit_and_remove() {
        let dir = repo();
        let wt = create(dir.path(), "plan to pr", "r1", None).unwrap();
        assert_eq!(wt.branch, "reins/plan-to-pr-r1");
        assert!(wt.path.join(".git").exists());
        assert!(!is_dirty(&wt.path).unwrap());
        std::fs::write(wt.path.join("new.txt"), "x").unwrap();
        assert!(is_dirty(&wt.path).unwrap());
        let err = remove(dir.path(), &wt.path, false).unwrap_err().to_string();
        assert!(err.contains("uncommitted changes"), "{err}");
        remove(dir.path(), &wt.path, true).unwrap();
        assert!(!wt.path.exists());
        // The branch survives its worktree.
        assert!(git(
            dir.path(),
            &["rev-parse", "--verify", "reins/plan-to-pr-r1"]
        )
        .is_ok());
    }

    #[test]
    fn bad_base_is_a_clear_error() {
        let dir = repo();
        let err = create(dir.path(), "wf", "r2", Some("no-such-branch"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`no-such-branch` is not a branch"), "{err}");
    }
}
