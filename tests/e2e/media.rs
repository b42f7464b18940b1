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
//! what arrived). rtpengine counts no egress, so one test is the caller's media itself
//! (uac-media-socket.xml): the test's socket sends RTP to the caller-facing port and
//! gets every packet back from it. More in tests/sipp/README.md.

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
use crate::{check_metrics_at, finish_proxy, UAS_FINISH};

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
const DID_FAILOVER: &str = "+14155551606";
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
    /// PBX ports by DID: process, bypass, hangup, cancel, busy, late, failover (its
    /// primary; its `failover.sip` target is `backup`).
    ports: [u16; 7],
    backup: u16,
}

impl MediaScene {
    /// Starts the proxy with `media` (the settings object) and the document: PBXs for
    /// every DID above (`process` except [`DID_BYPASS`]) and the IP-auth PBX on
    /// [`OUT_PBX`] (`process`) that calls out through the carrier at
    /// 127.0.0.1:`carrier_port` (also the trusted inbound source).
    fn start(dir: TestDir, media: Value) -> MediaScene {
        MediaScene::start_with(dir, media, Map::new())
    }

    /// As [`MediaScene::start`], with `more` settings merged over the test's.
    fn start_with(dir: TestDir, media: Value, more: Map<String, Value>) -> MediaScene {
        let _sipp = sipp::sipp_binary();
        let ports = [(); 7].map(|_| free_port());
        let backup = free_port();
        let mut extra = Map::from_iter([
            ("media".to_string(), media),
            ("cdr".to_string(), json!({"file": "cdr.jsonl"})),
            // Every call is over when the proxy is stopped; no need to wait 5 s.
            ("shutdown_grace".to_string(), json!(1)),
        ]);
        extra.extend(more);
        let setup = ProxySetup {
            port: free_port(),
            carrier_port: free_port(),
            api_port: free_port(),
            extra,
        };
        let mut late = pbx("late", ports[5], DID_LATE, "process");
        late["options"]["timeout"] = json!(1);
        let mut failover = pbx("failover", ports[6], DID_FAILOVER, "process");
        failover["options"]["failover"] = json!({"sip": format!("sip:backup@127.0.0.1:{backup}")});
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
                failover,
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
            backup,
        }
    }

    /// A callee (PBX or carrier) echoing RTP on [`CALLEE_MEDIA`]:`media_port`.
    fn callee(&self, name: &str, scenario: &str, port: u16, calls: u64, media_port: u16) -> Uas {
        self.callee_with(name, scenario, port, calls, media_port, &[])
    }

    /// As [`MediaScene::callee`], with more SIPp arguments (`-d`...).
    fn callee_with(
        &self,
        name: &str,
        scenario: &str,
        port: u16,
        calls: u64,
        media_port: u16,
        more: &[&str],
    ) -> Uas {
        let mp = media_port.to_string();
        let mut args = vec!["-rtp_echo", "-mi", CALLEE_MEDIA, "-mp", &mp];
        args.extend_from_slice(more);
        Uas::start_with(&self.dir, name, scenario, port, calls, 60, &args)
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
        finish_proxy(self.proxy, results, || {
            engine
                .map(|engine| format!("\n--- rtpengine log ---\n{}", engine.log()))
                .into_iter()
                .collect()
        });
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
    sessions_end_within(engine, Duration::from_secs(2))
}

/// rtpengine's `list` becomes empty within `limit`.
fn sessions_end_within(engine: &Rtpengine, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
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

/// How many times rtpengine's log says it received NG `command` for `call_id`.
fn commands_for(engine: &Rtpengine, call_id: &str, command: &str) -> usize {
    let text = fs::read_to_string(engine_log_path(engine)).unwrap_or_default();
    let needle = format!("[{call_id}]: [control] Received command '{command}'");
    text.lines().filter(|l| l.contains(&needle)).count()
}

/// The Call-IDs of a SIPp run's log lines containing `marker` after "<call_id>: ".
fn logged_call_ids(dir: &TestDir, sipp_name: &str, marker: &str) -> Vec<String> {
    let text = fs::read_to_string(dir.file(&format!("{sipp_name}.log"))).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let (call_id, rest) = line.split_once(": ")?;
            rest.starts_with(marker).then(|| call_id.trim().to_string())
        })
        .collect()
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

