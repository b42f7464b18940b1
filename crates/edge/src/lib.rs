//! The I/O edge: sockets, threads and the clock driving the sans-IO proxy core.
//!
//! * **UDP** (the hot path): per listen address, `workers` threads, each owning one core
//!   shard and one `SO_REUSEPORT` socket, blocking in `recvmmsg` with the shard's next
//!   deadline as `SO_RCVTIMEO` (changed only when needed, see `rcvtimeo`). After every
//!   receive the worker fires due timers and sends everything produced with `sendmmsg`
//!   (non-blocking: a full buffer drops, SIP retransmits). No epoll and no hand-off
//!   between threads, so a message costs about one receive call and at most one send
//!   call, and fewer when several are queued. A worker never waits to batch unless it
//!   is saturated (see `linger`): below that, no message is held back.
//! * **Transport errors** (see `errors`): UDP sockets have `IP_RECVERR`, so an ICMP
//!   unreachable for a datagram we sent comes back as an error on the next socket call;
//!   the error queue is read then (never otherwise) and each destination named goes to
//!   the core ([`Core::handle_unreachable`]), as do refused connects, failed writes and
//!   outbound TCP connections reset or closed by the peer
//!   ([`Core::handle_transport_error`]). Bursts for one peer are folded (one per
//!   100 ms per driver) and every error is counted by kind ([`Edge::transport_errors`]).
//! * **TCP**: tokio tasks on one extra thread (connections are few and long-lived), a
//!   framer per connection, one driver task owning the TCP shard; see `tcp` and `tcp_driver`.
//! * **TLS**: TCP's code with a rustls session in each connection (`tls`): listeners with a
//!   certificate each (reloaded by [`Edge::reload_tls`]), outbound connections verified
//!   against the configured or system roots; their messages go to the same driver as TCP's.
//! * **Protection before parsing** (behaviour.md §8): a datagram or TCP read from a
//!   banned source is dropped before the core parses anything ([`Core::admits`], a
//!   lock-free question); a banned source's TCP connection is refused at accept or closed
//!   at its next read; one source may hold at most `max_tcp_connections_per_source`
//!   inbound connections ([`Core::admits_connection`]; carriers and IP-auth servers are
//!   exempt).
//!
//! Measured on the 2-vCPU VM (`examples/udp_syscalls.rs`: echo core, 7,000 datagrams/s
//! of 500 bytes from two peers for 3 s, syscalls counted with `perf stat -e
//! raw_syscalls:sys_enter`, CPU from /proc; every figure noisy by ~10%):
//!
//! | load | setup | syscalls/msg | CPU µs/msg |
//! |---|---|---|---|
//! | evenly spread | 1 worker, recvmmsg ×16 | 1.5–1.93 | 30–32 |
//! | evenly spread | 1 worker, recvfrom | 1.99 | 22–34 |
//! | 1 ms bursts | 1 worker, recvmmsg ×16 | 0.36 | 11.4 |
//! | 1 ms bursts | 1 worker, recvfrom | 1.99 | 13.8 |
//! | evenly spread | 2 workers, SO_REUSEPORT | 1.97 | 31 |
//! | evenly spread | 2 workers, one shared socket | 1.95 | 35 |
//! | 1 ms bursts | 2 workers, SO_REUSEPORT | 0.28 | 9.0 |
//! | 1 ms bursts | 2 workers, one shared socket | 0.63 | 10.5 |
//!
//! Spread traffic costs one receive and one send per message whatever we do (the floor:
//! each datagram is its own wake-up); as soon as datagrams queue up, `recvmmsg` and
//! `sendmmsg` collapse the calls, and per-worker `SO_REUSEPORT` sockets batch better than
//! workers taking turns on one socket. Hence: `SO_REUSEPORT` per worker, batches of 16.

#![warn(missing_docs, unreachable_pub)]

// Layers, bottom up (a module only uses those above it in this list; the workspace's
// crates/trunkstore/tests/layering.rs fails on any import loop):
// sys, rcvtimeo, linger, core, cdr, errors, dns: no other module of the crate;
// tls: rustls configurations (no other module of the crate);
// udp, tcp: sockets and connections;
// outbound: sending through them;
// drive: the only caller of a shard's handle_* and poll_*;
// udp_worker, tcp_driver: the threads and the task that own a driver.
pub mod cdr;
mod cluster;
mod core;
pub mod dns;
mod drive;
mod errors;
mod linger;
mod outbound;
mod rcvtimeo;
mod sys;
mod tcp;
mod tcp_driver;
mod tls;
mod udp;
mod udp_worker;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::mpsc;
use trunkstore_config::Settings;
use trunkstore_sip::limits::Limits;

