//! One agent run, start to verdict: spawn in a PTY, stream, keep the transcript, enforce the
//! timeouts and cancellation, judge.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::events::{self, AgentEvent, Lines};
use super::harness::{Harness, StreamReader};
use super::invocation::{resolve_program_in, AgentInvocation, ProgramError, SessionMode};
use super::outcome::{AgentOutcome, Context, Failure, FailureKind, Observed, Stop, Verdict};
use crate::process::pty::{ExitStatus, PtyChild, PtyCommand, PtyEvent, SpawnError};

/// How long the CLI may take to exit by itself after its `result` event before its group is
/// stopped (it has nothing left to say; something it started may keep it alive).
pub const EXIT_AFTER_RESULT: Duration = Duration::from_secs(5);

/// Something that happened during a run, for live progress.
#[derive(Debug, Clone)]
pub enum SessionEvent {
    /// The CLI process started.
    Spawned {
        /// Its pid, also its process group id.
        pid: u32,
        /// How it reaches the conversation.
        session: SessionMode,
    },
    /// The CLI reported the conversation's id (Claude's `system/init`, Codex's
    /// `thread.started`). For a harness that does not let reins choose the id, this is the
    /// moment to record it.
    SessionStarted(String),
    /// The CLI printed an event.
    Agent(AgentEvent),
}

/// The sidecar of `transcript.jsonl` in which reins notes when each line arrived: one line
/// `OFFSET MILLIS` per transcript line, the line's byte offset in the transcript and the Unix
/// time in milliseconds at which reins read it from the CLI. Reins's own clock: nothing in
/// the agent's output decides these times.
pub const TIMES_FILE: &str = "transcript.times";

/// The arrival times of a transcript's lines ([`TIMES_FILE`]), by the lines' byte offsets.
/// Lines that do not parse are ignored (a torn last line after a crash).
pub fn read_times(text: &str) -> HashMap<u64, u64> {
    text.lines()
        .filter_map(|line| {
            let (offset, ms) = line.split_once(' ')?;
            Some((offset.parse().ok()?, ms.trim().parse().ok()?))
        })
        .collect()
}

/// Runs the agent once and judges the run.
///
/// The prompt is kept in `node_dir/prompt.md` and every output line is appended to
/// `node_dir/transcript.jsonl` as it arrives (lines that are not JSON are wrapped as
/// `{"type":"reins_text","text":…}`; partial-message deltas are not kept, the whole message
/// follows them), its arrival time to `node_dir/transcript.times` ([`TIMES_FILE`]). `events`, when given, receives every event as it happens. Setting `cancel`
/// to true stops the run: its process group gets SIGTERM, then SIGKILL after `inv.grace`.
/// Dropping the returned future kills the process group too.
///
/// Sessions: the CLI refuses `--resume` of an id it never saw (a crash before the first
/// event) and `--session-id` of an id already used in the same folder (a crash after it). In
/// either case `run` retries once the other way with the same id, so the caller can keep one
/// id per sticky session and pick `New` for its first turn and `Resume` for the others;
/// [`AgentOutcome::session`] tells which way worked.
pub async fn run(
    inv: AgentInvocation,
    events: Option<mpsc::UnboundedSender<SessionEvent>>,
    mut cancel: watch::Receiver<bool>,
) -> AgentOutcome {
    let started = Instant::now();
    let harness = inv.harness.harness();
    let mut session = inv.session;
    let mut seen = match start(&inv) {
        Err(e) => Err(e),
        Ok((mut transcript, program)) => {
            let mut attempt = Attempt {
                inv: &inv,
                harness,
                program,
                transcript: &mut transcript,
                events: events.as_ref(),
                cancel: &mut cancel,
                wall_deadline: inv.wall_timeout.map(|t| started + t),
            };
            let mut seen = attempt.run(session).await;
            if let Ok(first) = &seen {
                let refused = first.init.is_none() && first.stop.is_none();
                if let Some((other, why)) =
                    refused.then(|| harness.fallback(session, first)).flatten()
                {
                    attempt.note(&format!("reins: {why}"));
                    session = other;
                    seen = attempt.run(session).await;
                }
            }
            seen
        }
    };
    let verdict = match &mut seen {
        Err(e) => Verdict::Failed(Failure {
            kind: FailureKind::Start,
            message: e.to_string(),
            transient: false,
        }),
        Ok(seen) => harness.judge(
            seen,
            Context {
                cwd: &inv.cwd,
                permission_mode: inv.permission_mode.as_deref(),
                required_outputs: &inv.required_outputs,
                harness: inv.harness,
            },
        ),
    };
    let seen = seen.unwrap_or_default();
    let result = seen.result.as_ref();
    if !harness.chooses_session_id() {
        // The CLI named the conversation; that is the id a later turn resumes.
        if let Some(id) = seen
            .init
            .as_ref()
            .and_then(|i| i.session_id.as_deref())
            .and_then(|id| uuid::Uuid::parse_str(id).ok())
        {
            session = SessionMode::Resume(id);
        }
    }
    AgentOutcome {
        verdict,
        result_text: result.and_then(|r| r.result.clone()),
        session,
        session_started: seen.init.is_some(),
        model: seen.init.as_ref().and_then(|i| i.model.clone()),
        cost_usd: result
            .and_then(|r| r.run_cost_usd.or(r.total_cost_usd))
            .unwrap_or(0.0),
        session_cost_usd: result.and_then(|r| r.total_cost_usd).unwrap_or(0.0),
        usage: result.map(|r| r.usage).unwrap_or_default(),
        priced: result.is_some_and(|r| r.total_cost_usd.is_some() || r.run_cost_usd.is_some()),
        thread_usage: result.and_then(|r| r.thread_usage),
        turns: result.and_then(|r| r.num_turns).unwrap_or(0),
        duration: started.elapsed(),
        exit: seen.exit,
        denials: result
            .map(|r| r.permission_denials.clone())
            .unwrap_or_default(),
    }
}