/// A scene whose proxy anchors through a fresh rtpengine (`on_failure: reject`).
fn anchored_scene(test: &str) -> (Rtpengine, MediaScene) {
    anchored_scene_with(test, Map::new())
}

/// As [`anchored_scene`], with `more` settings merged over the test's.
fn anchored_scene_with(test: &str, more: Map<String, Value>) -> (Rtpengine, MediaScene) {
    let dir = media_dir(test);
    let engine = Rtpengine::start(&dir);
    let media = media_settings(engine.ng_port, "reject");
    (engine, MediaScene::start_with(dir, media, more))
}

/// A run's callee: SIPp name, scenario, port.
type Callee<'a> = (&'a str, &'a str, u16);

/// A finished run: the problems seen so far and what the checks after it need.
struct Outcome {
    results: Vec<Result<(), String>>,
    /// The callee's RTP echo port on [`CALLEE_MEDIA`].
    echo: u16,
    calls: usize,
}

impl MediaScene {
    /// Runs `caller` (`calls` calls) to a callee that echoes RTP (with `more` SIPp
    /// arguments); both SIPp runs' results.
    fn echoed_run(&self, caller: Uac, callee: Callee, calls: usize, more: &[&str]) -> Outcome {
        let (name, scenario, port) = callee;
        let echo = media_port(CALLEE_MEDIA);
        let uas = self.callee_with(name, scenario, port, calls as u64, echo, more);
        let run = caller.run(&self.dir);
        Outcome {
            results: vec![run.check(), uas.finish(UAS_FINISH)],
            echo,
            calls,
        }
    }
}

/// What an anchored run must show.
struct Anchored<'a> {
    /// The caller's SIPp name and the marker of its log lines with the SDP it got.
    caller: (&'a str, &'a str),
    /// The same for the callee, when its SDP is checked.
    callee: Option<(&'a str, &'a str)>,
    /// NG commands each call had exactly so many times.
    per_call: &'a [(&'a str, usize)],
}

impl<'a> Anchored<'a> {
    /// A call whose answer (to `caller`) and offer (to `callee`) name rtpengine.
    fn call(caller: &'a str, callee: &'a str) -> Anchored<'a> {
        Anchored {
            caller: (caller, "answer c="),
            callee: Some((callee, "offer c=")),
            per_call: &[],
        }
    }
}

impl Outcome {
    /// The checks of an anchored run: the SDPs `expected` names have rtpengine's ports,
    /// its sessions end, each call had the `per_call` commands, and RTP crossed
    /// rtpengine both ways (its final stats, logged at the delete).
    fn anchored(
        self,
        scene: &MediaScene,
        engine: &Rtpengine,
        expected: Anchored,
    ) -> Vec<Result<(), String>> {
        let Outcome {
            mut results,
            echo,
            calls,
        } = self;
        let relay = PortsFrom::Relay(engine);
        let (caller, marker) = expected.caller;
        let ids = check_ports(&scene.dir, caller, marker, calls, relay);
        if let Some((callee, marker)) = expected.callee {
            results.push(check_ports(&scene.dir, callee, marker, calls, relay).map(drop));
        }
        results.push(sessions_end(engine));
        for id in ids.iter().flatten() {
            for &(command, times) in expected.per_call {
                results.push(commands_exactly(engine, id, command, times));
            }
        }
        results.push(ids.and_then(|ids| rtp_crossed(engine, &ids, echo)));
        results
    }

    /// The check of a run not anchored: the caller `caller` got the callee's own port.
    fn direct(self, scene: &MediaScene, caller: &str) -> Vec<Result<(), String>> {
        let mut results = self.results;
        let callee_sdp = PortsFrom::Peer(self.echo);
        let found = check_ports(&scene.dir, caller, "answer c=", self.calls, callee_sdp);
        results.push(found.map(drop));
        results
    }
}

