//! `reins validate`, tested as data.
//!
//! Every file in `tests/data/invalid/` is one case: it is validated by the built binary (from
//! inside that folder, so paths in the output are short and stable) and its whole transcript
//! (exit code, stdout, stderr) must match `tests/snapshots/invalid/<file>.snap`. A file is
//! named after the diagnostic code it shows, `<code>.yaml` or `<code>.<variant>.yaml`, and
//! that code must be among what it reports. Adding a file adds a case; run
//! `INSTA_UPDATE=always cargo test --test validate` (or `cargo insta review`) to record it.
//!
//! Every file in `tests/data/valid/` must validate cleanly: exit 0, no diagnostic at all.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;
use support::cli::reins;

/// Cases that only warn: they exit 0.
const WARNING_ONLY: &[&str] = &[
    "duplicate-dependency.yaml",
    "no-effect.fan-out.yaml",
    "no-effect.yaml",
    "no-effect.codex.yaml",
    "raw-substitution.yaml",
    "unordered-session.yaml",
    "unused-input.yaml",
];

fn data(dir: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(dir)
}

/// The `*.yaml` files of a folder, sorted.
fn yaml_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            e.expect("a folder entry")
                .file_name()
                .into_string()
                .expect("UTF-8 name")
        })
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    names.sort();
    names
}

/// The diagnostic code a case file is named after.
fn code_of(file: &str) -> &str {
    file.split('.').next().expect("a file name")
}

/// Runs `reins validate --format json` and parses the list.
fn json_diagnostics(dir: &Path, args: &[&str]) -> Vec<Value> {
    let out = reins()
        .args(["validate", "--format", "json"])
        .args(args)
        .current_dir(dir)
        .run();
    let parsed: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "`--format json` printed invalid JSON ({e}):\n{}",
            out.stdout
        )
    });
    parsed.as_array().expect("a JSON list").clone()
}

fn snapshot(name: &str, transcript: &str) {
    insta::with_settings!({
        snapshot_path => "snapshots/invalid",
        prepend_module_to_snapshot => false,
        omit_expression => true,
    }, {
        insta::assert_snapshot!(name, transcript);
    });
}

#[test]
fn every_invalid_file_reports_what_its_snapshot_shows() {
    let dir = data("invalid");
    let files = yaml_files(&dir);
    assert!(files.len() >= 40, "only {} cases", files.len());
    for file in &files {
        let out = reins().args(["validate", file]).current_dir(&dir).run();
        let expected = if WARNING_ONLY.contains(&file.as_str()) {
            0
        } else {
            2
        };
        assert_eq!(out.code, expected, "{file}:\n{}", out.transcript());
        assert!(
            !out.stdout.is_empty(),
            "{file} reported nothing:\n{}",
            out.transcript()
        );
        snapshot(file, &out.transcript());
    }
}

#[test]
fn every_invalid_file_reports_the_code_it_is_named_after() {
    let dir = data("invalid");
    for file in yaml_files(&dir) {
        let diags = json_diagnostics(&dir, &[&file]);
        let codes: BTreeSet<&str> = diags.iter().filter_map(|d| d["code"].as_str()).collect();
        if file == "many-errors.yaml" {
            let errors = diags.iter().filter(|d| d["severity"] == "error").count();
            assert!(
                errors >= 15 && codes.len() >= 12,
                "many-errors.yaml: {errors} errors of {} kinds: {codes:?}",
                codes.len()
            );
            continue;
        }
        assert!(
            codes.contains(code_of(&file)),
            "{file} should report `{}`, reports {codes:?}",
            code_of(&file)
        );
        let warning_only = diags.iter().all(|d| d["severity"] == "warning");
        assert_eq!(
            warning_only,
            WARNING_ONLY.contains(&file.as_str()),
            "{file}: only warnings = {warning_only}; keep WARNING_ONLY in step"
        );
    }
}

