//! Protection for every request, not only INVITE (behaviour.md §8, issue 13 item 8), on a
//! virtual clock over the production routing index: scanners and per-source rate limits
//! for every request of an unknown source (OPTIONS, in-dialog requests, CANCEL), bans
//! that silence a source entirely, and the admission questions the edge asks before any
//! parsing ([`Proxy::admits`], [`Proxy::admits_connection`]). Carriers and IP-auth
//! servers are exempt from all of it.

mod common;

use std::path::Path;

use common::*;
use serde_json::{json, Value};
use trunkstore_config::{validate_document, Catalog, Settings};
use trunkstore_proxy::Transmit;

const CARRIER_C1: &str = "192.0.2.21:5060";
const IP_PBX: &str = "10.0.0.5:5080";
const PW_PBX: &str = "10.0.0.99:5060";
const STRANGER: &str = "10.0.0.77:5060";
const SCANNER_UA: &str = "User-Agent: friendly-scanner\n";

fn harness(protection: Value) -> H {
    let settings = json!({
        "listen": {"udp": ["10.0.0.1:5060"]},
        "advertise": "10.0.0.1:5060",
        "default_realm": "trunks.example",
        "carriers": [{"name": "c1", "gateways": [{"host": "192.0.2.21"}],
                      "sources": ["192.0.2.21"]}],
        "protection": protection
    });
    let doc = json!({
        "account": {},
        "servers": [
            {"name": "ip-pbx", "auth": {"auth_method": "IP", "ip": "10.0.0.5"},
             "DIDs": {"+14155552001": {}}},
            {"name": "pw-pbx", "auth": {"auth_method": "password", "auth_user": "alice",
                                        "auth_password": "s3cret"},
             "options": {"ip": "10.0.0.6", "port": 5060},
             "DIDs": {"+14155553001": {}}}
        ]
    });
    let settings = Settings::from_value(&settings, Path::new("/tmp")).expect("settings");
    let doc = validate_document("acme", "main", &doc).expect("document");
    let catalog = Catalog::build(settings, [doc]).expect("catalog");
    H::routed(&catalog, false)
}

/// An OPTIONS to the proxy itself (no user part: answered by the proxy).
fn options(from: &str, tag: &str, extra: &str) -> String {
    format!(
        "OPTIONS sip:10.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP {from};branch=z9hG4bK-opt-{tag};rport
Max-Forwards: 70
From: <sip:ping@{from}>;tag=o-{tag}
To: <sip:10.0.0.1:5060>
Call-ID: opt-{tag}
CSeq: 1 OPTIONS
{extra}Content-Length: 0

"
    )
}

/// A request of `method` inside a dialog through our Record-Route.
fn in_dialog(method: &str, from: &str, call: &str) -> String {
    format!(
        "{method} sip:far@192.0.2.21:5060 SIP/2.0
Via: SIP/2.0/UDP {from};branch=z9hG4bK-{call}-{method};rport
Route: <sip:10.0.0.1:5060;lr>
Max-Forwards: 70
From: <sip:1000@pbx.example.com>;tag=pbx-{call}
To: <sip:+12125550100@10.0.0.1>;tag=callee1
Call-ID: {call}
CSeq: 2 {method}
Content-Length: 0

"
    )
}

fn cancel_from(from: &str, call: &str) -> String {
    format!(
        "CANCEL sip:+12125550100@10.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP {from};branch=z9hG4bK-{call};rport
Max-Forwards: 70
From: <sip:1000@pbx.example.com>;tag=pbx-{call}
To: <sip:+12125550100@10.0.0.1>
Call-ID: {call}
CSeq: 1 CANCEL
Content-Length: 0

"
    )
}

fn statuses(out: &[Transmit]) -> Vec<u16> {
    out.iter().filter_map(status).collect()
}

/// Three wrong passwords from `PW_PBX` (the ban threshold of these tests).
fn ban_pw_pbx(h: &mut H) {
    let first = h.feed(udp(PW_PBX), &pbx_call_invite("b0", PW_PBX, ""));
    assert_eq!(statuses(&first), [407]);
    let bad = authorization(
        &first[0],
        "alice",
        "nope",
        1,
        "sip:+12125550100@10.0.0.1:5060",
    );
    for i in 1..=3 {
        let out = h.feed(
            udp(PW_PBX),
            &pbx_call_invite(&format!("b{i}"), PW_PBX, &bad),
        );
        assert_eq!(statuses(&out), [403], "failure {i}");
    }
}

#[test]
fn a_scanners_options_gets_no_answer_but_known_sources_do() {
    let mut h = harness(json!({}));
    let out = h.feed(udp(STRANGER), &options(STRANGER, "s1", SCANNER_UA));
    assert!(out.is_empty(), "scanner answered: {:?}", statuses(&out));
    // Any other request of a scanner too: no 403 or 481 that says a SIP server is here.
    let bye = in_dialog("BYE", STRANGER, "s2")
        .replace("Content-Length", "User-Agent: sipvicious\nContent-Length");
    let out = h.feed(udp(STRANGER), &bye);
    assert!(out.is_empty(), "{:?}", statuses(&out));
    // The same source without the scanner's user agent is answered.
    let out = h.feed(udp(STRANGER), &options(STRANGER, "s3", ""));
    assert_eq!(statuses(&out), [200]);
    // A carrier and an IP-auth server are never taken for scanners.
    let out = h.feed(udp(CARRIER_C1), &options(CARRIER_C1, "s4", SCANNER_UA));
    assert_eq!(statuses(&out), [200]);
    let out = h.feed(udp(IP_PBX), &options(IP_PBX, "s5", SCANNER_UA));
    assert_eq!(statuses(&out), [200]);
    assert_eq!(h.proxy.protection_stats(h.now).dropped_scanner, 2);
}

