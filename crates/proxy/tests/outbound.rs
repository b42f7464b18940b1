//! Outbound routing (behaviour.md §3, §5, §6) on a virtual clock, over the production
//! routing index: IP and digest authentication, protection, destination, on-net calls,
//! carriers, caller ID, trunks.

mod common;

use std::path::Path;

use common::*;
use serde_json::json;
use trunkstore_config::{validate_document, Catalog, Settings};
use trunkstore_proxy::Transmit;
use trunkstore_sip::message::HeaderName;

const IP_PBX: &str = "10.0.0.5:5080";
const PW_PBX: &str = "10.0.0.99:5060";
const BARE_PBX: &str = "10.0.0.8:5060";
const OFF_PBX: &str = "10.0.0.7:5060";
const C1: &str = "192.0.2.21:5060";
const C2: &str = "192.0.2.22:5060";
const CE: &str = "192.0.2.23:5060";
const CUK: &str = "192.0.2.24:5060";
const PW_TARGET: &str = "10.0.0.6:5060";

fn settings() -> serde_json::Value {
    json!({
        "listen": {"udp": ["10.0.0.1:5060"]},
        "advertise": "10.0.0.1:5060",
        "default_realm": "trunks.example",
        "carriers": [
            {"name": "c1", "gateways": [{"host": "192.0.2.21"}], "sources": ["192.0.2.21"],
             "priority": 10},
            {"name": "c2", "gateways": [{"host": "192.0.2.22", "transport": "tcp"}],
             "sources": ["192.0.2.22"], "priority": 20, "format": "npan"},
            {"name": "ce", "gateways": [{"host": "192.0.2.23"}], "sources": ["192.0.2.23"],
             "priority": 30, "emergency": true},
            {"name": "cuk", "gateways": [{"host": "192.0.2.24"}], "sources": ["192.0.2.24"],
             "priority": 5, "rule": "^\\+44"}
        ],
        "timers": {"progress_timeout": 10, "timeout": 60},
        "protection": {"ban_threshold": 3, "ban_window": 60, "ban_time": 600}
    })
}

fn documents() -> Vec<(&'static str, serde_json::Value)> {
    vec![
        (
            "acme",
            json!({
                "account": {"trunks": 2,
                            "caller_id": {"cid_name": "Acme", "cid_number": "+14155550001"},
                            "emergency_caller_id": {"cid_number": "+14155550911"},
                            "sip_headers": {"X-Account": "acme"}},
                "servers": [
                    {"name": "ip-pbx", "auth": {"auth_method": "IP", "ip": "10.0.0.5", "port": 5080},
                     "options": {"caller_id": {"cid_name": "IP PBX", "cid_number": "+14155552000"},
                                 "emergency_caller_id": {"cid_number": "+14155552911"},
                                 "sip_headers": {"X-Level": "server"}},
                     "DIDs": {
                        "+14155552001": {"caller_id": {"cid_name": "Sales", "cid_number": "+14155552001"},
                                         "sip_headers": {"X-Level": "did"}},
                        "+14155552002": {},
                        "+14155552003": {"force_outbound": true}
                     }},
                    {"name": "pw-pbx", "auth": {"auth_method": "password", "auth_user": "alice",
                                                "auth_password": "s3cret"},
                     "options": {"ip": "10.0.0.6", "port": 5060,
                                 "failover": {"e164": "+12125550199"}},
                     "DIDs": {"+14155553001": {}}},
                    {"name": "off-pbx", "auth": {"auth_method": "IP", "ip": "10.0.0.7"},
                     "options": {"enabled": false},
                     "DIDs": {"+14155554001": {}}},
                    {"name": "off-pw", "auth": {"auth_method": "password", "auth_user": "carol",
                                                "auth_password": "pw"},
                     "options": {"enabled": false, "ip": "10.0.0.9"},
                     "DIDs": {"+14155554002": {}}}
                ]
            }),
        ),
        (
            "other",
            json!({
                "account": {},
                "servers": [
                    {"name": "bare", "auth": {"auth_method": "IP", "ip": "10.0.0.8"},
                     "DIDs": {"+14155555001": {}}}
                ]
            }),
        ),
    ]
}

fn harness() -> H {
    harness_with(settings())
}

fn harness_with(settings: serde_json::Value) -> H {
    let settings = Settings::from_value(&settings, Path::new("/tmp")).expect("settings");
    let docs = documents()
        .into_iter()
        .map(|(acc, v)| validate_document(acc, "main", &v).expect("document"));
    let catalog = Catalog::build(settings, docs).expect("catalog");
    H::routed(&catalog, true)
}

/// An INVITE from a PBX at `from` to `number`, From user `from_user`.
fn pbx_invite(call: &str, from: &str, number: &str, from_user: &str, extra: &str) -> String {
    format!(
        "INVITE sip:{number}@10.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP {from};branch=z9hG4bK-{call}-{n};rport
Max-Forwards: 70
From: \"Desk 10\" <sip:{from_user}@pbx.example.com>;tag=pbx-{call}
To: <sip:{number}@10.0.0.1>
Call-ID: {call}
CSeq: 1 INVITE
Contact: <sip:{from_user}@{from}>
{extra}Content-Length: 0

",
        n = extra.len()
    )
}

fn to(out: &[Transmit], peer: &str) -> Vec<Transmit> {
    out.iter()
        .filter(|t| t.to.addr == addr(peer))
        .cloned()
        .collect()
}

