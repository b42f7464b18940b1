//! Lookups of the routing index over small hand-written configurations.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use serde_json::{json, Value};
use trunkstore_config::{
    validate_document, AuthMethod, CallerId, Catalog, FailoverTarget, MediaHandling, NumberFormat,
    Settings,
};
use trunkstore_routing::{Router, ServerId, Snapshot, SourceMatch};

fn settings() -> Value {
    json!({
        "default_realm": "default.realm",
        "carriers": [
            {"name": "wide", "gateways": [{"host": "192.0.2.1"}], "sources": ["192.0.2.0/24"]},
            {"name": "narrow", "gateways": [{"host": "192.0.2.9"}],
             "sources": ["192.0.2.128/25", "198.51.100.7:5060", "2001:db8:c::/48"]}
        ],
        "timers": {"delay": 1, "progress_timeout": 11, "timeout": 61}
    })
}

fn catalog_of(settings: Value, docs: &[(&str, &str, Value)]) -> Catalog {
    let settings = Settings::from_value(&settings, Path::new("/tmp")).expect("valid settings");
    let docs = docs.iter().map(|(account, id, v)| {
        validate_document(account, id, v).unwrap_or_else(|e| panic!("{account}/{id}: {e:?}"))
    });
    Catalog::build(settings, docs).expect("consistent catalog")
}

fn snapshot_of(docs: &[(&str, &str, Value)]) -> Snapshot {
    Snapshot::build(&catalog_of(settings(), docs))
}

/// One document exercising every level of the cascade.
fn acme() -> Value {
    json!({
        "account": {
            "auth_realm": "Acme.Example",
            "caller_id": {"cid_name": "Acme", "cid_number": "+14155550100"},
            "emergency_caller_id": {"cid_number": "+14155550911"},
            "trunks": 5,
            "sip_headers": {"X-Account": "acme", "X-Site": "account"}
        },
        "servers": [
            {
                "name": "pw-plain",
                "auth": {"auth_method": "password", "auth_user": "Alice", "auth_password": "s1"},
                "DIDs": {"4155551001": {}, "+1000": {}}
            },
            {
                "name": "pw-opts",
                "auth": {"auth_method": "Password", "auth_user": "bob", "auth_password": "s2"},
                "options": {
                    "ip": "10.0.0.9", "port": 5090,
                    "delay": 3, "progress_timeout": 4, "timeout": 30,
                    "inbound_format": "username",
                    "media_handling": "process",
                    "ignore_early_media": true,
                    "caller_id": {"cid_name": "Bob PBX"},
                    "emergency_caller_id": {"cid_number": "+14155550912"},
                    "failover": {"e164": "4155559999", "sip": "sip:over@10.0.0.10"},
                    "sip_headers": [{"X-Site": "server"}, {"X-Server": "bob"}],
                    "force_outbound": false
                },
                "DIDs": {
                    "4155552001": {},
                    "4155552002": {
                        "delay": 7,
                        "caller_id": {"cid_number": "+14155552002"},
                        "sip_headers": {"X-Server": "did"},
                        "failover": {"sip": "sip:did@10.0.0.11"},
                        "force_outbound": true
                    },
                    "4155552003": {"timeout": 0, "inbound_format": "e164", "media_handling": "bypass",
                                   "ignore_early_media": false, "enabled": false}
                }
            },
            {
                "name": "ip-port",
                "auth": {"auth_method": "IP", "ip": "10.1.0.1", "port": 5080},
                "options": {"ip": "10.9.9.9", "port": 5099, "inbound_format": "1npan"},
                "DIDs": {"4155553001": {}, "+442071234567": {}}
            },
            {
                "name": "ip-any",
                "auth": {"auth_method": "ip", "ip": "10.1.0.2", "auth_user": "pbx-any"},
                "options": {"port": 5070, "enabled": false, "inbound_format": "username"},
                "DIDs": {"4155554001": {}}
            }
        ]
    })
}

