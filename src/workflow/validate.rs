//! Semantic checks of a loaded workflow: ids, dependencies, cycles, templates, profiles,
//! command files. Every problem is reported; nothing stops at the first.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use super::command_file::{CommandArg, CommandLookup};
use super::model::*;
use super::shell_context;
use super::template::{self, Analysis};
use super::Loaded;
use crate::diagnostic::{suggestion, Diagnostic};
use crate::graph::{Ancestors, Dag};
use crate::source::{SourceFile, Span, Spanned};

/// The names a template may start with.
pub const TEMPLATE_ROOTS: &[&str] = &[
    "inputs",
    "nodes",
    "artifacts",
    "run",
    "workflow",
    "env",
    "loop",
    "output",
    "args",
    "item",
    "item_index",
];

/// What `{{args.NAME}}` may read in the template being checked.
#[derive(Clone, Copy)]
enum Args<'c> {
    /// Not a command file: there are no arguments.
    None,
    /// A command file declaring these arguments in its frontmatter.
    Declared(&'c [CommandArg]),
    /// A command file whose frontmatter is broken (reported on its own): anything goes.
    Any,
}

/// What a template may read and how it is escaped, by where it sits.
#[derive(Clone, Copy)]
struct Scope {
    /// A bash script: values pass by reference, and some places in it refuse them.
    shell: bool,
    /// A loop's body or conditions, where `loop.*` exists.
    in_loop: bool,
    /// `until` or `until_bash`, where `output` exists.
    until: bool,
    /// Whether `item` and `item_index` exist here.
    item: ItemScope,
}

/// Whether a template can read a fan-out's item.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ItemScope {
    /// Not in a fan-out: there is no item.
    None,
    /// A template of a fan-out's instances: the item is theirs.
    Instance,
    /// A fan-out's `when`, decided once before its items are known.
    When,
    /// `for_each` itself, which makes the items.
    ForEach,
}

impl Scope {
    /// Outside any node: workflow `env` and agent profiles, rendered before any node runs.
    const OUTSIDE: Scope = Scope {
        shell: false,
        in_loop: false,
        until: false,
        item: ItemScope::None,
    };

    /// The scope of one template field of a node.
    fn of(node: &Node, field: TemplateField) -> Scope {
        let until = matches!(field, TemplateField::Until | TemplateField::UntilBash);
        let item = match field {
            _ if !node.fans_out() => ItemScope::None,
            TemplateField::When => ItemScope::When,
            _ => ItemScope::Instance,
        };
        Scope {
            shell: node.is_script(field),
            in_loop: matches!(node.kind, NodeKind::Loop(_))
                && (until || field == TemplateField::Body),
            until,
            item,
        }
    }
}

/// How a template field is named in messages: `bash`, `prompt`, `until`, `env.NAME`...
fn field_name(node: &Node, field: TemplateField) -> String {
    let body = |kind: &NodeKind| match kind {
        NodeKind::Loop(l) => match &l.body {
            LoopBody::Bash(_) => "bash",
            LoopBody::Prompt(_) => "prompt",
            LoopBody::Command(_) => "command file",
        },
        NodeKind::Command(_) => "command file",
        other => other.name(),
    };
    match field {
        TemplateField::Body => body(&node.kind).to_string(),
        TemplateField::Until => "until".into(),
        TemplateField::UntilBash => "until_bash".into(),
        TemplateField::When => "when".into(),
        TemplateField::Cwd => "cwd".into(),
        TemplateField::Env(name) => format!("env.{name}"),
        TemplateField::Arg(name) => format!("args.{name}"),
        TemplateField::Input(name) => format!("inputs.{name}"),
        TemplateField::Key => "key".into(),
    }
}

/// Runs every semantic check on a loaded workflow and returns all diagnostics, the
/// loader's first, sorted by position.
pub fn validate(loaded: &Loaded, commands: &dyn CommandLookup) -> Vec<Diagnostic> {
    let mut diags = loaded.diagnostics.clone();
    if let Some(wf) = &loaded.workflow {
        let dag = wf.dag();
        let ancestors = Ancestors::new(&dag);
        let mut v = Validator {
            wf,
            file: &loaded.file,
            dropped: &loaded.dropped_ids,
            dag,
            diags: Vec::new(),
            used_inputs: Vec::new(),
            ancestors,
            counts: HashMap::new(),
        };
        v.run(commands);
        diags.extend(v.diags);
    }
    sort(&mut diags);
    // A command file used by several nodes would report its own problems once per node.
    let mut seen = HashSet::new();
    diags.retain(|d| {
        let spans: Vec<_> = d.labels.iter().map(|l| l.span).collect();
        seen.insert((d.file.path.clone(), d.code, d.message.clone(), spans))
    });
    cap(diags)
}

/// The most child workflows `validate` opens looking for a chain that runs itself.
pub const MAX_CHILD_WORKFLOWS: usize = 256;

/// How many diagnostics of one code in one file are shown; the rest are counted.
pub const SHOWN_PER_CODE: usize = 10;

/// The most `{{...}}` tags one template may hold: Handlebars' parser takes time quadratic in
/// a template's tags, so a flood is refused before it is parsed.
pub const MAX_TAGS_PER_TEMPLATE: usize = 1000;

/// Keeps the first [`SHOWN_PER_CODE`] diagnostics of each code in each file and sums up the
/// rest in one more ("and 19,990 more"), so a flood of errors is reported in bounded memory.
fn cap(diags: Vec<Diagnostic>) -> Vec<Diagnostic> {
    let mut shown: HashMap<(PathBuf, &'static str), usize> = HashMap::new();
    let mut kept = Vec::with_capacity(diags.len().min(1000));
    let mut extra: Vec<(Diagnostic, usize)> = Vec::new();
    for d in diags {
        let n = shown.entry((d.file.path.clone(), d.code)).or_insert(0);
        *n += 1;
        if *n <= SHOWN_PER_CODE {
            kept.push(d);
        } else if let Some((_, count)) = extra
            .iter_mut()
            .find(|(e, _)| e.code == d.code && e.file.path == d.file.path)
        {
            *count += 1;
        } else {
            extra.push((d, 1));
        }
    }
    for (first, count) in extra {
        let mut d = first;
        let kind = if d.is_error() { "error" } else { "warning" };
        d.message = format!(
            "and {} more `{}` {kind}{} like the ones above; the next: {}",
            thousands(count),
            d.code,
            if count == 1 { "" } else { "s" },
            d.message
        );
        d.labels.truncate(1);
        d.help = Some(format!(
            "reins shows {SHOWN_PER_CODE} of each kind per file; fix these and validate again"
        ));
        kept.push(d);
    }
    kept
}

/// `19990` -> `19,990`.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (k, c) in digits.chars().enumerate() {
        if k > 0 && (digits.len() - k).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Loads and validates one workflow file, finding command files like `reins run` does
/// (project `.workflows/commands/`, user-global, bundled; see [`super::discover`]).
pub fn check_file(path: &std::path::Path) -> (Loaded, Vec<Diagnostic>) {
    let loaded = super::load_file(path);
    let diags = validate(&loaded, &super::discover::SearchPath::for_workflow(path));
    (loaded, diags)
}

/// Sorts diagnostics by file, then position (file-level ones first).
pub fn sort(diags: &mut [Diagnostic]) {
    diags.sort_by(|a, b| {
        let key = |d: &Diagnostic| {
            (
                d.file.path.clone(),
                d.labels.first().map(|l| l.span.start + 1).unwrap_or(0),
            )
        };
        key(a).cmp(&key(b))
    });
}

struct Validator<'a> {
    wf: &'a Workflow,
    file: &'a Arc<SourceFile>,
    dropped: &'a [String],
    dag: Dag,
    diags: Vec<Diagnostic>,
    used_inputs: Vec<String>,
    /// Everything each node depends on, directly or not.
    ancestors: Ancestors,
    /// Diagnostics pushed per code, so the costly help of a flood is computed only for
    /// those shown (see [`cap`]).
    counts: HashMap<&'static str, usize>,
}

