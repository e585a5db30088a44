//! [`Plan`]: a validated workflow made ready to execute, once per run.
//!
//! Every template of the workflow is compiled here, once, into one [`Renderer`] (bash scripts
//! in [`Mode::Shell`], rendered by reference, everything else in [`Mode::Plain`]); command files are resolved; each
//! node's effective settings (timeout, retries, shell...) are computed with the workflow's
//! `defaults:` applied; and each node gets its scheduling priority, the weight of the longest
//! chain of work behind it (critical path first).

use std::collections::{BTreeMap, BinaryHeap};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value as Json;

use crate::graph::{Ancestors, Dag, DEFAULT_WEIGHT};
use crate::source::SourceFile;
use crate::workflow::command_file::{CommandFile, CommandLookup};
use crate::workflow::template::{Mode, RenderError, Renderer, Script};
use crate::workflow::{Node, TemplateField, Trigger, Workflow};

/// A node's settings with the workflow's defaults applied.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Wall-clock limit of one attempt.
    pub timeout: Option<Duration>,
    /// Extra attempts after a failure.
    pub retries: u32,
    /// The shell command line bash scripts run with (`-c SCRIPT` is appended).
    pub shell: Vec<String>,
    /// A failure does not fail the run.
    pub continue_on_error: bool,
    /// The trigger rule.
    pub trigger: Trigger,
}

/// A workflow ready to execute.
pub struct Plan {
    /// The workflow.
    pub workflow: Workflow,
    /// Its dependency graph.
    pub dag: Dag,
    /// Settings per node, by index.
    pub settings: Vec<Settings>,
    /// Per node: the weight of the heaviest chain from it to the end (itself included).
    pub priority: Vec<Duration>,
    /// Per node: every node it depends on, directly or not.
    pub ancestors: Ancestors,
    /// The command files used by `command:` nodes, by command name (those of the workflows
    /// its `workflow:` nodes run too, all the way down).
    pub commands: BTreeMap<String, CommandFile>,
    /// The workflows its `workflow:` nodes run, and theirs, by name.
    pub workflows: BTreeMap<String, Arc<SourceFile>>,
    renderer: Renderer,
}

/// Why a workflow cannot be planned (what validation reports too, should it be skipped).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The dependencies form a cycle.
    #[error("the workflow has a dependency cycle (run `reins validate`)")]
    Cycle,
    /// A template does not compile.
    #[error("template `{key}`: {message}")]
    Template {
        /// The template's key (`n/3/body`).
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// A `command:` node names a command file that is not found.
    #[error(
        "node `{node}`: command file `{command}.md` not found in {}",
        searched.join(", ")
    )]
    MissingCommand {
        /// The node's id.
        node: String,
        /// The command's name.
        command: String,
        /// The folders searched.
        searched: Vec<String>,
    },
    /// A `workflow:` node runs a workflow that is not found.
    #[error(
        "workflow `{parent}` runs workflow `{name}`, which is not found{}",
        if searched.is_empty() { String::new() } else { format!(" in {}", searched.join(", ")) }
    )]
    MissingWorkflow {
        /// The workflow that runs it.
        parent: String,
        /// The workflow's name.
        name: String,
        /// The places searched.
        searched: Vec<String>,
    },
    /// A workflow a `workflow:` node runs does not load.
    #[error("workflow `{0}` cannot be read")]
    UnreadableWorkflow(String),
}

