//! Live reload through the admin API under load: while SIPp places calls at a steady
//! rate, a script creates a document with new DIDs, modifies the document the calls use
//! and deletes another, 100 times. No call may fail, and a new DID must route the moment
//! its PUT has returned (a hand-written INVITE from a second trusted carrier is sent
//! right after the PUT and must reach that document's PBX).

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use crate::config::{self, dids, Pbx, ProxySetup};
use crate::harness::{addr, free_port, TestDir, LOOPBACK};
use crate::proxy::Proxy;
use crate::raw;
use crate::{call_lines, Scene, UAS_FINISH};

pub(crate) const TOKEN: &str = "e2e-admin-token-0123456789";
const ROUNDS: usize = 100;
/// How long a probe waits for its INVITE or its final response.
const PROBE_WAIT: Duration = Duration::from_secs(3);

/// One HTTP/1.1 request on a fresh connection; (status, JSON body).
pub(crate) fn http(
    api: u16,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, Value), String> {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut s = TcpStream::connect(addr(api)).map_err(|e| format!("connect API: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nX-Auth-Token: {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).map_err(|e| e.to_string())?;
    let (head, body) = raw.split_once("\r\n\r\n").ok_or("no HTTP header end")?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("no status")?;
    let json = serde_json::from_str(body).map_err(|e| format!("{e}: {body}"))?;
    Ok((status, json))
}

/// The second carrier (hand-written requests) and two PBX sockets the new documents
/// point at in turn (two documents never share an IP-auth address).
pub(crate) struct Probe {
    carrier: UdpSocket,
    pbxs: [UdpSocket; 2],
    proxy_port: u16,
}

fn bind(port: u16) -> UdpSocket {
    let s = UdpSocket::bind((LOOPBACK, port)).expect("bind probe socket");
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    s
}

fn header<'a>(message: &'a str, name: &str) -> Option<&'a str> {
    message.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// A 486 for `invite`, as a PBX would answer (every Via copied, a To tag added).
fn busy_reply(invite: &str) -> String {
    let mut text = String::from("SIP/2.0 486 Busy Here\r\n");
    for line in invite.lines() {
        let name = line
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if matches!(
            name.as_str(),
            "via" | "v" | "from" | "f" | "call-id" | "i" | "cseq"
        ) {
            text.push_str(line.trim_end());
            text.push_str("\r\n");
        }
    }
    let to = header(invite, "To").unwrap_or("<sip:x@127.0.0.1>");
    text.push_str(&format!(
        "To: {to};tag=probe-pbx\r\nContent-Length: 0\r\n\r\n"
    ));
    text
}

impl Probe {
    pub(crate) fn new(proxy_port: u16, carrier_port: u16, pbx_ports: [u16; 2]) -> Probe {
        Probe {
            carrier: bind(carrier_port),
            pbxs: [bind(pbx_ports[0]), bind(pbx_ports[1])],
            proxy_port,
        }
    }

    /// One INVITE to `did`. With `pbx`, it must reach that PBX socket (which answers
    /// 486); returns the final status the carrier got (and ACKs it).
    pub(crate) fn call(&self, did: &str, n: usize, pbx: Option<usize>) -> Result<u16, String> {
        let from_port = self.carrier.local_addr().unwrap().port();
        let call_id = format!("probe-{n}-{did}@127.0.0.1");
        let branch = format!("z9hG4bK-probe-{n}-{}", did.trim_start_matches('+'));
        let via = format!("SIP/2.0/UDP 127.0.0.1:{from_port};branch={branch};rport");
        let ruri = format!("sip:{did}@127.0.0.1:{}", self.proxy_port);
        let to = format!("<sip:{did}@127.0.0.1>");
        let overrides = [
            ("Via", via.as_str()),
            ("Call-ID", call_id.as_str()),
            ("To", to.as_str()),
        ];
        let invite = raw::request_text("INVITE", &ruri, from_port, self.proxy_port, &overrides);
        self.carrier
            .send_to(invite.as_bytes(), addr(self.proxy_port))
            .map_err(|e| e.to_string())?;
        if let Some(k) = pbx {
            self.answer_busy(k, &call_id)?;
        }
        let response = self.final_response(&call_id)?;
        let status = raw::status_code(&response).ok_or("unparsable response")?;
        let ack_to = header(&response, "To").unwrap_or(&to).to_string();
        let overrides = [
            ("Via", via.as_str()),
            ("Call-ID", call_id.as_str()),
            ("To", ack_to.as_str()),
            ("CSeq", "1 ACK"),
        ];
        let ack = raw::request_text("ACK", &ruri, from_port, self.proxy_port, &overrides);
        let _ = self.carrier.send_to(ack.as_bytes(), addr(self.proxy_port));
        Ok(status)
    }

    /// Waits for the INVITE of `call_id` at PBX socket `k` and answers it 486.
    fn answer_busy(&self, k: usize, call_id: &str) -> Result<(), String> {
        let deadline = Instant::now() + PROBE_WAIT;
        let mut buf = vec![0u8; 65536];
        while Instant::now() < deadline {
            let Ok((len, from)) = self.pbxs[k].recv_from(&mut buf) else {
                continue;
            };
            let text = String::from_utf8_lossy(&buf[..len]).into_owned();
            if text.starts_with("INVITE ") && header(&text, "Call-ID") == Some(call_id) {
                let reply = busy_reply(&text);
                self.pbxs[k]
                    .send_to(reply.as_bytes(), from)
                    .map_err(|e| e.to_string())?;
                return Ok(());
            }
        }
        Err(format!(
            "INVITE {call_id} never reached PBX {k} within {PROBE_WAIT:?}"
        ))
    }

    /// The first final response for `call_id` at the carrier.
    fn final_response(&self, call_id: &str) -> Result<String, String> {
        let deadline = Instant::now() + PROBE_WAIT;
        let mut buf = vec![0u8; 65536];
        while Instant::now() < deadline {
            let Ok(len) = self.carrier.recv(&mut buf) else {
                continue;
            };
            let text = String::from_utf8_lossy(&buf[..len]).into_owned();
            let is_final = raw::status_code(&text).is_some_and(|s| s >= 200);
            if is_final && header(&text, "Call-ID") == Some(call_id) {
                return Ok(text);
            }
        }
        Err(format!(
            "no final response for {call_id} within {PROBE_WAIT:?}"
        ))
    }
}

/// A new document for round `n`: one IP-auth PBX (probe socket `n % 2`) with two DIDs
/// nobody had before.
pub(crate) fn new_document(n: usize, pbx_port: u16) -> (Value, [String; 2]) {
    let dids = [
        format!("+1628555{:04}", 2 * n),
        format!("+1628555{:04}", 2 * n + 1),
    ];
    let doc = json!({
        "name": format!("round-{n}"),
        "servers": [{
            "name": "probe-pbx",
            "auth": {"auth_method": "IP", "ip": "127.0.0.1", "port": pbx_port},
            "options": {"inbound_format": "e164"},
            "DIDs": {dids[0].clone(): {}, dids[1].clone(): {}},
        }],
    });
    (doc, dids)
}

/// The calls' document with an extra DID that changes every round (PATCH: the
/// `servers` array is replaced whole).
fn modified_servers(current: &Value, n: usize) -> Value {
    let mut servers = current["servers"].clone();
    let dids = servers[0]["DIDs"].as_object_mut().expect("DIDs object");
    dids.retain(|k, _| !k.starts_with("+1415555999"));
    dids.insert(format!("+1415555999{}", n % 10), json!({}));
    servers
}

/// The script: 100 rounds of create (and probe), modify, delete. Returns when it ended.
fn script(api: u16, probe: &Probe, pbx_ports: [u16; 2]) -> Result<Instant, String> {
    let list = "/v2/accounts/e2e/connectivity";
    let mut previous: Option<(String, [String; 2])> = None;
    for n in 0..ROUNDS {
        let (doc, new_dids) = new_document(n, pbx_ports[n % 2]);
        let (status, body) = http(api, "PUT", list, Some(&json!({"data": doc})))?;
        if status != 201 {
            return Err(format!("round {n}: PUT {status}: {body}"));
        }
        let id = body["data"]["id"].as_str().ok_or("no id")?.to_string();
        // Right after the PUT returned: the new DID routes to its PBX.
        let got = probe.call(&new_dids[n % 2], n, Some(n % 2))?;
        if got != 486 {
            return Err(format!(
                "round {n}: new DID got {got}, expected the PBX's 486"
            ));
        }
        let pbx_doc = format!("{list}/pbx");
        let (_, current) = http(api, "GET", &pbx_doc, None)?;
        let patch = json!({"data": {"servers": modified_servers(&current["data"], n)}});
        let (status, body) = http(api, "PATCH", &pbx_doc, Some(&patch))?;
        if status != 200 {
            return Err(format!("round {n}: PATCH {status}: {body}"));
        }
        if let Some((old, old_dids)) = previous.take() {
            let (status, body) = http(api, "DELETE", &format!("{list}/{old}"), None)?;
            if status != 200 {
                return Err(format!("round {n}: DELETE {status}: {body}"));
            }
            // Deleted: its DIDs are unknown at once.
            let got = probe.call(&old_dids[0], 1000 + n, None)?;
            if got != 404 {
                return Err(format!("round {n}: deleted DID got {got}, expected 404"));
            }
        }
        previous = Some((id, new_dids));
    }
    Ok(Instant::now())
}

#[test]
fn live_reload_through_the_api_under_load() {
    let _serial = crate::harness::load_lock();
    let _sipp = crate::sipp::sipp_binary();
    const CALLS: usize = 600;
    const RATE: u32 = 30;
    let dir = TestDir::new("api-live-reload");
    let pbx = Pbx::new("pbx", free_port(), "npan", dids(0, 50));
    let probe_carrier = free_port();
    let pbx_ports = [free_port(), free_port()];
    let setup = ProxySetup {
        port: free_port(),
        carrier_port: free_port(),
        api_port: free_port(),
        extra: Map::new(),
    };
    let mut setup = setup;
    setup.extra = settings_extra(&setup, probe_carrier);
    let settings = config::write_with_account(&dir, &setup, std::slice::from_ref(&pbx), json!({}));
    let proxy = Proxy::start(&dir, &settings, &setup);
    let scene = Scene { dir, setup, proxy };
    let probe = Probe::new(scene.setup.port, probe_carrier, pbx_ports);

    let uas = scene.uas("uas", "uas-answer.xml", pbx.port, CALLS as u64);
    let mut uac = scene.carrier("uac", "uac-call.xml", call_lines(&pbx, CALLS));
    uac.rate = RATE;
    let api = scene.setup.api_port;
    let (script_result, run) = thread::scope(|s| {
        let script = s.spawn(|| {
            // Calls are flowing before the first change.
            thread::sleep(Duration::from_secs(2));
            script(api, &probe, pbx_ports)
        });
        let run = uac.run(&scene.dir);
        let ended = Instant::now();
        (
            script
                .join()
                .expect("script panicked")
                .map(|at| (at, ended)),
            run,
        )
    });
    let mut results = vec![run.check(), uas.finish(UAS_FINISH)];
    match script_result {
        Ok((script_end, calls_end)) if script_end > calls_end => results.push(Err(
            "the script outlasted the calls: raise CALLS so every change happens under load".into(),
        )),
        Ok(_) => {}
        Err(why) => results.push(Err(format!("script: {why}"))),
    }
    scene.finish(results);
}

/// The admin token, and a second trusted carrier (the probe's exact source).
pub(crate) fn settings_extra(setup: &ProxySetup, probe_carrier: u16) -> Map<String, Value> {
    let carrier = |name: &str, port: u16| {
        json!({
            "name": name,
            "gateways": [{"host": "127.0.0.1", "port": port, "transport": "udp"}],
            "sources": [format!("127.0.0.1:{port}")],
        })
    };
    let mut extra = Map::new();
    extra.insert(
        "api".into(),
        json!({"listen": format!("127.0.0.1:{}", setup.api_port), "tokens": [{"token": TOKEN}]}),
    );
    extra.insert(
        "carriers".into(),
        json!([
            carrier("e2e-carrier", setup.carrier_port),
            carrier("probe-carrier", probe_carrier)
        ]),
    );
    extra
}
