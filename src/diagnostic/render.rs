//! Rendering diagnostics for people (`human`), programs (`json`) and GitHub Actions (`github`).

use std::fmt::Write as _;

use super::{Diagnostic, Severity};

/// Output format of diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// `file:line:col: error: message`, a source snippet and a hint.
    #[default]
    Human,
    /// A JSON array of objects, one per diagnostic.
    Json,
    /// `::error file=..,line=..,col=..::message` workflow commands for GitHub Actions.
    Github,
}

/// Renders all diagnostics in one format. `color` applies to `human` only.
pub fn render_all(diags: &[Diagnostic], format: Format, color: bool) -> String {
    match format {
        Format::Human => {
            let mut out = String::new();
            for d in diags {
                out.push_str(&human(d, color));
                out.push('\n');
            }
            out
        }
        Format::Json => {
            let list: Vec<_> = diags.iter().map(json).collect();
            let mut s = serde_json::to_string_pretty(&list).unwrap_or_default();
            s.push('\n');
            s
        }
        Format::Github => diags.iter().map(github).collect(),
    }
}

struct Paint {
    on: bool,
}

impl Paint {
    fn wrap(&self, code: &str, text: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
    fn severity(&self, s: Severity) -> String {
        match s {
            Severity::Error => self.wrap("1;31", "error"),
            Severity::Warning => self.wrap("1;33", "warning"),
        }
    }
    fn blue(&self, text: &str) -> String {
        self.wrap("1;34", text)
    }
    fn bold(&self, text: &str) -> String {
        self.wrap("1", text)
    }
}

/// One diagnostic as a person reads it.
pub fn human(d: &Diagnostic, color: bool) -> String {
    let p = Paint { on: color };
    let path = d.file.path.display().to_string();
    let mut out = String::new();
    let location = match d.line_col() {
        Some((line, col)) => format!("{path}:{line}:{col}"),
        None => path,
    };
    let _ = writeln!(
        out,
        "{}: {}: {}",
        p.bold(&location),
        p.severity(d.severity),
        p.bold(&d.message)
    );
    if !d.labels.is_empty() {
        let mut lines: Vec<(usize, usize, usize, &str, bool)> = Vec::new();
        for (i, label) in d.labels.iter().enumerate() {
            let (line, col) = d.file.line_col(label.span.start);
            let text = d.file.line_text(line);
            // Underline within the first line of the span, at least one caret.
            let line_chars = text.chars().count();
            let span_text = d.file.slice(label.span);
            let first_line = span_text.split('\n').next().unwrap_or("");
            let width = first_line.chars().count().max(1);
            let width = width.min(line_chars.saturating_sub(col - 1).max(1));
            lines.push((line, col, width, label.text.as_str(), i == 0));
        }
        let gutter = lines
            .iter()
            .map(|l| l.0)
            .max()
            .unwrap_or(1)
            .to_string()
            .len();
        let pad = " ".repeat(gutter);
        let _ = writeln!(out, "{pad} {}", p.blue("|"));
        let mut order: Vec<usize> = (0..lines.len()).collect();
        order.sort_by_key(|&i| (lines[i].0, lines[i].1));
        let mut last_line = 0;
        for i in order {
            let (line, col, width, text, primary) = lines[i];
            if last_line != 0 && line > last_line + 1 {
                let _ = writeln!(out, "{}", p.blue("..."));
            }
            if line != last_line {
                let _ = writeln!(
                    out,
                    "{} {} {}",
                    p.blue(&format!("{line:>gutter$}")),
                    p.blue("|"),
                    d.file.line_text(line)
                );
            }
            last_line = line;
            let marker = if primary { "^" } else { "-" }.repeat(width);
            let marker = if primary {
                match d.severity {
                    Severity::Error => p.wrap("1;31", &marker),
                    Severity::Warning => p.wrap("1;33", &marker),
                }
            } else {
                p.blue(&marker)
            };
            let label = if text.is_empty() {
                String::new()
            } else {
                format!(" {text}")
            };
            let _ = writeln!(
                out,
                "{pad} {} {}{marker}{label}",
                p.blue("|"),
                " ".repeat(col - 1)
            );
        }
    }
    if let Some(help) = &d.help {
        let _ = writeln!(
            out,
            "{pad} {} {}: {help}",
            p.blue("="),
            p.bold("help"),
            pad = " ".repeat(gutter_width(d))
        );
    }
    out
}

fn gutter_width(d: &Diagnostic) -> usize {
    d.labels
        .iter()
        .map(|l| d.file.line_col(l.span.start).0)
        .max()
        .unwrap_or(1)
        .to_string()
        .len()
}

/// One diagnostic as a JSON object.
pub fn json(d: &Diagnostic) -> serde_json::Value {
    let (line, column, end_line, end_column) = match d.labels.first() {
        Some(l) => {
            let (line, col) = d.file.line_col(l.span.start);
            let (el, ec) = d.file.line_col(l.span.end());
            (Some(line), Some(col), Some(el), Some(ec))
        }
        None => (None, None, None, None),
    };
    serde_json::json!({
        "severity": d.severity.as_str(),
        "code": d.code,
        "file": d.file.path.display().to_string(),
        "line": line,
        "column": column,
        "end_line": end_line,
        "end_column": end_column,
        "message": d.message,
        "label": d.labels.first().map(|l| l.text.as_str()).filter(|t| !t.is_empty()),
        "help": d.help,
    })
}

/// One diagnostic as a GitHub Actions workflow command (an annotation on the PR diff).
pub fn github(d: &Diagnostic) -> String {
    let mut props = format!(
        "file={}",
        escape_property(&d.file.path.display().to_string())
    );
    if let Some(l) = d.labels.first() {
        let (line, col) = d.file.line_col(l.span.start);
        let (end_line, end_col) = d.file.line_col(l.span.end());
        let _ = write!(props, ",line={line},col={col},endLine={end_line}");
        if end_line == line {
            let _ = write!(props, ",endColumn={end_col}");
        }
    }
    let _ = write!(
        props,
        ",title={}",
        escape_property(&format!("reins {}", d.code))
    );
    let mut message = d.message.clone();
    if let Some(help) = &d.help {
        message.push_str("\nhelp: ");
        message.push_str(help);
    }
    format!(
        "::{} {props}::{}\n",
        d.severity.as_str(),
        escape_data(&message)
    )
}

fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{SourceFile, Span};

    #[test]
    fn human_points_at_the_span() {
        let f = SourceFile::new("wf.yaml", "nodes:\n  - id: a\n    depends_on: [buld]\n");
        let start = f.text.find("buld").unwrap();
        let d = Diagnostic::error(
            "unknown-dependency",
            &f,
            Span::new(start, 4),
            "unknown dependency `buld`",
        )
        .with_label("no node has this id")
        .with_help("did you mean `build`?");
        let out = human(&d, false);
        assert_eq!(
            out,
            "wf.yaml:3:18: error: unknown dependency `buld`\n  |\n3 |     depends_on: [buld]\n  |                  ^^^^ no node has this id\n  = help: did you mean `build`?\n"
        );
    }

    #[test]
    fn github_escapes() {
        let f = SourceFile::new("a,b.yaml", "x: 1\n");
        let d = Diagnostic::error("unknown-key", &f, Span::new(0, 1), "50% bad\nreally");
        assert_eq!(
            github(&d),
            "::error file=a%2Cb.yaml,line=1,col=1,endLine=1,endColumn=2,title=reins unknown-key::50%25 bad%0Areally\n"
        );
    }
}
