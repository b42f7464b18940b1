//! `trunkstore serve`: the proxy in the foreground.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::time::{sleep, Instant};
use trunkstore_api::metrics::{labelled, single};
use trunkstore_api::{Api, ApiOptions, MetricsSource, SharedDocuments, Store, WATCH_INTERVAL};
use trunkstore_cluster::documents::Stored;
use trunkstore_cluster::{Documents, Redis, RedisError};
use trunkstore_config::{Catalog, Cluster, LogFormat, Settings};
use trunkstore_edge::cdr::{CdrSink, CdrWriter};
use trunkstore_edge::{Core, Edge, EdgeConfig, TransportErrors};
use trunkstore_proxy::auth::ProtectionStats;
use trunkstore_proxy::{Proxy, ProxyConfig};
use trunkstore_routing::{Router, Snapshot};

/// How often a graceful shutdown checks whether nothing is left in progress.
const DRAIN_POLL: Duration = Duration::from_millis(50);

/// First wait between two attempts to load the documents from Redis at start; doubled
/// after each failure up to [`START_RETRY_MAX`].
const START_RETRY_FIRST: Duration = Duration::from_millis(500);
const START_RETRY_MAX: Duration = Duration::from_secs(10);
/// A reload after a change (or after Redis came back) that cannot reach Redis is tried
/// this many times, this far apart.
const CATCH_UP_ATTEMPTS: usize = 10;
const CATCH_UP_RETRY: Duration = Duration::from_millis(500);

/// A node whose documents live in Redis (`cluster.store: "redis"`): the runtime that
/// drives its Redis connections (and the change stream's follower), the documents, and
/// the state loaded at start.
pub struct SharedStart {
    runtime: tokio::runtime::Runtime,
    documents: Documents,
    stored: Stored,
}

