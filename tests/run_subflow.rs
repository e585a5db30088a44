//! `workflow:` nodes: a child run per node, linked to its parent; output, inputs, artifacts,
//! worktree isolation, gates answered both ways, cancel both ways, resume after `kill -9`.

mod support;

use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::Value;
use support::run_repo::{process_alive, wait_for, Repo};

/// Takes an input, leaves a file in its artifacts, and ends in one node (its output).
const CHILD: &str = r#"inputs:
  who: { required: true }
  greeting: { default: hello }
nodes:
  - id: greet
    bash: |
      echo "{{inputs.greeting}} {{inputs.who}}" > "{{artifacts}}/greeting.txt"
      echo child-greet >> ran.txt
      echo "{{inputs.who}}"
  - id: done
    depends_on: [greet]
    bash: echo "child saw {{nodes.greet.output}}"
"#;

const PARENT: &str = r#"nodes:
  - id: first
    bash: printf '%s' 'world; touch pwned'
  - id: sub
    depends_on: [first]
    workflow: child
    inputs: { who: "{{nodes.first.output}}" }
  - id: after
    depends_on: [sub]
    bash: |
      echo "got {{nodes.sub.output}}"
      cat "{{nodes.sub.artifacts}}/greeting.txt"
"#;

/// The run ids of the runs that have a parent, and those that do not.
fn split_runs(repo: &Repo) -> (Vec<String>, Vec<String>) {
    let mut parents = Vec::new();
    let mut children = Vec::new();
    for id in repo.run_ids().into_iter().filter(|id| !id.starts_with('.')) {
        let m = manifest(repo, &id);
        if m.is_null() {
            continue; // not written yet
        }
        if m.get("parent").is_some() {
            children.push(id);
        } else {
            parents.push(id);
        }
    }
    (parents, children)
}

fn manifest(repo: &Repo, id: &str) -> Value {
    let path = format!(".reins/runs/{id}/run.json");
    if !repo.exists(&path) {
        return Value::Null;
    }
    serde_json::from_str(&repo.read(&path)).unwrap_or(Value::Null)
}

/// The only parent run and its only child run.
fn tree(repo: &Repo) -> (String, String) {
    let (parents, children) = split_runs(repo);
    assert_eq!(parents.len(), 1, "{parents:?}");
    assert_eq!(children.len(), 1, "{children:?}");
    (parents[0].clone(), children[0].clone())
}

fn count(repo: &Repo, line: &str) -> usize {
    if !repo.exists("ran.txt") {
        return 0;
    }
    repo.lines("ran.txt").iter().filter(|l| *l == line).count()
}

