//! Command files: a Markdown prompt template (`commands/NAME.md`) run by a `command` node.
//!
//! The file may start with YAML frontmatter between two `---` lines:
//!
//! ```markdown
//! ---
//! description: Write an implementation plan for an issue
//! args:
//!   - { name: issue, description: The issue to plan, required: true }
//!   - { name: depth, default: normal }
//! ---
//! Read issue {{args.issue}} and write {{artifacts}}/plan.md ...
//! ```
//!
//! Everything after the frontmatter is the prompt, a template like any other. Spans of the
//! frontmatter and of the body are byte offsets in the `.md` file itself, so problems are
//! reported at their line and column there.

use std::path::PathBuf;
use std::sync::Arc;

use super::decode::Cx;
use super::yaml::{self, Node as Y, Value};
use crate::diagnostic::Diagnostic;
use crate::source::{SourceFile, Span, Spanned};

/// Keys of the frontmatter.
pub const FRONTMATTER_KEYS: &[&str] = &["description", "args"];
/// Keys of one declared argument.
pub const ARG_KEYS: &[&str] = &["name", "description", "required", "default"];

/// A parsed command file.
#[derive(Debug, Clone)]
pub struct CommandFile {
    /// The file, for diagnostics.
    pub file: Arc<SourceFile>,
    /// One line saying what the command does.
    pub description: Option<Spanned<String>>,
    /// The arguments a `command` node passes with `args:`, read as `{{args.NAME}}`.
    pub args: Vec<CommandArg>,
    /// The prompt template: the text after the frontmatter, spanned in the `.md` file.
    pub body: Spanned<String>,
    /// Problems found in the file itself; a command with an error must not run.
    pub diagnostics: Vec<Diagnostic>,
}

/// An argument a command file declares.
#[derive(Debug, Clone)]
pub struct CommandArg {
    /// Its name (`[A-Za-z0-9_-]+`).
    pub name: Spanned<String>,
    /// What it is for.
    pub description: Option<Spanned<String>>,
    /// A node using the command must pass it (unless it has a default).
    pub required: Option<Spanned<bool>>,
    /// The value when a node does not pass it.
    pub default: Option<Spanned<String>>,
}

impl CommandArg {
    /// True when a node must pass the argument: required and without a default.
    pub fn must_be_given(&self) -> bool {
        self.required.as_ref().is_some_and(|r| r.value) && self.default.is_none()
    }
}

impl CommandFile {
    /// Reads a command file: frontmatter (if any) and body, see [`parse_command_file`].
    pub fn parse(file: Arc<SourceFile>) -> Self {
        let (mut command, diagnostics) = parse_command_file(file);
        command.diagnostics = diagnostics;
        command
    }

    /// The declared argument of this name.
    pub fn arg(&self, name: &str) -> Option<&CommandArg> {
        self.args.iter().find(|a| a.name.value == name)
    }
}

/// Parses a command file: frontmatter (if any) and body; [`CommandFile::parse`] keeps the
/// problems in the file's `diagnostics`.
///
/// Always returns the best reading of the file — with a frontmatter that is never closed, the
/// whole file is the body — and every problem found. A command with an error must not run.
fn parse_command_file(file: Arc<SourceFile>) -> (CommandFile, Vec<Diagnostic>) {
    let mut diags = Vec::new();
    let mut description = None;
    let mut args = Vec::new();
    let body_start = match split_frontmatter(&file.text) {
        Split::None => 0,
        Split::Unclosed { open } => {
            diags.push(
                Diagnostic::error(
                    "command-frontmatter",
                    &file,
                    open,
                    "the frontmatter is never closed",
                )
                .with_help("end it with a line `---`"),
            );
            0
        }
        Split::Found {
            open,
            yaml_end,
            body_start,
        } => {
            // The YAML parser sees the frontmatter at the same byte offsets as in the file: the
            // opening `---` (and a byte-order mark) become spaces, and the rest is cut off.
            let mut masked = String::with_capacity(yaml_end);
            masked.push_str(&" ".repeat(open.end()));
            masked.push_str(&file.text[open.end()..yaml_end]);
            let front_file = SourceFile::new(&file.path, masked);
            match yaml::parse(&front_file) {
                Err(mut d) => {
                    d.file = file.clone();
                    // Nothing points into the opening line (whose byte-order mark was replaced).
                    for label in &mut d.labels {
                        if label.span.start < open.end() {
                            label.span = open;
                        }
                    }
                    diags.push(d);
                }
                Ok(root) => {
                    let mut cx = Cx::new(&file);
                    frontmatter(&mut cx, &root, open, &mut description, &mut args);
                    diags.extend(cx.into_diagnostics());
                }
            }
            body_start
        }
    };
    let body_text = &file.text[body_start..];
    if body_text.trim().is_empty() && diags.is_empty() {
        diags.push(
            Diagnostic::error(
                "empty-value",
                &file,
                Span::new(body_start, 0),
                "the command file has no prompt",
            )
            .with_help("write the prompt in Markdown after the frontmatter"),
        );
    }
    let command = CommandFile {
        body: Spanned::new(
            body_text.to_string(),
            Span::new(body_start, body_text.len()),
        ),
        file,
        description,
        args,
        diagnostics: Vec::new(),
    };
    (command, diags)
}

