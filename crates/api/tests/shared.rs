//! The REST API with documents in Redis (`cluster.store: "redis"`), two nodes on one real
//! `redis-server`, neither following the change stream: what each node commits is decided
//! by Redis's conditional script, never by a node's possibly old view.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use trunkstore_api::{Api, ApiOptions, SharedDocuments, Store};
use trunkstore_cluster::{Documents, Redis};
use trunkstore_config::Settings;
use trunkstore_routing::{Router, Snapshot};
use trunkstore_testkit::Redis as RedisServer;

const ADMIN: &str = "admin-token-0123456789abcdef";
const WAIT: Duration = Duration::from_secs(15);
const LIST: &str = "/v2/accounts/acme/connectivity";

/// One node: its API over a store in Redis (no follower: its view only moves when a
/// write of its own finds Redis elsewhere).
struct Node {
    _dir: tempfile::TempDir,
    api: Api,
}

fn node(runtime: &tokio::runtime::Runtime, redis_port: u16, name: &str) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let value = json!({
        "connectivity_dir": "connectivity",
        "api": {"listen": "127.0.0.1:0", "tokens": [{"token": ADMIN}]},
        "cluster": {
            "node_id": name,
            "redis": [format!("redis://127.0.0.1:{redis_port}")],
            "secret": "0123456789abcdef",
            "store": "redis",
        },
    });
    let settings = Arc::new(Settings::from_value(&value, dir.path()).expect("valid settings"));
    let cluster = settings.cluster.clone().unwrap();
    let (documents, stored) = runtime.block_on(async {
        let d = Documents::new(Redis::connect(&cluster).await.unwrap());
        let stored = d.load().await.unwrap();
        (d, stored)
    });
    let catalog = trunkstore_api::shared::catalog_from(settings.clone(), &stored).unwrap();
    let router = Arc::new(Router::new(Snapshot::build(&catalog)));
    let shared = SharedDocuments::new(documents, runtime.handle().clone());
    let store = Store::shared(catalog, router, shared, stored.revision);
    let api = Api::start(ApiOptions {
        store: Arc::new(store),
        settings,
        sources: Vec::new(),
        healthy: Box::new(|| true),
        watch_interval: None,
        registrations: None,
    })
    .expect("API starts");
    Node { _dir: dir, api }
}

/// One request with a JSON body: status and JSON body.
fn call(node: &Node, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let addr: SocketAddr = node.api.local_addrs()[0];
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut s = TcpStream::connect_timeout(&addr, WAIT).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nX-Auth-Token: {ADMIN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes()).unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("complete response");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// A document with one IP-auth server (`port`) claiming `did`.
fn document(name: &str, port: u16, did: &str) -> Value {
    json!({"data": {
        "name": name,
        "servers": [{
            "name": "pbx",
            "auth": {"auth_method": "IP", "ip": "127.0.0.1", "port": port},
            "DIDs": {did: {}},
        }],
    }})
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_did_claimed_on_two_nodes_at_once_is_committed_once() {
    let server = RedisServer::start(&[]);
    let rt = runtime();
    let a = node(&rt, server.port, "a");
    let b = node(&rt, server.port, "b");
    let (status, body) = call(
        &a,
        "PUT",
        LIST,
        Some(document("first", 5061, "+14155550123")),
    );
    assert_eq!(status, 201, "{body}");
    // B never saw A's document: its own view says the DID is free. Redis refuses the
    // write (validated against an older global revision), B catches up, validates again
    // and finds the DID taken.
    let (status, body) = call(
        &b,
        "PUT",
        LIST,
        Some(document("second", 5062, "+14155550123")),
    );
    assert_eq!(status, 400, "{body}");
    let (_, list) = call(&b, "GET", LIST, None);
    assert_eq!(list["data"].as_array().map(Vec::len), Some(1), "{list}");
    let stored = rt.block_on(async {
        let cluster = trunkstore_config::Cluster {
            node_id: "t".into(),
            redis: vec![format!("redis://127.0.0.1:{}", server.port)],
            password: None,
            username: None,
            tls_ca_file: None,
            key_prefix: "trunkstore:".into(),
            lease_secs: 15,
            timeout_ms: 500,
            store: trunkstore_config::DocumentStore::Redis,
            secret: trunkstore_config::Secret::new("0123456789abcdef"),
        };
        let d = Documents::new(Redis::connect(&cluster).await.unwrap());
        d.load().await.unwrap()
    });
    assert_eq!(stored.documents.len(), 1);
    assert!(stored.documents[0].json.contains("first"));
}

#[test]
fn revisions_mean_the_same_on_every_node() {
    let server = RedisServer::start(&[]);
    let rt = runtime();
    let a = node(&rt, server.port, "a");
    let b = node(&rt, server.port, "b");
    let (status, created) = call(&a, "PUT", LIST, Some(document("one", 5061, "+14155550001")));
    assert_eq!(status, 201, "{created}");
    let id = created["data"]["id"].as_str().unwrap().to_string();
    let path = format!("{LIST}/{id}");
    let rev = created["revision"].as_str().unwrap().to_string();

    // A stale revision on B: 409 with the current one, as with files.
    let mut stale = document("two", 5061, "+14155550001");
    stale["revision"] = json!("0123456789abcdef01234567");
    let (status, body) = call(&b, "POST", &path, Some(stale));
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["data"]["revision"], json!(rev));

    // The revision A gave is good on B, though B had not seen the document.
    let mut next = document("two", 5061, "+14155550001");
    next["revision"] = json!(rev);
    let (status, body) = call(&b, "POST", &path, Some(next));
    assert_eq!(status, 200, "{body}");
    let rev2 = body["revision"].as_str().unwrap().to_string();

    // A (behind now) deletes with B's revision.
    let (status, body) = call(&a, "DELETE", &path, Some(json!({"revision": rev})));
    assert_eq!(status, 409, "A's own old revision is stale: {body}");
    let (status, body) = call(&a, "DELETE", &path, Some(json!({"revision": rev2})));
    assert_eq!(status, 200, "{body}");
    let (status, _) = call(
        &b,
        "PUT",
        LIST,
        Some(document("three", 5061, "+14155550001")),
    );
    assert_eq!(
        status, 201,
        "B sees the delete through its write's catch-up"
    );
}
