//! Server INVITE transaction (RFC 3261 §17.2.1, RFC 6026 §7.1).
//!
//! ```text
//! Proceeding --non-2xx final--> Completed --ACK--> Confirmed --I--> Terminated
//!      |                            `--H--> Terminated
//!      `--2xx--> Accepted --L--> Terminated
//! ```

use std::time::{Duration, Instant};

use bytes::Bytes;

#[cfg(test)]
use super::TimerConfig;
use super::{Timer, TimerKind, Timers};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Proceeding,
    Completed,
    Confirmed,
    Accepted,
    Terminated,
}

#[derive(Debug)]
pub(crate) struct ServerInvite {
    state: State,
    reliable: bool,
    /// Last provisional, or the final non-2xx: what a retransmitted INVITE gets again.
    last: Option<Bytes>,
    g_interval: Duration,
    g: Option<Instant>,
    h: Option<Instant>,
    i: Option<Instant>,
    l: Option<Instant>,
}

/// What a fired timer asks for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TimerAction {
    None,
    /// Send the final response again (timer G).
    Retransmit(Bytes),
    /// The ACK never came (timer H).
    AckTimeout,
    Terminated,
}

impl ServerInvite {
    pub(crate) fn new(reliable: bool) -> ServerInvite {
        ServerInvite {
            state: State::Proceeding,
            reliable,
            last: None,
            // Set with the final response (T1, doubling).
            g_interval: Duration::ZERO,
            g: None,
            h: None,
            i: None,
            l: None,
        }
    }

    #[cfg(test)]
    pub(crate) fn state(&self) -> State {
        self.state
    }

    pub(crate) fn is_terminated(&self) -> bool {
        self.state == State::Terminated
    }

    /// Has a final response been sent?
    pub(crate) fn is_final(&self) -> bool {
        self.state != State::Proceeding
    }

    /// The INVITE was retransmitted: the response to send again, if any. In Confirmed and
    /// Accepted the retransmission is absorbed silently (RFC 6026: the 2xx is the UAS's
    /// to retransmit).
    pub(crate) fn on_retransmission(&self) -> Option<Bytes> {
        match self.state {
            State::Proceeding | State::Completed => self.last.clone(),
            _ => None,
        }
    }

    /// A provisional response goes upstream; remembered for retransmitted INVITEs.
    pub(crate) fn on_provisional(&mut self, resp: Bytes) -> bool {
        if self.state != State::Proceeding {
            return false;
        }
        self.last = Some(resp);
        true
    }

    /// A 2xx goes upstream (statelessly; retransmissions too): move to Accepted.
    pub(crate) fn on_2xx(&mut self, now: Instant, timers: &mut Timers) {
        if matches!(self.state, State::Proceeding) {
            self.state = State::Accepted;
            self.last = None;
            self.l = timers.arm(TimerKind::L, now + timers.cfg().t1x64());
        }
    }

    /// A final non-2xx goes upstream: remember it for retransmission. Returns false (and
    /// the response must not be sent) if a final response was already sent.
    pub(crate) fn on_final(&mut self, resp: Bytes, now: Instant, timers: &mut Timers) -> bool {
        if self.state != State::Proceeding {
            return false;
        }
        self.state = State::Completed;
        self.last = Some(resp);
        let cfg = timers.cfg();
        if !self.reliable {
            self.g_interval = cfg.t1;
            self.g = timers.arm(TimerKind::G, now + self.g_interval);
        }
        self.h = timers.arm(TimerKind::H, now + cfg.t1x64());
        true
    }

    /// An ACK matched this transaction. Returns true if it was the hop-by-hop ACK for our
    /// non-2xx final (absorbed); false means it is not ours to absorb.
    pub(crate) fn on_ack(&mut self, now: Instant, timers: &mut Timers) -> bool {
        match self.state {
            State::Completed => {
                self.state = State::Confirmed;
                self.last = None;
                if self.reliable {
                    self.state = State::Terminated;
                } else {
                    self.i = timers.arm(TimerKind::I, now + timers.cfg().t4);
                }
                true
            }
            State::Confirmed => true,
            _ => false,
        }
    }

