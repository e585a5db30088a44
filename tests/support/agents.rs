//! One agent CLI and its stand-in API, as the end-to-end tests set them up, for Claude and
//! for Codex alike:
//!
//! * [`StandIn`]: how to find the pinned CLI, start the stand-in and point the CLI at it
//!   ([`MockApi`] for Claude Code, [`ResponsesApi`] for Codex);
//! * [`AgentWorld`]: a repository, the CLI and its stand-in; [`AgentWorld::reins`] runs
//!   `reins` with the CLI's environment;
//! * [`Bundled`]: a repository with one commit and the CLI on `PATH` under its own name, for
//!   the bundled workflows (which name no program);
//! * [`artifacts_in`]: the artifacts folder an agent's prompt names; [`git`] and
//!   [`git_identity`] (from [`super::run_repo`]) for their commits.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::claude::{claude_env, ps_table, require_claude};
use super::codex::{codex_env, require_codex};
use super::mock_api::MockApi;
use super::responses_api::ResponsesApi;
pub use super::run_repo::{git, git_identity};
use super::run_repo::{Cmd, Output, Repo};

/// A model-API stand-in and the agent CLI that talks to it.
pub trait StandIn: Sized {
    /// The CLI's command name (`claude`, `codex`).
    const CLI: &'static str;

    /// The pinned CLI; `None` outside CI when it is not installed (see [`require_claude`]).
    fn require_cli() -> Option<PathBuf>;

    /// Starts the stand-in on a free loopback port.
    fn start() -> Self;

    /// The environment that points the CLI at the stand-in, with its state under `home`.
    fn cli_env(&self, home: &Path) -> Vec<(String, String)>;
}

impl StandIn for MockApi {
    const CLI: &'static str = "claude";

    fn require_cli() -> Option<PathBuf> {
        require_claude()
    }

    fn start() -> Self {
        MockApi::start()
    }

    fn cli_env(&self, home: &Path) -> Vec<(String, String)> {
        std::fs::create_dir_all(home).expect("create the CLI's home");
        claude_env(self, home)
    }
}

impl StandIn for ResponsesApi {
    const CLI: &'static str = "codex";

    fn require_cli() -> Option<PathBuf> {
        require_codex()
    }

    fn start() -> Self {
        ResponsesApi::start()
    }

    fn cli_env(&self, home: &Path) -> Vec<(String, String)> {
        codex_env(self, &home.join("codex-home"))
    }
}

/// One test's world: the CLI, its stand-in API and a repository.
pub struct AgentWorld<A: StandIn> {
    /// The pinned CLI.
    pub cli: PathBuf,
    /// The stand-in it talks to.
    pub api: A,
    /// The repository `reins` runs in.
    pub repo: Repo,
}

impl<A: StandIn> AgentWorld<A> {
    /// `None` when the CLI is not installed and this is not CI (the test then returns).
    pub fn new() -> Option<Self> {
        Some(AgentWorld {
            cli: A::require_cli()?,
            api: A::start(),
            repo: Repo::new(),
        })
    }

    /// `reins ARGS` with the CLI pointed at the stand-in (its state in the repository's
    /// `.CLI-home`) and a bound of 150 s.
    pub fn reins<const N: usize>(&self, args: [&str; N]) -> Cmd {
        let home = self.repo.join(&format!(".{}-home", A::CLI));
        let mut cmd = self.repo.reins(args).timeout(Duration::from_secs(150));
        for (key, value) in self.api.cli_env(&home) {
            cmd = cmd.env(&key, &value);
        }
        cmd
    }

    /// The events of type `kind` about `node` in the repository's only run.
    pub fn events_of(&self, kind: &str, node: &str) -> Vec<Value> {
        self.repo
            .events(&self.repo.the_run())
            .into_iter()
            .filter(|e| e["type"] == kind && e["node"] == node)
            .collect()
    }

    /// Live processes of this test's runs whose command line contains `marker` (the prompt is
    /// an argument). Only this test's: the CLI's `--add-dir` names the run's artifacts folder,
    /// inside this test's own temporary repository, so the same test running elsewhere on the
    /// machine (another checkout's `cargo test`) is never counted.
    pub fn processes_with(&self, marker: &str) -> Vec<u32> {
        let repo = self
            .repo
            .path()
            .file_name()
            .expect("a temporary folder")
            .to_string_lossy()
            .into_owned();
        ps_table()
            .into_iter()
            .filter(|p| p.args.contains(marker) && p.args.contains(&repo))
            .map(|p| p.pid)
            .collect()
    }
}

/// A repository with one commit, the CLI on `PATH` under its own name and the stand-in
/// behind it: how the bundled workflows, which name no program, find their agent.
pub struct Bundled<A: StandIn> {
    /// The repository.
    pub repo: Repo,
    /// The stand-in.
    pub api: A,
    home: tempfile::TempDir,
    bin: PathBuf,
}

impl<A: StandIn> Bundled<A> {
    /// Writes `files`, commits them; `None` when the CLI is missing outside CI.
    pub fn new(files: &[(&str, &str)]) -> Option<Self> {
        let cli = A::require_cli()?;
        let repo = Repo::new();
        for (path, contents) in files {
            repo.write(path, contents);
        }
        git(repo.path(), &["add", "-A"]);
        git(repo.path(), &["commit", "-q", "-m", "start"]);
        let home = tempfile::tempdir().unwrap();
        let bin = home.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::os::unix::fs::symlink(cli, bin.join(A::CLI)).unwrap();
        Some(Bundled {
            repo,
            api: A::start(),
            home,
            bin,
        })
    }

    /// `reins ARGS` with the CLI first on `PATH`, pointed at the stand-in, and a git identity.
    pub fn reins(&self, args: &[&str]) -> Cmd {
        let path = format!(
            "{}:{}",
            self.bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut cmd = self.repo.reins(args).env("PATH", &path);
        for (k, v) in self
            .api
            .cli_env(self.home.path())
            .into_iter()
            .chain(git_identity())
        {
            cmd = cmd.env(&k, &v);
        }
        cmd
    }

    /// Runs `reins ARGS` to its end.
    pub fn run(&self, args: &[&str]) -> Output {
        self.reins(args).run()
    }

    /// The artifacts folder of the latest run.
    pub fn artifacts(&self) -> PathBuf {
        PathBuf::from(
            self.repo.status("last")["dir"]
                .as_str()
                .expect("status has the run's folder"),
        )
        .join("artifacts")
    }
}

/// The run's artifacts folder, as an agent's prompt names it.
pub fn artifacts_in(prompt: &str) -> String {
    let end = prompt
        .find("/artifacts")
        .expect("the prompt names the artifacts folder")
        + "/artifacts".len();
    let start = prompt[..end]
        .rfind(|c: char| c.is_whitespace() || c == '`' || c == '(')
        .map(|i| i + 1)
        .unwrap_or(0);
    prompt[start..end].to_string()
}
