//! Bindings of password servers that REGISTER (behaviour.md §4.2, §5.4): the registrar
//! of RFC 3261 §10.3 as plain data on the core's clock. No message is read or written
//! here (`register` does that); this module decides what a REGISTER changes, where a
//! binding is reached, when it expires, and when its keep-alives have failed.
//!
//! A binding is always reached at the address its REGISTER came from (the flow:
//! address, port and transport, RFC 5626's idea without its headers), never at the
//! address its Contact names: the Contact of a PBX behind NAT names a private address,
//! and a Contact is a header someone sent us (the trust rules: only the proxy's own
//! routing decides where a message goes). The Contact gives the Request-URI only.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dashmap::DashMap;
use trunkstore_sip::nameaddr::NameAddr;
use trunkstore_sip::scan::split_list;
use trunkstore_sip::uri::Uri;

use crate::keys::TxKey;
use crate::types::{Peer, Transport};

/// How long the final answer to an authenticated REGISTER is kept for its
/// retransmissions: 64·T1 at the default T1, as a server transaction's timer J.
const ANSWER_KEPT: Duration = Duration::from_secs(32);

/// How often the registrar looks for expired bindings and due keep-alives.
pub(crate) const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// The `registrar` settings, in the units the registrar uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrarConfig {
    /// Shortest expiry accepted (423 below it), seconds.
    pub min_expires: u32,
    /// Longest expiry granted, seconds.
    pub max_expires: u32,
    /// Expiry when the REGISTER gives none, seconds.
    pub default_expires: u32,
    /// Most bindings per address of record; a new one past it replaces the oldest.
    pub max_contacts: usize,
    /// Keep-alives to bindings behind NAT; `None`: none are sent.
    pub keepalive_interval: Option<Duration>,
    /// Unanswered keep-alive OPTIONS in a row before a binding is dropped.
    pub keepalive_failures: u32,
}

impl Default for RegistrarConfig {
    fn default() -> Self {
        RegistrarConfig::from(&trunkstore_config::Registrar::default())
    }
}

impl From<&trunkstore_config::Registrar> for RegistrarConfig {
    fn from(r: &trunkstore_config::Registrar) -> Self {
        RegistrarConfig {
            min_expires: r.min_expires,
            max_expires: r.max_expires,
            default_expires: r.default_expires,
            max_contacts: r.max_contacts as usize,
            keepalive_interval: trunkstore_routing::secs(r.keepalive_interval),
            keepalive_failures: r.keepalive_failures,
        }
    }
}

/// The Contacts of a REGISTER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Contacts {
    /// No Contact: the client asks for its bindings.
    Query,
    /// `Contact: *` (valid only with `Expires: 0`): remove every binding.
    Wildcard,
    /// Add, refresh or remove these.
    List(Vec<ContactReq>),
}

/// One Contact of a REGISTER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ContactReq {
    /// The URI, without angle brackets or header parameters.
    pub uri: String,
    /// Its `expires` parameter.
    pub expires: Option<u32>,
}

/// Why a REGISTER's Contacts cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ContactError {
    /// Not a `name-addr`/`addr-spec` with a SIP URI whose host the proxy can reach.
    Unreadable,
    /// `*` with other Contacts, or with an expiry other than 0.
    BadWildcard,
}

/// Reads the Contact header values of a REGISTER (`values`: one per header line; a line
/// may hold several, comma-separated).
pub(crate) fn parse_contacts<'a>(
    values: impl Iterator<Item = &'a [u8]>,
    header_expires: Option<u32>,
) -> Result<Contacts, ContactError> {
    let mut list = Vec::new();
    let mut wildcard = false;
    for value in values {
        for item in split_list(value) {
            let item = item.value;
            if item.is_empty() {
                continue;
            }
            if item == b"*" {
                wildcard = true;
                continue;
            }
            list.push(parse_contact(item)?);
        }
    }
    if wildcard {
        return if list.is_empty() && header_expires == Some(0) {
            Ok(Contacts::Wildcard)
        } else {
            Err(ContactError::BadWildcard)
        };
    }
    Ok(if list.is_empty() {
        Contacts::Query
    } else {
        Contacts::List(list)
    })
}

