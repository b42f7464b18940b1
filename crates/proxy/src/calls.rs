//! The call (dialog) table: an entry per call the proxy admitted, made when its initial
//! INVITE is admitted (so a call that cannot be tracked is refused, never run
//! untracked), early from its first provisional with a To tag, confirmed by the 2xx,
//! removed by its final failure, by the far side's answer to the BYE of that dialog, or
//! by the maximum-duration sweep. Every in-dialog request is matched here on Call-ID,
//! both tags and the leg it comes from, and goes to the other leg. Also the one log line
//! per call and, when enabled, the [`CallRecord`](crate::types::CallRecord) per call for the CDR writer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use dashmap::mapref::entry::Entry;

use bytes::Bytes;
use trunkstore_sip::message::Message;
use trunkstore_sip::validate::Checked;

use crate::callerid::Identity;
use crate::context::Ctx;
use crate::keys::CallKey;
use crate::metrics::Refusal;
use crate::route::SourceClass;
use crate::sipview;
use crate::state::{
    CallInfo, Callee, Confirmed, Dialog, DialogEnd, MediaMode, Offer, Party, Phase, ProxyTxn,
};
use crate::trunks::TrunkHold;
use crate::types::{CallRecord, Peer};

/// The From user and Request-URI user of `req`, as slices of it.
pub(crate) fn numbers(req: &Message, checked: &Checked<'_>) -> (Bytes, Bytes) {
    let from = checked
        .from
        .sip_uri()
        .and_then(|u| u.user())
        .and_then(|u| req.slice_ref(u))
        .unwrap_or_default();
    let to = checked
        .request_uri
        .user()
        .and_then(|u| req.slice_ref(u))
        .unwrap_or_default();
    (from, to)
}

/// Dialog table key: the Call-ID and the caller's From tag (§12: the dialog id as the
/// caller sees it; the callee's tag is matched in the entry).
pub(crate) fn key(cx: &Ctx<'_>, call_id: &[u8], caller_tag: &[u8]) -> CallKey {
    CallKey(cx.state.hasher.hash(&[call_id, caller_tag]))
}

/// A callee tag as the table keeps it.
fn tag_hash(cx: &Ctx<'_>, tag: &[u8]) -> u64 {
    cx.state.hasher.u64(&[b"callee-tag", tag])
}

/// The dialog key of an initial INVITE.
pub(crate) fn key_of_invite(cx: &Ctx<'_>, invite: &Message) -> CallKey {
    let caller_tag = sipview::from_tag(invite).unwrap_or(b"");
    key(cx, sipview::call_id(invite), caller_tag)
}

/// The most early dialogs (callee tags) one call keeps: a callee can fork, a hostile
/// one should not grow the entry without bound.
const MAX_EARLY: usize = 8;

impl Dialog {
    /// The callee side with this (hashed) tag, early or confirmed.
    fn callee(&self, tag: u64) -> Option<&Callee> {
        match &self.phase {
            Phase::Early(list) => list.iter().find(|c| c.tag == tag),
            Phase::Confirmed(c) => (c.callee.tag == tag).then_some(&c.callee),
        }
    }
}

/// Who may speak for `party`: its carrier's trusted sources, else its own IP address.
fn speaks(cx: &Ctx<'_>, party: &Party, src: SocketAddr) -> bool {
    if src.ip() == party.peer.addr.ip() {
        return true;
    }
    let Some(carrier) = &party.carrier else {
        return false;
    };
    matches!(cx.state.dir.classify_source(src), SourceClass::Carrier(n) if n == *carrier)
}

/// Does `src` speak for the party we sent a request to at `peer` (a response to one of
/// our branches must come from there)?
pub(crate) fn same_party(cx: &Ctx<'_>, peer: Peer, src: SocketAddr) -> bool {
    src.ip() == peer.addr.ip() || speaks(cx, &party_at(cx, peer), src)
}

/// The party at `peer`: a carrier's when the address is one of its trusted sources or
/// gateways (a carrier may answer from a source that is not its gateway).
pub(crate) fn party_at(cx: &Ctx<'_>, peer: Peer) -> Party {
    let carrier = match cx.state.dir.classify_source(peer.addr) {
        SourceClass::Carrier(name) => Some(name),
        _ => cx.state.dir.carrier_with_gateway(peer.addr),
    };
    Party { peer, carrier }
}

