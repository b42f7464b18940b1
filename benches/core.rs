//! The proxy core's CPU per call, without I/O: the SIPp rig's call (INVITE / 180 / 200 /
//! ACK / BYE / 200, record-routed, inbound to a DID with `npan` rewriting), fed through
//! the sans-IO core on a virtual clock at 1000 calls per virtual second, timers firing as
//! they fall due, routed by a snapshot of `benches/sipp/config`.
//!
//! `cargo bench -p trunkstore-benches --bench core`
//!
//! Only the core's own calls are timed (`handle_datagram`, `handle_timeouts`); the
//! messages of the carrier and the PBX are made outside the timed part. Criterion's
//! warm-up runs well past 64·T1 of virtual time, so the figure is the steady state where
//! transactions expire as fast as they are made (no heap growth).
//!
//! Instructions per call, deterministic (what each change to the packet path is judged by):
//!
//! ```sh
//! cargo build --release -p trunkstore-benches --benches
//! CORE_CALLS=40000,5000 valgrind --tool=callgrind --collect-atstart=no \
//!     --toggle-collect='core::measured' target/release/deps/core-<hash>
//! ```
//!
//! `CORE_CALLS=WARM,MEASURED` skips criterion: it runs WARM calls (past 64·T1 of virtual
//! time, the steady state), then MEASURED calls whose core work goes through `measured`
//! (only the core's calls, not the bench's own message making), and prints the count;
//! instructions per call = callgrind's total / MEASURED.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, Criterion};
use trunkstore_config::load_all;
use trunkstore_proxy::{Peer, Proxy, ProxyConfig, Shard, Transmit, Transport};
use trunkstore_routing::{Router, Snapshot};
use trunkstore_sip::build::{self, ResponseOptions};
use trunkstore_sip::limits::Limits;
use trunkstore_sip::message::{HeaderName, Message};
use trunkstore_sip::parse::parse_datagram;

/// Counts heap allocations, to report allocations per call next to the time.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const PROXY: &str = "127.0.0.1:5060";
const UAC: &str = "127.0.0.1:5070";
const UAS: &str = "127.0.0.1:5090";
/// Virtual time between calls: 1000 calls per second, the rig's CPU-measuring rate.
const CALL_GAP: Duration = Duration::from_millis(1);

fn udp(s: &str) -> Peer {
    Peer {
        transport: Transport::Udp,
        addr: s.parse().unwrap(),
    }
}

/// The proxy on the bench configuration, and a virtual clock.
struct Rig {
    proxy: Proxy,
    shard: Shard,
    now: Instant,
    local: SocketAddr,
    calls: u64,
    /// Time spent inside the core.
    busy: Duration,
    /// Heap allocations made inside the core.
    allocations: u64,
    /// Whether the core's calls go through `measured` (callgrind's collection window).
    measuring: bool,
}

impl Rig {
    fn new() -> Rig {
        let settings = Path::new(env!("CARGO_MANIFEST_DIR")).join("sipp/config/trunkstore.json");
        let catalog = load_all(&settings).unwrap_or_else(|e| panic!("bench config: {e:?}"));
        let cfg = ProxyConfig::from_settings(catalog.settings());
        let router = Router::new(Snapshot::build(&catalog));
        let proxy = Proxy::new(cfg, Arc::new(router));
        let shard = proxy.new_shard();
        Rig {
            proxy,
            shard,
            now: Instant::now(),
            local: PROXY.parse().unwrap(),
            calls: 0,
            busy: Duration::ZERO,
            allocations: 0,
            measuring: false,
        }
    }

    /// Runs `step` (the core's own work), inside callgrind's window when measuring.
    fn core_work(&mut self, step: impl FnOnce(&mut Rig)) {
        if self.measuring {
            measured(|| step(self));
        } else {
            step(self);
        }
    }

    /// Feeds one datagram and returns what the core sent.
    fn feed(&mut self, from: &str, data: Bytes) -> Vec<Transmit> {
        // The source address is parsed here, outside the measured part: the edge gets it
        // from the socket as a `SocketAddr`, never as text (parsing it cost ~2,000
        // instructions per call in the core's count).
        let from = udp(from);
        let allocated = ALLOCATIONS.load(Ordering::Relaxed);
        let start = Instant::now();
        let mut out = Vec::with_capacity(2);
        let step = |rig: &mut Rig, out: &mut Vec<Transmit>| {
            rig.proxy
                .handle_datagram(&mut rig.shard, rig.now, from, rig.local, data);
            out.extend(std::iter::from_fn(|| rig.shard.poll_transmit()));
        };
        self.core_work(|rig| step(rig, &mut out));
        self.busy += start.elapsed();
        // The one allocation of `out` is the bench's, not the core's.
        self.allocations += ALLOCATIONS.load(Ordering::Relaxed) - allocated - 1;
        out
    }

    /// Moves the virtual clock on by one call gap, firing what falls due.
    fn tick(&mut self) {
        self.now += CALL_GAP;
        let allocated = ALLOCATIONS.load(Ordering::Relaxed);
        let start = Instant::now();
        let step = |rig: &mut Rig| {
            if rig.shard.poll_timeout().is_some_and(|at| at <= rig.now) {
                rig.proxy.handle_timeouts(&mut rig.shard, rig.now);
                while rig.shard.poll_transmit().is_some() {}
            }
        };
        self.core_work(step);
        self.busy += start.elapsed();
        self.allocations += ALLOCATIONS.load(Ordering::Relaxed) - allocated;
    }

