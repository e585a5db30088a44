//! What `reins run` and `reins resume` show while a run executes.
//!
//! * On a terminal: a live view on stderr, one line per running node with its elapsed time
//!   and a summary line, redrawn ten times a second; settled nodes scroll above it.
//! * Otherwise: one plain line per event on stdout, each with a UTC timestamp.
//! * With `--json`: the event stream itself, one JSON object per line on stdout, exactly as
//!   `events.jsonl` holds it.

use std::fmt::Write as _;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::engine::Observer;
use crate::store::{Event, IterationStatus, NodeStatus, Record, RunState, RunStatus};
use crate::workflow::duration;

/// Most running nodes listed in the live view.
const MAX_LIVE_LINES: usize = 12;

/// Which view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// Live view on a terminal.
    Live,
    /// Plain timestamped lines.
    Plain,
    /// The event stream as JSON lines.
    Json,
}

impl View {
    /// The view for this process: JSON if asked, live if stderr is a terminal, else plain.
    pub fn detect(json: bool) -> View {
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

/// Builds the observer of a view.
pub fn observer(view: View) -> (Box<dyn Observer>, Option<ProgressBar>) {
    match view {
        View::Json => (Box::new(JsonLines), None),
        View::Plain => (Box::new(PlainLines), None),
        View::Live => {
            let live = Live::new();
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
pub fn describe(record: &Record, state: &RunState) -> Option<String> {
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
        Event::RunResumed { reset, from, .. } => {
            let from = from
                .as_ref()
                .map(|f| format!(" from `{f}`"))
                .unwrap_or_default();
            format!(
                "run {} resumed{from}: {} node{} to run again",
                state.run_id,
                reset.len(),
                if reset.len() == 1 { "" } else { "s" }
            )
        }
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
            ..
        } => {
            if *will_retry {
                format!("{node} failed: {error}; retrying")
            } else {
                format!("{node} failed in {}: {error}", elapsed(node))
            }
        }
        Event::NodeSkipped { node, reason } => format!("{node} skipped: {reason}"),
        Event::NodeCancelled { node } => format!("{node} cancelled"),
        Event::AgentSession {
            node,
            session,
            session_id,
            ..
        } => format!("{node} runs in agent session {session_id} ({session})"),
        Event::ApprovalRequested { node, message } => format!(
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

/// The live view: one redrawn block on stderr.
struct Live {
    bar: ProgressBar,
    shared: Arc<Mutex<LiveState>>,
}

#[derive(Default)]
struct LiveState {
    running: Vec<(String, Instant, u32)>,
    total: usize,
    settled: usize,
    failed: usize,
    started: Option<Instant>,
}

impl Live {
    fn new() -> Self {
        let shared = Arc::new(Mutex::new(LiveState::default()));
        let lines = shared.clone();
        let summary = shared.clone();
        let style = ProgressStyle::with_template("{nodes}{spinner:.cyan} {summary}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner())
            .with_key(
                "nodes",
                move |_: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let s = lines.lock().unwrap_or_else(|e| e.into_inner());
                    let width = terminal_width();
                    for (id, since, attempt) in s.running.iter().take(MAX_LIVE_LINES) {
                        let mut line = format!("  {} {}", pad(id, 24), clock(since.elapsed()));
                        if *attempt > 1 {
                            let _ = write!(line, " (attempt {attempt})");
                        }
                        let _ = writeln!(w, "{}", clip(&line, width));
                    }
                    if s.running.len() > MAX_LIVE_LINES {
                        let _ = writeln!(w, "  ... and {} more", s.running.len() - MAX_LIVE_LINES);
                    }
                },
            )
            .with_key(
                "summary",
                move |_: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let s = summary.lock().unwrap_or_else(|e| e.into_inner());
                    let elapsed = s.started.map(|t| clock(t.elapsed())).unwrap_or_default();
                    let _ = write!(
                        w,
                        "{}/{} settled, {} running",
                        s.settled,
                        s.total,
                        s.running.len()
                    );
                    if s.failed > 0 {
                        let _ = write!(w, ", {} failed", s.failed);
                    }
                    let _ = write!(w, " · {elapsed}");
                },
            );
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(10));
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(100));
        Self { bar, shared }
    }
}

impl Observer for Live {
    fn on_event(&mut self, record: &Record, state: &RunState) {
        {
            let mut s = self.shared.lock().unwrap_or_else(|e| e.into_inner());
            s.total = state.nodes.len();
            s.settled = state.nodes.iter().filter(|n| n.status.is_settled()).count();
            s.failed = state
                .nodes
                .iter()
                .filter(|n| n.status == NodeStatus::Failed)
                .count();
            s.started.get_or_insert_with(Instant::now);
            match &record.event {
                Event::NodeStarted { node, attempt } => {
                    s.running.retain(|(id, ..)| id != node);
                    s.running.push((node.clone(), Instant::now(), *attempt));
                }
                Event::NodeSucceeded { node, .. }
                | Event::NodeSkipped { node, .. }
                | Event::NodeCancelled { node }
                | Event::ApprovalRequested { node, .. } => {
                    s.running.retain(|(id, ..)| id != node);
                }
                Event::NodeFailed {
                    node, will_retry, ..
                } if !will_retry => s.running.retain(|(id, ..)| id != node),
                _ => {}
            }
        }
        let line = match &record.event {
            Event::NodeStarted { .. } => None,
            Event::RunFinished { .. } => None,
            _ => describe(record, state),
        };
        if let Some(line) = line {
            let mark = match &record.event {
                Event::NodeSucceeded { .. } => "✓ ",
                Event::NodeFailed { .. } => "✗ ",
                Event::NodeSkipped { .. } => "- ",
                Event::NodeCancelled { .. } => "✗ ",
                _ => "",
            };
            self.bar.println(format!("{mark}{line}"));
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

fn terminal_width() -> usize {
    use nix::libc;
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes a winsize into the pointer we pass.
    let ok = unsafe { libc::ioctl(2, libc::TIOCGWINSZ, &mut size) } == 0;
    if ok && size.ws_col > 0 {
        size.ws_col as usize - 1
    } else {
        100
    }
}

/// The final summary: one line per node with its status, duration and what to know, then
/// where the logs are.
pub fn summary(state: &RunState, status: RunStatus, run_dir: &std::path::Path) -> String {
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
    match status {
        RunStatus::Failed | RunStatus::Cancelled | RunStatus::Interrupted => {
            let _ = writeln!(
                out,
                "continue it with `reins resume {}` (nodes that succeeded do not run again)",
                state.run_id
            );
        }
        RunStatus::Waiting => {
            for gate in &state.waiting {
                let _ = writeln!(
                    out,
                    "answer `{gate}` with `reins approve {id} {gate} [-m TEXT] --resume` or `reins reject {id} {gate} -m WHY --resume`",
                    id = state.run_id
                );
            }
        }
        _ => {}
    }
    out
}

/// What agents used: cost, turns and tokens, like `$0.0123 · 2 turns · 24 in / 10 out tokens`.
pub fn usage_text(usage: &crate::store::Usage) -> String {
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

/// One line per node: id, status, duration, attempts, agent usage, and the error or skip
/// reason.
pub fn node_table(state: &RunState, now: SystemTime) -> String {
    let width = state
        .nodes
        .iter()
        .map(|n| n.id.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let mut out = String::new();
    for n in &state.nodes {
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
            "  {:<width$}  {:<9}  {:>7}  {}",
            n.id,
            n.status.as_str(),
            took,
            note.lines().next().unwrap_or("")
        );
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}
