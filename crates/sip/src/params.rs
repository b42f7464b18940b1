//! `;name[=value]` parameters, as found after a URI (`uri-parameters`) or a header value
//! (`generic-param`, Via params, Contact params...).
//!
//! [`Params::parse`] validates once; afterwards iteration and lookups are infallible and
//! allocation-free. [`Params::new`] skips validation for text already known to be good; its
//! iterator is best-effort on garbage but never panics.

use std::borrow::Cow;

use crate::error::Error;
use crate::scan::{
    all_in, class, eq_ignore_case, escapes_ok, find_unquoted, is, is_token, read_quoted, run_len,
    skip_lws, trim_lws, unescape_quoted,
};

/// Which grammar the parameters follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamSyntax {
    /// Header params: token names, values token / quoted-string / host (an IPv6 host with or
    /// without brackets, since RFC 5118 §4.6 asks to accept `received=2001:db8::9:255`), LWS
    /// allowed around `;` and `=`.
    Header,
    /// URI params: `paramchar` names and values (unreserved, `[]/:&+$`, `%XX`), no LWS, no
    /// quoting.
    Uri,
}

/// One parameter. For a quoted value, `value` is the content between the quotes with
/// quoted-pairs still escaped; see [`Param::unescaped_value`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Param<'a> {
    /// The name as written (compare case-insensitively).
    pub name: &'a [u8],
    /// The value, `None` for a flag (`;lr`).
    pub value: Option<&'a [u8]>,
    pub(crate) quoted: bool,
}

impl<'a> Param<'a> {
    /// Case-insensitive name match.
    #[inline]
    pub fn is(&self, name: &[u8]) -> bool {
        eq_ignore_case(self.name, name)
    }

    /// The value with quoted-pairs resolved (borrows when there are none). URI param values
    /// keep their `%XX` escapes; decode with [`crate::scan::unescape_percent`] if needed.
    pub fn unescaped_value(&self) -> Option<Cow<'a, [u8]>> {
        let v = self.value?;
        Some(if self.quoted {
            unescape_quoted(v)
        } else {
            Cow::Borrowed(v)
        })
    }
}

/// A parameter section: empty, or text starting (after optional LWS) with `;`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Params<'a> {
    raw: &'a [u8],
}

impl<'a> Params<'a> {
    /// Wraps already-validated (or trusted) parameter text without checking it.
    #[inline]
    pub fn new(raw: &'a [u8]) -> Self {
        Params { raw }
    }

    /// Validates `raw` against `syntax` and wraps it.
    #[inline]
    pub fn parse(raw: &'a [u8], syntax: ParamSyntax) -> Result<Self, Error> {
        match syntax {
            // Every URI carries these: a single pass with no Param built per segment.
            ParamSyntax::Uri => validate_uri(raw)?,
            ParamSyntax::Header => validate(raw, syntax, |_| Ok(()))?,
        }
        Ok(Params { raw })
    }

    /// Validates like [`Params::parse`] and hands each parameter to `f` in the same pass
    /// (how Via picks out branch/received/rport without a second scan). Stops at the first
    /// error from the syntax or from `f`.
    pub(crate) fn parse_each(
        raw: &'a [u8],
        syntax: ParamSyntax,
        f: impl FnMut(Param<'a>) -> Result<(), Error>,
    ) -> Result<Self, Error> {
        validate(raw, syntax, f)?;
        Ok(Params { raw })
    }

    /// The parameter text as given (including the leading `;`).
    #[inline]
    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }

    /// No parameter at all.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    /// The parameters in order.
    #[inline]
    pub fn iter(&self) -> ParamIter<'a> {
        ParamIter {
            s: self.raw,
            pos: find_unquoted(self.raw, b';'),
        }
    }

    /// First parameter named `name` (case-insensitive).
    #[inline]
    pub fn get(&self, name: &[u8]) -> Option<Param<'a>> {
        self.iter().find(|p| p.is(name))
    }

    /// Value of the first parameter named `name`; `None` if absent or valueless.
    #[inline]
    pub fn value(&self, name: &[u8]) -> Option<&'a [u8]> {
        self.get(name).and_then(|p| p.value)
    }

    /// Is a parameter named `name` present (with or without value)?
    #[inline]
    pub fn has(&self, name: &[u8]) -> bool {
        self.get(name).is_some()
    }
}

impl<'a> IntoIterator for Params<'a> {
    type Item = Param<'a>;
    type IntoIter = ParamIter<'a>;
    fn into_iter(self) -> ParamIter<'a> {
        self.iter()
    }
}

/// Iterator over [`Params`]; skips empty segments (`;;`), which validation rejects anyway.
#[derive(Debug, Clone)]
pub struct ParamIter<'a> {
    s: &'a [u8],
    /// Index of the `;` opening the next segment.
    pos: Option<usize>,
}

