//! The Temporal side of the command line: `reins worker`, and `run`, `approve`, `reject`,
//! `cancel`, `status`, `logs` with `--temporal` (or `REINS_TEMPORAL`, or the user config).
//! The work itself is [`crate::temporal`].

use std::sync::Arc;

use super::args::{AnswerArgs, LogsArgs, RunArgs, TemporalArgs, WorkerArgs};
use super::common::{current_store, say};
use super::error::{self, Error, Outcome};
use crate::engine::approval::os_user;
use crate::engine::Plan;
use crate::exit;
use crate::temporal::activities::Host;
use crate::temporal::client::{self, Ended};
use crate::temporal::config::{Endpoint, Given};
use crate::temporal::types::{Answer, FrozenSource, Submission, View};

/// Prints an error and returns its exit code.
fn fail(message: &str, code: u8) -> u8 {
    eprintln!("error: {message}");
    code
}

/// A command's exit code as the command line's result (every message is printed already).
fn done(code: u8) -> error::Result {
    match code {
        exit::SUCCESS => Ok(Outcome::Success),
        exit::NODE_FAILED => Ok(Outcome::Failed),
        exit::WAITING_FOR_APPROVAL => Ok(Outcome::Waiting),
        exit::CANCELLED => Ok(Outcome::Cancelled),
        _ => Err(Error::Invalid),
    }
}

fn printed(e: Error) -> u8 {
    e.print();
    e.exit_code()
}

/// Seconds without a heartbeat before a worker counts as dead, unless
/// `REINS_TEMPORAL_HEARTBEAT_TIMEOUT` says otherwise.
const HEARTBEAT_TIMEOUT_SECS: u64 = 10;

/// The Temporal endpoint the flags, the environment and the user config name; `None`: local.
pub fn endpoint(args: &TemporalArgs) -> Result<Option<Endpoint>, u8> {
    let given = Given {
        address: args.temporal.clone(),
        namespace: args.namespace.clone(),
        task_queue: args.task_queue.clone(),
    };
    let config = crate::engine::agent_slots::config_path();
    Endpoint::resolve(&given, |k| std::env::var(k).ok(), config.as_deref())
        .map_err(|e| fail(&e.0, exit::USAGE))
}

fn runtime() -> Result<tokio::runtime::Runtime, u8> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| {
            fail(
                &format!("cannot start the async runtime: {e}"),
                exit::NODE_FAILED,
            )
        })
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
pub fn run(args: RunArgs, endpoint: Endpoint) -> error::Result {
    done(run_code(args, endpoint))
}

fn run_code(args: RunArgs, endpoint: Endpoint) -> u8 {
    if args.dry_run {
        return fail(
            "`--dry-run` renders a run here; leave out `--temporal` (or REINS_TEMPORAL) for it",
            exit::USAGE,
        );
    }
    let super::load::Valid { workflow, commands } =
        match super::load::valid_workflow(&args.workflow) {
            Ok(valid) => valid,
            Err(e) => return printed(e),
        };
    let inputs = match super::run::with_value(&workflow, args.value.as_deref(), &args.inputs) {
        Ok(i) => i,
        Err(message) => return fail(&message, exit::USAGE),
    };
    if let Err(e) = crate::engine::launch::resolve_inputs(&workflow, &inputs) {
        return fail(&e.message, exit::USAGE);
    }
    let name = workflow.name.value.clone();
    let source = FrozenSource {
        path: workflow.source.path.display().to_string(),
        text: workflow.source.text.clone(),
    };
    let plan = match Plan::new(workflow, &commands) {
        Ok(p) => p,
        Err(e) => return fail(&e.to_string(), exit::USAGE),
    };
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
    let rt = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    rt.block_on(async {
        let c = match client::connect(&endpoint, &format!("reins run {}", os_user())).await {
            Ok(c) => c,
            Err(e) => return fail(&e.message, exit::NODE_FAILED),
        };
        if let Err(e) = client::submit(&c, &endpoint, submission).await {
            return fail(&e.message, exit::NODE_FAILED);
        }
        let f = flags(&endpoint);
        say!(
            "run {run_id} of `{name}` submitted to Temporal at {} (namespace {}, task queue {})",
            endpoint.address,
            endpoint.namespace,
            endpoint.task_queue
        );
        if !args.follow {
            say!("follow it with `reins status {run_id} {f}`; its logs: `reins logs {run_id} {f}`");
            return exit::SUCCESS;
        }
        follow(&c, &run_id, &f).await
    })
}

async fn follow(c: &temporalio_client::Client, run_id: &str, f: &str) -> u8 {
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
                        exit::SUCCESS
                    }
                    Ok(Ended::Failed(why)) => {
                        say!("run {run_id}: failed: {why}");
                        exit::NODE_FAILED
                    }
                    Ok(Ended::Cancelled) => {
                        say!("run {run_id}: cancelled");
                        exit::CANCELLED
                    }
                    Ok(Ended::Stopped(why)) => {
                        say!("run {run_id}: {why}");
                        exit::NODE_FAILED
                    }
                    Err(e) => fail(&e.message, exit::NODE_FAILED),
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
pub fn worker(args: WorkerArgs) -> error::Result {
    done(worker_code(args))
}

