//! Coding agents: Claude Code and Codex sessions in pseudo-terminals, fresh or sticky.
//!
//! The engine builds an [`AgentInvocation`] for each `prompt`/`command` node (or loop
//! iteration) and awaits [`run`], which returns an [`AgentOutcome`]: the verdict, the final
//! text, the session id, cost and tokens. The child itself runs in a pseudo-terminal from
//! [`crate::process::pty`]. One file per job:
//!
//! * [`harness`]: the interface every agent CLI implements, and which one a profile uses;
//! * [`claude`]: Claude Code (`claude -p … --output-format stream-json`);
//! * [`codex`]: Codex (`codex exec --json`);
//! * [`invocation`]: what to run: prompt, session, folders, permissions, limits;
//! * [`crate::process::pty`]: the child in a pseudo-terminal, its process group, its death;
//! * [`events`]: the common events of a turn (Claude's stream-json lines, typed);
//! * [`outcome`]: the success rules and what a failure says;
//! * [`session`]: one run, start to verdict, with timeouts, cancel and transcript;
//! * [`render`]: one readable line per event, for logs.

pub mod claude;
pub mod codex;
pub mod events;
pub mod harness;
pub mod invocation;
pub mod outcome;
pub mod render;
pub mod session;

pub use events::AgentEvent;
pub use harness::{Harness, HarnessKind};
pub use invocation::{resolve_program, AgentInvocation, SessionMode};
pub use outcome::{AgentOutcome, Failure, FailureKind, Verdict};
pub use render::render_readable;
pub use session::{run, SessionEvent};
