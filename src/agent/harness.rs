//! One interface for every coding-agent CLI reins drives.
//!
//! A [`Harness`] knows one CLI: the command line of a turn (prompt, fresh or continued
//! conversation, working directory, extra folders, permissions or sandbox, model, limits), how
//! to read the lines it prints as common [`AgentEvent`]s, which rules judge a turn and which of its
//! failures are worth retrying. [`super::session::run`] drives any of them the same way: in a
//! pseudo-terminal, with idle and wall timeouts, cancellation and a transcript.
//!
//! Two implementations: [`super::claude::Claude`] (Claude Code, `claude -p --output-format
//! stream-json`) and [`super::codex::Codex`] (Codex CLI, `codex exec --json`). Which one a node
//! uses follows from its agent profile's `use:` chain (the built-in profile it ends at); merging
//! profiles is workflow semantics and lives in the engine, not here.

use super::events::AgentEvent;
use super::invocation::{AgentInvocation, SessionMode};
use super::outcome::{self, Context, Observed, Verdict};

/// The agent CLIs reins knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum HarnessKind {
    /// Claude Code (`claude`).
    #[default]
    Claude,
    /// OpenAI's Codex CLI (`codex`).
    Codex,
}

impl HarnessKind {
    /// Every harness, with the name of its built-in agent profile.
    pub const ALL: [(&'static str, HarnessKind); 2] = [
        ("claude", HarnessKind::Claude),
        ("codex", HarnessKind::Codex),
    ];

    /// The harness whose built-in profile has this name.
    pub fn from_profile(name: &str) -> Option<HarnessKind> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, k)| *k)
    }

    /// The built-in profile's name, also the default program.
    pub fn name(self) -> &'static str {
        match self {
            HarnessKind::Claude => "claude",
            HarnessKind::Codex => "codex",
        }
    }

    /// The implementation.
    pub fn harness(self) -> &'static dyn Harness {
        match self {
            HarnessKind::Claude => &super::claude::Claude,
            HarnessKind::Codex => &super::codex::Codex,
        }
    }
}

/// What a turn runs: the arguments after the program, and environment changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TurnCommand {
    /// Arguments after the program.
    pub args: Vec<String>,
    /// Variables set on top of the invocation's `env`.
    pub env: Vec<(String, String)>,
    /// Variables removed from the inherited environment.
    pub env_remove: Vec<String>,
}

/// Reads the lines one turn prints. A reader lives for one process, so it may keep state
/// (Codex's final message and running token totals).
pub trait StreamReader: Send {
    /// The common events one clean output line means (none for blank lines).
    fn read(&mut self, line: &str) -> Vec<AgentEvent>;
}

/// One coding-agent CLI.
pub trait Harness: Send + Sync {
    /// The built-in profile's name (`claude`, `codex`).
    fn name(&self) -> &'static str;

    /// How to install the CLI, for the message when it is missing.
    fn install_hint(&self) -> &'static str;

    /// True when reins chooses the conversation id before the first turn (Claude's
    /// `--session-id`); false when the CLI reports it (Codex's `thread.started`), in which case
    /// the id in [`SessionMode::New`] is never passed to the CLI: the id reins records is the
    /// one the CLI reports as [`AgentEvent::Init`].
    fn chooses_session_id(&self) -> bool;

    /// The command line of one turn reaching the conversation as `session` says.
    fn command(&self, inv: &AgentInvocation, session: SessionMode) -> TurnCommand;

    /// A reader for the lines of one turn.
    fn reader(&self, inv: &AgentInvocation, session: SessionMode) -> Box<dyn StreamReader>;

    /// The other way to reach the conversation when the CLI refused this one (a resume of a
    /// conversation it never saved, a new one under an id already used), with why.
    fn fallback(
        &self,
        session: SessionMode,
        seen: &Observed,
    ) -> Option<(SessionMode, &'static str)>;

    /// Judges a turn. The shared rules ([`outcome::judge`]): not stopped by reins, exit status
    /// 0, a final result that is not an error, nothing denied, declared outputs present.
    fn judge(&self, seen: &Observed, cx: Context<'_>) -> Verdict {
        outcome::judge(seen, cx)
    }
}

/// Reads one line of a transcript, whichever CLI wrote it (for `reins logs`). Codex events
/// are told apart by their dotted types (`item.completed`) and are read without the state of
/// a turn (a `turn.completed` shows the thread's running totals).
pub fn parse_transcript_line(line: &str) -> Vec<AgentEvent> {
    if super::codex::is_codex_line(line) {
        super::codex::CodexReader::default().read(line)
    } else {
        super::events::parse_line(line).into_iter().collect()
    }
}
