//! Media anchoring (behaviour.md §4.7): the NG requests of `process` calls, sent to
//! rtpengine from the SIP UDP socket; the replies come back to that socket and resume
//! the transaction (`proxying::on_media_done`). Calls of `bypass` servers never get here.

use bytes::Bytes;
use trunkstore_sip::message::Message;

use crate::context::Ctx;
use crate::keys::CallKey;
use crate::media::client::{Cookie, Unavailable};
use crate::media::ng::{self, Options, Session};
use crate::media::relay::{Command, Done, Purpose, Sent};
use crate::metrics::NgOutcome;
use crate::state::{MediaTxn, Offer, ProxyTxn};
use crate::types::{Peer, Transport};

/// Reason phrase of the 503 a `process` call gets when no rtpengine takes it.
pub(crate) const UNAVAILABLE: &str = "Media Relay Unavailable";

/// The flags of every offer and answer: rtpengine rewrites `c=` and `o=` to itself,
/// removes ICE candidates (carriers do not do ICE; a PBX's candidates name addresses
/// behind its NAT) and, by default, learns each side's real address from its first
/// packets (symmetric latching), so a PBX behind NAT works without `trust-address`.
fn options() -> Options {
    Options {
        flags: Vec::new(),
        replace: vec!["origin".into(), "session-connection".into()],
        ice: Some("remove".into()),
        direction: Vec::new(),
    }
}

/// The NG client's key for the call of dialog `key` (its instance pinning).
pub(crate) fn call_key(key: CallKey) -> u64 {
    key.0 as u64 ^ (key.0 >> 64) as u64
}

/// The media state of a request of an anchored call: its session is the Call-ID and the
/// request's own From tag (an offer from the callee's side names the callee's tag).
pub(crate) fn media_txn(msg: &Message, key: CallKey, initial: bool) -> MediaTxn {
    let call_id = msg.slice_ref(crate::sipview::call_id(msg));
    let from_tag = crate::sipview::from_tag(msg).and_then(|t| msg.slice_ref(t));
    MediaTxn {
        call_id: call_id.unwrap_or_default(),
        from_tag: from_tag.unwrap_or_default(),
        call_key: call_key(key),
        initial,
        offer: Offer::Pending,
        held: Vec::new(),
        answered: Vec::new(),
    }
}

/// Does `msg` carry an SDP body (the only body rtpengine rewrites)?
pub(crate) fn has_sdp(msg: &Message) -> bool {
    !msg.body().is_empty()
        && msg
            .header(trunkstore_sip::message::HeaderName::ContentType)
            .is_some_and(|v| {
                let v = v.trim_ascii_start();
                v.get(..15)
                    .is_some_and(|t| t.eq_ignore_ascii_case(b"application/sdp"))
            })
}

/// Sends the offer of `t`'s request (its SDP is `sdp`).
pub(crate) fn offer(cx: &mut Ctx<'_>, t: &mut ProxyTxn, sdp: &[u8]) -> Result<(), Unavailable> {
    let key = t.key;
    let m = t.media.as_deref_mut().ok_or(Unavailable)?;
    let session = Session {
        call_id: &m.call_id,
        from_tag: &m.from_tag,
    };
    let body = ng::offer(session, sdp, &options());
    send(cx, m.call_key, &body, Purpose::Offer(key))?;
    m.offer = Offer::Pending;
    Ok(())
}

/// Sends the answer in `resp` (a response of `t`'s request with SDP); returns the
/// cookie its reply will carry.
pub(crate) fn answer(
    cx: &mut Ctx<'_>,
    t: &mut ProxyTxn,
    resp: &Message,
) -> Result<Cookie, Unavailable> {
    let key = t.key;
    let m = t.media.as_deref_mut().ok_or(Unavailable)?;
    let session = Session {
        call_id: &m.call_id,
        from_tag: &m.from_tag,
    };
    let to_tag = crate::sipview::to_tag(resp).unwrap_or(b"");
    let body = ng::answer(session, to_tag, resp.body(), &options());
    Ok(send(cx, m.call_key, &body, Purpose::Answer(key))?.cookie)
}

/// The call whose session is (`call_id`, `from_tag`) is over: rtpengine frees its
/// ports. Nothing waits for the reply; the call's pinning goes at once.
pub(crate) fn delete(cx: &mut Ctx<'_>, call_key: u64, call_id: &[u8], from_tag: &[u8]) {
    let Some(relay) = &cx.state.media else {
        return;
    };
    let body = ng::delete(Session { call_id, from_tag });
    let _ = send(cx, call_key, &body, Purpose::Delete);
    relay.forget(call_key);
}

