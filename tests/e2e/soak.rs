//! Soaks: 5,000 mixed calls in both directions across two accounts — answered, busy
//! (486), cancelled while ringing, failed over (first target 503, the failover
//! answers) — then every account's trunk usage on `/metrics` must be exactly 0, and no
//! dialog may be left (`trunkstore_active_calls 0`).
//!
//! IP-auth PBXs (issue 6). Inbound (carrier → DID): four PBXs, one behaviour each
//! (uas-answer, uas-busy, uas-cancel, uas-unavailable whose `failover.sip` is the
//! answering PBX). Outbound (PBX → carriers): the IP-auth PBXs of the two accounts
//! (127.0.0.2 and 127.0.0.3) dial numbers whose last digits pick the first carrier's
//! behaviour (uas-mixed.xml: …0486 busy, …0487 rings until cancelled, …0503 out of
//! service, else answered); the second carrier answers what the first refused with 503.
//! Six UACs run in parallel (one per call flow and direction), about 20 s at ~250
//! calls/s in all.
//!
//! Password PBXs with 100rel (issue 13). Each account has one password (digest) PBX
//! (127.0.0.4 and 127.0.0.5) that also receives calls at `options.ip`. Outbound, each
//! PBX is challenged (407, ACK) and sends its INVITE again with credentials; inbound,
//! the carrier calls the PBXs' DIDs. Every callee (uas-100rel.xml: the first carrier,
//! the PBXs) sends a reliable provisional, the caller (uac-100rel.xml) PRACKs it in
//! the early dialog through the proxy and needs its 200, then the call goes on as the
//! line's X-Soak-Do says; what was refused with 503 is answered by the failover
//! (second carrier, or the backup line of the PBXs' `failover.sip`). Four UACs (one
//! per PBX outbound, one per account inbound), about 20 s at ~250 calls/s in all.

use std::fs;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::config::ProxySetup;
use crate::harness::{self, free_port, TestDir};
use crate::proxy::Proxy;
use crate::sipp::{Transport, Uac, Uas};
use crate::UAS_FINISH;

const NUMBER: &str = "+12125550100";
const BUSY_NUMBER: &str = "+12125550486";
const RING_NUMBER: &str = "+12125550487";
const DOWN_NUMBER: &str = "+12125550503";
const ACCOUNTS: [&str; 2] = ["alpha", "beta"];
/// Far above the peak concurrency (calls have no hold time): nothing is refused.
const TRUNKS: u32 = 5000;
/// How long BYE/CANCEL/ACK transactions may take to finish after the last call.
const SETTLE: Duration = Duration::from_secs(5);
/// The password PBXs' own addresses (the IP-auth soak uses 127.0.0.2 and .3).
const PW_PBX_IPS: [&str; 2] = ["127.0.0.4", "127.0.0.5"];

/// `count` DIDs from +1415555`first`.
fn dids(first: u32, count: u32) -> Vec<String> {
    crate::config::dids(first, count)
}

fn ip_pbx(name: &str, ip: &str) -> Value {
    json!({"name": name, "auth": {"auth_method": "IP", "ip": ip}})
}

fn did_pbx(name: &str, port: u16, dids: &[String], failover: Option<String>) -> Value {
    let mut options = json!({"inbound_format": "npan"});
    if let Some(uri) = failover {
        options["failover"] = json!({"sip": uri});
    }
    json!({"name": name, "auth": {"auth_method": "IP", "ip": "127.0.0.1", "port": port},
           "options": options, "DIDs": did_map(dids)})
}

fn did_map(dids: &[String]) -> serde_json::Map<String, Value> {
    dids.iter().map(|d| (d.clone(), json!({}))).collect()
}

/// The soak's two carriers: c1, every outbound call's first choice, whose trusted
/// sources are also the inbound UACs' ports; c2, which takes what c1 refused with 503.
fn carriers(c1: u16, c2: u16, inbound: &[u16]) -> Value {
    let src = |p: u16| format!("127.0.0.1:{p}");
    let c1_sources: Vec<String> = [c1].iter().chain(inbound).map(|&p| src(p)).collect();
    json!([
        {"name": "c1", "gateways": [{"host": "127.0.0.1", "port": c1}], "priority": 10,
         "sources": c1_sources},
        {"name": "c2", "gateways": [{"host": "127.0.0.1", "port": c2}], "priority": 20,
         "sources": [src(c2)]}
    ])
}

/// One soak's proxy: its directory (settings, documents, every log) and ports.
struct Soak {
    test: &'static str,
    dir: TestDir,
    setup: ProxySetup,
    proxy: Proxy,
}

