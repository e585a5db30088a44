//! `reins validate`: report every problem in workflow files.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use super::args::ValidateArgs;
use super::error::{self, Error, Outcome};
use crate::diagnostic::render_all;
use crate::workflow;

/// Runs `reins validate`.
pub(super) fn run(args: ValidateArgs) -> error::Result {
    let paths = if args.paths.is_empty() {
        vec![PathBuf::from(".workflows")]
    } else {
        args.paths
    };
    let mut files = Vec::new();
    for path in &paths {
        match workflow_files(path) {
            Ok(found) if found.is_empty() => {
                return Err(Error::usage(format!(
                    "no workflow files (*.yaml, *.yml) in {}",
                    path.display()
                )));
            }
            Ok(found) => files.extend(found),
            Err(e) => return Err(e),
        }
    }
    let mut diags = Vec::new();
    for file in &files {
        diags.extend(workflow::validate::check_file(file).1);
    }
    let color = super::use_color(std::io::stdout().is_terminal());
    let out = render_all(&diags, args.format, color);
    super::common::print(&out)?;
    let errors = diags.iter().filter(|d| d.is_error()).count();
    let warnings = diags.len() - errors;
    if args.format == crate::diagnostic::Format::Human {
        let noun = if files.len() == 1 { "file" } else { "files" };
        if errors == 0 {
            eprintln!(
                "{} {noun} valid{}",
                files.len(),
                plural_suffix(warnings, "warning")
            );
        } else {
            eprintln!(
                "{errors} error{}{} in {} {noun}",
                if errors == 1 { "" } else { "s" },
                plural_suffix(warnings, "warning"),
                files.len()
            );
        }
    }
    if errors > 0 {
        Err(Error::Invalid)
    } else {
        Ok(Outcome::Success)
    }
}

fn plural_suffix(n: usize, word: &str) -> String {
    match n {
        0 => String::new(),
        1 => format!(", 1 {word}"),
        n => format!(", {n} {word}s"),
    }
}

/// The workflow files a path names: the file itself, or the `*.yaml`/`*.yml` files of a folder.
fn workflow_files(path: &Path) -> Result<Vec<PathBuf>, Error> {
    let meta = std::fs::metadata(path).map_err(|e| {
        Error::usage(match e.kind() {
            std::io::ErrorKind::NotFound if path == Path::new(".workflows") => {
                "no `.workflows/` folder here; pass workflow files or folders, or run `reins init`"
                    .to_string()
            }
            _ => format!(
                "cannot read {}: {}",
                path.display(),
                e.to_string().to_lowercase()
            ),
        })
    })?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| Error::usage(format!("cannot read {}: {e}", path.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
        })
        .collect();
    files.sort();
    Ok(files)
}
