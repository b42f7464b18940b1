//! Batched UDP system calls (`recvmmsg`, `sendmmsg`) on Linux, with a portable
//! one-datagram-per-call fallback elsewhere.
//!
//! Every syscall costs about 10 µs of CPU on the target VMs, more than parsing a message,
//! so a worker receives everything queued in one call and sends everything one event
//! produced (e.g. the 100 Trying and the forwarded INVITE) in one call.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use socket2::{SockAddr, Socket};

/// Largest UDP payload; a bigger datagram cannot exist, so a slot never truncates.
pub(crate) const SLOT: usize = 65_536;

/// Room for any socket address in a receive header.
#[cfg(target_os = "linux")]
const ADDR_LEN: libc::socklen_t = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;

/// Receive buffers for one worker: `n` slots of [`SLOT`] bytes, reused for every call.
pub(crate) struct RecvBatch {
    bufs: Vec<Box<[u8]>>,
    #[cfg(target_os = "linux")]
    addrs: Vec<libc::sockaddr_storage>,
    #[cfg(target_os = "linux")]
    iovs: Vec<libc::iovec>,
    #[cfg(target_os = "linux")]
    hdrs: Vec<libc::mmsghdr>,
    received: Vec<(usize, Option<SocketAddr>)>,
}

// The raw pointers in `iovs`/`hdrs` only point into this struct's own heap buffers.
unsafe impl Send for RecvBatch {}

impl RecvBatch {
    pub(crate) fn new(n: usize) -> RecvBatch {
        let n = n.max(1);
        let mut batch = RecvBatch {
            bufs: (0..n).map(|_| vec![0u8; SLOT].into_boxed_slice()).collect(),
            #[cfg(target_os = "linux")]
            // SAFETY: all-zero is a valid sockaddr_storage / iovec / mmsghdr.
            addrs: vec![unsafe { std::mem::zeroed() }; n],
            #[cfg(target_os = "linux")]
            iovs: vec![unsafe { std::mem::zeroed() }; n],
            #[cfg(target_os = "linux")]
            hdrs: vec![unsafe { std::mem::zeroed() }; n],
            received: Vec::with_capacity(n),
        };
        #[cfg(target_os = "linux")]
        batch.point_headers();
        batch
    }

    /// Points every header at its slot, address and iovec once: the vectors are never
    /// resized, so their heap storage (what the pointers name) never moves, and a receive
    /// only has to restore what the kernel wrote back (see `restore_used`) instead of
    /// rewriting all the slots' headers (~800 stores for 64 slots) before every call.
    #[cfg(target_os = "linux")]
    fn point_headers(&mut self) {
        for i in 0..self.bufs.len() {
            self.iovs[i] = libc::iovec {
                iov_base: self.bufs[i].as_mut_ptr().cast(),
                iov_len: SLOT,
            };
            let hdr = &mut self.hdrs[i].msg_hdr;
            hdr.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            hdr.msg_namelen = ADDR_LEN;
            hdr.msg_iov = &mut self.iovs[i];
            hdr.msg_iovlen = 1;
            hdr.msg_control = std::ptr::null_mut();
            hdr.msg_controllen = 0;
            hdr.msg_flags = 0;
            self.hdrs[i].msg_len = 0;
        }
    }

    /// The kernel writes back, in each slot it filled, the address's length and the
    /// datagram's length and flags; the next receive needs the full address room again.
    #[cfg(target_os = "linux")]
    fn restore_used(&mut self, used: usize) {
        for h in &mut self.hdrs[..used] {
            h.msg_hdr.msg_namelen = ADDR_LEN;
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
        }
    }

    /// Blocks until at least one datagram arrives (or the socket's receive timeout
    /// expires: `WouldBlock`), then takes every queued one that fits. Returns how many.
    pub(crate) fn recv(&mut self, socket: &Socket) -> io::Result<usize> {
        self.recv_flags(socket, false)
    }

