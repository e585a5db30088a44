//! Fan-out: the items of a `for_each` node, their keys, and what the instances add up to.
//!
//! A fan-out node `ID` is expanded once, when its dependencies have settled and its trigger
//! rule and `when` let it run: its source becomes a list of [`Item`]s, each the instance
//! `ID[KEY]` (see [`instance_id`]). The list is recorded (`fan_out_expanded`) before any
//! instance starts, so a plain resume uses it rather than expanding again (`--from` expands
//! again). Everything here is pure but [`files`] (and so [`expand`]), which walks the working
//! tree: the scheduler runs [`expand`] off its driver, on a blocking thread.

use std::path::Path;

use serde_json::Value as Json;

use super::plan::Plan;
use crate::store::NodeStatus;
use crate::workflow::template::RenderError;
use crate::workflow::{FileSet, ForEach, TemplateField, MAX_ITEMS};

/// Why a fan-out has no items: the run records it as the fan-out's failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FanOutError {
    /// `for_each` was not valid (the loader reported it; `reins validate` says why).
    #[error("`for_each` is not valid (run `reins validate`)")]
    Invalid,
    /// The `for_each` template did not render.
    #[error("cannot render `for_each`: {0}")]
    Render(#[source] RenderError),
    /// The value a lone `{{path}}` names is not a list (nor text of one).
    #[error("`for_each` reads `{path}`, which is {what}, not a list")]
    NotAList {
        /// The path, like `nodes.plan.json.items`.
        path: String,
        /// What it is instead, like `a number`.
        what: &'static str,
    },
    /// The value a lone `{{path}}` names did not read back as JSON.
    #[error("cannot read `for_each` as JSON: {0}")]
    NotJson(String),
    /// A glob pattern is refused or does not parse.
    #[error("bad file pattern `{pattern}`: {why}")]
    BadPattern {
        /// The pattern.
        pattern: String,
        /// Why.
        why: String,
    },
    /// The patterns did not build into one set.
    #[error("bad file patterns: {0}")]
    BadPatterns(String),
    /// The working tree could not be listed.
    #[error("cannot list the files for `for_each`: {0}")]
    Walk(String),
    /// More than [`MAX_ITEMS`] items.
    #[error(
        "`for_each` gives {}{} items; a fan-out may have at most {MAX_ITEMS}",
        if *at_least { "more than " } else { "" },
        crate::workflow::validate::thousands(if *at_least { count - 1 } else { *count })
    )]
    TooMany {
        /// How many (at least, when `at_least`: a walk stops at the first one too many).
        count: usize,
        /// `count` is a lower bound.
        at_least: bool,
    },
    /// The `key:` of an item did not render.
    #[error("cannot render `key` of item {index}: {error}")]
    KeyRender {
        /// The item's index.
        index: usize,
        /// Why.
        #[source]
        error: RenderError,
    },
    /// A key that cannot name an instance (see [`key_problem`]).
    #[error(
        "the key of item {index}, {shown:?}, {why}; a key names the instance `ID[KEY]` and its folder, so it must be at most {MAX_KEY_LEN} bytes without `/`, `\\`, `..`, `[`, `]` or control characters"
    )]
    BadKey {
        /// The item's index.
        index: usize,
        /// The key's first 40 characters.
        shown: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The expansion panicked (a bug in reins).
    #[error("internal error: listing the items ended abnormally")]
    Panicked,
    /// The worker that lists the items for a Temporal run said why it could not: its message.
    #[error("{0}")]
    OnWorker(String),
    /// Two items with one key.
    #[error(
        "items {first} and {index} have the same key {key:?}; every instance needs its own key (set `key:` to a field that differs, or leave it out to use the index)"
    )]
    SameKey {
        /// The first item with it.
        first: usize,
        /// The second.
        index: usize,
        /// The key.
        key: String,
    },
}