impl Soak {
    /// Writes the settings (`setup.extra` merged over) and one document per account,
    /// each with [`TRUNKS`] trunks, and starts the proxy.
    fn start(
        test: &'static str,
        setup: ProxySetup,
        carriers: Value,
        accounts: Vec<(&str, Vec<Value>)>,
    ) -> Soak {
        let _sipp = crate::sipp::sipp_binary();
        let dir = TestDir::new(test);
        let listen = format!("127.0.0.1:{}", setup.port);
        let mut settings = json!({
            "listen": {"udp": [listen], "tcp": [listen]},
            "advertise": listen,
            "connectivity_dir": "connectivity",
            "carriers": carriers,
            "api": {"listen": format!("127.0.0.1:{}", setup.api_port), "tokens": []},
            "log": {"level": "warn", "format": "text"},
        });
        for (k, v) in &setup.extra {
            settings[k] = v.clone();
        }
        let path = dir.file("trunkstore.json");
        fs::write(&path, serde_json::to_string_pretty(&settings).unwrap()).unwrap();
        for (account, servers) in accounts {
            let docs = dir.path().join("connectivity").join(account);
            fs::create_dir_all(&docs).unwrap();
            let doc = json!({"name": account, "account": {"trunks": TRUNKS}, "servers": servers});
            fs::write(docs.join("pbx.json"), doc.to_string()).unwrap();
        }
        let proxy = Proxy::start(&dir, &path, &setup);
        Soak {
            test,
            dir,
            setup,
            proxy,
        }
    }

    /// A UAS (`max` 120 s) on `ip:port` handling `calls` calls.
    fn uas(&self, name: &str, scenario: &str, ip: &str, port: u16, calls: u64) -> Uas {
        Uas::start_with(&self.dir, name, scenario, port, calls, 120, &["-i", ip])
    }

    /// Runs the UACs in parallel (together `calls` calls); waits up to [`SETTLE`] for
    /// the trunks and dialogs to drain to 0 and checks them, and `check(metrics
    /// page)`; then every UAS must finish its calls and the proxy stop cleanly. Fails
    /// with every problem seen, each with its logs.
    fn run(
        self,
        uases: Vec<Uas>,
        uacs: &[Uac],
        calls: usize,
        check: impl FnOnce(&str) -> Vec<String>,
    ) {
        let Soak {
            test,
            dir,
            setup,
            proxy,
        } = self;
        let total: usize = uacs.iter().map(|u| u.lines.len()).sum();
        assert_eq!(total, calls, "lines of the UACs");
        let started = Instant::now();
        let runs: Vec<_> = thread::scope(|s| {
            let handles: Vec<_> = uacs.iter().map(|u| s.spawn(|| u.run(&dir))).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let calls_took = started.elapsed();
        let mut problems: Vec<String> = runs.iter().filter_map(|r| r.check().err()).collect();

        // Every call has ended at both ends: trunks must drain to 0 (BYE, CANCEL and
        // failed-final transactions end within a second or so).
        let deadline = Instant::now() + SETTLE;
        let page = loop {
            let page = crate::metrics_page(setup.api_port);
            if page.as_deref().is_ok_and(drained) || Instant::now() >= deadline {
                break page;
            }
            thread::sleep(Duration::from_millis(50));
        };
        match &page {
            Ok(page) => {
                let summary: Vec<&str> = page
                    .lines()
                    .filter(|l| {
                        ["trunkstore_trunks_in_use", "trunkstore_active_calls"]
                            .iter()
                            .any(|m| l.starts_with(m))
                    })
                    .collect();
                eprintln!("{test}: {total} calls in {calls_took:?}; after: {summary:?}");
                let mut wrong = drain_problems(page);
                wrong.extend(check(page));
                if !wrong.is_empty() {
                    problems.push(format!("/metrics: {}\n{page}", wrong.join("; ")));
                }
            }
            Err(why) => problems.push(format!("/metrics: {why}")),
        }
        problems.extend(uases.into_iter().filter_map(|u| u.finish(UAS_FINISH).err()));
        let log = proxy.log();
        if let Err(why) = proxy.stop() {
            problems.push(why);
        }
        if !problems.is_empty() {
            problems.push(log);
        }
        assert!(problems.is_empty(), "{}", problems.join("\n\n"));
    }
}

/// A soak UAC calling from `ip`: `lines` at `rate` calls/s, an `X-Soak` header in the
/// place of the self-check's stand-in Record-Route, then `more` SIPp arguments.
fn soak_uac<'a>(
    name: &'a str,
    scenario: &'a str,
    setup: &ProxySetup,
    ip: &str,
    lines: Vec<String>,
    rate: u32,
    more: Vec<String>,
) -> Uac<'a> {
    let mut extra: Vec<String> = ["-key", "extra_header", "X-Soak: 1", "-i", ip]
        .map(String::from)
        .to_vec();
    extra.extend(more);
    Uac {
        name,
        scenario,
        proxy_port: setup.port,
        local_port: free_port(),
        transport: Transport::Udp,
        lines,
        rate,
        extra,
    }
}

