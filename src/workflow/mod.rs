//! The workflow language: load a YAML file into a typed [`Workflow`], every value spanned.

pub mod command_file;
pub mod decode;
pub mod discover;
pub mod duration;
pub mod model;
pub mod schema;
pub mod shell_context;
pub mod template;
pub mod validate;
pub mod yaml;

use std::path::Path;
use std::sync::Arc;

pub use model::*;

use crate::diagnostic::Diagnostic;
use crate::source::SourceFile;

/// The result of loading one file: the model if the file was a mapping, and every problem.
pub struct Loaded {
    /// The file.
    pub file: Arc<SourceFile>,
    /// The best model that could be built (`None` for a syntax error or a non-mapping).
    pub workflow: Option<Workflow>,
    /// Ids of nodes whose kind was broken; they exist but are not in the model.
    pub dropped_ids: Vec<String>,
    /// Everything found wrong so far.
    pub diagnostics: Vec<Diagnostic>,
}

/// Loads a workflow from text. `file.path`'s stem is the default name.
pub fn load_source(file: Arc<SourceFile>) -> Loaded {
    let default_name = file
        .path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "workflow".into());
    match yaml::parse(&file) {
        Err(d) => Loaded {
            file,
            workflow: None,
            dropped_ids: Vec::new(),
            diagnostics: vec![d],
        },
        Ok(root) => {
            let decoded = decode::decode(&file, &root, &default_name);
            Loaded {
                file,
                workflow: decoded.workflow,
                dropped_ids: decoded.dropped_ids,
                diagnostics: decoded.diagnostics,
            }
        }
    }
}

/// Reads and loads a workflow file. A file that cannot be read is one diagnostic.
pub fn load_file(path: &Path) -> Loaded {
    match SourceFile::read(path) {
        Ok(file) => load_source(file),
        Err(err) => {
            let file = SourceFile::new(crate::source::display_path(path), String::new());
            let d = Diagnostic::file_error(
                "unreadable",
                &file,
                format!(
                    "cannot read the file: {}",
                    lowercase_first(&err.to_string())
                ),
            )
            .with_help_opt(
                (err.kind() == std::io::ErrorKind::InvalidData)
                    .then(|| "workflow files are UTF-8 text; save it as UTF-8".to_string()),
            );
            Loaded {
                file,
                workflow: None,
                dropped_ids: Vec::new(),
                diagnostics: vec![d],
            }
        }
    }
}

/// `Stream did not...` -> `stream did not...`: messages read on from a colon.
fn lowercase_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}
