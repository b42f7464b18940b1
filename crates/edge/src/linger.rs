//! Pacing a UDP worker: batching that costs no waiting always, sleeping to gather more
//! only when the worker is saturated.
//!
//! Free batching: a receive takes every datagram already queued (up to a batch) and a
//! flush sends everything one round produced, so under load calls per message fall by
//! themselves, with no added latency. A receive that filled the batch may have left more
//! queued: the worker takes it at once without blocking ([`Next::Drain`]).
//!
//! Sleeping to let datagrams queue up ([`Next::Sleep`]) adds its whole length to every
//! message it holds back, so a worker that keeps up never sleeps: at 1,000 calls/s a
//! 10 ms sleep had cost 16 ms p50 INVITE→200 against an unbatched proxy's 0. It only
//! sleeps while **saturated**: at least [`SATURATED_FULL`] of its last [`WINDOW`]
//! receives found a whole batch queued without our having slept for it (the queue built
//! up while the worker was busy with the previous batch, so messages already wait about
//! a batch's time). Then a short sleep once the queue is drained keeps the next receive a
//! large batch instead of one wake-up per datagram, which would cost the CPU a saturated
//! worker has not got. The sleep is the time half a batch takes to arrive at the rate of
//! the last receives, at most `linger`: short enough that a worker which could keep up
//! finds less than a full batch after it and so stops sleeping within a few rounds
//! (a sleep as long as a whole batch would sustain itself).

use std::time::{Duration, Instant};

/// Receives remembered to judge saturation and the arrival rate.
pub(crate) const WINDOW: usize = 8;

/// Full batches, among the last [`WINDOW`] receives, that make a worker saturated.
pub(crate) const SATURATED_FULL: u32 = 4;

/// Decides, receive by receive, how the worker takes its next batch.
pub(crate) struct Pacer {
    linger: Duration,
    /// Datagrams one receive takes at most.
    batch: u64,
    /// Bit `i`: the receive `i` rounds ago found a full batch queued by itself.
    full: u8,
    /// Datagrams and time of the last [`WINDOW`] receives, oldest overwritten first.
    recent: [(u64, Option<Instant>); WINDOW],
    next_slot: usize,
    /// What the worker was last told to do.
    last: Next,
}

/// What the worker does before its next receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Block until a datagram arrives (or the shard's next deadline).
    Block,
    /// Sleep this long, then take whatever queued without blocking (saturated only).
    Sleep(Duration),
    /// Take whatever queued without blocking (the last batch was full).
    Drain,
}

impl Pacer {
    /// `linger` is the longest sleep of a saturated worker (zero: never sleeps); `batch`
    /// is how many datagrams one receive takes.
    pub(crate) fn new(linger: Duration, batch: usize) -> Pacer {
        Pacer {
            linger,
            batch: batch.max(1) as u64,
            full: 0,
            recent: [(0, None); WINDOW],
            next_slot: 0,
            last: Next::Block,
        }
    }

    /// Records a receive that returned `n` datagrams at `now` (`full`: as many as the
    /// batch holds) and says what to do next.
    pub(crate) fn after_receive(&mut self, n: usize, full: bool, now: Instant) -> Next {
        self.remember(n, full, now);
        self.last = if full {
            Next::Drain
        } else if self.saturated() {
            Next::Sleep(self.half_batch_time())
        } else {
            Next::Block
        };
        self.last
    }

    /// True when enough recent receives found a full batch the worker had not waited for.
    pub(crate) fn saturated(&self) -> bool {
        !self.linger.is_zero() && self.full.count_ones() >= SATURATED_FULL
    }

    fn remember(&mut self, n: usize, full: bool, now: Instant) {
        // A batch gathered by our own sleep says nothing about the load: no evidence
        // either way (otherwise a sleep as long as a batch would keep itself going).
        let self_made = full && matches!(self.last, Next::Sleep(_));
        if !self_made {
            self.full = (self.full << 1) | u8::from(full);
        }
        self.recent[self.next_slot] = (n as u64, Some(now));
        self.next_slot = (self.next_slot + 1) % WINDOW;
    }

