//! Outbound caller ID (behaviour.md §5.3): the From display name and user (and
//! P-Asserted-Identity) the far end sees, and keeping both ends' dialog state consistent.
//!
//! The PBX must keep seeing its own From, the far end the rewritten one, for the whole
//! dialog. Which side a message of the dialog comes from is told by the tags, which are
//! never changed: the PBX's tag is the From tag of its INVITE. So an in-dialog request
//! whose From tag is the PBX's comes from the PBX (its From becomes the rewritten value),
//! one whose To tag is the PBX's goes to the PBX (its To becomes the original value), and
//! responses are edited the opposite way on their way back.

use std::sync::Arc;

use bytes::Bytes;
use trunkstore_config::CallerId;
use trunkstore_sip::edit::Editor;
use trunkstore_sip::message::{HeaderName, Message};
use trunkstore_sip::nameaddr::NameAddr;

use crate::sipview;

/// The two identities of the calling PBX in one dialog.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Identity {
    /// The PBX's From tag.
    pub pbx_tag: Bytes,
    /// The From value as the PBX sent it.
    pub original: Bytes,
    /// The From value the far end sees (same tag).
    pub rewritten: Bytes,
    /// `P-Asserted-Identity` of the initial request: the rewritten name-addr, no tag.
    pub asserted: Bytes,
}

/// Which way a message of the dialog is going, relative to the PBX.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// A request from the PBX (and the responses to it, going back to the PBX).
    FromPbx,
    /// A request to the PBX (and the PBX's responses to it).
    ToPbx,
}

/// The identity edit of one proxied request: what to rewrite in the request forwarded
/// and in the responses relayed back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IdentityEdit {
    pub identity: Arc<Identity>,
    pub side: Side,
    /// The dialog-creating request: P-Asserted-Identity is set too.
    pub initial: bool,
}

impl IdentityEdit {
    /// The edit for an in-dialog request of a dialog with `identity`, by its tags; `None`
    /// when the request is not between the PBX and the far end.
    pub(crate) fn in_dialog(identity: &Arc<Identity>, msg: &Message) -> Option<IdentityEdit> {
        let tag = &identity.pbx_tag[..];
        let side = if sipview::from_tag(msg) == Some(tag) {
            Side::FromPbx
        } else if sipview::to_tag(msg) == Some(tag) {
            Side::ToPbx
        } else {
            return None;
        };
        Some(IdentityEdit {
            identity: identity.clone(),
            side,
            initial: false,
        })
    }

    /// Does the edit set P-Asserted-Identity (the initial request from the PBX)?
    pub(crate) fn asserts(&self) -> bool {
        self.initial && self.side == Side::FromPbx
    }

    /// Edits a request being forwarded. Uses 1 splice (2 for the initial request, plus
    /// one per extra P-Asserted-Identity line the PBX sent).
    pub(crate) fn on_request<'a>(
        &'a self,
        ed: &mut Editor<'a>,
    ) -> Result<(), trunkstore_sip::Error> {
        let id = &*self.identity;
        match self.side {
            Side::FromPbx => {
                ed.set_header(b"From", &id.rewritten)?;
                if self.initial {
                    ed.set_header(b"P-Asserted-Identity", &id.asserted)?;
                }
            }
            Side::ToPbx => ed.set_header(b"To", &id.original)?,
        }
        Ok(())
    }

    /// Edits a response being relayed back to the sender of the request.
    pub(crate) fn on_response<'a>(
        &'a self,
        ed: &mut Editor<'a>,
    ) -> Result<(), trunkstore_sip::Error> {
        let id = &*self.identity;
        match self.side {
            Side::FromPbx => ed.set_header(b"From", &id.original),
            Side::ToPbx => ed.set_header(b"To", &id.rewritten),
        }
    }
}

/// The identity for an initial request whose From is `from` when `cid` applies; `None`
/// when nothing would change (no caller id, or a From we cannot rewrite safely).
pub(crate) fn identity_for(msg: &Message, cid: &CallerId) -> Option<Arc<Identity>> {
    if cid.is_empty() {
        return None;
    }
    let from = msg.header(HeaderName::From)?;
    let na = NameAddr::parse(from).ok()?;
    let tag = na.tag()?;
    let (addr, params) = rewrite_addr(from, &na, cid)?;
    let mut rewritten = Vec::with_capacity(addr.len() + params.len());
    rewritten.extend_from_slice(&addr);
    rewritten.extend_from_slice(params);
    Some(Arc::new(Identity {
        pbx_tag: Bytes::copy_from_slice(tag),
        original: Bytes::copy_from_slice(from),
        rewritten: Bytes::from(rewritten),
        asserted: Bytes::from(addr),
    }))
}

