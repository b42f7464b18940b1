//! A real `redis-server` for the cluster tests (tests/run.sh installs it): foreground, on
//! a free loopback port, no persistence, killed when dropped.

use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::{free_port, Proc, TestDir};

pub struct Redis {
    proc: Proc,
    pub port: u16,
}

impl Redis {
    pub fn start(dir: &TestDir) -> Redis {
        Redis::start_on(dir, free_port())
    }

    /// On a given port: a restart of the same server.
    pub fn start_on(dir: &TestDir, port: u16) -> Redis {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path());
        let proc = Proc::spawn(&format!("redis-{port}"), cmd, dir.path());
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Redis { proc, port }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.proc.kill();
    }
}
