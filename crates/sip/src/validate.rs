//! What a proxy must check before routing a request (RFC 3261 §16.3) or matching a
//! response, using the typed views. Pure functions over a parsed [`Message`]: they report
//! the status to answer with and never touch the message.
//!
//! Deliberately not checked: Require (only the UAS acts on it, §16.3 item 5 covers only
//! Proxy-Require), bodies, Date/Expires syntax (rfc4475 `baddate` is accepted liberally),
//! and header semantics that belong to a registrar.

use crate::error::Error;
use crate::headers::{call_id, max_forwards, option_tags, CSeq};
use crate::message::{HeaderName, Message};
use crate::nameaddr::{Contact, NameAddr};
use crate::scan::{split_list, trim_lws};
use crate::uri::Uri;
use crate::via::Via;

/// Why a message was refused, with the status of the response to send (a response that
/// fails validation is dropped instead).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection<'m> {
    /// Status code of the response to send.
    pub status: u16,
    /// Its reason phrase, naming what was wrong.
    pub reason: &'static str,
    /// For 420: the Proxy-Require option tags this proxy does not support, to list in
    /// an Unsupported header. Empty (and unallocated) otherwise.
    pub unsupported: Vec<&'m [u8]>,
}

impl<'m> Rejection<'m> {
    /// A rejection with no Unsupported tags.
    pub fn new(status: u16, reason: &'static str) -> Rejection<'m> {
        Rejection {
            status,
            reason,
            unsupported: Vec::new(),
        }
    }

    /// Value for the Unsupported header of a 420.
    pub fn unsupported_value(&self) -> Vec<u8> {
        self.unsupported.join(&b", "[..])
    }
}

impl From<Error> for Rejection<'_> {
    fn from(e: Error) -> Self {
        Rejection::new(e.status(), e.reason())
    }
}

/// Options for [`validate_request_with`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ValidateOptions<'a> {
    /// Option tags this proxy implements; any other tag in Proxy-Require gets a 420.
    pub proxy_supported: &'a [&'a [u8]],
}

/// [`validate_request_with`] for a proxy that supports no Proxy-Require extension.
pub fn validate_request(msg: &Message) -> Result<(), Rejection<'_>> {
    validate_request_with(msg, &ValidateOptions::default()).map(|_| ())
}

/// What [`validate_request_with`] parsed on its way, for the caller to read instead of
/// parsing it again.
#[derive(Debug, Clone, Copy)]
pub struct Checked<'m> {
    /// The topmost Via.
    pub top_via: Via<'m>,
    /// The Request-URI (sip, sips or tel).
    pub request_uri: Uri<'m>,
    /// The From header.
    pub from: NameAddr<'m>,
    /// The To header.
    pub to: NameAddr<'m>,
    /// The CSeq (its method is the request's).
    pub cseq: CSeq<'m>,
}

/// Checks a request before routing:
/// - Request-URI parses, scheme sip/sips/tel (else 416);
/// - Via, From, To, Call-ID, CSeq present; From, To, Call-ID, CSeq, Max-Forwards and
///   Content-Length at most once;
/// - every Via value, From, To, every Contact value and the Call-ID parse;
/// - CSeq number ≤ 2^31-1 and its method equal to the request method;
/// - Max-Forwards, if present, 0..=255, and 0 gives 483 (for OPTIONS the caller may answer
///   itself instead, §16.3 item 3). A missing Max-Forwards passes: §16.3 says so and
///   RFC 2543 peers (rfc4475 `inv2543`) omit it; the editor adds one when forwarding;
/// - Proxy-Require tags all in `opts.proxy_supported` (else 420 listing the others).
pub fn validate_request_with<'m>(
    msg: &'m Message,
    opts: &ValidateOptions<'_>,
) -> Result<Checked<'m>, Rejection<'m>> {
    let (request_uri, common, top_via) = check_head(msg)?;
    let from = NameAddr::parse(common.from).map_err(|_| Rejection::new(400, "Bad From"))?;
    let to = NameAddr::parse(common.to).map_err(|_| Rejection::new(400, "Bad To"))?;
    let cseq = check_cseq_and_hops(msg, &common)?;
    for v in msg.headers(HeaderName::Contact) {
        if is_one_bracketed_contact(v) {
            continue;
        }
        // The split itself: `contacts` would try the whole value again.
        for item in split_list(v) {
            Contact::parse(item.value).map_err(|_| Rejection::new(400, "Bad Contact"))?;
        }
    }
    check_proxy_require(msg, opts)?;
    Ok(Checked {
        top_via,
        request_uri,
        from,
        to,
        cseq,
    })
}