impl Validator<'_> {
    /// Counts one more diagnostic of `code`; true once more of them are known than are shown,
    /// when a cheap help will do (it is never displayed).
    fn flood(&mut self, code: &'static str) -> bool {
        let n = self.counts.entry(code).or_insert(0);
        *n += 1;
        *n > SHOWN_PER_CODE * 4
    }

    /// True if node `me` depends on node `other`, directly or not.
    fn depends_on(&self, me: usize, other: usize) -> bool {
        self.ancestors.contains(me, other)
    }

    fn run(&mut self, commands: &dyn CommandLookup) {
        self.ids();
        self.env_names();
        self.dependencies();
        self.cycles();
        self.profiles();
        self.diags.extend(ignored_by_codex(self.wf, self.file));
        self.workflow_templates();
        for i in 0..self.wf.nodes.len() {
            self.node(i, commands);
        }
        self.sessions();
        self.unused_inputs();
        self.result();
    }

    /// `output:` names a node of the workflow.
    fn result(&mut self) {
        let Some(output) = &self.wf.output else {
            return;
        };
        if self.dag.index_of(&output.value).is_none() && !self.dropped.contains(&output.value) {
            let help = suggestion(&output.value, self.dag.ids.iter().map(String::as_str))
                .unwrap_or_else(|| "name the node whose output is the workflow's result".into());
            self.diags.push(
                Diagnostic::error(
                    "unknown-node",
                    self.file,
                    output.span,
                    format!("`output` names no node: `{}`", output.value),
                )
                .with_label("no node has this id")
                .with_help(help),
            );
        }
    }

    /// A `workflow:` node: the child exists and is valid to run as a child, its required
    /// inputs are given and no unknown one is, and no chain of children comes back to a
    /// workflow already on it.
    fn child(&mut self, node: &Node, name: &Spanned<String>, commands: &dyn CommandLookup) {
        let file = match commands.workflow(&name.value) {
            Ok(file) => file,
            Err((searched, available)) => {
                let help = suggestion(&name.value, available.iter().map(String::as_str))
                    .unwrap_or_else(|| {
                        if searched.is_empty() {
                            "name a workflow like `reins run NAME` does (project `.workflows/`, user-global, bundled); `reins list` shows them".into()
                        } else {
                            format!("searched {}; `reins list` shows the workflows there are", searched.join(", "))
                        }
                    });
                self.diags.push(
                    Diagnostic::error(
                        "unknown-workflow",
                        self.file,
                        name.span,
                        format!(
                            "node `{}` runs workflow `{}`, which is not found",
                            node.id.value, name.value
                        ),
                    )
                    .with_label("no workflow of this name")
                    .with_help(help),
                );
                return;
            }
        };
        let Some(child) = super::load_source(file).workflow else {
            self.diags.push(
                Diagnostic::error(
                    "unknown-workflow",
                    self.file,
                    name.span,
                    format!("workflow `{}` cannot be read", name.value),
                )
                .with_help(format!("run `reins validate {}`", name.value)),
            );
            return;
        };
        for (key, _) in node.inputs.iter() {
            if child.inputs.get(&key.value).is_none() {
                let declared: Vec<&str> = child.inputs.names().collect();
                let help = suggestion(&key.value, declared.iter().copied()).unwrap_or_else(|| {
                    if declared.is_empty() {
                        format!("workflow `{}` declares no inputs", name.value)
                    } else {
                        format!("its inputs are {}", list(declared.iter().copied()))
                    }
                });
                self.diags.push(
                    Diagnostic::error(
                        "unknown-input",
                        self.file,
                        key.span,
                        format!("workflow `{}` has no input `{}`", name.value, key.value),
                    )
                    .with_label("not an input of the child")
                    .with_help(help),
                );
            }
        }
        let missing: Vec<&str> = child
            .inputs
            .iter()
            .filter(|(k, i)| {
                i.default.is_none()
                    && i.required.as_ref().is_some_and(|r| r.value)
                    && node.inputs.get(&k.value).is_none()
            })
            .map(|(k, _)| k.value.as_str())
            .collect();
        if !missing.is_empty() {
            let example: Vec<String> = missing.iter().map(|m| format!("{m}: ...")).collect();
            self.diags.push(
                Diagnostic::error(
                    "missing-input",
                    self.file,
                    name.span,
                    format!(
                        "workflow `{}` needs input{} {} that node `{}` does not give",
                        name.value,
                        if missing.len() == 1 { "" } else { "s" },
                        list(missing.iter().copied()),
                        node.id.value
                    ),
                )
                .with_label("started without them")
                .with_help(format!(
                    "add `inputs: {{ {} }}` to the node",
                    example.join(", ")
                )),
            );
        }
        if child.result_node().is_none() {
            self.diags.push(
                Diagnostic::error(
                    "several-results",
                    self.file,
                    name.span,
                    format!(
                        "workflow `{}` has several final nodes and no `output:`, so node `{}` would have no output",
                        name.value, node.id.value
                    ),
                )
                .with_help(format!("add `output: NODE` to workflow `{}`, naming the node whose output is its result", name.value)),
            );
        }
        if let Some(chain) = self.chain_back(&name.value, &child, commands) {
            self.diags.push(
                Diagnostic::error(
                    "workflow-cycle",
                    self.file,
                    name.span,
                    format!(
                        "workflow `{}` runs itself: {}",
                        chain.last().map(String::as_str).unwrap_or_default(),
                        chain.join(" → ")
                    ),
                )
                .with_label("the chain starts here")
                .with_help("a workflow cannot run itself, directly or through the workflows it runs; break the chain"),
            );
        }
    }

    /// A chain of `workflow:` nodes from this workflow through `first` that comes back to a
    /// workflow on it, as names (`a → b → a`), looking at most at [`MAX_CHILD_WORKFLOWS`].
    fn chain_back(
        &self,
        first: &str,
        child: &Workflow,
        commands: &dyn CommandLookup,
    ) -> Option<Vec<String>> {
        let me = self.wf.name.value.clone();
        let stem = self
            .wf
            .source
            .path
            .file_stem()
            .and_then(|s| s.to_str())
            .map(str::to_string);
        let is_me = |n: &str| n == me || stem.as_deref() == Some(n);
        // Depth first, each workflow's children in order; `path` is the chain so far.
        let mut path = vec![me.clone(), first.to_string()];
        if is_me(first) {
            return Some(path);
        }
        let mut looked = 0;
        let mut stack: Vec<(usize, Vec<String>)> = vec![(
            2,
            child.children().iter().map(|c| c.value.clone()).collect(),
        )];
        while let Some((depth, mut todo)) = stack.pop() {
            let Some(next) = todo.pop() else {
                path.truncate(depth - 1);
                continue;
            };
            stack.push((depth, todo));
            path.truncate(depth);
            path.push(next.clone());
            if is_me(&next) || path[..path.len() - 1].contains(&next) {
                return Some(path);
            }
            looked += 1;
            if looked > MAX_CHILD_WORKFLOWS {
                return None;
            }
            let Ok(file) = commands.workflow(&next) else {
                continue;
            };
            let Some(wf) = super::load_source(file).workflow else {
                continue;
            };
            let children: Vec<String> = wf.children().iter().map(|c| c.value.clone()).collect();
            stack.push((depth + 1, children));
        }
        None
    }

    fn ids(&mut self) {
        let mut first_use: HashMap<&str, &Node> = HashMap::new();
        for node in &self.wf.nodes {
            let first = *first_use.entry(node.id.value.as_str()).or_insert(node);
            if !std::ptr::eq(first, node) {
                self.diags.push(
                    Diagnostic::error(
                        "duplicate-id",
                        self.file,
                        node.id.span,
                        format!("duplicate node id `{}`", node.id.value),
                    )
                    .with_label("used again here")
                    .with_secondary(first.id.span, "first used here")
                    .with_help("every node needs its own id; rename one of them"),
                );
            }
        }
    }

    /// Node ids and input names become `REINS_*` variables: two that become the same one
    /// are an error, so is an `env:` key no environment can hold.
    fn env_names(&mut self) {
        let wf = self.wf;
        let clash = |what: &str,
                     names: Vec<&Spanned<String>>,
                     (prefix, suffix): (&str, &str),
                     diags: &mut Vec<Diagnostic>| {
            let mut seen: HashMap<String, &Spanned<String>> = HashMap::new();
            for name in names {
                let var = format!("{prefix}{}{suffix}", env_suffix(&name.value));
                match seen.get(&var) {
                    Some(first) if first.value != name.value => diags.push(
                        Diagnostic::error(
                            "env-name-clash",
                            self.file,
                            name.span,
                            format!(
                                "{what} `{}` and `{}` both become the variable `{var}`",
                                first.value, name.value
                            ),
                        )
                        .with_label("same variable as another")
                        .with_secondary(first.span, "this one")
                        .with_help(format!("names become `{prefix}*` variables upper-cased, with `-` and `.` turned into `_`; rename one of them")),
                    ),
                    Some(_) => {}
                    None => {
                        seen.insert(var, name);
                    }
                }
            }
        };
        let ids: Vec<&Spanned<String>> = wf.nodes.iter().map(|n| &n.id).collect();
        clash("node ids", ids, ("REINS_NODE_", "_OUTPUT"), &mut self.diags);
        let inputs: Vec<&Spanned<String>> = wf.inputs.iter().map(|(n, _)| n).collect();
        clash("inputs", inputs, ("REINS_INPUT_", ""), &mut self.diags);
        let keys = wf
            .env
            .iter()
            .chain(wf.nodes.iter().flat_map(|n| n.env.iter()))
            .chain(wf.agents.iter().flat_map(|(_, p)| p.env.iter()))
            .map(|(k, _)| k);
        for key in keys {
            let problem = if key.value.is_empty() {
                Some("is empty")
            } else if key.value.contains('=') {
                Some("contains `=`")
            } else if key.value.contains('\0') {
                Some("contains a NUL byte")
            } else {
                None
            };
            if let Some(problem) = problem {
                self.diags.push(
                    Diagnostic::error(
                        "bad-env-name",
                        self.file,
                        key.span,
                        format!("environment variable name {:?} {problem}", key.value),
                    )
                    .with_label("no environment can hold this name")
                    .with_help("name it with letters, digits and `_`, like `CARGO_TERM_COLOR`"),
                );
            }
        }
    }

    fn dependencies(&mut self) {
        let mut ids: Vec<&str> = Vec::new();
        let mut known: HashSet<&str> = HashSet::new();
        for node in &self.wf.nodes {
            if known.insert(&node.id.value) {
                ids.push(&node.id.value);
            }
        }
        for node in &self.wf.nodes {
            for (k, dep) in node.depends_on.iter().enumerate() {
                if node.depends_on[..k].iter().any(|d| d.value == dep.value) {
                    self.diags.push(
                        Diagnostic::warning(
                            "duplicate-dependency",
                            self.file,
                            dep.span,
                            format!("`{}` is listed twice in `depends_on`", dep.value),
                        )
                        .with_help("remove the second one"),
                    );
                    continue;
                }
                if known.contains(dep.value.as_str()) || self.dropped.contains(&dep.value) {
                    continue;
                }
                let help = if self.flood("unknown-dependency") {
                    String::new()
                } else {
                    suggestion(&dep.value, ids.iter().copied())
                        .unwrap_or_else(|| format!("known nodes: {}", list(ids.iter().copied())))
                };
                self.diags.push(
                    Diagnostic::error(
                        "unknown-dependency",
                        self.file,
                        dep.span,
                        format!("unknown dependency `{}`", dep.value),
                    )
                    .with_label("no node has this id")
                    .with_help(help),
                );
            }
        }
    }

    fn cycles(&mut self) {
        for cycle in self.dag.cycles() {
            let names: Vec<String> = cycle
                .iter()
                .map(|&i| format!("`{}`", self.dag.ids[i]))
                .collect();
            let first = &self.wf.nodes[cycle[0]];
            // The graph orders the members along one cycle when it finds one through all of
            // them; otherwise they come in declaration order and every edge among them counts.
            let along = (0..cycle.len())
                .all(|k| self.dag.deps[cycle[k]].contains(&cycle[(k + 1) % cycle.len()]));
            let message = if cycle.len() == 1 {
                format!("node `{}` depends on itself", first.id.value)
            } else if along {
                format!("dependency cycle: {} -> {}", names.join(" -> "), names[0])
            } else {
                format!(
                    "dependency cycle: nodes {} depend on each other",
                    names.join(", ")
                )
            };
            // Point at each edge of the cycle: the `depends_on` entries between members.
            let mut edges = Vec::new();
            for (k, &member) in cycle.iter().enumerate() {
                let targets: Vec<usize> = if along {
                    vec![cycle[(k + 1) % cycle.len()]]
                } else {
                    cycle.clone()
                };
                for target in targets {
                    let next = &self.dag.ids[target];
                    if let Some(dep) = self.wf.nodes[member]
                        .depends_on
                        .iter()
                        .find(|d| &d.value == next)
                    {
                        edges.push((
                            dep.span,
                            format!("`{}` depends on `{}`", self.dag.ids[member], next),
                        ));
                    }
                }
            }
            let mut edges = edges.into_iter();
            let (span, label) = edges.next().unwrap_or((first.id.span, String::new()));
            let mut d = Diagnostic::error("cycle", self.file, span, message).with_label(label);
            for (span, label) in edges {
                d = d.with_secondary(span, label);
            }
            self.diags.push(d.with_help(
                "a workflow is a DAG; remove one of these dependencies to break the cycle",
            ));
        }
    }

    fn profiles(&mut self) {
        let names: Vec<&str> = BUILTIN_AGENTS
            .iter()
            .copied()
            .chain(
                self.wf
                    .agents
                    .names()
                    .filter(|n| !BUILTIN_AGENTS.contains(n)),
            )
            .collect();
        for (name, profile) in self.wf.agents.iter() {
            if BUILTIN_AGENTS.contains(&name.value.as_str()) && profile.uses.is_none() {
                continue;
            }
            if let Some(base) = &profile.uses {
                if base.value == name.value {
                    self.diags.push(
                        Diagnostic::error(
                            "unknown-agent",
                            self.file,
                            base.span,
                            format!("agent profile `{}` uses itself", name.value),
                        )
                        .with_help("set `use: claude`, `use: codex` or another profile"),
                    );
                } else if !names.contains(&base.value.as_str()) {
                    self.unknown_agent(base, &names);
                } else {
                    // Follow the chain to catch loops like a -> b -> a; each member of the
                    // loop reports it, profiles that merely lead into it do not.
                    let mut chain = vec![name.value.as_str()];
                    let mut current = base.value.as_str();
                    while !chain.contains(&current) {
                        chain.push(current);
                        match self.wf.agents.get(current).and_then(|p| p.uses.as_ref()) {
                            Some(next) => current = next.value.as_str(),
                            None => break,
                        }
                    }
                    if current == name.value {
                        chain.push(current);
                        let chain: Vec<String> = chain.iter().map(|c| format!("`{c}`")).collect();
                        self.diags.push(
                            Diagnostic::error(
                                "unknown-agent",
                                self.file,
                                base.span,
                                format!(
                                    "agent profiles use each other in a loop: {}",
                                    chain.join(" -> ")
                                ),
                            )
                            .with_help(
                                "one profile in the chain must `use: claude` or `use: codex`",
                            ),
                        );
                    }
                }
            }
            for (key, value) in profile.env.iter() {
                self.template(
                    None,
                    value,
                    Scope::OUTSIDE,
                    &format!("agents.{}.env.{}", name.value, key.value),
                );
            }
        }
        if let Some(agent) = &self.wf.defaults.agent {
            if !names.contains(&agent.value.as_str()) {
                self.unknown_agent(agent, &names);
            }
        }
    }

    fn unknown_agent(&mut self, agent: &Spanned<String>, names: &[&str]) {
        let help = suggestion(&agent.value, names.iter().copied()).unwrap_or_else(|| {
            format!(
                "define it under `agents:`, or use one of {}",
                list(names.iter().copied())
            )
        });
        self.diags.push(
            Diagnostic::error(
                "unknown-agent",
                self.file,
                agent.span,
                format!("unknown agent profile `{}`", agent.value),
            )
            .with_label("not built in and not under `agents:`")
            .with_help(help),
        );
    }

    fn workflow_templates(&mut self) {
        for (key, value) in self.wf.env.iter() {
            self.template(None, value, Scope::OUTSIDE, &format!("env.{}", key.value));
        }
    }

    fn node(&mut self, i: usize, commands: &dyn CommandLookup) {
        let wf = self.wf;
        let node = &wf.nodes[i];
        if let Some(name) = node.command() {
            self.command(i, name, commands, Scope::of(node, TemplateField::Body));
        }
        if let NodeKind::Workflow(name) = &node.kind {
            self.child(node, name, commands);
        }
        for (field, t) in node.templates() {
            let what = field_name(node, field);
            self.template(Some(i), t, Scope::of(node, field), &what);
        }
        self.fan_out(i);
        if let Some(agent) = &node.agent {
            let names: Vec<&str> = BUILTIN_AGENTS
                .iter()
                .copied()
                .chain(wf.agents.names().filter(|n| !BUILTIN_AGENTS.contains(n)))
                .collect();
            if !names.contains(&agent.value.as_str()) {
                self.unknown_agent(agent, &names);
            }
        }
        if !node.kind.uses_agent() {
            let agent_fields: [(&str, Option<Span>); 6] = [
                ("agent", node.agent.as_ref().map(|s| s.span)),
                ("model", node.model.as_ref().map(|s| s.span)),
                ("session", node.session.as_ref().map(|s| s.span)),
                ("allowed_tools", node.allowed_tools.first().map(|s| s.span)),
                ("max_turns", node.max_turns.as_ref().map(|s| s.span)),
                (
                    "budget",
                    node.budget.as_ref().and_then(|b| {
                        b.max_cost_usd
                            .as_ref()
                            .map(|c| c.span)
                            .or(b.max_tokens.as_ref().map(|t| t.span))
                    }),
                ),
            ];
            for (field, span) in agent_fields {
                if let Some(span) = span {
                    self.diags.push(
                        Diagnostic::warning("no-effect", self.file, span, format!("`{field}` has no effect on {}", kind_phrase(&node.kind)))
                            .with_help("agent settings apply to `prompt` and `command` nodes (and loops of them); remove it"),
                    );
                }
            }
        }
        self.outputs(node);
        if !matches!(node.kind, NodeKind::Workflow(_)) {
            let spans = [
                ("inputs", node.inputs.0.first().map(|(k, _)| k.span)),
                ("isolation", node.isolation.as_ref().map(|s| s.span)),
            ];
            for (field, span) in spans {
                if let Some(span) = span {
                    self.diags.push(
                        Diagnostic::warning(
                            "no-effect",
                            self.file,
                            span,
                            format!("`{field}` has no effect on {}", kind_phrase(&node.kind)),
                        )
                        .with_help(format!(
                            "`{field}` applies to a `workflow:` node (a child run); remove it"
                        )),
                    );
                }
            }
        }
        if !node.args.is_empty()
            && !matches!(&node.kind, NodeKind::Command(_))
            && !matches!(&node.kind, NodeKind::Loop(l) if matches!(l.body, LoopBody::Command(_)))
        {
            let span = node.args.0[0].0.span;
            self.diags.push(
                Diagnostic::warning(
                    "no-effect",
                    self.file,
                    span,
                    format!("`args` has no effect on {}", kind_phrase(&node.kind)),
                )
                .with_help(
                    "`args` fills `{{args.NAME}}` in a command file; use it with `command:`",
                ),
            );
        }
    }

    /// `outputs` are paths inside the artifacts folder; a gate has none.
    fn outputs(&mut self, node: &Node) {
        if matches!(node.kind, NodeKind::Approval(_)) {
            if let Some(first) = node.outputs.first() {
                self.diags.push(
                    Diagnostic::warning(
                        "no-effect",
                        self.file,
                        first.span,
                        format!("`outputs` has no effect on {}", kind_phrase(&node.kind)),
                    )
                    .with_help(
                        "a gate produces no files; declare `outputs` on the node that writes them",
                    ),
                );
            }
            return;
        }
        for o in &node.outputs {
            let path = std::path::Path::new(&o.value);
            let escapes = path
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir));
            let what = if o.value.trim().is_empty() {
                "is empty"
            } else if path.has_root() {
                "is an absolute path"
            } else if escapes {
                "leaves the artifacts folder (`..`)"
            } else {
                continue;
            };
            self.diags.push(
                Diagnostic::error(
                    "output-path",
                    self.file,
                    o.span,
                    format!("output `{}` {what}", o.value),
                )
                .with_label("not a path inside the artifacts folder")
                .with_help("`outputs` are relative to the run's artifacts folder ({{artifacts}}): write `plan.md` or `reports/plan.md`; the node writes them as `$REINS_ARTIFACTS/plan.md`"),
            );
        }
    }

    fn command(
        &mut self,
        i: usize,
        name: &Spanned<String>,
        commands: &dyn CommandLookup,
        scope: Scope,
    ) {
        let node = &self.wf.nodes[i];
        match commands.lookup(&name.value) {
            Ok(command) => {
                self.diags.extend(command.diagnostics.iter().cloned());
                // A broken frontmatter is reported above; its arguments are not known, so
                // checking them against it would only repeat that error in other words.
                let frontmatter_ok = command.diagnostics.is_empty();
                let args = if frontmatter_ok {
                    Args::Declared(&command.args)
                } else {
                    Args::Any
                };
                self.template_in(
                    Some(i),
                    &command.file,
                    &command.body,
                    scope,
                    "command file",
                    args,
                );
                for arg in command.args.iter().filter(|a| a.must_be_given()) {
                    let arg = &arg.name.value;
                    if frontmatter_ok && node.args.get(arg).is_none() {
                        self.diags.push(
                            Diagnostic::error(
                                "missing-argument",
                                self.file,
                                name.span,
                                format!("command `{}` needs the argument `{arg}`", name.value),
                            )
                            .with_help(format!(
                                "add `args: {{ {arg}: ... }}` to node `{}`",
                                node.id.value
                            )),
                        );
                    }
                }
                let declared: Vec<&str> =
                    command.args.iter().map(|a| a.name.value.as_str()).collect();
                for (key, _) in node.args.iter() {
                    if frontmatter_ok && !declared.contains(&key.value.as_str()) {
                        let help =
                            suggestion(&key.value, declared.iter().copied()).unwrap_or_else(|| {
                                format!(
                                    "declare it in the frontmatter of {} under `args:`",
                                    command.file.path.display()
                                )
                            });
                        self.diags.push(
                            Diagnostic::error(
                                "unknown-argument",
                                self.file,
                                key.span,
                                format!("command `{}` has no argument `{}`", name.value, key.value),
                            )
                            .with_help(help),
                        );
                    }
                }
            }
            Err((searched, available)) => {
                let places: Vec<String> =
                    searched.iter().map(|p| p.display().to_string()).collect();
                let help = suggestion(&name.value, available.iter().map(String::as_str))
                    .unwrap_or_else(|| {
                        format!(
                            "create `.workflows/commands/{}.md` (searched {})",
                            name.value,
                            places.join(", ")
                        )
                    });
                self.diags.push(
                    Diagnostic::error(
                        "missing-command",
                        self.file,
                        name.span,
                        format!("command file `{}.md` not found", name.value),
                    )
                    .with_label("no such command")
                    .with_help(help),
                );
            }
        }
    }

    /// Inputs a template names count as used even when it is not checked further.
    fn mark_inputs_named(&mut self, text: &str) {
        for (name, _) in self.wf.inputs.iter() {
            if text.contains(&format!("inputs.{}", name.value)) {
                self.used_inputs.push(name.value.clone());
            }
        }
    }

    fn template(&mut self, node: Option<usize>, t: &Spanned<String>, scope: Scope, what: &str) {
        let file = self.file.clone();
        self.template_in(node, &file, t, scope, what, Args::None);
    }

    /// Values a bash script would read where not even a variable is safe or meaningful
    /// (arithmetic, single quotes, comments...): errors, each with its fix.
    fn shell_contexts(&mut self, file: &Arc<SourceFile>, t: &Spanned<String>, analysis: &Analysis) {
        let mut locator = template::TagLocator::new(file, t.span, &t.value);
        for found in shell_context::places(&analysis.skeleton) {
            let Some(&tag_at) = analysis.slots.get(found.slot) else {
                continue;
            };
            // Every tag is located, in order, so the next one is found after it.
            let span = locator.tag(tag_at);
            let shell_context::Place::Refused(why) = found.place else {
                continue;
            };
            let tag = locator.tag_text(tag_at);
            let name = tag.trim_start_matches('{').trim_end_matches('}').trim();
            let var = match name.split('.').collect::<Vec<_>>().as_slice() {
                ["inputs", input] => Some(format!("REINS_INPUT_{}", env_suffix(input))),
                ["nodes", id, "output"] => Some(format!("REINS_NODE_{}_OUTPUT", env_suffix(id))),
                ["nodes", id, "output_file"] => {
                    Some(format!("REINS_NODE_{}_OUTPUT_FILE", env_suffix(id)))
                }
                ["nodes", id, "status"] => Some(format!("REINS_NODE_{}_STATUS", env_suffix(id))),
                ["artifacts"] => Some("REINS_ARTIFACTS".to_string()),
                ["item"] => Some("REINS_ITEM".to_string()),
                ["item_index"] => Some("REINS_ITEM_INDEX".to_string()),
                ["nodes", id, "outputs"] => Some(format!("REINS_NODE_{}_OUTPUT", env_suffix(id))),
                _ => None,
            };
            self.diags.push(
                Diagnostic::error(
                    "unsafe-substitution",
                    file,
                    span,
                    format!("`{tag}` is {} in a shell script", why.describe()),
                )
                .with_label(why.why())
                .with_help(why.help(tag, var.as_deref())),
            );
        }
    }

    fn template_in(
        &mut self,
        node: Option<usize>,
        file: &Arc<SourceFile>,
        t: &Spanned<String>,
        scope: Scope,
        what: &str,
        command_args: Args,
    ) {
        let tags = t.value.matches("{{").count();
        if tags > MAX_TAGS_PER_TEMPLATE {
            self.mark_inputs_named(&t.value);
            self.diags.push(
                Diagnostic::error(
                    "template-too-large",
                    file,
                    t.span,
                    format!(
                        "`{what}` holds {} `{{{{...}}}}` tags; one template may hold at most {}",
                        thousands(tags),
                        thousands(MAX_TAGS_PER_TEMPLATE)
                    ),
                )
                .with_help(
                    "split it over several nodes, or read the values from files in `{{artifacts}}`",
                ),
            );
            return;
        }
        let analysis: Analysis = match template::analyze(&t.value) {
            Ok(a) => a,
            Err(e) => {
                // Inputs it names are not "unused" just because the template is broken.
                self.mark_inputs_named(&t.value);
                let span = template::locate_position(file, t.span, &t.value, e.position);
                self.diags.push(
                    Diagnostic::error("template-syntax", file, span, e.message).with_help(format!(
                        "fix the `{{{{...}}}}` in `{what}`; write `\\{{{{` for literal braces"
                    )),
                );
                return;
            }
        };
        let is_shell = scope.shell;
        if is_shell {
            self.shell_contexts(file, t, &analysis);
        }
        if analysis.raw_substitution && is_shell {
            let span = template::locate(file, t.span, "{{{");
            self.diags.push(
                Diagnostic::warning(
                    "raw-substitution",
                    file,
                    span,
                    "triple braces insert a value into a shell script without quoting",
                )
                .with_label("this value becomes script text: it can run as code")
                .with_help(
                    "use `{{...}}`: reins then passes the value as a variable, never as code",
                ),
            );
        }
        let mut locator = template::TagLocator::new(file, t.span, &t.value);
        for (helper, tag) in &analysis.helpers {
            if !template::known_helpers().any(|k| k == helper) {
                let span = locator.name(*tag, helper);
                let help = suggestion(helper, template::known_helpers()).unwrap_or_else(|| {
                    format!("available helpers: {}", list(template::known_helpers()))
                });
                self.diags.push(
                    Diagnostic::error(
                        "unknown-helper",
                        file,
                        span,
                        format!("unknown template helper `{helper}`"),
                    )
                    .with_help(help),
                );
            }
        }
        let mut locator = template::TagLocator::new(file, t.span, &t.value);
        for r in &analysis.references {
            let span = locator.name(r.tag, &r.raw);
            let site = Site {
                node,
                scope,
                args: command_args,
                file,
                span,
            };
            self.reference(&site, r);
        }
    }

    /// Checks one `{{...}}` reference: each template root has its own rules.
    fn reference(&mut self, site: &Site, r: &template::Reference) {
        match r.segments[0].as_str() {
            "inputs" => self.input_reference(site, r),
            "nodes" => self.node_reference(site, r),
            "artifacts" | "run" | "workflow" | "env" => self.diags.extend(run_reference(site, r)),
            "loop" | "output" => self.diags.extend(loop_reference(site, r)),
            "args" => self.diags.extend(args_reference(site, r)),
            "item" | "item_index" => self.diags.extend(item_reference(site, r)),
            _ if r.in_block => {}
            root => self.diags.push(unknown_root(site, r, root)),
        }
    }

    /// `inputs.NAME`: a declared input, which then counts as used.
    fn input_reference(&mut self, site: &Site, r: &template::Reference) {
        let Some(name) = r.segments.get(1) else {
            self.diags.push(site.error(
                "template-name",
                "`inputs` needs a name, like `inputs.issue`".into(),
                "write `{{inputs.NAME}}`".into(),
            ));
            return;
        };
        if self.wf.inputs.get(name).is_some() {
            self.used_inputs.push(name.clone());
        } else if self.flood("unknown-input") {
            self.diags.push(site.error(
                "unknown-input",
                format!("`inputs.{name}` is not a declared input"),
                String::new(),
            ));
        } else {
            let help = suggestion(name, self.wf.inputs.names()).unwrap_or_else(|| {
                format!("declare it: `inputs: {{ {name}: {{ required: true }} }}`")
            });
            self.diags.push(
                site.error(
                    "unknown-input",
                    format!("`inputs.{name}` is not a declared input"),
                    help,
                )
                .with_label("no such input"),
            );
        }
    }

    /// `nodes.ID.FIELD`: a node upstream of the reader, and something a node has.
    fn node_reference(&mut self, site: &Site, r: &template::Reference) {
        let Some(id) = r.segments.get(1) else {
            self.diags.push(site.error(
                "template-name",
                "`nodes` needs an id, like `nodes.build.output`".into(),
                "write `{{nodes.ID.output}}`".into(),
            ));
            return;
        };
        let Some(target) = self.dag.index_of(id) else {
            self.unknown_node(site, id);
            return;
        };
        self.upstream(site, id, target);
        match r.segments.get(2).map(String::as_str) {
            Some("output" | "output_file" | "status") if r.segments.len() == 3 => {}
            Some("artifacts")
                if r.segments.len() == 3
                    && matches!(self.wf.nodes[target].kind, NodeKind::Workflow(_)) => {}
            Some("outputs") if r.segments.len() == 3 => {
                if !self.wf.nodes[target].fans_out() {
                    self.diags.push(site.error(
                        "template-name",
                        format!(
                            "`{}` exists only on a fan-out, and `{id}` has no `for_each`",
                            r.raw
                        ),
                        format!("read `{{{{nodes.{id}.output}}}}`"),
                    ));
                }
            }
            Some("json") => {}
            other => {
                let help = match other.and_then(|f| {
                    suggestion(f, ["output", "outputs", "output_file", "status", "json"])
                }) {
                    Some(h) => h,
                    None => {
                        "a node has `output`, `output_file`, `status` and `json` (when its output is JSON); a fan-out also `outputs`"
                            .into()
                    }
                };
                self.diags.push(site.error(
                    "template-name",
                    format!("`{}` is not something a node has", r.raw),
                    help,
                ));
            }
        }
    }

    /// `nodes.ID` where no node has that id (nodes whose kind was broken are reported on
    /// their own).
    fn unknown_node(&mut self, site: &Site, id: &str) {
        if self.dropped.iter().any(|d| d == id) {
            return;
        }
        if self.flood("unknown-node") {
            self.diags.push(site.error(
                "unknown-node",
                format!("`nodes.{id}` names no node"),
                String::new(),
            ));
            return;
        }
        let help = suggestion(id, self.dag.ids.iter().map(String::as_str)).unwrap_or_else(|| {
            format!(
                "known nodes: {}",
                list(
                    self.dag
                        .ids
                        .iter()
                        .map(String::as_str)
                        .collect::<std::collections::BTreeSet<_>>()
                        .into_iter()
                )
            )
        });
        self.diags.push(
            site.error("unknown-node", format!("`nodes.{id}` names no node"), help)
                .with_label("no node has this id"),
        );
    }

    /// A node's result is read only by nodes that depend on it, never by itself, never before
    /// any node runs.
    fn upstream(&mut self, site: &Site, id: &str, target: usize) {
        match site.node {
            None => {
                self.diags.push(site.error("not-upstream", format!("`nodes.{id}` cannot be read here"), "workflow-level `env` and agent profiles are rendered before any node runs; move the value into the node that needs it".into()));
            }
            Some(me) if me == target => {
                let help = if site.in_loop() {
                    "inside a loop, read this iteration's result as `{{output}}` and the previous one as `{{loop.previous}}`"
                } else {
                    "a node cannot read its own result"
                };
                self.diags.push(site.error(
                    "not-upstream",
                    format!("node `{id}` reads its own result"),
                    help.into(),
                ));
            }
            Some(me) if !self.depends_on(me, target) => {
                let me_id = &self.dag.ids[me];
                self.diags.push(
                    site.error("not-upstream", format!("node `{me_id}` reads `nodes.{id}` but does not depend on `{id}`"), format!("add `{id}` to `depends_on` of `{me_id}`, so it has run before `{me_id}` starts"))
                        .with_label("not upstream of this node"),
                );
            }
            Some(_) => {}
        }
    }

    /// A fan-out's own settings: its source and `min_success`; and the fan-out settings on a
    /// node that does not fan out, where they do nothing.
    fn fan_out(&mut self, i: usize) {
        let wf = self.wf;
        let node = &wf.nodes[i];
        let Some(for_each) = &node.for_each else {
            let fields = [
                ("key", node.key.as_ref().map(|k| k.span)),
                ("max_parallel", node.max_parallel.as_ref().map(|m| m.span)),
                ("min_success", node.min_success.as_ref().map(|m| m.span)),
            ];
            for (field, span) in fields {
                if let Some(span) = span {
                    self.diags.push(
                        Diagnostic::warning(
                            "no-effect",
                            self.file,
                            span,
                            format!("`{field}` has no effect without `for_each`"),
                        )
                        .with_help("add `for_each:` to run the node once per item, or remove it"),
                    );
                }
            }
            return;
        };
        match for_each {
            ForEach::Invalid(_) => {}
            ForEach::Template(t) => {
                let scope = Scope {
                    item: ItemScope::ForEach,
                    ..Scope::OUTSIDE
                };
                self.template(Some(i), t, scope, "for_each");
            }
            ForEach::List(items) => {
                if let Some(min) = &node.min_success {
                    if min.value as usize > items.value.len() {
                        self.diags.push(
                            Diagnostic::error(
                                "out-of-range",
                                self.file,
                                min.span,
                                format!(
                                    "`min_success` is {} but `for_each` lists {} item{}",
                                    min.value,
                                    items.value.len(),
                                    if items.value.len() == 1 { "" } else { "s" }
                                ),
                            )
                            .with_label("more than there are items")
                            .with_help(
                                "the fan-out could never succeed; lower `min_success` or add items",
                            ),
                        );
                    }
                }
            }
            ForEach::Files(set) => {
                if set.files.is_empty() {
                    self.diags.push(
                        Diagnostic::error("empty-value", self.file, set.span, "`for_each` has no file patterns")
                            .with_help("list glob patterns relative to the repository, like `files: [\"crates/*/Cargo.toml\"]`"),
                    );
                }
                for pattern in &set.files {
                    if let Err(why) = glob_problem(&pattern.value) {
                        self.diags.push(
                            Diagnostic::error(
                                "bad-glob",
                                self.file,
                                pattern.span,
                                format!("bad file pattern `{}`: {why}", pattern.value),
                            )
                            .with_label("not a pattern inside the repository")
                            .with_help("patterns are relative to the repository root, like `src/**/*.rs`; `*` stays within one folder, `**` crosses folders"),
                        );
                    }
                }
            }
        }
    }

    /// Two nodes of one sticky session must be ordered, or one waits for the other. Each node
    /// is reported once, against the first earlier node of its session it is not ordered with.
    fn sessions(&mut self) {
        let wf = self.wf;
        let mut members: HashMap<&str, Vec<usize>> = HashMap::new();
        for (j, b) in wf.nodes.iter().enumerate() {
            let Some(name) = b.sticky_session() else {
                continue;
            };
            let earlier = members.entry(name).or_default();
            let unordered = earlier
                .iter()
                .copied()
                .find(|&i| !self.depends_on(j, i) && !self.depends_on(i, j));
            earlier.push(j);
            let Some(i) = unordered else {
                continue;
            };
            let a = &wf.nodes[i];
            let span = b.session.as_ref().map(|s| s.span).unwrap_or(b.id.span);
            self.diags.push(
                Diagnostic::warning("unordered-session", self.file, span, format!("nodes `{}` and `{}` share session `{name}` but neither depends on the other", a.id.value, b.id.value))
                    .with_secondary(a.session.as_ref().map(|s| s.span).unwrap_or(a.id.span), "also in this session")
                    .with_help(format!("they will take turns in an unspecified order; add `depends_on: [{}]` to `{}` to fix the order", a.id.value, b.id.value)),
            );
        }
    }

    fn unused_inputs(&mut self) {
        // Bash nodes may read inputs from the environment instead of a template.
        let scripts: Vec<&str> = self
            .wf
            .nodes
            .iter()
            .flat_map(|n| match &n.kind {
                NodeKind::Bash(t) => vec![t.value.as_str()],
                NodeKind::Loop(l) => {
                    let body = match &l.body {
                        LoopBody::Bash(t) => Some(t.value.as_str()),
                        _ => None,
                    };
                    body.into_iter()
                        .chain(l.until_bash.as_ref().map(|t| t.value.as_str()))
                        .collect()
                }
                _ => vec![],
            })
            .collect();
        for (name, _) in self.wf.inputs.iter() {
            let var = format!("REINS_INPUT_{}", env_suffix(&name.value));
            if !self.used_inputs.contains(&name.value) && !scripts.iter().any(|s| s.contains(&var))
            {
                self.diags.push(
                    Diagnostic::warning(
                        "unused-input",
                        self.file,
                        name.span,
                        format!("input `{}` is never used", name.value),
                    )
                    .with_help(format!(
                        "read it as `{{{{inputs.{}}}}}` or `$REINS_INPUT_{}`, or remove it",
                        name.value,
                        env_suffix(&name.value)
                    )),
                );
            }
        }
    }
}

