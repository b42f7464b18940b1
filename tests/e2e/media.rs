//! Media anchoring through a real rtpengine (issue 16, behaviour.md §4 item 7): the real
//! binary, a real rtpengine (rtpengine.rs) and SIPp peers that send RTP.
//!
//! Addresses: SIP on 127.0.0.1 (the PBX calling out on 127.0.0.2); the caller's media on
//! [`CALLER_MEDIA`], the callee's on [`CALLEE_MEDIA`], rtpengine's (`--interface`) on
//! [`RELAY`]. So an SDP names exactly one of them, and the scenarios check which one
//! each side gets (uac-media-call.xml: the 200's, uas-media-answer.xml: the INVITE's,
//! `c=` and `o=`); the test checks the `m=` ports they log are from rtpengine's range.
//!
//! RTP: the caller streams `media.ulaw` (SIPp `rtp_stream`, from its per-call socket)
//! to the address of the 200's SDP; the callee runs with `-rtp_echo`, so whatever
//! reaches it goes back to where it came from. SIPp 3.6 prints no RTP counters, so the
//! proof is rtpengine's own: its "Final packet stats" log block when the proxy deletes
//! the call has, per side, the peer address it learnt and the packets it got from it.
//! Packets from the caller's media address prove caller → rtpengine; packets from the
//! callee's echo port prove rtpengine → callee → rtpengine (the echo only answers
//! what arrived); the echoes go on to the caller's learnt address.

use std::fs;
use std::net::{Ipv4Addr, UdpSocket};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use crate::config::{self, ProxySetup};
use crate::harness::{free_port, TestDir};
use crate::proxy::Proxy;
use crate::rtpengine::{dict, s, Bencode, Rtpengine};
use crate::sipp::{self, Transport, Uac, Uas};
use crate::{check_metrics_at, UAS_FINISH};

/// The caller's media address (SIPp -mi of the calling side).
const CALLER_MEDIA: &str = "127.0.0.3";
/// The callee's media address (SIPp -mi of the answering side).
const CALLEE_MEDIA: &str = "127.0.0.4";
/// rtpengine's `--interface` (rtpengine.rs).
const RELAY: &str = "127.0.0.1";
/// The IP-auth PBX that calls out (any port).
const OUT_PBX: &str = "127.0.0.2";

/// DIDs of the test document: the anchored PBX, the bypass PBX, and the anchored PBXs
/// that end calls in other ways.
const DID_PROCESS: &str = "+14155551600";
const DID_BYPASS: &str = "+14155551601";
const DID_HANGUP: &str = "+14155551602";
const DID_CANCEL: &str = "+14155551603";
const DID_BUSY: &str = "+14155551604";
const DID_LATE: &str = "+14155551605";
/// What the PBX calling out dials (routed to the carrier).
const OUT_NUMBER: &str = "+12125550100";

/// How long each media call lasts (SIPp -d): ~25 packets at 20 ms.
const HOLD_MS: &str = "500";

/// The NG settings for tests: one instance, fast failure (issue 16's brief).
fn media_settings(ng_port: u16, on_failure: &str) -> Value {
    json!({
        "rtpengine": [{"address": format!("127.0.0.1:{ng_port}"), "weight": 1}],
        "timeout_ms": 200,
        "retries": 0,
        "on_failure": on_failure,
    })
}

/// One IP-auth PBX at 127.0.0.1:`port` answering `did` (e164), `media_handling` `mode`.
fn pbx(name: &str, port: u16, did: &str, mode: &str) -> Value {
    json!({
        "name": name,
        "auth": {"auth_method": "IP", "ip": "127.0.0.1", "port": port},
        "options": {"inbound_format": "e164", "media_handling": mode},
        "DIDs": {did: {}},
    })
}

/// A test's proxy (settings with `media`, CDRs into cdr.jsonl) and PBX ports.
struct MediaScene {
    dir: TestDir,
    setup: ProxySetup,
    proxy: Proxy,
    /// PBX ports by DID: process, bypass, hangup, cancel, busy, late.
    ports: [u16; 6],
}

