//! System-level rules (Catalog) and storage (loading a directory, atomic writes).

use std::fs;
use std::path::Path;

use serde_json::{json, Value};
use trunkstore_config::*;

fn settings(carriers: Value) -> Settings {
    Settings::from_value(&json!({"carriers": carriers}), Path::new(".")).unwrap()
}

fn doc(account: &str, id: &str, v: Value) -> Document {
    validate_document(account, id, &v).unwrap_or_else(|e| panic!("{e}"))
}

fn ip_server(ip: &str, port: Option<u16>, dids: &[&str]) -> Value {
    let mut auth = json!({"auth_method": "ip", "ip": ip});
    if let Some(p) = port {
        auth["port"] = json!(p);
    }
    let dids: serde_json::Map<String, Value> =
        dids.iter().map(|d| (d.to_string(), json!({}))).collect();
    json!({"servers": [{"auth": auth, "DIDs": dids}]})
}

fn single_error(failures: &[FileErrors]) -> (&FileErrors, &ValidationError) {
    assert_eq!(failures.len(), 1, "{failures:?}");
    let f = &failures[0];
    assert_eq!(f.errors.len(), 1, "{}", f);
    (f, f.errors.iter().next().unwrap())
}

#[test]
fn a_did_is_claimed_once_across_accounts() {
    let a = doc(
        "acme",
        "main",
        ip_server("10.0.0.1", None, &["+14155551234"]),
    );
    let b = doc(
        "globex",
        "trunk",
        ip_server("10.0.0.2", None, &["4155551234"]),
    );
    let failures = Catalog::build(settings(json!([])), [a.clone(), b.clone()]).unwrap_err();
    let (f, e) = single_error(&failures);
    // Reported on the later claimant, naming the earlier one (account/document/server/DID).
    assert_eq!(f.document, Some(("globex".into(), "trunk".into())));
    assert_eq!(f.file, Path::new("globex/trunk.json"));
    assert_eq!(
        (e.path.as_str(), e.keyword),
        ("servers.0.DIDs.4155551234", "unique")
    );
    assert_eq!(e.message, "DID +14155551234 is already claimed by account 'acme', document 'main', servers.0.DIDs.+14155551234");
    assert_eq!(
        e.target,
        Some(json!({"account": "acme", "document": "main", "path": "servers.0.DIDs.+14155551234"}))
    );
    // Order decides who is "later".
    let failures = Catalog::build(settings(json!([])), [b, a]).unwrap_err();
    assert_eq!(failures[0].document, Some(("acme".into(), "main".into())));
}

#[test]
fn a_did_is_claimed_once_across_documents_of_one_account() {
    let a = doc("acme", "a", ip_server("10.0.0.1", None, &["+14155551234"]));
    let b = doc("acme", "b", ip_server("10.0.0.2", None, &["+14155551234"]));
    let failures = Catalog::build(settings(json!([])), [a, b]).unwrap_err();
    let (_, e) = single_error(&failures);
    assert!(e.message.contains("document 'a'"), "{}", e.message);
}

#[test]
fn ip_auth_conflicts_across_documents() {
    let cases = [
        (None, None, true),
        (Some(5060), Some(5060), true),
        (None, Some(5080), true),
        (Some(5080), None, true),
        (Some(5060), Some(5080), false),
    ];
    for (pa, pb, conflict) in cases {
        let a = doc("acme", "a", ip_server("10.0.0.1", pa, &[]));
        let b = doc("globex", "b", ip_server("10.0.0.1", pb, &[]));
        let r = Catalog::build(settings(json!([])), [a, b]);
        assert_eq!(r.is_err(), conflict, "{pa:?} vs {pb:?}");
        if let Err(failures) = r {
            let (f, e) = single_error(&failures);
            assert_eq!(f.document, Some(("globex".into(), "b".into())));
            assert_eq!(
                (e.path.as_str(), e.keyword),
                ("servers.0.auth.ip", "unique")
            );
            assert!(
                e.message
                    .contains("account 'acme', document 'a', servers.0.auth.ip"),
                "{}",
                e.message
            );
        }
    }
}

