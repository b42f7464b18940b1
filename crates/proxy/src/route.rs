//! The routing decision for a new out-of-dialog request, and the attempt plan it returns.
//!
//! The core only asks two questions of the routing data, through [`Directory`]: who sent
//! this packet (by source address, never by header, behaviour.md §3), and where does a DID
//! go. The answer for a request is an [`AttemptPlan`]: an ordered list of [`Attempt`]s the
//! core tries one after another. Per-attempt timers and failover rules live on the plan
//! so the routing issues (delay, progress timeout, answer timeout, failover codes) only
//! extend this module and the fields the core already honours.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use trunkstore_config::numbers::{format_user, normalize, NumberFormat};

use crate::Peer;

/// Who sent a packet, by its source address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceClass {
    /// A carrier's trusted source; the carrier's name.
    Carrier(Arc<str>),
    /// An IP-authenticated server (account id, server name).
    Server {
        account: Arc<str>,
        server: Arc<str>,
    },
    Unknown,
}

/// Where calls to one DID go (behaviour.md §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundRoute {
    pub account: Arc<str>,
    pub server: Arc<str>,
    /// `options.enabled`; a disabled server gets 480 for inbound calls.
    pub enabled: bool,
    /// Target host as written in the Request-URI (IPv6 in brackets) and its port.
    pub host: Arc<str>,
    pub port: u16,
    /// Resolved next hop (the core does no DNS); `None`: not reachable (no ip, no
    /// registration), the attempt fails at once.
    pub next_hop: Option<Peer>,
    pub format: NumberFormat,
    pub auth_user: Option<Arc<str>>,
    /// Further targets tried in order when an attempt fails (host, port, next hop): the
    /// hook the failover issue fills from `failover`.
    pub alternates: Vec<(Arc<str>, u16, Option<Peer>)>,
}

/// The routing data the core reads. Implemented by the routing index (an atomically
/// swapped snapshot) and by [`StaticDirectory`] in tests.
pub trait Directory: Send + Sync {
    fn classify_source(&self, source: SocketAddr) -> SourceClass;
    /// Route for a normalised (E.164) DID.
    fn inbound(&self, did: &str) -> Option<Arc<InboundRoute>>;
}

/// A fixed directory: carrier sources and DIDs listed by hand.
#[derive(Debug, Default, Clone)]
pub struct StaticDirectory {
    pub carriers: Vec<(SocketAddr, Arc<str>)>,
    pub servers: Vec<(SocketAddr, Arc<str>, Arc<str>)>,
    pub dids: std::collections::HashMap<String, Arc<InboundRoute>>,
}

impl StaticDirectory {
    pub fn new() -> StaticDirectory {
        StaticDirectory::default()
    }

    pub fn with_carrier(mut self, source: SocketAddr, name: &str) -> StaticDirectory {
        self.carriers.push((source, name.into()));
        self
    }

    pub fn with_did(mut self, did: &str, route: InboundRoute) -> StaticDirectory {
        self.dids.insert(did.to_string(), Arc::new(route));
        self
    }
}

impl Directory for StaticDirectory {
    fn classify_source(&self, source: SocketAddr) -> SourceClass {
        if let Some((_, name)) = self.carriers.iter().find(|(a, _)| *a == source) {
            return SourceClass::Carrier(name.clone());
        }
        if let Some((_, acc, srv)) = self.servers.iter().find(|(a, _, _)| *a == source) {
            return SourceClass::Server {
                account: acc.clone(),
                server: srv.clone(),
            };
        }
        SourceClass::Unknown
    }

    fn inbound(&self, did: &str) -> Option<Arc<InboundRoute>> {
        self.dids.get(did).cloned()
    }
}

/// One try: the Request-URI to send and the hop to send it to, with optional timers the
/// routing issues fill in (the core honours whichever are set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// New Request-URI; `None` keeps the request's.
    pub request_uri: Option<Bytes>,
    /// `None`: the target cannot be reached; the attempt fails at once (as 480).
    pub next_hop: Option<Peer>,
    /// Wait this long before sending (behaviour.md §4.5 `delay`).
    pub delay: Option<Duration>,
    /// Give up (CANCEL, next attempt) if no provisional other than 100 came by then.
    pub progress_timeout: Option<Duration>,
    /// Give up if no 2xx came by then.
    pub answer_timeout: Option<Duration>,
}

impl Attempt {
    pub fn to(request_uri: Option<Bytes>, next_hop: Option<Peer>) -> Attempt {
        Attempt {
            request_uri,
            next_hop,
            delay: None,
            progress_timeout: None,
            answer_timeout: None,
        }
    }
}

/// When a failed attempt is followed by the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailoverRule {
    /// Only on no response / transport error / timers (the default for in-dialog hops).
    Unreachable,
    /// Also on 404, 408, 480 and 5xx (behaviour.md §4.8).
    Default,
    /// On every final failure.
    Any,
}

impl FailoverRule {
    /// Should a final `status` from an attempt move on to the next one?
    pub fn on_status(self, status: u16) -> bool {
        match self {
            FailoverRule::Unreachable => status == 408 || status == 503,
            FailoverRule::Default => matches!(status, 404 | 408 | 480 | 500..=599),
            FailoverRule::Any => status >= 300,
        }
    }
}

