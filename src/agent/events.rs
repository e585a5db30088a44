//! The common events of an agent turn, and the Claude Code `stream-json` protocol that they
//! follow most closely, read from a pseudo-terminal. Other harnesses translate their own
//! streams into these events (see [`super::codex`]).
//!
//! The CLI prints one JSON object a line. Under a PTY every line ends in `\r\n` and the last
//! line is a terminal escape (`ESC[?25h`), so [`Lines`] splits the raw bytes into lines with
//! `\r` and escapes removed, and [`parse_line`] turns each line into an [`AgentEvent`]. Parsing is
//! tolerant: unknown event types and fields are kept as [`AgentEvent::Other`], a line that is not
//! JSON (the CLI's own error messages, such as `Error: Session ID … is already in use.`) is kept
//! as [`AgentEvent::Text`], and a field of an unexpected type reads as absent.

use serde_json::Value;

/// One line of the agent's output, typed.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentEvent {
    /// `system/init`: the session started.
    Init(Init),
    /// An assistant message: text and tool calls, or an API error the CLI turned into a message.
    Assistant(Assistant),
    /// A user message carrying tool results back to the model.
    ToolResults(Vec<ToolResult>),
    /// `system/api_retry`: the CLI retries a failed API call.
    ApiRetry(ApiRetry),
    /// `system/permission_denied`: a tool call was refused by the permission rules.
    PermissionDenied(PermissionDenied),
    /// `stream_event`: a piece of a message still being generated (a sign of life; the whole
    /// message follows as [`AgentEvent::Assistant`]).
    Partial {
        /// The text the piece adds, when it is a text delta.
        text: Option<String>,
    },
    /// The final `result` event.
    Result(Box<ResultEvent>),
    /// A JSON event of another type or subtype (`system/status`, hooks, tasks ...).
    Other {
        /// `type`, or `type/subtype` when there is a subtype.
        kind: String,
    },
    /// A line that is not JSON: an error message of the CLI, usually.
    Text(String),
}

/// `system/init`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Init {
    /// The conversation's id (the one given with `--session-id` or `--resume`).
    pub session_id: Option<String>,
    /// The full model id.
    pub model: Option<String>,
    /// The permission mode in force (`default`, `acceptEdits`, ...).
    pub permission_mode: Option<String>,
    /// The working directory the CLI runs in.
    pub cwd: Option<String>,
    /// The CLI's version.
    pub version: Option<String>,
}

/// An assistant message (usually one content block).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Assistant {
    /// Text blocks, in order.
    pub texts: Vec<String>,
    /// Tool calls, in order.
    pub tool_uses: Vec<ToolUse>,
    /// Set when the message stands for a failed API call (`rate_limit`, `overloaded`,
    /// `server_error`, `authentication_failed` ...).
    pub error: Option<String>,
    /// The HTTP status of that failed call, when known.
    pub api_error_status: Option<u16>,
}

/// A tool call of the model.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolUse {
    /// Tool name (`Write`, `Bash`, `mcp__server__tool` ...).
    pub name: String,
    /// The call's id, matched by the tool result.
    pub id: String,
    /// The call's arguments.
    pub input: Value,
}

/// The result of one tool call, as fed back to the model.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolResult {
    /// The id of the call this answers.
    pub tool_use_id: String,
    /// True when the tool failed or was refused.
    pub is_error: bool,
    /// The result's text (text blocks joined).
    pub content: String,
}

/// `system/api_retry`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ApiRetry {
    /// Which retry this is (1 = the first retry).
    pub attempt: Option<u64>,
    /// How many retries the CLI makes in all.
    pub max_retries: Option<u64>,
    /// HTTP status of the failed call.
    pub error_status: Option<u16>,
    /// Error kind (`overloaded`, `rate_limit`, `server_error` ...).
    pub error: Option<String>,
}

/// `system/permission_denied`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PermissionDenied {
    /// The refused tool.
    pub tool_name: String,
    /// The CLI's explanation.
    pub message: Option<String>,
}