/// Finds command files by name: [`DirCommands`] in folders, the discovery search path
/// ([`super::discover::SearchPath`]), or the files frozen into a run (`engine::plan`).
pub trait CommandLookup {
    /// The command file for `name`, or the places searched and the names that do exist.
    fn lookup(&self, name: &str) -> Result<CommandFile, (Vec<PathBuf>, Vec<String>)>;

    /// The workflow file `name` resolves to for a `workflow:` node (project, user, bundled),
    /// or the places searched and the names that do exist. By default none is found.
    fn workflow(&self, name: &str) -> Result<Arc<SourceFile>, (Vec<String>, Vec<String>)> {
        let _ = name;
        Err((Vec::new(), Vec::new()))
    }
}

/// Looks for `NAME.md` in a list of folders, in order.
#[derive(Debug, Clone, Default)]
pub struct DirCommands {
    /// The folders, most specific first.
    pub dirs: Vec<PathBuf>,
}

impl CommandLookup for DirCommands {
    fn lookup(&self, name: &str) -> Result<CommandFile, (Vec<PathBuf>, Vec<String>)> {
        for dir in &self.dirs {
            let path = dir.join(format!("{name}.md"));
            if let Ok(file) = SourceFile::read(&path) {
                return Ok(CommandFile::parse(file));
            }
        }
        let mut available: Vec<String> = self
            .dirs
            .iter()
            .filter_map(|d| std::fs::read_dir(d).ok())
            .flatten()
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_suffix(".md"))
                    .map(str::to_string)
            })
            .collect();
        available.sort();
        available.dedup();
        Err((self.dirs.clone(), available))
    }
}

enum Split {
    None,
    Unclosed {
        open: Span,
    },
    Found {
        /// The opening `---` (with any byte-order mark before it).
        open: Span,
        /// Where the YAML ends: the start of the closing line.
        yaml_end: usize,
        /// Where the prompt starts: after the closing line.
        body_start: usize,
    },
}

/// Finds the frontmatter: a first line of `---`, and a later line of `---` (or `...`).
fn split_frontmatter(text: &str) -> Split {
    let bom = if text.starts_with('\u{feff}') { 3 } else { 0 };
    let mut lines = line_spans(text, bom);
    let Some((start, end)) = lines.next() else {
        return Split::None;
    };
    if text[start..end].trim_end() != "---" {
        return Split::None;
    }
    let open = Span::new(0, start + 3);
    for (start, end) in lines {
        let line = text[start..end].trim_end();
        if line == "---" || line == "..." {
            let body_start = text[end..]
                .strip_prefix("\r\n")
                .or_else(|| text[end..].strip_prefix('\n'))
                .map(|rest| text.len() - rest.len())
                .unwrap_or(end);
            return Split::Found {
                open,
                yaml_end: start,
                body_start,
            };
        }
    }
    Split::Unclosed { open }
}

/// Byte ranges of the lines of `text` from `from`, without their line ends.
fn line_spans(text: &str, from: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut pos = from;
    std::iter::from_fn(move || {
        if pos >= text.len() {
            return None;
        }
        let start = pos;
        let end = text[start..].find('\n').map_or(text.len(), |i| start + i);
        pos = end + 1;
        let end = if text[start..end].ends_with('\r') {
            end - 1
        } else {
            end
        };
        Some((start, end))
    })
}

