//! Two-way trunk counting per account (behaviour.md §6).
//!
//! One counter per account, shared by every worker: a `DashMap` from account to an
//! `Arc<AtomicU32>`, so taking a trunk is a map read (per-shard lock, briefly) and one
//! compare-and-swap; there is no global lock. A taken trunk is a [`TrunkHold`] that gives
//! it back when dropped, so a call can only ever release what it took, exactly once: the
//! count cannot drift whichever way the call ends (BYE, failure, CANCEL, failover,
//! transport error, maximum duration, or a table entry dropped for any other reason).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use dashmap::DashMap;

pub(crate) use cluster::{ClusterLink, ClusterTrunks};
pub use cluster::{ClusterTrunkStats, HoldId, TrunkKey, TrunkOp, TrunkRelease, TrunkTake, Verdict};

mod cluster;

/// Trunks in use, per account.
#[derive(Debug, Default)]
pub(crate) struct Trunks {
    accounts: DashMap<Arc<str>, Arc<AtomicU32>>,
    /// With `cluster` on (behaviour.md §9.2): the holds asked of the cluster.
    pub(crate) cluster: Option<Arc<ClusterTrunks>>,
}

/// One trunk of one account, held by a call; released on drop.
#[derive(Debug)]
pub(crate) struct TrunkHold {
    counter: Arc<AtomicU32>,
    /// The hold's cluster identity, for an account with a limit when `cluster` is on;
    /// boxed: most holds (single node, `max_calls`) have none.
    pub(crate) cluster: Option<Box<ClusterLink>>,
}

impl Drop for TrunkHold {
    fn drop(&mut self) {
        // Only a hold decrements, and a hold was one increment: never below zero.
        self.counter.fetch_sub(1, Ordering::AcqRel);
        // The cluster's hold, if one was asked for, is given back too (ClusterLink's drop).
    }
}

impl TrunkHold {
    /// One unit of `counter` if fewer than `limit` are held: the same hold serves the
    /// proxy-wide call limit (`limits.max_calls`).
    pub(crate) fn take(counter: Arc<AtomicU32>, limit: u32) -> Option<TrunkHold> {
        counter
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()?;
        Some(TrunkHold {
            counter,
            cluster: None,
        })
    }

    /// Still waiting for the cluster's verdict: no attempt may start.
    pub(crate) fn awaiting_cluster(&self) -> bool {
        self.cluster.as_ref().is_some_and(|c| c.is_waiting())
    }
}

impl Trunks {
    /// Trunks counted on this node; with `cluster` on, limited accounts are also asked
    /// of the cluster.
    pub(crate) fn new(cluster: bool) -> Trunks {
        Trunks {
            accounts: DashMap::new(),
            cluster: cluster.then(Arc::default),
        }
    }

    /// With `cluster` on and a `limit`, gives `hold` its cluster identity (not asked yet:
    /// see [`ClusterTrunks::ask`]). Accounts without a limit never touch the cluster.
    pub(crate) fn link(
        &self,
        mut hold: TrunkHold,
        account: &Arc<str>,
        limit: Option<u32>,
    ) -> TrunkHold {
        if let (Some(c), Some(limit)) = (&self.cluster, limit) {
            hold.cluster = Some(Box::new(c.link(account.clone(), limit)));
        }
        hold
    }

    /// Takes a trunk of `account` if fewer than `limit` are in use (`None`: unlimited,
    /// still counted). `None` back: the limit is reached.
    pub(crate) fn acquire(&self, account: &Arc<str>, limit: Option<u32>) -> Option<TrunkHold> {
        TrunkHold::take(self.counter(account), limit.unwrap_or(u32::MAX))
    }

    /// The account's counter, created on first use (accounts are few and bounded by the
    /// configuration, so entries are never removed).
    fn counter(&self, account: &Arc<str>) -> Arc<AtomicU32> {
        if let Some(c) = self.accounts.get(&**account) {
            return c.value().clone();
        }
        self.accounts
            .entry(account.clone())
            .or_insert_with(|| Arc::new(AtomicU32::new(0)))
            .value()
            .clone()
    }

    /// Trunks in use per account, sorted by account (accounts that ever had a call).
    pub(crate) fn in_use(&self) -> Vec<(String, u32)> {
        let mut v: Vec<(String, u32)> = self
            .accounts
            .iter()
            .map(|e| (e.key().to_string(), e.value().load(Ordering::Acquire)))
            .collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_and_release_on_drop() {
        let t = Trunks::default();
        let acc: Arc<str> = Arc::from("acme");
        let a = t.acquire(&acc, Some(2)).expect("first");
        let b = t.acquire(&acc, Some(2)).expect("second");
        assert!(t.acquire(&acc, Some(2)).is_none());
        assert_eq!(t.in_use(), vec![("acme".to_string(), 2)]);
        drop(a);
        let c = t.acquire(&acc, Some(2)).expect("after release");
        drop((b, c));
        assert_eq!(t.in_use(), vec![("acme".to_string(), 0)]);
        assert!(t.acquire(&acc, Some(0)).is_none());
        let _unlimited = t.acquire(&acc, None).expect("unlimited");
    }

    #[test]
    fn concurrent_acquire_never_exceeds_limit() {
        let t = Arc::new(Trunks::default());
        let acc: Arc<str> = Arc::from("x");
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let (t, acc) = (t.clone(), acc.clone());
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        if let Some(h) = t.acquire(&acc, Some(3)) {
                            assert!(t.in_use()[0].1 <= 3);
                            drop(h);
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(t.in_use(), vec![("x".to_string(), 0)]);
    }
}
