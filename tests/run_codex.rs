//! End to end: agent nodes through `reins run` on the real Codex CLI (the version
//! `.ci/install-codex` pins) talking to the offline Responses API stand-in. Each test has its
//! own repository, API port and `CODEX_HOME`; every wait is bounded.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::agents::AgentWorld;
use support::run_repo::wait_for;
use support::{group_members, Reply, ResponsesApi};

/// One test's world: the Codex CLI, the stand-in API and a repository.
type World = AgentWorld<ResponsesApi>;

impl World {
    /// Writes `.workflows/NAME.yaml`: the built-in `codex` profile pointed at the pinned CLI
    /// with no sandbox (the test machine is the sandbox), the default agent, then `rest`.
    fn workflow(&self, name: &str, rest: &str) {
        let yaml = format!(
            "defaults: {{agent: codex}}\nagents:\n  codex: {{program: '{}', sandbox: none}}\n{rest}",
            self.cli.display()
        );
        self.repo.write(&format!(".workflows/{name}.yaml"), &yaml);
    }
}

#[test]
fn a_shell_tool_call_changes_the_repository() {
    let Some(w) = World::new() else { return };
    w.api.rule(
        "MARK-EDIT",
        [
            Reply::shell("printf 'hi from codex\\n' > hello.txt"),
            Reply::text("I wrote hello.txt."),
        ],
    );
    w.workflow(
        "edit",
        "nodes:
  - {id: edit, prompt: 'MARK-EDIT write hello.txt'}
  - {id: check, depends_on: [edit], bash: cat hello.txt}
",
    );
    let out = w.reins(["run", "edit"]).run();
    out.code(0);
    assert_eq!(w.repo.read("hello.txt"), "hi from codex\n");
    let run = w.repo.the_run();
    let node = w.repo.node(&run, "edit");
    assert_eq!(node["output"], "I wrote hello.txt.");
    // Two model calls of 100 input tokens (40 cached) and 10 output tokens each.
    assert_eq!(node["usage"]["input_tokens"], 120, "{node:#}");
    assert_eq!(node["usage"]["cache_read_input_tokens"], 80);
    assert_eq!(node["usage"]["output_tokens"], 20);
    assert_eq!(node["usage"]["cost_usd"], 0.0);
    assert_eq!(node["usage"]["unpriced"], true, "Codex reports no cost");
    // The thread id Codex chose was recorded as the session.
    let session = &w.events_of("agent_session", "edit")[0];
    let requests = w.api.requests_for("MARK-EDIT");
    assert_eq!(requests.len(), 2);
    assert!(requests
        .iter()
        .all(|r| r.thread_id() == session["session_id"].as_str()));
    assert!(
        out.stdout
            .contains("agents: 1 turn · 200 in / 20 out tokens"),
        "no made-up cost in the summary\n{}",
        out.stdout
    );
    let status = w.reins(["status", "last"]).run();
    assert!(
        status.stdout.contains("1 turn · 200 in / 20 out tokens"),
        "{}",
        status.stdout
    );
    assert!(!status.stdout.contains("$0.0000"), "{}", status.stdout);
    let runs = w.reins(["runs"]).run();
    assert!(runs.stdout.contains("220tok"), "{}", runs.stdout);
    let logs = w.reins(["logs", "last", "edit"]).run();
    assert!(logs.stdout.contains("→ shell"), "{}", logs.stdout);
    assert!(
        logs.stdout.contains("I wrote hello.txt."),
        "{}",
        logs.stdout
    );
}

