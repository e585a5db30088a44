//! The Temporal side of the command line: `reins worker`, and `run`, `approve`, `reject`,
//! `cancel`, `status`, `logs` with `--temporal` (or `REINS_TEMPORAL`, or the user config).
//! The work itself is [`crate::temporal`].

use std::sync::Arc;

use super::args::{AnswerArgs, LogsArgs, RunArgs, TemporalArgs, WorkerArgs};
use super::common::{current_store, say};
use super::error::{self, Error, Outcome};
use crate::engine::approval::os_user;
use crate::engine::Plan;
use crate::temporal::activities::Host;
use crate::temporal::client::{self, Ended};
use crate::temporal::config::{Endpoint, Given};
use crate::temporal::types::{Answer, FrozenSource, Submission, View};

/// A failure talking to Temporal: reins could not do its part (the server is down, a call
/// failed), not a mistake in the command line.
fn server(e: crate::temporal::TemporalError) -> Error {
    Error::internal(e.message)
}

/// Seconds without a heartbeat before a worker counts as dead, unless
/// `REINS_TEMPORAL_HEARTBEAT_TIMEOUT` says otherwise.
const HEARTBEAT_TIMEOUT_SECS: u64 = 10;

/// The Temporal endpoint the flags, the environment and the user config name; `None`: local.
pub(super) fn endpoint(args: &TemporalArgs) -> error::Result<Option<Endpoint>> {
    let given = Given {
        address: args.temporal.clone(),
        namespace: args.namespace.clone(),
        task_queue: args.task_queue.clone(),
    };
    let config = crate::engine::agent_slots::config_path();
    Endpoint::resolve(&given, |k| std::env::var(k).ok(), config.as_deref())
        .map_err(|e| Error::usage(e.0))
}

fn runtime() -> error::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::io("cannot start the async runtime", e))
}

fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
}

fn flags(e: &Endpoint) -> String {
    let mut s = format!("--temporal {}", e.address);
    if e.namespace != "default" {
        s.push_str(&format!(" --namespace {}", e.namespace));
    }
    s
}

/// `reins run WF --temporal ...`: validates here (an invalid workflow never reaches Temporal),
/// submits, and returns or follows.
pub(super) fn run(args: RunArgs, endpoint: Endpoint) -> error::Result {
    if args.dry_run {
        return Err(Error::usage(
            "`--dry-run` renders a run here; leave out `--temporal` (or REINS_TEMPORAL) for it",
        ));
    }
    let super::load::Valid { workflow, commands } = super::load::valid_workflow(&args.workflow)?;
    let inputs = super::run::with_value(&workflow, args.value.as_deref(), &args.inputs)
        .map_err(Error::usage)?;
    crate::engine::launch::resolve_inputs(&workflow, &inputs)
        .map_err(|e| Error::usage(e.message))?;
    let name = workflow.name.value.clone();
    let source = FrozenSource {
        path: workflow.source.path.display().to_string(),
        text: workflow.source.text.clone(),
    };
    let plan = Plan::new(workflow, &commands).map_err(|e| Error::usage(e.to_string()))?;
    let heartbeat_timeout_secs = std::env::var("REINS_TEMPORAL_HEARTBEAT_TIMEOUT")
        .ok()
        .and_then(|t| crate::workflow::duration::parse(&t).ok())
        .map_or(HEARTBEAT_TIMEOUT_SECS, |d| d.as_secs().max(1));
    let run_id = crate::store::id::new_run_id(std::time::SystemTime::now());
    let submission = Submission {
        run_id: run_id.clone(),
        workflow: name.clone(),
        source,
        commands: plan
            .commands
            .iter()
            .map(|(n, c)| {
                (
                    n.clone(),
                    FrozenSource {
                        path: c.file.path.display().to_string(),
                        text: c.file.text.clone(),
                    },
                )
            })
            .collect(),
        workflows: plan
            .workflows
            .iter()
            .map(|(n, f)| {
                (
                    n.clone(),
                    FrozenSource {
                        path: f.path.display().to_string(),
                        text: f.text.clone(),
                    },
                )
            })
            .collect(),
        inputs,
        worktree: args.worktree,
        base: args.base.clone(),
        agent: args.agent.clone(),
        by: os_user(),
        heartbeat_timeout_secs,
    };
    let rt = runtime()?;
    rt.block_on(async {
        let c = client::connect(&endpoint, &format!("reins run {}", os_user()))
            .await
            .map_err(server)?;
        client::submit(&c, &endpoint, submission)
            .await
            .map_err(server)?;
        let f = flags(&endpoint);
        say!(
            "run {run_id} of `{name}` submitted to Temporal at {} (namespace {}, task queue {})",
            endpoint.address,
            endpoint.namespace,
            endpoint.task_queue
        );
        if !args.follow {
            say!("follow it with `reins status {run_id} {f}`; its logs: `reins logs {run_id} {f}`");
            return Ok(Outcome::Success);
        }
        follow(&c, &run_id, &f).await
    })
}

