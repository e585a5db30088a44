//! `reins doctor`: checks what a run needs and says how to fix each problem.
//!
//! Checks, in order: each agent CLI of [`AGENT_CLIS`] (found on `PATH`, its version, its
//! credentials), git and the repository around the current directory, `gh` (present and logged
//! in, for workflows that open pull requests), `.reins/` writable, and the user-global folder.
//! A `fail` makes the exit code 1; a `warn` is something only some workflows need.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::args::{DoctorArgs, ListFormat};
use super::common::say;
use super::error::{self, Outcome};

/// How long a `--version` or `gh auth status` may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// An agent CLI reins can drive, and how to tell it is ready.
pub(super) struct AgentCli {
    /// The program looked up on `PATH`.
    pub program: &'static str,
    /// How to install it.
    pub install: &'static str,
    /// Environment variables any one of which holds a credential.
    pub credential_vars: &'static [&'static str],
    /// Files (relative to the CLI's config folder) any one of which holds a login.
    pub credential_files: &'static [&'static str],
    /// The variable that moves the CLI's config folder, and its default under `$HOME`.
    pub config_dir: (&'static str, &'static str),
    /// How to log in.
    pub login: &'static str,
}

/// Every agent CLI `doctor` checks. Add one here to check a second harness.
pub(super) const AGENT_CLIS: &[AgentCli] = &[
    AgentCli {
        program: "claude",
        install: "npm install -g @anthropic-ai/claude-code",
        credential_vars: &[
            "ANTHROPIC_API_KEY",
            "ANTHROPIC_AUTH_TOKEN",
            "CLAUDE_CODE_OAUTH_TOKEN",
            "CLAUDE_CODE_USE_BEDROCK",
            "CLAUDE_CODE_USE_VERTEX",
        ],
        credential_files: &[".credentials.json"],
        config_dir: ("CLAUDE_CONFIG_DIR", ".claude"),
        login: "run `claude` once and log in, or set ANTHROPIC_API_KEY",
    },
    AgentCli {
        program: "codex",
        install: "npm install -g @openai/codex",
        credential_vars: &["OPENAI_API_KEY", "CODEX_API_KEY"],
        credential_files: &["auth.json"],
        config_dir: ("CODEX_HOME", ".codex"),
        login: "run `codex login`, or set OPENAI_API_KEY",
    },
];

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Level {
    /// Ready.
    Ok,
    /// Missing, but only some workflows need it.
    Warn,
    /// Runs will fail until it is fixed.
    Fail,
}

/// One check.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Check {
    /// What was checked, like `claude` or `git repository`.
    pub name: String,
    /// How it came out.
    pub status: Level,
    /// What was found.
    pub detail: String,
    /// How to fix it, when not ok.
    pub fix: Option<String>,
}

impl Check {
    fn ok(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            status: Level::Ok,
            detail: detail.into(),
            fix: None,
        }
    }

    fn bad(
        level: Level,
        name: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            status: level,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// Runs `reins doctor`.
pub(super) fn run(args: DoctorArgs) -> error::Result {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let checks = checks(&cwd);
    let failed = checks.iter().any(|c| c.status == Level::Fail);
    match args.format {
        ListFormat::Json => say!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "ok": !failed, "checks": checks }))
                .unwrap_or_default()
        ),
        ListFormat::Text => {
            let color = super::progress::colors_on_stdout();
            let width = checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
            for c in &checks {
                let mark = match c.status {
                    Level::Ok => paint(color, "32", "ok  "),
                    Level::Warn => paint(color, "33", "warn"),
                    Level::Fail => paint(color, "31", "FAIL"),
                };
                say!("{mark}  {:<width$}  {}", c.name, c.detail);
                if let Some(fix) = &c.fix {
                    say!("      {:<width$}  fix: {fix}", "");
                }
            }
            let count = |l| checks.iter().filter(|c| c.status == l).count();
            say!(
                "\n{} ok, {} warning{}, {} failed",
                count(Level::Ok),
                count(Level::Warn),
                if count(Level::Warn) == 1 { "" } else { "s" },
                count(Level::Fail)
            );
        }
    }
    if failed {
        Ok(Outcome::Failed)
    } else {
        Ok(Outcome::Success)
    }
}

