//! The web view end to end in a real headless Chromium, driven by Playwright
//! (`tests/web/e2e.mjs`): the run list, the DAG, approving and rejecting gates, a run finishing
//! live, an agent's transcript with its tool calls' durations (the real Claude CLI against the
//! offline stand-in API), an artifact, cancelling, resuming a failed run and resuming from a
//! node, a fan-out's instances counted and opened one by one as they settle, and a second
//! browser seeing the answer.
//!
//! Needs Debian's `chromium` (or `REINS_TEST_CHROMIUM`), node, and `npm ci` in `tests/web`;
//! on CI (`CI` set) a missing one fails the test, locally it is skipped with a notice.
//! Screenshots land in `target/web-screenshots/`.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::json;
use support::run_repo::Repo;
use support::serve::Server;
use support::{claude_env, require_claude, MockApi, Turn};

fn on_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Chromium, node and Playwright, or `None` (locally) when one is missing.
fn require_browser() -> Option<(PathBuf, PathBuf)> {
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/web");
    let chromium = std::env::var_os("REINS_TEST_CHROMIUM")
        .map(PathBuf::from)
        .or_else(|| which::which("chromium").ok())
        .or_else(|| which::which("chromium-browser").ok());
    let node = which::which("node").ok();
    let playwright = web
        .join("node_modules/playwright-core/package.json")
        .is_file();
    let missing = match (&chromium, &node, playwright) {
        (None, _, _) => {
            Some("chromium (`apt-get install -y chromium`, or set REINS_TEST_CHROMIUM)")
        }
        (_, None, _) => Some("node"),
        (_, _, false) => Some("playwright-core (`npm ci` in tests/web)"),
        _ => None,
    };
    if let Some(what) = missing {
        assert!(
            !on_ci(),
            "the browser tests need {what}; `.ci/run` installs it"
        );
        eprintln!("note: skipping the browser tests: {what} is missing");
        return None;
    }
    Some((chromium.unwrap(), web))
}

const GATED: &str = r#"
nodes:
  - id: build
    bash: printf '# Report\n\n**all good**\n' > "$REINS_ARTIFACTS/report.md"; echo built
  - id: gate
    depends_on: [build]
    approval: "Ship **it**? Read `report.md` first."
  - id: deploy
    depends_on: [gate]
    bash: sleep 1; echo deployed
"#;

/// A fan-out of twelve: `k9` fails, `k10` and `k11` wait for `GO_FLAG`; eleven must succeed.
const FAN: &str = r#"
nodes:
  - id: review
    for_each: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]
    key: "k{{item}}"
    min_success: 11
    bash: |
      if [ "{{item}}" = 9 ]; then echo "review of item 9 failed"; exit 1; fi
      if [ "{{item}}" -ge 10 ]; then while [ ! -f 'GO_FLAG' ]; do sleep 0.1; done; fi
      echo "reviewed item {{item}}"
  - id: report
    depends_on: [review]
    bash: echo {{nodes.review.outputs}}
"#;

const FLAKY: &str = r#"
nodes:
  - id: prepare
    bash: echo prepared
  - id: check
    depends_on: [prepare]
    bash: sleep 1; test -f ready.flag && echo fixed
"#;

