//! Targets named by DNS (issue 17, RFC 3263) with the real binary, a real DNS server
//! (dnsmasq, Debian `dnsmasq-base`, installed by tests/run.sh: the binary only) started
//! by the test on a loopback port, and SIPp parties on loopback. The proxy's `dns.servers`
//! point at that dnsmasq only: nothing is asked of the machine's resolver.
//!
//! dnsmasq's command line: foreground, our config and hosts files only (no
//! /etc/resolv.conf, no /etc/hosts, no upstream), loopback, names under `test.` answered
//! NXDOMAIN when unknown, TTL 1 s (see crates/edge/tests/dns.rs for each flag).

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{Proc, TestDir};
use crate::ports::free_port;

/// How long dnsmasq may take to start listening.
const START_LIMIT: Duration = Duration::from_secs(10);

/// A running dnsmasq on 127.0.0.1, killed when dropped (its `Proc`).
pub struct Dnsmasq {
    proc: Option<Proc>,
    pub port: u16,
}

impl Dnsmasq {
    /// Starts dnsmasq in `dir` with `conf` (its config lines) and `hosts` (its hosts
    /// file); waits (bounded) until its log says it started.
    pub fn start(dir: &TestDir, conf: &str, hosts: &str) -> Dnsmasq {
        fs::write(dir.file("hosts"), hosts).unwrap();
        Dnsmasq::spawn(dir, "dnsmasq", conf, free_port())
    }

    /// Stops it and starts it again on the same port with `conf` (dnsmasq reads SRV
    /// records only at start); `name` names the new process's log.
    pub fn restart(&mut self, dir: &TestDir, name: &str, conf: &str) {
        // The old one goes first (killed and reaped on drop): it holds the port.
        drop(self.proc.take());
        *self = Dnsmasq::spawn(dir, name, conf, self.port);
    }

    fn spawn(dir: &TestDir, name: &str, conf: &str, port: u16) -> Dnsmasq {
        fs::write(dir.file("dnsmasq.conf"), conf).unwrap();
        let mut cmd = Command::new("dnsmasq");
        cmd.arg("--no-daemon")
            .arg("--log-facility=-")
            .arg("--log-queries")
            .arg(format!(
                "--conf-file={}",
                dir.file("dnsmasq.conf").display()
            ))
            .args(["--no-resolv", "--no-poll", "--no-hosts"])
            .arg(format!("--addn-hosts={}", dir.file("hosts").display()))
            .args(["--listen-address=127.0.0.1", "--bind-interfaces"])
            .arg(format!("--port={port}"))
            .args(["--local=/test/", "--local-ttl=1"]);
        let proc = Proc::spawn(name, cmd, dir.path());
        wait_started(&dir.file(&format!("{name}.out")));
        Dnsmasq {
            proc: Some(proc),
            port,
        }
    }
}

fn wait_started(log: &Path) {
    let deadline = Instant::now() + START_LIMIT;
    while Instant::now() < deadline {
        if fs::read_to_string(log).is_ok_and(|l| l.contains("started")) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!(
        "dnsmasq did not start: {}",
        fs::read_to_string(log).unwrap_or_default()
    );
}

/// The settings' `dns` object for a test's dnsmasq.
pub fn dns_settings(server: &Dnsmasq) -> serde_json::Value {
    json!({"servers": [format!("127.0.0.1:{}", server.port)], "timeout_ms": 500, "attempts": 2})
}

/// `trunkstore check` resolves every target named by DNS with the settings' resolver and
/// warns (exit 0) about each one that does not resolve, naming its place; names that
/// resolve are not mentioned.
#[test]
fn check_warns_about_names_that_do_not_resolve() {
    let dir = TestDir::new("dns-check");
    let server = Dnsmasq::start(&dir, "", "127.0.0.1 gw.test\n");
    let settings = json!({
        "listen": {"udp": ["127.0.0.1:0"]},
        "connectivity_dir": "conn",
        "dns": dns_settings(&server),
        "carriers": [{"name": "c1", "sources": ["127.0.0.9"], "gateways": [
            {"host": "gw.test", "port": 5070},
            {"host": "nowhere.test", "port": 5070}]}]
    });
    fs::create_dir_all(dir.file("conn")).unwrap();
    fs::write(dir.file("s.json"), settings.to_string()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_trunkstore"))
        .args(["check", "--config", "s.json"])
        .current_dir(dir.path())
        .output()
        .expect("run trunkstore check");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let warnings: Vec<&str> = text.lines().filter(|l| l.starts_with("warning:")).collect();
    assert_eq!(warnings.len(), 1, "{text}");
    assert!(
        warnings[0].starts_with(
            "warning: settings: carriers.0.gateways.1.host: \"nowhere.test\" does not resolve"
        ),
        "{text}"
    );
}
