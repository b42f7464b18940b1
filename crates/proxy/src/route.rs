//! The routing decision for a new out-of-dialog request, and the attempt plan it returns.
//!
//! The core only asks two questions of the routing data, through [`Directory`]: who sent
//! this packet (by source address, never by header, behaviour.md §3), and where does a DID
//! go. The answer for a request is an [`AttemptPlan`]: an ordered list of [`Attempt`]s the
//! core tries one after another. Per-attempt timers and failover rules live on the plan
//! so the routing issues (delay, progress timeout, answer timeout, failover codes) only
//! extend this module and the fields the core already honours.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use trunkstore_config::numbers::{format_user, normalize, NumberFormat};
use trunkstore_config::{Failover, SipHeader};

use crate::auth::ChallengeHeaders;
use crate::callerid::IdentityEdit;
pub(crate) use crate::policy::Direction;
pub use crate::policy::FailoverRule;
use crate::registrar::BindingTarget;
use crate::types::Peer;
pub use trunkstore_routing::InboundRoute;

/// Who sent a packet, by its source address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceClass {
    /// A carrier's trusted source; the carrier's name.
    Carrier(Arc<str>),
    /// An IP-authenticated server (account id, server name).
    Server {
        /// The server's account.
        account: Arc<str>,
        /// The server's name (`-` without one).
        server: Arc<str>,
    },
    /// Anyone else: must authenticate by digest.
    Unknown,
}

/// The routing data the core reads. Implemented by the routing index (an atomically
/// swapped snapshot) and by [`StaticDirectory`] in tests.
pub trait Directory: Send + Sync {
    /// Who sent a packet from `source` (by address only, never by header, §3).
    fn classify_source(&self, source: SocketAddr) -> SourceClass;
    /// Route for a normalised (E.164) DID.
    fn inbound(&self, did: &str) -> Option<Arc<InboundRoute>>;
    /// The full routing index, for what only it knows: password servers, carriers,
    /// caller ids (behaviour.md §5). `None` (a hand-made directory): no outbound calls.
    fn snapshot(&self) -> Option<Arc<trunkstore_routing::Snapshot>> {
        None
    }
    /// `account.trunks` (§6): `None` = unlimited.
    fn trunk_limit(&self, _account: &str) -> Option<u32> {
        None
    }
    /// The carrier one of whose gateways is at `addr` (the callee leg of an outbound
    /// call may answer from any of the carrier's sources).
    fn carrier_with_gateway(&self, _addr: SocketAddr) -> Option<Arc<str>> {
        None
    }
}

/// A fixed directory: carrier sources and DIDs listed by hand.
#[derive(Debug, Default, Clone)]
pub struct StaticDirectory {
    /// Carrier sources and the carrier's name.
    pub carriers: Vec<(SocketAddr, Arc<str>)>,
    /// IP-auth servers: source, account, server name.
    pub servers: Vec<(SocketAddr, Arc<str>, Arc<str>)>,
    /// Routes by normalised DID.
    pub dids: std::collections::HashMap<String, Arc<InboundRoute>>,
    /// `account.trunks` per account.
    pub trunks: std::collections::HashMap<String, u32>,
}

impl StaticDirectory {
    /// An empty directory.
    pub fn new() -> StaticDirectory {
        StaticDirectory::default()
    }

    /// Adds a carrier source.
    pub fn with_carrier(mut self, source: SocketAddr, name: &str) -> StaticDirectory {
        self.carriers.push((source, name.into()));
        self
    }

    /// Adds a DID's route.
    pub fn with_did(mut self, did: &str, route: InboundRoute) -> StaticDirectory {
        self.dids.insert(did.to_string(), Arc::new(route));
        self
    }

    /// Sets an account's trunk limit (§6).
    pub fn with_trunks(mut self, account: &str, trunks: u32) -> StaticDirectory {
        self.trunks.insert(account.to_string(), trunks);
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

    fn trunk_limit(&self, account: &str) -> Option<u32> {
        self.trunks.get(account).copied()
    }
}

/// One try: the Request-URI to send and the hop to send it to, with optional timers the
/// routing issues fill in (the core honours whichever are set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Attempt {
    /// New Request-URI; `None` keeps the request's.
    pub(crate) request_uri: Option<Bytes>,
    /// `None`: the target cannot be reached; the attempt fails at once (as 480).
    pub(crate) next_hop: Option<Peer>,
    /// Wait this long before sending (behaviour.md §4.5 `delay`).
    pub(crate) delay: Option<Duration>,
    /// Give up (CANCEL, next attempt) if no provisional other than 100 came by then.
    pub(crate) progress_timeout: Option<Duration>,
    /// Give up if no 2xx came by then.
    pub(crate) answer_timeout: Option<Duration>,
    /// Headers added to the request (behaviour.md §4.4).
    pub(crate) headers: Option<Arc<[SipHeader]>>,
    /// Early media from this target reaches the caller as a plain 180 (§4.6).
    pub(crate) ignore_early_media: bool,
    /// This is the route's failover attempt (for the call record).
    pub(crate) is_failover: bool,
    /// The target is a DNS name (`next_hop` is `None`): the edge resolves it (RFC 3263)
    /// before the attempt goes out, and its hops are tried in order within the attempt.
    pub(crate) resolve: Option<Arc<crate::dns::Target>>,
}

