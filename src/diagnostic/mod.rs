//! Diagnostics: what is wrong in a file, where, and how to fix it.
//!
//! Problems are collected, never thrown: loading and validating a workflow returns every
//! [`Diagnostic`] it found, and [`render`] turns them into human, JSON or GitHub output.

pub mod render;

use std::sync::Arc;

use crate::source::{SourceFile, Span};

pub use render::{render_all, Format};

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Suspicious but allowed; exit code stays 0.
    Warning,
    /// The workflow cannot run.
    Error,
}

impl Severity {
    /// `error` or `warning`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// A span in a file with a short text drawn under it.
#[derive(Debug, Clone)]
pub struct Label {
    /// Where.
    pub span: Span,
    /// What to say under it (may be empty).
    pub text: String,
}

/// One problem found in a file.
#[derive(Debug, Clone)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// A stable kebab-case name for the kind of problem, like `unknown-key`.
    pub code: &'static str,
    /// What is wrong, in lowercase, without a trailing period.
    pub message: String,
    /// The file it is in.
    pub file: Arc<SourceFile>,
    /// The primary place first, then any secondary places. Empty for file-level problems.
    pub labels: Vec<Label>,
    /// How to fix it.
    pub help: Option<String>,
}

impl Diagnostic {
    /// An error at a span.
    pub fn error(
        code: &'static str,
        file: &Arc<SourceFile>,
        span: Span,
        message: impl Into<String>,
    ) -> Self {
        Self::new(Severity::Error, code, file, Some(span), message)
    }

    /// A warning at a span.
    pub fn warning(
        code: &'static str,
        file: &Arc<SourceFile>,
        span: Span,
        message: impl Into<String>,
    ) -> Self {
        Self::new(Severity::Warning, code, file, Some(span), message)
    }

    /// An error about a whole file (no span), such as one that cannot be read.
    pub fn file_error(
        code: &'static str,
        file: &Arc<SourceFile>,
        message: impl Into<String>,
    ) -> Self {
        Self::new(Severity::Error, code, file, None, message)
    }

    fn new(
        severity: Severity,
        code: &'static str,
        file: &Arc<SourceFile>,
        span: Option<Span>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            severity,
            code,
            message: message.into(),
            file: file.clone(),
            labels: span
                .map(|span| Label {
                    span,
                    text: String::new(),
                })
                .into_iter()
                .collect(),
            help: None,
        }
    }

    /// Sets the text under the primary span.
    pub fn with_label(mut self, text: impl Into<String>) -> Self {
        if let Some(first) = self.labels.first_mut() {
            first.text = text.into();
        }
        self
    }

    /// Adds a secondary place.
    pub fn with_secondary(mut self, span: Span, text: impl Into<String>) -> Self {
        self.labels.push(Label {
            span,
            text: text.into(),
        });
        self
    }

    /// Sets how to fix it.
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Sets the text under the primary span, in place.
    pub fn set_label(&mut self, text: impl Into<String>) -> &mut Self {
        if let Some(first) = self.labels.first_mut() {
            first.text = text.into();
        }
        self
    }

    /// Sets how to fix it, if there is something to say.
    pub fn with_help_opt(mut self, help: Option<String>) -> Self {
        if help.is_some() {
            self.help = help;
        }
        self
    }

    /// True for errors.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// 1-based line and column of the primary span, if any.
    pub fn line_col(&self) -> Option<(usize, usize)> {
        self.labels
            .first()
            .map(|l| self.file.line_col(l.span.start))
    }
}

/// Suggests the candidate closest to `name`, if one is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(name, c), c))
        // Short names score low on similarity: one typo (a wrong, missing, extra or swapped
        // letter) in a name of two or more letters still counts as close.
        .filter(|(score, c)| {
            *score > 0.8
                || (name.len() > 2 && c.contains(name))
                || (name.len() >= 2 && c.len() >= 2 && strsim::osa_distance(name, c) == 1)
        })
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// `did you mean `x`?` for the closest candidate, if any.
pub fn suggestion<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    did_you_mean(name, candidates).map(|c| format!("did you mean `{c}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(
            did_you_mean("depend_on", ["depends_on", "bash"]),
            Some("depends_on")
        );
        assert_eq!(did_you_mean("buld", ["build", "test"]), Some("build"));
        assert_eq!(did_you_mean("zzz", ["build", "test"]), None);
        assert_eq!(did_you_mean("cj", ["ci", "docs"]), Some("ci"));
        assert_eq!(did_you_mean("x", ["ci", "y"]), None);
    }
}