/// The items of fan-out `node` of `plan`, with their keys: its list, its template rendered
/// against `context` (the fan-out's own context, without an item), or the files its globs
/// match under `root`. It may walk the working tree: run it where blocking is fine.
pub(crate) fn expand(
    plan: &Plan,
    node: usize,
    context: &Json,
    root: &Path,
) -> Result<Vec<Item>, FanOutError> {
    let values = match &plan.workflow.nodes[node].for_each {
        Some(ForEach::List(list)) => list.value.clone(),
        Some(ForEach::Template(t)) => items_from_template(plan, &t.value, context)?,
        Some(ForEach::Files(set)) => files(root, set)?,
        Some(ForEach::Invalid(_)) | None => return Err(FanOutError::Invalid),
    };
    if !plan.has(node, TemplateField::Key) {
        return keyed(values, None);
    }
    let mut key = |index: usize, item: &Json| {
        plan.render(
            node,
            TemplateField::Key,
            &with_item(context.clone(), item, index),
        )
    };
    keyed(values, Some(&mut key))
}

/// The longest key, in bytes.
pub(crate) const MAX_KEY_LEN: usize = 100;

/// One item of a fan-out, with the key of its instance (recorded in `fan_out_expanded`).
pub(crate) use crate::store::FanOutItem as Item;

/// The id of the instance of `node` for `key`: `node[key]`.
pub(crate) fn instance_id(node: &str, key: &str) -> String {
    format!("{node}[{key}]")
}

/// The fan-out node and key of an instance id (`review[web]` -> `review`, `web`).
pub(crate) fn split_instance_id(id: &str) -> Option<(&str, &str)> {
    let open = id.find('[')?;
    let key = id[open + 1..].strip_suffix(']')?;
    Some((&id[..open], key))
}

/// The items of a text: a JSON array (each element an item), else one item per line, blank
/// lines left out.
pub(crate) fn items_from_text(text: &str) -> Vec<Json> {
    let trimmed = text.trim();
    if trimmed.starts_with('[') {
        if let Ok(Json::Array(items)) = serde_json::from_str::<Json>(trimmed) {
            return items;
        }
    }
    text.lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.trim().is_empty())
        .map(|l| Json::String(l.to_string()))
        .collect()
}

/// The path a `for_each` template names when it is nothing but one `{{path}}` (like
/// `{{nodes.plan.json.packages}}`): its value is then read as is, a JSON array staying one.
pub(crate) fn single_path(template: &str) -> Option<&str> {
    let inner = template
        .trim()
        .strip_prefix("{{")?
        .strip_suffix("}}")?
        .trim();
    let is_path = !inner.is_empty()
        && !inner.contains("{{")
        && !inner.contains("}}")
        && inner
            .chars()
            .all(|c| c.is_alphanumeric() || "_-.[]/@".contains(c));
    is_path.then_some(inner)
}

/// The items of a `for_each` template rendered against `context` (the fan-out's own context,
/// without an item).
pub(crate) fn items_from_template(
    plan: &Plan,
    template: &str,
    context: &Json,
) -> Result<Vec<Json>, FanOutError> {
    use crate::workflow::template::Mode;
    let renderer = plan.renderer();
    if let Some(path) = single_path(template) {
        let json = renderer
            .render_text(&format!("{{{{json {path}}}}}"), Mode::Plain, context)
            .map_err(FanOutError::Render)?;
        return match serde_json::from_str::<Json>(&json) {
            Ok(Json::Array(items)) => Ok(items),
            Ok(Json::String(text)) => Ok(items_from_text(&text)),
            Ok(Json::Null) => Ok(Vec::new()),
            Ok(other) => Err(FanOutError::NotAList {
                path: path.to_string(),
                what: describe(&other),
            }),
            Err(e) => Err(FanOutError::NotJson(e.to_string())),
        };
    }
    let text = renderer
        .render_text(template, Mode::Plain, context)
        .map_err(FanOutError::Render)?;
    Ok(items_from_text(&text))
}

fn describe(v: &Json) -> &'static str {
    match v {
        Json::Null => "nothing",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "a list",
        Json::Object(_) => "a mapping",
    }
}

