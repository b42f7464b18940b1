//! End-to-end tests of `trunkstore serve` on the real binary, on 127.0.0.1.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);
const GRACE_SECS: u64 = 3;

#[path = "../../../tests/e2e/ports.rs"]
mod ports;
use ports::free_port;

/// The repository's shipped `config/` (the README's run command), copied into `dir` with
/// only its ports changed so the test can run beside others; everything else — relative
/// paths such as the CDR file included — is as shipped.
fn copy_shipped_config(dir: &Path, port: u16) -> PathBuf {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
    copy_tree(&shipped.join("connectivity"), &dir.join("connectivity"));
    let mut settings: serde_json::Value =
        serde_json::from_slice(&fs::read(shipped.join("trunkstore.json")).unwrap()).unwrap();
    let addr = format!("127.0.0.1:{port}");
    settings["listen"] = json!({"udp": [addr], "tcp": [addr]});
    settings["advertise"] = json!(addr);
    settings["api"]["listen"] = json!(format!("127.0.0.1:{}", free_port()));
    settings["metrics"]["listen"] = json!(format!("127.0.0.1:{}", free_port()));
    settings["log"]["level"] = json!("info");
    let path = dir.join("trunkstore.json");
    fs::write(&path, serde_json::to_vec_pretty(&settings).unwrap()).unwrap();
    path
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn write_config(dir: &Path, port: u16) -> PathBuf {
    fs::create_dir_all(dir.join("connectivity")).unwrap();
    let addr = format!("127.0.0.1:{port}");
    let settings = json!({
        "listen": {"udp": [addr], "tcp": [addr]},
        "advertise": addr,
        "connectivity_dir": "connectivity",
        "shutdown_grace": GRACE_SECS,
        "workers": 2,
        // Each proxy's admin API on its own port: the tests run in parallel.
        "api": {"listen": format!("127.0.0.1:{}", free_port())},
        "log": {"level": "debug", "format": "json"}
    });
    let path = dir.join("trunkstore.json");
    fs::write(&path, serde_json::to_vec_pretty(&settings).unwrap()).unwrap();
    path
}

/// The running binary and its log lines.
struct Proxy {
    child: Child,
    log: Receiver<String>,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Proxy {
    fn start() -> Proxy {
        Proxy::start_with(write_config)
    }

    /// Starts the binary on the settings file that `write` puts in a fresh temp dir for the
    /// given SIP port.
    fn start_with(write: impl FnOnce(&Path, u16) -> PathBuf) -> Proxy {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = write(dir.path(), port);
        let mut child = Command::new(env!("CARGO_BIN_EXE_trunkstore"))
            .args(["serve", "--config", config.to_str().unwrap()])
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start trunkstore");
        let (tx, log) = channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let proxy = Proxy {
            child,
            log,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            _dir: dir,
        };
        proxy.wait_log("trunkstore serving");
        proxy
    }

    /// Waits for a log line containing `needle`; returns it.
    fn wait_log(&self, needle: &str) -> String {
        let end = Instant::now() + WAIT;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => continue,
                Err(e) => panic!("no log line with {needle:?}: {e}"),
            }
        }
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        let r = unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        assert_eq!(r, 0);
    }

    /// Waits (bounded) for the process to exit.
    fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let end = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < end,
                "trunkstore did not exit in {within:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn options(transport: &str, from: SocketAddr, to: SocketAddr, call_id: &str) -> String {
    format!(
        "OPTIONS sip:{to} SIP/2.0\r\n\
         Via: SIP/2.0/{transport} {from};branch=z9hG4bK{call_id}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:tester@{from}>;tag=t1\r\n\
         To: <sip:{to}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

fn udp_exchange(to: SocketAddr, make: impl Fn(SocketAddr) -> String) -> String {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let request = make(s.local_addr().unwrap());
    let mut buf = [0u8; 65536];
    // UDP: resend a few times in case the first datagram is lost.
    for _ in 0..3 {
        s.send_to(request.as_bytes(), to).unwrap();
        while let Ok((n, _)) = s.recv_from(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            // 100 Trying is never sent for OPTIONS, but skip provisionals anyway.
            if !text.starts_with("SIP/2.0 1") {
                return text;
            }
        }
    }
    panic!("no final response over UDP to:\n{request}");
}

fn status_line(response: &str) -> &str {
    response.lines().next().unwrap_or("")
}

#[test]
fn answers_options_over_udp_and_tcp_rejects_malformed_and_stops_on_sigterm() {
    let mut proxy = Proxy::start();
    let to = proxy.addr;

    let r = udp_exchange(to, |me| options("UDP", me, to, "udp-options"));
    assert!(status_line(&r).starts_with("SIP/2.0 200"), "{r}");
    assert!(r.contains("Call-ID: udp-options"), "{r}");

    let mut tcp = TcpStream::connect_timeout(&to, WAIT).unwrap();
    tcp.set_read_timeout(Some(WAIT)).unwrap();
    let me = tcp.local_addr().unwrap();
    tcp.write_all(options("TCP", me, to, "tcp-options").as_bytes())
        .unwrap();
    let r = read_response(&mut tcp);
    assert!(status_line(&r).starts_with("SIP/2.0 200"), "{r}");

    let r = udp_exchange(to, |me| {
        options("UDP", me, to, "bad-cseq").replace("CSeq: 1 OPTIONS", "CSeq: one OPTIONS")
    });
    assert!(status_line(&r).starts_with("SIP/2.0 400"), "{r}");

    let t0 = Instant::now();
    proxy.signal(libc::SIGTERM);
    let status = proxy.wait_exit(Duration::from_secs(GRACE_SECS + 2));
    assert!(status.success(), "{status:?}");
    assert!(t0.elapsed() < Duration::from_secs(GRACE_SECS + 2));
}

#[test]
fn serves_the_shipped_default_config() {
    let mut proxy = Proxy::start_with(copy_shipped_config);
    let to = proxy.addr;
    let r = udp_exchange(to, |me| options("UDP", me, to, "shipped-options"));
    assert!(status_line(&r).starts_with("SIP/2.0 200"), "{r}");
    let cdr_dir = proxy._dir.path().join("var");
    assert!(cdr_dir.is_dir(), "the CDR file's directory was not created");
    proxy.signal(libc::SIGTERM);
    let status = proxy.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
}

#[test]
fn sigint_stops_cleanly_too() {
    let mut proxy = Proxy::start();
    proxy.signal(libc::SIGINT);
    proxy.wait_log("shutting down");
    let status = proxy.wait_exit(Duration::from_secs(GRACE_SECS + 2));
    assert!(status.success(), "{status:?}");
}

/// Reads one response (head and Content-Length body) from a TCP stream.
fn read_response(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text[..end]
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    let name = name.trim();
                    (name.eq_ignore_ascii_case("content-length") || name == "l")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if got.len() >= end + 4 + len {
                return text;
            }
        }
        let n = s.read(&mut buf).expect("read response");
        assert!(n > 0, "connection closed; got {text:?}");
        got.extend_from_slice(&buf[..n]);
    }
}

#[test]
fn invalid_settings_exit_1_listing_every_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.json");
    fs::write(
        &path,
        r#"{"listen": {"udp": ["nope"]}, "workers": -1, "shutdown_grace": "x"}"#,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_trunkstore"))
        .args(["serve", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    for path in ["listen.udp.0", "workers", "shutdown_grace"] {
        assert!(text.contains(path), "missing {path} in\n{text}");
    }
}

#[test]
fn a_port_in_use_fails_startup_with_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
    let config = write_config(dir.path(), taken.local_addr().unwrap().port());
    let out = Command::new(env!("CARGO_BIN_EXE_trunkstore"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot start listeners"));
}
