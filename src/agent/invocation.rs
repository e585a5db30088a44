//! One run of the agent CLI: what to run, where, with which profile, and its command line.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use super::events::TokenUsage;
use super::harness::HarnessKind;
use crate::process::Watchdog;

/// Prompts longer than this (100 KiB) go through `prompt.md` in the node's folder: one
/// argument is capped at 128 KiB, and an argument is visible to everyone in `ps`.
pub const PROMPT_FILE_THRESHOLD: usize = 100 * 1024;

/// How long an agent may print nothing before it is stopped, unless the caller says otherwise.
/// It must exceed the longest tool call: Claude Code's Bash tool may run for 10 minutes.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// Which conversation a run continues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionMode {
    /// Start a conversation with this id (`--session-id`).
    New(Uuid),
    /// Continue the conversation with this id (`--resume`).
    Resume(Uuid),
}

impl SessionMode {
    /// The conversation's id.
    pub fn id(self) -> Uuid {
        match self {
            SessionMode::New(id) | SessionMode::Resume(id) => id,
        }
    }
}

/// Everything one agent run needs. The engine fills it from the node and its agent profile.
#[derive(Debug, Clone)]
pub struct AgentInvocation {
    /// Which CLI this is (and so which command line and which stream format).
    pub harness: HarnessKind,
    /// The agent CLI, resolved with [`resolve_program`].
    pub program: PathBuf,
    /// The prompt, already rendered.
    pub prompt: String,
    /// A new conversation or a later turn of a sticky one.
    pub session: SessionMode,
    /// `--model`: an alias (`sonnet`) or a full id.
    pub model: Option<String>,
    /// `--permission-mode`: `default`, `acceptEdits`, `bypassPermissions`, `dontAsk`, `plan` ...
    pub permission_mode: Option<String>,
    /// `--allowedTools`: tools that run without asking, like `Write` or `Bash(git *)`.
    pub allowed_tools: Vec<String>,
    /// `--disallowedTools`: tools the agent may not use at all.
    pub disallowed_tools: Vec<String>,
    /// `--max-turns`: the most model calls in this run.
    pub max_turns: Option<u32>,
    /// Codex's sandbox (`read-only`, `workspace-write`, `danger-full-access`, `none`).
    pub sandbox: Option<String>,
    /// Dollars this turn may still spend, for CLIs that can stop themselves (Claude's
    /// `--max-budget-usd`).
    pub max_budget_usd: Option<f64>,
    /// For a continued Codex thread: its token totals before this turn (Codex reports running
    /// totals, so this turn's use is the difference).
    pub thread_usage: Option<TokenUsage>,
    /// More folders the file tools may use (`--add-dir`), like the run's artifacts folder
    /// when the agent works in a worktree.
    pub add_dirs: Vec<PathBuf>,
    /// More arguments from the profile, placed before the prompt.
    pub extra_args: Vec<String>,
    /// Variables set for the agent on top of reins' environment (`CLAUDECODE` is removed).
    pub env: Vec<(String, String)>,
    /// Where the agent works. It must exist.
    pub cwd: PathBuf,
    /// The node's own folder: `prompt.md` and `transcript.jsonl` are written here.
    pub node_dir: PathBuf,
    /// Stop the agent when it prints nothing for this long.
    pub idle_timeout: Option<Duration>,
    /// Stop the agent when it runs longer than this in all.
    pub wall_timeout: Option<Duration>,
    /// Files the agent must leave behind; relative paths are taken from `cwd`.
    pub required_outputs: Vec<PathBuf>,
    /// reins' `.reins/` folder, when the agent is denied the control plane (the default): it
    /// may not run `reins` nor write run state there. Each harness maps this to its own
    /// mechanism; Claude Code gets [`control_plane_rules`] as `--disallowedTools`.
    pub control_plane: Option<PathBuf>,
    /// Time between TERM and KILL when reins stops the agent's process group.
    pub grace: Duration,
    /// Registers the agent's process group so that it dies with reins.
    pub watchdog: Option<Arc<Watchdog>>,
}

