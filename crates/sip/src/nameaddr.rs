//! `name-addr` / `addr-spec` values with header parameters: From, To, Contact, Route,
//! Record-Route, P-Asserted-Identity, Reply-To...
//!
//! ```text
//! value     = ( name-addr / addr-spec ) *( SEMI param )
//! name-addr = [ display-name ] LAQUOT addr-spec RAQUOT
//! ```
//!
//! For a bare addr-spec, everything after the first `;` is a header parameter, not a URI
//! parameter (RFC 3261 §20.10), and the URI may not contain `?` (rfc4475 `regbadct`).

use std::borrow::Cow;
use std::ops::Range;

use crate::error::Error;
use crate::params::{ParamSyntax, Params};
use crate::scan::{
    all_in, class, find_unquoted, is_lws, is_token, read_quoted, skip_lws, split_list, trim_lws,
    unescape_quoted, ListIter,
};
use crate::uri::{AnyUri, Uri};

/// One parsed name-addr or addr-spec with its header parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameAddr<'a> {
    display: Option<&'a [u8]>,
    display_quoted: bool,
    uri: AnyUri<'a>,
    bracketed: bool,
    params: Params<'a>,
}

impl<'a> NameAddr<'a> {
    /// Parses one value (not a list; see [`name_addrs`] for Route/Contact lists). Leading
    /// and trailing LWS, folds included, are ignored.
    pub fn parse(s: &'a [u8]) -> Result<Self, Error> {
        let s = trim_lws(s);
        match s.first() {
            None => Err(Error::BadSyntax("empty address")),
            Some(b'"') => {
                let (disp, end) = read_quoted(s, 0)?;
                let lt = skip_lws(s, end);
                if s.get(lt) != Some(&b'<') {
                    return Err(Error::BadSyntax("expected '<' after display name"));
                }
                bracketed(s, lt, Some(disp), true)
            }
            // What the search below finds for the usual `<addr-spec>`: no display name.
            Some(b'<') => bracketed(s, 0, None, false),
            Some(_) => match find_unquoted(s, b'<') {
                Some(lt) => {
                    let disp = trim_lws(&s[..lt]);
                    if !is_token_words(disp) {
                        return Err(Error::BadSyntax("bad display name"));
                    }
                    bracketed(s, lt, (!disp.is_empty()).then_some(disp), false)
                }
                None => bare(s),
            },
        }
    }

    /// The display name as written: for a quoted one, the text between the quotes with
    /// quoted-pairs still escaped; for token words, the words and the LWS between them.
    #[inline]
    pub fn display_name(&self) -> Option<&'a [u8]> {
        self.display
    }

    /// Was the display name a quoted string (quoted-pairs in [`display_name`](Self::display_name) still escaped)?
    #[inline]
    pub fn display_name_is_quoted(&self) -> bool {
        self.display_quoted
    }

    /// The display name with quoted-pairs resolved (bytes; UTF-8 for well-behaved peers).
    pub fn display_name_unescaped(&self) -> Option<Cow<'a, [u8]>> {
        let d = self.display?;
        Some(if self.display_quoted {
            unescape_quoted(d)
        } else {
            Cow::Borrowed(d)
        })
    }

    /// The address, of any scheme.
    #[inline]
    pub fn uri(&self) -> &AnyUri<'a> {
        &self.uri
    }

    /// The URI if it is sip/sips/tel.
    #[inline]
    pub fn sip_uri(&self) -> Option<&Uri<'a>> {
        self.uri.as_uri()
    }

    /// Was the URI inside `<...>`?
    #[inline]
    pub fn is_bracketed(&self) -> bool {
        self.bracketed
    }

    /// Header parameters (after the `>` or after a bare addr-spec).
    #[inline]
    pub fn params(&self) -> Params<'a> {
        self.params
    }

    /// The `tag` parameter (From/To).
    #[inline]
    pub fn tag(&self) -> Option<&'a [u8]> {
        self.params.value(b"tag")
    }
}

