//! The edge against a fake core, on 127.0.0.1 with ephemeral ports.

use std::collections::{HashSet, VecDeque};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use trunkstore_edge::{Core, Edge, EdgeConfig, UdpMode};
use trunkstore_proxy::{Peer, Transmit, Transport};
use trunkstore_sip::limits::Limits;
use trunkstore_sip::message::Message;

const WAIT: Duration = Duration::from_secs(5);

/// What the fake core saw.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Datagram(Peer, String),
    Message(Peer, SocketAddr, String),
    TransportError(Peer),
    /// An ICMP error (`Core::handle_unreachable`).
    Unreachable(Peer),
}

/// A scriptable core. UDP: `PING x` → `PONG x` back; `TIMER ms` → `FIRED` back after
/// `ms`; `TCP addr text` → `text` sent over TCP to addr (`TLS addr text`: over TLS); `UDP addr n` → `n` datagrams sent
/// to addr over UDP. TCP: every request is answered
/// `SIP/2.0 200 OK` on the same peer.
/// Sources in `banned` are refused by `admits` and `admits_connection`; sources in
/// `exempt` are never limited per source (as the proxy treats carriers).
struct FakeCore {
    seen: Mutex<Sender<Seen>>,
    banned: Mutex<HashSet<IpAddr>>,
    exempt: Mutex<HashSet<IpAddr>>,
}

#[derive(Default)]
struct FakeShard {
    out: VecDeque<Transmit>,
    timers: Vec<(Instant, Peer, SocketAddr)>,
}

impl FakeCore {
    fn new() -> (Arc<FakeCore>, Receiver<Seen>) {
        let (tx, rx) = channel();
        (
            Arc::new(FakeCore {
                seen: Mutex::new(tx),
                banned: Mutex::default(),
                exempt: Mutex::default(),
            }),
            rx,
        )
    }

    fn note(&self, s: Seen) {
        let _ = self.seen.lock().unwrap().send(s);
    }

    fn ban(&self, ip: &str) {
        self.banned.lock().unwrap().insert(ip.parse().unwrap());
    }

    fn exempt(&self, ip: &str) {
        self.exempt.lock().unwrap().insert(ip.parse().unwrap());
    }
}

fn udp_reply(to: Peer, from: SocketAddr, text: String) -> Transmit {
    Transmit {
        to,
        from: Some(from),
        data: Bytes::from(text),
        tls_name: None,
    }
}

impl Core for FakeCore {
    type Shard = FakeShard;

    fn new_shard(&self) -> FakeShard {
        FakeShard::default()
    }

    fn handle_datagram(
        &self,
        shard: &mut FakeShard,
        now: Instant,
        from: Peer,
        local: SocketAddr,
        data: Bytes,
    ) {
        let text = String::from_utf8_lossy(&data).into_owned();
        self.note(Seen::Datagram(from, text.clone()));
        let mut words = text.splitn(3, ' ');
        match (words.next(), words.next(), words.next()) {
            (Some("PING"), Some(x), _) => {
                shard
                    .out
                    .push_back(udp_reply(from, local, format!("PONG {x}")))
            }
            (Some("TIMER"), Some(ms), _) => {
                let ms: u64 = ms.parse().unwrap();
                shard
                    .timers
                    .push((now + Duration::from_millis(ms), from, local));
            }
            (Some("UDP"), Some(addr), Some(n)) => {
                for i in 0..n.parse::<usize>().unwrap() {
                    shard.out.push_back(Transmit {
                        to: Peer {
                            transport: Transport::Udp,
                            addr: addr.parse().unwrap(),
                        },
                        from: Some(local),
                        data: Bytes::from(format!("datagram {i}")),
                        tls_name: None,
                    });
                }
            }
            (Some("TCP"), Some(addr), Some(payload)) => shard.out.push_back(Transmit {
                to: Peer {
                    transport: Transport::Tcp,
                    addr: addr.parse().unwrap(),
                },
                from: None,
                data: Bytes::from(payload.to_owned()),
                tls_name: None,
            }),
            (Some("TLS"), Some(addr), Some(payload)) => shard.out.push_back(Transmit {
                to: Peer {
                    transport: Transport::Tls,
                    addr: addr.parse().unwrap(),
                },
                from: None,
                data: Bytes::from(payload.to_owned()),
                tls_name: None,
            }),
            _ => {}
        }
    }

