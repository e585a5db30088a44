//! A temporary git repository to drive the `reins` binary in, with a small fluent API:
//!
//! ```ignore
//! let repo = Repo::new().workflow("wf", "nodes: [{id: a, bash: echo hi}]");
//! let out = repo.reins(["run", "wf"]).run();
//! out.code(0);
//! assert_eq!(repo.node_output("last", "a"), "hi");
//! ```
//!
//! Every wait is bounded: a command that runs too long is killed and the test fails with its
//! output.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long a command may run by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// A temporary git repository.
pub struct Repo {
    dir: tempfile::TempDir,
}

impl Default for Repo {
    fn default() -> Self {
        Self::new()
    }
}

impl Repo {
    /// An empty repository with a `.workflows/` folder.
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("reins-test-")
            .tempdir()
            .expect("temp dir");
        let ok = Command::new("git")
            .args(["init", "-q"])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            fs::create_dir_all(dir.path().join(".git")).unwrap();
        }
        fs::create_dir_all(dir.path().join(".workflows")).unwrap();
        Self { dir }
    }

    /// The repository's folder.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs git in the repository as a test author ([`git`]) and returns its stdout.
    pub fn git(&self, args: &[&str]) -> String {
        git(self.path(), args)
    }

    /// A path inside the repository.
    pub fn join(&self, rel: &str) -> PathBuf {
        self.path().join(rel)
    }

    /// Writes `.workflows/NAME.yaml`.
    pub fn workflow(self, name: &str, yaml: &str) -> Self {
        self.file(&format!(".workflows/{name}.yaml"), yaml)
    }

    /// Writes a file (creating folders).
    pub fn file(self, rel: &str, contents: &str) -> Self {
        self.write(rel, contents);
        self
    }

    /// Writes a file (creating folders), later in a test.
    pub fn write(&self, rel: &str, contents: &str) {
        let path = self.join(rel);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).unwrap();
        }
        fs::write(path, contents).unwrap();
    }

    /// Reads a file of the repository ("" if missing).
    pub fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.join(rel)).unwrap_or_default()
    }

    /// The lines of a file.
    pub fn lines(&self, rel: &str) -> Vec<String> {
        self.read(rel).lines().map(str::to_string).collect()
    }

    /// True if the file exists.
    pub fn exists(&self, rel: &str) -> bool {
        self.join(rel).exists()
    }

    /// A `reins` command in the repository (fast retries and a short kill grace).
    pub fn reins<I, S>(&self, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut command = Command::new(env!("CARGO_BIN_EXE_reins"));
        command
            .args(args)
            .current_dir(self.path())
            .env("REINS_RETRY_DELAY", "20ms")
            .env("REINS_KILL_GRACE", "1s")
            .env("NO_COLOR", "1")
            .env_remove("CLICOLOR_FORCE")
            .env_remove("CLICOLOR")
            // Only this repository's workflows: no user-global folder.
            .env("REINS_HOME", self.dir.path().join(".test-home"))
            // Agent slots of this repository's runs only (the machine-wide cap lives there).
            // Under `.git/`, so `git status` of the repository stays clean.
            .env(
                "XDG_STATE_HOME",
                self.dir.path().join(".git/reins-test-state"),
            )
            .env_remove("REINS_MAX_AGENTS")
            .env_remove("TERM")
            .stdin(Stdio::null());
        Cmd {
            command,
            timeout: DEFAULT_TIMEOUT,
            out_dir: self.dir.path().join(".test-out"),
            discard_stdout: false,
            closed_stdout: false,
        }
    }

    /// `reins ARGS` on a pseudo-terminal in the repository, with the same environment as
    /// [`Repo::reins`] plus `extra`.
    pub fn terminal(&self, args: &[&str], extra: &[(&str, &str)]) -> super::pty::Terminal {
        let mut env: Vec<(String, String)> = vec![
            ("REINS_RETRY_DELAY".into(), "20ms".into()),
            ("REINS_KILL_GRACE".into(), "1s".into()),
            (
                "REINS_HOME".into(),
                self.dir.path().join(".test-home").display().to_string(),
            ),
        ];
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        super::pty::Terminal::start(self.path(), args, &env)
    }

    /// Ids of the runs, oldest first.
    pub fn run_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = fs::read_dir(self.join(".reins/runs"))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    // `.new-*` folders are runs still being built, not runs.
                    .filter(|name| !name.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids
    }

    /// The only run's id (fails if there is not exactly one).
    pub fn the_run(&self) -> String {
        let ids = self.run_ids();
        assert_eq!(ids.len(), 1, "expected exactly one run, found {ids:?}");
        ids[0].clone()
    }

    /// A run's directory.
    pub fn run_dir(&self, id: &str) -> PathBuf {
        self.join(".reins/runs").join(id)
    }

    /// A run's events, parsed.
    pub fn events(&self, id: &str) -> Vec<Value> {
        fs::read_to_string(self.run_dir(id).join("events.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// `reins status RUN --format json`, parsed.
    pub fn status(&self, run: &str) -> Value {
        let out = self.reins(["status", run, "--format", "json"]).run();
        out.code(0);
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
    }

    /// One node of `status`.
    pub fn node(&self, run: &str, node: &str) -> Value {
        let status = self.status(run);
        status["nodes"]
            .as_array()
            .and_then(|nodes| nodes.iter().find(|n| n["id"] == node).cloned())
            .unwrap_or_else(|| panic!("no node {node} in {status:#}"))
    }

    /// Waits until `check` holds, at most `limit`; fails the test with `what` otherwise.
    pub fn wait_for(&self, what: &str, limit: Duration, check: impl FnMut() -> bool) {
        wait_for(what, limit, check)
    }

    /// The pid written in a file of the repository.
    pub fn pid(&self, rel: &str) -> i32 {
        self.read(rel)
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("no pid in {rel}"))
    }
}

/// Waits until `check` holds, at most `limit`; fails the test with `what` otherwise.
pub fn wait_for(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A command about to run.
pub struct Cmd {
    command: Command,
    timeout: Duration,
    out_dir: PathBuf,
    discard_stdout: bool,
    closed_stdout: bool,
}

/// A finished command.
#[derive(Debug)]
pub struct Output {
    /// The exit code (-1 if killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Cmd {
    /// Adds an argument.
    pub fn arg(mut self, arg: impl AsRef<std::ffi::OsStr>) -> Self {
        self.command.arg(arg);
        self
    }

    /// Adds arguments.
    pub fn args<S: AsRef<std::ffi::OsStr>>(mut self, args: &[S]) -> Self {
        self.command.args(args);
        self
    }

    /// Sets an environment variable.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.command.env(key, value);
        self
    }

    /// Removes an environment variable (such as the `NO_COLOR` every command gets).
    pub fn env_remove(mut self, key: &str) -> Self {
        self.command.env_remove(key);
        self
    }

    /// Sends stdout to `/dev/null` (for commands that print hundreds of megabytes).
    pub fn discard_stdout(mut self) -> Self {
        self.discard_stdout = true;
        self
    }

    /// Gives the command a stdout pipe nobody reads (closed, like `reins runs | head` once
    /// `head` has exited): every write fails with a broken pipe.
    pub fn closed_stdout(mut self) -> Self {
        self.closed_stdout = true;
        self
    }

    /// Changes the time limit.
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = limit;
        self
    }

    /// Starts the command, with its output going to files.
    pub fn spawn(mut self) -> Running {
        fs::create_dir_all(&self.out_dir).unwrap();
        let unique = tempfile::Builder::new()
            .prefix("cmd-")
            .tempdir_in(&self.out_dir)
            .unwrap()
            .keep();
        let stdout = unique.join("stdout");
        let stderr = unique.join("stderr");
        let out = if self.closed_stdout {
            let (reader, writer) = std::io::pipe().unwrap();
            drop(reader);
            writer.into()
        } else if self.discard_stdout {
            Stdio::null()
        } else {
            fs::File::create(&stdout).unwrap().into()
        };
        self.command
            .stdout(out)
            .stderr(fs::File::create(&stderr).unwrap());
        let child = self.command.spawn().expect("spawn reins");
        Running {
            child,
            stdout,
            stderr,
            timeout: self.timeout,
            started: Instant::now(),
        }
    }

    /// Runs the command to its end (bounded by the time limit).
    pub fn run(self) -> Output {
        self.spawn().wait()
    }
}

