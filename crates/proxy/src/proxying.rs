//! Stateful proxying (§16.6–16.10) over one [`ProxyTxn`]: attempts, branch responses,
//! best-response selection, CANCEL and the proxy's own timers.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use trunkstore_sip::build;
use trunkstore_sip::edit::Editor;
use trunkstore_sip::message::{HeaderName, Message};
use trunkstore_sip::parse::parse_datagram;

use crate::callerid::IdentityEdit;
use crate::context::Ctx;
use crate::keys::{ClientKey, TimerTarget, TxKey};
use crate::metrics::{FailoverReason, Outcome};
use crate::route::{Attempt, Failure};
use crate::state::{
    Best, Branch, CancelState, ClientEntry, ClientSide, Deciding, ProxyTxn, SentCancel, ServerSide,
    State,
};
use crate::transaction::{
    client_invite, client_non_invite, server_invite, ClientInvite, ClientNonInvite, TimerKind,
    Timers,
};
use crate::types::{Peer, Transport};
use crate::util::{ip_text, mix};
use crate::{branch, calls, local};

fn tidx(t: Transport) -> usize {
    match t {
        Transport::Udp => 0,
        Transport::Tcp => 1,
    }
}

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
/// exhausted and every branch is done.
pub(crate) fn advance(cx: &mut Ctx<'_>, t: &mut ProxyTxn) {
    loop {
        // Nothing is left to decide once the final response went.
        let Some(d) = t.deciding.as_deref_mut().filter(|_| !t.server.is_final()) else {
            return;
        };
        if d.delay.is_some() || t.branches.iter().any(branch_pending) {
            return;
        }
        if t.cancelled {
            break;
        }
        let Some(attempt) = next_attempt(cx, d) else {
            break;
        };
        let delay = attempt.delay.filter(|d| !d.is_zero());
        if let Some(wait) = delay.filter(|_| d.delay_elapsed != Some(d.next_attempt)) {
            // The delay timer comes back here (see `on_server_timer`). The carrier has had
            // our 100 Trying; the target sees nothing until then (§4.5).
            let at = cx.now + wait;
            d.delay = Some(at);
            cx.shard
                .schedule(TimerTarget::Server(t.key), TimerKind::Delay, at);
            return;
        }
        d.next_attempt += 1;
        if let Some(reason) = d.failover_reason.take() {
            cx.state.metrics.failover(reason);
        }
        if start_attempt(cx, t, &attempt) {
            return;
        }
        // No address, or unbuildable: a failure of this attempt, at once.
        if may_go_on(t, Failure::Unreachable) {
            set_failover_reason(t, FailoverReason::Transport);
        } else {
            close_plan(t);
        }
    }
    finish(cx, t);
}

/// The attempt to start next: the plan's next one, else (once) its failover, resolved
/// now (§4.8: exactly one failover attempt).
fn next_attempt(cx: &Ctx<'_>, d: &mut Deciding) -> Option<Attempt> {
    let plan = &mut d.plan;
    if d.next_attempt >= plan.attempts.len() && !d.plan_closed {
        d.plan_closed = true;
        let failover = crate::failover::failover_attempts(&*cx.state.dir, plan);
        d.failover_ran = !failover.is_empty();
        plan.attempts.extend(failover);
    }
    plan.attempts.get(d.next_attempt).cloned()
}

/// No more attempts for this request: the best response so far goes to the caller.
fn close_plan(t: &mut ProxyTxn) {
    if let Some(d) = t.deciding.as_deref_mut() {
        d.plan_closed = true;
        d.next_attempt = d.plan.attempts.len();
    }
}

/// Does `failure` of the current attempt let the plan go on (§4.8)? Never after the
/// caller's CANCEL, nor after the final response.
fn may_go_on(t: &ProxyTxn, failure: Failure) -> bool {
    !t.cancelled
        && t.deciding
            .as_ref()
            .is_some_and(|d| d.plan.failover.triggers(failure))
}

/// Remembers why the current attempt failed, to count it when the next one starts.
fn set_failover_reason(t: &mut ProxyTxn, reason: FailoverReason) {
    if let Some(d) = t.deciding.as_deref_mut() {
        d.failover_reason = Some(reason);
    }
}

/// Still deciding the call's outcome: a branch given up on by a timer is only waiting
/// for its CANCEL to complete and does not hold the plan back.
fn branch_pending(b: &Branch) -> bool {
    b.client.is_pending() && !b.given_up
}