    fn handle_message(
        &self,
        shard: &mut FakeShard,
        _now: Instant,
        from: Peer,
        local: SocketAddr,
        msg: Message,
    ) {
        let text = String::from_utf8_lossy(msg.bytes()).into_owned();
        self.note(Seen::Message(from, local, text));
        if msg.is_request() {
            shard.out.push_back(Transmit {
                to: from,
                from: None,
                data: Bytes::from_static(b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n"),
                tls_name: None,
            });
        }
    }

    fn handle_timeouts(&self, shard: &mut FakeShard, now: Instant) {
        let (due, later): (Vec<_>, Vec<_>) = shard.timers.drain(..).partition(|t| t.0 <= now);
        shard.timers = later;
        for (_, peer, local) in due {
            shard.out.push_back(udp_reply(peer, local, "FIRED".into()));
        }
    }

    fn handle_transport_error(&self, _shard: &mut FakeShard, _now: Instant, peer: Peer) {
        self.note(Seen::TransportError(peer));
    }

    fn handle_unreachable(&self, _shard: &mut FakeShard, _now: Instant, peer: Peer) {
        self.note(Seen::Unreachable(peer));
    }

    fn poll_transmit(shard: &mut FakeShard) -> Option<Transmit> {
        shard.out.pop_front()
    }

    fn poll_timeout(shard: &FakeShard) -> Option<Instant> {
        shard.timers.iter().map(|t| t.0).min()
    }

    fn begin_shutdown(&self) {}

    fn admits(&self, from: SocketAddr, _now: Instant) -> bool {
        !self.banned.lock().unwrap().contains(&from.ip())
    }

    fn admits_connection(&self, from: SocketAddr, open: usize, limit: usize, now: Instant) -> bool {
        self.exempt.lock().unwrap().contains(&from.ip()) || (self.admits(from, now) && open < limit)
    }
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn config() -> EdgeConfig {
    EdgeConfig {
        udp: vec![loopback()],
        tcp: vec![loopback()],
        workers: 2,
        udp_mode: UdpMode::ReusePort,
        udp_batch: 8,
        udp_linger: Duration::ZERO,
        udp_recv_buffer: 1 << 20,
        tcp_idle: Duration::from_secs(30),
        tcp_outbound_idle: Duration::from_secs(30),
        tcp_connect_timeout: Duration::from_secs(2),
        tcp_write_timeout: Duration::from_secs(2),
        max_tcp_connections: 64,
        max_tcp_connections_per_source: 64,
        limits: Limits::default(),
        dns: None,
        tls: Default::default(),
    }
}

fn start(config: EdgeConfig) -> (Edge, Receiver<Seen>) {
    let (edge, seen, _core) = start_with_core(config);
    (edge, seen)
}

/// As [`start`], with the fake core (to ban sources).
fn start_with_core(config: EdgeConfig) -> (Edge, Receiver<Seen>, Arc<FakeCore>) {
    let (core, seen) = FakeCore::new();
    let edge = Edge::start(config, core.clone()).expect("edge starts");
    (edge, seen, core)
}

fn client() -> UdpSocket {
    let s = UdpSocket::bind(loopback()).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s
}

fn recv_text(s: &UdpSocket) -> String {
    let mut buf = [0u8; 2048];
    let (n, _) = s.recv_from(&mut buf).expect("a reply");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Waits for the first event matching `pred`.
fn wait_for(seen: &Receiver<Seen>, pred: impl Fn(&Seen) -> bool) -> Seen {
    let end = Instant::now() + WAIT;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match seen.recv_timeout(left) {
            Ok(s) if pred(&s) => return s,
            Ok(_) => continue,
            Err(e) => panic!("expected event not seen: {e}"),
        }
    }
}

fn tcp_connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, WAIT).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s
}