    /// One whole call; panics if the core does not forward what the rig expects.
    fn call(&mut self) {
        self.calls += 1;
        let n = self.calls;
        let did = 14155550000 + n % 1000;
        let invite = self.feed(UAC, uac_invite(n, did));
        let fwd = invite
            .into_iter()
            .find(|t| t.to == udp(UAS))
            .expect("INVITE forwarded to the PBX");
        let fwd = parse(&fwd.data);
        assert!(self.feed(UAS, uas_reply(&fwd, 180, b"Ringing", n)).len() == 1);
        let ok = self.feed(UAS, uas_reply(&fwd, 200, b"OK", n));
        assert_eq!(ok.len(), 1, "200 relayed");
        assert_eq!(self.feed(UAC, uac_in_dialog("ACK", n, did, 1)).len(), 1);
        let bye = self.feed(UAC, uac_in_dialog("BYE", n, did, 2));
        assert_eq!(bye.len(), 1, "BYE forwarded");
        let bye = parse(&bye[0].data);
        assert_eq!(self.feed(UAS, uas_reply(&bye, 200, b"OK", n)).len(), 1);
        self.tick();
    }
}

/// The callgrind collection window (`--toggle-collect='core::measured'`): the core's work
/// of the measured calls runs inside it, the bench's own work outside.
#[inline(never)]
fn measured(f: impl FnOnce()) {
    f()
}

/// `CORE_CALLS=WARM,MEASURED`: whole calls without criterion, for callgrind.
fn callgrind_run(spec: &str) {
    let (warm, measure) = spec
        .split_once(',')
        .and_then(|(w, m)| Some((w.trim().parse::<u64>().ok()?, m.trim().parse::<u64>().ok()?)))
        .expect("CORE_CALLS=WARM,MEASURED (two call counts)");
    let mut rig = Rig::new();
    for _ in 0..warm {
        rig.call();
    }
    rig.measuring = true;
    let allocated = rig.allocations;
    for _ in 0..measure {
        rig.call();
    }
    println!(
        "{warm} warm-up calls, {measure} measured calls: {:.1} core allocations per call",
        (rig.allocations - allocated) as f64 / measure as f64
    );
}

fn parse(data: &Bytes) -> Message {
    parse_datagram(data.clone(), &Limits::default()).expect("proxy output parses")
}

const SDP: &str = "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\n\
c=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

/// SIPp's `uac-did.xml` INVITE.
fn uac_invite(n: u64, did: u64) -> Bytes {
    Bytes::from(format!(
        "INVITE sip:+{did}@{PROXY} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {UAC};branch=z9hG4bK-{n}-1-0\r\n\
         From: sipp <sip:sipp@{UAC}>;tag={n}SIPpTag001\r\n\
         To: <sip:+{did}@{PROXY}>\r\n\
         Call-ID: {n}-bench@127.0.0.1\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:sipp@{UAC};transport=UDP>\r\n\
         Max-Forwards: 70\r\n\
         Subject: Performance Test\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{SDP}",
        SDP.len()
    ))
}

/// The UAC's ACK or BYE, routed by the Record-Route the 200 carried.
fn uac_in_dialog(method: &str, n: u64, did: u64, cseq: u32) -> Bytes {
    Bytes::from(format!(
        "{method} sip:{UAS};transport=UDP SIP/2.0\r\n\
         Via: SIP/2.0/UDP {UAC};branch=z9hG4bK-{n}-{cseq}-{method}\r\n\
         Route: <sip:{PROXY};lr>\r\n\
         From: sipp <sip:sipp@{UAC}>;tag={n}SIPpTag001\r\n\
         To: <sip:+{did}@{PROXY}>;tag={n}SIPpTag011\r\n\
         Call-ID: {n}-bench@127.0.0.1\r\n\
         CSeq: {cseq} {method}\r\n\
         Contact: <sip:sipp@{UAC};transport=UDP>\r\n\
         Max-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n"
    ))
}

/// SIPp's `uas-rr.xml` answer: Vias and Record-Route copied, a To tag, a Contact.
fn uas_reply(req: &Message, code: u16, reason: &[u8], n: u64) -> Bytes {
    let rr: Vec<&[u8]> = req.headers(HeaderName::RecordRoute).collect();
    let mut headers: Vec<(&[u8], &[u8])> = rr.iter().map(|v| (&b"Record-Route"[..], *v)).collect();
    let contact = format!("<sip:{UAS};transport=UDP>");
    headers.push((b"Contact", contact.as_bytes()));
    let tag = format!("{n}SIPpTag011");
    let opts = ResponseOptions {
        to_tag: (req.method_bytes() == b"INVITE").then_some(tag.as_bytes()),
        headers: &headers,
        body: None,
    };
    build::response(req, code, reason, &opts).expect("reply builds")
}

fn core(c: &mut Criterion) {
    let mut rig = Rig::new();
    let mut g = c.benchmark_group("core");
    // Warm-up past 64·T1 (32 s) of virtual time at one call per virtual ms.
    g.warm_up_time(Duration::from_secs(8))
        .measurement_time(Duration::from_secs(10))
        .sample_size(20);
    g.bench_function("udp_call_inbound_npan", |b| {
        b.iter_custom(|iters| {
            rig.busy = Duration::ZERO;
            for _ in 0..iters {
                rig.call();
            }
            rig.busy
        })
    });
    g.finish();
    let stats = rig.proxy.stats();
    println!(
        "after {} calls: {:.1} core allocations per call, {} server and {} client transactions, \
         {} calls live, {} timers queued",
        rig.calls,
        rig.allocations as f64 / rig.calls as f64,
        stats.server_transactions,
        stats.client_transactions,
        stats.calls,
        rig.shard.pending_timers()
    );
}

criterion_group!(benches, core);

fn main() {
    if let Ok(spec) = std::env::var("CORE_CALLS") {
        callgrind_run(&spec);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
