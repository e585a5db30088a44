//! A small fluent helper for driving the built `reins` binary on a temporary repository.
//!
//! ```ignore
//! let repo = Repo::new().file(".workflows/a.yaml", "nodes: [{id: a, bash: echo}]");
//! let out = repo.reins(&["list"]);
//! out.success().stdout_has("a  project");
//! ```

#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long one `reins` invocation may take before the test fails (it never hangs).
const LIMIT: Duration = Duration::from_secs(60);

/// A temporary git-less project (marked by `.git/`) with its own user-global folder.
pub struct Repo {
    dir: tempfile::TempDir,
    cwd: PathBuf,
    env: Vec<(String, String)>,
}

impl Repo {
    /// An empty project; `REINS_HOME` points at `<tmp>/home`, `HOME` at `<tmp>/user`.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("repo/.git")).expect("mkdir");
        let cwd = dir.path().join("repo");
        let home = dir.path().join("home").display().to_string();
        let user = dir.path().join("user").display().to_string();
        Self {
            dir,
            cwd,
            env: vec![("REINS_HOME".into(), home), ("HOME".into(), user)],
        }
    }

    /// The project root.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    /// The temp dir holding the project, `home/` and `user/`.
    pub fn tmp(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file, relative to the temp dir holding `repo/`, `home/` and `user/`.
    pub fn file(self, path: &str, text: &str) -> Self {
        let path = self.dir.path().join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
        self
    }

    /// Runs reins from this folder, relative to the project root.
    pub fn cwd(mut self, rel: &str) -> Self {
        self.cwd = self.root().join(rel);
        std::fs::create_dir_all(&self.cwd).expect("mkdir");
        self
    }

    /// Sets an environment variable for reins (an empty value removes it).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.into(), value.into()));
        self
    }

    /// Runs `reins ARGS` with no stdin, bounded in time.
    pub fn reins(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_reins"));
        cmd.args(args).current_dir(&self.cwd);
        for key in ["REINS_HOME", "XDG_CONFIG_HOME", "HOME", "NO_COLOR"] {
            cmd.env_remove(key);
        }
        for (k, v) in &self.env {
            if !v.is_empty() {
                cmd.env(k, v);
            }
        }
        run(cmd)
    }
}

/// Runs a command with no stdin, killing it (and failing) after [`LIMIT`].
pub fn run(mut cmd: Command) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn reins");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
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
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("reins did not finish within {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Output {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.join().expect("stdout reader")).into_owned(),
        stderr: String::from_utf8_lossy(&err.join().expect("stderr reader")).into_owned(),
    }
}

/// What one run of reins printed and returned.
#[derive(Debug)]
pub struct Output {
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Output {
    /// Asserts exit code 0.
    pub fn success(&self) -> &Self {
        self.code(0)
    }

    /// Asserts an exit code.
    pub fn code(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "exit code; {self:#?}");
        self
    }

    /// Asserts stdout contains a text.
    pub fn stdout_has(&self, text: &str) -> &Self {
        assert!(
            self.stdout.contains(text),
            "stdout lacks {text:?}; {self:#?}"
        );
        self
    }

    /// Asserts stdout does not contain a text.
    pub fn stdout_lacks(&self, text: &str) -> &Self {
        assert!(
            !self.stdout.contains(text),
            "stdout has {text:?}; {self:#?}"
        );
        self
    }

    /// Stdout parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}; {self:#?}"))
    }
}
