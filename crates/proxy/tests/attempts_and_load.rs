//! Serial attempts (failover hook) and the leak test under load.

mod common;

use std::sync::Arc;

use common::*;
use trunkstore_config::Failover;
use trunkstore_proxy::{ProxyConfig, Transport};

const BACKUP: &str = "10.0.0.7:5060";

/// The DID's server, then (its failover) the backup at BACKUP.
fn with_backup() -> H {
    let mut r = route_to("10.0.0.5", 5080, true, Transport::Udp);
    r.failover = Some(Arc::new(Failover {
        e164: None,
        sip: Some(format!("sip:4155551234@{BACKUP}")),
    }));
    let dir = directory().with_did(DID, r);
    H::with(ProxyConfig::for_tests("10.0.0.1", 5060), dir)
}

#[test]
fn transport_error_moves_to_next_attempt() {
    let mut h = with_backup();
    let out = h.feed(udp(CARRIER), &invite("c1", "z9hG4bK-a1"));
    assert_eq!(out[1].to, udp(SERVER));
    h.proxy
        .handle_transport_error(&mut h.shard, h.now, udp(SERVER));
    let out = h.drain();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].to, udp(BACKUP));
    assert_eq!(
        parse(&out[0]).request_uri(),
        b"sip:4155551234@10.0.0.7:5060"
    );
    assert_ne!(
        vias(&out[0])[0],
        vias(&h.feed(udp(CARRIER), &invite("c2", "z9hG4bK-b"))[1])[0]
    );
}

#[test]
fn server_error_fails_over_busy_does_not() {
    let mut h = with_backup();
    let out = h.feed(udp(CARRIER), &invite("c1", "z9hG4bK-a1"));
    let first = out[1].clone();
    let out = h.feed(udp(SERVER), &reply(&first, 503));
    // ACK to the first target, the INVITE to the backup with a new branch.
    assert!(out
        .iter()
        .any(|t| t.to == udp(SERVER) && method(t) == "ACK"));
    let second = out.iter().find(|t| t.to == udp(BACKUP)).unwrap().clone();
    assert_eq!(method(&second), "INVITE");
    assert_ne!(vias(&second)[0], vias(&first)[0]);
    // The backup is busy: 486 goes to the caller (no more attempts anyway).
    let out = h.feed(udp("10.0.0.7:5060"), &reply(&second, 486));
    let up = out.iter().find(|t| t.to == udp(CARRIER)).unwrap();
    assert_eq!(status(up), Some(486));

    let mut h = with_backup();
    let out = h.feed(udp(CARRIER), &invite("c1", "z9hG4bK-a1"));
    let out = h.feed(udp(SERVER), &reply(&out[1], 486));
    assert!(
        out.iter().all(|t| t.to != udp(BACKUP)),
        "486 does not fail over"
    );
    assert!(out
        .iter()
        .any(|t| t.to == udp(CARRIER) && status(t) == Some(486)));
}

#[test]
fn timeout_then_backup_answers() {
    let mut h = with_backup();
    h.feed(udp(CARRIER), &invite("c1", "z9hG4bK-a1"));
    let out = h.advance_to(32_000);
    let second = out
        .iter()
        .find(|(_, t)| t.to == udp(BACKUP))
        .unwrap()
        .1
        .clone();
    let out = h.feed(
        udp(BACKUP),
        &answer(&second, 200, "sip:4155551234@10.0.0.7:5060"),
    );
    assert_eq!(status(&out[0]), Some(200));
    assert_eq!(out[0].to, udp(CARRIER));
}

