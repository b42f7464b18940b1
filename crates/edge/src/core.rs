//! The interface the edge drives, so transports can be tested with a fake core. Only
//! `drive` calls a shard's `handle_*` and `poll_*`; the TCP side asks about connections
//! through the object-safe [`Gate`].

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use trunkstore_proxy::{CallRecord, Peer, Transmit};
use trunkstore_sip::message::Message;

/// What the edge needs from the sans-IO core. [`trunkstore_proxy::Proxy`] implements it;
/// tests use small fakes. One value is shared by every worker (`Sync`); each worker owns
/// one `Shard` (its timers and outgoing queue).
pub trait Core: Send + Sync + 'static {
    /// One worker's part of the core: its timers and what it has to send.
    type Shard: Send + 'static;

    /// A shard for one more worker.
    fn new_shard(&self) -> Self::Shard;
    /// A UDP datagram as received (the core parses it).
    fn handle_datagram(
        &self,
        shard: &mut Self::Shard,
        now: Instant,
        from: Peer,
        local: SocketAddr,
        data: Bytes,
    );
    /// A message framed on a TCP connection.
    fn handle_message(
        &self,
        shard: &mut Self::Shard,
        now: Instant,
        from: Peer,
        local: SocketAddr,
        msg: Message,
    );
    /// The shard's deadline ([`poll_timeout`](Core::poll_timeout)) has passed.
    fn handle_timeouts(&self, shard: &mut Self::Shard, now: Instant);
    /// A send to `peer` failed (refused or timed-out connect, unreachable network, a TCP
    /// connection we opened reset or closed by the peer).
    fn handle_transport_error(&self, shard: &mut Self::Shard, now: Instant, peer: Peer);
    /// An ICMP error says a datagram we sent to `peer` could not be delivered. Anyone
    /// who can guess the addresses can forge one, so a core may let it do less than a
    /// transport error (the proxy fails only the client transactions towards `peer`).
    fn handle_unreachable(&self, shard: &mut Self::Shard, now: Instant, peer: Peer) {
        self.handle_transport_error(shard, now, peer)
    }
    /// Is traffic from `from` let in? Asked for every datagram and every TCP read before
    /// anything is parsed; false drops it (the core counts it). Must be cheap and must
    /// not block: it runs on the packet path of every worker.
    fn admits(&self, _from: SocketAddr, _now: Instant) -> bool {
        true
    }
    /// A new inbound TCP connection from `from`, which has `open` inbound connections
    /// already (counted per [`trunkstore_proxy::auth::source_key`]): accept it? `limit`:
    /// the per-source cap. False closes it at once (the core counts it).
    fn admits_connection(
        &self,
        _from: SocketAddr,
        open: usize,
        limit: usize,
        _now: Instant,
    ) -> bool {
        open < limit
    }
    /// The next message to send, if any (drained after every round of events).
    fn poll_transmit(shard: &mut Self::Shard) -> Option<Transmit>;
    /// When the shard next needs [`handle_timeouts`](Core::handle_timeouts).
    fn poll_timeout(shard: &Self::Shard) -> Option<Instant>;
    /// The next record of a finished call, if any; the edge hands it to the CDR writer
    /// when it has one (see [`Edge::start_recording`](crate::Edge::start_recording)), else
    /// drops it. A core without records keeps the default.
    fn poll_call_record(_shard: &mut Self::Shard) -> Option<CallRecord> {
        None
    }
    /// The next DNS name the shard's core waits for (RFC 3263); a core without DNS keeps
    /// the default.
    fn poll_resolve(_shard: &mut Self::Shard) -> Option<trunkstore_proxy::ResolveRequest> {
        None
    }
    /// The outcome of a resolution: hops in order, or why there are none.
    fn handle_resolved(
        &self,
        _shard: &mut Self::Shard,
        _now: Instant,
        _key: trunkstore_proxy::ResolveKey,
        _outcome: Result<Vec<Peer>, String>,
    ) {
    }
    /// The next trunk operation for the cluster, in the order the core asked (a core
    /// without a cluster keeps the default).
    fn poll_trunk_op(&self) -> Option<trunkstore_proxy::TrunkOp> {
        None
    }
    /// Called by the core after each queued trunk operation (must not block).
    fn set_trunk_waker(&self, _waker: Box<dyn Fn() + Send + Sync>) {}
    /// The cluster's verdict on a trunk take.
    fn handle_trunk_verdict(
        &self,
        _shard: &mut Self::Shard,
        _now: Instant,
        _key: trunkstore_proxy::TrunkKey,
        _hold: trunkstore_proxy::HoldId,
        _verdict: trunkstore_proxy::Verdict,
    ) {
    }
    /// New requests are refused from now on; transactions in progress continue.
    fn begin_shutdown(&self);
    /// True when nothing is in progress any more, so a graceful shutdown may end early.
    fn is_idle(&self) -> bool {
        false
    }
}

