//! `reins run` and `reins resume`.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};

use super::args::{ResumeArgs, RunArgs};
use super::progress::{self, View};
use crate::engine::context::{NodeValue, RunInfo};
use crate::engine::launch::{self, resolve_inputs};
use crate::engine::watchdog::Watchdog;
use crate::engine::{CancelLevel, Canceller, Field, Options, Plan, Prepared, Resumed, Runners};
use crate::exit;
use crate::store::{NodeStatus, Store};
use crate::workflow::{self, validate, NodeKind};

/// Prints a line on stdout; a closed pipe (`reins runs | head -1`) is not an error.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}
pub(crate) use say;

/// Runs `reins run`.
pub fn run(args: RunArgs) -> i32 {
    let store = match current_store() {
        Ok(s) => s,
        Err(code) => return code,
    };
    let super::load::Valid {
        workflow, commands, ..
    } = match super::load::valid_workflow(&args.workflow) {
        Ok(valid) => valid,
        Err(code) => return code,
    };
    if args.dry_run {
        return dry_run(&store, workflow, &commands, &args.inputs, args.concurrency);
    }
    let runners = Runners::new();
    match launch::start(
        &store,
        workflow,
        &commands,
        &args.inputs,
        &runners,
        args.worktree,
        args.agent.as_deref(),
    ) {
        Ok(prepared) => {
            let run = prepared.run.clone();
            let mut code = drive(prepared, runners, args.concurrency, args.json);
            // On a terminal, ask at the gates instead of exiting 3.
            let interactive = !args.no_input
                && !args.json
                && std::io::IsTerminal::is_terminal(&std::io::stdin())
                && std::io::IsTerminal::is_terminal(&std::io::stdout());
            while interactive
                && code == exit::WAITING_FOR_APPROVAL
                && super::answer::ask_inline(&run)
            {
                code = resume(ResumeArgs {
                    run: run.id.clone(),
                    from: None,
                    concurrency: args.concurrency,
                    json: false,
                });
            }
            code
        }
        Err(e) => fail(&e.message, e.code),
    }
}

/// Runs `reins resume`.
pub fn resume(args: ResumeArgs) -> i32 {
    let (store, run) = match resolve_run(&args.run) {
        Ok(found) => found,
        Err(code) => return code,
    };
    let runners = Runners::new();
    match launch::resume(&store, run, args.from.as_deref(), &runners) {
        Ok(Resumed::Ready(prepared)) => drive(*prepared, runners, args.concurrency, args.json),
        Ok(Resumed::AlreadySucceeded(run)) => {
            say!(
                "run {} already succeeded; nothing to do (`--from NODE` runs a node and what depends on it again)",
                run.id
            );
            exit::SUCCESS
        }
        Err(e) => fail(&e.message, e.code),
    }
}

/// The store of the working tree around the current directory.
pub(crate) fn current_store() -> Result<Store, i32> {
    match std::env::current_dir() {
        Ok(dir) => Ok(Store::discover(&dir)),
        Err(e) => Err(fail(
            &format!("cannot read the current directory: {e}"),
            exit::USAGE,
        )),
    }
}

/// The store of the current project and the run `run` names (an id prefix or `last`).
pub(crate) fn resolve_run(run: &str) -> Result<(Store, crate::store::RunDir), i32> {
    let store = current_store()?;
    match store.resolve(run) {
        Ok(found) => Ok((store, found)),
        Err(e) => Err(fail(&e.to_string(), exit::USAGE)),
    }
}

/// Prints an error and returns its exit code.
pub(crate) fn fail(message: &str, code: i32) -> i32 {
    eprintln!("error: {message}");
    code
}

/// Executes a prepared run with progress, signals and a summary; returns the exit code.
fn drive(prepared: Prepared, runners: Runners, concurrency: Option<u32>, json: bool) -> i32 {
    let view = View::detect(json);
    let mut options = Options::default();
    if let Some(c) = concurrency.or(prepared.plan.workflow.concurrency.as_ref().map(|c| c.value)) {
        options.concurrency = c as usize;
    }
    if let Some(d) = env_duration("REINS_RETRY_DELAY") {
        options.retry_delay = d;
    }
    if let Some(d) = env_duration("REINS_KILL_GRACE") {
        options.limits.grace = d;
    }
    let watchdog = match Watchdog::start() {
        Ok(w) => Some(Arc::new(w)),
        Err(e) => {
            eprintln!("warning: cannot start the watchdog ({e}); if reins is killed, grandchildren of running nodes may survive it");
            None
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            return fail(
                &format!("cannot start the async runtime: {e}"),
                exit::NODE_FAILED,
            )
        }
    };
    let run_dir = prepared.run.path.clone();
    let (canceller, _) = Canceller::new();
    let (observer, bar) = progress::observer(view);
    let report = runtime.block_on(async {
        // Register the handlers before anything runs, so no Ctrl-C is lost.
        let signals = [
            SignalKind::interrupt(),
            SignalKind::terminate(),
            SignalKind::hangup(),
        ]
        .map(signal);
        if let [Ok(a), Ok(b), Ok(c)] = signals {
            tokio::spawn(cancel_on_signals([a, b, c], canceller.clone(), bar.clone()));
        }
        prepared
            .execute(observer, runners, options, watchdog.clone(), canceller)
            .await
    });
    drop(runtime);
    drop(watchdog);
    if view != View::Json {
        let text = progress::summary(&report.state, report.status, &run_dir);
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }
    report.status.exit_code()
}

