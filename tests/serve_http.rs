//! `reins serve` over HTTP: the API's shapes, answering through it, and its safety rules
//! (loopback host names, the token, cross-site requests, read-only, paths out of the run).

mod support;

use std::time::Duration;

use support::run_repo::Repo;
use support::serve::Server;

const GATED: &str = r#"
nodes:
  - id: build
    bash: printf '# Report\n\n**all good** <script>alert(1)</script>\n' > "$REINS_ARTIFACTS/report.md"; echo built
  - id: gate
    depends_on: [build]
    approval: "Ship **it**?"
  - id: deploy
    depends_on: [gate]
    bash: echo deployed
"#;

/// A repository with one run of `gated` waiting at its gate; the run id.
fn waiting_run(repo: &Repo) -> String {
    repo.reins(["run", "gated", "--no-input"]).run().code(3);
    repo.run_ids().last().unwrap().clone()
}

#[test]
fn lists_and_shows_runs_waiting_ones_first() {
    let repo = Repo::new()
        .workflow("gated", GATED)
        .workflow("ok", "nodes: [{id: a, bash: echo hi}]");
    let waiting = waiting_run(&repo);
    repo.reins(["run", "ok"]).run().code(0);
    let server = Server::start(&repo, &[]);

    let list = server.get("/api/runs");
    assert_eq!(list.status, 200, "{}", list.body);
    let list = list.json();
    assert_eq!(list["total"], 2);
    assert_eq!(list["counts"]["waiting"], 1);
    assert_eq!(list["counts"]["success"], 1);
    assert_eq!(list["workflows"], serde_json::json!(["gated", "ok"]));
    let first = &list["runs"][0];
    assert_eq!(
        first["id"],
        waiting.as_str(),
        "the waiting run comes first: {list:#}"
    );
    assert_eq!(first["waiting_gates"], serde_json::json!(["gate"]));
    for key in [
        "workflow",
        "status",
        "started_at",
        "duration_ms",
        "cost_usd",
        "branch",
        "nodes",
    ] {
        assert!(first.get(key).is_some(), "`{key}` missing: {first:#}");
    }
    let only = server.get("/api/runs?status=success").json();
    assert_eq!(only["runs"].as_array().unwrap().len(), 1);
    assert_eq!(only["runs"][0]["workflow"], "ok");

    let run = server.get(&format!("/api/runs/{waiting}")).json();
    assert_eq!(run["status"], "waiting");
    let ids: Vec<&str> = run["graph"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["build", "gate", "deploy"]);
    assert_eq!(run["graph"][2]["depends_on"], serde_json::json!(["gate"]));
    assert_eq!(run["gates"][0]["waiting"], true);
    assert_eq!(
        run["gates"][0]["message_html"],
        "<p>Ship <strong>it</strong>?</p>\n"
    );
    assert_eq!(run["actions"]["answer"], true);
    assert_eq!(run["actions"]["resume"], true);

    let node = server
        .get(&format!("/api/runs/{waiting}/nodes/build"))
        .json();
    assert_eq!(node["state"]["status"], "success");
    assert!(
        node["command"]
            .as_str()
            .unwrap()
            .contains("REINS_ARTIFACTS"),
        "{node:#}"
    );
    let log = server
        .get(&format!(
            "/api/runs/{waiting}/nodes/build/logs?file=stdout.log"
        ))
        .json();
    assert_eq!(log["chunk"]["text"], "built\n");

    let art = server.get(&format!("/api/runs/{waiting}/artifacts")).json();
    assert_eq!(art["files"][0]["path"], "report.md");
    let md = server
        .get(&format!("/api/runs/{waiting}/artifacts/report.md"))
        .json();
    assert_eq!(md["kind"], "markdown");
    let html = md["html"].as_str().unwrap();
    assert!(
        html.contains("<strong>all good</strong>") && !html.contains("<script>"),
        "{html}"
    );
    let raw = server.get(&format!(
        "/api/runs/{waiting}/artifacts/report.md?download=1"
    ));
    assert_eq!(raw.header("content-type"), Some("application/octet-stream"));
    assert!(raw
        .header("content-disposition")
        .unwrap()
        .starts_with("attachment"));

    // The page and its files are served from the binary, with a strict policy.
    let page = server.get(&format!("/runs/{waiting}"));
    assert_eq!(page.status, 200);
    assert!(page.body.contains("/assets/app.js"));
    assert!(page
        .header("content-security-policy")
        .unwrap()
        .contains("script-src 'self'"));
    assert_eq!(server.get("/assets/vendor/dagre.min.js").status, 200);
}

