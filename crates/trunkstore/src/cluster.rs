//! This node's part in a cluster (issue 18), started by `serve` when the settings have a
//! `cluster` section: the Redis connection and the background tasks that share state.
//!
//! Nothing here is on the packet path: the core queues what the others must know and
//! applies what they said; these tasks carry it to and from Redis. Redis away at start
//! or later only delays the sharing (logged); the node goes on alone meanwhile.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use trunkstore_cluster::{BindingsTable, Redis, SecurityStream, Shared};
use trunkstore_config::{Cluster, Settings};
use trunkstore_proxy::auth::SecurityEvent;
use trunkstore_proxy::Proxy;

/// How often this node's auth failures and bans are sent to the others.
const PUBLISH_EVERY: Duration = Duration::from_millis(50);
/// How often registrar bindings are exchanged: a PBX that registered on one node is
/// reachable through the others within about this.
const BINDINGS_EVERY: Duration = Duration::from_secs(1);
/// This node's bindings are written at least this often even when unchanged (a Redis
/// that restarted empty gets them back).
const BINDINGS_REWRITE: Duration = Duration::from_secs(10);

/// Starts the sharing tasks on `handle` (returns at once).
pub fn start(handle: &Handle, proxy: Arc<Proxy>, settings: &Settings) {
    let Some(cluster) = settings.cluster.clone() else {
        return;
    };
    let p = &settings.protection;
    let history = Duration::from_secs(u64::from(p.ban_time.max(p.ban_window)));
    handle.spawn(async move {
        let redis = connect(&cluster).await;
        tracing::info!(node = %cluster.node_id, "cluster: connected to Redis");
        tokio::spawn(share_bindings(
            BindingsTable::new(redis.clone(), &cluster.node_id),
            proxy.clone(),
        ));
        let stream = SecurityStream::new(redis, &cluster.node_id);
        tokio::spawn(publish_security(stream.clone(), proxy.clone()));
        let apply = move |e: Shared| proxy.apply_security_event(to_core(e), Instant::now());
        stream.follow(history, apply).await;
    });
}

/// Connects, retrying every second until one of the URLs answers.
async fn connect(cluster: &Cluster) -> Redis {
    let mut warned = false;
    loop {
        match Redis::connect(cluster).await {
            Ok(r) => return r,
            Err(e) if !warned => {
                tracing::warn!(error = %e, "cluster: Redis unreachable, this node runs alone until it answers");
                warned = true;
            }
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Sends the core's queued failures and bans; when Redis is away they are dropped (the
/// bans still hold on this node), logged once per outage.
async fn publish_security(stream: SecurityStream, proxy: Arc<Proxy>) {
    let mut failing = false;
    loop {
        tokio::time::sleep(PUBLISH_EVERY).await;
        let events: Vec<Shared> = proxy
            .drain_security_events()
            .into_iter()
            .map(from_core)
            .collect();
        match stream.publish(&events).await {
            Ok(()) => failing = false,
            Err(e) if !failing => {
                tracing::warn!(error = %e, dropped = events.len(), "cluster: cannot share auth failures and bans");
                failing = true;
            }
            Err(_) => {}
        }
    }
}

/// Writes this node's bindings when they changed (or every `BINDINGS_REWRITE`) and
/// installs the other nodes' in the core, every `BINDINGS_EVERY`.
async fn share_bindings(table: BindingsTable, proxy: Arc<Proxy>) {
    let mut written: Option<(u64, u64, Instant)> = None;
    let mut seen: Vec<String> = Vec::new();
    let mut failing = false;
    loop {
        tokio::time::sleep(BINDINGS_EVERY).await;
        let now = (
            proxy.registrations_generation(),
            proxy.registrations_refreshes(),
        );
        let due = match written {
            Some((g, r, at)) => (g, r) != now || at.elapsed() >= BINDINGS_REWRITE,
            None => true,
        };
        let result = async {
            if due {
                table
                    .publish(&crate::registrations::shared_text(&proxy))
                    .await?;
                written = Some((now.0, now.1, Instant::now()));
            }
            let theirs = table.others().await?;
            // Expiries are absolute in the text: the same text installed again would give
            // the same bindings, so it is parsed only when it changed.
            if theirs != seen {
                let bindings = theirs
                    .iter()
                    .flat_map(|text| crate::registrations::from_shared_text(text))
                    .collect();
                proxy.set_remote_registrations(bindings, Instant::now());
                seen = theirs;
            }
            Ok::<(), trunkstore_cluster::RedisError>(())
        }
        .await;
        match result {
            Ok(()) => failing = false,
            Err(e) if !failing => {
                tracing::warn!(error = %e, "cluster: cannot exchange registrar bindings (the other nodes' last known ones are kept)");
                failing = true;
            }
            Err(_) => {}
        }
    }
}

fn from_core(e: SecurityEvent) -> Shared {
    match e {
        SecurityEvent::AuthFailure(ip) => Shared::Failure(ip),
        SecurityEvent::Ban { source, remaining } => Shared::Ban { source, remaining },
    }
}

fn to_core(e: Shared) -> SecurityEvent {
    match e {
        Shared::Failure(ip) => SecurityEvent::AuthFailure(ip),
        Shared::Ban { source, remaining } => SecurityEvent::Ban { source, remaining },
    }
}
