//! The NG client: which rtpengine instance a request goes to, its retransmissions, and
//! failover when an instance stays silent. A plain value on a virtual clock: the caller
//! sends what it returns, hands it the replies and calls [`NgClient::on_timeout`] at
//! [`NgClient::poll_timeout`].
//!
//! ```text
//! request ──> Waiting{instance, tries left} ──reply from that instance──> done (reply out)
//!               │ timeout, tries left: Resend to the same instance
//!               │ timeout, none left: instance Down for `down_for`;
//!               │   next Up instance not yet tried: Failover (the call is re-pinned)
//!               └─ none: Failed
//! ```
//! A call sticks to one instance (rtpengine keeps the call's ports there): the first
//! request picks one by a weighted hash of the call key, later ones reuse it until
//! [`NgClient::forget`], unless it went down. A finished request is forgotten at once,
//! so a late or duplicate reply finds nothing and is dropped.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::ng::{self, Reply};

/// One rtpengine control address and its share of new calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Instance {
    /// The NG control socket.
    pub(crate) address: SocketAddr,
    /// Relative share of new calls; 0 takes none.
    pub(crate) weight: u32,
}

/// Timing of requests and of the down state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NgConfig {
    /// How long to wait for a reply before sending again.
    pub(crate) timeout: Duration,
    /// Sends after the first to the same instance before it counts as down.
    pub(crate) retries: u32,
    /// How long a silent instance is skipped.
    pub(crate) down_for: Duration,
}

/// Identifies a request in flight; on the wire `<seed hex>_<n>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Cookie(pub(crate) u64);

/// A datagram to send for a new request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Send {
    /// The instance chosen.
    pub(crate) to: SocketAddr,
    /// `<cookie> <body>`.
    pub(crate) data: Bytes,
    /// What the reply or the failure will be reported under.
    pub(crate) cookie: Cookie,
}

/// No instance is up (or none is configured): the request was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unavailable;

/// What a timeout asks the caller to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    /// No reply yet: send the same datagram to the same instance again.
    Resend {
        /// The request.
        cookie: Cookie,
        /// The instance.
        to: SocketAddr,
        /// The datagram.
        data: Bytes,
    },
    /// The instance stayed silent and is now down: send to the next one.
    Failover {
        /// The request.
        cookie: Cookie,
        /// The instance now tried (the call is pinned to it).
        to: SocketAddr,
        /// The datagram.
        data: Bytes,
    },
    /// No instance answered: the request failed.
    Failed {
        /// The request.
        cookie: Cookie,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    Up,
    /// Skipped until `until`; up again from then on without a probe.
    Down {
        until: Instant,
    },
}

#[derive(Debug)]
struct Member {
    instance: Instance,
    health: Health,
}

impl Member {
    fn is_up(&self, now: Instant) -> bool {
        match self.health {
            Health::Up => true,
            Health::Down { until } => now >= until,
        }
    }
}

/// A request in flight. Finished requests are removed, so this has one state.
#[derive(Debug)]
enum Request {
    Waiting {
        call_key: u64,
        /// Index of the instance it was last sent to: only its reply counts.
        instance: usize,
        data: Bytes,
        /// Sends left to this instance before it counts as down.
        tries_left: u32,
        deadline: Instant,
        /// Instances already given up on for this request (bounded by their count).
        tried: Vec<usize>,
    },
}

/// The NG client over a fixed list of instances.
#[derive(Debug)]
pub(crate) struct NgClient {
    members: Vec<Member>,
    config: NgConfig,
    /// Cookie prefix: differs per process start (the edge passes e.g. the start time), as
    /// rtpengine answers a cookie it has seen recently from its cache without acting.
    seed: u64,
    next: u64,
    pending: HashMap<Cookie, Request>,
    deadlines: BTreeSet<(Instant, Cookie)>,
    /// Call key → instance index.
    pinned: HashMap<u64, usize>,
}

impl NgClient {
    /// A client over `instances` (order matters only for ties); `seed` makes cookies of
    /// this process differ from those of an earlier one.
    pub(crate) fn new(instances: &[Instance], config: NgConfig, seed: u64) -> NgClient {
        NgClient {
            members: instances
                .iter()
                .map(|&instance| Member {
                    instance,
                    health: Health::Up,
                })
                .collect(),
            config,
            seed,
            next: 0,
            pending: HashMap::new(),
            deadlines: BTreeSet::new(),
            pinned: HashMap::new(),
        }
    }

