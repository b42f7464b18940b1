//! Codec benchmarks: parsing, validation, the proxy's edit-and-serialise path for a
//! request and a response, and TCP framing, on a realistic carrier INVITE (with SDP) and
//! the 200 OK that answers it.
//!
//! Targets (codec issue): parse ≤ 1 µs median, parse + proxy edits + serialise ≤ 2 µs,
//! at most 2 heap allocations per proxied message. Allocations are counted with a wrapping
//! global allocator and printed before the timings (they do not depend on the machine).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, BatchSize, Criterion, Throughput};
use trunkstore_sip::edit::Editor;
use trunkstore_sip::framing::StreamFramer;
use trunkstore_sip::limits::Limits;
use trunkstore_sip::message::Message;
use trunkstore_sip::parse::parse_datagram;
use trunkstore_sip::validate::{validate_request, validate_response};

/// Counts allocations per thread; a `Cell` increment costs next to nothing, so the
/// timings stay representative.
struct Counting;

thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = ALLOCS.with(Cell::get);
    let r = f();
    (r, ALLOCS.with(Cell::get) - before)
}

/// A carrier-style INVITE: PBX → trunk, E.164 numbers, SDP offering PCMU, PCMA and
/// telephone-event.
const INVITE: &str = concat!(
    "INVITE sip:+14155550123@trunk.carrier.example.com:5060;user=phone SIP/2.0\r\n",
    "Via: SIP/2.0/UDP 203.0.113.45:5060;branch=z9hG4bK-524287-1---7a9f3c2e1b8d4f60;rport\r\n",
    "Max-Forwards: 70\r\n",
    "From: \"Acme Sales\" <sip:+12125550199@pbx.acme.example.net;user=phone>;tag=as7d9f3c21\r\n",
    "To: \"Bob Smith\" <sip:+14155550123@trunk.carrier.example.com;user=phone>\r\n",
    "Call-ID: 3c26a8f0e1b94d2a9c7e5f41b0d2a6e8@203.0.113.45\r\n",
    "CSeq: 102 INVITE\r\n",
    "Contact: <sip:+12125550199@203.0.113.45:5060;transport=udp>\r\n",
    "Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, INFO, PRACK, UPDATE\r\n",
    "Supported: replaces, timer, 100rel\r\n",
    "P-Asserted-Identity: \"Acme Sales\" <sip:+12125550199@pbx.acme.example.net;user=phone>\r\n",
    "User-Agent: AcmePBX/13.2.1\r\n",
    "Content-Type: application/sdp\r\n",
    "Content-Length: 248\r\n",
    "\r\n",
    "v=0\r\n",
    "o=AcmePBX 192837465 192837465 IN IP4 203.0.113.45\r\n",
    "s=AcmePBX\r\n",
    "c=IN IP4 203.0.113.45\r\n",
    "t=0 0\r\n",
    "m=audio 18732 RTP/AVP 0 8 101\r\n",
    "a=rtpmap:0 PCMU/8000\r\n",
    "a=rtpmap:8 PCMA/8000\r\n",
    "a=rtpmap:101 telephone-event/8000\r\n",
    "a=fmtp:101 0-16\r\n",
    "a=ptime:20\r\n",
    "a=sendrecv\r\n",
);

/// The 200 OK coming back through this proxy (our Via on top, two Record-Routes).
const OK_200: &str = concat!(
    "SIP/2.0 200 OK\r\n",
    "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-ts-8f3a2c91d7e4b605\r\n",
    "Via: SIP/2.0/UDP 203.0.113.45:5060;branch=z9hG4bK-524287-1---7a9f3c2e1b8d4f60;rport=5060;received=203.0.113.45\r\n",
    "Record-Route: <sip:198.51.100.20;lr;ftag=as7d9f3c21>\r\n",
    "Record-Route: <sip:192.0.2.1;lr>\r\n",
    "From: \"Acme Sales\" <sip:+12125550199@pbx.acme.example.net;user=phone>;tag=as7d9f3c21\r\n",
    "To: \"Bob Smith\" <sip:+14155550123@trunk.carrier.example.com;user=phone>;tag=SDf2a1c04-9b3e\r\n",
    "Call-ID: 3c26a8f0e1b94d2a9c7e5f41b0d2a6e8@203.0.113.45\r\n",
    "CSeq: 102 INVITE\r\n",
    "Contact: <sip:+14155550123@198.51.100.20:5060;transport=udp>\r\n",
    "Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, PRACK, UPDATE\r\n",
    "Supported: timer\r\n",
    "Server: CarrierSBC/4.1\r\n",
    "Content-Type: application/sdp\r\n",
    "Content-Length: 215\r\n",
    "\r\n",
    "v=0\r\n",
    "o=CarrierSBC 5512 5512 IN IP4 198.51.100.30\r\n",
    "s=SBC\r\n",
    "c=IN IP4 198.51.100.30\r\n",
    "t=0 0\r\n",
    "m=audio 31544 RTP/AVP 0 101\r\n",
    "a=rtpmap:0 PCMU/8000\r\n",
    "a=rtpmap:101 telephone-event/8000\r\n",
    "a=fmtp:101 0-16\r\n",
    "a=ptime:20\r\n",
    "a=sendrecv\r\n",
);

/// What the proxy writes when it forwards.
const NEXT_HOP: &[u8] = b"sip:+14155550123@10.20.30.40:5060;user=phone";
const OUR_VIA: &[u8] = b"SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-ts-8f3a2c91d7e4b605";
const OUR_RR: &[u8] = b"<sip:192.0.2.1;lr>";
const SOURCE_IP: &[u8] = b"203.0.113.45";

fn limits() -> Limits {
    Limits::default()
}

