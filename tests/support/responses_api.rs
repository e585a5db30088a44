//! A stand-in for the OpenAI Responses API on 127.0.0.1, for running the real Codex CLI
//! offline (through a custom provider, see [`super::codex`]).
//!
//! `POST /v1/responses` answers with the server-sent events Codex reads:
//! `response.created`, `response.output_item.done` (an assistant `message` or a
//! `function_call`), then `response.completed` with usage. Other paths get a 404.
//!
//! Scripts: a rule says "when the prompt contains MARKER, answer with these turns". The prompt
//! is the last user text that is not Codex's own context (`<environment_context>` ...). The
//! turn given to a request is the number of function calls after that prompt in its input, so
//! a tool call's follow-up request gets the next turn, a retry of a failed request gets the
//! same turn again, and a resumed thread with a new prompt starts the matching rule anew.
//! Once a script is used up its last turn repeats. A request no rule matches gets `ok`.
//! Every response reports 100 input tokens (40 of them cached) and 10 output tokens.

use std::net::TcpStream;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use serde_json::{json, Value};

use super::http_stub::{self, hang, json_escaped, send_json, sse, HttpRequest, Protocol, Server};

/// One answer of the model.
#[derive(Debug, Clone)]
pub enum Reply {
    /// An assistant message; the turn ends.
    Text(String),
    /// A call of Codex's shell tool (`exec_command {cmd}`); Codex runs it and asks again.
    Shell(String),
    /// An HTTP error with this status.
    Error(u16),
    /// The stream opens, then nothing more comes until the server stops.
    Hang,
    /// A reply made from the prompt when the request arrives.
    FromPrompt(fn(&str) -> Reply),
    /// Hangs the first time the stand-in gives it, then replies with this text.
    HangOnce(String),
}

impl Reply {
    /// An assistant message.
    pub fn text(text: impl Into<String>) -> Reply {
        Reply::Text(text.into())
    }

    /// A shell command.
    pub fn shell(cmd: impl Into<String>) -> Reply {
        Reply::Shell(cmd.into())
    }
}

/// A request the stand-in received.
#[derive(Debug, Clone)]
pub struct Request(HttpRequest);

impl Deref for Request {
    type Target = HttpRequest;

    fn deref(&self) -> &HttpRequest {
        &self.0
    }
}

impl Request {
    /// The Codex thread the request belongs to.
    pub fn thread_id(&self) -> Option<&str> {
        self.header("thread-id").or(self.header("session-id"))
    }

    /// The input items.
    pub fn input(&self) -> &[Value] {
        self.body
            .get("input")
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice)
    }

    /// Every real user prompt in the conversation, oldest first.
    pub fn prompts(&self) -> Vec<String> {
        self.input()
            .iter()
            .filter(|i| i.get("role").and_then(Value::as_str) == Some("user"))
            .flat_map(real_texts)
            .collect()
    }

    /// The current turn's prompt.
    pub fn prompt(&self) -> Option<String> {
        self.prompts().pop()
    }

    /// True when `needle` appears in the input (prompts, replies, tool calls and outputs).
    pub fn contains_text(&self, needle: &str) -> bool {
        let escaped = json_escaped(needle);
        self.input()
            .iter()
            .any(|i| i.to_string().contains(&escaped))
    }

    /// Function calls after the current prompt.
    fn calls_since_prompt(&self) -> usize {
        let input = self.input();
        let last_prompt = input
            .iter()
            .rposition(|i| {
                i.get("role").and_then(Value::as_str) == Some("user") && !real_texts(i).is_empty()
            })
            .unwrap_or(0);
        input[last_prompt..]
            .iter()
            .filter(|i| i.get("type").and_then(Value::as_str) == Some("function_call"))
            .count()
    }
}

/// The running stand-in. Dropping it stops it and releases hanging streams.
pub struct ResponsesApi {
    server: Server<Responses>,
}

/// The Responses API: the scripts and what was asked.
#[derive(Default)]
struct Responses {
    rules: Mutex<Vec<(String, Vec<Reply>)>>,
    requests: Mutex<Vec<Request>>,
    next_id: AtomicU64,
    hung_once: Mutex<Vec<String>>,
}

impl ResponsesApi {
    /// Starts listening on a free loopback port.
    pub fn start() -> ResponsesApi {
        ResponsesApi {
            server: Server::start("responses-api", Responses::default()),
        }
    }

