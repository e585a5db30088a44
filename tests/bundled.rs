//! Every bundled workflow, run end to end in a temporary repository: bash nodes for real, agent
//! nodes through the real Claude Code CLI against the offline Messages API stand-in, approval
//! gates answered by the test. Each test checks the artifacts and the side effects.

mod support;

use std::path::PathBuf;

use serde_json::{json, Value};
use support::agents::{artifacts_in, git, Bundled};
use support::run_repo::Repo;
use support::{MockApi, Turn};

/// A repository with one commit, the Claude CLI on `PATH` and the stand-in API behind it.
type Bench = Bundled<MockApi>;

/// The artifacts folder of the latest run.
fn last_artifacts(repo: &Repo) -> PathBuf {
    PathBuf::from(
        repo.status("last")["dir"]
            .as_str()
            .expect("status has the run's folder"),
    )
    .join("artifacts")
}

fn write_artifact(prompt: &str, name: &str, content: &str) -> Turn {
    Turn::tool(
        "Write",
        json!({"file_path": format!("{}/{name}", artifacts_in(prompt)), "content": content}),
    )
}

fn node_status(bench: &Bench, node: &str) -> String {
    bench.repo.node("last", node)["status"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn validate_runs_the_detected_lint_and_tests_in_parallel() {
    // Bash only: no agent, so no CLI needed.
    let repo = Repo::new();
    repo.write(
        "Makefile",
        "test:\n\t@echo tested > tested.txt\nlint:\n\t@echo linted > linted.txt\n",
    );
    let out = repo.reins(["run", "validate"]).run();
    out.code(0);
    assert!(repo.exists("tested.txt") && repo.exists("linted.txt"));
    let report = std::fs::read_to_string(last_artifacts(&repo).join("validate.txt")).unwrap();
    assert_eq!(report.trim(), "lint: success, tests: success");

    // A failing test target fails the run, and the report says which check failed.
    repo.write("Makefile", "test:\n\t@exit 3\nlint:\n\t@true\n");
    let out = repo.reins(["run", "validate"]).run();
    out.code(1);
    let report = std::fs::read_to_string(last_artifacts(&repo).join("validate.txt")).unwrap();
    assert_eq!(report.trim(), "lint: success, tests: failed");

    // A given command wins over detection; `none` skips linting.
    let out = repo
        .reins([
            "run",
            "validate",
            "--input",
            "test_command=true",
            "--input",
            "lint_command=none",
        ])
        .run();
    out.code(0);
    let report = std::fs::read_to_string(last_artifacts(&repo).join("validate.txt")).unwrap();
    assert_eq!(report.trim(), "lint: skipped, tests: success");
}

#[test]
fn review_runs_four_read_only_reviewers_and_merges_their_reports() {
    let Some(bench) = Bench::new(&[("src.txt", "one\n")]) else {
        return;
    };
    bench.repo.write("src.txt", "one\ntwo\n");
    for focus in ["correctness", "security", "tests", "docs"] {
        bench.api.rule(
            &format!("for **{focus}** only"),
            [Turn::text(format!(
                "verdict: approve\n{focus}: nothing to raise"
            ))],
        );
    }
    bench.api.rule(
        "Several reviewers each wrote a report",
        [Turn::text("verdict: approve\nall four reviewers approve")],
    );
    let out = bench.run(&["run", "review"]);
    out.code(0);
    let artifacts = bench.artifacts();
    for focus in ["correctness", "security", "tests", "docs"] {
        let report = std::fs::read_to_string(artifacts.join(format!("review-{focus}.md"))).unwrap();
        assert!(report.starts_with("verdict: approve"), "{report}");
    }
    let merged = std::fs::read_to_string(artifacts.join("review.md")).unwrap();
    assert!(merged.starts_with("verdict: approve\nall four"), "{merged}");
    // The reviewers could not edit: the tools offered to them have no Write or Edit.
    for request in bench.api.requests_for("for **security** only") {
        let tools: Vec<&str> = request.body["tools"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["name"].as_str())
            .collect();
        assert!(
            !tools.is_empty() && !tools.contains(&"Write") && !tools.contains(&"Edit"),
            "{tools:?}"
        );
    }
    // Nothing in the repository changed besides the user's own edit, and the run store keeps
    // itself out of git.
    let status = git(bench.repo.path(), &["status", "--short"]);
    let changes: Vec<&str> = status
        .lines()
        .filter(|l| !l.contains(".test-out"))
        .collect();
    assert_eq!(changes, [" M src.txt"]);
}

fn write_root_cause(prompt: &str) -> Turn {
    write_artifact(
        prompt,
        "root-cause.md",
        "greeting.txt says helo; it should say hello\n",
    )
}

#[test]
fn fix_issue_writes_the_root_cause_then_fixes_until_the_tests_pass() {
    let Some(bench) = Bench::new(&[("greeting.txt", "helo\n")]) else {
        return;
    };
    bench.api.rule(
        "You are investigating a bug",
        [
            Turn::FromPrompt(write_root_cause),
            Turn::text("typo in greeting.txt"),
        ],
    );
    bench.api.rule(
        "Write a regression test that fails",
        [
            Turn::tool(
                "Bash",
                json!({"command": "echo hello > greeting.txt", "description": "fix the greeting"}),
            ),
            Turn::text("DONE"),
        ],
    );
    // The bug report needs no `--input issue=`: it is the workflow's only required input.
    let out = bench.run(&[
        "run",
        "fix-issue",
        "the greeting is misspelt",
        "--input",
        "test_command=grep -qx hello greeting.txt",
    ]);
    out.code(0);
    // It says where the fix is: in this checkout, not a worktree of its own.
    let summary = bench.repo.node("last", "summary");
    let said = summary["output"].as_str().unwrap_or_default();
    assert!(said.contains("the fix was made in this checkout"), "{said}");
    assert_eq!(bench.repo.read("greeting.txt"), "hello\n");
    let cause = std::fs::read_to_string(bench.artifacts().join("root-cause.md")).unwrap();
    assert!(cause.contains("should say hello"));
    // The investigator saw the bug report the `report` node produced.
    assert!(bench.api.requests_for("You are investigating a bug")[0]
        .contains_text("the greeting is misspelt"));
    assert_eq!(node_status(&bench, "validate"), "success");
}

fn write_refactor_plan(prompt: &str) -> Turn {
    write_artifact(
        prompt,
        "plan.md",
        "- [ ] move a.txt to b.txt, keeping a copy\n",
    )
}

fn do_refactor_step(prompt: &str) -> Turn {
    let plan = format!("{}/plan.md", artifacts_in(prompt));
    Turn::tool(
        "Bash",
        json!({"command": format!("cp a.txt b.txt && sed -i 's/- \\[ \\]/- [x]/' {plan}"), "description": "one step"}),
    )
}

#[test]
fn refactor_safely_checks_a_green_baseline_waits_for_approval_then_steps() {
    let Some(bench) = Bench::new(&[("a.txt", "content\n")]) else {
        return;
    };
    bench.api.rule(
        "You are planning a refactoring",
        [Turn::FromPrompt(write_refactor_plan), Turn::text("1 step")],
    );
    bench.api.rule(
        "You are implementing the plan",
        [Turn::FromPrompt(do_refactor_step), Turn::text("DONE")],
    );
    let out = bench.run(&[
        "run",
        "refactor-safely",
        "--input",
        "goal=split a.txt",
        "--input",
        "test_command=test -f a.txt",
    ]);
    out.code(3);
    assert!(
        !bench.repo.exists("b.txt"),
        "nothing is refactored before the plan is approved"
    );
    assert!(bench.artifacts().join("baseline.txt").exists());
    let out = bench.run(&["approve", "last", "approve-plan", "--resume"]);
    out.code(0);
    assert!(bench.repo.exists("b.txt"));
    let plan = std::fs::read_to_string(bench.artifacts().join("plan.md")).unwrap();
    assert!(!plan.contains("- [ ]"), "{plan}");
}

fn write_plan(prompt: &str) -> Turn {
    write_artifact(prompt, "plan.md", "- [ ] add feature.txt\n")
}

fn write_pr(prompt: &str) -> Turn {
    write_artifact(
        prompt,
        "pr.md",
        "Add feature.txt\n\nAdds the feature file the task asked for.\n",
    )
}

#[test]
fn plan_to_pr_goes_from_task_to_a_committed_branch_behind_two_gates() {
    let Some(bench) = Bench::new(&[("README", "project\n")]) else {
        return;
    };
    bench.api.rule(
        "You are planning a change",
        [
            Turn::FromPrompt(write_plan),
            Turn::text("plan: add feature.txt"),
        ],
    );
    bench.api.rule(
        "You are implementing the plan",
        [
            Turn::tool(
                "Bash",
                json!({"command": "echo feature > feature.txt", "description": "add it"}),
            ),
            Turn::text("DONE"),
        ],
    );
    bench.api.rule(
        "for **correctness** only",
        [Turn::text("verdict: approve\nfine")],
    );
    bench
        .api
        .rule("for **tests** only", [Turn::text("verdict: approve\nfine")]);
    bench.api.rule(
        "Write a pull request description",
        [Turn::FromPrompt(write_pr), Turn::text("Add feature.txt")],
    );

    let run = [
        "run",
        "plan-to-pr",
        "--input",
        "task=add a feature file",
        "--input",
        "test_command=test -f feature.txt",
    ];
    let out = bench.run(&run);
    out.code(3);
    assert_eq!(node_status(&bench, "approve-plan"), "waiting");
    assert_eq!(node_status(&bench, "implement"), "pending");

    let out = bench.run(&["approve", "last", "approve-plan", "-m", "go", "--resume"]);
    out.code(3);
    assert_eq!(node_status(&bench, "approve-pr"), "waiting");
    assert_eq!(node_status(&bench, "commit"), "pending");
    // The last gate names the worktree, the branch and the PR command it would run.
    let gate = bench.repo.node("last", "approve-pr");
    let question = gate["approval"]["message"].as_str().unwrap_or_default();
    let id = bench.repo.status("last")["run_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    for part in [
        format!(".reins/worktrees/{id} (branch reins/plan-to-pr-{id})"),
        format!("git push -u origin reins/plan-to-pr-{id} && gh pr create --base main --head reins/plan-to-pr-{id}"),
    ] {
        assert!(question.contains(&part), "{part} not in {question}");
    }

    let out = bench.run(&["approve", "last", "approve-pr", "--resume"]);
    out.code(0);
    let run_id = bench.repo.status("last")["run_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let branch = format!("reins/plan-to-pr-{run_id}");
    // The work happened on the run's branch, in its own worktree: the checkout is untouched.
    assert!(!bench.repo.exists("feature.txt"));
    assert_eq!(
        git(
            bench.repo.path(),
            &["show", &format!("{branch}:feature.txt")]
        ),
        "feature\n"
    );
    assert_eq!(
        git(bench.repo.path(), &["log", "-1", "--format=%s", &branch]).trim(),
        "Add feature.txt"
    );
    for artifact in [
        "plan.md",
        "pr.md",
        "review-correctness.md",
        "review-tests.md",
    ] {
        assert!(bench.artifacts().join(artifact).exists(), "{artifact}");
    }
    // Without an authenticated gh, the PR step is skipped and says how to open it.
    if node_status(&bench, "open-pr") == "skipped" {
        let skipped: Value = bench.repo.node("last", "pr-skipped");
        assert!(
            skipped["output"]
                .as_str()
                .unwrap_or_default()
                .contains("gh is missing or not authenticated"),
            "{skipped}"
        );
    }
}

/// The investigator of `fix-issues`' children: the root cause of whichever bug it was given.
fn write_either_root_cause(prompt: &str) -> Turn {
    let cause = if prompt.contains("farewell") {
        "farewell.txt says by; it should say bye\n"
    } else {
        "greeting.txt says helo; it should say hello\n"
    };
    write_artifact(prompt, "root-cause.md", cause)
}

/// The fixer: reads the root cause its investigator wrote, adds a regression test for it and
/// fixes that one file.
fn fix_either(prompt: &str) -> Turn {
    let cause = std::fs::read_to_string(format!("{}/root-cause.md", artifacts_in(prompt)))
        .unwrap_or_default();
    let (file, good) = if cause.contains("farewell") {
        ("farewell", "bye")
    } else {
        ("greeting", "hello")
    };
    Turn::tool(
        "Bash",
        json!({
            "command": format!("mkdir -p tests && echo 'grep -qx {good} {file}.txt' > tests/{file}.sh && echo {good} > {file}.txt"),
            "description": format!("fix {file}.txt with a regression test"),
        }),
    )
}

#[test]
fn fix_issues_fixes_each_issue_in_its_own_worktree_and_commits_them_after_one_gate() {
    // The suite runs every `tests/*.sh`; a fixer adds its regression test there.
    let Some(bench) = Bench::new(&[
        ("greeting.txt", "helo\n"),
        ("farewell.txt", "by\n"),
        (
            "package.json",
            r#"{"name": "t", "version": "1.0.0", "scripts": {"test": "sh run-tests.sh"}}"#,
        ),
        (
            "run-tests.sh",
            "for t in tests/*.sh; do [ -f \"$t\" ] || continue; sh \"$t\" || exit 1; done\n",
        ),
    ]) else {
        return;
    };
    bench.api.rule(
        "You are investigating a bug",
        [
            Turn::FromPrompt(write_either_root_cause),
            Turn::text("found it"),
        ],
    );
    bench.api.rule(
        "Write a regression test that fails",
        [Turn::FromPrompt(fix_either), Turn::text("DONE")],
    );
    let out = bench
        .reins(&[
            "run",
            "fix-issues",
            "--no-input",
            "--input",
            r#"issues=["the greeting is misspelt", "the farewell is misspelt"]"#,
        ])
        .timeout(std::time::Duration::from_secs(300))
        .run();
    out.code(3);
    let run = bench.repo.status("last")["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    // Two children, each in a worktree of its own, each fixing its own bug; nothing committed.
    let mut trees = Vec::new();
    for (key, file, good) in [("0", "greeting", "hello"), ("1", "farewell", "bye")] {
        let node = bench.repo.node(&run, &format!("fix[{key}]"));
        assert_eq!(node["status"], "success", "{node:#}");
        let child = node["child_run"].as_str().unwrap().to_string();
        assert_eq!(bench.repo.status(&child)["status"], "success");
        let dir = PathBuf::from(bench.repo.status(&child)["dir"].as_str().unwrap());
        let manifest: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("run.json")).unwrap()).unwrap();
        let tree = PathBuf::from(manifest["worktree"].as_str().expect("a worktree"));
        assert_eq!(
            std::fs::read_to_string(tree.join(format!("{file}.txt"))).unwrap(),
            format!("{good}\n")
        );
        assert!(tree.join(format!("tests/{file}.sh")).is_file());
        trees.push((tree, file, child));
    }
    let (first, second) = (&trees[0].0, &trees[1].0);
    assert_ne!(first, second);
    assert_eq!(
        std::fs::read_to_string(first.join("farewell.txt")).unwrap(),
        "by\n"
    );
    assert_eq!(
        bench.repo.read("greeting.txt"),
        "helo\n",
        "this checkout is untouched"
    );
    assert_eq!(bench.repo.node(&run, "approve")["status"], "waiting");
    assert_eq!(bench.repo.node(&run, "commit")["status"], "pending");

    // One gate, then each fix is committed on its worktree's branch.
    let out = bench.run(&["approve", &run, "approve", "--resume"]);
    out.code(0);
    let committed = bench.repo.node(&run, "commit")["output"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    for (tree, file, child) in &trees {
        let branch = git(tree, &["rev-parse", "--abbrev-ref", "HEAD"]);
        assert_eq!(branch.trim(), format!("reins/fix-issue-{child}"));
        assert!(
            committed.contains(&format!("on reins/fix-issue-{child}")),
            "{committed}"
        );
        let files = git(tree, &["show", "--name-only", "--format=%s", "HEAD"]);
        assert!(files.starts_with("fix-issues: fix from run"), "{files}");
        assert!(files.contains(&format!("{file}.txt")), "{files}");
        assert!(files.contains(&format!("tests/{file}.sh")), "{files}");
        assert_eq!(git(tree, &["status", "--porcelain"]), "");
    }
    // This checkout has no fix and no commit of its own.
    assert_eq!(git(bench.repo.path(), &["diff", "HEAD", "--stat"]), "");
    assert_eq!(
        git(bench.repo.path(), &["rev-list", "--count", "HEAD"]).trim(),
        "1"
    );
}
