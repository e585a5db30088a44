//! The typed model of a workflow file. Every value keeps its source span.
//!
//! The same types generate the JSON Schema (`reins schema`); their doc comments become the
//! schema's descriptions, and a test checks that the loader accepts exactly the keys the schema
//! lists, so the two cannot drift apart.

use std::sync::Arc;
use std::time::Duration;

use schemars::JsonSchema;

use crate::source::{SourceFile, Span, Spanned};

/// A template string: Handlebars, rendered in strict mode (an unknown name is an error).
pub type Template = Spanned<String>;

/// A reins workflow: a DAG of nodes, run by `reins run`.
#[derive(Debug, Clone, JsonSchema)]
#[schemars(deny_unknown_fields, title = "reins workflow")]
pub struct Workflow {
    /// The file it was loaded from.
    #[schemars(skip)]
    pub source: Arc<SourceFile>,
    /// The workflow's name; defaults to the file name without `.yaml`.
    #[schemars(with = "Option<String>")]
    pub name: Spanned<String>,
    /// One line saying what the workflow does, shown by `reins list`.
    pub description: Option<Spanned<String>>,
    /// Values a run is started with (`reins run WF --input name=value`), read as `{{inputs.NAME}}`.
    #[schemars(default, with = "NamedMap<Option<Input>>")]
    pub inputs: NamedMap<Input>,
    /// Environment variables for every bash node (and agent process).
    #[schemars(default)]
    pub env: NamedMap<Template>,
    /// Defaults for every node.
    #[schemars(default)]
    pub defaults: Defaults,
    /// How many nodes may run at once. Defaults to every ready node, up to 64.
    #[schemars(range(min = 1))]
    pub concurrency: Option<Spanned<u32>>,
    /// Named agent profiles; `claude` (Claude Code) and `codex` (Codex CLI) are built in.
    #[schemars(default)]
    pub agents: NamedMap<AgentProfile>,
    /// What the whole run's agents may spend; past it no new agent turn starts and the run fails.
    pub budget: Option<Budget>,
    /// `worktree` runs the workflow in a fresh git worktree on a new branch.
    pub isolation: Option<Spanned<Isolation>>,
    /// The node whose output is the workflow's result when another workflow runs it as a child
    /// (`workflow:` node); by default its single sink (the one node nothing depends on).
    #[schemars(regex(pattern = r"^[A-Za-z0-9_-]+$"))]
    pub output: Option<Spanned<String>>,
    /// The nodes of the DAG, in any order (dependencies decide the order of execution).
    pub nodes: Vec<Node>,
}

/// Where a run works.
#[derive(Debug, Clone, Copy, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Isolation {
    /// In the current checkout.
    None,
    /// In a fresh git worktree on the branch `reins/<workflow>-<run-id>`.
    Worktree,
}

/// A declared input of a workflow.
#[derive(Debug, Clone, Default, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Input {
    /// What the input is for.
    pub description: Option<Spanned<String>>,
    /// A run fails to start unless the input is given (or has a default).
    #[schemars(default)]
    pub required: Option<Spanned<bool>>,
    /// The value used when the input is not given.
    pub default: Option<Spanned<String>>,
}

/// Defaults applied to every node that does not set the field itself.
#[derive(Debug, Clone, Default, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Defaults {
    /// The agent profile of `prompt` and `command` nodes (default `claude`).
    pub agent: Option<Spanned<String>>,
    /// The model agents use, unless a profile or node says otherwise.
    pub model: Option<Spanned<String>>,
    /// Wall-clock limit of a node, like `30m`.
    #[schemars(with = "Option<DurationText>")]
    pub timeout: Option<Spanned<Duration>>,
    /// Limit on an agent's silence (no output), like `5m`.
    #[schemars(with = "Option<DurationText>")]
    pub idle_timeout: Option<Spanned<Duration>>,
    /// Extra attempts of a failed node.
    pub retries: Option<Spanned<u32>>,
    /// The shell of bash nodes (default `bash`).
    pub shell: Option<Spanned<String>>,
}

/// Limits on what agents spend, counted over a node's turns (`budget:` of a node) or over the
/// whole run (`budget:` at the top level).
#[derive(Debug, Clone, Default, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Budget {
    /// Most US dollars, as the agent CLIs report them (Codex reports no cost: only tokens count there).
    #[schemars(range(min = 0))]
    pub max_cost_usd: Option<Spanned<f64>>,
    /// Most tokens: input (cached or not) plus output.
    #[schemars(range(min = 1))]
    pub max_tokens: Option<Spanned<u64>>,
}

