//! Documents across nodes (issue 18, behaviour.md §9 "Documents"): two real
//! `trunkstore serve` nodes with `cluster.store: "redis"` and a real `redis-server`
//! started by the test (with an append-only file, so a restart keeps what was written).
//!
//! One scenario, in order: `trunkstore import` fills Redis and `trunkstore export` gives
//! the same documents back; a document written through node A's API routes a call on
//! node B within 1 s; a document written while node B is stopped routes on B once it is
//! started again; with Redis stopped an API write gets 503 and nothing changes; with
//! Redis back, writes work again and reach B.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::api::{http, new_document, settings_extra, Probe};
use crate::config::{settings_json, ProxySetup};
use crate::harness::{free_port, Proc, TestDir};
use crate::proxy::Proxy;
use trunkstore_testkit::Redis;

/// A change must be live on every node within this (behaviour.md §9).
const FOLLOW_LIMIT: Duration = Duration::from_secs(1);
const LIST: &str = "/v2/accounts/e2e/connectivity";

/// `redis-server` on `port` with its data (an append-only file, synced at every write) in
/// `dir`, so a restart keeps what was written.
fn redis_server(dir: &TestDir, port: u16) -> Redis {
    Redis::start_in(
        dir.path(),
        port,
        &["--appendonly", "yes", "--appendfsync", "always"],
    )
}

/// One node: its own directory (its logs), ports and settings.
struct Node {
    dir: TestDir,
    setup: ProxySetup,
    settings: std::path::PathBuf,
}

impl Node {
    fn new(name: &str, node_id: &str, redis_port: u16, probe_carrier: u16) -> Node {
        let dir = TestDir::new(name);
        let mut setup = ProxySetup {
            port: free_port(),
            carrier_port: free_port(),
            api_port: free_port(),
            extra: serde_json::Map::new(),
        };
        setup.extra = settings_extra(&setup, probe_carrier);
        setup.extra.insert(
            "cluster".into(),
            json!({
                "node_id": node_id,
                "redis": [format!("redis://127.0.0.1:{redis_port}")],
                "secret": "e2e-cluster-secret-0123456789",
                "key_prefix": "e2e:",
                "store": "redis",
            }),
        );
        let settings = dir.file("trunkstore.json");
        let text = serde_json::to_string_pretty(&settings_json(&setup)).unwrap();
        fs::write(&settings, text).unwrap();
        Node {
            dir,
            setup,
            settings,
        }
    }

    fn start(&self) -> Proxy {
        Proxy::start(&self.dir, &self.settings, &self.setup)
    }

    /// `trunkstore <args> <path> --config <settings>`: (exit success, stdout + stderr).
    fn cli(&self, args: &[&str], path: &Path) -> (bool, String) {
        self.run(&[args, &[path.to_str().unwrap()]].concat())
    }

    /// `trunkstore <args> --config <settings>`: (exit success, stdout + stderr).
    fn run(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_trunkstore"))
            .args(args)
            .arg("--config")
            .arg(&self.settings)
            .output()
            .expect("run trunkstore");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }
}

