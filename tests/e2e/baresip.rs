//! A real softphone: baresip (libre's SIP stack), headless, placing one call through the
//! proxy. Its own config directory in the test directory: UDP on 127.0.0.1 only, no
//! audio hardware (a generated sine as source, no player), no registration (the proxy
//! has no registrar), every request through the proxy as outbound proxy.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use crate::harness::{self, free_port, Proc, TestDir};

/// The `baresip` binary. Missing baresip is a failure, never a skip (as SIPp).
pub fn baresip_binary() -> &'static Path {
    static BARESIP: OnceLock<Option<PathBuf>> = OnceLock::new();
    BARESIP
        .get_or_init(find_baresip)
        .as_deref()
        .unwrap_or_else(|| {
            panic!(
                "baresip (`baresip`, Debian package baresip-core) is not installed: run \
                 ./tests/run.sh, which installs it, or `apt-get install baresip-core`"
            )
        })
}

fn find_baresip() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("baresip"))
        .find(|candidate| candidate.is_file())
}

/// Where Debian's baresip-core keeps its modules.
const MODULE_PATH: &str = "/usr/lib/baresip/modules";

/// The account a softphone calls with (a password server of the documents).
pub struct Account<'a> {
    pub user: &'a str,
    pub password: &'a str,
    /// The AOR's host, hence the From host (the proxy picks the realm from it).
    pub domain: &'a str,
}

/// A baresip run that dials one number at start and quits after `quit_after`.
pub struct Softphone {
    pub proc: Proc,
    pub quit_after: Duration,
}

impl Softphone {
    /// Writes the config directory `<test dir>/<name>` and starts baresip dialling
    /// `sip:<number>@<domain>` through the proxy on 127.0.0.1:`proxy_port`. `-s` puts its
    /// SIP trace in `<name>.out`.
    pub fn dial(
        dir: &TestDir,
        name: &str,
        account: &Account<'_>,
        proxy_port: u16,
        number: &str,
        quit_after: Duration,
    ) -> Softphone {
        let binary = baresip_binary();
        let conf = dir.path().join(name);
        fs::create_dir_all(&conf).expect("create baresip config directory");
        fs::write(conf.join("config"), config(free_port())).expect("write baresip config");
        fs::write(conf.join("accounts"), accounts(account, proxy_port))
            .expect("write baresip accounts");
        // Present but empty: baresip would otherwise write its templates here.
        fs::write(conf.join("contacts"), "").expect("write baresip contacts");
        let mut cmd = Command::new(binary);
        cmd.arg("-f")
            .arg(&conf)
            .arg("-e")
            .arg(format!("/dial sip:{number}@{}", account.domain))
            .args(["-t", &quit_after.as_secs().max(1).to_string()])
            .arg("-s");
        let proc = Proc::spawn(name, cmd, dir.path());
        Softphone { proc, quit_after }
    }

    /// Waits (bounded) for baresip to quit on its own; its whole output (SIP trace and
    /// call events), or why it did not exit cleanly.
    pub fn finish(mut self) -> Result<String, String> {
        let status = self
            .proc
            .wait_or_kill(self.quit_after + Duration::from_secs(10));
        let output = fs::read_to_string(&self.proc.output).unwrap_or_default();
        match status {
            Ok(s) if s.success() => Ok(output),
            Ok(s) => Err(format!("baresip exited with {s}:\n{output}")),
            Err(why) => Err(format!("{why}:\n{output}")),
        }
    }
}

/// Headless and loopback only: SIP over UDP on 127.0.0.1:`sip_port`; the audio source
/// is ausine, which only runs at 48 kHz stereo (hence the resampled source rate), and
/// there is no player module (received audio is dropped). RTP ports below Linux's
/// ephemeral range, so they never take a port [`free_port`] handed to another test. Only
/// the modules a call needs.
fn config(sip_port: u16) -> String {
    format!(
        "poll_method\t\tpoll\n\
         sip_listen\t\t127.0.0.1:{sip_port}\n\
         sip_trans_def\t\tudp\n\
         net_interface\t\t127.0.0.1\n\
         audio_source\t\tausine,440\n\
         audio_player\t\tnone,none\n\
         audio_alert\t\tnone,none\n\
         ausrc_srate\t\t48000\n\
         ausrc_channels\t\t2\n\
         rtp_ports\t\t20000-29999\n\
         module_path\t\t{MODULE_PATH}\n\
         module\t\t\tg711.so\n\
         module\t\t\tausine.so\n\
         module_app\t\taccount.so\n\
         module_app\t\tmenu.so\n"
    )
}

/// One account, never registering (`regint=0`), every request to the proxy
/// (`outbound`), digest password for the proxy's 407.
fn accounts(a: &Account<'_>, proxy_port: u16) -> String {
    let proxy = harness::addr(proxy_port);
    format!(
        "<sip:{}@{}>;auth_pass={};outbound=\"sip:{proxy}\";regint=0\n",
        a.user, a.domain, a.password
    )
}
