//! Number normalisation to E.164 and Request-URI user formats (behaviour.md §2).
//!
//! These functions run on the packet path, so they avoid allocation: [`normalize`] borrows
//! its input whenever the number is already in its final form (the common case for carriers
//! sending `+1…`, and for short codes), `normalize_into` reuses a caller buffer, and
//! [`format_user`] only ever returns a slice of its inputs.
//!
//! Visual separators (`415-555-1234`, spaces, dots) are **not** stripped: the spec speaks of
//! digits only, and a number with separators falls under rule 5 ("anything else unchanged").

use std::borrow::Cow;
use std::fmt;

/// How a number is written in a Request-URI user part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum NumberFormat {
    /// `+14155551234`
    E164,
    /// `4155551234` (NANP numbers only; others are sent as E.164).
    #[default]
    Npan,
    /// `14155551234` (NANP numbers only; others are sent as E.164).
    OneNpan,
    /// The server's `auth_user`, or the E.164 number when it has none. Not valid for carriers.
    Username,
}

impl NumberFormat {
    /// The spelling used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            NumberFormat::E164 => "e164",
            NumberFormat::Npan => "npan",
            NumberFormat::OneNpan => "1npan",
            NumberFormat::Username => "username",
        }
    }

    /// Parses the JSON spelling (exact, lower case as in the schema).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "e164" => Some(NumberFormat::E164),
            "npan" => Some(NumberFormat::Npan),
            "1npan" => Some(NumberFormat::OneNpan),
            "username" => Some(NumberFormat::Username),
            _ => None,
        }
    }
}

impl fmt::Display for NumberFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which rule of §2 applies, and where the significant digits start.
enum Rule {
    /// Rules 1 and 5: the input is returned as is.
    Unchanged,
    /// Rule 2: `+1` followed by the 10 NANP digits starting at this offset.
    Nanp(usize),
    /// Rules 3 and 4: `+` followed by the input from this offset.
    Plus(usize),
}

fn all_digits(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_digit())
}

/// `[2-9]XX[2-9]XXXXXX`: a 10-digit NANP number (area code and exchange can't start 0/1).
fn is_nanp_ten(d: &[u8]) -> bool {
    d.len() == 10
        && d.iter().all(u8::is_ascii_digit)
        && (b'2'..=b'9').contains(&d[0])
        && (b'2'..=b'9').contains(&d[3])
}

fn classify(input: &str) -> Rule {
    let b = input.as_bytes();
    // Rule 1: `+digits` unchanged (this also covers `+1` NANP numbers).
    if b.first() == Some(&b'+') {
        return Rule::Unchanged;
    }
    if b.is_empty() || !all_digits(input) {
        return Rule::Unchanged;
    }
    // Rule 2: optional leading `1`, then a 10-digit NANP number.
    if is_nanp_ten(b) {
        return Rule::Nanp(0);
    }
    if b[0] == b'1' && is_nanp_ten(&b[1..]) {
        return Rule::Nanp(1);
    }
    // Rule 3: international prefixes 011 (NANP) and 00 (most of the world).
    if let Some(rest) = input.strip_prefix("011") {
        if rest.len() >= 5 {
            return Rule::Plus(3);
        }
    } else if let Some(rest) = input.strip_prefix("00") {
        if rest.len() >= 5 {
            return Rule::Plus(2);
        }
    }
    // Rule 4: a digit 2-9 followed by at least 7 digits.
    if (b'2'..=b'9').contains(&b[0]) && b.len() >= 8 {
        return Rule::Plus(0);
    }
    Rule::Unchanged
}

