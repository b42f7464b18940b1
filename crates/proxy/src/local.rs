//! Responses the proxy makes itself (§8.2.6, §16.7 step 1 for 100 Trying).

use std::net::SocketAddr;

use bytes::Bytes;
use trunkstore_sip::build::{self, ResponseOptions};
use trunkstore_sip::message::Message;

use crate::context::Ctx;
use crate::sipview;
use crate::types::Peer;
use crate::util::hex64;

/// Reason phrases of the codes we generate.
pub(crate) fn reason(code: u16) -> &'static [u8] {
    match code {
        100 => b"Trying",
        200 => b"OK",
        400 => b"Bad Request",
        403 => b"Forbidden",
        404 => b"Not Found",
        408 => b"Request Timeout",
        416 => b"Unsupported URI Scheme",
        420 => b"Bad Extension",
        480 => b"Temporarily Unavailable",
        481 => b"Call/Transaction Does Not Exist",
        482 => b"Loop Detected",
        483 => b"Too Many Hops",
        486 => b"Busy Here",
        487 => b"Request Terminated",
        500 => b"Server Internal Error",
        503 => b"Service Unavailable",
        _ => b"Error",
    }
}

/// Our To tag for responses to `req`: derived from the request, so the same request
/// (e.g. a retransmission answered statelessly) always gets the same tag.
pub(crate) fn to_tag(cx: &Ctx<'_>, req: &Message) -> [u8; 16] {
    let h = cx.state.hasher.u64(&[
        sipview::call_id(req),
        sipview::from_tag(req).unwrap_or(b""),
        req.header(trunkstore_sip::message::HeaderName::CSeq)
            .unwrap_or(b""),
    ]);
    let mut out = [0u8; 16];
    hex64(h, &mut out);
    out
}

/// Builds a response to `req`.
pub(crate) fn build(
    cx: &Ctx<'_>,
    req: &Message,
    code: u16,
    reason_phrase: &[u8],
    headers: &[(&[u8], &[u8])],
) -> Option<Bytes> {
    // A 100 carries no To tag (§8.2.6.2): not worth hashing for, on every INVITE.
    let tag = (code > 100).then(|| to_tag(cx, req));
    let opts = ResponseOptions {
        to_tag: tag.as_ref().map(|t| &t[..]),
        headers,
        body: None,
    };
    build::response(req, code, reason_phrase, &opts).ok()
}

/// Answers `req` statelessly, back to where it came from (RFC 3581: source address and
/// port; for TCP the same connection).
pub(crate) fn respond(
    cx: &mut Ctx<'_>,
    to: Peer,
    local: SocketAddr,
    req: &Message,
    code: u16,
    reason_phrase: &[u8],
    headers: &[(&[u8], &[u8])],
) {
    if let Some(b) = build(cx, req, code, reason_phrase, headers) {
        cx.send(to, Some(local), b);
    }
}
