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
use super::lock::RunLock;

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
    /// The workflows its `workflow:` nodes run (and theirs, all the way down), by name: a
    /// child run is started from these, never from the files as they are by then.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub workflows: BTreeMap<String, FrozenFile>,
    /// For a child run: the run and node that started it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<ParentLink>,
}

/// Where a child run comes from: the `workflow:` node of another run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentLink {
    /// The parent's run id.
    pub run_id: String,
    /// The parent's `workflow:` node.
    pub node: String,
}

/// The branch name of a run: `reins/<workflow>-<run-id>`.
pub fn branch_name(workflow: &str, run_id: &str) -> String {
    let clean: String = workflow
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("reins/{clean}-{run_id}")
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
            workflows: BTreeMap::new(),
            parent: None,
        };
        m.digest = m.compute_digest();
        m
    }

    /// `sha256:<hex>` over the workflow text, each command (name and text), each input
    /// (name and value), each child workflow (name and text) and the parent link, every piece
    /// length-prefixed.
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
        // Left out when empty, so the digests of runs without children stay what they were.
        if !self.workflows.is_empty() {
            piece(b"workflows");
            for (name, file) in &self.workflows {
                piece(name.as_bytes());
                piece(file.text.as_bytes());
            }
        }
        if let Some(p) = &self.parent {
            piece(b"parent");
            piece(p.run_id.as_bytes());
            piece(p.node.as_bytes());
        }
        let digest = h.finalize();
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        format!("sha256:{hex}")
    }

    /// Checks that `run.json` is still what reins froze when the run began: its digest matches
    /// its workflow, command files and inputs; it names its own run; it belongs to the working
    /// tree at `root`; and an isolated run's worktree is the one reins made for it. `resume`
    /// and `approve`/`reject` refuse a run that fails this: what runs after a gate is exactly
    /// what the human saw before it.
    pub fn verify(&self, run: &RunDir, root: &Path) -> Result<(), Tampered> {
        let refuse = |what: String| {
            Err(Tampered {
                run: run.id.clone(),
                workflow: self.workflow.clone(),
                what,
            })
        };
        let actual = self.compute_digest();
        if actual != self.digest {
            return refuse(format!(
                "{} records digest {} but its workflow, command files and inputs hash to {actual}",
                run.manifest_path().display(),
                self.digest
            ));
        }
        if self.id != run.id {
            return refuse(format!(
                "{} names run `{}`",
                run.manifest_path().display(),
                self.id
            ));
        }
        let same = |a: &Path, b: &Path| {
            a == b || matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
        };
        if !same(&self.root, root) {
            return refuse(format!(
                "{} says it belongs to {}, not to {}",
                run.manifest_path().display(),
                self.root.display(),
                root.display()
            ));
        }
        if let Some(wt) = &self.worktree {
            let expected = self.root.join(".reins").join("worktrees").join(&self.id);
            if !same(wt, &expected) {
                return refuse(format!(
                    "{} points the run at {}, not at its worktree {}",
                    run.manifest_path().display(),
                    wt.display(),
                    expected.display()
                ));
            }
        }
        Ok(())
    }
}

/// A run whose `run.json` no longer matches what reins froze when it began
/// ([`Manifest::verify`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "run {run} was changed after it started: {what}; reins does not resume or answer a run whose \
     frozen workflow was edited (start a new run with `reins run {workflow}`)"
)]
pub struct Tampered {
    /// The run's id.
    pub run: String,
    /// Its workflow's name.
    pub workflow: String,
    /// What does not match.
    pub what: String,
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

