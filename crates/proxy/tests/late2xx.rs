//! A 2xx on a branch the proxy cancelled itself (attempt timer, timer C, failover) is the
//! proxy's to end (behaviour.md §4.5): ACK for every copy, and one BYE through a client
//! transaction (RFC 3261 §17.1.2) along the 2xx's route set (§12.1.2, §12.2.1.1).

mod common;

use std::time::Duration;

use common::*;
use trunkstore_proxy::metrics::LateByeOutcome;
use trunkstore_proxy::{ProxyConfig, Transmit, Transport};
use trunkstore_sip::build::{self, ResponseOptions};
use trunkstore_sip::message::HeaderName;

/// A proxy whose DID route gives up on an unanswered attempt after 5 s (no failover:
/// the caller gets 408).
fn proxy() -> H {
    let mut r = route_to("10.0.0.5", 5080, true, Transport::Udp);
    r.answer_timeout = Some(Duration::from_secs(5));
    H::with(
        ProxyConfig::for_tests("10.0.0.1", 5060),
        directory().with_did(DID, r),
    )
}

/// A call the proxy gave up on 5 s from now: INVITE forwarded, 180, CANCEL (answered 200), 408
/// to the caller (ACKed). Returns the INVITE as forwarded.
fn given_up_call(h: &mut H, call: &str) -> Transmit {
    let out = h.feed(udp(CARRIER), &invite(call, &format!("z9hG4bK-{call}")));
    let fwd = out.iter().find(|t| t.to == udp(SERVER)).unwrap().clone();
    h.feed(udp(SERVER), &reply(&fwd, 180));
    let out = h.advance_by(5_000);
    let cancel = out.iter().find(|(_, t)| method(t) == "CANCEL").unwrap();
    h.feed(udp(SERVER), &reply(&cancel.1, 200));
    let up: Vec<_> = out.iter().filter(|(_, t)| t.to == udp(CARRIER)).collect();
    assert_eq!(status(&up[0].1), Some(408));
    h.feed(
        udp(CARRIER),
        &ack_non2xx(call, &format!("z9hG4bK-{call}"), "x"),
    );
    fwd
}

/// The callee's 2xx to the forwarded INVITE: To tag `tag`, `rr` (entries added
/// downstream) over the Record-Route the INVITE carried, Contact `contact`.
fn late_200(fwd: &Transmit, tag: &str, rr: &[&str], contact: &str) -> String {
    let m = parse(fwd);
    let mut headers: Vec<(&[u8], &[u8])> = rr
        .iter()
        .map(|v| (&b"Record-Route"[..], v.as_bytes()))
        .collect();
    headers.extend(
        m.headers(HeaderName::RecordRoute)
            .map(|v| (&b"Record-Route"[..], v)),
    );
    let contact = format!("<{contact}>");
    headers.push((b"Contact", contact.as_bytes()));
    let opts = ResponseOptions {
        to_tag: Some(tag.as_bytes()),
        headers: &headers,
        body: None,
    };
    let bytes = build::response(&m, 200, b"OK", &opts).unwrap();
    String::from_utf8(bytes.to_vec())
        .unwrap()
        .replace("\r\n", "\n")
}

const HOP: &str = "10.0.0.9:5070";
const HOP_RR: &str = "<sip:10.0.0.9:5070;lr>";
const CONTACT: &str = "sip:callee@10.0.0.5:5080";

fn methods(out: &[Transmit]) -> Vec<String> {
    out.iter().map(method).collect()
}

fn byes(out: &[(u64, Transmit)]) -> Vec<u64> {
    out.iter()
        .filter(|(_, t)| method(t) == "BYE")
        .map(|(at, _)| *at)
        .collect()
}

fn late_byes(h: &H, outcome: LateByeOutcome) -> u64 {
    h.proxy.metrics().late_byes(outcome)
}

