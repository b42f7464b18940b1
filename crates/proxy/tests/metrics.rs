//! The core's counters (`Proxy::metrics`) on a virtual clock: calls by direction and
//! outcome, failovers by reason, auth failures, challenges and bans, retransmissions,
//! parse errors and the response-time histograms.

mod common;

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use common::*;
use serde_json::json;
use trunkstore_config::{validate_document, Catalog, Failover, Settings};
use trunkstore_proxy::metrics::{Direction, FailoverReason, Outcome};
use trunkstore_proxy::{ProxyConfig, Transmit, Transport};

const BACKUP: &str = "10.0.0.7:5060";

fn to(out: &[Transmit], peer: &str) -> Vec<Transmit> {
    out.iter()
        .filter(|t| t.to.addr == addr(peer))
        .cloned()
        .collect()
}

/// The DID with a SIP failover to BACKUP.
fn with_failover() -> H {
    let mut r = route_to("10.0.0.5", 5080, true, Transport::Udp);
    r.failover = Some(Arc::new(Failover {
        e164: None,
        sip: Some(format!("sip:backup@{BACKUP}")),
    }));
    H::with(
        ProxyConfig::for_tests("10.0.0.1", 5060),
        directory().with_did(DID, r),
    )
}

fn call(h: &mut H, id: &str) -> Vec<Transmit> {
    h.feed(udp(CARRIER), &invite(id, &format!("z9hG4bK-{id}")))
}

/// Every (direction, outcome) count, in a fixed order, for exact comparisons.
fn calls(h: &H) -> Vec<u64> {
    let m = h.proxy.metrics();
    let mut v = Vec::new();
    for d in [Direction::Inbound, Direction::Outbound, Direction::OnNet] {
        for o in [
            Outcome::Answered,
            Outcome::Cancelled,
            Outcome::Rejected,
            Outcome::Failed,
        ] {
            v.push(m.calls(d, o));
        }
    }
    v
}

fn page(h: &H) -> String {
    let mut out = String::new();
    h.proxy.metrics().render(&mut out);
    out
}

fn has_line(page: &str, line: &str) {
    assert!(page.lines().any(|l| l == line), "missing {line}:\n{page}");
}

