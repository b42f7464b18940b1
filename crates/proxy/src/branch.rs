//! Our Via branch: `z9hG4bK` + 16 hex digits of a per-branch id + 8 hex digits of the
//! loop-detection hash (RFC 3261 §16.6 step 8, §16.3 step 4).
//!
//! The id is derived from the server transaction key and the attempt number, so it is
//! unique per branch and stable for the life of the transaction (our retransmissions
//! resend the same bytes). The loop hash covers the fields that make a request "the same
//! request" for loop detection (Request-URI as received, Call-ID, From tag, To tag, CSeq
//! number): a request that comes back to us with them unchanged is a loop (482); with a
//! different Request-URI it is a spiral and is proxied again.

use trunkstore_sip::message::{HeaderName, Message};
use trunkstore_sip::via::MAGIC_COOKIE;

use crate::util::{hex32, hex64, hex8};

pub(crate) const BRANCH_LEN: usize = 7 + 16 + 8;

/// The branch text.
pub(crate) fn write(id: u64, loop_hash: u32) -> [u8; BRANCH_LEN] {
    let mut b = [0u8; BRANCH_LEN];
    b[..7].copy_from_slice(MAGIC_COOKIE);
    hex64(id, &mut b[7..23]);
    hex32(loop_hash, &mut b[23..31]);
    b
}

/// `(id, loop hash)` of a branch we generated; `None` for anyone else's.
pub(crate) fn parse(branch: &[u8]) -> Option<(u64, u32)> {
    if branch.len() != BRANCH_LEN || !branch.starts_with(MAGIC_COOKIE) {
        return None;
    }
    let hex = |at: usize| branch.get(at..at + 8)?.try_into().ok().and_then(hex8);
    let id = u64::from(hex(7)?) << 32 | u64::from(hex(15)?);
    Some((id, hex(23)?))
}

/// Whether any Via line of `msg` holds the text of `loop_hash` (8 hex digits, any case):
/// a Via whose branch [`parse`]s to that hash must. Loop detection asks this before
/// parsing every Via value (almost always no Via has it; the parse was ~1.6k
/// instructions per request, this is a byte scan).
pub(crate) fn vias_may_carry(msg: &Message, loop_hash: u32) -> bool {
    let mut text = [0u8; 8];
    hex32(loop_hash, &mut text);
    text.make_ascii_lowercase();
    msg.headers(HeaderName::Via)
        .any(|line| holds_ignore_case(line, &text))
}

/// `needle` (lowercase) anywhere in `hay`, ASCII case ignored.
fn holds_ignore_case(hay: &[u8], needle: &[u8; 8]) -> bool {
    // `| 0x20` lowercases a letter (and lets a few other bytes through, which the full
    // comparison then refuses): a cheap first-byte filter.
    hay.windows(needle.len())
        .any(|w| w[0] | 0x20 == needle[0] && w.eq_ignore_ascii_case(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg_with_vias(vias: &str) -> Message {
        let text = format!(
            "INVITE sip:a@b SIP/2.0\r\n{vias}From: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\n\
             Call-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        );
        trunkstore_sip::parse::parse_datagram(
            bytes::Bytes::from(text),
            &trunkstore_sip::limits::Limits::default(),
        )
        .unwrap()
    }

    #[test]
    fn a_via_holding_our_loop_hash_in_any_case_or_line_is_seen() {
        let b = write(7, 0x89ab_cdef);
        let ours = std::str::from_utf8(&b).unwrap();
        let upper = ours.to_ascii_uppercase().replace("Z9HG4BK", "z9hG4bK");
        for vias in [
            format!("Via: SIP/2.0/UDP 10.0.0.1;branch={ours}\r\n"),
            format!("Via: SIP/2.0/UDP 10.0.0.1;branch={upper}\r\n"),
            format!("Via: SIP/2.0/UDP 10.0.0.2;branch=z9hG4bKx\r\nv: SIP/2.0/UDP 10.0.0.1;branch={ours}\r\n"),
            format!("Via: SIP/2.0/UDP 10.0.0.2;branch=z9hG4bKx, SIP/2.0/UDP 10.0.0.1;branch={ours}\r\n"),
        ] {
            let m = msg_with_vias(&vias);
            assert!(vias_may_carry(&m, 0x89ab_cdef), "{vias}");
            assert!(!vias_may_carry(&m, 0x89ab_cdee), "{vias}");
        }
        let m = msg_with_vias("Via: SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK-89ab-cdef\r\n");
        assert!(!vias_may_carry(&m, 0x89ab_cdef));
    }

    #[test]
    fn round_trip() {
        let b = write(0xdead_beef_0123_4567, 0x89ab_cdef);
        assert!(b.starts_with(b"z9hG4bK"));
        assert_eq!(parse(&b), Some((0xdead_beef_0123_4567, 0x89ab_cdef)));
        assert_eq!(parse(b"z9hG4bK776asdhds"), None);
    }
}
