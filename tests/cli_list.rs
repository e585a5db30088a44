//! `reins list`: project, user-global and bundled workflows, shadowing, invalid files.

mod support;

use serde_json::Value;
use support::repo::{Check, Repo};

const HELLO: &str = "description: Say hello\nnodes: [{id: hello, bash: echo hello}]\n";

/// The rows of the text listing below its header: name, source, path, and the rest.
fn rows(stdout: &str) -> Vec<[String; 4]> {
    let mut lines = stdout.lines();
    let header = lines.next().unwrap_or("");
    assert!(header.starts_with("NAME "), "{stdout}");
    lines
        .map(|line| {
            let mut rest = line;
            let mut cell = || {
                let t = rest.trim_start();
                let end = t.find(' ').unwrap_or(t.len());
                rest = &t[end..];
                t[..end].to_string()
            };
            let (name, source, path) = (cell(), cell(), cell());
            [name, source, path, rest.trim().to_string()]
        })
        .collect()
}

/// The rows that are not bundled workflows.
fn local_rows(stdout: &str) -> Vec<[String; 4]> {
    rows(stdout)
        .into_iter()
        .filter(|r| r[1] != "bundled")
        .collect()
}

fn row(name: &str, source: &str, path_end: &str, about: &str) -> impl Fn(&[String; 4]) -> bool {
    let (name, source, path_end, about) = (
        name.to_string(),
        source.to_string(),
        path_end.to_string(),
        about.to_string(),
    );
    move |r| r[0] == name && r[1] == source && r[2].ends_with(&path_end) && r[3] == about
}

/// Names of the bundled workflows, as `list --format json` reports them.
fn bundled() -> Vec<String> {
    let list = Repo::new().reins(&["list", "--format", "json"]).json();
    list.as_array()
        .unwrap()
        .iter()
        .filter(|w| w["source"] == "bundled")
        .map(|w| w["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn bundled_workflows_are_listed_valid_with_a_description() {
    let list = Repo::new().reins(&["list", "--format", "json"]).json();
    for w in list.as_array().unwrap() {
        assert_eq!(w["source"], "bundled", "{w}");
        assert_eq!(w["valid"], true, "{w}");
        assert!(
            w["description"].as_str().is_some_and(|d| !d.is_empty()),
            "{w}"
        );
        let path = w["path"].as_str().unwrap();
        assert!(path.starts_with("<bundled>/workflows/"), "{path}");
    }
}

#[test]
fn lists_name_source_path_and_description() {
    let repo = Repo::new()
        .file("repo/.workflows/hello.yaml", HELLO)
        .file(
            "repo/.workflows/deploy.yml",
            "nodes: [{id: d, bash: ./deploy}]\n",
        )
        .file(
            "home/workflows/tidy-up.yaml",
            "description: |\n  Tidy up\n  the tree\nnodes: [{id: t, bash: cargo fmt}]\n",
        )
        // Not workflows: other extensions, the schema file, command files.
        .file("repo/.workflows/reins.schema.json", "{}")
        .file("repo/.workflows/notes.md", "# notes\n")
        .file("repo/.workflows/commands/plan.yaml", "nodes: []\n");
    let out = repo.reins(&["list"]);
    out.success();
    let rows = local_rows(&out.stdout);
    assert_eq!(rows.len(), 3, "{}", out.stdout);
    assert!(
        row("deploy", "project", ".workflows/deploy.yml", "")(&rows[0]),
        "{rows:?}"
    );
    assert!(
        row("hello", "project", ".workflows/hello.yaml", "Say hello")(&rows[1]),
        "{rows:?}"
    );
    // The first line of a multi-line description.
    assert!(
        row("tidy-up", "user", "home/workflows/tidy-up.yaml", "Tidy up")(&rows[2]),
        "{rows:?}"
    );
    // Sorted by name, bundled ones included.
    let names: Vec<String> = self::rows(&out.stdout)
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
}

#[test]
fn a_project_workflow_shadows_a_user_one() {
    let repo = Repo::new()
        .file(
            "repo/.workflows/build.yaml",
            "description: Project build\nnodes: [{id: a, bash: make}]\n",
        )
        .file(
            "home/workflows/build.yaml",
            "description: User build\nnodes: [{id: a, bash: make}]\n",
        );
    let out = repo.reins(&["list"]);
    out.success().stdout_lacks("User build");
    let rows = local_rows(&out.stdout);
    assert_eq!(rows.len(), 1, "{}", out.stdout);
    let about = "Project build  (shadows user)";
    assert!(
        row("build", "project", ".workflows/build.yaml", about)(&rows[0]),
        "{rows:?}"
    );

    let list = repo.reins(&["list", "--format", "json"]).json();
    let build = list
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == "build")
        .unwrap();
    assert_eq!(build["source"], "project");
    assert_eq!(build["path"], ".workflows/build.yaml");
    assert_eq!(build["description"], "Project build");
    assert_eq!(build["valid"], true);
    assert_eq!(build["shadows"][0]["source"], "user");
    let hidden = build["shadows"][0]["path"].as_str().unwrap();
    assert!(hidden.ends_with("home/workflows/build.yaml"), "{hidden}");
}

#[test]
fn a_project_workflow_shadows_a_bundled_one() {
    let Some(name) = bundled().into_iter().next() else {
        eprintln!("no bundled workflows in this build; nothing to shadow");
        return;
    };
    let repo = Repo::new()
        .file(
            &format!("repo/.workflows/{name}.yaml"),
            "description: Mine\nnodes: [{id: a, bash: make}]\n",
        )
        .file(
            &format!("home/workflows/{name}.yml"),
            "description: User's\nnodes: [{id: a, bash: make}]\n",
        );
    let out = repo.reins(&["list"]);
    out.success();
    let rows = rows(&out.stdout);
    let mine: Vec<_> = rows.iter().filter(|r| r[0] == name).collect();
    assert_eq!(mine.len(), 1, "{}", out.stdout);
    let path = format!(".workflows/{name}.yaml");
    assert!(
        row(&name, "project", &path, "Mine  (shadows user, bundled)")(mine[0]),
        "{mine:?}"
    );
    let list = repo.reins(&["list", "--format", "json"]).json();
    let entry = list
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == name.as_str())
        .unwrap();
    let hidden: Vec<&Value> = entry["shadows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["source"])
        .collect();
    assert_eq!(hidden, ["user", "bundled"]);
    let bundled_path = entry["shadows"][1]["path"].as_str().unwrap();
    assert_eq!(bundled_path, format!("<bundled>/workflows/{name}.yaml"));
}

#[test]
fn a_yml_next_to_a_yaml_is_shadowed_and_shown() {
    let repo = Repo::new()
        .file("repo/.workflows/ci.yaml", "nodes: [{id: a, bash: make}]\n")
        .file("repo/.workflows/ci.yml", "nodes: [{id: a, bash: make}]\n");
    let out = repo.reins(&["list"]);
    out.success();
    let rows = local_rows(&out.stdout);
    let about = "(shadows .workflows/ci.yml)";
    assert!(
        row("ci", "project", ".workflows/ci.yaml", about)(&rows[0]),
        "{rows:?}"
    );
}

#[test]
fn an_invalid_file_is_listed_not_fatal() {
    let repo = Repo::new()
        .file(
            "repo/.workflows/broken.yaml",
            "description: Broken\nnodes: [{id: a, bsh: echo}]\n",
        )
        .file("repo/.workflows/syntax.yaml", "nodes: [\n")
        // Decodes, but `validate` finds an unknown dependency.
        .file(
            "repo/.workflows/unknown-dep.yaml",
            "nodes: [{id: a, bash: echo, depends_on: [b]}]\n",
        )
        .file("repo/.workflows/hello.yaml", HELLO);
    let out = repo.reins(&["list"]);
    out.success();
    let rows = local_rows(&out.stdout);
    let invalid = "(invalid: run reins validate .workflows/broken.yaml)";
    assert!(
        row("broken", "project", ".workflows/broken.yaml", invalid)(&rows[0]),
        "{rows:?}"
    );
    assert!(
        row("hello", "project", ".workflows/hello.yaml", "Say hello")(&rows[1]),
        "{rows:?}"
    );
    let invalid = "(invalid: run reins validate .workflows/syntax.yaml)";
    assert!(
        row("syntax", "project", ".workflows/syntax.yaml", invalid)(&rows[2]),
        "{rows:?}"
    );
    let invalid = "(invalid: run reins validate .workflows/unknown-dep.yaml)";
    let unknown_dep = row(
        "unknown-dep",
        "project",
        ".workflows/unknown-dep.yaml",
        invalid,
    );
    assert!(unknown_dep(&rows[3]), "{rows:?}");

    let list = repo.reins(&["list", "--format", "json"]).json();
    let local: Vec<&Value> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["source"] == "project")
        .collect();
    let valid: Vec<_> = local
        .iter()
        .map(|w| (w["name"].as_str().unwrap(), w["valid"].as_bool().unwrap()))
        .collect();
    assert_eq!(
        valid,
        [
            ("broken", false),
            ("hello", true),
            ("syntax", false),
            ("unknown-dep", false)
        ]
    );
    // What the decoder could read is still reported.
    assert_eq!(local[0]["description"], "Broken");
}

