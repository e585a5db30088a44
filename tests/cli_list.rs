//! `reins list`: project, user-global and bundled workflows, shadowing, invalid files.

mod support;

use support::Repo;

const HELLO: &str = "description: Say hello\nnodes: [{id: hello, bash: echo hello}]\n";

#[test]
fn empty_project_says_where_it_looked() {
    let out = Repo::new().reins(&["list"]);
    out.success()
        .stdout_has("no workflows found (searched .workflows/, ")
        .stdout_has("home/workflows/ and the bundled workflows)")
        .stdout_has("help: add one as `.workflows/NAME.yaml`");
    let out = Repo::new().reins(&["list", "--format", "json"]);
    out.success();
    assert_eq!(out.json(), serde_json::json!([]));
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
            "home/workflows/tidy.yaml",
            "description: |\n  Tidy up\n  the tree\nnodes: [{id: t, bash: cargo fmt}]\n",
        )
        // Not workflows: other extensions, the schema file, command files.
        .file("repo/.workflows/reins.schema.json", "{}")
        .file("repo/.workflows/notes.md", "# notes\n")
        .file("repo/.workflows/commands/plan.yaml", "nodes: []\n");
    let out = repo.reins(&["list"]);
    out.success();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{}", out.stdout);
    assert!(
        lines[0].starts_with("NAME    SOURCE   PATH"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].starts_with("deploy  project  .workflows/deploy.yml"),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].starts_with("hello   project  .workflows/hello.yaml"),
        "{}",
        lines[2]
    );
    assert!(lines[2].ends_with("  Say hello"), "{}", lines[2]);
    assert!(lines[3].starts_with("tidy    user     "), "{}", lines[3]);
    // The first line of a multi-line description.
    assert!(
        lines[3].ends_with("home/workflows/tidy.yaml  Tidy up"),
        "{}",
        lines[3]
    );
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
    repo.reins(&["list"])
        .success()
        .stdout_has("Project build  (shadows user)")
        .stdout_lacks("User build");
    let list = repo.reins(&["list", "--format", "json"]).json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    let build = &list[0];
    assert_eq!(build["name"], "build");
    assert_eq!(build["source"], "project");
    assert_eq!(build["path"], ".workflows/build.yaml");
    assert_eq!(build["description"], "Project build");
    assert_eq!(build["valid"], true);
    assert_eq!(build["shadows"][0]["source"], "user");
    let hidden = build["shadows"][0]["path"].as_str().unwrap();
    assert!(hidden.ends_with("home/workflows/build.yaml"), "{hidden}");
}

#[test]
fn a_yml_next_to_a_yaml_is_shadowed_and_shown() {
    let repo = Repo::new()
        .file("repo/.workflows/ci.yaml", "nodes: [{id: a, bash: make}]\n")
        .file("repo/.workflows/ci.yml", "nodes: [{id: a, bash: make}]\n");
    repo.reins(&["list"])
        .success()
        .stdout_has("ci    project  .workflows/ci.yaml  (shadows .workflows/ci.yml)");
}

#[test]
fn an_invalid_file_is_listed_not_fatal() {
    let repo = Repo::new()
        .file(
            "repo/.workflows/broken.yaml",
            "description: Broken\nnodes: [{id: a, bsh: echo}]\n",
        )
        .file("repo/.workflows/syntax.yaml", "nodes: [\n")
        .file("repo/.workflows/hello.yaml", HELLO);
    repo.reins(&["list"])
        .success()
        .stdout_has("broken  project  .workflows/broken.yaml  (invalid: run reins validate .workflows/broken.yaml)")
        .stdout_has("(invalid: run reins validate .workflows/syntax.yaml)")
        .stdout_has("Say hello");
    let list = repo.reins(&["list", "--format", "json"]).json();
    let valid: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|w| (w["name"].as_str().unwrap(), w["valid"].as_bool().unwrap()))
        .collect();
    assert_eq!(
        valid,
        [("broken", false), ("hello", true), ("syntax", false)]
    );
    // What the decoder could read is still reported.
    assert_eq!(list[0]["description"], "Broken");
}

#[test]
fn finds_the_project_from_a_subfolder() {
    let repo = Repo::new()
        .file("repo/.workflows/hello.yaml", HELLO)
        .cwd("src/deep");
    repo.reins(&["list"])
        .success()
        .stdout_has("hello  project")
        // The path is shown as it is from the current folder.
        .stdout_has("/repo/.workflows/hello.yaml");
}

#[test]
fn user_folder_falls_back_to_xdg_then_home() {
    let repo = Repo::new()
        .file("xdg/reins/workflows/from-xdg.yaml", HELLO)
        .file("user/.config/reins/workflows/from-home.yaml", HELLO)
        .env("REINS_HOME", "");
    repo.reins(&["list"])
        .success()
        .stdout_has("from-home  user")
        .stdout_lacks("from-xdg");
    let xdg = repo.tmp().join("xdg").display().to_string();
    let repo = repo.env("XDG_CONFIG_HOME", &xdg);
    repo.reins(&["list"])
        .success()
        .stdout_has("from-xdg  user")
        .stdout_lacks("from-home");
}

#[test]
fn bad_format_is_a_usage_error() {
    let out = Repo::new().reins(&["list", "--format", "yaml"]);
    out.code(2);
    assert!(
        out.stderr.contains("invalid value 'yaml'"),
        "{}",
        out.stderr
    );
}
