//! The bash runner: `bash -c SCRIPT` (or the node's `shell`) in the working tree or `cwd`.
//!
//! The script is the node's `bash:` template rendered by reference: every `{{...}}` value is a
//! variable (`REINS_VALUE_1`, ...) set in the child's environment, never text of the script
//! (see [`pass_values`]). The script as it runs is kept as `nodes/<id>/command.sh`. The node's output is its stdout with trailing newlines
//! trimmed; stdout and stderr are also written to `nodes/<id>/stdout.log` and `stderr.log`.

use std::io::Write;
use std::path::Path;

use super::runner::{BoxFuture, Job, NodeRunner, Outcome};
use crate::process::{self, Ending, Spec};
use crate::store::{safe_fs, Event};
use crate::workflow::template::RenderError;
use crate::workflow::TemplateField;

/// A script longer than this is run from its file rather than as an argument (one argument is
/// limited to 128 KiB by the kernel).
const INLINE_SCRIPT_LIMIT: usize = 96 * 1024;

/// Runs `bash` nodes.
pub(crate) struct BashRunner;

impl NodeRunner for BashRunner {
    fn run(&self, job: Job) -> BoxFuture<Outcome> {
        Box::pin(run(job))
    }
}

async fn run(job: Job) -> Outcome {
    let mut env = job.env.clone();
    let script = match job
        .plan
        .render_script(job.index, TemplateField::Body, &job.context)
        .map_err(ScriptError::from)
        .and_then(|s| pass_values(s, &job.run.dir.path, &job.dir, &mut env))
    {
        Ok(s) => s,
        Err(e) => return Outcome::fatal(format!("cannot render the script: {e}")),
    };
    let script_path = job.dir.join("command.sh");
    // Never through a link a node planted in the run directory (see `store::safe_fs`).
    let keep_script = || {
        let base = &job.run.dir.path;
        safe_fs::relative(base, &script_path)
            .and_then(|rel| safe_fs::write(base, rel, script.as_bytes()))
            .map_err(|e| format!("cannot write {}: {e}", script_path.display()))
    };
    let shell = &job.plan.settings[job.index].shell;
    let mut args: Vec<String> = shell[1..].to_vec();
    let inline = script.len() <= INLINE_SCRIPT_LIMIT;
    if inline {
        args.push("-c".into());
        args.push(script.clone());
    } else {
        // Too long for one argument: the shell reads it from the file.
        if let Err(e) = keep_script() {
            return Outcome::fatal(e);
        }
        args.push(script_path.display().to_string());
    }
    let spec = Spec {
        program: shell[0].clone(),
        args,
        cwd: job.cwd.clone(),
        env,
        stdout_log: job.dir.join("stdout.log"),
        stderr_log: job.dir.join("stderr.log"),
        timeout: job.timeout,
        grace: job.limits.grace,
        output_limit: job.limits.output_limit,
    };
    if job.attempt > 1 {
        mark_attempt(&spec, job.attempt);
    }
    // The process starts at the first poll of `process::run`; the script is kept for the
    // record right after, while it runs, off the path from one node to the next.
    let (finished, kept) = tokio::join!(
        process::run(&spec, &job.cancel, job.watchdog.as_deref()),
        async {
            if inline {
                keep_script()
            } else {
                Ok(())
            }
        }
    );
    let finished = match finished {
        Ok(f) => f,
        Err(e) => return Outcome::fatal(e.to_string()),
    };
    if let Err(e) = kept {
        tracing::warn!("{e}");
    }
    if finished.truncated {
        note_truncation(&job, &spec, finished.total_bytes);
    }
    let output = trim_output(finished.stdout);
    match finished.ending {
        Ending::Exited(0) => Outcome::Success {
            output,
            usage: None,
        },
        Ending::Cancelled => Outcome::Cancelled,
        ending => Outcome::Failure {
            error: ending.describe(),
            exit_code: ending.exit_code(),
            output,
            usage: None,
            retryable: true,
        },
    }
}

/// The most a script's values take of the environment, all together; beyond it they go
/// through files (the kernel limits arguments and environment together to a few MiB).
const VALUES_BUDGET: usize = 512 * 1024;

