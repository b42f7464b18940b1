//! Trunk limits across nodes (issue 18 item 2, behaviour.md §9.2) with the real binary
//! twice, a real `redis-server` and SIPp: a limit of 2 holds over both nodes (the third
//! call gets 486 whichever node it reaches, and every hold is given back after); a node
//! SIGKILLed with 2 live calls frees its trunks within the lease (3 s); a Redis killed
//! and restarted on its port during 1,000 calls loses none of them.
//!
//! The carrier calls from two loopback addresses every node trusts: held calls from
//! HELD_HOST, the calls that probe the limit from PROBE_HOST, so a run can start while
//! another holds its calls.

use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use crate::config::{self, dids, Pbx, ProxySetup};
use crate::harness::{self, free_port, TestDir};
use crate::proxy::Proxy;
use crate::sipp::{Transport, Uac, Uas};
use crate::{await_metric_at, check_metrics_at, UAS_FINISH};
use trunkstore_testkit::Redis;

const HELD_HOST: &str = "127.0.0.5";
const PROBE_HOST: &str = "127.0.0.6";
/// This node's live holds in Redis.
const HOLDS: &str = "trunkstore_cluster_trunk_holds";
/// Calls refused by the cluster's limit (not the node's own count).
const CLUSTER_REFUSALS: &str = "trunkstore_cluster_trunk_refusals_total";
const FAIL_OPEN: &str = "trunkstore_cluster_fail_open_total";
const REDIS_UP: &str = "trunkstore_cluster_redis_up";
/// The node's own count of the account's trunks (behaviour.md §6).
const TRUNKS_IN_USE: &str = "trunkstore_trunks_in_use{account=\"e2e\"}";
const ANSWERED: &str = "trunkstore_calls_total{direction=\"inbound\",outcome=\"answered\"}";
/// The test documents' account (config.rs) and so its holds' key (default prefix).
const HOLDS_KEY: &str = "trunkstore:trunks:e2e";
/// A PBX waits this long for the BYE of a held call (SIPp's -recv_timeout, ms).
const PBX_PATIENCE_MS: &str = "30000";

/// One `trunkstore serve` of the cluster, with its own directory, ports and log.
struct Node {
    dir: TestDir,
    setup: ProxySetup,
    proxy: Option<Proxy>,
}

impl Node {
    /// A node `id` sharing `redis`, whose one document (account `e2e`, `trunks` set)
    /// has the servers `pbxs`.
    fn start(test: &str, id: &str, redis: &Redis, pbxs: &[Pbx], trunks: u32) -> Node {
        let _sipp = crate::sipp::sipp_binary();
        let dir = TestDir::new(&format!("{test}-{id}"));
        let mut setup = ProxySetup {
            port: free_port(),
            carrier_port: free_port(),
            api_port: free_port(),
            extra: Map::new(),
        };
        setup.extra = cluster_settings(&setup, id, redis);
        let settings = config::write_with_account(&dir, &setup, pbxs, json!({"trunks": trunks}));
        let proxy = Proxy::start(&dir, &settings, &setup);
        Node {
            dir,
            setup,
            proxy: Some(proxy),
        }
    }

