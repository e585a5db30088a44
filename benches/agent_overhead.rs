//! What reins adds to an agent call, for each agent CLI: the real Claude Code and Codex CLIs
//! against their offline stand-in APIs, run bare (pipes, `std::process`, no reins) and through
//! `reins::agent::run` (PTY, transcript, parsing), for a fresh session and for a sticky
//! (resumed) turn. The runs interleave so drift hits both sides alike; each side of a sticky
//! pair grows its own conversation equally.
//!
//! A scripted fake CLI (`tests/support/fake-claude`, two lines of output) isolates what
//! reins itself costs per run from the real CLIs' noisy start-up.
//!
//! `cargo bench --bench agent_overhead` (`REINS_BENCH_ITERS`, default 10). Needs the CLIs from
//! `.ci/install-claude` and `.ci/install-codex` (or `$REINS_TEST_CLAUDE`, `$REINS_TEST_CODEX`);
//! an agent whose CLI is missing is left out, outside CI.

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reins::agent::{self, AgentInvocation, HarnessKind, SessionMode};
use support::{
    claude_env, codex_env, fake_claude, require_claude, require_codex, MockApi, Reply,
    ResponsesApi, Sandbox, Turn,
};
use tokio::sync::watch;
use uuid::Uuid;

/// One agent CLI under measurement and how to read its output.
struct Agent<'a> {
    /// The heading of its figures.
    title: &'static str,
    /// How its rows name the bare CLI, a fresh session and a resumed turn, and its ratio
    /// line a fresh one.
    labels: [&'static str; 4],
    /// Builds the invocation of a prompt (program, harness, environment, folders).
    invocation: &'a dyn Fn(&str, SessionMode) -> AgentInvocation,
    /// What a successful bare run prints.
    success: &'static str,
    /// The JSON key before the conversation's id in a bare run's output.
    id_key: &'static str,
}

