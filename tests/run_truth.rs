//! Runs that tell the truth: the run's outcome, concurrency, truncated outputs, why a node
//! failed, what a resume runs, and what a dry run can know.

mod support;

use support::run_repo::Repo;

#[test]
fn an_all_done_cleanup_does_not_hide_a_failure() {
    let repo = Repo::new().workflow(
        "teardown",
        r#"nodes:
  - id: test
    bash: exit 1
  - id: cleanup
    depends_on: [test]
    trigger: all_done
    bash: echo cleaned > cleaned.txt
"#,
    );
    repo.reins(["run", "teardown"]).run().code(1);
    assert_eq!(repo.read("cleaned.txt").trim(), "cleaned");
    let run = repo.the_run();
    assert_eq!(repo.status(&run)["status"], "failed");
    assert_eq!(repo.node(&run, "cleanup")["status"], "success");
}

#[test]
fn a_branch_that_ran_because_of_the_failure_handles_it() {
    // A rework branch whose `when` reads the failed node's status, and a `one_success`
    // fallback that ran: each makes the failure part of the plan.
    let repo = Repo::new().workflow(
        "handled",
        r#"nodes:
  - id: test
    bash: exit 1
  - id: rework
    depends_on: [test]
    trigger: all_done
    when: "{{eq nodes.test.status 'failed'}}"
    bash: echo reworked
  - id: primary
    bash: exit 2
  - id: backup
    bash: echo backup
  - id: either
    depends_on: [primary, backup]
    trigger: one_success
    bash: echo one of them
"#,
    );
    repo.reins(["run", "handled"]).run().code(0);
    let run = repo.the_run();
    assert_eq!(repo.node(&run, "test")["status"], "failed");
    assert_eq!(repo.node(&run, "rework")["status"], "success");
    assert_eq!(repo.node(&run, "either")["status"], "success");
    assert_eq!(repo.status(&run)["status"], "success");
}

#[test]
fn a_when_that_does_not_read_the_status_does_not_handle_it() {
    let repo = Repo::new().workflow(
        "unrelated",
        r#"inputs:
  go: {default: "yes"}
nodes:
  - id: test
    bash: exit 1
  - id: report
    depends_on: [test]
    trigger: all_done
    when: "{{inputs.go}}"
    bash: echo report
"#,
    );
    repo.reins(["run", "unrelated"]).run().code(1);
}
