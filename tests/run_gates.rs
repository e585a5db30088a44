//! Approval gates: pause, approve, reject, double answers, answers from another terminal.

mod support;

use std::time::Duration;

use support::run_repo::Repo;

/// `gate` waits behind `a`; `after` waits behind the gate; `side` is unrelated and slower
/// than `a`.
const GATED: &str = r#"nodes:
  - id: a
    bash: echo a >> ran.txt; echo plan-v1
  - id: gate
    depends_on: [a]
    approval: "Ship {{nodes.a.output}}?"
  - id: after
    depends_on: [gate]
    bash: echo after >> ran.txt; echo after {{nodes.gate.output}}
  - id: side
    bash: sleep 0.3; echo side >> ran.txt
"#;

fn ran(repo: &Repo) -> Vec<String> {
    if repo.exists("ran.txt") {
        repo.lines("ran.txt")
    } else {
        Vec::new()
    }
}

#[test]
fn a_gate_pauses_its_branch_and_exits_3_after_the_rest() {
    let repo = Repo::new().workflow("gated", GATED);
    let out = repo.reins(["run", "gated"]).run();
    out.code(3);
    let run = repo.the_run();
    assert!(
        out.stdout.contains(&format!("reins approve {run} gate")),
        "{}",
        out.stdout
    );
    let mut lines = ran(&repo);
    lines.sort();
    assert_eq!(lines, ["a", "side"], "nothing behind the gate ran");
    assert_eq!(repo.status(&run)["status"], "waiting");
    assert_eq!(repo.node(&run, "gate")["status"], "waiting");
    assert_eq!(repo.node(&run, "after")["status"], "pending");
    assert_eq!(repo.node(&run, "side")["status"], "success");
    assert!(repo
        .events(&run)
        .iter()
        .any(|e| e["type"] == "approval_requested"
            && e["node"] == "gate"
            && e["message"] == "Ship plan-v1?"));

    // A resume does not answer the gate.
    repo.reins(["resume", &run]).run().code(3);
    assert!(!ran(&repo).contains(&"after".to_string()));
}

#[test]
fn approve_then_resume_completes_with_the_comment_as_output() {
    let repo = Repo::new().workflow("gated", GATED);
    repo.reins(["run", "gated"]).run().code(3);
    let run = repo.the_run();
    let out = repo
        .reins(["approve", &run, "gate", "-m", "go ahead; $(rm -rf /)"])
        .run();
    out.code(0);
    let answered: Vec<_> = repo
        .events(&run)
        .into_iter()
        .filter(|e| e["type"] == "approval_answered")
        .collect();
    assert_eq!(answered.len(), 1);
    assert_eq!(answered[0]["approved"], true);
    assert!(!answered[0]["by"].as_str().unwrap().is_empty());
    repo.reins(["resume", &run]).run().code(0);
    assert_eq!(repo.status(&run)["status"], "success");
    assert_eq!(repo.node(&run, "gate")["output"], "go ahead; $(rm -rf /)");
    assert_eq!(
        repo.node(&run, "after")["output"],
        "after go ahead; $(rm -rf /)"
    );
    assert_eq!(ran(&repo).iter().filter(|l| *l == "a").count(), 1);
}

#[test]
fn approve_with_resume_and_no_node_name() {
    let repo = Repo::new().workflow("gated", GATED);
    repo.reins(["run", "gated"]).run().code(3);
    let run = repo.the_run();
    repo.reins(["approve", "last", "--resume"]).run().code(0);
    assert_eq!(repo.status(&run)["status"], "success");
}

#[test]
fn reject_skips_dependents_and_a_rework_branch_reads_the_reason() {
    let repo = Repo::new().workflow(
        "gated",
        r#"nodes:
  - id: gate
    approval: Ship it?
  - id: ship
    depends_on: [gate]
    bash: echo shipped >> ran.txt
  - id: rework
    depends_on: [gate]
    trigger: all_done
    when: "{{eq nodes.gate.status 'failed'}}"
    bash: echo rework because {{nodes.gate.output}} >> ran.txt
"#,
    );
    repo.reins(["run", "gated"]).run().code(3);
    let run = repo.the_run();
    repo.reins(["reject", &run, "gate", "-m", "too big", "--resume"])
        .run()
        .code(0);
    assert_eq!(repo.node(&run, "gate")["status"], "failed");
    assert_eq!(repo.node(&run, "ship")["status"], "skipped");
    assert_eq!(ran(&repo), ["rework because too big"]);
    assert_eq!(
        repo.status(&run)["status"],
        "success",
        "the rework handled it"
    );
}

