//! Stateful proxying (§16.6–16.10) over one [`ProxyTxn`], driven by the plain-value
//! machines of [`crate::machines`]: the plan cursor says which attempt goes next, each
//! branch's state says what its responses and timers mean.
//!
//! Modules, from the bottom (each uses only those before it; this file, on top, moves
//! the plan):
//! * `forward`: the request of an attempt built and sent on a new branch; stateless
//!   forwarding; the trust rules; sends.
//! * `cancel`: CANCEL of a branch (§9.1).
//! * `answer`: how a branch ended, and the final answer to the caller (§16.7 step 6).
//! * `responses`: responses on a branch (provisional, 2xx, final non-2xx).
//! * `timers`: the transaction timers of the server side and of each branch.

use std::time::Instant;

use crate::context::Ctx;
use crate::keys::{ClientKey, TimerTarget};
use crate::machines::best::Best;
use crate::machines::branch::{CancelStep, Canceller, OnTimerC};
use crate::machines::deadlines::DeadlineKind;
use crate::machines::plan::Step;
use crate::media::relay::{Done, Purpose};
use crate::metrics::FailoverReason;
use crate::policy::Failure;
use crate::state::{Branch, ClientSide, ProxyTxn, ServerSide, State};
use crate::state::{Offer, Resolving};
use crate::transaction::TimerKind;
use crate::types::{Peer, ResolveKey, ResolveRequest};
use crate::{local, sipview};

mod answer;
mod cancel;
mod forward;
mod responses;
mod timers;

use answer::BranchEnd;
pub(crate) use forward::{forward_stateless, Routing, StatelessHop, Trust};

/// §16.7 step 1 / §16.2: our own 100 Trying for an INVITE, at once.
pub(crate) fn send_trying(cx: &mut Ctx<'_>, t: &mut ProxyTxn) {
    let Some(d) = t.deciding.as_deref() else {
        return;
    };
    let Some(resp) = local::build(cx, &d.request, 100, b"Trying", &[]) else {
        return;
    };
    if let ServerSide::Invite(s) = &mut t.server {
        s.on_provisional(resp.clone());
    }
    cx.send(t.source, Some(t.local), resp);
}

/// Starts the next attempt if none is in flight; answers the caller when the plan is
/// exhausted (or the caller CANCELled) and no branch is pending.
pub(crate) fn advance(cx: &mut Ctx<'_>, t: &mut ProxyTxn) {
    loop {
        // Nothing is left to decide once the final response went.
        let Some(d) = t.deciding.as_deref_mut().filter(|_| !t.server.is_final()) else {
            return;
        };
        if d.cursor.is_waiting() || t.branches.iter().any(branch_pending) {
            return;
        }
        // The edge is resolving the attempt's target, or its hops are being tried.
        if d.resolving.is_some() {
            return;
        }
        // rtpengine has the offer, or a response's answer: nothing moves before its reply.
        if t.media.as_ref().is_some_and(|m| m.is_busy()) {
            return;
        }
        if t.cancelled {
            let best = d.cursor.take_best();
            answer::finish(cx, t, best);
            return;
        }
        // The cluster has not said yet whether the call's trunk is free (§9.2).
        if d.trunk.as_ref().is_some_and(|h| h.awaiting_cluster()) {
            return;
        }
        let dir = &*cx.state.dir;
        let (registrar, now) = (&cx.state.registrar, cx.now);
        let bindings = |aor: &str| registrar.targets(aor, now);
        let (attempt, number, failover) = match d.cursor.next(cx.now, |plan| {
            crate::failover::failover_attempts(dir, plan, &bindings)
        }) {
            Step::Send {
                attempt,
                number,
                failover,
            } => (attempt, number, failover),
            Step::Wait(at) => {
                // The delay timer comes back to `on_server_timer`.
                cx.shard
                    .schedule(TimerTarget::Server(t.key), TimerKind::Delay, at);
                return;
            }
            Step::Exhausted(best) => {
                answer::finish(cx, t, best);
                return;
            }
        };
        if let Some(reason) = failover {
            cx.state.metrics.failover(reason);
        }
        if t.media.is_some() {
            crate::anchor::drop_earlier_callees(cx, t, t.branches.len());
        }
        if let Some(target) = attempt
            .resolve
            .clone()
            .filter(|_| attempt.next_hop.is_none())
        {
            return ask_resolution(cx, t, attempt, number, &target);
        }
        let Err((best, why)) = forward::start_attempt(cx, t, &attempt, number) else {
            return;
        };
        // No address, or unbuildable: a failure of this attempt, at once.
        let call_id = t.deciding.as_deref().map(|d| sipview::call_id(&d.request));
        cx.forward_failed(call_id.unwrap_or(b"-"), why);
        record(t, best);
        attempt_failed(t, Failure::Unreachable, FailoverReason::Transport);
    }
}

