//! Entry points of the core: a message arrived, timers are due, a transport failed.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use trunkstore_sip::framing::is_keepalive;
use trunkstore_sip::message::Message;
use trunkstore_sip::parse::{parse_datagram, parse_datagram_head};

use crate::context::{lock, Ctx};
use crate::keys::TimerTarget;
use crate::shard::Shard;
use crate::state::State;
use crate::types::Peer;
use crate::{proxying, request, response};

pub(crate) fn handle_datagram(
    state: &State,
    shard: &mut Shard,
    now: Instant,
    from: Peer,
    local: SocketAddr,
    data: Bytes,
) {
    if is_keepalive(&data) {
        return;
    }
    // rtpengine answers on the socket its requests left from (§4.7): never SIP.
    if state
        .media
        .as_ref()
        .is_some_and(|m| m.is_instance(from.addr))
    {
        let mut cx = Ctx { state, shard, now };
        if let Some(done) = crate::anchor::on_datagram(&cx, from.addr, &data) {
            media_done(&mut cx, done);
        }
        return;
    }
    match parse_datagram(data.clone(), &state.cfg.limits) {
        // Boxed once here: the handlers pass it down and the transaction keeps it, and
        // each move of the ~560-byte message by value was a copy.
        Ok(msg) => handle_message(state, shard, now, from, local, Box::new(msg)),
        Err(e) => {
            state.metrics.parse_error();
            let mut cx = Ctx { state, shard, now };
            answer_unparseable(&mut cx, from, local, data, &e);
        }
    }
}

/// RFC 3261 §18.3: a request whose body cannot be framed gets 400 when its head can
/// still be answered; anything else unparseable is dropped (no Via to answer).
fn answer_unparseable(
    cx: &mut Ctx<'_>,
    from: Peer,
    local: SocketAddr,
    data: Bytes,
    why: &trunkstore_sip::Error,
) {
    let Some(head) = parse_datagram_head(data, &cx.state.cfg.limits) else {
        return;
    };
    if !head.is_request() || head.method() == Some(trunkstore_sip::message::Method::Ack) {
        return;
    }
    let reason = match why {
        trunkstore_sip::Error::BadSyntax(what) => format!("Bad Request ({what})"),
        _ => "Bad Request".to_string(),
    };
    crate::local::respond(cx, from, local, &head, 400, reason.as_bytes(), &[]);
    cx.state.metrics.refusal(crate::metrics::Refusal::Invalid);
}

pub(crate) fn handle_message(
    state: &State,
    shard: &mut Shard,
    now: Instant,
    from: Peer,
    local: SocketAddr,
    msg: Box<Message>,
) {
    let mut cx = Ctx { state, shard, now };
    if msg.is_request() {
        request::on_request(&mut cx, from, local, msg);
    } else {
        response::on_response(&mut cx, from, msg);
    }
    arm_sweep(&mut cx);
    arm_registrar(&mut cx);
}

pub(crate) fn handle_timeouts(state: &State, shard: &mut Shard, now: Instant) {
    let mut cx = Ctx { state, shard, now };
    while let Some(e) = cx.shard.pop_due(now) {
        let key = match e.target {
            TimerTarget::Server(k) | TimerTarget::Branch(k, _) => k,
        };
        let Some(txn) = cx.lookup(key) else { continue };
        let mut t = lock(&txn);
        match e.target {
            TimerTarget::Server(_) => proxying::on_server_timer(&mut cx, &mut t, e.kind, e.at),
            TimerTarget::Branch(_, i) => {
                proxying::on_branch_timer(&mut cx, &mut t, usize::from(i), e.kind, e.at)
            }
        }
        proxying::settle(cx.state, &mut t);
    }
    for done in crate::anchor::on_timeouts(&mut cx) {
        media_done(&mut cx, done);
    }
    sweep_calls(&mut cx);
    sweep_registrar(&mut cx);
}

/// An NG request ended: the transaction waiting for it resumes (a delete has none).
fn media_done(cx: &mut Ctx<'_>, done: crate::media::relay::Done) {
    use crate::media::relay::Purpose;
    let key = match done.waiter.purpose {
        Purpose::Offer(k) | Purpose::Answer(k) => k,
        Purpose::Delete => return,
    };
    let Some(txn) = cx.lookup(key) else { return };
    let mut t = lock(&txn);
    proxying::on_media_done(cx, &mut t, done);
    proxying::settle(cx.state, &mut t);
}

