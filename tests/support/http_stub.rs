//! The small HTTP core the model-API stand-ins share ([`super::mock_api`] for Claude's
//! Messages API, [`super::responses_api`] for Codex's Responses API): a server on a free
//! 127.0.0.1 port, one thread per connection, requests read with `content-length` or chunked
//! bodies, answers written as JSON or server-sent events. The protocol decides what to answer.
//! Dropping the server stops it and cuts every open connection, which releases hanging streams.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;

/// A request as read from the wire.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    /// `GET`, `POST` ...
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The JSON body (`Null` when there was none, it was compressed or it was not JSON).
    pub body: Value,
}

impl HttpRequest {
    /// A header's value (the name in any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What a stand-in answers.
pub trait Protocol: Send + Sync + 'static {
    /// Answers one request on `out`. `Ok(true)` keeps the connection open for another request;
    /// a long answer (a stream) polls `stopping` and gives up once it is set.
    fn respond(
        &self,
        out: &mut TcpStream,
        request: &HttpRequest,
        stopping: &AtomicBool,
    ) -> io::Result<bool>;
}

/// A running stand-in: the protocol behind a loopback listener.
pub struct Server<P: Protocol> {
    addr: SocketAddr,
    shared: Arc<Shared<P>>,
    acceptor: Option<JoinHandle<()>>,
}

struct Shared<P> {
    protocol: P,
    connections: Mutex<Vec<TcpStream>>,
    stopping: AtomicBool,
}

impl<P: Protocol> Server<P> {
    /// Starts serving `protocol` on a free loopback port; `name` names the threads.
    pub fn start(name: &str, protocol: P) -> Server<P> {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let shared = Arc::new(Shared {
            protocol,
            connections: Mutex::new(Vec::new()),
            stopping: AtomicBool::new(false),
        });
        let accepting = Arc::clone(&shared);
        let conn_name = format!("{name}-conn");
        let acceptor = std::thread::Builder::new()
            .name(format!("{name}-accept"))
            .spawn(move || {
                for stream in listener.incoming() {
                    if accepting.stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    if let Ok(clone) = stream.try_clone() {
                        accepting.connections.lock().unwrap().push(clone);
                    }
                    let shared = Arc::clone(&accepting);
                    let _ = std::thread::Builder::new()
                        .name(conn_name.clone())
                        .spawn(move || serve(stream, &shared));
                }
            })
            .expect("spawn the acceptor");
        Server {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl<P: Protocol> Deref for Server<P> {
    type Target = P;

    fn deref(&self) -> &P {
        &self.shared.protocol
    }
}

impl<P: Protocol> Drop for Server<P> {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Wake the acceptor, then cut every open connection.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        for conn in self.shared.connections.lock().unwrap().drain(..) {
            let _ = conn.shutdown(std::net::Shutdown::Both);
        }
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// Serves one connection: requests until the peer closes or an answer ends it.
fn serve<P: Protocol>(stream: TcpStream, shared: &Shared<P>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(120)));
    let Ok(clone) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(clone);
    let mut out = stream;
    while !shared.stopping.load(Ordering::SeqCst) {
        let Some(request) = read_request(&mut reader) else {
            return;
        };
        let keep_open = shared
            .protocol
            .respond(&mut out, &request, &shared.stopping)
            .unwrap_or(false);
        if !keep_open {
            let _ = out.shutdown(std::net::Shutdown::Both);
            return;
        }
    }
}

fn read_request(reader: &mut BufReader<TcpStream>) -> Option<HttpRequest> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let mut request = HttpRequest {
        method,
        path,
        headers,
        body: Value::Null,
    };
    let mut body = Vec::new();
    if request
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).ok()?;
            let size = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).ok()?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(len) = request
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        body.resize(len, 0);
        reader.read_exact(&mut body).ok()?;
    }
    // Codex may compress request bodies; the stand-ins only read JSON ones.
    if !request
        .header("content-encoding")
        .is_some_and(|v| v.contains("zstd"))
    {
        request.body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    }
    Some(request)
}

/// Answers with a JSON body; the connection stays open.
pub fn send_json(out: &mut TcpStream, status: u16, body: &Value) -> io::Result<bool> {
    let body = body.to_string();
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        529 => "Overloaded",
        _ => "Mock",
    };
    out.write_all(
        format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n\
             content-length: {}\r\nrequest-id: req_mock\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )?;
    out.flush()?;
    Ok(true)
}

/// Starts a `200` answer of server-sent events; the connection closes after it.
pub fn start_events(out: &mut TcpStream) -> io::Result<()> {
    out.write_all(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n\
          request-id: req_mock\r\nconnection: close\r\n\r\n",
    )
}

/// One server-sent event.
pub fn sse(out: &mut TcpStream, event: &str, data: Value) -> io::Result<()> {
    out.write_all(format!("event: {event}\ndata: {data}\n\n").as_bytes())?;
    out.flush()
}

/// Keeps a stream open, sending nothing, until the server stops.
pub fn hang(stopping: &AtomicBool) {
    while !stopping.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `needle` as it appears inside a JSON string.
pub fn json_escaped(needle: &str) -> String {
    let quoted = Value::String(needle.to_string()).to_string();
    quoted[1..quoted.len() - 1].to_string()
}
