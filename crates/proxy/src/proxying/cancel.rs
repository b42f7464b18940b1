//! CANCEL (§9.1, §16.10): a pending INVITE branch is cancelled at once if it has had a
//! provisional, else by its first one; the CANCEL runs its own client transaction on the
//! branch.

use bytes::Bytes;
use trunkstore_sip::build;
use trunkstore_sip::message::Message;
use trunkstore_sip::parse::parse_datagram;

use super::forward::{arm_deadline, pending_invite, send_on};
use crate::context::Ctx;
use crate::error::ForwardError;
use crate::keys::{ClientKey, TimerTarget, TxKey};
use crate::machines::branch::{CancelStep, Canceller};
use crate::machines::deadlines::DeadlineKind;
use crate::state::{Branch, ProxyTxn, SentCancel, State};
use crate::transaction::{ClientNonInvite, Timers};

/// Cancels every pending INVITE branch on behalf of `by`.
pub(super) fn cancel_branches(cx: &mut Ctx<'_>, t: &mut ProxyTxn, by: Canceller) {
    for i in 0..t.branches.len() {
        cancel_branch(cx, t, i, by);
    }
}

/// CANCELs one INVITE branch: now if it has had a provisional, else as soon as one
/// arrives (§9.1).
pub(super) fn cancel_branch(cx: &mut Ctx<'_>, t: &mut ProxyTxn, idx: usize, by: Canceller) {
    let key = t.key;
    let Some(b) = t.branches.get_mut(idx) else {
        return;
    };
    if !pending_invite(b) {
        return;
    }
    if b.state.cancel(by) == CancelStep::SendNow {
        send_cancel(cx, key, idx, b);
    }
}

/// Sends the branch's CANCEL (its state says one is due now). If the INVITE never gets
/// its final response, the branch is given up 64·T1 after the CANCEL (§9.1); timer C
/// carries that deadline, set first so that it holds even if the CANCEL cannot be built.
pub(super) fn send_cancel(cx: &mut Ctx<'_>, key: TxKey, idx: usize, b: &mut Branch) {
    let idx16 = u16::try_from(idx).unwrap_or(u16::MAX);
    b.deadlines
        .set(DeadlineKind::C, cx.now + cx.state.timers.t1x64());
    arm_deadline(cx, TimerTarget::Branch(key, idx16), b);
    let built = parse_own(cx.state, b.request.as_ref())
        .and_then(|m| build::cancel(&m).map_err(|_| ForwardError::Build("CANCEL")));
    let cancel = match built {
        Ok(cancel) => cancel,
        Err(e) => return cx.forward_failed(b"-", e),
    };
    let mut timers = Timers::new(cx.state.timers);
    let reliable = b.peer.transport.is_reliable();
    let client = ClientNonInvite::start(reliable, cx.now, &mut timers);
    b.cancel = Some(Box::new(SentCancel {
        request: cancel.clone(),
        client,
    }));
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
pub(super) fn parse_own(state: &State, bytes: Option<&Bytes>) -> Result<Message, ForwardError> {
    let bytes = bytes.ok_or(ForwardError::RequestUnparseable)?;
    parse_datagram(bytes.clone(), &state.cfg.limits).map_err(|_| ForwardError::RequestUnparseable)
}
