//! `reins init` and `reins new` on empty and existing repositories: never overwrite, say what
//! was skipped, ignore `.reins/`, detect the test command.

mod support;

use std::path::Path;

use support::cli::reins;

fn git_init(dir: &Path) {
    let ok = std::process::Command::new("git")
        .args(["init", "-q"])
        .current_dir(dir)
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

#[test]
fn init_scaffolds_an_empty_repository() {
    let dir = tempfile::tempdir().unwrap();
    git_init(dir.path());
    std::fs::write(dir.path().join("Cargo.toml"), "[package]\nname = \"x\"\n").unwrap();
    let out = reins().arg("init").current_dir(dir.path()).run();
    assert_eq!(out.code, 0, "{}", out.transcript());
    for created in [
        ".workflows/starter.yaml",
        ".workflows/commands/plan.md",
        ".workflows/reins.schema.json",
    ] {
        assert!(
            out.stdout.contains(&format!("created  {created}")),
            "{}",
            out.stdout
        );
        assert!(dir.path().join(created).is_file(), "{created}");
    }
    assert!(
        out.stdout.contains("detected test command: cargo test"),
        "{}",
        out.stdout
    );
    let starter = std::fs::read_to_string(dir.path().join(".workflows/starter.yaml")).unwrap();
    assert!(starter.contains("default: \"cargo test\""), "{starter}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join(".gitignore")).unwrap(),
        "# reins run history and artifacts\n.reins/\n"
    );
    // What it wrote is a valid workflow, and its schema is the one `reins schema` prints.
    let out = reins().arg("validate").current_dir(dir.path()).run();
    assert_eq!(out.code, 0, "{}", out.transcript());
    let schema = reins().arg("schema").current_dir(dir.path()).run();
    let written = std::fs::read_to_string(dir.path().join(".workflows/reins.schema.json")).unwrap();
    let parse = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap();
    assert_eq!(parse(&written), parse(&schema.stdout));
}

#[test]
fn init_never_overwrites_and_says_what_it_skipped() {
    let dir = tempfile::tempdir().unwrap();
    git_init(dir.path());
    std::fs::create_dir_all(dir.path().join(".workflows")).unwrap();
    std::fs::write(
        dir.path().join(".workflows/starter.yaml"),
        "nodes: [{id: mine, bash: 'true'}]\n",
    )
    .unwrap();
    std::fs::write(dir.path().join(".gitignore"), "target\n/.reins/").unwrap();
    std::fs::write(
        dir.path().join("package.json"),
        "{\"scripts\": {\"test\": \"jest\"}}",
    )
    .unwrap();
    let out = reins().arg("init").current_dir(dir.path()).run();
    assert_eq!(out.code, 0, "{}", out.transcript());
    assert!(
        out.stdout
            .contains("skipped  .workflows/starter.yaml (exists; left as is)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("created  .workflows/commands/plan.md"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("skipped  .gitignore (already ignores .reins/)"),
        "{}",
        out.stdout
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join(".workflows/starter.yaml")).unwrap(),
        "nodes: [{id: mine, bash: 'true'}]\n"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join(".gitignore")).unwrap(),
        "target\n/.reins/"
    );
    // Running it again changes nothing at all.
    let again = reins().arg("init").current_dir(dir.path()).run();
    assert_eq!(again.code, 0);
    assert!(!again.stdout.contains("created "), "{}", again.stdout);
}

#[test]
fn init_without_a_known_test_command_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let out = reins().arg("init").current_dir(dir.path()).run();
    assert_eq!(out.code, 0, "{}", out.transcript());
    assert!(
        out.stdout.contains("no test command detected"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("updated  .gitignore (added .reins/)"),
        "{}",
        out.stdout
    );
    let out = reins().arg("validate").current_dir(dir.path()).run();
    assert_eq!(out.code, 0, "{}", out.transcript());
}

#[test]
fn new_scaffolds_a_workflow_once() {
    let dir = tempfile::tempdir().unwrap();
    git_init(dir.path());
    let out = reins()
        .args(["new", "ship-it"])
        .current_dir(dir.path())
        .run();
    assert_eq!(out.code, 0, "{}", out.transcript());
    assert!(dir.path().join(".workflows/ship-it.yaml").is_file());
    let out = reins()
        .args(["validate", ".workflows/ship-it.yaml"])
        .current_dir(dir.path())
        .run();
    assert_eq!(out.code, 0, "{}", out.transcript());
    let again = reins()
        .args(["new", "ship-it"])
        .current_dir(dir.path())
        .run();
    assert_eq!(again.code, 2);
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);
    let bad = reins()
        .args(["new", "no spaces"])
        .current_dir(dir.path())
        .run();
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("bad workflow name"), "{}", bad.stderr);
}