/// The final `result` event of a run.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ResultEvent {
    /// `success`, or `error_max_turns`, `error_during_execution`, `error_max_budget_usd` ...
    pub subtype: String,
    /// True when the run failed, including API errors (which keep subtype `success`).
    pub is_error: bool,
    /// The final answer text (absent for error subtypes).
    pub result: Option<String>,
    /// Error messages of error subtypes.
    pub errors: Vec<String>,
    /// The conversation's id.
    pub session_id: Option<String>,
    /// Cost in US dollars as the CLI reports it: on `--resume` this is the whole
    /// conversation's cost so far, not this run's (see [`ResultEvent::run_cost_usd`]).
    pub total_cost_usd: Option<f64>,
    /// Cost of this process's calls only, from `model_usage_since_last_result`.
    pub run_cost_usd: Option<f64>,
    /// Token counts of this run (not cumulative over a resumed conversation).
    pub usage: TokenUsage,
    /// The conversation's running token totals after this run, for CLIs that report those
    /// instead of the run's own (Codex).
    pub thread_usage: Option<TokenUsage>,
    /// Model calls made (one tool call and one reply make 2).
    pub num_turns: Option<u64>,
    /// Wall time the CLI measured.
    pub duration_ms: Option<u64>,
    /// Time spent waiting for the API.
    pub duration_api_ms: Option<u64>,
    /// Tool calls refused by the permission rules.
    pub permission_denials: Vec<Denial>,
    /// HTTP status of a failed API call.
    pub api_error_status: Option<u16>,
    /// Why the run ended: `completed`, `max_turns`, `api_error`, `aborted_streaming` ...
    pub terminal_reason: Option<String>,
}

/// Token counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TokenUsage {
    /// Input tokens not read from or written to the cache.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Input tokens written to the prompt cache.
    pub cache_creation_input_tokens: u64,
    /// Input tokens read from the prompt cache.
    pub cache_read_input_tokens: u64,
}

/// A tool call the permission rules refused.
#[derive(Debug, Clone, PartialEq)]
pub struct Denial {
    /// The refused tool.
    pub tool_name: String,
    /// Its arguments (`file_path`, `command` ...).
    pub tool_input: Value,
}

impl Denial {
    /// What the call was about: the file, command, URL or pattern, when there is one.
    pub fn target(&self) -> Option<&str> {
        [
            "file_path",
            "notebook_path",
            "command",
            "url",
            "path",
            "pattern",
        ]
        .iter()
        .find_map(|key| self.tool_input.get(key).and_then(Value::as_str))
    }
}

/// The `type` tag of lines reins adds to a transcript for output that was not JSON.
pub const TEXT_LINE_TYPE: &str = "reins_text";

/// Parses one line (already stripped of `\r` and escapes). Returns `None` for blank lines.
pub fn parse_line(line: &str) -> Option<AgentEvent> {
    let trimmed = line.trim();
    if trimmed.is_empty() {
        return None;
    }
    if !trimmed.starts_with('{') {
        return Some(AgentEvent::Text(trimmed.to_string()));
    }
    match serde_json::from_str::<Value>(trimmed) {
        Ok(value) if value.is_object() => Some(from_value(&value)),
        _ => Some(AgentEvent::Text(trimmed.to_string())),
    }
}

/// Types a parsed JSON event.
pub fn from_value(v: &Value) -> AgentEvent {
    let kind = str_at(v, "type").unwrap_or_default();
    let subtype = str_at(v, "subtype");
    match (kind.as_str(), subtype.as_deref()) {
        ("system", Some("init")) => AgentEvent::Init(Init {
            session_id: str_at(v, "session_id"),
            model: str_at(v, "model"),
            permission_mode: str_at(v, "permissionMode"),
            cwd: str_at(v, "cwd"),
            version: str_at(v, "claude_code_version"),
        }),
        ("system", Some("api_retry")) => AgentEvent::ApiRetry(ApiRetry {
            attempt: u64_at(v, "attempt"),
            max_retries: u64_at(v, "max_retries"),
            error_status: status_at(v, "error_status"),
            error: str_at(v, "error"),
        }),
        ("system", Some("permission_denied")) => AgentEvent::PermissionDenied(PermissionDenied {
            tool_name: str_at(v, "tool_name").unwrap_or_default(),
            message: str_at(v, "message"),
        }),
        ("assistant", _) => AgentEvent::Assistant(assistant(v)),
        ("user", _) => {
            let results = tool_results(v);
            if results.is_empty() {
                AgentEvent::Other {
                    kind: "user".into(),
                }
            } else {
                AgentEvent::ToolResults(results)
            }
        }
        ("stream_event", _) => AgentEvent::Partial {
            text: v
                .pointer("/event/delta/text")
                .and_then(Value::as_str)
                .map(str::to_string),
        },
        ("result", _) => AgentEvent::Result(Box::new(result(v))),
        (TEXT_LINE_TYPE, _) => AgentEvent::Text(str_at(v, "text").unwrap_or_default()),
        (kind, Some(sub)) => AgentEvent::Other {
            kind: format!("{kind}/{sub}"),
        },
        (kind, None) => AgentEvent::Other { kind: kind.into() },
    }
}