impl Attempt {
    pub(crate) fn to(request_uri: Option<Bytes>, next_hop: Option<Peer>) -> Attempt {
        Attempt {
            request_uri,
            next_hop,
            delay: None,
            progress_timeout: None,
            answer_timeout: None,
            headers: None,
            ignore_early_media: false,
            is_failover: false,
            resolve: None,
        }
    }

    /// The name a TLS server reached by this attempt must prove (RFC 5922 §4): the host
    /// of the configured target when it is a DNS name (not the SRV target, not the
    /// address it resolved to); `None` for an IP literal, which proves its IP.
    pub(crate) fn tls_name(&self) -> Option<crate::types::TlsName> {
        self.resolve
            .as_deref()
            .and_then(|t| crate::types::TlsName::of_host(&t.host))
    }

    /// An attempt to `route` with its timers, headers and early-media rule.
    fn inbound(request_uri: Bytes, next_hop: Option<Peer>, route: &InboundRoute) -> Attempt {
        Attempt {
            request_uri: Some(request_uri),
            next_hop,
            delay: route.delay,
            progress_timeout: route.progress_timeout,
            answer_timeout: route.answer_timeout,
            headers: route.sip_headers.clone(),
            ignore_early_media: route.ignore_early_media,
            is_failover: false,
            resolve: None,
        }
    }
}

/// What to do with a request: the ordered attempts and the rule for moving on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AttemptPlan {
    pub(crate) attempts: Vec<Attempt>,
    pub(crate) failover: FailoverRule,
    /// For logs and the call record.
    pub(crate) did: Option<Arc<str>>,
    pub(crate) account: Option<Arc<str>>,
    pub(crate) server: Option<Arc<str>>,
    pub(crate) document: Option<Arc<str>>,
    /// Tried once, after every attempt failed in a way `failover` accepts (§4.8);
    /// resolved by [`crate::failover::failover_attempts`] only then.
    pub(crate) failover_to: Option<Arc<Failover>>,
    /// Inbound, outbound or on-net (call record, trunk refusal status).
    pub(crate) direction: Direction,
    /// The account whose trunk an initial INVITE must take (§6); `None`: no trunk
    /// (on-net, emergency, not a call).
    pub(crate) trunk: Option<Arc<str>>,
    /// Caller ID rewrite of the request and its responses (§5.3).
    pub(crate) identity: Option<IdentityEdit>,
    /// The request was authenticated by its first `Proxy-Authorization`: the lines for
    /// that realm (ours) are consumed, not forwarded (RFC 3261 §22.3).
    pub(crate) strip_credentials: bool,
    /// `media_handling: process` on the call's server (inbound: the DID's; outbound: the
    /// caller's; on-net: either): its media is anchored at rtpengine (§4.7).
    pub(crate) media: bool,
}

impl AttemptPlan {
    /// A single attempt, failing over on nothing but unreachability.
    pub(crate) fn single(attempt: Attempt) -> AttemptPlan {
        AttemptPlan {
            attempts: vec![attempt],
            failover: FailoverRule::UNREACHABLE,
            did: None,
            account: None,
            server: None,
            document: None,
            failover_to: None,
            direction: Direction::Inbound,
            trunk: None,
            identity: None,
            strip_credentials: false,
            media: false,
        }
    }
}

/// The routing outcome for a new out-of-dialog request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    Forward(AttemptPlan),
    /// Answer locally with this status and reason.
    Reject(u16, &'static str),
    /// 407 with these `Proxy-Authenticate` challenges (§5.1).
    Challenge(ChallengeHeaders),
}

/// Inbound routing of a request from a carrier (§4): the DID's server.
pub(crate) fn inbound(
    dir: &dyn Directory,
    request_user: Option<&[u8]>,
    is_invite: bool,
    rule: FailoverRule,
    bindings: Bindings<'_>,
) -> Decision {
    let Some(user) = request_user else {
        return Decision::Reject(404, "Not Found");
    };
    // §2: user parameters (RFC 4694 `;npdi;rn=`) split off, `%xx` decoded.
    let dialled = match crate::dialled::parse(user) {
        Ok(d) => d,
        Err((status, reason)) => return Decision::Reject(status, reason),
    };
    let did = normalize(&dialled.number);
    let Some(route) = dir.inbound(&did) else {
        return Decision::Reject(404, "Not Found");
    };
    match to_route_with_params(&did, &route, is_invite, rule, dialled.params, bindings) {
        Decision::Forward(mut plan) => {
            // Every call from a carrier takes a trunk of the DID's account (§6).
            plan.trunk = Some(route.account.clone());
            plan.into()
        }
        other => other,
    }
}

