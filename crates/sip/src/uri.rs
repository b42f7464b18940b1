//! SIP/SIPS URIs (RFC 3261 §19.1, RFC 5118 IPv6 hosts), tel URIs (RFC 3966) and opaque
//! absolute URIs, as borrowed views.
//!
//! - [`Uri::parse`] is the Request-URI parse: sip/sips/tel only (anything else is
//!   [`Error::UnsupportedUriScheme`], 416), no `?headers` part (RFC 3261 §19.1.5; rfc4475
//!   `escruri`), no whitespace or `<>` (rfc4475 `lwsruri`, `ltgtruri`).
//! - [`Uri::parse_in_header`] is the same but allows `?headers` (a Contact may carry them,
//!   rfc4475 `regescrt`).
//! - [`AnyUri::parse`] accepts any absolute URI (`http:`, `isbn:`...) as found in a
//!   name-addr, and gives a [`Uri`] for the three schemes we understand.

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::error::Error;
use crate::params::{ParamSyntax, Params};
use crate::scan::{
    all_in, class, eq_ignore_case, escapes_ok, is, run_len, unescape_percent, CLASS,
};

// ---------------------------------------------------------------------------------------
// Host
// ---------------------------------------------------------------------------------------

/// What a [`Host`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKind {
    /// A hostname (compare case-insensitively).
    Domain,
    /// A dotted IPv4 address.
    Ipv4,
    /// An IPv6 address; [`Host::as_bytes`] excludes the brackets.
    Ipv6,
}

/// A validated host: hostname, IPv4 address, or IPv6 reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Host<'a> {
    kind: HostKind,
    /// The address without brackets.
    text: &'a [u8],
}

impl<'a> Host<'a> {
    /// Parses `hostname / IPv4address / "[" IPv6address "]"`. An unbracketed IPv6 address is
    /// rejected: in a URI or sent-by it would be ambiguous with a port (rfc5118 `ipv6-bad`).
    #[inline]
    pub fn parse(s: &'a [u8]) -> Result<Self, Error> {
        match s.first() {
            None => Err(Error::BadSyntax("empty host")),
            Some(b'[') => match s.strip_prefix(b"[").and_then(|r| r.strip_suffix(b"]")) {
                Some(inner) if is_ipv6(inner) => Ok(Host {
                    kind: HostKind::Ipv6,
                    text: inner,
                }),
                _ => Err(Error::BadSyntax("bad IPv6 reference")),
            },
            Some(_) if is_ipv4_quad(s) => Ok(Host {
                kind: HostKind::Ipv4,
                text: s,
            }),
            Some(_) => match classify_host(s) {
                Some(kind) => Ok(Host { kind, text: s }),
                None => Err(Error::BadSyntax("bad host")),
            },
        }
    }

    /// The unbracketed host at the start of `s` (IPv4 or hostname) and its length: the
    /// run of host characters and dots, parsed, as the fast paths of URIs and Vias read
    /// it. A dotted quad followed by no further host character is read in one digit pass
    /// (the run would end where it ends, and [`Host::parse`] would call it IPv4); anything
    /// else is the run, then [`Host::parse`]. `None` when that fails.
    #[inline]
    pub(crate) fn parse_leading(s: &'a [u8]) -> Option<(Self, usize)> {
        if let Some(n) = ipv4_prefix_len(s) {
            let host = Host {
                kind: HostKind::Ipv4,
                text: &s[..n],
            };
            return Some((host, n));
        }
        let n = run_len(s, class::HOST_DOT);
        Host::parse(&s[..n]).ok().map(|h| (h, n))
    }

    /// Parses an IP address for Via `received`: IPv4, or IPv6 with or without brackets
    /// (RFC 5118 §4.5/§4.6 ask to accept both forms).
    pub fn parse_ip(s: &'a [u8]) -> Result<Self, Error> {
        // is_ipv4_quad accepts exactly what is_ipv4 does, in one digit pass.
        if is_ipv4_quad(s) {
            return Ok(Host {
                kind: HostKind::Ipv4,
                text: s,
            });
        }
        let inner = match s.strip_prefix(b"[") {
            Some(r) => r
                .strip_suffix(b"]")
                .ok_or(Error::BadSyntax("bad IPv6 reference"))?,
            None => s,
        };
        if is_ipv6(inner) {
            Ok(Host {
                kind: HostKind::Ipv6,
                text: inner,
            })
        } else {
            Err(Error::BadSyntax("bad IP address"))
        }
    }

    /// Hostname, IPv4 or IPv6.
    #[inline]
    pub fn kind(&self) -> HostKind {
        self.kind
    }

    /// The host text; for IPv6, without brackets.
    #[inline]
    pub fn as_bytes(&self) -> &'a [u8] {
        self.text
    }

    /// The address, for IP hosts. The RFC 3261 ABNF's three-colon form
    /// (`2001:db8:::192.0.2.1`, RFC 5118 §4.10) is read as its two-colon equivalent.
    pub fn ip(&self) -> Option<IpAddr> {
        match self.kind {
            HostKind::Domain => None,
            HostKind::Ipv4 => std::str::from_utf8(self.text)
                .ok()?
                .parse::<Ipv4Addr>()
                .ok()
                .map(IpAddr::V4),
            HostKind::Ipv6 => parse_ipv6_addr(self.text).map(IpAddr::V6),
        }
    }

    /// Writes the host as it appears in a URI or Via (IPv6 bracketed).
    pub fn write_to(&self, buf: &mut Vec<u8>) {
        if self.kind == HostKind::Ipv6 {
            buf.push(b'[');
            buf.extend_from_slice(self.text);
            buf.push(b']');
        } else {
            buf.extend_from_slice(self.text);
        }
    }
}

impl fmt::Display for Host<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = String::from_utf8_lossy(self.text);
        if self.kind == HostKind::Ipv6 {
            write!(f, "[{t}]")
        } else {
            f.write_str(&t)
        }
    }
}

/// A host and optional port, as in a URI or Via sent-by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostPort<'a> {
    /// The host.
    pub host: Host<'a>,
    /// The port, `None` when absent (the transport's default applies).
    pub port: Option<u16>,
}

impl HostPort<'_> {
    /// Writes `host[:port]` as it appears in a URI or Via (IPv6 bracketed).
    pub fn write_to(&self, buf: &mut Vec<u8>) {
        self.host.write_to(buf);
        if let Some(p) = self.port {
            buf.push(b':');
            write_u16(buf, p);
        }
    }
}

impl fmt::Display for HostPort<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(p) => write!(f, "{}:{p}", self.host),
            None => write!(f, "{}", self.host),
        }
    }
}

pub(crate) fn write_u16(buf: &mut Vec<u8>, v: u16) {
    let mut tmp = [0u8; 5];
    let mut n = v;
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&tmp[i..]);
}

