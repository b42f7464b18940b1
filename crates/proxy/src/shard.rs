//! Per-worker state: the timer queue and the outgoing queue.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use crate::keys::TimerTarget;
use crate::state::State;
pub(crate) use crate::timerq::Entry;
use crate::timerq::TimerQueue;
use crate::transaction::TimerKind;
use crate::types::CallRecord;
use crate::types::Transmit;

/// One worker's timers and pending transmits. Create with [`crate::Proxy::new_shard`].
pub struct Shard {
    pub(crate) state: Arc<State>,
    timers: TimerQueue,
    pub(crate) out: VecDeque<Transmit>,
    /// Finished calls, when [`crate::ProxyConfig::call_records`] is on.
    pub(crate) records: VecDeque<CallRecord>,
    /// When this shard next sweeps the call table for dialogs past their maximum age.
    pub(crate) next_sweep: Option<Instant>,
    /// When this shard next offers to do the registrar's sweep (one shard does it).
    pub(crate) next_registrar: Option<Instant>,
    /// Names the core needs resolved (RFC 3263), for the edge.
    pub(crate) resolves: VecDeque<crate::types::ResolveRequest>,
}

impl Shard {
    pub(crate) fn new(state: Arc<State>) -> Shard {
        Shard {
            state,
            timers: TimerQueue::new(),
            out: VecDeque::new(),
            records: VecDeque::new(),
            next_sweep: None,
            next_registrar: None,
            resolves: VecDeque::new(),
        }
    }

    /// The next DNS resolution the core waits for: resolve it (RFC 3263) and hand the
    /// hops to [`crate::Proxy::handle_resolved`], on any shard.
    pub fn poll_resolve(&mut self) -> Option<crate::types::ResolveRequest> {
        self.resolves.pop_front()
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    /// The next finished call, for the CDR writer (only queued when
    /// [`crate::ProxyConfig::call_records`] is on). Drain after every call into the core.
    pub fn poll_call_record(&mut self) -> Option<CallRecord> {
        self.records.pop_front()
    }

    /// Earliest pending deadline of this shard: call `handle_timeouts` then.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.timers.next_deadline(),
            self.sweep_deadline(),
            self.next_registrar,
            self.state.media.as_ref().and_then(|m| m.next_deadline()),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Timers still queued on this shard (stale ones included), for leak tests.
    pub fn pending_timers(&self) -> usize {
        self.timers.len()
    }

    /// The sweep's deadline while any call is up. Asked after every batch: the count of
    /// admitted calls is one atomic load, where the dialog table's `is_empty` would take
    /// every shard's read lock in turn.
    fn sweep_deadline(&self) -> Option<Instant> {
        let calls = self
            .state
            .active_calls
            .load(std::sync::atomic::Ordering::Relaxed);
        self.next_sweep.filter(|_| calls > 0)
    }

    pub(crate) fn schedule(&mut self, target: TimerTarget, kind: TimerKind, at: Instant) {
        self.timers.push(target, kind, at);
    }

    /// Pops the next timer due at or before `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<Entry> {
        self.timers.pop_due(now)
    }

    pub(crate) fn send(&mut self, t: Transmit) {
        self.out.push_back(t);
    }
}
