//! What `reins run` and `reins resume` show while a run executes.
//!
//! * On a terminal: a live view on stderr, redrawn ten times a second: settled nodes scroll
//!   above it with a coloured mark (✓ succeeded, ✗ failed, - skipped, ? waits), then one line
//!   per running node with its elapsed time and, for an agent, its current tool
//!   (`Bash: cargo test`), then the counts (done, running, waiting, failed), the elapsed time
//!   and what agents cost so far. A fan-out of more than [`SHOWN_INSTANCES`] instances is one
//!   line of counts (`review ×200  150 ✓ · 6 running · 40 pending · 4 ✗`) over its running
//!   instances, and its instances that succeed scroll no line (those that fail do).
//!   `NO_COLOR` turns the colours off.
//! * Otherwise: one plain line per event on stdout, each with a UTC timestamp.
//! * With `--json`: the event stream itself, one JSON object per line on stdout, exactly as
//!   `events.jsonl` holds it.

use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::engine::Observer;
use crate::store::{Event, IterationStatus, NodeStatus, Record, RunState, RunStatus};
use crate::workflow::duration;

/// Whether stdout gets colours (see [`super::use_color`]).
pub(super) fn colors_on_stdout() -> bool {
    use std::io::IsTerminal;
    super::use_color(std::io::stdout().is_terminal())
}

/// Most running nodes listed in the live view.
const MAX_LIVE_LINES: usize = 12;

/// Which view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum View {
    /// Live view on a terminal.
    Live,
    /// Plain timestamped lines.
    Plain,
    /// The event stream as JSON lines.
    Json,
}

impl View {
    /// The view for this process: JSON if asked, live if stderr is a terminal, else plain.
    pub(super) fn detect(json: bool) -> View {
        use std::io::IsTerminal;
        if json {
            View::Json
        } else if std::io::stderr().is_terminal()
            && std::env::var("TERM").map(|t| t != "dumb").unwrap_or(true)
        {
            View::Live
        } else {
            View::Plain
        }
    }
}

/// Builds the observer of a view of the run in `run_dir`.
pub(super) fn observer(view: View, run_dir: &Path) -> (Box<dyn Observer>, Option<ProgressBar>) {
    match view {
        View::Json => (Box::new(JsonLines), None),
        View::Plain => (Box::new(PlainLines), None),
        View::Live => {
            let live = Live::new(run_dir.to_path_buf());
            let bar = live.bar.clone();
            (Box::new(live), Some(bar))
        }
    }
}

struct JsonLines;

