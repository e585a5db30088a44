//! The Claude Code harness: `claude -p PROMPT --output-format stream-json --verbose`, with
//! `--session-id` for a new conversation and `--resume` for a later turn of one.

use super::events::{self, AgentEvent};
use super::harness::{Harness, StreamReader, TurnCommand};
use super::invocation::{AgentInvocation, SessionMode};
use super::outcome::Observed;

/// Claude Code.
#[derive(Debug, Clone, Copy, Default)]
pub struct Claude;

impl Harness for Claude {
    fn name(&self) -> &'static str {
        "claude"
    }

    fn install_hint(&self) -> &'static str {
        "npm i -g @anthropic-ai/claude-code"
    }

    fn chooses_session_id(&self) -> bool {
        true
    }

    /// The prompt comes last, after `--`, so that a prompt starting with `-` is never read as
    /// a flag and variadic flags (`--allowedTools A B`) never swallow it.
    fn command(&self, inv: &AgentInvocation, session: SessionMode) -> TurnCommand {
        let mut args: Vec<String> = [
            "-p",
            "--output-format",
            "stream-json",
            "--verbose",
            // Partial messages stream while the model writes, so a long answer never looks idle.
            "--include-partial-messages",
        ]
        .map(String::from)
        .to_vec();
        match session {
            SessionMode::New(id) => args.extend(["--session-id".into(), id.to_string()]),
            SessionMode::Resume(id) => args.extend(["--resume".into(), id.to_string()]),
        }
        if let Some(model) = &inv.model {
            args.extend(["--model".into(), model.clone()]);
        }
        if let Some(mode) = &inv.permission_mode {
            args.extend(["--permission-mode".into(), mode.clone()]);
        }
        if !inv.allowed_tools.is_empty() {
            args.push("--allowedTools".into());
            args.extend(inv.allowed_tools.iter().cloned());
        }
        let denied_control = inv
            .control_plane
            .as_deref()
            .map(super::invocation::control_plane_rules);
        if !inv.disallowed_tools.is_empty() || denied_control.is_some() {
            args.push("--disallowedTools".into());
            args.extend(inv.disallowed_tools.iter().cloned());
            args.extend(denied_control.into_iter().flatten());
        }
        if let Some(turns) = inv.max_turns {
            args.extend(["--max-turns".into(), turns.to_string()]);
        }
        if let Some(usd) = inv.max_budget_usd {
            // Claude Code stops itself mid-turn at this cost (`error_max_budget_usd`).
            args.extend(["--max-budget-usd".into(), format!("{usd:.6}")]);
        }
        for dir in &inv.add_dirs {
            args.extend(["--add-dir".into(), dir.display().to_string()]);
        }
        if inv.prompt_via_file() {
            // The file tools may read the node's folder even when it lies outside `cwd`.
            args.extend(["--add-dir".into(), inv.node_dir.display().to_string()]);
        }
        args.extend(inv.extra_args.iter().cloned());
        args.push("--".into());
        args.push(inv.prompt_argument());
        TurnCommand {
            args,
            env: Vec::new(),
            // A nested CLI must not think it runs inside Claude Code.
            env_remove: vec!["CLAUDECODE".into()],
        }
    }

    fn reader(&self, _: &AgentInvocation, _: SessionMode) -> Box<dyn StreamReader> {
        Box::new(ClaudeReader)
    }

    /// The CLI refuses `--resume` of an id it never saw (a crash before the first event) and
    /// `--session-id` of an id already used in the same folder (a crash after it).
    fn fallback(
        &self,
        session: SessionMode,
        seen: &Observed,
    ) -> Option<(SessionMode, &'static str)> {
        match session {
            SessionMode::Resume(id) if seen.said("No conversation found with session ID") => {
                Some((
                    SessionMode::New(id),
                    "the conversation to resume was never saved; starting it with --session-id",
                ))
            }
            SessionMode::New(id) if seen.said("is already in use") => Some((
                SessionMode::Resume(id),
                "the conversation already exists; resuming it with --resume",
            )),
            _ => None,
        }
    }
}

/// Claude's stream-json lines are the common events already ([`events::parse_line`]).
struct ClaudeReader;

impl StreamReader for ClaudeReader {
    fn read(&mut self, line: &str) -> Vec<AgentEvent> {
        events::parse_line(line).into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn invocation(prompt: &str) -> AgentInvocation {
        AgentInvocation::new("claude", prompt, SessionMode::New(Uuid::nil()), "/w", "/n")
    }

    #[test]
    fn a_budget_is_passed_to_claude() {
        let mut inv = invocation("go");
        inv.max_budget_usd = Some(0.5);
        let args = inv.args(inv.session);
        assert!(args
            .windows(2)
            .any(|w| w == ["--max-budget-usd", "0.500000"]));
    }
}
