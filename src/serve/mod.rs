//! `reins serve`: the runs of a working tree in the browser, gates answered there.
//!
//! A thin HTTP layer over the same store and commands as the CLI:
//!
//! * [`api`]: the JSON API under `/api/` (runs, run, node, logs, artifacts, and the actions);
//! * [`live`]: server-sent events from the event logs, and the cache of run summaries;
//! * [`actions`]: answering, cancelling and resuming by running the CLI's own commands
//!   (`reins approve`, `reins cancel`, `reins resume`), so the browser can never disagree
//!   with the terminal; a run the server continues is its child, in a process group of its own;
//! * [`guard`]: who may ask: loopback host names or a token, no cross-site writes, read-only;
//! * [`files`]: opening files inside a run folder only (no `..`, no absolute paths, no
//!   symlinks);
//! * [`view`]: what the page shows that the store does not keep as such (the DAG, gates,
//!   transcripts, Markdown);
//! * [`registry`]: `.reins/serve.json`, so a run stopping at a gate can print the gate's URL;
//! * [`assets`]: the page, embedded in the binary.

pub(crate) mod actions;
pub(crate) mod api;
pub(crate) mod assets;
pub(crate) mod files;
pub(crate) mod guard;
pub(crate) mod live;
pub(crate) mod registry;
pub(crate) mod view;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use crate::store::Store;

/// How the server runs.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// The token every request must carry; `None` only on a loopback address.
    pub token: Option<String>,
    /// Serve no action: no answer, cancel or resume.
    pub read_only: bool,
    /// The `reins` binary the actions run.
    pub exe: PathBuf,
}

/// What every request handler shares.
pub(crate) struct App {
    /// The working tree's store.
    pub store: Store,
    /// The configuration.
    pub config: Config,
    /// Run summaries, refreshed from the event logs.
    pub runs: live::Runs,
    /// The runs whose process the server started.
    pub owned: actions::Owned,
    /// Turns true when the server shuts down: live streams end.
    pub closing: tokio::sync::watch::Receiver<bool>,
}

/// Shared state of the handlers.
pub(crate) type Shared = Arc<App>;

/// Serves the API and the page on `listener` until `shutdown` completes.
pub(crate) async fn serve(
    store: Store,
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (close, closing) = tokio::sync::watch::channel(false);
    let app = Arc::new(App {
        runs: live::Runs::new(store.clone()),
        store,
        config,
        owned: actions::Owned::default(),
        closing,
    });
    tokio::spawn(live::watch(app.clone()));
    let router = api::router(app.clone())
        .merge(assets::router())
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            guard::check,
        ))
        .with_state(app);
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = close.send(true);
        })
        .await
}
