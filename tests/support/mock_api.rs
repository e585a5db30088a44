//! A stand-in for the Anthropic Messages API on 127.0.0.1, for running the real Claude Code
//! CLI offline.
//!
//! ```ignore
//! let api = MockApi::start();
//! api.rule("WRITE-IT", [Turn::tool("Write", json!({"file_path": "a.txt", "content": "x"})),
//!                       Turn::text("written")]);
//! // run claude with support::claude_env(&api, home) ...
//! assert!(api.requests_for("WRITE-IT")[1].contains_text("File created successfully"));
//! ```
//!
//! `POST /v1/messages` (with or without `?beta=true`) answers streaming requests with the
//! server-sent events the CLI expects, and other requests with a plain JSON message. Every
//! other path gets a small JSON answer (`count_tokens` a count, the rest 404).
//!
//! Scripts: a rule says "when the prompt contains MARKER, answer with these turns". The prompt
//! is the last text block of a user message that does not start with `<system-reminder>`.
//! A conversation is keyed by the `X-Claude-Code-Session-Id` header and that prompt, so a tool
//! call's follow-up request (which carries the `tool_result`) gets the next turn, and a
//! `--resume` with a new prompt starts the matching rule from its first turn. Once a script is
//! used up its last turn repeats (so `[Turn::error(529, ..)]` fails every retry). A request no
//! rule matches gets `Turn::text("ok")`.

use std::collections::HashMap;
use std::net::TcpStream;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{json, Value};

use super::http_stub::{self, hang, json_escaped, send_json, sse, HttpRequest, Protocol, Server};

/// One answer of the model.
#[derive(Debug, Clone)]
pub enum Turn {
    /// A text reply; the conversation's turn ends.
    Text(String),
    /// A tool call; the CLI runs the tool and asks again with its result.
    ToolUse { name: String, input: Value },
    /// An HTTP error, like 529 `overloaded_error` or 500 `api_error`.
    Error { status: u16, kind: String },
    /// The stream opens and then nothing more comes until the server stops.
    Hang,
    /// A text reply streamed in pieces, `delay` apart.
    Slow {
        chunks: Vec<String>,
        delay: Duration,
    },
    /// A turn made from the prompt when the request arrives, for replies that must name
    /// something only the prompt knows (like the run's artifacts folder).
    FromPrompt(fn(&str) -> Turn),
}

impl Turn {
    /// A text reply.
    pub fn text(text: impl Into<String>) -> Turn {
        Turn::Text(text.into())
    }

    /// A tool call.
    pub fn tool(name: impl Into<String>, input: Value) -> Turn {
        Turn::ToolUse {
            name: name.into(),
            input,
        }
    }

    /// An HTTP error with an Anthropic error type (`overloaded_error`, `api_error` ...).
    pub fn error(status: u16, kind: impl Into<String>) -> Turn {
        Turn::Error {
            status,
            kind: kind.into(),
        }
    }
}

/// A request the stand-in received.
#[derive(Debug, Clone)]
pub struct Recorded(HttpRequest);

impl Deref for Recorded {
    type Target = HttpRequest;

    fn deref(&self) -> &HttpRequest {
        &self.0
    }
}

impl Recorded {
    /// The CLI's session id header.
    pub fn session_id(&self) -> Option<&str> {
        self.header("x-claude-code-session-id")
    }

    /// True for `POST /v1/messages` (not `count_tokens`).
    pub fn is_messages(&self) -> bool {
        self.method == "POST"
            && (self.path == "/v1/messages" || self.path.starts_with("/v1/messages?"))
    }

    /// True when the request asked for a stream.
    pub fn is_stream(&self) -> bool {
        self.body.get("stream").and_then(Value::as_bool) == Some(true)
    }