    /// Sends `body` (an NG dictionary, see `ng.rs`) for the call `call_key` to the call's
    /// instance, choosing and pinning one if it has none or its own is down.
    pub(crate) fn request(
        &mut self,
        call_key: u64,
        body: &[u8],
        now: Instant,
    ) -> Result<Send, Unavailable> {
        let instance = match self.pinned.get(&call_key) {
            Some(&i) if self.members[i].is_up(now) => i,
            _ => self.choose(call_key, &[], now).ok_or(Unavailable)?,
        };
        self.pinned.insert(call_key, instance);
        self.next = self.next.wrapping_add(1);
        let cookie = Cookie(self.next);
        let data = ng::datagram(self.wire_cookie(cookie).as_bytes(), body);
        let deadline = now + self.config.timeout;
        self.pending.insert(
            cookie,
            Request::Waiting {
                call_key,
                instance,
                data: data.clone(),
                tries_left: self.config.retries,
                deadline,
                tried: Vec::new(),
            },
        );
        self.deadlines.insert((deadline, cookie));
        Ok(Send {
            to: self.members[instance].instance.address,
            data,
            cookie,
        })
    }

    /// A datagram from `from`: the reply to a request in flight when its cookie is ours
    /// and it comes from the instance the request was last sent to. Anything else (late,
    /// duplicate, foreign, spoofed from another address, unreadable) is dropped.
    pub(crate) fn on_reply(
        &mut self,
        from: SocketAddr,
        datagram: &[u8],
        _now: Instant,
    ) -> Option<(Cookie, Reply)> {
        let (wire, _) = ng::split_cookie(datagram)?;
        let cookie = self.parse_cookie(wire)?;
        let Request::Waiting {
            instance, deadline, ..
        } = self.pending.get(&cookie)?;
        let (instance, deadline) = (*instance, *deadline);
        if self.members[instance].instance.address != from {
            return None;
        }
        let reply = Reply::parse(datagram).ok()?;
        self.pending.remove(&cookie);
        self.deadlines.remove(&(deadline, cookie));
        // It answered: up again, whatever its down period said.
        self.members[instance].health = Health::Up;
        Some((cookie, reply))
    }

