//! A shard's timer queue: one FIFO lane per timer kind, and a heap for the rest.
//!
//! Almost every timer of a kind is armed with the same duration (Timer B is always
//! 64·T1, K always T4, a DID's answer timeout is the same for its calls…), and `now` only
//! moves forward, so each new deadline of a kind is usually at or after the last one:
//! appending to that kind's FIFO keeps it sorted at O(1), with the oldest at the front.
//! Only out-of-order deadlines (retransmit intervals doubling, per-DID timeouts that
//! differ) go to a binary heap. Under load a proxy holds hundreds of thousands of timers
//! (a call arms about seven and most are cancelled lazily, staying queued until they
//! expire); a heap of them costs a cache-missing sift per push and pop, the lanes cost
//! one append and one pop from the front.
//!
//! A lane is a [`Fifo`] of fixed blocks rather than a `VecDeque`: a lane holds up to
//! minutes of timers (timer C), and a ring buffer that doubles copies all of them at once
//! on the packet path (6 MB at 185 000 entries) and keeps up to twice what it holds. The
//! blocks are recycled as the front empties, so under a steady load a lane neither
//! allocates nor copies.

use std::cell::Cell;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::{Duration, Instant};

use crate::keys::{TimerTarget, TxKey};
use crate::transaction::TimerKind;

/// One due timer, as handed back to the dispatcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub at: Instant,
    pub target: TimerTarget,
    pub kind: TimerKind,
}

/// A queued timer in 32 bytes (an [`Entry`] takes 64): a queue holds several per call
/// for tens of seconds, each written once and read once, so its size is memory traffic.
/// `at` is nanoseconds after the queue's epoch and the key is split in two words (a
/// `u128` would align the whole to 16 bytes). Ordered by deadline, then scheduling order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Slot {
    at: u64,
    seq: u32,
    key: [u64; 2],
    branch: u16,
    kind: TimerKind,
    /// The server side's timer (`branch` unused), not a branch's.
    server: bool,
}

/// Number of [`TimerKind`] variants (one lane each).
const LANES: usize = TimerKind::Delay as usize + 1;

/// How far before the queue's creation deadlines may lie (virtual clocks in tests start
/// anywhere): deadlines are kept as nanoseconds after `created - EPOCH_BEFORE`.
const EPOCH_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);

/// Where the earliest entry is.
#[derive(Clone, Copy)]
enum Source {
    Lane(usize),
    Spill,
}

/// Slots per block of a [`Fifo`] (4 KiB).
const BLOCK: usize = 128;

/// Emptied blocks a lane keeps for reuse; beyond that they are freed (after a burst).
const SPARE_BLOCKS: usize = 4;

/// A FIFO queue of slots in blocks of [`BLOCK`]: appended at the back block, taken from
/// the front block, an emptied front block reused for the back.
#[derive(Default)]
struct Fifo {
    blocks: VecDeque<Box<[Slot]>>,
    /// Next slot to take in the front block.
    head: usize,
    /// Slots written in the back block.
    tail: usize,
    len: usize,
    spare: Vec<Box<[Slot]>>,
}

impl Fifo {
    fn len(&self) -> usize {
        self.len
    }

    fn front(&self) -> Option<&Slot> {
        if self.len == 0 {
            return None;
        }
        self.blocks.front().map(|b| &b[self.head])
    }

    fn back(&self) -> Option<&Slot> {
        if self.len == 0 {
            return None;
        }
        self.blocks.back().map(|b| &b[self.tail - 1])
    }

    fn push_back(&mut self, slot: Slot) {
        if self.blocks.is_empty() || self.tail == BLOCK {
            let block = self
                .spare
                .pop()
                .unwrap_or_else(|| vec![slot; BLOCK].into_boxed_slice());
            self.blocks.push_back(block);
            self.tail = 0;
        }
        if let Some(b) = self.blocks.back_mut() {
            b[self.tail] = slot;
        }
        self.tail += 1;
        self.len += 1;
    }

    fn pop_front(&mut self) -> Option<Slot> {
        let slot = *self.front()?;
        self.head += 1;
        self.len -= 1;
        if self.len == 0 {
            while let Some(b) = self.blocks.pop_front() {
                self.recycle(b);
            }
            (self.head, self.tail) = (0, 0);
        } else if self.head == BLOCK {
            if let Some(b) = self.blocks.pop_front() {
                self.recycle(b);
            }
            self.head = 0;
        }
        Some(slot)
    }

    fn recycle(&mut self, block: Box<[Slot]>) {
        if self.spare.len() < SPARE_BLOCKS {
            self.spare.push(block);
        }
    }
}

pub(crate) struct TimerQueue {
    lanes: [Fifo; LANES],
    /// Each lane's front as its order ([`order`]), [`EMPTY`] for an empty lane: finding
    /// the earliest timer scans this flat array instead of every lane's blocks (that
    /// scan was most of `pop_due`, which runs for every stale timer too).
    heads: [u128; LANES],
    spill: BinaryHeap<Reverse<Slot>>,
    epoch: Instant,
    seq: u32,
    /// The earliest timer's order and place (a lane, or `LANES` for the heap), while
    /// known: a push keeps it (comparing), a pop forgets it. `pop_due` asks for it once
    /// per timer due and once more to find none is, `next_deadline` after every batch:
    /// without it each asked for a scan of every lane.
    earliest: Cell<Option<(u128, usize)>>,
    /// The last `now` asked of `pop_due`, as an offset: it is asked once per timer due
    /// with the same `now`, and the conversion from an `Instant` is not free.
    last_now: Option<(Instant, u64)>,
}

