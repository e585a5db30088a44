//! `reins graph`: the shape of a workflow — layers, width, critical path — as text, JSON,
//! Mermaid or Graphviz dot.

use std::fmt::Write as _;
use std::time::Duration;

use super::args::{GraphArgs, GraphFormat};
use super::error::{self, Outcome};
use super::load::valid_workflow;
use crate::graph::{Dag, DEFAULT_WEIGHT};
use crate::workflow::{duration, Workflow};

/// Runs `reins graph`.
pub(super) fn run(args: GraphArgs) -> error::Result {
    let valid = valid_workflow(&args.workflow)?;
    let shape = Shape::of(&valid.workflow);
    let out = match args.format {
        GraphFormat::Text => shape.text(),
        GraphFormat::Json => shape.json(),
        GraphFormat::Mermaid => shape.mermaid(),
        GraphFormat::Dot => shape.dot(),
    };
    super::common::print(&out)?;
    Ok(Outcome::Success)
}

/// What `graph` reports about a workflow.
struct Shape<'a> {
    workflow: &'a Workflow,
    dag: Dag,
    layers: Vec<Vec<usize>>,
    critical: Vec<usize>,
    critical_weight: Duration,
}

impl<'a> Shape<'a> {
    fn of(workflow: &'a Workflow) -> Self {
        let dag = workflow.dag();
        let layers = dag.layers();
        let (critical, critical_weight) = dag.critical_path(|i| weight(workflow, i));
        Self {
            workflow,
            dag,
            layers,
            critical,
            critical_weight,
        }
    }

    fn width(&self) -> usize {
        self.layers.iter().map(Vec::len).max().unwrap_or(0)
    }

    /// The node's kind, and for a fan-out how many instances: `bash ×3` for a list, `bash,
    /// for_each` when the items are known only at run time.
    fn kind(&self, i: usize) -> String {
        let node = &self.workflow.nodes[i];
        let kind = node.kind.name();
        match &node.for_each {
            Some(crate::workflow::ForEach::List(items)) => format!("{kind} ×{}", items.value.len()),
            Some(_) => format!("{kind}, for_each"),
            None => kind.to_string(),
        }
    }

    fn on_critical_edge(&self, from: usize, to: usize) -> bool {
        self.critical.windows(2).any(|w| w[0] == from && w[1] == to)
    }

    fn edges(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.dag
            .deps
            .iter()
            .enumerate()
            .flat_map(|(to, deps)| deps.iter().map(move |&from| (from, to)))
    }

    fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{}: {} nodes in {} layers, at most {} at once",
            self.workflow.name.value,
            self.dag.len(),
            self.layers.len(),
            self.width()
        );
        let path: Vec<&str> = self
            .critical
            .iter()
            .map(|&i| self.dag.ids[i].as_str())
            .collect();
        let _ = writeln!(
            out,
            "critical path: {} ({} by timeouts; {} where none is set)",
            path.join(" -> "),
            duration::format(self.critical_weight),
            duration::format(DEFAULT_WEIGHT)
        );
        for (k, layer) in self.layers.iter().enumerate() {
            let names: Vec<String> = layer
                .iter()
                .map(|&i| {
                    let mark = if self.critical.contains(&i) { "*" } else { "" };
                    format!("{}{mark} ({})", self.dag.ids[i], self.kind(i))
                })
                .collect();
            let _ = writeln!(out, "  layer {}: {}", k + 1, names.join(", "));
        }
        let _ = writeln!(out, "(* on the critical path)");
        out
    }

    fn json(&self) -> String {
        let ids = |list: &[usize]| {
            list.iter()
                .map(|&i| self.dag.ids[i].clone())
                .collect::<Vec<_>>()
        };
        let nodes: Vec<_> = (0..self.dag.len())
            .map(|i| {
                serde_json::json!({
                    "id": self.dag.ids[i],
                    "kind": self.kind(i),
                    "depends_on": ids(&self.dag.deps[i]),
                    "weight_seconds": weight(self.workflow, i).as_secs_f64(),
                })
            })
            .collect();
        let value = serde_json::json!({
            "workflow": self.workflow.name.value,
            "node_count": self.dag.len(),
            "width": self.width(),
            "layers": self.layers.iter().map(|l| ids(l)).collect::<Vec<_>>(),
            "critical_path": {
                "nodes": ids(&self.critical),
                "weight_seconds": self.critical_weight.as_secs_f64(),
            },
            "nodes": nodes,
        });
        let mut s = serde_json::to_string_pretty(&value).unwrap_or_default();
        s.push('\n');
        s
    }

    fn mermaid(&self) -> String {
        let mut out = String::from("flowchart TD\n");
        for i in 0..self.dag.len() {
            let _ = writeln!(
                out,
                "    n{i}[\"{} ({})\"]",
                escape(&self.dag.ids[i]),
                self.kind(i)
            );
        }
        let mut critical_links = Vec::new();
        for (link, (from, to)) in self.edges().enumerate() {
            let arrow = if self.on_critical_edge(from, to) {
                "==>"
            } else {
                "-->"
            };
            if self.on_critical_edge(from, to) {
                critical_links.push(link.to_string());
            }
            let _ = writeln!(out, "    n{from} {arrow} n{to}");
        }
        for &i in &self.critical {
            let _ = writeln!(out, "    style n{i} stroke-width:3px");
        }
        if !critical_links.is_empty() {
            let _ = writeln!(
                out,
                "    linkStyle {} stroke-width:3px",
                critical_links.join(",")
            );
        }
        out
    }

    fn dot(&self) -> String {
        let mut out = format!(
            "digraph \"{}\" {{\n    rankdir=TB;\n    node [shape=box];\n",
            escape(&self.workflow.name.value)
        );
        for i in 0..self.dag.len() {
            let bold = if self.critical.contains(&i) {
                ", penwidth=2"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "    \"{}\" [label=\"{}\\n{}\"{bold}];",
                escape(&self.dag.ids[i]),
                escape(&self.dag.ids[i]),
                self.kind(i)
            );
        }
        for (from, to) in self.edges() {
            let bold = if self.on_critical_edge(from, to) {
                " [penwidth=2]"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "    \"{}\" -> \"{}\"{bold};",
                escape(&self.dag.ids[from]),
                escape(&self.dag.ids[to])
            );
        }
        out.push_str("}\n");
        out
    }
}

/// A node's weight for the critical path: its timeout, the default timeout, or one minute.
fn weight(workflow: &Workflow, i: usize) -> Duration {
    let node = &workflow.nodes[i];
    node.timeout
        .as_ref()
        .or(workflow.defaults.timeout.as_ref())
        .map(|t| t.value)
        .unwrap_or(DEFAULT_WEIGHT)
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}