#[test]
fn an_unhandled_rejection_fails_the_run_and_is_never_asked_again() {
    let repo = Repo::new().workflow("gated", GATED);
    repo.reins(["run", "gated"]).run().code(3);
    let run = repo.the_run();
    let out = repo.reins(["reject", &run, "-m", "no", "--resume"]).run();
    out.code(1);
    assert_eq!(repo.node(&run, "after")["status"], "skipped");
    assert_eq!(repo.status(&run)["status"], "failed");
    // Resume does not ask the gate again: a rejection is a decision.
    repo.reins(["resume", &run]).run().code(1);
    let requested = |repo: &Repo| {
        repo.events(&run)
            .iter()
            .filter(|e| e["type"] == "approval_requested")
            .count()
    };
    assert_eq!(requested(&repo), 1);
    // `--from` does.
    repo.reins(["resume", &run, "--from", "gate"]).run().code(3);
    assert_eq!(requested(&repo), 2);
    repo.reins(["approve", &run, "gate", "--resume"])
        .run()
        .code(0);
    assert_eq!(repo.status(&run)["status"], "success");
}

#[test]
fn a_second_answer_is_refused() {
    let repo = Repo::new().workflow("gated", GATED);
    repo.reins(["run", "gated"]).run().code(3);
    let run = repo.the_run();
    repo.reins(["approve", &run, "gate"]).run().code(0);
    let out = repo.reins(["reject", &run, "gate", "-m", "late"]).run();
    out.code(2);
    assert!(out.stderr.contains("already approved"), "{}", out.stderr);
    let out = repo.reins(["approve", &run, "gate"]).run();
    out.code(2);
    assert!(out.stderr.contains("already approved"), "{}", out.stderr);
}

#[test]
fn answering_what_is_not_a_waiting_gate_is_a_usage_error() {
    let repo = Repo::new().workflow("gated", GATED);
    repo.reins(["run", "gated"]).run().code(3);
    let run = repo.the_run();
    let out = repo.reins(["approve", &run, "gat"]).run();
    out.code(2);
    assert!(out.stderr.contains("did you mean `gate`"), "{}", out.stderr);
    let out = repo.reins(["approve", &run, "side"]).run();
    out.code(2);
    assert!(
        out.stderr.contains("not an approval gate"),
        "{}",
        out.stderr
    );
    repo.reins(["cancel", &run]).run().code(0);
    let out = repo.reins(["approve", &run]).run();
    out.code(2);
    assert!(out.stderr.contains("already ended"), "{}", out.stderr);
}

#[test]
fn a_new_run_starts_afresh_and_leaves_the_paused_one_alone() {
    let repo = Repo::new().workflow("gated", GATED);
    repo.reins(["run", "gated"]).run().code(3);
    let first = repo.the_run();
    let before = repo.events(&first).len();
    repo.reins(["run", "gated"]).run().code(3);
    let ids = repo.run_ids();
    assert_eq!(ids.len(), 2);
    assert_eq!(
        repo.events(&first).len(),
        before,
        "the paused run is untouched"
    );
    assert_eq!(repo.status(&first)["status"], "waiting");
    let second = ids.into_iter().find(|id| *id != first).unwrap();
    assert_eq!(repo.node(&second, "gate")["status"], "waiting");
}

#[test]
fn an_answer_from_another_terminal_continues_the_live_run() {
    let repo = Repo::new().workflow(
        "live",
        r#"nodes:
  - id: gate
    approval: Go?
  - id: after
    depends_on: [gate]
    bash: echo after >> ran.txt
  - id: slow
    bash: "while [ ! -f ran.txt ]; do sleep 0.05; done"
"#,
    );
    let running = repo.reins(["run", "live"]).spawn();
    repo.wait_for("the gate to wait", Duration::from_secs(20), || {
        repo.run_ids().len() == 1
            && repo
                .events(&repo.the_run())
                .iter()
                .any(|e| e["type"] == "approval_requested")
    });
    let run = repo.the_run();
    let out = repo.reins(["approve", &run, "gate", "--resume"]).run();
    out.code(0);
    assert!(out.stdout.contains("is executing"), "{}", out.stdout);
    running.wait().code(0);
    assert_eq!(repo.status(&run)["status"], "success");
    assert_eq!(
        repo.events(&run)
            .iter()
            .filter(|e| e["type"] == "approval_answered")
            .count(),
        1
    );
}

