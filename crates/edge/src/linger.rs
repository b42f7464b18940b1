//! Adaptive lingering: under load, a UDP worker sleeps a short bounded time between
//! receive calls so that datagrams queue up and one `recvmmsg` / `sendmmsg` pair handles
//! many of them.
//!
//! On the target VMs a wake-up and a system call cost more CPU than handling a message:
//! a worker that wakes for every datagram pays that for each of the 7 in and 7 out of a
//! call, and wakes its peers (an IPI each) as often. Sleeping `linger` after each batch
//! turns that into one timer wake-up, one receive and one send per `linger`, whatever
//! the rate. It only pays while messages arrive faster than about two per `linger`; below
//! that the worker blocks in its receive as before (an idle proxy makes no calls), so
//! lingering adds at most `linger` of latency per hop and only under load, where SIP's
//! timers (500 ms and up) do not notice.
//!
//! The sleep is only as long as it takes [`BATCHES_PER_SLEEP`] batches' worth of
//! datagrams to arrive, at the rate of the last window, with `linger` as the cap: past a
//! few full batches per sleep its cost is spread thin, and sleeping longer only adds
//! latency (at 7,000 calls/s a whole 10 ms linger put set-up latency p99 past 100 ms).

use std::time::{Duration, Instant};

/// Datagrams expected per linger for lingering to pay: one wake-up per linger then
/// replaces at least this many.
const MIN_PER_LINGER: u64 = 2;

/// Full receive batches a sleep gathers at most, at the current rate.
const BATCHES_PER_SLEEP: u64 = 4;

/// Lingers per measuring window: the rate is re-judged this often (short enough to stop
/// lingering within a few ms when the load goes away).
const WINDOW_LINGERS: u32 = 8;

/// Decides, batch by batch, whether the worker sleeps before its next receive.
pub struct Pacer {
    linger: Duration,
    /// Datagrams a sleep gathers at most (`BATCHES_PER_SLEEP` receives' worth).
    gather: u64,
    /// The sleep for the current rate (at most `linger`).
    sleep: Duration,
    window: Duration,
    window_start: Instant,
    received: u64,
    active: bool,
}

/// What the worker does before its next receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Block until a datagram arrives (or the shard's next deadline).
    Block,
    /// Sleep this long, then take whatever queued without blocking.
    Sleep(Duration),
    /// Take whatever queued without blocking (the last batch was full).
    Drain,
}

impl Pacer {
    /// `linger` zero never lingers; `batch` is how many datagrams one receive takes.
    pub fn new(linger: Duration, batch: usize, now: Instant) -> Pacer {
        Pacer {
            linger,
            gather: batch.max(1) as u64 * BATCHES_PER_SLEEP,
            sleep: linger,
            window: linger * WINDOW_LINGERS,
            window_start: now,
            received: 0,
            active: false,
        }
    }

    /// Records a receive that returned `n` datagrams (`full`: as many as the batch
    /// holds) and says what to do next.
    pub fn after_receive(&mut self, n: usize, full: bool, now: Instant) -> Next {
        if self.linger.is_zero() {
            return if full { Next::Drain } else { Next::Block };
        }
        self.received += n as u64;
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed >= self.window {
            self.active = self.fast_enough(elapsed);
            self.sleep = self.gather_time(elapsed);
            self.window_start = now;
            self.received = 0;
        }
        match (full, self.active) {
            (true, _) => Next::Drain,
            (false, true) => Next::Sleep(self.sleep),
            (false, false) => Next::Block,
        }
    }

    /// How long `gather` datagrams took to arrive over `elapsed`, capped at `linger`.
    fn gather_time(&self, elapsed: Duration) -> Duration {
        if self.received == 0 {
            return self.linger;
        }
        let nanos = elapsed.as_nanos() * u128::from(self.gather) / u128::from(self.received);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX)).min(self.linger)
    }

    /// True when at least `MIN_PER_LINGER` datagrams arrived per linger over `elapsed`.
    fn fast_enough(&self, elapsed: Duration) -> bool {
        let lingers = elapsed.as_micros() as u64 / (self.linger.as_micros() as u64).max(1);
        self.received >= MIN_PER_LINGER * lingers.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINGER: Duration = Duration::from_micros(1000);

    /// Feeds `per_ms` datagrams per ms for `ms` ms, one receive per ms.
    fn feed(p: &mut Pacer, t: &mut Instant, per_ms: usize, ms: u32) -> Next {
        let mut next = Next::Block;
        for _ in 0..ms {
            *t += Duration::from_millis(1);
            next = p.after_receive(per_ms, false, *t);
        }
        next
    }

    #[test]
    fn idle_and_slow_traffic_block() {
        let mut t = Instant::now();
        let mut p = Pacer::new(LINGER, 64, t);
        assert_eq!(feed(&mut p, &mut t, 1, 100), Next::Block);
        assert_eq!(feed(&mut p, &mut t, 0, 100), Next::Block);
    }

    #[test]
    fn fast_traffic_lingers_after_one_window() {
        let mut t = Instant::now();
        let mut p = Pacer::new(LINGER, 64, t);
        assert_eq!(feed(&mut p, &mut t, 7, 8), Next::Sleep(LINGER));
        assert_eq!(feed(&mut p, &mut t, 7, 100), Next::Sleep(LINGER));
    }

    #[test]
    fn lingering_stops_one_window_after_the_load() {
        let mut t = Instant::now();
        let mut p = Pacer::new(LINGER, 64, t);
        feed(&mut p, &mut t, 7, 20);
        // Bursty senders leave some lingers empty: that alone does not stop it.
        assert_eq!(feed(&mut p, &mut t, 0, 1), Next::Sleep(LINGER));
        assert_eq!(feed(&mut p, &mut t, 0, 2 * WINDOW_LINGERS), Next::Block);
    }

    #[test]
    fn a_full_batch_is_drained_without_sleeping() {
        let t = Instant::now();
        let mut p = Pacer::new(LINGER, 64, t);
        assert_eq!(p.after_receive(64, true, t), Next::Drain);
        let mut off = Pacer::new(Duration::ZERO, 64, t);
        assert_eq!(off.after_receive(64, true, t), Next::Drain);
        assert_eq!(off.after_receive(3, false, t), Next::Block);
    }

    /// At 160 datagrams per ms four batches of 64 arrive in 1.6 ms: the sleep shrinks to
    /// that (a longer one would only add latency), and grows back to the cap when the
    /// rate falls.
    #[test]
    fn the_sleep_is_the_time_four_batches_take_to_arrive() {
        let mut t = Instant::now();
        let mut p = Pacer::new(Duration::from_millis(10), 64, t);
        let feed_for = |p: &mut Pacer, t: &mut Instant, per_ms: usize, ms: u32| {
            let mut next = Next::Block;
            for _ in 0..ms {
                *t += Duration::from_millis(1);
                next = p.after_receive(per_ms, false, *t);
            }
            next
        };
        assert_eq!(
            feed_for(&mut p, &mut t, 160, 160),
            Next::Sleep(Duration::from_micros(1600))
        );
        assert_eq!(
            feed_for(&mut p, &mut t, 20, 160),
            Next::Sleep(Duration::from_millis(10))
        );
    }

    #[test]
    fn zero_linger_never_sleeps() {
        let mut t = Instant::now();
        let mut p = Pacer::new(Duration::ZERO, 64, t);
        assert_eq!(feed(&mut p, &mut t, 50, 100), Next::Block);
    }
}