    /// Refuses a `.reins` (or `.reins/runs`) that is a symbolic link leading out of the working
    /// tree: run state, answers and locks must live in the repository they belong to, not
    /// wherever a link planted by a node (or anyone) points.
    pub fn check_dir(&self) -> io::Result<()> {
        let root = self
            .root
            .canonicalize()
            .unwrap_or_else(|_| self.root.clone());
        for dir in [self.dir.clone(), self.runs_dir()] {
            let is_link = fs::symlink_metadata(&dir).is_ok_and(|m| m.file_type().is_symlink());
            if !is_link {
                continue;
            }
            let target = fs::canonicalize(&dir);
            let inside = target
                .as_ref()
                .is_ok_and(|t| t.starts_with(&root) && *t != root);
            if !inside {
                let shown = match &target {
                    Ok(t) => t.display().to_string(),
                    Err(_) => fs::read_link(&dir)
                        .map(|t| t.display().to_string())
                        .unwrap_or_else(|_| "?".into()),
                };
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{} is a symbolic link to {shown}, outside the repository {}; reins keeps \
                         run state inside the working tree it belongs to: remove the link \
                         (`rm {}`) and run again",
                        dir.display(),
                        root.display(),
                        dir.display()
                    ),
                ));
            }
        }
        Ok(())
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

    /// Creates a new run: chooses its id, builds its directory under a temporary name
    /// (`runs/.new-<id>`, which no command lists), takes the run's lock, lets `prepare` finish
    /// the manifest (an isolated run creates its worktree here), writes `run.json` and makes it
    /// durable, then renames the directory to its id. A run therefore exists only once it can
    /// be resumed: a kill at any point before leaves at most a hidden `.new-*` folder, never a
    /// half run that `last` would pick.
    pub fn create_run(
        &self,
        manifest: &mut Manifest,
        prepare: impl FnOnce(&str, &mut Manifest) -> Result<(), PrepareError>,
    ) -> Result<(RunDir, RunLock), CreateError> {
        self.check_dir()?;
        let runs = self.runs_dir();
        fs::create_dir_all(&runs)?;
        self.ignore_in_git()?;
        // A run id chosen beforehand (a run submitted to Temporal, whose workflow id it is).
        let preset = std::mem::take(&mut manifest.id);
        if !preset.is_empty() && !super::id::is_run_id(&preset) {
            return Err(CreateError::NotARunId(preset));
        }
        let (id, tmp) = loop {
            let id = if preset.is_empty() {
                new_run_id(manifest.started_at)
            } else {
                preset.clone()
            };
            let tmp = runs.join(format!(".new-{id}"));
            let taken = |e: io::ErrorKind| {
                CreateError::Io(io::Error::new(e, format!("run {id} exists already")))
            };
            if runs.join(&id).exists() {
                if !preset.is_empty() {
                    return Err(taken(io::ErrorKind::AlreadyExists));
                }
                continue;
            }
            match fs::create_dir(&tmp) {
                Ok(()) => break (id, tmp),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && !preset.is_empty() => {
                    // A staging folder left by a kill before the rename: start it over.
                    fs::remove_dir_all(&tmp)?;
                    fs::create_dir(&tmp)?;
                    break (id, tmp);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e.into()),
            }
        };
        let staged = RunDir {
            id: id.clone(),
            path: tmp.clone(),
        };
        let built = (|| {
            manifest.id = id.clone();
            fs::create_dir(staged.artifacts_dir())?;
            fs::create_dir(staged.path.join("nodes"))?;
            let lock = RunLock::acquire(&staged.lock_path(), &id).map_err(|e| match e {
                super::LockError::Io(e) => CreateError::Io(e),
                busy => CreateError::Busy(busy),
            })?;
            prepare(&id, manifest).map_err(CreateError::Prepare)?;
            manifest.digest = manifest.compute_digest();
            staged.write_manifest(manifest)?;
            fs::File::open(staged.manifest_path())?.sync_all()?;
            fs::File::open(&staged.path)?.sync_all()?;
            Ok::<_, CreateError>(lock)
        })();
        let mut lock = match built {
            Ok(lock) => lock,
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp);
                return Err(e);
            }
        };
        let run = self.run(&id);
        // Never over another run: a directory that is not empty cannot be renamed over.
        if let Err(e) = fs::rename(&tmp, &run.path) {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e.into());
        }
        fs::File::open(&runs)?.sync_all()?;
        lock.moved_to(run.lock_path());
        Ok((run, lock))
    }
}

