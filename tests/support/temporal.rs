//! A real Temporal dev server for the tests: the pinned `temporal` CLI (`.ci/install-temporal`)
//! started on loopback with free ports and a temporary database, killed when dropped.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where `.ci/install-temporal` puts the binary.
pub const INSTALLED_TEMPORAL: &str = ".tools/temporal/lib/bin/temporal";

/// The pinned Temporal CLI: `$REINS_TEST_TEMPORAL`, else the one `.ci/install-temporal`
/// installed. Missing on CI (`CI` set): the test fails, saying how to install it; a local run
/// prints a notice and gets `None`.
pub fn require_temporal() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("REINS_TEST_TEMPORAL").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "REINS_TEST_TEMPORAL={} does not exist; run `.ci/install-temporal`",
            path.display()
        );
        return Some(path);
    }
    let installed = Path::new(env!("CARGO_MANIFEST_DIR")).join(INSTALLED_TEMPORAL);
    if installed.is_file() {
        return Some(installed);
    }
    let on_ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    assert!(
        !on_ci,
        "the Temporal CLI is not installed: run `.ci/install-temporal` (or set \
         REINS_TEST_TEMPORAL to the binary) before the tests"
    );
    eprintln!(
        "note: skipping a Temporal test: run `.ci/install-temporal` or set REINS_TEST_TEMPORAL to run it"
    );
    None
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A running dev server.
pub struct DevServer {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub address: String,
    bin: PathBuf,
    _dir: tempfile::TempDir,
}

impl DevServer {
    /// Starts a dev server (or `None` when the CLI is missing outside CI) and waits until it
    /// answers.
    pub fn start() -> Option<DevServer> {
        let bin = require_temporal()?;
        // The ports are free when picked, but another test (or the server's own internal
        // services) may take one before the server binds it: start again on fresh ports.
        let mut last = String::new();
        for _ in 0..5 {
            match Self::try_start(&bin) {
                Ok(server) => return Some(server),
                Err(log) => last = log,
            }
        }
        panic!("the Temporal dev server did not come up in 5 attempts: {last}");
    }

    fn try_start(bin: &std::path::Path) -> Result<DevServer, String> {
        let bin = bin.to_path_buf();
        let dir = tempfile::Builder::new()
            .prefix("reins-temporal-")
            .tempdir()
            .unwrap();
        let port = free_port();
        let address = format!("127.0.0.1:{port}");
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let child = Command::new(&bin)
            .args(["server", "start-dev", "--ip", "127.0.0.1", "--headless"])
            .args(["--port", &port.to_string()])
            .args(["--http-port", &free_port().to_string()])
            .args(["--metrics-port", &free_port().to_string()])
            .args(["--ui-port", &free_port().to_string()])
            .arg("--db-filename")
            .arg(dir.path().join("temporal.db"))
            .args(["--log-level", "error"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start the Temporal dev server");
        let server = DevServer {
            child,
            address,
            bin,
            _dir: dir,
        };
        let mut server = server;
        let start = Instant::now();
        let log = |server: &DevServer| {
            std::fs::read_to_string(server._dir.path().join("server.log")).unwrap_or_default()
        };
        loop {
            let up = TcpStream::connect(&server.address).is_ok()
                && server
                    .cli(&["workflow", "list", "--limit", "1"])
                    .is_some_and(|(ok, _)| ok);
            if up {
                return Ok(server);
            }
            if server.child.try_wait().ok().flatten().is_some() {
                return Err(log(&server)); // it exited: a port was taken
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the Temporal dev server did not come up in 60 s: {}",
                log(&server)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Runs `temporal ARGS --address ...`: (succeeded, stdout).
    pub fn cli(&self, args: &[&str]) -> Option<(bool, String)> {
        let out = Command::new(&self.bin)
            .args(args)
            .args(["--address", &self.address])
            .stdin(Stdio::null())
            .output()
            .ok()?;
        Some((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        ))
    }

    /// How many `node` activities of workflow `id` completed for node `node` (the activity's
    /// input names it), from the workflow's history.
    pub fn node_activities(&self, id: &str, node: &str) -> usize {
        let (ok, out) = self
            .cli(&["workflow", "show", "--workflow-id", id, "--output", "json"])
            .expect("temporal workflow show");
        assert!(ok, "temporal workflow show failed: {out}");
        let history: serde_json::Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        let events = history["events"].as_array().cloned().unwrap_or_default();
        let scheduled: Vec<String> = events
            .iter()
            .filter_map(|e| {
                let a = &e["activityTaskScheduledEventAttributes"];
                let data = a["input"]["payloads"][0]["data"]
                    .as_str()
                    .unwrap_or_default();
                let input: serde_json::Value =
                    serde_json::from_slice(&base64(data)).unwrap_or_default();
                (a["activityType"]["name"] == "Activities::node" && input["node"] == node)
                    .then(|| e["eventId"].as_str().unwrap_or_default().to_string())
            })
            .collect();
        events
            .iter()
            .filter_map(|e| e["activityTaskCompletedEventAttributes"]["scheduledEventId"].as_str())
            .filter(|id| scheduled.iter().any(|s| s == id))
            .count()
    }

    /// How many workflow executions the server has.
    pub fn executions(&self) -> usize {
        let (ok, out) = self
            .cli(&["workflow", "count"])
            .expect("temporal workflow count");
        assert!(ok, "temporal workflow count failed: {out}");
        out.split_whitespace()
            .filter_map(|w| w.parse::<usize>().ok())
            .next()
            .unwrap_or_else(|| panic!("no count in `{out}`"))
    }
}

impl Drop for DevServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Decodes standard base64 (how the Temporal CLI prints payloads); other bytes are skipped.
fn base64(text: &str) -> Vec<u8> {
    let (mut bits, mut held, mut out) = (0u32, 0, Vec::new());
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => continue,
        };
        bits = bits << 6 | u32::from(v);
        held += 6;
        if held >= 8 {
            held -= 8;
            out.push((bits >> held) as u8);
            bits &= (1 << held) - 1;
        }
    }
    out
}