fn parse_contact(item: &[u8]) -> Result<ContactReq, ContactError> {
    let na = NameAddr::parse(item).map_err(|_| ContactError::Unreadable)?;
    let uri = na.sip_uri().ok_or(ContactError::Unreadable)?;
    if uri.host().is_none() {
        return Err(ContactError::Unreadable);
    }
    let expires = match na.params().value(b"expires") {
        Some(v) => Some(parse_seconds(v).ok_or(ContactError::Unreadable)?),
        None => None,
    };
    let text = std::str::from_utf8(uri.as_bytes()).map_err(|_| ContactError::Unreadable)?;
    Ok(ContactReq {
        uri: text.to_string(),
        expires,
    })
}

/// Delta-seconds; larger than `u32` counts as the largest (RFC 3261 §20.19).
fn parse_seconds(v: &[u8]) -> Option<u32> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        std::str::from_utf8(v)
            .ok()?
            .parse::<u64>()
            .map_or(u32::MAX, |n| n.min(u64::from(u32::MAX)) as u32),
    )
}

/// A REGISTER from an authenticated password server, as the registrar needs it.
#[derive(Debug, Clone)]
pub(crate) struct RegisterRequest {
    /// `auth_user@realm` of the server.
    pub aor: Arc<str>,
    pub account: Arc<str>,
    pub server: Arc<str>,
    pub contacts: Contacts,
    /// The `Expires` header.
    pub header_expires: Option<u32>,
    pub call_id: Arc<str>,
    pub cseq: u32,
    /// Where the REGISTER came from: every request for these bindings goes there.
    pub source: Peer,
    pub user_agent: Option<Arc<str>>,
}

/// Why a REGISTER changed nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RegisterError {
    /// 423 Interval Too Brief, with `Min-Expires` this.
    TooBrief(u32),
    /// 400: the same Call-ID with a CSeq not above the stored one (RFC 3261 §10.3 step 7).
    OutOfOrder,
}

/// What a REGISTER did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Registered {
    /// The bindings now, newest first: Contact URI and seconds left.
    pub bindings: Vec<(Arc<str>, u32)>,
    /// It added or refreshed a binding.
    pub added: bool,
    /// It removed a binding (expiry 0, `*`, or the oldest past `max_contacts`).
    pub removed: bool,
}

/// Where a call to a binding goes: the Request-URI's host part comes from the Contact,
/// the datagram goes to the REGISTER's source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BindingTarget {
    /// The Contact's host as written (IPv6 bracketed).
    pub host: Arc<str>,
    /// The Contact's port, if it gave one.
    pub port: Option<u16>,
    /// The Contact URI's parameters (`;transport=tcp;ob`), with their `;`.
    pub params: Arc<str>,
    /// The REGISTER's source.
    pub source: Peer,
}

/// One binding, as shown to operators and kept across restarts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// The server's account.
    pub account: String,
    /// The server's name (`-` without one).
    pub server: String,
    /// `auth_user@realm`.
    pub aor: String,
    /// The Contact URI as registered.
    pub contact: String,
    /// Where the REGISTER came from (where calls go).
    pub source: Peer,
    /// The REGISTER's User-Agent.
    pub user_agent: Option<String>,
    /// Time left.
    pub expires_in: Duration,
    /// The Contact does not name the source (behind NAT): keep-alives are sent.
    pub nat: bool,
    /// The REGISTER's Call-ID and CSeq (the ordering rule of RFC 3261 §10.3).
    pub call_id: String,
    /// See `call_id`.
    pub cseq: u32,
}

/// The final answer to a REGISTER, kept for its retransmissions.
#[derive(Debug, Clone)]
struct Kept {
    response: Bytes,
    /// Only a copy from the same source is a retransmission: anyone else who copied the
    /// branch gets no answer meant for the PBX.
    source: Peer,
    until: Instant,
}

/// A keep-alive to send now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Keepalive {
    /// The binding's source.
    pub to: Peer,
    /// The binding's Contact (the OPTIONS' Request-URI).
    pub contact: Arc<str>,
    /// Names the OPTIONS (its Via branch): its response proves the binding alive.
    pub id: u64,
}

#[derive(Debug, Clone)]
struct Binding {
    contact: Arc<str>,
    target: BindingTarget,
    nat: bool,
    expires: Instant,
    call_id: Arc<str>,
    cseq: u32,
    user_agent: Option<Arc<str>>,
    account: Arc<str>,
    server: Arc<str>,
    ping: Ping,
}

/// A NATed binding's keep-alive position.
#[derive(Debug, Clone, Copy)]
struct Ping {
    next: Instant,
    /// The OPTIONS sent last and not answered yet.
    pending: Option<u64>,
    failures: u32,
}

