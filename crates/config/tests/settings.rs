//! Proxy settings (behaviour.md §1, item 1).

use std::net::SocketAddr;
use std::path::Path;

use serde_json::{json, Value};
use trunkstore_config::*;

fn parse(v: Value) -> Result<Settings, ValidationErrors> {
    Settings::from_value(&v, Path::new("/etc/trunkstore"))
}

fn rejects(v: Value, path: &str, keyword: &str) {
    match parse(v.clone()) {
        Ok(_) => panic!("accepted {v}"),
        Err(e) => assert!(
            e.has(path, keyword),
            "expected {path}: {keyword}, got:\n{e}"
        ),
    }
}

fn carrier(patch: Value) -> Value {
    let mut c = json!({"name": "c1", "gateways": [{"host": "192.0.2.1"}]});
    for (k, v) in patch.as_object().unwrap() {
        c[k] = v.clone();
    }
    json!({"carriers": [c]})
}

#[test]
fn defaults() {
    let s = parse(json!({})).unwrap();
    let local: SocketAddr = "127.0.0.1:5060".parse().unwrap();
    assert_eq!(s.listen.udp, vec![local]);
    assert_eq!(s.listen.tcp, vec![local]);
    assert_eq!(s.advertise.to_string(), "127.0.0.1:5060");
    assert_eq!(
        s.connectivity_dir,
        Path::new("/etc/trunkstore/connectivity")
    );
    assert_eq!(s.emergency_numbers, ["911", "933"]);
    assert_eq!(s.failover_on, FailoverOn::default_list());
    assert_eq!(s.max_call_duration, 43_200);
    assert_eq!(s.timers, Timers::default());
    assert_eq!(
        (s.timers.t1_ms, s.timers.t2_ms, s.timers.t4_ms),
        (500, 4000, 5000)
    );
    assert_eq!(
        s.api.listen,
        "127.0.0.1:8000".parse::<SocketAddr>().unwrap()
    );
    assert!(s.api.tokens.is_empty());
    assert_eq!(s.cdr.file, None);
    assert_eq!(s.log.level, "info");
    assert_eq!(s.limits.max_message_size, 65536);
    assert_eq!(s.nonce_ttl, 300);
    assert_eq!(s.default_realm, "127.0.0.1");
    assert!(s.carriers.is_empty());
}

#[test]
fn advertise_defaults_to_first_udp_listen_address() {
    let s = parse(
        json!({"listen": {"udp": ["10.0.0.1:5080", "10.0.0.2:5060"], "tcp": ["10.0.0.3:5060"]}}),
    )
    .unwrap();
    assert_eq!(s.advertise.to_string(), "10.0.0.1:5080");
    let s = parse(json!({"listen": {"tcp": ["[::1]:5070"]}})).unwrap();
    assert_eq!(s.advertise.to_string(), "[::1]:5070");
    let s = parse(json!({"advertise": "sip.example.com"})).unwrap();
    assert_eq!(s.advertise.to_string(), "sip.example.com:5060");
    let s = parse(json!({"advertise": "sip.example.com:5080"})).unwrap();
    assert_eq!(s.advertise.port, 5080);
    rejects(json!({"advertise": "bad host:5060"}), "advertise", "format");
}

#[test]
fn listen() {
    rejects(
        json!({"listen": {"udp": ["127.0.0.1"]}}),
        "listen.udp.0",
        "format",
    );
    rejects(json!({"listen": {"udp": []}}), "listen", "minItems");
    rejects(
        json!({"listen": {"sctp": ["127.0.0.1:5060"]}}),
        "listen.sctp",
        "additionalProperties",
    );
    rejects(json!({"listen": "127.0.0.1:5060"}), "listen", "type");
}

#[test]
fn unknown_keys_are_errors() {
    rejects(json!({"carrier": []}), "carrier", "additionalProperties");
    rejects(
        json!({"timers": {"t3_ms": 1}}),
        "timers.t3_ms",
        "additionalProperties",
    );
    rejects(
        carrier(json!({"gateway": []})),
        "carriers.0.gateway",
        "additionalProperties",
    );
}

