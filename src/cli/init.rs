//! `reins init` and `reins new`: scaffold workflows without ever overwriting a file.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::args::{InitArgs, NewArgs, ShowArgs};
use super::common::{print, say};
use super::error::{self, Error, Outcome};

/// What `init` did with one file.
enum Written {
    Created,
    Skipped,
}

/// Runs `reins init`.
pub(super) fn init(args: InitArgs) -> error::Result {
    let root = match args.dir {
        Some(dir) => dir,
        None => project_root(),
    };
    if !root.is_dir() {
        return Err(Error::usage(format!("{} is not a folder", root.display())));
    }
    let test = detect_test_command(&root);
    let mut report = String::new();
    let steps: [(PathBuf, String); 3] = [
        (
            root.join(".workflows/starter.yaml"),
            starter_workflow(test.as_deref()),
        ),
        (
            root.join(".workflows/commands/plan.md"),
            PLAN_COMMAND.to_string(),
        ),
        (root.join(".workflows/reins.schema.json"), schema_json()),
    ];
    for (path, contents) in &steps {
        match write_new(path, contents) {
            Ok(outcome) => line(&mut report, &root, path, outcome),
            Err(err) => return Err(Error::io(format!("cannot write {}", path.display()), err)),
        }
    }
    match ignore_runs(&root) {
        Ok(true) => {
            let _ = writeln!(report, "updated  .gitignore (added .reins/)");
        }
        Ok(false) => {
            let _ = writeln!(report, "skipped  .gitignore (already ignores .reins/)");
        }
        Err(err) => return Err(Error::io("cannot update .gitignore", err)),
    }
    print(&report)?;
    match &test {
        Some(cmd) => say!("\ndetected test command: {cmd}"),
        None => say!(
            "\nno test command detected: edit `test_command` in .workflows/starter.yaml, or pass --input test_command='...'"
        ),
    }
    say!("next: reins validate && reins run starter --input task='describe the change'");
    Ok(Outcome::Success)
}

/// Runs `reins new NAME`.
pub(super) fn new(args: NewArgs) -> error::Result {
    let name = &args.name;
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(Error::usage(format!(
            "bad workflow name `{name}`: use letters, digits, `-` and `_`"
        )));
    }
    let path = project_root()
        .join(".workflows")
        .join(format!("{name}.yaml"));
    let contents = match &args.from {
        Some(from) => copied(from, name)?,
        None => starter_new(name),
    };
    match write_new(&path, &contents) {
        Ok(Written::Created) => {
            let shown = display(&project_root(), &path);
            match &args.from {
                Some(from) => {
                    say!("created  {shown} (a copy of `{from}`; it now runs as `{name}`)");
                    say!("next: edit it, then reins validate {shown} && reins run {name}");
                }
                None => {
                    say!("created  {shown}");
                    say!("next: reins validate {shown} && reins run {name} --input task='...'");
                }
            }
            Ok(Outcome::Success)
        }
        Ok(Written::Skipped) => Err(Error::usage(format!(
            "{} already exists; pick another name or edit it",
            path.display()
        ))),
        Err(err) => Err(Error::io(format!("cannot write {}", path.display()), err)),
    }
}

