//! Where one INVITE branch stands for the proxy (§16.7, §16.8, §9.1), next to its client
//! transaction: which provisionals it has had, whether and by whom it is being
//! cancelled, and whether an attempt timer gave up on it. Non-INVITE branches only go
//! from `Trying` to `Done`.
//!
//! ```text
//!             1xx                          1xx
//!   Trying ─────────► Proceeding{progress} ◄──┘   (progress: a 1xx other than 100)
//!     │ cancel              │ cancel
//!     ▼        1xx          ▼
//!   CancelPending ───► Cancelling{progress}       (CANCEL sent; C = 64·T1 from here)
//!     │                     │
//!     └─── final / 2xx / timeout / transport error (from any state) ───► Done
//! ```
//!
//! A cancel says who asked ([`Canceller`]): the caller (its CANCEL is forwarded), the
//! proxy (timer C, a 6xx on another branch), or an attempt timer that gave up on the
//! branch (the attempt is already counted as a timeout and the plan moved on). A branch
//! the proxy cancelled relays no provisional, and a 2xx from it is ACKed and BYEd by the
//! proxy (late2xx.rs) instead of relayed: `Done` keeps who cancelled for that.

use crate::policy::Failure;

/// Who asked for a branch's CANCEL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Canceller {
    /// The caller CANCELled its INVITE (§16.10).
    Caller,
    /// The proxy: timer C, or a 6xx on another branch.
    Proxy,
    /// An attempt timer (progress, answer) gave up on the branch: its outcome is already
    /// counted and the plan has moved on.
    GaveUp,
}

/// The proxy's position on one branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BranchState {
    /// Sent; no provisional yet (a CANCEL must wait for one, §9.1).
    Trying,
    /// A provisional came; `progress`: one other than 100.
    Proceeding { progress: bool },
    /// CANCEL wanted before any provisional: sent by the first one.
    CancelPending { by: Canceller },
    /// CANCEL sent (its own client transaction lives on the branch).
    Cancelling { by: Canceller, progress: bool },
    /// The client transaction has its outcome (final, 2xx, timeout, transport error).
    Done { cancelled: Option<Canceller> },
}

/// What a provisional on the branch asks of the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct OnProvisional {
    /// The first provisional other than 100 (first-provisional metric; progress met).
    pub(crate) first_progress: bool,
    /// §16.7 step 2: restart timer C.
    pub(crate) restart_c: bool,
    /// The CANCEL that was waiting for a provisional goes now.
    pub(crate) send_cancel: bool,
    /// Relay it upstream (not a 100, and nobody but the caller cancelled the branch).
    pub(crate) relay: bool,
}

/// What a cancel request asks of the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CancelStep {
    /// Already cancelling (or done): nothing to send.
    Nothing,
    /// No provisional yet: the CANCEL goes with the first one.
    Wait,
    /// Build and send the CANCEL now.
    SendNow,
}

/// What timer C asks of the caller on a pending branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnTimerC {
    /// CANCEL the branch (it has had a provisional and no CANCEL yet).
    Cancel,
    /// End the branch as a 408: it never answered, or its CANCEL got no final either.
    GiveUp(Failure),
}

impl BranchState {
    /// Who asked for the CANCEL, if anyone.
    pub(crate) fn canceller(self) -> Option<Canceller> {
        match self {
            BranchState::CancelPending { by } | BranchState::Cancelling { by, .. } => Some(by),
            BranchState::Done { cancelled } => cancelled,
            BranchState::Trying | BranchState::Proceeding { .. } => None,
        }
    }

    /// Cancelled by the proxy (or given up on): a late 2xx is ours to end.
    pub(crate) fn by_proxy(self) -> bool {
        matches!(self.canceller(), Some(Canceller::Proxy | Canceller::GaveUp))
    }

    /// An attempt timer gave up on it: it no longer holds the plan back, is not
    /// retransmitted, and its final response is not counted again.
    pub(crate) fn given_up(self) -> bool {
        self.canceller() == Some(Canceller::GaveUp)
    }

