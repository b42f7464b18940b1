//! Via values (RFC 3261 §20.42, RFC 3581 rport, RFC 5118 IPv6).
//!
//! ```text
//! via-parm      = sent-protocol LWS sent-by *( SEMI via-params )
//! sent-protocol = protocol-name SLASH protocol-version SLASH transport   ; SLASH = SWS "/" SWS
//! sent-by       = host [ COLON port ]                                    ; COLON = SWS ":" SWS
//! ```
//!
//! [`Via::parse`] validates one value in a single pass and keeps the parameters a proxy
//! reads on every message; [`vias`] walks the comma-separated values of one header line.

use std::ops::Range;

use crate::error::Error;
use crate::params::{Param, ParamSyntax, Params};
use crate::scan::{
    class, eq_ignore_case, is_lws, read_token, run_len, skip_lws, split_list, trim_lws, ListIter,
};
use crate::uri::{parse_port, plain_hostport, Host, HostPort};

/// The RFC 3261 branch prefix.
pub const MAGIC_COOKIE: &[u8] = b"z9hG4bK";

/// RFC 3581 `rport`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rport {
    /// No `rport` parameter.
    Absent,
    /// `;rport` without a value: the client asks us to fill it in.
    Requested,
    /// `;rport=N`, filled in by a server on the way.
    Value(u16),
}

/// Transport of the sent-protocol, for matching without string compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `UDP`.
    Udp,
    /// `TCP`.
    Tcp,
    /// `TLS`.
    Tls,
    /// `SCTP`.
    Sctp,
    /// `WS` (RFC 7118).
    Ws,
    /// `WSS` (RFC 7118).
    Wss,
    /// Anything else (rfc4475 `transports` has `UNKNOWN`); see [`Via::transport`].
    Other,
}

impl Transport {
    /// The transport of a sent-protocol token (case-insensitive).
    pub fn from_bytes(t: &[u8]) -> Transport {
        const ALL: [(&[u8], Transport); 6] = [
            (b"UDP", Transport::Udp),
            (b"TCP", Transport::Tcp),
            (b"TLS", Transport::Tls),
            (b"SCTP", Transport::Sctp),
            (b"WS", Transport::Ws),
            (b"WSS", Transport::Wss),
        ];
        ALL.iter()
            .find(|(n, _)| eq_ignore_case(n, t))
            .map_or(Transport::Other, |&(_, k)| k)
    }
}

/// One parsed Via value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Via<'a> {
    protocol: &'a [u8],
    version: &'a [u8],
    transport: &'a [u8],
    sent_by: HostPort<'a>,
    params: Params<'a>,
    branch: Option<&'a [u8]>,
    received: Option<Host<'a>>,
    rport: Rport,
    maddr: Option<Host<'a>>,
    ttl: Option<u8>,
}

impl<'a> Via<'a> {
    /// Parses and validates one Via value (not a comma list; see [`vias`]).
    pub fn parse(s: &'a [u8]) -> Result<Self, Error> {
        let s = trim_lws(s);
        let Head {
            protocol,
            version,
            transport,
            sent_by,
            params_at: i,
        } = match plain_head(s) {
            Some(head) => head,
            None => general_head(s)?,
        };
        let mut via = Via {
            protocol,
            version,
            transport,
            sent_by,
            params: Params::default(),
            branch: None,
            received: None,
            rport: Rport::Absent,
            maddr: None,
            ttl: None,
        };
        via.params = Params::parse_each(&s[i..], ParamSyntax::Header, |p| via.read_param(p))?;
        Ok(via)
    }

