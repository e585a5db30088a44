//! The README's quickstart, command by command, exactly as written there.

mod support;

use support::run_repo::Repo;

/// The quickstart's `reins` commands with their expected exit codes, in order.
const QUICKSTART: &[(&str, i32)] = &[
    ("reins run examples/tour.yaml", 3),
    ("reins status last", 0),
    ("reins approve last release-gate -m \"ship it\" --resume", 0),
    ("reins logs last release", 0),
    ("reins graph examples/tour.yaml", 0),
];

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap()
}

#[test]
fn the_readme_shows_these_commands() {
    let readme = readme();
    let block = readme
        .split("## Quickstart")
        .nth(1)
        .expect("a Quickstart section")
        .split("```")
        .nth(1)
        .expect("a code block");
    let lines: Vec<&str> = block
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .collect();
    let mut expected = vec!["cargo install --locked --path ."];
    expected.extend(QUICKSTART.iter().map(|(c, _)| *c));
    assert_eq!(lines, expected, "README quickstart and this test disagree");
}

#[test]
fn the_quickstart_runs() {
    let repo = Repo::new();
    let tour = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/tour.yaml"))
        .unwrap();
    repo.write("examples/tour.yaml", &tour);
    for (line, code) in QUICKSTART {
        let args = shell_words(line.strip_prefix("reins ").unwrap());
        let out = repo.reins(&args).run();
        assert_eq!(
            out.code, *code,
            "`{line}`\nstdout:\n{}\nstderr:\n{}",
            out.stdout, out.stderr
        );
        match *line {
            l if l.starts_with("reins run") => {
                assert!(
                    out.stdout.contains("release-gate") || out.stderr.contains("release-gate"),
                    "the run names the gate it waits at"
                );
            }
            "reins logs last release" => assert!(
                out.stdout.contains("released 0.1.0: ship it"),
                "{}",
                out.stdout
            ),
            _ => {}
        }
    }
    let status = repo.status("last");
    assert_eq!(status["status"], "success", "{status:#}");
    let artifacts = std::path::PathBuf::from(status["dir"].as_str().unwrap()).join("artifacts");
    let report = std::fs::read_to_string(artifacts.join("report.md")).unwrap();
    assert!(report.starts_with("# Release 0.1.0\n"), "{report}");
    assert_eq!(
        std::fs::read_to_string(artifacts.join("released.txt")).unwrap(),
        "released 0.1.0: ship it\n"
    );
}

/// Splits a command line the way a shell would for these simple lines: spaces, double quotes.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ' ' if !quoted => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}