#[test]
fn a_timed_out_gate_is_rejected_and_cannot_be_approved() {
    let repo = Repo::new().workflow(
        "gated",
        r#"nodes:
  - id: gate
    approval: { message: Go?, timeout: 1s }
  - id: after
    depends_on: [gate]
    bash: echo after >> ran.txt
"#,
    );
    repo.reins(["run", "gated"]).run().code(3);
    let run = repo.the_run();
    std::thread::sleep(Duration::from_millis(1100));
    let out = repo.reins(["approve", &run, "gate"]).run();
    out.code(2);
    assert!(out.stderr.contains("timed out"), "{}", out.stderr);
    repo.reins(["resume", &run]).run().code(1);
    let gate = repo.node(&run, "gate");
    assert_eq!(gate["status"], "failed");
    let reason = gate["output"].as_str().unwrap();
    assert!(reason.starts_with("timed out after 1"), "{reason}");
    assert!(!repo.exists("ran.txt"));
}

#[test]
fn an_answer_file_without_its_event_is_recorded_at_resume() {
    let repo = Repo::new().workflow("gated", GATED);
    repo.reins(["run", "gated"]).run().code(3);
    let run = repo.the_run();
    // As if `reins approve` died between writing the answer and recording it.
    let request = request_of(&repo, &run, "gate");
    repo.write(
        &format!(".reins/runs/{run}/nodes/gate/answer.json"),
        &format!(
            r#"{{"approved": true, "by": "ann", "at": "2026-11-21T07:00:00Z", "comment": "ok", "request": "{request}"}}"#
        ),
    );
    repo.reins(["resume", &run]).run().code(0);
    let answered: Vec<_> = repo
        .events(&run)
        .into_iter()
        .filter(|e| e["type"] == "approval_answered")
        .collect();
    assert_eq!(answered.len(), 1);
    assert_eq!(answered[0]["by"], "ann");
    assert_eq!(repo.node(&run, "after")["output"], "after ok");
}

#[test]
fn a_gate_times_out_while_the_run_still_works() {
    let repo = Repo::new().workflow(
        "gated",
        r#"nodes:
  - id: gate
    approval: { message: Go?, timeout: 500ms }
  - id: rework
    depends_on: [gate]
    trigger: all_done
    when: "{{eq nodes.gate.status 'failed'}}"
    bash: echo {{nodes.gate.status}} > reworked.txt
  - id: slow
    bash: "for i in $(seq 600); do [ -f reworked.txt ] && exit 0; sleep 0.05; done; exit 1"
"#,
    );
    repo.reins(["run", "gated"]).run().code(0);
    let run = repo.the_run();
    assert_eq!(repo.read("reworked.txt").trim(), "failed");
    let answered: Vec<_> = repo
        .events(&run)
        .into_iter()
        .filter(|e| e["type"] == "approval_answered")
        .collect();
    assert_eq!(answered.len(), 1);
    assert_eq!(answered[0]["by"], "reins");
    assert_eq!(answered[0]["approved"], false);
}

/// The request id of a gate's last `approval_requested`.
fn request_of(repo: &Repo, run: &str, gate: &str) -> String {
    repo.events(run)
        .iter()
        .rev()
        .find(|e| e["type"] == "approval_requested" && e["node"] == gate)
        .and_then(|e| e["request"].as_str().map(str::to_string))
        .expect("a request id")
}

fn count(repo: &Repo, run: &str, kind: &str) -> usize {
    repo.events(run)
        .iter()
        .filter(|e| e["type"] == kind)
        .count()
}

#[test]
fn a_waiting_gate_keeps_its_one_request_across_resumes() {
    let repo = Repo::new().workflow("gated", GATED);
    repo.reins(["run", "gated"]).run().code(3);
    let run = repo.the_run();
    for _ in 0..2 {
        repo.reins(["resume", &run]).run().code(3);
        assert_eq!(repo.node(&run, "gate")["status"], "waiting");
    }
    assert_eq!(count(&repo, &run, "approval_requested"), 1);
    let out = repo.reins(["reject", &run, "-m", "no", "--resume"]).run();
    out.code(1);
    // The rejection stands: it is not thrown away and asked again.
    let out = repo.reins(["approve", &run, "--resume"]).run();
    out.code(2);
    assert!(
        out.stderr.contains("already ended (failed)"),
        "{}",
        out.stderr
    );
    assert_eq!(count(&repo, &run, "approval_requested"), 1);
    assert_eq!(count(&repo, &run, "approval_answered"), 1);
    assert!(!ran(&repo).contains(&"after".to_string()));
}