#[test]
fn a_sticky_session_remembers_an_earlier_turn_and_a_fresh_one_does_not() {
    let Some(w) = World::new() else { return };
    w.api.rule("MARK-ONE", [Reply::text("Noted.")]);
    w.api
        .rule("MARK-TWO", [Reply::text("The word was PAPAYA.")]);
    w.api.rule("MARK-THREE", [Reply::text("What word?")]);
    w.workflow(
        "sticky",
        "nodes:
  - {id: one, session: s, prompt: 'MARK-ONE remember the word PAPAYA'}
  - {id: two, session: s, depends_on: [one], prompt: 'MARK-TWO which word?'}
  - {id: three, depends_on: [one], prompt: 'MARK-THREE which word?'}
",
    );
    w.reins(["run", "sticky"]).run().code(0);
    let id = |node: &str| w.events_of("agent_session", node)[0]["session_id"].clone();
    assert_eq!(id("one"), id("two"));
    assert_ne!(id("one"), id("three"));
    let two = &w.api.requests_for("MARK-TWO")[0];
    assert!(two.contains_text("remember the word PAPAYA"));
    assert_eq!(two.thread_id(), id("one").as_str());
    assert!(!w.api.requests_for("MARK-THREE")[0].contains_text("PAPAYA"));
    let run = w.repo.the_run();
    let node = w.repo.node(&run, "two");
    assert_eq!(node["output"], "The word was PAPAYA.");
    // Codex reports the thread's running total; the second turn counts only its own call.
    assert_eq!(node["usage"]["input_tokens"], 60, "{node:#}");
    assert_eq!(node["usage"]["output_tokens"], 10, "{node:#}");
}

#[test]
fn an_api_error_is_retried_then_fails_cleanly() {
    let Some(w) = World::new() else { return };
    w.api.rule("MARK-FAIL", [Reply::Error(500)]);
    w.workflow(
        "fail",
        "nodes:
  - {id: ask, retries: 1, prompt: 'MARK-FAIL hello'}
  - {id: after, depends_on: [ask], bash: touch after-ran}
",
    );
    let out = w.reins(["run", "fail"]).run();
    out.code(1);
    let node = w.repo.node(&w.repo.the_run(), "ask");
    assert_eq!(node["status"], "failed");
    let error = node["error"].as_str().unwrap();
    assert!(error.contains("model API failed"), "{error}");
    // A server error is transient: Codex retried each call itself (its provider retries are
    // lowered to 1 in tests), then reins ran the node once more.
    assert_eq!(w.events_of("node_started", "ask").len(), 2, "{error}");
    assert!(w.api.requests_for("MARK-FAIL").len() >= 4);
    assert!(!w.repo.exists("after-ran"));
    assert!(w.processes_with("MARK-FAIL").is_empty());
}

#[test]
fn a_hung_turn_hits_its_idle_timeout_and_nothing_is_left_running() {
    let Some(w) = World::new() else { return };
    w.api.rule("MARK-HANG", [Reply::Hang]);
    w.workflow(
        "hang",
        "nodes:\n  - {id: ask, idle_timeout: 3s, retries: 1, prompt: 'MARK-HANG hello'}\n",
    );
    let out = w.reins(["run", "hang"]).run();
    out.code(1);
    let node = w.repo.node(&w.repo.the_run(), "ask");
    let error = node["error"].as_str().unwrap();
    assert!(error.contains("idle timeout"), "{error}");
    assert_eq!(w.events_of("node_started", "ask").len(), 1, "not retried");
    assert!(w.processes_with("MARK-HANG").is_empty());
}

#[test]
fn kill_9_mid_turn_then_resume_continues_the_same_thread() {
    let Some(w) = World::new() else { return };
    w.api.rule(
        "MARK-KILL",
        [Reply::HangOnce("Finished after resume.".into())],
    );
    w.workflow(
        "crash",
        "nodes:
  - {id: impl, session: work, prompt: 'MARK-KILL implement it'}
  - {id: after, depends_on: [impl], bash: echo done}
",
    );
    let running = w.reins(["run", "crash"]).spawn();
    wait_for("the agent's first call", Duration::from_secs(60), || {
        !w.api.requests_for("MARK-KILL").is_empty()
    });
    // The thread id is in the log before the turn ends.
    wait_for("the thread id", Duration::from_secs(10), || {
        !w.events_of("agent_session", "impl").is_empty()
    });
    let agents = w.processes_with("MARK-KILL");
    assert_eq!(agents.len(), 1, "{agents:?}");
    let group = agents[0];
    running.signal(nix::sys::signal::Signal::SIGKILL);
    let _ = running.wait();
    wait_for(
        "the agent's process group to die with reins",
        Duration::from_secs(15),
        || group_members(group).is_empty(),
    );

    let out = w.reins(["resume", "last"]).run();
    out.code(0);
    let run = w.repo.the_run();
    assert_eq!(
        w.repo.node(&run, "impl")["output"],
        "Finished after resume."
    );
    let sessions = w.events_of("agent_session", "impl");
    let thread = sessions[0]["session_id"].as_str().unwrap();
    assert!(
        sessions.iter().all(|s| s["session_id"] == thread),
        "{sessions:?}"
    );
    let requests = w.api.requests_for("MARK-KILL");
    assert_eq!(requests.len(), 2, "one hung call, one after the resume");
    assert!(requests.iter().all(|r| r.thread_id() == Some(thread)));
    // `codex exec resume` on the recorded thread: it still holds the interrupted prompt.
    assert_eq!(
        requests[1].prompts().len(),
        2,
        "{:?}",
        requests[1].prompts()
    );
}

