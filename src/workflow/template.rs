//! Templates: Handlebars in strict mode, parsed once, checked by `validate`, rendered by the engine.
//!
//! Two things live here:
//! * [`analyze`] reads a template's source and lists every value it reads ([`Reference`]) with
//!   its place in the workflow file, so `validate` can point at `{{nodes.typo.output}}`;
//! * [`Renderer`] holds every template of a workflow, compiled once, and renders them against a
//!   context. A bash template is rendered by reference ([`Renderer::render_script`]): every
//!   substituted value becomes an environment variable the script reads, never script text, so
//!   no input, node output or agent reply can inject shell code into a bash node.
//!
//! The context a template sees is a JSON object with these keys:
//!
//! | key | value |
//! |---|---|
//! | `inputs.NAME` | the run's input value |
//! | `nodes.ID.output` | stdout of a bash node (trailing newline trimmed), final text of an agent, comment of a gate |
//! | `nodes.ID.output_file` | the file with the node's whole output (the output is cut at 1 MiB) |
//! | `nodes.ID.status` | `success`, `failed`, `skipped`, `cancelled` |
//! | `nodes.ID.json` | the output parsed as JSON, when it is JSON |
//! | `artifacts` | absolute path of the run's artifacts folder |
//! | `run.id` | the run id |
//! | `workflow.name` | the workflow's name |
//! | `env.NAME` | environment variables: the process's, then the workflow's `env:` |
//! | `loop.iteration`, `loop.previous` | inside a loop: 1-based iteration, previous iteration's output |
//! | `output` | in `until`: the output of the iteration that just ran |
//! | `args.NAME` | in a command file: the node's `args:` |

use std::borrow::Cow;

use handlebars::template::{Parameter, Template as Compiled, TemplateElement};
use handlebars::{Handlebars, JsonValue, Path};

use crate::source::{SourceFile, Span};

/// A value a template reads, like `nodes.build.output`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The path as written, like `nodes.build.output`.
    pub raw: String,
    /// The path split at dots, like `["nodes", "build", "output"]`.
    pub segments: Vec<String>,
    /// True when the reference sits inside `#each`/`#with`, where paths may be relative to
    /// the block's value rather than the root.
    pub in_block: bool,
    /// Byte offset, in the template text, of the `{{` of the tag it is in.
    pub tag: usize,
}

/// What a template uses.
#[derive(Debug, Clone, Default)]
pub struct Analysis {
    /// Every value read, in order of appearance.
    pub references: Vec<Reference>,
    /// Helpers called, like `contains`, with the byte offset of their tag in the template.
    pub helpers: Vec<(String, usize)>,
    /// True when the template uses `{{{triple braces}}}` (no escaping).
    pub raw_substitution: bool,
    /// The template's text as a shell would see it when every value is a slot (see
    /// [`super::shell_context`]): literal text as Handlebars renders it, each value tag a slot,
    /// both branches of a block one after the other.
    pub skeleton: String,
    /// Per slot of the skeleton: the byte offset of its tag's `{{` in the template text.
    pub slots: Vec<usize>,
    /// The tag being walked.
    tag: usize,
}

/// A template syntax error, with its line and column inside the template text (1-based).
#[derive(Debug, Clone)]
pub struct SyntaxError {
    /// What is wrong.
    pub message: String,
    /// Line and column inside the template, if known.
    pub position: Option<(usize, usize)>,
}

/// Names of helpers reins provides, besides Handlebars' own (`if`, `unless`, `each`, `with`,
/// `lookup`, `eq`, `ne`, `gt`, `gte`, `lt`, `lte`, `and`, `or`, `not`, `len`).
pub const REINS_HELPERS: &[&str] = &[
    "contains",
    "starts_with",
    "ends_with",
    "default",
    "trim",
    "lower",
    "upper",
    "json",
];

/// Every helper a template may call.
pub fn known_helpers() -> impl Iterator<Item = &'static str> {
    const BUILTIN: &[&str] = &[
        "if", "unless", "each", "with", "lookup", "raw", "log", "eq", "ne", "gt", "gte", "lt",
        "lte", "and", "or", "not", "len",
    ];
    BUILTIN.iter().chain(REINS_HELPERS).copied()
}

/// Parses a template and lists what it reads.
pub fn analyze(text: &str) -> Result<Analysis, SyntaxError> {
    let compiled = Compiled::compile(text).map_err(|e| syntax_error(text, &e))?;
    let mut analysis = Analysis::default();
    let mut cursor = Cursor::new(text);
    walk(&compiled, false, &mut cursor, &mut analysis);
    Ok(analysis)
}

