//! The JSON Schema of the workflow format (`reins schema`), generated from the model types.
//!
//! schemars derives the schema from [`Workflow`] and its parts, doc comments becoming
//! descriptions. One transform then makes it describe YAML as the loader reads it:
//!
//! * the node kinds (and a loop's body) are flattened enums; schemars puts each kind in its own
//!   `oneOf` branch and closes the object with `unevaluatedProperties`, which editors (draft-07
//!   validators such as yaml-language-server) ignore, and which cannot be combined with
//!   `additionalProperties: false`. The kind keys are lifted into the object's `properties`, the
//!   object is closed with `additionalProperties: false`, and `oneOf: [{required: [bash]}, ...]`
//!   keeps "exactly one kind";
//! * optional fields are optional, not nullable: the loader rejects `key: ~` for them;
//! * a string field also takes a number or a boolean (`default: 3` reads as `"3"`);
//! * a list of strings also takes a single string (`depends_on: build`) or nothing.
//!
//! The result is a draft-07 schema, which every editor integration understands.

use schemars::generate::SchemaSettings;
use schemars::transform::Transform;
use schemars::Schema;
use serde_json::{json, Map, Value};

use super::model::Workflow;

/// The JSON Schema of a workflow file.
pub fn workflow_schema() -> Value {
    let mut settings = SchemaSettings::draft07();
    // First, while the schema still has schemars' 2020-12 shape; then the draft-07 conversions.
    settings.transforms.insert(0, Box::new(YamlAsLoaded));
    settings
        .into_generator()
        .into_root_schema_for::<Workflow>()
        .to_value()
}

/// The transform described in the module documentation.
#[derive(Debug, Clone)]
struct YamlAsLoaded;

impl Transform for YamlAsLoaded {
    fn transform(&mut self, schema: &mut Schema) {
        if let Some(object) = schema.as_object_mut() {
            visit(object);
        }
    }
}

const SCALAR: [&str; 3] = ["string", "number", "boolean"];

fn visit(schema: &mut Map<String, Value>) {
    if let Some(Value::Object(props)) = schema.get_mut("properties") {
        for prop in props.values_mut() {
            if let Value::Object(prop) = prop {
                strip_null(prop);
            }
        }
    }
    for (key, value) in schema.iter_mut() {
        match (key.as_str(), value) {
            (
                "items" | "additionalProperties" | "not" | "if" | "then" | "else",
                Value::Object(sub),
            ) => visit(sub),
            ("anyOf" | "oneOf" | "allOf", Value::Array(subs)) => {
                for sub in subs.iter_mut().filter_map(Value::as_object_mut) {
                    visit(sub);
                }
            }
            ("properties" | "$defs" | "definitions", Value::Object(subs)) => {
                for sub in subs.values_mut().filter_map(Value::as_object_mut) {
                    visit(sub);
                }
            }
            _ => {}
        }
    }
    lift_flattened_kinds(schema);
    loosen_string(schema);
    loosen_string_list(schema);
}

/// `type: [T, null]` becomes `type: T`; `anyOf: [S, {type: null}]` becomes S.
fn strip_null(schema: &mut Map<String, Value>) {
    if let Some(Value::Array(types)) = schema.get_mut("type") {
        types.retain(|t| t != "null");
        if types.len() == 1 {
            let only = types.remove(0);
            schema.insert("type".into(), only);
        }
    }
    if let Some(Value::Array(any)) = schema.get_mut("anyOf") {
        any.retain(|s| s != &json!({"type": "null"}));
        if any.len() == 1 {
            let Some(Value::Object(only)) = any.pop() else {
                return;
            };
            schema.remove("anyOf");
            for (k, v) in only {
                schema.entry(k).or_insert(v);
            }
        }
    }
}

/// A flattened enum: every `oneOf` branch is `{properties: {K: S}, required: [K]}`.
fn lift_flattened_kinds(schema: &mut Map<String, Value>) {
    let Some(Value::Array(branches)) = schema.get("oneOf") else {
        return;
    };
    let mut kinds = Vec::new();
    for branch in branches {
        let props = branch.get("properties").and_then(Value::as_object);
        let required = branch.get("required").and_then(Value::as_array);
        match (props, required) {
            (Some(props), Some(required)) if props.len() == 1 && required.len() == 1 => {
                let (key, sub) = props.iter().next().expect("one property");
                if required[0] != *key {
                    return;
                }
                let mut sub = sub.clone();
                if let (Some(desc), Some(sub)) = (branch.get("description"), sub.as_object_mut()) {
                    sub.entry("description").or_insert(desc.clone());
                }
                kinds.push((key.clone(), sub));
            }
            _ => return,
        }
    }
    let props = schema
        .entry("properties")
        .or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(props) = props else {
        return;
    };
    for (key, sub) in &kinds {
        props.insert(key.clone(), sub.clone());
    }
    let one_of: Vec<Value> = kinds
        .iter()
        .map(|(key, _)| json!({ "required": [key] }))
        .collect();
    schema.insert("oneOf".into(), Value::Array(one_of));
    if let Some(closed) = schema.remove("unevaluatedProperties") {
        schema.insert("additionalProperties".into(), closed);
    }
}

/// A plain string also takes a number or a boolean, read as the text written.
fn loosen_string(schema: &mut Map<String, Value>) {
    let constrained = ["enum", "const", "pattern", "format"]
        .iter()
        .any(|k| schema.contains_key(*k));
    if schema.get("type") == Some(&json!("string")) && !constrained {
        schema.insert("type".into(), json!(SCALAR));
    }
}

/// A list of strings also takes one string (a list of one) or nothing (an empty list).
fn loosen_string_list(schema: &mut Map<String, Value>) {
    let is_list = schema.get("type") == Some(&json!("array"))
        && schema.get("items").and_then(|i| i.get("type")) == Some(&json!(SCALAR));
    if !is_list {
        return;
    }
    let items = schema.remove("items").expect("checked");
    schema.remove("type");
    schema.insert(
        "anyOf".into(),
        json!([{ "type": "array", "items": items }, items, { "type": "null" }]),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_kinds_are_lifted_and_closed() {
        let schema = workflow_schema();
        let node = &schema["definitions"]["Node"];
        assert_eq!(node["additionalProperties"], json!(false));
        assert!(node.get("unevaluatedProperties").is_none());
        for kind in ["bash", "prompt", "command", "approval", "loop"] {
            assert!(node["properties"].get(kind).is_some(), "{kind}");
        }
        assert_eq!(node["oneOf"][0], json!({"required": ["bash"]}));
        assert!(node["properties"]["bash"]["description"]
            .as_str()
            .unwrap()
            .contains("shell"));
    }

    #[test]
    fn optional_is_not_nullable_but_lists_are_lenient() {
        let schema = workflow_schema();
        let node = &schema["definitions"]["Node"]["properties"];
        assert_eq!(node["when"]["type"], json!(SCALAR));
        assert_eq!(node["depends_on"]["anyOf"][1]["type"], json!(SCALAR));
        assert_eq!(node["depends_on"]["anyOf"][2], json!({"type": "null"}));
        let required = schema["required"].as_array().unwrap();
        assert_eq!(required, &vec![json!("nodes")]);
    }
}
