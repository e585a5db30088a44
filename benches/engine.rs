//! Engine benchmarks: `reins run` against spawning the same commands directly, in one run.
//!
//! `cargo bench --bench engine` (release binary). Each case runs a few times, interleaved with
//! its baseline, and reports medians:
//!
//! * a 100-node chain of `true`: engine overhead per node (target < 1 ms);
//! * 16 parallel `sleep 1` with default settings: makespan against 1 s (target: within 2%);
//! * 200 independent `true` (target: < 0.3 s), and the same as one fan-out of 200 instances
//!   (overhead per instance against per node);
//! * a DAG where layer-by-layer execution is slower than a ready queue: the gap.
//!
//! Not a test: it prints figures and never fails on them.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const REPEAT: usize = 5;

fn main() {
    let dir = tempfile::Builder::new()
        .prefix("reins-bench-")
        .tempdir()
        .expect("temp dir");
    let root = dir.path();
    std::fs::create_dir_all(root.join(".git")).unwrap();
    std::fs::create_dir_all(root.join(".workflows")).unwrap();
    println!(
        "reins engine benchmark ({} runs per case, medians; process path: {})\n",
        REPEAT,
        reins::process::PATH
    );

    // 1. A chain of 100 `true`.
    let mut chain = String::from("nodes:\n");
    for i in 0..100 {
        if i == 0 {
            chain.push_str("  - {id: n0, bash: \"true\"}\n");
        } else {
            chain.push_str(&format!(
                "  - {{id: n{i}, bash: \"true\", depends_on: [n{}]}}\n",
                i - 1
            ));
        }
    }
    write(root, "chain", &chain);
    let (reins, base) = compare(root, "chain", || {
        for _ in 0..100 {
            sh("true").wait().unwrap();
        }
    });
    let per_node = (reins.as_secs_f64() - base.as_secs_f64()) / 100.0 * 1000.0;
    println!(
        "100-node chain of `true`:     reins {:>7}  direct {:>7}  ratio {:.2}  engine overhead {:.2} ms/node (target < 1 ms)",
        ms(reins),
        ms(base),
        ratio(reins, base),
        per_node
    );

    // 2. 16 parallel `sleep 1`, with default settings (no `concurrency:`).
    let mut par = String::from("nodes:\n");
    for i in 0..16 {
        par.push_str(&format!("  - {{id: s{i}, bash: sleep 1}}\n"));
    }
    write(root, "parallel", &par);
    let (reins, base) = compare(root, "parallel", || {
        let children: Vec<Child> = (0..16).map(|_| sh("sleep 1")).collect();
        for mut c in children {
            c.wait().unwrap();
        }
    });
    println!(
        "16 × `sleep 1`, defaults:     reins {:>7}  direct {:>7}  ratio {:.3}  vs 1 s: {:+.1}% (target within 2%)",
        ms(reins),
        ms(base),
        ratio(reins, base),
        (reins.as_secs_f64() - 1.0) * 100.0
    );

    // 3. 200 independent `true`.
    let width = 8;
    let mut wide = format!("concurrency: {width}\nnodes:\n");
    for i in 0..200 {
        wide.push_str(&format!("  - {{id: t{i}, bash: \"true\"}}\n"));
    }
    write(root, "wide", &wide);
    let (reins, base) = compare(root, "wide", || {
        let mut running: Vec<Child> = Vec::new();
        for _ in 0..200 {
            if running.len() == width {
                running.remove(0).wait().unwrap();
            }
            running.push(sh("true"));
        }
        for mut c in running {
            c.wait().unwrap();
        }
    });
    println!(
        "200 independent `true` (x{width}): reins {:>7}  direct {:>7}  ratio {:.2}  (target < 300 ms)",
        ms(reins),
        ms(base),
        ratio(reins, base)
    );

    // 4. The same 200 `true` as one fan-out: the cost of an instance against a node's.
    let items: Vec<String> = (0..200).map(|i| i.to_string()).collect();
    write(
        root,
        "fan-out",
        &format!(
            "concurrency: {width}\nnodes:\n  - {{id: t, for_each: [{}], bash: \"true\"}}\n",
            items.join(", ")
        ),
    );
    let (fan_out, base) = compare(root, "fan-out", || {
        let mut running: Vec<Child> = Vec::new();
        for _ in 0..200 {
            if running.len() == width {
                running.remove(0).wait().unwrap();
            }
            running.push(sh("true"));
        }
        for mut c in running {
            c.wait().unwrap();
        }
    });
    println!(
        "fan-out of 200 `true` (x{width}):  reins {:>7}  direct {:>7}  ratio {:.2}  overhead {:.2} ms/instance vs {:.2} ms/node for 200 nodes",
        ms(fan_out),
        ms(base),
        ratio(fan_out, base),
        (fan_out.as_secs_f64() - base.as_secs_f64()) / 200.0 * 1000.0,
        (reins.as_secs_f64() - base.as_secs_f64()) / 200.0 * 1000.0,
    );

    // 5. Ready queue against layers: A(1s)->D(0.2s), B(0.2s)->C(1s).
    // Layers [A,B] then [C,D] take 1 + 1 = 2 s; the critical path is 1.2 s.
    write(
        root,
        "dag",
        r#"concurrency: 4
nodes:
  - {id: a, bash: sleep 1}
  - {id: b, bash: sleep 0.2}
  - {id: c, bash: sleep 1, depends_on: [b]}
  - {id: d, bash: sleep 0.2, depends_on: [a]}
"#,
    );
    let (reins, layered) = compare(root, "dag", || {
        let layer0 = [sh("sleep 1"), sh("sleep 0.2")];
        for mut c in layer0 {
            c.wait().unwrap();
        }
        let layer1 = [sh("sleep 1"), sh("sleep 0.2")];
        for mut c in layer1 {
            c.wait().unwrap();
        }
    });
    println!(
        "DAG, ready queue vs layers:   reins {:>7}  layered {:>7}  layered/reins {:.2}  reins vs critical path 1.2 s: {:+.1}%",
        ms(reins),
        ms(layered),
        ratio(layered, reins),
        (reins.as_secs_f64() / 1.2 - 1.0) * 100.0
    );
}

fn write(root: &Path, name: &str, yaml: &str) {
    std::fs::write(root.join(format!(".workflows/{name}.yaml")), yaml).unwrap();
}

fn sh(script: &str) -> Child {
    Command::new("bash")
        .args(["-c", script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

/// Medians of `reins run NAME` and of the baseline, interleaved.
fn compare(root: &Path, name: &str, baseline: impl Fn()) -> (Duration, Duration) {
    let mut reins = Vec::new();
    let mut base = Vec::new();
    for _ in 0..REPEAT {
        let start = Instant::now();
        let status = Command::new(env!("CARGO_BIN_EXE_reins"))
            .args(["run", name])
            .current_dir(root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        reins.push(start.elapsed());
        assert!(status.success(), "reins run {name} failed");
        let start = Instant::now();
        baseline();
        base.push(start.elapsed());
    }
    (median(reins), median(base))
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

fn ms(d: Duration) -> String {
    format!("{:.1}ms", d.as_secs_f64() * 1000.0)
}