/// Turns the increasing (line, column) positions Handlebars records into byte offsets, in
/// time linear in the text over all calls made in order.
struct Cursor<'a> {
    text: &'a str,
    line: usize,
    col: usize,
    offset: usize,
}

impl<'a> Cursor<'a> {
    fn new(text: &'a str) -> Self {
        Cursor {
            text,
            line: 1,
            col: 1,
            offset: 0,
        }
    }

    fn offset(&mut self, line: usize, col: usize) -> usize {
        if (line, col) < (self.line, self.col) {
            *self = Cursor::new(self.text);
        }
        let bytes = self.text.as_bytes();
        while self.line < line {
            match memchr_newline(&bytes[self.offset..]) {
                Some(i) => {
                    self.offset += i + 1;
                    self.line += 1;
                    self.col = 1;
                }
                None => return self.text.len(),
            }
        }
        let rest = &self.text[self.offset..];
        for (i, c) in rest.char_indices() {
            if self.col >= col || c == '\n' {
                self.offset += i;
                return self.offset;
            }
            self.col += 1;
        }
        self.offset = self.text.len();
        self.offset
    }
}

fn memchr_newline(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\n')
}

/// Turns Handlebars' error into words a workflow author understands, pointing at the tag
/// that is wrong: for "the template ended too early", at the `{{` or `{{#block}}` left open
/// rather than at the end of the text.
fn syntax_error(text: &str, e: &handlebars::TemplateError) -> SyntaxError {
    let position = e.pos();
    let reason = e.reason().to_string();
    let reason = reason.lines().next().unwrap_or("").trim().to_string();
    // `helper "if" was opened, but "each" is closing`
    let mut quoted = reason.split('"').skip(1).step_by(2);
    if let (true, Some(opened), Some(closing)) = (
        reason.contains("was opened, but"),
        quoted.next(),
        quoted.next(),
    ) {
        return SyntaxError {
            message: format!(
                "template syntax error: `{{{{#{opened}}}}}` is closed by `{{{{/{closing}}}}}`; close it with `{{{{/{opened}}}}}`"
            ),
            position,
        };
    }
    if !reason
        .to_lowercase()
        .starts_with("invalid handlebars syntax")
    {
        return SyntaxError {
            message: format!("template syntax error: {}", lowercase_first(&reason)),
            position,
        };
    }
    let offset = position.map(|(line, col)| offset_in(text, line, col));
    let at_end = offset.is_none_or(|o| text[o..].trim().is_empty());
    if at_end {
        if let Some(open) = unclosed_braces(text) {
            return SyntaxError {
                message: "template syntax error: `{{` is never closed with `}}`".into(),
                position: Some(line_col_in(text, open)),
            };
        }
        if let Some((name, open)) = unclosed_block(text) {
            return SyntaxError {
                message: format!(
                    "template syntax error: `{{{{#{name}}}}}` is never closed; add `{{{{/{name}}}}}`"
                ),
                position: Some(line_col_in(text, open)),
            };
        }
    }
    // Quote the tag the error is in, from its `{{` to its `}}` (or the end of the line).
    let tag = offset.and_then(|o| text[..o].rfind("{{")).map(|open| {
        let rest = &text[open..];
        let end = rest
            .find("}}")
            .map(|e| e + 2)
            .into_iter()
            .chain(rest.find('\n'))
            .min()
            .unwrap_or(rest.len());
        let tag: String = rest[..end].chars().take(40).collect();
        tag
    });
    let message = match tag {
        Some(tag) => format!("template syntax error in `{tag}`"),
        None => "template syntax error: a `{{...}}` is malformed".into(),
    };
    SyntaxError { message, position }
}

fn lowercase_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => "invalid template".into(),
    }
}

/// Byte offsets of every unescaped `{{` in a template.
fn openings(text: &str) -> impl Iterator<Item = usize> + '_ {
    text.match_indices("{{")
        .map(|(i, _)| i)
        .filter(|&i| !text[..i].ends_with(['\\', '{']))
}

/// The last `{{` that no `}}` follows.
fn unclosed_braces(text: &str) -> Option<usize> {
    let last = openings(text).last()?;
    (!text[last..].contains("}}")).then_some(last)
}