    /// Takes every queued datagram that fits without blocking; `Ok(0)` if none.
    pub(crate) fn recv_nowait(&mut self, socket: &Socket) -> io::Result<usize> {
        match self.recv_flags(socket, true) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.received.clear();
                Ok(0)
            }
            other => other,
        }
    }

    /// Slots in the batch: a receive that filled them all may have left more queued.
    pub(crate) fn capacity(&self) -> usize {
        self.bufs.len()
    }

    #[cfg(target_os = "linux")]
    fn recv_flags(&mut self, socket: &Socket, nowait: bool) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        let n = self.bufs.len();
        let flags = if nowait {
            libc::MSG_DONTWAIT
        } else {
            libc::MSG_WAITFORONE
        };
        // SAFETY: every header points at live buffers owned by self, sized as declared.
        let r = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                n as libc::c_uint,
                flags as _,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            let error = io::Error::last_os_error();
            // Nothing was received, but the first slot may have been written to.
            self.restore_used(1);
            return Err(error);
        }
        let r = r as usize;
        self.received.clear();
        for i in 0..r {
            let hdr = &self.hdrs[i];
            let from = sockaddr_to_std(&self.addrs[i], hdr.msg_hdr.msg_namelen);
            self.received.push((hdr.msg_len as usize, from));
        }
        self.restore_used(r);
        Ok(r)
    }

    #[cfg(not(target_os = "linux"))]
    fn recv_flags(&mut self, socket: &Socket, nowait: bool) -> io::Result<usize> {
        use std::mem::MaybeUninit;
        let buf = &mut self.bufs[0];
        // SAFETY: u8 and MaybeUninit<u8> have the same layout; the buffer is initialised.
        let uninit = unsafe { &mut *(&mut buf[..] as *mut [u8] as *mut [MaybeUninit<u8>]) };
        socket.set_nonblocking(nowait)?;
        let got = socket.recv_from(uninit);
        socket.set_nonblocking(false)?;
        let (len, from) = got?;
        self.received.clear();
        self.received.push((len, from.as_socket()));
        Ok(1)
    }

    /// The datagrams of the last `recv`, copied out of the slots (the core keeps them
    /// for the life of a transaction: an exact-size copy holds far less than a slot).
    /// Datagrams whose source is not an IP address are skipped.
    pub(crate) fn datagrams(&self) -> impl Iterator<Item = (SocketAddr, Bytes)> + '_ {
        self.received
            .iter()
            .zip(self.bufs.iter())
            .filter_map(|(&(len, from), buf)| {
                let data = buf.get(..len)?;
                Some((from?, Bytes::copy_from_slice(data)))
            })
    }
}

#[cfg(target_os = "linux")]
fn sockaddr_to_std(addr: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    // SAFETY: the kernel wrote `len` bytes of a socket address into the storage.
    let sa = unsafe { SockAddr::new(*addr, len) };
    sa.as_socket()
}

/// Outgoing datagrams of one socket, sent with as few calls as possible.
#[derive(Default)]
pub(crate) struct SendBatch {
    items: Vec<(SockAddr, Bytes)>,
}

/// A datagram the kernel refused for a reason other than a full buffer.
pub(crate) struct SendFailure {
    pub(crate) to: SocketAddr,
    pub(crate) error: io::Error,
}

impl SendBatch {
    pub(crate) fn push(&mut self, to: SocketAddr, data: Bytes) {
        self.items.push((SockAddr::from(to), data));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Sends everything without blocking and empties the batch. A full send buffer drops
    /// the datagram (UDP is lossy; SIP retransmits); other errors are returned so the
    /// core can fail the transactions towards that peer.
    ///
    /// With `IP_RECVERR` a send also returns an ICMP error pending on the socket, caused
    /// by an earlier datagram to some other peer, and this datagram is not sent: the
    /// error queue then names the real offenders (added to `unreachable`) and the
    /// datagram is tried again (a few times: while we send to a dead peer on loopback,
    /// its ICMP errors keep arriving between our calls).
    pub(crate) fn flush(
        &mut self,
        socket: &Socket,
        failures: &mut Vec<SendFailure>,
        unreachable: &mut Vec<SocketAddr>,
    ) {
        let mut start = 0;
        let mut retries = 0;
        let mut short = false;
        while start < self.items.len() {
            match send_some(socket, &self.items[start..]) {
                Ok(sent) => {
                    // `sendmmsg` stops at the first failure and, having sent some, does
                    // not say which: that may have been a pending ICMP error (consumed),
                    // whose queue entries must still be read.
                    short |= sent < self.items.len() - start;
                    start += sent.max(1);
                    retries = 0;
                }
                Err(error) => {
                    if !is_transient(&error) {
                        let queued = take_icmp_errors(socket, unreachable);
                        if retries < MAX_SEND_RETRIES && (queued > 0 || is_never_own(&error)) {
                            retries += 1;
                            continue;
                        }
                        if let Some(to) = self.items[start].0.as_socket() {
                            failures.push(SendFailure { to, error });
                        }
                    }
                    start += 1;
                    retries = 0;
                }
            }
        }
        if short {
            take_icmp_errors(socket, unreachable);
        }
        self.items.clear();
    }
}

/// Sends of one datagram that failed only because of other peers' ICMP errors, retried.
const MAX_SEND_RETRIES: u32 = 64;

/// A send error that cannot be the datagram's own: a UDP send is never refused by its
/// destination, only a pending ICMP error reads as "connection refused".
fn is_never_own(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::ConnectionRefused
}

/// Errors at most read from one socket's error queue per call; the rest are read on the
/// next error the socket reports (the kernel reports one while any is queued).
const MAX_QUEUED_ERRORS: usize = 256;

/// Asks the kernel to queue ICMP errors for datagrams sent from `socket` (`IP_RECVERR`,
/// `IPV6_RECVERR`), so that a dead peer is known in milliseconds rather than at timer B
/// (read with [`take_icmp_errors`]).
#[cfg(target_os = "linux")]
pub(crate) fn enable_icmp_errors(socket: &Socket, ipv6: bool) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let (level, name) = if ipv6 {
        (libc::SOL_IPV6, libc::IPV6_RECVERR)
    } else {
        (libc::SOL_IP, libc::IP_RECVERR)
    };
    let on: libc::c_int = 1;
    // SAFETY: a plain int option on a valid descriptor.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn enable_icmp_errors(_socket: &Socket, _ipv6: bool) -> io::Result<()> {
    Ok(())
}

