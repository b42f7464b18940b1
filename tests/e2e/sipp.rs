//! Running SIPp peers: the PBX (UAS, background) and the carrier (UAC, foreground),
//! with every log in the test directory and a diagnosis to print when a run fails.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::OnceLock;
use std::time::Duration;

use crate::harness::{self, Proc, TestDir};

/// Seconds SIPp waits for any expected message before failing a call (-recv_timeout):
/// loopback answers in milliseconds, so this only bounds a broken run.
const RECV_TIMEOUT_MS: u32 = 5000;

/// The scenario files of this suite (tests/sipp), found from the crate, not the cwd.
pub fn scenario(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/sipp")
        .join(name);
    assert!(path.is_file(), "missing scenario {}", path.display());
    path
}

/// The `sipp` binary. Missing SIPp is a failure, never a skip: these tests are the
/// proof that calls cross the proxy.
pub fn sipp_binary() -> &'static Path {
    static SIPP: OnceLock<Option<PathBuf>> = OnceLock::new();
    SIPP.get_or_init(find_sipp).as_deref().unwrap_or_else(|| {
        panic!(
            "SIPp (`sipp`, Debian package sip-tester) is not installed: run ./tests/run.sh, \
             which installs it, or `apt-get install sip-tester`"
        )
    })
}

fn find_sipp() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("sipp"))
        .find(|candidate| candidate.is_file())
}

/// Transport between the carrier and the proxy.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Transport {
    Udp,
    Tcp,
}

/// One SIPp instance's names and files: `<name>.err` (unexpected messages, aborted
/// calls), `<name>.log` (the scenarios' <log> lines), `<name>.csv` (statistics),
/// `<name>.out` (stdout/stderr, ending with the final statistics screen).
pub struct SippFiles {
    pub name: String,
    pub dir: PathBuf,
}

impl SippFiles {
    fn new(dir: &TestDir, name: &str) -> SippFiles {
        SippFiles {
            name: name.to_string(),
            dir: dir.path().to_path_buf(),
        }
    }

    fn path(&self, ext: &str) -> PathBuf {
        self.dir.join(format!("{}.{ext}", self.name))
    }

    /// Trace options writing into this instance's files.
    fn trace_args(&self, cmd: &mut Command) {
        cmd.arg("-trace_err")
            .arg("-error_file")
            .arg(self.path("err"))
            .arg("-trace_logs")
            .arg("-log_file")
            .arg(self.path("log"))
            .arg("-trace_stat")
            .arg("-stf")
            .arg(self.path("csv"))
            .args(["-fd", "1"]);
    }

    /// What to print when this instance failed: its error log, log lines and screen.
    pub fn diagnosis(&self) -> String {
        let mut out = String::new();
        for (what, ext, max) in [
            ("error log", "err", 6000),
            ("scenario log", "log", 2000),
            ("output", "out", 3000),
        ] {
            let _ = write!(
                out,
                "\n--- {} {what} ({}) ---\n{}",
                self.name,
                self.path(ext).display(),
                harness::tail(&self.path(ext), max)
            );
        }
        out
    }

    /// Successful and failed call counts from the last statistics line (-trace_stat).
    pub fn call_counts(&self) -> Option<(u64, u64)> {
        let text = fs::read_to_string(self.path("csv")).ok()?;
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        let header: Vec<&str> = lines.next()?.split(';').collect();
        let last: Vec<&str> = lines.next_back()?.split(';').collect();
        let column = |name: &str| -> Option<u64> {
            let i = header.iter().position(|h| *h == name)?;
            last.get(i)?.trim().parse().ok()
        };
        Some((column("SuccessfulCall(C)")?, column("FailedCall(C)")?))
    }
}

/// The base command: scenario, local address, no keyboard, bounded receive waits.
fn base_command(scenario_file: &str, local_port: u16) -> Command {
    let mut cmd = Command::new(sipp_binary());
    cmd.arg("-sf")
        .arg(scenario(scenario_file))
        .args(["-i", "127.0.0.1", "-p", &local_port.to_string()])
        .arg("-nostdin")
        .args(["-recv_timeout", &RECV_TIMEOUT_MS.to_string()]);
    cmd
}

/// A SIPp UAS (the PBX) running in the background until it has handled `calls` calls.
pub struct Uas {
    pub proc: Proc,
    pub files: SippFiles,
    pub calls: u64,
}

impl Uas {
    /// Starts the UAS and waits until it listens. `max_secs` bounds its whole life:
    /// `-timeout_error` makes an unfinished run (calls that never came) a failure.
    pub fn start(
        dir: &TestDir,
        name: &str,
        scenario_file: &str,
        port: u16,
        calls: u64,
        max_secs: u64,
    ) -> Uas {
        Uas::start_with(dir, name, scenario_file, port, calls, max_secs, &[])
    }