#[test]
fn late_2xx_is_acked_and_byed_along_its_record_route() {
    let mut h = proxy();
    let fwd = given_up_call(&mut h, "l1");
    let out = h.feed(udp(SERVER), &late_200(&fwd, "callee1", &[HOP_RR], CONTACT));
    assert_eq!(methods(&out), ["ACK", "BYE"], "and nothing to the caller");
    assert!(
        out.iter().all(|t| t.to == udp(HOP)),
        "first route's address"
    );
    let invite = parse(&fwd);
    for (t, cseq) in out.iter().zip(["1 ACK", "2 BYE"]) {
        let m = parse(t);
        assert_eq!(m.request_uri(), CONTACT.as_bytes(), "{}", text(t));
        assert_eq!(header(t, HeaderName::Route).as_deref(), Some(HOP_RR));
        assert_eq!(m.headers(HeaderName::Route).count(), 1, "not our own entry");
        assert_eq!(m.header(HeaderName::From), invite.header(HeaderName::From));
        let to = format!("{};tag=callee1", header(&fwd, HeaderName::To).unwrap());
        assert_eq!(header(t, HeaderName::To), Some(to), "the 2xx's To");
        assert_eq!(
            m.header(HeaderName::CallId),
            invite.header(HeaderName::CallId)
        );
        assert_eq!(header(t, HeaderName::CSeq).as_deref(), Some(cseq));
        let v = vias(t);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].starts_with("SIP/2.0/UDP 10.0.0.1:5060;rport;branch=z9hG4bK"));
    }
    assert_ne!(vias(&out[0]), vias(&out[1]), "ACK and BYE: own branches");
    assert_ne!(vias(&out[1]), vias(&fwd)[..1], "not the INVITE's branch");
    // The BYE's 200 is matched by its branch and ends it: no retransmission.
    let out = h.feed(udp(HOP), &reply(&out[1], 200));
    assert!(
        out.is_empty(),
        "{:?}",
        out.iter().map(text).collect::<Vec<_>>()
    );
    assert!(byes(&h.advance_by(40_000)).is_empty());
    assert_eq!(late_byes(&h, LateByeOutcome::Answered), 1);
    assert_eq!(h.proxy.metrics().late_2xx(), 1);
    h.assert_drained();
}

#[test]
fn unanswered_bye_is_retransmitted_on_timer_e_and_given_up_at_timer_f() {
    let mut h = proxy();
    let fwd = given_up_call(&mut h, "l2");
    h.advance_to(6_000);
    let out = h.feed(udp(SERVER), &late_200(&fwd, "callee1", &[HOP_RR], CONTACT));
    assert_eq!(methods(&out), ["ACK", "BYE"]);
    let out = h.advance_to(6_000 + 40_000);
    let at: Vec<u64> = byes(&out).iter().map(|ms| ms - 6_000).collect();
    assert_eq!(
        at,
        [500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500],
        "E doubling from T1 to T2, until F (64·T1)"
    );
    assert!(out.iter().all(|(_, t)| t.to == udp(HOP)));
    assert_eq!(late_byes(&h, LateByeOutcome::Timeout), 1);
    assert_eq!(late_byes(&h, LateByeOutcome::Answered), 0);
    // Its answer after timer F goes nowhere (our Via was its only one).
    let bye = out.iter().find(|(_, t)| method(t) == "BYE").unwrap();
    assert!(h.feed(udp(HOP), &reply(&bye.1, 200)).is_empty());
    h.assert_drained();
}

#[test]
fn each_copy_of_the_2xx_is_acked_and_only_one_bye_is_sent() {
    let mut h = proxy();
    let fwd = given_up_call(&mut h, "l3");
    let ok = late_200(&fwd, "callee1", &[HOP_RR], CONTACT);
    let first = h.feed(udp(SERVER), &ok);
    assert_eq!(methods(&first), ["ACK", "BYE"]);
    // The ACK was lost: the callee sends its 2xx again; the BYE is still unanswered.
    h.advance_by(200);
    let again = h.feed(udp(SERVER), &ok);
    assert_eq!(methods(&again), ["ACK"]);
    assert_eq!(again[0].data, first[0].data, "the same ACK");
    assert_eq!(again[0].to, udp(HOP));
    let out = h.advance_by(400);
    assert_eq!(byes(&out).len(), 1, "the one BYE's own retransmission");
    assert_eq!(out[0].1.data, first[1].data);
    h.feed(udp(HOP), &reply(&first[1], 200));
    // After the BYE's answer, another copy is still ACKed.
    assert_eq!(methods(&h.feed(udp(SERVER), &ok)), ["ACK"]);
    assert_eq!(h.proxy.metrics().late_2xx(), 1);
    assert_eq!(late_byes(&h, LateByeOutcome::Answered), 1);
    h.assert_drained();
}

