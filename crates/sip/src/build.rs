//! Messages the proxy generates itself: responses to a request (RFC 3261 §8.2.6), CANCEL
//! (§9.1), the ACK for a non-2xx final response (§17.1.1.3), and requests inside the
//! dialog a 2xx set up (§12.1.2, §12.2.1.1: the ACK of a 2xx, a BYE).
//!
//! Each builder runs its writer twice, once counting and once writing, so the output is
//! one allocation of exactly the right size. Header values are copied verbatim from the
//! messages they come from (folds included: CRLF+WS is valid LWS on the wire).

use bytes::{BufMut, Bytes, BytesMut};

use crate::edit::{decimal_len, put_decimal};
use crate::error::Error;
use crate::message::{HeaderName, Message, Method};
use crate::nameaddr::{contacts, header_params, name_addrs, NameAddr};
use crate::scan::split_list;
use crate::uri::Uri;

/// What to put in a response besides the headers copied from the request.
#[derive(Debug, Clone, Copy, Default)]
pub struct ResponseOptions<'a> {
    /// Tag to add to To if the request's To has none (§8.2.6.2). Leave `None` for 100.
    pub to_tag: Option<&'a [u8]>,
    /// Extra header lines, `(name, value)`, e.g. Unsupported, Proxy-Authenticate, Allow,
    /// Reason, Contact, Warning, Retry-After.
    pub headers: &'a [(&'a [u8], &'a [u8])],
    /// Body and its Content-Type.
    pub body: Option<(&'a [u8], &'a [u8])>,
}

/// Builds a response to `req`: Via lines in order, From, To (with `to_tag` added if it has
/// no tag), Call-ID, CSeq, a Timestamp on 100 (§8.2.6.1), the extra headers, and
/// Content-Length. Headers missing from the request are left out, so a 400 can still be
/// sent for a request that lacks them. `reason` is written as given.
pub fn response(
    req: &Message,
    code: u16,
    reason: &[u8],
    opts: &ResponseOptions<'_>,
) -> Result<Bytes, Error> {
    if !req.is_request() {
        return Err(Error::BadSyntax("response to a response"));
    }
    if !(100..=699).contains(&code) {
        return Err(Error::BadSyntax("invalid status code"));
    }
    Ok(build(|w| write_response(w, req, code, reason, opts)))
}

/// CANCEL for a request this proxy sent (§9.1): same Request-URI, the top Via value only,
/// Route lines, Call-ID, From, To, CSeq number with method CANCEL, Max-Forwards 70.
pub fn cancel(req: &Message) -> Result<Bytes, Error> {
    if matches!(
        req.method(),
        None | Some(Method::Ack) | Some(Method::Cancel)
    ) {
        return Err(Error::BadSyntax("request cannot be cancelled"));
    }
    let parts = Parts::of(req)?;
    Ok(build(|w| {
        write_in_dialog_request(w, req, b"CANCEL", &parts, parts.to);
    }))
}

/// ACK for a non-2xx final response to an INVITE (§17.1.1.3): Request-URI, top Via,
/// From, Call-ID and Route of the INVITE, To of the response (it carries the tag), CSeq
/// number with method ACK, Max-Forwards 70.
pub fn ack_for_non_2xx(invite: &Message, resp: &Message) -> Result<Bytes, Error> {
    if invite.method() != Some(Method::Invite) {
        return Err(Error::BadSyntax("ACK is only for INVITE"));
    }
    if !matches!(resp.status(), Some(c) if c >= 300) {
        return Err(Error::BadSyntax("ACK here is for non-2xx final responses"));
    }
    let parts = Parts::of(invite)?;
    let to = resp
        .header(HeaderName::To)
        .ok_or(Error::BadSyntax("missing To"))?;
    Ok(build(|w| {
        write_in_dialog_request(w, invite, b"ACK", &parts, to)
    }))
}

