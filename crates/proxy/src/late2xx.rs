//! A 2xx on a branch the proxy cancelled itself (an attempt timer, timer C, failover):
//! nobody upstream wants that dialog, and the callee's leg is billed while it is up, so
//! the proxy ends it (behaviour.md §4.5).
//!
//! Every copy of the 2xx is ACKed (a copy means our ACK was lost, RFC 3261 §13.3.1.4),
//! and the dialog gets one BYE, sent through its own client non-INVITE transaction
//! (§17.1.2: timer E retransmits it over UDP, timer F gives up) and matched by its own Via
//! branch. Both follow the 2xx's route set (§12.1.2, §12.2.1.1, built by
//! [`build::in_dialog`]). The BYE lives on its branch, under the branch's timer target,
//! so the proxy transaction lasts until the BYE ends (bounded by timer F, then K).
//!
//! Fraud care: the next hop comes from the callee's 2xx, so it must be a usable IP
//! literal (the core does no DNS); anything else falls back to the branch's own peer,
//! where the INVITE went.

use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use trunkstore_sip::build::{self, DialogRoute};
use trunkstore_sip::message::Message;
use trunkstore_sip::parse::parse_datagram;
use trunkstore_sip::uri::Scheme;

use crate::context::Ctx;
use crate::keys::{ClientKey, TimerTarget};
use crate::metrics::LateByeOutcome;
use crate::state::{Branch, ClientEntry, Late2xx, LateDialog, ProxyTxn, State, MAX_DIALOGS};
use crate::transaction::client_non_invite::{ResponseAction, TimerAction};
use crate::transaction::{ClientNonInvite, TimerKind, Timers};
use crate::types::Peer;
use crate::util::mix;
use crate::{branch, sipview};

/// Removes the BYEs' client index entries (the transaction is going).
pub(crate) fn forget(state: &State, b: &Branch) {
    for d in b.late.iter().flat_map(|l| &l.dialogs) {
        state.clients.remove(&ClientKey {
            id: d.bye_id,
            cancel: false,
        });
    }
}

/// A 2xx (first or a copy) on branch `idx`, which the proxy cancelled itself: ACK it; if
/// it is a dialog not seen yet, BYE it.
pub(crate) fn on_2xx(cx: &mut Ctx<'_>, t: &mut ProxyTxn, idx: usize, resp: &Message) {
    let key = t.key;
    let txn = cx.lookup(key);
    let Some(b) = t.branches.get_mut(idx) else {
        return;
    };
    let tag = sipview::to_tag(resp).unwrap_or_default();
    if let Some(d) = b
        .late
        .as_deref()
        .and_then(|l| l.dialogs.iter().find(|d| d.to_tag == tag))
    {
        // Our ACK was lost (or crossed this copy).
        cx.state.metrics.retransmission_received();
        let (hop, ack) = (d.hop, d.ack.clone());
        send(cx, hop, ack);
        return;
    }
    let n = b.late.as_ref().map_or(0, |l| l.dialogs.len());
    let call_id = sipview::call_id(resp);
    if n >= MAX_DIALOGS {
        tracing::warn!(
            call_id = %String::from_utf8_lossy(call_id),
            "late 2xx: too many dialogs on one cancelled branch; this one is dropped"
        );
        return;
    }
    let Some(invite) = b
        .request
        .clone()
        .and_then(|r| parse_datagram(r, &cx.state.cfg.limits).ok())
    else {
        return;
    };
    let d = match build_dialog(cx.state, b, &invite, resp, n, cx.now) {
        Ok((d, mut timers)) => {
            let idx16 = u16::try_from(idx).unwrap_or(u16::MAX);
            cx.schedule(TimerTarget::Branch(key, idx16), &mut timers);
            if let Some(txn) = txn {
                let entry = ClientEntry {
                    txn,
                    branch: idx16,
                    peer: d.hop,
                };
                let id = d.bye_id;
                cx.state
                    .clients
                    .insert(ClientKey { id, cancel: false }, entry);
            }
            d
        }
        Err(e) => {
            tracing::warn!(
                call_id = %String::from_utf8_lossy(call_id),
                error = %e,
                "late 2xx: cannot build its ACK and BYE"
            );
            return;
        }
    };
    cx.state.metrics.late_2xx_hung_up();
    tracing::info!(
        call_id = %String::from_utf8_lossy(&d.call_id),
        hop = %d.hop.addr,
        "2xx the proxy does not relay (a branch it cancelled, or an answer rtpengine could not anchor): ACK and BYE sent"
    );
    send(cx, d.hop, d.ack.clone());
    send(cx, d.hop, d.bye.clone());
    b.late.get_or_insert_with(Default::default).dialogs.push(d);
}

/// The ACK and BYE of the `n`th late dialog of branch `b`, its BYE's transaction started
/// at `now` (the timers it armed are returned to be scheduled).
fn build_dialog(
    state: &State,
    b: &Branch,
    invite: &Message,
    resp: &Message,
    n: usize,
    now: std::time::Instant,
) -> Result<(LateDialog, Timers), trunkstore_sip::Error> {
    let route = DialogRoute::of(invite, resp)?;
    let hop = next_hop(&route, b.peer);
    let cseq = sipview::cseq(invite).map_or(1, |c| c.seq);
    // Two ids per dialog, derived from the branch's: stable for its copies.
    let ack_id = mix(b.id ^ (0xa5a5_0000 + 2 * n as u64));
    let bye_id = mix(b.id ^ (0xa5a5_0000 + 2 * n as u64 + 1));
    let ack_via = via(state, hop, ack_id);
    let bye_via = via(state, hop, bye_id);
    let ack = build::in_dialog(invite, resp, &route, b"ACK", cseq, &ack_via)?;
    let bye = build::in_dialog(
        invite,
        resp,
        &route,
        b"BYE",
        cseq.saturating_add(1),
        &bye_via,
    )?;
    let mut timers = Timers::new(state.timers);
    let client = ClientNonInvite::start(hop.transport.is_reliable(), now, &mut timers);
    let d = LateDialog {
        to_tag: Bytes::copy_from_slice(sipview::to_tag(resp).unwrap_or_default()),
        hop,
        ack,
        bye,
        bye_id,
        client,
        call_id: Bytes::copy_from_slice(sipview::call_id(invite)),
    };
    Ok((d, timers))
}

