//! Property tests: whatever text a workflow file holds, loading and validating it never
//! panics, and every diagnostic points inside the file, on character boundaries.
//!
//! Two generators: arbitrary strings (mostly YAML syntax errors), and random workflow-like
//! documents built from the real key lists, junk keys, templates and dependencies among the
//! generated ids (these get past the parser and exercise the decoder and validator).
//! The default case count keeps CI fast; set `PROPTEST_CASES` for a longer run.

use std::path::PathBuf;

use proptest::prelude::*;
use proptest::test_runner::Config;
use reins::diagnostic::{render_all, Diagnostic, Format};
use reins::source::SourceFile;
use reins::workflow::command_file::DirCommands;
use reins::workflow::decode::{
    APPROVAL_KEYS, DEFAULTS_KEYS, INPUT_KEYS, KIND_KEYS, LOOP_KEYS, NODE_KEYS, PROFILE_KEYS,
    WORKFLOW_KEYS,
};
use reins::workflow::load_source;
use reins::workflow::validate::validate;

/// Cases per property unless `PROPTEST_CASES` says otherwise.
const DEFAULT_CASES: u32 = 512;

fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    Config {
        cases,
        // Shrinking a long YAML text is slow and the failing input is printed anyway.
        max_shrink_iters: 256,
        ..Config::default()
    }
}

/// Loads, validates and renders `text` in every format, and checks every span.
fn check(text: &str) -> Result<(), TestCaseError> {
    let file = SourceFile::new("fuzz.yaml", text);
    let loaded = load_source(file);
    let commands = DirCommands {
        dirs: vec![PathBuf::from("tests/data/invalid/commands")],
    };
    let diags = validate(&loaded, &commands);
    for d in &diags {
        check_diagnostic(d)?;
    }
    for format in [Format::Human, Format::Json, Format::Github] {
        let out = render_all(&diags, format, false);
        if !diags.is_empty() {
            prop_assert!(!out.is_empty());
        }
        if format == Format::Json {
            let parsed: serde_json::Value = serde_json::from_str(&out)
                .map_err(|e| TestCaseError::fail(format!("bad JSON output: {e}")))?;
            prop_assert_eq!(parsed.as_array().map(Vec::len), Some(diags.len()));
        }
    }
    let _ = render_all(&diags, Format::Human, true);
    Ok(())
}

fn check_diagnostic(d: &Diagnostic) -> Result<(), TestCaseError> {
    let text = &d.file.text;
    prop_assert!(!d.message.is_empty(), "empty message for {}", d.code);
    prop_assert!(!d.code.is_empty());
    for label in &d.labels {
        let (start, end) = (label.span.start, label.span.end());
        prop_assert!(
            end <= text.len(),
            "{} span {}..{} outside a file of {} bytes: {}",
            d.code,
            start,
            end,
            text.len(),
            d.message
        );
        prop_assert!(
            text.is_char_boundary(start) && text.is_char_boundary(end),
            "{} span {}..{} not on a char boundary: {}",
            d.code,
            start,
            end,
            d.message
        );
    }
    Ok(())
}

// ---- generators of workflow-like YAML ----

/// Keys a node or document might have: the real ones, near misses, and junk.
fn key(real: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![
        6 => proptest::sample::select(real).prop_map(str::to_string),
        1 => proptest::sample::select(NODE_KEYS).prop_map(str::to_string),
        1 => proptest::sample::select(LOOP_KEYS).prop_map(str::to_string),
        1 => "[a-z_]{1,12}",
        1 => proptest::sample::select(real).prop_map(|k| format!("{k}x")),
    ]
}

/// A template: text with random `{{...}}`, some valid and some not.
fn template(ids: Vec<String>) -> impl Strategy<Value = String> {
    let id = if ids.is_empty() {
        Just("x".to_string()).boxed()
    } else {
        proptest::sample::select(ids).boxed()
    };
    let piece = prop_oneof![
        "[a-zA-Z .,é€🦀-]{0,8}",
        id.clone().prop_map(|i| format!("{{{{nodes.{i}.output}}}}")),
        id.clone()
            .prop_map(|i| format!("{{{{nodes.{i}.json.a.b}}}}")),
        id.prop_map(|i| format!("{{{{eq nodes.{i}.status 'success'}}}}")),
        "[a-z]{1,6}".prop_map(|n| format!("{{{{inputs.{n}}}}}")),
        "[a-z]{1,6}".prop_map(|n| format!("{{{{{{inputs.{n}}}}}}}")),
        Just("{{artifacts}}".to_string()),
        Just("{{output}}".to_string()),
        Just("{{loop.iteration}}".to_string()),
        Just("{{args.focus}}".to_string()),
        Just("{{#if inputs.a}}yes{{else}}no{{/if}}".to_string()),
        Just("{{#each nodes}}{{this}}{{/each}}".to_string()),
        Just("{{contains output 'DONE'}}".to_string()),
        "[a-z]{1,8}".prop_map(|h| format!("{{{{{h} output 'x'}}}}")),
        "[{}#/a-z. é]{1,10}".prop_map(|s| format!("{{{{{s}")),
        Just("{{".to_string()),
        Just("}}".to_string()),
        Just("\\{{x}}".to_string()),
    ];
    proptest::collection::vec(piece, 0..5).prop_map(|v| v.concat())
}

