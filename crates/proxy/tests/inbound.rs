//! Inbound trunk routing (behaviour.md §4) on a virtual clock: Request-URI and target,
//! disabled servers, sip_headers, per-attempt timers, failover, early media, call records.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::json;
use trunkstore_config::{validate_document, Catalog, Failover, NumberFormat, Settings, SipHeader};
use trunkstore_proxy::route::InboundRoute;
use trunkstore_proxy::{ProxyConfig, StaticDirectory, Transmit, Transport};
use trunkstore_sip::build::{self, ResponseOptions};
use trunkstore_sip::message::HeaderName;

const BACKUP: &str = "10.0.0.7:5060";
const FAILOVER_URI: &str = "sip:backup-line@10.0.0.7:5060";
const SDP: &str = "v=0\r\no=- 1 1 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";

fn secs(s: u64) -> Option<Duration> {
    Some(Duration::from_secs(s))
}

/// The DID's route (10.0.0.5:5080, npan) with `edit` applied.
fn route(edit: impl FnOnce(&mut InboundRoute)) -> InboundRoute {
    let mut r = route_to("10.0.0.5", 5080, true, Transport::Udp);
    edit(&mut r);
    r
}

fn sip_failover() -> Option<Arc<Failover>> {
    Some(Arc::new(Failover {
        e164: None,
        sip: Some(FAILOVER_URI.into()),
    }))
}

fn proxy_with(r: InboundRoute) -> H {
    H::with(test_config(), directory().with_did(DID, r))
}

fn test_config() -> ProxyConfig {
    let mut cfg = ProxyConfig::for_tests("10.0.0.1", 5060);
    cfg.call_records = true;
    cfg
}

/// INVITE from the carrier; returns what went out (100 first).
fn call(h: &mut H, id: &str) -> Vec<Transmit> {
    h.feed(udp(CARRIER), &invite(id, &format!("z9hG4bK-{id}")))
}

fn to(out: &[Transmit], peer: &str) -> Vec<Transmit> {
    out.iter().filter(|t| t.to == udp(peer)).cloned().collect()
}

fn timed_to(out: &[(u64, Transmit)], peer: &str) -> Vec<(u64, Transmit)> {
    out.iter()
        .filter(|(_, t)| t.to == udp(peer))
        .cloned()
        .collect()
}

fn uri(t: &Transmit) -> String {
    String::from_utf8_lossy(parse(t).request_uri()).into_owned()
}

/// A response with a body (early media).
fn with_sdp(req: &Transmit, code: u16, reason: &str) -> String {
    let m = parse(req);
    let rr: Vec<&[u8]> = m.headers(HeaderName::RecordRoute).collect();
    let mut headers: Vec<(&[u8], &[u8])> = rr.iter().map(|v| (&b"Record-Route"[..], *v)).collect();
    headers.push((b"Contact", b"<sip:x@10.0.0.5:5080>"));
    let opts = ResponseOptions {
        to_tag: Some(b"callee1"),
        headers: &headers,
        body: Some((b"application/sdp", SDP.as_bytes())),
    };
    let bytes = build::response(&m, code, reason.as_bytes(), &opts).unwrap();
    String::from_utf8(bytes.to_vec())
        .unwrap()
        .replace("\r\n", "\n")
}

// ---- 1. Target and Request-URI ----

