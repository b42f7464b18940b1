//! The immutable routing index built from a [`Catalog`].
//!
//! Memory is dominated by DIDs, and most DIDs have no options of their own, so the
//! DID → server → default cascade is resolved **once per server** into a [`RouteInfo`];
//! only DIDs with their own options get a private `RouteInfo`. The DID table maps a packed
//! number to the `u32` index of its `RouteInfo`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use trunkstore_config::numbers::{format_user, normalize};
use trunkstore_config::{
    merged_sip_headers, Account, AuthMethod, CallOptions, CallerId, Carrier, Catalog, Did,
    Document, Failover, FailoverTarget, MediaHandling, NumberFormat, Secret, Server, Settings,
    SipHeader, Source,
};

use crate::addrhash::AddrHash;
use crate::key::pack;
use crate::model::{secs, InboundRoute, Peer, Transport};
use crate::table::DidTable;

/// Index of a server in a [`Snapshot`] (valid for that snapshot only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerId(pub u32);

/// Where inbound calls to a server go (§4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// `auth.ip`, else `options.ip`; `None` for a password server without an address
    /// (reached at its registered contact, if any).
    pub ip: Option<IpAddr>,
    /// `auth.port`, else `options.port`, else 5060 (5061 over TLS).
    pub port: u16,
    /// `options.transport`, else UDP.
    pub transport: Transport,
}

impl Target {
    /// The target as a socket address, when it has an IP.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        self.ip.map(|ip| SocketAddr::new(ip, self.port))
    }

    /// The ip as the host part of a SIP URI (IPv6 bracketed). Formatted once per server
    /// when the snapshot is built, not on every INVITE.
    fn uri_host(&self) -> Option<Arc<str>> {
        self.ip.map(|ip| match ip {
            IpAddr::V6(v6) => Arc::from(format!("[{v6}]")),
            IpAddr::V4(v4) => Arc::from(v4.to_string()),
        })
    }
}

/// What does not depend on the DID: identity, credentials and target of one server.
#[derive(Debug)]
pub struct ServerInfo {
    /// Its id in the snapshot.
    pub id: ServerId,
    /// The account it belongs to.
    pub account: Arc<str>,
    /// The document it is in.
    pub document: Arc<str>,
    /// Position in the document's `servers[]`.
    pub index: usize,
    /// Its name, if it has one.
    pub name: Option<Arc<str>>,
    /// How it authenticates (IP or digest).
    pub auth_method: AuthMethod,
    /// `auth_user` (required for password servers, optional for IP servers).
    pub auth_user: Option<Arc<str>>,
    /// `auth_password` of a password server.
    pub password: Option<Secret>,
    /// Digest realm of a password server: the account's `auth_realm`, else the default.
    pub realm: Arc<str>,
    /// Where calls to it go.
    pub target: Target,
    /// `target.ip` as a SIP URI host (`[v6]` bracketed); `None` when there is no ip.
    pub target_host: Option<Arc<str>>,
    /// `options.enabled` of the server (a DID may also disable itself: see
    /// [`RouteInfo::enabled`]).
    pub enabled: bool,
}

/// Everything needed to route to a DID (or, for the server-level entry, to the server
/// itself), with the cascade already resolved.
#[derive(Debug)]
pub struct RouteInfo {
    /// The server calls to the route go to.
    pub server: Arc<ServerInfo>,
    /// True when this entry was resolved for one DID with its own options; false for the
    /// server-level entry shared by every DID without options.
    pub did_specific: bool,
    /// The Request-URI user's format (§4.3).
    pub inbound_format: NumberFormat,
    /// Seconds to wait before the attempt (0: none), as configured.
    pub delay: u32,
    /// Seconds to wait for a provisional other than 100 (0: none), as configured.
    pub progress_timeout: u32,
    /// Seconds to wait for a 2xx (0: none), as configured.
    pub timeout: u32,
    /// 183 / 1xx with SDP reaches the caller as 180 without body (§4.6).
    pub ignore_early_media: bool,
    /// How media is handled.
    pub media_handling: MediaHandling,
    /// First non-empty failover of DID, then server. Use [`Failover::target`]
    /// (e164 wins over sip).
    pub failover: Option<Arc<Failover>>,
    /// DID or server says so (§5.2).
    pub force_outbound: bool,
    /// Server enabled and DID not disabled.
    pub enabled: bool,
    /// First level that has a caller id: DID, server `options.caller_id`, account (§5.3).
    /// The level is taken whole; a part it leaves out is not changed.
    pub caller_id: Option<Arc<CallerId>>,
    /// First level that has one: DID, server, account (§5.3).
    pub emergency_caller_id: Option<Arc<CallerId>>,
    /// DID, then server, then account; most specific level wins per name (§4.4).
    pub sip_headers: Arc<[SipHeader]>,
    /// The same route as the proxy core reads it, in its final units: built once here,
    /// shared by every call (no per-call conversion or allocation).
    pub inbound: Arc<InboundRoute>,
}