/// An in-dialog request matched to its dialog and to the leg that sent it.
pub(crate) struct Matched {
    /// The dialog, and the callee tag it was matched by.
    pub end: DialogEnd,
    /// Where the request goes: the other leg, as recorded when the call was admitted.
    pub next: Peer,
    pub from_carrier: bool,
    pub to_carrier: bool,
    /// The caller identities the dialog rewrites (§5.3).
    pub identity: Option<Arc<Identity>>,
    /// The call's media is anchored: offers and answers in the dialog go to rtpengine.
    pub anchored: bool,
}

/// §12.2.2 against the proxy's own records: a request with a To tag belongs to a dialog
/// when its Call-ID and tags name one (From tag the caller's and To tag one of the
/// callee's, or the reverse) and its source speaks for the leg those tags say sent it.
/// Anything else matches nothing: a third party that knows the Call-ID and both tags
/// changes nothing and reaches no one.
pub(crate) fn match_request(
    cx: &Ctx<'_>,
    src: SocketAddr,
    ids: &sipview::DialogIds<'_>,
) -> Option<Matched> {
    let call_id = ids.call_id;
    let from_tag = ids.from_tag.unwrap_or(b"");
    let to_tag = ids.to_tag?;
    let k = key(cx, call_id, from_tag);
    if let Some(d) = cx.state.calls.get(&k) {
        let tag = tag_hash(cx, to_tag);
        if let Some(callee) = d.callee(tag).filter(|_| speaks(cx, &d.caller, src)) {
            return Some(Matched {
                end: DialogEnd {
                    key: k,
                    callee_tag: tag,
                },
                next: callee.party.peer,
                from_carrier: d.caller.carrier.is_some(),
                to_carrier: callee.party.carrier.is_some(),
                identity: d.identity.clone(),
                anchored: matches!(d.media, MediaMode::Anchored { .. }),
            });
        }
    }
    let k = key(cx, call_id, to_tag);
    let d = cx.state.calls.get(&k)?;
    let tag = tag_hash(cx, from_tag);
    let callee = d.callee(tag).filter(|c| speaks(cx, &c.party, src))?;
    Some(Matched {
        end: DialogEnd {
            key: k,
            callee_tag: tag,
        },
        next: d.caller.peer,
        from_carrier: callee.party.carrier.is_some(),
        to_carrier: d.caller.carrier.is_some(),
        identity: d.identity.clone(),
        anchored: matches!(d.media, MediaMode::Anchored { .. }),
    })
}

/// Why an initial INVITE cannot be tracked as a call.
pub(crate) enum Untrackable {
    /// `limits.max_calls` calls are in progress.
    Full,
    /// A call with this Call-ID and From tag is in progress (§8.2.2.2: a merged
    /// request).
    Merged,
}

impl Untrackable {
    /// The answer and the metric of the refusal.
    pub(crate) fn refusal(&self) -> (u16, &'static [u8], Refusal) {
        match self {
            Untrackable::Full => (503, b"Call Limit Reached", Refusal::MaxCalls),
            Untrackable::Merged => (482, b"Loop Detected", Refusal::Loop),
        }
    }
}

/// An admitted INVITE that turned out to be a retransmission racing its first copy:
/// its dialog entry and call slot go, nothing is logged.
pub(crate) fn forget(cx: &Ctx<'_>, t: &mut ProxyTxn) {
    if let Some(d) = t.deciding.as_deref_mut() {
        d.slot = None;
        if let Some(k) = d.dialog.take() {
            let early = |_: &CallKey, d: &Dialog| matches!(d.phase, Phase::Early(_));
            cx.state.calls.remove_if(&k, early);
        }
    }
}

/// An initial INVITE admitted: its dialog entry claims the Call-ID and From tag (`k`, its
/// [`key`]), and a place under `limits.max_calls` is held by the transaction until the
/// call ends. A call that cannot be tracked is refused here, never run untracked.
pub(crate) fn admit(
    cx: &Ctx<'_>,
    t: &mut ProxyTxn,
    caller: Party,
    k: CallKey,
) -> Result<(), Untrackable> {
    let identity = t.identity.as_ref().map(|e| e.identity.clone());
    let Some(d) = t.deciding.as_deref_mut() else {
        return Ok(());
    };
    let max = u32::try_from(cx.state.cfg.max_calls).unwrap_or(u32::MAX);
    let slot = TrunkHold::take(cx.state.active_calls.clone(), max).ok_or(Untrackable::Full)?;
    let media = if d.cursor.plan().media {
        MediaMode::Unanchored
    } else {
        MediaMode::Bypass
    };
    match cx.state.calls.entry(k) {
        Entry::Occupied(_) => return Err(Untrackable::Merged),
        Entry::Vacant(v) => {
            let cid = sipview::call_id(&d.request);
            v.insert(Dialog {
                call_id: d.request.slice_ref(cid).unwrap_or_default(),
                info: d.call.clone(),
                invited: d.started,
                caller,
                identity,
                phase: Phase::Early(Vec::new()),
                media,
            });
        }
    }
    d.slot = Some(slot);
    d.dialog = Some(k);
    Ok(())
}

