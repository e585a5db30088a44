//! What Temporal adds to a run: the same workflows run locally (`reins run`) and through a real
//! Temporal dev server and one `reins worker` (`reins run --temporal --follow`), measured in
//! the same process, interleaved. A chain of 1 and of 21 `true` nodes separates what a run
//! costs once (submission, placement, opening the run on its worker) from what each node adds
//! (one `node` activity and a workflow task). Then the recovery: a worker killed with `kill -9`
//! in the middle of a node, restarted at once; the time from the kill until the node runs
//! again (the heartbeat timeout, 2 s here, plus Temporal's retry), and until the run is done.
//!
//! `cargo bench --bench temporal` (`REINS_BENCH_ITERS`, default 5). Needs the Temporal CLI from
//! `.ci/install-temporal` or `$REINS_TEST_TEMPORAL`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::run_repo::{wait_for, Repo};
use support::temporal::DevServer;

fn chain(n: usize) -> String {
    let mut s = String::from("nodes:\n  - id: n0\n    bash: 'true'\n");
    for i in 1..n {
        s.push_str(&format!(
            "  - id: n{i}\n    depends_on: [n{}]\n    bash: 'true'\n",
            i - 1
        ));
    }
    s
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let iterations: usize = std::env::var("REINS_BENCH_ITERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(5);
    let Some(server) = DevServer::start() else {
        return;
    };
    let worker_repo = Repo::new();
    let worker = worker_repo
        .reins([
            "worker",
            "--temporal",
            &server.address,
            "--task-queue",
            "bench",
        ])
        .timeout(Duration::from_secs(3600))
        .spawn();
    wait_for("the worker", Duration::from_secs(30), || {
        worker.stdout_so_far().contains("polling")
    });
    let repo = Repo::new()
        .workflow("one", &chain(1))
        .workflow("many", &chain(21));
    let time = |args: &[&str]| {
        let start = Instant::now();
        repo.reins(args).run().code(0);
        start.elapsed()
    };
    let remote = |wf: &str| {
        time(&[
            "run",
            wf,
            "--temporal",
            &server.address,
            "--task-queue",
            "bench",
            "--follow",
        ])
    };
    // Warm up both paths (first connection, first workflow task).
    time(&["run", "one"]);
    remote("one");
    let (mut l1, mut l21, mut t1, mut t21) = (vec![], vec![], vec![], vec![]);
    for _ in 0..iterations {
        l1.push(time(&["run", "one"]));
        t1.push(remote("one"));
        l21.push(time(&["run", "many"]));
        t21.push(remote("many"));
    }
    let (l1, l21, t1, t21) = (median(l1), median(l21), median(t1), median(t21));
    let per_node = |a: Duration, b: Duration| (b.saturating_sub(a)).as_secs_f64() * 1000.0 / 20.0;
    let (lp, tp) = (per_node(l1, l21), per_node(t1, t21));
    println!(
        "temporal: run of 1 node   local {:>8.1} ms   temporal {:>8.1} ms   ratio {:.2}",
        ms(l1),
        ms(t1),
        ratio(t1, l1)
    );
    println!(
        "temporal: run of 21 nodes local {:>8.1} ms   temporal {:>8.1} ms   ratio {:.2}",
        ms(l21),
        ms(t21),
        ratio(t21, l21)
    );
    println!(
        "temporal: per node        local {lp:>8.2} ms   temporal {tp:>8.2} ms   overhead per node through Temporal {:+.2} ms",
        tp - lp
    );
    println!(
        "temporal: per run (submit, place, follow) overhead {:+.1} ms",
        ms(t1) - ms(l1)
    );
    worker.signal(nix::sys::signal::Signal::SIGTERM);
    let _ = worker.wait();
    recovery(&server);
}

/// A worker killed mid-node and restarted: how long until the node runs again, and until the
/// run is done.
fn recovery(server: &DevServer) {
    const SLOW: &str = "nodes:
  - id: slow
    bash: echo start >> effects; sleep 1; echo end >> effects
";
    let worker_repo = Repo::new();
    let start_worker = || {
        let w = worker_repo
            .reins([
                "worker",
                "--temporal",
                &server.address,
                "--task-queue",
                "recovery",
            ])
            .timeout(Duration::from_secs(600))
            .spawn();
        wait_for("the worker", Duration::from_secs(30), || {
            w.stdout_so_far().contains("polling")
        });
        w
    };
    let repo = Repo::new().workflow("slow", SLOW);
    let starts = || {
        std::fs::read_to_string(worker_repo.join("effects"))
            .unwrap_or_default()
            .lines()
            .filter(|l| *l == "start")
            .count()
    };
    let mut rerun = Vec::new();
    let mut done = Vec::new();
    for _ in 0..3 {
        let worker = start_worker();
        let before = starts();
        let follow = repo
            .reins([
                "run",
                "slow",
                "--temporal",
                &server.address,
                "--task-queue",
                "recovery",
                "--follow",
            ])
            .env("REINS_TEMPORAL_HEARTBEAT_TIMEOUT", "2s")
            .timeout(Duration::from_secs(120))
            .spawn();
        wait_for("the node to start", Duration::from_secs(60), || {
            starts() > before
        });
        worker.signal(nix::sys::signal::Signal::SIGKILL);
        let _ = worker.wait();
        let killed = Instant::now();
        let worker = start_worker();
        wait_for("the node to run again", Duration::from_secs(60), || {
            starts() > before + 1
        });
        rerun.push(killed.elapsed());
        follow.wait().code(0);
        done.push(killed.elapsed());
        worker.signal(nix::sys::signal::Signal::SIGTERM);
        let _ = worker.wait();
    }
    println!(
        "temporal: recovery after kill -9 mid-node (heartbeat timeout 2 s): node runs again after {:.2} s, run done after {:.2} s (medians of 3)",
        median(rerun).as_secs_f64(),
        median(done).as_secs_f64()
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-9)
}
