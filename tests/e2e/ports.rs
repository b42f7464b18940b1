//! Free loopback ports for tests that start the real binary. Shared by the end-to-end
//! tests and by `crates/trunkstore/tests` (included there by path: each test binary is
//! its own crate).

use std::collections::HashSet;
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::sync::{Mutex, MutexGuard, OnceLock};

const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// Ports already handed out in this process: the kernel may give a released ephemeral
/// port again, and tests run in parallel threads.
fn handed_out() -> MutexGuard<'static, HashSet<u16>> {
    static PORTS: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    PORTS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// A port free for both UDP and TCP on loopback right now (the proxy listens on both
/// with the same number; SIPp binds its TCP client socket to its -p port). Found by
/// binding an ephemeral UDP port, then TCP on the same number, and releasing both.
pub fn free_port() -> u16 {
    for _ in 0..200 {
        let udp = UdpSocket::bind((LOOPBACK, 0)).expect("bind ephemeral udp port");
        let port = udp.local_addr().expect("udp local addr").port();
        let Ok(tcp) = TcpListener::bind((LOOPBACK, port)) else {
            continue;
        };
        drop((udp, tcp));
        if handed_out().insert(port) {
            return port;
        }
    }
    panic!("no free udp+tcp port pair on loopback after 200 tries");
}