#[test]
fn a_child_run_gets_its_inputs_as_data_and_hands_back_its_output_and_artifacts() {
    let repo = Repo::new()
        .workflow("child", CHILD)
        .workflow("parent", PARENT);
    let out = repo.reins(["run", "parent"]).run();
    out.code(0);
    let (parent, child) = tree(&repo);
    assert!(!repo.exists("pwned"), "an input never runs as code");

    // The child is a real run in the same store, linked both ways.
    let link = &manifest(&repo, &child)["parent"];
    assert_eq!(link["run_id"], parent.as_str());
    assert_eq!(link["node"], "sub");
    assert_eq!(
        manifest(&repo, &child)["inputs"]["who"],
        "world; touch pwned"
    );
    assert_eq!(manifest(&repo, &child)["inputs"]["greeting"], "hello");
    assert_eq!(repo.node(&parent, "sub")["child_run"], child.as_str());
    assert_eq!(
        repo.read(&format!(".reins/runs/{parent}/nodes/sub/child-run"))
            .trim(),
        child
    );
    assert!(repo
        .events(&parent)
        .iter()
        .any(|e| e["type"] == "child_run" && e["node"] == "sub" && e["run_id"] == child.as_str()));
    // The child's workflow is frozen in the parent's run.json.
    assert_eq!(
        manifest(&repo, &parent)["workflows"]["child"]["text"],
        CHILD
    );

    // Output: the child's single sink; artifacts: the child's folder.
    assert_eq!(
        repo.node(&parent, "sub")["output"],
        "child saw world; touch pwned"
    );
    assert_eq!(
        repo.node(&parent, "after")["output"],
        "got child saw world; touch pwned\nhello world; touch pwned"
    );
    assert_eq!(repo.status(&child)["status"], "success");

    // `reins runs` shows the child under its parent; `status` the child's nodes; `logs` reaches in.
    let runs = repo.reins(["runs"]).run();
    let lines: Vec<&str> = runs.stdout.lines().collect();
    let at = |id: &str| lines.iter().position(|l| l.contains(id)).expect("listed");
    assert_eq!(at(&child), at(&parent) + 1, "{}", runs.stdout);
    assert!(
        lines[at(&child)].starts_with(&format!("  {child}")),
        "{}",
        runs.stdout
    );
    let json: Value =
        serde_json::from_str(&repo.reins(["runs", "--format", "json"]).run().stdout).expect("json");
    let listed = json
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == child.as_str())
        .unwrap();
    assert_eq!(listed["parent"]["run_id"], parent.as_str());
    let status = repo.reins(["status", &parent]).run();
    assert!(
        status
            .stdout
            .contains(&format!("sub → child run {child} of `child`: success")),
        "{}",
        status.stdout
    );
    let logs = repo.reins(["logs", &parent, "sub/done"]).run();
    logs.code(0);
    assert!(logs.stdout.contains("child saw world"), "{}", logs.stdout);
    repo.reins(["logs", &parent, "sub/nope"]).run().code(2);
    repo.reins(["logs", &parent, "first/done"]).run().code(2);
    // `last` is the top of the tree, never a child.
    assert_eq!(repo.status("last")["run_id"], parent.as_str());
}

#[test]
fn a_changed_child_file_does_not_change_a_resumed_run() {
    let repo = Repo::new().workflow("child", CHILD).workflow(
        "parent",
        r#"nodes:
  - id: gate
    approval: Go?
  - id: sub
    depends_on: [gate]
    workflow: child
    inputs: { who: frozen }
"#,
    );
    repo.reins(["run", "parent"]).run().code(3);
    let parent = repo.the_run();
    repo.write(
        ".workflows/child.yaml",
        "inputs: { who: {} }\nnodes:\n  - id: x\n    bash: echo changed >> ran.txt\n",
    );
    repo.reins(["approve", &parent, "gate", "--resume"])
        .run()
        .code(0);
    assert_eq!(count(&repo, "child-greet"), 1, "the frozen child ran");
    assert_eq!(count(&repo, "changed"), 0);
    assert_eq!(repo.node(&parent, "sub")["output"], "child saw frozen");
}

#[test]
fn a_child_with_isolation_worktree_works_in_a_worktree_of_its_own() {
    let repo = Repo::new()
        .workflow(
            "edit",
            r#"nodes:
  - id: write
    bash: echo from-child > child.txt; pwd
"#,
        )
        .workflow(
            "parent",
            r#"nodes:
  - id: sub
    workflow: edit
    isolation: worktree
"#,
        );
    repo.write(".gitignore", ".reins/\n.test-*\n");
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "-q", "-m", "base"]);
    repo.reins(["run", "parent"]).run().code(0);
    let (parent, child) = tree(&repo);
    assert!(!repo.exists("child.txt"), "the checkout is untouched");
    let wt = format!(".reins/worktrees/{child}");
    assert_eq!(repo.read(&format!("{wt}/child.txt")).trim(), "from-child");
    let output = repo.node(&parent, "sub")["output"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(output.ends_with(&wt), "{output}");
    assert!(manifest(&repo, &child)["worktree"]
        .as_str()
        .unwrap()
        .ends_with(&wt));
}

/// A child whose gate sits between two bash nodes.
const GATED_CHILD: &str = r#"nodes:
  - id: prep
    bash: echo child-prep >> ran.txt
  - id: ok
    depends_on: [prep]
    approval: Go on?
  - id: fin
    depends_on: [ok]
    bash: echo child-fin >> ran.txt; echo finished
"#;

