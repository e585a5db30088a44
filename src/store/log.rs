//! `events.jsonl`: the append-only event log of a run.
//!
//! A line is committed once it ends with a newline. Writing goes through a thread of its own:
//! [`EventLog::append`] numbers and stamps the event and hands it over, and the thread writes
//! what has accumulated in one `write` and makes it durable with `fsync` (`File::sync_data`)
//! before writing more. Events reach the disk in order, so after a crash the log is always a
//! prefix of what happened; an event is durable one `fsync` after it happened (about 3 ms on an
//! ordinary disk) and [`EventLog::flush`] waits for that. The engine never waits for the disk
//! between nodes: a node that finished in the last few milliseconds before a `kill -9` runs
//! again on resume, exactly like a node that was still running.
//!
//! Reading is tolerant: a torn last line (a crash in the middle of a write) is ignored, and a
//! line that is not a valid event is skipped and reported, never fatal.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::event::{Event, Record};

enum Message {
    Line(Vec<u8>),
    Flush(SyncSender<io::Result<()>>),
}

/// The writing end of a run's event log.
pub struct EventLog {
    path: PathBuf,
    next_seq: u64,
    sender: Option<Sender<Message>>,
    thread: Option<JoinHandle<()>>,
    error: Arc<Mutex<Option<String>>>,
}

/// What [`read`] found in a log.
#[derive(Debug, Default)]
pub struct Contents {
    /// The committed events, in order.
    pub records: Vec<Record>,
    /// True when the file ended in an unterminated line (a torn write), which was ignored.
    pub torn_tail: bool,
    /// Lines that are not events: 1-based line number and what is wrong.
    pub bad_lines: Vec<(usize, String)>,
    /// Length in bytes of the committed part.
    pub committed_len: u64,
}

impl EventLog {
    /// Creates a new, empty log. Fails if the file exists. Before the first event is written,
    /// the writer thread makes the log's own directory entry durable, and each of
    /// `durable_first` (files and directories written just before, like `run.json`): off the
    /// caller's path, yet never after an event that needs them.
    pub fn create(path: &Path, durable_first: Vec<PathBuf>) -> io::Result<Self> {
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(path)?;
        let mut first = durable_first;
        if let Some(dir) = path.parent() {
            first.push(dir.to_path_buf());
        }
        Ok(Self::spawn(path, file, 1, first))
    }

    /// Opens an existing log to append to it, cutting off a torn last line first. Returns the
    /// log and what it already holds.
    pub fn open(path: &Path) -> io::Result<(Self, Contents)> {
        let contents = read(path)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(path)
            .map_err(|e| not_a_link(path, e))?;
        if contents.torn_tail {
            file.set_len(contents.committed_len)?;
            file.sync_data()?;
        }
        let mut file = file;
        file.seek(SeekFrom::End(0))?;
        let next = contents.records.last().map(|r| r.seq + 1).unwrap_or(1);
        Ok((Self::spawn(path, file, next, Vec::new()), contents))
    }