/// Our Via for `hop` with branch `id`.
fn via(state: &State, hop: Peer, id: u64) -> Vec<u8> {
    let mut v = state.sides.toward(hop).via_prefix.to_vec();
    v.extend_from_slice(&branch::write(id, 0));
    v
}

/// Where the ACK and BYE go: the address of the route set's first URI, else of the
/// Contact, when it is an IP literal we can send to over a transport we have; else
/// `fallback` (the branch's peer). No DNS in the core, and no sending to an address the
/// callee made up that could not be a SIP peer (unspecified, multicast, broadcast, port 0).
fn next_hop(route: &DialogRoute<'_>, fallback: Peer) -> Peer {
    let Ok(uri) = route.next_hop() else {
        return fallback;
    };
    let Some(ip) = uri.host().and_then(|h| h.ip()) else {
        return fallback;
    };
    // A `sip:` URI without a transport: the branch's; otherwise what the URI asks for
    // (a `sips:` one only over TLS, RFC 5630), and nothing we cannot honour.
    let transport = match crate::sipview::uri_transport(&uri) {
        _ if uri.scheme() == Scheme::Sip && uri.transport().is_none() => fallback.transport,
        Some(t) => t,
        None => return fallback,
    };
    let port = uri.port().unwrap_or(transport.default_port());
    if port == 0 || !usable(ip) {
        return fallback;
    }
    Peer {
        transport,
        addr: SocketAddr::new(ip, port),
    }
}

fn usable(ip: IpAddr) -> bool {
    let broadcast = matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
    !(ip.is_unspecified() || ip.is_multicast() || broadcast)
}

fn send(cx: &mut Ctx<'_>, hop: Peer, data: Bytes) {
    let from = cx.state.sides.toward(hop).local;
    cx.send(hop, from, data);
}

/// A response matched to branch `idx` by our branch id `id`: if it answers one of the
/// branch's late BYEs, it is handled here (true); else it is the branch's own (false).
pub(crate) fn on_response(
    cx: &mut Ctx<'_>,
    t: &mut ProxyTxn,
    idx: usize,
    id: u64,
    resp: &Message,
) -> bool {
    let key = t.key;
    let Some(d) = t
        .branches
        .get_mut(idx)
        .and_then(|b| b.late.as_deref_mut())
        .and_then(|l| l.dialogs.iter_mut().find(|d| d.bye_id == id))
    else {
        return false;
    };
    // Our branch, but not an answer to a BYE (§17.1.3 matches the method too): dropped.
    if sipview::cseq(resp).is_none_or(|c| c.method != b"BYE") {
        return true;
    }
    let status = resp.status().unwrap_or(500);
    let mut timers = Timers::new(cx.state.timers);
    match d.client.on_response(status, cx.now, &mut timers) {
        ResponseAction::Final => {
            let outcome = if (200..300).contains(&status) {
                LateByeOutcome::Answered
            } else {
                LateByeOutcome::Refused
            };
            ended(cx.state, d, outcome, Some(status));
        }
        ResponseAction::Ignore => cx.state.metrics.retransmission_received(),
        ResponseAction::Provisional => {}
    }
    let idx16 = u16::try_from(idx).unwrap_or(u16::MAX);
    cx.schedule(TimerTarget::Branch(key, idx16), &mut timers);
    true
}

/// Timer E, F or K fired on a branch (its `target`): the share of it of the branch's
/// late BYEs (`late`).
pub(crate) fn on_timer(
    cx: &mut Ctx<'_>,
    late: Option<&mut Late2xx>,
    target: TimerTarget,
    kind: TimerKind,
    at: std::time::Instant,
) {
    let Some(late) = late else {
        return;
    };
    for d in &mut late.dialogs {
        // Each its own `Timers`: BYEs started at the same instant fire together.
        let mut timers = Timers::new(cx.state.timers);
        match d.client.on_timer(kind, at, cx.now, &mut timers) {
            TimerAction::Retransmit => {
                cx.state.metrics.retransmission_sent();
                let from = cx.state.sides.toward(d.hop).local;
                cx.send(d.hop, from, d.bye.clone());
            }
            TimerAction::Timeout => ended(cx.state, d, LateByeOutcome::Timeout, None),
            TimerAction::None | TimerAction::Terminated => {}
        }
        cx.schedule(target, &mut timers);
    }
}

/// The BYE's outcome: counted, and one log line.
fn ended(state: &State, d: &LateDialog, outcome: LateByeOutcome, status: Option<u16>) {
    state.metrics.late_bye_ended(outcome);
    let call_id = String::from_utf8_lossy(&d.call_id);
    match status {
        Some(status) => tracing::info!(
            call_id = %call_id,
            hop = %d.hop.addr,
            status,
            "late 2xx: BYE answered"
        ),
        None => tracing::warn!(
            call_id = %call_id,
            hop = %d.hop.addr,
            "late 2xx: BYE got no answer by timer F; the callee's leg may still be up"
        ),
    }
}
