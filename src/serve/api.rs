//! The JSON API under `/api/`, documented in `docs/web.md`. The page uses nothing else.

use std::time::SystemTime;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::guard::error;
use super::{actions, files, live, view, Shared};
use crate::agent::session::TIMES_FILE;
use crate::store::lock::live_owner;
use crate::store::{NodeStatus, RunStatus, RunSummary};

/// The API's routes.
pub(crate) fn router(app: Shared) -> axum::Router<Shared> {
    let _ = app;
    Router::new()
        .route("/api/info", get(info))
        .route("/api/runs", get(runs))
        .route("/api/events", get(runs_events))
        .route("/api/runs/{id}", get(run))
        .route("/api/runs/{id}/events", get(run_events))
        .route("/api/runs/{id}/nodes/{node}", get(node))
        .route("/api/runs/{id}/nodes/{node}/logs", get(node_log))
        .route("/api/runs/{id}/artifacts", get(artifacts))
        .route("/api/runs/{id}/artifacts/{*path}", get(artifact))
        .route("/api/runs/{id}/gates/{node}/approve", post(approve))
        .route("/api/runs/{id}/gates/{node}/reject", post(reject))
        .route("/api/runs/{id}/cancel", post(cancel))
        .route("/api/runs/{id}/resume", post(resume))
        .route("/api/{*rest}", get(not_found).post(not_found))
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such API path (see docs/web.md)")
}

/// The response refusing a request, boxed: a handler returns `Result<Response, Refused>` and
/// every check is one `?`.
pub(crate) struct Refused(Box<Response>);

impl From<Response> for Refused {
    fn from(response: Response) -> Self {
        Refused(Box::new(response))
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        *self.0
    }
}

/// What a handler answers.
type Reply = Result<Response, Refused>;

/// The run `id` of the store, or 404.
fn load_run(app: &Shared, id: &str) -> Result<RunSummary, Refused> {
    app.runs
        .one(id)
        .ok_or_else(|| error(StatusCode::NOT_FOUND, &format!("no run `{id}`")).into())
}

/// Runs `reins ARGS` as the CLI would be run; its outcome when it succeeded, else 409 with
/// its reason (500 when it could not start).
async fn cli(app: &Shared, args: &[String]) -> Result<actions::Outcome, Refused> {
    match actions::run_cli(app, args).await {
        Ok(out) if out.ok() => Ok(out),
        Ok(out) => Err(error(StatusCode::CONFLICT, out.stderr.trim()).into()),
        Err(e) => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("cannot run reins: {e}"),
        )
        .into()),
    }
}

async fn info(State(app): State<Shared>) -> Json<Value> {
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "root": app.store.root(),
        "read_only": app.config.read_only,
    }))
}

/// Gates of a run that wait for an answer.
fn waiting_gates(summary: &RunSummary) -> Vec<String> {
    summary
        .state
        .nodes
        .iter()
        .filter(|n| {
            n.status == NodeStatus::Waiting
                && n.approval.as_ref().is_some_and(|a| a.answer.is_none())
        })
        .map(|n| n.id.clone())
        .collect()
}

/// A run as an item of the run list: `reins runs --format json`'s item, plus the gates that
/// wait and whether a process executes it.
pub(crate) fn list_item(summary: &RunSummary, now: SystemTime) -> Value {
    let mut item = summary.to_json(now);
    item["waiting_gates"] = json!(waiting_gates(summary));
    item["live"] = json!(summary.status == RunStatus::Running);
    item
}

#[derive(Deserialize)]
struct RunsQuery {
    status: Option<String>,
    workflow: Option<String>,
}

