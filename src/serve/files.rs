//! Files inside a run folder, and nothing else.
//!
//! A path asked for is a relative path of plain names: no empty part, no `.` or `..`, no
//! absolute path, no backslash or NUL. It is opened one component at a time from the base
//! folder with `O_NOFOLLOW`, so a symbolic link anywhere on the way (one a node planted to
//! point outside the run, or swapped in while the server looks) is refused, not followed.
//! Whatever is refused answers like a file that does not exist.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::OwnedFd;
use std::path::Path;

use nix::fcntl::{open, openat, OFlag};
use nix::sys::stat::Mode;
use serde::Serialize;

/// The longest piece of a file one request returns.
pub(crate) const MAX_CHUNK: u64 = 1 << 20;

/// The plain names of a relative path, or `None` when it is not one.
pub(crate) fn components(rel: &str) -> Option<Vec<&str>> {
    if rel.is_empty() || rel.len() > 4096 || rel.contains(['\\', '\0']) || rel.starts_with('/') {
        return None;
    }
    let parts: Vec<&str> = rel.split('/').collect();
    let plain = parts
        .iter()
        .all(|p| !p.is_empty() && *p != "." && *p != "..");
    plain.then_some(parts)
}

/// Opens the regular file `rel` below `base`, following no symbolic link.
pub(crate) fn open_inside(base: &Path, rel: &str) -> io::Result<File> {
    let not_found = || io::Error::new(io::ErrorKind::NotFound, "no such file");
    let parts = components(rel).ok_or_else(not_found)?;
    let dir_flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let mut dir: OwnedFd = open(base, dir_flags, Mode::empty()).map_err(|_| not_found())?;
    let (last, folders) = parts.split_last().ok_or_else(not_found)?;
    for name in folders {
        dir = openat(&dir, *name, dir_flags, Mode::empty()).map_err(|_| not_found())?;
    }
    let fd = openat(
        &dir,
        *last,
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
        Mode::empty(),
    )
    .map_err(|_| not_found())?;
    let file = File::from(fd);
    if !file.metadata()?.is_file() {
        return Err(not_found());
    }
    Ok(file)
}

/// A piece of a file: from `offset`, at most [`MAX_CHUNK`] bytes.
#[derive(Debug, Serialize)]
pub(crate) struct Chunk {
    /// Where the piece starts.
    pub offset: u64,
    /// Where the next one starts.
    pub next_offset: u64,
    /// The file's size now.
    pub size: u64,
    /// The text (invalid UTF-8 replaced).
    pub text: String,
}

/// Reads a piece of a file.
pub(crate) fn read_chunk(mut file: File, offset: u64) -> io::Result<Chunk> {
    let size = file.metadata()?.len();
    let offset = offset.min(size);
    file.seek(SeekFrom::Start(offset))?;
    let mut bytes = Vec::new();
    file.take(MAX_CHUNK).read_to_end(&mut bytes)?;
    // Never cut a UTF-8 character in two: leave a partial one for the next piece.
    if offset + (bytes.len() as u64) < size {
        if let Err(e) = std::str::from_utf8(&bytes) {
            if e.error_len().is_none() {
                bytes.truncate(e.valid_up_to());
            }
        }
    }
    Ok(Chunk {
        offset,
        next_offset: offset + bytes.len() as u64,
        size,
        text: String::from_utf8_lossy(&bytes).into_owned(),
    })
}

/// One entry of a folder listing.
#[derive(Debug, Serialize)]
pub(crate) struct Entry {
    /// The path relative to the folder listed, `/`-separated.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
}

/// The regular files below `base` (symbolic links left out), sorted, at most `limit`.
pub(crate) fn list_files(base: &Path, limit: usize) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut stack = vec![(base.to_path_buf(), String::new(), 0usize)];
    while let Some((dir, prefix, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let rel = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}/{name}")
            };
            if kind.is_dir() && depth < 16 {
                stack.push((entry.path(), rel, depth + 1));
            } else if kind.is_file() && out.len() < limit {
                let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
                out.push(Entry { path: rel, size });
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_paths() {
        assert_eq!(components("a/b.md"), Some(vec!["a", "b.md"]));
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../b",
            "a//b",
            "./a",
            "a\\b",
            "a/",
        ] {
            assert_eq!(components(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn symlinks_and_folders_are_not_files() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().join("artifacts");
        std::fs::create_dir_all(base.join("sub")).unwrap();
        std::fs::write(base.join("sub/ok.txt"), "ok").unwrap();
        std::fs::write(tmp.path().join("secret"), "secret").unwrap();
        std::os::unix::fs::symlink(tmp.path().join("secret"), base.join("link")).unwrap();
        std::os::unix::fs::symlink(tmp.path(), base.join("up")).unwrap();
        let mut text = String::new();
        open_inside(&base, "sub/ok.txt")
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "ok");
        for bad in ["link", "up/secret", "sub", "missing", "../secret"] {
            let err = open_inside(&base, bad).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::NotFound, "{bad}");
        }
        let listed: Vec<String> = list_files(&base, 10).into_iter().map(|e| e.path).collect();
        assert_eq!(listed, vec!["sub/ok.txt"]);
    }

    #[test]
    fn chunks_do_not_split_characters() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f");
        std::fs::write(&path, "héllo").unwrap();
        let chunk = read_chunk(File::open(&path).unwrap(), 0).unwrap();
        assert_eq!(chunk.text, "héllo");
        assert_eq!(chunk.next_offset, 6);
        let chunk = read_chunk(File::open(&path).unwrap(), 99).unwrap();
        assert_eq!((chunk.offset, chunk.text.as_str()), (6, ""));
    }
}