/// The part of [`Core`] the TCP side asks about connections: object-safe, so the
/// connection tasks need not be generic over the core.
pub(crate) trait Gate: Send + Sync {
    fn admits(&self, from: SocketAddr, now: Instant) -> bool;
    fn admits_connection(&self, from: SocketAddr, open: usize, limit: usize, now: Instant) -> bool;
}

impl<C: Core> Gate for C {
    fn admits(&self, from: SocketAddr, now: Instant) -> bool {
        Core::admits(self, from, now)
    }

    fn admits_connection(&self, from: SocketAddr, open: usize, limit: usize, now: Instant) -> bool {
        Core::admits_connection(self, from, open, limit, now)
    }
}

impl Core for trunkstore_proxy::Proxy {
    type Shard = trunkstore_proxy::Shard;

    fn new_shard(&self) -> Self::Shard {
        trunkstore_proxy::Proxy::new_shard(self)
    }

    fn handle_datagram(
        &self,
        shard: &mut Self::Shard,
        now: Instant,
        from: Peer,
        local: SocketAddr,
        data: Bytes,
    ) {
        trunkstore_proxy::Proxy::handle_datagram(self, shard, now, from, local, data)
    }

    fn handle_message(
        &self,
        shard: &mut Self::Shard,
        now: Instant,
        from: Peer,
        local: SocketAddr,
        msg: Message,
    ) {
        trunkstore_proxy::Proxy::handle_message(self, shard, now, from, local, msg)
    }

    fn handle_timeouts(&self, shard: &mut Self::Shard, now: Instant) {
        trunkstore_proxy::Proxy::handle_timeouts(self, shard, now)
    }

    fn handle_transport_error(&self, shard: &mut Self::Shard, now: Instant, peer: Peer) {
        trunkstore_proxy::Proxy::handle_transport_error(self, shard, now, peer)
    }

    fn handle_unreachable(&self, shard: &mut Self::Shard, now: Instant, peer: Peer) {
        trunkstore_proxy::Proxy::handle_unreachable(self, shard, now, peer)
    }

    fn admits(&self, from: SocketAddr, now: Instant) -> bool {
        trunkstore_proxy::Proxy::admits(self, from, now)
    }

    fn admits_connection(&self, from: SocketAddr, open: usize, limit: usize, now: Instant) -> bool {
        trunkstore_proxy::Proxy::admits_connection(self, from, open, limit, now)
    }

    fn poll_transmit(shard: &mut Self::Shard) -> Option<Transmit> {
        shard.poll_transmit()
    }

    fn poll_timeout(shard: &Self::Shard) -> Option<Instant> {
        shard.poll_timeout()
    }

    fn poll_call_record(shard: &mut Self::Shard) -> Option<CallRecord> {
        shard.poll_call_record()
    }

    fn poll_resolve(shard: &mut Self::Shard) -> Option<trunkstore_proxy::ResolveRequest> {
        shard.poll_resolve()
    }

    fn handle_resolved(
        &self,
        shard: &mut Self::Shard,
        now: Instant,
        key: trunkstore_proxy::ResolveKey,
        outcome: Result<Vec<Peer>, String>,
    ) {
        trunkstore_proxy::Proxy::handle_resolved(self, shard, now, key, outcome)
    }

    fn poll_trunk_op(&self) -> Option<trunkstore_proxy::TrunkOp> {
        trunkstore_proxy::Proxy::poll_trunk_op(self)
    }

    fn set_trunk_waker(&self, waker: Box<dyn Fn() + Send + Sync>) {
        trunkstore_proxy::Proxy::set_trunk_waker(self, waker)
    }

    fn handle_trunk_verdict(
        &self,
        shard: &mut Self::Shard,
        now: Instant,
        key: trunkstore_proxy::TrunkKey,
        hold: trunkstore_proxy::HoldId,
        verdict: trunkstore_proxy::Verdict,
    ) {
        trunkstore_proxy::Proxy::handle_trunk_verdict(self, shard, now, key, hold, verdict)
    }

    fn begin_shutdown(&self) {
        trunkstore_proxy::Proxy::begin_shutdown(self)
    }

    fn is_idle(&self) -> bool {
        // Dialogs count too: their BYE still has to pass through us.
        !self.in_progress()
    }
}
