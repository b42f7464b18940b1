//! Proxy settings: one JSON file, `config/trunkstore.json` by default (behaviour.md §1).
//!
//! Unlike connectivity documents, unknown keys are an error here (`additionalProperties`):
//! the file is written by hand, and a misspelt key silently falling back to a default is
//! the worse failure. Every key except `carriers` has a default, so `{}` is a valid file
//! (no carriers: only on-net calls).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use regex::Regex;
use serde_json::{json, Map, Value};

use crate::error::{FileErrors, ValidationErrors};
use crate::files::read_json;
use crate::ids;
use crate::numbers::NumberFormat;
use crate::secret::Secret;
use crate::syntax::{is_sip_token, MAX_TIMER_SECS};
use crate::walk::{join, Str, Walker};

/// Where the settings file is looked for when none is given.
pub const DEFAULT_SETTINGS_PATH: &str = "config/trunkstore.json";

/// All proxy settings, validated, with relative paths resolved against the settings file.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The file these settings came from (`None` when built from a value).
    pub path: Option<PathBuf>,
    /// `listen`: the SIP sockets.
    pub listen: Listen,
    /// `advertise`: host and port put in Via/Record-Route.
    pub advertise: HostPort,
    /// `connectivity_dir`, resolved.
    pub connectivity_dir: PathBuf,
    /// `default_realm`: digest realm when the From host matches no account realm.
    pub default_realm: String,
    /// `carriers`: upstream trunks, tried for outbound calls.
    pub carriers: Vec<Carrier>,
    /// `emergency_numbers`, matched before normalisation.
    pub emergency_numbers: Vec<String>,
    /// `failover_on`.
    pub failover_on: FailoverOn,
    /// `max_call_duration` in seconds: dialogs whose BYE never came are ended after this.
    pub max_call_duration: u32,
    /// `timers`: proxy defaults for the per-call timers.
    pub timers: Timers,
    /// `api`: the admin REST API.
    pub api: Api,
    /// `cdr`: call detail records.
    pub cdr: Cdr,
    /// `log`: level and format.
    pub log: Log,
    /// `metrics`: Prometheus endpoint.
    pub metrics: Metrics,
    /// `limits`: sizes and counts that bound memory.
    pub limits: Limits,
    /// `nonce_ttl`: seconds a digest nonce stays valid.
    pub nonce_ttl: u32,
    /// `workers`: UDP worker threads per UDP listen address; 0 (default) = one per CPU the
    /// process may run on.
    pub workers: u32,
    /// `shutdown_grace`: seconds in-progress transactions are still served after SIGTERM or
    /// SIGINT before the proxy exits (default 5).
    pub shutdown_grace: u32,
    /// `transport`: socket tuning.
    pub transport: TransportOptions,
    /// `protection`: bans and scanner blocking.
    pub protection: Protection,
    /// `auth`: digest challenge options.
    pub auth: DigestAuth,
    /// `data_dir`, resolved: where the proxy keeps state across restarts (registrations).
    pub data_dir: PathBuf,
    /// `registrar`: REGISTER of password servers and keep-alives to NATed bindings.
    pub registrar: Registrar,
    /// `media`: rtpengine instances that anchor the media of calls (issue 16).
    pub media: Media,
    /// `dns`: the resolver locating SIP servers by name (RFC 3263, issue 17).
    pub dns: Dns,
    /// `tls`: trust and client certificates for TLS connections (issue 17).
    pub tls: Tls,
    /// `cluster`: several nodes sharing trunks, documents and security state through
    /// Redis (issue 18); `None` (absent): this node alone, nothing shared.
    pub cluster: Option<Cluster>,
}

/// `cluster`: this node's place among several that share one Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// `node_id` (required): this node's name, unique in the cluster (the id pattern); its
    /// trunk holds and leases are kept under it.
    pub node_id: String,
    /// `redis`: Redis URLs (`redis://host:port[/db]`, `rediss://` for TLS), tried in order
    /// until one answers.
    pub redis: Vec<String>,
    /// `password`: Redis `AUTH` password (never logged), when the URL carries none.
    pub password: Option<Secret>,
    /// `username`: Redis ACL user for `AUTH` (with `password`).
    pub username: Option<String>,
    /// `tls_ca_file`, resolved: PEM certificates a `rediss://` server is verified against
    /// (`None`: the system's trust store).
    pub tls_ca_file: Option<PathBuf>,
    /// `key_prefix` (`trunkstore:`): every key this cluster uses starts with it, so
    /// several clusters can share one Redis.
    pub key_prefix: String,
    /// `lease_secs` (15): a node's trunk holds lapse this long after it last renewed them
    /// (it renews every third of it); a SIGKILLed node's trunks are free again after it.
    pub lease_secs: u32,
    /// `timeout_ms` (250): one Redis round trip waited for before the node acts without it
    /// (fail-open for trunk limits, 503 for API writes).
    pub timeout_ms: u32,
    /// `store` (`files`): where connectivity documents live; `redis`: in Redis, with
    /// revisions and a change stream every node follows.
    pub store: DocumentStore,
    /// `secret` (required): shared by every node so a digest nonce issued by one node is
    /// verified by any other (never logged).
    pub secret: Secret,
}

/// `cluster.store`: where connectivity documents are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DocumentStore {
    /// Files under `connectivity_dir` (each node its own copy).
    #[default]
    Files,
    /// Redis, shared by every node.
    Redis,
}

/// `dns`: how names the proxy sends to are resolved (RFC 3263: NAPTR, SRV, A/AAAA) and how
/// long the answers are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dns {
    /// `servers`: DNS servers, `ip:port`, asked in order (`[]`, the default: the system's,
    /// from /etc/resolv.conf).
    pub servers: Vec<SocketAddr>,
    /// `timeout_ms`: wait for one answer before asking again (2000).
    pub timeout_ms: u32,
    /// `attempts`: times one query is sent before it counts as failed (2).
    pub attempts: u32,
    /// `negative_ttl_secs`: seconds a failed or NXDOMAIN resolution is kept (30).
    pub negative_ttl_secs: u32,
    /// `min_ttl_secs`: a resolution is kept at least this long, whatever its TTL (0).
    pub min_ttl_secs: u32,
    /// `max_ttl_secs`: and at most this long (3600).
    pub max_ttl_secs: u32,
}

impl Default for Dns {
    fn default() -> Self {
        Dns {
            servers: Vec::new(),
            timeout_ms: 2000,
            attempts: 2,
            negative_ttl_secs: 30,
            min_ttl_secs: 0,
            max_ttl_secs: 3600,
        }
    }
}

/// `tls`: how TLS peers are verified and what we present to them (the listeners' own
/// certificates are in `listen.tls`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    /// `ca_file`, resolved: PEM certificates that peers' chains are verified against;
    /// `None`: the system's trust store.
    pub ca_file: Option<PathBuf>,
    /// `verify_server` (true): verify the certificate of a server we connect to (name or
    /// IP against its SANs, chain against the roots). Off only for a lab.
    pub verify_server: bool,
    /// `client_certificate`, resolved: PEM chain presented when a server asks for a
    /// client certificate (mutual TLS); with `client_key`.
    pub client_certificate: Option<PathBuf>,
    /// `client_key`, resolved: the private key of `client_certificate`.
    pub client_key: Option<PathBuf>,
    /// `require_client_certificate` (false): TLS listeners refuse a peer without a
    /// client certificate that verifies against the roots.
    pub require_client_certificate: bool,
}

impl Default for Tls {
    fn default() -> Self {
        Tls {
            ca_file: None,
            verify_server: true,
            client_certificate: None,
            client_key: None,
            require_client_certificate: false,
        }
    }
}

/// `media`: the rtpengine instances driven over the NG control protocol, and what a call
/// does when none answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    /// `rtpengine`: NG control addresses with weights (`[]`, the default: media is not
    /// anchored, SDP passes untouched).
    pub rtpengine: Vec<RtpEngine>,
    /// `timeout_ms`: wait for a reply before sending again (1000).
    pub timeout_ms: u32,
    /// `retries`: sends after the first to one instance before it counts as down (2).
    pub retries: u32,
    /// `down_secs`: seconds a silent instance is skipped (30).
    pub down_secs: u32,
    /// `on_failure`: what a call does when no instance answers (`reject`).
    pub on_failure: MediaFailure,
}

impl Default for Media {
    fn default() -> Self {
        Media {
            rtpengine: Vec::new(),
            timeout_ms: 1000,
            retries: 2,
            down_secs: 30,
            on_failure: MediaFailure::Reject,
        }
    }
}

/// One rtpengine instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpEngine {
    /// `address`: its NG control socket, `ip:port`.
    pub address: SocketAddr,
    /// `weight`: relative share of new calls (1); 0 takes no new calls (draining).
    pub weight: u32,
}

/// `media.on_failure`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MediaFailure {
    /// `reject` (default): the INVITE gets 503, counted.
    #[default]
    Reject,
    /// `bypass`: the call goes on with its media unanchored, logged.
    Bypass,
}

/// `registrar`: bindings of password servers that REGISTER (behaviour.md §4.2, §5.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registrar {
    /// Shortest expiry accepted, seconds (60); shorter gets 423 with `Min-Expires`.
    pub min_expires: u32,
    /// Longest expiry granted, seconds (3600); longer is cut to this.
    pub max_expires: u32,
    /// Expiry when the REGISTER gives none, seconds (3600).
    pub default_expires: u32,
    /// Most bindings per address of record (5); a new one past it replaces the oldest.
    pub max_contacts: u32,
    /// Seconds between keep-alives to a binding behind NAT (30); 0 sends none.
    pub keepalive_interval: u32,
    /// Keep-alive OPTIONS left unanswered in a row before the binding is dropped (3).
    pub keepalive_failures: u32,
}

impl Default for Registrar {
    fn default() -> Self {
        Registrar {
            min_expires: 60,
            max_expires: 3600,
            default_expires: 3600,
            max_contacts: 5,
            keepalive_interval: 30,
            keepalive_failures: 3,
        }
    }
}

/// Scanner user agents blocked by default (case-insensitive substrings). `sipsak` is a
/// legitimate test tool and is left out.
pub const DEFAULT_SCANNER_USER_AGENTS: &[&str] = &[
    "friendly-scanner",
    "sipvicious",
    "sipcli",
    "sip-scan",
    "VaxSIPUserAgent",
    "pplsip",
    "sundayddr",
    "iWar",
];

/// `protection`: per-source limits for traffic that is not from a carrier or an IP-auth
/// server (behaviour.md §8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protection {
    /// `ban_threshold`: auth failures (403s) within `ban_window` that ban a source (10);
    /// 0 = never ban.
    pub ban_threshold: u32,
    /// `ban_window`: seconds over which failures are counted (60).
    pub ban_window: u32,
    /// `ban_time`: seconds a ban lasts (600).
    pub ban_time: u32,
    /// `rate`: sustained requests per second per source (50); 0 = no rate limit.
    pub rate: u32,
    /// `burst`: requests a source may send at once (100).
    pub burst: u32,
    /// `max_sources`: most sources tracked at once (100000).
    pub max_sources: u32,
    /// `scanner_user_agents`: User-Agent substrings (case-insensitive) whose requests are
    /// dropped; `[]` disables the check.
    pub scanner_user_agents: Vec<String>,
}