/// The innermost `{{#block}}` without its `{{/block}}`, with where it opens.
fn unclosed_block(text: &str) -> Option<(String, usize)> {
    let mut open: Vec<(String, usize)> = Vec::new();
    for i in openings(text) {
        let tag = text[i + 2..].trim_start_matches('~');
        let name = |rest: &str| -> String {
            rest.trim_start_matches(['>', '*'])
                .chars()
                .take_while(|c| !c.is_whitespace() && *c != '}' && *c != '~')
                .collect()
        };
        if let Some(rest) = tag.strip_prefix('#') {
            open.push((name(rest), i));
        } else if let Some(rest) = tag.strip_prefix('/') {
            let closing = name(rest);
            if let Some(k) = open.iter().rposition(|(n, _)| *n == closing) {
                open.truncate(k);
            }
        }
    }
    open.pop()
}

/// Byte offset of a 1-based (line, column in characters) inside `text`.
fn offset_in(text: &str, line: usize, col: usize) -> usize {
    let mut start = 0;
    for _ in 1..line {
        match text[start..].find('\n') {
            Some(i) => start += i + 1,
            None => return text.len(),
        }
    }
    let rest = &text[start..];
    start
        + rest
            .char_indices()
            .take_while(|(_, c)| *c != '\n')
            .nth(col.saturating_sub(1))
            .map(|(i, _)| i)
            .unwrap_or_else(|| rest.find('\n').unwrap_or(rest.len()))
}

/// 1-based (line, column in characters) of a byte offset inside `text`.
fn line_col_in(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    (line, before[line_start..].chars().count() + 1)
}

fn walk(t: &Compiled, in_block: bool, cursor: &mut Cursor, out: &mut Analysis) {
    for (k, element) in t.elements.iter().enumerate() {
        let tag = t
            .mapping
            .get(k)
            .map(|m| cursor.offset(m.0, m.1))
            .unwrap_or(0);
        out.tag = tag;
        match element {
            TemplateElement::RawString(s) => out.skeleton.push_str(s),
            TemplateElement::Expression(_) => {
                out.skeleton
                    .push_str(&super::shell_context::slot(out.slots.len()));
                out.slots.push(tag);
            }
            TemplateElement::HtmlExpression(_) => out.skeleton.push('x'),
            _ => {}
        }
        match element {
            TemplateElement::Expression(h)
            | TemplateElement::HtmlExpression(h)
            | TemplateElement::HelperBlock(h) => {
                if matches!(element, TemplateElement::HtmlExpression(_)) {
                    out.raw_substitution = true;
                }
                let is_helper_call =
                    !h.params.is_empty() || !h.hash.is_empty() || h.template.is_some();
                match &h.name {
                    Parameter::Name(name)
                        if is_helper_call || known_helpers().any(|k| k == name) =>
                    {
                        out.helpers.push((name.clone(), out.tag));
                    }
                    Parameter::Name(name) => push_path_text(name, in_block, out),
                    other => param(other, in_block, out),
                }
                for p in h.params.iter().chain(h.hash.values()) {
                    param(p, in_block, out);
                }
                let scoped =
                    in_block || matches!(&h.name, Parameter::Name(n) if n == "each" || n == "with");
                if let Some(inner) = &h.template {
                    walk(inner, scoped, cursor, out);
                }
                if let Some(inverse) = &h.inverse {
                    walk(inverse, in_block, cursor, out);
                }
            }
            TemplateElement::DecoratorExpression(d)
            | TemplateElement::DecoratorBlock(d)
            | TemplateElement::PartialExpression(d)
            | TemplateElement::PartialBlock(d) => {
                for p in &d.params {
                    param(p, in_block, out);
                }
                if let Some(inner) = &d.template {
                    walk(inner, in_block, cursor, out);
                }
            }
            _ => {}
        }
    }
}

fn param(p: &Parameter, in_block: bool, out: &mut Analysis) {
    match p {
        Parameter::Path(Path::Relative((_, raw))) => push_path_text(raw, in_block, out),
        Parameter::Path(Path::Local(_)) | Parameter::Literal(_) => {}
        Parameter::Name(name) => push_path_text(name, in_block, out),
        Parameter::Subexpression(sub) => {
            if let Some(name) = sub.name().strip_prefix("").filter(|n| !n.is_empty()) {
                let is_helper = sub.params().is_some_and(|p| !p.is_empty())
                    || known_helpers().any(|k| k == name);
                if is_helper {
                    out.helpers.push((name.to_string(), out.tag));
                } else {
                    push_path_text(name, in_block, out);
                }
            }
            for p in sub.params().into_iter().flatten() {
                param(p, in_block, out);
            }
            for p in sub.hash().into_iter().flat_map(|h| h.values()) {
                param(p, in_block, out);
            }
        }
        _ => {}
    }
}