    /// Picks out and validates a parameter with a defined syntax; the first occurrence of
    /// each wins.
    fn read_param(&mut self, p: Param<'a>) -> Result<(), Error> {
        let v = p.value;
        if p.is(b"branch") && self.branch.is_none() {
            self.branch = Some(
                v.filter(|v| !p.quoted && !v.is_empty())
                    .ok_or(Error::BadSyntax("Via: bad branch"))?,
            );
        } else if p.is(b"received") && self.received.is_none() {
            let v = v
                .filter(|_| !p.quoted)
                .ok_or(Error::BadSyntax("Via: bad received"))?;
            self.received = Some(Host::parse_ip(v)?);
        } else if p.is(b"rport") && self.rport == Rport::Absent {
            self.rport = match v {
                None => Rport::Requested,
                Some(v) => {
                    Rport::Value(parse_port(v).map_err(|_| Error::BadSyntax("Via: bad rport"))?)
                }
            };
        } else if p.is(b"maddr") && self.maddr.is_none() {
            let v = v
                .filter(|_| !p.quoted)
                .ok_or(Error::BadSyntax("Via: bad maddr"))?;
            self.maddr = Some(Host::parse(v)?);
        } else if p.is(b"ttl") && self.ttl.is_none() {
            self.ttl = Some(parse_ttl(v).ok_or(Error::BadSyntax("Via: bad ttl"))?);
        }
        Ok(())
    }

    /// `SIP` as written.
    #[inline]
    pub fn protocol(&self) -> &'a [u8] {
        self.protocol
    }

    /// `2.0` as written.
    #[inline]
    pub fn version(&self) -> &'a [u8] {
        self.version
    }

    /// Is the sent-protocol `SIP/2.0` (name case-insensitive)?
    pub fn is_sip_2_0(&self) -> bool {
        eq_ignore_case(self.protocol, b"SIP") && self.version == b"2.0"
    }

    /// The transport token as written (`UDP`, `tcp`, `UNKNOWN`...).
    #[inline]
    pub fn transport(&self) -> &'a [u8] {
        self.transport
    }

    /// The transport as an enum.
    #[inline]
    pub fn transport_kind(&self) -> Transport {
        Transport::from_bytes(self.transport)
    }

    /// Host and port the sender says it sent from.
    #[inline]
    pub fn sent_by(&self) -> HostPort<'a> {
        self.sent_by
    }

    /// The sent-by host.
    #[inline]
    pub fn host(&self) -> Host<'a> {
        self.sent_by.host
    }

    /// The sent-by port, `None` when absent.
    #[inline]
    pub fn port(&self) -> Option<u16> {
        self.sent_by.port
    }

    /// All parameters, in order.
    #[inline]
    pub fn params(&self) -> Params<'a> {
        self.params
    }

    /// The `branch` parameter: the transaction id.
    #[inline]
    pub fn branch(&self) -> Option<&'a [u8]> {
        self.branch
    }

    /// Does the branch carry the RFC 3261 magic cookie followed by something? A branch
    /// that is only the cookie (rfc4475 `badbranch`) must be matched the RFC 2543 way.
    pub fn has_magic_cookie(&self) -> bool {
        self.branch
            .is_some_and(|b| b.len() > MAGIC_COOKIE.len() && b.starts_with(MAGIC_COOKIE))
    }

    /// `received`, an IPv4 or IPv6 address (brackets optional on the wire, stripped here).
    #[inline]
    pub fn received(&self) -> Option<Host<'a>> {
        self.received
    }

    /// The `rport` parameter (RFC 3581).
    #[inline]
    pub fn rport(&self) -> Rport {
        self.rport
    }

    /// The `maddr` parameter (multicast; not honoured by this proxy).
    #[inline]
    pub fn maddr(&self) -> Option<Host<'a>> {
        self.maddr
    }

    /// The `ttl` parameter.
    #[inline]
    pub fn ttl(&self) -> Option<u8> {
        self.ttl
    }
}

/// What comes before a Via's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head<'a> {
    protocol: &'a [u8],
    version: &'a [u8],
    transport: &'a [u8],
    sent_by: HostPort<'a>,
    /// Index of what follows the sent-by (its LWS skipped): the parameters.
    params_at: usize,
}

/// `sent-protocol LWS sent-by` in general: LWS around the slashes and the colon, folds,
/// bracketed IPv6 hosts.
fn general_head(s: &[u8]) -> Result<Head<'_>, Error> {
    let (protocol, i) = token_at(s, 0)?;
    let i = slash(s, i)?;
    let (version, i) = token_at(s, i)?;
    let i = slash(s, i)?;
    let (transport, i) = token_at(s, i)?;
    let host_start = skip_lws(s, i);
    if host_start == i {
        return Err(Error::BadSyntax("Via: expected LWS before sent-by"));
    }
    let (sent_by, params_at) = sent_by(s, host_start)?;
    Ok(Head {
        protocol,
        version,
        transport,
        sent_by,
        params_at,
    })
}

