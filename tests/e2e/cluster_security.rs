//! Security state across two nodes sharing one Redis (issue 18 item 4), with the real
//! binary twice and a real `redis-server`: digest failures spread over the nodes add up
//! to one ban that holds on both; a nonce of one node answered to the other gets
//! `stale=true` (never accepted there, so a captured answer cannot be replayed to the
//! other node), and the retry with that node's nonce is admitted.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use serde_json::json;

use crate::config::ProxySetup;
use crate::harness::{addr, free_port, TestDir};
use crate::outbound::authorization;
use crate::proxy::Proxy;
use crate::{metrics_page, raw};
use trunkstore_testkit::Redis;

const ATTACKER: &str = "127.0.0.9";
const PBX: &str = "127.0.0.11";
const SILENCE: Duration = Duration::from_millis(800);

struct Node {
    _dir: TestDir,
    setup: ProxySetup,
    proxy: Proxy,
}

impl Node {
    fn start(test: &str, id: &str, redis: &Redis) -> Node {
        let dir = TestDir::new(&format!("{test}-{id}"));
        let setup = ProxySetup {
            port: free_port(),
            carrier_port: free_port(),
            api_port: free_port(),
            extra: Default::default(),
        };
        let listen = format!("127.0.0.1:{}", setup.port);
        let settings = json!({
            "listen": {"udp": [listen]},
            "advertise": listen,
            "connectivity_dir": "connectivity",
            "default_realm": "trunks.example",
            "carriers": [{
                "name": "c1",
                "gateways": [{"host": "127.0.0.1", "port": setup.carrier_port}],
                "sources": [format!("127.0.0.1:{}", setup.carrier_port)],
            }],
            "protection": {"ban_threshold": 3, "ban_window": 60, "ban_time": 600},
            "api": {"listen": format!("127.0.0.1:{}", setup.api_port), "tokens": []},
            "log": {"level": "debug", "format": "text"},
            "cluster": {"node_id": id, "redis": [redis.url()],
                        "secret": "e2e-cluster-secret-0123456789"},
        });
        let doc = json!({
            "name": "cluster",
            "account": {},
            "servers": [{"name": "pw-pbx", "auth": {"auth_method": "password",
                         "auth_user": "alice", "auth_password": "s3cret"},
                         "DIDs": {"+14155553001": {}}}]
        });
        let path = crate::config::write_files(&dir, &settings, &[("acme", &doc)]);
        let proxy = Proxy::start(&dir, &path, &setup);
        Node {
            _dir: dir,
            setup,
            proxy,
        }
    }

    fn sip(&self) -> SocketAddr {
        addr(self.setup.port)
    }

