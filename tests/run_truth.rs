//! Runs that tell the truth: the run's outcome, concurrency, truncated outputs, why a node
//! failed, what a resume runs, and what a dry run can know.

mod support;

use support::run_repo::Repo;

#[test]
fn an_all_done_cleanup_does_not_hide_a_failure() {
    let repo = Repo::new().workflow(
        "teardown",
        r#"nodes:
  - id: test
    bash: exit 1
  - id: cleanup
    depends_on: [test]
    trigger: all_done
    bash: echo cleaned > cleaned.txt
"#,
    );
    repo.reins(["run", "teardown"]).run().code(1);
    assert_eq!(repo.read("cleaned.txt").trim(), "cleaned");
    let run = repo.the_run();
    assert_eq!(repo.status(&run)["status"], "failed");
    assert_eq!(repo.node(&run, "cleanup")["status"], "success");
}

#[test]
fn a_branch_that_ran_because_of_the_failure_handles_it() {
    // A rework branch whose `when` reads the failed node's status, and a `one_success`
    // fallback that ran: each makes the failure part of the plan.
    let repo = Repo::new().workflow(
        "handled",
        r#"nodes:
  - id: test
    bash: exit 1
  - id: rework
    depends_on: [test]
    trigger: all_done
    when: "{{eq nodes.test.status 'failed'}}"
    bash: echo reworked
  - id: primary
    bash: exit 2
  - id: backup
    bash: echo backup
  - id: either
    depends_on: [primary, backup]
    trigger: one_success
    bash: echo one of them
"#,
    );
    repo.reins(["run", "handled"]).run().code(0);
    let run = repo.the_run();
    assert_eq!(repo.node(&run, "test")["status"], "failed");
    assert_eq!(repo.node(&run, "rework")["status"], "success");
    assert_eq!(repo.node(&run, "either")["status"], "success");
    assert_eq!(repo.status(&run)["status"], "success");
}

#[test]
fn a_when_that_does_not_read_the_status_does_not_handle_it() {
    let repo = Repo::new().workflow(
        "unrelated",
        r#"inputs:
  go: {default: "yes"}
nodes:
  - id: test
    bash: exit 1
  - id: report
    depends_on: [test]
    trigger: all_done
    when: "{{inputs.go}}"
    bash: echo report
"#,
    );
    repo.reins(["run", "unrelated"]).run().code(1);
}

#[test]
fn every_ready_node_runs_at_once_by_default() {
    // Sixteen nodes wait (bounded) until all sixteen have started: with the old default of
    // one node per CPU they could not.
    let barrier = r#"mkdir -p started && touch started/$REINS_NODE
for i in $(seq 400); do [ "$(ls started | wc -l)" -ge 16 ] && exit 0; sleep 0.05; done
exit 1"#;
    let mut yaml = String::from("nodes:\n");
    for i in 0..16 {
        yaml.push_str(&format!("  - id: n{i}\n    bash: |\n"));
        for line in barrier.lines() {
            yaml.push_str(&format!("      {line}\n"));
        }
    }
    let repo = Repo::new().workflow("wide", &yaml);
    repo.reins(["run", "wide"]).run().code(0);
}

