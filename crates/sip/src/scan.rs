//! Low-level byte scanners shared by the header views (and usable by the parser/editor).
//!
//! Everything here works on borrowed `&[u8]`, never allocates on the happy path and never
//! indexes peer data unchecked. Header values may still contain folded lines (CRLF + SP/HT)
//! or bare LF, so "whitespace" here means SP, HT, CR and LF: once a value has been cut out of
//! a message by the framer, any CR/LF left inside it can only be part of a fold.

use std::borrow::Cow;
use std::ops::Range;

use crate::error::Error;

/// Byte classes of the SIP grammar, one bit each in [`CLASS`]. The views check most
/// bytes they see against one of these, so one table load replaces chains of range and
/// `matches!` comparisons (the codec's hottest predicates).
pub(crate) mod class {
    /// RFC 3261 `token`: alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~".
    pub(crate) const TOKEN: u16 = 1 << 0;
    /// URI `user` characters: unreserved / escaped ("%") / user-unreserved.
    pub(crate) const USER: u16 = 1 << 1;
    /// URI `password` characters.
    pub(crate) const PASSWORD: u16 = 1 << 2;
    /// URI `hname` / `hvalue` characters.
    pub(crate) const URI_HEADER: u16 = 1 << 3;
    /// URI `paramchar` (with "%"; escapes are checked separately).
    pub(crate) const URI_PARAM: u16 = 1 << 4;
    /// Unquoted header-param value: token plus what an IPv6 host adds (":" "[" "]").
    pub(crate) const PARAM_VALUE: u16 = 1 << 5;
    /// Hostname label characters: alphanum / "-" / "_" (tolerated, real devices send it).
    pub(crate) const HOST: u16 = 1 << 6;
    /// Call-ID `word`: token plus `()<>:\"/[]?{}`.
    pub(crate) const WORD: u16 = 1 << 7;
    /// Characters after the first of a URI scheme: alphanum / "+" / "-" / ".".
    pub(crate) const SCHEME: u16 = 1 << 8;
    pub(crate) const DIGIT: u16 = 1 << 9;
    pub(crate) const HEX: u16 = 1 << 10;
    /// LWS including the CR/LF of a fold (see the module docs).
    pub(crate) const LWS: u16 = 1 << 11;
    /// Bytes that end a run in a comma list: `,`, `"` and `<` (see `next_list_comma`).
    pub(crate) const LIST_SPECIAL: u16 = 1 << 12;
    /// Bytes of an unbracketed host: [`HOST`] and `.`.
    pub(crate) const HOST_DOT: u16 = 1 << 13;
    /// [`USER`] without `%` (a user with no escape to check).
    pub(crate) const USER_PLAIN: u16 = 1 << 14;
    /// [`URI_PARAM`] without `%` (a parameter with no escape to check).
    pub(crate) const URI_PARAM_PLAIN: u16 = 1 << 15;
}

const fn is_unreserved_const(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
        )
}

const fn is_token_const(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
        )
}

/// The classes of one byte, spelled out from the RFC 3261 ABNF.
const fn classes_of(b: u8) -> u16 {
    use class::*;
    let mut c = 0;
    if is_token_const(b) {
        c |= TOKEN;
    }
    let unreserved = is_unreserved_const(b);
    if unreserved
        || matches!(
            b,
            b'%' | b'&' | b'=' | b'+' | b'$' | b',' | b';' | b'?' | b'/'
        )
    {
        c |= USER;
    }
    if unreserved || matches!(b, b'%' | b'&' | b'=' | b'+' | b'$' | b',') {
        c |= PASSWORD;
    }
    if unreserved || matches!(b, b'%' | b'[' | b']' | b'/' | b'?' | b':' | b'+' | b'$') {
        c |= URI_HEADER;
    }
    if unreserved || matches!(b, b'[' | b']' | b'/' | b':' | b'&' | b'+' | b'$' | b'%') {
        c |= URI_PARAM;
    }
    if is_token_const(b) || matches!(b, b':' | b'[' | b']') {
        c |= PARAM_VALUE;
    }
    if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
        c |= HOST;
    }
    if is_token_const(b)
        || matches!(
            b,
            b'(' | b')'
                | b'<'
                | b'>'
                | b':'
                | b'\\'
                | b'"'
                | b'/'
                | b'['
                | b']'
                | b'?'
                | b'{'
                | b'}'
        )
    {
        c |= WORD;
    }
    if b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.') {
        c |= SCHEME;
    }
    if b.is_ascii_digit() {
        c |= DIGIT;
    }
    if b.is_ascii_hexdigit() {
        c |= HEX;
    }
    if matches!(b, b' ' | b'\t' | b'\r' | b'\n') {
        c |= LWS;
    }
    if matches!(b, b',' | b'"' | b'<') {
        c |= LIST_SPECIAL;
    }
    if c & HOST != 0 || b == b'.' {
        c |= HOST_DOT;
    }
    if c & USER != 0 && b != b'%' {
        c |= USER_PLAIN;
    }
    if c & URI_PARAM != 0 && b != b'%' {
        c |= URI_PARAM_PLAIN;
    }
    c
}