/// Reads the socket's error queue without blocking (`MSG_ERRQUEUE`): every ICMP error
/// that means the destination cannot be reached adds that destination (the address the
/// original datagram was sent to) to `unreachable`. Returns how many entries were read,
/// of any kind (0: the queue was empty). Runs only after a socket call reported an
/// error, so it costs nothing while there are none.
#[cfg(target_os = "linux")]
pub(crate) fn take_icmp_errors(socket: &Socket, unreachable: &mut Vec<SocketAddr>) -> usize {
    use std::os::fd::AsRawFd;
    let mut read = 0;
    while read < MAX_QUEUED_ERRORS {
        // SAFETY: all-zero is a valid sockaddr_storage / msghdr.
        let mut name: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        // The offending datagram's payload is not needed: one byte, the rest truncated.
        let mut byte = [0u8; 1];
        let mut iov = libc::iovec {
            iov_base: byte.as_mut_ptr().cast(),
            iov_len: byte.len(),
        };
        // u64s: aligned for cmsghdr; room for the extended error and its offender.
        let mut control = [0u64; 32];
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = (&mut name as *mut libc::sockaddr_storage).cast();
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        // SAFETY: every pointer in `msg` points at a live local sized as declared.
        let r = unsafe {
            libc::recvmsg(
                socket.as_raw_fd(),
                &mut msg,
                libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT,
            )
        };
        if r < 0 {
            break;
        }
        read += 1;
        if extended_error(&msg).is_some_and(|e| icmp_means_unreachable(e.0, e.1, e.2)) {
            if let Some(to) = sockaddr_to_std(&name, msg.msg_namelen) {
                unreachable.push(to);
            }
        }
    }
    read
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn take_icmp_errors(_socket: &Socket, _unreachable: &mut Vec<SocketAddr>) -> usize {
    0
}

/// `(origin, ICMP type, ICMP code)` of the extended error in an error-queue message.
#[cfg(target_os = "linux")]
fn extended_error(msg: &libc::msghdr) -> Option<(u8, u8, u8)> {
    // SAFETY: walks the control data the kernel just wrote, by its own lengths; the
    // payload is read unaligned.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            let (level, ty) = ((*c).cmsg_level, (*c).cmsg_type);
            if (level == libc::SOL_IP && ty == libc::IP_RECVERR)
                || (level == libc::SOL_IPV6 && ty == libc::IPV6_RECVERR)
            {
                let e =
                    std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::sock_extended_err>());
                return Some((e.ee_origin, e.ee_type, e.ee_code));
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
    None
}

/// Does this ICMP error say the destination cannot be reached? RFC 3261 §18.4: host,
/// network, port or protocol unreachable and parameter problem are transport failures;
/// source quench and TTL exceeded are not, and neither is "fragmentation needed" /
/// "packet too big" (path MTU discovery, the kernel handles it).
pub(crate) fn icmp_means_unreachable(origin: u8, icmp_type: u8, code: u8) -> bool {
    /// `SO_EE_ORIGIN_ICMP` and `SO_EE_ORIGIN_ICMP6` (linux/errqueue.h).
    const ORIGIN_ICMP: u8 = 2;
    const ORIGIN_ICMP6: u8 = 3;
    match origin {
        // Destination unreachable except fragmentation needed (code 4); parameter problem.
        ORIGIN_ICMP => (icmp_type == 3 && code != 4) || icmp_type == 12,
        // Destination unreachable (every code), parameter problem.
        ORIGIN_ICMP6 => icmp_type == 1 || icmp_type == 4,
        _ => false,
    }
}

/// An error a UDP socket call returns because an ICMP error is pending on the socket
/// (`IP_RECVERR`), for an earlier datagram: on a receive it is never the call's own
/// failure (on a send, unreachable may also be the route's answer for this datagram).
pub(crate) fn is_async_icmp_error(e: &io::Error) -> bool {
    #[cfg(unix)]
    {
        matches!(
            e.raw_os_error(),
            Some(libc::ECONNREFUSED | libc::EHOSTUNREACH | libc::ENETUNREACH | libc::EPROTO)
        )
    }
    #[cfg(not(unix))]
    {
        let _ = e;
        false
    }
}

fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    ) || e.raw_os_error() == Some(libc_enobufs())
}

