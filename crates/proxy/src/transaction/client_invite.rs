//! Client INVITE transaction (RFC 3261 §17.1.1, RFC 6026 §7.2).
//!
//! ```text
//! Calling --1xx--> Proceeding --2xx--> Accepted --M--> Terminated
//!    |  (A: retransmit over UDP,   `--3xx-6xx--> Completed --D--> Terminated
//!    |   B: timeout)                               (ACK each response copy)
//!    `--2xx / 3xx-6xx: as from Proceeding
//! ```
//! The ACK for a non-2xx is built by the caller (it needs the request); this machine says
//! when to send it. Retransmissions stop at the first provisional response.
//!
//! Over UDP, B is not queued on its own: A runs exactly as long as B matters (in
//! Calling), so its last firing is put at B's deadline and times out there. One queued
//! timer instead of two per INVITE, and most never fire while their branch exists.

use std::time::{Duration, Instant};

#[cfg(test)]
use super::TimerConfig;
use super::{Timer, TimerKind, Timers};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Calling,
    Proceeding,
    Completed,
    Accepted,
    Terminated,
}

#[derive(Debug)]
pub(crate) struct ClientInvite {
    state: State,
    reliable: bool,
    a_interval: Duration,
    a: Option<Instant>,
    /// Timer B's deadline: queued as its own timer over TCP, carried by A over UDP.
    b: Instant,
    d: Option<Instant>,
    m: Option<Instant>,
}

/// What a response means for the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResponseAction {
    /// A provisional: hand it to the proxy core.
    Provisional,
    /// A 2xx (first or retransmitted): forward upstream.
    Success,
    /// The first non-2xx final: send the ACK, hand the response to the core.
    Final,
    /// A retransmitted non-2xx final: send the ACK again, nothing else.
    AckAgain,
    /// Not for this state (e.g. a 1xx after the final): ignore.
    Ignore,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimerAction {
    None,
    /// Send the INVITE again (timer A).
    Retransmit,
    /// No response at all (timer B): the branch failed as 408.
    Timeout,
    Terminated,
}

impl ClientInvite {
    /// The INVITE has just been sent: arms A (UDP, carrying B) or B.
    pub(crate) fn start(reliable: bool, now: Instant, timers: &mut Timers) -> Self {
        let cfg = timers.cfg();
        let b = now + cfg.t1x64();
        let mut c = ClientInvite {
            state: State::Calling,
            reliable,
            a_interval: cfg.t1,
            a: None,
            b,
            d: None,
            m: None,
        };
        if reliable {
            timers.arm(TimerKind::B, b);
        } else {
            c.a = timers.arm(TimerKind::A, (now + cfg.t1).min(b));
        }
        c
    }

    pub(crate) fn state(&self) -> State {
        self.state
    }

    pub(crate) fn is_terminated(&self) -> bool {
        self.state == State::Terminated
    }

    /// Calling or Proceeding: no final response yet.
    pub(crate) fn is_pending(&self) -> bool {
        matches!(self.state, State::Calling | State::Proceeding)
    }

    pub(crate) fn on_response(
        &mut self,
        status: u16,
        now: Instant,
        timers: &mut Timers,
    ) -> ResponseAction {
        match (self.state, status) {
            (State::Calling | State::Proceeding, 100..=199) => {
                self.state = State::Proceeding;
                self.a = None;
                ResponseAction::Provisional
            }
            (State::Calling | State::Proceeding, 200..=299) => {
                self.state = State::Accepted;
                self.a = None;
                self.m = timers.arm(TimerKind::M, now + timers.cfg().t1x64());
                ResponseAction::Success
            }
            (State::Accepted, 200..=299) => ResponseAction::Success,
            (State::Calling | State::Proceeding, _) if status >= 300 => {
                self.state = State::Completed;
                self.a = None;
                if self.reliable {
                    // Timer D is 0 on reliable transports: nothing to absorb.
                    self.state = State::Terminated;
                } else {
                    self.d = timers.arm(TimerKind::D, now + timers.cfg().t1x64());
                }
                ResponseAction::Final
            }
            (State::Completed, 300..=699) => ResponseAction::AckAgain,
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
            TimerKind::A if Timer::matches(&self.a, at) && self.state == State::Calling => {
                if now >= self.b {
                    self.state = State::Terminated;
                    return TimerAction::Timeout;
                }
                self.a_interval *= 2;
                let next = now + self.a_interval;
                self.a = timers.arm(TimerKind::A, next.min(self.b));
                TimerAction::Retransmit
            }
            TimerKind::B if at == self.b && self.state == State::Calling => {
                self.state = State::Terminated;
                TimerAction::Timeout
            }
            TimerKind::D if Timer::matches(&self.d, at) && self.state == State::Completed => {
                self.state = State::Terminated;
                TimerAction::Terminated
            }
            TimerKind::M if Timer::matches(&self.m, at) && self.state == State::Accepted => {
                self.state = State::Terminated;
                TimerAction::Terminated
            }
            _ => TimerAction::None,
        }
    }