impl RouteInfo {
    /// The Request-URI user for `e164` (the normalised DID) in this route's inbound format.
    pub fn request_user<'a>(&'a self, e164: &'a str) -> &'a str {
        format_user(e164, self.inbound_format, self.server.auth_user.as_deref())
    }

    /// The merged headers as a shared `Arc` (entries that inherit them share one).
    pub fn sip_headers_arc(&self) -> &Arc<[SipHeader]> {
        &self.sip_headers
    }

    /// What the failover does, if any (e164 wins over sip).
    pub fn failover_target(&self) -> Option<FailoverTarget<'_>> {
        self.failover.as_deref().map(Failover::target)
    }
}

/// Per-account data.
#[derive(Debug, Clone)]
pub struct AccountInfo {
    /// `account.trunks`; `None` = unlimited. When several documents of the account set it,
    /// the smallest (most restrictive) wins.
    pub trunks: Option<u32>,
    /// The account's `auth_realm`, else the settings' `default_realm`.
    pub realm: Arc<str>,
}

/// Who sent a packet, by source address alone (§3).
#[derive(Debug, Clone, Copy)]
pub enum SourceMatch<'a> {
    /// One of the settings' carriers (index into `settings.carriers`).
    Carrier {
        /// Its index in `settings.carriers`.
        index: usize,
        /// The carrier.
        carrier: &'a Carrier,
    },
    /// An IP-auth server.
    Server(&'a ServerInfo),
}

/// Carrier trusted sources, most specific first.
#[derive(Debug, Default)]
struct CarrierSources {
    /// `ip:port` sources; the first carrier listing an address wins.
    exact: HashMap<SocketAddr, usize, AddrHash>,
    /// CIDR sources by decreasing prefix length, then carrier order, so the most specific
    /// net wins (carriers are few: a scan is cheaper than a trie here).
    nets: Vec<(IpNet, usize)>,
}

/// An immutable routing index. Build with [`Snapshot::build`]; share with [`crate::Router`].
pub struct Snapshot {
    settings: Arc<Settings>,
    servers: Vec<Arc<ServerInfo>>,
    /// `routes[..servers.len()]` are the server-level entries (by `ServerId`); DID-specific
    /// entries follow.
    routes: Vec<RouteInfo>,
    dids: DidTable,
    /// Numbers too long to pack (more than 17 digits): never E.164, kept for completeness.
    long_dids: HashMap<Box<str>, u32>,
    carriers: CarrierSources,
    /// `settings.carriers[i].name`, shared: naming a packet's carrier costs no allocation.
    carrier_names: Vec<Arc<str>>,
    ip_port: HashMap<SocketAddr, ServerId, AddrHash>,
    ip_only: HashMap<IpAddr, ServerId, AddrHash>,
    /// lower-case realm → lower-case auth_user → password servers.
    by_realm_user: HashMap<Box<str>, HashMap<Box<str>, Vec<ServerId>>>,
    /// lower-case auth_user → password servers in every realm.
    by_user: HashMap<Box<str>, Vec<ServerId>>,
    accounts: HashMap<Box<str>, AccountInfo>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("servers", &self.servers.len())
            .field("routes", &self.routes.len())
            .field("dids", &self.did_count())
            .finish_non_exhaustive()
    }
}

/// IPv4-mapped IPv6 (`::ffff:a.b.c.d`, what a dual-stack socket reports) is the IPv4
/// address for every lookup and every key.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

fn canonical_addr(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(canonical_ip(addr.ip()), addr.port())
}