/// Sends one attempt. False when it failed at once (no next hop, unbuildable).
fn start_attempt(cx: &mut Ctx<'_>, t: &mut ProxyTxn, attempt: &Attempt) -> bool {
    let Some(peer) = attempt.next_hop else {
        // §4.8: 480 when the target could not be reached.
        record(t, Best::Local(480));
        return false;
    };
    let idx = t.branches.len();
    let Ok(idx16) = u16::try_from(idx) else {
        record(t, Best::Local(500));
        return false;
    };
    let id = mix(t.key.0 as u64 ^ (t.key.0 >> 64) as u64 ^ (idx as u64).wrapping_mul(0x9e37_79b9));
    let Some(request) = build_forward(cx, t, attempt, peer, id) else {
        record(t, Best::Local(500));
        return false;
    };
    let reliable = peer.transport == Transport::Tcp;
    let mut timers = Timers::new(cx.state.timers);
    let is_invite = matches!(t.server, ServerSide::Invite(_));
    let client = if is_invite {
        ClientSide::Invite(ClientInvite::start(reliable, cx.now, &mut timers))
    } else {
        ClientSide::NonInvite(ClientNonInvite::start(reliable, cx.now, &mut timers))
    };
    let now = cx.now;
    let timer_c = is_invite.then(|| now + cx.state.cfg.timer_c);
    let progress_deadline = attempt
        .progress_timeout
        .filter(|_| is_invite)
        .map(|d| now + d);
    let answer_deadline = attempt
        .answer_timeout
        .filter(|_| is_invite)
        .map(|d| now + d);
    // `next_attempt` was already moved past this one: the 1-based number.
    let number = t.deciding.as_ref().map_or(0, |d| d.next_attempt);
    t.branches.push(Branch {
        id,
        peer,
        request: Some(request.clone()),
        client,
        cancel: CancelState::None,
        provisional: false,
        progress: false,
        cancelled_by_proxy: false,
        timer_c,
        c_after_cancel: false,
        progress_deadline,
        answer_deadline,
        wake: None,
        given_up: false,
        attempt: number.min(usize::from(u16::MAX)) as u16,
        is_failover: attempt.is_failover,
        ignore_early_media: attempt.ignore_early_media,
        sent: is_invite.then_some(now),
        late: None,
    });
    let target = TimerTarget::Branch(t.key, idx16);
    cx.schedule(target, &mut timers);
    if let Some(b) = t.branches.last_mut() {
        arm_deadline(cx, target, b);
    }
    // The transaction is in the server table while it runs (inserted before the first
    // attempt); the client index points back at it.
    if let Some(txn) = cx.lookup(t.key) {
        cx.state.clients.insert(
            ClientKey { id, cancel: false },
            ClientEntry {
                txn,
                branch: idx16,
                peer,
            },
        );
    }
    send_on(cx, peer, request);
    true
}

/// Sends to a branch's hop from our address for its transport (the same for every
/// branch: not kept per branch).
fn send_on(cx: &mut Ctx<'_>, hop: Peer, data: Bytes) {
    let from = cx.state.cfg.local(hop.transport);
    cx.send(hop, from, data);
}

/// Timer A/E: the branch's request again, if it is still kept.
fn resend_request(cx: &mut Ctx<'_>, b: &Branch) {
    if let Some(r) = b.request.clone() {
        resend_on(cx, b.peer, r);
    }
}

/// A retransmission towards a branch's hop (counted for the metrics).
fn resend_on(cx: &mut Ctx<'_>, hop: Peer, data: Bytes) {
    cx.state.metrics.retransmission_sent();
    send_on(cx, hop, data);
}

/// Timer B/F: the branch never answered; it counts as a 408 from an unreachable target.
fn no_response(cx: &mut Ctx<'_>, t: &mut ProxyTxn, idx: usize) {
    let reason = FailoverReason::Timeout;
    on_branch_final(cx, t, idx, Best::Local(408), Failure::Unreachable, reason);
}

/// The earliest of a pending INVITE branch's own deadlines (timer C, and the progress
/// timeout until a provisional other than 100, and the answer timeout).
fn next_deadline(b: &Branch) -> Option<Instant> {
    if !matches!(&b.client, ClientSide::Invite(c) if c.is_pending()) {
        return None;
    }
    let progress = b.progress_deadline.filter(|_| !b.progress);
    [progress, b.answer_deadline, b.timer_c]
        .into_iter()
        .flatten()
        .min()
}

/// Makes sure one timer is queued for the branch's next deadline. Deadlines that move
/// later (timer C restarted by each provisional) or that no longer apply (the branch
/// answered) queue nothing: the timer already queued fires early and is re-armed for
/// what is left, if anything. Queuing each deadline instead would leave several timers
/// per call in the queue for minutes (C is over three), each looked up when it fires.
fn arm_deadline(cx: &mut Ctx<'_>, target: TimerTarget, b: &mut Branch) {
    let Some(next) = next_deadline(b) else {
        return;
    };
    if b.wake.is_some_and(|w| w <= next) {
        return;
    }
    b.wake = Some(next);
    cx.shard.schedule(target, TimerKind::Deadline, next);
}

