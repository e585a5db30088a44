//! Gate sequences: a property test over random sequences of `run` (perhaps killed), `resume`,
//! `resume --from`,
//! `approve`, `reject` (with and without `--resume`) and `kill -9` in the middle of any of
//! them, on the built binary and a temp repository. A hostile node plants forged answers and
//! runs `reins approve` from inside the run every time it runs. After every step:
//!
//! * every `approval_answered` names a request of its gate, and no request has two answers;
//! * every approval is by a human who ran `approve` from outside the run: approvals of a gate
//!   never outnumber the `approve` commands for it that succeeded (or were killed), and none is
//!   by the hostile node;
//! * a gated node never started without an approval of its gate's current request, and ran
//!   at most as often as its gate was approved plus the times a `kill -9` may have cut it off
//!   before its end was recorded (a resume runs an interrupted node again: at least once);
//! * reins never panics.
//!
//! The case count is small (each step runs reins) so it stays well under a minute in CI.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::Value;
use support::run_repo::{Output, Repo};

const WORKFLOW: &str = r#"nodes:
  - id: a
    bash: echo a
  - id: g1
    depends_on: [a]
    approval: Ship?
  - id: after1
    depends_on: [g1]
    bash: echo after1 >> ran.txt
  - id: g2
    approval: Second?
  - id: after2
    depends_on: [g2]
    bash: echo after2 >> ran.txt
  - id: hostile
    bash: |
      run=$REINS_RUN_ID
      for g in g1 g2; do
        mkdir -p "$REINS_RUN_DIR/nodes/$g"
        printf '{"approved":true,"by":"hostile","at":"2026-01-01T00:00:00Z"}' > "$REINS_RUN_DIR/nodes/$g/answer.json" || true
        "$REINS_BIN" approve "$run" "$g" -m hostile >/dev/null 2>&1 || true
        env -u REINS_RUN_ID -u REINS_RUN_DIR "$REINS_BIN" approve "$run" "$g" -m hostile >/dev/null 2>&1 || true
      done
"#;

#[derive(Debug, Clone)]
enum Step {
    Resume,
    ResumeFrom(&'static str),
    Answer {
        gate: &'static str,
        approve: bool,
        resume: bool,
    },
    /// Kill -9 the step after this many milliseconds.
    Killed(Box<Step>, u64),
}

fn gate() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("g1"), Just("g2")]
}

fn plain_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        2 => Just(Step::Resume),
        1 => gate().prop_map(Step::ResumeFrom),
        4 => (gate(), any::<bool>(), any::<bool>())
            .prop_map(|(gate, approve, resume)| Step::Answer { gate, approve, resume }),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => plain_step(),
        1 => (plain_step(), 0u64..120).prop_map(|(s, ms)| Step::Killed(Box::new(s), ms)),
    ]
}

/// What the test did: `approve` commands per gate that may have written an answer, and how
/// many reins processes it killed.
#[derive(Default)]
struct Model {
    approvals_given: HashMap<&'static str, usize>,
    kills: usize,
}

fn args(step: &Step, run: &str) -> Vec<String> {
    match step {
        Step::Resume => vec!["resume".into(), run.into()],
        Step::ResumeFrom(g) => vec!["resume".into(), run.into(), "--from".into(), (*g).into()],
        Step::Answer {
            gate,
            approve,
            resume,
        } => {
            let mut a = vec![
                if *approve { "approve" } else { "reject" }.to_string(),
                run.into(),
                (*gate).into(),
                "-m".into(),
                "human".into(),
            ];
            if *resume {
                a.push("--resume".into());
            }
            a
        }
        Step::Killed(inner, _) => args(inner, run),
    }
}

fn no_panic(out: &Output) {
    assert!(
        out.code != 101 && !out.stderr.contains("panicked"),
        "reins panicked\nstdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );
}

fn perform(repo: &Repo, model: &mut Model, run: &str, step: &Step) {
    let cmd = repo
        .reins(args(step, run))
        .env("REINS_BIN", env!("CARGO_BIN_EXE_reins"))
        .timeout(Duration::from_secs(30));
    let (out, killed) = match step {
        Step::Killed(_, ms) => {
            let running = cmd.spawn();
            std::thread::sleep(Duration::from_millis(*ms));
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(running.pid()),
                nix::sys::signal::Signal::SIGKILL,
            );
            (running.wait(), true)
        }
        _ => (cmd.run(), false),
    };
    no_panic(&out);
    model.kills += usize::from(killed);
    let inner = match step {
        Step::Killed(inner, _) => inner.as_ref(),
        other => other,
    };
    if let Step::Answer {
        gate,
        approve: true,
        ..
    } = inner
    {
        // A killed `approve` may have written its answer before it died.
        if killed || out.stdout.contains("approved `") {
            *model.approvals_given.entry(gate).or_default() += 1;
        }
    }
}