async fn runs(State(app): State<Shared>, Query(q): Query<RunsQuery>) -> Response {
    let all = {
        let app = app.clone();
        tokio::task::spawn_blocking(move || app.runs.all())
            .await
            .unwrap_or_default()
    };
    let now = SystemTime::now();
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    let mut workflows = std::collections::BTreeSet::new();
    for r in &all {
        *counts.entry(r.status.as_str()).or_default() += 1;
        workflows.insert(r.workflow().to_string());
    }
    let mut shown: Vec<&RunSummary> = all
        .iter()
        .filter(|r| {
            q.status
                .as_deref()
                .is_none_or(|s| s.is_empty() || r.status.as_str() == s)
        })
        .filter(|r| {
            q.workflow
                .as_deref()
                .is_none_or(|w| w.is_empty() || r.workflow() == w)
        })
        .collect();
    // Runs waiting for a human first, then the newest.
    shown.sort_by_key(|r| {
        (
            waiting_gates(r).is_empty(),
            std::cmp::Reverse((r.started_at(), r.run.id.clone())),
        )
    });
    let items: Vec<Value> = shown.iter().map(|r| list_item(r, now)).collect();
    Json(json!({
        "runs": items,
        "counts": counts,
        "total": all.len(),
        "workflows": workflows,
    }))
    .into_response()
}

async fn runs_events(State(app): State<Shared>) -> Response {
    live::runs_stream(app).into_response()
}

async fn run(State(app): State<Shared>, Path(id): Path<String>) -> Reply {
    let summary = load_run(&app, &id)?;
    let now = SystemTime::now();
    let wf = summary.manifest.as_ref().and_then(view::frozen_workflow);
    let graph = wf.as_ref().map(view::graph).unwrap_or_default();
    let graph = view::with_instances(graph, &summary.state, now);
    let gates = view::gates(wf.as_ref(), &summary.state, &summary.run);
    let owner = live_owner(&summary.run.lock_path());
    let live = owner.is_some();
    let status = summary.status;
    let ended = !live
        && matches!(
            status,
            RunStatus::Failed | RunStatus::Cancelled | RunStatus::Interrupted | RunStatus::Waiting
        );
    let writable = !app.config.read_only;
    Ok(Json(json!({
        "run": list_item(&summary, now),
        "state": summary.state,
        "status": status,
        "graph": graph,
        "gates": gates,
        "inputs": summary.manifest.as_ref().map(|m| m.inputs.clone()).unwrap_or_default(),
        "owner_pid": owner.map(|o| o.pid),
        "owned_by_server": app.owned.contains(&id),
        "actions": {
            "cancel": writable && (live || matches!(status, RunStatus::Waiting | RunStatus::Interrupted)),
            "resume": writable && ended,
            "resume_from": writable && !live,
            "answer": writable,
        },
    }))
    .into_response())
}

async fn run_events(
    State(app): State<Shared>,
    Path(id): Path<String>,
    Query(q): Query<AfterQuery>,
    headers: HeaderMap,
) -> Reply {
    load_run(&app, &id)?;
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .or(q.after)
        .unwrap_or(0);
    Ok(live::run_events(app, id, after).into_response())
}

#[derive(Deserialize)]
struct AfterQuery {
    after: Option<u64>,
}

/// The run and one of its nodes (of its frozen workflow, or an instance `ID[KEY]` of one of
/// its fan-outs), or 404.
fn find_node(app: &Shared, id: &str, node: &str) -> Result<(RunSummary, view::GraphNode), Refused> {
    let summary = load_run(app, id)?;
    let wf = summary.manifest.as_ref().and_then(view::frozen_workflow);
    let graph = wf.as_ref().map(view::graph).unwrap_or_default();
    match view::find(graph, &summary.state, node) {
        Some(g) => Ok((summary, g)),
        None => Err(error(
            StatusCode::NOT_FOUND,
            &format!("run {id} has no node `{node}`"),
        )
        .into()),
    }
}

/// The most of a transcript or prompt one request reads.
const MAX_TEXT: u64 = 4 << 20;

fn read_text(base: &std::path::Path, rel: &str) -> Option<String> {
    let file = files::open_inside(base, rel).ok()?;
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(file, MAX_TEXT), &mut bytes).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

