//! `reins logs RUN [NODE] [-f]`.
//!
//! With a node: its stdout log on stdout and its stderr log on stderr (then any other log a
//! runner left), and an agent's transcript as readable lines: what the assistant said, the
//! tools it called, denials, retries and the result (`--raw`: the JSON lines themselves).
//! Without one: every node's logs under headers (a fan-out of many: its instances counted, and
//! the logs of those that did not succeed). With a fan-out: each instance's logs under a
//! header. With `-f`, a node's logs and transcript are
//! followed until the node settles; without a node, the run's events are followed as plain
//! lines until the run ends.

use std::fs::File;
use std::io::{self, BufRead, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::args::LogsArgs;
use super::common::{resolve_run, say};
use super::error::{self, Error, Outcome};
use super::progress::{describe, instance_counts, InstanceFilter};
use crate::diagnostic::suggestion;
use crate::engine::subflow::descend;
use crate::store::log::Tail;
use crate::store::{Event, RunDir, RunState};

const POLL: Duration = Duration::from_millis(100);

/// Runs `reins logs`.
pub(super) fn run(args: LogsArgs) -> error::Result {
    let (_, run) = resolve_run(&args.run)?;
    // `NODE/CHILD_NODE`: a node of a `workflow:` node's child run.
    let (run, node) = match args.node.as_deref().map(|n| descend(&run, n)) {
        Some(Ok((run, node))) => (run, Some(node)),
        Some(Err(e)) => return Err(Error::usage(e.to_string())),
        None => (run, None),
    };
    let state = crate::engine::launch::read_state(&run).unwrap_or_default();
    match node {
        Some(node) => {
            if state.node(&node).is_none() {
                let ids = state.nodes.iter().map(|n| n.id.as_str());
                let hint = suggestion(&node, ids).unwrap_or_else(|| {
                    format!(
                        "its nodes are {}",
                        state
                            .nodes
                            .iter()
                            .map(|n| format!("`{}`", n.id))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                });
                return Err(Error::usage(format!(
                    "run {} has no node `{node}`; {hint}",
                    run.id
                )));
            }
            let instances = instances_of(&state, &node);
            match (instances, args.follow) {
                (Some(_), true) => Err(Error::usage(format!(
                    "`{node}` is a fan-out: follow one of its instances (`reins logs -f {} '{node}[KEY]'`) or the whole run (`reins logs -f {}`)",
                    run.id, run.id
                ))),
                // A fan-out prints nothing itself: its instances' logs, each under a header.
                (Some(ids), false) => {
                    for id in ids {
                        print_node(&run, &id, false, args.raw);
                    }
                    Ok(Outcome::Success)
                }
                (None, true) => follow_node(&run, &node, args.raw),
                (None, false) => {
                    print_node(&run, &node, true, args.raw);
                    Ok(Outcome::Success)
                }
            }
        }
        None if args.follow => follow_run(&run),
        None => {
            print_run(&run, &state, args.raw);
            Ok(Outcome::Success)
        }
    }
}

/// The instances of fan-out `node`, when it is one that was expanded.
fn instances_of(state: &RunState, node: &str) -> Option<Vec<String>> {
    let items = state.node(node)?.fan_out.as_ref()?;
    Some(
        items
            .iter()
            .map(|i| crate::engine::fanout::instance_id(node, &i.key))
            .collect(),
    )
}

/// Every node's logs under headers. A fan-out of more than [`super::progress::SHOWN_INSTANCES`] instances is
/// one header with its instances counted, then the logs of at most that many of those that
/// did not succeed (`reins logs RUN FAN_OUT` prints them all).
fn print_run(run: &RunDir, state: &RunState, raw: bool) {
    let mut filter = InstanceFilter::new(state);
    for n in &state.nodes {
        if filter.many(&n.id) {
            say!(
                "==> {}: {}; the logs of those that did not succeed follow (`reins logs {} {}` prints them all) <==",
                n.id,
                instance_counts(state, n),
                run.id,
                n.id
            );
            continue;
        }
        if filter.hides(n) {
            continue;
        }
        print_node(run, &n.id, false, raw);
    }
}

/// The log files of one folder: stdout, stderr, then any other `*.log` in it.
fn folder_logs(folder: &Path) -> Vec<PathBuf> {
    let own = [folder.join("stdout.log"), folder.join("stderr.log")];
    let mut others: Vec<PathBuf> = std::fs::read_dir(folder)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "log") && !own.contains(p))
        .collect();
    others.sort();
    let mut files = own.to_vec();
    files.extend(others);
    files
}