/// §16.6: the request for one branch, built in one buffer by the splice editor.
fn build_forward(
    cx: &Ctx<'_>,
    t: &ProxyTxn,
    attempt: &Attempt,
    peer: Peer,
    id: u64,
) -> Option<Bytes> {
    let state = cx.state;
    let d = t.deciding.as_deref()?;
    let branch_text = branch::write(id, d.loop_hash);
    let prefix = &state.via_prefix[tidx(peer.transport)];
    let mut via = [0u8; 512];
    let via_len = join_into(&mut via, prefix, &branch_text)?;
    let mut ip_buf = [0u8; 64];
    let src_ip = ip_text(t.source.addr.ip(), &mut ip_buf);
    let mut ed = Editor::new(&d.request);
    if let Some(uri) = &attempt.request_uri {
        ed.set_request_uri(uri).ok()?;
    } else if let Some(uri) = &d.strict_uri {
        ed.set_request_uri(uri).ok()?;
    }
    if d.strict_uri.is_some() {
        ed.remove_header(b"Route").ok()?;
    } else if d.pop_route {
        ed.pop_route().ok()?;
    }
    ed.set_via_received(src_ip, t.source.addr.port()).ok()?;
    ed.push_via(&via[..via_len]).ok()?;
    ed.decrement_max_forwards().ok()?;
    if d.record_route {
        ed.prepend_record_route(&state.record_route[tidx(t.source.transport)])
            .ok()?;
    }
    let identity = t.identity.as_ref();
    let trust = Trust::of(t);
    let mut stripped = trust.strip_request(&mut ed, identity).ok()?;
    if let Some(id) = identity {
        id.on_request(&mut ed).ok()?;
    }
    if !trust.to_carrier && d.plan.strip_credentials {
        stripped += strip_own_credentials(&mut ed, &d.request)?;
    }
    let Some(headers) = attempt.headers.as_deref() else {
        return Some(ed.finish());
    };
    // One splice per header while the editor has room (no allocation); a long list is
    // written as one block instead. A caller ID rewrite takes two of the splices.
    let room = HEADER_SPLICES
        .saturating_sub(if identity.is_some() { 3 } else { 0 })
        .saturating_sub(stripped);
    let block;
    if headers.len() <= room {
        for h in headers {
            ed.add_header(h.name.as_bytes(), h.value.as_bytes()).ok()?;
        }
    } else {
        block = header_block(headers);
        let (name, value) = block.split_once(": ")?;
        ed.add_header(name.as_bytes(), value.as_bytes()).ok()?;
    }
    Some(ed.finish())
}

/// Who is on each side of a proxied message, for the identity rules (behaviour.md
/// §5.3): a server (a customer PBX) is outside our trust domain (RFC 3325), so the
/// identity headers it writes never pass, and no credentials go to a carrier.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Trust {
    /// The request comes from a carrier leg (its responses go back to one).
    pub from_carrier: bool,
    /// The request goes to a carrier leg (its responses come from one).
    pub to_carrier: bool,
}

/// Identity headers a server may not assert; P-Asserted-Identity is written by our
/// caller-ID rules only.
const IDENTITY_HEADERS: [&[u8]; 3] = [
    b"P-Asserted-Identity",
    b"P-Preferred-Identity",
    b"Remote-Party-ID",
];

impl Trust {
    pub fn of(t: &ProxyTxn) -> Trust {
        Trust {
            from_carrier: t.from_carrier,
            to_carrier: t.to_carrier,
        }
    }

    /// A request on its way: a server's identity headers go (but the P-Asserted-Identity
    /// our caller-ID rule sets, which `identity` writes after this), and toward a carrier
    /// every `Proxy-Authorization`. Returns the splices used.
    fn strip_request(
        self,
        ed: &mut Editor<'_>,
        identity: Option<&IdentityEdit>,
    ) -> Result<usize, trunkstore_sip::Error> {
        let mut used = 0;
        if !self.from_carrier {
            let sets_pai = identity.is_some_and(|i| i.asserts());
            for name in IDENTITY_HEADERS {
                if !(sets_pai && name == b"P-Asserted-Identity") {
                    used += ed.remove_header(name)?;
                }
            }
        }
        if self.to_carrier {
            used += ed.remove_header(b"Proxy-Authorization")?;
        }
        Ok(used)
    }

    /// A response on its way back: a server's identity headers go, and toward a carrier
    /// every `Proxy-Authenticate` (a customer may not collect a carrier's credentials).
    fn strip_response(self, ed: &mut Editor<'_>) -> Result<(), trunkstore_sip::Error> {
        if !self.to_carrier {
            for name in IDENTITY_HEADERS {
                ed.remove_header(name)?;
            }
        }
        if self.from_carrier {
            ed.remove_header(b"Proxy-Authenticate")?;
        }
        Ok(())
    }
}

/// Editor splices left for `sip_headers` after the forwarding edits (6 of 16).
const HEADER_SPLICES: usize = 8;

/// RFC 3261 §22.3: a proxy consumes the credentials addressed to its own realm and
/// forwards any others. The request was authenticated by its first `Proxy-Authorization`
/// (outbound.rs), so that one's realm is ours: every line with that realm goes, the
/// rest stay (re-added after the other headers: the editor removes lines by name only,
/// and the order of different header names does not matter, §7.3.1). Returns the
/// splices used.
fn strip_own_credentials<'a>(ed: &mut Editor<'a>, msg: &'a Message) -> Option<usize> {
    use trunkstore_sip::digest::Credentials;
    let Some(first) = msg.header(HeaderName::ProxyAuthorization) else {
        return Some(0);
    };
    let ours = Credentials::parse(first).ok()?.realm;
    let removed = ed.remove_header(b"Proxy-Authorization").ok()?;
    let mut used = removed;
    for value in msg.headers(HeaderName::ProxyAuthorization) {
        let theirs =
            Credentials::parse(value).map_or(true, |c| !c.realm.eq_ignore_ascii_case(ours));
        if theirs {
            ed.add_header(b"Proxy-Authorization", value).ok()?;
            used += 1;
        }
    }
    Some(used)
}

