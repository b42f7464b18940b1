//! Registrar and NAT end to end (issue 15): password PBXs without `options.ip` REGISTER
//! with digest and take their inbound calls at the binding.
//!
//! The PBX is one SIPp process at 127.0.0.7 (an unknown source, so it must authenticate)
//! whose Contact says 127.0.0.99:<port>, a private address behind its NAT: the test
//! listens there only to prove that nothing arrives. uac-register-answer.xml REGISTERs
//! (401, credentials, 200), then its out-of-call scenario uas-registered.xml takes the
//! proxy's INVITE on the same socket, or the same TCP connection, and answers it with
//! that private Contact again, so the ACK and the BYE reach the PBX only if the proxy
//! sends everything for the binding to its source. The carrier is the usual SIPp UAC
//! from the trusted 127.0.0.1:<carrier port>.
//!
//! Keep-alives are off in these settings (`registrar.keepalive_interval` 0): an OPTIONS
//! would reach the PBX's out-of-call scenario, which expects an INVITE.

use std::fs;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::thread::{self, ScopedJoinHandle};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use crate::config::{self, dids, ProxySetup};
use crate::harness::{free_port, TestDir};
use crate::proxy::Proxy;
use crate::sipp::{self, Transport, Uac, UacRun};
use crate::{check_metrics, Scene, UAS_FINISH};

/// The account directory of the test document (the `account` label of the gauge).
const ACCOUNT: &str = "e2e";
/// The proxy's default realm: the PBXs have no `auth_realm`, and their From/To host is
/// this, so their AOR is `<auth_user>@trunks.example`.
const REALM: &str = "trunks.example";
/// The registering PBXs' source address (loopback, neither a carrier nor an IP server).
const PBX_IP: &str = "127.0.0.7";
/// The same, as an address.
const PBX_SOURCE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 7);
/// The private address in the PBXs' Contact: nothing may ever be sent there.
const NAT_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 99);
const ALICE: (&str, &str) = ("alice", "s3cret");
const BOB: (&str, &str) = ("bob", "b0b-secret");
/// How long a registering PBX may take to get its 200.
const REGISTER_LIMIT: Duration = Duration::from_secs(10);
/// Bound of a PBX run that waits for its inbound call (its scenario gives up after 60 s).
const PBX_RUN_SECS: u64 = 90;
/// Expires of the bindings that must outlive the test.
const LONG_EXPIRES: u32 = 600;

/// One password PBX without `options.ip`: it can only be reached through its bindings.
struct PasswordPbx {
    name: &'static str,
    user: &'static str,
    password: &'static str,
    did: String,
    failover_sip: Option<String>,
}

impl PasswordPbx {
    fn new(name: &'static str, (user, password): (&'static str, &'static str), did: &str) -> Self {
        PasswordPbx {
            name,
            user,
            password,
            did: did.to_string(),
            failover_sip: None,
        }
    }

    fn to_json(&self) -> Value {
        let mut options = json!({"inbound_format": "npan"});
        if let Some(uri) = &self.failover_sip {
            options["failover"] = json!({"sip": uri});
        }
        let mut dids = Map::new();
        dids.insert(self.did.clone(), json!({}));
        json!({
            "name": self.name,
            "auth": {"auth_method": "password", "auth_user": self.user,
                     "auth_password": self.password},
            "options": options,
            "DIDs": dids,
        })
    }

    /// The Request-URI user the PBX must get for its DID (npan).
    fn npan(&self) -> &str {
        self.did.trim_start_matches("+1")
    }
}

/// Registrar settings with `min_expires`, bindings kept in `<test dir>/data`, no
/// keep-alives (an OPTIONS would reach the PBX's INVITE-only scenario).
fn registrar_settings(min_expires: u32) -> Map<String, Value> {
    registrar_settings_with(min_expires, 0, 3)
}

fn registrar_settings_with(min_expires: u32, keepalive: u32, failures: u32) -> Map<String, Value> {
    let mut settings = Map::new();
    settings.insert("default_realm".into(), json!(REALM));
    settings.insert("data_dir".into(), json!("data"));
    settings.insert(
        "registrar".into(),
        json!({
            "min_expires": min_expires,
            "max_expires": 3600,
            "default_expires": 3600,
            "max_contacts": 5,
            "keepalive_interval": keepalive,
            "keepalive_failures": failures,
        }),
    );
    settings
}

