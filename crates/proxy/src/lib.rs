//! Sans-IO SIP proxy core.
//!
//! The core never touches a socket or the clock. The edge (crate `trunkstore-edge`) feeds it
//! events — a datagram or stream message arrived, time passed, a transport failed — with the
//! current time, and drains what it must do: datagrams to send and the next deadline at
//! which to call back. Every RFC 3261 rule and routing rule is therefore a deterministic
//! unit test on a virtual clock.
//!
//! Concurrency model (no global lock on the packet path): one [`Proxy`] is shared by all
//! workers (`Sync`; its tables are concurrent maps, its routing data an atomically swapped
//! snapshot). Each worker thread owns one [`Shard`]: its own timer queue and outgoing
//! queue. A timer fires on the shard that set it and finds its transaction through the
//! shared tables; timers are never cancelled eagerly: a fired timer whose transaction has
//! moved on is ignored.
//!
//! Layers (no import loops; the workspace's `crates/trunkstore/tests/layering.rs` fails on
//! any): a module uses only modules of the layers below it and the modules listed before
//! it in its own layer. From the bottom:
//!
//! 1. **Base values**: `dns` (RFC 3263 server location as a plain-value machine the edge
//!    drives with a real resolver; it uses no other module), `types` (peers, transmits,
//!    call records, resolution requests), `error`, `util`, `keys`, `branch`, `dialled`,
//!    `policy` (direction, failure, failover rule), `transaction`, `timerq`, `trunks`,
//!    `media` (rtpengine's NG protocol and the client choosing an instance), `registrar`
//!    (bindings of REGISTERed servers).
//! 2. **Settings and wire reads**: `auth`, `config`, `sides` (our Via and Record-Route
//!    per listener, RFC 5658), `sipview`, `callerid`, `metrics`.
//! 3. **Routing model and decisions** (pure, no context): `route`, `carriers`,
//!    `failover`, and the proxy's plain-value machines `machines` (branch state,
//!    deadline table, plan cursor, best response).
//! 4. **Tables and context**: `state`, `shard`, `context` (`Ctx`, `lock`).
//! 5. **Actions in context**: `local`, `admission`, `anchor` (the NG requests of
//!    anchored calls), `calls`, `late2xx`, `outbound`,
//!    `register` (answers REGISTER, sends keep-alives).
//! 6. **Proxying**: `proxying/` (forward, cancel, answer, responses, timers; its
//!    `mod.rs` moves the plan on top of them), `trunk_wait` (an INVITE waiting for the
//!    cluster's trunk verdict).
//! 7. **Dispatch**: `request`, `response`, `engine`.
//!
//! The crate root (this file) only declares the modules and holds the public API.

#![warn(missing_docs, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use trunkstore_sip::message::Message;

mod admission;
mod anchor;
pub mod auth;
mod branch;
mod callerid;
mod calls;
mod carriers;
pub mod config;
mod context;
mod dialled;
pub mod dns;
mod engine;
pub mod error;
mod failover;
mod keys;
mod late2xx;
mod local;
mod machines;
pub(crate) mod media;
pub mod metrics;
mod outbound;
mod policy;
mod proxying;
mod register;
pub mod registrar;
mod request;
mod response;
pub mod route;
mod shard;
mod sides;
mod sipview;
mod state;
mod timerq;
mod transaction;
mod trunk_wait;
mod trunks;
mod types;
mod util;

pub use config::{Advertise, ClusterNode, Listener, ProxyConfig};
pub use route::{Directory, FailoverRule, StaticDirectory};
pub use shard::Shard;
pub use trunks::{ClusterTrunkStats, HoldId, TrunkKey, TrunkOp, TrunkRelease, TrunkTake, Verdict};
pub use types::{
    CallRecord, Peer, ResolveKey, ResolveRequest, Stats, TlsName, Transmit, Transport,
};

/// The proxy core, shared by every worker thread.
pub struct Proxy {
    state: Arc<state::State>,
}

impl Proxy {
    /// A proxy over `directory` (the routing index implements [`Directory`]; pass
    /// `Arc<Router>` and it coerces).
    pub fn new(config: ProxyConfig, directory: Arc<dyn Directory>) -> Proxy {
        Proxy {
            state: Arc::new(state::State::new(config, directory)),
        }
    }

    /// Per-worker state: its timer queue and outgoing queue.
    pub fn new_shard(&self) -> Shard {
        Shard::new(self.state.clone())
    }

    /// A UDP datagram (or anything not yet framed): parse, then handle. Unparseable
    /// requests get a 400 when a response can be built; anything else is dropped.
    pub fn handle_datagram(
        &self,
        shard: &mut Shard,
        now: Instant,
        from: Peer,
        local: SocketAddr,
        data: Bytes,
    ) {
        engine::handle_datagram(&self.state, shard, now, from, local, data)
    }

    /// A message already framed and parsed by the TCP stream framer.
    pub fn handle_message(
        &self,
        shard: &mut Shard,
        now: Instant,
        from: Peer,
        local: SocketAddr,
        msg: Message,
    ) {
        engine::handle_message(&self.state, shard, now, from, local, Box::new(msg))
    }

