//! Trunk limits across nodes (behaviour.md §9.2, issue 18): the core's side of the holds
//! it asks of the cluster.
//!
//! Sans-IO: the core only queues what the cluster must do, in order, and the edge answers.
//! An initial INVITE of an account with a limit takes its local hold first (it still
//! bounds this node), then queues a [`TrunkOp::Take`] and waits for the [`Verdict`]
//! (`Proxy::handle_trunk_verdict`) before its first attempt. A hold that was asked of the
//! cluster queues a [`TrunkOp::Release`] when it is dropped, whichever way the call ends.
//! Takes and releases share one queue, so the edge sees a hold's release after its take.
//!
//! The set of live cluster holds (hold → account) is what the edge renews and reconciles:
//! every call that is up is in it, granted or let through while Redis was away.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

/// One hold asked of the cluster, unique within this node's process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HoldId(pub u64);

/// The transaction waiting for a verdict (opaque to the edge: give it back as it came).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TrunkKey(pub u128);

/// The cluster's answer to a [`TrunkTake`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Fewer than the limit were held across the cluster: the hold is now one of them.
    Granted,
    /// The cluster's limit is reached: the call is refused as for the local limit.
    Refused,
    /// Redis did not answer (timeout, error, unreachable): the call goes on, counted by
    /// this node only (fail-open).
    Unavailable,
}

/// Take one trunk of `account` across the cluster, if fewer than `limit` are held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkTake {
    /// Give it back with the verdict.
    pub key: TrunkKey,
    /// The hold's identity on this node.
    pub hold: HoldId,
    /// The account (`account.trunks` is per account).
    pub account: Arc<str>,
    /// `account.trunks`.
    pub limit: u32,
}

/// Give back one hold (asked of the cluster before, granted or not yet answered).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkRelease {
    /// The hold's identity on this node.
    pub hold: HoldId,
    /// Its account.
    pub account: Arc<str>,
}

/// What the cluster must do, in the order the core asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrunkOp {
    /// A hold to take.
    Take(TrunkTake),
    /// A hold to give back.
    Release(TrunkRelease),
}

/// Counters of the cluster's trunk verdicts (`/metrics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClusterTrunkStats {
    /// Live holds of this node asked of the cluster.
    pub holds: u64,
    /// Calls let through because Redis did not answer.
    pub fail_open: u64,
    /// Calls refused by the cluster's limit.
    pub refusals: u64,
}

/// Where a linked hold stands with the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Linked, not asked yet (its transaction may still lose a race and be dropped).
    Unasked,
    /// Asked; no verdict yet.
    Waiting,
    /// Granted, or let through (fail-open): live until dropped.
    Live,
    /// Refused: nothing to give back to the cluster.
    Refused,
}

/// A trunk hold's cluster identity; gives the hold back to the cluster when dropped.
#[derive(Debug)]
pub(crate) struct ClusterLink {
    shared: Arc<ClusterTrunks>,
    hold: HoldId,
    account: Arc<str>,
    limit: u32,
    phase: Phase,
}

/// Wakes the edge's cluster task when an operation is queued.
type Waker = Box<dyn Fn() + Send + Sync>;

/// The node's cluster holds and the operations queued for the edge.
#[derive(Default)]
pub(crate) struct ClusterTrunks {
    next: AtomicU64,
    live: Mutex<HashMap<HoldId, Arc<str>>>,
    ops: Mutex<VecDeque<TrunkOp>>,
    waker: OnceLock<Waker>,
    fail_open: AtomicU64,
    refusals: AtomicU64,
}

impl std::fmt::Debug for ClusterTrunks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterTrunks").finish_non_exhaustive()
    }
}

