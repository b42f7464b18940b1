//! Validation of single connectivity documents (behaviour.md §1).

use serde_json::{json, Value};
use trunkstore_config::*;

/// A minimal valid document with one password server; `patch` is merged into the first
/// server (objects merge, other values replace).
fn doc_with_server(patch: Value) -> Value {
    let mut server = json!({
        "auth": {"auth_method": "password", "auth_user": "pbx1", "auth_password": "pw"},
        "options": {},
        "DIDs": {"+14155551234": {}}
    });
    merge(&mut server, patch);
    json!({"name": "Test", "servers": [server]})
}

fn merge(target: &mut Value, patch: Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(&k);
                } else {
                    merge(t.entry(k).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p,
    }
}

fn validate(v: &Value) -> Result<Document, ValidationErrors> {
    validate_document("acct1", "doc1", v)
}

fn ok(v: Value) -> Document {
    match validate(&v) {
        Ok(d) => d,
        Err(e) => panic!("expected valid, got:\n{e}\nfor {v}"),
    }
}

fn rejects(v: Value, path: &str, keyword: &str) -> ValidationErrors {
    match validate(&v) {
        Ok(_) => panic!("expected {path}: {keyword}, document was accepted: {v}"),
        Err(e) => {
            assert!(
                e.has(path, keyword),
                "expected {path}: {keyword}, got:\n{e}"
            );
            e
        }
    }
}

#[test]
fn minimal_documents_are_valid() {
    ok(json!({}));
    ok(json!({"servers": []}));
    let d = ok(doc_with_server(json!({})));
    assert_eq!(d.account_id, "acct1");
    assert_eq!(d.id, "doc1");
    assert_eq!(d.name.as_deref(), Some("Test"));
    assert_eq!(d.servers[0].dids[0].number, "+14155551234");
}

#[test]
fn example_error_shape() {
    let e = rejects(
        doc_with_server(json!({"options": {"progress_timeout": 0}})),
        "servers.0.options.progress_timeout",
        "minimum",
    );
    assert_eq!(
        e.to_json(),
        json!({"servers.0.options.progress_timeout":
            {"minimum": {"message": "Value must be at least 1", "target": 1, "value": 0}}})
    );
}

#[test]
fn every_error_is_reported_not_just_the_first() {
    let e = rejects(
        json!({
            "account": {"trunks": -1, "caller_id": {"cid_name": "x".repeat(36)}},
            "servers": [
                {"auth": {"auth_method": "telepathy"}},
                {"options": {"delay": "soon"}},
                {"auth": {"auth_method": "ip", "ip": "10.0.0.1"}, "DIDs": {"abc": {}}}
            ]
        }),
        "account.trunks",
        "minimum",
    );
    for (path, kw) in [
        ("account.caller_id.cid_name", "maxLength"),
        ("servers.0.auth.auth_method", "enum"),
        ("servers.1.auth", "required"),
        ("servers.1.options.delay", "type"),
        ("servers.2.DIDs.abc", "pattern"),
    ] {
        assert!(e.has(path, kw), "missing {path}: {kw} in\n{e}");
    }
    assert_eq!(e.len(), 6, "{e}");
}

#[test]
fn types() {
    rejects(json!([]), "", "type");
    rejects(json!({"name": {}}), "name", "type");
    rejects(json!({"account": "x"}), "account", "type");
    rejects(json!({"servers": {}}), "servers", "type");
    rejects(json!({"servers": ["x"]}), "servers.0", "type");
    rejects(
        doc_with_server(json!({"options": []})),
        "servers.0.options",
        "type",
    );
    rejects(
        doc_with_server(json!({"DIDs": []})),
        "servers.0.DIDs",
        "type",
    );
    rejects(
        doc_with_server(json!({"DIDs": {"+14155551234": 5}})),
        "servers.0.DIDs.+14155551234",
        "type",
    );
    rejects(
        doc_with_server(json!({"options": {"enabled": "maybe"}})),
        "servers.0.options.enabled",
        "type",
    );
    rejects(
        doc_with_server(json!({"options": {"timeout": 1.5}})),
        "servers.0.options.timeout",
        "type",
    );
    rejects(
        doc_with_server(json!({"options": {"caller_id": "Bob"}})),
        "servers.0.options.caller_id",
        "type",
    );
}