/// [`class`] bits of every byte value.
pub(crate) static CLASS: [u16; 256] = {
    let mut t = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = classes_of(i as u8);
        i += 1;
    }
    t
};

/// Does `b` belong to any of the classes in `mask`?
#[inline(always)]
pub(crate) fn is(b: u8, mask: u16) -> bool {
    CLASS[b as usize] & mask != 0
}

/// Length of the run of bytes of one class (`class`, a single bit) at the start of `s`:
/// what `position(|b| !is(b, class))` gives, four bytes a step while all four are in
/// the class (one branch for four table loads instead of one each), then byte by byte.
#[inline]
pub(crate) fn run_len(s: &[u8], class: u16) -> usize {
    debug_assert!(class.is_power_of_two(), "one class bit");
    let mut i = 0;
    while let Some(&[a, b, c, d]) = s.get(i..i + 4) {
        let all = CLASS[usize::from(a)]
            & CLASS[usize::from(b)]
            & CLASS[usize::from(c)]
            & CLASS[usize::from(d)];
        if all & class == 0 {
            break;
        }
        i += 4;
    }
    while let Some(&b) = s.get(i) {
        if !is(b, class) {
            break;
        }
        i += 1;
    }
    i
}

/// Does every byte of `s` belong to `mask`? (True for an empty `s`.)
#[inline]
pub(crate) fn all_in(s: &[u8], mask: u16) -> bool {
    s.iter().all(|&b| is(b, mask))
}

/// Is `b` an RFC 3261 token character?
#[inline]
pub(crate) fn is_token_char(b: u8) -> bool {
    is(b, class::TOKEN)
}

/// Is every byte of a non-empty `s` a token character?
#[inline]
pub(crate) fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && all_in(s, class::TOKEN)
}

/// Linear whitespace, including the CR/LF of a fold (see module docs).
#[inline]
pub(crate) fn is_lws(b: u8) -> bool {
    is(b, class::LWS)
}

/// Index of the first non-LWS byte at or after `i` (or `s.len()`).
#[inline]
pub(crate) fn skip_lws(s: &[u8], mut i: usize) -> usize {
    while let Some(&b) = s.get(i) {
        if !is_lws(b) {
            break;
        }
        i += 1;
    }
    i
}

/// `s` without leading and trailing LWS (folds included).
#[inline]
pub(crate) fn trim_lws(s: &[u8]) -> &[u8] {
    // Values come from the parser already trimmed, and views trim them again: answer
    // that case from the two end bytes.
    if let (Some(&first), Some(&last)) = (s.first(), s.last()) {
        if !is_lws(first) && !is_lws(last) {
            return s;
        }
    }
    let r = trim_range(s, 0..s.len());
    s.get(r).unwrap_or(&[])
}

/// The sub-range of `r` left after trimming LWS on both sides.
fn trim_range(s: &[u8], r: Range<usize>) -> Range<usize> {
    let (mut a, mut b) = (r.start, r.end.min(s.len()));
    while a < b && is_lws(s[a]) {
        a += 1;
    }
    while b > a && is_lws(s[b - 1]) {
        b -= 1;
    }
    a..b
}

