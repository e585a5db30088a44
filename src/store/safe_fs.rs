//! Files of a run directory, opened without ever following a symlink.
//!
//! Nodes run as the user who runs reins and may write anywhere in the run directory. A node
//! that replaces `nodes/gate/answer.json`, `nodes/x/command.sh`, `events.jsonl` or a whole
//! folder like `nodes/x` with a symlink must not make reins read or write through it (to
//! overwrite a file elsewhere, or to read an answer from somewhere reins never wrote). So every
//! file reins itself writes or trusts in a run directory is opened beneath a base folder one
//! component at a time, each with `O_NOFOLLOW` (`openat`): a symlink anywhere below the base is
//! refused with `ELOOP`, reported as "is a symbolic link; reins does not follow links in a run
//! directory".

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{mkdirat, Mode};

/// How to open the last component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read an existing file.
    Read,
    /// Create a file that must not exist yet (`O_EXCL`), for writing.
    CreateNew,
    /// Create or truncate a file, for writing.
    Replace,
    /// Append to a file, creating it if needed.
    Append,
}

fn link_error(base: &Path, rel: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "{} is (or lies under) a symbolic link; reins does not follow links in a run directory",
            base.join(rel).display()
        ),
    )
}

fn errno_to_io(e: Errno, base: &Path, rel: &Path) -> io::Error {
    match e {
        Errno::ELOOP | Errno::ENOTDIR => link_error(base, rel),
        other => io::Error::from(other),
    }
}

/// The parts of `rel`: plain names only (no `..`, no root), or an error.
fn parts(rel: &Path) -> io::Result<Vec<&std::ffi::OsStr>> {
    rel.components()
        .filter(|c| !matches!(c, Component::CurDir))
        .map(|c| match c {
            Component::Normal(name) => Ok(name),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a plain relative path", rel.display()),
            )),
        })
        .collect()
}

/// Opens the folder `base/dirs...`, creating missing folders when `create`, never through a link.
fn open_dirs(
    base: &Path,
    rel: &Path,
    dirs: &[&std::ffi::OsStr],
    create: bool,
) -> io::Result<OwnedFd> {
    let dir_flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let mut fd: OwnedFd = File::open(base)?.into();
    for name in dirs {
        let next = match openat(fd.as_fd(), *name, dir_flags, Mode::empty()) {
            Err(Errno::ENOENT) if create => {
                match mkdirat(fd.as_fd(), *name, Mode::from_bits_truncate(0o755)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(errno_to_io(e, base, rel)),
                }
                openat(fd.as_fd(), *name, dir_flags, Mode::empty())
            }
            other => other,
        };
        fd = next.map_err(|e| errno_to_io(e, base, rel))?;
    }
    Ok(fd)
}

/// Opens `base/rel` without following a symlink in any component below `base`. Folders are
/// created as needed for the writing accesses.
pub fn open(base: &Path, rel: &Path, access: Access) -> io::Result<File> {
    let names = parts(rel)?;
    let Some((last, dirs)) = names.split_last() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "an empty path names no file",
        ));
    };
    let create_dirs = !matches!(access, Access::Read);
    let dir = open_dirs(base, rel, dirs, create_dirs)?;
    let flags = OFlag::O_NOFOLLOW
        | OFlag::O_CLOEXEC
        | match access {
            Access::Read => OFlag::O_RDONLY,
            Access::CreateNew => OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL,
            Access::Replace => OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC,
            Access::Append => OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_APPEND,
        };
    match openat(dir.as_fd(), *last, flags, Mode::from_bits_truncate(0o644)) {
        Ok(fd) => Ok(File::from(fd)),
        Err(Errno::EEXIST) => Err(io::Error::from(io::ErrorKind::AlreadyExists)),
        Err(Errno::ENOENT) => Err(io::Error::from(io::ErrorKind::NotFound)),
        Err(e) => Err(errno_to_io(e, base, rel)),
    }
}

/// Creates the folder `base/rel` (and its parents), never through a link.
pub fn create_dirs(base: &Path, rel: &Path) -> io::Result<()> {
    let names = parts(rel)?;
    open_dirs(base, rel, &names, true).map(drop)
}

/// Reads `base/rel` as text, never through a link.
pub fn read_to_string(base: &Path, rel: &Path) -> io::Result<String> {
    let mut text = String::new();
    open(base, rel, Access::Read)?.read_to_string(&mut text)?;
    Ok(text)
}

/// Writes `base/rel` (created or truncated), never through a link.
pub fn write(base: &Path, rel: &Path, bytes: &[u8]) -> io::Result<()> {
    open(base, rel, Access::Replace)?.write_all(bytes)
}