/// A command that runs.
pub struct Running {
    /// The process.
    pub child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
    timeout: Duration,
    started: Instant,
}

impl Running {
    /// The process id.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends a signal.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), signal).unwrap();
    }

    /// What it printed so far.
    pub fn stdout_so_far(&self) -> String {
        fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// What it printed on stderr so far.
    pub fn stderr_so_far(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits for the end (bounded); fails the test if it runs too long.
    pub fn wait(mut self) -> Output {
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Output {
                    code: status.code().unwrap_or(-1),
                    stdout: fs::read_to_string(&self.stdout).unwrap_or_default(),
                    stderr: fs::read_to_string(&self.stderr).unwrap_or_default(),
                };
            }
            if self.started.elapsed() > self.timeout {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "reins ran longer than {:?}\nstdout:\n{}\nstderr:\n{}",
                    self.timeout,
                    fs::read_to_string(&self.stdout).unwrap_or_default(),
                    fs::read_to_string(&self.stderr).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Output {
    /// Asserts the exit code, showing the output if it differs.
    pub fn code(&self, expected: i32) -> &Self {
        assert_eq!(
            self.code, expected,
            "unexpected exit code\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// True if the process exists and is not a zombie (through `ps`: on every Unix).
pub fn process_alive(pid: i32) -> bool {
    if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err() {
        return false;
    }
    let ps = Command::new("ps")
        .args(["-o", "stat=", "-p", &pid.to_string()])
        .output()
        .expect("ps runs");
    let state = String::from_utf8_lossy(&ps.stdout);
    !state.trim().is_empty() && !state.trim_start().starts_with('Z')
}

/// The pids of live processes whose command line contains `needle` (through `ps`).
pub fn processes_with(needle: &str) -> Vec<i32> {
    let ps = Command::new("ps")
        .args(["-A", "-ww", "-o", "pid=,stat=,args="])
        .output()
        .expect("ps runs");
    String::from_utf8_lossy(&ps.stdout)
        .lines()
        .filter(|l| l.contains(needle))
        .filter_map(|l| {
            let mut fields = l.split_whitespace();
            let pid = fields.next()?.parse().ok()?;
            let state = fields.next()?;
            (!state.starts_with('Z')).then_some(pid)
        })
        .collect()
}

/// Author and committer for the tests' commits.
pub fn git_identity() -> Vec<(String, String)> {
    ["GIT_AUTHOR_NAME", "GIT_COMMITTER_NAME"]
        .iter()
        .map(|k| (k.to_string(), "reins test".to_string()))
        .chain(
            ["GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL"]
                .iter()
                .map(|k| (k.to_string(), "test@reins.invalid".to_string())),
        )
        .collect()
}

/// Runs git in `dir` as a test author and returns its stdout; fails the test if git fails.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .envs(git_identity())
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