    /// A provisional other than 100 came.
    pub(crate) fn progress(self) -> bool {
        matches!(
            self,
            BranchState::Proceeding { progress: true }
                | BranchState::Cancelling { progress: true, .. }
        )
    }

    /// A CANCEL was asked for (sent or not).
    pub(crate) fn cancel_requested(self) -> bool {
        self.canceller().is_some()
    }

    /// A provisional (100 included) came.
    pub(crate) fn on_provisional(&mut self, status: u16) -> OnProvisional {
        let more = status > 100;
        let before = *self;
        let mut out = OnProvisional {
            first_progress: more && !before.progress(),
            restart_c: more
                && !matches!(
                    before,
                    BranchState::Cancelling { .. } | BranchState::Done { .. }
                ),
            send_cancel: false,
            relay: more && !before.by_proxy(),
        };
        *self = match before {
            BranchState::Trying => BranchState::Proceeding { progress: more },
            BranchState::Proceeding { progress } => BranchState::Proceeding {
                progress: progress || more,
            },
            BranchState::CancelPending { by } => {
                out.send_cancel = true;
                BranchState::Cancelling { by, progress: more }
            }
            BranchState::Cancelling { by, progress } => BranchState::Cancelling {
                by,
                progress: progress || more,
            },
            BranchState::Done { .. } => {
                out = OnProvisional::default();
                before
            }
        };
        out
    }

    /// Asks for the branch's CANCEL on behalf of `by` (the caller makes sure the INVITE is
    /// still pending). A branch already cancelling keeps its first canceller.
    pub(crate) fn cancel(&mut self, by: Canceller) -> CancelStep {
        match *self {
            BranchState::Trying => {
                *self = BranchState::CancelPending { by };
                CancelStep::Wait
            }
            BranchState::Proceeding { progress } => {
                *self = BranchState::Cancelling { by, progress };
                CancelStep::SendNow
            }
            _ => CancelStep::Nothing,
        }
    }

    /// An attempt timer gives up on the branch (§4.5): it is cancelled if it was not, and
    /// marked as given up whoever cancelled it. `None` when it was already given up on or
    /// is done.
    pub(crate) fn give_up(&mut self) -> Option<CancelStep> {
        let step = match *self {
            BranchState::Done { .. } => return None,
            s if s.given_up() => return None,
            BranchState::Trying | BranchState::Proceeding { .. } => self.cancel(Canceller::GaveUp),
            _ => CancelStep::Nothing,
        };
        *self = match *self {
            BranchState::CancelPending { .. } => BranchState::CancelPending {
                by: Canceller::GaveUp,
            },
            BranchState::Cancelling { progress, .. } => BranchState::Cancelling {
                by: Canceller::GaveUp,
                progress,
            },
            other => other,
        };
        Some(step)
    }

    /// Timer C fired on the pending branch (§16.8).
    pub(crate) fn on_timer_c(self) -> OnTimerC {
        match self {
            BranchState::Cancelling { .. } => OnTimerC::GiveUp(Failure::Timeout),
            BranchState::Proceeding { .. } => OnTimerC::Cancel,
            _ => OnTimerC::GiveUp(Failure::Unreachable),
        }
    }

    /// The proxy refuses the 2xx the branch got (its SDP could not be anchored): the
    /// dialog is the proxy's to end, as if it had cancelled the branch itself.
    pub(crate) fn disown(&mut self) {
        *self = BranchState::Done {
            cancelled: Some(Canceller::Proxy),
        };
    }