impl Observer for JsonLines {
    fn on_event(&mut self, record: &Record, _: &RunState) {
        if let Ok(line) = serde_json::to_string(record) {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }
}

struct PlainLines;

impl Observer for PlainLines {
    fn on_event(&mut self, record: &Record, state: &RunState) {
        if let Some(text) = describe(record, state) {
            let ts = crate::store::time::format(record.ts);
            let clock = ts.get(11..23).unwrap_or(&ts);
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{clock} {text}");
            let _ = out.flush();
        }
    }
}

/// One line about an event, or nothing for events not worth a line.
pub(super) fn describe(record: &Record, state: &RunState) -> Option<String> {
    let elapsed = |node: &str| {
        state
            .node(node)
            .and_then(|n| n.elapsed(record.ts))
            .map(duration::format)
            .unwrap_or_default()
    };
    Some(match &record.event {
        Event::RunStarted {
            run_id,
            workflow,
            nodes,
            ..
        } => format!(
            "run {run_id} of `{workflow}` started ({} node{})",
            nodes.len(),
            if nodes.len() == 1 { "" } else { "s" }
        ),
        Event::RunResumed { from, .. } => {
            let from = from
                .as_ref()
                .map(|f| format!(" from `{f}`"))
                .unwrap_or_default();
            // What this execution runs: every node not settled yet (those set back to pending
            // and those that never started, a fan-out taken up again), and gates that wait for
            // (or got) an answer.
            let to_run: Vec<&str> = state
                .nodes
                .iter()
                .filter(|n| {
                    matches!(
                        n.status,
                        NodeStatus::Pending | NodeStatus::Waiting | NodeStatus::Running
                    )
                })
                .map(|n| n.id.as_str())
                .collect();
            let mut names: Vec<String> = to_run.iter().take(5).map(|n| format!("`{n}`")).collect();
            if to_run.len() > 5 {
                names.push(format!("{} more", to_run.len() - 5));
            }
            format!(
                "run {} resumed{from}: {} node{} to run{}",
                state.run_id,
                to_run.len(),
                if to_run.len() == 1 { "" } else { "s" },
                if names.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", names.join(", "))
                }
            )
        }
        Event::ChildRun { node, run_id } => format!("{node} runs child run {run_id}"),
        Event::NodeStarted { node, attempt } => {
            if *attempt > 1 {
                format!("{node} started (attempt {attempt})")
            } else {
                format!("{node} started")
            }
        }
        Event::NodeSucceeded { node, usage, .. } => match usage {
            Some(u) if !u.is_zero() => {
                format!("{node} succeeded in {} ({})", elapsed(node), usage_text(u))
            }
            _ => format!("{node} succeeded in {}", elapsed(node)),
        },
        Event::NodeFailed {
            node,
            error,
            will_retry,
            log_tail,
            log,
            ..
        } => {
            if *will_retry {
                format!("{node} failed: {error}; retrying")
            } else {
                // A fan-out whose items could not be listed never started: no time to give.
                let mut text = match elapsed(node) {
                    took if took.is_empty() => format!("{node} failed: {error}"),
                    took => format!("{node} failed in {took}: {error}"),
                };
                text.push_str(&failure_lines(&state.run_id, log_tail, log.as_deref()));
                text
            }
        }
        Event::AgentRetry {
            node,
            attempt,
            max_retries,
            reason,
        } => match max_retries {
            Some(max) => format!("{node} retrying ({attempt} of {max}): {reason}"),
            None => format!("{node} retrying ({attempt}): {reason}"),
        },
        Event::AgentSlotWait { node, max_agents } => format!(
            "{node} waiting for an agent slot ({max_agents} agent session{} already running on this machine; --max-agents, REINS_MAX_AGENTS)",
            if *max_agents == 1 { "" } else { "s" }
        ),
        Event::AgentSlotTaken { node, waited_ms } => format!(
            "{node} got an agent slot after {}",
            duration::format(Duration::from_millis(*waited_ms))
        ),
        Event::OutputTruncated {
            node,
            kept_bytes,
            total_bytes,
        } => format!(
            "{node}: {} (all of it in nodes/{node}/output.txt)",
            truncation_text(*kept_bytes, *total_bytes)
        ),
        Event::NodeSkipped { node, reason } => format!("{node} skipped: {reason}"),
        Event::NodeCancelled { node } => format!("{node} cancelled"),
        Event::FanOutExpanded { node, items } => {
            let keys: Vec<String> = items
                .iter()
                .take(SHOWN_INSTANCES)
                .map(|i| crate::engine::fanout::instance_id(node, &i.key))
                .collect();
            let more = if items.len() > SHOWN_INSTANCES {
                format!(", {} more", items.len() - SHOWN_INSTANCES)
            } else {
                String::new()
            };
            match items.len() {
                0 => format!("{node} fans out over no items"),
                n => format!(
                    "{node} fans out over {n} item{}: {}{more}",
                    if n == 1 { "" } else { "s" },
                    keys.join(", ")
                ),
            }
        }
        Event::AgentSession {
            node,
            session,
            session_id,
            ..
        } => format!("{node} runs in agent session {session_id} ({session})"),
        Event::ApprovalRequested { node, message, .. } => format!(
            "{node} waits for approval: {message} (reins approve {} {node})",
            state.run_id
        ),
        Event::ApprovalAnswered {
            node, approved, by, ..
        } => format!(
            "{node} {} by {by}",
            if *approved { "approved" } else { "rejected" }
        ),
        Event::LoopIteration {
            node,
            iteration,
            status,
            ..
        } => {
            let how = match status {
                IterationStatus::Continue => "not done yet",
                IterationStatus::Done => "done",
                IterationStatus::Failed => "failed",
            };
            format!("{node} iteration {iteration}: {how}")
        }
        Event::RunPaused { waiting } => format!(
            "run paused: waiting for approval of {}",
            waiting
                .iter()
                .map(|w| format!("`{w}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Event::RunFinished { status, error } => match error {
            Some(e) => format!("run {status}: {e}"),
            None => format!("run {status}"),
        },
        Event::Unknown => return None,
    })
}

/// The live view: settled nodes scroll above one redrawn block on stderr: a line per running
/// node (its elapsed time and, for an agent, the tool it is using), then the counts, the
/// elapsed time and the cost so far.
struct Live {
    bar: ProgressBar,
    shared: Arc<Mutex<LiveState>>,
    color: bool,
}

/// A node the live view shows as running.
struct RunningNode {
    id: String,
    since: Instant,
    attempt: u32,
    /// The agent's current tool call, like `Bash: cargo test`, read from its transcript.
    tool: Option<String>,
    /// The transcript being read and how far.
    transcript: Option<(PathBuf, u64)>,
    /// When the transcript was last looked for.
    looked: Option<Instant>,
    /// Its agent waits for a machine-wide agent slot (`agent_slot_wait`, until
    /// `agent_slot_taken`).
    waiting_for_slot: bool,
}

/// A fan-out of more than [`SHOWN_INSTANCES`] instances, which the live view shows as one
/// line of counts (its running instances below it) rather than an instance a line.
#[derive(Default)]
struct ManyFanOut {
    id: String,
    items: usize,
    /// Each instance's last status, by id.
    status: std::collections::HashMap<String, NodeStatus>,
    /// Instances by status.
    counts: std::collections::BTreeMap<&'static str, usize>,
}

impl ManyFanOut {
    fn new(state: &RunState, id: &str) -> Option<Self> {
        let items = state.node(id)?.fan_out.as_ref()?;
        if items.len() <= SHOWN_INSTANCES {
            return None;
        }
        let mut many = ManyFanOut {
            id: id.to_string(),
            items: items.len(),
            ..Default::default()
        };
        for item in items {
            let iid = crate::engine::fanout::instance_id(id, &item.key);
            let status = state.node(&iid).map(|n| n.status).unwrap_or_default();
            *many.counts.entry(status.as_str()).or_default() += 1;
            many.status.insert(iid, status);
        }
        Some(many)
    }

    /// Takes in instance `iid`'s status now.
    fn update(&mut self, iid: &str, now: NodeStatus) {
        if let Some(before) = self.status.get_mut(iid) {
            if *before != now {
                if let Some(n) = self.counts.get_mut(before.as_str()) {
                    *n -= 1;
                }
                *self.counts.entry(now.as_str()).or_default() += 1;
                *before = now;
            }
        }
    }

    /// `review ×200  150 ✓ · 6 running · 40 pending · 4 ✗`.
    fn line(&self, color: bool) -> String {
        let mut parts = Vec::new();
        for status in [
            "success",
            "running",
            "waiting",
            "pending",
            "skipped",
            "cancelled",
            "failed",
        ] {
            let n = self.counts.get(status).copied().unwrap_or(0);
            if n == 0 {
                continue;
            }
            parts.push(match status {
                "success" => paint(color, GREEN, &format!("{n} ✓")),
                "failed" => paint(color, RED, &format!("{n} ✗")),
                "waiting" => paint(color, YELLOW, &format!("{n} waiting")),
                other => format!("{n} {other}"),
            });
        }
        format!(
            "  {} {}",
            pad(&format!("{} ×{}", self.id, self.items), 24),
            parts.join(" · ")
        )
    }
}

#[derive(Default)]
struct LiveState {
    running: Vec<RunningNode>,
    /// Fan-outs of many instances still running, in the order they expanded.
    many: Vec<ManyFanOut>,
    counts: Counts,
    cost_usd: f64,
    started: Option<Instant>,
    run_dir: PathBuf,
}

/// How many nodes are where, for the live view's status line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Counts {
    /// Nodes in the run.
    pub total: usize,
    /// Succeeded or skipped.
    pub done: usize,
    /// Running (or waiting for a retry).
    pub running: usize,
    /// Gates waiting for an answer.
    pub waiting: usize,
    /// Failed or cancelled.
    pub failed: usize,
}

impl Counts {
    /// The counts of a run's state.
    pub(super) fn of(state: &RunState) -> Counts {
        let mut c = Counts {
            total: state.nodes.len(),
            ..Counts::default()
        };
        for n in &state.nodes {
            match n.status {
                NodeStatus::Success | NodeStatus::Skipped => c.done += 1,
                NodeStatus::Running => c.running += 1,
                NodeStatus::Waiting => c.waiting += 1,
                NodeStatus::Failed | NodeStatus::Cancelled => c.failed += 1,
                NodeStatus::Pending => {}
            }
        }
        c
    }
}

/// The live view's status line: `3/9 done · 2 running · 1 waiting · 0 failed · 12.3s · $0.0123`.
pub(super) fn status_line(c: Counts, elapsed: Duration, cost_usd: f64, color: bool) -> String {
    let failed = format!("{} failed", c.failed);
    let failed = if c.failed > 0 {
        paint(color, RED, &failed)
    } else {
        failed
    };
    let mut line = format!(
        "{}/{} done · {} running · {} waiting · {failed} · {}",
        c.done,
        c.total,
        c.running,
        c.waiting,
        clock(elapsed)
    );
    if cost_usd > 0.0 {
        let _ = write!(line, " · ${cost_usd:.4}");
    }
    line
}

const GREEN: &str = "32";
const RED: &str = "31";
const YELLOW: &str = "33";
const DIM: &str = "2";

fn paint(color: bool, code: &str, text: &str) -> String {
    if color {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

/// Colours on stderr, a terminal (checked by the caller).
fn colors_on_stderr() -> bool {
    super::use_color(true)
}

impl Live {
    fn new(run_dir: PathBuf) -> Self {
        let color = colors_on_stderr();
        let shared = Arc::new(Mutex::new(LiveState {
            run_dir,
            ..LiveState::default()
        }));
        let lines = shared.clone();
        let summary = shared.clone();
        let style = ProgressStyle::with_template("{nodes}{spinner:.cyan} {summary}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner())
            .with_key(
                "nodes",
                move |_: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let mut s = lines.lock().unwrap_or_else(|e| e.into_inner());
                    let s = &mut *s;
                    let run_dir = s.run_dir.clone();
                    let width = terminal_width();
                    // Nodes (and instances of small fan-outs) a line each; then each fan-out
                    // of many as a line of counts over its running instances.
                    let fan_out_of = |id: &str| {
                        crate::engine::fanout::split_instance_id(id)
                            .map(|(f, _)| f)
                            .filter(|f| s.many.iter().any(|m| m.id == *f))
                            .map(str::to_string)
                    };
                    let groups: Vec<Option<String>> =
                        s.running.iter().map(|n| fan_out_of(&n.id)).collect();
                    let mut budget = MAX_LIVE_LINES;
                    let mut hidden = 0;
                    let mut out: Vec<String> = Vec::new();
                    let mut draw = |node: &mut RunningNode, indent: &str, out: &mut Vec<String>| {
                        if budget == 0 {
                            hidden += 1;
                            return;
                        }
                        budget -= 1;
                        node.refresh_tool(&run_dir);
                        let mut line = format!(
                            "  {indent}{} {:>6}",
                            pad(&node.id, 24 - indent.len()),
                            clock(node.since.elapsed())
                        );
                        if node.attempt > 1 {
                            let _ = write!(line, " (attempt {})", node.attempt);
                        }
                        if node.waiting_for_slot {
                            let _ = write!(line, "  waiting for an agent slot");
                        } else if let Some(tool) = &node.tool {
                            let _ = write!(line, "  {tool}");
                        }
                        out.push(paint(color, DIM, &clip(&line, width)));
                    };
                    for (node, group) in s.running.iter_mut().zip(&groups) {
                        if group.is_none() {
                            draw(node, "", &mut out);
                        }
                    }
                    for many in &s.many {
                        out.push(many.line(color));
                        for (node, group) in s.running.iter_mut().zip(&groups) {
                            if group.as_deref() == Some(many.id.as_str()) {
                                draw(node, "  ", &mut out);
                            }
                        }
                    }
                    for line in out {
                        let _ = writeln!(w, "{line}");
                    }
                    if hidden > 0 {
                        let _ = writeln!(w, "  ... and {hidden} more");
                    }
                },
            )
            .with_key(
                "summary",
                move |_: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let s = summary.lock().unwrap_or_else(|e| e.into_inner());
                    let elapsed = s.started.map(|t| t.elapsed()).unwrap_or_default();
                    let _ = write!(w, "{}", status_line(s.counts, elapsed, s.cost_usd, color));
                },
            );
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(10));
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(100));
        Self { bar, shared, color }
    }
}