impl Default for Protection {
    fn default() -> Self {
        Protection {
            ban_threshold: 10,
            ban_window: 60,
            ban_time: 600,
            rate: 50,
            burst: 100,
            max_sources: 100_000,
            scanner_user_agents: DEFAULT_SCANNER_USER_AGENTS
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }
}

/// A digest algorithm the proxy can challenge with (behaviour.md §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DigestAlgorithm {
    /// `SHA-256` (RFC 7616).
    Sha256,
    /// `MD5`, for devices without SHA-256.
    Md5,
}

impl DigestAlgorithm {
    /// The `algorithm` parameter value (RFC 7616 §3.2).
    pub fn as_str(self) -> &'static str {
        match self {
            DigestAlgorithm::Sha256 => "SHA-256",
            DigestAlgorithm::Md5 => "MD5",
        }
    }
}

/// `auth`: digest authentication of password servers (behaviour.md §5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestAuth {
    /// `algorithms`: the algorithms offered, one challenge each, in RFC 8760 order of
    /// preference (SHA-256 before MD5) whatever the order written. Default MD5 alone, as
    /// Kamailio: libre-based UAs (baresip) give up on a 407 that also carries a challenge
    /// with an algorithm they do not know. Credentials for any other algorithm are refused.
    pub algorithms: Vec<DigestAlgorithm>,
}

impl Default for DigestAuth {
    fn default() -> Self {
        DigestAuth {
            algorithms: vec![DigestAlgorithm::Md5],
        }
    }
}

impl DigestAuth {
    /// Is `alg` one of the algorithms offered?
    pub fn offers(&self, alg: DigestAlgorithm) -> bool {
        self.algorithms.contains(&alg)
    }
}

/// `transport`: socket and connection tuning of the I/O edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportOptions {
    /// `udp_recv_buffer`: SO_RCVBUF of each UDP socket, bytes (4 MiB, as Kamailio's
    /// config: absorbs bursts while a worker is busy instead of dropping datagrams).
    pub udp_recv_buffer: u32,
    /// `tcp_idle_timeout`: seconds without traffic after which an inbound TCP connection
    /// is closed (300).
    pub tcp_idle_timeout: u32,
    /// `tcp_outbound_idle_timeout`: the same for connections we opened (60): we can
    /// reopen them whenever needed, so they are not kept as long.
    pub tcp_outbound_idle_timeout: u32,
    /// `tcp_connect_timeout_ms`: how long an outgoing connect may take before the
    /// destination counts as unreachable (3000).
    pub tcp_connect_timeout_ms: u32,
    /// `udp_batch_linger_us`: the longest a saturated UDP worker (4 of its last 8
    /// receives found a full batch queued) sleeps between batches; a worker that keeps up
    /// never sleeps, so latency is not bought for CPU (10000; 0 never sleeps).
    pub udp_batch_linger_us: u32,
}

impl Default for TransportOptions {
    fn default() -> Self {
        TransportOptions {
            udp_recv_buffer: 4 * 1024 * 1024,
            tcp_idle_timeout: 300,
            tcp_outbound_idle_timeout: 60,
            tcp_connect_timeout_ms: 3000,
            udp_batch_linger_us: 10_000,
        }
    }
}

/// `listen`: addresses per transport. At least one address in total. Each entry is
/// `"ip:port"` or `{"address": "ip:port", "advertise": "host[:port]"}` (its own advertised
/// address: RFC 5658 double Record-Route names each side by its listener's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    /// UDP addresses to bind.
    pub udp: Vec<SocketAddr>,
    /// TCP addresses to listen on.
    pub tcp: Vec<SocketAddr>,
    /// TLS listeners, each with its certificate and key.
    pub tls: Vec<TlsListen>,
    /// The listeners given their own `advertise`, in the order written.
    pub advertised: Vec<ListenerAdvertise>,
}

/// A TLS listener (`listen.tls[i]`): `{"address", "certificate", "key", "advertise"?}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsListen {
    /// The address to listen on.
    pub address: SocketAddr,
    /// PEM certificate chain (leaf first), resolved; read again on SIGHUP.
    pub certificate: PathBuf,
    /// PEM private key of the certificate, resolved; read again on SIGHUP.
    pub key: PathBuf,
}

/// A listener's own advertised address (`listen.udp[i].advertise`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerAdvertise {
    /// The listener's transport.
    pub transport: Transport,
    /// The listener (as in `listen.udp` / `listen.tcp`).
    pub address: SocketAddr,
    /// What goes in Via/Record-Route for messages on it.
    pub advertise: HostPort,
}

/// A host (IP literal or DNS name) and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    /// IP literal or DNS name.
    pub host: Host,
    /// The port.
    pub port: u16,
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]:{}", self.port),
            host => write!(f, "{host}:{}", self.port),
        }
    }
}

/// An IP address or a DNS name, as written in the settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// An IP literal.
    Ip(IpAddr),
    /// A DNS name (validated as letters, digits, `-` and `.`).
    Name(String),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(ip) => write!(f, "{ip}"),
            Host::Name(n) => f.write_str(n),
        }
    }
}

/// A SIP transport the proxy speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Transport {
    /// UDP (default).
    #[default]
    Udp,
    /// TCP.
    Tcp,
    /// TLS over TCP.
    Tls,
}

impl Transport {
    /// Lowercase spelling, as in a `transport` parameter.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }

    /// The port a gateway without one listens on (RFC 3261 §19.1.2).
    pub fn default_port(self) -> u16 {
        match self {
            Transport::Tls => 5061,
            _ => 5060,
        }
    }
}

/// `carriers[]`: an upstream SIP provider.
#[derive(Debug, Clone)]
pub struct Carrier {
    /// Unique SIP-token name (used in logs, metrics and CDRs).
    pub name: String,
    /// Where calls are sent, in order; at least one.
    pub gateways: Vec<Gateway>,
    /// Sources trusted as this carrier.
    pub sources: Vec<Source>,
    /// Lower is tried first (default 10).
    pub priority: u32,
    /// Relative share within one priority (default 1; 0 = only when the others failed).
    pub weight: u32,
    /// Request-URI user format: e164 (default), npan or 1npan.
    pub format: NumberFormat,
    /// `rule`: the carrier only takes numbers (E.164) this matches; `None` = all numbers.
    pub rule: Option<Regex>,
    /// Emergency carriers are tried first for emergency numbers.
    pub emergency: bool,
}

impl Carrier {
    /// Does this carrier take `number` (normalised)?
    pub fn accepts(&self, number: &str) -> bool {
        // (`Option::is_none_or` would need Rust 1.82; the workspace targets 1.80.)
        match &self.rule {
            Some(r) => r.is_match(number),
            None => true,
        }
    }

    /// Is `addr` one of this carrier's trusted sources?
    pub fn trusts(&self, addr: SocketAddr) -> bool {
        self.sources.iter().any(|s| s.matches(addr))
    }
}

/// A carrier's gateway: where outbound calls are sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gateway {
    /// IP literal or DNS name.
    pub host: Host,
    /// Default 5060 (5061 for TLS).
    pub port: u16,
    /// Default udp.
    pub transport: Transport,
    /// `port` was written: a DNS name is then looked up as A/AAAA on it; without one
    /// its SRV records say where (RFC 3263 §4.2).
    pub port_given: bool,
    /// `transport` was written: without one a DNS name's NAPTR records choose it (RFC
    /// 3263 §4.1).
    pub transport_given: bool,
}

/// A trusted carrier source: a CIDR (a bare IP is a /32 or /128) or one exact `ip:port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A network: any address and port inside it.
    Net(IpNet),
    /// One address and port.
    Exact(SocketAddr),
}

impl Source {
    /// `ip:port`, a CIDR or a bare IP; `None` when it is none of them.
    pub fn parse(s: &str) -> Option<Source> {
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Some(Source::Exact(addr));
        }
        if let Ok(net) = s.parse::<IpNet>() {
            return Some(Source::Net(net.trunc()));
        }
        s.parse::<IpAddr>()
            .ok()
            .map(|ip| Source::Net(IpNet::from(ip)))
    }

    /// Does a packet from `addr` come from this source?
    pub fn matches(&self, addr: SocketAddr) -> bool {
        match self {
            Source::Net(net) => net.contains(&addr.ip()),
            Source::Exact(exact) => *exact == addr,
        }
    }

    /// Could a packet from `ip` (on `port`, or on any port when `None`) match this source?
    /// Used to refuse IP-auth servers that a carrier source would shadow.
    pub fn overlaps(&self, ip: IpAddr, port: Option<u16>) -> bool {
        match self {
            Source::Net(net) => net.contains(&ip),
            Source::Exact(exact) => {
                exact.ip() == ip && port.unwrap_or(exact.port()) == exact.port()
            }
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Net(n) => write!(f, "{n}"),
            Source::Exact(a) => write!(f, "{a}"),
        }
    }
}

/// `failover_on`: which failures of an inbound attempt trigger the failover (§4.8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailoverOn {
    /// `"any"`: every failure, busy included (the original behaviour).
    Any,
    /// Only these failures.
    List(Vec<FailoverTrigger>),
}

/// One entry of a `failover_on` list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailoverTrigger {
    /// An exact final status, e.g. `"404"`.
    Status(u16),
    /// A class, e.g. `"5xx"` (the hundreds digit).
    Class(u16),
    /// `"timeout"`: delay/progress/answer timers expired.
    Timeout,
    /// `"unreachable"`: no response or a transport error.
    Unreachable,
}

impl FailoverOn {
    /// Default: `["404","408","480","5xx","timeout","unreachable"]`.
    pub fn default_list() -> Self {
        use FailoverTrigger::*;
        FailoverOn::List(vec![
            Status(404),
            Status(408),
            Status(480),
            Class(5),
            Timeout,
            Unreachable,
        ])
    }

    /// Does a final response `status` (>= 300) trigger failover?
    pub fn on_status(&self, status: u16) -> bool {
        match self {
            FailoverOn::Any => status >= 300,
            FailoverOn::List(l) => l.iter().any(|t| match t {
                FailoverTrigger::Status(s) => *s == status,
                FailoverTrigger::Class(c) => status / 100 == *c,
                _ => false,
            }),
        }
    }

    /// Does a timer expiry trigger failover?
    pub fn on_timeout(&self) -> bool {
        self.has(FailoverTrigger::Timeout)
    }

    /// Does an unreachable target (no response, transport error) trigger failover?
    pub fn on_unreachable(&self) -> bool {
        self.has(FailoverTrigger::Unreachable)
    }