fn final_to(out: &[Transmit], peer: &str) -> Option<u16> {
    to(out, peer)
        .iter()
        .filter_map(status)
        .filter(|s| *s >= 200)
        .last()
}

fn uri(t: &Transmit) -> String {
    String::from_utf8_lossy(parse(t).request_uri()).into_owned()
}

fn hdr(t: &Transmit, name: &str) -> Vec<String> {
    parse(t)
        .headers_named(name.as_bytes())
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

fn trunks(h: &H, account: &str) -> u32 {
    h.proxy
        .trunks_in_use()
        .into_iter()
        .find(|(a, _)| a == account)
        .map_or(0, |(_, n)| n)
}

/// The INVITE forwarded to `peer`.
fn forwarded(out: &[Transmit], peer: &str) -> Transmit {
    let v = to(out, peer);
    assert_eq!(
        v.len(),
        1,
        "one message to {peer}: {:?}",
        out.iter().map(text).collect::<Vec<_>>()
    );
    v[0].clone()
}

// ---- Digest helpers ----

fn challenges(t: &Transmit) -> Vec<String> {
    hdr(t, "Proxy-Authenticate")
}

/// A digest-authenticated INVITE from the password PBX: the 407 round, then the INVITE
/// with credentials. Returns what the second INVITE produced.
fn pw_call(h: &mut H, call: &str, number: &str) -> Vec<Transmit> {
    digest_call(h, (PW_PBX, "1000"), ("alice", "s3cret"), call, number)
}

/// The 407 round from `src` (From user `from_user`), then the INVITE with `user`'s
/// credentials. Returns what the second INVITE produced.
fn digest_call(
    h: &mut H,
    (src, from_user): (&str, &str),
    (user, password): (&str, &str),
    call: &str,
    number: &str,
) -> Vec<Transmit> {
    let out = h.feed(udp(src), &pbx_invite(call, src, number, from_user, ""));
    assert_eq!(status(&out[0]), Some(407), "{call}");
    let ruri = format!("sip:{number}@10.0.0.1:5060");
    let auth = authorization(&out[0], user, password, 1, &ruri);
    h.feed(
        udp(src),
        &pbx_invite(call, src, number, from_user, &auth).replace("CSeq: 1", "CSeq: 2"),
    )
}

// ---- 1. Authentication ----

#[test]
fn ip_auth_by_source_address_and_port_never_by_header() {
    let mut h = harness();
    let out = h.feed(
        udp(IP_PBX),
        &pbx_invite("a1", IP_PBX, "+12125550100", "1000", ""),
    );
    assert_eq!(status(&out[0]), Some(100));
    assert_eq!(
        uri(&forwarded(&out, C1)),
        "sip:+12125550100@192.0.2.21:5060"
    );
    // Same address, another port: auth.port is set, so this is not the server.
    let other = "10.0.0.5:5999";
    let out = h.feed(
        udp(other),
        &pbx_invite("a2", other, "+12125550100", "1000", ""),
    );
    assert_eq!(status(&out[0]), Some(407));
    assert_eq!(out.len(), 1);
    // A Via/From naming the server does not make it the server either.
    let out = h.feed(
        udp("10.0.0.50:5080"),
        &pbx_invite("a3", IP_PBX, "+12125550100", "1000", ""),
    );
    assert_eq!(status(&out[0]), Some(407));
}

#[test]
fn digest_challenge_is_md5_alone_by_default() {
    let mut h = harness();
    let out = h.feed(
        udp(PW_PBX),
        &pbx_invite("d0", PW_PBX, "+12125550100", "1000", ""),
    );
    assert_eq!(status(&out[0]), Some(407));
    let ch = challenges(&out[0]);
    assert_eq!(ch.len(), 1, "one challenge, as Kamailio: {ch:?}");
    assert!(ch[0].contains("algorithm=MD5"));
}

#[test]
fn digest_challenge_then_call() {
    // Both algorithms offered (`auth.algorithms`, written MD5 first): RFC 8760 order.
    let mut settings = settings();
    settings["auth"] = json!({"algorithms": ["MD5", "SHA-256"]});
    let mut h = harness_with(settings);
    let out = h.feed(
        udp(PW_PBX),
        &pbx_invite("d1", PW_PBX, "+12125550100", "1000", ""),
    );
    assert_eq!(out.len(), 1, "nothing forwarded before auth");
    assert_eq!(status(&out[0]), Some(407));
    let ch = challenges(&out[0]);
    assert_eq!(ch.len(), 2);
    assert!(ch[0].contains("algorithm=SHA-256") && ch[1].contains("algorithm=MD5"));
    assert!(ch[0].contains("realm=\"trunks.example\"") && ch[0].contains("qop=\"auth\""));
    let out = pw_call(&mut h, "d2", "+12125550100");
    assert_eq!(status(&out[0]), Some(100));
    let fwd = forwarded(&out, C1);
    assert!(
        hdr(&fwd, "Proxy-Authorization").is_empty(),
        "our credentials are consumed (RFC 3261 §22.3): the carrier never sees them"
    );
    // The account's caller ID (the server has none).
    assert_eq!(
        header(&fwd, HeaderName::From).unwrap(),
        "\"Acme\" <sip:+14155550001@pbx.example.com>;tag=pbx-d2"
    );
}

/// RFC 3261 §22.3: the credentials for our realm are consumed. Toward a carrier no
/// `Proxy-Authorization` leaves at all (a customer's credentials for another realm are
/// not the carrier's business: trust rule 10); toward one of our own servers (on-net)
/// only ours are consumed.
#[test]
fn own_credentials_consumed_and_none_reach_a_carrier() {
    let mut h = harness();
    let number = "+12125550100";
    let foreign = "Proxy-Authorization: Digest username=\"acme\", realm=\"carrier.example\", \
                   nonce=\"n\", uri=\"sip:x@carrier.example\", response=\"0123\"\n";
    let out = h.feed(
        udp(PW_PBX),
        &pbx_invite("s1", PW_PBX, number, "1000", foreign),
    );
    assert_eq!(status(&out[0]), Some(407));
    let ours = authorization(
        &out[0],
        "alice",
        "s3cret",
        1,
        &format!("sip:{number}@10.0.0.1:5060"),
    );
    let creds = format!("{ours}{foreign}");
    let invite = pbx_invite("s1", PW_PBX, number, "1000", &creds).replace("CSeq: 1", "CSeq: 2");
    let out = h.feed(udp(PW_PBX), &invite);
    assert_eq!(status(&out[0]), Some(100));
    let fwd = forwarded(&out, C1);
    let left = hdr(&fwd, "Proxy-Authorization");
    assert!(left.is_empty(), "{left:?}");
    assert!(!text(&fwd).contains("trunks.example"), "{}", text(&fwd));
    // On-net calls consume them too (the DID's server is not the realm's owner either).
    let out = pw_call(&mut h, "s2", "4155553001");
    let fwd = forwarded(&out, PW_TARGET);
    assert!(
        hdr(&fwd, "Proxy-Authorization").is_empty(),
        "{}",
        text(&fwd)
    );
}

#[test]
fn digest_wrong_password_unknown_user_disabled_replay_stale() {
    let mut h = harness();
    let ruri = "sip:+12125550100@10.0.0.1:5060";
    // (From another address: three failures ban a source.)
    let w = "10.0.0.98:5060";
    let first = h.feed(udp(w), &pbx_invite("w0", w, "+12125550100", "1000", ""));
    for (user, pass) in [("alice", "wrong"), ("nobody", "s3cret"), ("carol", "pw")] {
        let auth = authorization(&first[0], user, pass, 1, ruri);
        let out = h.feed(
            udp(w),
            &pbx_invite(&format!("w-{user}"), w, "+12125550100", "1000", &auth),
        );
        assert_eq!(out.len(), 1, "{user}");
        assert_eq!(status(&out[0]), Some(403), "{user}");
    }
    // Good credentials; then the same nonce-count again (a replay): refused with a new
    // challenge, nothing forwarded.
    let first = h.feed(
        udp(PW_PBX),
        &pbx_invite("w1", PW_PBX, "+12125550100", "1000", ""),
    );
    let auth = authorization(&first[0], "alice", "s3cret", 1, ruri);
    let out = h.feed(
        udp(PW_PBX),
        &pbx_invite("w2", PW_PBX, "+12125550100", "1000", &auth),
    );
    forwarded(&out, C1);
    let out = h.feed(
        udp(PW_PBX),
        &pbx_invite("w3", PW_PBX, "+12125550100", "1000", &auth),
    );
    assert_eq!(out.len(), 1);
    assert_eq!(status(&out[0]), Some(407));
    assert!(challenges(&out[0])[0].contains("stale=true"));
    // nc=2 on the same nonce is fine.
    let auth = authorization(&first[0], "alice", "s3cret", 2, ruri);
    let out = h.feed(
        udp(PW_PBX),
        &pbx_invite("w4", PW_PBX, "+12125550100", "1000", &auth),
    );
    forwarded(&out, C1);
    // After the nonce TTL (300 s): 407 stale=true.
    h.advance_by(301_000);
    let auth = authorization(&first[0], "alice", "s3cret", 3, ruri);
    let out = h.feed(
        udp(PW_PBX),
        &pbx_invite("w5", PW_PBX, "+12125550100", "1000", &auth),
    );
    assert_eq!(status(&out[0]), Some(407));
    assert!(challenges(&out[0])[0].contains("stale=true"));
}

#[test]
fn repeated_failures_ban_the_source_and_scanners_are_dropped() {
    let mut h = harness();
    let ruri = "sip:+12125550100@10.0.0.1:5060";
    let first = h.feed(
        udp(PW_PBX),
        &pbx_invite("b0", PW_PBX, "+12125550100", "1000", ""),
    );
    let bad = authorization(&first[0], "alice", "nope", 1, ruri);
    for i in 0..3 {
        let out = h.feed(
            udp(PW_PBX),
            &pbx_invite(&format!("b{i}"), PW_PBX, "+1212", "1000", &bad),
        );
        assert_eq!(status(&out[0]), Some(403));
    }
    // Banned: silence, even with good credentials.
    let good = authorization(&first[0], "alice", "s3cret", 1, ruri);
    let out = h.feed(
        udp(PW_PBX),
        &pbx_invite("b9", PW_PBX, "+12125550100", "1000", &good),
    );
    assert!(out.is_empty());
    // Scanners get nothing; an IP-auth server with the same user agent is exempt.
    let ua = "User-Agent: friendly-scanner\n";
    let out = h.feed(
        udp("10.0.0.77:5060"),
        &pbx_invite("s1", "10.0.0.77:5060", "100", "100", ua),
    );
    assert!(out.is_empty());
    let out = h.feed(
        udp(IP_PBX),
        &pbx_invite("s2", IP_PBX, "+12125550100", "1000", ua),
    );
    forwarded(&out, C1);
}

#[test]
fn in_dialog_requests_of_an_admitted_call_are_not_challenged() {
    let mut h = harness();
    let out = pw_call(&mut h, "i1", "+12125550100");
    let fwd = forwarded(&out, C1);
    let out = h.feed(udp(C1), &answer(&fwd, 200, "sip:far@192.0.2.21:5060"));
    assert_eq!(final_to(&out, PW_PBX), Some(200));
    let ack = in_dialog_from_pbx("ACK", "i1", "z9hG4bK-i1-ack", 2);
    let out = h.feed(udp(PW_PBX), &ack);
    assert_eq!(method(&forwarded(&out, C1)), "ACK");
    let out = h.feed(
        udp(PW_PBX),
        &in_dialog_from_pbx("BYE", "i1", "z9hG4bK-i1-bye", 3),
    );
    let bye = forwarded(&out, C1);
    assert_eq!(method(&bye), "BYE");
    let out = h.feed(udp(C1), &reply(&bye, 200));
    assert_eq!(final_to(&out, PW_PBX), Some(200));
    assert_eq!(trunks(&h, "acme"), 0);
}

/// An in-dialog request from the PBX through our Record-Route (From = as it sent it).
fn in_dialog_from_pbx(method: &str, call: &str, branch: &str, cseq: u32) -> String {
    format!(
        "{method} sip:far@192.0.2.21:5060 SIP/2.0
Via: SIP/2.0/UDP 10.0.0.99:5060;branch={branch};rport
Route: <sip:10.0.0.1:5060;lr>
Max-Forwards: 70
From: \"Desk 10\" <sip:1000@pbx.example.com>;tag=pbx-{call}
To: <sip:+12125550100@10.0.0.1>;tag=callee1
Call-ID: {call}
CSeq: {cseq} {method}
Content-Length: 0

"
    )
    .replace("10.0.0.99:5060", &pbx_of(call))
}

fn pbx_of(call: &str) -> String {
    if call.starts_with("ip") {
        IP_PBX.to_string()
    } else {
        PW_PBX.to_string()
    }
}

#[test]
fn disabled_servers_get_403() {
    let mut h = harness();
    let out = h.feed(
        udp(OFF_PBX),
        &pbx_invite("o1", OFF_PBX, "+12125550100", "1", ""),
    );
    assert_eq!(out.len(), 1);
    assert_eq!(status(&out[0]), Some(403));
}

/// Issue 13 item 11: disabling a customer never blocks 911/933. An emergency call from a
/// disabled server (IP or password auth) goes to the carriers, emergency carrier first,
/// and takes no trunk; anything else from it is still 403.
#[test]
fn disabled_servers_still_place_emergency_calls() {
    let mut h = harness();
    let out = h.feed(udp(OFF_PBX), &pbx_invite("oe1", OFF_PBX, "911", "1", ""));
    let fwd = forwarded(&out, CE);
    assert_eq!(uri(&fwd), "sip:911@192.0.2.23:5060");
    assert_eq!(trunks(&h, "acme"), 0, "emergency calls take no trunk");
    let out = h.feed(udp(CE), &answer(&fwd, 200, "sip:psap@192.0.2.23"));
    assert_eq!(final_to(&out, OFF_PBX), Some(200));
    assert_eq!(trunks(&h, "acme"), 0);
    // Non-emergency from the same server: still 403, nothing sent anywhere.
    for (call, number) in [
        ("oe2", "+12125550100"),
        ("oe3", "4155552002"),
        ("oe4", "9110"),
    ] {
        let out = h.feed(udp(OFF_PBX), &pbx_invite(call, OFF_PBX, number, "1", ""));
        assert_eq!(out.len(), 1, "{number}");
        assert_eq!(status(&out[0]), Some(403), "{number}");
    }

    // The disabled password server: its right password authenticates; 933 goes out,
    // other numbers get 403 — however often, they are not auth failures and never ban
    // the source (ban_threshold is 3), so its next emergency call still goes through.
    let carol = "10.0.0.77:5060";
    for i in 0..5 {
        let out = carol_call(&mut h, carol, &format!("cw{i}"), "+12125550100");
        assert_eq!(out.len(), 1);
        assert_eq!(status(&out[0]), Some(403));
    }
    let out = carol_call(&mut h, carol, "ce1", "933");
    let fwd = forwarded(&out, CE);
    assert_eq!(uri(&fwd), "sip:933@192.0.2.23:5060");
    assert_eq!(trunks(&h, "acme"), 0);
}

/// A digest-authenticated INVITE from the disabled password server (carol) at `src`.
fn carol_call(h: &mut H, src: &str, call: &str, number: &str) -> Vec<Transmit> {
    digest_call(h, (src, "2000"), ("carol", "pw"), call, number)
}

/// Issue 13 item 4, outbound: the dialled number's user parameters are split off before
/// routing and kept on every carrier's Request-URI (in its format); `%xx` escapes are
/// decoded, and whatever the decoded number contains is escaped again on the way out.
#[test]
fn dialled_user_parameters_and_escapes() {
    let mut h = harness();
    let out = h.feed(
        udp(IP_PBX),
        &pbx_invite("u1", IP_PBX, "2125550100;npdi;rn=+12125550000", "1000", ""),
    );
    let first = forwarded(&out, C1);
    assert_eq!(
        uri(&first),
        "sip:+12125550100;npdi;rn=+12125550000@192.0.2.21:5060"
    );
    // The next carrier (npan) gets the same parameters.
    let out = h.feed(udp(C1), &reply(&first, 503));
    let second = to(&out, C2);
    assert_eq!(
        uri(&second[0]),
        "sip:2125550100;npdi;rn=+12125550000@192.0.2.22:5060;transport=tcp"
    );
    h.feed(tcp(C2), &reply(&second[0], 486));
    // `%2B` decoded: one number, not an unknown string.
    let out = h.feed(
        udp(IP_PBX),
        &pbx_invite("u2", IP_PBX, "%2B12125550100", "1000", ""),
    );
    let fwd = forwarded(&out, C1);
    assert_eq!(uri(&fwd), "sip:+12125550100@192.0.2.21:5060");
    h.feed(udp(C1), &reply(&fwd, 486));
    // Emergency numbers are recognised without their parameters.
    let out = h.feed(
        udp(IP_PBX),
        &pbx_invite("u3", IP_PBX, "911;phone-context=+1", "1000", ""),
    );
    assert_eq!(
        uri(&forwarded(&out, CE)),
        "sip:911;phone-context=+1@192.0.2.23:5060"
    );
    // On-net to an escaped DID with parameters: the DID's server, npan plus parameters.
    let out = h.feed(
        udp(IP_PBX),
        &pbx_invite("u4", IP_PBX, "%2B14155553001;npdi", "1000", ""),
    );
    assert_eq!(
        uri(&forwarded(&out, PW_TARGET)),
        "sip:4155553001;npdi@10.0.0.6:5060"
    );
    // The presented DID (From user) is read the same way: DID-level headers apply.
    let out = h.feed(
        udp(IP_PBX),
        &pbx_invite("u5", IP_PBX, "+12125550100", "%2B14155552001;cpc=x", ""),
    );
    let fwd = forwarded(&out, C1);
    assert_eq!(hdr(&fwd, "X-Level"), vec!["did"]);
    h.feed(udp(C1), &reply(&fwd, 486));
}

/// Hostile: decoded text cannot restructure the carrier's Request-URI, and undecodable
/// users are refused with 400 before any routing.
#[test]
fn decoded_dialled_numbers_cannot_inject_into_the_carrier_uri() {
    let mut h = harness();
    let out = h.feed(
        udp(IP_PBX),
        &pbx_invite(
            "h1",
            IP_PBX,
            "1%3Btransport%3Dtcp%40evil.example",
            "1000",
            "",
        ),
    );
    let fwd = forwarded(&out, C1);
    assert_eq!(
        uri(&fwd),
        "sip:1%3Btransport=tcp%40evil.example@192.0.2.21:5060"
    );
    assert_eq!(fwd.to, udp(C1));
    h.feed(udp(C1), &reply(&fwd, 486));
    for (i, number) in ["%FF", "1%0D%0AX-Evil:%201", "12%00"].iter().enumerate() {
        let call = format!("h2-{i}");
        let out = h.feed(udp(IP_PBX), &pbx_invite(&call, IP_PBX, number, "1000", ""));
        assert_eq!(out.len(), 1, "{number}");
        assert_eq!(status(&out[0]), Some(400), "{number}");
    }
    assert_eq!(trunks(&h, "acme"), 0);
}

// ---- 2. Destination and carriers ----

#[test]
fn destination_normalised_and_carrier_format_and_failover_order() {
    let mut h = harness();
    let out = h.feed(
        udp(IP_PBX),
        &pbx_invite("c1", IP_PBX, "2125550100", "1000", ""),
    );
    let first = forwarded(&out, C1);
    assert_eq!(uri(&first), "sip:+12125550100@192.0.2.21:5060");
    // 503 → next carrier, over TCP, npan.
    let out = h.feed(udp(C1), &reply(&first, 503));
    let second = to(&out, C2);
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].to, tcp(C2));
    assert_eq!(
        uri(&second[0]),
        "sip:2125550100@192.0.2.22:5060;transport=tcp"
    );
    // 486 goes back to the PBX: no third carrier.
    let out = h.feed(tcp(C2), &reply(&second[0], 486));
    assert_eq!(final_to(&out, IP_PBX), Some(486));
    assert!(to(&out, CE).is_empty());
    assert_eq!(trunks(&h, "acme"), 0);
}