/// A scalar value as YAML text.
fn scalar(ids: Vec<String>) -> impl Strategy<Value = String> {
    prop_oneof![
        8 => template(ids).prop_map(|t| yaml_quote(&t)),
        1 => template(vec![]).prop_map(|t| format!("|\n{}", indent_block(&t))),
        1 => Just("true".to_string()),
        1 => Just("yes".to_string()),
        1 => Just("~".to_string()),
        1 => Just("''".to_string()),
        1 => (-3i64..20).prop_map(|n| n.to_string()),
        1 => Just("99999999999999999999999".to_string()),
        1 => Just("1.5".to_string()),
        1 => "[0-9]{1,3}(ms|s|m|h|d|x|)".prop_map(|s| s),
        1 => Just("[a, b]".to_string()),
        1 => Just("{a: 1}".to_string()),
    ]
}

fn yaml_quote(s: &str) -> String {
    match s.len() % 5 {
        0 | 1 => format!("'{}'", s.replace('\'', "''")),
        2 | 3 => serde_json::to_string(s).expect("a string serialises"),
        _ => {
            // Plain when that is safe, so spans of unquoted values get exercised too.
            let plain = s.replace('\n', " ");
            let risky = plain.trim().is_empty()
                || plain.starts_with(|c: char| "{[&*!|>'\"%@`#-?:, ".contains(c))
                || plain.ends_with([' ', ':'])
                || plain.contains(": ")
                || plain.contains(" #");
            if risky {
                serde_json::to_string(s).expect("a string serialises")
            } else {
                plain
            }
        }
    }
}

fn indent_block(s: &str) -> String {
    let body: Vec<String> = s.lines().map(|l| format!("      {l}")).collect();
    if body.is_empty() {
        "      x".into()
    } else {
        body.join("\n")
    }
}

/// One node as YAML lines (indented under `nodes:`).
fn node(ids: Vec<String>, me: usize) -> impl Strategy<Value = String> {
    let own_id = ids.get(me).cloned().unwrap_or_else(|| "n".into());
    let dep = proptest::sample::select(if ids.is_empty() {
        vec!["n".to_string()]
    } else {
        ids.clone()
    });
    let deps = proptest::collection::vec(prop_oneof![4 => dep, 1 => "[a-z]{1,5}"], 0..4);
    let kind = proptest::sample::select(KIND_KEYS);
    let loop_key = key(LOOP_KEYS);
    let approval_key = key(APPROVAL_KEYS);
    let fields = proptest::collection::vec((key(NODE_KEYS), scalar(ids.clone())), 0..5);
    let loop_fields = proptest::collection::vec((loop_key, scalar(ids.clone())), 0..5);
    let approval_fields = proptest::collection::vec((approval_key, scalar(ids.clone())), 0..3);
    let body = scalar(ids.clone());
    let id_choice = prop_oneof![
        8 => Just(own_id),
        1 => Just("bad id".to_string()),
        1 => Just(String::new()),
    ];
    let kinds = proptest::collection::vec(kind, 0..3);
    (
        id_choice,
        deps,
        kinds,
        body,
        fields,
        loop_fields,
        approval_fields,
    )
        .prop_map(
            |(id, deps, kinds, body, fields, loop_fields, approval_fields)| {
                let mut out = String::new();
                let mut taken = vec!["id".to_string(), "depends_on".to_string()];
                let kinds = unique(
                    kinds.into_iter().map(|k| (k.to_string(), ())).collect(),
                    &mut taken,
                );
                let fields = unique(fields, &mut taken);
                let loop_fields = unique(loop_fields, &mut vec![]);
                let approval_fields = unique(approval_fields, &mut vec![]);
                if id.is_empty() {
                    out.push_str("  - depends_on: [");
                } else {
                    out.push_str(&format!("  - id: {id}\n    depends_on: ["));
                }
                out.push_str(&deps.join(", "));
                out.push_str("]\n");
                for (kind, ()) in kinds {
                    match kind.as_str() {
                        "loop" => {
                            out.push_str("    loop:\n");
                            for (k, v) in &loop_fields {
                                out.push_str(&format!("      {k}: {}\n", reindent(v, 2)));
                            }
                        }
                        "approval" if !approval_fields.is_empty() => {
                            out.push_str("    approval:\n");
                            for (k, v) in &approval_fields {
                                out.push_str(&format!("      {k}: {}\n", reindent(v, 2)));
                            }
                        }
                        other => out.push_str(&format!("    {other}: {body}\n")),
                    }
                }
                for (k, v) in fields {
                    out.push_str(&format!("    {k}: {v}\n"));
                }
                out
            },
        )
}

