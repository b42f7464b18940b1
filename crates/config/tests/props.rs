//! Property tests: random valid documents validate, and validation is consistent with the
//! raw JSON it keeps.

use proptest::prelude::*;
use serde_json::{json, Map, Value};
use trunkstore_config::*;

fn caller_id() -> impl Strategy<Value = Value> {
    ("[A-Za-z ]{1,35}", "\\+?[0-9]{1,15}")
        .prop_map(|(n, c)| json!({"cid_name": n, "cid_number": c}))
}

/// A timer written as a number or as a string (coercion).
fn timer(min: u32) -> impl Strategy<Value = Value> {
    (min..=3600u32, any::<bool>())
        .prop_map(|(n, s)| if s { json!(n.to_string()) } else { json!(n) })
}

fn options() -> impl Strategy<Value = Value> {
    (
        proptest::option::of(timer(0)),
        proptest::option::of(timer(1)),
        proptest::option::of(timer(0)),
        proptest::option::of(prop_oneof![
            Just("e164"),
            Just("npan"),
            Just("1npan"),
            Just("username")
        ]),
        proptest::option::of(prop_oneof![Just("process"), Just("bypass")]),
        proptest::option::of(caller_id()),
        proptest::option::of(prop_oneof![
            "[0-9]{10}".prop_map(|n| json!({"e164": n})),
            "[a-z]{1,8}@[a-z]{1,8}\\.com".prop_map(|u| json!({"sip": format!("sip:{u}")})),
        ]),
        proptest::option::of(prop_oneof![
            ("X-[A-Za-z]{1,8}", "[ -~]{0,20}").prop_map(|(k, v)| json!({k: v})),
            ("X-[A-Za-z]{1,8}", "[ -~]{0,20}").prop_map(|(k, v)| json!([{k: v}])),
        ]),
        proptest::option::of(any::<bool>()),
    )
        .prop_map(
            |(delay, progress, timeout, format, media, cid, failover, headers, enabled)| {
                let mut o = Map::new();
                let mut put = |k: &str, v: Option<Value>| {
                    if let Some(v) = v {
                        o.insert(k.to_string(), v);
                    }
                };
                put("delay", delay);
                put("progress_timeout", progress);
                put("timeout", timeout);
                put("inbound_format", format.map(|f| json!(f)));
                put("media_handling", media.map(|m| json!(m)));
                put("caller_id", cid);
                put("failover", failover);
                put("sip_headers", headers);
                put("enabled", enabled.map(|e| json!(e)));
                Value::Object(o)
            },
        )
}

fn auth(index: usize) -> impl Strategy<Value = Value> {
    prop_oneof![
        ("[a-z0-9]{1,12}", "[ -~]{1,24}").prop_map(|(u, p)| json!({"auth_method": "password", "auth_user": u, "auth_password": p})),
        proptest::option::of(1u16..=65535).prop_map(move |port| {
            // Distinct addresses per server so documents never conflict with themselves.
            let mut a = json!({"auth_method": "IP", "ip": format!("10.1.{}.{}", index / 250, index % 250 + 1)});
            if let Some(p) = port {
                a["port"] = json!(p);
            }
            a
        }),
    ]
}

fn server(index: usize) -> impl Strategy<Value = Value> {
    (
        auth(index),
        options(),
        proptest::collection::vec(options(), 0..4),
        "[A-Za-z0-9 ]{1,20}",
    )
        .prop_map(move |(auth, options, did_opts, name)| {
            let dids: Map<String, Value> = did_opts
                .into_iter()
                .enumerate()
                // Unique DIDs: the server index and DID index are part of the number.
                .map(|(i, o)| (format!("+1415{:03}{:04}", index + 200, i), o))
                .collect();
            json!({"name": name, "auth": auth, "options": options, "DIDs": dids})
        })
}

fn document() -> impl Strategy<Value = Value> {
    (0usize..5, proptest::option::of(caller_id()), proptest::option::of(0u32..100))
        .prop_flat_map(|(n, cid, trunks)| {
            let servers: Vec<_> = (0..n).map(server).collect();
            (servers, Just(cid), Just(trunks))
        })
        .prop_map(|(servers, cid, trunks)| {
            let mut account = json!({"auth_realm": "example.com"});
            if let Some(c) = cid {
                account["caller_id"] = c;
            }
            if let Some(t) = trunks {
                account["trunks"] = json!(t);
            }
            json!({"name": "generated", "account": account, "servers": servers, "x_unknown": [1, "a"]})
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn random_valid_documents_validate(raw in document()) {
        let doc = validate_document("acct", "doc", &raw);
        prop_assert!(doc.is_ok(), "{}\n{}", doc.unwrap_err(), raw);
        let doc = doc.unwrap();
        prop_assert_eq!(doc.raw(), &raw);
        let servers = raw["servers"].as_array().unwrap();
        prop_assert_eq!(doc.servers.len(), servers.len());
        for (s, v) in doc.servers.iter().zip(servers) {
            prop_assert_eq!(s.dids.len(), v["DIDs"].as_object().unwrap().len());
            for d in &s.dids {
                prop_assert!(numbers::is_e164(&d.number));
            }
        }
    }

    #[test]
    fn injecting_a_newline_anywhere_is_an_error(raw in document(), pick in any::<prop::sample::Index>()) {
        // Collect the paths of all string leaves the model reads, then corrupt one.
        let mut leaves = Vec::new();
        collect_strings(&raw, &mut Vec::new(), &mut leaves);
        leaves.retain(|p| p.first().map(String::as_str) != Some("x_unknown"));
        prop_assume!(!leaves.is_empty());
        let path = &leaves[pick.index(leaves.len())];
        let mut bad = raw.clone();
        let slot = path.iter().fold(&mut bad, |v, k| match v {
            Value::Array(a) => &mut a[k.parse::<usize>().unwrap()],
            v => &mut v[k.as_str()],
        });
        let s = slot.as_str().unwrap().to_string();
        *slot = json!(format!("{s}\r\nX-Injected: 1"));
        prop_assert!(validate_document("acct", "doc", &bad).is_err(), "accepted {}", path.join("."));
    }

    #[test]
    fn any_json_never_panics(raw in any_json()) {
        let _ = validate_document("acct", "doc", &raw);
        let _ = Settings::from_value(&raw, std::path::Path::new("."));
    }
}

fn collect_strings(v: &Value, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match v {
        Value::String(_) => out.push(path.clone()),
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                path.push(i.to_string());
                collect_strings(x, path, out);
                path.pop();
            }
        }
        Value::Object(o) => {
            for (k, x) in o {
                path.push(k.clone());
                collect_strings(x, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        "[ -~]{0,10}".prop_map(Value::String),
        prop_oneof![Just("servers"), Just("auth"), Just("DIDs"), Just("options")]
            .prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(4, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec(
                (
                    prop_oneof![
                        Just("servers".to_string()),
                        Just("auth".to_string()),
                        Just("auth_method".to_string()),
                        Just("DIDs".to_string()),
                        Just("options".to_string()),
                        Just("ip".to_string()),
                        Just("sip_headers".to_string()),
                        Just("failover".to_string()),
                        Just("caller_id".to_string()),
                        Just("carriers".to_string()),
                        Just("listen".to_string()),
                        "[+0-9a-z]{0,6}"
                    ],
                    inner
                ),
                0..6
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}
