//! This node's part in a cluster (issue 18), started by `serve` when the settings have a
//! `cluster` section: the Redis connection and the background tasks that share state.
//!
//! Nothing here is on the packet path: the core queues what the others must know and
//! applies what they said; these tasks carry it to and from Redis. Redis away at start
//! or later only delays the sharing (logged); the node goes on alone meanwhile.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use trunkstore_cluster::{Redis, SecurityStream, Shared};
use trunkstore_config::{Cluster, Settings};
use trunkstore_proxy::auth::SecurityEvent;
use trunkstore_proxy::Proxy;

/// How often this node's auth failures and bans are sent to the others.
const PUBLISH_EVERY: Duration = Duration::from_millis(50);

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
