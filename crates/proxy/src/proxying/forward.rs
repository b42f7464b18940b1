//! Forwarding (§16.6): the request of one attempt built in one buffer by the splice
//! editor and sent on a new branch; the stateless forward of an in-dialog ACK; the trust
//! rules that strip identity headers and credentials on the way; the sends every other
//! proxying module uses. The bottom of `proxying/`: it uses no sibling.

use std::net::SocketAddr;

use bytes::Bytes;
use trunkstore_sip::edit::{Editor, MAX_REMOVED_NAMES};
use trunkstore_sip::message::{HeaderName, Message};

use crate::branch;
use crate::callerid::IdentityEdit;
use crate::context::Ctx;
use crate::error::{Edit, EditResult, ForwardError};
use crate::keys::{ClientKey, TimerTarget, TxKey};
use crate::machines::best::Best;
use crate::machines::branch::BranchState;
use crate::machines::deadlines::{DeadlineKind, Deadlines};
use crate::route::Attempt;
use crate::state::{Branch, ClientEntry, ClientSide, Deciding, ProxyTxn, ServerSide};
use crate::transaction::{ClientInvite, ClientNonInvite, TimerKind, Timers};
use crate::types::Peer;
use crate::util::{ip_text, mix};

/// Sends to a branch's hop from our address for its transport (the same for every
/// branch: not kept per branch).
pub(super) fn send_on(cx: &mut Ctx<'_>, hop: Peer, data: Bytes) {
    let from = cx.state.sides.toward(hop).local;
    cx.send(hop, from, data);
}

/// A retransmission towards a branch's hop (counted for the metrics).
pub(super) fn resend_on(cx: &mut Ctx<'_>, hop: Peer, data: Bytes) {
    cx.state.metrics.retransmission_sent();
    send_on(cx, hop, data);
}

/// Timer A/E: the branch's request again, if it is still kept.
pub(super) fn resend_request(cx: &mut Ctx<'_>, b: &Branch) {
    if let Some(r) = b.request.clone() {
        resend_on(cx, b.peer, r);
    }
}

/// Is the branch's INVITE still waiting for its final response? Only then do its own
/// deadlines (C, progress, answer) apply.
pub(super) fn pending_invite(b: &Branch) -> bool {
    matches!(&b.client, ClientSide::Invite(c) if c.is_pending())
}

/// Makes sure one timer is queued for the branch's next deadline (see
/// [`Deadlines::arm`]).
pub(super) fn arm_deadline(cx: &mut Ctx<'_>, target: TimerTarget, b: &mut Branch) {
    if !pending_invite(b) {
        return;
    }
    if let Some(at) = b.deadlines.arm() {
        cx.shard.schedule(target, TimerKind::Deadline, at);
    }
}

/// Sends one attempt (`number`: its 1-based number). When it fails at once (no next hop,
/// unbuildable) the error says why, with the response it counts as.
pub(super) fn start_attempt(
    cx: &mut Ctx<'_>,
    t: &mut ProxyTxn,
    attempt: &Attempt,
    number: u16,
) -> Result<(), (Best, ForwardError)> {
    let Some(peer) = attempt.next_hop else {
        // §4.8: 480 when the target could not be reached.
        return Err((Best::Local(480), ForwardError::NoNextHop));
    };
    let idx = t.branches.len();
    let Ok(idx16) = u16::try_from(idx) else {
        return Err((Best::Local(500), ForwardError::TooManyBranches));
    };
    let id = mix(t.key.0 as u64 ^ (t.key.0 >> 64) as u64 ^ (idx as u64).wrapping_mul(0x9e37_79b9));
    let Some(d) = t.deciding.as_deref() else {
        // Attempts start only while deciding; nothing to build from otherwise.
        return Err((Best::Local(500), ForwardError::RequestUnparseable));
    };
    let uri = (attempt.request_uri.as_deref().or(d.strict_uri.as_deref()))
        .unwrap_or_else(|| d.request.request_uri());
    if crate::sipview::sips_downgrade(uri, peer) {
        return Err((Best::Local(480), ForwardError::InsecureHop));
    }
    let request = build_forward(cx, t, d, attempt, peer, id).map_err(|e| (Best::Local(500), e))?;
    let reliable = peer.transport.is_reliable();
    let mut timers = Timers::new(cx.state.timers);
    let is_invite = matches!(t.server, ServerSide::Invite(_));
    let client = if is_invite {
        ClientSide::Invite(ClientInvite::start(reliable, cx.now, &mut timers))
    } else {
        ClientSide::NonInvite(ClientNonInvite::start(reliable, cx.now, &mut timers))
    };
    let now = cx.now;
    let mut deadlines = Deadlines::default();
    if is_invite {
        deadlines.set(DeadlineKind::C, now + cx.state.cfg.timer_c);
        if let Some(d) = attempt.progress_timeout {
            deadlines.set(DeadlineKind::Progress, now + d);
        }
        if let Some(d) = attempt.answer_timeout {
            deadlines.set(DeadlineKind::Answer, now + d);
        }
    }
    t.branches.push(Branch {
        id,
        peer,
        request: Some(request.clone()),
        client,
        state: BranchState::Trying,
        cancel: None,
        deadlines,
        attempt: number,
        is_failover: attempt.is_failover,
        ignore_early_media: attempt.ignore_early_media,
        sent: is_invite.then_some(now),
        late: None,
    });
    let target = TimerTarget::Branch(t.key, idx16);
    cx.schedule(target, &mut timers);
    if let Some(b) = t.branches.last_mut() {
        arm_deadline(cx, target, b);
    }
    // The transaction is in the server table while it runs (inserted before the first
    // attempt); the client index points back at it.
    if let Some(txn) = cx.lookup(t.key) {
        cx.state.clients.insert(
            ClientKey { id, cancel: false },
            ClientEntry {
                txn,
                branch: idx16,
                peer,
            },
        );
    }
    // The attempt's request opens the connection to the hop, verified for the configured
    // name; what follows on the branch (CANCEL, ACK) goes on that connection.
    let from = cx.state.sides.toward(peer).local;
    cx.send_verified(peer, from, request, attempt.tls_name());
    Ok(())
}

