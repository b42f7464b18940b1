//! The hostile suite (issue 13): what a carrier or PBX sees on the wire when someone
//! abuses the proxy, with the real binary. SIPp plays the legs where it can; raw UDP
//! sockets send what SIPp cannot (a third party's forged BYE, stray responses, an
//! unframable body). A socket on 127.0.0.77 stands for any address the attacker would
//! like the proxy to send to: it must never receive anything.
//!
//! Items 4, 6, 8, 9, 11 and 12 of the issue are covered in inbound.rs, outbound.rs,
//! protection.rs, baresip.rs and crates/trunkstore/tests/api.rs.

use std::net::{SocketAddr, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Map};

use crate::config::{dids, Pbx};
use crate::harness::free_port;
use crate::outbound::{digest_args, Out, NUMBER};
use crate::sipp::{Transport, Uac, Uas};
use crate::{metrics_page, Scene, UAS_FINISH};

/// Where an attacker wants the proxy to send things (a Route, a Via, a Request-URI).
const ELSEWHERE: &str = "127.0.0.77";
/// A third party that knows a call's identifiers but is neither of its legs.
const FORGER: &str = "127.0.0.66";
/// A second source address of the carrier (any port), for a second SIPp run while the
/// first holds the carrier's main port.
const CARRIER_HOST: &str = "127.0.0.5";
/// A number the IP-auth PBX dials out to (through the carriers).
const OUT_NUMBER: &str = "+12125550100";
/// An expected message arrives within this on loopback, even on a loaded machine.
const WAIT: Duration = Duration::from_secs(5);
/// What has not come after this never comes: nothing here is retransmitted late (the
/// proxy answers at once, and no test message waits for a timer).
const SILENCE: Duration = Duration::from_millis(1500);

/// A raw UDP endpoint playing one side (or a third party) on loopback.
struct Peer {
    sock: UdpSocket,
}

impl Peer {
    fn bind(ip: &str, port: u16) -> Peer {
        let sock = UdpSocket::bind((ip.parse::<std::net::IpAddr>().unwrap(), port))
            .unwrap_or_else(|e| panic!("bind {ip}:{port}: {e}"));
        Peer { sock }
    }

    fn addr(&self) -> SocketAddr {
        self.sock.local_addr().unwrap()
    }

    fn send(&self, to: SocketAddr, text: &str) {
        self.sock.send_to(text.as_bytes(), to).unwrap();
    }

    /// The first datagram for which `want` holds, within `WAIT`; the others (e.g. a 100
    /// Trying) are skipped and listed in the error.
    fn wait_for(&self, what: &str, want: impl Fn(&str) -> bool) -> Result<String, String> {
        let deadline = Instant::now() + WAIT;
        let mut skipped = Vec::new();
        let mut buf = vec![0u8; 65536];
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            self.sock
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            let Ok(n) = self.sock.recv(&mut buf) else {
                break;
            };
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if want(&text) {
                return Ok(text);
            }
            skipped.push(text);
        }
        Err(format!(
            "{} did not get {what} within {WAIT:?}; got instead:\n{}",
            self.addr(),
            skipped.join("\n----\n")
        ))
    }

    /// Err with what arrived if anything arrives within `SILENCE`.
    fn hears_nothing(&self, who: &str) -> Result<(), String> {
        self.sock.set_read_timeout(Some(SILENCE)).unwrap();
        let mut buf = vec![0u8; 65536];
        match self.sock.recv(&mut buf) {
            Ok(n) => Err(format!(
                "{who} ({}) received:\n{}",
                self.addr(),
                String::from_utf8_lossy(&buf[..n])
            )),
            Err(_) => Ok(()),
        }
    }
}

/// Header values named `name` (full name or compact form), in order.
fn headers<'a>(msg: &'a str, name: &str) -> Vec<&'a str> {
    let compact = match name.to_ascii_lowercase().as_str() {
        "via" => "v",
        "from" => "f",
        "to" => "t",
        "call-id" => "i",
        "contact" => "m",
        "content-length" => "l",
        _ => "",
    };
    let head = msg.split("\r\n\r\n").next().unwrap_or("");
    head.lines()
        .skip(1)
        .filter_map(|line| {
            let (n, v) = line.split_once(':')?;
            let n = n.trim();
            (n.eq_ignore_ascii_case(name) || n.eq_ignore_ascii_case(compact)).then(|| v.trim())
        })
        .collect()
}