/// A provisional with a To tag went upstream from a branch to `callee`: an early
/// dialog (§12.1), in which PRACK, UPDATE, INFO and BYE may flow both ways.
pub(crate) fn early(cx: &Ctx<'_>, t: &ProxyTxn, callee: Peer, resp: &Message) {
    let Some(k) = t.deciding.as_deref().and_then(|d| d.dialog) else {
        return;
    };
    let Some(tag) = sipview::to_tag(resp).map(|tag| tag_hash(cx, tag)) else {
        return;
    };
    let Some(mut d) = cx.state.calls.get_mut(&k) else {
        return;
    };
    if let Phase::Early(list) = &mut d.phase {
        if list.len() < MAX_EARLY && !list.iter().any(|c| c.tag == tag) {
            list.push(Callee {
                tag,
                party: party_at(cx, callee),
            });
        }
    }
}

/// A 2xx to an initial INVITE went upstream from branch `attempt` at `callee`: the
/// dialog is confirmed with the 2xx's To tag and holds the INVITE's trunk and call
/// slot from now on.
pub(crate) fn established(
    cx: &Ctx<'_>,
    t: &mut ProxyTxn,
    callee: Peer,
    resp: &Message,
    attempt: u16,
    failover: bool,
) {
    let Some(d) = t.deciding.as_deref_mut() else {
        return;
    };
    let Some(k) = d.dialog else {
        return;
    };
    let tag = tag_hash(cx, sipview::to_tag(resp).unwrap_or(b""));
    let Some(mut dialog) = cx.state.calls.get_mut(&k) else {
        return;
    };
    // The early dialog of that tag on that branch already knows its party.
    let early = match &mut dialog.phase {
        Phase::Confirmed(_) => return,
        Phase::Early(list) => list
            .iter()
            .position(|c| c.tag == tag && c.party.peer == callee)
            .map(|i| list.swap_remove(i)),
    };
    let callee = early.unwrap_or_else(|| Callee {
        tag,
        party: party_at(cx, callee),
    });
    dialog.phase = Phase::Confirmed(Box::new(Confirmed {
        callee,
        started: cx.now,
        attempt,
        failover,
        trunk: d.trunk.take(),
        slot: d.slot.take(),
    }));
}

/// The BYE of a dialog got the far side's final response (or timed out): that dialog
/// is over. A BYE in an early dialog ends that early dialog only; the INVITE's own
/// final response settles the call.
pub(crate) fn ended(cx: &mut Ctx<'_>, end: DialogEnd, status: u16) {
    let confirmed = |_: &CallKey, d: &Dialog| matches!(&d.phase, Phase::Confirmed(c) if c.callee.tag == end.callee_tag);
    if let Some((_, d)) = cx.state.calls.remove_if(&end.key, confirmed) {
        let how = if status < 300 { "bye" } else { "bye_failed" };
        release_media(cx, end.key, &d);
        log_end(&d, how);
        let now = cx.now;
        emit(cx, || dialog_record(&d, now, how));
        return;
    }
    if let Some(mut d) = cx.state.calls.get_mut(&end.key) {
        if let Phase::Early(list) = &mut d.phase {
            list.retain(|c| c.tag != end.callee_tag);
        }
    }
}

/// The dialog's media session at rtpengine goes with it (§4.7).
fn release_media(cx: &mut Ctx<'_>, key: CallKey, d: &Dialog) {
    if let MediaMode::Anchored { from_tag, .. } = &d.media {
        crate::anchor::delete(cx, crate::anchor::call_key(key), &d.call_id, from_tag);
    }
}

/// The offer of the call of dialog `key` was taken by the rtpengine at `instance`: the
/// dialog is anchored there until it ends.
pub(crate) fn anchored(cx: &Ctx<'_>, key: CallKey, instance: SocketAddr, from_tag: Bytes) {
    if let Some(mut d) = cx.state.calls.get_mut(&key) {
        d.media = MediaMode::Anchored { instance, from_tag };
    }
}

