//! Sending what the core produced: UDP datagrams in batches on the right listener socket,
//! TCP messages handed to their connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use socket2::Socket;
use trunkstore_proxy::{Peer, Transmit, Transport};

use crate::core::Core;
use crate::sys::{SendBatch, SendFailure};
use crate::tcp::TcpShared;
use crate::udp::UdpSocket;

/// Bound on send → transport error → send rounds after one event, in case a core keeps
/// answering a failure with another send to the same dead peer.
const MAX_ROUNDS: usize = 8;

/// Everything a shard can send through; shared by all workers and the TCP driver.
pub(crate) struct Outbound {
    /// Per UDP listener: its bound address and the socket used by non-owners.
    udp: Vec<(SocketAddr, Arc<UdpSocket>)>,
    pub tcp: Arc<TcpShared>,
}

impl Outbound {
    pub fn new(udp: Vec<(SocketAddr, Arc<UdpSocket>)>, tcp: Arc<TcpShared>) -> Outbound {
        Outbound { udp, tcp }
    }

    pub fn udp_addr(&self, listener: usize) -> SocketAddr {
        self.udp[listener].0
    }

    /// The UDP listener a datagram to `to` leaves from: the one named by `from`, else the
    /// first of the destination's address family.
    pub fn pick_udp(&self, from: Option<SocketAddr>, to: SocketAddr) -> Option<usize> {
        let same_family = |a: &SocketAddr| a.is_ipv4() == to.is_ipv4();
        if let Some(from) = from.filter(same_family) {
            let exact = self.udp.iter().position(|(a, _)| *a == from);
            let wildcard = || {
                self.udp.iter().position(|(a, _)| {
                    a.port() == from.port() && a.ip().is_unspecified() && same_family(a)
                })
            };
            if let Some(i) = exact.or_else(wildcard) {
                return Some(i);
            }
        }
        self.udp.iter().position(|(a, _)| same_family(a))
    }
}

/// Per-thread scratch space for sending (reused so a flush allocates nothing).
pub(crate) struct Flusher {
    batches: Vec<SendBatch>,
    failures: Vec<SendFailure>,
    errors: Vec<Peer>,
}

impl Flusher {
    pub fn new(out: &Outbound) -> Flusher {
        Flusher {
            batches: out.udp.iter().map(|_| SendBatch::default()).collect(),
            failures: Vec::new(),
            errors: Vec::new(),
        }
    }

    /// Drains the shard's transmits and sends them. `own` is the calling worker's socket
    /// and its listener: datagrams of that listener leave from it (no sharing).
    /// Transport errors go back to the core on this shard.
    pub fn flush<C: Core>(
        &mut self,
        core: &C,
        shard: &mut C::Shard,
        out: &Outbound,
        own: Option<(usize, &Socket)>,
    ) {
        for _ in 0..MAX_ROUNDS {
            while let Some(t) = C::poll_transmit(shard) {
                self.route(out, t);
            }
            self.send_udp(out, own);
            if self.errors.is_empty() {
                return;
            }
            let now = Instant::now();
            for peer in self.errors.drain(..) {
                tracing::debug!(peer = %peer.addr, transport = ?peer.transport, "transport error");
                core.handle_transport_error(shard, now, peer);
            }
        }
        // Still failing after MAX_ROUNDS: drop what is left rather than loop.
        while C::poll_transmit(shard).is_some() {}
    }

    fn route(&mut self, out: &Outbound, t: Transmit) {
        match t.to.transport {
            Transport::Udp => match out.pick_udp(t.from, t.to.addr) {
                Some(i) => self.batches[i].push(t.to.addr, t.data),
                None => {
                    tracing::debug!(to = %t.to.addr, "no UDP listener of that address family");
                    self.errors.push(t.to);
                }
            },
            Transport::Tcp => {
                if let Err(peer) = out.tcp.send(t) {
                    self.errors.push(peer);
                }
            }
        }
    }

    fn send_udp(&mut self, out: &Outbound, own: Option<(usize, &Socket)>) {
        for (i, batch) in self.batches.iter_mut().enumerate() {
            if batch.is_empty() {
                continue;
            }
            let socket = match own {
                Some((l, s)) if l == i => s,
                _ => &out.udp[i].1.socket,
            };
            batch.flush(socket, &mut self.failures);
        }
        for f in self.failures.drain(..) {
            tracing::debug!(to = %f.to, error = %f.error, "UDP send failed");
            self.errors.push(Peer {
                transport: Transport::Udp,
                addr: f.to,
            });
        }
    }
}