/// What an unbracketed host is: IPv4 if [`is_ipv4`], else a hostname if it is one (see
/// [`is_hostname`]), else `None`. One pass over the bytes decides both, since every byte of
/// either form is a hostname character or a dot.
fn classify_host(s: &[u8]) -> Option<HostKind> {
    let mut dots = 0usize;
    let mut label_start = 0usize;
    // Is the label being read all digits?
    let mut digits_only = true;
    // The IPv4 reading survives while every label so far is a 1..=3-digit number ≤ 255;
    // the hostname reading while every finished label is non-empty with no leading or
    // trailing '-'. Labels are only looked at when a dot ends them, so the per-byte work
    // is one table load and a branch or two.
    let mut ipv4 = true;
    let mut hostname = true;
    for (i, &b) in s.iter().enumerate() {
        let c = CLASS[usize::from(b)];
        // Digits are host characters too: one branch for both.
        if c & class::HOST != 0 {
            digits_only &= c & class::DIGIT != 0;
            continue;
        }
        if b != b'.' {
            return None;
        }
        let label = &s[label_start..i];
        ipv4 &= digits_only && ipv4_octet_ok(label);
        hostname &= host_label_ok(label);
        dots += 1;
        label_start = i + 1;
        digits_only = true;
    }
    let last = &s[label_start..];
    if ipv4 && dots == 3 && digits_only && ipv4_octet_ok(last) {
        return Some(HostKind::Ipv4);
    }
    if !hostname {
        return None;
    }
    if last.is_empty() {
        // One trailing dot is allowed ("example.com."); the label before it is the last
        // one, and it must exist.
        if dots == 0 {
            return None;
        }
        let before = &s[..label_start - 1];
        let prev_start = memchr::memrchr(b'.', before).map_or(0, |d| d + 1);
        let prev = &before[prev_start..];
        // `hostname` already vouches for `prev` unless it is the empty label of "a..".
        return (!prev.is_empty() && !prev.iter().all(u8::is_ascii_digit))
            .then_some(HostKind::Domain);
    }
    // An all-numeric last label means a malformed IPv4 address (`1.2.3`), not a name.
    (host_label_ok(last) && !digits_only).then_some(HostKind::Domain)
}

/// The common case first: trunks address each other by IP, so most hosts in Request-URIs,
/// Vias and Routes are dotted quads. Exactly the hosts [`classify_host`] calls IPv4
/// (four labels of 1 to 3 digits, each at most 255), read with one pass of digit
/// arithmetic instead of its per-byte classes and label checks.
#[inline]
fn is_ipv4_quad(s: &[u8]) -> bool {
    // The length test rejects most names before any digit is read.
    (7..=15).contains(&s.len()) && ipv4_prefix_len(s) == Some(s.len())
}

/// Length of the dotted quad `s` starts with (four labels of 1 to 3 digits, each at most
/// 255) when the byte after it is not a host character or dot; `None` otherwise.
#[inline]
fn ipv4_prefix_len(s: &[u8]) -> Option<usize> {
    let mut i = 0;
    for label in 0..4 {
        let start = i;
        let mut value = 0u32;
        while i - start < 3 {
            let Some(d) = s.get(i).map(|b| b.wrapping_sub(b'0')).filter(|&d| d <= 9) else {
                break;
            };
            value = value * 10 + u32::from(d);
            i += 1;
        }
        if i == start || value > 255 {
            return None;
        }
        if label < 3 {
            if s.get(i) != Some(&b'.') {
                return None;
            }
            i += 1;
        }
    }
    match s.get(i) {
        Some(&b) if is(b, class::HOST_DOT) => None,
        _ => Some(i),
    }
}

/// A label of only digits: is it a valid IPv4 octet (1 to 3 digits, at most 255)?
#[inline]
fn ipv4_octet_ok(label: &[u8]) -> bool {
    (1..=3).contains(&label.len())
        && label
            .iter()
            .fold(0u16, |a, &d| a * 10 + u16::from(d.wrapping_sub(b'0')))
            <= 255
}

#[inline]
fn host_label_ok(label: &[u8]) -> bool {
    matches!((label.first(), label.last()), (Some(&f), Some(&l)) if f != b'-' && l != b'-')
}

/// `1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT`, each at most 255.
pub fn is_ipv4(s: &[u8]) -> bool {
    let mut parts = 0;
    for part in s.split(|&b| b == b'.') {
        parts += 1;
        if parts > 4 || part.is_empty() || part.len() > 3 || !part.iter().all(u8::is_ascii_digit) {
            return false;
        }
        let v = part.iter().fold(0u16, |a, &d| a * 10 + u16::from(d - b'0'));
        if v > 255 {
            return false;
        }
    }
    parts == 4
}

/// An IPv6 address (without brackets) per RFC 4291 text forms, also accepting the
/// RFC 3261 ABNF's `hexpart ":" IPv4address` with a `::`-terminated hexpart, i.e.
/// `2001:db8:::192.0.2.1` (RFC 5118 §4.10 asks receivers to accept both).
pub fn is_ipv6(s: &[u8]) -> bool {
    if s.len() < 2 || s.len() > 45 {
        return false;
    }
    if memchr::memchr(b'.', s).is_none() {
        return hexpart_ok(s, 8);
    }
    // An embedded IPv4 tail takes the room of two groups.
    let Some(colon) = memchr::memrchr(b':', s) else {
        return false;
    };
    if !is_ipv4(&s[colon + 1..]) {
        return false;
    }
    let head = &s[..=colon];
    let head = if head.ends_with(b":::") {
        &head[..head.len() - 1]
    } else if head.ends_with(b"::") {
        head
    } else {
        &head[..head.len() - 1]
    };
    hexpart_ok(head, 6)
}

/// `hexseq | hexseq "::" [hexseq] | "::" [hexseq]` with exactly `groups` 16-bit groups
/// (fewer when compressed).
fn hexpart_ok(s: &[u8], groups: usize) -> bool {
    match find_double_colon(s) {
        Some(p) => {
            let (l, r) = (&s[..p], &s[p + 2..]);
            let (Some(nl), Some(nr)) = (hexseq_len(l), hexseq_len(r)) else {
                return false;
            };
            nl + nr < groups
        }
        None => hexseq_len(s) == Some(groups),
    }
}

fn find_double_colon(s: &[u8]) -> Option<usize> {
    s.windows(2).position(|w| w == b"::")
}

/// Number of groups in `hex4 *(":" hex4)` (0 for empty), or `None` when malformed.
fn hexseq_len(s: &[u8]) -> Option<usize> {
    if s.is_empty() {
        return Some(0);
    }
    let mut n = 0;
    for g in s.split(|&b| b == b':') {
        if g.is_empty() || g.len() > 4 || !g.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        n += 1;
    }
    Some(n)
}

