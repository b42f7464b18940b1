//! `redis-server` in the foreground on 127.0.0.1, no snapshots; its log in its directory.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{free_port, signal, wait_until};

/// How long a `redis-server` may take to accept connections.
const START_LIMIT: Duration = Duration::from_secs(10);

/// A running `redis-server`, killed when dropped.
pub struct Redis {
    child: Option<Child>,
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: PathBuf,
    args: Vec<String>,
    _temp: Option<tempfile::TempDir>,
}

impl Redis {
    /// On a free port with no persistence at all, in a directory of its own; `args` are
    /// appended to the command line (e.g. `--requirepass`).
    pub fn start(args: &[&str]) -> Redis {
        Redis::start_on(free_port(), args)
    }

    /// The same on `port` (a restart of a server the test stopped).
    pub fn start_on(port: u16, args: &[&str]) -> Redis {
        let temp = tempfile::tempdir().expect("a directory for redis-server");
        let mut redis = Redis::start_in(temp.path(), port, args);
        redis._temp = Some(temp);
        redis
    }

    /// On `port` with its data and log (`redis-<port>.log`) in `dir`, which outlives it:
    /// with `--appendonly yes` in `args` a restart keeps what was written.
    pub fn start_in(dir: &Path, port: u16, args: &[&str]) -> Redis {
        let mut redis = Redis {
            child: None,
            port,
            dir: dir.to_path_buf(),
            args: args.iter().map(|a| a.to_string()).collect(),
            _temp: None,
        };
        redis.spawn();
        redis
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Its process id (for SIGSTOP/SIGCONT).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("redis-server is running").id()
    }

    /// Freezes it (SIGSTOP): connections stay open, nothing is answered.
    pub fn pause(&self) {
        signal(self.pid(), libc::SIGSTOP);
    }

    /// Thaws a paused server (SIGCONT).
    pub fn resume(&self) {
        signal(self.pid(), libc::SIGCONT);
    }

    /// Stops it as an operator would (SIGTERM: Redis flushes its append-only file) and
    /// waits for the exit, killing it after 10 s.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        signal(child.id(), libc::SIGTERM);
        let exited = wait_until(START_LIMIT, || child.try_wait().ok().flatten().is_some());
        if !exited {
            let _ = child.kill();
        }
        let _ = child.wait();
    }

    /// Kills it (SIGKILL: a crash, nothing flushed) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops it if running and starts it again on the same port, directory and arguments.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    fn spawn(&mut self) {
        let log = self.dir.join(format!("redis-{}.log", self.port));
        let out = File::create(&log).expect("redis-server log file");
        let err = out.try_clone().expect("redis-server log file");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("redis-server (tests/run.sh installs it)");
        self.child = Some(child);
        let port = self.port;
        let up = wait_until(START_LIMIT, || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(
            up,
            "redis-server did not start on {port}: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}
