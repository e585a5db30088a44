//! What the page shows that the store does not keep in that shape: the workflow's DAG, the
//! gates with their questions in Markdown, an agent's transcript with tool calls paired with
//! their results.

use std::time::{Duration, SystemTime};

use pulldown_cmark::{CowStr, Event as Md, Options, Parser, Tag};
use serde::Serialize;
use serde_json::Value;

use crate::agent::events::{self, AgentEvent, Assistant};
use crate::engine::approval;
use crate::source::SourceFile;
use crate::store::{time, Manifest, NodeState, RunDir, RunState};
use crate::workflow::{self, ForEach, LoopBody, NodeKind, Workflow};

/// One node of the DAG.
#[derive(Debug, Serialize)]
pub(crate) struct GraphNode {
    /// The node id.
    pub id: String,
    /// `bash`, `prompt`, `command`, `approval` or `loop`.
    pub kind: &'static str,
    /// For a loop, the kind of its body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<&'static str>,
    /// The ids it depends on.
    pub depends_on: Vec<String>,
    /// What it runs, as written in the workflow (a template; a command's name).
    pub source: String,
    /// For a loop, its `max_iterations`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_iterations: Option<u32>,
    /// For a fan-out (`for_each`), where its items come from: `a list of 3`, the template, or
    /// the glob patterns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub for_each: Option<String>,
    /// For a fan-out once expanded, its instances in item order (see [`with_instances`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instances: Option<Vec<InstanceView>>,
    /// For an instance `ID[KEY]` (the node view only): its fan-out `ID`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_of: Option<String>,
}

/// One instance of a fan-out as the page lists it.
#[derive(Debug, Serialize)]
pub(crate) struct InstanceView {
    /// Its id, `ID[KEY]`.
    pub id: String,
    /// Its key.
    pub key: String,
    /// Its item as text (a string as is, anything else as JSON), cut to [`ITEM_SHOWN`]
    /// characters.
    pub item: String,
    /// Where it stands.
    pub status: crate::store::NodeStatus,
    /// How long its current (or last) attempt took, or has taken so far.
    pub duration_ms: Option<u64>,
}

/// The most characters of an instance's item the run view carries.
pub(crate) const ITEM_SHOWN: usize = 200;

/// The workflow frozen in a run, if it can be read.
pub(crate) fn frozen_workflow(manifest: &Manifest) -> Option<Workflow> {
    workflow::load_source(SourceFile::new(
        manifest.workflow_path.clone(),
        manifest.workflow_text.clone(),
    ))
    .workflow
}

/// The DAG of a workflow, node by node in the workflow's order.
pub(crate) fn graph(wf: &Workflow) -> Vec<GraphNode> {
    wf.nodes
        .iter()
        .map(|n| {
            let (body, source, max_iterations) = match &n.kind {
                NodeKind::Bash(t) | NodeKind::Prompt(t) => (None, t.value.clone(), None),
                NodeKind::Command(c) => (None, c.value.clone(), None),
                NodeKind::Approval(a) => (None, a.message.value.clone(), None),
                NodeKind::Workflow(w) => (None, w.value.clone(), None),
                NodeKind::Loop(l) => {
                    let (kind, text) = match &l.body {
                        LoopBody::Bash(t) => ("bash", t.value.clone()),
                        LoopBody::Prompt(t) => ("prompt", t.value.clone()),
                        LoopBody::Command(c) => ("command", c.value.clone()),
                    };
                    (Some(kind), text, Some(l.max_iterations.value))
                }
            };
            GraphNode {
                id: n.id.value.clone(),
                kind: n.kind.name(),
                body,
                depends_on: n.depends_on.iter().map(|d| d.value.clone()).collect(),
                source,
                max_iterations,
                for_each: n.for_each.as_ref().map(for_each_source),
                instances: None,
                instance_of: None,
            }
        })
        .collect()
}