fn parse_ipv6_addr(text: &[u8]) -> Option<Ipv6Addr> {
    // Only the three-colon quirk needs rewriting; a 45-byte stack buffer is enough.
    let mut tmp = [0u8; 45];
    let s = if let Some(p) = text.windows(3).position(|w| w == b":::") {
        let n = text.len().checked_sub(1)?;
        let dst = tmp.get_mut(..n)?;
        dst[..p].copy_from_slice(&text[..p]);
        dst[p..].copy_from_slice(&text[p + 1..]);
        &tmp[..n]
    } else {
        text
    };
    std::str::from_utf8(s).ok()?.parse().ok()
}

/// Hostname: labels of alphanumerics and `-` separated by dots, optional trailing dot.
/// Underscore is tolerated because real devices send it. An all-numeric name is not a
/// hostname (the last label must start with a letter), which rejects bad IPv4 like `1.2.3`.
/// (The reference definition; [`classify_host`] is the fast equivalent the parser uses.)
#[cfg(test)]
fn is_hostname(s: &[u8]) -> bool {
    let s = s.strip_suffix(b".").unwrap_or(s);
    if s.is_empty() {
        return false;
    }
    let mut last_label: &[u8] = &[];
    for label in s.split(|&b| b == b'.') {
        if label.is_empty()
            || label.first() == Some(&b'-')
            || label.last() == Some(&b'-')
            || !label.iter().all(|&b| is(b, class::HOST))
        {
            return false;
        }
        last_label = label;
    }
    !last_label.iter().all(u8::is_ascii_digit)
}

/// Parses a port: `1*DIGIT`, 1..=65535.
#[inline]
pub(crate) fn parse_port(s: &[u8]) -> Result<u16, Error> {
    let bad = Error::BadSyntax("bad port");
    if s.is_empty() || s.len() > 5 {
        return Err(bad);
    }
    // Digits checked and summed in the same pass.
    let mut v = 0u32;
    for &b in s {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return Err(bad);
        }
        v = v * 10 + u32::from(d);
    }
    match u16::try_from(v) {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(Error::BadSyntax("port out of range")),
    }
}

/// The port `s` starts with and its length: the run of digits, which [`parse_port`]
/// accepts (1 to 5 digits, 1..=65535), read and summed in one pass. `None` where the run
/// is empty, longer than five digits or out of range.
#[inline]
pub(crate) fn leading_port(s: &[u8]) -> Option<(u16, usize)> {
    let mut value = 0u32;
    let mut n = 0;
    while let Some(d) = s.get(n).map(|b| b.wrapping_sub(b'0')).filter(|&d| d <= 9) {
        if n == 5 {
            return None;
        }
        value = value * 10 + u32::from(d);
        n += 1;
    }
    let port = u16::try_from(value).ok().filter(|&p| p != 0)?;
    Some((port, n))
}

/// Splits `host [":" port]` where the host may be a bracketed IPv6 reference.
pub(crate) fn parse_host_port(s: &[u8]) -> Result<HostPort<'_>, Error> {
    let host_end = if s.first() == Some(&b'[') {
        memchr::memchr(b']', s).ok_or(Error::BadSyntax("unterminated IPv6 reference"))? + 1
    } else {
        memchr::memchr(b':', s).unwrap_or(s.len())
    };
    let host = Host::parse(&s[..host_end])?;
    let port = match &s[host_end..] {
        [] => None,
        [b':', p @ ..] => Some(parse_port(p)?),
        _ => return Err(Error::BadSyntax("junk after host")),
    };
    Ok(HostPort { host, port })
}

// ---------------------------------------------------------------------------------------
// SIP / SIPS / tel URI
// ---------------------------------------------------------------------------------------

/// The URI schemes the proxy routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `sip:`.
    Sip,
    /// `sips:` (TLS to the target).
    Sips,
    /// `tel:` (RFC 3966): a number, no host.
    Tel,
}

impl Scheme {
    /// Lowercase spelling without the colon.
    pub fn as_str(&self) -> &'static str {
        match self {
            Scheme::Sip => "sip",
            Scheme::Sips => "sips",
            Scheme::Tel => "tel",
        }
    }

    #[inline]
    fn from_bytes(s: &[u8]) -> Option<Scheme> {
        // Length first: almost every URI is "sip", and the others are cheap to reject.
        if s.len() == 3 && eq_ignore_case(s, b"sip") {
            Some(Scheme::Sip)
        } else if eq_ignore_case(s, b"sips") {
            Some(Scheme::Sips)
        } else if eq_ignore_case(s, b"tel") {
            Some(Scheme::Tel)
        } else {
            None
        }
    }
}

/// A parsed sip:, sips: or tel: URI. All fields borrow from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uri<'a> {
    raw: &'a [u8],
    scheme: Scheme,
    user: Option<&'a [u8]>,
    password: Option<&'a [u8]>,
    host: Option<Host<'a>>,
    port: Option<u16>,
    params: Params<'a>,
    headers: Option<&'a [u8]>,
}

/// Splits `scheme ":" rest` if `s` starts with a syntactically valid scheme
/// (`ALPHA *(ALPHA / DIGIT / "+" / "-" / ".")`).
pub(crate) fn split_scheme(s: &[u8]) -> Option<(&[u8], &[u8])> {
    if !s.first()?.is_ascii_alphabetic() {
        return None;
    }
    // ':' is not a scheme character, so the scheme is the run of them that ':' ends.
    let colon = s.iter().position(|&b| !is(b, class::SCHEME))?;
    (s[colon] == b':').then(|| (&s[..colon], &s[colon + 1..]))
}

impl<'a> Uri<'a> {
    /// Parses a Request-URI: sip/sips/tel, no `?headers`. Other well-formed schemes give
    /// [`Error::UnsupportedUriScheme`] (416); malformed text gives `BadSyntax` (400).
    pub fn parse(s: &'a [u8]) -> Result<Self, Error> {
        Self::parse_impl(s, false)
    }

    /// Like [`Uri::parse`], but allows the `?headers` component (URIs inside name-addrs).
    pub fn parse_in_header(s: &'a [u8]) -> Result<Self, Error> {
        Self::parse_impl(s, true)
    }

    fn parse_impl(s: &'a [u8], allow_headers: bool) -> Result<Self, Error> {
        if let Some(rest) = s.strip_prefix(b"sip:") {
            return parse_sip(s, Scheme::Sip, rest, allow_headers);
        }
        let (scheme, rest) = split_scheme(s).ok_or(Error::BadSyntax("bad URI"))?;
        let scheme = Scheme::from_bytes(scheme).ok_or(Error::UnsupportedUriScheme)?;
        Self::parse_known(s, scheme, rest, allow_headers)
    }

    /// The part after `scheme ":"`, once the scheme is known to be one of ours.
    fn parse_known(
        s: &'a [u8],
        scheme: Scheme,
        rest: &'a [u8],
        allow_headers: bool,
    ) -> Result<Self, Error> {
        match scheme {
            Scheme::Tel => parse_tel(s, rest),
            _ => parse_sip(s, scheme, rest, allow_headers),
        }
    }