/// ASCII case-insensitive equality (SIP names, schemes, tokens).
///
/// What `eq_ignore_ascii_case` answers, with the common case (the same spelling, as
/// parameter and scheme names nearly always are) one compare a byte instead of two
/// lowercasings: bytes that differ are equal only if they differ in the case bit alone
/// and are letters.
#[inline]
pub fn eq_ignore_case(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(&x, &y)| x == y || (x ^ y == 0x20 && (x | 0x20).is_ascii_lowercase()))
}

/// Reads a token starting at `i`. Returns the token and the index just past it, or `None`
/// when no token character is at `i`.
#[inline]
pub(crate) fn read_token(s: &[u8], i: usize) -> Option<(&[u8], usize)> {
    let rest = s.get(i..)?;
    let n = rest
        .iter()
        .position(|&b| !is_token_char(b))
        .unwrap_or(rest.len());
    if n == 0 {
        None
    } else {
        Some((&rest[..n], i + n))
    }
}

/// Reads a quoted-string whose opening `"` is at `i`. Returns the raw content between the
/// quotes (quoted-pairs left escaped, see [`unescape_quoted`]) and the index just past the
/// closing quote.
///
/// Accepts RFC 3261 qdtext (LWS, visible ASCII, UTF-8 bytes) and quoted-pairs (`\` followed
/// by any byte except CR/LF). Raw control characters and an unterminated string are errors.
pub(crate) fn read_quoted(s: &[u8], i: usize) -> Result<(&[u8], usize), Error> {
    if s.get(i) != Some(&b'"') {
        return Err(Error::BadSyntax("expected quoted string"));
    }
    let start = i + 1;
    let mut j = start;
    while let Some(&b) = s.get(j) {
        match b {
            b'"' => return Ok((&s[start..j], j + 1)),
            b'\\' => match s.get(j + 1) {
                Some(b'\r') | Some(b'\n') | None => {
                    return Err(Error::BadSyntax("bad quoted-pair"));
                }
                Some(_) => j += 2,
            },
            b' ' | b'\t' | b'\r' | b'\n' => j += 1,
            0..=0x1f | 0x7f => return Err(Error::BadSyntax("control character in quoted string")),
            _ => j += 1,
        }
    }
    Err(Error::BadSyntax("unterminated quoted string"))
}

/// Content of a quoted-string with its quoted-pairs resolved. Borrows unless there is an
/// escape to remove.
pub fn unescape_quoted(raw: &[u8]) -> Cow<'_, [u8]> {
    if memchr::memchr(b'\\', raw).is_none() {
        return Cow::Borrowed(raw);
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut it = raw.iter();
    while let Some(&b) = it.next() {
        if b == b'\\' {
            if let Some(&n) = it.next() {
                out.push(n);
            }
        } else {
            out.push(b);
        }
    }
    Cow::Owned(out)
}

/// Writes `s` as a quoted-string, escaping `"` and `\` (and dropping CR/LF, which no
/// quoted-string may carry unescaped and which must never reach the wire inside a value).
pub fn write_quoted(buf: &mut Vec<u8>, s: &[u8]) {
    buf.push(b'"');
    for &b in s {
        match b {
            b'"' | b'\\' => {
                buf.push(b'\\');
                buf.push(b);
            }
            b'\r' | b'\n' => {}
            _ => buf.push(b),
        }
    }
    buf.push(b'"');
}

/// Parses `1*DIGIT` (no sign, no LWS) into a u64, rejecting overflow.
pub(crate) fn parse_u64(s: &[u8]) -> Result<u64, Error> {
    if s.is_empty() {
        return Err(Error::BadSyntax("expected a number"));
    }
    let mut v: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return Err(Error::BadSyntax("non-digit in number"));
        }
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(b - b'0')))
            .ok_or(Error::BadSyntax("number too large"))?;
    }
    Ok(v)
}

/// Parses `1*DIGIT` (no sign, no LWS) into a u32, rejecting overflow.
pub(crate) fn parse_u32(s: &[u8]) -> Result<u32, Error> {
    let v = parse_u64(s)?;
    u32::try_from(v).map_err(|_| Error::BadSyntax("number too large"))
}