/// §16.6: the request for one branch, built in one buffer by the splice editor.
fn build_forward(
    cx: &Ctx<'_>,
    t: &ProxyTxn,
    d: &Deciding,
    attempt: &Attempt,
    peer: Peer,
    id: u64,
) -> Result<Bytes, ForwardError> {
    let state = cx.state;
    let branch_text = branch::write(id, d.loop_hash);
    let prefix = &state.sides.toward(peer).via_prefix;
    let mut via = [0u8; 512];
    let via_len = join_into(&mut via, prefix, &branch_text).ok_or(ForwardError::ViaTooLong)?;
    let mut ip_buf = [0u8; 64];
    let src_ip = ip_text(t.source.addr.ip(), &mut ip_buf);
    let mut ed = Editor::new(&d.request);
    if let Some(uri) = attempt.request_uri.as_ref().or(d.strict_uri.as_ref()) {
        ed.set_request_uri(uri).edit(Edit::RequestUri)?;
    }
    if d.strict_uri.is_some() {
        ed.remove_header(b"Route").edit(Edit::Route)?;
    } else if d.pop_route > 0 {
        ed.pop_routes(d.pop_route.into()).edit(Edit::Route)?;
    }
    ed.set_via_received(src_ip, t.source.addr.port())
        .edit(Edit::ViaReceived)?;
    ed.push_via(&via[..via_len]).edit(Edit::PushVia)?;
    ed.decrement_max_forwards().edit(Edit::MaxForwards)?;
    if let Some(sdp) = t.media.as_ref().and_then(|m| m.offer_sdp()) {
        // rtpengine's rewrite of the offer (§4.7).
        ed.set_body(sdp).edit(Edit::Sdp)?;
    }
    // RFC 5658: a second entry, on top, when the hop is on another side than the caller.
    let (incoming, outgoing) = state.sides.record_route(t.source, t.local, peer);
    let double = d.record_route && outgoing.is_some();
    if d.record_route {
        if let Some(rr) = outgoing {
            ed.prepend_record_route(rr).edit(Edit::RecordRoute)?;
        }
        ed.prepend_record_route(incoming).edit(Edit::RecordRoute)?;
    }
    let identity = t.identity.as_ref();
    let trust = Trust::of(t);
    let mut stripped = trust.strip_request(&mut ed, identity).edit(Edit::Trust)?;
    if let Some(id) = identity {
        id.on_request(&mut ed).edit(Edit::CallerId)?;
    }
    if !trust.to_carrier && d.cursor.plan().strip_credentials {
        stripped += strip_own_credentials(&mut ed, &d.request)?;
    }
    let Some(headers) = attempt.headers.as_deref() else {
        return Ok(ed.finish());
    };
    // One splice per header while the editor has room (no allocation); a long list is
    // written as one block instead. A caller ID rewrite takes two of the splices.
    let room = HEADER_SPLICES
        .saturating_sub(if identity.is_some() { 3 } else { 0 })
        .saturating_sub(usize::from(double) + usize::from(d.pop_route > 1))
        .saturating_sub(stripped);
    let block;
    if headers.len() <= room {
        for h in headers {
            ed.add_header(h.name.as_bytes(), h.value.as_bytes())
                .edit(Edit::SipHeaders)?;
        }
    } else {
        block = header_block(headers);
        // Written as `Name: value\r\n...`: the first name, then the rest as its value.
        let (name, value) = block.split_once(": ").unwrap_or((block.as_str(), ""));
        ed.add_header(name.as_bytes(), value.as_bytes())
            .edit(Edit::SipHeaders)?;
    }
    Ok(ed.finish())
}

