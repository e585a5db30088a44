//! End to end: the real Claude Code CLI (the version `.ci/install-claude` pins), driven by
//! `reins::agent::run` in a PTY, talking to the offline stand-in for the Messages API.
//!
//! Each test has its own API port, `$HOME`, working directory and node folder, so they run in
//! parallel; each run is bounded by timeouts. Without the CLI installed the tests fail on CI
//! and are skipped locally (see `support::require_claude`).

mod support;

use std::path::PathBuf;
use std::time::Duration;

use reins::agent::{self, AgentInvocation, AgentOutcome, FailureKind, SessionEvent, SessionMode};
use serde_json::json;
use support::{claude_env, group_members, process_alive, require_claude, MockApi, Sandbox, Turn};
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

/// One test's world: the CLI, the stand-in API and the folders.
struct World {
    claude: PathBuf,
    api: MockApi,
    sandbox: Sandbox,
}

impl World {
    /// `None` when the CLI is not installed and this is not CI (the test then returns).
    fn new() -> Option<World> {
        Some(World {
            claude: require_claude()?,
            api: MockApi::start(),
            sandbox: Sandbox::new(),
        })
    }

    fn invocation(&self, prompt: &str, session: SessionMode) -> AgentInvocation {
        let mut inv = AgentInvocation::new(
            &self.claude,
            prompt,
            session,
            &self.sandbox.cwd,
            &self.sandbox.node,
        );
        inv.env = claude_env(&self.api, &self.sandbox.home);
        inv.idle_timeout = Some(Duration::from_secs(60));
        inv.wall_timeout = Some(Duration::from_secs(90));
        inv
    }

    /// Runs the agent, bounded by 2 minutes; returns the outcome and the CLI's pid.
    async fn run(&self, inv: AgentInvocation) -> (AgentOutcome, u32) {
        let (_cancel_tx, cancel) = watch::channel(false);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let outcome =
            tokio::time::timeout(Duration::from_secs(120), agent::run(inv, Some(tx), cancel))
                .await
                .expect("the agent run ended within 2 minutes");
        let mut pid = 0;
        while let Ok(event) = rx.try_recv() {
            if let SessionEvent::Spawned { pid: p, .. } = event {
                pid = p;
            }
        }
        (outcome, pid)
    }
}

fn new_session() -> SessionMode {
    SessionMode::New(Uuid::new_v4())
}

