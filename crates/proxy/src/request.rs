//! Requests: retransmission absorption, CANCEL, hop-by-hop ACK, validation (§16.3),
//! route pre-processing (§16.4) and the routing decision.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use trunkstore_sip::message::{HeaderName, Message, Method};
use trunkstore_sip::uri::Uri;
use trunkstore_sip::validate::{
    check_relayed_ack, validate_request_with, Checked, Rejection, ValidateOptions,
};
use trunkstore_sip::via::{Via, MAGIC_COOKIE};

use crate::context::{lock, Ctx};
use crate::keys::{MethodClass, TxKey};
use crate::machines::plan::PlanCursor;
use crate::metrics::{Outcome, Refusal};
use crate::proxying::Routing;
use crate::route::{self, Attempt, AttemptPlan, Decision, Direction, SourceClass};
use crate::state::{CallInfo, Deciding, Party, ProxyTxn, ServerSide};
use crate::transaction::{ServerInvite, ServerNonInvite, Timers};
use crate::trunks::TrunkHold;
use crate::types::Peer;
use crate::{branch, calls, local, outbound, proxying, sipview};

fn class_of(m: Method) -> MethodClass {
    match m {
        Method::Invite | Method::Ack => MethodClass::Invite,
        Method::Cancel => MethodClass::Cancel,
        _ => MethodClass::Other,
    }
}

/// The server transaction key (§17.2.3), for `class`.
pub(crate) fn server_key(cx: &Ctx<'_>, msg: &Message, via: &Via<'_>, class: MethodClass) -> TxKey {
    let method: &[u8] = if class == MethodClass::Other {
        msg.method_bytes()
    } else {
        b""
    };
    let h = &cx.state.hasher;
    let base = match via.branch() {
        Some(b) if b.starts_with(MAGIC_COOKIE) => {
            let sb = via.sent_by();
            let port = sb.port.unwrap_or(0).to_be_bytes();
            h.hash(&[b, sb.host.as_bytes(), &port, method])
        }
        // RFC 2543 (§17.2.3 last paragraph). The To tag is left out of the INVITE class:
        // the ACK carries the tag of our response, the INVITE had none.
        _ => {
            let cseq = sipview::cseq(msg).map_or(0, |c| c.seq).to_be_bytes();
            let to_tag = if class == MethodClass::Other {
                sipview::to_tag(msg).unwrap_or(b"")
            } else {
                b""
            };
            let top = msg
                .header(HeaderName::Via)
                .and_then(|v| trunkstore_sip::scan::split_list(v).next())
                .map_or(&b""[..], |i| i.value);
            h.hash(&[
                b"2543",
                msg.request_uri(),
                sipview::from_tag(msg).unwrap_or(b""),
                sipview::call_id(msg),
                &cseq,
                top,
                to_tag,
                method,
            ])
        }
    };
    TxKey::with_class(base, class)
}

