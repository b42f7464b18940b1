//! The proxy under test: `trunkstore serve --config <settings>` in the test directory,
//! started and stopped like in production (ready when it answers OPTIONS, SIGTERM).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::config::ProxySetup;
use crate::harness::{Proc, TestDir};
use crate::raw;

/// Starting a debug build and loading a few documents takes well under this.
const START_LIMIT: Duration = Duration::from_secs(15);
/// A clean shutdown (SIGTERM) must not take longer than this.
const STOP_LIMIT: Duration = Duration::from_secs(10);

/// The binary under test: this build's, or `TRUNKSTORE_E2E_BIN` (e.g. a release build
/// for a run at full speed).
fn binary() -> PathBuf {
    std::env::var_os("TRUNKSTORE_E2E_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_trunkstore")))
}

pub struct Proxy {
    pub proc: Proc,
    pub port: u16,
}

impl Proxy {
    /// Starts the proxy and waits until it answers an OPTIONS from the trusted carrier
    /// source (the SIPp carrier binds that port only later, so it is free now).
    pub fn start(dir: &TestDir, settings: &Path, setup: &ProxySetup) -> Proxy {
        let mut cmd = Command::new(binary());
        cmd.arg("serve").arg("--config").arg(settings);
        let mut proxy = Proxy {
            proc: Proc::spawn("proxy", cmd, dir.path()),
            port: setup.port,
        };
        proxy.wait_ready(setup.carrier_port);
        proxy
    }

    fn wait_ready(&mut self, carrier_port: u16) {
        let deadline = Instant::now() + START_LIMIT;
        loop {
            if let Some(status) = self.proc.try_exit() {
                panic!(
                    "trunkstore serve exited ({status}) during startup:\n{}",
                    self.log()
                );
            }
            let reply = raw::options_ping(carrier_port, self.port, Duration::from_millis(200));
            if reply.is_some() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "trunkstore serve did not answer OPTIONS on udp 127.0.0.1:{} within {START_LIMIT:?}:\n{}",
                self.port,
                self.log()
            );
        }
    }

    /// The end of the proxy's own log, for failure messages.
    pub fn log(&self) -> String {
        format!(
            "\n--- proxy log ({}) ---\n{}",
            self.proc.output.display(),
            self.proc.output_tail(6000)
        )
    }

    /// SIGTERM, then the proxy must exit 0 within the limit.
    pub fn stop(mut self) -> Result<(), String> {
        if let Some(status) = self.proc.try_exit() {
            return Err(format!("proxy had already exited ({status}){}", self.log()));
        }
        self.proc.terminate();
        match self.proc.wait_or_kill(STOP_LIMIT) {
            Ok(status) if status.success() => Ok(()),
            Ok(status) => Err(format!(
                "proxy exited with {status} on SIGTERM{}",
                self.log()
            )),
            Err(why) => Err(format!("{why} (SIGTERM ignored){}", self.log())),
        }
    }
}