/// Normalises a dialled number or DID to E.164 (§2). Borrows the input when it is
/// unchanged; allocates only when it rewrites.
///
/// ```
/// use trunkstore_config::numbers::normalize;
/// assert_eq!(normalize("4155551234"), "+14155551234");
/// assert_eq!(normalize("011442071234567"), "+442071234567");
/// assert_eq!(normalize("911"), "911");
/// ```
pub fn normalize(input: &str) -> Cow<'_, str> {
    match classify(input) {
        Rule::Unchanged => Cow::Borrowed(input),
        _ => {
            let mut out = String::with_capacity(input.len() + 2);
            normalize_into(input, &mut out);
            Cow::Owned(out)
        }
    }
}

/// Normalises `input` into `out` (cleared first), so a caller can reuse one buffer per
/// worker and never allocate on the packet path.
pub(crate) fn normalize_into(input: &str, out: &mut String) {
    out.clear();
    match classify(input) {
        Rule::Unchanged => out.push_str(input),
        Rule::Nanp(start) => {
            out.push_str("+1");
            out.push_str(&input[start..]);
        }
        Rule::Plus(start) => {
            out.push('+');
            out.push_str(&input[start..]);
        }
    }
}

/// Most digits [`pack_did`] packs: 10^17 < 2^57, leaving 7 bits for the marker, plus
/// flag and digit count.
pub const MAX_PACKED_DIGITS: usize = 17;

const PACK_LEN_SHIFT: u32 = 57; // 5 bits of digit count (0..=17)
const PACK_PLUS_BIT: u64 = 1 << 62;
/// Always set, so a packed key is never 0 and 0 can mean "empty slot" in a table.
const PACK_MARKER_BIT: u64 = 1 << 63;

/// Packs a normalised DID (`+digits` or `digits`) into a non-zero `u64`, keeping the
/// digit count and the plus so that `+1000`, `1000` and `01000` stay distinct keys.
/// `None` for other strings or more than [`MAX_PACKED_DIGITS`] digits (not E.164, which
/// has at most 15): those go to string-keyed side tables. The one key of a DID for the
/// claims registry and the routing index alike.
///
/// Runs once per routed INVITE, right before a cache-missing table probe, so its inlined
/// part is short and branch-light: 8 to 16 digits (nearly every E.164 number) are checked
/// and parsed eight at a time with no per-digit branch. The fewer instructions a lookup
/// takes, the more lookups the CPU keeps in flight while their table loads miss cache.
#[inline]
pub fn pack_did(number: &str) -> Option<u64> {
    let bytes = number.as_bytes();
    let plus = bytes.first() == Some(&b'+');
    let digits = &bytes[usize::from(plus)..];
    if !(8..=16).contains(&digits.len()) {
        return pack_other_lengths(plus, digits);
    }
    Some(pack_fields(plus, digits.len(), digits_8_to_16(digits)?))
}

/// [`pack_did`] for fewer than 8 or more than 16 digits: short codes, and numbers longer
/// than E.164. Out of line to keep the inlined common case small.
#[inline(never)]
fn pack_other_lengths(plus: bool, digits: &[u8]) -> Option<u64> {
    let value = match digits.len() {
        0..=7 => digits_one_by_one(digits)?,
        17 => digits_one_by_one(&digits[..1])? * 10u64.pow(16) + digits_8_to_16(&digits[1..])?,
        _ => return None,
    };
    Some(pack_fields(plus, digits.len(), value))
}

#[inline]
fn pack_fields(plus: bool, digit_count: usize, value: u64) -> u64 {
    let plus_bit = if plus { PACK_PLUS_BIT } else { 0 };
    PACK_MARKER_BIT | plus_bit | ((digit_count as u64) << PACK_LEN_SHIFT) | value
}

/// Eight `'0'` bytes.
const ASCII_ZEROS: u64 = u64::from_le_bytes([b'0'; 8]);

