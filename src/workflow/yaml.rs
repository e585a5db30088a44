//! A YAML document as a tree of values that all keep their source span.
//!
//! serde-saphyr parses the text (YAML 1.2 core schema: only `true`/`false` are booleans) into
//! this generic tree; [`super::decode`] then turns the tree into the typed model while
//! collecting every problem, rather than stopping at the first like a derived `Deserialize`.

use std::fmt;
use std::sync::Arc;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::diagnostic::Diagnostic;
use crate::source::{SourceFile, Span, Spanned};

/// A YAML value with its span.
#[derive(Debug, Clone)]
pub struct Node {
    /// The value.
    pub value: Value,
    /// Where it stands (for a mapping or sequence, where it starts).
    pub span: Span,
}

/// A YAML value.
#[derive(Debug, Clone)]
pub enum Value {
    /// `~`, `null` or nothing.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string.
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in source order.
    Map(Vec<(Spanned<String>, Node)>),
}

impl Value {
    /// How the value is named in messages: "a string", "a mapping", ...
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "nothing (null)",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

/// Parses a YAML document. A syntax error becomes one diagnostic.
pub fn parse(file: &Arc<SourceFile>) -> Result<Node, Diagnostic> {
    if file.text.trim().is_empty() {
        return Ok(Node {
            value: Value::Null,
            span: Span::new(0, 0),
        });
    }
    let limit = value_limit(file.text.len());
    let mut budget = serde_saphyr::budget::Budget::default();
    budget.max_nodes = limit;
    budget.max_events = limit.saturating_mul(3);
    budget.max_aliases = limit;
    let options = serde_saphyr::options! {
        strict_booleans: true,
        with_snippet: false,
        budget: Some(budget),
    };
    match serde_saphyr::from_str_with_options::<RawNode>(&file.text, options) {
        Ok(raw) => Ok(raw.into_node(file)),
        Err(err) if err.to_string().contains("budget breached") => Err(Diagnostic::file_error(
            "yaml-budget",
            file,
            format!(
                "the YAML expands to more than {} values (each alias `*name` repeats what its anchor `&name` holds): this looks like an alias bomb",
                crate::workflow::validate::thousands(limit)
            ),
        )
        .with_help(format!(
            "write the values out instead of nesting aliases; if the workflow really is this large, raise the limit with `{VALUE_LIMIT_VAR}=N` in the environment"
        ))),
        Err(err) => Err(syntax_error(file, &err)),
    }
}

/// The environment variable that raises [`value_limit`].
pub const VALUE_LIMIT_VAR: &str = "REINS_YAML_MAX_VALUES";

/// How many values (mappings, lists and scalars, aliases expanded) a YAML document of `len`
/// bytes may hold: every value written out takes at least two bytes, so only aliases can go
/// past it; at least 250,000, or what `REINS_YAML_MAX_VALUES` says.
pub fn value_limit(len: usize) -> usize {
    std::env::var(VALUE_LIMIT_VAR)
        .ok()
        .and_then(|v| v.trim().replace(['_', ','], "").parse().ok())
        .unwrap_or((len / 2).max(250_000))
}

fn syntax_error(file: &Arc<SourceFile>, err: &serde_saphyr::Error) -> Diagnostic {
    let text = err.to_string();
    // The crate's message reads "error: line L column C: what" or "what at line L, column C";
    // keep only "what": the location is shown the reins way.
    let first = text.lines().next().unwrap_or("").trim();
    let first = first.strip_prefix("error:").unwrap_or(first).trim();
    let message = match first.split_once(": ") {
        Some((head, rest)) if head.starts_with("line ") => rest,
        _ => first,
    };
    let message = message
        .split(", set DuplicateKeyPolicy")
        .next()
        .unwrap_or(message);
    let message = match message.rfind(" at line ") {
        Some(i) if message[i..].contains(", column ") => &message[..i],
        _ => message,
    };
    let at = err
        .location()
        .map(|loc| file.offset_of(loc.line() as usize, loc.column() as usize));
    if let Some(key) = message.strip_prefix("duplicate mapping key: ") {
        return duplicate_key(file, key, at);
    }
    let message = if message.is_empty() {
        "invalid YAML".to_string()
    } else {
        lowercase_first(message)
    };
    let help = "fix the YAML syntax; quote strings that contain `: ` or start with `{`, `[`, `*`, `&` or `!`";
    let Some(start) = at else {
        return Diagnostic::file_error("yaml-syntax", file, message).with_help(help);
    };
    let len = file.text[start..]
        .chars()
        .next()
        .map(char::len_utf8)
        .unwrap_or(0);
    let d = Diagnostic::error("yaml-syntax", file, Span::new(start, len), message).with_help(help);
    match unclosed_flow(&file.text, start) {
        Some(open) => d.with_secondary(
            Span::new(open, 1),
            format!("this `{}` is never closed", &file.text[open..open + 1]),
        ),
        None => d,
    }
}

/// A key given twice in one mapping: underline the second, and point at the first when it
/// stands on an earlier line of the same block mapping.
fn duplicate_key(file: &Arc<SourceFile>, key: &str, at: Option<usize>) -> Diagnostic {
    let message = format!("duplicate key `{key}`");
    let help = "each key may appear once in a mapping; remove or rename one";
    let Some(start) = at else {
        return Diagnostic::file_error("duplicate-key", file, message).with_help(help);
    };
    let len = if file.text[start..].starts_with(key) {
        key.len()
    } else {
        file.text[start..].chars().next().map_or(0, char::len_utf8)
    };
    let d = Diagnostic::error("duplicate-key", file, Span::new(start, len), message)
        .with_label("given again here")
        .with_help(help);
    match first_key_above(file, key, start) {
        Some(first) => d.with_secondary(Span::new(first, key.len()), "first given here"),
        None => d,
    }
}

/// The same key at the same column on an earlier line, within one block mapping.
fn first_key_above(file: &SourceFile, key: &str, at: usize) -> Option<usize> {
    let (line, col) = file.line_col(at);
    for l in (1..line).rev() {
        let text = file.line_text(l);
        // Content column: after indentation and any `- ` of list items.
        let trimmed = text.trim_start_matches([' ', '-']);
        let content_col = text.chars().count() - trimmed.chars().count() + 1;
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if content_col == col {
            let rest = trimmed.strip_prefix(key).map(str::trim_start);
            if rest.is_some_and(|r| r.starts_with(':')) {
                return Some(file.offset_of(l, col));
            }
        }
        let indent = text.len() - text.trim_start_matches(' ').len() + 1;
        if indent < col {
            return None;
        }
    }
    None
}

/// The `[` or `{` of a flow collection opened before `end` and still open there: the usual
/// cause of a confusing syntax error lines later.
fn unclosed_flow(text: &str, end: usize) -> Option<usize> {
    let mut open: Vec<usize> = Vec::new();
    // Whether the next non-space character starts a value, after `key: ` or `- ` (block
    // context). Lines of block scalars (`|`) start with text, not values, so a new line does
    // not count: a prompt saying "[draft" is not a list.
    let mut value_start = false;
    let mut chars = text[..end].char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let in_flow = !open.is_empty();
        match c {
            '\n' => {
                value_start = in_flow;
                continue;
            }
            ' ' | '\t' => continue,
            '#' if i == 0 || text[..i].ends_with([' ', '\t', '\n']) => {
                while chars.peek().is_some_and(|&(_, c)| c != '\n') {
                    chars.next();
                }
                continue;
            }
            '\'' | '"' if in_flow || value_start => {
                // Skip the quoted scalar ('' escapes a single quote, \ escapes in double).
                while let Some((_, q)) = chars.next() {
                    if q == '\\' && c == '"' {
                        chars.next();
                    } else if q == c {
                        if c == '\'' && chars.peek().is_some_and(|&(_, n)| n == '\'') {
                            chars.next();
                        } else {
                            break;
                        }
                    }
                }
            }
            '[' | '{' if in_flow || value_start => open.push(i),
            ']' | '}' if in_flow => {
                open.pop();
            }
            _ => {}
        }
        value_start = in_flow && matches!(c, '[' | '{' | ',' | ':')
            || !in_flow
                && (c == '-' || c == ':' || c == '?')
                && chars.peek().is_none_or(|&(_, n)| n == ' ' || n == '\n');
    }
    open.pop()
}

