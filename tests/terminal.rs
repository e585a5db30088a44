//! On a terminal: the inline gate prompt (Ctrl-C, answers from another shell, one summary).

mod support;

use support::run_repo::Repo;

const GATED: &str = r#"nodes:
  - id: a
    bash: echo plan
  - id: gate
    depends_on: [a]
    approval: "Ship {{nodes.a.output}}?"
  - id: after
    depends_on: [gate]
    bash: echo shipped {{nodes.gate.output}}
"#;

const PLAIN: &[(&str, &str)] = &[("NO_COLOR", "1")];

#[test]
fn ctrl_c_at_the_gate_prompt_ends_it_and_the_run_keeps_waiting() {
    let repo = Repo::new().workflow("gated", GATED);
    let mut term = repo.terminal(&["run", "gated"], PLAIN);
    term.wait_for("approve gate? [y/N]");
    term.type_text("\x03");
    assert_eq!(term.wait(), 130, "{}", term.screen());
    let run = repo.the_run();
    assert!(
        term.screen()
            .contains(&format!("not answered: run {run} still waits at `gate`")),
        "{}",
        term.screen()
    );
    assert_eq!(repo.status(&run)["status"], "waiting");
    assert_eq!(repo.node(&run, "after")["status"], "pending");
}

#[test]
fn an_answer_from_another_shell_ends_the_prompt_with_who_answered() {
    let repo = Repo::new().workflow("gated", GATED);
    let mut term = repo.terminal(&["run", "gated"], PLAIN);
    term.wait_for("approve gate? [y/N]");
    let run = repo.the_run();
    repo.reins(["approve", &run, "gate", "-m", "from-elsewhere"])
        .run()
        .code(0);
    term.wait_for("`gate` was approved by");
    assert_eq!(term.wait(), 0, "{}", term.screen());
    assert!(term.screen().contains("from another shell: from-elsewhere"));
    assert_eq!(repo.node(&run, "after")["output"], "shipped from-elsewhere");
}

#[test]
fn answering_at_the_prompt_prints_one_summary_at_the_end() {
    let repo = Repo::new().workflow("gated", GATED);
    let mut term = repo.terminal(&["run", "gated"], PLAIN);
    term.wait_for("approve gate? [y/N]");
    term.type_text("y\r");
    term.wait_for("comment (optional):");
    term.type_text("looks good\r");
    assert_eq!(term.wait(), 0, "{}", term.screen());
    let screen = term.screen();
    assert_eq!(screen.matches("logs: ").count(), 1, "{screen}");
    assert!(!screen.contains("answer `gate` with"), "{screen}");
    let run = repo.the_run();
    assert_eq!(repo.node(&run, "after")["output"], "shipped looks good");
}

/// A gate that waits while a slow node runs, and a node that fails without failing the run.
const MIXED: &str = r#"nodes:
  - id: ok
    bash: echo fine
  - id: bad
    bash: exit 1
    continue_on_error: true
  - id: gate
    depends_on: [ok]
    approval: "Go?"
  - id: slow
    depends_on: [ok]
    bash: sleep 1.5
"#;

#[test]
fn the_live_view_marks_nodes_in_colour_and_counts_them() {
    let repo = Repo::new().workflow("mixed", MIXED);
    let mut term = repo.terminal(&["run", "mixed", "--no-input"], &[]);
    term.wait_for("1 running · 1 waiting · \x1b[31m1 failed\x1b[0m");
    assert_eq!(term.wait(), 3, "{}", term.screen());
    let screen = term.screen();
    for shown in [
        "\x1b[32m✓\x1b[0m ok succeeded in",
        "\x1b[31m✗\x1b[0m bad failed in",
        "\x1b[33m?\x1b[0m gate waits for approval: Go?",
        "\x1b[32m✓\x1b[0m slow succeeded in",
    ] {
        assert!(screen.contains(shown), "{shown:?} not in:\n{screen}");
    }
    // Without colour: the same marks, plain.
    let mut term = repo.terminal(&["run", "mixed", "--no-input"], PLAIN);
    assert_eq!(term.wait(), 3, "{}", term.screen());
    assert!(
        term.screen().contains("✗ bad failed in"),
        "{}",
        term.screen()
    );
    assert!(!term.screen().contains("\x1b[31m"), "{}", term.screen());
}