/// Reads until `needle` has arrived; returns everything read.
fn read_until(s: &mut TcpStream, needle: &str) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains(needle) {
        let n = s.read(&mut buf).expect("read");
        assert!(
            n > 0,
            "closed before {needle:?}; got {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// True if the server closed the connection (EOF or reset) within the wait.
fn is_closed(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 512];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

const OPTIONS: &[u8] = b"OPTIONS sip:p@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1;branch=z9hG4bK1\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 4\r\n\r\nbody";

#[test]
fn udp_requests_are_answered_by_every_worker() {
    for mode in [UdpMode::ReusePort, UdpMode::Shared] {
        let (edge, _seen) = start(EdgeConfig {
            udp_mode: mode,
            ..config()
        });
        let server = edge.udp_addrs()[0];
        assert_ne!(server.port(), 0);
        // Several clients: with SO_REUSEPORT they hash onto different worker sockets.
        for c in 0..8 {
            let s = client();
            for i in 0..20 {
                s.send_to(format!("PING {c}-{i}").as_bytes(), server)
                    .unwrap();
                assert_eq!(recv_text(&s), format!("PONG {c}-{i}"));
            }
        }
        edge.stop();
    }
}

#[test]
fn udp_bursts_are_received_in_batches_and_all_answered() {
    let (edge, _seen) = start(config());
    let server = edge.udp_addrs()[0];
    let s = client();
    for i in 0..200 {
        s.send_to(format!("PING {i}").as_bytes(), server).unwrap();
    }
    let mut got: Vec<String> = (0..200).map(|_| recv_text(&s)).collect();
    got.sort();
    let mut want: Vec<String> = (0..200).map(|i| format!("PONG {i}")).collect();
    want.sort();
    assert_eq!(got, want);
    edge.stop();
}

/// Reads every PONG until the socket's read timeout, with its round-trip time.
fn take_pongs(s: &UdpSocket, sent: &[Instant], rtts: &mut Vec<(usize, Duration)>) {
    let mut buf = [0u8; 256];
    while let Ok((n, _)) = s.recv_from(&mut buf) {
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        let i: usize = text.trim_start_matches("PONG ").parse().unwrap();
        rtts.push((i, sent[i].elapsed()));
    }
}

/// Steady traffic a worker keeps up with is answered at once, even with a long linger:
/// sleeping to batch is for saturated workers only (the old pacer slept up to the linger
/// as soon as two datagrams arrived per linger, ~5 ms median here).
#[test]
fn steady_udp_traffic_is_answered_without_waiting_to_batch() {
    let (edge, _seen) = start(EdgeConfig {
        workers: 1,
        udp_batch: 64,
        udp_linger: Duration::from_millis(10),
        ..config()
    });
    let server = edge.udp_addrs()[0];
    let s = client();
    let mut sent = Vec::new();
    let mut rtts = Vec::new();
    // ~2 datagrams per ms for about 300 ms: after every second one, take the answers
    // (the 1 ms read timeout paces the loop).
    s.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
    for i in 0..600 {
        sent.push(Instant::now());
        s.send_to(format!("PING {i}").as_bytes(), server).unwrap();
        if i % 2 == 1 {
            take_pongs(&s, &sent, &mut rtts);
        }
    }
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    take_pongs(&s, &sent, &mut rtts);
    // The second half: long past the old pacer's first measuring window.
    let mut rtts: Vec<Duration> = rtts
        .into_iter()
        .filter(|(i, _)| *i >= 300)
        .map(|(_, d)| d)
        .collect();
    assert!(
        rtts.len() >= 250,
        "only {} answers in the second half",
        rtts.len()
    );
    rtts.sort();
    let median = rtts[rtts.len() / 2];
    assert!(
        median < Duration::from_millis(2),
        "median round trip {median:?}"
    );
    edge.stop();
}

#[test]
fn udp_keepalives_do_not_reach_the_core() {
    let (edge, seen) = start(config());
    let server = edge.udp_addrs()[0];
    let s = client();
    s.send_to(b"\r\n\r\n", server).unwrap();
    s.send_to(b"PING k", server).unwrap();
    assert_eq!(recv_text(&s), "PONG k");
    let first = wait_for(&seen, |_| true);
    assert!(
        matches!(first, Seen::Datagram(_, ref t) if t == "PING k"),
        "{first:?}"
    );
    edge.stop();
}

#[test]
fn a_worker_wakes_up_for_its_timer_without_traffic() {
    let (edge, _seen) = start(config());
    let server = edge.udp_addrs()[0];
    let s = client();
    let t0 = Instant::now();
    s.send_to(b"TIMER 150", server).unwrap();
    assert_eq!(recv_text(&s), "FIRED");
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(150), "{took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    edge.stop();
}

#[test]
fn tcp_messages_split_across_writes_are_framed_and_answered_on_the_same_connection() {
    let (edge, seen) = start(config());
    let server = edge.tcp_addrs()[0];
    let mut c = tcp_connect(server);
    c.set_nodelay(true).unwrap();
    // A ping first, then the request in three pieces (head split mid-line, body split).
    c.write_all(b"\r\n\r\n").unwrap();
    assert_eq!(read_until(&mut c, "\r\n"), "\r\n");
    for piece in [
        &OPTIONS[..20],
        &OPTIONS[20..OPTIONS.len() - 2],
        &OPTIONS[OPTIONS.len() - 2..],
    ] {
        c.write_all(piece).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    let reply = read_until(&mut c, "\r\n\r\n");
    assert!(reply.starts_with("SIP/2.0 200 OK"), "{reply}");
    let Seen::Message(from, local, text) = wait_for(&seen, |s| matches!(s, Seen::Message(..)))
    else {
        unreachable!()
    };
    assert_eq!(
        from,
        Peer {
            transport: Transport::Tcp,
            addr: c.local_addr().unwrap()
        }
    );
    assert_eq!(local, server);
    assert_eq!(text.as_bytes(), OPTIONS);
    edge.stop();
}

#[test]
fn tcp_to_a_peer_opens_one_connection_and_reuses_it() {
    let (edge, seen) = start(config());
    let target = TcpListener::bind(loopback()).unwrap();
    let target_addr = target.local_addr().unwrap();
    let udp = client();
    let first = format!("TCP {target_addr} OPTIONS sip:a SIP/2.0\r\nContent-Length: 0\r\n\r\n");
    udp.send_to(first.as_bytes(), edge.udp_addrs()[0]).unwrap();
    let (mut conn, _) = target.accept().unwrap();
    conn.set_read_timeout(Some(WAIT)).unwrap();
    read_until(&mut conn, "sip:a");
    let second = format!("TCP {target_addr} OPTIONS sip:b SIP/2.0\r\nContent-Length: 0\r\n\r\n");
    udp.send_to(second.as_bytes(), edge.udp_addrs()[0]).unwrap();
    read_until(&mut conn, "sip:b");
    assert_eq!(edge.tcp_connections(), (0, 1));
    // A response on that connection reaches the core as coming from the peer.
    conn.write_all(b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n")
        .unwrap();
    let Seen::Message(from, ..) = wait_for(&seen, |s| matches!(s, Seen::Message(..))) else {
        unreachable!()
    };
    assert_eq!(
        from,
        Peer {
            transport: Transport::Tcp,
            addr: target_addr
        }
    );
    // No second connection was attempted.
    target.set_nonblocking(true).unwrap();
    assert!(target.accept().is_err());
    edge.stop();
}

#[test]
fn refused_connect_is_reported_as_a_transport_error() {
    let (edge, seen) = start(config());
    let closed = {
        let l = TcpListener::bind(loopback()).unwrap();
        l.local_addr().unwrap()
    };
    let udp = client();
    udp.send_to(
        format!("TCP {closed} hello").as_bytes(),
        edge.udp_addrs()[0],
    )
    .unwrap();
    let e = wait_for(&seen, |s| matches!(s, Seen::TransportError(_)));
    assert_eq!(
        e,
        Seen::TransportError(Peer {
            transport: Transport::Tcp,
            addr: closed
        })
    );
    assert_eq!(edge.tcp_connections(), (0, 0));
    edge.stop();
}

#[test]
fn connections_over_the_cap_are_closed() {
    let (edge, _seen) = start(EdgeConfig {
        max_tcp_connections: 2,
        ..config()
    });
    let server = edge.tcp_addrs()[0];
    let mut open: Vec<TcpStream> = (0..2).map(|_| tcp_connect(server)).collect();
    for c in &mut open {
        c.write_all(OPTIONS).unwrap();
        read_until(c, "200 OK");
    }
    let mut third = tcp_connect(server);
    assert!(is_closed(&mut third));
    for c in &mut open {
        c.write_all(OPTIONS).unwrap();
        read_until(c, "200 OK");
    }
    edge.stop();
}

#[test]
fn garbage_closes_only_that_connection() {
    let (edge, _seen) = start(config());
    let server = edge.tcp_addrs()[0];
    let mut good = tcp_connect(server);
    let mut bad = tcp_connect(server);
    bad.write_all(b"\x00\x01garbage here\r\n\r\n").unwrap();
    assert!(is_closed(&mut bad));
    good.write_all(OPTIONS).unwrap();
    read_until(&mut good, "200 OK");
    edge.stop();
}

#[test]
fn oversized_head_closes_the_connection() {
    let (edge, _seen) = start(EdgeConfig {
        limits: Limits {
            max_message_size: 2048,
            ..Limits::default()
        },
        ..config()
    });
    let mut c = tcp_connect(edge.tcp_addrs()[0]);
    let flood = vec![b'a'; 64 * 1024];
    // The write may fail part-way once the edge has closed the connection.
    let _ = c.write_all(&flood);
    assert!(is_closed(&mut c));
    edge.stop();
}

#[test]
fn idle_connections_are_closed() {
    let (edge, _seen) = start(EdgeConfig {
        tcp_idle: Duration::from_millis(200),
        ..config()
    });
    let mut c = tcp_connect(edge.tcp_addrs()[0]);
    let t0 = Instant::now();
    assert!(is_closed(&mut c));
    assert!(t0.elapsed() >= Duration::from_millis(150));
    edge.stop();
}

#[test]
fn ipv6_loopback_listeners_work_when_available() {
    let v6: SocketAddr = "[::1]:0".parse().unwrap();
    if UdpSocket::bind(v6).is_err() {
        return; // no IPv6 on this machine
    }
    let (edge, _seen) = start(EdgeConfig {
        udp: vec![loopback(), v6],
        tcp: vec![v6],
        ..config()
    });
    let s = UdpSocket::bind(v6).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.send_to(b"PING six", edge.udp_addrs()[1]).unwrap();
    assert_eq!(recv_text(&s), "PONG six");
    let mut c = tcp_connect(edge.tcp_addrs()[0]);
    c.write_all(OPTIONS).unwrap();
    read_until(&mut c, "200 OK");
    edge.stop();
}

#[test]
fn stop_returns_promptly_with_idle_workers() {
    let (edge, _seen) = start(EdgeConfig {
        workers: 3,
        ..config()
    });
    let t0 = Instant::now();
    edge.stop();
    assert!(t0.elapsed() < Duration::from_secs(2));
}

// ---- Protection before parsing (behaviour.md §8) ----

/// A UDP socket on `ip` (another loopback address), any port.
fn client_on(ip: &str) -> UdpSocket {
    let s = UdpSocket::bind((ip.parse::<IpAddr>().unwrap(), 0)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    s
}

/// A TCP connection from `ip` (another loopback address) to `server`.
fn tcp_connect_from(ip: &str, server: SocketAddr) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let local = SocketAddr::new(ip.parse().unwrap(), 0);
    s.bind(&local.into()).unwrap();
    s.connect_timeout(&server.into(), WAIT).unwrap();
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s
}

/// Everything the server sends until it closes the connection (it must, within the
/// wait).
fn read_to_close(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("not closed: {e}; got {:?}", String::from_utf8_lossy(&got)),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// Every event seen so far from `ip`.
fn seen_from(seen: &Receiver<Seen>, ip: &str) -> Vec<Seen> {
    let ip: IpAddr = ip.parse().unwrap();
    seen.try_iter()
        .filter(|s| match s {
            Seen::Datagram(p, _)
            | Seen::Message(p, _, _)
            | Seen::TransportError(p)
            | Seen::Unreachable(p) => p.addr.ip() == ip,
        })
        .collect()
}

#[test]
fn datagrams_from_a_banned_source_never_reach_the_core() {
    let (edge, seen, core) = start_with_core(config());
    let server = edge.udp_addrs()[0];
    core.ban("127.0.0.9");
    let banned = client_on("127.0.0.9");
    banned.send_to(b"PING b", server).unwrap();
    let mut buf = [0u8; 64];
    assert!(
        banned.recv_from(&mut buf).is_err(),
        "a banned source got an answer"
    );
    // Another source is served, by the same workers.
    let other = client_on("127.0.0.10");
    other.send_to(b"PING o", server).unwrap();
    assert_eq!(recv_text(&other), "PONG o");
    assert_eq!(seen_from(&seen, "127.0.0.9"), []);
    edge.stop();
}

#[test]
fn a_banned_source_cannot_connect_and_its_open_connection_closes_at_its_next_message() {
    let (edge, seen, core) = start_with_core(config());
    let server = edge.tcp_addrs()[0];
    let mut open = tcp_connect_from("127.0.0.9", server);
    open.write_all(OPTIONS).unwrap();
    read_until(&mut open, "200 OK");
    core.ban("127.0.0.9");
    let _ = seen.try_iter().count();
    // Its next message closes the connection unanswered, unparsed.
    open.write_all(OPTIONS).unwrap();
    assert_eq!(read_to_close(&mut open), "");
    // A new connection: the kernel completes the handshake, the proxy closes it at once
    // and answers nothing.
    let mut again = tcp_connect_from("127.0.0.9", server);
    let _ = again.write_all(OPTIONS);
    assert_eq!(read_to_close(&mut again), "");
    assert_eq!(seen_from(&seen, "127.0.0.9"), []);
    // Another source is unaffected.
    let mut other = tcp_connect_from("127.0.0.10", server);
    other.write_all(OPTIONS).unwrap();
    read_until(&mut other, "200 OK");
    assert_eq!(edge.tcp_connections(), (1, 0));
    edge.stop();
}

#[test]
fn one_source_holds_at_most_its_share_of_tcp_connections() {
    let (edge, _seen, core) = start_with_core(EdgeConfig {
        max_tcp_connections_per_source: 3,
        ..config()
    });
    core.exempt("127.0.0.11");
    let server = edge.tcp_addrs()[0];
    let mut three: Vec<TcpStream> = (0..3)
        .map(|_| tcp_connect_from("127.0.0.9", server))
        .collect();
    for c in &mut three {
        c.write_all(OPTIONS).unwrap();
        read_until(c, "200 OK");
    }
    let mut fourth = tcp_connect_from("127.0.0.9", server);
    let _ = fourth.write_all(OPTIONS);
    assert_eq!(read_to_close(&mut fourth), "");
    // Another source still gets in; an exempt one (a carrier) is not limited.
    let mut other = tcp_connect_from("127.0.0.10", server);
    other.write_all(OPTIONS).unwrap();
    read_until(&mut other, "200 OK");
    let mut carrier: Vec<TcpStream> = (0..5)
        .map(|_| tcp_connect_from("127.0.0.11", server))
        .collect();
    for c in &mut carrier {
        c.write_all(OPTIONS).unwrap();
        read_until(c, "200 OK");
    }
    // A slot freed is a slot again (once the edge has seen the close).
    drop(three.pop());
    let end = Instant::now() + WAIT;
    loop {
        let mut c = tcp_connect_from("127.0.0.9", server);
        let _ = c.write_all(OPTIONS);
        let got = read_to_close_or_answer(&mut c);
        if got.contains("200 OK") {
            break;
        }
        assert!(Instant::now() < end, "the freed slot was never given back");
        std::thread::sleep(Duration::from_millis(20));
    }
    edge.stop();
}

/// Reads until an answer arrives or the server closes the connection.
fn read_to_close_or_answer(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(n) if n > 0 => {
                got.extend_from_slice(&buf[..n]);
                if String::from_utf8_lossy(&got).contains("200 OK") {
                    break;
                }
            }
            _ => break,
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// A UDP port on loopback nobody listens on (the kernel answers ICMP port unreachable).
fn closed_udp_port() -> SocketAddr {
    UdpSocket::bind(loopback()).unwrap().local_addr().unwrap()
}

fn udp_peer(addr: SocketAddr) -> Peer {
    Peer {
        transport: Transport::Udp,
        addr,
    }
}

/// Every event seen within `d`.
fn seen_within(seen: &Receiver<Seen>, d: Duration) -> Vec<Seen> {
    let end = Instant::now() + d;
    let mut out = Vec::new();
    while let Ok(s) = seen.recv_timeout(end.saturating_duration_since(Instant::now())) {
        out.push(s);
    }
    out
}

/// Issue 17 item 4: a datagram to a closed port is reported as unreachable in
/// milliseconds (ICMP via IP_RECVERR), not left to the core's timers; the worker keeps
/// receiving normally afterwards.
#[test]
fn icmp_port_unreachable_is_reported_at_once_and_receiving_goes_on() {
    let (edge, seen) = start(config());
    let dead = closed_udp_port();
    let udp = client();
    let sent = Instant::now();
    udp.send_to(format!("UDP {dead} 1").as_bytes(), edge.udp_addrs()[0])
        .unwrap();
    let e = wait_for(&seen, |s| {
        matches!(s, Seen::Unreachable(_) | Seen::TransportError(_))
    });
    let took = sent.elapsed();
    assert_eq!(e, Seen::Unreachable(udp_peer(dead)));
    assert!(took < Duration::from_millis(200), "reported after {took:?}");
    let counts = edge.transport_errors().by_kind();
    assert_eq!(counts[0], ("icmp", 1), "{counts:?}");
    // The socket still receives and answers.
    udp.send_to(b"PING after", edge.udp_addrs()[0]).unwrap();
    assert_eq!(recv_text(&udp), "PONG after");
    edge.stop();
}

/// A stream of datagrams to a dead peer brings one ICMP error each: the core hears of
/// it once per driver and window (item 2), every error is counted, and datagrams from
/// others arriving meanwhile are all received and answered (none dropped, no stall).
#[test]
fn an_icmp_flood_for_one_peer_is_folded_and_disturbs_no_traffic() {
    const DATAGRAMS: usize = 300;
    const PINGS: usize = 100;
    let (edge, seen) = start(config());
    let dead = closed_udp_port();
    let udp = client();
    let other = client();
    for round in 0..3 {
        udp.send_to(
            format!("UDP {dead} {}", DATAGRAMS / 3).as_bytes(),
            edge.udp_addrs()[0],
        )
        .unwrap();
        for i in 0..PINGS / 3 {
            let ping = format!("PING {round}-{i}");
            other.send_to(ping.as_bytes(), edge.udp_addrs()[0]).unwrap();
        }
    }
    let mut pongs = 0;
    while pongs < PINGS / 3 * 3 {
        assert!(recv_text(&other).starts_with("PONG"));
        pongs += 1;
    }
    let events = seen_within(&seen, Duration::from_millis(400));
    let reported: Vec<_> = events
        .iter()
        .filter(|s| matches!(s, Seen::Unreachable(_) | Seen::TransportError(_)))
        .collect();
    assert!(
        reported
            .iter()
            .all(|s| **s == Seen::Unreachable(udp_peer(dead))),
        "{reported:?}"
    );
    // Two workers and the TCP driver, each: one at once, one folded, within 400 ms
    // (the burst is over in a few ms).
    assert!(
        !reported.is_empty() && reported.len() <= 6,
        "{} reports for one peer",
        reported.len()
    );
    let icmp = edge.transport_errors().by_kind()[0].1;
    eprintln!(
        "{DATAGRAMS} datagrams to a dead port: {icmp} ICMP errors, {} reported to the core",
        reported.len()
    );
    assert!(
        icmp > reported.len() as u64,
        "{icmp} ICMP errors counted, {} reported",
        reported.len()
    );
    edge.stop();
}

/// A connection we opened that the peer closes, or resets, is a transport error for
/// that peer (its requests' responses can no longer come); an inbound connection's
/// close is not.
#[test]
fn an_outbound_connection_closed_or_reset_by_the_peer_is_reported() {
    let (edge, seen) = start(config());
    let udp = client();
    for reset in [false, true] {
        let target = TcpListener::bind(loopback()).unwrap();
        let target_addr = target.local_addr().unwrap();
        let req = format!("TCP {target_addr} OPTIONS sip:a SIP/2.0\r\nContent-Length: 0\r\n\r\n");
        udp.send_to(req.as_bytes(), edge.udp_addrs()[0]).unwrap();
        let (mut conn, _) = target.accept().unwrap();
        conn.set_read_timeout(Some(WAIT)).unwrap();
        read_until(&mut conn, "sip:a");
        if reset {
            socket2::SockRef::from(&conn)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
        }
        drop(conn);
        let e = wait_for(&seen, |s| matches!(s, Seen::TransportError(_)));
        assert_eq!(
            e,
            Seen::TransportError(Peer {
                transport: Transport::Tcp,
                addr: target_addr
            }),
            "reset: {reset}"
        );
    }
    let counts = edge.transport_errors().by_kind();
    assert_eq!(counts[2], ("tcp_closed", 2), "{counts:?}");
    // An inbound connection closing is not reported.
    let mut inbound = tcp_connect(edge.tcp_addrs()[0]);
    inbound.write_all(OPTIONS).unwrap();
    read_until(&mut inbound, "200 OK");
    drop(inbound);
    let later = seen_within(&seen, Duration::from_millis(300));
    assert!(
        !later.iter().any(|s| matches!(s, Seen::TransportError(_))),
        "{later:?}"
    );
    edge.stop();
}

/// ICMPv6 port unreachable (IPV6_RECVERR) is reported like ICMP over IPv4.
#[test]
fn icmpv6_port_unreachable_is_reported_when_ipv6_is_available() {
    let v6: SocketAddr = "[::1]:0".parse().unwrap();
    let Ok(probe) = UdpSocket::bind(v6) else {
        return; // no IPv6 on this machine
    };
    let dead = probe.local_addr().unwrap();
    drop(probe);
    let (edge, seen) = start(EdgeConfig {
        udp: vec![v6],
        tcp: vec![],
        ..config()
    });
    let s = UdpSocket::bind(v6).unwrap();
    s.send_to(format!("UDP {dead} 1").as_bytes(), edge.udp_addrs()[0])
        .unwrap();
    let e = wait_for(&seen, |s| {
        matches!(s, Seen::Unreachable(_) | Seen::TransportError(_))
    });
    assert_eq!(e, Seen::Unreachable(udp_peer(dead)));
    edge.stop();
}

// ---- TLS ----

mod certs {
    //! A test CA and certificates it signs, written as PEM files.

    use std::path::{Path, PathBuf};

    use rcgen::{
        BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
        KeyPair,
    };

    pub struct Ca {
        cert: Certificate,
        key: KeyPair,
    }

    impl Ca {
        pub fn new(name: &str) -> Ca {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.distinguished_name.push(DnType::CommonName, name);
            let cert = params.self_signed(&key).unwrap();
            Ca { cert, key }
        }

        /// Writes `<name>.ca.pem`.
        pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
            let path = dir.join(format!("{name}.ca.pem"));
            std::fs::write(&path, self.cert.pem()).unwrap();
            path
        }

        /// A leaf for `sans` (IPs and names), usable as server and client; writes
        /// `<name>.pem` and `<name>.key` and returns their paths.
        pub fn leaf(&self, dir: &Path, name: &str, sans: &[&str]) -> (PathBuf, PathBuf) {
            let key = KeyPair::generate().unwrap();
            let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
            let mut params = CertificateParams::new(sans).unwrap();
            params.distinguished_name.push(DnType::CommonName, name);
            params.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
            let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
            let cert_path = dir.join(format!("{name}.pem"));
            let key_path = dir.join(format!("{name}.key"));
            std::fs::write(&cert_path, cert.pem()).unwrap();
            std::fs::write(&key_path, key.serialize_pem()).unwrap();
            (cert_path, key_path)
        }
    }
}

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use trunkstore_edge::{TlsListenerFiles, TlsSettings};

#[allow(deprecated)]
fn ring() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca: &std::path::Path) -> rustls::RootCertStore {
    let mut store = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        store.add(c.unwrap()).unwrap();
    }
    store
}

/// A blocking rustls client to `addr` trusting `ca`, its handshake done.
fn tls_client(
    addr: SocketAddr,
    ca: &std::path::Path,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let config = rustls::ClientConfig::builder_with_provider(ring())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(ca))
        .with_no_client_auth();
    let name = ServerName::IpAddress(addr.ip().into());
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = tcp_connect(addr);
    let mut s = rustls::StreamOwned::new(conn, tcp);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock).unwrap();
    }
    s
}

