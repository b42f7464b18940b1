//! Server non-INVITE transaction (RFC 3261 §17.2.2, RFC 4320).
//!
//! ```text
//! Trying --final--> Completed --J--> Terminated
//! (the proxy sends no provisional to a non-INVITE: RFC 4320)
//!    `-------------final-------------^
//! ```
//! RFC 4320: a proxy never sends 408 to a non-INVITE request (the client has timed out
//! by then) and never a provisional other than 100; the caller simply abandons the
//! transaction instead ([`ServerNonInvite::abandon`]).

use std::time::Instant;

use bytes::Bytes;

#[cfg(test)]
use super::TimerConfig;
use super::{Timer, TimerKind, Timers};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Trying,
    Completed,
    Terminated,
}

#[derive(Debug)]
pub(crate) struct ServerNonInvite {
    state: State,
    reliable: bool,
    last: Option<Bytes>,
    j: Option<Instant>,
}

impl ServerNonInvite {
    pub(crate) fn new(reliable: bool) -> ServerNonInvite {
        ServerNonInvite {
            state: State::Trying,
            reliable,
            last: None,
            j: None,
        }
    }

    pub(crate) fn is_terminated(&self) -> bool {
        self.state == State::Terminated
    }

    pub(crate) fn is_final(&self) -> bool {
        matches!(self.state, State::Completed | State::Terminated)
    }

    /// A retransmitted request: the last response again (none while Trying).
    pub(crate) fn on_retransmission(&self) -> Option<Bytes> {
        match self.state {
            State::Completed => self.last.clone(),
            _ => None,
        }
    }

    /// A final response goes upstream. False (do not send) if one already went.
    pub(crate) fn on_final(&mut self, resp: Bytes, now: Instant, timers: &mut Timers) -> bool {
        if self.is_final() {
            return false;
        }
        if self.reliable {
            self.state = State::Terminated;
        } else {
            self.state = State::Completed;
            self.last = Some(resp);
            self.j = timers.arm(TimerKind::J, now + timers.cfg().t1x64());
        }
        true
    }

    /// Ends without a response (every branch timed out: RFC 4320 forbids the 408).
    pub(crate) fn abandon(&mut self) {
        self.state = State::Terminated;
        self.last = None;
    }

    /// Returns true when the timer ended the transaction.
    pub(crate) fn on_timer(&mut self, kind: TimerKind, at: Instant) -> bool {
        if kind == TimerKind::J && Timer::matches(&self.j, at) && self.state == State::Completed {
            self.state = State::Terminated;
            self.last = None;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn completed_answers_retransmissions_until_j() {
        let now = Instant::now();
        let mut t = Timers::new(TimerConfig::default());
        let mut s = ServerNonInvite::new(false);
        assert_eq!(s.on_retransmission(), None);
        assert!(s.on_final(Bytes::from_static(b"200"), now, &mut t));
        assert!(!s.on_final(Bytes::from_static(b"500"), now, &mut t));
        assert_eq!(s.on_retransmission(), Some(Bytes::from_static(b"200")));
        let j = t.drain().next().unwrap();
        assert_eq!(j.at, now + Duration::from_secs(32));
        assert!(!s.on_timer(TimerKind::J, now));
        assert!(s.on_timer(TimerKind::J, j.at));
        assert!(s.is_terminated());
    }

    #[test]
    fn reliable_terminates_at_once() {
        let mut t = Timers::new(TimerConfig::default());
        let mut s = ServerNonInvite::new(true);
        assert!(s.on_final(Bytes::from_static(b"200"), Instant::now(), &mut t));
        assert!(s.is_terminated());
        assert!(t.is_empty());
    }
}