fn push_path_text(raw: &str, in_block: bool, out: &mut Analysis) {
    if raw == "this" || raw.starts_with('@') || raw.starts_with("this.") || raw.starts_with("../") {
        return;
    }
    let segments = raw
        .split(['.', '/'])
        .map(|s| s.trim_start_matches('[').trim_end_matches(']').to_string())
        .collect();
    out.references.push(Reference {
        raw: raw.to_string(),
        segments,
        in_block,
        tag: out.tag,
    });
}

/// Where `needle` (a name inside a template, like `nodes.build.output` or `contains`) stands
/// in the file, given the template value's span; falls back to the whole value.
pub fn locate(file: &SourceFile, value_span: Span, needle: &str) -> Span {
    locate_nth(file, value_span, needle, 0)
}

/// Like [`locate`], for the `n`-th (0-based) time the template uses `needle`. Only whole
/// names inside `{{...}}` count, so `{{inputs.a}}` is not found inside `{{inputs.ab}}` nor
/// in plain text around the tags.
pub fn locate_nth(file: &SourceFile, value_span: Span, needle: &str, n: usize) -> Span {
    let region = file.slice(value_span);
    if needle.is_empty() {
        return value_span;
    }
    let is_name = |c: char| c.is_alphanumeric() || "_-./@[]".contains(c);
    let in_tag = |i: usize| match region[..i].rfind("{{") {
        Some(open) => !region[open..i].contains("}}"),
        None => false,
    };
    let whole: Vec<usize> = region
        .match_indices(needle)
        .map(|(i, _)| i)
        .filter(|&i| {
            needle.starts_with('{')
                || (!region[..i].ends_with(is_name)
                    && !region[i + needle.len()..].starts_with(is_name)
                    && in_tag(i))
        })
        .collect();
    let found = whole
        .get(n)
        .or(whole.last())
        .copied()
        .or_else(|| region.find(needle));
    match found {
        Some(i) => Span::new(value_span.start + i, needle.len()),
        None => value_span,
    }
}

/// Where a (line, column) inside the template text stands in the file: the same text is
/// looked for in the file, counting earlier occurrences, so it works for plain, quoted and
/// block values alike. Falls back to the whole value.
pub fn locate_position(
    file: &SourceFile,
    value_span: Span,
    text: &str,
    position: Option<(usize, usize)>,
) -> Span {
    let Some((line, col)) = position else {
        return value_span;
    };
    let at = offset_in(text, line, col);
    let rest = &text[at..];
    let needle_len: usize = rest
        .char_indices()
        .take_while(|(_, c)| *c != '\n')
        .take(12)
        .last()
        .map(|(i, c)| i + c.len_utf8())
        .unwrap_or(0);
    let needle = rest[..needle_len].trim_end();
    if needle.is_empty() {
        return value_span;
    }
    let earlier = text[..at].match_indices(needle).count();
    let region = file.slice(value_span);
    let Some((i, _)) = region.match_indices(needle).nth(earlier) else {
        return value_span;
    };
    let len = if needle.starts_with("{{") {
        2
    } else {
        needle.chars().next().map(char::len_utf8).unwrap_or(0)
    };
    Span::new(value_span.start + i, len)
}

/// Finds the tags of one template in its file, in order, in time linear in the file: each tag
/// is looked for after the one before. A tag that cannot be found (the YAML scalar folded it)
/// and every later one point at the whole value.
pub struct TagLocator<'a> {
    text: &'a str,
    region: &'a str,
    value_span: Span,
    cursor: usize,
    last: Option<(usize, usize, usize)>,
    lost: bool,
}

impl<'a> TagLocator<'a> {
    /// A locator for the template `text`, the value at `value_span` of `file`.
    pub fn new(file: &'a SourceFile, value_span: Span, text: &'a str) -> Self {
        TagLocator {
            text,
            region: file.slice(value_span),
            value_span,
            cursor: 0,
            last: None,
            lost: false,
        }
    }

