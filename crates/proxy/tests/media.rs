//! Media anchoring through rtpengine (behaviour.md §4.7), with a fake NG peer on a
//! virtual clock: the offer before the INVITE leaves, the answer before an 18x/2xx with
//! SDP goes up, a delete on every way a call ends, lost and late NG replies, failover
//! between instances, and no media state left after many calls.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use trunkstore_proxy::metrics::NgOutcome;
use trunkstore_proxy::{ProxyConfig, StaticDirectory, Transmit, Transport};
use trunkstore_sip::build::{self, ResponseOptions};
use trunkstore_sip::message::HeaderName;

const RTPE: &str = "127.0.0.1:2223";
const RTPE2: &str = "127.0.0.1:2224";

const CALLER_SDP: &str = "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
const CALLEE_SDP: &str = "v=0\r\no=- 2 2 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\n";
/// What the fake rtpengine puts in place of an SDP: its own address.
fn relayed_sdp(port: u16) -> String {
    format!("v=0\r\no=- 9 9 IN IP4 203.0.113.7\r\ns=-\r\nc=IN IP4 203.0.113.7\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\n")
}

// ---- a fake NG peer -------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum B {
    Str(Vec<u8>),
    Int(i64),
    List(Vec<B>),
    Dict(BTreeMap<Vec<u8>, B>),
}

fn decode(s: &[u8]) -> (B, &[u8]) {
    match s[0] {
        b'i' => {
            let end = s.iter().position(|&c| c == b'e').unwrap();
            let n = std::str::from_utf8(&s[1..end]).unwrap().parse().unwrap();
            (B::Int(n), &s[end + 1..])
        }
        b'l' | b'd' => {
            let dict = s[0] == b'd';
            let mut rest = &s[1..];
            let mut items = Vec::new();
            while rest[0] != b'e' {
                let (v, r) = decode(rest);
                items.push(v);
                rest = r;
            }
            let v = if dict {
                let mut m = BTreeMap::new();
                for kv in items.chunks(2) {
                    let B::Str(k) = &kv[0] else { panic!("key") };
                    m.insert(k.clone(), kv[1].clone());
                }
                B::Dict(m)
            } else {
                B::List(items)
            };
            (v, &rest[1..])
        }
        _ => {
            let colon = s.iter().position(|&c| c == b':').unwrap();
            let n: usize = std::str::from_utf8(&s[..colon]).unwrap().parse().unwrap();
            let start = colon + 1;
            (B::Str(s[start..start + n].to_vec()), &s[start + n..])
        }
    }
}

/// One NG request the proxy sent.
#[derive(Debug, Clone)]
struct Ng {
    to: String,
    cookie: String,
    dict: BTreeMap<Vec<u8>, B>,
}

impl Ng {
    fn get(&self, key: &str) -> String {
        match self.dict.get(key.as_bytes()) {
            Some(B::Str(v)) => String::from_utf8_lossy(v).into_owned(),
            other => format!("{other:?}"),
        }
    }
    fn command(&self) -> String {
        self.get("command")
    }
    /// The reply rtpengine would send: `ok`, with `sdp` when given.
    fn ok(&self, sdp: Option<&str>) -> Bytes {
        let body = match sdp {
            Some(s) => format!("d6:result2:ok3:sdp{}:{s}e", s.len()),
            None => "d6:result2:oke".to_string(),
        };
        Bytes::from(format!("{} {body}", self.cookie))
    }
    fn error(&self) -> Bytes {
        Bytes::from(format!(
            "{} d12:error-reason15:Unknown call-id6:result5:errore",
            self.cookie
        ))
    }
}

fn ng_requests(out: &[Transmit]) -> Vec<Ng> {
    out.iter()
        .filter(|t| t.to.addr == addr(RTPE) || t.to.addr == addr(RTPE2))
        .map(|t| {
            let space = t.data.iter().position(|&c| c == b' ').unwrap();
            let (B::Dict(dict), rest) = decode(&t.data[space + 1..]) else {
                panic!("not a dict")
            };
            assert!(rest.is_empty());
            Ng {
                to: t.to.addr.to_string(),
                cookie: String::from_utf8_lossy(&t.data[..space]).into_owned(),
                dict,
            }
        })
        .collect()
}

