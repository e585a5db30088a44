//! Budgets: what agent turns may spend, per node (`budget:` of a node, over all its attempts
//! and loop iterations) and per run (`budget:` at the top level).
//!
//! Before an agent turn starts, [`check_before`] refuses it when its node or the run has
//! reached a limit already; after it, [`check_after`] fails the node whose turn went over
//! one. A run over its budget therefore starts no new agent turn; turns already running
//! finish, and the run fails naming the budget and by how much it was exceeded.
//!
//! What counts: the cost the agent CLI reports (Claude Code; Codex reports none, so only its
//! tokens count) and every token, input (cached or not) and output. Spending is kept in
//! memory for this process and added to what the run's log holds from earlier executions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::store::{RunState, Usage};
use crate::workflow::Budget;

/// What this process's agent turns spent, on top of what the log held when they began.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    inner: Arc<Mutex<Books>>,
}

#[derive(Debug, Default)]
struct Books {
    /// The run's usage in the log before this process's first agent turn.
    run_base: Option<Usage>,
    /// Per node: its usage in the log before its first turn here, and what it spent since.
    nodes: HashMap<String, (Usage, Usage)>,
}

/// Spending measured against one limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spent {
    /// Dollars reported.
    pub cost_usd: f64,
    /// Tokens used.
    pub tokens: u64,
}

impl Ledger {
    fn with<T>(&self, state: &RunState, node: &str, f: impl FnOnce(&mut Books) -> T) -> T {
        let mut books = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if books.run_base.is_none() {
            books.run_base = Some(state.total_usage());
        }
        books.nodes.entry(node.to_string()).or_insert_with(|| {
            (
                state.node(node).map(|n| n.usage).unwrap_or_default(),
                Usage::default(),
            )
        });
        f(&mut books)
    }

    /// What the node and the run have spent so far.
    pub fn spent(&self, state: &RunState, node: &str) -> (Spent, Spent) {
        self.with(state, node, |books| books.spent(node))
    }

    /// Adds one turn of `node`; returns what the node and the run have spent now.
    pub fn add(&self, state: &RunState, node: &str, turn: &Usage) -> (Spent, Spent) {
        self.with(state, node, |books| {
            if let Some((_, spent)) = books.nodes.get_mut(node) {
                spent.add(turn);
            }
            books.spent(node)
        })
    }
}

impl Books {
    fn spent(&self, node: &str) -> (Spent, Spent) {
        let mut run = self.run_base.unwrap_or_default();
        for (_, here) in self.nodes.values() {
            run.add(here);
        }
        let mut this = Usage::default();
        if let Some((base, here)) = self.nodes.get(node) {
            this.add(base);
            this.add(here);
        }
        (Spent::of(&this), Spent::of(&run))
    }
}

impl Spent {
    fn of(u: &Usage) -> Spent {
        Spent {
            cost_usd: u.cost_usd,
            tokens: u.tokens(),
        }
    }
}

/// Whose budget.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Scope<'a> {
    /// The node's `budget:`.
    Node(&'a str),
    /// The workflow's top-level `budget:`.
    Run,
}

/// The first limit of `budget` that `spent` reached (`at_limit`) or went over, as the words
/// after "budget exceeded: ".
pub(crate) fn over(
    budget: &Budget,
    spent: Spent,
    scope: Scope<'_>,
    at_limit: bool,
) -> Option<String> {
    let whose = match scope {
        Scope::Node(id) => format!("node `{id}`"),
        Scope::Run => "the run".to_string(),
    };
    let key = match scope {
        Scope::Node(_) => "the node's `budget`",
        Scope::Run => "the workflow's `budget`",
    };
    if let Some(max) = &budget.max_cost_usd {
        let max = max.value;
        if spent.cost_usd > max || (at_limit && spent.cost_usd >= max) {
            return Some(format!(
                "{whose} spent ${:.4} of its max_cost_usd ${max:.4} (over by ${:.4}); raise \
                 `max_cost_usd` in {key} to let it go on",
                spent.cost_usd,
                (spent.cost_usd - max).max(0.0)
            ));
        }
    }
    if let Some(max) = &budget.max_tokens {
        let max = max.value;
        if spent.tokens > max || (at_limit && spent.tokens >= max) {
            return Some(format!(
                "{whose} used {} tokens of its max_tokens {max} (over by {}); raise \
                 `max_tokens` in {key} to let it go on",
                spent.tokens,
                spent.tokens.saturating_sub(max)
            ));
        }
    }
    None
}

