//! Helpers every command shares: printing on stdout and finding the store and a run.

use std::io::Write;

use super::error::Error;
use crate::store::{RunDir, Store};

/// Prints a line on stdout; a closed pipe (`reins runs | head -1`) is not an error.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}
pub(crate) use say;

/// Writes `text` on stdout; a closed pipe is [`Error::BrokenPipe`] (a quiet exit).
pub(crate) fn print(text: &str) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| Error::io("cannot write to standard output", e))
}

/// The store of the working tree around the current directory.
pub(crate) fn current_store() -> Result<Store, Error> {
    match std::env::current_dir() {
        Ok(dir) => Ok(Store::discover(&dir)),
        Err(e) => Err(Error::usage(format!(
            "cannot read the current directory: {e}"
        ))),
    }
}

/// The store of the current project and the run `run` names (an id prefix or `last`).
pub(crate) fn resolve_run(run: &str) -> Result<(Store, RunDir), Error> {
    let store = current_store()?;
    match store.resolve(run) {
        Ok(found) => Ok((store, found)),
        Err(e) => Err(Error::usage(e.to_string())),
    }
}