/// The child on one branch, an unrelated node on another.
const GATED_PARENT: &str = r#"nodes:
  - id: sub
    workflow: gated
  - id: side
    bash: echo side >> ran.txt
  - id: after
    depends_on: [sub]
    bash: echo after >> ran.txt; echo "got {{nodes.sub.output}}"
"#;

#[test]
fn a_gate_in_a_child_pauses_only_its_branch_and_is_answered_through_the_parent() {
    let repo = Repo::new()
        .workflow("gated", GATED_CHILD)
        .workflow("parent", GATED_PARENT);
    let out = repo.reins(["run", "parent"]).run();
    out.code(3);
    let (parent, child) = tree(&repo);
    assert!(
        out.stdout
            .contains(&format!("reins approve {parent} sub/GATE")),
        "{}",
        out.stdout
    );
    assert_eq!(count(&repo, "side"), 1, "the other branch ran");
    assert_eq!(count(&repo, "after"), 0);
    assert_eq!(repo.node(&parent, "sub")["status"], "waiting");
    assert_eq!(repo.node(&child, "ok")["status"], "waiting");

    // A child is resumed through its parent only; a workflow node is not a gate.
    let refused = repo.reins(["resume", &child]).run();
    refused.code(2);
    assert!(
        refused.stderr.contains(&format!("reins resume {parent}")),
        "{}",
        refused.stderr
    );
    let refused = repo.reins(["approve", &parent, "sub"]).run();
    refused.code(2);
    assert!(refused.stderr.contains("sub/ok"), "{}", refused.stderr);
    // A node of the parent cannot answer its child's gate.
    let inside = repo
        .reins(["approve", &parent, "sub/ok"])
        .env("REINS_RUN_ID", &parent)
        .run();
    inside.code(2);
    assert!(inside.stderr.contains("from inside"), "{}", inside.stderr);

    let out = repo.reins(["approve", &parent, "sub/ok", "--resume"]).run();
    out.code(0);
    assert!(out.stdout.contains("approved `sub/ok`"), "{}", out.stdout);
    assert_eq!(repo.status(&parent)["status"], "success");
    assert_eq!(repo.status(&child)["status"], "success");
    assert_eq!(repo.node(&parent, "after")["output"], "got finished");
    // Nothing ran twice: the child took up where it stopped.
    for line in ["child-prep", "child-fin", "side", "after"] {
        assert_eq!(count(&repo, line), 1, "{line}");
    }
    // First answer wins, through either run.
    repo.reins(["approve", &child, "ok"]).run().code(2);
}

#[test]
fn a_gate_in_a_child_is_answered_with_the_childs_id_while_the_parent_runs() {
    let repo = Repo::new().workflow("gated", GATED_CHILD).workflow(
        "parent",
        r#"nodes:
  - id: sub
    workflow: gated
  - id: side
    bash: |
      while [ ! -f go ]; do sleep 0.05; done
      echo side >> ran.txt
  - id: after
    depends_on: [sub]
    bash: echo after >> ran.txt
"#,
    );
    let running = repo.reins(["run", "parent"]).spawn();
    repo.wait_for("the child's gate", Duration::from_secs(20), || {
        let (_, children) = split_runs(&repo);
        children.len() == 1
            && repo
                .events(&children[0])
                .iter()
                .any(|e| e["type"] == "approval_requested")
    });
    let (parent, child) = tree(&repo);
    let out = repo.reins(["approve", &child, "ok", "-m", "fine"]).run();
    out.code(0);
    assert!(
        out.stdout.contains("continues past the gate on its own"),
        "{}",
        out.stdout
    );
    repo.wait_for("the child to finish", Duration::from_secs(20), || {
        count(&repo, "child-fin") == 1
    });
    repo.write("go", "");
    running.wait().code(0);
    assert_eq!(repo.status(&parent)["status"], "success");
    assert_eq!(count(&repo, "after"), 1);
}

