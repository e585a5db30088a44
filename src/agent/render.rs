//! One readable line per event, for `reins logs -f` and plain progress output.

use serde_json::Value;

use super::events::{AgentEvent, ToolUse};

/// A short human line for an event, or `None` for events not worth showing.
pub fn render_readable(event: &AgentEvent) -> Option<String> {
    match event {
        AgentEvent::Init(init) => Some(format!(
            "● session {} · {} · permission mode {}",
            init.session_id.as_deref().unwrap_or("?"),
            init.model.as_deref().unwrap_or("default model"),
            init.permission_mode.as_deref().unwrap_or("default"),
        )),
        AgentEvent::Assistant(message) => {
            let mut lines: Vec<String> = message
                .texts
                .iter()
                .map(|t| t.trim())
                .filter(|t| !t.is_empty())
                .map(str::to_string)
                .collect();
            lines.extend(message.tool_uses.iter().map(tool_line));
            (!lines.is_empty()).then(|| lines.join("\n"))
        }
        AgentEvent::ToolResults(results) => {
            let errors: Vec<String> = results
                .iter()
                .filter(|r| r.is_error)
                .map(|r| format!("✗ {}", first_line(&r.content)))
                .collect();
            (!errors.is_empty()).then(|| errors.join("\n"))
        }
        AgentEvent::ApiRetry(retry) => Some(format!(
            "↻ API error{}{}; retry {} of {}",
            retry
                .error_status
                .map(|s| format!(" {s}"))
                .unwrap_or_default(),
            retry
                .error
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default(),
            retry.attempt.unwrap_or(0),
            retry.max_retries.unwrap_or(0),
        )),
        AgentEvent::PermissionDenied(denied) => Some(format!(
            "✗ denied {}{}",
            denied.tool_name,
            denied
                .message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        )),
        AgentEvent::Result(result) => {
            let ok = result.subtype == "success" && !result.is_error;
            let mut facts = vec![format!("{} turns", result.num_turns.unwrap_or(0))];
            if let Some(cost) = result.total_cost_usd {
                facts.push(format!("${cost:.4}"));
            }
            facts.push(format!(
                "{} in / {} out tokens",
                result.usage.input_tokens
                    + result.usage.cache_creation_input_tokens
                    + result.usage.cache_read_input_tokens,
                result.usage.output_tokens
            ));
            if let Some(ms) = result.duration_ms {
                facts.push(format!("{:.1}s", ms as f64 / 1000.0));
            }
            let head = if ok {
                "✓ done".to_string()
            } else {
                let why = result
                    .errors
                    .first()
                    .or(result.result.as_ref())
                    .map(|m| first_line(m))
                    .unwrap_or_else(|| result.subtype.clone());
                format!("✗ failed: {why}")
            };
            Some(format!("{head} · {}", facts.join(" · ")))
        }
        AgentEvent::Text(text) => Some(text.clone()),
        AgentEvent::Partial { .. } | AgentEvent::Other { .. } => None,
    }
}

fn tool_line(tool: &ToolUse) -> String {
    let input = &tool.input;
    let get = |key: &str| input.get(key).and_then(Value::as_str);
    let detail = match tool.name.as_str() {
        "Bash" | "shell" => get("command").map(|c| format!(" `{}`", first_line(c))),
        "Grep" | "Glob" => get("pattern").map(|p| format!(" {p}")),
        "WebFetch" => get("url").map(|u| format!(" {u}")),
        _ => get("file_path")
            .or_else(|| get("notebook_path"))
            .or_else(|| get("path"))
            .or_else(|| get("description"))
            .map(|p| format!(" {p}")),
    };
    format!("→ {}{}", tool.name, detail.unwrap_or_default())
}

fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or("").trim();
    if line.chars().count() > 200 {
        format!("{}…", line.chars().take(200).collect::<String>())
    } else {
        line.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::events::parse_line;

    fn render(line: &str) -> Option<String> {
        render_readable(&parse_line(line).unwrap())
    }

    #[test]
    fn tool_calls_show_their_target() {
        let line = r#"{"type":"assistant","message":{"content":[{"type":"tool_use","id":"t1","name":"Write","input":{"file_path":"src/x.rs","content":"x"}}]}}"#;
        assert_eq!(render(line).as_deref(), Some("→ Write src/x.rs"));
        let line = r#"{"type":"assistant","message":{"content":[{"type":"tool_use","id":"t1","name":"Bash","input":{"command":"cargo test\necho"}}]}}"#;
        assert_eq!(render(line).as_deref(), Some("→ Bash `cargo test`"));
    }

    #[test]
    fn text_errors_and_results_read_well() {
        let line =
            r#"{"type":"assistant","message":{"content":[{"type":"text","text":" Hello \n"}]}}"#;
        assert_eq!(render(line).as_deref(), Some("Hello"));
        let line = r#"{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"t1","is_error":true,"content":"denied\nmore"}]}}"#;
        assert_eq!(render(line).as_deref(), Some("✗ denied"));
        let line = r#"{"type":"result","subtype":"success","is_error":false,"num_turns":2,"total_cost_usd":0.0123,"duration_ms":1500,"usage":{"input_tokens":10,"output_tokens":5}}"#;
        assert_eq!(
            render(line).as_deref(),
            Some("✓ done · 2 turns · $0.0123 · 10 in / 5 out tokens · 1.5s")
        );
        assert_eq!(
            render(r#"{"type":"stream_event","event":{"delta":{"text":"x"}}}"#),
            None
        );
    }
}
