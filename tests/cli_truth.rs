//! What the CLI says and offers around runs: a positional input, `--format json`, `--base`,
//! answered-gate status and rejection hints, help texts, suggestions, loop logs, `clean --runs`,
//! `show`, `new --from`, `doctor`, `REINS_LOG`, and the bundled `validate` with quotes.

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::run_repo::Repo;

fn git(repo: &Repo, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .current_dir(repo.path())
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const ONE_INPUT: &str = r#"inputs:
  issue: { required: true }
  extra: { default: "x" }
nodes:
  - id: say
    bash: echo {{inputs.issue}}
"#;

const TWO_INPUTS: &str = r#"inputs:
  a: { required: true }
  b: { required: true }
nodes:
  - id: say
    bash: echo {{inputs.a}} {{inputs.b}}
"#;

const GATED: &str = r#"nodes:
  - id: gate
    approval: "Ship it?"
  - id: after
    depends_on: [gate]
    bash: echo shipped
"#;

#[test]
fn a_value_after_the_workflow_fills_its_only_required_input() {
    let repo = Repo::new()
        .workflow("one", ONE_INPUT)
        .workflow("two", TWO_INPUTS);
    repo.reins(["run", "one", "add is broken"]).run().code(0);
    assert_eq!(repo.node("last", "say")["output"], "add is broken");

    let out = repo.reins(["run", "two", "hello"]).run();
    out.code(2);
    assert!(
        out.stderr.contains("2 required inputs")
            && out.stderr.contains("--input a=... --input b=..."),
        "{}",
        out.stderr
    );
    // With one of the two given, the value fills the other.
    repo.reins(["run", "two", "world", "--input", "a=hello"])
        .run()
        .code(0);
    assert_eq!(repo.node("last", "say")["output"], "hello world");
    // Without it, the message names the missing `--input`.
    let out = repo.reins(["run", "two", "--input", "a=x"]).run();
    out.code(2);
    assert!(out.stderr.contains("--input b=..."), "{}", out.stderr);
}

#[test]
fn run_and_resume_take_format_json_and_keep_json_as_an_alias() {
    let repo = Repo::new().workflow("wf", "nodes: [{id: a, bash: echo hi}]\n");
    for flag in [&["--format", "json"][..], &["--json"][..]] {
        let out = repo.reins(["run", "wf"]).args(flag).run();
        out.code(0);
        let types: Vec<String> = out
            .stdout
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
                v["type"].as_str().unwrap_or_default().to_string()
            })
            .collect();
        assert_eq!(types.first().map(String::as_str), Some("run_started"));
        assert_eq!(types.last().map(String::as_str), Some("run_finished"));
    }
    let out = repo
        .reins(["resume", "last", "--from", "a", "--format", "json"])
        .run();
    out.code(0);
    assert!(
        out.stdout.lines().all(|l| l.starts_with('{')),
        "{}",
        out.stdout
    );
}

