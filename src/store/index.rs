//! Finding runs: the list of a store's runs, and `RUN` arguments (an id prefix or `last`).

use std::fs;
use std::io;
use std::time::SystemTime;

use super::event::RunStatus;
use super::id::is_run_id;
use super::log;
use super::run::{Manifest, RunDir, Store};
use super::state::RunState;

/// One line of `reins runs`.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// The run directory.
    pub run: RunDir,
    /// Its frozen description, if readable.
    pub manifest: Option<Manifest>,
    /// Its state.
    pub state: RunState,
    /// Its status, interrupted runs told apart from running ones.
    pub status: RunStatus,
}

impl RunSummary {
    /// The workflow's name.
    pub fn workflow(&self) -> &str {
        match &self.manifest {
            Some(m) => &m.workflow,
            None => &self.state.workflow,
        }
    }

    /// When it started.
    pub fn started_at(&self) -> Option<SystemTime> {
        self.state
            .started_at
            .or(self.manifest.as_ref().map(|m| m.started_at))
    }

    /// The branch of an isolated run (`--worktree`), if any.
    pub fn branch(&self) -> Option<String> {
        let m = self.manifest.as_ref()?;
        m.worktree.as_ref()?;
        Some(super::run::branch_name(&m.workflow, &self.run.id))
    }

    /// The run as one item of `reins runs --format json` (and of the web view's run list).
    pub fn to_json(&self, now: SystemTime) -> serde_json::Value {
        let usage = self.state.total_usage();
        serde_json::json!({
            "id": self.run.id,
            "workflow": self.workflow(),
            "status": self.status,
            "started_at": self.started_at().map(super::time::format),
            "finished_at": self.state.finished_at.map(super::time::format),
            "duration_ms": self.state.elapsed(now).map(|d| d.as_millis() as u64),
            // `null` when only unpriced agents (Codex) ran: their tokens, never a made-up cost.
            "cost_usd": (!usage.unpriced || usage.cost_usd > 0.0).then_some(usage.cost_usd),
            "tokens": usage.tokens(),
            "nodes": self.state.counts(),
            "dir": self.run.path,
            "branch": self.branch(),
            "worktree": self.manifest.as_ref().and_then(|m| m.worktree.clone()),
            "parent": self.manifest.as_ref().and_then(|m| m.parent.clone()),
        })
    }
}

/// Why a `RUN` argument names no single run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The store has no runs at all.
    #[error("no runs yet in this working tree (start one with `reins run WORKFLOW`)")]
    NoRuns,
    /// No run id starts with the prefix; the most recent ids are listed.
    #[error(
        "no run id starts with `{query}`{}",
        if recent.is_empty() { String::new() } else { format!("; recent runs: {}", recent.join(", ")) }
    )]
    Unknown {
        /// What was asked for.
        query: String,
        /// Recent run ids.
        recent: Vec<String>,
    },
    /// Several run ids start with the prefix.
    #[error(
        "`{query}` matches {} runs: {}; give more characters of the id",
        candidates.len(),
        candidates.join(", ")
    )]
    Ambiguous {
        /// What was asked for.
        query: String,
        /// The ids that match.
        candidates: Vec<String>,
    },
}