#[test]
fn request_uri_per_inbound_format_and_nanp_rule() {
    let formats = [
        ("+14155551001", NumberFormat::E164, None, "+14155551001"),
        ("+14155551002", NumberFormat::Npan, None, "4155551002"),
        ("+14155551003", NumberFormat::OneNpan, None, "14155551003"),
        (
            "+14155551004",
            NumberFormat::Username,
            Some("pbx-user"),
            "pbx-user",
        ),
        // username without auth_user: the E.164 number
        ("+14155551005", NumberFormat::Username, None, "+14155551005"),
        // npan/1npan only transform NANP numbers
        ("+442071234567", NumberFormat::Npan, None, "+442071234567"),
        (
            "+442071234568",
            NumberFormat::OneNpan,
            None,
            "+442071234568",
        ),
    ];
    let mut dir = directory();
    for (did, format, user, _) in formats {
        dir = dir.with_did(
            did,
            route(|r| {
                r.format = format;
                r.auth_user = user.map(Arc::from);
            }),
        );
    }
    let mut h = H::with(test_config(), dir);
    for (i, (did, _, _, expect)) in formats.iter().enumerate() {
        let id = format!("c{i}");
        // The carrier dials the national form of NANP numbers: normalised first.
        let dialled = did.strip_prefix("+1").unwrap_or(did);
        let inv = invite(&id, &format!("z9hG4bK-{id}")).replace(
            &format!("INVITE sip:{DID}@"),
            &format!("INVITE sip:{dialled}@"),
        );
        let out = h.feed(udp(CARRIER), &inv);
        let fwd = to(&out, SERVER);
        assert_eq!(fwd.len(), 1, "{did}");
        assert_eq!(uri(&fwd[0]), format!("sip:{expect}@10.0.0.5:5080"), "{did}");
        // To, From and Call-ID untouched.
        let m = parse(&fwd[0]);
        let orig = trunkstore_sip::parse::parse_datagram(
            bytes::Bytes::from(inv.replace('\n', "\r\n")),
            &Default::default(),
        )
        .unwrap();
        for name in [HeaderName::To, HeaderName::From, HeaderName::CallId] {
            assert_eq!(m.header(name), orig.header(name), "{did} {name:?}");
        }
    }
}

/// Issue 13 item 4: ported numbers (RFC 4694 user parameters) and `%2B`-escaped users
/// find their DID; the parameters follow the number onto the Request-URI in the number
/// formats, not in `username`; an undecodable user is a 400, not a lookup.
#[test]
fn user_parameters_and_escapes_find_the_did() {
    let formats = [
        ("+14155551001", NumberFormat::E164, None),
        ("+14155551002", NumberFormat::Npan, None),
        ("+14155551003", NumberFormat::OneNpan, None),
        ("+14155551004", NumberFormat::Username, Some("pbx-user")),
    ];
    let mut dir = directory();
    for (did, format, user) in formats {
        dir = dir.with_did(
            did,
            route(|r| {
                r.format = format;
                r.auth_user = user.map(Arc::from);
            }),
        );
    }
    let mut h = H::with(test_config(), dir);
    let cases = [
        // (Request-URI user from the carrier, expected user toward the server)
        (
            "+14155551001;npdi;rn=+14155550000",
            "+14155551001;npdi;rn=+14155550000",
        ),
        (
            "4155551002;npdi;rn=+14155550000",
            "4155551002;npdi;rn=+14155550000",
        ),
        (
            "14155551003;rn=%2B14155550000;npdi",
            "14155551003;rn=%2B14155550000;npdi",
        ),
        // username: the user is not the number, so no number parameters.
        ("+14155551004;npdi;rn=+14155550000", "pbx-user"),
        ("%2B14155551001", "+14155551001"),
        ("%2b14155551002;npdi", "4155551002;npdi"),
        ("1%34155551003", "14155551003"),
    ];
    for (i, (dialled, expect)) in cases.iter().enumerate() {
        let id = format!("p{i}");
        let out = h.feed(udp(CARRIER), &invite_to(&id, dialled));
        let fwd = to(&out, SERVER);
        assert_eq!(fwd.len(), 1, "{dialled}: {out:?}");
        assert_eq!(
            uri(&fwd[0]),
            format!("sip:{expect}@10.0.0.5:5080"),
            "{dialled}"
        );
    }
    // Hostile: escapes that decode to no text, or to control characters (a CR LF that
    // would be a header if copied raw), are refused outright, and nothing is sent.
    for (i, dialled) in ["%FF%FE", "%2B1415555%0D%0A1001", "%2B14155551001%00", "%2"]
        .iter()
        .enumerate()
    {
        let id = format!("x{i}");
        let out = h.feed(udp(CARRIER), &invite_to(&id, dialled));
        assert!(to(&out, SERVER).is_empty(), "{dialled}");
        let finals: Vec<_> = out
            .iter()
            .filter_map(status)
            .filter(|s| *s >= 200)
            .collect();
        assert!(finals == [400], "{dialled}: {finals:?}");
    }
    // An escaped `;` belongs to the number: no such DID.
    let out = h.feed(udp(CARRIER), &invite_to("y1", "%2B14155551001%3Bnpdi"));
    assert!(to(&out, SERVER).is_empty());
    assert_eq!(out.iter().filter_map(status).last(), Some(404));
}

