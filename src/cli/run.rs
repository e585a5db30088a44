//! `reins run` and `reins resume`.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};

use super::args::{ResumeArgs, RunArgs};
use super::common::{current_store, print, resolve_run, say};
use super::error::{self, Error, Outcome};
use super::progress::{self, View};
use crate::engine::agent_slots::AgentSlots;
use crate::engine::context::{NodeValue, RunInfo};
use crate::engine::launch::{self, resolve_inputs};
use crate::engine::{CancelLevel, Canceller, Options, Plan, Prepared, Resumed, Runners};
use crate::engine::{LaunchError, LaunchErrorKind};
use crate::process::Watchdog;
use crate::store::{NodeStatus, Store};
use crate::workflow::TemplateField;
use crate::workflow::{self, NodeKind};

/// Runs `reins run`.
pub(super) fn run(args: RunArgs) -> error::Result {
    let store = current_store()?;
    let super::load::Valid {
        workflow, commands, ..
    } = super::load::valid_workflow(&args.workflow)?;
    let inputs =
        with_value(&workflow, args.value.as_deref(), &args.inputs).map_err(Error::usage)?;
    if let Some(agent) = &args.agent {
        warn_ignored_on(&workflow, agent);
    }
    if args.dry_run {
        return dry_run(
            &store,
            workflow,
            &commands,
            &inputs,
            args.concurrency,
            args.agent.as_deref(),
        );
    }
    let json = args.wants_json();
    let runners = Runners::new();
    tracing::debug!(workflow = %workflow.name.value, path = %workflow.source.path.display(), "starting a run");
    let prepared = launch::start(
        &store,
        workflow,
        &commands,
        &inputs,
        &runners,
        args.worktree,
        args.base.as_deref(),
        args.agent.as_deref(),
    )
    .map_err(launch_error)?;
    let run = prepared.run.clone();
    // On a terminal, ask at the gates instead of exiting 3.
    let interactive = !args.no_input
        && !json
        && std::io::IsTerminal::is_terminal(&std::io::stdin())
        && std::io::IsTerminal::is_terminal(&std::io::stdout());
    let mut outcome = drive(
        prepared,
        runners,
        args.concurrency,
        args.max_agents,
        json,
        interactive,
    )?;
    while interactive && outcome == Outcome::Waiting {
        match super::answer::ask_inline(&run) {
            super::answer::Asked::Answered => {}
            super::answer::Asked::Interrupted => return Ok(Outcome::Cancelled),
            super::answer::Asked::Nothing => {
                print_summary(&run);
                return Ok(outcome);
            }
        }
        // `reins approve --resume` from another shell may have taken the run on.
        if let Some(owner) = crate::store::lock::live_owner(&run.lock_path()) {
            say!(
                "run {} continues in pid {} (follow it with `reins logs {} -f`)",
                run.id,
                owner.pid,
                run.id
            );
            return Ok(Outcome::Success);
        }
        outcome = resume_run(
            &run.id,
            args.concurrency,
            args.max_agents,
            false,
            interactive,
        )?;
    }
    Ok(outcome)
}

/// A run that could not start or resume: refused (exit 2) or a store failure (exit 4).
fn launch_error(e: LaunchError) -> Error {
    match e.kind {
        LaunchErrorKind::Refused => Error::usage(e.message),
        LaunchErrorKind::Io => Error::internal(e.message),
    }
}

/// The inputs of `reins run WORKFLOW VALUE`: VALUE fills the workflow's only required input
/// that `--input` did not give; without VALUE, the `--input` pairs as they are.
pub(crate) fn with_value(
    workflow: &workflow::Workflow,
    value: Option<&str>,
    given: &[(String, String)],
) -> Result<Vec<(String, String)>, String> {
    let mut inputs = given.to_vec();
    let Some(value) = value else {
        return Ok(inputs);
    };
    let open: Vec<&str> = workflow
        .inputs
        .iter()
        .filter(|(_, i)| i.default.is_none() && i.required.as_ref().is_some_and(|r| r.value))
        .map(|(name, _)| name.value.as_str())
        .filter(|name| !given.iter().any(|(g, _)| g == name))
        .collect();
    let name = &workflow.name.value;
    match open.as_slice() {
        [one] => {
            inputs.push((one.to_string(), value.to_string()));
            Ok(inputs)
        }
        [] => {
            let all: Vec<String> = workflow
                .inputs
                .names()
                .map(|n| format!("--input {n}=..."))
                .collect();
            Err(if all.is_empty() {
                format!("workflow `{name}` takes no inputs; leave out `{value}`")
            } else {
                format!(
                    "workflow `{name}` has no required input left for `{value}` to fill; name the input: {}",
                    all.join(", ")
                )
            })
        }
        many => Err(format!(
            "workflow `{name}` has {} required inputs, so `{value}` cannot say which one it is; pass {}",
            many.len(),
            many.iter()
                .map(|n| format!("--input {n}=..."))
                .collect::<Vec<_>>()
                .join(" ")
        )),
    }
}

