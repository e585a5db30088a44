//! The agent runner: `prompt` and `command` nodes (and agent loop bodies) run on an agent
//! profile, through [`crate::agent::run`].
//!
//! * The profile is the node's `agent`, else `defaults.agent`, else `claude`, with its `use:`
//!   chain merged ([`resolve_profile`]); the node's `model`, `allowed_tools` and `max_turns`
//!   apply on top, and `defaults.model` when nothing else names a model.
//! * The prompt is the node's `prompt:` rendered in plain mode, or the command file's body
//!   (frontmatter stripped) rendered with `{{args.NAME}}`: the node's `args:` rendered, the
//!   frontmatter's defaults for the rest.
//! * A fresh session gets a new id for each attempt. A sticky session (`session: NAME`)
//!   continues the conversation recorded under its name (`--resume`), or starts it; two
//!   attempts of one sticky session never run at once ([`SessionLocks`]). The id is recorded
//!   (`agent_session`) before the agent starts, so a run killed mid-turn resumes it.
//! * The agent may always use the run's artifacts folder (`--add-dir`); the node's `outputs`
//!   must exist there afterwards.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value as Json};
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use super::budget;
use super::cancel::CancelLevel;
use super::plan::Plan;
use super::runner::{BoxFuture, Job, NodeRunner, Outcome, SessionChoice};
use crate::agent::HarnessKind;
use crate::agent::{self, AgentInvocation, AgentOutcome, SessionEvent, SessionMode, Verdict};
use crate::store::{Event, Usage};
use crate::workflow::template::{Mode, RenderError};
use crate::workflow::TemplateField;
use crate::workflow::{LoopBody, Node, NodeKind, Workflow};
use crate::workflow::{BUILTIN_AGENT, BUILTIN_AGENTS};

/// Runs `prompt` and `command` nodes.
pub(crate) struct AgentRunner;

impl NodeRunner for AgentRunner {
    fn run(&self, job: Job) -> BoxFuture<Outcome> {
        Box::pin(run(job))
    }
}

/// One async lock per sticky session name, shared by every node of a run.
#[derive(Debug, Clone, Default)]
pub struct SessionLocks {
    locks: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

impl SessionLocks {
    /// The lock of a session. Waiters get it first come, first served: in the order the
    /// scheduler started them, which respects dependencies.
    pub fn get(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry(name.to_string()).or_default().clone()
    }
}

/// An agent profile with its `use:` chain merged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Profile {
    /// The CLI: the harness of the built-in profile the chain ends at (`claude`, `codex`).
    pub harness: HarnessKind,
    /// Codex's sandbox (`read-only`, `workspace-write`, `danger-full-access`, `none`).
    pub sandbox: Option<String>,
    /// The agent CLI (`claude` when no profile of the chain sets one).
    pub program: Option<String>,
    /// `--model`.
    pub model: Option<String>,
    /// `--permission-mode`.
    pub permission_mode: Option<String>,
    /// `--allowedTools`, base profile's first.
    pub allowed_tools: Vec<String>,
    /// `--disallowedTools`, base profile's first.
    pub disallowed_tools: Vec<String>,
    /// `--max-turns`.
    pub max_turns: Option<u32>,
    /// Extra arguments, base profile's first.
    pub args: Vec<String>,
    /// Environment variables as templates, base profile's first.
    pub env: Vec<(String, String)>,
    /// The agent may run `reins` and write run state (`allow_control_plane: true`).
    pub allow_control_plane: bool,
}