    fn has(&self, t: FailoverTrigger) -> bool {
        match self {
            FailoverOn::Any => true,
            FailoverOn::List(l) => l.contains(&t),
        }
    }
}

/// `timers`: per-attempt defaults (seconds) and SIP transaction timers (milliseconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timers {
    /// Default `delay` (s), 0.
    pub delay: u32,
    /// Default `progress_timeout` (s), 10.
    pub progress_timeout: u32,
    /// Default `timeout` (s) for an answer, 60.
    pub timeout: u32,
    /// RFC 3261 T1 (ms), 500.
    pub t1_ms: u32,
    /// RFC 3261 T2 (ms), 4000.
    pub t2_ms: u32,
    /// RFC 3261 T4 (ms), 5000.
    pub t4_ms: u32,
    /// Proxy timer C (s), 185 (RFC 3261 §16.6: more than 3 minutes).
    pub timer_c: u32,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            delay: 0,
            progress_timeout: 10,
            timeout: 60,
            t1_ms: 500,
            t2_ms: 4000,
            t4_ms: 5000,
            timer_c: 185,
        }
    }
}

/// `api`: the admin REST API.
#[derive(Debug, Clone, PartialEq)]
pub struct Api {
    /// Default `127.0.0.1:8000`.
    pub listen: SocketAddr,
    /// `tokens`: who may use the API.
    pub tokens: Vec<ApiToken>,
}

/// One API token and the accounts it may touch.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiToken {
    /// At least 16 visible ASCII characters. Never printed.
    pub token: Secret,
    /// `None`: admin (every account); `Some(id)`: only that account.
    pub account: Option<String>,
}

/// `cdr`: one JSON line per finished call.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cdr {
    /// `cdr.file`, resolved; `None` (default) disables CDRs.
    pub file: Option<PathBuf>,
}

/// `log`: what the proxy logs and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Log {
    /// A `tracing` env-filter directive, default `info`.
    pub level: String,
    /// `log.format`.
    pub format: LogFormat,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines (default).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `metrics`: Prometheus exposition.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Metrics {
    /// `metrics.listen`; `None` (default) disables the endpoint.
    pub listen: Option<SocketAddr>,
}

/// `limits`: bounds on what peers can make us hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest SIP message accepted, bytes (65536).
    pub max_message_size: u32,
    /// Most header fields in one message (256).
    pub max_headers: u32,
    /// Most simultaneous inbound TCP connections (1024).
    pub max_tcp_connections: u32,
    /// Most simultaneous inbound TCP connections from one source address (IPv6: one /64)
    /// that is not a carrier or IP-auth server (32): one host cannot take every slot.
    pub max_tcp_connections_per_source: u32,
    /// Most server transactions held at once (500000); new requests beyond get 503. Each
    /// waits out 64·T1 (32 s) after its final response, so an answered call holds two
    /// for ~32 s: the default carries ~7,800 calls/s sustained, in ~350 MB.
    pub max_transactions: u32,
    /// Most calls in progress at once, ringing or answered (200000); an initial INVITE
    /// beyond gets 503, so no call ever runs untracked (its trunk, CDR and BYE).
    pub max_calls: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_size: 65536,
            max_headers: 256,
            max_tcp_connections: 1024,
            max_tcp_connections_per_source: 32,
            max_transactions: 500_000,
            max_calls: 200_000,
        }
    }
}

const KEYS: &[&str] = &[
    "listen",
    "advertise",
    "connectivity_dir",
    "default_realm",
    "carriers",
    "emergency_numbers",
    "failover_on",
    "max_call_duration",
    "timers",
    "api",
    "cdr",
    "log",
    "metrics",
    "limits",
    "nonce_ttl",
    "workers",
    "shutdown_grace",
    "transport",
    "protection",
    "auth",
    "data_dir",
    "registrar",
    "media",
    "dns",
    "tls",
    "cluster",
];

impl Settings {
    /// Reads and validates a settings file; errors are reported against that file.
    pub fn load(path: impl AsRef<Path>) -> Result<Settings, FileErrors> {
        let path = path.as_ref();
        let value = read_json(path).map_err(|e| FileErrors::new(path, e))?;
        let base = path.parent().unwrap_or(Path::new(""));
        let mut settings =
            Settings::from_value(&value, base).map_err(|e| FileErrors::new(path, e))?;
        settings.path = Some(path.to_path_buf());
        Ok(settings)
    }

    /// Validates settings given as JSON; relative paths are resolved against `base_dir`.
    pub fn from_value(value: &Value, base_dir: &Path) -> Result<Settings, ValidationErrors> {
        let mut w = Walker::default();
        let empty = Map::new();
        let root = w.object(value, "").unwrap_or(&empty);
        w.no_unknown_keys(root, "", KEYS);
        let listen = listen(&mut w, root, base_dir);
        let advertise = Walker::field(root, "advertise")
            .and_then(|v| host_port(&mut w, v, "advertise"))
            .or_else(|| default_advertise(&listen));
        let connectivity_dir = w
            .opt_string(root, "connectivity_dir", "", Str::NON_EMPTY)
            .unwrap_or_else(|| "connectivity".into());
        let default_realm = w
            .opt_string(root, "default_realm", "", Str::NON_EMPTY)
            .or_else(|| advertise.as_ref().map(|a| a.host.to_string()))
            .unwrap_or_else(|| "trunkstore".into());
        let settings = Settings {
            path: None,
            carriers: carriers(&mut w, root),
            emergency_numbers: emergency_numbers(&mut w, root),
            failover_on: failover_on(&mut w, root),
            max_call_duration: w.opt_u32(root, "max_call_duration", "", 1, u32::MAX as i64, 43_200),
            timers: timers(&mut w, root),
            api: api(&mut w, root),
            cdr: cdr(&mut w, root, base_dir),
            log: log(&mut w, root),
            metrics: metrics(&mut w, root),
            limits: limits(&mut w, root),
            nonce_ttl: w.opt_u32(root, "nonce_ttl", "", 1, 86_400, 300),
            workers: w.opt_u32(root, "workers", "", 0, 1024, 0),
            shutdown_grace: w.opt_u32(root, "shutdown_grace", "", 0, 3600, 5),
            transport: transport(&mut w, root),
            protection: protection(&mut w, root),
            auth: auth(&mut w, root),
            data_dir: base_dir.join(
                w.opt_string(root, "data_dir", "", Str::NON_EMPTY)
                    .unwrap_or_else(|| "data".into()),
            ),
            registrar: registrar(&mut w, root),
            media: media(&mut w, root),
            dns: dns(&mut w, root),
            tls: tls(&mut w, root, base_dir),
            cluster: cluster(&mut w, root, base_dir),
            listen,
            advertise: advertise.unwrap_or(HostPort {
                host: Host::Ip(IpAddr::from([127, 0, 0, 1])),
                port: 5060,
            }),
            connectivity_dir: base_dir.join(connectivity_dir),
            default_realm,
        };
        w.errors.into_result(settings)
    }

    /// What the listener `address` of `transport` advertises in Via/Record-Route: its own
    /// `advertise`; else the global `advertise` unless that is an IP of the other address
    /// family, in which case the listener's own address when it is not a wildcard (an IPv6
    /// peer cannot reach an IPv4 Record-Route); else the global `advertise`.
    pub fn advertise_for(&self, transport: Transport, address: SocketAddr) -> HostPort {
        let own = self
            .listen
            .advertised
            .iter()
            .find(|l| l.transport == transport && l.address == address);
        if let Some(l) = own {
            return l.advertise.clone();
        }
        let other_family =
            matches!(self.advertise.host, Host::Ip(ip) if ip.is_ipv4() != address.is_ipv4());
        if other_family && !address.ip().is_unspecified() {
            return HostPort {
                host: Host::Ip(address.ip()),
                port: address.port(),
            };
        }
        if transport == Transport::Tls && address.port() != 0 {
            // TLS listens on a port of its own (5061): the global host, the TLS port.
            return HostPort {
                host: self.advertise.host.clone(),
                port: address.port(),
            };
        }
        self.advertise.clone()
    }

    /// Every address the proxy advertises: the global `advertise` and each listener's.
    pub fn advertised_addresses(&self) -> Vec<HostPort> {
        let mut out = vec![self.advertise.clone()];
        let udp = self.listen.udp.iter().map(|a| (Transport::Udp, *a));
        let tcp = self.listen.tcp.iter().map(|a| (Transport::Tcp, *a));
        let tls = self.listen.tls.iter().map(|l| (Transport::Tls, l.address));
        for (t, a) in udp.chain(tcp).chain(tls) {
            let h = self.advertise_for(t, a);
            if !out.contains(&h) {
                out.push(h);
            }
        }
        out
    }

    /// Is `number` (as dialled, before normalisation) an emergency number?
    pub fn is_emergency(&self, number: &str) -> bool {
        self.emergency_numbers.iter().any(|n| n == number)
    }
}

fn default_advertise(listen: &Listen) -> Option<HostPort> {
    let tls = listen.tls.first().map(|l| &l.address);
    let first = listen.udp.first().or(listen.tcp.first()).or(tls)?;
    Some(HostPort {
        host: Host::Ip(first.ip()),
        port: first.port(),
    })
}

fn socket_addr(w: &mut Walker, v: &Value, path: &str) -> Option<SocketAddr> {
    let s = w.string(v, path, Str::NON_EMPTY)?;
    let parsed = s.parse::<SocketAddr>().ok();
    if parsed.is_none() {
        w.error(
            path,
            "format",
            "Value must be an ip:port address ([v6]:port for IPv6)",
            Some(json!("ip:port")),
            Some(json!(s)),
        );
    }
    parsed
}

/// `listen.udp` / `listen.tcp`: each entry `"ip:port"` or `{"address": "ip:port",
/// "advertise": "host[:port]"}`; the second form's advertise goes to `advertised`.
fn listener_list(
    w: &mut Walker,
    obj: &Map<String, Value>,
    transport: Transport,
    advertised: &mut Vec<ListenerAdvertise>,
) -> Vec<SocketAddr> {
    let path = join("listen", transport.as_str());
    let Some(list) = Walker::field(obj, transport.as_str()).and_then(|v| w.array(v, &path)) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, v) in list.iter().enumerate() {
        let at = join(&path, i);
        let Value::Object(entry) = v else {
            out.extend(socket_addr(w, v, &at));
            continue;
        };
        w.no_unknown_keys(entry, &at, &["address", "advertise"]);
        let Some(address) = Walker::field(entry, "address") else {
            w.required(&join(&at, "address"));
            continue;
        };
        let Some(address) = socket_addr(w, address, &join(&at, "address")) else {
            continue;
        };
        out.push(address);
        let own = Walker::field(entry, "advertise")
            .and_then(|a| host_port(w, a, &join(&at, "advertise")));
        if let Some(advertise) = own {
            advertised.push(ListenerAdvertise {
                transport,
                address,
                advertise,
            });
        }
    }
    out
}

