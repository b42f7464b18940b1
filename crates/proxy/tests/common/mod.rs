//! Test harness: a proxy on a virtual clock, fed real SIP text.
#![allow(dead_code, clippy::new_without_default)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use trunkstore_config::{Catalog, NumberFormat};
use trunkstore_proxy::route::{Directory, InboundRoute};
use trunkstore_proxy::{Peer, Proxy, ProxyConfig, Shard, StaticDirectory, Transmit, Transport};
use trunkstore_routing::{Router, Snapshot};
use trunkstore_sip::build::{self, ResponseOptions};
use trunkstore_sip::digest::{
    expected_response, Algorithm, Challenge, Credentials, ResponseParams,
};
use trunkstore_sip::limits::Limits;
use trunkstore_sip::message::{HeaderName, Message};
use trunkstore_sip::parse::parse_datagram;

pub const US: &str = "10.0.0.1:5060";
pub const CARRIER: &str = "192.0.2.10:5060";
pub const SERVER: &str = "10.0.0.5:5080";
pub const DID: &str = "+14155551234";

pub fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

pub fn udp(s: &str) -> Peer {
    Peer {
        transport: Transport::Udp,
        addr: addr(s),
    }
}

pub fn tcp(s: &str) -> Peer {
    Peer {
        transport: Transport::Tcp,
        addr: addr(s),
    }
}

pub fn route_to(host: &str, port: u16, enabled: bool, transport: Transport) -> InboundRoute {
    let hop = Peer {
        transport,
        addr: SocketAddr::new(host.parse().unwrap(), port),
    };
    let mut r = InboundRoute::new("acc1", "pbx1", host, port, Some(hop));
    r.enabled = enabled;
    r.format = NumberFormat::Npan;
    r
}

pub fn directory() -> StaticDirectory {
    StaticDirectory::new()
        .with_carrier(addr(CARRIER), "carrier1")
        .with_did(DID, route_to("10.0.0.5", 5080, true, Transport::Udp))
        .with_did(
            "+14155550000",
            route_to("10.0.0.6", 5060, false, Transport::Udp),
        )
}

pub struct H {
    pub proxy: Proxy,
    pub shard: Shard,
    pub t0: Instant,
    pub now: Instant,
}

impl H {
    pub fn new() -> H {
        H::with(ProxyConfig::for_tests("10.0.0.1", 5060), directory())
    }

    pub fn with(cfg: ProxyConfig, dir: StaticDirectory) -> H {
        H::over(cfg, Arc::new(dir))
    }

    /// Routed by a snapshot of `catalog`, as `trunkstore serve` runs it; `call_records`
    /// as in [`ProxyConfig`].
    pub fn routed(catalog: &Catalog, call_records: bool) -> H {
        let mut cfg = ProxyConfig::from_settings(catalog.settings());
        cfg.call_records = call_records;
        H::over(cfg, Arc::new(Router::new(Snapshot::build(catalog))))
    }

    fn over(cfg: ProxyConfig, dir: Arc<dyn Directory>) -> H {
        let proxy = Proxy::new(cfg, dir);
        let shard = proxy.new_shard();
        let t0 = Instant::now();
        H {
            proxy,
            shard,
            t0,
            now: t0,
        }
    }

    pub fn feed(&mut self, from: Peer, text: &str) -> Vec<Transmit> {
        let data = Bytes::from(text.replace('\n', "\r\n"));
        self.proxy
            .handle_datagram(&mut self.shard, self.now, from, addr(US), data);
        self.drain()
    }

    pub fn feed_bytes(&mut self, from: Peer, data: Bytes) -> Vec<Transmit> {
        self.proxy
            .handle_datagram(&mut self.shard, self.now, from, addr(US), data);
        self.drain()
    }

    pub fn drain(&mut self) -> Vec<Transmit> {
        let mut v = Vec::new();
        while let Some(t) = self.shard.poll_transmit() {
            v.push(t);
        }
        v
    }

    /// Advances the virtual clock to `t0 + ms`, firing timers at their deadlines; returns
    /// what was sent, with the offset (ms from t0) at which it was sent.
    pub fn advance_to(&mut self, ms: u64) -> Vec<(u64, Transmit)> {
        let end = self.t0 + Duration::from_millis(ms);
        let mut out = Vec::new();
        while let Some(at) = self.shard.poll_timeout() {
            if at > end {
                break;
            }
            self.now = self.now.max(at);
            self.proxy.handle_timeouts(&mut self.shard, self.now);
            let off = (self.now - self.t0).as_millis() as u64;
            out.extend(self.drain().into_iter().map(|t| (off, t)));
        }
        self.now = self.now.max(end);
        out
    }