fn paint(color: bool, code: &str, text: &str) -> String {
    if color {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

/// Every check, seen from `cwd`.
pub(super) fn checks(cwd: &Path) -> Vec<Check> {
    let mut per_cli: Vec<Vec<Check>> = AGENT_CLIS.iter().map(agent_checks).collect();
    // One agent CLI ready (found, credentials and all) is enough: what the others lack is only
    // a warning, for workflows that use them.
    let ready = |checks: &Vec<Check>| checks.iter().all(|c| c.status == Level::Ok);
    if per_cli.iter().any(ready) {
        for checks in per_cli.iter_mut().filter(|checks| !ready(checks)) {
            for c in checks.iter_mut().filter(|c| c.status == Level::Fail) {
                c.status = Level::Warn;
            }
        }
    }
    let mut out: Vec<Check> = per_cli.into_iter().flatten().collect();
    out.extend(git_checks(cwd));
    out.push(gh_check());
    out.push(store_check(cwd));
    out.push(user_folder_check());
    out
}

fn agent_checks(cli: &AgentCli) -> Vec<Check> {
    let Ok(path) = which::which(cli.program) else {
        return vec![Check::bad(
            Level::Fail,
            cli.program,
            "not found on PATH",
            format!("install it: {}", cli.install),
        )];
    };
    let shown = crate::workflow::discover::pretty_path(&path);
    let first = match probe(&path, &["--version"]) {
        Some((true, text)) => Check::ok(
            cli.program,
            format!("{} ({})", first_line(&text), shown.display()),
        ),
        Some((false, text)) => Check::bad(
            Level::Fail,
            cli.program,
            format!(
                "`{} --version` failed: {}",
                shown.display(),
                first_line(&text)
            ),
            format!("reinstall it: {}", cli.install),
        ),
        None => Check::bad(
            Level::Fail,
            cli.program,
            format!("`{} --version` did not answer", shown.display()),
            format!("reinstall it: {}", cli.install),
        ),
    };
    vec![first, credential_check(cli)]
}

fn credential_check(cli: &AgentCli) -> Check {
    let name = format!("{} credentials", cli.program);
    if let Some(var) = cli
        .credential_vars
        .iter()
        .find(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()))
    {
        return Check::ok(name, format!("${var} is set"));
    }
    let (dir_var, default) = cli.config_dir;
    let dir = std::env::var_os(dir_var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(|h| PathBuf::from(h).join(default))
        });
    if let Some(file) = dir.as_ref().and_then(|d| {
        cli.credential_files
            .iter()
            .map(|f| d.join(f))
            .find(|p| p.is_file())
    }) {
        return Check::ok(
            name,
            format!(
                "login in {}",
                crate::workflow::discover::pretty_path(&file).display()
            ),
        );
    }
    // On macOS the login may sit in the keychain, where it cannot be seen from here.
    let level = if cfg!(target_os = "macos") {
        Level::Warn
    } else {
        Level::Fail
    };
    Check::bad(
        level,
        name,
        format!(
            "none of {} is set and no login file was found",
            cli.credential_vars
                .iter()
                .map(|v| format!("${v}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        cli.login,
    )
}

fn git_checks(cwd: &Path) -> Vec<Check> {
    let Ok(git) = which::which("git") else {
        return vec![Check::bad(
            Level::Fail,
            "git",
            "not found on PATH",
            "install git (reins works in git repositories)",
        )];
    };
    let version = probe(&git, &["--version"])
        .map(|(_, t)| first_line(&t).to_string())
        .unwrap_or_else(|| "git".into());
    let mut out = vec![Check::ok("git", version)];
    let top = Command::new(&git)
        .args(["rev-parse", "--show-toplevel"])
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output();
    match top {
        Ok(o) if o.status.success() => {
            let root = String::from_utf8_lossy(&o.stdout).trim().to_string();
            let has_commit = Command::new(&git)
                .args(["rev-parse", "--verify", "--quiet", "HEAD"])
                .current_dir(cwd)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            let shown = shown_dir(Path::new(&root));
            out.push(if has_commit {
                Check::ok("git repository", shown.display().to_string())
            } else {
                Check::bad(
                    Level::Warn,
                    "git repository",
                    format!("{} has no commit yet", shown.display()),
                    "make a first commit: `--worktree` and `isolation: worktree` branch from it",
                )
            });
        }
        _ => out.push(Check::bad(
            Level::Warn,
            "git repository",
            "the current folder is not in a git repository",
            "run `git init` (runs work anywhere, but `--worktree` and the bundled workflows need a repository)",
        )),
    }
    out
}

fn gh_check() -> Check {
    let Ok(gh) = which::which("gh") else {
        return Check::bad(
            Level::Warn,
            "gh",
            "not found on PATH (only workflows that open pull requests need it)",
            "install the GitHub CLI: https://cli.github.com",
        );
    };
    match probe(&gh, &["auth", "status"]) {
        Some((true, _)) => Check::ok("gh", "logged in"),
        Some((false, text)) => Check::bad(
            Level::Warn,
            "gh",
            format!("not logged in: {}", first_line(&text)),
            "run `gh auth login`",
        ),
        None => Check::bad(
            Level::Warn,
            "gh",
            "`gh auth status` did not answer",
            "run `gh auth status` to see why",
        ),
    }
}

fn store_check(cwd: &Path) -> Check {
    let store = crate::store::Store::discover(cwd);
    let dir = store.dir().to_path_buf();
    let shown = crate::workflow::discover::pretty_path(&dir);
    // A file of a fresh name, created and removed again: what a run does first.
    let probe = std::fs::create_dir_all(&dir).and_then(|()| {
        let file = dir.join(format!(".doctor-{}", uuid::Uuid::new_v4().simple()));
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&file)
            .and_then(|_| std::fs::remove_file(&file))
    });
    match probe {
        Ok(_) => Check::ok(".reins/", format!("{} is writable", shown.display())),
        Err(e) => Check::bad(
            Level::Fail,
            ".reins/",
            format!("cannot write in {}: {e}", shown.display()),
            format!(
                "make {} writable, or run reins from a folder you own",
                shown.display()
            ),
        ),
    }
}

fn user_folder_check() -> Check {
    let search = crate::workflow::discover::SearchPath::from_env();
    let Some(dir) = search.user_dir.clone() else {
        return Check::bad(
            Level::Warn,
            "user folder",
            "neither $REINS_HOME, $XDG_CONFIG_HOME nor $HOME is set",
            "set $REINS_HOME to keep workflows and commands for every project",
        );
    };
    let shown = crate::workflow::discover::pretty_path(&dir);
    if dir.exists() && !dir.is_dir() {
        return Check::bad(
            Level::Fail,
            "user folder",
            format!("{} is not a folder", shown.display()),
            format!("remove or rename {}", shown.display()),
        );
    }
    let count = |sub: &str| {
        std::fs::read_dir(dir.join(sub))
            .map(|d| d.flatten().count())
            .unwrap_or(0)
    };
    if dir.is_dir() {
        Check::ok(
            "user folder",
            format!(
                "{} ({} workflow files, {} command files)",
                shown.display(),
                count("workflows"),
                count("commands")
            ),
        )
    } else {
        Check::ok(
            "user folder",
            format!(
                "{} (not created; put shared workflows in {}/workflows/)",
                shown.display(),
                shown.display()
            ),
        )
    }
}

/// Runs a program with arguments, at most [`PROBE_TIMEOUT`]; whether it succeeded and what it
/// printed (stdout, else stderr). `None` when it could not start or did not finish.
fn probe(program: &Path, args: &[&str]) -> Option<(bool, String)> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if start.elapsed() < PROBE_TIMEOUT => {
                std::thread::sleep(Duration::from_millis(20))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    };
    let out = child.wait_with_output().ok()?;
    let text = if out.stdout.iter().any(|b| !b.is_ascii_whitespace()) {
        out.stdout
    } else {
        out.stderr
    };
    Some((
        status.success(),
        String::from_utf8_lossy(&text).into_owned(),
    ))
}

/// A folder for people: relative or under `~` when shorter, never empty.
fn shown_dir(path: &Path) -> PathBuf {
    let shown = crate::workflow::discover::pretty_path(path);
    if shown.as_os_str().is_empty() {
        path.to_path_buf()
    } else {
        shown
    }
}

fn first_line(text: &str) -> &str {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
}
