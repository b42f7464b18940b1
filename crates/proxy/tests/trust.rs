//! Trust after admission (issue 13): no call, BYE or packet the proxy did not
//! authorise. Each test plays a hostile party against a call on the virtual clock and
//! checks what the legs would see on the wire, the dialog table and the trunk count.

mod common;

use common::*;
use proptest::prelude::*;
use trunkstore_proxy::metrics::Refusal;
use trunkstore_proxy::{ProxyConfig, Transmit};
use trunkstore_sip::message::HeaderName;

/// Knows the Call-ID and both tags of the call, sends from its own address.
const THIRD: &str = "203.0.113.66:5060";
/// Where a hostile Route or Request-URI points (a "carrier gateway" of someone else).
const ELSEWHERE: &str = "198.51.100.7:5060";

fn harness() -> H {
    H::with(
        ProxyConfig::for_tests("10.0.0.1", 5060),
        directory().with_trunks("acc1", 5),
    )
}

fn trunks(h: &H) -> u32 {
    h.proxy
        .trunks_in_use()
        .into_iter()
        .find(|(a, _)| a == "acc1")
        .map_or(0, |(_, n)| n)
}

/// A carrier call to the server answered: the INVITE as forwarded.
fn answered_call(h: &mut H, call: &str) -> Transmit {
    let out = h.feed(udp(CARRIER), &invite(call, &format!("z9hG4bK-i-{call}")));
    let fwd = out[1].clone();
    h.feed(udp(SERVER), &reply(&fwd, 180));
    let ok = h.feed(
        udp(SERVER),
        &answer(&fwd, 200, "sip:4155551234@10.0.0.5:5080"),
    );
    assert_eq!(status(&ok[0]), Some(200));
    h.feed(
        udp(CARRIER),
        &in_dialog_from_carrier("ACK", call, &format!("z9hG4bK-ack-{call}"), 1),
    );
    fwd
}

fn sent_to(out: &[Transmit], peer: &str) -> Vec<Transmit> {
    out.iter().filter(|t| t.to == udp(peer)).cloned().collect()
}

/// Item 1: a Route that does not name us never steers an out-of-dialog request, from a
/// carrier or an IP-auth server alike: 403, nothing leaves toward the Route.
#[test]
fn preloaded_route_is_refused_and_never_followed() {
    let mut h = harness();
    for (n, route) in [
        format!("<sip:{ELSEWHERE};lr>"),
        format!("<sip:10.0.0.1:5060;lr>, <sip:{ELSEWHERE};lr>"),
        "<sip:gw.example.net;lr>".to_string(),
    ]
    .iter()
    .enumerate()
    {
        let inv = invite(&format!("r{n}"), &format!("z9hG4bK-r{n}")).replace(
            "Max-Forwards: 70\n",
            &format!("Route: {route}\nMax-Forwards: 70\n"),
        );
        let out = h.feed(udp(CARRIER), &inv);
        assert_eq!(out.len(), 1, "{route}");
        assert_eq!(out[0].to, udp(CARRIER));
        let m = parse(&out[0]);
        assert_eq!(m.status(), Some(403));
        assert_eq!(m.reason(), b"Preload Route denied");
        // The ACK for our 403 repeats the Route (§17.1.1.3): absorbed, not followed.
        let tag = to_tag_of(&out[0]);
        let ack = ack_non2xx(&format!("r{n}"), &format!("z9hG4bK-r{n}"), &tag).replace(
            "Max-Forwards: 70\n",
            &format!("Route: {route}\nMax-Forwards: 70\n"),
        );
        assert!(h.feed(udp(CARRIER), &ack).is_empty(), "{route}");
    }
    assert_eq!(h.proxy.metrics().refusals(Refusal::PreloadedRoute), 3);
    assert_eq!(trunks(&h), 0);
    h.assert_drained();
}

/// The To tag of a response the proxy sent.
fn to_tag_of(t: &Transmit) -> String {
    let to = header(t, HeaderName::To).unwrap();
    to.split("tag=").nth(1).unwrap().to_string()
}