/// Prints the summary of a run as its log has it now.
fn print_summary(run: &crate::store::RunDir) {
    if let Ok(state) = launch::read_state(run) {
        let status = state.status_given(run.is_live());
        let text = progress::summary(&state, status, &run.path);
        let _ = std::io::stdout().write_all(text.as_bytes());
    }
}

/// Runs `reins resume`.
pub(super) fn resume(args: ResumeArgs) -> error::Result {
    let (store, run) = resolve_run(&args.run)?;
    let json = args.wants_json();
    let runners = Runners::new();
    match launch::resume(&store, run, args.from.as_deref(), &runners).map_err(launch_error)? {
        Resumed::Ready(prepared) => {
            say_changed(&prepared);
            drive(
                *prepared,
                runners,
                args.concurrency,
                args.max_agents,
                json,
                false,
            )
        }
        Resumed::AlreadySucceeded(run) => {
            say!(
                "run {} already succeeded; nothing to do (`--from NODE` runs a node and what depends on it again)",
                run.id
            );
            Ok(Outcome::Success)
        }
    }
}

/// Says so when the workflow (or a command file) changed since the run started: a resume runs
/// the frozen version, and a new run the changed one.
fn say_changed(prepared: &Prepared) {
    let Some(first) = prepared.changed.first() else {
        return;
    };
    let files: Vec<String> = prepared
        .changed
        .iter()
        .map(|p| format!("{}", p.display()))
        .collect();
    let workflow = &prepared.manifest.workflow;
    eprintln!(
        "note: {} changed since run {} started; resuming runs the workflow as it was then (frozen in run.json). To run the changed {}, start a new run: `reins run {workflow}`",
        files.join(", "),
        prepared.run.id,
        if *first == prepared.manifest.workflow_path { "workflow" } else { "files" },
    );
}

/// Resumes a run by id (after an answer given at the terminal or with `approve --resume`).
pub(crate) fn resume_run(
    id: &str,
    concurrency: Option<u32>,
    max_agents: Option<u32>,
    json: bool,
    interactive: bool,
) -> error::Result {
    let (store, run) = resolve_run(id)?;
    let runners = Runners::new();
    match launch::resume(&store, run, None, &runners).map_err(launch_error)? {
        Resumed::Ready(prepared) => drive(
            *prepared,
            runners,
            concurrency,
            max_agents,
            json,
            interactive,
        ),
        Resumed::AlreadySucceeded(run) => {
            say!("run {} already succeeded; nothing to do", run.id);
            Ok(Outcome::Success)
        }
    }
}

/// Executes a prepared run with progress, signals and a summary; returns the exit code. With
/// `ask_next` (the gates are asked on the terminal next) a run that pauses prints no summary:
/// the prompt follows, and the summary comes once at the end.
fn drive(
    prepared: Prepared,
    runners: Runners,
    concurrency: Option<u32>,
    max_agents: Option<u32>,
    json: bool,
    ask_next: bool,
) -> error::Result {
    let view = View::detect(json);
    let mut options = Options::default();
    let config = crate::engine::agent_slots::config_path();
    match crate::engine::agent_slots::resolve_max(
        max_agents,
        |k| std::env::var(k).ok(),
        config.as_deref(),
    ) {
        Ok((max, _)) => options.limits.agent_slots = AgentSlots::for_user(max),
        Err(e) => return Err(Error::usage(e.to_string())),
    }
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
        Err(e) => return Err(Error::io("cannot start the async runtime", e)),
    };
    let run_dir = prepared.run.path.clone();
    let (canceller, _) = Canceller::new();
    let (observer, bar) = progress::observer(view, &run_dir);
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
    // A blocking task still running (a listing of items stuck on a FIFO, say) must not keep
    // reins from exiting: the run has ended and recorded so.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    drop(watchdog);
    let paused = report.status == crate::store::RunStatus::Waiting;
    if view != View::Json && !(ask_next && paused) {
        let text = progress::summary(&report.state, report.status, &run_dir);
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }
    Ok(Outcome::of_run(report.status))
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