pub(crate) fn on_request(cx: &mut Ctx<'_>, from: Peer, local: SocketAddr, msg: Box<Message>) {
    // Who sent it, by source address: asked once per request.
    let source = cx.state.dir.classify_source(from.addr);
    if !crate::admission::screen_request(cx, from, &source, &msg) {
        return;
    }
    let method = msg.method().unwrap_or(Method::Other);
    if method == Method::Ack {
        // Never answered: without a usable Via it is dropped. Checked first so that the
        // relayed ACK's check hands back the top Via it parsed; one that fails it is
        // still absorbed by its transaction (by a Via parsed here), never relayed.
        let checked = check_relayed_ack(&msg).ok();
        let via = checked
            .map(|a| a.top_via)
            .or_else(|| sipview::top_via(&msg));
        if let Some(via) = via {
            let key = server_key(cx, &msg, &via, MethodClass::Invite);
            on_ack(cx, from, local, &msg, key, checked.map(|a| a.request_uri));
        }
        return;
    }
    // Empty (no allocation) unless the settings list extensions.
    let supported: Vec<&[u8]> = cx
        .state
        .cfg
        .proxy_supported
        .iter()
        .map(|s| s.as_bytes())
        .collect();
    let opts = ValidateOptions {
        proxy_supported: &supported,
    };
    // Validation first: it parses the top Via the transaction key is made of (a
    // retransmission of a valid request passes it again, an invalid one is refused
    // again, as the first copy was).
    let checked = match validate_request_with(&msg, &opts) {
        Ok(c) => c,
        Err(rej) => return reject_invalid(cx, from, local, &msg, rej),
    };
    let via = checked.top_via;
    let key = server_key(cx, &msg, &via, class_of(method));
    if method == Method::Register {
        // Never proxied: the proxy is the registrar of its password servers (§5.4).
        return crate::register::on_register(cx, from, local, &msg, &source, &checked, key);
    }
    if let Some(txn) = cx.lookup(key) {
        return absorb_retransmission(cx, &txn);
    }
    if method == Method::Cancel {
        let invite_key = server_key(cx, &msg, &via, MethodClass::Invite);
        return on_cancel(cx, from, local, msg, invite_key, key);
    }
    let ids = sipview::DialogIds::of_checked(&msg, &checked.from, &checked.to);
    let loop_hash = loop_hash(cx, &msg, &ids, checked.cseq.seq);
    if is_loop(cx, &msg, loop_hash) {
        local::respond(cx, from, local, &msg, 482, b"Loop Detected", &[]);
        count_rejected(cx, from, &msg, None, Refusal::Loop);
        return;
    }
    let ruri = &checked.request_uri;
    let routing = preprocess_routes(cx, &msg, ruri);
    let in_dialog = ids.to_tag.is_some();
    let mut matched = None;
    let plan = if in_dialog {
        match calls::match_request(cx, from.addr, &ids) {
            Some(m) => {
                let plan = dialog_plan(&m, &msg);
                matched = Some(m);
                plan
            }
            None => Decision::Reject(481, "Call/Transaction Does Not Exist"),
        }
    } else if routing.foreign_route {
        // §1 of the trust rules: an out-of-dialog request goes where our routing says,
        // never where a Route it brought says (toll fraud, open relay).
        Decision::Reject(403, crate::metrics::PRELOAD_ROUTE_DENIED)
    } else if routing.to_us_without_user {
        if method == Method::Options {
            local::respond(cx, from, local, &msg, 200, b"OK", &[]);
            return;
        }
        Decision::Reject(404, "Not Found")
    } else if cx.state.shutting_down.load(Ordering::Relaxed) {
        Decision::Reject(503, "Service Unavailable")
    } else {
        new_request_plan(cx, from, &source, &msg, method, &checked)
    };
    let plan = match plan {
        Decision::Forward(p) => p,
        Decision::Reject(code, reason) => {
            local::respond(cx, from, local, &msg, code, reason.as_bytes(), &[]);
            count_rejected(cx, from, &msg, None, Refusal::of(code, reason));
            return;
        }
        Decision::Challenge(c) => {
            // A step of digest auth, not the end of a call: counted as a challenge only.
            cx.state.metrics.challenge();
            let reason = b"Proxy Authentication Required";
            local::respond(cx, from, local, &msg, 407, reason, &c.headers());
            return;
        }
    };
    // A BYE of a live dialog is always served: refusing it would hold the call's trunk
    // until the maximum duration (the dialogs bound how many there can be).
    let ends_call = method == Method::Bye && matched.is_some();
    if cx.state.servers.len() >= cx.state.cfg.max_transactions && !ends_call {
        local::respond(cx, from, local, &msg, 503, b"Service Unavailable", &[]);
        count_rejected(
            cx,
            from,
            &msg,
            Some(plan.direction),
            Refusal::MaxTransactions,
        );
        return;
    }
    let record_route =
        !in_dialog && matches!(method, Method::Invite | Method::Subscribe | Method::Refer);
    let initial_invite = method == Method::Invite && !in_dialog;
    let trunk = if initial_invite {
        match take_trunk(cx, &plan, &msg) {
            Ok(t) => t,
            Err((code, reason)) => {
                local::respond(cx, from, local, &msg, code, reason.as_bytes(), &[]);
                count_rejected(cx, from, &msg, Some(plan.direction), Refusal::TrunkLimit);
                return;
            }
        }
    } else {
        None
    };
    // The numbers are only read for calls (slices of the INVITE: no copy).
    let (from_user, to_user) = if initial_invite {
        calls::numbers(&msg, &checked)
    } else {
        Default::default()
    };
    let call = CallInfo {
        did: plan.did.clone(),
        account: plan.account.clone(),
        server: plan.server.clone(),
        document: plan.document.clone(),
        from: from_user,
        to: to_user,
        direction: plan.direction,
    };
    let reliable = from.transport.is_reliable();
    let server = if method == Method::Invite {
        ServerSide::Invite(ServerInvite::new(reliable))
    } else {
        ServerSide::NonInvite(ServerNonInvite::new(reliable))
    };
    let direction = plan.direction;
    let to_carrier = match &matched {
        Some(m) => m.to_carrier,
        None => direction == Direction::Outbound,
    };
    let media = media_of(cx, &msg, method, &plan, matched.as_ref(), initial_invite);
    // The dialog key a call is admitted under (read before the request moves on).
    let call_key = initial_invite.then(|| calls::key(cx, ids.call_id, ids.from_tag.unwrap_or(b"")));
    let mut plan = plan;
    let identity = plan.identity.take();
    let deciding = Deciding {
        request: msg,
        cursor: PlanCursor::new(plan),
        started: cx.now,
        pop_route: routing.pop_route,
        strict_uri: routing.strict_uri,
        record_route,
        loop_hash,
        call,
        trunk,
        slot: None,
        dialog: None,
        resolving: None,
    };
    let caller = Party {
        peer: from,
        carrier: match source {
            SourceClass::Carrier(name) => Some(name),
            _ => None,
        },
    };
    let from_carrier = match &matched {
        Some(m) => m.from_carrier,
        None => caller.carrier.is_some(),
    };
    let mut txn = ProxyTxn {
        key,
        source: from,
        local,
        server,
        // Most requests get one attempt; a Vec would otherwise start at four branches.
        branches: Vec::with_capacity(1),
        deciding: Some(Box::new(deciding)),
        identity,
        direction,
        cancelled: false,
        initial_invite,
        ends: matched.filter(|_| method == Method::Bye).map(|m| m.end),
        from_carrier,
        to_carrier,
        media,
    };
    if let Some(call_key) = call_key {
        if let Err(why) = calls::admit(cx, &mut txn, caller, call_key) {
            // A copy of the request being admitted on another worker is a
            // retransmission, not a merged request.
            if let Some(d) = txn.deciding.as_deref().filter(|_| cx.lookup(key).is_none()) {
                let (code, reason, refusal) = why.refusal();
                local::respond(cx, from, local, &d.request, code, reason, &[]);
                count_rejected(cx, from, &d.request, Some(direction), refusal);
            }
            return;
        }
    }
    let txn = Arc::new(Mutex::new(txn));
    match cx.state.servers.entry(key) {
        // A copy of the request won the race on another worker: this one is a
        // retransmission.
        dashmap::mapref::entry::Entry::Occupied(_) => {
            calls::forget(cx, &mut lock(&txn));
            return;
        }
        dashmap::mapref::entry::Entry::Vacant(v) => {
            v.insert(Arc::clone(&txn));
        }
    }
    let mut t = lock(&txn);
    if method == Method::Invite {
        proxying::send_trying(cx, &mut t);
    }
    if t.media.is_some() {
        proxying::start_media(cx, &mut t);
    }
    crate::trunk_wait::ask(&mut t);
    proxying::advance(cx, &mut t);
    proxying::settle(cx.state, &mut t);
}