/// Is every `%` in `s` followed by two hex digits? Used for the escaped parts of URIs.
/// A plain loop: the parts are short and usually escape-free, where a memchr call costs
/// more than the scan.
#[inline]
pub(crate) fn escapes_ok(s: &[u8]) -> bool {
    let mut i = 0;
    while let Some(&b) = s.get(i) {
        if b == b'%' {
            match (s.get(i + 1), s.get(i + 2)) {
                (Some(&h), Some(&l)) if is(h, class::HEX) && is(l, class::HEX) => i += 3,
                _ => return false,
            }
        } else {
            i += 1;
        }
    }
    true
}

/// Decodes `%XX` escapes. Borrows when there are none; an invalid escape is kept literally
/// (callers validate with `escapes_ok` first when they care).
pub fn unescape_percent(s: &[u8]) -> Cow<'_, [u8]> {
    if memchr::memchr(b'%', s).is_none() {
        return Cow::Borrowed(s);
    }
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while let Some(&b) = s.get(i) {
        if b == b'%' {
            if let (Some(h), Some(l)) = (
                s.get(i + 1).and_then(|&c| hex_val(c)),
                s.get(i + 2).and_then(|&c| hex_val(c)),
            ) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    Cow::Owned(out)
}

#[inline]
fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Position of the first `needle` in `s` that is not inside a quoted-string. An unterminated
/// quote hides the rest of the input.
pub(crate) fn find_unquoted(s: &[u8], needle: u8) -> Option<usize> {
    // Plain byte loops: values are short, and memchr's setup costs more than it saves here.
    let mut i = 0;
    while let Some(&b) = s.get(i) {
        if b == needle {
            return Some(i);
        }
        i = if b == b'"' { skip_quoted(s, i)? } else { i + 1 };
    }
    None
}

/// Index just past the quoted-string whose opening quote is at `open`, or `None` if it is
/// unterminated.
fn skip_quoted(s: &[u8], open: usize) -> Option<usize> {
    let mut i = open + 1;
    while let Some(&b) = s.get(i) {
        match b {
            b'"' => return Some(i + 1),
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
    None
}

/// One element of a comma-separated header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListItem<'a> {
    /// The element with surrounding LWS trimmed (may be empty for `a,,b`).
    pub value: &'a [u8],
    /// Where `value` sits in the input handed to [`split_list`].
    pub range: Range<usize>,
}

/// Iterator over the comma-separated elements of a header value, see [`split_list`].
#[derive(Debug, Clone)]
pub struct ListIter<'a> {
    s: &'a [u8],
    pos: usize,
    done: bool,
}

/// Splits a list-valued header value on commas that are outside quoted strings and outside
/// `<...>` (a bracketed URI may contain commas). Empty elements are yielded (trimmed to
/// empty) so callers can reject them where the grammar does; an empty or all-LWS input
/// yields nothing.
pub fn split_list(s: &[u8]) -> ListIter<'_> {
    ListIter {
        s,
        pos: 0,
        done: trim_lws(s).is_empty(),
    }
}

impl<'a> ListIter<'a> {
    /// Before the first element is taken: the whole value as a single element (trimmed,
    /// with its range), for a typed iterator to try parsing whole before splitting (see
    /// `Vias::next`). `None` once iteration has started or for an empty value.
    #[inline]
    pub(crate) fn whole_if_untouched(&self) -> Option<ListItem<'a>> {
        if self.done || self.pos != 0 {
            return None;
        }
        let r = trim_range(self.s, 0..self.s.len());
        Some(ListItem {
            value: self.s.get(r.clone()).unwrap_or(&[]),
            range: r,
        })
    }

    /// Ends the iteration (the typed iterator took the whole value as its one element).
    #[inline]
    pub(crate) fn finish(&mut self) {
        self.done = true;
    }
}

impl<'a> Iterator for ListIter<'a> {
    type Item = ListItem<'a>;

    fn next(&mut self) -> Option<ListItem<'a>> {
        if self.done {
            return None;
        }
        let start = self.pos;
        let end = match next_list_comma(self.s, start) {
            Some(c) => {
                self.pos = c + 1;
                c
            }
            None => {
                self.done = true;
                self.s.len()
            }
        };
        let r = trim_range(self.s, start..end);
        Some(ListItem {
            value: self.s.get(r.clone()).unwrap_or(&[]),
            range: r,
        })
    }
}

