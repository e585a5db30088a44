//! Embeds the bundled workflows (`workflows/*.yaml`) and command files (`commands/*.md`) in the
//! binary: writes `$OUT_DIR/bundled.rs`, a table of `Embedded { file_name, text }` built with
//! `include_str!`, so adding a file to either folder needs no code change.
//!
//! The same tables are generated from `tests/data/bundled/` for the unit tests only, which
//! proves the mechanism on real files while the shipped folders may be empty.

use std::fmt::Write as _;
use std::path::Path;
use std::{env, fs};

fn main() {
    let root = env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let root = Path::new(&root);
    let out_dir = env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    let mut code = String::new();
    // Watch build.rs itself so Cargo never falls back to scanning the whole package.
    println!("cargo:rerun-if-changed=build.rs");
    table(
        &mut code,
        root,
        "workflows",
        &["yaml", "yml"],
        "BUNDLED_WORKFLOWS",
        "",
    );
    table(&mut code, root, "commands", &["md"], "BUNDLED_COMMANDS", "");
    let fixture = "#[cfg(test)]\n";
    table(
        &mut code,
        root,
        "tests/data/bundled/workflows",
        &["yaml", "yml"],
        "FIXTURE_WORKFLOWS",
        fixture,
    );
    table(
        &mut code,
        root,
        "tests/data/bundled/commands",
        &["md"],
        "FIXTURE_COMMANDS",
        fixture,
    );
    fs::write(Path::new(&out_dir).join("bundled.rs"), code).expect("write bundled.rs");
}

/// Writes `static NAME: &[Embedded]` with every file of `dir` whose extension is in `exts`,
/// sorted by file name. A missing folder is an empty table.
fn table(code: &mut String, root: &Path, dir: &str, exts: &[&str], name: &str, attr: &str) {
    let path = root.join(dir);
    let mut files = Vec::new();
    if let Ok(entries) = fs::read_dir(&path) {
        // A folder that exists is watched: a file added, changed or removed re-runs this script.
        println!("cargo:rerun-if-changed={}", path.display());
        for entry in entries.flatten() {
            let file_path = entry.path();
            let Some(file_name) = file_path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let ext = file_path.extension().and_then(|e| e.to_str()).unwrap_or("");
            if file_name.starts_with('.') || !exts.contains(&ext) || !file_path.is_file() {
                continue;
            }
            files.push((file_name.to_string(), file_path.display().to_string()));
        }
    }
    files.sort();
    let _ = writeln!(code, "{attr}pub(crate) static {name}: &[Embedded] = &[");
    for (file_name, full) in files {
        let _ = writeln!(
            code,
            "    Embedded {{ file_name: {file_name:?}, text: include_str!({full:?}) }},"
        );
    }
    let _ = writeln!(code, "];");
}