impl Plan {
    /// Prepares a validated workflow. Fails on what validation reports too (a template that
    /// does not compile, a missing command file, a cycle), in words.
    pub fn new(workflow: Workflow, commands: &dyn CommandLookup) -> Result<Plan, PlanError> {
        let dag = workflow.dag();
        if dag.topo_order().is_none() {
            return Err(PlanError::Cycle);
        }
        let mut renderer = Renderer::new();
        let mut used = BTreeMap::new();
        let mut add = |key: String, text: &str, mode: Mode| {
            renderer
                .add(&key, text, mode)
                .map_err(|e| PlanError::Template {
                    key,
                    message: e.message,
                })
        };
        for (name, value) in workflow.env.iter() {
            add(format!("wf/env/{}", name.value), &value.value, Mode::Plain)?;
        }
        for (i, node) in workflow.nodes.iter().enumerate() {
            if let Some(name) = node.command() {
                let file = commands.lookup(&name.value).map_err(|(dirs, _)| {
                    PlanError::MissingCommand {
                        node: node.id.value.clone(),
                        command: name.value.clone(),
                        searched: dirs.iter().map(|d| d.display().to_string()).collect(),
                    }
                })?;
                add(
                    field_key(i, TemplateField::Body),
                    &file.body.value,
                    Mode::Plain,
                )?;
                used.insert(name.value.clone(), file);
            }
            for (field, t) in node.templates() {
                add(field_key(i, field), &t.value, mode_of(node, field))?;
            }
        }
        let workflows = children(&workflow, commands, &mut used)?;
        let defaults = &workflow.defaults;
        let settings: Vec<Settings> = workflow
            .nodes
            .iter()
            .map(|n| Settings {
                timeout: n
                    .timeout
                    .as_ref()
                    .or(defaults.timeout.as_ref())
                    .map(|t| t.value),
                retries: n
                    .retries
                    .as_ref()
                    .or(defaults.retries.as_ref())
                    .map(|r| r.value)
                    .unwrap_or(0),
                shell: n
                    .shell
                    .as_ref()
                    .or(defaults.shell.as_ref())
                    .and_then(|s| shlex::split(&s.value))
                    .filter(|words| !words.is_empty())
                    .unwrap_or_else(|| vec!["bash".to_string()]),
                continue_on_error: n.continue_on_error.as_ref().is_some_and(|c| c.value),
                trigger: n.trigger(),
            })
            .collect();
        let weight = |i: usize| settings[i].timeout.unwrap_or(DEFAULT_WEIGHT);
        let priority = dag.remaining_weight(weight);
        let ancestors = Ancestors::new(&dag);
        Ok(Plan {
            workflow,
            dag,
            settings,
            priority,
            ancestors,
            commands: used,
            workflows,
            renderer,
        })
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.dag.len()
    }

    /// True when the workflow has no nodes.
    pub fn is_empty(&self) -> bool {
        self.dag.is_empty()
    }

    /// The id of node `i`.
    pub fn id(&self, i: usize) -> &str {
        &self.dag.ids[i]
    }

    /// True if node `i` has this template field.
    pub fn has(&self, i: usize, field: TemplateField) -> bool {
        self.renderer.has(&field_key(i, field), self.mode(i, field))
    }

    /// Renders a template field of node `i` against a context (see [`super::context`]). A
    /// bash script comes back as it runs: its values are references (see
    /// [`Plan::render_script`] for the values themselves).
    pub fn render(
        &self,
        i: usize,
        field: TemplateField,
        context: &Json,
    ) -> Result<String, RenderError> {
        match self.mode(i, field) {
            Mode::Shell => self.render_script(i, field, context).map(|s| s.text),
            mode => self.renderer.render(&field_key(i, field), mode, context),
        }
    }

    /// Renders a bash field of node `i` by reference: the script and the values it reads.
    pub fn render_script(
        &self,
        i: usize,
        field: TemplateField,
        context: &Json,
    ) -> Result<Script, RenderError> {
        self.renderer.render_script(&field_key(i, field), context)
    }

    /// Renders a workflow `env:` value.
    pub fn render_workflow_env(&self, name: &str, context: &Json) -> Result<String, RenderError> {
        self.renderer
            .render(&format!("wf/env/{name}"), Mode::Plain, context)
    }

    /// The renderer, for one-off templates (e.g. an agent's extra text).
    pub fn renderer(&self) -> &Renderer {
        &self.renderer
    }

    /// How a field is escaped: bash scripts by reference, everything else plain.
    pub fn mode(&self, i: usize, field: TemplateField) -> Mode {
        mode_of(&self.workflow.nodes[i], field)
    }

    /// The raw text of every template of node `i` (and of its command file), to look for
    /// what it reads.
    pub fn template_texts(&self, i: usize) -> Vec<&str> {
        let node = &self.workflow.nodes[i];
        let command = node
            .command()
            .and_then(|name| self.commands.get(&name.value))
            .map(|c| c.file.text.as_str());
        command
            .into_iter()
            .chain(node.templates().map(|(_, t)| t.value.as_str()))
            .collect()
    }