    fn spawn(path: &Path, file: File, next_seq: u64, durable_first: Vec<PathBuf>) -> Self {
        let (sender, receiver) = mpsc::channel();
        let error = Arc::new(Mutex::new(None));
        let thread_error = error.clone();
        let thread = std::thread::Builder::new()
            .name("reins-event-log".into())
            .spawn(move || write_loop(file, receiver, thread_error, durable_first))
            .ok();
        let (sender, thread) = match thread {
            Some(t) => (Some(sender), Some(t)),
            None => {
                *error.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some("cannot start the event log writer thread".into());
                (None, None)
            }
        };
        Self {
            path: path.to_path_buf(),
            next_seq,
            sender,
            thread,
            error,
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Numbers, stamps and queues an event; it is durable after the next [`flush`]
    /// (or within one `fsync`). Fails when an earlier write failed (disk full...).
    ///
    /// [`flush`]: EventLog::flush
    pub fn append(&mut self, event: Event) -> io::Result<Record> {
        let record = Record {
            seq: self.next_seq,
            ts: super::time::now(),
            event,
        };
        self.append_record(&record)?;
        Ok(record)
    }

    fn append_record(&mut self, record: &Record) -> io::Result<()> {
        self.check()?;
        let mut line = serde_json::to_vec(record).map_err(io::Error::other)?;
        line.push(b'\n');
        self.next_seq = record.seq + 1;
        self.sender
            .as_ref()
            .and_then(|s| s.send(Message::Line(line)).ok())
            .ok_or_else(|| io::Error::other("the event log writer stopped"))
    }

    /// Waits until every event appended so far is on disk.
    pub fn flush(&self) -> io::Result<()> {
        self.check()?;
        let (tx, rx) = mpsc::sync_channel(1);
        let sent = self
            .sender
            .as_ref()
            .map(|s| s.send(Message::Flush(tx)).is_ok())
            .unwrap_or(false);
        if !sent {
            return Err(io::Error::other("the event log writer stopped"));
        }
        rx.recv()
            .unwrap_or_else(|_| Err(io::Error::other("the event log writer stopped")))
    }

    /// Flushes and stops the writer thread.
    pub fn close(mut self) -> io::Result<()> {
        let result = self.flush();
        self.stop();
        result
    }

    fn check(&self) -> io::Result<()> {
        match &*self.error.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(message) => Err(io::Error::other(format!(
                "cannot write {}: {message}",
                self.path.display()
            ))),
            None => Ok(()),
        }
    }

    fn stop(&mut self) {
        self.sender.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for EventLog {
    fn drop(&mut self) {
        self.stop();
    }
}

fn write_loop(
    mut file: File,
    receiver: Receiver<Message>,
    error: Arc<Mutex<Option<String>>>,
    mut durable_first: Vec<PathBuf>,
) {
    let mut buffer = Vec::with_capacity(64 * 1024);
    let mut waiters: Vec<SyncSender<io::Result<()>>> = Vec::new();
    while let Ok(first) = receiver.recv() {
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Line(line) => buffer.extend_from_slice(&line),
                Message::Flush(tx) => waiters.push(tx),
            }
            next = receiver.try_recv().ok();
        }
        for path in durable_first.drain(..) {
            if let Err(e) = File::open(&path).and_then(|f| f.sync_all()) {
                let mut slot = error.lock().unwrap_or_else(|e| e.into_inner());
                slot.get_or_insert_with(|| format!("{}: {e}", path.display()));
            }
        }
        let result = if buffer.is_empty() {
            Ok(())
        } else {
            let r = file.write_all(&buffer).and_then(|_| file.sync_data());
            buffer.clear();
            r
        };
        if let Err(e) = &result {
            let mut slot = error.lock().unwrap_or_else(|e| e.into_inner());
            slot.get_or_insert_with(|| e.to_string());
        }
        for tx in waiters.drain(..) {
            let _ = tx.send(match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
            });
        }
    }
}

/// Opens a log for reading, never through a symlink (a node may have planted one).
fn open_read(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| not_a_link(path, e))
}

fn not_a_link(path: &Path, e: io::Error) -> io::Error {
    if e.raw_os_error() == Some(nix::libc::ELOOP) {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} is a symbolic link, not the run's event log; reins does not follow links in a \
                 run directory (something replaced the log: the run cannot be trusted)",
                path.display()
            ),
        )
    } else {
        e
    }
}

/// Reads a whole log. A missing file is an error; a torn or bad line is not.
pub fn read(path: &Path) -> io::Result<Contents> {
    let mut bytes = Vec::new();
    open_read(path)?.read_to_end(&mut bytes)?;
    Ok(parse(&bytes))
}

/// Parses log bytes: committed lines only (each ends with a newline).
pub fn parse(bytes: &[u8]) -> Contents {
    let mut contents = Contents::default();
    let committed = match bytes.iter().rposition(|&b| b == b'\n') {
        Some(i) => i + 1,
        None => 0,
    };
    contents.torn_tail = committed < bytes.len();
    contents.committed_len = committed as u64;
    for (i, line) in bytes[..committed].split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<Record>(line) {
            Ok(record) => contents.records.push(record),
            Err(e) => contents.bad_lines.push((i + 1, e.to_string())),
        }
    }
    contents
}