impl MediaScene {
    /// Starts the proxy with `media` (the settings object) and the document: PBXs for
    /// every DID above (`process` except [`DID_BYPASS`]) and the IP-auth PBX on
    /// [`OUT_PBX`] (`process`) that calls out through the carrier at
    /// 127.0.0.1:`carrier_port` (also the trusted inbound source).
    fn start(dir: TestDir, media: Value) -> MediaScene {
        let _sipp = sipp::sipp_binary();
        let ports = [(); 6].map(|_| free_port());
        let setup = ProxySetup {
            port: free_port(),
            carrier_port: free_port(),
            api_port: free_port(),
            extra: Map::from_iter([
                ("media".to_string(), media),
                ("cdr".to_string(), json!({"file": "cdr.jsonl"})),
            ]),
        };
        let mut late = pbx("late", ports[5], DID_LATE, "process");
        late["options"]["timeout"] = json!(1);
        let document = json!({
            "name": "media",
            "account": {},
            "servers": [
                pbx("process", ports[0], DID_PROCESS, "process"),
                pbx("bypass", ports[1], DID_BYPASS, "bypass"),
                pbx("hangup", ports[2], DID_HANGUP, "process"),
                pbx("cancel", ports[3], DID_CANCEL, "process"),
                pbx("busy", ports[4], DID_BUSY, "process"),
                late,
                {"name": "out-pbx", "auth": {"auth_method": "IP", "ip": OUT_PBX},
                 "options": {"media_handling": "process"}, "DIDs": {}},
            ],
        });
        let settings = config::settings_json(&setup);
        let path = config::write_files(&dir, &settings, &[("media", &document)]);
        let proxy = Proxy::start(&dir, &path, &setup);
        MediaScene {
            dir,
            setup,
            proxy,
            ports,
        }
    }

    /// A callee (PBX or carrier) echoing RTP on [`CALLEE_MEDIA`]:`media_port`.
    fn callee(&self, name: &str, scenario: &str, port: u16, calls: u64, media_port: u16) -> Uas {
        let mp = media_port.to_string();
        Uas::start_with(
            &self.dir,
            name,
            scenario,
            port,
            calls,
            60,
            &["-rtp_echo", "-mi", CALLEE_MEDIA, "-mp", &mp],
        )
    }

    /// A callee that only answers SIP (its scenario's SDP, no RTP).
    fn plain_callee(&self, name: &str, scenario: &str, port: u16, calls: u64) -> Uas {
        let mp = media_port(CALLEE_MEDIA).to_string();
        Uas::start_with(
            &self.dir,
            name,
            scenario,
            port,
            calls,
            60,
            &["-mi", CALLEE_MEDIA, "-mp", &mp],
        )
    }

    /// The carrier calling in from its trusted source, media on [`CALLER_MEDIA`].
    fn carrier<'a>(&self, name: &'a str, scenario: &'a str, lines: Vec<String>) -> Uac<'a> {
        self.caller(name, scenario, self.setup.carrier_port, lines, &[])
    }

    /// The PBX on [`OUT_PBX`] calling out.
    fn out_pbx<'a>(&self, name: &'a str, scenario: &'a str, lines: Vec<String>) -> Uac<'a> {
        self.caller(name, scenario, free_port(), lines, &["-i", OUT_PBX])
    }

