//! The UDP worker thread: receive a batch, hand it to the shard, settle (timers, sends,
//! records), and pace the next receive (see `linger`).

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use trunkstore_proxy::{Peer, Transport};

use crate::core::Core;
use crate::drive::Driver;
use crate::errors::ErrorKind;
use crate::linger::{Next, Pacer};
use crate::sys::{self, RecvBatch};
use crate::udp::UdpSocket;

/// What one worker thread needs.
pub(crate) struct Worker<C: Core> {
    pub(crate) driver: Driver<C>,
    /// Index of the listener in the outbound sockets, and its bound address.
    pub(crate) listener: usize,
    pub(crate) local: SocketAddr,
    pub(crate) socket: Arc<UdpSocket>,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) batch: usize,
    /// The longest sleep between batches of a saturated worker (zero: never).
    pub(crate) linger: Duration,
}

impl<C: Core> Worker<C> {
    /// The worker loop: receive, hand to the core, fire due timers, send; until stopped.
    pub(crate) fn run(mut self) {
        let mut batch = RecvBatch::new(self.batch);
        let mut pacer = Pacer::new(self.linger, batch.capacity());
        let mut next = Next::Block;
        let mut unreachable = Vec::new();
        while !self.stop.load(Ordering::Relaxed) {
            let received = self.receive(&mut batch, next);
            let now = Instant::now();
            let n = match received {
                Ok(n) => {
                    self.deliver(&batch, now);
                    n
                }
                Err(e) if is_quiet(&e) => 0,
                Err(e) => {
                    self.icmp_errors(&e, now, &mut unreachable);
                    0
                }
            };
            let own = Some((self.listener, &self.socket.socket));
            self.driver.settle(now, own);
            next = pacer.after_receive(n, n >= batch.capacity(), now);
        }
    }

    /// One receive as `next` says: blocking with the shard's deadline as the socket's
    /// timeout, or without blocking after a full batch or a sleep.
    fn receive(&self, batch: &mut RecvBatch, next: Next) -> io::Result<usize> {
        let socket = &self.socket.socket;
        match next {
            Next::Block => {
                self.socket.arm_for(self.driver.deadline(), Instant::now());
                batch.recv(socket)
            }
            Next::Drain => batch.recv_nowait(socket),
            Next::Sleep(linger) => {
                // Only a saturated worker sleeps (see `linger`), and then the whole sleep
                // even when a timer falls due sooner: under load timers fall due every
                // fraction of a millisecond (most are stale retransmission timers), and
                // waking for each would halve the batches. SIP timers are 500 ms and up.
                std::thread::sleep(linger);
                batch.recv_nowait(socket)
            }
        }
    }

    /// A receive failed: with `IP_RECVERR` that is how the socket says ICMP errors are
    /// queued (the pending error is returned once, before any datagram queued behind
    /// it, which the next receive takes). Each destination they name unreachable is a
    /// transport error. Only an error that is none of these is logged (and paced).
    fn icmp_errors(&mut self, e: &io::Error, now: Instant, unreachable: &mut Vec<SocketAddr>) {
        let queued = sys::take_icmp_errors(&self.socket.socket, unreachable);
        for to in unreachable.drain(..) {
            tracing::debug!(%to, "ICMP: destination unreachable");
            let peer = Peer {
                transport: Transport::Udp,
                addr: to,
            };
            self.driver.transport_error(now, peer, ErrorKind::Icmp);
        }
        // Read by another thread sharing the socket, or not an ICMP error at all.
        if queued == 0 && !sys::is_async_icmp_error(e) {
            note_recv_error(e);
        }
    }

    fn deliver(&mut self, batch: &RecvBatch, now: Instant) {
        for (from, data) in batch.datagrams() {
            // A banned source costs us no parsing (behaviour.md §8).
            if !self.driver.admits(from, now) {
                continue;
            }
            // CRLF keep-alives (RFC 5626) need no answer over UDP and are not messages.
            if data.is_empty() || trunkstore_sip::framing::is_keepalive(&data) {
                continue;
            }
            let peer = Peer {
                transport: Transport::Udp,
                addr: from,
            };
            self.driver.datagram(now, peer, self.local, data);
        }
    }
}

/// A receive timeout or a signal: normal, nothing to look at.
fn is_quiet(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// Logs a receive error that is neither quiet nor an ICMP error (rare: a peer cannot
/// cause one on an unconnected socket).
fn note_recv_error(e: &io::Error) {
    tracing::warn!(error = %e, "UDP receive failed");
    // Avoid spinning if the error persists.
    std::thread::sleep(Duration::from_millis(10));
}
