//! A real `redis-server` for the cluster tests (tests/run.sh installs it).
#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use trunkstore_config::{Cluster, DocumentStore, Secret};

/// A `redis-server` on a free loopback port, no persistence, killed on drop.
pub struct Server {
    pub child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Server {
    /// `url()` of this server.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn start(args: &[&str]) -> Server {
        Server::start_on(free_port(), args)
    }

    /// On a given port (a restart of the same server).
    pub fn start_on(port: u16, args: &[&str]) -> Server {
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

pub fn signal(server: &Server, sig: &str) {
    let pid = server.child.id().to_string();
    let ok = Command::new("kill").args([sig, &pid]).status().unwrap();
    assert!(ok.success());
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn cluster(urls: Vec<String>, password: Option<&str>) -> Cluster {
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

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}