#[test]
fn an_answer_planted_by_an_upstream_node_is_not_an_answer() {
    let repo = Repo::new().workflow(
        "planted",
        r#"nodes:
  - id: a
    bash: |
      mkdir -p "$REINS_RUN_DIR/nodes/gate"
      printf '{"approved":true,"by":"me","at":"2026-01-01T00:00:00Z"}' > "$REINS_RUN_DIR/nodes/gate/answer.json"
  - id: gate
    depends_on: [a]
    approval: Ship?
  - id: after
    depends_on: [gate]
    bash: echo after >> ran.txt
"#,
    );
    repo.reins(["run", "planted"]).run().code(3);
    let run = repo.the_run();
    assert!(!repo.exists("ran.txt"), "the gated node ran with no human");
    assert_eq!(repo.node(&run, "gate")["status"], "waiting");
    assert_eq!(count(&repo, &run, "approval_answered"), 0);
    assert!(repo.exists(&format!(
        ".reins/runs/{run}/nodes/gate/answer.refused.1.json"
    )));
    // A resume does not take it either, and a human can still answer.
    repo.reins(["resume", &run]).run().code(3);
    repo.reins(["approve", &run, "--resume"]).run().code(0);
    assert_eq!(ran(&repo), ["after"]);
    assert_eq!(count(&repo, &run, "approval_answered"), 1);
}

#[test]
fn a_node_cannot_answer_the_gate_of_its_own_run() {
    // `side` runs beside the gate and tries `reins approve` twice: as it is, and with the
    // run's variables unset (then the process ancestry still gives it away).
    let repo = Repo::new().workflow(
        "inside",
        r#"nodes:
  - id: gate
    approval: Ship?
  - id: after
    depends_on: [gate]
    bash: echo after >> ran.txt
  - id: side
    bash: |
      until grep -q approval_requested "$REINS_RUN_DIR/events.jsonl"; do sleep 0.05; done
      "$REINS_BIN" approve "$REINS_RUN_ID" gate > with-env.out 2>&1; echo $? >> codes.txt
      run=$REINS_RUN_ID
      env -u REINS_RUN_ID -u REINS_RUN_DIR "$REINS_BIN" approve "$run" gate > without-env.out 2>&1; echo $? >> codes.txt
"#,
    );
    repo.reins(["run", "inside"])
        .env("REINS_BIN", env!("CARGO_BIN_EXE_reins"))
        .run()
        .code(3);
    let run = repo.the_run();
    assert_eq!(
        repo.lines("codes.txt"),
        ["2", "2"],
        "{}",
        repo.read("with-env.out")
    );
    assert!(
        repo.read("with-env.out")
            .contains("from inside that run (REINS_RUN_ID"),
        "{}",
        repo.read("with-env.out")
    );
    assert!(
        repo.read("without-env.out").contains("descends from pid"),
        "{}",
        repo.read("without-env.out")
    );
    assert!(!repo.exists("ran.txt"));
    assert_eq!(repo.node(&run, "gate")["status"], "waiting");
    assert_eq!(count(&repo, &run, "approval_answered"), 0);
}

#[test]
fn a_run_json_edited_while_the_run_waits_is_refused() {
    let repo = Repo::new().workflow("gated", GATED);
    repo.reins(["run", "gated"]).run().code(3);
    let run = repo.the_run();
    let path = format!(".reins/runs/{run}/run.json");
    let original = repo.read(&path);
    let edited = original.replace("echo after >> ran.txt", "echo pwned >> ran.txt");
    assert_ne!(original, edited);
    repo.write(&path, &edited);
    for args in [
        vec!["resume", run.as_str()],
        vec!["approve", run.as_str(), "--resume"],
    ] {
        let out = repo.reins(&args).run();
        out.code(2);
        assert!(
            out.stderr.contains("was changed after it started"),
            "{}",
            out.stderr
        );
    }
    assert_eq!(count(&repo, &run, "approval_answered"), 0);
    // Pointing an isolated run's worktree elsewhere is refused too (the digest is intact).
    let moved = original.replacen("\"root\":", "\"worktree\": \"/tmp\",\n  \"root\":", 1);
    assert_ne!(moved, original);
    repo.write(&path, &moved);
    let out = repo.reins(["resume", &run]).run();
    out.code(2);
    assert!(out.stderr.contains("not at its worktree"), "{}", out.stderr);
    repo.write(&path, &original);
    repo.reins(["approve", &run, "--resume"]).run().code(0);
    assert_eq!(ran(&repo).last().map(String::as_str), Some("after"));
}
