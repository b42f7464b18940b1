//! TLS end to end (issue 17, item 2): the real binary with a TLS listener and TLS
//! carrier gateways, certificates made by the test (a test CA with `rcgen`: the proxy's
//! certificate for 127.0.0.1, the gateways', and a rogue CA's). Debian's SIPp has no
//! TLS, so the TLS parties are written here with rustls: a carrier that calls over TLS
//! and a gateway that answers over TLS. The UDP parties (the PBXs) are SIPp.
//!
//! * A TLS carrier calls a UDP PBX: INVITE/100/180/200/ACK/BYE/200, with the proxy's two
//!   Record-Route entries (RFC 5658) seen by both: the PBX in its INVITE, the carrier in
//!   its 200.
//! * A UDP PBX (IP auth) calls out to a TLS carrier gateway: it gets a Request-URI with
//!   `;transport=tls`, both entries, and ACK and BYE over the same connection.
//! * A gateway whose certificate a rogue CA signed is refused: the handshake fails, the
//!   call fails over to the next carrier at once, `tls_handshake` is counted.
//! * A gateway named by DNS (SRV on a test dnsmasq) must prove the configured domain, sent
//!   as SNI (RFC 5922 §4): a hop whose certificate names only its SRV target and address
//!   is refused and the next hop of the same attempt, with the domain's certificate,
//!   completes the call.
//! * A `sips:` failover target goes over TLS, never over UDP (a UDP socket on the same
//!   port sees nothing).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{json, Map, Value};

use crate::config::{dids, Pbx, ProxySetup};
use crate::harness::{free_port, TestDir};
use crate::outbound::NUMBER;
use crate::proxy::Proxy;
use crate::sipp::{Transport, Uac, Uas};
use crate::transport_change::{check_record_routes, trace_msg};
use crate::{call_lines, check_metrics, check_metrics_at, expected_user, Scene, UAS_FINISH};

/// How long a TLS party waits for the next message.
const WAIT: Duration = Duration::from_secs(10);
/// Where the TLS carrier calls from (a trusted source of its own).
const TLS_CARRIER_IP: &str = "127.0.0.3";
/// The IP-auth PBX of the outbound tests.
const IP_PBX: &str = "127.0.0.2";

// ---- Certificates ----

struct Ca {
    cert: Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).expect("CA certificate");
        Ca { cert, key }
    }

    /// `<name>.ca.pem`.
    fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(format!("{name}.ca.pem"));
        std::fs::write(&path, self.cert.pem()).expect("write CA");
        path
    }

    /// A certificate for 127.0.0.1 and localhost (server and client use), written as
    /// `<name>.pem` and `<name>.key`.
    fn leaf(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        self.leaf_for(dir, name, &["127.0.0.1", "localhost"])
    }

    /// A certificate for `sans` (DNS names or IP addresses), as [`Ca::leaf`].
    fn leaf_for(&self, dir: &Path, name: &str, sans: &[&str]) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().expect("key");
        let sans = sans.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let mut params = CertificateParams::new(sans).expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &self.cert, &self.key).expect("sign");
        let (cert_path, key_path) = (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&cert_path, cert.pem()).expect("write certificate");
        std::fs::write(&key_path, key.serialize_pem()).expect("write key");
        (cert_path, key_path)
    }
}

#[allow(deprecated)]
fn ring() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn chain(path: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path)
        .expect("read certificates")
        .map(|c| c.expect("certificate"))
        .collect()
}

// ---- SIP over a TLS stream ----

trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// One TLS connection carrying SIP: messages framed by Content-Length.
struct SipTls {
    s: Box<dyn Stream>,
    buf: Vec<u8>,
}

impl SipTls {
    /// Connects from `from_ip` to the proxy's TLS listener, verifying its certificate
    /// against `ca` for the IP 127.0.0.1.
    fn connect(from_ip: &str, to: SocketAddr, ca: &Path) -> SipTls {
        let mut roots = rustls::RootCertStore::empty();
        for c in chain(ca) {
            roots.add(c).expect("root");
        }
        let config = rustls::ClientConfig::builder_with_provider(ring())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        let local: SocketAddr = format!("{from_ip}:0").parse().expect("source address");
        socket
            .bind(&local.into())
            .expect("bind the carrier's address");
        socket
            .connect_timeout(&to.into(), WAIT)
            .expect("connect to the TLS listener");
        let tcp: TcpStream = socket.into();
        tcp.set_read_timeout(Some(WAIT)).expect("timeout");
        let name = ServerName::IpAddress(to.ip().into());
        let conn = rustls::ClientConnection::new(Arc::new(config), name).expect("client");
        SipTls {
            s: Box::new(rustls::StreamOwned::new(conn, tcp)),
            buf: Vec::new(),
        }
    }

