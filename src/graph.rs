//! A dependency graph over numbered nodes: cycles, layers, critical path, ancestors.
//!
//! Generic over what the nodes are: each has an id and the ids it depends on, and is numbered
//! by its position in the list it was built from (a workflow's `nodes:`, see
//! [`crate::workflow::Workflow::dag`]). Unknown dependency ids are left out here (validation
//! reports them).

use std::collections::HashMap;
use std::time::Duration;

use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};

/// The default weight of a node without a `timeout`, for the critical path.
pub const DEFAULT_WEIGHT: Duration = Duration::from_secs(60);

/// A workflow's dependency graph.
#[derive(Debug, Clone)]
pub struct Dag {
    /// Node ids, by index.
    pub ids: Vec<String>,
    /// For each node, the indices it depends on (deduplicated, in declaration order).
    pub deps: Vec<Vec<usize>>,
    /// For each node, the indices that depend on it.
    pub dependents: Vec<Vec<usize>>,
    index: HashMap<String, usize>,
}

impl Dag {
    /// Builds the graph of nodes given as their ids, each with the ids it depends on, in
    /// order. A repeated id names its first node.
    pub fn new<'a, D>(nodes: impl IntoIterator<Item = (&'a str, D)>) -> Self
    where
        D: IntoIterator<Item = &'a str>,
    {
        let nodes: Vec<(&str, D)> = nodes.into_iter().collect();
        let ids: Vec<String> = nodes.iter().map(|(id, _)| id.to_string()).collect();
        let mut index = HashMap::with_capacity(ids.len());
        for (i, id) in ids.iter().enumerate() {
            index.entry(id.clone()).or_insert(i);
        }
        let mut deps = vec![Vec::new(); ids.len()];
        let mut dependents = vec![Vec::new(); ids.len()];
        for (i, (_, depends_on)) in nodes.into_iter().enumerate() {
            for dep in depends_on {
                if let Some(&d) = index.get(dep) {
                    if !deps[i].contains(&d) {
                        deps[i].push(d);
                        dependents[d].push(i);
                    }
                }
            }
        }
        Self {
            ids,
            deps,
            dependents,
            index,
        }
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when there are no nodes.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The index of a node id.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.index.get(id).copied()
    }

    /// Every cycle: each strongly connected component with more than one node, or a node that
    /// depends on itself. Members are listed in dependency order along the cycle.
    pub fn cycles(&self) -> Vec<Vec<usize>> {
        let mut cycles: Vec<Vec<usize>> = self
            .components()
            .into_iter()
            .filter(|scc| scc.len() > 1 || self.deps[scc[0]].contains(&scc[0]))
            .map(|scc| self.order_cycle(scc))
            .collect();
        cycles.sort();
        cycles
    }

    /// The strongly connected components, dependencies first: every dependency of a member
    /// is in the same component or an earlier one.
    fn components(&self) -> Vec<Vec<usize>> {
        let mut g: DiGraph<usize, ()> = DiGraph::with_capacity(self.len(), 0);
        let nodes: Vec<NodeIndex> = (0..self.len()).map(|i| g.add_node(i)).collect();
        for (i, deps) in self.deps.iter().enumerate() {
            for &d in deps {
                g.add_edge(nodes[d], nodes[i], ());
            }
        }
        // Tarjan's algorithm yields them dependents first (reverse topological order).
        let mut components: Vec<Vec<usize>> = tarjan_scc(&g)
            .into_iter()
            .map(|scc| scc.iter().map(|n| n.index()).collect())
            .collect();
        components.reverse();
        components
    }

    /// Orders the members of a strongly connected component along one cycle through them,
    /// starting from the first declared member: each member depends on the next. Such a
    /// cycle may not exist, and finding one is a Hamiltonian-cycle search, so the search is
    /// bounded; without a cycle through every member they come back in declaration order.
    fn order_cycle(&self, mut members: Vec<usize>) -> Vec<usize> {
        const MAX_STEPS: usize = 100_000;
        members.sort_unstable();
        if members.len() == 1 {
            return members;
        }
        let start = members[0];
        // Depth-first search for a path back to `start` that stays inside the component.
        let mut path = vec![start];
        let mut next_choice = vec![0usize];
        let mut steps = 0;
        while let Some(&current) = path.last() {
            steps += 1;
            if steps > MAX_STEPS {
                break;
            }
            let choice = next_choice.last_mut().expect("same length as path");
            let candidates: Vec<usize> = self.deps[current]
                .iter()
                .copied()
                .filter(|d| members.binary_search(d).is_ok())
                .collect();
            if *choice >= candidates.len() {
                path.pop();
                next_choice.pop();
                continue;
            }
            let next = candidates[*choice];
            *choice += 1;
            if next == start && path.len() == members.len() {
                return path;
            }
            if !path.contains(&next) {
                path.push(next);
                next_choice.push(0);
            }
        }
        members
    }

    /// A topological order (dependencies first), or `None` if there is a cycle.
    pub fn topo_order(&self) -> Option<Vec<usize>> {
        let mut indegree: Vec<usize> = self.deps.iter().map(Vec::len).collect();
        let mut ready: Vec<usize> = (0..self.len())
            .filter(|&i| indegree[i] == 0)
            .rev()
            .collect();
        let mut order = Vec::with_capacity(self.len());
        while let Some(i) = ready.pop() {
            order.push(i);
            for &d in self.dependents[i].iter().rev() {
                indegree[d] -= 1;
                if indegree[d] == 0 {
                    ready.push(d);
                }
            }
        }
        (order.len() == self.len()).then_some(order)
    }

    /// Execution layers: layer k holds the nodes whose longest dependency chain has k links.
    /// Nodes on a cycle are left out.
    pub fn layers(&self) -> Vec<Vec<usize>> {
        let Some(order) = self.topo_order() else {
            return Vec::new();
        };
        let mut depth = vec![0usize; self.len()];
        for &i in &order {
            depth[i] = self.deps[i]
                .iter()
                .map(|&d| depth[d] + 1)
                .max()
                .unwrap_or(0);
        }
        let mut layers: Vec<Vec<usize>> = Vec::new();
        for i in 0..self.len() {
            if layers.len() <= depth[i] {
                layers.resize(depth[i] + 1, Vec::new());
            }
            layers[depth[i]].push(i);
        }
        layers
    }

    /// The heaviest chain of dependencies and its total weight.
    pub fn critical_path(&self, weight: impl Fn(usize) -> Duration) -> (Vec<usize>, Duration) {
        let Some(order) = self.topo_order() else {
            return (Vec::new(), Duration::ZERO);
        };
        let mut best = vec![Duration::ZERO; self.len()];
        let mut via: Vec<Option<usize>> = vec![None; self.len()];
        for &i in &order {
            let (from, base) = self.deps[i]
                .iter()
                .map(|&d| (Some(d), best[d]))
                .max_by_key(|(_, w)| *w)
                .unwrap_or((None, Duration::ZERO));
            best[i] = base + weight(i);
            via[i] = from;
        }
        let Some(end) = (0..self.len()).max_by_key(|&i| (best[i], std::cmp::Reverse(i))) else {
            return (Vec::new(), Duration::ZERO);
        };
        let mut path = vec![end];
        while let Some(prev) = via[*path.last().expect("non-empty")] {
            path.push(prev);
        }
        path.reverse();
        (path, best[end])
    }

    /// Remaining weight from each node to the end of the graph (itself included): the
    /// scheduler starts the ready node with the most work behind it first.
    pub fn remaining_weight(&self, weight: impl Fn(usize) -> Duration) -> Vec<Duration> {
        let mut rest = vec![Duration::ZERO; self.len()];
        if let Some(order) = self.topo_order() {
            for &i in order.iter().rev() {
                rest[i] = weight(i)
                    + self.dependents[i]
                        .iter()
                        .map(|&d| rest[d])
                        .max()
                        .unwrap_or(Duration::ZERO);
            }
        }
        rest
    }

    /// Everything that depends on `i`, directly or not.
    pub fn descendants(&self, i: usize) -> Vec<bool> {
        self.reach(i, &self.dependents)
    }

    fn reach(&self, i: usize, edges: &[Vec<usize>]) -> Vec<bool> {
        let mut seen = vec![false; self.len()];
        let mut stack = edges[i].clone();
        while let Some(n) = stack.pop() {
            if !seen[n] {
                seen[n] = true;
                stack.extend(edges[n].iter().copied());
            }
        }
        seen
    }
}

