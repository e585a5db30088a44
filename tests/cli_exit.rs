//! Exit codes, one per way a command can end (src/exit.rs lists them; docs/runs.md has the
//! table, checked here too), and a closed stdout that never panics or complains.

mod support;

use std::time::Duration;

use nix::sys::signal::Signal;
use support::run_repo::Repo;

const OK: &str = "nodes:\n  - id: a\n    bash: echo hi\n";
const FAILS: &str = "nodes:\n  - id: a\n    bash: exit 7\n";
const GATED: &str = "nodes:\n  - id: gate\n    approval: \"Ship it?\"\n";
const LONG: &str = "nodes:\n  - id: a\n    bash: touch started && sleep 30\n";
const INVALID: &str = "nodes:\n  - id: a\n    bash: echo {{nodes.nope.output}}\n";

#[test]
fn success_node_failed_waiting_and_cancelled_each_have_their_code() {
    let repo = Repo::new()
        .workflow("ok", OK)
        .workflow("fails", FAILS)
        .workflow("gated", GATED)
        .workflow("long", LONG);
    repo.reins(["run", "ok"]).run().code(0);
    repo.reins(["run", "fails"]).run().code(1);
    repo.reins(["run", "gated"]).run().code(3);
    repo.reins(["cancel", "last"]).run().code(0);

    let running = repo.reins(["run", "long"]).spawn();
    repo.wait_for("the node to start", Duration::from_secs(20), || {
        repo.exists("started")
    });
    running.signal(Signal::SIGINT);
    running.wait().code(130);
}

#[test]
fn usage_errors_and_invalid_workflows_exit_2_with_one_message() {
    let repo = Repo::new().workflow("bad", INVALID).workflow("ok", OK);
    let out = repo.reins(["run", "--no-such-flag", "ok"]).run();
    out.code(2);
    let out = repo.reins(["run", "missing"]).run();
    out.code(2);
    assert_eq!(out.stderr.matches("error:").count(), 1, "{}", out.stderr);
    let out = repo.reins(["run", "bad"]).run();
    out.code(2);
    assert!(
        out.stderr.contains("is not a valid workflow"),
        "{}",
        out.stderr
    );
    repo.reins(["validate", ".workflows/bad.yaml"])
        .run()
        .code(2);
    let out = repo.reins(["status", "no-such-run"]).run();
    out.code(2);
    assert_eq!(out.stderr.matches("error:").count(), 1, "{}", out.stderr);
}

#[test]
fn an_unreadable_store_is_reins_own_failure_exit_4() {
    let repo = Repo::new().workflow("ok", OK);
    // `.reins/runs` is a file, not a folder: nothing can be listed or created there.
    repo.write(".reins/runs", "not a folder");
    let out = repo.reins(["runs"]).run();
    out.code(4);
    assert_eq!(out.stderr.matches("error:").count(), 1, "{}", out.stderr);
    let out = repo.reins(["run", "ok"]).run();
    out.code(4);
    assert_eq!(out.stderr.matches("error:").count(), 1, "{}", out.stderr);
    repo.reins(["clean", "--runs"]).run().code(4);
}

#[test]
fn a_closed_stdout_is_a_quiet_exit_for_every_printing_command() {
    let repo = Repo::new().workflow("ok", OK);
    repo.reins(["run", "ok"]).run().code(0);
    for args in [
        &["schema"][..],
        &["runs"],
        &["status", "last"],
        &["logs", "last"],
        &["list"],
        &["show", "ok"],
        &["graph", "ok"],
        &["validate"],
        &["run", "ok", "--dry-run"],
        &["run", "ok"],
        &["--help"],
    ] {
        let out = repo.reins(args).closed_stdout().run();
        assert!(
            !out.stderr.contains("panicked")
                && !out.stderr.contains("error")
                && !out.stderr.to_lowercase().contains("broken pipe"),
            "reins {args:?} complained about a closed stdout:\n{}",
            out.stderr
        );
        assert_eq!(out.code, 0, "reins {args:?}: {}", out.stderr);
    }
}

#[test]
fn no_color_and_clicolor_force_decide_the_colours_of_diagnostics() {
    let repo = Repo::new().workflow("bad", INVALID);
    let validate = || repo.reins(["validate", ".workflows/bad.yaml"]);
    // Piped stdout, nothing set: plain text.
    let out = validate().env_remove("NO_COLOR").run();
    assert!(!out.stdout.contains('\x1b'), "{}", out.stdout);
    // CLICOLOR_FORCE colours even a pipe.
    let out = validate()
        .env_remove("NO_COLOR")
        .env("CLICOLOR_FORCE", "1")
        .run();
    assert!(out.stdout.contains("\x1b["), "{}", out.stdout);
    // NO_COLOR wins over CLICOLOR_FORCE.
    let out = validate().env("CLICOLOR_FORCE", "1").run();
    assert!(!out.stdout.contains('\x1b'), "{}", out.stdout);
}

#[test]
fn the_exit_code_table_in_the_docs_matches_the_code() {
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/runs.md"))
        .expect("docs/runs.md");
    let table: Vec<(u8, String)> = docs
        .split("## Exit codes")
        .nth(1)
        .expect("docs/runs.md has an `## Exit codes` section")
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.trim().trim_matches('|').split('|').collect();
            let code = cells.first()?.trim().parse().ok()?;
            Some((code, cells.get(1)?.trim().to_string()))
        })
        .collect();
    let expected: Vec<(u8, String)> = reins::exit::TABLE
        .iter()
        .map(|(code, meaning)| (*code, meaning.to_string()))
        .collect();
    assert_eq!(
        table, expected,
        "docs/runs.md's exit-code table and src/exit.rs differ"
    );
}
