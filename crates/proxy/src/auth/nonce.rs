//! Stateless digest nonces: `hex(issued ‖ seq ‖ HMAC-SHA256(secret, issued ‖ seq ‖ ip)[..16])`.
//!
//! Nothing is stored per nonce: the MAC proves we issued it, to that source IP, at that
//! time. `seq` is a per-process counter so that two challenges in the same second to the
//! same source still differ (their nonce counts are tracked separately, see
//! [`super::replay`]); it also names the nonce in the replay table.
//!
//! In a cluster (issue 18) every node has the same secret, so any node can tell a nonce
//! of the cluster from a forgery, and the top [`TAG_BITS`] of `seq` name the node that
//! issued it (covered by the MAC). Only the issuing node counts a nonce's uses; another
//! node that gets it with the right password answers `stale=true`, and the client retries
//! at once with that node's nonce without asking its user (RFC 7616 §3.3). So a captured
//! request replayed to another node is never accepted, with no shared replay table and no
//! round trip to Redis per authenticated request.
//!
//! HMAC is written out over `sha2` (RFC 2104, checked against RFC 4231 below) rather than
//! pulling the `hmac` crate: it is not in the lock file, and with a fixed 32-byte key it is
//! a dozen lines. The keyed inner/outer states are computed once per key, so a MAC costs
//! four SHA-256 compressions and no allocation.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

/// Bytes of MAC kept in a nonce (128 bits: forging one is out of reach; RFC 2104 §5 allows
/// truncation to at least half the hash length).
const MAC_LEN: usize = 16;
/// `issued` (8) ‖ `seq` (8) ‖ MAC.
const RAW_LEN: usize = 16 + MAC_LEN;
/// Length of the nonce as sent (hex).
pub(super) const NONCE_LEN: usize = RAW_LEN * 2;

/// Bits of `seq` naming the issuing node (the rest count its nonces: 2^40 per process).
pub(crate) const TAG_BITS: u32 = 24;
const COUNT_BITS: u32 = 64 - TAG_BITS;

/// A nonce may claim to be this many seconds in the future (the wall clock stepped back a
/// little since it was issued); beyond that it is not ours to trust.
const MAX_FUTURE_SECS: u64 = 5;

/// The per-process nonce secret with its precomputed HMAC states.
#[derive(Clone)]
pub(crate) struct NonceKey {
    inner: Sha256,
    outer: Sha256,
    seq: std::sync::Arc<AtomicU64>,
    /// This node's tag (0 for a node alone).
    tag: u64,
}

impl std::fmt::Debug for NonceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NonceKey(***)")
    }
}

/// A nonce as sent: lowercase hex, fixed size, no heap.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Nonce([u8; NONCE_LEN]);

impl Nonce {
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Nonce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(std::str::from_utf8(&self.0).unwrap_or("?"))
    }
}

/// What a nonce turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NonceCheck {
    /// Ours, for this source, still fresh.
    Valid { issued: u64, seq: u64 },
    /// Ours and for this source, but older than the TTL: answer `stale=true`.
    Stale,
    /// Not ours (bad MAC, bad form, another source, from the future): a fresh challenge.
    Invalid,
}

impl NonceKey {
    /// A key from the operating system's random source.
    pub(crate) fn random() -> NonceKey {
        NonceKey::from_secret(&random_secret())
    }

    /// The key of a cluster node: the shared `secret`, and a tag from the node's id
    /// (24 bits of its SHA-256: two nodes of one cluster share a tag with odds of one in
    /// 16 million per pair).
    pub(crate) fn for_node(secret: &str, node_id: &str) -> NonceKey {
        let key: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        let id = Sha256::digest(node_id.as_bytes());
        let tag = u64::from(u32::from_be_bytes([0, id[0], id[1], id[2]]));
        NonceKey::from_secret(&key).with_tag(tag)
    }

    fn with_tag(mut self, tag: u64) -> NonceKey {
        self.tag = tag & ((1 << TAG_BITS) - 1);
        self.seq = std::sync::Arc::new(AtomicU64::new((self.tag << COUNT_BITS) | 1));
        self
    }

    /// Was nonce number `seq` issued by this node (not by another of its cluster)?
    pub(crate) fn is_own(&self, seq: u64) -> bool {
        seq >> COUNT_BITS == self.tag
    }

