//! Responses (§16.7): matched by our top Via branch to a client transaction; ours but
//! unmatched (2xx retransmissions after the transaction ended) are forwarded statelessly
//! by the next Via; not ours (§18.1.2) are dropped.

use trunkstore_sip::message::Message;
use trunkstore_sip::validate::validate_response;

use crate::engine::{lock, Ctx};
use crate::keys::ClientKey;
use crate::{branch, late2xx, proxying, sipview};

pub(crate) fn on_response(cx: &mut Ctx<'_>, msg: Message) {
    let Ok(via) = validate_response(&msg) else {
        return;
    };
    if !sipview::via_is_us(&cx.state.cfg, &via) {
        return;
    }
    let Some((id, _)) = via.branch().and_then(branch::parse) else {
        return;
    };
    let cancel = sipview::cseq(&msg).is_some_and(|c| c.method == b"CANCEL");
    let entry = cx
        .state
        .clients
        .get(&ClientKey { id, cancel })
        .map(|e| e.clone());
    match entry {
        Some(e) => {
            let mut t = lock(&e.txn);
            let idx = usize::from(e.branch);
            if !late2xx::on_response(cx, &mut t, idx, id, &msg) {
                proxying::on_branch_response(cx, &mut t, idx, cancel, msg);
            }
            proxying::settle(cx.state, &mut t);
        }
        None => forward_stateless(cx, &msg),
    }
}

fn forward_stateless(cx: &mut Ctx<'_>, msg: &Message) {
    let Some(dest) = sipview::second_via(msg).and_then(|v| sipview::via_destination(&v)) else {
        return;
    };
    // A 2xx retransmitted after its transaction ended: the caller ID of its dialog
    // still applies (§5.3).
    let identity = crate::calls::lookup_identity(cx, sipview::call_id(msg))
        .flatten()
        .and_then(|id| crate::callerid::IdentityEdit::in_dialog(&id, msg));
    if let Some(data) = proxying::relay(msg, identity.as_ref()) {
        let from = cx.state.cfg.local(dest.transport);
        cx.send(dest, from, data);
    }
}
