//! Issue 13 item 6: a document may not point the proxy at a carrier or at itself
//! (`auth.ip`, `options.ip`, `failover.sip` at server and DID level), behaviour.md §1.

use std::path::Path;

use serde_json::{json, Value};
use trunkstore_config::*;

/// A carrier with one gateway and exact-peer and CIDR sources, the proxy on 127.0.0.1:5060
/// and advertised as 203.0.113.10:5060.
fn settings() -> Settings {
    settings_with_listen(json!({"udp": ["127.0.0.1:5060"], "tcp": ["127.0.0.1:5060"]}))
}

fn settings_with_listen(listen: Value) -> Settings {
    Settings::from_value(
        &json!({
            "listen": listen,
            "advertise": "203.0.113.10:5060",
            "carriers": [{
                "name": "carrier1",
                "gateways": [{"host": "192.0.2.1", "port": 5070}, {"host": "gw.carrier.example"}],
                "sources": ["198.51.100.0/24", "127.0.0.1:5070"]
            }]
        }),
        Path::new("."),
    )
    .unwrap()
}

fn doc(v: Value) -> Document {
    validate_document("acme", "main", &v).unwrap_or_else(|e| panic!("{e}"))
}

/// The errors of a one-document catalog (empty when it builds).
fn errors(settings: Settings, v: Value) -> Vec<ValidationError> {
    match Catalog::build(settings, [doc(v)]) {
        Ok(_) => Vec::new(),
        Err(failures) => failures.into_iter().flat_map(|f| f.errors).collect(),
    }
}

fn password_server(extra_auth: Value, options: Value) -> Value {
    let mut auth = json!({"auth_method": "password", "auth_user": "u", "auth_password": "p"});
    for (k, v) in extra_auth.as_object().unwrap() {
        auth[k] = v.clone();
    }
    json!({"servers": [{"auth": auth, "options": options, "DIDs": {"4155551234": {}}}]})
}

fn only_error(errs: &[ValidationError]) -> (&str, &str, &str) {
    assert_eq!(errs.len(), 1, "{errs:?}");
    let e = &errs[0];
    (e.path.as_str(), e.keyword, e.message.as_str())
}

#[test]
fn options_ip_naming_a_carrier_gateway_is_refused() {
    let cases = [
        // (options.ip, options.port, refused)
        ("192.0.2.1", Some(5070), true),
        // No port given: the IP alone decides.
        ("192.0.2.1", None, true),
        ("192.0.2.1", Some(5080), false),
        ("192.0.2.2", Some(5070), false),
        // IPv4-mapped IPv6 is the same address.
        ("::ffff:192.0.2.1", Some(5070), true),
    ];
    for (ip, port, refused) in cases {
        let mut options = json!({"ip": ip});
        if let Some(p) = port {
            options["port"] = json!(p);
        }
        let errs = errors(settings(), password_server(json!({}), options));
        assert_eq!(!errs.is_empty(), refused, "{ip} {port:?}: {errs:?}");
        if refused {
            let (path, keyword, message) = only_error(&errs);
            assert_eq!(
                (path, keyword),
                ("servers.0.options.ip", "forbidden_address")
            );
            assert!(message.contains("carrier 'carrier1'"), "{message}");
            assert_eq!(errs[0].value, Some(json!(ip)));
            assert_eq!(
                errs[0].target,
                Some(json!({"carrier": "carrier1", "gateway": "192.0.2.1:5070"}))
            );
        }
    }
}

#[test]
fn auth_ip_of_a_password_server_inside_a_carrier_source_is_refused() {
    let errs = errors(
        settings(),
        password_server(json!({"ip": "198.51.100.9", "port": 5080}), json!({})),
    );
    let (path, keyword, message) = only_error(&errs);
    assert_eq!((path, keyword), ("servers.0.auth.ip", "forbidden_address"));
    assert!(message.contains("source 198.51.100.0/24"), "{message}");
}

#[test]
fn ip_auth_server_at_a_gateway_is_refused() {
    let v = json!({"servers": [{"auth": {"auth_method": "ip", "ip": "192.0.2.1", "port": 5070}}]});
    let errs = errors(settings(), v);
    let (path, keyword, _) = only_error(&errs);
    assert_eq!((path, keyword), ("servers.0.auth.ip", "forbidden_address"));
}

#[test]
fn ip_auth_server_inside_a_source_is_reported_once() {
    // The identity rule (`unique`) already refuses it; no second error for the same field.
    let v = json!({"servers": [{"auth": {"auth_method": "ip", "ip": "198.51.100.9"}}]});
    let errs = errors(settings(), v);
    let (path, keyword, _) = only_error(&errs);
    assert_eq!((path, keyword), ("servers.0.auth.ip", "unique"));
}

