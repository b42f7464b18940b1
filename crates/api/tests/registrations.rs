//! `GET /v2/accounts/{account}/registrations` of a real [`Api`] on a loopback port, over a
//! fake [`RegistrationSource`] (the proxy's registrar is wired in by the binary): listing,
//! the envelope, authentication and authorisation exactly as for the connectivity list,
//! 405 for other verbs, and an empty list when no registrar is wired in.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use trunkstore_api::{Api, ApiOptions, RegistrationSource, RegistrationView, Store};
use trunkstore_config::{Catalog, Settings};
use trunkstore_routing::{Router, Snapshot};

const ADMIN: &str = "admin-token-0123456789abcdef";
const ACME: &str = "acme-token-0123456789abcdef";
const WAIT: Duration = Duration::from_secs(15);

/// Two bindings for `acme`, none for anyone else; remembers every account asked for.
#[derive(Default)]
struct FakeRegistrar {
    asked: Mutex<Vec<String>>,
}

fn acme_bindings() -> Vec<RegistrationView> {
    vec![
        RegistrationView {
            server: "acme-pbx".into(),
            aor: "pbx100@acme.example".into(),
            contact: "sip:pbx100@192.168.1.10:5060".into(),
            source: "udp:127.0.0.7:5060".into(),
            transport: "udp".into(),
            user_agent: Some("Asterisk PBX 20.5.0".into()),
            expires_in: 3542,
            nat: true,
        },
        RegistrationView {
            server: "acme-pbx".into(),
            aor: "pbx100@acme.example".into(),
            contact: "sip:pbx100@127.0.0.8:5070;transport=tcp".into(),
            source: "tcp:127.0.0.8:5070".into(),
            transport: "tcp".into(),
            user_agent: None,
            expires_in: 60,
            nat: false,
        },
    ]
}

impl RegistrationSource for FakeRegistrar {
    fn registrations(&self, account: &str) -> Vec<RegistrationView> {
        self.asked.lock().unwrap().push(account.to_string());
        if account == "acme" {
            acme_bindings()
        } else {
            Vec::new()
        }
    }
}

/// An API on 127.0.0.1:<free port> with an admin token and an acme-only token.
fn start(registrations: Option<Arc<dyn RegistrationSource>>) -> (tempfile::TempDir, Api) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("connectivity")).unwrap();
    let value = json!({
        "connectivity_dir": "connectivity",
        "api": {"listen": "127.0.0.1:0", "tokens": [
            {"token": ADMIN},
            {"token": ACME, "account": "acme"},
        ]},
    });
    let settings = Arc::new(Settings::from_value(&value, dir.path()).expect("valid settings"));
    let catalog = Catalog::build(settings.clone(), Vec::new()).expect("empty catalog");
    let router = Arc::new(Router::new(Snapshot::build(&catalog)));
    let api = Api::start(ApiOptions {
        store: Arc::new(Store::new(catalog, router)),
        settings,
        sources: Vec::new(),
        healthy: Box::new(|| true),
        watch_interval: None,
        registrations,
    })
    .expect("API starts");
    (dir, api)
}

/// One request on a fresh connection: status, `Allow` header, JSON body.
fn call(api: &Api, method: &str, path: &str, token: Option<&str>) -> (u16, Option<String>, Value) {
    let addr: SocketAddr = api.local_addrs()[0];
    let mut s = TcpStream::connect_timeout(&addr, WAIT).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n"
    );
    if let Some(t) = token {
        head.push_str(&format!("X-Auth-Token: {t}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .expect("a complete HTTP response");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let allow = head
        .split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("allow"))
        .map(|(_, v)| v.trim().to_string());
    let body = serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    (status, allow, body)
}

fn assert_success(status: u16, body: &Value, token: &str) {
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "success", "{body}");
    assert_eq!(body["auth_token"], token, "{body}");
    assert!(body["request_id"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(body["revision"].as_str().is_some_and(|s| !s.is_empty()));
}

fn assert_error(status: u16, body: &Value, expected: u16) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["status"], "error", "{body}");
    assert_eq!(body["error"], expected.to_string(), "{body}");
    assert!(body["message"].as_str().is_some_and(|s| !s.is_empty()));
}

