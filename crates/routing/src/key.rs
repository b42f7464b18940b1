//! Compact integer keys for normalised DIDs.
//!
//! A DID is `^\+?\d*$` after normalisation. Up to [`MAX_PACKED_DIGITS`] digits fit in a
//! `u64` together with the digit count and the plus flag, so `+1000`, `1000` and `01000`
//! stay distinct keys (leading zeros are kept by the count). Longer numbers (not E.164,
//! which has at most 15 digits) go to a string-keyed side table.

/// Most digits that fit: 10^17 < 2^57, leaving 7 bits for the marker, plus flag and count.
pub const MAX_PACKED_DIGITS: usize = 17;

const VALUE_BITS: u32 = 57;
const LEN_SHIFT: u32 = VALUE_BITS; // 5 bits of digit count (0..=17)
const PLUS_BIT: u64 = 1 << 62;
/// Always set, so a packed key is never 0 and 0 can mean "empty slot" in the table.
const MARKER_BIT: u64 = 1 << 63;

/// Packs `+digits` / `digits` into a non-zero `u64`, or `None` when the string is not
/// of that shape or has too many digits.
#[inline]
pub fn pack(number: &str) -> Option<u64> {
    let bytes = number.as_bytes();
    let (plus, digits) = match bytes.split_first() {
        Some((b'+', rest)) => (true, rest),
        _ => (false, bytes),
    };
    if digits.len() > MAX_PACKED_DIGITS {
        return None;
    }
    let mut value: u64 = 0;
    for &b in digits {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        value = value * 10 + u64::from(d);
    }
    let len = digits.len() as u64;
    Some(MARKER_BIT | if plus { PLUS_BIT } else { 0 } | (len << LEN_SHIFT) | value)
}

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
