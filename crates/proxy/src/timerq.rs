//! A shard's timer queue: one FIFO lane per timer kind, and a heap for the rest.
//!
//! Almost every timer of a kind is armed with the same duration (Timer B is always
//! 64·T1, K always T4, a DID's answer timeout is the same for its calls…), and `now` only
//! moves forward, so each new deadline of a kind is usually at or after the last one:
//! appending to that kind's FIFO keeps it sorted at O(1), with the oldest at the front.
//! Only out-of-order deadlines (retransmit intervals doubling, per-DID timeouts that
//! differ) go to a binary heap. Under load a proxy holds hundreds of thousands of timers
//! (a call arms about ten and most are cancelled lazily, staying queued until they
//! expire); a heap of them costs a cache-missing sift per push and pop, the lanes cost
//! one append and one pop from the front.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::Instant;

use crate::keys::TimerTarget;
use crate::transaction::TimerKind;

/// One scheduled timer. `seq` keeps equal deadlines in scheduling order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Entry {
    pub at: Instant,
    pub seq: u64,
    pub target: TimerTarget,
    pub kind: TimerKind,
}

/// Number of [`TimerKind`] variants (one lane each).
const LANES: usize = TimerKind::Delay as usize + 1;

/// Where the earliest entry is.
#[derive(Clone, Copy)]
enum Source {
    Lane(usize),
    Spill,
}

pub(crate) struct TimerQueue {
    lanes: [VecDeque<Entry>; LANES],
    spill: BinaryHeap<Reverse<Entry>>,
    seq: u64,
}

impl TimerQueue {
    pub fn new() -> TimerQueue {
        TimerQueue {
            lanes: std::array::from_fn(|_| VecDeque::new()),
            spill: BinaryHeap::new(),
            seq: 0,
        }
    }

    pub fn push(&mut self, target: TimerTarget, kind: TimerKind, at: Instant) {
        self.seq += 1;
        let entry = Entry {
            at,
            seq: self.seq,
            target,
            kind,
        };
        let lane = &mut self.lanes[kind as usize];
        if lane.back().is_none_or(|last| last.at <= at) {
            lane.push_back(entry);
        } else {
            self.spill.push(Reverse(entry));
        }
    }

    /// Entries queued, stale ones included.
    pub fn len(&self) -> usize {
        self.spill.len() + self.lanes.iter().map(VecDeque::len).sum::<usize>()
    }

    /// The earliest deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.earliest().map(|(e, _)| e.at)
    }

    /// Removes and returns the earliest entry if it is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<Entry> {
        let (entry, source) = self.earliest()?;
        if entry.at > now {
            return None;
        }
        match source {
            Source::Lane(i) => self.lanes[i].pop_front(),
            Source::Spill => self.spill.pop().map(|Reverse(e)| e),
        }
    }

    /// The smallest of the lane fronts and the heap top, by deadline then scheduling order.
    fn earliest(&self) -> Option<(Entry, Source)> {
        let mut best = self.spill.peek().map(|Reverse(e)| (*e, Source::Spill));
        for (i, lane) in self.lanes.iter().enumerate() {
            if let Some(front) = lane.front() {
                if best.is_none_or(|(b, _)| (front.at, front.seq) < (b.at, b.seq)) {
                    best = Some((*front, Source::Lane(i)));
                }
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::TxKey;
    use std::time::Duration;

    fn drain(q: &mut TimerQueue, now: Instant) -> Vec<(u64, TimerKind)> {
        std::iter::from_fn(|| q.pop_due(now))
            .map(|e| match e.target {
                TimerTarget::Server(TxKey(k)) => (k as u64, e.kind),
                TimerTarget::Branch(..) => unreachable!(),
            })
            .collect()
    }

    #[test]
    fn pops_in_deadline_order_across_lanes_and_out_of_order_pushes() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut q = TimerQueue::new();
        let server = |k| TimerTarget::Server(TxKey(k));
        q.push(server(1), TimerKind::B, ms(32_000));
        q.push(server(2), TimerKind::A, ms(500));
        q.push(server(3), TimerKind::A, ms(1_000));
        // Earlier than the lane's last: goes to the heap, still pops in order.
        q.push(server(4), TimerKind::A, ms(700));
        q.push(server(5), TimerKind::K, ms(5_000));
        q.push(server(6), TimerKind::B, ms(32_000));
        assert_eq!(q.len(), 6);
        assert_eq!(q.next_deadline(), Some(ms(500)));
        assert_eq!(drain(&mut q, ms(499)), vec![]);
        assert_eq!(
            drain(&mut q, ms(5_000)),
            vec![
                (2, TimerKind::A),
                (4, TimerKind::A),
                (3, TimerKind::A),
                (5, TimerKind::K)
            ]
        );
        // Equal deadlines leave in the order they were scheduled.
        assert_eq!(
            drain(&mut q, ms(40_000)),
            vec![(1, TimerKind::B), (6, TimerKind::B)]
        );
        assert_eq!((q.len(), q.next_deadline()), (0, None));
    }

    #[test]
    fn equal_deadlines_of_different_kinds_keep_scheduling_order() {
        let t = Instant::now();
        let mut q = TimerQueue::new();
        q.push(TimerTarget::Server(TxKey(1)), TimerKind::M, t);
        q.push(TimerTarget::Server(TxKey(2)), TimerKind::Deadline, t);
        q.push(TimerTarget::Server(TxKey(3)), TimerKind::A, t);
        assert_eq!(
            drain(&mut q, t),
            vec![
                (1, TimerKind::M),
                (2, TimerKind::Deadline),
                (3, TimerKind::A)
            ]
        );
    }
}
