//! Per-source protection (behaviour.md §8): token-bucket rate limits for traffic that is
//! not from a carrier or IP-auth server, bans after repeated auth failures, and scanner
//! user-agent blocking.
//!
//! Decisions:
//! * Everything refused here is **dropped silently**: a banned source, a scanner or a
//!   source over its rate gets no response. Answering costs us packets and tells a
//!   scanner it found a SIP server; an honest client over its rate retransmits (UDP) and
//!   gets through once tokens are back.
//! * Exempt sources (carriers and IP-auth servers: the caller knows, by source address)
//!   skip every check and are never tracked.
//! * A source that authenticated recently ([`Protection::record_success`]) skips the rate
//!   limit for [`TRUSTED_SECS`]: a busy PBX sends many requests per call (INVITE, 407's
//!   ACK, INVITE again, ACK, BYE) and must not be throttled like a stranger. Bans and
//!   user-agent blocking still apply to it.
//! * IPv6 sources are tracked per /64: a single host usually owns a whole /64, so counting
//!   per address would let it rotate addresses forever.
//! * Memory: at most `max_sources` entries. When full, idle entries (no ban, no recent
//!   failure, bucket full again) are swept; if that is not enough, arbitrary non-banned
//!   entries are evicted down to 7/8 of the cap. Sweeps run at most once a second; in
//!   between, sources that find no room share one overflow bucket (same rate and burst),
//!   so a flood of distinct addresses can neither grow the table nor bypass the limit.
//! * Bans are also published as an immutable set swapped whole on each new ban
//!   ([`Protection::is_banned`]): the edge asks it for every datagram and TCP message
//!   before parsing, so the read must not wait on any lock. Bans are rare (each takes
//!   `ban_threshold` failed authentications), so copying the set per ban is cheap; expired
//!   bans are dropped from it at the next copy, which keeps it no larger than the bans in
//!   force plus one.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use dashmap::DashMap;

/// How long a successful authentication exempts its source from the rate limit.
pub(super) const TRUSTED_SECS: u64 = 300;
/// Least time between two sweeps of a full table.
const SWEEP_INTERVAL_MS: u64 = 1000;
/// One request in milli-tokens.
const TOKEN: u64 = 1000;

/// Limits; see `protection` in the settings (config/README.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectionConfig {
    /// Auth failures (403s) within `ban_window_secs` that ban a source; 0 = never ban.
    pub ban_threshold: u32,
    /// Seconds a banned source stays banned.
    pub ban_window_secs: u32,
    /// How long a ban lasts.
    pub ban_secs: u32,
    /// Sustained requests per second per source; 0 = no rate limit.
    pub rate: u32,
    /// Requests a source may send at once before the rate applies.
    pub burst: u32,
    /// Most sources tracked at once.
    pub max_sources: usize,
    /// User-agent substrings that mark a scanner (case-insensitive).
    pub scanner_user_agents: Vec<String>,
}

impl Default for ProtectionConfig {
    fn default() -> Self {
        ProtectionConfig::from(&trunkstore_config::Protection::default())
    }
}

/// From the settings' `protection` object.
impl From<&trunkstore_config::Protection> for ProtectionConfig {
    fn from(p: &trunkstore_config::Protection) -> Self {
        ProtectionConfig {
            ban_threshold: p.ban_threshold,
            ban_window_secs: p.ban_window,
            ban_secs: p.ban_time,
            rate: p.rate,
            burst: p.burst,
            max_sources: p.max_sources as usize,
            scanner_user_agents: p.scanner_user_agents.clone(),
        }
    }
}

/// What to do with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Allow,
    /// Drop without a response.
    Drop(DropReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DropReason {
    /// A request, datagram or TCP message from a banned source.
    Banned,
    Scanner,
    RateLimited,
    /// A TCP connection from a banned source, refused at accept.
    BannedConnection,
    /// A TCP connection over the per-source limit, closed at accept.
    SourceConnections,
}

/// Counters for metrics (monotonic, except the gauges).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProtectionStats {
    /// Failed digest authentications.
    pub auth_failures: u64,
    /// Sources banned so far.
    pub bans_total: u64,
    /// Gauge: sources banned now.
    pub bans_active: usize,
    /// Requests dropped because their source is banned.
    pub dropped_banned: u64,
    /// Requests dropped as a scanner's (User-Agent).
    pub dropped_scanner: u64,
    /// Requests dropped over the unknown-source rate limit.
    pub dropped_rate_limited: u64,
    /// TCP connections refused because their source is banned.
    pub dropped_banned_connections: u64,
    /// TCP connections refused at the per-source limit.
    pub dropped_source_connections: u64,
    /// Gauge: sources tracked now.
    pub tracked_sources: usize,
}

