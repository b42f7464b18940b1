//! Inbound trunk routing end to end (behaviour.md §4, issue 5): delay, progress and
//! answer timeouts, no response, failover (sip and e164), early media, sip_headers,
//! disabled servers, and the 5,000-call failover run.
//!
//! Timers are measured by the carrier scenario (uac-timed.xml logs gettimeofday when
//! the INVITE leaves and when its final response arrives) and must be within 10% +
//! 100 ms of their configured values.

use std::fs;
use std::net::UdpSocket;
use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::config::{dids, Pbx};
use crate::harness::{self, free_port, TestDir};
use crate::sipp::Uas;
use crate::{check_metrics, Scene, UAS_FINISH};

/// The failover URI's user: uas-answer.xml at the failover target checks it.
const BACKUP_USER: &str = "backup-line";

fn backup_uri(port: u16) -> String {
    format!("sip:{BACKUP_USER}@127.0.0.1:{port}")
}

/// The primary PBX (npan, one DID) with `options`.
fn pbx(options: Value) -> Pbx {
    let mut p = Pbx::new("pbx", free_port(), "npan", dids(0, 1));
    if let Value::Object(o) = options {
        p.options = o;
    }
    p
}

/// The primary PBX with `options` and a `failover.sip` target at a port of its own
/// (returned).
fn pbx_with_backup(options: Value) -> (Pbx, u16) {
    let backup_port = free_port();
    let mut p = pbx(options);
    p.failover_sip = Some(backup_uri(backup_port));
    (p, backup_port)
}

/// A serial uac-timed run of `calls` calls that the failover target at `backup_port`
/// answers: the run's result and the target's.
fn run_failed_over(
    scene: &Scene,
    p: &Pbx,
    backup_port: u16,
    calls: usize,
) -> [Result<(), String>; 2] {
    let backup = uas(scene, "backup", "uas-answer.xml", backup_port, calls as u64);
    let run = run_timed(scene, timed_lines(p, BACKUP_USER, 200, calls));
    [run, backup.finish(UAS_FINISH)]
}

fn npan(did: &str) -> String {
    did.trim_start_matches("+1").to_string()
}

/// `calls` lines for uac-timed.xml: the PBX's DID, the user the answering PBX must see,
/// the final status.
fn timed_lines(pbx: &Pbx, expect_user: &str, status: u16, calls: usize) -> Vec<String> {
    vec![format!("{};{expect_user};{status}", pbx.dids[0]); calls]
}

/// Elapsed milliseconds (INVITE sent → final response) of every call of a uac-timed run.
fn timings(dir: &TestDir, uac: &str) -> Vec<f64> {
    let text = fs::read_to_string(dir.file(&format!("{uac}.log"))).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let i = f.iter().position(|w| *w == "TIMING")?;
            let n = |k: usize| f.get(i + k)?.parse::<f64>().ok();
            let start = n(2)? * 1000.0 + n(3)? / 1000.0;
            let end = n(4)? * 1000.0 + n(5)? / 1000.0;
            Some(end - start)
        })
        .collect()
}

/// Every call took `expected` within 10% + 100 ms; says the measured range.
fn check_timer(dir: &TestDir, uac: &str, expected_ms: f64, calls: usize) -> Result<(), String> {
    let t = timings(dir, uac);
    let tolerance = expected_ms * 0.1 + 100.0;
    let (min, max) = t
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
    eprintln!(
        "[{uac}] {} calls, expected {expected_ms} ms, measured {min:.1}..{max:.1} ms",
        t.len()
    );
    expect_count(uac, &t, calls)?;
    if t.iter().any(|x| (x - expected_ms).abs() > tolerance) {
        return Err(format!(
            "{uac}: timer off by more than {tolerance} ms: {min:.1}..{max:.1} ms, expected {expected_ms} ms"
        ));
    }
    Ok(())
}

