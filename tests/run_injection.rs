//! Hostile inputs, node outputs and agent replies never run as shell code: every `{{value}}`
//! in a bash node reaches the shell as an environment variable, never as script text, and
//! where not even a variable is safe `validate` refuses the script. The data-driven suite
//! reads `tests/data/injection/` (see its README).

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

/// One place a value can stand in a bash script (`tests/data/injection/contexts.yaml`).
#[derive(serde::Deserialize)]
struct Context {
    name: String,
    bash: String,
    #[serde(default)]
    expect: Option<String>,
    #[serde(default)]
    refused: bool,
}

/// One hostile value (`tests/data/injection/payloads.json`).
#[derive(serde::Deserialize)]
struct Payload {
    name: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    hex: Option<String>,
    #[serde(default)]
    repeat: Option<usize>,
}

impl Payload {
    fn bytes(&self) -> Vec<u8> {
        let one = match (&self.text, &self.hex) {
            (Some(t), _) => t.as_bytes().to_vec(),
            (None, Some(h)) => (0..h.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&h[i..i + 2], 16).expect("hex"))
                .collect(),
            (None, None) => panic!("payload {} has neither text nor hex", self.name),
        };
        one.repeat(self.repeat.unwrap_or(1))
    }
}

fn injection_data() -> (Vec<Context>, Vec<Payload>) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/injection");
    let contexts = std::fs::read_to_string(dir.join("contexts.yaml")).unwrap();
    let payloads = std::fs::read_to_string(dir.join("payloads.json")).unwrap();
    (
        serde_saphyr::from_str(&contexts).expect("contexts.yaml"),
        serde_json::from_str(&payloads).expect("payloads.json"),
    )
}

