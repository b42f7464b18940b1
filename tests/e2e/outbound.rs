//! Outbound trunk routing end to end (behaviour.md §5, §6, issue 6): digest and IP
//! authentication, carriers and their failover, caller ID at the carrier, emergency
//! calls, on-net calls and force_outbound, the trunk limit.
//!
//! Carriers are SIPp UASs on 127.0.0.1 (trusted by exact ip:port); the IP-auth PBX calls
//! from 127.0.0.2 (any port); the password PBX from any other 127.0.0.1 port.

use std::fs;
use std::net::UdpSocket;
use std::time::Duration;

use serde_json::{json, Value};
use trunkstore_sip::digest::{
    expected_response, Algorithm, Challenge, Credentials, ResponseParams,
};

use crate::baresip::{Account, Softphone};
use crate::config::ProxySetup;
use crate::harness::{free_port, TestDir};
use crate::proxy::Proxy;
use crate::sipp::{Transport, Uac, Uas};
use crate::{harness, raw, UAS_FINISH};

pub(crate) const NUMBER: &str = "+12125550100";
const IP_PBX: &str = "127.0.0.2";
/// The account's caller ID (the password PBX has none of its own).
const ACCOUNT_CID: &str = "+14155550001";
const SERVER_CID: &str = "+14155552000";
const SALES_DID: &str = "+14155552001";
const FORCED_DID: &str = "+14155552003";
const PW_DID: &str = "+14155553001";
const SERVER_EMERGENCY_CID: &str = "+14155552911";

/// One outbound test's proxy and its carriers' ports.
pub(crate) struct Out {
    pub(crate) dir: TestDir,
    pub(crate) setup: ProxySetup,
    pub(crate) proxy: Proxy,
    pub(crate) c1: u16,
    c2: u16,
    ce: u16,
    /// The password PBX's own address (on-net calls to its DID go there).
    pw: u16,
}

impl Out {
    pub(crate) fn start(test: &str, trunks: Option<u32>) -> Out {
        Out::start_with(test, trunks, |_| {})
    }

    /// As [`Out::start`], with `edit` applied to the connectivity document.
    fn start_with(test: &str, trunks: Option<u32>, edit: impl FnOnce(&mut Value)) -> Out {
        let _sipp = crate::sipp::sipp_binary();
        let dir = TestDir::new(test);
        let (c1, c2, ce, pw) = (free_port(), free_port(), free_port(), free_port());
        let setup = ProxySetup {
            port: free_port(),
            carrier_port: c1,
            api_port: free_port(),
            extra: Default::default(),
        };
        let listen = format!("127.0.0.1:{}", setup.port);
        let carrier = |name: &str, port: u16, priority: u32, emergency: bool| {
            json!({"name": name, "gateways": [{"host": "127.0.0.1", "port": port}],
                   "sources": [format!("127.0.0.1:{port}")], "priority": priority,
                   "emergency": emergency})
        };
        let settings = json!({
            "listen": {"udp": [listen], "tcp": [listen]},
            "advertise": listen,
            "connectivity_dir": "connectivity",
            "default_realm": "trunks.example",
            "carriers": [carrier("c1", c1, 10, false), carrier("c2", c2, 20, false),
                         carrier("ce", ce, 30, true)],
            "api": {"listen": format!("127.0.0.1:{}", setup.api_port), "tokens": []},
            "log": {"level": "info", "format": "text"},
        });
        let mut account = json!({"caller_id": {"cid_name": "Acme", "cid_number": ACCOUNT_CID}});
        if let Some(n) = trunks {
            account["trunks"] = json!(n);
        }
        let mut doc = json!({
            "name": "outbound",
            "account": account,
            "servers": [
                {"name": "ip-pbx", "auth": {"auth_method": "IP", "ip": IP_PBX},
                 "options": {"caller_id": {"cid_name": "IP PBX", "cid_number": SERVER_CID},
                             "emergency_caller_id": {"cid_number": SERVER_EMERGENCY_CID}},
                 "DIDs": {SALES_DID: {"caller_id": {"cid_name": "Sales", "cid_number": SALES_DID}},
                          FORCED_DID: {"force_outbound": true}}},
                {"name": "pw-pbx", "auth": {"auth_method": "password", "auth_user": "alice",
                                            "auth_password": "s3cret"},
                 "options": {"ip": "127.0.0.1", "port": pw},
                 "DIDs": {PW_DID: {}}}
            ]
        });
        edit(&mut doc);
        let path = crate::config::write_files(&dir, &settings, &[("acme", &doc)]);
        let proxy = Proxy::start(&dir, &path, &setup);
        Out {
            dir,
            setup,
            proxy,
            c1,
            c2,
            ce,
            pw,
        }
    }

