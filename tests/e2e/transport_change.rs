//! RFC 5658 end to end (issue 17, item 3): a carrier over TCP calls a PBX the proxy
//! reaches over UDP (servers are always reached over UDP), and a carrier over IPv4
//! calls a PBX on IPv6 (`::1`). Both sides must see the proxy's two Record-Route
//! entries (read from SIPp's message traces: the PBX's INVITE, the carrier's 200), the
//! one nearest each UA naming the proxy on that UA's own side; the call completes with
//! the BYE from either side (the scenarios check the route set has `lr`, the BYE
//! arrives through the proxy and is answered).

use std::fs;
use std::path::PathBuf;

use serde_json::json;

use crate::config::{dids, settings_json, write_files, Pbx};
use crate::harness::{free_port, TestDir};
use crate::proxy::Proxy;
use crate::sipp::{Transport, Uas};
use crate::{call_lines, check_metrics, Scene, UAS_FINISH};

/// SIPp arguments writing every message it sends and receives to `<dir>/<name>.msg`.
pub(crate) fn trace_msg(dir: &TestDir, name: &str) -> (Vec<String>, PathBuf) {
    let path = dir.file(&format!("{name}.msg"));
    let args = vec![
        "-trace_msg".to_string(),
        "-message_file".to_string(),
        path.display().to_string(),
    ];
    (args, path)
}

/// The Record-Route values (top first) of each message in SIPp's trace `path` that
/// SIPp received and whose first line starts with `start` (e.g. `INVITE `, `SIP/2.0 200`)
/// and whose CSeq method is INVITE.
fn received_record_routes(path: &PathBuf, start: &str) -> Vec<Vec<String>> {
    let text = fs::read_to_string(path).unwrap_or_default();
    let mut out = Vec::new();
    for block in text.split("message received") {
        // The block's message starts after the "[N] bytes :" line and a blank line.
        let Some((_, msg)) = block.split_once("bytes :") else {
            continue;
        };
        let msg = msg.trim_start();
        // The header section only: the trace goes on with the next message sent.
        let head: Vec<&str> = msg.lines().take_while(|l| !l.trim().is_empty()).collect();
        let invite_txn = head
            .iter()
            .any(|l| l.to_ascii_lowercase().starts_with("cseq:") && l.contains("INVITE"));
        if !msg.starts_with(start) || !invite_txn {
            continue;
        }
        let rr: Vec<String> = head
            .iter()
            .filter_map(|l| l.split_once(':'))
            .filter(|(name, _)| name.trim().eq_ignore_ascii_case("Record-Route"))
            .flat_map(|(_, v)| {
                v.split(',')
                    .map(|s| s.trim().to_string())
                    .collect::<Vec<_>>()
            })
            .collect();
        out.push(rr);
    }
    out
}

/// Every message `start` in `path` carried exactly `expected` (and there were `calls`).
pub(crate) fn check_record_routes(
    path: &PathBuf,
    start: &str,
    expected: &[String],
    calls: usize,
) -> Result<(), String> {
    let seen = received_record_routes(path, start);
    if seen.len() < calls {
        return Err(format!(
            "{}: {} `{start}` messages received, expected at least {calls}",
            path.display(),
            seen.len()
        ));
    }
    match seen.iter().find(|rr| rr.as_slice() != expected) {
        Some(wrong) => Err(format!(
            "{}: a `{start}` carried Record-Route {wrong:?}, expected {expected:?}",
            path.display()
        )),
        None => Ok(()),
    }
}