fn listen(w: &mut Walker, root: &Map<String, Value>, base_dir: &Path) -> Listen {
    let Some(v) = Walker::field(root, "listen") else {
        let local = SocketAddr::from(([127, 0, 0, 1], 5060));
        return Listen {
            udp: vec![local],
            tcp: vec![local],
            tls: vec![],
            advertised: vec![],
        };
    };
    let Some(obj) = w.object(v, "listen") else {
        return Listen {
            udp: vec![],
            tcp: vec![],
            tls: vec![],
            advertised: vec![],
        };
    };
    w.no_unknown_keys(obj, "listen", &["udp", "tcp", "tls"]);
    let before = w.errors.len();
    let mut advertised = Vec::new();
    let listen = Listen {
        udp: listener_list(w, obj, Transport::Udp, &mut advertised),
        tcp: listener_list(w, obj, Transport::Tcp, &mut advertised),
        tls: tls_listeners(w, obj, base_dir, &mut advertised),
        advertised,
    };
    let none = listen.udp.is_empty() && listen.tcp.is_empty() && listen.tls.is_empty();
    if none && w.errors.len() == before {
        w.error(
            "listen",
            "minItems",
            "At least one listen address is needed",
            Some(json!(1)),
            Some(v.clone()),
        );
    }
    listen
}

/// `listen.tls`: each entry `{"address": "ip:port", "certificate": "cert.pem", "key":
/// "key.pem", "advertise"?: "host[:port]"}`, the files resolved against the settings'
/// folder and checked readable now (a typo fails `check`, not the first handshake).
fn tls_listeners(
    w: &mut Walker,
    obj: &Map<String, Value>,
    base_dir: &Path,
    advertised: &mut Vec<ListenerAdvertise>,
) -> Vec<TlsListen> {
    let path = "listen.tls";
    let Some(list) = Walker::field(obj, "tls").and_then(|v| w.array(v, path)) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, v) in list.iter().enumerate() {
        let at = join(path, i);
        let Some(entry) = w.object(v, &at) else {
            continue;
        };
        w.no_unknown_keys(entry, &at, &["address", "advertise", "certificate", "key"]);
        let address = match Walker::field(entry, "address") {
            Some(a) => socket_addr(w, a, &join(&at, "address")),
            None => {
                w.required(&join(&at, "address"));
                None
            }
        };
        let certificate = required_pem(w, entry, &at, "certificate", base_dir, Pem::Certificate);
        let key = required_pem(w, entry, &at, "key", base_dir, Pem::PrivateKey);
        let own = Walker::field(entry, "advertise")
            .and_then(|a| host_port(w, a, &join(&at, "advertise")));
        let (Some(address), Some(certificate), Some(key)) = (address, certificate, key) else {
            continue;
        };
        if let Some(advertise) = own {
            advertised.push(ListenerAdvertise {
                transport: Transport::Tls,
                address,
                advertise,
            });
        }
        out.push(TlsListen {
            address,
            certificate,
            key,
        });
    }
    out
}

/// What a PEM file named in the settings must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pem {
    /// At least one `CERTIFICATE` block.
    Certificate,
    /// A `PRIVATE KEY` block (PKCS#8, `RSA` or `EC`).
    PrivateKey,
}

fn required_pem(
    w: &mut Walker,
    obj: &Map<String, Value>,
    base: &str,
    key: &str,
    base_dir: &Path,
    kind: Pem,
) -> Option<PathBuf> {
    if Walker::field(obj, key).is_none() {
        w.required(&join(base, key));
        return None;
    }
    pem_file(w, obj, base, key, base_dir, kind)
}

/// An optional PEM file: its path resolved against `base_dir`, read and checked to hold
/// a block of `kind` (the edge parses it in full when it loads it). The error names the
/// file, never its content (a key is a secret).
fn pem_file(
    w: &mut Walker,
    obj: &Map<String, Value>,
    base: &str,
    key: &str,
    base_dir: &Path,
    kind: Pem,
) -> Option<PathBuf> {
    let name = w.opt_string(obj, key, base, Str::NON_EMPTY)?;
    let path = base_dir.join(&name);
    let at = join(base, key);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            w.error(
                &at,
                "file",
                format!("Cannot read {}: {e}", path.display()),
                None,
                Some(json!(name)),
            );
            return None;
        }
    };
    let found = match kind {
        Pem::Certificate => text.contains("-----BEGIN CERTIFICATE-----"),
        Pem::PrivateKey => text
            .lines()
            .any(|l| l.starts_with("-----BEGIN ") && l.trim_end().ends_with("PRIVATE KEY-----")),
    };
    if !found {
        let what = match kind {
            Pem::Certificate => "a PEM certificate (-----BEGIN CERTIFICATE-----)",
            Pem::PrivateKey => "a PEM private key (-----BEGIN PRIVATE KEY-----)",
        };
        w.error(
            &at,
            "format",
            format!("{} does not hold {what}", path.display()),
            None,
            Some(json!(name)),
        );
        return None;
    }
    Some(path)
}

/// `tls`: `ca_file`, `verify_server`, `client_certificate` with `client_key`,
/// `require_client_certificate`.
fn tls(w: &mut Walker, root: &Map<String, Value>, base_dir: &Path) -> Tls {
    let known = [
        "ca_file",
        "verify_server",
        "client_certificate",
        "client_key",
        "require_client_certificate",
    ];
    let d = Tls::default();
    let Some(obj) = sub_object(w, root, "tls", &known) else {
        return d;
    };
    let ca_file = pem_file(w, obj, "tls", "ca_file", base_dir, Pem::Certificate);
    let client_certificate = pem_file(
        w,
        obj,
        "tls",
        "client_certificate",
        base_dir,
        Pem::Certificate,
    );
    let client_key = pem_file(w, obj, "tls", "client_key", base_dir, Pem::PrivateKey);
    let has = |k: &str| Walker::field(obj, k).is_some();
    for (present, missing) in [
        ("client_certificate", "client_key"),
        ("client_key", "client_certificate"),
    ] {
        if has(present) && !has(missing) {
            w.error(
                &join("tls", missing),
                "required",
                format!("tls.{present} needs tls.{missing}"),
                None,
                None,
            );
        }
    }
    Tls {
        ca_file,
        verify_server: w
            .opt_bool(obj, "verify_server", "tls")
            .unwrap_or(d.verify_server),
        client_certificate,
        client_key,
        require_client_certificate: w
            .opt_bool(obj, "require_client_certificate", "tls")
            .unwrap_or(d.require_client_certificate),
    }
}

fn is_dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn parse_host(s: &str) -> Option<Host> {
    let bare = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(s);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Some(Host::Ip(ip));
    }
    is_dns_name(s).then(|| Host::Name(s.to_ascii_lowercase()))
}

/// `host`, `host:port`, `[v6]` or `[v6]:port` (port defaults to 5060).
fn host_port(w: &mut Walker, v: &Value, path: &str) -> Option<HostPort> {
    let s = w.string(v, path, Str::NON_EMPTY)?;
    let parsed = if let Ok(a) = s.parse::<SocketAddr>() {
        Some(HostPort {
            host: Host::Ip(a.ip()),
            port: a.port(),
        })
    } else if let Some(host) = parse_host(&s) {
        Some(HostPort { host, port: 5060 })
    } else {
        s.rsplit_once(':').and_then(|(h, p)| {
            let port = p.parse::<u16>().ok().filter(|p| *p > 0)?;
            Some(HostPort {
                host: parse_host(h)?,
                port,
            })
        })
    };
    if parsed.is_none() {
        w.error(
            path,
            "format",
            "Value must be host or host:port",
            Some(json!("host[:port]")),
            Some(json!(s)),
        );
    }
    parsed
}

fn carriers(w: &mut Walker, root: &Map<String, Value>) -> Vec<Carrier> {
    let Some(list) = Walker::field(root, "carriers").and_then(|v| w.array(v, "carriers")) else {
        return Vec::new();
    };
    let mut out: Vec<Carrier> = Vec::new();
    for (i, v) in list.iter().enumerate() {
        let path = join("carriers", i);
        let Some(obj) = w.object(v, &path) else {
            continue;
        };
        let Some(c) = carrier(w, obj, &path) else {
            continue;
        };
        if let Some(first) = out.iter().position(|o| o.name == c.name) {
            w.error(
                &join(&path, "name"),
                "unique",
                format!(
                    "Carrier name '{}' is already used by carriers.{first}",
                    c.name
                ),
                Some(json!(format!("carriers.{first}"))),
                Some(json!(c.name)),
            );
            continue;
        }
        out.push(c);
    }
    out
}

const CARRIER_KEYS: &[&str] = &[
    "name",
    "gateways",
    "sources",
    "priority",
    "weight",
    "format",
    "rule",
    "emergency",
];

fn carrier(w: &mut Walker, obj: &Map<String, Value>, path: &str) -> Option<Carrier> {
    w.no_unknown_keys(obj, path, CARRIER_KEYS);
    let before = w.errors.len();
    let name = match Walker::field(obj, "name") {
        Some(v) => w.string(
            v,
            &join(path, "name"),
            Str::len(1, 64).pattern((is_sip_token, "a SIP token")),
        ),
        None => {
            w.required(&join(path, "name"));
            None
        }
    };
    let gateways = gateways(w, obj, path);
    let sources = sources(w, obj, path);
    let format = Walker::field(obj, "format")
        .and_then(|v| {
            w.enumeration(
                v,
                &join(path, "format"),
                &[
                    ("e164", NumberFormat::E164),
                    ("npan", NumberFormat::Npan),
                    ("1npan", NumberFormat::OneNpan),
                ],
            )
        })
        .unwrap_or(NumberFormat::E164);
    let rule = w
        .opt_string(obj, "rule", path, Str::NON_EMPTY)
        .and_then(|r| match Regex::new(&r) {
            Ok(re) => Some(re),
            Err(e) => {
                w.error(
                    &join(path, "rule"),
                    "format",
                    format!("Invalid regular expression: {e}"),
                    Some(json!("regex")),
                    Some(json!(r)),
                );
                None
            }
        });
    let carrier = Carrier {
        name: name.unwrap_or_default(),
        gateways,
        sources,
        priority: w.opt_u32(obj, "priority", path, 0, u32::MAX as i64, 10),
        weight: w.opt_u32(obj, "weight", path, 0, u32::MAX as i64, 1),
        format,
        rule,
        emergency: w.opt_bool(obj, "emergency", path).unwrap_or(false),
    };
    (w.errors.len() == before).then_some(carrier)
}