    /// Fire every timer of this shard due at or before `now`.
    pub fn handle_timeouts(&self, shard: &mut Shard, now: Instant) {
        engine::handle_timeouts(&self.state, shard, now)
    }

    /// A send to `peer` failed (connect refused/reset, ICMP unreachable): the client
    /// transactions towards it see a 503 (RFC 3261 §16.9).
    pub fn handle_transport_error(&self, shard: &mut Shard, now: Instant, peer: Peer) {
        engine::handle_transport_error(&self.state, shard, now, peer)
    }

    /// An ICMP error for a datagram sent to `peer` (port, host or network unreachable):
    /// its client transactions see a 503 as for a transport error, but registrations are
    /// not touched: for UDP anyone who can guess the addresses can forge one, and a
    /// binding is only ever dropped by its own keep-alives going unanswered.
    pub fn handle_unreachable(&self, shard: &mut Shard, now: Instant, peer: Peer) {
        engine::fail_client_transactions(&self.state, shard, now, peer)
    }

    /// The outcome of a [`ResolveRequest`] (from [`Shard::poll_resolve`] on any shard): the
    /// hops in the order to try them, or why there are none. The request's attempt goes
    /// to the first hop (the next ones on a 503, timeout or transport error), or fails
    /// as unreachable (480).
    pub fn handle_resolved(
        &self,
        shard: &mut Shard,
        now: Instant,
        key: ResolveKey,
        outcome: Result<Vec<Peer>, String>,
    ) {
        engine::handle_resolved(&self.state, shard, now, key, outcome)
    }

    /// The next trunk operation for the cluster (behaviour.md §9.2), in the order asked:
    /// answer each [`TrunkOp::Take`] with [`Proxy::handle_trunk_verdict`] (on any shard),
    /// carry out each [`TrunkOp::Release`]. Always `None` unless
    /// [`ProxyConfig::cluster`] is on.
    pub fn poll_trunk_op(&self) -> Option<TrunkOp> {
        self.state.trunks.cluster.as_ref()?.poll()
    }

    /// Called after each trunk operation is queued (set once; must not block): the edge
    /// wakes its cluster task with it.
    pub fn set_trunk_waker(&self, waker: Box<dyn Fn() + Send + Sync>) {
        if let Some(c) = &self.state.trunks.cluster {
            c.set_waker(waker);
        }
    }

    /// The cluster's verdict on a [`TrunkTake`]: the call's first attempt starts
    /// (granted; or unavailable: fail-open, counted), or the call is refused as for the
    /// local limit.
    pub fn handle_trunk_verdict(
        &self,
        shard: &mut Shard,
        now: Instant,
        key: TrunkKey,
        hold: HoldId,
        verdict: Verdict,
    ) {
        trunk_wait::handle_verdict(&self.state, shard, now, key, hold, verdict)
    }

    /// This node's live cluster holds (hold, account), for renewal and reconciliation.
    pub fn cluster_holds(&self) -> Vec<(HoldId, Arc<str>)> {
        self.state
            .trunks
            .cluster
            .as_ref()
            .map_or_else(Vec::new, |c| c.live())
    }

    /// Cluster trunk counters (`/metrics`); all zero without `cluster`.
    pub fn cluster_trunk_stats(&self) -> ClusterTrunkStats {
        self.state
            .trunks
            .cluster
            .as_ref()
            .map(|c| c.stats())
            .unwrap_or_default()
    }

    /// Sizes of the transaction and call tables (leak tests, metrics).
    pub fn stats(&self) -> Stats {
        self.state.stats()
    }

    /// Is anything still in progress: a call in the dialog table, or a request without
    /// its final response (or with a branch still waiting for one)? Transactions that
    /// only linger to absorb retransmissions (timers J, K, D, L) do not count: a graceful
    /// shutdown need not wait 32 s for them. Scans the transaction table: for shutdown,
    /// not for the packet path.
    pub fn in_progress(&self) -> bool {
        if !self.state.calls.is_empty() {
            return true;
        }
        let txns: Vec<_> = self
            .state
            .servers
            .iter()
            .map(|e| e.value().clone())
            .collect();
        txns.iter().any(|t| {
            let t = context::lock(t);
            !t.server.is_final() || t.branches.iter().any(|b| b.client.is_pending())
        })
    }

    /// Trunks in use per account (behaviour.md §6), sorted by account: every account
    /// that has had a carrier call since start, zero included (metrics, shutdown log).
    pub fn trunks_in_use(&self) -> Vec<(String, u32)> {
        self.state.trunks.in_use()
    }

    /// Is traffic from `from` let in now? False while its address is banned (behaviour.md
    /// §8), unless it is a carrier's or an IP-auth server's. Lock-free (no lock is taken
    /// unless the address is banned): the edge asks it for every datagram and every TCP
    /// message before any parsing, and drops what it refuses. A refusal is counted
    /// (`dropped_banned`).
    pub fn admits(&self, from: SocketAddr, now: Instant) -> bool {
        admission::admits(&self.state, from, now)
    }