/// Prints a node's logs and transcript; a loop's iteration by iteration, each under a header.
/// Files are streamed, never read whole.
fn print_node(run: &RunDir, node: &str, split_streams: bool, raw: bool) {
    let dir = run.node_dir(node);
    for folder in node_folders(&dir) {
        if let Some(n) = iteration_of(&dir, &folder) {
            if split_streams {
                let _ = writeln!(io::stdout().lock(), "==> {node}: iteration {n} <==");
            }
        }
        print_logs(&dir, &folder, node, split_streams);
        let path = folder.join(TRANSCRIPT);
        let Ok(file) = File::open(&path) else {
            continue;
        };
        if file.metadata().map(|m| m.len()).unwrap_or(0) == 0 {
            continue;
        }
        let mut out = io::stdout().lock();
        if !split_streams {
            let _ = writeln!(out, "==> {node}: {} <==", relative(&dir, &path));
        }
        let _ = render_transcript_from(io::BufReader::new(file), raw, &mut out);
    }
}

/// The number of a loop's `iteration-N/` folder, `None` for the node's own folder.
fn iteration_of(dir: &Path, folder: &Path) -> Option<u32> {
    if folder == dir {
        return None;
    }
    folder
        .file_name()?
        .to_str()?
        .strip_prefix("iteration-")?
        .parse()
        .ok()
}

fn relative(dir: &Path, path: &Path) -> String {
    path.strip_prefix(dir)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

/// Renders transcript lines as they are read, one line in memory at a time.
fn render_transcript_from(
    mut reader: impl io::BufRead,
    raw: bool,
    out: &mut impl Write,
) -> io::Result<()> {
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        out.write_all(render_transcript(&line, raw).as_bytes())?;
    }
}

/// An agent's transcript in the node's folder (see [`crate::agent::run`]).
const TRANSCRIPT: &str = "transcript.jsonl";

/// Transcript lines as readable text (or as they are, with `raw`).
fn render_transcript(bytes: &[u8], raw: bool) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::new();
    for line in text.lines() {
        let shown = if raw {
            Some(line.to_string())
        } else {
            let shown: Vec<String> = crate::agent::harness::parse_transcript_line(line)
                .iter()
                .filter_map(crate::agent::render_readable)
                .collect();
            (!shown.is_empty()).then(|| shown.join("\n"))
        };
        if let Some(shown) = shown {
            out.push_str(&shown);
            out.push('\n');
        }
    }
    out
}

/// Streams the log files of one folder of a node (its own, or a loop iteration's).
fn print_logs(dir: &Path, folder: &Path, node: &str, split_streams: bool) {
    for path in folder_logs(folder) {
        let Ok(mut file) = File::open(&path) else {
            continue;
        };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        if len == 0 {
            continue;
        }
        if split_streams {
            if path.file_name().is_some_and(|f| f == "stderr.log") {
                let _ = io::copy(&mut file, &mut io::stderr().lock());
            } else {
                let _ = io::copy(&mut file, &mut io::stdout().lock());
            }
        } else {
            let mut out = io::stdout().lock();
            let _ = writeln!(out, "==> {node}: {} <==", relative(dir, &path));
            let _ = io::copy(&mut file, &mut out);
            if !ends_with_newline(&path, len) {
                let _ = writeln!(out);
            }
        }
    }
}

/// Whether the file's last byte (of `len`) is a newline.
fn ends_with_newline(path: &Path, len: u64) -> bool {
    let mut last = [0u8; 1];
    File::open(path)
        .and_then(|mut f| {
            f.seek(SeekFrom::Start(len - 1))?;
            f.read_exact(&mut last)
        })
        .map(|()| last[0] == b'\n')
        .unwrap_or(true)
}

