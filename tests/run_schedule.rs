//! `reins run`: scheduling, trigger rules, `when`, skips, retries, inputs, dry runs.

mod support;

use support::run_repo::Repo;

#[test]
fn independent_nodes_run_at_the_same_time() {
    // Each node waits (bounded) until all four have started: only a parallel run passes.
    let barrier = r#"mkdir -p started && touch started/$REINS_NODE
for i in $(seq 600); do [ "$(ls started | wc -l)" -ge 4 ] && exit 0; sleep 0.05; done
exit 1"#;
    let mut yaml = String::from("concurrency: 4\nnodes:\n");
    for id in ["a", "b", "c", "d"] {
        yaml.push_str(&format!("  - id: {id}\n    bash: |\n"));
        for line in barrier.lines() {
            yaml.push_str(&format!("      {line}\n"));
        }
    }
    let repo = Repo::new().workflow("par", &yaml);
    repo.reins(["run", "par"]).run().code(0);
}

#[test]
fn concurrency_limits_nodes_running_at_once() {
    let body = r#"mkdir slots/$REINS_NODE; ls slots | wc -l >> max.txt; sleep 0.2; rmdir slots/$REINS_NODE"#;
    let mut yaml = String::from("nodes:\n");
    for i in 0..6 {
        yaml.push_str(&format!("  - id: n{i}\n    bash: {body}\n"));
    }
    let repo = Repo::new().workflow("lim", &yaml).file("slots/.keep", "");
    std::fs::remove_file(repo.join("slots/.keep")).unwrap();
    repo.reins(["run", "lim", "--concurrency", "2"])
        .run()
        .code(0);
    let most: u32 = repo
        .lines("max.txt")
        .iter()
        .map(|l| l.trim().parse::<u32>().unwrap())
        .max()
        .unwrap();
    assert!(most <= 2, "{} nodes ran at once", most);
    assert_eq!(repo.lines("max.txt").len(), 6);
}

#[test]
fn a_node_starts_when_its_own_dependencies_settle_not_its_layer() {
    // `slow` is in the first layer with `fast`; `after-fast` must not wait for `slow`:
    // it finishes while `slow` still waits for its marker.
    let repo = Repo::new().workflow(
        "rq",
        r#"concurrency: 4
nodes:
  - id: slow
    bash: for i in $(seq 600); do [ -f after-fast.done ] && exit 0; sleep 0.05; done; exit 1
  - id: fast
    bash: "true"
  - id: after-fast
    depends_on: [fast]
    bash: touch after-fast.done
"#,
    );
    repo.reins(["run", "rq"]).run().code(0);
}