/// Where a template reference is checked: the node reading it (`None` for workflow-level
/// values), what it may read, what `args` holds there, and the tag's place in its file.
struct Site<'a> {
    node: Option<usize>,
    scope: Scope,
    args: Args<'a>,
    file: &'a Arc<SourceFile>,
    span: Span,
}

impl Site<'_> {
    /// An error at the tag.
    fn error(&self, code: &'static str, message: String, help: String) -> Diagnostic {
        Diagnostic::error(code, self.file, self.span, message).with_help(help)
    }

    /// True in a loop's body and conditions, where `loop.*` and `output` exist.
    fn in_loop(&self) -> bool {
        self.scope.in_loop
    }
}

/// `artifacts`, `run.id`, `workflow.name`, `env.NAME`: values of the run.
fn run_reference(site: &Site, r: &template::Reference) -> Option<Diagnostic> {
    let root = r.segments[0].as_str();
    let second = r.segments.get(1).map(String::as_str);
    let known = match root {
        "artifacts" => r.segments.len() == 1,
        "run" => second == Some("id") && r.segments.len() == 2,
        "workflow" => second == Some("name") && r.segments.len() == 2,
        _ => r.segments.len() == 2,
    };
    if known {
        return None;
    }
    let shape = match root {
        "artifacts" => "`{{artifacts}}` is the artifacts folder; write `{{artifacts}}/file.md`",
        "run" => "the run has `{{run.id}}`",
        "workflow" => "the workflow has `{{workflow.name}}`",
        _ => "write `{{env.NAME}}`",
    };
    Some(site.error(
        "template-name",
        format!("`{}` is not a known value", r.raw),
        shape.into(),
    ))
}