#[test]
fn carriers() {
    let s = parse(json!({"carriers": [{
        "name": "alpha",
        "gateways": [{"host": "gw.example.com", "port": "5080", "transport": "tcp"}, {"host": "192.0.2.7"}],
        "sources": ["192.0.2.0/24", "198.51.100.7:5060", "203.0.113.9", "2001:db8::/32"],
        "priority": 5, "weight": 3, "format": "1npan", "rule": "^\\+1", "emergency": "true"
    }]}))
    .unwrap();
    let c = &s.carriers[0];
    assert_eq!(c.gateways[0].host, Host::Name("gw.example.com".into()));
    assert_eq!(
        (c.gateways[0].port, c.gateways[0].transport),
        (5080, Transport::Tcp)
    );
    assert_eq!(
        (c.gateways[1].port, c.gateways[1].transport),
        (5060, Transport::Udp)
    );
    assert_eq!(
        (c.priority, c.weight, c.format, c.emergency),
        (5, 3, NumberFormat::OneNpan, true)
    );
    assert!(c.accepts("+14155551234") && !c.accepts("+442071234567"));
    assert!(c.trusts("192.0.2.55:1234".parse().unwrap()));
    assert!(c.trusts("198.51.100.7:5060".parse().unwrap()));
    assert!(!c.trusts("198.51.100.7:5061".parse().unwrap()));
    assert!(c.trusts("203.0.113.9:9".parse().unwrap()));
    assert!(c.trusts("[2001:db8::1]:5060".parse().unwrap()));
    let d = parse(carrier(json!({}))).unwrap();
    assert_eq!(d.carriers[0].format, NumberFormat::E164);
    assert_eq!(
        (
            d.carriers[0].priority,
            d.carriers[0].weight,
            d.carriers[0].emergency
        ),
        (10, 1, false)
    );

    rejects(
        json!({"carriers": [{"gateways": [{"host": "a"}]}]}),
        "carriers.0.name",
        "required",
    );
    rejects(
        carrier(json!({"name": "has space"})),
        "carriers.0.name",
        "pattern",
    );
    rejects(
        carrier(json!({"gateways": []})),
        "carriers.0.gateways",
        "minItems",
    );
    rejects(
        json!({"carriers": [{"name": "x"}]}),
        "carriers.0.gateways",
        "required",
    );
    rejects(
        carrier(json!({"gateways": [{"port": 5060}]})),
        "carriers.0.gateways.0.host",
        "required",
    );
    rejects(
        carrier(json!({"gateways": [{"host": "a b"}]})),
        "carriers.0.gateways.0.host",
        "format",
    );
    rejects(
        carrier(json!({"gateways": [{"host": "a", "port": 0}]})),
        "carriers.0.gateways.0.port",
        "minimum",
    );
    rejects(
        carrier(json!({"gateways": [{"host": "a", "transport": "sctp"}]})),
        "carriers.0.gateways.0.transport",
        "enum",
    );
    rejects(
        carrier(json!({"sources": ["10.0.0.0/33"]})),
        "carriers.0.sources.0",
        "format",
    );
    rejects(
        carrier(json!({"format": "username"})),
        "carriers.0.format",
        "enum",
    );
    rejects(
        carrier(json!({"rule": "(unclosed"})),
        "carriers.0.rule",
        "format",
    );
    rejects(
        carrier(json!({"priority": -1})),
        "carriers.0.priority",
        "minimum",
    );
    let two = json!({"carriers": [{"name": "a", "gateways": [{"host": "x"}]}, {"name": "a", "gateways": [{"host": "y"}]}]});
    rejects(two, "carriers.1.name", "unique");
}

#[test]
fn failover_on() {
    assert_eq!(
        parse(json!({"failover_on": "any"})).unwrap().failover_on,
        FailoverOn::Any
    );
    let f = parse(json!({"failover_on": ["486", "6xx", "timeout"]}))
        .unwrap()
        .failover_on;
    assert!(f.on_status(486) && f.on_status(603) && !f.on_status(404));
    assert!(f.on_timeout() && !f.on_unreachable());
    let d = FailoverOn::default_list();
    for code in [404, 408, 480, 500, 503, 599] {
        assert!(d.on_status(code), "{code}");
    }
    for code in [486, 600, 603, 403, 200] {
        assert!(!d.on_status(code), "{code}");
    }
    assert!(FailoverOn::Any.on_status(486) && !FailoverOn::Any.on_status(200));
    rejects(json!({"failover_on": ["busy"]}), "failover_on.0", "enum");
    rejects(json!({"failover_on": ["200"]}), "failover_on.0", "enum");
    rejects(json!({"failover_on": "all"}), "failover_on", "type");
}

