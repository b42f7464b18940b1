//! Auth failures and bans through a real `redis-server`: every node applies the others'.

mod support;

use std::net::IpAddr;
use std::time::Duration;

use support::{cluster, rt, Server};
use tokio::sync::mpsc;
use trunkstore_cluster::{Redis, SecurityStream, Shared};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

async fn node(server: &Server, id: &str) -> SecurityStream {
    let redis = Redis::connect(&cluster(vec![server.url()], None))
        .await
        .expect("redis");
    SecurityStream::new(redis, id)
}

/// A follower that sends what it applies down a channel.
fn follow(stream: SecurityStream, history: Duration) -> mpsc::UnboundedReceiver<Shared> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        stream
            .follow(history, move |e| {
                let _ = tx.send(e);
            })
            .await
    });
    rx
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Shared>) -> Option<Shared> {
    tokio::time::timeout(Duration::from_secs(3), rx.recv())
        .await
        .ok()
        .flatten()
}

#[test]
fn another_nodes_events_arrive_and_own_ones_do_not() {
    let server = Server::start(&[]);
    rt().block_on(async {
        let (a, b) = (node(&server, "a").await, node(&server, "b").await);
        let mut at_b = follow(b.clone(), Duration::from_secs(600));
        let mut at_a = follow(a.clone(), Duration::from_secs(600));
        tokio::time::sleep(Duration::from_millis(200)).await;
        let ban = Shared::Ban {
            source: ip("198.51.100.7"),
            remaining: Duration::from_secs(600),
        };
        a.publish(&[Shared::Failure(ip("198.51.100.7")), ban])
            .await
            .unwrap();
        assert_eq!(
            next(&mut at_b).await,
            Some(Shared::Failure(ip("198.51.100.7")))
        );
        match next(&mut at_b).await {
            Some(Shared::Ban { source, remaining }) => {
                assert_eq!(source, ip("198.51.100.7"));
                assert!(remaining > Duration::from_secs(598), "{remaining:?}");
            }
            other => panic!("{other:?}"),
        }
        b.publish(&[Shared::Failure(ip("2001:db8::1"))])
            .await
            .unwrap();
        assert_eq!(
            next(&mut at_a).await,
            Some(Shared::Failure(ip("2001:db8::1")))
        );
        // a never hears itself, b never hears itself.
        assert_eq!(next(&mut at_a).await, None);
        assert_eq!(next(&mut at_b).await, None);
    });
}

/// A node that starts after a ban reads it back, shortened by its age; a ban that has
/// ended, and entries anyone wrote badly, are skipped.
#[test]
fn a_starting_node_reads_back_the_bans_in_force() {
    let server = Server::start(&[]);
    rt().block_on(async {
        let a = node(&server, "a").await;
        let short = Shared::Ban {
            source: ip("203.0.113.1"),
            remaining: Duration::from_millis(300),
        };
        let long = Shared::Ban {
            source: ip("203.0.113.2"),
            remaining: Duration::from_secs(60),
        };
        a.publish(&[short, long]).await.unwrap();
        let redis = Redis::connect(&cluster(vec![server.url()], None))
            .await
            .unwrap();
        let junk = redis::cmd("XADD")
            .arg(redis.key("security"))
            .arg("*")
            .arg("node")
            .arg("x")
            .arg("kind")
            .arg("ban")
            .arg("source")
            .arg("not-an-ip")
            .clone();
        let _: String = redis.query(&junk).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let mut at_b = follow(node(&server, "b").await, Duration::from_secs(600));
        match next(&mut at_b).await {
            Some(Shared::Ban { source, remaining }) => {
                assert_eq!(source, ip("203.0.113.2"));
                assert!(remaining < Duration::from_millis(59_000), "{remaining:?}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(next(&mut at_b).await, None);
    });
}

/// Redis restarted: the follower goes on and hears what is written afterwards.
#[test]
fn the_follower_survives_a_redis_restart() {
    let server = Server::start(&[]);
    let port = server.port;
    rt().block_on(async {
        let a = node(&server, "a").await;
        let mut at_b = follow(node(&server, "b").await, Duration::from_secs(60));
        tokio::time::sleep(Duration::from_millis(200)).await;
        drop(server);
        let server = Server::start_on(port, &[]);
        // The publisher's connection reconnects by itself; give it a few tries.
        let mut sent = false;
        for _ in 0..20 {
            if a.publish(&[Shared::Failure(ip("192.0.2.9"))]).await.is_ok() {
                sent = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(sent, "publish after the restart");
        assert_eq!(
            next(&mut at_b).await,
            Some(Shared::Failure(ip("192.0.2.9")))
        );
        drop(server);
    });
}
