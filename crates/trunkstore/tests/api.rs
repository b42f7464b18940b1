//! The admin REST API of the real `trunkstore serve` binary, over a tiny HTTP/1.1 client
//! on std's TcpStream: every endpoint, verb and status code, the envelope, validation
//! errors, byte-identical files after a refused write, reload on directory edits and
//! SIGHUP, and crash safety under SIGKILL.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const ADMIN: &str = "admin-token-0123456789abcdef";
const ACME: &str = "acme-token-0123456789abcdef";
const WAIT: Duration = Duration::from_secs(15);

#[path = "../../../tests/e2e/ports.rs"]
mod ports;
use ports::free_port;

/// One PBX document: an IP-auth server at 127.0.0.1:`port` owning `dids`.
fn document(name: &str, port: u16, dids: &[&str]) -> Value {
    let dids: serde_json::Map<String, Value> =
        dids.iter().map(|d| (d.to_string(), json!({}))).collect();
    json!({
        "name": name,
        "servers": [{
            "name": format!("{name}-pbx"),
            "auth": {"auth_method": "IP", "ip": "127.0.0.1", "port": port},
            "options": {"inbound_format": "npan"},
            "DIDs": dids,
        }],
        "custom_field": {"kept": [1, 2, 3]},
    })
}

/// A response: status, headers (lower-case names) and body.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// One request on a fresh connection (`Connection: close`, body read to the end).
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    try_http(addr, method, path, headers, body)
        .unwrap_or_else(|| panic!("{method} {path}: no HTTP response from {addr}"))
}

/// As [`http`], `None` when the server is not there or closed without answering.
fn try_http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<Reply> {
    let mut s = TcpStream::connect_timeout(&addr, WAIT).ok()?;
    s.set_read_timeout(Some(WAIT)).ok()?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).ok()?;
    // A refused large body may close the connection before it is all sent.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    raw.windows(4)
        .any(|w| w == b"\r\n\r\n")
        .then(|| parse_reply(&raw))
}

fn parse_reply(raw: &[u8]) -> Reply {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .get("transfer-encoding")
        .is_some_and(|v| v == "chunked")
    {
        body = dechunk(&body);
    }
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&data[..eol]).unwrap().trim();
        let size = usize::from_str_radix(size, 16).unwrap();
        if size == 0 {
            break;
        }
        out.extend_from_slice(&data[eol + 2..eol + 2 + size]);
        data = &data[eol + 4 + size..];
    }
    out
}

/// The running binary over its own directory.
struct Server {
    child: Child,
    api: SocketAddr,
    metrics: Option<SocketAddr>,
    dir: PathBuf,
}

impl Server {
    /// Writes settings (two tokens: admin, acme-only) and starts `trunkstore serve`.
    fn start(dir: &Path, metrics: bool) -> Server {
        let port = free_port();
        let api = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let metrics = metrics.then(|| SocketAddr::from(([127, 0, 0, 1], free_port())));
        let addr = format!("127.0.0.1:{port}");
        let mut settings = json!({
            "listen": {"udp": [addr], "tcp": [addr]},
            "advertise": addr,
            "connectivity_dir": "connectivity",
            "shutdown_grace": 1,
            "workers": 1,
            "api": {"listen": api.to_string(), "tokens": [
                {"token": ADMIN},
                {"token": ACME, "account": "acme"},
            ]},
            "log": {"level": "info", "format": "text"},
        });
        if let Some(m) = metrics {
            settings["metrics"] = json!({"listen": m.to_string()});
        }
        fs::create_dir_all(dir.join("connectivity")).unwrap();
        let config = dir.join("trunkstore.json");
        fs::write(&config, serde_json::to_vec_pretty(&settings).unwrap()).unwrap();
        Server::spawn(dir, api, metrics)
    }

    /// Starts the binary on settings already written (a restart).
    fn spawn(dir: &Path, api: SocketAddr, metrics: Option<SocketAddr>) -> Server {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("proxy.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_trunkstore"))
            .args(["serve", "--config"])
            .arg(dir.join("trunkstore.json"))
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start trunkstore");
        let mut server = Server {
            child,
            api,
            metrics,
            dir: dir.to_path_buf(),
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + WAIT;
        while TcpStream::connect(self.api).is_err() {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "trunkstore exited ({status}) during startup:\n{}",
                    self.log()
                );
            }
            assert!(Instant::now() < deadline, "API not up:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.join("proxy.log")).unwrap_or_default()
    }

    fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<&Value>) -> Reply {
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(t) = token {
            headers.push(("X-Auth-Token", t));
        }
        let body = body
            .map(|b| serde_json::to_vec(b).unwrap())
            .unwrap_or_default();
        http(self.api, method, path, &headers, &body)
    }

    fn signal(&self, sig: i32) {
        // SAFETY: plain kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.child.id() as i32, sig) };
        assert_eq!(rc, 0, "kill failed");
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn write_doc(dir: &Path, account: &str, id: &str, value: &Value) {
    let d = dir.join("connectivity").join(account);
    fs::create_dir_all(&d).unwrap();
    fs::write(
        d.join(format!("{id}.json")),
        serde_json::to_vec_pretty(value).unwrap(),
    )
    .unwrap();
}

/// Every file under `dir` with its bytes.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.clone(), fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// A success envelope: status, request id, the echoed token, a revision.
fn assert_success(r: &Reply, status: u16, token: &str) -> Value {
    let body = r.json();
    assert_eq!(r.status, status, "{body}");
    assert_eq!(body["status"], "success", "{body}");
    assert_eq!(body["auth_token"], token, "{body}");
    assert!(
        body["request_id"].as_str().is_some_and(|s| !s.is_empty()),
        "{body}"
    );
    assert!(
        body["revision"].as_str().is_some_and(|s| !s.is_empty()),
        "{body}"
    );
    assert_eq!(
        r.headers.get("content-type").map(String::as_str),
        Some("application/json")
    );
    body
}

/// An error envelope with `"error": "<status>"` and a message.
fn assert_error(r: &Reply, status: u16) -> Value {
    let body = r.json();
    assert_eq!(r.status, status, "{body}");
    assert_eq!(body["status"], "error", "{body}");
    assert_eq!(body["error"], status.to_string(), "{body}");
    assert!(
        body["message"].as_str().is_some_and(|s| !s.is_empty()),
        "{body}"
    );
    assert!(
        body["request_id"].as_str().is_some_and(|s| !s.is_empty()),
        "{body}"
    );
    assert!(body.get("data").is_some(), "{body}");
    body
}

fn setup(metrics: bool) -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    write_doc(
        dir.path(),
        "acme",
        "main",
        &document("acme-main", 5071, &["+14155550100", "4155550101"]),
    );
    write_doc(
        dir.path(),
        "other",
        "theirs",
        &document("other", 5072, &["+14155550200"]),
    );
    let server = Server::start(dir.path(), metrics);
    (dir, server)
}

const ACME_LIST: &str = "/v2/accounts/acme/connectivity";

#[test]
fn authentication_and_authorisation() {
    let (_dir, s) = setup(false);
    let r = s.call("GET", ACME_LIST, None, None);
    assert_eq!(assert_error(&r, 401)["auth_token"], "");
    let r = s.call("GET", ACME_LIST, Some("wrong-token-0123456789abcdef"), None);
    // A rejected token is never echoed.
    assert_eq!(assert_error(&r, 401)["auth_token"], "");
    let r = s.call("GET", ACME_LIST, Some(&ACME[..ACME.len() - 1]), None);
    assert_error(&r, 401);
    let r = s.call("GET", "/v2/accounts/other/connectivity", Some(ACME), None);
    assert_error(&r, 403);
    let r = s.call(
        "GET",
        "/v2/accounts/other/connectivity/theirs",
        Some(ACME),
        None,
    );
    assert_error(&r, 403);
    let r = s.call(
        "DELETE",
        "/v2/accounts/other/connectivity/theirs",
        Some(ACME),
        None,
    );
    assert_error(&r, 403);
    let body = assert_success(&s.call("GET", ACME_LIST, Some(ACME), None), 200, ACME);
    assert_eq!(body["data"], json!(["main"]));
    let body = assert_success(
        &s.call("GET", "/v2/accounts/other/connectivity", Some(ADMIN), None),
        200,
        ADMIN,
    );
    assert_eq!(body["data"], json!(["theirs"]));
    // The registrar's bindings: the same tokens and grants (nothing registered here).
    let regs = "/v2/accounts/acme/registrations";
    assert_error(&s.call("GET", regs, None, None), 401);
    let r = s.call("GET", "/v2/accounts/other/registrations", Some(ACME), None);
    assert_error(&r, 403);
    let body = assert_success(&s.call("GET", regs, Some(ACME), None), 200, ACME);
    assert_eq!(body["data"], json!([]));
    // The token never reaches the log.
    assert!(!s.log().contains(ACME) && !s.log().contains(ADMIN));
}