#[test]
fn a_runs_events_stream_from_the_log_and_resume_after_the_last_seen() {
    let repo = Repo::new().workflow("gated", GATED);
    let id = waiting_run(&repo);
    let server = Server::start(&repo, &[]);
    let all = server.get(&format!("/api/runs/{id}/events"));
    assert_eq!(all.header("content-type"), Some("text/event-stream"));
    assert!(
        all.body.contains("event: record\nid: 1\n") || all.body.contains("id: 1\n"),
        "{}",
        all.body
    );
    assert!(
        all.body.contains("\"type\":\"run_started\""),
        "{}",
        all.body
    );
    assert!(all.body.contains("event: status"), "{}", all.body);
    let later = server.request(
        "GET",
        &format!("/api/runs/{id}/events"),
        &[("Last-Event-ID", "3")],
        "",
    );
    assert!(!later.body.contains("\"seq\":3,"), "{}", later.body);
    assert!(later.body.contains("\"seq\":4,"), "{}", later.body);
}

#[test]
fn an_answer_in_the_browser_is_the_cli_answer_and_continues_the_run() {
    let repo = Repo::new().workflow("gated", GATED);
    let id = waiting_run(&repo);
    let server = Server::start(&repo, &[]);
    let missing_reason = server.post(&format!("/api/runs/{id}/gates/gate/reject"), "{}");
    assert_eq!(missing_reason.status, 400, "{}", missing_reason.body);
    let ok = server.post(
        &format!("/api/runs/{id}/gates/gate/approve"),
        r#"{"comment":"ship it"}"#,
    );
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.json()["continued"], true);
    repo.wait_for("the run to finish", Duration::from_secs(30), || {
        repo.status(&id)["status"] == "success"
    });
    assert_eq!(repo.node(&id, "gate")["output"], "ship it");
    // First answer wins, in the browser as in the terminal.
    let again = server.post(
        &format!("/api/runs/{id}/gates/gate/reject"),
        r#"{"reason":"no"}"#,
    );
    assert_eq!(again.status, 409, "{}", again.body);
    assert!(
        again.json()["error"]
            .as_str()
            .unwrap()
            .contains("already ended")
            || again.body.contains("already approved"),
        "{}",
        again.body
    );
    let shown = server.get(&format!("/api/runs/{id}")).json();
    assert_eq!(shown["gates"][0]["answer"]["approved"], true);
    assert_eq!(shown["gates"][0]["answer"]["comment"], "ship it");
    assert!(!shown["gates"][0]["answer"]["by"]
        .as_str()
        .unwrap()
        .is_empty());
}

#[test]
fn writes_need_the_page_itself() {
    let repo = Repo::new().workflow("gated", GATED);
    let id = waiting_run(&repo);
    let server = Server::start(&repo, &[]);
    let path = format!("/api/runs/{id}/gates/gate/approve");
    let plain = server.request("POST", &path, &[], "{}");
    assert_eq!(plain.status, 403, "no custom header: {}", plain.body);
    let cross = server.request(
        "POST",
        &path,
        &[("X-Reins-Request", "1"), ("Sec-Fetch-Site", "cross-site")],
        "{}",
    );
    assert_eq!(cross.status, 403, "{}", cross.body);
    let origin = server.request(
        "POST",
        &path,
        &[("X-Reins-Request", "1"), ("Origin", "http://evil.example")],
        "{}",
    );
    assert_eq!(origin.status, 403, "{}", origin.body);
    // DNS rebinding: another host name for the loopback address is refused, reads too.
    let rebound = server.request("GET", "/api/runs", &[("Host", "evil.example:7878")], "");
    assert_eq!(rebound.status, 403, "{}", rebound.body);
    assert_eq!(
        repo.status(&id)["status"],
        "waiting",
        "nothing was answered"
    );
    let same = server.request(
        "POST",
        &path,
        &[
            ("X-Reins-Request", "1"),
            ("Sec-Fetch-Site", "same-origin"),
            ("Origin", &server.url),
        ],
        "{}",
    );
    assert_eq!(same.status, 200, "{}", same.body);
}