/// Sends the offer of a request whose media is anchored (§4.7): no attempt starts before
/// rtpengine's reply.
pub(crate) fn start_media(cx: &mut Ctx<'_>, t: &mut ProxyTxn) {
    let sdp = t
        .deciding
        .as_deref()
        .and_then(|d| d.request.slice_ref(d.request.body()))
        .unwrap_or_default();
    if crate::anchor::offer(cx, t, &sdp).is_err() {
        offer_failed(cx, t);
    }
}

/// An NG request of `t` ended (`done.reply` is `None` when no instance answered): its
/// offer or held response moves on, then the plan.
pub(crate) fn on_media_done(cx: &mut Ctx<'_>, t: &mut ProxyTxn, done: Done) {
    match done.waiter.purpose {
        Purpose::Offer(_) => offer_done(cx, t, &done),
        Purpose::Answer(_) => answer_done(cx, t, &done),
        Purpose::Delete => {}
    }
    advance(cx, t);
}

fn offer_done(cx: &mut Ctx<'_>, t: &mut ProxyTxn, done: &Done) {
    let Some(m) = t
        .media
        .as_deref_mut()
        .filter(|m| matches!(m.offer, Offer::Pending))
    else {
        return;
    };
    let Some(sdp) = crate::anchor::rewritten(done) else {
        return offer_failed(cx, t);
    };
    m.offer = Offer::Ready(sdp);
    if m.initial {
        cx.state.metrics.call_anchored();
        let from_tag = m.from_tag.clone();
        if let Some(k) = t.deciding.as_deref().and_then(|d| d.dialog) {
            crate::calls::anchored(cx, k, done.from, from_tag);
        }
    }
}

/// No rtpengine took the offer: the request goes on untouched (`on_failure: bypass`,
/// logged and counted) or is refused with 503 (§4.7).
fn offer_failed(cx: &mut Ctx<'_>, t: &mut ProxyTxn) {
    let Some(m) = t.media.as_deref_mut() else {
        return;
    };
    m.offer = Offer::Failed;
    let initial = m.initial;
    let call_id = t.deciding.as_deref().map(|d| sipview::call_id(&d.request));
    let call_id = String::from_utf8_lossy(call_id.unwrap_or(b"-"));
    if cx.state.cfg.media.bypass_on_failure {
        tracing::warn!(%call_id, "no rtpengine took the offer: the call goes on with its media unanchored");
        if initial {
            cx.state.metrics.call_unanchored();
        }
        return;
    }
    tracing::warn!(%call_id, "no rtpengine took the offer: refused with 503");
    if let Some(d) = t.deciding.as_deref_mut() {
        d.cursor
            .record(Best::Refused(503, crate::anchor::UNAVAILABLE));
        d.cursor.close();
    }
}

fn answer_done(cx: &mut Ctx<'_>, t: &mut ProxyTxn, done: &Done) {
    let Some(m) = t.media.as_deref_mut() else {
        return;
    };
    let Some(i) = m.held.iter().position(|h| h.cookie == done.cookie) else {
        return;
    };
    let held = m.held.remove(i);
    let idx = held.branch;
    let end = match crate::anchor::rewritten(done) {
        Some(sdp) => responses::on_answered(cx, t, held, sdp),
        None => responses::answer_failed(cx, t, idx, held.msg),
    };
    if let Some(end) = end {
        on_branch_end(cx, t, idx, end);
    }
}

