//! How fast reins starts and validates: `cargo bench --bench validate`.
//!
//! Generates a workflow of 1,000 nodes (a layered DAG with `depends_on` and templates reading
//! inputs, artifacts and upstream outputs) in a temp folder, then times, as whole processes:
//!
//! * `true` (from `PATH`): the cost of spawning any process on this machine, the baseline;
//! * `reins --version`: start-up;
//! * `reins validate FILE`: start-up, parse, decode and every check.
//!
//! Each is run `REINS_BENCH_RUNS` times (default 50) after a warm-up; the median and minimum
//! wall times are printed with their ratio to the baseline, next to Archon 0.9's figures on the
//! same 2-core machine (design brief §5). Figures, not a pass/fail test.
//!
//! Then, in process, hostile files that must be refused in bounded time (issue 9): 1,000
//! templates of 20 tags each in one string, 5,000 dependency typos, 20,000 unknown names on
//! one line (capped to ten shown), a 50,000-node workflow; each printed with its ratio to
//! validating the 1,000-node workflow.
//!
//! `REINS_BENCH_DUMP=FILE` writes the generated workflow to FILE and stops, for profiling.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Archon 0.9 on the reference machine: start-up and `validate`, both 0.36 s.
const ARCHON_SECS: f64 = 0.36;