const ACME_REGS: &str = "/v2/accounts/acme/registrations";

#[test]
fn lists_the_accounts_bindings_in_the_envelope() {
    let fake = Arc::new(FakeRegistrar::default());
    let (_dir, api) = start(Some(fake.clone()));
    let expected = json!([
        {
            "server": "acme-pbx",
            "aor": "pbx100@acme.example",
            "contact": "sip:pbx100@192.168.1.10:5060",
            "source": "udp:127.0.0.7:5060",
            "transport": "udp",
            "user_agent": "Asterisk PBX 20.5.0",
            "expires_in": 3542,
            "nat": true,
        },
        {
            "server": "acme-pbx",
            "aor": "pbx100@acme.example",
            "contact": "sip:pbx100@127.0.0.8:5070;transport=tcp",
            "source": "tcp:127.0.0.8:5070",
            "transport": "tcp",
            "user_agent": null,
            "expires_in": 60,
            "nat": false,
        },
    ]);
    for token in [ACME, ADMIN] {
        let (status, _, body) = call(&api, "GET", ACME_REGS, Some(token));
        assert_success(status, &body, token);
        assert_eq!(body["data"], expected);
    }
    // An account without bindings (known or not): an empty list, like the connectivity list.
    let (status, _, body) = call(&api, "GET", "/v2/accounts/other/registrations", Some(ADMIN));
    assert_success(status, &body, ADMIN);
    assert_eq!(body["data"], json!([]));
    assert_eq!(*fake.asked.lock().unwrap(), ["acme", "acme", "other"]);
    api.stop();
}

#[test]
fn refused_without_a_valid_token_or_for_another_account() {
    let fake = Arc::new(FakeRegistrar::default());
    let (_dir, api) = start(Some(fake.clone()));
    let (status, _, body) = call(&api, "GET", ACME_REGS, None);
    assert_error(status, &body, 401);
    assert_eq!(body["auth_token"], "");
    let (status, _, body) = call(&api, "GET", ACME_REGS, Some("wrong-token-0123456789abcdef"));
    assert_error(status, &body, 401);
    // A rejected token is never echoed.
    assert_eq!(body["auth_token"], "");
    // The acme token may not see another account's bindings, whether it has any or not.
    for other in ["other", "nobody"] {
        let path = format!("/v2/accounts/{other}/registrations");
        let (status, _, body) = call(&api, "GET", &path, Some(ACME));
        assert_error(status, &body, 403);
        assert_eq!(
            body["data"]["message"],
            "this token may not access this account"
        );
    }
    // A bad account id, once the caller may see it: 400 as for connectivity.
    let (status, _, body) = call(&api, "GET", "/v2/accounts/a.b/registrations", Some(ADMIN));
    assert_error(status, &body, 400);
    // Nothing was read from the registrar for a refused request.
    assert!(fake.asked.lock().unwrap().is_empty());
    api.stop();
}

#[test]
fn read_only_other_verbs_are_405() {
    let (_dir, api) = start(Some(Arc::new(FakeRegistrar::default())));
    for method in ["PUT", "POST", "PATCH", "DELETE"] {
        let (status, allow, body) = call(&api, method, ACME_REGS, Some(ADMIN));
        assert_error(status, &body, 405);
        assert_eq!(allow.as_deref(), Some("GET"), "{method}");
    }
    // No document below the collection.
    let (status, _, body) = call(&api, "GET", &format!("{ACME_REGS}/x"), Some(ADMIN));
    assert_error(status, &body, 404);
    api.stop();
}

#[test]
fn empty_list_without_a_registrar() {
    let (_dir, api) = start(None);
    for token in [ACME, ADMIN] {
        let (status, _, body) = call(&api, "GET", ACME_REGS, Some(token));
        assert_success(status, &body, token);
        assert_eq!(body["data"], json!([]));
    }
    // Authorisation still applies.
    let (status, _, body) = call(&api, "GET", "/v2/accounts/other/registrations", Some(ACME));
    assert_error(status, &body, 403);
    let (status, _, body) = call(&api, "GET", ACME_REGS, None);
    assert_error(status, &body, 401);
    api.stop();
}
