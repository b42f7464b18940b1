//! Locating a SIP server (RFC 3263 §4, client usage) as a plain-value machine: no I/O.
//!
//! A [`Resolution`] is made for one [`Target`] (the host, port, transport and `sips:`-ness
//! of a URI the proxy sends to). The caller loops: [`Resolution::step`] says which DNS
//! query to make ([`Step::Query`]) or gives the outcome ([`Step::Done`] with the ordered
//! hops, or [`Step::Failed`]); the answer goes back through [`Resolution::on_answer`]. The
//! edge (crate `trunkstore-edge`, `dns.rs`) drives it with a real resolver; unit tests
//! drive it with a table of records.
//!
//! The sequence (RFC 3263 §4.1, §4.2):
//!
//! * An IP-literal host: no DNS. Port as given, else 5060 (5061 for TLS); transport as
//!   given, else UDP (TLS for `sips:`).
//! * A port given: A/AAAA of the host only (no NAPTR, no SRV).
//! * A transport given, no port: SRV of that transport (`_sip._udp`, `_sip._tcp`,
//!   `_sips._tcp` for TLS), then A/AAAA of the host on the default port.
//! * Neither: NAPTR of the host; its records with flag `s`, an empty regexp and a service
//!   we support (`SIP+D2U`, `SIP+D2T`, `SIPS+D2T`; only `SIPS+D2T` for `sips:`) in order,
//!   then preference, each giving an SRV name to query. When no NAPTR record leads to SRV
//!   records, the SRV names of the supported transports (`_sip._udp`, `_sip._tcp`,
//!   `_sips._tcp`, in that order; only `_sips._tcp` for `sips:`). The first SRV query with
//!   records decides the transport (RFC 3263: "a particular transport is supported if the
//!   query is successful"). When no SRV query gives records: A/AAAA of the host on 5060
//!   over UDP (5061 over TLS for `sips:`).
//! * SRV records: ascending priority; within one priority, RFC 2782's weighted random
//!   order, the random numbers drawn from a generator seeded by the caller (so tests are
//!   deterministic). A lone record with target `.` means "no such service here" (RFC 2782):
//!   the resolution fails, without falling back to A/AAAA.
//! * Each SRV target's addresses, in SRV order, every family usable ([`Families`]); IPv4
//!   first, then IPv6 (see [`Families`] for why). An address lookup that fails skips that
//!   target: the others are still tried.
//!
//! Failures: NXDOMAIN or "no data" at the NAPTR or SRV stage only moves on to the next
//! stage (dnsmasq and others answer NXDOMAIN for a name that only has SRV records below
//! it); a timeout or server failure at the NAPTR or SRV stage fails the resolution at
//! once, because guessing "no SRV" could send to the wrong server. At the address stage a
//! failed lookup skips its target; with no address at all the resolution fails with the
//! last reason seen (NXDOMAIN for an unknown name).
//!
//! Bounds (a hostile DNS answer must not make it loop or grow): at most
//! [`MAX_RECORDS`] records of an answer are looked at, at most [`MAX_HOPS`] hops come out,
//! at most [`MAX_QUERIES`] queries are made, an address query already answered in this
//! resolution is answered from memory, and NAPTR records are followed one level only
//! (flag `s` straight to SRV; RFC 3263 uses no other flag), so no NAPTR loop can form.
//! CNAME chains are the resolver's to bound (hickory stops at its own limit).
//!
//! TTL: the outcome carries the smallest TTL of every record it was built from (NAPTR,
//! SRV, A/AAAA); negative answers along the way do not shorten it (the edge clamps it
//! between its settings' minimum and maximum). No DNS at all (an IP literal) gives
//! `u32::MAX`.

mod srv;

use std::collections::VecDeque;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

