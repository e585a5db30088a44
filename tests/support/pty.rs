//! The built `reins` binary under a real pseudo-terminal, for what only happens on a terminal:
//! the inline gate prompt, Ctrl-C at it, the live view.
//!
//! ```ignore
//! let term = repo.terminal(["run", "gated"]);
//! term.wait_for("approve gate? [y/N]");
//! term.type_text("\x03"); // Ctrl-C
//! assert_eq!(term.wait(), 130);
//! ```

use std::io::{Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portable_pty::{native_pty_system, Child, CommandBuilder, MasterPty, PtySize};

/// How long a terminal session may wait for a text or an exit.
pub const LIMIT: Duration = Duration::from_secs(30);

/// A `reins` process on a pseudo-terminal, with everything it printed so far.
pub struct Terminal {
    child: Box<dyn Child + Send + Sync>,
    writer: Box<dyn Write + Send>,
    _master: Box<dyn MasterPty + Send>,
    screen: Arc<Mutex<String>>,
}

impl Terminal {
    /// Starts `reins ARGS` in `dir` on a 120×40 terminal with `env` set.
    pub fn start(dir: &Path, args: &[&str], env: &[(String, String)]) -> Terminal {
        let pty = native_pty_system()
            .openpty(PtySize {
                rows: 40,
                cols: 120,
                pixel_width: 0,
                pixel_height: 0,
            })
            .expect("a pseudo-terminal opens");
        let mut cmd = CommandBuilder::new(env!("CARGO_BIN_EXE_reins"));
        cmd.args(args);
        cmd.cwd(dir);
        cmd.env("TERM", "xterm-256color");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = pty.slave.spawn_command(cmd).expect("reins starts");
        drop(pty.slave);
        let mut reader = pty.master.try_clone_reader().expect("pty reader");
        let writer = pty.master.take_writer().expect("pty writer");
        let screen = Arc::new(Mutex::new(String::new()));
        let sink = screen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Terminal {
            child,
            writer,
            _master: pty.master,
            screen,
        }
    }

    /// Everything printed so far (escape sequences included).
    pub fn screen(&self) -> String {
        self.screen.lock().unwrap().clone()
    }

    /// Waits until the screen shows `text`; fails the test after [`LIMIT`].
    pub fn wait_for(&self, text: &str) {
        let start = Instant::now();
        while !self.screen().contains(text) {
            assert!(
                start.elapsed() < LIMIT,
                "the terminal never showed {text:?}; it shows:\n{}",
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Types text (`\r` is Enter, `\x03` is Ctrl-C).
    pub fn type_text(&mut self, text: &str) {
        self.writer.write_all(text.as_bytes()).expect("typing");
        self.writer.flush().expect("typing");
    }

    /// Waits for the exit code; fails the test after [`LIMIT`] (killing the process).
    pub fn wait(&mut self) -> u32 {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for reins") {
                // Let the reader catch the last bytes.
                std::thread::sleep(Duration::from_millis(100));
                return status.exit_code();
            }
            if start.elapsed() > LIMIT {
                let _ = self.child.kill();
                panic!("reins did not exit; the terminal shows:\n{}", self.screen());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