impl<'a> Iterator for ParamIter<'a> {
    type Item = Param<'a>;

    fn next(&mut self) -> Option<Param<'a>> {
        loop {
            let semi = self.pos?;
            let rest = self.s.get(semi + 1..)?;
            // Almost every segment is a plain `token[=value]`: read it in one pass.
            if let Some((p, end)) = plain_segment(rest) {
                self.pos = end.map(|n| semi + 1 + n);
                return Some(p);
            }
            let seg_len = find_unquoted(rest, b';');
            self.pos = seg_len.map(|n| semi + 1 + n);
            let seg = &rest[..seg_len.unwrap_or(rest.len())];
            if let Some(p) = split_param(seg) {
                return Some(p);
            }
        }
    }
}

/// Splits one `name [= value]` segment; `None` when it is empty.
fn split_param(seg: &[u8]) -> Option<Param<'_>> {
    let seg = trim_lws(seg);
    if seg.is_empty() {
        return None;
    }
    // Segments are a few bytes long: a loop beats a memchr call here.
    let Some(eq) = seg.iter().position(|&b| b == b'=') else {
        return Some(Param {
            name: seg,
            value: None,
            quoted: false,
        });
    };
    let name = trim_lws(&seg[..eq]);
    let v = trim_lws(&seg[eq + 1..]);
    let quoted = v.len() >= 2 && v.first() == Some(&b'"') && v.last() == Some(&b'"');
    let value = if quoted { &v[1..v.len() - 1] } else { v };
    Some(Param {
        name,
        value: Some(value),
        quoted,
    })
}

/// RFC 3261 `paramchar` (the `%` escapes are checked separately).
#[inline]
pub(crate) fn is_uri_param_char(b: u8) -> bool {
    is(b, class::URI_PARAM)
}

/// [`ParamSyntax::Uri`] validation in one pass per segment. Equivalent to the generic
/// [`validate_segment`] path: URI params have no quoting and no LWS, so a `"` or any LWS
/// makes the segment bad whichever way the segments are cut, and the first bad segment
/// gives the same error.
fn validate_uri(raw: &[u8]) -> Result<(), Error> {
    let Some((&first, rest)) = raw.split_first() else {
        return Ok(());
    };
    if first != b';' {
        return Err(Error::BadSyntax("expected ';' before parameter"));
    }
    if plain_uri_params(rest) {
        return Ok(());
    }
    rest.split(|&b| b == b';')
        .try_for_each(validate_uri_segment)
}

/// The usual URI parameters (`;transport=udp`, `;lr`), checked in one pass over all of
/// them instead of a split and a loop per segment: every segment `1*paramchar ["="
/// 1*paramchar]` with no `%`. True only where [`validate_uri_segment`] accepts every
/// segment (neither `=` nor `;` is a paramchar, and without a `%` there is no escape to
/// check); false leaves the verdict, and the error, to it.
#[inline]
fn plain_uri_params(rest: &[u8]) -> bool {
    let mut i = 0;
    // Is the name or value being read the value?
    let mut in_value = false;
    loop {
        let part = run_len(&rest[i..], class::URI_PARAM_PLAIN);
        if part == 0 {
            return false;
        }
        i += part;
        match rest.get(i) {
            None => return true,
            Some(b'=') if !in_value => in_value = true,
            Some(b';') => in_value = false,
            Some(_) => return false,
        }
        i += 1;
    }
}

/// `paramchar+ ["=" paramchar+]` with well-formed `%XX` escapes.
fn validate_uri_segment(seg: &[u8]) -> Result<(), Error> {
    let bad = Error::BadSyntax("bad URI parameter");
    let mut eq = None;
    // Escapes are checked in a second pass only when there is one.
    let mut percent = false;
    for (i, &b) in seg.iter().enumerate() {
        if is_uri_param_char(b) {
            percent |= b == b'%';
            continue;
        }
        if b == b'=' && eq.is_none() {
            eq = Some(i);
            continue;
        }
        if all_in(seg, class::LWS) {
            return Err(Error::BadSyntax("empty parameter"));
        }
        return Err(bad);
    }
    let name_len = eq.unwrap_or(seg.len());
    if seg.is_empty() {
        return Err(Error::BadSyntax("empty parameter"));
    }
    if name_len == 0 || name_len + 1 == seg.len() || (percent && !escapes_ok(seg)) {
        return Err(bad);
    }
    Ok(())
}