/// rtpengine got NG `command` exactly `times` for `call_id`.
fn commands_exactly(
    engine: &Rtpengine,
    call_id: &str,
    command: &str,
    times: usize,
) -> Result<(), String> {
    match commands_for(engine, call_id, command) {
        n if n == times => Ok(()),
        n => Err(format!(
            "{call_id}: {n} '{command}' commands, expected {times}"
        )),
    }
}

/// Item 1: a carrier call to a `process` PBX. Both SDPs name rtpengine (address and a
/// port of its range), RTP goes caller → rtpengine → PBX and back, the sessions are
/// deleted at the BYE, the CDRs and /metrics say anchored.
#[test]
fn inbound_anchored_call_relays_rtp_through_rtpengine() {
    // At 10 calls/s held 0.5 s: about 5 up at once, each its own session (4 ports each
    // of rtpengine's 40).
    const CALLS: usize = 6;
    let (engine, scene) = anchored_scene("media-inbound");
    let lines = media_lines(DID_PROCESS, RELAY, RELAY, CALLS);
    let uac = scene.carrier("carrier", "uac-media-call.xml", lines);
    let pbx = ("pbx", "uas-media-answer.xml", scene.ports[0]);
    let outcome = scene.echoed_run(uac, pbx, CALLS, &[]);
    let mut results = outcome.anchored(&scene, &engine, Anchored::call("carrier", "pbx"));
    let instance = format!("127.0.0.1:{}", engine.ng_port);
    results.push(cdrs_say(
        &scene.dir,
        CALLS,
        &[
            ("media", json!("anchored")),
            ("media_instance", json!(instance)),
        ],
    ));
    let n = CALLS as u64;
    results.push(check_metrics_at(
        scene.setup.api_port,
        &[
            ("trunkstore_media_calls_anchored_total", n),
            (
                "trunkstore_media_requests_total{command=\"offer\",outcome=\"ok\"}",
                n,
            ),
            (
                "trunkstore_media_requests_total{command=\"answer\",outcome=\"ok\"}",
                n,
            ),
            (
                "trunkstore_media_requests_total{command=\"delete\",outcome=\"ok\"}",
                n,
            ),
            ("trunkstore_media_sessions", 0),
        ],
    ));
    scene.finish(results, Some(&engine));
}

