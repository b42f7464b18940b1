//! UDP listeners and worker threads.
//!
//! Each worker thread owns one shard and blocks in `recvmmsg` on its own socket: with
//! `SO_REUSEPORT` every worker has a socket bound to the listen address and the kernel
//! spreads peers (by address hash) over them, so no two threads wait on one socket and
//! each worker's `SO_RCVTIMEO` is its own timer (see `rcvtimeo`). No epoll, no wake-up
//! hand-off between threads: a busy worker makes about one receive and one send call per
//! message or fewer (batched), an idle one makes none. `UdpMode::Shared` (one socket
//! waited on by every worker) is kept for measurements; see the crate docs for numbers.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use trunkstore_proxy::{Peer, Transport};

use crate::core::Core;
use crate::linger::{Next, Pacer};
use crate::outbound::{Flusher, Outbound};
use crate::rcvtimeo::{self, Armed};
use crate::sys::{self, RecvBatch};

/// How worker threads share a UDP listen address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UdpMode {
    /// One `SO_REUSEPORT` socket per worker (default).
    #[default]
    ReusePort,
    /// One socket for all workers of the address.
    Shared,
}

/// One UDP listen address and its sockets (one per worker, or one shared).
pub(crate) struct UdpListener {
    /// The address bound (an ephemeral port resolved).
    pub addr: SocketAddr,
    pub sockets: Vec<Arc<UdpSocket>>,
}

/// A bound socket and the receive timeout last armed on it.
pub(crate) struct UdpSocket {
    pub socket: Socket,
    /// `SO_RCVTIMEO` in µs as last set (`u64::MAX`: none), so it is changed only when
    /// needed; shared by the workers waiting on this socket.
    armed_us: AtomicU64,
}

impl UdpSocket {
    fn armed(&self) -> Armed {
        match self.armed_us.load(Ordering::Relaxed) {
            u64::MAX => None,
            us => Some(Duration::from_micros(us)),
        }
    }

    /// Arms the receive timeout for a shard whose next deadline is `deadline`.
    fn arm_for(&self, deadline: Option<Instant>, now: Instant) {
        let left = deadline.map(|d| d.saturating_duration_since(now));
        let Some(new) = rcvtimeo::rearm(self.armed(), left) else {
            return;
        };
        match sys::set_recv_timeout(&self.socket, new) {
            Ok(()) => {
                let us = new.map_or(u64::MAX, |d| d.as_micros() as u64);
                self.armed_us.store(us, Ordering::Relaxed);
            }
            Err(e) => tracing::warn!(error = %e, "cannot set the UDP receive timeout"),
        }
    }
}

/// Binds `count` sockets for `addr` (one when not `reuse_port`). With port 0 the first
/// socket picks the port and the others join it.
pub(crate) fn bind_listener(
    addr: SocketAddr,
    count: usize,
    reuse_port: bool,
    recv_buffer: usize,
) -> io::Result<UdpListener> {
    let mut sockets = Vec::with_capacity(count);
    let mut bound = addr;
    for _ in 0..count.max(1) {
        let s = bind_socket(bound, reuse_port, recv_buffer)?;
        if let Some(local) = s.local_addr()?.as_socket() {
            bound = local;
        }
        sockets.push(Arc::new(UdpSocket {
            socket: s,
            armed_us: AtomicU64::new(u64::MAX),
        }));
    }
    Ok(UdpListener {
        addr: bound,
        sockets,
    })
}

fn bind_socket(addr: SocketAddr, reuse_port: bool, recv_buffer: usize) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        // IPv4 has its own listener; a dual-stack socket would steal its port.
        s.set_only_v6(true)?;
    }
    #[cfg(all(unix, not(target_os = "solaris"), not(target_os = "illumos")))]
    if reuse_port {
        s.set_reuse_port(true)?;
    }
    set_recv_buffer(&s, recv_buffer);
    s.bind(&addr.into())?;
    Ok(s)
}