pub use crate::cluster::ClusterMetrics;
pub use crate::core::Core;
pub use crate::errors::TransportErrors;
pub use crate::tls::{TlsListenerFiles, TlsSettings};
pub use crate::udp::UdpMode;

use crate::cdr::CdrSink;
use crate::drive::Driver;
use crate::outbound::Outbound;
use crate::tcp::{TcpConfig, TcpShared};

/// Datagrams taken per `recvmmsg` call (each slot is a 64 KiB buffer, of which only the
/// pages written are ever resident): about 2 ms of traffic at the highest rates measured
/// (about 30 datagrams per ms).
const DEFAULT_BATCH: usize = 64;

/// Everything the edge needs to start, usually from [`EdgeConfig::from_settings`].
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// UDP listen addresses (port 0: an ephemeral port, see [`Edge::udp_addrs`]).
    pub udp: Vec<SocketAddr>,
    /// TCP listen addresses.
    pub tcp: Vec<SocketAddr>,
    /// Worker threads per UDP listen address (at least 1).
    pub workers: usize,
    /// How the workers of one address share it.
    pub udp_mode: UdpMode,
    /// Datagrams per receive call; 1 receives one at a time.
    pub udp_batch: usize,
    /// The longest a **saturated** UDP worker (one that keeps finding full batches
    /// queued) sleeps between batches so that datagrams queue up and are received and
    /// sent with few calls; a worker that keeps up never sleeps (zero: never sleeps).
    pub udp_linger: Duration,
    /// SO_RCVBUF of UDP sockets.
    pub udp_recv_buffer: usize,
    /// An inbound TCP connection idle this long is closed.
    pub tcp_idle: Duration,
    /// An outbound TCP connection idle this long is closed.
    pub tcp_outbound_idle: Duration,
    /// How long an outgoing connect may take.
    pub tcp_connect_timeout: Duration,
    /// A write that makes no progress this long closes the connection.
    pub tcp_write_timeout: Duration,
    /// Cap on inbound TCP connections, and separately on outbound ones.
    pub max_tcp_connections: usize,
    /// Cap on inbound connections from one source (see
    /// [`trunkstore_proxy::auth::source_key`]), carriers and IP-auth servers excepted
    /// (the core says who they are, [`Core::admits_connection`]).
    pub max_tcp_connections_per_source: usize,
    /// Framing limits for TCP (UDP datagrams are checked by the core).
    pub limits: Limits,
    /// The resolver of names the core asks for (RFC 3263); `None`: no DNS, such targets
    /// fail as unreachable.
    pub dns: Option<trunkstore_config::Dns>,
    /// TLS listeners (with their certificates) and outbound TLS trust.
    pub tls: TlsSettings,
}

impl EdgeConfig {
    /// The edge as the settings' `listen`, `workers`, `transport` and `limits` say.
    pub fn from_settings(s: &Settings) -> EdgeConfig {
        let t = &s.transport;
        EdgeConfig {
            udp: s.listen.udp.clone(),
            tcp: s.listen.tcp.clone(),
            workers: resolve_workers(s.workers),
            udp_mode: UdpMode::default(),
            udp_batch: DEFAULT_BATCH,
            udp_linger: Duration::from_micros(t.udp_batch_linger_us.into()),
            udp_recv_buffer: t.udp_recv_buffer as usize,
            tcp_idle: Duration::from_secs(t.tcp_idle_timeout.into()),
            tcp_outbound_idle: Duration::from_secs(t.tcp_outbound_idle_timeout.into()),
            tcp_connect_timeout: Duration::from_millis(t.tcp_connect_timeout_ms.into()),
            tcp_write_timeout: Duration::from_secs(10),
            max_tcp_connections: s.limits.max_tcp_connections as usize,
            max_tcp_connections_per_source: s.limits.max_tcp_connections_per_source as usize,
            limits: Limits {
                max_message_size: s.limits.max_message_size as usize,
                max_headers: s.limits.max_headers as usize,
                ..Limits::default()
            },
            dns: Some(s.dns.clone()),
            tls: TlsSettings::from_settings(s),
        }
    }
}