/// Item 2: a BYE with the live Call-ID and both tags, from a third address, changes
/// nothing and reaches no one; the real BYE later ends the call and frees the trunk.
#[test]
fn forged_bye_leaves_the_call_up_and_the_real_bye_ends_it() {
    let mut h = harness();
    answered_call(&mut h, "c1");
    assert_eq!((h.proxy.stats().calls, trunks(&h)), (1, 1));
    // From the third party, in both orientations of the tags.
    for (n, bye) in [
        in_dialog_from_carrier("BYE", "c1", "z9hG4bK-f1", 2),
        bye_from_server("c1", "z9hG4bK-f2"),
    ]
    .iter()
    .enumerate()
    {
        let out = h.feed(udp(THIRD), bye);
        assert_eq!(out.len(), 1, "forgery {n}");
        assert_eq!((out[0].to, status(&out[0])), (udp(THIRD), Some(481)));
    }
    // From the right legs but with a tag that is not the dialog's.
    let wrong = in_dialog_from_carrier("BYE", "c1", "z9hG4bK-f3", 2).replace("callee1", "other");
    assert_eq!(status(&h.feed(udp(CARRIER), &wrong)[0]), Some(481));
    let wrong = bye_from_server("c1", "z9hG4bK-f4").replace("tag=f-c1", "tag=f-c2");
    assert_eq!(status(&h.feed(udp(SERVER), &wrong)[0]), Some(481));
    // The carrier's BYE towards the callee sent by the callee's address is no good
    // either: the tags say the caller sent it.
    let swapped = in_dialog_from_carrier("BYE", "c1", "z9hG4bK-f5", 2);
    assert_eq!(status(&h.feed(udp(SERVER), &swapped)[0]), Some(481));
    assert_eq!((h.proxy.stats().calls, trunks(&h)), (1, 1));
    // The real BYE: forwarded to the callee; the call ends when the callee answers.
    let out = h.feed(
        udp(CARRIER),
        &in_dialog_from_carrier("BYE", "c1", "z9hG4bK-b1", 2),
    );
    let bye = sent_to(&out, SERVER);
    assert_eq!(bye.len(), 1);
    assert_eq!((h.proxy.stats().calls, trunks(&h)), (1, 1));
    let out = h.feed(udp(SERVER), &reply(&bye[0], 200));
    assert_eq!(sent_to(&out, CARRIER).len(), 1);
    assert_eq!((h.proxy.stats().calls, trunks(&h)), (0, 0));
    h.assert_drained();
}

/// Item 2: an in-dialog request goes to the other leg as recorded, whatever its
/// Request-URI and Routes say; the same request from a third party goes nowhere.
#[test]
fn in_dialog_requests_go_to_the_other_leg_never_where_headers_say() {
    let mut h = harness();
    answered_call(&mut h, "c1");
    let info = in_dialog_from_carrier("INFO", "c1", "z9hG4bK-n1", 3)
        .replace(
            "INFO sip:4155551234@10.0.0.5:5080",
            &format!("INFO sip:4155551234@{ELSEWHERE}"),
        )
        .replace(
            "Route: <sip:10.0.0.1:5060;lr>",
            &format!("Route: <sip:10.0.0.1:5060;lr>, <sip:{ELSEWHERE};lr>"),
        );
    let out = h.feed(udp(CARRIER), &info);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].to, udp(SERVER));
    assert!(sent_to(&out, ELSEWHERE).is_empty());
    let out = h.feed(udp(THIRD), &info.replace("z9hG4bK-n1", "z9hG4bK-n2"));
    assert_eq!((out.len(), status(&out[0])), (1, Some(481)));
    // A forged ACK is dropped silently.
    let ack = in_dialog_from_carrier("ACK", "c1", "z9hG4bK-n3", 1);
    assert!(h.feed(udp(THIRD), &ack).is_empty());
}

/// Item 3: the early dialog (a provisional with a To tag) takes PRACK and UPDATE from
/// both legs; a third party's are refused; the INVITE's failure ends the early dialog.
#[test]
fn early_dialog_takes_prack_and_update_from_both_legs() {
    let mut h = harness();
    let out = h.feed(udp(CARRIER), &invite("e1", "z9hG4bK-e1"));
    let fwd = out[1].clone();
    let ringing = answer(&fwd, 183, "sip:4155551234@10.0.0.5:5080")
        .replace("SIP/2.0 183 Whatever", "SIP/2.0 183 Session Progress")
        .replace(
            "Content-Length: 0",
            "Require: 100rel\nRSeq: 1\nContent-Length: 0",
        );
    let out = h.feed(udp(SERVER), &ringing);
    assert_eq!(status(&out[0]), Some(183));
    let prack = in_dialog_from_carrier("PRACK", "e1", "z9hG4bK-p1", 2)
        .replace("Content-Length: 0", "RAck: 1 1 INVITE\nContent-Length: 0");
    let out = h.feed(udp(CARRIER), &prack);
    assert_eq!((out.len(), out[0].to), (1, udp(SERVER)));
    assert_eq!(method(&out[0]), "PRACK");
    let out = h.feed(udp(SERVER), &reply(&out[0], 200));
    assert_eq!((out.len(), out[0].to), (1, udp(CARRIER)));
    let update = bye_from_server("e1", "z9hG4bK-u1").replace("BYE", "UPDATE");
    let out = h.feed(udp(SERVER), &update);
    assert_eq!((out.len(), out[0].to), (1, udp(CARRIER)));
    assert_eq!(method(&out[0]), "UPDATE");
    let out = h.feed(udp(THIRD), &prack.replace("z9hG4bK-p1", "z9hG4bK-p2"));
    assert_eq!((out[0].to, status(&out[0])), (udp(THIRD), Some(481)));
    // The call fails: the early dialog goes with it, and so does the trunk.
    h.feed(udp(SERVER), &reply(&fwd, 486));
    assert_eq!((h.proxy.stats().calls, trunks(&h)), (0, 0));
    let out = h.feed(udp(CARRIER), &prack.replace("z9hG4bK-p1", "z9hG4bK-p3"));
    assert_eq!(status(&out[0]), Some(481));
}