fn gateways(w: &mut Walker, obj: &Map<String, Value>, base: &str) -> Vec<Gateway> {
    let path = join(base, "gateways");
    let Some(list) = Walker::field(obj, "gateways").and_then(|v| w.array(v, &path)) else {
        w.required(&path);
        return Vec::new();
    };
    if list.is_empty() {
        w.error(
            &path,
            "minItems",
            "At least one gateway is needed",
            Some(json!(1)),
            None,
        );
    }
    let mut out = Vec::new();
    for (i, v) in list.iter().enumerate() {
        let gw_path = join(&path, i);
        let Some(g) = w.object(v, &gw_path) else {
            continue;
        };
        w.no_unknown_keys(g, &gw_path, &["host", "port", "transport"]);
        let host = match Walker::field(g, "host") {
            Some(h) => w
                .string(h, &join(&gw_path, "host"), Str::NON_EMPTY)
                .and_then(|s| {
                    let host = parse_host(&s);
                    if host.is_none() {
                        w.error(
                            &join(&gw_path, "host"),
                            "format",
                            "Value must be an IP address or a DNS name",
                            Some(json!("hostname")),
                            Some(json!(s)),
                        );
                    }
                    host
                }),
            None => {
                w.required(&join(&gw_path, "host"));
                None
            }
        };
        let transport_given = Walker::field(g, "transport").is_some();
        let port_given = Walker::field(g, "port").is_some();
        let transport = Walker::field(g, "transport")
            .and_then(|t| {
                w.enumeration(
                    t,
                    &join(&gw_path, "transport"),
                    &[
                        ("udp", Transport::Udp),
                        ("tcp", Transport::Tcp),
                        ("tls", Transport::Tls),
                    ],
                )
            })
            .unwrap_or_default();
        let port = w
            .opt_integer(g, "port", &gw_path, 1, 65535)
            .map_or(transport.default_port(), |p| p as u16);
        if let Some(host) = host {
            out.push(Gateway {
                host,
                port,
                transport,
                port_given,
                transport_given,
            });
        }
    }
    out
}

fn sources(w: &mut Walker, obj: &Map<String, Value>, base: &str) -> Vec<Source> {
    let path = join(base, "sources");
    let Some(list) = Walker::field(obj, "sources").and_then(|v| w.array(v, &path)) else {
        return Vec::new();
    };
    list.iter()
        .enumerate()
        .filter_map(|(i, v)| {
            let p = join(&path, i);
            let s = w.string(v, &p, Str::NON_EMPTY)?;
            let src = Source::parse(&s);
            if src.is_none() {
                w.error(
                    &p,
                    "format",
                    "Value must be a CIDR (10.0.0.0/24), an IP, or ip:port",
                    Some(json!("cidr or ip:port")),
                    Some(json!(s)),
                );
            }
            src
        })
        .collect()
}

fn emergency_numbers(w: &mut Walker, root: &Map<String, Value>) -> Vec<String> {
    let Some(list) =
        Walker::field(root, "emergency_numbers").and_then(|v| w.array(v, "emergency_numbers"))
    else {
        return vec!["911".into(), "933".into()];
    };
    let digits = (
        (|s: &str| s.bytes().all(|b| b.is_ascii_digit() || b == b'+')) as fn(&str) -> bool,
        "digits",
    );
    list.iter()
        .enumerate()
        .filter_map(|(i, v)| {
            w.string(
                v,
                &join("emergency_numbers", i),
                Str::len(1, 32).pattern(digits),
            )
        })
        .collect()
}

fn failover_on(w: &mut Walker, root: &Map<String, Value>) -> FailoverOn {
    let Some(v) = Walker::field(root, "failover_on") else {
        return FailoverOn::default_list();
    };
    if v.as_str() == Some("any") {
        return FailoverOn::Any;
    }
    let Value::Array(list) = v else {
        w.type_error("failover_on", "array", v);
        return FailoverOn::default_list();
    };
    let mut out = Vec::new();
    for (i, item) in list.iter().enumerate() {
        let path = join("failover_on", i);
        let Some(s) = w.string(item, &path, Str::NON_EMPTY) else {
            continue;
        };
        match parse_trigger(&s) {
            Some(t) => out.push(t),
            None => w.error(
                &path,
                "enum",
                "Value must be a status 300-699, a class like '5xx', 'timeout' or 'unreachable'",
                Some(json!(["3xx-6xx", "300-699", "timeout", "unreachable"])),
                Some(item.clone()),
            ),
        }
    }
    FailoverOn::List(out)
}

fn parse_trigger(s: &str) -> Option<FailoverTrigger> {
    match s {
        "timeout" => return Some(FailoverTrigger::Timeout),
        "unreachable" => return Some(FailoverTrigger::Unreachable),
        _ => {}
    }
    let b = s.as_bytes();
    if b.len() == 3 && (b'3'..=b'6').contains(&b[0]) {
        if b[1..].eq_ignore_ascii_case(b"xx") {
            return Some(FailoverTrigger::Class((b[0] - b'0') as u16));
        }
        if b[1..].iter().all(u8::is_ascii_digit) {
            return s.parse().ok().map(FailoverTrigger::Status);
        }
    }
    None
}

fn sub_object<'v>(
    w: &mut Walker,
    root: &'v Map<String, Value>,
    key: &str,
    known: &[&str],
) -> Option<&'v Map<String, Value>> {
    let obj = w.object(Walker::field(root, key)?, key)?;
    w.no_unknown_keys(obj, key, known);
    Some(obj)
}

fn timers(w: &mut Walker, root: &Map<String, Value>) -> Timers {
    let d = Timers::default();
    let known = [
        "delay",
        "progress_timeout",
        "timeout",
        "t1_ms",
        "t2_ms",
        "t4_ms",
        "timer_c",
    ];
    let Some(obj) = sub_object(w, root, "timers", &known) else {
        return d;
    };
    let max = MAX_TIMER_SECS;
    let mut get = |key: &str, min, max, default| w.opt_u32(obj, key, "timers", min, max, default);
    let t = Timers {
        delay: get("delay", 0, max, d.delay),
        progress_timeout: get("progress_timeout", 1, max, d.progress_timeout),
        timeout: get("timeout", 0, max, d.timeout),
        t1_ms: get("t1_ms", 1, 60_000, d.t1_ms),
        t2_ms: get("t2_ms", 1, 600_000, d.t2_ms),
        t4_ms: get("t4_ms", 1, 600_000, d.t4_ms),
        timer_c: get("timer_c", 1, max, d.timer_c),
    };
    if t.t2_ms < t.t1_ms {
        w.error(
            "timers.t2_ms",
            "minimum",
            format!("T2 must be at least T1 ({} ms)", t.t1_ms),
            Some(json!(t.t1_ms)),
            Some(json!(t.t2_ms)),
        );
    }
    t
}

fn is_token_text(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_graphic())
}

fn api(w: &mut Walker, root: &Map<String, Value>) -> Api {
    let default_listen = SocketAddr::from(([127, 0, 0, 1], 8000));
    let Some(obj) = sub_object(w, root, "api", &["listen", "tokens"]) else {
        return Api {
            listen: default_listen,
            tokens: Vec::new(),
        };
    };
    let listen = Walker::field(obj, "listen")
        .and_then(|v| socket_addr(w, v, "api.listen"))
        .unwrap_or(default_listen);
    let mut tokens: Vec<ApiToken> = Vec::new();
    if let Some(list) = Walker::field(obj, "tokens").and_then(|v| w.array(v, "api.tokens")) {
        for (i, v) in list.iter().enumerate() {
            let path = join("api.tokens", i);
            let Some(t) = w.object(v, &path) else {
                continue;
            };
            w.no_unknown_keys(t, &path, &["token", "account"]);
            let token = match Walker::field(t, "token") {
                Some(v) => w.string(
                    v,
                    &join(&path, "token"),
                    Str::len(16, 256)
                        .pattern((is_token_text, "visible ASCII without spaces"))
                        .secret(),
                ),
                None => {
                    w.required(&join(&path, "token"));
                    None
                }
            };
            let account = w.opt_string(
                t,
                "account",
                &path,
                Str::NON_EMPTY.pattern((ids::is_valid_id, ids::ID_PATTERN)),
            );
            let Some(token) = token else { continue };
            if tokens.iter().any(|o| o.token.expose() == token) {
                // The value is a secret: say which entry, not what.
                w.error(
                    &join(&path, "token"),
                    "unique",
                    "Token is listed twice",
                    None,
                    None,
                );
                continue;
            }
            tokens.push(ApiToken {
                token: Secret::new(token),
                account,
            });
        }
    }
    Api { listen, tokens }
}

fn cdr(w: &mut Walker, root: &Map<String, Value>, base_dir: &Path) -> Cdr {
    let Some(obj) = sub_object(w, root, "cdr", &["file"]) else {
        return Cdr::default();
    };
    Cdr {
        file: w
            .opt_string(obj, "file", "cdr", Str::NON_EMPTY)
            .map(|f| base_dir.join(f)),
    }
}

fn log(w: &mut Walker, root: &Map<String, Value>) -> Log {
    let default = || Log {
        level: "info".into(),
        format: LogFormat::Text,
    };
    let Some(obj) = sub_object(w, root, "log", &["level", "format"]) else {
        return default();
    };
    Log {
        level: w
            .opt_string(obj, "level", "log", Str::NON_EMPTY)
            .unwrap_or_else(|| default().level),
        format: Walker::field(obj, "format")
            .and_then(|v| {
                w.enumeration(
                    v,
                    "log.format",
                    &[("text", LogFormat::Text), ("json", LogFormat::Json)],
                )
            })
            .unwrap_or_default(),
    }
}

fn metrics(w: &mut Walker, root: &Map<String, Value>) -> Metrics {
    let Some(obj) = sub_object(w, root, "metrics", &["listen"]) else {
        return Metrics::default();
    };
    Metrics {
        listen: Walker::field(obj, "listen").and_then(|v| socket_addr(w, v, "metrics.listen")),
    }
}

fn registrar(w: &mut Walker, root: &Map<String, Value>) -> Registrar {
    let d = Registrar::default();
    let known = [
        "min_expires",
        "max_expires",
        "default_expires",
        "max_contacts",
        "keepalive_interval",
        "keepalive_failures",
    ];
    let Some(obj) = sub_object(w, root, "registrar", &known) else {
        return d;
    };
    let mut get =
        |key: &str, min, max, default| w.opt_u32(obj, key, "registrar", min, max, default);
    let r = Registrar {
        min_expires: get("min_expires", 1, 86_400, d.min_expires),
        max_expires: get("max_expires", 1, 7 * 86_400, d.max_expires),
        default_expires: get("default_expires", 1, 7 * 86_400, d.default_expires),
        max_contacts: get("max_contacts", 1, 100, d.max_contacts),
        keepalive_interval: get("keepalive_interval", 0, 3600, d.keepalive_interval),
        keepalive_failures: get("keepalive_failures", 1, 100, d.keepalive_failures),
    };
    if r.min_expires > r.max_expires {
        w.error(
            "registrar.min_expires",
            "maximum",
            format!(
                "{} is above registrar.max_expires ({})",
                r.min_expires, r.max_expires
            ),
            None,
            None,
        );
    }
    r
}

