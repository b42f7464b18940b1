//! The plain values a resolution takes and gives: targets, queries, records, answers,
//! hops and outcomes.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// At most this many records of one answer are looked at (the first ones, as received).
pub const MAX_RECORDS: usize = 16;
/// At most this many hops come out of one resolution.
pub const MAX_HOPS: usize = 16;
/// At most this many DNS queries are made by one resolution.
pub const MAX_QUERIES: usize = 32;

/// The transports RFC 3263 selects between. TLS is TCP with TLS on top (`SIPS+D2T`,
/// `_sips._tcp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    /// UDP (`SIP+D2U`, `_sip._udp`).
    Udp,
    /// TCP (`SIP+D2T`, `_sip._tcp`).
    Tcp,
    /// TLS over TCP (`SIPS+D2T`, `_sips._tcp`).
    Tls,
}

impl Transport {
    /// The default port of this transport (RFC 3261 §19.1.2).
    pub fn default_port(self) -> u16 {
        match self {
            Transport::Tls => 5061,
            Transport::Udp | Transport::Tcp => 5060,
        }
    }

    /// The SRV name prefix of this transport (RFC 3263 §4.2).
    pub(crate) fn srv_prefix(self) -> &'static str {
        match self {
            Transport::Udp => "_sip._udp.",
            Transport::Tcp => "_sip._tcp.",
            Transport::Tls => "_sips._tcp.",
        }
    }

    /// The transport of a NAPTR service field (RFC 3263 §4.1), case-insensitive.
    pub(crate) fn from_naptr_service(service: &str) -> Option<Transport> {
        [
            ("SIP+D2U", Transport::Udp),
            ("SIP+D2T", Transport::Tcp),
            ("SIPS+D2T", Transport::Tls),
        ]
        .into_iter()
        .find(|(s, _)| s.eq_ignore_ascii_case(service))
        .map(|(_, t)| t)
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        })
    }
}

/// What to locate: the host part of a SIP URI with what the URI says about port and
/// transport.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// A host name or an IP literal (an IPv6 literal with or without brackets).
    pub host: String,
    /// The URI's port, if it has one.
    pub port: Option<u16>,
    /// The URI's `transport` parameter (TLS for `transport=tls`), if it has one.
    pub transport: Option<Transport>,
    /// A `sips:` URI: only TLS may be used (RFC 3263 §4.1).
    pub secure: bool,
}

impl Target {
    /// The target of a SIP URI whose host is a name (RFC 3263 §4: its port, `transport`
    /// parameter and `sips:`-ness); `None` for an IP literal or a tel URI.
    pub fn of_uri(uri: &trunkstore_sip::uri::Uri<'_>) -> Option<Target> {
        let host = uri.host().filter(|h| h.ip().is_none())?;
        let transport = uri.transport().and_then(|t| {
            let t = std::str::from_utf8(t).ok()?.to_ascii_lowercase();
            match t.as_str() {
                "udp" => Some(Transport::Udp),
                "tcp" => Some(Transport::Tcp),
                "tls" => Some(Transport::Tls),
                _ => None,
            }
        });
        Some(Target {
            host: String::from_utf8_lossy(host.as_bytes()).into_owned(),
            port: uri.port(),
            transport,
            secure: uri.scheme() == trunkstore_sip::uri::Scheme::Sips,
        })
    }

    /// [`Target::of_uri`] of a URI's text.
    pub fn parse(uri: &str) -> Option<Target> {
        Target::of_uri(&trunkstore_sip::uri::Uri::parse(uri.as_bytes()).ok()?)
    }
}

/// Which address families the edge can send from. When both are usable, IPv4 hops come
/// before IPv6 hops of the same SRV target: a dead target costs a whole SIP transaction
/// timeout before the next is tried, and IPv4 is the family carriers' SIP is reliably
/// reachable on; IPv6 addresses are still there as the next hops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Families {
    /// IPv4 (A records).
    pub v4: bool,
    /// IPv6 (AAAA records).
    pub v6: bool,
}

impl Families {
    /// Both families.
    pub const BOTH: Families = Families { v4: true, v6: true };
    /// IPv4 only.
    pub const V4: Families = Families {
        v4: true,
        v6: false,
    };