#[test]
fn worktree_runs_branch_from_base() {
    let repo = Repo::new().workflow("wf", "nodes: [{id: a, bash: git log -1 --format=%s}]\n");
    repo.write("f.txt", "1\n");
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "on-main"]);
    git(&repo, &["checkout", "-q", "-b", "other"]);
    git(&repo, &["commit", "-q", "--allow-empty", "-m", "on-other"]);
    git(&repo, &["checkout", "-q", "-"]);

    repo.reins(["run", "wf", "--worktree", "--base", "other"])
        .run()
        .code(0);
    assert_eq!(repo.node("last", "a")["output"], "on-other");
    repo.reins(["run", "wf", "--worktree"]).run().code(0);
    assert_eq!(repo.node("last", "a")["output"], "on-main");

    let out = repo.reins(["run", "wf", "--base", "other"]).run();
    out.code(2);
    assert!(out.stderr.contains("add `--worktree`"), "{}", out.stderr);
    let out = repo
        .reins(["run", "wf", "--worktree", "--base", "no-such-branch"])
        .run();
    out.code(2);
    assert!(
        out.stderr.contains("`no-such-branch` is not a branch"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_gate_answered_while_nothing_runs_shows_as_approved_until_resumed() {
    let repo = Repo::new().workflow("gated", GATED);
    repo.reins(["run", "gated"]).run().code(3);
    let run = repo.the_run();
    repo.reins(["approve", &run, "gate"]).run().code(0);
    let out = repo.reins(["status", &run]).run();
    out.code(0);
    assert!(
        out.stdout.contains("gate   approved (resume to continue)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(&format!(
            "`gate` answered; continue the run with `reins resume {run}`"
        )),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("answer `gate` with"), "{}", out.stdout);
}

#[test]
fn after_a_rejection_the_hint_is_resume_from_the_gate() {
    let repo = Repo::new().workflow("gated", GATED);
    repo.reins(["run", "gated"]).run().code(3);
    let run = repo.the_run();
    let out = repo
        .reins(["reject", &run, "gate", "-m", "no", "--resume"])
        .run();
    out.code(1);
    let hint = format!("`reins resume {run} --from gate` asks it again");
    assert!(out.stdout.contains(&hint), "{}", out.stdout);
    assert!(
        !out.stdout
            .contains(&format!("continue it with `reins resume {run}`")),
        "{}",
        out.stdout
    );
    let out = repo.reins(["status", &run]).run();
    assert!(out.stdout.contains(&hint), "{}", out.stdout);
}

#[test]
fn a_busy_working_tree_is_named_once() {
    let repo = Repo::new().workflow("slow", "nodes: [{id: a, bash: sleep 30}]\n");
    let first = repo.reins(["run", "slow"]).spawn();
    repo.wait_for("the first run to start", Duration::from_secs(20), || {
        first.stdout_so_far().contains("a started")
    });
    let out = repo.reins(["run", "slow"]).run();
    out.code(2);
    assert_eq!(
        out.stderr.matches("in this working tree").count(),
        1,
        "{}",
        out.stderr
    );
    first.signal(nix::sys::signal::Signal::SIGTERM);
    first.wait();
}

#[test]
fn format_help_texts_describe_runs_and_status_not_workflows() {
    let repo = Repo::new();
    for (cmd, says) in [
        ("runs", "a table, one run a line"),
        ("status", "one line per node"),
        ("list", "one line per workflow"),
    ] {
        let out = repo.reins([cmd, "--help"]).run();
        out.code(0);
        assert!(out.stdout.contains(says), "{cmd}: {}", out.stdout);
        if cmd != "list" {
            assert!(
                !out.stdout.contains("per workflow"),
                "{cmd}: {}",
                out.stdout
            );
        }
    }
}

#[test]
fn short_typos_of_workflow_names_get_suggestions() {
    let repo = Repo::new()
        .workflow("ci", "nodes: [{id: a, bash: echo}]\n")
        .workflow("test", "nodes: [{id: a, bash: echo}]\n");
    for (typo, meant) in [("cj", "ci"), ("tset", "test"), ("tets", "test")] {
        let out = repo.reins(["run", typo]).run();
        out.code(2);
        assert!(
            out.stderr.contains(&format!("did you mean `{meant}`?")),
            "{typo}: {}",
            out.stderr
        );
    }
}

#[test]
fn logs_of_a_loop_print_a_header_per_iteration_in_order() {
    let repo = Repo::new().workflow(
        "lp",
        r#"nodes:
  - id: lp
    loop:
      bash: echo iter {{loop.iteration}}
      until_bash: '[ "$REINS_LOOP_ITERATION" -ge 11 ]'
      max_iterations: 12
"#,
    );
    repo.reins(["run", "lp"]).run().code(0);
    let out = repo.reins(["logs", "last", "lp"]).run();
    out.code(0);
    let expected: String = (1..=11)
        .map(|n| format!("==> lp: iteration {n} <==\niter {n}\n"))
        .collect();
    assert_eq!(out.stdout, expected);
    let out = repo.reins(["logs", "last", "lp", "--follow"]).run();
    out.code(0);
    assert_eq!(out.stdout, expected);
}

/// Runs, oldest first: three that succeeded and one waiting at a gate.
fn four_runs() -> (Repo, Vec<String>) {
    let repo = Repo::new()
        .workflow("ok", "nodes: [{id: a, bash: echo}]\n")
        .workflow("gated", GATED);
    for _ in 0..3 {
        repo.reins(["run", "ok"]).run().code(0);
    }
    repo.reins(["run", "gated"]).run().code(3);
    let ids = started_order(&repo);
    assert_eq!(ids.len(), 4);
    (repo, ids)
}

/// Run ids in the order the runs started (ids of one second sort by their random part).
fn started_order(repo: &Repo) -> Vec<String> {
    let out = repo.reins(["runs", "--format", "json"]).run();
    out.code(0);
    let runs: Value = serde_json::from_str(&out.stdout).unwrap();
    runs.as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn clean_runs_removes_finished_run_folders_never_a_waiting_one() {
    let (repo, ids) = four_runs();
    // Nothing finished more than 30 days ago.
    let out = repo.reins(["clean", "--runs", "--older-than", "30d"]).run();
    out.code(0);
    assert!(
        out.stdout.contains("no finished run to remove"),
        "{}",
        out.stdout
    );
    assert_eq!(started_order(&repo), ids);

    let out = repo
        .reins(["clean", "--runs", "--keep", "1", "--dry-run"])
        .run();
    out.code(0);
    assert_eq!(
        out.stdout.matches("would remove run").count(),
        2,
        "{}",
        out.stdout
    );
    assert_eq!(started_order(&repo), ids);

    let out = repo.reins(["clean", "--runs", "--keep", "1"]).run();
    out.code(0);
    assert_eq!(started_order(&repo), [ids[2].clone(), ids[3].clone()]);

    let out = repo.reins(["clean", "--runs"]).run();
    out.code(0);
    assert_eq!(
        started_order(&repo),
        [ids[3].clone()],
        "the waiting run stays"
    );
    assert_eq!(repo.status(&ids[3])["status"], "waiting");
    let out = repo.reins(["clean", "--keep", "1"]).run();
    out.code(2);
}

#[test]
fn clean_sweeps_half_built_runs_a_crash_left_once_a_minute_old_and_unlocked() {
    let repo = Repo::new().workflow("ok", "nodes: [{id: a, bash: echo hi}]");
    repo.reins(["run", "ok"]).run().code(0);
    let run = repo.the_run();
    let staged = |name: &str| format!(".reins/runs/.new-{name}");
    let age = |rel: &str, when: &str| {
        let ok = std::process::Command::new("touch")
            .args(["-d", when, &repo.join(rel).display().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    };
    for name in [
        "20260101-000000-old1",
        "20260101-000000-new1",
        "20260101-000000-busy",
    ] {
        repo.write(&format!("{}/nodes/.keep", staged(name)), "");
    }
    age(&staged("20260101-000000-old1"), "2 minutes ago");
    age(&staged("20260101-000000-busy"), "2 minutes ago");
    // A process creating that run holds its lock.
    let holder = std::process::Command::new("flock")
        .arg(repo.join(&format!("{}/lock", staged("20260101-000000-busy"))))
        .args(["sleep", "60"])
        .spawn()
        .unwrap();
    let mut holder = scopeguard(holder);
    repo.wait_for("the lock to be held", Duration::from_secs(10), || {
        repo.exists(&format!("{}/lock", staged("20260101-000000-busy")))
    });
    age(&staged("20260101-000000-busy"), "2 minutes ago");

    let out = repo.reins(["clean", "--dry-run"]).run();
    out.code(0);
    assert!(
        out.stdout.contains(
            "would remove .reins/runs/.new-20260101-000000-old1: a run a crash left half-built"
        ),
        "{}",
        out.stdout
    );
    assert!(repo.exists(&staged("20260101-000000-old1")));

    let out = repo.reins(["clean", "--runs", "--keep", "5"]).run();
    out.code(0);
    assert!(
        out.stdout.contains(
            "removed .reins/runs/.new-20260101-000000-old1: a run a crash left half-built"
        ),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(
            "kept .reins/runs/.new-20260101-000000-busy: a reins process is creating that run"
        ),
        "{}",
        out.stdout
    );
    assert!(!repo.exists(&staged("20260101-000000-old1")));
    assert!(repo.exists(&staged("20260101-000000-new1")), "too young");
    assert!(repo.exists(&staged("20260101-000000-busy")), "locked");
    assert!(
        repo.run_dir(&run).is_dir(),
        "the finished run stays (--keep)"
    );
    holder.0.kill().unwrap();
    holder.0.wait().unwrap();
}

/// Kills the child when dropped (a failed assertion must not leave it behind).
struct Guard(std::process::Child);
impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
fn scopeguard(child: std::process::Child) -> Guard {
    Guard(child)
}

#[test]
fn show_prints_any_workflow_and_new_from_copies_one() {
    let repo = Repo::new();
    let out = repo.reins(["show", "plan-to-pr"]).run();
    out.code(0);
    assert_eq!(
        out.stdout,
        std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows/plan-to-pr.yaml")
        )
        .unwrap()
    );
    let out = repo.reins(["show", "plan-to-prr"]).run();
    out.code(2);
    assert!(
        out.stderr.contains("did you mean `plan-to-pr`?"),
        "{}",
        out.stderr
    );

    let out = repo.reins(["new", "my-pr", "--from", "plan-to-pr"]).run();
    out.code(0);
    let copy = repo.read(".workflows/my-pr.yaml");
    assert!(copy.contains("\nname: my-pr\n"), "{copy}");
    assert!(copy.contains("id: approve-pr"), "{copy}");
    repo.reins(["validate", ".workflows/my-pr.yaml"])
        .run()
        .code(0);
    let out = repo.reins(["show", "my-pr"]).run();
    assert_eq!(out.stdout, copy);
    // Never over a file that exists.
    repo.reins(["new", "my-pr", "--from", "review"])
        .run()
        .code(2);
    assert_eq!(repo.read(".workflows/my-pr.yaml"), copy);
}

/// A folder holding only a `git` link, as `PATH` for commands that must not find anything else.
fn path_with_git_only(repo: &Repo) -> String {
    let bin = repo.join(".test-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let git = which_git();
    std::os::unix::fs::symlink(git, bin.join("git")).unwrap();
    bin.display().to_string()
}

fn which_git() -> std::path::PathBuf {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|d| d.join("git"))
        .find(|p| p.is_file())
        .expect("git is installed")
}

#[test]
fn doctor_fails_without_an_agent_cli_and_says_how_to_install_it() {
    let repo = Repo::new();
    let path = path_with_git_only(&repo);
    let out = repo.reins(["doctor"]).env("PATH", &path).run();
    out.code(1);
    assert!(out.stdout.contains("FAIL  claude"), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("fix: install it: npm install -g @anthropic-ai/claude-code"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("ok    .reins/"), "{}", out.stdout);
    let out = repo
        .reins(["doctor", "--format", "json"])
        .env("PATH", &path)
        .run();
    out.code(1);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["ok"], false);
    let names: Vec<&str> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for name in [
        "claude",
        "git",
        "git repository",
        "gh",
        ".reins/",
        "user folder",
    ] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }
    let gh = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "gh")
        .unwrap();
    assert_eq!(
        gh["status"], "warn",
        "gh is only needed to open pull requests"
    );
}

#[test]
fn doctor_passes_with_the_real_claude_cli_and_a_key() {
    let Some(claude) = support::require_claude() else {
        return;
    };
    let repo = Repo::new();
    let path = path_with_git_only(&repo);
    std::os::unix::fs::symlink(claude, repo.join(".test-bin/claude")).unwrap();
    let out = repo
        .reins(["doctor", "--format", "json"])
        .env("PATH", &path)
        .env("ANTHROPIC_API_KEY", "sk-ant-test-000")
        .env("HOME", repo.join(".test-home").to_str().unwrap())
        .run();
    out.code(0);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    let check = |name: &str| {
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in {v:#}"))
    };
    assert_eq!(check("claude")["status"], "ok", "{v:#}");
    assert!(
        check("claude")["detail"]
            .as_str()
            .unwrap()
            .contains("(Claude Code)"),
        "{v:#}"
    );
    assert_eq!(
        check("claude credentials")["detail"],
        "$ANTHROPIC_API_KEY is set"
    );
}

#[test]
fn reins_log_turns_on_tracing_to_stderr() {
    let repo = Repo::new().workflow("wf", "nodes: [{id: a, bash: echo hi}]\n");
    let out = repo.reins(["run", "wf"]).env("REINS_LOG", "debug").run();
    out.code(0);
    assert!(
        out.stderr.contains("DEBUG") && out.stderr.contains("starting a run"),
        "{}",
        out.stderr
    );
    let out = repo.reins(["run", "wf"]).run();
    assert!(!out.stderr.contains("DEBUG"), "{}", out.stderr);
    let out = repo.reins(["run", "wf"]).env("REINS_LOG", "[[").run();
    out.code(0);
    assert!(out.stderr.contains("ignoring REINS_LOG"), "{}", out.stderr);
}

#[test]
fn the_bundled_validate_takes_a_test_command_with_quotes() {
    let repo = Repo::new();
    let out = repo
        .reins([
            "run",
            "validate",
            "--input",
            r#"test_command=printf '%s\n' "a \"quoted\" \\ word" > said.txt"#,
            "--input",
            "lint_command=none",
        ])
        .run();
    out.code(0);
    assert_eq!(repo.read("said.txt"), "a \"quoted\" \\ word\n");
}