/// The files under `root` matching the set's patterns, as paths relative to `root` with `/`
/// separators, sorted. `.git` and `.reins` are never walked, links are not followed, and
/// `.gitignore`d files are left out unless the set says `gitignored: true`. More than
/// [`MAX_ITEMS`] matches is an error.
pub(crate) fn files(root: &Path, set: &FileSet) -> Result<Vec<Json>, FanOutError> {
    let mut globs = globset::GlobSetBuilder::new();
    for pattern in &set.files {
        let bad = |why: String| FanOutError::BadPattern {
            pattern: pattern.value.clone(),
            why,
        };
        crate::workflow::validate::glob_problem(&pattern.value).map_err(|e| bad(e.to_string()))?;
        let glob = globset::GlobBuilder::new(&pattern.value)
            .literal_separator(true)
            .build()
            .map_err(|e| bad(e.to_string()))?;
        globs.add(glob);
    }
    let globs = globs
        .build()
        .map_err(|e| FanOutError::BadPatterns(e.to_string()))?;
    let respect = !set.gitignored.as_ref().is_some_and(|g| g.value);
    let walker = ignore::WalkBuilder::new(root)
        .hidden(false)
        .ignore(false)
        .parents(false)
        .require_git(false)
        .git_ignore(respect)
        .git_exclude(respect)
        .git_global(respect)
        .follow_links(false)
        .filter_entry(|e| {
            e.depth() == 0 || !matches!(e.file_name().to_str(), Some(".git" | ".reins"))
        })
        .build();
    let mut found = Vec::new();
    for entry in walker {
        let entry = entry.map_err(|e| FanOutError::Walk(e.to_string()))?;
        if !entry.file_type().is_some_and(|t| t.is_file()) {
            continue;
        }
        let Ok(rel) = entry.path().strip_prefix(root) else {
            continue;
        };
        let Some(rel) = rel.to_str() else {
            continue; // not UTF-8: no template could name it
        };
        let rel = rel.replace(std::path::MAIN_SEPARATOR, "/");
        if globs.is_match(&rel) {
            if found.len() == MAX_ITEMS {
                return Err(FanOutError::TooMany {
                    count: MAX_ITEMS + 1,
                    at_least: true,
                });
            }
            found.push(rel);
        }
    }
    found.sort();
    Ok(found.into_iter().map(Json::String).collect())
}

/// Why a key cannot name an instance (its folder is `nodes/ID[KEY]`), if it cannot.
pub(crate) fn key_problem(key: &str) -> Option<&'static str> {
    if key.is_empty() {
        Some("is empty")
    } else if key.len() > MAX_KEY_LEN {
        Some("is longer than 100 bytes")
    } else if key.contains(['/', '\\']) {
        Some("contains a slash")
    } else if key.contains("..") {
        Some("contains `..`")
    } else if key.contains(['[', ']']) {
        Some("contains a bracket")
    } else if key.chars().any(char::is_control) {
        Some("contains a control character")
    } else {
        None
    }
}

/// Renders the key of item `index`.
pub(crate) type KeyFn<'a> = dyn FnMut(usize, &Json) -> Result<String, RenderError> + 'a;

/// The items of a fan-out from its values, with their keys: the index, or what `key(index,
/// item)` renders, trimmed. Too many items, a key that cannot name an instance, and two
/// items with one key are errors.
pub(crate) fn keyed(
    values: Vec<Json>,
    mut key: Option<&mut KeyFn>,
) -> Result<Vec<Item>, FanOutError> {
    if values.len() > MAX_ITEMS {
        return Err(FanOutError::TooMany {
            count: values.len(),
            at_least: false,
        });
    }
    let mut seen: std::collections::HashMap<String, usize> = Default::default();
    let mut items = Vec::with_capacity(values.len());
    for (index, value) in values.into_iter().enumerate() {
        let key = match key.as_mut() {
            None => index.to_string(),
            Some(render) => render(index, &value)
                .map_err(|error| FanOutError::KeyRender { index, error })?
                .trim()
                .to_string(),
        };
        if let Some(why) = key_problem(&key) {
            return Err(FanOutError::BadKey {
                index,
                shown: key.chars().take(40).collect(),
                why,
            });
        }
        if let Some(first) = seen.insert(key.clone(), index) {
            return Err(FanOutError::SameKey { first, index, key });
        }
        items.push(Item { key, value });
    }
    Ok(items)
}