/// `A: 1\r\nB: 2` (the editor adds the last CRLF). Values were checked free of CR/LF at
/// load, so this cannot inject anything the configuration did not say.
fn header_block(headers: &[trunkstore_config::SipHeader]) -> String {
    let mut out = String::new();
    for (i, h) in headers.iter().enumerate() {
        if i > 0 {
            out.push_str("\r\n");
        }
        out.push_str(&h.name);
        out.push_str(": ");
        out.push_str(&h.value);
    }
    out
}

/// Keeps the better of the best response so far and `new` (§16.7 step 6): 6xx first, then
/// the lowest class; among 4xx prefer 401/407/415/420/484; prefer anything over 503;
/// on a tie a received response beats one we made up, and the earlier one wins.
pub(crate) fn record(t: &mut ProxyTxn, new: Best) {
    // After the final response there is nothing left to choose.
    let Some(d) = t.deciding.as_deref_mut() else {
        return;
    };
    fn rank(b: &Best) -> (u8, u8, u8) {
        let code = b.status();
        let class = match code / 100 {
            6 => 0,
            2 => 1,
            3 => 2,
            4 => 3,
            _ => 4,
        };
        let pref = match code {
            401 | 407 | 415 | 420 | 484 => 0,
            503 => 2,
            _ => 1,
        };
        (class, pref, u8::from(matches!(b, Best::Local(_))))
    }
    let better = match &d.best {
        None => true,
        Some(old) => rank(&new) < rank(old),
    };
    if better {
        d.best = Some(new);
    }
}

/// A branch ended with a final non-2xx (received, or made up for a timeout or transport
/// error): fail over or answer.
fn on_branch_final(
    cx: &mut Ctx<'_>,
    t: &mut ProxyTxn,
    idx: usize,
    best: Best,
    failure: Failure,
    reason: FailoverReason,
) {
    let Some(b) = t.branches.get(idx) else {
        return;
    };
    if b.given_up {
        // Counted as a timeout when the timer gave up on it; the plan has moved on.
        return;
    }
    // A branch we cancelled ourselves (timer C) counts as a timeout, whatever its 487
    // says.
    let (best, failure, reason) = if b.cancelled_by_proxy && best.status() == 487 {
        (Best::Local(408), Failure::Timeout, FailoverReason::Timeout)
    } else {
        (best, failure, reason)
    };
    let status = best.status();
    record(t, best);
    if status >= 600 {
        cancel_branches(cx, t, true);
    }
    if may_go_on(t, failure) {
        set_failover_reason(t, reason);
    } else {
        close_plan(t);
    }
    advance(cx, t);
}

/// Every attempt is done: the caller gets the best response (§16.7 step 6).
fn finish(cx: &mut Ctx<'_>, t: &mut ProxyTxn) {
    if t.server.is_final() {
        return;
    }
    let Some(d) = t.deciding.as_deref_mut() else {
        return;
    };
    let best = d.best.take();
    let code = match (&best, t.cancelled) {
        (_, true) => 487,
        (Some(b), false) => b.status(),
        (None, false) => 480,
    };
    let now = cx.now;
    let mut timers = Timers::new(cx.state.timers);
    match &mut t.server {
        ServerSide::Invite(_) => {
            let resp = final_response(cx, t, best.as_ref(), code);
            let Some(resp) = resp else { return };
            if let ServerSide::Invite(s) = &mut t.server {
                s.on_final(resp.clone(), now, &mut timers);
            }
            cx.send(t.source, Some(t.local), resp);
            if t.initial_invite {
                let outcome = if t.cancelled {
                    Outcome::Cancelled
                } else {
                    Outcome::Failed
                };
                cx.state.metrics.call_ended(t.direction, outcome);
                let code = if code == 503 { 500 } else { code };
                calls::failed(cx, t, code);
            }
        }
        ServerSide::NonInvite(_) => {
            // RFC 4320: no 408 to a non-INVITE; the client has given up by now.
            let made_up_timeout = matches!(best, None | Some(Best::Local(408)));
            if made_up_timeout && !t.cancelled {
                if let ServerSide::NonInvite(s) = &mut t.server {
                    s.abandon();
                }
            } else if let Some(resp) = final_response(cx, t, best.as_ref(), code) {
                if let ServerSide::NonInvite(s) = &mut t.server {
                    s.on_final(resp.clone(), now, &mut timers);
                }
                cx.send(t.source, Some(t.local), resp);
            }
            if let Some(end) = t.ends {
                calls::ended(cx, end, code);
            }
        }
    }
    cx.schedule(TimerTarget::Server(t.key), &mut timers);
}

/// The final response to relay: the received one minus our Via, or one we make; a 503 is
/// relayed as 500 (§16.7 step 6: a 503 would make the caller think *we* are down).
fn final_response(cx: &Ctx<'_>, t: &ProxyTxn, best: Option<&Best>, code: u16) -> Option<Bytes> {
    match best {
        Some(Best::Received(m)) if m.status() == Some(code) && code != 503 => {
            relay(m, t.identity.as_ref(), Trust::of(t))
        }
        _ => {
            // Made from the request as received: the caller's own identity already.
            let code = if code == 503 { 500 } else { code };
            let request = &t.deciding.as_deref()?.request;
            local::build(cx, request, code, local::reason(code), &[])
        }
    }
}

