//! Targets named by DNS (behaviour.md §4.3, RFC 3263): the core asks the edge to resolve
//! them and waits; the attempt goes to the first hop, to the next on a 503, a timeout or
//! a transport error, and fails as unreachable (480) when no hop is left.

mod common;

use std::sync::Arc;

use common::*;
use trunkstore_proxy::{Peer, ProxyConfig, Transport};

const HOP_A: &str = "10.0.0.21:5060";
const HOP_B: &str = "10.0.0.22:5060";

/// The DID's PBX fails over to `sip:backup@pbx.example.net` (a name).
fn proxy() -> H {
    let mut cfg = ProxyConfig::for_tests("10.0.0.1", 5060);
    cfg.call_records = true;
    let mut r = route_to("10.0.0.5", 5080, true, Transport::Udp);
    r.failover = Some(Arc::new(trunkstore_config::Failover {
        e164: None,
        sip: Some("sip:backup@pbx.example.net".into()),
    }));
    H::with(cfg, directory().with_did(DID, r))
}

/// The call's primary attempt refused with 503: the failover's name is asked for.
fn failing_over(h: &mut H, call: &str) -> trunkstore_proxy::ResolveRequest {
    let out = h.feed(udp(CARRIER), &invite(call, &format!("z9hG4bK-{call}")));
    let fwd = out.iter().find(|t| t.to == udp(SERVER)).unwrap().clone();
    assert!(h.shard.poll_resolve().is_none(), "the primary is an IP");
    let out = h.feed(udp(SERVER), &reply(&fwd, 503));
    assert!(
        out.iter().all(|t| method(t) != "INVITE"),
        "nothing sent before DNS"
    );
    let req = h
        .shard
        .poll_resolve()
        .expect("the failover's name is asked for");
    assert_eq!(req.target.host, "pbx.example.net");
    assert_eq!((req.target.port, req.target.transport), (None, None));
    req
}

fn resolved(
    h: &mut H,
    req: &trunkstore_proxy::ResolveRequest,
    hops: &[&str],
) -> Vec<trunkstore_proxy::Transmit> {
    let hops: Vec<Peer> = hops.iter().map(|a| udp(a)).collect();
    h.proxy
        .handle_resolved(&mut h.shard, h.now, req.key, Ok(hops));
    h.drain()
}

fn invite_to<'a>(
    out: &'a [trunkstore_proxy::Transmit],
    hop: &str,
) -> &'a trunkstore_proxy::Transmit {
    out.iter()
        .find(|t| t.to == udp(hop) && method(t) == "INVITE")
        .unwrap_or_else(|| panic!("no INVITE to {hop}"))
}

#[test]
fn a_503_from_the_first_hop_tries_the_next_within_the_same_attempt() {
    let mut h = proxy();
    let req = failing_over(&mut h, "d1");
    let out = resolved(&mut h, &req, &[HOP_A, HOP_B]);
    let a = invite_to(&out, HOP_A).clone();
    assert_eq!(
        parse(&a).request_uri(),
        b"sip:backup@pbx.example.net",
        "the Request-URI keeps the name"
    );
    let out = h.feed(udp(HOP_A), &reply(&a, 503));
    let b = invite_to(&out, HOP_B).clone();
    assert!(h.shard.poll_resolve().is_none(), "no second lookup");
    let out = h.feed(udp(HOP_B), &answer(&b, 200, "sip:backup@10.0.0.22"));
    let up: Vec<_> = out.iter().filter(|t| t.to == udp(CARRIER)).collect();
    assert_eq!(status(up[0]), Some(200));
    // The call's BYE goes to the hop that answered; the record says the failover
    // attempt (2) answered, not a third one.
    h.feed(
        udp(CARRIER),
        &in_dialog_from_carrier("ACK", "d1", "z9hG4bK-ack-d1", 1),
    );
    let out = h.feed(
        udp(CARRIER),
        &in_dialog_from_carrier("BYE", "d1", "z9hG4bK-bye-d1", 2),
    );
    let bye = out
        .iter()
        .find(|t| method(t) == "BYE")
        .expect("BYE forwarded");
    assert_eq!(bye.to, udp(HOP_B));
    h.feed(udp(HOP_B), &reply(bye, 200));
    let rec = h.shard.poll_call_record().expect("a record");
    assert_eq!((rec.answered_attempt, rec.failover), (Some(2), true));
}

#[test]
fn a_final_refusal_from_a_hop_is_the_attempts_answer() {
    let mut h = proxy();
    let req = failing_over(&mut h, "d2");
    let out = resolved(&mut h, &req, &[HOP_A, HOP_B]);
    let a = invite_to(&out, HOP_A).clone();
    let out = h.feed(udp(HOP_A), &reply(&a, 486));
    assert!(
        out.iter().all(|t| t.to != udp(HOP_B)),
        "486 is not a reason to try the next hop"
    );
    let up: Vec<_> = out.iter().filter(|t| t.to == udp(CARRIER)).collect();
    assert_eq!(status(up[0]), Some(486));
}

#[test]
fn a_silent_hop_times_out_and_the_next_is_tried() {
    let mut h = proxy();
    let req = failing_over(&mut h, "d3");
    let out = resolved(&mut h, &req, &[HOP_A, HOP_B]);
    invite_to(&out, HOP_A);
    // Timer B (64·T1 = 32 s) on the first hop.
    let out: Vec<_> = h.advance_by(32_000).into_iter().map(|(_, t)| t).collect();
    let b = invite_to(&out, HOP_B).clone();
    let out = h.feed(udp(HOP_B), &answer(&b, 200, "sip:backup@10.0.0.22"));
    assert_eq!(
        status(out.iter().find(|t| t.to == udp(CARRIER)).unwrap()),
        Some(200)
    );
}

#[test]
fn a_transport_error_on_a_hop_tries_the_next() {
    let mut h = proxy();
    let req = failing_over(&mut h, "d4");
    let out = resolved(&mut h, &req, &[HOP_A, HOP_B]);
    invite_to(&out, HOP_A);
    h.proxy.handle_unreachable(&mut h.shard, h.now, udp(HOP_A));
    let out = h.drain();
    invite_to(&out, HOP_B);
}

#[test]
fn an_unresolvable_name_fails_the_attempt_as_unreachable() {
    let mut h = proxy();
    let req = failing_over(&mut h, "d5");
    h.proxy
        .handle_resolved(&mut h.shard, h.now, req.key, Err("NXDOMAIN".into()));
    let out = h.drain();
    let up: Vec<_> = out.iter().filter(|t| t.to == udp(CARRIER)).collect();
    // Unreachable (480) ranks before the primary's 503 (§16.7 step 6).
    assert_eq!(status(up[0]), Some(480));
    // A late duplicate answer changes nothing.
    let out = resolved(&mut h, &req, &[HOP_A]);
    assert!(out.is_empty());
}

#[test]
fn every_hop_refusing_with_503_ends_the_attempt() {
    let mut h = proxy();
    let req = failing_over(&mut h, "d6");
    let out = resolved(&mut h, &req, &[HOP_A, HOP_B]);
    let a = invite_to(&out, HOP_A).clone();
    let out = h.feed(udp(HOP_A), &reply(&a, 503));
    let b = invite_to(&out, HOP_B).clone();
    let out = h.feed(udp(HOP_B), &reply(&b, 503));
    let up: Vec<_> = out.iter().filter(|t| t.to == udp(CARRIER)).collect();
    assert_eq!(status(up[0]), Some(500), "503 relayed as 500");
    h.feed(udp(CARRIER), &ack_non2xx("d6", "z9hG4bK-d6", "x"));
    h.assert_drained();
}