#[cfg(unix)]
fn libc_enobufs() -> i32 {
    libc::ENOBUFS
}

#[cfg(not(unix))]
fn libc_enobufs() -> i32 {
    -1
}

/// Sends a prefix of `items` in one call; returns how many left.
#[cfg(target_os = "linux")]
fn send_some(socket: &Socket, items: &[(SockAddr, Bytes)]) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    if items.len() == 1 {
        let (to, data) = &items[0];
        return socket
            .send_to_with_flags(data, to, libc::MSG_DONTWAIT)
            .map(|_| 1);
    }
    // The kernel accepts at most UIO_MAXIOV (1024) messages per call.
    let items = &items[..items.len().min(1024)];
    let mut iovs: Vec<libc::iovec> = items
        .iter()
        .map(|(_, d)| libc::iovec {
            iov_base: d.as_ptr() as *mut libc::c_void,
            iov_len: d.len(),
        })
        .collect();
    let mut hdrs: Vec<libc::mmsghdr> = items
        .iter()
        .zip(iovs.iter_mut())
        .map(|((to, _), iov)| {
            // SAFETY: all-zero is a valid mmsghdr; the pointers set below outlive the call.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_name = to.as_ptr() as *mut libc::c_void;
            h.msg_hdr.msg_namelen = to.len();
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_iovlen = 1;
            h
        })
        .collect();
    // SAFETY: headers point at addresses and payloads borrowed for the whole call.
    let r = unsafe {
        libc::sendmmsg(
            socket.as_raw_fd(),
            hdrs.as_mut_ptr(),
            hdrs.len() as libc::c_uint,
            libc::MSG_DONTWAIT,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r as usize)
}

#[cfg(not(target_os = "linux"))]
fn send_some(socket: &Socket, items: &[(SockAddr, Bytes)]) -> io::Result<usize> {
    let (to, data) = &items[0];
    socket.send_to(data, to).map(|_| 1)
}

/// Sets `SO_RCVTIMEO`; `None` blocks indefinitely.
pub(crate) fn set_recv_timeout(socket: &Socket, timeout: Option<Duration>) -> io::Result<()> {
    socket.set_read_timeout(timeout)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use socket2::{Domain, Type};
    use std::net::UdpSocket;

    fn receiver() -> (Socket, SocketAddr) {
        let s = Socket::new(Domain::IPV4, Type::DGRAM, None).unwrap();
        s.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        let addr = s.local_addr().unwrap().as_socket().unwrap();
        (s, addr)
    }

    #[test]
    fn every_receive_sees_each_datagram_with_its_own_source() {
        let (rx, to) = receiver();
        let mut batch = RecvBatch::new(4);
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        for round in 0..3 {
            a.send_to(format!("a{round}").as_bytes(), to).unwrap();
            b.send_to(format!("bb{round}").as_bytes(), to).unwrap();
            let mut got = Vec::new();
            while got.len() < 2 {
                assert!(batch.recv(&rx).unwrap() > 0);
                got.extend(batch.datagrams());
            }
            let want = [
                (a.local_addr().unwrap(), format!("a{round}")),
                (b.local_addr().unwrap(), format!("bb{round}")),
            ];
            for (g, w) in got.iter().zip(want.iter()) {
                assert_eq!((g.0, &g.1[..]), (w.0, w.1.as_bytes()));
            }
        }
    }

    #[test]
    fn a_receive_restores_the_address_room_of_the_slots_it_used() {
        let (rx, to) = receiver();
        let mut batch = RecvBatch::new(4);
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        a.send_to(b"x", to).unwrap();
        assert_eq!(batch.recv(&rx).unwrap(), 1);
        assert!(batch.hdrs.iter().all(|h| h.msg_hdr.msg_namelen == ADDR_LEN));
        assert_eq!(batch.recv_nowait(&rx).unwrap(), 0);
        assert!(batch.hdrs.iter().all(|h| h.msg_hdr.msg_namelen == ADDR_LEN));
    }
}
