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
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{json, Value};

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
pub struct Recorded {
    /// `GET`, `POST` ...
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The JSON body (`Null` when there was none or it was not JSON).
    pub body: Value,
}

impl Recorded {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

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
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct Shared {
    rules: Mutex<Vec<(String, Vec<Turn>)>>,
    cursors: Mutex<HashMap<(String, String), usize>>,
    requests: Mutex<Vec<Recorded>>,
    connections: Mutex<Vec<TcpStream>>,
    stopping: AtomicBool,
    next_id: AtomicU64,
}

impl MockApi {
    /// Starts listening on a free loopback port.
    pub fn start() -> MockApi {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let shared = Arc::new(Shared::default());
        let accepting = Arc::clone(&shared);
        let acceptor = std::thread::Builder::new()
            .name("mock-api-accept".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    if accepting.stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    if let Ok(clone) = stream.try_clone() {
                        accepting.connections.lock().unwrap().push(clone);
                    }
                    let shared = Arc::clone(&accepting);
                    let _ = std::thread::Builder::new()
                        .name("mock-api-conn".into())
                        .spawn(move || serve(stream, &shared));
                }
            })
            .expect("spawn the acceptor");
        MockApi {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// `http://127.0.0.1:PORT`, for `ANTHROPIC_BASE_URL`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Scripts the conversations whose prompt contains `marker` (first matching rule wins).
    pub fn rule(&self, marker: &str, turns: impl IntoIterator<Item = Turn>) -> &Self {
        let turns: Vec<Turn> = turns.into_iter().collect();
        assert!(!turns.is_empty(), "a rule needs at least one turn");
        self.shared
            .rules
            .lock()
            .unwrap()
            .push((marker.to_string(), turns));
        self
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().unwrap().clone()
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

impl Drop for MockApi {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Wake the acceptor, then cut every open connection.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        for conn in self.shared.connections.lock().unwrap().drain(..) {
            let _ = conn.shutdown(std::net::Shutdown::Both);
        }
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// Serves one connection: requests until the peer closes or a stream ends it.
fn serve(stream: TcpStream, shared: &Shared) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(120)));
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut out = stream;
    while !shared.stopping.load(Ordering::SeqCst) {
        let Some(request) = read_request(&mut reader) else {
            return;
        };
        shared.requests.lock().unwrap().push(request.clone());
        let keep_open = respond(&mut out, &request, shared).unwrap_or(false);
        if !keep_open {
            let _ = out.shutdown(std::net::Shutdown::Both);
            return;
        }
    }
}

fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Recorded> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).ok()?;
            let size = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).ok()?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(len, 0);
        reader.read_exact(&mut body).ok()?;
    }
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    Some(Recorded {
        method,
        path,
        headers,
        body,
    })
}

/// Answers one request. `Ok(true)` keeps the connection open for another.
fn respond(out: &mut TcpStream, request: &Recorded, shared: &Shared) -> std::io::Result<bool> {
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
    out.write_all(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n\
          request-id: req_mock\r\nconnection: close\r\n\r\n",
    )?;
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
            text_block(out, &[text], Duration::ZERO, shared)?;
            "end_turn"
        }
        Turn::Slow { chunks, delay } => {
            text_block(out, &chunks, delay, shared)?;
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
            while !shared.stopping.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(20));
            }
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
    shared: &Shared,
) -> std::io::Result<()> {
    sse(
        out,
        "content_block_start",
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    )?;
    for (i, chunk) in chunks.iter().enumerate() {
        if i > 0 && !delay.is_zero() {
            std::thread::sleep(delay);
            if shared.stopping.load(Ordering::SeqCst) {
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

fn sse(out: &mut TcpStream, event: &str, data: Value) -> std::io::Result<()> {
    out.write_all(format!("event: {event}\ndata: {data}\n\n").as_bytes())?;
    out.flush()
}

fn send_json(out: &mut TcpStream, status: u16, body: &Value) -> std::io::Result<bool> {
    let body = body.to_string();
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        529 => "Overloaded",
        _ => "Mock",
    };
    out.write_all(
        format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n\
             content-length: {}\r\nrequest-id: req_mock\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )?;
    out.flush()?;
    Ok(true)
}

/// The next turn of the request's conversation.
fn next_turn(request: &Recorded, shared: &Shared) -> Turn {
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

/// `needle` as it appears inside a JSON string.
fn json_escaped(needle: &str) -> String {
    let quoted = Value::String(needle.to_string()).to_string();
    quoted[1..quoted.len() - 1].to_string()
}
