//! The user part of a Request-URI (or From) read as a number (behaviour.md §2).
//!
//! Carriers send ported numbers with user parameters (RFC 4694:
//! `sip:+14155551234;npdi;rn=+14155550000@host`) and some stacks escape the plus
//! (`sip:%2B14155551234@host`). Neither spelling may hide a DID, so the parameters are
//! split off at the first unescaped `;` and the number is `%xx`-decoded before it is
//! normalised. The parameters are kept as received (still escaped) so they can follow the
//! number onto the forwarded Request-URI. A decoded number is only text: whatever it
//! contains is escaped again before it goes into a URI ([`escape_user`]).

use std::borrow::Cow;

/// A user part split into the dialled number and its user parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Dialled<'a> {
    /// The number as dialled: parameters split off, `%xx` decoded (not normalised).
    pub number: Cow<'a, str>,
    /// The user parameters as received, escaped, with their leading `;`
    /// (`;npdi;rn=+14155550000`); empty when there are none.
    pub params: &'a str,
}

/// The answer to a user part that cannot be read as text (a bad escape, bytes that are
/// not UTF-8, control characters): it names no number at all, so 400 rather than 404.
pub(crate) const UNDECODABLE: (u16, &str) = (400, "Undecodable Number in URI User");

/// Splits and decodes `user` (the URI's user part, as received).
pub(crate) fn parse(user: &[u8]) -> Result<Dialled<'_>, (u16, &'static str)> {
    let (number, params) = match user.iter().position(|&b| b == b';') {
        Some(i) => user.split_at(i),
        None => (user, &b""[..]),
    };
    // The parameters go back into a URI verbatim: only characters a user part may carry
    // unescaped (the SIP parser already enforced this; checked again because they are
    // copied into requests we send).
    if !params
        .iter()
        .all(|&b| is_user_safe(b) || b == b';' || b == b'%')
    {
        return Err(UNDECODABLE);
    }
    let params = std::str::from_utf8(params).map_err(|_| UNDECODABLE)?;
    let number = decode(number).ok_or(UNDECODABLE)?;
    Ok(Dialled { number, params })
}

/// Strict `%xx` decoding to UTF-8 text without control characters; borrows when there is
/// nothing to decode.
fn decode(raw: &[u8]) -> Option<Cow<'_, str>> {
    let text = if !raw.contains(&b'%') {
        Cow::Borrowed(std::str::from_utf8(raw).ok()?)
    } else {
        let mut out = Vec::with_capacity(raw.len());
        let mut rest = raw;
        while let Some((&b, tail)) = rest.split_first() {
            if b != b'%' {
                out.push(b);
                rest = tail;
                continue;
            }
            let (hex, tail) = (tail.get(..2)?, &tail[2..]);
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            rest = tail;
        }
        Cow::Owned(String::from_utf8(out).ok()?)
    };
    (!text.chars().any(char::is_control)).then_some(text)
}

/// Characters a SIP URI user part may carry unescaped (RFC 3261 §25.1: unreserved and
/// user-unreserved), except `;` and `?`, which would start parameters or headers.
fn is_user_safe(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.!~*'()&=+$,/".contains(&b)
}

/// `user` as a URI user part: every byte that may not stand unescaped is `%XX`-escaped
/// (a decoded `;`, `@`, `#`, space...). Borrows when nothing needs escaping.
pub(crate) fn escape_user(user: &str) -> Cow<'_, str> {
    if user.bytes().all(is_user_safe) {
        return Cow::Borrowed(user);
    }
    let mut out = String::with_capacity(user.len() + 8);
    for b in user.bytes() {
        if is_user_safe(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(user: &str) -> (String, String) {
        let d = parse(user.as_bytes()).unwrap_or_else(|e| panic!("{user}: {e:?}"));
        (d.number.into_owned(), d.params.to_string())
    }

    #[test]
    fn parameters_are_split_and_escapes_decoded() {
        let table = [
            ("+14155551234", "+14155551234", ""),
            (
                "+14155551234;npdi;rn=+14155550000",
                "+14155551234",
                ";npdi;rn=+14155550000",
            ),
            ("%2B14155551234", "+14155551234", ""),
            ("%2b14155551234;npdi", "+14155551234", ";npdi"),
            (
                "4155551234;rn=%2B14155550000",
                "4155551234",
                ";rn=%2B14155550000",
            ),
            // An escaped `;` is part of the number, not a parameter.
            ("911%3Bx", "911;x", ""),
            ("", "", ""),
            (";npdi", "", ";npdi"),
        ];
        for (user, number, params) in table {
            assert_eq!(ok(user), (number.to_string(), params.to_string()), "{user}");
        }
        assert!(matches!(
            parse(b"+14155551234").unwrap().number,
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn undecodable_users_are_refused() {
        for user in [
            &b"%2"[..],
            b"%zz1234",
            b"%FF%FE",
            b"12%00",
            b"12%0D%0AVia: x",
            b"\xff123",
            b"123;a\r\nb",
        ] {
            assert_eq!(parse(user), Err(UNDECODABLE), "{user:?}");
        }
    }

    #[test]
    fn decoded_text_is_escaped_again_in_a_uri() {
        assert!(matches!(escape_user("+14155551234"), Cow::Borrowed(_)));
        assert_eq!(escape_user("*67#1;x@evil?y"), "*67%231%3Bx%40evil%3Fy");
        assert_eq!(escape_user("1 2%"), "1%202%25");
        assert_eq!(escape_user("é"), "%C3%A9");
    }
}