#[test]
fn the_live_view_shows_a_running_agents_current_tool() {
    let Some(claude) = support::require_claude() else {
        return;
    };
    let api = support::MockApi::start();
    api.rule(
        "MARK-TOOL",
        [
            support::Turn::tool(
                "Bash",
                serde_json::json!({"command": "sleep 3; echo slept", "description": "wait"}),
            ),
            support::Turn::text("done"),
        ],
    );
    let repo = Repo::new().workflow(
        "agent",
        &format!(
            "agents:\n  claude: {{program: '{}', allowed_tools: [Bash]}}\nnodes:\n  - id: think\n    prompt: MARK-TOOL\n",
            claude.display()
        ),
    );
    let home = repo.join(".claude-home");
    std::fs::create_dir_all(&home).unwrap();
    let env = support::claude_env(&api, &home);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut term = repo.terminal(&["run", "agent"], &env);
    term.wait_for("Bash: sleep 3; echo slept");
    term.wait_for("0/1 done · 1 running · 0 waiting · 0 failed");
    assert_eq!(term.wait(), 0, "{}", term.screen());
    assert!(
        term.screen().contains("think succeeded in"),
        "{}",
        term.screen()
    );
}

#[test]
fn a_gate_of_a_child_run_is_asked_at_the_prompt_by_its_path() {
    let repo = Repo::new().workflow("gated", GATED).workflow(
        "parent",
        "nodes:\n  - id: sub\n    workflow: gated\n  - id: after\n    depends_on: [sub]\n    bash: echo \"parent got {{nodes.sub.output}}\"\n",
    );
    let mut term = repo.terminal(&["run", "parent"], PLAIN);
    term.wait_for("approve sub/gate? [y/N]");
    term.type_text("y\r");
    term.wait_for("comment (optional):");
    term.type_text("through the parent\r");
    assert_eq!(term.wait(), 0, "{}", term.screen());
    let parent = repo.run_ids().into_iter().find(|id| {
        !repo
            .read(&format!(".reins/runs/{id}/run.json"))
            .contains("\"parent\": {")
    });
    let parent = parent.expect("the parent run");
    assert_eq!(
        repo.node(&parent, "after")["output"],
        "parent got shipped through the parent"
    );
}

#[test]
fn the_live_view_counts_a_fan_out_of_many_on_one_line() {
    // Twelve instances: nine succeed, one fails, two run until `go` exists.
    let repo = Repo::new().workflow(
        "fan",
        r#"nodes:
  - id: review
    for_each: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]
    key: "k{{item}}"
    continue_on_error: true
    bash: |
      if [ "{{item}}" = 9 ]; then exit 1; fi
      if [ "{{item}}" -ge 10 ]; then while [ ! -f go ]; do sleep 0.05; done; fi
"#,
    );
    let mut term = repo.terminal(&["run", "fan", "--no-input"], PLAIN);
    term.wait_for("9 ✓ · 2 running · 1 ✗");
    let screen = term.screen();
    assert!(screen.contains("  review ×12 "), "{screen}");
    // The running instances stand under their fan-out's line; those that succeeded scroll
    // no line, the one that failed does.
    assert!(screen.contains("    review[k10]"), "{screen}");
    assert!(screen.contains("✗ review[k9] failed in"), "{screen}");
    assert!(!screen.contains("review[k3] succeeded"), "{screen}");
    repo.write("go", "");
    assert_eq!(term.wait(), 0, "{}", term.screen());
    let screen = term.screen();
    assert!(screen.contains("✗ review failed in"), "{screen}");
    assert!(
        screen.contains("12 instances: 1 failed, 11 success"),
        "{screen}"
    );
}