fn globex() -> Value {
    json!({
        "account": {},
        "servers": [
            {
                "auth": {"auth_method": "password", "auth_user": "ALICE", "auth_password": "g1",
                         "ip": "2001:db8::5", "port": 5062},
                "DIDs": {"1000": {}, "01000": {}}
            },
            {
                "auth": {"auth_method": "ip", "ip": "2001:db8::6"},
                "DIDs": {"+33123456789": {}}
            }
        ]
    })
}

fn both() -> Snapshot {
    snapshot_of(&[("acme", "main", acme()), ("globex", "trunk", globex())])
}

#[test]
fn did_identifies_account_document_and_server() {
    let s = both();
    let r = s.did("+14155552001").expect("found");
    assert_eq!(&*r.server.account, "acme");
    assert_eq!(&*r.server.document, "main");
    assert_eq!(r.server.index, 1);
    assert_eq!(r.server.name.as_deref(), Some("pw-opts"));
    assert_eq!(r.server.auth_method, AuthMethod::Password);
    assert_eq!(r.server.id, ServerId(1));
    assert!(!r.did_specific);
    let g = s.did("+33123456789").unwrap();
    assert_eq!(
        (&*g.server.account, &*g.server.document),
        ("globex", "trunk")
    );
    assert_eq!(g.server.index, 1);
    assert_eq!(s.did_count(), 11);
}

#[test]
fn defaults_apply_when_nothing_is_set() {
    let s = both();
    let r = s.did("+14155551001").unwrap();
    assert_eq!((r.delay, r.progress_timeout, r.timeout), (1, 11, 61));
    assert_eq!(r.inbound_format, NumberFormat::Npan);
    assert_eq!(r.media_handling, MediaHandling::Bypass);
    assert!(!r.ignore_early_media);
    assert!(r.failover.is_none());
    assert!(!r.force_outbound);
    assert!(r.enabled);
    // Caller id and headers come from the account.
    assert_eq!(
        r.caller_id.as_deref().unwrap().name.as_deref(),
        Some("Acme")
    );
    assert_eq!(
        r.emergency_caller_id.as_deref().unwrap().number.as_deref(),
        Some("+14155550911")
    );
    let h: Vec<(&str, &str)> = r
        .sip_headers
        .iter()
        .map(|h| (&*h.name, &*h.value))
        .collect();
    assert_eq!(h, [("X-Account", "acme"), ("X-Site", "account")]);
    assert_eq!(r.request_user("+14155551001"), "4155551001");
}

#[test]
fn server_options_override_defaults() {
    let s = both();
    let r = s.did("+14155552001").unwrap();
    assert_eq!((r.delay, r.progress_timeout, r.timeout), (3, 4, 30));
    assert_eq!(r.inbound_format, NumberFormat::Username);
    assert_eq!(r.request_user("+14155552001"), "bob");
    assert_eq!(r.media_handling, MediaHandling::Process);
    assert!(r.ignore_early_media);
    // e164 wins over sip; the number is normalised.
    assert_eq!(
        r.failover_target(),
        Some(FailoverTarget::Number("+14155559999"))
    );
    assert_eq!(
        r.caller_id.as_deref(),
        Some(&CallerId {
            name: Some("Bob PBX".into()),
            number: None
        })
    );
    assert_eq!(
        r.emergency_caller_id.as_deref().unwrap().number.as_deref(),
        Some("+14155550912")
    );
    let h: Vec<(&str, &str)> = r
        .sip_headers
        .iter()
        .map(|h| (&*h.name, &*h.value))
        .collect();
    assert_eq!(
        h,
        [
            ("X-Site", "server"),
            ("X-Server", "bob"),
            ("X-Account", "acme")
        ]
    );
    // The server-level entry is shared, not copied per DID.
    assert!(std::ptr::eq(r, s.server_route(ServerId(1))));
}

