//! Snapshots of what people read: the plain progress of `reins run` and its summary, `status`
//! and `logs`, with times, durations and run ids filtered out.

mod support;

use support::run_repo::Repo;

/// Runs one after another (so the lines come in one order): a success, a failure that does not
/// fail the run, a loop of two iterations, then a gate.
const STEPS: &str = r#"nodes:
  - id: fetch
    bash: echo fetched; echo a warning >&2
  - id: lint
    depends_on: [fetch]
    bash: echo two problems; exit 1
    continue_on_error: true
  - id: fix
    depends_on: [lint]
    trigger: all_done
    loop:
      bash: echo pass {{loop.iteration}}
      until_bash: '[ "$REINS_LOOP_ITERATION" -ge 2 ]'
      max_iterations: 3
  - id: ship
    depends_on: [fix]
    approval: "Ship after {{nodes.fix.output}}?"
  - id: announce
    depends_on: [ship]
    bash: echo shipped
"#;

fn snapshot(name: &str, text: &str) {
    insta::with_settings!({
        filters => vec![
            (r"\d{8}-\d{6}-[0-9a-f]{4}", "[RUN]"),
            (r"\d{2}:\d{2}:\d{2}\.\d{3}", "[TIME]"),
            (r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", "[DATE]"),
            (r" *\b\d+(\.\d+)?m?s\b", " [DUR]"),
            (r"(approved|rejected) by [^:\s]+", "$1 by [USER]"),
        ],
    }, {
        insta::assert_snapshot!(name, text);
    });
}

#[test]
fn plain_progress_summary_status_and_logs() {
    let repo = Repo::new().workflow("steps", STEPS);
    let out = repo.reins(["run", "steps"]).run();
    out.code(3);
    snapshot("run_plain_progress_and_summary", &out.stdout);

    let run = repo.the_run();
    let out = repo.reins(["status", &run]).run();
    out.code(0);
    snapshot("status_waiting", &out.stdout);

    let out = repo.reins(["logs", &run]).run();
    out.code(0);
    snapshot("logs_all_nodes", &out.stdout);

    repo.reins(["reject", &run, "ship", "-m", "not today"])
        .run()
        .code(0);
    let out = repo.reins(["status", &run]).run();
    snapshot("status_rejected_not_resumed", &out.stdout);
    let out = repo.reins(["resume", &run]).run();
    out.code(1);
    snapshot("resume_after_rejection", &out.stdout);
}

/// Twelve instances, one at a time (so the lines come in one order): `k9` fails.
const FAN: &str = r#"concurrency: 1
nodes:
  - id: review
    for_each: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]
    key: "k{{item}}"
    continue_on_error: true
    bash: |
      echo "reviewed {{item}}"
      test "{{item}}" != 9
  - id: pair
    for_each: [a, b]
    bash: echo pair {{item}}
  - id: report
    depends_on: [review, pair]
    trigger: all_done
    bash: echo done
"#;

#[test]
fn a_fan_out_of_many_is_counted_in_status_logs_and_dry_run() {
    let repo = Repo::new().workflow("fan", FAN);
    let out = repo.reins(["run", "fan", "--dry-run"]).run();
    out.code(0);
    snapshot("fan_out_dry_run", &out.stdout);
    let out = repo.reins(["graph", "fan"]).run();
    out.code(0);
    snapshot("fan_out_graph", &out.stdout);

    repo.reins(["run", "fan"]).run().code(0);
    let run = repo.the_run();
    let out = repo.reins(["status", &run]).run();
    out.code(0);
    snapshot("fan_out_status", &out.stdout);
    let out = repo.reins(["logs", &run]).run();
    out.code(0);
    snapshot("fan_out_logs_all_nodes", &out.stdout);
    // The fan-out's own logs are its instances', each under a header.
    let out = repo.reins(["logs", &run, "pair"]).run();
    out.code(0);
    snapshot("fan_out_logs_of_the_fan_out", &out.stdout);
    let out = repo.reins(["logs", "-f", &run, "review"]).run();
    out.code(2);
    assert!(
        out.stderr.contains("`review` is a fan-out"),
        "{}",
        out.stderr
    );
}
