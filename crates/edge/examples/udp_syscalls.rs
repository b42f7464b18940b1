//! Measures the UDP edge's system calls and CPU per message with an echo core (one
//! datagram out per datagram in, like a proxy relaying).
//!
//! ```sh
//! udp_syscalls serve 127.0.0.1:15999 <reuseport|shared> <batch> <workers>
//! udp_syscalls load 127.0.0.1:15999 <msgs_per_sec> <seconds> <spread|burst>
//! ```
//! Count the server's syscalls with `perf stat -e raw_syscalls:sys_enter -p PID` or
//! `strace -c -f -p PID` while `load` runs; `load` prints messages sent and echoed.

use std::collections::VecDeque;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use trunkstore_edge::{Core, Edge, EdgeConfig, UdpMode};
use trunkstore_proxy::{Peer, Transmit};
use trunkstore_sip::message::Message;

struct Echo;

impl Core for Echo {
    type Shard = VecDeque<Transmit>;
    fn new_shard(&self) -> Self::Shard {
        VecDeque::new()
    }
    fn handle_datagram(
        &self,
        s: &mut Self::Shard,
        _: Instant,
        from: Peer,
        local: SocketAddr,
        data: Bytes,
    ) {
        s.push_back(Transmit {
            to: from,
            from: Some(local),
            data,
            tls_name: None,
        });
    }
    fn handle_message(&self, _: &mut Self::Shard, _: Instant, _: Peer, _: SocketAddr, _: Message) {}
    fn handle_timeouts(&self, _: &mut Self::Shard, _: Instant) {}
    fn handle_transport_error(&self, _: &mut Self::Shard, _: Instant, _: Peer) {}
    fn poll_transmit(s: &mut Self::Shard) -> Option<Transmit> {
        s.pop_front()
    }
    fn poll_timeout(_: &Self::Shard) -> Option<Instant> {
        None
    }
    fn begin_shutdown(&self) {}
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    let addr: SocketAddr = arg(2).parse().expect("address");
    match arg(1) {
        "serve" => serve(
            addr,
            arg(3),
            arg(4).parse().unwrap_or(16),
            arg(5).parse().unwrap_or(1),
        ),
        "load" => load(
            addr,
            arg(3).parse().unwrap_or(7000),
            arg(4).parse().unwrap_or(5),
            arg(5) == "burst",
        ),
        _ => eprintln!("usage: see the source"),
    }
}

fn serve(addr: SocketAddr, mode: &str, batch: usize, workers: usize) {
    let config = EdgeConfig {
        udp: vec![addr],
        tcp: vec![],
        workers,
        udp_mode: if mode == "shared" {
            UdpMode::Shared
        } else {
            UdpMode::ReusePort
        },
        udp_batch: batch,
        udp_linger: Duration::from_micros(
            std::env::var("LINGER_US")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        ),
        udp_recv_buffer: 4 << 20,
        tcp_idle: Duration::from_secs(300),
        tcp_outbound_idle: Duration::from_secs(60),
        tcp_connect_timeout: Duration::from_secs(3),
        tcp_write_timeout: Duration::from_secs(10),
        max_tcp_connections: 16,
        max_tcp_connections_per_source: 16,
        limits: Default::default(),
        dns: None,
        tls: Default::default(),
    };
    let edge = Edge::start(config, Arc::new(Echo)).expect("start");
    println!(
        "serving on {:?} pid {}",
        edge.udp_addrs(),
        std::process::id()
    );
    loop {
        std::thread::park();
    }
}

/// Two peers (like SIPp's UAC and UAS) send ~500-byte datagrams at `rate` in total.
fn load(to: SocketAddr, rate: u64, secs: u64, burst: bool) {
    let peers: Vec<UdpSocket> = (0..2)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    let echoed = Arc::new(AtomicU64::new(0));
    for p in &peers {
        let p = p.try_clone().unwrap();
        p.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let echoed = echoed.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            loop {
                if p.recv_from(&mut buf).is_ok() {
                    echoed.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    let msg = vec![b'x'; 500];
    let total = rate * secs;
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < total {
        // Burst: a millisecond's worth at once; spread: each at its own time.
        let due = start + Duration::from_nanos(sent * 1_000_000_000 / rate);
        let now = Instant::now();
        if due > now {
            if burst {
                std::thread::sleep(Duration::from_millis(1));
            } else {
                while Instant::now() < due {
                    std::hint::spin_loop();
                }
            }
        }
        let now_due = ((start.elapsed().as_nanos() as u64) * rate / 1_000_000_000).min(total);
        let target = now_due.max(sent + 1);
        while sent < target {
            let _ = peers[(sent % 2) as usize].send_to(&msg, to);
            sent += 1;
        }
    }
    std::thread::sleep(Duration::from_millis(600));
    println!(
        "sent {sent} in {:?}, echoed ~{}",
        start.elapsed(),
        echoed.load(Ordering::Relaxed)
    );
}
