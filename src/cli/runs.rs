//! `reins runs`, `reins status` and `reins cancel`.

use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::json;

use super::args::{CancelArgs, ListFormat, RunsArgs, StatusArgs};
use super::common::{current_store, resolve_run, say};
use super::error::{self, Error, Outcome};
use super::progress::{next_steps, node_table};
use crate::store::lock::live_owner;
use crate::store::{
    Event, EventLog, NodeStatus, RunDir, RunLock, RunState, RunStatus, RunSummary, Store,
};
use crate::workflow::duration;

/// Runs `reins runs`.
pub(super) fn list(args: RunsArgs) -> error::Result {
    let store = current_store()?;
    let runs = match store.list() {
        Ok(r) => r,
        Err(e) => return Err(Error::internal(format!("cannot list runs: {e}"))),
    };
    let now = SystemTime::now();
    match args.format {
        ListFormat::Json => {
            let items: Vec<_> = runs.iter().map(|r| r.to_json(now)).collect();
            say!(
                "{}",
                serde_json::to_string_pretty(&items).unwrap_or_default()
            );
        }
        ListFormat::Text => {
            if runs.is_empty() {
                say!("no runs yet (start one with `reins run WORKFLOW`)");
                return Ok(Outcome::Success);
            }
            let tree = tree_order(&runs);
            let id_width = tree.iter().map(|(d, _)| 20 + 2 * d).max().unwrap_or(20);
            let wf_width = runs
                .iter()
                .map(|r| r.workflow().len())
                .max()
                .unwrap_or(8)
                .max(8);
            let branches = runs.iter().any(|r| r.branch().is_some());
            say!(
                "{:<id_width$}  {:<wf_width$}  {:<11}  {:<20}  {:>8}  {:<7}{}",
                "ID",
                "WORKFLOW",
                "STATUS",
                "STARTED",
                "DURATION",
                "COST",
                if branches { "  BRANCH" } else { "" }
            );
            for (depth, r) in tree {
                let started = r
                    .started_at()
                    .map(|t| humantime::format_rfc3339_seconds(t).to_string())
                    .unwrap_or_default();
                let took = r
                    .state
                    .elapsed(now)
                    .map(duration::format)
                    .unwrap_or_default();
                let usage = r.state.total_usage();
                let cost = if usage.is_zero() {
                    "-".to_string()
                } else if usage.unpriced && usage.cost_usd == 0.0 {
                    format!("{}tok", usage.tokens())
                } else {
                    format!("${:.4}", usage.cost_usd)
                };
                let line = format!(
                    "{:<id_width$}  {:<wf_width$}  {:<11}  {:<20}  {:>8}  {cost:<7}{}",
                    format!("{}{}", "  ".repeat(depth), r.run.id),
                    r.workflow(),
                    r.status.as_str(),
                    started,
                    took,
                    r.branch().map(|b| format!("  {b}")).unwrap_or_default()
                );
                say!("{}", line.trim_end());
            }
        }
    }
    Ok(Outcome::Success)
}

/// The runs in tree order: each run followed by its child runs (`workflow:` nodes), indented
/// one level deeper, with its depth. A child whose parent is not listed is shown at the top.
fn tree_order(runs: &[RunSummary]) -> Vec<(usize, &RunSummary)> {
    fn parent_of<'a>(r: &'a RunSummary, runs: &[RunSummary]) -> Option<&'a str> {
        r.manifest
            .as_ref()
            .and_then(|m| m.parent.as_ref())
            .map(|p| p.run_id.as_str())
            .filter(|p| runs.iter().any(|o| o.run.id == *p))
    }
    let mut out = Vec::with_capacity(runs.len());
    let mut stack: Vec<(usize, &RunSummary)> = runs
        .iter()
        .rev()
        .filter(|r| parent_of(r, runs).is_none())
        .map(|r| (0, r))
        .collect();
    while let Some((depth, r)) = stack.pop() {
        out.push((depth, r));
        if depth >= 32 {
            continue;
        }
        stack.extend(
            runs.iter()
                .rev()
                .filter(|c| parent_of(c, runs) == Some(r.run.id.as_str()))
                .map(|c| (depth + 1, c)),
        );
    }
    out
}