/// Claude Code deny rules that keep an agent off reins' control plane: running `reins`
/// (however it is spelled on the command line) and writing, with the file tools, the run state
/// under `store/runs/*/` (gate answers, events, `run.json`, locks). The artifacts folder stays
/// writable. These close the obvious doors only: a general Bash tool can still write files;
/// see `docs/security.md`.
pub fn control_plane_rules(store: &Path) -> Vec<String> {
    // `//` starts an absolute path in Claude Code's file rules.
    let abs = format!("/{}", store.display());
    let mut rules: Vec<String> = [
        "Bash(reins:*)",
        "Bash(reins *)",
        "Bash(*/reins *)",
        "Bash(* reins *)",
    ]
    .map(String::from)
    .to_vec();
    for tool in ["Edit", "Write"] {
        for place in [
            "runs/*/nodes/**",
            "runs/*/events.jsonl",
            "runs/*/run.json",
            "runs/*/lock",
            "lock",
        ] {
            rules.push(format!("{tool}({abs}/{place})"));
        }
    }
    rules
}

impl AgentInvocation {
    /// An invocation with no profile settings, the default idle timeout and no wall timeout.
    pub fn new(
        program: impl Into<PathBuf>,
        prompt: impl Into<String>,
        session: SessionMode,
        cwd: impl Into<PathBuf>,
        node_dir: impl Into<PathBuf>,
    ) -> Self {
        AgentInvocation {
            harness: HarnessKind::Claude,
            program: program.into(),
            prompt: prompt.into(),
            session,
            model: None,
            permission_mode: None,
            allowed_tools: Vec::new(),
            disallowed_tools: Vec::new(),
            max_turns: None,
            sandbox: None,
            max_budget_usd: None,
            thread_usage: None,
            add_dirs: Vec::new(),
            extra_args: Vec::new(),
            env: Vec::new(),
            cwd: cwd.into(),
            node_dir: node_dir.into(),
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            wall_timeout: None,
            required_outputs: Vec::new(),
            control_plane: None,
            grace: crate::process::DEFAULT_GRACE,
            watchdog: None,
        }
    }

    /// Where the prompt is kept for the record (and read from, when it is too long for argv).
    pub fn prompt_path(&self) -> PathBuf {
        self.node_dir.join("prompt.md")
    }

    /// Where the agent's output lines are appended as they arrive.
    pub fn transcript_path(&self) -> PathBuf {
        self.node_dir.join("transcript.jsonl")
    }

    /// Where reins notes when each transcript line arrived (see [`super::session::TIMES_FILE`]).
    pub fn transcript_times_path(&self) -> PathBuf {
        self.node_dir.join(super::session::TIMES_FILE)
    }

    /// True when the prompt goes through `prompt.md` rather than the command line.
    pub fn prompt_via_file(&self) -> bool {
        self.prompt.len() > PROMPT_FILE_THRESHOLD
    }

    /// The prompt argument: the prompt itself, or a short one pointing at `prompt.md`.
    pub fn prompt_argument(&self) -> String {
        if !self.prompt_via_file() {
            return self.prompt.clone();
        }
        format!(
            "Your instructions for this step are in the file {path} ({bytes} bytes). Read the \
             whole file before doing anything else: it is long, so read it page after page \
             (with offset and limit) until its end. Then follow those instructions exactly.",
            path = self.prompt_path().display(),
            bytes = self.prompt.len(),
        )
    }

    /// The arguments after the program, for `session` (which may differ from `self.session`
    /// when a run falls back from resuming to starting a conversation, or back), as the
    /// invocation's harness builds them.
    pub fn args(&self, session: SessionMode) -> Vec<String> {
        self.harness.harness().command(self, session).args
    }
}

/// Why the agent CLI was not found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProgramError {
    /// A harness's own CLI (`claude`, `codex`) is not on `PATH`.
    #[error(
        "{name} not found on PATH; install it with `{install}` or set `program:` in the agent \
         profile"
    )]
    NotInstalled {
        /// The CLI's name.
        name: &'static str,
        /// The command that installs it.
        install: &'static str,
    },
    /// Another name is not on `PATH`.
    #[error(
        "{0} not found on PATH; install it or set `program:` in the agent profile to its full path"
    )]
    NotOnPath(String),
    /// A path that names no executable file.
    #[error(
        "agent program {0} does not exist or is not executable; fix `program:` in the agent \
         profile"
    )]
    NotExecutable(String),
}

/// Finds the agent CLI: a name is looked up on `PATH`, a path is checked as given.
pub fn resolve_program(program: &str) -> Result<PathBuf, ProgramError> {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    resolve_program_in(program, std::env::var_os("PATH"), &cwd)
}

/// The command-line name of a harness's CLI with its install hint, for "not found" messages.
fn install_hint(program: &str) -> Option<(&'static str, &'static str)> {
    HarnessKind::ALL
        .iter()
        .map(|(_, k)| k.harness())
        .find(|h| h.name() == program)
        .map(|h| (h.name(), h.install_hint()))
}