fn sip(out: &[Transmit]) -> Vec<Transmit> {
    out.iter()
        .filter(|t| t.to.addr != addr(RTPE) && t.to.addr != addr(RTPE2))
        .cloned()
        .collect()
}

fn body(t: &Transmit) -> String {
    String::from_utf8_lossy(parse(t).body()).into_owned()
}

// ---- set-up ---------------------------------------------------------------------------

fn config(instances: &[&str], bypass: bool) -> ProxyConfig {
    let mut cfg = ProxyConfig::for_tests("10.0.0.1", 5060);
    cfg.media.rtpengine = instances.iter().map(|a| (addr(a), 1)).collect();
    cfg.media.timeout = Duration::from_millis(1000);
    cfg.media.retries = 2;
    cfg.media.bypass_on_failure = bypass;
    cfg.call_records = true;
    cfg
}

/// The DID's server anchors its media; `edit` changes its route.
fn dir(edit: impl FnOnce(&mut trunkstore_proxy::route::InboundRoute)) -> StaticDirectory {
    let mut r = route_to("10.0.0.5", 5080, true, Transport::Udp);
    r.media = true;
    edit(&mut r);
    directory().with_did(DID, r)
}

fn proxy() -> H {
    H::with(config(&[RTPE], false), dir(|_| {}))
}

/// The carrier's INVITE with its SDP.
fn invite_sdp(call: &str) -> String {
    invite(call, &format!("z9hG4bK-{call}")).replace(
        "Content-Length: 0\n",
        &format!(
            "Content-Type: application/sdp\nContent-Length: {}\n",
            CALLER_SDP.len()
        ),
    ) + &CALLER_SDP.replace("\r\n", "\n")
}

/// The callee's response to the forwarded INVITE, with SDP when `sdp`.
fn callee_says(fwd: &Transmit, code: u16, sdp: bool) -> String {
    let m = parse(fwd);
    let rr: Vec<&[u8]> = m.headers(HeaderName::RecordRoute).collect();
    let mut headers: Vec<(&[u8], &[u8])> = rr.iter().map(|v| (&b"Record-Route"[..], *v)).collect();
    headers.push((b"Contact", b"<sip:pbx@10.0.0.5:5080>"));
    let opts = ResponseOptions {
        to_tag: Some(b"callee1"),
        headers: &headers,
        body: sdp.then_some((&b"application/sdp"[..], CALLEE_SDP.as_bytes())),
    };
    let reason: &[u8] = if code < 200 { b"Ringing" } else { b"OK" };
    String::from_utf8(build::response(&m, code, reason, &opts).unwrap().to_vec()).unwrap()
}

fn feed_raw(h: &mut H, from: &str, text: String) -> Vec<Transmit> {
    h.feed_bytes(udp(from), Bytes::from(text))
}

/// INVITE in, offer answered: returns the INVITE as forwarded to the PBX.
fn offered_call(h: &mut H, call: &str) -> Transmit {
    let out = h.feed(udp(CARRIER), &invite_sdp(call));
    let ng = ng_requests(&out);
    assert_eq!(ng.len(), 1, "one offer");
    assert_eq!(ng[0].command(), "offer");
    let out = h.feed_bytes(udp(RTPE), ng[0].ok(Some(&relayed_sdp(30000))));
    sip(&out)
        .into_iter()
        .find(|t| t.to == udp(SERVER))
        .expect("INVITE forwarded after the offer")
}

/// An anchored call answered: 200 with SDP from the PBX, answer answered, 200 up, ACK.
fn answered_call(h: &mut H, call: &str) -> Transmit {
    let fwd = offered_call(h, call);
    let out = feed_raw(h, SERVER, callee_says(&fwd, 200, true));
    let ng = ng_requests(&out);
    assert_eq!(ng[0].command(), "answer");
    h.feed_bytes(udp(RTPE), ng[0].ok(Some(&relayed_sdp(30002))));
    h.feed(
        udp(CARRIER),
        &in_dialog_from_carrier("ACK", call, &format!("z9hG4bK-ack-{call}"), 1),
    );
    fwd
}

// ---- flows ------------------------------------------------------------------------------