    /// The branch is given up without a final response (timer C after CANCEL, transport
    /// error).
    pub(crate) fn terminate(&mut self) {
        self.state = State::Terminated;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retransmits_doubling_until_provisional() {
        let now = Instant::now();
        let mut t = Timers::new(TimerConfig::default());
        let mut c = ClientInvite::start(false, now, &mut t);
        let armed: Vec<_> = t.drain().collect();
        assert_eq!(armed.len(), 1, "over UDP, A alone (it carries B)");
        let mut a = armed[0];
        assert_eq!(a.kind, TimerKind::A);
        let mut at = Vec::new();
        for _ in 0..3 {
            assert_eq!(
                c.on_timer(a.kind, a.at, a.at, &mut t),
                TimerAction::Retransmit
            );
            at.push((a.at - now).as_millis());
            a = t.drain().next().unwrap();
        }
        assert_eq!(at, vec![500, 1500, 3500]);
        assert_eq!(
            c.on_response(180, a.at, &mut t),
            ResponseAction::Provisional
        );
        assert_eq!(c.on_timer(a.kind, a.at, a.at, &mut t), TimerAction::None);
        assert!(t.is_empty(), "A stops at the provisional, and B with it");
        // B does not fire in Proceeding (timer C covers it).
        let b = now + Duration::from_secs(32);
        assert_eq!(c.on_timer(TimerKind::A, b, b, &mut t), TimerAction::None);
        assert!(c.is_pending());
    }

    #[test]
    fn over_udp_the_last_retransmission_timer_is_b() {
        let now = Instant::now();
        let mut t = Timers::new(TimerConfig::default());
        let mut c = ClientInvite::start(false, now, &mut t);
        let mut a = t.drain().next().unwrap();
        let mut fired = Vec::new();
        loop {
            fired.push((a.at - now).as_millis());
            match c.on_timer(a.kind, a.at, a.at, &mut t) {
                TimerAction::Retransmit => a = t.drain().next().unwrap(),
                action => {
                    assert_eq!(action, TimerAction::Timeout);
                    break;
                }
            }
        }
        assert_eq!(fired, vec![500, 1500, 3500, 7500, 15500, 31500, 32000]);
        assert!(c.is_terminated());
        assert!(t.is_empty());
    }

    #[test]
    fn a_retransmission_timer_handled_past_b_times_out() {
        let now = Instant::now();
        let mut t = Timers::new(TimerConfig::default());
        let mut c = ClientInvite::start(false, now, &mut t);
        let a = t.drain().next().unwrap();
        // The worker was held up: A of 0.5 s is handled at 40 s, past B.
        let late = now + Duration::from_secs(40);
        assert_eq!(c.on_timer(a.kind, a.at, late, &mut t), TimerAction::Timeout);
        assert!(t.is_empty());
    }

    #[test]
    fn non_2xx_acked_each_copy_then_d() {
        let now = Instant::now();
        let mut t = Timers::new(TimerConfig::default());
        let mut c = ClientInvite::start(false, now, &mut t);
        t.drain().count();
        assert_eq!(c.on_response(486, now, &mut t), ResponseAction::Final);
        assert_eq!(c.on_response(486, now, &mut t), ResponseAction::AckAgain);
        let d = t.drain().next().unwrap();
        assert_eq!(d.kind, TimerKind::D);
        assert_eq!(
            c.on_timer(d.kind, d.at, d.at, &mut t),
            TimerAction::Terminated
        );
    }

    #[test]
    fn timeout_in_calling() {
        let now = Instant::now();
        let mut t = Timers::new(TimerConfig::default());
        let mut c = ClientInvite::start(true, now, &mut t);
        let armed: Vec<_> = t.drain().collect();
        assert_eq!(armed.len(), 1, "no A over TCP");
        assert_eq!(
            c.on_timer(TimerKind::B, armed[0].at, armed[0].at, &mut t),
            TimerAction::Timeout
        );
    }

    #[test]
    fn accepted_forwards_2xx_retransmissions() {
        let now = Instant::now();
        let mut t = Timers::new(TimerConfig::default());
        let mut c = ClientInvite::start(false, now, &mut t);
        assert_eq!(c.on_response(200, now, &mut t), ResponseAction::Success);
        assert_eq!(c.on_response(200, now, &mut t), ResponseAction::Success);
        assert_eq!(c.on_response(486, now, &mut t), ResponseAction::Ignore);
    }
}