    /// A fixed key (tests; several processes sharing nonces).
    pub(crate) fn from_secret(secret: &[u8; 32]) -> NonceKey {
        let mut ipad = [0x36u8; 64];
        let mut opad = [0x5cu8; 64];
        for (i, b) in secret.iter().enumerate() {
            ipad[i] ^= b;
            opad[i] ^= b;
        }
        NonceKey {
            inner: Sha256::new_with_prefix(ipad),
            outer: Sha256::new_with_prefix(opad),
            seq: std::sync::Arc::new(AtomicU64::new(1)),
            tag: 0,
        }
    }

    /// A fresh nonce for a challenge to `ip` at wall-clock second `now_secs`.
    pub(crate) fn issue(&self, ip: IpAddr, now_secs: u64) -> Nonce {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let mut raw = [0u8; RAW_LEN];
        raw[..8].copy_from_slice(&now_secs.to_be_bytes());
        raw[8..16].copy_from_slice(&seq.to_be_bytes());
        let mac = self.mac(&raw[..16], ip);
        raw[16..].copy_from_slice(&mac[..MAC_LEN]);
        let mut out = [0u8; NONCE_LEN];
        // Cannot fail: the output is exactly twice the input.
        let _ = hex::encode_to_slice(raw, &mut out);
        Nonce(out)
    }

    /// Checks a nonce presented by `ip` at `now_secs`; it lives `ttl_secs` after issue.
    pub(crate) fn check(
        &self,
        nonce: &[u8],
        ip: IpAddr,
        now_secs: u64,
        ttl_secs: u64,
    ) -> NonceCheck {
        let mut raw = [0u8; RAW_LEN];
        if nonce.len() != NONCE_LEN || hex::decode_to_slice(nonce, &mut raw).is_err() {
            return NonceCheck::Invalid;
        }
        let mac = self.mac(&raw[..16], ip);
        if !trunkstore_sip::digest::ct_eq(&mac[..MAC_LEN], &raw[16..]) {
            return NonceCheck::Invalid;
        }
        let issued = u64::from_be_bytes(raw[..8].try_into().unwrap_or_default());
        let seq = u64::from_be_bytes(raw[8..16].try_into().unwrap_or_default());
        if issued > now_secs.saturating_add(MAX_FUTURE_SECS) {
            return NonceCheck::Invalid;
        }
        if now_secs >= issued.saturating_add(ttl_secs) {
            return NonceCheck::Stale;
        }
        NonceCheck::Valid { issued, seq }
    }

    /// HMAC-SHA256(secret, head ‖ ip). The IP is canonical (IPv4-mapped IPv6 is IPv4) and
    /// tagged by family so that no two addresses hash alike.
    fn mac(&self, head: &[u8], ip: IpAddr) -> [u8; 32] {
        let mut h = self.inner.clone();
        h.update(head);
        match ip.to_canonical() {
            IpAddr::V4(v4) => {
                h.update([4u8]);
                h.update(v4.octets());
            }
            IpAddr::V6(v6) => {
                h.update([6u8]);
                h.update(v6.octets());
            }
        }
        let inner = h.finalize();
        let mut o = self.outer.clone();
        o.update(inner);
        o.finalize().into()
    }
}