/// A poisoned lock only means another thread panicked holding it; the data (a map or a
/// queue) is still consistent.
fn guard<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ClusterTrunks {
    /// A fresh identity for a hold of `account` (not queued yet).
    pub(crate) fn link(self: &Arc<Self>, account: Arc<str>, limit: u32) -> ClusterLink {
        ClusterLink {
            shared: self.clone(),
            hold: HoldId(self.next.fetch_add(1, Ordering::Relaxed) + 1),
            account,
            limit,
            phase: Phase::Unasked,
        }
    }

    /// Set once by the edge: called (without any lock of the core held by this module)
    /// after each queued operation. Must not block.
    pub(crate) fn set_waker(&self, waker: Waker) {
        let _ = self.waker.set(waker);
    }

    fn push(&self, op: TrunkOp) {
        guard(&self.ops).push_back(op);
        if let Some(w) = self.waker.get() {
            w();
        }
    }

    /// The next operation for the edge, in the order asked.
    pub(crate) fn poll(&self) -> Option<TrunkOp> {
        guard(&self.ops).pop_front()
    }

    /// This node's live cluster holds (renewal, reconciliation), by hold id.
    pub(crate) fn live(&self) -> Vec<(HoldId, Arc<str>)> {
        let mut v: Vec<_> = guard(&self.live)
            .iter()
            .map(|(h, a)| (*h, a.clone()))
            .collect();
        v.sort_by_key(|(h, _)| h.0);
        v
    }

    pub(crate) fn stats(&self) -> ClusterTrunkStats {
        ClusterTrunkStats {
            holds: guard(&self.live).len() as u64,
            fail_open: self.fail_open.load(Ordering::Relaxed),
            refusals: self.refusals.load(Ordering::Relaxed),
        }
    }
}

impl ClusterLink {
    /// Queues the take for the transaction `key`; the hold is live from now on (a
    /// CANCEL before the verdict gives it back).
    pub(crate) fn ask(&mut self, key: TrunkKey) {
        if self.phase != Phase::Unasked {
            return;
        }
        self.phase = Phase::Waiting;
        guard(&self.shared.live).insert(self.hold, self.account.clone());
        self.shared.push(TrunkOp::Take(TrunkTake {
            key,
            hold: self.hold,
            account: self.account.clone(),
            limit: self.limit,
        }));
    }

    pub(crate) fn is_waiting(&self) -> bool {
        matches!(self.phase, Phase::Unasked | Phase::Waiting)
    }

    /// Is this the hold a verdict for `hold` is about, still waiting for it?
    pub(crate) fn waits_for(&self, hold: HoldId) -> bool {
        self.hold == hold && self.phase == Phase::Waiting
    }

    /// The cluster's verdict: granted or fail-open, the hold is live; refused, it was
    /// never added and is forgotten at once (nothing to give back).
    pub(crate) fn decided(&mut self, verdict: Verdict) {
        match verdict {
            Verdict::Granted => self.phase = Phase::Live,
            Verdict::Unavailable => {
                self.shared.fail_open.fetch_add(1, Ordering::Relaxed);
                self.phase = Phase::Live;
            }
            Verdict::Refused => {
                self.shared.refusals.fetch_add(1, Ordering::Relaxed);
                guard(&self.shared.live).remove(&self.hold);
                self.phase = Phase::Refused;
            }
        }
    }

    pub(crate) fn account(&self) -> &str {
        &self.account
    }

    pub(crate) fn limit(&self) -> u32 {
        self.limit
    }
}

impl Drop for ClusterLink {
    fn drop(&mut self) {
        if matches!(self.phase, Phase::Unasked | Phase::Refused) {
            return;
        }
        guard(&self.shared.live).remove(&self.hold);
        self.shared.push(TrunkOp::Release(TrunkRelease {
            hold: self.hold,
            account: self.account.clone(),
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_follows_take_and_only_for_asked_holds() {
        let c: Arc<ClusterTrunks> = Arc::default();
        let acc: Arc<str> = Arc::from("acme");
        drop(c.link(acc.clone(), 2));
        assert_eq!(c.poll(), None, "never asked: nothing to give back");
        let mut l = c.link(acc.clone(), 2);
        l.ask(TrunkKey(7));
        assert_eq!(c.stats().holds, 1);
        let mut refused = c.link(acc.clone(), 2);
        refused.ask(TrunkKey(8));
        refused.decided(Verdict::Refused);
        drop(refused);
        drop(l);
        let ops: Vec<_> = std::iter::from_fn(|| c.poll()).collect();
        assert!(matches!(&ops[0], TrunkOp::Take(t) if t.hold == HoldId(2) && t.key == TrunkKey(7)));
        assert!(matches!(&ops[1], TrunkOp::Take(t) if t.hold == HoldId(3)));
        assert!(matches!(&ops[2], TrunkOp::Release(r) if r.hold == HoldId(2)));
        assert_eq!(ops.len(), 3);
        assert_eq!(
            c.stats(),
            ClusterTrunkStats {
                holds: 0,
                fail_open: 0,
                refusals: 1
            }
        );
    }
}