#[test]
fn finds_the_project_from_a_subfolder() {
    let repo = Repo::new()
        .file("repo/.workflows/hello.yaml", HELLO)
        .cwd("src/deep");
    let out = repo.reins(&["list"]);
    out.success();
    let rows = local_rows(&out.stdout);
    // The path is shown as it is from the current folder.
    assert!(
        row(
            "hello",
            "project",
            "/repo/.workflows/hello.yaml",
            "Say hello"
        )(&rows[0]),
        "{rows:?}"
    );
}

#[test]
fn user_folder_falls_back_to_xdg_then_home() {
    let repo = Repo::new()
        .file("xdg/reins/workflows/from-xdg.yaml", HELLO)
        .file("user/.config/reins/workflows/from-home.yaml", HELLO)
        .env("REINS_HOME", "");
    let out = repo.reins(&["list"]);
    out.success();
    let rows = local_rows(&out.stdout);
    // Under $HOME, the path is shown with `~`.
    let path = "~/.config/reins/workflows/from-home.yaml";
    assert!(
        row("from-home", "user", path, "Say hello")(&rows[0]),
        "{rows:?}"
    );
    assert_eq!(rows.len(), 1, "{rows:?}");

    let xdg = repo.tmp().join("xdg").display().to_string();
    let repo = repo.env("XDG_CONFIG_HOME", &xdg);
    let out = repo.reins(&["list"]);
    let rows = local_rows(&out.stdout);
    assert!(
        row(
            "from-xdg",
            "user",
            "xdg/reins/workflows/from-xdg.yaml",
            "Say hello"
        )(&rows[0]),
        "{rows:?}"
    );
    assert_eq!(rows.len(), 1, "{rows:?}");
}

#[test]
fn bad_format_is_a_usage_error() {
    let out = Repo::new().reins(&["list", "--format", "yaml"]);
    out.code_is(2);
    assert!(
        out.stderr.contains("invalid value 'yaml'"),
        "{}",
        out.stderr
    );
}