/// The value of 8 to 16 ASCII digits, `None` if any byte is not a digit. Two overlapping
/// 8-byte loads cover every byte (the first and the last eight); the first load keeps only
/// the digits the last one does not have, shifted to the low-order end.
#[inline]
fn digits_8_to_16(digits: &[u8]) -> Option<u64> {
    let n = digits.len();
    debug_assert!((8..=16).contains(&n));
    let head = load_le_u64(&digits[..8]);
    let tail = load_le_u64(&digits[n - 8..]);
    if non_digit_bytes(head) | non_digit_bytes(tail) != 0 {
        return None;
    }
    // Little-endian: the first digit is the lowest byte. Shifting left by the overlap
    // drops the digits `tail` already holds and leaves zero digits (leading zeros) below.
    let overlap_bits = (16 - n) as u32 * 8;
    let head_only = (u128::from(head - ASCII_ZEROS) << overlap_bits) as u64;
    Some(eight_digits(head_only) * 100_000_000 + eight_digits(tail - ASCII_ZEROS))
}

#[inline]
fn load_le_u64(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"))
}

/// Non-zero unless all eight bytes are `'0'..='9'`: a byte above `'9'` sets its top bit
/// when 0x46 is added, one below `'0'` when 0x30 is subtracted. Carries and borrows only
/// start at such a byte, so the lowest bad byte always shows, whatever they do above it.
#[inline]
fn non_digit_bytes(chunk: u64) -> u64 {
    const ABOVE_NINE: u64 = u64::from_le_bytes([0x46; 8]);
    const TOP_BITS: u64 = u64::from_le_bytes([0x80; 8]);
    (chunk.wrapping_add(ABOVE_NINE) | chunk.wrapping_sub(ASCII_ZEROS)) & TOP_BITS
}

/// The number written by eight digit values (0..=9, one per byte, most significant in the
/// lowest byte): pairs, then quads, then the whole, with one multiply each.
#[inline]
fn eight_digits(mut v: u64) -> u64 {
    v = (v.wrapping_mul(10 << 8 | 1) >> 8) & 0x00ff_00ff_00ff_00ff;
    v = (v.wrapping_mul(100 << 16 | 1) >> 16) & 0x0000_ffff_0000_ffff;
    v.wrapping_mul(10_000 << 32 | 1) >> 32
}

/// The value of at most 17 ASCII digits, `None` on a non-digit: short codes, which are not
/// worth a wide path.
fn digits_one_by_one(digits: &[u8]) -> Option<u64> {
    digits.iter().try_fold(0u64, |value, &b| {
        let d = b.wrapping_sub(b'0');
        (d <= 9).then(|| value * 10 + u64::from(d))
    })
}

/// Is this (normalised) number a NANP number, `+1[2-9]XX[2-9]XXXXXX`?
pub(crate) fn is_nanp(e164: &str) -> bool {
    e164.strip_prefix("+1")
        .is_some_and(|ten| is_nanp_ten(ten.as_bytes()))
}

/// Is this a `+digits` number (at least one digit)?
pub fn is_e164(number: &str) -> bool {
    number
        .strip_prefix('+')
        .is_some_and(|d| !d.is_empty() && all_digits(d))
}