fn lowercase_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

/// The tree as serde-saphyr hands it over, with the crate's locations.
struct RawNode(serde_saphyr::Spanned<RawValue>);

enum RawValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<RawNode>),
    Map(Vec<(serde_saphyr::Spanned<String>, RawNode)>),
}

fn span_of(file: &SourceFile, loc: &serde_saphyr::Location) -> Span {
    let s = loc.span();
    if let (Some(off), Some(len)) = (s.byte_offset(), s.byte_len()) {
        let off = off as usize;
        if off <= file.text.len() {
            return Span::new(off, (len as usize).min(file.text.len() - off));
        }
    }
    let start = file.offset_of(loc.line() as usize, loc.column() as usize);
    let len: usize = file.text[start..]
        .chars()
        .take(s.len() as usize)
        .map(char::len_utf8)
        .sum();
    Span::new(start, len)
}

impl RawNode {
    fn into_node(self, file: &SourceFile) -> Node {
        let span = span_of(file, &self.0.referenced);
        let value = match self.0.value {
            RawValue::Null => Value::Null,
            RawValue::Bool(b) => Value::Bool(b),
            RawValue::Int(i) => Value::Int(i),
            RawValue::Float(f) => Value::Float(f),
            RawValue::Str(s) => Value::Str(s),
            RawValue::Seq(items) => {
                Value::Seq(items.into_iter().map(|n| n.into_node(file)).collect())
            }
            RawValue::Map(entries) => Value::Map(
                entries
                    .into_iter()
                    .map(|(k, v)| {
                        let key_span = span_of(file, &k.referenced);
                        (Spanned::new(k.value, key_span), v.into_node(file))
                    })
                    .collect(),
            ),
        };
        // A mapping or list has no length of its own: point at its first entry.
        let span = match &value {
            Value::Map(entries) if span.len == 0 => {
                entries.first().map(|(k, _)| k.span).unwrap_or(span)
            }
            Value::Seq(items) if span.len == 0 => items
                .first()
                .map(|n| Span::new(span.start, 1.max(n.span.start.saturating_sub(span.start))))
                .unwrap_or(span),
            _ => span,
        };
        Node { value, span }
    }
}

