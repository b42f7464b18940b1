//! The proxy's one [`NgClient`], shared by every worker, with what each request in
//! flight is for. Only `process` calls ever take its lock: calls of `bypass` servers
//! never reach it.
//!
//! An NG reply may reach any worker (it comes back to the SIP UDP socket it was sent
//! from), so the requests in flight are shared, not per shard. The lock is held only
//! to move the client; never while a proxy transaction is locked by the same thread
//! *after* it (transaction, then relay: the only order used).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::client::{Cookie, Event, Instance, NgClient, NgConfig, Unavailable};
use super::ng::Reply;
use crate::keys::TxKey;

/// What a request in flight is for: where its reply goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// The offer of the request of this proxy transaction.
    Offer(TxKey),
    /// The answer in a response held by this proxy transaction.
    Answer(TxKey),
    /// A call is over; nothing waits for the reply.
    Delete,
}

impl Purpose {
    /// The NG command (metrics, logs).
    pub(crate) fn command(self) -> Command {
        match self {
            Purpose::Offer(_) => Command::Offer,
            Purpose::Answer(_) => Command::Answer,
            Purpose::Delete => Command::Delete,
        }
    }
}

/// The NG commands the proxy sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Command {
    Offer,
    Answer,
    Delete,
}

/// A request in flight.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Waiter {
    pub(crate) purpose: Purpose,
    /// When it was first sent (latency histogram).
    pub(crate) sent: Instant,
    /// The instance it went to first.
    pub(crate) instance: SocketAddr,
}

/// A request that ended: its reply, or `None` when no instance answered.
#[derive(Debug)]
pub(crate) struct Done {
    pub(crate) cookie: Cookie,
    pub(crate) waiter: Waiter,
    /// The instance that answered (it may differ from the first after a failover).
    pub(crate) from: SocketAddr,
    pub(crate) reply: Option<Reply>,
}

/// A datagram for an instance.
#[derive(Debug, Clone)]
pub(crate) struct Datagram {
    pub(crate) to: SocketAddr,
    pub(crate) data: Bytes,
}

/// A request sent: its datagram and the cookie its reply will carry.
#[derive(Debug, Clone)]
pub(crate) struct Sent {
    pub(crate) datagram: Datagram,
    pub(crate) cookie: Cookie,
}

/// What a timeout asks for: datagrams to send again (or to the next instance), and the
/// requests no instance answered.
#[derive(Debug, Default)]
pub(crate) struct Expired {
    pub(crate) resend: Vec<Datagram>,
    pub(crate) failed: Vec<Done>,
}

struct Inner {
    client: NgClient,
    waiting: HashMap<Cookie, Waiter>,
}

/// The NG client of the proxy and the requests in flight.
pub(crate) struct MediaRelay {
    inner: Mutex<Inner>,
    /// The configured control addresses: a datagram from one of them is an NG reply.
    addresses: Vec<SocketAddr>,
    /// The client's next deadline in nanoseconds after `epoch` (`u64::MAX`: none), kept
    /// beside the lock: every worker asks for it after every batch.
    next: AtomicU64,
    epoch: Instant,
}