/// The header parameters of one address value, found the way [`NameAddr::parse`] finds
/// them but without checking the display name and the URI: for whoever only reads a
/// parameter (the From and To tags, on every message) of a value already validated or
/// only relayed. Where `NameAddr::parse` succeeds this gives its `params()`; `None`
/// when the parameters cannot be located or do not parse.
pub fn header_params(s: &[u8]) -> Option<Params<'_>> {
    let s = trim_lws(s);
    let params_at = match *s.first()? {
        b'"' => {
            let (_, end) = read_quoted(s, 0).ok()?;
            let lt = skip_lws(s, end);
            (s.get(lt) == Some(&b'<')).then_some(())?;
            after_bracket(s, lt)?
        }
        // What the search below finds for the usual `<addr-spec>`.
        b'<' => after_bracket(s, 0)?,
        _ => match find_unquoted(s, b'<') {
            Some(lt) => after_bracket(s, lt)?,
            None => s
                .iter()
                .position(|&b| b == b';' || is_lws(b))
                .unwrap_or(s.len()),
        },
    };
    Params::parse(&s[params_at..], ParamSyntax::Header).ok()
}

/// Just past the `>` closing the `<` at `lt`.
fn after_bracket(s: &[u8], lt: usize) -> Option<usize> {
    let tail = s.get(lt + 1..)?;
    memchr::memchr(b'>', tail).map(|gt| lt + 1 + gt + 1)
}

/// `*1(token *(LWS token))`: an unquoted display name may be empty, and may not contain
/// separators such as `,` (rfc4475 `baddn`).
fn is_token_words(s: &[u8]) -> bool {
    all_in(s, class::TOKEN | class::LWS)
}

/// `"<" addr-spec ">" *(SEMI param)`, with `lt` the index of `<`. No LWS is allowed inside
/// the brackets (rfc4475 `badaspec`).
#[inline]
fn bracketed<'a>(
    s: &'a [u8],
    lt: usize,
    display: Option<&'a [u8]>,
    display_quoted: bool,
) -> Result<NameAddr<'a>, Error> {
    let inner_start = lt + 1;
    let tail = s.get(inner_start..).unwrap_or(&[]);
    let gt = memchr::memchr(b'>', tail).ok_or(Error::BadSyntax("missing '>'"))?;
    let uri = AnyUri::parse(&tail[..gt])?;
    let params = Params::parse(&tail[gt + 1..], ParamSyntax::Header)?;
    Ok(NameAddr {
        display,
        display_quoted,
        uri,
        bracketed: true,
        params,
    })
}

/// A bare addr-spec: the URI ends at the first `;` or LWS.
fn bare(s: &[u8]) -> Result<NameAddr<'_>, Error> {
    let end = s
        .iter()
        .position(|&b| b == b';' || is_lws(b))
        .unwrap_or(s.len());
    let uri_text = &s[..end];
    if memchr::memchr(b'?', uri_text).is_some() {
        return Err(Error::BadSyntax("URI with '?' must be in angle brackets"));
    }
    let uri = AnyUri::parse(uri_text)?;
    let params = Params::parse(&s[end..], ParamSyntax::Header)?;
    Ok(NameAddr {
        display: None,
        display_quoted: false,
        uri,
        bracketed: false,
        params,
    })
}

/// A Contact value: `*` or an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contact<'a> {
    /// `Contact: *` (REGISTER: remove all bindings).
    Star,
    /// An address with its parameters.
    Addr(NameAddr<'a>),
}

impl<'a> Contact<'a> {
    /// Parses one Contact value (`*` or a name-addr).
    pub fn parse(s: &'a [u8]) -> Result<Self, Error> {
        if trim_lws(s) == b"*" {
            Ok(Contact::Star)
        } else {
            NameAddr::parse(s).map(Contact::Addr)
        }
    }

    /// The address; `None` for `*`.
    pub fn addr(&self) -> Option<&NameAddr<'a>> {
        match self {
            Contact::Star => None,
            Contact::Addr(a) => Some(a),
        }
    }
}

/// Iterator over a comma-separated list of name-addrs (Route, Record-Route, Contact, PAI),
/// see [`name_addrs`].
#[derive(Debug, Clone)]
pub struct NameAddrs<'a> {
    items: ListIter<'a>,
}

/// Iterates the addresses of one header value. Each item carries the element's byte range
/// in `s` (for [`crate::scan::list_removal_range`]); a malformed or empty element yields
/// an error and iteration continues with the next.
pub fn name_addrs(s: &[u8]) -> NameAddrs<'_> {
    NameAddrs {
        items: split_list(s),
    }
}