/// `workers: 0` means one per CPU this process may run on (a pinned process gets one:
/// more threads than CPUs would only add context switches).
fn resolve_workers(configured: u32) -> usize {
    if configured > 0 {
        return configured as usize;
    }
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The running edge. Dropping it without [`stop`](Edge::stop) leaves the threads running
/// until the process exits.
pub struct Edge {
    udp_addrs: Vec<SocketAddr>,
    tcp_addrs: Vec<SocketAddr>,
    tls_addrs: Vec<SocketAddr>,
    tls_state: Arc<tls::TlsState>,
    stop: Arc<AtomicBool>,
    udp_sockets: Vec<Arc<udp::UdpSocket>>,
    threads: Vec<JoinHandle<()>>,
    runtime: tokio::runtime::Runtime,
    tcp: Arc<TcpShared>,
    tls: Arc<TcpShared>,
    errors: Arc<TransportErrors>,
}

impl Edge {
    /// Binds every listener, then starts the UDP workers and the TCP runtime. Fails
    /// (and starts nothing) if any address cannot be bound. Call records the core
    /// produces are dropped; see [`start_recording`](Edge::start_recording).
    pub fn start<C: Core>(config: EdgeConfig, core: Arc<C>) -> io::Result<Edge> {
        Edge::start_recording(config, core, None)
    }

    /// As [`start`](Edge::start), with every call record the core produces
    /// ([`Core::poll_call_record`]) handed to `records` (the CDR writer).
    pub fn start_recording<C: Core>(
        config: EdgeConfig,
        core: Arc<C>,
        records: Option<CdrSink>,
    ) -> io::Result<Edge> {
        let workers = config.workers.max(1);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("ts-tcp")
            .enable_all()
            .build()?;
        let per_listener = match config.udp_mode {
            UdpMode::ReusePort => workers,
            UdpMode::Shared => 1,
        };
        let udp: Vec<udp::UdpListener> = config
            .udp
            .iter()
            .map(|a| udp::bind_listener(*a, per_listener, per_listener > 1, config.udp_recv_buffer))
            .collect::<io::Result<_>>()?;
        let tcp_listeners: Vec<(std::net::TcpListener, SocketAddr)> = config
            .tcp
            .iter()
            .map(|a| {
                let l = tcp::bind_listener(*a)?;
                let bound = l.local_addr()?;
                Ok((l, bound))
            })
            .collect::<io::Result<_>>()?;
        let tcp_addrs: Vec<SocketAddr> = tcp_listeners.iter().map(|(_, a)| *a).collect();
        let tls_state = Arc::new(tls::TlsState::load(&config.tls)?);
        let tls_listeners: Vec<(std::net::TcpListener, SocketAddr)> = config
            .tls
            .listeners
            .iter()
            .map(|l| {
                let bound = tcp::bind_listener(l.address)?;
                let addr = bound.local_addr()?;
                Ok((bound, addr))
            })
            .collect::<io::Result<_>>()?;
        let tls_addrs: Vec<SocketAddr> = tls_listeners.iter().map(|(_, a)| *a).collect();

        let (events_tx, events_rx) = mpsc::channel(tcp::EVENT_QUEUE);
        let tcp = Arc::new(TcpShared::new(
            tcp_config(&config),
            tcp_addrs.clone(),
            events_tx,
            runtime.handle().clone(),
            core.clone(),
        ));
        let tls_shared = Arc::new(TcpShared::tls(
            &tcp,
            tls_addrs.clone(),
            tls_state.client.clone(),
        ));
        let out = Arc::new(Outbound::new(
            udp.iter().map(|l| (l.addr, l.sockets[0].clone())).collect(),
            tcp.clone(),
            tls_shared.clone(),
        ));
        let errors = Arc::new(TransportErrors::default());
        let resolver = drive::Resolver::start(
            config.dns.as_ref(),
            &config.udp,
            runtime.handle().clone(),
            tcp.events(),
        );
        let driver = |core: &Arc<C>| {
            Driver::new(core.clone(), out.clone(), records.clone(), errors.clone())
                .with_resolver(resolver.clone())
        };
        let tcp_driver = driver(&core);
        runtime.spawn(tcp_driver::drive(tcp_driver, events_rx));
        for (l, addr) in tcp_listeners {
            runtime.spawn(tcp::accept_loop(tcp.clone(), l, addr, None));
        }
        for ((l, addr), state) in tls_listeners.into_iter().zip(&tls_state.listeners) {
            let shared = tls_shared.clone();
            runtime.spawn(tcp::accept_loop(shared, l, addr, Some(state.clone())));
        }

        let stop = Arc::new(AtomicBool::new(false));
        let mut edge = Edge {
            udp_addrs: udp.iter().map(|l| l.addr).collect(),
            tcp_addrs,
            tls_addrs,
            tls_state,
            tls: tls_shared,
            stop: stop.clone(),
            udp_sockets: udp.iter().flat_map(|l| l.sockets.iter().cloned()).collect(),
            threads: Vec::new(),
            runtime,
            tcp,
            errors: errors.clone(),
        };
        for (li, l) in udp.iter().enumerate() {
            for w in 0..workers {
                let worker = udp_worker::Worker {
                    driver: driver(&core),
                    listener: li,
                    local: l.addr,
                    socket: l.sockets[w % l.sockets.len()].clone(),
                    stop: stop.clone(),
                    batch: config.udp_batch,
                    linger: config.udp_linger,
                };
                let spawned = std::thread::Builder::new()
                    .name(format!("ts-udp-{li}-{w}"))
                    .spawn(move || worker.run());
                match spawned {
                    Ok(t) => edge.threads.push(t),
                    Err(e) => {
                        edge.stop();
                        return Err(e);
                    }
                }
            }
        }
        Ok(edge)
    }

    /// Starts this node's cluster trunk task (behaviour.md §9.2): `core` must be the one
    /// the edge drives, with [`trunkstore_proxy::ProxyConfig::cluster`] on.
    pub fn start_cluster<C: Core>(
        &self,
        core: Arc<C>,
        settings: trunkstore_config::Cluster,
    ) -> Arc<ClusterMetrics> {
        cluster::start(self.runtime.handle(), core, settings, self.tcp.events())
    }

    /// Bound UDP addresses, in settings order (ephemeral ports resolved).
    pub fn udp_addrs(&self) -> &[SocketAddr] {
        &self.udp_addrs
    }

    /// Bound TCP addresses, in settings order.
    pub fn tcp_addrs(&self) -> &[SocketAddr] {
        &self.tcp_addrs
    }

    /// Bound TLS addresses, in settings order.
    pub fn tls_addrs(&self) -> &[SocketAddr] {
        &self.tls_addrs
    }

    /// Open TCP connections (inbound, outbound).
    pub fn tcp_connections(&self) -> (usize, usize) {
        self.tcp.connection_counts()
    }

    /// Open TLS connections (inbound, outbound).
    pub fn tls_connections(&self) -> (usize, usize) {
        self.tls.connection_counts()
    }

    /// Reads every TLS listener's certificate and key again (SIGHUP): new connections get
    /// the new pair; a listener whose new pair cannot be used keeps its old one (logged).
    /// Returns how many listeners kept their old pair.
    pub fn reload_tls(&self) -> usize {
        self.tls_state.reload()
    }

    /// A handle to [`reload_tls`](Edge::reload_tls) for a signal task.
    pub fn tls_reloader(&self) -> impl Fn() -> usize + Send + Sync + 'static {
        let state = self.tls_state.clone();
        move || state.reload()
    }

    /// Transport errors seen and reported to the core so far, by kind (`/metrics`).
    pub fn transport_errors(&self) -> Arc<TransportErrors> {
        self.errors.clone()
    }

    /// The runtime of the TCP side, e.g. to wait for signals on it.
    pub fn handle(&self) -> &tokio::runtime::Handle {
        self.runtime.handle()
    }

    /// Stops every worker and closes every socket and connection; returns when the
    /// worker threads have exited.
    pub fn stop(mut self) {
        self.stop_threads();
        self.runtime.shutdown_timeout(Duration::from_millis(500));
    }

    fn stop_threads(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes workers blocked in a receive without a timeout.
        for s in &self.udp_sockets {
            let _ = s.socket.shutdown(std::net::Shutdown::Read);
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn tcp_config(c: &EdgeConfig) -> TcpConfig {
    TcpConfig {
        idle: c.tcp_idle,
        outbound_idle: c.tcp_outbound_idle,
        connect_timeout: c.tcp_connect_timeout,
        max_connections: c.max_tcp_connections.max(1),
        max_per_source: c.max_tcp_connections_per_source.max(1),
        write_timeout: c.tcp_write_timeout,
        limits: c.limits,
    }
}