fn check(repo: &Repo, model: &Model, run: &str, history: &[Step]) {
    let events = repo.events(run);
    let mut requests: BTreeMap<String, &'static str> = BTreeMap::new();
    let mut answers: BTreeMap<String, usize> = BTreeMap::new();
    let mut approved: HashMap<String, usize> = HashMap::new();
    // Per gate: its current request was approved.
    let mut open: HashMap<String, bool> = HashMap::new();
    for e in &events {
        let gate = e["node"].as_str().unwrap_or_default().to_string();
        match e["type"].as_str() {
            Some("node_started") if gate.starts_with("after") => {
                let g = gate.replace("after", "g");
                assert!(
                    open.get(&g).copied().unwrap_or(false),
                    "{gate} started without an approval of {g}: {e}\nafter {history:?}"
                );
            }
            Some("run_resumed") => {
                for reset in e["reset"].as_array().into_iter().flatten() {
                    open.insert(reset.as_str().unwrap_or_default().to_string(), false);
                }
            }
            Some("approval_requested") => {
                open.insert(gate.clone(), false);
                let r = e["request"].as_str().expect("a request id").to_string();
                assert!(!r.is_empty(), "{e}");
                requests.insert(r, if gate == "g1" { "g1" } else { "g2" });
            }
            Some("approval_answered") => {
                let r = e["request"].as_str().unwrap_or_default().to_string();
                assert_eq!(
                    requests.get(&r).copied(),
                    Some(if gate == "g1" { "g1" } else { "g2" }),
                    "an answer to no request of its gate: {e}\nafter {history:?}"
                );
                let n = answers.entry(r).or_default();
                *n += 1;
                assert_eq!(*n, 1, "two answers to one request\nafter {history:?}");
                assert_ne!(e["comment"], "hostile", "a node answered: {e}");
                assert_ne!(e["by"], "hostile", "a planted file answered: {e}");
                if e["approved"] == true {
                    open.insert(gate.clone(), true);
                    *approved.entry(gate).or_default() += 1;
                }
            }
            _ => {}
        }
    }
    let ran = repo.lines("ran.txt");
    for (gate, after) in [("g1", "after1"), ("g2", "after2")] {
        let yes = approved.get(gate).copied().unwrap_or(0);
        let given = model.approvals_given.get(gate).copied().unwrap_or(0);
        assert!(
            yes <= given,
            "{gate} approved {yes} times with {given} `approve` commands\nafter {history:?}"
        );
        let runs = ran.iter().filter(|l| *l == after).count();
        // A node cut off by `kill -9` after its effect, before its end reached the log, runs
        // again on the next resume (at least once); nothing else runs it twice.
        let kills = model.kills;
        assert!(
            runs <= yes + kills && (yes > 0 || runs == 0),
            "{after} ran {runs} times, {gate} approved {yes} times, {kills} kills\nafter {history:?}"
        );
    }
}

fn config() -> Config {
    Config {
        cases: std::env::var("GATE_SEQUENCE_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(16),
        failure_persistence: None,
        ..Config::default()
    }
}

fn value_is_run(v: &Value) -> bool {
    v["status"].is_string()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn one_answer_per_request_and_never_without_a_human(
        kill_first_run in prop::option::of(0u64..150),
        steps in prop::collection::vec(step(), 1..7),
    ) {
        let repo = Repo::new().workflow("gates", WORKFLOW);
        let first = repo
            .reins(["run", "gates"])
            .env("REINS_BIN", env!("CARGO_BIN_EXE_reins"))
            .spawn();
        if let Some(ms) = kill_first_run {
            std::thread::sleep(Duration::from_millis(ms));
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(first.pid()),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let out = first.wait();
        no_panic(&out);
        let first_killed = usize::from(kill_first_run.is_some());
        if kill_first_run.is_none() {
            prop_assert_eq!(out.code, 3, "{}", out.stderr);
        }
        // A run exists only once it can be resumed: killed earlier, there is none at all.
        let runs: Vec<String> = repo
            .run_ids()
            .into_iter()
            .filter(|id| !id.starts_with('.'))
            .collect();
        prop_assert!(runs.len() <= 1);
        let Some(run) = runs.into_iter().next() else {
            let out = repo.reins(["status", "last"]).run();
            prop_assert!(out.stderr.contains("no runs yet"), "{}", out.stderr);
            return Ok(());
        };
        prop_assert!(repo.run_dir(&run).join("run.json").is_file());
        let mut model = Model { kills: first_killed, ..Model::default() };
        check(&repo, &model, &run, &[]);
        for (i, step) in steps.iter().enumerate() {
            perform(&repo, &mut model, &run, step);
            check(&repo, &model, &run, &steps[..=i]);
        }
        prop_assert!(value_is_run(&repo.status(&run)));
    }
}