impl RunningNode {
    fn new(id: &str, attempt: u32) -> Self {
        Self {
            id: id.to_string(),
            since: Instant::now(),
            attempt,
            tool: None,
            transcript: None,
            looked: None,
            waiting_for_slot: false,
        }
    }

    /// Reads the complete transcript lines written since the last look; the last tool call
    /// seen becomes [`RunningNode::tool`]. The newest loop iteration's transcript is followed.
    fn refresh_tool(&mut self, run_dir: &Path) {
        let due = self
            .looked
            .is_none_or(|t| t.elapsed() >= Duration::from_millis(250));
        if !due {
            return;
        }
        self.looked = Some(Instant::now());
        let Some(path) = newest_transcript(&run_dir.join("nodes").join(&self.id)) else {
            return;
        };
        let offset = match &self.transcript {
            Some((p, o)) if *p == path => *o,
            _ => 0,
        };
        let Ok(mut file) = std::fs::File::open(&path) else {
            return;
        };
        use std::io::{BufRead, Seek};
        if file.seek(std::io::SeekFrom::Start(offset)).is_err() {
            return;
        }
        let mut reader = std::io::BufReader::new(file);
        let mut read = offset;
        let mut line = String::new();
        // At most 4 MiB a look, so a chatty agent never stalls the redraw.
        while read - offset < 4 << 20 {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(n) if n > 0 && line.ends_with('\n') => read += n as u64,
                _ => break,
            }
            match crate::agent::events::parse_line(line.trim_end()) {
                Some(crate::agent::AgentEvent::Assistant(m)) => {
                    if let Some(tool) = m.tool_uses.last() {
                        self.tool = Some(tool_label(tool));
                    } else if m.texts.iter().any(|t| !t.trim().is_empty()) {
                        self.tool = None;
                    }
                }
                Some(crate::agent::AgentEvent::ToolResults(_)) => {}
                Some(_) | None => {}
            }
        }
        self.transcript = Some((path, read));
    }
}