    fn caller<'a>(
        &self,
        name: &'a str,
        scenario: &'a str,
        local_port: u16,
        lines: Vec<String>,
        more: &[&str],
    ) -> Uac<'a> {
        let mp = media_port(CALLER_MEDIA).to_string();
        let mut extra: Vec<String> = ["-mi", CALLER_MEDIA, "-mp", &mp, "-d", HOLD_MS]
            .iter()
            .map(|a| a.to_string())
            .collect();
        extra.extend(more.iter().map(|a| a.to_string()));
        Uac {
            name,
            scenario,
            proxy_port: self.setup.port,
            local_port,
            transport: Transport::Udp,
            lines,
            rate: 10,
            extra,
        }
    }

    /// Stops the proxy (must exit 0); fails with every problem seen plus the proxy's log
    /// and, when given, rtpengine's.
    fn finish(self, results: Vec<Result<(), String>>, engine: Option<&Rtpengine>) {
        let log = self.proxy.log();
        let stopped = self.proxy.stop();
        let mut problems: Vec<String> = results.into_iter().filter_map(Result::err).collect();
        let had_call_problems = !problems.is_empty();
        if let Err(why) = stopped {
            problems.push(why);
        }
        if had_call_problems {
            problems.push(log);
            if let Some(engine) = engine {
                problems.push(format!("\n--- rtpengine log ---\n{}", engine.log()));
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n\n"));
    }
}

/// A test directory with `media.ulaw` in it: what uac-media-call.xml streams (200 ms
/// of PCMU silence, looped for the whole call).
fn media_dir(test: &str) -> TestDir {
    let dir = TestDir::new(test);
    fs::write(dir.file("media.ulaw"), [0xffu8; 1600]).expect("write media.ulaw");
    dir
}

/// A port free on `ip` with the one two above it free too (SIPp binds -mp and -mp+2 and
/// exits if either is taken).
fn media_port(ip: &str) -> u16 {
    let ip: Ipv4Addr = ip.parse().expect("media ip");
    for _ in 0..100 {
        let port = free_port();
        let pair = (
            UdpSocket::bind((ip, port)),
            UdpSocket::bind((ip, port.wrapping_add(2))),
        );
        if let (Ok(_), Ok(_)) = pair {
            return port;
        }
    }
    panic!("no free media port pair on {ip}");
}

/// The `m=` ports a SIPp run logged in lines containing `marker` ("answer c=", "offer
/// c=", "re-offer c="...), with each line's Call-ID.
fn logged_ports(dir: &TestDir, sipp_name: &str, marker: &str) -> Vec<(String, u16)> {
    let text = fs::read_to_string(dir.file(&format!("{sipp_name}.log"))).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let (call_id, rest) = line.split_once(": ")?;
            let rest = rest.strip_prefix(marker)?;
            let port = rest.split(" m=").nth(1)?.split(' ').next()?.parse().ok()?;
            Some((call_id.trim().to_string(), port))
        })
        .collect()
}

/// `calls` lines of `marker` in the SIPp run's log, each with a port of rtpengine's
/// range (anchored) or with `direct_port` (not anchored). The Call-IDs.
fn check_ports(
    dir: &TestDir,
    sipp_name: &str,
    marker: &str,
    calls: usize,
    expected: PortsFrom,
) -> Result<Vec<String>, String> {
    let found = logged_ports(dir, sipp_name, marker);
    let wrong: Vec<String> = found
        .iter()
        .filter(|(_, port)| match expected {
            PortsFrom::Relay(engine) => !(engine.port_min..=engine.port_max).contains(port),
            PortsFrom::Peer(direct) => *port != direct,
        })
        .map(|(id, port)| format!("{id}: m= port {port}"))
        .collect();
    if found.len() != calls || !wrong.is_empty() {
        return Err(format!(
            "{sipp_name}: {} '{marker}' lines (expected {calls}), ports not {expected}: {wrong:?}",
            found.len()
        ));
    }
    Ok(found.into_iter().map(|(id, _)| id).collect())
}

/// Where an SDP's `m=` port must point.
#[derive(Clone, Copy)]
enum PortsFrom<'a> {
    Relay(&'a Rtpengine),
    Peer(u16),
}

impl std::fmt::Display for PortsFrom<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PortsFrom::Relay(e) => write!(f, "in rtpengine's {}-{}", e.port_min, e.port_max),
            PortsFrom::Peer(p) => write!(f, "the peer's own {p}"),
        }
    }
}

/// The call-ids rtpengine has now (`list`).
fn listed(engine: &Rtpengine) -> Result<Vec<String>, String> {
    let reply = engine.ng(&dict([("command", s("list"))]))?;
    match reply.get("calls") {
        Some(Bencode::List(calls)) => Ok(calls
            .iter()
            .map(|c| match c {
                Bencode::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
                other => other.to_string(),
            })
            .collect()),
        _ => Err(format!("list without calls: {reply}")),
    }
}

/// rtpengine's `list` becomes empty within 2 s (the proxy's delete follows the end of
/// the call by a few milliseconds).
fn sessions_end(engine: &Rtpengine) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let calls = listed(engine)?;
        if calls.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "rtpengine still has sessions after the calls: {calls:?}"
            ));
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// How many times rtpengine's log says it received NG `command` (for any call).
fn commands_received(engine: &Rtpengine, command: &str) -> usize {
    let text = fs::read_to_string(engine_log_path(engine)).unwrap_or_default();
    let needle = format!("Received command '{command}'");
    text.lines().filter(|l| l.contains(&needle)).count()
}

fn engine_log_path(engine: &Rtpengine) -> &Path {
    engine.log_path()
}