async fn follow(c: &temporalio_client::Client, run_id: &str, f: &str) -> error::Result {
    let mut announced = Vec::new();
    let result = client::follow(c, run_id);
    tokio::pin!(result);
    loop {
        tokio::select! {
            ended = &mut result => {
                return match ended {
                    Ok(Ended::Success(done)) => {
                        let host = done.placement.map(|p| p.host).unwrap_or_default();
                        say!("run {run_id}: success (on {host})");
                        Ok(Outcome::Success)
                    }
                    Ok(Ended::Failed(why)) => {
                        say!("run {run_id}: failed: {why}");
                        Ok(Outcome::Failed)
                    }
                    Ok(Ended::Cancelled) => {
                        say!("run {run_id}: cancelled");
                        Ok(Outcome::Cancelled)
                    }
                    Ok(Ended::Stopped(why)) => {
                        say!("run {run_id}: {why}");
                        Ok(Outcome::Failed)
                    }
                    Err(e) => Err(server(e)),
                };
            }
            _ = tokio::time::sleep(std::time::Duration::from_millis(500)) => {
                if let Ok((view, _)) = client::status(c, run_id).await {
                    for g in &view.waiting {
                        if !announced.contains(&g.request) {
                            announced.push(g.request.clone());
                            say!(
                                "run {run_id} waits at `{}`: {}\n  answer with `reins approve {run_id} {} {f}` or `reins reject {run_id} {} -m WHY {f}`",
                                g.node, g.message, g.node, g.node
                            );
                        }
                    }
                }
            }
        }
    }
}

/// `reins worker`.
pub(super) fn worker(args: WorkerArgs) -> error::Result {
    let Some(endpoint) = endpoint(&args.temporal)? else {
        return Err(Error::usage(
            "`reins worker` needs a Temporal server: pass `--temporal HOST:PORT` (or set REINS_TEMPORAL)",
        ));
    };
    let store = current_store()?;
    store.check_dir().map_err(|e| Error::usage(e.to_string()))?;
    let hostname = host_name();
    let root = std::fs::canonicalize(store.root()).unwrap_or_else(|_| store.root().to_path_buf());
    let queue = crate::temporal::worker::own_queue(&endpoint.task_queue, &hostname, &root);
    let config = crate::engine::agent_slots::config_path();
    let (max, _) = crate::engine::agent_slots::resolve_max(
        args.max_agents,
        |k| std::env::var(k).ok(),
        config.as_deref(),
    )
    .map_err(|e| Error::usage(e.to_string()))?;
    let agent_slots = crate::engine::agent_slots::AgentSlots::for_user(max);
    let watchdog = match crate::process::Watchdog::start() {
        Ok(w) => Some(Arc::new(w)),
        Err(e) => {
            eprintln!("warning: cannot start the watchdog ({e}); if the worker is killed, grandchildren of running nodes may survive it");
            None
        }
    };
    let slots = args.runs.map_or(1, |n| n as usize);
    let host = Arc::new(Host::new(
        store,
        queue.clone(),
        hostname.clone(),
        slots,
        watchdog,
        agent_slots,
    ));
    let rt = runtime()?;
    let result = rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let (mut int, mut term) = signal(SignalKind::interrupt())
            .and_then(|i| Ok((i, signal(SignalKind::terminate())?)))
            .map_err(|e| Error::io("cannot listen for Ctrl-C", e))?;
        let stop = async move {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            eprintln!("stopping the worker: running node attempts are retried when a worker for this checkout returns");
        };
        let ready = || {
            say!(
                "worker {queue} on {hostname}, in {}: polling `{}` and its own queue at {} (namespace {}); {slots} run(s) at once",
                root.display(),
                endpoint.task_queue,
                endpoint.address,
                endpoint.namespace
            );
        };
        crate::temporal::worker::run(&endpoint, host, ready, stop)
            .await
            .map(|()| Outcome::Success)
            .map_err(server)
    });
    // The watchdog kills the process groups of nodes still running when this process exits.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    result
}

