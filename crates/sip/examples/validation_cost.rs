//! The codec's validation work for the core bench's call (benches/core.rs: the INVITE,
//! the relayed ACK, the BYE, and the three responses' checks), alone, under callgrind: a
//! quick, deterministic measure for changes to the views (`via`, `uri`, `nameaddr`,
//! `params`, `scan`, `headers`, `validate`) that needs no fat-LTO bench build.
//!
//! ```sh
//! cargo build --release -p trunkstore-sip --example validation_cost
//! valgrind --tool=callgrind --collect-atstart=no \
//!     --toggle-collect='validation_cost::measured' target/release/examples/validation_cost
//! # instructions per call = callgrind's total / 2000
//! ```
//!
//! The messages are written like the bench's (SIPp's `uac-did.xml` and `uas-rr.xml` on
//! loopback); the figures track the bench's codec share closely but are not it.
use bytes::Bytes;
use trunkstore_sip::limits::Limits;
use trunkstore_sip::message::Message;
use trunkstore_sip::parse::parse_datagram;
use trunkstore_sip::validate::*;

const SDP: &str = "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\n\
c=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

fn msgs(n: u64) -> Vec<Message> {
    let inv = format!(
        "INVITE sip:+15551234567@127.0.0.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-{n}-1-0\r\n\
         From: sipp <sip:sipp@127.0.0.1:5070>;tag={n}SIPpTag001\r\n\
         To: <sip:+15551234567@127.0.0.1:5060>\r\n\
         Call-ID: {n}-bench@127.0.0.1\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:sipp@127.0.0.1:5070;transport=UDP>\r\n\
         Max-Forwards: 70\r\n\
         Subject: Performance Test\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{SDP}",
        SDP.len()
    );
    let dlg = |m: &str, c: u32| {
        format!(
            "{m} sip:127.0.0.1:5090;transport=UDP SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-{n}-{c}-{m}\r\n\
         Route: <sip:127.0.0.1:5060;lr>\r\n\
         From: sipp <sip:sipp@127.0.0.1:5070>;tag={n}SIPpTag001\r\n\
         To: <sip:+15551234567@127.0.0.1:5060>;tag={n}SIPpTag011\r\n\
         Call-ID: {n}-bench@127.0.0.1\r\n\
         CSeq: {c} {m}\r\n\
         Contact: <sip:sipp@127.0.0.1:5070;transport=UDP>\r\n\
         Max-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n"
        )
    };
    let resp = |code: &str| {
        format!(
            "SIP/2.0 {code}\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKts1.0a1b2c3d4e5f6789a0b1c2d3;rport=5060\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-{n}-1-0;received=127.0.0.1;rport=5070\r\n\
         Record-Route: <sip:127.0.0.1:5060;lr>\r\n\
         From: sipp <sip:sipp@127.0.0.1:5070>;tag={n}SIPpTag001\r\n\
         To: <sip:+15551234567@127.0.0.1:5090>;tag={n}SIPpTag011\r\n\
         Call-ID: {n}-bench@127.0.0.1\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:127.0.0.1:5090;transport=UDP>\r\n\
         Content-Length: 0\r\n\r\n"
        )
    };
    [
        inv,
        dlg("ACK", 1),
        dlg("BYE", 2),
        resp("180 Ringing"),
        resp("200 OK"),
        resp("200 OK"),
    ]
    .into_iter()
    .map(|s| parse_datagram(Bytes::from(s), &Limits::default()).unwrap())
    .collect()
}

#[inline(never)]
fn measured(m: &[Message]) -> usize {
    let o = ValidateOptions::default();
    let mut k = 0;
    k += validate_request_with(&m[0], &o).is_ok() as usize;
    k += check_relayed_ack(&m[1]).is_ok() as usize;
    k += validate_request_with(&m[2], &o).is_ok() as usize;
    for r in &m[3..] {
        k += check_response(r).is_ok() as usize;
    }
    k
}

fn main() {
    let all: Vec<Vec<Message>> = (0..2000u64).map(|n| msgs(1_000_000 + n)).collect();
    let mut k = 0;
    for m in &all {
        k += std::hint::black_box(measured(std::hint::black_box(m)));
    }
    assert_eq!(k, 6 * all.len());
    println!("{k}");
}