    pub(crate) fn on_timer(
        &mut self,
        kind: TimerKind,
        at: Instant,
        now: Instant,
        timers: &mut Timers,
    ) -> TimerAction {
        match kind {
            TimerKind::G if Timer::matches(&self.g, at) && self.state == State::Completed => {
                self.g_interval = (self.g_interval * 2).min(timers.cfg().t2);
                self.g = timers.arm(TimerKind::G, now + self.g_interval);
                self.last
                    .clone()
                    .map_or(TimerAction::None, TimerAction::Retransmit)
            }
            TimerKind::H if Timer::matches(&self.h, at) && self.state == State::Completed => {
                self.terminate();
                TimerAction::AckTimeout
            }
            TimerKind::I if Timer::matches(&self.i, at) && self.state == State::Confirmed => {
                self.terminate();
                TimerAction::Terminated
            }
            TimerKind::L if Timer::matches(&self.l, at) && self.state == State::Accepted => {
                self.terminate();
                TimerAction::Terminated
            }
            _ => TimerAction::None,
        }
    }

    /// Ends the transaction (e.g. a non-INVITE-style abandon, or shutdown).
    pub(crate) fn terminate(&mut self) {
        self.state = State::Terminated;
        self.last = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> Instant {
        Instant::now()
    }

    #[test]
    fn final_retransmitted_by_g_until_ack_then_i() {
        let now = t0();
        let mut t = Timers::new(TimerConfig::default());
        let mut s = ServerInvite::new(false);
        s.on_provisional(Bytes::from_static(b"100"));
        assert_eq!(s.on_retransmission(), Some(Bytes::from_static(b"100")));
        assert!(s.on_final(Bytes::from_static(b"486"), now, &mut t));
        let armed: Vec<_> = t.drain().collect();
        assert_eq!(armed.len(), 2);
        let g = armed[0];
        assert_eq!(g.at, now + Duration::from_millis(500));
        let act = s.on_timer(TimerKind::G, g.at, g.at, &mut t);
        assert_eq!(act, TimerAction::Retransmit(Bytes::from_static(b"486")));
        let g2 = t.drain().next().unwrap();
        assert_eq!(g2.at, g.at + Duration::from_secs(1));
        assert!(s.on_ack(g2.at, &mut t));
        assert_eq!(s.state(), State::Confirmed);
        // G after the ACK is stale.
        assert_eq!(
            s.on_timer(TimerKind::G, g2.at, g2.at, &mut t),
            TimerAction::None
        );
        let i = t.drain().next().unwrap();
        assert_eq!(i.kind, TimerKind::I);
        assert_eq!(
            s.on_timer(TimerKind::I, i.at, i.at, &mut t),
            TimerAction::Terminated
        );
    }

    #[test]
    fn g_interval_capped_at_t2() {
        let now = t0();
        let mut t = Timers::new(TimerConfig::default());
        let mut s = ServerInvite::new(false);
        s.on_final(Bytes::from_static(b"x"), now, &mut t);
        let mut g = t.drain().next().unwrap();
        let mut gaps = Vec::new();
        for _ in 0..6 {
            s.on_timer(TimerKind::G, g.at, g.at, &mut t);
            let next = t.drain().next().unwrap();
            gaps.push((next.at - g.at).as_millis());
            g = next;
        }
        assert_eq!(gaps, vec![1000, 2000, 4000, 4000, 4000, 4000]);
    }

    #[test]
    fn accepted_absorbs_and_ends_with_l() {
        let now = t0();
        let mut t = Timers::new(TimerConfig::default());
        let mut s = ServerInvite::new(true);
        s.on_2xx(now, &mut t);
        assert_eq!(s.state(), State::Accepted);
        assert_eq!(s.on_retransmission(), None);
        assert!(!s.on_final(Bytes::from_static(b"x"), now, &mut t));
        let l = t.drain().next().unwrap();
        assert_eq!(l.kind, TimerKind::L);
        assert_eq!(l.at, now + Duration::from_secs(32));
        s.on_timer(TimerKind::L, l.at, l.at, &mut t);
        assert!(s.is_terminated());
    }

    #[test]
    fn reliable_has_no_g_and_ack_terminates() {
        let now = t0();
        let mut t = Timers::new(TimerConfig::default());
        let mut s = ServerInvite::new(true);
        s.on_final(Bytes::from_static(b"x"), now, &mut t);
        let kinds: Vec<_> = t.drain().map(|x| x.kind).collect();
        assert_eq!(kinds, vec![TimerKind::H]);
        assert!(s.on_ack(now, &mut t));
        assert!(s.is_terminated());
    }
}