pub use srv::Rng;

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
    fn srv_prefix(self) -> &'static str {
        match self {
            Transport::Udp => "_sip._udp.",
            Transport::Tcp => "_sip._tcp.",
            Transport::Tls => "_sips._tcp.",
        }
    }

    /// The transport of a NAPTR service field (RFC 3263 §4.1), case-insensitive.
    fn from_naptr_service(service: &str) -> Option<Transport> {
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

    fn allows(self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(_) => self.v4,
            IpAddr::V6(_) => self.v6,
        }
    }

    /// The address queries to make, in order.
    fn kinds(self) -> Vec<QueryKind> {
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
    /// Make this query and give the answer to [`Resolution::on_answer`].
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

/// Addresses to look up for one hop-to-be: an SRV target or the host itself.
#[derive(Debug, Clone)]
struct AddressJob {
    name: String,
    port: u16,
    transport: Transport,
    /// Queries still to make for it, in order.
    kinds: VecDeque<QueryKind>,
}

/// Where the machine is.
#[derive(Debug, Clone)]
enum Phase {
    /// Waiting for the host's NAPTR records.
    Naptr,
    /// Trying SRV names in turn; the first with records wins.
    Srv,
    /// Looking up the addresses of `jobs`.
    Addresses,
    /// Finished.
    Over(Step),
}

/// One RFC 3263 resolution in progress. See the module doc.
#[derive(Debug, Clone)]
pub struct Resolution {
    target: Target,
    host: String,
    opts: Options,
    rng: Rng,
    phase: Phase,
    /// The query asked and not yet answered.
    pending: Option<Query>,
    queries: usize,
    /// SRV names still to try, with their transport.
    srv_names: VecDeque<(String, Transport)>,
    jobs: VecDeque<AddressJob>,
    /// Address answers already had in this resolution (a target named twice).
    known: Vec<(Query, Answer)>,
    hops: Vec<Hop>,
    ttl: u32,
    /// Why the last address lookup gave nothing (the failure if no hop comes).
    last_failure: Option<Failure>,
}

impl Resolution {
    /// A resolution of `target` for an edge described by `opts`.
    pub fn new(mut target: Target, opts: Options) -> Resolution {
        // `sips:…;transport=tcp` is TLS over TCP (RFC 3261 §26.2.2).
        if target.secure && target.transport == Some(Transport::Tcp) {
            target.transport = Some(Transport::Tls);
        }
        let host = normalise(&target.host);
        let mut r = Resolution {
            rng: Rng::new(opts.seed),
            target,
            host,
            opts,
            phase: Phase::Naptr,
            pending: None,
            queries: 0,
            srv_names: VecDeque::new(),
            jobs: VecDeque::new(),
            known: Vec::new(),
            hops: Vec::new(),
            ttl: u32::MAX,
            last_failure: None,
        };
        r.phase = r.first_phase();
        r
    }

    /// The transports this target may use, in our order of preference.
    fn allowed(&self) -> Vec<Transport> {
        [Transport::Udp, Transport::Tcp, Transport::Tls]
            .into_iter()
            .filter(|t| self.opts.supported.contains(t))
            .filter(|t| !self.target.secure || *t == Transport::Tls)
            .filter(|t| self.target.transport.is_none_or(|given| given == *t))
            .collect()
    }

    /// The transport used when DNS says nothing about it (RFC 3263 §4.1).
    fn default_transport(&self) -> Transport {
        match self.target.transport {
            Some(t) => t,
            None if self.target.secure => Transport::Tls,
            None => Transport::Udp,
        }
    }

    fn first_phase(&mut self) -> Phase {
        let transport = self.default_transport();
        if !self.allowed().contains(&transport) {
            return Phase::Over(Step::Failed(Failure::Unsupported(format!(
                "{}: transport {transport} cannot be used{}",
                self.host,
                if self.target.secure { " for sips:" } else { "" }
            ))));
        }
        let port = self.target.port.unwrap_or(transport.default_port());
        if let Ok(ip) = self.host.parse::<IpAddr>() {
            return self.literal(ip, port, transport);
        }
        if self.target.port.is_some() {
            self.jobs.push_back(self.host_job(port, transport));
            return Phase::Addresses;
        }
        if self.target.transport.is_some() {
            self.srv_names = self.plain_srv_names();
            return Phase::Srv;
        }
        Phase::Naptr
    }

    /// An IP literal: one hop, no DNS.
    fn literal(&self, ip: IpAddr, port: u16, transport: Transport) -> Phase {
        if !self.opts.families.allows(ip) {
            return Phase::Over(Step::Failed(Failure::Unsupported(format!(
                "{ip}: no listener of its address family"
            ))));
        }
        Phase::Over(Step::Done(Resolved {
            hops: vec![Hop {
                addr: SocketAddr::new(ip, port),
                transport,
            }],
            ttl: u32::MAX,
        }))
    }

    /// The host's own addresses on `port`.
    fn host_job(&self, port: u16, transport: Transport) -> AddressJob {
        AddressJob {
            name: self.host.clone(),
            port,
            transport,
            kinds: self.opts.families.kinds().into(),
        }
    }

    /// `_sip._udp.host` etc. for every allowed transport (RFC 3263 §4.1, no NAPTR).
    fn plain_srv_names(&self) -> VecDeque<(String, Transport)> {
        self.allowed()
            .into_iter()
            .map(|t| (format!("{}{}", t.srv_prefix(), self.host), t))
            .collect()
    }

    /// What to do next. Asking again before answering gives the same query.
    pub fn step(&mut self) -> Step {
        // Each turn either returns or moves the machine on by one job or name, all of
        // them bounded, so the loop is too.
        loop {
            if let Phase::Over(step) = &self.phase {
                return step.clone();
            }
            if let Some(q) = &self.pending {
                return Step::Query(q.clone());
            }
            if self.hops.len() >= MAX_HOPS {
                self.finish();
                continue;
            }
            let Some(query) = self.next_query() else {
                continue;
            };
            if let Some(answer) = self.remembered(&query) {
                self.pending = Some(query.clone());
                self.on_answer(&query, answer);
                continue;
            }
            if self.queries >= MAX_QUERIES {
                self.finish_over_budget();
                continue;
            }
            self.queries += 1;
            self.pending = Some(query.clone());
            return Step::Query(query);
        }
    }

    /// The query of the current phase, or `None` after moving to another phase.
    fn next_query(&mut self) -> Option<Query> {
        match self.phase {
            Phase::Naptr => Some(Query {
                name: self.host.clone(),
                kind: QueryKind::Naptr,
            }),
            Phase::Srv => match self.srv_names.front() {
                Some((name, _)) => Some(Query {
                    name: name.clone(),
                    kind: QueryKind::Srv,
                }),
                None => {
                    // No SRV anywhere: the host itself on the default port.
                    let t = self.default_transport();
                    self.jobs.push_back(self.host_job(t.default_port(), t));
                    self.phase = Phase::Addresses;
                    None
                }
            },
            Phase::Addresses => {
                while let Some(job) = self.jobs.front_mut() {
                    if let Some(kind) = job.kinds.front() {
                        return Some(Query {
                            name: job.name.clone(),
                            kind: *kind,
                        });
                    }
                    self.jobs.pop_front();
                }
                self.finish();
                None
            }
            Phase::Over(_) => None,
        }
    }

    /// An address query already answered in this resolution.
    fn remembered(&self, query: &Query) -> Option<Answer> {
        self.known
            .iter()
            .find(|(q, _)| q == query)
            .map(|(_, a)| a.clone())
    }

    /// Feeds the answer to `query` (the one [`Resolution::step`] gave). An answer to any
    /// other query is ignored: returns false.
    pub fn on_answer(&mut self, query: &Query, answer: Answer) -> bool {
        if self.pending.as_ref() != Some(query) {
            return false;
        }
        self.pending = None;
        match query.kind {
            QueryKind::Naptr => self.on_naptr(answer),
            QueryKind::Srv => self.on_srv(query, answer),
            QueryKind::A | QueryKind::Aaaa => {
                if !self.known.iter().any(|(q, _)| q == query) {
                    self.known.push((query.clone(), answer.clone()));
                }
                self.on_addresses(query, answer)
            }
        }
        true
    }

    fn on_naptr(&mut self, answer: Answer) {
        let mut names: VecDeque<(String, Transport)> = VecDeque::new();
        match answer {
            Answer::Naptr(records) => {
                let records = self.usable_naptrs(records);
                for r in &records {
                    self.ttl = self.ttl.min(r.ttl);
                }
                for r in records {
                    let Some(t) = Transport::from_naptr_service(&r.service) else {
                        continue;
                    };
                    let name = normalise(&r.replacement);
                    // Many records naming one SRV name ask it once.
                    if !names.iter().any(|(n, _)| *n == name) {
                        names.push_back((name, t));
                    }
                }
            }
            Answer::Timeout => return self.fail(Failure::Timeout(self.host.clone())),
            // Nothing usable: straight to SRV.
            _ => {}
        }
        // NAPTR records whose SRV names give nothing fall back to the plain SRV names
        // (once each).
        for (name, t) in self.plain_srv_names() {
            if !names.iter().any(|(n, _)| *n == name) {
                names.push_back((name, t));
            }
        }
        self.srv_names = names;
        self.phase = Phase::Srv;
    }

    /// The NAPTR records RFC 3263 lets us follow, best first (order, then preference).
    fn usable_naptrs(&self, mut records: Vec<Naptr>) -> Vec<Naptr> {
        records.truncate(MAX_RECORDS);
        let allowed = self.allowed();
        records.retain(|r| {
            r.flags.eq_ignore_ascii_case("s")
                && r.regexp.is_empty()
                && !normalise(&r.replacement).is_empty()
                && Transport::from_naptr_service(&r.service).is_some_and(|t| allowed.contains(&t))
        });
        // Stable: equal records keep the server's order.
        records.sort_by_key(|r| (r.order, r.preference));
        records
    }

    fn on_srv(&mut self, query: &Query, answer: Answer) {
        let Some((_, transport)) = self.srv_names.pop_front() else {
            return;
        };
        let records = match answer {
            Answer::Srv(records) if !records.is_empty() => records,
            Answer::Timeout => return self.fail(Failure::Timeout(query.name.clone())),
            // No SRV here: the next name.
            _ => return,
        };
        let mut records: Vec<Srv> = records.into_iter().take(MAX_RECORDS).collect();
        if records.len() == 1 && normalise(&records[0].target).is_empty() {
            return self.fail(Failure::NoService(query.name.clone()));
        }
        records.retain(|r| !normalise(&r.target).is_empty());
        for r in &records {
            self.ttl = self.ttl.min(r.ttl);
        }
        let kinds = self.opts.families.kinds();
        for r in srv::order(records, &mut self.rng) {
            self.jobs.push_back(AddressJob {
                name: normalise(&r.target),
                port: r.port,
                transport,
                kinds: kinds.clone().into(),
            });
        }
        self.srv_names.clear();
        self.phase = Phase::Addresses;
    }

    fn on_addresses(&mut self, query: &Query, answer: Answer) {
        let Some(job) = self.jobs.front_mut() else {
            return;
        };
        job.kinds.pop_front();
        let (port, transport) = (job.port, job.transport);
        let records = match answer {
            Answer::Addresses(records) => records,
            Answer::NxDomain => {
                self.last_failure = Some(Failure::NxDomain(query.name.clone()));
                return;
            }
            Answer::Timeout => {
                self.last_failure = Some(Failure::Timeout(query.name.clone()));
                return;
            }
            _ => Vec::new(),
        };
        let before = self.hops.len();
        let family_ok = |ip: &IpAddr| match query.kind {
            QueryKind::A => ip.is_ipv4(),
            _ => ip.is_ipv6(),
        };
        for r in records.into_iter().take(MAX_RECORDS) {
            if !family_ok(&r.ip) || !self.opts.families.allows(r.ip) {
                continue;
            }
            let hop = Hop {
                addr: SocketAddr::new(r.ip, port),
                transport,
            };
            if self.hops.len() < MAX_HOPS && !self.hops.contains(&hop) {
                self.hops.push(hop);
                self.ttl = self.ttl.min(r.ttl);
            }
        }
        if self.hops.len() == before && self.last_failure.is_none() {
            self.last_failure = Some(Failure::NoAddress(query.name.clone()));
        }
    }

    /// No more queries: done with the hops found, or failed with the last reason.
    fn finish(&mut self) {
        let step = if self.hops.is_empty() {
            Step::Failed(
                self.last_failure
                    .clone()
                    .unwrap_or_else(|| Failure::NoAddress(self.host.clone())),
            )
        } else {
            Step::Done(Resolved {
                hops: std::mem::take(&mut self.hops),
                ttl: self.ttl,
            })
        };
        self.phase = Phase::Over(step);
    }

    fn finish_over_budget(&mut self) {
        if self.hops.is_empty() {
            self.fail(Failure::TooManyQueries);
        } else {
            self.finish();
        }
    }

    fn fail(&mut self, why: Failure) {
        self.phase = Phase::Over(Step::Failed(why));
    }

    /// How many queries were made so far.
    pub fn queries(&self) -> usize {
        self.queries
    }
}

/// A DNS name as we query it: lower case, no brackets (IPv6 literal), no trailing dot.
fn normalise(name: &str) -> String {
    let name = name.trim();
    let name = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    name.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests;