fn header<'a>(msg: &'a str, name: &str) -> &'a str {
    headers(msg, name).first().copied().unwrap_or("")
}

fn status(msg: &str) -> Option<u16> {
    crate::raw::status_code(msg)
}

/// A response with `code` to a request with CSeq method `method`.
fn is_response(msg: &str, code: u16, method: &str) -> bool {
    status(msg) == Some(code) && header(msg, "CSeq").ends_with(method)
}

fn is_request(msg: &str, method: &str) -> bool {
    msg.starts_with(&format!("{method} "))
}

/// The `tag` parameter of a From/To value.
fn tag(value: &str) -> &str {
    value
        .split(';')
        .find_map(|p| p.trim().strip_prefix("tag="))
        .unwrap_or("")
}

/// The URI inside `<…>` of a header value (or the value itself).
fn uri(value: &str) -> &str {
    match (value.find('<'), value.find('>')) {
        (Some(a), Some(b)) if a < b => &value[a + 1..b],
        _ => value,
    }
}

/// A request as a UA at `me` sends it: one Via (branch `branch`), the given headers in
/// order, and `body` framed by Content-Length (unless the headers set one).
fn request(method: &str, ruri: &str, me: SocketAddr, branch: &str, lines: &[String]) -> String {
    let mut text = format!(
        "{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch={branch};rport\r\nMax-Forwards: 70\r\n"
    );
    for l in lines {
        text.push_str(l);
        text.push_str("\r\n");
    }
    if !lines.iter().any(|l| l.starts_with("Content-Length:")) {
        text.push_str("Content-Length: 0\r\n");
    }
    text.push_str("\r\n");
    text
}

/// The response a UAS at `me` sends to `req`: its Vias, Record-Routes (on 1xx/2xx),
/// From, To (with `to_tag` added when it has none), Call-ID and CSeq.
fn response(req: &str, status_line: &str, to_tag: &str, me: SocketAddr, extra: &[&str]) -> String {
    let mut text = format!("SIP/2.0 {status_line}\r\n");
    for v in headers(req, "Via") {
        text.push_str(&format!("Via: {v}\r\n"));
    }
    let code: u16 = status_line[..3].parse().unwrap();
    if code < 300 {
        for rr in headers(req, "Record-Route") {
            text.push_str(&format!("Record-Route: {rr}\r\n"));
        }
    }
    let to = header(req, "To");
    let to = if tag(to).is_empty() && !to_tag.is_empty() {
        format!("{to};tag={to_tag}")
    } else {
        to.to_string()
    };
    text.push_str(&format!(
        "From: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\nContact: <sip:uas@{me}>\r\n",
        header(req, "From"),
        header(req, "Call-ID"),
        header(req, "CSeq"),
    ));
    for l in extra {
        text.push_str(l);
        text.push_str("\r\n");
    }
    text.push_str("Content-Length: 0\r\n\r\n");
    text
}

/// The value of one series on the proxy's `/metrics` page.
fn metric(api_port: u16, series: &str) -> Option<u64> {
    let page = metrics_page(api_port).ok()?;
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Waits (bounded) until `series` has `value`: counters and gauges change right after
/// the message that moves them is handled, which may be just after the wire shows it.
fn metric_becomes(api_port: u16, series: &str, value: u64) -> Result<(), String> {
    let deadline = Instant::now() + WAIT;
    loop {
        let now = metric(api_port, series);
        if now == Some(value) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("/metrics {series}: {now:?}, expected {value}"));
        }
        thread::sleep(Duration::from_millis(50));
    }
}

fn refusals(reason: &str) -> String {
    format!("trunkstore_refusals_total{{reason=\"{reason}\"}}")
}

/// The trunk gauge of the test account (config.rs writes every Scene document to the
/// account directory `e2e`).
const TRUNKS_E2E: &str = "trunkstore_trunks_in_use{account=\"e2e\"}";

fn proxy_addr(scene: &Scene) -> SocketAddr {
    crate::harness::addr(scene.setup.port)
}

/// One IP-auth PBX (127.0.0.1:<its port>, npan) with one DID.
fn one_pbx() -> Pbx {
    Pbx::new("pbx", free_port(), "npan", dids(0, 1))
}