#[test]
fn timers_and_numbers() {
    rejects(
        json!({"timers": {"progress_timeout": 0}}),
        "timers.progress_timeout",
        "minimum",
    );
    rejects(json!({"timers": {"delay": -1}}), "timers.delay", "minimum");
    rejects(json!({"timers": {"t1_ms": 0}}), "timers.t1_ms", "minimum");
    rejects(
        json!({"timers": {"t1_ms": 5000, "t2_ms": 4000}}),
        "timers.t2_ms",
        "minimum",
    );
    rejects(
        json!({"max_call_duration": 0}),
        "max_call_duration",
        "minimum",
    );
    rejects(json!({"nonce_ttl": "x"}), "nonce_ttl", "type");
    rejects(
        json!({"emergency_numbers": ["91 1"]}),
        "emergency_numbers.0",
        "pattern",
    );
    let s = parse(json!({"timers": {"timeout": "45"}, "emergency_numbers": ["112"]})).unwrap();
    assert_eq!(s.timers.timeout, 45);
    assert!(s.is_emergency("112") && !s.is_emergency("911"));
}

#[test]
fn api_tokens_are_secret() {
    let s = parse(json!({"api": {"listen": "0.0.0.0:8080", "tokens": [
        {"token": "0123456789abcdef-admin"},
        {"token": "0123456789abcdef-acme", "account": "acme"}
    ]}}))
    .unwrap();
    assert_eq!(s.api.tokens[0].account, None);
    assert_eq!(s.api.tokens[1].account.as_deref(), Some("acme"));
    assert_eq!(s.api.tokens[1].token.expose(), "0123456789abcdef-acme");
    assert!(
        !format!("{s:?}").contains("0123456789abcdef"),
        "Debug must not show tokens"
    );

    let short = json!({"api": {"tokens": [{"token": "short-secret"}]}});
    let e = parse(short).unwrap_err();
    assert!(e.has("api.tokens.0.token", "minLength"));
    assert!(!format!("{e}{}", e.to_json()).contains("short-secret"));
    rejects(
        json!({"api": {"tokens": [{"account": "a"}]}}),
        "api.tokens.0.token",
        "required",
    );
    rejects(
        json!({"api": {"tokens": [{"token": "0123456789abcdef x"}]}}),
        "api.tokens.0.token",
        "pattern",
    );
    rejects(
        json!({"api": {"tokens": [{"token": "0123456789abcdef", "account": "../x"}]}}),
        "api.tokens.0.account",
        "pattern",
    );
    let dup =
        json!({"api": {"tokens": [{"token": "0123456789abcdef"}, {"token": "0123456789abcdef"}]}});
    rejects(dup, "api.tokens.1.token", "unique");
    rejects(
        json!({"api": {"listen": "localhost"}}),
        "api.listen",
        "format",
    );
}

#[test]
fn relative_paths_resolve_against_the_settings_file() {
    let s = parse(json!({"connectivity_dir": "docs", "cdr": {"file": "var/cdr.jsonl"}})).unwrap();
    assert_eq!(s.connectivity_dir, Path::new("/etc/trunkstore/docs"));
    assert_eq!(
        s.cdr.file.as_deref(),
        Some(Path::new("/etc/trunkstore/var/cdr.jsonl"))
    );
    let s = parse(json!({"connectivity_dir": "/srv/conn"})).unwrap();
    assert_eq!(s.connectivity_dir, Path::new("/srv/conn"));
}

