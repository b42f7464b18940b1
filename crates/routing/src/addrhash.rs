//! The hasher of the maps keyed by a packet's source address (carrier sources, IP-auth
//! servers): every request asks them who sent it, and std's SipHash-1-3 of a
//! `SocketAddr` (four `write`s) was ~230 instructions a lookup, four lookups a call.
//!
//! A keyed hash is not needed against flooding here: the maps are filled from the
//! settings only, so a lookup's cost is bounded by how the operator's addresses lie in
//! the table, whatever address a packet claims. The seed is still random per map
//! builder so that no fixed set of settings lands in one bucket chain everywhere.
//! Each written word is mixed by a folded 64×64→128 multiply (foldhash's step), which
//! spreads every input bit over both halves the table uses (bucket and control tag).

use std::hash::{BuildHasher, Hasher};

/// An odd constant with well-mixed bits (2^64 / φ).
const K: u64 = 0x9e37_79b9_7f4a_7c15;

/// The 128-bit product of `a` and `b`, its halves folded together.
#[inline]
fn fold_mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

/// Builds [`AddrHasher`]s with this map's random seed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AddrHash {
    seed: u64,
}

impl Default for AddrHash {
    fn default() -> AddrHash {
        // std's per-process random keys (advanced per `RandomState`), hashed to a word.
        let seed = std::collections::hash_map::RandomState::new().hash_one(K);
        AddrHash { seed }
    }
}

impl BuildHasher for AddrHash {
    type Hasher = AddrHasher;

    #[inline]
    fn build_hasher(&self) -> AddrHasher {
        AddrHasher(self.seed)
    }
}

/// The state: one word, each write mixed in by [`fold_mul`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct AddrHasher(u64);

impl AddrHasher {
    #[inline]
    fn mix(&mut self, word: u64) {
        self.0 = fold_mul(self.0 ^ word, K);
    }
}

impl Hasher for AddrHasher {
    /// Eight bytes a word; the last 1–7 as one word (the length was written before
    /// them by the slice's `Hash`, or is fixed by the key's type).
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for w in words.by_ref() {
            let mut b = [0u8; 8];
            b.copy_from_slice(w);
            self.mix(u64::from_le_bytes(b));
        }
        let tail = words.remainder();
        if !tail.is_empty() {
            let word = tail
                .iter()
                .rev()
                .fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
            self.mix(word);
        }
    }

    #[inline]
    fn write_u8(&mut self, n: u8) {
        self.mix(u64::from(n));
    }

    #[inline]
    fn write_u16(&mut self, n: u16) {
        self.mix(u64::from(n));
    }

    #[inline]
    fn write_u32(&mut self, n: u32) {
        self.mix(u64::from(n));
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.mix(n);
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.mix(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // One more round so that the last word written reaches every output bit.
        fold_mul(self.0, K ^ 0xff51_afd7_ed55_8ccd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

    #[test]
    fn distinct_addresses_hash_apart() {
        let h = AddrHash::default();
        let mut seen = HashSet::new();
        for a in 0..=255u8 {
            for port in [5060u16, 5061, 5080] {
                let v4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, a)), port);
                let v6 = SocketAddr::new(
                    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, u16::from(a))),
                    port,
                );
                assert!(seen.insert(h.hash_one(v4)), "{v4}");
                assert!(seen.insert(h.hash_one(v6)), "{v6}");
            }
        }
    }

    #[test]
    fn the_same_address_hashes_the_same_with_one_builder() {
        let h = AddrHash::default();
        let a: SocketAddr = "192.0.2.7:5060".parse().unwrap();
        assert_eq!(h.hash_one(a), h.hash_one(a));
        assert_eq!(h.hash_one(a.ip()), h.hash_one(a.ip()));
    }

    #[test]
    fn tails_of_every_length_are_mixed() {
        let h = AddrHash::default();
        let bytes = [1u8, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17];
        let all: HashSet<u64> = (0..=bytes.len())
            .map(|n| {
                let mut s = h.build_hasher();
                s.write(&bytes[..n]);
                s.finish()
            })
            .collect();
        assert_eq!(all.len(), bytes.len() + 1);
    }
}