    fn metric(&self, series: &str) -> Option<u64> {
        let page = metrics_page(self.setup.api_port).expect("/metrics");
        page.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    /// Waits until `series` reads `want` (the nodes hear each other through Redis).
    fn await_metric(&self, series: &str, want: u64) -> Result<(), String> {
        crate::await_metric_at(self.setup.api_port, series, want)
    }

    fn finish(self) {
        let log = self.proxy.log();
        if let Err(why) = self.proxy.stop() {
            panic!("{why}\n{log}");
        }
    }
}

fn socket(host: &str) -> UdpSocket {
    let s = UdpSocket::bind((host, 0)).expect("bind a loopback source");
    s.set_read_timeout(Some(SILENCE)).unwrap();
    s
}

/// An outbound INVITE from `s` with one extra header line (or none).
fn invite(s: &UdpSocket, to: SocketAddr, call: &str, extra: &str) -> String {
    let me = s.local_addr().unwrap();
    let ruri = ruri(to);
    format!(
        "INVITE {ruri} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {me};branch=z9hG4bK-{call};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@{ip}>;tag=t-{call}\r\n\
         To: <{ruri}>\r\n\
         Call-ID: {call}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:alice@{me}>\r\n\
         {extra}Content-Length: 0\r\n\r\n",
        ip = me.ip()
    )
}

fn ruri(to: SocketAddr) -> String {
    format!("sip:+12125550100@{to}")
}

/// Sends `text` and returns the first answer that is not a 100 Trying (or a 100 when
/// nothing else comes), `None` on silence.
fn exchange(s: &UdpSocket, to: SocketAddr, text: &str) -> Option<String> {
    s.send_to(text.as_bytes(), to).unwrap();
    let mut buf = vec![0u8; 65536];
    let n = s.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

fn status(answer: &Option<String>) -> Option<u16> {
    answer.as_deref().and_then(raw::status_code)
}

#[test]
fn failures_spread_over_two_nodes_ban_on_both() {
    let dir = TestDir::new("cluster-ban-redis");
    let redis = Redis::start_in(dir.path(), free_port(), &[]);
    let (a, b) = (
        Node::start("cluster-ban", "a", &redis),
        Node::start("cluster-ban", "b", &redis),
    );
    let s = socket(ATTACKER);
    let fail_on = |node: &Node, n: usize, call: &str| {
        let challenge = exchange(&s, node.sip(), &invite(&s, node.sip(), call, ""));
        assert_eq!(status(&challenge), Some(407), "{challenge:?}");
        let auth = authorization(
            challenge.as_deref().unwrap(),
            &ruri(node.sip()),
            "alice",
            "wrong",
        );
        for i in 0..n {
            let extra = format!("Proxy-Authorization: {auth}\r\n");
            let answer = exchange(
                &s,
                node.sip(),
                &invite(&s, node.sip(), &format!("{call}-{i}"), &extra),
            );
            assert_eq!(status(&answer), Some(403), "{answer:?}");
        }
    };
    // Two failures on a, then the third on b: the threshold (3) is crossed on b with a's
    // two counted there, and a counts b's.
    fail_on(&a, 2, "fail-a");
    std::thread::sleep(Duration::from_millis(500));
    fail_on(&b, 1, "fail-b");
    b.await_metric("trunkstore_bans_active", 1)
        .expect("b banned the source");
    a.await_metric("trunkstore_bans_active", 1)
        .expect("a banned it too");
    // Both now drop everything from it, unanswered.
    for node in [&a, &b] {
        let answer = exchange(&s, node.sip(), &invite(&s, node.sip(), "after-ban", ""));
        assert_eq!(answer, None, "a banned source gets no answer");
    }
    // Another source is untouched.
    let other = socket(PBX);
    let answer = exchange(&other, a.sip(), &invite(&other, a.sip(), "other", ""));
    assert_eq!(status(&answer), Some(407));
    a.finish();
    b.finish();
}

#[test]
fn a_nonce_of_one_node_is_stale_on_the_other_and_the_retry_is_admitted() {
    let dir = TestDir::new("cluster-nonce-redis");
    let redis = Redis::start_in(dir.path(), free_port(), &[]);
    let (a, b) = (
        Node::start("cluster-nonce", "a", &redis),
        Node::start("cluster-nonce", "b", &redis),
    );
    let s = socket(PBX);
    let from_a = exchange(&s, a.sip(), &invite(&s, a.sip(), "n-1", "")).expect("407 from a");
    assert_eq!(raw::status_code(&from_a), Some(407), "{from_a}");
    // The answer to a's challenge goes to b (the PBX's next request picked the other SRV
    // target): right password, a's nonce.
    let auth = authorization(&from_a, &ruri(b.sip()), "alice", "s3cret");
    let extra = format!("Proxy-Authorization: {auth}\r\n");
    let from_b = exchange(&s, b.sip(), &invite(&s, b.sip(), "n-2", &extra)).expect("407 from b");
    assert_eq!(raw::status_code(&from_b), Some(407), "{from_b}");
    assert!(from_b.contains("stale=true"), "{from_b}");
    // The retry with b's nonce is admitted by b (100 Trying: it is routed to the carrier).
    let auth = authorization(&from_b, &ruri(b.sip()), "alice", "s3cret");
    let extra = format!("Proxy-Authorization: {auth}\r\n");
    let admitted = exchange(&s, b.sip(), &invite(&s, b.sip(), "n-3", &extra));
    assert_eq!(status(&admitted), Some(100), "{admitted:?}");
    // The same request replayed to a (which never issued b's nonce; the Request-URI is
    // the one the answer covers, as with one SRV name for both): stale there too.
    // From another port of the same address (the nonce is bound to the address), so b's
    // final answer to the admitted call cannot be read as a's.
    let again = socket(PBX);
    let replay = exchange(&again, a.sip(), &invite(&again, b.sip(), "n-3", &extra));
    assert_eq!(status(&replay), Some(407), "{replay:?}");
    assert!(replay.unwrap().contains("stale=true"));
    assert_eq!(a.metric("trunkstore_bans_active"), Some(0));
    a.finish();
    b.finish();
}
