//! Nonce-count tracking (RFC 7616 §3.3): a nonce may be reused with increasing `nc`, and
//! an `nc` seen before for that nonce is a replay.
//!
//! An entry is created only once a response has verified (a wrong password or a forged
//! nonce never gets here), so its size follows successful authentications, not traffic.
//! It is still bounded: `capacity` entries over [`SHARDS`] mutex-protected shards (nonces
//! are spread by their sequence number, so shards fill evenly). Each shard keeps its
//! entries in insertion order; expired ones are dropped from the front as new ones come,
//! and when a shard is full its oldest entry is evicted. An evicted nonce must not become
//! fresh again (a captured request would then replay), so the shard remembers the highest
//! sequence number it evicted: a nonce at or below it that is not in the table is
//! answered as stale, and the client simply retries with a fresh nonce.
//!
//! Counts arriving out of order (parallel requests reusing one nonce over UDP) are
//! accepted once each within a 64-count window below the highest seen, as in IPsec's
//! anti-replay window; anything older is refused.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Shards of the table; a power of two.
pub(super) const SHARDS: usize = 16;
/// Default capacity (entries in total).
pub(crate) const DEFAULT_CAPACITY: usize = 1 << 18;

/// What the table says about one use of a nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NcCheck {
    /// First use of this count: accepted and recorded.
    Fresh,
    /// This count (or one too old to tell) was seen before.
    Replay,
    /// The nonce was evicted under pressure: it can no longer be vouched for.
    Evicted,
}

#[derive(Debug, Clone, Copy)]
struct Counter {
    /// Highest `nc` accepted.
    max: u32,
    /// Bit `i` set: `max - i` was accepted (bit 0 is `max` itself).
    seen: u64,
}

#[derive(Debug, Default)]
struct Shard {
    map: HashMap<u64, Counter>,
    /// `(seq, expires)` in insertion order.
    order: VecDeque<(u64, u64)>,
    /// Highest sequence number evicted before it expired.
    evicted_upto: Option<u64>,
}

/// A bounded, concurrent nonce → nonce-count table.
#[derive(Debug)]
pub(super) struct NonceCounts {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
    evictions: AtomicU64,
}

impl NonceCounts {
    /// A table holding at most `capacity` nonces (rounded up to a multiple of [`SHARDS`]).
    pub(super) fn new(capacity: usize) -> NonceCounts {
        NonceCounts {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
            evictions: AtomicU64::new(0),
        }
    }

    /// Records count `nc` of nonce `seq` (valid until `expires`, wall-clock seconds) at
    /// `now_secs`.
    pub(super) fn check(&self, seq: u64, nc: u32, expires: u64, now_secs: u64) -> NcCheck {
        let shard = &self.shards[(seq as usize) & (SHARDS - 1)];
        // A poisoned lock only means another thread panicked mid-update; the table is
        // still a valid (if conservative) record.
        let mut s = shard.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = s.map.get_mut(&seq) {
            return accept(c, nc);
        }
        if s.evicted_upto.is_some_and(|upto| seq <= upto) {
            return NcCheck::Evicted;
        }
        self.make_room(&mut s, now_secs);
        s.map.insert(seq, Counter { max: nc, seen: 1 });
        s.order.push_back((seq, expires));
        NcCheck::Fresh
    }

    /// Drops expired entries from the front, then the oldest while the shard is full.
    fn make_room(&self, s: &mut Shard, now_secs: u64) {
        while let Some(&(seq, expires)) = s.order.front() {
            let expired = expires <= now_secs;
            if !expired && s.map.len() < self.per_shard {
                break;
            }
            s.order.pop_front();
            s.map.remove(&seq);
            if !expired {
                s.evicted_upto = Some(s.evicted_upto.map_or(seq, |u| u.max(seq)));
                self.evictions.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Nonces tracked.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map_or(0, |s| s.map.len()))
            .sum()
    }

    /// Live entries evicted because the table was full (a metric: non-zero means the
    /// capacity is too small for the authentication rate).
    #[cfg(test)]
    pub(super) fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }
}

/// The sliding-window check for a nonce already in the table.
fn accept(c: &mut Counter, nc: u32) -> NcCheck {
    if nc > c.max {
        let shift = nc - c.max;
        c.seen = if shift >= 64 { 0 } else { c.seen << shift } | 1;
        c.max = nc;
        return NcCheck::Fresh;
    }
    let age = c.max - nc;
    if age >= 64 || c.seen & (1 << age) != 0 {
        return NcCheck::Replay;
    }
    c.seen |= 1 << age;
    NcCheck::Fresh
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_replayed_nc_is_refused_and_next_passes() {
        let t = NonceCounts::new(64);
        assert_eq!(t.check(1, 1, 300, 0), NcCheck::Fresh);
        assert_eq!(t.check(1, 1, 300, 0), NcCheck::Replay);
        assert_eq!(t.check(1, 2, 300, 0), NcCheck::Fresh);
        assert_eq!(t.check(1, 2, 300, 0), NcCheck::Replay);
        assert_eq!(t.check(1, 1, 300, 0), NcCheck::Replay);
        // Another nonce has its own counts.
        assert_eq!(t.check(2, 1, 300, 0), NcCheck::Fresh);
    }

    #[test]
    fn auth_out_of_order_counts_within_window() {
        let t = NonceCounts::new(64);
        assert_eq!(t.check(1, 5, 300, 0), NcCheck::Fresh);
        assert_eq!(t.check(1, 3, 300, 0), NcCheck::Fresh);
        assert_eq!(t.check(1, 3, 300, 0), NcCheck::Replay);
        assert_eq!(t.check(1, 4, 300, 0), NcCheck::Fresh);
        assert_eq!(t.check(1, 100, 300, 0), NcCheck::Fresh);
        // 100 - 36 = 64: outside the window, refused although never seen.
        assert_eq!(t.check(1, 36, 300, 0), NcCheck::Replay);
        assert_eq!(t.check(1, 37, 300, 0), NcCheck::Fresh);
    }

    #[test]
    fn auth_replay_table_is_bounded_and_evicted_nonces_stay_refused() {
        let cap = 1024;
        let t = NonceCounts::new(cap);
        for seq in 0..100_000u64 {
            assert_eq!(t.check(seq, 1, 1_000, 10), NcCheck::Fresh);
        }
        assert!(t.len() <= cap, "{} entries", t.len());
        assert!(t.evictions() > 0);
        // An evicted nonce cannot be replayed as if new.
        assert_eq!(t.check(5, 1, 1_000, 10), NcCheck::Evicted);
        // The newest are still tracked.
        assert_eq!(t.check(99_999, 1, 1_000, 10), NcCheck::Replay);
    }

    #[test]
    fn auth_replay_table_drops_expired_without_eviction() {
        let t = NonceCounts::new(SHARDS * 4);
        for seq in 0..(SHARDS as u64 * 4) {
            t.check(seq, 1, 100, 0);
        }
        // All expired by now: making room for new nonces evicts nothing live.
        for seq in 1000..(1000 + SHARDS as u64 * 4) {
            assert_eq!(t.check(seq, 1, 500, 200), NcCheck::Fresh);
        }
        assert_eq!(t.evictions(), 0);
        assert!(t.len() <= SHARDS * 4);
    }
}