#[test]
fn every_carrier_failing_gives_the_best_response_503_as_500() {
    let mut h = harness();
    let out = h.feed(
        udp(IP_PBX),
        &pbx_invite("c2", IP_PBX, "+12125550100", "1000", ""),
    );
    let a = forwarded(&out, C1);
    let out = h.feed(udp(C1), &reply(&a, 503));
    assert_eq!(to(&out, C2).len(), 1);
    // No response at all from c2 (TCP): a transport error.
    h.proxy.handle_transport_error(&mut h.shard, h.now, tcp(C2));
    let out = h.drain();
    let c = forwarded(&out, CE);
    let out = h.feed(udp(CE), &reply(&c, 503));
    assert_eq!(final_to(&out, IP_PBX), Some(500));
    assert_eq!(trunks(&h, "acme"), 0);
}

#[test]
fn other_4xx_go_back_and_timeouts_move_on() {
    let mut h = harness();
    let out = h.feed(
        udp(IP_PBX),
        &pbx_invite("c3", IP_PBX, "+12125550100", "1000", ""),
    );
    let a = forwarded(&out, C1);
    let out = h.feed(udp(C1), &reply(&a, 404));
    assert_eq!(final_to(&out, IP_PBX), Some(404));
    assert!(to(&out, C2).is_empty());
    // A silent carrier: the progress timeout (10 s) moves on to the next one.
    let out = h.feed(
        udp(IP_PBX),
        &pbx_invite("c4", IP_PBX, "+12125550100", "1000", ""),
    );
    forwarded(&out, C1);
    let sent = (h.now - h.t0).as_millis() as u64;
    let out = h.advance_by(10_000);
    let next: Vec<_> = out.iter().filter(|(_, t)| t.to == tcp(C2)).collect();
    assert_eq!(next.len(), 1, "next carrier after the progress timeout");
    assert_eq!(next[0].0, sent + 10_000);
}

