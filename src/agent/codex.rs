//! The Codex CLI harness: `codex exec --json [OPTIONS] [resume THREAD] -- PROMPT`.
//!
//! * Sessions: Codex picks the thread id itself and prints it first (`thread.started`, before
//!   any API call); reins records it as the session id as soon as it arrives, so a turn killed
//!   mid-way is continued with `codex exec resume <thread id>`.
//! * Options that shape the sandbox (`--sandbox`, `--add-dir`, `--cd`, the bypass flag) are
//!   refused after `resume`, so every option comes before it.
//! * Permissions: a profile's `sandbox:` (`read-only`, `workspace-write`,
//!   `danger-full-access`, or `none` for `--dangerously-bypass-approvals-and-sandbox`), else its
//!   `permission_mode` (`bypassPermissions` is no sandbox, `acceptEdits` is `workspace-write`,
//!   others `read-only`); with neither Codex's own default applies (read-only for `exec`).
//! * Output: the node's output is the last `agent_message`; `turn.completed` ends a good turn,
//!   `turn.failed` a bad one. `error` items and `error` events saying `Reconnecting…` also
//!   appear on good turns: they are shown, not judged.
//! * Usage: `turn.completed` carries the thread's running totals (input with cached input
//!   inside it, output); a continued thread's turn is the difference from the totals before
//!   it ([`AgentInvocation::thread_usage`]). Codex reports no cost.

use serde_json::{json, Value};

use super::events::{
    AgentEvent, ApiRetry, Assistant, Denial, Init, ResultEvent, TokenUsage, ToolResult, ToolUse,
};
use super::harness::{Harness, StreamReader, TurnCommand};
use super::invocation::{AgentInvocation, SessionMode};
use super::outcome::Observed;

/// The Codex CLI.
#[derive(Debug, Clone, Copy, Default)]
pub struct Codex;

/// The flag that turns Codex's sandbox and approvals off.
pub const BYPASS_FLAG: &str = "--dangerously-bypass-approvals-and-sandbox";

impl Codex {
    /// The sandbox flags for the invocation's `sandbox` or `permission_mode`.
    fn sandbox_args(inv: &AgentInvocation) -> Vec<String> {
        let mode = match (inv.sandbox.as_deref(), inv.permission_mode.as_deref()) {
            (Some("none"), _) | (None, Some("bypassPermissions")) => {
                return vec![BYPASS_FLAG.into()];
            }
            (Some(mode), _) => mode,
            (None, Some("acceptEdits")) => "workspace-write",
            (None, Some(_)) => "read-only",
            (None, None) => return Vec::new(),
        };
        vec!["--sandbox".into(), mode.into()]
    }
}

impl Harness for Codex {
    fn name(&self) -> &'static str {
        "codex"
    }

    fn install_hint(&self) -> &'static str {
        "npm i -g @openai/codex"
    }

    fn chooses_session_id(&self) -> bool {
        false
    }

    fn command(&self, inv: &AgentInvocation, session: SessionMode) -> TurnCommand {
        let mut args: Vec<String> = [
            "exec",
            "--json",
            "--color",
            "never",
            "--skip-git-repo-check",
        ]
        .map(String::from)
        .to_vec();
        args.extend(Self::sandbox_args(inv));
        if let Some(model) = &inv.model {
            args.extend(["--model".into(), model.clone()]);
        }
        args.extend(["--cd".into(), inv.cwd.display().to_string()]);
        for dir in &inv.add_dirs {
            args.extend(["--add-dir".into(), dir.display().to_string()]);
        }
        if inv.prompt_via_file() {
            args.extend(["--add-dir".into(), inv.node_dir.display().to_string()]);
        }
        args.extend(inv.extra_args.iter().cloned());
        if let SessionMode::Resume(id) = session {
            args.extend(["resume".into(), id.to_string()]);
        }
        args.push("--".into());
        args.push(inv.prompt_argument());
        TurnCommand {
            args,
            env: Vec::new(),
            env_remove: Vec::new(),
        }
    }

    fn reader(&self, inv: &AgentInvocation, session: SessionMode) -> Box<dyn StreamReader> {
        Box::new(CodexReader {
            before: match session {
                SessionMode::Resume(_) => inv.thread_usage.unwrap_or_default(),
                SessionMode::New(_) => TokenUsage::default(),
            },
            model: inv.model.clone(),
            sandbox: Self::sandbox_args(inv).last().cloned(),
            ..CodexReader::default()
        })
    }

    /// A thread killed before Codex saved it cannot be resumed: start a new one.
    fn fallback(
        &self,
        session: SessionMode,
        seen: &Observed,
    ) -> Option<(SessionMode, &'static str)> {
        match session {
            SessionMode::Resume(id) if seen.said("no rollout found for thread id") => Some((
                SessionMode::New(id),
                "the Codex thread to resume was never saved; starting a new thread",
            )),
            _ => None,
        }
    }
}

