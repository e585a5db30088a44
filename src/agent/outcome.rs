//! How an agent run ended, and the rules that judge it.
//!
//! A run succeeds only if the CLI exited 0, printed a `result` event of subtype `success`
//! that is not an error, nothing was denied by the permission rules, and every required
//! output file exists. Otherwise it failed, with a message naming the rule that failed and how
//! to fix it, and a `transient` flag that is set only for failures worth retrying unchanged
//! (the model API overloaded, rate limited or failing).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::events::{Denial, Init, ResultEvent, TokenUsage};
use super::harness::HarnessKind;
use super::invocation::SessionMode;
use crate::process::pty::ExitStatus;
use crate::workflow::duration;

/// Everything the engine needs to know about one agent run.
#[derive(Debug, Clone)]
pub struct AgentOutcome {
    /// Succeeded, failed (and why), or cancelled.
    pub verdict: Verdict,
    /// The agent's final answer: the node's output.
    pub result_text: Option<String>,
    /// How the conversation was reached in the end; its id is the session id to record.
    /// It differs from the requested mode only after a fallback (see [`super::run`]).
    pub session: SessionMode,
    /// True once the CLI reported the session started, so a later turn can `--resume` it.
    pub session_started: bool,
    /// The full model id the CLI used.
    pub model: Option<String>,
    /// What this run cost in US dollars (0 when the CLI reported nothing). Sum these over
    /// nodes for a run's cost: each turn of a sticky session counts only its own calls.
    pub cost_usd: f64,
    /// What the whole conversation has cost so far, as the CLI reports it (`total_cost_usd`,
    /// cumulative over `--resume` turns).
    pub session_cost_usd: f64,
    /// Token counts of the run.
    pub usage: TokenUsage,
    /// False when the CLI reported no cost (Codex): `cost_usd` is then unknown, not zero.
    pub priced: bool,
    /// The conversation's running token totals after the run, when the CLI reports them.
    pub thread_usage: Option<TokenUsage>,
    /// Model calls made.
    pub turns: u64,
    /// Wall time, spawn to exit, as reins measured it.
    pub duration: Duration,
    /// How the process ended (`None` if it never started or would not die).
    pub exit: Option<ExitStatus>,
    /// Tool calls the permission rules refused.
    pub denials: Vec<Denial>,
}

impl AgentOutcome {
    /// True when the run succeeded.
    pub fn succeeded(&self) -> bool {
        matches!(self.verdict, Verdict::Succeeded)
    }

    /// The failure, if the run failed.
    pub fn failure(&self) -> Option<&Failure> {
        match &self.verdict {
            Verdict::Failed(failure) => Some(failure),
            _ => None,
        }
    }
}

/// The end of a run, judged.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Every success rule held.
    Succeeded,
    /// A rule failed.
    Failed(Failure),
    /// The run was cancelled; its process group was stopped.
    Cancelled,
}

/// Why a run failed.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// Which rule failed.
    pub kind: FailureKind,
    /// What happened and how to fix it, in one lowercase sentence or two.
    pub message: String,
    /// True when trying again unchanged may well succeed (API overloaded, rate limited,
    /// server errors). Denials, max turns, missing outputs and timeouts are not transient.
    pub transient: bool,
}

/// The rule a failed run broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The CLI could not be started (missing program or folder, argv too long ...).
    Start,
    /// The CLI ended without a `result` event.
    NoResult,
    /// The model API failed (HTTP error, overloaded, rate limited, unreachable).
    Api,
    /// The agent used up `max_turns`.
    MaxTurns,
    /// The agent used up its budget (`--max-budget-usd`).
    Budget,
    /// The CLI reported another error.
    AgentError,
    /// The CLI reported success but exited non-zero.
    Exit,
    /// The permission rules refused a tool call.
    Denied,
    /// A required output file is missing.
    MissingOutputs,
    /// The agent printed nothing for the idle timeout.
    IdleTimeout,
    /// The agent ran past the wall timeout.
    WallTimeout,
}

/// Why reins stopped a run itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// No output for this long.
    Idle(Duration),
    /// Running for this long.
    Wall(Duration),
    /// The caller cancelled.
    Cancelled,
}

