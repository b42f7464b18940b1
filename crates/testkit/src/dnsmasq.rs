//! dnsmasq (Debian `dnsmasq-base`: the binary only, no service) on a loopback port of its
//! own, serving NAPTR, SRV, A and AAAA records from a config file and a hosts file the test
//! writes. Nothing is ever asked of the machine's own resolver.
//!
//! Its command line (see `spawn`):
//!
//! - `--no-daemon`: foreground, no pid file, no change of user (so it can read the test
//!   directory again on SIGHUP); `--log-facility=-`: its log on stderr, appended to
//!   `dnsmasq.log` in the test directory; `--log-queries`: one line per query received.
//! - `--conf-file=<dir>/dnsmasq.conf` (the test's records; not /etc/dnsmasq.conf),
//!   `--no-resolv --no-poll --no-hosts` (not /etc/resolv.conf nor /etc/hosts: no upstream
//!   at all), `--addn-hosts=<dir>/hosts` (A/AAAA re-read on SIGHUP; the config file is not).
//! - `--listen-address=127.0.0.1 --bind-interfaces --port=<free port>`: loopback only.
//! - `--local=/test/`: names under `test.` not in the records get NXDOMAIN instead of being
//!   forwarded (there is nowhere to forward to: that would be REFUSED).
//! - `--local-ttl=1`: the TTL of every answer (NAPTR, SRV and hosts alike), so a changed
//!   record shows after a second.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{signal, wait_until};

/// How long dnsmasq may take to start listening, or to re-read its hosts file.
const START_LIMIT: Duration = Duration::from_secs(10);

/// A running dnsmasq on 127.0.0.1, killed when dropped (its log printed if the test is
/// failing).
pub struct Dnsmasq {
    child: Child,
    /// Its port on 127.0.0.1 (UDP and TCP).
    pub port: u16,
    dir: PathBuf,
}

impl Dnsmasq {
    /// Starts dnsmasq in `dir` with `conf` (its config lines) and `hosts` (its hosts file)
    /// and waits (bounded) until its log says it started. A port taken meanwhile by
    /// another process is retried on another.
    pub fn start(dir: &Path, conf: &str, hosts: &str) -> Dnsmasq {
        fs::write(dir.join("dnsmasq.conf"), conf).unwrap();
        fs::write(dir.join("hosts"), hosts).unwrap();
        for _ in 0..5 {
            let port = free_udp_tcp_port();
            let seen = started_lines(dir);
            let mut server = Dnsmasq {
                child: spawn(dir, port),
                port,
                dir: dir.to_path_buf(),
            };
            if server.wait_started(seen) {
                return server;
            }
        }
        panic!("dnsmasq did not start: {}", log(dir));
    }

    /// Stops it and starts it again on the same port with `conf` (dnsmasq reads SRV and
    /// NAPTR records only at start).
    pub fn restart(&mut self, conf: &str) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        fs::write(self.dir.join("dnsmasq.conf"), conf).unwrap();
        let seen = started_lines(&self.dir);
        self.child = spawn(&self.dir, self.port);
        assert!(self.wait_started(seen), "dnsmasq restart: {}", self.log());
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Its log so far (every start's, appended).
    pub fn log(&self) -> String {
        log(&self.dir)
    }

    /// Queries received for `name` so far (its `--log-queries` lines).
    pub fn queries_for(&self, name: &str) -> usize {
        let needle = format!(" {name} from ");
        self.log()
            .lines()
            .filter(|l| l.contains("query[") && l.contains(&needle))
            .count()
    }

    /// Rewrites the hosts file and has dnsmasq re-read it (SIGHUP); waits (bounded) for
    /// its log to say so.
    pub fn replace_hosts(&self, hosts: &str) {
        let before = self.log().matches("read ").count();
        fs::write(self.dir.join("hosts"), hosts).unwrap();
        signal(self.child.id(), libc::SIGHUP);
        let reread = wait_until(START_LIMIT, || self.log().matches("read ").count() > before);
        assert!(reread, "dnsmasq did not re-read: {}", self.log());
    }

    /// True once the log has one more "started" line than `seen`; false if dnsmasq
    /// exited first (its port was taken).
    fn wait_started(&mut self, seen: usize) -> bool {
        let mut exited = false;
        let started = wait_until(START_LIMIT, || {
            exited = self.child.try_wait().unwrap().is_some();
            exited || started_lines(&self.dir) > seen
        });
        assert!(
            started,
            "dnsmasq did not start within {START_LIMIT:?}: {}",
            self.log()
        );
        !exited
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- dnsmasq.log ---\n{}", self.log());
        }
    }
}

fn log(dir: &Path) -> String {
    fs::read_to_string(dir.join("dnsmasq.log")).unwrap_or_default()
}

/// dnsmasq's "started" lines in its log so far (the log is appended across restarts).
fn started_lines(dir: &Path) -> usize {
    log(dir).matches("started, version").count()
}

/// dnsmasq in the foreground on `port`, its log appended to `dir/dnsmasq.log`.
fn spawn(dir: &Path, port: u16) -> Child {
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("dnsmasq.log"))
        .unwrap();
    Command::new(dnsmasq_binary())
        .arg("--no-daemon")
        .arg("--log-facility=-")
        .arg("--log-queries")
        .arg(format!(
            "--conf-file={}",
            dir.join("dnsmasq.conf").display()
        ))
        .args(["--no-resolv", "--no-poll", "--no-hosts"])
        .arg(format!("--addn-hosts={}", dir.join("hosts").display()))
        .args(["--listen-address=127.0.0.1", "--bind-interfaces"])
        .arg(format!("--port={port}"))
        .args(["--local=/test/", "--local-ttl=1"])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("dnsmasq starts")
}

/// dnsmasq: missing is a failure, never a skip (as SIPp and rtpengine in the e2e tests).
fn dnsmasq_binary() -> PathBuf {
    let dirs = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&dirs)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|d| d.join("dnsmasq"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "dnsmasq (Debian package dnsmasq-base) is not installed: run ./tests/run.sh, \
                 which installs it, or `apt-get install dnsmasq-base`"
            )
        })
}

/// A loopback port free for both UDP and TCP right now (dnsmasq takes both).
fn free_udp_tcp_port() -> u16 {
    loop {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}