/// The media anchoring a request takes part in (behaviour.md §4.7): the INVITE of a
/// `process` call, or an INVITE or UPDATE with SDP in an anchored dialog. An INVITE
/// without SDP (late offer) is not anchored.
fn media_of(
    cx: &Ctx<'_>,
    msg: &Message,
    method: Method,
    plan: &AttemptPlan,
    matched: Option<&calls::Matched>,
    initial: bool,
) -> Option<Box<crate::state::MediaTxn>> {
    if !crate::anchor::has_sdp(msg) {
        return None;
    }
    let key = if initial {
        plan.media.then(|| calls::key_of_invite(cx, msg))?
    } else {
        let m = matched.filter(|m| m.anchored)?;
        if !matches!(method, Method::Invite | Method::Update) {
            return None;
        }
        m.end.key
    };
    Some(Box::new(crate::anchor::media_txn(msg, key, initial)))
}

/// A request that failed validation: its status, with the tags it required that we do
/// not support (420).
fn reject_invalid(
    cx: &mut Ctx<'_>,
    from: Peer,
    local: SocketAddr,
    msg: &Message,
    rej: Rejection<'_>,
) {
    if rej.status == 483 && options_to_us(cx, msg) {
        // §16.3 step 3: an OPTIONS with Max-Forwards 0 may be answered by the proxy as
        // a UAS, and one addressed to us is ours to answer anyway (a keep-alive ping).
        local::respond(cx, from, local, msg, 200, b"OK", &[]);
        return;
    }
    let unsupported = rej.unsupported_value();
    let extra: &[(&[u8], &[u8])] = if rej.status == 420 {
        &[(b"Unsupported", &unsupported)]
    } else {
        &[]
    };
    local::respond(
        cx,
        from,
        local,
        msg,
        rej.status,
        rej.reason.as_bytes(),
        extra,
    );
    count_rejected(cx, from, msg, None, Refusal::Invalid);
}