/// A response without our (top) Via, with the caller's identity restored and the
/// headers the trust rules remove removed (§5.3).
pub(crate) fn relay(m: &Message, identity: Option<&IdentityEdit>, trust: Trust) -> Option<Bytes> {
    // §16.7 step 3: with no Via left once ours is removed, it was meant for us.
    if !has_second_via(m) {
        return None;
    }
    let mut ed = Editor::new(m);
    ed.remove_top_via().ok()?;
    trust.strip_response(&mut ed).ok()?;
    if let Some(id) = identity {
        id.on_response(&mut ed).ok()?;
    }
    Some(ed.finish())
}

/// Is there a Via value below ours (on another line, or after a comma on ours)?
fn has_second_via(m: &Message) -> bool {
    let mut lines = m.headers(HeaderName::Via);
    let Some(top) = lines.next() else {
        return false;
    };
    lines.next().is_some() || trunkstore_sip::scan::split_list(top).nth(1).is_some()
}

/// The caller CANCELled (§16.10): cancel every pending branch, answer 487 if nothing is
/// in flight.
pub(crate) fn cancel_by_caller(cx: &mut Ctx<'_>, t: &mut ProxyTxn) {
    if t.server.is_final() || !matches!(t.server, ServerSide::Invite(_)) {
        return;
    }
    t.cancelled = true;
    if let Some(d) = t.deciding.as_deref_mut() {
        d.delay = None;
    }
    cancel_branches(cx, t, false);
    advance(cx, t);
}

fn cancel_branches(cx: &mut Ctx<'_>, t: &mut ProxyTxn, by_proxy: bool) {
    for i in 0..t.branches.len() {
        cancel_branch(cx, t, i, by_proxy);
    }
}

/// CANCELs one INVITE branch: now if it has had a provisional, else as soon as one
/// arrives (§9.1).
fn cancel_branch(cx: &mut Ctx<'_>, t: &mut ProxyTxn, idx: usize, by_proxy: bool) {
    let key = t.key;
    let Some(b) = t.branches.get_mut(idx) else {
        return;
    };
    if !matches!(&b.client, ClientSide::Invite(c) if c.is_pending()) {
        return;
    }
    if !matches!(b.cancel, CancelState::None) {
        return;
    }
    b.cancelled_by_proxy = by_proxy;
    b.cancel = CancelState::Pending;
    if b.provisional {
        send_cancel(cx, key, idx, b);
    }
}

fn send_cancel(cx: &mut Ctx<'_>, key: TxKey, idx: usize, b: &mut Branch) {
    if !matches!(b.cancel, CancelState::Pending) {
        return;
    }
    let Some(cancel) = parse_own(cx.state, b.request.as_ref()).and_then(|m| build::cancel(&m).ok())
    else {
        return;
    };
    let mut timers = Timers::new(cx.state.timers);
    let reliable = b.peer.transport == Transport::Tcp;
    let client = ClientNonInvite::start(reliable, cx.now, &mut timers);
    // If the INVITE never gets its final response, give up 64·T1 after the CANCEL
    // (§9.1); timer C carries that deadline.
    b.timer_c = Some(cx.now + cx.state.timers.t1x64());
    b.c_after_cancel = true;
    b.cancel = CancelState::Sent(Box::new(SentCancel {
        request: cancel.clone(),
        client,
    }));
    let idx16 = u16::try_from(idx).unwrap_or(u16::MAX);
    arm_deadline(cx, TimerTarget::Branch(key, idx16), b);
    if let Some(entry) = cx
        .state
        .clients
        .get(&ClientKey {
            id: b.id,
            cancel: false,
        })
        .map(|e| e.clone())
    {
        cx.state.clients.insert(
            ClientKey {
                id: b.id,
                cancel: true,
            },
            entry,
        );
    }
    cx.schedule(TimerTarget::Branch(key, idx16), &mut timers);
    send_on(cx, b.peer, cancel);
}

/// Our own forwarded request, parsed again (only for the rare CANCEL/ACK/BYE we build).
fn parse_own(state: &State, bytes: Option<&Bytes>) -> Option<Message> {
    parse_datagram(bytes?.clone(), &state.cfg.limits).ok()
}