/// Item 1: a preloaded Route from the carrier and from an IP-auth PBX gets 403 Preload
/// Route denied; neither the INVITE nor the ACK for the 403 (which repeats the Route)
/// goes anywhere: not to the Route's address, not to the DID's PBX.
#[test]
fn preloaded_route_gets_403_and_nothing_reaches_the_route() {
    let pbx = one_pbx();
    let scene = Scene::start("hostile-route", std::slice::from_ref(&pbx));
    let proxy = proxy_addr(&scene);
    let target = Peer::bind(ELSEWHERE, 0);
    let route = format!("Route: <sip:{};lr>", target.addr());
    let carrier = Peer::bind("127.0.0.1", scene.setup.carrier_port);
    let ip_pbx = Peer::bind("127.0.0.1", pbx.port);
    let mut results = Vec::new();
    let cases = [
        ("carrier", &carrier, pbx.dids[0].as_str()),
        ("IP-auth PBX", &ip_pbx, OUT_NUMBER),
    ];
    for (i, (who, peer, user)) in cases.into_iter().enumerate() {
        let me = peer.addr();
        let ruri = format!("sip:{user}@{proxy}");
        let branch = format!("z9hG4bK-route-{i}");
        let call = format!("hostile-route-{i}");
        let common = |method: &str, to: String| {
            vec![
                route.clone(),
                format!("From: <sip:1000@{me}>;tag=route-{i}"),
                format!("To: {to}"),
                format!("Call-ID: {call}"),
                format!("CSeq: 1 {method}"),
                format!("Contact: <sip:1000@{me}>"),
            ]
        };
        let invite = request(
            "INVITE",
            &ruri,
            me,
            &branch,
            &common("INVITE", format!("<{ruri}>")),
        );
        peer.send(proxy, &invite);
        let got = peer.wait_for("a final response", |m| status(m).unwrap_or(0) >= 200);
        let refused = got.and_then(|r| {
            let line = r.lines().next().unwrap_or("");
            if line == "SIP/2.0 403 Preload Route denied" {
                Ok(r)
            } else {
                Err(format!(
                    "{who}: expected 403 Preload Route denied, got:\n{r}"
                ))
            }
        });
        match refused {
            Ok(r) => {
                let to = header(&r, "To").to_string();
                peer.send(
                    proxy,
                    &request("ACK", &ruri, me, &branch, &common("ACK", to)),
                );
            }
            Err(why) => results.push(Err(why)),
        }
    }
    results.push(target.hears_nothing("the preloaded Route's address"));
    results.push(ip_pbx.hears_nothing("the PBX (the DID's server)"));
    results.push(carrier.hears_nothing("the carrier, after its 403"));
    results.push(metric_becomes(
        scene.setup.api_port,
        &refusals("preloaded_route"),
        2,
    ));
    scene.finish(results);
}

/// An answered call between a raw carrier and a raw PBX, as the proxy relayed it.
struct Call {
    carrier: Peer,
    pbx: Peer,
    call_id: String,
    /// The carrier's From tag and the PBX's To tag.
    caller_tag: String,
    callee_tag: String,
    /// The PBX's Contact (the carrier's in-dialog Request-URI) and the route set the
    /// carrier learnt from the 200's Record-Route.
    pbx_contact: String,
    carrier_contact: String,
    routes: Vec<String>,
}

/// The carrier calls the PBX's DID through the proxy and the PBX answers: INVITE /
/// 200 / ACK, each checked on arrival.
fn answered_call(scene: &Scene, pbx: &Pbx, call_id: &str) -> Result<Call, String> {
    let proxy = proxy_addr(scene);
    let carrier = Peer::bind("127.0.0.1", scene.setup.carrier_port);
    let pbx_peer = Peer::bind("127.0.0.1", pbx.port);
    let me = carrier.addr();
    let ruri = format!("sip:{}@{proxy}", pbx.dids[0]);
    let carrier_contact = format!("sip:carrier@{me}");
    let invite = request(
        "INVITE",
        &ruri,
        me,
        &format!("z9hG4bK-{call_id}-inv"),
        &[
            format!("From: <sip:carrier@{me}>;tag=caller-{call_id}"),
            format!("To: <{ruri}>"),
            format!("Call-ID: {call_id}"),
            "CSeq: 1 INVITE".into(),
            format!("Contact: <{carrier_contact}>"),
        ],
    );
    carrier.send(proxy, &invite);
    let at_pbx = pbx_peer.wait_for("the INVITE", |m| is_request(m, "INVITE"))?;
    let callee_tag = format!("callee-{call_id}");
    let ok = response(&at_pbx, "200 OK", &callee_tag, pbx_peer.addr(), &[]);
    pbx_peer.send(proxy, &ok);
    let answer = carrier.wait_for("the 200", |m| is_response(m, 200, "INVITE"))?;
    let mut routes: Vec<String> = headers(&answer, "Record-Route")
        .iter()
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_string())
        .collect();
    routes.reverse();
    let call = Call {
        carrier,
        pbx: pbx_peer,
        call_id: call_id.to_string(),
        caller_tag: format!("caller-{call_id}"),
        callee_tag,
        pbx_contact: uri(header(&answer, "Contact")).to_string(),
        carrier_contact,
        routes,
    };
    let ack = call.carrier_request("ACK", 1, "ack", &[]);
    call.carrier.send(proxy, &ack);
    call.pbx.wait_for("the ACK", |m| is_request(m, "ACK"))?;
    Ok(call)
}