/// The production directory (routing index): target = auth.ip → options.ip,
/// auth.port → options.port → 5060; timers DID → server → settings; headers merged.
fn router_proxy() -> H {
    let settings = json!({
        "listen": {"udp": ["10.0.0.1:5060"]},
        "advertise": "10.0.0.1:5060",
        "carriers": [{"name": "c1", "gateways": [{"host": "192.0.2.10"}],
                      "sources": ["192.0.2.10:5060"]}],
        "timers": {"delay": 0, "progress_timeout": 7, "timeout": 40}
    });
    let doc = json!({
        "account": {"sip_headers": {"X-Account": "acme", "X-Level": "account"}},
        "servers": [
            {"name": "auth-ip", "auth": {"auth_method": "IP", "ip": "10.0.1.1", "port": 5071},
             "options": {"ip": "10.0.9.9", "port": 5999, "inbound_format": "e164",
                         "sip_headers": {"X-Level": "server", "X-Server": "s1"}},
             "DIDs": {"+14155552001": {"sip_headers": {"X-Level": "did"}}}},
            {"name": "options-ip", "auth": {"auth_method": "password", "auth_user": "u2",
                                            "auth_password": "p"},
             "options": {"ip": "10.0.1.2", "port": 5072, "progress_timeout": 3},
             "DIDs": {"+14155552002": {"timeout": 5}}},
            {"name": "default-port", "auth": {"auth_method": "password", "auth_user": "u3",
                                              "auth_password": "p"},
             "options": {"ip": "10.0.1.3", "enabled": false},
             "DIDs": {"+14155552003": {}}}
        ]
    });
    let settings = Settings::from_value(&settings, Path::new("/tmp")).expect("settings");
    let doc = validate_document("acme", "main", &doc).expect("document");
    let catalog = Catalog::build(settings, [doc]).expect("catalog");
    H::routed(&catalog, true)
}

fn invite_to(id: &str, number: &str) -> String {
    invite(id, &format!("z9hG4bK-{id}")).replace(
        &format!("INVITE sip:{DID}@"),
        &format!("INVITE sip:{number}@"),
    )
}