/// Runs `reins status`.
pub(super) fn status(args: StatusArgs) -> error::Result {
    let (store, run) = resolve_run(&args.run)?;
    let summary = read_summary(&store, &run)?;
    let now = SystemTime::now();
    match args.format {
        ListFormat::Json => {
            let mut value = serde_json::to_value(&summary.state).unwrap_or_default();
            value["status"] = json!(summary.status);
            value["dir"] = json!(run.path);
            if let Some(m) = &summary.manifest {
                value["digest"] = json!(m.digest);
                value["workflow_path"] = json!(m.workflow_path);
            }
            say!(
                "{}",
                serde_json::to_string_pretty(&value).unwrap_or_default()
            );
        }
        ListFormat::Text => {
            use std::io::Write as _;
            let text = status_text(&summary, now);
            let _ = std::io::stdout().lock().write_all(text.as_bytes());
        }
    }
    Ok(Outcome::Success)
}

/// What `reins status` prints for a run: its header, one line per node, the error, and what to
/// do next.
pub(super) fn status_text(summary: &RunSummary, now: SystemTime) -> String {
    use std::fmt::Write as _;
    let state = &summary.state;
    let run = &summary.run;
    let started = state
        .started_at
        .map(|t| humantime::format_rfc3339_seconds(t).to_string())
        .unwrap_or_default();
    let took = state.elapsed(now).map(duration::format).unwrap_or_default();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "run {} of `{}`: {} (started {started}, {took})",
        run.id,
        summary.workflow(),
        summary.status
    );
    out.push_str(&node_table(state, now));
    child_tables(&mut out, run, state, now, 1);
    if let Some(e) = &state.error {
        let _ = writeln!(out, "error: {e}");
    }
    match summary.status {
        RunStatus::Interrupted => {
            let _ = writeln!(out, "reins stopped while this run executed");
        }
        RunStatus::Running => {
            if let Some(o) = live_owner(&run.lock_path()) {
                let _ = writeln!(out, "executing in pid {}", o.pid);
            }
        }
        _ => {}
    }
    for hint in next_steps(state, summary.status) {
        let _ = writeln!(out, "{hint}");
    }
    out
}

/// The nodes of each child run of `state`'s `workflow:` nodes, indented under their parent.
fn child_tables(out: &mut String, run: &RunDir, state: &RunState, now: SystemTime, depth: usize) {
    use std::fmt::Write as _;
    if depth > 8 {
        return;
    }
    for n in &state.nodes {
        let Some(id) = n.child_run.as_deref() else {
            continue;
        };
        let Some(child) = crate::engine::subflow::sibling(run, id) else {
            continue;
        };
        let Ok(child_state) = crate::engine::launch::read_state(&child) else {
            continue;
        };
        let indent = "  ".repeat(depth);
        let status = child_state.status_given(child.is_live());
        let _ = writeln!(
            out,
            "{indent}{} → child run {id} of `{}`: {status}",
            n.id, child_state.workflow
        );
        for line in node_table(&child_state, now).lines() {
            let _ = writeln!(out, "{indent}  {line}");
        }
        child_tables(out, &child, &child_state, now, depth + 1);
    }
}