#[test]
fn string_coercion() {
    let d = ok(doc_with_server(json!({
        "auth": {"port": "5060", "ip": "10.0.0.9"},
        "options": {"timeout": "30", "enabled": "true", "force_outbound": "false",
                    "progress_timeout": 5.0, "port": "5080"},
    })));
    let s = &d.servers[0];
    assert_eq!(s.auth.port(), Some(5060));
    assert_eq!(s.options.call.timeout, Some(30));
    assert_eq!(s.options.call.enabled, Some(true));
    assert_eq!(s.options.call.force_outbound, Some(false));
    assert_eq!(s.options.call.progress_timeout, Some(5));
    assert_eq!(s.options.port, Some(5080));
    let d = ok(json!({"account": {"trunks": "3", "caller_id": {"cid_number": 4155550100u64}}}));
    assert_eq!(d.account.trunks, Some(3));
    assert_eq!(
        d.account.caller_id.unwrap().number.as_deref(),
        Some("4155550100")
    );
    // Coercion keeps the raw document as written.
    let raw = doc_with_server(json!({"options": {"timeout": "30"}}));
    assert_eq!(ok(raw.clone()).raw(), &raw);
}

#[test]
fn caller_id_lengths_depend_on_level() {
    // Account level: 0..35.
    ok(json!({"account": {"caller_id": {"cid_name": "", "cid_number": ""}}}));
    ok(json!({"account": {"emergency_caller_id": {"cid_name": "n".repeat(35)}}}));
    rejects(
        json!({"account": {"caller_id": {"cid_number": "1".repeat(36)}}}),
        "account.caller_id.cid_number",
        "maxLength",
    );
    rejects(
        json!({"account": {"emergency_caller_id": {"cid_name": "n".repeat(36)}}}),
        "account.emergency_caller_id.cid_name",
        "maxLength",
    );
    // Server and DID level: 1..35.
    ok(doc_with_server(
        json!({"options": {"caller_id": {"cid_name": "n".repeat(35), "cid_number": "1"}}}),
    ));
    rejects(
        doc_with_server(json!({"options": {"caller_id": {"cid_name": ""}}})),
        "servers.0.options.caller_id.cid_name",
        "minLength",
    );
    rejects(
        doc_with_server(json!({"options": {"caller_id": {"cid_name": "n".repeat(36)}}})),
        "servers.0.options.caller_id.cid_name",
        "maxLength",
    );
    rejects(
        doc_with_server(json!({"DIDs": {"+14155551234": {"caller_id": {"cid_number": ""}}}})),
        "servers.0.DIDs.+14155551234.caller_id.cid_number",
        "minLength",
    );
    rejects(
        doc_with_server(
            json!({"DIDs": {"+14155551234": {"caller_id": {"cid_number": "1".repeat(36)}}}}),
        ),
        "servers.0.DIDs.+14155551234.caller_id.cid_number",
        "maxLength",
    );
    // cid_number ends up in a From user: no URI-breaking characters.
    ok(doc_with_server(
        json!({"options": {"caller_id": {"cid_number": "anonymous"}}}),
    ));
    rejects(
        doc_with_server(json!({"options": {"caller_id": {"cid_number": "1@evil"}}})),
        "servers.0.options.caller_id.cid_number",
        "pattern",
    );
}

#[test]
fn enums() {
    for m in ["password", "Password"] {
        let d = ok(doc_with_server(json!({"auth": {"auth_method": m}})));
        assert_eq!(d.servers[0].auth.method(), AuthMethod::Password);
    }
    for m in ["IP", "ip"] {
        let d = ok(doc_with_server(
            json!({"auth": {"auth_method": m, "ip": "10.1.1.1"}}),
        ));
        assert_eq!(d.servers[0].auth.method(), AuthMethod::Ip);
    }
    rejects(
        doc_with_server(json!({"auth": {"auth_method": "PASSWORD"}})),
        "servers.0.auth.auth_method",
        "enum",
    );
    for (f, want) in [
        ("e164", NumberFormat::E164),
        ("npan", NumberFormat::Npan),
        ("1npan", NumberFormat::OneNpan),
        ("username", NumberFormat::Username),
    ] {
        let d = ok(doc_with_server(
            json!({"options": {"inbound_format": f}, "DIDs": {"+14155551234": {"inbound_format": f}}}),
        ));
        assert_eq!(d.servers[0].options.call.inbound_format, Some(want));
        assert_eq!(d.servers[0].dids[0].options.inbound_format, Some(want));
    }
    rejects(
        doc_with_server(json!({"options": {"inbound_format": "E164"}})),
        "servers.0.options.inbound_format",
        "enum",
    );
    rejects(
        doc_with_server(json!({"DIDs": {"+14155551234": {"inbound_format": "npanxx"}}})),
        "servers.0.DIDs.+14155551234.inbound_format",
        "enum",
    );
    for (m, want) in [
        ("process", MediaHandling::Process),
        ("bypass", MediaHandling::Bypass),
    ] {
        let d = ok(doc_with_server(json!({"options": {"media_handling": m}})));
        assert_eq!(d.servers[0].options.call.media_handling, Some(want));
    }
    let e = rejects(
        doc_with_server(json!({"options": {"media_handling": "relay"}})),
        "servers.0.options.media_handling",
        "enum",
    );
    assert_eq!(
        e.get("servers.0.options.media_handling", "enum")
            .unwrap()
            .target,
        Some(json!(["process", "bypass"]))
    );
}