#[test]
fn load_reports_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trunkstore.json");
    std::fs::write(
        &path,
        r#"{"timers": {"progress_timeout": 0}, "nonce_ttl": 0}"#,
    )
    .unwrap();
    let e = Settings::load(&path).unwrap_err();
    assert_eq!(e.file, path);
    assert_eq!(e.errors.len(), 2);
    let lines: Vec<String> = e.lines().collect();
    assert!(
        lines[0].starts_with(&format!(
            "{}: timers.progress_timeout: minimum:",
            path.display()
        )),
        "{lines:?}"
    );
    std::fs::write(&path, "{not json").unwrap();
    assert!(Settings::load(&path).unwrap_err().errors.has("", "format"));
    std::fs::write(&path, "{}").unwrap();
    let s = Settings::load(&path).unwrap();
    assert_eq!(s.connectivity_dir, dir.path().join("connectivity"));
    assert!(Settings::load(dir.path().join("missing.json"))
        .unwrap_err()
        .errors
        .has("", "io"));
}

#[test]
fn shipped_config_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/trunkstore.json");
    let catalog = load_all(&path).unwrap_or_else(|e| panic!("{e:?}"));
    let s = catalog.summary();
    assert_eq!(s.accounts, 2);
    assert!(s.password_servers > 0 && s.ip_servers > 0 && s.disabled_servers > 0);
    assert!(catalog.did("+14155550100").is_some());
}

#[test]
fn a_listener_may_have_its_own_advertised_address() {
    // Plain strings stay valid next to objects; IPv4 and IPv6 listeners together.
    let s = parse(json!({
        "listen": {
            "udp": ["0.0.0.0:5060", {"address": "[::]:5060", "advertise": "[2001:db8::5]:5060"}],
            "tcp": [{"address": "0.0.0.0:5060", "advertise": "sip.example.com"}]
        },
        "advertise": "203.0.113.5:5060"
    }))
    .unwrap();
    let v4: SocketAddr = "0.0.0.0:5060".parse().unwrap();
    let v6: SocketAddr = "[::]:5060".parse().unwrap();
    assert_eq!(s.listen.udp, vec![v4, v6]);
    assert_eq!(s.listen.tcp, vec![v4]);
    assert_eq!(s.listen.advertised.len(), 2);
    let text = |t, a| s.advertise_for(t, a).to_string();
    assert_eq!(text(Transport::Udp, v4), "203.0.113.5:5060");
    assert_eq!(text(Transport::Udp, v6), "[2001:db8::5]:5060");
    assert_eq!(text(Transport::Tcp, v4), "sip.example.com:5060");
}

#[test]
fn a_listener_of_the_other_family_advertises_itself_by_default() {
    // The global advertise is IPv4: an IPv6 peer must not be given it.
    let s = parse(json!({"listen": {"udp": ["127.0.0.1:5070", "[::1]:5070"]}})).unwrap();
    assert_eq!(s.advertise.to_string(), "127.0.0.1:5070");
    let v6: SocketAddr = "[::1]:5070".parse().unwrap();
    assert_eq!(
        s.advertise_for(Transport::Udp, v6).to_string(),
        "[::1]:5070"
    );
    let all: Vec<String> = s
        .advertised_addresses()
        .iter()
        .map(|a| a.to_string())
        .collect();
    assert_eq!(all, ["127.0.0.1:5070", "[::1]:5070"]);
}

#[test]
fn listener_objects_are_validated_with_field_paths() {
    let udp = |e: Value| json!({"listen": {"udp": [e]}});
    rejects(
        udp(json!({"advertise": "10.0.0.1"})),
        "listen.udp.0.address",
        "required",
    );
    rejects(
        udp(json!({"address": "nope"})),
        "listen.udp.0.address",
        "format",
    );
    rejects(
        udp(json!({"address": "10.0.0.1:5060", "advertise": "bad host"})),
        "listen.udp.0.advertise",
        "format",
    );
    rejects(
        udp(json!({"address": "10.0.0.1:5060", "adverstise": "x"})),
        "listen.udp.0.adverstise",
        "additionalProperties",
    );
    rejects(json!({"listen": {"tcp": [true]}}), "listen.tcp.0", "type");
}

