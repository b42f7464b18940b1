//! Targets named by DNS (issue 17, RFC 3263) with the real binary, a real DNS server
//! (dnsmasq, Debian `dnsmasq-base`, installed by tests/run.sh: the binary only) started
//! by the test on a loopback port (`trunkstore_testkit::Dnsmasq`), and SIPp parties on
//! loopback. The proxy's `dns.servers` point at that dnsmasq only: nothing is asked of the machine's resolver.
//!
//! dnsmasq's command line: foreground, our config and hosts files only (no
//! /etc/resolv.conf, no /etc/hosts, no upstream), loopback, names under `test.` answered
//! NXDOMAIN when unknown, TTL 1 s (see crates/testkit/src/dnsmasq.rs for each flag).

use std::fs;
use std::process::Command;

use serde_json::json;

use crate::harness::TestDir;

pub use trunkstore_testkit::Dnsmasq;

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
    let server = Dnsmasq::start(dir.path(), "", "127.0.0.1 gw.test\n");
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
