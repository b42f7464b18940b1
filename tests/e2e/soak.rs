//! Soak (issue 6): 5,000 mixed calls in both directions across two accounts — answered,
//! busy (486), cancelled while ringing, failed over (first target 503, the failover
//! answers) — then every account's trunk usage on `/metrics` must be exactly 0.
//!
//! Inbound (carrier → DID): four PBXs, one behaviour each (uas-answer, uas-busy,
//! uas-cancel, uas-unavailable whose `failover.sip` is the answering PBX). Outbound
//! (PBX → carriers): the IP-auth PBXs of the two accounts (127.0.0.2 and 127.0.0.3)
//! dial numbers whose last digits pick the first carrier's behaviour (uas-mixed.xml:
//! …0486 busy, …0487 rings until cancelled, …0503 out of service, else answered); the
//! second carrier answers what the first refused with 503. Six UACs run in parallel
//! (one per call flow and direction), about 20 s at ~250 calls/s in all.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::config::ProxySetup;
use crate::harness::{self, addr, free_port, TestDir};
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

/// `count` DIDs from +1415555`first`.
fn dids(first: u32, count: u32) -> Vec<String> {
    crate::config::dids(first, count)
}

fn ip_pbx(name: &str, ip: &str) -> serde_json::Value {
    json!({"name": name, "auth": {"auth_method": "IP", "ip": ip}})
}

fn did_pbx(name: &str, port: u16, dids: &[String], failover: Option<String>) -> serde_json::Value {
    let mut options = json!({"inbound_format": "npan"});
    if let Some(uri) = failover {
        options["failover"] = json!({"sip": uri});
    }
    let dids: serde_json::Map<String, serde_json::Value> =
        dids.iter().map(|d| (d.clone(), json!({}))).collect();
    json!({"name": name, "auth": {"auth_method": "IP", "ip": "127.0.0.1", "port": port},
           "options": options, "DIDs": dids})
}

/// `trunkstore_trunks_in_use{account="…"} N` lines of `/metrics`.
fn trunks_in_use(api: u16) -> Result<Vec<(String, u64)>, String> {
    let mut s = TcpStream::connect(addr(api)).map_err(|e| format!("connect API: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut text = String::new();
    s.read_to_string(&mut text).map_err(|e| e.to_string())?;
    Ok(text
        .lines()
        .filter_map(|l| l.strip_prefix("trunkstore_trunks_in_use{account=\""))
        .filter_map(|l| {
            let (account, rest) = l.split_once("\"} ")?;
            Some((account.to_string(), rest.trim().parse().ok()?))
        })
        .collect())
}

#[test]
fn soak_5000_mixed_calls_leave_no_trunk_in_use() {
    let _serial = harness::load_lock();
    let _sipp = crate::sipp::sipp_binary();
    let dir = TestDir::new("soak");
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
    let listen = format!("127.0.0.1:{}", setup.port);
    let src = |p: u16| format!("127.0.0.1:{p}");
    let settings = json!({
        "listen": {"udp": [listen], "tcp": [listen]},
        "advertise": listen,
        "connectivity_dir": "connectivity",
        "carriers": [
            {"name": "c1", "gateways": [{"host": "127.0.0.1", "port": c1}], "priority": 10,
             "sources": [src(c1), src(in_call), src(in_busy), src(in_cancel)]},
            {"name": "c2", "gateways": [{"host": "127.0.0.1", "port": c2}], "priority": 20,
             "sources": [src(c2)]}
        ],
        "api": {"listen": format!("127.0.0.1:{}", setup.api_port), "tokens": []},
        "log": {"level": "warn", "format": "text"},
    });
    let (answer_dids, busy_dids) = (dids(0, 50), dids(100, 50));
    let (ring_dids, down_dids) = (dids(200, 50), dids(300, 50));
    let documents = [
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
    let path = dir.file("trunkstore.json");
    fs::write(&path, serde_json::to_string_pretty(&settings).unwrap()).unwrap();
    for (account, servers) in documents {
        let docs = dir.path().join("connectivity").join(account);
        fs::create_dir_all(&docs).unwrap();
        let doc = json!({"name": account, "account": {"trunks": TRUNKS}, "servers": servers});
        fs::write(docs.join("pbx.json"), doc.to_string()).unwrap();
    }
    let proxy = Proxy::start(&dir, &path, &setup);

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

    let uas = |name: &str, scenario: &str, port: u16, calls: u64| {
        Uas::start(&dir, name, scenario, port, calls, 120)
    };
    let uases = [
        uas("pbx-answer", "uas-answer.xml", answer, 900 + 600),
        uas("pbx-busy", "uas-busy.xml", busy, 600),
        uas("pbx-ring", "uas-cancel.xml", ring, 600),
        uas("pbx-down", "uas-unavailable.xml", down, 600),
        uas("carrier-1", "uas-mixed.xml", c1, 700 + 400 + 600 + 600),
        uas("carrier-2", "uas-answer.xml", c2, 400),
    ];
    let uac = |name: &'static str,
               scenario: &'static str,
               local_port: u16,
               ip: &str,
               lines: Vec<String>,
               rate: u32| {
        let mut extra: Vec<String> = vec!["-key".into(), "extra_header".into(), "X-Soak: 1".into()];
        extra.extend(["-i".to_string(), ip.to_string()]);
        Uac {
            name,
            scenario,
            proxy_port: setup.port,
            local_port,
            transport: Transport::Udp,
            lines,
            rate,
            extra,
        }
    };
    let uacs = [
        uac(
            "in-call",
            "uac-call.xml",
            in_call,
            "127.0.0.1",
            in_call_lines,
            75,
        ),
        uac(
            "in-busy",
            "uac-reject.xml",
            in_busy,
            "127.0.0.1",
            in_busy_lines,
            30,
        ),
        uac(
            "in-cancel",
            "uac-cancel.xml",
            in_cancel,
            "127.0.0.1",
            in_cancel_lines,
            30,
        ),
        uac(
            "out-call",
            "uac-pbx-call.xml",
            free_port(),
            "127.0.0.2",
            out_call_lines,
            55,
        ),
        uac(
            "out-busy",
            "uac-reject.xml",
            free_port(),
            "127.0.0.3",
            out_busy_lines,
            30,
        ),
        uac(
            "out-cancel",
            "uac-cancel.xml",
            free_port(),
            "127.0.0.3",
            out_cancel_lines,
            30,
        ),
    ];
    let total: usize = uacs.iter().map(|u| u.lines.len()).sum();
    assert_eq!(total, 5000);
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
    let usage = loop {
        let usage = trunks_in_use(setup.api_port);
        let drained = usage.as_ref().is_ok_and(|u| {
            ACCOUNTS
                .iter()
                .all(|a| u.iter().any(|(n, v)| n == a && *v == 0))
        });
        if drained || Instant::now() >= deadline {
            break usage;
        }
        thread::sleep(Duration::from_millis(50));
    };
    eprintln!("soak: {total} calls in {calls_took:?}; trunks in use after: {usage:?}");
    match &usage {
        Ok(u) => {
            for account in ACCOUNTS {
                match u.iter().find(|(n, _)| n == account) {
                    Some((_, 0)) => {}
                    other => problems.push(format!(
                        "account {account}: trunks in use {other:?} after {SETTLE:?} (all: {u:?})"
                    )),
                }
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