/// The plan for a call to `did` (normalised) on `route` with every inbound rule (§4): a
/// call from a carrier, or an on-net call from one of our servers (§5.2). `params`: the
/// dialled user parameters (`;npdi;rn=...`, escaped, with the leading `;`; empty for
/// none): they follow the number onto the Request-URI when the route's format writes a
/// number (§4.3).
pub(crate) fn to_route_with_params(
    did: &str,
    route: &InboundRoute,
    is_invite: bool,
    rule: FailoverRule,
    params: &str,
    bindings: Bindings<'_>,
) -> Decision {
    // §3: a disabled server takes no inbound call, and no failover runs for it.
    if !route.enabled && is_invite {
        return Decision::Reject(480, "Temporarily Unavailable");
    }
    AttemptPlan {
        attempts: attempts_to_route(did, route, params, bindings),
        failover: rule,
        did: Some(Arc::from(did)),
        account: Some(route.account.clone()),
        server: Some(route.server.clone()),
        document: route.document.clone(),
        failover_to: route.failover.clone(),
        direction: Direction::Inbound,
        trunk: None,
        identity: None,
        strip_credentials: false,
        media: route.media,
    }
    .into()
}

/// The attempt for a call to `did` (normalised) on `route`: Request-URI
/// `sip:<user per inbound_format>@<target>` (§4.3), the route's timers and headers.
pub(crate) fn attempt_to_route(did: &str, route: &InboundRoute, params: &str) -> Attempt {
    let user = route_user(did, route, params);
    let uri = inbound_request_uri(&user, &route.host, route.port);
    Attempt::inbound(uri, route.next_hop, route)
}

/// The bindings a registered server can be reached at now, by address of record
/// (newest first): the registrar's, read when a call is routed.
pub(crate) type Bindings<'a> = &'a dyn Fn(&str) -> Vec<BindingTarget>;

/// The attempts of a call to `did` on `route`: one to its target, or, for a password
/// server without an ip (§4.2), one per binding it REGISTERed, newest first, each sent to
/// the address the REGISTER came from with the Contact's host in the Request-URI. With
/// no binding, one attempt that fails at once (and the failover runs).
pub(crate) fn attempts_to_route(
    did: &str,
    route: &InboundRoute,
    params: &str,
    bindings: Bindings<'_>,
) -> Vec<Attempt> {
    let Some(aor) = route.registered_aor.as_deref() else {
        return vec![attempt_to_route(did, route, params)];
    };
    let targets = bindings(aor);
    if targets.is_empty() {
        return vec![attempt_to_route(did, route, params)];
    }
    let user = route_user(did, route, params);
    targets
        .iter()
        .map(|t| Attempt::inbound(binding_request_uri(&user, t), Some(t.source), route))
        .collect()
}

/// `sip:<user>@<Contact host>[:<Contact port>]<Contact parameters>`.
fn binding_request_uri(user: &str, t: &BindingTarget) -> Bytes {
    let mut v = Vec::with_capacity(4 + user.len() + 1 + t.host.len() + 6 + t.params.len());
    v.extend_from_slice(b"sip:");
    v.extend_from_slice(user.as_bytes());
    v.push(b'@');
    v.extend_from_slice(t.host.as_bytes());
    if let Some(port) = t.port {
        v.push(b':');
        let mut buf = [0u8; 5];
        v.extend_from_slice(crate::util::u16_decimal(port, &mut buf));
    }
    v.extend_from_slice(t.params.as_bytes());
    Bytes::from(v)
}

/// The Request-URI user for `did` on `route` (§4.3) with the dialled user parameters
/// kept (§2) — except in the `username` format, where the user is not the number the
/// parameters describe.
fn route_user<'a>(did: &'a str, route: &'a InboundRoute, params: &str) -> Cow<'a, str> {
    let user = format_user(did, route.format, route.auth_user.as_deref());
    if params.is_empty() || route.format == NumberFormat::Username {
        Cow::Borrowed(user)
    } else {
        Cow::Owned(format!("{user}{params}"))
    }
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
        let snap = self.load();
        match snap.source(source) {
            Some(SourceMatch::Carrier { index, carrier }) => SourceClass::Carrier(
                snap.carrier_name(index)
                    .cloned()
                    .unwrap_or_else(|| Arc::from(carrier.name.as_str())),
            ),
            Some(SourceMatch::Server(s)) => SourceClass::Server {
                account: s.account.clone(),
                server: s.name.clone().unwrap_or_else(|| Arc::from("-")),
            },
            None => SourceClass::Unknown,
        }
    }

    fn snapshot(&self) -> Option<Arc<trunkstore_routing::Snapshot>> {
        Some(self.load_full())
    }

    fn trunk_limit(&self, account: &str) -> Option<u32> {
        self.load().trunk_limit(account)
    }

    fn carrier_with_gateway(&self, addr: SocketAddr) -> Option<Arc<str>> {
        let snap = self.load();
        let index = snap.settings().carriers.iter().position(|c| {
            c.gateways.iter().any(|gw| {
                gw.port == addr.port()
                    && matches!(gw.host, trunkstore_config::Host::Ip(ip) if ip == addr.ip())
            })
        })?;
        snap.carrier_name(index).cloned()
    }

    /// The route built with the snapshot: an `Arc` clone, no allocation per call.
    fn inbound(&self, did: &str) -> Option<Arc<InboundRoute>> {
        self.load().did(did).map(|r| r.inbound.clone())
    }
}