/// True for a line Codex's `--json` wrote (its event types are dotted, like `item.completed`).
pub fn is_codex_line(line: &str) -> bool {
    let line = line.trim();
    line.starts_with('{')
        && serde_json::from_str::<Value>(line).is_ok_and(|v| {
            v.get("type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.contains('.'))
        })
}

/// Reads `codex exec --json` lines as common events.
#[derive(Debug, Default)]
pub struct CodexReader {
    /// The thread's totals before this turn.
    before: TokenUsage,
    /// The model asked for (Codex does not print the one it used).
    model: Option<String>,
    /// The sandbox asked for, for the session line.
    sandbox: Option<String>,
    thread_id: Option<String>,
    last_message: Option<String>,
    denials: Vec<Denial>,
    reconnects: u64,
    last_error: Option<String>,
}

impl StreamReader for CodexReader {
    fn read(&mut self, line: &str) -> Vec<AgentEvent> {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            return Vec::new();
        }
        let Some(v) = trimmed
            .starts_with('{')
            .then(|| serde_json::from_str::<Value>(trimmed).ok())
            .flatten()
            .filter(Value::is_object)
        else {
            return vec![AgentEvent::Text(trimmed.to_string())];
        };
        let kind = str_at(&v, "type").unwrap_or_default();
        let other = || AgentEvent::Other { kind: kind.clone() };
        match kind.as_str() {
            "thread.started" => {
                self.thread_id = str_at(&v, "thread_id");
                vec![AgentEvent::Init(Init {
                    session_id: self.thread_id.clone(),
                    model: self.model.clone(),
                    permission_mode: self.sandbox.clone(),
                    cwd: None,
                    version: None,
                })]
            }
            "item.started" | "item.completed" => {
                let item = v.get("item").unwrap_or(&Value::Null);
                self.item(&kind, item).unwrap_or_else(|| vec![other()])
            }
            "error" => {
                let message = str_at(&v, "message").unwrap_or_default();
                self.last_error = Some(message.clone());
                if !message.starts_with("Reconnecting") {
                    return vec![AgentEvent::Text(format!("codex: {message}"))];
                }
                // `Reconnecting... 2/5 (…)`: Codex retries a failed request itself, which it
                // does only for failures worth retrying.
                self.reconnects += 1;
                let (attempt, max) = retry_counts(&message);
                vec![AgentEvent::ApiRetry(ApiRetry {
                    attempt: attempt.or(Some(self.reconnects)),
                    max_retries: max,
                    error_status: http_status(&message),
                    error: Some(
                        if http_status(&message) == Some(429) {
                            "rate_limit"
                        } else {
                            "server_error"
                        }
                        .into(),
                    ),
                })]
            }
            "turn.completed" => {
                let total = usage_of(v.get("usage").unwrap_or(&Value::Null));
                let usage = difference(total, self.before);
                vec![AgentEvent::Result(Box::new(ResultEvent {
                    subtype: "success".into(),
                    result: self.last_message.clone(),
                    session_id: self.thread_id.clone(),
                    usage,
                    thread_usage: Some(total),
                    num_turns: Some(1),
                    permission_denials: std::mem::take(&mut self.denials),
                    terminal_reason: Some("completed".into()),
                    ..ResultEvent::default()
                }))]
            }
            "turn.failed" => {
                let message = v
                    .pointer("/error/message")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .or(self.last_error.clone())
                    .unwrap_or_else(|| "the turn failed".into());
                let status =
                    http_status(&message).or(self.last_error.as_deref().and_then(http_status));
                let api = status.is_some() || self.reconnects > 0 || looks_like_api(&message);
                vec![AgentEvent::Result(Box::new(ResultEvent {
                    subtype: "success".into(),
                    is_error: true,
                    result: Some(message),
                    session_id: self.thread_id.clone(),
                    num_turns: Some(1),
                    api_error_status: status,
                    terminal_reason: api.then(|| "api_error".into()),
                    ..ResultEvent::default()
                }))]
            }
            _ => vec![other()],
        }
    }
}

