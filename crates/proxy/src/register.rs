//! REGISTER from password servers (behaviour.md §5.4): the proxy is their registrar. A
//! REGISTER is never forwarded; it is answered here, after the same digest checks as an
//! INVITE (401 and `WWW-Authenticate` instead of 407: the registrar is the UAS), and its
//! Contacts become bindings that inbound calls use. Also the keep-alives to bindings
//! behind NAT, sent from the registrar's sweep.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use trunkstore_routing::{ServerInfo, Snapshot};
use trunkstore_sip::headers::{expires, CSeq};
use trunkstore_sip::message::{HeaderName, Message};
use trunkstore_sip::validate::Checked;

use crate::auth::ChallengeHeaders;
use crate::context::Ctx;
use crate::keys::TxKey;
use crate::metrics::RegisterOutcome;
use crate::outbound::{challenge, verify_digest, Digest};
use crate::registrar::{
    parse_contacts, ContactError, Keepalive, RegisterError, RegisterRequest, Registered,
};
use crate::route::SourceClass;
use crate::types::{Peer, Transport};
use crate::util::hex64;

/// What a REGISTER gets.
enum Answer {
    Challenge(ChallengeHeaders),
    Refuse(u16, &'static str, RegisterOutcome),
    TooBrief(u32),
    Done(Registered),
}

/// Answers a REGISTER (any REGISTER: it is never proxied).
pub(crate) fn on_register(
    cx: &mut Ctx<'_>,
    from: Peer,
    local: SocketAddr,
    msg: &Message,
    source: &SourceClass,
    checked: &Checked<'_>,
    key: TxKey,
) {
    // A retransmission gets the answer its first copy got: checked again, its reused
    // nonce-count would be a replay and its CSeq no longer above the binding's.
    if let Some(answer) = cx.state.registrar.answer_of(key, from) {
        cx.state.metrics.retransmission_received();
        cx.send(from, Some(local), answer);
        return;
    }
    let answer = decide(cx, from, msg, source, checked);
    let (outcome, response) = respond(cx, msg, answer);
    cx.state.metrics.registration(outcome);
    let Some(response) = response else { return };
    if !matches!(outcome, RegisterOutcome::Challenged) {
        cx.state
            .registrar
            .keep_answer(key, from, response.clone(), cx.now);
    }
    cx.send(from, Some(local), response);
}

fn decide(
    cx: &Ctx<'_>,
    from: Peer,
    msg: &Message,
    source: &SourceClass,
    checked: &Checked<'_>,
) -> Answer {
    // Carriers and IP-auth servers are known by their address: they have no password to
    // register with, and a binding could send their DIDs' calls elsewhere.
    if !matches!(source, SourceClass::Unknown) {
        return Answer::Refuse(403, "Forbidden", RegisterOutcome::Forbidden);
    }
    let Some(snap) = cx.state.dir.snapshot() else {
        return Answer::Refuse(403, "Forbidden", RegisterOutcome::Forbidden);
    };
    let server = match authenticate(cx, &snap, from, msg, checked) {
        Ok(s) => s,
        Err(answer) => return answer,
    };
    let request = match register_request(&server, from, msg, checked) {
        Ok(r) => r,
        Err(answer) => return answer,
    };
    match cx.state.registrar.register(request, cx.now) {
        Ok(done) => Answer::Done(done),
        Err(RegisterError::TooBrief(min)) => Answer::TooBrief(min),
        Err(RegisterError::OutOfOrder) => Answer::Refuse(
            400,
            "Bad Request (CSeq out of order)",
            RegisterOutcome::Invalid,
        ),
    }
}

/// The password server whose credentials these are (§5.1's rules: one nonce scheme,
/// replay table and ban counter for INVITE and REGISTER alike, `outbound::verify_digest`).
fn authenticate(
    cx: &Ctx<'_>,
    snap: &Snapshot,
    from: Peer,
    msg: &Message,
    checked: &Checked<'_>,
) -> Result<Arc<ServerInfo>, Answer> {
    // A 401; the realm follows the To host (the address of record's domain).
    let again = |stale| Answer::Challenge(challenge(cx, snap, &checked.to, from.addr.ip(), stale));
    let Some(credentials) = msg.header(HeaderName::Authorization) else {
        return Err(again(false));
    };
    match verify_digest(cx, snap, from, msg, credentials) {
        Digest::Server(server) => Ok(snap.server(server).clone()),
        Digest::Forbidden => Err(Answer::Refuse(403, "Forbidden", RegisterOutcome::Forbidden)),
        Digest::Challenge { stale } => Err(again(stale)),
    }
}

/// The registrar's view of an authenticated REGISTER, or the answer refusing it (400
/// when a header it needs cannot be read, 403 for another address of record).
fn register_request(
    server: &ServerInfo,
    from: Peer,
    msg: &Message,
    checked: &Checked<'_>,
) -> Result<RegisterRequest, Answer> {
    let unreadable = || Answer::Refuse(400, "Bad Request", RegisterOutcome::Invalid);
    let user = server.auth_user.as_deref().ok_or_else(unreadable)?;
    // The AOR is the server's own (RFC 3261 §10.3 step 3): a PBX registers itself only.
    let to_user = checked.to.sip_uri().and_then(|u| u.user_unescaped());
    if to_user.as_deref() != Some(user.as_bytes()) {
        tracing::warn!(source = %from.addr, server = ?server.name, "REGISTER for another address of record");
        return Err(Answer::Refuse(403, "Forbidden", RegisterOutcome::Forbidden));
    }
    let header_expires = match msg.header(HeaderName::Expires) {
        Some(v) => Some(expires(v).map_err(|_| unreadable())?),
        None => None,
    };
    let contacts = match parse_contacts(msg.headers(HeaderName::Contact), header_expires) {
        Ok(c) => c,
        Err(ContactError::BadWildcard) => {
            return Err(Answer::Refuse(
                400,
                "Bad Request (Contact * needs Expires: 0 and no other Contact)",
                RegisterOutcome::Invalid,
            ))
        }
        Err(ContactError::Unreadable) => return Err(unreadable()),
    };
    let cseq = msg
        .header(HeaderName::CSeq)
        .and_then(|v| CSeq::parse(v).ok())
        .ok_or_else(unreadable)?
        .seq;
    let call_id = std::str::from_utf8(crate::sipview::call_id(msg)).map_err(|_| unreadable())?;
    let user_agent = msg
        .header(HeaderName::UserAgent)
        .map(|ua| Arc::from(String::from_utf8_lossy(ua).as_ref()));
    Ok(RegisterRequest {
        aor: trunkstore_routing::aor(user, &server.realm),
        account: server.account.clone(),
        server: server.name.clone().unwrap_or_else(|| Arc::from("-")),
        contacts,
        header_expires,
        call_id: Arc::from(call_id),
        cseq,
        source: from,
        user_agent,
    })
}

/// The response bytes for `answer`, and how the REGISTER ended.
fn respond(cx: &Ctx<'_>, msg: &Message, answer: Answer) -> (RegisterOutcome, Option<Bytes>) {
    match answer {
        Answer::Challenge(c) => {
            let headers = c.headers_named(b"WWW-Authenticate");
            let r = crate::local::build(cx, msg, 401, b"Unauthorized", &headers);
            (RegisterOutcome::Challenged, r)
        }
        Answer::Refuse(code, reason, outcome) => {
            let r = crate::local::build(cx, msg, code, reason.as_bytes(), &[]);
            (outcome, r)
        }
        Answer::TooBrief(min) => {
            let min = min.to_string();
            let headers: [(&[u8], &[u8]); 1] = [(b"Min-Expires", min.as_bytes())];
            let r = crate::local::build(cx, msg, 423, b"Interval Too Brief", &headers);
            (RegisterOutcome::TooBrief, r)
        }
        Answer::Done(done) => {
            let contacts: Vec<String> = done
                .bindings
                .iter()
                .map(|(uri, left)| format!("<{uri}>;expires={left}"))
                .collect();
            let headers: Vec<(&[u8], &[u8])> = contacts
                .iter()
                .map(|c| (&b"Contact"[..], c.as_bytes()))
                .collect();
            let outcome = if done.removed && !done.added {
                RegisterOutcome::Removed
            } else {
                RegisterOutcome::Ok
            };
            (outcome, crate::local::build(cx, msg, 200, b"OK", &headers))
        }
    }
}

/// The registrar's periodic work, on whichever worker gets to it first: expiry, and
/// keep-alives to bindings behind NAT.
pub(crate) fn sweep(cx: &mut Ctx<'_>) {
    if !cx.state.registrar.take_sweep(cx.now) {
        return;
    }
    for k in cx.state.registrar.sweep(cx.now) {
        let data = keepalive_bytes(cx, &k);
        cx.state.metrics.keepalive_sent();
        cx.send(k.to, None, data);
    }
}

/// Branch prefix of keep-alive OPTIONS: their responses go to the registrar.
pub(crate) const KEEPALIVE_BRANCH: &str = "z9hG4bKka";

/// A keep-alive: CRLF CRLF on a TCP or TLS flow (RFC 5626 §3.5.1), else an OPTIONS whose
/// response proves the NAT binding open.
fn keepalive_bytes(cx: &Ctx<'_>, k: &Keepalive) -> Bytes {
    if k.to.transport.is_reliable() {
        return Bytes::from_static(b"\r\n\r\n");
    }
    let adv = cx.state.cfg.advertise(Transport::Udp);
    let mut id = [0u8; 16];
    hex64(k.id, &mut id);
    let id = std::str::from_utf8(&id).unwrap_or("0");
    let host = format!("{}:{}", adv.host, adv.port);
    Bytes::from(format!(
        "OPTIONS {contact} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {host};branch={KEEPALIVE_BRANCH}{id};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:keepalive@{host}>;tag={id}\r\n\
         To: <{contact}>\r\n\
         Call-ID: ka{id}@{host}\r\n\
         CSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n",
        contact = k.contact
    ))
}

/// A response to one of our keep-alives (its top Via branch has our prefix): the
/// registrar takes it; true when it was one (it is never relayed).
pub(crate) fn keepalive_response(cx: &Ctx<'_>, from: Peer, branch: &[u8]) -> bool {
    let Some(id) = branch.strip_prefix(KEEPALIVE_BRANCH.as_bytes()) else {
        return false;
    };
    if let Some(id) = crate::util::parse_hex(id) {
        cx.state.registrar.keepalive_answered(id, from.addr);
    }
    true
}