/// `loop.iteration`, `loop.previous` in a loop; `output` in `until` and `until_bash`.
fn loop_reference(site: &Site, r: &template::Reference) -> Option<Diagnostic> {
    let is_loop = r.segments[0] == "loop";
    if !site.in_loop() {
        return Some(site.error("template-name", format!("`{}` only exists inside a loop", r.raw), "`{{output}}` is read in `until`, `{{loop.iteration}}` and `{{loop.previous}}` in a loop's body and conditions".into()));
    }
    if is_loop {
        let known = matches!(
            r.segments.get(1).map(String::as_str),
            Some("iteration" | "previous")
        ) && r.segments.len() == 2;
        return (!known).then(|| {
            site.error(
                "template-name",
                format!("`{}` is not a known value", r.raw),
                "a loop has `{{loop.iteration}}` and `{{loop.previous}}`".into(),
            )
        });
    }
    let known = site.scope.until && r.segments.len() == 1;
    (!known).then(|| {
        site.error(
            "template-name",
            "`output` is only known in `until` and `until_bash`".into(),
            "in the loop body, read the previous iteration as `{{loop.previous}}`".into(),
        )
    })
}

/// `args.NAME` in a command file: an argument its frontmatter declares.
fn args_reference(site: &Site, r: &template::Reference) -> Option<Diagnostic> {
    let outside = || {
        site.error(
            "template-name",
            "`args` is only known in command files".into(),
            "pass values to a command with the node's `args:`; in a prompt, use inputs or node outputs"
                .into(),
        )
    };
    if r.segments.len() != 2 {
        return match site.args {
            Args::None => Some(outside()),
            _ if r.in_block => None,
            _ => Some(unknown_root(site, r, "args")),
        };
    }
    match site.args {
        Args::Any => None,
        Args::Declared(declared) if declared.iter().any(|a| a.name.value == r.segments[1]) => None,
        Args::Declared(declared) => {
            let name = &r.segments[1];
            let help = suggestion(name, declared.iter().map(|a| a.name.value.as_str()))
                .unwrap_or_else(|| {
                    format!("declare it in the frontmatter: `args: [{{ name: {name} }}]`")
                });
            Some(
                site.error(
                    "unknown-argument",
                    format!("the command reads `args.{name}` but does not declare it"),
                    help,
                )
                .with_label("not in the frontmatter's `args`"),
            )
        }
        Args::None => Some(outside()),
    }
}