/// What to do with a request: the ordered attempts and the rule for moving on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptPlan {
    pub attempts: Vec<Attempt>,
    pub failover: FailoverRule,
    /// For logs and the call record.
    pub did: Option<Arc<str>>,
    pub account: Option<Arc<str>>,
    pub server: Option<Arc<str>>,
}

impl AttemptPlan {
    /// A single attempt, failing over on nothing but unreachability.
    pub fn single(attempt: Attempt) -> AttemptPlan {
        AttemptPlan {
            attempts: vec![attempt],
            failover: FailoverRule::Unreachable,
            did: None,
            account: None,
            server: None,
        }
    }
}

/// The routing outcome for a new out-of-dialog request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Forward(AttemptPlan),
    /// Answer locally with this status and reason.
    Reject(u16, &'static str),
}

/// Inbound routing (behaviour.md §3–4): a request from a carrier's source to one of our
/// DIDs goes to the DID's server.
pub fn decide(
    dir: &dyn Directory,
    source: SocketAddr,
    request_user: Option<&[u8]>,
    is_invite: bool,
) -> Decision {
    match dir.classify_source(source) {
        SourceClass::Carrier(_) => inbound(dir, request_user, is_invite),
        // Outbound routing and digest auth arrive with later issues.
        SourceClass::Server { .. } => Decision::Reject(403, "Forbidden"),
        SourceClass::Unknown => Decision::Reject(403, "Forbidden"),
    }
}

fn inbound(dir: &dyn Directory, request_user: Option<&[u8]>, is_invite: bool) -> Decision {
    let Some(user) = request_user.and_then(|u| std::str::from_utf8(u).ok()) else {
        return Decision::Reject(404, "Not Found");
    };
    let did = normalize(user);
    let Some(route) = dir.inbound(&did) else {
        return Decision::Reject(404, "Not Found");
    };
    if !route.enabled && is_invite {
        return Decision::Reject(480, "Temporarily Unavailable");
    }
    let user = format_user(&did, route.format, route.auth_user.as_deref());
    let mut attempts = Vec::with_capacity(1 + route.alternates.len());
    attempts.push(Attempt::to(
        Some(inbound_request_uri(user, &route.host, route.port)),
        route.next_hop,
    ));
    for (host, port, hop) in &route.alternates {
        attempts.push(Attempt::to(
            Some(inbound_request_uri(user, host, *port)),
            *hop,
        ));
    }
    AttemptPlan {
        attempts,
        failover: FailoverRule::Default,
        did: Some(Arc::from(&*did)),
        account: Some(route.account.clone()),
        server: Some(route.server.clone()),
    }
    .into()
}

impl From<AttemptPlan> for Decision {
    fn from(p: AttemptPlan) -> Decision {
        Decision::Forward(p)
    }
}

/// `sip:<user>@<host>:<port>` in one allocation.
fn inbound_request_uri(user: &str, host: &str, port: u16) -> Bytes {
    let mut v = Vec::with_capacity(4 + user.len() + 1 + host.len() + 6);
    v.extend_from_slice(b"sip:");
    v.extend_from_slice(user.as_bytes());
    v.push(b'@');
    v.extend_from_slice(host.as_bytes());
    v.push(b':');
    let mut buf = [0u8; 5];
    v.extend_from_slice(crate::util::u16_decimal(port, &mut buf));
    Bytes::from(v)
}

/// The routing index is the production [`Directory`]: each call reads the current
/// snapshot (an atomic load; a reload swaps it without touching calls in progress).
impl Directory for trunkstore_routing::Router {
    fn classify_source(&self, source: SocketAddr) -> SourceClass {
        use trunkstore_routing::SourceMatch;
        match self.load().source(source) {
            Some(SourceMatch::Carrier { carrier, .. }) => {
                SourceClass::Carrier(Arc::from(carrier.name.as_str()))
            }
            Some(SourceMatch::Server(s)) => SourceClass::Server {
                account: s.account.clone(),
                server: s.name.clone().unwrap_or_else(|| Arc::from("-")),
            },
            None => SourceClass::Unknown,
        }
    }

    fn inbound(&self, did: &str) -> Option<Arc<InboundRoute>> {
        let snap = self.load();
        let r = snap.did(did)?;
        let t = r.server.target;
        let host: Arc<str> = match t.ip {
            Some(std::net::IpAddr::V6(ip)) => Arc::from(format!("[{ip}]")),
            Some(ip) => Arc::from(ip.to_string()),
            None => Arc::from("invalid"),
        };
        Some(Arc::new(InboundRoute {
            account: r.server.account.clone(),
            server: r.server.name.clone().unwrap_or_else(|| Arc::from("-")),
            enabled: r.enabled,
            host,
            port: t.port,
            next_hop: t.socket_addr().map(|addr| Peer {
                transport: crate::Transport::Udp,
                addr,
            }),
            format: r.inbound_format,
            auth_user: r.server.auth_user.clone(),
            alternates: Vec::new(),
        }))
    }
}