    /// The tag starting at byte `tag` of the template text: its text (at most its first line)
    /// and where it starts in the region, if found.
    fn find(&mut self, tag: usize) -> Option<(usize, usize)> {
        if let Some((t, at, len)) = self.last {
            if t == tag {
                return Some((at, len));
            }
        }
        if self.lost || tag >= self.text.len() {
            return None;
        }
        let rest = &self.text[tag..];
        let end = rest
            .find("}}")
            .map(|e| e + 2 + usize::from(rest[e + 2..].starts_with('}')))
            .unwrap_or(rest.len());
        let end = rest[..end].find('\n').unwrap_or(end);
        let needle = &rest[..end];
        match self.region.get(self.cursor..).and_then(|r| r.find(needle)) {
            Some(p) => {
                let at = self.cursor + p;
                self.cursor = at + needle.len();
                self.last = Some((tag, at, needle.len()));
                Some((at, needle.len()))
            }
            None => {
                self.lost = true;
                None
            }
        }
    }

    /// The span of the whole tag starting at byte `tag` of the template text.
    pub fn tag(&mut self, tag: usize) -> Span {
        match self.find(tag) {
            Some((at, len)) => Span::new(self.value_span.start + at, len),
            None => self.value_span,
        }
    }

    /// The span of `name` inside the tag starting at byte `tag` of the template text.
    pub fn name(&mut self, tag: usize, name: &str) -> Span {
        match self.find(tag) {
            Some((at, len)) => match self.region[at..at + len].find(name) {
                Some(p) if !name.is_empty() => {
                    Span::new(self.value_span.start + at + p, name.len())
                }
                _ => Span::new(self.value_span.start + at, len),
            },
            None => self.value_span,
        }
    }

    /// The tag's text as written in the template, shortened to its first line.
    pub fn tag_text(&self, tag: usize) -> &'a str {
        let rest = &self.text[tag.min(self.text.len())..];
        let end = rest.find("}}").map(|e| e + 2).unwrap_or(rest.len());
        let end = end + usize::from(rest[end..].starts_with('}'));
        let end = rest[..end].find('\n').unwrap_or(end);
        &rest[..end]
    }
}

/// How rendered values are escaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// As is: prompts, messages, conditions.
    Plain,
    /// Bash scripts: every `{{substitution}}` becomes a variable reference
    /// ([`Renderer::render_script`]).
    Shell,
}

/// Every template of a workflow, compiled once and rendered by key.
pub struct Renderer {
    plain: Handlebars<'static>,
    shell: Handlebars<'static>,
}

impl Default for Renderer {
    fn default() -> Self {
        Self::new()
    }
}

impl Renderer {
    /// An empty renderer with reins' helpers, strict mode and the right escaping per mode.
    pub fn new() -> Self {
        let mut plain = Handlebars::new();
        plain.set_strict_mode(true);
        plain.register_escape_fn(handlebars::no_escape);
        register_helpers(&mut plain);
        let mut shell = Handlebars::new();
        shell.set_strict_mode(true);
        shell.register_escape_fn(collect_value);
        register_helpers(&mut shell);
        Self { plain, shell }
    }

    /// Compiles a template under `key` for one mode.
    pub fn add(&mut self, key: &str, text: &str, mode: Mode) -> Result<(), SyntaxError> {
        let registry = match mode {
            Mode::Plain => &mut self.plain,
            Mode::Shell => &mut self.shell,
        };
        registry
            .register_template_string(key, text)
            .map_err(|e| syntax_error(text, &e))
    }

    /// True if a template is registered under `key` for `mode`.
    pub fn has(&self, key: &str, mode: Mode) -> bool {
        match mode {
            Mode::Plain => self.plain.has_template(key),
            Mode::Shell => self.shell.has_template(key),
        }
    }

    /// Renders the template `key` against `context`.
    pub fn render(
        &self,
        key: &str,
        mode: Mode,
        context: &JsonValue,
    ) -> Result<String, RenderError> {
        let registry = match mode {
            Mode::Plain => &self.plain,
            Mode::Shell => &self.shell,
        };
        registry
            .render(key, context)
            .map_err(|e| RenderError::Template(describe_render_error(&e)))
    }

    /// Renders the bash template `key` by reference: every `{{...}}` value becomes a
    /// variable the script reads (`"$REINS_VALUE_1"` where the shell reads a word,
    /// `${REINS_VALUE_1}` inside double quotes and unquoted heredocs), never script text. A
    /// value that lands where no variable is safe (see [`super::shell_context`]; blocks can
    /// put one where `validate` could not see it) or that holds a NUL byte is an error naming
    /// the value.
    pub fn render_script(&self, key: &str, context: &JsonValue) -> Result<Script, RenderError> {
        let _collecting = Collecting::start();
        let rendered = self
            .shell
            .render(key, context)
            .map_err(|e| RenderError::Template(describe_render_error(&e)))?;
        let values = VALUES.with(|v| v.borrow_mut().take().unwrap_or_default());
        by_reference(&rendered, values, context)
    }