/// The transcript an agent node writes now: its own, or its newest loop iteration's.
fn newest_transcript(dir: &Path) -> Option<PathBuf> {
    let newest = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let n: u32 = e
                .file_name()
                .to_str()?
                .strip_prefix("iteration-")?
                .parse()
                .ok()?;
            Some((n, e.path()))
        })
        .max()
        .map(|(_, p)| p.join("transcript.jsonl"));
    newest
        .filter(|p| p.is_file())
        .or_else(|| Some(dir.join("transcript.jsonl")).filter(|p| p.is_file()))
}

/// A tool call in a few words: `Bash: cargo test`, `Edit: src/lib.rs`, `Grep: fn main`.
pub(super) fn tool_label(tool: &crate::agent::events::ToolUse) -> String {
    let get = |key: &str| tool.input.get(key).and_then(serde_json::Value::as_str);
    let detail = match tool.name.as_str() {
        "Bash" => get("command"),
        "Grep" | "Glob" => get("pattern"),
        "WebFetch" => get("url"),
        _ => get("file_path")
            .or_else(|| get("notebook_path"))
            .or_else(|| get("path"))
            .or_else(|| get("description")),
    };
    match detail.and_then(|d| d.lines().next()).map(str::trim) {
        Some(d) if !d.is_empty() => format!("{}: {d}", tool.name),
        _ => tool.name.clone(),
    }
}