/// Item 2: calls that end in every other way each leave rtpengine without a session:
/// the PBX hangs up (BYE from the callee), the caller CANCELs while it rings, the PBX
/// is busy (486), the PBX rings past its answer timeout (the proxy CANCELs it, 408 to
/// the caller) and then answers 200 with SDP anyway (the proxy ACKs and BYEs it: that
/// late answer must not bring the session back, nor be sent to rtpengine as an answer).
/// Every one was offered to rtpengine.
#[test]
fn calls_ending_every_way_leave_no_session_in_rtpengine() {
    const CALLS: usize = 2;
    let (engine, scene) = anchored_scene("media-endings");
    let n = CALLS as u64;
    let [_, _, hangup, cancel, busy, late, _] = scene.ports;
    let uases = [
        scene.plain_callee("hangup-pbx", "uas-hangup.xml", hangup, n),
        scene.plain_callee("cancel-pbx", "uas-cancel.xml", cancel, n),
        scene.plain_callee("busy-pbx", "uas-busy.xml", busy, n),
        scene.plain_callee("late-pbx", "uas-ring-late-sdp.xml", late, n),
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
            format!("{DID_BUSY};486;Busy Here;-"),
        ),
        (
            "late",
            "uac-media-reject.xml",
            format!("{DID_LATE};408;*;-"),
        ),
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
    let late_calls = logged_call_ids(&scene.dir, "late", "final ");
    if late_calls.len() != CALLS {
        results.push(Err(format!(
            "late: {late_calls:?} in its log, expected {CALLS} calls"
        )));
    }
    for id in late_calls {
        let answers = commands_for(&engine, &id, "answer");
        if answers > 0 {
            results.push(Err(format!(
                "{id}: the late 200 after the CANCEL went to rtpengine as {answers} answer(s)"
            )));
        }
    }
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
    let (engine, scene) = anchored_scene("media-bypass");
    let lines = media_lines(DID_BYPASS, CALLEE_MEDIA, CALLER_MEDIA, CALLS);
    let uac = scene.carrier("carrier", "uac-media-call.xml", lines);
    let pbx = ("pbx", "uas-media-answer.xml", scene.ports[1]);
    let mut results = scene
        .echoed_run(uac, pbx, CALLS, &[])
        .direct(&scene, "carrier");
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
    let (engine, scene) = anchored_scene("media-stopped");
    let lines = media_lines(DID_PROCESS, RELAY, RELAY, 1);
    let uac = scene.carrier("first", "uac-media-call.xml", lines);
    let pbx = ("pbx", "uas-media-answer.xml", scene.ports[0]);
    let mut results = scene.echoed_run(uac, pbx, 1, &[]).results;
    results.push(sessions_end(&engine));
    let ng_port = engine.ng_port;
    drop(engine);

    let line = format!("{DID_PROCESS};503;Media Relay Unavailable;-");
    let run = scene
        .carrier("refused", "uac-media-reject.xml", vec![line; 2])
        .run(&scene.dir);
    results.push(run.check());

    let lines = media_lines(DID_BYPASS, CALLEE_MEDIA, CALLER_MEDIA, 1);
    let uac = scene.carrier("bypassed", "uac-media-call.xml", lines);
    let pbx = ("bypass-pbx", "uas-media-answer.xml", scene.ports[1]);
    results.extend(
        scene
            .echoed_run(uac, pbx, 1, &[])
            .direct(&scene, "bypassed"),
    );
    let up = format!("trunkstore_media_instance_up{{address=\"127.0.0.1:{ng_port}\"}}");
    results.push(check_metrics_at(scene.setup.api_port, &[(&up, 0)]));
    scene.finish(results, None);
}

/// Item 4, `on_failure: bypass`: no rtpengine runs at the configured address; the
/// `process` call goes on with its SDP untouched both ways (CDR `unanchored`).
#[test]
fn rtpengine_down_with_on_failure_bypass_call_goes_on_untouched() {
    const CALLS: usize = 2;
    let dir = media_dir("media-down-bypass");
    let nobody = free_port();
    let scene = MediaScene::start(dir, media_settings(nobody, "bypass"));
    let lines = media_lines(DID_PROCESS, CALLEE_MEDIA, CALLER_MEDIA, CALLS);
    let uac = scene.carrier("carrier", "uac-media-call.xml", lines);
    let pbx = ("pbx", "uas-media-answer.xml", scene.ports[0]);
    let mut results = scene
        .echoed_run(uac, pbx, CALLS, &[])
        .direct(&scene, "carrier");
    let unanchored = [("media", json!("unanchored"))];
    results.push(cdrs_say(&scene.dir, CALLS, &unanchored));
    scene.finish(results, None);
}

/// Item 5: outbound, the calling PBX's `media_handling` is `process`: PBX → proxy →
/// carrier, both SDPs name rtpengine, RTP crosses it both ways, nothing left after.
#[test]
fn outbound_anchored_call_relays_rtp_through_rtpengine() {
    const CALLS: usize = 2;
    let (engine, scene) = anchored_scene("media-outbound");
    let lines = media_lines(OUT_NUMBER, RELAY, RELAY, CALLS);
    let uac = scene.out_pbx("pbx", "uac-media-call.xml", lines);
    let carrier = ("carrier", "uas-media-answer.xml", scene.setup.carrier_port);
    let outcome = scene.echoed_run(uac, carrier, CALLS, &[]);
    let mut results = outcome.anchored(&scene, &engine, Anchored::call("pbx", "carrier"));
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
    let (engine, scene) = anchored_scene("media-reinvite");
    let lines = media_lines(DID_PROCESS, RELAY, RELAY, CALLS);
    let uac = scene.carrier("carrier", "uac-media-reinvite.xml", lines);
    let pbx = ("pbx", "uas-media-reinvite.xml", scene.ports[0]);
    let outcome = scene.echoed_run(uac, pbx, CALLS, &[]);
    let expected = Anchored {
        caller: ("carrier", "re-answer c="),
        callee: Some(("pbx", "re-offer c=")),
        per_call: &[],
    };
    let mut results = outcome.anchored(&scene, &engine, expected);
    results.push(commands_at_least(&engine, "offer", 2 * CALLS));
    results.push(commands_at_least(&engine, "answer", 2 * CALLS));
    scene.finish(results, Some(&engine));
}