/// One timing per call: none missing from the log.
fn expect_count(uac: &str, timings: &[f64], calls: usize) -> Result<(), String> {
    match timings.len() == calls {
        true => Ok(()),
        false => Err(format!(
            "{uac}: {} timings logged, expected {calls}",
            timings.len()
        )),
    }
}

/// A carrier run of uac-timed.xml, serial (one call at a time) so every call sees the
/// timers alone.
fn run_timed(scene: &Scene, lines: Vec<String>) -> Result<(), String> {
    let mut uac = scene.carrier("uac", "uac-timed.xml", lines);
    uac.rate = 2;
    uac.extra = vec!["-l".into(), "1".into()];
    uac.run(&scene.dir).check()
}

/// Settings that write CDRs to `cdr.jsonl` in the test directory.
fn with_cdr() -> Map<String, Value> {
    [("cdr".to_string(), json!({"file": "cdr.jsonl"}))]
        .into_iter()
        .collect()
}

/// The CDR lines once `expected` are there (the writer flushes within milliseconds).
fn cdr_lines(dir: &TestDir, expected: usize) -> Result<Vec<Value>, String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    loop {
        let text = fs::read_to_string(dir.file("cdr.jsonl")).unwrap_or_default();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).map_err(|e| format!("bad CDR line {l}: {e}")))
            .collect::<Result<_, _>>()?;
        if lines.len() >= expected || std::time::Instant::now() > deadline {
            return match lines.len() == expected {
                true => Ok(lines),
                false => Err(format!(
                    "{} CDR lines, expected {expected}:\n{text}",
                    lines.len()
                )),
            };
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every CDR line has `field` equal to `value`.
fn cdr_all(lines: &[Value], field: &str, value: Value) -> Result<(), String> {
    match lines.iter().find(|l| l[field] != value) {
        Some(l) => Err(format!("CDR {field} should be {value}: {l}")),
        None => Ok(()),
    }
}

fn uas(scene: &Scene, name: &str, scenario: &str, port: u16, calls: u64) -> Uas {
    scene.uas(name, scenario, port, calls)
}

#[test]
fn delay_holds_the_invite() {
    const CALLS: usize = 4;
    let p = pbx(json!({"delay": 1}));
    let scene = Scene::start_with("delay", std::slice::from_ref(&p), with_cdr(), json!({}));
    let server = uas(&scene, "uas", "uas-answer.xml", p.port, CALLS as u64);
    let run = run_timed(&scene, timed_lines(&p, &npan(&p.dids[0]), 200, CALLS));
    let timer = check_timer(&scene.dir, "uac", 1000.0, CALLS);
    // One line per call: answered by the first attempt, after the delay.
    let cdr = cdr_lines(&scene.dir, CALLS).and_then(|lines| {
        cdr_all(&lines, "final_code", json!(200))?;
        cdr_all(&lines, "direction", json!("inbound"))?;
        cdr_all(&lines, "did", json!(p.dids[0]))?;
        cdr_all(&lines, "account", json!("e2e"))?;
        cdr_all(&lines, "server", json!("pbx"))?;
        cdr_all(&lines, "answered_attempt", json!(1))?;
        cdr_all(&lines, "failover", json!(false))?;
        // Calls from carriers take a trunk of the DID's account (behaviour.md §6).
        cdr_all(&lines, "trunk_held", json!(true))?;
        match lines
            .iter()
            .find(|l| !l["answer"].is_string() || !l["end"].is_string())
        {
            Some(l) => Err(format!("CDR without answer/end time: {l}")),
            None => Ok(()),
        }
    });
    scene.finish(vec![run, timer, cdr, server.finish(UAS_FINISH)]);
}

/// The caller CANCELs while the proxy holds the INVITE: 487, and the PBX never sees a
/// packet (a plain socket on its port proves it).
#[test]
fn cancel_during_delay_gets_487_and_the_server_sees_nothing() {
    const CALLS: usize = 3;
    let p = pbx(json!({"delay": 3}));
    let listener = UdpSocket::bind(("127.0.0.1", p.port)).expect("bind the PBX port");
    let scene = Scene::start("cancel-delay", std::slice::from_ref(&p));
    let lines = vec![p.dids[0].clone(); CALLS];
    let run = scene
        .carrier("uac", "uac-cancel-early.xml", lines)
        .run(&scene.dir)
        .check();
    // Past the delay of the last call: anything sent would have arrived by now.
    std::thread::sleep(Duration::from_secs(3));
    listener.set_nonblocking(true).expect("nonblocking");
    let mut buf = [0u8; 2048];
    let seen = match listener.recv(&mut buf) {
        Ok(n) => Err(format!(
            "the PBX got a packet:\n{}",
            String::from_utf8_lossy(&buf[..n])
        )),
        Err(_) => Ok(()),
    };
    scene.finish(vec![run, seen]);
}

/// Primary `scenario` fails (per its kind), the failover target answers; the caller's
/// 200 arrives `expected_ms` after the INVITE.
fn fails_over_after(test: &str, scenario: &str, options: Value, expected_ms: f64) {
    const CALLS: usize = 3;
    let (p, backup_port) = pbx_with_backup(options);
    let scene = Scene::start(test, std::slice::from_ref(&p));
    let primary = uas(&scene, "primary", scenario, p.port, CALLS as u64);
    let [run, backup] = run_failed_over(&scene, &p, backup_port, CALLS);
    let timer = check_timer(&scene.dir, "uac", expected_ms, CALLS);
    scene.finish(vec![run, timer, primary.finish(UAS_FINISH), backup]);
}

#[test]
fn progress_timeout_after_100_cancels_and_fails_over() {
    fails_over_after(
        "progress-timeout",
        "uas-trying.xml",
        json!({"progress_timeout": 1}),
        1000.0,
    );
}

#[test]
fn silent_server_fails_over_at_progress_timeout() {
    fails_over_after(
        "silent",
        "uas-silent.xml",
        json!({"progress_timeout": 1}),
        1000.0,
    );
}

/// The PBX rings, the answer timeout CANCELs it, it answers anyway: the proxy ACKs and
/// BYEs that 200 (uas-ring-late.xml requires both) and the caller gets the failover's.
#[test]
fn answer_timeout_fails_over_and_a_late_200_is_hung_up() {
    fails_over_after(
        "answer-timeout",
        "uas-ring-late.xml",
        json!({"progress_timeout": 1, "timeout": 2}),
        2000.0,
    );
}

/// Item 9 of issue 13: the PBX answers 200 after the answer timeout made the proxy
/// CANCEL it, and that exchange loses 20% of its datagrams (SIPp `-lost 20` on the PBX
/// side; uas-ring-late-lossy.xml). Every late 200 must still be ACKed and hung up: the
/// PBX gets the BYE of every call (timer E brings it through), along the 200's route
/// set, and answers it; the caller only ever sees its 408.
#[test]
fn late_200s_under_20_percent_loss_are_all_acked_and_hung_up() {
    const CALLS: usize = 30;
    let p = pbx(json!({"timeout": 1}));
    let scene = Scene::start("late-200-lossy", std::slice::from_ref(&p));
    let primary = Uas::start_with(
        &scene.dir,
        "primary",
        "uas-ring-late-lossy.xml",
        p.port,
        CALLS as u64,
        // Bounds only: the last call's BYE may take up to a minute (the scenario's wait).
        100,
        // A UAS retransmits its 2xx until timer H (64·T1 = 32 s, RFC 3261 §13.3.1.4);
        // SIPp gives up after 5 by default (~6 s), which 20% loss can outlast when the
        // ACKs and the first BYEs are all lost: 10 retransmissions ≈ 32 s.
        &["-lost", "20", "-max_retrans", "10"],
    );
    // Concurrent calls (10/s): each ends with 408 at the 1 s answer timeout.
    let mut uac = scene.carrier("uac", "uac-timed.xml", timed_lines(&p, "-", 408, CALLS));
    uac.rate = 10;
    let run = uac.run(&scene.dir).check();
    let timer = check_timer(&scene.dir, "uac", 1000.0, CALLS);
    let uas = primary.finish(Duration::from_secs(90));
    let n = CALLS as u64;
    let metrics = check_metrics(
        &scene,
        &[
            ("trunkstore_late_2xx_total", n),
            ("trunkstore_late_2xx_byes_total{outcome=\"answered\"}", n),
            ("trunkstore_late_2xx_byes_total{outcome=\"refused\"}", 0),
            ("trunkstore_late_2xx_byes_total{outcome=\"timeout\"}", 0),
            (
                "trunkstore_calls_total{direction=\"inbound\",outcome=\"answered\"}",
                0,
            ),
        ],
    );
    scene.finish(vec![run, timer, uas, metrics]);
}

/// The PBX's port is open but nothing answers: timer B (64·T1, T1 = 50 ms here) ends
/// the attempt and the failover runs. (With the port closed, ICMP would end it at once:
/// see `closed_udp_port_fails_over_in_under_a_second`.)
#[test]
fn no_response_fails_over_after_timer_b() {
    const CALLS: usize = 2;
    let (p, backup_port) = pbx_with_backup(json!({"progress_timeout": 30, "timeout": 60}));
    let _silent = UdpSocket::bind(("127.0.0.1", p.port)).expect("bind the PBX port");
    let settings: Map<String, Value> = [("timers".to_string(), json!({"t1_ms": 50}))]
        .into_iter()
        .collect();
    let scene = Scene::start_with("timer-b", std::slice::from_ref(&p), settings, json!({}));
    let [run, backup] = run_failed_over(&scene, &p, backup_port, CALLS);
    let timer = check_timer(&scene.dir, "uac", 3200.0, CALLS);
    scene.finish(vec![run, timer, backup]);
}

/// Every call of a uac-timed run got its final response within `limit_ms` of its
/// INVITE; says the measured range.
fn check_within(dir: &TestDir, uac: &str, limit_ms: f64, calls: usize) -> Result<(), String> {
    let t = timings(dir, uac);
    let max = t.iter().copied().fold(0.0, f64::max);
    eprintln!(
        "[{uac}] {} calls, INVITE → final response at most {max:.1} ms (limit {limit_ms} ms)",
        t.len()
    );
    expect_count(uac, &t, calls)?;
    match t.iter().any(|x| *x >= limit_ms) {
        true => Err(format!(
            "{uac}: a call took {max:.1} ms, limit {limit_ms} ms"
        )),
        false => Ok(()),
    }
}

/// `trunkstore_transport_errors_total{kind="icmp"}` is at least `min`: one per INVITE to
/// the closed port (a datagram to the carrier after SIPp exited may add one).
fn check_icmp_errors(scene: &Scene, min: u64) -> Result<(), String> {
    const SERIES: &str = "trunkstore_transport_errors_total{kind=\"icmp\"} ";
    let page = crate::metrics_page(scene.setup.api_port)?;
    let n = page
        .lines()
        .find_map(|l| l.strip_prefix(SERIES)?.parse::<u64>().ok());
    match n {
        Some(n) if n >= min => Ok(()),
        _ => Err(format!("{SERIES}{n:?}, expected at least {min}\n{page}")),
    }
}

/// Issue 17 item 4: nothing listens at the PBX's UDP port, so the kernel answers its
/// INVITE with ICMP port unreachable (on loopback as on a real network): the attempt
/// fails at once (RFC 3261 §18.4, a 503 for the branch) and the failover target gets
/// the INVITE in well under a second, not after timer B (32 s). Measured by the carrier:
/// INVITE sent → the failover's 200 received, which bounds from above when the failover
/// target saw its INVITE.
#[test]
fn closed_udp_port_fails_over_in_under_a_second() {
    const CALLS: usize = 3;
    let (p, backup_port) = pbx_with_backup(json!({}));
    let scene = Scene::start("icmp-failover", std::slice::from_ref(&p));
    let [run, backup] = run_failed_over(&scene, &p, backup_port, CALLS);
    let fast = check_within(&scene.dir, "uac", 1000.0, CALLS);
    let n = CALLS as u64;
    let metrics = check_metrics(
        &scene,
        &[
            ("trunkstore_failovers_total{reason=\"transport\"}", n),
            ("trunkstore_failovers_total{reason=\"timeout\"}", 0),
        ],
    );
    let icmp = check_icmp_errors(&scene, n);
    scene.finish(vec![run, fast, metrics, icmp, backup]);
}

/// As above without a failover: the carrier gets the branch's 503 relayed as 500
/// (behaviour.md §4.8, as for a refused TCP connect) within a second, instead of a
/// timeout at the progress timeout or timer B.
#[test]
fn closed_udp_port_without_failover_is_500_at_once() {
    const CALLS: usize = 2;
    let p = pbx(json!({}));
    let scene = Scene::start("icmp-500", std::slice::from_ref(&p));
    let run = run_timed(&scene, timed_lines(&p, "-", 500, CALLS));
    let fast = check_within(&scene.dir, "uac", 1000.0, CALLS);
    let icmp = check_icmp_errors(&scene, CALLS as u64);
    scene.finish(vec![run, fast, icmp]);
}

/// Timers expire and no failover is configured: 408 at the progress timeout.
#[test]
fn timeout_without_failover_is_408() {
    const CALLS: usize = 3;
    let p = pbx(json!({"progress_timeout": 1}));
    let scene = Scene::start("timeout-408", std::slice::from_ref(&p));
    let primary = uas(&scene, "primary", "uas-trying.xml", p.port, CALLS as u64);
    let run = run_timed(&scene, timed_lines(&p, "-", 408, CALLS));
    let timer = check_timer(&scene.dir, "uac", 1000.0, CALLS);
    scene.finish(vec![run, timer, primary.finish(UAS_FINISH)]);
}

/// The failover fails too (503 → 500 for the caller); exactly one failover attempt.
#[test]
fn failover_failing_too_gives_the_best_response() {
    const CALLS: usize = 3;
    let (p, backup_port) = pbx_with_backup(json!({}));
    let scene = Scene::start_with(
        "failover-fails",
        std::slice::from_ref(&p),
        with_cdr(),
        json!({}),
    );
    let primary = uas(
        &scene,
        "primary",
        "uas-unavailable.xml",
        p.port,
        CALLS as u64,
    );
    let backup = uas(
        &scene,
        "backup",
        "uas-unavailable.xml",
        backup_port,
        CALLS as u64,
    );
    let run = run_timed(&scene, timed_lines(&p, "-", 500, CALLS));
    let cdr = cdr_lines(&scene.dir, CALLS).and_then(|lines| {
        cdr_all(&lines, "final_code", json!(500))?;
        cdr_all(&lines, "failover", json!(true))?;
        cdr_all(&lines, "answer", Value::Null)?;
        cdr_all(&lines, "answered_attempt", Value::Null)
    });
    let metrics = check_metrics(
        &scene,
        &[
            (
                "trunkstore_failovers_total{reason=\"response\"}",
                CALLS as u64,
            ),
            ("trunkstore_failovers_total{reason=\"timeout\"}", 0),
            (
                "trunkstore_calls_total{direction=\"inbound\",outcome=\"failed\"}",
                CALLS as u64,
            ),
            (
                "trunkstore_calls_total{direction=\"inbound\",outcome=\"answered\"}",
                0,
            ),
        ],
    );
    scene.finish(vec![
        run,
        cdr,
        metrics,
        primary.finish(UAS_FINISH),
        backup.finish(UAS_FINISH),
    ]);
}

/// `failover.e164` naming one of our own DIDs: the call goes to that DID's server with
/// its inbound format (1npan here); e164 wins over sip.
#[test]
fn e164_failover_to_our_own_did() {
    const CALLS: usize = 3;
    let other = Pbx::new("other", free_port(), "1npan", dids(50, 1));
    let failover = json!({"e164": other.dids[0], "sip": "sip:nobody@127.0.0.1:9"});
    let mut p = pbx(json!({ "failover": failover }));
    p.name = "primary";
    let (primary_port, target_port) = (p.port, other.port);
    let user = other.dids[0].trim_start_matches('+').to_string();
    let pbxs = [p, other];
    let scene = Scene::start("failover-e164", &pbxs);
    let p = &pbxs[0];
    let primary = uas(
        &scene,
        "primary",
        "uas-unavailable.xml",
        primary_port,
        CALLS as u64,
    );
    let target = uas(&scene, "other", "uas-answer.xml", target_port, CALLS as u64);
    let run = run_timed(&scene, timed_lines(p, &user, 200, CALLS));
    scene.finish(vec![
        run,
        primary.finish(UAS_FINISH),
        target.finish(UAS_FINISH),
    ]);
}

#[test]
fn disabled_server_gets_480_without_failover() {
    let (p, backup_port) = pbx_with_backup(json!({"enabled": false}));
    // Anything at the failover target would be a failover that must not happen.
    let listener = UdpSocket::bind(("127.0.0.1", backup_port)).expect("bind backup port");
    let scene = Scene::start("disabled", std::slice::from_ref(&p));
    let lines = vec![format!("{};480;70", p.dids[0]); 3];
    let run = scene
        .carrier("uac", "uac-reject.xml", lines)
        .run(&scene.dir)
        .check();
    listener.set_nonblocking(true).expect("nonblocking");
    let mut buf = [0u8; 64];
    let quiet = match listener.recv(&mut buf) {
        Ok(_) => Err("a disabled server's call was failed over".to_string()),
        Err(_) => Ok(()),
    };
    scene.finish(vec![run, quiet]);
}

#[test]
fn early_media_reaches_the_caller_as_plain_ringing() {
    const CALLS: usize = 5;
    let p = pbx(json!({"ignore_early_media": true}));
    let scene = Scene::start("early-media", std::slice::from_ref(&p));
    let server = uas(&scene, "uas", "uas-early-media.xml", p.port, CALLS as u64);
    let lines = vec![format!("{};{}", p.dids[0], npan(&p.dids[0])); CALLS];
    let run = scene
        .carrier("uac", "uac-early-media.xml", lines)
        .run(&scene.dir)
        .check();
    scene.finish(vec![run, server.finish(UAS_FINISH)]);
}

/// sip_headers of DID, server and account are merged (most specific wins per name)
/// and added to the INVITE towards the server.
#[test]
fn sip_headers_reach_the_server() {
    const CALLS: usize = 3;
    let mut p = pbx(json!({"sip_headers": [{"X-Trunk": "server-level"}]}));
    p.did_options
        .insert("sip_headers".into(), json!({"X-Trunk": "did-level"}));
    let account = json!({"sip_headers": {"X-Trunk": "account-level", "X-Account": "e2e"}});
    let scene = Scene::start_with("sip-headers", std::slice::from_ref(&p), Map::new(), account);
    let server = uas(&scene, "uas", "uas-headers.xml", p.port, CALLS as u64);
    let lines = vec![format!("{};{}", p.dids[0], npan(&p.dids[0])); CALLS];
    let run = scene
        .carrier("uac", "uac-call.xml", lines)
        .run(&scene.dir)
        .check();
    scene.finish(vec![run, server.finish(UAS_FINISH)]);
}

/// 5,000 calls at 250/s; the primary rejects every other one with 503 and the failover
/// target answers exactly those: zero failed calls on every side.
#[test]
fn five_thousand_calls_half_failed_over() {
    const CALLS: usize = 5000;
    let _serial = harness::load_lock();
    let (p, backup_port) = pbx_with_backup(json!({}));
    let scene = Scene::start("failover-5000", std::slice::from_ref(&p));
    let primary = uas(&scene, "primary", "uas-alternate.xml", p.port, CALLS as u64);
    let backup = uas(
        &scene,
        "backup",
        "uas-answer.xml",
        backup_port,
        (CALLS / 2) as u64,
    );
    let lines = (0..CALLS)
        .map(|i| {
            let user = if i % 2 == 1 {
                BACKUP_USER.to_string()
            } else {
                npan(&p.dids[0])
            };
            format!("{};{user}", p.dids[0])
        })
        .collect();
    let mut uac = scene.carrier("uac", "uac-call.xml", lines);
    uac.rate = 250;
    let started = std::time::Instant::now();
    let run = uac.run(&scene.dir);
    let elapsed = started.elapsed();
    let counts = run.files.call_counts();
    eprintln!(
        "[failover-5000] {CALLS} calls in {elapsed:?}; UAC (successful, failed) = {counts:?}"
    );
    scene.finish(vec![
        run.check(),
        primary.finish(UAS_FINISH),
        backup.finish(UAS_FINISH),
    ]);
}

/// Issue 13 item 4: a carrier INVITE for a ported number
/// (`sip:+1NPANXXXXXX;npdi;rn=+1...@proxy`, RFC 4694) and one with a `%2B`-escaped user
/// reach the DID's PBX (a SIPp UAS) with the user its format asks for, the parameters
/// kept (e164 and npan keep them; `username` is covered by the proxy's unit tests).
#[test]
fn ported_and_escaped_numbers_reach_the_did() {
    const CALLS: usize = 3;
    const PARAMS: &str = ";npdi;rn=+14155559999";
    let pbxs = [
        Pbx::new("pbx-e164", free_port(), "e164", dids(40, 1)),
        Pbx::new("pbx-npan", free_port(), "npan", dids(50, 1)),
    ];
    let scene = Scene::start("ported-numbers", &pbxs);
    let uases: Vec<Uas> = pbxs
        .iter()
        .map(|p| scene.uas(p.name, "uas-answer.xml", p.port, 2 * CALLS as u64))
        .collect();
    let expect = |p: &Pbx| crate::expected_user(&p.dids[0], p.format, None);
    // Ported: the E.164 form to one PBX, the national form to the other (normalised
    // after the parameters are split off); uac-ported-call.xml appends PARAMS to the
    // Request-URI user and to the user the PBX must see.
    let ported: Vec<String> = vec![
        format!("{};{}", pbxs[0].dids[0], expect(&pbxs[0])),
        format!("{};{}", npan(&pbxs[1].dids[0]), expect(&pbxs[1])),
    ]
    .into_iter()
    .flat_map(|l| vec![l; CALLS])
    .collect();
    let mut uac = scene.carrier("uac-ported", "uac-ported-call.xml", ported);
    uac.extra
        .extend(["-key".to_string(), "user_params".into(), PARAMS.into()]);
    let ported_run = uac.run(&scene.dir);
    // Escaped: `%2B1NPANXXXXXX` (uac-call.xml: no parameters).
    let escaped: Vec<String> = pbxs
        .iter()
        .flat_map(|p| {
            let user = p.dids[0].replacen('+', "%2B", 1);
            vec![format!("{user};{}", expect(p)); CALLS]
        })
        .collect();
    let escaped_run = scene
        .carrier("uac-escaped", "uac-call.xml", escaped)
        .run(&scene.dir);
    let mut results = vec![ported_run.check(), escaped_run.check()];
    results.extend(uases.into_iter().map(|u| u.finish(UAS_FINISH)));
    results.push(check_metrics(
        &scene,
        &[(
            "trunkstore_calls_total{direction=\"inbound\",outcome=\"answered\"}",
            4 * CALLS as u64,
        )],
    ));
    scene.finish(results);
}

/// RFC 3263 within one attempt: the failover URI names `pbx.test` (no port, no
/// transport: NAPTR, then SRV), whose SRV records point at two SIPp PBXs (priority 10
/// answers 503, priority 20 answers 200). Each call fails over once (the primary's port
/// is closed), the failover attempt goes to the first SRV target, then to the second
/// within the same attempt, and completes there.
#[test]
fn a_failover_named_by_dns_tries_its_srv_targets_in_order() {
    const CALLS: usize = 3;
    let (first, second) = (free_port(), free_port());
    let dir = crate::harness::TestDir::new("dns-srv-dnsmasq");
    let conf = format!(
        "srv-host=_sip._udp.pbx.test,gw1.test,{first},10,0\nsrv-host=_sip._udp.pbx.test,gw2.test,{second},20,0\n"
    );
    let server = crate::dns::Dnsmasq::start(dir.path(), &conf, "127.0.0.1 gw1.test gw2.test\n");
    let mut p = pbx(json!({}));
    p.failover_sip = Some(format!("sip:{BACKUP_USER}@pbx.test"));
    let settings = [("dns".to_string(), crate::dns::dns_settings(&server))]
        .into_iter()
        .collect();
    let scene = Scene::start_with("dns-srv", std::slice::from_ref(&p), settings, json!({}));
    let refuses = uas(&scene, "gw1", "uas-unavailable.xml", first, CALLS as u64);
    let answers = crate::sipp::Uas::start_with(
        &scene.dir,
        "gw2",
        "uas-answer-named.xml",
        second,
        CALLS as u64,
        60,
        &["-key", "named_host", "pbx.test"],
    );
    let run = run_timed(&scene, timed_lines(&p, BACKUP_USER, 200, CALLS));
    let n = CALLS as u64;
    let metrics = check_metrics(
        &scene,
        &[
            // One failover per call: the SRV targets are one attempt.
            ("trunkstore_failovers_total{reason=\"transport\"}", n),
            ("trunkstore_failovers_total{reason=\"response\"}", 0),
        ],
    );
    scene.finish(vec![
        run,
        metrics,
        refuses.finish(UAS_FINISH),
        answers.finish(UAS_FINISH),
    ]);
    drop(server);
}

/// A changed DNS record is followed once its TTL (1 s) has passed: the failover name's
/// SRV record moves from one PBX to another between two calls, and the second call goes
/// to the new one (the proxy's cache keeps an answer only for its TTL).
#[test]
fn a_changed_srv_record_is_followed_after_its_ttl() {
    let (old_port, new_port) = (free_port(), free_port());
    let dir = crate::harness::TestDir::new("dns-ttl-dnsmasq");
    let srv = |port: u16| format!("srv-host=_sip._udp.pbx.test,gw.test,{port},10,0\n");
    let mut server = crate::dns::Dnsmasq::start(dir.path(), &srv(old_port), "127.0.0.1 gw.test\n");
    let mut p = pbx(json!({}));
    p.failover_sip = Some(format!("sip:{BACKUP_USER}@pbx.test"));
    let settings = [("dns".to_string(), crate::dns::dns_settings(&server))]
        .into_iter()
        .collect();
    let scene = Scene::start_with("dns-ttl", std::slice::from_ref(&p), settings, json!({}));
    let named = |name: &str, port: u16| {
        crate::sipp::Uas::start_with(
            &scene.dir,
            name,
            "uas-answer-named.xml",
            port,
            1,
            60,
            &["-key", "named_host", "pbx.test"],
        )
    };
    let old = named("old", old_port);
    let mut uac = scene.carrier(
        "uac1",
        "uac-timed.xml",
        timed_lines(&p, BACKUP_USER, 200, 1),
    );
    uac.extra = vec!["-l".into(), "1".into()];
    let first = uac.run(&scene.dir).check();
    server.restart(&srv(new_port));
    std::thread::sleep(Duration::from_millis(1500));
    let new = named("new", new_port);
    let mut uac = scene.carrier(
        "uac2",
        "uac-timed.xml",
        timed_lines(&p, BACKUP_USER, 200, 1),
    );
    uac.extra = vec!["-l".into(), "1".into()];
    let second = uac.run(&scene.dir).check();
    scene.finish(vec![
        first,
        second,
        old.finish(UAS_FINISH),
        new.finish(UAS_FINISH),
    ]);
    drop(server);
}