#[test]
fn carrier_rule_filters_numbers() {
    let mut h = harness();
    let out = h.feed(
        udp(IP_PBX),
        &pbx_invite("r1", IP_PBX, "011442071234567", "1000", ""),
    );
    assert_eq!(
        uri(&forwarded(&out, CUK)),
        "sip:+442071234567@192.0.2.24:5060"
    );
    let out = h.feed(
        udp(IP_PBX),
        &pbx_invite("r2", IP_PBX, "+12125550100", "1000", ""),
    );
    assert!(to(&out, CUK).is_empty());
}

#[test]
fn emergency_numbers_emergency_carrier_first_and_emergency_caller_id() {
    let mut h = harness();
    let out = h.feed(
        udp(IP_PBX),
        &pbx_invite("e1", IP_PBX, "911", "+14155552001", ""),
    );
    let fwd = forwarded(&out, CE);
    assert_eq!(uri(&fwd), "sip:911@192.0.2.23:5060");
    // Server's emergency caller ID (number only: the name stays).
    assert_eq!(
        header(&fwd, HeaderName::From).unwrap(),
        "\"Desk 10\" <sip:+14155552911@pbx.example.com>;tag=pbx-e1"
    );
    assert_eq!(
        hdr(&fwd, "P-Asserted-Identity"),
        vec!["\"Desk 10\" <sip:+14155552911@pbx.example.com>"]
    );
    assert_eq!(trunks(&h, "acme"), 0, "emergency calls take no trunk");
    // Account's emergency caller ID for a server without one.
    let out = pw_call(&mut h, "e2", "933");
    let fwd = forwarded(&out, CE);
    assert!(header(&fwd, HeaderName::From)
        .unwrap()
        .contains("sip:+14155550911@"));
}

