//! Heap allocations on the hot path, counted per thread with a wrapping allocator: parsing
//! an ordinary message allocates nothing, and a proxied INVITE (parse, edits, serialise)
//! allocates only its output buffer.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::Bytes;
use trunkstore_sip::edit::Editor;
use trunkstore_sip::framing::StreamFramer;
use trunkstore_sip::limits::Limits;
use trunkstore_sip::message::HeaderName;
use trunkstore_sip::parse::parse_datagram;
use trunkstore_sip::validate::validate_request;

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

const INVITE: &[u8] = b"INVITE sip:+15551234567@trunk.example.com;user=phone SIP/2.0\r\n\
Via: SIP/2.0/UDP 198.51.100.10:5060;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
To: <sip:+15551234567@trunk.example.com;user=phone>\r\n\
From: \"Alice\" <sip:+15557654321@pbx.example.net;user=phone>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.example.net\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:+15557654321@198.51.100.10:5060>\r\n\
Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, PRACK, UPDATE\r\n\
Supported: 100rel, timer\r\n\
Session-Expires: 1800\r\n\
P-Asserted-Identity: <sip:+15557654321@pbx.example.net;user=phone>\r\n\
User-Agent: pbx/1.0\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 137\r\n\
\r\n\
v=0\r\n\
o=- 1 1 IN IP4 198.51.100.10\r\n\
s=-\r\n\
c=IN IP4 198.51.100.10\r\n\
t=0 0\r\n\
m=audio 40000 RTP/AVP 0 8 101\r\n\
a=rtpmap:101 telephone-event/8000\r\n";

#[test]
fn parsing_allocates_nothing() {
    let bytes = Bytes::from_static(INVITE);
    let limits = Limits::default();
    let (m, n) = allocations(|| parse_datagram(bytes.clone(), &limits).unwrap());
    assert_eq!(n, 0);
    assert_eq!(m.body().len(), 137);
}

#[test]
fn proxied_invite_allocates_once() {
    let bytes = Bytes::from_static(INVITE);
    let limits = Limits::default();
    let (out, n) = allocations(|| {
        let m = parse_datagram(bytes.clone(), &limits).unwrap();
        let mut ed = Editor::new(&m);
        ed.set_request_uri(b"sip:+15551234567@10.0.0.5:5060")
            .unwrap();
        ed.push_via(b"SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKproxy1")
            .unwrap();
        ed.decrement_max_forwards().unwrap();
        ed.prepend_record_route(b"<sip:192.0.2.1;lr>").unwrap();
        ed.set_via_received(b"203.0.113.7", 5060).unwrap();
        ed.finish()
    });
    assert_eq!(n, 1, "only the output buffer");
    let m = parse_datagram(out, &limits).unwrap();
    assert_eq!(m.header(HeaderName::MaxForwards), Some(&b"69"[..]));
}

#[test]
fn validation_of_a_good_request_allocates_nothing() {
    let m = parse_datagram(Bytes::from_static(INVITE), &Limits::default()).unwrap();
    let (r, n) = allocations(|| validate_request(&m).is_ok());
    assert!(r);
    assert_eq!(n, 0);
}

#[test]
fn framing_reuses_the_receive_buffer() {
    let mut f = StreamFramer::new(Limits::default());
    let mut stream = Vec::new();
    for _ in 0..4 {
        stream.extend_from_slice(INVITE);
    }
    f.push(&stream);
    // Splitting messages off the buffer shares it: at most a small bookkeeping allocation
    // per message, never a copy of the bytes.
    let (count, n) = allocations(|| {
        let mut count = 0;
        while let Some(_m) = f.next_message().unwrap() {
            count += 1;
        }
        count
    });
    assert_eq!(count, 4);
    assert!(n <= 4, "{n} allocations");
}
