//! `reins serve`: binds, announces itself in `.reins/serve.json`, serves until Ctrl-C.

use std::net::SocketAddr;

use super::args::ServeArgs;
use super::common::{current_store, say};
use super::error::{self, Error, Outcome};
use crate::serve::{self, guard, registry, Config};

/// Runs `reins serve`.
pub(super) fn run(args: ServeArgs) -> error::Result {
    let store = current_store()?;
    let token = match (&args.token, args.bind.is_loopback()) {
        (Some(t), _) if t.len() < 16 || !t.chars().all(|c| c.is_ascii_graphic()) => {
            return Err(Error::usage(
                "--token needs at least 16 printable characters, without spaces",
            ))
        }
        (Some(t), _) => Some(t.clone()),
        (None, true) => None,
        (None, false) => Some(guard::new_token()),
    };
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            return Err(Error::internal(format!(
                "cannot find the reins binary: {e}"
            )))
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return Err(Error::io("cannot start the async runtime", e)),
    };
    runtime.block_on(async move {
        let addr = SocketAddr::new(args.bind, args.port);
        let listener = match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => l,
            Err(e) => {
                return Err(Error::usage(format!(
                    "cannot listen on {addr}: {e} (choose another with --port)"
                )))
            }
        };
        let addr = listener.local_addr().unwrap_or(addr);
        let url = format!("http://{addr}");
        let _ = registry::register(store.dir(), &url);
        match &token {
            Some(t) => say!("reins serve: {url}/?token={t}"),
            None => say!("reins serve: {url}/"),
        }
        if args.read_only {
            say!(
                "read-only: gates cannot be answered and runs cannot be cancelled or resumed here"
            );
        }
        let store_dir = store.dir().to_path_buf();
        let config = Config {
            token,
            read_only: args.read_only,
            exe,
        };
        let served = serve::serve(store, config, listener, stop_signal()).await;
        registry::unregister(&store_dir);
        match served {
            Ok(()) => Ok(Outcome::Success),
            Err(e) => Err(Error::internal(format!("the server stopped: {e}"))),
        }
    })
}

/// Completes at Ctrl-C, TERM or HUP.
async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let kinds = [
        SignalKind::interrupt(),
        SignalKind::terminate(),
        SignalKind::hangup(),
    ];
    let [Ok(mut a), Ok(mut b), Ok(mut c)] = kinds.map(signal) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = a.recv() => {}
        _ = b.recv() => {}
        _ = c.recv() => {}
    }
}
