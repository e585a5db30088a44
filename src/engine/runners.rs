//! The runner registry: which [`NodeRunner`] does each kind of node.
//!
//! bash, agent (`prompt`, `command`) and approval runners are built in; a `loop` wraps the
//! runner of its body in a [`super::loops::LoopRunner`]. A workflow that uses a kind with no
//! runner is refused before anything runs ([`Runners::missing`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::plan::Plan;
use super::runner::NodeRunner;
use crate::workflow::NodeKind;

/// The kinds of runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RunnerKind {
    /// `bash` nodes.
    Bash,
    /// `prompt` and `command` nodes.
    Agent,
    /// `approval` nodes.
    Approval,
    /// `loop` nodes.
    Loop,
    /// `workflow` nodes (a child run).
    Workflow,
}

impl RunnerKind {
    /// The kind of runner a node needs.
    pub fn of(kind: &NodeKind) -> RunnerKind {
        match kind {
            NodeKind::Bash(_) => RunnerKind::Bash,
            NodeKind::Prompt(_) | NodeKind::Command(_) => RunnerKind::Agent,
            NodeKind::Approval(_) => RunnerKind::Approval,
            NodeKind::Loop(_) => RunnerKind::Loop,
            NodeKind::Workflow(_) => RunnerKind::Workflow,
        }
    }

    /// The kind of runner a loop body needs.
    pub fn of_body(body: &crate::workflow::LoopBody) -> RunnerKind {
        match body {
            crate::workflow::LoopBody::Bash(_) => RunnerKind::Bash,
            _ => RunnerKind::Agent,
        }
    }

    /// In words, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            RunnerKind::Bash => "bash",
            RunnerKind::Agent => "agent (`prompt`/`command`)",
            RunnerKind::Approval => "approval",
            RunnerKind::Loop => "loop",
            RunnerKind::Workflow => "workflow",
        }
    }
}

/// The runner of each kind of node.
#[derive(Clone)]
pub struct Runners {
    map: BTreeMap<RunnerKind, Arc<dyn NodeRunner>>,
}

impl Default for Runners {
    fn default() -> Self {
        Self::new()
    }
}

impl Runners {
    /// The runners built into the engine (bash, agents for `prompt`/`command`, approval,
    /// `workflow` child runs).
    pub fn new() -> Self {
        let mut map: BTreeMap<RunnerKind, Arc<dyn NodeRunner>> = BTreeMap::new();
        map.insert(RunnerKind::Bash, Arc::new(super::bash::BashRunner));
        map.insert(RunnerKind::Agent, Arc::new(super::agent::AgentRunner));
        map.insert(
            RunnerKind::Approval,
            Arc::new(super::approval::ApprovalRunner),
        );
        map.insert(
            RunnerKind::Workflow,
            Arc::new(super::subflow::SubflowRunner),
        );
        Self { map }
    }

    /// The runner of a node kind. A loop gets a loop runner around its body's runner.
    pub fn get(&self, kind: &NodeKind) -> Option<Arc<dyn NodeRunner>> {
        match kind {
            NodeKind::Loop(l) => {
                let body = self.map.get(&RunnerKind::of_body(&l.body))?.clone();
                Some(Arc::new(super::loops::LoopRunner { body }))
            }
            _ => self.map.get(&RunnerKind::of(kind)).cloned(),
        }
    }

    /// Nodes of the plan whose kind has no runner: `(node id, kind)`.
    pub fn missing(&self, plan: &Plan) -> Vec<(String, RunnerKind)> {
        plan.workflow
            .nodes
            .iter()
            .filter_map(|n| {
                let kind = match &n.kind {
                    NodeKind::Loop(l) => RunnerKind::of_body(&l.body),
                    k => RunnerKind::of(k),
                };
                (!self.map.contains_key(&kind)).then(|| (n.id.value.clone(), kind))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SourceFile;
    use crate::workflow::command_file::DirCommands;
    use crate::workflow::load_source;

    #[test]
    fn a_loop_needs_the_runner_of_its_body() {
        let wf = load_source(SourceFile::new(
            "t.yaml",
            "nodes:
  - id: sh
    loop: {bash: echo, until: 'true', max_iterations: 2}
  - id: ask
    loop: {prompt: hi, until: 'true', max_iterations: 2}
",
        ))
        .workflow
        .unwrap();
        let plan = Plan::new(wf, &DirCommands::default()).unwrap();
        assert!(Runners::new().missing(&plan).is_empty());
        let mut runners = Runners::new();
        runners.map.remove(&RunnerKind::Agent);
        assert_eq!(
            runners.missing(&plan),
            [("ask".to_string(), RunnerKind::Agent)]
        );
        assert!(runners.get(&plan.workflow.nodes[0].kind).is_some());
        assert!(runners.get(&plan.workflow.nodes[1].kind).is_none());
    }
}
