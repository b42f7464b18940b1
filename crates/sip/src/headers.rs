//! Small typed views over scalar and token-list headers: CSeq, Call-ID, Max-Forwards,
//! Content-Length, Content-Type, Expires, option-tag lists, P-Asserted-Identity.
//!
//! Each function takes one header value (folds allowed) and returns borrowed data.

use crate::error::Error;
use crate::nameaddr::{name_addrs, NameAddrs};
use crate::params::{ParamSyntax, Params};
use crate::scan::{
    class, eq_ignore_case, is_lws, is_token, parse_u32, read_token, run_len, skip_lws, split_list,
    trim_lws, ListIter,
};

/// Largest CSeq number (RFC 3261 §8.1.1.5: less than 2**31).
pub(crate) const CSEQ_MAX: u32 = (1 << 31) - 1;

/// `CSeq: 1*DIGIT LWS Method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CSeq<'a> {
    /// The sequence number (at most 2^31-1).
    pub seq: u32,
    /// The method, as written (case-sensitive).
    pub method: &'a [u8],
}

impl<'a> CSeq<'a> {
    /// Parses a CSeq value; the number must be at most 2^31-1 (rfc4475 `scalar02`,
    /// `scalarlg` carry larger ones) and the method a token.
    pub fn parse(s: &'a [u8]) -> Result<Self, Error> {
        let s = trim_lws(s);
        match plain_cseq(s) {
            Some(cseq) => Ok(cseq),
            None => general_cseq(s),
        }
    }
}

/// CSeq's general reading (any LWS between number and method), for what
/// [`plain_cseq`] leaves; `s` is trimmed.
fn general_cseq(s: &[u8]) -> Result<CSeq<'_>, Error> {
    let digits = s.iter().take_while(|b| b.is_ascii_digit()).count();
    let seq = parse_u32(&s[..digits]).map_err(|_| Error::BadSyntax("bad CSeq number"))?;
    if seq > CSEQ_MAX {
        return Err(Error::BadSyntax("CSeq number too large"));
    }
    let m = skip_lws(s, digits);
    if m == digits {
        return Err(Error::BadSyntax("bad CSeq"));
    }
    match read_token(s, m) {
        Some((method, end)) if end == s.len() => Ok(CSeq { seq, method }),
        _ => Err(Error::BadSyntax("bad CSeq method")),
    }
}

/// The usual CSeq, `1*9DIGIT SP method` with one space, read in one pass: the number
/// summed as its digits are checked (nine digits fit a u32), the method a token to the
/// end. `None` for anything else (more digits, other LWS, errors), which the general
/// reading then handles; where this answers that reading gives the same number and method.
#[inline]
fn plain_cseq(s: &[u8]) -> Option<CSeq<'_>> {
    let mut seq = 0u32;
    let mut i = 0;
    while let Some(&b) = s.get(i) {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            break;
        }
        if i == 9 {
            // A tenth digit: leading zeros or a number past 2^31-1, for the general path.
            return None;
        }
        seq = seq * 10 + u32::from(d);
        i += 1;
    }
    if i == 0 || seq > CSEQ_MAX || s.get(i) != Some(&b' ') {
        return None;
    }
    let method = &s[i + 1..];
    is_token(method).then_some(CSeq { seq, method })
}

/// RFC 3261 `word` characters (Call-ID): token characters plus `()<>:\\"/[]?{}`.
#[cfg(test)]
fn is_word_char(b: u8) -> bool {
    crate::scan::is(b, class::WORD)
}

/// Validates a Call-ID (`word ["@" word]`) and returns it trimmed.
pub fn call_id(s: &[u8]) -> Result<&[u8], Error> {
    let s = trim_lws(s);
    if is_call_id(s) {
        Ok(s)
    } else {
        Err(Error::BadSyntax("bad Call-ID"))
    }
}

