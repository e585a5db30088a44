//! The Claude Code CLI in tests: where it is, how it reaches the stand-in API, where it works.

use std::path::{Path, PathBuf};

use super::mock_api::MockApi;

/// Where `.ci/install-claude` puts the native binary, relative to the crate root.
pub const INSTALLED_CLAUDE: &str =
    ".tools/claude/node_modules/@anthropic-ai/claude-code-linux-x64/claude";

/// The pinned Claude CLI: `$REINS_TEST_CLAUDE`, else the one `.ci/install-claude` installed.
///
/// When it is missing, a test on CI (`CI` set) fails, saying how to install it; a local run
/// prints a notice and gets `None`, so the test can return early.
pub fn require_claude() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("REINS_TEST_CLAUDE").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "REINS_TEST_CLAUDE={} does not exist; run `.ci/install-claude`",
            path.display()
        );
        return Some(path);
    }
    let installed = Path::new(env!("CARGO_MANIFEST_DIR")).join(INSTALLED_CLAUDE);
    if installed.is_file() {
        return Some(installed);
    }
    let on_ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    assert!(
        !on_ci,
        "the Claude CLI is not installed: run `.ci/install-claude` (or set REINS_TEST_CLAUDE \
         to the binary) before the tests"
    );
    eprintln!(
        "note: skipping a real-CLI test: run `.ci/install-claude` or set REINS_TEST_CLAUDE to run it"
    );
    None
}

/// The environment that points the CLI at `api` with its state under `home`, and turns off
/// everything that would reach the network or retry for long.
pub fn claude_env(api: &MockApi, home: &Path) -> Vec<(String, String)> {
    [
        ("ANTHROPIC_BASE_URL", api.base_url()),
        ("ANTHROPIC_API_KEY", "sk-ant-test-000".to_string()),
        ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1".into()),
        ("DISABLE_AUTOUPDATER", "1".into()),
        ("DISABLE_TELEMETRY", "1".into()),
        ("DISABLE_ERROR_REPORTING", "1".into()),
        ("CLAUDE_CODE_MAX_RETRIES", "1".into()),
        ("IS_SANDBOX", "1".into()),
        ("HOME", home.display().to_string()),
        (
            "CLAUDE_CONFIG_DIR",
            home.join(".claude").display().to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Folders for one test: a `home` for the CLI's state, a `cwd` to work in, a `node` folder
/// for the prompt and transcript. Removed when dropped.
pub struct Sandbox {
    _root: tempfile::TempDir,
    /// `$HOME` of the CLI.
    pub home: PathBuf,
    /// The agent's working directory.
    pub cwd: PathBuf,
    /// The node's folder.
    pub node: PathBuf,
}

impl Sandbox {
    /// Creates the folders.
    pub fn new() -> Sandbox {
        let root = tempfile::Builder::new()
            .prefix("reins-agent-")
            .tempdir()
            .expect("temp dir");
        let path = root.path().canonicalize().expect("canonical temp dir");
        let (home, cwd, node) = (path.join("home"), path.join("work"), path.join("node"));
        for dir in [&home, &cwd, &node] {
            std::fs::create_dir_all(dir).expect("create sandbox folder");
        }
        Sandbox {
            _root: root,
            home,
            cwd,
            node,
        }
    }

    /// The transcript the run wrote.
    pub fn transcript(&self) -> String {
        std::fs::read_to_string(self.node.join("transcript.jsonl")).unwrap_or_default()
    }
}

/// The scripted fake CLI (`tests/support/fake-claude`): it prints the lines of the file named
/// by `$FAKE_CLAUDE_SCRIPT` and obeys `@` directives in it (see the script).
pub fn fake_claude() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/fake-claude")
}

/// True while `pid` is a live process (a zombie counts as dead: it only waits to be reaped).
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // The state follows the parenthesised command name.
            let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
            !matches!(state.and_then(|s| s.chars().next()), Some('Z' | 'X') | None)
        }
        Err(_) => false,
    }
}

/// The live processes of process group `pgid` (zombies excluded).
pub fn group_members(pgid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    // After the command name: state, ppid, pgrp.
                    let rest = stat
                        .rsplit_once(')')?
                        .1
                        .split_whitespace()
                        .collect::<Vec<_>>();
                    Some(rest.first()? != &"Z" && rest.get(2)?.parse::<u32>().ok()? == pgid)
                })
                .unwrap_or(false)
        })
        .collect()
}