    /// The scheme (the spelling's case is not kept).
    #[inline]
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The whole URI text.
    #[inline]
    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }

    /// The user part, still `%`-escaped. For tel URIs, the telephone-subscriber number.
    #[inline]
    pub fn user(&self) -> Option<&'a [u8]> {
        self.user
    }

    /// The user part with `%XX` decoded (may contain any byte, even NUL: rfc4475 `escnull`).
    pub fn user_unescaped(&self) -> Option<Cow<'a, [u8]>> {
        self.user.map(unescape_percent)
    }

    /// The password part (deprecated by RFC 3261, still parsed).
    #[inline]
    pub fn password(&self) -> Option<&'a [u8]> {
        self.password
    }

    /// The host; `None` only for tel URIs.
    #[inline]
    pub fn host(&self) -> Option<Host<'a>> {
        self.host
    }

    /// The port, `None` when absent.
    #[inline]
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// Host and port; `None` only for tel URIs.
    pub fn host_port(&self) -> Option<HostPort<'a>> {
        self.host.map(|host| HostPort {
            host,
            port: self.port,
        })
    }

    /// URI parameters (validated).
    #[inline]
    pub fn params(&self) -> Params<'a> {
        self.params
    }

    /// The `?headers` part without the `?`.
    #[inline]
    pub fn headers(&self) -> Option<&'a [u8]> {
        self.headers
    }

    /// Loose-routing flag `;lr`.
    pub fn has_lr(&self) -> bool {
        self.params.has(b"lr")
    }

    /// The `transport` URI parameter, as written.
    pub fn transport(&self) -> Option<&'a [u8]> {
        self.params.value(b"transport")
    }

    /// `;maddr=`, validated as a host.
    pub fn maddr(&self) -> Option<Host<'a>> {
        self.params
            .value(b"maddr")
            .and_then(|v| Host::parse(v).ok())
    }

    /// `;user=phone` (the user part is a telephone number).
    pub fn is_user_phone(&self) -> bool {
        self.params
            .value(b"user")
            .is_some_and(|v| eq_ignore_case(v, b"phone"))
    }

    /// Writes the URI text unchanged.
    pub fn write_to(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(self.raw);
    }
}

impl fmt::Display for Uri<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.raw))
    }
}

#[inline]
fn is_user_char(b: u8) -> bool {
    is(b, class::USER)
}

fn parse_sip<'a>(
    raw: &'a [u8],
    scheme: Scheme,
    rest: &'a [u8],
    allow_headers: bool,
) -> Result<Uri<'a>, Error> {
    if let Some(uri) = plain_sip(raw, scheme, rest) {
        return Ok(uri);
    }
    // '@' cannot appear unescaped after the userinfo, so the first one ends it. The user
    // part itself may hold ';', '?', ',' (rfc4475 semiuri, intmeth).
    let (user, password, after) = match memchr::memchr(b'@', rest) {
        Some(at) => {
            let (u, p) = split_userinfo(&rest[..at])?;
            (Some(u), p, &rest[at + 1..])
        }
        None => (None, None, rest),
    };
    let (hp, params, headers) = match plain_hostport_params(after) {
        Some((hp, params)) => (hp, params, None),
        None => hostport_params(after, allow_headers)?,
    };
    Ok(Uri {
        raw,
        scheme,
        user,
        password,
        host: Some(hp.host),
        port: hp.port,
        params,
        headers,
    })
}

/// The usual sip/sips URI, `[user "@"] host [":" port] *(";" uri-param)` with a user
/// free of `%` and password, read without the `memchr` for `@` and the userinfo split:
/// the run of user characters from the start is the user when an `@` ends it, and
/// otherwise the whole text must be the plain host part. `None` for anything else, which
/// the general path then parses (and rejects if it must). Where this answers the general
/// path gives the same: `@` is not a user character, so the `@` ending the run is the
/// first one, and the user split finds no password and no escape to check; without a
/// user, [`plain_hostport_params`] accepts no `@` (neither host, port nor URI parameter
/// characters include it), so the general path finds none either.
#[inline]
fn plain_sip<'a>(raw: &'a [u8], scheme: Scheme, rest: &'a [u8]) -> Option<Uri<'a>> {
    let run = run_len(rest, class::USER_PLAIN);
    let (user, after) = match rest.get(run) {
        Some(b'@') if run > 0 => (Some(&rest[..run]), &rest[run + 1..]),
        _ => (None, rest),
    };
    let (hp, params) = plain_hostport_params(after)?;
    Some(Uri {
        raw,
        scheme,
        user,
        password: None,
        host: Some(hp.host),
        port: hp.port,
        params,
        headers: None,
    })
}

/// What follows the userinfo, `hostport [";" params] ["?" headers]`, in general.
#[allow(clippy::type_complexity)]
fn hostport_params(
    after: &[u8],
    allow_headers: bool,
) -> Result<(HostPort<'_>, Params<'_>, Option<&[u8]>), Error> {
    let (before_headers, headers) = match memchr::memchr(b'?', after) {
        Some(_) if !allow_headers => {
            return Err(Error::BadSyntax("headers not allowed in Request-URI"));
        }
        Some(q) => {
            let h = &after[q + 1..];
            validate_uri_headers(h)?;
            (&after[..q], Some(h))
        }
        None => (after, None),
    };
    let hp_end = hostport_end(before_headers);
    let hp = parse_host_port(&before_headers[..hp_end])?;
    let params = Params::parse(&before_headers[hp_end..], ParamSyntax::Uri)?;
    Ok((hp, params, headers))
}

/// The common shape of what follows the userinfo, `host [":" port] *(";" uri-param)`
/// with an unbracketed host and no `?headers`, read in one pass over the host and port
/// where the general path runs three `memchr`s over short spans. `None` for anything
/// else, which the general path then parses (and rejects if it must). Where this
/// succeeds the general path gives the same result: the host, port and parameters hold
/// no `?` (so there are no headers), the host and port no `;` (so the parameters start
/// at the same place) and the host no `:` or `[` (so host and port split there too).
#[inline]
fn plain_hostport_params(after: &[u8]) -> Option<(HostPort<'_>, Params<'_>)> {
    let (hp, end) = plain_hostport(after)?;
    let params = Params::parse(&after[end..], ParamSyntax::Uri).ok()?;
    Some((hp, params))
}

/// The unbracketed `host[:port]` at the start of `s` when the end or a `;` follows it
/// (what URIs and Vias have before their parameters), and where it ends; `None` for
/// anything else.
#[inline]
pub(crate) fn plain_hostport(s: &[u8]) -> Option<(HostPort<'_>, usize)> {
    let (host, host_len) = Host::parse_leading(s)?;
    let mut end = host_len;
    let port = match s.get(end) {
        Some(b':') => {
            let (port, n) = leading_port(&s[end + 1..])?;
            end += 1 + n;
            Some(port)
        }
        _ => None,
    };
    if !matches!(s.get(end), None | Some(b';')) {
        return None;
    }
    Some((HostPort { host, port }, end))
}