/// The shape nearly every Via has, `SIP/2.0/<transport> host[:port]` then `;` or the
/// end, with one space, no other LWS and an unbracketed host, read in one pass instead of
/// three token reads, two SWS slashes and the sent-by's LWS skips. `None` for anything
/// else, which [`general_head`] then reads (and rejects if it must). Where this answers
/// the general path gives the same: the tokens end at the same '/' and ' ', the one space
/// is all the LWS there is (the next byte is a host byte), the host ends at the same ':'
/// or ';' (host bytes are none of ':', ';' and LWS), and no LWS follows host or port.
#[inline]
fn plain_head(s: &[u8]) -> Option<Head<'_>> {
    let rest = s.strip_prefix(b"SIP/2.0/")?;
    let t_len = run_len(rest, class::TOKEN);
    if t_len == 0 || rest.get(t_len) != Some(&b' ') {
        return None;
    }
    let host_start = 8 + t_len + 1;
    let (sent_by, end) = plain_hostport(&s[host_start..])?;
    Some(Head {
        protocol: &s[..3],
        version: &s[4..7],
        transport: &rest[..t_len],
        sent_by,
        params_at: host_start + end,
    })
}

fn token_at(s: &[u8], i: usize) -> Result<(&[u8], usize), Error> {
    read_token(s, i).ok_or(Error::BadSyntax("Via: bad sent-protocol"))
}

/// `SWS "/" SWS`; returns the index after it.
fn slash(s: &[u8], i: usize) -> Result<usize, Error> {
    let j = skip_lws(s, i);
    if s.get(j) == Some(&b'/') {
        Ok(skip_lws(s, j + 1))
    } else {
        Err(Error::BadSyntax("Via: bad sent-protocol"))
    }
}

/// `host [COLON port]` starting at `i`; returns it and the index of what follows (LWS
/// skipped).
fn sent_by(s: &[u8], i: usize) -> Result<(HostPort<'_>, usize), Error> {
    let rest = s.get(i..).unwrap_or(&[]);
    let host_len = if rest.first() == Some(&b'[') {
        memchr::memchr(b']', rest).ok_or(Error::BadSyntax("Via: bad sent-by"))? + 1
    } else {
        rest.iter()
            .position(|&b| b == b':' || b == b';' || is_lws(b))
            .unwrap_or(rest.len())
    };
    let host = Host::parse(&rest[..host_len])?;
    let mut j = skip_lws(s, i + host_len);
    let mut port = None;
    if s.get(j) == Some(&b':') {
        let p0 = skip_lws(s, j + 1);
        let digits = s
            .get(p0..)
            .unwrap_or(&[])
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        port = Some(parse_port(&s[p0..p0 + digits])?);
        j = skip_lws(s, p0 + digits);
    }
    Ok((HostPort { host, port }, j))
}

fn parse_ttl(v: Option<&[u8]>) -> Option<u8> {
    let v = v?;
    if v.is_empty() || v.len() > 3 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    u8::try_from(v.iter().fold(0u16, |a, &d| a * 10 + u16::from(d - b'0'))).ok()
}

/// Iterator over the Via values of one header line, see [`vias`].
#[derive(Debug, Clone)]
pub struct Vias<'a> {
    items: ListIter<'a>,
}

/// Iterates the comma-separated values of one Via header line, each with its byte range in
/// `s` (remove the top one with [`crate::scan::list_removal_range`]). A malformed or empty
/// element yields an error; iteration continues after it.
pub fn vias(s: &[u8]) -> Vias<'_> {
    Vias {
        items: split_list(s),
    }
}