/// A response to one of our branches.
pub(crate) fn on_branch_response(
    cx: &mut Ctx<'_>,
    t: &mut ProxyTxn,
    idx: usize,
    is_cancel: bool,
    msg: Message,
) {
    let status = msg.status().unwrap_or(500);
    let key = t.key;
    let now = cx.now;
    let mut timers = Timers::new(cx.state.timers);
    let target = TimerTarget::Branch(key, u16::try_from(idx).unwrap_or(u16::MAX));
    let Some(b) = t.branches.get_mut(idx) else {
        return;
    };
    if is_cancel {
        if let CancelState::Sent(c) = &mut b.cancel {
            c.client.on_response(status, now, &mut timers);
        }
        cx.schedule(target, &mut timers);
        return;
    }
    match &mut b.client {
        ClientSide::Invite(c) => {
            let action = c.on_response(status, now, &mut timers);
            cx.schedule(target, &mut timers);
            if matches!(
                action,
                client_invite::ResponseAction::Success | client_invite::ResponseAction::Final
            ) {
                observe_final(cx.state, b, now, t.initial_invite, t.direction);
            }
            match action {
                client_invite::ResponseAction::Provisional => on_provisional(cx, t, idx, msg),
                client_invite::ResponseAction::Success => on_2xx(cx, t, idx, msg),
                client_invite::ResponseAction::Final => {
                    send_ack(cx, b, &msg);
                    b.timer_c = None;
                    let failure = Failure::Status(status);
                    let best = Best::Received(Box::new(msg));
                    on_branch_final(cx, t, idx, best, failure, FailoverReason::Response);
                }
                client_invite::ResponseAction::AckAgain => {
                    cx.state.metrics.retransmission_received();
                    send_ack(cx, b, &msg)
                }
                client_invite::ResponseAction::Ignore => {}
            }
        }
        ClientSide::NonInvite(c) => {
            let action = c.on_response(status, now, &mut timers);
            cx.schedule(target, &mut timers);
            // RFC 4320: provisionals other than our own 100 never go upstream.
            if action == client_non_invite::ResponseAction::Final {
                let failure = Failure::Status(status);
                let best = Best::Received(Box::new(msg));
                on_branch_final(cx, t, idx, best, failure, FailoverReason::Response);
            }
        }
    }
}

/// The final response of an INVITE branch arrived: INVITE → final histogram, once per
/// branch, for initial INVITEs whose branch was not cancelled (a 487 times the CANCEL).
fn observe_final(
    state: &State,
    b: &mut Branch,
    now: Instant,
    initial: bool,
    direction: crate::route::Direction,
) {
    if let Some(sent) = b.sent.take() {
        if initial && matches!(b.cancel, CancelState::None) {
            let took = now.saturating_duration_since(sent);
            state.metrics.final_response(direction, took);
        }
    }
}

fn on_provisional(cx: &mut Ctx<'_>, t: &mut ProxyTxn, idx: usize, msg: Message) {
    let status = msg.status().unwrap_or(100);
    let key = t.key;
    let (initial, direction) = (t.initial_invite, t.direction);
    let Some(b) = t.branches.get_mut(idx) else {
        return;
    };
    b.provisional = true;
    if status > 100 && !b.progress && initial {
        if let Some(sent) = b.sent {
            let took = cx.now.saturating_duration_since(sent);
            cx.state.metrics.first_provisional(direction, took);
        }
    }
    if status > 100 {
        b.progress = true;
        // §16.7 step 2: a provisional restarts timer C.
        if !b.c_after_cancel {
            b.timer_c = Some(cx.now + cx.state.cfg.timer_c);
            arm_deadline(cx, TimerTarget::Branch(key, idx as u16), b);
        }
    }
    if matches!(b.cancel, CancelState::Pending) {
        send_cancel(cx, key, idx, b);
    }
    let forward = status > 100 && !b.cancelled_by_proxy;
    let plain_ringing = b.ignore_early_media && is_early_media(&msg, status);
    let callee = b.peer;
    // 100 is hop-by-hop: never forwarded.
    if forward {
        if initial {
            calls::early(cx, t, callee, &msg);
        }
        let identity = t.identity.as_ref();
        let trust = Trust::of(t);
        let resp = if plain_ringing {
            relay_as_ringing(&msg, identity, trust)
        } else {
            relay(&msg, identity, trust)
        };
        if let (ServerSide::Invite(s), Some(resp)) = (&mut t.server, resp) {
            if s.on_provisional(resp.clone()) {
                cx.send(t.source, Some(t.local), resp);
            }
        }
    }
}

/// §4.6: a 183, or any provisional with a body (SDP), is early media.
fn is_early_media(msg: &Message, status: u16) -> bool {
    status == 183 || !msg.body().is_empty()
}

/// The provisional as a `180 Ringing` without body, Content-Type or our Via; its other
/// headers (To tag, Record-Route, Contact) are kept so the early dialog is the same.
fn relay_as_ringing(m: &Message, identity: Option<&IdentityEdit>, trust: Trust) -> Option<Bytes> {
    if !has_second_via(m) {
        return None;
    }
    let mut ed = Editor::new(m);
    ed.remove_top_via().ok()?;
    trust.strip_response(&mut ed).ok()?;
    if let Some(id) = identity {
        id.on_response(&mut ed).ok()?;
    }
    ed.remove_header(b"Content-Type").ok()?;
    ed.remove_header(b"Content-Disposition").ok()?;
    ed.set_body(b"").ok()?;
    let edited = ed.finish();
    // The editor keeps the status line; replace it here (rare path: one more copy).
    let line_end = memchr_crlf(&edited)?;
    const RINGING: &[u8] = b"SIP/2.0 180 Ringing";
    let mut out = BytesMut::with_capacity(edited.len() - line_end + RINGING.len());
    out.put_slice(RINGING);
    out.put_slice(&edited[line_end..]);
    Some(out.freeze())
}

fn memchr_crlf(b: &[u8]) -> Option<usize> {
    b.windows(2).position(|w| w == b"\r\n")
}

