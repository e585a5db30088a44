//! The run directory and its frozen description, `run.json`.
//!
//! ```text
//! .reins/
//!   lock                    the working tree's run lock (see `lock.rs`)
//!   runs/<run-id>/
//!     run.json              the frozen workflow text, command files, inputs, digest
//!     events.jsonl          the event log: the only state of the run
//!     artifacts/            files nodes hand to each other ({{artifacts}})
//!     nodes/<node-id>/      stdout.log, stderr.log, command.sh, an agent's transcript...
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::id::new_run_id;

/// The frozen description of a run, written once when it starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The run id.
    pub id: String,
    /// The reins version that started the run.
    pub reins_version: String,
    /// The workflow's name.
    pub workflow: String,
    /// The workflow file as it was found.
    pub workflow_path: PathBuf,
    /// The workflow file's text: a resume runs exactly this, not the file as it is now.
    pub workflow_text: String,
    /// The command files the workflow uses, by command name.
    #[serde(default)]
    pub commands: BTreeMap<String, FrozenFile>,
    /// The inputs, defaults applied.
    #[serde(default)]
    pub inputs: BTreeMap<String, String>,
    /// `sha256:<hex>` of the workflow text, the command files and the inputs.
    pub digest: String,
    /// When the run started.
    #[serde(with = "super::time")]
    pub started_at: SystemTime,
    /// The working tree of the repository the run belongs to.
    pub root: PathBuf,
    /// The git worktree the run works in instead, when isolated (`isolation: worktree`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worktree: Option<PathBuf>,
    /// The agent that replaced the workflow's default for this run (`reins run --agent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
}

/// A file frozen into `run.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrozenFile {
    /// Where it was found.
    pub path: PathBuf,
    /// Its text.
    pub text: String,
}

impl Manifest {
    /// Describes a new run. The id is chosen when the run directory is created.
    pub fn new(
        workflow: &str,
        workflow_path: &Path,
        workflow_text: &str,
        commands: BTreeMap<String, FrozenFile>,
        inputs: BTreeMap<String, String>,
        root: &Path,
    ) -> Self {
        let mut m = Self {
            id: String::new(),
            reins_version: env!("CARGO_PKG_VERSION").to_string(),
            workflow: workflow.to_string(),
            workflow_path: workflow_path.to_path_buf(),
            workflow_text: workflow_text.to_string(),
            commands,
            inputs,
            digest: String::new(),
            started_at: super::time::now(),
            root: root.to_path_buf(),
            worktree: None,
            agent: None,
        };
        m.digest = m.compute_digest();
        m
    }