#[test]
fn required_fields() {
    rejects(
        doc_with_server(json!({"auth": null})),
        "servers.0.auth",
        "required",
    );
    rejects(
        json!({"servers": [{"auth": {}}]}),
        "servers.0.auth.auth_method",
        "required",
    );
    rejects(
        json!({"servers": [{"auth": {"auth_method": "password", "auth_password": "x"}}]}),
        "servers.0.auth.auth_user",
        "required",
    );
    rejects(
        json!({"servers": [{"auth": {"auth_method": "password", "auth_user": "x"}}]}),
        "servers.0.auth.auth_password",
        "required",
    );
    rejects(
        json!({"servers": [{"auth": {"auth_method": "ip"}}]}),
        "servers.0.auth.ip",
        "required",
    );
    // IP servers need no credentials; password servers need no ip.
    ok(json!({"servers": [{"auth": {"auth_method": "ip", "ip": "192.0.2.1"}}]}));
    ok(
        json!({"servers": [{"auth": {"auth_method": "password", "auth_user": "u", "auth_password": "p"}}]}),
    );
    rejects(
        doc_with_server(json!({"auth": {"auth_user": ""}})),
        "servers.0.auth.auth_user",
        "minLength",
    );
    rejects(
        doc_with_server(json!({"auth": {"auth_password": ""}})),
        "servers.0.auth.auth_password",
        "minLength",
    );
    rejects(
        doc_with_server(json!({"name": ""})),
        "servers.0.name",
        "minLength",
    );
    rejects(
        json!({"account": {"auth_realm": ""}}),
        "account.auth_realm",
        "minLength",
    );
}

#[test]
fn ip_addresses() {
    let d = ok(
        json!({"servers": [{"auth": {"auth_method": "ip", "ip": "2001:db8::5", "port": 5080}}]}),
    );
    assert_eq!(d.servers[0].auth.ip(), Some("2001:db8::5".parse().unwrap()));
    assert_eq!(d.servers[0].target_port(), 5080);
    rejects(
        json!({"servers": [{"auth": {"auth_method": "ip", "ip": "pbx.example.com"}}]}),
        "servers.0.auth.ip",
        "format",
    );
    rejects(
        json!({"servers": [{"auth": {"auth_method": "ip", "ip": "10.0.0.256"}}]}),
        "servers.0.auth.ip",
        "format",
    );
    rejects(
        doc_with_server(json!({"options": {"ip": "nope"}})),
        "servers.0.options.ip",
        "format",
    );
    let d = ok(doc_with_server(
        json!({"options": {"ip": "10.0.0.5", "port": 5070}}),
    ));
    assert_eq!(d.servers[0].target_ip(), Some("10.0.0.5".parse().unwrap()));
    assert_eq!(d.servers[0].target_port(), 5070);
}