#[test]
fn did_options_override_server_per_field() {
    let s = both();
    let r = s.did("+14155552002").unwrap();
    assert!(r.did_specific);
    // Only delay is set on the DID: the other timers still come from the server.
    assert_eq!((r.delay, r.progress_timeout, r.timeout), (7, 4, 30));
    assert_eq!(r.inbound_format, NumberFormat::Username);
    assert_eq!(r.media_handling, MediaHandling::Process);
    assert!(r.ignore_early_media);
    assert_eq!(
        r.failover_target(),
        Some(FailoverTarget::Uri("sip:did@10.0.0.11"))
    );
    assert_eq!(
        r.caller_id.as_deref().unwrap().number.as_deref(),
        Some("+14155552002")
    );
    assert!(r.force_outbound);
    let h: Vec<(&str, &str)> = r
        .sip_headers
        .iter()
        .map(|h| (&*h.name, &*h.value))
        .collect();
    assert_eq!(
        h,
        [
            ("X-Server", "did"),
            ("X-Site", "server"),
            ("X-Account", "acme")
        ]
    );

    let r = s.did("+14155552003").unwrap();
    assert_eq!((r.delay, r.progress_timeout, r.timeout), (3, 4, 0));
    assert_eq!(r.inbound_format, NumberFormat::E164);
    assert_eq!(r.request_user("+14155552003"), "+14155552003");
    assert_eq!(r.media_handling, MediaHandling::Bypass);
    assert!(!r.ignore_early_media);
    assert!(!r.enabled);
    // Not overridden here: inherited from the server, sharing its values.
    assert_eq!(
        r.failover_target(),
        Some(FailoverTarget::Number("+14155559999"))
    );
    assert!(Arc::ptr_eq(
        r.sip_headers_arc(),
        s.server_route(ServerId(1)).sip_headers_arc()
    ));
}

#[test]
fn target_resolution() {
    let s = both();
    // Password server without ip: no host, default port.
    let t = s.did("+14155551001").unwrap().server.target;
    assert_eq!((t.ip, t.port, t.socket_addr()), (None, 5060, None));
    // Password server with options.ip/port.
    let t = s.did("+14155552001").unwrap().server.target;
    assert_eq!(t.socket_addr(), Some("10.0.0.9:5090".parse().unwrap()));
    // auth.ip/port win over options.ip/port.
    let t = s.did("+14155553001").unwrap().server.target;
    assert_eq!(t.socket_addr(), Some("10.1.0.1:5080".parse().unwrap()));
    // auth.ip with options.port.
    let t = s.did("+14155554001").unwrap().server.target;
    assert_eq!(t.socket_addr(), Some("10.1.0.2:5070".parse().unwrap()));
    // Password server with auth.ip/port (IPv6).
    let t = s.did("1000").unwrap().server.target;
    assert_eq!(t.socket_addr(), Some("[2001:db8::5]:5062".parse().unwrap()));
    // The host as written in a Request-URI: IPv6 bracketed, IPv4 plain, none without ip.
    let host = |did| {
        s.did(did)
            .unwrap()
            .server
            .target_host
            .as_deref()
            .map(str::to_owned)
    };
    assert_eq!(host("1000").as_deref(), Some("[2001:db8::5]"));
    assert_eq!(host("+14155553001").as_deref(), Some("10.1.0.1"));
    assert_eq!(host("+14155551001"), None);
}

#[test]
fn inbound_formats() {
    let s = both();
    let r = s.did("+14155553001").unwrap();
    assert_eq!(r.request_user("+14155553001"), "14155553001");
    // 1npan leaves non-NANP numbers in E.164.
    assert_eq!(r.request_user("+442071234567"), "+442071234567");
    // username on an IP server uses its optional auth_user.
    let r = s.did("+14155554001").unwrap();
    assert_eq!(r.request_user("+14155554001"), "pbx-any");
    assert!(!r.enabled, "server disabled");
    assert!(!r.server.enabled);
}

