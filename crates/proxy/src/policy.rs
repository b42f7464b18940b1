//! Routing policy values shared by the settings, the routing decisions and the metrics:
//! which way a call goes, why an attempt failed and when a failure moves on to the next
//! attempt. Base layer: it uses no other module of the crate.

use trunkstore_config::{FailoverOn, FailoverTrigger};

/// Which way a call goes (behaviour.md §4, §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    /// Carrier → our server.
    #[default]
    Inbound,
    /// Our server → carriers.
    Outbound,
    /// Our server → one of our DIDs.
    OnNet,
}

impl Direction {
    /// Its label in logs, call records and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
            Direction::OnNet => "onnet",
        }
    }

    /// The answer when the account has no trunk left (§6).
    pub fn trunk_refusal(self) -> (u16, &'static str) {
        match self {
            Direction::Outbound => (403, TRUNK_LIMIT_REASON),
            _ => (486, TRUNK_LIMIT_REASON),
        }
    }
}

/// Reason phrase of a call refused for trunks (§6).
pub(crate) const TRUNK_LIMIT_REASON: &str = "Trunk Limit Reached";

/// Why an attempt failed, for the failover rule (behaviour.md §4.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// A final response (>= 300) received from the target.
    Status(u16),
    /// `progress_timeout` or `timeout` expired (the proxy gave up on the attempt).
    Timeout,
    /// No response at all (timer B, timer C without a provisional), a transport error, or
    /// no address to send to.
    Unreachable,
}

/// When a failed attempt is followed by the next one: a set of final statuses plus the
/// timeout and unreachable conditions (the settings' `failover_on`). `Copy` and
/// allocation-free: one bit per status 300..=699.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailoverRule {
    statuses: [u64; 7],
    timeout: bool,
    unreachable: bool,
}

impl FailoverRule {
    /// Only when the target cannot be reached or times out (in-dialog hops).
    pub const UNREACHABLE: FailoverRule = FailoverRule {
        statuses: [0; 7],
        timeout: true,
        unreachable: true,
    };

    /// The default `failover_on`: 404, 408, 480, 5xx, timeout, unreachable.
    pub fn default_inbound() -> FailoverRule {
        FailoverRule::from_settings(&FailoverOn::default_list())
    }

    /// Carriers (§5.2): the next carrier on 408, 5xx, a timeout or no response; every
    /// other failure (486, 600, 603, other 4xx) goes back to the PBX.
    pub fn outbound() -> FailoverRule {
        let mut r = FailoverRule {
            statuses: [0; 7],
            timeout: true,
            unreachable: true,
        };
        r.set(408);
        (500..600).for_each(|s| r.set(s));
        r
    }

    /// `any`: every failure, busy included.
    pub fn any() -> FailoverRule {
        FailoverRule {
            statuses: [u64::MAX; 7],
            timeout: true,
            unreachable: true,
        }
    }

    /// The settings' `failover_on`, compiled once.
    pub fn from_settings(on: &FailoverOn) -> FailoverRule {
        let list = match on {
            FailoverOn::Any => return FailoverRule::any(),
            FailoverOn::List(l) => l,
        };
        let mut r = FailoverRule {
            statuses: [0; 7],
            timeout: false,
            unreachable: false,
        };
        for t in list {
            match *t {
                FailoverTrigger::Status(s) => r.set(s),
                FailoverTrigger::Class(c) => (c * 100..c * 100 + 100).for_each(|s| r.set(s)),
                FailoverTrigger::Timeout => r.timeout = true,
                FailoverTrigger::Unreachable => r.unreachable = true,
            }
        }
        r
    }

    fn set(&mut self, status: u16) {
        if let Some(i) = status.checked_sub(300).filter(|i| *i < 400) {
            self.statuses[usize::from(i / 64)] |= 1 << (i % 64);
        }
    }

    /// Should a final `status` from an attempt move on to the next one? Never for a 2xx
    /// (or anything below 300).
    pub fn on_status(self, status: u16) -> bool {
        match status.checked_sub(300).filter(|i| *i < 400) {
            Some(i) => self.statuses[usize::from(i / 64)] & (1 << (i % 64)) != 0,
            None => false,
        }
    }

    /// Does `failure` of an attempt move on to the next one?
    pub fn triggers(self, failure: Failure) -> bool {
        match failure {
            Failure::Status(s) => self.on_status(s),
            Failure::Timeout => self.timeout,
            Failure::Unreachable => self.unreachable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failover_rule_from_settings() {
        let d = FailoverRule::default_inbound();
        for s in [404, 408, 480, 500, 503, 599] {
            assert!(d.on_status(s), "{s}");
        }
        for s in [200, 302, 403, 486, 487, 600, 603] {
            assert!(!d.on_status(s), "{s}");
        }
        assert!(d.triggers(Failure::Timeout) && d.triggers(Failure::Unreachable));
        let any = FailoverRule::any();
        assert!(any.on_status(486) && any.on_status(603) && !any.on_status(200));
        let only =
            FailoverRule::from_settings(&FailoverOn::List(vec![FailoverTrigger::Status(486)]));
        assert!(only.on_status(486) && !only.on_status(503));
        assert!(!only.triggers(Failure::Timeout) && !only.triggers(Failure::Unreachable));
    }
}
