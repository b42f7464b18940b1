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

/// Keyed hashing for table keys: SipHash-1-3 (the rounds of std's `RandomState`) with a
/// per-process random 128-bit key, its 128-bit output for [`KeyHasher::hash`] in one
/// pass. A keyed pseudo-random function, so a peer that sees outputs for inputs of its
/// choice (our Via branch mixes the transaction key) cannot aim collisions at other
/// keys. Written out here instead of two `RandomState` hashers so that the parts are read
/// word by word where they lie (no framing copy, no per-`write` tail buffering) and a
/// 128-bit key costs one pass, not two.
#[derive(Debug, Clone)]
pub(crate) struct KeyHasher {
    k0: u64,
    k1: u64,
}

impl Default for KeyHasher {
    fn default() -> Self {
        // Two outputs of std's randomly keyed SipHash: a random 128-bit key without a
        // random-number crate.
        let seed = RandomState::new();
        KeyHasher {
            k0: seed.hash_one(0u8),
            k1: seed.hash_one(1u8),
        }
    }
}

impl KeyHasher {
    /// 128-bit hash of `parts` (the list encoded injectively, see [`absorb`]).
    #[inline]
    pub(crate) fn hash(&self, parts: &[&[u8]]) -> u128 {
        let mut s = Sip::<1, 3>::new(self.k0, self.k1, true);
        absorb(&mut s, parts);
        s.finish128()
    }

    /// 64-bit hash of `parts` (SipHash's 64-bit form: unrelated to [`KeyHasher::hash`]
    /// of the same parts).
    #[inline]
    pub(crate) fn u64(&self, parts: &[&[u8]]) -> u64 {
        let mut s = Sip::<1, 3>::new(self.k0, self.k1, false);
        absorb(&mut s, parts);
        s.finish64()
    }
}

/// Feeds `parts` to `s` as 64-bit words: a header (the count, then each length as a u16,
/// four a word, or as a u64, one a word, when one is longer than 65,535 bytes, which
/// the count word says), then each part's whole words and its last 1-7 bytes as one
/// word ([`tail_word`]). The header fixes where every part's words start and how many
/// bytes its last word holds, so the word sequence is an injective encoding of the list;
/// SipHash of that byte string is then a keyed PRF of the list.
#[inline(always)]
fn absorb<const C: usize, const D: usize>(s: &mut Sip<C, D>, parts: &[&[u8]]) {
    let wide = parts.iter().any(|p| p.len() > usize::from(u16::MAX));
    s.word(parts.len() as u64 | u64::from(wide) << 63);
    if wide {
        for p in parts {
            s.word(p.len() as u64);
        }
    } else {
        for four in parts.chunks(4) {
            let mut w = 0u64;
            for (i, p) in four.iter().enumerate() {
                w |= (p.len() as u64) << (16 * i);
            }
            s.word(w);
        }
    }
    for p in parts {
        let mut words = p.chunks_exact(8);
        for w in &mut words {
            s.word(u64::from_le_bytes([
                w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7],
            ]));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            s.word(tail_word(rest));
        }
    }
}

/// The last 1-7 bytes of a part as one word, by at most two loads: overlapping 4-byte
/// loads from both ends for 4-7 bytes, first / middle / last byte for 1-3. Together they
/// cover every byte, so the word and the length (known from the header) give the bytes
/// back.
#[inline]
fn tail_word(t: &[u8]) -> u64 {
    let r = t.len();
    if r >= 4 {
        let lo = u32::from_le_bytes([t[0], t[1], t[2], t[3]]);
        let hi = u32::from_le_bytes([t[r - 4], t[r - 3], t[r - 2], t[r - 1]]);
        u64::from(lo) | u64::from(hi) << 32
    } else {
        u64::from(t[0]) | u64::from(t[r / 2]) << 8 | u64::from(t[r - 1]) << 16
    }
}

/// SipHash-C-D state (Aumasson and Bernstein), fed whole 64-bit words.
#[derive(Clone, Copy)]
struct Sip<const C: usize, const D: usize> {
    v0: u64,
    v1: u64,
    v2: u64,
    v3: u64,
    /// Words fed so far: the message length for the final block.
    words: u64,
}

impl<const C: usize, const D: usize> Sip<C, D> {
    /// `wide`: the 128-bit output form.
    #[inline(always)]
    fn new(k0: u64, k1: u64, wide: bool) -> Self {
        Sip {
            v0: k0 ^ 0x736f_6d65_7073_6575,
            v1: k1 ^ 0x646f_7261_6e64_6f6d ^ if wide { 0xee } else { 0 },
            v2: k0 ^ 0x6c79_6765_6e65_7261,
            v3: k1 ^ 0x7465_6462_7974_6573,
            words: 0,
        }
    }