#[test]
fn ip_auth_server_covered_by_a_carrier_source() {
    let carriers = json!([{"name": "carrier1", "gateways": [{"host": "192.0.2.1"}],
                           "sources": ["192.0.2.0/24", "198.51.100.7:5060"]}]);
    for (ip, port, conflict) in [
        ("192.0.2.50", None, true),
        ("192.0.2.50", Some(5080), true),
        ("198.51.100.7", None, true),
        ("198.51.100.7", Some(5060), true),
        ("198.51.100.7", Some(5070), false),
        ("203.0.113.1", None, false),
    ] {
        let d = doc("acme", "a", ip_server(ip, port, &[]));
        let r = Catalog::build(settings(carriers.clone()), [d]);
        assert_eq!(r.is_err(), conflict, "{ip} {port:?}");
        if let Err(failures) = r {
            let (_, e) = single_error(&failures);
            assert_eq!(
                (e.path.as_str(), e.keyword),
                ("servers.0.auth.ip", "unique")
            );
            assert!(e.message.contains("carrier 'carrier1'"), "{}", e.message);
        }
    }
    // Password servers are told apart by credentials, not addresses; but their `auth.ip`
    // is where inbound calls go, and a carrier's source is no place to send them (issue
    // 13 item 6: `forbidden_address`, not an identity clash).
    let pw = doc(
        "acme",
        "pw",
        json!({"servers": [{"auth": {"auth_method": "password", "auth_user": "u", "auth_password": "p", "ip": "192.0.2.9"}}]}),
    );
    let failures = Catalog::build(settings(carriers), [pw]).unwrap_err();
    let (_, e) = single_error(&failures);
    assert_eq!(
        (e.path.as_str(), e.keyword),
        ("servers.0.auth.ip", "forbidden_address")
    );
}

#[test]
fn every_conflict_of_every_file_is_reported() {
    let a = doc(
        "acme",
        "a",
        ip_server("10.0.0.1", None, &["+14155551234", "+14155551235"]),
    );
    let b = doc(
        "b",
        "b",
        ip_server("10.0.0.1", None, &["+14155551234", "+14155551235"]),
    );
    let c = doc("c", "c", ip_server("10.0.0.3", None, &["+14155551235"]));
    let failures = Catalog::build(settings(json!([])), [a, b, c]).unwrap_err();
    assert_eq!(failures.len(), 2);
    assert_eq!(failures[0].errors.len(), 3, "{}", failures[0]);
    assert_eq!(failures[1].errors.len(), 1);
}

#[test]
fn catalog_lookup_replace_remove() {
    let a = doc("acme", "a", ip_server("10.0.0.1", None, &["4155551234"]));
    let catalog = Catalog::build(settings(json!([])), [a]).unwrap();
    let m = catalog.did("+14155551234").unwrap();
    assert_eq!(
        (m.document.account_id.as_str(), m.did.key.as_str()),
        ("acme", "4155551234")
    );
    assert!(
        catalog.did("4155551234").is_none(),
        "lookups take normalised numbers"
    );

    // A write that conflicts is refused, and the error is about the written document.
    let b = doc(
        "globex",
        "b",
        ip_server("10.0.0.2", None, &["+14155551234"]),
    );
    let e = catalog.replace(b).unwrap_err();
    assert!(e.has("servers.0.DIDs.+14155551234", "unique"), "{e}");
    // Replacing a document by a new version of itself is not a conflict with itself.
    let a2 = doc(
        "acme",
        "a",
        ip_server("10.0.0.1", None, &["4155551234", "4155551299"]),
    );
    let catalog = catalog.replace(a2).unwrap();
    assert_eq!(catalog.documents().len(), 1);
    assert!(catalog.did("+14155551299").is_some());
    let catalog = catalog.remove("acme", "a");
    assert!(catalog.did("+14155551234").is_none());
    assert_eq!(catalog.summary().documents, 0);
}

#[test]
fn duplicate_documents_in_the_input() {
    let a = doc("acme", "a", json!({}));
    let failures = Catalog::build(settings(json!([])), [a.clone(), a]).unwrap_err();
    assert!(failures[0].errors.has("", "unique"));
}

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