    /// Compiles and renders a one-off template (command files, ad-hoc text).
    pub fn render_text(
        &self,
        text: &str,
        mode: Mode,
        context: &JsonValue,
    ) -> Result<String, RenderError> {
        let registry = match mode {
            Mode::Plain => &self.plain,
            Mode::Shell => &self.shell,
        };
        registry
            .render_template(text, context)
            .map_err(|e| RenderError::Template(describe_render_error(&e)))
    }
}

/// Why a template did not render.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// The template engine refused it (a missing value, a helper's error), described in words.
    #[error("{0}")]
    Template(String),
    /// A value holds a NUL byte; `value` names it ("input `x`").
    #[error(
        "{value} contains a NUL byte, which no program can receive in its environment or arguments; remove it upstream (for example with `tr -d '\\0'`)"
    )]
    NulByte {
        /// Where the value comes from.
        value: String,
    },
    /// A value would stand where no shell variable is safe.
    #[error(
        "{value} would stand {place} in the script, where {why}; `reins validate` explains the fix"
    )]
    UnsafePlace {
        /// Where the value comes from.
        value: String,
        /// Where it would stand ("inside single quotes").
        place: &'static str,
        /// Why no variable is safe there.
        why: &'static str,
    },
}

impl From<RenderError> for String {
    fn from(e: RenderError) -> String {
        e.to_string()
    }
}

/// A bash script rendered by reference.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Script {
    /// What the shell runs: every value is a reference to one of `values`.
    pub text: String,
    /// The variables the script reads (`REINS_VALUE_1`, ...) and their values, in order of
    /// first use; equal values share one variable.
    pub values: Vec<(String, String)>,
}

thread_local! {
    /// The values the shell registry's escape function has seen during the current
    /// [`Renderer::render_script`] on this thread (rendering is synchronous).
    static VALUES: std::cell::RefCell<Option<Vec<String>>> = const { std::cell::RefCell::new(None) };
}

/// Sets up the collection of values for one render, and clears it however the render ends.
struct Collecting;

impl Collecting {
    fn start() -> Self {
        VALUES.with(|v| *v.borrow_mut() = Some(Vec::new()));
        Collecting
    }
}

impl Drop for Collecting {
    fn drop(&mut self) {
        VALUES.with(|v| *v.borrow_mut() = None);
    }
}

/// The shell registry's escape function: a value becomes a slot. Outside a
/// [`Renderer::render_script`] (nothing renders bash that way) it is shell-quoted.
fn collect_value(s: &str) -> String {
    VALUES.with(|v| match v.borrow_mut().as_mut() {
        Some(values) => {
            values.push(s.to_string());
            super::shell_context::slot(values.len() - 1)
        }
        None => shell_quote(s).into_owned(),
    })
}

/// Replaces each slot of a rendered script by a reference to its value's variable.
fn by_reference(
    rendered: &str,
    raw: Vec<String>,
    context: &JsonValue,
) -> Result<Script, RenderError> {
    use super::shell_context::{places, Place};
    let mut script = Script {
        text: String::with_capacity(rendered.len()),
        values: Vec::new(),
    };
    let mut names: std::collections::HashMap<&str, usize> = Default::default();
    let mut last = 0;
    for found in places(rendered) {
        // A slot-like text a triple-brace value inserted and that names no value stays text.
        let Some(value) = raw.get(found.slot) else {
            continue;
        };
        if value.contains('\0') {
            return Err(RenderError::NulByte {
                value: describe_value(context, value),
            });
        }
        let n = *names.entry(value.as_str()).or_insert_with(|| {
            script.values.push((
                format!("REINS_VALUE_{}", script.values.len() + 1),
                value.clone(),
            ));
            script.values.len()
        });
        script.text.push_str(&rendered[last..found.offset]);
        match found.place {
            Place::Word => script.text.push_str(&format!("\"$REINS_VALUE_{n}\"")),
            Place::Quoted => script.text.push_str(&format!("${{REINS_VALUE_{n}}}")),
            Place::Refused(why) => {
                return Err(RenderError::UnsafePlace {
                    value: describe_value(context, value),
                    place: why.describe(),
                    why: why.why(),
                })
            }
        }
        last = found.offset + found.len;
    }
    script.text.push_str(&rendered[last..]);
    Ok(script)
}

