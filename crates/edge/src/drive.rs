//! The one place the edge drives a core shard: every `handle_*` and `poll_*` call on it
//! is made here, by a [`Driver`] owned by a UDP worker or by the TCP driver task.
//!
//! A round is: feed the shard its events ([`Driver::datagram`], [`Driver::message`],
//! [`Driver::transport_error`]), then [`Driver::settle`]: fire due timers, send everything
//! produced, feed failed sends back as transport errors (bounded rounds), and hand the
//! call records to the CDR writer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use socket2::Socket;
use trunkstore_proxy::Peer;
use trunkstore_sip::message::Message;

use crate::cdr::CdrSink;
use crate::core::Core;
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
}

impl<C: Core> Driver<C> {
    pub(crate) fn new(core: Arc<C>, out: Arc<Outbound>, records: Option<CdrSink>) -> Driver<C> {
        Driver {
            shard: core.new_shard(),
            flusher: Flusher::new(&out),
            core,
            out,
            records,
        }
    }

    /// When the shard next needs its timers fired.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        C::poll_timeout(&self.shard)
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

    pub(crate) fn transport_error(&mut self, now: Instant, peer: Peer) {
        self.core.handle_transport_error(&mut self.shard, now, peer);
    }

    /// Ends a round of events: fires the timers due by `now`, sends what the shard
    /// produced (`own`: the calling worker's listener and socket, see
    /// [`Flusher::send_udp`]) and passes call records on.
    pub(crate) fn settle(&mut self, now: Instant, own: Option<(usize, &Socket)>) {
        if self.deadline().is_some_and(|d| d <= now) {
            self.core.handle_timeouts(&mut self.shard, now);
        }
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
            let mut errors = self.flusher.errors().peekable();
            if errors.peek().is_none() {
                return;
            }
            let now = Instant::now();
            for peer in errors {
                tracing::debug!(peer = %peer.addr, transport = ?peer.transport, "transport error");
                self.core.handle_transport_error(&mut self.shard, now, peer);
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