/// Merges the profile `name` with the profiles it `use`s, down to the built-in `claude`: a
/// later (more specific) profile overrides `program`, `model`, `permission_mode` and
/// `max_turns`; tool lists, `args` and `env` add up, the base's first. A profile of the
/// workflow named `claude` refines the built-in one.
pub(crate) fn resolve_profile(wf: &Workflow, name: &str) -> Profile {
    let mut chain = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    let mut current = name;
    while let Some(profile) = wf.agents.get(current) {
        if seen.contains(&current) {
            break; // a loop of `use:`; `validate` reports it
        }
        seen.push(current);
        chain.push(profile);
        match &profile.uses {
            Some(base) => current = &base.value,
            None => break,
        }
    }
    // The chain ends at a built-in profile: refined by the workflow (a profile named
    // `codex` with no `use:`), or reached by `use:`; a profile using nothing is Claude's.
    let mut out = Profile {
        harness: HarnessKind::from_profile(current).unwrap_or_default(),
        ..Profile::default()
    };
    for p in chain.iter().rev() {
        let value =
            |s: &Option<crate::source::Spanned<String>>| s.as_ref().map(|s| s.value.clone());
        out.program = value(&p.program).or(out.program);
        out.model = value(&p.model).or(out.model);
        out.permission_mode = value(&p.permission_mode).or(out.permission_mode);
        out.sandbox = value(&p.sandbox).or(out.sandbox);
        out.max_turns = p.max_turns.as_ref().map(|m| m.value).or(out.max_turns);
        if let Some(allow) = &p.allow_control_plane {
            out.allow_control_plane = allow.value;
        }
        let list = |l: &[crate::source::Spanned<String>]| {
            l.iter().map(|s| s.value.clone()).collect::<Vec<_>>()
        };
        out.allowed_tools.extend(list(&p.allowed_tools));
        out.disallowed_tools.extend(list(&p.disallowed_tools));
        out.args.extend(list(&p.args));
        out.env.extend(
            p.env
                .iter()
                .map(|(k, v)| (k.value.clone(), v.value.clone())),
        );
    }
    out
}

/// `--agent NAME` names neither a built-in agent nor a profile of the workflow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown agent `{agent}` for --agent; use one of {}",
    known.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
)]
pub struct UnknownAgent {
    /// The name given.
    pub agent: String,
    /// The names that would do: the built-in agents, then the workflow's profiles.
    pub known: Vec<String>,
}

/// Makes `agent` the run's default agent (`reins run WF --agent NAME`): nodes without an
/// `agent` of their own run on it, and so do profiles that `use:` the workflow's default
/// (`defaults.agent`, else `claude`). Fails on a name that is neither built in nor a profile.
pub(crate) fn switch_default_agent(wf: &mut Workflow, agent: &str) -> Result<(), UnknownAgent> {
    let known = BUILTIN_AGENTS.contains(&agent) || wf.agents.get(agent).is_some();
    if !known {
        return Err(UnknownAgent {
            agent: agent.into(),
            known: BUILTIN_AGENTS
                .iter()
                .copied()
                .chain(wf.agents.names().filter(|n| !BUILTIN_AGENTS.contains(n)))
                .map(String::from)
                .collect(),
        });
    }
    let old = wf
        .defaults
        .agent
        .as_ref()
        .map(|a| a.value.clone())
        .unwrap_or_else(|| BUILTIN_AGENT.to_string());
    if old == agent {
        return Ok(());
    }
    let span = wf
        .defaults
        .agent
        .as_ref()
        .map(|a| a.span)
        .unwrap_or_default();
    wf.defaults.agent = Some(crate::source::Spanned::new(agent.to_string(), span));
    for (name, profile) in wf.agents.0.iter_mut() {
        if name.value == agent {
            continue; // never make the new default use itself
        }
        let uses_old = match &profile.uses {
            Some(base) => base.value == old,
            // A profile with no `use:` extends `claude` implicitly, unless it is a built-in.
            None => old == BUILTIN_AGENT && !BUILTIN_AGENTS.contains(&name.value.as_str()),
        };
        if uses_old {
            let span = profile.uses.as_ref().map(|u| u.span).unwrap_or(name.span);
            profile.uses = Some(crate::source::Spanned::new(agent.to_string(), span));
        }
    }
    Ok(())
}

/// The profile name a node runs on: its `agent`, else `defaults.agent`, else `claude`.
pub(crate) fn profile_name<'a>(wf: &'a Workflow, node: &'a Node) -> &'a str {
    node.agent
        .as_ref()
        .or(wf.defaults.agent.as_ref())
        .map(|a| a.value.as_str())
        .unwrap_or(BUILTIN_AGENT)
}

