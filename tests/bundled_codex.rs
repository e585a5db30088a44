//! The bundled `review` and `fix-issue` workflows on Codex (`reins run WF --agent codex`), end
//! to end: bash nodes for real, agent nodes through the real Codex CLI against the offline
//! Responses API stand-in.

mod support;

use support::agents::{artifacts_in, git, Bundled};
use support::{Reply, ResponsesApi};

/// A repository with one commit, Codex on `PATH` as `codex` and the stand-in behind it.
type Bench = Bundled<ResponsesApi>;

#[test]
fn review_runs_on_codex() {
    let Some(bench) = Bench::new(&[("src.txt", "one\n")]) else {
        return;
    };
    bench.repo.write("src.txt", "one\ntwo\n");
    for focus in ["correctness", "security", "tests", "docs"] {
        bench.api.rule(
            &format!("for **{focus}** only"),
            [Reply::text(format!(
                "verdict: approve\n{focus}: nothing to raise"
            ))],
        );
    }
    bench.api.rule(
        "Several reviewers each wrote a report",
        [Reply::text("verdict: approve\nall four reviewers approve")],
    );
    let out = bench.run(&["run", "review", "--agent", "codex"]);
    out.code(0);
    let artifacts = bench.artifacts();
    for focus in ["correctness", "security", "tests", "docs"] {
        let report = std::fs::read_to_string(artifacts.join(format!("review-{focus}.md"))).unwrap();
        assert!(report.starts_with("verdict: approve"), "{report}");
    }
    let merged = std::fs::read_to_string(artifacts.join("review.md")).unwrap();
    assert!(merged.starts_with("verdict: approve\nall four"), "{merged}");
    assert_eq!(bench.api.requests_for("for **security** only").len(), 1);
    let status = git(bench.repo.path(), &["status", "--short"]);
    let changes: Vec<&str> = status
        .lines()
        .filter(|l| !l.contains(".test-out") && !l.contains(".test-state"))
        .collect();
    assert_eq!(changes, [" M src.txt"]);
}

fn write_root_cause(prompt: &str) -> Reply {
    Reply::shell(format!(
        "printf 'greeting.txt says helo; it should say hello\\n' > '{}/root-cause.md'",
        artifacts_in(prompt)
    ))
}

#[test]
fn fix_issue_runs_on_codex() {
    let Some(bench) = Bench::new(&[("greeting.txt", "helo\n")]) else {
        return;
    };
    bench.api.rule(
        "You are investigating a bug",
        [
            Reply::FromPrompt(write_root_cause),
            Reply::text("typo in greeting.txt"),
        ],
    );
    bench.api.rule(
        "Write a regression test that fails",
        [
            Reply::shell("echo hello > greeting.txt"),
            Reply::text("DONE"),
        ],
    );
    let out = bench.run(&[
        "run",
        "fix-issue",
        "--agent",
        "codex",
        "--input",
        "issue=the greeting is misspelt",
        "--input",
        "test_command=grep -qx hello greeting.txt",
    ]);
    out.code(0);
    assert_eq!(bench.repo.read("greeting.txt"), "hello\n");
    let cause = std::fs::read_to_string(bench.artifacts().join("root-cause.md")).unwrap();
    assert!(cause.contains("should say hello"));
    assert!(bench.api.requests_for("You are investigating a bug")[0]
        .contains_text("the greeting is misspelt"));
    assert_eq!(bench.repo.node("last", "validate")["status"], "success");
}
