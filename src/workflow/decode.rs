//! From the YAML tree to the typed model, collecting every problem on the way.

use std::sync::Arc;
use std::time::Duration;

use super::duration;
use super::model::*;
use super::yaml::{Node as Y, Value};
use crate::diagnostic::{suggestion, Diagnostic};
use crate::source::{SourceFile, Span, Spanned};

/// Keys of the top level.
pub const WORKFLOW_KEYS: &[&str] = &[
    "name",
    "description",
    "inputs",
    "env",
    "defaults",
    "concurrency",
    "agents",
    "budget",
    "isolation",
    "output",
    "nodes",
];
/// Values of a profile's `sandbox`: Codex's sandbox modes, and `none` for no sandbox at all.
pub const SANDBOX_MODES: &[&str] = &["read-only", "workspace-write", "danger-full-access", "none"];
/// Keys of a `budget` (top level or node).
pub const BUDGET_KEYS: &[&str] = &["max_cost_usd", "max_tokens"];
/// Keys of one input.
pub const INPUT_KEYS: &[&str] = &["description", "required", "default"];
/// Keys of `defaults`.
pub const DEFAULTS_KEYS: &[&str] = &[
    "agent",
    "model",
    "timeout",
    "idle_timeout",
    "retries",
    "shell",
];
/// Keys of an agent profile.
pub const PROFILE_KEYS: &[&str] = &[
    "use",
    "program",
    "model",
    "permission_mode",
    "sandbox",
    "allowed_tools",
    "disallowed_tools",
    "max_turns",
    "args",
    "env",
    "allow_control_plane",
];
/// The node kinds: a node has exactly one of these keys.
pub const KIND_KEYS: &[&str] = &["bash", "prompt", "command", "approval", "loop", "workflow"];
/// Keys of a node besides its kind.
pub const NODE_KEYS: &[&str] = &[
    "id",
    "depends_on",
    "when",
    "trigger",
    "timeout",
    "idle_timeout",
    "retries",
    "env",
    "cwd",
    "continue_on_error",
    "shell",
    "agent",
    "model",
    "session",
    "allowed_tools",
    "max_turns",
    "outputs",
    "budget",
    "args",
    "inputs",
    "isolation",
    "for_each",
    "key",
    "max_parallel",
    "min_success",
];
/// Keys of a `for_each: { files: [...] }` mapping.
pub const FILE_SET_KEYS: &[&str] = &["files", "gitignored"];
/// Keys of an `approval` mapping.
pub const APPROVAL_KEYS: &[&str] = &["message", "timeout"];
/// Kinds a loop body can be.
pub const LOOP_BODY_KEYS: &[&str] = &["bash", "prompt", "command"];
/// Keys of a `loop` besides its body.
pub const LOOP_KEYS: &[&str] = &["until", "until_bash", "max_iterations", "fresh"];

/// What decoding produced: the best model it could build, and what was wrong.
pub struct Decoded {
    /// `None` when the file is not a mapping at all.
    pub workflow: Option<Workflow>,
    /// Ids of nodes left out of the model because their kind was missing or ambiguous;
    /// references to them are not reported again as unknown.
    pub dropped_ids: Vec<String>,
    /// Every problem found.
    pub diagnostics: Vec<Diagnostic>,
}

/// Decodes a parsed YAML document. `default_name` is used when the file sets no `name`.
pub fn decode(file: &Arc<SourceFile>, root: &Y, default_name: &str) -> Decoded {
    let mut cx = Cx::new(file);
    let workflow = cx.workflow(root, default_name);
    Decoded {
        workflow,
        dropped_ids: cx.dropped_ids,
        diagnostics: cx.diags,
    }
}

/// The decoder's state: the file and every problem found so far. Its scalar and key helpers
/// also decode command-file frontmatter ([`super::command_file`]).
pub(crate) struct Cx<'a> {
    file: &'a Arc<SourceFile>,
    diags: Vec<Diagnostic>,
    dropped_ids: Vec<String>,
}

type Entries<'y> = &'y [(Spanned<String>, Y)];

impl<'a> Cx<'a> {
    /// A decoder for a file, with no problems yet.
    pub(crate) fn new(file: &'a Arc<SourceFile>) -> Self {
        Self {
            file,
            diags: Vec::new(),
            dropped_ids: Vec::new(),
        }
    }

