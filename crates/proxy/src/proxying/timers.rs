//! The transaction timers of a proxied request: the server transaction's (G, H, I, J,
//! L), and each branch's client transaction's, its CANCEL's and its late BYEs' (A, B, D,
//! E, F, K, M). The proxy's own timers (the attempt delay, a branch's deadlines) move the
//! plan and are handled by `proxying/mod.rs`.

use std::time::Instant;

use super::answer::BranchEnd;
use super::forward::{resend_on, resend_request};
use crate::context::Ctx;
use crate::keys::TimerTarget;
use crate::policy::Failure;
use crate::state::{ClientSide, ProxyTxn, ServerSide};
use crate::transaction::{client_invite, client_non_invite, server_invite, TimerKind, Timers};

/// A timer of the server transaction.
pub(super) fn on_server_transaction_timer(
    cx: &mut Ctx<'_>,
    t: &mut ProxyTxn,
    kind: TimerKind,
    at: Instant,
) {
    let now = cx.now;
    let mut timers = Timers::new(cx.state.timers);
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

/// A timer of one of branch `idx`'s transactions. Timer B/F (the branch never answered)
/// is returned as the branch's end: a 408 from an unreachable target.
pub(super) fn on_transaction_timer(
    cx: &mut Ctx<'_>,
    t: &mut ProxyTxn,
    idx: usize,
    kind: TimerKind,
    at: Instant,
) -> Option<BranchEnd> {
    let now = cx.now;
    let target = TimerTarget::Branch(t.key, u16::try_from(idx).unwrap_or(u16::MAX));
    let mut timers = Timers::new(cx.state.timers);
    let b = t.branches.get_mut(idx)?;
    let mut timed_out = false;
    match (kind, &mut b.client) {
        (TimerKind::E | TimerKind::F | TimerKind::K, ClientSide::Invite(_)) => {
            if let Some(c) = &mut b.cancel {
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
            client_invite::TimerAction::Retransmit if b.state.given_up() => {}
            client_invite::TimerAction::Retransmit => resend_request(cx, b),
            // Timer B: no response at all.
            client_invite::TimerAction::Timeout => timed_out = true,
            _ => {}
        },
        (_, ClientSide::NonInvite(c)) => match c.on_timer(kind, at, now, &mut timers) {
            client_non_invite::TimerAction::Retransmit => resend_request(cx, b),
            // Timer F.
            client_non_invite::TimerAction::Timeout => timed_out = true,
            _ => {}
        },
    }
    cx.schedule(target, &mut timers);
    if !timed_out {
        return None;
    }
    b.deadlines.clear_all();
    b.state.finish();
    Some(BranchEnd::timeout(Failure::Unreachable))
}