/// The attempt's target is a DNS name: the edge resolves it; the plan waits.
fn ask_resolution(
    cx: &mut Ctx<'_>,
    t: &mut ProxyTxn,
    attempt: crate::route::Attempt,
    number: u16,
    target: &crate::dns::Target,
) {
    let Some(d) = t.deciding.as_deref_mut() else {
        return;
    };
    d.resolving = Some(Box::new(Resolving {
        attempt,
        number,
        hops: None,
    }));
    cx.shard.resolves.push_back(ResolveRequest {
        key: ResolveKey(t.key.0),
        target: target.clone(),
    });
}

/// The edge resolved the attempt's target: its first hop is tried (the next ones on a
/// 503, timeout or transport error); no hop at all fails the attempt as unreachable.
pub(crate) fn on_resolved(cx: &mut Ctx<'_>, t: &mut ProxyTxn, outcome: Result<Vec<Peer>, String>) {
    let Some(d) = t.deciding.as_deref_mut() else {
        return;
    };
    let call_id = sipview::call_id(&d.request);
    let Some(r) = d.resolving.as_deref_mut().filter(|r| r.hops.is_none()) else {
        return;
    };
    let hops = outcome.unwrap_or_else(|why| {
        tracing::warn!(
            call_id = %String::from_utf8_lossy(call_id),
            reason = %why,
            "target not resolved (RFC 3263): the attempt fails"
        );
        Vec::new()
    });
    r.hops = Some(hops.into());
    next_hop(cx, t, Best::Local(480));
    advance(cx, t);
}

/// Sends the resolving attempt to its next untried hop. With none left (or none that
/// can be sent to) the attempt fails with `best` (the last hop's outcome) and the plan
/// moves on. Returns whether a hop was tried.
fn next_hop(cx: &mut Ctx<'_>, t: &mut ProxyTxn, mut best: Best) -> bool {
    loop {
        let Some(r) = t
            .deciding
            .as_deref_mut()
            .and_then(|d| d.resolving.as_deref_mut())
        else {
            return false;
        };
        let Some(hop) = r.hops.as_mut().and_then(|h| h.pop_front()) else {
            if let Some(d) = t.deciding.as_deref_mut() {
                d.resolving = None;
            }
            record(t, best);
            attempt_failed(t, Failure::Unreachable, FailoverReason::Transport);
            return false;
        };
        let mut attempt = r.attempt.clone();
        attempt.next_hop = Some(hop);
        let number = r.number;
        match forward::start_attempt(cx, t, &attempt, number) {
            Ok(()) => return true,
            Err((b, why)) => {
                let call_id = t.deciding.as_deref().map(|d| sipview::call_id(&d.request));
                cx.forward_failed(call_id.unwrap_or(b"-"), why);
                best = b;
            }
        }
    }
}

/// A branch of a resolved attempt ended this way: is the next hop of the same attempt
/// tried (RFC 3263 §4.3: a 503, a timeout or a transport error)?
fn tries_next_hop(t: &ProxyTxn, end: &BranchEnd) -> bool {
    let more = t
        .deciding
        .as_deref()
        .and_then(|d| d.resolving.as_deref())
        .and_then(|r| r.hops.as_ref())
        .is_some_and(|h| !h.is_empty());
    more && !t.cancelled && (end.best.status() == 503 || end.reason == FailoverReason::Timeout)
}

/// Still deciding the call's outcome: a branch given up on by a timer is only waiting
/// for its CANCEL to complete and does not hold the plan back.
fn branch_pending(b: &Branch) -> bool {
    b.client.is_pending() && !b.state.given_up()
}

/// Keeps `best` if it is the best final response so far (§16.7 step 6).
fn record(t: &mut ProxyTxn, best: Best) {
    // After the final response there is nothing left to choose.
    if let Some(d) = t.deciding.as_deref_mut() {
        d.cursor.record(best);
    }
}

