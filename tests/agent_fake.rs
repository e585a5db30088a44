//! The agent runner against a scripted fake CLI: fast, no Claude install needed. Covers the
//! PTY plumbing, the transcript, timeouts, cancellation and process-group cleanup.

mod support;

use std::path::Path;
use std::time::Duration;

use reins::agent::{
    self, AgentEvent, AgentInvocation, AgentOutcome, FailureKind, SessionEvent, SessionMode,
};
use support::{fake_claude, process_alive, Sandbox};
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

const INIT: &str = r#"{"type":"system","subtype":"init","cwd":"/w","session_id":"@SESSION@","model":"claude-mock-1","permissionMode":"default","claude_code_version":"2.1.329","tools":["Read"]}"#;
const PARTIAL: &str = r#"{"type":"stream_event","event":{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hel"}},"session_id":"@SESSION@"}"#;
const ASSISTANT: &str = r#"{"type":"assistant","message":{"id":"m1","type":"message","role":"assistant","model":"claude-mock-1","content":[{"type":"text","text":"Hello there"}],"stop_reason":null},"parent_tool_use_id":null,"session_id":"@SESSION@","uuid":"u1"}"#;
const RESULT: &str = r#"{"type":"result","subtype":"success","is_error":false,"duration_ms":114,"duration_api_ms":22,"num_turns":1,"result":"Hello there","stop_reason":"end_turn","session_id":"@SESSION@","total_cost_usd":0.000148,"usage":{"input_tokens":12,"cache_creation_input_tokens":3,"cache_read_input_tokens":4,"output_tokens":5},"permission_denials":[],"terminal_reason":"completed","uuid":"u2"}"#;

/// Runs the fake CLI with `script`, bounded by 30 s, and returns the outcome and the events.
async fn run_fake(
    sandbox: &Sandbox,
    script: &str,
    tweak: impl FnOnce(&mut AgentInvocation),
) -> (AgentOutcome, Vec<SessionEvent>) {
    let (_cancel_tx, cancel) = watch::channel(false);
    run_fake_with(sandbox, script, tweak, cancel).await
}

async fn run_fake_with(
    sandbox: &Sandbox,
    script: &str,
    tweak: impl FnOnce(&mut AgentInvocation),
    cancel: watch::Receiver<bool>,
) -> (AgentOutcome, Vec<SessionEvent>) {
    let script_path = sandbox.node.parent().unwrap().join("script.txt");
    std::fs::write(&script_path, script).unwrap();
    let mut inv = invocation(sandbox, "say hello");
    inv.env.push((
        "FAKE_CLAUDE_SCRIPT".into(),
        script_path.display().to_string(),
    ));
    tweak(&mut inv);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let outcome = tokio::time::timeout(Duration::from_secs(30), agent::run(inv, Some(tx), cancel))
        .await
        .expect("the run ended within 30 s");
    let mut events = Vec::new();
    while let Ok(event) = rx.try_recv() {
        events.push(event);
    }
    (outcome, events)
}

fn invocation(sandbox: &Sandbox, prompt: &str) -> AgentInvocation {
    AgentInvocation::new(
        fake_claude(),
        prompt,
        SessionMode::New(Uuid::new_v4()),
        &sandbox.cwd,
        &sandbox.node,
    )
}

fn script(lines: &[&str]) -> String {
    lines.join("\n") + "\n"
}