/// Checks an ACK the proxy relays (the ACK of a 2xx, end to end): an ACK is never
/// answered, and a proxy leaves what it does not read as it came (§16.3: other
/// components, well-formed or not, SHOULD be ignored and forwarded unchanged). So
/// [`validate_request`] without its From, To and Contact checks: the Request-URI, every
/// Via, the headers every request needs (present, single), the Call-ID, CSeq,
/// Max-Forwards and Proxy-Require. Returns the Request-URI, which routing reads next.
pub fn validate_relayed_ack(msg: &Message) -> Result<Uri<'_>, Rejection<'_>> {
    check_relayed_ack(msg).map(|a| a.request_uri)
}

/// What [`check_relayed_ack`] parsed on its way.
#[derive(Debug, Clone, Copy)]
pub struct RelayedAck<'m> {
    /// The Request-URI, which routing reads next.
    pub request_uri: Uri<'m>,
    /// The topmost Via (the first value of the first Via line), which the ACK's
    /// transaction key is made of: the caller need not parse it again.
    pub top_via: Via<'m>,
}

/// [`validate_relayed_ack`], handing back the top Via too.
pub fn check_relayed_ack(msg: &Message) -> Result<RelayedAck<'_>, Rejection<'_>> {
    let (request_uri, common, top_via) = check_head(msg)?;
    check_cseq_and_hops(msg, &common)?;
    check_proxy_require(msg, &ValidateOptions::default())?;
    Ok(RelayedAck {
        request_uri,
        top_via,
    })
}

/// A request, its Request-URI (sip, sips or tel: else 416), the headers every message
/// needs and every Via; returns the Request-URI, those headers and the top Via.
fn check_head(msg: &Message) -> Result<(Uri<'_>, Common<'_>, Via<'_>), Rejection<'_>> {
    if !msg.is_request() {
        return Err(Rejection::new(400, "not a request"));
    }
    let request_uri = Uri::parse(msg.request_uri()).map_err(|e| match e {
        Error::UnsupportedUriScheme => Rejection::from(e),
        _ => Rejection::new(400, "Bad Request-URI"),
    })?;
    let common = check_common(msg)?;
    let top_via = check_all_vias(msg)?;
    Ok((request_uri, common, top_via))
}

/// CSeq well formed and naming the request's method; Max-Forwards, if present, in range
/// and not 0 (483). Returns the CSeq.
fn check_cseq_and_hops<'m>(
    msg: &'m Message,
    common: &Common<'m>,
) -> Result<CSeq<'m>, Rejection<'m>> {
    let cseq = CSeq::parse(common.cseq)?;
    if cseq.method != msg.method_bytes() {
        return Err(Rejection::new(400, "CSeq method does not match request"));
    }
    if let Some(v) = common.max_forwards {
        if max_forwards(v)? == 0 {
            return Err(Rejection::new(483, "Too Many Hops"));
        }
    }
    Ok(cseq)
}

/// Checks a response before matching it to a transaction: Via, From, To, Call-ID and
/// CSeq present, all but Via single; the top Via (matching, §17.1.3), the Call-ID and
/// the CSeq well formed. A failing response is dropped (§18.1.2).
///
/// A proxy relays the rest of a response as it came (§16.7), so unlike a request's,
/// its From and To and lower Vias are not parsed here: each response costs two URI
/// parses less. Whoever reads one of them (the To tag of a 2xx, the next Via of a
/// stateless relay) parses it then and copes with a malformed value.
///
/// Returns the top Via, which matching reads next.
pub fn validate_response(msg: &Message) -> Result<Via<'_>, Rejection<'_>> {
    check_response(msg).map(|r| r.top_via)
}