/// Everything each node depends on, directly or not: one bit set per node, `words` 64-bit
/// words each, computed once per workflow. Validation asks it once per `nodes.*` reference and
/// per pair of nodes sharing a session; the plan, for each node's upstream values.
#[derive(Debug, Clone)]
pub struct Ancestors {
    words: usize,
    bits: Vec<u64>,
}

impl Ancestors {
    /// The ancestors of every node of `dag`. On a DAG each node's set is the union of its
    /// dependencies' sets, built in topological order; on a graph with cycles the same is done
    /// over its strongly connected components, every member of a cycle reaching all of it.
    pub fn new(dag: &Dag) -> Self {
        let words = dag.len().div_ceil(64);
        // Zeroed pages are only touched where a bit is set: 50,000 nodes without
        // dependencies cost next to nothing.
        let mut sets = Ancestors {
            words,
            bits: vec![0u64; words * dag.len()],
        };
        match dag.topo_order() {
            Some(order) => {
                for i in order {
                    for &d in &dag.deps[i] {
                        // `d` comes before `i` in the order, so its set is complete.
                        sets.insert(i, d);
                        sets.union(i, d);
                    }
                }
            }
            None => sets.fill_with_cycles(dag),
        }
        sets
    }

    /// The same over strongly connected components, dependencies first.
    fn fill_with_cycles(&mut self, dag: &Dag) {
        let components = dag.components();
        let mut component_of = vec![0usize; dag.len()];
        for (c, members) in components.iter().enumerate() {
            for &m in members {
                component_of[m] = c;
            }
        }
        for (c, members) in components.iter().enumerate() {
            let head = members[0];
            for &m in members {
                for &d in &dag.deps[m] {
                    self.insert(head, d);
                    if component_of[d] != c {
                        self.union(head, d);
                    }
                }
            }
            if members.len() > 1 {
                for &m in members {
                    self.insert(head, m);
                }
            }
            for &m in &members[1..] {
                let (from, to) = (head * self.words, m * self.words);
                self.bits.copy_within(from..from + self.words, to);
            }
        }
    }