async fn run(job: Job) -> Outcome {
    let mut inv = match invocation(&job) {
        Ok(inv) => inv,
        Err(e) => return Outcome::fatal(e.to_string()),
    };
    let wf = &job.plan.workflow;
    let budgets = (wf.nodes[job.index].budget.as_ref(), wf.budget.as_ref());
    let spent = job
        .recorder
        .with_state(|s| job.run.ledger.spent(s, &job.node));
    if let Some(why) = budget::check_before(budgets.0, budgets.1, &job.node, spent) {
        return Outcome::Failure {
            error: why,
            exit_code: None,
            output: String::new(),
            usage: None,
            retryable: false,
        };
    }
    if inv.harness == HarnessKind::Claude {
        inv.max_budget_usd = budget::dollars_left(budgets.0, budgets.1, spent);
    }
    // A sticky session is held for the whole attempt.
    let _held = match &job.session {
        SessionChoice::Fresh => None,
        SessionChoice::Sticky(name) => {
            let lock = job.run.session_locks.get(name);
            tokio::select! {
                held = lock.lock_owned() => Some(held),
                _ = job.cancel.at_least(CancelLevel::Graceful) => return Outcome::Cancelled,
            }
        }
    };
    // One of the machine-wide agent slots is held for the whole attempt too.
    let _slot = match super::agent_slots::hold(&job).await {
        Ok(slot) => slot,
        Err(outcome) => return outcome,
    };
    inv.session = choose_session(&job);
    let harness = inv.harness.harness();
    match inv.session {
        // Codex names a new thread itself: it is recorded when it arrives (see `drive`).
        SessionMode::New(_) if !harness.chooses_session_id() => {}
        session => record_session(&job, &session.id().to_string(), None),
    }
    if let SessionMode::Resume(id) = inv.session {
        inv.thread_usage = job
            .recorder
            .with_state(|s| s.thread_usage.get(&id.to_string()).copied())
            .map(|u| crate::agent::events::TokenUsage {
                input_tokens: u.input_tokens,
                output_tokens: u.output_tokens,
                cache_creation_input_tokens: u.cache_creation_input_tokens,
                cache_read_input_tokens: u.cache_read_input_tokens,
            });
    }
    let Some(outcome) = drive(&job, inv).await else {
        return Outcome::Cancelled;
    };
    if let Some(total) = outcome.thread_usage {
        let total = Usage {
            input_tokens: total.input_tokens,
            output_tokens: total.output_tokens,
            cache_read_input_tokens: total.cache_read_input_tokens,
            cache_creation_input_tokens: total.cache_creation_input_tokens,
            ..Usage::default()
        };
        record_session(&job, &outcome.session.id().to_string(), Some(total));
    }
    let mut result = judge(outcome);
    // Count the turn, then hold it against the budgets.
    let used = match &result {
        Outcome::Success { usage, .. } | Outcome::Failure { usage, .. } => *usage,
        _ => None,
    };
    if let Some(used) = used {
        let spent = job
            .recorder
            .with_state(|s| job.run.ledger.add(s, &job.node, &used));
        if let Some(why) = budget::check_after(budgets.0, budgets.1, &job.node, spent) {
            result = match result {
                Outcome::Success { output, usage } => Outcome::Failure {
                    error: why,
                    exit_code: None,
                    output,
                    usage,
                    retryable: false,
                },
                Outcome::Failure {
                    output,
                    usage,
                    exit_code,
                    ..
                } => Outcome::Failure {
                    error: why,
                    exit_code,
                    output,
                    usage,
                    retryable: false,
                },
                other => other,
            };
        }
    }
    result
}

/// Records the conversation a node runs in (and, for Codex, the thread's running totals).
fn record_session(job: &Job, session_id: &str, thread_usage: Option<crate::store::Usage>) {
    job.recorder.record(Event::AgentSession {
        node: job.node.clone(),
        session: job.session.name().to_string(),
        session_id: session_id.to_string(),
        thread_usage,
    });
}

/// A new id for a fresh session; for a sticky one the id recorded under its name (the
/// latest event wins), to resume, or a new one.
fn choose_session(job: &Job) -> SessionMode {
    let SessionChoice::Sticky(name) = &job.session else {
        return SessionMode::New(Uuid::new_v4());
    };
    let known = job
        .recorder
        .with_state(|s| s.sessions.get(name).cloned())
        .or_else(|| job.sessions.get(name).cloned())
        .and_then(|id| Uuid::parse_str(&id).ok());
    match known {
        Some(id) => SessionMode::Resume(id),
        None => SessionMode::New(Uuid::new_v4()),
    }
}