#[test]
fn a_200_to_the_bye_stops_its_retransmissions() {
    let mut h = proxy();
    let fwd = given_up_call(&mut h, "l4");
    let out = h.feed(udp(SERVER), &late_200(&fwd, "callee1", &[HOP_RR], CONTACT));
    let bye = out[1].clone();
    let out = h.advance_by(1_600);
    assert_eq!(byes(&out).len(), 2, "at 0.5 and 1.5 s");
    // A 100 first (the BYE moves to Proceeding: E at T2), then the 200.
    assert!(h.feed(udp(HOP), &reply(&bye, 100)).is_empty());
    assert!(h.feed(udp(HOP), &reply(&bye, 200)).is_empty());
    assert!(byes(&h.advance_by(60_000)).is_empty());
    // A copy of the BYE's 200 (timer K absorbs it; after K nothing matches).
    assert!(h.feed(udp(HOP), &reply(&bye, 200)).is_empty());
    assert_eq!(late_byes(&h, LateByeOutcome::Answered), 1);
    h.assert_drained();
}

#[test]
fn a_refused_bye_is_counted_as_refused() {
    let mut h = proxy();
    let fwd = given_up_call(&mut h, "l5");
    let out = h.feed(udp(SERVER), &late_200(&fwd, "callee1", &[], CONTACT));
    // No Record-Route added downstream: the Contact is the next hop, no Route.
    assert!(out.iter().all(|t| t.to == udp(SERVER)));
    assert_eq!(header(&out[1], HeaderName::Route), None);
    h.feed(udp(SERVER), &reply(&out[1], 481));
    assert_eq!(late_byes(&h, LateByeOutcome::Refused), 1);
    h.assert_drained();
}

#[test]
fn a_next_hop_that_is_no_ip_literal_falls_back_to_the_branch_peer() {
    // The core does no DNS: a hostname route or Contact is never looked up; the ACK and
    // BYE go where the INVITE went.
    let mut h = proxy();
    let fwd = given_up_call(&mut h, "l6");
    let rr = "<sip:evil.example.com;lr>";
    let out = h.feed(udp(SERVER), &late_200(&fwd, "callee1", &[rr], CONTACT));
    assert_eq!(methods(&out), ["ACK", "BYE"]);
    assert!(out.iter().all(|t| t.to == udp(SERVER)));
    assert_eq!(header(&out[1], HeaderName::Route).as_deref(), Some(rr));
    let fwd2 = given_up_call(&mut h, "l7");
    let out = h.feed(
        udp(SERVER),
        &late_200(&fwd2, "callee1", &[], "sip:callee@pbx.example.com"),
    );
    assert!(out.iter().all(|t| t.to == udp(SERVER)));
    h.feed(udp(SERVER), &reply(&out[1], 200));
    h.assert_drained();
}

#[test]
fn each_dialog_of_a_forked_late_2xx_is_hung_up_and_a_spray_is_bounded() {
    let mut h = proxy();
    let fwd = given_up_call(&mut h, "l8");
    let mut sent = 0;
    for i in 0..20 {
        let out = h.feed(udp(SERVER), &late_200(&fwd, &format!("t{i}"), &[], CONTACT));
        sent += byes(&out.into_iter().map(|t| (0, t)).collect::<Vec<_>>()).len();
    }
    assert_eq!(sent, 4, "one BYE per dialog, up to 4 per branch");
    assert_eq!(h.proxy.metrics().late_2xx(), 4);
    h.assert_drained();
    assert_eq!(late_byes(&h, LateByeOutcome::Timeout), 4);
}

#[test]
fn late_2xx_after_the_callers_cancel_still_goes_to_the_caller() {
    // Not ours to end: the caller cancelled, the 2xx that crossed its CANCEL is theirs
    // (§16.7 step 5 / 9.1).
    let mut h = H::new();
    let out = h.feed(udp(CARRIER), &invite("l9", "z9hG4bK-l9"));
    let fwd = out[1].clone();
    h.feed(udp(SERVER), &reply(&fwd, 180));
    h.feed(udp(CARRIER), &cancel("l9", "z9hG4bK-l9"));
    let out = h.feed(udp(SERVER), &late_200(&fwd, "callee1", &[HOP_RR], CONTACT));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].to, udp(CARRIER));
    assert_eq!(h.proxy.metrics().late_2xx(), 0);
}