#[test]
fn the_proxys_own_addresses_are_refused() {
    let cases = [
        // Listen address, exact and by IP alone.
        (
            json!({"ip": "127.0.0.1", "port": 5060}),
            "listen 127.0.0.1:5060",
        ),
        (json!({"auth_ip": "127.0.0.1"}), "listen 127.0.0.1:5060"),
        // The advertised address.
        (
            json!({"ip": "203.0.113.10", "port": 5060}),
            "advertise 203.0.113.10:5060",
        ),
        // The unspecified address reaches the local host.
        (
            json!({"ip": "0.0.0.0", "port": 5099}),
            "unspecified address",
        ),
    ];
    let no_carriers = || {
        let mut s = settings();
        s.carriers.clear();
        s
    };
    for (options, what) in cases {
        let (doc, field) = match options.get("auth_ip") {
            // By IP alone (no port given); without carriers, so no source claims it first.
            Some(ip) => (
                password_server(json!({"ip": ip}), json!({})),
                "servers.0.auth.ip",
            ),
            None => (
                password_server(json!({}), options.clone()),
                "servers.0.options.ip",
            ),
        };
        let errs = errors(no_carriers(), doc);
        let (path, keyword, message) = only_error(&errs);
        assert_eq!((path, keyword), (field, "forbidden_address"), "{options}");
        assert!(message.contains(what), "{options}: {message}");
        assert_eq!(errs[0].target, Some(json!({"proxy": what})));
    }
    // Loopback PBXs on other ports stay valid (the e2e tests and shipped configs use them).
    for options in [
        json!({"ip": "127.0.0.1", "port": 5080}),
        json!({"ip": "127.0.0.2"}),
    ] {
        // (127.0.0.1 without a port would be refused: the IP alone is a listen address.)
        let errs = errors(settings(), password_server(json!({}), options.clone()));
        assert!(errs.is_empty(), "{options}: {errs:?}");
    }
}

/// A listener's own advertised address (RFC 5658 sides) is the proxy's as much as the
/// global one: by IP and by DNS name.
#[test]
fn a_listeners_own_advertised_address_is_refused() {
    let mut s = settings_with_listen(json!({
        "udp": [{"address": "0.0.0.0:5060", "advertise": "198.18.0.10:5060"}],
        "tcp": [{"address": "[::]:5060", "advertise": "sip6.example.net:5061"}]
    }));
    s.carriers.clear();
    for (options, what) in [
        (
            json!({"ip": "198.18.0.10", "port": 5060}),
            "advertise 198.18.0.10:5060",
        ),
        (
            json!({"failover": {"sip": "sip:+14155550000@sip6.example.net:5061"}}),
            "advertise sip6.example.net:5061",
        ),
    ] {
        let errs = errors(s.clone(), password_server(json!({}), options.clone()));
        let (_, keyword, message) = only_error(&errs);
        assert_eq!(keyword, "forbidden_address", "{options}");
        assert!(message.contains(what), "{options}: {message}");
    }
}

#[test]
fn a_wildcard_listen_covers_every_loopback_address_on_its_port() {
    let wildcard = || settings_with_listen(json!({"udp": ["0.0.0.0:5060"], "tcp": ["[::]:5062"]}));
    for (ip, port, refused) in [
        ("127.0.0.7", Some(5060), true),
        ("127.0.0.7", None, true),
        ("::1", Some(5062), true),
        ("127.0.0.7", Some(5080), false),
        ("10.1.2.3", Some(5060), false),
    ] {
        let mut options = json!({"ip": ip});
        if let Some(p) = port {
            options["port"] = json!(p);
        }
        let errs = errors(wildcard(), password_server(json!({}), options));
        assert_eq!(!errs.is_empty(), refused, "{ip} {port:?}: {errs:?}");
        if refused {
            assert_eq!(errs[0].keyword, "forbidden_address");
        }
    }
}

#[test]
fn failover_sip_at_server_and_did_level() {
    let v = json!({"servers": [{
        "auth": {"auth_method": "ip", "ip": "10.0.0.5"},
        "options": {"failover": {"sip": "sip:+14155550000@192.0.2.1:5070"}},
        "DIDs": {
            "4155551234": {"failover": {"sip": "sip:x@127.0.0.1:5060;transport=udp"}},
            "4155551235": {"failover": {"sip": "sips:x@GW.carrier.example"}},
            "4155551236": {"failover": {"sip": "sip:voicemail@10.0.0.9:5060"}},
            "4155551237": {"failover": {"e164": "+14155550001", "sip": "sip:y@[::ffff:192.0.2.1]:5070"}}
        }
    }]});
    let errs = errors(settings(), v);
    let got: Vec<(&str, &str)> = errs.iter().map(|e| (e.path.as_str(), e.keyword)).collect();
    assert_eq!(
        got,
        [
            ("servers.0.options.failover.sip", "forbidden_address"),
            (
                "servers.0.DIDs.4155551234.failover.sip",
                "forbidden_address"
            ),
            (
                "servers.0.DIDs.4155551235.failover.sip",
                "forbidden_address"
            ),
            (
                "servers.0.DIDs.4155551237.failover.sip",
                "forbidden_address"
            ),
        ]
    );
    assert_eq!(
        errs[0].value,
        Some(json!("sip:+14155550000@192.0.2.1:5070"))
    );
}

#[test]
fn an_api_style_replace_is_refused_and_the_catalog_is_unchanged() {
    let ok = doc(password_server(json!({}), json!({"ip": "10.0.0.5"})));
    let catalog = Catalog::build(settings(), [ok]).unwrap();
    let bad = doc(password_server(
        json!({}),
        json!({"ip": "192.0.2.1", "port": 5070}),
    ));
    let errs = catalog.replace(bad).unwrap_err();
    assert!(
        errs.has("servers.0.options.ip", "forbidden_address"),
        "{errs}"
    );
    // `replace` builds a new catalog: the old one still routes the DID to 10.0.0.5.
    let m = catalog.did("+14155551234").unwrap();
    assert_eq!(m.server.options.ip, Some("10.0.0.5".parse().unwrap()));
}

#[test]
fn shipped_configurations_still_validate() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for settings in [
        "config/trunkstore.json",
        "benches/sipp/config/trunkstore.json",
        "benches/sipp/config-auth/trunkstore.json",
    ] {
        let path = root.join(settings);
        if let Err(e) = load_all(&path) {
            panic!("{}: {e:?}", path.display());
        }
    }
}