/// The transcript being written and its sidecar of arrival times.
struct Transcript {
    lines: File,
    times: File,
    /// The transcript's length: the offset of the next line.
    len: u64,
}

/// Why the CLI did not start: its files could not be written, it is not installed, or the
/// system refused to spawn it.
#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error("cannot write {}: {source}", .path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Program(#[from] ProgramError),
    #[error(transparent)]
    Spawn(#[from] SpawnError),
}

/// Creates the node's folder, writes `prompt.md`, opens the transcript, finds the program.
fn start(inv: &AgentInvocation) -> Result<(Transcript, PathBuf), StartError> {
    let cannot = |what: &Path, source: std::io::Error| StartError::Write {
        path: what.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(&inv.node_dir).map_err(|e| cannot(&inv.node_dir, e))?;
    let prompt = inv.prompt_path();
    std::fs::write(&prompt, &inv.prompt).map_err(|e| cannot(&prompt, e))?;
    let open = |path: PathBuf| {
        File::options()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| cannot(&path, e))
    };
    let lines = open(inv.transcript_path())?;
    let times = open(inv.transcript_times_path())?;
    let len = lines.metadata().map(|m| m.len()).unwrap_or(0);
    let transcript = Transcript { lines, times, len };
    // Look the program up as the child would: with the PATH it gets, from its folder.
    let path = inv
        .env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.into())
        .or_else(|| std::env::var_os("PATH"));
    let program = resolve_program_in(&inv.program.to_string_lossy(), path, &inv.cwd)?;
    Ok((transcript, program))
}

/// One process of a run.
struct Attempt<'a> {
    inv: &'a AgentInvocation,
    harness: &'static dyn Harness,
    program: PathBuf,
    transcript: &'a mut Transcript,
    events: Option<&'a mpsc::UnboundedSender<SessionEvent>>,
    cancel: &'a mut watch::Receiver<bool>,
    wall_deadline: Option<Instant>,
}