#[test]
fn the_offer_goes_to_rtpengine_before_the_invite_and_the_callee_gets_its_sdp() {
    let mut h = proxy();
    let out = h.feed(udp(CARRIER), &invite_sdp("m1"));
    // The carrier has its 100; the PBX has nothing yet.
    let sent = sip(&out);
    assert_eq!(sent.len(), 1);
    assert_eq!(status(&sent[0]), Some(100));
    let ng = ng_requests(&out);
    assert_eq!(ng.len(), 1);
    assert_eq!(ng[0].to, RTPE);
    assert_eq!(ng[0].command(), "offer");
    assert_eq!(ng[0].get("call-id"), "m1");
    assert_eq!(ng[0].get("from-tag"), "f-m1");
    assert_eq!(ng[0].get("sdp"), CALLER_SDP);
    assert_eq!(ng[0].get("ICE"), "remove");
    // NG datagrams leave from the SIP socket.
    assert_eq!(out[1].from, Some(addr(US)));
    let out = h.feed_bytes(udp(RTPE), ng[0].ok(Some(&relayed_sdp(30000))));
    let fwd = &sip(&out)[0];
    assert_eq!(fwd.to, udp(SERVER));
    assert_eq!(method(fwd), "INVITE");
    assert_eq!(body(fwd), relayed_sdp(30000));
    assert_eq!(
        header(fwd, HeaderName::ContentLength).unwrap(),
        relayed_sdp(30000).len().to_string()
    );
}

#[test]
fn the_answer_is_rewritten_before_the_caller_sees_it_and_bye_deletes_the_session() {
    let mut h = proxy();
    let fwd = offered_call(&mut h, "m2");
    // 180 without SDP goes up at once.
    let out = feed_raw(&mut h, SERVER, callee_says(&fwd, 180, false));
    assert!(ng_requests(&out).is_empty());
    assert_eq!(status(&sip(&out)[0]), Some(180));
    // 200 with SDP waits for the answer.
    let out = feed_raw(&mut h, SERVER, callee_says(&fwd, 200, true));
    assert!(sip(&out).is_empty(), "the 200 waits for rtpengine");
    let ng = ng_requests(&out);
    assert_eq!(ng[0].command(), "answer");
    assert_eq!(ng[0].get("from-tag"), "f-m2");
    assert_eq!(ng[0].get("to-tag"), "callee1");
    assert_eq!(ng[0].get("sdp"), CALLEE_SDP);
    let out = h.feed_bytes(udp(RTPE), ng[0].ok(Some(&relayed_sdp(30002))));
    let up = &sip(&out)[0];
    assert_eq!((up.to, status(up)), (udp(CARRIER), Some(200)));
    assert_eq!(body(up), relayed_sdp(30002));
    // A retransmitted 200 goes up with the same rewrite, without asking again.
    let out = feed_raw(&mut h, SERVER, callee_says(&fwd, 200, true));
    assert!(ng_requests(&out).is_empty());
    assert_eq!(body(&sip(&out)[0]), relayed_sdp(30002));
    h.feed(
        udp(CARRIER),
        &in_dialog_from_carrier("ACK", "m2", "z9hG4bK-ack-m2", 1),
    );
    assert_eq!(h.proxy.stats().media_calls, 1);
    // BYE from the carrier: the delete goes when the PBX answers it.
    let out = h.feed(
        udp(CARRIER),
        &in_dialog_from_carrier("BYE", "m2", "z9hG4bK-bye-m2", 2),
    );
    assert!(ng_requests(&out).is_empty());
    let bye = sip(&out).into_iter().find(|t| t.to == udp(SERVER)).unwrap();
    let out = h.feed(udp(SERVER), &reply(&bye, 200));
    let ng = ng_requests(&out);
    assert_eq!(ng.len(), 1);
    assert_eq!(ng[0].command(), "delete");
    assert_eq!(
        (ng[0].get("call-id"), ng[0].get("from-tag")),
        ("m2".into(), "f-m2".into())
    );
    h.feed_bytes(udp(RTPE), ng[0].ok(None));
    let rec = h.shard.poll_call_record().expect("record");
    assert_eq!(rec.media, "anchored");
    assert_eq!(rec.media_instance, Some(addr(RTPE)));
    let m = h.proxy.metrics();
    assert_eq!(m.media_requests("offer", NgOutcome::Ok), 1);
    assert_eq!(m.media_requests("answer", NgOutcome::Ok), 1);
    assert_eq!(m.media_requests("delete", NgOutcome::Ok), 1);
    assert_eq!(m.calls_anchored(), 1);
    h.assert_drained();
    let s = h.proxy.stats();
    assert_eq!((s.media_requests, s.media_calls), (0, 0));
}