#[test]
fn routing_index_target_headers_and_timers() {
    let mut h = router_proxy();
    // auth.ip and auth.port win over options; e164; headers merged, most specific wins.
    let out = h.feed(udp(CARRIER), &invite_to("r1", "4155552001"));
    let fwd = to(&out, "10.0.1.1:5071");
    assert_eq!(
        fwd.len(),
        1,
        "{:?}",
        out.iter().map(text).collect::<Vec<_>>()
    );
    assert_eq!(uri(&fwd[0]), "sip:+14155552001@10.0.1.1:5071");
    let m = parse(&fwd[0]);
    let custom = |n: &str| {
        m.headers_named(n.as_bytes())
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(custom("X-Level"), vec!["did"]);
    assert_eq!(custom("X-Server"), vec!["s1"]);
    assert_eq!(custom("X-Account"), vec!["acme"]);
    // options.ip/port (password server), npan; DID timeout 5 s, server progress 3 s.
    let out = h.feed(udp(CARRIER), &invite_to("r2", "+14155552002"));
    let fwd = to(&out, "10.0.1.2:5072");
    assert_eq!(
        fwd.len(),
        1,
        "{:?}",
        out.iter().map(text).collect::<Vec<_>>()
    );
    assert_eq!(uri(&fwd[0]), "sip:4155552002@10.0.1.2:5072");
    h.feed(udp("10.0.1.2:5072"), &reply(&fwd[0], 180));
    // Progress came; the answer timeout (5 s, DID level) gives up: CANCEL, then 408.
    let out = h.advance_to(4_999);
    assert!(timed_to(&out, "10.0.1.2:5072").is_empty());
    let out = h.advance_to(5_000);
    let cancel = timed_to(&out, "10.0.1.2:5072");
    assert_eq!(method(&cancel[0].1), "CANCEL");
    let up = timed_to(&out, CARRIER);
    assert_eq!(status(&up.last().unwrap().1), Some(408));
    // Disabled server: 480, nothing sent to it.
    let out = h.feed(udp(CARRIER), &invite_to("r3", "4155552003"));
    assert_eq!(out.len(), 1);
    assert_eq!(status(&out[0]), Some(480));
    // Unknown DID: 404.
    let out = h.feed(udp(CARRIER), &invite_to("r4", "4155559999"));
    assert_eq!(status(&out[0]), Some(404));
}

#[test]
fn settings_default_progress_timeout_applies() {
    let mut h = router_proxy();
    let out = h.feed(udp(CARRIER), &invite_to("p1", "4155552001"));
    let fwd = to(&out, "10.0.1.1:5071");
    h.feed(udp("10.0.1.1:5071"), &reply(&fwd[0], 100));
    let out = h.advance_to(7_000);
    let sent = timed_to(&out, "10.0.1.1:5071");
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].0, method(&sent[0].1)), (7_000, "CANCEL".into()));
}

// ---- 2. Disabled and unknown ----

#[test]
fn disabled_server_gets_480_without_attempt_or_failover() {
    let mut h = proxy_with(route(|r| {
        r.enabled = false;
        r.failover = sip_failover();
    }));
    let out = call(&mut h, "d1");
    assert_eq!(out.len(), 1);
    assert_eq!(status(&out[0]), Some(480));
    assert!(h
        .advance_by(40_000)
        .iter()
        .all(|(_, t)| t.to == udp(CARRIER)));
}

// ---- 3. sip_headers ----

#[test]
fn sip_headers_are_added_short_and_long_lists() {
    for n in [2usize, 12] {
        let headers: Arc<[SipHeader]> = (0..n)
            .map(|i| SipHeader {
                name: format!("X-H{i}"),
                value: format!("v{i}"),
            })
            .collect();
        let mut h = proxy_with(route(|r| r.sip_headers = Some(headers.clone())));
        let out = call(&mut h, "h1");
        let fwd = &to(&out, SERVER)[0];
        let m = parse(fwd);
        for i in 0..n {
            let v = m.headers_named(format!("X-H{i}").as_bytes()).next();
            assert_eq!(v, Some(format!("v{i}").as_bytes()), "{n} headers: X-H{i}");
        }
        assert!(m.body().is_empty());
    }
}

// ---- 4. Timers ----

#[test]
fn delay_holds_the_invite_and_cancel_during_delay_is_487() {
    let mut h = proxy_with(route(|r| r.delay = secs(2)));
    let out = call(&mut h, "t1");
    assert_eq!(out.len(), 1, "only our 100 Trying");
    assert_eq!(status(&out[0]), Some(100));
    let out = h.advance_to(1_999);
    assert!(out.is_empty());
    let out = h.advance_to(2_000);
    let fwd = timed_to(&out, SERVER);
    assert_eq!(fwd.len(), 1);
    assert_eq!((fwd[0].0, method(&fwd[0].1)), (2_000, "INVITE".into()));

    let mut h = proxy_with(route(|r| r.delay = secs(2)));
    call(&mut h, "t2");
    h.advance_to(1_000);
    let out = h.feed(udp(CARRIER), &cancel("t2", "z9hG4bK-t2"));
    let codes: Vec<_> = out.iter().map(status).collect();
    assert_eq!(codes, vec![Some(200), Some(487)]);
    let out = h.advance_to(40_000);
    assert!(
        timed_to(&out, SERVER).is_empty(),
        "the server never sees a packet"
    );
    h.feed(udp(CARRIER), &ack_non2xx("t2", "z9hG4bK-t2", "x"));
    h.assert_drained();
}