/// `word ["@" word]` in one pass: a run of word characters, then either the end or an
/// `@` and a second run to the end. `@` is not a word character, so this is the
/// split-at-the-first-`@` reading without the `memchr` and the second pass.
#[inline]
fn is_call_id(s: &[u8]) -> bool {
    let left = run_len(s, class::WORD);
    if left == 0 {
        return false;
    }
    match s.get(left) {
        None => true,
        Some(b'@') => {
            let right = &s[left + 1..];
            let n = run_len(right, class::WORD);
            n > 0 && n == right.len()
        }
        Some(_) => false,
    }
}

/// Trimmed `1*DIGIT` value.
fn digits(s: &[u8], what: &'static str) -> Result<u32, Error> {
    parse_u32(trim_lws(s)).map_err(|_| Error::BadSyntax(what))
}

/// Max-Forwards, 0..=255 (larger values, rfc4475 `scalar02`, are a 400).
pub fn max_forwards(s: &[u8]) -> Result<u8, Error> {
    let v = digits(s, "bad Max-Forwards")?;
    u8::try_from(v).map_err(|_| Error::BadSyntax("Max-Forwards too large"))
}

/// Content-Length as u32 (a negative or huge value is a 400: rfc4475 `ncl`, `scalarlg`).
pub fn content_length(s: &[u8]) -> Result<u32, Error> {
    digits(s, "bad Content-Length")
}

/// Expires (and other delta-seconds): all-digit values beyond u32 are clamped to
/// `u32::MAX` rather than refused, as RFC 3261 §20.19 wants huge values treated as the
/// maximum (rfc4475 `scalar02`); anything non-numeric is an error (the registrar may choose
/// to treat it as 3600).
pub fn expires(s: &[u8]) -> Result<u32, Error> {
    let t = trim_lws(s);
    match parse_u32(t) {
        Ok(v) => Ok(v),
        Err(_) if !t.is_empty() && t.iter().all(u8::is_ascii_digit) => Ok(u32::MAX),
        Err(_) => Err(Error::BadSyntax("bad Expires")),
    }
}

/// `Content-Type: type "/" subtype *(SEMI m-parameter)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentType<'a> {
    pub(crate) mtype: &'a [u8],
    pub(crate) subtype: &'a [u8],
    /// The `;name=value` parameters after the media type.
    pub params: Params<'a>,
}

impl<'a> ContentType<'a> {
    /// Parses a Content-Type value.
    pub fn parse(s: &'a [u8]) -> Result<Self, Error> {
        let s = trim_lws(s);
        let bad = Error::BadSyntax("bad Content-Type");
        let (mtype, i) = read_token(s, 0).ok_or(bad)?;
        let i = skip_lws(s, i);
        if s.get(i) != Some(&b'/') {
            return Err(bad);
        }
        let (subtype, i) = read_token(s, skip_lws(s, i + 1)).ok_or(bad)?;
        let params = Params::parse(&s[i..], ParamSyntax::Header)?;
        Ok(ContentType {
            mtype,
            subtype,
            params,
        })
    }

    /// Case-insensitive `type/subtype` match.
    pub fn is(&self, mtype: &[u8], subtype: &[u8]) -> bool {
        eq_ignore_case(self.mtype, mtype) && eq_ignore_case(self.subtype, subtype)
    }

    /// `application/sdp`, the only body the proxy reads.
    pub fn is_sdp(&self) -> bool {
        self.is(b"application", b"sdp")
    }

    /// The multipart `boundary` parameter (quotes removed).
    pub fn boundary(&self) -> Option<&'a [u8]> {
        self.params.value(b"boundary")
    }
}

/// Iterator over the option tags of a Require / Proxy-Require / Supported / Unsupported
/// value, see [`option_tags`].
#[derive(Debug, Clone)]
pub struct OptionTags<'a> {
    items: ListIter<'a>,
}

/// Iterates option tags. An empty value yields nothing (an empty Supported is legal); an
/// element that is not a single token yields an error.
pub fn option_tags(s: &[u8]) -> OptionTags<'_> {
    OptionTags {
        items: split_list(s),
    }
}