impl<'de> Deserialize<'de> for RawNode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde_saphyr::Spanned::<RawValue>::deserialize(d).map(RawNode)
    }
}

impl<'de> Deserialize<'de> for RawValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_unit<E>(self) -> Result<RawValue, E> {
                Ok(RawValue::Null)
            }
            fn visit_none<E>(self) -> Result<RawValue, E> {
                Ok(RawValue::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<RawValue, D::Error> {
                RawValue::deserialize(d)
            }
            fn visit_bool<E>(self, v: bool) -> Result<RawValue, E> {
                Ok(RawValue::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<RawValue, E> {
                Ok(RawValue::Int(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<RawValue, E> {
                Ok(match i64::try_from(v) {
                    Ok(i) => RawValue::Int(i),
                    Err(_) => RawValue::Float(v as f64),
                })
            }
            fn visit_i128<E>(self, v: i128) -> Result<RawValue, E> {
                Ok(RawValue::Float(v as f64))
            }
            fn visit_u128<E>(self, v: u128) -> Result<RawValue, E> {
                Ok(RawValue::Float(v as f64))
            }
            fn visit_f64<E>(self, v: f64) -> Result<RawValue, E> {
                Ok(RawValue::Float(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<RawValue, E> {
                Ok(RawValue::Str(v.to_string()))
            }
            fn visit_string<E>(self, v: String) -> Result<RawValue, E> {
                Ok(RawValue::Str(v))
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<RawValue, E> {
                Ok(RawValue::Str(String::from_utf8_lossy(v).into_owned()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<RawValue, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = a.next_element::<RawNode>()? {
                    items.push(item);
                }
                Ok(RawValue::Seq(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<RawValue, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = a.next_key::<serde_saphyr::Spanned<String>>()? {
                    let value = a.next_value::<RawNode>()?;
                    entries.push((key, value));
                }
                Ok(RawValue::Map(entries))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(s: &str) -> Result<Node, Diagnostic> {
        parse(&SourceFile::new("t.yaml", s))
    }

    #[test]
    fn keys_are_strings_and_spans_are_bytes() {
        let src = "n: 3\ny: é\nlist: [a, \"b c\"]\n";
        let node = parse_str(src).unwrap();
        let Value::Map(entries) = node.value else {
            panic!()
        };
        assert_eq!(entries[0].0.value, "n");
        assert_eq!(entries[1].0.value, "y");
        let Value::Seq(items) = &entries[2].1.value else {
            panic!()
        };
        assert_eq!(&src[items[1].span.start..items[1].span.end()], "\"b c\"");
    }

    #[test]
    fn yaml_11_booleans_are_strings() {
        let node = parse_str("a: yes\nb: on\n").unwrap();
        let Value::Map(entries) = node.value else {
            panic!()
        };
        assert!(matches!(&entries[0].1.value, Value::Str(s) if s == "yes"));
    }

    #[test]
    fn syntax_and_duplicate_errors_have_locations() {
        let d = parse_str("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(d.code, "duplicate-key");
        assert_eq!(d.line_col(), Some((3, 1)));
        let d = parse_str("a: 1\nb: [1, 2\nc: 3\n").unwrap_err();
        assert_eq!(d.code, "yaml-syntax");
        assert!(d.line_col().is_some());
    }
}
