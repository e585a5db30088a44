//! The JSON Schema (`reins schema`) against the loader: every workflow in the repository
//! validates, wrong files are rejected, the loader and the schema agree on a table of cases, and
//! the decoder's key lists are exactly the schema's properties.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use reins::source::SourceFile;
use reins::workflow::decode::{self, *};
use reins::workflow::schema::workflow_schema;
use reins::workflow::yaml::{self, Value as Y};
use serde_json::{json, Value};

/// A YAML document as JSON, the way an editor's schema validator sees it.
fn to_json(node: &yaml::Node) -> Value {
    match &node.value {
        Y::Null => Value::Null,
        Y::Bool(b) => json!(b),
        Y::Int(i) => json!(i),
        Y::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
        Y::Str(s) => json!(s),
        Y::Seq(items) => items.iter().map(to_json).collect(),
        Y::Map(entries) => Value::Object(
            entries
                .iter()
                .map(|(k, v)| (k.value.clone(), to_json(v)))
                .collect(),
        ),
    }
}

fn validator() -> jsonschema::Validator {
    jsonschema::validator_for(&workflow_schema()).expect("the schema compiles")
}

/// The schema's complaints about a YAML text (empty: valid).
fn schema_errors(validator: &jsonschema::Validator, text: &str) -> Vec<String> {
    let file = SourceFile::new("t.yaml", text);
    let root = yaml::parse(&file).expect("test YAML parses");
    let instance = to_json(&root);
    validator
        .iter_errors(&instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

/// The decoder's errors for a YAML text (empty: valid).
fn loader_errors(text: &str) -> Vec<String> {
    let file = SourceFile::new("t.yaml", text);
    let root = yaml::parse(&file).expect("test YAML parses");
    decode::decode(&file, &root, "t")
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| format!("{}: {}", d.code, d.message))
        .collect()
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `*.yaml`/`*.yml` below `dir` (recursively) whose path passes `keep`.
fn yaml_files(dir: &Path, keep: &dyn Fn(&Path) -> bool, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            yaml_files(&path, keep, out);
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) && keep(&path)
        {
            out.push(path);
        }
    }
}

#[test]
fn schema_is_a_valid_draft_07_schema() {
    let schema = workflow_schema();
    assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");
    jsonschema::meta::validate(&schema).expect("the schema is a valid JSON Schema");
    // Nothing editors ignore: the objects are closed with `additionalProperties`.
    let text = schema.to_string();
    assert!(!text.contains("unevaluatedProperties"), "{text}");
}

#[test]
fn every_workflow_in_the_repo_validates() {
    let root = root();
    let mut files = Vec::new();
    let all = |_: &Path| true;
    yaml_files(&root.join("examples"), &all, &mut files);
    yaml_files(&root.join("workflows"), &all, &mut files);
    yaml_files(&root.join(".workflows"), &all, &mut files);
    // Test data: files (or folders) named `valid*`, and the bundled-embedding fixture.
    let valid = |p: &Path| {
        p.strip_prefix(root.join("tests/data"))
            .map(|rel| {
                rel.components().any(|c| {
                    let c = c.as_os_str().to_string_lossy();
                    c.starts_with("valid") || c == "bundled"
                })
            })
            .unwrap_or(false)
    };
    yaml_files(&root.join("tests/data"), &valid, &mut files);
    assert!(
        files.iter().any(|f| f.starts_with(root.join("examples"))),
        "the examples are found"
    );
    let validator = validator();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let errors = schema_errors(&validator, &text);
        assert!(errors.is_empty(), "{}: {errors:#?}", file.display());
        // And `reins validate` accepts it.
        let (_, diags) = reins::workflow::validate::check_file(file);
        let errors: Vec<_> = diags.iter().filter(|d| d.is_error()).collect();
        assert!(errors.is_empty(), "{}: {errors:#?}", file.display());
    }
}

