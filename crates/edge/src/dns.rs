//! DNS at the edge: drives the core's RFC 3263 machine ([`trunkstore_proxy::dns`]) with
//! hickory-resolver's raw lookups (NAPTR, SRV, A, AAAA) and keeps the outcomes.
//!
//! * Servers: the settings' `dns.servers` (UDP, TCP when an answer is truncated), asked
//!   in order; none given: the system's (/etc/resolv.conf, and /etc/hosts for A/AAAA).
//!   `dns.timeout_ms` and `dns.attempts` per query.
//! * hickory's own cache is off: this module's cache is the only one, so a TTL means the
//!   same thing everywhere. A resolution is kept by its [`Target`] for the smallest TTL of
//!   its records, clamped to `dns.min_ttl_secs..=dns.max_ttl_secs`; a failed one for
//!   `dns.negative_ttl_secs`. At most [`MAX_CACHED`] targets are kept.
//! * Names are queried fully qualified: no search domain of resolv.conf is ever appended
//!   to a carrier's name.
//! * Each SRV weighted order draws from a fresh random seed, so load spreads across
//!   resolutions; within one cached outcome the order is fixed until it expires.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hickory_resolver::config::{
    NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts, ServerOrderingStrategy,
};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{RData, Record, RecordType};
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::{Name, ResolveError, TokioResolver};
use trunkstore_proxy::dns::{
    Address, Answer, Naptr, Options, Query, QueryKind, Resolution, Srv, Step,
};
pub use trunkstore_proxy::dns::{Failure, Families, Hop, Target, Transport};

/// Targets whose outcome is kept at once; past it, expired ones go first, then any.
pub const MAX_CACHED: usize = 10_000;

/// Where a target can be reached, and until when that holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// In the order to try them (RFC 3263 §4.3): at least one.
    pub hops: Vec<Hop>,
    /// When this outcome should be looked up again.
    pub expires: Instant,
}

/// Why a target cannot be reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsError {
    /// The resolution failed (kept for `dns.negative_ttl_secs`).
    Failed(Failure),
    /// The resolver could not be set up (no usable resolv.conf).
    Setup(String),
}

impl std::fmt::Display for DnsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DnsError::Failed(why) => write!(f, "{why}"),
            DnsError::Setup(why) => write!(f, "DNS resolver: {why}"),
        }
    }
}

impl std::error::Error for DnsError {}

/// A kept outcome.
#[derive(Debug, Clone)]
struct Entry {
    outcome: Result<Vec<Hop>, Failure>,
    expires: Instant,
}

/// The edge's DNS: one per process, shared by reference (`Sync`).
pub struct Dns {
    resolver: TokioResolver,
    settings: trunkstore_config::Dns,
    supported: Vec<Transport>,
    families: Families,
    cache: Mutex<HashMap<Target, Entry>>,
}