/// Adds what an instance reads to its context: `item` and `item_index`.
pub(crate) fn with_item(mut context: Json, item: &Json, index: usize) -> Json {
    if let Some(map) = context.as_object_mut() {
        map.insert("item".into(), item.clone());
        map.insert("item_index".into(), Json::from(index));
    }
    context
}

/// An item as text: a string as is, anything else as JSON.
pub(crate) fn item_text(item: &Json) -> String {
    match item {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The variables a bash instance also finds its item in. An item no environment can hold
/// (a NUL byte, or more than [`super::context::ENV_VALUE_LIMIT`]) is left out of
/// `REINS_ITEM`; `{{item}}` still reads it.
pub(crate) fn item_env(item: &Json, index: usize, key: &str) -> Vec<(String, String)> {
    let text = item_text(item);
    let mut env = vec![
        ("REINS_ITEM_INDEX".into(), index.to_string()),
        ("REINS_ITEM_KEY".into(), key.to_string()),
    ];
    if !text.contains('\0') && text.len() <= super::context::ENV_VALUE_LIMIT {
        env.push(("REINS_ITEM".into(), text));
    }
    env
}

/// Too few instances of a fan-out succeeded: how many of how many, and what was needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "{succeeded} of {total} instances succeeded{}; {}",
    if *failed > 0 { format!(" ({failed} failed)") } else { String::new() },
    match min_success {
        Some(m) => format!("`min_success` is {m}"),
        None => "a fan-out needs all of them (or set `min_success`)".to_string(),
    }
)]
pub(crate) struct Shortfall {
    /// Instances that succeeded.
    pub succeeded: usize,
    /// Instances in all.
    pub total: usize,
    /// Instances that failed.
    pub failed: usize,
    /// The fan-out's `min_success`, if set (else every instance had to succeed).
    pub min_success: Option<u32>,
}

/// How a fan-out ends, given its instances' statuses: success when all succeeded, or at least
/// `min_success`; else failed, with how far short it fell.
pub(crate) fn outcome(statuses: &[NodeStatus], min_success: Option<u32>) -> Result<(), Shortfall> {
    let total = statuses.len();
    let succeeded = statuses
        .iter()
        .filter(|s| **s == NodeStatus::Success)
        .count();
    let needed = min_success.map_or(total, |m| m as usize);
    if succeeded >= needed {
        return Ok(());
    }
    let failed = statuses
        .iter()
        .filter(|s| **s == NodeStatus::Failed)
        .count();
    Err(Shortfall {
        succeeded,
        total,
        failed,
        min_success,
    })
}