/// The other nodes' bindings: address of record → (target, expiry), newest first.
type RemoteBindings = std::collections::HashMap<Arc<str>, Vec<(BindingTarget, Instant)>>;

/// Every binding, shared by all workers.
#[derive(Debug)]
pub(crate) struct Registrar {
    cfg: RegistrarConfig,
    /// Bindings per address of record, newest first.
    aors: DashMap<Arc<str>, Vec<Binding>>,
    /// Keep-alives in flight: id → address of record.
    pings: DashMap<u64, Arc<str>>,
    /// Final answers to authenticated REGISTERs, for their retransmissions (a replayed
    /// nonce-count or an equal CSeq would otherwise be refused).
    answered: DashMap<TxKey, Kept>,
    /// The kept answers in the order they expire (they all live `ANSWER_KEPT`), so the
    /// sweep forgets the old ones without scanning the rest.
    answered_order: Mutex<std::collections::VecDeque<(Instant, TxKey)>>,
    /// No binding expires or needs a keep-alive before this: the sweep scans the
    /// bindings only from then on (`None`: nothing to scan).
    next_due: Mutex<Option<Instant>>,
    /// Changes on every change of a binding (persistence writes when it moved).
    generation: AtomicU64,
    /// Moves when a binding only got a new expiry (same Contact, same flow).
    refreshes: AtomicU64,
    next_ping_id: AtomicU64,
    /// When the next sweep is due; the worker that takes the lock does it.
    next_sweep: Mutex<Option<Instant>>,
    /// Bindings made on the other nodes of a cluster (issue 18), by address of record,
    /// newest first: calls reach them after this node's own. Replaced as a whole each
    /// time the edge reads them from Redis; never kept alive, saved or published here.
    remote: arc_swap::ArcSwap<RemoteBindings>,
    /// Anything to sweep (bindings or kept answers): read on every message, so a flag
    /// instead of the maps' own (locking) emptiness checks.
    live: AtomicBool,
}

impl Registrar {
    pub(crate) fn new(cfg: RegistrarConfig) -> Registrar {
        Registrar {
            cfg,
            aors: DashMap::new(),
            pings: DashMap::new(),
            answered: DashMap::new(),
            answered_order: Mutex::new(std::collections::VecDeque::new()),
            next_due: Mutex::new(None),
            generation: AtomicU64::new(0),
            refreshes: AtomicU64::new(0),
            next_ping_id: AtomicU64::new(1),
            next_sweep: Mutex::new(None),
            remote: arc_swap::ArcSwap::default(),
            live: AtomicBool::new(false),
        }
    }

    /// Applies a REGISTER (RFC 3261 §10.3 steps 6 to 8).
    pub(crate) fn register(
        &self,
        req: RegisterRequest,
        now: Instant,
    ) -> Result<Registered, RegisterError> {
        let mut entry = self.aors.entry(req.aor.clone()).or_default();
        let bindings = entry.value_mut();
        bindings.retain(|b| b.expires > now);
        let mut added = false;
        let mut removed = false;
        let mut refreshed = false;
        let applied = (|| {
            match &req.contacts {
                Contacts::Query => {}
                Contacts::Wildcard => {
                    // Step 6 for `*`: a binding of the same Call-ID goes only with a higher CSeq.
                    if bindings
                        .iter()
                        .any(|b| *b.call_id == *req.call_id && req.cseq <= b.cseq)
                    {
                        return Err(RegisterError::OutOfOrder);
                    }
                    removed = !bindings.is_empty();
                    bindings.clear();
                }
                Contacts::List(list) => {
                    let plan = self.plan(bindings, &req, list)?;
                    for (c, expires) in list.iter().zip(plan) {
                        let at = bindings.iter().position(|b| same_uri(&b.contact, &c.uri));
                        let old = at.map(|i| bindings.remove(i));
                        removed |= old.is_some() && expires == 0;
                        if expires > 0 {
                            let new = self.binding(&req, c, expires, now);
                            // Same flow, new expiry: persistence may take its time over it.
                            match old.filter(|o| o.target == new.target) {
                                Some(_) => refreshed = true,
                                None => added = true,
                            }
                            self.due_by(self.due_at(&new));
                            bindings.insert(0, new);
                        }
                    }
                    if bindings.len() > self.cfg.max_contacts {
                        bindings.truncate(self.cfg.max_contacts);
                        removed = true;
                    }
                }
            }
            Ok(())
        })();
        if let Err(e) = applied {
            let empty = bindings.is_empty();
            drop(entry);
            if empty {
                // A first REGISTER refused leaves no empty entry behind.
                self.aors.remove_if(&req.aor, |_, v| v.is_empty());
            }
            return Err(e);
        }
        let listed = bindings
            .iter()
            .map(|b| (b.contact.clone(), secs_left(b.expires, now)))
            .collect();
        let empty = bindings.is_empty();
        drop(entry);
        if empty {
            self.aors.remove_if(&req.aor, |_, v| v.is_empty());
        }
        // After the binding is in: a sweep clearing the flag meanwhile sees it (settle_live).
        self.live.store(true, Ordering::SeqCst);
        if added || removed {
            self.generation.fetch_add(1, Ordering::Relaxed);
        } else if refreshed {
            self.refreshes.fetch_add(1, Ordering::Relaxed);
        }
        Ok(Registered {
            bindings: listed,
            added: added || refreshed,
            removed,
        })
    }