/// Item 1, at the caller's own socket: the test is the caller's media (the offer names
/// its socket, uac-media-socket.xml). Once rtpengine has both sides of the call, the
/// test sends RTP to the port the 200's SDP gave the caller, and every packet comes back
/// to the same socket from that port: caller → rtpengine → PBX (SIPp -rtp_echo) →
/// rtpengine → caller.
#[test]
fn callers_rtp_comes_back_to_its_socket_through_rtpengine() {
    const PACKETS: u16 = 5;
    let (engine, scene) = anchored_scene("media-socket");
    let echo = media_port(CALLEE_MEDIA);
    let uas = scene.callee("pbx", "uas-media-answer.xml", scene.ports[0], 1, echo);
    let socket = UdpSocket::bind((CALLER_MEDIA.parse::<Ipv4Addr>().unwrap(), 0)).unwrap();
    let media = socket.local_addr().unwrap().port();
    let line = format!("{DID_PROCESS};{RELAY};{RELAY};{media}");
    let mut uac = scene.carrier("carrier", "uac-media-socket.xml", vec![line]);
    // Held long enough for the exchange below; a slow machine only makes it wait.
    uac.extra.extend(["-d", "3000"].map(String::from));
    let (run, round_trip) = thread::scope(|threads| {
        let run = threads.spawn(|| uac.run(&scene.dir));
        let round_trip = answered_relay_port(&engine, media)
            .and_then(|relay| echo_round_trip(&socket, relay, PACKETS));
        (run.join().expect("SIPp thread"), round_trip)
    });
    let mut results = vec![run.check(), uas.finish(UAS_FINISH), round_trip];
    let relay = PortsFrom::Relay(&engine);
    results.push(check_ports(&scene.dir, "carrier", "answer c=", 1, relay).map(drop));
    results.push(sessions_end(&engine));
    scene.finish(results, Some(&engine));
}

/// Waits (bounded) until rtpengine holds a call with a stream whose peer is the caller's
/// socket (port `caller_port` on [`CALLER_MEDIA`]) and one whose peer is the callee's
/// media address (the answer is in); the caller-facing port (what the 200 gave it).
fn answered_relay_port(engine: &Rtpengine, caller_port: u16) -> Result<u16, String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        for call in listed(engine)? {
            let query = dict([("command", s("query")), ("call-id", s(&call))]);
            let streams = rtp_streams(&engine.ng(&query)?);
            let facing_caller = streams
                .iter()
                .find(|(_, peer)| *peer == format!("{CALLER_MEDIA}:{caller_port}"));
            let answered = streams
                .iter()
                .any(|(_, peer)| peer.starts_with(&format!("{CALLEE_MEDIA}:")));
            if let (Some((local, _)), true) = (facing_caller, answered) {
                return Ok(*local);
            }
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "rtpengine had no answered call with the caller's socket {CALLER_MEDIA}:{caller_port} within 10 s"
            ));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// The RTP streams of a `query` reply: (rtpengine's local port, "peer address:port").
