//! What a node (or anyone with the user's rights) may leave in the run directory cannot steer
//! reins: planted symlinks are never followed, a `.reins` linked out of the repository is
//! refused, a run is published only once it can be resumed, `clean` respects the run lock, and
//! a node's `outputs` must really be inside the artifacts folder.

mod support;

use std::os::unix::fs::symlink;
use std::process::Command;
use std::time::Duration;

use support::run_repo::{process_alive, Repo};

fn git(repo: &Repo, args: &[&str]) {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .current_dir(repo.path())
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {out:?}");
}

#[test]
fn a_script_file_planted_as_a_link_is_not_written_through() {
    let repo = Repo::new().file("victim.txt", "keep\n").workflow(
        "plant",
        r#"nodes:
  - id: a
    bash: |
      mkdir -p "$REINS_RUN_DIR/nodes/b"
      ln -s "$PWD/victim.txt" "$REINS_RUN_DIR/nodes/b/command.sh"
  - id: b
    depends_on: [a]
    bash: echo overwritten-through-a-link
"#,
    );
    repo.reins(["run", "plant"]).run().code(0);
    assert_eq!(repo.read("victim.txt"), "keep\n");
}

#[test]
fn an_event_log_replaced_by_a_link_is_refused() {
    let repo = Repo::new().workflow(
        "gated",
        "nodes:\n  - id: gate\n    approval: Go?\n  - {id: after, depends_on: [gate], bash: echo after}\n",
    );
    repo.reins(["run", "gated"]).run().code(3);
    let run = repo.the_run();
    let events = repo.run_dir(&run).join("events.jsonl");
    let forged = repo.join("forged.jsonl");
    std::fs::copy(&events, &forged).unwrap();
    std::fs::remove_file(&events).unwrap();
    symlink(&forged, &events).unwrap();
    let out = repo.reins(["resume", &run]).run();
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("is a symbolic link"), "{}", out.stderr);
    let out = repo.reins(["approve", &run]).run();
    assert_ne!(out.code, 0);
    assert!(!std::fs::read_to_string(&forged)
        .unwrap()
        .contains("approval_answered"));
}

#[test]
fn a_reins_folder_linked_out_of_the_repository_is_refused() {
    let outside = tempfile::tempdir().unwrap();
    let repo = Repo::new().workflow("hello", "nodes: [{id: a, bash: echo hi}]\n");
    symlink(outside.path(), repo.join(".reins")).unwrap();
    let out = repo.reins(["run", "hello"]).run();
    out.code(2);
    assert!(
        out.stderr.contains("is a symbolic link") && out.stderr.contains("outside the repository"),
        "{}",
        out.stderr
    );
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
}

#[test]
fn a_run_killed_before_it_can_be_resumed_leaves_no_run() {
    // `git worktree add` hangs (a shim on PATH), so reins is killed while it prepares an
    // isolated run: after its id is chosen, before `run.json` is published.
    let repo = Repo::new()
        .workflow("hello", "nodes: [{id: a, bash: echo hi}]\n")
        .file(
            ".test-bin/git",
            "#!/bin/sh\nif [ \"$1\" = worktree ] && [ \"$2\" = add ]; then echo $$ > \"$SHIM_PID\"; sleep 30; exit 1; fi\nexec \"$REAL_GIT\" \"$@\"\n",
        );
    git(&repo, &["add", ".workflows"]);
    git(&repo, &["commit", "-q", "-m", "init"]);
    let shim = repo.join(".test-bin/git");
    std::fs::set_permissions(&shim, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let real_git = which_git();
    let path = format!(
        "{}:{}",
        repo.join(".test-bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let pid_file = repo.join("shim.pid");
    let running = repo
        .reins(["run", "hello", "--worktree"])
        .env("PATH", &path)
        .env("REAL_GIT", &real_git)
        .env("SHIM_PID", pid_file.to_str().unwrap())
        .spawn();
    // The shell creates the file before it writes the pid: wait for the pid itself.
    repo.wait_for("git worktree add", Duration::from_secs(20), || {
        std::fs::read_to_string(&pid_file).is_ok_and(|s| s.trim().parse::<i32>().is_ok())
    });
    running.signal(nix::sys::signal::Signal::SIGKILL);
    running.wait();
    let shim_pid = repo.pid("shim.pid");
    if process_alive(shim_pid) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(shim_pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let out = repo.reins(["status", "last"]).run();
    out.code(2);
    assert!(out.stderr.contains("no runs yet"), "{}", out.stderr);
    let out = repo.reins(["runs"]).run();
    assert!(out.stdout.contains("no runs yet"), "{}", out.stdout);
}

fn which_git() -> String {
    let out = Command::new("sh")
        .args(["-c", "command -v git"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn clean_keeps_the_worktree_of_a_run_being_resumed_and_says_what_removing_costs() {
    let repo = Repo::new().workflow("broken", "nodes: [{id: a, bash: exit 1}]\n");
    git(&repo, &["add", ".workflows"]);
    git(&repo, &["commit", "-q", "-m", "init"]);
    repo.reins(["run", "broken", "--worktree"]).run().code(1);
    let run = repo.the_run();
    let worktree = repo.join(&format!(".reins/worktrees/{run}"));
    assert!(worktree.is_dir());
    // A `reins resume` holds the run's lock before it records anything.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(repo.run_dir(&run).join("lock"))
        .unwrap();
    let held = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|(_, e)| e)
        .unwrap();
    let out = repo.reins(["clean", "--force"]).run();
    out.code(0);
    assert!(
        out.stdout.contains("is executing the run"),
        "{}",
        out.stdout
    );
    assert!(
        worktree.is_dir(),
        "the worktree of a run being resumed stays"
    );
    drop(held);
    let out = repo.reins(["clean", "--force"]).run();
    out.code(0);
    assert!(
        out.stdout
            .contains(&format!("run {run} can no longer be resumed")),
        "{}",
        out.stdout
    );
    assert!(!worktree.exists());
}

#[test]
fn outputs_are_a_contract_on_bash_nodes_and_a_link_out_does_not_satisfy_it() {
    let repo = Repo::new().file("secret.txt", "s\n").workflow(
        "outs",
        r#"nodes:
  - id: writes
    bash: echo plan > "$REINS_ARTIFACTS/plan.md"
    outputs: [plan.md]
  - id: forgets
    bash: echo nothing
    outputs: [report.md]
  - id: links-out
    bash: ln -s "$PWD/secret.txt" "$REINS_ARTIFACTS/stolen.md"
    outputs: [stolen.md]
  - id: loops
    loop:
      bash: echo "$REINS_LOOP_ITERATION" | tee "$REINS_ARTIFACTS/loop-$REINS_LOOP_ITERATION.md"
      until: "{{eq output '2'}}"
      max_iterations: 3
    outputs: [loop-2.md, loop-3.md]
    continue_on_error: true
"#,
    );
    repo.reins(["run", "outs"]).run().code(1);
    let run = repo.the_run();
    assert_eq!(repo.node(&run, "writes")["status"], "success");
    let error = |id: &str| {
        let node = repo.node(&run, id);
        assert_eq!(node["status"], "failed", "{node:#}");
        node["error"].as_str().unwrap().to_string()
    };
    assert!(error("forgets").contains("`report.md` does not exist"));
    assert!(error("links-out").contains("outside the artifacts folder"));
    let e = error("loops");
    assert!(
        e.contains("`loop-3.md` does not exist") && !e.contains("loop-2"),
        "{e}"
    );
}