#[test]
fn a_gate_timing_out_in_a_child_settles_the_branch_of_a_live_parent() {
    let repo = Repo::new()
        .workflow(
            "gated",
            r#"nodes:
  - id: ok
    approval: { message: Go on?, timeout: 1s }
  - id: fin
    depends_on: [ok]
    bash: echo child-fin >> ran.txt
"#,
        )
        .workflow(
            "parent",
            r#"nodes:
  - id: sub
    workflow: gated
  - id: side
    bash: |
      while [ ! -f go ]; do sleep 0.05; done
      echo side >> ran.txt
  - id: after
    depends_on: [sub]
    bash: echo after >> ran.txt
"#,
        );
    let running = repo.reins(["run", "parent"]).spawn();
    // The parent runs on (`side` waits); the child's gate times out meanwhile, and the parent
    // notices without any answer or resume: the child's gate is rejected, its branch settles.
    repo.wait_for(
        "the parent to settle `sub`",
        Duration::from_secs(30),
        || {
            let (parents, _) = split_runs(&repo);
            parents.len() == 1 && repo.node(&parents[0], "sub")["status"] == "failed"
        },
    );
    let (parent, child) = tree(&repo);
    let gate = repo.node(&child, "ok");
    assert_eq!(gate["status"], "failed", "{gate:#}");
    assert_eq!(
        gate["approval"]["answer"]["comment"],
        "timed out after 1.0s"
    );
    assert_eq!(repo.node(&parent, "after")["status"], "skipped");
    repo.write("go", "");
    running.wait().code(1);
    assert_eq!(count(&repo, "side"), 1);
    assert_eq!(count(&repo, "child-fin"), 0);
}

/// A child whose second node runs until killed.
const SLOW_CHILD: &str = r#"nodes:
  - id: a
    bash: echo child-a >> ran.txt
  - id: b
    depends_on: [a]
    bash: |
      echo child-b >> ran.txt
      if [ ! -f resumed ]; then
        sleep 300 & echo $! > b.pid
        wait
      fi
  - id: c
    depends_on: [b]
    bash: echo child-c >> ran.txt; echo child-done
"#;

const SLOW_PARENT: &str = r#"nodes:
  - id: sub
    workflow: slow
  - id: after
    depends_on: [sub]
    bash: echo "after {{nodes.sub.output}}" >> ran.txt
"#;

fn wait_for_b(repo: &Repo) {
    repo.wait_for("the child's node b", Duration::from_secs(20), || {
        repo.exists("b.pid") && !repo.read("b.pid").trim().is_empty()
    });
}

#[test]
fn resume_after_kill_9_mid_child_runs_only_the_unfinished_child_nodes() {
    let repo = Repo::new()
        .workflow("slow", SLOW_CHILD)
        .workflow("parent", SLOW_PARENT);
    let running = repo.reins(["run", "parent"]).spawn();
    wait_for_b(&repo);
    let b = repo.pid("b.pid");
    running.signal(Signal::SIGKILL);
    running.wait();
    wait_for(
        "b's sleep to die with reins",
        Duration::from_secs(10),
        || !process_alive(b),
    );
    let (parent, child) = tree(&repo);
    assert_eq!(repo.status(&parent)["status"], "interrupted");

    repo.write("resumed", "");
    repo.reins(["resume", &parent]).run().code(0);
    let (again, same) = tree(&repo);
    assert_eq!(
        (again, same),
        (parent.clone(), child.clone()),
        "the same child run, resumed"
    );
    assert_eq!(count(&repo, "child-a"), 1, "a finished before the kill");
    assert_eq!(count(&repo, "child-b"), 2, "b was running: it runs again");
    assert_eq!(count(&repo, "child-c"), 1);
    assert_eq!(count(&repo, "after child-done"), 1);
    assert_eq!(repo.status(&child)["status"], "success");
}

#[test]
fn cancelling_the_parent_cancels_the_child() {
    let repo = Repo::new()
        .workflow("slow", SLOW_CHILD)
        .workflow("parent", SLOW_PARENT);
    let running = repo.reins(["run", "parent"]).spawn();
    wait_for_b(&repo);
    let b = repo.pid("b.pid");
    let (parent, child) = tree(&repo);
    repo.reins(["cancel", &parent]).run().code(0);
    running.wait().code(130);
    assert!(!process_alive(b), "the child's process is stopped");
    assert_eq!(repo.status(&parent)["status"], "cancelled");
    assert_eq!(repo.status(&child)["status"], "cancelled");
    assert_eq!(repo.node(&child, "b")["status"], "cancelled");
    assert_eq!(repo.node(&parent, "sub")["status"], "cancelled");
}