async fn node(State(app): State<Shared>, Path((id, node)): Path<(String, String)>) -> Reply {
    let (summary, mut graph) = find_node(&app, &id, &node)?;
    let now = SystemTime::now();
    if graph.for_each.is_some() {
        graph.instances = view::instances(&summary.state, &node, now);
    }
    let item = graph.instance_of.as_ref().and_then(|f| {
        let key = crate::engine::fanout::split_instance_id(&node)?.1;
        let items = summary.state.node(f)?.fan_out.as_ref()?;
        let index = items.iter().position(|i| i.key == key)?;
        Some(json!({ "key": key, "index": index, "value": items[index].value }))
    });
    let dir = summary.run.node_dir(&node);
    let listed = files::list_files(&dir, 500);
    let mut transcript = Vec::new();
    for f in listed
        .iter()
        .filter(|f| f.path.ends_with("transcript.jsonl"))
    {
        if let Some(text) = read_text(&dir, &f.path) {
            let times = f
                .path
                .strip_suffix("transcript.jsonl")
                .and_then(|prefix| read_text(&dir, &format!("{prefix}{}", TIMES_FILE)));
            transcript.extend(view::transcript(&text, times.as_deref()));
        }
    }
    let prompt = read_text(&dir, "prompt.md");
    let command = read_text(&dir, "command.sh");
    let wf = summary.manifest.as_ref().and_then(view::frozen_workflow);
    let gate = view::gates(wf.as_ref(), &summary.state, &summary.run)
        .into_iter()
        .find(|g| g.node == node);
    let state = view::node_or_pending(&summary.state, &node);
    Ok(Json(json!({
        "node": graph,
        "item": item,
        "state": state,
        "elapsed_ms": state.elapsed(now).map(|d| d.as_millis() as u64),
        "files": listed,
        "prompt": prompt,
        "command": command,
        "transcript": transcript,
        "gate": gate,
    }))
    .into_response())
}

#[derive(Deserialize)]
struct LogQuery {
    file: Option<String>,
    offset: Option<u64>,
}

async fn node_log(
    State(app): State<Shared>,
    Path((id, node)): Path<(String, String)>,
    Query(q): Query<LogQuery>,
) -> Reply {
    let (summary, _) = find_node(&app, &id, &node)?;
    let rel = q.file.unwrap_or_else(|| "stdout.log".into());
    let dir = summary.run.node_dir(&node);
    match files::open_inside(&dir, &rel).and_then(|f| files::read_chunk(f, q.offset.unwrap_or(0))) {
        Ok(chunk) => Ok(Json(json!({ "file": rel, "chunk": chunk })).into_response()),
        Err(_) => Err(error(
            StatusCode::NOT_FOUND,
            &format!("node `{node}` has no file `{rel}`"),
        )
        .into()),
    }
}

async fn artifacts(State(app): State<Shared>, Path(id): Path<String>) -> Reply {
    let summary = load_run(&app, &id)?;
    let listed = files::list_files(&summary.run.artifacts_dir(), 2000);
    Ok(Json(json!({ "files": listed })).into_response())
}

#[derive(Deserialize)]
struct ArtifactQuery {
    download: Option<String>,
}

async fn artifact(
    State(app): State<Shared>,
    Path((id, path)): Path<(String, String)>,
    Query(q): Query<ArtifactQuery>,
) -> Reply {
    let summary = load_run(&app, &id)?;
    let missing = || -> Refused {
        error(
            StatusCode::NOT_FOUND,
            &format!("run {id} has no artifact `{path}`"),
        )
        .into()
    };
    let file = files::open_inside(&summary.run.artifacts_dir(), &path).map_err(|_| missing())?;
    if q.download.is_some() {
        let name: String = path
            .rsplit('/')
            .next()
            .unwrap_or("artifact")
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
            .collect();
        let body = Body::from_stream(tokio_util_stream(file));
        return Ok((
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "application/octet-stream".to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{name}\""),
                ),
            ],
            body,
        )
            .into_response());
    }
    let chunk = files::read_chunk(file, 0).map_err(|_| missing())?;
    let binary = chunk.text.contains('\0') || chunk.text.contains('\u{FFFD}');
    let markdown = path.ends_with(".md") || path.ends_with(".markdown");
    let complete = chunk.next_offset >= chunk.size;
    Ok(Json(json!({
        "path": path,
        "size": chunk.size,
        "kind": if binary { "binary" } else if markdown { "markdown" } else { "text" },
        "truncated": !complete,
        "text": if binary { None } else { Some(&chunk.text) },
        "html": (markdown && !binary).then(|| view::markdown(&chunk.text)),
    }))
    .into_response())
}

