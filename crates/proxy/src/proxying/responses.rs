//! Responses on a branch (§16.7): provisionals relayed (early media as a plain 180 when
//! asked), a 2xx relayed at once (or ended by the proxy on a branch it cancelled), a
//! non-2xx final ACKed hop by hop and handed back as the branch's end; responses to the
//! branch's CANCEL.

use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use trunkstore_sip::build;
use trunkstore_sip::message::Message;

use super::answer::{relay, relay_edited, BranchEnd};
use super::cancel::{parse_own, send_cancel};
use super::forward::{arm_deadline, send_on, Trust};
use crate::callerid::IdentityEdit;
use crate::calls;
use crate::context::Ctx;
use crate::error::{Edit, EditResult, ForwardError};
use crate::keys::TimerTarget;
use crate::machines::best::Best;
use crate::machines::deadlines::DeadlineKind;
use crate::metrics::{FailoverReason, Outcome};
use crate::policy::{Direction, Failure};
use crate::state::{Answered, Branch, ClientSide, Held, ProxyTxn, ServerSide, State};
use crate::transaction::{client_invite, client_non_invite, Timers};
use trunkstore_sip::edit::Editor;

/// A response to one of our branches. A final non-2xx (the branch's end) is returned for
/// the plan to weigh; everything else is handled here.
pub(super) fn on_branch_response(
    cx: &mut Ctx<'_>,
    t: &mut ProxyTxn,
    idx: usize,
    is_cancel: bool,
    msg: Box<Message>,
) -> Option<BranchEnd> {
    let status = msg.status().unwrap_or(500);
    let key = t.key;
    let now = cx.now;
    let mut timers = Timers::new(cx.state.timers);
    let target = TimerTarget::Branch(key, u16::try_from(idx).unwrap_or(u16::MAX));
    let b = t.branches.get_mut(idx)?;
    if is_cancel {
        if let Some(c) = &mut b.cancel {
            c.client.on_response(status, now, &mut timers);
        }
        cx.schedule(target, &mut timers);
        return None;
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
                    b.deadlines.clear_all();
                    b.state.finish();
                    return Some(BranchEnd {
                        best: Best::Received(msg),
                        failure: Failure::Status(status),
                        reason: FailoverReason::Response,
                    });
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
                b.state.finish();
                if status < 300 && wants_answer(t, &msg) {
                    return hold(cx, t, idx, msg);
                }
                return Some(BranchEnd {
                    best: Best::Received(msg),
                    failure: Failure::Status(status),
                    reason: FailoverReason::Response,
                });
            }
        }
    }
    None
}

/// The final response of an INVITE branch arrived: INVITE → final histogram, once per
/// branch, for initial INVITEs whose branch was not cancelled (a 487 times the CANCEL).
fn observe_final(state: &State, b: &mut Branch, now: Instant, initial: bool, direction: Direction) {
    if let Some(sent) = b.sent.take() {
        if initial && !b.state.cancel_requested() {
            let took = now.saturating_duration_since(sent);
            state.metrics.final_response(direction, took);
        }
    }
}

fn on_provisional(cx: &mut Ctx<'_>, t: &mut ProxyTxn, idx: usize, msg: Box<Message>) {
    let status = msg.status().unwrap_or(100);
    let key = t.key;
    let (initial, direction) = (t.initial_invite, t.direction);
    let Some(b) = t.branches.get_mut(idx) else {
        return;
    };
    let step = b.state.on_provisional(status);
    if step.first_progress && initial {
        if let Some(sent) = b.sent {
            let took = cx.now.saturating_duration_since(sent);
            cx.state.metrics.first_provisional(direction, took);
        }
    }
    if status > 100 {
        // The progress timeout is met.
        b.deadlines.clear(DeadlineKind::Progress);
    }
    if step.restart_c {
        // §16.7 step 2: a provisional restarts timer C.
        b.deadlines
            .set(DeadlineKind::C, cx.now + cx.state.cfg.timer_c);
        arm_deadline(cx, TimerTarget::Branch(key, idx as u16), b);
    }
    if step.send_cancel {
        send_cancel(cx, key, idx, b);
    }
    let plain_ringing = b.ignore_early_media && is_early_media(&msg, status);
    // 100 is hop-by-hop: never relayed; nor anything from a branch the proxy cancelled.
    if !step.relay {
        return;
    }
    if !plain_ringing && wants_answer(t, &msg) {
        // An INVITE's response: never a branch end.
        let _ = hold(cx, t, idx, msg);
        return;
    }
    relay_provisional(cx, t, idx, &msg, plain_ringing);
}

