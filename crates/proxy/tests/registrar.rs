//! REGISTER and calls to registered contacts (behaviour.md §4.2, §5.4) on a virtual clock,
//! over the production routing index: digest with 401, bindings reached at their source,
//! NAT keep-alives, and what a stranger cannot do to a binding.

mod common;

use std::path::Path;

use common::*;
use serde_json::json;
use trunkstore_config::{validate_document, Catalog, Settings};
use trunkstore_proxy::metrics::RegisterOutcome;
use trunkstore_proxy::Transmit;

/// The PBX's public address (its NAT router); its Contact says 192.168.1.20:5080.
const PBX: &str = "203.0.113.7:40123";
const CARRIER: &str = "192.0.2.21:5060";
const BACKUP: &str = "10.0.0.60:5060";
const DID: &str = "+14155557001";
const RURI: &str = "sip:10.0.0.1:5060";

fn harness() -> H {
    let settings = json!({
        "listen": {"udp": ["10.0.0.1:5060"]},
        "advertise": "10.0.0.1:5060",
        "default_realm": "trunks.example",
        "carriers": [{"name": "c1", "gateways": [{"host": "192.0.2.21"}],
                      "sources": ["192.0.2.21"]}],
        "registrar": {"min_expires": 60, "max_expires": 3600, "keepalive_interval": 30,
                      "keepalive_failures": 3},
        "protection": {"ban_threshold": 3, "ban_window": 60, "ban_time": 600}
    });
    let doc = json!({
        "account": {"auth_realm": "acme.example"},
        "servers": [
            {"name": "office", "auth": {"auth_method": "password", "auth_user": "office1",
                                        "auth_password": "s3cret"},
             "options": {"inbound_format": "npan", "timeout": 20},
             "DIDs": {DID: {}, "+14155557002": {"failover": {"sip": "sip:backup@10.0.0.60:5060"}}}},
            {"name": "ip-pbx", "auth": {"auth_method": "IP", "ip": "10.0.0.5"},
             "DIDs": {"+14155557100": {}}}
        ]
    });
    let settings = Settings::from_value(&settings, Path::new("/tmp")).expect("settings");
    let doc = validate_document("acme", "main", &doc).expect("document");
    let catalog = Catalog::build(settings, [doc]).expect("catalog");
    H::routed(&catalog, false)
}

fn register(call: &str, cseq: u32, user: &str, extra: &str) -> String {
    format!(
        "REGISTER {RURI} SIP/2.0
Via: SIP/2.0/UDP 192.168.1.20:5080;branch=z9hG4bK-{call}-{cseq};rport
Max-Forwards: 70
From: <sip:{user}@acme.example>;tag=r-{call}
To: <sip:{user}@acme.example>
Call-ID: {call}
CSeq: {cseq} REGISTER
User-Agent: OfficePBX/2.1
{extra}Content-Length: 0

"
    )
}

const CONTACT: &str = "Contact: <sip:office1@192.168.1.20:5080>\nExpires: 600\n";

/// The 401 round for REGISTER `call` at CSeq `cseq` (To user `to_user`), then the same
/// REGISTER at `cseq + 1` with the answer of `credentials` to that challenge: its text,
/// not yet sent.
fn credentialed(
    h: &mut H,
    (call, cseq): (&str, u32),
    to_user: &str,
    credentials: (&str, &str),
    extra: &str,
) -> String {
    let out = h.feed(udp(PBX), &register(call, cseq, to_user, extra));
    assert_eq!(out.len(), 1);
    assert_eq!(status(&out[0]), Some(401), "{}", text(&out[0]));
    let answer = digest_answer(
        &out[0],
        b"WWW-Authenticate",
        b"REGISTER",
        credentials,
        1,
        RURI,
    );
    register(
        call,
        cseq + 1,
        to_user,
        &format!("{extra}Authorization: {answer}\n"),
    )
}

/// The 401 round, then the REGISTER with `user`'s credentials; returns its answer.
fn registered(h: &mut H, (user, password): (&str, &str), call: &str, extra: &str) -> Transmit {
    let msg = credentialed(h, (call, 1), user, (user, password), extra);
    let out = h.feed(udp(PBX), &msg);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].to, udp(PBX), "answered where it came from");
    out[0].clone()
}