impl Call {
    /// An in-dialog request of the carrier (caller) leg, along its route set.
    fn carrier_request(&self, method: &str, cseq: u32, branch: &str, extra: &[String]) -> String {
        let me = self.carrier.addr();
        let mut lines: Vec<String> = self.routes.iter().map(|r| format!("Route: {r}")).collect();
        lines.extend([
            format!("From: <sip:carrier@{me}>;tag={}", self.caller_tag),
            format!("To: <sip:callee@{me}>;tag={}", self.callee_tag),
            format!("Call-ID: {}", self.call_id),
            format!("CSeq: {cseq} {method}"),
        ]);
        lines.extend(extra.iter().cloned());
        let branch = format!("z9hG4bK-{}-{branch}", self.call_id);
        request(method, &self.pbx_contact, me, &branch, &lines)
    }
}

/// Item 2: a third party that knows the Call-ID and both tags sends BYEs, as either
/// leg would and with its own Route: 481 each time, the PBX and the carrier hear
/// nothing, the trunk stays taken; the carrier's real BYE then reaches the PBX and its
/// 200 gives the trunk back.
#[test]
fn forged_bye_gets_481_and_the_call_stays_up() {
    let pbx = one_pbx();
    let scene = Scene::start_with(
        "hostile-bye",
        std::slice::from_ref(&pbx),
        Map::new(),
        json!({"trunks": 5}),
    );
    let results = match forged_bye_scenario(&scene, &pbx) {
        Ok(checks) => checks,
        Err(why) => vec![Err(why)],
    };
    scene.finish(results);
}

fn forged_bye_scenario(scene: &Scene, pbx: &Pbx) -> Result<Vec<Result<(), String>>, String> {
    let proxy = proxy_addr(scene);
    let api = scene.setup.api_port;
    let call = answered_call(scene, pbx, "hostile-bye-1")?;
    metric_becomes(api, TRUNKS_E2E, 1)?;
    let forger = Peer::bind(FORGER, 0);
    let target = Peer::bind(ELSEWHERE, 0);
    let f = forger.addr();
    let (caller, callee) = (&call.caller_tag, &call.callee_tag);
    let forged = [
        // As the carrier would hang up, along the carrier's route set.
        (
            call.pbx_contact.clone(),
            call.routes.clone(),
            caller,
            callee,
        ),
        // As the PBX would, toward the carrier's Contact.
        (
            call.carrier_contact.clone(),
            call.routes.clone(),
            callee,
            caller,
        ),
        // As the carrier, asking to be routed on to the attacker's address.
        (
            format!("sip:x@{}", target.addr()),
            vec![format!("<sip:{};lr>", target.addr())],
            caller,
            callee,
        ),
    ];
    let mut checks = Vec::new();
    for (i, (ruri, routes, from_tag, to_tag)) in forged.iter().enumerate() {
        let mut lines: Vec<String> = routes.iter().map(|r| format!("Route: {r}")).collect();
        lines.extend([
            format!("From: <sip:a@{f}>;tag={from_tag}"),
            format!("To: <sip:b@{f}>;tag={to_tag}"),
            format!("Call-ID: {}", call.call_id),
            format!("CSeq: {} BYE", 10 + i),
        ]);
        let bye = request("BYE", ruri, f, &format!("z9hG4bK-forged-{i}"), &lines);
        forger.send(proxy, &bye);
        let answer = forger.wait_for("a final response", |m| status(m).unwrap_or(0) >= 200)?;
        let line = answer.lines().next().unwrap_or("");
        if status(&answer) != Some(481) {
            checks.push(Err(format!("forged BYE {i}: expected 481, got {line}")));
        }
    }
    checks.push(call.pbx.hears_nothing("the PBX, after forged BYEs"));
    checks.push(call.carrier.hears_nothing("the carrier, after forged BYEs"));
    checks.push(target.hears_nothing("the forged Route's address"));
    checks.push(metric_becomes(api, TRUNKS_E2E, 1));
    checks.push(metric_becomes(api, "trunkstore_active_calls", 1));
    checks.push(metric_becomes(api, &refusals("no_dialog"), 3));

    // The real hang-up.
    let bye = call.carrier_request("BYE", 2, "bye", &[]);
    call.carrier.send(proxy, &bye);
    let at_pbx = call
        .pbx
        .wait_for("the carrier's BYE", |m| is_request(m, "BYE"))?;
    checks.push(metric_becomes(api, TRUNKS_E2E, 1).map_err(|e| format!("before the 200: {e}")));
    let ok = response(&at_pbx, "200 OK", "", call.pbx.addr(), &[]);
    call.pbx.send(proxy, &ok);
    call.carrier
        .wait_for("the 200 to its BYE", |m| is_response(m, 200, "BYE"))?;
    checks.push(metric_becomes(api, TRUNKS_E2E, 0));
    checks.push(metric_becomes(api, "trunkstore_active_calls", 0));
    Ok(checks)
}