fn media(w: &mut Walker, root: &Map<String, Value>) -> Media {
    let d = Media::default();
    let known = [
        "rtpengine",
        "timeout_ms",
        "retries",
        "down_secs",
        "on_failure",
    ];
    let Some(obj) = sub_object(w, root, "media", &known) else {
        return d;
    };
    let mut get = |key: &str, min, max, default| w.opt_u32(obj, key, "media", min, max, default);
    // A reply later than a minute is no use to a ringing INVITE.
    let timeout_ms = get("timeout_ms", 1, 60_000, d.timeout_ms);
    let retries = get("retries", 0, 10, d.retries);
    let down_secs = get("down_secs", 0, 86_400, d.down_secs);
    let on_failure = Walker::field(obj, "on_failure")
        .and_then(|v| {
            w.enumeration(
                v,
                "media.on_failure",
                &[
                    ("reject", MediaFailure::Reject),
                    ("bypass", MediaFailure::Bypass),
                ],
            )
        })
        .unwrap_or_default();
    Media {
        rtpengine: rtpengines(w, obj),
        timeout_ms,
        retries,
        down_secs,
        on_failure,
    }
}

fn rtpengines(w: &mut Walker, obj: &Map<String, Value>) -> Vec<RtpEngine> {
    let path = "media.rtpengine";
    let Some(list) = Walker::field(obj, "rtpengine").and_then(|v| w.array(v, path)) else {
        return Vec::new();
    };
    let mut out: Vec<RtpEngine> = Vec::new();
    for (i, v) in list.iter().enumerate() {
        let item = join(path, i);
        let Some(e) = w.object(v, &item) else {
            continue;
        };
        w.no_unknown_keys(e, &item, &["address", "weight"]);
        let address = match Walker::field(e, "address") {
            Some(a) => socket_addr(w, a, &join(&item, "address")),
            None => {
                w.required(&join(&item, "address"));
                None
            }
        };
        let weight = w.opt_u32(e, "weight", &item, 0, 1000, 1);
        let Some(address) = address else { continue };
        if let Some(first) = out.iter().position(|o| o.address == address) {
            w.error(
                &join(&item, "address"),
                "unique",
                format!("{address} is already listed as media.rtpengine.{first}"),
                Some(json!(format!("media.rtpengine.{first}"))),
                Some(json!(address.to_string())),
            );
            continue;
        }
        out.push(RtpEngine { address, weight });
    }
    if !out.is_empty() && out.iter().all(|e| e.weight == 0) {
        w.error(
            path,
            "minimum",
            "At least one rtpengine needs a weight above 0",
            Some(json!(1)),
            None,
        );
    }
    out
}

fn cluster(w: &mut Walker, root: &Map<String, Value>, base_dir: &Path) -> Option<Cluster> {
    let known = [
        "node_id",
        "redis",
        "password",
        "username",
        "tls_ca_file",
        "key_prefix",
        "lease_secs",
        "timeout_ms",
        "store",
        "secret",
    ];
    let obj = sub_object(w, root, "cluster", &known)?;
    let node_id = required_string(w, obj, "node_id");
    if let Some(id) = node_id.as_deref().filter(|id| !crate::ids::is_valid_id(id)) {
        w.error(
            "cluster.node_id",
            "pattern",
            format!("must match {}", crate::ids::ID_PATTERN),
            Some(json!(crate::ids::ID_PATTERN)),
            Some(json!(id)),
        );
    }
    let secret = match Walker::field(obj, "secret") {
        Some(v) => w.string(v, "cluster.secret", Str::len(16, 1024).secret()),
        None => {
            let msg = "cluster.secret is required: every node verifies the others' nonces with it";
            w.error("cluster.secret", "required", msg, None, None);
            None
        }
    };
    let mut get = |key: &str, min, max, default| w.opt_u32(obj, key, "cluster", min, max, default);
    // Below 3 s a lease would need renewing faster than a loaded Redis answers.
    let lease_secs = get("lease_secs", 3, 3600, 15);
    let timeout_ms = get("timeout_ms", 1, 10_000, 250);
    let store = Walker::field(obj, "store")
        .and_then(|v| {
            let options = [
                ("files", DocumentStore::Files),
                ("redis", DocumentStore::Redis),
            ];
            w.enumeration(v, "cluster.store", &options)
        })
        .unwrap_or_default();
    Some(Cluster {
        node_id: node_id.unwrap_or_default(),
        redis: redis_urls(w, obj),
        password: w
            .opt_string(obj, "password", "cluster", Str::NON_EMPTY.secret())
            .map(Secret::new),
        username: w.opt_string(obj, "username", "cluster", Str::NON_EMPTY),
        tls_ca_file: pem_file(w, obj, "cluster", "tls_ca_file", base_dir, Pem::Certificate),
        key_prefix: w
            .opt_string(obj, "key_prefix", "cluster", Str::len(1, 64))
            .unwrap_or_else(|| "trunkstore:".into()),
        lease_secs,
        timeout_ms,
        store,
        secret: Secret::new(secret.unwrap_or_default()),
    })
}

/// A required string member of `cluster`, reported when absent.
fn required_string(w: &mut Walker, obj: &Map<String, Value>, key: &str) -> Option<String> {
    let path = join("cluster", key);
    match Walker::field(obj, key) {
        Some(v) => w.string(v, &path, Str::NON_EMPTY),
        None => {
            w.error(&path, "required", format!("{path} is required"), None, None);
            None
        }
    }
}

/// `cluster.redis`: at least one `redis://` or `rediss://` URL, each once.
fn redis_urls(w: &mut Walker, obj: &Map<String, Value>) -> Vec<String> {
    let path = "cluster.redis";
    let Some(v) = Walker::field(obj, "redis") else {
        w.error(path, "required", "cluster.redis is required", None, None);
        return Vec::new();
    };
    let Some(list) = w.array(v, path) else {
        return Vec::new();
    };
    if list.is_empty() {
        w.error(
            path,
            "minItems",
            "at least one Redis URL",
            Some(json!(1)),
            None,
        );
    }
    let mut out: Vec<String> = Vec::new();
    for (i, v) in list.iter().enumerate() {
        let item = join(path, i);
        // A URL may carry a password: never echoed back in an error.
        let Some(url) = w.string(v, &item, Str::NON_EMPTY.secret()) else {
            continue;
        };
        if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            let msg = "must be a redis:// or rediss:// URL";
            w.error(&item, "format", msg, Some(json!("redis://host:port")), None);
        } else if out.contains(&url) {
            w.error(&item, "unique", "this URL is already listed", None, None);
        } else {
            out.push(url);
        }
    }
    out
}

fn dns(w: &mut Walker, root: &Map<String, Value>) -> Dns {
    let d = Dns::default();
    let known = [
        "servers",
        "timeout_ms",
        "attempts",
        "negative_ttl_secs",
        "min_ttl_secs",
        "max_ttl_secs",
    ];
    let Some(obj) = sub_object(w, root, "dns", &known) else {
        return d;
    };
    let mut get = |key: &str, min, max, default| w.opt_u32(obj, key, "dns", min, max, default);
    // A call waits for its DNS: an answer later than a minute is no use to an INVITE.
    let timeout_ms = get("timeout_ms", 1, 60_000, d.timeout_ms);
    let attempts = get("attempts", 1, 10, d.attempts);
    let negative_ttl_secs = get("negative_ttl_secs", 0, 86_400, d.negative_ttl_secs);
    let min_ttl_secs = get("min_ttl_secs", 0, 86_400, d.min_ttl_secs);
    let max_ttl_secs = get("max_ttl_secs", 0, 7 * 86_400, d.max_ttl_secs);
    if min_ttl_secs > max_ttl_secs {
        w.error(
            "dns.min_ttl_secs",
            "maximum",
            format!("{min_ttl_secs} is above dns.max_ttl_secs ({max_ttl_secs})"),
            Some(json!(max_ttl_secs)),
            Some(json!(min_ttl_secs)),
        );
    }
    Dns {
        servers: dns_servers(w, obj),
        timeout_ms,
        attempts,
        negative_ttl_secs,
        min_ttl_secs,
        max_ttl_secs,
    }
}

fn dns_servers(w: &mut Walker, obj: &Map<String, Value>) -> Vec<SocketAddr> {
    let path = "dns.servers";
    let Some(list) = Walker::field(obj, "servers").and_then(|v| w.array(v, path)) else {
        return Vec::new();
    };
    let mut out: Vec<SocketAddr> = Vec::new();
    for (i, v) in list.iter().enumerate() {
        let item = join(path, i);
        let Some(address) = socket_addr(w, v, &item) else {
            continue;
        };
        if let Some(first) = out.iter().position(|o| *o == address) {
            w.error(
                &item,
                "unique",
                format!("{address} is already listed as dns.servers.{first}"),
                Some(json!(format!("dns.servers.{first}"))),
                Some(json!(address.to_string())),
            );
            continue;
        }
        out.push(address);
    }
    out
}

fn limits(w: &mut Walker, root: &Map<String, Value>) -> Limits {
    let d = Limits::default();
    let known = [
        "max_message_size",
        "max_headers",
        "max_tcp_connections",
        "max_tcp_connections_per_source",
        "max_transactions",
        "max_calls",
    ];
    let Some(obj) = sub_object(w, root, "limits", &known) else {
        return d;
    };
    let mut get = |key: &str, min, max, default| w.opt_u32(obj, key, "limits", min, max, default);
    Limits {
        max_message_size: get(
            "max_message_size",
            1024,
            16 * 1024 * 1024,
            d.max_message_size,
        ),
        max_headers: get("max_headers", 16, 65_535, d.max_headers),
        max_tcp_connections: get("max_tcp_connections", 1, 1_000_000, d.max_tcp_connections),
        max_tcp_connections_per_source: get(
            "max_tcp_connections_per_source",
            1,
            1_000_000,
            d.max_tcp_connections_per_source,
        ),
        max_transactions: get("max_transactions", 1000, 20_000_000, d.max_transactions),
        max_calls: get("max_calls", 1, 20_000_000, d.max_calls),
    }
}

fn transport(w: &mut Walker, root: &Map<String, Value>) -> TransportOptions {
    let d = TransportOptions::default();
    let known = [
        "udp_recv_buffer",
        "tcp_idle_timeout",
        "tcp_outbound_idle_timeout",
        "tcp_connect_timeout_ms",
        "udp_batch_linger_us",
    ];
    let Some(obj) = sub_object(w, root, "transport", &known) else {
        return d;
    };
    let mut get =
        |key: &str, min, max, default| w.opt_u32(obj, key, "transport", min, max, default);
    TransportOptions {
        // Below 64 KiB a burst of a few INVITEs already overflows; the kernel caps large
        // values at net.core.rmem_max unless the process may force them.
        udp_recv_buffer: get(
            "udp_recv_buffer",
            64 * 1024,
            256 * 1024 * 1024,
            d.udp_recv_buffer,
        ),
        tcp_idle_timeout: get("tcp_idle_timeout", 1, 86_400, d.tcp_idle_timeout),
        tcp_outbound_idle_timeout: get(
            "tcp_outbound_idle_timeout",
            1,
            86_400,
            d.tcp_outbound_idle_timeout,
        ),
        tcp_connect_timeout_ms: get(
            "tcp_connect_timeout_ms",
            1,
            600_000,
            d.tcp_connect_timeout_ms,
        ),
        // Past 20 ms the added latency shows in call set-up times for little gain.
        udp_batch_linger_us: get("udp_batch_linger_us", 0, 20_000, d.udp_batch_linger_us),
    }
}