#[test]
fn progress_timeout_after_100_cancels_and_fails_over_at_once() {
    let mut h = proxy_with(route(|r| {
        r.delay = secs(1);
        r.progress_timeout = secs(3);
        r.failover = sip_failover();
    }));
    call(&mut h, "p1");
    let out = h.advance_to(1_000);
    let fwd = timed_to(&out, SERVER)[0].1.clone();
    h.feed(udp(SERVER), &reply(&fwd, 100));
    // 3 s after the INVITE left (not after the call arrived).
    assert!(timed_to(&h.advance_to(3_999), SERVER).is_empty());
    let out = h.advance_to(4_000);
    let cancel = timed_to(&out, SERVER);
    assert_eq!(
        (cancel[0].0, method(&cancel[0].1)),
        (4_000, "CANCEL".into())
    );
    let backup = timed_to(&out, BACKUP);
    assert_eq!(backup.len(), 1);
    assert_eq!(
        (backup[0].0, uri(&backup[0].1)),
        (4_000, FAILOVER_URI.into())
    );
    // The primary's 487 is ACKed and changes nothing for the caller.
    let out = h.feed(udp(SERVER), &reply(&fwd, 487));
    assert_eq!(out.iter().map(method).collect::<Vec<_>>(), vec!["ACK"]);
    let out = h.feed(
        udp(BACKUP),
        &answer(&backup[0].1, 200, "sip:b@10.0.0.7:5060"),
    );
    assert_eq!(to(&out, CARRIER).len(), 1);
    assert_eq!(status(&out[0]), Some(200));
    let rec = h.shard.poll_call_record();
    assert!(rec.is_none(), "the call is not over yet");
}

#[test]
fn progress_timeout_without_any_response_and_late_200_is_acked_and_byed() {
    let mut h = proxy_with(route(|r| {
        r.progress_timeout = secs(2);
        r.failover = sip_failover();
    }));
    let out = call(&mut h, "p2");
    let fwd = to(&out, SERVER)[0].clone();
    let out = h.advance_to(2_000);
    // No provisional: no CANCEL yet (§9.1), but the failover starts now.
    let backup = timed_to(&out, BACKUP);
    assert_eq!(backup.len(), 1);
    assert!(timed_to(&out, SERVER)
        .iter()
        .all(|(_, t)| method(t) == "INVITE"));
    // Given up: no more retransmissions of the INVITE to it (timer A would have sent
    // two more by now).
    let out = h.advance_to(3_900);
    assert!(timed_to(&out, SERVER).is_empty());
    // The primary answers anyway: ACK + BYE to it, nothing to the caller.
    let out = h.feed(udp(SERVER), &answer(&fwd, 200, "sip:x@10.0.0.5:5080"));
    assert!(to(&out, CARRIER).is_empty(), "caller never sees it");
    let methods: Vec<_> = to(&out, SERVER).iter().map(method).collect();
    assert_eq!(methods, vec!["ACK", "BYE"]);
    // The failover answers; the call is up.
    let out = h.feed(
        udp(BACKUP),
        &answer(&backup[0].1, 200, "sip:b@10.0.0.7:5060"),
    );
    assert_eq!(status(&to(&out, CARRIER)[0]), Some(200));
    assert_eq!(h.proxy.stats().calls, 1);
}