/// Decodes the frontmatter mapping: `description` and `args`.
fn frontmatter(
    cx: &mut Cx,
    root: &Y,
    open: Span,
    description: &mut Option<Spanned<String>>,
    args: &mut Vec<CommandArg>,
) {
    let entries = match &root.value {
        Value::Null => return,
        Value::Map(entries) => entries,
        _ => {
            let span = if root.span.len == 0 { open } else { root.span };
            cx.error(
                "wrong-type",
                span,
                format!(
                    "the frontmatter must be a mapping, found {}",
                    root.value.kind()
                ),
            )
            .help =
                Some("write `description: ...` and `args: [...]` between the `---` lines".into());
            return;
        }
    };
    cx.check_keys(
        entries,
        &[FRONTMATTER_KEYS],
        "the command's frontmatter",
        &[],
    );
    for (key, value) in entries {
        match key.value.as_str() {
            "description" => *description = cx.string(value, "description"),
            "args" => *args = decode_args(cx, value),
            _ => {}
        }
    }
}

/// Decodes `args`: a list of names or of mappings with `name`, `description`, `required`, `default`.
fn decode_args(cx: &mut Cx, node: &Y) -> Vec<CommandArg> {
    let items = match &node.value {
        Value::Seq(items) => items,
        Value::Null => return Vec::new(),
        _ => {
            cx.error("command-frontmatter", node.span, "`args` must be a list")
                .help =
                Some("write `args: [{ name: focus, description: ..., required: true }]`".into());
            return Vec::new();
        }
    };
    let mut out: Vec<CommandArg> = Vec::new();
    for item in items {
        let entries = match &item.value {
            Value::Map(entries) => entries.as_slice(),
            // `args: [focus]`: a name alone is an optional argument.
            Value::Str(_) => &[],
            _ => {
                cx.wrong_type(item, "an argument", "a name or a mapping with `name`");
                continue;
            }
        };
        cx.check_keys(entries, &[ARG_KEYS], "an argument", &[]);
        let mut name = match &item.value {
            Value::Str(s) => Some(Spanned::new(s.clone(), item.span)),
            _ => None,
        };
        let mut arg_description = None;
        let mut required = None;
        let mut default = None;
        for (key, value) in entries {
            match key.value.as_str() {
                "name" => name = cx.string(value, "name"),
                "description" => arg_description = cx.string(value, "description"),
                "required" => required = cx.bool(value, "required"),
                "default" => default = cx.string(value, "default"),
                _ => {}
            }
        }
        let Some(name) = name else {
            if !entries.iter().any(|(k, _)| k.value == "name") {
                cx.error(
                    "command-frontmatter",
                    item.span,
                    "an argument needs a `name`",
                )
                .help = Some("write `args: [{ name: focus, required: true }]`".into());
            }
            continue;
        };
        let ok = !name.value.is_empty()
            && name
                .value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !ok {
            cx.error(
                "bad-id",
                name.span,
                format!("bad argument name `{}`", name.value),
            )
            .help = Some("use only letters, digits, `_` and `-`".into());
            continue;
        }
        if let Some(first) = out.iter().find(|a| a.name.value == name.value) {
            let d = Diagnostic::error(
                "command-frontmatter",
                cx.file(),
                name.span,
                format!("argument `{}` is declared twice", name.value),
            )
            .with_secondary(first.name.span, "first declared here")
            .with_help("remove or rename one");
            cx.push(d);
            continue;
        }
        out.push(CommandArg {
            name,
            description: arg_description,
            required,
            default,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<CommandFile, Vec<Diagnostic>> {
        match parse_command_file(SourceFile::new("commands/plan.md", text)) {
            (command, diags) if diags.is_empty() => Ok(command),
            (_, diags) => Err(diags),
        }
    }

    #[test]
    fn no_frontmatter_is_all_body() {
        let c = parse("Plan {{args.issue}}.\n").unwrap();
        assert_eq!(c.body.value, "Plan {{args.issue}}.\n");
        assert_eq!(c.body.span, Span::new(0, 21));
        assert!(c.description.is_none() && c.args.is_empty());
    }

    #[test]
    fn frontmatter_gives_description_args_and_body_span() {
        let text = "---\ndescription: Plan it\nargs:\n  - { name: issue, required: true }\n  - name: depth\n    default: normal\n  - style\n---\nPlan {{args.issue}}.\n";
        let c = parse(text).unwrap();
        assert_eq!(c.description.as_ref().unwrap().value, "Plan it");
        let names: Vec<_> = c.args.iter().map(|a| a.name.value.as_str()).collect();
        assert_eq!(names, ["issue", "depth", "style"]);
        assert!(c.args[0].must_be_given());
        assert!(!c.arg("depth").unwrap().must_be_given());
        assert!(!c.arg("style").unwrap().must_be_given());
        assert_eq!(
            c.arg("depth").unwrap().default.as_ref().unwrap().value,
            "normal"
        );
        assert_eq!(c.body.value, "Plan {{args.issue}}.\n");
        assert_eq!(&text[c.body.span.start..c.body.span.end()], c.body.value);
        // The name's span points into the .md file.
        let name = &c.args[0].name;
        assert_eq!(&text[name.span.start..name.span.end()], "issue");
        assert_eq!(c.file.line_col(name.span.start), (4, 13));
    }

    #[test]
    fn crlf_and_bom_are_fine() {
        let text = "\u{feff}---\r\ndescription: x\r\n---\r\nBody\r\n";
        let c = parse(text).unwrap();
        assert_eq!(c.description.unwrap().value, "x");
        assert_eq!(c.body.value, "Body\r\n");
        // A syntax error never points inside the byte-order mark.
        let errs = parse("\u{feff}---\n: [\n---\nBody\n").unwrap_err();
        for label in &errs[0].labels {
            assert!(errs[0].file.text.is_char_boundary(label.span.start));
        }
    }

    #[test]
    fn errors_have_lines_in_the_md_file() {
        let errs = parse("---\ndescription: ok\nargz: []\n---\nBody\n").unwrap_err();
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].code, "unknown-key");
        assert_eq!(
            errs[0].message,
            "unknown key `argz` in the command's frontmatter"
        );
        assert_eq!(errs[0].line_col(), Some((3, 1)));
        assert_eq!(errs[0].help.as_deref(), Some("did you mean `args`?"));
        assert_eq!(
            errs[0].file.text,
            "---\ndescription: ok\nargz: []\n---\nBody\n"
        );
        let errs = parse("---\nsummary: x\n---\nBody\n").unwrap_err();
        let help = errs[0].help.as_deref();
        assert_eq!(
            help,
            Some("the command's frontmatter accepts `description` and `args`")
        );

        let errs = parse("---\ndescription: [unclosed\n---\nBody\n").unwrap_err();
        assert_eq!(errs[0].code, "yaml-syntax");
        let (line, _) = errs[0].line_col().unwrap();
        assert!((2..=3).contains(&line), "line {line}");
        assert!(errs[0].file.text.ends_with("Body\n"));
    }

    #[test]
    fn bad_args_are_reported() {
        let errs = parse(
            "---\nargs:\n  - { name: a }\n  - { name: a }\n  - { description: no name }\n  - { name: 'b c', required: yes }\n  - [x]\n---\nBody\n",
        )
        .unwrap_err();
        let found: Vec<_> = errs.iter().map(|d| (d.code, d.message.as_str())).collect();
        assert_eq!(
            found,
            [
                ("command-frontmatter", "argument `a` is declared twice"),
                ("command-frontmatter", "an argument needs a `name`"),
                (
                    "wrong-type",
                    "`required` must be true or false, found a string"
                ),
                ("bad-id", "bad argument name `b c`"),
                (
                    "wrong-type",
                    "an argument must be a name or a mapping with `name`, found a list"
                ),
            ]
        );
        assert_eq!(errs[0].line_col(), Some((4, 13)));
        let errs = parse("---\nargs: focus\n---\nBody\n").unwrap_err();
        assert_eq!(errs[0].message, "`args` must be a list");
        assert_eq!(errs[0].line_col(), Some((2, 7)));
    }

    #[test]
    fn unclosed_frontmatter_and_empty_body() {
        let (command, errs) =
            parse_command_file(SourceFile::new("c.md", "---\ndescription: x\nBody\n"));
        assert_eq!(errs[0].code, "command-frontmatter");
        assert_eq!(errs[0].message, "the frontmatter is never closed");
        assert_eq!(errs[0].line_col(), Some((1, 1)));
        // The best reading: the whole file is the body.
        assert_eq!(command.body.span, Span::new(0, command.file.text.len()));
        let errs = parse("---\ndescription: x\n---\n\n").unwrap_err();
        assert_eq!(errs[0].code, "empty-value");
        assert_eq!(errs[0].message, "the command file has no prompt");
        // `---` later in the file is Markdown, not frontmatter.
        let c = parse("Title\n---\ntext\n").unwrap();
        assert_eq!(c.body.value, "Title\n---\ntext\n");
    }
}
