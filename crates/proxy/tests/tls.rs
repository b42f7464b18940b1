//! TLS in the core (issue 17, item 2): Via `SIP/2.0/TLS` and Record-Route
//! `;transport=tls` on the TLS side, the double Record-Route when a call crosses between
//! TLS and UDP (RFC 5658), no retransmissions over TLS (reliable), `sips:` addresses
//! recognised as us, and RFC 5630: a `sips:` target only ever goes out over TLS.

mod common;

use std::sync::Arc;

use common::*;
use trunkstore_config::Failover;
use trunkstore_proxy::{
    Advertise, Listener, Peer, ProxyConfig, StaticDirectory, Transmit, Transport,
};
use trunkstore_sip::message::HeaderName;

const TLS_US: &str = "10.0.0.1:5061";
const UDP_RR: &str = "<sip:10.0.0.1:5060;lr>";
const TLS_RR: &str = "<sip:10.0.0.1:5061;transport=tls;lr>";
const TLS_CARRIER: &str = "192.0.2.10:5061";

fn tls(s: &str) -> Peer {
    Peer {
        transport: Transport::Tls,
        addr: addr(s),
    }
}

/// A UDP listener on 5060 and a TLS one on 5061, both advertising 10.0.0.1.
fn config() -> ProxyConfig {
    let mut cfg = ProxyConfig::for_tests("10.0.0.1", 5060);
    let listener = |transport, local: &str, port| Listener {
        transport,
        local: addr(local),
        advertise: Advertise {
            host: "10.0.0.1".into(),
            port,
        },
    };
    cfg.listeners = vec![
        listener(Transport::Udp, US, 5060),
        listener(Transport::Tls, TLS_US, 5061),
    ];
    cfg.advertise_tls.port = 5061;
    cfg.local_tls = Some(addr(TLS_US));
    cfg
}

/// The carrier (trusted at its address on any port) calls the DID, which goes to the
/// PBX over `transport`.
fn harness(
    transport: Transport,
    edit: impl FnOnce(&mut trunkstore_proxy::route::InboundRoute),
) -> H {
    let mut route = route_to("10.0.0.5", 5080, true, transport);
    edit(&mut route);
    let dir = StaticDirectory::new()
        .with_carrier(addr(CARRIER), "carrier1")
        .with_carrier(addr(TLS_CARRIER), "carrier1")
        .with_did(DID, route);
    H::with(config(), dir)
}

fn feed_at(h: &mut H, from: Peer, local: &str, text: &str) -> Vec<Transmit> {
    let data = bytes::Bytes::from(text.replace('\n', "\r\n"));
    h.proxy
        .handle_datagram(&mut h.shard, h.now, from, addr(local), data);
    h.drain()
}

fn record_routes(t: &Transmit) -> Vec<String> {
    header_values(t, HeaderName::RecordRoute)
}

/// The carrier's INVITE over TLS, to `sips:` us (no port: 5061).
fn tls_invite(call: &str) -> String {
    invite(call, &format!("z9hG4bK-{call}"))
        .replace(
            &format!("INVITE sip:{DID}@10.0.0.1:5060"),
            &format!("INVITE sips:{DID}@10.0.0.1"),
        )
        .replace("SIP/2.0/UDP 192.0.2.10:5060", "SIP/2.0/TLS 192.0.2.10:5061")
}