/// `series value` lines of a `/metrics` page: the value of `series` (name and labels).
fn metric(page: &str, series: &str) -> Option<u64> {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

fn trunks_series(account: &str) -> String {
    format!("trunkstore_trunks_in_use{{account=\"{account}\"}}")
}

/// Every account's trunks and every dialog released: what the soaks wait for.
fn drained(page: &str) -> bool {
    ACCOUNTS
        .iter()
        .all(|a| metric(page, &trunks_series(a)) == Some(0))
        && metric(page, "trunkstore_active_calls") == Some(0)
}

/// What is wrong with a drained `/metrics` page: a trunk still in use (or an account
/// missing), a dialog left.
fn drain_problems(page: &str) -> Vec<String> {
    let mut problems: Vec<String> = ACCOUNTS
        .iter()
        .filter_map(|a| match metric(page, &trunks_series(a)) {
            Some(0) => None,
            other => Some(format!(
                "account {a}: trunks in use {other:?} after {SETTLE:?}"
            )),
        })
        .collect();
    match metric(page, "trunkstore_active_calls") {
        Some(0) => {}
        other => problems.push(format!(
            "trunkstore_active_calls {other:?} after {SETTLE:?}"
        )),
    }
    problems
}

#[test]
fn soak_5000_mixed_calls_leave_no_trunk_in_use() {
    let _serial = harness::load_lock();
    let (c1, c2) = (free_port(), free_port());
    let (answer, busy, ring, down) = (free_port(), free_port(), free_port(), free_port());
    // The inbound UACs' source ports, trusted as the first carrier's.
    let (in_call, in_busy, in_cancel) = (free_port(), free_port(), free_port());
    let setup = ProxySetup {
        port: free_port(),
        carrier_port: in_call,
        api_port: free_port(),
        extra: Default::default(),
    };
    let (answer_dids, busy_dids) = (dids(0, 50), dids(100, 50));
    let (ring_dids, down_dids) = (dids(200, 50), dids(300, 50));
    let accounts = vec![
        (
            "alpha",
            vec![
                did_pbx("answer", answer, &answer_dids, None),
                did_pbx("busy", busy, &busy_dids, None),
                ip_pbx("pbx-a", "127.0.0.2"),
            ],
        ),
        (
            "beta",
            vec![
                did_pbx("ring", ring, &ring_dids, None),
                did_pbx(
                    "down",
                    down,
                    &down_dids,
                    Some(format!("sip:backup-line@127.0.0.1:{answer}")),
                ),
                ip_pbx("pbx-b", "127.0.0.3"),
            ],
        ),
    ];
    let inbound = [in_call, in_busy, in_cancel];
    let soak = Soak::start("soak", setup, carriers(c1, c2, &inbound), accounts);

    // Inbound lines: 900 answered + 600 failed over (interleaved), 600 busy, 600 cancelled.
    let in_call_lines: Vec<String> = (0..1500)
        .map(|i| {
            if i % 5 < 3 {
                let did = &answer_dids[i % answer_dids.len()];
                format!("{did};{}", did.trim_start_matches("+1"))
            } else {
                format!("{};backup-line", down_dids[i % down_dids.len()])
            }
        })
        .collect();
    let in_busy_lines = (0..600)
        .map(|i| format!("{};486;70", busy_dids[i % busy_dids.len()]))
        .collect();
    let in_cancel_lines = (0..600)
        .map(|i| ring_dids[i % ring_dids.len()].clone())
        .collect();
    // Outbound: 700 answered + 400 failed over to c2 (uac-pbx-call.xml fields: dialled;
    // expected Request-URI user;From user;caller ID), 600 busy, 600 cancelled.
    let out_call_lines: Vec<String> = (0..1100)
        .map(|i| {
            let n = if i % 11 < 7 { NUMBER } else { DOWN_NUMBER };
            format!("{n};{n};1000;-")
        })
        .collect();
    let out_busy_lines = vec![format!("{BUSY_NUMBER};486;70"); 600];
    let out_cancel_lines = vec![RING_NUMBER.to_string(); 600];

    let uas = |name, scenario, port, calls| soak.uas(name, scenario, "127.0.0.1", port, calls);
    let uases = vec![
        uas("pbx-answer", "uas-answer.xml", answer, 900 + 600),
        uas("pbx-busy", "uas-busy.xml", busy, 600),
        uas("pbx-ring", "uas-cancel.xml", ring, 600),
        uas("pbx-down", "uas-unavailable.xml", down, 600),
        uas("carrier-1", "uas-mixed.xml", c1, 700 + 400 + 600 + 600),
        uas("carrier-2", "uas-answer.xml", c2, 400),
    ];
    let uac = |name, scenario, ip, lines, rate| {
        soak_uac(name, scenario, &soak.setup, ip, lines, rate, Vec::new())
    };
    let carrier = |name, scenario, port, lines, rate| Uac {
        local_port: port,
        ..uac(name, scenario, "127.0.0.1", lines, rate)
    };
    let uacs = [
        carrier("in-call", "uac-call.xml", in_call, in_call_lines, 75),
        carrier("in-busy", "uac-reject.xml", in_busy, in_busy_lines, 30),
        carrier(
            "in-cancel",
            "uac-cancel.xml",
            in_cancel,
            in_cancel_lines,
            30,
        ),
        uac(
            "out-call",
            "uac-pbx-call.xml",
            "127.0.0.2",
            out_call_lines,
            55,
        ),
        uac(
            "out-busy",
            "uac-reject.xml",
            "127.0.0.3",
            out_busy_lines,
            30,
        ),
        uac(
            "out-cancel",
            "uac-cancel.xml",
            "127.0.0.3",
            out_cancel_lines,
            30,
        ),
    ];
    soak.run(uases, &uacs, 5000, |_| Vec::new());
}

/// What each line of a password soak asks its callee (uac-100rel.xml field2),
/// interleaved: of every 5 calls, 2 answered, 1 failed over then answered, 1 busy, 1
/// cancelled while ringing.
const TODO: [&str; 5] = ["answer", "ring", "down", "answer", "busy"];

/// `count` uac-100rel.xml lines: `dialled(i)`;the user a failover target must get;
/// what to do.
fn lines_100rel(
    count: usize,
    dialled: impl Fn(usize) -> String,
    failover_user: &str,
) -> Vec<String> {
    (0..count)
        .map(|i| format!("{};{failover_user};{}", dialled(i), TODO[i % TODO.len()]))
        .collect()
}

/// Calls of `lines` that fail over (and are answered by the failover target).
fn failing_over(lines: &[String]) -> u64 {
    lines.iter().filter(|l| l.ends_with(";down")).count() as u64
}

/// A password PBX of the 100rel soak: digest user `user`, reached for its DIDs at
/// `ip:port` (`options.ip`: behaviour.md §4.2), which fails over to `failover`.
fn password_pbx(user: &str, ip: &str, port: u16, dids: &[String], failover: &str) -> Value {
    json!({"name": user,
           "auth": {"auth_method": "password", "auth_user": user, "auth_password": pw_of(user)},
           "options": {"ip": ip, "port": port, "inbound_format": "npan",
                       "failover": {"sip": failover}},
           "DIDs": did_map(dids)})
}

fn pw_of(user: &str) -> String {
    format!("{user}-s3cret")
}

/// Issue 13's done-criterion: the 5,000-call soak with password PBXs and 100rel in
/// both directions; trunk usage ends at exactly 0.
#[test]
fn soak_5000_password_pbx_calls_with_100rel_leave_no_trunk_in_use() {
    let _serial = harness::load_lock();
    let (c1, c2, backup) = (free_port(), free_port(), free_port());
    let pbx_ports = [free_port(), free_port()];
    // The inbound UACs' source ports, trusted as the first carrier's.
    let inbound = [free_port(), free_port()];
    // `protection` stays at its defaults (rate 50/s, burst 100 per source): each PBX's
    // first calls are challenged from an unknown source, but its first good credentials
    // (within milliseconds, well inside the burst) exempt its address for 5 minutes, so
    // its ~60 calls/s (INVITE, ACK, INVITE, PRACK, ACK, BYE each) are never throttled.
    // Its inbound side only answers (responses are not rate-limited). A throttled
    // request would fail its call (no retransmission gets through in time) and show in
    // `trunkstore_protection_dropped_total{reason="rate_limited"}`, checked below.
    let setup = ProxySetup {
        port: free_port(),
        carrier_port: inbound[0],
        api_port: free_port(),
        extra: Default::default(),
    };
    let users = ["alpha-pbx", "beta-pbx"];
    let pbx_dids = [dids(0, 50), dids(100, 50)];
    let backup_uri = format!("sip:backup-line@127.0.0.1:{backup}");
    let accounts: Vec<(&str, Vec<Value>)> = (0..2)
        .map(|i| {
            let pbx = password_pbx(
                users[i],
                PW_PBX_IPS[i],
                pbx_ports[i],
                &pbx_dids[i],
                &backup_uri,
            );
            (ACCOUNTS[i], vec![pbx])
        })
        .collect();
    let soak = Soak::start("soak-100rel", setup, carriers(c1, c2, &inbound), accounts);

    // 1,250 calls per UAC: inbound to each account's DIDs (the failover target gets
    // backup-line), outbound from each PBX to NUMBER (c2 gets it in e164). One number
    // per PBX run: SIPp's -auth_uri, which must be the Request-URI, is per run.
    const PER_UAC: usize = 1250;
    let inbound_lines: Vec<Vec<String>> = pbx_dids
        .iter()
        .map(|d| lines_100rel(PER_UAC, |i| d[i % d.len()].clone(), "backup-line"))
        .collect();
    let outbound_lines = lines_100rel(PER_UAC, |_| NUMBER.to_string(), NUMBER);
    let auth_uri = format!("{NUMBER}@127.0.0.1:{}", soak.setup.port);
    let digest = |user: &str| -> Vec<String> {
        ["-au", user, "-ap", &pw_of(user), "-auth_uri", &auth_uri]
            .map(String::from)
            .to_vec()
    };

    let uas = |name, scenario, ip, port, calls| soak.uas(name, scenario, ip, port, calls);
    let out_calls = 2 * PER_UAC as u64;
    let uases = vec![
        uas("carrier-1", "uas-100rel.xml", "127.0.0.1", c1, out_calls),
        uas(
            "carrier-2",
            "uas-answer.xml",
            "127.0.0.1",
            c2,
            2 * failing_over(&outbound_lines),
        ),
        uas(
            "pbx-a",
            "uas-100rel.xml",
            PW_PBX_IPS[0],
            pbx_ports[0],
            PER_UAC as u64,
        ),
        uas(
            "pbx-b",
            "uas-100rel.xml",
            PW_PBX_IPS[1],
            pbx_ports[1],
            PER_UAC as u64,
        ),
        uas(
            "backup",
            "uas-answer.xml",
            "127.0.0.1",
            backup,
            inbound_lines.iter().map(|l| failing_over(l)).sum(),
        ),
    ];
    let rate = 62;
    let [in_a, in_b] = [0, 1].map(|i| Uac {
        local_port: inbound[i],
        ..soak_uac(
            ["in-alpha", "in-beta"][i],
            "uac-100rel.xml",
            &soak.setup,
            "127.0.0.1",
            inbound_lines[i].clone(),
            rate,
            Vec::new(),
        )
    });
    let [out_a, out_b] = [0, 1].map(|i| {
        soak_uac(
            ["out-alpha", "out-beta"][i],
            "uac-100rel.xml",
            &soak.setup,
            PW_PBX_IPS[i],
            outbound_lines.clone(),
            rate,
            digest(users[i]),
        )
    });
    let uacs = [in_a, in_b, out_a, out_b];
    soak.run(uases, &uacs, 4 * PER_UAC, |page| {
        password_soak_problems(page, out_calls)
    });
}

/// The password soak's own `/metrics` checks: every outbound call was challenged once
/// at least (digest really ran), and no request was throttled or refused for want of
/// a dialog (a PRACK that got 481 would also fail its call in SIPp).
fn password_soak_problems(page: &str, out_calls: u64) -> Vec<String> {
    let mut problems = Vec::new();
    let challenges = metric(page, "trunkstore_auth_challenges_total");
    if challenges.is_none_or(|n| n < out_calls) {
        problems.push(format!(
            "trunkstore_auth_challenges_total {challenges:?}, expected at least {out_calls}"
        ));
    }
    for series in [
        "trunkstore_protection_dropped_total{reason=\"rate_limited\"}",
        "trunkstore_refusals_total{reason=\"no_dialog\"}",
    ] {
        match metric(page, series) {
            Some(0) => {}
            other => problems.push(format!("{series} {other:?}, expected 0")),
        }
    }
    problems
}