impl<'a> Iterator for Vias<'a> {
    type Item = Result<(Via<'a>, Range<usize>), Error>;

    fn next(&mut self) -> Option<Self::Item> {
        // Nearly every Via line holds one value: parsed whole, it is the list's only
        // element, with no comma search first. A value that parses has no separating
        // comma (or '<'): those can only sit inside a quoted parameter value, which the
        // split skips too. Anything else is split as before.
        if let Some(whole) = self.items.whole_if_untouched() {
            if let Ok(v) = Via::parse(whole.value) {
                self.items.finish();
                return Some(Ok((v, whole.range)));
            }
        }
        let item = self.items.next()?;
        Some(Via::parse(item.value).map(|v| (v, item.range)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::{list_removal_range, test_corpus};
    use crate::uri::HostKind;

    /// All Via header values (with folds) of a corpus message, in order.
    fn via_values(msg: &[u8]) -> Vec<Vec<u8>> {
        let head_end = msg
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .or_else(|| msg.windows(2).position(|w| w == b"\n\n"))
            .unwrap_or(msg.len());
        let mut out: Vec<Vec<u8>> = Vec::new();
        let mut in_via = false;
        for line in msg[..head_end].split(|&b| b == b'\n') {
            if matches!(line.first(), Some(b' ' | b'\t')) {
                if in_via {
                    let last = out.last_mut().unwrap();
                    last.extend_from_slice(b"\r\n");
                    last.extend_from_slice(line);
                }
                continue;
            }
            in_via = false;
            if let Some(c) = line.iter().position(|&b| b == b':') {
                let name = std::str::from_utf8(&line[..c]).unwrap_or("").trim();
                if name.eq_ignore_ascii_case("via") || name.eq_ignore_ascii_case("v") {
                    in_via = true;
                    out.push(line[c + 1..].to_vec());
                }
            }
        }
        out
    }

    #[test]
    fn basic() {
        let v = Via::parse(
            b"SIP/2.0/UDP pc33.atlanta.com:5066;branch=z9hG4bK776asdhds;rport;received=192.0.2.1;maddr=224.2.0.1;ttl=16",
        )
        .unwrap();
        assert!(v.is_sip_2_0());
        assert_eq!(v.transport_kind(), Transport::Udp);
        assert_eq!(v.host().as_bytes(), b"pc33.atlanta.com");
        assert_eq!(v.port(), Some(5066));
        assert_eq!(v.branch(), Some(&b"z9hG4bK776asdhds"[..]));
        assert!(v.has_magic_cookie());
        assert_eq!(v.rport(), Rport::Requested);
        assert_eq!(v.received().unwrap().kind(), HostKind::Ipv4);
        assert_eq!(v.maddr().unwrap().as_bytes(), b"224.2.0.1");
        assert_eq!(v.ttl(), Some(16));
        let v = Via::parse(b"SIP/2.0/TCP h;rport=5070").unwrap();
        assert_eq!(v.rport(), Rport::Value(5070));
        assert_eq!(v.branch(), None);
        assert!(!v.has_magic_cookie());
    }

    #[test]
    fn rfc4475_wsinv_folds_and_lists() {
        let m = test_corpus("rfc4475/wsinv.dat");
        let vals = via_values(&m);
        assert_eq!(vals.len(), 2);
        let v = Via::parse(&vals[0]).unwrap();
        assert!(v.is_sip_2_0());
        assert_eq!(v.transport(), b"UDP");
        assert_eq!(v.host().as_bytes(), b"192.0.2.2");
        assert_eq!(v.branch(), Some(&b"390skdjuw"[..]));
        assert!(!v.has_magic_cookie());
        let all: Vec<_> = vias(&vals[1]).map(Result::unwrap).collect();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].0.transport_kind(), Transport::Tcp);
        assert_eq!(all[0].0.host().as_bytes(), b"spindle.example.com");
        assert_eq!(all[0].0.branch(), Some(&b"z9hG4bK9ikj8"[..]));
        assert_eq!(all[1].0.host().as_bytes(), b"192.168.255.111");
        assert_eq!(all[1].0.branch(), Some(&b"z9hG4bK30239"[..]));
        // Removing the top value leaves a well-formed single Via.
        let mut rest = vals[1].clone();
        rest.drain(list_removal_range(&vals[1], all[0].1.clone()));
        let left: Vec<_> = vias(&rest).map(Result::unwrap).collect();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].0.branch(), Some(&b"z9hG4bK30239"[..]));
    }