    /// The conversation so far (`messages`).
    pub fn messages(&self) -> &[Value] {
        self.body
            .get("messages")
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice)
    }

    /// The real prompt of the current turn (see the module docs).
    pub fn prompt(&self) -> Option<String> {
        prompt_of(&self.body)
    }

    /// Every user prompt in the conversation, oldest first.
    pub fn prompts(&self) -> Vec<String> {
        self.messages()
            .iter()
            .filter(|m| m.get("role").and_then(Value::as_str) == Some("user"))
            .flat_map(real_texts)
            .collect()
    }

    /// True when `needle` appears anywhere in the conversation: prompts, replies, tool calls
    /// and tool results (the system prompt is not searched).
    pub fn contains_text(&self, needle: &str) -> bool {
        self.messages()
            .iter()
            .any(|m| m.to_string().contains(&json_escaped(needle)))
    }

    /// The text of every tool result in the conversation, oldest first.
    pub fn tool_results(&self) -> Vec<String> {
        let mut out = Vec::new();
        for message in self.messages() {
            for block in message
                .get("content")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if block.get("type").and_then(Value::as_str) == Some("tool_result") {
                    out.push(match block.get("content") {
                        Some(Value::String(s)) => s.clone(),
                        Some(other) => other.to_string(),
                        None => String::new(),
                    });
                }
            }
        }
        out
    }
}

/// The running stand-in. Dropping it stops it and releases hanging streams.
pub struct MockApi {
    server: Server<Messages>,
}

/// The Messages API: the scripts and what was asked.
#[derive(Default)]
struct Messages {
    rules: Mutex<Vec<(String, Vec<Turn>)>>,
    cursors: Mutex<HashMap<(String, String), usize>>,
    requests: Mutex<Vec<Recorded>>,
    next_id: AtomicU64,
}

impl MockApi {
    /// Starts listening on a free loopback port.
    pub fn start() -> MockApi {
        MockApi {
            server: Server::start("mock-api", Messages::default()),
        }
    }

    /// `http://127.0.0.1:PORT`, for `ANTHROPIC_BASE_URL`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// Scripts the conversations whose prompt contains `marker` (first matching rule wins).
    pub fn rule(&self, marker: &str, turns: impl IntoIterator<Item = Turn>) -> &Self {
        let turns: Vec<Turn> = turns.into_iter().collect();
        assert!(!turns.is_empty(), "a rule needs at least one turn");
        self.server
            .rules
            .lock()
            .unwrap()
            .push((marker.to_string(), turns));
        self
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.server.requests.lock().unwrap().clone()
    }

    /// The streaming `/v1/messages` requests whose prompt contains `marker`, in order.
    pub fn requests_for(&self, marker: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.is_messages() && r.is_stream())
            .filter(|r| r.prompt().is_some_and(|p| p.contains(marker)))
            .collect()
    }
}

impl Protocol for Messages {
    fn respond(
        &self,
        out: &mut TcpStream,
        request: &HttpRequest,
        stopping: &AtomicBool,
    ) -> std::io::Result<bool> {
        let request = Recorded(request.clone());
        self.requests.lock().unwrap().push(request.clone());
        respond(out, &request, self, stopping)
    }
}

