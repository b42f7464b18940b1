//! End-to-end flows through the proxy core on a virtual clock.

mod common;

use common::*;
use trunkstore_sip::message::HeaderName;

/// INVITE from the carrier: 100 at once, INVITE to the server with the DID in npan.
fn start_call(h: &mut H, call: &str, br: &str) -> trunkstore_proxy::Transmit {
    let out = h.feed(udp(CARRIER), &invite(call, br));
    assert_eq!(
        out.len(),
        2,
        "{:?}",
        out.iter().map(text).collect::<Vec<_>>()
    );
    assert_eq!(status(&out[0]), Some(100));
    assert_eq!(out[0].to, udp(CARRIER));
    assert_eq!(method(&out[1]), "INVITE");
    assert_eq!(out[1].to, udp(SERVER));
    out[1].clone()
}

#[test]
fn invite_is_forwarded_per_rfc_3261_16_6() {
    let mut h = H::new();
    let fwd = start_call(&mut h, "c1", "z9hG4bK-a1");
    let m = parse(&fwd);
    assert_eq!(m.request_uri(), b"sip:4155551234@10.0.0.5:5080");
    let v = vias(&fwd);
    assert!(
        v[0].starts_with("SIP/2.0/UDP 10.0.0.1:5060;rport;branch=z9hG4bK"),
        "{v:?}"
    );
    assert!(v[1].contains("rport=5060"), "{v:?}");
    assert!(v[1].contains("received=192.0.2.10"), "{v:?}");
    assert_eq!(header(&fwd, HeaderName::MaxForwards).as_deref(), Some("69"));
    assert_eq!(
        header(&fwd, HeaderName::RecordRoute).as_deref(),
        Some("<sip:10.0.0.1:5060;lr>")
    );
    // To/From/Call-ID untouched.
    assert_eq!(
        header(&fwd, HeaderName::To).as_deref(),
        Some("<sip:+14155551234@10.0.0.1>")
    );
    assert_eq!(header(&fwd, HeaderName::CallId).as_deref(), Some("c1"));
}

#[test]
fn full_call_and_tables_empty_afterwards() {
    let mut h = H::new();
    assert!(!h.proxy.in_progress());
    let fwd = start_call(&mut h, "c1", "z9hG4bK-a1");
    assert!(h.proxy.in_progress(), "ringing");
    // 100 from the server is not forwarded.
    assert!(h.feed(udp(SERVER), &reply(&fwd, 100)).is_empty());
    let out = h.feed(udp(SERVER), &reply(&fwd, 180));
    assert_eq!(out.len(), 1);
    assert_eq!(status(&out[0]), Some(180));
    assert_eq!(out[0].to, udp(CARRIER));
    assert_eq!(vias(&out[0]).len(), 1, "our Via removed");
    let ok = answer(&fwd, 200, "sip:4155551234@10.0.0.5:5080");
    let out = h.feed(udp(SERVER), &ok);
    assert_eq!(status(&out[0]), Some(200));
    assert_eq!(out[0].to, udp(CARRIER));
    assert_eq!(h.proxy.stats().calls, 1);
    // 200 retransmission forwarded again (RFC 6026).
    let out = h.feed(udp(SERVER), &ok);
    assert_eq!(out.len(), 1);
    assert_eq!(status(&out[0]), Some(200));
    // ACK through the Record-Route: Route popped, to the R-URI's host.
    let out = h.feed(
        udp(CARRIER),
        &in_dialog_from_carrier("ACK", "c1", "z9hG4bK-ack1", 1),
    );
    assert_eq!(out.len(), 1);
    assert_eq!(method(&out[0]), "ACK");
    assert_eq!(out[0].to, udp(SERVER));
    assert_eq!(header(&out[0], HeaderName::Route), None);
    assert_eq!(
        header(&out[0], HeaderName::MaxForwards).as_deref(),
        Some("69")
    );
    // BYE from the callee goes to the carrier.
    let out = h.feed(udp(SERVER), &bye_from_server("c1", "z9hG4bK-bye1"));
    assert_eq!(out.len(), 1);
    assert_eq!(method(&out[0]), "BYE");
    assert_eq!(out[0].to, udp(CARRIER));
    let bye = out[0].clone();
    let out = h.feed(udp(CARRIER), &reply(&bye, 200));
    assert_eq!(out.len(), 1);
    assert_eq!(status(&out[0]), Some(200));
    assert_eq!(out[0].to, udp("10.0.0.5:5080"));
    assert_eq!(h.proxy.stats().calls, 0);
    // Over: what is left only absorbs retransmissions (a graceful shutdown need not wait).
    assert!(h.proxy.stats().server_transactions > 0);
    assert!(!h.proxy.in_progress());
    h.advance_by(10 * 60 * 1000);
    let s = h.proxy.stats();
    assert_eq!(
        (s.server_transactions, s.client_transactions, s.calls),
        (0, 0, 0)
    );
    assert_eq!(h.shard.pending_timers(), 0);
}

