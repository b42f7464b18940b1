//! Protection at the edge with the real binary (behaviour.md §8, issue 13 item 8): a
//! source banned for repeated digest failures gets nothing more over UDP or TCP, its open
//! TCP connection is closed at its next message, while the carrier keeps working; one
//! source cannot hold more than `limits.max_tcp_connections_per_source` connections.
//!
//! The attacker is 127.0.0.9 (any port), another unknown source 127.0.0.10; the carrier
//! trusts 127.0.0.1:<carrier port> (the readiness probe) and 127.0.0.3 (any port, so it
//! can open TCP connections from ephemeral ports).

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use serde_json::json;

use crate::config::ProxySetup;
use crate::harness::{addr, free_port, TestDir};
use crate::proxy::Proxy;
use crate::{metrics_page, raw};

const ATTACKER: &str = "127.0.0.9";
const OTHER: &str = "127.0.0.10";
const CARRIER_HOST: &str = "127.0.0.3";
/// Long enough for a loopback answer from a debug build; what does not come by then
/// never comes (nothing here is retransmitted).
const SILENCE: Duration = Duration::from_millis(800);
const WAIT: Duration = Duration::from_secs(5);

struct Scene {
    _dir: TestDir,
    setup: ProxySetup,
    proxy: Proxy,
}

impl Scene {
    /// `cdr`: with CDRs the edge drives the core through its CDR wrapper, which must
    /// pass the protection questions on (the shipped configuration writes CDRs).
    fn start(test: &str, per_source: u32, cdr: bool) -> Scene {
        let dir = TestDir::new(test);
        let setup = ProxySetup {
            port: free_port(),
            carrier_port: free_port(),
            api_port: free_port(),
            extra: Default::default(),
        };
        let listen = format!("127.0.0.1:{}", setup.port);
        let mut settings = json!({
            "listen": {"udp": [listen], "tcp": [listen]},
            "advertise": listen,
            "connectivity_dir": "connectivity",
            "default_realm": "trunks.example",
            "carriers": [{
                "name": "c1",
                "gateways": [{"host": "127.0.0.1", "port": setup.carrier_port}],
                "sources": [format!("127.0.0.1:{}", setup.carrier_port), CARRIER_HOST],
            }],
            "protection": {"ban_threshold": 3, "ban_window": 60, "ban_time": 600},
            "limits": {"max_tcp_connections_per_source": per_source},
            "api": {"listen": format!("127.0.0.1:{}", setup.api_port), "tokens": []},
            "log": {"level": "debug", "format": "text"},
        });
        if cdr {
            settings["cdr"] = json!({"file": "cdr.jsonl"});
        }
        let doc = json!({
            "name": "protection",
            "account": {},
            "servers": [{"name": "pw-pbx", "auth": {"auth_method": "password",
                         "auth_user": "alice", "auth_password": "s3cret"},
                         "options": {"ip": "127.0.0.1", "port": free_port()},
                         "DIDs": {"+14155553001": {}}}]
        });
        let path = crate::config::write_files(&dir, &settings, &[("acme", &doc)]);
        let proxy = Proxy::start(&dir, &path, &setup);
        Scene {
            _dir: dir,
            setup,
            proxy,
        }
    }

    fn server(&self) -> SocketAddr {
        addr(self.setup.port)
    }

