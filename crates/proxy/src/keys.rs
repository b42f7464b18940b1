//! Transaction and dialog keys.
//!
//! Server transactions are keyed by a 128-bit keyed hash (SipHash with per-process random
//! keys, so peers cannot aim collisions) of the top Via branch, sent-by and method class
//! (RFC 3261 §17.2.3), or of the RFC 2543 fields for branchless Vias (§17.2.3 last
//! paragraph: Request-URI, From tag, Call-ID, CSeq number, top Via; the To tag too for
//! non-INVITE classes). Hashing the key instead of storing the texts keeps the lookup
//! allocation-free. Client transactions are keyed by the branch id we generated.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

/// Which transactions a request can match: ACK and CANCEL share the INVITE's branch but
/// CANCEL has its own transaction (§9.2); ACK matches the INVITE's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum MethodClass {
    Invite,
    Cancel,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct TxKey(pub u128);

/// A client transaction: our branch id, and whether it is the CANCEL sent on that branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ClientKey {
    pub id: u64,
    pub cancel: bool,
}

/// Dialog table key: a hash of the Call-ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct CallKey(pub u128);

/// What a timer refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum TimerTarget {
    Server(TxKey),
    /// A branch of the server transaction `TxKey`: index in its branch list.
    Branch(TxKey, u16),
}

/// Keyed hashing for table keys.
#[derive(Debug, Clone)]
pub(crate) struct KeyHasher {
    a: RandomState,
    b: RandomState,
}

impl Default for KeyHasher {
    fn default() -> Self {
        KeyHasher {
            a: RandomState::new(),
            b: RandomState::new(),
        }
    }
}

/// Parts up to this many bytes in all are framed into one stack buffer and hashed with
/// one `write` per hasher: SipHash's cost per `write` call, not per byte, dominates
/// these short keys (a branch, a host, a port).
const FRAMED: usize = 256;

impl KeyHasher {
    /// 128-bit hash of `parts` (each length-prefixed so boundaries matter).
    pub(crate) fn hash(&self, parts: &[&[u8]]) -> u128 {
        let mut ha = self.a.build_hasher();
        let mut hb = self.b.build_hasher();
        feed(parts, |bytes| {
            ha.write(bytes);
            hb.write(bytes);
        });
        (u128::from(ha.finish()) << 64) | u128::from(hb.finish())
    }

    pub(crate) fn u64(&self, parts: &[&[u8]]) -> u64 {
        let mut ha = self.a.build_hasher();
        feed(parts, |bytes| ha.write(bytes));
        ha.finish()
    }
}

/// Hands `write` the parts, each after its length (4 bytes, little-endian): in one
/// framed slice when they fit in [`FRAMED`] bytes, else part by part. Both ways give
/// an injective encoding of the list.
fn feed(parts: &[&[u8]], mut write: impl FnMut(&[u8])) {
    let total: usize = parts.iter().map(|p| 4 + p.len()).sum();
    if total <= FRAMED {
        let mut buf = [0u8; FRAMED];
        let mut n = 0;
        for p in parts {
            buf[n..n + 4].copy_from_slice(&(p.len() as u32).to_le_bytes());
            buf[n + 4..n + 4 + p.len()].copy_from_slice(p);
            n += 4 + p.len();
        }
        write(&buf[..n]);
    } else {
        for p in parts {
            write(&(p.len() as u32).to_le_bytes());
            write(p);
        }
    }
}

impl TxKey {
    /// The key of the same branch in another method class.
    pub(crate) fn with_class(base: u128, class: MethodClass) -> TxKey {
        let salt: u128 = match class {
            MethodClass::Invite => 0,
            MethodClass::Cancel => 0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834,
            MethodClass::Other => 0x6a09_e667_f3bc_c908_bb67_ae85_84ca_a73b,
        };
        TxKey(base ^ salt)
    }
}

/// `BuildHasher` for the transaction, client and dialog tables. Their keys are already
/// uniformly spread secrets (keyed SipHash outputs, or our random branch ids), so hashing
/// them again with SipHash, the map default, only costs time; one multiply and fold
/// spreads their bits over the word (the map takes both the low bits and the top 7).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SpreadKeys;

impl std::hash::BuildHasher for SpreadKeys {
    type Hasher = SpreadHasher;

    fn build_hasher(&self) -> SpreadHasher {
        SpreadHasher(0)
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct SpreadHasher(u64);

impl SpreadHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        let x = u128::from(self.0 ^ word) * 0x9e37_79b9_7f4a_7c15;
        self.0 = (x as u64) ^ ((x >> 64) as u64);
    }
}

impl Hasher for SpreadHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
    }

    #[inline]
    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    #[inline]
    fn write_u128(&mut self, n: u128) {
        self.add(n as u64 ^ (n >> 64) as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fed(parts: &[&[u8]]) -> (Vec<u8>, usize) {
        let (mut bytes, mut writes) = (Vec::new(), 0);
        feed(parts, |b| {
            bytes.extend_from_slice(b);
            writes += 1;
        });
        (bytes, writes)
    }

    #[test]
    fn parts_are_framed_once_when_short_and_the_same_bytes_when_long() {
        let (short, writes) = fed(&[b"z9hG4bK-1", b"127.0.0.1", b""]);
        assert_eq!(writes, 1);
        assert_eq!(short, b"\x09\0\0\0z9hG4bK-1\x09\0\0\x00127.0.0.1\0\0\0\0");
        let long = [b'x'; 300];
        let (bytes, writes) = fed(&[b"ab", &long]);
        assert_eq!(writes, 4);
        let mut want = b"\x02\0\0\0ab\x2c\x01\0\0".to_vec();
        want.extend_from_slice(&long);
        assert_eq!(bytes, want);
    }

    #[test]
    fn boundaries_between_parts_matter() {
        let h = KeyHasher::default();
        assert_ne!(h.hash(&[b"ab", b"c"]), h.hash(&[b"a", b"bc"]));
        assert_eq!(h.hash(&[b"ab", b"c"]), h.hash(&[b"ab", b"c"]));
        assert_ne!(h.u64(&[b"ab", b""]), h.u64(&[b"a", b"b"]));
    }
}
