//! Hostile inputs and node outputs never run as shell code: every `{{value}}` in a bash node is
//! shell-quoted, and the same values are in the environment.

mod support;

use support::run_repo::Repo;

/// Strings that run `touch pwned-N` if a shell ever interprets them.
const HOSTILE: &[&str] = &[
    "$(touch pwned-1)",
    "`touch pwned-2`",
    "'; touch pwned-3; echo '",
    "\"; touch pwned-4; echo \"",
    "x\ntouch pwned-5",
    "a && touch pwned-6 || touch pwned-6b",
    "$(touch${IFS}pwned-7)",
    "; touch pwned-8 #",
    "\\'$(touch pwned-9)\\'",
    "|| touch pwned-10 |",
    "-n",
    "",
    "*",
];

fn assert_not_pwned(repo: &Repo) {
    let pwned: Vec<String> = std::fs::read_dir(repo.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("pwned"))
        .collect();
    assert!(pwned.is_empty(), "shell code ran: {pwned:?}");
}

#[test]
fn hostile_inputs_are_data() {
    for (k, value) in HOSTILE.iter().enumerate() {
        let repo = Repo::new().workflow(
            "inj",
            r#"inputs:
  x: { required: true }
nodes:
  - id: echo
    bash: printf '%s' {{inputs.x}}
  - id: env
    bash: printf '%s' "$REINS_INPUT_X"
  - id: cond
    when: "{{inputs.x}}"
    bash: printf '%s|' {{inputs.x}} {{inputs.x}}
"#,
        );
        let out = repo
            .reins(["run", "inj", "--input"])
            .arg(format!("x={value}"))
            .run();
        out.code(0);
        assert_not_pwned(&repo);
        let run = repo.the_run();
        let expect = value.trim_end_matches('\n');
        assert_eq!(
            repo.node(&run, "echo")["output"],
            expect,
            "case {k}: {value:?}"
        );
        assert_eq!(
            repo.node(&run, "env")["output"],
            expect,
            "case {k}: {value:?}"
        );
    }
}

#[test]
fn hostile_node_outputs_are_data_downstream() {
    let mut payload = String::new();
    for h in HOSTILE {
        payload.push_str(h);
        payload.push('\n');
    }
    let repo = Repo::new()
        .workflow(
            "inj",
            r#"nodes:
  - id: evil
    bash: cat payload.txt
  - id: json
    bash: |
      printf '{"cmd": "$(touch pwned-json)", "q": "\u0027; touch pwned-q; \u0027"}'
  - id: reuse
    depends_on: [evil]
    bash: printf '%s' {{nodes.evil.output}}
  - id: reuse-env
    depends_on: [evil]
    bash: printf '%s' "$REINS_NODE_EVIL_OUTPUT"
  - id: reuse-json
    depends_on: [json]
    env:
      CMD: "{{nodes.json.json.cmd}}"
    bash: printf '%s|%s|%s' {{nodes.json.json.cmd}} {{nodes.json.json.q}} "$CMD"
"#,
        )
        .file("payload.txt", &payload);
    repo.reins(["run", "inj"]).run().code(0);
    assert_not_pwned(&repo);
    let run = repo.the_run();
    let expect = payload.trim_end_matches('\n');
    assert_eq!(repo.node(&run, "reuse")["output"], expect);
    assert_eq!(repo.node(&run, "reuse-env")["output"], expect);
    assert_eq!(
        repo.node(&run, "reuse-json")["output"],
        "$(touch pwned-json)|'; touch pwned-q; '|$(touch pwned-json)"
    );
}
