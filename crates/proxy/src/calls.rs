//! The call (dialog) table: an entry per dialog established by a 2xx, removed by the
//! BYE's final response or by the maximum-duration sweep; the one log line per call and,
//! when enabled, the [`CallRecord`] per call for the CDR writer of the edge.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use trunkstore_sip::message::Message;
use trunkstore_sip::validate::Checked;

use crate::callerid::Identity;
use crate::engine::Ctx;
use crate::keys::CallKey;
use crate::sipview;
use crate::state::{CallInfo, Dialog, ProxyTxn};

/// One finished call, as the core saw it. Times are the core's `Instant`s: the edge turns
/// them into wall-clock times with a (`SystemTime`, `Instant`) pair it took at start.
#[derive(Debug, Clone)]
pub struct CallRecord {
    pub call_id: Bytes,
    /// `"inbound"` (carrier → server), `"outbound"` (server → carriers) or `"onnet"`
    /// (server → one of our DIDs).
    pub direction: &'static str,
    pub account: Option<Arc<str>>,
    pub document: Option<Arc<str>>,
    pub server: Option<Arc<str>>,
    /// The dialled DID, normalised.
    pub did: Option<Arc<str>>,
    /// From URI user and Request-URI user, as received.
    pub from: Bytes,
    pub to: Bytes,
    /// INVITE received, 2xx relayed (if answered), call over.
    pub started: Instant,
    pub answered: Option<Instant>,
    pub ended: Instant,
    /// The final status of the INVITE the caller got.
    pub status: u16,
    /// How it ended: `failed`, `bye`, `bye_failed`, `max_duration`.
    pub reason: &'static str,
    /// 1-based number of the attempt that answered.
    pub answered_attempt: Option<u16>,
    /// The failover attempt was tried.
    pub failover: bool,
    /// The call held one of its account's trunks (§6).
    pub trunk_held: bool,
}

pub fn key(cx: &Ctx<'_>, call_id: &[u8]) -> CallKey {
    CallKey(cx.state.hasher.hash(&[call_id]))
}

/// Is there a dialog with this Call-ID, and the caller identities it rewrites (§5.3)?
pub fn lookup_identity(cx: &Ctx<'_>, call_id: &[u8]) -> Option<Option<Arc<Identity>>> {
    cx.state
        .calls
        .get(&key(cx, call_id))
        .map(|d| d.identity.clone())
}

/// The From user and Request-URI user of `req`, as slices of it.
pub fn numbers(req: &Message, checked: &Checked<'_>) -> (Bytes, Bytes) {
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

/// A 2xx to an initial INVITE went upstream from branch `attempt`: the dialog exists and
/// holds the INVITE's trunk from now on. (When the table is full, or a dialog with that
/// Call-ID already exists, the trunk is released here: no entry, no later release.)
pub fn established(cx: &Ctx<'_>, t: &mut ProxyTxn, now: Instant, attempt: u16, failover: bool) {
    let Some(d) = t.deciding.as_deref_mut() else {
        return;
    };
    let trunk = d.trunk.take().map(Arc::new);
    if cx.state.calls.len() >= cx.state.cfg.max_calls {
        return;
    }
    let cid = sipview::call_id(&d.request);
    let k = key(cx, cid);
    let identity = t.identity.as_ref().map(|e| e.identity.clone());
    cx.state.calls.entry(k).or_insert_with(|| Dialog {
        call_id: d.request.slice_ref(cid).unwrap_or_default(),
        info: d.call.clone(),
        started: now,
        invited: d.started,
        attempt,
        failover,
        identity,
        trunk,
    });
}

/// The BYE of a dialog got its final response: the call is over.
pub fn ended(cx: &mut Ctx<'_>, bye: &Message, status: u16) {
    let cid = sipview::call_id(bye);
    if let Some((_, d)) = cx.state.calls.remove(&key(cx, cid)) {
        let how = if status < 300 { "bye" } else { "bye_failed" };
        log_end(&d, how);
        let now = cx.now;
        emit(cx, || dialog_record(&d, now, how));
    }
}

/// An initial INVITE ended without a dialog, with `status` to the caller: its trunk is
/// given back now (not when the transaction is dropped, which may be 32 s later).
pub fn failed(cx: &mut Ctx<'_>, t: &mut ProxyTxn, status: u16) {
    let Some(d) = t.deciding.as_deref_mut() else {
        return;
    };
    let trunk = d.trunk.take();
    log_line(sipview::call_id(&d.request), &d.call, status, "failed");
    let now = cx.now;
    let d = &*d;
    emit(cx, || {
        let call_id = d.request.slice_ref(sipview::call_id(&d.request));
        let mut r = record(&d.call, call_id.unwrap_or_default(), d.started, now);
        r.status = status;
        r.reason = "failed";
        r.failover = d.failover_ran;
        r.trunk_held = trunk.is_some();
        r
    });
    drop(trunk);
}

/// A dialog swept after the maximum call duration.
pub fn expired(cx: &mut Ctx<'_>, d: &Dialog) {
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
    }
}

fn dialog_record(d: &Dialog, now: Instant, how: &'static str) -> CallRecord {
    let mut r = record(&d.info, d.call_id.clone(), d.invited, now);
    r.answered = Some(d.started);
    r.status = 200;
    r.reason = how;
    r.answered_attempt = Some(d.attempt);
    r.failover = d.failover;
    r.trunk_held = d.trunk.is_some();
    r
}

pub fn log_end(d: &Dialog, how: &str) {
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
