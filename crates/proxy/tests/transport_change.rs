//! RFC 5658 (issue 17, item 3): a request forwarded to a hop on another transport or
//! address family than the one it came from is record-routed twice, each entry naming
//! us on one side; the two Routes that come back in the dialog are both ours to pop, and
//! the trust rules stay (in-dialog requests go to the other leg whatever Route says, a
//! foreign Route still refuses an out-of-dialog request).

mod common;

use common::*;
use trunkstore_proxy::metrics::Refusal;
use trunkstore_proxy::{
    Advertise, Listener, Peer, ProxyConfig, StaticDirectory, Transmit, Transport,
};
use trunkstore_sip::message::HeaderName;

const UDP_RR: &str = "<sip:10.0.0.1:5060;lr>";
const TCP_RR: &str = "<sip:10.0.0.1:5060;transport=tcp;lr>";
const V6_US: &str = "[2001:db8::1]:5060";
const V6_RR: &str = "<sip:[2001:db8::1]:5060;lr>";
const V6_SERVER: &str = "[2001:db8::5]:5080";

/// Every Record-Route value, top first.
fn record_routes(t: &Transmit) -> Vec<String> {
    header_values(t, HeaderName::RecordRoute)
}

/// The carrier's DID goes to a PBX over `transport` at `host:port`.
fn harness_to(host: &str, port: u16, transport: Transport, cfg: ProxyConfig) -> H {
    let dir = StaticDirectory::new()
        .with_carrier(addr(CARRIER), "carrier1")
        .with_did(DID, route_to(host, port, true, transport));
    H::with(cfg, dir)
}

/// The carrier's in-dialog request with `routes` as its Route values.
fn from_carrier(method: &str, call: &str, branch: &str, cseq: u32, routes: &str) -> String {
    in_dialog_from_carrier(method, call, branch, cseq)
        .replace("Route: <sip:10.0.0.1:5060;lr>", &format!("Route: {routes}"))
}

/// The PBX's BYE toward the carrier, sent from `via` with `routes`.
fn bye_from_pbx(call: &str, via: &str, routes: &str) -> String {
    bye_from_server(call, "z9hG4bK-pbx-bye")
        .replace("SIP/2.0/UDP 10.0.0.5:5080", via)
        .replace("Route: <sip:10.0.0.1:5060;lr>", &format!("Route: {routes}"))
}

/// A carrier call over UDP to a PBX over TCP: two Record-Routes in the INVITE (the TCP
/// side on top, nearest the callee), both back to the carrier in the 2xx; the carrier's
/// ACK and the PBX's BYE each carry both as Routes, both are popped, and each reaches
/// the other leg.
#[test]
fn udp_carrier_to_tcp_pbx_is_record_routed_twice_and_both_routes_pop() {
    let mut h = harness_to(
        "10.0.0.5",
        5080,
        Transport::Tcp,
        ProxyConfig::for_tests("10.0.0.1", 5060),
    );
    let out = h.feed(udp(CARRIER), &invite("c1", "z9hG4bK-a1"));
    assert_eq!(out.len(), 2);
    let fwd = out[1].clone();
    assert_eq!(fwd.to, tcp(SERVER));
    assert_eq!(record_routes(&fwd), [TCP_RR, UDP_RR]);
    assert!(vias(&fwd)[0].starts_with("SIP/2.0/TCP 10.0.0.1:5060;"));
    // The 2xx carries both entries back to the carrier, untouched.
    let ok = answer(&fwd, 200, "sip:4155551234@10.0.0.5:5080;transport=tcp");
    let out = h.feed(tcp(SERVER), &ok);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].to, udp(CARRIER));
    assert_eq!(record_routes(&out[0]), [TCP_RR, UDP_RR]);
    // The carrier reverses the set: its first Route is our UDP side.
    let both = format!("{UDP_RR}, {TCP_RR}");
    let out = h.feed(
        udp(CARRIER),
        &from_carrier("ACK", "c1", "z9hG4bK-ack1", 1, &both),
    );
    assert_eq!(out.len(), 1);
    assert_eq!(method(&out[0]), "ACK");
    assert_eq!(out[0].to, tcp(SERVER));
    assert_eq!(
        header(&out[0], HeaderName::Route),
        None,
        "both of ours popped"
    );
    // The PBX sends in the Record-Route's order, on two lines this time.
    let routes = format!("{TCP_RR}\nRoute: {UDP_RR}");
    let bye = bye_from_pbx("c1", "SIP/2.0/TCP 10.0.0.5:5080", &routes);
    let out = h.feed(tcp(SERVER), &bye);
    assert_eq!(out.len(), 1);
    assert_eq!(method(&out[0]), "BYE");
    assert_eq!(out[0].to, udp(CARRIER));
    assert_eq!(
        header(&out[0], HeaderName::Route),
        None,
        "both of ours popped"
    );
    assert!(vias(&out[0])[0].starts_with("SIP/2.0/UDP 10.0.0.1:5060;"));
    let out = h.feed(udp(CARRIER), &reply(&out[0], 200));
    assert_eq!(status(&out[0]), Some(200));
    assert_eq!(out[0].to, tcp(SERVER));
    assert_eq!(h.proxy.stats().calls, 0);
}