fn validate<'a>(
    raw: &'a [u8],
    syntax: ParamSyntax,
    mut f: impl FnMut(Param<'a>) -> Result<(), Error>,
) -> Result<(), Error> {
    let start = match syntax {
        ParamSyntax::Header => skip_lws(raw, 0),
        ParamSyntax::Uri => 0,
    };
    let Some(rest) = raw.get(start..).filter(|r| !r.is_empty()) else {
        return Ok(());
    };
    if rest.first() != Some(&b';') {
        return Err(Error::BadSyntax("expected ';' before parameter"));
    }
    let mut pos = 1;
    loop {
        let tail = rest.get(pos..).unwrap_or(&[]);
        let (p, n) = match plain_header_segment(tail, syntax) {
            Some(fast) => fast,
            None => {
                let n = find_unquoted(tail, b';');
                let seg = &tail[..n.unwrap_or(tail.len())];
                (validate_segment(seg, syntax)?, n)
            }
        };
        f(p)?;
        match n {
            Some(n) => pos += n + 1,
            None => return Ok(()),
        }
    }
}

/// The common header parameter, `token ["=" value]` with no LWS and no quoting, read in
/// one pass: the parameter and the length of its segment (`None`: it runs to the end).
/// `None` for anything else (LWS, quotes, errors), which the general path then handles;
/// when this succeeds the general path would have produced the same parameter, since
/// trimming is a no-op and neither ';' nor '"' is a token or value character.
#[inline]
fn plain_header_segment(tail: &[u8], syntax: ParamSyntax) -> Option<(Param<'_>, Option<usize>)> {
    if syntax != ParamSyntax::Header {
        return None;
    }
    plain_segment(tail)
}

/// `token ["=" 1*value-char]` then `;` or the end, whatever the syntax: where this
/// succeeds, cutting the segment at the first unquoted `;` and [`split_param`] give the
/// same parameter and the same end (no LWS to trim, no quote to skip, the name holds no
/// `=`). Iteration and validation both try it first.
#[inline(always)]
fn plain_segment(tail: &[u8]) -> Option<(Param<'_>, Option<usize>)> {
    let name_len = run_len(tail, class::TOKEN);
    if name_len == 0 {
        return None;
    }
    let name = &tail[..name_len];
    let (value, end) = match tail.get(name_len) {
        None => (None, None),
        Some(b';') => (None, Some(name_len)),
        Some(b'=') => {
            let v = &tail[name_len + 1..];
            let v_len = run_len(v, class::PARAM_VALUE);
            let end = match v.get(v_len) {
                None => None,
                Some(b';') => Some(name_len + 1 + v_len),
                Some(_) => return None,
            };
            if v_len == 0 {
                return None;
            }
            (Some(&v[..v_len]), end)
        }
        Some(_) => return None,
    };
    Some((
        Param {
            name,
            value,
            quoted: false,
        },
        end,
    ))
}

fn validate_segment(seg: &[u8], syntax: ParamSyntax) -> Result<Param<'_>, Error> {
    let Some(p) = split_param(seg) else {
        return Err(Error::BadSyntax("empty parameter"));
    };
    match syntax {
        ParamSyntax::Header => {
            if !is_token(p.name) {
                return Err(Error::BadSyntax("bad parameter name"));
            }
            match p.value {
                None => Ok(p),
                Some(_) if p.quoted => check_quoted_value(seg).map(|_| p),
                Some(v) if !v.is_empty() && all_in(v, class::PARAM_VALUE) => Ok(p),
                Some(_) => Err(Error::BadSyntax("bad parameter value")),
            }
        }
        ParamSyntax::Uri => {
            let ok = |s: &[u8]| !s.is_empty() && all_in(s, class::URI_PARAM);
            // split_param trims LWS, so compare lengths to catch any whitespace.
            let value_len = p.value.map_or(0, |v| v.len() + 1);
            if p.quoted || p.name.len() + value_len != seg.len() {
                return Err(Error::BadSyntax("bad URI parameter"));
            }
            if !ok(p.name) || !p.value.into_iter().all(ok) || !escapes_ok(seg) {
                return Err(Error::BadSyntax("bad URI parameter"));
            }
            Ok(p)
        }
    }
}