/// Runs the agent (its process group registers itself with the watchdog), passes
/// cancellation on (graceful: TERM then KILL; forced: KILL now). `None` when a forced cancel
/// cut it short.
async fn drive(job: &Job, inv: AgentInvocation) -> Option<AgentOutcome> {
    let (cancel_tx, cancel_rx) = watch::channel(false);
    let names_sessions = inv.harness.harness().chooses_session_id();
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let mut retries = super::api_retry::RetryReporter::new(&inv.env);
    let run = agent::run(inv, Some(events_tx), cancel_rx);
    tokio::pin!(run);
    let mut stopping = false;
    loop {
        tokio::select! {
            outcome = &mut run => return Some(outcome),
            Some(event) = events.recv() => {
                match event {
                    SessionEvent::Agent(agent::AgentEvent::ApiRetry(retry)) => {
                        retries.report(job, &retry).await;
                    }
                    // Recorded before the turn goes on, so a crash continues this thread.
                    SessionEvent::SessionStarted(id) if !names_sessions => {
                        record_session(job, &id, None);
                    }
                    _ => {}
                }
            }
            _ = job.cancel.at_least(CancelLevel::Graceful), if !stopping => {
                stopping = true;
                let _ = cancel_tx.send(true);
            }
            _ = job.cancel.at_least(CancelLevel::Force), if stopping => return None,
        }
    }
}

/// The node's outcome from the agent's.
fn judge(o: AgentOutcome) -> Outcome {
    let usage = Usage {
        cost_usd: o.cost_usd,
        input_tokens: o.usage.input_tokens,
        output_tokens: o.usage.output_tokens,
        cache_read_input_tokens: o.usage.cache_read_input_tokens,
        cache_creation_input_tokens: o.usage.cache_creation_input_tokens,
        turns: u32::try_from(o.turns).unwrap_or(u32::MAX),
        duration_ms: u64::try_from(o.duration.as_millis()).unwrap_or(u64::MAX),
        unpriced: !o.priced && (o.usage != Default::default() || o.turns > 0),
    };
    let output = o.result_text.unwrap_or_default();
    match o.verdict {
        Verdict::Succeeded => Outcome::Success {
            output,
            usage: Some(usage),
        },
        Verdict::Cancelled => Outcome::Cancelled,
        Verdict::Failed(failure) => Outcome::Failure {
            error: failure.message,
            exit_code: o.exit.and_then(|e| e.code()),
            output,
            usage: Some(usage),
            retryable: failure.transient,
        },
    }
}

/// Why an agent node's prompt, or its profile's environment, could not be rendered.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PromptError {
    /// The `prompt:` (or the body of a `command:` without a command file).
    #[error("cannot render the prompt: {0}")]
    Prompt(#[source] RenderError),
    /// One of the node's `args:`.
    #[error("cannot render `args.{name}`: {source}")]
    Arg {
        /// The argument's name.
        name: String,
        /// Why.
        source: RenderError,
    },
    /// The body of a command file.
    #[error("cannot render command `{command}`: {source}")]
    Command {
        /// The command's name.
        command: String,
        /// Why.
        source: RenderError,
    },
    /// A value of the agent profile's `env:`.
    #[error("cannot render the agent profile's `env.{name}`: {source}")]
    ProfileEnv {
        /// The variable's name.
        name: String,
        /// Why.
        source: RenderError,
    },
}

/// Everything but the session: profile, prompt, environment, limits, outputs.
fn invocation(job: &Job) -> Result<AgentInvocation, PromptError> {
    let wf = &job.plan.workflow;
    let node = &wf.nodes[job.index];
    let profile = resolve_profile(wf, profile_name(wf, node));
    let prompt = render_prompt(&job.plan, job.index, &job.context)?;
    let program = profile
        .program
        .clone()
        .unwrap_or_else(|| profile.harness.name().into());
    let program = if Path::new(&program).components().count() > 1 {
        job.run.root.join(program) // relative paths start at the repository root
    } else {
        PathBuf::from(program)
    };
    let mut inv = AgentInvocation::new(
        program,
        prompt,
        SessionMode::New(Uuid::nil()),
        &job.cwd,
        &job.dir,
    );
    inv.harness = profile.harness;
    inv.sandbox = profile.sandbox;
    let value = |s: &Option<crate::source::Spanned<String>>| s.as_ref().map(|s| s.value.clone());
    inv.model = value(&node.model)
        .or(profile.model)
        .or(value(&wf.defaults.model));
    inv.permission_mode = profile.permission_mode;
    inv.allowed_tools = profile.allowed_tools;
    inv.allowed_tools
        .extend(node.allowed_tools.iter().map(|t| t.value.clone()));
    inv.disallowed_tools = profile.disallowed_tools;
    inv.max_turns = node
        .max_turns
        .as_ref()
        .map(|m| m.value)
        .or(profile.max_turns);
    inv.extra_args = profile.args;
    if !profile.allow_control_plane {
        inv.control_plane = job
            .run
            .dir
            .path
            .parent()
            .and_then(Path::parent)
            .map(Path::to_path_buf);
    }
    let artifacts = job.run.artifacts();
    inv.add_dirs = vec![artifacts.clone()];
    inv.env = job.env.clone();
    for (name, template) in &profile.env {
        let value = job
            .plan
            .renderer()
            .render_text(template, Mode::Plain, &job.context)
            .map_err(|source| PromptError::ProfileEnv {
                name: name.clone(),
                source,
            })?;
        inv.env.push((name.clone(), value));
    }
    if let Some(idle) = node
        .idle_timeout
        .as_ref()
        .or(wf.defaults.idle_timeout.as_ref())
    {
        inv.idle_timeout = Some(idle.value);
    }
    inv.wall_timeout = job.timeout;
    inv.grace = job.limits.grace;
    inv.watchdog = job.watchdog.clone();
    inv.required_outputs = node
        .outputs
        .iter()
        .map(|o| artifacts.join(&o.value))
        .collect();
    Ok(inv)
}