/// Answers one request. `Ok(true)` keeps the connection open for another.
fn respond(
    out: &mut TcpStream,
    request: &Recorded,
    shared: &Messages,
    stopping: &AtomicBool,
) -> std::io::Result<bool> {
    if request.path.starts_with("/v1/messages/count_tokens") {
        return send_json(out, 200, &json!({"input_tokens": 12}));
    }
    if !request.is_messages() {
        return send_json(
            out,
            404,
            &json!({"type": "error", "error": {"type": "not_found_error", "message": "not mocked"}}),
        );
    }
    let model = request
        .body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("claude-mock")
        .to_string();
    if !request.is_stream() {
        return send_json(
            out,
            200,
            &json!({"id": "msg_mock", "type": "message", "role": "assistant", "model": model,
                    "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn",
                    "stop_sequence": null, "usage": {"input_tokens": 1, "output_tokens": 1}}),
        );
    }
    let turn = next_turn(request, shared);
    if let Turn::Error { status, kind } = &turn {
        return send_json(
            out,
            *status,
            &json!({"type": "error", "error": {"type": kind, "message": format!("mock {kind}")}}),
        );
    }
    http_stub::start_events(out)?;
    let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
    sse(
        out,
        "message_start",
        json!({"type": "message_start", "message": {"id": format!("msg_mock_{id}"),
               "type": "message", "role": "assistant", "model": model, "content": [],
               "stop_reason": null, "stop_sequence": null,
               "usage": {"input_tokens": 12, "output_tokens": 1}}}),
    )?;
    let stop_reason = match turn {
        Turn::Text(text) => {
            text_block(out, &[text], Duration::ZERO, stopping)?;
            "end_turn"
        }
        Turn::Slow { chunks, delay } => {
            text_block(out, &chunks, delay, stopping)?;
            "end_turn"
        }
        Turn::ToolUse { name, input } => {
            sse(
                out,
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block":
                       {"type": "tool_use", "id": format!("toolu_mock_{id}"), "name": name, "input": {}}}),
            )?;
            sse(
                out,
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta":
                       {"type": "input_json_delta", "partial_json": input.to_string()}}),
            )?;
            sse(
                out,
                "content_block_stop",
                json!({"type": "content_block_stop", "index": 0}),
            )?;
            "tool_use"
        }
        Turn::Hang => {
            hang(stopping);
            return Ok(false);
        }
        Turn::Error { .. } => unreachable!("answered above"),
        Turn::FromPrompt(_) => unreachable!("made into a turn by next_turn"),
    };
    sse(
        out,
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": null},
               "usage": {"output_tokens": 5}}),
    )?;
    sse(out, "message_stop", json!({"type": "message_stop"}))?;
    Ok(false)
}

fn text_block(
    out: &mut TcpStream,
    chunks: &[String],
    delay: Duration,
    stopping: &AtomicBool,
) -> std::io::Result<()> {
    sse(
        out,
        "content_block_start",
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    )?;
    for (i, chunk) in chunks.iter().enumerate() {
        if i > 0 && !delay.is_zero() {
            std::thread::sleep(delay);
            if stopping.load(Ordering::SeqCst) {
                return Ok(());
            }
        }
        sse(
            out,
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": chunk}}),
        )?;
    }
    sse(
        out,
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    )
}

/// The next turn of the request's conversation.
fn next_turn(request: &Recorded, shared: &Messages) -> Turn {
    let prompt = request.prompt().unwrap_or_default();
    let rules = shared.rules.lock().unwrap();
    let Some((_, turns)) = rules
        .iter()
        .find(|(marker, _)| prompt.contains(marker.as_str()))
    else {
        return Turn::text("ok");
    };
    let key = (
        request.session_id().unwrap_or_default().to_string(),
        prompt.clone(),
    );
    let mut cursors = shared.cursors.lock().unwrap();
    let cursor = cursors.entry(key).or_insert(0);
    let turn = turns[(*cursor).min(turns.len() - 1)].clone();
    *cursor += 1;
    match turn {
        Turn::FromPrompt(make) => make(&prompt),
        turn => turn,
    }
}

fn prompt_of(body: &Value) -> Option<String> {
    body.get("messages")?
        .as_array()?
        .iter()
        .filter(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .flat_map(real_texts)
        .last()
}

/// The texts of a user message that are not `<system-reminder>` blocks.
fn real_texts(message: &Value) -> Vec<String> {
    match message.get("content") {
        Some(Value::String(s)) if !s.starts_with("<system-reminder>") => vec![s.clone()],
        Some(Value::Array(blocks)) => blocks
            .iter()
            .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .filter(|t| !t.starts_with("<system-reminder>"))
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}