    #[inline(always)]
    fn round(&mut self) {
        self.v0 = self.v0.wrapping_add(self.v1);
        self.v1 = self.v1.rotate_left(13) ^ self.v0;
        self.v0 = self.v0.rotate_left(32);
        self.v2 = self.v2.wrapping_add(self.v3);
        self.v3 = self.v3.rotate_left(16) ^ self.v2;
        self.v0 = self.v0.wrapping_add(self.v3);
        self.v3 = self.v3.rotate_left(21) ^ self.v0;
        self.v2 = self.v2.wrapping_add(self.v1);
        self.v1 = self.v1.rotate_left(17) ^ self.v2;
        self.v2 = self.v2.rotate_left(32);
    }

    #[inline(always)]
    fn compress(&mut self, m: u64) {
        self.v3 ^= m;
        for _ in 0..C {
            self.round();
        }
        self.v0 ^= m;
    }

    #[inline(always)]
    fn word(&mut self, m: u64) {
        self.compress(m);
        self.words += 1;
    }

    /// The final block: the message length (mod 256) in the top byte, over `tail` (the
    /// last 0-7 bytes, which the word-fed encoding never has).
    #[inline(always)]
    fn close(&mut self, len: u64, tail: u64) {
        self.compress(len << 56 | tail);
    }

    #[inline(always)]
    fn out(&mut self) -> u64 {
        for _ in 0..D {
            self.round();
        }
        self.v0 ^ self.v1 ^ self.v2 ^ self.v3
    }

    #[inline(always)]
    fn finish64(mut self) -> u64 {
        self.close(self.words.wrapping_mul(8), 0);
        self.v2 ^= 0xff;
        self.out()
    }