/// The carrier hangs up instead: its BYE with both Routes reaches the TCP PBX with none.
#[test]
fn the_carriers_bye_with_both_routes_reaches_the_tcp_pbx() {
    let mut h = harness_to(
        "10.0.0.5",
        5080,
        Transport::Tcp,
        ProxyConfig::for_tests("10.0.0.1", 5060),
    );
    let out = h.feed(udp(CARRIER), &invite("c2", "z9hG4bK-a2"));
    let fwd = out[1].clone();
    h.feed(
        tcp(SERVER),
        &answer(&fwd, 200, "sip:4155551234@10.0.0.5:5080;transport=tcp"),
    );
    let both = format!("{UDP_RR},{TCP_RR}");
    h.feed(
        udp(CARRIER),
        &from_carrier("ACK", "c2", "z9hG4bK-ack2", 1, &both),
    );
    let out = h.feed(
        udp(CARRIER),
        &from_carrier("BYE", "c2", "z9hG4bK-bye2", 2, &both),
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].to, tcp(SERVER));
    assert_eq!(method(&out[0]), "BYE");
    assert_eq!(header(&out[0], HeaderName::Route), None);
    let out = h.feed(tcp(SERVER), &reply(&out[0], 200));
    assert_eq!(out[0].to, udp(CARRIER));
    assert_eq!(h.proxy.stats().calls, 0);
}

/// Same transport and family on both sides: one entry, as always.
#[test]
fn same_transport_gets_one_record_route() {
    let mut h = H::new();
    let out = h.feed(udp(CARRIER), &invite("c3", "z9hG4bK-a3"));
    assert_eq!(out[1].to, udp(SERVER));
    assert_eq!(record_routes(&out[1]), [UDP_RR]);
}

/// IPv4 and IPv6 listeners together: a carrier over IPv4 to a PBX over IPv6 gets two
/// entries, the IPv6 listener's advertised address (in brackets) on top; the INVITE
/// leaves from the IPv6 listener with its Via; the PBX's BYE with both Routes reaches
/// the carrier over IPv4.
#[test]
fn ipv4_carrier_to_ipv6_pbx_names_each_family() {
    let mut cfg = ProxyConfig::for_tests("10.0.0.1", 5060);
    let listener = |local: &str, host: &str| Listener {
        transport: Transport::Udp,
        local: addr(local),
        advertise: Advertise {
            host: host.into(),
            port: 5060,
        },
    };
    cfg.listeners = vec![listener(US, "10.0.0.1"), listener(V6_US, "[2001:db8::1]")];
    let mut h = harness_to("2001:db8::5", 5080, Transport::Udp, cfg);
    let out = h.feed(udp(CARRIER), &invite("c4", "z9hG4bK-a4"));
    let fwd = out[1].clone();
    assert_eq!(fwd.to, udp(V6_SERVER));
    assert_eq!(fwd.from, Some(addr(V6_US)));
    assert_eq!(record_routes(&fwd), [V6_RR, UDP_RR]);
    assert!(vias(&fwd)[0].starts_with("SIP/2.0/UDP [2001:db8::1]:5060;"));
    let v6 = udp(V6_SERVER);
    let ok = answer(&fwd, 200, "sip:4155551234@[2001:db8::5]:5080");
    let out = feed_at(&mut h, v6, V6_US, &ok);
    assert_eq!(out[0].to, udp(CARRIER));
    assert_eq!(out[0].from, Some(addr(US)));
    assert_eq!(record_routes(&out[0]), [V6_RR, UDP_RR]);
    let routes = format!("{V6_RR}, {UDP_RR}");
    let bye = bye_from_pbx("c4", "SIP/2.0/UDP [2001:db8::5]:5080", &routes);
    let out = feed_at(&mut h, v6, V6_US, &bye);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].to, udp(CARRIER));
    assert_eq!(out[0].from, Some(addr(US)));
    assert_eq!(header(&out[0], HeaderName::Route), None);
    assert!(vias(&out[0])[0].starts_with("SIP/2.0/UDP 10.0.0.1:5060;"));
}