#[test]
fn a_bypass_server_never_touches_rtpengine() {
    let mut h = H::with(config(&[RTPE], false), dir(|r| r.media = false));
    let out = h.feed(udp(CARRIER), &invite_sdp("b1"));
    assert!(ng_requests(&out).is_empty());
    let fwd = sip(&out).into_iter().find(|t| t.to == udp(SERVER)).unwrap();
    assert_eq!(body(&fwd), CALLER_SDP);
    let out = feed_raw(&mut h, SERVER, callee_says(&fwd, 200, true));
    assert!(ng_requests(&out).is_empty());
    assert_eq!(body(&sip(&out)[0]), CALLEE_SDP);
    let out = h.feed(
        udp(CARRIER),
        &in_dialog_from_carrier("BYE", "b1", "z9hG4bK-bye-b1", 2),
    );
    let bye = sip(&out).into_iter().find(|t| t.to == udp(SERVER)).unwrap();
    let out = h.feed(udp(SERVER), &reply(&bye, 200));
    assert!(ng_requests(&out).is_empty());
    assert_eq!(h.shard.poll_call_record().unwrap().media, "bypass");
}

#[test]
fn a_silent_rtpengine_gets_the_call_503_after_its_retries_and_nothing_reaches_the_pbx() {
    let mut h = proxy();
    h.feed(udp(CARRIER), &invite_sdp("s1"));
    let out = h.advance_by(2_999);
    let resent = ng_requests(&out.iter().map(|(_, t)| t.clone()).collect::<Vec<_>>());
    assert_eq!(resent.len(), 2, "two retries, a second apart");
    assert!(sip(&out.iter().map(|(_, t)| t.clone()).collect::<Vec<_>>()).is_empty());
    let out: Vec<Transmit> = h.advance_by(1).into_iter().map(|(_, t)| t).collect();
    let up = sip(&out);
    assert_eq!(up.len(), 1);
    assert_eq!(up[0].to, udp(CARRIER));
    assert_eq!(status(&up[0]), Some(503));
    assert!(text(&up[0]).starts_with("SIP/2.0 503 Media Relay Unavailable\r\n"));
    assert!(out.iter().all(|t| t.to != udp(SERVER)));
    assert_eq!(
        h.proxy
            .metrics()
            .media_requests("offer", NgOutcome::Timeout),
        1
    );
    // A reply that comes now is too late: dropped.
    let late = ng_requests(&[Transmit {
        to: udp(RTPE),
        from: None,
        data: Bytes::from(format!("{} d7:command5:offere", resent[0].cookie)),
        tls_name: None,
    }]);
    let out = h.feed_bytes(udp(RTPE), late[0].ok(Some(&relayed_sdp(1))));
    assert!(out.is_empty());
    // The instance is down now: the next call is refused at once, nothing sent.
    let out = h.feed(udp(CARRIER), &invite_sdp("s2"));
    assert!(ng_requests(&out).is_empty());
    assert_eq!(status(&sip(&out)[1]), Some(503));
    assert_eq!(
        h.proxy
            .metrics()
            .media_requests("offer", NgOutcome::Unavailable),
        1
    );
    h.feed(udp(CARRIER), &ack_non2xx("s1", "z9hG4bK-s1", "x"));
    h.feed(udp(CARRIER), &ack_non2xx("s2", "z9hG4bK-s2", "x"));
    assert_eq!(h.shard.poll_call_record().unwrap().status, 503);
    h.assert_drained();
}

#[test]
fn with_on_failure_bypass_the_call_goes_on_untouched() {
    let mut h = H::with(config(&[RTPE], true), dir(|_| {}));
    h.feed(udp(CARRIER), &invite_sdp("y1"));
    let out: Vec<Transmit> = h.advance_by(3_000).into_iter().map(|(_, t)| t).collect();
    let fwd = sip(&out).into_iter().find(|t| t.to == udp(SERVER)).unwrap();
    assert_eq!(body(&fwd), CALLER_SDP);
    let out = feed_raw(&mut h, SERVER, callee_says(&fwd, 200, true));
    assert!(ng_requests(&out).is_empty(), "no answer without an offer");
    assert_eq!(body(&sip(&out)[0]), CALLEE_SDP);
    let out = h.feed(
        udp(CARRIER),
        &in_dialog_from_carrier("BYE", "y1", "z9hG4bK-bye-y1", 2),
    );
    let bye = sip(&out).into_iter().find(|t| t.to == udp(SERVER)).unwrap();
    let out = h.feed(udp(SERVER), &reply(&bye, 200));
    assert!(ng_requests(&out).is_empty(), "nothing to delete");
    assert_eq!(h.shard.poll_call_record().unwrap().media, "unanchored");
    h.assert_drained();
}