fn assistant(v: &Value) -> Assistant {
    let mut out = Assistant {
        error: str_at(v, "error"),
        api_error_status: status_at(v, "api_error_status"),
        ..Assistant::default()
    };
    for block in blocks(v) {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => {
                if let Some(text) = block.get("text").and_then(Value::as_str) {
                    out.texts.push(text.to_string());
                }
            }
            Some("tool_use") => out.tool_uses.push(ToolUse {
                name: str_at(block, "name").unwrap_or_default(),
                id: str_at(block, "id").unwrap_or_default(),
                input: block.get("input").cloned().unwrap_or(Value::Null),
            }),
            _ => {}
        }
    }
    out
}

fn tool_results(v: &Value) -> Vec<ToolResult> {
    blocks(v)
        .filter(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
        .map(|b| ToolResult {
            tool_use_id: str_at(b, "tool_use_id").unwrap_or_default(),
            is_error: b.get("is_error").and_then(Value::as_bool).unwrap_or(false),
            content: content_text(b.get("content")),
        })
        .collect()
}

fn result(v: &Value) -> ResultEvent {
    let usage = v.get("usage").unwrap_or(&Value::Null);
    ResultEvent {
        subtype: str_at(v, "subtype").unwrap_or_default(),
        is_error: v.get("is_error").and_then(Value::as_bool).unwrap_or(false),
        result: str_at(v, "result"),
        errors: v
            .get("errors")
            .and_then(Value::as_array)
            .map(|errors| errors.iter().map(|e| content_text(Some(e))).collect())
            .unwrap_or_default(),
        session_id: str_at(v, "session_id"),
        total_cost_usd: v.get("total_cost_usd").and_then(Value::as_f64),
        run_cost_usd: v
            .get("model_usage_since_last_result")
            .and_then(Value::as_object)
            .map(|models| {
                models
                    .values()
                    .filter_map(|m| m.get("costUSD").and_then(Value::as_f64))
                    .sum()
            }),
        usage: TokenUsage {
            input_tokens: u64_at(usage, "input_tokens").unwrap_or(0),
            output_tokens: u64_at(usage, "output_tokens").unwrap_or(0),
            cache_creation_input_tokens: u64_at(usage, "cache_creation_input_tokens").unwrap_or(0),
            cache_read_input_tokens: u64_at(usage, "cache_read_input_tokens").unwrap_or(0),
        },
        thread_usage: None,
        num_turns: u64_at(v, "num_turns"),
        duration_ms: u64_at(v, "duration_ms"),
        duration_api_ms: u64_at(v, "duration_api_ms"),
        permission_denials: v
            .get("permission_denials")
            .and_then(Value::as_array)
            .map(|denials| {
                denials
                    .iter()
                    .map(|d| Denial {
                        tool_name: str_at(d, "tool_name").unwrap_or_default(),
                        tool_input: d.get("tool_input").cloned().unwrap_or(Value::Null),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        api_error_status: status_at(v, "api_error_status"),
        terminal_reason: str_at(v, "terminal_reason"),
    }
}

/// The content blocks of `message.content` (none when it is a string or absent).
fn blocks(v: &Value) -> impl Iterator<Item = &Value> {
    v.pointer("/message/content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// Text of a content value: a string, or the text blocks of a list, joined by newlines.
fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|item| match item {
                Value::String(s) => Some(s.as_str()),
                other => other.get("text").and_then(Value::as_str),
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn str_at(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

fn u64_at(v: &Value, key: &str) -> Option<u64> {
    v.get(key).and_then(Value::as_u64)
}

fn status_at(v: &Value, key: &str) -> Option<u16> {
    u64_at(v, key).and_then(|n| u16::try_from(n).ok())
}

/// Splits PTY output into clean lines: `\r` dropped, terminal escape sequences removed,
/// invalid UTF-8 replaced. A line longer than [`Lines::MAX_LINE`] is cut there.
#[derive(Debug, Default)]
pub struct Lines {
    pending: Vec<u8>,
}

impl Lines {
    /// The longest line kept whole (64 MiB); the rest of a longer line is dropped.
    pub const MAX_LINE: usize = 64 << 20;

    /// Creates an empty splitter.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds a chunk; returns the lines it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        for &byte in chunk {
            if byte == b'\n' {
                lines.push(clean(&std::mem::take(&mut self.pending)));
            } else if self.pending.len() < Self::MAX_LINE {
                self.pending.push(byte);
            }
        }
        lines
    }

    /// The last, unterminated line, if any (call once the output ended).
    pub fn finish(&mut self) -> Option<String> {
        if self.pending.is_empty() {
            None
        } else {
            Some(clean(&std::mem::take(&mut self.pending)))
        }
    }
}

/// Removes `\r`, other C0 controls but tab, and ANSI escape sequences (CSI, OSC and two-byte
/// escapes) from one line.
pub fn clean(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => match chars.next() {
                // CSI: parameters and intermediates, then one final byte in @..~
                Some('[') => {
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
                // OSC, DCS, APC, PM, SOS: up to BEL or ST (ESC \)
                Some(']' | 'P' | '_' | '^' | 'X') => {
                    while let Some(c) = chars.next() {
                        if c == '\u{7}' {
                            break;
                        }
                        if c == '\u{1b}' && chars.peek() == Some(&'\\') {
                            chars.next();
                            break;
                        }
                    }
                }
                // Charset designations take one more character: ESC ( B
                Some('(' | ')' | '*' | '+') => {
                    chars.next();
                }
                _ => {}
            },
            '\t' => out.push(c),
            c if (c as u32) < 0x20 => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_strip_carriage_returns_and_escapes() {
        let mut lines = Lines::new();
        let mut got = lines.push(b"{\"type\":\"x\"}\r\n\x1b[?25");
        got.extend(lines.push(b"h\r\n\x1b]0;title\x07tail"));
        got.extend(lines.finish());
        assert_eq!(got, ["{\"type\":\"x\"}", "", "tail"]);
    }

    #[test]
    fn escaped_control_characters_inside_json_strings_survive() {
        let line = clean(br#"{"text":"a\r\nb\u001b[0m"}"#);
        let event: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(event["text"], "a\r\nb\u{1b}[0m");
    }

    #[test]
    fn non_json_lines_are_text() {
        assert_eq!(
            parse_line("Error: Session ID x is already in use."),
            Some(AgentEvent::Text(
                "Error: Session ID x is already in use.".into()
            ))
        );
        assert_eq!(parse_line("  "), None);
        assert_eq!(
            parse_line("{not json"),
            Some(AgentEvent::Text("{not json".into()))
        );
    }

    #[test]
    fn unknown_types_and_fields_are_tolerated() {
        assert_eq!(
            parse_line(r#"{"type":"system","subtype":"status","status":"requesting"}"#),
            Some(AgentEvent::Other {
                kind: "system/status".into()
            })
        );
        assert_eq!(
            parse_line(r#"{"type":"brand_new","x":[1]}"#),
            Some(AgentEvent::Other {
                kind: "brand_new".into()
            })
        );
        // A field of the wrong type reads as absent instead of losing the event.
        let Some(AgentEvent::Result(r)) =
            parse_line(r#"{"type":"result","subtype":"success","num_turns":"two","result":"ok"}"#)
        else {
            panic!("not a result")
        };
        assert_eq!((r.num_turns, r.result.as_deref()), (None, Some("ok")));
    }
}
