//! UDP listeners and their sockets (the worker threads are in `udp_worker`).
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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use crate::rcvtimeo::{self, Armed};
use crate::sys;

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
    pub(crate) addr: SocketAddr,
    pub(crate) sockets: Vec<Arc<UdpSocket>>,
}

/// A bound socket and the receive timeout last armed on it.
pub(crate) struct UdpSocket {
    pub(crate) socket: Socket,
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
    pub(crate) fn arm_for(&self, deadline: Option<Instant>, now: Instant) {
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
    // ICMP errors for what we send (port unreachable from a dead PBX) fail the
    // transactions towards that peer at once (behaviour.md §4.5); without them only
    // timer B would.
    if let Err(e) = sys::enable_icmp_errors(&s, addr.is_ipv6()) {
        tracing::warn!(error = %e, %addr, "cannot enable ICMP errors on the UDP socket");
    }
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
