//! What every handler works in: the shared tables, this worker's queues and the time
//! ([`Ctx`]), and the one way to lock a proxy transaction ([`lock`]). Everything that
//! acts on a message sits above this module.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::error::ForwardError;
use crate::keys::{TimerTarget, TxKey};
use crate::shard::Shard;
use crate::state::{ProxyTxn, State, TxnRef};
use crate::transaction::Timers;
use crate::types::{Peer, Transmit};

/// What every handler needs: the shared tables, this worker's queues and the time.
pub(crate) struct Ctx<'a> {
    pub state: &'a State,
    pub shard: &'a mut Shard,
    pub now: Instant,
}

impl Ctx<'_> {
    pub(crate) fn send(&mut self, to: Peer, from: Option<SocketAddr>, data: Bytes) {
        self.shard.send(Transmit::new(to, from, data));
    }

    /// [`send`](Ctx::send) to a TLS server that must prove `name` (a configured name).
    pub(crate) fn send_verified(
        &mut self,
        to: Peer,
        from: Option<SocketAddr>,
        data: Bytes,
        name: Option<crate::types::TlsName>,
    ) {
        let mut t = Transmit::new(to, from, data);
        t.tls_name = name.filter(|_| to.transport == crate::types::Transport::Tls);
        self.shard.send(t);
    }

    /// Schedules what a state machine armed.
    pub(crate) fn schedule(&mut self, target: TimerTarget, timers: &mut Timers) {
        for t in timers.drain() {
            self.shard.schedule(target, t.kind, t.at);
        }
    }

    /// A forward failed: counted by reason and logged with the Call-ID (never silent).
    pub(crate) fn forward_failed(&self, call_id: &[u8], why: ForwardError) {
        self.state.metrics.forward_error(why);
        tracing::warn!(
            call_id = %String::from_utf8_lossy(call_id),
            reason = why.reason(),
            "forward failed: {why}"
        );
    }

    pub(crate) fn lookup(&self, key: TxKey) -> Option<TxnRef> {
        self.state.servers.get(&key).map(|e| Arc::clone(e.value()))
    }
}

/// A poisoned lock means a panic elsewhere; the data is still consistent enough to go on.
pub(crate) fn lock(t: &TxnRef) -> std::sync::MutexGuard<'_, ProxyTxn> {
    t.lock().unwrap_or_else(|p| p.into_inner())
}
