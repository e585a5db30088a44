//! `reins validate`: report every problem in workflow files.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use super::args::ValidateArgs;
use crate::diagnostic::render_all;
use crate::exit;
use crate::workflow;

/// Runs `reins validate`.
pub fn run(args: ValidateArgs) -> i32 {
    let paths = if args.paths.is_empty() {
        vec![PathBuf::from(".workflows")]
    } else {
        args.paths
    };
    let mut diags = Vec::new();
    for path in &paths {
        diags.extend(workflow::load_file(path).diagnostics);
    }
    let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let out = render_all(&diags, args.format, color);
    let _ = std::io::stdout().write_all(out.as_bytes());
    if diags.iter().any(|d| d.is_error()) {
        exit::USAGE
    } else {
        exit::SUCCESS
    }
}