#[test]
fn documents_crud_envelope_and_status_codes() {
    let (dir, s) = setup(false);
    let doc_path = |id: &str| {
        dir.path()
            .join("connectivity/acme")
            .join(format!("{id}.json"))
    };

    // GET one document: the stored JSON (unknown fields kept) plus its id.
    let got = assert_success(
        &s.call("GET", &format!("{ACME_LIST}/main"), Some(ACME), None),
        200,
        ACME,
    );
    assert_eq!(got["data"]["id"], "main");
    assert_eq!(got["data"]["custom_field"], json!({"kept": [1, 2, 3]}));
    let main_rev = got["revision"].as_str().unwrap().to_string();

    // PUT creates with a server-assigned id (envelope form).
    let new = document("created", 5073, &["+14155550300"]);
    let r = s.call("PUT", ACME_LIST, Some(ACME), Some(&json!({"data": new})));
    let created = assert_success(&r, 201, ACME);
    let id = created["data"]["id"].as_str().unwrap().to_string();
    assert!(
        id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{id}"
    );
    let on_disk: Value = serde_json::from_slice(&fs::read(doc_path(&id)).unwrap()).unwrap();
    assert_eq!(on_disk, new, "the file holds the document, without the id");
    // A bare document is accepted too.
    let bare = document("bare", 5074, &["+14155550400"]);
    let bare_id = assert_success(
        &s.call("PUT", ACME_LIST, Some(ADMIN), Some(&bare)),
        201,
        ADMIN,
    )["data"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let list = assert_success(&s.call("GET", ACME_LIST, Some(ACME), None), 200, ACME);
    let mut expected = vec![id.clone(), bare_id.clone(), "main".to_string()];
    expected.sort();
    assert_eq!(list["data"], json!(expected));

    // POST replaces; a stale revision is refused with 409 and changes nothing.
    let doc_url = format!("{ACME_LIST}/{id}");
    let mut changed = new.clone();
    changed["name"] = json!("renamed");
    let stale = json!({"data": changed, "revision": "0123456789abcdef01234567"});
    let before = fs::read(doc_path(&id)).unwrap();
    assert_error(&s.call("POST", &doc_url, Some(ACME), Some(&stale)), 409);
    assert_eq!(fs::read(doc_path(&id)).unwrap(), before);
    let fresh = json!({"data": changed, "revision": created["revision"]});
    let replaced = assert_success(
        &s.call("POST", &doc_url, Some(ACME), Some(&fresh)),
        200,
        ACME,
    );
    assert_eq!(replaced["data"]["name"], "renamed");
    assert_ne!(replaced["revision"], created["revision"]);
    // The old revision is now stale.
    assert_error(&s.call("POST", &doc_url, Some(ACME), Some(&fresh)), 409);

    // PATCH merges: null deletes a key, arrays are replaced, the rest is kept.
    let patch = json!({"data": {"custom_field": {"kept": [9]}, "name": null, "account": {"cid_name": "Acme"}}});
    let patched = assert_success(
        &s.call("PATCH", &doc_url, Some(ACME), Some(&patch)),
        200,
        ACME,
    );
    assert_eq!(patched["data"]["custom_field"], json!({"kept": [9]}));
    assert!(patched["data"].get("name").is_none());
    assert_eq!(patched["data"]["account"]["cid_name"], "Acme");
    assert_eq!(patched["data"]["servers"], new["servers"]);
    let r = s.call("GET", &doc_url, Some(ACME), None);
    assert_eq!(
        assert_success(&r, 200, ACME)["revision"],
        patched["revision"]
    );
    let r = s.call("GET", &format!("{ACME_LIST}/main"), Some(ACME), None);
    assert_eq!(assert_success(&r, 200, ACME)["revision"], main_rev.as_str());

    // DELETE, then the document is gone for every verb.
    let deleted = assert_success(&s.call("DELETE", &doc_url, Some(ACME), None), 200, ACME);
    assert_eq!(deleted["data"]["id"], id.as_str());
    assert!(!doc_path(&id).exists());
    for method in ["GET", "DELETE", "POST", "PATCH"] {
        let body = (method != "GET" && method != "DELETE").then_some(&new);
        assert_error(&s.call(method, &doc_url, Some(ACME), body), 404);
    }
    assert_error(
        &s.call(
            "GET",
            &format!("{ACME_LIST}/nothing-here"),
            Some(ACME),
            None,
        ),
        404,
    );

    // Other verbs: 405 with Allow.
    let r = s.call("DELETE", ACME_LIST, Some(ACME), None);
    assert_error(&r, 405);
    assert_eq!(r.headers.get("allow").map(String::as_str), Some("GET, PUT"));
    assert_error(&s.call("POST", ACME_LIST, Some(ACME), Some(&new)), 405);
    let r = s.call("PUT", &format!("{ACME_LIST}/main"), Some(ACME), Some(&new));
    assert_error(&r, 405);
    assert_eq!(
        r.headers.get("allow").map(String::as_str),
        Some("GET, POST, PATCH, DELETE")
    );
    // Unknown paths: 404.
    assert_error(&s.call("GET", "/v2/accounts/acme", Some(ACME), None), 404);
    assert_error(&s.call("GET", "/v1/whatever", Some(ACME), None), 404);
    // Unsafe ids: 400.
    assert_error(
        &s.call("GET", &format!("{ACME_LIST}/a.b"), Some(ACME), None),
        400,
    );
    assert_error(
        &s.call("GET", "/v2/accounts/a%2Fb/connectivity", Some(ADMIN), None),
        400,
    );

    // The client's X-Request-ID is echoed.
    let r = http(
        s.api,
        "GET",
        ACME_LIST,
        &[("X-Auth-Token", ACME), ("X-Request-ID", "req-42")],
        b"",
    );
    assert_eq!(r.json()["request_id"], "req-42");
    assert_eq!(
        r.headers.get("x-request-id").map(String::as_str),
        Some("req-42")
    );
    let _ = bare_id;
}

#[test]
fn refused_writes_leave_every_file_byte_identical() {
    let (dir, s) = setup(false);
    let before = tree(dir.path().join("connectivity").as_path());
    let main = format!("{ACME_LIST}/main");

    // Malformed JSON.
    let r = http(
        s.api,
        "POST",
        &main,
        &[("X-Auth-Token", ACME)],
        b"{\"name\": ",
    );
    let body = assert_error(&r, 400);
    assert!(
        body["data"]["message"]
            .as_str()
            .unwrap()
            .contains("malformed JSON"),
        "{body}"
    );
    let r = http(
        s.api,
        "PUT",
        ACME_LIST,
        &[("X-Auth-Token", ACME)],
        b"not json",
    );
    assert_error(&r, 400);

    // Field errors with their dotted paths, as `trunkstore check` reports them.
    let mut bad = document("bad", 5080, &["+14155550500"]);
    bad["servers"][0]["options"]["progress_timeout"] = json!(0);
    bad["servers"][0]["auth"]["auth_method"] = json!("telepathy");
    let body = assert_error(
        &s.call("POST", &main, Some(ACME), Some(&json!({"data": bad}))),
        400,
    );
    assert_eq!(
        body["data"]["servers.0.options.progress_timeout"]["minimum"]["target"], 1,
        "{body}"
    );
    assert!(
        body["data"]["servers.0.auth.auth_method"]
            .get("enum")
            .is_some(),
        "{body}"
    );
    let body = assert_error(
        &s.call("PUT", ACME_LIST, Some(ACME), Some(&json!({"data": bad}))),
        400,
    );
    assert!(
        body["data"]["servers.0.options.progress_timeout"]
            .get("minimum")
            .is_some(),
        "{body}"
    );
    // A PATCH that makes the document invalid.
    let patch = json!({"servers": [{"name": "x"}]});
    let body = assert_error(&s.call("PATCH", &main, Some(ACME), Some(&patch)), 400);
    assert!(
        body["data"]["servers.0.auth"].get("required").is_some(),
        "{body}"
    );
    // Not an object.
    assert_error(
        &s.call("PUT", ACME_LIST, Some(ACME), Some(&json!([1, 2]))),
        400,
    );

    // A DID claimed by another account's document: named, with both places.
    let stolen = document("thief", 5081, &["14155550200"]);
    let body = assert_error(&s.call("PUT", ACME_LIST, Some(ACME), Some(&stolen)), 400);
    let conflict = &body["data"]["servers.0.DIDs.14155550200"]["unique"];
    assert_eq!(conflict["target"]["account"], "other", "{body}");
    assert_eq!(conflict["target"]["document"], "theirs", "{body}");
    // Same with an IP-auth address already used elsewhere.
    let twin = document("twin", 5072, &["+14155550600"]);
    let body = assert_error(&s.call("POST", &main, Some(ACME), Some(&twin)), 400);
    assert!(
        body["data"]["servers.0.auth.ip"].get("unique").is_some(),
        "{body}"
    );
    // An id in the body that is not the URL's.
    let mut other_id = document("acme-main", 5071, &["+14155550100"]);
    other_id["id"] = json!("someone-else");
    assert_error(&s.call("POST", &main, Some(ACME), Some(&other_id)), 400);
    // Too large.
    let huge = vec![b' '; trunkstore_api_max_body() + 1];
    let r = http(s.api, "POST", &main, &[("X-Auth-Token", ACME)], &huge);
    assert_eq!(r.status, 413);

    assert_eq!(
        tree(dir.path().join("connectivity").as_path()),
        before,
        "a refused write changed files"
    );
    // And nothing changed in memory.
    let r = s.call("GET", &main, Some(ACME), None);
    assert_eq!(assert_success(&r, 200, ACME)["data"]["name"], "acme-main");
    assert_eq!(
        assert_success(&s.call("GET", ACME_LIST, Some(ACME), None), 200, ACME)["data"],
        json!(["main"])
    );
}

/// Issue 13 item 6: an account-scoped token cannot make a document point the proxy at a
/// carrier gateway, a carrier source or the proxy itself (`auth.ip`, `options.ip`,
/// `failover.sip` at server and DID level). Each write gets a 400 naming the field, and
/// nothing changes on disk or in memory.
#[test]
fn writes_pointing_at_a_carrier_or_the_proxy_are_refused() {
    let (dir, mut s) = setup(false);
    // Restart with a carrier whose gateway and source are on loopback (as in e2e tests).
    let config = dir.path().join("trunkstore.json");
    let mut settings: Value = serde_json::from_slice(&fs::read(&config).unwrap()).unwrap();
    let listen = settings["advertise"].as_str().unwrap().to_string();
    let gw_port = free_port();
    settings["carriers"] = json!([{"name": "c1",
        "gateways": [{"host": "127.0.0.1", "port": gw_port}],
        "sources": [format!("127.0.0.1:{gw_port}")]}]);
    fs::write(&config, serde_json::to_vec_pretty(&settings).unwrap()).unwrap();
    s.kill();
    let s = Server::spawn(dir.path(), s.api, None);

    let before = tree(dir.path().join("connectivity").as_path());
    let main = format!("{ACME_LIST}/main");
    let password = |options: Value| {
        json!({"servers": [{
            "auth": {"auth_method": "password", "auth_user": "free", "auth_password": "calls"},
            "options": options,
            "DIDs": {"+14155550400": {}},
        }]})
    };
    // `username` format and any auth_user: the very setup the issue describes.
    let at_gateway =
        password(json!({"ip": "127.0.0.1", "port": gw_port, "inbound_format": "username"}));
    let body = assert_error(
        &s.call("PUT", ACME_LIST, Some(ACME), Some(&at_gateway)),
        400,
    );
    let e = &body["data"]["servers.0.options.ip"]["forbidden_address"];
    assert_eq!(e["target"]["carrier"], "c1", "{body}");
    assert_eq!(e["value"], "127.0.0.1", "{body}");

    // A server-level failover to the proxy's own address, by POST over an existing one.
    let mut to_self = document("acme-main", 5071, &["+14155550100"]);
    to_self["servers"][0]["options"]["failover"] = json!({"sip": format!("sip:x@{listen}")});
    let body = assert_error(&s.call("POST", &main, Some(ACME), Some(&to_self)), 400);
    assert!(
        body["data"]["servers.0.options.failover.sip"]
            .get("forbidden_address")
            .is_some(),
        "{body}"
    );
    // A DID-level failover to the gateway, by PATCH.
    let patch = json!({"servers": [{
        "auth": {"auth_method": "IP", "ip": "127.0.0.1", "port": 5071},
        "DIDs": {"+14155550100": {"failover": {"sip": format!("sip:+14155550100@127.0.0.1:{gw_port}")}}},
    }]});
    let body = assert_error(&s.call("PATCH", &main, Some(ACME), Some(&patch)), 400);
    assert!(
        body["data"]["servers.0.DIDs.+14155550100.failover.sip"]
            .get("forbidden_address")
            .is_some(),
        "{body}"
    );

    assert_eq!(
        tree(dir.path().join("connectivity").as_path()),
        before,
        "a refused write changed files"
    );
    let got = assert_success(&s.call("GET", &main, Some(ACME), None), 200, ACME);
    assert_eq!(got["data"]["name"], "acme-main");
    assert!(
        got["data"]["servers"][0]["options"]
            .get("failover")
            .is_none(),
        "{got}"
    );
    assert_eq!(
        assert_success(&s.call("GET", ACME_LIST, Some(ACME), None), 200, ACME)["data"],
        json!(["main"])
    );
}

/// `trunkstore_api::MAX_BODY_BYTES` (the binary's crate is not a dependency of its tests).
fn trunkstore_api_max_body() -> usize {
    4 * 1024 * 1024
}

fn metric(page: &str, name: &str) -> Option<f64> {
    page.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn metrics_and_health_on_both_listeners() {
    let (_dir, s) = setup(true);
    for addr in [s.api, s.metrics.unwrap()] {
        let r = http(addr, "GET", "/health", &[], b"");
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["status"], "ok");
        let r = http(addr, "GET", "/metrics", &[], b"");
        assert_eq!(r.status, 200);
        assert!(r.headers["content-type"].starts_with("text/plain; version=0.0.4"));
        let page = String::from_utf8(r.body).unwrap();
        assert_eq!(metric(&page, "trunkstore_index_dids"), Some(3.0), "{page}");
        assert_eq!(metric(&page, "trunkstore_documents"), Some(2.0), "{page}");
        for name in [
            "trunkstore_active_calls",
            "trunkstore_server_transactions",
            "trunkstore_client_transactions",
        ] {
            assert!(metric(&page, name).is_some(), "{name} missing:\n{page}");
        }
        assert!(
            page.contains("# TYPE trunkstore_reloads_total counter"),
            "{page}"
        );
    }
    // The metrics listener serves nothing else.
    let r = http(
        s.metrics.unwrap(),
        "GET",
        ACME_LIST,
        &[("X-Auth-Token", ADMIN)],
        b"",
    );
    assert_eq!(r.status, 404);
    s.call("GET", ACME_LIST, None, None);
    let page = String::from_utf8(http(s.api, "GET", "/metrics", &[], b"").body).unwrap();
    assert!(
        page.contains("trunkstore_api_requests_total{method=\"GET\",code=\"401\"} 1"),
        "{page}"
    );
}

/// Waits until `check` holds, polling.
fn eventually(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn directory_edits_and_sighup_reload_keeping_the_last_good_index() {
    let (dir, s) = setup(false);
    let list = || s.call("GET", ACME_LIST, Some(ADMIN), None).json()["data"].clone();
    let dids = || {
        let page = String::from_utf8(http(s.api, "GET", "/metrics", &[], b"").body).unwrap();
        metric(&page, "trunkstore_index_dids").unwrap()
    };
    // A file added by hand is picked up by the watcher.
    write_doc(
        dir.path(),
        "acme",
        "by-hand",
        &document("hand", 5090, &["+14155550700"]),
    );
    eventually("hand-written document live", Duration::from_secs(5), || {
        list() == json!(["by-hand", "main"])
    });
    assert_eq!(dids(), 4.0);

    // An invalid edit is refused (logged), the previous index stays.
    let invalid = json!({"servers": [{"name": "no-auth", "DIDs": {"+14155550800": {}}}]});
    write_doc(dir.path(), "acme", "broken", &invalid);
    eventually("refusal logged", Duration::from_secs(5), || {
        s.log().contains("reload refused")
    });
    assert!(s.log().contains("servers.0.auth"), "{}", s.log());
    assert_eq!(list(), json!(["by-hand", "main"]));
    assert_eq!(dids(), 4.0);
    // API writes still work meanwhile, against the last good configuration.
    let r = s.call(
        "PUT",
        ACME_LIST,
        Some(ADMIN),
        Some(&document("api", 5091, &["+14155550900"])),
    );
    assert_success(&r, 201, ADMIN);

    // Fixed by hand (a rename over the file, as git does), then deleted: both followed.
    fs::remove_file(dir.path().join("connectivity/acme/broken.json")).unwrap();
    fs::remove_file(dir.path().join("connectivity/acme/by-hand.json")).unwrap();
    eventually("deletion followed", Duration::from_secs(5), || {
        dids() == 4.0 && list().as_array().unwrap().len() == 2
    });

    // SIGHUP re-reads everything (and does not stop the process).
    write_doc(
        dir.path(),
        "acme",
        "via-signal",
        &document("sig", 5092, &["+14155551000"]),
    );
    s.signal(libc::SIGHUP);
    eventually("SIGHUP reload", Duration::from_secs(5), || {
        list().as_array().unwrap().len() == 3
    });
    assert!(s.log().contains("SIGHUP"), "{}", s.log());
    let r = http(s.api, "GET", "/health", &[], b"");
    assert_eq!(r.status, 200);
}

/// SIGKILL at 200 random points of a stream of API writes: every document file left is
/// complete and valid (the temp files of interrupted writes are hidden and ignored), and
/// the proxy restarts on it.
#[test]
fn sigkill_during_writes_never_leaves_a_torn_document() {
    let dir = tempfile::tempdir().unwrap();
    write_doc(
        dir.path(),
        "acme",
        "main",
        &document("acme-main", 5071, &["+14155550100"]),
    );
    let first = Server::start(dir.path(), false);
    let api = first.api;
    drop(first);
    let started = Instant::now();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut writes_acknowledged = 0u64;
    for round in 0..200u64 {
        let mut server = Server::spawn(dir.path(), api, None);
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let stop = stop.clone();
            std::thread::spawn(move || write_stream(api, round, &stop))
        };
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_micros(seed % 60_000));
        server.kill();
        stop.store(true, Ordering::Relaxed);
        writes_acknowledged += writer.join().unwrap();
        check_documents(&dir.path().join("connectivity"));
    }
    assert!(
        writes_acknowledged > 200,
        "too few writes reached the server: {writes_acknowledged}"
    );
    eprintln!(
        "200 kills, {writes_acknowledged} acknowledged writes, {:?}",
        started.elapsed()
    );
}