impl Observer for Live {
    fn on_event(&mut self, record: &Record, state: &RunState) {
        {
            let mut s = self.shared.lock().unwrap_or_else(|e| e.into_inner());
            s.counts = Counts::of(state);
            s.cost_usd = state.total_usage().cost_usd;
            s.started.get_or_insert_with(Instant::now);
            if let Some(node) = record.event.node() {
                if let Some((f, _)) = crate::engine::fanout::split_instance_id(node) {
                    let now = state.node(node).map(|n| n.status).unwrap_or_default();
                    if let Some(many) = s.many.iter_mut().find(|m| m.id == f) {
                        many.update(node, now);
                    }
                }
            }
            match &record.event {
                Event::FanOutExpanded { node, .. } => {
                    s.many.retain(|m| &m.id != node);
                    if let Some(many) = ManyFanOut::new(state, node) {
                        s.many.push(many);
                    }
                }
                Event::RunResumed { .. } => {
                    // Fan-outs taken up again run over the items they recorded.
                    s.many = state
                        .nodes
                        .iter()
                        .filter(|n| n.status == NodeStatus::Running)
                        .filter_map(|n| ManyFanOut::new(state, &n.id))
                        .collect();
                }
                Event::NodeStarted { node, attempt } => {
                    s.running.retain(|n| &n.id != node);
                    s.running.push(RunningNode::new(node, *attempt));
                }
                Event::NodeSucceeded { node, .. }
                | Event::NodeSkipped { node, .. }
                | Event::NodeCancelled { node }
                | Event::ApprovalRequested { node, .. } => {
                    s.running.retain(|n| &n.id != node);
                    s.many.retain(|m| &m.id != node);
                }
                Event::NodeFailed {
                    node, will_retry, ..
                } if !will_retry => {
                    s.running.retain(|n| &n.id != node);
                    s.many.retain(|m| &m.id != node);
                }
                Event::AgentSlotWait { node, .. } | Event::AgentSlotTaken { node, .. } => {
                    let waits = matches!(record.event, Event::AgentSlotWait { .. });
                    if let Some(n) = s.running.iter_mut().find(|n| &n.id == node) {
                        n.waiting_for_slot = waits;
                    }
                }
                _ => {}
            }
        }
        // An instance of a fan-out of many that succeeds is counted above, not a line.
        let counted = |node: &str| {
            crate::engine::fanout::split_instance_id(node).is_some_and(|(f, _)| {
                state
                    .node(f)
                    .and_then(|n| n.fan_out.as_ref())
                    .is_some_and(|items| items.len() > SHOWN_INSTANCES)
            })
        };
        let line = match &record.event {
            Event::NodeStarted { .. } => None,
            Event::RunFinished { .. } => None,
            Event::NodeSucceeded { node, .. } if counted(node) => None,
            _ => describe(record, state),
        };
        if let Some(line) = line {
            let c = self.color;
            let mark = match &record.event {
                Event::NodeSucceeded { .. } => paint(c, GREEN, "✓"),
                Event::NodeFailed {
                    will_retry: false, ..
                }
                | Event::NodeCancelled { .. } => paint(c, RED, "✗"),
                Event::NodeFailed { .. } => paint(c, YELLOW, "↻"),
                Event::NodeSkipped { .. } => paint(c, DIM, "-"),
                Event::ApprovalRequested { .. } => paint(c, YELLOW, "?"),
                _ => " ".to_string(),
            };
            self.bar.println(format!("{mark} {line}"));
        }
        if matches!(
            record.event,
            Event::RunFinished { .. } | Event::RunPaused { .. }
        ) {
            self.bar.finish_and_clear();
        }
    }
}

