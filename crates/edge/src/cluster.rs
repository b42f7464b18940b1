//! The cluster's trunk work of this node (behaviour.md §9.2): one task owns it, so takes
//! and releases reach Redis in the order the core asked them.
//!
//! The core queues [`TrunkOp`]s and wakes this task; a take is answered through the
//! same event path DNS uses (`TcpEvent::TrunkVerdict`, any shard resumes the call). Every
//! lease/3 the holds this task took are renewed in one script. Redis errors never panic
//! and never block the packet path: a take that fails or times out (`cluster.timeout_ms`)
//! is `Unavailable` (fail-open), and after a failure the task stops asking Redis (takes
//! are `Unavailable` at once, releases are left to reconciliation) until the next
//! renewal tick finds it back and reconciles this node's live holds.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Notify};
use trunkstore_cluster::{Redis, RoundTrips, TrunkStore};
use trunkstore_config::Cluster;
use trunkstore_proxy::{TrunkOp, TrunkTake, Verdict};

use crate::core::Core;
use crate::tcp::TcpEvent;

/// Operations handled per wake-up before the task yields (it wakes itself for more).
const BATCH: usize = 1_024;

/// How often, at most, "Redis unavailable" is logged at warn.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The cluster's counters of this node, for `/metrics`.
#[derive(Debug, Default)]
pub struct ClusterMetrics {
    redis: Mutex<Option<Arc<RoundTrips>>>,
    renewals: AtomicU64,
    up: AtomicBool,
}

impl ClusterMetrics {
    /// Round trips to Redis over the node's connection (none before the first one).
    pub fn round_trips(&self) -> Option<Arc<RoundTrips>> {
        self.redis.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Lease renewals that Redis answered.
    pub fn renewals(&self) -> u64 {
        self.renewals.load(Ordering::Relaxed)
    }

    /// Is Redis answering (as of the last operation)?
    pub fn up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }
}

/// Starts the task on `runtime`; the core wakes it whenever it queues an operation.
pub(crate) fn start<C: Core>(
    runtime: &tokio::runtime::Handle,
    core: Arc<C>,
    settings: Cluster,
    events: mpsc::Sender<TcpEvent>,
) -> Arc<ClusterMetrics> {
    let metrics = Arc::new(ClusterMetrics::default());
    let wake = Arc::new(Notify::new());
    let w = wake.clone();
    core.set_trunk_waker(Box::new(move || w.notify_one()));
    let task = Task {
        core,
        events,
        metrics: metrics.clone(),
        wake,
        held: HashMap::new(),
        up: false,
        warned: None,
        lease: Duration::from_secs(settings.lease_secs.max(1).into()),
        settings,
    };
    runtime.spawn(task.run());
    metrics
}

struct Task<C: Core> {
    core: Arc<C>,
    events: mpsc::Sender<TcpEvent>,
    metrics: Arc<ClusterMetrics>,
    wake: Arc<Notify>,
    /// The holds this node has in Redis (granted, or let through while Redis was away):
    /// what renewal and reconciliation keep there. Kept here, in the order Redis saw
    /// the operations, so a take not yet sent is never renewed or re-added.
    held: HashMap<u64, Arc<str>>,
    up: bool,
    warned: Option<Instant>,
    lease: Duration,
    settings: Cluster,
}

impl<C: Core> Task<C> {
    async fn run(mut self) {
        let mut store = None;
        let mut tick = tokio::time::interval(self.lease / 3);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.wake.notified() => self.ops(store.as_ref()).await,
                _ = tick.tick() => {
                    // Every queued take is sent before the holds are renewed.
                    self.ops(store.as_ref()).await;
                    if store.is_none() {
                        store = self.connect().await;
                    }
                    // A connection that lost Redis reconnects by itself (`Redis` heals
                    // after a failed round trip): the next tick's renewal finds it back.
                    if let Some(s) = &store {
                        self.renew(s).await;
                    }
                }
            }
        }
    }

    /// The first connection (the connection reconnects by itself after that).
    async fn connect(&mut self) -> Option<TrunkStore> {
        match Redis::connect(&self.settings).await {
            Ok(redis) => {
                *self.metrics.redis.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(redis.stats().clone());
                Some(TrunkStore::new(redis, &self.settings.node_id, self.lease))
            }
            Err(e) => {
                self.down(&e);
                None
            }
        }
    }

    /// Carries out what the core queued, in order.
    async fn ops(&mut self, store: Option<&TrunkStore>) {
        for _ in 0..BATCH {
            let Some(op) = self.core.poll_trunk_op() else {
                return;
            };
            match op {
                TrunkOp::Take(t) => self.take(store, t).await,
                TrunkOp::Release(r) => {
                    self.held.remove(&r.hold.0);
                    // While Redis is away the next reconciliation drops it.
                    if let Some(s) = store.filter(|_| self.up) {
                        if let Err(e) = s.release(&r.account, r.hold.0).await {
                            self.down(&e);
                        }
                    }
                }
            }
        }
        // More queued: come back after the packet path's other tasks had a turn.
        self.wake.notify_one();
    }

    async fn take(&mut self, store: Option<&TrunkStore>, t: TrunkTake) {
        let verdict = match store.filter(|_| self.up) {
            None => Verdict::Unavailable,
            Some(s) => match s.take(&t.account, t.hold.0, t.limit).await {
                Ok(true) => Verdict::Granted,
                Ok(false) => Verdict::Refused,
                Err(e) => {
                    self.down(&e);
                    Verdict::Unavailable
                }
            },
        };
        if verdict != Verdict::Refused {
            self.held.insert(t.hold.0, t.account.clone());
        }
        let event = TcpEvent::TrunkVerdict(t.key, t.hold, verdict);
        let _ = self.events.send(event).await;
    }

    /// New leases for every hold; reconciles when Redis lost some, or is back.
    async fn renew(&mut self, store: &TrunkStore) {
        let holds: Vec<(u64, Arc<str>)> = self.held.iter().map(|(h, a)| (*h, a.clone())).collect();
        if self.up {
            match store.renew(&holds).await {
                Ok(n) if n == holds.len() => {
                    self.metrics.renewals.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Ok(n) => tracing::warn!(
                    held = holds.len(),
                    in_redis = n,
                    "Redis lost trunk holds of this node (restarted?): reconciling"
                ),
                Err(e) => return self.down(&e),
            }
        }
        match store.reconcile(&holds).await {
            Ok(dropped) => {
                self.metrics.renewals.fetch_add(1, Ordering::Relaxed);
                if !self.up {
                    tracing::info!(
                        holds = holds.len(),
                        dropped,
                        "Redis answers: trunk holds reconciled, limits are the cluster's again"
                    );
                }
                self.up = true;
                self.metrics.up.store(true, Ordering::Relaxed);
            }
            Err(e) => self.down(&e),
        }
    }

    /// Redis failed: fail-open until the next renewal tick finds it back.
    fn down(&mut self, e: &trunkstore_cluster::RedisError) {
        self.up = false;
        self.metrics.up.store(false, Ordering::Relaxed);
        let now = Instant::now();
        let due = match self.warned {
            Some(w) => now.duration_since(w) >= WARN_EVERY,
            None => true,
        };
        if due {
            self.warned = Some(now);
            tracing::warn!(error = %e, "Redis unavailable: trunk limits are counted per node (fail-open) until it answers");
        }
    }
}