#[test]
fn an_instance_that_stays_silent_fails_over_to_the_next_and_the_call_sticks_there() {
    let mut h = H::with(config(&[RTPE, RTPE2], false), dir(|_| {}));
    let out = h.feed(udp(CARRIER), &invite_sdp("f1"));
    // Whichever instance the call's hash chose stays silent; the other takes over.
    let first = ng_requests(&out)[0].to.clone();
    let (silent, other) = if first == RTPE {
        (RTPE, RTPE2)
    } else {
        (RTPE2, RTPE)
    };
    let out: Vec<Transmit> = h.advance_by(3_000).into_iter().map(|(_, t)| t).collect();
    let ng = ng_requests(&out);
    let tried: Vec<_> = ng.iter().map(|n| n.to.as_str()).collect();
    assert_eq!(
        tried,
        [silent, silent, other],
        "two retries, then the next instance"
    );
    let last = ng.last().unwrap();
    assert_eq!(last.command(), "offer");
    let out = h.feed_bytes(udp(other), last.ok(Some(&relayed_sdp(40000))));
    let fwd = sip(&out).into_iter().find(|t| t.to == udp(SERVER)).unwrap();
    assert_eq!(body(&fwd), relayed_sdp(40000));
    let out = feed_raw(&mut h, SERVER, callee_says(&fwd, 200, true));
    let ng = ng_requests(&out);
    assert_eq!(
        (ng[0].to.as_str(), ng[0].command()),
        (other, "answer".into())
    );
    h.feed_bytes(udp(other), ng[0].ok(Some(&relayed_sdp(40002))));
    let up = |a: &str| a != silent;
    assert_eq!(
        h.proxy.media_instances(h.now),
        vec![(addr(RTPE), up(RTPE)), (addr(RTPE2), up(RTPE2))]
    );
    // The call's delete goes where its media is.
    let out = h.feed(
        udp(CARRIER),
        &in_dialog_from_carrier("BYE", "f1", "z9hG4bK-bye-f1", 2),
    );
    let bye = sip(&out).into_iter().find(|t| t.to == udp(SERVER)).unwrap();
    let out = h.feed(udp(SERVER), &reply(&bye, 200));
    assert_eq!(ng_requests(&out)[0].to, other);
}

#[test]
fn an_unanchorable_answer_hangs_up_the_callee_and_the_caller_gets_503() {
    let mut h = proxy();
    let fwd = offered_call(&mut h, "a1");
    let out = feed_raw(&mut h, SERVER, callee_says(&fwd, 200, true));
    let ng = ng_requests(&out);
    let out = h.feed_bytes(udp(RTPE), ng[0].error());
    let to_pbx: Vec<_> = out
        .iter()
        .filter(|t| t.to == udp(SERVER))
        .map(method)
        .collect();
    assert_eq!(to_pbx, ["ACK", "BYE"]);
    let up: Vec<_> = sip(&out)
        .into_iter()
        .filter(|t| t.to == udp(CARRIER))
        .collect();
    assert_eq!(status(&up[0]), Some(503));
    assert!(text(&up[0]).starts_with("SIP/2.0 503 Media Relay Unavailable\r\n"));
    // The call failed: its media session goes.
    let ng = ng_requests(&out);
    assert_eq!(ng.len(), 1);
    assert_eq!(ng[0].command(), "delete");
}