#[test]
fn answer_timeout_after_ringing_fails_over_and_then_408() {
    let mut h = proxy_with(route(|r| {
        r.progress_timeout = secs(3);
        r.answer_timeout = secs(5);
        r.failover = sip_failover();
    }));
    let out = call(&mut h, "a1");
    let fwd = to(&out, SERVER)[0].clone();
    let out = h.feed(udp(SERVER), &reply(&fwd, 180));
    assert_eq!(status(&out[0]), Some(180));
    let out = h.advance_to(5_000);
    assert_eq!(method(&timed_to(&out, SERVER)[0].1), "CANCEL");
    let backup = timed_to(&out, BACKUP)[0].1.clone();
    h.feed(udp(SERVER), &reply(&fwd, 487));
    // The failover attempt never answers either: its own timers, then 408 upstream.
    h.feed(udp(BACKUP), &reply(&backup, 180));
    let out = h.advance_to(10_000);
    let up = timed_to(&out, CARRIER);
    assert_eq!(
        up.len(),
        1,
        "{:?}",
        up.iter().map(|t| text(&t.1)).collect::<Vec<_>>()
    );
    assert_eq!((up[0].0, status(&up[0].1)), (10_000, Some(408)));
    h.feed(udp(BACKUP), &reply(&backup, 487));
    h.feed(udp(CARRIER), &ack_non2xx("a1", "z9hG4bK-a1", "x"));
    let rec = h.shard.poll_call_record().expect("record");
    assert_eq!((rec.status, rec.failover, rec.answered), (408, true, None));
    h.assert_drained();
}

#[test]
fn timer_b_and_transport_error_fail_over() {
    let mut h = proxy_with(route(|r| r.failover = sip_failover()));
    call(&mut h, "b1");
    let out = h.advance_to(32_000);
    let backup = timed_to(&out, BACKUP);
    assert_eq!(
        (backup[0].0, uri(&backup[0].1)),
        (32_000, FAILOVER_URI.into())
    );

    let mut h = proxy_with(route(|r| r.failover = sip_failover()));
    call(&mut h, "b2");
    h.proxy
        .handle_transport_error(&mut h.shard, h.now, udp(SERVER));
    let out = h.drain();
    assert_eq!(to(&out, BACKUP).len(), 1);
    // The failover fails too: 503 from it, the best response is relayed as 500.
    let out = h.feed(udp(BACKUP), &reply(&to(&out, BACKUP)[0], 503));
    assert_eq!(status(&to(&out, CARRIER)[0]), Some(500));
}

// ---- 5. Failover ----

#[test]
fn failover_codes_and_exactly_one_attempt() {
    for (code, fails_over) in [
        (404, true),
        (408, true),
        (480, true),
        (500, true),
        (503, true),
        (486, false),
        (403, false),
        (603, false),
    ] {
        let mut h = proxy_with(route(|r| r.failover = sip_failover()));
        let out = call(&mut h, "f1");
        let out = h.feed(udp(SERVER), &reply(&to(&out, SERVER)[0], code));
        let backup = to(&out, BACKUP);
        assert_eq!(backup.len(), usize::from(fails_over), "{code}");
        if !fails_over {
            let expect = if code == 503 { 500 } else { code };
            assert_eq!(status(&to(&out, CARRIER)[0]), Some(expect));
            continue;
        }
        assert_eq!(uri(&backup[0]), FAILOVER_URI);
        assert!(to(&out, CARRIER).is_empty(), "{code}: the caller waits");
        // The failover's 503: no second failover; the best response goes up.
        let out = h.feed(udp(BACKUP), &reply(&backup[0], 503));
        let up = to(&out, CARRIER);
        assert_eq!(up.len(), 1, "{code}");
        let expect = if code == 503 || code == 500 {
            500
        } else {
            code
        };
        assert_eq!(status(&up[0]), Some(expect), "{code}");
    }
}

#[test]
fn failover_on_any_includes_busy() {
    let mut cfg = test_config();
    cfg.failover_on = trunkstore_proxy::FailoverRule::any();
    let dir = directory().with_did(DID, route(|r| r.failover = sip_failover()));
    let mut h = H::with(cfg, dir);
    let out = call(&mut h, "y1");
    let out = h.feed(udp(SERVER), &reply(&to(&out, SERVER)[0], 486));
    assert_eq!(to(&out, BACKUP).len(), 1);
}

