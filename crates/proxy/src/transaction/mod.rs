//! RFC 3261 §17 transaction state machines (with RFC 6026's Accepted states), as plain
//! values: they hold their state and deadlines, and each event method says what the
//! caller must do. They never send, never read the clock and never look anything up.
//!
//! Timers are not cancelled when a machine moves on: each machine remembers the deadline
//! of every timer it armed, and [`Timer::matches`] tells whether a fired timer is still the
//! current one. The proxy schedules what [`Timers`] collects.

use std::time::{Duration, Instant};

pub(crate) mod client_invite;
pub(crate) mod client_non_invite;
pub(crate) mod server_invite;
pub(crate) mod server_non_invite;

pub(crate) use client_invite::ClientInvite;
pub(crate) use client_non_invite::ClientNonInvite;
pub(crate) use server_invite::ServerInvite;
pub(crate) use server_non_invite::ServerNonInvite;

/// RFC 3261 timer values the machines use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimerConfig {
    pub t1: Duration,
    pub t2: Duration,
    pub t4: Duration,
}

impl TimerConfig {
    /// 64·T1: timers B, F, H, J (UDP), L, M.
    pub(crate) fn t1x64(&self) -> Duration {
        self.t1 * 64
    }
}

impl Default for TimerConfig {
    fn default() -> Self {
        TimerConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

/// The timers of RFC 3261 §17 and RFC 6026, plus the proxy's own per-branch and
/// per-transaction timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum TimerKind {
    /// Client INVITE retransmit.
    A,
    /// Client INVITE timeout.
    B,
    /// Client INVITE: wait for response retransmissions after a non-2xx.
    D,
    /// Client non-INVITE retransmit.
    E,
    /// Client non-INVITE timeout.
    F,
    /// Server INVITE: retransmit the final non-2xx response.
    G,
    /// Server INVITE: give up waiting for the ACK.
    H,
    /// Server INVITE: absorb ACK retransmissions.
    I,
    /// Server non-INVITE: absorb request retransmissions.
    J,
    /// Client non-INVITE: absorb response retransmissions.
    K,
    /// Server INVITE (RFC 6026): absorb INVITE retransmissions after a 2xx.
    L,
    /// Client INVITE (RFC 6026): forward 2xx retransmissions.
    M,
    /// The next of an INVITE branch's own deadlines: proxy timer C (§16.6 step 11) and
    /// the attempt plan's progress and answer timeouts (one queued timer for the three).
    Deadline,
    /// Attempt plan: the delay before sending the next attempt is over.
    Delay,
}

/// A deadline armed by a machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timer {
    pub kind: TimerKind,
    pub at: Instant,
}

impl Timer {
    /// Is a fired `(kind, at)` this timer, still armed?
    pub(crate) fn matches(slot: &Option<Instant>, at: Instant) -> bool {
        *slot == Some(at)
    }
}

/// Timers armed during one event, for the caller to schedule, and the values to arm
/// them with (carried here rather than in every machine: machines live 64·T1 after
/// their transaction completes, thousands at a time).
#[derive(Debug, Default)]
pub(crate) struct Timers {
    items: [Option<Timer>; 4],
    n: usize,
    /// Timers beyond the four slots: kept, never dropped. No machine arms more than two
    /// per event, so this stays empty (an empty `Vec` does not allocate).
    more: Vec<Timer>,
    cfg: TimerConfig,
}

impl Timers {
    pub(crate) fn new(cfg: TimerConfig) -> Timers {
        Timers {
            items: [None; 4],
            n: 0,
            more: Vec::new(),
            cfg,
        }
    }

    pub(crate) fn cfg(&self) -> TimerConfig {
        self.cfg
    }

    /// Arms `kind` at `at` and returns the deadline to store in the machine's slot. Every
    /// timer armed is drained: none is ever dropped.
    pub(crate) fn arm(&mut self, kind: TimerKind, at: Instant) -> Option<Instant> {
        let timer = Timer { kind, at };
        match self.items.get_mut(self.n) {
            Some(slot) => {
                *slot = Some(timer);
                self.n += 1;
            }
            None => self.more.push(timer),
        }
        Some(at)
    }

    /// Every timer armed since the last drain, in the order armed.
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = Timer> + '_ {
        let n = std::mem::take(&mut self.n);
        self.items[..n]
            .iter_mut()
            .filter_map(Option::take)
            .chain(self.more.drain(..))
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.n == 0 && self.more.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_timer_is_ever_dropped() {
        let now = Instant::now();
        let mut timers = Timers::new(TimerConfig::default());
        let kinds = [
            TimerKind::A,
            TimerKind::B,
            TimerKind::D,
            TimerKind::E,
            TimerKind::F,
            TimerKind::K,
        ];
        for (i, k) in kinds.iter().enumerate() {
            timers.arm(*k, now + Duration::from_millis(i as u64));
        }
        assert!(!timers.is_empty());
        let drained: Vec<TimerKind> = timers.drain().map(|t| t.kind).collect();
        assert_eq!(drained, kinds, "all six, in order");
        assert!(timers.is_empty());
        assert_eq!(timers.drain().count(), 0);
    }
}