fn protection(w: &mut Walker, root: &Map<String, Value>) -> Protection {
    let d = Protection::default();
    let known = [
        "ban_threshold",
        "ban_window",
        "ban_time",
        "rate",
        "burst",
        "max_sources",
        "scanner_user_agents",
    ];
    let Some(obj) = sub_object(w, root, "protection", &known) else {
        return d;
    };
    let mut get =
        |key: &str, min, max, default| w.opt_u32(obj, key, "protection", min, max, default);
    let mut p = Protection {
        ban_threshold: get("ban_threshold", 0, 1_000_000, d.ban_threshold),
        ban_window: get("ban_window", 1, 86_400, d.ban_window),
        ban_time: get("ban_time", 1, 30 * 86_400, d.ban_time),
        rate: get("rate", 0, 1_000_000, d.rate),
        burst: get("burst", 1, 1_000_000, d.burst),
        // Below a thousand sources a handful of PBXs behind NAT could crowd each other out.
        max_sources: get("max_sources", 1000, 10_000_000, d.max_sources),
        scanner_user_agents: d.scanner_user_agents,
    };
    let path = "protection.scanner_user_agents";
    if let Some(list) = Walker::field(obj, "scanner_user_agents").and_then(|v| w.array(v, path)) {
        p.scanner_user_agents = list
            .iter()
            .enumerate()
            .filter_map(|(i, v)| w.string(v, &join(path, i), Str::len(1, 128)))
            .collect();
    }
    p
}

/// `auth.algorithms`: a non-empty list of `"MD5"` / `"SHA-256"` without repeats, kept in
/// RFC 8760 order of preference (the order written does not matter).
fn auth(w: &mut Walker, root: &Map<String, Value>) -> DigestAuth {
    let Some(obj) = sub_object(w, root, "auth", &["algorithms"]) else {
        return DigestAuth::default();
    };
    let path = "auth.algorithms";
    let Some(list) = Walker::field(obj, "algorithms").and_then(|v| w.array(v, path)) else {
        return DigestAuth::default();
    };
    let options = [
        ("MD5", DigestAlgorithm::Md5),
        ("SHA-256", DigestAlgorithm::Sha256),
    ];
    let before = w.errors.len();
    let mut written = Vec::new();
    for (i, v) in list.iter().enumerate() {
        let item = join(path, i);
        let Some(alg) = w.enumeration(v, &item, &options) else {
            continue;
        };
        if written.contains(&alg) {
            w.error(
                &item,
                "uniqueItems",
                format!("{} is listed twice", alg.as_str()),
                None,
                Some(v.clone()),
            );
        }
        written.push(alg);
    }
    if list.is_empty() {
        w.error(
            path,
            "minItems",
            "At least one algorithm must be offered",
            Some(json!(1)),
            Some(json!(list)),
        );
    }
    if w.errors.len() != before {
        return DigestAuth::default();
    }
    // RFC 8760 §2.4: challenges go in order of preference, strongest first.
    let algorithms = [DigestAlgorithm::Sha256, DigestAlgorithm::Md5]
        .into_iter()
        .filter(|a| written.contains(a))
        .collect();
    DigestAuth { algorithms }
}

#[cfg(test)]
mod protection_tests {
    use super::*;

    fn parse(v: Value) -> Result<Settings, ValidationErrors> {
        Settings::from_value(&v, Path::new("/"))
    }

    #[test]
    fn protection_defaults() {
        let p = parse(json!({})).unwrap().protection;
        assert_eq!(p, Protection::default());
        assert_eq!((p.ban_threshold, p.ban_window, p.ban_time), (10, 60, 600));
        assert_eq!((p.rate, p.burst, p.max_sources), (50, 100, 100_000));
        assert!(p
            .scanner_user_agents
            .iter()
            .any(|s| s == "friendly-scanner"));
        assert!(!p.scanner_user_agents.iter().any(|s| s == "sipsak"));
    }

    #[test]
    fn protection_keys_are_read() {
        let p = parse(json!({"protection": {
            "ban_threshold": 0, "ban_window": "30", "ban_time": 3600,
            "rate": 0, "burst": 5, "max_sources": 2000,
            "scanner_user_agents": ["EvilBot"]
        }}))
        .unwrap()
        .protection;
        assert_eq!(
            p,
            Protection {
                ban_threshold: 0,
                ban_window: 30,
                ban_time: 3600,
                rate: 0,
                burst: 5,
                max_sources: 2000,
                scanner_user_agents: vec!["EvilBot".into()],
            }
        );
        let p = parse(json!({"protection": {"scanner_user_agents": []}})).unwrap();
        assert!(p.protection.scanner_user_agents.is_empty());
    }

    #[test]
    fn protection_keys_are_validated() {
        for (v, path) in [
            (
                json!({"protection": {"ban_window": 0}}),
                "protection.ban_window",
            ),
            (
                json!({"protection": {"ban_time": -1}}),
                "protection.ban_time",
            ),
            (json!({"protection": {"burst": 0}}), "protection.burst"),
            (
                json!({"protection": {"max_sources": 10}}),
                "protection.max_sources",
            ),
            (
                json!({"protection": {"scanner_user_agents": [""]}}),
                "protection.scanner_user_agents.0",
            ),
            (
                json!({"protection": {"scanner_user_agents": "x"}}),
                "protection.scanner_user_agents",
            ),
            (json!({"protection": {"bans": 1}}), "protection.bans"),
            (json!({"protection": 1}), "protection"),
        ] {
            let errors = format!("{:?}", parse(v.clone()).expect_err("rejected"));
            assert!(errors.contains(path), "{v}: {errors}");
        }
    }
}

#[cfg(test)]
mod auth_tests {
    use super::*;
    use DigestAlgorithm::{Md5, Sha256};

    fn algorithms(v: Value) -> Vec<DigestAlgorithm> {
        Settings::from_value(&v, Path::new("/"))
            .expect("valid settings")
            .auth
            .algorithms
    }

    #[test]
    fn auth_algorithms_default_to_md5_alone() {
        assert_eq!(algorithms(json!({})), [Md5]);
        assert_eq!(algorithms(json!({"auth": {}})), [Md5]);
        assert!(!DigestAuth::default().offers(Sha256));
    }

    #[test]
    fn auth_algorithms_are_kept_in_rfc8760_order() {
        assert_eq!(algorithms(json!({"auth": {"algorithms": ["MD5"]}})), [Md5]);
        assert_eq!(
            algorithms(json!({"auth": {"algorithms": ["SHA-256"]}})),
            [Sha256]
        );
        for both in [json!(["MD5", "SHA-256"]), json!(["SHA-256", "MD5"])] {
            assert_eq!(
                algorithms(json!({"auth": {"algorithms": both}})),
                [Sha256, Md5]
            );
        }
    }

    #[test]
    fn auth_algorithms_are_validated_with_field_paths() {
        for (v, path, keyword) in [
            (json!(["SHA-512"]), "auth.algorithms.0", "enum"),
            (json!(["MD5", "md5-sess"]), "auth.algorithms.1", "enum"),
            (json!(["MD5", "MD5"]), "auth.algorithms.1", "uniqueItems"),
            (json!([]), "auth.algorithms", "minItems"),
            (json!("MD5"), "auth.algorithms", "type"),
        ] {
            let v = json!({"auth": {"algorithms": v}});
            let errors = Settings::from_value(&v, Path::new("/")).expect_err("rejected");
            let text = format!("{errors:?}");
            assert!(text.contains(path) && text.contains(keyword), "{v}: {text}");
        }
        let errors = Settings::from_value(&json!({"auth": {"algorithm": ["MD5"]}}), Path::new("/"))
            .expect_err("unknown key");
        assert!(format!("{errors:?}").contains("auth.algorithm"));
    }
}

#[cfg(test)]
mod edge_keys_tests {
    use super::*;

    fn parse(v: Value) -> Result<Settings, ValidationErrors> {
        Settings::from_value(&v, Path::new("/"))
    }

    fn error_paths(v: Value) -> String {
        format!("{:?}", parse(v).expect_err("settings must be rejected"))
    }

    #[test]
    fn edge_keys_default() {
        let s = parse(json!({})).unwrap();
        assert_eq!(s.workers, 0);
        assert_eq!(s.shutdown_grace, 5);
        assert_eq!(s.transport, TransportOptions::default());
        assert_eq!(s.transport.udp_recv_buffer, 4 * 1024 * 1024);
    }

    #[test]
    fn edge_keys_are_read() {
        let s = parse(json!({
            "workers": 3,
            "shutdown_grace": 0,
            "transport": {
                "udp_recv_buffer": 1048576,
                "tcp_idle_timeout": 30,
                "tcp_outbound_idle_timeout": 10,
                "tcp_connect_timeout_ms": 250,
                "udp_batch_linger_us": 0
            }
        }))
        .unwrap();
        assert_eq!((s.workers, s.shutdown_grace), (3, 0));
        assert_eq!(
            s.transport,
            TransportOptions {
                udp_recv_buffer: 1048576,
                tcp_idle_timeout: 30,
                tcp_outbound_idle_timeout: 10,
                tcp_connect_timeout_ms: 250,
                udp_batch_linger_us: 0,
            }
        );
    }

    #[test]
    fn the_transaction_cap_is_read_and_bounded() {
        assert_eq!(parse(json!({})).unwrap().limits.max_transactions, 500_000);
        assert_eq!(parse(json!({})).unwrap().limits.max_calls, 200_000);
        let s = parse(json!({"limits": {"max_calls": 5}})).unwrap();
        assert_eq!(s.limits.max_calls, 5);
        let s = parse(json!({"limits": {"max_transactions": 2000}})).unwrap();
        assert_eq!(s.limits.max_transactions, 2000);
        for (v, path) in [
            (
                json!({"limits": {"max_transactions": 999}}),
                "limits.max_transactions",
            ),
            (
                json!({"limits": {"max_transactions": "many"}}),
                "limits.max_transactions",
            ),
            (json!({"limits": {"max_calls": 0}}), "limits.max_calls"),
        ] {
            let errors = error_paths(v.clone());
            assert!(errors.contains(path), "{v}: {errors}");
        }
    }

    #[test]
    fn the_per_source_tcp_cap_is_read_and_bounded() {
        let d = parse(json!({})).unwrap();
        assert_eq!(d.limits.max_tcp_connections_per_source, 32);
        let s = parse(json!({"limits": {"max_tcp_connections_per_source": 4}})).unwrap();
        assert_eq!(s.limits.max_tcp_connections_per_source, 4);
        for v in [json!(0), json!(-3), json!("lots"), json!(2_000_000)] {
            let doc = json!({"limits": {"max_tcp_connections_per_source": v}});
            let errors = error_paths(doc);
            assert!(
                errors.contains("limits.max_tcp_connections_per_source"),
                "{v}: {errors}"
            );
        }
    }

