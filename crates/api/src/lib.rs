//! The admin side of trunkstore (behaviour.md §8): the REST API over connectivity
//! documents (the original's paths and envelopes) plus a read-only view of the registrar's
//! bindings, live reload (API writes, SIGHUP, edits of the connectivity directory),
//! Prometheus metrics and a health check.
//!
//! It runs on its own small runtime and threads, apart from the packet path: a long
//! reload or a slow client never delays a SIP message. The proxy core only sees the
//! result, a new routing snapshot swapped into the shared [`Router`](trunkstore_routing::Router).

#![warn(missing_docs, unreachable_pub)]

mod auth;
mod http;
mod merge;
pub mod metrics;
mod registrations;
mod revision;
mod scan;
pub mod shared;
mod store;

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::watch;
use trunkstore_config::Settings;

use auth::Tokens;
use metrics::ApiMetrics;
pub use metrics::MetricsSource;
pub use registrations::{RegistrationSource, RegistrationView};
pub use revision::revision;
pub use shared::SharedDocuments;
use store::log_reload;
pub use store::Store;

/// How often the connectivity directory is looked at (a stat of every file: about a
/// millisecond for a thousand documents).
pub const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// What the API needs from the rest of the process.
pub struct ApiOptions {
    /// The documents the API serves and changes.
    pub store: Arc<Store>,
    /// The proxy settings: listen addresses of the API and the metrics page, API tokens.
    pub settings: Arc<Settings>,
    /// Extra lines for `/metrics` (the proxy core's counters).
    pub sources: Vec<Arc<dyn MetricsSource>>,
    /// `/health` answers 200 while this is true.
    pub healthy: Box<dyn Fn() -> bool + Send + Sync>,
    /// `None` disables the directory watcher (SIGHUP and API writes still reload).
    pub watch_interval: Option<Duration>,
    /// The registrar's bindings for `GET /v2/accounts/{account}/registrations`; `None`
    /// (no registrar wired in) answers every account with an empty list.
    pub registrations: Option<Arc<dyn RegistrationSource>>,
}

/// Why a reload is asked for.
enum Trigger {
    /// SIGHUP: every file is read again.
    Signal,
}

/// The running API: its runtime, servers and the reload thread.
pub struct Api {
    runtime: tokio::runtime::Runtime,
    addrs: Vec<SocketAddr>,
    shutdown: watch::Sender<bool>,
    reloader: Option<(mpsc::Sender<Trigger>, JoinHandle<()>)>,
}

impl Api {
    /// Binds `api.listen` (and `metrics.listen` when set) now, so a taken port fails the
    /// start, then serves in the background. Also installs the SIGHUP handler.
    pub fn start(options: ApiOptions) -> io::Result<Api> {
        let api_listener = bind(options.settings.api.listen)?;
        let metrics_listener = match options.settings.metrics.listen {
            Some(addr) => Some(bind(addr)?),
            None => None,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(4)
            .thread_name("ts-api")
            .enable_all()
            .build()?;
        let shared = Arc::new(http::Shared {
            store: options.store.clone(),
            tokens: Tokens::new(&options.settings.api.tokens),
            metrics: ApiMetrics::default(),
            sources: options.sources,
            healthy: options.healthy,
            registrations: options.registrations,
        });
        let (shutdown, stopped) = watch::channel(false);
        let mut addrs = vec![api_listener.local_addr()?];
        let _guard = runtime.enter();
        spawn_server(
            api_listener,
            http::api_router(shared.clone()),
            stopped.clone(),
        )?;
        if let Some(l) = metrics_listener {
            addrs.push(l.local_addr()?);
            spawn_server(l, http::metrics_router(shared), stopped.clone())?;
        }
        let (tx, rx) = mpsc::channel();
        spawn_sighup(tx.clone(), stopped)?;
        let store = options.store;
        let interval = options.watch_interval;
        let thread = std::thread::Builder::new()
            .name("ts-reload".into())
            .spawn(move || reload_loop(&store, &rx, interval))?;
        drop(_guard);
        Ok(Api {
            runtime,
            addrs,
            shutdown,
            reloader: Some((tx, thread)),
        })
    }

    /// The API address, then the metrics address when there is one (ports resolved).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Stops serving (requests in flight get a moment to finish) and the reloader.
    pub fn stop(mut self) {
        let _ = self.shutdown.send(true);
        if let Some((tx, thread)) = self.reloader.take() {
            drop(tx);
            let _ = thread.join();
        }
        self.runtime.shutdown_timeout(Duration::from_millis(500));
    }
}

fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let l =
        TcpListener::bind(addr).map_err(|e| io::Error::new(e.kind(), format!("{addr}: {e}")))?;
    l.set_nonblocking(true)?;
    Ok(l)
}

fn spawn_server(
    listener: TcpListener,
    router: axum::Router,
    mut stopped: watch::Receiver<bool>,
) -> io::Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    tokio::spawn(async move {
        let until_stopped = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        let served = axum::serve(listener, router).with_graceful_shutdown(until_stopped);
        if let Err(e) = served.await {
            tracing::error!(error = %e, "admin API server failed");
        }
    });
    Ok(())
}

/// SIGHUP asks for a full reload (and no longer terminates the process).
fn spawn_sighup(tx: mpsc::Sender<Trigger>, mut stopped: watch::Receiver<bool>) -> io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    if tx.send(Trigger::Signal).is_err() {
                        return;
                    }
                }
                _ = stopped.wait_for(|s| *s) => return,
            }
        }
    });
    Ok(())
}

/// The reload thread: SIGHUP reloads everything; otherwise, every `interval`, a cheap
/// scan finds edits made by hand or by git. Polling rather than inotify: it also sees
/// changes on network file systems and under bind mounts, needs no watch per account
/// directory (and no limit on them), and one stat per file per second costs nothing.
fn reload_loop(store: &Store, rx: &mpsc::Receiver<Trigger>, interval: Option<Duration>) {
    let wait = interval.unwrap_or(Duration::from_secs(3600));
    loop {
        match rx.recv_timeout(wait) {
            Ok(Trigger::Signal) => {
                // Signals sent while a reload ran are served by this one reload.
                while rx.try_recv().is_ok() {}
                tracing::info!("SIGHUP: reloading every connectivity document");
                log_reload("signal", &store.reload(true));
            }
            Err(RecvTimeoutError::Timeout) if interval.is_some() => {
                if let Some(outcome) = store.reload_if_changed() {
                    log_reload("directory change", &outcome);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}