/// Item 7: responses nobody asked for, naming the proxy in their top Via (a branch it
/// never used) and the attacker's target in the second: dropped and counted, from an
/// unknown source and from the carrier alike; first with branches in the proxy's own
/// format (ids it never issued), then with free-form ones. Then the real attack: a third
/// party answers 200 to a ringing call's INVITE with the right branch: the caller never
/// sees it (only the leg the INVITE went to may answer).
#[test]
fn stray_responses_are_dropped_and_counted() {
    let pbx = one_pbx();
    let scene = Scene::start("hostile-stray", std::slice::from_ref(&pbx));
    let api = scene.setup.api_port;
    let target = Peer::bind(ELSEWHERE, 0);
    let forger = Peer::bind(FORGER, 0);
    let carrier = Peer::bind("127.0.0.1", scene.setup.carrier_port);
    let mut results = Vec::new();
    // z9hG4bK + 16 + 8 hex digits, as the proxy writes its branches (branch.rs).
    let ours = |n: u64| format!("z9hG4bK{:016x}{:08x}", 0x5eed_0000_0000_0000 | n, n);
    let free_form = |n: u64| format!("z9hG4bK-stray-{n}");
    let mut sent = 0;
    for (kind, branch) in [
        ("in the proxy's format", &ours as &dyn Fn(u64) -> String),
        ("free-form", &free_form),
    ] {
        for sender in [&forger, &carrier] {
            for (cseq, contact) in [("1 INVITE", true), ("2 BYE", false)] {
                sent += 1;
                let text = stray_200(&scene, &target, &branch(sent), sent, cseq, contact);
                sender.send(proxy_addr(&scene), &text);
            }
        }
        results.push(
            metric_becomes(api, "trunkstore_stray_responses_total", sent)
                .map_err(|e| format!("after stray 200s with branches {kind}: {e}")),
        );
    }
    results.push(target.hears_nothing("the second Via's address"));
    results.push(forger.hears_nothing("the sender of stray responses"));
    // The ringing call below binds the carrier's port itself.
    drop(carrier);
    // The counter as it is now (the free-form case above may have missed some).
    let before = metric(api, "trunkstore_stray_responses_total").unwrap_or(0);
    results.push(forged_answer(&scene, &pbx, &forger, before + 1));
    scene.finish(results);
}

/// A 200 OK whose top Via names the proxy with `branch` and whose second Via names
/// `target`, as if the proxy had relayed a request from there.
fn stray_200(
    scene: &Scene,
    target: &Peer,
    branch: &str,
    n: u64,
    cseq: &str,
    contact: bool,
) -> String {
    let proxy = proxy_addr(scene);
    let t = target.addr();
    let mut text = format!(
        "SIP/2.0 200 OK\r\n\
         Via: SIP/2.0/UDP {proxy};branch={branch};rport\r\n\
         Via: SIP/2.0/UDP {t};branch=z9hG4bK-victim-{n};rport\r\n\
         From: <sip:victim@{t}>;tag=v-{n}\r\n\
         To: <sip:+14155550000@{proxy}>;tag=s-{n}\r\n\
         Call-ID: stray-{n}\r\n\
         CSeq: {cseq}\r\n"
    );
    if contact {
        text.push_str(&format!("Contact: <sip:x@{t}>\r\n"));
    }
    text.push_str("Content-Length: 0\r\n\r\n");
    text
}