/// An OPTIONS whose Request-URI is the proxy itself (no user part).
fn options_to_us(cx: &Ctx<'_>, msg: &Message) -> bool {
    msg.method() == Some(Method::Options)
        && Uri::parse(msg.request_uri())
            .is_ok_and(|u| u.user().is_none() && sipview::uri_is_us(&cx.state.cfg, &u))
}

/// A request refused by the proxy itself (metrics: every refusal by its reason; an
/// initial INVITE also as a rejected call, inbound when a carrier's, else outbound).
fn count_rejected(
    cx: &Ctx<'_>,
    from: Peer,
    msg: &Message,
    direction: Option<Direction>,
    refusal: Refusal,
) {
    cx.state.metrics.refusal(refusal);
    if msg.method() != Some(Method::Invite) || sipview::to_tag(msg).is_some() {
        return;
    }
    let direction = direction.unwrap_or_else(|| match cx.state.dir.classify_source(from.addr) {
        SourceClass::Carrier(_) => Direction::Inbound,
        _ => Direction::Outbound,
    });
    cx.state.metrics.call_ended(direction, Outcome::Rejected);
}

fn absorb_retransmission(cx: &mut Ctx<'_>, txn: &crate::state::TxnRef) {
    cx.state.metrics.retransmission_received();
    let t = lock(txn);
    if let Some(resp) = t.server.on_retransmission() {
        let (to, from) = (t.source, Some(t.local));
        drop(t);
        cx.send(to, from, resp);
    }
}