#[test]
fn numbers_are_keyed_exactly_and_dialled_numbers_normalised() {
    let s = both();
    assert_eq!(&*s.did("1000").unwrap().server.account, "globex");
    assert!(s.did("01000").is_some());
    assert_eq!(&*s.did("+1000").unwrap().server.account, "acme");
    assert!(s.did("001000").is_none());
    assert!(s.did("4155551001").is_none(), "did() takes E.164");
    let (n, r) = s.did_dialled("14155551001").unwrap();
    assert_eq!((n.as_ref(), r.server.index), ("+14155551001", 0));
    let (n, _) = s.did_dialled("011442071234567").unwrap();
    assert_eq!(n, "+442071234567");
    assert!(s.did_dialled("4155550000").is_none());
    assert!(s.did("").is_none() && s.did("+").is_none() && s.did("abc").is_none());
    assert!(s.did("+123456789012345678901234").is_none());
}

#[test]
fn very_long_did_keys_are_found() {
    let long = "+123456789012345678901234";
    let doc = json!({"servers": [{
        "auth": {"auth_method": "ip", "ip": "10.2.0.1"},
        "DIDs": {long: {}, "12345678901234567": {}}
    }]});
    let s = snapshot_of(&[("a", "d", doc)]);
    assert!(s.did(long).is_some());
    assert!(s.did("12345678901234567").is_some());
    assert!(s.did("+12345678901234567890123").is_none());
    assert_eq!(s.did_count(), 2);
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn carrier_name(s: &Snapshot, a: &str) -> Option<String> {
    match s.source(addr(a)) {
        Some(SourceMatch::Carrier { carrier, .. }) => Some(carrier.name.clone()),
        _ => None,
    }
}

fn server_name(s: &Snapshot, a: &str) -> Option<String> {
    match s.source(addr(a)) {
        Some(SourceMatch::Server(info)) => Some(
            info.name
                .as_deref()
                .map_or(format!("#{}", info.id.0), str::to_string),
        ),
        _ => None,
    }
}

#[test]
fn source_lookup() {
    let s = both();
    // CIDR carriers; the most specific net wins.
    assert_eq!(carrier_name(&s, "192.0.2.5:5060").as_deref(), Some("wide"));
    assert_eq!(
        carrier_name(&s, "192.0.2.200:1234").as_deref(),
        Some("narrow")
    );
    // Exact ip:port carrier sources match that port only.
    assert_eq!(
        carrier_name(&s, "198.51.100.7:5060").as_deref(),
        Some("narrow")
    );
    assert!(s.source(addr("198.51.100.7:5061")).is_none());
    // IPv6 carrier net, and IPv4-mapped IPv6 sources.
    assert_eq!(
        carrier_name(&s, "[2001:db8:c::1]:5060").as_deref(),
        Some("narrow")
    );
    assert_eq!(
        carrier_name(&s, "[::ffff:192.0.2.5]:5060").as_deref(),
        Some("wide")
    );
    // IP server with a port: exact ip and port only.
    assert_eq!(server_name(&s, "10.1.0.1:5080").as_deref(), Some("ip-port"));
    assert!(s.source(addr("10.1.0.1:5081")).is_none());
    // IP server without a port: any port.
    assert_eq!(server_name(&s, "10.1.0.2:1").as_deref(), Some("ip-any"));
    assert_eq!(
        server_name(&s, "[::ffff:10.1.0.2]:7").as_deref(),
        Some("ip-any")
    );
    assert_eq!(server_name(&s, "[2001:db8::6]:5060").as_deref(), Some("#5"));
    // Password servers' addresses are targets, not identities.
    assert!(s.source(addr("10.0.0.9:5090")).is_none());
    assert!(s.source(addr("[2001:db8::5]:5062")).is_none());
    assert_eq!(s.carrier_index(addr("192.0.2.1:5060")), Some(0));
    assert!(s.ip_server(addr("192.0.2.1:5060")).is_none());
}

#[test]
fn carriers_take_precedence_over_ip_servers() {
    // The catalog refuses an IP server inside a carrier's sources, so check the order
    // on the lookup itself: an address that is only a server is a server, one that is
    // a carrier is a carrier.
    let s = both();
    assert!(matches!(
        s.source(addr("10.1.0.1:5080")),
        Some(SourceMatch::Server(_))
    ));
    assert!(matches!(
        s.source(addr("192.0.2.77:5080")),
        Some(SourceMatch::Carrier { index: 0, .. })
    ));
}

#[test]
fn credentials_are_case_insensitive() {
    let s = both();
    let ids = s.password_servers("acme.example", "ALICE");
    assert_eq!(ids, [ServerId(0)]);
    assert_eq!(s.password_servers("ACME.EXAMPLE", "alice"), [ServerId(0)]);
    let info = s.server(ids[0]);
    assert_eq!(info.password.as_ref().unwrap().expose(), "s1");
    assert_eq!(&*info.realm, "Acme.Example");
    assert_eq!(&*info.account, "acme");
    // globex has no realm: the default realm.
    assert_eq!(s.password_servers("Default.Realm", "alice"), [ServerId(4)]);
    assert!(s.password_servers("acme.example", "nobody").is_empty());
    assert!(s.password_servers("other.realm", "alice").is_empty());
    // Across realms.
    assert_eq!(
        s.password_servers_any_realm("Alice"),
        [ServerId(0), ServerId(4)]
    );
    // IP servers' auth_user is not a credential.
    assert!(s.password_servers_any_realm("pbx-any").is_empty());
    assert_eq!(s.challenge_realm("ACME.example"), "ACME.example");
    assert_eq!(s.challenge_realm("unknown.host"), "default.realm");
    assert_eq!(&*s.account("globex").unwrap().realm, "default.realm");
}

#[test]
fn trunk_limits() {
    let limited = json!({"account": {"trunks": 9}, "servers": []});
    let zero = json!({"account": {"trunks": 0}, "servers": []});
    let s = snapshot_of(&[
        ("acme", "main", acme()),
        ("acme", "second", limited),
        ("globex", "trunk", globex()),
        ("initech", "x", zero),
    ]);
    assert_eq!(
        s.trunk_limit("acme"),
        Some(5),
        "smallest of the account's documents"
    );
    assert_eq!(s.trunk_limit("globex"), None, "unlimited");
    assert_eq!(s.trunk_limit("initech"), Some(0));
    assert_eq!(s.trunk_limit("nobody"), None);
    assert!(s.account("nobody").is_none());
}

#[test]
fn swap_is_atomic_for_readers() {
    let router = Router::new(snapshot_of(&[("acme", "main", acme())]));
    let old = router.load_full();
    let guard = router.load();
    assert!(guard.did("+14155551001").is_some());
    let replaced = router.swap(snapshot_of(&[("globex", "trunk", globex())]));
    assert!(Arc::ptr_eq(&replaced, &old));
    // Readers holding the old snapshot still see old data.
    assert!(old.did("+14155551001").is_some());
    assert!(guard.did("+14155551001").is_some());
    assert!(old.did("1000").is_none());
    // New readers see the new one.
    let new = router.load();
    assert!(new.did("+14155551001").is_none());
    assert!(new.did("1000").is_some());
}

#[test]
fn swap_under_concurrent_readers() {
    let a = || snapshot_of(&[("acme", "main", acme())]);
    let b = || snapshot_of(&[("globex", "trunk", globex())]);
    let router = Arc::new(Router::new(a()));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let router = router.clone();
            std::thread::spawn(move || {
                for _ in 0..20_000 {
                    let s = router.load();
                    // Every snapshot is whole: exactly one of the two data sets.
                    let acme = s.did("+14155551001").is_some();
                    let globex = s.did("1000").is_some();
                    assert!(acme != globex);
                    assert_eq!(acme, s.did("+14155554001").is_some());
                }
            })
        })
        .collect();
    for i in 0..200 {
        router.swap(if i % 2 == 0 { b() } else { a() });
    }
    for r in readers {
        r.join().unwrap();
    }
}