/// `path` relative to `base`, when it lies under it.
pub fn relative<'a>(base: &Path, path: &'a Path) -> io::Result<&'a Path> {
    path.strip_prefix(base).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not inside {}", path.display(), base.display()),
        )
    })
}

/// What is wrong with a declared output.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The path is not a plain relative path (absolute, or with `..`).
    #[error("`{rel}`: {source}")]
    BadPath {
        /// The declared path.
        rel: String,
        /// Why.
        source: io::Error,
    },
    /// Nothing is there.
    #[error("`{0}` does not exist")]
    Missing(String),
    /// The artifacts folder cannot be read.
    #[error("cannot read {}: {source}", .artifacts.display())]
    Unreadable {
        /// The artifacts folder.
        artifacts: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// It is a link that leads out of the artifacts folder.
    #[error("`{rel}` is a link to {}, outside the artifacts folder", .target.display())]
    Outside {
        /// The declared path.
        rel: String,
        /// Where the link leads.
        target: PathBuf,
    },
    /// It is a link to nothing.
    #[error("`{0}` is a link to nothing")]
    Dangling(String),
}

/// Checks a declared output: `rel` names an existing file or folder inside `artifacts`, and
/// does not lead out of it through a link (a link to a file inside is fine).
pub fn check_output(artifacts: &Path, rel: &str) -> Result<(), OutputError> {
    if let Err(source) = parts(Path::new(rel)) {
        return Err(OutputError::BadPath {
            rel: rel.to_string(),
            source,
        });
    }
    let path = artifacts.join(rel);
    if std::fs::symlink_metadata(&path).is_err() {
        return Err(OutputError::Missing(rel.to_string()));
    }
    let base = artifacts
        .canonicalize()
        .map_err(|source| OutputError::Unreadable {
            artifacts: artifacts.to_path_buf(),
            source,
        })?;
    match path.canonicalize() {
        Ok(real) if real.starts_with(&base) => Ok(()),
        Ok(target) => Err(OutputError::Outside {
            rel: rel.to_string(),
            target,
        }),
        Err(_) => Err(OutputError::Dangling(rel.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_must_really_be_inside() {
        let tmp = tempfile::tempdir().unwrap();
        let artifacts = tmp.path().join("artifacts");
        std::fs::create_dir_all(artifacts.join("sub")).unwrap();
        std::fs::write(artifacts.join("sub/plan.md"), "x").unwrap();
        std::fs::write(tmp.path().join("secret"), "x").unwrap();
        std::os::unix::fs::symlink(tmp.path().join("secret"), artifacts.join("out.md")).unwrap();
        std::os::unix::fs::symlink("sub/plan.md", artifacts.join("in.md")).unwrap();
        assert!(check_output(&artifacts, "sub/plan.md").is_ok());
        assert!(check_output(&artifacts, "in.md").is_ok());
        let e = check_output(&artifacts, "out.md").unwrap_err().to_string();
        assert!(e.contains("outside the artifacts folder"), "{e}");
        assert!(check_output(&artifacts, "none.md")
            .unwrap_err()
            .to_string()
            .contains("does not exist"));
        assert!(check_output(&artifacts, "../secret").is_err());
        assert!(check_output(&artifacts, "/etc/passwd").is_err());
    }

    #[test]
    fn never_follows_a_link_at_any_level() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().join("run");
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(base.join("nodes")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        write(&base, Path::new("nodes/a/command.sh"), b"echo").unwrap();
        assert_eq!(
            read_to_string(&base, Path::new("nodes/a/command.sh")).unwrap(),
            "echo"
        );
        // A planted link as the file itself...
        std::os::unix::fs::symlink(outside.join("x"), base.join("nodes/a/answer.json")).unwrap();
        let e = open(&base, Path::new("nodes/a/answer.json"), Access::Read).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        let e = write(&base, Path::new("nodes/a/answer.json"), b"{}").unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert!(!outside.join("x").exists());
        // ... or as a folder on the way.
        std::os::unix::fs::symlink(&outside, base.join("nodes/b")).unwrap();
        let e = write(&base, Path::new("nodes/b/command.sh"), b"x").unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert!(!outside.join("command.sh").exists());
        assert!(open(&base, Path::new("../x"), Access::Read).is_err());
        assert_eq!(
            open(&base, Path::new("nodes/a/none"), Access::Read)
                .unwrap_err()
                .kind(),
            io::ErrorKind::NotFound
        );
        assert_eq!(
            open(&base, Path::new("nodes/a/command.sh"), Access::CreateNew)
                .unwrap_err()
                .kind(),
            io::ErrorKind::AlreadyExists
        );
    }
}