/// `reins run --agent NAME`: warns, as `validate` does for a workflow that names Codex
/// itself, about the settings the workflow gives that the switched-to agent ignores.
fn warn_ignored_on(workflow: &workflow::Workflow, agent: &str) {
    let mut switched = workflow.clone();
    if crate::engine::agent::switch_default_agent(&mut switched, agent).is_err() {
        return; // refused with its message where the run starts
    }
    let before = crate::workflow::validate::ignored_by_codex(workflow, &workflow.source);
    let new: Vec<_> = crate::workflow::validate::ignored_by_codex(&switched, &workflow.source)
        .into_iter()
        .filter(|d| !before.iter().any(|b| b.message == d.message))
        .collect();
    if !new.is_empty() {
        let color = super::use_color(std::io::stderr().is_terminal());
        let text = crate::diagnostic::render_all(&new, crate::diagnostic::Format::Human, color);
        let _ = std::io::stderr().write_all(text.as_bytes());
    }
}

/// `reins run --dry-run`: renders what each node would run, in schedule order, and on which
/// agent (`--agent` switches the default agent as it does for a real run).
fn dry_run(
    store: &Store,
    mut workflow: workflow::Workflow,
    commands: &dyn crate::workflow::command_file::CommandLookup,
    given: &[(String, String)],
    concurrency: Option<u32>,
    agent: Option<&str>,
) -> error::Result {
    if let Some(agent) = agent {
        crate::engine::agent::switch_default_agent(&mut workflow, agent)
            .map_err(|e| Error::usage(e.to_string()))?;
    }
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
    let plan = Plan::new(workflow, commands).map_err(|e| Error::usage(e.to_string()))?;
    let info = RunInfo::new(
        "<run-id>".into(),
        name.clone(),
        store.root().to_path_buf(),
        store.run("<run-id>"),
        inputs,
    );
    // Nothing runs, so each upstream output is shown as `<output of ID>`.
    let stand_ins: Vec<NodeValue> = (0..plan.len())
        .map(|i| {
            let mut v = NodeValue::new(NodeStatus::Success, format!("<output of {}>", plan.id(i)));
            if plan.workflow.nodes[i].fans_out() {
                v.outputs = Some(format!("<outputs of {}>", plan.id(i)).into());
            }
            if let NodeKind::Workflow(_) = &plan.workflow.nodes[i].kind {
                v.artifacts = Some(format!("<artifacts of {}>", plan.id(i)).into());
            }
            v
        })
        .collect();
    let concurrency = concurrency
        .or(workflow_concurrency)
        .map(|c| c.to_string())
        .unwrap_or_else(|| {
            format!(
                "every ready node, up to {}",
                crate::engine::scheduler::DEFAULT_CONCURRENCY
            )
        });
    let mut out = String::new();
    out.push_str(&format!(
        "dry run of `{name}`: {} node{} in schedule order (concurrency {concurrency}); nothing runs\n",
        plan.len(),
        if plan.len() == 1 { "" } else { "s" }
    ));
    for (k, i) in plan.schedule_order().into_iter().enumerate() {
        let node = &plan.workflow.nodes[i];
        let upstream: Vec<(&str, &NodeValue)> = plan
            .ancestors
            .of(i)
            .map(|a| (plan.id(a), &stand_ins[a]))
            .collect();
        let mut ctx = info.context(upstream);
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
        if node.fans_out() {
            let (text, first) = dry_fan_out(&plan, i, &ctx, store.root());
            out.push_str(&show("for each:", Ok(text)));
            if let Some((item, index, id)) = first {
                out.push_str(&format!("   (as {id}, the first instance, runs it)\n"));
                ctx = crate::engine::fanout::with_item(ctx, &item, index);
            }
        }
        if plan.has(i, TemplateField::When) {
            if plan.when_depends_on_run(i) {
                // Stand-in outputs and statuses would make it look decided: it is not.
                let text = node.when.as_ref().map(|w| w.value.trim()).unwrap_or("");
                out.push_str(&show("when:", Ok(format!("decided at run time ({text})"))));
            } else {
                out.push_str(&show(
                    "when:",
                    plan.render(i, TemplateField::When, &ctx)
                        .map_err(String::from),
                ));
            }
        }
        if let NodeKind::Workflow(name) = &node.kind {
            let isolated = node
                .isolation
                .as_ref()
                .is_some_and(|i| i.value == workflow::Isolation::Worktree);
            out.push_str(&format!(
                "   runs workflow `{}` as a child run{}\n",
                name.value,
                if isolated {
                    " in a worktree of its own"
                } else {
                    ""
                }
            ));
            for (input, _) in node.inputs.iter() {
                let label = format!("inputs.{}:", input.value);
                out.push_str(&show(
                    &label,
                    plan.render(i, TemplateField::Input(&input.value), &ctx)
                        .map_err(String::from),
                ));
            }
            continue;
        }
        let label = match &node.kind {
            NodeKind::Bash(_) => "$",
            NodeKind::Approval(_) => "?",
            _ => ">",
        };
        if node.kind.uses_agent() {
            let profile = crate::engine::agent::profile_name(&plan.workflow, node);
            let harness = crate::engine::agent::resolve_profile(&plan.workflow, profile).harness;
            out.push_str(&format!("   agent: {profile} ({})\n", harness.name()));
        }
        let body = if node.kind.uses_agent() {
            crate::engine::agent::render_prompt(&plan, i, &ctx).map_err(|e| e.to_string())
        } else {
            plan.render(i, TemplateField::Body, &ctx)
                .map_err(String::from)
        };
        out.push_str(&show(label, body));
        if plan.mode(i, TemplateField::Body) == crate::workflow::template::Mode::Shell {
            out.push_str(&script_values(&plan, i, TemplateField::Body, &ctx));
        }
        if plan.has(i, TemplateField::Until) {
            out.push_str(&show(
                "until:",
                plan.render(i, TemplateField::Until, &ctx)
                    .map_err(String::from),
            ));
        }
        if plan.has(i, TemplateField::UntilBash) {
            out.push_str(&show(
                "until_bash: $",
                plan.render(i, TemplateField::UntilBash, &ctx)
                    .map_err(String::from),
            ));
            out.push_str(&script_values(&plan, i, TemplateField::UntilBash, &ctx));
        }
    }
    print(&out)?;
    Ok(Outcome::Success)
}