/// Who is on each side of a proxied message, for the identity rules (behaviour.md
/// §5.3): a server (a customer PBX) is outside our trust domain (RFC 3325), so the
/// identity headers it writes never pass, and no credentials go to a carrier.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Trust {
    /// The request comes from a carrier leg (its responses go back to one).
    pub from_carrier: bool,
    /// The request goes to a carrier leg (its responses come from one).
    pub to_carrier: bool,
}

/// Identity headers a server may not assert; P-Asserted-Identity is written by our
/// caller-ID rules only.
const IDENTITY_HEADERS: [&[u8]; 3] = [
    b"P-Asserted-Identity",
    b"P-Preferred-Identity",
    b"Remote-Party-ID",
];

impl Trust {
    pub(crate) fn of(t: &ProxyTxn) -> Trust {
        Trust {
            from_carrier: t.from_carrier,
            to_carrier: t.to_carrier,
        }
    }

    /// A request on its way: a server's identity headers go (but the P-Asserted-Identity
    /// our caller-ID rule sets, which `identity` writes after this), and toward a carrier
    /// every `Proxy-Authorization`. Returns the splices used.
    pub(super) fn strip_request(
        self,
        ed: &mut Editor<'_>,
        identity: Option<&IdentityEdit>,
    ) -> Result<usize, trunkstore_sip::Error> {
        let mut names: [&[u8]; MAX_REMOVED_NAMES] = [b""; MAX_REMOVED_NAMES];
        let mut n = 0;
        if !self.from_carrier {
            let sets_pai = identity.is_some_and(|i| i.asserts());
            for name in IDENTITY_HEADERS {
                if !(sets_pai && name == b"P-Asserted-Identity") {
                    names[n] = name;
                    n += 1;
                }
            }
        }
        if self.to_carrier {
            names[n] = b"Proxy-Authorization";
            n += 1;
        }
        ed.remove_headers(&names[..n])
    }

    /// A response on its way back: a server's identity headers go, and toward a carrier
    /// every `Proxy-Authenticate` (a customer may not collect a carrier's credentials).
    pub(super) fn strip_response(self, ed: &mut Editor<'_>) -> Result<(), trunkstore_sip::Error> {
        let mut names: [&[u8]; MAX_REMOVED_NAMES] = [b""; MAX_REMOVED_NAMES];
        let mut n = 0;
        if !self.to_carrier {
            names[..IDENTITY_HEADERS.len()].copy_from_slice(&IDENTITY_HEADERS);
            n = IDENTITY_HEADERS.len();
        }
        if self.from_carrier {
            names[n] = b"Proxy-Authenticate";
            n += 1;
        }
        ed.remove_headers(&names[..n]).map(|_| ())
    }
}

/// Editor splices left for `sip_headers` after the forwarding edits (7 of 16).
const HEADER_SPLICES: usize = 7;

/// RFC 3261 §22.3: a proxy consumes the credentials addressed to its own realm and
/// forwards any others. The request was authenticated by its first `Proxy-Authorization`
/// (outbound.rs), so that one's realm is ours: every line with that realm goes, the
/// rest stay (re-added after the other headers: the editor removes lines by name only,
/// and the order of different header names does not matter, §7.3.1). Returns the
/// splices used.
fn strip_own_credentials<'a>(ed: &mut Editor<'a>, msg: &'a Message) -> Result<usize, ForwardError> {
    use trunkstore_sip::digest::Credentials;
    let Some(first) = msg.header(HeaderName::ProxyAuthorization) else {
        return Ok(0);
    };
    let ours = Credentials::parse(first).edit(Edit::Credentials)?.realm;
    let removed = ed
        .remove_header(b"Proxy-Authorization")
        .edit(Edit::Credentials)?;
    let mut used = removed;
    for value in msg.headers(HeaderName::ProxyAuthorization) {
        let theirs =
            Credentials::parse(value).map_or(true, |c| !c.realm.eq_ignore_ascii_case(ours));
        if theirs {
            ed.add_header(b"Proxy-Authorization", value)
                .edit(Edit::Credentials)?;
            used += 1;
        }
    }
    Ok(used)
}