#[tokio::test]
async fn a_write_tool_call_creates_the_file_in_the_working_directory() {
    let Some(world) = World::new() else { return };
    world.api.rule(
        "MARK-WRITE",
        [
            Turn::tool(
                "Write",
                json!({"file_path": "out.txt", "content": "written by the agent\n"}),
            ),
            Turn::text("I wrote out.txt."),
        ],
    );
    let session = new_session();
    let mut inv = world.invocation("MARK-WRITE please write out.txt", session);
    inv.permission_mode = Some("acceptEdits".into());
    inv.required_outputs = vec!["out.txt".into()];
    let (outcome, _) = world.run(inv).await;

    assert!(outcome.succeeded(), "{:?}", outcome.verdict);
    assert_eq!(
        std::fs::read_to_string(world.sandbox.cwd.join("out.txt")).unwrap(),
        "written by the agent\n"
    );
    assert_eq!(outcome.result_text.as_deref(), Some("I wrote out.txt."));
    assert_eq!(outcome.session, session);
    assert!(outcome.session_started);
    assert_eq!(outcome.turns, 2);
    assert!(outcome.cost_usd > 0.0, "cost {}", outcome.cost_usd);
    assert_eq!(outcome.usage.input_tokens, 24, "12 per mocked call");
    assert_eq!(outcome.exit.and_then(|e| e.code()), Some(0));

    let requests = world.api.requests_for("MARK-WRITE");
    assert_eq!(
        requests.len(),
        2,
        "the tool result came back in a second call"
    );
    let id = session.id().to_string();
    assert!(requests.iter().all(|r| r.session_id() == Some(id.as_str())));
    assert!(requests[1].tool_results()[0].contains("File created successfully"));
    let transcript = world.sandbox.transcript();
    assert!(transcript.contains(r#""name":"Write""#), "{transcript}");
    assert!(transcript.contains(r#""type":"result""#));
}

#[tokio::test]
async fn a_sticky_session_remembers_and_a_fresh_one_does_not() {
    let Some(world) = World::new() else { return };
    world.api.rule("MARK-ONE", [Turn::text("Noted.")]);
    world
        .api
        .rule("MARK-TWO", [Turn::text("The word was PAPAYA.")]);
    world.api.rule("MARK-THREE", [Turn::text("What word?")]);
    let id = Uuid::new_v4();

    let first = world.invocation("MARK-ONE remember the word PAPAYA", SessionMode::New(id));
    let (first, _) = world.run(first).await;
    assert!(first.succeeded(), "{:?}", first.verdict);

    let second = world.invocation("MARK-TWO which word?", SessionMode::Resume(id));
    let (outcome, _) = world.run(second).await;
    assert!(outcome.succeeded(), "{:?}", outcome.verdict);
    assert_eq!(outcome.session, SessionMode::Resume(id));
    assert_eq!(outcome.result_text.as_deref(), Some("The word was PAPAYA."));
    let seen = &world.api.requests_for("MARK-TWO")[0];
    assert_eq!(seen.session_id(), Some(id.to_string().as_str()));
    assert!(seen.contains_text("remember the word PAPAYA"));
    assert!(
        seen.contains_text("Noted."),
        "the first answer is in the history"
    );

    let fresh = world.invocation("MARK-THREE which word?", new_session());
    let (outcome, _) = world.run(fresh).await;
    assert!(outcome.succeeded(), "{:?}", outcome.verdict);
    let seen = &world.api.requests_for("MARK-THREE")[0];
    assert!(
        !seen.contains_text("PAPAYA"),
        "a fresh session has no history"
    );
    assert_eq!(seen.prompts(), ["MARK-THREE which word?"]);
}

#[tokio::test]
async fn a_denied_write_fails_and_says_how_to_allow_it() {
    let Some(world) = World::new() else { return };
    world.api.rule(
        "MARK-DENY",
        [
            Turn::tool(
                "Write",
                json!({"file_path": "src/x.rs", "content": "fn x() {}\n"}),
            ),
            Turn::text("I could not write it."),
        ],
    );
    let (outcome, _) = world
        .run(world.invocation("MARK-DENY write src/x.rs", new_session()))
        .await;
    let failure = outcome.failure().expect("a denied write fails the run");
    assert_eq!(failure.kind, FailureKind::Denied);
    assert_eq!(
        failure.message,
        "the agent was denied Write on src/x.rs (permission_mode default); allow it with \
         `allowed_tools: [Write]` or `permission_mode: acceptEdits`"
    );
    assert!(!failure.transient);
    assert_eq!(outcome.denials.len(), 1);
    assert!(!world.sandbox.cwd.join("src/x.rs").exists());
}

#[tokio::test]
async fn allowed_tools_let_a_write_through_in_default_mode() {
    let Some(world) = World::new() else { return };
    world.api.rule(
        "MARK-ALLOW",
        [
            Turn::tool("Write", json!({"file_path": "a.txt", "content": "a"})),
            Turn::text("done"),
        ],
    );
    let mut inv = world.invocation("MARK-ALLOW write a.txt", new_session());
    inv.allowed_tools = vec!["Write".into()];
    let (outcome, _) = world.run(inv).await;
    assert!(outcome.succeeded(), "{:?}", outcome.verdict);
    assert!(world.sandbox.cwd.join("a.txt").exists());
}

#[tokio::test]
async fn an_overloaded_or_failing_api_is_a_transient_failure() {
    let Some(world) = World::new() else { return };
    world
        .api
        .rule("MARK-529", [Turn::error(529, "overloaded_error")]);
    world.api.rule("MARK-500", [Turn::error(500, "api_error")]);
    for (marker, status) in [("MARK-529", "529"), ("MARK-500", "500")] {
        let (outcome, _) = world
            .run(world.invocation(&format!("{marker} hello"), new_session()))
            .await;
        let failure = outcome.failure().expect("an API error fails the run");
        assert_eq!(
            failure.kind,
            FailureKind::Api,
            "{marker}: {}",
            failure.message
        );
        assert!(failure.transient, "{marker}: {}", failure.message);
        assert!(
            failure
                .message
                .starts_with("the model API failed: API Error: ")
                && failure.message.contains(status),
            "{}",
            failure.message
        );
        assert_eq!(
            world.api.requests_for(marker).len(),
            2,
            "one call and one retry (CLAUDE_CODE_MAX_RETRIES=1)"
        );
    }
}

#[tokio::test]
async fn a_rejected_api_key_is_not_transient() {
    let Some(world) = World::new() else { return };
    world
        .api
        .rule("MARK-401", [Turn::error(401, "authentication_error")]);
    let (outcome, _) = world
        .run(world.invocation("MARK-401 hello", new_session()))
        .await;
    let failure = outcome.failure().expect("a 401 fails the run");
    assert_eq!(failure.kind, FailureKind::Api, "{}", failure.message);
    assert!(!failure.transient, "{}", failure.message);
}

#[tokio::test]
async fn an_unreachable_api_is_a_transient_failure() {
    let Some(world) = World::new() else { return };
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut inv = world.invocation("hello", new_session());
    for (key, value) in &mut inv.env {
        if key == "ANTHROPIC_BASE_URL" {
            *value = format!("http://{closed}");
        }
    }
    let (outcome, _) = world.run(inv).await;
    let failure = outcome.failure().expect("no API fails the run");
    assert_eq!(failure.kind, FailureKind::Api, "{}", failure.message);
    assert!(failure.transient, "{}", failure.message);
    assert!(
        failure.message.contains("Connection refused"),
        "{}",
        failure.message
    );
}

#[tokio::test]
async fn a_hung_stream_hits_the_idle_timeout_and_leaves_no_process() {
    let Some(world) = World::new() else { return };
    world.api.rule("MARK-HANG", [Turn::Hang]);
    let mut inv = world.invocation("MARK-HANG hello", new_session());
    // Long enough for a slow start on a busy machine: the CLI prints `init` before it calls.
    inv.idle_timeout = Some(Duration::from_secs(5));
    let (outcome, pid) = world.run(inv).await;
    let failure = outcome.failure().expect("a hung stream fails the run");
    assert_eq!(
        failure.kind,
        FailureKind::IdleTimeout,
        "{}",
        failure.message
    );
    assert!(!failure.transient);
    assert!(
        outcome.session_started,
        "the CLI had started before it hung"
    );
    assert_ne!(pid, 0);
    assert!(!process_alive(pid), "the CLI is still running");
    assert_eq!(
        group_members(pid),
        Vec::<u32>::new(),
        "its group is not empty"
    );
}

#[tokio::test]
async fn a_slow_answer_keeps_the_idle_timer_alive() {
    let Some(world) = World::new() else { return };
    let chunks: Vec<String> = (1..=5).map(|i| format!("part{i} ")).collect();
    world.api.rule(
        "MARK-SLOW",
        [Turn::Slow {
            chunks,
            delay: Duration::from_secs(2),
        }],
    );
    let mut inv = world.invocation("MARK-SLOW tell a long story", new_session());
    // The answer takes 8 s in all, but a piece arrives every 2 s.
    inv.idle_timeout = Some(Duration::from_secs(6));
    let (outcome, _) = world.run(inv).await;
    assert!(outcome.succeeded(), "{:?}", outcome.verdict);
    assert_eq!(
        outcome.result_text.as_deref(),
        Some("part1 part2 part3 part4 part5 ")
    );
}

#[tokio::test]
async fn a_long_prompt_goes_through_a_file_the_agent_reads() {
    let Some(world) = World::new() else { return };
    let prompt_file = world.sandbox.node.join("prompt.md");
    let file = prompt_file.display().to_string();
    world.api.rule(
        "instructions for this step are in the file",
        [
            Turn::tool("Read", json!({ "file_path": file })),
            Turn::tool(
                "Read",
                json!({ "file_path": file, "offset": 800, "limit": 2000 }),
            ),
            Turn::text("read it all"),
        ],
    );
    let mut prompt = String::from("START-OF-PROMPT\n");
    for i in 0..1700 {
        prompt.push_str(&format!(
            "step {i}: a line of instructions, padded to make the prompt long enough.\n"
        ));
    }
    prompt.push_str("END-OF-PROMPT\n");
    assert!(prompt.len() > 120 * 1024);
    let (outcome, _) = world.run(world.invocation(&prompt, new_session())).await;

    assert!(outcome.succeeded(), "{:?}", outcome.verdict);
    assert_eq!(std::fs::read_to_string(&prompt_file).unwrap(), prompt);
    let requests = world
        .api
        .requests_for("instructions for this step are in the file");
    assert_eq!(requests.len(), 3);
    let asked = requests[0].prompt().unwrap();
    assert!(asked.len() < 1024, "the prompt itself went to the CLI");
    assert!(asked.contains(&file));
    let results = requests[2].tool_results();
    assert!(results[0].contains("START-OF-PROMPT"), "first page read");
    assert!(results[1].contains("END-OF-PROMPT"), "second page read");
}

#[tokio::test]
async fn resuming_a_conversation_that_was_never_saved_starts_it() {
    let Some(world) = World::new() else { return };
    world.api.rule("MARK-LOST", [Turn::text("fresh start")]);
    let id = Uuid::new_v4();
    let (outcome, _) = world
        .run(world.invocation("MARK-LOST continue", SessionMode::Resume(id)))
        .await;
    assert!(outcome.succeeded(), "{:?}", outcome.verdict);
    assert_eq!(outcome.session, SessionMode::New(id));
    assert_eq!(outcome.result_text.as_deref(), Some("fresh start"));
    let transcript = world.sandbox.transcript();
    assert!(
        transcript.contains("No conversation found with session ID"),
        "{transcript}"
    );
    assert!(transcript.contains("starting it with --session-id"));
}

#[tokio::test]
async fn starting_a_conversation_that_exists_resumes_it() {
    let Some(world) = World::new() else { return };
    world.api.rule("MARK-FIRST", [Turn::text("first answer")]);
    world.api.rule("MARK-AGAIN", [Turn::text("second answer")]);
    let id = Uuid::new_v4();
    let (outcome, _) = world
        .run(world.invocation("MARK-FIRST hello", SessionMode::New(id)))
        .await;
    assert!(outcome.succeeded(), "{:?}", outcome.verdict);
    let (outcome, _) = world
        .run(world.invocation("MARK-AGAIN hello again", SessionMode::New(id)))
        .await;
    assert!(outcome.succeeded(), "{:?}", outcome.verdict);
    assert_eq!(outcome.session, SessionMode::Resume(id));
    assert!(world.api.requests_for("MARK-AGAIN")[0].contains_text("first answer"));
}

#[tokio::test]
async fn max_turns_stops_an_agent_that_keeps_calling_tools() {
    let Some(world) = World::new() else { return };
    std::fs::write(world.sandbox.cwd.join("x.txt"), "x").unwrap();
    world.api.rule(
        "MARK-LOOP",
        [Turn::tool("Read", json!({"file_path": "x.txt"}))],
    );
    let mut inv = world.invocation("MARK-LOOP read forever", new_session());
    inv.max_turns = Some(2);
    let (outcome, _) = world.run(inv).await;
    let failure = outcome.failure().expect("max turns fails the run");
    assert_eq!(failure.kind, FailureKind::MaxTurns, "{}", failure.message);
    assert!(!failure.transient);
}

#[tokio::test]
async fn the_control_plane_is_denied_even_when_bash_and_write_are_allowed() {
    let Some(world) = World::new() else { return };
    let store = world.sandbox.cwd.join(".reins");
    let nodes = store.join("runs/20261201-000000-abcd/nodes/gate");
    let artifacts = store.join("runs/20261201-000000-abcd/artifacts");
    std::fs::create_dir_all(&nodes).unwrap();
    std::fs::create_dir_all(&artifacts).unwrap();
    world.api.rule(
        "MARK-CONTROL",
        [
            Turn::tool(
                "Bash",
                json!({"command": "reins approve last gate", "description": "approve"}),
            ),
            Turn::tool(
                "Bash",
                json!({"command": "cd . && reins approve last gate", "description": "approve"}),
            ),
            Turn::tool(
                "Write",
                json!({"file_path": nodes.join("answer.json"), "content": "{\"approved\":true}"}),
            ),
            Turn::tool(
                "Write",
                json!({"file_path": artifacts.join("ok.md"), "content": "fine"}),
            ),
            Turn::text("tried"),
        ],
    );
    let mut inv = world.invocation("MARK-CONTROL approve yourself", new_session());
    // Without the denial these all run (checked: no denial at all).
    inv.allowed_tools = vec!["Bash".into(), "Write".into()];
    inv.add_dirs = vec![artifacts.clone()];
    inv.control_plane = Some(store.clone());
    let (outcome, _) = world.run(inv).await;
    let denied: Vec<String> = outcome.denials.iter().map(|d| format!("{d:?}")).collect();
    assert_eq!(denied.len(), 3, "{denied:#?}");
    assert!(!nodes.join("answer.json").exists());
    assert_eq!(
        std::fs::read_to_string(artifacts.join("ok.md")).unwrap(),
        "fine"
    );
}