/// Where requests inside the dialog of a 2xx to our INVITE go (RFC 3261 §12.1.2): the
/// remote target (the 2xx's Contact URI) and the route set.
///
/// The route set is the 2xx's Record-Route in reverse order, minus the entries that were
/// already in the INVITE as we sent it: those are ours and the upstream elements', which
/// a request we send towards the callee must not visit (a UAS copies the request's
/// Record-Route into its 2xx in order, so the entries added downstream of us are the
/// first `2xx count − INVITE count`).
#[derive(Debug, Clone)]
pub struct DialogRoute<'m> {
    /// The remote target: the 2xx's first Contact URI (the INVITE's Request-URI when the
    /// 2xx has none, where the INVITE went).
    pub target: &'m [u8],
    /// Route set values (name-addrs as received), first hop first.
    pub routes: Vec<NameAddr<'m>>,
}

impl<'m> DialogRoute<'m> {
    /// The route of the dialog `resp` (a 2xx) set up for `invite` (the INVITE as sent).
    pub fn of(invite: &'m Message, resp: &'m Message) -> Result<DialogRoute<'m>, Error> {
        if !matches!(resp.status(), Some(200..=299)) {
            return Err(Error::BadSyntax("a dialog route comes from a 2xx"));
        }
        let theirs = record_route(resp)?;
        let ours = record_route(invite)?.len();
        let added = theirs.len().saturating_sub(ours);
        let routes = theirs.into_iter().take(added).rev().collect();
        let target = match resp.header(HeaderName::Contact) {
            Some(v) => contacts(v)
                .next()
                .ok_or(Error::BadSyntax("empty Contact"))??
                .0
                .addr()
                .ok_or(Error::BadSyntax("Contact * in a 2xx"))?
                .uri()
                .as_bytes(),
            None => invite.request_uri(),
        };
        Ok(DialogRoute { target, routes })
    }

    /// Does the first route loose-route (`;lr`, §16.12)? A strict router takes the
    /// request with its own URI as Request-URI (§12.2.1.1).
    fn strict(&self) -> bool {
        self.routes
            .first()
            .is_some_and(|r| !r.sip_uri().is_some_and(Uri::has_lr))
    }

    /// The URI the request is sent to first: the first route's, else the remote target.
    pub fn next_hop(&self) -> Result<Uri<'m>, Error> {
        match self.routes.first() {
            Some(r) => r
                .sip_uri()
                .copied()
                .ok_or(Error::BadSyntax("Record-Route is not a SIP URI")),
            None => Uri::parse_in_header(self.target),
        }
    }
}

/// A header `m` must have.
fn get<'m>(m: &'m Message, h: HeaderName, what: &'static str) -> Result<&'m [u8], Error> {
    m.header(h).ok_or(Error::BadSyntax(what))
}

/// Every Record-Route entry of `m`, top first.
fn record_route(m: &Message) -> Result<Vec<NameAddr<'_>>, Error> {
    let mut out = Vec::new();
    for line in m.headers(HeaderName::RecordRoute) {
        for item in name_addrs(line) {
            out.push(item?.0);
        }
    }
    Ok(out)
}

/// A request inside the dialog the 2xx `resp` set up for `invite` (the INVITE as we sent
/// it), per RFC 3261 §12.2.1.1: Request-URI the remote target and Route the route set
/// (a strict first route: Request-URI that route, Route the others then the target),
/// our `via` as the only Via, From and Call-ID of the INVITE, To of the 2xx (its tag),
/// CSeq `cseq method`. For the ACK of the 2xx, `cseq` is the INVITE's (§13.2.2.4); for
/// a BYE, the next number (§12.2.1.1).
pub fn in_dialog(
    invite: &Message,
    resp: &Message,
    route: &DialogRoute<'_>,
    method: &[u8],
    cseq: u32,
    via: &[u8],
) -> Result<Bytes, Error> {
    if invite.method() != Some(Method::Invite) {
        return Err(Error::BadSyntax("a dialog is set up by an INVITE"));
    }
    if !matches!(resp.status(), Some(200..=299)) {
        return Err(Error::BadSyntax("a dialog is set up by a 2xx"));
    }
    let from = get(invite, HeaderName::From, "missing From")?;
    let call_id = get(invite, HeaderName::CallId, "missing Call-ID")?;
    let to = get(resp, HeaderName::To, "missing To")?;
    let (ruri, skip) = match route.routes.first().filter(|_| route.strict()) {
        Some(first) => (first.uri().as_bytes(), 1),
        None => (route.target, 0),
    };
    let routes = &route.routes[skip..];
    let strict = skip == 1;
    Ok(build(|w| {
        w.put(method);
        w.put(b" ");
        w.put(ruri);
        w.put(b" SIP/2.0\r\n");
        header(w, b"Via", via);
        w.put(b"Max-Forwards: 70\r\n");
        for r in routes {
            w.put(b"Route: <");
            w.put(r.uri().as_bytes());
            w.put(b">\r\n");
        }
        if strict {
            w.put(b"Route: <");
            w.put(route.target);
            w.put(b">\r\n");
        }
        header(w, b"From", from);
        header(w, b"To", to);
        header(w, b"Call-ID", call_id);
        w.put(b"CSeq: ");
        w.num(cseq);
        w.put(b" ");
        w.put(method);
        w.put(b"\r\nContent-Length: 0\r\n\r\n");
    }))
}

