//! The node's Redis connection against a real `redis-server` started by the test.

mod support;

use std::time::{Duration, Instant};

use support::{cluster, free_port, rt, Server};
use trunkstore_cluster::{Redis, RedisError};

#[test]
fn first_answering_url_is_used_and_round_trips_are_timed() {
    let server = Server::start(&["--requirepass", "s3cret-pw"]);
    let dead = format!("redis://127.0.0.1:{}", free_port());
    let live = format!("redis://127.0.0.1:{}", server.port);
    rt().block_on(async {
        let redis = Redis::connect(&cluster(vec![dead, live], Some("s3cret-pw")))
            .await
            .expect("the second URL answers");
        assert!(!format!("{redis:?}").contains("s3cret-pw"));
        let key = redis.key("k");
        assert_eq!(key, "test:k");
        let _: () = redis
            .query(redis::cmd("SET").arg(&key).arg(7))
            .await
            .unwrap();
        let script = Redis::new_script("return redis.call('INCRBY', KEYS[1], ARGV[1])");
        let n: i64 = redis.script(script.key(&key).arg(3)).await.unwrap();
        assert_eq!(n, 10);
        assert_eq!(redis.stats().buckets().iter().sum::<u64>(), 2);
    });
}

#[test]
fn a_wrong_password_is_refused() {
    let server = Server::start(&["--requirepass", "right-one"]);
    let url = format!("redis://127.0.0.1:{}", server.port);
    rt().block_on(async {
        let e = Redis::connect(&cluster(vec![url], Some("wrong-one")))
            .await
            .unwrap_err();
        assert!(!e.to_string().contains("wrong-one"), "{e}");
    });
}

#[test]
fn a_silent_redis_is_a_timeout_not_a_hang() {
    let server = Server::start(&[]);
    let url = format!("redis://127.0.0.1:{}", server.port);
    rt().block_on(async {
        let redis = Redis::connect(&cluster(vec![url], None)).await.unwrap();
        // A stopped (SIGSTOP) server accepts nothing and answers nothing: a hung Redis.
        server.pause();
        let start = Instant::now();
        let r: Result<String, _> = redis.query(&redis::cmd("PING")).await;
        server.resume();
        assert!(matches!(r, Err(RedisError::Timeout)), "{r:?}");
        assert!(start.elapsed() < Duration::from_millis(900));
        assert_eq!(redis.stats().timeouts(), 1);
    });
}

/// Redis restarted on the same port: the connection answers again within a few seconds
/// (no node is left stuck on a dead connection).
#[test]
fn a_restarted_redis_is_found_again() {
    let server = Server::start(&[]);
    let port = server.port;
    rt().block_on(async {
        let redis = Redis::connect(&cluster(vec![server.url()], None))
            .await
            .unwrap();
        let ping = || async { redis.query::<String>(&redis::cmd("PING")).await };
        assert_eq!(ping().await.unwrap(), "PONG");
        drop(server);
        // Down for a while, asked all along (the node's tasks keep trying).
        let down = Instant::now() + Duration::from_secs(3);
        while Instant::now() < down {
            assert!(ping().await.is_err(), "Redis is down");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _server = Server::start_on(port, &[]);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if ping().await.is_ok() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "still no answer after the restart"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
}
