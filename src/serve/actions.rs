//! Answering, cancelling and resuming: the CLI's own commands, run by the server.
//!
//! A gate answered in the browser is answered by `reins approve RUN GATE` (or `reject`), the
//! very code the terminal runs: first answer wins, the same checks, the same messages. When no
//! process executes the run afterwards, the server continues it as `--resume` would, by
//! starting `reins resume RUN` as its own child in a process group of its own, its output in
//! `.reins/serve/RUN.log`. That process takes the run's lock like any `reins resume`: it
//! survives the page being closed (and the server stopping), `reins cancel` and the page's
//! Cancel stop it, and the server reaps it when it ends. Running the resume inside the server
//! instead would make the server the run's owner, so cancelling the run would mean signalling
//! the server.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Mutex;

use super::Shared;

/// Runs the server started and still waits for.
#[derive(Debug, Default)]
pub(crate) struct Owned(Mutex<HashSet<String>>);

impl Owned {
    /// True while the server's child executes `run`.
    pub(crate) fn contains(&self, run: &str) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(run)
    }

    fn set(&self, run: &str, on: bool) {
        let mut set = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if on {
            set.insert(run.to_string());
        } else {
            set.remove(run);
        }
    }
}

/// How a command ended.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// Its exit code.
    pub code: i32,
    /// What it printed on stdout.
    pub stdout: String,
    /// What it printed on stderr, `error: ` prefixes removed.
    pub stderr: String,
}

impl Outcome {
    /// True when it exited 0.
    pub(crate) fn ok(&self) -> bool {
        self.code == 0
    }
}

/// Runs `reins ARGS` in the working tree and waits for it.
pub(crate) async fn run_cli(app: &Shared, args: &[String]) -> std::io::Result<Outcome> {
    let out = tokio::process::Command::new(&app.config.exe)
        .args(args)
        .current_dir(app.store.root())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .kill_on_drop(false)
        .output()
        .await?;
    let stderr = String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(|l| l.strip_prefix("error: ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    Ok(Outcome {
        code: out.status.code().unwrap_or(1),
        stdout: String::from_utf8_lossy(&out.stdout).trim_end().to_string(),
        stderr,
    })
}

/// Where the output of a run the server continued goes.
pub(crate) fn resume_log(app: &Shared, run: &str) -> PathBuf {
    app.store.dir().join("serve").join(format!("{run}.log"))
}

/// Starts `reins resume ARGS -- RUN` as the server's child, detached from the request; the
/// server reaps it when it ends.
pub(crate) fn spawn_resume(app: &Shared, run: &str, from: Option<&str>) -> std::io::Result<u32> {
    let log_path = resume_log(app, run);
    if let Some(dir) = log_path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)?;
    let mut args = vec!["resume".to_string()];
    if let Some(from) = from {
        args.push(format!("--from={from}"));
    }
    args.push("--".into());
    args.push(run.to_string());
    let mut child = tokio::process::Command::new(&app.config.exe)
        .args(&args)
        .current_dir(app.store.root())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .kill_on_drop(false)
        .spawn()?;
    let pid = child.id().unwrap_or(0);
    app.owned.set(run, true);
    let app = app.clone();
    let run = run.to_string();
    tokio::spawn(async move {
        let _ = child.wait().await;
        app.owned.set(&run, false);
    });
    Ok(pid)
}
