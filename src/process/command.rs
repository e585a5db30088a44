//! What to start, and what both spawn paths share: the program lookup, the environment, and
//! clear messages for what can go wrong before the program runs.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use nix::libc;

/// The variable every child of a node carries, `REINS_PROCESS_TAG=<reins pid>:<n>`: inherited
/// by all its descendants, it tells which node a process that left the node's process group
/// came from.
pub const TAG_VAR: &str = "REINS_PROCESS_TAG";

/// The tag's value for node process `n` of this reins.
pub(super) fn tag_value(n: u64) -> String {
    format!("{}:{n}", std::process::id())
}

/// The `n` of a tag value set by this reins (`None` for another reins' tag).
#[cfg_attr(
    any(not(target_os = "linux"), feature = "portable-process"),
    allow(dead_code)
)]
pub(super) fn parse_tag(value: &[u8]) -> Option<u64> {
    let value = std::str::from_utf8(value).ok()?;
    let (pid, n) = value.split_once(':')?;
    (pid.parse::<u32>().ok()? == std::process::id())
        .then(|| n.parse().ok())
        .flatten()
}

/// What to start: a program, its arguments, working directory and environment.
#[derive(Debug, Clone, Copy)]
pub struct Spawn<'a> {
    /// The program: a path, or a name looked up on `PATH` (the child's, from `env`).
    pub program: &'a str,
    /// Its arguments.
    pub args: &'a [String],
    /// Working directory.
    pub cwd: &'a Path,
    /// Variables added to (or replacing) reins' environment.
    pub env: &'a [(String, String)],
    /// Variables removed from reins' environment.
    pub env_remove: &'a [String],
}

impl Spawn<'_> {
    /// The executable: `program` itself when it holds a `/`, else the first match on the
    /// child's `PATH`.
    pub(super) fn executable(&self) -> io::Result<PathBuf> {
        let path_var = self
            .env
            .iter()
            .rev()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| OsString::from(v))
            .or_else(|| std::env::var_os("PATH"))
            .unwrap_or_default();
        resolve(self.program, &path_var, self.cwd)
    }

    /// reins' environment (read once) without `env_remove`, with `env` and the tag applied,
    /// as `KEY=VALUE` byte strings.
    #[cfg_attr(
        any(not(target_os = "linux"), feature = "portable-process"),
        allow(dead_code)
    )]
    pub(super) fn environment(&self, tag: u64) -> Vec<Vec<u8>> {
        static BASE: OnceLock<Vec<(OsString, OsString)>> = OnceLock::new();
        let base = BASE.get_or_init(|| std::env::vars_os().collect());
        let tag = tag_value(tag);
        let mut vars: Vec<(&OsStr, &OsStr)> = base
            .iter()
            .map(|(k, v)| (k.as_os_str(), v.as_os_str()))
            .filter(|(k, _)| !self.env_remove.iter().any(|r| OsStr::new(r) == *k))
            .collect();
        let overrides = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain([(TAG_VAR, tag.as_str())]);
        for (k, v) in overrides {
            let (k, v) = (OsStr::new(k), OsStr::new(v));
            match vars.iter_mut().find(|(key, _)| *key == k) {
                Some(slot) => slot.1 = v,
                None => vars.push((k, v)),
            }
        }
        vars.into_iter()
            .map(|(k, v)| {
                let mut kv = Vec::with_capacity(k.len() + v.len() + 1);
                kv.extend_from_slice(k.as_bytes());
                kv.push(b'=');
                kv.extend_from_slice(v.as_bytes());
                kv
            })
            .collect()
    }

    /// The error for a child that could not start: `errno` at `step`.
    pub(super) fn failure(&self, step: Step, err: io::Error) -> io::Error {
        let kind = err.kind();
        let message = match step {
            Step::Cwd => format!("cannot work in {}: {err}", self.cwd.display()),
            Step::Exec => match err.raw_os_error() {
                Some(libc::E2BIG) => {
                    "the command line is too long (one argument is limited to 128 KiB)".into()
                }
                Some(libc::EACCES) => format!("`{}` is not executable", self.program),
                Some(libc::ENOENT) => format!("`{}` is not installed", self.program),
                _ => format!("cannot start `{}`: {err}", self.program),
            },
            Step::Setup => format!("cannot set the process up: {err}"),
        };
        io::Error::new(kind, message)
    }
}

/// Where a child's start failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// Process group, signals, descriptors.
    Setup,
    /// Changing to the working directory.
    Cwd,
    /// Executing the program.
    Exec,
}

/// The executable a program name stands for: itself when it holds a `/` (relative to the
/// child's working directory), else the first match on `PATH`. Lookups are cached.
fn resolve(program: &str, path_var: &OsStr, cwd: &Path) -> io::Result<PathBuf> {
    if program.contains('/') {
        let p = Path::new(program);
        return Ok(if p.is_absolute() {
            p.to_path_buf()
        } else {
            cwd.join(p)
        });
    }
    static CACHE: OnceLock<Mutex<HashMap<(String, OsString), PathBuf>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let key = (program.to_string(), path_var.to_os_string());
    if let Some(p) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Ok(p.clone());
    }
    let found = which::which_in(program, Some(path_var), cwd).map_err(|_| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("`{program}` is not installed (not found on PATH)"),
        )
    })?;
    cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, found.clone());
    Ok(found)
}