/// A new attempt starts (failover): the callees of earlier branches that rtpengine
/// answered for are not the call's any more; their dialogues go (one media session per
/// call: the caller's side stays).
pub(crate) fn drop_earlier_callees(cx: &mut Ctx<'_>, t: &mut ProxyTxn, new_branch: usize) {
    let Some(m) = t.media.as_deref_mut().filter(|m| m.initial) else {
        return;
    };
    let mut gone: Vec<Bytes> = Vec::new();
    m.answered.retain(|a| {
        if a.branch == new_branch {
            return true;
        }
        if !gone.contains(&a.to_tag) {
            gone.push(a.to_tag.clone());
        }
        false
    });
    let (call_key, call_id, from_tag) = (m.call_key, m.call_id.clone(), m.from_tag.clone());
    for to_tag in gone {
        let session = Session {
            call_id: &call_id,
            from_tag: &from_tag,
        };
        let body = ng::delete_branch(session, &to_tag);
        let _ = send(cx, call_key, &body, Purpose::Delete);
    }
}

/// Sends an NG request (counted as unavailable when no instance takes it).
fn send(
    cx: &mut Ctx<'_>,
    call_key: u64,
    body: &[u8],
    purpose: Purpose,
) -> Result<Sent, Unavailable> {
    let result = match &cx.state.media {
        Some(relay) => relay.request(call_key, body, purpose, cx.now),
        None => Err(Unavailable),
    };
    match &result {
        Ok(sent) => transmit(cx, sent.datagram.to, sent.datagram.data.clone()),
        Err(Unavailable) => {
            cx.state
                .metrics
                .media_request(purpose.command(), NgOutcome::Unavailable, None);
        }
    }
    result
}

/// An NG datagram from the SIP UDP socket to an instance.
fn transmit(cx: &mut Ctx<'_>, to: std::net::SocketAddr, data: Bytes) {
    let from = cx.state.cfg.local(Transport::Udp);
    let peer = Peer {
        transport: Transport::Udp,
        addr: to,
    };
    cx.send(peer, from, data);
}

/// A datagram from a configured rtpengine instance: the request it ends, counted.
pub(crate) fn on_datagram(cx: &Ctx<'_>, from: std::net::SocketAddr, data: &[u8]) -> Option<Done> {
    let done = cx.state.media.as_ref()?.on_datagram(from, data, cx.now)?;
    count(cx, &done);
    Some(done)
}

/// Retransmissions due and requests no instance answered (counted).
pub(crate) fn on_timeouts(cx: &mut Ctx<'_>) -> Vec<Done> {
    let Some(relay) = &cx.state.media else {
        return Vec::new();
    };
    let expired = relay.on_timeout(cx.now);
    expire(cx, expired)
}

/// An ICMP error for a datagram sent to `to`: when it is an rtpengine instance, it is
/// down at once and its requests go to the next one (or fail) without waiting for their
/// retries. Returns the requests that failed.
pub(crate) fn on_unreachable(cx: &mut Ctx<'_>, to: std::net::SocketAddr) -> Vec<Done> {
    let Some(relay) = cx.state.media.as_ref().filter(|m| m.is_instance(to)) else {
        return Vec::new();
    };
    tracing::warn!(instance = %to, "rtpengine unreachable (ICMP): skipped");
    let expired = relay.on_unreachable(to, cx.now);
    expire(cx, expired)
}

fn expire(cx: &mut Ctx<'_>, expired: crate::media::relay::Expired) -> Vec<Done> {
    for d in expired.resend {
        transmit(cx, d.to, d.data);
    }
    for done in &expired.failed {
        count(cx, done);
    }
    expired.failed
}

/// The outcome of an ended request, for `/metrics`.
fn count(cx: &Ctx<'_>, done: &Done) {
    let outcome = match &done.reply {
        None => NgOutcome::Timeout,
        Some(r) if matches!(r.result, ng::Outcome::Ok { .. }) => NgOutcome::Ok,
        Some(_) => NgOutcome::Error,
    };
    let took = cx.now.saturating_duration_since(done.waiter.sent);
    let command = done.waiter.purpose.command();
    cx.state.metrics.media_request(command, outcome, Some(took));
    if outcome != NgOutcome::Ok && command != Command::Delete {
        let why = match &done.reply {
            Some(ng::Reply {
                result: ng::Outcome::Error(reason),
                ..
            }) => reason.as_str(),
            Some(_) => "unexpected result",
            None => "no instance answered",
        };
        tracing::warn!(instance = %done.from, command = ?command, reason = why, "rtpengine request failed");
    }
}

/// The rewritten SDP of a reply, when rtpengine took the request.
pub(crate) fn rewritten(done: &Done) -> Option<Bytes> {
    match &done.reply {
        Some(ng::Reply {
            result: ng::Outcome::Ok { sdp: Some(sdp) },
            ..
        }) if !sdp.is_empty() => Some(sdp.clone()),
        _ => None,
    }
}