/// What a run showed, gathered while it streamed.
#[derive(Debug, Default, Clone)]
pub struct Observed {
    /// How the process ended.
    pub exit: Option<ExitStatus>,
    /// Set when reins stopped the process itself.
    pub stop: Option<Stop>,
    /// The `system/init` event.
    pub init: Option<Init>,
    /// The final `result` event.
    pub result: Option<ResultEvent>,
    /// The last API failure seen (assistant `error`, `api_retry`): HTTP status and kind.
    pub api_error: Option<(Option<u16>, Option<String>)>,
    /// The last lines that were not JSON (the CLI's own error messages).
    pub text_lines: Vec<String>,
}

impl Observed {
    /// Keeps at most this many non-JSON lines.
    pub const MAX_TEXT_LINES: usize = 20;

    /// True when a line of the CLI's own or an error of its result contains `needle`.
    pub fn said(&self, needle: &str) -> bool {
        self.text_lines.iter().any(|l| l.contains(needle))
            || self.result.as_ref().is_some_and(|r| {
                r.errors.iter().any(|e| e.contains(needle))
                    || (r.is_error && r.result.as_deref().is_some_and(|t| t.contains(needle)))
            })
    }

    /// Records a non-JSON line.
    pub fn push_text(&mut self, line: String) {
        if self.text_lines.len() == Self::MAX_TEXT_LINES {
            self.text_lines.remove(0);
        }
        self.text_lines.push(line);
    }
}

/// What the rules need to know about the invocation.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The working directory (paths in messages are shown relative to it).
    pub cwd: &'a Path,
    /// The permission mode asked for (the CLI's own report wins when there is one).
    pub permission_mode: Option<&'a str>,
    /// Files that must exist, absolute or relative to `cwd`.
    pub required_outputs: &'a [PathBuf],
    /// Which CLI ran (denials are fixed differently on each).
    pub harness: HarnessKind,
}

/// Applies the success rules, in order.
pub fn judge(seen: &Observed, cx: Context<'_>) -> Verdict {
    let fail = |kind, message: String, transient| {
        Verdict::Failed(Failure {
            kind,
            message,
            transient,
        })
    };
    match seen.stop {
        Some(Stop::Cancelled) => return Verdict::Cancelled,
        Some(Stop::Wall(limit)) => {
            return fail(
                FailureKind::WallTimeout,
                format!(
                    "the agent ran longer than its timeout of {} and was stopped; raise `timeout` \
                     or split the task",
                    duration::format(limit)
                ),
                false,
            )
        }
        Some(Stop::Idle(limit)) => {
            return fail(
                FailureKind::IdleTimeout,
                format!(
                    "the agent printed nothing for {} and was stopped (idle timeout); the model \
                     API or a tool call may hang",
                    duration::format(limit)
                ),
                false,
            )
        }
        None => {}
    }
    let exit = seen
        .exit
        .map_or_else(|| "no exit status".to_string(), |e| e.to_string());
    let api_transient = seen
        .api_error
        .as_ref()
        .is_some_and(|(status, kind)| is_transient(*status, kind.as_deref()));
    let Some(result) = &seen.result else {
        let said = if seen.text_lines.is_empty() {
            String::new()
        } else {
            format!(": {}", seen.text_lines.join(" / "))
        };
        return fail(
            FailureKind::NoResult,
            format!("the agent ended ({exit}) without reporting a result{said}"),
            api_transient,
        );
    };
    match result.subtype.as_str() {
        "success" => {}
        "error_max_turns" => {
            return fail(
                FailureKind::MaxTurns,
                format!(
                    "the agent used up its {} turns before finishing; raise `max_turns` or split \
                     the task",
                    result
                        .num_turns
                        .map_or_else(|| "allowed".to_string(), |n| n.to_string())
                ),
                false,
            )
        }
        "error_max_budget_usd" => {
            return fail(
                FailureKind::Budget,
                "budget exceeded: the agent spent what its budget had left (--max-budget-usd) \
                 before finishing"
                    .into(),
                false,
            )
        }
        other => {
            return fail(
                FailureKind::AgentError,
                format!(
                    "the agent failed ({other}){}",
                    if result.errors.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", result.errors.join("; "))
                    }
                ),
                api_transient,
            )
        }
    }
    if result.is_error {
        let text = result.result.as_deref().unwrap_or("no message").trim();
        let is_api = result.api_error_status.is_some()
            || result.terminal_reason.as_deref() == Some("api_error");
        return if is_api {
            let status = result
                .api_error_status
                .or(seen.api_error.as_ref().and_then(|e| e.0));
            let kind = seen.api_error.as_ref().and_then(|e| e.1.as_deref());
            let transient = is_transient(status, kind) || (status.is_none() && kind.is_none());
            fail(
                FailureKind::Api,
                format!("the model API failed: {text}"),
                transient,
            )
        } else {
            fail(
                FailureKind::AgentError,
                format!("the agent reported an error: {text}"),
                api_transient,
            )
        };
    }
    if !seen.exit.is_some_and(ExitStatus::success) {
        return fail(
            FailureKind::Exit,
            format!("the agent reported success but ended with {exit}"),
            false,
        );
    }
    if !result.permission_denials.is_empty() {
        let mode = seen
            .init
            .as_ref()
            .and_then(|i| i.permission_mode.as_deref())
            .or(cx.permission_mode)
            .unwrap_or("default");
        let message = match cx.harness {
            HarnessKind::Claude => denial_message(&result.permission_denials, mode, cx.cwd),
            HarnessKind::Codex => codex_denial_message(&result.permission_denials, mode),
        };
        return fail(FailureKind::Denied, message, false);
    }
    let missing: Vec<String> = cx
        .required_outputs
        .iter()
        .filter(|path| !cx.cwd.join(path).exists())
        .map(|path| shown(path, cx.cwd))
        .collect();
    if !missing.is_empty() {
        let (noun, list) = match missing.as_slice() {
            [one] => ("output", one.clone()),
            many => ("outputs", many.join(", ")),
        };
        return fail(
            FailureKind::MissingOutputs,
            format!(
                "the agent finished but did not write the required {noun} {list}; say in the \
                 prompt where to write it"
            ),
            false,
        );
    }
    Verdict::Succeeded
}