/// A ringing call (the PBX has the INVITE and says nothing); the forger sends the 200
/// the PBX would send (its Vias, the proxy's branch). The carrier must get no 200; the
/// PBX then refuses (486) and the carrier gets that, ACKed hop by hop.
fn forged_answer(scene: &Scene, pbx: &Pbx, forger: &Peer, strays: u64) -> Result<(), String> {
    let proxy = proxy_addr(scene);
    let carrier = Peer::bind("127.0.0.1", scene.setup.carrier_port);
    let pbx_peer = Peer::bind("127.0.0.1", pbx.port);
    let me = carrier.addr();
    let ruri = format!("sip:{}@{proxy}", pbx.dids[0]);
    let common = |method: &str, to: &str| {
        vec![
            format!("From: <sip:carrier@{me}>;tag=ringing"),
            format!("To: {to}"),
            "Call-ID: hostile-ringing".to_string(),
            format!("CSeq: 1 {method}"),
            format!("Contact: <sip:carrier@{me}>"),
        ]
    };
    let to = format!("<{ruri}>");
    let branch = "z9hG4bK-ringing";
    carrier.send(
        proxy,
        &request("INVITE", &ruri, me, branch, &common("INVITE", &to)),
    );
    let invite = pbx_peer.wait_for("the INVITE", |m| is_request(m, "INVITE"))?;
    let fake = response(&invite, "200 OK", "forged", forger.addr(), &[]);
    forger.send(proxy, &fake);
    metric_becomes(
        scene.setup.api_port,
        "trunkstore_stray_responses_total",
        strays,
    )?;
    let busy = response(&invite, "486 Busy Here", "pbx", pbx_peer.addr(), &[]);
    pbx_peer.send(proxy, &busy);
    let got = carrier.wait_for("a final response", |m| status(m).unwrap_or(0) >= 200)?;
    if status(&got) != Some(486) {
        return Err(format!("the carrier got, instead of the PBX's 486:\n{got}"));
    }
    let to = header(&got, "To").to_string();
    carrier.send(
        proxy,
        &request("ACK", &ruri, me, branch, &common("ACK", &to)),
    );
    pbx_peer.wait_for("the proxy's ACK for the 486", |m| is_request(m, "ACK"))?;
    forger.hears_nothing("the forger")
}

/// Item 13: a Content-Length larger than the datagram gets 400 (the PBX sees nothing);
/// OPTIONS to the proxy with Max-Forwards: 0 gets 200.
#[test]
fn unframable_body_gets_400_and_options_max_forwards_zero_gets_200() {
    let pbx = one_pbx();
    let scene = Scene::start("hostile-rfc", std::slice::from_ref(&pbx));
    let proxy = proxy_addr(&scene);
    let pbx_peer = Peer::bind("127.0.0.1", pbx.port);
    let carrier = Peer::bind("127.0.0.1", scene.setup.carrier_port);
    let me = carrier.addr();
    let ruri = format!("sip:{}@{proxy}", pbx.dids[0]);
    let body = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n";
    let mut invite = request(
        "INVITE",
        &ruri,
        me,
        "z9hG4bK-too-long",
        &[
            format!("From: <sip:carrier@{me}>;tag=long"),
            format!("To: <{ruri}>"),
            "Call-ID: hostile-too-long".into(),
            "CSeq: 1 INVITE".into(),
            format!("Contact: <sip:carrier@{me}>"),
            "Content-Type: application/sdp".into(),
            format!("Content-Length: {}", body.len() + 500),
        ],
    );
    invite.push_str(body);
    carrier.send(proxy, &invite);
    let mut results = vec![carrier
        .wait_for("a final response", |m| status(m).unwrap_or(0) >= 200)
        .and_then(|r| {
            let line = r.lines().next().unwrap_or("").to_string();
            match line.starts_with("SIP/2.0 400 Bad Request") {
                true => Ok(()),
                false => Err(format!("Content-Length beyond the datagram: got {line}")),
            }
        })];
    results.push(pbx_peer.hears_nothing("the PBX, for an unframable INVITE"));

    let options = request(
        "OPTIONS",
        &format!("sip:{proxy}"),
        me,
        "z9hG4bK-mf0",
        &[
            format!("From: <sip:carrier@{me}>;tag=mf0"),
            format!("To: <sip:{proxy}>"),
            "Call-ID: hostile-mf0".into(),
            "CSeq: 1 OPTIONS".into(),
        ],
    )
    .replace("Max-Forwards: 70", "Max-Forwards: 0");
    carrier.send(proxy, &options);
    results.push(
        carrier
            .wait_for("a final response", |m| status(m).unwrap_or(0) >= 200)
            .and_then(|r| match status(&r) {
                Some(200) => Ok(()),
                _ => Err(format!("OPTIONS Max-Forwards 0: got\n{r}")),
            }),
    );
    scene.finish(results);
}

