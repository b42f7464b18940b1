//! An initial INVITE waiting for the cluster's trunk verdict (behaviour.md §9.2), as one
//! waits for DNS: the edge answers, the transaction resumes.
//!
//! Only calls of accounts with `account.trunks` wait (their hold is linked to the
//! cluster in `request::take_trunk`); the plan does not start while the hold waits
//! (`proxying::advance`). Meanwhile the caller's retransmissions get the 100 Trying again
//! and a CANCEL ends the call with 487, giving the hold back.

use std::time::Instant;

use crate::context::{lock, Ctx};
use crate::machines::best::Best;
use crate::metrics::Refusal;
use crate::shard::Shard;
use crate::state::{ProxyTxn, State};
use crate::trunks::{HoldId, TrunkKey, Verdict};
use crate::{proxying, sipview};

/// Queues the cluster take of the transaction's trunk, if its hold is linked to the
/// cluster (a no-op for every other request).
pub(crate) fn ask(t: &mut ProxyTxn) {
    let key = TrunkKey(t.key.0);
    if let Some(link) = t
        .deciding
        .as_deref_mut()
        .and_then(|d| d.trunk.as_mut())
        .and_then(|h| h.cluster.as_deref_mut())
    {
        link.ask(key);
    }
}

/// The cluster's verdict on the hold `hold` of the transaction `key`. A verdict for a
/// transaction that ended meanwhile (CANCEL), or for another hold, is ignored.
pub(crate) fn handle_verdict(
    state: &State,
    shard: &mut Shard,
    now: Instant,
    key: TrunkKey,
    hold: HoldId,
    verdict: Verdict,
) {
    let mut cx = Ctx { state, shard, now };
    let Some(txn) = cx.lookup(crate::keys::TxKey(key.0)) else {
        return;
    };
    let mut t = lock(&txn);
    if on_verdict(&mut cx, &mut t, hold, verdict) {
        proxying::advance(&mut cx, &mut t);
    }
    proxying::settle(cx.state, &mut t);
}

/// Applies the verdict; true when the plan may move.
fn on_verdict(cx: &mut Ctx<'_>, t: &mut ProxyTxn, hold: HoldId, verdict: Verdict) -> bool {
    if t.server.is_final() {
        return false;
    }
    let Some(d) = t.deciding.as_deref_mut() else {
        return false;
    };
    let Some(link) = d
        .trunk
        .as_mut()
        .and_then(|h| h.cluster.as_deref_mut())
        .filter(|l| l.waits_for(hold))
    else {
        return false;
    };
    link.decided(verdict);
    let call_id = String::from_utf8_lossy(sipview::call_id(&d.request));
    match verdict {
        Verdict::Granted => {}
        Verdict::Unavailable => {
            // The edge logs Redis being away (rate-limited); this is per call.
            tracing::debug!(%call_id, account = link.account(), "cluster unavailable: the call goes on counted by this node");
        }
        Verdict::Refused => {
            tracing::info!(
                %call_id,
                account = link.account(),
                direction = d.call.direction.as_str(),
                limit = link.limit(),
                "trunk limit of the cluster reached"
            );
            let (code, reason) = d.call.direction.trunk_refusal();
            // The local hold goes now; the cluster never added this one.
            d.trunk = None;
            d.cursor.record(Best::Refused(code, reason));
            d.cursor.close();
            cx.state.metrics.refusal(Refusal::TrunkLimit);
        }
    }
    true
}