#[test]
fn unreachable_without_failover_is_480() {
    let mut h = proxy_with(route(|r| r.next_hop = None));
    let out = call(&mut h, "u1");
    let codes: Vec<_> = out.iter().map(status).collect();
    assert_eq!(codes, vec![Some(100), Some(480)]);
}

#[test]
fn e164_failover_goes_to_our_own_did_unless_force_outbound() {
    const OTHER: &str = "+14155553000";
    let number_failover = Some(Arc::new(Failover {
        e164: Some(OTHER.into()),
        sip: Some("sip:ignored@10.0.0.99".into()),
    }));
    let mut other = route_to("10.0.0.8", 5062, true, Transport::Udp);
    other.format = NumberFormat::OneNpan;
    let dir = directory()
        .with_did(DID, route(|r| r.failover = number_failover.clone()))
        .with_did(OTHER, other.clone());
    let mut h = H::with(test_config(), dir);
    let out = call(&mut h, "e1");
    let out = h.feed(udp(SERVER), &reply(&to(&out, SERVER)[0], 503));
    let fwd = to(&out, "10.0.0.8:5062");
    assert_eq!(fwd.len(), 1, "e164 wins over sip");
    assert_eq!(uri(&fwd[0]), "sip:14155553000@10.0.0.8:5062");

    // force_outbound on the target: over the carriers, which do not exist yet → 480.
    other.force_outbound = true;
    let dir = directory()
        .with_did(DID, route(|r| r.failover = number_failover.clone()))
        .with_did(OTHER, other);
    let mut h = H::with(test_config(), dir);
    let out = call(&mut h, "e2");
    let out = h.feed(udp(SERVER), &reply(&to(&out, SERVER)[0], 503));
    assert!(to(&out, "10.0.0.8:5062").is_empty());
    assert_eq!(status(&to(&out, CARRIER)[0]), Some(480));
}

// ---- 6. Early media ----

#[test]
fn early_media_becomes_plain_ringing() {
    let mut h = proxy_with(route(|r| r.ignore_early_media = true));
    let out = call(&mut h, "m1");
    let fwd = to(&out, SERVER)[0].clone();
    for code in [183, 180] {
        let out = h.feed(udp(SERVER), &with_sdp(&fwd, code, "Session Progress"));
        let up = &to(&out, CARRIER)[0];
        let m = parse(up);
        assert_eq!(m.status(), Some(180), "{code}");
        assert!(text(up).starts_with("SIP/2.0 180 Ringing\r\n"));
        assert!(m.body().is_empty());
        assert_eq!(m.header(HeaderName::ContentType), None);
        assert_eq!(header(up, HeaderName::ContentLength).as_deref(), Some("0"));
        assert_eq!(vias(up).len(), 1, "our Via removed");
        assert!(header(up, HeaderName::To).unwrap().contains("tag=callee1"));
    }
    // Without the option, 183 with SDP is relayed as is.
    let mut h = proxy_with(route(|_| {}));
    let out = call(&mut h, "m2");
    let out = h.feed(
        udp(SERVER),
        &with_sdp(&to(&out, SERVER)[0], 183, "Session Progress"),
    );
    let m = parse(&to(&out, CARRIER)[0]);
    assert_eq!(m.status(), Some(183));
    assert!(!m.body().is_empty());
}

// ---- 7. Call records ----