/// Names a value by where it comes from in the context ("input `x`"), for messages.
pub fn describe_value(context: &JsonValue, value: &str) -> String {
    let is = |v: &JsonValue| v.as_str() == Some(value);
    if let Some(inputs) = context.get("inputs").and_then(JsonValue::as_object) {
        if let Some((name, _)) = inputs.iter().find(|(_, v)| is(v)) {
            return format!("the value of input `{name}`");
        }
    }
    if let Some(nodes) = context.get("nodes").and_then(JsonValue::as_object) {
        if let Some((id, _)) = nodes.iter().find(|(_, v)| v.get("output").is_some_and(is)) {
            return format!("the output of node `{id}`");
        }
    }
    if context.get("output").is_some_and(is) {
        return "the output of this iteration".into();
    }
    let shown: String = value.chars().take(40).collect();
    format!("the substituted value {shown:?}")
}

fn describe_render_error(e: &handlebars::RenderError) -> String {
    use handlebars::RenderErrorReason as R;
    match e.reason() {
        R::MissingVariable(Some(path)) => {
            format!("`{path}` has no value when this template is rendered")
        }
        R::MissingVariable(None) => "a value the template reads is missing".to_string(),
        other => {
            let s = other.to_string();
            let mut c = s.chars();
            match c.next() {
                Some(f) => f.to_lowercase().chain(c).collect(),
                None => "template failed to render".into(),
            }
        }
    }
}

/// True when a rendered condition counts as true: not empty, not `false`, not `0`.
pub fn is_truthy(rendered: &str) -> bool {
    let t = rendered.trim();
    !(t.is_empty() || t.eq_ignore_ascii_case("false") || t == "0")
}

/// Quotes a string for POSIX shells; leaves it alone when it has no special characters.
pub fn shell_quote(s: &str) -> Cow<'_, str> {
    let safe = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-./:=@,+%".contains(&b));
    if safe {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(format!("'{}'", s.replace('\'', r"'\''")))
    }
}

fn as_text(v: &JsonValue) -> String {
    match v {
        JsonValue::String(s) => s.clone(),
        JsonValue::Null => String::new(),
        other => other.to_string(),
    }
}

/// The helpers templates may call, as `handlebars_helper!` makes them (unit structs it
/// leaves undocumented).
#[allow(missing_docs)]
mod helpers {
    use super::{as_text, JsonValue};
    use handlebars::handlebars_helper;

    handlebars_helper!(contains: |haystack: Json, needle: Json| match haystack {
        JsonValue::Array(items) => items.iter().any(|i| as_text(i) == as_text(needle)),
        JsonValue::Object(map) => map.contains_key(&as_text(needle)),
        other => as_text(other).contains(&as_text(needle)),
    });
    handlebars_helper!(starts_with: |s: Json, prefix: Json| as_text(s).starts_with(&as_text(prefix)));
    handlebars_helper!(ends_with: |s: Json, suffix: Json| as_text(s).ends_with(&as_text(suffix)));
    handlebars_helper!(default_helper: |value: Json, fallback: Json| {
        if as_text(value).trim().is_empty() { fallback.clone() } else { value.clone() }
    });
    handlebars_helper!(trim: |s: Json| as_text(s).trim().to_string());
    handlebars_helper!(lower: |s: Json| as_text(s).to_lowercase());
    handlebars_helper!(upper: |s: Json| as_text(s).to_uppercase());
    handlebars_helper!(json: |v: Json| v.to_string());
}