#[test]
fn answered_busy_cancelled_and_rejected_calls() {
    let mut h = H::new();
    // Answered after 40 ms of ringing and 2 s more.
    let out = call(&mut h, "a1");
    let inv = to(&out, SERVER).remove(0);
    h.advance_by(40);
    h.feed(udp(SERVER), &reply(&inv, 100));
    h.feed(udp(SERVER), &reply(&inv, 180));
    h.feed(udp(SERVER), &reply(&inv, 180));
    h.advance_by(2_000);
    h.feed(udp(SERVER), &reply(&inv, 200));
    // A 2xx retransmission is relayed, not counted again.
    h.feed(udp(SERVER), &reply(&inv, 200));
    // Busy.
    let out = call(&mut h, "b1");
    h.feed(udp(SERVER), &reply(&to(&out, SERVER)[0], 486));
    // Cancelled by the caller after ringing: its 487 times the CANCEL, not the callee.
    let out = call(&mut h, "c1");
    let inv = to(&out, SERVER).remove(0);
    h.feed(udp(SERVER), &reply(&inv, 180));
    let out = h.feed(udp(CARRIER), &cancel("c1", "z9hG4bK-c1"));
    assert_eq!(to(&out, SERVER).len(), 1, "CANCEL forwarded");
    let out = h.feed(udp(SERVER), &reply(&inv, 487));
    assert_eq!(status(&to(&out, CARRIER)[0]), Some(487));
    // Unknown DID and disabled server: refused by the proxy itself.
    let unknown = invite("r1", "z9hG4bK-r1").replace(DID, "+14155559999");
    assert_eq!(status(&h.feed(udp(CARRIER), &unknown)[0]), Some(404));
    let disabled = invite("r2", "z9hG4bK-r2").replace(DID, "+14155550000");
    let out = h.feed(udp(CARRIER), &disabled);
    assert_eq!(status(to(&out, CARRIER).last().unwrap()), Some(480));
    // Not a call: an in-dialog BYE.
    h.feed(
        udp(CARRIER),
        &in_dialog_from_carrier("BYE", "a1", "z9hG4bK-bye", 2),
    );

    let m = h.proxy.metrics();
    assert_eq!(m.calls(Direction::Inbound, Outcome::Answered), 1);
    assert_eq!(m.calls(Direction::Inbound, Outcome::Failed), 1, "486");
    assert_eq!(m.calls(Direction::Inbound, Outcome::Cancelled), 1);
    assert_eq!(
        m.calls(Direction::Inbound, Outcome::Rejected),
        2,
        "404, 480"
    );
    assert_eq!(calls(&h).iter().sum::<u64>(), 5);
    // Provisional: a1 (once, though 180 came twice) and c1. Final: a1 and b1.
    assert_eq!(m.response_times_observed(Direction::Inbound), (2, 2));
    let p = page(&h);
    has_line(
        &p,
        "trunkstore_calls_total{direction=\"inbound\",outcome=\"answered\"} 1",
    );
    has_line(
        &p,
        "trunkstore_calls_total{direction=\"onnet\",outcome=\"answered\"} 0",
    );
    // a1's 180 after 40 ms, c1's at once.
    has_line(
        &p,
        "trunkstore_first_provisional_seconds_bucket{direction=\"inbound\",le=\"0.005\"} 1",
    );
    has_line(
        &p,
        "trunkstore_first_provisional_seconds_bucket{direction=\"inbound\",le=\"0.05\"} 2",
    );
    // a1's 200 after 2.04 s, b1's 486 at once.
    has_line(
        &p,
        "trunkstore_final_response_seconds_bucket{direction=\"inbound\",le=\"1\"} 1",
    );
    has_line(
        &p,
        "trunkstore_final_response_seconds_bucket{direction=\"inbound\",le=\"2.5\"} 2",
    );
    has_line(
        &p,
        "trunkstore_final_response_seconds_count{direction=\"inbound\"} 2",
    );
}

#[test]
fn failovers_by_reason() {
    // A 503: failover on a response; the backup answers.
    let mut h = with_failover();
    let out = call(&mut h, "f1");
    let out = h.feed(udp(SERVER), &reply(&to(&out, SERVER)[0], 503));
    let backup = to(&out, BACKUP).remove(0);
    h.feed(udp(BACKUP), &reply(&backup, 200));
    // Timer B on the first attempt; then the backup's own timer B: no second failover.
    let out = call(&mut h, "f2");
    assert_eq!(to(&out, SERVER).len(), 1);
    let out = h.advance_by(32_000);
    assert_eq!(out.iter().filter(|(_, t)| t.to == udp(BACKUP)).count(), 1);
    h.advance_by(32_000);
    // A transport error.
    call(&mut h, "f3");
    h.proxy
        .handle_transport_error(&mut h.shard, h.now, udp(SERVER));
    h.drain();
    // 486 does not fail over.
    let out = call(&mut h, "f4");
    h.feed(udp(SERVER), &reply(&to(&out, SERVER)[0], 486));

    let m = h.proxy.metrics();
    assert_eq!(m.failovers(FailoverReason::Response), 1);
    assert_eq!(m.failovers(FailoverReason::Timeout), 1);
    assert_eq!(m.failovers(FailoverReason::Transport), 1);
    assert_eq!(m.calls(Direction::Inbound, Outcome::Answered), 1);
    let p = page(&h);
    has_line(&p, "trunkstore_failovers_total{reason=\"response\"} 1");
    has_line(&p, "trunkstore_failovers_total{reason=\"timeout\"} 1");
}