/// A TLS carrier calls a UDP PBX: one entry per side (the UDP side on top, nearest the
/// PBX), Via UDP toward the PBX; the 2xx carries both back; the carrier's ACK with both
/// Routes (one of them `sips:`) and the PBX's BYE each pop both and reach the other leg,
/// the BYE from our TLS listener with a TLS Via; nothing is retransmitted over TLS.
#[test]
fn tls_carrier_to_udp_pbx_is_record_routed_twice() {
    let mut h = harness(Transport::Udp, |_| {});
    let out = feed_at(&mut h, tls(TLS_CARRIER), TLS_US, &tls_invite("t1"));
    assert_eq!(out.len(), 2, "100 and the INVITE");
    assert_eq!(out[0].to, tls(TLS_CARRIER));
    assert_eq!(status(&out[0]), Some(100));
    let fwd = out[1].clone();
    assert_eq!(fwd.to, udp(SERVER));
    assert_eq!(fwd.from, Some(addr(US)));
    assert_eq!(record_routes(&fwd), [UDP_RR, TLS_RR]);
    assert!(vias(&fwd)[0].starts_with("SIP/2.0/UDP 10.0.0.1:5060;"));
    let out = feed_at(
        &mut h,
        udp(SERVER),
        US,
        &answer(&fwd, 180, "sip:pbx@10.0.0.5:5080"),
    );
    assert_eq!(out[0].to, tls(TLS_CARRIER));
    let out = feed_at(
        &mut h,
        udp(SERVER),
        US,
        &answer(&fwd, 200, "sip:pbx@10.0.0.5:5080"),
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].to, tls(TLS_CARRIER));
    assert_eq!(out[0].from, Some(addr(TLS_US)));
    assert_eq!(record_routes(&out[0]), [UDP_RR, TLS_RR]);
    // The carrier reverses the set; it writes our TLS entry as sips: (no port: 5061).
    let ack = in_dialog_from_carrier("ACK", "t1", "z9hG4bK-ack1", 1)
        .replace("SIP/2.0/UDP 192.0.2.10:5060", "SIP/2.0/TLS 192.0.2.10:5061")
        .replace(
            "Route: <sip:10.0.0.1:5060;lr>",
            &format!("Route: <sips:10.0.0.1;lr>, {UDP_RR}"),
        );
    let out = feed_at(&mut h, tls(TLS_CARRIER), TLS_US, &ack);
    assert_eq!(out.len(), 1);
    assert_eq!(method(&out[0]), "ACK");
    assert_eq!(out[0].to, udp(SERVER));
    assert_eq!(header(&out[0], HeaderName::Route), None, "both ours");
    let bye = bye_from_server("t1", "z9hG4bK-pbx-bye").replace(
        "Route: <sip:10.0.0.1:5060;lr>",
        &format!("Route: {UDP_RR}, {TLS_RR}"),
    );
    let out = feed_at(&mut h, udp(SERVER), US, &bye);
    assert_eq!(out.len(), 1);
    assert_eq!(method(&out[0]), "BYE");
    assert_eq!(out[0].to, tls(TLS_CARRIER));
    assert_eq!(out[0].from, Some(addr(TLS_US)));
    assert_eq!(header(&out[0], HeaderName::Route), None);
    assert!(vias(&out[0])[0].starts_with("SIP/2.0/TLS 10.0.0.1:5061;"));
    let again = h.advance_by(10_000);
    assert!(
        again.iter().all(|(_, t)| t.to != tls(TLS_CARRIER)),
        "no retransmission over TLS: {again:?}"
    );
    let out = feed_at(&mut h, tls(TLS_CARRIER), TLS_US, &reply(&out[0], 200));
    assert_eq!(out[0].to, udp(SERVER));
    assert_eq!(h.proxy.stats().calls, 0);
}

/// A UDP carrier calls a TLS PBX: the TLS side on top, Via TLS, the INVITE from the TLS
/// listener and never sent twice (timer A does not run on a reliable transport).
#[test]
fn udp_carrier_to_tls_pbx_gets_a_tls_via_and_no_retransmissions() {
    let mut h = harness(Transport::Tls, |_| {});
    let out = h.feed(udp(CARRIER), &invite("t2", "z9hG4bK-t2"));
    assert_eq!(out.len(), 2);
    let fwd = out[1].clone();
    assert_eq!(fwd.to, tls(SERVER));
    assert_eq!(fwd.from, Some(addr(TLS_US)));
    assert_eq!(record_routes(&fwd), [TLS_RR, UDP_RR]);
    assert!(vias(&fwd)[0].starts_with("SIP/2.0/TLS 10.0.0.1:5061;"));
    let later = h.advance_by(4_000);
    assert!(
        later.iter().all(|(_, t)| t.to != tls(SERVER)),
        "no INVITE retransmission over TLS: {later:?}"
    );
    let out = feed_at(
        &mut h,
        tls(SERVER),
        TLS_US,
        &answer(&fwd, 200, "sips:pbx@10.0.0.5:5080"),
    );
    assert_eq!(out[0].to, udp(CARRIER));
    assert_eq!(record_routes(&out[0]), [TLS_RR, UDP_RR]);
}