    pub(crate) fn allows(self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(_) => self.v4,
            IpAddr::V6(_) => self.v6,
        }
    }

    /// The address queries to make, in order.
    pub(crate) fn kinds(self) -> Vec<QueryKind> {
        let mut kinds = Vec::with_capacity(2);
        if self.v4 {
            kinds.push(QueryKind::A);
        }
        if self.v6 {
            kinds.push(QueryKind::Aaaa);
        }
        kinds
    }
}

/// The record type of a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueryKind {
    /// NAPTR (RFC 3403).
    Naptr,
    /// SRV (RFC 2782).
    Srv,
    /// IPv4 addresses.
    A,
    /// IPv6 addresses.
    Aaaa,
}

/// One DNS query to make: `name` is lower case, without a trailing dot (absolute all the
/// same: no search domain may be appended).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Query {
    /// The name queried.
    pub name: String,
    /// The record type.
    pub kind: QueryKind,
}

/// A NAPTR record (RFC 3403).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Naptr {
    /// Lower first.
    pub order: u16,
    /// Lower first within one order.
    pub preference: u16,
    /// `s` for the records RFC 3263 uses.
    pub flags: String,
    /// `SIP+D2U`, `SIP+D2T`, `SIPS+D2T`.
    pub service: String,
    /// Must be empty for RFC 3263.
    pub regexp: String,
    /// The SRV name to query (with or without the trailing dot).
    pub replacement: String,
    /// Seconds.
    pub ttl: u32,
}

/// An SRV record (RFC 2782).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Srv {
    /// Lower first.
    pub priority: u16,
    /// Relative share within one priority.
    pub weight: u16,
    /// The port to send to.
    pub port: u16,
    /// The host whose addresses to look up; `.` means "no service".
    pub target: String,
    /// Seconds.
    pub ttl: u32,
}

/// An A or AAAA record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Address {
    /// The address.
    pub ip: IpAddr,
    /// Seconds.
    pub ttl: u32,
}

/// The answer to a [`Query`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// NAPTR records.
    Naptr(Vec<Naptr>),
    /// SRV records.
    Srv(Vec<Srv>),
    /// A or AAAA records (records of the other family are ignored).
    Addresses(Vec<Address>),
    /// The name does not exist.
    NxDomain,
    /// The name exists but has no record of that type.
    NoData,
    /// No usable answer: timeout, SERVFAIL, REFUSED, network error.
    Timeout,
}

/// Why a resolution gave no hop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The name does not exist (NXDOMAIN).
    NxDomain(String),
    /// The name exists but has no usable address.
    NoAddress(String),
    /// The DNS server did not answer (timeout or server failure) for this name.
    Timeout(String),
    /// The domain says it offers no SIP service (SRV target `.`).
    NoService(String),
    /// Nothing we can use: the URI's transport or every address is of a kind we cannot
    /// send over (e.g. `sips:` without TLS, an IPv6 literal with IPv4-only listeners).
    Unsupported(String),
    /// The query budget ([`MAX_QUERIES`]) ran out before any hop was found.
    TooManyQueries,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::NxDomain(n) => write!(f, "{n}: no such domain"),
            Failure::NoAddress(n) => write!(f, "{n}: no address"),
            Failure::Timeout(n) => write!(f, "{n}: DNS server did not answer"),
            Failure::NoService(n) => write!(f, "{n}: no SIP service (SRV target \".\")"),
            Failure::Unsupported(why) => write!(f, "{why}"),
            Failure::TooManyQueries => write!(f, "too many DNS queries"),
        }
    }
}

/// One place to send to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Hop {
    /// Address and port.
    pub addr: SocketAddr,
    /// Transport.
    pub transport: Transport,
}

/// The outcome of a resolution: hops in the order to try them (RFC 3263 §4.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// At least one, at most [`MAX_HOPS`].
    pub hops: Vec<Hop>,
    /// The smallest TTL of the records used, seconds (`u32::MAX`: no DNS was involved).
    pub ttl: u32,
}

/// What the caller does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Make this query and give the answer to [`Resolution::on_answer`](super::Resolution::on_answer).
    Query(Query),
    /// Finished with hops.
    Done(Resolved),
    /// Finished without a hop.
    Failed(Failure),
}

/// The resolver's environment: what the edge can use, and the seed of SRV's weighted
/// random order.
#[derive(Debug, Clone)]
pub struct Options {
    /// Transports the edge can send over.
    pub supported: Vec<Transport>,
    /// Address families the edge can send from.
    pub families: Families,
    /// Seed of the random numbers of RFC 2782's weighted order.
    pub seed: u64,
}
