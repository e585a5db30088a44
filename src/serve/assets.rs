//! The page: plain HTML, CSS and JavaScript in `assets/web/`, embedded in the binary, with no
//! build step. The DAG is laid out by dagre (`@dagrejs/dagre` from the npm registry), whose
//! pinned minified build and licence are vendored in `assets/web/vendor/`: one file, so the
//! page needs neither a bundler nor anything from the internet.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::Shared;

const INDEX: &str = include_str!("../../assets/web/index.html");
const APP_JS: &str = include_str!("../../assets/web/app.js");
const APP_CSS: &str = include_str!("../../assets/web/app.css");
const DAGRE_JS: &str = include_str!("../../assets/web/vendor/dagre-3.1.3.min.js");
const DAGRE_LICENSE: &str = include_str!("../../assets/web/vendor/dagre-LICENSE.txt");

/// The routes of the page and its files.
pub(crate) fn router() -> Router<Shared> {
    Router::new()
        .route("/", get(index))
        .route("/runs/{*rest}", get(index))
        .route("/assets/app.js", get(|| file(APP_JS, "text/javascript")))
        .route("/assets/app.css", get(|| file(APP_CSS, "text/css")))
        .route(
            "/assets/vendor/dagre.min.js",
            get(|| file(DAGRE_JS, "text/javascript")),
        )
        .route(
            "/assets/vendor/dagre-LICENSE.txt",
            get(|| file(DAGRE_LICENSE, "text/plain; charset=utf-8")),
        )
}

async fn index() -> Response {
    file(INDEX, "text/html; charset=utf-8").await
}

async fn file(body: &'static str, kind: &'static str) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}