#[test]
fn ranges() {
    for (patch, path, kw) in [
        (
            json!({"auth": {"port": 0}}),
            "servers.0.auth.port",
            "minimum",
        ),
        (
            json!({"auth": {"port": 65536}}),
            "servers.0.auth.port",
            "maximum",
        ),
        (
            json!({"options": {"port": "0"}}),
            "servers.0.options.port",
            "minimum",
        ),
        (
            json!({"options": {"progress_timeout": 0}}),
            "servers.0.options.progress_timeout",
            "minimum",
        ),
        (
            json!({"options": {"delay": -1}}),
            "servers.0.options.delay",
            "minimum",
        ),
        (
            json!({"options": {"timeout": -1}}),
            "servers.0.options.timeout",
            "minimum",
        ),
        (
            json!({"options": {"timeout": 86401}}),
            "servers.0.options.timeout",
            "maximum",
        ),
        (
            json!({"DIDs": {"+14155551234": {"progress_timeout": 0}}}),
            "servers.0.DIDs.+14155551234.progress_timeout",
            "minimum",
        ),
        (
            json!({"DIDs": {"+14155551234": {"delay": -5}}}),
            "servers.0.DIDs.+14155551234.delay",
            "minimum",
        ),
        (
            json!({"DIDs": {"+14155551234": {"timeout": "-1"}}}),
            "servers.0.DIDs.+14155551234.timeout",
            "minimum",
        ),
    ] {
        rejects(doc_with_server(patch), path, kw);
    }
    ok(doc_with_server(
        json!({"auth": {"port": 1}, "options": {"port": 65535, "delay": 0, "timeout": 0, "progress_timeout": 1}}),
    ));
    ok(json!({"account": {"trunks": 0}}));
    rejects(
        json!({"account": {"trunks": -1}}),
        "account.trunks",
        "minimum",
    );
}

#[test]
fn did_level_options_are_validated_and_kept() {
    let d = ok(doc_with_server(json!({"DIDs": {"+14155551234": {
        "delay": 2, "progress_timeout": 3, "timeout": 20, "ignore_early_media": true,
        "media_handling": "process", "enabled": false, "force_outbound": "true",
        "options": ["a", "b"], "sip_headers": {"X-Did": "1"},
        "failover": {"sip": "sip:fo@example.com"}, "emergency_caller_id": {"cid_number": "+14155550000"}
    }}})));
    let did = &d.servers[0].dids[0];
    assert_eq!(did.options.delay, Some(2));
    assert_eq!(did.options.progress_timeout, Some(3));
    assert_eq!(did.options.timeout, Some(20));
    assert_eq!(did.options.ignore_early_media, Some(true));
    assert_eq!(did.options.media_handling, Some(MediaHandling::Process));
    assert_eq!(did.options.enabled, Some(false));
    assert_eq!(did.options.force_outbound, Some(true));
    assert_eq!(did.flags, vec!["a", "b"]);
    assert_eq!(did.options.sip_headers[0].name, "X-Did");
    rejects(
        doc_with_server(json!({"DIDs": {"+14155551234": {"options": "a"}}})),
        "servers.0.DIDs.+14155551234.options",
        "type",
    );
    rejects(
        doc_with_server(json!({"DIDs": {"+14155551234": {"options": [1.5]}}})),
        "servers.0.DIDs.+14155551234.options.0",
        "type",
    );
}

#[test]
fn sip_headers_both_shapes() {
    let array = ok(doc_with_server(
        json!({"options": {"sip_headers": [{"X-A": "1"}, {"X-B": "2", "X-C": 3}]}}),
    ));
    let object = ok(doc_with_server(
        json!({"options": {"sip_headers": {"X-A": "1", "X-B": "2", "X-C": 3}}}),
    ));
    assert_eq!(
        array.servers[0].options.call.sip_headers,
        object.servers[0].options.call.sip_headers
    );
    let names: Vec<_> = array.servers[0]
        .options
        .call
        .sip_headers
        .iter()
        .map(|h| (h.name.as_str(), h.value.as_str()))
        .collect();
    assert_eq!(names, [("X-A", "1"), ("X-B", "2"), ("X-C", "3")]);
    rejects(
        doc_with_server(json!({"options": {"sip_headers": "X-A: 1"}})),
        "servers.0.options.sip_headers",
        "type",
    );
    rejects(
        doc_with_server(json!({"options": {"sip_headers": ["X-A: 1"]}})),
        "servers.0.options.sip_headers.0",
        "type",
    );
    rejects(
        doc_with_server(json!({"options": {"sip_headers": [{"X A": "1"}]}})),
        "servers.0.options.sip_headers.0.X A",
        "pattern",
    );
    rejects(
        doc_with_server(json!({"options": {"sip_headers": {"X:A": "1"}}})),
        "servers.0.options.sip_headers.X:A",
        "pattern",
    );
    rejects(
        doc_with_server(json!({"options": {"sip_headers": {"": "1"}}})),
        "servers.0.options.sip_headers.",
        "pattern",
    );
    rejects(
        doc_with_server(json!({"options": {"sip_headers": {"X-A": {}}}})),
        "servers.0.options.sip_headers.X-A",
        "type",
    );
    // Account level too (lowest level of the cascade).
    let d = ok(json!({"account": {"sip_headers": {"X-Acct": "a"}}}));
    assert_eq!(d.account.sip_headers.len(), 1);
}