fn worker_code(args: WorkerArgs) -> u8 {
    let endpoint = match endpoint(&args.temporal) {
        Ok(Some(e)) => e,
        Ok(None) => {
            return fail(
                "`reins worker` needs a Temporal server: pass `--temporal HOST:PORT` (or set REINS_TEMPORAL)",
                exit::USAGE,
            )
        }
        Err(code) => return code,
    };
    let store = match current_store() {
        Ok(s) => s,
        Err(e) => return printed(e),
    };
    if let Err(e) = store.check_dir() {
        return fail(&e.to_string(), exit::USAGE);
    }
    let hostname = host_name();
    let root = std::fs::canonicalize(store.root()).unwrap_or_else(|_| store.root().to_path_buf());
    let queue = crate::temporal::worker::own_queue(&endpoint.task_queue, &hostname, &root);
    let config = crate::engine::agent_slots::config_path();
    let agent_slots = match crate::engine::agent_slots::resolve_max(
        args.max_agents,
        |k| std::env::var(k).ok(),
        config.as_deref(),
    ) {
        Ok((max, _)) => crate::engine::agent_slots::AgentSlots::for_user(max),
        Err(e) => return fail(&e.to_string(), exit::USAGE),
    };
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
    let rt = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let code = rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return fail("cannot listen for Ctrl-C", exit::NODE_FAILED);
        };
        say!(
            "worker {queue} on {hostname}, in {}: polling `{}` and its own queue at {} (namespace {}); {slots} run(s) at once",
            root.display(),
            endpoint.task_queue,
            endpoint.address,
            endpoint.namespace
        );
        let stop = async move {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            eprintln!("stopping the worker: running stretches finish, or are retried when a worker for this checkout returns");
        };
        match crate::temporal::worker::run(&endpoint, host, stop).await {
            Ok(()) => exit::SUCCESS,
            Err(e) => fail(&e.message, exit::NODE_FAILED),
        }
    });
    // Running stretches of runs hold threads of their own; the watchdog kills their process
    // groups when this process exits.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    code
}

/// `reins approve|reject RUN [GATE] --temporal ...`.
pub fn answer(args: AnswerArgs, approved: bool, endpoint: Endpoint) -> error::Result {
    done(answer_code(args, approved, endpoint))
}

fn answer_code(args: AnswerArgs, approved: bool, endpoint: Endpoint) -> u8 {
    let verb = if approved { "approve" } else { "reject" };
    if std::env::var("REINS_RUN_ID").is_ok_and(|id| id == args.run) {
        return fail(
            &format!(
                "refusing to {verb} a gate of run {} from inside that run (REINS_RUN_ID is {}); a gate is answered by a human from outside the run it guards, never by one of its nodes",
                args.run, args.run
            ),
            exit::USAGE,
        );
    }
    if args.resume {
        return fail(
            "`--resume` continues a local run; a run on Temporal goes on by itself once answered",
            exit::USAGE,
        );
    }
    let rt = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    rt.block_on(async {
        let c = match client::connect(&endpoint, &format!("reins {verb} {}", os_user())).await {
            Ok(c) => c,
            Err(e) => return fail(&e.message, exit::NODE_FAILED),
        };
        let answer = Answer {
            gate: args.node.clone(),
            request: None,
            approved,
            by: os_user(),
            comment: args.message.clone(),
        };
        match client::answer(&c, &args.run, answer).await {
            Ok(a) => {
                say!(
                    "{} `{}` of run {} (by {}, request {}); the run goes on on its worker",
                    if approved { "approved" } else { "rejected" },
                    a.gate,
                    args.run,
                    a.by,
                    a.request
                );
                exit::SUCCESS
            }
            Err(e) => fail(&e.message, exit::USAGE),
        }
    })
}

/// `reins cancel RUN --temporal ...`.
pub fn cancel(run: &str, endpoint: Endpoint) -> error::Result {
    done(cancel_code(run, endpoint))
}

fn cancel_code(run: &str, endpoint: Endpoint) -> u8 {
    let rt = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    rt.block_on(async {
        let c = match client::connect(&endpoint, &format!("reins cancel {}", os_user())).await {
            Ok(c) => c,
            Err(e) => return fail(&e.message, exit::NODE_FAILED),
        };
        if let Err(e) = client::cancel(&c, run).await {
            return fail(&e.message, exit::NODE_FAILED);
        }
        say!("cancelling run {run}: its worker stops the running nodes");
        exit::SUCCESS
    })
}

/// `reins status RUN --temporal ...`.
pub fn status(run: &str, json: bool, endpoint: Endpoint) -> error::Result {
    done(status_code(run, json, endpoint))
}

fn status_code(run: &str, json: bool, endpoint: Endpoint) -> u8 {
    let rt = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let found = rt.block_on(async {
        let c = client::connect(&endpoint, "reins status").await?;
        client::status(&c, run).await
    });
    let (view, temporal) = match found {
        Ok(v) => v,
        Err(e) => return fail(&e.message, exit::USAGE),
    };
    if json {
        let mut value = serde_json::to_value(&view).unwrap_or_default();
        value["temporal_status"] = serde_json::Value::String(temporal);
        say!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
        return exit::SUCCESS;
    }
    print_view(&view, &temporal, &flags(&endpoint));
    exit::SUCCESS
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
pub fn logs(args: LogsArgs, endpoint: Endpoint) -> error::Result {
    let rt = match runtime() {
        Ok(r) => r,
        Err(code) => return done(code),
    };
    let found = rt.block_on(async {
        let c = client::connect(&endpoint, "reins logs").await?;
        client::status(&c, &args.run).await
    });
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