    /// Sends `text` (lines ending in `\n` or `\r\n`) as one SIP message.
    fn send(&mut self, text: &str) {
        let wire = text.replace("\r\n", "\n").replace('\n', "\r\n");
        self.s.write_all(wire.as_bytes()).expect("send over TLS");
        self.s.flush().expect("flush");
    }

    /// The next whole message (keep-alive CRLFs skipped).
    fn recv(&mut self) -> Result<String, String> {
        let deadline = Instant::now() + WAIT;
        loop {
            while self.buf.starts_with(b"\r\n") {
                self.buf.drain(..2);
            }
            if let Some(msg) = take_message(&mut self.buf) {
                return Ok(msg);
            }
            if Instant::now() > deadline {
                return Err("no message within the wait".into());
            }
            let mut chunk = [0u8; 4096];
            match self.s.read(&mut chunk) {
                Ok(0) => return Err("connection closed".into()),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(format!("read: {e}")),
            }
        }
    }

    /// Messages until a response with `status` to `method` (provisional ones collected).
    fn until_status(&mut self, method: &str, status: u16) -> Result<Vec<String>, String> {
        let mut seen = Vec::new();
        for _ in 0..16 {
            let msg = self.recv()?;
            let done = status_of(&msg) == Some(status) && cseq_method(&msg) == method;
            seen.push(msg);
            if done {
                return Ok(seen);
            }
        }
        Err(format!("no {status} for {method}: {seen:?}"))
    }
}

/// One complete message off the front of `buf`, if there is one.
fn take_message(buf: &mut Vec<u8>) -> Option<String> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let len: usize = header(&head, "content-length")
        .first()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if buf.len() < end + len {
        return None;
    }
    let msg = String::from_utf8_lossy(&buf[..end + len]).into_owned();
    buf.drain(..end + len);
    Some(msg)
}

