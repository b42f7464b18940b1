//! Small allocation-free helpers for the packet path.

use std::net::IpAddr;

/// Decimal text of `n` in `buf`.
pub(crate) fn u16_decimal(n: u16, buf: &mut [u8; 5]) -> &[u8] {
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Lower-case hex of `v` into `out` (16 digits).
pub(crate) fn hex64(v: u64, out: &mut [u8]) {
    for (i, b) in out.iter_mut().take(16).enumerate() {
        *b = HEX[((v >> (60 - 4 * i)) & 0xf) as usize];
    }
}

/// Lower-case hex of `v` into `out` (8 digits).
pub(crate) fn hex32(v: u32, out: &mut [u8]) {
    for (i, b) in out.iter_mut().take(8).enumerate() {
        *b = HEX[((v >> (28 - 4 * i)) & 0xf) as usize];
    }
}

/// Parses exactly `s.len()` (≤ 16) hex digits.
pub(crate) fn parse_hex(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 16 {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &c| {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => return None,
        };
        Some(acc << 4 | u64::from(d))
    })
}

/// Eight hex digits (any case) as a number, all eight bytes at once: our branch is 24 of
/// them and every response and looping-request check parses one (a digit at a time
/// that was ~6 instructions a digit). Same result as [`parse_hex`] on 8 bytes.
#[inline]
pub(crate) fn hex8(s: [u8; 8]) -> Option<u32> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let x = u64::from_le_bytes(s);
    if x & HIGH != 0 {
        return None;
    }
    // For bytes below 0x80, the high bit of `b + 0x80 - n` is `b >= n`, no carries.
    let ge = |v: u64, n: u8| v.wrapping_add((0x80 - u64::from(n)) * ONES) & HIGH;
    let digit = ge(x, b'0') & !ge(x, b'9' + 1);
    // `| 0x20` lowercases A-F and maps nothing else into a-f.
    let lower = x | (0x20 * ONES);
    let letter = ge(lower, b'a') & !ge(lower, b'f' + 1);
    if digit | letter != HIGH {
        return None;
    }
    // Each byte's value: its low nibble, plus 9 for a letter ('a' is 0x61).
    let v = (x & (0x0f * ONES)) + (letter >> 7) * 9;
    // Pairs of digits into bytes (first digit high), then the four bytes in order.
    let pairs = ((v & 0x000f_000f_000f_000f) << 4) | ((v >> 8) & 0x000f_000f_000f_000f);
    let b = pairs.to_le_bytes();
    Some(u32::from_be_bytes([b[0], b[2], b[4], b[6]]))
}

/// An IP address as it appears in a `received` parameter (IPv6 without brackets), written
/// into `buf`; returns the used part.
pub(crate) fn ip_text(ip: IpAddr, buf: &mut [u8; 64]) -> &[u8] {
    use std::io::Write;
    if let IpAddr::V4(v4) = ip {
        // Every forwarded request's Via gets one: digits by hand, not the formatter.
        let mut n = 0;
        for (i, octet) in v4.octets().into_iter().enumerate() {
            if i > 0 {
                buf[n] = b'.';
                n += 1;
            }
            let mut digits = [0u8; 5];
            let d = u16_decimal(u16::from(octet), &mut digits);
            buf[n..n + d.len()].copy_from_slice(d);
            n += d.len();
        }
        return &buf[..n];
    }
    let mut cur = std::io::Cursor::new(&mut buf[..]);
    // Writing an IpAddr into 64 bytes cannot fail (the longest is 45 bytes).
    let _ = write!(cur, "{ip}");
    let n = cur.position() as usize;
    &buf[..n]
}

/// splitmix64 finaliser.
#[inline]
pub(crate) fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let mut b = [0u8; 16];
        hex64(0x0123_4567_89ab_cdef, &mut b);
        assert_eq!(&b, b"0123456789abcdef");
        assert_eq!(parse_hex(&b), Some(0x0123_4567_89ab_cdef));
        assert_eq!(parse_hex(b"xyz"), None);
        let mut d = [0u8; 5];
        assert_eq!(u16_decimal(5060, &mut d), b"5060");
        assert_eq!(u16_decimal(0, &mut d), b"0");
        assert_eq!(u16_decimal(65535, &mut d), b"65535");
    }

    #[test]
    fn hex8_is_parse_hex_for_every_byte_in_every_place() {
        let base = *b"09afAF3c";
        assert_eq!(hex8(base), Some(0x09af_af3c));
        for place in 0..8 {
            for byte in 0..=255u8 {
                let mut s = base;
                s[place] = byte;
                let want = parse_hex(&s).map(|v| v as u32);
                assert_eq!(hex8(s), want, "{s:?}");
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn hex8_agrees_with_parse_hex(s in proptest::array::uniform8(proptest::sample::select(
            b"0123456789abcdefABCDEF/:@G`g \x10\x19\x7f\x80\xff".to_vec(),
        ))) {
            proptest::prop_assert_eq!(hex8(s), parse_hex(&s).map(|v| v as u32));
        }
    }

    #[test]
    fn ip_text_matches_display() {
        let mut buf = [0u8; 64];
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.30.40",
            "255.255.255.255",
            "192.0.2.9",
        ]
        .into_iter()
        .chain(["::1", "2001:db8::5", "::ffff:192.0.2.1"])
        {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_text(ip, &mut buf), ip.to_string().as_bytes(), "{ip}");
        }
    }
}
