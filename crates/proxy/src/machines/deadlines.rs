//! A pending INVITE branch's own deadlines in one table indexed by kind: proxy timer C
//! (§16.6 step 11), the attempt's progress timeout and its answer timeout (§4.5).
//!
//! ```text
//!   set(kind, at) ──► [C | Progress | Answer] ──due(now)──► earliest due kind, cleared
//!                          │
//!                          └─ arm() ──► Some(at): queue the one Deadline timer for `at`
//! ```
//!
//! One timer is queued for the earliest deadline. Deadlines that move later (C restarted
//! by each provisional) or go away queue nothing: the timer already queued fires early and
//! is queued again for what is left. Queuing every deadline would leave several timers per
//! call in the queue for minutes (C is over three), each looked up when it fires.

use std::time::Instant;

/// Which deadline of a branch. The order breaks ties when several fall due at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum DeadlineKind {
    /// No provisional other than 100 by then: give up on the attempt.
    Progress = 0,
    /// No 2xx by then: give up on the attempt.
    Answer = 1,
    /// Proxy timer C: CANCEL the branch, or give up on it once cancelled.
    C = 2,
}

const KINDS: [DeadlineKind; 3] = [
    DeadlineKind::Progress,
    DeadlineKind::Answer,
    DeadlineKind::C,
];

/// The deadlines of one branch and the one timer queued for them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Deadlines {
    at: [Option<Instant>; 3],
    /// When the queued [`crate::transaction::TimerKind::Deadline`] timer fires, if one is.
    wake: Option<Instant>,
}

impl Deadlines {
    /// Sets (or moves) one deadline; [`Deadlines::arm`] says whether a timer must be queued.
    pub(crate) fn set(&mut self, kind: DeadlineKind, at: Instant) {
        self.at[kind as usize] = Some(at);
    }

    /// Drops one deadline (it no longer applies).
    pub(crate) fn clear(&mut self, kind: DeadlineKind) {
        self.at[kind as usize] = None;
    }

    /// The earliest deadline still set.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.at.iter().flatten().min().copied()
    }

    /// The timer to queue, if the one queued (if any) fires later than the next deadline.
    pub(crate) fn arm(&mut self) -> Option<Instant> {
        let next = self.next()?;
        if self.wake.is_some_and(|w| w <= next) {
            return None;
        }
        self.wake = Some(next);
        Some(next)
    }

    /// The queued timer for `at` fired: true if it is the current one (then none is
    /// queued any more).
    pub(crate) fn on_wake(&mut self, at: Instant) -> bool {
        if self.wake != Some(at) {
            return false;
        }
        self.wake = None;
        true
    }

    /// The earliest deadline due at `now`, removed from the table (ties: progress, answer,
    /// C).
    pub(crate) fn take_due(&mut self, now: Instant) -> Option<DeadlineKind> {
        let due = self.next().filter(|&d| d <= now)?;
        let kind = KINDS
            .into_iter()
            .find(|k| self.at[*k as usize] == Some(due))?;
        self.clear(kind);
        Some(kind)
    }

    /// The branch ended: no deadline applies any more.
    pub(crate) fn clear_all(&mut self) {
        self.at = [None; 3];
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn t0() -> Instant {
        Instant::now()
    }

    #[test]
    fn arm_queues_the_earliest_once() {
        let now = t0();
        let mut d = Deadlines::default();
        assert_eq!(d.arm(), None);
        d.set(DeadlineKind::C, now + Duration::from_secs(180));
        assert_eq!(d.arm(), Some(now + Duration::from_secs(180)));
        // Already queued for that time: nothing more.
        assert_eq!(d.arm(), None);
        // An earlier deadline needs an earlier timer.
        d.set(DeadlineKind::Progress, now + Duration::from_secs(5));
        assert_eq!(d.arm(), Some(now + Duration::from_secs(5)));
        // C moving later queues nothing: the queued timer fires early and re-arms.
        d.set(DeadlineKind::C, now + Duration::from_secs(300));
        assert_eq!(d.arm(), None);
    }

    #[test]
    fn only_the_current_wake_counts() {
        let now = t0();
        let mut d = Deadlines::default();
        d.set(DeadlineKind::Answer, now + Duration::from_secs(10));
        let at = d.arm().unwrap();
        assert!(!d.on_wake(now + Duration::from_secs(9)));
        assert!(d.on_wake(at));
        assert!(!d.on_wake(at), "fired once");
    }

    #[test]
    fn take_due_earliest_first_with_tie_order() {
        let now = t0();
        let s = Duration::from_secs(1);
        let mut d = Deadlines::default();
        d.set(DeadlineKind::C, now + s);
        d.set(DeadlineKind::Answer, now + s);
        d.set(DeadlineKind::Progress, now + 2 * s);
        assert_eq!(d.take_due(now), None);
        assert_eq!(d.take_due(now + s), Some(DeadlineKind::Answer));
        assert_eq!(d.take_due(now + s), Some(DeadlineKind::C));
        assert_eq!(d.take_due(now + s), None);
        assert_eq!(d.take_due(now + 2 * s), Some(DeadlineKind::Progress));
        assert_eq!(d.next(), None);
    }

    #[test]
    fn clear_all_leaves_nothing_to_arm() {
        let now = t0();
        let mut d = Deadlines::default();
        d.set(DeadlineKind::C, now);
        d.clear_all();
        assert_eq!(d.arm(), None);
        assert_eq!(d.take_due(now), None);
    }
}