/// A provisional of branch `idx` goes upstream (as a plain 180 when `plain_ringing`);
/// one with a To tag opens an early dialog.
fn relay_provisional(
    cx: &mut Ctx<'_>,
    t: &mut ProxyTxn,
    idx: usize,
    msg: &Message,
    plain_ringing: bool,
) {
    let Some(callee) = t.branches.get(idx).map(|b| b.peer) else {
        return;
    };
    if t.initial_invite {
        calls::early(cx, t, callee, msg);
    }
    let identity = t.identity.as_ref();
    let trust = Trust::of(t);
    let resp = if plain_ringing {
        relay_as_ringing(msg, identity, trust)
    } else {
        relay(msg, identity, trust)
    };
    let resp = resp
        .map_err(|e| cx.forward_failed(crate::sipview::call_id(msg), e))
        .ok();
    if let (ServerSide::Invite(s), Some(resp)) = (&mut t.server, resp) {
        if s.on_provisional(resp.clone()) {
            cx.send(t.source, Some(t.local), resp);
        }
    }
}

/// §4.6: a 183, or any provisional with a body (SDP), is early media.
fn is_early_media(msg: &Message, status: u16) -> bool {
    status == 183 || !msg.body().is_empty()
}

/// The provisional as a `180 Ringing` without body, Content-Type or our Via; its other
/// headers (To tag, Record-Route, Contact) are kept so the early dialog is the same.
fn relay_as_ringing(
    m: &Message,
    identity: Option<&IdentityEdit>,
    trust: Trust,
) -> Result<Bytes, ForwardError> {
    let edited = relay_edited(m, identity, trust, |ed| {
        let plain = (|| {
            ed.remove_header(b"Content-Type")?;
            ed.remove_header(b"Content-Disposition")?;
            ed.set_body(b"")
        })();
        plain.edit(Edit::PlainRinging)
    })?;
    // The editor keeps the status line; replace it here (rare path: one more copy). The
    // editor wrote it, so it ends with CRLF.
    let line_end = memchr_crlf(&edited).unwrap_or(edited.len());
    const RINGING: &[u8] = b"SIP/2.0 180 Ringing";
    let mut out = BytesMut::with_capacity(edited.len() - line_end + RINGING.len());
    out.put_slice(RINGING);
    out.put_slice(&edited[line_end..]);
    Ok(out.freeze())
}

fn memchr_crlf(b: &[u8]) -> Option<usize> {
    b.windows(2).position(|w| w == b"\r\n")
}

/// A 2xx goes upstream at once, retransmissions too (RFC 6026); the server transaction
/// moves to Accepted. On a branch the proxy itself cancelled, the dialog is ours to end:
/// ACK and BYE it (late2xx.rs).
fn on_2xx(cx: &mut Ctx<'_>, t: &mut ProxyTxn, idx: usize, msg: Box<Message>) {
    let Some(b) = t.branches.get_mut(idx) else {
        return;
    };
    b.deadlines.clear_all();
    b.state.finish();
    if b.state.by_proxy() {
        crate::late2xx::on_2xx(cx, t, idx, &msg);
        return;
    }
    if wants_answer(t, &msg) {
        // An INVITE's response: never a branch end.
        let _ = hold(cx, t, idx, msg);
        return;
    }
    relay_2xx(cx, t, idx, msg);
}

/// A 2xx of branch `idx` goes upstream; the first confirms the call's dialog.
fn relay_2xx(cx: &mut Ctx<'_>, t: &mut ProxyTxn, idx: usize, msg: Box<Message>) {
    let resp = match relay(&msg, t.identity.as_ref(), Trust::of(t)) {
        Ok(resp) => resp,
        Err(e) => return cx.forward_failed(crate::sipview::call_id(&msg), e),
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
        let Some(b) = t.branches.get(idx) else {
            return;
        };
        let (attempt, failover, callee) = (b.attempt, b.is_failover, b.peer);
        calls::established(cx, t, callee, &msg, attempt, failover);
    }
}

/// Hop-by-hop ACK for a non-2xx final (§17.1.1.3), sent to the branch's hop.
fn send_ack(cx: &mut Ctx<'_>, b: &Branch, resp: &Message) {
    let ack = parse_own(cx.state, b.request.as_ref())
        .and_then(|req| build::ack_for_non_2xx(&req, resp).map_err(|_| ForwardError::Build("ACK")));
    match ack {
        Ok(ack) => send_on(cx, b.peer, ack),
        Err(e) => cx.forward_failed(crate::sipview::call_id(resp), e),
    }
}

/// A response whose SDP rtpengine must answer first (behaviour.md §4.7): the request's
/// offer was anchored and the response carries SDP.
fn wants_answer(t: &ProxyTxn, msg: &Message) -> bool {
    t.media.as_ref().is_some_and(|m| m.offer_sdp().is_some()) && crate::anchor::has_sdp(msg)
}