/// The documents under `dir` as `account/file → JSON`, for comparing two directories.
fn documents_in(dir: &Path) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for account in fs::read_dir(dir).unwrap() {
        let account = account.unwrap();
        for file in fs::read_dir(account.path()).unwrap() {
            let file = file.unwrap();
            let name = format!(
                "{}/{}",
                account.file_name().to_string_lossy(),
                file.file_name().to_string_lossy()
            );
            let value = serde_json::from_slice(&fs::read(file.path()).unwrap()).unwrap();
            out.push((name, value));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Polls node `api`'s `GET path` until `want(status)` or the limit; returns how long.
fn until(
    api: u16,
    path: &str,
    limit: Duration,
    want: impl Fn(u16) -> bool,
) -> Result<Duration, String> {
    let start = Instant::now();
    loop {
        let (status, _) = http(api, "GET", path, None)?;
        if want(status) {
            return Ok(start.elapsed());
        }
        if start.elapsed() > limit {
            return Err(format!("GET {path}: still {status} after {limit:?}"));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// PUT a new document through `api`; its id.
fn create(api: u16, doc: &Value) -> Result<String, String> {
    let (status, body) = http(api, "PUT", LIST, Some(&json!({"data": doc})))?;
    if status != 201 {
        return Err(format!("PUT {status}: {body}"));
    }
    Ok(body["data"]["id"].as_str().ok_or("no id")?.to_string())
}

#[test]
fn documents_follow_across_two_nodes() {
    let redis_dir = TestDir::new("cluster-docs-redis");
    let mut redis = redis_server(&redis_dir, free_port());
    let probe_carrier = free_port();
    let a = Node::new("cluster-docs-a", "edge-a", redis.port, probe_carrier);
    let b = Node::new("cluster-docs-b", "edge-b", redis.port, probe_carrier);

    // import, then export: the same documents.
    let import = a.dir.path().join("import");
    fs::create_dir_all(import.join("e2e")).unwrap();
    let imported = json!({
        "name": "imported",
        "servers": [{
            "name": "imported-pbx",
            "auth": {"auth_method": "IP", "ip": "127.0.0.1", "port": free_port()},
            "DIDs": {"+14155550100": {}},
        }],
    });
    fs::write(import.join("e2e/imported.json"), imported.to_string()).unwrap();
    let (ok, out) = a.cli(&["import", "--from"], &import);
    assert!(ok, "import: {out}");
    let export = a.dir.path().join("export");
    let (ok, out) = a.cli(&["export", "--to"], &export);
    assert!(ok, "export: {out}");
    assert_eq!(documents_in(&export), documents_in(&import));
    // `check` validates what the nodes will load: the documents in Redis.
    let (ok, out) = a.run(&["check"]);
    assert!(ok, "check: {out}");
    assert!(
        out.contains("connectivity: Redis (global revision"),
        "{out}"
    );
    assert!(
        out.contains("1 documents"),
        "check read the files, not Redis: {out}"
    );
    // An invalid directory imports nothing (a DID claimed by two documents).
    let bad = a.dir.path().join("bad");
    fs::create_dir_all(bad.join("e2e")).unwrap();
    fs::write(bad.join("e2e/imported.json"), imported.to_string()).unwrap();
    let mut twin = imported.clone();
    twin["servers"][0]["auth"]["port"] = json!(free_port());
    fs::write(bad.join("e2e/twin.json"), twin.to_string()).unwrap();
    let (ok, out) = a.cli(&["import", "--from"], &bad);
    assert!(!ok && out.contains("nothing imported"), "bad import: {out}");

    let node_a = a.start();
    let node_b = b.start();
    let pbx_ports = [free_port(), free_port()];
    let probe = Probe::new(b.setup.port, probe_carrier, pbx_ports);
    let (api_a, api_b) = (a.setup.api_port, b.setup.api_port);
    let result = (|| -> Result<(), String> {
        until(api_b, &format!("{LIST}/imported"), FOLLOW_LIMIT, |s| {
            s == 200
        })?;

        // Written through A, routing on B within a second.
        let (doc, dids) = new_document(1, pbx_ports[0]);
        let id = create(api_a, &doc)?;
        let took = until(api_b, &format!("{LIST}/{id}"), FOLLOW_LIMIT, |s| s == 200)?;
        eprintln!("a document written on A was live on B after {took:?}");
        let got = probe.call(&dids[0], 1, Some(0))?;
        if got != 486 {
            return Err(format!("DID written on A got {got} through B"));
        }
        Ok(())
    })();
    let mut node_b = match result {
        Ok(()) => Some(node_b),
        Err(e) => panic!("{e}{}{}", node_a.log(), node_b.log()),
    };

    // Written while B is stopped: B loads it when it starts again.
    node_b.take().unwrap().stop().expect("B stops");
    let (doc, dids) = new_document(2, pbx_ports[1]);
    let id2 = create(api_a, &doc).unwrap_or_else(|e| panic!("{e}{}", node_a.log()));
    let node_b = b.start();
    let got = probe.call(&dids[1], 2, Some(1));
    assert_eq!(got, Ok(486), "after B restarted{}", node_b.log());
    let (status, _) = http(api_b, "GET", &format!("{LIST}/{id2}"), None).unwrap();
    assert_eq!(status, 200);

    // Redis stopped: 503 with a clear body, nothing changed.
    let (_, before_a) = http(api_a, "GET", LIST, None).unwrap();
    redis.stop();
    let (doc, _) = new_document(3, free_port());
    let (status, body) = http(api_a, "PUT", LIST, Some(&json!({"data": doc}))).unwrap();
    assert_eq!(status, 503, "{body}{}", node_a.log());
    let message = body["data"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("Redis"), "{body}");
    let (_, after_a) = http(api_a, "GET", LIST, None).unwrap();
    assert_eq!(before_a["data"], after_a["data"], "A's documents changed");
    let (ok, out) = a.run(&["check"]);
    assert!(
        !ok && out.contains("cannot read the documents from Redis"),
        "check: {out}"
    );
    redis.restart();
    let check = a.dir.path().join("after-outage");
    let (ok, out) = a.cli(&["export", "--to"], &check);
    assert!(ok, "export after the outage: {out}");
    let names: Vec<String> = documents_in(&check).into_iter().map(|d| d.0).collect();
    assert_eq!(
        names.len(),
        3,
        "Redis holds exactly the 3 documents: {names:?}"
    );

    // Redis back: a write works again (the connection reconnects) and reaches B (its
    // follower reconnects within its backoff, at most 5 s, and catches up).
    let mut created = None;
    for _ in 0..40 {
        let (doc, _) = new_document(4, free_port());
        match http(api_a, "PUT", LIST, Some(&json!({"data": doc}))).unwrap() {
            (201, body) => {
                created = body["data"]["id"].as_str().map(String::from);
                break;
            }
            (503, _) => thread::sleep(Duration::from_millis(250)),
            (status, body) => panic!("PUT after Redis returned: {status} {body}"),
        }
    }
    let id4 = created.unwrap_or_else(|| panic!("writes never worked again{}", node_a.log()));
    let reached = until(
        api_b,
        &format!("{LIST}/{id4}"),
        Duration::from_secs(8),
        |s| s == 200,
    );
    assert!(reached.is_ok(), "{reached:?}{}", node_b.log());

    // Every write went to Redis: no node wrote a file.
    assert!(!a.dir.path().join("connectivity").exists());
    assert!(!b.dir.path().join("connectivity").exists());

    node_b.stop().expect("B stops cleanly");
    node_a.stop().expect("A stops cleanly");
    redis.stop();
}

/// A node started while Redis is away says so, serves nothing (no SIP answer) and
/// starts serving, with the documents, once Redis answers; SIGHUP reloads from Redis.
#[test]
fn a_node_waits_for_redis_at_start() {
    let redis_dir = TestDir::new("cluster-docs-late-redis");
    let redis_port = free_port();
    let a = Node::new("cluster-docs-late", "edge-a", redis_port, free_port());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_trunkstore"));
    cmd.arg("serve").arg("--config").arg(&a.settings);
    let mut early = Proc::spawn("early", cmd, a.dir.path());
    thread::sleep(Duration::from_millis(1500));
    assert!(
        early.try_exit().is_none(),
        "exited: {}",
        early.output_tail(3000)
    );
    let log = early.output_tail(20_000);
    assert!(
        log.contains("not serving until they are"),
        "no clear log line: {log}"
    );
    let silent = crate::raw::options_ping(
        a.setup.carrier_port,
        a.setup.port,
        Duration::from_millis(200),
    );
    assert!(silent.is_none(), "answered SIP without documents");
    let mut redis = redis_server(&redis_dir, redis_port);
    // Ready within its backoff (at most a few seconds here).
    let deadline = Instant::now() + Duration::from_secs(10);
    while crate::raw::options_ping(
        a.setup.carrier_port,
        a.setup.port,
        Duration::from_millis(200),
    )
    .is_none()
    {
        assert!(
            Instant::now() < deadline,
            "never served after Redis came: {}",
            early.output_tail(6000)
        );
    }
    let (status, _) = http(a.setup.api_port, "GET", LIST, None).unwrap();
    assert_eq!(status, 200);
    // SIGHUP loads the documents from Redis again.
    let hup = Command::new("kill")
        .args(["-HUP", &early.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let deadline = Instant::now() + Duration::from_secs(5);
    while !early
        .output_tail(20_000)
        .contains("new routing index live reason=\"signal\"")
    {
        assert!(
            Instant::now() < deadline,
            "no reload on SIGHUP: {}",
            early.output_tail(3000)
        );
        thread::sleep(Duration::from_millis(50));
    }
    early.terminate();
    let status = early.wait_or_kill(Duration::from_secs(10)).unwrap();
    assert!(status.success(), "{}", early.output_tail(3000));
    redis.stop();
}