#[test]
fn ipv6_and_mapped_server_addresses() {
    let doc = json!({"servers": [
        {"auth": {"auth_method": "ip", "ip": "::ffff:10.3.0.1", "port": 5060}, "DIDs": {}},
        {"auth": {"auth_method": "ip", "ip": "2001:db8::7", "port": 5080}, "DIDs": {}}
    ]});
    let s = snapshot_of(&[("a", "d", doc)]);
    assert!(s.ip_server(addr("10.3.0.1:5060")).is_some());
    assert!(s.ip_server(addr("[2001:db8::7]:5080")).is_some());
    assert!(s.ip_server(addr("[2001:db8::7]:5081")).is_none());
    let ip: IpAddr = "2001:db8::7".parse().unwrap();
    assert_eq!(s.server(ServerId(1)).target.ip, Some(ip));
}

/// The core's view of a route is built once with the snapshot, in its final units ("0
/// means none" decided there), and shared by every lookup (no per-call allocation).
#[test]
fn inbound_model_is_built_once_in_final_units() {
    use std::time::Duration;
    let s = both();
    let r = s.did("+14155552003").unwrap();
    assert_eq!(r.inbound.delay, Some(Duration::from_secs(3)));
    assert_eq!(r.inbound.progress_timeout, Some(Duration::from_secs(4)));
    assert_eq!(r.inbound.answer_timeout, None, "timeout 0 is no timer");
    assert_eq!(r.inbound.format, NumberFormat::E164);
    assert_eq!(r.inbound.account, r.server.account);
    let again = s.did("+14155552003").unwrap();
    assert!(Arc::ptr_eq(&r.inbound, &again.inbound));
    let d = s.did("+14155551001").unwrap();
    assert_eq!(d.inbound.answer_timeout, Some(Duration::from_secs(61)));
}

