//! Client non-INVITE transaction (RFC 3261 §17.1.2), also used for the CANCELs we send.
//!
//! ```text
//! Trying --1xx--> Proceeding --final--> Completed --K--> Terminated
//!   (E: retransmit over UDP, doubling from T1 capped at T2; T2 in Proceeding;
//!    F: timeout)
//! ```
//! Over UDP, F is not queued on its own: E runs until the final response, exactly as
//! long as F matters, so E's last firing is put at F's deadline and times out there.

use std::time::{Duration, Instant};

#[cfg(test)]
use super::TimerConfig;
use super::{Timer, TimerKind, Timers};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

#[derive(Debug)]
pub(crate) struct ClientNonInvite {
    state: State,
    reliable: bool,
    e_interval: Duration,
    e: Option<Instant>,
    /// Timer F's deadline: queued as its own timer over TCP, carried by E over UDP.
    f: Instant,
    k: Option<Instant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResponseAction {
    Provisional,
    /// The first final response: hand it to the core.
    Final,
    /// A retransmission, or a response after the final: absorbed.
    Ignore,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimerAction {
    None,
    Retransmit,
    /// Timer F: no final response.
    Timeout,
    Terminated,
}

impl ClientNonInvite {
    pub(crate) fn start(reliable: bool, now: Instant, timers: &mut Timers) -> Self {
        let cfg = timers.cfg();
        let f = now + cfg.t1x64();
        let mut c = ClientNonInvite {
            state: State::Trying,
            reliable,
            e_interval: cfg.t1,
            e: None,
            f,
            k: None,
        };
        if reliable {
            timers.arm(TimerKind::F, f);
        } else {
            c.e = timers.arm(TimerKind::E, (now + cfg.t1).min(f));
        }
        c
    }

    pub(crate) fn is_terminated(&self) -> bool {
        self.state == State::Terminated
    }

    pub(crate) fn is_pending(&self) -> bool {
        matches!(self.state, State::Trying | State::Proceeding)
    }

    pub(crate) fn on_response(
        &mut self,
        status: u16,
        now: Instant,
        timers: &mut Timers,
    ) -> ResponseAction {
        match (self.state, status) {
            (State::Trying | State::Proceeding, 100..=199) => {
                self.state = State::Proceeding;
                ResponseAction::Provisional
            }
            (State::Trying | State::Proceeding, _) => {
                self.e = None;
                if self.reliable {
                    self.state = State::Terminated;
                } else {
                    self.state = State::Completed;
                    self.k = timers.arm(TimerKind::K, now + timers.cfg().t4);
                }
                ResponseAction::Final
            }
            _ => ResponseAction::Ignore,
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
            TimerKind::E if Timer::matches(&self.e, at) && self.is_pending() => {
                if now >= self.f {
                    self.state = State::Terminated;
                    return TimerAction::Timeout;
                }
                let t2 = timers.cfg().t2;
                self.e_interval = if self.state == State::Proceeding {
                    t2
                } else {
                    (self.e_interval * 2).min(t2)
                };
                let next = now + self.e_interval;
                self.e = timers.arm(TimerKind::E, next.min(self.f));
                TimerAction::Retransmit
            }
            TimerKind::F if at == self.f && self.is_pending() => {
                self.state = State::Terminated;
                TimerAction::Timeout
            }
            TimerKind::K if Timer::matches(&self.k, at) && self.state == State::Completed => {
                self.state = State::Terminated;
                TimerAction::Terminated
            }
            _ => TimerAction::None,
        }
    }

    pub(crate) fn terminate(&mut self) {
        self.state = State::Terminated;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retransmits_capped_at_t2_then_f() {
        let now = Instant::now();
        let mut t = Timers::new(TimerConfig::default());
        let mut c = ClientNonInvite::start(false, now, &mut t);
        let armed: Vec<_> = t.drain().collect();
        assert_eq!(armed.len(), 1, "over UDP, E alone (it carries F)");
        let mut e = armed[0];
        let mut offsets = Vec::new();
        loop {
            offsets.push((e.at - now).as_millis());
            match c.on_timer(e.kind, e.at, e.at, &mut t) {
                TimerAction::Retransmit => e = t.drain().next().unwrap(),
                action => {
                    assert_eq!(action, TimerAction::Timeout);
                    break;
                }
            }
        }
        assert_eq!(
            offsets,
            [500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500, 32000]
        );
        assert!(c.is_terminated());
    }

    #[test]
    fn e_stays_at_t2_in_proceeding_and_f_still_applies() {
        let now = Instant::now();
        let mut t = Timers::new(TimerConfig::default());
        let mut c = ClientNonInvite::start(false, now, &mut t);
        let e = t.drain().next().unwrap();
        assert_eq!(c.on_response(100, now, &mut t), ResponseAction::Provisional);
        assert_eq!(
            c.on_timer(e.kind, e.at, e.at, &mut t),
            TimerAction::Retransmit
        );
        let e = t.drain().next().unwrap();
        assert_eq!(e.at - now, Duration::from_millis(4500));
        let late = now + Duration::from_secs(33);
        assert_eq!(c.on_timer(e.kind, e.at, late, &mut t), TimerAction::Timeout);
    }

    #[test]
    fn over_tcp_f_alone() {
        let now = Instant::now();
        let mut t = Timers::new(TimerConfig::default());
        let mut c = ClientNonInvite::start(true, now, &mut t);
        let armed: Vec<_> = t.drain().collect();
        assert_eq!(armed.len(), 1);
        assert_eq!(armed[0].kind, TimerKind::F);
        let f = armed[0];
        assert_eq!(c.on_timer(f.kind, f.at, f.at, &mut t), TimerAction::Timeout);
    }

    #[test]
    fn final_then_k() {
        let now = Instant::now();
        let mut t = Timers::new(TimerConfig::default());
        let mut c = ClientNonInvite::start(false, now, &mut t);
        t.drain().count();
        assert_eq!(c.on_response(100, now, &mut t), ResponseAction::Provisional);
        assert_eq!(c.on_response(200, now, &mut t), ResponseAction::Final);
        assert_eq!(c.on_response(200, now, &mut t), ResponseAction::Ignore);
        let k = t.drain().next().unwrap();
        assert_eq!(k.at, now + Duration::from_secs(5));
        assert_eq!(
            c.on_timer(k.kind, k.at, k.at, &mut t),
            TimerAction::Terminated
        );
    }
}