impl Store {
    /// Ids of every run, oldest first.
    pub fn run_ids(&self) -> io::Result<Vec<String>> {
        let mut ids: Vec<String> = match fs::read_dir(self.runs_dir()) {
            Ok(entries) => entries
                .filter_map(|e| e.ok())
                .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|name| is_run_id(name))
                .collect(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        ids.sort();
        Ok(ids)
    }

    /// Resolves a `RUN` argument: a whole id, a unique prefix of one, or `last` (the most
    /// recently started run).
    pub fn resolve(&self, query: &str) -> Result<RunDir, ResolveError> {
        let ids = self.run_ids().unwrap_or_default();
        if ids.is_empty() {
            return Err(ResolveError::NoRuns);
        }
        if query == "last" || query == "latest" {
            // A child run is part of its parent's tree: `last` is the tree's top.
            let mut run = self.run(&self.last_of(&ids));
            for _ in 0..32 {
                match run.manifest().ok().and_then(|m| m.parent) {
                    Some(p) if is_run_id(&p.run_id) => run = self.run(&p.run_id),
                    _ => break,
                }
            }
            return Ok(run);
        }
        if ids.iter().any(|id| id == query) {
            return Ok(self.run(query));
        }
        let candidates: Vec<String> = ids
            .iter()
            .filter(|id| id.starts_with(query))
            .cloned()
            .collect();
        match candidates.len() {
            1 => Ok(self.run(&candidates[0])),
            0 => Err(ResolveError::Unknown {
                query: query.to_string(),
                recent: ids.iter().rev().take(5).cloned().collect(),
            }),
            _ => Err(ResolveError::Ambiguous {
                query: query.to_string(),
                candidates,
            }),
        }
    }

    /// The run started last. Ids order runs by the second they started; within one second the
    /// start times in `run.json` decide.
    fn last_of(&self, ids: &[String]) -> String {
        let newest = ids.last().expect("non-empty");
        let second = &newest[..15];
        ids.iter()
            .filter(|id| id.starts_with(second))
            .max_by_key(|id| {
                (
                    self.run(id).manifest().ok().map(|m| m.started_at),
                    (*id).clone(),
                )
            })
            .cloned()
            .unwrap_or_else(|| newest.clone())
    }

    /// Reads one run: its manifest, its events folded, its status.
    pub fn summary(&self, run: &RunDir) -> io::Result<RunSummary> {
        let manifest = run.manifest().ok();
        let contents = match log::read(&run.events_path()) {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::NotFound => log::Contents::default(),
            Err(e) => return Err(e),
        };
        let mut state = RunState::from_records(&contents.records);
        let status = state.status_given(run.is_live());
        if status == RunStatus::Interrupted {
            state.stop_clocks();
        }
        Ok(RunSummary {
            run: run.clone(),
            manifest,
            state,
            status,
        })
    }

    /// Every run, oldest first. Runs that cannot be read are left out.
    pub fn list(&self) -> io::Result<Vec<RunSummary>> {
        let mut runs: Vec<RunSummary> = self
            .run_ids()?
            .iter()
            .filter_map(|id| self.summary(&self.run(id)).ok())
            .collect();
        runs.sort_by_key(|r| (r.started_at(), r.run.id.clone()));
        Ok(runs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn make(store: &Store, id: &str) {
        let dir = store.run(id).path;
        fs::create_dir_all(&dir).unwrap();
        let mut m = Manifest::new(
            "wf",
            Path::new("wf.yaml"),
            "",
            Default::default(),
            Default::default(),
            store.root(),
        );
        m.id = id.into();
        fs::write(dir.join("run.json"), serde_json::to_vec(&m).unwrap()).unwrap();
    }

    #[test]
    fn resolves_prefixes_last_and_reports_ambiguity() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::new(tmp.path());
        assert_eq!(store.resolve("last").unwrap_err(), ResolveError::NoRuns);
        make(&store, "20260101-000000-aaaa");
        make(&store, "20260101-000000-aabb");
        make(&store, "20260102-000000-cccc");
        assert_eq!(store.resolve("last").unwrap().id, "20260102-000000-cccc");
        assert_eq!(
            store.resolve("20260102").unwrap().id,
            "20260102-000000-cccc"
        );
        assert_eq!(
            store.resolve("20260101-000000-aabb").unwrap().id,
            "20260101-000000-aabb"
        );
        let err = store.resolve("20260101").unwrap_err();
        assert!(
            matches!(&err, ResolveError::Ambiguous { candidates, .. } if candidates.len() == 2)
        );
        assert!(err.to_string().contains("20260101-000000-aaaa"), "{err}");
        let err = store.resolve("2027").unwrap_err();
        assert!(
            err.to_string().contains("no run id starts with `2027`"),
            "{err}"
        );
        assert!(err.to_string().contains("20260102-000000-cccc"), "{err}");
        assert_eq!(store.run_ids().unwrap().len(), 3);
    }
}
