//! Warnings of `trunkstore check` (issue 16 item 5): what the proxy will do differently
//! from what a document asks, without refusing the document.

use std::path::Path;

use serde_json::{json, Value};
use trunkstore_config::*;

fn catalog(settings: Value) -> Catalog {
    let settings = Settings::from_value(&settings, Path::new(".")).unwrap();
    let doc = validate_document(
        "acme",
        "main",
        &json!({"servers": [
            {"name": "anchored", "auth": {"auth_method": "IP", "ip": "10.0.0.5"},
             "options": {"media_handling": "process"}, "DIDs": {"+14155550001": {}}},
            {"name": "plain", "auth": {"auth_method": "IP", "ip": "10.0.0.6"},
             "DIDs": {"+14155550002": {"media_handling": "process"}, "+14155550003": {}}}
        ]}),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    Catalog::build(settings, [doc]).unwrap_or_else(|e| panic!("{e:?}"))
}

#[test]
fn process_without_rtpengine_is_a_warning_naming_each_place() {
    let w = catalog(json!({})).warnings();
    assert_eq!(w.len(), 2, "{w:#?}");
    assert!(
        w[0].contains(": servers.0: media_handling is \"process\""),
        "{}",
        w[0]
    );
    assert!(w[1].contains(": servers.1.DIDs.+14155550002: "), "{}", w[1]);
    assert!(w
        .iter()
        .all(|l| l.ends_with("its calls get 503 Media Relay Unavailable")));
    let w = catalog(json!({"media": {"on_failure": "bypass"}})).warnings();
    assert!(
        w[0].ends_with(
            "its calls go on unanchored (media.on_failure is \"bypass\": SDP passes untouched)"
        ),
        "{}",
        w[0]
    );
}

#[test]
fn with_an_rtpengine_there_is_nothing_to_warn_about() {
    let c = catalog(json!({"media": {"rtpengine": [{"address": "127.0.0.1:2223"}]}}));
    assert!(c.warnings().is_empty());
}

/// Issue 17 item 5: every target named by DNS is listed with its place (`check`
/// resolves them and warns about those that do not resolve); IP literals are not.
#[test]
fn named_targets_are_listed_with_their_place() {
    let settings = Settings::from_value(
        &json!({"carriers": [{"name": "c1", "sources": ["192.0.2.10"], "gateways": [
            {"host": "192.0.2.10"}, {"host": "sip.carrier.example", "port": 5080, "transport": "tcp"}]}]}),
        Path::new("."),
    )
    .unwrap();
    let doc = validate_document(
        "acme",
        "main",
        &json!({"servers": [
            {"name": "a", "auth": {"auth_method": "IP", "ip": "10.0.0.5"},
             "options": {"failover": {"sip": "sip:backup@pbx.example.com:5070"}},
             "DIDs": {"+14155550001": {"failover": {"sip": "sip:10.0.0.9"}},
                      "+14155550002": {"failover": {"sip": "sips:b@[2001:db8::1]:5061"}},
                      "+14155550003": {"failover": {"sip": "sip:dr.example.net;transport=tcp"}}}}
        ]}),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let c = Catalog::build(settings, [doc]).unwrap();
    assert!(c.warnings().is_empty());
    let n = c.named_targets();
    let got: Vec<(&str, &str, &str)> = n
        .iter()
        .map(|t| (t.place.as_str(), t.host.as_str(), t.uri.as_str()))
        .collect();
    assert_eq!(got.len(), 3, "{got:#?}");
    assert_eq!(
        got[0],
        (
            "settings: carriers.0.gateways.1.host",
            "sip.carrier.example",
            "sip:sip.carrier.example:5080;transport=tcp"
        )
    );
    assert!(
        got[1].0.ends_with(": servers.0.options.failover.sip"),
        "{got:?}"
    );
    assert_eq!(got[1].1, "pbx.example.com");
    assert!(
        got[2]
            .0
            .ends_with(": servers.0.DIDs.+14155550003.failover.sip"),
        "{got:?}"
    );
    assert_eq!(
        (got[2].1, got[2].2),
        ("dr.example.net", "sip:dr.example.net;transport=tcp")
    );
}