/// A failover to a `sips:` URI goes over TLS (port 5061 by default); one that asks for
/// `sips:` over UDP is not sent anywhere: the caller gets the failure.
#[test]
fn a_sips_failover_goes_over_tls_and_never_over_udp() {
    for (uri, expect) in [
        ("sips:backup@10.0.0.7", Some(tls("10.0.0.7:5061"))),
        (
            "sips:backup@10.0.0.7:5070;transport=tcp",
            Some(tls("10.0.0.7:5070")),
        ),
        ("sips:backup@10.0.0.7:5060;transport=udp", None),
    ] {
        let mut h = harness(Transport::Udp, |r| {
            r.failover = Some(Arc::new(Failover {
                e164: None,
                sip: Some(uri.into()),
            }));
        });
        let out = h.feed(udp(CARRIER), &invite("t3", "z9hG4bK-t3"));
        let fwd = out[1].clone();
        let out = h.feed(udp(SERVER), &answer(&fwd, 503, "sip:pbx@10.0.0.5:5080"));
        let to_backup: Vec<&Transmit> = out
            .iter()
            .filter(|t| t.to.addr.ip() == addr("10.0.0.7:1").ip())
            .collect();
        match expect {
            Some(peer) => {
                assert_eq!(to_backup.len(), 1, "{uri}: {out:?}");
                assert_eq!(to_backup[0].to, peer, "{uri}");
                assert_eq!(to_backup[0].tls_name, None, "{uri}: an IP proves its IP");
                assert!(vias(to_backup[0])[0].starts_with("SIP/2.0/TLS 10.0.0.1:5061;"));
            }
            None => {
                assert!(
                    to_backup.is_empty(),
                    "{uri}: nothing to the backup: {out:?}"
                );
                let fin = out.iter().find(|t| t.to == udp(CARRIER)).expect("final");
                assert!(status(fin).is_some_and(|s| s >= 400), "{uri}");
            }
        }
    }
}

/// RFC 5630: an in-dialog request for a `sips:` target whose leg is UDP gets 480 and is
/// not sent: a `sips:` request is never downgraded.
#[test]
fn a_sips_request_uri_is_not_sent_over_udp() {
    let mut h = harness(Transport::Udp, |_| {});
    let out = h.feed(udp(CARRIER), &invite("t4", "z9hG4bK-t4"));
    let fwd = out[1].clone();
    h.feed(udp(SERVER), &answer(&fwd, 200, "sip:pbx@10.0.0.5:5080"));
    let bye = bye_from_server("t4", "z9hG4bK-pbx-bye4").replace(
        "BYE sip:+12125550100@192.0.2.10:5060",
        "BYE sips:+12125550100@192.0.2.10:5060",
    );
    let out = h.feed(udp(SERVER), &bye);
    assert!(
        out.iter().all(|t| t.to != udp(CARRIER)),
        "nothing to the carrier over UDP: {out:?}"
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].to, udp(SERVER));
    assert_eq!(status(&out[0]), Some(480));
    assert_eq!(h.proxy.metrics().forward_errors("sips_not_tls"), 1);
}

const HOP_A: &str = "10.0.0.21:5061";
const HOP_B: &str = "10.0.0.22:5061";