/// What [`check_response`] parsed on its way.
#[derive(Debug, Clone, Copy)]
pub struct CheckedResponse<'m> {
    /// The topmost Via, which matching reads.
    pub top_via: Via<'m>,
    /// The CSeq (a CANCEL's response is matched to the CANCEL's transaction).
    pub cseq: CSeq<'m>,
}

/// [`validate_response`], handing back the CSeq too.
pub fn check_response(msg: &Message) -> Result<CheckedResponse<'_>, Rejection<'_>> {
    if msg.is_request() {
        return Err(Rejection::new(400, "not a response"));
    }
    let common = check_common(msg)?;
    let top = match Via::parse(common.top_via) {
        // The whole line is one Via (see `one_via`): the list's first value.
        Ok(via) => via,
        // The split itself: `vias` would try the whole line again.
        Err(_) => match split_list(common.top_via)
            .next()
            .map(|i| Via::parse(i.value))
        {
            Some(Ok(via)) => via,
            _ => return Err(Rejection::new(400, "Bad Via")),
        },
    };
    let cseq = CSeq::parse(common.cseq)?;
    Ok(CheckedResponse { top_via: top, cseq })
}

/// Values [`check_common`] found on its pass over the header index, so the callers need
/// not look them up again.
struct Common<'m> {
    top_via: &'m [u8],
    from: &'m [u8],
    to: &'m [u8],
    cseq: &'m [u8],
    max_forwards: Option<&'m [u8]>,
}

/// [`check_common`]'s slot of each header kind (by `HeaderName as u8`): Via, From, To,
/// Call-ID, CSeq, Max-Forwards, Content-Length are 0 to 6, any other kind `NO_SLOT`.
static SLOT_OF_KIND: [u8; 256] = {
    const KINDS: [HeaderName; 7] = [
        HeaderName::Via,
        HeaderName::From,
        HeaderName::To,
        HeaderName::CallId,
        HeaderName::CSeq,
        HeaderName::MaxForwards,
        HeaderName::ContentLength,
    ];
    let mut t = [NO_SLOT; 256];
    let mut i = 0;
    while i < KINDS.len() {
        t[KINDS[i] as usize] = i as u8;
        i += 1;
    }
    t
};

const NO_SLOT: u8 = u8::MAX;

/// Presence and uniqueness of the headers every message needs, and the Call-ID's syntax.
fn check_common(msg: &Message) -> Result<Common<'_>, Rejection<'_>> {
    const REQUIRED: [(HeaderName, &str); 5] = [
        (HeaderName::Via, "Missing Via"),
        (HeaderName::From, "Missing From"),
        (HeaderName::To, "Missing To"),
        (HeaderName::CallId, "Missing Call-ID"),
        (HeaderName::CSeq, "Missing CSeq"),
    ];
    const SINGLE: [(HeaderName, &str); 6] = [
        (HeaderName::From, "Multiple From"),
        (HeaderName::To, "Multiple To"),
        (HeaderName::CallId, "Multiple Call-ID"),
        (HeaderName::CSeq, "Multiple CSeq"),
        (HeaderName::MaxForwards, "Multiple Max-Forwards"),
        (HeaderName::ContentLength, "Multiple Content-Length"),
    ];
    // One pass over the index counts everything the two tables ask about and keeps the
    // first value of each.
    let mut counts = [0u32; 7];
    let mut first: [&[u8]; 7] = [b""; 7];
    for f in msg.fields() {
        // One table load instead of a compare chain per line.
        let slot = usize::from(SLOT_OF_KIND[f.kind as usize]);
        let Some(count) = counts.get_mut(slot) else {
            continue;
        };
        if *count == 0 {
            first[slot] = f.value;
        }
        *count += 1;
    }
    for (i, (_, why)) in REQUIRED.iter().enumerate() {
        if counts[i] == 0 {
            return Err(Rejection::new(400, why));
        }
    }
    for (i, (_, why)) in SINGLE.iter().enumerate() {
        if counts[i + 1] > 1 {
            return Err(Rejection::new(400, why));
        }
    }
    call_id(first[3]).map_err(|_| Rejection::new(400, "Bad Call-ID"))?;
    Ok(Common {
        top_via: first[0],
        from: first[1],
        to: first[2],
        cseq: first[4],
        max_forwards: (counts[5] > 0).then_some(first[5]),
    })
}