// ---- 3. Caller ID ----

#[test]
fn caller_id_levels_and_headers() {
    let mut h = harness();
    let cases = [
        // (from, presented user, From, X-Level)
        (
            IP_PBX,
            "+14155552001",
            "\"Sales\" <sip:+14155552001@pbx.example.com>",
            Some("did"),
        ),
        (
            IP_PBX,
            "4155552002",
            "\"IP PBX\" <sip:+14155552000@pbx.example.com>",
            Some("server"),
        ),
        (
            IP_PBX,
            "1000",
            "\"IP PBX\" <sip:+14155552000@pbx.example.com>",
            Some("server"),
        ),
        // Another server's DID presented: not its own, the server level.
        (
            IP_PBX,
            "+14155553001",
            "\"IP PBX\" <sip:+14155552000@pbx.example.com>",
            Some("server"),
        ),
        // No caller ID anywhere: what the PBX sent, no PAI.
        (
            BARE_PBX,
            "1000",
            "\"Desk 10\" <sip:1000@pbx.example.com>",
            None,
        ),
    ];
    for (i, (src, user, from, level)) in cases.into_iter().enumerate() {
        let call = format!("cid{i}");
        let out = h.feed(udp(src), &pbx_invite(&call, src, "+12125550100", user, ""));
        let fwd = forwarded(&out, C1);
        // Busy: the call ends and gives its trunk back (the account has two).
        h.feed(udp(C1), &reply(&fwd, 486));
        assert_eq!(
            header(&fwd, HeaderName::From).unwrap(),
            format!("{from};tag=pbx-{call}"),
            "{user}"
        );
        let pai = hdr(&fwd, "P-Asserted-Identity");
        let levels = hdr(&fwd, "X-Level");
        match level {
            Some(l) => {
                assert_eq!(pai, vec![from.to_string()], "{user}");
                assert_eq!(levels, vec![l.to_string()], "{user}");
                assert_eq!(hdr(&fwd, "X-Account"), vec!["acme"]);
            }
            None => {
                assert!(pai.is_empty() && levels.is_empty());
            }
        }
    }
}

