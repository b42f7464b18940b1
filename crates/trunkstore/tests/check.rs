//! End-to-end tests of `trunkstore check` on the real binary.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn trunkstore(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trunkstore"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run trunkstore")
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn shipped_config_passes_with_the_default_path() {
    let out = trunkstore(&["check"], &repo_root());
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "accounts:  2",
        "documents: 3",
        "password",
        "ip",
        "disabled",
        "DIDs:",
        "carriers:  1",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    // The summary never shows secrets from the shipped files.
    for secret in [
        "change-me-admin-token",
        "hq-secret-change-me",
        "lab-secret-change-me",
    ] {
        assert!(!text.contains(secret), "leaked {secret}");
    }
}

#[test]
fn explicit_config_path() {
    let cfg = repo_root().join("config/trunkstore.json");
    let out = trunkstore(
        &["check", "--config", cfg.to_str().unwrap()],
        Path::new("/"),
    );
    assert!(out.status.success(), "{}", stdout(&out));
}

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

#[test]
fn broken_documents_list_every_error_with_file_and_path() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(
        &root.join("trunkstore.json"),
        r#"{"connectivity_dir": "conn",
            "carriers": [{"name": "c", "gateways": [{"host": "127.0.0.1", "port": 5070}], "sources": ["127.0.0.1:5070"]}]}"#,
    );
    write(
        &root.join("conn/acme/main.json"),
        r#"{"servers": [
             {"auth": {"auth_method": "password", "auth_user": "u", "auth_password": "topsecret\n"},
              "options": {"progress_timeout": 0, "sip_headers": {"X-A": "a\r\nVia: x"}},
              "DIDs": {"+14155551234": {}}},
             {"auth": {"auth_method": "ip"}}
           ]}"#,
    );
    write(&root.join("conn/acme/syntax.json"), "{\"servers\": [");
    write(
        &root.join("conn/globex/trunk.json"),
        r#"{"servers": [{"auth": {"auth_method": "ip", "ip": "127.0.0.9"}, "DIDs": {"4155551234": {}}}]}"#,
    );
    let out = trunkstore(&["check", "--config", "trunkstore.json"], root);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let expected = [
        "conn/acme/main.json: servers.0.auth.auth_password: forbidden_characters:",
        "conn/acme/main.json: servers.0.options.progress_timeout: minimum: Value must be at least 1 (value 0)",
        "conn/acme/main.json: servers.0.options.sip_headers.X-A: forbidden_characters:",
        "conn/acme/main.json: servers.1.auth.ip: required:",
        "conn/acme/syntax.json: (document): format: invalid JSON",
    ];
    for line in expected {
        assert!(
            text.lines().any(|l| l.contains(line)),
            "missing {line:?} in\n{text}"
        );
    }
    // The DID conflict is only found once main.json is valid; all file errors come first.
    assert!(!text.contains("topsecret"), "password leaked:\n{text}");
    assert_eq!(text.lines().count(), 5, "{text}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("5 error(s)"));

    // Fix main.json's own errors: now the cross-document conflict shows, naming both.
    write(
        &root.join("conn/acme/main.json"),
        r#"{"servers": [{"auth": {"auth_method": "ip", "ip": "127.0.0.1", "port": 5070}, "DIDs": {"+14155551234": {}}}]}"#,
    );
    fs::remove_file(root.join("conn/acme/syntax.json")).unwrap();
    let out = trunkstore(&["check", "--config", "trunkstore.json"], root);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("conn/acme/main.json: servers.0.auth.ip: unique: IP-auth address 127.0.0.1:5070 is covered by source 127.0.0.1:5070 of carrier 'c'"), "{text}");
    assert!(text.contains("conn/globex/trunk.json: servers.0.DIDs.4155551234: unique: DID +14155551234 is already claimed by account 'acme', document 'main', servers.0.DIDs.+14155551234"), "{text}");
}

#[test]
fn broken_settings_file() {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("s.json"),
        r#"{"listen": {"udp": ["nope"]}, "timer": {}, "api": {"tokens": [{"token": "short"}]}}"#,
    );
    let out = trunkstore(&["check", "--config", "s.json"], dir.path());
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(text.contains("s.json: listen.udp.0: format:"), "{text}");
    assert!(
        text.contains("s.json: timer: additionalProperties:"),
        "{text}"
    );
    assert!(
        text.contains("s.json: api.tokens.0.token: minLength:"),
        "{text}"
    );
    assert!(!text.contains("short\""), "token leaked: {text}");
    let out = trunkstore(&["check", "--config", "missing.json"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("missing.json: (document): io:"));
}

// `serve` exists now: its end-to-end tests are in tests/serve.rs.