/// Every code the loader and validator can emit has a case file. Codes are found in the
/// source as the first argument of `error(`, `warning(` and `file_error(`.
#[test]
fn every_diagnostic_code_has_a_case() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut codes = BTreeSet::new();
    for dir in ["workflow", "diagnostic"] {
        for entry in std::fs::read_dir(root.join(dir)).expect("src folder") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("source");
                codes.extend(codes_in(&text));
            }
        }
    }
    assert!(codes.len() >= 30, "found only {codes:?}");
    let cases: BTreeSet<String> = yaml_files(&data("invalid"))
        .iter()
        .map(|f| code_of(f).to_string())
        .collect();
    let missing: Vec<&String> = codes.iter().filter(|c| !cases.contains(*c)).collect();
    assert!(
        missing.is_empty(),
        "codes without a file in tests/data/invalid/: {missing:?}"
    );
}

/// `"some-code"` right after `error(`, `warning(` or `file_error(` (whitespace allowed).
fn codes_in(text: &str) -> Vec<String> {
    let mut codes = Vec::new();
    for call in ["error(", "warning("] {
        for (i, _) in text.match_indices(call) {
            let rest = text[i + call.len()..].trim_start();
            let Some(rest) = rest.strip_prefix('"') else {
                continue;
            };
            let Some(end) = rest.find('"') else {
                continue;
            };
            let code = &rest[..end];
            let is_code =
                !code.is_empty() && code.chars().all(|c| c.is_ascii_lowercase() || c == '-');
            if is_code {
                codes.push(code.to_string());
            }
        }
    }
    codes
}

#[test]
fn json_format_lists_every_diagnostic_with_its_position() {
    let dir = data("invalid");
    let out = reins()
        .args(["validate", "--format", "json", "unknown-key.yaml"])
        .current_dir(&dir)
        .run();
    assert_eq!(out.code, 2);
    // No human summary on stderr: stdout is the whole, machine-readable answer.
    assert_eq!(out.stderr, "");
    snapshot("json-format", &out.transcript());
    let diags: Value = serde_json::from_str(&out.stdout).expect("valid JSON");
    let diags = diags.as_array().expect("a list");
    assert_eq!(diags.len(), 3);
    for d in diags {
        for field in ["line", "column", "end_line", "end_column"] {
            assert!(d[field].as_u64().is_some_and(|n| n >= 1), "{field} in {d}");
        }
        for field in ["severity", "code", "file", "message"] {
            assert!(d[field].is_string(), "{field} in {d}");
        }
        assert_eq!(d["file"], "unknown-key.yaml");
    }
    assert_eq!(
        (&diags[1]["line"], &diags[1]["column"], &diags[1]["code"]),
        (
            &Value::from(5),
            &Value::from(5),
            &Value::from("unknown-key")
        )
    );
}

#[test]
fn json_format_of_a_valid_file_is_an_empty_list() {
    let out = reins()
        .args(["validate", "--format", "json", "sessions.yaml"])
        .current_dir(data("valid"))
        .run();
    assert_eq!(
        (out.code, out.stdout.trim(), out.stderr.as_str()),
        (0, "[]", "")
    );
}

#[test]
fn github_format_prints_annotations() {
    let dir = data("invalid");
    let out = reins()
        .args(["validate", "--format", "github", "many-errors.yaml"])
        .current_dir(&dir)
        .run();
    assert_eq!(out.code, 2);
    assert_eq!(out.stderr, "");
    for line in out.stdout.lines() {
        assert!(
            line.starts_with("::error file=many-errors.yaml,line=")
                || line.starts_with("::warning file=many-errors.yaml,line="),
            "{line}"
        );
    }
    snapshot("github-format", &out.transcript());
}

#[test]
fn valid_workflows_have_no_diagnostics() {
    let dir = data("valid");
    let files = yaml_files(&dir);
    assert!(files.len() >= 5);
    for file in &files {
        let out = reins().args(["validate", file]).current_dir(&dir).run();
        assert_eq!(
            (out.code, out.stdout.as_str(), out.stderr.as_str()),
            (0, "", "1 file valid\n"),
            "{file}"
        );
    }
}