/// At least `min` NG `command`s reached rtpengine.
fn commands_at_least(engine: &Rtpengine, command: &str, min: usize) -> Result<(), String> {
    let n = commands_received(engine, command);
    if n >= min {
        Ok(())
    } else {
        Err(format!(
            "rtpengine got {n} '{command}' commands, expected at least {min}"
        ))
    }
}

/// One stream of rtpengine's "Final packet stats" for a call: the peer it learnt and
/// the RTP packets it received from it.
#[derive(Debug)]
struct StreamStats {
    peer: String,
    packets: u64,
}

/// The RTP (not RTCP) streams of `call_id` in rtpengine's final statistics, logged when
/// the call is deleted: "[<call-id>…] … --------- Port 127.0.0.1:10002 <> 127.0.0.3:6000,
/// SSRC …, 25 p, 4300 b, 0 e, 0 ts".
fn final_streams(log: &Path, call_id: &str) -> Vec<StreamStats> {
    let text = fs::read_to_string(log).unwrap_or_default();
    let tag = format!("[{call_id}");
    text.lines()
        .filter(|l| l.contains(&tag) && l.contains("--------- Port") && !l.contains("(RTCP)"))
        .filter_map(|l| {
            let (_, after) = l.split_once("<>")?;
            let mut parts = after.split(',');
            let peer = parts.next()?.trim().to_string();
            let packets = parts
                .find_map(|p| p.trim().strip_suffix(" p"))?
                .trim()
                .parse()
                .ok()?;
            Some(StreamStats { peer, packets })
        })
        .collect()
}