    /// A carrier run to this node from `host` (any port of it is trusted).
    fn carrier<'a>(
        &self,
        name: &'a str,
        scenario: &'a str,
        lines: Vec<String>,
        host: &str,
    ) -> Uac<'a> {
        Uac {
            name,
            scenario,
            proxy_port: self.setup.port,
            local_port: free_port(),
            transport: Transport::Udp,
            lines,
            rate: 20,
            extra: vec![
                "-i".into(),
                host.into(),
                "-key".into(),
                "extra_header".into(),
                crate::NO_EXTRA_HEADER.into(),
            ],
        }
    }

    /// `calls` calls to `pbx` from HELD_HOST, each held `hold_ms` after its ACK.
    fn held<'a>(&self, name: &'a str, pbx: &Pbx, calls: usize, hold_ms: u64) -> Uac<'a> {
        let lines = pbx
            .dids
            .iter()
            .cycle()
            .take(calls)
            .map(|did| format!("{did};{};carrier;-", did.trim_start_matches("+1")))
            .collect();
        let mut uac = self.carrier(name, "uac-pbx-call.xml", lines, HELD_HOST);
        uac.extra.extend(["-d".into(), hold_ms.to_string()]);
        uac
    }

    /// One call to `did` from PROBE_HOST that must get 486 Busy Here.
    fn refused(&self, name: &str, did: &str) -> Result<(), String> {
        let lines = vec![format!("{did};486;70")];
        self.carrier(name, "uac-reject.xml", lines, PROBE_HOST)
            .run(&self.dir)
            .check()
    }

    fn await_metric(&self, series: &str, value: u64) -> Result<(), String> {
        await_metric_at(self.setup.api_port, series, value)
            .map_err(|why| format!("node on {}: {why}", self.setup.port))
    }

    fn metric(&self, series: &str) -> Option<u64> {
        let page = crate::metrics_page(self.setup.api_port).ok()?;
        page.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    /// SIGKILL: the node dies with its calls, nothing given back.
    fn kill(&mut self) {
        if let Some(mut proxy) = self.proxy.take() {
            proxy.proc.kill();
        }
    }

    /// Stops a live node (SIGTERM, must exit 0); with problems, its log.
    fn finish(self, problems: &mut Vec<String>) {
        let Some(proxy) = self.proxy else { return };
        let log = proxy.log();
        if let Err(why) = proxy.stop() {
            problems.push(why);
        } else if !problems.is_empty() {
            problems.push(log);
        }
    }
}

/// The base settings' carrier trusting HELD_HOST and PROBE_HOST too, and the `cluster`
/// section with a 3 s lease (renewed every second).
fn cluster_settings(setup: &ProxySetup, id: &str, redis: &Redis) -> Map<String, Value> {
    let mut s = Map::new();
    s.insert(
        "carriers".into(),
        json!([{
            "name": "e2e-carrier",
            "gateways": [{"host": "127.0.0.1", "port": setup.carrier_port, "transport": "udp"}],
            "sources": [format!("127.0.0.1:{}", setup.carrier_port), HELD_HOST, PROBE_HOST],
        }]),
    );
    s.insert(
        "cluster".into(),
        json!({"node_id": id, "redis": [redis.url()], "lease_secs": 3,
               "secret": "e2e-cluster-secret-0123456789"}),
    );
    s
}

/// `redis-cli` against the test's Redis: its answer, trimmed.
fn redis_cli(redis: &Redis, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &redis.port.to_string()])
        .args(args)
        .output()
        .expect("run redis-cli (Debian package redis-tools, with redis-server)");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The holds Redis keeps for the account, whoever owns them.
fn holds_in_redis(redis: &Redis) -> Result<(), String> {
    match redis_cli(redis, &["ZCARD", HOLDS_KEY]).as_str() {
        "0" => Ok(()),
        other => Err(format!(
            "{HOLDS_KEY} holds {other}: {}",
            redis_cli(redis, &["ZRANGE", HOLDS_KEY, "0", "-1", "WITHSCORES"])
        )),
    }
}