fn carrier_invite(call: &str, did: &str) -> String {
    format!(
        "INVITE sip:{did}@10.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 192.0.2.21:5060;branch=z9hG4bK-{call}
Max-Forwards: 70
From: <sip:+12125550100@192.0.2.21>;tag=c-{call}
To: <sip:{did}@10.0.0.1>
Call-ID: {call}
CSeq: 1 INVITE
Contact: <sip:+12125550100@192.0.2.21:5060>
Content-Length: 0

"
    )
}

fn invites(out: &[Transmit]) -> Vec<Transmit> {
    out.iter()
        .filter(|t| status(t).is_none() && method(t) == "INVITE")
        .cloned()
        .collect()
}

fn contacts(t: &Transmit) -> Vec<String> {
    parse(t)
        .headers_named(b"Contact")
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

#[test]
fn register_is_challenged_with_401_and_www_authenticate() {
    let mut h = harness();
    let out = h.feed(udp(PBX), &register("r1", 1, "office1", CONTACT));
    assert_eq!(status(&out[0]), Some(401));
    let www: Vec<String> = parse(&out[0])
        .headers_named(b"WWW-Authenticate")
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    assert_eq!(www.len(), 1, "{www:?}");
    assert!(www[0].contains("realm=\"acme.example\""), "{}", www[0]);
    assert!(parse(&out[0]).header_named(b"Proxy-Authenticate").is_none());
    assert_eq!(
        h.proxy.metrics().registrations(RegisterOutcome::Challenged),
        1
    );
    assert!(h.proxy.registrations(h.now).is_empty());
}

#[test]
fn an_authenticated_register_binds_and_lists_its_contact() {
    let mut h = harness();
    let ok = registered(&mut h, ("office1", "s3cret"), "r1", CONTACT);
    assert_eq!(status(&ok), Some(200), "{}", text(&ok));
    assert_eq!(
        contacts(&ok),
        vec!["<sip:office1@192.168.1.20:5080>;expires=600"]
    );
    let regs = h.proxy.registrations(h.now);
    assert_eq!(regs.len(), 1);
    let r = &regs[0];
    assert_eq!((r.account.as_str(), r.server.as_str()), ("acme", "office"));
    assert_eq!(r.aor, "office1@acme.example");
    assert_eq!(r.source, udp(PBX));
    assert_eq!(r.user_agent.as_deref(), Some("OfficePBX/2.1"));
    assert!(r.nat);
    assert_eq!(h.proxy.metrics().registrations(RegisterOutcome::Ok), 1);
}

#[test]
fn a_carrier_call_reaches_the_binding_at_its_source_with_the_contact_in_the_request_uri() {
    let mut h = harness();
    registered(&mut h, ("office1", "s3cret"), "r1", CONTACT);
    let out = h.feed(udp(CARRIER), &carrier_invite("c1", DID));
    let sent = invites(&out);
    assert_eq!(
        sent.len(),
        1,
        "{:?}",
        out.iter().map(text).collect::<Vec<_>>()
    );
    assert_eq!(
        sent[0].to,
        udp(PBX),
        "the NAT's public side, never 192.168.1.20"
    );
    assert_eq!(
        String::from_utf8_lossy(parse(&sent[0]).request_uri()),
        "sip:4155557001@192.168.1.20:5080"
    );
}

#[test]
fn without_a_binding_the_attempt_fails_at_once_and_the_failover_runs() {
    let mut h = harness();
    let out = h.feed(udp(CARRIER), &carrier_invite("c1", DID));
    assert!(invites(&out).is_empty());
    let finals: Vec<u16> = out
        .iter()
        .filter_map(status)
        .filter(|s| *s >= 200)
        .collect();
    assert_eq!(
        finals,
        vec![480],
        "{:?}",
        out.iter().map(text).collect::<Vec<_>>()
    );
    let out = h.feed(udp(CARRIER), &carrier_invite("c2", "+14155557002"));
    let sent = invites(&out);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].to, udp(BACKUP));
}

#[test]
fn an_expired_binding_is_not_called() {
    let mut h = harness();
    registered(
        &mut h,
        ("office1", "s3cret"),
        "r1",
        "Contact: <sip:office1@192.168.1.20:5080>;expires=60\n",
    );
    // It answers its keep-alives, so only the expiry can end it.
    for _ in 0..2 {
        for (_, t) in h.advance_by(30_000) {
            if method(&t) == "OPTIONS" {
                h.feed(udp(PBX), &reply(&t, 200));
            }
        }
    }
    let out = h.feed(udp(CARRIER), &carrier_invite("c1", DID));
    assert!(invites(&out).is_empty(), "expired at 60 s");
    assert!(h.proxy.registrations(h.now).is_empty());
}