/// For each call: rtpengine got RTP from the caller's media address and from the
/// callee's echo socket ([`CALLEE_MEDIA`]:`echo_port`).
fn rtp_crossed(engine: &Rtpengine, call_ids: &[String], echo_port: u16) -> Result<(), String> {
    let echo = format!("{CALLEE_MEDIA}:{echo_port}");
    let caller = format!("{CALLER_MEDIA}:");
    let mut problems = Vec::new();
    for id in call_ids {
        let streams = final_streams(engine_log_path(engine), id);
        let from_caller = streams
            .iter()
            .any(|st| st.peer.starts_with(&caller) && st.packets > 0);
        let from_callee = streams.iter().any(|st| st.peer == echo && st.packets > 0);
        if !(from_caller && from_callee) {
            problems.push(format!(
                "{id}: RTP from the caller {from_caller}, echoed by the callee {from_callee}: {streams:?}"
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "rtpengine's final packet stats: {}",
            problems.join("; ")
        ))
    }
}

/// The CDR lines once `expected` are there (written within milliseconds of the end).
fn cdr_lines(dir: &TestDir, expected: usize) -> Result<Vec<Value>, String> {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let text = fs::read_to_string(dir.file("cdr.jsonl")).unwrap_or_default();
        let lines: Vec<Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if lines.len() >= expected || Instant::now() > deadline {
            return match lines.len() == expected {
                true => Ok(lines),
                false => Err(format!(
                    "{} CDR lines, expected {expected}:\n{text}",
                    lines.len()
                )),
            };
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Every CDR line has each `(field, value)`.
fn cdrs_say(dir: &TestDir, expected: usize, fields: &[(&str, Value)]) -> Result<(), String> {
    let lines = cdr_lines(dir, expected)?;
    for line in &lines {
        for (field, value) in fields {
            if &line[*field] != value {
                return Err(format!("CDR {field} should be {value}: {line}"));
            }
        }
    }
    Ok(())
}

/// `calls` injection lines for uac-media-call.xml / uac-media-reinvite.xml.
fn media_lines(number: &str, answer_names: &str, offer_names: &str, calls: usize) -> Vec<String> {
    vec![format!("{number};{answer_names};{offer_names}"); calls]
}

/// Item 1: a carrier call to a `process` PBX. Both SDPs name rtpengine (address and a
/// port of its range), RTP goes caller → rtpengine → PBX and back, the sessions are
/// deleted at the BYE, the CDRs and /metrics say anchored.
#[test]
fn inbound_anchored_call_relays_rtp_through_rtpengine() {
    const CALLS: usize = 2;
    let dir = media_dir("media-inbound");
    let engine = Rtpengine::start(&dir);
    let scene = MediaScene::start(dir, media_settings(engine.ng_port, "reject"));
    let echo = media_port(CALLEE_MEDIA);
    let uas = scene.callee(
        "pbx",
        "uas-media-answer.xml",
        scene.ports[0],
        CALLS as u64,
        echo,
    );
    let lines = media_lines(DID_PROCESS, RELAY, RELAY, CALLS);
    let run = scene
        .carrier("carrier", "uac-media-call.xml", lines)
        .run(&scene.dir);
    let mut results = vec![run.check(), uas.finish(UAS_FINISH)];
    let relay = PortsFrom::Relay(&engine);
    let ids = check_ports(&scene.dir, "carrier", "answer c=", CALLS, relay);
    results.push(check_ports(&scene.dir, "pbx", "offer c=", CALLS, relay).map(drop));
    results.push(sessions_end(&engine));
    results.push(ids.and_then(|ids| rtp_crossed(&engine, &ids, echo)));
    let instance = format!("127.0.0.1:{}", engine.ng_port);
    results.push(cdrs_say(
        &scene.dir,
        CALLS,
        &[
            ("media", json!("anchored")),
            ("media_instance", json!(instance)),
        ],
    ));
    results.push(check_metrics_at(
        scene.setup.api_port,
        &[
            ("trunkstore_media_calls_anchored_total", CALLS as u64),
            (
                "trunkstore_media_requests_total{command=\"offer\",outcome=\"ok\"}",
                CALLS as u64,
            ),
            (
                "trunkstore_media_requests_total{command=\"answer\",outcome=\"ok\"}",
                CALLS as u64,
            ),
            (
                "trunkstore_media_requests_total{command=\"delete\",outcome=\"ok\"}",
                CALLS as u64,
            ),
        ],
    ));
    scene.finish(results, Some(&engine));
}

/// Item 2: calls that end in every other way each leave rtpengine without a session:
/// the PBX hangs up (BYE from the callee), the caller CANCELs while it rings, the PBX
/// is busy (486), the PBX rings past its answer timeout (the proxy CANCELs it, 408 to
/// the caller) and then answers 200 with SDP anyway (the proxy ACKs and BYEs it: that
/// late answer must not bring the session back). Every one was offered to rtpengine.
#[test]
fn calls_ending_every_way_leave_no_session_in_rtpengine() {
    const CALLS: usize = 2;
    let dir = media_dir("media-endings");
    let engine = Rtpengine::start(&dir);
    let scene = MediaScene::start(dir, media_settings(engine.ng_port, "reject"));
    let n = CALLS as u64;
    let [_, _, hangup, cancel, busy, late] = scene.ports;
    let uases = [
        scene.plain_callee("hangup-pbx", "uas-hangup.xml", hangup, n),
        scene.plain_callee("cancel-pbx", "uas-cancel.xml", cancel, n),
        scene.plain_callee("busy-pbx", "uas-busy.xml", busy, n),
        scene.plain_callee("late-pbx", "uas-ring-late.xml", late, n),
    ];
    let runs = [
        (
            "hangup",
            "uac-callee-hangs-up.xml",
            format!("{DID_HANGUP};{DID_HANGUP}"),
        ),
        ("cancel", "uac-cancel.xml", DID_CANCEL.to_string()),
        (
            "busy",
            "uac-media-reject.xml",
            format!("{DID_BUSY};486;Busy Here"),
        ),
        ("late", "uac-media-reject.xml", format!("{DID_LATE};408;*")),
    ];
    let mut results = Vec::new();
    for (name, scenario, line) in runs {
        let mut uac = scene.carrier(name, scenario, vec![line; CALLS]);
        // uac-callee-hangs-up.xml and uac-cancel.xml have an [extra_header] line.
        uac.extra
            .extend(["-key", "extra_header", "X-Test-Direct: no"].map(String::from));
        results.push(uac.run(&scene.dir).check());
    }
    results.extend(uases.into_iter().map(|u| u.finish(UAS_FINISH)));
    results.push(commands_at_least(&engine, "offer", 4 * CALLS));
    results.push(commands_at_least(&engine, "delete", 4 * CALLS));
    results.push(sessions_end(&engine));
    results.push(cdrs_say(
        &scene.dir,
        4 * CALLS,
        &[("media", json!("anchored"))],
    ));
    scene.finish(results, Some(&engine));
}

/// Item 3: a call to a `bypass` server with rtpengine running: both SDPs arrive as
/// sent (the other side's address and port), and rtpengine never hears of the call.
#[test]
fn bypass_server_call_never_touches_rtpengine() {
    const CALLS: usize = 2;
    let dir = media_dir("media-bypass");
    let engine = Rtpengine::start(&dir);
    let scene = MediaScene::start(dir, media_settings(engine.ng_port, "reject"));
    let echo = media_port(CALLEE_MEDIA);
    let uas = scene.callee(
        "pbx",
        "uas-media-answer.xml",
        scene.ports[1],
        CALLS as u64,
        echo,
    );
    let lines = media_lines(DID_BYPASS, CALLEE_MEDIA, CALLER_MEDIA, CALLS);
    let run = scene
        .carrier("carrier", "uac-media-call.xml", lines)
        .run(&scene.dir);
    let mut results = vec![run.check(), uas.finish(UAS_FINISH)];
    let callee_sdp = PortsFrom::Peer(echo);
    results.push(check_ports(&scene.dir, "carrier", "answer c=", CALLS, callee_sdp).map(drop));
    let no_commands: Vec<String> = ["offer", "answer", "delete", "query"]
        .iter()
        .map(|c| (c, commands_received(&engine, c)))
        .filter(|(_, n)| *n > 0)
        .map(|(c, n)| format!("{n} '{c}'"))
        .collect();
    if !no_commands.is_empty() {
        results.push(Err(format!(
            "rtpengine got {no_commands:?} for bypass calls"
        )));
    }
    results.push(listed(&engine).and_then(|calls| match calls.is_empty() {
        true => Ok(()),
        false => Err(format!("rtpengine has sessions: {calls:?}")),
    }));
    results.push(cdrs_say(&scene.dir, CALLS, &[("media", json!("bypass"))]));
    scene.finish(results, Some(&engine));
}

/// Item 4: rtpengine answers one call, then stops. The next `process` calls get 503
/// "Media Relay Unavailable" (the PBX never sees them: its UAS takes only the first),
/// while a `bypass` server's call still goes through untouched.
#[test]
fn rtpengine_stopped_process_call_gets_503_bypass_call_goes_on() {
    let dir = media_dir("media-stopped");
    let engine = Rtpengine::start(&dir);
    let scene = MediaScene::start(dir, media_settings(engine.ng_port, "reject"));
    let echo = media_port(CALLEE_MEDIA);
    let uas = scene.callee("pbx", "uas-media-answer.xml", scene.ports[0], 1, echo);
    let lines = media_lines(DID_PROCESS, RELAY, RELAY, 1);
    let run = scene
        .carrier("first", "uac-media-call.xml", lines)
        .run(&scene.dir);
    let mut results = vec![run.check(), uas.finish(UAS_FINISH), sessions_end(&engine)];
    drop(engine);

    let line = format!("{DID_PROCESS};503;Media Relay Unavailable");
    let run = scene
        .carrier("refused", "uac-media-reject.xml", vec![line; 2])
        .run(&scene.dir);
    results.push(run.check());

    let echo = media_port(CALLEE_MEDIA);
    let uas = scene.callee(
        "bypass-pbx",
        "uas-media-answer.xml",
        scene.ports[1],
        1,
        echo,
    );
    let lines = media_lines(DID_BYPASS, CALLEE_MEDIA, CALLER_MEDIA, 1);
    let run = scene
        .carrier("bypassed", "uac-media-call.xml", lines)
        .run(&scene.dir);
    results.extend([run.check(), uas.finish(UAS_FINISH)]);
    results.push(
        check_ports(
            &scene.dir,
            "bypassed",
            "answer c=",
            1,
            PortsFrom::Peer(echo),
        )
        .map(drop),
    );
    results.push(check_metrics_at(
        scene.setup.api_port,
        &[(
            &format!(
                "trunkstore_media_instance_up{{address=\"127.0.0.1:{}\"}}",
                scene_ng_port(&scene)
            ),
            0,
        )],
    ));
    scene.finish(results, None);
}

/// The NG port the scene's settings name (read back from its settings file).
fn scene_ng_port(scene: &MediaScene) -> u16 {
    let text = fs::read_to_string(scene.dir.file("trunkstore.json")).unwrap_or_default();
    let settings: Value = serde_json::from_str(&text).unwrap_or_default();
    settings["media"]["rtpengine"][0]["address"]
        .as_str()
        .and_then(|a| a.rsplit(':').next()?.parse().ok())
        .unwrap_or(0)
}

/// Item 4, `on_failure: bypass`: no rtpengine runs at the configured address; the
/// `process` call goes on with its SDP untouched both ways (CDR `unanchored`).
#[test]
fn rtpengine_down_with_on_failure_bypass_call_goes_on_untouched() {
    const CALLS: usize = 2;
    let dir = media_dir("media-down-bypass");
    let nobody = free_port();
    let scene = MediaScene::start(dir, media_settings(nobody, "bypass"));
    let echo = media_port(CALLEE_MEDIA);
    let uas = scene.callee(
        "pbx",
        "uas-media-answer.xml",
        scene.ports[0],
        CALLS as u64,
        echo,
    );
    let lines = media_lines(DID_PROCESS, CALLEE_MEDIA, CALLER_MEDIA, CALLS);
    let run = scene
        .carrier("carrier", "uac-media-call.xml", lines)
        .run(&scene.dir);
    let mut results = vec![run.check(), uas.finish(UAS_FINISH)];
    results.push(
        check_ports(
            &scene.dir,
            "carrier",
            "answer c=",
            CALLS,
            PortsFrom::Peer(echo),
        )
        .map(drop),
    );
    results.push(cdrs_say(
        &scene.dir,
        CALLS,
        &[("media", json!("unanchored"))],
    ));
    scene.finish(results, None);
}

/// Item 5: outbound, the calling PBX's `media_handling` is `process`: PBX → proxy →
/// carrier, both SDPs name rtpengine, RTP crosses it both ways, nothing left after.
#[test]
fn outbound_anchored_call_relays_rtp_through_rtpengine() {
    const CALLS: usize = 2;
    let dir = media_dir("media-outbound");
    let engine = Rtpengine::start(&dir);
    let scene = MediaScene::start(dir, media_settings(engine.ng_port, "reject"));
    let echo = media_port(CALLEE_MEDIA);
    let carrier = scene.setup.carrier_port;
    let uas = scene.callee(
        "carrier",
        "uas-media-answer.xml",
        carrier,
        CALLS as u64,
        echo,
    );
    let lines = media_lines(OUT_NUMBER, RELAY, RELAY, CALLS);
    let run = scene
        .out_pbx("pbx", "uac-media-call.xml", lines)
        .run(&scene.dir);
    let mut results = vec![run.check(), uas.finish(UAS_FINISH)];
    let relay = PortsFrom::Relay(&engine);
    let ids = check_ports(&scene.dir, "pbx", "answer c=", CALLS, relay);
    results.push(check_ports(&scene.dir, "carrier", "offer c=", CALLS, relay).map(drop));
    results.push(sessions_end(&engine));
    results.push(ids.and_then(|ids| rtp_crossed(&engine, &ids, echo)));
    results.push(cdrs_say(
        &scene.dir,
        CALLS,
        &[
            ("direction", json!("outbound")),
            ("media", json!("anchored")),
        ],
    ));
    scene.finish(results, Some(&engine));
}

/// Item 6: a re-INVITE with SDP in an anchored dialog is offered and answered again:
/// the PBX gets the re-INVITE's SDP naming rtpengine, the carrier the 200's, RTP flows
/// before and after, and the BYE still removes the session.
#[test]
fn reinvite_in_anchored_dialog_is_offered_and_answered() {
    const CALLS: usize = 1;
    let dir = media_dir("media-reinvite");
    let engine = Rtpengine::start(&dir);
    let scene = MediaScene::start(dir, media_settings(engine.ng_port, "reject"));
    let echo = media_port(CALLEE_MEDIA);
    let uas = scene.callee("pbx", "uas-media-reinvite.xml", scene.ports[0], 1, echo);
    let lines = media_lines(DID_PROCESS, RELAY, RELAY, CALLS);
    let run = scene
        .carrier("carrier", "uac-media-reinvite.xml", lines)
        .run(&scene.dir);
    let mut results = vec![run.check(), uas.finish(UAS_FINISH)];
    let relay = PortsFrom::Relay(&engine);
    let ids = check_ports(&scene.dir, "carrier", "re-answer c=", CALLS, relay);
    results.push(check_ports(&scene.dir, "pbx", "re-offer c=", CALLS, relay).map(drop));
    results.push(commands_at_least(&engine, "offer", 2 * CALLS));
    results.push(commands_at_least(&engine, "answer", 2 * CALLS));
    results.push(sessions_end(&engine));
    results.push(ids.and_then(|ids| rtp_crossed(&engine, &ids, echo)));
    scene.finish(results, Some(&engine));
}