/// The rendered prompt of node `i`: `prompt:`, or the command file's body (frontmatter
/// stripped) with `{{args.NAME}}`: the node's `args:` rendered, the frontmatter's defaults for
/// the rest. Also what `reins run --dry-run` shows.
pub(crate) fn render_prompt(plan: &Plan, i: usize, context: &Json) -> Result<String, PromptError> {
    let node = &plan.workflow.nodes[i];
    let command = match &node.kind {
        NodeKind::Command(name) => Some(&name.value),
        NodeKind::Loop(l) => match &l.body {
            LoopBody::Command(name) => Some(&name.value),
            _ => None,
        },
        _ => None,
    };
    let Some(command) = command else {
        return plan
            .render(i, TemplateField::Body, context)
            .map_err(PromptError::Prompt);
    };
    let mut args = Map::new();
    if let Some(file) = plan.commands.get(command) {
        for arg in &file.args {
            let default = arg.default.as_ref().map(|d| d.value.clone());
            args.insert(
                arg.name.value.clone(),
                Json::String(default.unwrap_or_default()),
            );
        }
    }
    for (name, _) in node.args.iter() {
        let value = plan
            .render(i, TemplateField::Arg(&name.value), context)
            .map_err(|source| PromptError::Arg {
                name: name.value.clone(),
                source,
            })?;
        args.insert(name.value.clone(), Json::String(value));
    }
    let mut context = context.clone();
    if let Some(map) = context.as_object_mut() {
        map.insert("args".into(), Json::Object(args));
    }
    plan.render(i, TemplateField::Body, &context)
        .map_err(|source| PromptError::Command {
            command: command.clone(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SourceFile;
    use crate::workflow::load_source;

    fn workflow(yaml: &str) -> Workflow {
        load_source(SourceFile::new("t.yaml", yaml))
            .workflow
            .unwrap()
    }

    #[test]
    fn profiles_merge_along_their_use_chain() {
        let wf = workflow(
            "agents:
  base: {model: sonnet, permission_mode: acceptEdits, allowed_tools: [Read], args: [--bare], env: {A: a}}
  reviewer: {use: base, model: opus, allowed_tools: [Grep], max_turns: 3, env: {B: b}}
defaults: {agent: reviewer}
nodes:
  - {id: x, prompt: hi}
",
        );
        let p = resolve_profile(&wf, profile_name(&wf, &wf.nodes[0]));
        assert_eq!(p.model.as_deref(), Some("opus"));
        assert_eq!(p.permission_mode.as_deref(), Some("acceptEdits"));
        assert_eq!(p.allowed_tools, ["Read", "Grep"]);
        assert_eq!(p.max_turns, Some(3));
        assert_eq!(p.args, ["--bare"]);
        assert_eq!(
            p.env,
            [("A".to_string(), "a".to_string()), ("B".into(), "b".into())]
        );
        assert_eq!(p.program, None);
        assert_eq!(resolve_profile(&wf, "claude"), Profile::default());
    }

    #[test]
    fn a_workflow_profile_named_claude_refines_the_built_in_one() {
        let wf = workflow(
            "agents:
  claude: {program: /opt/claude}
  fast: {use: claude, model: haiku}
nodes:
  - {id: x, prompt: hi, agent: fast}
",
        );
        let p = resolve_profile(&wf, profile_name(&wf, &wf.nodes[0]));
        assert_eq!(p.program.as_deref(), Some("/opt/claude"));
        assert_eq!(p.model.as_deref(), Some("haiku"));
    }
}