#[test]
fn original_from_restored_towards_the_pbx_for_the_whole_dialog() {
    let mut h = harness();
    let orig = "\"Desk 10\" <sip:1000@pbx.example.com>;tag=pbx-ipd";
    let new = "\"IP PBX\" <sip:+14155552000@pbx.example.com>;tag=pbx-ipd";
    let out = h.feed(
        udp(IP_PBX),
        &pbx_invite("ipd", IP_PBX, "+12125550100", "1000", ""),
    );
    let fwd = forwarded(&out, C1);
    assert_eq!(header(&fwd, HeaderName::From).unwrap(), new);
    for code in [180, 200] {
        let out = h.feed(udp(C1), &answer(&fwd, code, "sip:far@192.0.2.21:5060"));
        let up = to(&out, IP_PBX);
        assert_eq!(header(&up[0], HeaderName::From).unwrap(), orig, "{code}");
    }
    // ACK and re-INVITE from the PBX: the far end sees the rewritten identity.
    for (m, cseq) in [("ACK", 1), ("INVITE", 2)] {
        let out = h.feed(
            udp(IP_PBX),
            &in_dialog_from_pbx(m, "ipd", &format!("z9hG4bK-ipd-{m}"), cseq),
        );
        let f = forwarded(&out, C1);
        assert_eq!(header(&f, HeaderName::From).unwrap(), new, "{m}");
        if m == "INVITE" {
            let out = h.feed(udp(C1), &reply(&f, 200));
            assert_eq!(
                header(&to(&out, IP_PBX)[0], HeaderName::From).unwrap(),
                orig
            );
        }
    }
    // BYE from the carrier: To is the PBX's own identity again; the PBX's 200 goes
    // back with the rewritten To.
    let bye = format!(
        "BYE sip:1000@10.0.0.5:5080 SIP/2.0
Via: SIP/2.0/UDP 192.0.2.21:5060;branch=z9hG4bK-cbye;rport
Route: <sip:10.0.0.1:5060;lr>
Max-Forwards: 70
From: <sip:+12125550100@10.0.0.1>;tag=callee1
To: {new}
Call-ID: ipd
CSeq: 9 BYE
Content-Length: 0

"
    );
    let out = h.feed(udp(C1), &bye);
    let f = forwarded(&out, IP_PBX);
    assert_eq!(header(&f, HeaderName::To).unwrap(), orig);
    assert_eq!(
        header(&f, HeaderName::From).unwrap(),
        "<sip:+12125550100@10.0.0.1>;tag=callee1"
    );
    let out = h.feed(udp(IP_PBX), &reply(&f, 200));
    let back = to(&out, C1);
    assert_eq!(header(&back[0], HeaderName::To).unwrap(), new);
    assert_eq!(trunks(&h, "acme"), 0);
    assert_eq!(h.proxy.stats().calls, 0);
}