    /// As [`Uas::start`], with more SIPp arguments (`-lost 20`…).
    pub fn start_with(
        dir: &TestDir,
        name: &str,
        scenario_file: &str,
        port: u16,
        calls: u64,
        max_secs: u64,
        extra: &[&str],
    ) -> Uas {
        let files = SippFiles::new(dir, name);
        let mut cmd = base_command(scenario_file, port);
        cmd.args(["-m", &calls.to_string()])
            .args(["-timeout", &format!("{max_secs}s"), "-timeout_error"])
            .args(extra);
        files.trace_args(&mut cmd);
        let mut proc = Proc::spawn(name, cmd, dir.path());
        harness::wait_udp_bound(&mut proc, port, Duration::from_secs(5));
        Uas { proc, files, calls }
    }

    /// Waits (bounded) for the UAS to finish and checks every call succeeded.
    pub fn finish(mut self, limit: Duration) -> Result<(), String> {
        let status = self.proc.wait_or_kill(limit);
        check_run(&self.files, status, self.calls)
    }
}

/// A finished SIPp UAC (the carrier) run.
pub struct UacRun {
    pub files: SippFiles,
    pub status: Result<ExitStatus, String>,
    pub calls: u64,
}

impl UacRun {
    /// SIPp exits 0 only when every call succeeded; also check the statistics agree.
    pub fn check(&self) -> Result<(), String> {
        check_run(&self.files, self.status.clone(), self.calls)
    }
}

/// What a carrier run sends: scenario, injection file lines, rate, extra options.
pub struct Uac<'a> {
    pub name: &'a str,
    pub scenario: &'a str,
    pub proxy_port: u16,
    pub local_port: u16,
    pub transport: Transport,
    /// One call per line; fields separated by ';' (see the scenario's header).
    pub lines: Vec<String>,
    pub rate: u32,
    pub extra: Vec<String>,
}

impl Uac<'_> {
    /// Runs the UAC in the foreground: `-m` calls (one per injection line), at `rate`
    /// calls/s, killed if it outlives the time the calls need plus a margin.
    pub fn run(&self, dir: &TestDir) -> UacRun {
        let calls = self.lines.len() as u64;
        self.run_for(dir, calls / u64::from(self.rate.max(1)) + 20)
    }

    /// As [`Uac::run`], bounded by `max_secs` (SIPp's -timeout) instead: for a run that
    /// waits on purpose, e.g. a PBX that registers and then waits for its inbound call.
    pub fn run_for(&self, dir: &TestDir, max_secs: u64) -> UacRun {
        self.start(dir, max_secs).wait()
    }

    /// Starts the UAC in the background (bounded by `max_secs` like [`Uac::run_for`]):
    /// for calls held while the test acts (a node killed under them, a Redis restart).
    pub fn start(&self, dir: &TestDir, max_secs: u64) -> UacRunning {
        let files = SippFiles::new(dir, self.name);
        let csv = files.path("inf");
        let mut text = String::from("SEQUENTIAL\n");
        for line in &self.lines {
            text.push_str(line);
            text.push_str(";\n");
        }
        fs::write(&csv, text).expect("write injection file");

        let calls = self.lines.len() as u64;
        let mut cmd = base_command(self.scenario, self.local_port);
        cmd.arg(format!("127.0.0.1:{}", self.proxy_port))
            .arg("-inf")
            .arg(&csv)
            .args(["-m", &calls.to_string(), "-r", &self.rate.to_string()])
            .args(["-timeout", &format!("{max_secs}s"), "-timeout_error"])
            .args(&self.extra);
        if self.transport == Transport::Tcp {
            cmd.args(["-t", "t1"]);
        }
        files.trace_args(&mut cmd);
        UacRunning {
            proc: Proc::spawn(self.name, cmd, dir.path()),
            files,
            calls,
            max_secs,
        }
    }
}

/// A carrier run started with [`Uac::start`]; dropping it kills SIPp.
pub struct UacRunning {
    pub proc: Proc,
    files: SippFiles,
    calls: u64,
    max_secs: u64,
}

impl UacRunning {
    /// Waits for the run to end (bounded) and returns its outcome.
    pub fn wait(mut self) -> UacRun {
        // SIPp 3.6's -timeout does not always end stuck calls: bound the process too.
        let status = self
            .proc
            .wait_or_kill(Duration::from_secs(self.max_secs + 10));
        UacRun {
            files: self.files,
            status,
            calls: self.calls,
        }
    }
}

/// Exit code 0 and, when statistics exist, `calls` successful and none failed; else
/// the reason with the instance's logs.
fn check_run(
    files: &SippFiles,
    status: Result<ExitStatus, String>,
    calls: u64,
) -> Result<(), String> {
    let counts = files.call_counts();
    let verdict = match status {
        Err(why) => Err(why),
        Ok(status) if !status.success() => Err(format!(
            "{} failed ({status}); calls (successful, failed) = {counts:?}",
            files.name
        )),
        Ok(_) => match counts {
            Some((ok, failed)) if ok != calls || failed != 0 => Err(format!(
                "{}: {ok} successful and {failed} failed calls, expected {calls} and 0",
                files.name
            )),
            _ => Ok(()),
        },
    };
    verdict.map_err(|why| format!("{why}{}", files.diagnosis()))
}