/// Every value of header `name` (case-insensitive), comma-separated values split.
fn header(msg: &str, name: &str) -> Vec<String> {
    msg.lines()
        .take_while(|l| !l.trim().is_empty())
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .flat_map(|(_, v)| {
            v.split(',')
                .map(|s| s.trim().to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Header lines of `name` as they are (values with commas kept whole), for copying.
fn header_lines(msg: &str, name: &str) -> Vec<String> {
    msg.lines()
        .take_while(|l| !l.trim().is_empty())
        .skip(1)
        .filter(|l| {
            l.split_once(':')
                .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        })
        .map(str::to_string)
        .collect()
}

fn status_of(msg: &str) -> Option<u16> {
    msg.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()
}

fn cseq_method(msg: &str) -> String {
    header(msg, "cseq")
        .first()
        .and_then(|v| v.split_whitespace().nth(1))
        .unwrap_or("")
        .to_string()
}

/// `<uri>` of a Contact value.
fn contact_uri(msg: &str) -> Option<String> {
    let v = header(msg, "contact").into_iter().next()?;
    let start = v.find('<')? + 1;
    let end = v.find('>')?;
    Some(v[start..end].to_string())
}

/// A response to `req`: its Vias, Record-Routes (for 18x/2xx of an INVITE), From, To
/// (with our tag unless it has one), Call-ID and CSeq.
fn response(req: &str, code: u16, reason: &str, contact: &str) -> String {
    let mut out = format!("SIP/2.0 {code} {reason}\n");
    for name in ["via", "record-route", "from"] {
        for l in header_lines(req, name) {
            out.push_str(&l);
            out.push('\n');
        }
    }
    for l in header_lines(req, "to") {
        out.push_str(&l);
        if !l.contains("tag=") {
            out.push_str(";tag=tlsgw");
        }
        out.push('\n');
    }
    for name in ["call-id", "cseq"] {
        for l in header_lines(req, name) {
            out.push_str(&l);
            out.push('\n');
        }
    }
    out.push_str(&format!("Contact: <{contact}>\nContent-Length: 0\n\n"));
    out
}

// ---- The TLS gateway (a carrier answering over TLS) ----

/// What a TLS gateway saw on one connection.
#[derive(Debug)]
struct GatewayCall {
    /// The server name the proxy asked for (SNI), if it sent one.
    sni: Option<String>,
    /// The INVITE as received.
    invite: String,
    /// Methods received after it, in order (ACK, BYE...).
    after: Vec<String>,
}

/// A TLS gateway on 127.0.0.1:`port` with `cert`/`key`: answers each INVITE 180 then
/// 200, each BYE 200, on the connection it came in on; reports each connection's call
/// (or why it failed, e.g. the handshake) when the BYE is answered or the peer gives up.
fn tls_gateway(port: u16, cert: &Path, key: &Path) -> Receiver<Result<GatewayCall, String>> {
    let key = PrivateKeyDer::from_pem_file(key).expect("gateway key");
    let config = rustls::ServerConfig::builder_with_provider(ring())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(chain(cert), key)
        .expect("gateway config");
    let config = Arc::new(config);
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind TLS gateway");
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for tcp in listener.incoming().take(4) {
            let Ok(mut tcp) = tcp else { continue };
            let _ = tcp.set_read_timeout(Some(WAIT));
            let mut conn = rustls::ServerConnection::new(config.clone()).expect("server");
            // The handshake first, to know the name the proxy asked for.
            if let Err(e) = conn.complete_io(&mut tcp) {
                if tx.send(Err(format!("TLS handshake: {e}"))).is_err() {
                    return;
                }
                continue;
            }
            let sni = conn.server_name().map(str::to_string);
            let mut sip = SipTls {
                s: Box::new(rustls::StreamOwned::new(conn, tcp)),
                buf: Vec::new(),
            };
            let contact = format!("sip:gw@127.0.0.1:{port};transport=tls");
            let call = serve_call(&mut sip, &contact).map(|c| GatewayCall { sni, ..c });
            if tx.send(call).is_err() {
                return;
            }
        }
    });
    rx
}

/// One call on a gateway connection: INVITE → 180, 200; ACK; BYE → 200.
fn serve_call(sip: &mut SipTls, contact: &str) -> Result<GatewayCall, String> {
    let invite = sip.recv()?;
    if !invite.starts_with("INVITE ") {
        return Err(format!("expected an INVITE: {invite}"));
    }
    sip.send(&response(&invite, 180, "Ringing", contact));
    sip.send(&response(&invite, 200, "OK", contact));
    let mut after = Vec::new();
    for _ in 0..8 {
        let msg = sip.recv()?;
        let method = msg.split_whitespace().next().unwrap_or("").to_string();
        if method == "BYE" {
            sip.send(&response(&msg, 200, "OK", contact));
            after.push(method);
            return Ok(GatewayCall {
                sni: None,
                invite,
                after,
            });
        }
        after.push(method);
    }
    Err(format!("no BYE: {after:?}"))
}

fn request_uri(msg: &str) -> String {
    msg.split_whitespace().nth(1).unwrap_or("").to_string()
}

// ---- Tests ----

/// `listen.tls` on `tls_port` with the proxy's certificate, `tls.ca_file` = `ca`.
fn tls_settings(
    setup: &ProxySetup,
    tls_port: u16,
    cert: &Path,
    key: &Path,
    ca: &Path,
) -> Map<String, Value> {
    let listen = format!("127.0.0.1:{}", setup.port);
    let mut extra = Map::new();
    extra.insert(
        "listen".into(),
        json!({"udp": [listen], "tcp": [listen], "tls": [{
            "address": format!("127.0.0.1:{tls_port}"),
            "certificate": cert, "key": key,
        }]}),
    );
    extra.insert("tls".into(), json!({"ca_file": ca}));
    extra
}

/// A TLS carrier (from 127.0.0.3, a trusted source) calls a UDP PBX (SIPp). Both see the
/// two Record-Route entries: the UDP side nearest the PBX, the TLS side nearest the
/// carrier; the carrier's ACK and BYE with both Routes reach the PBX; the BYE's 200
/// comes back over the same TLS connection.
#[test]
fn tls_carrier_to_udp_pbx_double_record_route() {
    let pbx = Pbx::new("pbx", free_port(), "npan", dids(0, 1));
    let tls_port = free_port();
    let certs = tempfile::tempdir().expect("certificate dir");
    let ca = Ca::new("e2e test CA");
    let ca_file = ca.write(certs.path(), "test");
    let (cert, key) = ca.leaf(certs.path(), "proxy");
    let scene = Scene::start_with_setup(
        "tls-inbound",
        std::slice::from_ref(&pbx),
        |setup| {
            let mut extra = tls_settings(setup, tls_port, &cert, &key, &ca_file);
            extra.insert(
                "carriers".into(),
                json!([{"name": "tls-carrier",
                        "gateways": [{"host": "127.0.0.1", "port": setup.carrier_port}],
                        "sources": [format!("127.0.0.1:{}", setup.carrier_port), TLS_CARRIER_IP]}]),
            );
            extra
        },
        json!({}),
    );
    let (uas_trace, uas_msgs) = trace_msg(&scene.dir, "uas");
    let uas_args: Vec<&str> = uas_trace.iter().map(String::as_str).collect();
    let uas = Uas::start_with(
        &scene.dir,
        "uas",
        "uas-answer.xml",
        pbx.port,
        1,
        60,
        &uas_args,
    );
    let port = scene.setup.port;
    let udp_rr = format!("<sip:127.0.0.1:{port};lr>");
    let tls_rr = format!("<sip:127.0.0.1:{tls_port};transport=tls;lr>");
    let expected = [udp_rr.clone(), tls_rr.clone()];
    let call = tls_carrier_call(&pbx, tls_port, &ca_file, &expected);
    let results = vec![
        call,
        uas.finish(UAS_FINISH),
        check_record_routes(&uas_msgs, "INVITE ", &expected, 1),
        check_metrics(
            &scene,
            &[
                (
                    "trunkstore_calls_total{direction=\"inbound\",outcome=\"answered\"}",
                    1,
                ),
                ("trunkstore_active_calls", 0),
            ],
        ),
    ];
    scene.finish(results);
}

/// The carrier's side of the inbound call: INVITE to `sips:` us (the TLS listener),
/// 100/180/200 with both Record-Route entries, ACK and BYE with both as Routes, 200.
fn tls_carrier_call(pbx: &Pbx, tls_port: u16, ca: &Path, rr: &[String]) -> Result<(), String> {
    let proxy = SocketAddr::from(([127, 0, 0, 1], tls_port));
    let mut sip = SipTls::connect(TLS_CARRIER_IP, proxy, ca);
    let did = &pbx.dids[0];
    let user = expected_user(did, pbx.format, None);
    let me = format!("{TLS_CARRIER_IP}:5061");
    let dialog = format!(
        "From: <sip:carrier@{TLS_CARRIER_IP}>;tag=tlsc\nCall-ID: tls-inbound-1@{TLS_CARRIER_IP}\n"
    );
    sip.send(&format!(
        "INVITE sips:{did}@127.0.0.1:{tls_port} SIP/2.0\n\
         Via: SIP/2.0/TLS {me};branch=z9hG4bK-tls-inv;rport\n\
         Max-Forwards: 70\n{dialog}\
         To: <sips:{did}@127.0.0.1>\n\
         CSeq: 1 INVITE\n\
         Contact: <sips:carrier@{me}>\n\
         X-Test-Expect-User: {user}\n\
         Content-Length: 0\n\n"
    ));
    let seen = sip.until_status("INVITE", 200)?;
    let ok = seen.last().cloned().unwrap_or_default();
    if header(&ok, "record-route") != rr {
        return Err(format!(
            "the carrier's 200 carried {:?}, expected {rr:?}",
            header(&ok, "record-route")
        ));
    }
    let to = header_lines(&ok, "to").join("\n");
    let target = contact_uri(&ok).ok_or("200 without Contact")?;
    // The route set reversed: our TLS side first.
    let routes = format!("Route: {}, {}\n", rr[1], rr[0]);
    for (method, cseq, branch) in [("ACK", 1, "z9hG4bK-tls-ack"), ("BYE", 2, "z9hG4bK-tls-bye")] {
        sip.send(&format!(
            "{method} {target} SIP/2.0\n\
             Via: SIP/2.0/TLS {me};branch={branch};rport\n\
             {routes}Max-Forwards: 70\n{dialog}{to}\n\
             CSeq: {cseq} {method}\n\
             Contact: <sips:carrier@{me}>\n\
             Content-Length: 0\n\n"
        ));
    }
    sip.until_status("BYE", 200)?;
    Ok(())
}

/// The outbound side: a settings file with `carriers` (TLS gateways), the proxy's own
/// TLS listener on `tls_port` (a certificate from `ca`, which also verifies the
/// gateways), the IP-auth PBX at 127.0.0.2.
fn outbound_scene(test: &str, carriers: Value, ca: &Ca, certs: &Path, tls_port: u16) -> Scene {
    outbound_scene_with(test, carriers, ca, certs, tls_port, Map::new())
}

/// [`outbound_scene`] with `extra` settings (e.g. `dns`).
fn outbound_scene_with(
    test: &str,
    carriers: Value,
    ca: &Ca,
    certs: &Path,
    tls_port: u16,
    extra: Map<String, Value>,
) -> Scene {
    let _sipp = crate::sipp::sipp_binary();
    let dir = TestDir::new(test);
    let setup = ProxySetup {
        port: free_port(),
        carrier_port: free_port(),
        api_port: free_port(),
        extra: Map::new(),
    };
    let ca_file = ca.write(certs, "proxy-trust");
    let (cert, key) = ca.leaf(certs, "proxy");
    let mut settings = settings_json_base(&setup, carriers);
    for (k, v) in tls_settings(&setup, tls_port, &cert, &key, &ca_file)
        .into_iter()
        .chain(extra)
    {
        settings[k] = v;
    }
    let doc = json!({
        "name": "tls-outbound",
        "servers": [{"name": "ip-pbx", "auth": {"auth_method": "IP", "ip": IP_PBX}}],
    });
    let path = crate::config::write_files(&dir, &settings, &[("acme", &doc)]);
    let proxy = Proxy::start(&dir, &path, &setup);
    Scene { dir, setup, proxy }
}

fn settings_json_base(setup: &ProxySetup, carriers: Value) -> Value {
    let listen = format!("127.0.0.1:{}", setup.port);
    json!({
        "listen": {"udp": [listen], "tcp": [listen]},
        "advertise": listen,
        "connectivity_dir": "connectivity",
        "carriers": carriers,
        "api": {"listen": format!("127.0.0.1:{}", setup.api_port), "tokens": []},
        "log": {"level": "info", "format": "text"},
    })
}

fn tls_carrier(name: &str, port: u16, priority: u32) -> Value {
    json!({"name": name, "priority": priority,
           "gateways": [{"host": "127.0.0.1", "port": port, "transport": "tls"}],
           "sources": [format!("127.0.0.1:{port}")]})
}

/// The IP-auth PBX (SIPp from 127.0.0.2) calls NUMBER once.
fn pbx_call(scene: &Scene) -> Uac<'static> {
    Uac {
        name: "pbx",
        scenario: "uac-pbx-call.xml",
        proxy_port: scene.setup.port,
        local_port: free_port(),
        transport: Transport::Udp,
        lines: vec![format!("{NUMBER};{NUMBER};1000;{NUMBER}")],
        rate: 10,
        extra: vec![
            "-key".into(),
            "extra_header".into(),
            "X-Test-Direct: no".into(),
            "-i".into(),
            IP_PBX.into(),
        ],
    }
}

/// What the gateway saw must be one call over TLS with both Record-Route entries.
fn check_gateway_call(
    call: Result<Result<GatewayCall, String>, std::sync::mpsc::RecvTimeoutError>,
    rr: &[String],
) -> Result<(), String> {
    let call = call.map_err(|e| format!("the TLS gateway saw no call: {e}"))??;
    let uri = request_uri(&call.invite);
    if !uri.starts_with(&format!("sip:{NUMBER}@127.0.0.1:")) || !uri.ends_with(";transport=tls") {
        return Err(format!("the gateway's Request-URI: {uri}"));
    }
    if header(&call.invite, "record-route") != rr {
        return Err(format!(
            "the gateway's INVITE carried {:?}, expected {rr:?}",
            header(&call.invite, "record-route")
        ));
    }
    if !header(&call.invite, "via")[0].starts_with("SIP/2.0/TLS ") {
        return Err(format!(
            "our Via toward the gateway: {:?}",
            header(&call.invite, "via")
        ));
    }
    if call.after != ["ACK", "BYE"] {
        return Err(format!("after the INVITE the gateway got {:?}", call.after));
    }
    // A gateway configured by its IP proves its IP: no SNI (RFC 6066 §3).
    if call.sni.is_some() {
        return Err(format!("SNI sent to an IP gateway: {:?}", call.sni));
    }
    Ok(())
}

/// A UDP PBX calls out through a TLS carrier gateway (verified against the test CA by
/// its IP): the gateway gets the INVITE over TLS with both entries (TLS side on top),
/// then ACK and BYE on the same connection; the PBX's call completes.
#[test]
fn udp_pbx_to_tls_carrier_gateway() {
    let certs = tempfile::tempdir().expect("certificate dir");
    let ca = Ca::new("e2e test CA");
    let (cert, key) = ca.leaf(certs.path(), "gateway");
    let gw = free_port();
    let calls = tls_gateway(gw, &cert, &key);
    let tls_port = free_port();
    let carriers = json!([tls_carrier("tls-gw", gw, 10)]);
    let scene = outbound_scene("tls-outbound", carriers, &ca, certs.path(), tls_port);
    let run = pbx_call(&scene).run(&scene.dir);
    let port = scene.setup.port;
    let rr = [
        format!("<sip:127.0.0.1:{tls_port};transport=tls;lr>"),
        format!("<sip:127.0.0.1:{port};lr>"),
    ];
    let results = vec![
        run.check(),
        check_gateway_call(calls.recv_timeout(WAIT), &rr),
        check_metrics(&scene, &[("trunkstore_active_calls", 0)]),
    ];
    scene.finish(results);
}

/// The first carrier's gateway shows a certificate a rogue CA signed: the handshake is
/// refused, counted as `tls_handshake`, and the call fails over at once to the second
/// carrier (a good TLS gateway), where it completes.
#[test]
fn a_gateway_certificate_from_an_unknown_ca_is_refused_and_the_call_fails_over() {
    let certs = tempfile::tempdir().expect("certificate dir");
    let ca = Ca::new("e2e test CA");
    let (good_cert, good_key) = ca.leaf(certs.path(), "good");
    let rogue = Ca::new("rogue CA");
    let (bad_cert, bad_key) = rogue.leaf(certs.path(), "bad");
    let (bad, good) = (free_port(), free_port());
    let refused = tls_gateway(bad, &bad_cert, &bad_key);
    let calls = tls_gateway(good, &good_cert, &good_key);
    let carriers = json!([tls_carrier("rogue", bad, 10), tls_carrier("good", good, 20)]);
    let tls_port = free_port();
    let scene = outbound_scene("tls-bad-ca", carriers, &ca, certs.path(), tls_port);
    let started = Instant::now();
    let run = pbx_call(&scene).run(&scene.dir);
    let took = started.elapsed();
    let port = scene.setup.port;
    let rr = [
        format!("<sip:127.0.0.1:{tls_port};transport=tls;lr>"),
        format!("<sip:127.0.0.1:{port};lr>"),
    ];
    let bad_side = match refused.recv_timeout(WAIT) {
        Ok(Err(_)) => Ok(()),
        other => Err(format!(
            "the rogue gateway should see a failed handshake: {other:?}"
        )),
    };
    let results = vec![
        run.check(),
        bad_side,
        check_gateway_call(calls.recv_timeout(WAIT), &rr),
        // Failover at the handshake, not after timer B (32 s).
        (took < Duration::from_secs(10))
            .then_some(())
            .ok_or(format!("the call took {took:?}")),
        check_metrics(
            &scene,
            &[
                (
                    "trunkstore_transport_errors_total{kind=\"tls_handshake\"}",
                    1,
                ),
                ("trunkstore_active_calls", 0),
            ],
        ),
    ];
    scene.finish(results);
}

/// RFC 5922 §4: a carrier gateway named by DNS (`carrier.test`, TLS, no port) is located
/// by SRV (`_sips._tcp.carrier.test`: `gw1.test` at priority 10, `gw2.test` at 20, both
/// 127.0.0.1) and each hop must prove `carrier.test`, the configured domain, which is also
/// sent as SNI. gw1's certificate names its SRV target and its address but not the
/// domain: refused (counted as `tls_handshake`), and the same attempt goes on to gw2,
/// whose certificate names the domain; the call completes there, with no failover to
/// another carrier.
#[test]
fn a_tls_gateway_named_by_dns_proves_the_configured_domain() {
    let certs = tempfile::tempdir().expect("certificate dir");
    let ca = Ca::new("e2e test CA");
    let (bad_cert, bad_key) = ca.leaf_for(certs.path(), "gw1", &["gw1.test", "127.0.0.1"]);
    let (good_cert, good_key) = ca.leaf_for(certs.path(), "gw2", &["carrier.test"]);
    let (bad, good) = (free_port(), free_port());
    let refused = tls_gateway(bad, &bad_cert, &bad_key);
    let calls = tls_gateway(good, &good_cert, &good_key);
    let dir = TestDir::new("tls-dns-named-dnsmasq");
    let conf = format!(
        "srv-host=_sips._tcp.carrier.test,gw1.test,{bad},10,0\n\
         srv-host=_sips._tcp.carrier.test,gw2.test,{good},20,0\n"
    );
    let server = crate::dns::Dnsmasq::start(dir.path(), &conf, "127.0.0.1 gw1.test gw2.test\n");
    let carriers = json!([{"name": "named", "priority": 10,
        "gateways": [{"host": "carrier.test", "transport": "tls"}],
        "sources": [format!("127.0.0.1:{bad}"), format!("127.0.0.1:{good}")]}]);
    let mut extra = Map::new();
    extra.insert("dns".into(), crate::dns::dns_settings(&server));
    let tls_port = free_port();
    let scene = outbound_scene_with(
        "tls-dns-named",
        carriers,
        &ca,
        certs.path(),
        tls_port,
        extra,
    );
    let run = pbx_call(&scene).run(&scene.dir);
    let bad_side = match refused.recv_timeout(WAIT) {
        Ok(Err(_)) => Ok(()),
        other => Err(format!(
            "gw1 (no certificate for carrier.test) must be refused: {other:?}"
        )),
    };
    let good_side = match calls.recv_timeout(WAIT) {
        Ok(Ok(call)) => check_named_call(&call),
        other => Err(format!("gw2 saw no call: {other:?}")),
    };
    let results = vec![
        run.check(),
        bad_side,
        good_side,
        check_metrics(
            &scene,
            &[
                (
                    "trunkstore_transport_errors_total{kind=\"tls_handshake\"}",
                    1,
                ),
                ("trunkstore_active_calls", 0),
            ],
        ),
    ];
    scene.finish(results);
    drop(server);
}

/// The named gateway's call: SNI and Request-URI name the configured domain, ACK and BYE
/// followed on the connection.
fn check_named_call(call: &GatewayCall) -> Result<(), String> {
    if call.sni.as_deref() != Some("carrier.test") {
        return Err(format!("SNI: {:?}, expected carrier.test", call.sni));
    }
    let uri = request_uri(&call.invite);
    if !uri.starts_with(&format!("sip:{NUMBER}@carrier.test")) {
        return Err(format!("the gateway's Request-URI: {uri}"));
    }
    if call.after != ["ACK", "BYE"] {
        return Err(format!("after the INVITE the gateway got {:?}", call.after));
    }
    Ok(())
}

/// RFC 5630: the PBX fails (503) and its failover is a `sips:` URI. The failover goes
/// over TLS to the TLS gateway on that port; a UDP socket bound to the same port number
/// receives nothing; the carrier's call completes there.
#[test]
fn a_sips_failover_target_goes_over_tls_never_udp() {
    let certs = tempfile::tempdir().expect("certificate dir");
    let ca = Ca::new("e2e test CA");
    let ca_file = ca.write(certs.path(), "test");
    let (cert, key) = ca.leaf(certs.path(), "backup");
    let backup = free_port();
    let calls = tls_gateway(backup, &cert, &key);
    let udp_trap = UdpSocket::bind(("127.0.0.1", backup)).expect("bind the UDP trap");
    udp_trap
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let mut pbx = Pbx::new("pbx", free_port(), "npan", dids(0, 1));
    pbx.failover_sip = Some(format!("sips:backup@127.0.0.1:{backup}"));
    let scene = Scene::start_with(
        "tls-sips-failover",
        std::slice::from_ref(&pbx),
        {
            let mut extra = Map::new();
            extra.insert("tls".into(), json!({"ca_file": ca_file}));
            extra
        },
        json!({}),
    );
    let uas = scene.uas("uas", "uas-unavailable.xml", pbx.port, 1);
    let run = scene
        .carrier("carrier", "uac-call.xml", call_lines(&pbx, 1))
        .run(&scene.dir);
    let mut buf = [0u8; 2048];
    let udp_seen = match udp_trap.recv_from(&mut buf) {
        Ok((n, from)) => Err(format!(
            "a datagram reached the sips: target's port from {from}: {}",
            String::from_utf8_lossy(&buf[..n])
        )),
        Err(_) => Ok(()),
    };
    let gateway = match calls.recv_timeout(WAIT) {
        Ok(Ok(call)) if request_uri(&call.invite).starts_with("sips:backup@") => Ok(()),
        other => Err(format!("the sips: target over TLS: {other:?}")),
    };
    let results = vec![
        run.check(),
        uas.finish(UAS_FINISH),
        gateway,
        udp_seen,
        check_metrics_at(scene.setup.api_port, &[("trunkstore_active_calls", 0)]),
    ];
    scene.finish(results);
}

/// A UDP carrier (SIPp) calls a PBX reached over TLS (`options.transport: "tls"`, a
/// rustls party here): both entries nearest each side, seen by the PBX in its INVITE and
/// by the carrier in its 200; the carrier's ACK and BYE reach the PBX over TLS.
#[test]
fn udp_carrier_to_tls_pbx_double_record_route() {
    let certs = tempfile::tempdir().expect("certificate dir");
    let ca = Ca::new("e2e test CA");
    let ca_file = ca.write(certs.path(), "test");
    let (proxy_cert, proxy_key) = ca.leaf(certs.path(), "proxy");
    let (pbx_cert, pbx_key) = ca.leaf(certs.path(), "pbx");
    let mut pbx = Pbx::new("pbx", free_port(), "npan", dids(0, 1));
    pbx.options.insert("transport".into(), json!("tls"));
    let calls = tls_gateway(pbx.port, &pbx_cert, &pbx_key);
    let tls_port = free_port();
    let scene = Scene::start_with_setup(
        "tls-pbx",
        std::slice::from_ref(&pbx),
        |setup| tls_settings(setup, tls_port, &proxy_cert, &proxy_key, &ca_file),
        json!({}),
    );
    let (uac_trace, uac_msgs) = trace_msg(&scene.dir, "uac");
    let mut uac = scene.carrier("uac", "uac-call.xml", call_lines(&pbx, 1));
    uac.extra.extend(uac_trace);
    let run = uac.run(&scene.dir);
    let port = scene.setup.port;
    let expected = [
        format!("<sip:127.0.0.1:{tls_port};transport=tls;lr>"),
        format!("<sip:127.0.0.1:{port};lr>"),
    ];
    let pbx_side = match calls.recv_timeout(WAIT) {
        Ok(Ok(call)) if header(&call.invite, "record-route") == expected => (call.after
            == ["ACK", "BYE"])
        .then_some(())
        .ok_or(format!("the TLS PBX got {:?} after the INVITE", call.after)),
        other => Err(format!(
            "the TLS PBX's call: {other:?}, expected Record-Route {expected:?}"
        )),
    };
    let results = vec![
        run.check(),
        pbx_side,
        check_record_routes(&uac_msgs, "SIP/2.0 200", &expected, 1),
        check_metrics(&scene, &[("trunkstore_active_calls", 0)]),
    ];
    scene.finish(results);
}