    /// The expiry each Contact gets, checked before anything changes (the update is
    /// all or nothing).
    fn plan(
        &self,
        bindings: &[Binding],
        req: &RegisterRequest,
        list: &[ContactReq],
    ) -> Result<Vec<u32>, RegisterError> {
        let mut out = Vec::with_capacity(list.len());
        for c in list {
            let asked = c
                .expires
                .or(req.header_expires)
                .unwrap_or(self.cfg.default_expires);
            if asked != 0 && asked < self.cfg.min_expires {
                return Err(RegisterError::TooBrief(self.cfg.min_expires));
            }
            let stale = bindings.iter().any(|b| {
                same_uri(&b.contact, &c.uri) && *b.call_id == *req.call_id && req.cseq <= b.cseq
            });
            if stale {
                return Err(RegisterError::OutOfOrder);
            }
            out.push(asked.min(self.cfg.max_expires));
        }
        Ok(out)
    }

    fn binding(
        &self,
        req: &RegisterRequest,
        c: &ContactReq,
        expires: u32,
        now: Instant,
    ) -> Binding {
        let target = target_of(&c.uri, req.source);
        let nat = is_nat(&target, req.source);
        Binding {
            contact: Arc::from(c.uri.as_str()),
            target,
            nat,
            expires: now + Duration::from_secs(u64::from(expires)),
            call_id: req.call_id.clone(),
            cseq: req.cseq,
            user_agent: req.user_agent.clone(),
            account: req.account.clone(),
            server: req.server.clone(),
            ping: Ping {
                next: now + self.cfg.keepalive_interval.unwrap_or_default(),
                pending: None,
                failures: 0,
            },
        }
    }

    /// Where calls for `aor` go now: this node's bindings newest first, then those of the
    /// other nodes of its cluster (newest first) whose Contact is not one of ours.
    pub(crate) fn targets(&self, aor: &str, now: Instant) -> Vec<BindingTarget> {
        let mut out: Vec<BindingTarget> = self.aors.get(aor).map_or_else(Vec::new, |bindings| {
            bindings
                .iter()
                .filter(|b| b.expires > now)
                .map(|b| b.target.clone())
                .collect()
        });
        let remote = self.remote.load();
        if let Some(theirs) = remote.get(aor) {
            for (target, expires) in theirs {
                if *expires > now && !out.iter().any(|t| t == target) {
                    out.push(target.clone());
                }
            }
        }
        out
    }

    /// Live bindings of the other nodes (metrics).
    pub(crate) fn remote_count(&self, now: Instant) -> usize {
        let remote = self.remote.load();
        remote
            .values()
            .map(|l| l.iter().filter(|(_, e)| *e > now).count())
            .sum()
    }

    /// Replaces the other nodes' bindings (their `expires_in` counted from `now`);
    /// unreadable Contacts and expired ones are skipped. Returns how many were taken.
    pub(crate) fn set_remote(&self, theirs: Vec<Registration>, now: Instant) -> usize {
        let mut map = RemoteBindings::new();
        let mut n = 0;
        for r in theirs.into_iter().filter(|r| !r.expires_in.is_zero()) {
            let Ok(Contacts::List(mut list)) =
                parse_contacts(std::iter::once(r.contact.as_bytes()), None)
            else {
                continue;
            };
            let Some(c) = list.pop() else { continue };
            let list = map.entry(Arc::from(r.aor.as_str())).or_default();
            // As many per address of record as this node would keep itself.
            if list.len() < self.cfg.max_contacts {
                list.push((target_of(&c.uri, r.source), now + r.expires_in));
                n += 1;
            }
        }
        for list in map.values_mut() {
            list.sort_by_key(|(_, expires)| std::cmp::Reverse(*expires));
        }
        self.remote.store(Arc::new(map));
        n
    }