/// True for API failures worth retrying unchanged: rate limits, overload, server errors.
pub fn is_transient(status: Option<u16>, kind: Option<&str>) -> bool {
    let status_says = matches!(status, Some(408 | 429 | 500 | 502 | 503 | 504 | 529));
    let kind_says = kind.is_some_and(|k| {
        matches!(
            k,
            "rate_limit"
                | "rate_limit_error"
                | "overloaded"
                | "overloaded_error"
                | "server_error"
                | "api_error"
                | "timeout"
                | "connection_error"
        )
    });
    status_says || kind_says
}

const EDIT_TOOLS: [&str; 4] = ["Write", "Edit", "MultiEdit", "NotebookEdit"];

fn denial_message(denials: &[Denial], mode: &str, cwd: &Path) -> String {
    let what: Vec<String> = denials
        .iter()
        .map(|d| match (d.tool_name.as_str(), d.target()) {
            ("Bash", Some(command)) => format!("Bash `{command}`"),
            (tool, Some(target)) => format!("{tool} on {}", shown(Path::new(target), cwd)),
            (tool, None) => tool.to_string(),
        })
        .collect();
    let mut rules: Vec<String> = Vec::new();
    for d in denials {
        let rule = match (d.tool_name.as_str(), d.target()) {
            ("Bash", Some(command)) => match command.split_whitespace().next() {
                Some(word) => format!("\"Bash({word} *)\""),
                None => "Bash".into(),
            },
            (tool, _) => tool.to_string(),
        };
        if !rules.contains(&rule) {
            rules.push(rule);
        }
    }
    let only_edits = denials
        .iter()
        .all(|d| EDIT_TOOLS.contains(&d.tool_name.as_str()));
    let mut fix = format!("allow it with `allowed_tools: [{}]`", rules.join(", "));
    if only_edits && mode != "acceptEdits" {
        fix.push_str(" or `permission_mode: acceptEdits`");
    }
    format!(
        "the agent was denied {} (permission_mode {mode}); {fix}",
        what.join(", ")
    )
}

fn codex_denial_message(denials: &[Denial], sandbox: &str) -> String {
    let what: Vec<String> = denials
        .iter()
        .map(|d| match d.target() {
            Some(command) => format!("`{command}`"),
            None => d.tool_name.clone(),
        })
        .collect();
    format!(
        "Codex declined {} (sandbox {sandbox}); give the agent profile `sandbox: \
         workspace-write`, or `sandbox: none` where the machine is sandboxed already",
        what.join(", ")
    )
}