    /// The values node `i`'s `when` reads (empty without a `when`).
    pub fn when_references(&self, i: usize) -> Vec<crate::workflow::template::Reference> {
        self.workflow.nodes[i]
            .when
            .as_ref()
            .and_then(|w| crate::workflow::template::analyze(&w.value).ok())
            .map(|a| a.references)
            .unwrap_or_default()
    }

    /// True when node `d`'s `when` reads the status of node `i` (`nodes.ID.status`).
    pub fn when_reads_status_of(&self, d: usize, i: usize) -> bool {
        let id = self.id(i);
        self.ancestors.contains(d, i)
            && self.when_references(d).iter().any(|r| {
                r.segments.len() >= 3
                    && r.segments[0] == "nodes"
                    && r.segments[1] == id
                    && r.segments[2] == "status"
            })
    }

    /// True when node `i`'s `when` reads a value only known once the run executes: an
    /// upstream node's output or status.
    pub fn when_depends_on_run(&self, i: usize) -> bool {
        self.when_references(i)
            .iter()
            .any(|r| r.segments.first().is_some_and(|s| s == "nodes") || r.in_block)
    }

    /// The order in which nodes start when each finishes at once: dependencies first, and among
    /// ready nodes the one with the most work behind it (what `--dry-run` prints).
    pub fn schedule_order(&self) -> Vec<usize> {
        let mut waiting: Vec<usize> = self.dag.deps.iter().map(Vec::len).collect();
        let mut ready: BinaryHeap<Ready> = (0..self.len())
            .filter(|&i| waiting[i] == 0)
            .map(|i| self.ready(i))
            .collect();
        let mut order = Vec::with_capacity(self.len());
        while let Some(Ready { index, .. }) = ready.pop() {
            order.push(index);
            for &d in &self.dag.dependents[index] {
                waiting[d] -= 1;
                if waiting[d] == 0 {
                    ready.push(self.ready(d));
                }
            }
        }
        order
    }

    /// Node `i` as an entry of the ready queue.
    pub fn ready(&self, i: usize) -> Ready {
        Ready {
            priority: self.priority[i],
            index: i,
        }
    }
}

/// An entry of the ready queue: the heaviest remaining chain first, then declaration order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ready {
    /// Weight of the heaviest chain from the node to the end.
    pub priority: Duration,
    /// The node.
    pub index: usize,
}

impl Ord for Ready {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.priority
            .cmp(&other.priority)
            .then_with(|| other.index.cmp(&self.index))
    }
}