/// Why a script could not be made ready to run: it did not render, or a value's file could
/// not be written.
#[derive(Debug, thiserror::Error)]
pub(super) enum ScriptError {
    /// The template did not render.
    #[error(transparent)]
    Render(#[from] RenderError),
    /// A value too large for the environment could not be written to its file.
    #[error("cannot write {}: {source}", .path.display())]
    Value {
        /// The value's file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Puts the values of a script rendered by reference where the shell reads them, and returns
/// the script to run. Each value is set in `env` under its name (`REINS_VALUE_1`); one larger
/// than [`ENV_VALUE_LIMIT`](super::context::ENV_VALUE_LIMIT), or past the budget of all of
/// them, is written to `DIR/values/NAME` instead, `NAME_FILE` is set to that path, and the
/// script starts by reading it into `NAME`, every byte kept (trailing newlines too):
/// `NAME=$(cat -- "$NAME_FILE"; printf x); NAME=${NAME%x}`.
pub(super) fn pass_values(
    script: crate::workflow::template::Script,
    run_dir: &Path,
    dir: &Path,
    env: &mut Vec<(String, String)>,
) -> Result<String, ScriptError> {
    let mut used = 0;
    let mut preamble = String::new();
    for (name, value) in script.values {
        if value.len() <= super::context::ENV_VALUE_LIMIT && used + value.len() <= VALUES_BUDGET {
            used += value.len();
            env.push((name, value));
            continue;
        }
        let path = dir.join("values").join(&name);
        if let Err(source) = write_value(run_dir, &path, value.as_bytes()) {
            return Err(ScriptError::Value { path, source });
        }
        preamble.push_str(&format!(
            "{name}=$(cat -- \"${name}_FILE\"; printf x); {name}=${{{name}%x}}; "
        ));
        env.push((format!("{name}_FILE"), path.display().to_string()));
    }
    // On the script's first line, so the shell's line numbers stay those of the workflow.
    Ok(preamble + &script.text)
}

/// Writes a value's file in the run directory `base`, never through a link a node planted.
pub(super) fn write_value(base: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let rel = safe_fs::relative(base, path)?;
    if let Some(parent) = rel.parent() {
        safe_fs::create_dirs(base, parent)?;
    }
    safe_fs::write(base, rel, bytes)
}

/// The output was cut to the limit: keeps the whole of it as `output.txt` (the last
/// `total` bytes of `stdout.log`, this attempt's, trailing newlines trimmed like the output)
/// and records how much was kept. Never through a link planted in the run directory.
fn note_truncation(job: &Job, spec: &Spec, total: u64) {
    use std::io::{Read, Seek, SeekFrom};
    let base = &job.run.dir.path;
    let dest = super::context::output_file(&job.dir);
    let copied = (|| -> std::io::Result<()> {
        let mut log = safe_fs::open(
            base,
            safe_fs::relative(base, &spec.stdout_log)?,
            safe_fs::Access::Read,
        )?;
        let len = log.metadata()?.len();
        let start = len.saturating_sub(total);
        // Trailing newlines go, like the output.
        let mut keep = len;
        let mut last = [0u8; 1];
        while keep > start {
            log.seek(SeekFrom::Start(keep - 1))?;
            log.read_exact(&mut last)?;
            if !matches!(last[0], b'\n' | b'\r') {
                break;
            }
            keep -= 1;
        }
        log.seek(SeekFrom::Start(start))?;
        let mut out = safe_fs::open(
            base,
            safe_fs::relative(base, &dest)?,
            safe_fs::Access::Replace,
        )?;
        std::io::copy(&mut log.take(keep - start), &mut out)?;
        Ok(())
    })();
    if let Err(e) = copied {
        tracing::warn!("cannot keep the whole output of `{}`: {e}", job.node);
    }
    // In a loop the loop records it, for the iteration whose output is the node's.
    if job.iteration.is_none() {
        job.recorder.record(Event::OutputTruncated {
            node: job.node.clone(),
            kept_bytes: job.limits.output_limit as u64,
            total_bytes: total,
        });
    }
}

/// Copies the file `from` to `to`, both inside the run directory `base`, never through a link
/// planted there; the bytes copied.
pub(super) fn copy_in_run(base: &Path, from: &Path, to: &Path) -> std::io::Result<u64> {
    let mut src = safe_fs::open(base, safe_fs::relative(base, from)?, safe_fs::Access::Read)?;
    let rel = safe_fs::relative(base, to)?;
    if let Some(parent) = rel.parent() {
        safe_fs::create_dirs(base, parent)?;
    }
    let mut dest = safe_fs::open(base, rel, safe_fs::Access::Replace)?;
    std::io::copy(&mut src, &mut dest)
}

/// Separates the logs of a retry from the attempt before.
fn mark_attempt(spec: &Spec, attempt: u32) {
    use std::io::{Read, Seek, SeekFrom};
    for path in [&spec.stdout_log, &spec.stderr_log] {
        let Ok(mut f) = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .open(path)
        else {
            continue;
        };
        let mut last = [0u8; 1];
        if f.seek(SeekFrom::End(-1)).is_err() || f.read_exact(&mut last).is_err() {
            continue; // empty: nothing to separate
        }
        let lead = if last[0] == b'\n' { "" } else { "\n" };
        let _ = writeln!(f, "{lead}==> attempt {attempt} <==");
    }
}

/// Trailing newlines go, like `$(...)` in a shell.
fn trim_output(mut s: String) -> String {
    let keep = s.trim_end_matches(['\n', '\r']).len();
    s.truncate(keep);
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn trims_trailing_newlines_only() {
        assert_eq!(super::trim_output("a\n\n".into()), "a");
        assert_eq!(super::trim_output(" a \r\n".into()), " a ");
        assert_eq!(super::trim_output("a\nb".into()), "a\nb");
    }
}
