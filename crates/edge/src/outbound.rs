//! Sending what the core produced: UDP datagrams in batches on the right listener socket,
//! TCP and TLS messages handed to their connection. Knows nothing of the core: `drive` polls the
//! shard and hands the transmits here.

use std::net::SocketAddr;
use std::sync::Arc;

use socket2::Socket;
use trunkstore_proxy::{Peer, Transmit, Transport};

use crate::errors::ErrorKind;
use crate::sys::{SendBatch, SendFailure};
use crate::tcp::TcpShared;
use crate::udp::UdpSocket;

/// Everything a shard can send through; shared by all workers and the TCP driver.
pub(crate) struct Outbound {
    /// Per UDP listener: its bound address and the socket used by non-owners.
    udp: Vec<(SocketAddr, Arc<UdpSocket>)>,
    tcp: Arc<TcpShared>,
    tls: Arc<TcpShared>,
}

impl Outbound {
    pub(crate) fn new(
        udp: Vec<(SocketAddr, Arc<UdpSocket>)>,
        tcp: Arc<TcpShared>,
        tls: Arc<TcpShared>,
    ) -> Outbound {
        Outbound { udp, tcp, tls }
    }

    /// The UDP listener a datagram to `to` leaves from: the one named by `from`, else the
    /// first of the destination's address family.
    fn pick_udp(&self, from: Option<SocketAddr>, to: SocketAddr) -> Option<usize> {
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
    /// Destinations the sockets' error queues named unreachable (ICMP) while sending.
    unreachable: Vec<SocketAddr>,
    errors: Vec<(Peer, ErrorKind)>,
}

impl Flusher {
    pub(crate) fn new(out: &Outbound) -> Flusher {
        Flusher {
            batches: out.udp.iter().map(|_| SendBatch::default()).collect(),
            failures: Vec::new(),
            unreachable: Vec::new(),
            errors: Vec::new(),
        }
    }

    /// Queues a UDP datagram on its listener's batch, or hands a TCP message to its
    /// connection; a failure is kept for [`errors`](Flusher::errors).
    pub(crate) fn route(&mut self, out: &Outbound, t: Transmit) {
        match t.to.transport {
            Transport::Udp => match out.pick_udp(t.from, t.to.addr) {
                Some(i) => self.batches[i].push(t.to.addr, t.data),
                None => {
                    tracing::debug!(to = %t.to.addr, "no UDP listener of that address family");
                    self.errors.push((t.to, ErrorKind::Send));
                }
            },
            Transport::Tcp => {
                if let Err(peer) = out.tcp.send(t) {
                    self.errors.push((peer, ErrorKind::Send));
                }
            }
            Transport::Tls => {
                if let Err(peer) = out.tls.send(t) {
                    self.errors.push((peer, ErrorKind::Send));
                }
            }
        }
    }

    /// Sends every queued datagram. `own` is the calling worker's socket and its
    /// listener: datagrams of that listener leave from it (no sharing).
    pub(crate) fn send_udp(&mut self, out: &Outbound, own: Option<(usize, &Socket)>) {
        for (i, batch) in self.batches.iter_mut().enumerate() {
            if batch.is_empty() {
                continue;
            }
            let socket = match own {
                Some((l, s)) if l == i => s,
                _ => &out.udp[i].1.socket,
            };
            batch.flush(socket, &mut self.failures, &mut self.unreachable);
        }
        for f in self.failures.drain(..) {
            tracing::debug!(to = %f.to, error = %f.error, "UDP send failed");
            let peer = Peer {
                transport: Transport::Udp,
                addr: f.to,
            };
            self.errors.push((peer, ErrorKind::Send));
        }
        for to in self.unreachable.drain(..) {
            tracing::debug!(%to, "ICMP: destination unreachable");
            let peer = Peer {
                transport: Transport::Udp,
                addr: to,
            };
            self.errors.push((peer, ErrorKind::Icmp));
        }
    }

    /// Peers a send failed to since the last call, and how, for the core to hear about.
    pub(crate) fn errors(&mut self) -> std::vec::Drain<'_, (Peer, ErrorKind)> {
        self.errors.drain(..)
    }
}