/// A named agent profile: which CLI runs `prompt` and `command` nodes, and how.
#[derive(Debug, Clone, Default, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct AgentProfile {
    /// The profile this one extends (`claude`, or another profile of this file).
    #[serde(rename = "use")]
    pub uses: Option<Spanned<String>>,
    /// The executable to run instead of the base profile's (`claude` on PATH).
    pub program: Option<Spanned<String>>,
    /// Model alias or full id (`sonnet`, `opus`, `claude-sonnet-4-5`...).
    pub model: Option<Spanned<String>>,
    /// Claude Code permission mode (`default`, `acceptEdits`, `bypassPermissions`, `dontAsk`, `plan`);
    /// on Codex `bypassPermissions` means no sandbox.
    pub permission_mode: Option<Spanned<String>>,
    /// Codex sandbox: `read-only`, `workspace-write`, `danger-full-access` or `none` (no sandbox at all).
    pub sandbox: Option<Spanned<String>>,
    /// Tools the agent may use without asking, like `Read`, `Edit` or `Bash(git *)`.
    #[schemars(default)]
    pub allowed_tools: Vec<Spanned<String>>,
    /// Tools the agent may not use at all.
    #[schemars(default)]
    pub disallowed_tools: Vec<Spanned<String>>,
    /// Limit on model calls in one turn.
    #[schemars(range(min = 1))]
    pub max_turns: Option<Spanned<u32>>,
    /// Extra command-line arguments for the agent CLI.
    #[schemars(default)]
    pub args: Vec<Spanned<String>>,
    /// Environment variables for the agent process.
    #[schemars(default)]
    pub env: NamedMap<Template>,
    /// Lets the agent use reins' control plane: run `reins` and write the run state under
    /// `.reins/runs/` (answers, events, `run.json`). Off by default: an agent is denied both.
    pub allow_control_plane: Option<Spanned<bool>>,
}

/// When a node runs, given how its dependencies ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// Every dependency succeeded (the default).
    #[default]
    AllSuccess,
    /// Every dependency settled, whatever its status.
    AllDone,
    /// At least one dependency succeeded.
    OneSuccess,
    /// No dependency failed (skipped ones are fine).
    NoneFailed,
}

impl Trigger {
    /// Every trigger rule, as written in YAML.
    pub const ALL: [(&'static str, Trigger); 4] = [
        ("all_success", Trigger::AllSuccess),
        ("all_done", Trigger::AllDone),
        ("one_success", Trigger::OneSuccess),
        ("none_failed", Trigger::NoneFailed),
    ];

    /// The rule as written in YAML.
    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, t)| *t == self)
            .map(|(s, _)| *s)
            .unwrap_or("all_success")
    }
}

/// One node of the DAG: exactly one of `bash`, `prompt`, `command`, `approval`, `loop`, `workflow`.
#[derive(Debug, Clone, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Node {
    /// Unique id (`[A-Za-z0-9_-]+`), used by `depends_on` and `{{nodes.ID.output}}`.
    #[schemars(regex(pattern = r"^[A-Za-z0-9_-]+$"))]
    pub id: Spanned<String>,
    /// What the node does.
    #[serde(flatten)]
    pub kind: NodeKind,
    /// Where the node's mapping starts (its first key).
    #[schemars(skip)]
    pub span: Span,
    /// Ids of the nodes that must settle before this one starts.
    #[schemars(default)]
    pub depends_on: Vec<Spanned<String>>,
    /// A condition: the node runs only if it renders to something other than empty, `false` or `0`.
    pub when: Option<Template>,
    /// Which outcomes of the dependencies let the node run (default `all_success`).
    pub trigger: Option<Spanned<Trigger>>,
    /// Wall-clock limit, like `90s` or `1h30m`.
    #[schemars(with = "Option<DurationText>")]
    pub timeout: Option<Spanned<Duration>>,
    /// Limit on an agent's silence (no output), like `5m`.
    #[schemars(with = "Option<DurationText>")]
    pub idle_timeout: Option<Spanned<Duration>>,
    /// Extra attempts after a failure: `retries: 2` runs the node at most 3 times.
    pub retries: Option<Spanned<u32>>,
    /// Environment variables for this node (values are templates).
    #[schemars(default)]
    pub env: NamedMap<Template>,
    /// Working directory, relative to the repository root.
    pub cwd: Option<Template>,
    /// A failure of this node does not fail the run (its dependents still see `failed`).
    pub continue_on_error: Option<Spanned<bool>>,
    /// The shell of a bash node (default `bash`).
    pub shell: Option<Spanned<String>>,
    /// Agent profile of a `prompt`/`command` node (default from `defaults.agent`, else `claude`).
    pub agent: Option<Spanned<String>>,
    /// Model of an agent node, overriding the profile's.
    pub model: Option<Spanned<String>>,
    /// `fresh` (default): a new conversation; any other name: continue that sticky conversation.
    #[schemars(regex(pattern = r"^[A-Za-z0-9_-]+$"))]
    pub session: Option<Spanned<String>>,
    /// Tools the agent may use without asking, added to the profile's.
    #[schemars(default)]
    pub allowed_tools: Vec<Spanned<String>>,
    /// Limit on model calls in one agent turn.
    #[schemars(range(min = 1))]
    pub max_turns: Option<Spanned<u32>>,
    /// Files the node must leave in the artifacts folder, or it fails.
    #[schemars(default)]
    pub outputs: Vec<Spanned<String>>,
    /// What this node's agent turns may spend in all (every attempt and loop iteration).
    pub budget: Option<Budget>,
    /// Arguments of a `command` node, read in the command file as `{{args.NAME}}`.
    #[schemars(default)]
    pub args: NamedMap<Template>,
    /// Inputs of a `workflow` node's child run (values are templates, passed as data).
    #[schemars(default)]
    pub inputs: NamedMap<Template>,
    /// `worktree` runs a `workflow` node's child in a git worktree of its own.
    pub isolation: Option<Spanned<Isolation>>,
    /// Fan-out: one instance `ID[KEY]` of the node per item, each reading `{{item}}`.
    pub for_each: Option<ForEach>,
    /// The key of each instance (a template reading `{{item}}`); by default the item's index.
    pub key: Option<Template>,
    /// Most instances of a fan-out running at once (the run's `concurrency` still applies).
    #[schemars(range(min = 1))]
    pub max_parallel: Option<Spanned<u32>>,
    /// A fan-out succeeds when at least this many instances succeed (default: all of them).
    #[schemars(range(min = 1))]
    pub min_success: Option<Spanned<u32>>,
}