#[test]
fn every_trigger_rule_and_skip_propagation() {
    let repo = Repo::new().workflow(
        "triggers",
        r#"nodes:
  - id: ok
    bash: echo ok
  - id: bad
    bash: exit 1
    continue_on_error: true
  - id: skipped
    when: "false"
    bash: echo never
  - id: all-success-ok
    depends_on: [ok]
    bash: echo ran
  - id: all-success-bad
    depends_on: [ok, bad]
    bash: echo never
  - id: downstream-of-skip
    depends_on: [all-success-bad]
    bash: echo never
  - id: all-done
    depends_on: [ok, bad, skipped]
    trigger: all_done
    bash: echo {{nodes.bad.status}} {{nodes.skipped.status}}
  - id: one-success
    depends_on: [bad, ok]
    trigger: one_success
    bash: echo ran
  - id: one-success-none
    depends_on: [bad, skipped]
    trigger: one_success
    bash: echo never
  - id: none-failed
    depends_on: [ok, skipped]
    trigger: none_failed
    bash: echo ran
  - id: none-failed-bad
    depends_on: [ok, bad]
    trigger: none_failed
    bash: echo never
"#,
    );
    // `bad` failed under continue_on_error: the run succeeds.
    repo.reins(["run", "triggers"]).run().code(0);
    let run = repo.the_run();
    let status = |id: &str| repo.node(&run, id)["status"].as_str().unwrap().to_string();
    assert_eq!(status("ok"), "success");
    assert_eq!(status("bad"), "failed");
    assert_eq!(status("skipped"), "skipped");
    assert_eq!(status("all-success-ok"), "success");
    assert_eq!(status("all-success-bad"), "skipped");
    assert_eq!(status("downstream-of-skip"), "skipped");
    assert_eq!(status("all-done"), "success");
    assert_eq!(status("one-success"), "success");
    assert_eq!(status("one-success-none"), "skipped");
    assert_eq!(status("none-failed"), "success");
    assert_eq!(status("none-failed-bad"), "skipped");
    let node = repo.node(&run, "all-done");
    assert_eq!(node["output"], "failed skipped");
    let reason = |id: &str| {
        repo.node(&run, id)["skip_reason"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        reason("all-success-bad"),
        "dependency `bad` failed (trigger `all_success`)"
    );
    assert_eq!(
        reason("downstream-of-skip"),
        "dependency `all-success-bad` was skipped (trigger `all_success`)"
    );
    assert!(reason("skipped").contains("`when` is false"));
    assert!(!repo
        .read(&format!(".reins/runs/{run}/events.jsonl"))
        .contains("never\""));
}

#[test]
fn when_conditions_read_inputs_and_outputs() {
    let repo = Repo::new().workflow(
        "when",
        r#"inputs:
  mode: { default: fast }
nodes:
  - id: probe
    bash: |
      echo '{"deploy": true, "count": 0}'
  - id: deploy
    depends_on: [probe]
    when: "{{nodes.probe.json.deploy}}"
    bash: echo deploying
  - id: count
    depends_on: [probe]
    when: "{{nodes.probe.json.count}}"
    bash: echo never
  - id: slow-only
    when: "{{eq inputs.mode 'slow'}}"
    bash: echo slow
"#,
    );
    repo.reins(["run", "when"]).run().code(0);
    let run = repo.the_run();
    assert_eq!(repo.node(&run, "deploy")["status"], "success");
    assert_eq!(repo.node(&run, "count")["status"], "skipped");
    assert_eq!(repo.node(&run, "slow-only")["status"], "skipped");
    repo.reins(["run", "when", "--input", "mode=slow"])
        .run()
        .code(0);
    assert_eq!(repo.node("last", "slow-only")["status"], "success");
}

#[test]
fn retries_run_a_failing_node_again_until_it_succeeds() {
    let repo = Repo::new().workflow(
        "retry",
        r#"nodes:
  - id: flaky
    retries: 3
    bash: |
      echo "attempt $REINS_ATTEMPT" >> attempts.txt
      [ "$(wc -l < attempts.txt)" -ge 3 ]
  - id: hopeless
    retries: 1
    continue_on_error: true
    bash: echo x >> hopeless.txt; exit 7
"#,
    );
    repo.reins(["run", "retry"]).run().code(0);
    assert_eq!(
        repo.lines("attempts.txt"),
        ["attempt 1", "attempt 2", "attempt 3"]
    );
    assert_eq!(repo.lines("hopeless.txt").len(), 2);
    let run = repo.the_run();
    let flaky = repo.node(&run, "flaky");
    assert_eq!(flaky["status"], "success");
    assert_eq!(flaky["attempt"], 3);
    let hopeless = repo.node(&run, "hopeless");
    assert_eq!(hopeless["status"], "failed");
    assert_eq!(hopeless["exit_code"], 7);
    let retried = repo
        .events(&run)
        .iter()
        .filter(|e| e["type"] == "node_failed" && e["will_retry"] == true)
        .count();
    assert_eq!(retried, 3);
}

#[test]
fn a_failed_node_fails_the_run_with_exit_code_1() {
    let repo = Repo::new().workflow(
        "fail",
        "nodes:\n  - {id: a, bash: exit 4}\n  - {id: b, depends_on: [a], bash: echo never}\n",
    );
    let out = repo.reins(["run", "fail"]).run();
    out.code(1);
    assert!(out.stdout.contains("exited with code 4"), "{}", out.stdout);
    assert!(out.stdout.contains("reins resume"), "{}", out.stdout);
    let events = repo.events(&repo.the_run());
    assert_eq!(events.last().unwrap()["type"], "run_finished");
    assert_eq!(events.last().unwrap()["status"], "failed");
}

#[test]
fn outputs_env_and_cwd() {
    let repo = Repo::new()
        .workflow(
            "env",
            r#"env:
  GREETING: "hello {{inputs.name}}"
inputs:
  name: { required: true }
nodes:
  - id: first
    bash: |
      printf 'line\n\n\n'
  - id: second
    depends_on: [first]
    cwd: sub
    env:
      FROM_FIRST: "{{nodes.first.output}}!"
    bash: echo "$GREETING|$FROM_FIRST|$REINS_NODE_FIRST_OUTPUT|$(basename "$PWD")|$REINS_INPUT_NAME"
"#,
        )
        .file("sub/.keep", "");
    repo.reins(["run", "env", "-i", "name=Ann"]).run().code(0);
    let run = repo.the_run();
    assert_eq!(repo.node(&run, "first")["output"], "line");
    assert_eq!(
        repo.node(&run, "second")["output"],
        "hello Ann|line!|line|sub|Ann"
    );
    let artifacts = repo.run_dir(&run).join("artifacts");
    assert!(artifacts.is_dir());
    assert!(repo.run_dir(&run).join("nodes/second/command.sh").is_file());
}

#[test]
fn inputs_are_checked_before_anything_runs() {
    let repo = Repo::new().workflow(
        "inp",
        "inputs:\n  issue: { required: true }\nnodes:\n  - {id: a, bash: 'echo {{inputs.issue}} > ran.txt'}\n",
    );
    let out = repo.reins(["run", "inp"]).run();
    out.code(2);
    assert!(
        out.stderr.contains("missing required input `issue`"),
        "{}",
        out.stderr
    );
    let out = repo.reins(["run", "inp", "--input", "isue=1"]).run();
    out.code(2);
    assert!(
        out.stderr.contains("did you mean `issue`"),
        "{}",
        out.stderr
    );
    assert!(repo.run_ids().is_empty());
    assert!(!repo.exists("ran.txt"));
}

#[test]
fn an_invalid_workflow_is_refused_with_diagnostics() {
    let repo = Repo::new().workflow(
        "bad",
        "nodes:\n  - {id: a, bash: echo, depends_on: [nope]}\n",
    );
    let out = repo.reins(["run", "bad"]).run();
    out.code(2);
    assert!(out.stderr.contains("nope"), "{}", out.stderr);
    assert!(out.stderr.contains("bad.yaml:"), "{}", out.stderr);
    let out = repo.reins(["run", "missing-workflow"]).run();
    out.code(2);
    assert!(
        out.stderr.contains("no workflow named `missing-workflow`"),
        "{}",
        out.stderr
    );
    assert!(repo.run_ids().is_empty());
}

#[test]
fn dry_run_prints_rendered_commands_in_schedule_order_and_runs_nothing() {
    let repo = Repo::new().workflow(
        "dry",
        r#"inputs:
  msg: { default: "it's here" }
nodes:
  - id: last
    depends_on: [middle]
    bash: touch ran-last
  - id: middle
    depends_on: [first]
    bash: echo {{nodes.first.output}}
  - id: first
    bash: echo {{inputs.msg}} > ran-first
"#,
    );
    let out = repo.reins(["run", "dry", "--dry-run"]).run();
    out.code(0);
    let first = out.stdout.find("1. first").expect(&out.stdout);
    let middle = out.stdout.find("2. middle").expect(&out.stdout);
    let last = out.stdout.find("3. last").expect(&out.stdout);
    assert!(first < middle && middle < last);
    // The script as it runs, its values beside it.
    assert!(
        out.stdout
            .contains("$ echo \"$REINS_VALUE_1\" > ran-first\n     REINS_VALUE_1='it'\\''s here'"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("<output of first>"), "{}", out.stdout);
    assert!(!repo.exists("ran-first") && !repo.exists("ran-last"));
    assert!(repo.run_ids().is_empty());
}

#[test]
fn dry_run_shows_the_agent_each_node_runs_on_and_honours_agent() {
    let repo = Repo::new().workflow(
        "agents",
        r#"agents:
  reviewer: { model: opus }
nodes:
  - id: ask
    prompt: hello
    allowed_tools: [Read]
  - id: review
    agent: reviewer
    prompt: review
"#,
    );
    let out = repo.reins(["run", "agents", "--dry-run"]).run();
    out.code(0);
    assert!(
        out.stdout.contains("agent: claude (claude)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("agent: reviewer (claude)"),
        "{}",
        out.stdout
    );
    // `--agent` switches the default, as in a real run: `reviewer` uses the default too.
    let out = repo
        .reins(["run", "agents", "--dry-run", "--agent", "codex"])
        .run();
    out.code(0);
    assert!(
        out.stdout.contains("agent: codex (codex)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("agent: reviewer (codex)"),
        "{}",
        out.stdout
    );
    let out = repo
        .reins(["run", "agents", "--dry-run", "--agent", "nobody"])
        .run();
    out.code(2);
    assert!(
        out.stderr.contains("unknown agent `nobody`"),
        "{}",
        out.stderr
    );
    assert!(repo.run_ids().is_empty());
}

#[test]
fn json_prints_the_event_stream() {
    let repo = Repo::new().workflow("j", "nodes:\n  - {id: a, bash: echo hi}\n");
    let out = repo.reins(["run", "j", "--json"]).run();
    out.code(0);
    let types: Vec<String> = out
        .stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        types,
        [
            "run_started",
            "node_started",
            "node_succeeded",
            "run_finished"
        ]
    );
    let on_disk: Vec<String> = repo
        .events(&repo.the_run())
        .iter()
        .map(|e| e.to_string())
        .collect();
    let printed: Vec<String> = out
        .stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(on_disk, printed);
}
