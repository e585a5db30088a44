//! `.reins/serve.json`: which server shows this working tree's runs (`{"url", "pid"}`).
//!
//! Written when `reins serve` starts listening and removed when it stops; a file whose pid is
//! not alive any more (a server killed with `kill -9`) is ignored. A run that stops at a gate
//! reads it to print the gate's URL. The token is never written here.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The contents of `.reins/serve.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Registration {
    /// The page, like `http://127.0.0.1:7878`.
    pub url: String,
    /// The server's process.
    pub pid: u32,
}

/// `.reins/serve.json` of a store folder (`.reins/`).
pub(crate) fn path(store_dir: &Path) -> PathBuf {
    store_dir.join("serve.json")
}

/// Announces the server (through a temporary file and a rename).
pub(crate) fn register(store_dir: &Path, url: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(store_dir)?;
    let reg = Registration {
        url: url.trim_end_matches('/').to_string(),
        pid: std::process::id(),
    };
    let tmp = store_dir.join(format!("serve.json.{}.tmp", std::process::id()));
    std::fs::write(
        &tmp,
        serde_json::to_vec_pretty(&reg).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(&tmp, path(store_dir))
}

/// Removes the announcement, if it is this process's.
pub(crate) fn unregister(store_dir: &Path) {
    if read(store_dir).is_some_and(|r| r.pid == std::process::id()) {
        let _ = std::fs::remove_file(path(store_dir));
    }
}

/// The live server of a store folder, if any.
pub(crate) fn live(store_dir: &Path) -> Option<Registration> {
    let reg = read(store_dir)?;
    let pid = i32::try_from(reg.pid).ok().filter(|p| *p > 0)?;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).ok()?;
    Some(reg)
}

fn read(store_dir: &Path) -> Option<Registration> {
    let bytes = std::fs::read(path(store_dir)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The page of a gate, when a server shows the runs of the run folder `run_dir`
/// (`.reins/runs/<id>`).
pub(crate) fn gate_url(run_dir: &Path, run_id: &str, gate: &str) -> Option<String> {
    let store_dir = run_dir.parent()?.parent()?;
    let reg = live(store_dir)?;
    Some(format!("{}/runs/{run_id}?node={gate}", reg.url))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_server_is_ignored() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(".reins");
        let run = dir.join("runs").join("r1");
        register(&dir, "http://127.0.0.1:1/").unwrap();
        assert_eq!(
            gate_url(&run, "r1", "g").as_deref(),
            Some("http://127.0.0.1:1/runs/r1?node=g")
        );
        let dead = Registration {
            url: "http://x".into(),
            pid: 0x7fff_fff0,
        };
        std::fs::write(path(&dir), serde_json::to_vec(&dead).unwrap()).unwrap();
        assert_eq!(gate_url(&run, "r1", "g"), None);
        unregister(&dir);
        assert!(path(&dir).exists(), "another server's file is left alone");
    }
}
