//! `reins schema`: print the JSON Schema of the workflow format.

use std::io::Write;

use crate::exit;
use crate::workflow::schema::workflow_schema;

/// Runs `reins schema`.
pub fn run() -> i32 {
    let mut text = serde_json::to_string_pretty(&workflow_schema()).unwrap_or_default();
    text.push('\n');
    match std::io::stdout().write_all(text.as_bytes()) {
        Ok(()) => exit::SUCCESS,
        // A closed pipe (`reins schema | head`) is not worth a message.
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => exit::SUCCESS,
        Err(err) => {
            eprintln!(
                "error: cannot write the schema: {}",
                err.to_string().to_lowercase()
            );
            exit::NODE_FAILED
        }
    }
}