/// Writes the settings and one document with `servers` (JSON), starts the proxy.
fn start(test: &str, min_expires: u32, servers: Vec<Value>) -> Scene {
    start_with(test, registrar_settings(min_expires), servers)
}

fn start_with(test: &str, extra: Map<String, Value>, servers: Vec<Value>) -> Scene {
    let _sipp = sipp::sipp_binary();
    let dir = TestDir::new(test);
    let setup = ProxySetup {
        port: free_port(),
        carrier_port: free_port(),
        api_port: free_port(),
        extra,
    };
    let mut setup = setup;
    // An admin token, for the registrations listing.
    setup.extra.insert(
        "api".into(),
        json!({"listen": format!("127.0.0.1:{}", setup.api_port),
               "tokens": [{"token": crate::api::TOKEN, "account": null}]}),
    );
    let settings = config::settings_json(&setup);
    let doc = json!({"name": "registrar", "account": {}, "servers": servers});
    let path = config::write_files(&dir, &settings, &[(ACCOUNT, &doc)]);
    let proxy = Proxy::start(&dir, &path, &setup);
    Scene { dir, setup, proxy }
}

/// A SIPp run from `ip`:`port` authenticating as `user`/`password` when challenged.
/// The credentials' uri is the REGISTER's Request-URI, `sip:127.0.0.1:<proxy port>`.
fn registering<'a>(
    setup: &ProxySetup,
    name: &'a str,
    scenario: &'a str,
    (ip, port): (&str, u16),
    (user, password): (&str, &str),
    line: String,
    transport: Transport,
) -> Uac<'a> {
    let auth_uri = format!("127.0.0.1:{}", setup.port);
    let extra = [
        "-i",
        ip,
        "-au",
        user,
        "-ap",
        password,
        "-auth_uri",
        &auth_uri,
    ];
    Uac {
        name,
        scenario,
        proxy_port: setup.port,
        local_port: port,
        transport,
        lines: vec![line],
        rate: 10,
        extra: extra.map(String::from).to_vec(),
    }
}

/// The NATed PBX of uac-register-answer.xml at PBX_IP:`port`, Contact at `contact`;
/// `wait`: it then waits for its inbound call (else it ends once registered).
#[allow(clippy::too_many_arguments)]
fn nat_pbx<'a>(
    setup: &ProxySetup,
    name: &'a str,
    pbx: &PasswordPbx,
    port: u16,
    contact: &str,
    expires: u32,
    wait: bool,
    transport: Transport,
) -> Uac<'a> {
    let mode = if wait { "wait" } else { "once" };
    let line = format!("{};{REALM};{contact};{expires};{mode}", pbx.user);
    let mut uac = registering(
        setup,
        name,
        "uac-register-answer.xml",
        (PBX_IP, port),
        (pbx.user, pbx.password),
        line,
        transport,
    );
    let ooc = sipp::scenario("uas-registered.xml");
    uac.extra
        .extend(["-oocsf".to_string(), ooc.display().to_string()]);
    uac
}

