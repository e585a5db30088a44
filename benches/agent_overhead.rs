//! What reins adds to an agent call: the real Claude Code CLI against the offline stand-in API,
//! run bare (pipes, `std::process`, no reins) and through `reins::agent::run` (PTY, transcript,
//! parsing), for a fresh session and for a sticky (`--resume`) turn. The runs interleave so
//! drift hits both sides alike; each side of a sticky pair grows its own conversation equally.
//!
//! A scripted fake CLI (`tests/support/fake-claude`, two lines of output) isolates what
//! reins itself costs per run from the real CLI's noisy start-up.
//!
//! `cargo bench --bench agent_overhead` (`REINS_BENCH_ITERS`, default 10). Needs the CLI from
//! `.ci/install-claude` or `$REINS_TEST_CLAUDE`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reins::agent::{self, AgentInvocation, SessionMode};
use support::{claude_env, fake_claude, require_claude, MockApi, Sandbox, Turn};
use tokio::sync::watch;
use uuid::Uuid;

fn main() {
    let iterations: usize = std::env::var("REINS_BENCH_ITERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10);
    fake_overhead(iterations * 5);
    let Some(claude) = require_claude() else {
        return;
    };
    let api = MockApi::start();
    api.rule("BENCH", [Turn::text("ok")]);
    let sandbox = Sandbox::new();
    let env = claude_env(&api, &sandbox.home);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");

    let bare = |session: SessionMode, prompt: &str| -> Duration {
        let inv = invocation(&claude, &sandbox, &env, prompt, session);
        let started = Instant::now();
        let mut child = Command::new(&inv.program)
            .args(inv.args(session))
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env_remove("CLAUDECODE")
            .current_dir(&sandbox.cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn claude");
        let mut out = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        let status = child.wait().unwrap();
        assert!(
            status.success() && out.contains(r#""subtype":"success""#),
            "bare run failed: {out}"
        );
        started.elapsed()
    };
    let reins = |session: SessionMode, prompt: &str| -> Duration {
        let inv = invocation(&claude, &sandbox, &env, prompt, session);
        let (_tx, cancel) = watch::channel(false);
        let started = Instant::now();
        let outcome = runtime.block_on(agent::run(inv, None, cancel));
        assert!(
            outcome.succeeded(),
            "reins run failed: {:?}",
            outcome.verdict
        );
        started.elapsed()
    };

    // One untimed warm-up of each, which also starts the two sticky conversations.
    let (bare_sticky, reins_sticky) = (Uuid::new_v4(), Uuid::new_v4());
    bare(SessionMode::New(bare_sticky), "BENCH warm up");
    reins(SessionMode::New(reins_sticky), "BENCH warm up");

    let mut samples: [Vec<Duration>; 4] = Default::default();
    for i in 0..iterations {
        samples[0].push(bare(SessionMode::New(Uuid::new_v4()), "BENCH fresh"));
        samples[1].push(reins(SessionMode::New(Uuid::new_v4()), "BENCH fresh"));
        let turn = format!("BENCH turn {i}");
        samples[2].push(bare(SessionMode::Resume(bare_sticky), &turn));
        samples[3].push(reins(SessionMode::Resume(reins_sticky), &turn));
    }

    let [bare_fresh, reins_fresh, bare_resume, reins_resume] = samples.map(|mut s| {
        s.sort();
        s
    });
    println!("agent overhead, {iterations} runs each (median, min..max)");
    for (name, s) in [
        ("claude bare, fresh session", &bare_fresh),
        ("reins agent::run, fresh session", &reins_fresh),
        ("claude bare, --resume turn", &bare_resume),
        ("reins agent::run, --resume turn", &reins_resume),
    ] {
        println!(
            "  {name:<34} {:>8.1} ms  ({:.1}..{:.1})",
            ms(median(s)),
            ms(s[0]),
            ms(s[s.len() - 1])
        );
    }
    for (name, reins, bare) in [
        ("fresh", &reins_fresh, &bare_fresh),
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