fn follow_node(run: &RunDir, node: &str, raw: bool) -> error::Result {
    let dir = run.node_dir(node);
    // Read offsets per file: the node's own and, for a loop, each iteration's.
    let mut offsets: std::collections::HashMap<PathBuf, u64> = std::collections::HashMap::new();
    let mut events = Tail::new(&run.events_path());
    let mut state = RunState::new();
    let mut headed: std::collections::HashSet<PathBuf> = std::collections::HashSet::new();
    loop {
        for r in events.poll().unwrap_or_default() {
            state.apply(&r);
        }
        let settled = state.node(node).is_some_and(|n| n.status.is_settled());
        let live = run.is_live();
        let mut grew = false;
        for folder in node_folders(&dir) {
            if let Some(n) = iteration_of(&dir, &folder) {
                if headed.insert(folder.clone()) {
                    say!("==> {node}: iteration {n} <==");
                }
            }
            for name in ["stdout.log", "stderr.log", TRANSCRIPT] {
                let path = folder.join(name);
                let offset = offsets.entry(path.clone()).or_insert(0);
                let read = if name == TRANSCRIPT {
                    follow_transcript(&path, offset, raw)
                } else {
                    copy_new(&path, offset, name == "stderr.log")
                };
                match read {
                    Ok(n) => grew |= n > 0,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io(format!("cannot read {}", path.display()), e)),
                }
            }
        }
        if !grew && (settled || !live) {
            return Ok(Outcome::Success);
        }
        std::thread::sleep(POLL);
    }
}

/// A node's folder, then a loop's `iteration-N/` folders in order.
fn node_folders(dir: &Path) -> Vec<PathBuf> {
    let mut iterations: Vec<(u32, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let e = e.ok()?;
            let n = e
                .file_name()
                .to_str()?
                .strip_prefix("iteration-")?
                .parse()
                .ok()?;
            Some((n, e.path()))
        })
        .collect();
    iterations.sort();
    std::iter::once(dir.to_path_buf())
        .chain(iterations.into_iter().map(|(_, p)| p))
        .collect()
}

/// Prints the transcript's complete lines appended since `offset`; returns how many bytes.
fn follow_transcript(path: &Path, offset: &mut u64, raw: bool) -> io::Result<u64> {
    let mut f = File::open(path)?;
    f.seek(SeekFrom::Start(*offset))?;
    let mut reader = io::BufReader::new(f);
    let mut out = io::stdout().lock();
    let mut line = Vec::new();
    let mut read = 0u64;
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        // A line being written (no newline yet) is left for the next poll.
        if n == 0 || !line.ends_with(b"\n") {
            break;
        }
        out.write_all(render_transcript(&line, raw).as_bytes())?;
        read += n as u64;
    }
    out.flush()?;
    *offset += read;
    Ok(read)
}

/// Copies what was appended to a file since `offset`, streamed; returns how many bytes.
fn copy_new(path: &Path, offset: &mut u64, to_stderr: bool) -> io::Result<u64> {
    let mut f = File::open(path)?;
    f.seek(SeekFrom::Start(*offset))?;
    let n = if to_stderr {
        io::copy(&mut f, &mut io::stderr().lock())?
    } else {
        let mut out = io::stdout().lock();
        let n = io::copy(&mut f, &mut out)?;
        out.flush()?;
        n
    };
    *offset += n;
    Ok(n)
}

fn follow_run(run: &RunDir) -> error::Result {
    let mut events = Tail::new(&run.events_path());
    let mut state = RunState::new();
    loop {
        let batch = events.poll().unwrap_or_default();
        let mut ended = false;
        for r in &batch {
            state.apply(r);
            if let Some(line) = describe(r, &state) {
                let ts = crate::store::time::format(r.ts);
                say!("{} {line}", ts.get(11..23).unwrap_or(&ts));
            }
            ended |= matches!(r.event, Event::RunFinished { .. } | Event::RunPaused { .. });
        }
        let live = run.is_live();
        if batch.is_empty() && (ended || !live) {
            return Ok(Outcome::Success);
        }
        let _ = io::stdout().flush();
        std::thread::sleep(POLL);
    }
}