/// Where a fan-out's items come from, in a few words.
fn for_each_source(for_each: &ForEach) -> String {
    match for_each {
        ForEach::List(list) => {
            let n = list.value.len();
            format!("a list of {n} item{}", if n == 1 { "" } else { "s" })
        }
        ForEach::Template(t) => t.value.trim().to_string(),
        ForEach::Files(set) => {
            let patterns: Vec<&str> = set.files.iter().map(|p| p.value.as_str()).collect();
            format!("files {}", patterns.join(", "))
        }
        ForEach::Invalid(_) => "an invalid `for_each`".into(),
    }
}

/// The graph with each expanded fan-out's instances, as `state` has them now.
pub(crate) fn with_instances(
    mut graph: Vec<GraphNode>,
    state: &RunState,
    now: SystemTime,
) -> Vec<GraphNode> {
    for g in graph.iter_mut().filter(|g| g.for_each.is_some()) {
        g.instances = instances(state, &g.id, now);
    }
    graph
}

/// The instances of fan-out `id` in item order, once it was expanded.
pub(crate) fn instances(state: &RunState, id: &str, now: SystemTime) -> Option<Vec<InstanceView>> {
    let items = state.node(id)?.fan_out.as_ref()?;
    Some(
        items
            .iter()
            .map(|item| {
                let iid = crate::engine::fanout::instance_id(id, &item.key);
                let n = node_or_pending(state, &iid);
                InstanceView {
                    item: crate::engine::fanout::item_text(&item.value)
                        .chars()
                        .take(ITEM_SHOWN)
                        .collect(),
                    key: item.key.clone(),
                    status: n.status,
                    duration_ms: match n.status {
                        crate::store::NodeStatus::Pending | crate::store::NodeStatus::Skipped => {
                            None
                        }
                        _ => n.elapsed(now).map(|d| d.as_millis() as u64),
                    },
                    id: iid,
                }
            })
            .collect(),
    )
}

/// The graph node of `id` in a run: a node of its workflow, or an instance `ID[KEY]` of one
/// of its fan-outs that the run expanded (its fan-out's node, under its own id).
pub(crate) fn find(graph: Vec<GraphNode>, state: &RunState, id: &str) -> Option<GraphNode> {
    let (fan_out, key) = match crate::engine::fanout::split_instance_id(id) {
        Some(split) if crate::engine::fanout::key_problem(split.1).is_none() => split,
        Some(_) => return None,
        None => return graph.into_iter().find(|g| g.id == id),
    };
    let expanded = state
        .node(fan_out)?
        .fan_out
        .as_ref()?
        .iter()
        .any(|item| item.key == key);
    if !expanded {
        return None;
    }
    let mut g = graph
        .into_iter()
        .find(|g| g.id == fan_out && g.for_each.is_some())?;
    g.instance_of = Some(g.id.clone());
    g.id = id.to_string();
    g.for_each = None;
    Some(g)
}

/// A gate as the page shows it.
#[derive(Debug, Serialize)]
pub(crate) struct Gate {
    /// The node id.
    pub node: String,
    /// The question, as rendered when it was asked.
    pub message: String,
    /// The question as HTML (Markdown, raw HTML escaped).
    pub message_html: String,
    /// When it was asked.
    pub requested_at: Option<String>,
    /// When it times out, if it has a timeout.
    pub deadline: Option<String>,
    /// Still waiting for an answer.
    pub waiting: bool,
    /// The answer: approved, by, comment.
    pub answer: Option<Value>,
}

/// The gates of a run that have asked their question.
pub(crate) fn gates(wf: Option<&Workflow>, state: &RunState, run: &RunDir) -> Vec<Gate> {
    state
        .nodes
        .iter()
        .filter_map(|n| {
            let asked = n.approval.as_ref()?;
            // A gate instance `gate[KEY]` has its fan-out's settings.
            let id =
                crate::engine::fanout::split_instance_id(&n.id).map_or(n.id.as_str(), |(f, _)| f);
            let node = wf.and_then(|w| w.nodes.iter().find(|x| x.id.value == id));
            let deadline = node.and_then(|node| approval::deadline(node, n));
            let answer = asked
                .answer
                .as_ref()
                .map(|a| serde_json::to_value(a).unwrap_or_default());
            let waiting = answer.is_none()
                && matches!(
                    n.status,
                    crate::store::NodeStatus::Waiting | crate::store::NodeStatus::Running
                )
                && !approval::answer_path(&run.node_dir(&n.id)).exists();
            Some(Gate {
                node: n.id.clone(),
                message: asked.message.clone(),
                message_html: markdown(&asked.message),
                requested_at: asked.requested_at.map(time::format),
                deadline: deadline.map(time::format),
                waiting,
                answer,
            })
        })
        .collect()
}

