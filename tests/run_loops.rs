//! Loop nodes: `until`, `until_bash`, `max_iterations`, resume in the middle of a loop.

mod support;

use std::time::Duration;

use nix::sys::signal::Signal;
use support::run_repo::Repo;

fn iterations(repo: &Repo, run: &str) -> Vec<(u64, String, String)> {
    repo.events(run)
        .iter()
        .filter(|e| e["type"] == "loop_iteration")
        .map(|e| {
            (
                e["iteration"].as_u64().unwrap(),
                e["output"].as_str().unwrap().to_string(),
                e["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_loop_stops_when_until_holds() {
    let repo = Repo::new().workflow(
        "count",
        r#"nodes:
  - id: count
    loop:
      bash: echo "$REINS_LOOP_ITERATION"; echo {{loop.iteration}} >> ran.txt
      until: "{{eq output '3'}}"
      max_iterations: 10
  - id: after
    depends_on: [count]
    bash: echo got {{nodes.count.output}}
"#,
    );
    repo.reins(["run", "count"]).run().code(0);
    let run = repo.the_run();
    assert_eq!(repo.lines("ran.txt"), ["1", "2", "3"]);
    let its = iterations(&repo, &run);
    assert_eq!(
        its.iter().map(|i| i.2.as_str()).collect::<Vec<_>>(),
        ["continue", "continue", "done"]
    );
    assert_eq!(repo.node(&run, "count")["output"], "3");
    assert_eq!(repo.node(&run, "after")["output"], "got 3");
    let logs = repo.reins(["logs", &run, "count"]).run();
    logs.code(0);
    let expected = "==> count: iteration 1 <==\n1\n==> count: iteration 2 <==\n2\n==> count: iteration 3 <==\n3\n";
    assert_eq!(
        logs.stdout, expected,
        "each iteration's output under its header, in order"
    );
    let follow = repo.reins(["logs", &run, "count", "--follow"]).run();
    follow.code(0);
    assert_eq!(
        follow.stdout, expected,
        "following a settled loop prints it all"
    );
}

/// `reins logs -f` of the two-iteration loop below.
const TWO_STEPS: &str = "==> steps: iteration 1 <==\nstep 1\n==> steps: iteration 2 <==\nstep 2\n";

#[test]
fn logs_follow_a_live_loop_through_its_iterations() {
    let repo = Repo::new().workflow(
        "steps",
        r#"nodes:
  - id: steps
    loop:
      bash: |
        echo step {{loop.iteration}}
        for i in $(seq 1200); do [ -f go-{{loop.iteration}} ] && break; sleep 0.05; done
      until: "{{eq loop.iteration 2}}"
      max_iterations: 5
"#,
    );
    let running = repo
        .reins(["run", "steps"])
        .timeout(Duration::from_secs(90))
        .spawn();
    repo.wait_for("the first iteration", Duration::from_secs(60), || {
        repo.run_ids().len() == 1
            && repo.read(&format!(
                ".reins/runs/{}/nodes/steps/iteration-1/stdout.log",
                repo.the_run()
            )) == "step 1\n"
    });
    let follow = repo
        .reins(["logs", "last", "steps", "--follow"])
        .timeout(Duration::from_secs(90))
        .spawn();
    repo.wait_for("iteration 1 to be shown", Duration::from_secs(60), || {
        follow.stdout_so_far() == "==> steps: iteration 1 <==\nstep 1\n"
    });
    repo.write("go-1", "");
    repo.wait_for("iteration 2 to be shown", Duration::from_secs(60), || {
        follow.stdout_so_far() == TWO_STEPS
    });
    repo.write("go-2", "");
    let out = follow.wait();
    out.code(0);
    assert_eq!(out.stdout, TWO_STEPS);
    running.wait().code(0);
}

#[test]
fn a_loop_stops_when_until_bash_exits_0_and_sees_the_previous_output() {
    let repo = Repo::new().workflow(
        "grow",
        r#"nodes:
  - id: grow
    loop:
      bash: echo x{{loop.previous}}
      until_bash: test {{loop.iteration}} -ge 2 && test -n "$REINS_OUTPUT"
      max_iterations: 5
"#,
    );
    repo.reins(["run", "grow"]).run().code(0);
    let run = repo.the_run();
    let its = iterations(&repo, &run);
    assert_eq!(its.len(), 2);
    assert_eq!(its[0].1, "x");
    assert_eq!(its[1].1, "xx");
    assert_eq!(repo.node(&run, "grow")["output"], "xx");
}

#[test]
fn exhausting_max_iterations_fails_the_node_and_says_so() {
    let repo = Repo::new().workflow(
        "never",
        r#"nodes:
  - id: never
    loop:
      bash: echo again
      until: "false"
      max_iterations: 3
  - id: after
    depends_on: [never]
    bash: echo never
"#,
    );
    repo.reins(["run", "never"]).run().code(1);
    let run = repo.the_run();
    let node = repo.node(&run, "never");
    assert_eq!(node["status"], "failed");
    let error = node["error"].as_str().unwrap();
    assert!(error.contains("max_iterations"), "{error}");
    assert!(error.contains('3'), "{error}");
    assert_eq!(iterations(&repo, &run).len(), 3);
    assert_eq!(repo.node(&run, "after")["status"], "skipped");
    // Resuming the exhausted loop starts it over.
    repo.reins(["resume", &run]).run().code(1);
    let numbers: Vec<u64> = iterations(&repo, &run).iter().map(|i| i.0).collect();
    assert_eq!(numbers, [1, 2, 3, 1, 2, 3]);
}

#[test]
fn a_failing_iteration_is_retried_not_the_whole_loop() {
    let repo = Repo::new().workflow(
        "flaky",
        r#"nodes:
  - id: flaky
    retries: 1
    loop:
      bash: |
        echo {{loop.iteration}} >> ran.txt
        if [ {{loop.iteration}} = 2 ] && [ ! -f failed-once ]; then touch failed-once; exit 1; fi
        echo {{loop.iteration}}
      until: "{{eq output '3'}}"
      max_iterations: 5
"#,
    );
    repo.reins(["run", "flaky"]).run().code(0);
    assert_eq!(repo.lines("ran.txt"), ["1", "2", "2", "3"]);
}

#[test]
fn resume_continues_from_the_next_iteration() {
    let repo = Repo::new().workflow(
        "long",
        r#"nodes:
  - id: long
    loop:
      bash: |
        echo {{loop.iteration}} >> ran.txt
        if [ {{loop.iteration}} = 3 ] && [ ! -f resumed ]; then
          touch stuck; sleep 300 & wait
        fi
        echo out-{{loop.iteration}} prev-{{loop.previous}}
      until: "{{eq loop.iteration 4}}"
      max_iterations: 6
"#,
    );
    let running = repo.reins(["run", "long"]).spawn();
    repo.wait_for("iteration 3 to start", Duration::from_secs(20), || {
        repo.exists("stuck")
    });
    // Events reach the log through a writer thread: wait until the two finished iterations
    // are on disk, so the kill lands in the third one (a kill before that would rightly run
    // the second again).
    let run = repo.the_run();
    repo.wait_for("two iterations in the log", Duration::from_secs(20), || {
        iterations(&repo, &run).len() == 2
    });
    running.signal(Signal::SIGKILL);
    running.wait();
    assert_eq!(iterations(&repo, &run).len(), 2);
    repo.write("resumed", "");
    repo.reins(["resume", &run]).run().code(0);
    assert_eq!(repo.lines("ran.txt"), ["1", "2", "3", "3", "4"]);
    let its = iterations(&repo, &run);
    let numbers: Vec<u64> = its.iter().map(|i| i.0).collect();
    assert_eq!(numbers, [1, 2, 3, 4]);
    assert_eq!(its[2].1, "out-3 prev-out-2 prev-out-1 prev-");
    assert_eq!(repo.node(&run, "long")["output"], its[3].1);
}

/// An agent body on the real CLI (against the offline API stand-in): iterations continue one
/// conversation by default, and `fresh: true` starts a new one each time.
#[test]
fn an_agent_loop_continues_its_session_unless_fresh() {
    use support::{claude_env, require_claude, MockApi, Turn};
    let Some(claude) = require_claude() else {
        return;
    };
    let api = MockApi::start();
    // Later iterations' requests also hold the earlier turns: the later marker comes first.
    api.rule("MARK-IT2", [Turn::text("DONE")]);
    api.rule("MARK-IT1", [Turn::text("working")]);
    let repo = Repo::new();
    for (name, fresh) in [("sticky", "false"), ("fresh", "true")] {
        repo.write(
            &format!(".workflows/{name}.yaml"),
            &format!(
                "agents:\n  claude: {{program: '{}'}}\nnodes:
  - id: impl
    loop:
      prompt: MARK-IT{{{{loop.iteration}}}} go on
      until: \"{{{{contains output 'DONE'}}}}\"
      max_iterations: 3
      fresh: {fresh}
",
                claude.display()
            ),
        );
    }
    let home = repo.join(".claude-home");
    std::fs::create_dir_all(&home).unwrap();
    let reins = |name: &str| {
        let mut cmd = repo.reins(["run", name]).timeout(Duration::from_secs(150));
        for (key, value) in claude_env(&api, &home) {
            cmd = cmd.env(&key, &value);
        }
        cmd.run()
    };
    for (name, same_session) in [("sticky", true), ("fresh", false)] {
        let before = repo.run_ids();
        reins(name).code(0);
        let run = repo
            .run_ids()
            .into_iter()
            .find(|id| !before.contains(id))
            .unwrap();
        let its = iterations(&repo, &run);
        assert_eq!(its.len(), 2, "{name}: {its:?}");
        assert_eq!(its[0].1, "working");
        assert_eq!(its[1].1, "DONE");
        let sessions: Vec<String> = repo
            .events(&run)
            .iter()
            .filter(|e| e["type"] == "agent_session")
            .map(|e| e["session_id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(sessions.len(), 2, "{name}");
        assert_eq!(
            sessions[0] == sessions[1],
            same_session,
            "{name}: {sessions:?}"
        );
        assert_eq!(repo.node(&run, "impl")["output"], "DONE");
    }
}

#[test]
fn until_bash_reads_the_output_from_a_file_whatever_its_size() {
    // 200 KiB: over what the environment takes (100 KiB), under the output limit.
    let repo = Repo::new().workflow(
        "big",
        r#"nodes:
  - id: grow
    loop:
      bash: head -c "$((REINS_LOOP_ITERATION * 100000))" /dev/zero | tr '\0' a
      until_bash: |
        echo "env ${#REINS_OUTPUT} file $(wc -c < "$REINS_OUTPUT_FILE")" >> sizes.txt
        test "$(wc -c < "$REINS_OUTPUT_FILE")" -ge 200000
      max_iterations: 3
"#,
    );
    repo.reins(["run", "big"]).run().code(0);
    assert_eq!(
        repo.lines("sizes.txt"),
        ["env 100000 file 100000", "env 0 file 200000"]
    );
}

#[test]
fn a_loop_records_the_truncation_of_the_output_it_settles_with() {
    let repo = Repo::new().workflow(
        "cut",
        r#"nodes:
  - id: shrink
    loop:
      bash: |
        if [ "$REINS_LOOP_ITERATION" = 1 ]; then head -c 1500000 /dev/zero | tr '\0' a; else echo small; fi
      until: "{{eq loop.iteration 2}}"
      max_iterations: 2
  - id: big
    loop:
      bash: head -c 1500000 /dev/zero | tr '\0' b
      until: "true"
      max_iterations: 1
  - id: reader
    depends_on: [big]
    bash: wc -c < {{nodes.big.output_file}}
"#,
    );
    repo.reins(["run", "cut"]).run().code(0);
    let run = repo.the_run();
    let cut: Vec<_> = repo
        .events(&run)
        .into_iter()
        .filter(|e| e["type"] == "output_truncated")
        .collect();
    // Only `big` settled with a cut output; `shrink`'s first iteration's does not count.
    assert_eq!(cut.len(), 1, "{cut:#?}");
    assert_eq!(cut[0]["node"], "big");
    assert_eq!(cut[0]["kept_bytes"], 1 << 20);
    assert_eq!(cut[0]["total_bytes"], 1_500_000);
    assert!(repo.node(&run, "shrink")["output_truncated"].is_null());
    assert_eq!(
        repo.node(&run, "big")["output_truncated"]["total_bytes"],
        1_500_000
    );
    // The whole output is the node's `output.txt`, as for a bash node.
    assert_eq!(repo.node(&run, "reader")["output"], "1500000");
}