/// Index of the next element-separating comma at or after `from`.
fn next_list_comma(s: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    // memchr3 jumps over the long runs of ordinary bytes (a Via value is ~100 of them).
    while let Some(p) = memchr::memchr3(b',', b'"', b'<', s.get(i..)?) {
        i += p;
        let b = s[i];
        i = match b {
            b',' => return Some(i),
            b'"' => skip_quoted(s, i)?,
            // URIs cannot contain quotes or '>', so only the closing bracket matters.
            b'<' => i + 1 + memchr::memchr(b'>', s.get(i + 1..)?)? + 1,
            _ => i + 1,
        };
    }
    None
}

/// The byte range to delete from `s` to remove the list element at `item` (a range yielded
/// by [`split_list`] or a typed list iterator) together with one adjacent comma and its LWS,
/// so that the remaining list stays well formed. Removing the only element returns the whole
/// value's range (the caller then drops the header line).
pub fn list_removal_range(s: &[u8], item: Range<usize>) -> Range<usize> {
    let end = item.end.min(s.len());
    let start = item.start.min(end);
    // Prefer eating the comma after the element: "a, b" -> "b".
    let after = skip_lws(s, end);
    if s.get(after) == Some(&b',') {
        return start..skip_lws(s, after + 1);
    }
    // Last element: eat the comma before it: "a, b" -> "a".
    let mut k = start;
    while k > 0 && is_lws(s[k - 1]) {
        k -= 1;
    }
    if k > 0 && s[k - 1] == b',' {
        let mut b = k - 1;
        while b > 0 && is_lws(s[b - 1]) {
            b -= 1;
        }
        return b..end;
    }
    0..s.len()
}