/// Holds a response until rtpengine answers its SDP. One whose To tag and SDP were
/// answered already (a copy, or a 200 repeating its 183's SDP) goes up with the same
/// rewrite at once; a copy of one still waiting is dropped (the reply relays the first).
fn hold(cx: &mut Ctx<'_>, t: &mut ProxyTxn, idx: usize, msg: Box<Message>) -> Option<BranchEnd> {
    let m = t.media.as_deref()?;
    let tag = crate::sipview::to_tag(&msg).unwrap_or(b"");
    let done = m
        .answered
        .iter()
        .find(|a| a.to_tag == tag && a.sdp == msg.body())
        .map(|a| a.rewritten.clone());
    if let Some(sdp) = done {
        // A copy, or a 200 whose SDP is its 183's: rtpengine would answer the same.
        let msg = with_body(cx, &msg, &sdp)?;
        return forward_held(cx, t, idx, msg);
    }
    let waiting = m.held.iter().any(|h| {
        h.branch == idx
            && h.msg.status() == msg.status()
            && crate::sipview::to_tag(&h.msg).unwrap_or(b"") == tag
            && h.msg.body() == msg.body()
    });
    if waiting {
        cx.state.metrics.retransmission_received();
        return None;
    }
    match crate::anchor::answer(cx, t, &msg) {
        Ok(cookie) => {
            let m = t.media.as_deref_mut()?;
            m.held.push(Held {
                cookie,
                branch: idx,
                msg,
            });
            None
        }
        Err(_) => answer_failed(cx, t, idx, msg),
    }
}

/// The answers kept per request for retransmissions: a callee may send a few 18x and a
/// 2xx; a hostile one sending new SDP in every response must not grow it without bound.
const MAX_ANSWERED: usize = 8;

/// rtpengine rewrote the SDP of held response `held`: it goes upstream with the new SDP.
/// Returns the end of a non-INVITE branch (its 2xx), for the plan.
pub(super) fn on_answered(
    cx: &mut Ctx<'_>,
    t: &mut ProxyTxn,
    held: Held,
    sdp: Bytes,
) -> Option<BranchEnd> {
    if let Some(m) = t.media.as_deref_mut() {
        if m.answered.len() < MAX_ANSWERED {
            let to_tag = crate::sipview::to_tag(&held.msg)
                .and_then(|tag| held.msg.slice_ref(tag))
                .unwrap_or_default();
            let original = held.msg.slice_ref(held.msg.body()).unwrap_or_default();
            m.answered.push(Answered {
                branch: held.branch,
                to_tag,
                sdp: original,
                rewritten: sdp.clone(),
            });
        }
    }
    let msg = with_body(cx, &held.msg, &sdp)?;
    forward_held(cx, t, held.branch, msg)
}

/// The response with `sdp` in place of its body (Content-Length rewritten).
fn with_body(cx: &Ctx<'_>, msg: &Message, sdp: &[u8]) -> Option<Box<Message>> {
    let mut ed = Editor::new(msg);
    let edited = ed.set_body(sdp).map(|()| ed.finish()).edit(Edit::Sdp);
    let parsed = edited.and_then(|b| {
        trunkstore_sip::parse::parse_datagram(b, &cx.state.cfg.limits)
            .map_err(|_| ForwardError::Build("SDP"))
    });
    parsed
        .map_err(|e| cx.forward_failed(crate::sipview::call_id(msg), e))
        .ok()
        .map(Box::new)
}

/// A held response, its SDP settled, takes the path it would have taken at once.
fn forward_held(
    cx: &mut Ctx<'_>,
    t: &mut ProxyTxn,
    idx: usize,
    msg: Box<Message>,
) -> Option<BranchEnd> {
    let status = msg.status().unwrap_or(500);
    let invite = matches!(t.branches.get(idx)?.client, ClientSide::Invite(_));
    if !invite {
        return Some(BranchEnd {
            best: Best::Received(msg),
            failure: Failure::Status(status),
            reason: FailoverReason::Response,
        });
    }
    if status < 200 {
        relay_provisional(cx, t, idx, &msg, false);
    } else {
        relay_2xx(cx, t, idx, msg);
    }
    None
}

/// No rtpengine answered the SDP of `msg` (or none took the request). With
/// `on_failure: bypass` it goes upstream untouched; else a provisional goes up as a
/// plain 180 (no SDP that would bypass the relay), an in-dialog answer untouched (the
/// call is up; its media stays where it was), and the 2xx of a call's INVITE is refused:
/// the callee's leg is ACKed and hung up like a late 2xx, the caller gets 503.
pub(super) fn answer_failed(
    cx: &mut Ctx<'_>,
    t: &mut ProxyTxn,
    idx: usize,
    msg: Box<Message>,
) -> Option<BranchEnd> {
    let status = msg.status().unwrap_or(500);
    let bypass = cx.state.cfg.media.bypass_on_failure;
    if !bypass && status < 200 {
        relay_provisional(cx, t, idx, &msg, true);
        return None;
    }
    if bypass || !t.initial_invite || status >= 300 {
        return forward_held(cx, t, idx, msg);
    }
    let b = t.branches.get_mut(idx)?;
    b.state.disown();
    crate::late2xx::on_2xx(cx, t, idx, &msg);
    if let Some(d) = t.deciding.as_deref_mut() {
        d.cursor
            .record(Best::Refused(503, crate::anchor::UNAVAILABLE));
        d.cursor.close();
    }
    None
}