/// `reins approve|reject RUN [GATE] --temporal ...`.
pub(super) fn answer(args: AnswerArgs, approved: bool, endpoint: Endpoint) -> error::Result {
    let verb = if approved { "approve" } else { "reject" };
    if std::env::var("REINS_RUN_ID").is_ok_and(|id| id == args.run) {
        return Err(Error::usage(format!(
            "refusing to {verb} a gate of run {} from inside that run (REINS_RUN_ID is {}); a gate is answered by a human from outside the run it guards, never by one of its nodes",
            args.run, args.run
        )));
    }
    if args.resume {
        return Err(Error::usage(
            "`--resume` continues a local run; a run on Temporal goes on by itself once answered",
        ));
    }
    let rt = runtime()?;
    rt.block_on(async {
        let c = client::connect(&endpoint, &format!("reins {verb} {}", os_user()))
            .await
            .map_err(server)?;
        let answer = Answer {
            gate: args.node.clone(),
            request: None,
            approved,
            by: os_user(),
            comment: args.message.clone(),
        };
        // A refusal (first answer wins, no such gate) is the asker's mistake.
        let a = client::answer(&c, &args.run, answer)
            .await
            .map_err(|e| Error::usage(e.message))?;
        say!(
            "{} `{}` of run {} (by {}, request {}); the run goes on on its worker",
            if approved { "approved" } else { "rejected" },
            a.gate,
            args.run,
            a.by,
            a.request
        );
        Ok(Outcome::Success)
    })
}

/// `reins cancel RUN --temporal ...`.
pub(super) fn cancel(run: &str, endpoint: Endpoint) -> error::Result {
    let rt = runtime()?;
    rt.block_on(async {
        let c = client::connect(&endpoint, &format!("reins cancel {}", os_user()))
            .await
            .map_err(server)?;
        client::cancel(&c, run).await.map_err(server)?;
        say!("cancelling run {run}: its worker stops the running nodes");
        Ok(Outcome::Success)
    })
}

/// `reins status RUN --temporal ...`.
pub(super) fn status(run: &str, json: bool, endpoint: Endpoint) -> error::Result {
    let rt = runtime()?;
    let c = rt
        .block_on(client::connect(&endpoint, "reins status"))
        .map_err(server)?;
    // An unknown run is the asker's mistake.
    let (view, temporal) = rt
        .block_on(client::status(&c, run))
        .map_err(|e| Error::usage(e.message))?;
    if json {
        let mut value = serde_json::to_value(&view).unwrap_or_default();
        value["temporal_status"] = serde_json::Value::String(temporal);
        say!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
        return Ok(Outcome::Success);
    }
    print_view(&view, &temporal, &flags(&endpoint));
    Ok(Outcome::Success)
}

fn print_view(view: &View, temporal: &str, f: &str) {
    say!(
        "run {} `{}` on Temporal: {} (workflow execution {temporal})",
        view.run_id,
        view.workflow,
        view.phase
    );
    match &view.placement {
        Some(p) => say!("worker: {} on {}, in {}", p.queue, p.host, p.root),
        None => say!("worker: not placed yet (no worker has taken it)"),
    }
    let width = view.nodes.keys().map(|k| k.len()).max().unwrap_or(0);
    for (node, status) in &view.nodes {
        say!("  {node:<width$}  {status}");
    }
    for g in &view.waiting {
        say!(
            "waiting at `{}` (request {}): {}\n  answer with `reins approve {id} {} {f}` or `reins reject {id} {} -m WHY {f}`",
            g.node,
            g.request,
            g.message,
            g.node,
            g.node,
            id = view.run_id
        );
    }
    for a in &view.answers {
        say!(
            "answered: `{}` {} by {}",
            a.gate,
            if a.approved { "approved" } else { "rejected" },
            a.by
        );
    }
    if let Some(e) = &view.error {
        say!("error: {e}");
    }
}

/// `reins logs RUN [NODE] --temporal ...`: the logs live in the worker's checkout; shown here
/// when that checkout is on this machine, else where to find them.
pub(super) fn logs(args: LogsArgs, endpoint: Endpoint) -> error::Result {
    let rt = runtime()?;
    let c = rt
        .block_on(client::connect(&endpoint, "reins logs"))
        .map_err(server)?;
    let found = rt.block_on(client::status(&c, &args.run));
    drop(c);
    drop(rt);
    let view = found.map_err(|e| Error::usage(e.message))?.0;
    let Some(p) = view.placement else {
        return Err(Error::usage(format!(
            "run {} has no worker yet, so no logs",
            args.run
        )));
    };
    let root = std::path::PathBuf::from(&p.root);
    let here = host_name() == p.host;
    if !(here && root.join(".reins/runs").join(&args.run).is_dir()) {
        return Err(Error::usage(format!(
            "the logs of run {} are on {} in {}/.reins/runs/{}; run `reins logs {}` there",
            args.run, p.host, p.root, args.run, args.run
        )));
    }
    std::env::set_current_dir(&root)
        .map_err(|e| Error::internal(format!("cannot enter {}: {e}", root.display())))?;
    super::logs::run(args)
}
