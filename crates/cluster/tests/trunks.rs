//! Trunk holds across nodes (behaviour.md §9.2) against a real `redis-server` started by
//! the test (tests/support).

mod support;

use std::sync::Arc;
use std::time::Duration;

use support::{cluster, rt, Server};
use trunkstore_cluster::{Redis, TrunkStore};

fn node(rt: &tokio::runtime::Runtime, server: &Server, id: &str, lease_secs: u32) -> TrunkStore {
    let mut c = cluster(vec![format!("redis://127.0.0.1:{}", server.port)], None);
    c.node_id = id.into();
    c.lease_secs = lease_secs;
    let redis = rt.block_on(Redis::connect(&c)).expect("connect");
    TrunkStore::new(redis, id, Duration::from_secs(lease_secs.into()))
}

fn acc(a: &str) -> Arc<str> {
    Arc::from(a)
}

#[test]
fn take_up_to_the_limit_then_release() {
    let server = Server::start(&[]);
    let rt = rt();
    let a = node(&rt, &server, "a", 15);
    rt.block_on(async {
        assert!(a.take("acme", 1, 2).await.unwrap());
        assert!(a.take("acme", 2, 2).await.unwrap());
        assert!(!a.take("acme", 3, 2).await.unwrap(), "limit reached");
        assert!(a.take("other", 4, 2).await.unwrap(), "per account");
        assert_eq!(a.in_use("acme").await.unwrap(), 2);
        a.release("acme", 1).await.unwrap();
        a.release("acme", 1).await.unwrap();
        assert_eq!(
            a.in_use("acme").await.unwrap(),
            1,
            "a release is idempotent"
        );
        assert!(a.take("acme", 5, 2).await.unwrap());
        assert!(!a.take("acme", 6, 0).await.unwrap(), "limit 0 refuses all");
    });
}

#[test]
fn two_nodes_share_one_limit() {
    let server = Server::start(&[]);
    let rt = rt();
    let a = node(&rt, &server, "a", 15);
    let b = node(&rt, &server, "b", 15);
    rt.block_on(async {
        assert!(a.take("acme", 1, 2).await.unwrap());
        assert!(
            b.take("acme", 1, 2).await.unwrap(),
            "same hold id, other node"
        );
        assert!(!a.take("acme", 2, 2).await.unwrap());
        assert!(!b.take("acme", 2, 2).await.unwrap());
        b.release("acme", 1).await.unwrap();
        assert!(a.take("acme", 3, 2).await.unwrap(), "b's trunk is a's now");
        assert_eq!(b.in_use("acme").await.unwrap(), 2);
    });
}

#[test]
fn a_lease_lapses_unless_renewed() {
    let server = Server::start(&[]);
    let rt = rt();
    let dead = node(&rt, &server, "dead", 3);
    let alive = node(&rt, &server, "alive", 3);
    rt.block_on(async {
        assert!(dead.take("acme", 1, 2).await.unwrap());
        assert!(alive.take("acme", 1, 2).await.unwrap());
        let live = [(1u64, acc("acme"))];
        // `alive` renews every lease/3, `dead` never does.
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            assert_eq!(alive.renew(&live).await.unwrap(), 1);
        }
        assert_eq!(
            alive.in_use("acme").await.unwrap(),
            1,
            "only the renewed hold"
        );
        assert!(
            alive.take("acme", 2, 2).await.unwrap(),
            "the lapsed trunk is free"
        );
        assert_eq!(dead.renew(&live).await.unwrap(), 0, "lost: renewal says so");
    });
}

#[test]
fn reconcile_drops_a_dead_life_and_restores_live_holds() {
    let server = Server::start(&[]);
    let rt = rt();
    let first = node(&rt, &server, "a", 15);
    let other = node(&rt, &server, "b", 15);
    rt.block_on(async {
        for h in 1..=2 {
            assert!(first.take("acme", h, 3).await.unwrap());
        }
        assert!(first.take("beta", 3, 3).await.unwrap());
        assert!(other.take("acme", 1, 3).await.unwrap());
    });
    // Node "a" restarts (a new process, no calls): its members go, b's stay.
    drop(first);
    let again = node(&rt, &server, "a", 15);
    rt.block_on(async {
        assert_eq!(again.reconcile(&[]).await.unwrap(), 3);
        assert_eq!(again.in_use("acme").await.unwrap(), 1);
        assert_eq!(again.in_use("beta").await.unwrap(), 0);
        // Redis came back empty while calls were up: they are added whatever the limit.
        let live = [(7u64, acc("acme")), (8, acc("acme")), (9, acc("acme"))];
        assert_eq!(again.reconcile(&live).await.unwrap(), 0);
        assert_eq!(
            again.in_use("acme").await.unwrap(),
            4,
            "over the limit of 3: those calls are up"
        );
        assert!(!other.take("acme", 2, 3).await.unwrap());
        // A hold released while Redis was away is dropped at the next reconcile.
        assert_eq!(again.reconcile(&live[..2]).await.unwrap(), 1);
        assert_eq!(again.in_use("acme").await.unwrap(), 3);
    });
}