    /// The value of one series on /metrics.
    fn metric(&self, series: &str) -> Option<u64> {
        let page = metrics_page(self.setup.api_port).expect("/metrics");
        page.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    fn finish(self) {
        let log = self.proxy.log();
        if let Err(why) = self.proxy.stop() {
            panic!("{why}\n{log}");
        }
    }
}

/// A request from `host:port` over `transport` (`UDP`/`TCP`), with one `extra` header
/// line (or none).
fn request(
    method: &str,
    ruri: &str,
    host: &str,
    port: u16,
    transport: &str,
    call: &str,
    extra: &str,
) -> String {
    format!(
        "{method} {ruri} SIP/2.0\r\n\
         Via: SIP/2.0/{transport} {host}:{port};branch=z9hG4bK-{call};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:1000@{host}>;tag=t-{call}\r\n\
         To: <{ruri}>\r\n\
         Call-ID: {call}\r\n\
         CSeq: 1 {method}\r\n\
         Contact: <sip:1000@{host}:{port}>\r\n\
         {extra}Content-Length: 0\r\n\r\n"
    )
}

fn udp_on(host: &str) -> UdpSocket {
    let s = UdpSocket::bind((host.parse::<IpAddr>().unwrap(), 0)).unwrap();
    s.set_read_timeout(Some(SILENCE)).unwrap();
    s
}

/// Sends `text` and returns the first datagram answering it, if any within the wait.
fn udp_exchange(s: &UdpSocket, to: SocketAddr, text: &str) -> Option<String> {
    s.send_to(text.as_bytes(), to).unwrap();
    let mut buf = vec![0u8; 65536];
    let n = s.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// An OPTIONS ping from `me` to the proxy at `to` over `transport` (`UDP`/`TCP`).
fn options(me: SocketAddr, to: SocketAddr, transport: &str, call: &str) -> String {
    let ruri = format!("sip:{to}");
    request(
        "OPTIONS",
        &ruri,
        &me.ip().to_string(),
        me.port(),
        transport,
        call,
        "",
    )
}

fn udp_options(s: &UdpSocket, to: SocketAddr, call: &str) -> Option<String> {
    let text = options(s.local_addr().unwrap(), to, "UDP", call);
    udp_exchange(s, to, &text)
}

fn tcp_from(host: &str, to: SocketAddr) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let local = SocketAddr::new(host.parse().unwrap(), 0);
    s.bind(&local.into()).unwrap();
    s.connect_timeout(&to.into(), WAIT).unwrap();
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s
}

/// An OPTIONS over `s`; what came back: the answer, or everything read until the proxy
/// closed the connection (then `closed` is true).
fn tcp_options(s: &mut TcpStream, to: SocketAddr, call: &str) -> (String, bool) {
    let text = options(s.local_addr().unwrap(), to, "TCP", call);
    // The proxy may have closed the connection already: a failed write is fine.
    let _ = s.write_all(text.as_bytes());
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (String::from_utf8_lossy(&got).into_owned(), true),
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got).into_owned();
                if text.contains("\r\n\r\n") {
                    return (text, false);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return (String::from_utf8_lossy(&got).into_owned(), true)
            }
            Err(e) => panic!("neither an answer nor a close within {WAIT:?}: {e}"),
        }
    }
}

fn assert_ok(answer: &(String, bool), what: &str) {
    assert_eq!(raw::status_code(&answer.0), Some(200), "{what}: {answer:?}");
}

fn assert_closed_unanswered(answer: &(String, bool), what: &str) {
    assert_eq!(answer, &(String::new(), true), "{what}");
}

/// Three INVITEs with a wrong password from `s` (the test's ban threshold): 407, then
/// 403 three times.
fn fail_digest_three_times(s: &UdpSocket, to: SocketAddr) {
    let me = s.local_addr().unwrap();
    let host = me.ip().to_string();
    let ruri = format!("sip:+12125550100@{to}");
    let invite =
        |call: &str, extra: &str| request("INVITE", &ruri, &host, me.port(), "UDP", call, extra);
    let challenge = udp_exchange(s, to, &invite("ban-0", "")).expect("a 407");
    assert_eq!(raw::status_code(&challenge), Some(407), "{challenge}");
    let auth = crate::outbound::authorization(&challenge, &ruri, "alice", "wrong");
    for i in 1..=3 {
        let extra = format!("Proxy-Authorization: {auth}\r\n");
        let answer = udp_exchange(s, to, &invite(&format!("ban-{i}"), &extra));
        let answer = answer.unwrap_or_else(|| panic!("no answer to wrong password {i}"));
        assert_eq!(raw::status_code(&answer), Some(403), "{answer}");
    }
}