impl Attempt<'_> {
    /// Spawns the CLI for `session` and streams it to its end. `Err` if it could not start.
    async fn run(&mut self, session: SessionMode) -> Result<Observed, StartError> {
        let mut seen = Observed::default();
        if *self.cancel.borrow() {
            seen.stop = Some(Stop::Cancelled);
            return Ok(seen);
        }
        let command = self.harness.command(self.inv, session);
        let mut env = self.inv.env.clone();
        env.extend(command.env);
        let mut child = PtyChild::spawn(PtyCommand {
            program: self.program.clone(),
            args: command.args,
            env,
            env_remove: command.env_remove,
            cwd: self.inv.cwd.clone(),
            grace: self.inv.grace,
            watchdog: self.inv.watchdog.clone(),
        })
        .await?;
        let mut reader = self.harness.reader(self.inv, session);
        self.emit(SessionEvent::Spawned {
            pid: child.pid(),
            session,
        });

        let mut lines = Lines::new();
        let idle = self.inv.idle_timeout;
        let mut idle_deadline = idle.map(|t| Instant::now() + t);
        let mut exit_deadline: Option<Instant> = None;
        let mut cancel_open = true;
        let stop = loop {
            let deadline = [idle_deadline, self.wall_deadline, exit_deadline]
                .into_iter()
                .flatten()
                .min();
            tokio::select! {
                event = child.next() => match event {
                    Some(PtyEvent::Output(bytes)) => {
                        idle_deadline = idle.map(|t| Instant::now() + t);
                        self.feed(&mut lines, reader.as_mut(), &mut seen, &bytes);
                        if seen.result.is_some() && exit_deadline.is_none() {
                            exit_deadline = Some(Instant::now() + EXIT_AFTER_RESULT);
                        }
                    }
                    Some(PtyEvent::Exited(status)) => {
                        seen.exit = Some(status);
                        break None;
                    }
                    None => break None,
                },
                () = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)),
                    if deadline.is_some() =>
                {
                    let now = Instant::now();
                    if self.wall_deadline.is_some_and(|d| d <= now) {
                        break Some(Stop::Wall(self.inv.wall_timeout.unwrap_or_default()));
                    }
                    if exit_deadline.is_some_and(|d| d <= now) {
                        // The result is in; the process lingers. Not a failure.
                        break None;
                    }
                    break Some(Stop::Idle(idle.unwrap_or_default()));
                },
                changed = self.cancel.changed(), if cancel_open => match changed {
                    Ok(()) if *self.cancel.borrow() => break Some(Stop::Cancelled),
                    Ok(()) => {}
                    Err(_) => cancel_open = false,
                },
            }
        };
        if seen.exit.is_none() {
            let lingered = stop.is_none();
            seen.stop = stop;
            let status = child
                .terminate(self.inv.grace, |bytes| {
                    self.feed(&mut lines, reader.as_mut(), &mut seen, &bytes)
                })
                .await;
            seen.exit = if lingered {
                // Stopped after a complete result: judge the result, not the signal.
                status.map(|_| ExitStatus::Code(0))
            } else {
                status
            };
        }
        if let Some(line) = lines.finish() {
            self.line(reader.as_mut(), &mut seen, line);
        }
        Ok(seen)
    }

    fn feed(
        &mut self,
        lines: &mut Lines,
        reader: &mut dyn StreamReader,
        seen: &mut Observed,
        bytes: &[u8],
    ) {
        for line in lines.push(bytes) {
            self.line(reader, seen, line);
        }
    }

    /// Keeps, notes and forwards one output line.
    fn line(&mut self, reader: &mut dyn StreamReader, seen: &mut Observed, line: String) {
        let events = reader.read(&line);
        if events.is_empty()
            || events
                .iter()
                .all(|e| matches!(e, AgentEvent::Partial { .. }))
        {
            // Blank, or a piece of a message the whole of which follows.
        } else if line.trim_start().starts_with('{') {
            self.append(line.trim());
        } else {
            self.append(&text_line(line.trim()));
        }
        for event in events {
            self.event(seen, event);
        }
    }

    /// Notes and forwards one event.
    fn event(&mut self, seen: &mut Observed, event: AgentEvent) {
        match &event {
            AgentEvent::Text(text) => seen.push_text(text.clone()),
            AgentEvent::Init(init) => {
                seen.init = Some(init.clone());
                if let Some(id) = &init.session_id {
                    self.emit(SessionEvent::SessionStarted(id.clone()));
                }
            }
            AgentEvent::Assistant(message) if message.error.is_some() => {
                seen.api_error = Some((message.api_error_status, message.error.clone()));
            }
            AgentEvent::ApiRetry(retry) => {
                seen.api_error = Some((retry.error_status, retry.error.clone()));
            }
            AgentEvent::Result(result) => seen.result = Some((**result).clone()),
            _ => {}
        }
        self.emit(SessionEvent::Agent(event));
    }

    /// Records a line of reins' own in the transcript and the event stream.
    fn note(&mut self, text: &str) {
        self.append(&text_line(text));
        self.emit(SessionEvent::Agent(AgentEvent::Text(text.to_string())));
    }

    fn append(&mut self, line: &str) {
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        let t = &mut *self.transcript;
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        if let Err(e) = t.lines.write_all(&bytes) {
            tracing::warn!(
                "cannot append to {}: {e}",
                self.inv.transcript_path().display()
            );
            return;
        }
        let _ = writeln!(t.times, "{} {at}", t.len);
        t.len += bytes.len() as u64;
    }

    fn emit(&self, event: SessionEvent) {
        if let Some(events) = self.events {
            let _ = events.send(event);
        }
    }
}

/// A transcript line for text that was not JSON.
fn text_line(text: &str) -> String {
    serde_json::json!({ "type": events::TEXT_LINE_TYPE, "text": text }).to_string()
}
