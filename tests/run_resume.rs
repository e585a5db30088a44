//! `reins resume`: after `kill -9`, after a failure, with `--from`; settled nodes never run twice.

mod support;

use std::io::Write;
use std::time::Duration;

use nix::sys::signal::Signal;
use support::run_repo::{process_alive, wait_for, Repo};

/// a -> b -> c -> d, and e independent of them; every node appends its id to ran.txt.
/// `c` runs long the first time (until the file `resumed` exists).
const CHAIN: &str = r#"nodes:
  - id: a
    bash: echo a >> ran.txt
  - id: b
    depends_on: [a]
    bash: echo b >> ran.txt; echo b-output
  - id: c
    depends_on: [b]
    bash: |
      echo c >> ran.txt
      if [ ! -f resumed ]; then
        echo $$ > c.pid
        sleep 300 & echo $! > c-child.pid
        touch c.started
        wait
      fi
      echo c saw {{nodes.b.output}}
  - id: d
    depends_on: [c]
    bash: echo d >> ran.txt
  - id: e
    bash: echo e >> ran.txt
"#;

fn count(repo: &Repo, id: &str) -> usize {
    repo.lines("ran.txt").iter().filter(|l| *l == id).count()
}

#[test]
fn kill_9_then_resume_never_runs_a_settled_node_twice() {
    let repo = Repo::new().workflow("chain", CHAIN);
    let running = repo.reins(["run", "chain"]).spawn();
    repo.wait_for("node c to run", Duration::from_secs(20), || {
        repo.exists("c.started") && repo.exists("c-child.pid")
    });
    let run = repo.the_run();
    // The log shows c running (everything it depends on is recorded as settled before it),
    // and the independent e settled.
    repo.wait_for(
        "c's start and e's end in the log",
        Duration::from_secs(20),
        || {
            let events = repo.events(&run);
            let has = |kind: &str, node: &str| {
                events
                    .iter()
                    .any(|e| e["type"] == kind && e["node"] == node)
            };
            has("node_started", "c") && has("node_succeeded", "e")
        },
    );
    let (c, c_child) = (repo.pid("c.pid"), repo.pid("c-child.pid"));
    running.signal(Signal::SIGKILL);
    let out = running.wait();
    assert_eq!(out.code, -1, "killed by a signal");

    // Its children die with it: the direct child by the parent-death signal, the rest of the
    // group by the watchdog.
    wait_for(
        "node c's shell to die with reins",
        Duration::from_secs(10),
        || !process_alive(c),
    );
    wait_for(
        "node c's child to die with reins",
        Duration::from_secs(10),
        || !process_alive(c_child),
    );

    let status = repo.status(&run);
    assert_eq!(status["status"], "interrupted");
    assert_eq!(repo.node(&run, "c")["status"], "running");

    repo.write("resumed", "");
    let out = repo.reins(["resume", "last"]).run();
    out.code(0);
    assert_eq!(repo.status(&run)["status"], "success");
    // Settled before the kill: exactly once. Running at the kill: again (at-least-once).
    assert_eq!(count(&repo, "a"), 1);
    assert_eq!(count(&repo, "b"), 1);
    assert_eq!(count(&repo, "e"), 1);
    assert_eq!(count(&repo, "c"), 2);
    assert_eq!(count(&repo, "d"), 1);
    assert_eq!(repo.node(&run, "c")["output"], "c saw b-output");
    let resumed: Vec<_> = repo
        .events(&run)
        .into_iter()
        .filter(|e| e["type"] == "run_resumed")
        .collect();
    assert_eq!(resumed.len(), 1);
    assert_eq!(resumed[0]["reset"], serde_json::json!(["c"]));
}

#[test]
fn resume_after_a_failure_runs_only_what_did_not_succeed() {
    let repo = Repo::new().workflow(
        "fix",
        r#"nodes:
  - id: setup
    bash: echo setup >> ran.txt
  - id: test
    depends_on: [setup]
    bash: echo test >> ran.txt; test -f fixed
  - id: ship
    depends_on: [test]
    bash: echo ship >> ran.txt
"#,
    );
    repo.reins(["run", "fix"]).run().code(1);
    let run = repo.the_run();
    assert_eq!(repo.node(&run, "ship")["status"], "skipped");
    repo.write("fixed", "");
    repo.reins(["resume", &run[..12]]).run().code(0);
    assert_eq!(repo.lines("ran.txt"), ["setup", "test", "test", "ship"]);
    let out = repo.reins(["resume", "last"]).run();
    out.code(0);
    assert!(out.stdout.contains("already succeeded"), "{}", out.stdout);
    assert_eq!(repo.lines("ran.txt").len(), 4);
}