/// A lane's head in [`TimerQueue::heads`] when it has none: above every real order
/// (those fit in 96 bits).
const EMPTY: u128 = u128::MAX;

/// Deadline, then scheduling order, as one number (the order of `(at, seq)`).
#[inline]
fn order(s: &Slot) -> u128 {
    (u128::from(s.at) << 32) | u128::from(s.seq)
}

impl TimerQueue {
    pub(crate) fn new() -> TimerQueue {
        let now = Instant::now();
        TimerQueue {
            lanes: std::array::from_fn(|_| Fifo::default()),
            heads: [EMPTY; LANES],
            spill: BinaryHeap::new(),
            epoch: now.checked_sub(EPOCH_BEFORE).unwrap_or(now),
            seq: 0,
            earliest: Cell::new(None),
            last_now: None,
        }
    }

    pub(crate) fn push(&mut self, target: TimerTarget, kind: TimerKind, at: Instant) {
        // Wraps after 4 billion timers: only the order of equal deadlines could be off,
        // for one wrap.
        self.seq = self.seq.wrapping_add(1);
        let (key, branch, server) = match target {
            TimerTarget::Server(k) => (k, 0, true),
            TimerTarget::Branch(k, i) => (k, i, false),
        };
        let slot = Slot {
            at: self.offset(at),
            seq: self.seq,
            key: [key.0 as u64, (key.0 >> 64) as u64],
            branch,
            kind,
            server,
        };
        let lane = &mut self.lanes[kind as usize];
        let place = if lane.back().is_none_or(|last| last.at <= slot.at) {
            if lane.len() == 0 {
                self.heads[kind as usize] = order(&slot);
            }
            lane.push_back(slot);
            kind as usize
        } else {
            self.spill.push(Reverse(slot));
            LANES
        };
        // Ties keep the known earliest: it was scheduled first.
        if let Some((best, _)) = self.earliest.get() {
            if order(&slot) < best {
                self.earliest.set(Some((order(&slot), place)));
            }
        }
    }

    /// Entries queued, stale ones included.
    pub(crate) fn len(&self) -> usize {
        self.spill.len() + self.lanes.iter().map(Fifo::len).sum::<usize>()
    }