    /// The earliest deadline of a request in flight.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.first().map(|(at, _)| *at)
    }

    /// Moves every request whose deadline is at or before `now` on.
    pub(crate) fn on_timeout(&mut self, now: Instant) -> Vec<Event> {
        let mut events = Vec::new();
        // Bounded: each pass removes one deadline, and at most one is added per request.
        while let Some(&(at, cookie)) = self.deadlines.first() {
            if at > now {
                break;
            }
            self.deadlines.remove(&(at, cookie));
            if let Some(event) = self.expire(cookie, now) {
                events.push(event);
            }
        }
        events
    }

    /// The instance at `address` is unreachable (an ICMP error for a request sent to it):
    /// it is down now, and every request waiting on it moves on at once, as if its
    /// retries had run out (to the next instance, or failed).
    pub(crate) fn on_unreachable(&mut self, address: SocketAddr, now: Instant) -> Vec<Event> {
        let Some(idx) = self
            .members
            .iter()
            .position(|m| m.instance.address == address)
        else {
            return Vec::new();
        };
        let waiting: Vec<Cookie> = self
            .pending
            .iter()
            .filter(|(_, r)| matches!(r, Request::Waiting { instance, .. } if *instance == idx))
            .map(|(c, _)| *c)
            .collect();
        self.members[idx].health = Health::Down {
            until: now + self.config.down_for,
        };
        let mut events = Vec::new();
        for cookie in waiting {
            if let Some(Request::Waiting {
                tries_left,
                deadline,
                ..
            }) = self.pending.get_mut(&cookie)
            {
                self.deadlines.remove(&(*deadline, cookie));
                *tries_left = 0;
            }
            events.extend(self.expire(cookie, now));
        }
        events
    }

    /// The call is over: its pinning is dropped (requests still in flight run out).
    pub(crate) fn forget(&mut self, call_key: u64) {
        self.pinned.remove(&call_key);
    }

    /// Is the instance at `address` taking requests at `now` (not skipped after a
    /// silence)? False for an address that is not one of ours.
    pub(crate) fn is_up(&self, address: SocketAddr, now: Instant) -> bool {
        self.members
            .iter()
            .any(|m| m.instance.address == address && m.is_up(now))
    }

    /// Requests in flight and pinned calls (for tests and metrics).
    pub(crate) fn sizes(&self) -> (usize, usize) {
        (self.pending.len(), self.pinned.len())
    }

    fn expire(&mut self, cookie: Cookie, now: Instant) -> Option<Event> {
        let Request::Waiting {
            call_key,
            instance,
            data,
            tries_left,
            deadline,
            tried,
        } = self.pending.get_mut(&cookie)?;
        let to_addr = self.members[*instance].instance.address;
        if *tries_left > 0 {
            *tries_left -= 1;
            *deadline = now + self.config.timeout;
            self.deadlines.insert((*deadline, cookie));
            return Some(Event::Resend {
                cookie,
                to: to_addr,
                data: data.clone(),
            });
        }
        let (call_key, failed) = (*call_key, *instance);
        tried.push(failed);
        let tried = tried.clone();
        self.members[failed].health = Health::Down {
            until: now + self.config.down_for,
        };
        let Some(next) = self.choose(call_key, &tried, now) else {
            self.pending.remove(&cookie);
            return Some(Event::Failed { cookie });
        };
        self.pinned.insert(call_key, next);
        let timeout = self.config.timeout;
        let retries = self.config.retries;
        let Some(Request::Waiting {
            instance,
            data,
            tries_left,
            deadline,
            ..
        }) = self.pending.get_mut(&cookie)
        else {
            return None;
        };
        *instance = next;
        *tries_left = retries;
        *deadline = now + timeout;
        self.deadlines.insert((*deadline, cookie));
        Some(Event::Failover {
            cookie,
            to: self.members[next].instance.address,
            data: data.clone(),
        })
    }

    /// An up instance with weight, not in `skip`, chosen by a hash of the call key
    /// weighted by the instances' shares: the same call maps to the same instance while
    /// the set of up instances stays the same.
    fn choose(&self, call_key: u64, skip: &[usize], now: Instant) -> Option<usize> {
        let usable = |i: &usize| {
            let m = &self.members[*i];
            m.instance.weight > 0 && m.is_up(now) && !skip.contains(i)
        };
        let total: u64 = (0..self.members.len())
            .filter(usable)
            .map(|i| u64::from(self.members[i].instance.weight))
            .sum();
        if total == 0 {
            return None;
        }
        let mut point = mix(call_key) % total;
        for i in (0..self.members.len()).filter(usable) {
            let w = u64::from(self.members[i].instance.weight);
            if point < w {
                return Some(i);
            }
            point -= w;
        }
        None
    }

    fn wire_cookie(&self, cookie: Cookie) -> String {
        format!("{:x}_{}", self.seed, cookie.0)
    }

    /// Our cookie back from the wire, or `None` when it is not one of this process's.
    fn parse_cookie(&self, wire: &[u8]) -> Option<Cookie> {
        let text = std::str::from_utf8(wire).ok()?;
        let (seed, n) = text.split_once('_')?;
        if u64::from_str_radix(seed, 16).ok()? != self.seed {
            return None;
        }
        n.parse().ok().map(Cookie)
    }
}