/// 32 bytes from `/dev/urandom`. Where that cannot be read (not a Unix system), from the
/// standard library's randomly keyed hasher, whose keys come from the OS on first use:
/// good enough for a nonce secret, and no extra dependency (`rand` 0.8 is not in the lock
/// file, and the `rand` that is needs a newer Rust than our MSRV).
fn random_secret() -> [u8; 32] {
    use std::io::Read;
    let mut secret = [0u8; 32];
    let from_os = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut secret))
        .is_ok();
    if !from_os {
        use std::hash::{BuildHasher, Hasher};
        for (i, chunk) in secret.chunks_mut(8).enumerate() {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_usize(i);
            chunk.copy_from_slice(&h.finish().to_le_bytes());
        }
    }
    secret
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, 5));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, 6));

    fn key() -> NonceKey {
        NonceKey::from_secret(&[7; 32])
    }

    /// RFC 4231 test case 2 ("Jefe"), with the key zero-padded to 32 bytes (HMAC pads it
    /// to the block size anyway, so the MAC is the same).
    #[test]
    fn auth_hmac_matches_rfc4231() {
        let mut secret = [0u8; 32];
        secret[..4].copy_from_slice(b"Jefe");
        let k = NonceKey::from_secret(&secret);
        let mut h = k.inner.clone();
        h.update(b"what do ya want for nothing?");
        let mut o = k.outer.clone();
        o.update(h.finalize());
        assert_eq!(
            hex::encode(o.finalize()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn auth_nonce_roundtrip_and_expiry() {
        let k = key();
        let n = k.issue(A, 1000);
        assert_eq!(n.as_bytes().len(), NONCE_LEN);
        assert!(matches!(
            k.check(n.as_bytes(), A, 1000, 300),
            NonceCheck::Valid { issued: 1000, .. }
        ));
        assert!(matches!(
            k.check(n.as_bytes(), A, 1299, 300),
            NonceCheck::Valid { .. }
        ));
        assert_eq!(k.check(n.as_bytes(), A, 1300, 300), NonceCheck::Stale);
        // Upper-case hex is the same nonce.
        let upper = n.as_bytes().to_ascii_uppercase();
        assert!(matches!(
            k.check(&upper, A, 1000, 300),
            NonceCheck::Valid { .. }
        ));
    }

    #[test]
    fn auth_nonce_unique_and_bound_to_source_and_key() {
        let k = key();
        let (n1, n2) = (k.issue(A, 1000), k.issue(A, 1000));
        assert_ne!(n1, n2, "two challenges in one second differ");
        assert_eq!(k.check(n1.as_bytes(), B, 1000, 300), NonceCheck::Invalid);
        let other = NonceKey::from_secret(&[8; 32]);
        assert_eq!(
            other.check(n1.as_bytes(), A, 1000, 300),
            NonceCheck::Invalid
        );
        // IPv4-mapped IPv6 is the same source.
        let mapped: IpAddr = "::ffff:203.0.113.5".parse().unwrap();
        assert!(matches!(
            k.check(n1.as_bytes(), mapped, 1000, 300),
            NonceCheck::Valid { .. }
        ));
    }

    #[test]
    fn auth_nonce_tampering_is_invalid() {
        let k = key();
        let n = k.issue(A, 1000);
        for i in 0..NONCE_LEN {
            let mut t = n.as_bytes().to_vec();
            t[i] = if t[i] == b'0' { b'1' } else { b'0' };
            assert_eq!(k.check(&t, A, 1000, 300), NonceCheck::Invalid, "byte {i}");
        }
        let gs = [b'g'; NONCE_LEN];
        for bad in [&b""[..], b"xyz", &n.as_bytes()[1..], &gs[..]] {
            assert_eq!(k.check(bad, A, 1000, 300), NonceCheck::Invalid);
        }
        // From the future (beyond a small clock step back).
        let future = k.issue(A, 2000);
        assert_eq!(
            k.check(future.as_bytes(), A, 1000, 300),
            NonceCheck::Invalid
        );
    }

    /// Issue 18: nodes sharing the secret verify each other's nonces and tell whose they
    /// are; another secret verifies none of them.
    #[test]
    fn cluster_nodes_verify_each_others_nonces_and_know_the_issuer() {
        let a = NonceKey::for_node("cluster-secret-0123", "edge-a");
        let b = NonceKey::for_node("cluster-secret-0123", "edge-b");
        let n = a.issue(A, 1000);
        let NonceCheck::Valid { seq, .. } = b.check(n.as_bytes(), A, 1000, 300) else {
            panic!("node b must verify node a's nonce");
        };
        assert!(a.is_own(seq) && !b.is_own(seq));
        assert_ne!(a.tag, b.tag);
        let NonceCheck::Valid { seq: seq2, .. } =
            a.check(a.issue(A, 1000).as_bytes(), A, 1000, 300)
        else {
            panic!("own nonce");
        };
        assert_eq!(seq2, seq + 1, "the count goes on under the tag");
        let other = NonceKey::for_node("another-secret-99", "edge-a");
        assert_eq!(other.check(n.as_bytes(), A, 1000, 300), NonceCheck::Invalid);
        // A node alone (random key) owns the nonces it issues.
        let alone = key();
        let NonceCheck::Valid { seq, .. } = alone.check(alone.issue(A, 1).as_bytes(), A, 1, 300)
        else {
            panic!("own nonce");
        };
        assert!(alone.is_own(seq));
    }

    #[test]
    fn auth_random_keys_differ() {
        assert_ne!(random_secret(), random_secret());
    }
}