/// Drops entries whose key is already taken, so most documents get past the parser's
/// duplicate-key check and reach the decoder.
fn unique<T>(entries: Vec<(String, T)>, taken: &mut Vec<String>) -> Vec<(String, T)> {
    let mut out = Vec::new();
    for (k, v) in entries {
        if !taken.contains(&k) {
            taken.push(k.clone());
            out.push((k, v));
        }
    }
    out
}

fn reindent(value: &str, extra: usize) -> String {
    value.replace('\n', &format!("\n{}", " ".repeat(extra)))
}

/// A whole workflow-like document.
fn document() -> impl Strategy<Value = String> {
    proptest::collection::vec("[a-z]{1,4}", 1..7)
        .prop_flat_map(|ids| {
            let nodes: Vec<_> = (0..ids.len()).map(|i| node(ids.clone(), i)).collect();
            let top = proptest::collection::vec((key(WORKFLOW_KEYS), scalar(ids.clone())), 0..3);
            let inputs =
                proptest::collection::vec(("[a-z]{1,6}", key(INPUT_KEYS), scalar(vec![])), 0..3);
            let defaults = proptest::collection::vec((key(DEFAULTS_KEYS), scalar(vec![])), 0..3);
            let agents =
                proptest::collection::vec(("[a-z]{1,6}", key(PROFILE_KEYS), scalar(vec![])), 0..3);
            (
                nodes,
                top,
                inputs,
                defaults,
                agents,
                proptest::bool::weighted(0.05),
            )
        })
        .prop_map(|(nodes, top, inputs, defaults, agents, broken)| {
            let mut out = String::new();
            let top = unique(
                top,
                &mut vec![
                    "inputs".into(),
                    "defaults".into(),
                    "agents".into(),
                    "nodes".into(),
                ],
            );
            let defaults = unique(defaults, &mut vec![]);
            for (k, v) in top {
                if k != "nodes" {
                    out.push_str(&format!("{k}: {}\n", reindent(&v, 0)));
                }
            }
            if !inputs.is_empty() {
                out.push_str("inputs:\n");
                for (name, (k, v)) in unique(
                    inputs.into_iter().map(|(n, k, v)| (n, (k, v))).collect(),
                    &mut vec![],
                ) {
                    out.push_str(&format!("  {name}:\n    {k}: {}\n", reindent(&v, 2)));
                }
            }
            if !defaults.is_empty() {
                out.push_str("defaults:\n");
                for (k, v) in defaults {
                    out.push_str(&format!("  {k}: {}\n", reindent(&v, 0)));
                }
            }
            if !agents.is_empty() {
                out.push_str("agents:\n");
                for (name, (k, v)) in unique(
                    agents.into_iter().map(|(n, k, v)| (n, (k, v))).collect(),
                    &mut vec![],
                ) {
                    out.push_str(&format!("  {name}:\n    {k}: {}\n", reindent(&v, 2)));
                }
            }
            out.push_str("nodes:\n");
            for n in nodes {
                out.push_str(&n);
            }
            if broken {
                // One syntax error somewhere: the loader must still say where.
                let at = out.len() / 2;
                let at = (0..=at)
                    .rev()
                    .find(|&i| out.is_char_boundary(i))
                    .unwrap_or(0);
                out.insert_str(at, "\t[{'");
            }
            out
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        check(&text)?;
    }

    #[test]
    fn yaml_like_text_never_panics(text in "([a-z_]{0,6}(: |:|- |\n|  |\\{|\\}|\\[|\\]|, |'|\"|&a |\\*a|!|#|\\|)){0,40}") {
        check(&text)?;
    }

    #[test]
    fn workflow_like_documents_never_panic(text in document()) {
        check(&text)?;
    }
}

/// Inputs that once broke something, kept as plain tests.
#[test]
fn known_tricky_inputs() {
    for text in [
        "",
        "\u{feff}",
        "nodes:\n  - id: a\n    prompt: \"{{#if x}}€€€\"\n",
        "nodes:\n  - id: a\n    bash: é{{\n",
        "nodes: [{id: a, bash: '{{nodes.a.output}}', depends_on: [a]}]\n",
        "nodes:\n  - id: a\n    bash: x\n    depends_on: [b]\n  - id: b\n    bash: y\n    depends_on: [a]\n",
        "&a [*a]",
        "a: &x 1\nb: *x\n",
        "nodes:\n\t- id: a\n",
        "? [a]\n: b\n",
        "nodes:\n  - id: a\n    loop: {prompt: x, until: '{{output', max_iterations: 1}\n",
    ] {
        check(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
    }
}