/// A fan-out in `--dry-run`: its instances (a list, a template of inputs, the files its globs
/// match now; at most eight named), or that they are known at run time; and its first item.
#[allow(clippy::type_complexity)]
fn dry_fan_out(
    plan: &Plan,
    i: usize,
    ctx: &serde_json::Value,
    root: &std::path::Path,
) -> (String, Option<(serde_json::Value, usize, String)>) {
    use crate::engine::fanout;
    use crate::workflow::ForEach;
    if let Some(ForEach::Template(t)) = &plan.workflow.nodes[i].for_each {
        if t.value.contains("nodes.") {
            return (
                format!("the items of `{}`, known at run time", t.value.trim()),
                None,
            );
        }
    }
    let keyed = fanout::expand(plan, i, ctx, root);
    let items = match keyed {
        Ok(items) => items,
        Err(e) => return (format!("(the fan-out would fail: {e})"), None),
    };
    let id = plan.id(i);
    let mut names: Vec<String> = items
        .iter()
        .take(crate::cli::progress::SHOWN_INSTANCES)
        .map(|item| {
            let value = fanout::item_text(&item.value);
            let value: String = value.chars().take(40).collect();
            format!("{} = {value}", fanout::instance_id(id, &item.key))
        })
        .collect();
    if items.len() > names.len() {
        names.push(format!("and {} more", items.len() - names.len()));
    }
    let text = format!(
        "{} instance{}{}{}",
        items.len(),
        if items.len() == 1 { "" } else { "s" },
        if names.is_empty() { "" } else { "\n" },
        names.join("\n")
    );
    let first = items
        .first()
        .map(|item| (item.value.clone(), 0, fanout::instance_id(id, &item.key)));
    (text, first)
}

/// The values a bash script reads, one a line beside it in `--dry-run`: each variable with
/// its value shell-quoted (long values shortened).
fn script_values(plan: &Plan, i: usize, field: TemplateField, ctx: &serde_json::Value) -> String {
    let Ok(script) = plan.render_script(i, field, ctx) else {
        return String::new();
    };
    let mut s = String::new();
    for (name, value) in &script.values {
        let shown: String = value.chars().take(200).collect();
        let more = if shown.len() < value.len() {
            format!(" ({} bytes in all)", value.len())
        } else {
            String::new()
        };
        let quoted = crate::workflow::template::shell_quote(&shown);
        s.push_str(&format!("     {name}={quoted}{more}\n"));
    }
    s
}