    pub(crate) fn uas(&self, name: &str, scenario: &str, port: u16, calls: u64) -> Uas {
        Uas::start(&self.dir, name, scenario, port, calls, calls / 10 + 60)
    }

    /// A PBX run: from 127.0.0.2 (the IP-auth PBX) or from a free 127.0.0.1 port.
    pub(crate) fn pbx<'a>(
        &self,
        name: &'a str,
        scenario: &'a str,
        ip_auth: bool,
        lines: Vec<String>,
    ) -> Uac<'a> {
        let mut extra = vec![
            "-key".into(),
            "extra_header".into(),
            "X-Test-Direct: no".into(),
        ];
        if ip_auth {
            extra.extend(["-i".into(), IP_PBX.into()]);
        }
        Uac {
            name,
            scenario,
            proxy_port: self.setup.port,
            local_port: free_port(),
            transport: Transport::Udp,
            lines,
            rate: 10,
            extra,
        }
    }

    /// Stops the proxy; fails with every problem seen. Returns the trunk total the
    /// proxy logged at shutdown.
    pub(crate) fn finish(self, results: Vec<Result<(), String>>) -> Option<u32> {
        let log_path = self.proxy.proc.output.clone();
        let log = self.proxy.log();
        let stopped = self.proxy.stop();
        let mut problems: Vec<String> = results.into_iter().filter_map(Result::err).collect();
        if !problems.is_empty() {
            problems.push(log);
        }
        if let Err(why) = stopped {
            problems.push(why);
        }
        assert!(problems.is_empty(), "{}", problems.join("\n\n"));
        shutdown_trunks(&fs::read_to_string(log_path).unwrap_or_default())
    }
}

/// `total=N` of the "trunks in use at shutdown" log line.
fn shutdown_trunks(log: &str) -> Option<u32> {
    let line = log
        .lines()
        .find(|l| l.contains("trunks in use at shutdown"))?;
    let at = line.find("total=")? + "total=".len();
    line[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// uac-pbx-call.xml / uac-auth-call.xml lines: dialled;expected R-URI user;From user;
/// caller ID the carrier must see.
fn line(dialled: &str, expect_user: &str, from_user: &str, cid: &str) -> String {
    format!("{dialled};{expect_user};{from_user};{cid}")
}

/// `-au alice -ap <password>`, and `-auth_uri` so the credentials' uri is the
/// Request-URI (RFC 3261 §22.4; the proxy checks it): by default SIPp puts the proxy's
/// address there.
pub(crate) fn digest_args(out: &Out, password: &str) -> Vec<String> {
    let uri = format!("{NUMBER}@127.0.0.1:{}", out.setup.port);
    ["-au", "alice", "-ap", password, "-auth_uri", &uri]
        .map(String::from)
        .to_vec()
}

#[test]
fn digest_call_407_then_answered_with_the_account_caller_id() {
    let out = Out::start("out-digest", None);
    // uas-callerid.xml also fails a call whose INVITE still carries a
    // Proxy-Authorization: the proxy consumes the credentials for its realm.
    let uas = out.uas("carrier", "uas-callerid.xml", out.c1, 4);
    let mut uac = out.pbx(
        "pbx",
        "uac-auth-call.xml",
        false,
        vec![line(NUMBER, NUMBER, "1000", ACCOUNT_CID); 4],
    );
    uac.extra.extend(digest_args(&out, "s3cret"));
    let run = uac.run(&out.dir);
    let trunks = out.finish(vec![run.check(), uas.finish(UAS_FINISH)]);
    assert_eq!(trunks, Some(0));
}

/// A real softphone (baresip: libre's SIP stack) calling out as the password PBX. libre
/// fails a whole 407 on a challenge whose algorithm it does not know, so this passes
/// only because the default settings offer MD5 alone (behaviour.md §5.1). The carrier
/// fails the call if our credentials reach it; it hangs up, and both ends must see the
/// call end.
#[test]
fn softphone_baresip_digest_call_answered_and_ended_cleanly() {
    let out = Out::start("out-baresip", None);
    let uas = out.uas("carrier", "uas-softphone.xml", out.c1, 1);
    let alice = Account {
        user: "alice",
        password: "s3cret",
        domain: "trunks.example",
    };
    let phone = Softphone::dial(
        &out.dir,
        "baresip",
        &alice,
        out.setup.port,
        NUMBER,
        Duration::from_secs(6),
    );
    let carrier = uas.finish(UAS_FINISH);
    let phone = phone.finish();
    let carrier_log = fs::read_to_string(out.dir.file("carrier.log")).unwrap_or_default();
    let checks = vec![
        carrier,
        phone.and_then(|trace| softphone_authenticated_and_answered(&trace)),
        carrier_saw(
            &carrier_log,
            &format!("INVITE for {NUMBER} from {ACCOUNT_CID}"),
        ),
    ];
    let trunks = out.finish(checks);
    assert_eq!(trunks, Some(0));
}

/// baresip's trace shows one 407 (a single MD5 challenge) answered with credentials,
/// then the call established and closed by the carrier's BYE, with no 403 on the way.
fn softphone_authenticated_and_answered(trace: &str) -> Result<(), String> {
    let challenges = trace
        .lines()
        .filter(|l| l.starts_with("Proxy-Authenticate:"))
        .collect::<Vec<_>>();
    let expected = [
        (
            challenges.len() == 1 && challenges[0].contains("algorithm=MD5"),
            "one MD5 challenge",
        ),
        (
            trace.contains("Proxy-Authorization: Digest username=\"alice\""),
            "credentials sent",
        ),
        (trace.contains("Call established"), "call established"),
        (
            trace.lines().any(|l| l.starts_with("BYE sip:alice")),
            "the carrier's BYE",
        ),
        (!trace.contains("SIP/2.0 403"), "no 403"),
        (
            !trace.contains("Function not implemented"),
            "no challenge given up on",
        ),
    ];
    let missing: Vec<&str> = expected
        .iter()
        .filter(|(ok, _)| !ok)
        .map(|(_, what)| *what)
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("baresip: missing {missing:?}:\n{trace}"))
    }
}