/// The text of workflow `from` (project, user, bundled, or a path), renamed to `name`.
fn copied(from: &str, name: &str) -> Result<String, Error> {
    let text = read_workflow(from)?;
    // The copy is known by its new name: its top-level `name:` says so.
    let mut renamed = false;
    let mut out: String = text
        .lines()
        .map(|line| {
            if !renamed && line.starts_with("name:") {
                renamed = true;
                format!("name: {name}")
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    out.push('\n');
    Ok(out)
}

/// Reads a workflow by name or path.
fn read_workflow(name_or_path: &str) -> Result<String, Error> {
    let found = crate::workflow::discover::resolve_workflow(name_or_path)
        .map_err(|e| Error::usage_with_help(e.to_string(), e.help().map(|h| h.to_string())))?;
    match found.read() {
        Ok(file) => Ok(file.text.to_string()),
        Err(e) => Err(Error::usage(format!(
            "cannot read {}: {e}",
            found.path.display()
        ))),
    }
}

/// Runs `reins show WORKFLOW`: the file as it is, bundled ones included.
pub(super) fn show(args: ShowArgs) -> error::Result {
    let mut text = read_workflow(&args.workflow)?;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    print(&text)?;
    Ok(Outcome::Success)
}

/// The text `reins new NAME` writes without `--from`.
fn starter_new(name: &str) -> String {
    format!(
        "# yaml-language-server: $schema=reins.schema.json\n\
name: {name}\n\
description: Describe what {name} does in one line\n\
inputs:\n\
\x20 task:\n\
\x20   description: What the workflow works on\n\
\x20   required: true\n\
nodes:\n\
\x20 - id: inspect\n\
\x20   bash: git status --short\n\
\x20 - id: work\n\
\x20   depends_on: [inspect]\n\
\x20   prompt: |\n\
\x20     {{{{inputs.task}}}}\n\
\x20     The working tree is:\n\
\x20     {{{{nodes.inspect.output}}}}\n\
\x20 - id: approve\n\
\x20   depends_on: [work]\n\
\x20   approval: \"Keep the changes made for: {{{{inputs.task}}}}?\"\n"
    )
}

fn line(report: &mut String, root: &Path, path: &Path, written: Written) {
    let verb = match written {
        Written::Created => "created ",
        Written::Skipped => "skipped ",
    };
    let why = match written {
        Written::Created => "",
        Written::Skipped => " (exists; left as is)",
    };
    let _ = writeln!(report, "{verb} {}{why}", display(root, path));
}

fn display(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Writes a file unless it exists (atomically: never clobbers a file created meanwhile).
fn write_new(path: &Path, contents: &str) -> std::io::Result<Written> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
    {
        Ok(mut file) => {
            std::io::Write::write_all(&mut file, contents.as_bytes())?;
            Ok(Written::Created)
        }
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(Written::Skipped),
        Err(err) => Err(err),
    }
}

/// Adds `.reins/` to `.gitignore`; false if it was already ignored.
fn ignore_runs(root: &Path) -> std::io::Result<bool> {
    let path = root.join(".gitignore");
    let existing = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(err) => return Err(err),
    };
    let ignored = existing.lines().map(str::trim).any(|l| {
        matches!(
            l,
            ".reins" | ".reins/" | "/.reins" | "/.reins/" | ".reins/*" | "/.reins/*"
        )
    });
    if ignored {
        return Ok(false);
    }
    let mut text = existing;
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str("# reins run history and artifacts\n.reins/\n");
    std::fs::write(&path, text)?;
    Ok(true)
}

/// The project root, searching up from the current directory.
fn project_root() -> PathBuf {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    crate::workflow::discover::project_root(&cwd)
}

/// The project's test command, from the files that name one.
pub(super) fn detect_test_command(root: &Path) -> Option<String> {
    let has = |name: &str| root.join(name).exists();
    let contains = |name: &str, needle: &str| {
        std::fs::read_to_string(root.join(name))
            .map(|t| t.contains(needle))
            .unwrap_or(false)
    };
    if has("Cargo.toml") {
        Some("cargo test".into())
    } else if has("package.json") && contains("package.json", "\"test\"") {
        Some("npm test".into())
    } else if has("pyproject.toml") || has("pytest.ini") || has("setup.py") || has("tox.ini") {
        Some("python3 -m pytest -q".into())
    } else if has("go.mod") {
        Some("go test ./...".into())
    } else if has("Makefile")
        && std::fs::read_to_string(root.join("Makefile"))
            .is_ok_and(|t| t.lines().any(|l| l.starts_with("test:")))
    {
        Some("make test".into())
    } else {
        None
    }
}

fn schema_json() -> String {
    let schema = crate::workflow::schema::workflow_schema();
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}

fn starter_workflow(test: Option<&str>) -> String {
    let test = test.unwrap_or("");
    let quoted = serde_json::to_string(test).unwrap_or_else(|_| "\"\"".into());
    STARTER.replace("@TEST_COMMAND@", &quoted)
}

const STARTER: &str = r#"# yaml-language-server: $schema=reins.schema.json
# Your first reins workflow. Check it with `reins validate`, run it with:
#   reins run starter --input task="add a --verbose flag"
# Every key is described in reins.schema.json (`reins schema`) and in reins' docs/workflow-language.md.
name: starter
description: Plan a change, approve the plan, implement it until the tests pass, review it
inputs:
  task:
    description: What to build or change
    required: true
  test_command:
    description: The command that proves the change works
    default: @TEST_COMMAND@
agents:
  builder:
    use: claude
    permission_mode: acceptEdits
    allowed_tools: [Bash]
  reviewer:
    use: claude
    allowed_tools: [Read, Grep, Glob, "Bash(git diff:*)"]
    disallowed_tools: [Write, Edit, NotebookEdit]
nodes:
  - id: tests-before
    bash: bash -c {{inputs.test_command}}
    continue_on_error: true
  - id: plan
    agent: builder
    command: plan
    args: { task: "{{inputs.task}}" }
    outputs: [plan.md]
  - id: approve-plan
    depends_on: [plan]
    approval: "Read {{artifacts}}/plan.md. Implement it?"
  - id: implement
    depends_on: [approve-plan, tests-before]
    agent: builder
    session: work
    loop:
      prompt: |
        Implement the next unchecked step of {{artifacts}}/plan.md, then tick it off.
        Before any change the tests were {{nodes.tests-before.status}}.
        Reply DONE when every step is done.
      until_bash: bash -c {{inputs.test_command}}
      max_iterations: 6
  - id: review
    depends_on: [implement]
    agent: reviewer
    prompt: Review `git diff` for bugs and missing tests. Reply with your findings, blocking ones first.
"#;

const PLAN_COMMAND: &str = r#"---
description: Write a short implementation plan for a task
args:
  - name: task
    description: What to build or change
    required: true
---
Plan this change to the repository; do not edit source files yet.

Task: {{args.task}}

Write `{{artifacts}}/plan.md` with a checklist of small steps (`- [ ] step`), each naming the
files it touches and the test that proves it. Reply with a three-line summary.
"#;