/// A stand-in agent CLI that notes when two of them overlap, anywhere on the machine.
fn overlap_agent(shared: &std::path::Path) -> String {
    format!(
        r#"#!/usr/bin/env bash
session=x
args=("$@")
for ((i = 0; i < ${{#args[@]}}; i++)); do
  case "${{args[$i]}}" in --session-id | --resume) session="${{args[$((i + 1))]}}" ;; esac
done
mkdir '{busy}' 2>/dev/null || echo overlap >> '{overlaps}'
echo run >> '{runs}'
sleep 0.3
rmdir '{busy}' 2>/dev/null
echo '{{"type":"system","subtype":"init","session_id":"'$session'","model":"m","cwd":"/"}}'
echo '{{"type":"result","subtype":"success","is_error":false,"result":"ok","session_id":"'$session'","num_turns":1,"total_cost_usd":0,"usage":{{}},"permission_denials":[]}}'
"#,
        busy = shared.join("busy").display(),
        overlaps = shared.join("overlaps").display(),
        runs = shared.join("runs").display(),
    )
}

#[test]
fn waiting_for_an_agent_slot_is_recorded_and_shown_live() {
    use std::os::unix::fs::PermissionsExt;
    let shared = tempfile::tempdir().unwrap();
    let script = shared.path().join("agent.sh");
    std::fs::write(
        &script,
        overlap_agent(shared.path()).replace("sleep 0.3", "sleep 1"),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let repo = Repo::new().workflow(
        "agents",
        &format!(
            "agents:\n  claude: {{program: '{}'}}\nnodes:\n  - {{id: a, prompt: one}}\n  - {{id: b, prompt: two}}\n",
            script.display()
        ),
    );
    let state = shared.path().join("state");
    let state = state.to_str().unwrap();
    let mut term = repo.terminal(
        &["run", "agents"],
        &[("XDG_STATE_HOME", state), ("REINS_MAX_AGENTS", "1")],
    );
    term.wait_for("waiting for an agent slot");
    assert_eq!(term.wait(), 0, "{}", term.screen());
    // The second agent waited for the first: the log says so, and for how long.
    let run = repo.the_run();
    let events = repo.events(&run);
    let wait = events
        .iter()
        .position(|e| e["type"] == "agent_slot_wait")
        .unwrap_or_else(|| panic!("{events:#?}"));
    assert_eq!(events[wait]["max_agents"], 1);
    let node = events[wait]["node"].clone();
    let taken = events
        .iter()
        .position(|e| e["type"] == "agent_slot_taken" && e["node"] == node)
        .unwrap_or_else(|| panic!("{events:#?}"));
    assert!(wait < taken);
    assert!(events[taken]["waited_ms"].as_u64().unwrap() > 0);
    // Plain lines say it too.
    let out = repo
        .reins(["run", "agents"])
        .env("XDG_STATE_HOME", state)
        .env("REINS_MAX_AGENTS", "1")
        .run();
    out.code(0);
    assert!(
        out.stdout
            .contains("waiting for an agent slot (1 agent session already running on this machine"),
        "{}",
        out.stdout
    );
}

#[test]
fn agent_sessions_share_one_cap_across_runs() {
    use std::os::unix::fs::PermissionsExt;
    let shared = tempfile::tempdir().unwrap();
    let state = shared.path().join("state");
    let script = shared.path().join("agent.sh");
    std::fs::write(&script, overlap_agent(shared.path())).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let yaml = format!(
        "agents:\n  claude: {{program: '{}'}}\nnodes:\n  - {{id: a, prompt: one}}\n  - {{id: b, prompt: two}}\n  - {{id: c, bash: echo plain}}\n",
        script.display()
    );
    let first = Repo::new().workflow("agents", &yaml);
    let second = Repo::new().workflow("agents", &yaml);
    // Two runs in two repositories, one user: REINS_MAX_AGENTS=1 lets one agent run at a time.
    let runs: Vec<_> = [&first, &second]
        .iter()
        .map(|repo| {
            repo.reins(["run", "agents"])
                .env("XDG_STATE_HOME", state.to_str().unwrap())
                .env("REINS_MAX_AGENTS", "1")
                .spawn()
        })
        .collect();
    for run in runs {
        run.wait().code(0);
    }
    let read = |name: &str| std::fs::read_to_string(shared.path().join(name)).unwrap_or_default();
    assert_eq!(read("runs").lines().count(), 4);
    assert_eq!(read("overlaps"), "", "two agent sessions ran at once");
    // `--max-agents` overrides the environment: two at once may overlap again.
    std::fs::remove_file(shared.path().join("runs")).unwrap();
    first
        .reins(["run", "agents", "--max-agents", "2"])
        .env("XDG_STATE_HOME", state.to_str().unwrap())
        .env("REINS_MAX_AGENTS", "lots")
        .run()
        .code(0);
    assert_eq!(read("runs").lines().count(), 2);
    let bad = first
        .reins(["run", "agents"])
        .env("REINS_MAX_AGENTS", "lots")
        .run();
    bad.code(2);
    assert!(
        bad.stderr.contains("REINS_MAX_AGENTS is `lots`"),
        "{}",
        bad.stderr
    );
}

#[test]
fn a_dry_run_says_a_condition_on_run_time_values_is_decided_at_run_time() {
    let repo = Repo::new().workflow(
        "cond",
        r#"inputs:
  mode: {default: fast}
nodes:
  - id: test
    bash: exit 1
  - id: rework
    depends_on: [test]
    trigger: all_done
    when: "{{eq nodes.test.status 'failed'}}"
    bash: echo rework
  - id: quick
    when: "{{eq inputs.mode 'fast'}}"
    bash: echo quick
"#,
    );
    let out = repo.reins(["run", "cond", "--dry-run"]).run();
    out.code(0);
    assert!(
        out.stdout
            .contains("when: decided at run time ({{eq nodes.test.status 'failed'}})"),
        "{}",
        out.stdout
    );
    // A condition on inputs is known now.
    assert!(out.stdout.contains("when: true"), "{}", out.stdout);
    assert!(!repo.exists(".reins/runs"));
}

#[test]
fn resume_says_what_it_runs() {
    let repo = Repo::new().workflow(
        "gated",
        r#"nodes:
  - id: gate
    approval: Ship it?
  - id: ship
    depends_on: [gate]
    bash: echo shipped
"#,
    );
    repo.reins(["run", "gated"]).run().code(3);
    let run = repo.the_run();
    repo.reins(["approve", &run, "gate"]).run().code(0);
    let out = repo.reins(["resume", &run]).run();
    out.code(0);
    assert!(
        out.stdout
            .contains("resumed: 2 nodes to run (`gate`, `ship`)"),
        "{}",
        out.stdout
    );
    assert!(!out.stderr.contains("changed since"), "{}", out.stderr);
}

#[test]
fn resuming_a_changed_workflow_says_so_and_how_to_run_the_new_one() {
    let repo = Repo::new().workflow("wf", "nodes:\n  - {id: a, bash: '[ -f ok ] || exit 1'}\n");
    repo.reins(["run", "wf"]).run().code(1);
    let run = repo.the_run();
    repo.write("ok", "");
    repo.write(
        ".workflows/wf.yaml",
        "nodes:\n  - {id: a, bash: echo new}\n",
    );
    let out = repo.reins(["resume", &run]).run();
    out.code(0);
    assert!(
        out.stderr.contains(&format!(
            "note: .workflows/wf.yaml changed since run {run} started; resuming runs the workflow as it was then"
        )),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("start a new run: `reins run wf`"),
        "{}",
        out.stderr
    );
    // The frozen version ran.
    assert_eq!(repo.node(&run, "a")["output"], "");
}

#[test]
fn an_interrupted_runs_duration_stops_growing() {
    use nix::sys::signal::Signal;
    use std::time::Duration;
    let repo = Repo::new().workflow(
        "slow",
        "nodes:\n  - {id: a, bash: 'touch started; sleep 30'}\n",
    );
    let running = repo.reins(["run", "slow"]).spawn();
    repo.wait_for("a to start", Duration::from_secs(20), || {
        repo.exists("started")
    });
    let run = repo.the_run();
    repo.wait_for("a's start in the log", Duration::from_secs(20), || {
        repo.events(&run)
            .iter()
            .any(|e| e["type"] == "node_started")
    });
    running.signal(Signal::SIGKILL);
    running.wait();
    let status = repo.status(&run);
    assert_eq!(status["status"], "interrupted");
    let first = repo.reins(["status", &run]).run().stdout;
    std::thread::sleep(Duration::from_millis(1500));
    let second = repo.reins(["status", &run]).run().stdout;
    assert_eq!(first, second, "the duration kept growing");
    assert!(status["finished_at"].is_string(), "{status}");
    assert_eq!(status["nodes"][0]["finished_at"], status["finished_at"]);
}

#[test]
fn a_truncated_output_says_so_everywhere_and_its_file_holds_all_of_it() {
    let repo = Repo::new().workflow(
        "big",
        r#"nodes:
  - id: big
    bash: head -c 3040870 /dev/zero | tr '\0' a
  - id: reader
    depends_on: [big]
    bash: |
      printf '%s' "$REINS_NODE_BIG_OUTPUT" | wc -c > env-size.txt
      wc -c < {{nodes.big.output_file}} > file-size.txt
      test "$REINS_NODE_BIG_OUTPUT_FILE" = {{nodes.big.output_file}}
  - id: bystander
    depends_on: [big]
    bash: echo {{nodes.big.status}}
"#,
    );
    repo.reins(["validate", ".workflows/big.yaml"])
        .run()
        .code(0);
    let out = repo.reins(["run", "big"]).run();
    out.code(0);
    let run = repo.the_run();
    let cut: Vec<_> = repo
        .events(&run)
        .into_iter()
        .filter(|e| e["type"] == "output_truncated")
        .collect();
    assert_eq!(cut.len(), 1, "{cut:?}");
    assert_eq!(cut[0]["node"], "big");
    assert_eq!(cut[0]["kept_bytes"], 1 << 20);
    assert_eq!(cut[0]["total_bytes"], 3040870);
    let said = "output truncated: 1 MiB of 2.9 MiB kept";
    assert!(out.stdout.contains(said), "summary:\n{}", out.stdout);
    let status = repo.reins(["status", &run]).run();
    assert!(status.stdout.contains(said), "status:\n{}", status.stdout);
    // The whole output is in the file; the environment cannot hold even the kept part.
    assert_eq!(repo.read("file-size.txt").trim(), "3040870");
    assert_eq!(repo.read("env-size.txt").trim(), "0");
    let log = std::fs::read_to_string(repo.run_dir(&run).join("nodes/reader/stderr.log")).unwrap();
    assert!(
        log.contains("reins: the output of `big` was cut: output truncated: 1 MiB of 2.9 MiB kept"),
        "{log}"
    );
    // A node that reads only the status gets no note.
    assert!(!repo
        .run_dir(&run)
        .join("nodes/bystander/stderr.log")
        .exists());
}

#[test]
fn a_failed_nodes_line_shows_why_and_where_the_log_is() {
    let repo = Repo::new().workflow(
        "broken",
        r#"nodes:
  - id: test
    bash: |
      echo compiling
      echo "error[E0308]: mismatched types" >&2
      echo "  --> src/lib.rs:3:5" >&2
      exit 1
"#,
    );
    let out = repo.reins(["run", "broken"]).run();
    out.code(1);
    let run = repo.the_run();
    let log = format!("whole log: .reins/runs/{run}/nodes/test/stderr.log");
    // The plain progress line, then the summary.
    for text in [
        "│ error[E0308]: mismatched types",
        "│   --> src/lib.rs:3:5",
        &log,
    ] {
        assert_eq!(
            out.stdout.matches(text).count(),
            2,
            "{text}\n{}",
            out.stdout
        );
    }
    assert!(!out.stdout.contains("│ compiling"), "{}", out.stdout);
    let status = repo.reins(["status", &run]).run();
    assert!(status.stdout.contains(&log), "{}", status.stdout);
    let failed: Vec<_> = repo
        .events(&run)
        .into_iter()
        .filter(|e| e["type"] == "node_failed")
        .collect();
    assert_eq!(
        failed[0]["log_tail"],
        serde_json::json!(["error[E0308]: mismatched types", "  --> src/lib.rs:3:5"])
    );
}

#[test]
fn an_api_that_cannot_be_reached_shows_up_as_retries_within_seconds() {
    let Some(claude) = support::require_claude() else {
        return;
    };
    let api = support::MockApi::start();
    let repo = Repo::new().workflow(
        "ask",
        &format!(
            "agents:\n  claude: {{program: '{}'}}\nnodes:\n  - {{id: ask, prompt: hello}}\n",
            claude.display()
        ),
    );
    let home = repo.join(".claude-home");
    std::fs::create_dir_all(&home).unwrap();
    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let mut cmd = repo
        .reins(["run", "ask"])
        .timeout(std::time::Duration::from_secs(90));
    for (key, value) in support::claude_env(&api, &home) {
        cmd = cmd.env(&key, &value);
    }
    let started = std::time::Instant::now();
    let out = cmd
        .env("ANTHROPIC_BASE_URL", &url)
        .env("CLAUDE_CODE_MAX_RETRIES", "2")
        .run();
    out.code(1);
    assert!(
        out.stdout
            .contains("ask retrying (1 of 2): connection refused"),
        "{}",
        out.stdout
    );
    let run = repo.the_run();
    let retries: Vec<_> = repo
        .events(&run)
        .into_iter()
        .filter(|e| e["type"] == "agent_retry")
        .collect();
    assert_eq!(retries.len(), 2, "{retries:?}");
    // The first retry is on record within seconds of the start, not minutes.
    let first = repo
        .events(&run)
        .into_iter()
        .find(|e| e["type"] == "agent_retry")
        .unwrap();
    assert_eq!(first["attempt"], 1);
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
    // The failure says what the agent said, and where its transcript is.
    assert!(
        out.stdout.contains(&format!(
            "whole log: .reins/runs/{run}/nodes/ask/transcript.jsonl"
        )),
        "{}",
        out.stdout
    );
}