/// Why a new turn of `node` may not start, if a budget says so, given what was spent.
pub(crate) fn check_before(
    node_budget: Option<&Budget>,
    run_budget: Option<&Budget>,
    node: &str,
    (node_spent, run_spent): (Spent, Spent),
) -> Option<String> {
    let refused = |reason: String| format!("budget exceeded: {reason}; no new agent turn starts");
    if let Some(reason) = run_budget.and_then(|b| over(b, run_spent, Scope::Run, true)) {
        return Some(refused(reason));
    }
    node_budget
        .and_then(|b| over(b, node_spent, Scope::Node(node), true))
        .map(refused)
}

/// Why the node fails after a turn that went over a budget, if it did.
pub(crate) fn check_after(
    node_budget: Option<&Budget>,
    run_budget: Option<&Budget>,
    node: &str,
    (node_spent, run_spent): (Spent, Spent),
) -> Option<String> {
    node_budget
        .and_then(|b| over(b, node_spent, Scope::Node(node), false))
        .or_else(|| run_budget.and_then(|b| over(b, run_spent, Scope::Run, false)))
        .map(|reason| format!("budget exceeded: {reason}"))
}

/// Dollars left before the first limit on cost, for a CLI that can stop itself there.
pub(crate) fn dollars_left(
    node_budget: Option<&Budget>,
    run_budget: Option<&Budget>,
    (node_spent, run_spent): (Spent, Spent),
) -> Option<f64> {
    let left = |b: Option<&Budget>, spent: Spent| {
        b.and_then(|b| b.max_cost_usd.as_ref())
            .map(|m| (m.value - spent.cost_usd).max(0.0))
    };
    match (left(node_budget, node_spent), left(run_budget, run_spent)) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{Span, Spanned};

    fn budget(cost: Option<f64>, tokens: Option<u64>) -> Budget {
        Budget {
            max_cost_usd: cost.map(|c| Spanned::new(c, Span::new(0, 0))),
            max_tokens: tokens.map(|t| Spanned::new(t, Span::new(0, 0))),
        }
    }

    #[test]
    fn a_turn_over_the_node_budget_fails_it_by_how_much() {
        let b = budget(None, Some(100));
        let spent = Spent {
            cost_usd: 0.0,
            tokens: 130,
        };
        assert_eq!(
            check_after(Some(&b), None, "fix", (spent, spent)).unwrap(),
            "budget exceeded: node `fix` used 130 tokens of its max_tokens 100 (over by 30); \
             raise `max_tokens` in the node's `budget` to let it go on"
        );
        let under = Spent {
            cost_usd: 0.0,
            tokens: 100,
        };
        assert!(check_after(Some(&b), None, "fix", (under, under)).is_none());
        // At the limit, no new turn starts.
        assert!(check_before(Some(&b), None, "fix", (under, under)).is_some());
    }

    #[test]
    fn the_run_budget_is_checked_first_and_names_the_run() {
        let run = budget(Some(1.0), None);
        let spent = Spent {
            cost_usd: 1.25,
            tokens: 10,
        };
        let why = check_before(None, Some(&run), "x", (spent, spent)).unwrap();
        assert!(
            why.starts_with("budget exceeded: the run spent $1.2500"),
            "{why}"
        );
        assert!(why.contains("over by $0.2500"), "{why}");
        assert_eq!(dollars_left(None, Some(&run), (spent, spent)), Some(0.0));
    }
}
