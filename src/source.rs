//! Source files and spans: every parsed value remembers where it came from.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The largest workflow or command file reins reads.
pub const MAX_SOURCE_BYTES: usize = 8 * 1024 * 1024;

/// A file's text, kept so diagnostics can show snippets of it.
#[derive(Debug)]
pub struct SourceFile {
    /// The path as the user would recognise it (relative where it can be).
    pub path: PathBuf,
    /// The whole text.
    pub text: String,
    line_starts: Vec<usize>,
}

impl SourceFile {
    /// Wraps `text` read from `path`.
    pub fn new(path: impl Into<PathBuf>, text: impl Into<String>) -> Arc<Self> {
        let text = text.into();
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Arc::new(Self {
            path: path.into(),
            text,
            line_starts,
        })
    }

    /// Reads a file from disk.
    ///
    /// Only a regular file of at most [`MAX_SOURCE_BYTES`] is read; anything else (a FIFO, a
    /// device like `/dev/zero`, a folder, a bigger file) is refused at once, without waiting on
    /// it or reading it whole. The file is opened without blocking, so a FIFO with no writer
    /// cannot hang the read, and is checked after opening, so it cannot be swapped in between.
    pub fn read(path: &Path) -> std::io::Result<Arc<Self>> {
        use std::io::{Error, ErrorKind, Read};
        let mut options = std::fs::OpenOptions::new();
        options.read(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits());
        }
        let file = options.open(path)?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            let what = if meta.is_dir() {
                "a folder"
            } else {
                "not a regular file (a device, a FIFO or a socket)"
            };
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("it is {what}; reins reads workflows and commands from regular files"),
            ));
        }
        let too_big = || {
            Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "it is larger than {} MiB, the most reins reads from a workflow or command file",
                    MAX_SOURCE_BYTES / (1024 * 1024)
                ),
            )
        };
        if meta.len() > MAX_SOURCE_BYTES as u64 {
            return Err(too_big());
        }
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        file.take(MAX_SOURCE_BYTES as u64 + 1)
            .read_to_end(&mut bytes)?;
        if bytes.len() > MAX_SOURCE_BYTES {
            return Err(too_big());
        }
        let text = String::from_utf8(bytes).map_err(|_| {
            Error::new(ErrorKind::InvalidData, "stream did not contain valid UTF-8")
        })?;
        Ok(Self::new(display_path(path), text))
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= offset) - 1;
        let start = self.line_starts[line];
        let col = self.text[start..floor_char_boundary(&self.text, offset)]
            .chars()
            .count();
        (line + 1, col + 1)
    }

    /// Byte offset of a 1-based line and character column.
    pub fn offset_of(&self, line: usize, col: usize) -> usize {
        let Some(&start) = self.line_starts.get(line.saturating_sub(1)) else {
            return self.text.len();
        };
        let rest = &self.text[start..];
        let within = rest
            .char_indices()
            .nth(col.saturating_sub(1))
            .map(|(i, _)| i)
            .unwrap_or(rest.len());
        start + within
    }

    /// The text of 1-based line `line`, without its newline.
    pub fn line_text(&self, line: usize) -> &str {
        let Some(&start) = self.line_starts.get(line.saturating_sub(1)) else {
            return "";
        };
        let end = self
            .line_starts
            .get(line)
            .map(|&e| e - 1)
            .unwrap_or(self.text.len());
        self.text[start..end.max(start)].trim_end_matches('\r')
    }

    /// The source text a span covers.
    pub fn slice(&self, span: Span) -> &str {
        let start = floor_char_boundary(&self.text, span.start);
        let end = floor_char_boundary(&self.text, span.end());
        &self.text[start..end.max(start)]
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Shows a path relative to the current directory when it is below it.
pub fn display_path(path: &Path) -> PathBuf {
    if let Ok(cwd) = std::env::current_dir() {
        if let Ok(rel) = path.strip_prefix(&cwd) {
            return rel.to_path_buf();
        }
    }
    path.to_path_buf()
}

/// A byte range in a [`SourceFile`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Span {
    /// Byte offset of the first byte.
    pub start: usize,
    /// Length in bytes (0 for a point).
    pub len: usize,
}

impl Span {
    /// A span from a start offset and a length.
    pub fn new(start: usize, len: usize) -> Self {
        Self { start, len }
    }

    /// One past the last byte.
    pub fn end(self) -> usize {
        self.start + self.len
    }
}

/// A value with the span it was parsed from.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Spanned<T> {
    /// The value.
    pub value: T,
    /// Where it stands in its file.
    pub span: Span,
}

impl<T> Spanned<T> {
    /// Pairs a value with its span.
    pub fn new(value: T, span: Span) -> Self {
        Self { value, span }
    }

    /// Maps the value, keeping the span.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Spanned<U> {
        Spanned {
            value: f(self.value),
            span: self.span,
        }
    }
}

impl<T> std::ops::Deref for Spanned<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: fmt::Debug> fmt::Debug for Spanned<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.value.fmt(f)
    }
}

impl<T: fmt::Display> fmt::Display for Spanned<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.value.fmt(f)
    }
}

impl<T: schemars::JsonSchema> schemars::JsonSchema for Spanned<T> {
    fn inline_schema() -> bool {
        T::inline_schema()
    }
    fn schema_name() -> std::borrow::Cow<'static, str> {
        T::schema_name()
    }
    fn schema_id() -> std::borrow::Cow<'static, str> {
        T::schema_id()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        T::json_schema(generator)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_roundtrip() {
        let f = SourceFile::new("x.yaml", "ab\ncé d\n\nz");
        assert_eq!(f.line_col(0), (1, 1));
        assert_eq!(f.line_col(3), (2, 1));
        let d = f.text.find('d').unwrap();
        assert_eq!(f.line_col(d), (2, 4));
        assert_eq!(f.offset_of(2, 4), d);
        assert_eq!(f.line_text(2), "cé d");
        assert_eq!(f.line_text(3), "");
        assert_eq!(f.line_text(4), "z");
    }
}
