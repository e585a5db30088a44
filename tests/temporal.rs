//! Runs on a real Temporal dev server (started per test on loopback, with a temporary database)
//! executed by real `reins worker` processes in their own checkouts.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::run_repo::{process_alive, wait_for, Repo, Running};
use support::temporal::DevServer;

/// A worker in its own checkout.
struct Worker {
    repo: Repo,
    running: Option<Running>,
}

impl Worker {
    fn start(server: &DevServer, queue: &str) -> Worker {
        let repo = Repo::new();
        let mut w = Worker {
            repo,
            running: None,
        };
        w.restart(server, queue);
        w
    }

    fn restart(&mut self, server: &DevServer, queue: &str) {
        let running = self
            .repo
            .reins([
                "worker",
                "--temporal",
                &server.address,
                "--task-queue",
                queue,
            ])
            .timeout(Duration::from_secs(600))
            .spawn();
        wait_for("the worker to poll", Duration::from_secs(30), || {
            running.stdout_so_far().contains("polling")
        });
        self.running = Some(running);
    }

    fn kill9(&mut self) {
        if let Some(r) = self.running.take() {
            r.signal(nix::sys::signal::Signal::SIGKILL);
            let _ = r.wait();
        }
    }

    /// Node ids of the events of `kind` in the run's local log.
    fn events(&self, run: &str, kind: &str) -> Vec<String> {
        self.repo
            .events(run)
            .iter()
            .filter(|e| e["type"] == kind)
            .map(|e| e["node"].as_str().unwrap_or_default().to_string())
            .collect()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            r.signal(nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            let pid = r.pid();
            while process_alive(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if process_alive(pid) {
                r.signal(nix::sys::signal::Signal::SIGKILL);
            }
            let _ = r.wait();
        }
    }
}

/// `reins run WF --temporal ...` in `repo`: the run id it printed.
fn submit(repo: &Repo, server: &DevServer, queue: &str, wf: &str, env: &[(&str, &str)]) -> String {
    let mut cmd = repo.reins([
        "run",
        wf,
        "--temporal",
        &server.address,
        "--task-queue",
        queue,
    ]);
    for (k, v) in env {
        cmd = cmd.env(k, v);
    }
    let out = cmd.run();
    out.code(0);
    out.stdout
        .split_whitespace()
        .nth(1)
        .expect("`run ID ...`")
        .to_string()
}

/// `reins status RUN --temporal ... --format json`.
fn status(repo: &Repo, server: &DevServer, run: &str) -> Value {
    let out = repo
        .reins([
            "status",
            run,
            "--temporal",
            &server.address,
            "--format",
            "json",
        ])
        .run();
    out.code(0);
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

fn phase(v: &Value) -> String {
    v["phase"].as_str().unwrap_or_default().to_string()
}

fn wait_phase(repo: &Repo, server: &DevServer, run: &str, want: &[&str], limit: Duration) -> Value {
    let start = Instant::now();
    loop {
        let v = status(repo, server, run);
        if want.contains(&phase(&v).as_str()) {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "run {run} did not reach {want:?} in {limit:?}: {v:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

const SPREAD: &str = "nodes:
  - id: one
    bash: echo \"$REINS_RUN_ID\" >> effects-one; sleep 0.3
  - id: two
    depends_on: [one]
    bash: echo \"$REINS_RUN_ID\" >> effects-two
";

#[test]
fn ten_runs_submitted_to_two_workers_complete_and_are_spread_over_both() {
    let Some(server) = DevServer::start() else {
        return;
    };
    let queue = "spread";
    let a = Worker::start(&server, queue);
    let b = Worker::start(&server, queue);
    let submitter = Repo::new().workflow("spread", SPREAD);
    let runs: Vec<String> = (0..10)
        .map(|_| submit(&submitter, &server, queue, "spread", &[]))
        .collect();
    let mut queues = std::collections::BTreeSet::new();
    for run in &runs {
        let v = wait_phase(
            &submitter,
            &server,
            run,
            &["success", "failed"],
            Duration::from_secs(120),
        );
        assert_eq!(phase(&v), "success", "{v:#}");
        queues.insert(v["placement"]["queue"].as_str().unwrap().to_string());
        assert_eq!(v["nodes"]["one"], "success");
        assert_eq!(v["nodes"]["two"], "success");
    }
    assert_eq!(
        queues.len(),
        2,
        "the runs went to one worker only: {queues:?}"
    );
    // Each run's nodes ran once, on the worker that holds it, recorded in its local store.
    for run in &runs {
        let holders: Vec<&Worker> = [&a, &b]
            .into_iter()
            .filter(|w| w.repo.run_dir(run).is_dir())
            .collect();
        assert_eq!(holders.len(), 1, "run {run} is in {} stores", holders.len());
        assert_eq!(holders[0].events(run, "node_succeeded"), ["one", "two"]);
    }
}

const SLOW: &str = "nodes:
  - id: first
    bash: echo \"$REINS_RUN_ID first\" >> effects
  - id: slow
    depends_on: [first]
    bash: |
      echo \"$REINS_RUN_ID slow-start\" >> effects
      sleep 3
      echo \"$REINS_RUN_ID slow-end\" >> effects
  - id: last
    depends_on: [slow]
    bash: echo \"$REINS_RUN_ID last\" >> effects
";

#[test]
fn a_worker_killed_mid_node_and_restarted_completes_every_run_and_reruns_no_settled_node() {
    let Some(server) = DevServer::start() else {
        return;
    };
    let queue = "kill";
    let mut w = Worker::start(&server, queue);
    let submitter = Repo::new().workflow("slow", SLOW);
    let env = [("REINS_TEMPORAL_HEARTBEAT_TIMEOUT", "4s")];
    let runs: Vec<String> = (0..2)
        .map(|_| submit(&submitter, &server, queue, "slow", &env))
        .collect();
    let effects = w.repo.join("effects");
    let count = |what: &str| {
        std::fs::read_to_string(&effects)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.ends_with(what))
            .count()
    };
    wait_for("a node in the middle", Duration::from_secs(60), || {
        count(" slow-start") >= 1
    });
    w.kill9();
    let killed = Instant::now();
    w.restart(&server, queue);
    for run in &runs {
        let v = wait_phase(
            &submitter,
            &server,
            run,
            &["success", "failed"],
            Duration::from_secs(120),
        );
        assert_eq!(phase(&v), "success", "{v:#}");
    }
    eprintln!(
        "recovery: every run done {:.1}s after the kill (heartbeat timeout 4s)",
        killed.elapsed().as_secs_f64()
    );
    let text = std::fs::read_to_string(&effects).unwrap();
    for run in &runs {
        let of = |what: &str| {
            text.lines()
                .filter(|l| *l == format!("{run} {what}"))
                .count()
        };
        assert_eq!(of("first"), 1, "a settled node ran again:\n{text}");
        assert!(of("slow-start") >= 1 && of("slow-end") >= 1, "{text}");
        assert_eq!(of("last"), 1, "{text}");
    }
}

const DECIDED: &str = "nodes:
  - id: list
    bash: printf 'a\\nb\\nc\\n'
  - id: each
    depends_on: [list]
    for_each: '{{nodes.list.output}}'
    max_parallel: 2
    bash: echo \"$REINS_ITEM\" >> fan
  - id: flaky
    retries: 2
    bash: n=$(cat tries 2>/dev/null || echo 0); n=$((n+1)); echo $n > tries; test $n -ge 2
  - id: never
    depends_on: [list]
    when: \"{{eq nodes.list.output 'nope'}}\"
    bash: echo never >> never
  - id: count
    loop:
      bash: echo \"$REINS_LOOP_ITERATION\" >> iterations
      until_bash: '[ \"$REINS_LOOP_ITERATION\" -ge 3 ]'
      max_iterations: 5
";

/// The workflow drives the engine's machine: a fan-out expands on the worker and gathers its
/// instances, a retry waits on a durable timer, a false `when` skips, a loop runs its
/// iterations; the worker's log records it all with the events of a local run.
#[test]
fn fan_out_retries_when_and_loops_are_decided_by_the_machine_in_the_workflow() {
    let Some(server) = DevServer::start() else {
        return;
    };
    let queue = "decided";
    let w = Worker::start(&server, queue);
    let submitter = Repo::new().workflow("decided", DECIDED);
    let run = submit(&submitter, &server, queue, "decided", &[]);
    let v = wait_phase(
        &submitter,
        &server,
        &run,
        &["success", "failed"],
        Duration::from_secs(120),
    );
    assert_eq!(phase(&v), "success", "{v:#}");
    assert_eq!(v["nodes"]["never"], "skipped", "{v:#}");
    assert_eq!(v["nodes"]["each"], "success", "{v:#}");
    assert_eq!(v["nodes"]["each[1]"], "success", "{v:#}");
    let mut fan: Vec<String> = w.repo.read("fan").lines().map(String::from).collect();
    fan.sort();
    assert_eq!(fan, ["a", "b", "c"], "each item once");
    assert_eq!(w.repo.read("iterations").lines().count(), 3);
    assert!(!w.repo.join("never").exists());
    assert_eq!(w.events(&run, "node_skipped"), ["never"]);
    assert_eq!(w.events(&run, "fan_out_expanded"), ["each"]);
    let flaky: Vec<Value> = w
        .repo
        .events(&run)
        .into_iter()
        .filter(|e| e["node"] == "flaky")
        .collect();
    let kinds: Vec<(&str, bool)> = flaky
        .iter()
        .map(|e| (e["type"].as_str().unwrap(), e["will_retry"] == true))
        .collect();
    assert_eq!(
        kinds,
        [
            ("node_started", false),
            ("node_failed", true),
            ("node_started", false),
            ("node_succeeded", false)
        ],
        "{flaky:#?}"
    );
    let status = w.repo.reins(["status", &run]).run();
    status.code(0);
    assert!(status.stdout.contains("success"), "{}", status.stdout);
    // Each of the loop's iterations was its own `node` activity...
    assert_eq!(
        server.node_activities(&run, "count"),
        3,
        "one activity per iteration"
    );
    assert_eq!(server.node_activities(&run, "flaky"), 2, "one per attempt");
    // ...and the worker's log tells the loop as a local run's does.
    let local = Repo::new().workflow("decided", DECIDED);
    local.reins(["run", "decided"]).run().code(0);
    let of_loop = |events: Vec<Value>| -> Vec<Value> {
        events
            .into_iter()
            .filter(|e| e["node"] == "count")
            .map(|e| {
                serde_json::json!([
                    e["type"],
                    e["attempt"],
                    e["iteration"],
                    e["status"],
                    e["output"]
                ])
            })
            .collect()
    };
    let here = of_loop(w.repo.events(&run));
    assert_eq!(here, of_loop(local.events(&local.the_run())), "{here:#?}");
    assert_eq!(
        here.iter()
            .map(|e| e[0].as_str().unwrap())
            .collect::<Vec<_>>(),
        [
            "node_started",
            "loop_iteration",
            "loop_iteration",
            "loop_iteration",
            "node_succeeded"
        ]
    );
}

const GATES: &str = "nodes:
  - id: yes
    approval: {message: Ship it?}
  - id: after-yes
    depends_on: [yes]
    bash: echo shipped
  - id: no
    approval: {message: Deploy?}
  - id: after-no
    depends_on: [no]
    bash: echo deployed
";

const TIMEOUT: &str = "nodes:
  - id: late
    approval: {message: Anyone?, timeout: 3s}
  - id: after-late
    depends_on: [late]
    bash: echo late
";

#[test]
fn gates_are_answered_through_temporal_and_time_out_on_a_durable_timer() {
    let Some(server) = DevServer::start() else {
        return;
    };
    let queue = "gates";
    let w = Worker::start(&server, queue);
    let submitter = Repo::new()
        .workflow("gates", GATES)
        .workflow("timeout", TIMEOUT);
    let run = submit(&submitter, &server, queue, "gates", &[]);
    let late = submit(&submitter, &server, queue, "timeout", &[]);
    let v = wait_phase(
        &submitter,
        &server,
        &run,
        &["waiting"],
        Duration::from_secs(60),
    );
    let waiting: Vec<&str> = v["waiting"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["node"].as_str().unwrap())
        .collect();
    assert!(waiting.contains(&"yes") && waiting.contains(&"no"), "{v:#}");
    let addr = server.address.as_str();
    submitter
        .reins(["approve", &run, "yes", "-m", "go", "--temporal", addr])
        .run()
        .code(0);
    // First answer wins: a second one is refused.
    let again = submitter
        .reins(["reject", &run, "yes", "--temporal", addr])
        .run();
    again.code(2);
    assert!(
        again.stderr.contains("already approved"),
        "{}",
        again.stderr
    );
    submitter
        .reins(["reject", &run, "no", "-m", "not today", "--temporal", addr])
        .run()
        .code(0);
    // A node of the run cannot answer its own gate.
    let inside = submitter
        .reins(["approve", &late, "late", "--temporal", addr])
        .env("REINS_RUN_ID", &late)
        .run();
    inside.code(2);
    assert!(
        inside.stderr.contains("from inside that run"),
        "{}",
        inside.stderr
    );
    let v = wait_phase(
        &submitter,
        &server,
        &run,
        &["failed", "success"],
        Duration::from_secs(60),
    );
    assert_eq!(phase(&v), "failed", "{v:#}");
    assert_eq!(v["nodes"]["yes"], "success");
    assert_eq!(v["nodes"]["after-yes"], "success");
    assert_eq!(v["nodes"]["no"], "failed");
    assert_eq!(v["nodes"]["after-no"], "skipped");
    let t = wait_phase(
        &submitter,
        &server,
        &late,
        &["failed", "success"],
        Duration::from_secs(60),
    );
    assert_eq!(t["nodes"]["late"], "failed", "{t:#}");
    assert_eq!(t["nodes"]["after-late"], "skipped");
    // The worker's store has the same events a local run records.
    let answered: Vec<Value> = w
        .repo
        .events(&run)
        .into_iter()
        .filter(|e| e["type"] == "approval_answered")
        .collect();
    let by = |node: &str| {
        answered
            .iter()
            .find(|e| e["node"] == node)
            .unwrap_or_else(|| panic!("no answer to `{node}`: {answered:?}"))
            .clone()
    };
    assert_eq!(by("yes")["approved"], true);
    assert_eq!(by("no")["approved"], false);
    let timed_out: Vec<Value> = w
        .repo
        .events(&late)
        .into_iter()
        .filter(|e| e["type"] == "approval_answered")
        .collect();
    assert_eq!(timed_out.len(), 1, "{timed_out:?}");
    assert_eq!(timed_out[0]["by"], "reins", "the timeout rejects it");
    // `reins logs --temporal` reads the worker's store (here the same machine).
    let logs = w
        .repo
        .reins(["logs", &run, "after-yes", "--temporal", addr])
        .run();
    logs.code(0);
    assert!(logs.stdout.contains("shipped"), "{}", logs.stdout);
}

const LONG: &str = "nodes:
  - id: long
    bash: echo $$ > long.pid; exec sleep 120
";

#[test]
fn cancel_through_temporal_stops_the_run_and_its_processes() {
    let Some(server) = DevServer::start() else {
        return;
    };
    let queue = "cancel";
    let w = Worker::start(&server, queue);
    let submitter = Repo::new().workflow("long", LONG);
    let run = submit(&submitter, &server, queue, "long", &[]);
    let pid_file = w.repo.join("long.pid");
    wait_for("the node to start", Duration::from_secs(60), || {
        std::fs::read_to_string(&pid_file).is_ok_and(|t| t.trim().parse::<i32>().is_ok())
    });
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(process_alive(pid));
    submitter
        .reins(["cancel", &run, "--temporal", &server.address])
        .run()
        .code(0);
    wait_for("the node's process to die", Duration::from_secs(30), || {
        !process_alive(pid)
    });
    let out = submitter
        .reins([
            "status",
            &run,
            "--temporal",
            &server.address,
            "--format",
            "json",
        ])
        .run();
    out.code(0);
    wait_for(
        "the workflow to end cancelled",
        Duration::from_secs(30),
        || {
            let v = status(&submitter, &server, &run);
            v["temporal_status"]
                .as_str()
                .unwrap_or_default()
                .contains("cancel")
        },
    );
    assert_eq!(w.events(&run, "node_cancelled"), ["long"]);
}

#[test]
fn an_invalid_workflow_never_reaches_temporal() {
    let Some(server) = DevServer::start() else {
        return;
    };
    let repo = Repo::new().workflow(
        "bad",
        "nodes:\n  - id: a\n    bash: echo\n    depends_on: [nope]\n",
    );
    let out = repo
        .reins(["run", "bad", "--temporal", &server.address])
        .run();
    out.code(2);
    assert!(out.stderr.contains("nope"), "{}", out.stderr);
    let missing = Repo::new().workflow(
        "needs",
        "inputs: {issue: {required: true}}\nnodes: [{id: a, bash: echo}]\n",
    );
    missing
        .reins(["run", "needs", "--temporal", &server.address])
        .run()
        .code(2);
    assert_eq!(server.executions(), 0, "something reached Temporal");
}

#[test]
fn a_worker_whose_server_is_gone_still_stops_on_sigterm() {
    let Some(server) = DevServer::start() else {
        return;
    };
    let mut worker = Worker::start(&server, "orphaned");
    drop(server);
    let running = worker.running.take().unwrap();
    let pid = running.pid();
    running.signal(nix::sys::signal::Signal::SIGTERM);
    // Bounded, not timed: a worker waiting forever for a server that went away never ends.
    wait_for("the worker to exit", Duration::from_secs(60), || {
        !process_alive(pid)
    });
    let out = running.wait();
    assert_eq!(out.code, 0, "{}", out.stderr);
}