/// Times are milliseconds since the `epoch` given to [`Protection::new`].
#[derive(Debug, Clone, Copy)]
struct SourceState {
    /// Milli-tokens in the bucket as of `refilled`.
    tokens: u64,
    refilled: u64,
    failures: u32,
    window_start: u64,
    /// 0 = not banned.
    banned_until: u64,
    /// Rate-limit exemption after a successful authentication.
    trusted_until: u64,
}

#[derive(Debug, Default)]
struct Counters {
    auth_failures: AtomicU64,
    bans_total: AtomicU64,
    dropped_banned: AtomicU64,
    dropped_scanner: AtomicU64,
    dropped_rate_limited: AtomicU64,
    dropped_banned_connections: AtomicU64,
    dropped_source_connections: AtomicU64,
}

/// What one node of a cluster tells the others about a source (issue 18): every node
/// counts every node's failures, so a password guesser spreading its tries over the nodes
/// is banned after `ban_threshold` of them in all, and a ban made by one node holds on all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityEvent {
    /// A digest auth failure (403) of a source that is not exempt.
    AuthFailure(IpAddr),
    /// `source` is banned for `remaining` from the moment this was written.
    Ban {
        /// The banned source key (an IPv6 source's /64).
        source: IpAddr,
        /// What is left of the ban.
        remaining: Duration,
    },
}

/// Shared by all workers.
#[derive(Debug)]
pub(crate) struct Protection {
    config: ProtectionConfig,
    /// Lower-case scanner patterns.
    scanners: Vec<Vec<u8>>,
    epoch: Instant,
    sources: DashMap<IpAddr, SourceState>,
    /// Banned source keys → end of the ban (ms); see the module doc.
    bans: ArcSwap<HashMap<IpAddr, u64>>,
    /// Bucket shared by the sources that found no room in the table: (tokens, refilled).
    overflow: Mutex<(u64, u64)>,
    last_sweep: AtomicU64,
    counters: Counters,
    /// Events for the other nodes of a cluster, drained by the edge; `None` alone.
    outbox: Option<Mutex<Vec<SecurityEvent>>>,
}

/// Events queued for the other nodes at most (a flood of failures while Redis is away
/// must not grow memory; the bans they lead to are still made here).
const OUTBOX_CAP: usize = 10_000;

impl Protection {
    /// `epoch`: any instant not after the first `now` passed in (times are kept relative
    /// to it).
    pub(crate) fn new(config: ProtectionConfig, epoch: Instant) -> Protection {
        let scanners = config
            .scanner_user_agents
            .iter()
            .filter(|s| !s.is_empty())
            .map(|s| s.as_bytes().to_ascii_lowercase())
            .collect();
        let full = u64::from(config.burst) * TOKEN;
        Protection {
            scanners,
            epoch,
            sources: DashMap::new(),
            bans: ArcSwap::from_pointee(HashMap::new()),
            overflow: Mutex::new((full, 0)),
            last_sweep: AtomicU64::new(0),
            counters: Counters::default(),
            outbox: None,
            config,
        }
    }

    /// Queues failures and bans for the other nodes of a cluster.
    pub(crate) fn share(mut self) -> Protection {
        self.outbox = Some(Mutex::default());
        self
    }

    fn tell_others(&self, event: SecurityEvent) {
        if let Some(outbox) = &self.outbox {
            let mut q = outbox.lock().unwrap_or_else(|e| e.into_inner());
            if q.len() < OUTBOX_CAP {
                q.push(event);
            }
        }
    }

    /// The events queued for the other nodes since the last call.
    pub(crate) fn drain_shared(&self) -> Vec<SecurityEvent> {
        match &self.outbox {
            Some(q) => std::mem::take(&mut *q.lock().unwrap_or_else(|e| e.into_inner())),
            None => Vec::new(),
        }
    }

    /// An event from another node: its failure counts here as one of ours (and may ban
    /// here too), its ban holds here until it ends. Nothing is passed on again. Returns
    /// true when this made a new ban here.
    pub(crate) fn apply_shared(&self, event: SecurityEvent, now: Instant) -> bool {
        match event {
            SecurityEvent::AuthFailure(source) => self.count_failure(source, now).is_some(),
            SecurityEvent::Ban { source, remaining } => {
                let now = self.ms(now);
                let until = now.saturating_add(remaining.as_millis() as u64);
                let key = source_key(source);
                let known = self.bans.load().get(&key).is_some_and(|&end| end >= until);
                if known {
                    return false;
                }
                if let Some(mut s) = self.entry(key, now) {
                    s.banned_until = s.banned_until.max(until);
                    s.failures = 0;
                }
                self.publish_ban(key, until, now);
                self.counters.bans_total.fetch_add(1, Ordering::Relaxed);
                true
            }
        }
    }