/// A fan-out's output: the JSON array of its instances' outputs, in item order.
pub(crate) fn outputs(outputs: &[&str]) -> String {
    Json::Array(
        outputs
            .iter()
            .map(|o| Json::String(o.to_string()))
            .collect(),
    )
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_is_a_json_array_or_lines() {
        assert_eq!(
            items_from_text(r#"["a", 2, {"n": 1}]"#),
            [json!("a"), json!(2), json!({"n": 1})]
        );
        assert_eq!(
            items_from_text("a\n\n b \r\nc\r\n"),
            [json!("a"), json!(" b "), json!("c")]
        );
        assert_eq!(items_from_text("[not json"), [json!("[not json")]);
        assert!(items_from_text("  \n").is_empty());
    }

    #[test]
    fn a_lone_path_is_read_as_is() {
        assert_eq!(
            single_path("{{nodes.plan.json.items}}"),
            Some("nodes.plan.json.items")
        );
        assert_eq!(single_path(" {{ inputs.list }} "), Some("inputs.list"));
        assert_eq!(single_path("{{inputs.a}}{{inputs.b}}"), None);
        assert_eq!(single_path("{{json inputs.a}}"), None);
        assert_eq!(single_path("x {{inputs.a}}"), None);
    }

    #[test]
    fn keys_are_indices_or_rendered_and_must_be_safe_and_unique() {
        let items = keyed(vec![json!("a"), json!("b")], None).unwrap();
        assert_eq!(
            items[1],
            Item {
                key: "1".into(),
                value: json!("b")
            }
        );
        let mut by_value = |_: usize, v: &Json| Ok::<_, RenderError>(item_text(v));
        let items = keyed(vec![json!("x"), json!(" y ")], Some(&mut by_value)).unwrap();
        assert_eq!(items[1].key, "y");
        for bad in [
            "../etc",
            "a/b",
            "a\\b",
            "..",
            "x[1]",
            "a\0b",
            "tab\there",
            "",
            &"k".repeat(101),
        ] {
            let mut same = |_: usize, _: &Json| Ok::<_, RenderError>(bad.to_string());
            let err = keyed(vec![json!(1)], Some(&mut same))
                .unwrap_err()
                .to_string();
            assert!(err.contains("the key of item 0"), "{bad:?}: {err}");
        }
        let mut same = |_: usize, _: &Json| Ok::<_, RenderError>("k".to_string());
        let err = keyed(vec![json!(1), json!(2)], Some(&mut same))
            .unwrap_err()
            .to_string();
        assert!(err.contains("items 0 and 1 have the same key"), "{err}");
        let err = keyed(vec![json!(0); MAX_ITEMS + 1], None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("10,001 items") && err.contains("at most 10000"),
            "{err}"
        );
    }

    #[test]
    fn instance_ids_split_back() {
        let id = instance_id("review", "web");
        assert_eq!(id, "review[web]");
        assert_eq!(split_instance_id(&id), Some(("review", "web")));
        assert_eq!(split_instance_id("review"), None);
    }

    #[test]
    fn outcome_counts_successes() {
        use NodeStatus::*;
        assert!(outcome(&[], None).is_ok());
        assert!(outcome(&[Success, Success], None).is_ok());
        let err = outcome(&[Success, Failed, Skipped], None)
            .unwrap_err()
            .to_string();
        assert_eq!(err, "1 of 3 instances succeeded (1 failed); a fan-out needs all of them (or set `min_success`)");
        assert!(outcome(&[Success, Failed], Some(1)).is_ok());
        assert!(outcome(&[Success, Failed], Some(2)).is_err());
        assert_eq!(outputs(&["a", ""]), r#"["a",""]"#);
    }

    #[test]
    fn files_match_globs_and_leave_gitignored_ones_out() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for f in [
            "crates/a/Cargo.toml",
            "crates/b/Cargo.toml",
            "crates/b/deep/Cargo.toml",
            "target/x/Cargo.toml",
            ".reins/runs/Cargo.toml",
            "crates/c/Cargo.toml",
        ] {
            std::fs::create_dir_all(root.join(f).parent().unwrap()).unwrap();
            std::fs::write(root.join(f), "").unwrap();
        }
        std::fs::write(root.join(".gitignore"), "target/\ncrates/c/\n").unwrap();
        let set = |patterns: &[&str], gitignored: bool| FileSet {
            files: patterns
                .iter()
                .map(|p| crate::source::Spanned::new(p.to_string(), Default::default()))
                .collect(),
            gitignored: Some(crate::source::Spanned::new(gitignored, Default::default())),
            span: Default::default(),
        };
        let found = files(root, &set(&["crates/*/Cargo.toml", "*/x/*"], false)).unwrap();
        assert_eq!(
            found,
            [json!("crates/a/Cargo.toml"), json!("crates/b/Cargo.toml")]
        );
        let found = files(root, &set(&["**/Cargo.toml"], true)).unwrap();
        assert_eq!(found.len(), 5, "{found:?}");
        assert!(files(root, &set(&["../*"], false)).is_err());
    }
}