/// Elapsed time for the live view: tenths of a second under a minute.
fn clock(d: Duration) -> String {
    if d < Duration::from_secs(60) {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        duration::format(d)
    }
}

fn pad(s: &str, width: usize) -> String {
    format!("{s:<width$}")
}

fn clip(s: &str, width: usize) -> String {
    s.chars().take(width.max(20)).collect()
}

/// Columns of the terminal on stderr (where the live view draws), less one; 100 without one.
fn terminal_width() -> usize {
    match terminal_size::terminal_size_of(std::io::stderr()) {
        Some((terminal_size::Width(w), _)) if w > 0 => w as usize - 1,
        _ => 100,
    }
}

/// The final summary: one line per node with its status, duration and what to know, then
/// where the logs are.
pub(super) fn summary(state: &RunState, status: RunStatus, run_dir: &std::path::Path) -> String {
    let now = SystemTime::now();
    let mut out = String::new();
    let elapsed = state.elapsed(now).map(duration::format).unwrap_or_default();
    let _ = writeln!(
        out,
        "run {} of `{}`: {status} in {elapsed}",
        state.run_id, state.workflow
    );
    out.push_str(&node_table(state, now));
    let total = state.total_usage();
    if !total.is_zero() {
        let _ = writeln!(out, "agents: {}", usage_text(&total));
    }
    let _ = writeln!(
        out,
        "logs: {}/nodes/<node>/ (reins logs {} NODE)",
        crate::source::display_path(run_dir).display(),
        state.run_id
    );
    if let Some(e) = &state.error {
        let _ = writeln!(out, "error: {e}");
    }
    for hint in next_steps(state, status) {
        let _ = writeln!(out, "{hint}");
    }
    if status == RunStatus::Waiting {
        for gate in &state.waiting {
            if let Some(url) = crate::serve::registry::gate_url(run_dir, &state.run_id, gate) {
                let _ = writeln!(out, "or in the browser: {url}");
            }
        }
    }
    out
}