/// Cases where the loader and the schema must give the same verdict.
const AGREE: &[(&str, bool)] = &[
    ("nodes: [{id: a, bash: echo}]", true),
    ("name: x\ndescription: d\nnodes: [{id: a, bash: echo}]", true),
    // Scalars read as strings; one string is a list of one; nothing is an empty list.
    ("nodes: [{id: a, bash: 3}, {id: b, bash: true, depends_on: a}]", true),
    ("nodes: [{id: a, bash: echo, depends_on: ~, outputs: [x.md]}]", true),
    ("inputs: {issue: ~, base: {default: 3, required: false}}\nnodes: [{id: a, bash: echo}]", true),
    ("env: {A: 1, B: x}\nnodes: [{id: a, bash: echo, env: {C: y}}]", true),
    ("defaults: {agent: claude, timeout: 30m, idle_timeout: 5m, retries: 1, model: opus, shell: sh}\nnodes: [{id: a, prompt: hi}]", true),
    ("concurrency: 4\nisolation: worktree\nnodes: [{id: a, bash: echo}]", true),
    ("agents: {rev: {use: claude, model: opus, allowed_tools: [Read], disallowed_tools: Bash, max_turns: 3, args: [--x], env: {A: b}, permission_mode: plan, program: claude}}\nnodes: [{id: a, prompt: hi, agent: rev}]", true),
    ("nodes: [{id: a, approval: Go?}, {id: b, approval: {message: Go?, timeout: 1h}}]", true),
    ("nodes: [{id: a, command: plan, args: {issue: '1'}}]", true),
    ("nodes: [{id: a, loop: {prompt: go, until: done, max_iterations: 3, fresh: true}}]", true),
    ("nodes: [{id: a, loop: {bash: make, until_bash: test -f x, max_iterations: 1}}]", true),
    ("nodes: [{id: a, bash: x, when: '{{inputs.x}}', trigger: all_done, timeout: 90s, retries: 2, cwd: sub, continue_on_error: true, session: impl, model: m, agent: claude, allowed_tools: Read, max_turns: 2, shell: zsh, idle_timeout: 1m}]", true),
    ("nodes: [{id: a, bash: 'echo {{item}}', for_each: [x, 2, {n: 1}], key: '{{item_index}}', max_parallel: 2, min_success: 1}]", true),
    ("nodes: [{id: a, bash: x, for_each: '{{inputs.x}}'}]", true),
    ("nodes: [{id: a, bash: x, for_each: {files: ['*.rs'], gitignored: true}}, {id: b, bash: x, for_each: {files: '*.md'}}]", true),
    // Wrong.
    ("nodes: [{id: a, bash: x, for_each: {files: [x], hidden: true}}]", false),
    ("nodes: [{id: a, bash: x, for_each: {gitignored: true}}]", false),
    ("nodes: [{id: a, bash: x, for_each: ~}]", false),
    ("nodes: [{id: a, bash: x, for_each: [x], max_parallel: 0}]", false),
    ("nodes: [{id: a, bash: x, for_each: [x], min_success: 0}]", false),
    ("nodes: [{id: a, bash: echo}]\nnodez: []", false),
    ("description: x", false),
    ("nodes: [{id: a, bash: echo, depend_on: [b]}]", false),
    ("nodes: [{id: a, bash: echo, prompt: hi}]", false),
    ("nodes: [{id: a}]", false),
    ("nodes: [{bash: echo}]", false),
    ("nodes: [{id: a, bash: echo, timeout: 30}]", false),
    ("nodes: [{id: a, bash: echo, timeout: soon}]", false),
    ("nodes: [{id: a, bash: echo, trigger: always}]", false),
    ("nodes: [{id: a, bash: echo, retries: -1}]", false),
    ("nodes: [{id: a, bash: echo, continue_on_error: yes}]", false),
    ("nodes: [{id: a, prompt: x, max_turns: 0}]", false),
    ("nodes: [{id: a, bash: echo, when: ~}]", false),
    ("nodes: [{id: 'a b', bash: echo}]", false),
    ("nodes: [{id: a, bash: echo, session: 'x y'}]", false),
    ("nodes: [{id: a, approval: {timeout: 1h}}]", false),
    ("nodes: [{id: a, approval: {message: x, until: y}}]", false),
    ("nodes: [{id: a, loop: {prompt: go, until: done}}]", false),
    ("nodes: [{id: a, loop: {prompt: go, max_iterations: 2}}]", false),
    ("nodes: [{id: a, loop: {prompt: go, bash: x, until: d, max_iterations: 2}}]", false),
    ("nodes: [{id: a, loop: {approval: go, until: d, max_iterations: 2}}]", false),
    ("nodes: [{id: a, loop: {prompt: go, until: d, max_iterations: 0}}]", false),
    ("nodes: [{id: a, loop: {prompt: go, until: d, max_iterations: 2}, until: d}]", false),
    ("inputs: {x: {required: true, optional: false}}\nnodes: [{id: a, bash: echo}]", false),
    ("defaults: {timeout: 1h, agnet: x}\nnodes: [{id: a, bash: echo}]", false),
    ("agents: {r: {use: claude, tools: [Read]}}\nnodes: [{id: a, bash: echo}]", false),
    ("concurrency: 0\nnodes: [{id: a, bash: echo}]", false),
    ("isolation: container\nnodes: [{id: a, bash: echo}]", false),
    ("nodes: {a: {bash: echo}}", false),
    ("nodes: [{id: a, bash: echo, env: [A]}]", false),
];