    /// The 128-bit form: first output word in the low half.
    #[inline(always)]
    fn finish128(mut self) -> u128 {
        self.close(self.words.wrapping_mul(8), 0);
        self.v2 ^= 0xee;
        let a = self.out();
        self.v1 ^= 0xdd;
        let b = self.out();
        u128::from(a) | u128::from(b) << 64
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
    use proptest::prelude::*;

    /// SipHash-C-D of a byte string, the reference way (tail bytes in the final block).
    fn reference<const C: usize, const D: usize>(k: (u64, u64), m: &[u8], wide: bool) -> Vec<u8> {
        let mut s = Sip::<C, D>::new(k.0, k.1, wide);
        let mut words = m.chunks_exact(8);
        for w in &mut words {
            s.compress(u64::from_le_bytes(w.try_into().unwrap()));
        }
        let mut tail = 0u64;
        for (i, b) in words.remainder().iter().enumerate() {
            tail |= u64::from(*b) << (8 * i);
        }
        s.close(m.len() as u64 & 0xff, tail);
        if wide {
            s.v2 ^= 0xee;
            let a = s.out();
            s.v1 ^= 0xdd;
            let b = s.out();
            [a.to_le_bytes(), b.to_le_bytes()].concat()
        } else {
            s.v2 ^= 0xff;
            s.out().to_le_bytes().to_vec()
        }
    }

    /// The byte string [`absorb`] feeds SipHash for `parts`.
    fn encoding(parts: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        let wide = parts.iter().any(|p| p.len() > 65535);
        out.extend_from_slice(&(parts.len() as u64 | u64::from(wide) << 63).to_le_bytes());
        if wide {
            for p in parts {
                out.extend_from_slice(&(p.len() as u64).to_le_bytes());
            }
        } else {
            for four in parts.chunks(4) {
                let mut w = [0u8; 8];
                for (i, p) in four.iter().enumerate() {
                    w[2 * i..2 * i + 2].copy_from_slice(&(p.len() as u16).to_le_bytes());
                }
                out.extend_from_slice(&w);
            }
        }
        for p in parts {
            let whole = p.len() / 8 * 8;
            out.extend_from_slice(&p[..whole]);
            let rest = &p[whole..];
            if !rest.is_empty() {
                out.extend_from_slice(&tail_word(rest).to_le_bytes());
            }
        }
        out
    }

    const KEY: (u64, u64) = (0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908);

    #[test]
    fn the_rounds_give_the_siphash_2_4_reference_vectors() {
        // vectors_sip64 / vectors_sip128 of the reference implementation: key 00..0f,
        // message 00..(n-1).
        let msg: Vec<u8> = (0..16).collect();
        let sip64: [(usize, [u8; 8]); 4] = [
            (0, [0x31, 0x0e, 0x0e, 0xdd, 0x47, 0xdb, 0x6f, 0x72]),
            (1, [0xfd, 0x67, 0xdc, 0x93, 0xc5, 0x39, 0xf8, 0x74]),
            (2, [0x5a, 0x4f, 0xa9, 0xd9, 0x09, 0x80, 0x6c, 0x0d]),
            (15, [0xe5, 0x45, 0xbe, 0x49, 0x61, 0xca, 0x29, 0xa1]),
        ];
        for (n, want) in sip64 {
            assert_eq!(reference::<2, 4>(KEY, &msg[..n], false), want, "sip64 {n}");
        }
        let sip128: [(usize, [u8; 16]); 3] = [
            (
                0,
                [
                    0xa3, 0x81, 0x7f, 0x04, 0xba, 0x25, 0xa8, 0xe6, 0x6d, 0xf6, 0x72, 0x14, 0xc7,
                    0x55, 0x02, 0x93,
                ],
            ),
            (
                15,
                [
                    0x54, 0x93, 0xe9, 0x99, 0x33, 0xb0, 0xa8, 0x11, 0x7e, 0x08, 0xec, 0x0f, 0x97,
                    0xcf, 0xc3, 0xd9,
                ],
            ),
            (
                16,
                [
                    0x6e, 0xe2, 0xa4, 0xca, 0x67, 0xb0, 0x54, 0xbb, 0xfd, 0x33, 0x15, 0xbf, 0x85,
                    0x23, 0x05, 0x77,
                ],
            ),
        ];
        for (n, want) in sip128 {
            assert_eq!(reference::<2, 4>(KEY, &msg[..n], true), want, "sip128 {n}");
        }
    }

    #[test]
    fn boundaries_between_parts_matter() {
        let h = KeyHasher::default();
        assert_ne!(h.hash(&[b"ab", b"c"]), h.hash(&[b"a", b"bc"]));
        assert_eq!(h.hash(&[b"ab", b"c"]), h.hash(&[b"ab", b"c"]));
        assert_ne!(h.u64(&[b"ab", b""]), h.u64(&[b"a", b"b"]));
        assert_ne!(h.u64(&[b"ab"]), h.u64(&[b"ab", b""]));
        assert_ne!(h.hash(&[b"z9hG4bK-1"]), u128::from(h.u64(&[b"z9hG4bK-1"])));
    }

    #[test]
    fn tail_words_keep_every_byte() {
        for r in 1..8usize {
            let base: Vec<u8> = (1..=r as u8).collect();
            for i in 0..r {
                let mut other = base.clone();
                other[i] ^= 0x80;
                assert_ne!(tail_word(&base), tail_word(&other), "r {r} byte {i}");
            }
        }
    }

    fn parts_strategy() -> impl Strategy<Value = Vec<Vec<u8>>> {
        prop::collection::vec(prop::collection::vec(0u8..4, 0..20), 0..9)
    }

    proptest! {
        /// The word-fed hash is SipHash-1-3 of the encoding, and the encoding is
        /// injective: two lists encode alike only when they are the same list.
        #[test]
        fn hash_is_siphash13_of_an_injective_encoding(a in parts_strategy(), b in parts_strategy()) {
            let h = KeyHasher { k0: KEY.0, k1: KEY.1 };
            let ra: Vec<&[u8]> = a.iter().map(|p| p.as_slice()).collect();
            let rb: Vec<&[u8]> = b.iter().map(|p| p.as_slice()).collect();
            let wide = reference::<1, 3>(KEY, &encoding(&ra), true);
            prop_assert_eq!(h.hash(&ra).to_le_bytes().to_vec(), wide);
            let narrow = reference::<1, 3>(KEY, &encoding(&ra), false);
            prop_assert_eq!(h.u64(&ra).to_le_bytes().to_vec(), narrow);
            prop_assert_eq!(encoding(&ra) == encoding(&rb), a == b);
        }
    }

    #[test]
    fn long_parts_take_the_wide_header() {
        let h = KeyHasher {
            k0: KEY.0,
            k1: KEY.1,
        };
        let long = vec![7u8; 70_000];
        let parts: [&[u8]; 2] = [b"ab", &long];
        assert_eq!(
            h.hash(&parts).to_le_bytes().to_vec(),
            reference::<1, 3>(KEY, &encoding(&parts), true)
        );
        let enc = encoding(&parts);
        assert_eq!(enc[..8], (2u64 | 1 << 63).to_le_bytes());
    }
}