impl<'a> Iterator for OptionTags<'a> {
    type Item = Result<&'a [u8], Error>;

    fn next(&mut self) -> Option<Self::Item> {
        let v = self.items.next()?.value;
        Some(if is_token(v) {
            Ok(v)
        } else {
            Err(Error::BadSyntax("bad option tag"))
        })
    }
}

/// Does an option-tag list contain `tag` (case-insensitive)? Malformed elements are
/// ignored.
pub fn has_option_tag(s: &[u8], tag: &[u8]) -> bool {
    option_tags(s).any(|t| t.is_ok_and(|t| eq_ignore_case(t, tag)))
}

/// The identities of a P-Asserted-Identity (or P-Preferred-Identity) value.
pub fn p_asserted_identities(s: &[u8]) -> NameAddrs<'_> {
    name_addrs(s)
}

/// A header value with no LWS inside and nothing but `token` characters (method names,
/// event packages...).
pub fn single_token(s: &[u8]) -> Result<&[u8], Error> {
    let t = trim_lws(s);
    if is_token(t) && !t.iter().any(|&b| is_lws(b)) {
        Ok(t)
    } else {
        Err(Error::BadSyntax("expected a token"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::test_corpus;

    #[test]
    fn cseq() {
        let c = CSeq::parse(b" 0009\r\n  INVITE").unwrap(); // rfc4475 wsinv
        assert_eq!(c.seq, 9);
        assert_eq!(c.method, b"INVITE");
        let c = CSeq::parse(b"139122385 !interesting-Method0123456789_*+`.%indeed'~").unwrap();
        assert_eq!(c.method, b"!interesting-Method0123456789_*+`.%indeed'~");
        assert_eq!(CSeq::parse(b"2147483647 ACK").unwrap().seq, CSEQ_MAX);
        for bad in [
            &b"2147483648 ACK"[..],
            b"36893488147419103232 REGISTER",  // scalar02
            b"9292394834772304023312 OPTIONS", // scalarlg
            b"INVITE",
            b"1",
            b"1INVITE",
            b"1 INVITE x",
            b"-1 INVITE",
            b"1 IN,VITE",
            b"",
        ] {
            assert!(CSeq::parse(bad).is_err(), "{bad:?}");
        }
    }

    /// CSeq's general reading, without [`plain_cseq`].
    fn cseq_general(s: &[u8]) -> Result<CSeq<'_>, Error> {
        general_cseq(trim_lws(s))
    }

    #[test]
    fn plain_cseq_fast_path() {
        for ok in [&b"1 INVITE"[..], b"999999999 BYE", b"000000001 ACK", b"7 x"] {
            let fast = plain_cseq(ok);
            assert!(fast.is_some(), "{:?}", String::from_utf8_lossy(ok));
            assert_eq!(fast.ok_or(()), cseq_general(ok).map_err(|_| ()));
        }
        for other in [
            &b"2147483648 INVITE"[..],
            b"2147483647 BYE",
            b"0000000001 INVITE",
            b"1  INVITE",
            b"1\tINVITE",
            b"1 INVITE ",
            b"1 ",
            b" 1 INVITE",
            b"INVITE",
            b"1 IN,VITE",
        ] {
            assert!(
                plain_cseq(other).is_none(),
                "{:?}",
                String::from_utf8_lossy(other)
            );
        }
    }

    /// The split-at-'@' reading [`is_call_id`] replaces.
    fn call_id_reference(s: &[u8]) -> bool {
        let (left, right) = match s.iter().position(|&b| b == b'@') {
            Some(at) => (&s[..at], Some(&s[at + 1..])),
            None => (s, None),
        };
        let word = |w: &[u8]| !w.is_empty() && w.iter().all(|&b| is_word_char(b));
        word(left) && right.into_iter().all(word)
    }

    proptest::proptest! {
        #[test]
        fn plain_cseq_agrees_with_general(
            s in proptest::collection::vec(
                proptest::sample::select(b"0129 \tAB,".to_vec()), 0..14)
        ) {
            if let Some(fast) = plain_cseq(&s) {
                proptest::prop_assert_eq!(cseq_general(&s), Ok(fast));
            }
        }

        #[test]
        fn call_id_one_pass_agrees(
            s in proptest::collection::vec(
                proptest::sample::select(b"a9@.-<>\" ,;\x00\xff".to_vec()), 0..12)
        ) {
            proptest::prop_assert_eq!(is_call_id(&s), call_id_reference(&s));
        }
    }

    #[test]
    fn call_ids() {
        assert_eq!(
            call_id(b" a84b4c76e66710@pc33.atlanta.com "),
            Ok(&b"a84b4c76e66710@pc33.atlanta.com"[..])
        );
        assert!(call_id(b"intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{").is_ok());
        assert!(call_id(b"").is_err());
        assert!(call_id(b"a b").is_err());
        assert!(call_id(b"a@").is_err());
        assert!(call_id(b"a@b@c").is_err());
    }

    #[test]
    fn scalars() {
        assert_eq!(max_forwards(b" 0068"), Ok(68));
        assert_eq!(max_forwards(b"255"), Ok(255));
        assert!(max_forwards(b"300").is_err()); // scalar02
        assert!(max_forwards(b"-1").is_err());
        assert!(max_forwards(b"").is_err());
        assert_eq!(content_length(b"0"), Ok(0));
        assert!(content_length(b"-999").is_err()); // ncl
        assert!(content_length(b"949302838503028349304023988").is_err());
        let huge = b"10000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000";
        assert_eq!(expires(huge), Ok(u32::MAX)); // scalar02
        assert_eq!(expires(b" 3600 "), Ok(3600));
        assert!(expires(b"Fri, 01 Jan 2010").is_err());
        assert!(expires(b"").is_err());
        assert_eq!(single_token(b" INVITE "), Ok(&b"INVITE"[..]));
        assert!(single_token(b"a b").is_err());
    }

    #[test]
    fn content_type() {
        let c = ContentType::parse(b"multipart/mixed;boundary=\"unique-boundary-1\"").unwrap();
        assert!(c.is(b"MULTIPART", b"Mixed"));
        assert_eq!(c.boundary(), Some(&b"unique-boundary-1"[..]));
        assert!(ContentType::parse(b"application / sdp").unwrap().is_sdp());
        assert!(ContentType::parse(b"application").is_err());
        assert!(ContentType::parse(b"application/").is_err());
        assert!(ContentType::parse(b"a/b c").is_err());
        let m = test_corpus("rfc4475/mpart01.dat");
        let line = m
            .split(|&b| b == b'\n')
            .find(|l| l.starts_with(b"Content-Type:"))
            .unwrap();
        let c = ContentType::parse(&line[13..]).unwrap();
        assert!(c.is(b"multipart", b"mixed"));
        assert_eq!(c.boundary(), Some(&b"7a9cbec02ceef655"[..]));
        assert!(c.boundary().is_some());
    }

    #[test]
    fn option_tag_lists() {
        let v = b"nothingSupportsThis, nothingSupportsThisEither"; // bext01
        let tags: Vec<_> = option_tags(v).map(Result::unwrap).collect();
        assert_eq!(
            tags,
            [&b"nothingSupportsThis"[..], b"nothingSupportsThisEither"]
        );
        assert!(has_option_tag(b"100rel,\r\n timer", b"TIMER"));
        assert_eq!(option_tags(b"  ").count(), 0);
        assert!(option_tags(b"a,,b").any(|t| t.is_err()));
        assert!(option_tags(b"a b").any(|t| t.is_err()));
    }

    #[test]
    fn pai() {
        let v = b"\"Cullen Jennings\" <sip:fluffy@cisco.com>, <tel:+14085264000>";
        let ids: Vec<_> = p_asserted_identities(v).map(Result::unwrap).collect();
        assert_eq!(ids.len(), 2);
        assert_eq!(
            ids[1].0.sip_uri().unwrap().user(),
            Some(&b"+14085264000"[..])
        );
    }
}
