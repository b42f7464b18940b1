//! Responses (§16.7): matched by our top Via branch to a client transaction; any other
//! response is dropped and counted, never relayed by its Vias (§18.1.2 for those not
//! ours; a 2xx retransmission is matched by its INVITE client transaction, which stays
//! Accepted for 64·T1 for exactly that, RFC 6026).

use trunkstore_sip::message::Message;
use trunkstore_sip::validate::check_response;

use crate::context::{lock, Ctx};
use crate::keys::ClientKey;
use crate::types::Peer;
use crate::{branch, calls, late2xx, proxying, sipview};

pub(crate) fn on_response(cx: &mut Ctx<'_>, from: Peer, msg: Box<Message>) {
    let Ok(checked) = check_response(&msg) else {
        return;
    };
    let via = checked.top_via;
    let is_us = sipview::via_is_us(&cx.state.cfg, &via);
    if is_us
        && via
            .branch()
            .is_some_and(|b| crate::register::keepalive_response(cx, from, b))
    {
        return;
    }
    let ours = is_us
        .then(|| via.branch().and_then(branch::parse))
        .flatten();
    let Some((id, _)) = ours else {
        // §18.1.2: not for us.
        cx.state.metrics.stray_response();
        return;
    };
    let cancel = checked.cseq.method == b"CANCEL";
    let entry = cx
        .state
        .clients
        .get(&ClientKey { id, cancel })
        .map(|e| e.clone());
    match entry {
        Some(e) if calls::same_party(cx, e.peer, from.addr) => {
            let mut t = lock(&e.txn);
            let idx = usize::from(e.branch);
            if !late2xx::on_response(cx, &mut t, idx, id, &msg) {
                proxying::on_branch_response(cx, &mut t, idx, cancel, msg);
            }
            proxying::settle(cx.state, &mut t);
        }
        // No transaction of ours asked for it (or not from where we sent the request):
        // relaying it by its Vias would make us a reflector for whoever wrote them, and
        // acting on it would let a third party end or answer another's call.
        _ => cx.state.metrics.stray_response(),
    }
}