/// The current attempt failed: the plan goes on if its rule allows and the caller has
/// not CANCELled (§4.8), else no attempt follows.
fn attempt_failed(t: &mut ProxyTxn, failure: Failure, reason: FailoverReason) {
    let cancelled = t.cancelled;
    if let Some(d) = t.deciding.as_deref_mut() {
        d.cursor.attempt_failed(failure, reason, cancelled);
    }
}

/// A branch ended with a final non-2xx (received, or made up for a timeout or transport
/// error): fail over or answer.
fn on_branch_end(cx: &mut Ctx<'_>, t: &mut ProxyTxn, idx: usize, end: BranchEnd) {
    let Some(b) = t.branches.get(idx) else {
        return;
    };
    if b.state.given_up() {
        // Counted as a timeout when the timer gave up on it; the plan has moved on.
        return;
    }
    // A branch we cancelled ourselves (timer C) counts as a timeout, whatever its 487
    // says.
    let end = if b.state.by_proxy() && end.best.status() == 487 {
        BranchEnd::timeout(Failure::Timeout)
    } else {
        end
    };
    if tries_next_hop(t, &end) {
        if next_hop(cx, t, end.best) {
            return;
        }
        advance(cx, t);
        return;
    }
    // The resolved attempt is over: the plan goes on as for any attempt.
    if let Some(d) = t.deciding.as_deref_mut() {
        d.resolving = None;
    }
    let status = end.best.status();
    record(t, end.best);
    if status >= 600 {
        cancel::cancel_branches(cx, t, Canceller::Proxy);
    }
    attempt_failed(t, end.failure, end.reason);
    advance(cx, t);
}

/// A response to one of our branches.
pub(crate) fn on_branch_response(
    cx: &mut Ctx<'_>,
    t: &mut ProxyTxn,
    idx: usize,
    is_cancel: bool,
    msg: Box<trunkstore_sip::message::Message>,
) {
    if let Some(end) = responses::on_branch_response(cx, t, idx, is_cancel, msg) {
        on_branch_end(cx, t, idx, end);
    }
}

/// Timers of the server side, and the attempt delay.
pub(crate) fn on_server_timer(cx: &mut Ctx<'_>, t: &mut ProxyTxn, kind: TimerKind, at: Instant) {
    if kind != TimerKind::Delay {
        timers::on_server_transaction_timer(cx, t, kind, at);
        return;
    }
    if let Some(d) = t.deciding.as_deref_mut() {
        if d.cursor.on_delay_timer(at) {
            advance(cx, t);
        }
    }
}

/// Timers of one branch: its transactions', and its own deadlines (timer C and the
/// attempt timers).
pub(crate) fn on_branch_timer(
    cx: &mut Ctx<'_>,
    t: &mut ProxyTxn,
    idx: usize,
    kind: TimerKind,
    at: Instant,
) {
    if kind == TimerKind::Deadline {
        if t.branches
            .get_mut(idx)
            .is_some_and(|b| b.deadlines.on_wake(at))
        {
            on_deadlines(cx, t, idx);
        }
        return;
    }
    if let Some(end) = timers::on_transaction_timer(cx, t, idx, kind, at) {
        on_branch_end(cx, t, idx, end);
    }
}

/// The branch's deadline timer fired: handles each deadline that is due, earliest
/// first, then queues the timer again for the next one.
fn on_deadlines(cx: &mut Ctx<'_>, t: &mut ProxyTxn, idx: usize) {
    let target = TimerTarget::Branch(t.key, u16::try_from(idx).unwrap_or(u16::MAX));
    loop {
        let Some(b) = t.branches.get_mut(idx) else {
            return;
        };
        if !forward::pending_invite(b) {
            break;
        }
        // Each pass removes one deadline and sets only later ones: bounded.
        match b.deadlines.take_due(cx.now) {
            None => break,
            Some(DeadlineKind::Progress | DeadlineKind::Answer) => give_up_branch(cx, t, idx),
            Some(DeadlineKind::C) => on_timer_c(cx, t, idx),
        }
    }
    if let Some(b) = t.branches.get_mut(idx) {
        forward::arm_deadline(cx, target, b);
    }
}