#[test]
fn a_banned_source_gets_nothing_over_udp_or_tcp_while_the_carrier_keeps_working() {
    let scene = Scene::start("protect-ban", 32, true);
    let server = scene.server();
    let attacker = udp_on(ATTACKER);
    assert!(
        udp_options(&attacker, server, "before").is_some(),
        "answered before the ban"
    );
    // A TCP connection opened before the ban.
    let mut open = tcp_from(ATTACKER, server);
    assert_ok(
        &tcp_options(&mut open, server, "tcp-before"),
        "before the ban",
    );

    fail_digest_three_times(&attacker, server);

    // UDP: OPTIONS from the same port and from another one go unanswered.
    assert_eq!(udp_options(&attacker, server, "after-1"), None);
    assert_eq!(udp_options(&udp_on(ATTACKER), server, "after-2"), None);
    // TCP: the open connection is closed at its next message, unanswered; a new one is
    // accepted by the kernel and closed by the proxy without a word.
    let got = tcp_options(&mut open, server, "tcp-after");
    assert_closed_unanswered(&got, "open connection after the ban");
    let mut again = tcp_from(ATTACKER, server);
    let got = tcp_options(&mut again, server, "tcp-new");
    assert_closed_unanswered(&got, "new connection after the ban");

    // The carrier: from its probe address over UDP, and over TCP from its other source.
    let probe = raw::options_ping(scene.setup.carrier_port, scene.setup.port, WAIT);
    assert_eq!(probe.as_deref().and_then(raw::status_code), Some(200));
    let mut carrier = tcp_from(CARRIER_HOST, server);
    assert_ok(&tcp_options(&mut carrier, server, "carrier"), "carrier");
    // Another unknown source is not affected.
    assert!(udp_options(&udp_on(OTHER), server, "other").is_some());

    let dropped = |reason: &str| {
        scene.metric(&format!(
            "trunkstore_protection_dropped_total{{reason=\"{reason}\"}}"
        ))
    };
    // Two UDP OPTIONS and the message on the open connection; the new connection.
    assert_eq!(dropped("banned"), Some(3));
    assert_eq!(dropped("banned_connection"), Some(1));
    assert_eq!(scene.metric("trunkstore_bans_active"), Some(1));
    scene.finish();
}

#[test]
fn one_source_cannot_hold_more_than_its_share_of_tcp_connections() {
    let scene = Scene::start("protect-tcp-cap", 3, false);
    let server = scene.server();
    let mut held: Vec<TcpStream> = (0..3).map(|_| tcp_from(ATTACKER, server)).collect();
    for (i, c) in held.iter_mut().enumerate() {
        assert_ok(
            &tcp_options(c, server, &format!("held-{i}")),
            "within the cap",
        );
    }
    let mut fourth = tcp_from(ATTACKER, server);
    let got = tcp_options(&mut fourth, server, "fourth");
    assert_closed_unanswered(&got, "over the per-source cap");
    // Another source still connects; the carrier is not limited per source.
    let mut other = tcp_from(OTHER, server);
    assert_ok(&tcp_options(&mut other, server, "other"), "another source");
    let mut carrier: Vec<TcpStream> = (0..5).map(|_| tcp_from(CARRIER_HOST, server)).collect();
    for (i, c) in carrier.iter_mut().enumerate() {
        assert_ok(&tcp_options(c, server, &format!("carrier-{i}")), "carrier");
    }
    // The held connections still work.
    assert_ok(&tcp_options(&mut held[0], server, "held-again"), "held");
    assert_eq!(
        scene.metric("trunkstore_protection_dropped_total{reason=\"tcp_per_source\"}"),
        Some(1)
    );
    drop((held, carrier, other));
    scene.finish();
}