impl PartialOrd for Ready {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// How a field of `node` is escaped.
fn mode_of(node: &Node, field: TemplateField) -> Mode {
    if node.is_script(field) {
        Mode::Shell
    } else {
        Mode::Plain
    }
}

fn field_key(i: usize, field: TemplateField) -> String {
    match field {
        TemplateField::Body => format!("{i}/body"),
        TemplateField::When => format!("{i}/when"),
        TemplateField::Cwd => format!("{i}/cwd"),
        TemplateField::Env(name) => format!("{i}/env/{name}"),
        TemplateField::Until => format!("{i}/until"),
        TemplateField::UntilBash => format!("{i}/until_bash"),
        TemplateField::Arg(name) => format!("{i}/arg/{name}"),
        TemplateField::Input(name) => format!("{i}/input/{name}"),
        TemplateField::Key => format!("{i}/key"),
    }
}

/// The workflows `workflow`'s `workflow:` nodes run, and theirs, all the way down, by name;
/// their command files go into `used`. A chain that comes back to a workflow is followed once
/// (`validate` refuses it).
fn children(
    workflow: &Workflow,
    commands: &dyn CommandLookup,
    used: &mut BTreeMap<String, CommandFile>,
) -> Result<BTreeMap<String, Arc<SourceFile>>, PlanError> {
    let mut found = BTreeMap::new();
    let mut todo: Vec<(String, String)> = workflow
        .children()
        .into_iter()
        .map(|n| (workflow.name.value.clone(), n.value.clone()))
        .collect();
    while let Some((parent, name)) = todo.pop() {
        if found.contains_key(&name) {
            continue;
        }
        let file =
            commands
                .workflow(&name)
                .map_err(|(searched, _)| PlanError::MissingWorkflow {
                    parent: parent.clone(),
                    name: name.clone(),
                    searched,
                })?;
        let loaded = crate::workflow::load_source(file.clone());
        let Some(child) = loaded.workflow else {
            return Err(PlanError::UnreadableWorkflow(name));
        };
        for node in &child.nodes {
            if let Some(c) = node.command().filter(|c| !used.contains_key(&c.value)) {
                if let Ok(f) = commands.lookup(&c.value) {
                    used.insert(c.value.clone(), f);
                }
            }
        }
        for n in child.children() {
            todo.push((name.clone(), n.value.clone()));
        }
        found.insert(name, file);
    }
    Ok(found)
}

/// Finds command files among those frozen into a run's `run.json`.
pub struct FrozenCommands(
    pub BTreeMap<String, crate::store::FrozenFile>,
    /// The child workflows frozen with the run.
    pub BTreeMap<String, crate::store::FrozenFile>,
);

impl CommandLookup for FrozenCommands {
    fn lookup(&self, name: &str) -> Result<CommandFile, (Vec<std::path::PathBuf>, Vec<String>)> {
        match self.0.get(name) {
            Some(f) => Ok(CommandFile::parse(crate::source::SourceFile::new(
                f.path.clone(),
                f.text.clone(),
            ))),
            None => Err((vec!["run.json".into()], self.0.keys().cloned().collect())),
        }
    }

    fn workflow(&self, name: &str) -> Result<Arc<SourceFile>, (Vec<String>, Vec<String>)> {
        match self.1.get(name) {
            Some(f) => Ok(SourceFile::new(f.path.clone(), f.text.clone())),
            None => Err((vec!["run.json".into()], self.1.keys().cloned().collect())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SourceFile;
    use crate::workflow::command_file::DirCommands;
    use crate::workflow::load_source;
    use serde_json::json;

    fn plan(yaml: &str) -> Plan {
        let wf = load_source(SourceFile::new("t.yaml", yaml))
            .workflow
            .unwrap();
        Plan::new(wf, &DirCommands::default()).unwrap()
    }

    #[test]
    fn renders_bash_by_reference_and_conditions_plain() {
        let p = plan(
            "defaults: {retries: 2, timeout: 1m}
nodes:
  - id: a
    bash: echo {{inputs.x}}
    when: \"{{inputs.x}}\"
    timeout: 5s
    shell: bash -eu
  - id: b
    bash: echo
    shell: \"env 'A=1 2' bash\"
",
        );
        let ctx = json!({"inputs": {"x": "a b"}});
        assert_eq!(
            p.render(0, TemplateField::Body, &ctx).unwrap(),
            "echo \"$REINS_VALUE_1\""
        );
        assert_eq!(p.render(0, TemplateField::When, &ctx).unwrap(), "a b");
        assert!(!p.has(0, TemplateField::Cwd));
        let s = &p.settings[0];
        assert_eq!(s.timeout, Some(Duration::from_secs(5)));
        assert_eq!(s.retries, 2);
        assert_eq!(s.shell, ["bash", "-eu"]);
        assert_eq!(p.settings[1].shell, ["env", "A=1 2", "bash"]);
    }

    #[test]
    fn schedule_order_prefers_the_critical_path() {
        // `short` and `long` are both ready at first; `long` has more work behind it.
        let p = plan(
            "nodes:
  - {id: short, bash: x, timeout: 1s}
  - {id: long, bash: x, timeout: 10s}
  - {id: after, bash: x, depends_on: [long], timeout: 10s}
",
        );
        let order: Vec<&str> = p.schedule_order().into_iter().map(|i| p.id(i)).collect();
        assert_eq!(order, ["long", "after", "short"]);
        assert_eq!(p.ancestors.of(2).collect::<Vec<_>>(), [1]);
    }
}