/// Markdown as HTML that cannot run anything: raw HTML is shown as text and links to
/// `javascript:`, `data:` or `vbscript:` lose their target.
pub(crate) fn markdown(text: &str) -> String {
    let options =
        Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS;
    let events = Parser::new_ext(text, options).map(|event| match event {
        Md::Html(raw) | Md::InlineHtml(raw) => Md::Text(raw),
        Md::Start(Tag::Link {
            link_type,
            dest_url,
            title,
            id,
        }) => Md::Start(Tag::Link {
            link_type,
            dest_url: safe_url(dest_url),
            title,
            id,
        }),
        Md::Start(Tag::Image {
            link_type,
            dest_url,
            title,
            id,
        }) => Md::Start(Tag::Image {
            link_type,
            dest_url: safe_url(dest_url),
            title,
            id,
        }),
        other => other,
    });
    let mut html = String::new();
    pulldown_cmark::html::push_html(&mut html, events);
    html
}

fn safe_url(url: CowStr<'_>) -> CowStr<'_> {
    let lower: String = url
        .chars()
        .filter(|c| !c.is_whitespace() && !c.is_control())
        .collect::<String>()
        .to_ascii_lowercase();
    if ["javascript:", "data:", "vbscript:", "file:"]
        .iter()
        .any(|s| lower.starts_with(s))
    {
        CowStr::Borrowed("#")
    } else {
        url
    }
}

/// One entry of an agent's transcript.
#[derive(Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Entry {
    /// What the assistant said.
    Text {
        /// The text.
        text: String,
        /// When reins read it from the CLI, if it noted that.
        #[serde(skip_serializing_if = "Option::is_none")]
        at: Option<String>,
    },
    /// A tool call and, once it came back, its result.
    Tool {
        /// The tool.
        name: String,
        /// One line: the tool and its target, as `reins logs` shows it.
        summary: String,
        /// The call's arguments.
        input: Value,
        /// The result's text, when it came back.
        result: Option<String>,
        /// True when the tool failed or was refused.
        is_error: bool,
        /// When reins read the call from the CLI, if it noted that.
        #[serde(skip_serializing_if = "Option::is_none")]
        at: Option<String>,
        /// From the call to its result, as reins saw them arrive; `None` until the result
        /// came back (or when the times were not noted).
        duration_ms: Option<u64>,
    },
    /// Anything else worth a line: the session starting, a retry, a denial, the result.
    Note {
        /// The line, as `reins logs` shows it.
        text: String,
        /// When reins read it from the CLI, if it noted that.
        #[serde(skip_serializing_if = "Option::is_none")]
        at: Option<String>,
    },
}

