//! Approval gates: a human says yes or no.
//!
//! Reaching a gate records `approval_requested` and the gate *waits* ([`Outcome::Waiting`]):
//! the branch behind it pauses, everything else runs on. An answer is a file,
//! `nodes/<gate>/answer.json`, created with `O_EXCL` ([`write_answer`]), so the first answer
//! wins and a second one is refused, whichever process gives it. The run that owns the gate
//! notices the file (the scheduler polls waiting gates) and starts the gate again; this runner
//! then records `approval_answered` and settles the gate: approved is a success whose output is
//! the comment, rejected is a failure that is never retried (its output is the comment too, so
//! a rework branch can read `{{nodes.GATE.output}}`).
//!
//! A gate's `timeout` counts from `approval_requested`; once it has passed, the gate is
//! rejected by `reins` with the comment `timed out after X`. Nothing is ever approved
//! implicitly.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::plan::Field;
use super::runner::{BoxFuture, Job, NodeRunner, Outcome};
use crate::store::{time, Event, NodeState};
use crate::workflow::{duration, Node, NodeKind};

/// Who answers for reins itself (a timed-out gate).
pub const REINS: &str = "reins";

/// An answer, as kept in `nodes/<gate>/answer.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnswerFile {
    /// Approved or rejected.
    pub approved: bool,
    /// Who answered: the OS user, or `reins` for a timeout.
    pub by: String,
    /// When, RFC 3339.
    pub at: String,
    /// What they said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

impl AnswerFile {
    /// An answer given now by `by`.
    pub fn now(approved: bool, by: impl Into<String>, comment: Option<String>) -> Self {
        Self {
            approved,
            by: by.into(),
            at: time::format(time::now()),
            comment,
        }
    }

    /// The event that records it.
    pub fn event(&self, node: &str) -> Event {
        Event::ApprovalAnswered {
            node: node.to_string(),
            approved: self.approved,
            by: self.by.clone(),
            comment: self.comment.clone(),
        }
    }
}

/// The answer file of a gate, given its node folder.
pub fn answer_path(node_dir: &Path) -> PathBuf {
    node_dir.join("answer.json")
}

