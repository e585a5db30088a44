//! `reins list`: the workflows found in the project, the user-global folder and the binary.

use std::fmt::Write as _;
use std::io::Write;

use serde_json::json;

use super::args::{ListArgs, ListFormat};
use super::error::{self, Outcome};
use crate::workflow::discover::{pretty_path, FileKind, Found, Listed, SearchPath};
use crate::workflow::validate::validate;

/// One line of the listing.
struct Row {
    listed: Listed,
    description: Option<String>,
    valid: bool,
}

/// Runs `reins list`.
pub(super) fn run(args: ListArgs) -> error::Result {
    let search = SearchPath::from_env();
    let rows = rows(&search);
    let out = match args.format {
        ListFormat::Text => text(&search, &rows),
        ListFormat::Json => json(&rows),
    };
    let _ = std::io::stdout().write_all(out.as_bytes());
    Ok(Outcome::Success)
}

/// Every workflow found, loaded to read its description and see whether it is valid.
fn rows(search: &SearchPath) -> Vec<Row> {
    search
        .list(FileKind::Workflow)
        .into_iter()
        .map(|listed| {
            // A file that does not load or validate is still listed, marked invalid.
            let loaded = listed.found.load_workflow();
            let diagnostics = validate(&loaded, search);
            Row {
                description: loaded.workflow.and_then(|w| w.description).map(|d| d.value),
                valid: !diagnostics.iter().any(|d| d.is_error()),
                listed,
            }
        })
        .collect()
}

fn text(search: &SearchPath, rows: &[Row]) -> String {
    if rows.is_empty() {
        let mut places = search.searched(FileKind::Workflow);
        let bundled = places.pop().unwrap_or_default();
        return format!(
            "no workflows found (searched {} and {bundled})\nhelp: add one as `.workflows/NAME.yaml`; `reins validate` checks it\n",
            places.join(", ")
        );
    }
    let cells: Vec<[String; 4]> = rows
        .iter()
        .map(|row| {
            let found = &row.listed.found;
            let path = shown_path(found);
            let mut about = if row.valid {
                row.description
                    .as_deref()
                    .and_then(|d| d.lines().next())
                    .unwrap_or("")
                    .trim()
                    .to_string()
            } else {
                format!("(invalid: run reins validate {path})")
            };
            if !row.listed.shadows.is_empty() {
                let hidden: Vec<_> = row
                    .listed
                    .shadows
                    .iter()
                    .map(|f| {
                        if f.origin == found.origin {
                            // A `.yml` next to a `.yaml` of the same name.
                            shown_path(f)
                        } else {
                            f.origin.to_string()
                        }
                    })
                    .collect();
                if !about.is_empty() {
                    about.push_str("  ");
                }
                let _ = write!(about, "(shadows {})", hidden.join(", "));
            }
            [found.name.clone(), found.origin.to_string(), path, about]
        })
        .collect();
    let header = [
        "NAME".to_string(),
        "SOURCE".to_string(),
        "PATH".to_string(),
        "DESCRIPTION".to_string(),
    ];
    let mut widths = [0; 3];
    for row in std::iter::once(&header).chain(&cells) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&cells) {
        let line = format!(
            "{:w0$}  {:w1$}  {:w2$}  {}",
            row[0],
            row[1],
            row[2],
            row[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn shown_path(found: &Found) -> String {
    pretty_path(&found.path).display().to_string()
}

fn json(rows: &[Row]) -> String {
    let list: Vec<_> = rows
        .iter()
        .map(|row| {
            let found = &row.listed.found;
            let shadows: Vec<_> = row
                .listed
                .shadows
                .iter()
                .map(|f| json!({ "source": f.origin.as_str(), "path": f.path.display().to_string() }))
                .collect();
            json!({
                "name": found.name,
                "source": found.origin.as_str(),
                "path": found.path.display().to_string(),
                "description": row.description,
                "valid": row.valid,
                "shadows": shadows,
            })
        })
        .collect();
    let mut s = serde_json::to_string_pretty(&list).unwrap_or_default();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn nothing_found_says_where_it_looked() {
        let search = SearchPath::new(Path::new("/nonexistent/x"), |k| {
            (k == "REINS_HOME").then(|| "/nonexistent/home".into())
        })
        .with_bundled(&[], &[]);
        let rows = rows(&search);
        assert!(rows.is_empty());
        assert_eq!(
            text(&search, &rows),
            "no workflows found (searched .workflows/, $REINS_HOME/workflows/ and the bundled workflows)\nhelp: add one as `.workflows/NAME.yaml`; `reins validate` checks it\n"
        );
        assert_eq!(json(&rows), "[]\n");
    }
}