/// Reads a file of the conformance corpus (`tests/conformance/<path>`), found by walking up
/// from the crate directory.
#[cfg(test)]
pub(crate) fn test_corpus(path: &str) -> Vec<u8> {
    let mut dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    loop {
        let p = dir.join("tests/conformance").join(path);
        if p.exists() {
            return std::fs::read(p).unwrap();
        }
        assert!(dir.pop(), "conformance file {path} not found");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn run_len_is_position(
            s in proptest::collection::vec(proptest::sample::select(b"ab.%-@ ;:".to_vec()), 0..20),
            bit in 0u32..16,
        ) {
            let class = 1u16 << bit;
            let slow = s.iter().position(|&b| !is(b, class)).unwrap_or(s.len());
            proptest::prop_assert_eq!(run_len(&s, class), slow);
        }
    }

    #[test]
    fn eq_ignore_case_is_std() {
        for x in 0..=255u8 {
            for y in 0..=255u8 {
                assert_eq!(
                    eq_ignore_case(&[x, b'a'], &[y, b'A']),
                    [x, b'a'].eq_ignore_ascii_case(&[y, b'A']),
                    "{x} {y}"
                );
            }
        }
        assert!(!eq_ignore_case(b"tag", b"tags"));
        assert!(eq_ignore_case(b"", b""));
    }

    #[test]
    fn derived_classes() {
        for b in 0..=255u8 {
            assert_eq!(is(b, class::HOST_DOT), is(b, class::HOST) || b == b'.');
            assert_eq!(is(b, class::USER_PLAIN), is(b, class::USER) && b != b'%');
            assert_eq!(
                is(b, class::URI_PARAM_PLAIN),
                is(b, class::URI_PARAM) && b != b'%'
            );
        }
    }

    #[test]
    fn trims_folds() {
        assert_eq!(trim_lws(b" \r\n\tabc \r\n "), b"abc");
        assert_eq!(trim_lws(b" \r\n "), b"");
        assert_eq!(trim_lws(b""), b"");
    }

    #[test]
    fn tokens() {
        assert_eq!(read_token(b"INVITE sip", 0), Some((&b"INVITE"[..], 6)));
        assert_eq!(read_token(b" x", 0), None);
        assert_eq!(read_token(b"x", 5), None);
        assert!(is_token(b"!interesting-Method0123456789_*+`.%indeed'~"));
        assert!(!is_token(b"a,b"));
        assert!(!is_token(b""));
    }

    #[test]
    fn quoted() {
        let s = br#""J Rosenberg \\\""       <sip:x>"#;
        let (inner, end) = read_quoted(s, 0).unwrap();
        assert_eq!(inner, br#"J Rosenberg \\\""#);
        assert_eq!(&s[end..end + 1], b" ");
        assert_eq!(&*unescape_quoted(inner), br#"J Rosenberg \""#);
        assert!(read_quoted(b"\"Mr. J. User <sip:j.user@example.com>", 0).is_err());
        assert!(read_quoted(b"\"a\\", 0).is_err());
        assert!(read_quoted(b"\"a\x01\"", 0).is_err());
        // quoted-pairs of control characters and UTF-8 qdtext are fine (rfc4475 intmeth).
        assert!(read_quoted(b"\"BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f\"", 0).is_ok());
        assert!(read_quoted("\"Ёжик\"".as_bytes(), 0).is_ok());
        let mut buf = Vec::new();
        write_quoted(&mut buf, br#"a"b\c"#);
        assert_eq!(buf, br#""a\"b\\c""#);
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_u32(b"0068"), Ok(68));
        assert_eq!(parse_u32(b"4294967295"), Ok(u32::MAX));
        assert!(parse_u32(b"4294967296").is_err());
        assert!(parse_u32(b"36893488147419103232").is_err());
        assert!(parse_u32(b"-999").is_err());
        assert!(parse_u32(b"").is_err());
        assert!(parse_u32(b"1 ").is_err());
        assert_eq!(parse_u32(b"000000000000000000000000000042"), Ok(42));
        assert_eq!(parse_u32(b"000000000000000000000000000000"), Ok(0));
        assert!(parse_u32(b"000000000000000000000000099999999999").is_err());
        assert_eq!(parse_u64(b"18446744073709551615"), Ok(u64::MAX));
        assert!(parse_u64(b"18446744073709551616").is_err());
    }

    #[test]
    fn percent() {
        assert!(escapes_ok(b"null-%00-null"));
        assert!(!escapes_ok(b"%Z%45"));
        assert!(!escapes_ok(b"ab%4"));
        assert_eq!(&*unescape_percent(b"%75se%72"), b"user");
        assert_eq!(&*unescape_percent(b"null-%00-null"), b"null-\0-null");
        assert!(matches!(unescape_percent(b"plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn list_split() {
        let s = br#" "a,b" <sip:x,y@h>;p="1,2" ,, sip:z , "#;
        let items: Vec<_> = split_list(s).collect();
        assert_eq!(items.len(), 4);
        assert_eq!(items[0].value, br#""a,b" <sip:x,y@h>;p="1,2""#);
        assert_eq!(&s[items[0].range.clone()], items[0].value);
        assert_eq!(items[1].value, b"");
        assert_eq!(items[2].value, b"sip:z");
        assert_eq!(items[3].value, b"");
        assert_eq!(split_list(b"  ").count(), 0);
        assert_eq!(split_list(b"").count(), 0);
        // Unterminated quote or bracket: the rest is one element, never a panic.
        assert_eq!(split_list(b"\"a,b").count(), 1);
        assert_eq!(split_list(b"<a,b").count(), 1);
    }

    #[test]
    fn removal() {
        let s = b"SIP/2.0/UDP a;branch=1 , SIP/2.0/TCP b;branch=2,SIP/2.0/UDP c";
        let items: Vec<_> = split_list(s).collect();
        let r = list_removal_range(s, items[0].range.clone());
        let mut out = s.to_vec();
        out.drain(r);
        assert_eq!(out, b"SIP/2.0/TCP b;branch=2,SIP/2.0/UDP c");
        let r = list_removal_range(s, items[2].range.clone());
        let mut out = s.to_vec();
        out.drain(r);
        assert_eq!(out, b"SIP/2.0/UDP a;branch=1 , SIP/2.0/TCP b;branch=2");
        let one = b" x ";
        assert_eq!(list_removal_range(one, 1..2), 0..3);
    }

    #[test]
    fn unquoted_find() {
        assert_eq!(find_unquoted(br#""a;b";c"#, b';'), Some(5));
        assert_eq!(find_unquoted(br#""a\";b"#, b';'), None);
    }
}