#[test]
fn call_records_for_answered_and_failed_calls() {
    let mut h = proxy_with(route(|r| {
        r.failover = sip_failover();
        r.document = Some("doc1".into());
    }));
    let out = call(&mut h, "r1");
    h.advance_to(1_000);
    let out = h.feed(udp(SERVER), &reply(&to(&out, SERVER)[0], 503));
    let backup = to(&out, BACKUP)[0].clone();
    h.advance_to(3_000);
    h.feed(
        udp(BACKUP),
        &answer(&backup, 200, "sip:4155551234@10.0.0.7:5060"),
    );
    h.feed(
        udp(CARRIER),
        &in_dialog_from_carrier("ACK", "r1", "z9hG4bK-ack", 1),
    );
    h.advance_to(10_000);
    let out = h.feed(
        udp(CARRIER),
        &in_dialog_from_carrier("BYE", "r1", "z9hG4bK-bye", 2),
    );
    assert!(h.shard.poll_call_record().is_none());
    h.feed(udp(BACKUP), &reply(&out[0], 200));
    let rec = h.shard.poll_call_record().expect("record after the BYE");
    assert_eq!(&rec.call_id[..], b"r1");
    assert_eq!(rec.direction, "inbound");
    assert_eq!(rec.did.as_deref(), Some(DID));
    assert_eq!(rec.account.as_deref(), Some("acc1"));
    assert_eq!(rec.server.as_deref(), Some("pbx1"));
    assert_eq!(rec.document.as_deref(), Some("doc1"));
    assert_eq!(&rec.from[..], b"+12125550100");
    assert_eq!(&rec.to[..], DID.as_bytes());
    assert_eq!(rec.answered.unwrap() - rec.started, Duration::from_secs(3));
    assert_eq!(rec.ended - rec.started, Duration::from_secs(10));
    assert_eq!(
        (rec.status, rec.answered_attempt, rec.failover, rec.reason),
        (200, Some(2), true, "bye")
    );
    assert!(rec.trunk_held, "calls from carriers take a trunk");

    let out = call(&mut h, "r2");
    h.feed(udp(SERVER), &reply(&to(&out, SERVER)[0], 486));
    let rec = h
        .shard
        .poll_call_record()
        .expect("record of the failed call");
    assert_eq!(
        (rec.status, rec.failover, rec.reason),
        (486, false, "failed")
    );
    h.feed(udp(CARRIER), &ack_non2xx("r2", "z9hG4bK-r2", "callee1"));
    h.assert_drained();
    assert!(h.shard.poll_call_record().is_none());
}

#[test]
fn records_are_not_queued_unless_enabled() {
    let dir: StaticDirectory = directory();
    let mut h = H::with(ProxyConfig::for_tests("10.0.0.1", 5060), dir);
    let out = call(&mut h, "n1");
    h.feed(udp(SERVER), &reply(&to(&out, SERVER)[0], 486));
    assert!(h.shard.poll_call_record().is_none());
}

/// Many calls through every path (timeouts, failover, late 200s, CANCEL during delay)
/// leave nothing behind.
#[test]
fn nothing_leaks_across_every_path() {
    let mut h = proxy_with(route(|r| {
        r.delay = secs(1);
        r.progress_timeout = secs(2);
        r.answer_timeout = secs(4);
        r.failover = sip_failover();
    }));
    for i in 0..200u32 {
        let id = format!("l{i}");
        let br = format!("z9hG4bK-{id}");
        h.feed(udp(CARRIER), &invite(&id, &br));
        match i % 4 {
            0 => {
                h.feed(udp(CARRIER), &cancel(&id, &br));
                h.feed(udp(CARRIER), &ack_non2xx(&id, &br, "x"));
            }
            _ => {
                let out = h.advance_by(1_000);
                let fwd = timed_to(&out, SERVER)[0].1.clone();
                if i % 4 == 1 {
                    h.feed(udp(SERVER), &reply(&fwd, 503));
                } else {
                    h.feed(udp(SERVER), &reply(&fwd, 100));
                }
                let out = h.advance_by(2_000);
                if i % 4 == 3 {
                    h.feed(udp(SERVER), &answer(&fwd, 200, "sip:x@10.0.0.5:5080"));
                } else {
                    h.feed(udp(SERVER), &reply(&fwd, 487));
                }
                let _ = out;
                h.advance_by(40_000);
                h.feed(udp(CARRIER), &ack_non2xx(&id, &br, "x"));
            }
        }
    }
    h.assert_drained();
}