    /// Should a new request from `source` be handled? `exempt`: it comes from a carrier
    /// or an IP-auth server. Call once per received request (not per response).
    pub(crate) fn check_request(
        &self,
        source: IpAddr,
        exempt: bool,
        user_agent: Option<&[u8]>,
        now: Instant,
    ) -> Verdict {
        if exempt {
            return Verdict::Allow;
        }
        if self.is_banned(source, now) {
            return self.drop(DropReason::Banned);
        }
        let now = self.ms(now);
        let key = source_key(source);
        if user_agent.is_some_and(|ua| self.is_scanner(ua)) {
            return self.drop(DropReason::Scanner);
        }
        if self.config.rate == 0 || self.take_token(key, now) {
            Verdict::Allow
        } else {
            self.drop(DropReason::RateLimited)
        }
    }

    /// A 403 was sent to `source` (wrong password, unknown user...). Returns true when
    /// this failure bans the source.
    pub(crate) fn record_failure(&self, source: IpAddr, exempt: bool, now: Instant) -> bool {
        self.counters.auth_failures.fetch_add(1, Ordering::Relaxed);
        if exempt || self.config.ban_threshold == 0 {
            return false;
        }
        self.tell_others(SecurityEvent::AuthFailure(source));
        let Some(until) = self.count_failure(source, now) else {
            return false;
        };
        let remaining = Duration::from_millis(until.saturating_sub(self.ms(now)));
        self.tell_others(SecurityEvent::Ban {
            source: source_key(source),
            remaining,
        });
        true
    }

    /// Counts one failure of `source`; `Some(end of the ban)` when it bans the source.
    fn count_failure(&self, source: IpAddr, now: Instant) -> Option<u64> {
        if self.config.ban_threshold == 0 {
            return None;
        }
        let now = self.ms(now);
        let window = u64::from(self.config.ban_window_secs) * 1000;
        let mut s = self.entry(source_key(source), now)?;
        if s.failures == 0 || now.saturating_sub(s.window_start) >= window {
            s.failures = 0;
            s.window_start = now;
        }
        s.failures = s.failures.saturating_add(1);
        if s.failures < self.config.ban_threshold || s.banned_until > now {
            return None;
        }
        s.banned_until = now + u64::from(self.config.ban_secs) * 1000;
        s.failures = 0;
        let until = s.banned_until;
        // The table's entry guard first: publishing never holds both.
        drop(s);
        self.publish_ban(source_key(source), until, now);
        self.counters.bans_total.fetch_add(1, Ordering::Relaxed);
        Some(until)
    }

    /// Adds a ban to the published set, dropping the expired ones.
    fn publish_ban(&self, key: IpAddr, until: u64, now: u64) {
        self.bans.rcu(|current| {
            let mut next: HashMap<IpAddr, u64> = current
                .iter()
                .filter(|(_, &end)| end > now)
                .map(|(&k, &end)| (k, end))
                .collect();
            next.insert(key, until);
            next
        });
    }

    /// `source` authenticated: no rate limit for it for [`TRUSTED_SECS`].
    pub(crate) fn record_success(&self, source: IpAddr, now: Instant) {
        let now = self.ms(now);
        if let Some(mut s) = self.entry(source_key(source), now) {
            s.trusted_until = now + TRUSTED_SECS * 1000;
        }
    }

    /// Is `source` banned now? Lock-free (an atomic load of the published set, and a
    /// lookup only when some ban was ever made): cheap enough for every packet.
    pub(crate) fn is_banned(&self, source: IpAddr, now: Instant) -> bool {
        let bans = self.bans.load();
        if bans.is_empty() {
            return false;
        }
        let now = self.ms(now);
        bans.get(&source_key(source)).is_some_and(|&end| end > now)
    }

    /// Entries of the published ban set, expired ones included (tests of its bound).
    #[cfg(test)]
    pub(crate) fn published_bans(&self) -> usize {
        self.bans.load().len()
    }

    /// Counts something refused outside [`Protection::check_request`] (the edge's
    /// questions); returns the verdict to pass on.
    pub(crate) fn refuse(&self, reason: DropReason) -> Verdict {
        self.drop(reason)
    }

    /// Does this User-Agent value contain a scanner pattern (case-insensitive)?
    pub(crate) fn is_scanner(&self, user_agent: &[u8]) -> bool {
        self.scanners
            .iter()
            .any(|p| contains_ignore_case(user_agent, p))
    }

    /// Counters and gauges (the gauges scan the table: call at scrape time, not per
    /// packet).
    pub(crate) fn stats(&self, now: Instant) -> ProtectionStats {
        let now = self.ms(now);
        let c = &self.counters;
        ProtectionStats {
            auth_failures: c.auth_failures.load(Ordering::Relaxed),
            bans_total: c.bans_total.load(Ordering::Relaxed),
            bans_active: self.bans.load().values().filter(|&&end| end > now).count(),
            dropped_banned: c.dropped_banned.load(Ordering::Relaxed),
            dropped_scanner: c.dropped_scanner.load(Ordering::Relaxed),
            dropped_rate_limited: c.dropped_rate_limited.load(Ordering::Relaxed),
            dropped_banned_connections: c.dropped_banned_connections.load(Ordering::Relaxed),
            dropped_source_connections: c.dropped_source_connections.load(Ordering::Relaxed),
            tracked_sources: self.sources.len(),
        }
    }