/// Follows a log as it grows: each call returns the events committed since the last one.
pub struct Tail {
    path: PathBuf,
    offset: u64,
}

impl Tail {
    /// Starts at the beginning of the file.
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            offset: 0,
        }
    }

    /// The events committed since the last call (none if the file does not exist yet).
    pub fn poll(&mut self) -> io::Result<Vec<Record>> {
        let mut file = match open_read(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        file.seek(SeekFrom::Start(self.offset))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let contents = parse(&bytes);
        self.offset += contents.committed_len;
        Ok(contents.records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::event::RunStatus;

    fn started(node: &str) -> Event {
        Event::NodeStarted {
            node: node.into(),
            attempt: 1,
        }
    }

    #[test]
    fn appends_are_numbered_and_durable_after_flush() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let mut log = EventLog::create(&path, Vec::new()).unwrap();
        for n in ["a", "b", "c"] {
            log.append(started(n)).unwrap();
        }
        log.flush().unwrap();
        let contents = read(&path).unwrap();
        let seqs: Vec<u64> = contents.records.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [1, 2, 3]);
        assert!(!contents.torn_tail);
        log.close().unwrap();
        assert!(
            EventLog::create(&path, Vec::new()).is_err(),
            "never overwrites a log"
        );
    }

    #[test]
    fn a_log_replaced_by_a_link_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = dir.path().join("elsewhere.jsonl");
        std::fs::write(&elsewhere, "").unwrap();
        let path = dir.path().join("events.jsonl");
        std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
        let e = read(&path).unwrap_err();
        assert!(e.to_string().contains("is a symbolic link"), "{e}");
        assert!(EventLog::open(&path).is_err());
        assert!(EventLog::create(&path, Vec::new()).is_err());
    }

    #[test]
    fn a_torn_last_line_is_ignored_and_cut_on_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let mut log = EventLog::create(&path, Vec::new()).unwrap();
        log.append(started("a")).unwrap();
        log.close().unwrap();
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"seq":2,"ts":"2026-01-01T00:00:00Z","type":"node_sta"#)
            .unwrap();
        drop(f);
        let contents = read(&path).unwrap();
        assert_eq!(contents.records.len(), 1);
        assert!(contents.torn_tail);
        assert!(contents.bad_lines.is_empty());

        let (mut log, before) = EventLog::open(&path).unwrap();
        assert_eq!(before.records.len(), 1);
        let rec = log
            .append(Event::RunFinished {
                status: RunStatus::Success,
                error: None,
            })
            .unwrap();
        assert_eq!(rec.seq, 2);
        log.close().unwrap();
        let after = read(&path).unwrap();
        assert_eq!(after.records.len(), 2);
        assert!(!after.torn_tail && after.bad_lines.is_empty());
    }

    #[test]
    fn bad_lines_are_reported_not_fatal() {
        let contents = parse(b"not json\n\n{\"seq\":1,\"ts\":\"2026-01-01T00:00:00Z\",\"type\":\"node_cancelled\",\"node\":\"x\"}\n");
        assert_eq!(contents.records.len(), 1);
        assert_eq!(contents.bad_lines.len(), 1);
        assert_eq!(contents.bad_lines[0].0, 1);
    }

    #[test]
    fn tail_returns_only_new_committed_events() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let mut tail = Tail::new(&path);
        assert!(tail.poll().unwrap().is_empty());
        let mut log = EventLog::create(&path, Vec::new()).unwrap();
        log.append(started("a")).unwrap();
        log.flush().unwrap();
        assert_eq!(tail.poll().unwrap().len(), 1);
        log.append(started("b")).unwrap();
        log.append(started("c")).unwrap();
        log.flush().unwrap();
        assert_eq!(tail.poll().unwrap().len(), 2);
        assert!(tail.poll().unwrap().is_empty());
    }
}