impl Dns {
    /// A resolver configured by `settings`, for an edge that sends over `supported`
    /// transports from `families` of addresses. Must be called within a tokio runtime.
    pub fn new(
        settings: &trunkstore_config::Dns,
        supported: &[Transport],
        families: Families,
    ) -> Result<Dns, DnsError> {
        Ok(Dns {
            resolver: resolver(settings)?,
            settings: settings.clone(),
            supported: supported.to_vec(),
            families,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The hops of `target`: from the cache while its outcome holds, else resolved now
    /// (RFC 3263) and kept.
    pub async fn resolve(&self, target: &Target) -> Result<Resolved, DnsError> {
        let now = Instant::now();
        if let Some(hit) = self.cached(target, now) {
            return hit;
        }
        let step = self.run(target.clone()).await;
        let now = Instant::now();
        let entry = match step {
            Step::Done(r) => Entry {
                expires: now + self.positive_lifetime(r.ttl),
                outcome: Ok(r.hops),
            },
            Step::Failed(why) => Entry {
                expires: now + Duration::from_secs(u64::from(self.settings.negative_ttl_secs)),
                outcome: Err(why),
            },
            Step::Query(_) => unreachable!("run() returns only an outcome"),
        };
        let result = outcome(&entry);
        self.keep(target.clone(), entry, now);
        result
    }

    /// The kept outcome of `target`, if it still holds at `now` (no I/O: for a caller that
    /// must not wait).
    pub fn cached(&self, target: &Target, now: Instant) -> Option<Result<Resolved, DnsError>> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let entry = cache.get(target).filter(|e| e.expires > now)?;
        Some(outcome(entry))
    }

    /// How many targets are kept (tests, metrics).
    pub fn cached_len(&self) -> usize {
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// A resolution's TTL, clamped by the settings.
    fn positive_lifetime(&self, ttl: u32) -> Duration {
        let secs = ttl.clamp(self.settings.min_ttl_secs, self.settings.max_ttl_secs);
        Duration::from_secs(u64::from(secs))
    }

    fn keep(&self, target: Target, entry: Entry, now: Instant) {
        if entry.expires <= now {
            return;
        }
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= MAX_CACHED && !cache.contains_key(&target) {
            cache.retain(|_, e| e.expires > now);
            if cache.len() >= MAX_CACHED {
                if let Some(any) = cache.keys().next().cloned() {
                    cache.remove(&any);
                }
            }
        }
        cache.insert(target, entry);
    }

    /// Runs one resolution to its end (bounded by the machine's query budget, each query
    /// by the settings' timeout and attempts).
    async fn run(&self, target: Target) -> Step {
        let mut resolution = Resolution::new(
            target,
            Options {
                supported: self.supported.clone(),
                families: self.families,
                seed: random_seed(),
            },
        );
        loop {
            match resolution.step() {
                Step::Query(query) => {
                    let answer = self.ask(&query).await;
                    resolution.on_answer(&query, answer);
                }
                end => return end,
            }
        }
    }

    /// One raw lookup, its outcome as the machine's [`Answer`].
    async fn ask(&self, query: &Query) -> Answer {
        let Ok(name) = Name::from_ascii(format!("{}.", query.name)) else {
            // Not a DNS name at all: nothing can exist under it.
            return Answer::NxDomain;
        };
        let kind = match query.kind {
            QueryKind::Naptr => RecordType::NAPTR,
            QueryKind::Srv => RecordType::SRV,
            QueryKind::A => RecordType::A,
            QueryKind::Aaaa => RecordType::AAAA,
        };
        // hickory bounds each query by timeout × attempts; this bounds it again in case
        // a server trickles (one more timeout of slack).
        let limit = Duration::from_millis(
            u64::from(self.settings.timeout_ms) * (u64::from(self.settings.attempts) + 1),
        );
        match tokio::time::timeout(limit, self.resolver.lookup(name, kind)).await {
            Ok(Ok(lookup)) => answer_of(query.kind, lookup.records()),
            Ok(Err(e)) => answer_of_error(&e),
            Err(_) => Answer::Timeout,
        }
    }
}

fn outcome(entry: &Entry) -> Result<Resolved, DnsError> {
    match &entry.outcome {
        Ok(hops) => Ok(Resolved {
            hops: hops.clone(),
            expires: entry.expires,
        }),
        Err(why) => Err(DnsError::Failed(why.clone())),
    }
}

/// The records of the queried type (a CNAME on the way is hickory's to follow and is
/// skipped here).
fn answer_of(kind: QueryKind, records: &[Record]) -> Answer {
    match kind {
        QueryKind::Naptr => Answer::Naptr(records.iter().filter_map(naptr).collect()),
        QueryKind::Srv => Answer::Srv(records.iter().filter_map(srv).collect()),
        QueryKind::A | QueryKind::Aaaa => {
            Answer::Addresses(records.iter().filter_map(address).collect())
        }
    }
}

fn naptr(r: &Record) -> Option<Naptr> {
    let RData::NAPTR(n) = r.data() else {
        return None;
    };
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    Some(Naptr {
        order: n.order(),
        preference: n.preference(),
        flags: text(n.flags()),
        service: text(n.services()),
        regexp: text(n.regexp()),
        replacement: n.replacement().to_ascii(),
        ttl: r.ttl(),
    })
}

fn srv(r: &Record) -> Option<Srv> {
    let RData::SRV(s) = r.data() else {
        return None;
    };
    Some(Srv {
        priority: s.priority(),
        weight: s.weight(),
        port: s.port(),
        target: s.target().to_ascii(),
        ttl: r.ttl(),
    })
}

fn address(r: &Record) -> Option<Address> {
    let ip = match r.data() {
        RData::A(a) => IpAddr::V4(a.0),
        RData::AAAA(a) => IpAddr::V6(a.0),
        _ => return None,
    };
    Some(Address { ip, ttl: r.ttl() })
}

/// NXDOMAIN and "no data" are answers; anything else (timeout, SERVFAIL, REFUSED, a
/// network error) is no answer.
fn answer_of_error(e: &ResolveError) -> Answer {
    let Some(proto) = e.proto() else {
        return Answer::Timeout;
    };
    match proto.kind() {
        ProtoErrorKind::NoRecordsFound { response_code, .. } => match *response_code {
            ResponseCode::NXDomain => Answer::NxDomain,
            ResponseCode::NoError => Answer::NoData,
            _ => Answer::Timeout,
        },
        _ => Answer::Timeout,
    }
}

/// hickory set up from the settings (see the module doc).
fn resolver(settings: &trunkstore_config::Dns) -> Result<TokioResolver, DnsError> {
    let (config, mut opts) = if settings.servers.is_empty() {
        hickory_resolver::system_conf::read_system_conf()
            .map_err(|e| DnsError::Setup(format!("reading /etc/resolv.conf: {e}")))?
    } else {
        let mut config = ResolverConfig::new();
        for addr in &settings.servers {
            for protocol in [Protocol::Udp, Protocol::Tcp] {
                config.add_name_server(NameServerConfig::new(*addr, protocol));
            }
        }
        let mut opts = ResolverOpts::default();
        // Only the servers named: not the machine's hosts file either.
        opts.use_hosts_file = ResolveHosts::Never;
        (config, opts)
    };
    opts.timeout = Duration::from_millis(u64::from(settings.timeout_ms));
    // hickory's `attempts` counts retries after the first send; ours counts sends.
    opts.attempts = settings.attempts.saturating_sub(1) as usize;
    // Our cache (Dns::cache) is the only one.
    opts.cache_size = 0;
    opts.server_ordering_strategy = ServerOrderingStrategy::UserProvidedOrder;
    opts.num_concurrent_reqs = 1;
    // Large SRV/NAPTR answers fit in one UDP answer instead of a truncation and TCP.
    opts.edns0 = true;
    let builder = TokioResolver::builder_with_config(config, TokioConnectionProvider::default());
    Ok(builder.with_options(opts).build())
}

/// A seed for RFC 2782's weighted order: std's per-process random keys, different on every
/// call.
fn random_seed() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    h.finish()
}

/// The address families of `listeners`: what an edge with these sockets can send from.
pub fn families_of(listeners: &[SocketAddr]) -> Families {
    Families {
        v4: listeners.iter().any(SocketAddr::is_ipv4),
        v6: listeners.iter().any(SocketAddr::is_ipv6),
    }
}