#[test]
fn wrong_password_and_unknown_user_get_the_same_403() {
    let mut h = harness();
    let bad = registered(&mut h, ("office1", "guess"), "r1", CONTACT);
    let unknown = registered(&mut h, ("nobody", "guess"), "r2", CONTACT);
    for t in [&bad, &unknown] {
        assert_eq!(status(t), Some(403));
        assert_eq!(String::from_utf8_lossy(parse(t).reason()), "Forbidden");
    }
    assert!(h.proxy.registrations(h.now).is_empty());
    assert_eq!(
        h.proxy.metrics().registrations(RegisterOutcome::Forbidden),
        2
    );
}

#[test]
fn carriers_and_ip_auth_servers_cannot_register() {
    let mut h = harness();
    for src in [CARRIER, "10.0.0.5:5060"] {
        let out = h.feed(udp(src), &register("r1", 1, "office1", CONTACT));
        assert_eq!(status(&out[0]), Some(403), "{src}");
    }
    assert!(h.proxy.registrations(h.now).is_empty());
}

#[test]
fn a_pbx_registers_only_its_own_address_of_record() {
    let mut h = harness();
    let msg = credentialed(
        &mut h,
        ("r1", 1),
        "someone-else",
        ("office1", "s3cret"),
        CONTACT,
    );
    let out = h.feed(udp(PBX), &msg);
    assert_eq!(status(&out[0]), Some(403));
    assert!(h.proxy.registrations(h.now).is_empty());
}

#[test]
fn too_brief_gets_423_with_min_expires() {
    let mut h = harness();
    let t = registered(
        &mut h,
        ("office1", "s3cret"),
        "r1",
        "Contact: <sip:office1@192.168.1.20:5080>;expires=30\n",
    );
    assert_eq!(status(&t), Some(423));
    assert_eq!(header_named(&t, "Min-Expires").as_deref(), Some("60"));
    assert!(h.proxy.registrations(h.now).is_empty());
}

#[test]
fn a_retransmitted_register_gets_the_same_200_not_a_replay_challenge() {
    let mut h = harness();
    let msg = credentialed(&mut h, ("r1", 1), "office1", ("office1", "s3cret"), CONTACT);
    let first = h.feed(udp(PBX), &msg);
    let again = h.feed(udp(PBX), &msg);
    assert_eq!(status(&first[0]), Some(200));
    assert_eq!(first[0].data, again[0].data);
}

#[test]
fn expires_zero_unregisters() {
    let mut h = harness();
    registered(&mut h, ("office1", "s3cret"), "r1", CONTACT);
    let remove = "Contact: <sip:office1@192.168.1.20:5080>;expires=0\n";
    let msg = credentialed(&mut h, ("r1", 3), "office1", ("office1", "s3cret"), remove);
    let out = h.feed(udp(PBX), &msg);
    assert_eq!(status(&out[0]), Some(200));
    assert!(contacts(&out[0]).is_empty());
    assert!(h.proxy.registrations(h.now).is_empty());
    assert_eq!(h.proxy.metrics().registrations(RegisterOutcome::Removed), 1);
}

#[test]
fn nat_bindings_are_kept_alive_by_options_and_dropped_when_they_stop_answering() {
    let mut h = harness();
    registered(&mut h, ("office1", "s3cret"), "r1", CONTACT);
    // Answered from the binding's own address: kept.
    for _ in 0..3 {
        let pings: Vec<Transmit> = h
            .advance_by(30_000)
            .into_iter()
            .map(|(_, t)| t)
            .filter(|t| method(t) == "OPTIONS")
            .collect();
        assert_eq!(pings.len(), 1);
        assert_eq!(pings[0].to, udp(PBX));
        assert_eq!(
            String::from_utf8_lossy(parse(&pings[0]).request_uri()),
            "sip:office1@192.168.1.20:5080"
        );
        assert!(
            h.feed(udp(PBX), &reply(&pings[0], 200)).is_empty(),
            "never relayed"
        );
    }
    assert_eq!(h.proxy.registrations(h.now).len(), 1);
    // Answered by a stranger only: three failures and it is gone.
    for _ in 0..4 {
        for (_, t) in h.advance_by(30_000) {
            if method(&t) == "OPTIONS" {
                h.feed(udp("203.0.113.66:40123"), &reply(&t, 200));
            }
        }
    }
    assert!(h.proxy.registrations(h.now).is_empty());
    let out = h.feed(udp(CARRIER), &carrier_invite("c1", DID));
    assert!(invites(&out).is_empty());
}