/// `calls` calls from a TCP carrier to a UDP PBX, hung up by the carrier
/// (uac-call.xml / uas-answer.xml) or by the PBX (uac-callee-hangs-up.xml /
/// uas-hangup.xml).
fn tcp_carrier_to_udp_pbx(test: &str, pbx_hangs_up: bool) {
    const CALLS: usize = 5;
    let pbx = Pbx::new("pbx", free_port(), "npan", dids(0, 2));
    let scene = Scene::start(test, std::slice::from_ref(&pbx));
    let (uas_trace, uas_msgs) = trace_msg(&scene.dir, "uas");
    let (uac_trace, uac_msgs) = trace_msg(&scene.dir, "uac");
    let (uas_xml, uac_xml) = if pbx_hangs_up {
        ("uas-hangup.xml", "uac-callee-hangs-up.xml")
    } else {
        ("uas-answer.xml", "uac-call.xml")
    };
    let uas_args: Vec<&str> = uas_trace.iter().map(String::as_str).collect();
    let uas = Uas::start_with(
        &scene.dir,
        "uas",
        uas_xml,
        pbx.port,
        CALLS as u64,
        60,
        &uas_args,
    );
    let mut uac = scene.carrier("uac", uac_xml, call_lines(&pbx, CALLS));
    uac.transport = Transport::Tcp;
    uac.extra.extend(uac_trace);
    let run = uac.run(&scene.dir);
    let port = scene.setup.port;
    // Nearest the PBX (top) our UDP side, below it our TCP side, as the carrier reached us.
    let expected = [
        format!("<sip:127.0.0.1:{port};lr>"),
        format!("<sip:127.0.0.1:{port};transport=tcp;lr>"),
    ];
    let results = vec![
        run.check(),
        uas.finish(UAS_FINISH),
        check_record_routes(&uas_msgs, "INVITE ", &expected, CALLS),
        check_record_routes(&uac_msgs, "SIP/2.0 200", &expected, CALLS),
        check_metrics(
            &scene,
            &[
                (
                    "trunkstore_calls_total{direction=\"inbound\",outcome=\"answered\"}",
                    CALLS as u64,
                ),
                ("trunkstore_active_calls", 0),
            ],
        ),
    ];
    scene.finish(results);
}

#[test]
fn tcp_carrier_to_udp_pbx_double_record_route_carrier_hangs_up() {
    tcp_carrier_to_udp_pbx("rr5658-carrier-bye", false);
}

#[test]
fn tcp_carrier_to_udp_pbx_double_record_route_pbx_hangs_up() {
    tcp_carrier_to_udp_pbx("rr5658-pbx-bye", true);
}

/// IPv4 and IPv6 listeners together: the carrier on 127.0.0.1 (UDP) calls a PBX on
/// `[::1]` (UDP); the IPv6 listener advertises itself (the global advertise is IPv4).
/// The PBX hangs up, so its BYE crosses from IPv6 to IPv4.
#[test]
fn ipv4_carrier_to_ipv6_pbx_double_record_route() {
    const CALLS: usize = 3;
    let _sipp = crate::sipp::sipp_binary();
    let dir = TestDir::new("rr5658-v6");
    let mut setup = crate::config::ProxySetup {
        port: free_port(),
        carrier_port: free_port(),
        api_port: free_port(),
        extra: serde_json::Map::new(),
    };
    let port = setup.port;
    let v4 = format!("127.0.0.1:{port}");
    let v6 = format!("[::1]:{port}");
    setup
        .extra
        .insert("listen".into(), json!({"udp": [v4, v6], "tcp": [v4]}));
    let pbx_port = free_port();
    let pbx = Pbx::new("pbx", pbx_port, "npan", dids(0, 1));
    let document = json!({
        "name": "end-to-end",
        "servers": [{
            "name": "pbx-v6",
            "auth": {"auth_method": "IP", "ip": "::1", "port": pbx_port},
            "options": {"inbound_format": "npan"},
            "DIDs": {pbx.dids[0].clone(): {}},
        }],
    });
    let settings = write_files(&dir, &settings_json(&setup), &[("e2e", &document)]);
    let proxy = Proxy::start(&dir, &settings, &setup);
    let scene = Scene { dir, setup, proxy };
    let (uas_trace, uas_msgs) = trace_msg(&scene.dir, "uas");
    let (uac_trace, uac_msgs) = trace_msg(&scene.dir, "uac");
    let mut uas_args: Vec<&str> = vec!["-i", "::1"];
    uas_args.extend(uas_trace.iter().map(String::as_str));
    let uas = Uas::start_with(
        &scene.dir,
        "uas",
        "uas-hangup.xml",
        pbx_port,
        CALLS as u64,
        60,
        &uas_args,
    );
    let mut uac = scene.carrier("uac", "uac-callee-hangs-up.xml", call_lines(&pbx, CALLS));
    uac.extra.extend(uac_trace);
    let run = uac.run(&scene.dir);
    let expected = [
        format!("<sip:[::1]:{port};lr>"),
        format!("<sip:127.0.0.1:{port};lr>"),
    ];
    let results = vec![
        run.check(),
        uas.finish(UAS_FINISH),
        check_record_routes(&uas_msgs, "INVITE ", &expected, CALLS),
        check_record_routes(&uac_msgs, "SIP/2.0 200", &expected, CALLS),
        check_metrics(&scene, &[("trunkstore_active_calls", 0)]),
    ];
    scene.finish(results);
}
