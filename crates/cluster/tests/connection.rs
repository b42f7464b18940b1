//! The node's Redis connection against a real `redis-server` started by the test.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use trunkstore_cluster::{Redis, RedisError};
use trunkstore_config::{Cluster, DocumentStore, Secret};

/// A `redis-server` on a free loopback port, no persistence, killed on drop.
struct Server {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start(args: &[&str]) -> Server {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .args(args)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (tests/run.sh installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Server {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signal(server: &Server, sig: &str) {
    let pid = server.child.id().to_string();
    let ok = Command::new("kill").args([sig, &pid]).status().unwrap();
    assert!(ok.success());
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn cluster(urls: Vec<String>, password: Option<&str>) -> Cluster {
    Cluster {
        node_id: "a".into(),
        redis: urls,
        password: password.map(Secret::new),
        username: None,
        tls_ca_file: None,
        key_prefix: "test:".into(),
        lease_secs: 15,
        timeout_ms: 200,
        store: DocumentStore::Files,
        secret: Secret::new("0123456789abcdef"),
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

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
        signal(&server, "-STOP");
        let start = Instant::now();
        let r: Result<String, _> = redis.query(&redis::cmd("PING")).await;
        signal(&server, "-CONT");
        assert!(matches!(r, Err(RedisError::Timeout)), "{r:?}");
        assert!(start.elapsed() < Duration::from_millis(900));
        assert_eq!(redis.stats().timeouts(), 1);
    });
}