/// What a test TLS server read: the connection's number and the bytes or the error.
type ServerRead = (usize, Result<String, String>);

/// A blocking rustls server on an ephemeral loopback port with `cert`/`key`, one
/// connection at a time: what each read returns goes to the channel with the
/// connection's number (`Err` for a failed handshake or read).
fn tls_server(cert: &std::path::Path, key: &std::path::Path) -> (SocketAddr, Receiver<ServerRead>) {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(ring())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for (n, tcp) in listener.incoming().take(8).enumerate() {
            let Ok(tcp) = tcp else { continue };
            let _ = tcp.set_read_timeout(Some(WAIT));
            let conn = rustls::ServerConnection::new(config.clone()).unwrap();
            let mut s = rustls::StreamOwned::new(conn, tcp);
            let mut buf = [0u8; 2048];
            for _ in 0..8 {
                let got = match s.read(&mut buf) {
                    Ok(0) => break,
                    Ok(k) => Ok(String::from_utf8_lossy(&buf[..k]).into_owned()),
                    Err(e) => Err(e.to_string()),
                };
                let failed = got.is_err();
                if tx.send((n, got)).is_err() {
                    return;
                }
                if failed {
                    break;
                }
            }
        }
    });
    (addr, rx)
}

/// No TLS listener; servers verified against `ca`.
fn tls_config(ca: &std::path::Path) -> EdgeConfig {
    EdgeConfig {
        tls: TlsSettings {
            ca_file: Some(ca.to_path_buf()),
            ..TlsSettings::default()
        },
        ..config()
    }
}