fn rtp_streams(reply: &Bencode) -> Vec<(u16, String)> {
    let list = |b: Option<&Bencode>| match b {
        Some(Bencode::List(items)) => items.clone(),
        _ => Vec::new(),
    };
    let int = |b: Option<&Bencode>| match b {
        Some(Bencode::Int(i)) => u16::try_from(*i).ok(),
        _ => None,
    };
    let tags = match reply.get("tags") {
        Some(Bencode::Dict(tags)) => tags.values().cloned().collect(),
        _ => Vec::new(),
    };
    let is_rtp = |stream: &Bencode| list(stream.get("flags")).contains(&s("RTP"));
    tags.iter()
        .flat_map(|tag| list(tag.get("medias")))
        .flat_map(|media| list(media.get("streams")))
        .filter(is_rtp)
        .filter_map(|stream| {
            let local = int(stream.get("local port"))?;
            let endpoint = stream.get("endpoint")?;
            let peer = format!(
                "{}:{}",
                endpoint.text("address")?,
                int(endpoint.get("port"))?
            );
            Some((local, peer))
        })
        .collect()
}

/// Sends `count` PCMU packets from `socket` to rtpengine's `relay` port and expects
/// each back (the callee echoes) on the same socket, from that port, unchanged.
fn echo_round_trip(socket: &UdpSocket, relay: u16, count: u16) -> Result<(), String> {
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    let to = crate::harness::addr(relay);
    let mut buf = [0u8; 2048];
    for seq in 1..=count {
        let packet = rtp_packet(seq);
        socket
            .send_to(&packet, to)
            .map_err(|e| format!("send RTP: {e}"))?;
        let (n, from) = socket
            .recv_from(&mut buf)
            .map_err(|e| format!("RTP packet {seq} did not come back within 2 s: {e}"))?;
        if from != to || buf[..n] != packet[..] {
            return Err(format!(
                "RTP packet {seq}: got {n} bytes from {from}, expected the packet back from {to}"
            ));
        }
    }
    Ok(())
}

/// A PCMU packet: version 2, payload type 0, sequence `seq`, 160 bytes of silence.
fn rtp_packet(seq: u16) -> Vec<u8> {
    let mut packet = vec![0x80, 0x00];
    packet.extend_from_slice(&seq.to_be_bytes());
    packet.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    packet.extend_from_slice(&0x7e57_0001u32.to_be_bytes());
    packet.extend_from_slice(&[0xff; 160]);
    packet
}

/// "Failover to another target keeps the session": the PBX answers 503, its
/// `failover.sip` target answers; rtpengine got one offer per call, the target's INVITE
/// names rtpengine, and RTP crosses it to the target and back.
#[test]
fn failover_target_gets_the_same_anchored_session() {
    const CALLS: usize = 2;
    let (engine, scene) = anchored_scene("media-failover");
    let n = CALLS as u64;
    let primary = scene.plain_callee("primary", "uas-unavailable.xml", scene.ports[6], n);
    let lines = media_lines(DID_FAILOVER, RELAY, RELAY, CALLS);
    let uac = scene.carrier("carrier", "uac-media-call.xml", lines);
    let backup = ("backup", "uas-media-answer.xml", scene.backup);
    let mut outcome = scene.echoed_run(uac, backup, CALLS, &[]);
    outcome.results.push(primary.finish(UAS_FINISH));
    let expected = Anchored {
        per_call: &[("offer", 1)],
        ..Anchored::call("carrier", "backup")
    };
    let results = outcome.anchored(&scene, &engine, expected);
    scene.finish(results, Some(&engine));
}

/// rtpengine takes the offer, then dies while the PBX rings: the PBX's 200 cannot be
/// answered at rtpengine, so the caller gets 503 "Media Relay Unavailable" and the PBX's
/// leg is ACKed and hung up (uas-media-answer.xml requires both).
#[test]
fn rtpengine_dying_before_the_answer_gets_503_and_the_pbx_is_hung_up() {
    let (engine, scene) = anchored_scene("media-dies");
    let echo = media_port(CALLEE_MEDIA);
    // Rings for 1.5 s: time to stop rtpengine once it holds the offer.
    let pbx = ["-d", "1500"];
    let uas = scene.callee_with("pbx", "uas-media-answer.xml", scene.ports[0], 1, echo, &pbx);
    let line = format!("{DID_PROCESS};503;Media Relay Unavailable;{RELAY}");
    let uac = scene.carrier("carrier", "uac-media-reject.xml", vec![line]);
    let (run, offered) = thread::scope(|threads| {
        let run = threads.spawn(|| uac.run(&scene.dir));
        let offered = wait_for_sessions(&engine);
        drop(engine);
        (run.join().expect("SIPp thread"), offered)
    });
    let results = vec![offered, run.check(), uas.finish(UAS_FINISH)];
    scene.finish(results, None);
}