/// `A: 1\r\nB: 2` (the editor adds the last CRLF). Values were checked free of CR/LF at
/// load, so this cannot inject anything the configuration did not say.
fn header_block(headers: &[trunkstore_config::SipHeader]) -> String {
    let mut out = String::new();
    for (i, h) in headers.iter().enumerate() {
        if i > 0 {
            out.push_str("\r\n");
        }
        out.push_str(&h.name);
        out.push_str(": ");
        out.push_str(&h.value);
    }
    out
}

/// Route pre-processing (§16.4) decided once per request.
pub(crate) struct Routing {
    /// How many Route values to pop when forwarding: our top one, or two when the second
    /// names us too (our RFC 5658 double Record-Route, reversed by the UA).
    pub pop_route: u8,
    /// Strict-router fix-up: the Request-URI was ours, the (only) Route value is the
    /// real Request-URI.
    pub strict_uri: Option<bytes::Bytes>,
    /// A Route that does not name us is left after ours is popped (or a strict
    /// router's): an out-of-dialog request carrying one is refused.
    pub foreign_route: bool,
    /// Request-URI is us, with no user part (OPTIONS ping target).
    pub to_us_without_user: bool,
}

/// Where and how a request forwarded without a transaction goes.
pub(crate) struct StatelessHop<'a> {
    /// The other leg of the dialog.
    pub hop: Peer,
    pub routing: &'a Routing,
    pub identity: Option<&'a IdentityEdit>,
    pub trust: Trust,
}

/// Forwards a request without a transaction (the ACK for a 2xx): our Via with a branch
/// derived from the request's key (the same for a retransmitted ACK), Route popped,
/// Max-Forwards decremented.
pub(crate) fn forward_stateless(
    cx: &mut Ctx<'_>,
    msg: &Message,
    from: Peer,
    key: TxKey,
    to: StatelessHop<'_>,
) {
    let StatelessHop {
        hop,
        routing,
        identity,
        trust,
    } = to;
    let id = mix(key.0 as u64 ^ (key.0 >> 64) as u64 ^ 0x41434b);
    let branch_text = branch::write(id, 0);
    let side = cx.state.sides.toward(hop);
    let prefix = &side.via_prefix;
    let mut via = [0u8; 512];
    let Some(via_len) = join_into(&mut via, prefix, &branch_text) else {
        cx.forward_failed(crate::sipview::call_id(msg), ForwardError::ViaTooLong);
        return;
    };
    let mut ip_buf = [0u8; 64];
    let src_ip = ip_text(from.addr.ip(), &mut ip_buf);
    let mut ed = Editor::new(msg);
    let edited = (|| -> Result<(), ForwardError> {
        if let Some(uri) = &routing.strict_uri {
            ed.set_request_uri(uri).edit(Edit::RequestUri)?;
            ed.remove_header(b"Route").edit(Edit::Route)?;
        } else if routing.pop_route > 0 {
            ed.pop_routes(routing.pop_route.into()).edit(Edit::Route)?;
        }
        ed.set_via_received(src_ip, from.addr.port())
            .edit(Edit::ViaReceived)?;
        ed.push_via(&via[..via_len]).edit(Edit::PushVia)?;
        ed.decrement_max_forwards().edit(Edit::MaxForwards)?;
        trust.strip_request(&mut ed, identity).edit(Edit::Trust)?;
        if let Some(id) = identity {
            id.on_request(&mut ed).edit(Edit::CallerId)?;
        }
        Ok(())
    })();
    match edited {
        Ok(()) => {
            let data = ed.finish();
            let local: Option<SocketAddr> = side.local;
            cx.send(hop, local, data);
        }
        Err(e) => cx.forward_failed(crate::sipview::call_id(msg), e),
    }
}

/// `a` then `b` into `buf` (a Via value on the stack); `None` if it does not fit.
fn join_into(buf: &mut [u8], a: &[u8], b: &[u8]) -> Option<usize> {
    let n = a.len() + b.len();
    buf.get_mut(..a.len())?.copy_from_slice(a);
    buf.get_mut(a.len()..n)?.copy_from_slice(b);
    Some(n)
}