/// `{{item}}`, `{{item.FIELD}}` and `{{item_index}}`: the item of a fan-out's instance.
fn item_reference(site: &Site, r: &template::Reference) -> Option<Diagnostic> {
    if r.segments[0] == "item_index" && r.segments.len() > 1 {
        return Some(site.error(
            "template-name",
            format!("`{}` is not a known value", r.raw),
            "`{{item_index}}` is a number: the item's place in the list, from 0".into(),
        ));
    }
    let (message, help) = match site.scope.item {
        ItemScope::Instance => return None,
        ItemScope::None => (
            format!("`{}` only exists in a node with `for_each`", r.raw),
            "add `for_each:` to the node to run it once per item, or read a value through `inputs` or `nodes`",
        ),
        ItemScope::When => (
            format!("`when` of a fan-out cannot read `{}`", r.raw),
            "`when` decides once for the whole fan-out, before the items are known; filter the list upstream instead",
        ),
        ItemScope::ForEach => (
            format!("`for_each` cannot read `{}`", r.raw),
            "`for_each` makes the items; read `inputs` or an upstream node's output there",
        ),
    };
    Some(
        site.error("template-name", message, help.into())
            .with_label("no item here"),
    )
}

/// A name that is no template root.
fn unknown_root(site: &Site, r: &template::Reference, root: &str) -> Diagnostic {
    let roots = || list(TEMPLATE_ROOTS.iter().copied());
    let help = suggestion(root, TEMPLATE_ROOTS.iter().copied())
        .map(|s| format!("{s} (templates read {})", roots()))
        .unwrap_or_else(|| format!("templates read {}", roots()));
    site.error(
        "template-name",
        format!("unknown name `{}` in template", r.raw),
        help,
    )
    .with_label("not a known value")
}