/// Item 5: `max_calls` calls in progress: the next INVITE is refused with 503 at once
/// (never run untracked), counted; trunk usage equals the live calls.
#[test]
fn calls_past_max_calls_get_503_and_trunks_equal_live_calls() {
    let mut cfg = ProxyConfig::for_tests("10.0.0.1", 5060);
    cfg.max_calls = 2;
    let mut h = H::with(cfg, directory().with_trunks("acc1", 10));
    answered_call(&mut h, "m1");
    h.feed(udp(CARRIER), &invite("m2", "z9hG4bK-m2"));
    for n in 3..6 {
        let out = h.feed(
            udp(CARRIER),
            &invite(&format!("m{n}"), &format!("z9hG4bK-m{n}")),
        );
        assert_eq!(out.len(), 1);
        let m = parse(&out[0]);
        assert_eq!(
            (m.status(), m.reason()),
            (Some(503), &b"Call Limit Reached"[..])
        );
    }
    assert_eq!(h.proxy.metrics().refusals(Refusal::MaxCalls), 3);
    assert_eq!(trunks(&h), 2);
    // The first call ends: room for one more.
    let out = h.feed(
        udp(CARRIER),
        &in_dialog_from_carrier("BYE", "m1", "z9hG4bK-mb", 2),
    );
    h.feed(udp(SERVER), &reply(&out[0], 200));
    let out = h.feed(udp(CARRIER), &invite("m6", "z9hG4bK-m6"));
    assert_eq!(
        (status(&out[0]), method(&out[1])),
        (Some(100), "INVITE".into())
    );
    assert_eq!(trunks(&h), 2);
}

/// Item 5: a BYE of a live dialog is served past `max_transactions` (refusing it would
/// hold the trunk for hours); a new call is not.
#[test]
fn bye_of_a_live_call_is_served_past_the_transaction_cap() {
    let mut cfg = ProxyConfig::for_tests("10.0.0.1", 5060);
    cfg.max_transactions = 1;
    let mut h = H::with(cfg, directory().with_trunks("acc1", 10));
    answered_call(&mut h, "t1");
    assert_eq!(h.proxy.stats().server_transactions, 1);
    let out = h.feed(udp(CARRIER), &invite("t2", "z9hG4bK-t2"));
    assert_eq!(status(&out[0]), Some(503));
    let out = h.feed(
        udp(CARRIER),
        &in_dialog_from_carrier("BYE", "t1", "z9hG4bK-tb", 2),
    );
    assert_eq!(out[0].to, udp(SERVER));
    h.feed(udp(SERVER), &reply(&out[0], 200));
    assert_eq!((h.proxy.stats().calls, trunks(&h)), (0, 0));
}

/// Item 10: a server is outside our trust domain: the identity headers in its responses
/// never reach the carrier, nor does a challenge for credentials.
#[test]
fn server_identity_headers_and_challenges_never_reach_a_carrier() {
    let mut h = harness();
    let out = h.feed(
        udp(CARRIER),
        &invite("i1", "z9hG4bK-i1").replace(
            "Content-Length: 0",
            "P-Asserted-Identity: <sip:+12125550100@192.0.2.10>\nContent-Length: 0",
        ),
    );
    // The carrier's own assertion reaches the server: carriers are trusted.
    assert!(text(&out[1]).contains("P-Asserted-Identity: <sip:+12125550100@192.0.2.10>"));
    let fwd = out[1].clone();
    let spoof = "P-Asserted-Identity: <sip:+18005550199@x>\nP-Preferred-Identity: \
                 <sip:+18005550199@x>\nRemote-Party-ID: <sip:+18005550199@x>;party=calling\n";
    let ringing =
        reply(&fwd, 180).replace("Content-Length: 0", &format!("{spoof}Content-Length: 0"));
    let out = h.feed(udp(SERVER), &ringing);
    assert_eq!(out.len(), 1);
    assert!(!text(&out[0]).contains("18005550199"), "{}", text(&out[0]));
    let challenge = reply(&fwd, 407).replace(
        "Content-Length: 0",
        "Proxy-Authenticate: Digest realm=\"pbx\", nonce=\"n\"\nContent-Length: 0",
    );
    let out = h.feed(udp(SERVER), &challenge);
    let to_carrier = sent_to(&out, CARRIER);
    assert_eq!(status(&to_carrier[0]), Some(407));
    assert!(!text(&to_carrier[0]).contains("Proxy-Authenticate"));
}