/// `"Name" <sip:number@host...>` from the PBX's From with `cid`'s parts applied, and the
/// header parameters (`;tag=...`) that follow the address in `from`.
fn rewrite_addr<'a>(
    from: &'a [u8],
    na: &NameAddr<'a>,
    cid: &CallerId,
) -> Option<(Vec<u8>, &'a [u8])> {
    let uri = na.sip_uri()?;
    let raw = uri.as_bytes();
    let uri_start = offset_in(from, raw)?;
    let mut uri_end = uri_start + raw.len();
    if na.is_bracketed() {
        uri_end = uri_end + from[uri_end..].iter().position(|&b| b == b'>')? + 1;
    }
    let params = &from[uri_end..];
    let mut out = Vec::with_capacity(from.len() + 48);
    write_display(&mut out, na, cid.name.as_deref());
    out.push(b'<');
    write_uri(&mut out, raw, uri.user(), cid.number.as_deref())?;
    out.push(b'>');
    Some((out, params))
}

/// The display name: the caller id's (quoted, escaped) or the PBX's as written.
fn write_display(out: &mut Vec<u8>, na: &NameAddr<'_>, name: Option<&str>) {
    match (name, na.display_name()) {
        (Some(name), _) => {
            out.push(b'"');
            for &b in name.as_bytes() {
                if b == b'"' || b == b'\\' {
                    out.push(b'\\');
                }
                out.push(b);
            }
            out.extend_from_slice(b"\" ");
        }
        (None, Some(d)) if na.display_name_is_quoted() => {
            out.push(b'"');
            out.extend_from_slice(d);
            out.extend_from_slice(b"\" ");
        }
        (None, Some(d)) => {
            out.extend_from_slice(d);
            out.push(b' ');
        }
        (None, None) => {}
    }
}

/// The URI with its user replaced by `number` (inserted when it has none).
fn write_uri(
    out: &mut Vec<u8>,
    raw: &[u8],
    user: Option<&[u8]>,
    number: Option<&str>,
) -> Option<()> {
    let Some(number) = number else {
        out.extend_from_slice(raw);
        return Some(());
    };
    match user {
        Some(user) => {
            let at = offset_in(raw, user)?;
            out.extend_from_slice(&raw[..at]);
            out.extend_from_slice(number.as_bytes());
            out.extend_from_slice(&raw[at + user.len()..]);
        }
        None => {
            let colon = raw.iter().position(|&b| b == b':')? + 1;
            out.extend_from_slice(&raw[..colon]);
            out.extend_from_slice(number.as_bytes());
            out.push(b'@');
            out.extend_from_slice(&raw[colon..]);
        }
    }
    Some(())
}

/// Where `inner` (a sub-slice of `outer`) starts in `outer`.
fn offset_in(outer: &[u8], inner: &[u8]) -> Option<usize> {
    let start = (inner.as_ptr() as usize).checked_sub(outer.as_ptr() as usize)?;
    (start + inner.len() <= outer.len()).then_some(start)
}

#[cfg(test)]
mod tests {
    use super::*;
    use trunkstore_sip::limits::Limits;
    use trunkstore_sip::parse::parse_datagram;

    fn msg(from: &str) -> Message {
        let text = format!(
            "INVITE sip:+14155551234@10.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5;branch=z9hG4bK1\r\n\
             From: {from}\r\nTo: <sip:+14155551234@10.0.0.1>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\
             Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        parse_datagram(Bytes::from(text), &Limits::default()).unwrap()
    }

    fn cid(name: Option<&str>, number: Option<&str>) -> CallerId {
        CallerId {
            name: name.map(String::from),
            number: number.map(String::from),
        }
    }

    #[test]
    fn name_and_number() {
        let m = msg("\"Ext 10\" <sip:1000@pbx.example.com;user=phone>;tag=abc");
        let id = identity_for(&m, &cid(Some("Acme \"Inc\""), Some("+14155550000"))).unwrap();
        assert_eq!(
            &id.rewritten[..],
            &b"\"Acme \\\"Inc\\\"\" <sip:+14155550000@pbx.example.com;user=phone>;tag=abc"[..]
        );
        assert_eq!(
            &id.asserted[..],
            &b"\"Acme \\\"Inc\\\"\" <sip:+14155550000@pbx.example.com;user=phone>"[..]
        );
        assert_eq!(&id.pbx_tag[..], b"abc");
    }

    #[test]
    fn one_part_only_and_bare_addr() {
        let m = msg("Ext <sip:1000@pbx>;tag=t1");
        let id = identity_for(&m, &cid(None, Some("+14155550000"))).unwrap();
        assert_eq!(&id.rewritten[..], &b"Ext <sip:+14155550000@pbx>;tag=t1"[..]);
        let id = identity_for(&m, &cid(Some("Acme"), None)).unwrap();
        assert_eq!(&id.rewritten[..], &b"\"Acme\" <sip:1000@pbx>;tag=t1"[..]);
        let m = msg("sip:pbx.example.com;tag=t2");
        let id = identity_for(&m, &cid(None, Some("+1"))).unwrap();
        assert_eq!(&id.rewritten[..], &b"<sip:+1@pbx.example.com>;tag=t2"[..]);
        assert!(identity_for(&m, &cid(None, None)).is_none());
    }
}
