//! The one place the edge drives a core shard: every `handle_*` and `poll_*` call on it
//! is made here, by a [`Driver`] owned by a UDP worker or by the TCP driver task.
//!
//! A round is: feed the shard its events ([`Driver::datagram`], [`Driver::message`],
//! [`Driver::transport_error`]), then [`Driver::settle`]: fire due timers, send everything
//! produced, feed failed sends back as transport errors (bounded rounds), and hand the
//! call records to the CDR writer.
//!
//! Every transport error is counted by kind and goes through the driver's
//! [`Coalescer`]: a burst for one peer costs the core one scan per window (`errors`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use socket2::Socket;
use trunkstore_proxy::Peer;
use trunkstore_sip::message::Message;

use crate::cdr::CdrSink;
use crate::core::Core;
use crate::errors::{Coalescer, ErrorKind, TransportErrors};
use crate::outbound::{Flusher, Outbound};

/// Bound on send → transport error → send rounds after one event, in case a core keeps
/// answering a failure with another send to the same dead peer.
const MAX_ROUNDS: usize = 8;

/// A shard with what it needs to run: the core, the sockets to send through, and where
/// finished calls' records go.
pub(crate) struct Driver<C: Core> {
    core: Arc<C>,
    shard: C::Shard,
    out: Arc<Outbound>,
    flusher: Flusher,
    records: Option<CdrSink>,
    /// Counters shared by every driver (`/metrics`).
    counts: Arc<TransportErrors>,
    coalescer: Coalescer,
    /// Scratch for the folded errors falling due.
    folded: Vec<(Peer, ErrorKind)>,
    /// Resolves the names the shard asks for; `None`: no DNS.
    resolver: Option<Arc<Resolver>>,
}

/// Resolves the names shards ask for (RFC 3263): from the cache at once, else on the
/// runtime, the outcome posted to the TCP driver's channel (any shard may resume the
/// request: its transaction lives in the shared tables).
pub(crate) struct Resolver {
    dns: crate::dns::Dns,
    runtime: tokio::runtime::Handle,
    events: tokio::sync::mpsc::Sender<crate::tcp::TcpEvent>,
}

impl Resolver {
    /// `None` without DNS settings, or when the resolver cannot be set up (logged: such
    /// targets then fail as unreachable).
    pub(crate) fn start(
        settings: Option<&trunkstore_config::Dns>,
        udp: &[SocketAddr],
        runtime: tokio::runtime::Handle,
        events: tokio::sync::mpsc::Sender<crate::tcp::TcpEvent>,
    ) -> Option<Arc<Resolver>> {
        use trunkstore_proxy::dns::Transport as T;
        let settings = settings?;
        let families = crate::dns::families_of(udp);
        // Within a runtime context: hickory spawns its exchanges on it.
        let _guard = runtime.enter();
        match crate::dns::Dns::new(settings, &[T::Udp, T::Tcp, T::Tls], families) {
            Ok(dns) => Some(Arc::new(Resolver {
                dns,
                runtime,
                events,
            })),
            Err(e) => {
                tracing::warn!(error = %e, "no DNS resolver: targets named by DNS fail");
                None
            }
        }
    }
}

/// The hops of a resolution as the core's peers.
fn peers(outcome: Result<crate::dns::Resolved, crate::dns::DnsError>) -> Result<Vec<Peer>, String> {
    use trunkstore_proxy::dns::Transport as T;
    let resolved = outcome.map_err(|e| e.to_string())?;
    Ok(resolved
        .hops
        .iter()
        .map(|h| {
            let transport = match h.transport {
                T::Udp => trunkstore_proxy::Transport::Udp,
                T::Tcp => trunkstore_proxy::Transport::Tcp,
                T::Tls => trunkstore_proxy::Transport::Tls,
            };
            Peer {
                transport,
                addr: h.addr,
            }
        })
        .collect())
}

impl<C: Core> Driver<C> {
    pub(crate) fn new(
        core: Arc<C>,
        out: Arc<Outbound>,
        records: Option<CdrSink>,
        counts: Arc<TransportErrors>,
    ) -> Driver<C> {
        Driver {
            shard: core.new_shard(),
            flusher: Flusher::new(&out),
            core,
            out,
            records,
            counts,
            coalescer: Coalescer::default(),
            folded: Vec::new(),
            resolver: None,
        }
    }

    /// With the edge's resolver (shared by every driver).
    pub(crate) fn with_resolver(mut self, resolver: Option<Arc<Resolver>>) -> Driver<C> {
        self.resolver = resolver;
        self
    }

    /// A resolution finished on the runtime: the request waiting for it resumes.
    pub(crate) fn resolved(
        &mut self,
        now: Instant,
        key: trunkstore_proxy::ResolveKey,
        outcome: Result<Vec<Peer>, String>,
    ) {
        self.core
            .handle_resolved(&mut self.shard, now, key, outcome);
    }