    /// May `from` open one more inbound TCP connection, having `open` already (counted by
    /// the edge per [`auth::source_key`])? No while banned or at the per-source `limit`;
    /// carriers and IP-auth servers always may. A refusal is counted.
    pub fn admits_connection(
        &self,
        from: SocketAddr,
        open: usize,
        limit: usize,
        now: Instant,
    ) -> bool {
        admission::admits_connection(&self.state, from, open, limit, now)
    }

    /// Auth failures and bans of this node for the other nodes of its cluster, since the
    /// last call (empty for a node alone). The edge publishes them (issue 18).
    pub fn drain_security_events(&self) -> Vec<auth::SecurityEvent> {
        self.state.protection.drain_shared()
    }

    /// An auth failure or a ban published by another node of the cluster: counted and
    /// applied here as if it were this node's own, never passed on again.
    pub fn apply_security_event(&self, event: auth::SecurityEvent, now: Instant) {
        if self.state.protection.apply_shared(event, now) {
            self.state.metrics.ban();
        }
    }

    /// Auth failures, bans and drops of the protection layer (metrics).
    pub fn protection_stats(&self, now: Instant) -> auth::ProtectionStats {
        self.state.protection.stats(now)
    }

    /// The core's counters and response-time histograms (metrics).
    pub fn metrics(&self) -> &metrics::ProxyMetrics {
        &self.state.metrics
    }

    /// Trunk limits (`account.trunks`) of the accounts listed by [`Proxy::trunks_in_use`]
    /// that have one (metrics).
    pub fn trunk_limits(&self) -> Vec<(String, u32)> {
        self.state
            .trunks
            .in_use()
            .into_iter()
            .filter_map(|(account, _)| {
                let limit = self.state.dir.trunk_limit(&account)?;
                Some((account, limit))
            })
            .collect()
    }

    /// Every live binding of the registrar (admin API, persistence), by address of record.
    pub fn registrations(&self, now: Instant) -> Vec<registrar::Registration> {
        self.state.registrar.list(now)
    }

    /// Puts back bindings saved before a restart (`expires_in` counted from `now`);
    /// returns how many were taken.
    pub fn restore_registrations(
        &self,
        saved: Vec<registrar::Registration>,
        now: Instant,
    ) -> usize {
        self.state.registrar.restore(saved, now)
    }

    /// The bindings made on the other nodes of this node's cluster (issue 18), as read from
    /// Redis: calls to their addresses of record reach them after this node's own
    /// bindings. Replaces the previous set; returns how many were taken.
    pub fn set_remote_registrations(
        &self,
        theirs: Vec<registrar::Registration>,
        now: Instant,
    ) -> usize {
        self.state.registrar.set_remote(theirs, now)
    }

    /// Live bindings of the other nodes of the cluster known here (metrics).
    pub fn remote_registrations(&self, now: Instant) -> usize {
        self.state.registrar.remote_count(now)
    }

    /// Moves whenever a binding is added, removed or moves to another flow:
    /// persistence saves soon after it moved.
    pub fn registrations_generation(&self) -> u64 {
        self.state.registrar.generation()
    }

    /// Moves whenever a binding is only refreshed (a new expiry): persistence may save
    /// those less often (a binding restored with an older expiry only needs its PBX's
    /// next REGISTER sooner).
    pub fn registrations_refreshes(&self) -> u64 {
        self.state.registrar.refresh_generation()
    }

    /// Live bindings per account (metrics).
    pub fn bindings_by_account(&self, now: Instant) -> Vec<(String, usize)> {
        self.state.registrar.count_by_account(now)
    }

    /// Each configured rtpengine instance (NG control address) and whether it takes
    /// requests now (not skipped after a silence), for `/metrics`.
    pub fn media_instances(&self, now: Instant) -> Vec<(SocketAddr, bool)> {
        self.state
            .media
            .as_ref()
            .map_or_else(Vec::new, |m| m.instances(now))
    }

    /// The proxy is stopping with calls still up: the `delete` of every anchored call's
    /// media session, for the edge to send before it closes its sockets (their replies
    /// are not waited for). The calls stay in the table.
    pub fn media_deletes(&self, now: Instant) -> Vec<Transmit> {
        let mut shard = self.new_shard();
        engine::delete_all_media(&self.state, &mut shard, now);
        shard.out.drain(..).collect()
    }

    /// From now on, new out-of-dialog requests get 503; transactions and dialogs in
    /// progress finish normally.
    pub fn begin_shutdown(&self) {
        self.state
            .shutting_down
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The edge shares one `Proxy` between threads and moves a `Shard` into each.
#[allow(dead_code)]
fn assert_thread_safety() {
    fn sync_send<T: Sync + Send>() {}
    fn send<T: Send>() {}
    sync_send::<Proxy>();
    send::<Shard>();
}