/// The registrar's sweep, offered by every shard once a second while it has anything
/// (one does it: `Registrar::take_sweep`).
fn sweep_registrar(cx: &mut Ctx<'_>) {
    if cx.shard.next_registrar.is_some_and(|at| at <= cx.now) {
        cx.shard.next_registrar = None;
        crate::register::sweep(cx);
    }
    arm_registrar(cx);
}

fn arm_registrar(cx: &mut Ctx<'_>) {
    if cx.shard.next_registrar.is_none() && cx.state.registrar.is_live() {
        cx.shard.next_registrar = Some(cx.now + crate::registrar::SWEEP_EVERY);
    }
}

pub(crate) fn handle_transport_error(state: &State, shard: &mut Shard, now: Instant, peer: Peer) {
    state.registrar.transport_failed(peer);
    fail_client_transactions(state, shard, now, peer);
}

/// §16.9: every pending client transaction towards `peer` sees a 503.
pub(crate) fn fail_client_transactions(state: &State, shard: &mut Shard, now: Instant, peer: Peer) {
    let mut cx = Ctx { state, shard, now };
    for done in crate::anchor::on_unreachable(&mut cx, peer.addr) {
        media_done(&mut cx, done);
    }
    // Rare event: a scan of the client index is fine, and no map guard is held while
    // a transaction is locked.
    let hit: Vec<_> = state
        .clients
        .iter()
        .filter(|e| e.value().peer == peer && !e.key().cancel)
        .map(|e| e.value().clone())
        .collect();
    for entry in hit {
        let mut t = lock(&entry.txn);
        proxying::on_branch_transport_error(&mut cx, &mut t, usize::from(entry.branch));
        proxying::settle(cx.state, &mut t);
    }
}

fn sweep_interval(state: &State) -> Duration {
    state.cfg.max_call_duration.min(Duration::from_secs(60))
}

/// Make sure a sweep is pending while there are calls.
fn arm_sweep(cx: &mut Ctx<'_>) {
    if cx.shard.next_sweep.is_none() && !cx.state.calls.is_empty() {
        cx.shard.next_sweep = Some(cx.now + sweep_interval(cx.state));
    }
}

/// Drops dialogs older than the maximum call duration (their BYE never came).
fn sweep_calls(cx: &mut Ctx<'_>) {
    arm_sweep(cx);
    let Some(at) = cx.shard.next_sweep else {
        return;
    };
    if at > cx.now {
        return;
    }
    cx.shard.next_sweep = None;
    let max = cx.state.cfg.max_call_duration;
    let now = cx.now;
    let expired: Vec<_> = cx
        .state
        .calls
        .iter()
        .filter(|e| now.saturating_duration_since(e.value().since()) >= max)
        .map(|e| *e.key())
        .collect();
    for k in expired {
        if let Some((_, d)) = cx.state.calls.remove(&k) {
            crate::calls::expired(cx, k, &d);
        }
    }
    arm_sweep(cx);
}

/// Sends the `delete` of every anchored call's media (the proxy is stopping).
pub(crate) fn delete_all_media(state: &State, shard: &mut Shard, now: Instant) {
    let mut cx = Ctx { state, shard, now };
    let anchored: Vec<_> = state
        .calls
        .iter()
        .filter_map(|e| match &e.value().media {
            crate::state::MediaMode::Anchored { from_tag, .. } => {
                Some((*e.key(), e.value().call_id.clone(), from_tag.clone()))
            }
            _ => None,
        })
        .collect();
    for (key, call_id, from_tag) in anchored {
        crate::anchor::delete(&mut cx, crate::anchor::call_key(key), &call_id, &from_tag);
    }
}

/// A resolution the edge finished: the transaction waiting for it resumes.
pub(crate) fn handle_resolved(
    state: &State,
    shard: &mut Shard,
    now: Instant,
    key: crate::types::ResolveKey,
    outcome: Result<Vec<Peer>, String>,
) {
    let mut cx = Ctx { state, shard, now };
    let Some(txn) = cx.lookup(crate::keys::TxKey(key.0)) else {
        return;
    };
    let mut t = lock(&txn);
    proxying::on_resolved(&mut cx, &mut t, outcome);
    proxying::settle(cx.state, &mut t);
}