    #[test]
    fn rfc4475_misc() {
        let m = test_corpus("rfc4475/transports.dat");
        let kinds: Vec<_> = via_values(&m)
            .iter()
            .map(|v| Via::parse(v).unwrap().transport_kind())
            .collect();
        use Transport::*;
        assert_eq!(kinds, [Udp, Sctp, Tls, Other, Tcp]);
        let m = test_corpus("rfc4475/badbranch.dat");
        let vals = via_values(&m);
        let v = Via::parse(&vals[0]).unwrap();
        assert_eq!(v.branch(), Some(MAGIC_COOKIE));
        assert!(!v.has_magic_cookie());
        let m = test_corpus("rfc4475/esc02.dat");
        assert!(Via::parse(&via_values(&m)[0]).unwrap().has_magic_cookie());
        let m = test_corpus("rfc4475/badinv01.dat");
        let vals = via_values(&m);
        assert!(vias(&vals[0]).any(|r| r.is_err()));
        let m = test_corpus("rfc4475/longreq.dat");
        let vals = via_values(&m);
        assert_eq!(vals.len(), 34);
        assert!(vals.iter().all(|v| Via::parse(v).is_ok()));
        let m = test_corpus("rfc4475/bcast.dat");
        let vals = via_values(&m);
        let v = Via::parse(&vals[1]).unwrap();
        assert_eq!(v.host().ip().unwrap().to_string(), "255.255.255.255");
    }

    #[test]
    fn rfc5118() {
        let m = test_corpus("rfc5118/via-received-param-with-delim");
        let vals = via_values(&m);
        let v = Via::parse(&vals[0]).unwrap();
        assert_eq!(v.host().as_bytes(), b"2001:db8::9:1");
        assert_eq!(v.received().unwrap().as_bytes(), b"2001:db8::9:255");
        assert_eq!(v.received().unwrap().kind(), HostKind::Ipv6);
        let m = test_corpus("rfc5118/via-received-param-no-delim");
        let vals = via_values(&m);
        let v = Via::parse(&vals[0]).unwrap();
        assert_eq!(v.received().unwrap().as_bytes(), b"2001:db8::9:255");
        assert_eq!(v.branch(), Some(&b"z9hG4bKas3"[..]));
        let m = test_corpus("rfc5118/mult-ip-in-header");
        let vals = via_values(&m);
        let v0 = Via::parse(&vals[0]).unwrap();
        assert_eq!(v0.host().as_bytes(), b"2001:db8::9:1");
        assert_eq!(v0.port(), Some(6050));
        let v2 = Via::parse(&vals[2]).unwrap();
        assert_eq!(v2.host().as_bytes(), b"2001:db8::9:255");
        assert_eq!(v2.received().unwrap().as_bytes(), b"192.0.2.200");
        let m = test_corpus("rfc5118/ipv4-mapped-ipv6");
        let vals = via_values(&m);
        let v = Via::parse(&vals[0]).unwrap();
        assert_eq!(v.host().as_bytes(), b"::ffff:192.0.2.10");
        assert_eq!(v.port(), Some(19823));
    }

    /// The one-pass head agrees with the general reading wherever it answers.
    fn plain_agrees(s: &[u8]) -> bool {
        let Some(fast) = plain_head(s) else {
            return false;
        };
        assert_eq!(
            general_head(s),
            Ok(fast),
            "{:?}",
            String::from_utf8_lossy(s)
        );
        true
    }