#[test]
fn read_only_serves_no_action() {
    let repo = Repo::new().workflow("gated", GATED);
    let id = waiting_run(&repo);
    let server = Server::start(&repo, &["--read-only"]);
    assert_eq!(server.get("/api/info").json()["read_only"], true);
    let run = server.get(&format!("/api/runs/{id}")).json();
    for action in ["answer", "cancel", "resume", "resume_from"] {
        assert_eq!(run["actions"][action], false, "{action}");
    }
    for path in [
        "gates/gate/approve",
        "gates/gate/reject",
        "cancel",
        "resume",
    ] {
        let r = server.post(&format!("/api/runs/{id}/{path}"), r#"{"reason":"x"}"#);
        assert_eq!(r.status, 403, "{path}: {}", r.body);
    }
    assert_eq!(repo.status(&id)["status"], "waiting");
}

#[test]
fn a_token_is_required_when_given() {
    let repo = Repo::new().workflow("gated", GATED);
    let id = waiting_run(&repo);
    let token = "0123456789abcdef0123";
    let server = Server::start(&repo, &["--token", token]);
    assert_eq!(server.get("/api/runs").status, 401);
    assert_eq!(server.get("/").status, 401);
    let bearer = format!("Bearer {token}");
    assert_eq!(
        server
            .request("GET", "/api/runs", &[("Authorization", &bearer)], "")
            .status,
        200
    );
    let wrong = server.request(
        "GET",
        "/api/runs",
        &[("Authorization", "Bearer 0123456789abcdef0124")],
        "",
    );
    assert_eq!(wrong.status, 401);
    // The printed URL sets the cookie and drops the token from the address.
    let visit = server.get(&format!("/?token={token}"));
    assert_eq!(visit.status, 303, "{visit:?}");
    assert_eq!(visit.header("location"), Some("/"));
    let cookie = visit.header("set-cookie").unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let cookie = cookie.split(';').next().unwrap().to_string();
    let page = server.request(
        "GET",
        &format!("/api/runs/{id}"),
        &[("Cookie", &cookie)],
        "",
    );
    assert_eq!(page.status, 200);
    let post = server.request(
        "POST",
        &format!("/api/runs/{id}/cancel"),
        &[("Cookie", &cookie)],
        "",
    );
    assert_eq!(
        post.status, 403,
        "the token alone does not make a write: {}",
        post.body
    );
    let short = repo.reins(["serve", "--token", "short"]).run();
    assert_eq!(short.code, 2, "{}", short.stderr);
}

#[test]
fn no_path_leaves_the_run() {
    let repo = Repo::new().workflow("gated", GATED);
    let id = waiting_run(&repo);
    let dir = repo.run_dir(&id);
    std::fs::write(repo.path().join("secret.txt"), "secret").unwrap();
    std::os::unix::fs::symlink(
        repo.path().join("secret.txt"),
        dir.join("artifacts/link.txt"),
    )
    .unwrap();
    std::os::unix::fs::symlink(repo.path(), dir.join("artifacts/up")).unwrap();
    let server = Server::start(&repo, &[]);
    for path in [
        "../run.json",
        "%2e%2e/run.json",
        "..%2frun.json",
        "%2fetc%2fpasswd",
        "/etc/passwd",
        "link.txt",
        "up/secret.txt",
        "missing.md",
        "",
    ] {
        let r = server.get(&format!("/api/runs/{id}/artifacts/{path}"));
        assert!(matches!(r.status, 404), "{path}: {} {}", r.status, r.body);
        assert!(
            !r.body.contains("secret") || r.body.contains("no artifact"),
            "{path}: {}",
            r.body
        );
        assert!(!r.body.contains("\"workflow_text\""), "{path}: {}", r.body);
    }
    for file in [
        "../../run.json",
        "..%2F..%2Frun.json",
        "/etc/passwd",
        "command.sh/../../../run.json",
    ] {
        let r = server.get(&format!("/api/runs/{id}/nodes/build/logs?file={file}"));
        assert_eq!(r.status, 404, "{file}: {}", r.body);
    }
    for run in ["..", "%2e%2e", "nope", "20261201-000000-zzzz"] {
        let r = server.get(&format!("/api/runs/{run}"));
        assert_eq!(r.status, 404, "{run}: {}", r.body);
    }
    assert_eq!(
        server.get(&format!("/api/runs/{id}/nodes/..%2F..")).status,
        404
    );
    assert_eq!(
        server
            .get(&format!("/api/runs/{id}/artifacts/report.md"))
            .status,
        200
    );
}

#[test]
fn a_run_stopping_at_a_gate_prints_the_gate_url_while_a_server_runs() {
    let repo = Repo::new().workflow("gated", GATED);
    let mut server = Server::start(&repo, &[]);
    let registered: serde_json::Value =
        serde_json::from_str(&repo.read(".reins/serve.json")).unwrap();
    assert_eq!(registered["url"], server.url.as_str());
    assert_eq!(registered["pid"], server.pid());
    let out = repo.reins(["run", "gated", "--no-input"]).run();
    out.code(3);
    let id = repo.run_ids().last().unwrap().clone();
    let expected = format!("or in the browser: {}/runs/{id}?node=gate", server.url);
    assert!(out.stdout.contains(&expected), "{}", out.stdout);
    server.stop();
    assert!(!repo.exists(".reins/serve.json"), "removed on exit");
    let out = repo.reins(["run", "gated", "--no-input"]).run();
    assert!(!out.stdout.contains("in the browser"), "{}", out.stdout);
}

#[test]
fn an_agents_tool_calls_carry_the_times_reins_saw_them() {
    use support::{claude_env, require_claude, MockApi, Turn};
    let Some(claude) = require_claude() else {
        return;
    };
    let api = MockApi::start();
    api.rule(
        "MARK-TIMED",
        [
            Turn::tool(
                "Bash",
                serde_json::json!({"command": "sleep 1; echo slept"}),
            ),
            Turn::text("I slept."),
        ],
    );
    let repo = Repo::new().workflow(
        "timed",
        &format!(
            "agents:\n  claude: {{program: '{}'}}\nnodes:\n  - {{id: ask, allowed_tools: [Bash], prompt: 'MARK-TIMED sleep'}}\n",
            claude.display()
        ),
    );
    let home = repo.join(".claude-home");
    std::fs::create_dir_all(&home).unwrap();
    let mut run = repo
        .reins(["run", "timed"])
        .timeout(Duration::from_secs(120));
    for (k, v) in claude_env(&api, &home) {
        run = run.env(&k, &v);
    }
    run.run().code(0);
    let id = repo.the_run();
    let server = Server::start(&repo, &[]);
    let node = server.get(&format!("/api/runs/{id}/nodes/ask")).json();
    let entries = node["transcript"].as_array().unwrap();
    let tool = entries
        .iter()
        .find(|e| e["kind"] == "tool" && e["name"] == "Bash")
        .unwrap_or_else(|| panic!("no Bash call: {node:#}"));
    assert!(
        tool["result"].as_str().unwrap().contains("slept"),
        "{tool:#}"
    );
    // The result cannot come back before the command's second of sleep is over.
    let ms = tool["duration_ms"]
        .as_u64()
        .unwrap_or_else(|| panic!("{tool:#}"));
    assert!(ms >= 1000, "{tool:#}");
    // Every entry carries the time reins read it, within the node's run.
    let state = &node["state"];
    for entry in entries {
        let at = entry["at"].as_str().unwrap_or_else(|| panic!("{entry:#}"));
        assert!(
            state["started_at"].as_str().unwrap() <= at
                && at <= state["finished_at"].as_str().unwrap(),
            "{entry:#} outside {state:#}"
        );
    }
    assert!(repo
        .run_dir(&id)
        .join("nodes/ask/transcript.times")
        .is_file());
}

#[test]
fn a_workflow_node_links_to_its_child_run_and_the_child_to_its_parent() {
    let repo = Repo::new()
        .workflow("child", "nodes: [{id: a, bash: echo from-child}]")
        .workflow("parent", "nodes: [{id: sub, workflow: child}]");
    repo.reins(["run", "parent"]).run().code(0);
    let ids = repo.run_ids();
    assert_eq!(ids.len(), 2);
    let server = Server::start(&repo, &[]);
    let list = server.get("/api/runs").json();
    let runs = list["runs"].as_array().unwrap();
    let child = runs.iter().find(|r| r["workflow"] == "child").unwrap();
    let parent = runs.iter().find(|r| r["workflow"] == "parent").unwrap();
    assert_eq!(child["parent"]["run_id"], parent["id"]);
    assert_eq!(child["parent"]["node"], "sub");
    let (parent, child) = (
        parent["id"].as_str().unwrap(),
        child["id"].as_str().unwrap(),
    );
    let node = server.get(&format!("/api/runs/{parent}/nodes/sub")).json();
    assert_eq!(node["state"]["child_run"], child);
    assert_eq!(node["state"]["output"], "from-child");
    let run = server.get(&format!("/api/runs/{child}")).json();
    assert_eq!(run["run"]["parent"]["run_id"], parent);
    // The page renders the links (`data-testid` child-run / parent-run).
    let js = server.get("/assets/app.js");
    assert!(js.body.contains("child-run") && js.body.contains("parent-run"));
}

#[test]
fn a_fan_out_lists_its_instances_and_each_instance_has_its_own_node_view() {
    let repo = Repo::new().workflow(
        "fan",
        r#"nodes:
  - id: review
    for_each: [api, web, "c/l i"]
    key: "k{{item_index}}"
    continue_on_error: true
    bash: |
      echo "review {{item}}"
      test "{{item}}" != web
  - id: gate
    depends_on: [review]
    trigger: all_done
    for_each: [one]
    approval: "Ship {{item}}?"
"#,
    );
    repo.reins(["run", "fan", "--no-input"]).run().code(3);
    let run = repo.run_ids().last().unwrap().clone();
    let server = Server::start(&repo, &[]);

    let view = server.get(&format!("/api/runs/{run}")).json();
    let review = &view["graph"][0];
    assert_eq!(review["id"], "review");
    assert_eq!(review["for_each"], "a list of 3 items");
    let instances = review["instances"].as_array().unwrap();
    let summary: Vec<(&str, &str, &str, &str)> = instances
        .iter()
        .map(|i| {
            (
                i["id"].as_str().unwrap(),
                i["key"].as_str().unwrap(),
                i["item"].as_str().unwrap(),
                i["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("review[k0]", "k0", "api", "success"),
            ("review[k1]", "k1", "web", "failed"),
            ("review[k2]", "k2", "c/l i", "success"),
        ]
    );
    assert!(instances[0]["duration_ms"].is_u64(), "{review:#}");
    // Instances are not nodes of the graph: they are listed under their fan-out.
    assert_eq!(view["graph"].as_array().unwrap().len(), 2);

    // An instance's own view: its item, its fan-out, its command and logs (the id URL-encoded).
    let node = server.get(&format!("/api/runs/{run}/nodes/review%5Bk1%5D"));
    assert_eq!(node.status, 200, "{}", node.body);
    let node = node.json();
    assert_eq!(node["node"]["id"], "review[k1]");
    assert_eq!(node["node"]["instance_of"], "review");
    assert_eq!(node["item"]["value"], "web");
    assert_eq!(node["item"]["index"], 1);
    assert_eq!(node["state"]["status"], "failed");
    assert!(
        node["command"].as_str().unwrap().contains("review"),
        "{node:#}"
    );
    let logs = server
        .get(&format!("/api/runs/{run}/nodes/review%5Bk1%5D/logs"))
        .json();
    assert_eq!(logs["chunk"]["text"], "review web\n");
    // The fan-out's own view lists its instances too.
    let fan = server.get(&format!("/api/runs/{run}/nodes/review")).json();
    assert_eq!(fan["node"]["instances"].as_array().unwrap().len(), 3);
    // An instance that was never expanded, or a key that could name another folder, is 404.
    for missing in ["review%5Bk9%5D", "review%5B..%5D", "nope%5Bk0%5D"] {
        let r = server.get(&format!("/api/runs/{run}/nodes/{missing}"));
        assert_eq!(r.status, 404, "{missing}: {}", r.body);
    }
    // A gate instance is answered through the API like any gate.
    assert_eq!(view["gates"][0]["node"], "gate[0]");
    let answer = server.post(
        &format!("/api/runs/{run}/gates/gate%5B0%5D/approve"),
        r#"{"comment": "ok"}"#,
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
}