// ---- 4. On-net ----

#[test]
fn on_net_call_goes_to_the_did_server_with_inbound_rules_and_no_trunk() {
    let mut h = harness();
    let out = h.feed(
        udp(IP_PBX),
        &pbx_invite("n1", IP_PBX, "4155553001", "1000", ""),
    );
    let fwd = forwarded(&out, PW_TARGET);
    assert_eq!(
        uri(&fwd),
        "sip:4155553001@10.0.0.6:5060",
        "npan, the server's target"
    );
    assert_eq!(trunks(&h, "acme"), 0);
    // Its failover (e164, off-net) runs over the carriers.
    let out = h.feed(udp(PW_TARGET), &reply(&fwd, 503));
    let fo = forwarded(&out, C1);
    assert_eq!(uri(&fo), "sip:+12125550199@192.0.2.21:5060");
    let out = h.feed(udp(C1), &answer(&fo, 200, "sip:x@192.0.2.21"));
    assert_eq!(final_to(&out, IP_PBX), Some(200));
    // force_outbound on the DID: over the carriers, with a trunk.
    let out = h.feed(
        udp(IP_PBX),
        &pbx_invite("n2", IP_PBX, "+14155552003", "1000", ""),
    );
    assert_eq!(
        uri(&forwarded(&out, C1)),
        "sip:+14155552003@192.0.2.21:5060"
    );
    assert_eq!(trunks(&h, "acme"), 1);
    // A disabled destination: 480 as inbound.
    let out = h.feed(
        udp(IP_PBX),
        &pbx_invite("n3", IP_PBX, "4155554001", "1000", ""),
    );
    assert_eq!(final_to(&out, IP_PBX), Some(480));
}

#[test]
fn inbound_e164_failover_uses_the_carriers() {
    let mut h = harness();
    let out = h.feed(udp(C1), &invite_to_did("f1", "+14155553001"));
    let fwd = forwarded(&out, PW_TARGET);
    let out = h.feed(udp(PW_TARGET), &reply(&fwd, 500));
    assert_eq!(
        uri(&forwarded(&out, C1)),
        "sip:+12125550199@192.0.2.21:5060"
    );
}

fn invite_to_did(call: &str, did: &str) -> String {
    invite(call, &format!("z9hG4bK-{call}"))
        .replace("192.0.2.10", "192.0.2.21")
        .replace(&format!("sip:{DID}@"), &format!("sip:{did}@"))
}

// ---- 5. Trunks ----

