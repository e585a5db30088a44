//! Isolated runs: parallel `--worktree` runs, `reins runs` shows branches, `reins clean`.

mod support;

use std::process::Command;
use std::time::Duration;

use support::run_repo::Repo;

fn git(repo: &Repo, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .current_dir(repo.path())
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {:?}", out);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn have_git() -> bool {
    Command::new("git").arg("--version").output().is_ok()
}

/// Each run writes a file named after its run id and commits it on its branch.
const COMMIT: &str = r#"nodes:
  - id: work
    bash: |
      echo {{run.id}} > out-{{run.id}}.txt
      git -c user.name=t -c user.email=t@example.com add out-{{run.id}}.txt
      git -c user.name=t -c user.email=t@example.com commit -q -m work-of-{{run.id}}
      git rev-parse --abbrev-ref HEAD
"#;

#[test]
fn parallel_worktree_runs_commit_without_touching_the_main_checkout() {
    if !have_git() {
        return;
    }
    let repo = Repo::new().workflow("commit", COMMIT);
    git(&repo, &["add", ".workflows"]);
    git(&repo, &["commit", "-q", "-m", "init"]);
    let head = git(&repo, &["rev-parse", "HEAD"]);
    let a = repo.reins(["run", "commit", "--worktree"]).spawn();
    let b = repo.reins(["run", "commit", "--worktree"]).spawn();
    a.wait().code(0);
    b.wait().code(0);
    let ids = repo.run_ids();
    assert_eq!(ids.len(), 2);
    for id in &ids {
        let branch = repo.node(id, "work")["output"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(branch, format!("reins/commit-{id}"));
        let files = git(&repo, &["show", "--name-only", "--format=", &branch]);
        assert_eq!(files.trim(), format!("out-{id}.txt"));
        assert!(
            !repo.exists(&format!("out-{id}.txt")),
            "main checkout untouched"
        );
    }
    assert_eq!(git(&repo, &["rev-parse", "HEAD"]), head);
    assert_eq!(
        git(&repo, &["status", "--porcelain", "--untracked-files=no"]).trim(),
        ""
    );

    // `reins runs` shows the branches.
    let out = repo.reins(["runs"]).run();
    out.code(0);
    assert!(out.stdout.contains("BRANCH"), "{}", out.stdout);
    for id in &ids {
        assert!(
            out.stdout.contains(&format!("reins/commit-{id}")),
            "{}",
            out.stdout
        );
    }

    // `reins clean` keeps a dirty worktree unless --force; branches stay.
    let dirty = repo.join(&format!(".reins/worktrees/{}/scratch.txt", ids[0]));
    std::fs::write(&dirty, "uncommitted").unwrap();
    let out = repo.reins(["clean", "--dry-run"]).run();
    assert!(out.stdout.contains("would remove"), "{}", out.stdout);
    assert!(repo.exists(&format!(".reins/worktrees/{}", ids[1])));
    let out = repo.reins(["clean"]).run();
    out.code(1);
    assert!(out.stdout.contains("uncommitted changes"), "{}", out.stdout);
    assert!(repo.exists(&format!(".reins/worktrees/{}", ids[0])));
    assert!(!repo.exists(&format!(".reins/worktrees/{}", ids[1])));
    repo.reins(["clean", "--force"]).run().code(0);
    assert!(!repo.exists(&format!(".reins/worktrees/{}", ids[0])));
    for id in &ids {
        git(
            &repo,
            &[
                "rev-parse",
                "--verify",
                &format!("refs/heads/reins/commit-{id}"),
            ],
        );
    }
}

#[test]
fn clean_never_touches_a_waiting_run() {
    if !have_git() {
        return;
    }
    let repo = Repo::new().workflow("gated", "nodes:\n  - id: gate\n    approval: Go?\n");
    git(&repo, &["add", ".workflows"]);
    git(&repo, &["commit", "-q", "-m", "init"]);
    repo.reins(["run", "gated", "--worktree"])
        .timeout(Duration::from_secs(60))
        .run()
        .code(3);
    let run = repo.the_run();
    repo.reins(["clean", "--force"]).run().code(0);
    assert!(repo.exists(&format!(".reins/worktrees/{run}")));
}
