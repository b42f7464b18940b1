//! Call detail records: one JSON line per finished call, appended to the settings'
//! `cdr.file` by a writer thread, never on the packet path.
//!
//! The core queues a [`CallRecord`] on the worker's shard when a call ends; the edge
//! (`drive`, after every round of events) moves each one into a bounded channel
//! through the [`CdrSink`] given to [`Edge::start_recording`](crate::Edge::start_recording)
//! (`try_send`: a full channel drops the record and counts it, it never blocks a worker). The writer thread turns the core's `Instant`s into
//! wall-clock times with a (`SystemTime`, `Instant`) pair taken at start, formats the line
//! and appends it; it flushes whenever the channel is momentarily empty, so records reach
//! the file within milliseconds and nothing is lost at exit beyond what is in flight.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use trunkstore_proxy::CallRecord;

/// Records in flight between the workers and the writer. At 1,000 calls/s this is over
/// a minute of a stalled disk.
const CHANNEL: usize = 65_536;

/// The workers' end: a bounded sender and a count of records dropped on overflow.
#[derive(Clone)]
pub struct CdrSink {
    tx: SyncSender<CallRecord>,
    dropped: Arc<AtomicU64>,
}

impl CdrSink {
    /// Queues a record for the writer without blocking (dropped and counted when full).
    pub(crate) fn send(&self, r: CallRecord) {
        match self.tx.try_send(r) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                // Powers of two: a stalled disk is reported without flooding the log.
                if n.is_power_of_two() {
                    tracing::warn!(dropped = n, "CDR writer behind: call records dropped");
                }
            }
        }
    }
}

/// The writer thread; it ends when every [`CdrSink`] is dropped.
pub struct CdrWriter {
    thread: Option<JoinHandle<()>>,
}

impl CdrWriter {
    /// Waits for the writer to write what is queued and exit (call after the last sink,
    /// i.e. the edge, is gone), but gives up after `limit` (a sink still held somewhere
    /// must not hang the shutdown); true when the writer finished.
    pub fn join_within(mut self, limit: std::time::Duration) -> bool {
        let deadline = Instant::now() + limit;
        let Some(t) = self.thread.take() else {
            return true;
        };
        while !t.is_finished() {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let _ = t.join();
        true
    }
}

/// Opens `path` for appending and starts the writer thread. The file and its directory are
/// created if missing: the shipped config names `var/cdr.jsonl`, and an operator expects a
/// fresh checkout to start, not to fail on a directory nobody made.
pub fn start(path: &Path) -> io::Result<(CdrSink, CdrWriter)> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    let (tx, rx) = mpsc::sync_channel(CHANNEL);
    let clock = (SystemTime::now(), Instant::now());
    let thread = std::thread::Builder::new()
        .name("ts-cdr".into())
        .spawn(move || write_loop(rx, BufWriter::new(file), clock))?;
    let sink = CdrSink {
        tx,
        dropped: Arc::new(AtomicU64::new(0)),
    };
    Ok((
        sink,
        CdrWriter {
            thread: Some(thread),
        },
    ))
}

fn write_loop(rx: Receiver<CallRecord>, mut out: BufWriter<File>, clock: (SystemTime, Instant)) {
    let mut line = String::with_capacity(512);
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(r) = next {
            line.clear();
            format_record(&r, clock, &mut line);
            if let Err(e) = out.write_all(line.as_bytes()) {
                tracing::warn!(error = %e, "cannot write a call record");
            }
            next = rx.try_recv().ok();
        }
        // The channel is empty for now: put what we have on disk.
        if let Err(e) = out.flush() {
            tracing::warn!(error = %e, "cannot flush call records");
        }
    }
}

/// One JSON line (with its newline).
fn format_record(r: &CallRecord, clock: (SystemTime, Instant), out: &mut String) {
    let wall = |at: Instant| wall_ms(at, clock);
    out.push('{');
    field_bytes(out, "call_id", &r.call_id);
    field_str(out, "direction", Some(r.direction));
    field_str(out, "account", r.account.as_deref());
    field_str(out, "document", r.document.as_deref());
    field_str(out, "server", r.server.as_deref());
    field_str(out, "did", r.did.as_deref());
    field_bytes(out, "from", &r.from);
    field_bytes(out, "to", &r.to);
    field_time(out, "start", Some(wall(r.started)));
    field_time(out, "answer", r.answered.map(wall));
    field_time(out, "end", Some(wall(r.ended)));
    let _ = write!(out, "\"final_code\":{},", r.status);
    field_str(out, "end_reason", Some(r.reason));
    match r.answered_attempt {
        Some(n) => {
            let _ = write!(out, "\"answered_attempt\":{n},");
        }
        None => out.push_str("\"answered_attempt\":null,"),
    }
    let _ = write!(
        out,
        "\"failover\":{},\"trunk_held\":{},",
        r.failover, r.trunk_held
    );
    field_str(out, "media", Some(r.media));
    match r.media_instance {
        Some(a) => {
            let _ = writeln!(out, "\"media_instance\":\"{a}\"}}");
        }
        None => out.push_str("\"media_instance\":null}\n"),
    }
}