#[test]
fn a_folder_validates_every_workflow_in_it() {
    let valid = reins()
        .args(["validate", "valid"])
        .current_dir(data(""))
        .run();
    let count = yaml_files(&data("valid")).len();
    assert_eq!(
        (valid.code, valid.stdout.as_str(), valid.stderr),
        (0, "", format!("{count} files valid\n"))
    );

    // The folder's report is every file's report: same diagnostics, paths from here.
    let invalid_dir = data("invalid");
    let files = yaml_files(&invalid_dir);
    let mut expected = 0;
    let mut files_with_diagnostics = BTreeSet::new();
    for file in &files {
        let diags = json_diagnostics(&invalid_dir, &[file]);
        expected += diags.len();
        for d in diags {
            files_with_diagnostics.insert(format!("invalid/{}", d["file"].as_str().unwrap()));
        }
    }
    let all = json_diagnostics(&data(""), &["invalid"]);
    assert_eq!(all.len(), expected);
    let reported: BTreeSet<String> = all
        .iter()
        .map(|d| d["file"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(reported, files_with_diagnostics);

    let out = reins()
        .args(["validate", "invalid"])
        .current_dir(data(""))
        .run();
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .ends_with(&format!(" in {} files\n", files.len())),
        "{}",
        out.stderr
    );
}

#[test]
fn several_paths_are_validated_together() {
    let out = reins()
        .args([
            "validate",
            "valid/loops.yaml",
            "invalid/cycle.yaml",
            "valid",
        ])
        .current_dir(data(""))
        .run();
    assert_eq!(out.code, 2);
    assert!(out
        .stdout
        .starts_with("invalid/cycle.yaml:3:18: error: dependency cycle"));
    let count = yaml_files(&data("valid")).len() + 2;
    assert_eq!(out.stderr, format!("1 error in {count} files\n"));
}

/// A project like a user has: `.workflows/` with the valid examples and their commands.
fn project() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("a temp dir");
    let workflows = tmp.path().join(".workflows");
    std::fs::create_dir_all(workflows.join("commands")).expect("mkdir");
    for file in yaml_files(&data("valid")) {
        std::fs::copy(data("valid").join(&file), workflows.join(&file)).expect("copy");
    }
    for entry in std::fs::read_dir(data("valid/commands")).expect("commands") {
        let path = entry.expect("entry").path();
        std::fs::copy(
            &path,
            workflows.join("commands").join(path.file_name().unwrap()),
        )
        .expect("copy");
    }
    tmp
}

#[test]
fn default_path_is_the_workflows_folder() {
    let tmp = project();
    let out = reins().arg("validate").current_dir(tmp.path()).run();
    let count = yaml_files(&data("valid")).len();
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr),
        (0, "", format!("{count} files valid\n"))
    );

    std::fs::write(
        tmp.path().join(".workflows/broken.yml"),
        "nodes:\n  - id: a\n    bash: echo {{inputs.nope}}\n",
    )
    .expect("write");
    let out = reins().arg("validate").current_dir(tmp.path()).run();
    assert_eq!(out.code, 2);
    assert!(
        out.stdout.starts_with(
            ".workflows/broken.yml:3:18: error: `inputs.nope` is not a declared input"
        ),
        "{}",
        out.stdout
    );
}

#[test]
fn no_workflows_folder_is_a_clear_error() {
    let tmp = tempfile::tempdir().expect("a temp dir");
    let out = reins().arg("validate").current_dir(tmp.path()).run();
    snapshot("no-workflows-folder", &out.transcript());
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("no `.workflows/` folder here"));
}

#[test]
fn a_folder_without_workflows_is_an_error() {
    let tmp = tempfile::tempdir().expect("a temp dir");
    std::fs::create_dir(tmp.path().join("empty")).expect("mkdir");
    std::fs::write(tmp.path().join("empty/notes.md"), "not a workflow").expect("write");
    let out = reins()
        .args(["validate", "empty"])
        .current_dir(tmp.path())
        .run();
    snapshot("folder-without-workflows", &out.transcript());
    assert_eq!(out.code, 2);
}

#[test]
fn a_missing_path_is_a_clear_error() {
    let out = reins()
        .args(["validate", "valid/loops.yaml", "no-such-file.yaml"])
        .current_dir(data(""))
        .run();
    snapshot("missing-path", &out.transcript());
    assert_eq!(out.code, 2);
    assert_eq!(out.stdout, "");
}

#[test]
fn an_unknown_format_is_a_usage_error() {
    let out = reins()
        .args(["validate", "--format", "xml", "valid"])
        .current_dir(data(""))
        .run();
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("invalid value 'xml'"), "{}", out.stderr);
}