#[test]
fn the_rate_limit_covers_options_and_in_dialog_requests() {
    let mut h = harness(json!({"rate": 1, "burst": 2}));
    for i in 0..2 {
        let out = h.feed(udp(STRANGER), &options(STRANGER, &format!("r{i}"), ""));
        assert_eq!(statuses(&out), [200]);
    }
    // Over the burst: silence, for OPTIONS and an in-dialog request alike.
    assert!(h
        .feed(udp(STRANGER), &options(STRANGER, "r2", ""))
        .is_empty());
    assert!(h
        .feed(udp(STRANGER), &in_dialog("BYE", STRANGER, "r3"))
        .is_empty());
    assert_eq!(h.proxy.protection_stats(h.now).dropped_rate_limited, 2);
    // A carrier is never limited.
    for i in 0..10 {
        let out = h.feed(udp(CARRIER_C1), &options(CARRIER_C1, &format!("c{i}"), ""));
        assert_eq!(statuses(&out), [200]);
    }
    // One second later the stranger has a token again.
    h.advance_by(1000);
    let out = h.feed(udp(STRANGER), &options(STRANGER, "r4", ""));
    assert_eq!(statuses(&out), [200]);
}

#[test]
fn a_banned_source_gets_nothing_for_any_request() {
    let mut h = harness(json!({"ban_threshold": 3, "ban_window": 60, "ban_time": 600}));
    ban_pw_pbx(&mut h);
    // OPTIONS, an in-dialog BYE and a CANCEL used to be answered (200, 403, 481).
    assert!(h.feed(udp(PW_PBX), &options(PW_PBX, "x1", "")).is_empty());
    assert!(h
        .feed(udp(PW_PBX), &in_dialog("BYE", PW_PBX, "x2"))
        .is_empty());
    assert!(h.feed(udp(PW_PBX), &cancel_from(PW_PBX, "x3")).is_empty());
    // Over TCP from another port of the same address: the ban is per address.
    let other = "10.0.0.99:40000";
    assert!(h.feed(tcp(other), &options(other, "x4", "")).is_empty());
    assert_eq!(h.proxy.protection_stats(h.now).dropped_banned, 4);
    // Others are not affected.
    let out = h.feed(udp(STRANGER), &options(STRANGER, "x5", ""));
    assert_eq!(statuses(&out), [200]);
    // The ban ends after ban_time.
    h.advance_by(600_000);
    let out = h.feed(udp(PW_PBX), &options(PW_PBX, "x6", ""));
    assert_eq!(statuses(&out), [200]);
}

#[test]
fn the_edge_asks_before_parsing_whether_a_source_is_banned() {
    let mut h = harness(json!({"ban_threshold": 3, "ban_window": 60, "ban_time": 600}));
    let pbx = addr(PW_PBX);
    assert!(h.proxy.admits(pbx, h.now));
    ban_pw_pbx(&mut h);
    let before = h.proxy.protection_stats(h.now).dropped_banned;
    assert!(!h.proxy.admits(pbx, h.now));
    assert!(!h.proxy.admits(addr("10.0.0.99:1"), h.now), "any port");
    assert_eq!(h.proxy.protection_stats(h.now).dropped_banned, before + 2);
    assert!(h.proxy.admits(addr(STRANGER), h.now));
    assert!(h.proxy.admits(addr(CARRIER_C1), h.now));
    h.advance_by(600_000);
    assert!(h.proxy.admits(pbx, h.now));
}

#[test]
fn connections_are_refused_for_bans_and_over_the_per_source_limit() {
    let mut h = harness(json!({"ban_threshold": 3, "ban_window": 60, "ban_time": 600}));
    let stranger = addr(STRANGER);
    // `open`: connections the source already has; the limit is the edge's setting.
    assert!(h.proxy.admits_connection(stranger, 31, 32, h.now));
    assert!(!h.proxy.admits_connection(stranger, 32, 32, h.now));
    // Carriers and IP-auth servers are never limited per source.
    assert!(h
        .proxy
        .admits_connection(addr("192.0.2.21:40001"), 5000, 32, h.now));
    assert!(h
        .proxy
        .admits_connection(addr("10.0.0.5:40001"), 5000, 32, h.now));
    ban_pw_pbx(&mut h);
    assert!(!h.proxy.admits_connection(addr(PW_PBX), 0, 32, h.now));
    let s = h.proxy.protection_stats(h.now);
    assert_eq!(
        (s.dropped_source_connections, s.dropped_banned_connections),
        (1, 1)
    );
    h.advance_by(600_000);
    assert!(h.proxy.admits_connection(addr(PW_PBX), 0, 32, h.now));
}

#[test]
fn an_authenticated_pbx_is_not_rate_limited_for_its_in_dialog_requests() {
    // Burst 3: the 407 round and the authenticated INVITE take them all; the PBX's
    // later requests pass because it authenticated (trusted for 300 s).
    let mut h = harness(json!({"rate": 1, "burst": 3}));
    let first = h.feed(udp(PW_PBX), &pbx_call_invite("t1", PW_PBX, ""));
    assert_eq!(statuses(&first), [407]);
    let good = authorization(
        &first[0],
        "alice",
        "s3cret",
        1,
        "sip:+12125550100@10.0.0.1:5060",
    );
    let out = h.feed(
        udp(PW_PBX),
        &pbx_call_invite("t1", PW_PBX, &good).replace("CSeq: 1", "CSeq: 2"),
    );
    assert!(statuses(&out).contains(&100), "{:?}", statuses(&out));
    for i in 0..5 {
        let out = h.feed(udp(PW_PBX), &options(PW_PBX, &format!("t{i}"), ""));
        assert_eq!(statuses(&out), [200], "request {i}");
    }
}