impl CodexReader {
    /// An item of the turn: a message, a command, a file change, a tool call, an error.
    fn item(&mut self, kind: &str, item: &Value) -> Option<Vec<AgentEvent>> {
        let done = kind == "item.completed";
        let id = str_at(item, "id").unwrap_or_default();
        let status = str_at(item, "status").unwrap_or_default();
        let tool = |name: &str, input: Value| {
            AgentEvent::Assistant(Assistant {
                tool_uses: vec![ToolUse {
                    name: name.into(),
                    id: id.clone(),
                    input,
                }],
                ..Assistant::default()
            })
        };
        let result = |is_error: bool, content: String| {
            AgentEvent::ToolResults(vec![ToolResult {
                tool_use_id: id.clone(),
                is_error,
                content,
            }])
        };
        Some(match (str_at(item, "type")?.as_str(), done) {
            ("agent_message", true) => {
                let text = str_at(item, "text").unwrap_or_default();
                self.last_message = Some(text.clone());
                vec![AgentEvent::Assistant(Assistant {
                    texts: vec![text],
                    ..Assistant::default()
                })]
            }
            ("command_execution", false) => {
                vec![tool("shell", json!({"command": str_at(item, "command")}))]
            }
            ("command_execution", true) => {
                let command = str_at(item, "command").unwrap_or_default();
                if status == "declined" {
                    self.denials.push(Denial {
                        tool_name: "shell".into(),
                        tool_input: json!({ "command": command }),
                    });
                }
                let failed = status != "completed"
                    || item.get("exit_code").and_then(Value::as_i64) != Some(0);
                vec![result(
                    failed,
                    str_at(item, "aggregated_output").unwrap_or_default(),
                )]
            }
            ("file_change", true) => {
                let paths: Vec<String> = item
                    .get("changes")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|c| str_at(c, "path"))
                    .collect();
                let mut events = vec![tool("edit", json!({"path": paths.join(", ")}))];
                if status != "completed" {
                    events.push(result(true, format!("file change {status}")));
                }
                events
            }
            ("mcp_tool_call", false) => vec![tool(
                &format!(
                    "{}.{}",
                    str_at(item, "server").unwrap_or_default(),
                    str_at(item, "tool").unwrap_or_default()
                ),
                item.get("arguments").cloned().unwrap_or(Value::Null),
            )],
            ("mcp_tool_call", true) => vec![result(status != "completed", status)],
            ("error", true) => {
                vec![AgentEvent::Text(format!(
                    "codex: {}",
                    str_at(item, "message").unwrap_or_default()
                ))]
            }
            _ => return None,
        })
    }
}

/// Codex's token figures as reins counts them: uncached input apart from cached input.
fn usage_of(v: &Value) -> TokenUsage {
    let n = |key: &str| v.get(key).and_then(Value::as_u64).unwrap_or(0);
    let cached = n("cached_input_tokens");
    TokenUsage {
        input_tokens: n("input_tokens").saturating_sub(cached),
        cache_read_input_tokens: cached,
        cache_creation_input_tokens: n("cache_write_input_tokens"),
        output_tokens: n("output_tokens"),
    }
}

/// `now - before`, field by field, never below zero.
fn difference(now: TokenUsage, before: TokenUsage) -> TokenUsage {
    TokenUsage {
        input_tokens: now.input_tokens.saturating_sub(before.input_tokens),
        output_tokens: now.output_tokens.saturating_sub(before.output_tokens),
        cache_creation_input_tokens: now
            .cache_creation_input_tokens
            .saturating_sub(before.cache_creation_input_tokens),
        cache_read_input_tokens: now
            .cache_read_input_tokens
            .saturating_sub(before.cache_read_input_tokens),
    }
}

/// `Reconnecting... 2/5 (…)` → (2, 5).
fn retry_counts(message: &str) -> (Option<u64>, Option<u64>) {
    let counts = message.split_whitespace().find_map(|word| {
        let (a, b) = word.split_once('/')?;
        Some((a.parse().ok()?, b.parse().ok()?))
    });
    match counts {
        Some((a, b)) => (Some(a), Some(b)),
        None => (None, None),
    }
}

/// The HTTP status a Codex error message names (`unexpected status 500 …`, `status: 429`).
fn http_status(message: &str) -> Option<u16> {
    let lower = message.to_ascii_lowercase();
    let at = lower.find("status")?;
    lower[at + "status".len()..]
        .split(|c: char| !c.is_ascii_digit())
        .find(|s| !s.is_empty())
        .and_then(|s| s.parse().ok())
        .filter(|s| (100..600).contains(s))
}

fn looks_like_api(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    [
        "stream disconnected",
        "exceeded retry limit",
        "error sending request",
        "connection",
        "rate limit",
        "overloaded",
    ]
    .iter()
    .any(|needle| lower.contains(needle))
}