    /// The client transaction has its outcome.
    pub(crate) fn finish(&mut self) {
        *self = BranchState::Done {
            cancelled: self.canceller(),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provisionals_move_trying_to_proceeding() {
        let mut s = BranchState::Trying;
        let p = s.on_provisional(100);
        assert_eq!(s, BranchState::Proceeding { progress: false });
        assert!(!p.first_progress && !p.restart_c && !p.relay && !p.send_cancel);
        let p = s.on_provisional(180);
        assert_eq!(s, BranchState::Proceeding { progress: true });
        assert!(p.first_progress && p.restart_c && p.relay && !p.send_cancel);
        let p = s.on_provisional(183);
        assert!(!p.first_progress && p.restart_c && p.relay);
    }

    #[test]
    fn cancel_before_a_provisional_waits_for_one() {
        let mut s = BranchState::Trying;
        assert_eq!(s.cancel(Canceller::Caller), CancelStep::Wait);
        assert_eq!(
            s,
            BranchState::CancelPending {
                by: Canceller::Caller
            }
        );
        let p = s.on_provisional(100);
        assert!(p.send_cancel && !p.relay);
        assert_eq!(
            s,
            BranchState::Cancelling {
                by: Canceller::Caller,
                progress: false
            }
        );
        // A second cancel does nothing.
        assert_eq!(s.cancel(Canceller::Proxy), CancelStep::Nothing);
        assert_eq!(s.canceller(), Some(Canceller::Caller));
    }

    #[test]
    fn cancel_after_a_provisional_goes_now() {
        let mut s = BranchState::Trying;
        s.on_provisional(180);
        assert_eq!(s.cancel(Canceller::Proxy), CancelStep::SendNow);
        assert_eq!(
            s,
            BranchState::Cancelling {
                by: Canceller::Proxy,
                progress: true
            }
        );
        assert!(s.by_proxy() && !s.given_up());
    }

    #[test]
    fn cancelling_does_not_restart_c_and_proxy_cancel_relays_nothing() {
        let mut s = BranchState::Proceeding { progress: false };
        s.cancel(Canceller::Proxy);
        let p = s.on_provisional(180);
        assert!(!p.restart_c && !p.relay && p.first_progress);
        let mut s = BranchState::Proceeding { progress: false };
        s.cancel(Canceller::Caller);
        assert!(
            s.on_provisional(180).relay,
            "the caller's CANCEL keeps relaying"
        );
    }

    #[test]
    fn give_up_cancels_once_and_overrides_the_caller() {
        let mut s = BranchState::Trying;
        assert_eq!(s.give_up(), Some(CancelStep::Wait));
        assert!(s.given_up() && s.by_proxy());
        assert_eq!(s.give_up(), None);
        let mut s = BranchState::Proceeding { progress: true };
        assert_eq!(s.give_up(), Some(CancelStep::SendNow));
        let mut s = BranchState::Proceeding { progress: true };
        s.cancel(Canceller::Caller);
        assert_eq!(s.give_up(), Some(CancelStep::Nothing));
        assert!(s.given_up());
        let mut s = BranchState::Trying;
        s.finish();
        assert_eq!(s.give_up(), None);
    }

    #[test]
    fn timer_c_cancels_or_gives_up() {
        assert_eq!(
            BranchState::Trying.on_timer_c(),
            OnTimerC::GiveUp(Failure::Unreachable)
        );
        assert_eq!(
            BranchState::CancelPending {
                by: Canceller::Proxy
            }
            .on_timer_c(),
            OnTimerC::GiveUp(Failure::Unreachable)
        );
        assert_eq!(
            BranchState::Proceeding { progress: false }.on_timer_c(),
            OnTimerC::Cancel
        );
        assert_eq!(
            BranchState::Cancelling {
                by: Canceller::Proxy,
                progress: false
            }
            .on_timer_c(),
            OnTimerC::GiveUp(Failure::Timeout)
        );
    }

    #[test]
    fn done_keeps_who_cancelled_and_ignores_provisionals() {
        let mut s = BranchState::Proceeding { progress: true };
        s.cancel(Canceller::Proxy);
        s.finish();
        assert_eq!(
            s,
            BranchState::Done {
                cancelled: Some(Canceller::Proxy)
            }
        );
        assert!(s.by_proxy() && s.cancel_requested());
        assert_eq!(s.on_provisional(180), OnProvisional::default());
        assert_eq!(s.cancel(Canceller::Caller), CancelStep::Nothing);
        let mut s = BranchState::Trying;
        s.finish();
        assert_eq!(s, BranchState::Done { cancelled: None });
    }
}