#[test]
fn the_web_view_in_chromium() {
    let Some((chromium, web)) = require_browser() else {
        return;
    };
    let Some(claude) = require_claude() else {
        return;
    };
    let api = MockApi::start();
    api.rule(
        "MARK-NOTES",
        [
            Turn::tool("Bash", json!({"command": "sleep 1; echo slept"})),
            Turn::tool(
                "Write",
                json!({"file_path": "notes.md", "content": "# Notes\n\nfrom the agent\n"}),
            ),
            Turn::text("I wrote the notes."),
        ],
    );
    let repo = Repo::new()
        .workflow("gated", GATED)
        .workflow("slow", "nodes: [{id: work, bash: sleep 300}]")
        .workflow("flaky", FLAKY);
    let go = repo.join("go.flag");
    repo.write(
        ".workflows/fan.yaml",
        &FAN.replace("GO_FLAG", &go.display().to_string()),
    );
    repo.write(
        ".workflows/agent.yaml",
        &format!(
            "agents:\n  claude: {{program: '{}', permission_mode: acceptEdits, allowed_tools: [Bash]}}\nnodes:\n  - {{id: ask, prompt: 'MARK-NOTES write notes.md'}}\n  - {{id: keep, depends_on: [ask], bash: 'cp notes.md \"$REINS_ARTIFACTS/notes.md\"'}}\n",
            claude.display()
        ),
    );
    let home = repo.join(".claude-home");
    std::fs::create_dir_all(&home).unwrap();
    let mut agent = repo
        .reins(["run", "agent"])
        .timeout(Duration::from_secs(150));
    for (k, v) in claude_env(&api, &home) {
        agent = agent.env(&k, &v);
    }
    agent.run().code(0);
    let run_agent = newest(&repo);

    // Fails until `ready.flag` exists: resumed from the page once it does.
    repo.reins(["run", "flaky"]).run().code(1);
    let run_failed = newest(&repo);
    repo.write("ready.flag", "");

    let run_reject = waiting(&repo);
    let run_waiting = waiting(&repo);
    // In a worktree of its own, so it does not hold this checkout's lock while it runs.
    let git = |args: &[&str]| {
        let ok = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .current_dir(repo.path())
            .status()
            .unwrap();
        assert!(ok.success(), "git {args:?}");
    };
    git(&["add", ".workflows"]);
    git(&["commit", "-q", "-m", "init"]);
    let live = repo
        .reins(["run", "slow", "--no-input", "--worktree"])
        .timeout(Duration::from_secs(300))
        .spawn();
    let before = [
        run_agent.clone(),
        run_failed.clone(),
        run_reject.clone(),
        run_waiting.clone(),
    ];
    let new_run = || repo.run_ids().into_iter().find(|id| !before.contains(id));
    repo.wait_for("the slow run to start", Duration::from_secs(20), || {
        new_run().is_some_and(|id| repo.events(&id).iter().any(|e| e["type"] == "node_started"))
    });
    let run_live = new_run().unwrap();
    // Twelve instances: nine succeed, one fails, two wait for `go.flag` (written by the page
    // test), so the page sees the counts change live.
    let fan = repo
        .reins(["run", "fan", "--no-input", "--worktree"])
        .timeout(Duration::from_secs(300))
        .spawn();
    let fan_run = || {
        repo.run_ids()
            .into_iter()
            .find(|id| !before.contains(id) && *id != run_live)
    };
    repo.wait_for(
        "the fan-out to settle 10 instances",
        Duration::from_secs(30),
        || {
            fan_run().is_some_and(|id| {
                let events = repo.events(&id);
                let settled = |e: &&serde_json::Value| {
                    e["type"] == "node_succeeded"
                        || (e["type"] == "node_failed" && e["will_retry"] == false)
                };
                events.iter().filter(settled).count() >= 10
            })
        },
    );
    let run_fan = fan_run().unwrap();

    let server = Server::start(&repo, &[]);
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/web-screenshots");
    let out = Command::new("node")
        .arg(web.join("e2e.mjs"))
        .current_dir(&web)
        .env("REINS_URL", &server.url)
        .env("RUN_WAITING", &run_waiting)
        .env("RUN_REJECT", &run_reject)
        .env("RUN_LIVE", &run_live)
        .env("RUN_AGENT", &run_agent)
        .env("RUN_FAILED", &run_failed)
        .env("RUN_FAN", &run_fan)
        .env("GO_FLAG", &go)
        .env("CHROMIUM", &chromium)
        .env("SHOTS", &shots)
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the browser test failed (screenshot in {}):\n{stdout}\n{stderr}",
        shots.display()
    );
    let live_out = live.wait();
    assert_eq!(live_out.code, 130, "cancelled: {live_out:?}");
    let fan_out = fan.wait();
    assert_eq!(fan_out.code, 0, "the fan-out run finished: {fan_out:?}");
    if let Some(line) = stdout.lines().find(|l| l.starts_with("RESULT ")) {
        eprintln!("web view measurements: {}", &line[7..]);
    }

    // The store says what the page said.
    assert_eq!(repo.status(&run_waiting)["status"], "success");
    assert_eq!(
        repo.node(&run_waiting, "gate")["output"],
        "ship it from the browser"
    );
    let rejected = repo.node(&run_reject, "gate");
    assert_eq!(rejected["status"], "failed");
    assert_eq!(rejected["approval"]["answer"]["comment"], "not this week");
    assert_eq!(repo.status(&run_live)["status"], "cancelled");
    // Resumed, then resumed from `check`: `prepare` ran once, `check` three times.
    assert_eq!(repo.status(&run_failed)["status"], "success");
    let events = repo.events(&run_failed);
    let count = |kind: &str, node: &str| {
        events
            .iter()
            .filter(|e| e["type"] == kind && e["node"] == node)
            .count()
    };
    assert_eq!(count("node_started", "prepare"), 1, "{events:#?}");
    assert_eq!(count("node_started", "check"), 3, "{events:#?}");
    assert_eq!(count("node_succeeded", "check"), 2, "{events:#?}");
    for shot in [
        "run-list.png",
        "run-page.png",
        "agent-node.png",
        "resumed-run.png",
        "fan-out.png",
    ] {
        assert!(shots.join(shot).is_file(), "{shot}");
    }
}

/// Starts a run of `gated` that stops at its gate; its id.
fn waiting(repo: &Repo) -> String {
    repo.reins(["run", "gated", "--no-input"]).run().code(3);
    newest(repo)
}

/// The run started last (ids sort by the second only).
fn newest(repo: &Repo) -> String {
    repo.status("last")["run_id"].as_str().unwrap().to_string()
}