/// SplitMix64's finaliser: spreads consecutive call keys over the whole range.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::ng::Outcome;

    const MS: Duration = Duration::from_millis(1);

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn config() -> NgConfig {
        NgConfig {
            timeout: 1000 * MS,
            retries: 2,
            down_for: Duration::from_secs(30),
        }
    }

    fn client(ports: &[(u16, u32)]) -> NgClient {
        let instances: Vec<Instance> = ports
            .iter()
            .map(|&(p, weight)| Instance {
                address: addr(p),
                weight,
            })
            .collect();
        NgClient::new(&instances, config(), 0xabc)
    }

    /// The reply rtpengine would send to `sent`: same cookie, `result: ok`.
    fn ok_reply(data: &[u8]) -> Vec<u8> {
        let (cookie, _) = ng::split_cookie(data).unwrap();
        ng::datagram(cookie, b"d6:result2:oke").to_vec()
    }

    /// A call key the weighted hash sends to instance `want` of a two-instance client.
    fn key_for(c: &NgClient, want: usize, now: Instant) -> u64 {
        (0..1000)
            .find(|k| c.choose(*k, &[], now) == Some(want))
            .unwrap()
    }

    #[test]
    fn an_unreachable_instance_fails_over_at_once_and_stays_down() {
        let t0 = Instant::now();
        let mut c = client(&[(2223, 1), (2224, 1)]);
        let key = key_for(&c, 0, t0);
        let s = c.request(key, &ng::ping(), t0).unwrap();
        assert_eq!(s.to, addr(2223));
        // An ICMP error for another address changes nothing.
        assert!(c.on_unreachable(addr(9999), t0).is_empty());
        let ev = c.on_unreachable(addr(2223), t0 + MS);
        assert!(
            matches!(&ev[..], [Event::Failover { to, .. }] if *to == addr(2224)),
            "{ev:?}"
        );
        assert!(!c.is_up(addr(2223), t0 + MS));
        assert_eq!(
            c.request(key, &ng::ping(), t0 + 2 * MS).unwrap().to,
            addr(2224)
        );
        // The last instance unreachable too: the request fails now, not after its retries.
        let ev = c.on_unreachable(addr(2224), t0 + 3 * MS);
        assert_eq!(ev.len(), 2);
        assert!(
            ev.iter().all(|e| matches!(e, Event::Failed { .. })),
            "{ev:?}"
        );
        assert_eq!(c.sizes().0, 0);
    }

    #[test]
    fn a_reply_from_the_instance_completes_the_request() {
        let t0 = Instant::now();
        let mut c = client(&[(2223, 1)]);
        let s = c.request(7, &ng::ping(), t0).unwrap();
        assert_eq!(s.to, addr(2223));
        assert!(s.data.starts_with(b"abc_1 d7:command4:ping"));
        assert_eq!(c.poll_timeout(), Some(t0 + 1000 * MS));
        let (cookie, reply) = c.on_reply(addr(2223), &ok_reply(&s.data), t0).unwrap();
        assert_eq!(cookie, s.cookie);
        assert_eq!(reply.result, Outcome::Ok { sdp: None });
        assert_eq!(c.poll_timeout(), None);
        assert!(c.on_timeout(t0 + Duration::from_secs(60)).is_empty());
    }

    #[test]
    fn silence_is_retried_on_the_same_instance() {
        let t0 = Instant::now();
        let mut c = client(&[(2223, 1)]);
        let s = c.request(7, &ng::ping(), t0).unwrap();
        assert!(c.on_timeout(t0 + 999 * MS).is_empty());
        let ev = c.on_timeout(t0 + 1000 * MS);
        assert_eq!(
            ev,
            vec![Event::Resend {
                cookie: s.cookie,
                to: addr(2223),
                data: s.data.clone()
            }]
        );
        assert_eq!(c.poll_timeout(), Some(t0 + 2000 * MS));
        assert!(matches!(
            c.on_timeout(t0 + 2000 * MS)[..],
            [Event::Resend { .. }]
        ));
        // The reply to a retransmission still counts.
        assert!(c
            .on_reply(addr(2223), &ok_reply(&s.data), t0 + 2500 * MS)
            .is_some());
    }

    #[test]
    fn a_silent_instance_fails_over_to_the_next_and_the_call_follows() {
        let t0 = Instant::now();
        let mut c = client(&[(2223, 1), (2224, 1)]);
        let key = key_for(&c, 0, t0);
        let s = c.request(key, &ng::ping(), t0).unwrap();
        assert_eq!(s.to, addr(2223));
        c.on_timeout(t0 + 1000 * MS);
        c.on_timeout(t0 + 2000 * MS);
        let ev = c.on_timeout(t0 + 3000 * MS);
        assert_eq!(
            ev,
            vec![Event::Failover {
                cookie: s.cookie,
                to: addr(2224),
                data: s.data.clone()
            }]
        );
        // The first instance's late reply no longer counts; the second's does.
        assert!(c
            .on_reply(addr(2223), &ok_reply(&s.data), t0 + 3100 * MS)
            .is_none());
        assert!(c
            .on_reply(addr(2224), &ok_reply(&s.data), t0 + 3200 * MS)
            .is_some());
        // The call is re-pinned: its next request goes to the second instance at once.
        let s2 = c.request(key, &ng::ping(), t0 + 4000 * MS).unwrap();
        assert_eq!(s2.to, addr(2224));
    }

    #[test]
    fn a_down_instance_is_skipped_for_down_for_then_used_again() {
        let t0 = Instant::now();
        let mut c = client(&[(2223, 1), (2224, 1)]);
        let key = key_for(&c, 0, t0);
        let s = c.request(key, &ng::ping(), t0).unwrap();
        for n in 1..=3 {
            c.on_timeout(t0 + n * 1000 * MS);
        }
        let down_at = t0 + 3000 * MS;
        c.forget(key);
        // A new call that would hash to the first instance goes to the second meanwhile.
        let during = c
            .request(key, &ng::ping(), down_at + 29 * 1000 * MS)
            .unwrap();
        assert_eq!(during.to, addr(2224));
        c.forget(key);
        let after = c
            .request(key, &ng::ping(), down_at + 30 * 1000 * MS)
            .unwrap();
        assert_eq!(after.to, addr(2223));
        let _ = s;
    }

    #[test]
    fn no_instance_answering_fails_the_request_and_new_ones_are_refused() {
        let t0 = Instant::now();
        let mut c = client(&[(2223, 1), (2224, 1)]);
        let s = c.request(1, &ng::ping(), t0).unwrap();
        let mut failed = Vec::new();
        let mut now = t0;
        // Bounded: 2 instances × 3 sends.
        for _ in 0..10 {
            let Some(at) = c.poll_timeout() else { break };
            now = at;
            failed.extend(c.on_timeout(now));
        }
        assert_eq!(failed.len(), 6, "{failed:?}");
        assert_eq!(failed.last(), Some(&Event::Failed { cookie: s.cookie }));
        assert_eq!(c.poll_timeout(), None);
        assert_eq!(c.request(2, &ng::ping(), now), Err(Unavailable));
        assert_eq!(
            NgClient::new(&[], config(), 1).request(1, b"x", t0),
            Err(Unavailable)
        );
    }

    #[test]
    fn a_call_sticks_to_its_instance() {
        let t0 = Instant::now();
        let mut c = client(&[(2223, 1), (2224, 1), (2225, 1)]);
        let mut seen = BTreeSet::new();
        for key in 0..300u64 {
            let first = c.request(key, &ng::ping(), t0).unwrap().to;
            for _ in 0..3 {
                assert_eq!(c.request(key, &ng::ping(), t0).unwrap().to, first);
            }
            seen.insert(first);
        }
        assert_eq!(seen.len(), 3, "calls spread over all instances");
    }

    #[test]
    fn weights_share_new_calls() {
        let t0 = Instant::now();
        let c = client(&[(2223, 3), (2224, 1), (2225, 0)]);
        let mut counts = [0u32; 3];
        for key in 0..4000u64 {
            counts[c.choose(key, &[], t0).unwrap()] += 1;
        }
        assert_eq!(counts[2], 0, "weight 0 takes no calls");
        assert!((2800..3200).contains(&counts[0]), "{counts:?}");
    }

    #[test]
    fn late_duplicate_and_misaddressed_replies_are_dropped() {
        let t0 = Instant::now();
        let mut c = client(&[(2223, 1)]);
        let s = c.request(7, &ng::ping(), t0).unwrap();
        let reply = ok_reply(&s.data);
        assert!(
            c.on_reply(addr(9999), &reply, t0).is_none(),
            "wrong address"
        );
        assert!(c.on_reply(addr(2223), b"abc_1 garbage", t0).is_none());
        assert!(c
            .on_reply(addr(2223), b"ffff_1 d6:result2:oke", t0)
            .is_none());
        assert!(c.on_reply(addr(2223), &reply, t0).is_some());
        assert!(c.on_reply(addr(2223), &reply, t0).is_none(), "duplicate");
        // A request that failed: its reply arriving later is dropped too.
        let s2 = c.request(8, &ng::ping(), t0).unwrap();
        for n in 1..=3 {
            c.on_timeout(t0 + n * 1000 * MS);
        }
        assert!(c
            .on_reply(addr(2223), &ok_reply(&s2.data), t0 + 4000 * MS)
            .is_none());
    }

    #[test]
    fn ten_thousand_cycles_leave_nothing_behind() {
        let t0 = Instant::now();
        let mut c = client(&[(2223, 1), (2224, 2)]);
        for key in 0..10_000u64 {
            let now = t0 + key as u32 * MS;
            let s = c.request(key, &ng::ping(), now).unwrap();
            c.on_reply(s.to, &ok_reply(&s.data), now).unwrap();
            c.forget(key);
        }
        assert_eq!(c.sizes(), (0, 0));
        assert_eq!(c.deadlines.len(), 0);
    }
}