fn tls_peer(addr: SocketAddr) -> Peer {
    Peer {
        transport: Transport::Tls,
        addr,
    }
}

#[test]
fn tls_listener_frames_messages_and_answers_on_the_same_connection() {
    let dir = tempfile::tempdir().unwrap();
    let ca = certs::Ca::new("test CA");
    let ca_file = ca.write(dir.path(), "test");
    let (certificate, key) = ca.leaf(dir.path(), "proxy", &["127.0.0.1", "localhost"]);
    let (edge, seen) = start(EdgeConfig {
        tls: TlsSettings {
            listeners: vec![TlsListenerFiles {
                address: loopback(),
                certificate,
                key,
            }],
            ..TlsSettings::default()
        },
        ..config()
    });
    let server = edge.tls_addrs()[0];
    let mut c = tls_client(server, &ca_file);
    c.write_all(b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1;branch=z9hG4bK1\r\nContent-Length: 0\r\n\r\n")
        .unwrap();
    let got = wait_for(&seen, |s| matches!(s, Seen::Message(..)));
    let Seen::Message(from, local, text) = got else {
        unreachable!()
    };
    assert_eq!(from.transport, Transport::Tls);
    assert_eq!(local, server);
    assert!(text.starts_with("OPTIONS "));
    let mut buf = [0u8; 256];
    let n = c.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("SIP/2.0 200 OK"));
    assert_eq!(edge.tls_connections().0, 1);
    edge.stop();
}