    /// `http://127.0.0.1:PORT/v1`, the provider's `base_url`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.server.addr())
    }

    /// Scripts the conversations whose prompt contains `marker` (first matching rule wins).
    pub fn rule(&self, marker: &str, replies: impl IntoIterator<Item = Reply>) -> &Self {
        let replies: Vec<Reply> = replies.into_iter().collect();
        assert!(!replies.is_empty(), "a rule needs at least one reply");
        self.server
            .rules
            .lock()
            .unwrap()
            .push((marker.to_string(), replies));
        self
    }

    /// Every `/v1/responses` request so far.
    pub fn requests(&self) -> Vec<Request> {
        self.server.requests.lock().unwrap().clone()
    }

    /// The requests whose prompt contains `marker`, in order.
    pub fn requests_for(&self, marker: &str) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.prompt().is_some_and(|p| p.contains(marker)))
            .collect()
    }
}

impl Protocol for Responses {
    fn respond(
        &self,
        out: &mut TcpStream,
        request: &HttpRequest,
        stopping: &AtomicBool,
    ) -> std::io::Result<bool> {
        if request.method != "POST" || !request.path.starts_with("/v1/responses") {
            return send_json(out, 404, &json!({"error": {"message": "not mocked"}}));
        }
        let request = Request(request.clone());
        self.requests.lock().unwrap().push(request.clone());
        respond(out, &request, self, stopping)
    }
}

fn respond(
    out: &mut TcpStream,
    request: &Request,
    shared: &Responses,
    stopping: &AtomicBool,
) -> std::io::Result<bool> {
    let reply = next_reply(request, shared);
    if let Reply::Error(status) = reply {
        let body =
            json!({"error": {"type": "server_error", "message": format!("mock error {status}")}});
        return send_json(out, status, &body);
    }
    http_stub::start_events(out)?;
    let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
    let response_id = format!("resp_mock_{id}");
    event(
        out,
        json!({"type": "response.created", "response": {"id": response_id}}),
    )?;
    let item = match reply {
        Reply::Text(text) => {
            json!({"type": "message", "role": "assistant", "id": format!("msg_mock_{id}"),
                                    "content": [{"type": "output_text", "text": text}]})
        }
        Reply::Shell(cmd) => json!({"type": "function_call", "call_id": format!("call_mock_{id}"),
                                    "name": "exec_command",
                                    "arguments": json!({"cmd": cmd}).to_string()}),
        Reply::Hang => {
            hang(stopping);
            return Ok(false);
        }
        Reply::Error(_) | Reply::FromPrompt(_) | Reply::HangOnce(_) => {
            unreachable!("handled before")
        }
    };
    event(
        out,
        json!({"type": "response.output_item.done", "item": item}),
    )?;
    event(
        out,
        json!({"type": "response.completed", "response": {"id": response_id, "usage": {
            "input_tokens": 100, "input_tokens_details": {"cached_tokens": 40},
            "output_tokens": 10, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 110}}}),
    )?;
    Ok(false)
}

/// A server-sent event named by its `type`.
fn event(out: &mut TcpStream, data: Value) -> std::io::Result<()> {
    let kind = data["type"].as_str().unwrap_or_default().to_string();
    sse(out, &kind, data)
}

fn next_reply(request: &Request, shared: &Responses) -> Reply {
    let prompt = request.prompt().unwrap_or_default();
    let rules = shared.rules.lock().unwrap();
    let Some((_, replies)) = rules.iter().find(|(m, _)| prompt.contains(m.as_str())) else {
        return Reply::text("ok");
    };
    let reply = replies[request.calls_since_prompt().min(replies.len() - 1)].clone();
    match reply {
        Reply::FromPrompt(make) => make(&prompt),
        Reply::HangOnce(text) => {
            let mut hung = shared.hung_once.lock().unwrap();
            if hung.contains(&text) {
                Reply::Text(text)
            } else {
                hung.push(text);
                Reply::Hang
            }
        }
        reply => reply,
    }
}

/// The user texts of an input item that are not Codex's own context blocks.
fn real_texts(item: &Value) -> Vec<String> {
    item.get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|c| c.get("type").and_then(Value::as_str) == Some("input_text"))
        .filter_map(|c| c.get("text").and_then(Value::as_str))
        .filter(|t| !t.starts_with('<') && !t.starts_with("# AGENTS.md"))
        .map(str::to_string)
        .collect()
}