    /// True if node `me` depends on node `other`, directly or not.
    pub fn contains(&self, me: usize, other: usize) -> bool {
        self.bits[me * self.words + other / 64] & (1 << (other % 64)) != 0
    }

    /// Every node `me` depends on, directly or not, in index order.
    pub fn of(&self, me: usize) -> impl Iterator<Item = usize> + '_ {
        let row = &self.bits[me * self.words..(me + 1) * self.words];
        row.iter().enumerate().flat_map(|(w, &word)| {
            let mut rest = word;
            std::iter::from_fn(move || {
                (rest != 0).then(|| {
                    let bit = rest.trailing_zeros() as usize;
                    rest &= rest - 1;
                    w * 64 + bit
                })
            })
        })
    }

    fn insert(&mut self, me: usize, other: usize) {
        self.bits[me * self.words + other / 64] |= 1 << (other % 64);
    }

    /// Adds the set of `other` (≠ `me`) to the set of `me`.
    fn union(&mut self, me: usize, other: usize) {
        let words = self.words;
        let (before, after) = self.bits.split_at_mut(me.max(other) * words);
        let (mine, theirs) = if me > other {
            (
                &mut after[..words],
                &before[other * words..(other + 1) * words],
            )
        } else {
            (&mut before[me * words..(me + 1) * words], &after[..words])
        };
        for (m, t) in mine.iter_mut().zip(theirs) {
            *m |= t;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SourceFile;
    use crate::workflow::load_source;

    fn dag(yaml: &str) -> Dag {
        let loaded = load_source(SourceFile::new("t.yaml", yaml));
        loaded.workflow.expect("loads").dag()
    }

    const DIAMOND: &str = "nodes:
  - {id: a, bash: x}
  - {id: b, bash: x, depends_on: [a], timeout: 10s}
  - {id: c, bash: x, depends_on: [a], timeout: 1s}
  - {id: d, bash: x, depends_on: [b, c]}
  - {id: e, bash: x}
";

    #[test]
    fn layers_and_order() {
        let g = dag(DIAMOND);
        assert_eq!(g.layers(), vec![vec![0, 4], vec![1, 2], vec![3]]);
        let order = g.topo_order().unwrap();
        assert!(order.iter().position(|&x| x == 0) < order.iter().position(|&x| x == 3));
        assert!(g.cycles().is_empty());
    }

    #[test]
    fn critical_path_follows_the_heaviest_chain() {
        let g = dag(DIAMOND);
        let w = |i: usize| Duration::from_secs([1, 10, 1, 1, 5][i]);
        let (path, total) = g.critical_path(w);
        assert_eq!(path, vec![0, 1, 3]);
        assert_eq!(total, Duration::from_secs(12));
        assert_eq!(g.remaining_weight(w)[0], Duration::from_secs(12));
    }

    #[test]
    fn cycles_name_every_member_in_order() {
        let g = dag("nodes:
  - {id: a, bash: x, depends_on: [c]}
  - {id: b, bash: x, depends_on: [a]}
  - {id: c, bash: x, depends_on: [b]}
  - {id: d, bash: x, depends_on: [d]}
  - {id: e, bash: x}
");
        assert_eq!(g.cycles(), vec![vec![0, 2, 1], vec![3]]);
        assert!(g.topo_order().is_none());
    }

    #[test]
    fn reachability() {
        let g = dag(DIAMOND);
        assert_eq!(g.descendants(0), vec![false, true, true, true, false]);
        let ancestors = Ancestors::new(&g);
        assert_eq!(ancestors.of(3).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(ancestors.of(0).count(), 0);
    }

    /// Everything `i` depends on, by a plain search.
    fn searched(g: &Dag, i: usize) -> Vec<bool> {
        let mut seen = vec![false; g.len()];
        let mut stack = g.deps[i].clone();
        while let Some(n) = stack.pop() {
            if !seen[n] {
                seen[n] = true;
                stack.extend(g.deps[n].iter().copied());
            }
        }
        seen
    }

    fn assert_matches_search(g: &Dag) {
        let ancestors = Ancestors::new(g);
        for me in 0..g.len() {
            for (other, &want) in searched(g, me).iter().enumerate() {
                assert_eq!(
                    ancestors.contains(me, other),
                    want,
                    "{me} depends on {other}"
                );
            }
            let listed: Vec<usize> = ancestors.of(me).collect();
            let expected: Vec<usize> = (0..g.len()).filter(|&o| searched(g, me)[o]).collect();
            assert_eq!(listed, expected);
        }
    }

    #[test]
    fn ancestor_sets_match_a_search_in_any_node_order() {
        // Node n{p} has rank p*37 mod 70 and depends on the nodes ranked 3 below it and at a
        // fifth of its rank: a DAG (not a total order) whose dependencies point both ways in
        // the list, two words wide.
        let rank = |p: usize| p * 37 % 70;
        let at_rank = |r: usize| (0..70).find(|&p| rank(p) == r).expect("a permutation");
        let mut yaml = String::from("nodes:\n");
        for p in 0..70 {
            let r = rank(p);
            let mut deps = Vec::new();
            if r >= 3 {
                deps.push(format!("n{}", at_rank(r - 3)));
            }
            if r >= 10 && r % 2 == 0 {
                deps.push(format!("n{}", at_rank(r / 5)));
            }
            yaml.push_str(&format!(
                "  - {{id: n{p}, bash: x, depends_on: [{}]}}\n",
                deps.join(", ")
            ));
        }
        let g = dag(&yaml);
        assert!(g.topo_order().is_some());
        assert_matches_search(&g);
    }

    #[test]
    fn ancestor_sets_match_a_search_with_cycles() {
        // a <- b <- c <- a is a cycle, d depends on itself, e on the cycle, f on e.
        let g = dag("nodes:
  - {id: a, bash: x, depends_on: [c]}
  - {id: b, bash: x, depends_on: [a]}
  - {id: c, bash: x, depends_on: [b]}
  - {id: d, bash: x, depends_on: [d]}
  - {id: e, bash: x, depends_on: [b]}
  - {id: f, bash: x, depends_on: [e, d]}
  - {id: g, bash: x}
");
        assert!(g.topo_order().is_none());
        assert_matches_search(&g);
    }
}