/// Runs `reins cancel`.
pub(super) fn cancel(args: CancelArgs) -> error::Result {
    let (store, run) = resolve_run(&args.run)?;
    // Runs of a tree (`workflow:` nodes) are cancelled together, from its top.
    let top = crate::engine::approval::top_of(&run);
    if top.id != run.id {
        say!(
            "run {} is a child run of run {}: cancelling the whole tree",
            run.id,
            top.id
        );
    }
    let owner = live_owner(&top.lock_path()).or_else(|| live_owner(&run.lock_path()));
    if let Some(owner) = owner {
        return stop_live(&store, &top.id, owner.pid);
    }
    let summary = read_summary(&store, &top)?;
    let code = match summary.status {
        RunStatus::Interrupted | RunStatus::Waiting | RunStatus::Running => {
            mark_cancelled(&summary)
        }
        done => {
            say!("run {} already ended: {done}", top.id);
            Ok(Outcome::Success)
        }
    };
    let mut children: Vec<RunDir> = child_runs(&top, &summary.state);
    let mut seen = 0;
    while let Some(child) = children.pop() {
        seen += 1;
        if seen > 1000 {
            break;
        }
        let Ok(s) = store.summary(&child) else {
            continue;
        };
        if matches!(
            s.status,
            RunStatus::Interrupted | RunStatus::Waiting | RunStatus::Running
        ) {
            mark_cancelled(&s)?;
        }
        children.extend(child_runs(&child, &s.state));
    }
    code
}

/// The child runs of a run's `workflow:` nodes.
fn child_runs(run: &RunDir, state: &RunState) -> Vec<RunDir> {
    state
        .nodes
        .iter()
        .filter_map(|n| n.child_run.as_deref())
        .filter_map(|id| crate::engine::subflow::sibling(run, id))
        .collect()
}

/// Sends TERM to the reins process executing the run (it cancels gracefully), a second TERM
/// if it has not stopped after a while (it forces), and waits for it.
fn stop_live(store: &Store, run_id: &str, pid: u32) -> error::Result {
    let target = Pid::from_raw(pid as i32);
    if let Err(e) = kill(target, Signal::SIGTERM) {
        return Err(Error::internal(format!(
            "cannot signal pid {pid}, which executes run {run_id}: {e}"
        )));
    }
    say!("cancelling run {run_id} (pid {pid})...");
    let start = Instant::now();
    let mut forced = false;
    loop {
        let still = store.run(run_id).is_live();
        if !still {
            break;
        }
        if !forced && start.elapsed() > Duration::from_secs(10) {
            let _ = kill(target, Signal::SIGTERM);
            forced = true;
        }
        if start.elapsed() > Duration::from_secs(30) {
            return Err(Error::internal(format!(
                "pid {pid} still executes run {run_id} after 30s"
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = store
        .summary(&store.run(run_id))
        .map(|s| s.status)
        .unwrap_or(RunStatus::Interrupted);
    say!("run {run_id}: {status}");
    Ok(Outcome::Success)
}

/// Records the end of a run no process executes: running and waiting nodes are cancelled.
fn mark_cancelled(summary: &RunSummary) -> error::Result {
    let run = &summary.run;
    let _lock = match RunLock::acquire(&run.lock_path(), &run.id) {
        Ok(l) => l,
        Err(e) => return Err(Error::usage(e.to_string())),
    };
    let (mut log, _) = match EventLog::open(&run.events_path()) {
        Ok(l) => l,
        Err(e) => return Err(Error::internal(format!("cannot open the event log: {e}"))),
    };
    for node in &summary.state.nodes {
        if matches!(node.status, NodeStatus::Running | NodeStatus::Waiting) {
            let _ = log.append(Event::NodeCancelled {
                node: node.id.clone(),
            });
        }
    }
    let _ = log.append(Event::RunFinished {
        status: RunStatus::Cancelled,
        error: None,
    });
    if let Err(e) = log.close() {
        return Err(Error::internal(format!("cannot write the event log: {e}")));
    }
    say!("run {}: cancelled", run.id);
    Ok(Outcome::Success)
}

/// A run's summary, or the exit code after saying why it cannot be read.
fn read_summary(store: &Store, run: &RunDir) -> Result<RunSummary, Error> {
    store
        .summary(run)
        .map_err(|e| Error::internal(format!("cannot read run {}: {e}", run.id)))
}