#[test]
fn crlf_injection_is_rejected_everywhere() {
    let evil = "x\r\nVia: evil";
    for (patch, path) in [
        (
            json!({"auth": {"auth_user": evil}}),
            "servers.0.auth.auth_user",
        ),
        (
            json!({"auth": {"auth_password": evil}}),
            "servers.0.auth.auth_password",
        ),
        (json!({"name": evil}), "servers.0.name"),
        (
            json!({"options": {"caller_id": {"cid_name": evil}}}),
            "servers.0.options.caller_id.cid_name",
        ),
        (
            json!({"options": {"caller_id": {"cid_number": "1\n"}}}),
            "servers.0.options.caller_id.cid_number",
        ),
        (
            json!({"options": {"sip_headers": {"X-A": evil}}}),
            "servers.0.options.sip_headers.X-A",
        ),
        (
            json!({"options": {"sip_headers": [{"X-A": "a\u{0}b"}]}}),
            "servers.0.options.sip_headers.0.X-A",
        ),
        (
            json!({"options": {"failover": {"sip": "sip:a@b\r\nX: y"}}}),
            "servers.0.options.failover.sip",
        ),
        (
            json!({"options": {"failover": {"e164": "+1415\n"}}}),
            "servers.0.options.failover.e164",
        ),
        (
            json!({"DIDs": {"+14155551234": {"caller_id": {"cid_name": "a\rb"}}}}),
            "servers.0.DIDs.+14155551234.caller_id.cid_name",
        ),
    ] {
        rejects(doc_with_server(patch), path, "forbidden_characters");
    }
    rejects(
        json!({"account": {"auth_realm": "a.com\r\n"}}),
        "account.auth_realm",
        "forbidden_characters",
    );
    rejects(
        json!({"account": {"caller_id": {"cid_name": "\n"}}}),
        "account.caller_id.cid_name",
        "forbidden_characters",
    );
    rejects(json!({"name": "a\u{0}"}), "name", "forbidden_characters");
    // Header names with CR/LF are not tokens.
    rejects(
        doc_with_server(json!({"options": {"sip_headers": {"X-A\r\nVia": "1"}}})),
        "servers.0.options.sip_headers.X-A\r\nVia",
        "pattern",
    );
}

#[test]
fn passwords_are_never_echoed() {
    let e = rejects(
        doc_with_server(json!({"auth": {"auth_password": "hunter2\n"}})),
        "servers.0.auth.auth_password",
        "forbidden_characters",
    );
    let text = format!("{e} {}", e.to_json());
    assert!(!text.contains("hunter2"), "{text}");
    let d = ok(doc_with_server(
        json!({"auth": {"auth_password": "hunter2"}}),
    ));
    assert!(!format!("{d:?}").contains("hunter2"));
}

#[test]
fn auth_user_and_realm_charsets() {
    ok(doc_with_server(
        json!({"auth": {"auth_user": "user.name-1_2"}}),
    ));
    rejects(
        doc_with_server(json!({"auth": {"auth_user": "a\"b"}})),
        "servers.0.auth.auth_user",
        "pattern",
    );
    rejects(
        doc_with_server(json!({"auth": {"auth_user": "a b"}})),
        "servers.0.auth.auth_user",
        "pattern",
    );
    ok(json!({"account": {"auth_realm": "acme.sip.example.com"}}));
    rejects(
        json!({"account": {"auth_realm": "acme\"x"}}),
        "account.auth_realm",
        "pattern",
    );
}