#[test]
fn loading_a_directory_reports_every_error_of_every_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(&root.join("acme/good.json"), r#"{"servers": []}"#);
    write(
        &root.join("acme/bad.json"),
        r#"{"account": {"trunks": -1}, "servers": [{"auth": {}}]}"#,
    );
    write(&root.join("acme/broken.json"), "{");
    write(&root.join("acme/notes.txt"), "ignored");
    write(&root.join("acme/.good.json.123.tmp"), "{ half written");
    write(&root.join("bad.name/x.json"), "{}");
    write(&root.join("globex/a.b.json"), "{}");
    write(&root.join("README.md"), "ignored");
    let (docs, failures) = load_connectivity_dir(root);
    assert_eq!(docs.len(), 1);
    assert_eq!(
        docs[0].source.as_deref(),
        Some(root.join("acme/good.json").as_path())
    );
    let by_file: Vec<(String, Vec<String>)> = failures
        .iter()
        .map(|f| {
            let file = f.file.strip_prefix(root).unwrap().display().to_string();
            (
                file,
                f.errors
                    .iter()
                    .map(|e| format!("{}:{}", e.path, e.keyword))
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        by_file,
        vec![
            (
                "acme/bad.json".into(),
                vec![
                    "account.trunks:minimum".into(),
                    "servers.0.auth.auth_method:required".into()
                ]
            ),
            ("acme/broken.json".into(), vec![":format".into()]),
            ("bad.name".into(), vec![":pattern".into()]),
            ("globex/a.b.json".into(), vec![":pattern".into()]),
        ]
    );
    let (_, failures) = load_connectivity_dir(&root.join("missing"));
    assert!(failures[0].errors.has("", "io"));
}

#[test]
fn load_all_combines_file_and_system_errors() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(
        &root.join("trunkstore.json"),
        r#"{"connectivity_dir": "conn"}"#,
    );
    write(
        &root.join("conn/a/one.json"),
        &ip_server("10.0.0.1", None, &["+14155551234"]).to_string(),
    );
    write(
        &root.join("conn/b/two.json"),
        &ip_server("10.0.0.2", None, &["+14155551234"]).to_string(),
    );
    write(&root.join("conn/c/three.json"), r#"{"servers": 1}"#);
    let failures = load_all(&root.join("trunkstore.json")).unwrap_err();
    let files: Vec<_> = failures
        .iter()
        .map(|f| f.file.strip_prefix(root).unwrap().to_path_buf())
        .collect();
    assert_eq!(
        files,
        [Path::new("conn/c/three.json"), Path::new("conn/b/two.json")]
    );
}

#[test]
fn atomic_write_round_trips_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let raw = json!({"name": "x", "vendor_field": {"z": 1, "a": [true]}, "servers": []});
    let path = write_document_atomically(root, "acme", "doc1", &raw).unwrap();
    assert_eq!(path, root.join("acme/doc1.json"));
    // Overwrite in place; no temp files are left behind.
    let raw2 = json!({"name": "y", "unknown": null});
    write_document_atomically(root, "acme", "doc1", &raw2).unwrap();
    let names: Vec<_> = fs::read_dir(root.join("acme"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["doc1.json"]);
    let loaded = load_document(&path, "acme", "doc1").unwrap();
    assert_eq!(
        loaded.raw(),
        &raw2,
        "unknown fields (even null ones) survive a write and a load"
    );
    assert_eq!(read_json(&path).unwrap(), raw2);

    // Ids that could escape the directory are refused before touching the disk.
    for (a, i) in [("..", "x"), ("acme", "../../etc/passwd"), ("acme", "")] {
        let e = write_document_atomically(root, a, i, &raw).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
        assert_eq!(
            delete_document(root, a, i).unwrap_err().kind(),
            std::io::ErrorKind::InvalidInput
        );
    }
    assert!(delete_document(root, "acme", "doc1").unwrap());
    assert!(!delete_document(root, "acme", "doc1").unwrap());
    assert!(!path.exists());
}

#[test]
fn document_ids_from_paths() {
    assert_eq!(
        relative_document_path("acme", "main"),
        Path::new("acme/main.json")
    );
    assert_eq!(
        document_path(Path::new("/c"), "acme", "main").unwrap(),
        Path::new("/c/acme/main.json")
    );
}

/// Every DID resolves to its own document, server and entry, also around servers and
/// documents without DIDs, and after a document in the middle is removed or replaced.
#[test]
fn every_did_resolves_to_its_owner() {
    let server = |ip: &str, dids: &[&str]| {
        let dids: serde_json::Map<String, Value> =
            dids.iter().map(|d| (d.to_string(), json!(null))).collect();
        json!({"auth": {"auth_method": "ip", "ip": ip}, "DIDs": dids})
    };
    let docs = [
        doc(
            "a",
            "one",
            json!({"servers": [server("10.0.0.1", &["+1201", "+1202"]), server("10.0.0.2", &[]), server("10.0.0.3", &["+1203"])]}),
        ),
        doc("a", "two", json!({"servers": []})),
        doc(
            "b",
            "three",
            json!({"servers": [server("10.0.0.4", &[]), server("10.0.0.5", &["+1204", "4155551234", "+123456789012345678901"])]}),
        ),
    ];
    let owners = |catalog: &Catalog| {
        let mut found = Vec::new();
        for d in catalog.documents() {
            for s in &d.servers {
                for did in &s.dids {
                    let m = catalog.did(&did.number).expect("indexed");
                    assert!(std::ptr::eq(m.did, did), "{}", did.number);
                    assert!(std::ptr::eq(m.server, s) && std::ptr::eq(m.document, &**d));
                    found.push(did.number.clone());
                }
            }
        }
        assert_eq!(catalog.summary().dids, found.len());
        found
    };
    let catalog = Catalog::build(settings(json!([])), docs.clone()).unwrap();
    assert_eq!(owners(&catalog).len(), 6);
    let catalog = catalog.remove("a", "one");
    assert_eq!(owners(&catalog).len(), 3);
    assert!(catalog.did("+1201").is_none());
    let catalog = catalog.replace(docs[0].clone()).unwrap();
    assert_eq!(owners(&catalog).len(), 6);
    assert_eq!(catalog.did("+14155551234").unwrap().document.id, "three");
}
