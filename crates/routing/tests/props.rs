//! Property: every DID of a random valid data set is found with the right server, and
//! every other number is not found.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use proptest::prelude::*;
use serde_json::{json, Map, Value};
use trunkstore_config::numbers::normalize;
use trunkstore_config::{validate_document, Catalog, Settings};
use trunkstore_routing::Snapshot;

/// DID keys as written: E.164, national, short codes, leading zeros, long strings.
fn did_key() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\+[0-9]{1,15}",
        "[2-9][0-9]{2}[2-9][0-9]{6}",
        "1[2-9][0-9]{2}[2-9][0-9]{6}",
        "0{0,3}[0-9]{1,6}",
        "\\+?[0-9]{16,22}",
    ]
}

/// (document, server) owner for each key, deduplicated after normalisation.
fn data_set() -> impl Strategy<Value = Vec<(String, usize, usize)>> {
    proptest::collection::vec((did_key(), 0..4usize, 0..3usize), 0..120).prop_map(|v| {
        let mut seen = HashSet::new();
        v.into_iter()
            .filter(|(k, _, _)| seen.insert(normalize(k).into_owned()))
            .collect()
    })
}

fn build(set: &[(String, usize, usize)]) -> Snapshot {
    let mut docs: BTreeMap<usize, Vec<Map<String, Value>>> = BTreeMap::new();
    for d in 0..4 {
        docs.insert(d, (0..3).map(|_| Map::new()).collect());
    }
    for (key, d, s) in set {
        let opts = if key.len() % 3 == 0 {
            json!({"delay": 2})
        } else {
            json!({})
        };
        docs.get_mut(d).unwrap()[*s].insert(key.clone(), opts);
    }
    let documents = docs.into_iter().map(|(d, servers)| {
        let servers: Vec<Value> = servers
            .into_iter()
            .enumerate()
            .map(|(s, dids)| {
                let auth = if s == 0 {
                    json!({"auth_method": "ip", "ip": format!("10.0.{d}.{s}")})
                } else {
                    json!({"auth_method": "password", "auth_user": format!("u{d}{s}"),
                           "auth_password": "pw"})
                };
                json!({"name": format!("d{d}s{s}"), "auth": auth, "DIDs": dids})
            })
            .collect();
        let raw = json!({"servers": servers});
        validate_document(&format!("acct{}", d / 2), &format!("doc{d}"), &raw).expect("valid")
    });
    let settings = Settings::from_value(&json!({}), Path::new("/tmp")).unwrap();
    Snapshot::build(&Catalog::build(settings, documents).expect("unique DIDs"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn every_did_found_and_nothing_else(set in data_set(), others in proptest::collection::vec(prop_oneof![did_key(), "\\+?[0-9]{0,3}"], 0..60)) {
        let snap = build(&set);
        prop_assert_eq!(snap.did_count(), set.len());
        let mut numbers = HashSet::new();
        for (key, d, s) in &set {
            let n = normalize(key).into_owned();
            let route = snap.did(&n);
            prop_assert!(route.is_some(), "{} ({}) not found", n, key);
            let route = route.unwrap();
            prop_assert_eq!(&*route.server.document, format!("doc{d}"));
            prop_assert_eq!(route.server.index, *s);
            let name = format!("d{d}s{s}");
            prop_assert_eq!(route.server.name.as_deref(), Some(name.as_str()));
            prop_assert_eq!(route.delay, if key.len() % 3 == 0 { 2 } else { 0 });
            let (dialled, r2) = snap.did_dialled(key).unwrap();
            prop_assert_eq!(dialled.as_ref(), n.as_str());
            prop_assert!(std::ptr::eq(route, r2));
            numbers.insert(n);
        }
        for other in &others {
            for candidate in [other.clone(), normalize(other).into_owned()] {
                prop_assert_eq!(snap.did(&candidate).is_some(), numbers.contains(&candidate),
                    "{}", candidate);
            }
        }
    }
}
