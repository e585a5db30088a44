//! Fan-out (`for_each`): every source of items, results, `min_success`, `max_parallel`, keys,
//! gates and loops as instances, a fan-out of 200, and resume after kill -9.

mod support;

use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::Value;
use support::run_repo::Repo;

/// The ids of the run's nodes, in the order `status` lists them.
fn ids(repo: &Repo, run: &str) -> Vec<String> {
    repo.status(run)["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap().to_string())
        .collect()
}

fn output(repo: &Repo, run: &str, node: &str) -> String {
    repo.node(run, node)["output"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn status(repo: &Repo, run: &str, node: &str) -> String {
    repo.node(run, node)["status"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn each_source_of_items_fans_out() {
    let repo = Repo::new()
        .file("crates/a/Cargo.toml", "")
        .file("crates/b/Cargo.toml", "")
        .file("crates/junk/Cargo.toml", "")
        .file(".gitignore", "crates/junk/\n")
        .workflow(
            "sources",
            r#"inputs:
  json: { default: '["x", {"name": "y"}]' }
  lines: { default: "one\n\ntwo\n" }
nodes:
  - id: list
    for_each: [api, web]
    bash: echo "list {{item}} {{item_index}}"
  - id: json
    for_each: "{{inputs.json}}"
    bash: echo "json $REINS_ITEM $REINS_ITEM_INDEX $REINS_ITEM_KEY"
  - id: lines
    for_each: "{{inputs.lines}}"
    key: "{{item}}"
    bash: echo "line {{item}}"
  - id: plan
    bash: |
      echo '{"packages": [{"name": "core"}, {"name": "cli"}]}'
  - id: from-node
    depends_on: [plan]
    for_each: "{{nodes.plan.json.packages}}"
    key: "{{item.name}}"
    bash: echo "package {{item.name}}"
  - id: files
    for_each: { files: ["crates/*/Cargo.toml"] }
    bash: echo "file {{item}}"
  - id: all-files
    for_each: { files: ["crates/*/Cargo.toml"], gitignored: true }
    bash: echo "{{item}}"
  - id: report
    depends_on: [list, json, lines, from-node, files, all-files]
    bash: |
      echo {{nodes.list.outputs}}
      echo {{nodes.from-node.outputs}}
      echo {{nodes.files.json.[1]}}
"#,
        );
    let out = repo.reins(["run", "sources"]).run();
    out.code(0);
    let run = repo.the_run();
    assert_eq!(output(&repo, &run, "list[0]"), "list api 0");
    assert_eq!(output(&repo, &run, "list[1]"), "list web 1");
    assert_eq!(output(&repo, &run, "json[0]"), "json x 0 0");
    assert_eq!(output(&repo, &run, "json[1]"), r#"json {"name":"y"} 1 1"#);
    assert_eq!(output(&repo, &run, "lines[one]"), "line one");
    assert_eq!(output(&repo, &run, "lines[two]"), "line two");
    assert_eq!(output(&repo, &run, "from-node[cli]"), "package cli");
    assert_eq!(
        output(&repo, &run, "files"),
        r#"["file crates/a/Cargo.toml","file crates/b/Cargo.toml"]"#,
        "the gitignored file is left out"
    );
    assert_eq!(
        output(&repo, &run, "all-files"),
        r#"["crates/a/Cargo.toml","crates/b/Cargo.toml","crates/junk/Cargo.toml"]"#,
        "unless asked"
    );
    assert_eq!(
        output(&repo, &run, "report"),
        "[\"list api 0\",\"list web 1\"]\n[\"package core\",\"package cli\"]\nfile crates/b/Cargo.toml"
    );
    // Instances stand right after their fan-out.
    let all = ids(&repo, &run);
    let at = all.iter().position(|i| i == "list").unwrap();
    assert_eq!(all[at + 1..at + 3], ["list[0]", "list[1]"]);
    // Their logs are reachable by id.
    let logs = repo.reins(["logs", &run, "lines[two]"]).run();
    logs.code(0);
    assert!(logs.stdout.contains("line two"), "{}", logs.stdout);
    // The expansion is in the log, once per fan-out.
    let expansions: Vec<Value> = repo
        .events(&run)
        .into_iter()
        .filter(|e| e["type"] == "fan_out_expanded")
        .collect();
    assert_eq!(expansions.len(), 6);
}

#[test]
fn failing_instances_fail_the_fan_out_unless_min_success_allows() {
    let repo = Repo::new().workflow(
        "probe",
        r#"nodes:
  - id: strict
    for_each: [0, 1, 0]
    bash: exit {{item}}
  - id: lenient
    for_each: [0, 1, 0]
    min_success: 2
    bash: echo ok-{{item_index}}; exit {{item}}
  - id: after-strict
    depends_on: [strict]
    bash: echo never
  - id: after-lenient
    depends_on: [lenient]
    bash: echo {{nodes.lenient.status}} {{nodes.lenient.outputs}}
"#,
    );
    let out = repo.reins(["run", "probe"]).run();
    out.code(1);
    let run = repo.the_run();
    assert_eq!(status(&repo, &run, "strict"), "failed");
    assert_eq!(
        repo.node(&run, "strict")["error"],
        "2 of 3 instances succeeded (1 failed); a fan-out needs all of them (or set `min_success`)"
    );
    assert_eq!(status(&repo, &run, "strict[1]"), "failed");
    assert_eq!(status(&repo, &run, "after-strict"), "skipped");
    assert_eq!(status(&repo, &run, "lenient"), "success");
    assert_eq!(
        output(&repo, &run, "after-lenient"),
        r#"success ["ok-0","ok-1","ok-2"]"#
    );
    assert!(
        out.stdout.contains("strict[1]") && out.stdout.contains("exited with code 1"),
        "{}",
        out.stdout
    );
}

#[test]
fn a_fan_out_after_a_fan_out_whose_last_instance_failed_still_expands() {
    // The instance that fails settles last: the fan-out after it is expanded then (it was
    // once left unexpanded, and the run never ended).
    let repo = Repo::new().workflow(
        "chain",
        r#"nodes:
  - id: first
    for_each: [ok, late]
    continue_on_error: true
    bash: |
      if [ "{{item}}" = late ]; then sleep 0.3; exit 1; fi
  - id: second
    depends_on: [first]
    trigger: all_done
    for_each: [x, y]
    bash: echo second-{{item}}
"#,
    );
    repo.reins(["run", "chain"]).run().code(0);
    let run = repo.the_run();
    assert_eq!(status(&repo, &run, "first"), "failed");
    assert_eq!(output(&repo, &run, "second"), r#"["second-x","second-y"]"#);
}

#[test]
fn other_nodes_run_on_while_a_fan_out_lists_its_files() {
    // The walk for `files` reads `d/.gitignore`, a FIFO: it blocks until `unblock` writes to
    // it, and `unblock` starts only after `first` settles. Were the items listed on the
    // scheduler's driver, nothing would settle or start meanwhile: the run would never end.
    let repo = Repo::new().file("a.txt", "").workflow(
        "walk",
        r#"nodes:
  - id: each
    for_each: { files: ["*.txt"] }
    bash: echo "{{item}}"
  - id: first
    bash: "true"
  - id: unblock
    depends_on: [first]
    bash: echo '*.log' > d/.gitignore
"#,
    );
    std::fs::create_dir_all(repo.join("d")).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(repo.join("d/.gitignore"))
        .status()
        .unwrap();
    assert!(made.success());
    repo.reins(["run", "walk"])
        .timeout(Duration::from_secs(60))
        .run()
        .code(0);
    let run = repo.the_run();
    assert_eq!(output(&repo, &run, "each"), r#"["a.txt"]"#);
    // `unblock` started before the items were recorded.
    let events = repo.events(&run);
    let at = |pred: &dyn Fn(&Value) -> bool| events.iter().position(pred).unwrap();
    let started = at(&|e| e["type"] == "node_started" && e["node"] == "unblock");
    let expanded = at(&|e| e["type"] == "fan_out_expanded");
    assert!(started < expanded, "{events:#?}");
}

#[test]
fn ctrl_c_ends_a_run_whose_items_can_never_be_listed() {
    // A FIFO with no writer where the walk reads a `.gitignore` (a node, an agent above all,
    // can make one): the listing never ends, yet Ctrl-C ends the run, and nothing is lost.
    let repo = Repo::new().file("a.txt", "").workflow(
        "stuck",
        r#"nodes:
  - id: each
    for_each: { files: ["*.txt"] }
    bash: echo "{{item}}"
  - id: other
    bash: echo done
"#,
    );
    std::fs::create_dir_all(repo.join("d")).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(repo.join("d/.gitignore"))
        .status()
        .unwrap();
    assert!(made.success());
    let running = repo
        .reins(["run", "stuck"])
        .timeout(Duration::from_secs(30))
        .spawn();
    repo.wait_for("`other` to settle", Duration::from_secs(20), || {
        repo.run_ids().first().is_some_and(|run| {
            repo.events(run)
                .iter()
                .any(|e| e["type"] == "node_succeeded" && e["node"] == "other")
        })
    });
    running.signal(Signal::SIGINT);
    running.wait().code(130);
    let run = repo.the_run();
    assert_eq!(status(&repo, &run, "each"), "cancelled");
    assert_eq!(status(&repo, &run, "other"), "success");
    assert_eq!(repo.status(&run)["status"], "cancelled");
}

#[test]
fn an_empty_list_succeeds_with_no_outputs_and_bad_keys_fail_before_any_instance() {
    let repo = Repo::new().workflow(
        "edge",
        r#"inputs:
  none: { default: "" }
  paths: { default: "a/b\nc" }
  twice: { default: "x\nx" }
nodes:
  - id: empty
    for_each: "{{inputs.none}}"
    bash: echo {{item}}
  - id: after
    depends_on: [empty]
    bash: echo "got {{nodes.empty.outputs}}"
  - id: escape
    for_each: "{{inputs.paths}}"
    key: "{{item}}"
    bash: touch ran-{{item_index}}
    continue_on_error: true
  - id: same
    for_each: "{{inputs.twice}}"
    key: "{{item}}"
    bash: touch ran-same
    continue_on_error: true
"#,
    );
    repo.reins(["run", "edge"]).run().code(0);
    let run = repo.the_run();
    assert_eq!(output(&repo, &run, "empty"), "[]");
    assert_eq!(output(&repo, &run, "after"), "got []");
    let err = repo.node(&run, "escape")["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        err.contains(r#"the key of item 0, "a/b", contains a slash"#),
        "{err}"
    );
    let err = repo.node(&run, "same")["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(err.contains("items 0 and 1 have the same key"), "{err}");
    assert!(!repo.exists("ran-0") && !repo.exists("ran-1") && !repo.exists("ran-same"));
    assert!(!repo.run_dir(&run).join("nodes/escape[a").exists());
}

#[test]
fn max_parallel_caps_the_running_instances() {
    // Each instance notes how many instances run beside it (their marker folders).
    let repo = Repo::new().workflow(
        "capped",
        r#"concurrency: 8
nodes:
  - id: work
    for_each: [1, 2, 3, 4, 5, 6]
    max_parallel: 2
    bash: |
      mkdir -p running && mkdir running/$REINS_ITEM_KEY
      ls running | wc -l >> seen.txt
      sleep 0.3
      rmdir running/$REINS_ITEM_KEY
"#,
    );
    repo.reins(["run", "capped"]).run().code(0);
    let seen: Vec<usize> = repo
        .lines("seen.txt")
        .iter()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert_eq!(seen.len(), 6);
    assert!(seen.iter().all(|&n| n <= 2), "{seen:?}");
}

#[test]
fn gates_and_loops_fan_out_too() {
    let repo = Repo::new().workflow(
        "kinds",
        r#"nodes:
  - id: count
    for_each: [2, 3]
    loop:
      bash: echo {{item}}-{{loop.iteration}}
      until: "{{eq loop.iteration item}}"
      max_iterations: 5
  - id: ship
    depends_on: [count]
    for_each: [api, web]
    key: "{{item}}"
    approval: "Ship {{item}}?"
  - id: after
    depends_on: [ship]
    bash: echo {{nodes.count.outputs}} {{nodes.ship.outputs}}
"#,
    );
    repo.reins(["run", "kinds"]).run().code(3);
    let run = repo.the_run();
    assert_eq!(output(&repo, &run, "count[0]"), "2-2");
    assert_eq!(output(&repo, &run, "count[1]"), "3-3");
    assert_eq!(status(&repo, &run, "ship[api]"), "waiting");
    assert_eq!(status(&repo, &run, "ship[web]"), "waiting");
    repo.reins(["approve", &run, "ship[api]", "-m", "yes"])
        .run()
        .code(0);
    repo.reins(["approve", &run, "ship[web]", "-m", "sure", "--resume"])
        .run()
        .code(0);
    assert_eq!(
        output(&repo, &run, "after"),
        r#"["2-2","3-3"] ["yes","sure"]"#
    );
}

#[test]
fn a_fan_out_of_200_gathers_every_result_in_order() {
    let items: Vec<String> = (0..200).map(|i| format!("\"n{i}\"")).collect();
    let repo = Repo::new().workflow(
        "wide",
        &format!(
            "nodes:
  - id: each
    for_each: [{}]
    key: \"{{{{item}}}}\"
    bash: echo {{{{item}}}}-{{{{item_index}}}}
  - id: sum
    depends_on: [each]
    bash: echo {{{{nodes.each.outputs}}}} > sum.json
",
            items.join(", ")
        ),
    );
    let dry = repo.reins(["run", "wide", "--dry-run"]).run();
    dry.code(0);
    assert!(
        dry.stdout.contains("for each: 200 instances\n")
            && dry.stdout.contains("each[n7] = n7\n")
            && dry.stdout.contains("and 192 more\n")
            && dry
                .stdout
                .contains("(as each[n0], the first instance, runs it)"),
        "{}",
        dry.stdout
    );
    let graph = repo.reins(["graph", "wide"]).run();
    assert!(
        graph.stdout.contains("each* (bash ×200)"),
        "{}",
        graph.stdout
    );
    let out = repo.reins(["run", "wide"]).run();
    out.code(0);
    // Many instances are counted, not listed.
    let (_, summary) = out.stdout.rsplit_once("of `wide`: success").unwrap();
    assert!(
        summary.contains("200 instances: 200 success\n") && !summary.contains("each[n5]"),
        "{summary}"
    );
    let sum: Vec<String> = serde_json::from_str(&repo.read("sum.json")).unwrap();
    let expected: Vec<String> = (0..200).map(|i| format!("n{i}-{i}")).collect();
    assert_eq!(sum, expected);
}

#[test]
fn kill_9_during_a_fan_out_then_resume_runs_each_item_once_more_at_most() {
    // Twenty items, four at a time; item 10 hangs until the run is resumed.
    let repo = Repo::new().workflow(
        "twenty",
        r#"concurrency: 4
nodes:
  - id: each
    for_each: { files: ["items/*"] }
    bash: |
      echo "$REINS_ITEM_KEY" >> effects.txt
      if [ "$REINS_ITEM_KEY" = 10 ] && [ ! -f resumed ]; then touch stuck; sleep 300 & wait; fi
      echo done-$REINS_ITEM_KEY
  - id: after
    depends_on: [each]
    bash: echo {{nodes.each.outputs}} > all.json
"#,
    );
    for i in 0..20 {
        repo.write(&format!("items/{i:02}"), "");
    }
    let running = repo.reins(["run", "twenty"]).spawn();
    repo.wait_for("item 10 to hang", Duration::from_secs(30), || {
        repo.exists("stuck")
    });
    running.signal(Signal::SIGKILL);
    running.wait();
    let run = repo.the_run();
    let before: Vec<String> = repo.lines("effects.txt");
    let finished: Vec<String> = (0..20)
        .map(|i| format!("each[{i}]"))
        .filter(|id| status(&repo, &run, id) == "success")
        .collect();
    assert!(
        finished.len() < 20,
        "the fan-out was cut short: {finished:?}"
    );
    // A file added meanwhile is not an item: the recorded list is used.
    repo.write("items/99", "");
    repo.write("resumed", "");
    repo.reins(["resume", &run]).run().code(0);
    let all: Vec<String> = serde_json::from_str(&repo.read("all.json")).unwrap();
    let expected: Vec<String> = (0..20).map(|i| format!("done-{i}")).collect();
    assert_eq!(all, expected);
    let effects = repo.lines("effects.txt");
    for i in 0..20 {
        let key = i.to_string();
        let n = effects.iter().filter(|e| **e == key).count();
        let id = format!("each[{i}]");
        if finished.contains(&id) {
            assert_eq!(n, 1, "finished item {i} ran again: {effects:?}");
        } else {
            assert!(n >= 1, "item {i} never ran: {effects:?}");
        }
    }
    assert!(effects.len() > before.len());
    assert_eq!(
        repo.events(&run)
            .iter()
            .filter(|e| e["type"] == "fan_out_expanded")
            .count(),
        1,
        "a resume never expands again"
    );
    // The fan-out ran again from the resume: it has a start, an end and a duration.
    let each = repo.node(&run, "each");
    assert!(
        each["started_at"].is_string() && each["finished_at"].is_string(),
        "{each:#}"
    );
    let shown = repo.reins(["status", &run]).run();
    let line = shown
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("each "))
        .unwrap_or_default()
        .to_string();
    assert!(
        line.split_whitespace()
            .nth(2)
            .is_some_and(|d| d.ends_with('s')),
        "a duration: {line:?}\n{}",
        shown.stdout
    );
}

#[test]
fn resume_from_a_fan_out_expands_it_again_from_its_source() {
    let repo = Repo::new()
        .file("items/a", "")
        .file("items/b", "")
        .workflow(
            "files",
            r#"nodes:
  - id: each
    for_each: { files: ["items/*"] }
    bash: echo "{{item}}" | tee -a effects.txt
  - id: after
    depends_on: [each]
    bash: echo {{nodes.each.outputs}}
"#,
        );
    repo.reins(["run", "files"]).run().code(0);
    let run = repo.the_run();
    std::fs::remove_file(repo.join("items/a")).unwrap();
    repo.write("items/c", "");
    // A plain resume of a finished run does nothing; `--from` runs the fan-out again, over
    // the files there are now.
    repo.reins(["resume", &run, "--from", "each"]).run().code(0);
    // The instances of each execution run in parallel: each pair in any order.
    let mut effects = repo.lines("effects.txt");
    assert_eq!(effects.len(), 4, "{effects:?}");
    effects[..2].sort();
    effects[2..].sort();
    assert_eq!(effects, ["items/a", "items/b", "items/b", "items/c"]);
    let all = ids(&repo, &run);
    assert_eq!(all, ["each", "each[0]", "each[1]", "after"]);
    assert_eq!(output(&repo, &run, "after"), r#"["items/b","items/c"]"#);
    assert_eq!(
        repo.events(&run)
            .iter()
            .filter(|e| e["type"] == "fan_out_expanded")
            .count(),
        2
    );
}

/// An agent fan-out on the real Claude Code CLI (against the offline API stand-in): one
/// conversation per item, each with its own prompt, the replies gathered in item order.
#[test]
fn an_agent_fan_out_runs_one_claude_session_per_item() {
    use support::{claude_env, require_claude, MockApi, Turn};
    let Some(claude) = require_claude() else {
        return;
    };
    let api = MockApi::start();
    for pkg in ["api", "web", "cli"] {
        api.rule(
            &format!("MARK-REVIEW-{pkg}"),
            [Turn::text(format!("{pkg} looks fine"))],
        );
    }
    let repo = Repo::new();
    repo.write(
        ".workflows/review.yaml",
        &format!(
            "agents:\n  claude: {{program: '{}'}}\nnodes:
  - id: review
    for_each: [api, web, cli]
    key: \"{{{{item}}}}\"
    max_parallel: 2
    prompt: MARK-REVIEW-{{{{item}}}} review the package {{{{item}}}}
  - id: report
    depends_on: [review]
    bash: echo {{{{nodes.review.outputs}}}}
",
            claude.display()
        ),
    );
    let home = repo.join(".claude-home");
    std::fs::create_dir_all(&home).unwrap();
    let mut cmd = repo
        .reins(["run", "review"])
        .timeout(Duration::from_secs(150));
    for (key, value) in claude_env(&api, &home) {
        cmd = cmd.env(&key, &value);
    }
    cmd.run().code(0);
    let run = repo.the_run();
    assert_eq!(output(&repo, &run, "review[web]"), "web looks fine");
    assert_eq!(
        output(&repo, &run, "report"),
        r#"["api looks fine","web looks fine","cli looks fine"]"#
    );
    // Three conversations, not one continued.
    let sessions: std::collections::BTreeSet<String> = repo
        .events(&run)
        .iter()
        .filter(|e| e["type"] == "agent_session")
        .map(|e| e["session_id"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(sessions.len(), 3, "{sessions:?}");
}
