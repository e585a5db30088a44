//! Finding, loading and validating the workflow a command names.

use std::io::{IsTerminal, Write};

use super::Error;
use crate::diagnostic::{render_all, Format};
use crate::workflow::discover::{self, SearchPath};
use crate::workflow::{validate, Workflow};

/// A workflow that passed validation, with where it came from.
pub(super) struct Valid {
    /// The workflow.
    pub workflow: Workflow,
    /// Where its command files are looked up.
    pub commands: SearchPath,
}

/// Resolves a workflow name or path, loads and validates it. Diagnostics (warnings too) go to
/// stderr; an unknown or invalid workflow is a usage error.
pub(super) fn valid_workflow(name_or_path: &str) -> Result<Valid, Error> {
    let found = discover::resolve_workflow(name_or_path)
        .map_err(|e| Error::usage_with_help(e.to_string(), e.help().map(|h| h.to_string())))?;
    let loaded = found.load_workflow();
    let commands = SearchPath::for_workflow(&found.path);
    let diagnostics = validate::validate(&loaded, &commands);
    if !diagnostics.is_empty() {
        let color = super::use_color(std::io::stderr().is_terminal());
        let _ =
            std::io::stderr().write_all(render_all(&diagnostics, Format::Human, color).as_bytes());
    }
    match loaded.workflow {
        Some(workflow) if !diagnostics.iter().any(|d| d.is_error()) => {
            Ok(Valid { workflow, commands })
        }
        _ => Err(Error::usage(format!(
            "`{}` is not a valid workflow",
            found.path.display()
        ))),
    }
}