/// Waits (bounded) until the PBX run `name` has logged its 200 to the REGISTER.
fn wait_registered(
    dir: &TestDir,
    name: &str,
    pbx: &ScopedJoinHandle<'_, UacRun>,
) -> Result<(), String> {
    let log = dir.file(&format!("{name}.log"));
    let deadline = Instant::now() + REGISTER_LIMIT;
    loop {
        if fs::read_to_string(&log).is_ok_and(|text| text.contains(": registered <")) {
            return Ok(());
        }
        if pbx.is_finished() {
            return Err(format!("{name} ended without registering"));
        }
        if Instant::now() >= deadline {
            return Err(format!("{name} not registered within {REGISTER_LIMIT:?}"));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A loopback address where the proxy must send nothing (UDP socket and TCP listener on
/// the same port): the private address of a Contact, or an expired binding's source.
struct Sink {
    at: SocketAddr,
    udp: UdpSocket,
    tcp: TcpListener,
}

impl Sink {
    fn bind(ip: Ipv4Addr, port: u16) -> Sink {
        let at = SocketAddr::from((ip, port));
        let udp = UdpSocket::bind(at).unwrap_or_else(|e| panic!("bind udp {at}: {e}"));
        let tcp = TcpListener::bind(at).unwrap_or_else(|e| panic!("bind tcp {at}: {e}"));
        udp.set_nonblocking(true).expect("non-blocking udp sink");
        tcp.set_nonblocking(true).expect("non-blocking tcp sink");
        Sink { at, udp, tcp }
    }

    fn host_port(&self) -> String {
        self.at.to_string()
    }

    /// No datagram and no connection arrived.
    fn silent(&self) -> Result<(), String> {
        let mut buf = vec![0u8; 65536];
        match self.udp.recv_from(&mut buf) {
            Ok((n, from)) => {
                let text = String::from_utf8_lossy(&buf[..n]);
                return Err(format!(
                    "udp {} got a datagram from {from}:\n{text}",
                    self.at
                ));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => return Err(format!("udp {}: {e}", self.at)),
        }
        match self.tcp.accept() {
            Ok((_, from)) => Err(format!("tcp {} got a connection from {from}", self.at)),
            Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(format!("tcp {}: {e}", self.at)),
        }
    }
}

/// Every TCP connection the kernel knows of (any state, TIME_WAIT included, so also
/// after the PBX has exited) with `pbx` at one end was its registering connection to the
/// proxy's listener: SIPp -t t1 also listens on its port and would take an INVITE on a
/// new connection just as well, so its scenario alone cannot tell.
fn one_connection(pbx: SocketAddr, proxy_port: u16) -> Result<(), String> {
    let expected = SocketAddr::from((Ipv4Addr::LOCALHOST, proxy_port));
    let peers = tcp_peers(pbx)?;
    if peers == [expected] {
        Ok(())
    } else {
        Err(format!(
            "TCP connections of the PBX {pbx}: {peers:?}, expected only the one it \
             registered on, to {expected}"
        ))
    }
}

/// The far ends of the TCP connections (not listeners) of `addr`, from /proc/net/tcp,
/// without duplicates (both ends of a loopback connection are listed).
fn tcp_peers(addr: SocketAddr) -> Result<Vec<SocketAddr>, String> {
    let table = fs::read_to_string("/proc/net/tcp").map_err(|e| format!("/proc/net/tcp: {e}"))?;
    let mut peers = Vec::new();
    for line in table.lines().skip(1) {
        let mut fields = line.split_whitespace().skip(1);
        let (Some(local), Some(remote)) = (fields.next(), fields.next()) else {
            continue;
        };
        let (Some(local), Some(remote)) = (proc_addr(local), proc_addr(remote)) else {
            continue;
        };
        let peer = if local == addr {
            remote
        } else if remote == addr {
            local
        } else {
            continue;
        };
        if peer.port() != 0 && !peers.contains(&peer) {
            peers.push(peer);
        }
    }
    Ok(peers)
}

/// `0700007F:1F90` (address in host byte order, port) of /proc/net/tcp.
fn proc_addr(text: &str) -> Option<SocketAddr> {
    let (ip, port) = text.split_once(':')?;
    let ip = u32::from_str_radix(ip, 16).ok()?;
    let port = u16::from_str_radix(port, 16).ok()?;
    Some(SocketAddr::from((Ipv4Addr::from(ip.to_ne_bytes()), port)))
}

/// uac-call.xml line: the DID, and `<npan>@<Contact host:port>` the PBX must get.
fn call_line(pbx: &PasswordPbx, contact: &str) -> String {
    format!("{};{}@{contact}", pbx.did, pbx.npan())
}

/// The PBX registers over `transport` from 127.0.0.7 with a Contact at 127.0.0.99; the
/// carrier's call then reaches it at its source, on its socket or connection, with
/// Request-URI `sip:<npan>@127.0.0.99:<port>`; the call is answered and the carrier's
/// BYE reaches the PBX. Nothing reaches 127.0.0.99.
fn registered_pbx_takes_a_call(test: &str, transport: Transport) {
    let alice = PasswordPbx::new("nat-pbx", ALICE, &dids(0, 1)[0]);
    let scene = start(test, 60, vec![alice.to_json()]);
    let nat = Sink::bind(NAT_IP, free_port());
    let contact = nat.host_port();
    let pbx_port = free_port();
    let pbx_addr = SocketAddr::from((PBX_SOURCE, pbx_port));
    let pbx = nat_pbx(
        &scene.setup,
        "pbx",
        &alice,
        pbx_port,
        &contact,
        LONG_EXPIRES,
        true,
        transport,
    );
    let carrier = scene.carrier("carrier", "uac-call.xml", vec![call_line(&alice, &contact)]);
    let dir = &scene.dir;
    let (pbx_run, mut results) = thread::scope(|s| {
        let handle = s.spawn(|| pbx.run_for(dir, PBX_RUN_SECS));
        let results = match wait_registered(dir, "pbx", &handle) {
            Ok(()) => vec![carrier.run(dir).check()],
            Err(why) => vec![Err(why)],
        };
        (handle.join().expect("PBX thread"), results)
    });
    results.push(pbx_run.check());
    results.push(nat.silent());
    results.push(listed(&scene, pbx_addr, &contact, transport));
    if transport == Transport::Tcp {
        results.push(one_connection(pbx_addr, scene.setup.port));
    }
    results.push(check_metrics(
        &scene,
        &[
            ("trunkstore_registrations_total{outcome=\"challenged\"}", 1),
            ("trunkstore_registrations_total{outcome=\"ok\"}", 1),
            ("trunkstore_registrar_bindings{account=\"e2e\"}", 1),
            (
                "trunkstore_calls_total{direction=\"inbound\",outcome=\"answered\"}",
                1,
            ),
            ("trunkstore_active_calls", 0),
        ],
    ));
    scene.finish(results);
}

/// Keep-alives (interval 1 s, 2 failures): the NATed PBX's socket gets an OPTIONS for its
/// Contact and answers it; once the PBX is gone, the unanswered keep-alives drop its
/// binding. Nothing ever reaches the private Contact.
#[test]
fn keepalives_reach_a_nat_binding_at_its_source_and_drop_it_once_unanswered() {
    let alice = PasswordPbx::new("nat-pbx", ALICE, &dids(0, 1)[0]);
    let scene = start_with(
        "reg-keepalive",
        registrar_settings_with(60, 1, 2),
        vec![alice.to_json()],
    );
    let nat = Sink::bind(NAT_IP, free_port());
    let contact = nat.host_port();
    let mut pbx = nat_pbx(
        &scene.setup,
        "pbx",
        &alice,
        free_port(),
        &contact,
        LONG_EXPIRES,
        true,
        Transport::Udp,
    );
    let ooc = sipp::scenario("uas-keepalive.xml");
    let at = pbx
        .extra
        .iter()
        .position(|a| a == "-oocsf")
        .expect("-oocsf")
        + 1;
    pbx.extra[at] = ooc.display().to_string();
    let mut results = vec![pbx.run_for(&scene.dir, PBX_RUN_SECS).check()];
    // The PBX answered a keep-alive and left: two unanswered ones later (2-3 s) its
    // binding is gone.
    let deadline = Instant::now() + Duration::from_secs(10);
    let gone = "trunkstore_registrar_bindings{account=\"e2e\"}";
    loop {
        let page = crate::metrics_page(scene.setup.api_port).unwrap_or_default();
        if !page.lines().any(|l| l.starts_with(gone)) {
            break;
        }
        if Instant::now() >= deadline {
            results.push(Err(format!("binding still there after 10 s:\n{page}")));
            break;
        }
        thread::sleep(Duration::from_millis(200));
    }
    results.push(nat.silent());
    let page = crate::metrics_page(scene.setup.api_port).unwrap_or_default();
    let sent = page
        .lines()
        .find_map(|l| l.strip_prefix("trunkstore_registrar_keepalives_total "))
        .and_then(|v| v.parse::<u64>().ok());
    if sent.is_none_or(|n| n < 2) {
        results.push(Err(format!("keep-alives sent: {sent:?}")));
    }
    scene.finish(results);
}

/// The admin API lists the binding: its Contact (the private address), the source calls
/// went to, the transport, NAT, the User-Agent and time left.
fn listed(
    scene: &Scene,
    pbx: SocketAddr,
    contact: &str,
    transport: Transport,
) -> Result<(), String> {
    let path = format!("/v2/accounts/{ACCOUNT}/registrations");
    let (status, body) = crate::api::http(scene.setup.api_port, "GET", &path, None)?;
    let t = match transport {
        Transport::Udp => "udp",
        Transport::Tcp => "tcp",
    };
    let list = body["data"].as_array().cloned().unwrap_or_default();
    let ok = status == 200
        && list.len() == 1
        && list[0]["contact"]
            .as_str()
            .is_some_and(|c| c.contains(contact))
        && list[0]["source"] == json!(format!("{t}:{pbx}"))
        && list[0]["transport"] == json!(t)
        && list[0]["nat"] == json!(true)
        && list[0]["user_agent"] == json!("e2e-nat-pbx")
        && list[0]["expires_in"]
            .as_u64()
            .is_some_and(|e| e > 0 && e <= u64::from(LONG_EXPIRES));
    if ok {
        Ok(())
    } else {
        Err(format!("GET {path}: {status} {body}"))
    }
}

#[test]
fn registered_nat_pbx_takes_its_call_at_its_source_udp() {
    registered_pbx_takes_a_call("reg-call-udp", Transport::Udp);
}

/// Over TCP the INVITE, ACK and BYE must come on the connection the PBX registered on
/// (SIPp -t t1 has one connection; a connection to 127.0.0.99 or a new one to
/// 127.0.0.7 would not reach its scenario).
#[test]
fn registered_nat_pbx_takes_its_call_on_its_connection_tcp() {
    registered_pbx_takes_a_call("reg-call-tcp", Transport::Tcp);
}

/// Two PBXs register with Expires 2 (min_expires 1) and go away. Once the bindings have
/// expired, the call to the one with a failover is answered at its `failover.sip` (a
/// SIPp UAS checking the Request-URI), the call to the other gets 480. Nothing is sent to
/// the expired bindings' sources nor to their Contacts.
#[test]
fn expired_binding_fails_over_or_gets_480() {
    let backup_port = free_port();
    let mut alice = PasswordPbx::new("nat-pbx-failover", ALICE, &dids(0, 1)[0]);
    alice.failover_sip = Some(format!("sip:backup-line@127.0.0.1:{backup_port}"));
    let bob = PasswordPbx::new("nat-pbx-alone", BOB, &dids(10, 1)[0]);
    let scene = start("reg-expired", 1, vec![alice.to_json(), bob.to_json()]);
    let mut results = Vec::new();
    let mut sinks = Vec::new();
    for (name, pbx) in [("pbx-alice", &alice), ("pbx-bob", &bob)] {
        let nat = Sink::bind(NAT_IP, free_port());
        let port = free_port();
        let contact = nat.host_port();
        let run = nat_pbx(
            &scene.setup,
            name,
            pbx,
            port,
            &contact,
            2,
            false,
            Transport::Udp,
        )
        .run(&scene.dir);
        results.push(run.check());
        // The PBX is gone: its old source must stay silent too.
        sinks.push(Sink::bind(PBX_SOURCE, port));
        sinks.push(nat);
    }
    // Expires 2 from the last 200, with a margin for whole-second expiry times.
    thread::sleep(Duration::from_millis(3500));

    let backup = scene.uas("backup", "uas-answer.xml", backup_port, 1);
    let to_failover = format!("{};backup-line", alice.did);
    results.push(
        scene
            .carrier("carrier-failover", "uac-call.xml", vec![to_failover])
            .run(&scene.dir)
            .check(),
    );
    let to_nowhere = format!("{};480;70", bob.did);
    results.push(
        scene
            .carrier("carrier-480", "uac-reject.xml", vec![to_nowhere])
            .run(&scene.dir)
            .check(),
    );
    results.push(backup.finish(UAS_FINISH));
    results.extend(sinks.iter().map(Sink::silent));
    scene.finish(results);
}

/// The PBX registers, the proxy is stopped (SIGTERM, exit 0) and started again with the
/// same data_dir: the bindings file names the Contact, and the call after the restart
/// reaches the PBX (still the same SIPp process, which never REGISTERs again).
#[test]
fn bindings_survive_a_restart() {
    let alice = PasswordPbx::new("nat-pbx", ALICE, &dids(0, 1)[0]);
    let Scene {
        dir: test_dir,
        setup,
        proxy,
    } = start("reg-restart", 60, vec![alice.to_json()]);
    let nat = Sink::bind(NAT_IP, free_port());
    let contact = nat.host_port();
    let pbx = nat_pbx(
        &setup,
        "pbx",
        &alice,
        free_port(),
        &contact,
        LONG_EXPIRES,
        true,
        Transport::Udp,
    );
    let carrier_line = vec![call_line(&alice, &contact)];
    let settings = test_dir.file("trunkstore.json");
    let bindings_file = test_dir.path().join("data").join("registrations.json");
    let dir = &test_dir;
    let (pbx_run, proxy, mut results) = thread::scope(|s| {
        let handle = s.spawn(|| pbx.run_for(dir, PBX_RUN_SECS));
        let mut results = Vec::new();
        if let Err(why) = wait_registered(dir, "pbx", &handle) {
            results.push(Err(why));
        }
        results.push(proxy.stop().map_err(|why| format!("first run: {why}")));
        results.push(match fs::read_to_string(&bindings_file) {
            Ok(text) if text.contains(&contact) => Ok(()),
            Ok(text) => Err(format!(
                "{} does not name {contact}:\n{text}",
                bindings_file.display()
            )),
            Err(e) => Err(format!("{}: {e}", bindings_file.display())),
        });
        let proxy = Proxy::start(dir, &settings, &setup);
        let carrier = Uac {
            name: "carrier",
            scenario: "uac-call.xml",
            proxy_port: setup.port,
            local_port: setup.carrier_port,
            transport: Transport::Udp,
            lines: carrier_line,
            rate: 20,
            extra: vec![
                "-key".into(),
                "extra_header".into(),
                crate::NO_EXTRA_HEADER.into(),
            ],
        };
        results.push(carrier.run(dir).check());
        (handle.join().expect("PBX thread"), proxy, results)
    });
    results.push(pbx_run.check());
    results.push(nat.silent());
    let scene = Scene {
        dir: test_dir,
        setup,
        proxy,
    };
    results.push(check_metrics(
        &scene,
        &[
            ("trunkstore_registrar_bindings{account=\"e2e\"}", 1),
            (
                "trunkstore_calls_total{direction=\"inbound\",outcome=\"answered\"}",
                1,
            ),
        ],
    ));
    scene.finish(results);
}

/// REGISTERs the registrar must refuse, each from its own source (so no failure count
/// reaches a ban): wrong password and unknown user both get 403 after the challenge (no
/// user enumeration); a To user other than the authenticated auth_user gets 403 (no
/// registering someone else's AOR); the carrier's and an IP-auth server's sources get 403
/// without a challenge; Expires under min_expires gets 423 with `Min-Expires: 60`. No
/// binding results.
#[test]
fn hostile_registers_are_refused() {
    let ip_server_ip = "127.0.0.11";
    let alice = PasswordPbx::new("nat-pbx", ALICE, &dids(0, 1)[0]);
    let bob = PasswordPbx::new("other-pbx", BOB, &dids(10, 1)[0]);
    let ip_server = json!({
        "name": "ip-pbx",
        "auth": {"auth_method": "IP", "ip": ip_server_ip},
        "options": {"inbound_format": "npan"},
        "DIDs": {dids(20, 1)[0].clone(): {}},
    });
    let scene = start(
        "reg-hostile",
        60,
        vec![alice.to_json(), bob.to_json(), ip_server],
    );
    let nat = Sink::bind(NAT_IP, free_port());
    let contact = nat.host_port();
    let line = |user: &str, expires: u32, status: u16, min: &str| {
        format!("{user};{REALM};{contact};{expires};{status};{min}")
    };
    // (run name, source ip, credentials, scenario line)
    let challenged: [(&str, &str, (&str, &str), String); 4] = [
        (
            "wrong-password",
            "127.0.0.7",
            ("alice", "not-the-password"),
            line("alice", 600, 403, "-"),
        ),
        (
            "unknown-user",
            "127.0.0.8",
            ("mallory", ALICE.1),
            line("mallory", 600, 403, "-"),
        ),
        ("other-aor", "127.0.0.9", ALICE, line("bob", 600, 403, "-")),
        (
            "too-brief",
            "127.0.0.10",
            ALICE,
            line("alice", 30, 423, "60"),
        ),
    ];
    let mut results = Vec::new();
    for (name, ip, credentials, line) in challenged {
        let run = registering(
            &scene.setup,
            name,
            "uac-register.xml",
            (ip, free_port()),
            credentials,
            line,
            Transport::Udp,
        );
        results.push(run.run(&scene.dir).check());
    }
    let forbidden_sources = [
        ("from-carrier", "127.0.0.1", scene.setup.carrier_port),
        ("from-ip-server", ip_server_ip, free_port()),
    ];
    for (name, ip, port) in forbidden_sources {
        let line = format!("alice;{REALM};{contact}");
        let run = registering(
            &scene.setup,
            name,
            "uac-register-forbidden.xml",
            (ip, port),
            ALICE,
            line,
            Transport::Udp,
        );
        results.push(run.run(&scene.dir).check());
    }
    results.push(nat.silent());
    results.push(check_metrics(
        &scene,
        &[
            ("trunkstore_registrations_total{outcome=\"challenged\"}", 4),
            ("trunkstore_registrations_total{outcome=\"forbidden\"}", 5),
            ("trunkstore_registrations_total{outcome=\"too_brief\"}", 1),
        ],
    ));
    scene.finish(results);
}

/// The sink itself, so that "nothing reached 127.0.0.99" means something: a datagram
/// or a connection sent to it is seen.
#[test]
fn nat_sink_sees_a_datagram() {
    let sink = Sink::bind(NAT_IP, free_port());
    assert!(sink.silent().is_ok());
    let sender = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind sender");
    sender
        .send_to(b"OPTIONS sip:x SIP/2.0\r\n\r\n", sink.at)
        .expect("send to sink");
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut verdict = sink.silent();
    while verdict.is_ok() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
        verdict = sink.silent();
    }
    assert!(
        verdict.is_err(),
        "the sink did not see a datagram sent to it"
    );
    let _tcp = std::net::TcpStream::connect(sink.at).expect("connect to sink");
    thread::sleep(Duration::from_millis(50));
    assert!(sink.silent().is_err(), "the sink did not see a connection");
}

/// The connection check of the TCP test sees a connection to a listener on 127.0.0.7,
/// and a second one makes it fail.
#[test]
fn one_connection_check_sees_connections() {
    let listener = TcpListener::bind((PBX_SOURCE, 0)).expect("listen on 127.0.0.7");
    let at = listener.local_addr().expect("listener address");
    let first = std::net::TcpStream::connect(at).expect("first connection");
    let from = first.local_addr().expect("first connection's address");
    assert_eq!(one_connection(at, from.port()), Ok(()));
    let _second = std::net::TcpStream::connect(at).expect("second connection");
    assert!(one_connection(at, from.port()).is_err());
}

/// Issue 18: a PBX registered on node a takes its call through node b. Both nodes share
/// one Redis; b learns a's binding (its gauge of the other nodes' bindings reads 1) and
/// sends the carrier's call to the binding's source, never to the private Contact.
#[test]
fn a_pbx_registered_on_one_node_takes_its_call_through_the_other() {
    let dir = TestDir::new("cluster-bindings-redis");
    let redis = trunkstore_testkit::Redis::start_in(dir.path(), free_port(), &[]);
    let alice = PasswordPbx::new("nat-pbx", ALICE, &dids(0, 1)[0]);
    let node = |id: &str| {
        let mut extra = registrar_settings(60);
        extra.insert(
            "cluster".into(),
            json!({"node_id": id, "redis": [redis.url()],
                   "secret": "e2e-cluster-secret-0123456789"}),
        );
        start_with(
            &format!("cluster-bindings-{id}"),
            extra,
            vec![alice.to_json()],
        )
    };
    let (a, b) = (node("a"), node("b"));
    let nat = Sink::bind(NAT_IP, free_port());
    let contact = nat.host_port();
    let pbx_port = free_port();
    let pbx = nat_pbx(
        &a.setup,
        "pbx",
        &alice,
        pbx_port,
        &contact,
        LONG_EXPIRES,
        true,
        Transport::Udp,
    );
    let carrier = b.carrier("carrier", "uac-call.xml", vec![call_line(&alice, &contact)]);
    let dir = &a.dir;
    let (pbx_run, mut results) = thread::scope(|s| {
        let handle = s.spawn(|| pbx.run_for(dir, PBX_RUN_SECS));
        let known_on_b = wait_registered(dir, "pbx", &handle).and_then(|()| {
            crate::await_metric_at(b.setup.api_port, "trunkstore_registrar_remote_bindings", 1)
        });
        let results = match known_on_b {
            Ok(()) => vec![carrier.run(&b.dir).check()],
            Err(why) => vec![Err(why)],
        };
        (handle.join().expect("PBX thread"), results)
    });
    results.push(pbx_run.check());
    results.push(nat.silent());
    results.push(check_metrics(
        &b,
        &[
            (
                "trunkstore_calls_total{direction=\"inbound\",outcome=\"answered\"}",
                1,
            ),
            ("trunkstore_registrar_remote_bindings", 1),
            ("trunkstore_active_calls", 0),
        ],
    ));
    results.push(check_metrics(
        &a,
        &[("trunkstore_registrar_bindings{account=\"e2e\"}", 1)],
    ));
    b.finish(results);
    a.finish(vec![]);
}