/// The most items one fan-out may have; past it the node fails (a list in the file is refused
/// by `validate`).
pub const MAX_ITEMS: usize = 10_000;

/// Where the items of a fan-out come from.
#[derive(Debug, Clone, JsonSchema)]
#[serde(untagged)]
pub enum ForEach {
    /// A YAML list: each entry (a string, a number or a mapping) is one item.
    #[schemars(with = "Vec<serde_json::Value>")]
    List(Spanned<Vec<serde_json::Value>>),
    /// A template, expanded when its nodes have settled: a JSON array, or one item per line.
    Template(Template),
    /// The files of the repository matching glob patterns; each item is a path.
    Files(FileSet),
    /// A `for_each` the loader could not read (and reported): the node still counts as a
    /// fan-out, so its templates are checked as an instance's.
    #[schemars(skip)]
    Invalid(Span),
}

/// Files matched by glob patterns, relative to the repository root.
#[derive(Debug, Clone, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct FileSet {
    /// Glob patterns like `crates/*/Cargo.toml` or `src/**/*.rs`.
    pub files: Vec<Spanned<String>>,
    /// `true` also matches files `.gitignore` leaves out (default `false`).
    pub gitignored: Option<Spanned<bool>>,
    /// Where `for_each:` stands.
    #[schemars(skip)]
    pub span: Span,
}

impl ForEach {
    /// Where the value stands in the file.
    pub fn span(&self) -> Span {
        match self {
            ForEach::List(l) => l.span,
            ForEach::Template(t) => t.span,
            ForEach::Files(f) => f.span,
            ForEach::Invalid(span) => *span,
        }
    }
}

/// What a node does.
#[derive(Debug, Clone, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    /// A shell script, run with `bash -c` in the repository root. Substituted values reach it as environment variables, never as script text.
    Bash(Template),
    /// A prompt for a coding agent.
    Prompt(Template),
    /// A Markdown prompt template from `.workflows/commands/NAME.md` (then user-global, then bundled).
    Command(Spanned<String>),
    /// A human gate: the run pauses here until `reins approve` or `reins reject`.
    #[schemars(with = "ApprovalSchema")]
    Approval(Approval),
    /// Repeats a body until a condition holds.
    Loop(Box<LoopSpec>),
    /// Runs another workflow (project, user or bundled) as a child run; its output is this node's.
    Workflow(Spanned<String>),
}