/// End of `hostport` (start of `;params`), skipping over a bracketed IPv6 reference.
fn hostport_end(s: &[u8]) -> usize {
    let from = if s.first() == Some(&b'[') {
        memchr::memchr(b']', s).unwrap_or(0)
    } else {
        0
    };
    memchr::memchr(b';', &s[from..]).map_or(s.len(), |p| from + p)
}

fn split_userinfo(ui: &[u8]) -> Result<(&[u8], Option<&[u8]>), Error> {
    // ':' is not a user character, so the user part is the run of user characters; the
    // escapes are only looked at when there is a '%'.
    let user_len = run_len(ui, class::USER);
    let user = &ui[..user_len];
    let password = match ui.get(user_len) {
        None => None,
        Some(b':') => Some(&ui[user_len + 1..]),
        Some(_) => return Err(Error::BadSyntax("bad URI user")),
    };
    if user.is_empty() || !escapes_ok(user) {
        return Err(Error::BadSyntax("bad URI user"));
    }
    if let Some(p) = password {
        if !all_in(p, class::PASSWORD) || !escapes_ok(p) {
            return Err(Error::BadSyntax("bad URI password"));
        }
    }
    Ok((user, password))
}

/// `hname "=" hvalue *("&" hname "=" hvalue)`.
fn validate_uri_headers(h: &[u8]) -> Result<(), Error> {
    for pair in h.split(|&b| b == b'&') {
        let eq = memchr::memchr(b'=', pair).ok_or(Error::BadSyntax("bad URI header"))?;
        let (name, value) = (&pair[..eq], &pair[eq + 1..]);
        if name.is_empty()
            || !all_in(name, class::URI_HEADER)
            || !all_in(value, class::URI_HEADER)
            || !escapes_ok(pair)
        {
            return Err(Error::BadSyntax("bad URI header"));
        }
    }
    Ok(())
}

/// RFC 3966 `telephone-subscriber *par`, checked loosely: a global number (`+` then digits
/// and visual separators) or a local one (hex digits, `*`, `#`, separators), then params.
fn parse_tel<'a>(raw: &'a [u8], rest: &'a [u8]) -> Result<Uri<'a>, Error> {
    let end = memchr::memchr(b';', rest).unwrap_or(rest.len());
    let number = &rest[..end];
    let digits = number.strip_prefix(b"+").unwrap_or(number);
    let is_sep = |b: u8| matches!(b, b'-' | b'.' | b'(' | b')');
    let ok = if digits.len() < number.len() {
        digits.iter().any(u8::is_ascii_digit)
            && digits.iter().all(|&b| b.is_ascii_digit() || is_sep(b))
    } else {
        digits
            .iter()
            .any(|&b| b.is_ascii_hexdigit() || b == b'*' || b == b'#')
            && digits
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b == b'*' || b == b'#' || is_sep(b))
    };
    if !ok {
        return Err(Error::BadSyntax("bad tel number"));
    }
    let params = Params::parse(&rest[end..], ParamSyntax::Uri)?;
    Ok(Uri {
        raw,
        scheme: Scheme::Tel,
        user: Some(number),
        password: None,
        host: None,
        port: None,
        params,
        headers: None,
    })
}

// ---------------------------------------------------------------------------------------
// Any absolute URI
// ---------------------------------------------------------------------------------------

/// A URI inside a name-addr: one of ours, or any other absolute URI kept opaque.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnyUri<'a> {
    /// sip, sips or tel, parsed.
    Sip(Uri<'a>),
    /// Any other scheme, kept opaque.
    Other {
        /// The scheme as written.
        scheme: &'a [u8],
        /// The whole URI text.
        raw: &'a [u8],
    },
}

impl<'a> AnyUri<'a> {
    /// Parses an absolute URI. sip/sips/tel are fully validated (headers allowed); other
    /// schemes only need a valid scheme and a non-empty body free of whitespace, controls,
    /// `<`, `>` and `"`.
    pub fn parse(s: &'a [u8]) -> Result<Self, Error> {
        // Nearly every URI is written `sip:`: what split_scheme and Scheme::from_bytes
        // would find for it, without the scheme scan.
        if let Some(rest) = s.strip_prefix(b"sip:") {
            return parse_sip(s, Scheme::Sip, rest, true).map(AnyUri::Sip);
        }
        let (scheme, rest) = split_scheme(s).ok_or(Error::BadSyntax("bad URI"))?;
        if let Some(known) = Scheme::from_bytes(scheme) {
            return Uri::parse_known(s, known, rest, true).map(AnyUri::Sip);
        }
        let ok = !rest.is_empty()
            && rest
                .iter()
                .all(|&b| b > b' ' && b != 0x7f && !matches!(b, b'<' | b'>' | b'"'));
        if ok {
            Ok(AnyUri::Other { scheme, raw: s })
        } else {
            Err(Error::BadSyntax("bad URI"))
        }
    }

    /// The scheme as written (compare case-insensitively).
    pub fn scheme(&self) -> &'a [u8] {
        match self {
            AnyUri::Sip(u) => split_scheme(u.raw).map_or(&[][..], |(s, _)| s),
            AnyUri::Other { scheme, .. } => scheme,
        }
    }

    /// The whole URI text.
    pub fn as_bytes(&self) -> &'a [u8] {
        match self {
            AnyUri::Sip(u) => u.raw,
            AnyUri::Other { raw, .. } => raw,
        }
    }

    /// The sip/sips/tel view, if that is what this is.
    pub(crate) fn as_uri(&self) -> Option<&Uri<'a>> {
        match self {
            AnyUri::Sip(u) => Some(u),
            AnyUri::Other { .. } => None,
        }
    }
}

impl fmt::Display for AnyUri<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.as_bytes()))
    }
}

// ---------------------------------------------------------------------------------------
// Building
// ---------------------------------------------------------------------------------------

/// Appends `sip:user@host:port` (or `sips:` when `secure`) to `buf`. The user is
/// `%`-escaped where needed; an IPv6 host is bracketed unless it already is.
pub fn write_sip_uri(
    buf: &mut Vec<u8>,
    secure: bool,
    user: Option<&[u8]>,
    host: &[u8],
    port: Option<u16>,
) {
    buf.extend_from_slice(if secure { b"sips:" } else { b"sip:" });
    if let Some(u) = user {
        write_escaped_user(buf, u);
        buf.push(b'@');
    }
    let bracket = host.first() != Some(&b'[') && memchr::memchr(b':', host).is_some();
    if bracket {
        buf.push(b'[');
    }
    buf.extend_from_slice(host);
    if bracket {
        buf.push(b']');
    }
    if let Some(p) = port {
        buf.push(b':');
        write_u16(buf, p);
    }
}