/// A 2xx goes upstream at once, retransmissions too (RFC 6026); the server transaction
/// moves to Accepted. On a branch the proxy itself cancelled, the dialog is ours to end:
/// ACK and BYE it (late2xx.rs).
fn on_2xx(cx: &mut Ctx<'_>, t: &mut ProxyTxn, idx: usize, msg: Message) {
    let Some(b) = t.branches.get_mut(idx) else {
        return;
    };
    b.timer_c = None;
    if b.cancelled_by_proxy {
        crate::late2xx::on_2xx(cx, t, idx, &msg);
        return;
    }
    let Some(resp) = relay(&msg, t.identity.as_ref(), Trust::of(t)) else {
        return;
    };
    let mut timers = Timers::new(cx.state.timers);
    let first = !t.server.is_final();
    if let ServerSide::Invite(s) = &mut t.server {
        s.on_2xx(cx.now, &mut timers);
    }
    cx.schedule(TimerTarget::Server(t.key), &mut timers);
    cx.send(t.source, Some(t.local), resp);
    if first && t.initial_invite {
        cx.state.metrics.call_ended(t.direction, Outcome::Answered);
        let b = &t.branches[idx];
        let (attempt, failover, callee) = (b.attempt, b.is_failover, b.peer);
        calls::established(cx, t, callee, &msg, attempt, failover);
    }
}

/// Hop-by-hop ACK for a non-2xx final (§17.1.1.3), sent to the branch's hop.
fn send_ack(cx: &mut Ctx<'_>, b: &Branch, resp: &Message) {
    let Some(req) = parse_own(cx.state, b.request.as_ref()) else {
        return;
    };
    if let Ok(ack) = build::ack_for_non_2xx(&req, resp) {
        send_on(cx, b.peer, ack);
    }
}

/// Timers of the server side (and the attempt delay).
pub(crate) fn on_server_timer(cx: &mut Ctx<'_>, t: &mut ProxyTxn, kind: TimerKind, at: Instant) {
    let now = cx.now;
    let mut timers = Timers::new(cx.state.timers);
    if kind == TimerKind::Delay {
        if let Some(d) = t.deciding.as_deref_mut().filter(|d| d.delay == Some(at)) {
            d.delay = None;
            d.delay_elapsed = Some(d.next_attempt);
            advance(cx, t);
        }
        return;
    }
    match &mut t.server {
        ServerSide::Invite(s) => {
            if let server_invite::TimerAction::Retransmit(resp) =
                s.on_timer(kind, at, now, &mut timers)
            {
                cx.state.metrics.retransmission_sent();
                cx.send(t.source, Some(t.local), resp);
            }
        }
        ServerSide::NonInvite(s) => {
            s.on_timer(kind, at);
        }
    }
    cx.schedule(TimerTarget::Server(t.key), &mut timers);
}

/// Timers of one branch: its client transaction, its CANCEL, timer C and the attempt
/// timers.
pub(crate) fn on_branch_timer(
    cx: &mut Ctx<'_>,
    t: &mut ProxyTxn,
    idx: usize,
    kind: TimerKind,
    at: Instant,
) {
    let now = cx.now;
    let key = t.key;
    let target = TimerTarget::Branch(key, u16::try_from(idx).unwrap_or(u16::MAX));
    let mut timers = Timers::new(cx.state.timers);
    let Some(b) = t.branches.get_mut(idx) else {
        return;
    };
    match (kind, &mut b.client) {
        (TimerKind::Deadline, _) => {
            if b.wake == Some(at) {
                b.wake = None;
                on_deadlines(cx, t, idx, target);
            }
            return;
        }
        (TimerKind::E | TimerKind::F | TimerKind::K, ClientSide::Invite(_)) => {
            if let CancelState::Sent(c) = &mut b.cancel {
                if c.client.on_timer(kind, at, now, &mut timers)
                    == client_non_invite::TimerAction::Retransmit
                {
                    resend_on(cx, b.peer, c.request.clone());
                }
            }
            crate::late2xx::on_timer(cx, b.late.as_deref_mut(), target, kind, at);
        }
        (_, ClientSide::Invite(c)) => match c.on_timer(kind, at, now, &mut timers) {
            // A branch given up on is not pushed any more; if it answers late, it is
            // CANCELled or ACKed and BYEd.
            client_invite::TimerAction::Retransmit if b.given_up => {}
            client_invite::TimerAction::Retransmit => resend_request(cx, b),
            // Timer B: no response at all.
            client_invite::TimerAction::Timeout => no_response(cx, t, idx),
            _ => {}
        },
        (_, ClientSide::NonInvite(c)) => match c.on_timer(kind, at, now, &mut timers) {
            client_non_invite::TimerAction::Retransmit => resend_request(cx, b),
            // Timer F.
            client_non_invite::TimerAction::Timeout => no_response(cx, t, idx),
            _ => {}
        },
    }
    cx.schedule(target, &mut timers);
}