    pub fn advance_by(&mut self, ms: u64) -> Vec<(u64, Transmit)> {
        let cur = (self.now - self.t0).as_millis() as u64;
        self.advance_to(cur + ms)
    }

    /// Fires every timer (an hour of virtual time) and checks every table is empty and
    /// no timer is left.
    pub fn assert_drained(&mut self) {
        self.advance_by(3_600_000);
        let s = self.proxy.stats();
        assert_eq!(
            (s.server_transactions, s.client_transactions, s.calls),
            (0, 0, 0)
        );
        assert_eq!(self.shard.pending_timers(), 0);
        assert_eq!(self.shard.poll_timeout(), None);
    }
}

pub fn parse(t: &Transmit) -> Message {
    parse_datagram(t.data.clone(), &Limits::default()).expect("our output parses")
}

pub fn text(t: &Transmit) -> String {
    String::from_utf8_lossy(&t.data).into_owned()
}

pub fn status(t: &Transmit) -> Option<u16> {
    parse(t).status()
}

pub fn method(t: &Transmit) -> String {
    String::from_utf8_lossy(parse(t).method_bytes()).into_owned()
}

pub fn header(t: &Transmit, name: HeaderName) -> Option<String> {
    parse(t)
        .header(name)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

pub fn vias(t: &Transmit) -> Vec<String> {
    header_values(t, HeaderName::Via)
}

/// Every value of the `name` header lines (comma-separated ones split), top first.
pub fn header_values(t: &Transmit, name: HeaderName) -> Vec<String> {
    parse(t)
        .headers(name)
        .flat_map(|l| {
            String::from_utf8_lossy(l)
                .split(',')
                .map(|s| s.trim().to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// A response from the callee to a request we forwarded: its Vias, To with a tag,
/// Record-Route copied, a Contact.
pub fn answer(req: &Transmit, code: u16, contact: &str) -> String {
    let m = parse(req);
    let rr: Vec<&[u8]> = m.headers(HeaderName::RecordRoute).collect();
    let contact_v = format!("<{contact}>");
    let mut headers: Vec<(&[u8], &[u8])> = rr.iter().map(|v| (&b"Record-Route"[..], *v)).collect();
    headers.push((b"Contact", contact_v.as_bytes()));
    let reason: &[u8] = match code {
        100 => b"Trying",
        180 => b"Ringing",
        200 => b"OK",
        486 => b"Busy Here",
        487 => b"Request Terminated",
        503 => b"Service Unavailable",
        _ => b"Whatever",
    };
    let opts = ResponseOptions {
        to_tag: (code > 100).then_some(&b"callee1"[..]),
        headers: &headers,
        body: None,
    };
    String::from_utf8(build::response(&m, code, reason, &opts).unwrap().to_vec())
        .unwrap()
        .replace("\r\n", "\n")
}

pub fn invite(call: &str, branch: &str) -> String {
    format!(
        "INVITE sip:{DID}@10.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 192.0.2.10:5060;branch={branch};rport
Max-Forwards: 70
From: <sip:+12125550100@192.0.2.10>;tag=f-{call}
To: <sip:{DID}@10.0.0.1>
Call-ID: {call}
CSeq: 1 INVITE
Contact: <sip:+12125550100@192.0.2.10:5060>
Content-Length: 0

"
    )
}

pub fn cancel(call: &str, branch: &str) -> String {
    format!(
        "CANCEL sip:{DID}@10.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 192.0.2.10:5060;branch={branch};rport
Max-Forwards: 70
From: <sip:+12125550100@192.0.2.10>;tag=f-{call}
To: <sip:{DID}@10.0.0.1>
Call-ID: {call}
CSeq: 1 CANCEL
Content-Length: 0

"
    )
}

/// The carrier's ACK for a non-2xx (same branch as the INVITE).
pub fn ack_non2xx(call: &str, branch: &str, to_tag: &str) -> String {
    format!(
        "ACK sip:{DID}@10.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 192.0.2.10:5060;branch={branch};rport
Max-Forwards: 70
From: <sip:+12125550100@192.0.2.10>;tag=f-{call}
To: <sip:{DID}@10.0.0.1>;tag={to_tag}
Call-ID: {call}
CSeq: 1 ACK
Content-Length: 0

"
    )
}

/// The carrier's in-dialog request (ACK for 2xx, BYE) through our Record-Route.
pub fn in_dialog_from_carrier(method: &str, call: &str, branch: &str, cseq: u32) -> String {
    format!(
        "{method} sip:4155551234@10.0.0.5:5080 SIP/2.0
Via: SIP/2.0/UDP 192.0.2.10:5060;branch={branch};rport
Route: <sip:10.0.0.1:5060;lr>
Max-Forwards: 70
From: <sip:+12125550100@192.0.2.10>;tag=f-{call}
To: <sip:{DID}@10.0.0.1>;tag=callee1
Call-ID: {call}
CSeq: {cseq} {method}
Content-Length: 0

"
    )
}

/// The callee's BYE towards the carrier (reversed route set).
pub fn bye_from_server(call: &str, branch: &str) -> String {
    format!(
        "BYE sip:+12125550100@192.0.2.10:5060 SIP/2.0
Via: SIP/2.0/UDP 10.0.0.5:5080;branch={branch};rport
Route: <sip:10.0.0.1:5060;lr>
Max-Forwards: 70
From: <sip:{DID}@10.0.0.1>;tag=callee1
To: <sip:+12125550100@192.0.2.10>;tag=f-{call}
Call-ID: {call}
CSeq: 1 BYE
Content-Length: 0

"
    )
}

/// A PBX's INVITE to +12125550100 from `from`, with `extra` header lines (each ending in
/// a newline) before Content-Length.
pub fn pbx_call_invite(call: &str, from: &str, extra: &str) -> String {
    format!(
        "INVITE sip:+12125550100@10.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP {from};branch=z9hG4bK-{call};rport
Max-Forwards: 70
From: <sip:1000@pbx.example.com>;tag=pbx-{call}
To: <sip:+12125550100@10.0.0.1>
Call-ID: {call}
CSeq: 1 INVITE
Contact: <sip:1000@{from}>
{extra}Content-Length: 0

"
    )
}

/// The carrier's OPTIONS ping to the proxy itself, with this Max-Forwards.
pub fn options_to_proxy(max_forwards: u8) -> String {
    format!(
        "OPTIONS sip:10.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-o1
Max-Forwards: {max_forwards}
From: <sip:ping@192.0.2.10>;tag=p1
To: <sip:10.0.0.1>
Call-ID: o1
CSeq: 1 OPTIONS
Content-Length: 0

"
    )
}

/// A response to a request we forwarded, as its next hop would send it (no Contact).
pub fn reply(req: &Transmit, code: u16) -> String {
    answer(req, code, "sip:x@10.0.0.5:5080")
}

/// `Proxy-Authorization` answering the MD5 challenge of `resp` (offered alone by default,
/// after SHA-256 when both are), with nonce count `nc` for the Request-URI `ruri`.
pub fn authorization(resp: &Transmit, user: &str, password: &str, nc: u32, ruri: &str) -> String {
    let value = digest_answer(
        resp,
        b"Proxy-Authenticate",
        b"INVITE",
        (user, password),
        nc,
        ruri,
    );
    format!("Proxy-Authorization: {value}\n")
}

/// The credentials answering the MD5 challenge of `resp` (under `challenge_header`) for a
/// `method` to `ruri`, as a header value.
pub fn digest_answer(
    resp: &Transmit,
    challenge_header: &[u8],
    method: &[u8],
    (user, password): (&str, &str),
    nc: u32,
    ruri: &str,
) -> String {
    let msg = parse(resp);
    let c = msg
        .headers_named(challenge_header)
        .filter_map(|v| Challenge::parse(v).ok())
        .find(|c| c.algorithm() == Algorithm::Md5)
        .expect("an MD5 challenge");
    let nc = format!("{nc:08x}");
    let params = ResponseParams {
        method,
        uri: ruri.as_bytes(),
        nonce: c.nonce,
        nc: nc.as_bytes(),
        cnonce: b"c0ffee",
        qop: Some(b"auth"),
        body: b"",
    };
    let r = expected_response(
        Algorithm::Md5,
        user.as_bytes(),
        c.realm,
        password.as_bytes(),
        &params,
    );
    let creds = Credentials {
        username: user.as_bytes(),
        realm: c.realm,
        nonce: c.nonce,
        uri: ruri.as_bytes(),
        response: r.as_bytes(),
        algorithm: c.algorithm,
        cnonce: Some(b"c0ffee"),
        qop: Some(b"auth"),
        nc: Some(nc.as_bytes()),
        opaque: None,
    };
    let mut buf = Vec::new();
    creds.write_value(&mut buf);
    String::from_utf8(buf).unwrap()
}