/// Pieces of a request that CANCEL and ACK copy.
struct Parts<'m> {
    top_via: &'m [u8],
    from: &'m [u8],
    to: &'m [u8],
    call_id: &'m [u8],
    cseq: u32,
}

impl<'m> Parts<'m> {
    fn of(req: &'m Message) -> Result<Parts<'m>, Error> {
        let via = req
            .header(HeaderName::Via)
            .ok_or(Error::BadSyntax("missing Via"))?;
        let top_via = split_list(via)
            .next()
            .map(|i| i.value)
            .filter(|v| !v.is_empty())
            .ok_or(Error::BadSyntax("empty Via"))?;
        let get = |h: HeaderName, what| req.header(h).ok_or(Error::BadSyntax(what));
        let cseq = cseq_number(get(HeaderName::CSeq, "missing CSeq")?)
            .ok_or(Error::BadSyntax("invalid CSeq"))?;
        Ok(Parts {
            top_via,
            from: get(HeaderName::From, "missing From")?,
            to: get(HeaderName::To, "missing To")?,
            call_id: get(HeaderName::CallId, "missing Call-ID")?,
            cseq,
        })
    }
}

/// The sequence number of a CSeq value (`1*DIGIT LWS Method`), 32 bits per §8.1.1.5.
fn cseq_number(v: &[u8]) -> Option<u32> {
    let v = v.trim_ascii_start();
    let end = v
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(v.len());
    let digits = v.get(..end)?;
    if digits.is_empty() || digits.len() > 10 {
        return None;
    }
    digits.iter().try_fold(0u32, |n, &d| {
        n.checked_mul(10)?.checked_add((d - b'0') as u32)
    })
}

/// Destination of a builder: counting first, then writing.
trait Sink {
    fn put(&mut self, b: &[u8]);
    fn num(&mut self, n: u32);
}

struct Counter(usize);

impl Sink for Counter {
    fn put(&mut self, b: &[u8]) {
        self.0 += b.len();
    }
    fn num(&mut self, n: u32) {
        self.0 += decimal_len(n);
    }
}

impl Sink for BytesMut {
    fn put(&mut self, b: &[u8]) {
        self.put_slice(b);
    }
    fn num(&mut self, n: u32) {
        put_decimal(self, n);
    }
}

fn build(write: impl Fn(&mut dyn Sink)) -> Bytes {
    let mut c = Counter(0);
    write(&mut c);
    let mut out = BytesMut::with_capacity(c.0);
    write(&mut out);
    out.freeze()
}

fn header(w: &mut dyn Sink, name: &[u8], value: &[u8]) {
    w.put(name);
    w.put(b": ");
    w.put(value);
    w.put(b"\r\n");
}

fn write_response(
    w: &mut dyn Sink,
    req: &Message,
    code: u16,
    reason: &[u8],
    opts: &ResponseOptions<'_>,
) {
    w.put(b"SIP/2.0 ");
    w.num(code as u32);
    w.put(b" ");
    w.put(reason);
    w.put(b"\r\n");
    for v in req.headers(HeaderName::Via) {
        header(w, b"Via", v);
    }
    if let Some(v) = req.header(HeaderName::From) {
        header(w, b"From", v);
    }
    if let Some(v) = req.header(HeaderName::To) {
        w.put(b"To: ");
        w.put(v);
        if let Some(tag) = opts.to_tag.filter(|_| !has_tag(v)) {
            w.put(b";tag=");
            w.put(tag);
        }
        w.put(b"\r\n");
    }
    if let Some(v) = req.header(HeaderName::CallId) {
        header(w, b"Call-ID", v);
    }
    if let Some(v) = req.header(HeaderName::CSeq) {
        header(w, b"CSeq", v);
    }
    if code == 100 {
        if let Some(v) = req.header(HeaderName::Timestamp) {
            header(w, b"Timestamp", v);
        }
    }
    for (name, value) in opts.headers {
        header(w, name, value);
    }
    let body = match opts.body {
        Some((ctype, body)) => {
            header(w, b"Content-Type", ctype);
            body
        }
        None => b"",
    };
    w.put(b"Content-Length: ");
    w.num(u32::try_from(body.len()).unwrap_or(u32::MAX));
    w.put(b"\r\n\r\n");
    w.put(body);
}

/// Does a From/To value carry a tag? Falls back to a plain search when the value does not
/// parse, so a garbage To never gets a second tag appended after its first.
fn has_tag(v: &[u8]) -> bool {
    match header_params(v) {
        Some(p) => p.value(b"tag").is_some(),
        None => v.windows(4).any(|w| w.eq_ignore_ascii_case(b"tag=")),
    }
}

fn write_in_dialog_request(
    w: &mut dyn Sink,
    req: &Message,
    method: &[u8],
    p: &Parts<'_>,
    to: &[u8],
) {
    w.put(method);
    w.put(b" ");
    w.put(req.request_uri());
    w.put(b" SIP/2.0\r\n");
    header(w, b"Via", p.top_via);
    w.put(b"Max-Forwards: 70\r\n");
    for r in req.headers(HeaderName::Route) {
        header(w, b"Route", r);
    }
    header(w, b"From", p.from);
    header(w, b"To", to);
    header(w, b"Call-ID", p.call_id);
    w.put(b"CSeq: ");
    w.num(p.cseq);
    w.put(b" ");
    w.put(method);
    w.put(b"\r\nContent-Length: 0\r\n\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Limits;
    use crate::parse::parse_datagram;

    fn parse(s: &[u8]) -> Message {
        parse_datagram(Bytes::copy_from_slice(s), &Limits::default()).unwrap()
    }

    const INVITE: &[u8] = b"INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bKp, SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
v: SIP/2.0/TCP 192.0.2.9;branch=z9hG4bK0\r\n\
Max-Forwards: 69\r\n\
Route: <sip:p1.example.com;lr>\r\n\
Route: <sip:p2.example.com;lr>\r\n\
t: <sip:bob@example.com>\r\n\
From: \"Alice\" <sip:alice@example.com>;tag=1\r\n\
i: abc@host\r\n\
CSeq: 4711 INVITE\r\n\
Timestamp: 54\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n";

    #[test]
    fn response_copies_the_right_headers() {
        let req = parse(INVITE);
        let hdrs: &[(&[u8], &[u8])] = &[(b"Allow", b"INVITE, ACK"), (b"Reason", b"Q.850;cause=16")];
        let opts = ResponseOptions {
            to_tag: Some(b"xyz"),
            headers: hdrs,
            body: None,
        };
        let r = response(&req, 486, b"Busy Here", &opts).unwrap();
        let expected = b"SIP/2.0 486 Busy Here\r\n\
Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bKp, SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
Via: SIP/2.0/TCP 192.0.2.9;branch=z9hG4bK0\r\n\
From: \"Alice\" <sip:alice@example.com>;tag=1\r\n\
To: <sip:bob@example.com>;tag=xyz\r\n\
Call-ID: abc@host\r\n\
CSeq: 4711 INVITE\r\n\
Allow: INVITE, ACK\r\n\
Reason: Q.850;cause=16\r\n\
Content-Length: 0\r\n\r\n";
        assert_eq!(
            String::from_utf8_lossy(&r),
            String::from_utf8_lossy(expected)
        );
        assert_eq!(r.len(), expected.len());
    }

    #[test]
    fn trying_keeps_timestamp_and_no_tag() {
        let req = parse(INVITE);
        let r = parse(&response(&req, 100, b"Trying", &ResponseOptions::default()).unwrap());
        assert_eq!(r.status(), Some(100));
        assert_eq!(r.header(HeaderName::Timestamp), Some(&b"54"[..]));
        assert_eq!(
            r.header(HeaderName::To),
            Some(&b"<sip:bob@example.com>"[..])
        );
        assert_eq!(r.body(), b"");
    }

    #[test]
    fn existing_to_tag_is_kept() {
        let req = parse(b"BYE sip:a SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nTo: <sip:a>;tag=old\r\n\r\n");
        let opts = ResponseOptions {
            to_tag: Some(b"new"),
            ..Default::default()
        };
        let r = parse(&response(&req, 200, b"OK", &opts).unwrap());
        assert_eq!(r.header(HeaderName::To), Some(&b"<sip:a>;tag=old"[..]));
        // Unparseable To containing a tag: still no second tag.
        let req = parse(b"BYE sip:a SIP/2.0\r\nTo: \"x <sip:a>;tag=old\r\n\r\n");
        let r = parse(&response(&req, 400, b"Bad", &opts).unwrap());
        assert_eq!(r.header(HeaderName::To), Some(&b"\"x <sip:a>;tag=old"[..]));
    }

    #[test]
    fn response_with_body_and_missing_headers() {
        let req = parse(b"OPTIONS sip:a SIP/2.0\r\nCSeq: 1 OPTIONS\r\n\r\n");
        let opts = ResponseOptions {
            body: Some((b"text/plain", b"hello")),
            ..Default::default()
        };
        let r = parse(&response(&req, 400, b"Missing Headers", &opts).unwrap());
        assert_eq!(r.header(HeaderName::ContentType), Some(&b"text/plain"[..]));
        assert_eq!(r.body(), b"hello");
        assert_eq!(r.header(HeaderName::Via), None);
        assert_eq!(r.header(HeaderName::CSeq), Some(&b"1 OPTIONS"[..]));
    }

    #[test]
    fn response_errors() {
        let req = parse(INVITE);
        assert!(response(&req, 99, b"x", &ResponseOptions::default()).is_err());
        assert!(response(&req, 700, b"x", &ResponseOptions::default()).is_err());
        let resp = parse(b"SIP/2.0 200 OK\r\n\r\n");
        assert!(response(&resp, 200, b"OK", &ResponseOptions::default()).is_err());
    }

    #[test]
    fn cancel_from_invite() {
        let req = parse(INVITE);
        let c = cancel(&req).unwrap();
        let expected = b"CANCEL sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bKp\r\n\
Max-Forwards: 70\r\n\
Route: <sip:p1.example.com;lr>\r\n\
Route: <sip:p2.example.com;lr>\r\n\
From: \"Alice\" <sip:alice@example.com>;tag=1\r\n\
To: <sip:bob@example.com>\r\n\
Call-ID: abc@host\r\n\
CSeq: 4711 CANCEL\r\n\
Content-Length: 0\r\n\r\n";
        assert_eq!(
            String::from_utf8_lossy(&c),
            String::from_utf8_lossy(expected)
        );
        let m = parse(&c);
        assert_eq!(m.method(), Some(Method::Cancel));
    }

    #[test]
    fn ack_for_error_response() {
        let req = parse(INVITE);
        let resp = parse(b"SIP/2.0 486 Busy\r\nVia: SIP/2.0/UDP proxy.example.com;branch=z9hG4bKp\r\nTo: <sip:bob@example.com>;tag=b0b\r\nCSeq: 4711 INVITE\r\n\r\n");
        let a = parse(&ack_for_non_2xx(&req, &resp).unwrap());
        assert_eq!(a.method(), Some(Method::Ack));
        assert_eq!(a.request_uri(), b"sip:bob@example.com");
        assert_eq!(a.headers(HeaderName::Via).count(), 1);
        assert_eq!(
            a.header(HeaderName::Via),
            Some(&b"SIP/2.0/UDP proxy.example.com;branch=z9hG4bKp"[..])
        );
        assert_eq!(
            a.header(HeaderName::To),
            Some(&b"<sip:bob@example.com>;tag=b0b"[..])
        );
        assert_eq!(a.header(HeaderName::CSeq), Some(&b"4711 ACK"[..]));
        assert_eq!(a.headers(HeaderName::Route).count(), 2);
        assert_eq!(a.header(HeaderName::MaxForwards), Some(&b"70"[..]));

        let ok = parse(b"SIP/2.0 200 OK\r\nTo: <sip:b>;tag=1\r\n\r\n");
        assert!(ack_for_non_2xx(&req, &ok).is_err());
        let bye = parse(b"BYE sip:a SIP/2.0\r\n\r\n");
        assert!(ack_for_non_2xx(&bye, &resp).is_err());
    }

    #[test]
    fn cancel_needs_the_headers_it_copies() {
        for s in [
            &b"INVITE sip:a SIP/2.0\r\nFrom: a\r\nTo: b\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n"[..],
            b"INVITE sip:a SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nTo: b\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n",
            b"INVITE sip:a SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nFrom: a\r\nTo: b\r\nCall-ID: c\r\nCSeq: 99999999999 INVITE\r\n\r\n",
            b"ACK sip:a SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nFrom: a\r\nTo: b\r\nCall-ID: c\r\nCSeq: 1 ACK\r\n\r\n",
        ] {
            assert!(cancel(&parse(s)).is_err(), "{}", String::from_utf8_lossy(s));
        }
    }

    /// Our INVITE as sent: our Record-Route over the caller side's.
    const SENT: &[u8] = b"INVITE sip:bob@192.0.2.20 SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKp, SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
Record-Route: <sip:10.0.0.1:5060;lr>\r\n\
Record-Route: <sip:upstream.example.com;lr>\r\n\
From: \"Alice\" <sip:alice@example.com>;tag=1\r\n\
To: <sip:bob@example.com>\r\n\
Call-ID: abc@host\r\n\
CSeq: 4711 INVITE\r\n\
Content-Length: 0\r\n\r\n";

    /// Its 2xx: two entries added downstream (one line with a comma list), ours and the
    /// upstream one copied.
    fn ok_2xx(rr: &str, contact: &str) -> Message {
        parse(
            format!(
                "SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKp\r\n\
{rr}\
From: \"Alice\" <sip:alice@example.com>;tag=1\r\n\
To: <sip:bob@example.com>;tag=b0b\r\n\
Call-ID: abc@host\r\n\
CSeq: 4711 INVITE\r\n\
{contact}\
Content-Length: 0\r\n\r\n"
            )
            .as_bytes(),
        )
    }

    const DOWNSTREAM_RR: &str =
        "Record-Route: <sip:192.0.2.30:5070;lr>;x=1, <sip:192.0.2.31;lr>\r\n\
Record-Route: <sip:10.0.0.1:5060;lr>\r\n\
Record-Route: <sip:upstream.example.com;lr>\r\n";

    #[test]
    fn dialog_requests_follow_the_2xx_route_set_reversed() {
        let sent = parse(SENT);
        let resp = ok_2xx(
            DOWNSTREAM_RR,
            "Contact: <sip:bob@192.0.2.20:5062>;expires=9\r\n",
        );
        let route = DialogRoute::of(&sent, &resp).unwrap();
        assert_eq!(route.target, b"sip:bob@192.0.2.20:5062");
        assert_eq!(route.next_hop().unwrap().as_bytes(), b"sip:192.0.2.31;lr");
        let via = b"SIP/2.0/UDP 10.0.0.1:5060;rport;branch=z9hG4bKb";
        let bye = in_dialog(&sent, &resp, &route, b"BYE", 4712, via).unwrap();
        let expected = b"BYE sip:bob@192.0.2.20:5062 SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.1:5060;rport;branch=z9hG4bKb\r\n\
Max-Forwards: 70\r\n\
Route: <sip:192.0.2.31;lr>\r\n\
Route: <sip:192.0.2.30:5070;lr>\r\n\
From: \"Alice\" <sip:alice@example.com>;tag=1\r\n\
To: <sip:bob@example.com>;tag=b0b\r\n\
Call-ID: abc@host\r\n\
CSeq: 4712 BYE\r\n\
Content-Length: 0\r\n\r\n";
        assert_eq!(
            String::from_utf8_lossy(&bye),
            String::from_utf8_lossy(expected)
        );
        let ack = parse(&in_dialog(&sent, &resp, &route, b"ACK", 4711, via).unwrap());
        assert_eq!(ack.method(), Some(Method::Ack));
        assert_eq!(ack.header(HeaderName::CSeq), Some(&b"4711 ACK"[..]));
        assert_eq!(ack.headers(HeaderName::Route).count(), 2);
    }

    #[test]
    fn without_record_route_the_contact_is_the_next_hop() {
        let sent = parse(SENT);
        // Only the entries that were in our INVITE: nothing downstream.
        let rr = "Record-Route: <sip:10.0.0.1:5060;lr>, <sip:upstream.example.com;lr>\r\n";
        let resp = ok_2xx(rr, "Contact: <sip:bob@192.0.2.20:5062>\r\n");
        let route = DialogRoute::of(&sent, &resp).unwrap();
        assert!(route.routes.is_empty());
        assert_eq!(
            route.next_hop().unwrap().as_bytes(),
            b"sip:bob@192.0.2.20:5062"
        );
        let bye = parse(&in_dialog(&sent, &resp, &route, b"BYE", 4712, b"v").unwrap());
        assert_eq!(bye.request_uri(), b"sip:bob@192.0.2.20:5062");
        assert_eq!(bye.header(HeaderName::Route), None);
        // No Contact at all: the INVITE's Request-URI, where the INVITE went.
        let resp = ok_2xx("", "");
        let route = DialogRoute::of(&sent, &resp).unwrap();
        assert_eq!(route.target, b"sip:bob@192.0.2.20");
    }

    #[test]
    fn a_strict_first_route_becomes_the_request_uri() {
        let sent = parse(SENT);
        let rr = "Record-Route: <sip:192.0.2.40:5060>\r\n\
Record-Route: <sip:10.0.0.1:5060;lr>, <sip:upstream.example.com;lr>\r\n";
        let resp = ok_2xx(rr, "Contact: <sip:bob@192.0.2.20>\r\n");
        let route = DialogRoute::of(&sent, &resp).unwrap();
        assert_eq!(route.next_hop().unwrap().as_bytes(), b"sip:192.0.2.40:5060");
        let bye = parse(&in_dialog(&sent, &resp, &route, b"BYE", 4712, b"v").unwrap());
        assert_eq!(bye.request_uri(), b"sip:192.0.2.40:5060");
        let routes: Vec<_> = bye.headers(HeaderName::Route).collect();
        assert_eq!(routes, vec![&b"<sip:bob@192.0.2.20>"[..]]);
    }

    #[test]
    fn dialog_requests_need_an_invite_and_a_2xx() {
        let sent = parse(SENT);
        let resp = ok_2xx("", "Contact: <sip:bob@192.0.2.20>\r\n");
        let route = DialogRoute::of(&sent, &resp).unwrap();
        let busy = parse(b"SIP/2.0 486 Busy\r\nTo: <sip:b>;tag=1\r\n\r\n");
        assert!(DialogRoute::of(&sent, &busy).is_err());
        assert!(in_dialog(&sent, &busy, &route, b"BYE", 1, b"v").is_err());
        let bye = parse(b"BYE sip:a SIP/2.0\r\nFrom: a\r\nCall-ID: c\r\n\r\n");
        assert!(in_dialog(&bye, &resp, &route, b"BYE", 1, b"v").is_err());
        let star = ok_2xx("", "Contact: *\r\n");
        assert!(DialogRoute::of(&sent, &star).is_err());
        let bad_rr = ok_2xx("Record-Route: <sip:x;lr>, garbage<\r\n", "");
        assert!(DialogRoute::of(&sent, &bad_rr).is_err());
    }

    #[test]
    fn cseq_numbers() {
        assert_eq!(cseq_number(b"0009 INVITE"), Some(9));
        assert_eq!(cseq_number(b"4294967295 X"), Some(u32::MAX));
        assert_eq!(cseq_number(b"4294967296 X"), None);
        assert_eq!(cseq_number(b"INVITE"), None);
    }
}