fn register_helpers(hb: &mut Handlebars<'static>) {
    use helpers::*;
    hb.register_helper("contains", Box::new(contains));
    hb.register_helper("starts_with", Box::new(starts_with));
    hb.register_helper("ends_with", Box::new(ends_with));
    hb.register_helper("default", Box::new(default_helper));
    hb.register_helper("trim", Box::new(trim));
    hb.register_helper("lower", Box::new(lower));
    hb.register_helper("upper", Box::new(upper));
    hb.register_helper("json", Box::new(json));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn refs(text: &str) -> Vec<String> {
        analyze(text)
            .unwrap()
            .references
            .into_iter()
            .map(|r| r.raw)
            .collect()
    }

    #[test]
    fn finds_references_everywhere() {
        assert_eq!(
            refs("echo {{inputs.a}} {{nodes.b.output}}"),
            ["inputs.a", "nodes.b.output"]
        );
        assert_eq!(
            refs("{{#if (eq inputs.mode 'x')}}{{nodes.c.json.f}}{{/if}}"),
            ["inputs.mode", "nodes.c.json.f"]
        );
        assert_eq!(refs("{{contains output 'DONE'}}"), ["output"]);
        let a = analyze("{{#each nodes.x.json.items}}{{name}}{{/each}}").unwrap();
        assert_eq!(a.references[0].raw, "nodes.x.json.items");
        assert!(!a.references[0].in_block);
        assert!(a.references[1].in_block);
        assert!(analyze("{{{inputs.x}}}").unwrap().raw_substitution);
        assert!(!analyze("{{inputs.x}}").unwrap().raw_substitution);
    }

    #[test]
    fn syntax_errors_have_positions() {
        let e = analyze("line one\n{{#if x}}unclosed").unwrap_err();
        assert!(
            e.message.starts_with("template syntax error"),
            "{}",
            e.message
        );
        let e = analyze("a {{ b").unwrap_err();
        assert!(e.position.is_some());
    }

    #[test]
    fn shell_mode_passes_values_by_reference() {
        let mut r = Renderer::new();
        r.add(
            "t",
            "echo {{inputs.x}} \"{{inputs.x}}\" {{inputs.y}}{{#each list}} {{this}}{{/each}}",
            Mode::Shell,
        )
        .unwrap();
        r.add("p", "echo {{inputs.x}}", Mode::Plain).unwrap();
        let ctx = json!({"inputs": {"x": "a'; rm -rf / #$(id)", "y": "b"}, "list": ["b", "c"]});
        let script = r.render_script("t", &ctx).unwrap();
        assert_eq!(
            script.text,
            "echo \"$REINS_VALUE_1\" \"${REINS_VALUE_1}\" \"$REINS_VALUE_2\" \"$REINS_VALUE_2\" \"$REINS_VALUE_3\""
        );
        assert_eq!(
            script.values,
            [
                (
                    "REINS_VALUE_1".to_string(),
                    "a'; rm -rf / #$(id)".to_string()
                ),
                ("REINS_VALUE_2".to_string(), "b".to_string()),
                ("REINS_VALUE_3".to_string(), "c".to_string()),
            ]
        );
        assert_eq!(
            r.render("p", Mode::Plain, &ctx).unwrap(),
            "echo a'; rm -rf / #$(id)"
        );
        // Helpers' results are values too; triple braces stay text.
        r.add("h", "echo {{trim inputs.y}} {{{inputs.y}}}", Mode::Shell)
            .unwrap();
        let script = r.render_script("h", &ctx).unwrap();
        assert_eq!(script.text, "echo \"$REINS_VALUE_1\" b");
    }

    #[test]
    fn a_block_cannot_smuggle_a_value_into_quotes_or_nul() {
        let mut r = Renderer::new();
        r.add(
            "t",
            "{{#if inputs.q}}echo '{{/if}}{{inputs.x}}'",
            Mode::Shell,
        )
        .unwrap();
        let ctx = json!({"inputs": {"q": "yes", "x": "v"}});
        let err = r.render_script("t", &ctx).unwrap_err().to_string();
        assert!(
            err.contains("input `x`") && err.contains("single quotes"),
            "{err}"
        );
        r.add("n", "echo {{inputs.x}}", Mode::Shell).unwrap();
        let err = r
            .render_script("n", &json!({"inputs": {"x": "a\u{0}b"}}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("input `x`") && err.contains("NUL"), "{err}");
    }

    #[test]
    fn strict_mode_names_the_missing_value() {
        let mut r = Renderer::new();
        r.add("t", "{{nodes.nope.output}}", Mode::Plain).unwrap();
        let err = r
            .render("t", Mode::Plain, &json!({"nodes": {}}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("nodes.nope.output"), "{err}");
    }

    #[test]
    fn helpers_and_truthiness() {
        let r = Renderer::new();
        let ctx = json!({"output": "all DONE", "n": {"json": {"ok": true}}, "list": ["a", "b"]});
        let render = |t: &str| r.render_text(t, Mode::Plain, &ctx).unwrap();
        assert_eq!(render("{{contains output 'DONE'}}"), "true");
        assert_eq!(render("{{contains list \"b\"}}"), "true");
        assert_eq!(render("{{eq n.json.ok true}}"), "true");
        assert_eq!(render("{{default '' 'x'}}"), "x");
        assert!(is_truthy(&render("{{contains output 'DONE'}}")));
        assert!(!is_truthy(" false\n"));
        assert!(!is_truthy("0"));
        assert!(!is_truthy(""));
        assert!(is_truthy("yes"));
    }
}
