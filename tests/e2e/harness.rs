//! Process and port plumbing shared by the end-to-end tests: per-test directories and
//! ports, child processes that die with the test, bounded waits.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

/// Everything runs on loopback only.
pub const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// How often bounded waits look again. Short: the waits are for fast local events.
const POLL: Duration = Duration::from_millis(20);

/// A per-test scratch directory holding settings, documents and every log. Kept on disk
/// when `TRUNKSTORE_E2E_KEEP` is set, so a failure can be inspected after the run.
pub struct TestDir {
    /// Removes the directory on drop (None when kept).
    _cleanup: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl TestDir {
    pub fn new(test: &str) -> TestDir {
        let dir = tempfile::Builder::new()
            .prefix(&format!("trunkstore-e2e-{test}-"))
            .tempdir()
            .expect("create test directory");
        let path = dir.path().to_path_buf();
        if std::env::var_os("TRUNKSTORE_E2E_KEEP").is_some() {
            eprintln!("[{test}] keeping {}", path.display());
            return TestDir {
                _cleanup: None,
                path: dir.keep(),
            };
        }
        TestDir {
            _cleanup: Some(dir),
            path,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path().join(name)
    }
}

pub use crate::ports::free_port;

pub fn addr(port: u16) -> SocketAddr {
    SocketAddr::from((LOOPBACK, port))
}

/// Serialises the heavy load tests: two cores are shared with the other tests, and two
/// 1000-call runs at once would turn CPU starvation into SIP retransmissions.
pub fn load_lock() -> MutexGuard<'static, ()> {
    static LOAD: Mutex<()> = Mutex::new(());
    LOAD.lock().unwrap_or_else(|e| e.into_inner())
}

/// A child process that is killed (and reaped) when dropped, so a failing test never
/// leaves a proxy or SIPp behind.
pub struct Proc {
    pub name: String,
    child: Option<Child>,
    /// stdout+stderr of the process.
    pub output: PathBuf,
}

impl Proc {
    /// Starts `cmd` in `cwd` with stdin closed and stdout/stderr into `<cwd>/<name>.out`.
    pub fn spawn(name: &str, mut cmd: Command, cwd: &Path) -> Proc {
        let output = cwd.join(format!("{name}.out"));
        let out = fs::File::create(&output).expect("create process output file");
        let err = out.try_clone().expect("clone output file");
        let child = cmd
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name} ({cmd:?}): {e}"));
        Proc {
            name: name.to_string(),
            child: Some(child),
            output,
        }
    }

    pub fn id(&self) -> u32 {
        self.child.as_ref().expect("process is running").id()
    }

    /// `Some(status)` once the process has exited.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        child.try_wait().expect("poll child")
    }

    /// Waits up to `limit` for the process to exit; kills it (and says so) otherwise.
    pub fn wait_or_kill(&mut self, limit: Duration) -> Result<ExitStatus, String> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.try_exit() {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(format!(
                    "{} still running after {limit:?}: killed",
                    self.name
                ));
            }
            thread::sleep(POLL);
        }
    }

    /// Asks the process to stop (SIGTERM); `std` only offers SIGKILL.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.id().to_string()])
            .status()
            .expect("run kill -TERM");
        assert!(status.success(), "kill -TERM {} failed", self.name);
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The last `max` bytes of the process output, for failure messages.
    pub fn output_tail(&self, max: usize) -> String {
        tail(&self.output, max)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The last `max` bytes of a file (lossy UTF-8), or a note that it is missing.
pub fn tail(path: &Path, max: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let start = bytes.len().saturating_sub(max);
            String::from_utf8_lossy(&bytes[start..]).into_owned()
        }
        Err(e) => format!("({}: {e})", path.display()),
    }
}

/// Whether some socket is bound to UDP `port` on loopback or any address, read from
/// /proc so that probing cannot steal the port from the process about to bind it.
pub fn udp_port_bound(port: u16) -> bool {
    let wanted = format!(":{port:04X}");
    ["/proc/net/udp", "/proc/net/udp6"].iter().any(|table| {
        fs::read_to_string(table).is_ok_and(|text| {
            text.lines()
                .skip(1)
                .filter_map(|line| line.split_whitespace().nth(1))
                .any(|local| local.ends_with(&wanted))
        })
    })
}

/// Waits (bounded) until `proc` has bound UDP `port`; fails early if it exits first.
pub fn wait_udp_bound(proc: &mut Proc, port: u16, limit: Duration) {
    let deadline = Instant::now() + limit;
    while !udp_port_bound(port) {
        if let Some(status) = proc.try_exit() {
            panic!(
                "{} exited ({status}) before binding udp {port}:\n{}",
                proc.name,
                proc.output_tail(4000)
            );
        }
        assert!(
            Instant::now() < deadline,
            "{} did not bind udp {port} within {limit:?}",
            proc.name
        );
        thread::sleep(POLL);
    }
}
