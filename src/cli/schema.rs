//! `reins schema`: print the JSON Schema of the workflow format.

use super::error::{self, Outcome};
use crate::workflow::schema::workflow_schema;

/// Runs `reins schema`.
pub(super) fn run() -> error::Result {
    let mut text = serde_json::to_string_pretty(&workflow_schema()).unwrap_or_default();
    text.push('\n');
    super::common::print(&text)?;
    Ok(Outcome::Success)
}