#[test]
fn retransmissions_sent_and_received_and_parse_errors() {
    let mut h = H::new();
    let out = call(&mut h, "t1");
    assert_eq!(to(&out, SERVER).len(), 1);
    // Timer A: the INVITE again at 500 ms and 1.5 s.
    let out = h.advance_to(1_600);
    assert_eq!(out.iter().filter(|(_, t)| t.to == udp(SERVER)).count(), 2);
    assert_eq!(h.proxy.metrics().retransmissions(), (2, 0));
    // The carrier retransmits its INVITE: absorbed (our 100 again).
    let out = call(&mut h, "t1");
    assert_eq!(to(&out, SERVER).len(), 0);
    assert_eq!(h.proxy.metrics().retransmissions(), (2, 1));
    // Garbage and a keepalive: one parse error.
    h.feed_bytes(
        udp(CARRIER),
        Bytes::from_static(b"\x16\x03\x01garbage\r\n\r\n"),
    );
    h.feed_bytes(udp(CARRIER), Bytes::from_static(b"\r\n\r\n"));
    assert_eq!(h.proxy.metrics().parse_errors(), 1);
    let p = page(&h);
    has_line(&p, "trunkstore_retransmissions_total{kind=\"sent\"} 2");
    has_line(&p, "trunkstore_retransmissions_total{kind=\"received\"} 1");
    has_line(&p, "trunkstore_parse_errors_total 1");
    // No call has ended yet.
    assert_eq!(calls(&h).iter().sum::<u64>(), 0);
}

// ---- Outbound: digest auth over the routing index ----

const PW_PBX: &str = "10.0.0.99:5060";
const C1: &str = "192.0.2.21:5060";
/// The Request-URI of `pbx_call_invite`.
const PBX_RURI: &str = "sip:+12125550100@10.0.0.1:5060";

fn outbound_harness() -> H {
    let settings = json!({
        "listen": {"udp": ["10.0.0.1:5060"]},
        "advertise": "10.0.0.1:5060",
        "default_realm": "trunks.example",
        "carriers": [{"name": "c1", "gateways": [{"host": "192.0.2.21"}],
                      "sources": ["192.0.2.21"]}],
        "protection": {"ban_threshold": 3, "ban_window": 60, "ban_time": 600}
    });
    let doc = json!({
        "account": {"trunks": 2},
        "servers": [{"name": "pw-pbx", "auth": {"auth_method": "password",
                     "auth_user": "alice", "auth_password": "s3cret"},
                     "options": {"ip": "10.0.0.6", "port": 5060},
                     "DIDs": {"+14155553001": {}}}]
    });
    let settings = Settings::from_value(&settings, Path::new("/tmp")).expect("settings");
    let doc = validate_document("acme", "main", &doc).expect("document");
    let catalog = Catalog::build(settings, [doc]).expect("catalog");
    H::routed(&catalog, false)
}