/// Writes as fast as possible until stopped or the server dies: replace `main` (an
/// existing file renamed over), create a document, delete it. Returns how many writes
/// were acknowledged.
fn write_stream(api: SocketAddr, round: u64, stop: &AtomicBool) -> u64 {
    let auth = [("X-Auth-Token", ADMIN)];
    let mut done = 0;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let serial = round * 10_000 + n;
        let did = format!("+1415{:07}", 1_000_000 + serial % 8_000_000);
        // Big enough that a write takes several syscalls.
        let mut doc = document("stream", 1024 + (serial % 28_000) as u16, &[did.as_str()]);
        doc["padding"] = json!("x".repeat(16 * 1024 + (serial % 1000) as usize));
        let body = serde_json::to_vec(&doc).unwrap();
        let main = "/v2/accounts/acme/connectivity/main";
        let Some(r) = try_http(api, "POST", main, &auth, &body) else {
            break;
        };
        done += u64::from(r.status == 200);
        let new_did = format!("+1628{:07}", 1_000_000 + serial % 8_000_000);
        let new = document(
            "new",
            30_000 + (serial % 30_000) as u16,
            &[new_did.as_str()],
        );
        let new = serde_json::to_vec(&new).unwrap();
        let Some(r) = try_http(api, "PUT", ACME_LIST, &auth, &new) else {
            break;
        };
        if r.status != 201 {
            continue;
        }
        done += 1;
        let id = r.json()["data"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let url = format!("{ACME_LIST}/{id}");
        let Some(r) = try_http(api, "DELETE", &url, &auth, b"") else {
            break;
        };
        done += u64::from(r.status == 200);
    }
    done
}

/// Every visible document file parses and validates; leftovers are hidden temp files.
fn check_documents(dir: &Path) {
    for account in fs::read_dir(dir).unwrap() {
        let account = account.unwrap();
        let account_name = account.file_name().to_string_lossy().into_owned();
        for f in fs::read_dir(account.path()).unwrap() {
            let f = f.unwrap();
            let name = f.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let bytes = fs::read(f.path()).unwrap();
            let value: Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                panic!(
                    "torn document {}: {e} ({} bytes)",
                    f.path().display(),
                    bytes.len()
                )
            });
            let id = name.strip_suffix(".json").unwrap();
            if let Err(e) = trunkstore_config::validate_document(&account_name, id, &value) {
                panic!("invalid document {}: {e}", f.path().display());
            }
        }
    }
}