/// ASCII lower case, borrowing when already lower case (the common case).
fn lower(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(s.to_ascii_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

/// Builds a snapshot; keeps interned per-document strings and per-server data while
/// walking the catalog.
struct Builder<'c> {
    catalog: &'c Catalog,
    snap: Snapshot,
}

impl Snapshot {
    /// Builds the index from a validated catalog. Never touches any live snapshot.
    pub fn build(catalog: &Catalog) -> Snapshot {
        let settings = catalog.settings().clone();
        let did_count: usize = catalog
            .documents()
            .iter()
            .flat_map(|d| &d.servers)
            .map(|s| s.dids.len())
            .sum();
        let carriers = carrier_sources(&settings.carriers);
        let carrier_names = settings
            .carriers
            .iter()
            .map(|c| Arc::from(c.name.as_str()))
            .collect();
        let mut b = Builder {
            catalog,
            snap: Snapshot {
                settings,
                servers: Vec::new(),
                routes: Vec::new(),
                dids: DidTable::with_capacity(did_count),
                long_dids: HashMap::new(),
                carrier_names,
                carriers,
                ip_port: HashMap::default(),
                ip_only: HashMap::default(),
                by_realm_user: HashMap::new(),
                by_user: HashMap::new(),
                accounts: HashMap::new(),
            },
        };
        b.accounts();
        b.servers();
        b.dids();
        b.snap
    }

    /// The settings the snapshot was built with.
    pub fn settings(&self) -> &Arc<Settings> {
        &self.settings
    }

    /// The name of `settings().carriers[index]`, shared.
    pub fn carrier_name(&self, index: usize) -> Option<&Arc<str>> {
        self.carrier_names.get(index)
    }

    /// Number of DIDs indexed.
    pub fn did_count(&self) -> usize {
        self.dids.len() + self.long_dids.len()
    }

    /// Bytes held by the DID hash table itself (the per-DID cost of the index).
    pub fn did_table_bytes(&self) -> usize {
        self.dids.heap_bytes()
    }

    /// Number of resolved route entries (one per server plus one per DID with options).
    pub fn route_count(&self) -> usize {
        self.routes.len()
    }

    /// Route for an already-normalised DID (`+14155551234`, or a short code like `1000`).
    ///
    /// Rare cases stay out of line: a lookup's cost is the cache miss on the DID table,
    /// and the fewer instructions run around it, the more lookups' misses overlap.
    #[inline]
    pub fn did(&self, e164: &str) -> Option<&RouteInfo> {
        let index = match pack(e164) {
            Some(key) => self.dids.get(key)?,
            None => self.long_did(e164)?,
        };
        Some(&self.routes[index as usize])
    }

    /// Route index of a number too long to pack (never E.164): out of line, it is rare.
    #[inline(never)]
    fn long_did(&self, number: &str) -> Option<u32> {
        if self.long_dids.is_empty() {
            return None;
        }
        self.long_dids.get(number).copied()
    }

    /// Route for a number as dialled: normalises it (§2) first. Returns the normalised
    /// number with the route (the Request-URI user is built from it).
    pub fn did_dialled<'n>(&self, dialled: &'n str) -> Option<(Cow<'n, str>, &RouteInfo)> {
        let number = normalize(dialled);
        let route = self.did(&number)?;
        Some((number, route))
    }

    /// A server by id.
    pub fn server(&self, id: ServerId) -> &Arc<ServerInfo> {
        &self.servers[id.0 as usize]
    }

    /// Number of servers.
    pub fn server_count(&self) -> usize {
        self.servers.len()
    }

    /// The server-level route (no DID): for calls from the server (outbound caller id,
    /// headers, enabled, force_outbound) and calls to it without a DID-specific entry.
    pub fn server_route(&self, id: ServerId) -> &RouteInfo {
        &self.routes[id.0 as usize]
    }

    /// Classifies a packet's source (§3): carriers first (exact `ip:port`, then the most
    /// specific CIDR), then an IP-auth server with that exact ip and port, then one with
    /// that ip and no port. `None`: must authenticate by digest.
    pub fn source(&self, addr: SocketAddr) -> Option<SourceMatch<'_>> {
        let addr = canonical_addr(addr);
        if let Some(index) = self.carrier_index(addr) {
            let carrier = &self.settings.carriers[index];
            return Some(SourceMatch::Carrier { index, carrier });
        }
        self.ip_server(addr).map(SourceMatch::Server)
    }

    /// The carrier trusting `addr`, if any (index into `settings().carriers`).
    pub fn carrier_index(&self, addr: SocketAddr) -> Option<usize> {
        let addr = canonical_addr(addr);
        if let Some(&i) = self.carriers.exact.get(&addr) {
            return Some(i);
        }
        let ip = addr.ip();
        self.carriers
            .nets
            .iter()
            .find(|(net, _)| net.contains(&ip))
            .map(|&(_, i)| i)
    }

    /// The IP-auth server at `addr` (exact ip:port first, then ip with any port),
    /// ignoring carriers.
    pub fn ip_server(&self, addr: SocketAddr) -> Option<&ServerInfo> {
        let addr = canonical_addr(addr);
        let id = self
            .ip_port
            .get(&addr)
            .or_else(|| self.ip_only.get(&addr.ip()))?;
        Some(self.server(*id))
    }

    /// Password servers with `auth_user` in `realm`, both case-insensitive (ASCII). Usually
    /// one; several when an account reuses a user name (the proxy tries each password).
    pub fn password_servers(&self, realm: &str, auth_user: &str) -> &[ServerId] {
        self.by_realm_user
            .get(lower(realm).as_ref())
            .and_then(|users| users.get(lower(auth_user).as_ref()))
            .map_or(&[], Vec::as_slice)
    }

    /// Password servers with `auth_user` in any realm (for a realm that matches none).
    pub fn password_servers_any_realm(&self, auth_user: &str) -> &[ServerId] {
        self.by_user
            .get(lower(auth_user).as_ref())
            .map_or(&[], Vec::as_slice)
    }

    /// Is `realm` (case-insensitive) the realm of some password server?
    pub fn is_known_realm(&self, realm: &str) -> bool {
        self.by_realm_user.contains_key(lower(realm).as_ref())
    }

    /// The digest realm to challenge with when the From host is `host`: that host if it is
    /// some account's realm, else the settings' default realm (§5.1).
    pub fn challenge_realm<'a>(&'a self, host: &'a str) -> &'a str {
        if self.is_known_realm(host) {
            host
        } else {
            &self.settings.default_realm
        }
    }

    /// An account's data, by id.
    pub fn account(&self, account: &str) -> Option<&AccountInfo> {
        self.accounts.get(account)
    }

    /// `account.trunks`: `None` = unlimited (also for an unknown account, which has no
    /// servers and so no calls).
    pub fn trunk_limit(&self, account: &str) -> Option<u32> {
        self.accounts.get(account).and_then(|a| a.trunks)
    }
}

