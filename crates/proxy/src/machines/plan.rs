//! The position in an attempt plan (behaviour.md §4.5, §4.8), a plain value: which attempt
//! goes next, the delay it waits for, whether the plan's failover was added, and the best
//! response so far.
//!
//! ```text
//!            next(): attempt has a delay         delay timer
//!   Ready ─────────────────────────────► Waiting ───────────► DelayOver
//!     ▲  │                                  │ stop_waiting()       │
//!     │  │ next(): Send(attempt)            ▼                      │ next(): Send
//!     └──┴──────────────────────────────── Ready ◄─────────────────┘
//!
//!   attempts used up: next() adds the failover once (resolved then), else Exhausted(best)
//!   a failure the rule does not allow, or close(): no more attempts (Exhausted)
//! ```

use std::time::Instant;

use super::best::Best;
use crate::metrics::FailoverReason;
use crate::policy::Failure;
use crate::route::{Attempt, AttemptPlan};

/// The delay of the next attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// Not waiting: the next attempt's delay (if any) is still to be waited.
    Ready,
    /// Waiting for the delay timer at this time.
    Until(Instant),
    /// The delay is over: the next attempt goes without waiting again.
    Over,
}

/// The plan's failover (§4.8: exactly one failover, resolved when first needed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FailoverStage {
    /// Not resolved yet: added when the attempts run out.
    Open,
    /// Resolved and added to the attempts (never resolved again).
    Added,
    /// No failover: resolved to nothing, or a failure closed the plan before it.
    Closed,
}

/// What to do next with the plan.
pub(crate) enum Step {
    /// Send this attempt now.
    Send {
        attempt: Attempt,
        /// 1-based number of the attempt (call record).
        number: u16,
        /// Why the previous attempt failed, to count as a failover now that this one
        /// starts.
        failover: Option<FailoverReason>,
    },
    /// Queue the delay timer for this time (the attempt waits for it).
    Wait(Instant),
    /// No attempt left: the caller gets the best response (`None`: none came).
    Exhausted(Option<Best>),
}

/// The position in one request's attempt plan.
pub(crate) struct PlanCursor {
    plan: AttemptPlan,
    /// Index of the next attempt to start.
    next: usize,
    wait: Wait,
    failover: FailoverStage,
    /// Why the last attempt failed while the plan may go on (metrics).
    failover_reason: Option<FailoverReason>,
    best: Option<Best>,
}

impl PlanCursor {
    /// At the plan's first attempt.
    pub(crate) fn new(plan: AttemptPlan) -> PlanCursor {
        PlanCursor {
            plan,
            next: 0,
            wait: Wait::Ready,
            failover: FailoverStage::Open,
            failover_reason: None,
            best: None,
        }
    }

    /// The plan (its request-wide settings).
    pub(crate) fn plan(&self) -> &AttemptPlan {
        &self.plan
    }

    /// The failover attempt was added to the plan (call record).
    pub(crate) fn failover_ran(&self) -> bool {
        self.failover == FailoverStage::Added
    }

    /// Waiting for an attempt's delay.
    pub(crate) fn is_waiting(&self) -> bool {
        matches!(self.wait, Wait::Until(_))
    }

    /// The next step; `resolve` turns the plan into its failover attempts, called at most
    /// once, when the plan's own attempts are used up.
    pub(crate) fn next(
        &mut self,
        now: Instant,
        resolve: impl FnOnce(&AttemptPlan) -> Vec<Attempt>,
    ) -> Step {
        if let Wait::Until(at) = self.wait {
            return Step::Wait(at);
        }
        if self.next >= self.plan.attempts.len() && self.failover == FailoverStage::Open {
            let more = resolve(&self.plan);
            self.failover = if more.is_empty() {
                FailoverStage::Closed
            } else {
                FailoverStage::Added
            };
            self.plan.attempts.extend(more);
        }
        let Some(attempt) = self.plan.attempts.get(self.next) else {
            return Step::Exhausted(self.best.take());
        };
        if let Some(delay) = attempt.delay.filter(|_| self.wait != Wait::Over) {
            // The carrier has had our 100 Trying; the target sees nothing until then (§4.5).
            let at = now + delay;
            self.wait = Wait::Until(at);
            return Step::Wait(at);
        }
        let attempt = attempt.clone();
        self.next += 1;
        self.wait = Wait::Ready;
        Step::Send {
            attempt,
            number: u16::try_from(self.next).unwrap_or(u16::MAX),
            failover: self.failover_reason.take(),
        }
    }

    /// The delay timer for `at` fired: true if it is the one waited for.
    pub(crate) fn on_delay_timer(&mut self, at: Instant) -> bool {
        if self.wait != Wait::Until(at) {
            return false;
        }
        self.wait = Wait::Over;
        true
    }

    /// The caller CANCELled: no more waiting.
    pub(crate) fn stop_waiting(&mut self) {
        if self.is_waiting() {
            self.wait = Wait::Ready;
        }
    }

    /// No more attempts: the best response so far is the answer. A failover already
    /// added stays on record (call record).
    pub(crate) fn close(&mut self) {
        if self.failover == FailoverStage::Open {
            self.failover = FailoverStage::Closed;
        }
        self.next = self.plan.attempts.len();
    }

    /// The current attempt failed with `failure` (`reason` for the metrics): the plan goes
    /// on if its rule allows it and the caller has not CANCELled, else it closes.
    pub(crate) fn attempt_failed(
        &mut self,
        failure: Failure,
        reason: FailoverReason,
        cancelled: bool,
    ) {
        if !cancelled && self.plan.failover.triggers(failure) {
            self.failover_reason = Some(reason);
        } else {
            self.close();
        }
    }