/// Asks for `size` bytes of receive buffer: first past `net.core.rmem_max` where we are
/// allowed to (SO_RCVBUFFORCE, needs CAP_NET_ADMIN), else as far as the limit allows.
fn set_recv_buffer(s: &Socket, size: usize) {
    if !force_recv_buffer(s, size) {
        if let Err(e) = s.set_recv_buffer_size(size) {
            tracing::warn!(error = %e, size, "cannot set the UDP receive buffer");
        }
    }
    if let Ok(got) = s.recv_buffer_size() {
        // Linux reports twice the requested size (it counts its bookkeeping).
        if got < size {
            tracing::warn!(
                requested = size,
                got,
                "UDP receive buffer capped by net.core.rmem_max"
            );
        }
    }
}

#[cfg(target_os = "linux")]
fn force_recv_buffer(s: &Socket, size: usize) -> bool {
    use std::os::fd::AsRawFd;
    let v = size.min(i32::MAX as usize) as libc::c_int;
    // SAFETY: a plain int option on a valid descriptor.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    r == 0
}

#[cfg(not(target_os = "linux"))]
fn force_recv_buffer(_s: &Socket, _size: usize) -> bool {
    false
}

/// What one worker thread needs.
pub(crate) struct Worker<C: Core> {
    pub core: Arc<C>,
    pub out: Arc<Outbound>,
    /// Index of the listener in `out`.
    pub listener: usize,
    pub socket: Arc<UdpSocket>,
    pub stop: Arc<AtomicBool>,
    pub batch: usize,
    /// Sleep between batches under load (zero: never).
    pub linger: Duration,
}

impl<C: Core> Worker<C> {
    /// The worker loop: receive, hand to the core, fire due timers, send; until stopped.
    /// Under load it sleeps a little between batches (see `linger`).
    pub fn run(self) {
        let mut shard = self.core.new_shard();
        let mut batch = RecvBatch::new(self.batch);
        let mut flusher = Flusher::new(&self.out);
        let local = self.out.udp_addr(self.listener);
        let own = Some((self.listener, &self.socket.socket));
        let mut pacer = Pacer::new(self.linger, batch.capacity(), Instant::now());
        let mut next = Next::Block;
        while !self.stop.load(Ordering::Relaxed) {
            let received = self.receive(&mut batch, next, C::poll_timeout(&shard));
            let now = Instant::now();
            let n = match received {
                Ok(n) => {
                    self.deliver(&mut shard, &batch, local, now);
                    n
                }
                Err(e) => {
                    note_recv_error(&e);
                    0
                }
            };
            if C::poll_timeout(&shard).is_some_and(|d| d <= now) {
                self.core.handle_timeouts(&mut shard, now);
            }
            flusher.flush(&*self.core, &mut shard, &self.out, own);
            next = pacer.after_receive(n, n >= batch.capacity(), now);
        }
    }

    /// One receive as `next` says: blocking with the shard's deadline as the socket's
    /// timeout, or without blocking after a linger.
    fn receive(
        &self,
        batch: &mut RecvBatch,
        next: Next,
        deadline: Option<Instant>,
    ) -> io::Result<usize> {
        let socket = &self.socket.socket;
        match next {
            Next::Block => {
                self.socket.arm_for(deadline, Instant::now());
                batch.recv(socket)
            }
            Next::Drain => batch.recv_nowait(socket),
            Next::Sleep(linger) => {
                // The whole linger, even when a timer falls due sooner: under load timers
                // fall due every fraction of a millisecond (most are stale retransmission
                // timers), and waking for each would halve the batches. SIP timers are
                // 500 ms and up; being up to one linger late does not matter.
                std::thread::sleep(linger);
                batch.recv_nowait(socket)
            }
        }
    }

    fn deliver(&self, shard: &mut C::Shard, batch: &RecvBatch, local: SocketAddr, now: Instant) {
        for (from, data) in batch.datagrams() {
            // A banned source costs us no parsing (behaviour.md §8).
            if !self.core.admits(from, now) {
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
            self.core.handle_datagram(shard, now, peer, local, data);
        }
    }
}

/// A receive timeout or a signal is normal; anything else is logged (rarely: it cannot
/// be caused by a peer on an unconnected socket).
fn note_recv_error(e: &io::Error) {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted => {}
        _ => {
            tracing::warn!(error = %e, "UDP receive failed");
            // Avoid spinning if the error persists.
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