    fn drop(&self, reason: DropReason) -> Verdict {
        let counter = match reason {
            DropReason::Banned => &self.counters.dropped_banned,
            DropReason::Scanner => &self.counters.dropped_scanner,
            DropReason::RateLimited => &self.counters.dropped_rate_limited,
            DropReason::BannedConnection => &self.counters.dropped_banned_connections,
            DropReason::SourceConnections => &self.counters.dropped_source_connections,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        Verdict::Drop(reason)
    }

    fn ms(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_millis() as u64
    }

    /// Takes one token from the source's bucket (or the shared overflow bucket when the
    /// table has no room for it).
    fn take_token(&self, key: IpAddr, now: u64) -> bool {
        match self.entry(key, now) {
            Some(mut s) => {
                if s.trusted_until > now {
                    return true;
                }
                let (tokens, refilled) = (s.tokens, s.refilled);
                let (ok, tokens) = self.spend(tokens, refilled, now);
                (s.tokens, s.refilled) = (tokens, now.max(refilled));
                ok
            }
            None => {
                let mut b = self.overflow.lock().unwrap_or_else(|e| e.into_inner());
                let (ok, tokens) = self.spend(b.0, b.1, now);
                *b = (tokens, now.max(b.1));
                ok
            }
        }
    }

    /// Refills a bucket for the time since `refilled`, then spends one token if there is
    /// one. Returns (allowed, tokens left).
    fn spend(&self, tokens: u64, refilled: u64, now: u64) -> (bool, u64) {
        let full = u64::from(self.config.burst) * TOKEN;
        // rate tokens/s = rate milli-tokens/ms.
        let gained = now.saturating_sub(refilled) * u64::from(self.config.rate);
        let tokens = tokens.saturating_add(gained).min(full);
        match tokens.checked_sub(TOKEN) {
            Some(left) => (true, left),
            None => (false, tokens),
        }
    }

    /// The source's entry, created when missing if there is room (see the module doc).
    fn entry(
        &self,
        key: IpAddr,
        now: u64,
    ) -> Option<dashmap::mapref::one::RefMut<'_, IpAddr, SourceState>> {
        if let Some(s) = self.sources.get_mut(&key) {
            return Some(s);
        }
        if self.sources.len() >= self.config.max_sources && !self.sweep(now) {
            return None;
        }
        let fresh = SourceState {
            tokens: u64::from(self.config.burst) * TOKEN,
            refilled: now,
            failures: 0,
            window_start: now,
            banned_until: 0,
            trusted_until: 0,
        };
        Some(self.sources.entry(key).or_insert(fresh))
    }

    /// Makes room in a full table; false if a sweep ran too recently or bans fill it.
    fn sweep(&self, now: u64) -> bool {
        let last = self.last_sweep.load(Ordering::Relaxed);
        if now < last + SWEEP_INTERVAL_MS && last != 0 {
            return false;
        }
        if self
            .last_sweep
            .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return false; // another worker is sweeping
        }
        self.sources.retain(|_, s| !self.is_idle(s, now));
        let target = self.config.max_sources - self.config.max_sources / 8;
        let mut excess = self.sources.len().saturating_sub(target);
        if excess > 0 {
            self.sources.retain(|_, s| {
                if excess > 0 && s.banned_until <= now {
                    excess -= 1;
                    return false;
                }
                true
            });
        }
        self.sources.len() < self.config.max_sources
    }

    /// Nothing would be lost by forgetting this source.
    fn is_idle(&self, s: &SourceState, now: u64) -> bool {
        let window = u64::from(self.config.ban_window_secs) * 1000;
        let refill_ms = if self.config.rate == 0 {
            0
        } else {
            u64::from(self.config.burst) * TOKEN / u64::from(self.config.rate)
        };
        s.banned_until <= now
            && s.trusted_until <= now
            && (s.failures == 0 || now.saturating_sub(s.window_start) >= window)
            && now.saturating_sub(s.refilled) >= refill_ms
    }
}

/// IPv4 (and IPv4-mapped IPv6) per address, IPv6 per /64: the unit bans, rate limits and
/// the edge's per-source connection limit count by.
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
        v4 => v4,
    }
}

/// `needle` is lower case.
fn contains_ignore_case(haystack: &[u8], needle: &[u8]) -> bool {
    needle.len() <= haystack.len()
        && haystack
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
}