#[test]
fn trunk_limit_counts_both_directions_and_is_released_every_way() {
    let mut h = harness();
    let mut up = Vec::new();
    for i in 0..2 {
        let call = format!("ipt{i}");
        let out = h.feed(
            udp(IP_PBX),
            &pbx_invite(&call, IP_PBX, "+12125550100", "1000", ""),
        );
        let fwd = forwarded(&out, C1);
        h.feed(udp(C1), &answer(&fwd, 200, "sip:far@192.0.2.21:5060"));
        up.push(call);
    }
    assert_eq!(trunks(&h, "acme"), 2);
    // Third outbound: 403 naming the limit; inbound from a carrier: 486.
    let out = h.feed(
        udp(IP_PBX),
        &pbx_invite("ipt2", IP_PBX, "+12125550100", "1000", ""),
    );
    assert_eq!(out.len(), 1);
    assert_eq!(status(&out[0]), Some(403));
    assert_eq!(parse(&out[0]).reason(), b"Trunk Limit Reached");
    let out = h.feed(udp(C1), &invite_to_did("in1", "+14155552002"));
    assert_eq!(status(&out[0]), Some(486));
    assert_eq!(parse(&out[0]).reason(), b"Trunk Limit Reached");
    // Emergency and on-net calls still go.
    let out = h.feed(udp(IP_PBX), &pbx_invite("ipt-e", IP_PBX, "911", "1000", ""));
    forwarded(&out, CE);
    let out = h.feed(
        udp(IP_PBX),
        &pbx_invite("ipt-n", IP_PBX, "4155553001", "1000", ""),
    );
    forwarded(&out, PW_TARGET);
    // BYE releases one: an inbound call takes it.
    let out = h.feed(
        udp(IP_PBX),
        &in_dialog_from_pbx("BYE", "ipt0", "z9hG4bK-ipt0-bye", 2),
    );
    h.feed(udp(C1), &reply(&forwarded(&out, C1), 200));
    assert_eq!(trunks(&h, "acme"), 1);
    let out = h.feed(udp(C1), &invite_to_did("in2", "+14155552002"));
    let fwd = forwarded(&out, IP_PBX);
    assert_eq!(trunks(&h, "acme"), 2);
    // Final failure releases it.
    h.feed(udp(IP_PBX), &reply(&fwd, 486));
    assert_eq!(trunks(&h, "acme"), 1);
    // CANCEL releases it.
    let out = h.feed(
        udp(IP_PBX),
        &pbx_invite("ipt3", IP_PBX, "+12125550100", "1000", ""),
    );
    let fwd = forwarded(&out, C1);
    h.feed(udp(C1), &reply(&fwd, 180));
    assert_eq!(trunks(&h, "acme"), 2);
    let cancel = pbx_invite("ipt3", IP_PBX, "+12125550100", "1000", "")
        .replace("INVITE sip", "CANCEL sip")
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    let out = h.feed(udp(IP_PBX), &cancel);
    let c = to(&out, C1);
    h.feed(udp(C1), &reply(&c[0], 200));
    let out = h.feed(udp(C1), &reply(&fwd, 487));
    assert_eq!(final_to(&out, IP_PBX), Some(487));
    assert_eq!(trunks(&h, "acme"), 1);
    // Failed failover (all carriers unreachable) releases it.
    let out = h.feed(
        udp(IP_PBX),
        &pbx_invite("ipt4", IP_PBX, "+12125550100", "1000", ""),
    );
    forwarded(&out, C1);
    h.proxy.handle_transport_error(&mut h.shard, h.now, udp(C1));
    h.drain();
    h.proxy.handle_transport_error(&mut h.shard, h.now, tcp(C2));
    h.drain();
    h.proxy.handle_transport_error(&mut h.shard, h.now, udp(CE));
    let out = h.drain();
    assert_eq!(final_to(&out, IP_PBX), Some(500));
    assert_eq!(trunks(&h, "acme"), 1);
    // The maximum call duration (12 h) releases the last one.
    h.advance_by(13 * 3600 * 1000);
    assert_eq!(trunks(&h, "acme"), 0);
    assert_eq!(h.proxy.stats().calls, 0);
    let records: Vec<_> = std::iter::from_fn(|| h.shard.poll_call_record()).collect();
    assert!(records
        .iter()
        .any(|r| r.direction == "outbound" && r.trunk_held));
    assert!(records
        .iter()
        .any(|r| r.direction == "onnet" && !r.trunk_held));
}

/// A carrier gateway named by DNS (issue 17): without a port it is located by its
/// NAPTR/SRV records (RFC 3263 §4: no port, no transport → NAPTR first) and the
/// Request-URI names it alone; with a port and a transport, A/AAAA on that port. The
/// call waits for the edge's answer and goes to the hop it gives.
#[test]
fn a_gateway_named_by_dns_is_resolved_before_the_invite_leaves() {
    let mut s = settings();
    s["carriers"][0]["gateways"] = json!([{"host": "trunk.carrier.test"}]);
    s["carriers"][1]["gateways"] =
        json!([{"host": "b.carrier.test", "port": 5070, "transport": "tcp"}]);
    let mut h = harness_with(s);
    let out = h.feed(
        udp(IP_PBX),
        &pbx_invite("n1", IP_PBX, "+12125550100", "1000", ""),
    );
    assert!(
        out.iter().all(|t| method(t) != "INVITE"),
        "nothing leaves before DNS"
    );
    let req = h
        .shard
        .poll_resolve()
        .expect("the gateway's name is asked for");
    assert_eq!(req.target.host, "trunk.carrier.test");
    assert_eq!((req.target.port, req.target.transport), (None, None));
    let hop = udp("192.0.2.31:5060");
    h.proxy
        .handle_resolved(&mut h.shard, h.now, req.key, Ok(vec![hop]));
    let out = h.drain();
    let inv = out
        .iter()
        .find(|t| method(t) == "INVITE")
        .expect("INVITE sent");
    assert_eq!(inv.to, hop);
    assert_eq!(
        parse(inv).request_uri(),
        b"sip:+12125550100@trunk.carrier.test"
    );
    // That carrier refuses: the next carrier's name, with its port and transport.
    let out = h.feed(hop, &reply(inv, 503));
    assert!(out.iter().all(|t| method(t) != "INVITE"));
    let req = h.shard.poll_resolve().expect("the next gateway's name");
    assert_eq!(req.target.host, "b.carrier.test");
    assert_eq!(req.target.port, Some(5070));
    assert_eq!(
        req.target.transport,
        Some(trunkstore_proxy::dns::Transport::Tcp)
    );
}