/// A message from `from` arriving at our listener `local`.
fn feed_at(h: &mut H, from: Peer, local: &str, text: &str) -> Vec<Transmit> {
    let data = bytes::Bytes::from(text.replace('\n', "\r\n"));
    h.proxy
        .handle_datagram(&mut h.shard, h.now, from, addr(local), data);
    h.drain()
}

/// Hostile: our two entries do not make a foreign third one acceptable. An
/// out-of-dialog request is still refused (403 Preload Route denied) and nothing goes
/// toward the foreign Route; an in-dialog one still goes to the dialog's other leg.
#[test]
fn two_of_our_routes_do_not_carry_a_foreign_one() {
    const ELSEWHERE: &str = "198.51.100.7:5060";
    let mut h = harness_to(
        "10.0.0.5",
        5080,
        Transport::Tcp,
        ProxyConfig::for_tests("10.0.0.1", 5060),
    );
    let routes = format!("{UDP_RR}, {TCP_RR}, <sip:{ELSEWHERE};lr>");
    let inv = invite("h1", "z9hG4bK-h1").replace(
        "Max-Forwards: 70\n",
        &format!("Route: {routes}\nMax-Forwards: 70\n"),
    );
    let out = h.feed(udp(CARRIER), &inv);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].to, udp(CARRIER));
    assert_eq!(status(&out[0]), Some(403));
    assert_eq!(parse(&out[0]).reason(), b"Preload Route denied");
    assert_eq!(h.proxy.metrics().refusals(Refusal::PreloadedRoute), 1);
    // In a dialog: to the PBX as recorded, the foreign Route passed on, never followed.
    let out = h.feed(udp(CARRIER), &invite("h2", "z9hG4bK-h2"));
    let fwd = out[1].clone();
    h.feed(
        tcp(SERVER),
        &answer(&fwd, 200, "sip:4155551234@10.0.0.5:5080;transport=tcp"),
    );
    let out = h.feed(
        udp(CARRIER),
        &from_carrier("BYE", "h2", "z9hG4bK-hb2", 2, &routes),
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].to, tcp(SERVER));
    assert_eq!(
        header_values(&out[0], HeaderName::Route),
        [format!("<sip:{ELSEWHERE};lr>")]
    );
}

/// Two Routes naming us on an out-of-dialog request (a UA that kept our double entry
/// for a new request) are both popped; the request is routed by our own decision.
#[test]
fn two_of_our_routes_on_a_new_request_are_both_popped() {
    let mut h = harness_to(
        "10.0.0.5",
        5080,
        Transport::Tcp,
        ProxyConfig::for_tests("10.0.0.1", 5060),
    );
    let inv = invite("n1", "z9hG4bK-n1").replace(
        "Max-Forwards: 70\n",
        &format!("Route: {UDP_RR}, {TCP_RR}\nMax-Forwards: 70\n"),
    );
    let out = h.feed(udp(CARRIER), &inv);
    assert_eq!(out.len(), 2);
    assert_eq!(out[1].to, tcp(SERVER));
    assert_eq!(header(&out[1], HeaderName::Route), None);
    assert_eq!(record_routes(&out[1]), [TCP_RR, UDP_RR]);
}

/// The settings' listeners become the core's sides: each with its own advertised
/// address, an IPv6 listener advertising itself when `advertise` is IPv4.
#[test]
fn listeners_come_from_the_settings() {
    let v = serde_json::json!({
        "listen": {
            "udp": ["127.0.0.1:5060", "[::1]:5060"],
            "tcp": [{"address": "127.0.0.1:5060", "advertise": "sip.example.com:5070"}]
        }
    });
    let s = trunkstore_config::Settings::from_value(&v, std::path::Path::new("/")).unwrap();
    let cfg = ProxyConfig::from_settings(&s);
    let got: Vec<(Transport, String, String)> = cfg
        .listeners
        .iter()
        .map(|l| {
            let adv = format!("{}:{}", l.advertise.host, l.advertise.port);
            (l.transport, l.local.to_string(), adv)
        })
        .collect();
    let want = [
        (Transport::Udp, "127.0.0.1:5060", "127.0.0.1:5060"),
        (Transport::Udp, "[::1]:5060", "[::1]:5060"),
        (Transport::Tcp, "127.0.0.1:5060", "sip.example.com:5070"),
    ];
    let want: Vec<(Transport, String, String)> = want
        .iter()
        .map(|(t, l, a)| (*t, l.to_string(), a.to_string()))
        .collect();
    assert_eq!(got, want);
}