/// An initial INVITE ended without a dialog, with `status` to the caller: its trunk is
/// given back now (not when the transaction is dropped, which may be 32 s later).
pub(crate) fn failed(cx: &mut Ctx<'_>, t: &mut ProxyTxn, status: u16) {
    let Some(d) = t.deciding.as_deref_mut() else {
        return;
    };
    let trunk = d.trunk.take();
    // Only the call record reads it, and only a `process` call's dialog says anything
    // but bypass: no table lookup for the others.
    let media = d
        .dialog
        .filter(|_| d.cursor.plan().media && cx.state.cfg.call_records)
        .and_then(|k| cx.state.calls.get(&k).map(|e| e.media.clone()))
        .unwrap_or_default();
    // rtpengine may have a session from the offer even when no reply came.
    if let Some(m) = t
        .media
        .as_deref()
        .filter(|m| m.initial && !matches!(m.offer, Offer::Failed))
    {
        crate::anchor::delete(cx, m.call_key, &m.call_id, &m.from_tag);
    }
    forget(cx, t);
    let Some(d) = t.deciding.as_deref() else {
        return;
    };
    log_line(sipview::call_id(&d.request), &d.call, status, "failed");
    let now = cx.now;
    emit(cx, || {
        let call_id = d.request.slice_ref(sipview::call_id(&d.request));
        let mut r = record(&d.call, call_id.unwrap_or_default(), d.started, now);
        r.status = status;
        r.reason = "failed";
        r.failover = d.cursor.failover_ran();
        r.trunk_held = trunk.is_some();
        r.set_media(&media);
        r
    });
    drop(trunk);
}

/// A dialog swept after the maximum call duration (an early one only as a safety net:
/// its INVITE settles it long before).
pub(crate) fn expired(cx: &mut Ctx<'_>, key: CallKey, d: &Dialog) {
    release_media(cx, key, d);
    if !matches!(d.phase, Phase::Confirmed(_)) {
        return;
    }
    log_end(d, "max_duration");
    let now = cx.now;
    emit(cx, || dialog_record(d, now, "max_duration"));
}

/// Records a shard keeps for an edge that does not drain them: bounded memory even then.
const MAX_QUEUED_RECORDS: usize = 65_536;

/// Queues a record on the shard, only when the edge asked for them.
fn emit(cx: &mut Ctx<'_>, make: impl FnOnce() -> CallRecord) {
    if cx.state.cfg.call_records && cx.shard.records.len() < MAX_QUEUED_RECORDS {
        cx.shard.records.push_back(make());
    }
}

/// A record of an unanswered call; the callers fill in the rest.
fn record(info: &CallInfo, call_id: Bytes, started: Instant, ended: Instant) -> CallRecord {
    CallRecord {
        call_id,
        direction: info.direction.as_str(),
        account: info.account.clone(),
        document: info.document.clone(),
        server: info.server.clone(),
        did: info.did.clone(),
        from: info.from.clone(),
        to: info.to.clone(),
        started,
        answered: None,
        ended,
        status: 0,
        reason: "",
        answered_attempt: None,
        failover: false,
        trunk_held: false,
        media: "bypass",
        media_instance: None,
    }
}

impl CallRecord {
    fn set_media(&mut self, m: &MediaMode) {
        self.media = m.label();
        if let MediaMode::Anchored { instance, .. } = m {
            self.media_instance = Some(*instance);
        }
    }
}

fn dialog_record(d: &Dialog, now: Instant, how: &'static str) -> CallRecord {
    let mut r = record(&d.info, d.call_id.clone(), d.invited, now);
    r.status = 200;
    r.reason = how;
    if let Phase::Confirmed(c) = &d.phase {
        r.answered = Some(c.started);
        r.answered_attempt = Some(c.attempt);
        r.failover = c.failover;
        r.trunk_held = c.trunk.is_some();
    }
    r.set_media(&d.media);
    r
}

pub(crate) fn log_end(d: &Dialog, how: &str) {
    log_line(&d.call_id, &d.info, 200, how);
}

fn log_line(call_id: &[u8], info: &CallInfo, status: u16, how: &str) {
    tracing::info!(
        call_id = %String::from_utf8_lossy(call_id),
        did = info.did.as_deref().unwrap_or("-"),
        account = info.account.as_deref().unwrap_or("-"),
        server = info.server.as_deref().unwrap_or("-"),
        direction = info.direction.as_str(),
        status,
        outcome = how,
        "call finished"
    );
}
