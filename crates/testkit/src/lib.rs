//! Real servers the tests start on loopback, each killed when its handle is dropped:
//! `redis-server` ([`Redis`]) for the cluster tests and dnsmasq ([`Dnsmasq`]) for RFC 3263.
//! `tests/run.sh` installs both (Debian packages, services disabled). A dev-dependency only:
//! nothing here is part of the product.

#![warn(missing_docs, unreachable_pub)]

mod dnsmasq;
mod redis;

pub use dnsmasq::Dnsmasq;
pub use redis::Redis;

use std::net::TcpListener;
use std::time::{Duration, Instant};

/// A TCP port free on 127.0.0.1 right now (the OS's pick; a race with another process is
/// possible, so starters that can see a taken port retry).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Polls `ready` every 20 ms until it holds or `limit` passes; true if it held.
fn wait_until(limit: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if ready() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends `signal` to `pid` (a child of the test).
fn signal(pid: u32, signal: libc::c_int) {
    // SAFETY: kill(2) on a pid the caller started.
    let rc = unsafe { libc::kill(pid as libc::pid_t, signal) };
    assert_eq!(rc, 0, "signal {signal} to {pid}");
}