/// Item 13: an unparseable request gets 400 when a response can be built (its
/// Content-Length says more than the datagram holds); OPTIONS to the proxy with
/// Max-Forwards 0 is answered by the proxy itself (§16.3 step 3: it may act as UAS).
#[test]
fn unparseable_request_gets_400_and_options_max_forwards_zero_gets_200() {
    let mut h = harness();
    let short = invite("x1", "z9hG4bK-x1").replace(
        "Content-Length: 0",
        "Content-Type: application/sdp\nContent-Length: 500",
    );
    let out = h.feed(udp(CARRIER), &format!("{short}v=0\n"));
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].to, status(&out[0])), (udp(CARRIER), Some(400)));
    assert_eq!(h.proxy.stats().server_transactions, 0);
    let opt = options_to_proxy(0);
    let out = h.feed(udp(CARRIER), &opt);
    assert_eq!((out.len(), status(&out[0])), (1, Some(200)));
    // Toward anything else Max-Forwards 0 is still 483.
    let fwd = opt.replace(
        "OPTIONS sip:10.0.0.1:5060",
        "OPTIONS sip:+14155551234@10.0.0.1:5060",
    );
    assert_eq!(status(&h.feed(udp(CARRIER), &fwd)[0]), Some(483));
}

/// §16.7 step 3: a response left with no Via once ours is removed was meant for the
/// proxy and is not forwarded (with nowhere to go, it would go to the caller anyway).
#[test]
fn a_response_with_only_our_via_is_not_forwarded() {
    let mut h = harness();
    let out = h.feed(udp(CARRIER), &invite("v1", "z9hG4bK-v1"));
    let fwd = out[1].clone();
    let ringing = reply(&fwd, 180);
    let ours_only: String = ringing
        .lines()
        .filter(|l| !l.starts_with("Via: SIP/2.0/UDP 192.0.2.10"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(h.feed(udp(SERVER), &ours_only).is_empty());
    assert_eq!(h.feed(udp(SERVER), &ringing).len(), 1);
    // A final response like that still ends the call: the caller gets the same status,
    // made by the proxy.
    let busy: String = reply(&fwd, 486)
        .lines()
        .filter(|l| !l.starts_with("Via: SIP/2.0/UDP 192.0.2.10"))
        .map(|l| format!("{l}\n"))
        .collect();
    let out = h.feed(udp(SERVER), &busy);
    let to_carrier = sent_to(&out, CARRIER);
    assert_eq!(to_carrier.len(), 1);
    assert_eq!(status(&to_carrier[0]), Some(486));
    assert_eq!(vias(&to_carrier[0]).len(), 1);
    assert_eq!(trunks(&h), 0);
}

/// What a party sends in the property test below.
#[derive(Debug, Clone, Copy)]
enum Forgery {
    /// A request with the call's Call-ID and tags; `as_callee` swaps the tags.
    Request { method: usize, as_callee: bool },
    /// A final response to a request, aimed at a branch of ours it guesses.
    Response { code: u16, cancel: bool },
}

const METHODS: [&str; 7] = ["BYE", "ACK", "INFO", "UPDATE", "PRACK", "INVITE", "CANCEL"];

fn forgery() -> impl Strategy<Value = Forgery> {
    prop_oneof![
        (0..METHODS.len(), any::<bool>())
            .prop_map(|(method, as_callee)| Forgery::Request { method, as_callee }),
        (
            prop::sample::select(vec![200u16, 481, 487, 503]),
            any::<bool>()
        )
            .prop_map(|(code, cancel)| Forgery::Response { code, cancel }),
    ]
}

fn forged(f: Forgery, n: usize, call: &str, guessed_branch: &str) -> String {
    match f {
        Forgery::Request { method, as_callee } => {
            let m = METHODS[method];
            let branch = format!("z9hG4bK-x{n}");
            let base = if as_callee {
                bye_from_server(call, &branch).replace("BYE", m)
            } else {
                in_dialog_from_carrier(m, call, &branch, 10 + n as u32)
            };
            base.replace("10.0.0.5:5080;branch", "203.0.113.66:5060;branch")
                .replace("192.0.2.10:5060;branch", "203.0.113.66:5060;branch")
        }
        Forgery::Response { code, cancel } => {
            let method = if cancel { "CANCEL" } else { "BYE" };
            format!(
                "SIP/2.0 {code} X
Via: SIP/2.0/UDP 10.0.0.1:5060;branch={guessed_branch}
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-v
From: <sip:+12125550100@192.0.2.10>;tag=f-{call}
To: <sip:{DID}@10.0.0.1>;tag=callee1
Call-ID: {call}
CSeq: 2 {method}
Content-Length: 0

"
            )
        }
    }
}

/// One step of the real call, by its two legs.
fn legit_step(h: &mut H, step: usize, state: &mut Vec<Transmit>, callee_hangs_up: bool) {
    let call = "pc";
    match step {
        0 => {
            let out = h.feed(udp(CARRIER), &invite(call, "z9hG4bK-pc"));
            state.push(sent_to(&out, SERVER).remove(0));
        }
        1 => {
            let out = h.feed(udp(SERVER), &reply(&state[0], 180));
            assert_eq!(sent_to(&out, CARRIER).len(), 1);
        }
        2 => {
            let ok = answer(&state[0], 200, "sip:4155551234@10.0.0.5:5080");
            let out = h.feed(udp(SERVER), &ok);
            assert_eq!(sent_to(&out, CARRIER).len(), 1);
        }
        3 => {
            let ack = in_dialog_from_carrier("ACK", call, "z9hG4bK-pack", 1);
            assert_eq!(sent_to(&h.feed(udp(CARRIER), &ack), SERVER).len(), 1);
        }
        4 => {
            let (from, to, bye) = if callee_hangs_up {
                (SERVER, CARRIER, bye_from_server(call, "z9hG4bK-pbye"))
            } else {
                let bye = in_dialog_from_carrier("BYE", call, "z9hG4bK-pbye", 2);
                (CARRIER, SERVER, bye)
            };
            let out = h.feed(udp(from), &bye);
            let fwd = sent_to(&out, to);
            assert_eq!(fwd.len(), 1, "the real BYE reaches the other leg");
            state.push(fwd[0].clone());
        }
        _ => {
            let to = if callee_hangs_up { CARRIER } else { SERVER };
            let back = if callee_hangs_up { SERVER } else { CARRIER };
            let out = h.feed(udp(to), &reply(&state[1], 200));
            assert_eq!(sent_to(&out, back).len(), 1);
        }
    }
}

/// The branch of our Via on a message we sent (what a party on the path could copy).
fn our_branch(t: &Transmit) -> String {
    vias(t)[0].split("branch=").nth(1).unwrap().to_string()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random interleavings of a call's own messages with those of a third party that
    /// knows its Call-ID and tags (and even our branches): the third party's never
    /// change the dialog table or the trunk count, and never make the proxy send
    /// anything to anyone but itself; the call ends with its own BYE, leaving nothing.
    #[test]
    fn third_party_never_changes_dialog_or_trunk_state(
        forgeries in prop::collection::vec((0usize..6, forgery()), 0..24),
        callee_hangs_up in any::<bool>(),
    ) {
        let mut h = harness();
        let mut state = Vec::new();
        let mut plan = forgeries.clone();
        plan.sort_by_key(|(at, _)| *at);
        let mut next = plan.into_iter().peekable();
        for step in 0..6 {
            while let Some((_, f)) = next.next_if(|(at, _)| *at == step) {
                let before = (h.proxy.stats(), trunks(&h));
                let branch = state.last().map(our_branch).unwrap_or_default();
                let n = h.proxy.stats().server_transactions;
                let out = h.feed(udp(THIRD), &forged(f, n, "pc", &branch));
                for t in &out {
                    prop_assert_eq!(t.to, udp(THIRD), "{:?} sent {}", f, text(t));
                }
                let after = (h.proxy.stats(), trunks(&h));
                prop_assert_eq!(before.0.calls, after.0.calls, "{:?}", f);
                prop_assert_eq!(before.1, after.1, "{:?}", f);
            }
            legit_step(&mut h, step, &mut state, callee_hangs_up);
        }
        prop_assert_eq!((h.proxy.stats().calls, trunks(&h)), (0, 0));
        h.assert_drained();
    }
}