    /// The file being decoded.
    pub(crate) fn file(&self) -> &'a Arc<SourceFile> {
        self.file
    }

    /// Records a problem built elsewhere.
    pub(crate) fn push(&mut self, diagnostic: Diagnostic) {
        self.diags.push(diagnostic);
    }

    /// Every problem found.
    pub(crate) fn into_diagnostics(self) -> Vec<Diagnostic> {
        self.diags
    }

    pub(crate) fn error(
        &mut self,
        code: &'static str,
        span: Span,
        message: impl Into<String>,
    ) -> &mut Diagnostic {
        self.diags
            .push(Diagnostic::error(code, self.file, span, message));
        self.diags.last_mut().expect("just pushed")
    }

    pub(crate) fn wrong_type(&mut self, node: &Y, what: &str, expected: &str) {
        // Keys are quoted (`retries`); descriptions like "a node" are not.
        let subject = if what.contains(' ') {
            what.to_string()
        } else {
            format!("`{what}`")
        };
        let help = match (&node.value, expected) {
            (Value::Str(s), "true or false")
                if ["yes", "no", "on", "off", "y", "n", "True", "False"].contains(&s.as_str()) =>
            {
                Some("YAML 1.2 booleans are only `true` and `false`".to_string())
            }
            (Value::Null, _) if what.contains(' ') => {
                Some("fill it in, or remove the empty entry".to_string())
            }
            (Value::Null, _) => Some(format!("give {subject} a value, or remove the key")),
            _ => None,
        };
        let d = self.error(
            "wrong-type",
            node.span,
            format!("{subject} must be {expected}, found {}", node.value.kind()),
        );
        d.set_label(format!("expected {expected}"));
        d.help = help;
    }

    /// The entries of a mapping, or an error.
    fn map<'y>(&mut self, node: &'y Y, what: &str) -> Option<Entries<'y>> {
        match &node.value {
            Value::Map(entries) => Some(entries),
            _ => {
                self.wrong_type(node, what, "a mapping");
                None
            }
        }
    }

    /// Reports every key not in `allowed`, with a did-you-mean.
    pub(crate) fn check_keys(
        &mut self,
        entries: Entries,
        allowed: &[&[&str]],
        context: &str,
        elsewhere: &[(&[&str], &str)],
    ) {
        for (key, _) in entries {
            if allowed
                .iter()
                .any(|list| list.contains(&key.value.as_str()))
            {
                continue;
            }
            // A key that is right somewhere else is misplaced, not misspelt: say where it goes.
            let candidates = allowed.iter().flat_map(|l| l.iter().copied());
            let help = elsewhere
                .iter()
                .find(|(list, _)| list.contains(&key.value.as_str()))
                .map(|(_, place)| format!("`{}` belongs {place}", key.value))
                .or_else(|| suggestion(&key.value, candidates));
            let help = help.unwrap_or_else(|| {
                let all: Vec<String> = allowed
                    .iter()
                    .flat_map(|l| l.iter())
                    .map(|k| format!("`{k}`"))
                    .collect();
                format!("{context} accepts {}", english_list(&all))
            });
            let message = format!("unknown key `{}` in {context}", key.value);
            self.error("unknown-key", key.span, message).help = Some(help);
        }
    }

    pub(crate) fn string(&mut self, node: &Y, what: &str) -> Option<Spanned<String>> {
        match &node.value {
            Value::Str(s) => Some(Spanned::new(s.clone(), node.span)),
            // `bash: true`, `default: 3`: scalars read as the text they were written as.
            Value::Bool(_) | Value::Int(_) | Value::Float(_) => Some(Spanned::new(
                self.file.slice(node.span).trim().to_string(),
                node.span,
            )),
            _ => {
                self.wrong_type(node, what, "a string");
                None
            }
        }
    }

    fn nonempty_string(&mut self, node: &Y, what: &str) -> Option<Spanned<String>> {
        let s = self.string(node, what)?;
        if s.value.trim().is_empty() {
            self.error("empty-value", node.span, format!("`{what}` is empty"))
                .help = Some(format!("give `{what}` a value, or remove the key"));
            return None;
        }
        Some(s)
    }

    /// A `shell:` command line, split into words the way a POSIX shell would (`shlex`).
    fn shell(&mut self, node: &Y) -> Option<Spanned<String>> {
        let s = self.nonempty_string(node, "shell")?;
        if shlex::split(&s.value).is_none() {
            self.error(
                "bad-shell",
                node.span,
                "`shell` has an unclosed quote or a trailing backslash".to_string(),
            )
            .help = Some("close the quote, like `bash -c 'set -eu; exec bash'`, or drop it".into());
            return None;
        }
        Some(s)
    }

    pub(crate) fn bool(&mut self, node: &Y, what: &str) -> Option<Spanned<bool>> {
        match node.value {
            Value::Bool(b) => Some(Spanned::new(b, node.span)),
            _ => {
                self.wrong_type(node, what, "true or false");
                None
            }
        }
    }

    fn u32(&mut self, node: &Y, what: &str, min: u32) -> Option<Spanned<u32>> {
        match node.value {
            Value::Int(i) if i >= i64::from(min) && i <= i64::from(u32::MAX) => {
                Some(Spanned::new(i as u32, node.span))
            }
            Value::Int(i) => {
                self.error(
                    "out-of-range",
                    node.span,
                    format!("`{what}` must be at least {min}, found {i}"),
                )
                .set_label(format!("must be {min} or more"));
                None
            }
            _ => {
                self.wrong_type(node, what, "a whole number");
                None
            }
        }
    }

    fn duration(&mut self, node: &Y, what: &str) -> Option<Spanned<Duration>> {
        let text = match &node.value {
            Value::Str(s) => s.clone(),
            Value::Int(i) => {
                self.error(
                    "bad-duration",
                    node.span,
                    format!("`{what}` needs a unit of time"),
                )
                .help = Some(format!("write `{i}s` for seconds or `{i}m` for minutes"));
                return None;
            }
            _ => {
                self.wrong_type(node, what, "a duration like `30s` or `10m`");
                return None;
            }
        };
        match duration::parse(&text) {
            Ok(d) if d.is_zero() => {
                self.error(
                    "bad-duration",
                    node.span,
                    format!("`{what}` must be longer than zero"),
                )
                .help = Some(format!(
                    "give a positive duration like `30s`, or remove `{what}` for no limit"
                ));
                None
            }
            Ok(d) => Some(Spanned::new(d, node.span)),
            Err(why) => {
                self.error(
                    "bad-duration",
                    node.span,
                    format!("bad duration in `{what}`: {why}"),
                )
                .help =
                    Some("use a number and a unit: ms, s, m, h or d, like `90s` or `1h30m`".into());
                None
            }
        }
    }

    /// A list of strings; a single string is a list of one.
    fn string_list(&mut self, node: &Y, what: &str) -> Vec<Spanned<String>> {
        match &node.value {
            Value::Seq(items) => items
                .iter()
                .filter_map(|i| self.nonempty_string(i, what))
                .collect(),
            Value::Str(_) => self.nonempty_string(node, what).into_iter().collect(),
            Value::Null => Vec::new(),
            _ => {
                self.wrong_type(node, what, "a list of strings");
                Vec::new()
            }
        }
    }

    fn string_map(&mut self, node: &Y, what: &str) -> NamedMap<Template> {
        let Some(entries) = self.map(node, what) else {
            return NamedMap::default();
        };
        let mut out = Vec::new();
        for (key, value) in entries {
            if let Some(v) = self.string(value, &format!("{what}.{}", key.value)) {
                out.push((key.clone(), v));
            }
        }
        NamedMap(out)
    }

    fn workflow(&mut self, root: &Y, default_name: &str) -> Option<Workflow> {
        let entries = match &root.value {
            Value::Map(entries) => entries,
            Value::Null => {
                self.diags.push(
                    Diagnostic::file_error("empty-file", self.file, "the workflow file is empty")
                        .with_help("a workflow needs at least `nodes:` with one node, like `nodes: [{id: hello, bash: echo hello}]`"),
                );
                return None;
            }
            _ => {
                self.wrong_type(root, "the workflow", "a mapping");
                return None;
            }
        };
        self.check_keys(
            entries,
            &[WORKFLOW_KEYS],
            "the workflow",
            &[
                (NODE_KEYS, "to a node, under `nodes:`"),
                (KIND_KEYS, "to a node, under `nodes:`"),
            ],
        );
        let mut wf = Workflow {
            source: self.file.clone(),
            name: Spanned::new(default_name.to_string(), Span::new(0, 0)),
            description: None,
            inputs: NamedMap::default(),
            env: NamedMap::default(),
            defaults: Defaults::default(),
            concurrency: None,
            agents: NamedMap::default(),
            budget: None,
            isolation: None,
            output: None,
            nodes: Vec::new(),
        };
        let mut saw_nodes = false;
        for (key, value) in entries {
            match key.value.as_str() {
                "name" => {
                    if let Some(n) = self.nonempty_string(value, "name") {
                        wf.name = n;
                    }
                }
                "description" => wf.description = self.string(value, "description"),
                "inputs" => wf.inputs = self.inputs(value),
                "env" => wf.env = self.string_map(value, "env"),
                "defaults" => wf.defaults = self.defaults(value),
                "concurrency" => wf.concurrency = self.u32(value, "concurrency", 1),
                "agents" => wf.agents = self.agents(value),
                "budget" => wf.budget = self.budget(value, "budget"),
                "isolation" => wf.isolation = self.isolation(value),
                "output" => wf.output = self.nonempty_string(value, "output"),
                "nodes" => {
                    saw_nodes = true;
                    wf.nodes = self.nodes(value);
                }
                _ => {}
            }
        }
        if !saw_nodes {
            let span = entries.first().map(|(k, _)| k.span).unwrap_or_default();
            self.error("missing-key", span, "the workflow has no `nodes`")
                .help = Some(
                "add `nodes:` with a list of nodes, like `- id: hello` / `bash: echo hello`".into(),
            );
        }
        Some(wf)
    }

    fn inputs(&mut self, node: &Y) -> NamedMap<Input> {
        let Some(entries) = self.map(node, "inputs") else {
            return NamedMap::default();
        };
        let mut out = Vec::new();
        for (name, value) in entries {
            check_identifier(self, name, "input name");
            let mut input = Input::default();
            match &value.value {
                Value::Null => {}
                Value::Map(fields) => {
                    self.check_keys(
                        fields,
                        &[INPUT_KEYS],
                        &format!("input `{}`", name.value),
                        &[],
                    );
                    for (k, v) in fields {
                        match k.value.as_str() {
                            "description" => input.description = self.string(v, "description"),
                            "required" => input.required = self.bool(v, "required"),
                            "default" => input.default = self.string(v, "default"),
                            _ => {}
                        }
                    }
                }
                _ => self.wrong_type(
                    value,
                    &format!("inputs.{}", name.value),
                    "a mapping with `description`, `required`, `default`",
                ),
            }
            out.push((name.clone(), input));
        }
        NamedMap(out)
    }

    fn defaults(&mut self, node: &Y) -> Defaults {
        let mut d = Defaults::default();
        let Some(entries) = self.map(node, "defaults") else {
            return d;
        };
        self.check_keys(entries, &[DEFAULTS_KEYS], "`defaults`", &[]);
        for (k, v) in entries {
            match k.value.as_str() {
                "agent" => d.agent = self.nonempty_string(v, "agent"),
                "model" => d.model = self.nonempty_string(v, "model"),
                "timeout" => d.timeout = self.duration(v, "timeout"),
                "idle_timeout" => d.idle_timeout = self.duration(v, "idle_timeout"),
                "retries" => d.retries = self.u32(v, "retries", 0),
                "shell" => d.shell = self.shell(v),
                _ => {}
            }
        }
        d
    }

    fn agents(&mut self, node: &Y) -> NamedMap<AgentProfile> {
        let Some(entries) = self.map(node, "agents") else {
            return NamedMap::default();
        };
        let mut out = Vec::new();
        for (name, value) in entries {
            check_identifier(self, name, "agent profile name");
            let Some(fields) = self.map(value, &format!("agents.{}", name.value)) else {
                continue;
            };
            self.check_keys(
                fields,
                &[PROFILE_KEYS],
                &format!("agent profile `{}`", name.value),
                &[],
            );
            let mut p = AgentProfile::default();
            for (k, v) in fields {
                match k.value.as_str() {
                    "use" => p.uses = self.nonempty_string(v, "use"),
                    "program" => p.program = self.nonempty_string(v, "program"),
                    "model" => p.model = self.nonempty_string(v, "model"),
                    "permission_mode" => {
                        p.permission_mode = self.nonempty_string(v, "permission_mode")
                    }
                    "sandbox" => p.sandbox = self.sandbox(v),
                    "allowed_tools" => p.allowed_tools = self.string_list(v, "allowed_tools"),
                    "disallowed_tools" => {
                        p.disallowed_tools = self.string_list(v, "disallowed_tools")
                    }
                    "max_turns" => p.max_turns = self.u32(v, "max_turns", 1),
                    "args" => p.args = self.string_list(v, "args"),
                    "env" => p.env = self.string_map(v, "env"),
                    "allow_control_plane" => {
                        p.allow_control_plane = self.bool(v, "allow_control_plane")
                    }
                    _ => {}
                }
            }
            out.push((name.clone(), p));
        }
        NamedMap(out)
    }

    fn nodes(&mut self, node: &Y) -> Vec<Node> {
        let items = match &node.value {
            Value::Seq(items) => items,
            Value::Map(_) => {
                self.wrong_type(node, "nodes", "a list");
                let d = self.diags.last_mut().expect("just pushed");
                d.help = Some("write each node as a list item starting with `- id: ...`".into());
                return Vec::new();
            }
            _ => {
                self.wrong_type(node, "nodes", "a list of nodes");
                return Vec::new();
            }
        };
        if items.is_empty() {
            self.error("empty-nodes", node.span, "`nodes` is empty")
                .help =
                Some("add at least one node, like `- id: hello` / `bash: echo hello`".into());
        }
        items.iter().filter_map(|item| self.node(item)).collect()
    }

    fn node(&mut self, item: &Y) -> Option<Node> {
        let entries = self.map(item, "a node")?;
        self.check_keys(
            entries,
            &[NODE_KEYS, KIND_KEYS],
            "a node",
            &[
                (LOOP_KEYS, "inside `loop:`"),
                (WORKFLOW_KEYS, "at the top level of the workflow"),
            ],
        );
        let start = entries.first().map(|(k, _)| k.span).unwrap_or(item.span);
        let id = match entries.iter().find(|(k, _)| k.value == "id") {
            Some((_, v)) => self.nonempty_string(v, "id"),
            None => {
                self.error("missing-id", start, "this node has no `id`")
                    .help = Some("add `id: some-name` (letters, digits, `_` and `-`)".into());
                None
            }
        };
        if let Some(id) = &id {
            check_identifier(self, id, "node id");
        }
        let kind = self.node_kind(entries, start, id.as_ref().map(|i| i.value.as_str()));
        let mut node = Node {
            id: id
                .clone()
                .unwrap_or_else(|| Spanned::new(String::new(), start)),
            kind: NodeKind::Bash(Spanned::new(String::new(), start)),
            span: start,
            depends_on: Vec::new(),
            when: None,
            trigger: None,
            timeout: None,
            idle_timeout: None,
            retries: None,
            env: NamedMap::default(),
            cwd: None,
            continue_on_error: None,
            shell: None,
            agent: None,
            model: None,
            session: None,
            allowed_tools: Vec::new(),
            max_turns: None,
            outputs: Vec::new(),
            budget: None,
            args: NamedMap::default(),
            inputs: NamedMap::default(),
            isolation: None,
            for_each: None,
            key: None,
            max_parallel: None,
            min_success: None,
        };
        for (k, v) in entries {
            match k.value.as_str() {
                "depends_on" => node.depends_on = self.string_list(v, "depends_on"),
                "when" => node.when = self.nonempty_string(v, "when"),
                "trigger" => node.trigger = self.trigger(v),
                "timeout" => node.timeout = self.duration(v, "timeout"),
                "idle_timeout" => node.idle_timeout = self.duration(v, "idle_timeout"),
                "retries" => node.retries = self.u32(v, "retries", 0),
                "env" => node.env = self.string_map(v, "env"),
                "cwd" => node.cwd = self.nonempty_string(v, "cwd"),
                "continue_on_error" => node.continue_on_error = self.bool(v, "continue_on_error"),
                "shell" => node.shell = self.shell(v),
                "agent" => node.agent = self.nonempty_string(v, "agent"),
                "model" => node.model = self.nonempty_string(v, "model"),
                "session" => {
                    node.session = self.nonempty_string(v, "session");
                    if let Some(s) = &node.session {
                        check_identifier(self, s, "session name");
                    }
                }
                "allowed_tools" => node.allowed_tools = self.string_list(v, "allowed_tools"),
                "max_turns" => node.max_turns = self.u32(v, "max_turns", 1),
                "outputs" => node.outputs = self.string_list(v, "outputs"),
                "budget" => node.budget = self.budget(v, "budget"),
                "args" => node.args = self.string_map(v, "args"),
                "inputs" => node.inputs = self.string_map(v, "inputs"),
                "isolation" => node.isolation = self.isolation(v),
                "for_each" => {
                    node.for_each = Some(self.for_each(k, v).unwrap_or(ForEach::Invalid(k.span)))
                }
                "key" => node.key = self.nonempty_string(v, "key"),
                "max_parallel" => node.max_parallel = self.u32(v, "max_parallel", 1),
                "min_success" => node.min_success = self.u32(v, "min_success", 1),
                _ => {}
            }
        }
        match (id, kind) {
            (Some(_), Some(kind)) => {
                node.kind = kind;
                Some(node)
            }
            (Some(id), None) => {
                self.dropped_ids.push(id.value);
                None
            }
            _ => None,
        }
    }

    fn node_kind(&mut self, entries: Entries, start: Span, id: Option<&str>) -> Option<NodeKind> {
        let kinds: Vec<_> = entries
            .iter()
            .filter(|(k, _)| KIND_KEYS.contains(&k.value.as_str()))
            .collect();
        let who = id
            .map(|i| format!("node `{i}`"))
            .unwrap_or_else(|| "this node".into());
        match kinds.as_slice() {
            [] => {
                self.error("missing-kind", start, format!("{who} has no kind"))
                    .help = Some(
                    "give it exactly one of `bash`, `prompt`, `command`, `approval`, `loop` or `workflow`"
                        .into(),
                );
                None
            }
            [(key, value)] => self.kind_value(key, value),
            [(first, _), rest @ ..] => {
                let names: Vec<_> = kinds
                    .iter()
                    .map(|(k, _)| format!("`{}`", k.value))
                    .collect();
                let mut d = Diagnostic::error(
                    "several-kinds",
                    self.file,
                    first.span,
                    format!("{who} has several kinds: {}", names.join(", ")),
                );
                for (k, _) in rest {
                    d = d.with_secondary(k.span, "another kind");
                }
                self.diags.push(d.with_help(
                    "a node does one thing; split it into several nodes joined by `depends_on`",
                ));
                None
            }
        }
    }

    fn kind_value(&mut self, key: &Spanned<String>, value: &Y) -> Option<NodeKind> {
        Some(match key.value.as_str() {
            "bash" => NodeKind::Bash(self.nonempty_string(value, "bash")?),
            "prompt" => NodeKind::Prompt(self.nonempty_string(value, "prompt")?),
            "command" => NodeKind::Command(self.nonempty_string(value, "command")?),
            "approval" => NodeKind::Approval(self.approval(value)?),
            "loop" => NodeKind::Loop(Box::new(self.loop_spec(key, value)?)),
            "workflow" => NodeKind::Workflow(self.nonempty_string(value, "workflow")?),
            _ => return None,
        })
    }

    fn isolation(&mut self, value: &Y) -> Option<Spanned<Isolation>> {
        let s = self.string(value, "isolation")?;
        match s.value.as_str() {
            "worktree" => Some(s.map(|_| Isolation::Worktree)),
            "none" => Some(s.map(|_| Isolation::None)),
            other => {
                let help = suggestion(other, ["worktree", "none"])
                    .unwrap_or_else(|| "use `worktree` or `none`".into());
                self.error("bad-value", s.span, format!("unknown isolation `{other}`"))
                    .help = Some(help);
                None
            }
        }
    }

    fn approval(&mut self, node: &Y) -> Option<Approval> {
        match &node.value {
            Value::Str(_) => Some(Approval {
                message: self.nonempty_string(node, "approval")?,
                timeout: None,
            }),
            Value::Map(entries) => {
                self.check_keys(entries, &[APPROVAL_KEYS], "`approval`", &[]);
                let mut message = None;
                let mut timeout = None;
                for (k, v) in entries {
                    match k.value.as_str() {
                        "message" => message = self.nonempty_string(v, "message"),
                        "timeout" => timeout = self.duration(v, "timeout"),
                        _ => {}
                    }
                }
                if message.is_none() && !entries.iter().any(|(k, _)| k.value == "message") {
                    self.error("missing-key", node.span, "`approval` has no `message`")
                        .help = Some(
                        "say what the human approves: `message: Open the pull request?`".into(),
                    );
                }
                Some(Approval {
                    message: message?,
                    timeout,
                })
            }
            _ => {
                self.wrong_type(node, "approval", "a message or a mapping with `message`");
                None
            }
        }
    }

    fn loop_spec(&mut self, key: &Spanned<String>, node: &Y) -> Option<LoopSpec> {
        let entries = self.map(node, "loop")?;
        self.check_keys(
            entries,
            &[LOOP_BODY_KEYS, LOOP_KEYS],
            "`loop`",
            &[
                (NODE_KEYS, "to the node, next to `loop:`"),
                (
                    &["approval", "loop"],
                    "to a node; a loop body is `bash`, `prompt` or `command`",
                ),
            ],
        );
        let bodies: Vec<_> = entries
            .iter()
            .filter(|(k, _)| LOOP_BODY_KEYS.contains(&k.value.as_str()))
            .collect();
        let body = match bodies.as_slice() {
            [] => {
                self.error("missing-kind", key.span, "`loop` has no body")
                    .help =
                    Some("give the loop exactly one of `bash`, `prompt` or `command`".into());
                None
            }
            [(k, v)] => match k.value.as_str() {
                "bash" => self.nonempty_string(v, "bash").map(LoopBody::Bash),
                "prompt" => self.nonempty_string(v, "prompt").map(LoopBody::Prompt),
                _ => self.nonempty_string(v, "command").map(LoopBody::Command),
            },
            [(first, _), rest @ ..] => {
                let mut d = Diagnostic::error(
                    "several-kinds",
                    self.file,
                    first.span,
                    "`loop` has several bodies",
                );
                for (k, _) in rest {
                    d = d.with_secondary(k.span, "another body");
                }
                self.diags
                    .push(d.with_help("a loop repeats one `bash`, `prompt` or `command`"));
                None
            }
        };
        let mut until = None;
        let mut until_bash = None;
        let mut max_iterations = None;
        let mut fresh = None;
        for (k, v) in entries {
            match k.value.as_str() {
                "until" => until = self.nonempty_string(v, "until"),
                "until_bash" => until_bash = self.nonempty_string(v, "until_bash"),
                "max_iterations" => max_iterations = self.u32(v, "max_iterations", 1),
                "fresh" => fresh = self.bool(v, "fresh"),
                _ => {}
            }
        }
        let has = |name: &str| entries.iter().any(|(k, _)| k.value == name);
        if !has("max_iterations") {
            self.error("loop-unbounded", key.span, "`loop` has no `max_iterations`")
                .help =
                Some("add `max_iterations: N` so a loop that never converges still ends".into());
        }
        if !has("until") && !has("until_bash") {
            self.error("loop-no-stop", key.span, "`loop` has no stop condition")
                .help = Some(
                "add `until: \"{{contains output 'DONE'}}\"` or `until_bash: cargo test`".into(),
            );
        }
        Some(LoopSpec {
            body: body?,
            until,
            until_bash,
            max_iterations: max_iterations?,
            fresh,
        })
    }

    /// `for_each:`: a YAML list, a template, or `{ files: [globs], gitignored: bool }`.
    fn for_each(&mut self, key: &Spanned<String>, node: &Y) -> Option<ForEach> {
        match &node.value {
            Value::Seq(items) => {
                if items.len() > MAX_ITEMS {
                    self.error(
                        "out-of-range",
                        node.span,
                        format!(
                            "`for_each` lists {} items; a fan-out may have at most {MAX_ITEMS}",
                            items.len()
                        ),
                    )
                    .help = Some("split the list over several nodes, or read it from a file with `for_each: { files: [...] }`".into());
                    return None;
                }
                let mut values = Vec::with_capacity(items.len());
                for item in items {
                    if matches!(item.value, Value::Null) {
                        self.wrong_type(item, "an item of `for_each`", "a value");
                        continue;
                    }
                    values.push(to_json(item));
                }
                Some(ForEach::List(Spanned::new(values, node.span)))
            }
            Value::Map(entries) => {
                self.check_keys(entries, &[FILE_SET_KEYS], "`for_each`", &[]);
                let mut files = None;
                let mut gitignored = None;
                for (k, v) in entries {
                    match k.value.as_str() {
                        "files" => files = Some(self.string_list(v, "files")),
                        "gitignored" => gitignored = self.bool(v, "gitignored"),
                        _ => {}
                    }
                }
                let Some(files) = files else {
                    self.error("missing-key", node.span, "`for_each` has no `files`")
                        .help = Some(
                        "list glob patterns relative to the repository: `for_each: { files: [\"crates/*/Cargo.toml\"] }`"
                            .into(),
                    );
                    return None;
                };
                Some(ForEach::Files(FileSet {
                    files,
                    gitignored,
                    span: key.span,
                }))
            }
            Value::Null => {
                self.wrong_type(node, "for_each", "a list, a template or `{ files: [...] }`");
                None
            }
            _ => self
                .nonempty_string(node, "for_each")
                .map(ForEach::Template),
        }
    }

    fn budget(&mut self, node: &Y, what: &str) -> Option<Budget> {
        let entries = self.map(node, what)?;
        self.check_keys(entries, &[BUDGET_KEYS], &format!("`{what}`"), &[]);
        let mut b = Budget::default();
        for (k, v) in entries {
            match k.value.as_str() {
                "max_cost_usd" => {
                    b.max_cost_usd = match v.value {
                        Value::Int(i) if i >= 0 => Some(Spanned::new(i as f64, v.span)),
                        Value::Float(f) if f.is_finite() && f >= 0.0 => {
                            Some(Spanned::new(f, v.span))
                        }
                        Value::Int(_) | Value::Float(_) => {
                            self.error(
                                "out-of-range",
                                v.span,
                                "`max_cost_usd` must be a number of dollars, 0 or more",
                            )
                            .set_label("must be 0 or more");
                            None
                        }
                        _ => {
                            self.wrong_type(
                                v,
                                "max_cost_usd",
                                "a number of US dollars, like `2.5`",
                            );
                            None
                        }
                    }
                }
                "max_tokens" => {
                    b.max_tokens = match v.value {
                        Value::Int(i) if i >= 1 => Some(Spanned::new(i as u64, v.span)),
                        Value::Int(i) => {
                            self.error(
                                "out-of-range",
                                v.span,
                                format!("`max_tokens` must be at least 1, found {i}"),
                            )
                            .set_label("must be 1 or more");
                            None
                        }
                        _ => {
                            self.wrong_type(v, "max_tokens", "a whole number of tokens");
                            None
                        }
                    }
                }
                _ => {}
            }
        }
        if entries.is_empty() {
            self.error("empty-budget", node.span, format!("`{what}` sets no limit"))
                .help =
                Some("add `max_cost_usd: 2.5` or `max_tokens: 200000`, or remove it".into());
        }
        Some(b)
    }

    fn sandbox(&mut self, node: &Y) -> Option<Spanned<String>> {
        let s = self.nonempty_string(node, "sandbox")?;
        if SANDBOX_MODES.contains(&s.value.as_str()) {
            return Some(s);
        }
        let help = suggestion(&s.value, SANDBOX_MODES.iter().copied()).unwrap_or_else(|| {
            format!(
                "use one of {}",
                english_list(
                    &SANDBOX_MODES
                        .iter()
                        .map(|m| format!("`{m}`"))
                        .collect::<Vec<_>>()
                )
            )
        });
        self.error(
            "bad-value",
            s.span,
            format!("unknown sandbox `{}`", s.value),
        )
        .help = Some(help);
        None
    }

    fn trigger(&mut self, node: &Y) -> Option<Spanned<Trigger>> {
        let s = self.string(node, "trigger")?;
        match Trigger::ALL.iter().find(|(name, _)| *name == s.value) {
            Some((_, t)) => Some(Spanned::new(*t, s.span)),
            None => {
                let names = Trigger::ALL.iter().map(|(n, _)| *n);
                let help = suggestion(&s.value, names).unwrap_or_else(|| {
                    "use `all_success`, `all_done`, `one_success` or `none_failed`".into()
                });
                self.error(
                    "bad-value",
                    s.span,
                    format!("unknown trigger rule `{}`", s.value),
                )
                .help = Some(help);
                None
            }
        }
    }
}

/// A YAML value as JSON: what `{{item}}` reads for an entry of a `for_each` list.
fn to_json(node: &Y) -> serde_json::Value {
    use serde_json::Value as J;
    match &node.value {
        Value::Null => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::Int(i) => J::from(*i),
        Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        Value::Str(s) => J::String(s.clone()),
        Value::Seq(items) => J::Array(items.iter().map(to_json).collect()),
        Value::Map(entries) => J::Object(
            entries
                .iter()
                .map(|(k, v)| (k.value.clone(), to_json(v)))
                .collect(),
        ),
    }
}

/// Ids and names: letters, digits, `_` and `-`.
fn check_identifier(cx: &mut Cx, name: &Spanned<String>, what: &str) {
    let ok = !name.value.is_empty()
        && name
            .value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !ok {
        let fixed: String = name
            .value
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        cx.error("bad-id", name.span, format!("bad {what} `{}`", name.value))
            .set_label("only letters, digits, `_` and `-` are allowed")
            .help = Some(format!("rename it, for example to `{fixed}`"));
    }
}

/// `a`, `a and b`, `a, b and c`.
fn english_list(items: &[String]) -> String {
    match items.split_last() {
        None => String::new(),
        Some((only, [])) => only.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}