/// Item 3: a password PBX's call with 100rel: the carrier's reliable 183 is PRACKed,
/// an UPDATE crosses the early dialog (both answered 200 through the proxy), then the
/// call is answered and ended by the PBX (uac-auth-prack.xml / uas-prack.xml require
/// every step).
#[test]
fn early_dialog_prack_and_update_cross_the_proxy() {
    let out = Out::start("hostile-prack", Some(2));
    let carrier = out.uas("carrier", "uas-prack.xml", out.c1, 2);
    let mut uac = out.pbx("pbx", "uac-auth-prack.xml", false, vec![NUMBER.into(); 2]);
    uac.extra.extend(digest_args(&out, "s3cret"));
    uac.extra.extend(["-d", "500"].map(String::from));
    uac.rate = 2;
    let run = uac.run(&out.dir);
    let trunks = out.finish(vec![run.check(), carrier.finish(UAS_FINISH)]);
    assert_eq!(trunks, Some(0), "every trunk given back");
}

/// Item 5: `limits.max_calls` = 20 with 20 calls up: 100 more get 503 Call Limit
/// Reached (a second carrier run from the carrier's other address); the trunk gauge
/// shows the 20 live calls while they are up and 0 after.
#[test]
fn calls_beyond_max_calls_get_503() {
    const HELD: usize = 20;
    const BEYOND: usize = 100;
    let pbx = one_pbx();
    let settings = |setup: &crate::config::ProxySetup| {
        let mut s = Map::new();
        s.insert("limits".into(), json!({"max_calls": HELD}));
        // The carrier's second address, for the run that overflows while the first
        // holds the main carrier port.
        s.insert(
            "carriers".into(),
            json!([{
                "name": "e2e-carrier",
                "gateways": [{"host": "127.0.0.1", "port": setup.carrier_port, "transport": "udp"}],
                "sources": [format!("127.0.0.1:{}", setup.carrier_port), CARRIER_HOST],
            }]),
        );
        s
    };
    let scene = Scene::start_with_setup(
        "hostile-max-calls",
        std::slice::from_ref(&pbx),
        settings,
        json!({}),
    );
    let api = scene.setup.api_port;
    // The PBX waits out the hold for each BYE: longer than the usual receive timeout.
    let pbx_uas = Uas::start_with(
        &scene.dir,
        "pbx",
        "uas-answer.xml",
        pbx.port,
        HELD as u64,
        60,
        &["-recv_timeout", "20000"],
    );
    let did = &pbx.dids[0];
    let npan = did.trim_start_matches("+1");
    let mut held = scene.carrier(
        "carrier-held",
        "uac-pbx-call.xml",
        vec![format!("{did};{npan};carrier;-"); HELD],
    );
    held.extra.extend(["-d", "8000"].map(String::from));
    let over = Uac {
        name: "carrier-over",
        scenario: "uac-reject.xml",
        proxy_port: scene.setup.port,
        local_port: free_port(),
        transport: Transport::Udp,
        lines: vec![format!("{did};503;70"); BEYOND],
        rate: 100,
        extra: vec!["-i".into(), CARRIER_HOST.into()],
    };
    let (held_run, over_run, while_up) = thread::scope(|s| {
        let h = s.spawn(|| held.run(&scene.dir));
        let up = metric_becomes(api, TRUNKS_E2E, HELD as u64);
        let over_run = over.run(&scene.dir);
        let while_up = vec![
            up,
            metric_becomes(api, TRUNKS_E2E, HELD as u64),
            metric_becomes(api, "trunkstore_active_calls", HELD as u64),
            metric_becomes(api, &refusals("max_calls"), BEYOND as u64),
        ];
        (h.join().unwrap(), over_run, while_up)
    });
    let mut results = vec![
        held_run.check(),
        over_run.check(),
        pbx_uas.finish(UAS_FINISH),
    ];
    results.extend(while_up);
    results.push(metric_becomes(api, TRUNKS_E2E, 0));
    results.push(metric_becomes(api, "trunkstore_active_calls", 0));
    scene.finish(results);
}

