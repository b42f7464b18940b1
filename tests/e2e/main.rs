//! End-to-end tests: the real `trunkstore` binary with real SIPp peers on loopback.
//!
//! A SIPp UAC plays the carrier (its source 127.0.0.1:<carrier port> is trusted by the
//! test's settings) and calls DIDs through `trunkstore serve` to SIPp UASes playing the
//! customers' PBXs (IP-auth servers at 127.0.0.1:<uas port>). Each test writes its own
//! settings and documents into a temporary directory and uses its own ports, so tests
//! run in parallel. The scenarios are in tests/sipp; their headers say what they check.
//! `TRUNKSTORE_E2E_KEEP=1` keeps every test's directory (settings, SIPp and proxy logs).

mod api;
mod baresip;
mod cluster_docs;
mod cluster_security;
mod cluster_trunks;
mod config;
mod dns;
mod harness;
mod hostile;
mod inbound;
mod media;
mod outbound;
mod ports;
mod protection;
mod proxy;
mod raw;
mod registrar;
mod rtpengine;
mod sipp;
mod soak;
mod tls;
mod transport_change;

use std::time::Duration;

use config::{dids, Pbx, ProxySetup};
use harness::{free_port, TestDir};
use proxy::Proxy;
use sipp::{Transport, Uac, Uas};

/// Header the self-check (no proxy) does not need: through the proxy the UAC adds a
/// harmless one in place of the stand-in Record-Route.
const NO_EXTRA_HEADER: &str = "X-Test-Direct: no";

/// How long a UAS may take to finish after its carrier run ended (its last calls wait
/// out their timewait).
const UAS_FINISH: Duration = Duration::from_secs(20);

/// One test's proxy: directory, ports, the running process.
struct Scene {
    dir: TestDir,
    setup: ProxySetup,
    proxy: Proxy,
}

impl Scene {
    /// Writes the settings and the PBXs' document, starts the proxy, waits until ready.
    fn start(test: &str, pbxs: &[Pbx]) -> Scene {
        Scene::start_with(test, pbxs, serde_json::Map::new(), serde_json::json!({}))
    }

    /// As [`Scene::start`], with more settings and the document's `account` object.
    fn start_with(
        test: &str,
        pbxs: &[Pbx],
        settings: serde_json::Map<String, serde_json::Value>,
        account: serde_json::Value,
    ) -> Scene {
        Scene::start_with_setup(test, pbxs, |_| settings, account)
    }

    /// As [`Scene::start_with`], with settings that depend on the test's ports (e.g. a
    /// carrier with more sources than the default one).
    fn start_with_setup(
        test: &str,
        pbxs: &[Pbx],
        settings: impl FnOnce(&ProxySetup) -> serde_json::Map<String, serde_json::Value>,
        account: serde_json::Value,
    ) -> Scene {
        let _sipp = sipp::sipp_binary();
        let dir = TestDir::new(test);
        let mut setup = ProxySetup {
            port: free_port(),
            carrier_port: free_port(),
            api_port: free_port(),
            extra: serde_json::Map::new(),
        };
        setup.extra = settings(&setup);
        let settings = config::write_with_account(&dir, &setup, pbxs, account);
        let proxy = Proxy::start(&dir, &settings, &setup);
        Scene { dir, setup, proxy }
    }

    fn uas(&self, name: &str, scenario: &str, port: u16, calls: u64) -> Uas {
        Uas::start(&self.dir, name, scenario, port, calls, calls / 10 + 60)
    }

    /// A carrier run from the trusted source.
    fn carrier<'a>(&self, name: &'a str, scenario: &'a str, lines: Vec<String>) -> Uac<'a> {
        Uac {
            name,
            scenario,
            proxy_port: self.setup.port,
            local_port: self.setup.carrier_port,
            transport: Transport::Udp,
            lines,
            rate: 20,
            extra: vec!["-key".into(), "extra_header".into(), NO_EXTRA_HEADER.into()],
        }
    }

    /// Stops the proxy (SIGTERM, must exit 0) and fails the test with every problem
    /// seen, each with its logs, plus the proxy's log.
    fn finish(self, results: Vec<Result<(), String>>) {
        finish_proxy(self.proxy, results, Vec::new);
    }
}