/// A YAML scalar holding `s` exactly (JSON strings are YAML double-quoted scalars).
fn scalar(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// What a node sees of a payload that came out of a bash node: trailing newlines trimmed,
/// bytes that are not UTF-8 replaced.
fn as_output(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .trim_end_matches(['\n', '\r'])
        .to_string()
}

#[test]
fn every_refused_context_is_refused_by_validate_and_run() {
    let (contexts, _) = injection_data();
    for c in contexts.iter().filter(|c| c.refused) {
        let script = c.bash.replace("{{V}}", "{{inputs.v}}");
        let repo = Repo::new().workflow(
            "ctx",
            &format!(
                "inputs:\n  v: {{ required: true }}\nnodes:\n  - id: a\n    bash: {}\n",
                scalar(&script)
            ),
        );
        let out = repo.reins(["validate", ".workflows/ctx.yaml"]).run();
        assert_eq!(
            out.code, 2,
            "{}: validate must refuse\n{}",
            c.name, out.stdout
        );
        assert!(
            out.stdout.contains("[unsafe-substitution]")
                || out.stdout.contains("in a shell script"),
            "{}: {}",
            c.name,
            out.stdout
        );
        let out = repo
            .reins(["run", "ctx", "--input", "v=$(touch PWN)"])
            .run();
        assert_eq!(out.code, 2, "{}: run must refuse too", c.name);
        assert_not_pwned_named(&repo, &c.name);
    }
}

fn assert_not_pwned_named(repo: &Repo, case: &str) {
    assert!(!repo.exists("PWN"), "{case}: a value ran as shell code");
}

#[test]
fn every_payload_in_every_context_is_only_its_literal_value() {
    let (contexts, payloads) = injection_data();
    let literal: Vec<&Context> = contexts.iter().filter(|c| !c.refused).collect();
    for p in &payloads {
        let bytes = p.bytes();
        let has_nul = bytes.contains(&0);
        // An argument is a C string of at most 128 KiB, and text: only such values are inputs.
        let as_input = std::str::from_utf8(&bytes)
            .ok()
            .filter(|s| !has_nul && s.len() < 100 * 1024)
            .map(str::to_string);
        let mut yaml = String::from(
            "inputs:\n  v: { default: \"\" }\nnodes:\n  - id: src\n    bash: cat payload.bin\n  - id: bystander\n    depends_on: [src]\n    bash: printf ok\n",
        );
        for c in &literal {
            if as_input.is_some() {
                yaml.push_str(&format!(
                    "  - id: in-{0}\n    env: {{ OUT: out/in-{0}.bin }}\n    bash: {1}\n",
                    c.name,
                    scalar(&c.bash.replace("{{V}}", "{{inputs.v}}"))
                ));
            }
            yaml.push_str(&format!(
                "  - id: node-{0}\n    depends_on: [src]\n    env: {{ OUT: out/node-{0}.bin }}\n    bash: {1}\n",
                c.name,
                scalar(&c.bash.replace("{{V}}", "{{nodes.src.output}}"))
            ));
        }
        let repo = Repo::new().workflow("inj", &yaml).file("out/.keep", "");
        std::fs::write(repo.join("payload.bin"), &bytes).unwrap();
        let mut cmd = repo.reins(["run", "inj"]);
        if let Some(v) = &as_input {
            cmd = cmd.arg("--input").arg(format!("v={v}"));
        }
        let out = cmd.run();
        assert_not_pwned_named(&repo, &p.name);
        let run = repo.the_run();
        assert_eq!(
            repo.node(&run, "bystander")["status"],
            "success",
            "{}",
            p.name
        );
        if has_nul {
            // Recorded, and failing only the nodes that read it, naming it.
            assert_eq!(out.code, 1, "{}: {}", p.name, out.stderr);
            assert_eq!(repo.node(&run, "src")["status"], "success");
            for c in &literal {
                let node = repo.node(&run, &format!("node-{}", c.name));
                assert_eq!(node["status"], "failed", "{}", c.name);
                let error = node["error"].as_str().unwrap_or_default();
                assert!(
                    error.contains("NUL") && error.contains("node `src`"),
                    "{}: {error}",
                    c.name
                );
            }
            let kept = repo
                .run_dir(&run)
                .join("nodes/bystander/values/REINS_NODE_SRC_OUTPUT");
            assert_eq!(
                std::fs::read(&kept).expect("the value is passed through a file"),
                as_output(&bytes).as_bytes()
            );
            continue;
        }
        assert_eq!(out.code, 0, "{}: {}\n{}", p.name, out.stdout, out.stderr);
        let from_node = as_output(&bytes);
        for c in &literal {
            let expect = c
                .expect
                .as_deref()
                .expect("a literal case says what it expects");
            let mut sources = vec![("node", from_node.clone())];
            if let Some(v) = &as_input {
                sources.push(("in", v.clone()));
            }
            for (source, value) in sources {
                let got = std::fs::read(repo.join(&format!("out/{source}-{}.bin", c.name)))
                    .unwrap_or_else(|e| panic!("{} / {} / {source}: {e}", p.name, c.name));
                let mut want = expect.replace("{V}", &value);
                if c.name == "command-substitution" {
                    // `$(...)` drops trailing newlines, of the value too.
                    let v = value.trim_end_matches('\n');
                    want = expect.replace("{V}", v);
                }
                assert!(
                    got == want.as_bytes(),
                    "{} / {} / {source}: the script saw {:?}, not {:?}",
                    p.name,
                    c.name,
                    String::from_utf8_lossy(&got[..got.len().min(200)]),
                    &want[..want.len().min(200)]
                );
            }
        }
    }
}

#[test]
fn agent_replies_are_hostile_values_too() {
    let Some(claude) = support::require_claude() else {
        return;
    };
    let (contexts, payloads) = injection_data();
    let literal: Vec<&Context> = contexts.iter().filter(|c| !c.refused).collect();
    let chosen = [
        "newline-ends-a-comment",
        "single-quote",
        "subscript",
        "heredoc-delimiter",
        "ansi-c",
        "backticks",
    ];
    let api = support::MockApi::start();
    let mut yaml = format!(
        "agents:\n  claude: {{program: {}}}\nnodes:\n",
        scalar(&claude.display().to_string())
    );
    let mut replies = Vec::new();
    for (k, p) in payloads
        .iter()
        .filter(|p| chosen.contains(&p.name.as_str()))
        .enumerate()
    {
        let reply = String::from_utf8(p.bytes()).unwrap();
        api.rule(&format!("MARK-{k}-"), [support::Turn::text(reply.clone())]);
        yaml.push_str(&format!("  - {{id: ask{k}, prompt: 'MARK-{k}- reply'}}\n"));
        for c in &literal {
            yaml.push_str(&format!(
                "  - id: use{k}-{0}\n    depends_on: [ask{k}]\n    env: {{ OUT: out/{k}-{0}.bin }}\n    bash: {1}\n",
                c.name,
                scalar(&c.bash.replace("{{V}}", &format!("{{{{nodes.ask{k}.output}}}}")))
            ));
        }
        replies.push((k, p.name.clone(), reply));
    }
    let repo = Repo::new().workflow("agents", &yaml).file("out/.keep", "");
    let home = repo.join(".claude-home");
    std::fs::create_dir_all(&home).unwrap();
    let mut cmd = repo
        .reins(["run", "agents"])
        .timeout(std::time::Duration::from_secs(300));
    for (key, value) in support::claude_env(&api, &home) {
        cmd = cmd.env(&key, &value);
    }
    let out = cmd.run();
    assert_not_pwned_named(&repo, "agent replies");
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    for (k, name, reply) in &replies {
        for c in &literal {
            let got = std::fs::read(repo.join(&format!("out/{k}-{}.bin", c.name))).unwrap();
            let want = c.expect.as_deref().unwrap().replace("{V}", reply);
            assert_eq!(
                String::from_utf8_lossy(&got),
                want,
                "{name} / {}: the script saw something else than the reply",
                c.name
            );
        }
    }
}