/// `serve` with `cluster.store: "redis"`: loads every document from Redis (retrying with
/// a backoff, logged, until Redis answers or SIGTERM/SIGINT: a node never routes with an
/// empty or partial catalog, and stays away from SIP until it has the real one), then
/// runs like [`run`] and follows the change stream.
pub fn run_shared(settings: Settings) -> ExitCode {
    init_logging(&settings);
    let Some(cluster) = settings.cluster.clone() else {
        return ExitCode::FAILURE;
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(4)
        .thread_name("ts-cluster")
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("trunkstore: cannot start the cluster runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let Some((documents, stored)) = runtime.block_on(load_at_start(&cluster)) else {
        tracing::info!("stopped before the documents could be loaded from Redis");
        return ExitCode::SUCCESS;
    };
    let catalog = match trunkstore_api::shared::catalog_from(settings, &stored) {
        Ok(c) => c,
        Err(failures) => {
            for f in &failures {
                for line in f.lines() {
                    tracing::error!(error = %line, "invalid document in Redis");
                }
            }
            eprintln!("trunkstore: the documents in Redis do not validate against these settings (see the log)");
            crate::report::print_failures(&failures);
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(
        documents = stored.documents.len(),
        revision = stored.revision,
        "documents loaded from Redis"
    );
    run(
        catalog,
        Some(SharedStart {
            runtime,
            documents,
            stored,
        }),
    )
}

/// Connects and loads every document, retrying until it works or a stop signal comes
/// (`None`).
async fn load_at_start(cluster: &Cluster) -> Option<(Documents, Stored)> {
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
        _ => return None,
    };
    let mut wait = START_RETRY_FIRST;
    loop {
        match connect_and_load(cluster).await {
            Ok(loaded) => return Some(loaded),
            Err(e) => tracing::error!(
                error = %e,
                retry_in_ms = wait.as_millis() as u64,
                "cluster.store is \"redis\" and the documents cannot be loaded from Redis: not serving until they are"
            ),
        }
        tokio::select! {
            _ = sleep(wait) => {}
            _ = term.recv() => return None,
            _ = int.recv() => return None,
        }
        wait = (wait * 2).min(START_RETRY_MAX);
    }
}

async fn connect_and_load(cluster: &Cluster) -> Result<(Documents, Stored), RedisError> {
    let documents = Documents::new(Redis::connect(cluster).await?);
    let stored = documents.load().await?;
    Ok((documents, stored))
}

/// Follows the change stream from where the loaded state ends: each batch of changes
/// reloads the documents unless Redis is at the live catalog's revision (this node's own
/// writes), on a blocking thread (the store waits on Redis). Revisions are not compared
/// by order: a Redis that lost its data counts from 0 again.
async fn follow_changes(store: Arc<Store>, documents: Documents, after: String) {
    documents
        .follow(after, |highest| {
            let store = store.clone();
            async move {
                let reason = if highest.is_some() {
                    "change stream"
                } else {
                    "Redis back"
                };
                // Redis may answer the stream before the shared connection is back: a
                // catch-up that fails is tried again (a few times; later changes retry).
                for _ in 0..CATCH_UP_ATTEMPTS {
                    let s = store.clone();
                    let done = tokio::task::spawn_blocking(move || s.follow_shared(reason)).await;
                    if done.unwrap_or(true) {
                        return;
                    }
                    sleep(CATCH_UP_RETRY).await;
                }
            }
        })
        .await;
}

/// Runs the proxy over a loaded, valid catalog until SIGTERM/SIGINT. The admin API
/// (documents, reload, metrics, health) runs beside it; SIGHUP reloads the documents and
/// the TLS listeners' certificates. With `shared`, the documents live in Redis: the API
/// writes there and the change stream is followed.
pub fn run(catalog: Catalog, shared: Option<SharedStart>) -> ExitCode {
    let settings = catalog.settings().clone();
    let snapshot = Snapshot::build(&catalog);
    let (dids, servers, routes) = (
        snapshot.did_count(),
        snapshot.server_count(),
        snapshot.route_count(),
    );
    let router = Arc::new(Router::new(snapshot));
    let proxy = Arc::new(Proxy::new(
        ProxyConfig::from_settings(&settings),
        router.clone(),
    ));
    let saved = crate::registrations::file(&settings.data_dir);
    crate::registrations::restore(&proxy, &saved);
    let edge_config = EdgeConfig::from_settings(&settings);
    let workers = edge_config.workers;
    let cdr = match start_cdr(&settings) {
        Ok(cdr) => cdr,
        Err(code) => return code,
    };
    // With CDRs the edge hands each finished call's record to the writer thread.
    let records = cdr.as_ref().map(|(sink, _)| sink.clone());
    let edge = match Edge::start_recording(edge_config, proxy.clone(), records) {
        Ok(edge) => edge,
        Err(e) => {
            tracing::error!(error = %e, "cannot start listeners");
            eprintln!("trunkstore: cannot start listeners: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Handlers are installed before the startup line, so a signal sent as soon as it is
    // seen is never lost (or fatal by default).
    let mut signals = match install_signals(&edge) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot install signal handlers");
            edge.stop();
            return ExitCode::FAILURE;
        }
    };
    spawn_tls_reload(&edge);
    // Several nodes (§9.2): trunk limits are the cluster's.
    let cluster = settings
        .cluster
        .clone()
        .map(|c| edge.start_cluster(proxy.clone(), c));
    let summary = catalog.summary();
    for w in catalog.warnings() {
        tracing::warn!("{w}");
    }
    let serving = Arc::new(AtomicBool::new(true));
    let store = Arc::new(match &shared {
        None => Store::new(catalog, router),
        Some(s) => {
            let documents = SharedDocuments::new(s.documents.clone(), s.runtime.handle().clone());
            Store::shared(catalog, router, documents, s.stored.revision)
        }
    });
    if let Some(s) = &shared {
        let after = s.stored.stream_id.clone();
        s.runtime
            .spawn(follow_changes(store.clone(), s.documents.clone(), after));
    }
    let watch = shared.is_none();
    let api = match start_api(
        &settings,
        store,
        &proxy,
        &serving,
        edge.transport_errors(),
        watch,
        cluster,
    ) {
        Ok(api) => api,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the admin API");
            eprintln!("trunkstore: cannot start the admin API: {e}");
            edge.stop();
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(
        api = ?api.local_addrs(),
        udp = ?edge.udp_addrs(),
        tcp = ?edge.tcp_addrs(),
        tls = ?edge.tls_addrs(),
        advertise = %settings.advertise,
        workers,
        accounts = summary.accounts,
        documents = summary.documents,
        dids,
        servers,
        routes,
        carriers = settings.carriers.len(),
        "trunkstore serving"
    );
    edge.handle()
        .spawn(keep_registrations(proxy.clone(), saved.clone()));
    crate::cluster::start(edge.handle(), proxy.clone(), &settings);
    let signal_name = edge.handle().block_on(signals.next());
    let grace = Duration::from_secs(settings.shutdown_grace.into());
    tracing::info!(
        signal = signal_name,
        grace_secs = grace.as_secs(),
        "shutting down: new requests refused, finishing those in progress"
    );
    proxy.begin_shutdown();
    serving.store(false, Ordering::Relaxed);
    let early = edge.handle().block_on(drain(&*proxy, grace, &mut signals));
    delete_media(&proxy);
    api.stop();
    edge.stop();
    if let Some(s) = shared {
        s.runtime.shutdown_timeout(Duration::from_millis(500));
    }
    // Nothing is written for a proxy that never had a binding.
    if proxy.registrations_generation() != 0 || saved.exists() {
        if let Err(e) = crate::registrations::save(&proxy, &saved) {
            tracing::warn!(path = %saved.display(), error = %e, "cannot save registrations");
        }
    }
    if let Some((sink, writer)) = cdr {
        drop(sink);
        if !writer.join_within(Duration::from_secs(2)) {
            tracing::warn!("CDR writer did not finish in time");
        }
    }
    // Every call is over by now: anything but zero here is a leak (behaviour.md §6).
    let trunks = proxy.trunks_in_use();
    let total: u32 = trunks.iter().map(|(_, n)| n).sum();
    tracing::info!(total, trunks = ?trunks, "trunks in use at shutdown");
    tracing::info!(reason = early, "trunkstore stopped");
    ExitCode::SUCCESS
}

/// Calls still up at the end of the grace period keep no ports at rtpengine: each gets
/// its `delete` (behaviour.md §4.7), sent once from an ephemeral socket (rtpengine does
/// not check where a command comes from; the replies are not waited for).
fn delete_media(proxy: &Proxy) {
    let deletes = proxy.media_deletes(std::time::Instant::now());
    if deletes.is_empty() {
        return;
    }
    let any = |v6: bool| -> std::net::SocketAddr {
        if v6 {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        }
    };
    let sent = std::net::UdpSocket::bind(any(false)).map(|v4| {
        let v6 = std::net::UdpSocket::bind(any(true)).ok();
        let sent = deletes.iter().filter(|t| {
            let socket = if t.to.addr.is_ipv6() {
                v6.as_ref()
            } else {
                Some(&v4)
            };
            socket.is_some_and(|s| s.send_to(&t.data, t.to.addr).is_ok())
        });
        sent.count()
    });
    match sent {
        Ok(n) => tracing::info!(calls = n, "media of calls still up deleted at rtpengine"),
        Err(e) => tracing::warn!(error = %e, "cannot delete the media of calls still up"),
    }
}

/// Writes the registrar's bindings whenever they changed (they survive a restart).
async fn keep_registrations(proxy: Arc<Proxy>, path: std::path::PathBuf) {
    let mut written = crate::registrations::Written::now(&proxy);
    loop {
        sleep(crate::registrations::SAVE_EVERY).await;
        let (p, file) = (proxy.clone(), path.clone());
        written = tokio::task::spawn_blocking(move || {
            crate::registrations::save_if_changed(&p, &file, written)
        })
        .await
        .unwrap_or(written);
    }
}

/// The admin API over the live store, with the proxy's counters on `/metrics` and
/// `/health` failing once shutdown has begun.
fn start_api(
    settings: &Arc<Settings>,
    store: Arc<Store>,
    proxy: &Arc<Proxy>,
    serving: &Arc<AtomicBool>,
    transport_errors: Arc<TransportErrors>,
    watch_files: bool,
    cluster: Option<Arc<trunkstore_edge::ClusterMetrics>>,
) -> std::io::Result<Api> {
    let serving = serving.clone();
    let source = ProxyMetrics(proxy.clone());
    let edge = move |out: &mut String| render_transport_errors(out, &transport_errors);
    let mut sources = vec![
        Arc::new(source) as Arc<dyn MetricsSource>,
        Arc::new(edge) as Arc<dyn MetricsSource>,
    ];
    if let Some(metrics) = cluster {
        let proxy = proxy.clone();
        let cluster = crate::cluster_metrics::ClusterSource { proxy, metrics };
        sources.push(Arc::new(cluster) as Arc<dyn MetricsSource>);
    }
    Api::start(ApiOptions {
        store,
        settings: settings.clone(),
        sources,
        healthy: Box::new(move || serving.load(Ordering::Relaxed)),
        // Documents in Redis are followed through the change stream instead.
        watch_interval: watch_files.then_some(WATCH_INTERVAL),
        registrations: Some(Arc::new(crate::registrations::Source(proxy.clone()))),
    })
}

/// The proxy core's figures on `/metrics`.
struct ProxyMetrics(Arc<Proxy>);

impl MetricsSource for ProxyMetrics {
    fn render(&self, out: &mut String) {
        let stats = self.0.stats();
        single(
            out,
            "trunkstore_server_transactions",
            "gauge",
            "Server transactions in progress.",
            stats.server_transactions,
        );
        single(
            out,
            "trunkstore_client_transactions",
            "gauge",
            "Client transactions in progress.",
            stats.client_transactions,
        );
        single(
            out,
            "trunkstore_active_calls",
            "gauge",
            "Calls in progress (ringing or answered) in the dialog table.",
            stats.calls,
        );
        single(
            out,
            "trunkstore_media_sessions",
            "gauge",
            "Calls anchored at rtpengine and not yet deleted.",
            stats.media_calls,
        );
        render_media_instances(out, &self.0.media_instances(std::time::Instant::now()));
        render_trunks(out, &self.0.trunks_in_use(), &self.0.trunk_limits());
        crate::registrations::render_metrics(&self.0, out);
        self.0.metrics().render(out);
        render_protection(out, &self.0.protection_stats(std::time::Instant::now()));
    }
}

/// `trunkstore_media_instance_up{address="ip:port"}`: 1 while an rtpengine instance takes
/// requests, 0 while it is skipped after a silence (behaviour.md §4.7).
fn render_media_instances(out: &mut String, instances: &[(std::net::SocketAddr, bool)]) {
    labelled(
        out,
        "trunkstore_media_instance_up",
        "gauge",
        "rtpengine instances: 1 up, 0 skipped after a silence.",
        "address",
        instances
            .iter()
            .map(|(address, up)| (address, u8::from(*up))),
    );
}

/// `trunkstore_transport_errors_total{kind}`: transport errors the edge saw and reported
/// to the core (behaviour.md §4.5, §7).
fn render_transport_errors(out: &mut String, errors: &TransportErrors) {
    labelled(
        out,
        "trunkstore_transport_errors_total",
        "counter",
        "Transport errors reported to the core (failing the transactions towards that peer), by kind.",
        "kind",
        errors.by_kind(),
    );
}

/// Gauges and drop counters of the protection layer (behaviour.md §8); its auth failures
/// and bans are counted by the core's metrics.
fn render_protection(out: &mut String, p: &ProtectionStats) {
    single(
        out,
        "trunkstore_bans_active",
        "gauge",
        "Sources banned now.",
        p.bans_active,
    );
    labelled(
        out,
        "trunkstore_protection_dropped_total",
        "counter",
        "Requests, datagrams and TCP connections dropped silently by the protection layer, by reason.",
        "reason",
        [
            ("banned", p.dropped_banned),
            ("scanner", p.dropped_scanner),
            ("rate_limited", p.dropped_rate_limited),
            ("banned_connection", p.dropped_banned_connections),
            ("tcp_per_source", p.dropped_source_connections),
        ],
    );
    single(
        out,
        "trunkstore_protection_tracked_sources",
        "gauge",
        "Sources tracked by the protection layer.",
        p.tracked_sources,
    );
}

/// `trunkstore_trunks_in_use{account="..."}` (behaviour.md §6). Account ids are path-safe
/// identifiers (no quote or backslash to escape).
fn render_trunks(out: &mut String, trunks: &[(String, u32)], limits: &[(String, u32)]) {
    labelled(
        out,
        "trunkstore_trunks_in_use",
        "gauge",
        "Two-way trunks (carrier calls) in use per account.",
        "account",
        trunks.iter().map(|(account, n)| (account, n)),
    );
    labelled(
        out,
        "trunkstore_trunks_limit",
        "gauge",
        "Trunk limit (account.trunks) of the accounts above that have one.",
        "account",
        limits.iter().map(|(account, n)| (account, n)),
    );
}

/// The CDR writer when the settings name a `cdr.file` (opened for appending now, so a
/// bad path stops the start instead of losing records later).
fn start_cdr(settings: &Settings) -> Result<Option<(CdrSink, CdrWriter)>, ExitCode> {
    let Some(path) = &settings.cdr.file else {
        return Ok(None);
    };
    match trunkstore_edge::cdr::start(path) {
        Ok(cdr) => Ok(Some(cdr)),
        Err(e) => {
            tracing::error!(error = %e, path = %path.display(), "cannot open the CDR file");
            eprintln!(
                "trunkstore: cannot open the CDR file {}: {e}",
                path.display()
            );
            Err(ExitCode::FAILURE)
        }
    }
}

/// SIGTERM and SIGINT.
struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// Installs the SIGHUP handler that reloads the TLS certificates (before the startup
/// line, like the others).
fn spawn_tls_reload(edge: &Edge) {
    let _runtime = edge.handle().enter();
    match signal(SignalKind::hangup()) {
        Ok(hup) => {
            edge.handle()
                .spawn(reload_tls_on_hup(hup, edge.tls_reloader()));
        }
        Err(e) => tracing::warn!(error = %e, "no SIGHUP reload of TLS certificates"),
    }
}

/// SIGHUP: the TLS listeners' certificate and key files are read again (the documents
/// are reloaded by the API's own SIGHUP handler). A pair that fails keeps the old one.
async fn reload_tls_on_hup(mut hup: Signal, reload: impl Fn() -> usize) {
    while hup.recv().await.is_some() {
        let failed = reload();
        if failed > 0 {
            tracing::warn!(failed, "some TLS listeners kept their old certificate");
        }
    }
}

fn install_signals(edge: &Edge) -> std::io::Result<Signals> {
    let _runtime = edge.handle().enter();
    Ok(Signals {
        term: signal(SignalKind::terminate())?,
        int: signal(SignalKind::interrupt())?,
    })
}

/// Waits until nothing is in progress, the grace period is over, or a second signal
/// asks to stop at once. Returns why it stopped waiting.
async fn drain<C: Core>(core: &C, grace: Duration, signals: &mut Signals) -> &'static str {
    let end = Instant::now() + grace;
    let idle = async {
        while !core.is_idle() && Instant::now() < end {
            sleep(DRAIN_POLL).await;
        }
        if core.is_idle() {
            "nothing in progress"
        } else {
            "grace period over"
        }
    };
    tokio::select! {
        why = idle => why,
        _ = signals.next() => "second signal",
    }
}

/// `log.level` (a `tracing` filter; `RUST_LOG` overrides it) and `log.format` (text or
/// JSON lines), on standard error.
pub fn init_logging(settings: &Settings) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match settings.log.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    if let Err(e) = installed {
        eprintln!("trunkstore: logging not initialised: {e}");
    }
}