#[test]
fn every_ending_deletes_the_session_once() {
    // The callee refuses.
    let mut h = proxy();
    let fwd = offered_call(&mut h, "e1");
    let out = h.feed(udp(SERVER), &reply(&fwd, 486));
    let ng = ng_requests(&out);
    assert_eq!(
        ng.iter().map(|n| n.command()).collect::<Vec<_>>(),
        ["delete"]
    );
    h.feed_bytes(udp(RTPE), ng[0].ok(None));

    // The caller CANCELs.
    let fwd = offered_call(&mut h, "e2");
    h.feed(udp(SERVER), &reply(&fwd, 180));
    let out = h.feed(udp(CARRIER), &cancel("e2", "z9hG4bK-e2"));
    let c = sip(&out)
        .into_iter()
        .find(|t| method(t) == "CANCEL")
        .unwrap();
    h.feed(udp(SERVER), &reply(&c, 200));
    let out = h.feed(udp(SERVER), &reply(&fwd, 487));
    assert_eq!(ng_requests(&out)[0].command(), "delete");

    // The callee hangs up.
    answered_call(&mut h, "e3");
    let out = h.feed(udp(SERVER), &bye_from_server("e3", "z9hG4bK-pb-e3"));
    let bye = sip(&out)
        .into_iter()
        .find(|t| t.to == udp(CARRIER))
        .unwrap();
    let out = h.feed(udp(CARRIER), &reply(&bye, 200));
    assert_eq!(ng_requests(&out)[0].command(), "delete");

    // Nobody hangs up: the maximum call duration does.
    answered_call(&mut h, "e4");
    let out: Vec<Transmit> = h
        .advance_by(13 * 3600 * 1000)
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    let deletes: Vec<_> = ng_requests(&out)
        .into_iter()
        .filter(|n| n.command() == "delete")
        .map(|n| n.get("call-id"))
        .collect();
    assert!(deletes.contains(&"e4".to_string()), "{deletes:?}");
    assert_eq!(h.proxy.stats().media_calls, 0);
}

#[test]
fn shutdown_deletes_the_media_of_calls_still_up() {
    let mut h = proxy();
    answered_call(&mut h, "d1");
    answered_call(&mut h, "d2");
    let deletes = ng_requests(&h.proxy.media_deletes(h.now));
    let mut calls: Vec<_> = deletes.iter().map(|n| n.get("call-id")).collect();
    calls.sort();
    assert_eq!(calls, ["d1", "d2"]);
    assert!(deletes.iter().all(|n| n.command() == "delete"));
}

#[test]
fn a_reinvite_with_sdp_is_offered_and_answered_in_the_dialog() {
    let mut h = proxy();
    let fwd = answered_call(&mut h, "r1");
    // The PBX puts the call on hold: a re-INVITE with SDP toward the carrier.
    let reinvite = format!(
        "INVITE sip:+12125550100@192.0.2.10:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5080;branch=z9hG4bK-re1;rport\r\nMax-Forwards: 70\r\nFrom: <sip:{DID}@10.0.0.1>;tag=callee1\r\nTo: <sip:+12125550100@192.0.2.10>;tag=f-r1\r\nCall-ID: r1\r\nCSeq: 2 INVITE\r\nContact: <sip:pbx@10.0.0.5:5080>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{CALLEE_SDP}",
        CALLEE_SDP.len()
    );
    let _ = fwd;
    let out = feed_raw(&mut h, SERVER, reinvite);
    let ng = ng_requests(&out);
    assert_eq!(ng[0].command(), "offer");
    assert_eq!(ng[0].get("from-tag"), "callee1", "the offerer's tag");
    let out = h.feed_bytes(udp(RTPE), ng[0].ok(Some(&relayed_sdp(30004))));
    let re = sip(&out)
        .into_iter()
        .find(|t| t.to == udp(CARRIER) && method(t) == "INVITE")
        .unwrap();
    assert_eq!(body(&re), relayed_sdp(30004));
    // The carrier answers with SDP: rewritten for the PBX.
    let m = parse(&re);
    let opts = ResponseOptions {
        to_tag: None,
        headers: &[],
        body: Some((b"application/sdp", CALLER_SDP.as_bytes())),
    };
    let ok = build::response(&m, 200, b"OK", &opts).unwrap();
    let out = h.feed_bytes(udp(CARRIER), ok);
    let ng = ng_requests(&out);
    assert_eq!(ng[0].command(), "answer");
    assert_eq!(
        (ng[0].get("from-tag"), ng[0].get("to-tag")),
        ("callee1".into(), "f-r1".into())
    );
    let out = h.feed_bytes(udp(RTPE), ng[0].ok(Some(&relayed_sdp(30006))));
    let down = sip(&out).into_iter().find(|t| t.to == udp(SERVER)).unwrap();
    assert_eq!(status(&down), Some(200));
    assert_eq!(body(&down), relayed_sdp(30006));
}