/// A folder with a PEM certificate and key (content only checked for its PEM blocks here;
/// the edge parses them).
fn pem_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    let key = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n";
    std::fs::write(dir.path().join("cert.pem"), cert).unwrap();
    std::fs::write(dir.path().join("key.pem"), key).unwrap();
    std::fs::write(dir.path().join("ca.pem"), cert).unwrap();
    dir
}

#[test]
fn tls_listeners_gateways_and_trust() {
    let dir = pem_dir();
    let v = json!({
        "listen": {
            "udp": ["0.0.0.0:5060"],
            "tls": [{"address": "0.0.0.0:5061", "certificate": "cert.pem", "key": "key.pem"}]
        },
        "advertise": "203.0.113.5:5060",
        "tls": {
            "ca_file": "ca.pem",
            "client_certificate": "cert.pem",
            "client_key": "key.pem",
            "require_client_certificate": true
        },
        "carriers": [{"name": "teams", "gateways": [
            {"host": "192.0.2.1", "transport": "tls"},
            {"host": "192.0.2.2", "port": 5070, "transport": "tls"}
        ]}]
    });
    let s = Settings::from_value(&v, dir.path()).unwrap();
    let tls: SocketAddr = "0.0.0.0:5061".parse().unwrap();
    assert_eq!(s.listen.tls.len(), 1);
    assert_eq!(s.listen.tls[0].address, tls);
    assert_eq!(s.listen.tls[0].certificate, dir.path().join("cert.pem"));
    assert_eq!(s.listen.tls[0].key, dir.path().join("key.pem"));
    // The TLS listener advertises the global host on its own port.
    assert_eq!(
        s.advertise_for(Transport::Tls, tls).to_string(),
        "203.0.113.5:5061"
    );
    assert_eq!(s.tls.ca_file, Some(dir.path().join("ca.pem")));
    assert!(s.tls.verify_server, "verified by default");
    assert!(s.tls.require_client_certificate);
    assert_eq!(s.tls.client_key, Some(dir.path().join("key.pem")));
    let gw = &s.carriers[0].gateways;
    assert_eq!((gw[0].transport, gw[0].port), (Transport::Tls, 5061));
    assert_eq!((gw[1].transport, gw[1].port), (Transport::Tls, 5070));
    // Defaults: no TLS at all.
    let d = parse(json!({})).unwrap();
    assert!(d.listen.tls.is_empty());
    assert_eq!(d.tls, Tls::default());
}

#[test]
fn tls_files_are_checked_with_field_paths() {
    let dir = pem_dir();
    let check = |v: Value, path: &str, keyword: &str| {
        let e = Settings::from_value(&v, dir.path()).expect_err("refused");
        assert!(
            e.has(path, keyword),
            "expected {path}: {keyword}, got:\n{e}"
        );
        e.to_string()
    };
    let listener = |cert: &str, key: &str| json!({"listen": {"tls": [{"address": "127.0.0.1:5061", "certificate": cert, "key": key}]}});
    let text = check(
        listener("missing.pem", "key.pem"),
        "listen.tls.0.certificate",
        "file",
    );
    assert!(text.contains("missing.pem"), "{text}");
    // A key where the certificate should be, and the other way round.
    check(
        listener("key.pem", "key.pem"),
        "listen.tls.0.certificate",
        "format",
    );
    check(
        listener("cert.pem", "cert.pem"),
        "listen.tls.0.key",
        "format",
    );
    check(
        json!({"listen": {"tls": [{"address": "127.0.0.1:5061", "key": "key.pem"}]}}),
        "listen.tls.0.certificate",
        "required",
    );
    check(
        json!({"listen": {"tls": ["127.0.0.1:5061"]}}),
        "listen.tls.0",
        "type",
    );
    check(
        json!({"tls": {"ca_file": "nope.pem"}}),
        "tls.ca_file",
        "file",
    );
    check(
        json!({"tls": {"client_certificate": "cert.pem"}}),
        "tls.client_key",
        "required",
    );
    check(
        json!({"tls": {"verify": false}}),
        "tls.verify",
        "additionalProperties",
    );
    rejects(
        carrier(json!({"gateways": [{"host": "192.0.2.1", "transport": "wss"}]})),
        "carriers.0.gateways.0.transport",
        "enum",
    );
}