/// The branch's deadline timer fired: handles each deadline that is due, earliest
/// first, then queues the timer (the branch's `target`) again for the next one.
fn on_deadlines(cx: &mut Ctx<'_>, t: &mut ProxyTxn, idx: usize, target: TimerTarget) {
    loop {
        let Some(b) = t.branches.get_mut(idx) else {
            return;
        };
        let Some(due) = next_deadline(b).filter(|&d| d <= cx.now) else {
            break;
        };
        if b.progress_deadline == Some(due) && !b.progress {
            b.progress_deadline = None;
            give_up_branch(cx, t, idx);
        } else if b.answer_deadline == Some(due) {
            b.answer_deadline = None;
            give_up_branch(cx, t, idx);
        } else {
            b.timer_c = None;
            on_timer_c(cx, t, idx);
        }
    }
    if let Some(b) = t.branches.get_mut(idx) {
        arm_deadline(cx, target, b);
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
    if b.c_after_cancel || !b.provisional {
        let failure = if b.provisional {
            Failure::Timeout
        } else {
            Failure::Unreachable
        };
        c.terminate();
        let reason = FailoverReason::Timeout;
        on_branch_final(cx, t, idx, Best::Local(408), failure, reason);
    } else {
        cancel_branch(cx, t, idx, true);
    }
}

/// An attempt timer expired (§4.5): the attempt counts as a timeout now and the plan
/// moves on at once (failover, or 408 to the caller). The branch itself is CANCELled
/// (after its first provisional, if it has had none: §9.1) and kept until it ends, so a
/// 200 it sends anyway is ACKed and BYEd here and never reaches the caller.
fn give_up_branch(cx: &mut Ctx<'_>, t: &mut ProxyTxn, idx: usize) {
    if !matches!(t.branches.get(idx), Some(b) if !b.given_up) {
        return;
    }
    cancel_branch(cx, t, idx, true);
    if let Some(b) = t.branches.get_mut(idx) {
        b.given_up = true;
        b.cancelled_by_proxy = true;
    }
    record(t, Best::Local(408));
    if may_go_on(t, Failure::Timeout) {
        set_failover_reason(t, FailoverReason::Timeout);
    } else {
        close_plan(t);
    }
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
    b.timer_c = None;
    let reason = FailoverReason::Transport;
    on_branch_final(cx, t, idx, Best::Local(503), Failure::Unreachable, reason);
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
    for b in &mut t.branches {
        if b.request.is_some() && !b.needs_request() {
            b.request = None;
        }
    }
}

/// Route pre-processing (§16.4) decided once per request.
pub(crate) struct Routing {
    /// The top Route is ours: pop it when forwarding.
    pub pop_route: bool,
    /// Strict-router fix-up: the Request-URI was ours, the (only) Route value is the
    /// real Request-URI.
    pub strict_uri: Option<bytes::Bytes>,
    /// A Route that does not name us is left after ours is popped (or a strict
    /// router's): an out-of-dialog request carrying one is refused.
    pub foreign_route: bool,
    /// Request-URI is us, with no user part (OPTIONS ping target).
    pub to_us_without_user: bool,
}

/// Where and how a request forwarded without a transaction goes.
pub(crate) struct StatelessHop<'a> {
    /// The other leg of the dialog.
    pub hop: Peer,
    pub routing: &'a Routing,
    pub identity: Option<&'a IdentityEdit>,
    pub trust: Trust,
}

/// Forwards a request without a transaction (the ACK for a 2xx): our Via with a branch
/// derived from the request's key (the same for a retransmitted ACK), Route popped,
/// Max-Forwards decremented.
pub(crate) fn forward_stateless(
    cx: &mut Ctx<'_>,
    msg: &Message,
    from: Peer,
    key: TxKey,
    to: StatelessHop<'_>,
) {
    let StatelessHop {
        hop,
        routing,
        identity,
        trust,
    } = to;
    let id = mix(key.0 as u64 ^ (key.0 >> 64) as u64 ^ 0x41434b);
    let branch_text = branch::write(id, 0);
    let prefix = &cx.state.via_prefix[tidx(hop.transport)];
    let mut via = [0u8; 512];
    let Some(via_len) = join_into(&mut via, prefix, &branch_text) else {
        return;
    };
    let mut ip_buf = [0u8; 64];
    let src_ip = ip_text(from.addr.ip(), &mut ip_buf);
    let mut ed = Editor::new(msg);
    let ok = (|| -> Result<(), trunkstore_sip::Error> {
        if let Some(uri) = &routing.strict_uri {
            ed.set_request_uri(uri)?;
            ed.remove_header(b"Route")?;
        } else if routing.pop_route {
            ed.pop_route()?;
        }
        ed.set_via_received(src_ip, from.addr.port())?;
        ed.push_via(&via[..via_len])?;
        ed.decrement_max_forwards()?;
        trust.strip_request(&mut ed, identity)?;
        if let Some(id) = identity {
            id.on_request(&mut ed)?;
        }
        Ok(())
    })();
    if ok.is_ok() {
        let data = ed.finish();
        let local: Option<SocketAddr> = cx.state.cfg.local(hop.transport);
        cx.send(hop, local, data);
    }
}

/// `a` then `b` into `buf` (a Via value on the stack); `None` if it does not fit.
fn join_into(buf: &mut [u8], a: &[u8], b: &[u8]) -> Option<usize> {
    let n = a.len() + b.len();
    buf.get_mut(..a.len())?.copy_from_slice(a);
    buf.get_mut(a.len()..n)?.copy_from_slice(b);
    Some(n)
}