/// Every Via value of every Via line parses; returns the top one.
fn check_all_vias(msg: &Message) -> Result<Via<'_>, Rejection<'_>> {
    let mut top = None;
    for v in msg.headers(HeaderName::Via) {
        if let Some(via) = one_via(v) {
            top.get_or_insert(via);
            continue;
        }
        // The split itself: `vias` would try the whole line again.
        for item in split_list(v) {
            let via = Via::parse(item.value).map_err(|_| Rejection::new(400, "Bad Via"))?;
            top.get_or_insert(via);
        }
    }
    top.ok_or(Rejection::new(400, "Bad Via"))
}

/// A Via header line holding a single value that parses, read without the list split.
/// Where the whole line parses as one Via the split finds no second value: a separating
/// comma (or a `<`) can only sit inside a quoted parameter value in a Via that parses,
/// and the split skips quoted strings too; both trim the same LWS. `None` sends the line
/// through the split, which gives the verdict on every value.
#[inline]
fn one_via(line: &[u8]) -> Option<Via<'_>> {
    Via::parse(line).ok()
}

/// A Contact line holding a single `<addr-spec>` value (with or without parameters) that
/// parses, checked without the list split. Limited to values starting with `<`: there
/// the only commas and `<` a parsing value can hold sit inside the brackets or inside
/// quoted parameter values, which the split skips too. (A bare addr-spec may hold a
/// comma in its user part, which the split cuts at.) False sends the line through the
/// split, which gives the verdict.
#[inline]
fn is_one_bracketed_contact(line: &[u8]) -> bool {
    let v = trim_lws(line);
    v.first() == Some(&b'<') && NameAddr::parse(v).is_ok()
}

fn check_proxy_require<'m>(
    msg: &'m Message,
    opts: &ValidateOptions<'_>,
) -> Result<(), Rejection<'m>> {
    let mut rejection: Option<Rejection<'m>> = None;
    for v in msg.headers(HeaderName::ProxyRequire) {
        for tag in option_tags(v) {
            let tag = tag.map_err(|_| Rejection::new(400, "Bad Proxy-Require"))?;
            let known = opts
                .proxy_supported
                .iter()
                .any(|s| s.eq_ignore_ascii_case(tag));
            if !known {
                rejection
                    .get_or_insert_with(|| Rejection::new(420, "Bad Extension"))
                    .unsupported
                    .push(tag);
            }
        }
    }
    rejection.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Limits;
    use crate::nameaddr::contacts;
    use crate::parse::parse_datagram;
    use crate::via::vias;
    use bytes::Bytes;

    fn parse(s: &str) -> Message {
        parse_datagram(Bytes::copy_from_slice(s.as_bytes()), &Limits::default()).unwrap()
    }

    const OK: &str = "INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