fn carrier_sources(carriers: &[Carrier]) -> CarrierSources {
    let mut out = CarrierSources::default();
    for (i, c) in carriers.iter().enumerate() {
        for source in &c.sources {
            match *source {
                Source::Exact(addr) => {
                    out.exact.entry(canonical_addr(addr)).or_insert(i);
                }
                Source::Net(net) => out.nets.push((canonical_net(net), i)),
            }
        }
    }
    // Stable: equal prefix lengths keep carrier order.
    out.nets
        .sort_by_key(|(net, _)| std::cmp::Reverse(net.prefix_len()));
    out
}

/// `::ffff:a.b.c.d/len` (len >= 96) is the IPv4 net `a.b.c.d/(len-96)`.
fn canonical_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => IpNet::new(IpAddr::V4(v4), v6.prefix_len() - 96).unwrap_or(net),
            None => net,
        },
        _ => net,
    }
}

/// The account-level part of the cascade, shared by every server of a document.
struct AccountLevel<'a> {
    account: &'a Account,
    account_id: Arc<str>,
    document_id: Arc<str>,
    realm: Arc<str>,
    caller_id: Option<Arc<CallerId>>,
    emergency_caller_id: Option<Arc<CallerId>>,
}

impl<'c> Builder<'c> {
    fn default_realm(&self) -> Arc<str> {
        Arc::from(self.catalog.settings().default_realm.as_str())
    }

    fn realm_of(&self, account: &Account) -> Arc<str> {
        match &account.auth_realm {
            Some(r) => Arc::from(r.as_str()),
            None => self.default_realm(),
        }
    }