fn main() {
    let runs: usize = std::env::var("REINS_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(50);
    let reins = env!("CARGO_BIN_EXE_reins");
    // For profiling: `REINS_BENCH_DUMP=big.yaml cargo bench --bench validate` writes the
    // workflow and stops, e.g. for `perf record target/release/reins validate big.yaml`.
    if let Some(dump) = std::env::var_os("REINS_BENCH_DUMP") {
        std::fs::write(&dump, workflow(1_000)).expect("write REINS_BENCH_DUMP");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("big.yaml");
    let text = workflow(1_000);
    std::fs::write(&file, &text).expect("write the workflow");
    let file = file.to_str().expect("utf-8 temp path");

    // The generated workflow must be valid, or the timing below means nothing.
    let check = Command::new(reins)
        .args(["validate", file])
        .stdin(Stdio::null())
        .output()
        .expect("run reins validate");
    if !check.status.success() {
        eprintln!(
            "the generated workflow does not validate:\n{}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
        std::process::exit(1);
    }

    println!(
        "reins benchmark: {} runs each, workflow of 1000 nodes ({} KiB)",
        runs,
        text.len() / 1024
    );
    let baseline = time(runs, "true", &[]);
    report("spawn `true` (baseline)", baseline, baseline, None);
    let version = time(runs, reins, &["--version"]);
    report("reins --version", version, baseline, Some(ARCHON_SECS));
    let validate = time(runs, reins, &["validate", file]);
    report(
        "reins validate (1000 nodes)",
        validate,
        baseline,
        Some(ARCHON_SECS),
    );

    // In process, without the process start: loading alone, then loading and every check.
    let path = Path::new(file);
    let in_process = sample(runs, || {
        let loaded = reins::workflow::load_file(path);
        assert!(loaded.workflow.is_some());
    });
    report("  in process: load_file", in_process, baseline, None);
    let checked = sample(runs, || {
        let (_, diags) = reins::workflow::validate::check_file(path);
        assert!(!diags.iter().any(|d| d.is_error()));
    });
    report("  in process: check_file", checked, baseline, None);

    // Hostile files: bounded by construction; the figures show how bounded.
    let hostile = [
        ("20,000 tags in one string", tags_in_one_string()),
        ("5,000 dependency typos", typos(5_000)),
        (
            "20,000 unknown names, one line",
            unknown_names_on_one_line(20_000),
        ),
        ("50,000 nodes", plain_nodes(50_000)),
    ];
    let few = (runs / 10).max(3);
    for (what, text) in hostile {
        let file = dir.path().join("hostile.yaml");
        std::fs::write(&file, &text).expect("write the hostile workflow");
        let stats = sample(few, || {
            let _ = reins::workflow::validate::check_file(&file);
        });
        println!(
            "  hostile: {what:<30} median {:>8.2} ms  {:>6.1}x the 1000-node check",
            ms(stats.median),
            stats.median.as_secs_f64() / checked.median.as_secs_f64()
        );
    }
}

/// One bash string of 20,000 tags (refused: at most 1,000 tags per template).
fn tags_in_one_string() -> String {
    let tags = vec!["{{inputs.x}}"; 20_000].join(" ");
    format!("inputs:\n  x: {{default: a}}\nnodes:\n  - id: a\n    bash: echo {tags}\n")
}

fn typos(n: usize) -> String {
    let mut y = String::from("nodes:\n");
    for i in 0..n {
        y.push_str(&format!("  - {{id: n{i}, bash: x, depends_on: [m{i}]}}\n"));
    }
    y
}

fn unknown_names_on_one_line(n: usize) -> String {
    let names: Vec<String> = (0..n).map(|i| format!("{{{{inputs.nope{i}}}}}")).collect();
    let nodes: Vec<String> = names
        .chunks(1000)
        .enumerate()
        .map(|(k, c)| format!("{{id: n{k}, bash: \"echo {}\"}}", c.join(" ")))
        .collect();
    format!("nodes: [{}]\n", nodes.join(", "))
}

fn plain_nodes(n: usize) -> String {
    let mut y = String::from("nodes:\n");
    for i in 0..n {
        y.push_str(&format!("  - {{id: n{i}, bash: echo {i}}}\n"));
    }
    y
}

/// Median and minimum of a set of timings.
#[derive(Clone, Copy)]
struct Stats {
    median: Duration,
    min: Duration,
}

/// Runs `program args` (output discarded) `runs` times after 3 warm-up runs.
fn time(runs: usize, program: &str, args: &[&str]) -> Stats {
    sample(runs, || {
        let status = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        assert!(status.success(), "{program} {args:?} failed: {status}");
    })
}

fn sample(runs: usize, mut f: impl FnMut()) -> Stats {
    for _ in 0..3 {
        f();
    }
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    Stats {
        median: times[times.len() / 2],
        min: times[0],
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn report(what: &str, s: Stats, baseline: Stats, archon: Option<f64>) {
    let mut line = format!(
        "{what:<36} median {:>7.2} ms  min {:>7.2} ms  {:>5.1}x baseline",
        ms(s.median),
        ms(s.min),
        s.median.as_secs_f64() / baseline.median.as_secs_f64()
    );
    if let Some(archon) = archon {
        line.push_str(&format!(
            "  (Archon {:.0} ms: {:.0}x faster)",
            archon * 1000.0,
            archon / s.median.as_secs_f64()
        ));
    }
    println!("{line}");
}

/// A valid workflow of `n` nodes: layers of 20, each node depending on one to three nodes of
/// the layer above and reading their output, inputs and the artifacts folder in templates.
fn workflow(n: usize) -> String {
    const WIDTH: usize = 20;
    let mut y = String::from(
        "name: big\ndescription: A generated workflow of many nodes\ninputs:\n  target: { default: release }\n  verbose: { default: \"false\" }\nenv: { LC_ALL: C }\ndefaults: { timeout: 10m, retries: 1 }\nconcurrency: 8\nnodes:\n",
    );
    for i in 0..n {
        let layer = i / WIDTH;
        let col = i % WIDTH;
        y.push_str(&format!("  - id: n{i}\n"));
        if layer == 0 {
            y.push_str(&format!(
                "    bash: echo build {{{{inputs.target}}}} part {col} > {{{{artifacts}}}}/n{i}.txt\n"
            ));
            continue;
        }
        let above = (layer - 1) * WIDTH;
        let deps: Vec<usize> = (0..1 + i % 3)
            .map(|k| above + (col + k * 7) % WIDTH)
            .collect();
        let list: Vec<String> = deps.iter().map(|d| format!("n{d}")).collect();
        y.push_str(&format!("    depends_on: [{}]\n", list.join(", ")));
        match i % 5 {
            0 => y.push_str(&format!(
                "    when: \"{{{{eq inputs.verbose 'false'}}}}\"\n    bash: echo {{{{nodes.n{}.output}}}} | wc -c\n",
                deps[0]
            )),
            1 => y.push_str(&format!(
                "    trigger: all_done\n    bash: cat {{{{artifacts}}}}/n{}.txt 2>/dev/null || echo {{{{nodes.n{}.status}}}}\n",
                deps[0], deps[0]
            )),
            2 => y.push_str("    timeout: 30s\n    env: { STEP: \"{{inputs.target}}\" }\n    bash: echo \"$STEP\"\n"),
            3 => y.push_str(
                "    loop:\n      bash: echo try {{loop.iteration}}\n      until: \"{{contains output 'try'}}\"\n      max_iterations: 3\n",
            ),
            _ => y.push_str(&format!(
                "    bash: |\n      echo {{{{nodes.n{}.output}}}}\n      echo done > {{{{artifacts}}}}/n{i}.txt\n",
                deps[deps.len() - 1]
            )),
        }
    }
    y
}