/// A path relative to `cwd` when it lies inside it.
fn shown(path: &Path, cwd: &Path) -> String {
    path.strip_prefix(cwd).unwrap_or(path).display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn success() -> ResultEvent {
        ResultEvent {
            subtype: "success".into(),
            result: Some("done".into()),
            ..ResultEvent::default()
        }
    }

    fn observed(result: ResultEvent) -> Observed {
        Observed {
            exit: Some(ExitStatus::Code(0)),
            result: Some(result),
            ..Observed::default()
        }
    }

    fn cx<'a>(outputs: &'a [PathBuf]) -> Context<'a> {
        Context {
            cwd: Path::new("/work"),
            permission_mode: None,
            required_outputs: outputs,
            harness: HarnessKind::Claude,
        }
    }

    fn failure(verdict: Verdict) -> Failure {
        match verdict {
            Verdict::Failed(f) => f,
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn a_clean_result_succeeds() {
        assert_eq!(judge(&observed(success()), cx(&[])), Verdict::Succeeded);
    }

    #[test]
    fn a_denied_write_names_the_file_and_the_fix() {
        let mut result = success();
        result.permission_denials = vec![Denial {
            tool_name: "Write".into(),
            tool_input: json!({"file_path": "/work/src/x.rs", "content": "x"}),
        }];
        let f = failure(judge(&observed(result), cx(&[])));
        assert_eq!(f.kind, FailureKind::Denied);
        assert_eq!(
            f.message,
            "the agent was denied Write on src/x.rs (permission_mode default); allow it with \
             `allowed_tools: [Write]` or `permission_mode: acceptEdits`"
        );
        assert!(!f.transient);
    }

    #[test]
    fn a_denied_command_suggests_a_narrow_rule() {
        let mut result = success();
        result.permission_denials = vec![Denial {
            tool_name: "Bash".into(),
            tool_input: json!({"command": "git push origin main"}),
        }];
        let f = failure(judge(&observed(result), cx(&[])));
        assert_eq!(
            f.message,
            "the agent was denied Bash `git push origin main` (permission_mode default); allow it \
             with `allowed_tools: [\"Bash(git *)\"]`"
        );
    }

    #[test]
    fn api_errors_are_transient_only_when_retrying_can_help() {
        for (status, transient) in [(529, true), (500, true), (429, true), (401, false)] {
            let mut result = success();
            result.is_error = true;
            result.api_error_status = Some(status);
            result.terminal_reason = Some("api_error".into());
            result.result = Some(format!("API Error: {status}"));
            let f = failure(judge(&observed(result), cx(&[])));
            assert_eq!(f.kind, FailureKind::Api);
            assert_eq!(f.transient, transient, "status {status}");
            assert!(f.message.starts_with("the model API failed: API Error"));
        }
    }

    #[test]
    fn max_turns_is_not_transient() {
        let mut result = success();
        result.subtype = "error_max_turns".into();
        result.is_error = true;
        result.num_turns = Some(2);
        let f = failure(judge(&observed(result), cx(&[])));
        assert_eq!(f.kind, FailureKind::MaxTurns);
        assert!(f.message.contains("its 2 turns"), "{}", f.message);
        assert!(!f.transient);
    }

    #[test]
    fn missing_outputs_are_listed() {
        let outputs = [PathBuf::from("plan.md"), PathBuf::from("/")];
        let f = failure(judge(&observed(success()), cx(&outputs)));
        assert_eq!(f.kind, FailureKind::MissingOutputs);
        assert!(
            f.message.contains("required output plan.md;"),
            "{}",
            f.message
        );
    }

    #[test]
    fn a_nonzero_exit_fails_even_with_a_success_result() {
        let mut seen = observed(success());
        seen.exit = Some(ExitStatus::Code(3));
        let f = failure(judge(&seen, cx(&[])));
        assert_eq!(f.kind, FailureKind::Exit);
        assert!(f.message.ends_with("exit code 3"));
    }

    #[test]
    fn no_result_quotes_what_the_cli_printed() {
        let mut seen = Observed {
            exit: Some(ExitStatus::Code(1)),
            ..Observed::default()
        };
        seen.push_text("Error: Invalid MCP configuration".into());
        let f = failure(judge(&seen, cx(&[])));
        assert_eq!(f.kind, FailureKind::NoResult);
        assert_eq!(
            f.message,
            "the agent ended (exit code 1) without reporting a result: Error: Invalid MCP \
             configuration"
        );
    }

    #[test]
    fn timeouts_and_cancel_win_over_everything() {
        let mut seen = observed(success());
        seen.stop = Some(Stop::Idle(Duration::from_secs(90)));
        let f = failure(judge(&seen, cx(&[])));
        assert_eq!(f.kind, FailureKind::IdleTimeout);
        assert!(f.message.contains("nothing for 1m30s"), "{}", f.message);
        assert!(!f.transient);
        seen.stop = Some(Stop::Cancelled);
        assert_eq!(judge(&seen, cx(&[])), Verdict::Cancelled);
    }
}