/// Why a `for_each` file pattern is refused: it does not compile, or it reaches out of the
/// repository (absolute, or through `..`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GlobProblem {
    /// It starts at the root of the file system.
    #[error("it is an absolute path")]
    Absolute,
    /// A `..` component climbs out of the repository.
    #[error("it leaves the repository (`..`)")]
    LeavesRepository,
    /// It is not a glob pattern.
    #[error("{0}")]
    Invalid(globset::ErrorKind),
}

/// Checks a `for_each` file pattern: `Err` says why it is refused.
pub fn glob_problem(pattern: &str) -> Result<(), GlobProblem> {
    let path = std::path::Path::new(pattern);
    if path.has_root() || pattern.starts_with('/') {
        return Err(GlobProblem::Absolute);
    }
    if pattern.split(['/', '\\']).any(|c| c == "..") {
        return Err(GlobProblem::LeavesRepository);
    }
    globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map(|_| ())
        .map_err(|e| GlobProblem::Invalid(e.kind().clone()))
}

/// "a `bash` node", "an `approval` node".
/// The built-in profile (`claude`, `codex`) the profile `name` ends at, following `use:` as
/// the engine does: a profile using nothing is Claude's unless it refines `codex` itself.
pub fn builtin_base<'a>(wf: &'a Workflow, name: &'a str) -> &'a str {
    let mut seen: Vec<&str> = Vec::new();
    let mut current = name;
    while let Some(profile) = wf.agents.get(current) {
        if seen.contains(&current) {
            break;
        }
        seen.push(current);
        match &profile.uses {
            Some(base) => current = &base.value,
            None => break,
        }
    }
    if BUILTIN_AGENTS.contains(&current) {
        current
    } else {
        BUILTIN_AGENT
    }
}