    fn accounts(&mut self) {
        for doc in self.catalog.documents() {
            let realm = self.realm_of(&doc.account);
            let entry = self
                .snap
                .accounts
                .entry(doc.account_id.as_str().into())
                .or_insert(AccountInfo {
                    trunks: doc.account.trunks,
                    realm,
                });
            entry.trunks = match (entry.trunks, doc.account.trunks) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
    }

    fn account_level(&self, doc: &'c Document) -> AccountLevel<'c> {
        AccountLevel {
            account: &doc.account,
            account_id: Arc::from(doc.account_id.as_str()),
            document_id: Arc::from(doc.id.as_str()),
            realm: self.realm_of(&doc.account),
            caller_id: non_empty_caller_id(&doc.account.caller_id),
            emergency_caller_id: non_empty_caller_id(&doc.account.emergency_caller_id),
        }
    }

    /// One `ServerInfo` and one server-level `RouteInfo` per server, plus the source and
    /// credential indexes.
    fn servers(&mut self) {
        for doc in self.catalog.documents() {
            let level = self.account_level(doc);
            for server in &doc.servers {
                let id = ServerId(self.snap.servers.len() as u32);
                let info = Arc::new(server_info(id, server, &level));
                self.index_credentials(server, &info);
                self.index_ip(server, id);
                let route = server_route(info.clone(), server, &level, self.settings_timers());
                self.snap.servers.push(info);
                self.snap.routes.push(route);
            }
        }
    }

    fn settings_timers(&self) -> &trunkstore_config::Timers {
        &self.catalog.settings().timers
    }

    fn index_credentials(&mut self, server: &Server, info: &ServerInfo) {
        if info.auth_method != AuthMethod::Password {
            return;
        }
        let Some(user) = server.auth.user() else {
            return;
        };
        let user: Box<str> = user.to_ascii_lowercase().into();
        let realm: Box<str> = info.realm.to_ascii_lowercase().into();
        self.snap
            .by_realm_user
            .entry(realm)
            .or_default()
            .entry(user.clone())
            .or_default()
            .push(info.id);
        self.snap.by_user.entry(user).or_default().push(info.id);
    }

    fn index_ip(&mut self, server: &Server, id: ServerId) {
        if server.auth.method() != AuthMethod::Ip {
            return;
        }
        let Some(ip) = server.auth.ip().map(canonical_ip) else {
            return;
        };
        // The catalog refuses overlapping IP-auth addresses; first one wins regardless.
        match server.auth.port() {
            Some(port) => self.snap.ip_port.entry(SocketAddr::new(ip, port)),
            None => {
                self.snap.ip_only.entry(ip).or_insert(id);
                return;
            }
        }
        .or_insert(id);
    }

    /// Every DID → the server-level route, or its own route when it has options.
    fn dids(&mut self) {
        let mut server_id = 0u32;
        for doc in self.catalog.documents() {
            let level = self.account_level(doc);
            for server in &doc.servers {
                for did in &server.dids {
                    let route = if did.options == CallOptions::default() {
                        server_id
                    } else {
                        self.did_route(server_id, server, did, &level)
                    };
                    self.insert_did(&did.number, route);
                }
                server_id += 1;
            }
        }
    }

    fn did_route(&mut self, id: u32, server: &Server, did: &Did, level: &AccountLevel) -> u32 {
        let base = &self.snap.routes[id as usize];
        let route = resolve(
            base.server.clone(),
            server,
            Some(did),
            level,
            self.settings_timers(),
            Some(base),
        );
        let index = self.snap.routes.len() as u32;
        self.snap.routes.push(route);
        index
    }

    fn insert_did(&mut self, number: &str, route: u32) {
        let previous = match pack(number) {
            Some(key) => self.snap.dids.insert(key, route),
            None => self.snap.long_dids.insert(number.into(), route),
        };
        debug_assert!(previous.is_none(), "catalog DIDs are unique: {number}");
    }
}

fn non_empty_caller_id(c: &Option<CallerId>) -> Option<Arc<CallerId>> {
    c.as_ref().filter(|c| !c.is_empty()).cloned().map(Arc::new)
}

fn server_info(id: ServerId, server: &Server, level: &AccountLevel) -> ServerInfo {
    let password = match &server.auth {
        trunkstore_config::Auth::Password { password, .. } => Some(password.clone()),
        trunkstore_config::Auth::Ip { .. } => None,
    };
    let target = Target {
        ip: server.target_ip(),
        port: server.target_port(),
        transport: match server.target_transport() {
            trunkstore_config::Transport::Udp => Transport::Udp,
            trunkstore_config::Transport::Tcp => Transport::Tcp,
            trunkstore_config::Transport::Tls => Transport::Tls,
        },
    };
    ServerInfo {
        id,
        account: level.account_id.clone(),
        document: level.document_id.clone(),
        index: server.index,
        name: server.name.as_deref().map(Arc::from),
        auth_method: server.auth.method(),
        auth_user: server.auth.user().map(Arc::from),
        password,
        realm: level.realm.clone(),
        target,
        target_host: target.uri_host(),
        enabled: server.enabled(),
    }
}

fn server_route(
    info: Arc<ServerInfo>,
    server: &Server,
    level: &AccountLevel,
    timers: &trunkstore_config::Timers,
) -> RouteInfo {
    resolve(info, server, None, level, timers, None)
}

/// The cascade for one DID (or none): timers and flags via [`Server::effective`], caller
/// ids and headers here. `base` is the server-level route: shared values are reused from
/// it (same `Arc`) when the DID does not change them, so DID entries stay small.
fn resolve(
    info: Arc<ServerInfo>,
    server: &Server,
    did: Option<&Did>,
    level: &AccountLevel,
    timers: &trunkstore_config::Timers,
    base: Option<&RouteInfo>,
) -> RouteInfo {
    let eff = server.effective(did, timers);
    let did_opts = did.map(|d| &d.options);
    let failover = match (did_opts.and_then(|o| o.failover.as_ref()), base) {
        (None, Some(b)) => b.failover.clone(),
        _ => eff.failover.cloned().map(Arc::new),
    };
    let caller_id = cascade_caller_id(
        did_opts.and_then(|o| o.caller_id.as_ref()),
        base.map(|b| &b.caller_id),
        &server.options.call.caller_id,
        &level.caller_id,
    );
    let emergency_caller_id = cascade_caller_id(
        did_opts.and_then(|o| o.emergency_caller_id.as_ref()),
        base.map(|b| &b.emergency_caller_id),
        &server.options.call.emergency_caller_id,
        &level.emergency_caller_id,
    );
    let sip_headers = match (did_opts.map(|o| o.sip_headers.is_empty()), base) {
        (Some(true), Some(b)) => b.sip_headers.clone(),
        _ => merged_sip_headers(did, server, level.account)
            .into_iter()
            .cloned()
            .collect(),
    };
    let inbound = Arc::new(InboundRoute {
        account: info.account.clone(),
        server: info.name.clone().unwrap_or_else(|| Arc::from("-")),
        enabled: eff.enabled,
        host: info
            .target_host
            .clone()
            .unwrap_or_else(|| Arc::from("invalid")),
        port: info.target.port,
        next_hop: info.target.socket_addr().map(|addr| Peer {
            transport: info.target.transport,
            addr,
        }),
        format: eff.inbound_format,
        auth_user: info.auth_user.clone(),
        document: Some(info.document.clone()),
        delay: secs(eff.delay),
        // `progress_timeout` is at least 1 s by validation.
        progress_timeout: secs(eff.progress_timeout),
        answer_timeout: secs(eff.timeout),
        ignore_early_media: eff.ignore_early_media,
        media: eff.media_handling == MediaHandling::Process,
        sip_headers: Some(sip_headers.clone()).filter(|h| !h.is_empty()),
        failover: failover.clone(),
        force_outbound: eff.force_outbound,
        registered_aor: registered_aor(&info),
    });
    RouteInfo {
        inbound,
        server: info,
        did_specific: did.is_some(),
        inbound_format: eff.inbound_format,
        delay: eff.delay,
        progress_timeout: eff.progress_timeout,
        timeout: eff.timeout,
        ignore_early_media: eff.ignore_early_media,
        media_handling: eff.media_handling,
        failover,
        force_outbound: eff.force_outbound,
        enabled: eff.enabled,
        caller_id,
        emergency_caller_id,
        sip_headers,
    }
}

/// First non-empty caller id of DID, server, account. `base` is the already-resolved
/// server-level value, reused when the DID has none.
fn cascade_caller_id(
    did: Option<&CallerId>,
    base: Option<&Option<Arc<CallerId>>>,
    server: &Option<CallerId>,
    account: &Option<Arc<CallerId>>,
) -> Option<Arc<CallerId>> {
    if let Some(c) = did.filter(|c| !c.is_empty()) {
        return Some(Arc::new(c.clone()));
    }
    if let Some(b) = base {
        return b.clone();
    }
    non_empty_caller_id(server).or_else(|| account.clone())
}

/// The address of record of a password server with no ip (its calls go to its bindings).
fn registered_aor(info: &ServerInfo) -> Option<Arc<str>> {
    if info.auth_method != AuthMethod::Password || info.target.socket_addr().is_some() {
        return None;
    }
    let user = info.auth_user.as_deref()?;
    Some(crate::model::aor(user, &info.realm))
}
