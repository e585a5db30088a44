//! A temporary project with its own user-global folder, for commands that search for workflows.
//!
//! ```ignore
//! let repo = Repo::new().file("repo/.workflows/a.yaml", "nodes: [{id: a, bash: echo}]");
//! let out = repo.reins(&["list"]);
//! out.success().stdout_has("a  project");
//! ```

use std::path::{Path, PathBuf};

use super::cli::{reins, Output};

/// A temp folder holding `repo/` (a project, marked by `.git/`), `home/` (`REINS_HOME`) and
/// `user/` (`HOME`).
pub struct Repo {
    dir: tempfile::TempDir,
    cwd: PathBuf,
    env: Vec<(String, String)>,
}

impl Repo {
    /// An empty project.
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

    /// The temp folder holding `repo/`, `home/` and `user/`.
    pub fn tmp(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file, relative to [`Repo::tmp`].
    pub fn file(self, path: &str, text: &str) -> Self {
        let path = self.dir.path().join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
        self
    }

    /// Runs reins from this folder, relative to the project root.
    pub fn cwd(mut self, rel: &str) -> Self {
        self.cwd = self.dir.path().join("repo").join(rel);
        std::fs::create_dir_all(&self.cwd).expect("mkdir");
        self
    }

    /// Sets an environment variable for reins (empty counts as unset).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.into(), value.into()));
        self
    }

    /// Runs `reins ARGS` in the project, with only this repo's user-global folders visible.
    pub fn reins(&self, args: &[&str]) -> Output {
        let mut cmd = reins().args(args).current_dir(&self.cwd);
        // reins treats an empty variable as unset, so the caller's own folders never leak in.
        for key in ["REINS_HOME", "XDG_CONFIG_HOME", "HOME"] {
            cmd = cmd.env(key, "");
        }
        for (k, v) in &self.env {
            cmd = cmd.env(k, v);
        }
        cmd.run()
    }
}

/// Assertions on a finished command, chained.
pub trait Check {
    /// Asserts an exit code.
    fn code_is(&self, code: i32) -> &Self;
    /// Asserts exit code 0.
    fn success(&self) -> &Self {
        self.code_is(0)
    }
    /// Asserts stdout contains a text.
    fn stdout_has(&self, text: &str) -> &Self;
    /// Asserts stdout does not contain a text.
    fn stdout_lacks(&self, text: &str) -> &Self;
    /// Stdout parsed as JSON.
    fn json(&self) -> serde_json::Value;
}

impl Check for Output {
    fn code_is(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "exit code\n{}", self.transcript());
        self
    }

    fn stdout_has(&self, text: &str) -> &Self {
        assert!(
            self.stdout.contains(text),
            "stdout lacks {text:?}\n{}",
            self.transcript()
        );
        self
    }

    fn stdout_lacks(&self, text: &str) -> &Self {
        assert!(
            !self.stdout.contains(text),
            "stdout has {text:?}\n{}",
            self.transcript()
        );
        self
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}\n{}", self.transcript()))
    }
}