impl NodeKind {
    /// The YAML key of the kind.
    pub fn name(&self) -> &'static str {
        match self {
            NodeKind::Bash(_) => "bash",
            NodeKind::Prompt(_) => "prompt",
            NodeKind::Command(_) => "command",
            NodeKind::Approval(_) => "approval",
            NodeKind::Loop(_) => "loop",
            NodeKind::Workflow(_) => "workflow",
        }
    }

    /// Whether it runs a coding agent (directly or as a loop body).
    pub fn uses_agent(&self) -> bool {
        match self {
            NodeKind::Prompt(_) | NodeKind::Command(_) => true,
            NodeKind::Loop(l) => matches!(l.body, LoopBody::Prompt(_) | LoopBody::Command(_)),
            _ => false,
        }
    }
}

/// An approval gate.
#[derive(Debug, Clone, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Approval {
    /// What the human is asked (a template).
    pub message: Template,
    /// How long to wait; an unanswered gate is then rejected.
    #[schemars(with = "Option<DurationText>")]
    pub timeout: Option<Spanned<Duration>>,
}

/// `approval:` is a message, or a mapping with `message` and `timeout`.
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum ApprovalSchema {
    Message(String),
    Full(Approval),
}

/// A loop: its body runs again until `until`/`until_bash` says done, at most `max_iterations` times.
#[derive(Debug, Clone, JsonSchema)]
#[schemars(deny_unknown_fields)]
#[schemars(extend("anyOf" = [{"required": ["until"]}, {"required": ["until_bash"]}]))]
pub struct LoopSpec {
    /// What each iteration runs: exactly one of `bash`, `prompt`, `command`.
    #[serde(flatten)]
    pub body: LoopBody,
    /// Done when this renders true; it can read `{{output}}` and `{{loop.iteration}}`.
    pub until: Option<Template>,
    /// Done when this bash script exits 0.
    pub until_bash: Option<Template>,
    /// Required upper bound; reaching it without being done fails the node.
    #[schemars(range(min = 1))]
    pub max_iterations: Spanned<u32>,
    /// `true` starts a new agent session for each iteration; by default they continue one.
    pub fresh: Option<Spanned<bool>>,
}

/// The body of a loop.
#[derive(Debug, Clone, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LoopBody {
    /// A shell script.
    Bash(Template),
    /// A prompt for a coding agent.
    Prompt(Template),
    /// A command file.
    Command(Spanned<String>),
}

/// A duration like `500ms`, `30s`, `10m`, `1h30m` or `2d`.
struct DurationText;

impl JsonSchema for DurationText {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": r"^\s*([0-9]+\s*(ms|s|m|h|d)\s*)+$",
            "description": "A duration like `500ms`, `30s`, `10m`, `1h30m` or `2d`.",
        })
    }
}

/// A mapping from names to values, in source order.
#[derive(Debug, Clone)]
pub struct NamedMap<T>(pub Vec<(Spanned<String>, T)>);

impl<T> Default for NamedMap<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<T> NamedMap<T> {
    /// The value of a name.
    pub fn get(&self, name: &str) -> Option<&T> {
        self.0.iter().find(|(k, _)| k.value == name).map(|(_, v)| v)
    }

    /// Names and values in order.
    pub fn iter(&self) -> impl Iterator<Item = (&Spanned<String>, &T)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    /// The names in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| k.value.as_str())
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl<T: JsonSchema> JsonSchema for NamedMap<T> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        format!("Map_of_{}", T::schema_name()).into()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "object",
            "additionalProperties": generator.subschema_for::<T>(),
        })
    }
}

impl Workflow {
    /// The node with this id.
    pub fn node(&self, id: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.id.value == id)
    }

    /// The node whose output is the workflow's result as a child run: `output:`, else the
    /// single node nothing depends on; `None` when there are several such nodes and no `output:`.
    pub fn result_node(&self) -> Option<&str> {
        if let Some(o) = &self.output {
            return Some(o.value.as_str());
        }
        let mut sinks = self.nodes.iter().filter(|n| {
            !self
                .nodes
                .iter()
                .any(|m| m.depends_on.iter().any(|d| d.value == n.id.value))
        });
        match (sinks.next(), sinks.next()) {
            (Some(only), None) => Some(only.id.value.as_str()),
            _ => None,
        }
    }

    /// The workflows its `workflow:` nodes run, by name, each once, in node order.
    pub fn children(&self) -> Vec<&Spanned<String>> {
        let mut seen: Vec<&Spanned<String>> = Vec::new();
        for n in &self.nodes {
            if let NodeKind::Workflow(name) = &n.kind {
                if !seen.iter().any(|s| s.value == name.value) {
                    seen.push(name);
                }
            }
        }
        seen
    }
}

impl Workflow {
    /// The dependency graph of the nodes, numbered by their position in `nodes:`.
    pub fn dag(&self) -> crate::graph::Dag {
        crate::graph::Dag::new(self.nodes.iter().map(|n| {
            (
                n.id.value.as_str(),
                n.depends_on.iter().map(|d| d.value.as_str()),
            )
        }))
    }
}