#[test]
fn failover() {
    let d = ok(doc_with_server(
        json!({"options": {"failover": {"e164": "4155550000", "sip": "sip:x@y"}}}),
    ));
    let f = d.servers[0].options.call.failover.as_ref().unwrap();
    assert_eq!(f.e164.as_deref(), Some("+14155550000"));
    assert_eq!(f.target(), FailoverTarget::Number("+14155550000"));
    let d = ok(doc_with_server(
        json!({"options": {"failover": {"sip": "sips:voicemail@10.0.0.1:5061;transport=tls"}}}),
    ));
    assert_eq!(
        d.servers[0]
            .options
            .call
            .failover
            .as_ref()
            .unwrap()
            .target(),
        FailoverTarget::Uri("sips:voicemail@10.0.0.1:5061;transport=tls")
    );
    // An empty failover object is "not set".
    let d = ok(doc_with_server(json!({"options": {"failover": {}}})));
    assert_eq!(d.servers[0].options.call.failover, None);
    rejects(
        doc_with_server(json!({"options": {"failover": {"sip": "http://x"}}})),
        "servers.0.options.failover.sip",
        "format",
    );
    rejects(
        doc_with_server(json!({"options": {"failover": {"sip": "sip:"}}})),
        "servers.0.options.failover.sip",
        "format",
    );
    rejects(
        doc_with_server(json!({"options": {"failover": {"sip": "sip:a b@c"}}})),
        "servers.0.options.failover.sip",
        "format",
    );
    rejects(
        doc_with_server(json!({"options": {"failover": {"sip": "sip:a@c>"}}})),
        "servers.0.options.failover.sip",
        "format",
    );
    rejects(
        doc_with_server(json!({"options": {"failover": {"e164": "voicemail"}}})),
        "servers.0.options.failover.e164",
        "pattern",
    );
    rejects(
        doc_with_server(json!({"DIDs": {"+14155551234": {"failover": {"e164": "+"}}}})),
        "servers.0.DIDs.+14155551234.failover.e164",
        "pattern",
    );
    rejects(
        doc_with_server(json!({"options": {"failover": "sip:x@y"}})),
        "servers.0.options.failover",
        "type",
    );
}

#[test]
fn did_keys_and_normalisation() {
    let mut doc = doc_with_server(
        json!({"DIDs": {"4155550100": {}, "14155550101": {}, "+442071234567": {}, "1000": {}}}),
    );
    // A null DID value counts as an empty object.
    doc["servers"][0]["DIDs"]["011442071234568"] = Value::Null;
    let d = ok(doc);
    let numbers: Vec<_> = d.servers[0]
        .dids
        .iter()
        .map(|d| d.number.as_str())
        .collect();
    assert_eq!(
        numbers,
        [
            "+14155551234",
            "+14155550100",
            "+14155550101",
            "+442071234567",
            "1000",
            "+442071234568"
        ]
    );
    assert_eq!(d.servers[0].dids[1].key, "4155550100");
    for bad in ["abc", "+1-415", "++1", "", "+", "415 555"] {
        rejects(
            doc_with_server(json!({"DIDs": {bad: {}}})),
            &format!("servers.0.DIDs.{bad}"),
            "pattern",
        );
    }
}

#[test]
fn duplicate_did_within_a_document_names_both_places() {
    let doc = json!({"servers": [
        {"auth": {"auth_method": "ip", "ip": "10.0.0.1"}, "DIDs": {"+14155551234": {}}},
        {"auth": {"auth_method": "ip", "ip": "10.0.0.2"}, "DIDs": {"4155551234": {}}}
    ]});
    let e = rejects(doc, "servers.1.DIDs.4155551234", "unique");
    let err = e.get("servers.1.DIDs.4155551234", "unique").unwrap();
    assert!(
        err.message.contains("servers.0.DIDs.+14155551234"),
        "{}",
        err.message
    );
    assert!(err.message.contains("acct1") && err.message.contains("doc1"));
    // Same server, two spellings of one number.
    rejects(
        doc_with_server(json!({"DIDs": {"14155551234": {}}})),
        "servers.0.DIDs.14155551234",
        "unique",
    );
}

