//! The Codex CLI in tests: where it is, and a scratch `CODEX_HOME` whose `config.toml` points
//! it at the Responses API stand-in with short retries.

use std::path::{Path, PathBuf};

use super::responses_api::ResponsesApi;

/// Where `.ci/install-codex` puts the native binary, relative to the crate root.
pub const INSTALLED_CODEX: &str =
    ".tools/codex/node_modules/@openai/codex-linux-x64/vendor/x86_64-unknown-linux-musl/bin/codex";

/// The pinned Codex CLI: `$REINS_TEST_CODEX`, else the one `.ci/install-codex` installed.
/// Missing on CI (`CI` set) fails the test; a local run prints a notice and gets `None`.
pub fn require_codex() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("REINS_TEST_CODEX").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "REINS_TEST_CODEX={} does not exist; run `.ci/install-codex`",
            path.display()
        );
        return Some(path);
    }
    let installed = Path::new(env!("CARGO_MANIFEST_DIR")).join(INSTALLED_CODEX);
    if installed.is_file() {
        return Some(installed);
    }
    let on_ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    assert!(
        !on_ci,
        "the Codex CLI is not installed: run `.ci/install-codex` (or set REINS_TEST_CODEX to \
         the binary) before the tests"
    );
    eprintln!(
        "note: skipping a real-CLI test: run `.ci/install-codex` or set REINS_TEST_CODEX to run it"
    );
    None
}

/// Writes `home/config.toml` for the stand-in and returns the environment Codex needs:
/// `CODEX_HOME` and the provider's key. Codex retries a failed request once, not five times.
pub fn codex_env(api: &ResponsesApi, home: &Path) -> Vec<(String, String)> {
    std::fs::create_dir_all(home).expect("create CODEX_HOME");
    let config = format!(
        r#"model = "mock-model"
model_provider = "mock"

[model_providers.mock]
name = "mock"
base_url = "{}"
env_key = "REINS_TEST_CODEX_KEY"
wire_api = "responses"
request_max_retries = 1
stream_max_retries = 1
stream_idle_timeout_ms = 600000
"#,
        api.base_url()
    );
    std::fs::write(home.join("config.toml"), config).expect("write config.toml");
    vec![
        ("CODEX_HOME".into(), home.display().to_string()),
        ("REINS_TEST_CODEX_KEY".into(), "sk-test-000".into()),
    ]
}