    #[test]
    fn plain_head_fast_path() {
        for ok in [
            &b"SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1-1-0"[..],
            b"SIP/2.0/TCP pc33.atlanta.com",
            b"SIP/2.0/tls host.example.com.:5061;rport",
            b"SIP/2.0/UDP 1.2.3.4;received=1.2.3.4",
            b"SIP/2.0/UNKNOWN h",
        ] {
            assert!(plain_agrees(ok), "{:?}", String::from_utf8_lossy(ok));
        }
        // Left to the general path (which accepts some and rejects others).
        for other in [
            &b"SIP / 2.0 / UDP h"[..],
            b"SIP/2.0/UDP  h",
            b"SIP/2.0/UDP\th",
            b"SIP/2.0/UDP h :5060",
            b"SIP/2.0/UDP h:5060 ;lr",
            b"SIP/2.0/UDP [::1]:5060",
            b"SIP/2.0/UDP 2001:db8::1",
            b"SIP/2.0/UDP h:",
            b"SIP/2.0/UDP h:0",
            b"SIP/2.0/UDP 1.2.3",
            b"SIP/2.0/UDP h x",
            b"sip/2.0/UDP h",
            b"SIP/2.0/ h",
            b"SIP/2.0/UDP",
            b"SIP/2.0/UDP ",
        ] {
            assert!(!plain_agrees(other), "{:?}", String::from_utf8_lossy(other));
        }
    }

    proptest::proptest! {
        #[test]
        fn plain_head_agrees_with_general(
            tail in proptest::collection::vec(
                proptest::sample::select(b"aZ09.-_:;=[] \t/,".to_vec()), 0..24),
            transport in proptest::sample::select(vec![&b"UDP"[..], b"tcp", b"", b"U\"P"]),
        ) {
            let mut s = b"SIP/2.0/".to_vec();
            s.extend_from_slice(transport);
            s.push(b' ');
            s.extend_from_slice(&tail);
            plain_agrees(&s);
        }
    }

    /// The whole-value shortcut of [`Vias`] agrees with the split it skips.
    fn split_reference(s: &[u8]) -> Vec<Result<(Via<'_>, Range<usize>), Error>> {
        split_list(s)
            .map(|item| Via::parse(item.value).map(|v| (v, item.range)))
            .collect()
    }

    #[test]
    fn whole_line_shortcut() {
        for s in [
            &b"SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1-1-0"[..],
            b" SIP/2.0/UDP h;branch=z9hG4bK1 ",
            b"SIP/2.0/UDP h;branch=z9hG4bK1, SIP/2.0/UDP h2;branch=z9hG4bK2",
            b"SIP/2.0/UDP h;x=\"a,b\";branch=z9hG4bK1",
            b"SIP/2.0/UDP h;x=\"a,b\", SIP/2.0/UDP h2",
            b"SIP/2.0/UDP h ,",
            b"",
            b" , ",
        ] {
            assert_eq!(
                vias(s).collect::<Vec<_>>(),
                split_reference(s),
                "{:?}",
                String::from_utf8_lossy(s)
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn whole_line_shortcut_agrees_with_split(
            tail in proptest::collection::vec(
                proptest::sample::select(b"ab1.;=,\" <>:\\\t".to_vec()), 0..24),
            head in proptest::sample::select(vec![&b"SIP/2.0/UDP h"[..], b" SIP/2.0/TCP 1.2.3.4:5", b""]),
        ) {
            let mut s = head.to_vec();
            s.extend_from_slice(&tail);
            proptest::prop_assert_eq!(vias(&s).collect::<Vec<_>>(), split_reference(&s));
        }
    }

    #[test]
    fn rejects() {
        for bad in [
            &b""[..],
            b"SIP/2.0/UDP",
            b"SIP/2.0/UDP ",
            b"SIP/2.0 UDP h",
            b"SIP/2.0/UDPh",
            b"SIP/2.0/UDP h:",
            b"SIP/2.0/UDP h:0",
            b"SIP/2.0/UDP h:99999",
            b"SIP/2.0/UDP h x",
            b"SIP/2.0/UDP h;branch",
            b"SIP/2.0/UDP h;branch=",
            b"SIP/2.0/UDP h;received=host.example.com",
            b"SIP/2.0/UDP h;rport=abc",
            b"SIP/2.0/UDP h;ttl=256",
            b"SIP/2.0/UDP [::1",
            b"SIP/2.0/UDP 2001:db8::1",
            b"SIP/2.0/UDP 192.0.2.15;;,;,,",
        ] {
            assert!(
                Via::parse(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        // LWS around the sent-by colon is legal.
        assert_eq!(
            Via::parse(b"SIP/2.0/UDP h : 5060").unwrap().port(),
            Some(5060)
        );
    }
}