fn write_escaped_user(buf: &mut Vec<u8>, user: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in user {
        if is_user_char(b) && b != b'%' {
            buf.push(b);
        } else {
            buf.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::scan::test_corpus as conformance;

    /// The fast path agrees with the general one wherever it answers (with or without
    /// headers allowed: it never sees any), and leaves every other input to it.
    fn fast_agrees(after: &[u8]) -> bool {
        let Some((hp, params)) = plain_hostport_params(after) else {
            return false;
        };
        for allow in [false, true] {
            assert_eq!(
                hostport_params(after, allow),
                Ok((hp, params, None)),
                "{:?}",
                String::from_utf8_lossy(after)
            );
        }
        true
    }

    #[test]
    fn plain_hostport_fast_path() {
        for ok in [
            &b"127.0.0.1:5061;transport=UDP"[..],
            b"127.0.0.1",
            b"example.com;lr",
            b"a-b.example.com.:5060;lr;maddr=239.0.0.1",
            b"host;x=%41",
        ] {
            assert!(fast_agrees(ok), "{:?}", String::from_utf8_lossy(ok));
        }
        // Left to the general path (which accepts some and rejects others).
        for other in [
            &b"[2001:db8::1]:5060"[..],
            b"host?subject=x",
            b"host;a?b=c",
            b"host:5060?x=y",
            b"1.2.3",
            b"host:0",
            b"host:65536",
            b"host:",
            b"host:50a60",
            b"-host",
            b"host;",
            b"host;;lr",
            b"host;=x",
            b"host;a=",
            b"host;%4",
            b"host ;lr",
            b"ho st",
            b"",
        ] {
            assert!(!fast_agrees(other), "{:?}", String::from_utf8_lossy(other));
        }
        // Whole URIs through both paths: the verdicts of the Request-URI parse stand.
        assert!(Uri::parse(b"sip:host;a?b=c").is_err());
        assert!(Uri::parse_in_header(b"sip:host;a?b=c").is_ok());
        assert!(Uri::parse(b"sip:u@host:5060;lr").unwrap().has_lr());
    }

    /// [`parse_sip`]'s general reading (without [`plain_sip`]), for comparison.
    fn general_sip<'a>(raw: &'a [u8], rest: &'a [u8], allow: bool) -> Result<Uri<'a>, Error> {
        let (user, password, after) = match memchr::memchr(b'@', rest) {
            Some(at) => {
                let (u, p) = split_userinfo(&rest[..at])?;
                (Some(u), p, &rest[at + 1..])
            }
            None => (None, None, rest),
        };
        let (hp, params, headers) = hostport_params(after, allow)?;
        Ok(Uri {
            raw,
            scheme: Scheme::Sip,
            user,
            password,
            host: Some(hp.host),
            port: hp.port,
            params,
            headers,
        })
    }

    /// The plain sip reading agrees with the general one wherever it answers.
    fn plain_sip_agrees(rest: &[u8]) -> bool {
        let Some(fast) = plain_sip(rest, Scheme::Sip, rest) else {
            return false;
        };
        for allow in [false, true] {
            assert_eq!(
                general_sip(rest, rest, allow),
                Ok(fast),
                "{:?}",
                String::from_utf8_lossy(rest)
            );
        }
        true
    }

    #[test]
    fn ports() {
        assert_eq!(parse_port(b"5060"), Ok(5060));
        assert_eq!(parse_port(b"65535"), Ok(65535));
        assert_eq!(parse_port(b"00001"), Ok(1));
        for (bad, why) in [
            (&b""[..], "bad port"),
            (b"50a0", "bad port"),
            (b"-1", "bad port"),
            (b"123456", "bad port"),
            (b"0", "port out of range"),
            (b"65536", "port out of range"),
            (b"99999", "port out of range"),
        ] {
            assert_eq!(parse_port(bad), Err(Error::BadSyntax(why)), "{bad:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn leading_port_is_the_digit_run_parsed(
            s in proptest::collection::vec(proptest::sample::select(b"0123569;a".to_vec()), 0..9)
        ) {
            let n = s.iter().position(|&b| !b.is_ascii_digit()).unwrap_or(s.len());
            let slow = parse_port(&s[..n]).ok().map(|p| (p, n));
            proptest::prop_assert_eq!(leading_port(&s), slow);
        }
    }

    #[test]
    fn plain_sip_fast_path() {
        for ok in [
            &b"alice@127.0.0.1:5060;transport=UDP"[..],
            b"+15551234567@127.0.0.1:5060",
            b"127.0.0.1:5090;transport=UDP",
            b"127.0.0.1;lr",
            b"a;b?c,d/e@example.com",
        ] {
            assert!(plain_sip_agrees(ok), "{:?}", String::from_utf8_lossy(ok));
        }
        for other in [
            &b"al%41ice@host"[..],
            b"alice:secret@host",
            b"@host",
            b"a@b@c",
            b"alice@[::1]:5060",
            b"alice@host?subject=x",
            b"alice@host;a=b?c=d",
            b"alice@",
            b"",
        ] {
            assert!(
                !plain_sip_agrees(other),
                "{:?}",
                String::from_utf8_lossy(other)
            );
        }
        assert_eq!(
            AnyUri::parse(b"sip:alice@host"),
            Ok(AnyUri::Sip(
                Uri::parse_in_header(b"sip:alice@host").unwrap()
            ))
        );
    }

    /// [`Host::parse_leading`] is the run of host characters, parsed.
    fn leading_agrees(s: &[u8]) {
        let n = s
            .iter()
            .position(|&b| !(is(b, class::HOST) || b == b'.'))
            .unwrap_or(s.len());
        let slow = Host::parse(&s[..n]).ok().map(|h| (h, n));
        assert_eq!(
            Host::parse_leading(s),
            slow,
            "{:?}",
            String::from_utf8_lossy(s)
        );
    }

    #[test]
    fn leading_host() {
        for s in [
            &b"127.0.0.1:5060"[..],
            b"127.0.0.1",
            b"255.255.255.255;lr",
            b"1.2.3.4.5",
            b"1.2.3.4a",
            b"1.2.3.256",
            b"1.2.3.1234",
            b"01.2.3.4",
            b"1.2.3",
            b"example.com:5060",
            b"1.2.3.4-x",
            b"[::1]",
            b"",
        ] {
            leading_agrees(s);
        }
        assert_eq!(ipv4_prefix_len(b"10.0.0.1:5060"), Some(8));
        assert_eq!(ipv4_prefix_len(b"10.0.0.1x"), None);
    }

    proptest::proptest! {
        #[test]
        fn leading_host_agrees(
            s in proptest::collection::vec(proptest::sample::select(b"0125.9a-:;".to_vec()), 0..18)
        ) {
            leading_agrees(&s);
        }

        #[test]
        fn ipv4_quad_is_ipv4(
            s in proptest::collection::vec(proptest::sample::select(b"0125.9a".to_vec()), 0..17)
        ) {
            proptest::prop_assert_eq!(is_ipv4_quad(&s), is_ipv4(&s));
        }

        #[test]
        fn plain_sip_agrees_with_general(
            rest in proptest::collection::vec(
                proptest::sample::select(b"aZ09.-_:;=?%[]@ /&+$4,".to_vec()), 0..24)
        ) {
            plain_sip_agrees(&rest);
        }

        #[test]
        fn plain_hostport_agrees_with_general(
            after in proptest::collection::vec(
                proptest::sample::select(b"aZ09.-_:;=?%[]@ /&+$4".to_vec()), 0..24)
        ) {
            fast_agrees(&after);
        }
    }

    /// The Request-URI of a corpus message (second token of the first line).
    fn request_uri(msg: &[u8]) -> Vec<u8> {
        let line = msg.split(|&b| b == b'\n').next().unwrap();
        line.split(|&b| b == b' ').nth(1).unwrap().to_vec()
    }

    #[test]
    fn basic_sip() {
        let u = Uri::parse(b"sip:alice:secret@Example.COM:5070;transport=tcp;lr").unwrap();
        assert_eq!(u.scheme(), Scheme::Sip);
        assert_eq!(u.user(), Some(&b"alice"[..]));
        assert_eq!(u.password(), Some(&b"secret"[..]));
        assert_eq!(u.host().unwrap().as_bytes(), b"Example.COM");
        assert_eq!(u.host().unwrap().kind(), HostKind::Domain);
        assert_eq!(u.port(), Some(5070));
        assert_eq!(u.transport(), Some(&b"tcp"[..]));
        assert!(u.has_lr());
        assert_eq!(u.host_port().unwrap().to_string(), "Example.COM:5070");
        let u = Uri::parse(b"SIPS:host").unwrap();
        assert_eq!(u.scheme(), Scheme::Sips);
        assert_eq!(u.user(), None);
        assert_eq!(u.port(), None);
    }

    #[test]
    fn rfc4475_valid_request_uris() {
        // semiuri: ';' inside the user part.
        let u = Uri::parse(b"sip:user;par=u%40example.net@example.com").unwrap();
        assert_eq!(u.user(), Some(&b"user;par=u%40example.net"[..]));
        assert_eq!(u.host().unwrap().as_bytes(), b"example.com");
        assert!(u.params().is_empty());
        // esc01: escaped user.
        let u = Uri::parse(b"sip:sips%3Auser%40example.com@example.net").unwrap();
        assert_eq!(&*u.user_unescaped().unwrap(), b"sips:user@example.com");
        // escnull
        let u = Uri::parse(b"sip:null-%00-null@example.com").unwrap();
        assert_eq!(&*u.user_unescaped().unwrap(), b"null-\0-null");
        // wsinv: unknown param.
        let u = Uri::parse(b"sip:vivekg@chair-dnrc.example.com;unknownparam").unwrap();
        assert!(u.params().has(b"unknownparam"));
        // intmeth: the craziest user/password the RFC could think of.
        let intmeth = conformance("rfc4475/intmeth.dat");
        let ruri = request_uri(&intmeth);
        let u = Uri::parse(&ruri).unwrap();
        assert_eq!(
            u.user(),
            Some(&b"1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"[..])
        );
        assert_eq!(
            u.password(),
            Some(&b"&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"[..])
        );
        assert_eq!(u.host().unwrap().as_bytes(), b"example.com");
    }

    #[test]
    fn rfc4475_invalid_request_uris() {
        for (file, want) in [
            ("ltgtruri", Error::BadSyntax("bad URI")),
            (
                "escruri",
                Error::BadSyntax("headers not allowed in Request-URI"),
            ),
            ("unkscm", Error::UnsupportedUriScheme),
            ("novelsc", Error::UnsupportedUriScheme),
        ] {
            let m = conformance(&format!("rfc4475/{file}.dat"));
            assert_eq!(Uri::parse(&request_uri(&m)), Err(want), "{file}");
        }
        // lwsruri: "sip:user@example.com; lr" (the parser may hand us the whole span).
        assert!(Uri::parse(b"sip:user@example.com; lr").is_err());
        assert!(Uri::parse(b"sip:user@example.com;").is_err());
        assert!(Uri::parse(b"sip:user@exa mple.com").is_err());
        assert!(Uri::parse(b"sip:@example.com").is_err());
        assert!(Uri::parse(b"sip:").is_err());
        assert!(Uri::parse(b"sip:a@b:0").is_err());
        assert!(Uri::parse(b"sip:a@b:65536").is_err());
        assert!(Uri::parse(b"sip:a@b:5o60").is_err());
        assert!(Uri::parse(b"sip:a@b:").is_err());
        assert!(Uri::parse(b"sip:a%4@b").is_err());
        assert!(Uri::parse(b"sip:a@b@c").is_err());
        assert!(Uri::parse(b"sip:a@1.2.3").is_err());
        assert!(Uri::parse(b"sip:a@256.1.1.1").is_err());
        assert!(Uri::parse(b"sip:a@-").is_err());
        assert!(Uri::parse(b"sip:a@b..c").is_err());
        assert_eq!(Uri::parse(b"http://x"), Err(Error::UnsupportedUriScheme));
        assert!(Uri::parse(b"").is_err());
        assert!(Uri::parse(b":x").is_err());
    }

    #[test]
    fn rfc5118_hosts() {
        type Expect = Option<(&'static str, Option<u16>)>;
        let cases: &[(&str, Expect)] = &[
            ("ipv6-good", Some(("2001:db8::10", None))),
            ("ipv6-bad", None),
            ("port-ambiguous", Some(("2001:db8::10:5070", None))),
            ("port-unambiguous", Some(("2001:db8::10", Some(5070)))),
            (
                "ipv6-bug-abnf-3-colons",
                Some(("2001:db8:::192.0.2.1", None)),
            ),
            (
                "ipv6-correct-abnf-2-colons",
                Some(("2001:db8::192.0.2.1", None)),
            ),
            ("ipv6-in-sdp", Some(("2001:db8::10", None))),
        ];
        for (file, want) in cases {
            let m = conformance(&format!("rfc5118/{file}"));
            let ruri = request_uri(&m);
            let got = Uri::parse(&ruri);
            match want {
                None => assert!(got.is_err(), "{file}"),
                Some((host, port)) => {
                    let u = got.unwrap_or_else(|e| panic!("{file}: {e}"));
                    let h = u.host().unwrap();
                    assert_eq!(h.kind(), HostKind::Ipv6, "{file}");
                    assert_eq!(h.as_bytes(), host.as_bytes(), "{file}");
                    assert_eq!(u.port(), *port, "{file}");
                }
            }
        }
        let three = Host::parse(b"[2001:db8:::192.0.2.1]").unwrap();
        let two = Host::parse(b"[2001:db8::192.0.2.1]").unwrap();
        assert_eq!(three.ip(), two.ip());
        assert!(two.ip().is_some());
        let mapped = Host::parse(b"[::ffff:192.0.2.10]").unwrap();
        assert_eq!(mapped.ip().unwrap().to_string(), "::ffff:192.0.2.10");
    }

    #[test]
    fn ipv6_validation() {
        for good in [
            "::",
            "::1",
            "1::",
            "2001:db8::10",
            "1:2:3:4:5:6:7:8",
            "1:2:3:4:5:6:1.2.3.4",
            "::ffff:1.2.3.4",
            "::1.2.3.4",
            "1::2:3:4:5:6:7",
            "fe80::1:2",
        ] {
            assert!(is_ipv6(good.as_bytes()), "{good}");
        }
        for bad in [
            "",
            ":",
            ":::",
            "1:2:3:4:5:6:7:8:9",
            "1::2::3",
            "12345::",
            "g::",
            "1:2:3:4:5:6:7",
            "1:2:3:4:5:6:7:1.2.3.4",
            "::1.2.3",
            "1:",
            ":1",
            "1::2:3:4:5:6:7:8",
            "::1.2.3.4:5",
        ] {
            assert!(!is_ipv6(bad.as_bytes()), "{bad}");
        }
        assert!(Host::parse(b"[2001:db8::1").is_err());
        assert!(Host::parse(b"[]").is_err());
        assert!(Host::parse(b"2001:db8::1").is_err());
        assert!(Host::parse_ip(b"2001:db8::1").is_ok());
        assert!(Host::parse_ip(b"[2001:db8::1]").is_ok());
        assert!(Host::parse_ip(b"example.com").is_err());
    }

    /// Calls `check` with every string of 1 to `max_len` bytes over `alphabet`.
    fn every_string(alphabet: &[u8], max_len: u32, mut check: impl FnMut(&[u8])) {
        let mut s = Vec::new();
        for len in 1..=max_len {
            for mut n in 0..alphabet.len().pow(len) {
                s.clear();
                for _ in 0..len {
                    s.push(alphabet[n % alphabet.len()]);
                    n /= alphabet.len();
                }
                check(&s);
            }
        }
    }

    /// The one-pass host classifier agrees with the reference definitions on every string
    /// of up to six bytes over an alphabet with every kind of edge.
    #[test]
    fn classify_host_matches_reference() {
        every_string(b"1a-._9", 6, |s| {
            let want = if is_ipv4(s) {
                Some(HostKind::Ipv4)
            } else if is_hostname(s) {
                Some(HostKind::Domain)
            } else {
                None
            };
            assert_eq!(classify_host(s), want, "{:?}", String::from_utf8_lossy(s));
        });
        for s in [
            "255.255.255.255",
            "256.1.1.1",
            "1.2.3.4.",
            "example.com.",
            "a..",
            "999.1.1.1",
        ] {
            let want = if is_ipv4(s.as_bytes()) {
                Some(HostKind::Ipv4)
            } else if is_hostname(s.as_bytes()) {
                Some(HostKind::Domain)
            } else {
                None
            };
            assert_eq!(classify_host(s.as_bytes()), want, "{s}");
        }
    }

    /// The dotted-quad fast path says IPv4 exactly where the reference does: every string
    /// of 7 to 9 bytes over digits that make octets valid or not and dots, and the edges
    /// of the longer forms.
    #[test]
    fn ipv4_fast_path_matches_reference() {
        every_string(b"0259.", 9, |s| {
            assert_eq!(
                is_ipv4_quad(s),
                is_ipv4(s),
                "{:?}",
                String::from_utf8_lossy(s)
            );
        });
        for t in [
            "255.255.255.255",
            "256.255.255.255",
            "255.255.255.256",
            "001.002.003.004",
            "0001.2.3.4",
            "1.2.3.4.",
            "1.2.3.4.5",
            "127.0.0.1",
            "127.0.0.1a",
            "10.0.0.255 ",
        ] {
            assert_eq!(is_ipv4_quad(t.as_bytes()), is_ipv4(t.as_bytes()), "{t}");
        }
    }

    #[test]
    fn tel_uris() {
        let u = Uri::parse(b"tel:+1-415-555-1212;phone-context=example.com").unwrap();
        assert_eq!(u.scheme(), Scheme::Tel);
        assert_eq!(u.user(), Some(&b"+1-415-555-1212"[..]));
        assert!(u.host().is_none());
        assert_eq!(
            u.params().value(b"phone-context"),
            Some(&b"example.com"[..])
        );
        assert!(Uri::parse(b"tel:7042;phone-context=+1415").is_ok());
        assert!(Uri::parse(b"tel:+").is_err());
        assert!(Uri::parse(b"tel:").is_err());
        assert!(Uri::parse(b"tel:+1 415").is_err());
    }

    #[test]
    fn headers_part() {
        // rfc4475 regescrt: allowed in a Contact's bracketed URI.
        let u =
            Uri::parse_in_header(b"sip:user@example.com?Route=%3Csip:sip.example.com%3E").unwrap();
        assert_eq!(u.headers(), Some(&b"Route=%3Csip:sip.example.com%3E"[..]));
        assert!(Uri::parse_in_header(b"sip:a@b?x").is_err());
        assert!(Uri::parse_in_header(b"sip:a@b?x=<y>").is_err());
    }

    #[test]
    fn any_uri() {
        let u = AnyUri::parse(b"http://www.example.com").unwrap();
        assert_eq!(u.scheme(), b"http");
        assert!(u.as_uri().is_none());
        assert_eq!(AnyUri::parse(b"name:John_Smith").unwrap().scheme(), b"name");
        assert_eq!(AnyUri::parse(b"isbn:2983792873").unwrap().scheme(), b"isbn");
        assert_eq!(AnyUri::parse(b"SIP:a@b").unwrap().scheme(), b"SIP");
        assert!(AnyUri::parse(b"sip:a@b").unwrap().as_uri().is_some());
        assert!(AnyUri::parse(b"x:").is_err());
        assert!(AnyUri::parse(b"x:a b").is_err());
        assert!(AnyUri::parse(b"alan@jasomi.com").is_err());
    }

    #[test]
    fn build() {
        let mut b = Vec::new();
        write_sip_uri(&mut b, false, Some(b"al ice"), b"2001:db8::1", Some(5060));
        assert_eq!(b, b"sip:al%20ice@[2001:db8::1]:5060");
        let u = Uri::parse(&b).unwrap();
        assert_eq!(&*u.user_unescaped().unwrap(), b"al ice");
        b.clear();
        write_sip_uri(&mut b, true, None, b"example.com", None);
        assert_eq!(b, b"sips:example.com");
        let mut w = Vec::new();
        Uri::parse(&b).unwrap().write_to(&mut w);
        assert_eq!(w, b);
        assert_eq!(Uri::parse(&b).unwrap().to_string(), "sips:example.com");
    }
}