    /// The earliest deadline.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.earliest().map(|(at, _)| self.instant(at))
    }

    /// Removes and returns the earliest entry if it is due at `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<Entry> {
        let (at, source) = self.earliest()?;
        if at > self.now_offset(now) {
            return None;
        }
        self.earliest.set(None);
        let slot = match source {
            Source::Lane(i) => {
                let lane = &mut self.lanes[i];
                let slot = lane.pop_front()?;
                self.heads[i] = lane.front().map_or(EMPTY, order);
                slot
            }
            Source::Spill => self.spill.pop().map(|Reverse(s)| s)?,
        };
        let key = TxKey(u128::from(slot.key[0]) | (u128::from(slot.key[1]) << 64));
        Some(Entry {
            at: self.instant(slot.at),
            target: if slot.server {
                TimerTarget::Server(key)
            } else {
                TimerTarget::Branch(key, slot.branch)
            },
            kind: slot.kind,
        })
    }

    /// [`offset`](Self::offset) of `now`, remembered for the next call with the same `now`.
    fn now_offset(&mut self, now: Instant) -> u64 {
        match self.last_now {
            Some((at, offset)) if at == now => offset,
            _ => {
                let offset = self.offset(now);
                self.last_now = Some((now, offset));
                offset
            }
        }
    }

    /// Nanoseconds after the epoch (0 for anything before it).
    fn offset(&self, at: Instant) -> u64 {
        let d = at.saturating_duration_since(self.epoch);
        u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
    }

    fn instant(&self, offset: u64) -> Instant {
        self.epoch + Duration::from_nanos(offset)
    }

    /// The deadline of the smallest of the lane fronts and the heap top, by deadline then
    /// scheduling order, and where it is.
    fn earliest(&self) -> Option<(u64, Source)> {
        let (best, lane) = match self.earliest.get() {
            Some(known) => known,
            None => {
                let found = self.scan();
                self.earliest.set(Some(found));
                found
            }
        };
        if best == EMPTY {
            return None;
        }
        let source = if lane < LANES {
            Source::Lane(lane)
        } else {
            Source::Spill
        };
        Some(((best >> 32) as u64, source))
    }

    /// The smallest order of the lane heads and the heap top, and where it is (`LANES`
    /// for the heap); [`EMPTY`] when there is no timer.
    fn scan(&self) -> (u128, usize) {
        let mut best = self.spill.peek().map_or(EMPTY, |Reverse(top)| order(top));
        // `LANES` for the heap: a plain index keeps this loop to a compare and two
        // conditional moves per lane.
        let mut lane = LANES;
        for (i, &head) in self.heads.iter().enumerate() {
            let earlier = head < best;
            best = if earlier { head } else { best };
            lane = if earlier { i } else { lane };
        }
        (best, lane)
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
    fn a_queued_timer_takes_32_bytes_and_comes_back_whole() {
        assert_eq!(std::mem::size_of::<Slot>(), 32);
        let t = Instant::now();
        let mut q = TimerQueue::new();
        let key = TxKey(u128::MAX - 7);
        q.push(TimerTarget::Branch(key, u16::MAX), TimerKind::Deadline, t);
        q.push(
            TimerTarget::Server(key),
            TimerKind::J,
            t + Duration::from_nanos(1),
        );
        let first = q.pop_due(t).unwrap();
        assert_eq!(
            (first.target, first.kind, first.at),
            (TimerTarget::Branch(key, u16::MAX), TimerKind::Deadline, t)
        );
        assert_eq!(q.pop_due(t), None);
        let later = t + Duration::from_nanos(1);
        assert_eq!(q.next_deadline(), Some(later));
        let second = q.pop_due(later).unwrap();
        assert_eq!(
            (second.target, second.at),
            (TimerTarget::Server(key), later)
        );
    }

    fn slot(n: u64) -> Slot {
        Slot {
            at: n,
            seq: n as u32,
            key: [n, !n],
            branch: 0,
            kind: TimerKind::A,
            server: true,
        }
    }

    /// The block queue against `VecDeque` over runs of pushes and pops that cross block
    /// boundaries, empty the queue and refill it.
    #[test]
    fn a_lane_is_first_in_first_out_across_blocks() {
        let mut fifo = Fifo::default();
        let mut model = VecDeque::new();
        let mut n = 0;
        // (pushes, pops) per round: grows, shrinks, empties, regrows.
        let rounds = [
            (300, 10),
            (5, 200),
            (0, 95),
            (1, 1),
            (BLOCK, BLOCK - 1),
            (700, 701),
        ];
        for (pushes, pops) in rounds {
            for _ in 0..pushes {
                n += 1;
                fifo.push_back(slot(n));
                model.push_back(slot(n));
                assert_eq!(fifo.back(), model.back());
            }
            for _ in 0..pops {
                assert_eq!(fifo.front(), model.front());
                assert_eq!(fifo.pop_front(), model.pop_front());
            }
            assert_eq!(fifo.len(), model.len());
        }
        assert_eq!(
            (fifo.len(), fifo.pop_front(), fifo.front()),
            (0, None, None)
        );
    }

    /// Under a steady load (as many timers leaving as arriving) a lane reuses its blocks:
    /// it holds the blocks its timers need and a few spare, whatever it has carried.
    #[test]
    fn a_steady_lane_reuses_its_blocks() {
        let mut fifo = Fifo::default();
        for n in 0..10 * BLOCK as u64 {
            fifo.push_back(slot(n));
        }
        for n in 0..100 * BLOCK as u64 {
            fifo.pop_front();
            fifo.push_back(slot(n));
        }
        assert_eq!(fifo.len(), 10 * BLOCK);
        assert!(
            fifo.blocks.len() <= 11,
            "ten blocks' worth, over eleven at most"
        );
        assert!(fifo.spare.len() <= 1);
        while fifo.pop_front().is_some() {}
        assert_eq!((fifo.blocks.len(), fifo.spare.len()), (0, SPARE_BLOCKS));
    }

    /// Pushes between pops (earlier than the known earliest, in a lane or the heap, or
    /// later) against a model that sorts everything by deadline then scheduling order:
    /// the remembered earliest timer never goes stale.
    #[test]
    fn pushes_between_pops_keep_the_earliest_right() {
        let t0 = Instant::now();
        let mut q = TimerQueue::new();
        let mut model: Vec<(u64, u64, u64)> = Vec::new();
        let kinds = [
            TimerKind::A,
            TimerKind::B,
            TimerKind::K,
            TimerKind::Deadline,
        ];
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut now = 0;
        for n in 0..3_000u64 {
            // xorshift: a fixed pseudo-random mix of deadlines (some before the last of
            // their lane, so the heap is used too).
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let at = now + x % 400;
            let kind = kinds[(x >> 20) as usize % kinds.len()];
            q.push(
                TimerTarget::Server(TxKey(n.into())),
                kind,
                t0 + Duration::from_millis(at),
            );
            model.push((at, n, kind as u64));
            if n % 3 == 0 {
                now += 50;
                let due = drain(&mut q, t0 + Duration::from_millis(now));
                model.sort();
                let split = model.partition_point(|&(at, ..)| at <= now);
                let want: Vec<_> = model.drain(..split).map(|(_, n, _)| n).collect();
                let got: Vec<_> = due.iter().map(|&(n, _)| n).collect();
                assert_eq!(got, want, "at {now} ms");
            }
            let next = model
                .iter()
                .min()
                .map(|&(at, ..)| t0 + Duration::from_millis(at));
            assert_eq!(q.next_deadline(), next);
        }
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