/// ACK: the hop-by-hop ACK of our non-2xx final is absorbed by its INVITE server
/// transaction; any other ACK (for a 2xx) is end-to-end and follows the route set,
/// statelessly. An ACK is never answered. `ruri`: the Request-URI if the ACK passed
/// the relayed ACK's check (else it is only ever absorbed).
fn on_ack(
    cx: &mut Ctx<'_>,
    from: Peer,
    local: SocketAddr,
    msg: &Message,
    key: TxKey,
    ruri: Option<Uri<'_>>,
) {
    if let Some(txn) = cx.lookup(key) {
        let mut t = lock(&txn);
        if let ServerSide::Invite(s) = &mut t.server {
            let mut timers = Timers::new(cx.state.timers);
            let absorbed = s.on_ack(cx.now, &mut timers);
            cx.schedule(crate::keys::TimerTarget::Server(key), &mut timers);
            if absorbed {
                proxying::settle(cx.state, &mut t);
                return;
            }
        }
    }
    let _ = local;
    let Some(ruri) = ruri else {
        return;
    };
    // An ACK for a 2xx goes to the other leg of its dialog; one that matches no dialog
    // (the ACK of a response we made ourselves, a forgery) goes nowhere.
    let Some(m) = calls::match_request(cx, from.addr, &sipview::DialogIds::of(msg)) else {
        return;
    };
    let routing = preprocess_routes(cx, msg, &ruri);
    let identity = m
        .identity
        .as_ref()
        .and_then(|id| crate::callerid::IdentityEdit::in_dialog(id, msg));
    let trust = proxying::Trust {
        from_carrier: m.from_carrier,
        to_carrier: m.to_carrier,
    };
    let to = proxying::StatelessHop {
        hop: m.next,
        routing: &routing,
        identity: identity.as_ref(),
        trust,
    };
    proxying::forward_stateless(cx, msg, from, key, to);
}

/// A new out-of-dialog request: from a carrier (by source address) it is inbound (§4);
/// anything else must be one of our servers calling out (§5).
/// `checked`: what validation parsed (the Request-URI and From are read from it).
fn new_request_plan(
    cx: &Ctx<'_>,
    from: Peer,
    source: &SourceClass,
    msg: &Message,
    method: Method,
    checked: &Checked<'_>,
) -> Decision {
    match source {
        SourceClass::Carrier(_) => {
            let user = checked.request_uri.user();
            let is_invite = method == Method::Invite;
            let (registrar, now) = (&cx.state.registrar, cx.now);
            let bindings = |aor: &str| registrar.targets(aor, now);
            let rule = cx.state.cfg.failover_on;
            route::inbound(&*cx.state.dir, user, is_invite, rule, &bindings)
        }
        _ => outbound::decide(cx, from, msg, method, checked),
    }
}

/// §6: the trunk an initial INVITE must take; the refusal when its account has none left.
fn take_trunk(
    cx: &Ctx<'_>,
    plan: &AttemptPlan,
    msg: &Message,
) -> Result<Option<TrunkHold>, (u16, &'static str)> {
    let Some(account) = &plan.trunk else {
        return Ok(None);
    };
    let limit = cx.state.dir.trunk_limit(account);
    match cx.state.trunks.acquire(account, limit) {
        // With `cluster` on, a limited account's hold also asks the cluster (§9.2).
        Some(hold) => Ok(Some(cx.state.trunks.link(hold, account, limit))),
        None => {
            tracing::info!(
                call_id = %String::from_utf8_lossy(sipview::call_id(msg)),
                account = &**account,
                direction = plan.direction.as_str(),
                limit,
                "trunk limit reached"
            );
            Err(plan.direction.trunk_refusal())
        }
    }
}

/// CANCEL (§16.10): its own server transaction answers 200 at once (a retransmitted
/// CANCEL finds it and gets the 200 again); the INVITE's branches are cancelled.
fn on_cancel(
    cx: &mut Ctx<'_>,
    from: Peer,
    local: SocketAddr,
    msg: Box<Message>,
    invite_key: TxKey,
    key: TxKey,
) {
    let Some(invite) = cx.lookup(invite_key) else {
        local::respond(cx, from, local, &msg, 481, local::reason(481), &[]);
        return;
    };
    let Some(ok) = local::build(cx, &msg, 200, b"OK", &[]) else {
        return;
    };
    let reliable = from.transport.is_reliable();
    let mut server = ServerNonInvite::new(reliable);
    let mut timers = Timers::new(cx.state.timers);
    server.on_final(ok.clone(), cx.now, &mut timers);
    cx.send(from, Some(local), ok);
    if !server.is_terminated() {
        let txn = ProxyTxn::local_only(key, from, local, ServerSide::NonInvite(server));
        cx.state.servers.insert(key, Arc::new(Mutex::new(txn)));
        cx.schedule(crate::keys::TimerTarget::Server(key), &mut timers);
    }
    let mut t = lock(&invite);
    proxying::cancel_by_caller(cx, &mut t);
    proxying::settle(cx.state, &mut t);
}

