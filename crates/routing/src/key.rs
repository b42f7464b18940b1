//! Compact integer keys for normalised DIDs (the packing lives in the config crate,
//! [`trunkstore_config::numbers::pack_did`], shared with its claims registry).
//!
//! A DID is `^\+?\d*$` after normalisation. Up to [`MAX_PACKED_DIGITS`] digits fit in a
//! `u64` together with the digit count and the plus flag, so `+1000`, `1000` and `01000`
//! stay distinct keys (leading zeros are kept by the count). Longer numbers (not E.164,
//! which has at most 15 digits) go to a string-keyed side table.

pub use trunkstore_config::numbers::{pack_did as pack, MAX_PACKED_DIGITS};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_spellings_get_distinct_keys() {
        let spellings = [
            "+1000", "1000", "01000", "001000", "+01000", "", "+", "0", "+0",
        ];
        let keys: Vec<u64> = spellings.iter().map(|s| pack(s).unwrap()).collect();
        for i in 0..keys.len() {
            assert_ne!(keys[i], 0);
            for j in 0..i {
                assert_ne!(keys[i], keys[j], "{} vs {}", spellings[i], spellings[j]);
            }
        }
    }

    #[test]
    fn limits() {
        assert!(pack("+99999999999999999").is_some());
        assert!(pack("+999999999999999999").is_none());
        assert!(pack("41555x1234").is_none());
        assert!(pack("++1").is_none());
        assert!(pack("1+1").is_none());
    }
}