/// The PBX refuses with 503, its `sips:` failover names `Backup.Example.net`: the edge is
/// asked to resolve it and its TLS hops come back.
fn failed_over_to_named(h: &mut H, call: &str) -> Vec<Transmit> {
    let out = h.feed(udp(CARRIER), &invite(call, &format!("z9hG4bK-{call}")));
    let fwd = out[1].clone();
    assert_eq!(fwd.tls_name, None, "a UDP PBX by IP: no TLS name");
    h.feed(udp(SERVER), &reply(&fwd, 503));
    let req = h
        .shard
        .poll_resolve()
        .expect("the failover's name is asked for");
    assert!(req.target.host.eq_ignore_ascii_case("backup.example.net"));
    h.proxy.handle_resolved(
        &mut h.shard,
        h.now,
        req.key,
        Ok(vec![tls(HOP_A), tls(HOP_B)]),
    );
    h.drain()
}

fn invite_to(out: &[Transmit], peer: Peer) -> Transmit {
    out.iter()
        .find(|t| t.to == peer && method(t) == "INVITE")
        .unwrap_or_else(|| panic!("no INVITE to {peer:?}: {out:?}"))
        .clone()
}

/// RFC 5922 §4: every hop of a target named by DNS is sent with the configured domain
/// (lower case) as the name its TLS server must prove: the first hop, and the next one
/// tried after a transport error (a refused handshake) within the same attempt. The
/// addresses DNS gave are only where to connect.
#[test]
fn the_hops_of_a_named_tls_target_carry_the_configured_domain() {
    let mut h = harness(Transport::Udp, |r| {
        r.failover = Some(Arc::new(Failover {
            e164: None,
            sip: Some("sips:backup@Backup.Example.net".into()),
        }));
    });
    let out = failed_over_to_named(&mut h, "n1");
    let a = invite_to(&out, tls(HOP_A));
    assert_eq!(
        a.tls_name.as_ref().map(|n| n.as_str()),
        Some("backup.example.net")
    );
    let out = {
        h.proxy
            .handle_transport_error(&mut h.shard, h.now, tls(HOP_A));
        h.drain()
    };
    let b = invite_to(&out, tls(HOP_B));
    assert_eq!(
        b.tls_name, a.tls_name,
        "the next hop proves the same domain"
    );
    assert!(h.shard.poll_resolve().is_none(), "no second lookup");
}

/// Hostile: names in what peers send never become a TLS name. The named hop answers with
/// a Contact and Record-Route naming `evil.example`; the carrier's ACK and BYE (sent to
/// that Contact) and every response are sent without a TLS name of their own choosing:
/// nothing after the attempt's INVITE asks for `evil.example`.
#[test]
fn a_name_in_a_received_message_never_becomes_a_tls_name() {
    let mut h = harness(Transport::Udp, |r| {
        r.failover = Some(Arc::new(Failover {
            e164: None,
            sip: Some("sips:backup@backup.example.net".into()),
        }));
    });
    let out = failed_over_to_named(&mut h, "n2");
    let a = invite_to(&out, tls(HOP_A));
    let evil = "sips:backup@evil.example;transport=tls";
    let ok = answer(&a, 200, evil).replace(
        "Content-Length: 0",
        "Record-Route: <sips:evil.example;lr>\nContent-Length: 0",
    );
    let mut sent = feed_at(&mut h, tls(HOP_A), TLS_US, &ok);
    for (method, cseq) in [("ACK", 1), ("BYE", 2)] {
        let req = in_dialog_from_carrier(method, "n2", &format!("z9hG4bK-{method}-n2"), cseq)
            .replace("sip:4155551234@10.0.0.5:5080", evil);
        sent.extend(h.feed(udp(CARRIER), &req));
    }
    assert!(!sent.is_empty());
    for t in &sent {
        let name = t.tls_name.as_ref().map(|n| n.as_str());
        assert!(
            name.is_none() || name == Some("backup.example.net"),
            "a TLS name from a received message: {t:?}"
        );
    }
}