/// Where a template of a node sits: one of its fields holding `{{...}}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateField<'a> {
    /// What the node runs: the bash script, the prompt, the command file's text, the approval
    /// message, or a loop's body.
    Body,
    /// The `when` condition.
    When,
    /// The `cwd`.
    Cwd,
    /// One `env:` value.
    Env(&'a str),
    /// A loop's `until` condition.
    Until,
    /// A loop's `until_bash` script.
    UntilBash,
    /// One `args:` value of a command node.
    Arg(&'a str),
    /// One `inputs:` value of a `workflow` node.
    Input(&'a str),
    /// A fan-out's `key`, rendered once per item.
    Key,
}

impl Node {
    /// Every template written in the node, in a fixed order: the body (unless it is a command
    /// file's, see [`Node::command`]), `until`, `until_bash`, `when`, `cwd`, then each `env:`
    /// and `args:` value, each `inputs:` value of a `workflow` node, then a fan-out's `key` (its `for_each` is rendered before there is
    /// an item, see [`ForEach`]). Validation and the plan both walk a node through this.
    pub fn templates(&self) -> impl Iterator<Item = (TemplateField<'_>, &Template)> {
        let body = match &self.kind {
            NodeKind::Bash(t) | NodeKind::Prompt(t) => Some(t),
            NodeKind::Approval(a) => Some(&a.message),
            NodeKind::Command(_) | NodeKind::Workflow(_) => None,
            NodeKind::Loop(l) => match &l.body {
                LoopBody::Bash(t) | LoopBody::Prompt(t) => Some(t),
                LoopBody::Command(_) => None,
            },
        };
        let (until, until_bash) = match &self.kind {
            NodeKind::Loop(l) => (l.until.as_ref(), l.until_bash.as_ref()),
            _ => (None, None),
        };
        let fixed = [
            (TemplateField::Body, body),
            (TemplateField::Until, until),
            (TemplateField::UntilBash, until_bash),
            (TemplateField::When, self.when.as_ref()),
            (TemplateField::Cwd, self.cwd.as_ref()),
        ];
        fixed
            .into_iter()
            .filter_map(|(field, t)| Some((field, t?)))
            .chain(
                self.env
                    .iter()
                    .map(|(k, v)| (TemplateField::Env(k.value.as_str()), v)),
            )
            .chain(
                self.args
                    .iter()
                    .map(|(k, v)| (TemplateField::Arg(k.value.as_str()), v)),
            )
            .chain(
                self.inputs
                    .iter()
                    .map(|(k, v)| (TemplateField::Input(k.value.as_str()), v)),
            )
            .chain(self.key.iter().map(|k| (TemplateField::Key, k)))
    }

    /// The command file whose text is the node's body: a `command:` node's, or a loop's
    /// whose body is one.
    pub fn command(&self) -> Option<&Spanned<String>> {
        match &self.kind {
            NodeKind::Command(name) => Some(name),
            NodeKind::Loop(l) => match &l.body {
                LoopBody::Command(name) => Some(name),
                _ => None,
            },
            _ => None,
        }
    }

    /// True when a field is a bash script (its values are passed by reference).
    pub fn is_script(&self, field: TemplateField) -> bool {
        match field {
            TemplateField::UntilBash => true,
            TemplateField::Body => match &self.kind {
                NodeKind::Bash(_) => true,
                NodeKind::Loop(l) => matches!(l.body, LoopBody::Bash(_)),
                _ => false,
            },
            _ => false,
        }
    }

    /// The trigger rule, defaulting to `all_success`.
    pub fn trigger(&self) -> Trigger {
        self.trigger.as_ref().map(|t| t.value).unwrap_or_default()
    }

    /// True for a fan-out (`for_each:`).
    pub fn fans_out(&self) -> bool {
        self.for_each.is_some()
    }

    /// The sticky session name, or `None` for a fresh session.
    pub fn sticky_session(&self) -> Option<&str> {
        self.session
            .as_ref()
            .map(|s| s.value.as_str())
            .filter(|s| *s != "fresh")
    }
}

/// The built-in agent profile every node runs on unless told otherwise.
pub const BUILTIN_AGENT: &str = "claude";
/// Every built-in agent profile: one per harness (`claude` for Claude Code, `codex` for Codex).
pub const BUILTIN_AGENTS: &[&str] = &["claude", "codex"];

/// `a-b.c` -> `A_B_C`: how names appear in `REINS_*` environment variables.
pub fn env_suffix(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}