/// Milliseconds since the Unix epoch of a core `Instant`.
fn wall_ms(at: Instant, (sys, mono): (SystemTime, Instant)) -> i64 {
    let base = sys
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    if at >= mono {
        base + (at - mono).as_millis() as i64
    } else {
        base - (mono - at).as_millis() as i64
    }
}

fn field_str(out: &mut String, name: &str, v: Option<&str>) {
    let _ = write!(out, "\"{name}\":");
    match v {
        Some(s) => push_json_string(out, s),
        None => out.push_str("null"),
    }
    out.push(',');
}

fn field_bytes(out: &mut String, name: &str, v: &Bytes) {
    field_str(out, name, Some(&String::from_utf8_lossy(v)));
}

fn field_time(out: &mut String, name: &str, ms: Option<i64>) {
    let _ = write!(out, "\"{name}\":");
    match ms {
        Some(ms) => {
            out.push('"');
            rfc3339_ms(ms, out);
            out.push('"');
        }
        None => out.push_str("null"),
    }
    out.push(',');
}

/// Appends `s` as a JSON string literal (RFC 8259 escapes); also used for the
/// registrar's bindings file.
pub fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for milliseconds since the epoch (UTC; proleptic
/// Gregorian, days-to-civil of H. Hinnant).
fn rfc3339_ms(ms: i64, out: &mut String) {
    let secs = ms.div_euclid(1000);
    let milli = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let _ = write!(
        out,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{milli:03}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_dates() {
        let mut s = String::new();
        rfc3339_ms(0, &mut s);
        assert_eq!(s, "1970-01-01T00:00:00.000Z");
        s.clear();
        rfc3339_ms(951_782_400_123, &mut s); // leap day
        assert_eq!(s, "2000-02-29T00:00:00.123Z");
        s.clear();
        rfc3339_ms(1_767_225_599_999, &mut s);
        assert_eq!(s, "2025-12-31T23:59:59.999Z");
    }

    fn record(now: Instant) -> CallRecord {
        CallRecord {
            call_id: Bytes::from_static(b"c\"1"),
            direction: "inbound",
            account: Some("acc".into()),
            document: None,
            server: Some("pbx".into()),
            did: Some("+14155551234".into()),
            from: Bytes::from_static(b"+12125550100"),
            to: Bytes::from_static(b"4155551234"),
            started: now,
            answered: Some(now + Duration::from_millis(1500)),
            ended: now + Duration::from_secs(10),
            status: 200,
            reason: "bye",
            answered_attempt: Some(2),
            failover: true,
            trunk_held: false,
            media: "anchored",
            media_instance: Some("127.0.0.1:2223".parse().unwrap()),
        }
    }

    #[test]
    fn line_format() {
        let now = Instant::now();
        let clock = (UNIX_EPOCH + Duration::from_secs(1_000_000_000), now);
        let mut line = String::new();
        format_record(&record(now), clock, &mut line);
        assert_eq!(
            line,
            "{\"call_id\":\"c\\\"1\",\"direction\":\"inbound\",\"account\":\"acc\",\
             \"document\":null,\"server\":\"pbx\",\"did\":\"+14155551234\",\
             \"from\":\"+12125550100\",\"to\":\"4155551234\",\
             \"start\":\"2001-09-09T01:46:40.000Z\",\"answer\":\"2001-09-09T01:46:41.500Z\",\
             \"end\":\"2001-09-09T01:46:50.000Z\",\"final_code\":200,\"end_reason\":\"bye\",\
             \"answered_attempt\":2,\"failover\":true,\"trunk_held\":false,\
             \"media\":\"anchored\",\"media_instance\":\"127.0.0.1:2223\"}\n"
        );
    }

    #[test]
    fn writer_appends_lines() {
        let dir = std::env::temp_dir().join(format!("ts-cdr-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("cdr.jsonl");
        let _ = std::fs::remove_file(&path);
        let (sink, writer) = start(&path).unwrap();
        for _ in 0..3 {
            sink.send(record(Instant::now()));
        }
        drop(sink);
        assert!(writer.join_within(Duration::from_secs(5)));
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 3);
        assert!(text.lines().all(|l| l.starts_with('{') && l.ends_with('}')));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn writer_creates_missing_directories() {
        let dir = std::env::temp_dir().join(format!("ts-cdr-dirs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("var").join("cdr.jsonl");
        let (sink, writer) = start(&path).unwrap();
        sink.send(record(Instant::now()));
        drop(sink);
        assert!(writer.join_within(Duration::from_secs(5)));
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