    /// How long half a batch takes to arrive at the rate of the remembered receives,
    /// at most `linger` (and `linger` when the rate is unknown).
    fn half_batch_time(&self) -> Duration {
        let oldest = self.recent[self.next_slot];
        let newest = self.recent[(self.next_slot + WINDOW - 1) % WINDOW];
        let (Some(from), Some(to)) = (oldest.1, newest.1) else {
            return self.linger;
        };
        // Datagrams that arrived after the oldest receive.
        let arrived: u64 = self.recent.iter().map(|r| r.0).sum::<u64>() - oldest.0;
        let span = to.saturating_duration_since(from);
        if arrived == 0 || span.is_zero() {
            return self.linger;
        }
        let nanos = span.as_nanos() * u128::from(self.batch) / 2 / u128::from(arrived);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX)).min(self.linger)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINGER: Duration = Duration::from_millis(10);
    const BATCH: usize = 64;

    /// Feeds receives of `n` datagrams every `gap`, as the worker would after `next`.
    fn feed(p: &mut Pacer, t: &mut Instant, n: usize, gap: Duration, rounds: usize) -> Next {
        let mut next = Next::Block;
        for _ in 0..rounds {
            *t += gap;
            next = p.after_receive(n, n >= BATCH, *t);
        }
        next
    }

    #[test]
    fn a_worker_that_keeps_up_never_sleeps_at_any_rate() {
        let mut t = Instant::now();
        let mut p = Pacer::new(LINGER, BATCH);
        // 1 to 63 datagrams per receive, however often: the queue was drained each time.
        for n in [1, 7, 30, 63] {
            assert_eq!(
                feed(&mut p, &mut t, n, Duration::from_micros(100), 100),
                Next::Block
            );
        }
        assert!(!p.saturated());
    }

    #[test]
    fn a_full_batch_is_drained_without_sleeping() {
        let t = Instant::now();
        let mut p = Pacer::new(LINGER, BATCH);
        assert_eq!(p.after_receive(64, true, t), Next::Drain);
        let mut off = Pacer::new(Duration::ZERO, BATCH);
        assert_eq!(off.after_receive(64, true, t), Next::Drain);
        assert_eq!(off.after_receive(3, false, t), Next::Block);
    }

    /// One stall (e.g. the VM preempted us) leaves a few batches queued: they are drained
    /// and the worker blocks again, it does not start sleeping.
    #[test]
    fn a_one_off_backlog_is_drained_then_the_worker_blocks() {
        let mut t = Instant::now();
        let mut p = Pacer::new(LINGER, BATCH);
        feed(&mut p, &mut t, 5, Duration::from_millis(1), 20);
        assert_eq!(
            feed(&mut p, &mut t, 64, Duration::from_millis(2), 3),
            Next::Drain
        );
        assert_eq!(p.after_receive(10, false, t), Next::Block);
    }

    #[test]
    fn a_saturated_worker_sleeps_half_a_batch_at_the_current_rate() {
        let mut t = Instant::now();
        let mut p = Pacer::new(LINGER, BATCH);
        // 64 datagrams per 2 ms (32/ms), every receive full: the queue never empties.
        assert_eq!(
            feed(&mut p, &mut t, 64, Duration::from_millis(2), 8),
            Next::Drain
        );
        t += Duration::from_millis(1);
        // Caught up: half a batch (32) takes 1 ms to arrive at 32/ms.
        assert_eq!(
            p.after_receive(32, false, t),
            Next::Sleep(Duration::from_millis(1))
        );
    }

    #[test]
    fn the_sleep_is_capped_by_linger() {
        let mut t = Instant::now();
        let mut p = Pacer::new(Duration::from_micros(500), BATCH);
        feed(&mut p, &mut t, 64, Duration::from_millis(2), 8);
        t += Duration::from_millis(1);
        assert_eq!(
            p.after_receive(32, false, t),
            Next::Sleep(Duration::from_micros(500))
        );
    }

    #[test]
    fn zero_linger_never_sleeps_even_saturated() {
        let mut t = Instant::now();
        let mut p = Pacer::new(Duration::ZERO, BATCH);
        feed(&mut p, &mut t, 64, Duration::from_millis(2), 8);
        assert_eq!(p.after_receive(10, false, t), Next::Block);
    }

    /// Once the load drops, each sleep gathers less than a batch: the worker stops
    /// sleeping within a few rounds, and a full batch gathered by a sleep does not count
    /// as saturation.
    #[test]
    fn sleeping_stops_when_the_load_goes_away() {
        let mut t = Instant::now();
        let mut p = Pacer::new(LINGER, BATCH);
        feed(&mut p, &mut t, 64, Duration::from_millis(2), 8);
        let mut next = p.after_receive(20, false, t);
        let mut sleeps = 0;
        for _ in 0..20 {
            match next {
                Next::Sleep(d) => {
                    sleeps += 1;
                    t += d;
                    // What the sleep gathered: a full batch (self-made), then a partial.
                    next = p.after_receive(64, true, t);
                    assert_eq!(next, Next::Drain);
                    next = p.after_receive(3, false, t);
                }
                Next::Block => break,
                Next::Drain => unreachable!(),
            }
        }
        assert_eq!(next, Next::Block);
        assert!(sleeps <= WINDOW, "{sleeps} sleeps");
    }
}