fn str_at(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn invocation() -> AgentInvocation {
        let mut inv =
            AgentInvocation::new("codex", "-go", SessionMode::New(Uuid::nil()), "/w", "/n");
        inv.harness = super::super::harness::HarnessKind::Codex;
        inv
    }

    #[test]
    fn every_option_comes_before_resume_and_the_prompt_last() {
        let mut inv = invocation();
        inv.sandbox = Some("none".into());
        inv.model = Some("gpt-5".into());
        inv.add_dirs = vec!["/run/artifacts".into()];
        let args = Codex.command(&inv, SessionMode::Resume(Uuid::nil())).args;
        assert_eq!(
            args.join(" "),
            "exec --json --color never --skip-git-repo-check \
             --dangerously-bypass-approvals-and-sandbox --model gpt-5 --cd /w \
             --add-dir /run/artifacts resume 00000000-0000-0000-0000-000000000000 -- -go"
        );
    }

    #[test]
    fn permission_modes_map_to_sandboxes() {
        let mut inv = invocation();
        let args = |inv: &AgentInvocation| Codex.command(inv, inv.session).args.join(" ");
        assert!(!args(&inv).contains("--sandbox"));
        inv.permission_mode = Some("acceptEdits".into());
        assert!(args(&inv).contains("--sandbox workspace-write"));
        inv.permission_mode = Some("plan".into());
        assert!(args(&inv).contains("--sandbox read-only"));
        inv.permission_mode = Some("bypassPermissions".into());
        assert!(args(&inv).contains(BYPASS_FLAG));
        inv.sandbox = Some("danger-full-access".into());
        assert!(args(&inv).contains("--sandbox danger-full-access"));
    }

    #[test]
    fn a_turn_reads_as_session_tool_call_message_and_result() {
        let mut reader = CodexReader {
            before: TokenUsage {
                input_tokens: 100,
                cache_read_input_tokens: 50,
                output_tokens: 10,
                ..TokenUsage::default()
            },
            ..CodexReader::default()
        };
        let lines = [
            r#"{"type":"thread.started","thread_id":"01a2311f-8690-77d2-b4b5-598f649b743b"}"#,
            r#"{"type":"item.completed","item":{"id":"item_0","type":"error","message":"Model metadata for `m` not found."}}"#,
            r#"{"type":"item.started","item":{"id":"item_1","type":"command_execution","command":"bash -lc 'echo hi'","aggregated_output":"","exit_code":null,"status":"in_progress"}}"#,
            r#"{"type":"item.completed","item":{"id":"item_1","type":"command_execution","command":"bash -lc 'echo hi'","aggregated_output":"hi\n","exit_code":0,"status":"completed"}}"#,
            r#"{"type":"item.completed","item":{"id":"item_2","type":"agent_message","text":"done"}}"#,
            r#"{"type":"turn.completed","usage":{"input_tokens":300,"cached_input_tokens":120,"output_tokens":21}}"#,
        ];
        let events: Vec<AgentEvent> = lines.iter().flat_map(|l| reader.read(l)).collect();
        assert!(
            matches!(&events[0], AgentEvent::Init(i) if i.session_id.as_deref() == Some("01a2311f-8690-77d2-b4b5-598f649b743b"))
        );
        assert!(
            matches!(&events[1], AgentEvent::Text(t) if t.starts_with("codex: Model metadata"))
        );
        assert!(matches!(&events[2], AgentEvent::Assistant(a) if a.tool_uses[0].name == "shell"));
        assert!(matches!(&events[3], AgentEvent::ToolResults(r) if !r[0].is_error));
        let AgentEvent::Result(result) = &events[5] else {
            panic!("{events:?}")
        };
        assert_eq!(result.result.as_deref(), Some("done"));
        assert_eq!(
            result.usage,
            TokenUsage {
                input_tokens: 80,
                cache_read_input_tokens: 70,
                output_tokens: 11,
                cache_creation_input_tokens: 0
            }
        );
        assert_eq!(result.thread_usage.unwrap().input_tokens, 180);
    }

    #[test]
    fn a_failed_turn_is_an_api_error_with_its_status() {
        let mut reader = CodexReader::default();
        let retry = reader.read(r#"{"type":"error","message":"Reconnecting... 1/2 (unexpected status 500 Internal Server Error: boom)"}"#);
        assert!(
            matches!(&retry[0], AgentEvent::ApiRetry(r) if r.attempt == Some(1) && r.max_retries == Some(2) && r.error_status == Some(500))
        );
        let events = reader.read(r#"{"type":"turn.failed","error":{"message":"exceeded retry limit, last status: 500 Internal Server Error"}}"#);
        let AgentEvent::Result(result) = &events[0] else {
            panic!("{events:?}")
        };
        assert!(result.is_error);
        assert_eq!(result.api_error_status, Some(500));
        assert_eq!(result.terminal_reason.as_deref(), Some("api_error"));
    }
}