#[test]
fn cancelling_the_child_cancels_its_parent() {
    let repo = Repo::new()
        .workflow("slow", SLOW_CHILD)
        .workflow("parent", SLOW_PARENT);
    let running = repo.reins(["run", "parent"]).spawn();
    wait_for_b(&repo);
    let (parent, child) = tree(&repo);
    let out = repo.reins(["cancel", &child]).run();
    out.code(0);
    assert!(
        out.stdout.contains("cancelling the whole tree"),
        "{}",
        out.stdout
    );
    running.wait().code(130);
    assert_eq!(repo.status(&parent)["status"], "cancelled");
    assert_eq!(repo.status(&child)["status"], "cancelled");
    assert_eq!(count(&repo, "child-c"), 0);
}

#[test]
fn cancelling_a_paused_tree_marks_every_run_cancelled() {
    let repo = Repo::new()
        .workflow("gated", GATED_CHILD)
        .workflow("parent", GATED_PARENT);
    repo.reins(["run", "parent"]).run().code(3);
    let (parent, child) = tree(&repo);
    repo.reins(["cancel", &child]).run().code(0);
    assert_eq!(repo.status(&parent)["status"], "cancelled");
    assert_eq!(repo.status(&child)["status"], "cancelled");
}

#[test]
fn a_missing_child_a_missing_input_and_recursion_are_refused_before_anything_runs() {
    let repo = Repo::new()
        .workflow("child", CHILD)
        .workflow("no-child", "nodes:\n  - id: sub\n    workflow: nowhere\n")
        .workflow(
            "no-input",
            "nodes:\n  - id: sub\n    workflow: child\n    inputs: { whom: x }\n",
        )
        .workflow("loop-a", "nodes:\n  - id: sub\n    workflow: loop-b\n")
        .workflow("loop-b", "nodes:\n  - id: sub\n    workflow: loop-a\n");
    let cases = [
        ("no-child", "runs workflow `nowhere`, which is not found"),
        ("no-input", "workflow `child` needs input `who`"),
        ("no-input", "workflow `child` has no input `whom`"),
        ("loop-a", "loop-a → loop-b → loop-a"),
    ];
    for (wf, needle) in cases {
        let out = repo.reins(["run", wf]).run();
        out.code(2);
        assert!(out.stderr.contains(needle), "{wf}: {}", out.stderr);
    }
    assert!(repo.run_ids().is_empty(), "nothing ran");
}

#[test]
fn a_failed_child_fails_its_node_and_a_retry_resumes_it() {
    let repo = Repo::new()
        .workflow(
            "flaky",
            r#"nodes:
  - id: once
    bash: echo child-once >> ran.txt
  - id: flaky
    depends_on: [once]
    bash: |
      echo child-flaky >> ran.txt
      [ -f fixed ] || { touch fixed; echo broken >&2; exit 1; }
      echo fixed-now
"#,
        )
        .workflow(
            "parent",
            "nodes:\n  - id: sub\n    workflow: flaky\n    retries: 1\n",
        );
    repo.reins(["run", "parent"]).run().code(0);
    let (parent, child) = tree(&repo);
    assert_eq!(count(&repo, "child-once"), 1, "the retry resumed the child");
    assert_eq!(count(&repo, "child-flaky"), 2);
    assert_eq!(repo.node(&parent, "sub")["output"], "fixed-now");
    assert_eq!(repo.node(&parent, "sub")["attempt"], 2);
    assert_eq!(repo.status(&child)["status"], "success");
}

