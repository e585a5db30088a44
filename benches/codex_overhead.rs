//! What reins adds to a Codex turn: the real Codex CLI against the offline Responses API
//! stand-in, run bare (pipes, `std::process`, no reins) and through `reins::agent::run` (PTY,
//! transcript, event translation), for a new thread and for a `codex exec resume` turn. The
//! runs interleave so drift hits both sides alike.
//!
//! `cargo bench --bench codex_overhead` (`REINS_BENCH_ITERS`, default 10). Needs the CLI from
//! `.ci/install-codex` or `$REINS_TEST_CODEX`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reins::agent::{self, AgentInvocation, HarnessKind, SessionMode};
use support::{codex_env, require_codex, Reply, ResponsesApi, Sandbox};
use tokio::sync::watch;
use uuid::Uuid;

fn main() {
    let iterations: usize = std::env::var("REINS_BENCH_ITERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10);
    let Some(codex) = require_codex() else {
        return;
    };
    let api = ResponsesApi::start();
    api.rule("BENCH", [Reply::text("ok")]);
    let sandbox = Sandbox::new();
    let env = codex_env(&api, &sandbox.home.join("codex"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let invocation = |prompt: &str, session: SessionMode| {
        let mut inv = AgentInvocation::new(&codex, prompt, session, &sandbox.cwd, &sandbox.node);
        inv.harness = HarnessKind::Codex;
        inv.sandbox = Some("none".into());
        inv.env = env.clone();
        inv
    };
    // Returns the thread id as well, to resume it.
    let bare = |session: SessionMode, prompt: &str| -> (Duration, Uuid) {
        let inv = invocation(prompt, session);
        let started = Instant::now();
        let mut child = Command::new(&inv.program)
            .args(inv.args(session))
            .envs(env.iter().map(|(k, v)| (k, v)))
            .current_dir(&sandbox.cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn codex");
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
            status.success() && out.contains("turn.completed"),
            "bare run failed: {out}"
        );
        let thread = out
            .split("\"thread_id\":\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .and_then(|s| Uuid::parse_str(s).ok())
            .expect("a thread id");
        (elapsed, thread)
    };
    let reins = |session: SessionMode, prompt: &str| -> (Duration, Uuid) {
        let inv = invocation(prompt, session);
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

    let (_, bare_thread) = bare(SessionMode::New(Uuid::nil()), "BENCH warm up");
    let (_, reins_thread) = reins(SessionMode::New(Uuid::nil()), "BENCH warm up");
    let mut samples: [Vec<Duration>; 4] = Default::default();
    for i in 0..iterations {
        samples[0].push(bare(SessionMode::New(Uuid::nil()), "BENCH fresh").0);
        samples[1].push(reins(SessionMode::New(Uuid::nil()), "BENCH fresh").0);
        let turn = format!("BENCH turn {i}");
        samples[2].push(bare(SessionMode::Resume(bare_thread), &turn).0);
        samples[3].push(reins(SessionMode::Resume(reins_thread), &turn).0);
    }
    let [bare_fresh, reins_fresh, bare_resume, reins_resume] = samples.map(|mut s| {
        s.sort();
        s
    });
    println!("codex turn overhead, {iterations} runs each (median, min..max)");
    for (name, s) in [
        ("codex exec bare, new thread", &bare_fresh),
        ("reins agent::run, new thread", &reins_fresh),
        ("codex exec bare, resume turn", &bare_resume),
        ("reins agent::run, resume turn", &reins_resume),
    ] {
        println!(
            "  {name:<32} {:>8.1} ms  ({:.1}..{:.1})",
            ms(median(s)),
            ms(s[0]),
            ms(s[s.len() - 1])
        );
    }
    for (name, reins, bare) in [
        ("new", &reins_fresh, &bare_fresh),
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

fn median(sorted: &[Duration]) -> Duration {
    sorted[sorted.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