    /// The cluster's verdict on a trunk take: the call waiting for it resumes.
    pub(crate) fn trunk_verdict(
        &mut self,
        now: Instant,
        key: trunkstore_proxy::TrunkKey,
        hold: trunkstore_proxy::HoldId,
        verdict: trunkstore_proxy::Verdict,
    ) {
        self.core
            .handle_trunk_verdict(&mut self.shard, now, key, hold, verdict);
    }

    /// Starts the resolutions the shard asked for; cached outcomes are handed back at
    /// once (and may ask for more: bounded by the plans' attempts).
    fn resolve(&mut self, now: Instant) {
        while let Some(req) = C::poll_resolve(&mut self.shard) {
            let Some(r) = self.resolver.clone() else {
                let why = Err("no DNS resolver".to_string());
                self.core
                    .handle_resolved(&mut self.shard, now, req.key, why);
                continue;
            };
            if let Some(outcome) = r.dns.cached(&req.target, now) {
                let outcome = peers(outcome);
                self.core
                    .handle_resolved(&mut self.shard, now, req.key, outcome);
                continue;
            }
            let runtime = r.runtime.clone();
            runtime.spawn(async move {
                let outcome = peers(r.dns.resolve(&req.target).await);
                let event = crate::tcp::TcpEvent::Resolved(req.key, outcome);
                let _ = r.events.send(event).await;
            });
        }
    }

    /// When the shard next needs its timers fired, or a folded transport error is due.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        let timers = C::poll_timeout(&self.shard);
        match (timers, self.coalescer.deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Is traffic from `from` let in (asked before anything is parsed)?
    pub(crate) fn admits(&self, from: SocketAddr, now: Instant) -> bool {
        self.core.admits(from, now)
    }

    pub(crate) fn datagram(&mut self, now: Instant, from: Peer, local: SocketAddr, data: Bytes) {
        self.core
            .handle_datagram(&mut self.shard, now, from, local, data);
    }

    pub(crate) fn message(&mut self, now: Instant, from: Peer, local: SocketAddr, msg: Message) {
        self.core
            .handle_message(&mut self.shard, now, from, local, msg);
    }

    /// A transport error of `kind` for `peer`: counted, and passed to the core now or
    /// folded into the next one for that peer (see `errors`).
    pub(crate) fn transport_error(&mut self, now: Instant, peer: Peer, kind: ErrorKind) {
        self.counts.count(kind);
        if self.coalescer.admit(peer, kind, now) {
            self.pass(now, peer, kind);
        }
    }

    fn pass(&mut self, now: Instant, peer: Peer, kind: ErrorKind) {
        tracing::debug!(peer = %peer.addr, transport = ?peer.transport, ?kind, "transport error");
        match kind {
            ErrorKind::Icmp => self.core.handle_unreachable(&mut self.shard, now, peer),
            _ => self.core.handle_transport_error(&mut self.shard, now, peer),
        }
    }

    /// Passes on the folded transport errors due by `now`.
    fn pass_folded(&mut self, now: Instant) {
        self.coalescer.due(now, &mut self.folded);
        let mut folded = std::mem::take(&mut self.folded);
        for (peer, kind) in folded.drain(..) {
            self.pass(now, peer, kind);
        }
        self.folded = folded;
    }

    /// Ends a round of events: fires the timers due by `now`, sends what the shard
    /// produced (`own`: the calling worker's listener and socket, see
    /// [`Flusher::send_udp`]) and passes call records on.
    pub(crate) fn settle(&mut self, now: Instant, own: Option<(usize, &Socket)>) {
        if C::poll_timeout(&self.shard).is_some_and(|d| d <= now) {
            self.core.handle_timeouts(&mut self.shard, now);
        }
        self.pass_folded(now);
        self.resolve(now);
        self.flush(own);
        self.pass_records();
    }

    /// Drains the shard's transmits and sends them; transport errors go back to the core
    /// on this shard, whose answers are sent in turn (at most `MAX_ROUNDS` times).
    fn flush(&mut self, own: Option<(usize, &Socket)>) {
        for _ in 0..MAX_ROUNDS {
            while let Some(t) = C::poll_transmit(&mut self.shard) {
                self.flusher.route(&self.out, t);
            }
            self.flusher.send_udp(&self.out, own);
            let errors: Vec<(Peer, ErrorKind)> = self.flusher.errors().collect();
            if errors.is_empty() {
                return;
            }
            let now = Instant::now();
            for (peer, kind) in errors {
                self.transport_error(now, peer, kind);
            }
        }
        // Still failing after MAX_ROUNDS: drop what is left rather than loop.
        while C::poll_transmit(&mut self.shard).is_some() {}
    }

    /// Moves every finished call's record to the CDR writer, without blocking; without a
    /// writer they are dropped (so they do not pile up in the shard).
    fn pass_records(&mut self) {
        while let Some(r) = C::poll_call_record(&mut self.shard) {
            if let Some(sink) = &self.records {
                sink.send(r);
            }
        }
    }
}