/// An agent's transcript (`transcript.jsonl`, read from its start) as entries, tool results
/// joined to their calls. `times` is its sidecar of arrival times
/// ([`crate::agent::session::TIMES_FILE`]), when there is one: entries get the time reins
/// read them, tool calls the time from the call to its result.
pub(crate) fn transcript(text: &str, times: Option<&str>) -> Vec<Entry> {
    let times = times
        .map(crate::agent::session::read_times)
        .unwrap_or_default();
    let mut out: Vec<Entry> = Vec::new();
    // A call's index in `out` and when it arrived.
    let mut calls: std::collections::HashMap<String, (usize, Option<u64>)> = Default::default();
    let mut offset = 0u64;
    for raw in text.split_inclusive('\n') {
        let arrived = times.get(&offset).copied();
        offset += raw.len() as u64;
        let line = raw.trim_end_matches(['\n', '\r']);
        let Some(event) = events::parse_line(line) else {
            continue;
        };
        let at = arrived.map(|ms| time::format(SystemTime::UNIX_EPOCH + Duration::from_millis(ms)));
        match &event {
            AgentEvent::Assistant(message) => {
                for t in message
                    .texts
                    .iter()
                    .map(|t| t.trim())
                    .filter(|t| !t.is_empty())
                {
                    out.push(Entry::Text {
                        text: t.to_string(),
                        at: at.clone(),
                    });
                }
                for tool in &message.tool_uses {
                    let one = AgentEvent::Assistant(Assistant {
                        texts: Vec::new(),
                        tool_uses: vec![tool.clone()],
                        error: None,
                        api_error_status: None,
                    });
                    calls.insert(tool.id.clone(), (out.len(), arrived));
                    out.push(Entry::Tool {
                        name: tool.name.clone(),
                        summary: crate::agent::render_readable(&one).unwrap_or_default(),
                        input: tool.input.clone(),
                        result: None,
                        is_error: false,
                        at: at.clone(),
                        duration_ms: None,
                    });
                }
                if let Some(e) = &message.error {
                    out.push(Entry::Note {
                        text: format!("✗ API error: {e}"),
                        at: at.clone(),
                    });
                }
            }
            AgentEvent::ToolResults(results) => {
                for r in results {
                    let call = calls.get(&r.tool_use_id).copied();
                    match call.and_then(|(i, called)| Some((out.get_mut(i)?, called))) {
                        Some((
                            Entry::Tool {
                                result,
                                is_error,
                                duration_ms,
                                ..
                            },
                            called,
                        )) => {
                            *result = Some(r.content.clone());
                            *is_error = r.is_error;
                            *duration_ms = called
                                .zip(arrived)
                                .map(|(called, back)| back.saturating_sub(called));
                        }
                        _ => out.push(Entry::Note {
                            text: format!("tool result: {}", r.content),
                            at: at.clone(),
                        }),
                    }
                }
            }
            other => {
                if let Some(text) = crate::agent::render_readable(other) {
                    out.push(Entry::Note { text, at });
                }
            }
        }
    }
    out
}

/// The node's state, for a node the state does not know yet (never started).
pub(crate) fn node_or_pending(state: &RunState, id: &str) -> NodeState {
    state.node(id).cloned().unwrap_or_else(|| NodeState {
        id: id.to_string(),
        ..NodeState::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_runs_nothing() {
        let html = markdown("**Ship** it? <script>alert(1)</script> [x](javascript:alert(1))");
        assert!(html.contains("<strong>Ship</strong>"), "{html}");
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(!html.contains("javascript:"), "{html}");
    }

    #[test]
    fn tool_results_join_their_calls() {
        let text = concat!(
            r#"{"type":"assistant","message":{"content":[{"type":"text","text":"Writing"},{"type":"tool_use","id":"t1","name":"Write","input":{"file_path":"a.md","content":"x"}}]}}"#,
            "\n",
            r#"{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"t1","content":"ok"}]}}"#,
            "\n"
        );
        let entries = transcript(text, None);
        assert_eq!(entries.len(), 2, "{entries:?}");
        match &entries[1] {
            Entry::Tool {
                summary, result, ..
            } => {
                assert_eq!(summary, "→ Write a.md");
                assert_eq!(result.as_deref(), Some("ok"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn tool_calls_last_from_call_to_result_as_reins_saw_them() {
        let call = r#"{"type":"assistant","message":{"content":[{"type":"tool_use","id":"t1","name":"Bash","input":{"command":"ls"}}]}}"#;
        let back = r#"{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"t1","content":"a"}]}}"#;
        let text = format!("{call}\n{back}\n");
        let times = format!("0 1000\n{} 2250\n", call.len() + 1);
        let entries = transcript(&text, Some(&times));
        match &entries[..] {
            [Entry::Tool {
                duration_ms, at, ..
            }] => {
                assert_eq!(*duration_ms, Some(1250));
                assert_eq!(at.as_deref(), Some("1970-01-01T00:00:01.000Z"));
            }
            other => panic!("{other:?}"),
        }
        // Without the sidecar (an older run), no times and no durations.
        match &transcript(&text, None)[..] {
            [Entry::Tool {
                duration_ms: None,
                at: None,
                ..
            }] => {}
            other => panic!("{other:?}"),
        }
    }
}
