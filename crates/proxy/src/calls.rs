//! The call (dialog) table: a record per dialog established by a 2xx, removed by the
//! BYE's final response or by the maximum-duration sweep, and the one log line per call.

use std::time::Instant;

use trunkstore_sip::message::Message;

use crate::engine::Ctx;
use crate::keys::CallKey;
use crate::sipview;
use crate::state::{CallInfo, CallRecord, ProxyTxn};

pub fn key(cx: &Ctx<'_>, call_id: &[u8]) -> CallKey {
    CallKey(cx.state.hasher.hash(&[call_id]))
}

pub fn exists(cx: &Ctx<'_>, call_id: &[u8]) -> bool {
    cx.state.calls.contains_key(&key(cx, call_id))
}

/// A 2xx to an initial INVITE went upstream: the dialog exists.
pub fn established(cx: &Ctx<'_>, t: &ProxyTxn, now: Instant) {
    if cx.state.calls.len() >= cx.state.cfg.max_calls {
        return;
    }
    let cid = sipview::call_id(&t.request);
    let k = key(cx, cid);
    cx.state.calls.entry(k).or_insert_with(|| CallRecord {
        call_id: t.request.slice_ref(cid).unwrap_or_default(),
        info: t.call.clone(),
        started: now,
    });
}

/// The BYE of a dialog got its final response: the call is over.
pub fn ended(cx: &Ctx<'_>, bye: &Message, status: u16) {
    let cid = sipview::call_id(bye);
    if let Some((_, rec)) = cx.state.calls.remove(&key(cx, cid)) {
        log_end(&rec, if status < 300 { "bye" } else { "bye_failed" });
    }
}

/// An initial INVITE ended without a dialog.
pub fn failed(t: &ProxyTxn, status: u16) {
    log_line(sipview::call_id(&t.request), &t.call, status, "failed");
}

pub fn log_end(rec: &CallRecord, how: &str) {
    log_line(&rec.call_id, &rec.info, 200, how);
}

fn log_line(call_id: &[u8], info: &CallInfo, status: u16, how: &str) {
    tracing::info!(
        call_id = %String::from_utf8_lossy(call_id),
        did = info.did.as_deref().unwrap_or("-"),
        account = info.account.as_deref().unwrap_or("-"),
        server = info.server.as_deref().unwrap_or("-"),
        status,
        outcome = how,
        "call finished"
    );
}