/// The whole value after `=` must be exactly one well-formed quoted-string.
fn check_quoted_value(seg: &[u8]) -> Result<(), Error> {
    let eq = memchr::memchr(b'=', seg).ok_or(Error::BadSyntax("bad parameter"))?;
    let v = trim_lws(&seg[eq + 1..]);
    let (_, end) = read_quoted(v, 0)?;
    if end == v.len() {
        Ok(())
    } else {
        Err(Error::BadSyntax("text after quoted parameter value"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The segment reading before the plain fast path: cut at the first unquoted `;`,
    /// then split (the reference `ParamIter` must agree with).
    fn reference_params(raw: &[u8]) -> Vec<Param<'_>> {
        let mut out = Vec::new();
        let mut pos = find_unquoted(raw, b';');
        while let Some(semi) = pos {
            let rest = &raw[semi + 1..];
            let n = find_unquoted(rest, b';');
            pos = n.map(|n| semi + 1 + n);
            if let Some(p) = split_param(&rest[..n.unwrap_or(rest.len())]) {
                out.push(p);
            }
        }
        out
    }

    #[test]
    fn iteration_fast_path_agrees_with_reference() {
        for raw in [
            &b";tag=1234SIPpTag001"[..],
            b";branch=z9hG4bK-1;rport;received=192.0.2.1",
            b";a=\"q;uoted\";b",
            b" ; a = 1 ;b",
            b";;a=;=b;c=d=e",
            b";a=\"unterminated;b",
            b";x=[::1];y=%41",
            b"",
            b";",
        ] {
            let got: Vec<_> = Params::new(raw).iter().collect();
            assert_eq!(
                got,
                reference_params(raw),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn plain_uri_params_agree_with_segments(
            rest in proptest::collection::vec(
                proptest::sample::select(b"ab9;=%4 \t\":[]&".to_vec()), 0..16)
        ) {
            if plain_uri_params(&rest) {
                proptest::prop_assert!(rest.split(|&b| b == b';').all(|g| validate_uri_segment(g).is_ok()));
            }
        }

        #[test]
        fn iteration_agrees_with_reference(
            raw in proptest::collection::vec(
                proptest::sample::select(b"ab9;=\" \t\r\n\\:[]%.".to_vec()), 0..24)
        ) {
            let got: Vec<_> = Params::new(&raw).iter().collect();
            proptest::prop_assert_eq!(got, reference_params(&raw));
        }
    }

    fn hdr(s: &[u8]) -> Params<'_> {
        Params::parse(s, ParamSyntax::Header).unwrap()
    }

    #[test]
    fn lookup() {
        let p = hdr(b";branch=z9hG4bK1;RPort;received=[2001:db8::9:255];Foo=\"a;b\\\"c\"");
        assert_eq!(p.value(b"BRANCH"), Some(&b"z9hG4bK1"[..]));
        assert!(p.has(b"rport"));
        assert_eq!(p.get(b"rport").unwrap().value, None);
        assert_eq!(p.value(b"received"), Some(&b"[2001:db8::9:255]"[..]));
        let foo = p.get(b"foo").unwrap();
        assert!(foo.quoted);
        assert_eq!(foo.value, Some(&b"a;b\\\"c"[..]));
        assert_eq!(&*foo.unescaped_value().unwrap(), b"a;b\"c");
        assert_eq!(p.iter().count(), 4);
        assert!(!p.has(b"lr"));
    }

    #[test]
    fn folded_lws() {
        // rfc4475 wsinv: LWS and folds around ';' and '='.
        let p = hdr(b" ;\r\n  tag = 98asjd8");
        assert_eq!(p.value(b"tag"), Some(&b"98asjd8"[..]));
        let p = hdr(b" ; newparam =\r\n      newvalue ;\r\n  secondparam ; q = 0.33");
        assert_eq!(p.value(b"newparam"), Some(&b"newvalue"[..]));
        assert!(p.has(b"secondparam"));
        assert_eq!(p.value(b"q"), Some(&b"0.33"[..]));
    }

    #[test]
    fn rejects() {
        for bad in [
            &b";;"[..],
            b";",
            b"tag=1",
            b";a=",
            b";a b=1",
            b";a=b c",
            b";a=\"x",
            b";a=\"x\"y",
            b";a=<x>",
            b";;;;",
        ] {
            assert!(Params::parse(bad, ParamSyntax::Header).is_err(), "{bad:?}");
        }
        for bad in [
            &b";lr;"[..],
            b"; lr",
            b";a=\"b\"",
            b";a=%4",
            b";a=b c",
            b"lr",
        ] {
            assert!(Params::parse(bad, ParamSyntax::Uri).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn uri_params() {
        // rfc4475 esc01: escaped param names and values.
        let p = Params::parse(b";%6C%72;n%61me=v%61lue%25%34%31", ParamSyntax::Uri).unwrap();
        assert!(p.has(b"%6C%72"));
        assert_eq!(p.value(b"n%61me"), Some(&b"v%61lue%25%34%31"[..]));
        let p = Params::parse(b";lr;maddr=[2001:db8::1];transport=tcp", ParamSyntax::Uri).unwrap();
        assert_eq!(p.value(b"maddr"), Some(&b"[2001:db8::1]"[..]));
        assert!(Params::parse(b"", ParamSyntax::Uri).unwrap().is_empty());
    }

    #[test]
    fn garbage_iteration_never_panics() {
        for s in [&b";"[..], b";=", b"=;=", b";\"", b";a=\"", b"\";a", b";;=;"] {
            let _ = Params::new(s).iter().count();
            let _ = Params::new(s).get(b"a");
        }
    }
}