fn main() {
    let iterations: usize = std::env::var("REINS_BENCH_ITERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10);
    fake_overhead(iterations * 5);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");

    if let Some(claude) = require_claude() {
        let api = MockApi::start();
        api.rule("BENCH", [Turn::text("ok")]);
        let sandbox = Sandbox::new();
        let env = claude_env(&api, &sandbox.home);
        let invocation =
            |prompt: &str, session| invocation(&claude, &sandbox, &env, prompt, session);
        let agent = Agent {
            title: "agent overhead",
            labels: ["claude bare", "fresh session", "--resume turn", "fresh"],
            invocation: &invocation,
            success: r#""subtype":"success""#,
            id_key: r#""session_id":""#,
        };
        compare(&agent, &sandbox, &runtime, iterations);
    }

    if let Some(codex) = require_codex() {
        let api = ResponsesApi::start();
        api.rule("BENCH", [Reply::text("ok")]);
        let sandbox = Sandbox::new();
        let env = codex_env(&api, &sandbox.home.join("codex"));
        let invocation = |prompt: &str, session| {
            let mut inv = invocation(&codex, &sandbox, &env, prompt, session);
            inv.harness = HarnessKind::Codex;
            inv.sandbox = Some("none".into());
            inv
        };
        let agent = Agent {
            title: "codex turn overhead",
            labels: ["codex exec bare", "new thread", "resume turn", "new"],
            invocation: &invocation,
            success: "turn.completed",
            id_key: r#""thread_id":""#,
        };
        compare(&agent, &sandbox, &runtime, iterations);
    }
}

/// Times `iterations` fresh and resumed turns of `agent`, bare and through reins, and prints
/// the medians and the ratios.
fn compare(agent: &Agent, sandbox: &Sandbox, runtime: &tokio::runtime::Runtime, iterations: usize) {
    // Returns the conversation's id as well, to resume it.
    let bare = |session: SessionMode, prompt: &str| -> (Duration, Uuid) {
        let inv = (agent.invocation)(prompt, session);
        let started = Instant::now();
        let mut child = Command::new(&inv.program)
            .args(inv.args(session))
            .envs(inv.env.iter().map(|(k, v)| (k, v)))
            .env_remove("CLAUDECODE")
            .current_dir(&sandbox.cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the CLI");
        let mut out = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        let status = child.wait().unwrap();
        let elapsed = started.elapsed();
        assert!(
            status.success() && out.contains(agent.success),
            "bare run failed: {out}"
        );
        let id = out
            .split(agent.id_key)
            .nth(1)
            .and_then(|s| s.split('"').next())
            .and_then(|s| Uuid::parse_str(s).ok())
            .expect("a conversation id");
        (elapsed, id)
    };
    let reins = |session: SessionMode, prompt: &str| -> (Duration, Uuid) {
        let inv = (agent.invocation)(prompt, session);
        let (_tx, cancel) = watch::channel(false);
        let started = Instant::now();
        let outcome = runtime.block_on(agent::run(inv, None, cancel));
        let elapsed = started.elapsed();
        assert!(
            outcome.succeeded(),
            "reins run failed: {:?}",
            outcome.verdict
        );
        (elapsed, outcome.session.id())
    };
    let fresh = || SessionMode::New(Uuid::new_v4());

    // One untimed warm-up of each, which also starts the two sticky conversations.
    let (_, bare_sticky) = bare(fresh(), "BENCH warm up");
    let (_, reins_sticky) = reins(fresh(), "BENCH warm up");
    let mut samples: [Vec<Duration>; 4] = Default::default();
    for i in 0..iterations {
        samples[0].push(bare(fresh(), "BENCH fresh").0);
        samples[1].push(reins(fresh(), "BENCH fresh").0);
        let turn = format!("BENCH turn {i}");
        samples[2].push(bare(SessionMode::Resume(bare_sticky), &turn).0);
        samples[3].push(reins(SessionMode::Resume(reins_sticky), &turn).0);
    }
    let [bare_fresh, reins_fresh, bare_resume, reins_resume] = samples.map(|mut s| {
        s.sort();
        s
    });
    let [cli, new, resumed, new_ratio] = agent.labels;
    println!("{}, {iterations} runs each (median, min..max)", agent.title);
    for (name, s) in [
        (format!("{cli}, {new}"), &bare_fresh),
        (format!("reins agent::run, {new}"), &reins_fresh),
        (format!("{cli}, {resumed}"), &bare_resume),
        (format!("reins agent::run, {resumed}"), &reins_resume),
    ] {
        println!(
            "  {name:<34} {:>8.1} ms  ({:.1}..{:.1})",
            ms(median(s)),
            ms(s[0]),
            ms(s[s.len() - 1])
        );
    }
    for (name, reins, bare) in [
        (new_ratio, &reins_fresh, &bare_fresh),
        ("resume", &reins_resume, &bare_resume),
    ] {
        let (r, b) = (median(reins), median(bare));
        println!(
            "  {name:<7} reins/bare = {:.3}  (reins adds {:+.1} ms)",
            r.as_secs_f64() / b.as_secs_f64(),
            ms(r) - ms(b)
        );
    }
}

/// Bare spawn of the fake CLI vs `agent::run` of it: reins' own cost per run.
fn fake_overhead(iterations: usize) {
    let sandbox = Sandbox::new();
    let script = sandbox.node.parent().unwrap().join("script.txt");
    std::fs::write(
        &script,
        concat!(
            r#"{"type":"system","subtype":"init","session_id":"@SESSION@","model":"m"}"#,
            "\n",
            r#"{"type":"result","subtype":"success","is_error":false,"result":"ok","num_turns":1}"#,
            "\n"
        ),
    )
    .unwrap();
    let env = vec![(
        "FAKE_CLAUDE_SCRIPT".to_string(),
        script.display().to_string(),
    )];
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut bare = Vec::new();
    let mut reins = Vec::new();
    for _ in 0..iterations {
        let inv = invocation(
            &fake_claude(),
            &sandbox,
            &env,
            "x",
            SessionMode::New(Uuid::new_v4()),
        );
        let started = Instant::now();
        let out = Command::new(&inv.program)
            .args(inv.args(inv.session))
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .output()
            .expect("spawn the fake CLI");
        assert!(out.status.success());
        bare.push(started.elapsed());
        let (_tx, cancel) = watch::channel(false);
        let started = Instant::now();
        let outcome = runtime.block_on(agent::run(inv, None, cancel));
        assert!(outcome.succeeded(), "{:?}", outcome.verdict);
        reins.push(started.elapsed());
    }
    bare.sort();
    reins.sort();
    println!(
        "fake CLI, {iterations} runs each: bare {:.2} ms, reins agent::run {:.2} ms (median): \
         reins adds {:+.2} ms per run",
        ms(median(&bare)),
        ms(median(&reins)),
        ms(median(&reins)) - ms(median(&bare))
    );
}

fn invocation(
    claude: &Path,
    sandbox: &Sandbox,
    env: &[(String, String)],
    prompt: &str,
    session: SessionMode,
) -> AgentInvocation {
    let mut inv = AgentInvocation::new(claude, prompt, session, &sandbox.cwd, &sandbox.node);
    inv.env = env.to_vec();
    inv.wall_timeout = Some(Duration::from_secs(120));
    inv
}

fn median(sorted: &[Duration]) -> Duration {
    sorted[sorted.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