    /// Is a sweep due? Takes it for the caller (one worker sweeps at a time).
    pub(crate) fn take_sweep(&self, now: Instant) -> bool {
        let Ok(mut next) = self.next_sweep.try_lock() else {
            return false;
        };
        match *next {
            Some(at) if at > now => false,
            _ => {
                *next = Some(now + SWEEP_EVERY);
                true
            }
        }
    }

    /// Drops expired bindings, and bindings whose keep-alives went unanswered too often;
    /// returns the keep-alives due now. Also forgets answers kept past their time.
    pub(crate) fn sweep(&self, now: Instant) -> Vec<Keepalive> {
        self.forget_answers(now);
        let mut due = Vec::new();
        if !self.scan_due(now) {
            return self.settle_live(due);
        }
        let mut changed = false;
        let mut next: Option<Instant> = None;
        for mut entry in self.aors.iter_mut() {
            let aor = entry.key().clone();
            if let Some(every) = self.cfg.keepalive_interval {
                for b in entry.value_mut().iter_mut().filter(|b| b.nat) {
                    if let Some(k) = self.ping_due(&aor, b, every, now) {
                        due.push(k);
                    }
                }
            }
            let before = entry.value().len();
            entry
                .value_mut()
                .retain(|b| b.expires > now && b.ping.failures < self.cfg.keepalive_failures);
            changed |= entry.value().len() != before;
            for b in entry.value().iter() {
                let at = self.due_at(b);
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        self.aors.retain(|_, v| !v.is_empty());
        if changed {
            self.generation.fetch_add(1, Ordering::Relaxed);
        }
        // Lowered meanwhile by a REGISTER on another worker? Keep the earlier one.
        let mut guard = self.next_due.lock().unwrap_or_else(|p| p.into_inner());
        *guard = match (*guard, next) {
            (Some(g), Some(n)) if g > now => Some(g.min(n)),
            (Some(g), None) if g > now => Some(g),
            _ => next,
        };
        drop(guard);
        self.settle_live(due)
    }

    /// Is a scan of the bindings due (something may expire or need a keep-alive)?
    fn scan_due(&self, now: Instant) -> bool {
        let guard = self.next_due.lock().unwrap_or_else(|p| p.into_inner());
        guard.is_some_and(|at| at <= now)
    }

    /// When the scan must next look at `b`.
    fn due_at(&self, b: &Binding) -> Instant {
        match self.cfg.keepalive_interval {
            Some(_) if b.nat => b.expires.min(b.ping.next),
            _ => b.expires,
        }
    }

    /// Makes the scan look again by `at` at the latest.
    fn due_by(&self, at: Instant) {
        let mut guard = self.next_due.lock().unwrap_or_else(|p| p.into_inner());
        *guard = Some(guard.map_or(at, |g| g.min(at)));
    }

    /// Forgets kept answers past their time (oldest first: no scan of the rest).
    fn forget_answers(&self, now: Instant) {
        let mut order = self
            .answered_order
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        while let Some(&(until, key)) = order.front() {
            if until > now {
                break;
            }
            order.pop_front();
            self.answered.remove_if(&key, |_, k| k.until <= now);
        }
    }

    fn settle_live(&self, due: Vec<Keepalive>) -> Vec<Keepalive> {
        if self.is_empty() {
            self.live.store(false, Ordering::SeqCst);
            // A REGISTER on another worker may have added a binding between the check and
            // the store (it sets the flag after adding): look again, or its keep-alives
            // would wait for the next REGISTER.
            if !self.is_empty() {
                self.live.store(true, Ordering::SeqCst);
            }
        }
        due
    }

    fn is_empty(&self) -> bool {
        self.aors.is_empty() && self.answered.is_empty()
    }

    /// Is there anything for [`Registrar::sweep`] to do?
    pub(crate) fn is_live(&self) -> bool {
        self.live.load(Ordering::Relaxed)
    }

    fn ping_due(
        &self,
        aor: &Arc<str>,
        b: &mut Binding,
        every: Duration,
        now: Instant,
    ) -> Option<Keepalive> {
        if b.ping.next > now {
            return None;
        }
        if let Some(id) = b.ping.pending.take() {
            self.pings.remove(&id);
            b.ping.failures += 1;
            if b.ping.failures >= self.cfg.keepalive_failures {
                // Dropped by this sweep.
                return None;
            }
        }
        b.ping.next = now + every;
        let id = self.next_ping_id.fetch_add(1, Ordering::Relaxed);
        // TCP keep-alives are CRLFs, which get no answer: the connection's own failure
        // (a refused or reset send) is what tells.
        if b.target.source.transport == Transport::Udp {
            b.ping.pending = Some(id);
            self.pings.insert(id, aor.clone());
        }
        Some(Keepalive {
            to: b.target.source,
            contact: b.contact.clone(),
            id,
        })
    }

    /// A response to keep-alive `id` came from `from`: the binding is alive, if it came
    /// from the binding's own source (nobody else can keep a binding up).
    pub(crate) fn keepalive_answered(&self, id: u64, from: SocketAddr) -> bool {
        let Some(aor) = self.pings.get(&id).map(|a| a.value().clone()) else {
            return false;
        };
        let Some(mut bindings) = self.aors.get_mut(&aor) else {
            return false;
        };
        let Some(b) = bindings
            .iter_mut()
            .find(|b| b.ping.pending == Some(id) && b.target.source.addr == from)
        else {
            return false;
        };
        b.ping.pending = None;
        b.ping.failures = 0;
        drop(bindings);
        self.pings.remove(&id);
        true
    }

    /// A send to `peer` failed: its TCP bindings are gone (the PBX must register again
    /// on a new connection); a UDP binding counts one keep-alive failure.
    pub(crate) fn transport_failed(&self, peer: Peer) {
        let mut changed = false;
        for mut entry in self.aors.iter_mut() {
            let before = entry.value().len();
            entry
                .value_mut()
                .retain(|b| !(b.target.source == peer && peer.transport.is_reliable()));
            for b in entry.value_mut().iter_mut() {
                if b.target.source == peer {
                    b.ping.failures += 1;
                }
            }
            changed |= entry.value().len() != before;
        }
        self.aors.retain(|_, v| !v.is_empty());
        if changed {
            self.generation.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Keeps `response` as the answer to REGISTER transaction `key` from `source`, for
    /// its retransmissions.
    pub(crate) fn keep_answer(&self, key: TxKey, source: Peer, response: Bytes, now: Instant) {
        let until = now + ANSWER_KEPT;
        self.answered_order
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back((until, key));
        self.answered.insert(
            key,
            Kept {
                response,
                source,
                until,
            },
        );
        // After the answer is in (see settle_live): the sweep must come to forget it.
        self.live.store(true, Ordering::SeqCst);
    }

    /// The answer kept for a retransmission of REGISTER transaction `key` from `source`.
    pub(crate) fn answer_of(&self, key: TxKey, source: Peer) -> Option<Bytes> {
        let kept = self.answered.get(&key)?;
        (kept.source == source).then(|| kept.response.clone())
    }

    /// Moves when a binding is added, removed or moved to another flow.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// Moves when a binding only got a new expiry.
    pub(crate) fn refresh_generation(&self) -> u64 {
        self.refreshes.load(Ordering::Relaxed)
    }

    /// Every live binding.
    pub(crate) fn list(&self, now: Instant) -> Vec<Registration> {
        let mut out = Vec::new();
        for entry in self.aors.iter() {
            for b in entry.value().iter().filter(|b| b.expires > now) {
                out.push(Registration {
                    account: b.account.to_string(),
                    server: b.server.to_string(),
                    aor: entry.key().to_string(),
                    contact: b.contact.to_string(),
                    source: b.target.source,
                    user_agent: b.user_agent.as_deref().map(str::to_string),
                    expires_in: b.expires.saturating_duration_since(now),
                    nat: b.nat,
                    call_id: b.call_id.to_string(),
                    cseq: b.cseq,
                });
            }
        }
        out.sort_by(|a, b| (&a.aor, b.expires_in).cmp(&(&b.aor, a.expires_in)));
        out
    }

    /// Live bindings per account (metrics).
    pub(crate) fn count_by_account(&self, now: Instant) -> Vec<(String, usize)> {
        let mut counts = std::collections::BTreeMap::<String, usize>::new();
        for entry in self.aors.iter() {
            for b in entry.value().iter().filter(|b| b.expires > now) {
                *counts.entry(b.account.to_string()).or_default() += 1;
            }
        }
        counts.into_iter().collect()
    }

    /// Puts back bindings saved before a restart (their time left counted from `now`);
    /// unreadable Contacts and expired ones are skipped. Returns how many were restored.
    pub(crate) fn restore(&self, saved: Vec<Registration>, now: Instant) -> usize {
        let mut n = 0;
        for r in saved {
            if r.expires_in.is_zero() {
                continue;
            }
            let Ok(Contacts::List(mut list)) =
                parse_contacts(std::iter::once(r.contact.as_bytes()), None)
            else {
                continue;
            };
            let Some(c) = list.pop() else { continue };
            let req = RegisterRequest {
                aor: Arc::from(r.aor.as_str()),
                account: Arc::from(r.account.as_str()),
                server: Arc::from(r.server.as_str()),
                contacts: Contacts::Query,
                header_expires: None,
                call_id: Arc::from(r.call_id.as_str()),
                cseq: r.cseq,
                source: r.source,
                user_agent: r.user_agent.as_deref().map(Arc::from),
            };
            let secs = r.expires_in.as_secs().clamp(1, u64::from(u32::MAX)) as u32;
            let mut b = self.binding(&req, &c, secs, now);
            b.expires = now + r.expires_in;
            let mut entry = self.aors.entry(req.aor.clone()).or_default();
            if entry.len() < self.cfg.max_contacts
                && !entry.iter().any(|x| same_uri(&x.contact, &b.contact))
            {
                entry.push(b);
                n += 1;
            }
        }
        for mut e in self.aors.iter_mut() {
            e.value_mut().sort_by_key(|b| std::cmp::Reverse(b.expires));
        }
        self.live.store(n > 0, Ordering::Relaxed);
        self.due_by(now);
        self.generation.fetch_add(1, Ordering::Relaxed);
        n
    }
}

/// Whole seconds left, at least 1 while the binding lives (a 200 never lists 0).
fn secs_left(expires: Instant, now: Instant) -> u32 {
    let left = expires.saturating_duration_since(now);
    (left.as_secs() + u64::from(left.subsec_nanos() > 0)).min(u64::from(u32::MAX)) as u32
}

/// RFC 3261 §19.1.4 in the parts that matter for telling bindings apart: scheme and host
/// compare without case, the user with it; parameters are compared as written.
fn same_uri(a: &str, b: &str) -> bool {
    match (Uri::parse(a.as_bytes()), Uri::parse(b.as_bytes())) {
        (Ok(x), Ok(y)) => {
            x.scheme() == y.scheme()
                && x.user() == y.user()
                && x.host().map(|h| h.as_bytes().to_ascii_lowercase())
                    == y.host().map(|h| h.as_bytes().to_ascii_lowercase())
                && x.port() == y.port()
                && x.params()
                    .as_bytes()
                    .eq_ignore_ascii_case(y.params().as_bytes())
        }
        _ => a == b,
    }
}

/// The Request-URI parts of a Contact, and the source calls go to.
fn target_of(uri: &str, source: Peer) -> BindingTarget {
    let parsed = Uri::parse(uri.as_bytes()).ok();
    let text = |b: &[u8]| Arc::from(String::from_utf8_lossy(b).as_ref());
    BindingTarget {
        host: parsed
            .as_ref()
            .and_then(|u| u.host())
            .map_or_else(|| Arc::from("invalid"), |h| text(h.as_bytes())),
        port: parsed.as_ref().and_then(|u| u.port()),
        // With their leading `;`.
        params: parsed
            .as_ref()
            .map_or_else(|| Arc::from(""), |u| text(u.params().as_bytes())),
        source,
    }
}

/// Behind NAT (nathelper's tests): the Contact's address is not the REGISTER's source
/// (a private address, another port, or a name the proxy does not resolve).
fn is_nat(target: &BindingTarget, source: Peer) -> bool {
    let host = target.host.trim_start_matches('[').trim_end_matches(']');
    let Ok(ip) = host.parse::<IpAddr>() else {
        return true;
    };
    let port = target.port.unwrap_or(5060);
    SocketAddr::new(ip, port) != source.addr
}

#[cfg(test)]
mod tests;