    #[test]
    fn edge_keys_are_validated() {
        for (v, path) in [
            (json!({"workers": -1}), "workers"),
            (json!({"workers": 5000}), "workers"),
            (json!({"shutdown_grace": 7200}), "shutdown_grace"),
            (
                json!({"transport": {"udp_recv_buffer": 10}}),
                "transport.udp_recv_buffer",
            ),
            (
                json!({"transport": {"tcp_idle_timeout": 0}}),
                "transport.tcp_idle_timeout",
            ),
            (
                json!({"transport": {"udp_batch_linger_us": 20_001}}),
                "transport.udp_batch_linger_us",
            ),
            (
                json!({"transport": {"tcp_connect": 1}}),
                "transport.tcp_connect",
            ),
            (json!({"transport": 1}), "transport"),
        ] {
            let errors = error_paths(v.clone());
            assert!(errors.contains(path), "{v}: {errors}");
        }
    }
}

#[cfg(test)]
mod media_tests {
    use super::*;

    fn parse(v: Value) -> Result<Settings, ValidationErrors> {
        Settings::from_value(&v, Path::new("/"))
    }

    fn error_paths(v: Value) -> String {
        format!("{:?}", parse(v).expect_err("settings must be rejected"))
    }

    #[test]
    fn media_defaults_to_no_rtpengine() {
        let m = parse(json!({})).unwrap().media;
        assert_eq!(m, Media::default());
        assert!(m.rtpengine.is_empty());
        assert_eq!((m.timeout_ms, m.retries, m.down_secs), (1000, 2, 30));
        assert_eq!(m.on_failure, MediaFailure::Reject);
    }

    #[test]
    fn media_keys_are_read() {
        let m = parse(json!({"media": {
            "rtpengine": [
                {"address": "127.0.0.1:2223", "weight": 3},
                {"address": "[::1]:2224"}
            ],
            "timeout_ms": 250,
            "retries": 0,
            "down_secs": 5,
            "on_failure": "bypass"
        }}))
        .unwrap()
        .media;
        assert_eq!(
            m.rtpengine,
            vec![
                RtpEngine {
                    address: "127.0.0.1:2223".parse().unwrap(),
                    weight: 3
                },
                RtpEngine {
                    address: "[::1]:2224".parse().unwrap(),
                    weight: 1
                },
            ]
        );
        assert_eq!((m.timeout_ms, m.retries, m.down_secs), (250, 0, 5));
        assert_eq!(m.on_failure, MediaFailure::Bypass);
    }

    #[test]
    fn media_keys_are_validated_with_field_paths() {
        let one = |e: Value| json!({"media": {"rtpengine": [e]}});
        for (v, path) in [
            (json!({"media": 1}), "media"),
            (json!({"media": {"rtp": []}}), "media.rtp"),
            (json!({"media": {"rtpengine": {}}}), "media.rtpengine"),
            (json!({"media": {"rtpengine": ["x"]}}), "media.rtpengine.0"),
            (one(json!({})), "media.rtpengine.0.address"),
            (
                one(json!({"address": "localhost:2223"})),
                "media.rtpengine.0.address",
            ),
            (
                one(json!({"address": "127.0.0.1:1", "weight": -1})),
                "media.rtpengine.0.weight",
            ),
            (
                one(json!({"address": "127.0.0.1:1", "weight": 1001})),
                "media.rtpengine.0.weight",
            ),
            (
                one(json!({"address": "127.0.0.1:1", "port": 1})),
                "media.rtpengine.0.port",
            ),
            (
                json!({"media": {"rtpengine": [
                    {"address": "127.0.0.1:1"}, {"address": "127.0.0.1:1"}
                ]}}),
                "media.rtpengine.1.address",
            ),
            (
                one(json!({"address": "127.0.0.1:1", "weight": 0})),
                "media.rtpengine",
            ),
            (json!({"media": {"timeout_ms": 0}}), "media.timeout_ms"),
            (json!({"media": {"timeout_ms": 60_001}}), "media.timeout_ms"),
            (json!({"media": {"retries": 11}}), "media.retries"),
            (json!({"media": {"down_secs": -1}}), "media.down_secs"),
            (json!({"media": {"on_failure": "drop"}}), "media.on_failure"),
        ] {
            let errors = error_paths(v.clone());
            assert!(errors.contains(path), "{v}: {errors}");
        }
    }
}

#[cfg(test)]
mod dns_tests {
    use super::*;

    fn parse(v: Value) -> Result<Settings, ValidationErrors> {
        Settings::from_value(&v, Path::new("/"))
    }

    #[test]
    fn dns_defaults_to_the_system_resolver() {
        let d = parse(json!({})).unwrap().dns;
        assert_eq!(d, Dns::default());
        assert!(d.servers.is_empty());
        assert_eq!((d.timeout_ms, d.attempts), (2000, 2));
        assert_eq!(
            (d.negative_ttl_secs, d.min_ttl_secs, d.max_ttl_secs),
            (30, 0, 3600)
        );
    }

    #[test]
    fn dns_keys_are_read() {
        let d = parse(json!({"dns": {
            "servers": ["127.0.0.1:5353", "[::1]:53"],
            "timeout_ms": 500,
            "attempts": 1,
            "negative_ttl_secs": 0,
            "min_ttl_secs": 1,
            "max_ttl_secs": 60
        }}))
        .unwrap()
        .dns;
        assert_eq!(
            d.servers,
            vec![
                "127.0.0.1:5353".parse::<SocketAddr>().unwrap(),
                "[::1]:53".parse().unwrap()
            ]
        );
        assert_eq!((d.timeout_ms, d.attempts), (500, 1));
        assert_eq!(
            (d.negative_ttl_secs, d.min_ttl_secs, d.max_ttl_secs),
            (0, 1, 60)
        );
    }

    #[test]
    fn dns_keys_are_validated_with_field_paths() {
        for (v, path) in [
            (json!({"dns": 1}), "dns"),
            (json!({"dns": {"server": []}}), "dns.server"),
            (json!({"dns": {"servers": "127.0.0.1:53"}}), "dns.servers"),
            (json!({"dns": {"servers": ["127.0.0.1"]}}), "dns.servers.0"),
            (
                json!({"dns": {"servers": ["ns.example:53"]}}),
                "dns.servers.0",
            ),
            (
                json!({"dns": {"servers": ["127.0.0.1:53", "127.0.0.1:53"]}}),
                "dns.servers.1",
            ),
            (json!({"dns": {"timeout_ms": 0}}), "dns.timeout_ms"),
            (json!({"dns": {"timeout_ms": 60_001}}), "dns.timeout_ms"),
            (json!({"dns": {"attempts": 0}}), "dns.attempts"),
            (json!({"dns": {"attempts": 11}}), "dns.attempts"),
            (
                json!({"dns": {"negative_ttl_secs": -1}}),
                "dns.negative_ttl_secs",
            ),
            (json!({"dns": {"min_ttl_secs": 86_401}}), "dns.min_ttl_secs"),
            (
                json!({"dns": {"max_ttl_secs": 604_801}}),
                "dns.max_ttl_secs",
            ),
            (
                json!({"dns": {"min_ttl_secs": 10, "max_ttl_secs": 5}}),
                "dns.min_ttl_secs",
            ),
        ] {
            let errors = format!("{:?}", parse(v.clone()).expect_err("must be rejected"));
            assert!(errors.contains(path), "{v}: {errors}");
        }
    }
}

#[cfg(test)]
mod cluster_tests {
    use super::*;

    fn parse(v: Value) -> Result<Settings, ValidationErrors> {
        Settings::from_value(&v, Path::new("/"))
    }

    fn minimal() -> Value {
        json!({"cluster": {"node_id": "edge-a", "redis": ["redis://127.0.0.1:6379"],
                           "secret": "0123456789abcdef"}})
    }

    #[test]
    fn absent_means_one_node_alone() {
        assert_eq!(parse(json!({})).unwrap().cluster, None);
    }

    #[test]
    fn defaults_of_a_minimal_cluster() {
        let c = parse(minimal()).unwrap().cluster.unwrap();
        assert_eq!(c.node_id, "edge-a");
        assert_eq!(c.redis, ["redis://127.0.0.1:6379"]);
        assert_eq!((c.lease_secs, c.timeout_ms), (15, 250));
        assert_eq!(c.key_prefix, "trunkstore:");
        assert_eq!(c.store, DocumentStore::Files);
        assert_eq!(c.secret.expose(), "0123456789abcdef");
        assert_eq!((c.password, c.username, c.tls_ca_file), (None, None, None));
    }

    #[test]
    fn bad_members_name_their_path_and_never_echo_secrets() {
        let with = |k: &str, v: Value| {
            let mut m = minimal();
            m["cluster"][k] = v;
            m
        };
        let without = |k: &str| {
            let mut m = minimal();
            m["cluster"].as_object_mut().unwrap().remove(k);
            m
        };
        for (v, path) in [
            (json!({"cluster": 1}), "cluster"),
            (with("nodes", json!(1)), "cluster.nodes"),
            (without("node_id"), "cluster.node_id"),
            (with("node_id", json!("a b")), "cluster.node_id"),
            (without("redis"), "cluster.redis"),
            (with("redis", json!([])), "cluster.redis"),
            (with("redis", json!(["http://x"])), "cluster.redis.0"),
            (
                with("redis", json!(["redis://a", "redis://a"])),
                "cluster.redis.1",
            ),
            (without("secret"), "cluster.secret"),
            (with("secret", json!("short")), "cluster.secret"),
            (with("lease_secs", json!(2)), "cluster.lease_secs"),
            (with("timeout_ms", json!(0)), "cluster.timeout_ms"),
            (with("store", json!("etcd")), "cluster.store"),
            (
                with("tls_ca_file", json!("/nonexistent.pem")),
                "cluster.tls_ca_file",
            ),
        ] {
            let e = parse(v.clone()).unwrap_err();
            assert!(e.to_string().contains(path), "{v}: {e}");
        }
        let e = parse(with("secret", json!("tooshort-secret"))).unwrap_err();
        assert!(!e.to_string().contains("tooshort-secret"), "{e}");
        let e = parse(with("redis", json!(["http://user:hunter22@x"]))).unwrap_err();
        assert!(!e.to_string().contains("hunter22"), "{e}");
        let c = parse(with("store", json!("redis")))
            .unwrap()
            .cluster
            .unwrap();
        assert_eq!(c.store, DocumentStore::Redis);
        let c = parse(with("password", json!("pw-123")))
            .unwrap()
            .cluster
            .unwrap();
        assert!(!format!("{c:?}").contains("pw-123"));
    }
}