fn read_pid(path: &Path) -> u32 {
    for _ in 0..100 {
        if let Ok(text) = std::fs::read_to_string(path) {
            if let Ok(pid) = text.trim().parse() {
                return pid;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no pid in {}", path.display());
}

/// Waits up to 5 s for `pid` to be gone.
fn gone(pid: u32) -> bool {
    (0..250).any(|_| {
        let alive = process_alive(pid);
        if alive {
            std::thread::sleep(Duration::from_millis(20));
        }
        !alive
    })
}

#[tokio::test]
async fn a_successful_run_reports_text_cost_tokens_and_session() {
    let sandbox = Sandbox::new();
    let (outcome, events) = run_fake(
        &sandbox,
        &script(&[INIT, PARTIAL, ASSISTANT, RESULT]),
        |_| {},
    )
    .await;
    assert!(outcome.succeeded(), "{:?}", outcome.verdict);
    assert_eq!(outcome.result_text.as_deref(), Some("Hello there"));
    assert!(outcome.session_started);
    assert_eq!(outcome.model.as_deref(), Some("claude-mock-1"));
    assert_eq!(outcome.cost_usd, 0.000148);
    assert_eq!(
        (
            outcome.usage.input_tokens,
            outcome.usage.output_tokens,
            outcome.usage.cache_creation_input_tokens,
            outcome.usage.cache_read_input_tokens
        ),
        (12, 5, 3, 4)
    );
    assert_eq!(outcome.turns, 1);
    assert_eq!(outcome.exit.and_then(|e| e.code()), Some(0));
    assert!(matches!(events.first(), Some(SessionEvent::Spawned { .. })));
    let kinds: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            SessionEvent::Agent(AgentEvent::Init(_)) => Some("init"),
            SessionEvent::Agent(AgentEvent::Partial { .. }) => Some("partial"),
            SessionEvent::Agent(AgentEvent::Assistant(_)) => Some("assistant"),
            SessionEvent::Agent(AgentEvent::Result(_)) => Some("result"),
            _ => None,
        })
        .collect();
    assert_eq!(kinds, ["init", "partial", "assistant", "result"]);
}

#[tokio::test]
async fn the_transcript_keeps_every_line_but_partials_and_the_prompt_is_saved() {
    let sandbox = Sandbox::new();
    let (outcome, _) = run_fake(
        &sandbox,
        &script(&[
            INIT,
            PARTIAL,
            "some warning the CLI printed",
            ASSISTANT,
            RESULT,
        ]),
        |_| {},
    )
    .await;
    assert!(outcome.succeeded(), "{:?}", outcome.verdict);
    let transcript = sandbox.transcript();
    let lines: Vec<serde_json::Value> = transcript
        .lines()
        .map(|l| serde_json::from_str(l).expect("every transcript line is JSON"))
        .collect();
    let types: Vec<&str> = lines.iter().map(|l| l["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["system", "reins_text", "assistant", "result"]);
    assert_eq!(lines[1]["text"], "some warning the CLI printed");
    let id = outcome.session.id().to_string();
    assert_eq!(
        lines[0]["session_id"],
        id.as_str(),
        "the session id was passed"
    );
    assert_eq!(
        std::fs::read_to_string(sandbox.node.join("prompt.md")).unwrap(),
        "say hello"
    );

    // A second run of the same node appends.
    let (again, _) = run_fake(&sandbox, &script(&[INIT, RESULT]), |_| {}).await;
    assert!(again.succeeded());
    assert_eq!(sandbox.transcript().lines().count(), 6);
}

#[tokio::test]
async fn the_command_line_carries_the_profile_and_ends_with_the_prompt() {
    let sandbox = Sandbox::new();
    let argv = sandbox.node.join("argv.txt");
    let id = Uuid::new_v4();
    let (outcome, _) = run_fake(&sandbox, &script(&[INIT, RESULT]), |inv| {
        inv.session = SessionMode::Resume(id);
        inv.prompt = "--not-a-flag".into();
        inv.model = Some("sonnet".into());
        inv.permission_mode = Some("acceptEdits".into());
        inv.allowed_tools = vec!["Read".into(), "Bash(git *)".into()];
        inv.max_turns = Some(4);
        inv.env
            .push(("FAKE_CLAUDE_ARGV".into(), argv.display().to_string()));
    })
    .await;
    assert!(outcome.succeeded(), "{:?}", outcome.verdict);
    assert_eq!(outcome.session, SessionMode::Resume(id));
    let args = std::fs::read_to_string(&argv).unwrap();
    assert_eq!(
        args,
        format!(
            "-p\n--output-format\nstream-json\n--verbose\n--include-partial-messages\n\
             --resume\n{id}\n--model\nsonnet\n--permission-mode\nacceptEdits\n\
             --allowedTools\nRead\nBash(git *)\n--max-turns\n4\n--\n--not-a-flag\n"
        )
    );
}

#[tokio::test]
async fn the_idle_timeout_stops_the_whole_process_group() {
    let sandbox = Sandbox::new();
    let pidfile = sandbox.node.join("grandchild.pid");
    let (outcome, _) = run_fake(
        &sandbox,
        &script(&[INIT, &format!("@grandchild {}", pidfile.display()), "@hang"]),
        |inv| inv.idle_timeout = Some(Duration::from_millis(700)),
    )
    .await;
    let failure = outcome.failure().expect("failed");
    assert_eq!(failure.kind, FailureKind::IdleTimeout);
    assert!(
        failure.message.contains("printed nothing for 700ms"),
        "{}",
        failure.message
    );
    assert!(!failure.transient);
    assert!(gone(read_pid(&pidfile)), "the grandchild outlived the run");
}

#[tokio::test]
async fn the_wall_timeout_applies_even_while_output_flows() {
    let sandbox = Sandbox::new();
    let busy: Vec<String> = (0..200)
        .flat_map(|_| [PARTIAL.to_string(), "@sleep 0.1".to_string()])
        .collect();
    let busy: Vec<&str> = busy.iter().map(String::as_str).collect();
    let (outcome, _) = run_fake(&sandbox, &script(&busy), |inv| {
        inv.idle_timeout = Some(Duration::from_secs(10));
        inv.wall_timeout = Some(Duration::from_millis(800));
    })
    .await;
    let failure = outcome.failure().expect("failed");
    assert_eq!(failure.kind, FailureKind::WallTimeout);
    assert!(
        failure.message.contains("timeout of 800ms"),
        "{}",
        failure.message
    );
}

#[tokio::test]
async fn a_child_that_ignores_sigterm_is_killed() {
    let sandbox = Sandbox::new();
    let pidfile = sandbox.node.join("grandchild.pid");
    let (outcome, events) = run_fake(
        &sandbox,
        &script(&[
            "@ignore-term",
            &format!("@grandchild {}", pidfile.display()),
            INIT,
            "@hang",
        ]),
        |inv| inv.idle_timeout = Some(Duration::from_millis(500)),
    )
    .await;
    assert_eq!(outcome.failure().unwrap().kind, FailureKind::IdleTimeout);
    assert_eq!(
        outcome.exit,
        Some(reins::process::pty::ExitStatus::Signal(
            nix::sys::signal::Signal::SIGKILL
        ))
    );
    let Some(SessionEvent::Spawned { pid, .. }) = events.first() else {
        panic!("no spawn event")
    };
    assert!(gone(*pid));
    assert!(gone(read_pid(&pidfile)));
}

#[tokio::test]
async fn cancelling_stops_the_run() {
    let sandbox = Sandbox::new();
    let (cancel_tx, cancel) = watch::channel(false);
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        cancel_tx.send(true).unwrap();
        cancel_tx
    });
    let (outcome, events) =
        run_fake_with(&sandbox, &script(&[INIT, "@hang"]), |_| {}, cancel).await;
    drop(canceller.await);
    assert_eq!(outcome.verdict, agent::Verdict::Cancelled);
    let Some(SessionEvent::Spawned { pid, .. }) = events.first() else {
        panic!("no spawn event")
    };
    assert!(gone(*pid));
}

#[tokio::test]
async fn dropping_the_run_kills_the_process_group() {
    let sandbox = Sandbox::new();
    let script_path = sandbox.node.join("script.txt");
    let pidfile = sandbox.node.join("grandchild.pid");
    std::fs::write(
        &script_path,
        script(&[&format!("@grandchild {}", pidfile.display()), INIT, "@hang"]),
    )
    .unwrap();
    let mut inv = invocation(&sandbox, "x");
    inv.env.push((
        "FAKE_CLAUDE_SCRIPT".into(),
        script_path.display().to_string(),
    ));
    let (_cancel_tx, cancel) = watch::channel(false);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let run = tokio::spawn(agent::run(inv, Some(tx), cancel));
    let Some(SessionEvent::Spawned { pid, .. }) = rx.recv().await else {
        panic!("no spawn event")
    };
    let grandchild = read_pid(&pidfile);
    run.abort();
    let _ = run.await;
    assert!(gone(pid), "the CLI outlived its dropped run");
    assert!(gone(grandchild), "the grandchild outlived the dropped run");
}

#[tokio::test]
async fn an_exit_without_result_quotes_the_cli() {
    let sandbox = Sandbox::new();
    let (outcome, _) = run_fake(
        &sandbox,
        &script(&[
            "Error: Invalid MCP configuration: MCP config file not found",
            "@exit 1",
        ]),
        |_| {},
    )
    .await;
    let failure = outcome.failure().unwrap();
    assert_eq!(failure.kind, FailureKind::NoResult);
    assert_eq!(
        failure.message,
        "the agent ended (exit code 1) without reporting a result: Error: Invalid MCP \
         configuration: MCP config file not found"
    );
    assert!(!outcome.session_started);
}

#[tokio::test]
async fn a_process_that_lingers_after_its_result_is_stopped_and_succeeds() {
    let sandbox = Sandbox::new();
    let (outcome, _) = run_fake(&sandbox, &script(&[INIT, RESULT, "@hang"]), |_| {}).await;
    assert!(outcome.succeeded(), "{:?}", outcome.verdict);
    assert_eq!(outcome.result_text.as_deref(), Some("Hello there"));
}

#[tokio::test]
async fn required_outputs_must_exist() {
    let sandbox = Sandbox::new();
    std::fs::write(sandbox.cwd.join("present.md"), "x").unwrap();
    let (outcome, _) = run_fake(&sandbox, &script(&[INIT, RESULT]), |inv| {
        inv.required_outputs = vec!["present.md".into(), "plan.md".into()];
    })
    .await;
    let failure = outcome.failure().unwrap();
    assert_eq!(failure.kind, FailureKind::MissingOutputs);
    assert!(
        failure.message.contains("required output plan.md"),
        "{}",
        failure.message
    );
}

#[tokio::test]
async fn a_missing_working_directory_is_reported_before_spawning() {
    let sandbox = Sandbox::new();
    let (outcome, events) = run_fake(&sandbox, &script(&[INIT, RESULT]), |inv| {
        inv.cwd = sandbox.cwd.join("nope");
    })
    .await;
    let failure = outcome.failure().unwrap();
    assert_eq!(failure.kind, FailureKind::Start);
    assert!(
        failure.message.contains("nope does not exist"),
        "{}",
        failure.message
    );
    assert!(events.is_empty());
}

#[tokio::test]
async fn a_missing_program_says_how_to_fix_it() {
    let sandbox = Sandbox::new();
    let (outcome, _) = run_fake(&sandbox, &script(&[INIT, RESULT]), |inv| {
        inv.program = "claude".into();
        inv.env.push(("PATH".into(), "/nonexistent".into()));
    })
    .await;
    let failure = outcome.failure().unwrap();
    assert_eq!(failure.kind, FailureKind::Start);
    assert_eq!(
        failure.message,
        "claude not found on PATH; install it with `npm i -g @anthropic-ai/claude-code` or set \
         `program:` in the agent profile"
    );
    let (outcome, _) = run_fake(&sandbox, &script(&[INIT, RESULT]), |inv| {
        inv.program = "/nonexistent/bin/claude".into();
    })
    .await;
    let failure = outcome.failure().unwrap();
    assert!(
        failure.message.contains("fix `program:`"),
        "{}",
        failure.message
    );
}

#[tokio::test]
async fn an_oversized_argument_is_refused_instead_of_crashing() {
    let sandbox = Sandbox::new();
    let (outcome, events) = run_fake(&sandbox, &script(&[INIT, RESULT]), |inv| {
        inv.extra_args = vec!["x".repeat(200 * 1024)];
    })
    .await;
    let failure = outcome.failure().unwrap();
    assert_eq!(failure.kind, FailureKind::Start);
    assert!(
        failure.message.contains("longer than the 128 KiB"),
        "{}",
        failure.message
    );
    assert!(events.is_empty());
}

#[tokio::test]
async fn a_long_prompt_goes_through_the_prompt_file() {
    let sandbox = Sandbox::new();
    let argv = sandbox.node.join("argv.txt");
    let prompt = "instructions\n".repeat(20_000);
    let (outcome, _) = run_fake(&sandbox, &script(&[INIT, RESULT]), |inv| {
        inv.prompt = prompt.clone();
        inv.env
            .push(("FAKE_CLAUDE_ARGV".into(), argv.display().to_string()));
    })
    .await;
    assert!(outcome.succeeded(), "{:?}", outcome.verdict);
    assert_eq!(
        std::fs::read_to_string(sandbox.node.join("prompt.md")).unwrap(),
        prompt
    );
    let args = std::fs::read_to_string(&argv).unwrap();
    assert!(args.len() < 4096, "the prompt went through argv");
    assert!(args.contains(&sandbox.node.join("prompt.md").display().to_string()));
}

/// The agent dies with reins even when reins is killed with SIGKILL and has no chance to clean
/// up, and even when the CLI ignores the SIGHUP that the closing terminal sends: on Linux by
/// its parent-death signal alone, on the portable path by the watchdog. This test re-runs its
/// own test binary as that parent (the `REINS_TEST_AS_PARENT` branch), kills it, and checks
/// the agent is gone.
#[tokio::test]
async fn the_agent_dies_with_its_parent() {
    if let Some(script_path) = std::env::var_os("REINS_TEST_AS_PARENT") {
        let sandbox = Sandbox::new();
        let mut inv = invocation(&sandbox, "x");
        inv.env.push((
            "FAKE_CLAUDE_SCRIPT".into(),
            Path::new(&script_path).display().to_string(),
        ));
        if reins::process::PATH == "portable" {
            let watchdog = reins::process::Watchdog::start().unwrap();
            inv.watchdog = Some(std::sync::Arc::new(watchdog));
        }
        let (_cancel_tx, cancel) = watch::channel(false);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let run = tokio::spawn(agent::run(inv, Some(tx), cancel));
        // Report the pid once the fake ignores SIGHUP (it printed its init line after that).
        let mut agent_pid = None;
        while let Some(event) = rx.recv().await {
            match event {
                SessionEvent::Spawned { pid, .. } => agent_pid = Some(pid),
                SessionEvent::Agent(AgentEvent::Init(_)) => {
                    println!("AGENT-PID {}", agent_pid.unwrap_or(0));
                    break;
                }
                _ => {}
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(60), run).await;
        return;
    }
    use std::io::BufRead;
    let sandbox = Sandbox::new();
    let script_path = sandbox.node.join("script.txt");
    std::fs::write(&script_path, script(&["@ignore-hup", INIT, "@hang"])).unwrap();
    let mut parent = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "the_agent_dies_with_its_parent", "--nocapture"])
        .env("REINS_TEST_AS_PARENT", &script_path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = parent.stdout.take().unwrap();
    let (pid_tx, pid_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(pid) = line.strip_prefix("AGENT-PID ") {
                let _ = pid_tx.send(pid.trim().parse::<u32>().unwrap());
            }
        }
    });
    let pid = pid_rx.recv_timeout(Duration::from_secs(20));
    parent.kill().unwrap();
    parent.wait().unwrap();
    let pid = pid.expect("the parent reported the agent's pid");
    assert!(gone(pid), "the agent outlived its parent");
}