#[test]
fn a_register_never_leaves_the_proxy() {
    let mut h = harness();
    let ok = registered(&mut h, ("office1", "s3cret"), "r1", CONTACT);
    assert_eq!(status(&ok), Some(200));
    // Even with a Route naming a carrier.
    let out = h.feed(
        udp(PBX),
        &register(
            "r9",
            1,
            "office1",
            "Route: <sip:192.0.2.21;lr>\nContact: <sip:x@192.168.1.20>\n",
        ),
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].to, udp(PBX));
    assert_eq!(status(&out[0]), Some(401));
}

fn header_named(t: &Transmit, name: &str) -> Option<String> {
    parse(t)
        .header_named(name.as_bytes())
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

#[test]
fn a_register_flood_from_one_source_is_cut_by_the_rate_limit() {
    // Default protection: 50 requests/s, bursts of 100, per unknown source.
    let mut h = harness();
    let mut answered = 0;
    for i in 0..300 {
        let out = h.feed(
            udp("203.0.113.99:5060"),
            &register(&format!("f{i}"), 1, "office1", CONTACT),
        );
        answered += out.len();
    }
    assert!(
        (100..=101).contains(&answered),
        "{answered} of 300 answered"
    );
    assert_eq!(
        h.proxy.protection_stats(h.now).dropped_rate_limited,
        300 - answered as u64
    );
    // Another source is not affected.
    let out = h.feed(udp(PBX), &register("ok", 1, "office1", CONTACT));
    assert_eq!(status(&out[0]), Some(401));
}

/// Issue 17: ICMP errors for a registered PBX's address (which anyone who can guess the
/// addresses can forge for UDP) never count against its binding, and with nothing pending
/// they change nothing; a call waiting on that address fails at once (a 503 for the
/// branch, relayed as 500). A send failure (`handle_transport_error`) does count, as before.
#[test]
fn icmp_errors_never_touch_a_binding_and_fail_only_what_is_pending() {
    let mut h = harness();
    registered(&mut h, ("office1", "s3cret"), "r1", CONTACT);
    for _ in 0..10 {
        h.proxy.handle_unreachable(&mut h.shard, h.now, udp(PBX));
    }
    assert!(h.drain().is_empty(), "nothing pending: nothing sent");
    // Past the next keep-alive scan, which drops bindings with 3 failures.
    h.advance_by(31_000);
    assert_eq!(h.proxy.registrations(h.now).len(), 1, "binding kept");
    let stats = h.proxy.stats();

    let out = h.feed(udp(CARRIER), &carrier_invite("c1", DID));
    assert_eq!(invites(&out).len(), 1);
    h.proxy.handle_unreachable(&mut h.shard, h.now, udp(PBX));
    let out = h.drain();
    let up: Vec<_> = out.iter().filter(|t| t.to == udp(CARRIER)).collect();
    assert_eq!(
        up.len(),
        1,
        "{:?}",
        out.iter().map(text).collect::<Vec<_>>()
    );
    assert_eq!(status(up[0]), Some(500));
    assert_eq!(h.proxy.registrations(h.now).len(), 1, "binding kept");
    // An ICMP error for a peer nobody calls touches no transaction.
    h.proxy
        .handle_unreachable(&mut h.shard, h.now, udp("198.51.100.9:5060"));
    assert!(h.drain().is_empty());
    assert!(h.proxy.stats().client_transactions <= stats.client_transactions + 1);

    // Send failures, by contrast, are the binding's own failures (keep-alive count).
    for _ in 0..3 {
        h.proxy
            .handle_transport_error(&mut h.shard, h.now, udp(PBX));
    }
    h.advance_by(31_000);
    assert!(h.proxy.registrations(h.now).is_empty());
}