#[test]
fn resume_from_a_node_runs_it_and_everything_downstream_again() {
    let repo = Repo::new().workflow("chain", CHAIN).file("resumed", "");
    repo.reins(["run", "chain"]).run().code(0);
    repo.reins(["resume", "last", "--from", "c"]).run().code(0);
    assert_eq!(count(&repo, "a"), 1);
    assert_eq!(count(&repo, "b"), 1);
    assert_eq!(count(&repo, "e"), 1);
    assert_eq!(count(&repo, "c"), 2);
    assert_eq!(count(&repo, "d"), 2);
    let out = repo.reins(["resume", "last", "--from", "cc"]).run();
    out.code(2);
    assert!(out.stderr.contains("did you mean `c`"), "{}", out.stderr);
}

#[test]
fn a_torn_last_line_after_a_crash_is_ignored() {
    let repo = Repo::new().workflow("chain", CHAIN).file("resumed", "");
    repo.reins(["run", "chain"]).run().code(0);
    let run = repo.the_run();
    // Cut the log after `a` succeeded, mid-way through the next line, as a crash would.
    let path = repo.run_dir(&run).join("events.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let keep: Vec<&str> = text
        .lines()
        .take_while(|l| !l.contains(r#""node":"b""#))
        .collect();
    let mut cut = keep.join("\n");
    cut.push_str("\n{\"seq\":99,\"ts\":\"2026-01-01T00:00:00Z\",\"type\":\"node_st");
    std::fs::write(&path, &cut).unwrap();
    assert_eq!(repo.status(&run)["status"], "interrupted");
    repo.reins(["resume", "last"]).run().code(0);
    assert_eq!(count(&repo, "a"), 1);
    assert_eq!(count(&repo, "b"), 2);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains("node_st\n") && !text.contains("\"seq\":99"));
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    f.write_all(b"garbage\n").unwrap();
    assert_eq!(repo.status(&run)["status"], "success");
}

#[test]
fn a_failure_after_a_resume_shows_only_its_own_log_lines() {
    let repo = Repo::new().workflow(
        "flaky",
        r#"nodes:
  - id: t
    bash: |
      n=$(( $(cat count 2>/dev/null || echo 0) + 1 )); echo $n > count
      if [ $n = 1 ]; then echo first problem >&2; echo another >&2; fi
      echo "problem of run $n" >&2
      exit 1
"#,
    );
    repo.reins(["run", "flaky"]).run().code(1);
    let run = repo.the_run();
    repo.reins(["resume", &run]).run().code(1);
    let tails: Vec<_> = repo
        .events(&run)
        .into_iter()
        .filter(|e| e["type"] == "node_failed")
        .map(|e| e["log_tail"].clone())
        .collect();
    assert_eq!(
        tails,
        [
            serde_json::json!(["first problem", "another", "problem of run 1"]),
            serde_json::json!(["problem of run 2"]),
        ]
    );
}

#[test]
fn a_failure_continue_on_error_accepted_stays_settled_on_resume() {
    let repo = Repo::new().workflow(
        "accepted",
        r#"nodes:
  - id: lint
    bash: echo lint >> ran.txt; exit 1
    continue_on_error: true
  - id: gate
    approval: Ship?
  - id: ship
    depends_on: [gate]
    bash: echo ship >> ran.txt
"#,
    );
    repo.reins(["run", "accepted"]).run().code(3);
    let run = repo.the_run();
    repo.reins(["reject", &run, "gate", "-m", "no"])
        .run()
        .code(0);
    repo.reins(["resume", &run]).run().code(1);
    assert_eq!(repo.lines("ran.txt"), ["lint"]);
    let status = repo.status(&run);
    assert_eq!(status["nodes"][0]["status"], "failed", "{status}");
}
