//! The run store from the command line: `runs`, `status`, `logs`, and `RUN` arguments.

mod support;

use std::time::Duration;

use support::run_repo::Repo;

fn two_runs() -> Repo {
    let repo = Repo::new().workflow(
        "hello",
        r#"nodes:
  - id: greet
    bash: echo hello; echo to-stderr >&2
  - id: fail
    bash: echo partial; exit 2
    continue_on_error: true
"#,
    );
    repo.reins(["run", "hello"]).run().code(0);
    repo.reins(["run", "hello"]).run().code(0);
    repo
}

#[test]
fn runs_lists_every_run() {
    let repo = Repo::new();
    let out = repo.reins(["runs"]).run();
    out.code(0);
    assert!(out.stdout.contains("no runs yet"), "{}", out.stdout);
    let repo = two_runs();
    let out = repo.reins(["runs"]).run();
    out.code(0);
    for id in repo.run_ids() {
        assert!(out.stdout.contains(&id), "{}", out.stdout);
    }
    assert!(out.stdout.contains("success"));
    let out = repo.reins(["runs", "--format", "json"]).run();
    out.code(0);
    let runs: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(runs.as_array().unwrap().len(), 2);
    assert_eq!(runs[0]["workflow"], "hello");
    assert_eq!(runs[0]["status"], "success");
    assert_eq!(runs[0]["nodes"]["failed"], 1);
}

#[test]
fn run_arguments_are_ids_prefixes_or_last() {
    let repo = two_runs();
    let ids = repo.run_ids();
    // `runs` lists by start time (ids started in the same second sort by their random part).
    let out = repo.reins(["runs", "--format", "json"]).run();
    let runs: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let last = repo.status("last");
    assert_eq!(last["run_id"], runs[1]["id"]);
    let by_prefix = repo.status(&ids[0]);
    assert_eq!(by_prefix["run_id"], ids[0].as_str());
    // Both ids start with the date: ambiguous.
    let out = repo.reins(["status", &ids[0][..4]]).run();
    out.code(2);
    assert!(out.stderr.contains("matches 2 runs"), "{}", out.stderr);
    assert!(out.stderr.contains(&ids[0]) && out.stderr.contains(&ids[1]));
    let out = repo.reins(["status", "1999"]).run();
    out.code(2);
    assert!(
        out.stderr.contains("no run id starts with `1999`"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(runs[1]["id"].as_str().unwrap()),
        "{}",
        out.stderr
    );
}

#[test]
fn status_shows_each_node() {
    let repo = two_runs();
    let out = repo.reins(["status", "last"]).run();
    out.code(0);
    assert!(out.stdout.contains("greet"), "{}", out.stdout);
    assert!(out.stdout.contains("exited with code 2"), "{}", out.stdout);
    let json = repo.status("last");
    assert_eq!(json["status"], "success");
    assert_eq!(json["workflow"], "hello");
    assert!(json["digest"].as_str().unwrap().starts_with("sha256:"));
    let greet = repo.node("last", "greet");
    assert_eq!(greet["output"], "hello");
    assert_eq!(greet["attempt"], 1);
    assert!(greet["started_at"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn logs_show_what_nodes_printed() {
    let repo = two_runs();
    let out = repo.reins(["logs", "last", "greet"]).run();
    out.code(0);
    assert_eq!(out.stdout, "hello\n");
    assert_eq!(out.stderr, "to-stderr\n");
    let out = repo.reins(["logs", "last"]).run();
    out.code(0);
    assert!(
        out.stdout.contains("==> greet: stdout.log <==\nhello\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("==> fail: stdout.log <==\npartial\n"),
        "{}",
        out.stdout
    );
    let out = repo.reins(["logs", "last", "gret"]).run();
    out.code(2);
    assert!(
        out.stderr.contains("did you mean `greet`"),
        "{}",
        out.stderr
    );
    // Following a finished run ends at once.
    let out = repo
        .reins(["logs", "last", "greet", "-f"])
        .timeout(Duration::from_secs(20))
        .run();
    out.code(0);
    assert_eq!(out.stdout, "hello\n");
    let out = repo
        .reins(["logs", "last", "-f"])
        .timeout(Duration::from_secs(20))
        .run();
    out.code(0);
    assert!(out.stdout.contains("greet succeeded"), "{}", out.stdout);
}

#[test]
fn logs_follow_a_running_node() {
    let repo = Repo::new().workflow(
        "slow",
        r#"nodes:
  - id: talk
    bash: |
      echo one
      for i in $(seq 1200); do [ -f go ] && break; sleep 0.05; done
      echo two
"#,
    );
    let running = repo
        .reins(["run", "slow"])
        .timeout(Duration::from_secs(90))
        .spawn();
    // Generous bounds: on a loaded 2-core machine starting two processes can take seconds.
    repo.wait_for("the run to start", Duration::from_secs(60), || {
        repo.run_ids().len() == 1
            && repo.read(&format!(
                ".reins/runs/{}/nodes/talk/stdout.log",
                repo.the_run()
            )) == "one\n"
    });
    let mut follow = repo
        .reins(["logs", "last", "talk", "--follow"])
        .timeout(Duration::from_secs(90))
        .spawn();
    repo.wait_for(
        "the follower to print what is there",
        Duration::from_secs(60),
        || follow.stdout_so_far() == "one\n",
    );
    assert!(
        follow.child.try_wait().unwrap().is_none(),
        "it keeps following"
    );
    repo.write("go", "");
    let out = follow.wait();
    out.code(0);
    assert_eq!(out.stdout, "one\ntwo\n");
    running.wait().code(0);
}