Max-Forwards: 70\r\n\
To: <sip:bob@example.com>\r\n\
From: <sip:alice@example.com>;tag=1\r\n\
Call-ID: abc@host\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:alice@192.0.2.1>\r\n\
\r\n";

    fn status(s: &str) -> u16 {
        match validate_request(&parse(s)) {
            Ok(()) => 200,
            Err(r) => r.status,
        }
    }

    fn with(header: &str, value: &str) -> String {
        OK.lines()
            .map(|l| {
                if l.split(':').next() == Some(header) {
                    if value.is_empty() {
                        String::new()
                    } else {
                        format!("{header}: {value}\r\n")
                    }
                } else {
                    format!("{l}\r\n")
                }
            })
            .collect()
    }

    /// The single-value shortcuts agree with the list split wherever they answer.
    fn shortcuts_agree(line: &[u8]) {
        if let Some(via) = one_via(line) {
            let all: Vec<_> = vias(line).collect();
            assert_eq!(all.len(), 1, "{:?}", String::from_utf8_lossy(line));
            assert_eq!(all[0].as_ref().map(|(v, _)| *v), Ok(via));
        }
        if is_one_bracketed_contact(line) {
            let all: Vec<_> = contacts(line).collect();
            assert_eq!(all.len(), 1, "{:?}", String::from_utf8_lossy(line));
            assert!(all[0].is_ok(), "{:?}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn single_value_shortcuts() {
        for line in [
            &b"SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1-1-0"[..],
            b"SIP/2.0/UDP h;branch=z9hG4bK1, SIP/2.0/UDP h2;branch=z9hG4bK2",
            b"SIP/2.0/UDP h;x=\"a,b\";branch=z9hG4bK1",
            b"SIP/2.0/UDP h;x=\"a,b\", SIP/2.0/UDP h2",
            b" SIP/2.0/UDP h , ",
            b"<sip:sipp@127.0.0.1:5070;transport=UDP>",
            b"<sip:a,b@h>;q=0.5",
            b"<sip:a@h>, <sip:b@h>",
            b"<sip:a@h>;p=\"x,<y\"",
            b"<sip:a@h>;p=\"x\", <sip:b@h>",
            b"sip:a,b@h",
        ] {
            shortcuts_agree(line);
        }
        assert!(one_via(b"SIP/2.0/UDP h;branch=z9hG4bK1, SIP/2.0/UDP h2").is_none());
        assert!(!is_one_bracketed_contact(b"<sip:a@h>, <sip:b@h>"));
        assert!(is_one_bracketed_contact(b"<sip:a,b@h>;q=0.5"));
    }

    proptest::proptest! {
        #[test]
        fn single_value_shortcuts_agree_with_the_split(
            tail in proptest::collection::vec(
                proptest::sample::select(b"ab1.;=,\" <>@:\\".to_vec()), 0..20),
            head in proptest::sample::select(vec![&b"SIP/2.0/UDP h"[..], b"<sip:a@h", b"<", b""]),
        ) {
            let mut line = head.to_vec();
            line.extend_from_slice(&tail);
            shortcuts_agree(&line);
        }
    }

    #[test]
    fn check_common_slots() {
        use HeaderName::*;
        let wanted = [Via, From, To, CallId, CSeq, MaxForwards, ContentLength];
        for (i, k) in wanted.iter().enumerate() {
            assert_eq!(usize::from(SLOT_OF_KIND[*k as usize]), i, "{k:?}");
        }
        let slotted = HeaderName::ALL
            .iter()
            .chain([&Other])
            .filter(|&&k| SLOT_OF_KIND[k as usize] != NO_SLOT)
            .count();
        assert_eq!(slotted, wanted.len());
    }

    #[test]
    fn a_good_request_passes() {
        assert_eq!(status(OK), 200);
    }

    #[test]
    fn missing_headers() {
        for h in ["Via", "To", "From", "Call-ID", "CSeq"] {
            assert_eq!(status(&with(h, "")), 400, "{h}");
        }
        assert_eq!(status(&with("Max-Forwards", "")), 200);
    }

    #[test]
    fn duplicate_single_headers() {
        let dup = OK.replace("CSeq: 1 INVITE\r\n", "CSeq: 1 INVITE\r\nCSeq: 2 INVITE\r\n");
        let m = parse(&dup);
        let r = validate_request(&m).unwrap_err();
        assert_eq!((r.status, r.reason), (400, "Multiple CSeq"));
        let two_vias = OK.replace("Via:", "Via: SIP/2.0/TCP h;branch=z9hG4bK2\r\nVia:");
        assert_eq!(status(&two_vias), 200);
    }

    #[test]
    fn request_uri_and_scheme() {
        let unk = OK.replace("sip:bob@example.com SIP", "foo:bar SIP");
        assert_eq!(status(&unk), 416);
        let bad = OK.replace("sip:bob@example.com SIP", "<sip:bob@example.com> SIP");
        assert_eq!(status(&bad), 400);
        let tel = OK.replace("sip:bob@example.com SIP", "tel:+15551234 SIP");
        assert_eq!(status(&tel), 200);
    }

    #[test]
    fn cseq_checks() {
        assert_eq!(status(&with("CSeq", "1 BYE")), 400);
        assert_eq!(status(&with("CSeq", "1 invite")), 400);
        assert_eq!(status(&with("CSeq", "2147483647 INVITE")), 200);
        assert_eq!(status(&with("CSeq", "2147483648 INVITE")), 400);
        assert_eq!(status(&with("CSeq", "INVITE")), 400);
    }

    #[test]
    fn max_forwards_checks() {
        assert_eq!(status(&with("Max-Forwards", "0")), 483);
        assert_eq!(status(&with("Max-Forwards", "255")), 200);
        assert_eq!(status(&with("Max-Forwards", "256")), 400);
        assert_eq!(status(&with("Max-Forwards", "-1")), 400);
        assert_eq!(status(&with("Max-Forwards", "ten")), 400);
    }

    #[test]
    fn address_headers() {
        assert_eq!(status(&with("To", "\"unbalanced <sip:a@b>")), 400);
        assert_eq!(
            status(&with("From", "Bell, Alexander <sip:a@b>;tag=1")),
            400
        );
        assert_eq!(status(&with("Via", "SIP/2.0/UDP host;;,")), 400);
        assert_eq!(status(&with("Contact", "sip:a@b?Route=x")), 400);
        assert_eq!(status(&with("Contact", "*")), 200);
        assert_eq!(status(&with("Call-ID", "a b")), 400);
    }

    #[test]
    fn proxy_require_gives_420_with_tags() {
        let s = OK.replace(
            "Contact:",
            "Require: ignored\r\nProxy-Require: foo, bar\r\nProxy-Require: baz\r\nContact:",
        );
        let m = parse(&s);
        let r = validate_request(&m).unwrap_err();
        assert_eq!(r.status, 420);
        assert_eq!(r.unsupported, vec![&b"foo"[..], b"bar", b"baz"]);
        assert_eq!(r.unsupported_value(), b"foo, bar, baz");
        let opts = ValidateOptions {
            proxy_supported: &[b"FOO", b"bar"],
        };
        let r = validate_request_with(&m, &opts).unwrap_err();
        assert_eq!(r.unsupported, vec![&b"baz"[..]]);
        let opts = ValidateOptions {
            proxy_supported: &[b"foo", b"bar", b"baz"],
        };
        assert!(validate_request_with(&m, &opts).is_ok());
    }

    #[test]
    fn a_relayed_ack_is_checked_for_what_relaying_reads() {
        let ack = |from: &str, extra: &str| {
            parse(&format!(
                "ACK sip:b@10.0.0.2 SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
From: {from};tag=1\r\nTo: <sip:b@x>;tag=2\r\nCall-ID: c\r\nCSeq: 1 ACK\r\n{extra}\r\n"
            ))
        };
        let good = ack("<sip:a@x>", "");
        assert_eq!(
            validate_relayed_ack(&good).unwrap().as_bytes(),
            b"sip:b@10.0.0.2"
        );
        // Relayed as it came, though a request answered by the proxy would get a 400.
        let odd = ack("<sip:a@x@>", "Contact: <sip:@>\r\n");
        assert!(validate_relayed_ack(&odd).is_ok());
        assert_eq!(validate_request(&odd).unwrap_err().reason, "Bad From");
        // What relaying reads is still checked.
        let bad_via = ack("<sip:a@x>", "Via: SIP/2.0/UDP h h\r\n");
        assert_eq!(
            validate_relayed_ack(&bad_via).unwrap_err().reason,
            "Bad Via"
        );
        let hops = ack("<sip:a@x>", "Max-Forwards: 0\r\n");
        assert_eq!(validate_relayed_ack(&hops).unwrap_err().status, 483);
        let cseq =
            parse(&String::from_utf8_lossy(good.bytes()).replace("CSeq: 1 ACK", "CSeq: 1 INVITE"));
        assert_eq!(validate_relayed_ack(&cseq).unwrap_err().status, 400);
    }

    #[test]
    fn what_validation_parsed_comes_back() {
        let m = parse(&OK.replace("Via:", "Via: SIP/2.0/TCP top;branch=z9hG4bKtop\r\nVia:"));
        let c = validate_request_with(&m, &ValidateOptions::default()).unwrap();
        assert_eq!((c.cseq.seq, c.cseq.method), (1, &b"INVITE"[..]));
        assert_eq!(c.top_via.branch(), Some(&b"z9hG4bKtop"[..]));
        let ack = parse(
            "ACK sip:b@10.0.0.2 SIP/2.0\r\nVia: SIP/2.0/UDP h1;branch=z9hG4bK1, \
SIP/2.0/UDP h2;branch=z9hG4bK2\r\nVia: SIP/2.0/UDP h3;branch=z9hG4bK3\r\n\
From: <sip:a@x>;tag=1\r\nTo: <sip:b@x>;tag=2\r\nCall-ID: c\r\nCSeq: 7 ACK\r\n\r\n",
        );
        let a = check_relayed_ack(&ack).unwrap();
        // The top Via is the first value of the first line, as a fresh parse finds it.
        let first = vias(ack.header(HeaderName::Via).unwrap()).next();
        assert_eq!(Some(a.top_via), first.and_then(|r| r.ok()).map(|(v, _)| v));
        assert_eq!(a.request_uri.as_bytes(), b"sip:b@10.0.0.2");
        // A lower Via that does not parse still fails the whole check.
        let bad_lower =
            parse(&String::from_utf8_lossy(ack.bytes()).replace("UDP h3;", "UDP h3 h3;"));
        assert_eq!(check_relayed_ack(&bad_lower).unwrap_err().reason, "Bad Via");
        let r = parse(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n\
To: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 3 CANCEL\r\n\r\n",
        );
        let c = check_response(&r).unwrap();
        assert_eq!((c.cseq.seq, c.cseq.method), (3, &b"CANCEL"[..]));
        assert_eq!(c.top_via.branch(), Some(&b"z9hG4bK1"[..]));
    }

    #[test]
    fn responses() {
        let r = parse(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n\
To: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n\r\n",
        );
        let top = validate_response(&r).expect("valid");
        assert_eq!(
            top.branch(),
            Some(&b"z9hG4bK1"[..]),
            "the top Via comes back"
        );
        assert_eq!(validate_request(&r).unwrap_err().status, 400);
        let big = parse(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n\
To: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 9292394834772304023312 OPTIONS\r\n\r\n",
        );
        assert!(validate_response(&big).is_err());
        assert!(validate_response(&parse(OK)).is_err());
        // Relayed as it came: only what matching reads must be well formed.
        let text = String::from_utf8_lossy(r.bytes()).into_owned();
        let odd_from = text.replace("<sip:a@b>", "<sip:a@b@>");
        let as_request = odd_from.replace("SIP/2.0 200 OK", "INVITE sip:x@y SIP/2.0");
        assert_eq!(
            validate_request(&parse(&as_request)).unwrap_err().reason,
            "Bad From"
        );
        assert!(validate_response(&parse(&odd_from)).is_ok());
        let bad_top_via = text.replace("UDP h;", "UDP h h;");
        assert_eq!(
            validate_response(&parse(&bad_top_via)).unwrap_err().reason,
            "Bad Via"
        );
        let no_to = text.replace("To: <sip:c@d>;tag=2\r\n", "");
        assert_eq!(
            validate_response(&parse(&no_to)).unwrap_err().reason,
            "Missing To"
        );
    }
}