/// 10,000 calls: answered (INVITE/100/180/200/ACK/BYE/200), some CANCELled, some 486;
/// after every timer has fired, every table is empty.
#[test]
fn ten_thousand_calls_leave_nothing_behind() {
    let mut h = H::new();
    for i in 0..10_000u32 {
        let call = format!("load-{i}");
        let br = format!("z9hG4bK-l{i}");
        let out = h.feed(udp(CARRIER), &invite(&call, &br));
        assert_eq!(out.len(), 2, "call {i}");
        let fwd = out[1].clone();
        h.feed(udp(SERVER), &reply(&fwd, 100));
        h.feed(udp(SERVER), &reply(&fwd, 180));
        match i % 10 {
            0 => {
                h.feed(udp(CARRIER), &cancel(&call, &br));
                h.feed(udp(SERVER), &reply(&fwd, 487));
                h.feed(udp(CARRIER), &ack_non2xx(&call, &br, "callee1"));
            }
            1 => {
                h.feed(udp(SERVER), &reply(&fwd, 486));
                h.feed(udp(CARRIER), &ack_non2xx(&call, &br, "callee1"));
            }
            _ => {
                let out = h.feed(
                    udp(SERVER),
                    &answer(&fwd, 200, "sip:4155551234@10.0.0.5:5080"),
                );
                assert_eq!(status(&out[0]), Some(200));
                let out = h.feed(
                    udp(CARRIER),
                    &in_dialog_from_carrier("ACK", &call, &format!("z9hG4bK-ack{i}"), 1),
                );
                assert_eq!(out.len(), 1);
                let out = h.feed(
                    udp(CARRIER),
                    &in_dialog_from_carrier("BYE", &call, &format!("z9hG4bK-bye{i}"), 2),
                );
                assert_eq!(out.len(), 1, "BYE {i}");
                let out = h.feed(udp(SERVER), &reply(&out[0], 200));
                assert_eq!(status(&out[0]), Some(200));
            }
        }
        if i % 1000 == 999 {
            h.advance_by(100);
        }
    }
    assert_eq!(h.proxy.stats().calls, 0);
    h.assert_drained();
}

#[test]
fn calls_past_max_duration_are_swept() {
    let mut cfg = ProxyConfig::for_tests("10.0.0.1", 5060);
    cfg.max_call_duration = std::time::Duration::from_secs(120);
    let mut h = H::with(cfg, directory());
    let out = h.feed(udp(CARRIER), &invite("c1", "z9hG4bK-a1"));
    h.feed(
        udp(SERVER),
        &answer(&out[1], 200, "sip:4155551234@10.0.0.5:5080"),
    );
    assert_eq!(h.proxy.stats().calls, 1);
    h.advance_by(200_000);
    assert_eq!(h.proxy.stats().calls, 0);
    assert_eq!(h.shard.poll_timeout(), None);
}

/// `limits.max_transactions`: past the cap a new request is refused with 503 without
/// being held; the transactions already held go on, and once their timers have let them
/// go a new call is taken again.
#[test]
fn requests_past_the_transaction_cap_get_503() {
    let mut cfg = ProxyConfig::for_tests("10.0.0.1", 5060);
    cfg.max_transactions = 2;
    let mut h = H::with(cfg, directory());
    let first = h.feed(udp(CARRIER), &invite("c1", "z9hG4bK-a1"));
    let second = h.feed(udp(CARRIER), &invite("c2", "z9hG4bK-a2"));
    assert_eq!(
        (first.len(), second.len()),
        (2, 2),
        "100 and the INVITE each"
    );
    let third = h.feed(udp(CARRIER), &invite("c3", "z9hG4bK-a3"));
    assert_eq!(third.len(), 1);
    assert_eq!((status(&third[0]), third[0].to), (Some(503), udp(CARRIER)));
    assert_eq!(h.proxy.stats().server_transactions, 2);
    // The held calls still complete.
    let ok = h.feed(
        udp(SERVER),
        &answer(&first[1], 200, "sip:4155551234@10.0.0.5:5080"),
    );
    assert_eq!(status(&ok[0]), Some(200));
    h.feed(udp(SERVER), &reply(&second[1], 486));
    h.advance_by(40_000);
    assert_eq!(h.proxy.stats().server_transactions, 0);
    let again = h.feed(udp(CARRIER), &invite("c4", "z9hG4bK-a4"));
    assert_eq!(method(&again[1]), "INVITE");
}