/// Outbound TLS: a server whose certificate chains to `tls.ca_file` gets the message (and
/// a second one on the same connection); one signed by another CA is refused: a transport
/// error for the peer, counted as `tls_handshake`.
#[test]
fn outbound_tls_is_verified_and_an_unknown_ca_is_a_handshake_error() {
    let dir = tempfile::tempdir().unwrap();
    let ca = certs::Ca::new("trusted CA");
    let ca_file = ca.write(dir.path(), "trusted");
    let (good_cert, good_key) = ca.leaf(dir.path(), "good", &["127.0.0.1"]);
    let rogue = certs::Ca::new("rogue CA");
    let (bad_cert, bad_key) = rogue.leaf(dir.path(), "bad", &["127.0.0.1"]);
    let (good, good_rx) = tls_server(&good_cert, &good_key);
    let (bad, bad_rx) = tls_server(&bad_cert, &bad_key);
    let (edge, seen) = start(tls_config(&ca_file));
    let c = client();
    let udp = edge.udp_addrs()[0];
    c.send_to(format!("TLS {good} hello").as_bytes(), udp)
        .unwrap();
    let first = good_rx.recv_timeout(WAIT).expect("the good server got it");
    assert_eq!(first, (0, Ok("hello".to_string())));
    c.send_to(format!("TLS {good} again").as_bytes(), udp)
        .unwrap();
    let second = good_rx.recv_timeout(WAIT).expect("the good server got it");
    assert_eq!(
        second,
        (0, Ok("again".to_string())),
        "on the same connection"
    );
    assert_eq!(edge.tls_connections().1, 1);
    c.send_to(format!("TLS {bad} hello").as_bytes(), udp)
        .unwrap();
    let err = wait_for(&seen, |s| matches!(s, Seen::TransportError(_)));
    assert_eq!(err, Seen::TransportError(tls_peer(bad)));
    let refused = bad_rx
        .recv_timeout(WAIT)
        .expect("the bad server saw a handshake");
    assert!(
        refused.1.is_err(),
        "nothing readable reached it: {refused:?}"
    );
    let counts = edge.transport_errors().by_kind();
    assert!(counts.contains(&("tls_handshake", 1)), "{counts:?}");
    edge.stop();
}

