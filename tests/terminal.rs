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