/// How old a half-built run folder (`runs/.new-*`) must be before [`Store::sweep_staged`]
/// removes it: far longer than creating a run takes.
pub const STAGED_MIN_AGE: std::time::Duration = std::time::Duration::from_secs(60);

/// What [`Store::sweep_staged`] did with one half-built run folder.
#[derive(Debug)]
pub enum Swept {
    /// Removed (or, in a dry run, would be).
    Removed,
    /// Kept: a live process holds its lock (it is being created right now).
    Busy,
    /// Kept: removing it failed.
    Failed(io::Error),
}

impl Store {
    /// Removes the half-built run folders (`runs/.new-<id>`) that a crash during
    /// [`Store::create_run`] left behind: those last changed at least `min_age` ago, each
    /// under its lock so a run being created is never touched. With `dry_run`, says which
    /// it would remove and removes none. Oldest first.
    pub fn sweep_staged(
        &self,
        min_age: std::time::Duration,
        dry_run: bool,
    ) -> io::Result<Vec<(PathBuf, Swept)>> {
        let entries = match fs::read_dir(self.runs_dir()) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let now = SystemTime::now();
        let mut staged: Vec<(SystemTime, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with(".new-"))
            // Not through a symbolic link: only real folders of the store.
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .filter(|(changed, _)| now.duration_since(*changed).unwrap_or_default() >= min_age)
            .collect();
        staged.sort();
        let mut out = Vec::new();
        for (_, path) in staged {
            if dry_run {
                // Taking the lock would create its file and make the folder look young.
                let held = super::lock::is_held(&path.join("lock"));
                out.push((path, if held { Swept::Busy } else { Swept::Removed }));
                continue;
            }
            let id = path.file_name().unwrap_or_default().to_string_lossy();
            let id = id.trim_start_matches(".new-").to_string();
            let lock = match RunLock::acquire(&path.join("lock"), &id) {
                Ok(lock) => lock,
                Err(super::LockError::Busy(_)) => {
                    out.push((path, Swept::Busy));
                    continue;
                }
                Err(super::LockError::Io(e)) => {
                    out.push((path, Swept::Failed(e)));
                    continue;
                }
            };
            let swept = match fs::remove_dir_all(&path) {
                Ok(()) => Swept::Removed,
                Err(e) => Swept::Failed(e),
            };
            drop(lock);
            out.push((path, swept));
        }
        Ok(out)
    }
}

/// What [`Store::create_run`]'s `prepare` step may fail with: any error of the caller's (an
/// engine's worktree error, say), which the store passes on untouched.
pub type PrepareError = Box<dyn std::error::Error + Send + Sync>;

/// Why a run could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// The file system said no.
    #[error("cannot create the run directory: {0}")]
    Io(#[from] io::Error),
    /// The id chosen beforehand is not one reins makes.
    #[error("`{0}` is not a run id")]
    NotARunId(String),
    /// Another process holds the new run's lock.
    #[error(transparent)]
    Busy(super::LockError),
    /// Finishing the manifest failed (the worktree could not be created...).
    #[error(transparent)]
    Prepare(PrepareError),
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
        let (run, lock) = store.create_run(&mut m, |_, _| Ok(())).unwrap();
        assert!(super::super::id::is_run_id(&run.id));
        assert!(super::super::lock::live_owner(&run.lock_path()).is_some());
        drop(lock);
        let names: Vec<_> = fs::read_dir(store.runs_dir())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            [std::ffi::OsString::from(&run.id)],
            "no staging folder left"
        );
        assert_eq!(run.manifest().unwrap().verify(&run, tmp.path()), Ok(()));
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