/// [`resolve_program`] with an explicit `PATH` and base directory for relative paths.
pub fn resolve_program_in(
    program: &str,
    path: Option<std::ffi::OsString>,
    cwd: &Path,
) -> Result<PathBuf, ProgramError> {
    which::which_in(program, path, cwd).map_err(|_| {
        let is_path = Path::new(program).components().count() > 1;
        match (install_hint(program), is_path) {
            (Some((name, install)), _) => ProgramError::NotInstalled { name, install },
            (_, true) => ProgramError::NotExecutable(program.into()),
            (_, false) => ProgramError::NotOnPath(program.into()),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invocation(prompt: &str) -> AgentInvocation {
        AgentInvocation::new("claude", prompt, SessionMode::New(Uuid::nil()), "/w", "/n")
    }

    #[test]
    fn a_new_session_has_the_prompt_last_after_a_separator() {
        let mut inv = invocation("-starts with a dash");
        inv.allowed_tools = vec!["Write".into(), "Bash(git *)".into()];
        inv.permission_mode = Some("acceptEdits".into());
        let args = inv.args(inv.session);
        assert_eq!(
            args.join(" "),
            "-p --output-format stream-json --verbose --include-partial-messages \
             --session-id 00000000-0000-0000-0000-000000000000 --permission-mode acceptEdits \
             --allowedTools Write Bash(git *) -- -starts with a dash"
        );
    }

    #[test]
    fn extra_folders_are_added_before_the_prompt() {
        let mut inv = invocation("go");
        inv.add_dirs = vec!["/run/artifacts".into()];
        let args = inv.args(inv.session);
        assert!(args
            .windows(2)
            .any(|w| w == ["--add-dir", "/run/artifacts"]));
        assert_eq!(args[args.len() - 2..], ["--", "go"]);
    }

    #[test]
    fn the_control_plane_is_denied_unless_allowed() {
        let mut inv = invocation("go");
        inv.disallowed_tools = vec!["WebFetch".into()];
        inv.control_plane = Some("/repo/.reins".into());
        let args = inv.args(inv.session);
        let at = args.iter().position(|a| a == "--disallowedTools").unwrap();
        assert_eq!(args[at + 1], "WebFetch");
        for rule in [
            "Bash(reins:*)",
            "Edit(//repo/.reins/runs/*/nodes/**)",
            "Write(//repo/.reins/runs/*/events.jsonl)",
            "Write(//repo/.reins/runs/*/run.json)",
        ] {
            assert!(args.contains(&rule.to_string()), "{rule} in {args:?}");
        }
        assert!(!args.iter().any(|a| a.contains("artifacts")));
        assert_eq!(args[args.len() - 2..], ["--", "go"]);
        inv.control_plane = None;
        inv.disallowed_tools.clear();
        assert!(!inv
            .args(inv.session)
            .contains(&"--disallowedTools".to_string()));
    }

    #[test]
    fn a_resumed_session_uses_resume() {
        let inv = invocation("next");
        let args = inv.args(SessionMode::Resume(Uuid::nil()));
        assert!(args
            .windows(2)
            .any(|w| w == ["--resume", "00000000-0000-0000-0000-000000000000"]));
        assert!(!args.contains(&"--session-id".to_string()));
    }

    #[test]
    fn a_long_prompt_points_at_the_prompt_file() {
        let inv = invocation(&"x".repeat(PROMPT_FILE_THRESHOLD + 1));
        let args = inv.args(inv.session);
        let last = args.last().unwrap();
        assert!(last.contains("/n/prompt.md"), "{last}");
        assert!(last.len() < 1024);
        assert!(args.windows(2).any(|w| w == ["--add-dir", "/n"]));
        let short = invocation(&"x".repeat(PROMPT_FILE_THRESHOLD));
        assert!(!short.prompt_via_file());
    }

    #[test]
    fn a_missing_claude_says_how_to_install_it() {
        let err = resolve_program_in("claude", Some("/nonexistent".into()), Path::new("/"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("npm i -g @anthropic-ai/claude-code"), "{err}");
        let err = resolve_program("claude-surely-not-installed-anywhere").unwrap_err();
        assert!(err.to_string().contains("not found on PATH"), "{err}");
        let err = resolve_program("/nonexistent/dir/claude").unwrap_err();
        assert!(err.to_string().contains("fix `program:`"), "{err}");
    }
}