/// The Request-URI user for a normalised number in `format`. `auth_user` is only used by
/// [`NumberFormat::Username`]. `npan`/`1npan` only transform NANP numbers; anything else is
/// returned as normalised (E.164 with its plus, or a short code as is).
///
/// ```
/// use trunkstore_config::numbers::{format_user, NumberFormat};
/// assert_eq!(format_user("+14155551234", NumberFormat::Npan, None), "4155551234");
/// assert_eq!(format_user("+442071234567", NumberFormat::Npan, None), "+442071234567");
/// ```
pub fn format_user<'a>(e164: &'a str, format: NumberFormat, auth_user: Option<&'a str>) -> &'a str {
    match format {
        NumberFormat::E164 => e164,
        NumberFormat::Npan if is_nanp(e164) => &e164[2..],
        NumberFormat::OneNpan if is_nanp(e164) => &e164[1..],
        NumberFormat::Npan | NumberFormat::OneNpan => e164,
        NumberFormat::Username => auth_user.unwrap_or(e164),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_table() {
        let table: &[(&str, &str)] = &[
            // Rule 1: +digits unchanged.
            ("+14155551234", "+14155551234"),
            ("+442071234567", "+442071234567"),
            ("+4155551234", "+4155551234"),
            ("+1", "+1"),
            // Rule 2: NANP with optional 1.
            ("4155551234", "+14155551234"),
            ("14155551234", "+14155551234"),
            ("2125550123", "+12125550123"),
            // Rule 3: international prefixes need >= 5 digits after them.
            ("011442071234567", "+442071234567"),
            ("01112345", "+12345"),
            ("0111234", "0111234"),
            ("00442071234567", "+442071234567"),
            ("0012345", "+12345"),
            ("001234", "001234"),
            // Rule 4: 2-9 followed by >= 7 digits.
            ("33123456789", "+33123456789"),
            ("21234567", "+21234567"),
            ("2123456", "2123456"),
            // Invalid NANP (exchange starts with 1) falls to rule 4.
            ("4151234567", "+4151234567"),
            // 1 + invalid NANP: no rule applies.
            ("10005551234", "10005551234"),
            // Rule 5: anything else unchanged.
            ("911", "911"),
            ("933", "933"),
            ("1000", "1000"),
            ("", ""),
            ("+", "+"),
            ("415-555-1234", "415-555-1234"),
            ("415 555 1234", "415 555 1234"),
            ("alice", "alice"),
            ("0", "0"),
        ];
        let mut buf = String::new();
        for (input, want) in table {
            assert_eq!(normalize(input), *want, "normalize({input:?})");
            normalize_into(input, &mut buf);
            assert_eq!(buf, *want, "normalize_into({input:?})");
        }
    }

    #[test]
    fn unchanged_numbers_are_borrowed() {
        assert!(matches!(normalize("+14155551234"), Cow::Borrowed(_)));
        assert!(matches!(normalize("911"), Cow::Borrowed(_)));
        assert!(matches!(normalize("4155551234"), Cow::Owned(_)));
    }

    #[test]
    fn formats() {
        let table: &[(&str, NumberFormat, Option<&str>, &str)] = &[
            ("+14155551234", NumberFormat::E164, None, "+14155551234"),
            ("+14155551234", NumberFormat::Npan, None, "4155551234"),
            ("+14155551234", NumberFormat::OneNpan, None, "14155551234"),
            ("+14155551234", NumberFormat::Username, Some("pbx1"), "pbx1"),
            ("+14155551234", NumberFormat::Username, None, "+14155551234"),
            // Non-NANP numbers keep E.164 with the plus.
            ("+442071234567", NumberFormat::Npan, None, "+442071234567"),
            (
                "+442071234567",
                NumberFormat::OneNpan,
                None,
                "+442071234567",
            ),
            // +1 but not a valid NANP number.
            ("+14151234567", NumberFormat::Npan, None, "+14151234567"),
            // Short codes stay as they are.
            ("911", NumberFormat::Npan, None, "911"),
            ("911", NumberFormat::OneNpan, None, "911"),
        ];
        for (n, f, user, want) in table {
            assert_eq!(format_user(n, *f, *user), *want, "{n} as {f}");
        }
    }

    #[test]
    fn format_names_round_trip() {
        for f in [
            NumberFormat::E164,
            NumberFormat::Npan,
            NumberFormat::OneNpan,
            NumberFormat::Username,
        ] {
            assert_eq!(NumberFormat::parse(f.as_str()), Some(f));
        }
        assert_eq!(NumberFormat::parse("E164"), None);
    }

    /// The digit-by-digit packing `pack_did` must agree with.
    fn pack_reference(number: &str) -> Option<u64> {
        let (plus, digits) = match number.strip_prefix('+') {
            Some(rest) => (PACK_PLUS_BIT, rest),
            None => (0, number),
        };
        if digits.len() > MAX_PACKED_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let value = digits
            .bytes()
            .fold(0u64, |v, b| v * 10 + u64::from(b - b'0'));
        Some(PACK_MARKER_BIT | plus | ((digits.len() as u64) << PACK_LEN_SHIFT) | value)
    }

    #[test]
    fn pack_did_every_length_and_every_bad_position() {
        for len in 0..=MAX_PACKED_DIGITS + 2 {
            // Digits that vary by position, so a dropped, repeated or swapped one shows.
            let digits: String = (0..len)
                .map(|i| char::from(b'0' + (i * 7 % 10) as u8))
                .collect();
            for number in [digits.clone(), format!("+{digits}")] {
                assert_eq!(pack_did(&number), pack_reference(&number), "{number}");
                assert_eq!(pack_did(&number).is_some(), len <= MAX_PACKED_DIGITS);
                for pos in 0..number.len() {
                    for bad in [b'/', b':', b'+', b' ', b'a', 0x7f, 0x00] {
                        let mut b = number.clone().into_bytes();
                        b[pos] = bad;
                        let s = String::from_utf8(b).unwrap();
                        assert_eq!(pack_did(&s), pack_reference(&s), "{s:?}");
                    }
                }
            }
        }
        assert_eq!(
            pack_did("+99999999999999999"),
            pack_reference("+99999999999999999")
        );
        assert_eq!(
            pack_did("+14155551234"),
            Some(PACK_MARKER_BIT | PACK_PLUS_BIT | 11 << PACK_LEN_SHIFT | 14_155_551_234)
        );
        assert_eq!(
            pack_did("0000000012"),
            Some(PACK_MARKER_BIT | 10 << PACK_LEN_SHIFT | 12)
        );
        // A multi-byte character: bytes 0xc3 0xa9 are not digits.
        assert_eq!(pack_did("+1415555é12"), None);
    }

    #[test]
    fn predicates() {
        assert!(is_nanp("+14155551234"));
        assert!(!is_nanp("+14151234567"));
        assert!(!is_nanp("+442071234567"));
        assert!(!is_nanp("4155551234"));
        assert!(is_e164("+1"));
        assert!(!is_e164("+"));
        assert!(!is_e164("911"));
    }

    mod props {
        use super::super::*;
        use super::pack_reference;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn idempotent(input in "[+0-9]{0,20}|[0-9a-z+ -]{0,12}") {
                let once = normalize(&input).into_owned();
                prop_assert_eq!(normalize(&once), once.as_str());
            }

            #[test]
            fn e164_inputs_unchanged(digits in "[0-9]{1,15}") {
                let n = format!("+{digits}");
                prop_assert_eq!(normalize(&n), n.as_str());
            }

            #[test]
            fn nanp_forms_agree(area in "[2-9][0-9]{2}", exch in "[2-9][0-9]{2}", line in "[0-9]{4}") {
                let ten = format!("{area}{exch}{line}");
                let want = format!("+1{ten}");
                prop_assert_eq!(normalize(&ten), want.as_str());
                let one = format!("1{ten}");
                prop_assert_eq!(normalize(&one), want.as_str());
                prop_assert_eq!(format_user(&want, NumberFormat::Npan, None), ten.as_str());
                prop_assert!(is_nanp(&want));
            }

            #[test]
            fn pack_did_matches_reference(number in "[+]?[0-9]{0,19}|[+0-9a-z/:]{0,18}") {
                prop_assert_eq!(pack_did(&number), pack_reference(&number));
            }

            #[test]
            fn rewritten_numbers_are_e164(input in "[0-9]{0,20}") {
                let out = normalize(&input);
                if out != input {
                    prop_assert!(is_e164(&out));
                    // Digits are only ever added (the +1) or prefix-stripped, never changed.
                    prop_assert!(input.ends_with(out.trim_start_matches("+1").trim_start_matches('+')));
                }
            }
        }
    }
}