/// Ctrl-C (or TERM, or HUP): the first cancels gracefully, the next forces.
async fn cancel_on_signals(
    mut signals: [tokio::signal::unix::Signal; 3],
    canceller: Canceller,
    bar: Option<indicatif::ProgressBar>,
) {
    loop {
        let [a, b, c] = &mut signals;
        tokio::select! {
            _ = a.recv() => {}
            _ = b.recv() => {}
            _ = c.recv() => {}
        }
        let message = match canceller.escalate() {
            CancelLevel::Force => "forcing: killing running nodes now",
            _ => "cancelling: stopping running nodes (press Ctrl-C again to force)",
        };
        match &bar {
            Some(b) => b.println(message),
            None => eprintln!("{message}"),
        }
    }
}

fn env_duration(name: &str) -> Option<Duration> {
    let text = std::env::var(name).ok()?;
    match workflow::duration::parse(&text) {
        Ok(d) => Some(d),
        Err(e) => {
            eprintln!("warning: ignoring {name}: {e}");
            None
        }
    }
}

/// `reins run --dry-run`: renders what each node would run, in schedule order.
fn dry_run(
    store: &Store,
    workflow: workflow::Workflow,
    commands: &dyn validate::CommandLookup,
    given: &[(String, String)],
    concurrency: Option<u32>,
) -> i32 {
    let mut inputs = match resolve_inputs(&workflow, given) {
        Ok(i) => i,
        Err(_) => {
            // A dry run needs no inputs: a missing one is shown as `<inputs.NAME>`.
            let mut m = std::collections::BTreeMap::new();
            for (name, input) in workflow.inputs.iter() {
                let v = input
                    .default
                    .as_ref()
                    .map(|d| d.value.clone())
                    .unwrap_or_else(|| format!("<inputs.{}>", name.value));
                m.insert(name.value.clone(), v);
            }
            m
        }
    };
    for (k, v) in given {
        inputs.insert(k.clone(), v.clone());
    }
    let name = workflow.name.value.clone();
    let workflow_concurrency = workflow.concurrency.as_ref().map(|c| c.value);
    let plan = match Plan::new(workflow, commands) {
        Ok(p) => p,
        Err(e) => return fail(&e, exit::USAGE),
    };
    let info = RunInfo::new(
        "<run-id>".into(),
        name.clone(),
        store.root().to_path_buf(),
        store.run("<run-id>"),
        inputs,
    );
    // Nothing runs, so each upstream output is shown as `<output of ID>`.
    let stand_ins: Vec<NodeValue> = (0..plan.len())
        .map(|i| NodeValue::new(NodeStatus::Success, format!("<output of {}>", plan.id(i))))
        .collect();
    let concurrency = concurrency
        .or(workflow_concurrency)
        .map(|c| c.to_string())
        .unwrap_or_else(|| "number of CPUs".into());
    let mut out = String::new();
    out.push_str(&format!(
        "dry run of `{name}`: {} node{} in schedule order (concurrency {concurrency}); nothing runs\n",
        plan.len(),
        if plan.len() == 1 { "" } else { "s" }
    ));
    for (k, i) in plan.schedule_order().into_iter().enumerate() {
        let node = &plan.workflow.nodes[i];
        let upstream: Vec<(&str, &NodeValue)> = plan.ancestors[i]
            .iter()
            .map(|&a| (plan.id(a), &stand_ins[a]))
            .collect();
        let ctx = info.context(upstream);
        let deps: Vec<&str> = plan.dag.deps[i].iter().map(|&d| plan.id(d)).collect();
        out.push_str(&format!(
            "\n{}. {} [{}]",
            k + 1,
            plan.id(i),
            node.kind.name()
        ));
        if !deps.is_empty() {
            out.push_str(&format!(" after {}", deps.join(", ")));
        }
        out.push('\n');
        let show = |label: &str, r: Result<String, String>| {
            let text = r.unwrap_or_else(|e| format!("(rendered when it runs: {e})"));
            let mut s = String::new();
            let indent = " ".repeat(label.chars().count());
            for (n, line) in text.lines().enumerate() {
                let lead = if n == 0 { label } else { &indent };
                s.push_str(format!("   {lead} {line}").trim_end());
                s.push('\n');
            }
            if text.is_empty() {
                s.push_str(&format!("   {label}\n"));
            }
            s
        };
        if plan.has(i, Field::When) {
            out.push_str(&show("when:", plan.render(i, Field::When, &ctx)));
        }
        let label = match &node.kind {
            NodeKind::Bash(_) => "$",
            NodeKind::Approval(_) => "?",
            _ => ">",
        };
        let body = if node.kind.uses_agent() {
            crate::engine::agent::render_prompt(&plan, i, &ctx)
        } else {
            plan.render(i, Field::Body, &ctx)
        };
        out.push_str(&show(label, body));
        if plan.has(i, Field::Until) {
            out.push_str(&show("until:", plan.render(i, Field::Until, &ctx)));
        }
        if plan.has(i, Field::UntilBash) {
            out.push_str(&show(
                "until_bash: $",
                plan.render(i, Field::UntilBash, &ctx),
            ));
        }
    }
    let _ = std::io::stdout().write_all(out.as_bytes());
    exit::SUCCESS
}
