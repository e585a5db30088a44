//! `reins graph`: layers, width and critical path in every format.

mod support;

use serde_json::Value;
use support::cli::reins;

const DIAMOND: &str = "description: a diamond with a slow side
nodes:
  - { id: fetch, bash: 'true', timeout: 10s }
  - { id: slow, depends_on: [fetch], bash: 'true', timeout: 5m }
  - { id: quick, depends_on: [fetch], bash: 'true', timeout: 2s }
  - { id: gate, depends_on: [slow, quick], approval: Ship it? }
  - { id: lint, bash: 'true', timeout: 1s }
";

fn diamond() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("diamond.yaml"), DIAMOND).unwrap();
    dir
}

#[test]
fn json_has_layers_as_arrays_of_ids_and_the_critical_path() {
    let dir = diamond();
    let out = reins()
        .args(["graph", "diamond.yaml", "--format", "json"])
        .current_dir(dir.path())
        .run();
    assert_eq!(out.code, 0, "{}", out.transcript());
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        v["layers"],
        serde_json::json!([["fetch", "lint"], ["slow", "quick"], ["gate"]])
    );
    assert_eq!(v["node_count"], 5);
    assert_eq!(v["width"], 2);
    assert_eq!(
        v["critical_path"]["nodes"],
        serde_json::json!(["fetch", "slow", "gate"])
    );
    // 10 s + 5 min + one minute for the gate, which sets no timeout.
    assert_eq!(v["critical_path"]["weight_seconds"], 370.0);
}

#[test]
fn text_mermaid_and_dot() {
    let dir = diamond();
    let text = reins()
        .args(["graph", "diamond.yaml"])
        .current_dir(dir.path())
        .run();
    assert_eq!(text.code, 0);
    insta::assert_snapshot!("graph_text", text.stdout);
    let mermaid = reins()
        .args(["graph", "diamond.yaml", "--format", "mermaid"])
        .current_dir(dir.path())
        .run();
    insta::assert_snapshot!("graph_mermaid", mermaid.stdout);
    let dot = reins()
        .args(["graph", "diamond.yaml", "--format", "dot"])
        .current_dir(dir.path())
        .run();
    insta::assert_snapshot!("graph_dot", dot.stdout);
}

#[test]
fn an_invalid_workflow_is_refused_with_its_diagnostics() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.yaml"), "nodes:\n  - { id: a, bash: x, depends_on: [b] }\n  - { id: b, bash: x, depends_on: [a] }\n").unwrap();
    let out = reins()
        .args(["graph", "bad.yaml"])
        .current_dir(dir.path())
        .run();
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("dependency cycle"), "{}", out.stderr);
    let out = reins()
        .args(["graph", "no-such-workflow"])
        .current_dir(dir.path())
        .run();
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("no-such-workflow"), "{}", out.stderr);
}
