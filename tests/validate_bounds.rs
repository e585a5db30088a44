//! Hostile workflow files are refused in bounded time and memory: floods of templates or of
//! errors, files that are not regular or too large, alias bombs. These tests check what is
//! reported; how fast it is lives in `benches/validate.rs`.

mod support;

use std::path::Path;

use support::cli::reins;

fn validate(path: &Path) -> support::cli::Output {
    reins().arg("validate").arg(path).run()
}

#[test]
fn a_flood_of_unknown_names_on_one_line_is_counted_not_listed() {
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..20_000)
        .map(|i| format!("{{{{inputs.nope{i}}}}}"))
        .collect();
    // Spread over 20 templates of 1,000 tags, every one on the same line.
    let nodes: Vec<String> = names
        .chunks(1000)
        .enumerate()
        .map(|(k, c)| format!("{{id: n{k}, bash: \"echo {}\"}}", c.join(" ")))
        .collect();
    let path = dir.path().join("flood.yaml");
    std::fs::write(&path, format!("nodes: [{}]\n", nodes.join(", "))).unwrap();
    let out = validate(&path);
    assert_eq!(out.code, 2);
    assert_eq!(out.stdout.matches(": error: `inputs.nope").count(), 10);
    assert!(
        out.stdout
            .contains("and 19,990 more `unknown-input` errors"),
        "{}",
        &out.stdout[..out.stdout.len().min(2000)]
    );
    // Ten snippets of the one long line, not twenty thousand.
    assert!(
        out.stdout.len() < 20 * 1024 * 1024,
        "{} bytes",
        out.stdout.len()
    );
}

#[test]
fn thousands_of_dependency_typos_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    let mut yaml = String::from("nodes:\n");
    for i in 0..5000 {
        yaml.push_str(&format!("  - {{id: n{i}, bash: x, depends_on: [m{i}]}}\n"));
    }
    let path = dir.path().join("typos.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = validate(&path);
    assert_eq!(out.code, 2);
    assert!(out
        .stdout
        .contains("and 4,990 more `unknown-dependency` errors"));
}

#[test]
fn a_template_with_too_many_tags_is_refused_before_it_is_parsed() {
    let dir = tempfile::tempdir().unwrap();
    let tags = vec!["{{inputs.x}}"; 20_000].join(" ");
    let path = dir.path().join("tags.yaml");
    std::fs::write(
        &path,
        format!("inputs:\n  x: {{default: a}}\nnodes:\n  - id: a\n    bash: echo {tags}\n"),
    )
    .unwrap();
    let out = validate(&path);
    assert_eq!(out.code, 2);
    assert!(out
        .stdout
        .contains("holds 20,000 `{{...}}` tags; one template may hold at most 1,000"));
}

#[test]
fn files_that_are_not_regular_or_too_large_are_refused_at_once() {
    let out = validate(Path::new("/dev/zero"));
    assert_eq!(out.code, 2);
    assert!(out.stdout.contains("not a regular file"), "{}", out.stdout);

    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe.yaml");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    // Nobody ever writes to the FIFO: reading it would wait forever.
    let out = validate(&fifo);
    assert_eq!(out.code, 2);
    assert!(out.stdout.contains("not a regular file"), "{}", out.stdout);

    let big = dir.path().join("big.yaml");
    std::fs::write(&big, "#".repeat(9 * 1024 * 1024)).unwrap();
    let out = validate(&big);
    assert_eq!(out.code, 2);
    assert!(out.stdout.contains("larger than 8 MiB"), "{}", out.stdout);
}

#[test]
fn a_large_legitimate_workflow_is_not_an_alias_bomb() {
    let dir = tempfile::tempdir().unwrap();
    let mut yaml = String::from("nodes:\n");
    for i in 0..50_000 {
        yaml.push_str(&format!("  - {{id: n{i}, bash: echo {i}, timeout: 1m}}\n"));
    }
    let path = dir.path().join("large.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = validate(&path);
    assert_eq!(out.code, 0, "{}", out.transcript());
}

#[test]
fn the_alias_budget_names_its_limit_and_how_to_raise_it() {
    let case = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/invalid/yaml-budget.yaml");
    let out = validate(&case);
    assert_eq!(out.code, 2);
    assert!(
        out.stdout.contains("more than 250,000 values"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("REINS_YAML_MAX_VALUES"),
        "{}",
        out.stdout
    );
}