/// Timer C (§16.6 step 11, §16.8) on a pending INVITE branch: CANCEL it, or if it has
/// had no provisional, or the CANCEL got no answer either, give up on it as a 408.
fn on_timer_c(cx: &mut Ctx<'_>, t: &mut ProxyTxn, idx: usize) {
    let Some(b) = t.branches.get_mut(idx) else {
        return;
    };
    let ClientSide::Invite(c) = &mut b.client else {
        return;
    };
    match b.state.on_timer_c() {
        OnTimerC::Cancel => cancel::cancel_branch(cx, t, idx, Canceller::Proxy),
        OnTimerC::GiveUp(failure) => {
            c.terminate();
            b.deadlines.clear_all();
            b.state.finish();
            on_branch_end(cx, t, idx, BranchEnd::timeout(failure));
        }
    }
}

/// An attempt timer expired (§4.5): the attempt counts as a timeout now and the plan
/// moves on at once (failover, or 408 to the caller). The branch itself is CANCELled
/// (after its first provisional, if it has had none: §9.1) and kept until it ends, so a
/// 200 it sends anyway is ACKed and BYEd here and never reaches the caller.
fn give_up_branch(cx: &mut Ctx<'_>, t: &mut ProxyTxn, idx: usize) {
    let key = t.key;
    let Some(b) = t.branches.get_mut(idx) else {
        return;
    };
    let Some(step) = b.state.give_up() else {
        return;
    };
    if step == CancelStep::SendNow {
        cancel::send_cancel(cx, key, idx, b);
    }
    record(t, Best::Local(408));
    attempt_failed(t, Failure::Timeout, FailoverReason::Timeout);
    advance(cx, t);
}

/// §16.9: a transport error is a 503 for the branch (relayed as 500 if it is the best).
pub(crate) fn on_branch_transport_error(cx: &mut Ctx<'_>, t: &mut ProxyTxn, idx: usize) {
    let Some(b) = t.branches.get_mut(idx) else {
        return;
    };
    if !b.client.is_pending() {
        return;
    }
    b.client.terminate();
    b.deadlines.clear_all();
    b.state.finish();
    let end = BranchEnd {
        best: Best::Local(503),
        failure: Failure::Unreachable,
        reason: FailoverReason::Transport,
    };
    on_branch_end(cx, t, idx, end);
}

/// The caller CANCELled (§16.10): cancel every pending branch, answer 487 if nothing is
/// in flight.
pub(crate) fn cancel_by_caller(cx: &mut Ctx<'_>, t: &mut ProxyTxn) {
    if t.server.is_final() || !matches!(t.server, ServerSide::Invite(_)) {
        return;
    }
    t.cancelled = true;
    if let Some(d) = t.deciding.as_deref_mut() {
        d.cursor.stop_waiting();
    }
    cancel::cancel_branches(cx, t, Canceller::Caller);
    advance(cx, t);
}

/// After each event: drops what the transaction can no longer need (it may linger
/// 64·T1 more), and removes it with its client transactions once it is finished.
pub(crate) fn settle(state: &State, t: &mut ProxyTxn) {
    release_unneeded(t);
    if !t.is_finished() {
        return;
    }
    state.servers.remove(&t.key);
    for b in &t.branches {
        state.clients.remove(&ClientKey {
            id: b.id,
            cancel: false,
        });
        state.clients.remove(&ClientKey {
            id: b.id,
            cancel: true,
        });
        crate::late2xx::forget(state, b);
    }
}

/// Once the caller has its final response, the request and the plan are done with; a
/// branch's request is kept only while something can still be built from it.
fn release_unneeded(t: &mut ProxyTxn) {
    if t.server.is_final() {
        t.deciding = None;
    }
    // A held 2xx may still be refused (its SDP not anchored): its ACK and BYE are built
    // from the branch's request.
    if t.media.as_ref().is_some_and(|m| !m.held.is_empty()) {
        return;
    }
    for b in &mut t.branches {
        if b.request.is_some() && !b.needs_request() {
            b.request = None;
        }
    }
}