/// The carrier's scenario log has `line` (the Request-URI and From users it got).
fn carrier_saw(log: &str, line: &str) -> Result<(), String> {
    if log.contains(line) {
        Ok(())
    } else {
        Err(format!("the carrier's log lacks \"{line}\":\n{log}"))
    }
}

#[test]
fn digest_wrong_password_gets_403() {
    let out = Out::start("out-digest-403", None);
    let mut uac = out.pbx("pbx", "uac-auth-refused.xml", false, vec![NUMBER.into(); 3]);
    uac.extra.extend(digest_args(&out, "not-it"));
    let run = uac.run(&out.dir);
    out.finish(vec![run.check()]);
}

#[test]
fn replayed_nonce_count_is_refused() {
    let out = Out::start("out-replay", None);
    let port = free_port();
    let sock = UdpSocket::bind((harness::LOOPBACK, port)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let ruri = format!("sip:{NUMBER}@127.0.0.1:{}", out.setup.port);
    let send = |call: &str, auth: Option<&str>| -> Vec<String> {
        let mut overrides = vec![
            ("Call-ID", call.to_string()),
            (
                "Via",
                format!("SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-{call};rport"),
            ),
            ("CSeq", "1 INVITE".to_string()),
        ];
        if let Some(a) = auth {
            overrides.push(("Proxy-Authorization", a.to_string()));
        }
        let refs: Vec<(&str, &str)> = overrides.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let req = raw::request_text("INVITE", &ruri, port, out.setup.port, &refs);
        sock.send_to(req.as_bytes(), harness::addr(out.setup.port))
            .unwrap();
        // The final response (a 100 may come first).
        // This call's responses only (an earlier call's final may arrive meanwhile): up
        // to its final, or its 100 when credentials were sent (accepted).
        let mut got = Vec::new();
        let mut buf = vec![0u8; 65536];
        let tag = format!("Call-ID: {call}\r\n");
        while let Ok(n) = sock.recv(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if !text.contains(&tag) {
                continue;
            }
            let code = raw::status_code(&text);
            got.push(text);
            if code != Some(100) || auth.is_some() {
                break;
            }
        }
        got
    };
    let challenge = send("replay-1", None);
    assert_eq!(raw::status_code(&challenge[0]), Some(407));
    let auth = authorization(&challenge[0], &ruri, "alice", "s3cret");
    let first = send("replay-2", Some(&auth));
    assert_eq!(
        raw::status_code(&first[0]),
        Some(100),
        "accepted: {first:?}"
    );
    // The same credentials (same nonce, same nc) again: refused, a fresh challenge.
    let again = send("replay-3", Some(&auth));
    let last = again.last().expect("an answer to the replay");
    assert_eq!(raw::status_code(last), Some(407), "{again:?}");
    assert!(last.contains("stale=true"));
    out.finish(vec![]);
}

/// `Proxy-Authorization` answering the MD5 challenge of `resp` (nc=1).
pub(crate) fn authorization(resp: &str, ruri: &str, user: &str, password: &str) -> String {
    let value = resp
        .lines()
        .find(|l| l.starts_with("Proxy-Authenticate:") && l.contains("MD5"))
        .expect("an MD5 challenge")
        .trim_start_matches("Proxy-Authenticate:")
        .trim()
        .to_string();
    let ch = Challenge::parse(value.as_bytes()).unwrap();
    let params = ResponseParams {
        method: b"INVITE",
        uri: ruri.as_bytes(),
        nonce: ch.nonce,
        nc: b"00000001",
        cnonce: b"e2e",
        qop: Some(b"auth"),
        body: b"",
    };
    let r = expected_response(
        Algorithm::Md5,
        user.as_bytes(),
        ch.realm,
        password.as_bytes(),
        &params,
    );
    let creds = Credentials {
        username: user.as_bytes(),
        realm: ch.realm,
        nonce: ch.nonce,
        uri: ruri.as_bytes(),
        response: r.as_bytes(),
        algorithm: ch.algorithm,
        cnonce: Some(b"e2e"),
        qop: Some(b"auth"),
        nc: Some(b"00000001"),
        opaque: None,
    };
    let mut buf = Vec::new();
    creds.write_value(&mut buf);
    String::from_utf8(buf).unwrap()
}

#[test]
fn ip_auth_from_its_own_address_with_server_and_did_caller_id() {
    let out = Out::start("out-ip-auth", None);
    let uas = out.uas("carrier", "uas-callerid.xml", out.c1, 4);
    let lines = vec![
        line(NUMBER, NUMBER, "1000", SERVER_CID),
        line(NUMBER, NUMBER, SALES_DID, SALES_DID),
        line(NUMBER, NUMBER, "1000", SERVER_CID),
        line(NUMBER, NUMBER, SALES_DID, SALES_DID),
    ];
    let run = out
        .pbx("pbx", "uac-pbx-call.xml", true, lines)
        .run(&out.dir);
    // The same call from another address is challenged.
    let other = out
        .pbx(
            "stranger",
            "uac-reject.xml",
            false,
            vec![format!("{NUMBER};407;70"); 2],
        )
        .run(&out.dir);
    let trunks = out.finish(vec![run.check(), uas.finish(UAS_FINISH), other.check()]);
    assert_eq!(trunks, Some(0));
}

#[test]
fn carrier_failover_503_then_the_next_carrier_answers() {
    let out = Out::start("out-failover", None);
    let first = out.uas("c1", "uas-unavailable.xml", out.c1, 3);
    let second = out.uas("c2", "uas-answer.xml", out.c2, 3);
    let lines = vec![line(NUMBER, NUMBER, "1000", SERVER_CID); 3];
    let run = out
        .pbx("pbx", "uac-pbx-call.xml", true, lines)
        .run(&out.dir);
    let trunks = out.finish(vec![
        run.check(),
        first.finish(UAS_FINISH),
        second.finish(UAS_FINISH),
    ]);
    assert_eq!(trunks, Some(0));
}

#[test]
fn emergency_call_goes_to_the_emergency_carrier_with_the_emergency_caller_id() {
    let out = Out::start("out-emergency", Some(0));
    // No trunks at all, yet emergency calls go.
    let uas = out.uas("ce", "uas-callerid.xml", out.ce, 2);
    let lines = vec![line("911", "911", "1000", SERVER_EMERGENCY_CID); 2];
    let run = out
        .pbx("pbx", "uac-pbx-call.xml", true, lines)
        .run(&out.dir);
    let refused = out
        .pbx(
            "pbx-refused",
            "uac-reject.xml",
            true,
            vec![format!("{NUMBER};403;70")],
        )
        .run(&out.dir);
    out.finish(vec![run.check(), uas.finish(UAS_FINISH), refused.check()]);
}

/// Issue 13 item 11: a disabled server (IP or password auth) still reaches the
/// emergency carrier with 911/933 — with no trunk to take (limit 0) — and the proxy logs
/// it; its other calls are still refused with 403.
#[test]
fn disabled_servers_still_place_emergency_calls() {
    const OFF_PW_EMERGENCY_CID: &str = "+14155554911";
    let out = Out::start_with("out-disabled-emergency", Some(0), |doc| {
        let servers = doc["servers"].as_array_mut().unwrap();
        servers[0]["options"]["enabled"] = json!(false);
        servers.push(json!({
            "name": "off-pw", "auth": {"auth_method": "password", "auth_user": "carol",
                                       "auth_password": "pw"},
            "options": {"enabled": false,
                        "emergency_caller_id": {"cid_number": OFF_PW_EMERGENCY_CID}}
        }));
    });
    let uas = out.uas("ce", "uas-callerid.xml", out.ce, 4);
    let lines = vec![
        line("911", "911", "1000", SERVER_EMERGENCY_CID),
        line("933", "933", "1000", SERVER_EMERGENCY_CID),
    ];
    let ip_run = out
        .pbx("pbx-ip", "uac-pbx-call.xml", true, lines)
        .run(&out.dir);
    let carol = |number: &str| {
        let uri = format!("{number}@127.0.0.1:{}", out.setup.port);
        ["-au", "carol", "-ap", "pw", "-auth_uri", &uri].map(String::from)
    };
    let mut pw = out.pbx(
        "pbx-pw",
        "uac-auth-call.xml",
        false,
        vec![line("911", "911", "1000", OFF_PW_EMERGENCY_CID); 2],
    );
    pw.extra.extend(carol("911"));
    let pw_run = pw.run(&out.dir);
    // Anything else from them: 403, from the IP PBX and after the password PBX's
    // (right) credentials.
    let ip_refused = out
        .pbx(
            "pbx-ip-refused",
            "uac-reject.xml",
            true,
            vec![format!("{NUMBER};403;70"); 2],
        )
        .run(&out.dir);
    let mut pw_refused = out.pbx(
        "pbx-pw-refused",
        "uac-auth-refused.xml",
        false,
        vec![NUMBER.into(); 2],
    );
    pw_refused.extra.extend(carol(NUMBER));
    let pw_refused = pw_refused.run(&out.dir);
    // The log is written asynchronously: allow it a moment (bounded).
    let count = || {
        out.proxy
            .log()
            .matches("disabled server placed an emergency call")
            .count()
    };
    let mut logged = count();
    for _ in 0..50 {
        if logged >= 4 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        logged = count();
    }
    let logged = if logged == 4 {
        Ok(())
    } else {
        Err(format!(
            "{logged} emergency log lines for 4 calls from disabled servers"
        ))
    };
    out.finish(vec![
        ip_run.check(),
        pw_run.check(),
        uas.finish(UAS_FINISH),
        ip_refused.check(),
        pw_refused.check(),
        logged,
    ]);
}

#[test]
fn on_net_hairpin_and_force_outbound() {
    let out = Out::start("out-onnet", Some(0));
    // On-net: to the password PBX's own address, npan, no trunk needed (limit 0).
    let pbx = out.uas("pw-pbx", "uas-answer.xml", out.pw, 2);
    let lines = vec![line("4155553001", "4155553001", "1000", SERVER_CID); 2];
    let run = out
        .pbx("pbx", "uac-pbx-call.xml", true, lines)
        .run(&out.dir);
    // force_outbound: the carriers, which need a trunk: refused with limit 0.
    let forced = out
        .pbx(
            "pbx-forced",
            "uac-reject.xml",
            true,
            vec![format!("{FORCED_DID};403;70")],
        )
        .run(&out.dir);
    out.finish(vec![run.check(), pbx.finish(UAS_FINISH), forced.check()]);
}

#[test]
fn force_outbound_goes_to_the_carriers() {
    let out = Out::start("out-forced", None);
    let uas = out.uas("carrier", "uas-answer.xml", out.c1, 2);
    let lines = vec![line(FORCED_DID, FORCED_DID, "1000", SERVER_CID); 2];
    let run = out
        .pbx("pbx", "uac-pbx-call.xml", true, lines)
        .run(&out.dir);
    let trunks = out.finish(vec![run.check(), uas.finish(UAS_FINISH)]);
    assert_eq!(trunks, Some(0));
}

#[test]
fn trunk_limit_two_third_call_refused_and_usage_back_to_zero() {
    let out = Out::start("out-trunks", Some(2));
    let uas = out.uas("carrier", "uas-answer.xml", out.c1, 2);
    let mut held = out.pbx(
        "pbx-held",
        "uac-pbx-call.xml",
        true,
        vec![line(NUMBER, NUMBER, "1000", SERVER_CID); 2],
    );
    held.extra.extend(["-d", "4000"].map(String::from));
    let third = out.pbx(
        "pbx-third",
        "uac-reject.xml",
        true,
        vec![format!("{NUMBER};403;70")],
    );
    let (held_run, third_run) = std::thread::scope(|s| {
        let h = s.spawn(|| held.run(&out.dir));
        std::thread::sleep(Duration::from_millis(1500));
        let t = third.run(&out.dir);
        (h.join().unwrap(), t)
    });
    let trunks = out.finish(vec![
        held_run.check(),
        third_run.check(),
        uas.finish(UAS_FINISH),
    ]);
    assert_eq!(trunks, Some(0), "every trunk given back");
}