/// Stops `proxy` (SIGTERM, must exit 0) and fails the test with every problem seen;
/// when a call had problems, with the proxy's log and the logs `more_logs` gives (other
/// real components of the test).
fn finish_proxy(
    proxy: Proxy,
    results: Vec<Result<(), String>>,
    more_logs: impl FnOnce() -> Vec<String>,
) {
    let log = proxy.log();
    let stopped = proxy.stop();
    let mut problems: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    let had_call_problems = !problems.is_empty();
    if let Err(why) = stopped {
        problems.push(why);
    }
    if had_call_problems {
        problems.push(log);
        problems.extend(more_logs());
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

/// The proxy's `/metrics` page from its API listener (no token needed).
fn metrics_page(api_port: u16) -> Result<String, String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(harness::addr(api_port))
        .map_err(|e| format!("connect API: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).map_err(|e| e.to_string())?;
    let (head, body) = raw.split_once("\r\n\r\n").ok_or("no HTTP header end")?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("/metrics: {head}"));
    }
    Ok(body.to_string())
}

/// Every `(series, value)` is on the proxy's `/metrics` page with that value.
fn check_metrics(scene: &Scene, expected: &[(&str, u64)]) -> Result<(), String> {
    check_metrics_at(scene.setup.api_port, expected)
}

/// As [`check_metrics`], for the proxy whose API listens on `api_port`.
fn check_metrics_at(api_port: u16, expected: &[(&str, u64)]) -> Result<(), String> {
    let page = metrics_page(api_port)?;
    let mut wrong = Vec::new();
    for (series, value) in expected {
        let found = page
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '));
        if found != Some(value.to_string().as_str()) {
            wrong.push(format!("{series}: {found:?}, expected {value}"));
        }
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(format!("/metrics: {}\n{page}", wrong.join("; ")))
    }
}

/// Waits (at most 5 s) until `series` reads `value` on the proxy whose API listens on
/// `api_port`: for state that reaches a node through another (a cluster's Redis).
fn await_metric_at(api_port: u16, series: &str, value: u64) -> Result<(), String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match check_metrics_at(api_port, &[(series, value)]) {
            Ok(()) => return Ok(()),
            Err(why) if std::time::Instant::now() >= deadline => return Err(why),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// The Request-URI user the PBX must receive for `did` (+1NPANXXXXXX) in `format`.
fn expected_user(did: &str, format: &str, auth_user: Option<&str>) -> String {
    match format {
        "e164" => did.to_string(),
        "npan" => did.trim_start_matches("+1").to_string(),
        "1npan" => did.trim_start_matches('+').to_string(),
        "username" => auth_user.unwrap_or(did).to_string(),
        other => panic!("unknown format {other}"),
    }
}

/// Injection lines for uac-call.xml: every DID of `pbx`, cycled to `calls` lines.
fn call_lines(pbx: &Pbx, calls: usize) -> Vec<String> {
    pbx.dids
        .iter()
        .cycle()
        .take(calls)
        .map(|did| format!("{did};{}", expected_user(did, pbx.format, pbx.auth_user)))
        .collect()
}

/// `calls` answered calls from the carrier over `transport` to one npan PBX; every
/// message (ACK and BYE too) crosses the proxy.
fn answered_calls(test: &str, transport: Transport, calls: usize, rate: u32) {
    let _serial = harness::load_lock();
    let pbx = Pbx::new("pbx", free_port(), "npan", dids(0, 1000));
    let scene = Scene::start(test, std::slice::from_ref(&pbx));
    let uas = scene.uas("uas", "uas-answer.xml", pbx.port, calls as u64);
    let mut uac = scene.carrier("uac", "uac-call.xml", call_lines(&pbx, calls));
    uac.transport = transport;
    uac.rate = rate;
    let run = uac.run(&scene.dir);
    let mut results = vec![run.check(), uas.finish(UAS_FINISH)];
    let n = calls as u64;
    results.push(check_metrics(
        &scene,
        &[
            (
                "trunkstore_calls_total{direction=\"inbound\",outcome=\"answered\"}",
                n,
            ),
            (
                "trunkstore_calls_total{direction=\"inbound\",outcome=\"failed\"}",
                0,
            ),
            (
                "trunkstore_calls_total{direction=\"inbound\",outcome=\"rejected\"}",
                0,
            ),
            (
                "trunkstore_calls_total{direction=\"outbound\",outcome=\"answered\"}",
                0,
            ),
            (
                "trunkstore_final_response_seconds_count{direction=\"inbound\"}",
                n,
            ),
            ("trunkstore_failovers_total{reason=\"response\"}", 0),
            ("trunkstore_active_calls", 0),
            ("trunkstore_parse_errors_total", 0),
        ],
    ));
    scene.finish(results);
}

#[test]
fn udp_1000_answered_calls_cross_the_proxy() {
    answered_calls("udp-calls", Transport::Udp, 1000, 200);
}

#[test]
fn tcp_200_answered_calls_cross_the_proxy() {
    answered_calls("tcp-calls", Transport::Tcp, 200, 100);
}

/// The PBX hangs up: its BYE follows the route set from the INVITE's Record-Route back
/// through the proxy to the carrier (over the carrier's transport).
fn callee_hangs_up(test: &str, transport: Transport) {
    const CALLS: usize = 20;
    let pbx = Pbx::new("pbx", free_port(), "npan", dids(0, 5));
    let scene = Scene::start(test, std::slice::from_ref(&pbx));
    let uas = scene.uas("uas", "uas-hangup.xml", pbx.port, CALLS as u64);
    let mut uac = scene.carrier("uac", "uac-callee-hangs-up.xml", call_lines(&pbx, CALLS));
    uac.transport = transport;
    let run = uac.run(&scene.dir);
    let results = vec![run.check(), uas.finish(UAS_FINISH)];
    scene.finish(results);
}

#[test]
fn callee_hangs_up_udp() {
    callee_hangs_up("hangup-udp", Transport::Udp);
}

#[test]
fn callee_hangs_up_tcp() {
    callee_hangs_up("hangup-tcp", Transport::Tcp);
}

#[test]
fn request_uri_user_follows_inbound_format() {
    let mut username = Pbx::new("pbx-username", free_port(), "username", dids(30, 1));
    username.auth_user = Some("pbx-user");
    let pbxs = [
        Pbx::new("pbx-e164", free_port(), "e164", dids(0, 1)),
        Pbx::new("pbx-npan", free_port(), "npan", dids(10, 1)),
        Pbx::new("pbx-1npan", free_port(), "1npan", dids(20, 1)),
        username,
    ];
    const CALLS_EACH: usize = 3;
    let scene = Scene::start("inbound-format", &pbxs);
    let uases: Vec<Uas> = pbxs
        .iter()
        .map(|p| scene.uas(p.name, "uas-answer.xml", p.port, CALLS_EACH as u64))
        .collect();
    let lines: Vec<String> = pbxs
        .iter()
        .flat_map(|p| call_lines(p, CALLS_EACH))
        .collect();
    let run = scene.carrier("uac", "uac-call.xml", lines).run(&scene.dir);
    let mut results = vec![run.check()];
    results.extend(uases.into_iter().map(|u| u.finish(UAS_FINISH)));
    scene.finish(results);
}

#[test]
fn caller_cancels_while_ringing() {
    const CALLS: usize = 20;
    let pbx = Pbx::new("pbx", free_port(), "npan", dids(0, 5));
    let scene = Scene::start("cancel", std::slice::from_ref(&pbx));
    let uas = scene.uas("uas", "uas-cancel.xml", pbx.port, CALLS as u64);
    let lines = pbx.dids.iter().cycle().take(CALLS).cloned().collect();
    let run = scene
        .carrier("uac", "uac-cancel.xml", lines)
        .run(&scene.dir);
    let results = vec![run.check(), uas.finish(UAS_FINISH)];
    scene.finish(results);
}

/// A 486 ends the call: no failover (the failover target has no listener, so a wrong
/// failover would end the call with another status).
#[test]
fn busy_pbx_486_reaches_the_caller() {
    const CALLS: usize = 10;
    let mut pbx = Pbx::new("pbx", free_port(), "npan", dids(0, 5));
    pbx.failover_sip = Some(format!("sip:4155550000@127.0.0.1:{}", free_port()));
    let scene = Scene::start("busy", std::slice::from_ref(&pbx));
    let uas = scene.uas("uas", "uas-busy.xml", pbx.port, CALLS as u64);
    let lines = pbx.dids.iter().cycle().take(CALLS);
    let lines = lines.map(|did| format!("{did};486;70")).collect();
    let run = scene
        .carrier("uac", "uac-reject.xml", lines)
        .run(&scene.dir);
    let results = vec![run.check(), uas.finish(UAS_FINISH)];
    scene.finish(results);
}

/// A 503 from the PBX triggers its `failover.sip`: the call is answered there, with the
/// failover URI as Request-URI.
#[test]
fn failover_after_503() {
    const CALLS: usize = 10;
    let backup_port = free_port();
    let mut pbx = Pbx::new("pbx", free_port(), "npan", dids(0, 1));
    pbx.failover_sip = Some(format!("sip:backup-line@127.0.0.1:{backup_port}"));
    let scene = Scene::start("failover", std::slice::from_ref(&pbx));
    let primary = scene.uas("primary", "uas-unavailable.xml", pbx.port, CALLS as u64);
    let backup = scene.uas("backup", "uas-answer.xml", backup_port, CALLS as u64);
    let lines = vec![format!("{};backup-line", pbx.dids[0]); CALLS];
    let run = scene.carrier("uac", "uac-call.xml", lines).run(&scene.dir);
    let results = vec![
        run.check(),
        primary.finish(UAS_FINISH),
        backup.finish(UAS_FINISH),
    ];
    scene.finish(results);
}

/// Calls the proxy itself must refuse (no PBX involved): `lines` for uac-reject.xml,
/// sent from the trusted carrier source unless `from_port` says otherwise.
fn refused_calls(test: &str, lines: Vec<String>, from_port: Option<u16>) {
    let pbx = Pbx::new("pbx", free_port(), "npan", dids(0, 5));
    let scene = Scene::start(test, std::slice::from_ref(&pbx));
    let mut uac = scene.carrier("uac", "uac-reject.xml", lines);
    if let Some(port) = from_port {
        uac.local_port = port;
    }
    let run = uac.run(&scene.dir);
    scene.finish(vec![run.check()]);
}

#[test]
fn unknown_did_gets_404() {
    refused_calls("unknown-did", vec!["+14155559999;404;70".into(); 3], None);
}

#[test]
fn unknown_source_is_challenged() {
    // Not a carrier nor an IP-auth server: it must authenticate as a password server
    // (behaviour.md §3).
    let stranger = free_port();
    refused_calls(
        "unknown-source",
        vec!["+14155550000;407;70".into(); 3],
        Some(stranger),
    );
}

#[test]
fn max_forwards_zero_gets_483() {
    refused_calls("max-forwards", vec!["+14155550000;483;0".into(); 3], None);
}

#[test]
fn malformed_max_forwards_gets_400() {
    refused_calls(
        "malformed-sipp",
        vec!["+14155550000;400;ten".into(); 3],
        None,
    );
}

/// Malformed in a way SIPp cannot send on purpose: a CSeq method that is not the
/// request's. A response can still be built, so the proxy must answer 400.
#[test]
fn malformed_cseq_method_gets_400() {
    let pbx = Pbx::new("pbx", free_port(), "npan", dids(0, 1));
    let scene = Scene::start("malformed-raw", std::slice::from_ref(&pbx));
    let ruri = format!("sip:+14155550000@127.0.0.1:{}", scene.setup.port);
    let request = raw::request_text(
        "INVITE",
        &ruri,
        scene.setup.carrier_port,
        scene.setup.port,
        &[("CSeq", "1 BYE")],
    );
    let reply = raw::exchange(
        scene.setup.carrier_port,
        scene.setup.port,
        &request,
        Duration::from_secs(3),
    );
    let verdict = match reply.as_deref().map(|r| (raw::status_code(r), r)) {
        Some((Some(400), _)) => Ok(()),
        Some((_, text)) => Err(format!("expected 400, got:\n{text}")),
        None => Err("no response within 3 s (expected 400)".to_string()),
    };
    scene.finish(vec![
        verdict.map_err(|why| format!("{why}\nrequest:\n{request}"))
    ]);
}

#[test]
fn options_to_the_proxy_gets_200() {
    let pbx = Pbx::new("pbx", free_port(), "npan", dids(0, 1));
    let scene = Scene::start("options", std::slice::from_ref(&pbx));
    let run = scene
        .carrier("uac", "uac-options.xml", vec!["-".into(); 3])
        .run(&scene.dir);
    scene.finish(vec![run.check()]);
}

/// The scenarios against each other without the proxy, so a failure of the tests
/// above can be told apart from a broken rig. The UAC adds a Record-Route naming
/// itself, standing in for the proxy's (the UAS and UAC insist on one).
#[test]
fn sipp_scenarios_self_check() {
    let _sipp = sipp::sipp_binary();
    let dir = TestDir::new("self-check");
    let pairs: [(&str, &str, &str, Vec<String>); 4] = [
        (
            "answer",
            "uas-answer.xml",
            "uac-call.xml",
            vec!["+14155550000;+14155550000".into(); 5],
        ),
        (
            "hangup",
            "uas-hangup.xml",
            "uac-callee-hangs-up.xml",
            vec!["+14155550000;+14155550000".into(); 5],
        ),
        (
            "cancel",
            "uas-cancel.xml",
            "uac-cancel.xml",
            vec!["+14155550000".into(); 5],
        ),
        (
            "busy",
            "uas-busy.xml",
            "uac-reject.xml",
            vec!["+14155550000;486;70".into(); 5],
        ),
    ];
    let mut problems = Vec::new();
    for (name, uas_scenario, uac_scenario, lines) in pairs {
        let uas_port = free_port();
        let uac_port = free_port();
        let uas_name = format!("{name}-uas");
        let uas = Uas::start(
            &dir,
            &uas_name,
            uas_scenario,
            uas_port,
            lines.len() as u64,
            60,
        );
        let record_route = format!("Record-Route: <sip:127.0.0.1:{uac_port};lr>");
        let uac_name = format!("{name}-uac");
        let run = Uac {
            name: &uac_name,
            scenario: uac_scenario,
            proxy_port: uas_port,
            local_port: uac_port,
            transport: Transport::Udp,
            lines,
            rate: 20,
            extra: vec!["-key".into(), "extra_header".into(), record_route],
        }
        .run(&dir);
        problems.extend(run.check().err());
        problems.extend(uas.finish(UAS_FINISH).err());
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

/// The checks in the scenarios must be able to fail: a Request-URI user other than the
/// expected one fails both peers, a final status other than the expected one fails the
/// carrier (the PBX did its part).
#[test]
fn sipp_scenarios_self_check_detects_mismatches() {
    let _sipp = sipp::sipp_binary();
    let dir = TestDir::new("self-check-neg");
    let cases: [(&str, &str, &str, Vec<String>, bool); 2] = [
        (
            "wrong-user",
            "uas-answer.xml",
            "uac-call.xml",
            vec!["+14155550000;4155550000".into()],
            true,
        ),
        (
            "wrong-status",
            "uas-busy.xml",
            "uac-reject.xml",
            vec!["+14155550000;404;70".into()],
            false,
        ),
    ];
    for (name, uas_scenario, uac_scenario, lines, uas_fails) in cases {
        let uas_port = free_port();
        let uac_port = free_port();
        let uas_name = format!("{name}-uas");
        let uas = Uas::start(&dir, &uas_name, uas_scenario, uas_port, 1, 30);
        let uac_name = format!("{name}-uac");
        let run = Uac {
            name: &uac_name,
            scenario: uac_scenario,
            proxy_port: uas_port,
            local_port: uac_port,
            transport: Transport::Udp,
            lines,
            rate: 10,
            extra: vec![
                "-key".into(),
                "extra_header".into(),
                format!("Record-Route: <sip:127.0.0.1:{uac_port};lr>"),
            ],
        }
        .run(&dir);
        assert!(run.check().is_err(), "{name}: the carrier run passed");
        let uas_result = uas.finish(UAS_FINISH);
        if uas_fails {
            assert!(uas_result.is_err(), "{name}: the PBX run passed");
        }
    }
}