impl MediaRelay {
    /// `None` when no rtpengine is configured (nothing to lock, ever).
    pub(crate) fn new(
        instances: &[(SocketAddr, u32)],
        timeout: Duration,
        retries: u32,
        down_for: Duration,
        seed: u64,
        epoch: Instant,
    ) -> Option<MediaRelay> {
        if instances.is_empty() {
            return None;
        }
        let list: Vec<Instance> = instances
            .iter()
            .map(|&(address, weight)| Instance { address, weight })
            .collect();
        let config = NgConfig {
            timeout,
            retries,
            down_for,
        };
        Some(MediaRelay {
            inner: Mutex::new(Inner {
                client: NgClient::new(&list, config, seed),
                waiting: HashMap::new(),
            }),
            addresses: instances.iter().map(|&(a, _)| a).collect(),
            next: AtomicU64::new(u64::MAX),
            epoch,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Publishes the client's next deadline (call with the lock held, after a change).
    fn publish(&self, inner: &Inner) {
        // 0 stands for "at or before the epoch" (a clock a caller set before the
        // relay existed): `next_deadline` then asks the client itself.
        let at = inner.client.poll_timeout().map_or(u64::MAX, |at| {
            let nanos = at.saturating_duration_since(self.epoch).as_nanos();
            u64::try_from(nanos).unwrap_or(u64::MAX - 1)
        });
        self.next.store(at, Ordering::Release);
    }

    /// Is `from` one of the configured instances (its datagrams are NG replies)?
    pub(crate) fn is_instance(&self, from: SocketAddr) -> bool {
        self.addresses.contains(&from)
    }

    /// Sends `body` for the call `call_key` (pinned to its instance).
    pub(crate) fn request(
        &self,
        call_key: u64,
        body: &[u8],
        purpose: Purpose,
        now: Instant,
    ) -> Result<Sent, Unavailable> {
        let mut inner = self.lock();
        let send = inner.client.request(call_key, body, now)?;
        let waiter = Waiter {
            purpose,
            sent: now,
            instance: send.to,
        };
        inner.waiting.insert(send.cookie, waiter);
        self.publish(&inner);
        Ok(Sent {
            datagram: Datagram {
                to: send.to,
                data: send.data,
            },
            cookie: send.cookie,
        })
    }

    /// A datagram from an instance: the request it answers, if one of ours is waiting.
    pub(crate) fn on_datagram(&self, from: SocketAddr, data: &[u8], now: Instant) -> Option<Done> {
        let mut inner = self.lock();
        let (cookie, reply) = inner.client.on_reply(from, data, now)?;
        self.publish(&inner);
        let waiter = inner.waiting.remove(&cookie)?;
        Some(Done {
            cookie,
            waiter,
            from,
            reply: Some(reply),
        })
    }

    /// Moves every request whose deadline has come.
    pub(crate) fn on_timeout(&self, now: Instant) -> Expired {
        let mut inner = self.lock();
        if inner.client.poll_timeout().is_none_or(|at| at > now) {
            return Expired::default();
        }
        let events = inner.client.on_timeout(now);
        self.settle(&mut inner, events)
    }

    /// An ICMP error for a request sent to `address`: that instance is down now and its
    /// requests move on at once (the next instance, or failed).
    pub(crate) fn on_unreachable(&self, address: SocketAddr, now: Instant) -> Expired {
        let mut inner = self.lock();
        let events = inner.client.on_unreachable(address, now);
        self.settle(&mut inner, events)
    }

    /// What the client's events ask for, the requests that failed taken off the list.
    fn settle(&self, inner: &mut Inner, events: Vec<Event>) -> Expired {
        let mut out = Expired::default();
        for event in events {
            match event {
                Event::Resend { to, data, .. } | Event::Failover { to, data, .. } => {
                    out.resend.push(Datagram { to, data })
                }
                Event::Failed { cookie } => {
                    if let Some(waiter) = inner.waiting.remove(&cookie) {
                        out.failed.push(Done {
                            cookie,
                            waiter,
                            from: waiter.instance,
                            reply: None,
                        });
                    }
                }
            }
        }
        self.publish(inner);
        out
    }

    /// The call is over: its instance pinning goes.
    pub(crate) fn forget(&self, call_key: u64) {
        self.lock().client.forget(call_key);
    }

    /// The earliest retransmission or give-up of a request in flight (lock-free).
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        match self.next.load(Ordering::Acquire) {
            u64::MAX => None,
            0 => self.lock().client.poll_timeout(),
            nanos => Some(self.epoch + Duration::from_nanos(nanos)),
        }
    }

    /// Requests in flight and calls pinned to an instance (leak tests).
    pub(crate) fn sizes(&self) -> (usize, usize) {
        let inner = self.lock();
        let (pending, pinned) = inner.client.sizes();
        (pending.max(inner.waiting.len()), pinned)
    }

    /// Each instance and whether it is up (not skipped after a silence) at `now`.
    pub(crate) fn instances(&self, now: Instant) -> Vec<(SocketAddr, bool)> {
        let inner = self.lock();
        self.addresses
            .iter()
            .map(|&a| (a, inner.client.is_up(a, now)))
            .collect()
    }
}
