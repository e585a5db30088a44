//! `reins serve` in tests: a server on a free loopback port of a test repository, and a
//! minimal HTTP/1.1 client for it (one request per connection, `Connection: close`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::run_repo::{Repo, Running};

/// A running `reins serve`; stopped (TERM, then waited for) when dropped.
pub struct Server {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    running: Option<Running>,
}

impl Server {
    /// Starts `reins serve --port 0 ARGS` in `repo` and waits until it listens.
    pub fn start(repo: &Repo, args: &[&str]) -> Server {
        let mut cmd = repo.reins(["serve", "--port", "0"]);
        for a in args {
            cmd = cmd.arg(a);
        }
        let running = cmd.timeout(Duration::from_secs(600)).spawn();
        let start = Instant::now();
        loop {
            let out = running.stdout_so_far();
            if let Some(line) = out.lines().find(|l| l.starts_with("reins serve: ")) {
                let url = line["reins serve: ".len()..].trim().to_string();
                let base = url
                    .split("/?")
                    .next()
                    .unwrap()
                    .trim_end_matches('/')
                    .to_string();
                let addr = base.trim_start_matches("http://").to_string();
                return Server {
                    url: base,
                    addr,
                    running: Some(running),
                };
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "reins serve did not start\nstdout:\n{out}\nstderr:\n{}",
                running.stderr_so_far()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's pid.
    pub fn pid(&self) -> i32 {
        self.running.as_ref().unwrap().pid()
    }

    /// Sends a request; returns status, headers (lower-case names) and body.
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
        request(&self.addr, method, path, headers, body)
    }

    /// `GET path` with no extra header.
    pub fn get(&self, path: &str) -> Reply {
        self.request("GET", path, &[], "")
    }

    /// A POST as the page sends it (`X-Reins-Request: 1`, JSON body).
    pub fn post(&self, path: &str, body: &str) -> Reply {
        self.request("POST", path, &[("X-Reins-Request", "1")], body)
    }

    /// Stops the server (TERM) and waits for it.
    pub fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.signal(nix::sys::signal::Signal::SIGTERM);
            running.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(running.pid()),
                nix::sys::signal::Signal::SIGTERM,
            );
            let mut child = running.child;
            let _ = child.wait();
        }
    }
}

/// An HTTP response.
#[derive(Debug)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// Header names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: String,
}

impl Reply {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }
}

/// One request on a new connection; reads until the server closes it, or for at most
/// `REPLY_LIMIT` (for streams).
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let has_host = headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host"));
    let mut text = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !has_host {
        text.push_str(&format!("Host: {addr}\r\n"));
    }
    for (n, v) in headers {
        text.push_str(&format!("{n}: {v}\r\n"));
    }
    if !body.is_empty() {
        text.push_str("Content-Type: application/json\r\n");
    }
    text.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(text.as_bytes()).unwrap();
    let mut bytes = Vec::new();
    let start = Instant::now();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if start.elapsed() > REPLY_LIMIT {
                    break;
                }
            }
            Err(e) => panic!("read: {e}"),
        }
        if start.elapsed() > Duration::from_secs(60) {
            break;
        }
    }
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Reply {
        status,
        headers,
        body,
    }
}

/// How long a reply that does not end (a stream) is read.
pub const REPLY_LIMIT: Duration = Duration::from_millis(1500);

fn dechunk(mut text: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = text.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            out.push_str(&rest[..rest.len().min(n)]);
            break;
        }
        out.push_str(&rest[..n]);
        text = rest[n..].strip_prefix("\r\n").unwrap_or(&rest[n..]);
    }
    out
}
