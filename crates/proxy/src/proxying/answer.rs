//! The answer to the caller (§16.7 steps 5–6): how a branch ended, the final response
//! relayed or made once every attempt is done, and the relay of any response upstream.

use bytes::Bytes;
use trunkstore_sip::edit::Editor;
use trunkstore_sip::message::{HeaderName, Message};

use super::forward::Trust;
use crate::callerid::IdentityEdit;
use crate::context::Ctx;
use crate::error::{Edit, EditResult, ForwardError};
use crate::keys::TimerTarget;
use crate::machines::best::Best;
use crate::metrics::{FailoverReason, Outcome};
use crate::policy::Failure;
use crate::state::{ProxyTxn, ServerSide};
use crate::transaction::Timers;
use crate::{calls, local};

/// How a branch ended without a 2xx: the response to weigh (received, or made up for a
/// timeout or transport error), the failure for the failover rule, and the reason counted
/// if the plan goes on.
pub(super) struct BranchEnd {
    pub(super) best: Best,
    pub(super) failure: Failure,
    pub(super) reason: FailoverReason,
}

impl BranchEnd {
    /// No response at all (timer B/F, timer C without a provisional): a 408.
    pub(super) fn timeout(failure: Failure) -> BranchEnd {
        BranchEnd {
            best: Best::Local(408),
            failure,
            reason: FailoverReason::Timeout,
        }
    }
}

/// Every attempt is done (or the caller CANCELled): the caller gets `best`, the best
/// response (§16.7 step 6).
pub(super) fn finish(cx: &mut Ctx<'_>, t: &mut ProxyTxn, best: Option<Best>) {
    if t.server.is_final() {
        return;
    }
    if t.deciding.is_none() {
        return;
    }
    let code = match (&best, t.cancelled) {
        (_, true) => 487,
        (Some(b), false) => b.status(),
        (None, false) => 480,
    };
    let refused = matches!(best, Some(Best::Refused(..))) && !t.cancelled;
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
                let code = if code == 503 && !refused { 500 } else { code };
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
    let received = match best {
        Some(Best::Received(m)) if m.status() == Some(code) && code != 503 => {
            match relay(m, t.identity.as_ref(), Trust::of(t)) {
                Ok(resp) => Some(resp),
                Err(e) => {
                    cx.forward_failed(crate::sipview::call_id(m), e);
                    None
                }
            }
        }
        _ => None,
    };
    // Made from the request as received (the caller's own identity already) when there
    // is nothing to relay, or what came cannot be relayed (no Via left below ours): the
    // caller is answered whatever the callee got wrong.
    received.or_else(|| {
        let request = &t.deciding.as_deref()?.request;
        if let Some(Best::Refused(c, reason)) = best.filter(|b| b.status() == code) {
            return local::build(cx, request, *c, reason.as_bytes(), &[]);
        }
        let code = if code == 503 { 500 } else { code };
        local::build(cx, request, code, local::reason(code), &[])
    })
}

/// A response without our (top) Via, with the caller's identity restored and the
/// headers the trust rules remove removed (§5.3).
pub(super) fn relay(
    m: &Message,
    identity: Option<&IdentityEdit>,
    trust: Trust,
) -> Result<Bytes, ForwardError> {
    relay_edited(m, identity, trust, |_| Ok(()))
}

/// A response on its way upstream, written out: our Via removed (§16.7 step 3: with no
/// Via left once ours is removed, it was meant for us), the trust rules and the caller's
/// identity applied, then `more`. The editor stays in this frame: it is a large value,
/// and handing it back in a `Result` copied it twice per relayed response.
pub(super) fn relay_edited<'a>(
    m: &'a Message,
    identity: Option<&'a IdentityEdit>,
    trust: Trust,
    more: impl FnOnce(&mut Editor<'a>) -> Result<(), ForwardError>,
) -> Result<Bytes, ForwardError> {
    if !has_second_via(m) {
        return Err(ForwardError::NoViaLeft);
    }
    let mut ed = Editor::new(m);
    ed.remove_top_via().edit(Edit::TopVia)?;
    trust.strip_response(&mut ed).edit(Edit::Trust)?;
    if let Some(id) = identity {
        id.on_response(&mut ed).edit(Edit::CallerId)?;
    }
    more(&mut ed)?;
    Ok(ed.finish())
}

/// Is there a Via value below ours (on another line, or after a comma on ours)?
pub(super) fn has_second_via(m: &Message) -> bool {
    let mut lines = m.headers(HeaderName::Via);
    let Some(top) = lines.next() else {
        return false;
    };
    lines.next().is_some() || trunkstore_sip::scan::split_list(top).nth(1).is_some()
}