#[test]
fn a_node_budget_stops_a_loop() {
    let Some(w) = World::new() else { return };
    w.api.rule("MARK-LOOP", [Reply::text("not yet")]);
    w.workflow(
        "spend",
        "nodes:
  - id: grind
    budget: {max_tokens: 300}
    loop:
      prompt: 'MARK-LOOP step {{loop.iteration}}'
      until: \"{{contains output 'DONE'}}\"
      max_iterations: 10
",
    );
    let out = w.reins(["run", "spend"]).run();
    out.code(1);
    let node = w.repo.node(&w.repo.the_run(), "grind");
    let error = node["error"].as_str().unwrap();
    assert_eq!(
        error,
        "iteration 3: budget exceeded: node `grind` used 330 tokens of its max_tokens 300 \
         (over by 30); raise `max_tokens` in the node's `budget` to let it go on"
    );
    assert_eq!(w.api.requests_for("MARK-LOOP").len(), 3);
    let status = w.reins(["status", "last"]).run();
    assert!(
        status.stdout.contains("budget exceeded"),
        "{}",
        status.stdout
    );
}

#[test]
fn a_run_over_its_budget_starts_no_new_agent_turn() {
    let Some(w) = World::new() else { return };
    w.workflow(
        "spend",
        "budget: {max_tokens: 150}
nodes:
  - {id: a, prompt: 'MARK-A go'}
  - {id: b, depends_on: [a], prompt: 'MARK-B go'}
  - {id: c, depends_on: [b], trigger: all_done, prompt: 'MARK-C go'}
",
    );
    let out = w.reins(["run", "spend"]).run();
    out.code(1);
    let run = w.repo.the_run();
    assert_eq!(w.repo.node(&run, "a")["status"], "success");
    let b = w.repo.node(&run, "b");
    assert_eq!(
        b["error"],
        "budget exceeded: the run used 220 tokens of its max_tokens 150 (over by 70); raise \
         `max_tokens` in the workflow's `budget` to let it go on"
    );
    let c = w.repo.node(&run, "c");
    assert!(
        c["error"]
            .as_str()
            .unwrap()
            .ends_with("; no new agent turn starts"),
        "{c:#}"
    );
    assert!(w.api.requests_for("MARK-C").is_empty());
}

#[test]
fn agent_codex_replaces_the_default_agent_for_the_run() {
    let Some(w) = World::new() else { return };
    w.api.rule("MARK-SWITCH", [Reply::text("codex here")]);
    // A Claude workflow: the default agent and a profile that uses it.
    w.repo.write(
        ".workflows/switch.yaml",
        "agents:\n  reader: {use: claude, sandbox: none}\nnodes:\n  - {id: ask, agent: reader, prompt: 'MARK-SWITCH hi'}\n",
    );
    let bin = w.repo.join(".bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(&w.cli, bin.join("codex")).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = w
        .reins(["run", "switch", "--agent", "codex"])
        .env("PATH", &path)
        .run();
    out.code(0);
    let run = w.repo.the_run();
    assert_eq!(w.repo.node(&run, "ask")["output"], "codex here");
    // A resume keeps the agent the run started with.
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(w.repo.run_dir(&run).join("run.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["agent"], "codex");
    let bad = w.reins(["run", "switch", "--agent", "kodex"]).run();
    bad.code(2);
    assert!(
        bad.stderr.contains("unknown agent `kodex`"),
        "{}",
        bad.stderr
    );
}