/// A file as a stream of byte chunks, read off the async threads.
fn tokio_util_stream(
    file: std::fs::File,
) -> impl futures_util::Stream<Item = std::io::Result<Vec<u8>>> {
    futures_util::stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let read = tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; 64 * 1024];
            let n = std::io::Read::read(&mut file, &mut buf)?;
            buf.truncate(n);
            Ok::<_, std::io::Error>((buf, file))
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        match read {
            Ok((buf, _)) if buf.is_empty() => None,
            Ok((buf, file)) => Some((Ok(buf), Some(file))),
            Err(e) => Some((Err(e), None)),
        }
    })
}

#[derive(Deserialize, Default)]
struct AnswerBody {
    comment: Option<String>,
    reason: Option<String>,
}

async fn approve(
    State(app): State<Shared>,
    Path((id, node)): Path<(String, String)>,
    body: Option<Json<AnswerBody>>,
) -> Reply {
    let comment = body
        .and_then(|Json(b)| b.comment)
        .filter(|c| !c.trim().is_empty());
    answer(app, id, node, true, comment).await
}

async fn reject(
    State(app): State<Shared>,
    Path((id, node)): Path<(String, String)>,
    body: Option<Json<AnswerBody>>,
) -> Reply {
    let reason = body
        .and_then(|Json(b)| b.reason.or(b.comment))
        .filter(|c| !c.trim().is_empty());
    let Some(reason) = reason else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "a rejection needs a reason: send {\"reason\": \"...\"}",
        )
        .into());
    };
    answer(app, id, node, false, Some(reason)).await
}

/// Answers with `reins approve|reject`, then continues the run when nothing executes it.
async fn answer(
    app: Shared,
    id: String,
    node: String,
    approved: bool,
    comment: Option<String>,
) -> Reply {
    find_node(&app, &id, &node)?;
    let mut args = vec![if approved { "approve" } else { "reject" }.to_string()];
    if let Some(c) = &comment {
        args.push(format!("--message={c}"));
    }
    args.extend(["--".to_string(), id.clone(), node.clone()]);
    let out = cli(&app, &args).await?;
    continue_if_idle(&app, &id, out.stdout)
}

/// Starts `reins resume` for a run no process executes; says what happened.
fn continue_if_idle(app: &Shared, id: &str, message: String) -> Reply {
    let run = app.store.run(id);
    if run.is_live() || app.owned.contains(id) {
        return Ok(Json(json!({ "message": message, "continued": false })).into_response());
    }
    match actions::spawn_resume(app, id, None) {
        Ok(pid) => {
            Ok(Json(json!({ "message": message, "continued": true, "pid": pid })).into_response())
        }
        Err(e) => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("{message}; but the run cannot be continued: {e}"),
        )
        .into()),
    }
}

async fn cancel(State(app): State<Shared>, Path(id): Path<String>) -> Reply {
    load_run(&app, &id)?;
    let out = cli(&app, &["cancel".into(), "--".into(), id.clone()]).await?;
    Ok(Json(json!({ "message": out.stdout })).into_response())
}

#[derive(Deserialize, Default)]
struct ResumeBody {
    from: Option<String>,
}

async fn resume(
    State(app): State<Shared>,
    Path(id): Path<String>,
    body: Option<Json<ResumeBody>>,
) -> Reply {
    let from = body.and_then(|Json(b)| b.from).filter(|f| !f.is_empty());
    match &from {
        Some(from) => _ = find_node(&app, &id, from)?,
        None => _ = load_run(&app, &id)?,
    }
    if let Some(owner) = live_owner(&app.store.run(&id).lock_path()) {
        return Err(error(
            StatusCode::CONFLICT,
            &format!("run {id} is executing (pid {})", owner.pid),
        )
        .into());
    }
    match actions::spawn_resume(&app, &id, from.as_deref()) {
        Ok(pid) => Ok((
            StatusCode::ACCEPTED,
            Json(json!({ "message": format!("resuming run {id}"), "pid": pid })),
        )
            .into_response()),
        Err(e) => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("cannot resume run {id}: {e}"),
        )
        .into()),
    }
}
