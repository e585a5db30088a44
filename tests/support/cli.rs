//! Runs the built `reins` binary the way a user would, and captures what it printed.
//!
//! ```ignore
//! let out = reins().args(["validate", "wf.yaml"]).current_dir(dir).run();
//! assert_eq!(out.code, 2);
//! ```

use std::ffi::OsStr;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long one command may run before the test gives up on it and kills it.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// A `reins` command being put together.
pub struct Reins {
    command: Command,
}

/// Starts a `reins` command: no colour, no stdin, no terminal.
pub fn reins() -> Reins {
    let mut command = Command::new(env!("CARGO_BIN_EXE_reins"));
    command
        .env("NO_COLOR", "1")
        .env_remove("CLICOLOR_FORCE")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    Reins { command }
}

impl Reins {
    /// Adds one argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.command.arg(arg);
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.command.args(args);
        self
    }

    /// Runs in `dir`.
    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.command.current_dir(dir);
        self
    }

    /// Sets an environment variable.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.command.env(key, value);
        self
    }

    /// Runs to completion (killing it after [`TIMEOUT`]) and returns what it printed.
    pub fn run(mut self) -> Output {
        let mut child = self.command.spawn().expect("the reins binary starts");
        // Drain both pipes on threads so a chatty child never blocks on a full pipe.
        let mut stdout = child.stdout.take().expect("stdout is piped");
        let mut stderr = child.stderr.take().expect("stderr is piped");
        let out = std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = stdout.read_to_end(&mut s);
            s
        });
        let err = std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = stderr.read_to_end(&mut s);
            s
        });
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().expect("waiting for reins") {
                break status;
            }
            if started.elapsed() > TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                panic!("reins did not finish within {TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let text = |b: Vec<u8>| String::from_utf8(b).expect("reins prints UTF-8");
        Output {
            stdout: text(out.join().expect("stdout reader")),
            stderr: text(err.join().expect("stderr reader")),
            code: status.code().expect("reins exited, not killed by a signal"),
        }
    }
}

/// What a finished command printed, and its exit code.
#[derive(Debug)]
pub struct Output {
    /// Everything on stdout.
    pub stdout: String,
    /// Everything on stderr.
    pub stderr: String,
    /// The exit code.
    pub code: i32,
}

impl Output {
    /// Exit code, stdout and stderr in one text, for snapshots.
    pub fn transcript(&self) -> String {
        format!(
            "exit code: {}\n----- stdout -----\n{}----- stderr -----\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}