fn fail_with(problems: Vec<String>) {
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

/// Two calls up, one through each node: a third gets 486 through either node (each
/// node alone counts 1 of 2, so only the cluster can refuse it); after the calls end no
/// node holds a trunk and Redis is empty.
#[test]
fn trunk_limit_of_two_holds_across_two_nodes() {
    let dir = TestDir::new("cluster-trunks-limit-redis");
    let redis = Redis::start_in(dir.path(), free_port(), &[]);
    let pbx = Pbx::new("pbx", free_port(), "npan", dids(0, 4));
    let pbxs = std::slice::from_ref(&pbx);
    let a = Node::start("cluster-trunks-limit", "a", &redis, pbxs, 2);
    let b = Node::start("cluster-trunks-limit", "b", &redis, pbxs, 2);
    let uas = Uas::start_with(
        &a.dir,
        "pbx",
        "uas-answer.xml",
        pbx.port,
        2,
        60,
        &["-recv_timeout", PBX_PATIENCE_MS],
    );
    // Held long enough for both refusals below on a loaded machine.
    let held_a = a.held("held-a", &pbx, 1, 8000).start(&a.dir, 40);
    let held_b = b.held("held-b", &pbx, 1, 8000).start(&b.dir, 40);
    let mut results = vec![a.await_metric(HOLDS, 1), b.await_metric(HOLDS, 1)];
    let did = &pbx.dids[3];
    results.push(a.refused("over-a", did));
    results.push(b.refused("over-b", did));
    for node in [&a, &b] {
        results.push(node.await_metric(CLUSTER_REFUSALS, 1));
        results.push(node.await_metric(FAIL_OPEN, 0));
    }
    results.push(held_a.wait().check());
    results.push(held_b.wait().check());
    results.push(uas.finish(UAS_FINISH));
    for node in [&a, &b] {
        results.push(node.await_metric(HOLDS, 0));
        results.push(node.await_metric(TRUNKS_IN_USE, 0));
    }
    results.push(holds_in_redis(&redis));
    let mut problems: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    a.finish(&mut problems);
    b.finish(&mut problems);
    fail_with(problems);
}

/// The lease of `cluster_settings`.
const LEASE: Duration = Duration::from_secs(3);

/// Node a is SIGKILLed with the cluster's 2 trunks up: node b refuses a call while a
/// lives, and takes one again once a's holds have lapsed, within the lease (plus the
/// renewal's third of it and a probe's own time).
#[test]
fn killed_node_frees_its_trunks_within_the_lease() {
    let dir = TestDir::new("cluster-trunks-kill-redis");
    let redis = Redis::start_in(dir.path(), free_port(), &[]);
    let held_pbx = Pbx::new("pbx-held", free_port(), "npan", dids(0, 2));
    let new_pbx = Pbx::new("pbx-new", free_port(), "npan", dids(10, 1));
    let pbxs = [held_pbx, new_pbx];
    let mut a = Node::start("cluster-trunks-kill", "a", &redis, &pbxs, 2);
    let b = Node::start("cluster-trunks-kill", "b", &redis, &pbxs, 2);
    let [held_pbx, new_pbx] = &pbxs;
    // The held calls' PBX never sees their end (its node dies): not checked.
    let _held_uas = Uas::start_with(
        &a.dir,
        "pbx-held",
        "uas-answer.xml",
        held_pbx.port,
        2,
        60,
        &["-recv_timeout", PBX_PATIENCE_MS],
    );
    let new_uas = Uas::start(&b.dir, "pbx-new", "uas-answer.xml", new_pbx.port, 1, 60);
    let held = a.held("held", held_pbx, 2, 60_000).start(&a.dir, 60);
    let mut results = vec![a.await_metric(HOLDS, 2)];
    let probe_did = &new_pbx.dids[0];
    results.push(
        b.refused("before-kill", probe_did)
            .map_err(|why| format!("node b, while a holds both trunks: {why}")),
    );
    a.kill();
    let killed = Instant::now();
    drop(held);
    results.push(probe_until_answered(&b, new_pbx, killed));
    results.push(new_uas.finish(UAS_FINISH));
    results.push(b.await_metric(HOLDS, 0));
    results.push(holds_in_redis(&redis));
    let mut problems: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    b.finish(&mut problems);
    fail_with(problems);
}

/// Calls `pbx` through `node` until one is answered (486 meanwhile), within the lease
/// and its slack from `killed`; says how long it took.
fn probe_until_answered(node: &Node, pbx: &Pbx, killed: Instant) -> Result<(), String> {
    // Lapse: at most the lease after the last renewal; then one probe's run (SIPp start
    // and a call on a loaded machine).
    let deadline = killed + LEASE + Duration::from_secs(4);
    let did = &pbx.dids[0];
    let line = format!("{did};{}", did.trim_start_matches("+1"));
    let mut outcomes = Vec::new();
    for attempt in 0.. {
        let name = format!("after-kill-{attempt}");
        let uac = node.carrier(
            &name,
            "uac-call-or-busy.xml",
            vec![line.clone()],
            PROBE_HOST,
        );
        let run = uac.run_for(&node.dir, 15);
        run.check()?;
        let log = harness::tail(&node.dir.file(&format!("{name}.log")), 2000);
        let answered = log.contains("outcome answered");
        let elapsed = killed.elapsed();
        outcomes.push(format!(
            "{:?}: {}",
            elapsed,
            if answered { "200" } else { "486" }
        ));
        if answered && attempt == 0 && elapsed < LEASE / 2 {
            // The renewal every third of the lease leaves at least two thirds of it
            // after the kill: a call taken sooner means a's holds were not in Redis.
            return Err(format!(
                "answered {elapsed:?} after the kill, before the lease lapsed"
            ));
        }
        if answered {
            eprintln!("[cluster-trunks-kill] probes after the kill: {outcomes:?}");
            return Ok(());
        }
        if !log.contains("outcome busy") {
            return Err(format!("probe {attempt}: no outcome logged:\n{log}"));
        }
        if Instant::now() >= deadline {
            break;
        }
        thread::sleep(Duration::from_millis(200));
    }
    Err(format!(
        "no call through the other node within {:?} of the kill: {outcomes:?}",
        deadline - killed
    ))
}

/// 1,000 calls at 100/s through one node of an account with a (large) limit, so each
/// takes a hold in Redis; Redis is killed once 200 are answered and started again on
/// its port a second later. Every call completes (the ones meanwhile fail open), the
/// node finds Redis again, and no hold is left, in the node or in Redis.
#[test]
fn redis_restart_during_1000_calls_loses_no_call() {
    const CALLS: usize = 1000;
    let _serial = harness::load_lock();
    let dir = TestDir::new("cluster-trunks-restart-redis");
    let mut redis = Redis::start_in(dir.path(), free_port(), &[]);
    let pbx = Pbx::new("pbx", free_port(), "npan", dids(0, 100));
    let node = Node::start(
        "cluster-trunks-restart",
        "a",
        &redis,
        std::slice::from_ref(&pbx),
        500,
    );
    let uas = Uas::start(
        &node.dir,
        "pbx",
        "uas-answer.xml",
        pbx.port,
        CALLS as u64,
        90,
    );
    let mut uac = node.carrier(
        "carrier",
        "uac-call.xml",
        crate::call_lines(&pbx, CALLS),
        HELD_HOST,
    );
    uac.rate = 100;
    let run = uac.start(&node.dir, 40);
    let mut results = vec![await_at_least(
        &node,
        ANSWERED,
        200,
        Duration::from_secs(20),
    )];
    let port = redis.port;
    drop(redis);
    let restarted = Instant::now();
    thread::sleep(Duration::from_secs(1));
    redis = Redis::start_in(dir.path(), port, &[]);
    eprintln!(
        "[cluster-trunks-restart] Redis away {:?}, {:?} calls answered when it came back",
        restarted.elapsed(),
        node.metric(ANSWERED)
    );
    results.push(run.wait().check());
    results.push(uas.finish(UAS_FINISH));
    results.push(check_metrics_at(
        node.setup.api_port,
        &[
            (ANSWERED, CALLS as u64),
            (
                "trunkstore_calls_total{direction=\"inbound\",outcome=\"failed\"}",
                0,
            ),
            (
                "trunkstore_calls_total{direction=\"inbound\",outcome=\"rejected\"}",
                0,
            ),
        ],
    ));
    results.push(node.await_metric(REDIS_UP, 1));
    results.push(node.await_metric(HOLDS, 0));
    results.push(node.await_metric(TRUNKS_IN_USE, 0));
    results.push(holds_in_redis(&redis));
    // The restart was seen: calls went on without Redis meanwhile, and the restarted
    // Redis took holds again afterwards.
    let fail_open = node.metric(FAIL_OPEN).unwrap_or(0);
    if fail_open == 0 {
        results.push(Err(format!(
            "{FAIL_OPEN} is 0: Redis's restart went unseen"
        )));
    }
    let takes = script_calls(&redis);
    if takes == 0 {
        results.push(Err(
            "the restarted Redis ran no script: no hold taken".into()
        ));
    }
    eprintln!("[cluster-trunks-restart] {fail_open} calls failed open, {takes} scripts run by the restarted Redis");
    let mut problems: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    node.finish(&mut problems);
    fail_with(problems);
}

/// Scripts (EVAL and EVALSHA) this Redis ran since it started.
fn script_calls(redis: &Redis) -> u64 {
    redis_cli(redis, &["INFO", "commandstats"])
        .lines()
        .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
        .filter_map(|l| {
            let calls = l.split("calls=").nth(1)?;
            calls.split(',').next()?.parse::<u64>().ok()
        })
        .sum()
}

/// Waits (at most `limit`) until `series` reads at least `value`.
fn await_at_least(node: &Node, series: &str, value: u64, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    loop {
        let now = node.metric(series);
        if now.is_some_and(|v| v >= value) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{series}: {now:?} after {limit:?}, expected ≥ {value}"
            ));
        }
        thread::sleep(Duration::from_millis(50));
    }
}