#[test]
fn a_failover_keeps_one_media_session_and_drops_the_first_callees_dialogue() {
    let mut h = H::with(
        config(&[RTPE], false),
        dir(|r| {
            r.failover = Some(std::sync::Arc::new(trunkstore_config::Failover {
                e164: None,
                sip: Some("sip:backup@10.0.0.8:5060".into()),
            }))
        }),
    );
    let fwd = offered_call(&mut h, "fo1");
    // Early media from the first target: answered at rtpengine.
    let out = feed_raw(&mut h, SERVER, callee_says(&fwd, 183, true));
    let ng = ng_requests(&out);
    assert_eq!(ng[0].command(), "answer");
    h.feed_bytes(udp(RTPE), ng[0].ok(Some(&relayed_sdp(30002))));
    let out = h.feed(udp(SERVER), &reply(&fwd, 503));
    // Failover: no new offer; only the first callee's dialogue is deleted.
    let ng = ng_requests(&out);
    assert_eq!(ng.len(), 1, "{ng:?}");
    assert_eq!(ng[0].command(), "delete");
    assert_eq!(
        (ng[0].get("from-tag"), ng[0].get("to-tag")),
        ("f-fo1".to_string(), "callee1".to_string())
    );
    let backup = sip(&out)
        .into_iter()
        .find(|t| method(t) == "INVITE")
        .expect("failover INVITE");
    assert_eq!(backup.to, udp("10.0.0.8:5060"));
    assert_eq!(body(&backup), relayed_sdp(30000));
}

#[test]
fn ten_thousand_anchored_calls_leave_no_media_state() {
    let mut h = proxy();
    for i in 0..10_000 {
        let call = format!("L{i}");
        answered_call(&mut h, &call);
        let out = h.feed(
            udp(CARRIER),
            &in_dialog_from_carrier("BYE", &call, &format!("z9hG4bK-bye-{call}"), 2),
        );
        let bye = sip(&out).into_iter().find(|t| t.to == udp(SERVER)).unwrap();
        let out = h.feed(udp(SERVER), &reply(&bye, 200));
        let ng = ng_requests(&out);
        h.feed_bytes(udp(RTPE), ng[0].ok(None));
        while h.shard.poll_call_record().is_some() {}
    }
    assert_eq!(h.proxy.metrics().calls_anchored(), 10_000);
    h.assert_drained();
    let s = h.proxy.stats();
    assert_eq!((s.media_requests, s.media_calls), (0, 0));
}

#[test]
fn a_forged_ng_reply_from_elsewhere_changes_nothing() {
    let mut h = proxy();
    let out = h.feed(udp(CARRIER), &invite_sdp("x1"));
    let ng = ng_requests(&out);
    // Same cookie, from the carrier's address: not rtpengine's, so not a reply.
    let out = h.feed_bytes(udp(CARRIER), ng[0].ok(Some(&relayed_sdp(1))));
    assert!(out.iter().all(|t| t.to != udp(SERVER)));
    // A wrong cookie from rtpengine's address: dropped.
    let forged = Bytes::from(format!("nope_1 d6:result2:ok3:sdp{}:{}e", 3, "v=0"));
    let out = h.feed_bytes(udp(RTPE), forged);
    assert!(out.is_empty());
    let out = h.feed_bytes(udp(RTPE), ng[0].ok(Some(&relayed_sdp(30000))));
    assert_eq!(sip(&out)[0].to, udp(SERVER));
}

#[test]
fn an_icmp_error_from_rtpengine_fails_the_offer_at_once() {
    let mut h = proxy();
    let out = h.feed(udp(CARRIER), &invite_sdp("u1"));
    assert_eq!(ng_requests(&out).len(), 1);
    // The edge read an ICMP port unreachable for the datagram sent to rtpengine.
    h.proxy.handle_unreachable(&mut h.shard, h.now, udp(RTPE));
    let out = h.drain();
    let up = sip(&out);
    assert_eq!(status(&up[0]), Some(503), "no wait for the retries");
    assert!(text(&up[0]).starts_with("SIP/2.0 503 Media Relay Unavailable\r\n"));
    assert_eq!(h.proxy.media_instances(h.now), vec![(addr(RTPE), false)]);
    assert_eq!(
        h.proxy
            .metrics()
            .media_requests("offer", NgOutcome::Timeout),
        1
    );
}