    /// A branch's final response: kept if it is the best so far (§16.7 step 6).
    pub(crate) fn record(&mut self, best: Best) {
        Best::keep_better(&mut self.best, best);
    }

    /// The best response so far, taken (the caller is answered with it).
    pub(crate) fn take_best(&mut self) -> Option<Best> {
        self.best.take()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::policy::FailoverRule;

    fn attempt(uri: &str, delay: Option<u64>) -> Attempt {
        let mut a = Attempt::to(Some(bytes::Bytes::copy_from_slice(uri.as_bytes())), None);
        a.delay = delay.map(Duration::from_secs);
        a
    }

    fn plan(attempts: Vec<Attempt>) -> AttemptPlan {
        let mut p = AttemptPlan::single(attempts[0].clone());
        p.attempts = attempts;
        p.failover = FailoverRule::default_inbound();
        p
    }

    fn uri(step: &Step) -> &[u8] {
        match step {
            Step::Send { attempt, .. } => attempt.request_uri.as_deref().unwrap_or_default(),
            _ => b"",
        }
    }

    fn no_failover(_: &AttemptPlan) -> Vec<Attempt> {
        Vec::new()
    }

    #[test]
    fn sends_in_order_then_exhausted_with_the_best() {
        let now = Instant::now();
        let mut c = PlanCursor::new(plan(vec![attempt("a", None), attempt("b", None)]));
        let s = c.next(now, no_failover);
        assert_eq!(uri(&s), b"a");
        assert!(matches!(
            s,
            Step::Send {
                number: 1,
                failover: None,
                ..
            }
        ));
        c.record(Best::Local(503));
        c.attempt_failed(Failure::Status(503), FailoverReason::Response, false);
        let s = c.next(now, no_failover);
        assert_eq!(uri(&s), b"b");
        assert!(matches!(
            s,
            Step::Send {
                number: 2,
                failover: Some(FailoverReason::Response),
                ..
            }
        ));
        c.record(Best::Local(486));
        assert!(matches!(c.next(now, no_failover), Step::Exhausted(Some(b)) if b.status() == 486));
        assert!(!c.failover_ran());
    }

    #[test]
    fn delay_waits_once() {
        let now = Instant::now();
        let mut c = PlanCursor::new(plan(vec![attempt("a", Some(2))]));
        let at = now + Duration::from_secs(2);
        assert!(matches!(c.next(now, no_failover), Step::Wait(t) if t == at));
        assert!(c.is_waiting());
        // Still waiting: the same deadline.
        assert!(matches!(c.next(now, no_failover), Step::Wait(t) if t == at));
        assert!(!c.on_delay_timer(now), "not the timer waited for");
        assert!(c.on_delay_timer(at));
        assert!(!c.is_waiting());
        assert_eq!(uri(&c.next(at, no_failover)), b"a");
    }

    #[test]
    fn stop_waiting_then_close_is_exhausted() {
        let now = Instant::now();
        let mut c = PlanCursor::new(plan(vec![attempt("a", Some(2))]));
        c.next(now, no_failover);
        c.stop_waiting();
        assert!(!c.is_waiting());
        c.close();
        assert!(matches!(c.next(now, no_failover), Step::Exhausted(None)));
    }

    #[test]
    fn failover_is_resolved_once_when_attempts_run_out() {
        let now = Instant::now();
        let mut c = PlanCursor::new(plan(vec![attempt("a", None)]));
        c.next(now, |_| panic!("not yet"));
        c.attempt_failed(Failure::Status(480), FailoverReason::Response, false);
        let mut calls = 0;
        let s = c.next(now, |_| {
            calls += 1;
            vec![attempt("f", None)]
        });
        assert_eq!(uri(&s), b"f");
        assert!(c.failover_ran());
        c.attempt_failed(Failure::Status(480), FailoverReason::Response, false);
        assert!(matches!(
            c.next(now, |_| panic!("once")),
            Step::Exhausted(_)
        ));
        assert_eq!(calls, 1);
        assert!(
            c.failover_ran(),
            "still on record once the plan is exhausted"
        );
    }

    #[test]
    fn a_failover_that_fails_the_rule_stays_on_record() {
        let now = Instant::now();
        let mut c = PlanCursor::new(plan(vec![attempt("a", None)]));
        c.next(now, no_failover);
        c.attempt_failed(Failure::Status(503), FailoverReason::Response, false);
        c.next(now, |_| vec![attempt("f", None)]);
        // The failover target is busy: the rule does not go on, the plan closes.
        c.attempt_failed(Failure::Status(486), FailoverReason::Response, false);
        assert!(c.failover_ran());
        assert!(matches!(
            c.next(now, |_| panic!("closed")),
            Step::Exhausted(_)
        ));
    }

    #[test]
    fn a_failure_the_rule_refuses_closes_the_plan() {
        let now = Instant::now();
        let mut c = PlanCursor::new(plan(vec![attempt("a", None), attempt("b", None)]));
        c.next(now, no_failover);
        c.attempt_failed(Failure::Status(486), FailoverReason::Response, false);
        assert!(matches!(
            c.next(now, |_| panic!("closed")),
            Step::Exhausted(_)
        ));
        let mut c = PlanCursor::new(plan(vec![attempt("a", None), attempt("b", None)]));
        c.next(now, no_failover);
        c.attempt_failed(Failure::Status(503), FailoverReason::Response, true);
        assert!(matches!(
            c.next(now, |_| panic!("cancelled")),
            Step::Exhausted(_)
        ));
    }
}