#[test]
fn invite_retransmission_gets_last_provisional() {
    let mut h = H::new();
    let fwd = start_call(&mut h, "c1", "z9hG4bK-a1");
    let out = h.feed(udp(CARRIER), &invite("c1", "z9hG4bK-a1"));
    assert_eq!(out.len(), 1);
    assert_eq!(status(&out[0]), Some(100));
    h.feed(udp(SERVER), &reply(&fwd, 180));
    let out = h.feed(udp(CARRIER), &invite("c1", "z9hG4bK-a1"));
    assert_eq!(out.len(), 1);
    assert_eq!(status(&out[0]), Some(180));
}

#[test]
fn our_invite_retransmissions_stop_at_first_provisional() {
    let mut h = H::new();
    let fwd = start_call(&mut h, "c1", "z9hG4bK-a1");
    let out = h.advance_to(3600);
    let at: Vec<u64> = out
        .iter()
        .filter(|(_, t)| t.to == udp(SERVER))
        .map(|(o, _)| *o)
        .collect();
    assert_eq!(at, vec![500, 1500, 3500]);
    assert!(
        out.iter().all(|(_, t)| t.data == fwd.data),
        "identical retransmissions"
    );
    h.feed(udp(SERVER), &reply(&fwd, 100));
    let out = h.advance_to(20_000);
    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn timer_b_gives_408_upstream() {
    let mut h = H::new();
    start_call(&mut h, "c1", "z9hG4bK-a1");
    let out = h.advance_to(32_400);
    let up: Vec<_> = out.iter().filter(|(_, t)| t.to == udp(CARRIER)).collect();
    assert_eq!(up.len(), 1);
    assert_eq!(up[0].0, 32_000);
    assert_eq!(status(&up[0].1), Some(408));
    // The carrier ACKs; everything drains.
    let out = h.feed(udp(CARRIER), &ack_non2xx("c1", "z9hG4bK-a1", "x"));
    assert!(out.is_empty());
    h.advance_by(600_000);
    assert_eq!(h.proxy.stats(), Default::default());
}

#[test]
fn busy_is_relayed_and_acked_hop_by_hop() {
    let mut h = H::new();
    let fwd = start_call(&mut h, "c1", "z9hG4bK-a1");
    let busy = reply(&fwd, 486);
    let out = h.feed(udp(SERVER), &busy);
    assert_eq!(
        out.len(),
        2,
        "{:?}",
        out.iter().map(text).collect::<Vec<_>>()
    );
    let ack = out.iter().find(|t| t.to == udp(SERVER)).unwrap();
    assert_eq!(method(ack), "ACK");
    assert_eq!(vias(ack)[0], vias(&fwd)[0], "ACK has the INVITE's branch");
    let up = out.iter().find(|t| t.to == udp(CARRIER)).unwrap();
    assert_eq!(status(up), Some(486));
    // A retransmitted 486 gets our ACK again, and is not relayed twice.
    let out = h.feed(udp(SERVER), &busy);
    assert_eq!(out.len(), 1);
    assert_eq!(method(&out[0]), "ACK");
    // Our 486 is retransmitted until the carrier's ACK, which is absorbed, not routed.
    let out = h.advance_by(600);
    assert_eq!(out.len(), 1);
    assert_eq!(status(&out[0].1), Some(486));
    let out = h.feed(udp(CARRIER), &ack_non2xx("c1", "z9hG4bK-a1", "callee1"));
    assert!(out.is_empty());
    assert!(h.advance_by(5000).is_empty());
    h.advance_by(600_000);
    assert_eq!(h.proxy.stats(), Default::default());
}

#[test]
fn service_unavailable_is_relayed_as_500() {
    let mut h = H::new();
    let fwd = start_call(&mut h, "c1", "z9hG4bK-a1");
    let out = h.feed(udp(SERVER), &reply(&fwd, 503));
    let up = out.iter().find(|t| t.to == udp(CARRIER)).unwrap();
    assert_eq!(status(up), Some(500));
}

#[test]
fn cancel_flow() {
    let mut h = H::new();
    let fwd = start_call(&mut h, "c1", "z9hG4bK-a1");
    // CANCEL before any provisional: 200 at once, not forwarded yet.
    let out = h.feed(udp(CARRIER), &cancel("c1", "z9hG4bK-a1"));
    assert_eq!(out.len(), 1);
    assert_eq!(status(&out[0]), Some(200));
    assert_eq!(out[0].to, udp(CARRIER));
    // Retransmitted CANCEL: 200 again, never 481.
    let out = h.feed(udp(CARRIER), &cancel("c1", "z9hG4bK-a1"));
    assert_eq!(out.len(), 1);
    assert_eq!(status(&out[0]), Some(200));
    // The provisional arrives: now the CANCEL goes out (same branch as the INVITE).
    let out = h.feed(udp(SERVER), &reply(&fwd, 180));
    let c: Vec<_> = out.iter().filter(|t| t.to == udp(SERVER)).collect();
    assert_eq!(c.len(), 1, "{:?}", out.iter().map(text).collect::<Vec<_>>());
    assert_eq!(method(c[0]), "CANCEL");
    assert_eq!(vias(c[0])[0], vias(&fwd)[0]);
    let c = c[0].clone();
    assert!(h.feed(udp(SERVER), &reply(&c, 200)).is_empty());
    // 487 from the server: we ACK it and relay 487.
    let out = h.feed(udp(SERVER), &reply(&fwd, 487));
    assert_eq!(out.len(), 2);
    assert!(out
        .iter()
        .any(|t| t.to == udp(SERVER) && method(t) == "ACK"));
    let up = out.iter().find(|t| t.to == udp(CARRIER)).unwrap();
    assert_eq!(status(up), Some(487));
    h.feed(udp(CARRIER), &ack_non2xx("c1", "z9hG4bK-a1", "callee1"));
    h.advance_by(600_000);
    assert_eq!(h.proxy.stats(), Default::default());
    assert_eq!(h.shard.pending_timers(), 0);
}

#[test]
fn cancel_after_provisional_is_forwarded_at_once() {
    let mut h = H::new();
    let fwd = start_call(&mut h, "c1", "z9hG4bK-a1");
    h.feed(udp(SERVER), &reply(&fwd, 180));
    let out = h.feed(udp(CARRIER), &cancel("c1", "z9hG4bK-a1"));
    assert_eq!(out.len(), 2);
    assert_eq!(status(&out[0]), Some(200));
    assert_eq!(method(&out[1]), "CANCEL");
}

#[test]
fn unmatched_cancel_gets_481() {
    let mut h = H::new();
    let out = h.feed(udp(CARRIER), &cancel("nope", "z9hG4bK-zz"));
    assert_eq!(out.len(), 1);
    assert_eq!(status(&out[0]), Some(481));
}

#[test]
fn late_2xx_after_caller_cancel_is_forwarded() {
    let mut h = H::new();
    let fwd = start_call(&mut h, "c1", "z9hG4bK-a1");
    h.feed(udp(SERVER), &reply(&fwd, 180));
    h.feed(udp(CARRIER), &cancel("c1", "z9hG4bK-a1"));
    let out = h.feed(
        udp(SERVER),
        &answer(&fwd, 200, "sip:4155551234@10.0.0.5:5080"),
    );
    assert_eq!(out.len(), 1);
    assert_eq!(status(&out[0]), Some(200));
    assert_eq!(out[0].to, udp(CARRIER));
}

#[test]
fn timer_c_cancels_then_late_2xx_is_acked_and_byed() {
    let mut h = H::new();
    let fwd = start_call(&mut h, "c1", "z9hG4bK-a1");
    h.feed(udp(SERVER), &reply(&fwd, 180));
    let out = h.advance_to(185_000 + 10);
    let cancels: Vec<_> = out.iter().filter(|(_, t)| method(t) == "CANCEL").collect();
    assert_eq!(cancels.len(), 1);
    assert_eq!(cancels[0].0, 185_000);
    let out = h.feed(
        udp(SERVER),
        &answer(&fwd, 200, "sip:4155551234@10.0.0.5:5080"),
    );
    let methods: Vec<String> = out.iter().map(method).collect();
    assert_eq!(methods, vec!["ACK", "BYE"]);
    assert!(out.iter().all(|t| t.to == udp(SERVER)));
}

#[test]
fn each_provisional_restarts_timer_c() {
    let mut h = H::new();
    let fwd = start_call(&mut h, "c1", "z9hG4bK-a1");
    h.feed(udp(SERVER), &reply(&fwd, 180));
    assert!(h
        .advance_to(100_000)
        .iter()
        .all(|(_, t)| method(t) != "CANCEL"));
    h.feed(udp(SERVER), &reply(&fwd, 183));
    let out = h.advance_to(300_000);
    let cancels: Vec<u64> = out
        .iter()
        .filter(|(_, t)| method(t) == "CANCEL")
        .map(|(at, _)| *at)
        .collect();
    // Then the CANCEL's own retransmissions (timer E).
    assert_eq!(
        cancels.first(),
        Some(&285_000),
        "timer C runs from the last provisional"
    );
}

#[test]
fn timer_c_without_provisional_is_408() {
    let mut h = H::with(
        {
            let mut c = trunkstore_proxy::ProxyConfig::for_tests("10.0.0.1", 5060);
            c.t1 = std::time::Duration::from_secs(4); // B = 256 s > C
            c
        },
        directory(),
    );
    start_call(&mut h, "c1", "z9hG4bK-a1");
    let out = h.advance_to(185_500);
    let up: Vec<_> = out.iter().filter(|(_, t)| t.to == udp(CARRIER)).collect();
    assert_eq!(up.len(), 1);
    assert_eq!(status(&up[0].1), Some(408));
}

#[test]
fn transport_error_is_503_relayed_as_500() {
    let mut h = H::new();
    start_call(&mut h, "c1", "z9hG4bK-a1");
    h.proxy
        .handle_transport_error(&mut h.shard, h.now, udp(SERVER));
    let out = h.drain();
    assert_eq!(out.len(), 1);
    assert_eq!(status(&out[0]), Some(500));
}

#[test]
fn unknown_did_404_unknown_source_403_disabled_480() {
    let mut h = H::new();
    let inv = invite("c1", "z9hG4bK-a1").replace(DID, "+14155559999");
    let out = h.feed(udp(CARRIER), &inv);
    assert_eq!(out.len(), 1);
    assert_eq!(status(&out[0]), Some(404));
    assert!(header(&out[0], HeaderName::To).unwrap().contains("tag="));
    let out = h.feed(udp("198.51.100.7:5060"), &invite("c2", "z9hG4bK-a2"));
    assert_eq!(status(&out[0]), Some(403));
    assert_eq!(out[0].to, udp("198.51.100.7:5060"));
    let inv = invite("c3", "z9hG4bK-a3").replace(DID, "+14155550000");
    let out = h.feed(udp(CARRIER), &inv);
    assert_eq!(status(&out[0]), Some(480));
}

#[test]
fn validation_responses() {
    let mut h = H::new();
    let mf0 = invite("c1", "z9hG4bK-a1").replace("Max-Forwards: 70", "Max-Forwards: 0");
    assert_eq!(status(&h.feed(udp(CARRIER), &mf0)[0]), Some(483));
    let pr =
        invite("c2", "z9hG4bK-a2").replace("CSeq: 1 INVITE", "CSeq: 1 INVITE\nProxy-Require: foo");
    let out = h.feed(udp(CARRIER), &pr);
    assert_eq!(status(&out[0]), Some(420));
    assert_eq!(
        header(&out[0], HeaderName::Unsupported).as_deref(),
        Some("foo")
    );
    // Require is for the UAS: ignored by the proxy.
    let rq = invite("c3", "z9hG4bK-a3").replace("CSeq: 1 INVITE", "CSeq: 1 INVITE\nRequire: foo");
    assert_eq!(status(&h.feed(udp(CARRIER), &rq)[0]), Some(100));
    let scheme = invite("c4", "z9hG4bK-a4")
        .replace("INVITE sip:+14155551234@10.0.0.1:5060", "INVITE http://x");
    assert_eq!(status(&h.feed(udp(CARRIER), &scheme)[0]), Some(416));
    let bad = invite("c5", "z9hG4bK-a5").replace("CSeq: 1 INVITE", "CSeq: 1 BYE");
    assert_eq!(status(&h.feed(udp(CARRIER), &bad)[0]), Some(400));
}

#[test]
fn missing_max_forwards_gets_70() {
    let mut h = H::new();
    let inv = invite("c1", "z9hG4bK-a1").replace("Max-Forwards: 70\n", "");
    let out = h.feed(udp(CARRIER), &inv);
    assert_eq!(
        header(&out[1], HeaderName::MaxForwards).as_deref(),
        Some("70")
    );
}

#[test]
fn loop_is_482_and_a_spiral_is_a_merged_request() {
    let mut h = H::new();
    let fwd = start_call(&mut h, "c1", "z9hG4bK-a1");
    // Our INVITE comes back with the Request-URI we received: a loop.
    let looped = text(&fwd).replace(
        "INVITE sip:4155551234@10.0.0.5:5080 SIP/2.0",
        "INVITE sip:+14155551234@10.0.0.1:5060 SIP/2.0",
    );
    let out = h.feed_bytes(udp(CARRIER), bytes::Bytes::from(looped));
    assert_eq!(out.len(), 1);
    assert_eq!(status(&out[0]), Some(482));
    // With another Request-URI (the one we set) it would be a spiral; but its Call-ID
    // and From tag are a call in progress, which is one dialog entry: a merged
    // request (§8.2.2.2), refused with 482 too and never forwarded.
    let out = h.feed_bytes(udp(CARRIER), fwd.data.clone());
    assert_eq!(out.len(), 1);
    assert_eq!(status(&out[0]), Some(482));
    assert_eq!(h.proxy.stats().calls, 1);
}

#[test]
fn options_to_us_is_answered_locally() {
    let mut h = H::new();
    let opt = options_to_proxy(70);
    let out = h.feed(udp(CARRIER), &opt);
    assert_eq!(out.len(), 1);
    assert_eq!(status(&out[0]), Some(200));
    assert_eq!(out[0].to, udp(CARRIER));
}

#[test]
fn unknown_method_is_forwarded_and_non_invite_never_gets_408() {
    let mut h = H::new();
    let req = invite("c1", "z9hG4bK-a1")
        .replace("INVITE sip", "FOO sip")
        .replace("1 INVITE", "1 FOO");
    let out = h.feed(udp(CARRIER), &req);
    assert_eq!(out.len(), 1, "no 100 for non-INVITE");
    assert_eq!(method(&out[0]), "FOO");
    assert_eq!(header(&out[0], HeaderName::RecordRoute), None);
    let out = h.advance_to(40_000);
    let at: Vec<u64> = out
        .iter()
        .filter(|(_, t)| t.to == udp(SERVER))
        .map(|(o, _)| *o)
        .collect();
    // E: 500, 1000, 2000, 4000, then every T2 until F at 32 s.
    assert_eq!(&at[..6], &[500, 1500, 3500, 7500, 11500, 15500]);
    assert!(
        out.iter().all(|(_, t)| t.to != udp(CARRIER)),
        "never 408 to non-INVITE"
    );
    assert_eq!(h.proxy.stats(), Default::default());
}

#[test]
fn non_invite_provisional_not_forwarded_final_is() {
    let mut h = H::new();
    let req = invite("c1", "z9hG4bK-a1")
        .replace("INVITE sip", "MESSAGE sip")
        .replace("1 INVITE", "1 MESSAGE");
    let out = h.feed(udp(CARRIER), &req);
    let fwd = out[0].clone();
    assert!(h.feed(udp(SERVER), &reply(&fwd, 180)).is_empty());
    let out = h.feed(udp(SERVER), &reply(&fwd, 200));
    assert_eq!(out.len(), 1);
    assert_eq!(status(&out[0]), Some(200));
    // A retransmitted request gets the final again.
    let out = h.feed(udp(CARRIER), &req);
    assert_eq!(status(&out[0]), Some(200));
}

/// Item 7 of the trust rules: a response that matches no client transaction is
/// dropped and counted, whoever's Via is on top; relaying it by its second Via would
/// make the proxy a reflector aimed by whoever wrote that Via.
#[test]
fn responses_matching_no_transaction_are_dropped_and_counted() {
    let mut h = H::new();
    let foreign = "SIP/2.0 200 OK
Via: SIP/2.0/UDP 10.9.9.9:5060;branch=z9hG4bK-x
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-y
From: <sip:a@b>;tag=1
To: <sip:c@d>;tag=2
Call-ID: x
CSeq: 1 INVITE
Content-Length: 0

";
    assert!(h.feed(udp(SERVER), foreign).is_empty());
    let ours = foreign.replace(
        "10.9.9.9:5060;branch=z9hG4bK-x",
        "10.0.0.1:5060;branch=z9hG4bK000000000000000100000000",
    );
    assert!(h.feed(udp(SERVER), &ours).is_empty());
    // Aimed at a third party by its second Via: still nothing.
    let reflector = ours.replace("192.0.2.10:5060;branch=z9hG4bK-y", "198.51.100.7:9;rport=9");
    assert!(h.feed(udp("203.0.113.5:5060"), &reflector).is_empty());
    assert_eq!(h.proxy.metrics().stray_responses(), 3);
}

#[test]
fn comma_joined_vias_match_the_transaction() {
    let mut h = H::new();
    let inv = invite("c1", "z9hG4bK-a1").replace(
        "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-a1;rport",
        "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-a1;rport, SIP/2.0/UDP 192.0.2.99:5060;branch=z9hG4bK-up",
    );
    let out = h.feed(udp(CARRIER), &inv);
    let fwd = out[1].clone();
    assert_eq!(vias(&fwd).len(), 3);
    let out = h.feed(udp(CARRIER), &inv);
    assert_eq!(out.len(), 1, "retransmission absorbed");
    let out = h.feed(udp(SERVER), &reply(&fwd, 180));
    assert_eq!(out.len(), 1);
    assert_eq!(vias(&out[0]).len(), 2);
}

#[test]
fn rfc2543_branchless_matching() {
    let mut h = H::new();
    let inv = invite("c1", "x").replace(";branch=x", "");
    let out = h.feed(udp(CARRIER), &inv);
    assert_eq!(out.len(), 2);
    let fwd = out[1].clone();
    // Retransmission matched without a branch.
    assert_eq!(h.feed(udp(CARRIER), &inv).len(), 1);
    h.feed(udp(SERVER), &reply(&fwd, 486));
    // The ACK (To tag of our response) matches the INVITE transaction and is absorbed.
    let ack = ack_non2xx("c1", "x", "callee1").replace(";branch=x", "");
    assert!(h.feed(udp(CARRIER), &ack).is_empty());
    // CANCEL for a branchless INVITE of another call matches too.
    let inv2 = invite("c2", "x").replace(";branch=x", "");
    h.feed(udp(CARRIER), &inv2);
    let c = cancel("c2", "x").replace(";branch=x", "");
    let out = h.feed(udp(CARRIER), &c);
    assert_eq!(status(&out[0]), Some(200));
}

#[test]
fn tcp_has_no_retransmissions_and_transport_param() {
    let mut h = H::new();
    let inv =
        invite("c1", "z9hG4bK-a1").replace("SIP/2.0/UDP 192.0.2.10", "SIP/2.0/TCP 192.0.2.10");
    h.proxy.handle_datagram(
        &mut h.shard,
        h.now,
        tcp(CARRIER),
        addr(US),
        bytes::Bytes::from(inv.replace('\n', "\r\n")),
    );
    let out = h.drain();
    assert_eq!(out[0].to, tcp(CARRIER));
    // TCP in, UDP out: two entries (RFC 5658), the UDP side's on top for the callee.
    let rr: Vec<String> = parse(&out[1])
        .headers(HeaderName::RecordRoute)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    assert_eq!(
        rr,
        [
            "<sip:10.0.0.1:5060;lr>",
            "<sip:10.0.0.1:5060;transport=tcp;lr>"
        ]
    );
    let to_server = out[1].to;
    assert_eq!(to_server, udp(SERVER));
}

#[test]
fn shutdown_rejects_new_requests() {
    let mut h = H::new();
    h.proxy.begin_shutdown();
    let out = h.feed(udp(CARRIER), &invite("c1", "z9hG4bK-a1"));
    assert_eq!(status(&out[0]), Some(503));
}

#[test]
fn in_dialog_request_of_no_dialog_gets_481() {
    let mut h = H::new();
    let bye = in_dialog_from_carrier("BYE", "c9", "z9hG4bK-b9", 2)
        .replace("Route: <sip:10.0.0.1:5060;lr>\n", "");
    let out = h.feed(udp(CARRIER), &bye);
    assert_eq!(status(&out[0]), Some(481));
    assert_eq!(out.len(), 1);
}

/// A call's timers stay queued until they fall due, most of them long after the call
/// (64·T1 for the lingering transactions, minutes for timer C), so under load their
/// number per call is most of the timer queue's size and of its work. An answered call
/// over UDP queues the INVITE branch's A (which carries B) and its one deadline timer
/// (timer C, restarted by the 180 without queuing another), the transactions' L and M,
/// and the BYE's E (which carries F), J and K.
#[test]
fn an_answered_call_queues_seven_timers() {
    let mut h = H::new();
    let before = h.shard.pending_timers();
    let fwd = start_call(&mut h, "c1", "z9hG4bK-a1");
    h.feed(udp(SERVER), &reply(&fwd, 180));
    let ok = h.feed(
        udp(SERVER),
        &answer(&fwd, 200, "sip:4155551234@10.0.0.5:5080"),
    );
    assert_eq!(status(&ok[0]), Some(200));
    h.feed(
        udp(CARRIER),
        &in_dialog_from_carrier("ACK", "c1", "z9hG4bK-ack", 1),
    );
    let bye = h.feed(
        udp(CARRIER),
        &in_dialog_from_carrier("BYE", "c1", "z9hG4bK-bye", 2),
    );
    let ok = h.feed(udp(SERVER), &reply(&bye[0], 200));
    assert_eq!(status(&ok[0]), Some(200));
    assert_eq!(h.shard.pending_timers() - before, 7);
}

/// §16.3: what the proxy does not read is relayed as it came. An end-to-end ACK is never
/// answered, so one with a Contact the proxy could not parse still reaches the callee;
/// a BYE with it is refused (400), being answered by the proxy.
#[test]
fn a_2xx_ack_with_an_odd_contact_is_relayed() {
    let mut h = H::new();
    let fwd = start_call(&mut h, "c1", "z9hG4bK-a1");
    let ok = h.feed(
        udp(SERVER),
        &answer(&fwd, 200, "sip:4155551234@10.0.0.5:5080"),
    );
    assert_eq!(status(&ok[0]), Some(200));
    let odd = |method: &str, branch: &str, cseq: u32| {
        in_dialog_from_carrier(method, "c1", branch, cseq)
            .replace("Content-Length: 0", "Contact: <sip:@>\nContent-Length: 0")
    };
    let ack = h.feed(udp(CARRIER), &odd("ACK", "z9hG4bK-ack", 1));
    assert_eq!(ack.len(), 1);
    assert_eq!(
        (method(&ack[0]), ack[0].to),
        ("ACK".to_string(), udp(SERVER))
    );
    let bye = h.feed(udp(CARRIER), &odd("BYE", "z9hG4bK-bye", 2));
    assert_eq!(bye.len(), 1);
    assert_eq!((status(&bye[0]), bye[0].to), (Some(400), udp(CARRIER)));
    assert!(text(&bye[0]).starts_with("SIP/2.0 400 Bad Contact"));
}

/// The ACK of our non-2xx is absorbed by its transaction even when it would fail the
/// relayed ACK's check (a lower Via that does not parse, Max-Forwards 0): absorbing
/// reads only the top Via. Such an ACK is never relayed anywhere.
#[test]
fn an_ack_failing_the_relay_check_is_still_absorbed_and_never_relayed() {
    let mut h = H::new();
    let fwd = start_call(&mut h, "c1", "z9hG4bK-a1");
    let out = h.feed(udp(SERVER), &reply(&fwd, 486));
    assert!(out.iter().any(|t| status(t) == Some(486)));
    let bad = ack_non2xx("c1", "z9hG4bK-a1", "callee1").replace(
        "Max-Forwards: 70\n",
        "Max-Forwards: 0\nVia: SIP/2.0/UDP h h\n",
    );
    assert!(h.feed(udp(CARRIER), &bad).is_empty());
    // Absorbed: our 486 is not retransmitted any more.
    assert!(h.advance_by(5000).is_empty());
}

/// A 2xx's ACK that fails the relayed ACK's check is dropped, not relayed.
#[test]
fn a_2xx_ack_failing_the_relay_check_is_dropped() {
    let mut h = H::new();
    let fwd = start_call(&mut h, "c1", "z9hG4bK-a1");
    let ok = h.feed(
        udp(SERVER),
        &answer(&fwd, 200, "sip:4155551234@10.0.0.5:5080"),
    );
    assert_eq!(status(&ok[0]), Some(200));
    let ack = in_dialog_from_carrier("ACK", "c1", "z9hG4bK-ack", 1);
    for bad in [
        ack.replace("Max-Forwards: 70", "Max-Forwards: 0"),
        ack.replace(
            "Max-Forwards: 70\n",
            "Max-Forwards: 70\nVia: SIP/2.0/UDP h h\n",
        ),
        ack.replace("CSeq: 1 ACK", "CSeq: 1 INVITE"),
    ] {
        assert!(h.feed(udp(CARRIER), &bad).is_empty(), "{bad}");
    }
    // The same ACK well formed is relayed to the callee.
    let out = h.feed(udp(CARRIER), &ack);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].to, udp(SERVER));
}