    /// `sha256:<hex>` over the workflow text, each command (name and text) and each input
    /// (name and value), every piece length-prefixed.
    pub fn compute_digest(&self) -> String {
        let mut h = Sha256::new();
        let mut piece = |bytes: &[u8]| {
            h.update((bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        };
        piece(self.workflow_text.as_bytes());
        for (name, file) in &self.commands {
            piece(name.as_bytes());
            piece(file.text.as_bytes());
        }
        for (name, value) in &self.inputs {
            piece(name.as_bytes());
            piece(value.as_bytes());
        }
        let digest = h.finalize();
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        format!("sha256:{hex}")
    }
}

/// The `.reins/` folder of a working tree.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    dir: PathBuf,
}

/// One run's directory.
#[derive(Debug, Clone)]
pub struct RunDir {
    /// The run id.
    pub id: String,
    /// `.reins/runs/<id>`.
    pub path: PathBuf,
}

impl Store {
    /// The store of the working tree at `root`.
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
            dir: root.join(".reins"),
        }
    }

    /// The store of the project containing `dir` (see
    /// [`crate::workflow::discover::project_root`]).
    pub fn discover(dir: &Path) -> Self {
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        Self::new(&crate::workflow::discover::project_root(&dir))
    }

    /// The working tree.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `.reins/`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `.reins/lock`: the working tree's lock.
    pub fn tree_lock_path(&self) -> PathBuf {
        self.dir.join("lock")
    }

    /// `.reins/runs/`.
    pub fn runs_dir(&self) -> PathBuf {
        self.dir.join("runs")
    }

    /// The directory of a run id (which need not exist).
    pub fn run(&self, id: &str) -> RunDir {
        RunDir {
            id: id.to_string(),
            path: self.runs_dir().join(id),
        }
    }

    /// Writes `.reins/.gitignore` (`*`) once, so run history, artifacts and worktrees never show
    /// up in `git status` or a `git add -A`, whether or not the project ignores `.reins/`.
    fn ignore_in_git(&self) -> io::Result<()> {
        let path = self.dir.join(".gitignore");
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(mut file) => io::Write::write_all(
                &mut file,
                b"# written by reins: nothing in here belongs in git\n*\n",
            ),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Creates the directory of a new run, chooses its id and writes `run.json`. The files
    /// and folders [`RunDir::durable_paths`] lists are not synced yet: pass them to
    /// [`super::EventLog::create`], which syncs them before the first event.
    pub fn create_run(&self, manifest: &mut Manifest) -> io::Result<RunDir> {
        let runs = self.runs_dir();
        fs::create_dir_all(&runs)?;
        self.ignore_in_git()?;
        let run = loop {
            let id = new_run_id(manifest.started_at);
            let run = self.run(&id);
            match fs::create_dir(&run.path) {
                Ok(()) => break run,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        };
        manifest.id = run.id.clone();
        fs::create_dir(run.artifacts_dir())?;
        fs::create_dir(run.path.join("nodes"))?;
        run.write_manifest(manifest)?;
        Ok(run)
    }
}

impl RunDir {
    /// `run.json`.
    pub fn manifest_path(&self) -> PathBuf {
        self.path.join("run.json")
    }

    /// `lock`: held by the process executing the run.
    pub fn lock_path(&self) -> PathBuf {
        self.path.join("lock")
    }

    /// True when a live process executes the run.
    pub fn is_live(&self) -> bool {
        super::lock::live_owner(&self.lock_path()).is_some()
    }

    /// `events.jsonl`.
    pub fn events_path(&self) -> PathBuf {
        self.path.join("events.jsonl")
    }

    /// `artifacts/`.
    pub fn artifacts_dir(&self) -> PathBuf {
        self.path.join("artifacts")
    }

    /// `nodes/<node>/` (the name is made safe for a path).
    pub fn node_dir(&self, node: &str) -> PathBuf {
        let safe: String = node
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let safe = if safe.is_empty() || safe.starts_with('.') {
            format!("_{safe}")
        } else {
            safe
        };
        self.path.join("nodes").join(safe)
    }

    /// Writes `run.json` through a temporary file and a rename (only before the run's first
    /// event; not synced, see [`RunDir::durable_paths`]).
    pub fn write_manifest(&self, manifest: &Manifest) -> io::Result<()> {
        let path = self.manifest_path();
        let tmp = path.with_extension("tmp");
        fs::write(
            &tmp,
            serde_json::to_vec_pretty(manifest).map_err(io::Error::other)?,
        )?;
        fs::rename(&tmp, &path)
    }

    /// What must be durable before the run's first event: `run.json`, the run's folder and
    /// the folder of runs.
    pub fn durable_paths(&self) -> Vec<PathBuf> {
        let mut paths = vec![self.manifest_path(), self.path.clone()];
        if let Some(runs) = self.path.parent() {
            paths.push(runs.to_path_buf());
        }
        paths
    }

    /// Reads `run.json`.
    pub fn manifest(&self) -> io::Result<Manifest> {
        let bytes = fs::read(self.manifest_path())?;
        serde_json::from_slice(&bytes).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is damaged: {e}", self.manifest_path().display()),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_the_layout_and_freezes_the_manifest() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::new(tmp.path());
        let mut m = Manifest::new(
            "wf",
            Path::new(".workflows/wf.yaml"),
            "nodes: []\n",
            BTreeMap::new(),
            [("k".to_string(), "v".to_string())].into(),
            tmp.path(),
        );
        let run = store.create_run(&mut m).unwrap();
        assert!(super::super::id::is_run_id(&run.id));
        assert!(run.artifacts_dir().is_dir());
        assert!(run.path.join("nodes").is_dir());
        let back = run.manifest().unwrap();
        assert_eq!(back, m);
        assert!(back.digest.starts_with("sha256:"));
        assert_eq!(back.digest, back.compute_digest());
        let mut other = m.clone();
        other.inputs.insert("k".into(), "w".into());
        assert_ne!(other.compute_digest(), m.digest);
        assert!(run.node_dir("../x").ends_with("nodes/___x"));
    }
}