fn parse(b: &Bytes) -> Message {
    parse_datagram(b.clone(), &limits()).expect("bench message parses")
}

/// The request path of a stateless-ish proxy: parse, then the §16.6 edits, then serialise.
fn proxy_invite(b: &Bytes, limits: &Limits) -> Bytes {
    let m = parse_datagram(b.clone(), limits).expect("parse");
    let mut ed = Editor::new(&m);
    ed.set_request_uri(NEXT_HOP).expect("ruri");
    ed.push_via(OUR_VIA).expect("via");
    ed.decrement_max_forwards().expect("max-forwards");
    ed.prepend_record_route(OUR_RR).expect("record-route");
    ed.set_via_received(SOURCE_IP, 5060).expect("received");
    ed.finish()
}

/// The response path: parse, drop our Via, serialise.
fn proxy_response(b: &Bytes, limits: &Limits) -> Bytes {
    let m = parse_datagram(b.clone(), limits).expect("parse");
    let mut ed = Editor::new(&m);
    ed.remove_top_via().expect("via");
    ed.finish()
}

/// A TCP byte stream carrying `n` INVITE/200 pairs.
fn stream(n: usize) -> Vec<u8> {
    let mut s = Vec::with_capacity(n * (INVITE.len() + OK_200.len()));
    for _ in 0..n {
        s.extend_from_slice(INVITE.as_bytes());
        s.extend_from_slice(OK_200.as_bytes());
    }
    s
}

/// Pushes `data` in `chunk`-sized reads (a typical MSS) and drains every message.
fn frame_all(data: &[u8], chunk: usize) -> usize {
    let mut f = StreamFramer::new(limits());
    let mut count = 0;
    for c in data.chunks(chunk) {
        f.push(c);
        while let Some(m) = f.next_message().expect("framing") {
            black_box(&m);
            count += 1;
        }
    }
    count
}

/// Checks the fixtures and prints allocation counts; panics if a target is missed so a
/// regression cannot hide in a long bench log.
fn report_allocations() {
    assert!(
        (900..=1000).contains(&INVITE.len()),
        "INVITE is {} bytes",
        INVITE.len()
    );
    let inv = Bytes::from_static(INVITE.as_bytes());
    let ok = Bytes::from_static(OK_200.as_bytes());
    validate_request(&parse(&inv)).expect("bench INVITE is valid");
    validate_response(&parse(&ok)).expect("bench 200 is valid");
    let l = limits();
    let (_, parse_n) = allocations(|| parse(&inv));
    let (_, validate_n) = {
        let m = parse(&inv);
        allocations(|| validate_request(&m).is_ok())
    };
    let (out, invite_n) = allocations(|| proxy_invite(&inv, &l));
    let (_, resp_n) = allocations(|| proxy_response(&ok, &l));
    println!(
        "codec fixtures: INVITE {} bytes (proxied {} bytes), 200 OK {} bytes",
        INVITE.len(),
        out.len(),
        OK_200.len()
    );
    println!(
        "allocations: parse INVITE {parse_n}, validate INVITE {validate_n}, \
         proxied INVITE {invite_n}, proxied 200 {resp_n}"
    );
    assert!(invite_n <= 2 && resp_n <= 2, "allocation target missed");
}

fn bench_parse(c: &mut Criterion) {
    let inv = Bytes::from_static(INVITE.as_bytes());
    let ok = Bytes::from_static(OK_200.as_bytes());
    let l = limits();
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Elements(1));
    g.bench_function("invite", |b| {
        b.iter(|| parse_datagram(black_box(&inv).clone(), &l).unwrap())
    });
    g.bench_function("200_ok", |b| {
        b.iter(|| parse_datagram(black_box(&ok).clone(), &l).unwrap())
    });
    g.finish();
}

fn bench_validate(c: &mut Criterion) {
    let inv = parse(&Bytes::from_static(INVITE.as_bytes()));
    let ok = parse(&Bytes::from_static(OK_200.as_bytes()));
    let mut g = c.benchmark_group("validate");
    g.bench_function("invite", |b| {
        b.iter(|| validate_request(black_box(&inv)).is_ok())
    });
    g.bench_function("200_ok", |b| {
        b.iter(|| validate_response(black_box(&ok)).is_ok())
    });
    g.finish();
}

fn bench_proxy(c: &mut Criterion) {
    let inv = Bytes::from_static(INVITE.as_bytes());
    let ok = Bytes::from_static(OK_200.as_bytes());
    let l = limits();
    let mut g = c.benchmark_group("proxy");
    g.bench_function("invite_parse_edit_serialise", |b| {
        b.iter(|| proxy_invite(black_box(&inv), &l))
    });
    g.bench_function("200_parse_pop_via_serialise", |b| {
        b.iter(|| proxy_response(black_box(&ok), &l))
    });
    g.finish();
}

fn bench_framing(c: &mut Criterion) {
    const PAIRS: usize = 16;
    let data = stream(PAIRS);
    let mut g = c.benchmark_group("framing");
    g.throughput(Throughput::Elements(2 * PAIRS as u64));
    g.bench_function("tcp_1460_byte_reads_32_msgs", |b| {
        b.iter_batched(
            || data.as_slice(),
            |d| assert_eq!(frame_all(d, 1460), 2 * PAIRS),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("tcp_one_read_32_msgs", |b| {
        b.iter(|| assert_eq!(frame_all(black_box(&data), data.len()), 2 * PAIRS))
    });
    g.finish();
}

fn config() -> Criterion {
    // Short runs: the figures are stable to a few percent well within these times.
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(60)
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_parse, bench_validate, bench_proxy, bench_framing
}

fn main() {
    report_allocations();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