/// Warnings for the settings the Codex CLI has no flag for: `allowed_tools`,
/// `disallowed_tools` and `max_turns` of a profile that ends at `codex`, or of an agent node
/// that runs on one. Public so `reins run --agent codex` can warn about a workflow written
/// for another agent.
pub fn ignored_by_codex(wf: &Workflow, file: &Arc<SourceFile>) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let mut warn = |span: Span, field: &str, whose: String| {
        out.push(
            Diagnostic::warning(
                "no-effect",
                file,
                span,
                format!("`{field}` has no effect on {whose}: the Codex CLI has no such setting"),
            )
            .with_help(
                "limit what Codex may do with the profile's `sandbox:` (`read-only`, \
                 `workspace-write`) and bound it with `timeout:` or `budget:`; remove this",
            ),
        );
    };
    for (name, profile) in wf.agents.iter() {
        if builtin_base(wf, &name.value) != "codex" {
            continue;
        }
        let whose = format!("agent profile `{}`, which runs on Codex", name.value);
        if let Some(t) = profile.allowed_tools.first() {
            warn(t.span, "allowed_tools", whose.clone());
        }
        if let Some(t) = profile.disallowed_tools.first() {
            warn(t.span, "disallowed_tools", whose.clone());
        }
        if let Some(m) = &profile.max_turns {
            warn(m.span, "max_turns", whose);
        }
    }
    for node in wf.nodes.iter().filter(|n| n.kind.uses_agent()) {
        let profile = node
            .agent
            .as_ref()
            .or(wf.defaults.agent.as_ref())
            .map_or(BUILTIN_AGENT, |a| a.value.as_str());
        if builtin_base(wf, profile) != "codex" {
            continue;
        }
        let whose = format!(
            "node `{}`, which runs on Codex (`{profile}`)",
            node.id.value
        );
        if let Some(t) = node.allowed_tools.first() {
            warn(t.span, "allowed_tools", whose.clone());
        }
        if let Some(m) = &node.max_turns {
            warn(m.span, "max_turns", whose);
        }
    }
    out
}

fn kind_phrase(kind: &NodeKind) -> String {
    let name = kind.name();
    let article = if name.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} `{name}` node")
}

fn list<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<String> = names.map(|n| format!("`{n}`")).collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}