/// SIGHUP's reload: a good new pair is taken for new connections; a broken one keeps the
/// old pair and the listener keeps serving.
#[test]
fn tls_certificates_reload_and_a_bad_new_pair_keeps_the_old() {
    let dir = tempfile::tempdir().unwrap();
    let ca = certs::Ca::new("test CA");
    let ca_file = ca.write(dir.path(), "test");
    let (certificate, key) = ca.leaf(dir.path(), "proxy", &["127.0.0.1"]);
    let (edge, _seen) = start(EdgeConfig {
        tls: TlsSettings {
            listeners: vec![TlsListenerFiles {
                address: loopback(),
                certificate: certificate.clone(),
                key: key.clone(),
            }],
            ..TlsSettings::default()
        },
        ..config()
    });
    let server = edge.tls_addrs()[0];
    // A new pair from another CA: after the reload, clients of the old CA refuse it.
    let other = certs::Ca::new("next CA");
    let other_file = other.write(dir.path(), "next");
    let (c2, k2) = other.leaf(dir.path(), "proxy2", &["127.0.0.1"]);
    std::fs::copy(&c2, &certificate).unwrap();
    std::fs::copy(&k2, &key).unwrap();
    assert_eq!(edge.reload_tls(), 0);
    drop(tls_client(server, &other_file));
    // A broken file: the reload fails and the last good pair stays.
    std::fs::write(&key, "not a key").unwrap();
    assert_eq!(edge.reload_tls(), 1);
    drop(tls_client(server, &other_file));
    // The old CA's clients are refused now.
    let config = rustls::ClientConfig::builder_with_provider(ring())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(&ca_file))
        .with_no_client_auth();
    let name = ServerName::IpAddress(server.ip().into());
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut tcp = tcp_connect(server);
    let mut failed = false;
    for _ in 0..16 {
        if !conn.is_handshaking() {
            break;
        }
        if conn.complete_io(&mut tcp).is_err() {
            failed = true;
            break;
        }
    }
    assert!(failed, "the old CA no longer verifies the listener");
    edge.stop();
}
