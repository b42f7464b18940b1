//! Arbitrary input never panics and never makes us send anywhere not derived from it.

mod common;

use common::*;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..1500)) {
        let mut h = H::new();
        let out = h.feed_bytes(udp("198.51.100.1:5060"), bytes::Bytes::from(data));
        for t in out {
            // Only answers to the source: an unknown source cannot be routed anywhere.
            prop_assert_eq!(t.to, udp("198.51.100.1:5060"));
        }
        h.advance_by(3_600_000);
    }

    #[test]
    fn mutated_invites(pos in 0usize..400, byte in any::<u8>(), cut in 0usize..400) {
        let mut h = H::new();
        let mut v = invite("c1", "z9hG4bK-a1").replace('\n', "\r\n").into_bytes();
        if pos < v.len() { v[pos] = byte; }
        v.truncate(v.len().saturating_sub(cut % 50));
        let out = h.feed_bytes(udp(CARRIER), bytes::Bytes::from(v));
        for t in out {
            prop_assert!(t.to == udp(CARRIER) || t.to == udp(SERVER), "{:?}", t.to);
        }
        h.advance_by(3_600_000);
        prop_assert_eq!(h.proxy.stats(), Default::default());
    }
}
