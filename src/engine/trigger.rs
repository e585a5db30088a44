//! Trigger rules: whether a node runs, given how its dependencies ended.

use crate::store::NodeStatus;
use crate::workflow::Trigger;

/// What a node's trigger rule says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Run it.
    Run,
    /// Skip it, for this reason.
    Skip(String),
}

/// Applies a trigger rule to the settled dependencies (id and status) of a node. A node
/// without dependencies always runs.
pub(crate) fn decide(trigger: Trigger, deps: &[(&str, NodeStatus)]) -> Decision {
    if deps.is_empty() {
        return Decision::Run;
    }
    let rule = trigger.as_str();
    let blocking = |ok: fn(NodeStatus) -> bool| {
        deps.iter().find(|(_, s)| !ok(*s)).map(|(id, s)| {
            Decision::Skip(format!(
                "dependency `{id}` {} (trigger `{rule}`)",
                describe(*s)
            ))
        })
    };
    match trigger {
        Trigger::AllSuccess => blocking(|s| s == NodeStatus::Success).unwrap_or(Decision::Run),
        Trigger::AllDone => Decision::Run,
        Trigger::OneSuccess => {
            if deps.iter().any(|(_, s)| *s == NodeStatus::Success) {
                Decision::Run
            } else {
                Decision::Skip(format!("no dependency succeeded (trigger `{rule}`)"))
            }
        }
        Trigger::NoneFailed => {
            blocking(|s| !matches!(s, NodeStatus::Failed | NodeStatus::Cancelled))
                .unwrap_or(Decision::Run)
        }
    }
}

fn describe(status: NodeStatus) -> &'static str {
    match status {
        NodeStatus::Failed => "failed",
        NodeStatus::Skipped => "was skipped",
        NodeStatus::Cancelled => "was cancelled",
        NodeStatus::Success => "succeeded",
        NodeStatus::Pending | NodeStatus::Running | NodeStatus::Waiting => "did not finish",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use NodeStatus::*;

    fn d(t: Trigger, deps: &[NodeStatus]) -> Decision {
        let named: Vec<(&str, NodeStatus)> = deps.iter().map(|s| ("x", *s)).collect();
        decide(t, &named)
    }

    #[test]
    fn every_rule() {
        let run = Decision::Run;
        assert_eq!(d(Trigger::AllSuccess, &[]), run);
        assert_eq!(d(Trigger::AllSuccess, &[Success, Success]), run);
        assert_eq!(
            d(Trigger::AllSuccess, &[Success, Skipped]),
            Decision::Skip("dependency `x` was skipped (trigger `all_success`)".into())
        );
        assert_eq!(d(Trigger::AllDone, &[Failed, Skipped, Cancelled]), run);
        assert_eq!(d(Trigger::OneSuccess, &[Failed, Success]), run);
        assert!(matches!(
            d(Trigger::OneSuccess, &[Failed, Skipped]),
            Decision::Skip(_)
        ));
        assert_eq!(d(Trigger::NoneFailed, &[Success, Skipped]), run);
        assert_eq!(d(Trigger::NoneFailed, &[Skipped, Skipped]), run);
        assert_eq!(
            d(Trigger::NoneFailed, &[Success, Failed]),
            Decision::Skip("dependency `x` failed (trigger `none_failed`)".into())
        );
        assert!(matches!(
            d(Trigger::NoneFailed, &[Cancelled]),
            Decision::Skip(_)
        ));
    }
}
