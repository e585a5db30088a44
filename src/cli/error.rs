//! What a command ends with: an [`Outcome`] it reached, or an [`Error`] that stopped it. `main`
//! prints the error (once) and turns either into the process exit code.

use std::fmt;
use std::io;

use crate::exit;

/// How a command that ran to its end came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It did what was asked.
    Success,
    /// A node failed or a gate was rejected (or a `doctor` check failed).
    Failed,
    /// The run waits at an approval gate.
    Waiting,
    /// The run was cancelled.
    Cancelled,
}

impl Outcome {
    /// The process exit code.
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Success => exit::SUCCESS,
            Outcome::Failed => exit::NODE_FAILED,
            Outcome::Waiting => exit::WAITING_FOR_APPROVAL,
            Outcome::Cancelled => exit::CANCELLED,
        }
    }

    /// The outcome of `reins run`/`reins resume` ending in `status`.
    pub fn of_run(status: crate::store::RunStatus) -> Self {
        use crate::store::RunStatus;
        match status {
            RunStatus::Success => Outcome::Success,
            RunStatus::Failed | RunStatus::Running | RunStatus::Interrupted => Outcome::Failed,
            RunStatus::Waiting => Outcome::Waiting,
            RunStatus::Cancelled => Outcome::Cancelled,
        }
    }
}

/// Why a command stopped before its end.
#[derive(Debug)]
pub enum Error {
    /// The command line, or what it names, is wrong: a usage error, an invalid workflow, an
    /// unknown run, a busy working tree. Nothing ran.
    Usage {
        /// What is wrong.
        message: String,
        /// How to fix it, when there is more to say.
        help: Option<String>,
    },
    /// Workflows are invalid and their diagnostics are already on the screen: a usage error
    /// with nothing more to say.
    Invalid,
    /// reins itself failed: I/O, an unreadable or corrupt store, a server that stopped.
    Internal(String),
    /// Standard output was closed (`reins runs | head -1`): not worth a message.
    BrokenPipe,
}

/// What commands return.
pub(super) type Result<T = Outcome> = std::result::Result<T, Error>;

impl Error {
    /// A usage error.
    pub fn usage(message: impl Into<String>) -> Self {
        Error::Usage {
            message: message.into(),
            help: None,
        }
    }

    /// A usage error with a hint on how to fix it.
    pub fn usage_with_help(message: impl Into<String>, help: Option<String>) -> Self {
        Error::Usage {
            message: message.into(),
            help,
        }
    }

    /// A failure of reins itself (I/O, a corrupt store).
    pub fn internal(message: impl Into<String>) -> Self {
        Error::Internal(message.into())
    }

    /// An I/O error while doing `what`; a closed stdout is [`Error::BrokenPipe`].
    pub fn io(what: impl fmt::Display, e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::BrokenPipe {
            Error::BrokenPipe
        } else {
            Error::Internal(format!("{what}: {e}"))
        }
    }

    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage { .. } | Error::Invalid => exit::USAGE,
            Error::Internal(_) => exit::INTERNAL,
            Error::BrokenPipe => exit::SUCCESS,
        }
    }

    /// Prints the error on stderr, the way every command shows one.
    pub fn print(&self) {
        match self {
            Error::Usage { message, help } => {
                eprintln!("error: {message}");
                if let Some(help) = help {
                    eprintln!("  = help: {help}");
                }
            }
            Error::Internal(message) => eprintln!("error: {message}"),
            Error::Invalid | Error::BrokenPipe => {}
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage { message, .. } | Error::Internal(message) => f.write_str(message),
            Error::Invalid => f.write_str("invalid workflows (see the diagnostics above)"),
            Error::BrokenPipe => f.write_str("standard output was closed"),
        }
    }
}

impl std::error::Error for Error {}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::io("I/O error", e)
    }
}