#[test]
fn auth_challenges_failures_bans_and_an_outbound_call() {
    let mut h = outbound_harness();
    // 407 (no credentials): a challenge, not a call.
    let first = h.feed(udp(PW_PBX), &pbx_call_invite("o0", PW_PBX, ""));
    assert_eq!(status(&first[0]), Some(407));
    assert_eq!(h.proxy.metrics().challenges(), 1);
    assert_eq!(calls(&h).iter().sum::<u64>(), 0);
    // Good credentials: forwarded to the carrier, which answers.
    let auth = authorization(&first[0], "alice", "s3cret", 1, PBX_RURI);
    let out = h.feed(udp(PW_PBX), &pbx_call_invite("o1", PW_PBX, &auth));
    let inv = to(&out, C1).remove(0);
    h.feed(udp(C1), &reply(&inv, 183));
    h.feed(udp(C1), &reply(&inv, 200));
    assert_eq!(
        h.proxy
            .metrics()
            .calls(Direction::Outbound, Outcome::Answered),
        1
    );
    assert_eq!(
        h.proxy
            .metrics()
            .response_times_observed(Direction::Outbound),
        (1, 1)
    );
    // Three wrong passwords from one address: three 403s, the third bans it.
    let w = "10.0.0.98:5060";
    let first = h.feed(udp(w), &pbx_call_invite("w0", w, ""));
    for i in 1..=3 {
        let auth = authorization(&first[0], "alice", "wrong", 1, PBX_RURI);
        let out = h.feed(udp(w), &pbx_call_invite(&format!("w{i}"), w, &auth));
        assert_eq!(status(&out[0]), Some(403));
    }
    // Banned: dropped without an answer, counted by protection only.
    assert!(h.feed(udp(w), &pbx_call_invite("w4", w, "")).is_empty());
    let m = h.proxy.metrics();
    assert_eq!((m.auth_failures(), m.bans(), m.challenges()), (3, 1, 2));
    assert_eq!(m.calls(Direction::Outbound, Outcome::Rejected), 3);
    assert_eq!(calls(&h).iter().sum::<u64>(), 4);
    let stats = h.proxy.protection_stats(h.now);
    assert_eq!((stats.auth_failures, stats.bans_active), (3, 1));
    let p = page(&h);
    has_line(&p, "trunkstore_auth_failures_total 3");
    has_line(&p, "trunkstore_auth_challenges_total 2");
    has_line(&p, "trunkstore_bans_total 1");
    has_line(
        &p,
        "trunkstore_calls_total{direction=\"outbound\",outcome=\"rejected\"} 3",
    );
    // The trunk the answered call holds, and its account's limit.
    assert_eq!(h.proxy.trunks_in_use(), vec![("acme".to_string(), 1)]);
    assert_eq!(h.proxy.trunk_limits(), vec![("acme".to_string(), 2)]);
}

/// A forward that fails inside the proxy is never silent: the caller gets its answer and
/// `/metrics` counts the failure by reason (issue 14).
#[test]
fn forward_errors_are_counted_by_reason() {
    let mut r = route_to("10.0.0.5", 5080, true, Transport::Udp);
    r.next_hop = None;
    let mut h = H::with(
        ProxyConfig::for_tests("10.0.0.1", 5060),
        directory().with_did(DID, r),
    );
    let before = page(&h);
    has_line(
        &before,
        "trunkstore_forward_errors_total{reason=\"no_next_hop\"} 0",
    );
    has_line(
        &before,
        "trunkstore_forward_errors_total{reason=\"edit\"} 0",
    );
    let out = call(&mut h, "fe1");
    let codes: Vec<_> = out.iter().map(status).collect();
    assert_eq!(codes, vec![Some(100), Some(480)]);
    assert_eq!(h.proxy.metrics().forward_errors("no_next_hop"), 1);
    has_line(
        &page(&h),
        "trunkstore_forward_errors_total{reason=\"no_next_hop\"} 1",
    );
}

/// A response with no Via left once ours is removed was meant for the proxy: not
/// relayed, counted.
#[test]
fn response_with_no_via_left_is_counted() {
    let mut h = H::new();
    let out = call(&mut h, "nv1");
    let inv = to(&out, SERVER).remove(0);
    // Only our Via: the caller's is gone.
    let ours = vias(&inv).remove(0);
    let text = reply(&inv, 180);
    let mut kept = Vec::new();
    let mut first_via = true;
    for line in text.split('\n') {
        if line.starts_with("Via:") {
            if first_via {
                kept.push(format!("Via: {ours}"));
                first_via = false;
            }
            continue;
        }
        kept.push(line.to_string());
    }
    let out = h.feed(udp(SERVER), &kept.join("\n"));
    assert!(to(&out, CARRIER).is_empty(), "not relayed: {out:?}");
    assert_eq!(h.proxy.metrics().forward_errors("no_via_left"), 1);
}