/// What to do next with a run in `status`: how to continue it, answer its gates, or ask a
/// rejected gate again. Shared by the summary and `reins status`.
pub(super) fn next_steps(state: &RunState, status: RunStatus) -> Vec<String> {
    let id = &state.run_id;
    let mut out = Vec::new();
    let rejected: Vec<&str> = state
        .nodes
        .iter()
        .filter(|n| n.status == NodeStatus::Failed && gate_answer(n) == Some(false))
        .map(|n| n.id.as_str())
        .collect();
    let other_failures = state.nodes.iter().any(|n| {
        matches!(n.status, NodeStatus::Failed | NodeStatus::Cancelled)
            && !rejected.contains(&n.id.as_str())
    });
    match status {
        RunStatus::Failed | RunStatus::Cancelled | RunStatus::Interrupted => {
            for gate in &rejected {
                out.push(format!(
                    "`{gate}` was rejected; `reins resume {id} --from {gate}` asks it again (plain `reins resume` keeps the rejection)"
                ));
            }
            if other_failures || rejected.is_empty() || status != RunStatus::Failed {
                out.push(format!(
                    "continue it with `reins resume {id}` (nodes that succeeded do not run again)"
                ));
            }
        }
        RunStatus::Waiting => {
            let answered: Vec<&str> = state
                .nodes
                .iter()
                .filter(|n| n.status == NodeStatus::Waiting && gate_answer(n).is_some())
                .map(|n| n.id.as_str())
                .collect();
            for gate in state
                .waiting
                .iter()
                .filter(|g| !answered.contains(&g.as_str()))
            {
                let child = state
                    .node(gate)
                    .filter(|n| n.approval.is_none())
                    .and_then(|n| n.child_run.as_deref());
                if let Some(child) = child {
                    out.push(format!(
                        "`{gate}` waits for a gate of its child run {child} (`reins status {child}` shows it); answer with `reins approve {id} {gate}/GATE [-m TEXT] --resume` or `reins reject {id} {gate}/GATE -m WHY --resume`"
                    ));
                    continue;
                }
                out.push(format!(
                    "answer `{gate}` with `reins approve {id} {gate} [-m TEXT] --resume` or `reins reject {id} {gate} -m WHY --resume`"
                ));
            }
            if !answered.is_empty() {
                out.push(format!(
                    "{} answered; continue the run with `reins resume {id}`",
                    answered
                        .iter()
                        .map(|g| format!("`{g}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        _ => {}
    }
    out
}

/// The lines under a failed node: the last lines of its log, then where the whole log is.
pub(super) fn failure_lines(run_id: &str, tail: &[String], log: Option<&str>) -> String {
    let mut out = String::new();
    for line in tail {
        let _ = write!(out, "\n    │ {line}");
    }
    if let Some(log) = log {
        let _ = write!(out, "\n    whole log: .reins/runs/{run_id}/{log}");
    }
    out
}

/// `output truncated: 1 MiB of 2.9 MiB kept`.
pub(super) fn truncation_text(kept: u64, total: u64) -> String {
    crate::store::Truncation {
        kept_bytes: kept,
        total_bytes: total,
    }
    .describe()
}

/// A gate's recorded answer: approved (true) or rejected (false); `None` for no answer.
fn gate_answer(n: &crate::store::NodeState) -> Option<bool> {
    n.approval.as_ref()?.answer.as_ref().map(|a| a.approved)
}

/// A node's state in words: its status, except for a gate answered while no process ran the
/// run, which is `approved (resume to continue)` (or rejected) rather than `waiting`.
pub(super) fn status_label(n: &crate::store::NodeState) -> String {
    match (n.status, gate_answer(n)) {
        (NodeStatus::Waiting, Some(true)) => "approved (resume to continue)".into(),
        (NodeStatus::Waiting, Some(false)) => "rejected (resume to continue)".into(),
        _ => n.status.as_str().to_string(),
    }
}

/// What agents used: cost, turns and tokens, like `$0.0123 · 2 turns · 24 in / 10 out tokens`.
pub(super) fn usage_text(usage: &crate::store::Usage) -> String {
    // A cost the agent did not report (Codex) is never shown as a number.
    let cost = match (usage.unpriced, usage.cost_usd > 0.0) {
        (false, _) => format!("${:.4} · ", usage.cost_usd),
        (true, true) => format!("${:.4} + unpriced · ", usage.cost_usd),
        (true, false) => String::new(),
    };
    format!(
        "{cost}{} turn{} · {} in / {} out tokens",
        usage.turns,
        if usage.turns == 1 { "" } else { "s" },
        usage.input_tokens + usage.cache_read_input_tokens + usage.cache_creation_input_tokens,
        usage.output_tokens
    )
}

/// Instances of a fan-out shown one by one; past this many, they are counted, and only
/// those not succeeded, pending or skipped are listed (this many at most).
pub(super) const SHOWN_INSTANCES: usize = 8;

/// `200 instances: 190 success, 6 running, 4 failed (those not succeeded are listed below)`.
pub(super) fn instance_counts(state: &RunState, fan_out: &crate::store::NodeState) -> String {
    let items = fan_out.fan_out.as_deref().unwrap_or_default();
    let mut counts: Vec<(NodeStatus, usize)> = Vec::new();
    for item in items {
        let id = crate::engine::fanout::instance_id(&fan_out.id, &item.key);
        let status = state.node(&id).map(|n| n.status).unwrap_or_default();
        match counts.iter_mut().find(|(s, _)| *s == status) {
            Some((_, n)) => *n += 1,
            None => counts.push((status, 1)),
        }
    }
    counts.sort_by_key(|(s, _)| s.as_str());
    let parts: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
    format!("{} instances: {}", items.len(), parts.join(", "))
}

/// Which instances of a fan-out of more than [`SHOWN_INSTANCES`] are listed one by one: at
/// most that many of those worth a look (running, waiting, failed, cancelled), in order.
pub(super) struct InstanceFilter<'a> {
    state: &'a RunState,
    shown: std::collections::HashMap<&'a str, usize>,
}

impl<'a> InstanceFilter<'a> {
    pub(super) fn new(state: &'a RunState) -> Self {
        InstanceFilter {
            state,
            shown: Default::default(),
        }
    }

    /// True when node `id` is a fan-out of more than [`SHOWN_INSTANCES`] instances.
    pub(super) fn many(&self, id: &str) -> bool {
        self.state
            .node(id)
            .and_then(|f| f.fan_out.as_ref())
            .is_some_and(|items| items.len() > SHOWN_INSTANCES)
    }

    /// True when `n`, an instance of a fan-out of many, is left out of the list.
    pub(super) fn hides(&mut self, n: &'a crate::store::NodeState) -> bool {
        let Some((fan_out, _)) = crate::engine::fanout::split_instance_id(&n.id) else {
            return false;
        };
        if !self.many(fan_out) {
            return false;
        }
        let quiet = matches!(
            n.status,
            NodeStatus::Success | NodeStatus::Pending | NodeStatus::Skipped
        );
        let count = self.shown.entry(fan_out).or_default();
        if quiet || *count >= SHOWN_INSTANCES {
            return true;
        }
        *count += 1;
        false
    }
}

/// One line per node: id, status, duration, attempts, agent usage, and the error or skip
/// reason.
pub(super) fn node_table(state: &RunState, now: SystemTime) -> String {
    let width = state
        .nodes
        .iter()
        .map(|n| n.id.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let labels: Vec<String> = state.nodes.iter().map(status_label).collect();
    let label_width = labels.iter().map(|l| l.len()).max().unwrap_or(9).max(9);
    let mut out = String::new();
    // A fan-out of many: its instances as counts, and only those worth a look one by one.
    let mut filter = InstanceFilter::new(state);
    for (n, label) in state.nodes.iter().zip(&labels) {
        if filter.hides(n) {
            continue;
        }
        let took = match n.status {
            NodeStatus::Pending | NodeStatus::Skipped => String::new(),
            _ => n.elapsed(now).map(duration::format).unwrap_or_default(),
        };
        let mut note = match n.status {
            NodeStatus::Failed => n.error.clone().unwrap_or_default(),
            NodeStatus::Skipped => n.skip_reason.clone().unwrap_or_default(),
            NodeStatus::Waiting => n
                .approval
                .as_ref()
                .map(|a| a.message.clone())
                .unwrap_or_default(),
            _ => String::new(),
        };
        if let Some(t) = n.output_truncated {
            let cut = truncation_text(t.kept_bytes, t.total_bytes);
            note = if note.is_empty() {
                cut
            } else {
                format!("{note} ({cut})")
            };
        }
        if n.attempt > 1 {
            note = if note.is_empty() {
                format!("{} attempts", n.attempt)
            } else {
                format!("{note} ({} attempts)", n.attempt)
            };
        }
        if !n.usage.is_zero() {
            let usage = usage_text(&n.usage);
            note = if note.is_empty() {
                usage
            } else {
                format!("{usage} · {note}")
            };
        }
        let line = format!(
            "  {:<width$}  {label:<label_width$}  {:>7}  {}",
            n.id,
            took,
            note.lines().next().unwrap_or("")
        );
        let _ = writeln!(out, "{}", line.trim_end());
        if filter.many(&n.id) {
            let _ = writeln!(out, "  {:<width$}  {}", "", instance_counts(state, n));
        }
        if n.status == NodeStatus::Failed {
            let lines = failure_lines(&state.run_id, &n.log_tail, n.log.as_deref());
            if !lines.is_empty() {
                let _ = writeln!(out, "{}", lines.trim_start_matches('\n'));
            }
        }
    }
    out
}