#[test]
fn ip_auth_servers_may_not_share_an_address() {
    let ip = |ip: &str, port: Option<u16>| {
        let mut a = json!({"auth_method": "ip", "ip": ip});
        if let Some(p) = port {
            a["port"] = json!(p);
        }
        json!({"auth": a})
    };
    let doc = |a: Value, b: Value| json!({"servers": [a, b]});
    rejects(
        doc(ip("10.0.0.1", None), ip("10.0.0.1", None)),
        "servers.1.auth.ip",
        "unique",
    );
    rejects(
        doc(ip("10.0.0.1", Some(5060)), ip("10.0.0.1", Some(5060))),
        "servers.1.auth.ip",
        "unique",
    );
    // No port conflicts with any port on that ip, both ways round.
    rejects(
        doc(ip("10.0.0.1", None), ip("10.0.0.1", Some(5080))),
        "servers.1.auth.ip",
        "unique",
    );
    rejects(
        doc(ip("10.0.0.1", Some(5080)), ip("10.0.0.1", None)),
        "servers.1.auth.ip",
        "unique",
    );
    ok(doc(ip("10.0.0.1", Some(5060)), ip("10.0.0.1", Some(5080))));
    ok(doc(ip("10.0.0.1", None), ip("10.0.0.2", None)));
    // Password servers with the same target ip are fine (they authenticate by digest).
    ok(json!({"servers": [
        {"auth": {"auth_method": "password", "auth_user": "a", "auth_password": "p", "ip": "10.0.0.1"}},
        {"auth": {"auth_method": "password", "auth_user": "b", "auth_password": "p", "ip": "10.0.0.1"}}
    ]}));
}

#[test]
fn ids_must_be_safe_path_components() {
    for (acct, id) in [
        ("../x", "doc"),
        ("acct", "a/b"),
        ("acct", ".."),
        ("", "doc"),
        ("acct", "a.json"),
    ] {
        let e = validate_document(acct, id, &json!({})).unwrap_err();
        assert!(e.has("", "pattern"), "{acct}/{id}: {e}");
    }
}

#[test]
fn unknown_fields_round_trip() {
    let raw = json!({
        "name": "x",
        "pvt_vendor_field": {"nested": [1, 2, {"a": null}]},
        "account": {"custom": true},
        "servers": [{
            "auth": {"auth_method": "IP", "ip": "10.9.9.9", "extra": "keep"},
            "options": {"weird": 1},
            "DIDs": {"+14155551234": {"unknown_did_field": "z"}},
            "monitor": {"enabled": true}
        }],
        "zzz_last": 1
    });
    let d = ok(raw.clone());
    assert_eq!(d.raw(), &raw);
    let text = serde_json::to_string(d.raw()).unwrap();
    let original = serde_json::to_string(&raw).unwrap();
    assert_eq!(text, original, "key order is preserved too");
}

#[test]
fn effective_options_cascade() {
    let d = ok(doc_with_server(json!({
        "options": {"delay": 1, "timeout": 30, "media_handling": "process",
                    "failover": {"sip": "sip:server@x"}, "force_outbound": false},
        "DIDs": {"+14155551234": {"delay": 4, "failover": {"e164": "+14155550000"}},
                 "+14155551235": {"force_outbound": true, "enabled": false}}
    })));
    let s = &d.servers[0];
    let defaults = Timers::default();
    let e = s.effective(Some(&s.dids[0]), &defaults);
    assert_eq!(
        (e.delay, e.timeout, e.progress_timeout),
        (4, 30, defaults.progress_timeout)
    );
    assert_eq!(e.media_handling, MediaHandling::Process);
    assert_eq!(e.inbound_format, NumberFormat::Npan);
    assert_eq!(
        e.failover.unwrap().target(),
        FailoverTarget::Number("+14155550000")
    );
    assert!(e.enabled && !e.force_outbound);
    let e = s.effective(Some(&s.dids[1]), &defaults);
    assert_eq!(
        e.failover.unwrap().target(),
        FailoverTarget::Uri("sip:server@x")
    );
    assert!(!e.enabled && e.force_outbound);
    let e = s.effective(None, &defaults);
    assert_eq!(e.delay, 1);
}

#[test]
fn sip_header_cascade_most_specific_wins() {
    let d = ok(json!({
        "account": {"sip_headers": {"X-A": "account", "X-Acct": "1"}},
        "servers": [{
            "auth": {"auth_method": "ip", "ip": "10.0.0.1"},
            "options": {"sip_headers": [{"x-a": "server"}, {"X-B": "server"}]},
            "DIDs": {"+14155551234": {"sip_headers": {"X-B": "did"}}}
        }]
    }));
    let s = &d.servers[0];
    let h: Vec<_> = merged_sip_headers(Some(&s.dids[0]), s, &d.account)
        .into_iter()
        .map(|h| format!("{}={}", h.name, h.value))
        .collect();
    assert_eq!(h, ["X-B=did", "x-a=server", "X-Acct=1"]);
}