/// `options.transport` (issue 17): a TLS server is reached over TLS, on 5061 unless a
/// port is given; an unknown transport is refused with its path.
#[test]
fn server_transport_option() {
    let doc = json!({"servers": [
        {"name": "tls-pbx", "auth": {"auth_method": "IP", "ip": "10.2.0.1"},
         "options": {"transport": "tls"}, "DIDs": {"4155557001": {}}},
        {"name": "tls-port", "auth": {"auth_method": "IP", "ip": "10.2.0.2", "port": 5071},
         "options": {"transport": "tls"}, "DIDs": {"4155557002": {}}},
        {"name": "tcp-pbx", "auth": {"auth_method": "IP", "ip": "10.2.0.3"},
         "options": {"transport": "tcp"}, "DIDs": {"4155557003": {}}}
    ]});
    let s = snapshot_of(&[("acme", "t", doc)]);
    let target = |did: &str| s.did(did).unwrap().server.target;
    use trunkstore_routing::Transport;
    let t = target("+14155557001");
    assert_eq!(
        (t.transport, t.socket_addr()),
        (Transport::Tls, Some("10.2.0.1:5061".parse().unwrap()))
    );
    let t = target("+14155557002");
    assert_eq!((t.transport, t.port), (Transport::Tls, 5071));
    assert_eq!(target("+14155557003").transport, Transport::Tcp);
    let hop = s.did("+14155557001").unwrap().inbound.next_hop.unwrap();
    assert_eq!(hop.transport, Transport::Tls);
    let bad = json!({"servers": [{"auth": {"auth_method": "IP", "ip": "10.2.0.4"},
                                   "options": {"transport": "sctp"}}]});
    let e = validate_document("acme", "bad", &bad).unwrap_err();
    assert!(e.has("servers.0.options.transport", "enum"), "{e}");
}