/// Reads a gate's answer, if one was given.
pub fn read_answer(node_dir: &Path) -> Option<AnswerFile> {
    let text = std::fs::read_to_string(answer_path(node_dir)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Why an answer was not written.
#[derive(Debug)]
pub enum AnswerError {
    /// Someone answered first: their answer.
    AlreadyAnswered(Option<AnswerFile>),
    /// The file could not be written.
    Io(std::io::Error),
}

/// Writes a gate's answer unless there is one already (the first answer wins).
pub fn write_answer(node_dir: &Path, answer: &AnswerFile) -> Result<(), AnswerError> {
    std::fs::create_dir_all(node_dir).map_err(AnswerError::Io)?;
    let path = answer_path(node_dir);
    let mut file = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            // The winner may still be writing it: give it a moment.
            for _ in 0..20 {
                if let Some(a) = read_answer(node_dir) {
                    return Err(AnswerError::AlreadyAnswered(Some(a)));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            return Err(AnswerError::AlreadyAnswered(None));
        }
        Err(e) => return Err(AnswerError::Io(e)),
    };
    let text = serde_json::to_string_pretty(answer).map_err(|e| AnswerError::Io(e.into()))?;
    file.write_all(text.as_bytes())
        .and_then(|_| file.sync_all())
        .map_err(AnswerError::Io)
}

/// Moves an old answer aside (`answer.N.json`) so the gate can be asked again
/// (`reins resume --from`). Nothing is deleted.
pub fn retire_answer(node_dir: &Path) -> std::io::Result<()> {
    let path = answer_path(node_dir);
    if !path.exists() {
        return Ok(());
    }
    let mut n = 1;
    loop {
        let old = node_dir.join(format!("answer.{n}.json"));
        if !old.exists() {
            return std::fs::rename(&path, old);
        }
        n += 1;
    }
}

/// How long a gate waits: its `approval.timeout`, else its node `timeout` (never the
/// workflow's default timeout, which is meant for work, not for humans).
pub fn gate_timeout(node: &Node) -> Option<Duration> {
    match &node.kind {
        NodeKind::Approval(a) => a
            .timeout
            .as_ref()
            .or(node.timeout.as_ref())
            .map(|t| t.value),
        _ => None,
    }
}

/// When a waiting gate times out, if it has a timeout and was asked.
pub fn deadline(node: &Node, state: &NodeState) -> Option<SystemTime> {
    let asked = state.approval.as_ref()?.requested_at?;
    Some(asked + gate_timeout(node)?)
}

/// The rejection reins gives a gate whose timeout passed.
pub fn timed_out(node: &Node) -> AnswerFile {
    let after = gate_timeout(node).map(duration::format).unwrap_or_default();
    AnswerFile::now(false, REINS, Some(format!("timed out after {after}")))
}

/// The OS user answering: the account name, else `$USER`, else the uid.
pub fn os_user() -> String {
    let uid = nix::unistd::getuid();
    if let Ok(Some(user)) = nix::unistd::User::from_uid(uid) {
        return user.name;
    }
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| format!("uid {uid}"))
}

/// True when a gate has an answer waiting to be picked up, or its timeout has passed.
pub fn ready_to_settle(node: &Node, state: &NodeState, node_dir: &Path) -> bool {
    answer_path(node_dir).exists() || deadline(node, state).is_some_and(|d| SystemTime::now() >= d)
}

/// Runs `approval` nodes.
pub struct ApprovalRunner;

impl NodeRunner for ApprovalRunner {
    fn run(&self, job: Job) -> BoxFuture<Outcome> {
        Box::pin(async move { run(job) })
    }
}

fn run(job: Job) -> Outcome {
    let node = &job.plan.workflow.nodes[job.index];
    let prior = job.prior.approval.clone();
    let answer = match prior.as_ref().and_then(|a| a.answer.clone()) {
        Some(a) => AnswerFile {
            approved: a.approved,
            by: a.by,
            at: String::new(),
            comment: a.comment,
        },
        None => {
            let mut state = job.prior.clone();
            if prior.is_none() {
                let message = match job.plan.render(job.index, Field::Body, &job.context) {
                    Ok(m) => m,
                    Err(e) => return Outcome::fatal(format!("cannot render the message: {e}")),
                };
                job.recorder.record(Event::ApprovalRequested {
                    node: job.node.clone(),
                    message,
                });
                state = job
                    .recorder
                    .with_state(|s| s.node(&job.node).cloned().unwrap_or_default());
            }
            let answer = match read_answer(&job.dir) {
                Some(a) => a,
                None if deadline(node, &state).is_some_and(|d| SystemTime::now() >= d) => {
                    let rejection = timed_out(node);
                    match write_answer(&job.dir, &rejection) {
                        Ok(()) => rejection,
                        Err(AnswerError::AlreadyAnswered(Some(a))) => a,
                        Err(AnswerError::AlreadyAnswered(None)) => return Outcome::Waiting,
                        Err(AnswerError::Io(e)) => {
                            return Outcome::fatal(format!(
                                "cannot record the gate's timeout in {}: {e}",
                                answer_path(&job.dir).display()
                            ))
                        }
                    }
                }
                None => return Outcome::Waiting,
            };
            job.recorder.record(answer.event(&job.node));
            answer
        }
    };
    outcome(&answer)
}

/// How an answer settles the gate.
fn outcome(answer: &AnswerFile) -> Outcome {
    let comment = answer.comment.clone().unwrap_or_default();
    if answer.approved {
        return Outcome::Success {
            output: comment,
            usage: None,
        };
    }
    let error = if answer.by == REINS {
        format!("rejected: {comment}")
    } else if comment.is_empty() {
        format!("rejected by {}", answer.by)
    } else {
        format!("rejected by {}: {comment}", answer.by)
    };
    Outcome::Failure {
        error,
        exit_code: None,
        output: comment,
        usage: None,
        retryable: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_answer_wins() {
        let dir = tempfile::tempdir().unwrap();
        let node = dir.path().join("gate");
        let yes = AnswerFile::now(true, "ann", Some("ok".into()));
        write_answer(&node, &yes).unwrap();
        let no = AnswerFile::now(false, "bob", None);
        match write_answer(&node, &no) {
            Err(AnswerError::AlreadyAnswered(Some(a))) => assert_eq!(a, yes),
            other => panic!("{other:?}"),
        }
        retire_answer(&node).unwrap();
        assert!(node.join("answer.1.json").exists());
        write_answer(&node, &no).unwrap();
        assert_eq!(read_answer(&node), Some(no));
    }

    #[test]
    fn a_rejection_is_not_retried_and_keeps_the_comment() {
        match outcome(&AnswerFile::now(false, "ann", Some("too big".into()))) {
            Outcome::Failure {
                error,
                output,
                retryable,
                ..
            } => {
                assert_eq!(error, "rejected by ann: too big");
                assert_eq!(output, "too big");
                assert!(!retryable);
            }
            other => panic!("{other:?}"),
        }
    }
}