impl<'a> Iterator for NameAddrs<'a> {
    type Item = Result<(NameAddr<'a>, Range<usize>), Error>;

    fn next(&mut self) -> Option<Self::Item> {
        let item = self.items.next()?;
        Some(NameAddr::parse(item.value).map(|na| (na, item.range)))
    }
}

/// Iterator over Contact values, see [`contacts`].
#[derive(Debug, Clone)]
pub struct Contacts<'a> {
    items: ListIter<'a>,
}

/// Iterates the values of one Contact header line (`*` or addresses), with byte ranges.
pub fn contacts(s: &[u8]) -> Contacts<'_> {
    Contacts {
        items: split_list(s),
    }
}

impl<'a> Iterator for Contacts<'a> {
    type Item = Result<(Contact<'a>, Range<usize>), Error>;

    fn next(&mut self) -> Option<Self::Item> {
        // A value starting with '<' that parses whole is the list's only element: its
        // commas and '<' can only sit inside the brackets or inside quoted parameter
        // values, which the split skips too. (A bare addr-spec is split first: its user
        // part may hold a comma, which the split cuts at.)
        if let Some(whole) = self.items.whole_if_untouched() {
            if whole.value.first() == Some(&b'<') {
                if let Ok(na) = NameAddr::parse(whole.value) {
                    self.items.finish();
                    return Some(Ok((Contact::Addr(na), whole.range)));
                }
            }
        }
        let item = self.items.next()?;
        Some(Contact::parse(item.value).map(|c| (c, item.range)))
    }
}

/// The `tag` parameter of a From or To value: the usual shape by [`plain_tag`], anything
/// else by [`header_params`].
pub fn tag_param(v: &[u8]) -> Option<&[u8]> {
    match plain_tag(v) {
        Some(tag) => Some(tag),
        None => header_params(v)?.value(b"tag"),
    }
}

/// The tag of a From or To value of the shape nearly every one has, `[name ]<uri>;tag=x`
/// (an unquoted display name or none, the tag the only parameter, a plain token), found
/// with two byte searches; `None` for anything else, which goes to the general parameter
/// parser (what it would return for these shapes: the proptests below). The proxy
/// reads the tags of every request and response (dialog matching, the callee-tag
/// hash), ~600 instructions each through the general parser.
fn plain_tag(v: &[u8]) -> Option<&[u8]> {
    let lt = v.iter().position(|&b| b == b'<')?;
    // A quote before the bracket: a quoted display name, whose text may hold '<'.
    if v[..lt].contains(&b'"') {
        return None;
    }
    let gt = lt + 1 + v[lt + 1..].iter().position(|&b| b == b'>')?;
    let tag = v[gt + 1..].strip_prefix(b";tag=")?;
    // One token, and so a whole parameter value.
    is_token(tag).then_some(tag)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::{split_list, test_corpus};
    use crate::uri::Scheme;

    /// Value of the first header named `name` in a corpus message, folds kept.
    fn header<'m>(msg: &'m [u8], name: &str) -> &'m [u8] {
        let mut start = None;
        let mut i = 0;
        for line in msg.split_inclusive(|&b| b == b'\n') {
            let at = i;
            i += line.len();
            if let Some(s) = start {
                if !matches!(line.first(), Some(b' ' | b'\t')) {
                    return &msg[s..at];
                }
                continue;
            }
            if let Some(c) = line.iter().position(|&b| b == b':') {
                if std::str::from_utf8(&line[..c])
                    .is_ok_and(|n| n.trim().eq_ignore_ascii_case(name))
                {
                    start = Some(at + c + 1);
                }
            }
        }
        panic!("no {name}");
    }

    #[test]
    fn simple_forms() {
        let na = NameAddr::parse(b"\"Alice\" <sip:alice@example.com>;tag=1928301774").unwrap();
        assert_eq!(na.display_name(), Some(&b"Alice"[..]));
        assert!(na.display_name_is_quoted());
        assert_eq!(na.sip_uri().unwrap().user(), Some(&b"alice"[..]));
        assert_eq!(na.tag(), Some(&b"1928301774"[..]));
        // Bare addr-spec: ;tag belongs to the header, the URI has no params.
        let na = NameAddr::parse(b"sip:caller@example.net;tag=93334").unwrap();
        assert!(!na.is_bracketed());
        assert_eq!(na.tag(), Some(&b"93334"[..]));
        assert!(na.sip_uri().unwrap().params().is_empty());
        // Bracketed: ;lr belongs to the URI.
        let na = NameAddr::parse(b"<sip:p1.example.com;lr>").unwrap();
        assert!(na.sip_uri().unwrap().has_lr());
        assert!(na.params().is_empty());
        assert_eq!(na.display_name(), None);
    }

    #[test]
    fn rfc4475_wsinv() {
        let m = test_corpus("rfc4475/wsinv.dat");
        let to = NameAddr::parse(header(&m, "TO")).unwrap();
        assert_eq!(to.tag(), Some(&b"1918181833n"[..]));
        assert_eq!(to.sip_uri().unwrap().user(), Some(&b"vivekg"[..]));
        let from = NameAddr::parse(header(&m, "from")).unwrap();
        assert_eq!(
            &*from.display_name_unescaped().unwrap(),
            b"J Rosenberg \\\""
        );
        assert_eq!(from.tag(), Some(&b"98asjd8"[..]));
        let c = NameAddr::parse(header(&m, "m")).unwrap();
        assert_eq!(&*c.display_name_unescaped().unwrap(), b"Quoted string \"\"");
        assert_eq!(c.params().value(b"newparam"), Some(&b"newvalue"[..]));
        assert!(c.params().has(b"secondparam"));
        assert_eq!(c.params().value(b"q"), Some(&b"0.33"[..]));
        let route: Vec<_> = name_addrs(header(&m, "Route")).collect();
        assert_eq!(route.len(), 1);
        let (r, _) = route[0].as_ref().unwrap();
        let u = r.sip_uri().unwrap();
        assert!(u.has_lr());
        assert_eq!(u.params().value(b"unknownwith"), Some(&b"value"[..]));
    }

    #[test]
    fn rfc4475_intmeth_and_lwsdisp() {
        let m = test_corpus("rfc4475/intmeth.dat");
        let to = NameAddr::parse(header(&m, "To")).unwrap();
        assert_eq!(
            &*to.display_name_unescaped().unwrap(),
            b"BEL:\x07 NUL:\x00 DEL:\x7f"
        );
        assert_eq!(
            to.sip_uri().unwrap().user(),
            Some(&b"1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"[..])
        );
        let from = NameAddr::parse(header(&m, "From")).unwrap();
        assert_eq!(
            from.display_name(),
            Some(&b"token1~` token2'+_ token3*%!.-"[..])
        );
        assert_eq!(from.tag(), Some(&b"_token~1'+`*%!-."[..]));
        let p = from.params().get(b"fromParam''~+*_!.-%").unwrap();
        assert!(std::str::from_utf8(p.value.unwrap()).is_ok());
        let m = test_corpus("rfc4475/lwsdisp.dat");
        let from = NameAddr::parse(header(&m, "From")).unwrap();
        assert_eq!(from.display_name(), Some(&b"caller"[..]));
        assert_eq!(from.tag(), Some(&b"323"[..]));
    }

    #[test]
    fn rfc4475_invalid() {
        let m = test_corpus("rfc4475/baddn.dat");
        assert!(NameAddr::parse(header(&m, "From")).is_err());
        assert!(NameAddr::parse(header(&m, "To")).is_err());
        let m = test_corpus("rfc4475/quotbal.dat");
        assert!(NameAddr::parse(header(&m, "To")).is_err());
        let m = test_corpus("rfc4475/badaspec.dat");
        assert!(NameAddr::parse(header(&m, "From")).is_ok());
        assert!(NameAddr::parse(header(&m, "To")).is_err());
        let m = test_corpus("rfc4475/regbadct.dat");
        assert!(NameAddr::parse(header(&m, "Contact")).is_err());
        let m = test_corpus("rfc4475/badinv01.dat");
        assert!(NameAddr::parse(header(&m, "Contact")).is_err());
        for bad in [
            &b""[..],
            b"<sip:a@b",
            b"\"x\" sip:a@b",
            b"<sip:a@b> x",
            b"alan@jasomi.com",
            b"<>",
            b"a\"b\" <sip:a@b>",
        ] {
            assert!(NameAddr::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn rfc4475_other_schemes_and_escapes() {
        let m = test_corpus("rfc4475/unksm2.dat");
        let to = NameAddr::parse(header(&m, "To")).unwrap();
        assert_eq!(to.uri().scheme(), b"isbn");
        let from = NameAddr::parse(header(&m, "From")).unwrap();
        assert_eq!(from.uri().scheme(), b"http");
        assert_eq!(from.tag(), Some(&b"3234233"[..]));
        let c = Contact::parse(header(&m, "Contact")).unwrap();
        assert_eq!(c.addr().unwrap().uri().as_bytes(), b"name:John_Smith");
        let m = test_corpus("rfc4475/regescrt.dat");
        let c = NameAddr::parse(header(&m, "M")).unwrap();
        assert!(c.sip_uri().unwrap().headers().is_some());
        let m = test_corpus("rfc4475/esc01.dat");
        let c = NameAddr::parse(header(&m, "Contact")).unwrap();
        assert_eq!(&*c.sip_uri().unwrap().user_unescaped().unwrap(), b"caller");
        let from = NameAddr::parse(header(&m, "From")).unwrap();
        assert_eq!(
            &*from.sip_uri().unwrap().user_unescaped().unwrap(),
            b"I have spaces"
        );
        let m = test_corpus("rfc4475/cparam01.dat");
        let c = NameAddr::parse(header(&m, "Contact")).unwrap();
        assert!(c.params().has(b"unknownparam"));
        let m = test_corpus("rfc4475/cparam02.dat");
        let c = NameAddr::parse(header(&m, "Contact")).unwrap();
        assert!(c.sip_uri().unwrap().params().has(b"unknownparam"));
        assert_eq!(c.sip_uri().unwrap().scheme(), Scheme::Sip);
    }

    #[test]
    fn rfc5118_contacts() {
        let m = test_corpus("rfc5118/ipv4-mapped-ipv6");
        let c = NameAddr::parse(header(&m, "Contact")).unwrap();
        assert_eq!(&*c.display_name_unescaped().unwrap(), b"T. desk phone");
        let h = c.sip_uri().unwrap().host().unwrap();
        assert_eq!(h.as_bytes(), b"::ffff:192.0.2.2");
    }

    #[test]
    fn header_params_are_the_parsed_ones() {
        for v in [
            &b"<sip:+15551234567@127.0.0.1:5060>;tag=1SIPpTag011"[..],
            b"sipp <sip:sipp@127.0.0.1:5070>;tag=1SIPpTag001",
            b"\"A <b>\" <sip:a@b;lr>;tag=x;q=0.5",
            b"sip:caller@example.net;tag=93334",
            b" <sip:a@b> ; tag = 1 ",
            b"<sip:a@b>",
        ] {
            let parsed = NameAddr::parse(v).unwrap().params();
            assert_eq!(
                header_params(v),
                Some(parsed),
                "{:?}",
                String::from_utf8_lossy(v)
            );
        }
    }

    /// The whole-value shortcut of [`Contacts`] agrees with the split it skips.
    fn contacts_reference(s: &[u8]) -> Vec<Result<(Contact<'_>, Range<usize>), Error>> {
        split_list(s)
            .map(|item| Contact::parse(item.value).map(|c| (c, item.range)))
            .collect()
    }

    #[test]
    fn contacts_whole_value_shortcut() {
        for s in [
            &b"<sip:sipp@127.0.0.1:5070;transport=UDP>"[..],
            b" <sip:a,b@h>;q=0.5 ",
            b"<sip:a@h>, <sip:b@h>",
            b"<sip:a@h>;p=\"x,<y\"",
            b"<sip:a@h>;p=\"x\", <sip:b@h>",
            b"sip:a,b@h",
            b"<sip:a@h>,",
            b"*",
        ] {
            assert_eq!(
                contacts(s).collect::<Vec<_>>(),
                contacts_reference(s),
                "{:?}",
                String::from_utf8_lossy(s)
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn contacts_shortcut_agrees_with_split(
            tail in proptest::collection::vec(
                proptest::sample::select(b"ab1.;=,\" <>@:\\".to_vec()), 0..20),
            head in proptest::sample::select(vec![&b"<sip:a@h"[..], b"<", b" <sip:", b""]),
        ) {
            let mut s = head.to_vec();
            s.extend_from_slice(&tail);
            proptest::prop_assert_eq!(contacts(&s).collect::<Vec<_>>(), contacts_reference(&s));
        }
    }

    #[test]
    fn lists() {
        let v = b"<sip:p1.example.com;lr>,\r\n <sip:p2.example.com;lr> , \"A, B\" <sip:x@y>";
        let all: Vec<_> = name_addrs(v).map(Result::unwrap).collect();
        assert_eq!(all.len(), 3);
        assert_eq!(&v[all[1].1.clone()], b"<sip:p2.example.com;lr>");
        assert_eq!(all[2].0.display_name(), Some(&b"A, B"[..]));
        let c: Vec<_> = contacts(b"*").map(Result::unwrap).collect();
        assert_eq!(c[0].0, Contact::Star);
        let errs: Vec<_> = name_addrs(b"<sip:a@b>,,<sip:c@d>").collect();
        assert_eq!(errs.len(), 3);
        assert!(errs[1].is_err());
    }

    #[test]
    fn plain_tags_take_the_short_path() {
        let cases: [(&[u8], &[u8]); 5] = [
            (b"<sip:1000@pbx.example.com>;tag=abc-1", b"abc-1"),
            (
                b"sipp <sip:sipp@127.0.0.1:5070>;tag=1234SIPpTag001",
                b"1234SIPpTag001",
            ),
            (b"Ext 10 <sip:10@pbx;user=phone>;tag=a.b_c+d", b"a.b_c+d"),
            (b"<tel:+15551234567>;tag=9", b"9"),
            (b"<sip:a@b>;tag=it's`~!", b"it's`~!"),
        ];
        for (v, tag) in cases {
            assert_eq!(plain_tag(v), Some(tag), "{}", String::from_utf8_lossy(v));
            assert_eq!(tag_param(v), Some(tag));
        }
        // Anything else is the general parser's.
        for v in [
            &b"\"A <b>\" <sip:a@b>;tag=x"[..],
            b"<sip:a@b>;TAG=x",
            b"<sip:a@b>;tag=x;foo",
            b"<sip:a@b>;tag=\"x\"",
            b"<sip:a@b>;tag=",
            b"<sip:a@b> ;tag=x",
            b"sip:a@b;tag=x",
        ] {
            assert_eq!(plain_tag(v), None, "{}", String::from_utf8_lossy(v));
        }
        assert_eq!(tag_param(b"sip:a@b;tag=x"), Some(&b"x"[..]));
        assert_eq!(tag_param(b"<sip:a@b>;foo;tag=y"), Some(&b"y"[..]));
    }

    const FRAGMENTS: [&str; 29] = [
        "a", "Z", "9", "-", ".", "~", "%", "*", "'", "`", "<", ">", "\"", ";", "=", " ", "\\", "@",
        ":", ",", "sip:", "tag", ";tag=", "TAG", "\r\n ", "\t", "/", "?", "&",
    ];

    proptest::proptest! {
        /// Wherever the short path answers, the general parameter parser gives the same
        /// tag.
        #[test]
        fn plain_tag_agrees_with_the_parameter_parser(parts in proptest::collection::vec(
            proptest::sample::select(FRAGMENTS.to_vec()),
            0..14,
        )) {
            let v = parts.concat();
            let v = v.as_bytes();
            if let Some(tag) = plain_tag(v) {
                let general = header_params(v).and_then(|p| p.value(b"tag"));
                proptest::prop_assert_eq!(Some(tag), general, "{:?}", String::from_utf8_lossy(v));
            }
        }

        /// The same over values built in the short path's shape, `name <uri>;tag=x`,
        /// from the same pieces (so that most take it).
        #[test]
        fn plain_tag_agrees_on_its_own_shape(
            name in proptest::collection::vec(proptest::sample::select(FRAGMENTS.to_vec()), 0..4),
            uri in proptest::collection::vec(proptest::sample::select(FRAGMENTS.to_vec()), 0..6),
            tag in proptest::collection::vec(proptest::sample::select(FRAGMENTS.to_vec()), 0..4),
        ) {
            let v = format!("{}<{}>;tag={}", name.concat(), uri.concat(), tag.concat());
            let v = v.as_bytes();
            if let Some(tag) = plain_tag(v) {
                let general = header_params(v).and_then(|p| p.value(b"tag"));
                proptest::prop_assert_eq!(Some(tag), general, "{:?}", String::from_utf8_lossy(v));
            }
        }
    }
}
