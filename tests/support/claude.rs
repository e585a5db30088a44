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
    ps_table().iter().any(|p| p.pid == pid)
}

/// The live processes of process group `pgid` (zombies excluded).
pub fn group_members(pgid: u32) -> Vec<u32> {
    ps_table()
        .into_iter()
        .filter(|p| p.pgid == pgid)
        .map(|p| p.pid)
        .collect()
}

/// A live process as `ps` lists it.
pub struct PsEntry {
    /// Its pid.
    pub pid: u32,
    /// Its process group.
    pub pgid: u32,
    /// Its command line.
    pub args: String,
}

/// Every live (not zombie) process, through `ps`: the same on Linux, macOS and the BSDs.
pub fn ps_table() -> Vec<PsEntry> {
    let out = std::process::Command::new("ps")
        .args(["-A", "-ww", "-o", "pid=,pgid=,stat=,args="])
        .output()
        .expect("ps runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let pid = fields.next()?.parse().ok()?;
            let pgid = fields.next()?.parse().ok()?;
            let stat = fields.next()?;
            let args = fields.collect::<Vec<_>>().join(" ");
            (!stat.starts_with('Z')).then_some(PsEntry { pid, pgid, args })
        })
        .collect()
}
