//! Our Via branch: `z9hG4bK` + 16 hex digits of a per-branch id + 8 hex digits of the
//! loop-detection hash (RFC 3261 §16.6 step 8, §16.3 step 4).
//!
//! The id is derived from the server transaction key and the attempt number, so it is
//! unique per branch and stable for the life of the transaction (our retransmissions
//! resend the same bytes). The loop hash covers the fields that make a request "the same
//! request" for loop detection (Request-URI as received, Call-ID, From tag, To tag, CSeq
//! number): a request that comes back to us with them unchanged is a loop (482); with a
//! different Request-URI it is a spiral and is proxied again.

use trunkstore_sip::via::MAGIC_COOKIE;

use crate::util::{hex32, hex64, parse_hex};

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
    let id = parse_hex(branch.get(7..23)?)?;
    let lh = parse_hex(branch.get(23..31)?)?;
    Some((id, lh as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let b = write(0xdead_beef_0123_4567, 0x89ab_cdef);
        assert!(b.starts_with(b"z9hG4bK"));
        assert_eq!(parse(&b), Some((0xdead_beef_0123_4567, 0x89ab_cdef)));
        assert_eq!(parse(b"z9hG4bK776asdhds"), None);
    }
}
