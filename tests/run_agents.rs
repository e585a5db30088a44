//! End to end: `prompt` and `command` nodes through `reins run`, on the real Claude Code CLI
//! (the version `.ci/install-claude` pins) talking to the offline stand-in for the Messages
//! API. Each test has its own repository, API port and CLI home; every wait is bounded.

mod support;

use std::time::Duration;

use serde_json::json;
use support::agents::AgentWorld;
use support::run_repo::{wait_for, Repo};
use support::{group_members, MockApi, Turn};

/// One test's world: the Claude CLI, the stand-in API and a repository.
type World = AgentWorld<MockApi>;

impl World {
    /// Writes `.workflows/NAME.yaml`: the built-in `claude` profile pointed at the pinned CLI,
    /// a `writer` profile that may edit files, then `rest` (which must start with `nodes:`).
    fn workflow(&self, name: &str, rest: &str) {
        let yaml = format!(
            "agents:\n  claude: {{program: '{}'}}\n  writer: {{use: claude, permission_mode: acceptEdits}}\n{rest}",
            self.cli.display()
        );
        self.repo.write(&format!(".workflows/{name}.yaml"), &yaml);
    }
}

#[test]
fn an_agents_write_tool_call_changes_the_repository() {
    let Some(w) = World::new() else { return };
    w.api.rule(
        "MARK-WRITE",
        [
            Turn::tool(
                "Write",
                json!({"file_path": "hello.txt", "content": "hi from the agent\n"}),
            ),
            Turn::text("I wrote hello.txt."),
        ],
    );
    w.workflow(
        "write",
        "nodes:
  - {id: write, agent: writer, prompt: 'MARK-WRITE write hello.txt'}
  - {id: check, depends_on: [write], bash: cat hello.txt}
",
    );
    let out = w.reins(["run", "write"]).run();
    out.code(0);
    assert_eq!(w.repo.read("hello.txt"), "hi from the agent\n");
    let run = w.repo.the_run();
    let node = w.repo.node(&run, "write");
    assert_eq!(node["output"], "I wrote hello.txt.");
    assert_eq!(node["usage"]["turns"], 2, "{node:#}");
    assert_eq!(node["usage"]["input_tokens"], 24, "12 per mocked call");
    assert!(node["usage"]["cost_usd"].as_f64().unwrap() > 0.0);
    assert!(node["usage"]["duration_ms"].as_u64().unwrap() > 0);
    assert_eq!(w.repo.node(&run, "check")["output"], "hi from the agent");
    assert!(
        out.stdout.contains("agents: $") && out.stdout.contains("2 turns"),
        "the summary shows the run's agent usage\n{}",
        out.stdout
    );

    // The CLI ran in the session reins recorded; its prompt and transcript are kept.
    let session = &w.events_of("agent_session", "write")[0];
    assert_eq!(session["session"], "fresh");
    let requests = w.api.requests_for("MARK-WRITE");
    assert!(requests
        .iter()
        .all(|r| r.session_id() == session["session_id"].as_str()));
    let transcript = w
        .repo
        .read(&format!(".reins/runs/{run}/nodes/write/transcript.jsonl"));
    assert!(transcript.contains(r#""name":"Write""#), "{transcript}");
    assert_eq!(
        w.repo
            .read(&format!(".reins/runs/{run}/nodes/write/prompt.md")),
        "MARK-WRITE write hello.txt"
    );

    let status = w.reins(["status", "last"]).run();
    status.code(0);
    assert!(
        status.stdout.contains("2 turns · 24 in"),
        "{}",
        status.stdout
    );
    let runs = w.reins(["runs"]).run();
    runs.code(0);
    assert!(runs.stdout.contains(" $0."), "{}", runs.stdout);
    let logs = w.reins(["logs", "last", "write"]).run();
    logs.code(0);
    assert!(logs.stdout.contains("→ Write hello.txt"), "{}", logs.stdout);
    assert!(
        logs.stdout.contains("I wrote hello.txt."),
        "{}",
        logs.stdout
    );
    assert!(logs.stdout.contains("✓ done"), "{}", logs.stdout);
    assert!(!logs.stdout.contains(r#""type""#), "readable, not JSON");
    let raw = w.reins(["logs", "last", "write", "--raw"]).run();
    assert!(raw.stdout.contains(r#""type":"result""#), "{}", raw.stdout);
    let followed = w.reins(["logs", "last", "write", "-f"]).run();
    followed.code(0);
    assert!(followed.stdout.contains("→ Write hello.txt"));
}

#[test]
fn a_sticky_session_remembers_an_earlier_turn_and_a_fresh_one_does_not() {
    let Some(w) = World::new() else { return };
    w.api.rule("MARK-ONE", [Turn::text("Noted.")]);
    w.api.rule("MARK-TWO", [Turn::text("The word was PAPAYA.")]);
    w.api.rule("MARK-THREE", [Turn::text("What word?")]);
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
    assert_eq!(two.session_id(), id("one").as_str());
    let three = &w.api.requests_for("MARK-THREE")[0];
    assert!(!three.contains_text("PAPAYA"));
    assert_eq!(
        w.repo.node(&w.repo.the_run(), "two")["output"],
        "The word was PAPAYA."
    );
}

#[test]
fn an_agents_output_flows_safely_into_a_later_bash_node() {
    let Some(w) = World::new() else { return };
    let nasty = r#"it's $(touch pwned) `touch pwned2` "q"; touch pwned3"#;
    w.api.rule("MARK-OUT", [Turn::text(nasty)]);
    w.workflow(
        "flow",
        "nodes:
  - {id: ask, prompt: 'MARK-OUT say something'}
  - id: use
    depends_on: [ask]
    bash: |
      printf '%s' {{nodes.ask.output}} > got.txt
      printf '%s' \"$REINS_NODE_ASK_OUTPUT\" > env.txt
",
    );
    w.reins(["run", "flow"]).run().code(0);
    assert_eq!(w.repo.read("got.txt"), nasty);
    assert_eq!(w.repo.read("env.txt"), nasty);
    for f in ["pwned", "pwned2", "pwned3"] {
        assert!(!w.repo.exists(f), "{f} was created");
    }
}

#[test]
fn a_denied_write_fails_the_node_and_is_not_retried() {
    let Some(w) = World::new() else { return };
    w.api.rule(
        "MARK-DENY",
        [
            Turn::tool(
                "Write",
                json!({"file_path": "nope.txt", "content": "should not exist\n"}),
            ),
            Turn::text("I could not write."),
        ],
    );
    w.workflow(
        "deny",
        "nodes:
  - {id: write, retries: 2, prompt: 'MARK-DENY write nope.txt'}
  - {id: after, depends_on: [write], bash: touch after-ran}
",
    );
    let out = w.reins(["run", "deny"]).run();
    out.code(1);
    assert!(!w.repo.exists("nope.txt"));
    assert!(!w.repo.exists("after-ran"));
    assert_eq!(w.events_of("node_started", "write").len(), 1, "not retried");
    let node = w.repo.node(&w.repo.the_run(), "write");
    assert_eq!(node["status"], "failed");
    let error = node["error"].as_str().unwrap();
    assert!(error.contains("Write"), "{error}");
}

#[test]
fn an_api_error_is_retried_then_fails_cleanly() {
    let Some(w) = World::new() else { return };
    w.api
        .rule("MARK-529", [Turn::error(529, "overloaded_error")]);
    w.workflow(
        "overload",
        "nodes:\n  - {id: ask, retries: 1, prompt: 'MARK-529 hello'}\n",
    );
    let out = w.reins(["run", "overload"]).run();
    out.code(1);
    let failed = w.events_of("node_failed", "ask");
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert_eq!(failed[0]["will_retry"], true);
    assert_eq!(failed[1]["will_retry"], false);
    assert!(
        failed[1]["error"].as_str().unwrap().contains("529"),
        "{}",
        failed[1]["error"]
    );
    let sessions = w.events_of("agent_session", "ask");
    assert_eq!(sessions.len(), 2);
    assert_ne!(
        sessions[0]["session_id"], sessions[1]["session_id"],
        "each attempt of a fresh node is a new conversation"
    );
    assert_eq!(
        w.api.requests_for("MARK-529").len(),
        4,
        "two attempts, each one call and one CLI retry"
    );
    assert!(w.processes_with("MARK-529").is_empty());
    assert!(out.stdout.contains("ask"), "{}", out.stdout);
}

#[test]
fn a_hung_agent_hits_its_idle_timeout_and_its_process_is_gone() {
    let Some(w) = World::new() else { return };
    w.api.rule("MARK-HANG", [Turn::Hang]);
    w.workflow(
        "hang",
        "nodes:\n  - {id: ask, idle_timeout: 5s, retries: 1, prompt: 'MARK-HANG hello'}\n",
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
fn a_missing_declared_output_fails_the_node() {
    let Some(w) = World::new() else { return };
    w.api.rule("MARK-PLAN", [Turn::text("Here is the plan.")]);
    w.workflow(
        "plan",
        "nodes:\n  - {id: plan, outputs: [plan.md], prompt: 'MARK-PLAN plan'}\n",
    );
    w.reins(["run", "plan"]).run().code(1);
    let node = w.repo.node(&w.repo.the_run(), "plan");
    let error = node["error"].as_str().unwrap();
    assert!(error.contains("plan.md"), "{error}");
}

#[test]
fn a_command_file_is_rendered_with_its_arguments_and_without_frontmatter() {
    let Some(w) = World::new() else { return };
    w.api.rule("MARK-CMD", [Turn::text("Hello, Ada.")]);
    w.repo.write(
        ".workflows/commands/greet.md",
        "---\ndescription: Greets someone\nargs:\n  - {name: who, required: true}\n  - {name: tone, default: warm}\n---\nMARK-CMD greet {{args.who}} in a {{args.tone}} way\n",
    );
    w.workflow(
        "greet",
        "nodes:\n  - {id: hi, command: greet, args: {who: Ada}}\n",
    );
    w.reins(["run", "greet"]).run().code(0);
    let request = &w.api.requests_for("MARK-CMD")[0];
    assert_eq!(
        request.prompt().unwrap().trim(),
        "MARK-CMD greet Ada in a warm way"
    );
    let run = w.repo.the_run();
    assert_eq!(w.repo.node(&run, "hi")["output"], "Hello, Ada.");
    let prompt = w
        .repo
        .read(&format!(".reins/runs/{run}/nodes/hi/prompt.md"));
    assert!(!prompt.contains("description"), "{prompt}");
}

#[test]
fn kill_9_mid_turn_then_resume_continues_the_session_and_finishes() {
    let Some(w) = World::new() else { return };
    w.api.rule(
        "MARK-KILL",
        [Turn::Hang, Turn::text("Finished after resume.")],
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
    // The CLI saves the conversation on its own schedule; kill once it is on disk, as a
    // conversation the CLI never saved cannot be continued by anyone.
    wait_for(
        "the CLI to save the conversation",
        Duration::from_secs(30),
        || saved_conversations(&w.repo.join(".claude-home"), "MARK-KILL") > 0,
    );
    let agents = w.processes_with("MARK-KILL");
    assert_eq!(agents.len(), 1, "{agents:?}");
    let group = agents[0];
    assert!(!group_members(group).is_empty());
    running.signal(nix::sys::signal::Signal::SIGKILL);
    let killed = running.wait();
    assert_eq!(killed.code, -1);
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
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    assert_eq!(sessions[0]["session_id"], sessions[1]["session_id"]);
    let id = sessions[0]["session_id"].as_str().unwrap();
    let requests = w.api.requests_for("MARK-KILL");
    assert_eq!(requests.len(), 2, "one hung call, one after the resume");
    assert!(requests.iter().all(|r| r.session_id() == Some(id)));
    // `--resume` on the recorded id: the conversation still holds the interrupted prompt.
    let transcript = w
        .repo
        .read(&format!(".reins/runs/{run}/nodes/impl/transcript.jsonl"));
    assert!(
        !transcript.contains("never saved"),
        "the resume fell back to a new conversation:\n{transcript}"
    );
    assert_eq!(
        requests[1].prompts().len(),
        2,
        "{:?}",
        requests[1].prompts()
    );
}

#[test]
fn two_unordered_nodes_of_one_session_take_turns() {
    let Some(w) = World::new() else { return };
    let chunks: Vec<String> = (1..=4).map(|i| format!("part{i} ")).collect();
    w.api.rule(
        "MARK-FIRST",
        [Turn::Slow {
            chunks,
            delay: Duration::from_millis(300),
        }],
    );
    w.api.rule("MARK-SECOND", [Turn::text("second")]);
    w.workflow(
        "turns",
        "concurrency: 4
nodes:
  - {id: a, session: s, prompt: 'MARK-FIRST go'}
  - {id: b, session: s, prompt: 'MARK-SECOND go'}
",
    );
    w.reins(["run", "turns"]).run().code(0);
    let events = w.repo.events(&w.repo.the_run());
    let position = |kind: &str, node: &str| {
        events
            .iter()
            .position(|e| e["type"] == kind && e["node"] == node)
            .unwrap_or_else(|| panic!("no {kind} of {node}"))
    };
    // Whichever went first, the other started its agent only after it ended.
    let (first, second) = if position("agent_session", "a") < position("agent_session", "b") {
        ("a", "b")
    } else {
        ("b", "a")
    };
    assert!(
        position("node_succeeded", first) < position("agent_session", second),
        "{events:#?}"
    );
    let id = |node: &str| w.events_of("agent_session", node)[0]["session_id"].clone();
    assert_eq!(id("a"), id("b"), "one conversation");
}

#[test]
fn following_an_agent_shows_its_progress_live() {
    let Some(w) = World::new() else { return };
    let chunks: Vec<String> = (1..=10).map(|i| format!("part{i} ")).collect();
    w.api.rule(
        "MARK-LIVE",
        [
            Turn::tool("Bash", json!({"command": "echo from-the-tool"})),
            Turn::Slow {
                chunks,
                delay: Duration::from_millis(300),
            },
        ],
    );
    w.workflow(
        "live",
        "nodes:\n  - {id: ask, allowed_tools: [Bash], prompt: 'MARK-LIVE go'}\n",
    );
    let running = w.reins(["run", "live"]).spawn();
    wait_for("the agent's second call", Duration::from_secs(60), || {
        w.api.requests_for("MARK-LIVE").len() == 2
    });
    let follow = w
        .reins(["logs", "last", "ask", "-f"])
        .timeout(Duration::from_secs(60))
        .spawn();
    let out = follow.wait();
    out.code(0);
    running.wait().code(0);
    assert!(
        out.stdout.contains("→ Bash `echo from-the-tool`"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("part10"), "{}", out.stdout);
    assert!(out.stdout.contains("✓ done"), "{}", out.stdout);
}

#[test]
fn a_missing_agent_program_fails_the_node_with_a_fix() {
    let repo = Repo::new().workflow(
        "missing",
        "agents:\n  claude: {program: /nonexistent/bin/claude}\nnodes:\n  - {id: ask, retries: 2, prompt: hello}\n",
    );
    let out = repo.reins(["run", "missing"]).run();
    out.code(1);
    let node = repo.node(&repo.the_run(), "ask");
    let error = node["error"].as_str().unwrap();
    assert!(error.contains("fix `program:`"), "{error}");
    assert_eq!(node["attempt"], 1, "not retried");
}

#[test]
fn a_dry_run_shows_a_command_nodes_prompt_with_its_arguments() {
    let repo = Repo::new()
        .file(
            ".workflows/commands/greet.md",
            "---\nargs:\n  - {name: who, required: true}\n  - {name: tone, default: warm}\n---\nGreet {{args.who}} in a {{args.tone}} way\n",
        )
        .workflow(
            "greet",
            "nodes:\n  - {id: hi, command: greet, args: {who: '{{inputs.name}}'}}\ninputs:\n  name: {default: Ada}\n",
        );
    let out = repo.reins(["run", "greet", "--dry-run"]).run();
    out.code(0);
    assert!(
        out.stdout.contains("> Greet Ada in a warm way"),
        "{}",
        out.stdout
    );
    assert!(repo.run_ids().is_empty());
}

#[test]
fn ctrl_c_cancels_a_running_agent_and_stops_its_group() {
    let Some(w) = World::new() else { return };
    w.api.rule("MARK-CANCEL", [Turn::Hang]);
    w.workflow(
        "cancel",
        "nodes:\n  - {id: ask, session: s, prompt: 'MARK-CANCEL hello'}\n",
    );
    let running = w.reins(["run", "cancel"]).spawn();
    wait_for("the agent's first call", Duration::from_secs(60), || {
        !w.api.requests_for("MARK-CANCEL").is_empty()
    });
    let agents = w.processes_with("MARK-CANCEL");
    assert_eq!(agents.len(), 1, "{agents:?}");
    running.signal(nix::sys::signal::Signal::SIGINT);
    let out = running.wait();
    out.code(130);
    assert!(
        group_members(agents[0]).is_empty(),
        "the agent's group is gone"
    );
    assert_eq!(w.repo.node(&w.repo.the_run(), "ask")["status"], "cancelled");
}

/// A Write of the file named after `PATH=` in the prompt.
fn write_the_named_path(prompt: &str) -> Turn {
    let path = prompt
        .split_whitespace()
        .find_map(|w| w.strip_prefix("PATH="))
        .unwrap_or("missing-path.txt");
    Turn::tool("Write", json!({"file_path": path, "content": "# plan\n"}))
}

#[test]
fn an_agent_in_a_worktree_may_write_the_artifacts_of_the_main_checkout() {
    let Some(w) = World::new() else { return };
    let committed = std::process::Command::new("git")
        .args([
            "-c",
            "user.email=t@example.com",
            "-c",
            "user.name=t",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "first",
        ])
        .current_dir(w.repo.path())
        .status()
        .unwrap();
    assert!(committed.success());
    w.api.rule(
        "MARK-ART",
        [
            Turn::FromPrompt(write_the_named_path),
            Turn::text("The plan is written."),
        ],
    );
    w.workflow(
        "art",
        "nodes:
  - {id: plan, agent: writer, outputs: [plan.md], prompt: 'MARK-ART write PATH={{artifacts}}/plan.md'}
  - {id: show, depends_on: [plan], bash: 'cat {{artifacts}}/plan.md; pwd'}
",
    );
    let out = w.reins(["run", "art", "--worktree"]).run();
    out.code(0);
    let run = w.repo.the_run();
    assert_eq!(
        w.repo.read(&format!(".reins/runs/{run}/artifacts/plan.md")),
        "# plan\n"
    );
    let shown = w.repo.node(&run, "show")["output"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(shown.starts_with("# plan\n"), "{shown}");
    assert!(
        !shown.ends_with(&w.repo.path().display().to_string()),
        "the run worked in a worktree: {shown}"
    );
}

/// Conversation files under a CLI home (`.claude/projects/*/*.jsonl`) that mention `needle`.
fn saved_conversations(home: &std::path::Path, needle: &str) -> usize {
    let Ok(projects) = std::fs::read_dir(home.join(".claude/projects")) else {
        return 0;
    };
    projects
        .filter_map(|p| std::fs::read_dir(p.ok()?.path()).ok())
        .flatten()
        .filter_map(|f| std::fs::read_to_string(f.ok()?.path()).ok())
        .filter(|text| text.contains(needle))
        .count()
}