/// Item 10: an IP-auth PBX with no caller ID configured anywhere sends P-Asserted-
/// Identity, P-Preferred-Identity, Remote-Party-ID and foreign credentials: none reach
/// the carrier (uas-no-identity.xml fails the call otherwise). A PBX answering an
/// inbound call with 407 and a challenge: the carrier gets the 407 without it
/// (uac-no-challenge.xml).
#[test]
fn identity_headers_and_credentials_do_not_cross() {
    let pbx = one_pbx();
    let scene = Scene::start("hostile-identity", std::slice::from_ref(&pbx));
    let carrier = scene.uas(
        "carrier",
        "uas-no-identity.xml",
        scene.setup.carrier_port,
        2,
    );
    let claims = Uac {
        name: "pbx-claims",
        scenario: "uac-pbx-identity.xml",
        proxy_port: scene.setup.port,
        local_port: pbx.port,
        transport: Transport::Udp,
        lines: vec![format!("{OUT_NUMBER};{OUT_NUMBER};1000;-"); 2],
        rate: 10,
        extra: vec![
            "-key".into(),
            "extra_header".into(),
            "X-Test-Direct: no".into(),
        ],
    }
    .run(&scene.dir);
    let mut results = vec![claims.check(), carrier.finish(UAS_FINISH)];

    let challenger = scene.uas("pbx-challenge", "uas-challenge.xml", pbx.port, 2);
    let inbound = scene
        .carrier(
            "carrier-challenged",
            "uac-no-challenge.xml",
            vec![pbx.dids[0].clone(); 2],
        )
        .run(&scene.dir);
    results.extend([inbound.check(), challenger.finish(UAS_FINISH)]);
    scene.finish(results);
}

/// The identity checks of the scenarios above must be able to fail: played against each
/// other without the proxy, the carrier sees the PBX's identity headers and credentials
/// (uas-no-identity.xml fails) and the PBX's challenge (uac-no-challenge.xml fails).
#[test]
fn identity_scenarios_fail_without_the_proxy() {
    let _sipp = crate::sipp::sipp_binary();
    let dir = crate::harness::TestDir::new("hostile-self-check");
    let (carrier_port, pbx_port) = (free_port(), free_port());
    let carrier = Uas::start(&dir, "carrier", "uas-no-identity.xml", carrier_port, 1, 30);
    // The PBX's own run may pass or fail (it gets the carrier's 500 or no answer).
    let _claims = Uac {
        name: "pbx-claims",
        scenario: "uac-pbx-identity.xml",
        proxy_port: carrier_port,
        local_port: pbx_port,
        transport: Transport::Udp,
        lines: vec![format!("{OUT_NUMBER};{OUT_NUMBER};1000;-")],
        rate: 10,
        // uas-no-identity.xml insists on a Record-Route, as the proxy's would be.
        extra: vec![
            "-key".into(),
            "extra_header".into(),
            format!("Record-Route: <sip:127.0.0.1:{pbx_port};lr>"),
        ],
    }
    .run(&dir);
    assert!(
        carrier.finish(UAS_FINISH).is_err(),
        "uas-no-identity.xml accepted identity headers"
    );

    let (carrier_port, pbx_port) = (free_port(), free_port());
    let challenger = Uas::start(&dir, "pbx", "uas-challenge.xml", pbx_port, 1, 30);
    let run = Uac {
        name: "carrier-challenged",
        scenario: "uac-no-challenge.xml",
        proxy_port: pbx_port,
        local_port: carrier_port,
        transport: Transport::Udp,
        lines: vec![OUT_NUMBER.into()],
        rate: 10,
        extra: vec![],
    }
    .run(&dir);
    assert!(
        run.check().is_err(),
        "uac-no-challenge.xml accepted a Proxy-Authenticate"
    );
    let _ = challenger.finish(UAS_FINISH);
}