#[test]
fn schema_and_loader_agree() {
    let validator = validator();
    let mut disagreements = Vec::new();
    for (text, valid) in AGREE {
        let schema = schema_errors(&validator, text);
        let loader = loader_errors(text);
        if schema.is_empty() != *valid || loader.is_empty() != *valid {
            disagreements.push(format!(
                "{text}\n  expected valid={valid}\n  schema: {schema:?}\n  loader: {loader:?}"
            ));
        }
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}

fn property_names(schema: &Value, pointer: &str) -> BTreeSet<String> {
    schema
        .pointer(pointer)
        .and_then(Value::as_object)
        .unwrap_or_else(|| panic!("no {pointer} in the schema"))
        .keys()
        .cloned()
        .collect()
}

fn set(lists: &[&[&str]]) -> BTreeSet<String> {
    lists
        .iter()
        .flat_map(|l| l.iter().map(|s| s.to_string()))
        .collect()
}

/// The kinds a `oneOf: [{required: [K]}, ...]` requires exactly one of.
fn one_of_required(schema: &Value, pointer: &str) -> BTreeSet<String> {
    schema
        .pointer(pointer)
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("no {pointer} in the schema"))
        .iter()
        .map(|b| b["required"][0].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn decoder_key_lists_are_the_schema_properties() {
    let s = workflow_schema();
    let d = "/definitions";
    assert_eq!(property_names(&s, "/properties"), set(&[WORKFLOW_KEYS]));
    assert_eq!(
        property_names(&s, &format!("{d}/Node/properties")),
        set(&[NODE_KEYS, KIND_KEYS])
    );
    assert_eq!(
        one_of_required(&s, &format!("{d}/Node/oneOf")),
        set(&[KIND_KEYS])
    );
    assert_eq!(
        property_names(&s, &format!("{d}/LoopSpec/properties")),
        set(&[LOOP_KEYS, LOOP_BODY_KEYS])
    );
    assert_eq!(
        one_of_required(&s, &format!("{d}/LoopSpec/oneOf")),
        set(&[LOOP_BODY_KEYS])
    );
    assert_eq!(
        property_names(&s, &format!("{d}/Input/properties")),
        set(&[INPUT_KEYS])
    );
    assert_eq!(
        property_names(&s, &format!("{d}/Defaults/properties")),
        set(&[DEFAULTS_KEYS])
    );
    assert_eq!(
        property_names(&s, &format!("{d}/AgentProfile/properties")),
        set(&[PROFILE_KEYS])
    );
    assert_eq!(
        property_names(&s, &format!("{d}/Approval/properties")),
        set(&[APPROVAL_KEYS])
    );
    assert_eq!(
        property_names(&s, &format!("{d}/FileSet/properties")),
        set(&[FILE_SET_KEYS])
    );
    // Every object in the schema is closed, so an unknown key is an error in the editor too.
    for (name, def) in s["definitions"].as_object().unwrap() {
        if def.get("properties").is_some() {
            assert_eq!(def["additionalProperties"], json!(false), "{name}");
        }
    }
}

#[test]
fn reins_schema_prints_the_schema() {
    let out = support::cli::reins().arg("schema").run();
    assert_eq!(out.code, 0, "{}", out.transcript());
    let printed: Value = serde_json::from_str(&out.stdout).expect("JSON on stdout");
    assert_eq!(printed, workflow_schema());
    assert!(out.stderr.is_empty(), "{}", out.stderr);
}

#[test]
fn the_language_reference_documents_every_key() {
    use reins::workflow::command_file::{ARG_KEYS, FRONTMATTER_KEYS};
    let doc = std::fs::read_to_string(root().join("docs/workflow-language.md")).unwrap();
    let lists: &[&[&str]] = &[
        WORKFLOW_KEYS,
        INPUT_KEYS,
        DEFAULTS_KEYS,
        PROFILE_KEYS,
        KIND_KEYS,
        NODE_KEYS,
        APPROVAL_KEYS,
        LOOP_BODY_KEYS,
        LOOP_KEYS,
        FILE_SET_KEYS,
        FRONTMATTER_KEYS,
        ARG_KEYS,
    ];
    let missing: Vec<&str> = lists
        .iter()
        .flat_map(|l| l.iter().copied())
        .filter(|k| !doc.contains(&format!("| `{k}` |")) && !doc.contains(&format!("### `{k}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "not in docs/workflow-language.md: {missing:?}"
    );
}