#[test]
fn a_log_that_names_another_run_as_the_child_adopts_nothing() {
    let repo = Repo::new()
        .workflow("gated", GATED_CHILD)
        .workflow("parent", GATED_PARENT)
        .workflow("other", "nodes: [{id: x, bash: echo other}]");
    repo.reins(["run", "other"]).run().code(0);
    let other = repo.the_run();
    repo.reins(["run", "parent"]).run().code(3);
    let (parents, _) = split_runs(&repo);
    let parent = parents.into_iter().find(|p| *p != other).unwrap();
    // A node of the run (or anyone with write access) points `sub` at the unrelated run.
    let events = repo.events(&parent);
    let last = events.last().unwrap();
    let forged = serde_json::json!({
        "seq": last["seq"].as_u64().unwrap() + 1,
        "ts": last["ts"],
        "type": "child_run",
        "node": "sub",
        "run_id": other,
    });
    let path = format!(".reins/runs/{parent}/events.jsonl");
    let text = repo.read(&path) + &format!("{forged}\n");
    repo.write(&path, &text);
    let before = repo.events(&other).len();
    repo.reins(["resume", &parent]).run().code(1);
    let sub = repo.node(&parent, "sub");
    assert_eq!(sub["status"], "failed");
    assert!(
        sub["error"]
            .as_str()
            .unwrap()
            .contains("is not the child run"),
        "{sub:#}"
    );
    assert_eq!(
        repo.events(&other).len(),
        before,
        "the other run is untouched"
    );
}

#[test]
fn a_fan_out_of_a_child_workflow_runs_one_child_per_item_and_gates_answer_by_path() {
    let repo = Repo::new().workflow("child", CHILD).workflow(
        "fan",
        r#"nodes:
  - id: each
    for_each: [ann, bob, cy]
    max_parallel: 2
    workflow: child
    inputs: { who: "{{item}}" }
  - id: after
    depends_on: [each]
    bash: echo "{{nodes.each.outputs}}"
"#,
    );
    repo.reins(["run", "fan"]).run().code(0);
    let (parents, children) = split_runs(&repo);
    assert_eq!(parents.len(), 1);
    assert_eq!(children.len(), 3, "one child run per item");
    let parent = &parents[0];
    let after = repo.node(parent, "after")["output"]
        .as_str()
        .unwrap()
        .to_string();
    let outputs: Value = serde_json::from_str(&after).expect("a JSON array");
    assert_eq!(
        outputs,
        serde_json::json!(["child saw ann", "child saw bob", "child saw cy"])
    );
    for (k, who) in ["ann", "bob", "cy"].iter().enumerate() {
        let instance = repo.node(parent, &format!("each[{k}]"));
        let child = instance["child_run"].as_str().unwrap().to_string();
        assert_eq!(manifest(&repo, &child)["inputs"]["who"], *who);
        assert_eq!(
            manifest(&repo, &child)["parent"]["node"],
            format!("each[{k}]")
        );
    }

    // Gates inside fanned-out children are answered by their path from the parent.
    let gated = Repo::new().workflow("gated", GATED_CHILD).workflow(
        "fan",
        "nodes:\n  - id: each\n    for_each: [x, y]\n    workflow: gated\n",
    );
    gated.reins(["run", "fan"]).run().code(3);
    let (parents, children) = split_runs(&gated);
    assert_eq!(children.len(), 2);
    let parent = parents[0].clone();
    gated
        .reins(["approve", &parent, "each[0]/ok"])
        .run()
        .code(0);
    gated
        .reins(["approve", &parent, "each[1]/ok", "--resume"])
        .run()
        .code(0);
    assert_eq!(gated.status(&parent)["status"], "success");
    assert_eq!(count(&gated, "child-fin"), 2);
}

#[test]
fn the_bundled_fix_issues_fans_fix_issue_out_in_worktrees_behind_one_gate() {
    let repo = Repo::new();
    let out = repo
        .reins([
            "run",
            "fix-issues",
            "--dry-run",
            "--input",
            r#"issues=["one bug","another"]"#,
        ])
        .run();
    out.code(0);
    assert!(
        out.stdout
            .contains("runs workflow `fix-issue` as a child run in a worktree of its own"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("fix[1] = another"), "{}", out.stdout);
    assert!(
        out.stdout.contains("2. approve [approval] after fix"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("3. commit [bash] after approve"),
        "{}",
        out.stdout
    );
}