/// Waits (bounded) until rtpengine holds at least one call.
fn wait_for_sessions(engine: &Rtpengine) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while listed(engine)?.is_empty() {
        if Instant::now() >= deadline {
            return Err("rtpengine got no session within 10 s".into());
        }
        thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// The maximum call duration (1 s) drops an anchored dialog whose BYE does not come
/// (the proxy forgets it, behaviour.md §6; it sends no BYE): its session at rtpengine is
/// deleted while the caller still holds the call (4 s). The caller's late BYE then finds
/// no dialog at the proxy, so the SIPp peers are not checked, only stopped.
#[test]
fn max_call_duration_deletes_the_session() {
    let more = Map::from_iter([("max_call_duration".to_string(), json!(1))]);
    let (engine, scene) = anchored_scene_with("media-max-duration", more);
    let echo = media_port(CALLEE_MEDIA);
    let uas = scene.callee("pbx", "uas-media-answer.xml", scene.ports[0], 1, echo);
    let lines = media_lines(DID_PROCESS, RELAY, RELAY, 1);
    let mut uac = scene.carrier("carrier", "uac-media-call.xml", lines);
    uac.extra.extend(["-d", "4000"].map(String::from));
    let (answered, deleted) = thread::scope(|threads| {
        let caller = threads.spawn(|| uac.run(&scene.dir));
        let answered = wait_answered(&engine).map(|()| Instant::now());
        let deleted = answered.clone().and_then(|at| {
            sessions_end_within(&engine, Duration::from_millis(3000))?;
            // The caller's BYE leaves at 4 s: the delete must have come before it.
            match at.elapsed() < Duration::from_millis(3500) {
                true => Ok(()),
                false => Err(format!("deleted only {:?} after the answer", at.elapsed())),
            }
        });
        let _ = caller.join();
        (answered.map(drop), deleted)
    });
    drop(uas);
    scene.finish(vec![answered, deleted], Some(&engine));
}

/// Shutdown: a call still up when the grace period (1 s) is over keeps no ports at
/// rtpengine once the proxy has exited. The call itself is left hanging (nobody BYEs
/// it), so its SIPp peers are not checked, only stopped.
#[test]
fn shutdown_deletes_the_sessions_of_calls_still_up() {
    let (engine, scene) = anchored_scene("media-shutdown");
    let uas = scene.plain_callee("pbx", "uas-answer.xml", scene.ports[0], 1);
    let line = format!("{DID_PROCESS};{DID_PROCESS}");
    let mut uac = scene.carrier("carrier", "uac-callee-hangs-up.xml", vec![line]);
    uac.extra.extend(
        [
            "-key",
            "extra_header",
            "X-Test-Direct: no",
            "-recv_timeout",
            "2500",
        ]
        .map(String::from),
    );
    let MediaScene {
        dir, proxy, setup, ..
    } = scene;
    let (up, stopped, log) = thread::scope(|threads| {
        let caller = threads.spawn(|| uac.run(&dir));
        let up = wait_answered(&engine);
        let log = proxy.log();
        let stopped = proxy.stop();
        let _ = caller.join();
        (up, stopped, log)
    });
    drop(uas);
    let _ = setup;
    let results = [up, stopped, sessions_end(&engine)];
    let problems: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    assert!(
        problems.is_empty(),
        "{}\n{log}\n--- rtpengine log ---\n{}",
        problems.join("\n\n"),
        engine.log()
    );
}

/// Waits (bounded) until rtpengine holds a call whose answer is in (a stream with the
/// callee's media address as peer).
fn wait_answered(engine: &Rtpengine) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        for call in listed(engine)? {
            let query = dict([("command", s("query")), ("call-id", s(&call))]);
            let streams = rtp_streams(&engine.ng(&query)?);
            if streams
                .iter()
                .any(|(_, peer)| peer.starts_with(&format!("{CALLEE_MEDIA}:")))
            {
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            return Err("rtpengine had no answered call within 10 s".into());
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// On-net (item 5): the PBX on [`OUT_PBX`] (`process`) calls DIDs of two servers of its
/// account, a `bypass` one and a `process` one. Either side asking for `process`
/// anchors the call, once: one offer per call, both SDPs name rtpengine, RTP crosses it.
#[test]
fn on_net_call_is_anchored_when_either_side_processes() {
    let (engine, scene) = anchored_scene("media-onnet");
    let mut results = Vec::new();
    for (name, did, port) in [
        ("to-bypass", DID_BYPASS, scene.ports[1]),
        ("to-process", DID_PROCESS, scene.ports[0]),
    ] {
        let callee = format!("{name}-pbx");
        let lines = media_lines(did, RELAY, RELAY, 1);
        let uac = scene.out_pbx(name, "uac-media-call.xml", lines);
        let pbx = (callee.as_str(), "uas-media-answer.xml", port);
        let expected = Anchored {
            per_call: &[("offer", 1)],
            ..Anchored::call(name, &callee)
        };
        let outcome = scene.echoed_run(uac, pbx, 1, &[]);
        results.extend(outcome.anchored(&scene, &engine, expected));
    }
    results.push(cdrs_say(&scene.dir, 2, &[("media", json!("anchored"))]));
    scene.finish(results, Some(&engine));
}

/// Early media whose SDP is not the answer's: the PBX's 183 (SDP version 1, a port
/// where nothing listens) and its 200 (version 2, its echo port) are each answered at
/// rtpengine; the caller's 183 and 200 both name rtpengine, and the caller's RTP goes to
/// the 200's port (the echo comes back), not the 183's.
#[test]
fn early_media_183_and_a_different_200_are_both_answered() {
    const CALLS: usize = 2;
    let (engine, scene) = anchored_scene("media-early");
    let lines = media_lines(DID_PROCESS, RELAY, RELAY, CALLS);
    let uac = scene.carrier("carrier", "uac-media-call.xml", lines);
    let pbx = ("pbx", "uas-media-early.xml", scene.ports[0]);
    let mut outcome = scene.echoed_run(uac, pbx, CALLS, &[]);
    let early = logged_call_ids(&scene.dir, "carrier", &format!("early c={RELAY} "));
    if early.len() != CALLS {
        let log = fs::read_to_string(scene.dir.file("carrier.log")).unwrap_or_default();
        outcome.results.push(Err(format!(
            "{} 183s naming rtpengine ({RELAY}), expected {CALLS}:\n{log}",
            early.len()
        )));
    }
    // Two answers each: the 183's and the 200's.
    let expected = Anchored {
        callee: None,
        per_call: &[("answer", 2)],
        ..Anchored::call("carrier", "pbx")
    };
    let results = outcome.anchored(&scene, &engine, expected);
    scene.finish(results, Some(&engine));
}

/// Item 6 from the other side: the PBX re-INVITEs the carrier in an anchored dialog.
/// The offer is the PBX's (its tag names the session's offerer): the carrier gets
/// rtpengine's SDP, the PBX the rewritten 200, RTP still crosses, the BYE deletes.
#[test]
fn reinvite_from_the_callee_is_offered_and_answered() {
    let (engine, scene) = anchored_scene("media-callee-reinvite");
    let lines = media_lines(DID_PROCESS, RELAY, RELAY, 1);
    let uac = scene.carrier("carrier", "uac-media-callee-reinvite.xml", lines);
    let pbx = ("pbx", "uas-media-callee-reinvite.xml", scene.ports[0]);
    let outcome = scene.echoed_run(uac, pbx, 1, &["-d", "300"]);
    let expected = Anchored {
        caller: ("carrier", "re-offer c="),
        callee: Some(("pbx", "re-answer c=")),
        per_call: &[("offer", 2), ("answer", 2)],
    };
    let results = outcome.anchored(&scene, &engine, expected);
    scene.finish(results, Some(&engine));
}