/// The hash a looping request would carry in our Via (see [`crate::branch`]).
/// The tags are those of the From and To validation parsed (the first of each), `seq`
/// its CSeq number.
fn loop_hash(cx: &Ctx<'_>, msg: &Message, ids: &sipview::DialogIds<'_>, seq: u32) -> u32 {
    let cseq = seq.to_be_bytes();
    cx.state.hasher.u64(&[
        msg.request_uri(),
        ids.call_id,
        ids.from_tag.unwrap_or(b""),
        ids.to_tag.unwrap_or(b""),
        &cseq,
        msg.header(HeaderName::ProxyRequire).unwrap_or(b""),
    ]) as u32
}

/// §16.3 step 4: one of our Vias carrying the same loop hash means the request came back
/// unchanged. A spiral (changed Request-URI) has a different hash.
fn is_loop(cx: &Ctx<'_>, msg: &Message, hash: u32) -> bool {
    if !branch::vias_may_carry(msg, hash) {
        return false;
    }
    sipview::all_vias(msg).any(|v| {
        sipview::via_is_us(&cx.state.cfg, &v)
            && v.branch()
                .and_then(branch::parse)
                .is_some_and(|(_, h)| h == hash)
    })
}

/// `ruri`: the Request-URI, parsed by validation.
fn preprocess_routes(cx: &Ctx<'_>, msg: &Message, ruri: &Uri<'_>) -> Routing {
    let cfg = &cx.state.cfg;
    let ruri_is_us = sipview::uri_is_us(cfg, ruri);
    let mut routes = sipview::routes(msg);
    let first = routes.next();
    let second = routes.next();
    let mut r = Routing {
        pop_route: 0,
        strict_uri: None,
        foreign_route: false,
        to_us_without_user: ruri_is_us && ruri.user().is_none(),
    };
    if ruri_is_us && first.is_some() && second.is_none() {
        // A strict router put our address in the Request-URI and the real one in the
        // last Route (§16.4); with one Route value that is the first.
        if let Some(u) = first.and_then(sipview::route_uri) {
            if !sipview::uri_is_us(cfg, &u) {
                r.strict_uri = msg.slice_ref(u.as_bytes());
                r.foreign_route = true;
                r.pop_route = 1;
                r.to_us_without_user = false;
                return r;
            }
        }
    }
    let is_us = |v: &[u8]| sipview::route_is_us(cfg, &cx.state.sides, v);
    if first.is_some_and(is_us) {
        // RFC 5658: our two entries (another transport or address family on each side)
        // come back as two Routes naming us; both are ours to pop.
        let second_is_us = second.is_some_and(is_us);
        r.pop_route = if second_is_us { 2 } else { 1 };
        r.foreign_route = if second_is_us {
            routes.next().is_some()
        } else {
            second.is_some()
        };
    } else if first.is_some() {
        r.foreign_route = true;
    }
    r
}

/// An in-dialog request goes to the other leg of the dialog it matched, as recorded
/// when the call was admitted: never to a Route, Contact or Request-URI it carries.
fn dialog_plan(m: &calls::Matched, msg: &Message) -> Decision {
    // §5.3: the caller's rewritten identity stays rewritten for the far end only.
    let identity = m
        .identity
        .as_ref()
        .and_then(|id| crate::callerid::IdentityEdit::in_dialog(id, msg));
    let mut plan = AttemptPlan::single(Attempt::to(None, Some(m.next)));
    plan.identity = identity;
    Decision::Forward(plan)
}
