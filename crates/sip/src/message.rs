//! A parsed SIP message: the original bytes plus an index of where things are.
//!
//! Nothing is copied out of the buffer. The header index lives inline for up to
//! `INLINE_HEADERS` header lines, so parsing an ordinary message allocates nothing; only
//! a message with more header lines spills the index to one `Vec`.

use std::fmt;
use std::ops::Range;

use bytes::Bytes;

/// Byte range inside a message buffer. `u32` keeps the index small; the parser refuses
/// messages that do not fit (see [`Limits::message_size`](crate::limits::Limits::message_size)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    /// Offset of the first byte.
    pub start: u32,
    /// Offset just past the last byte.
    pub end: u32,
}

impl Span {
    /// Callers guarantee `start <= end <= u32::MAX`; the parser checks the message size first.
    #[inline]
    pub(crate) fn new(start: usize, end: usize) -> Span {
        Span {
            start: start as u32,
            end: end as u32,
        }
    }

    /// As a `Range` for slicing the buffer.
    #[inline]
    pub fn range(self) -> Range<usize> {
        self.start as usize..self.end as usize
    }

    /// Number of bytes covered.
    #[inline]
    pub fn len(self) -> usize {
        (self.end - self.start) as usize
    }

    /// Covers no bytes.
    #[inline]
    pub fn is_empty(self) -> bool {
        self.start == self.end
    }
}

/// Request methods. Methods are case-sensitive (RFC 3261 §7.1), so `invite` is an
/// extension method, reported as `Other`; its spelling is in [`Message::method_bytes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// `INVITE`: starts a call.
    Invite,
    /// `ACK`: confirms a final answer to an INVITE.
    Ack,
    /// `BYE`: ends a call.
    Bye,
    /// `CANCEL`: stops a pending INVITE.
    Cancel,
    /// `OPTIONS`: capability query, also used as a keep-alive.
    Options,
    /// `REGISTER`.
    Register,
    /// `PRACK` (RFC 3262).
    Prack,
    /// `SUBSCRIBE` (RFC 6665).
    Subscribe,
    /// `NOTIFY` (RFC 6665).
    Notify,
    /// `PUBLISH` (RFC 3903).
    Publish,
    /// `INFO` (RFC 6086).
    Info,
    /// `REFER` (RFC 3515).
    Refer,
    /// `MESSAGE` (RFC 3428).
    Message,
    /// `UPDATE` (RFC 3311).
    Update,
    /// Any other token; compare spellings with [`Message::method_bytes`].
    Other,
}

impl Method {
    /// The method for a request-line token; `Other` unless spelled exactly.
    pub fn from_bytes(b: &[u8]) -> Method {
        match b {
            b"INVITE" => Method::Invite,
            b"ACK" => Method::Ack,
            b"BYE" => Method::Bye,
            b"CANCEL" => Method::Cancel,
            b"OPTIONS" => Method::Options,
            b"REGISTER" => Method::Register,
            b"PRACK" => Method::Prack,
            b"SUBSCRIBE" => Method::Subscribe,
            b"NOTIFY" => Method::Notify,
            b"PUBLISH" => Method::Publish,
            b"INFO" => Method::Info,
            b"REFER" => Method::Refer,
            b"MESSAGE" => Method::Message,
            b"UPDATE" => Method::Update,
            _ => Method::Other,
        }
    }

    /// The spelling on the wire; empty for `Other`, whose spelling only the message knows.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Register => "REGISTER",
            Method::Prack => "PRACK",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Publish => "PUBLISH",
            Method::Info => "INFO",
            Method::Refer => "REFER",
            Method::Message => "MESSAGE",
            Method::Update => "UPDATE",
            Method::Other => "",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

macro_rules! header_names {
    ($($variant:ident => $canon:literal),* $(,)?) => {
        /// Headers a proxy looks at. Everything else is `Other` and is found by name with
        /// [`Message::header_named`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum HeaderName {
            $(#[doc = concat!("`", $canon, "`.")] $variant,)*
            /// Any header not listed above.
            Other,
        }

        impl HeaderName {
            /// Every known name, for tests and tables.
            pub const ALL: &'static [HeaderName] = &[$(HeaderName::$variant),*];

            /// Canonical long spelling; empty for `Other`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(HeaderName::$variant => $canon,)*
                    HeaderName::Other => "",
                }
            }
        }
    };
}

header_names! {
    Accept => "Accept",
    AcceptContact => "Accept-Contact",
    Allow => "Allow",
    AllowEvents => "Allow-Events",
    Authorization => "Authorization",
    CallId => "Call-ID",
    Contact => "Contact",
    ContentEncoding => "Content-Encoding",
    ContentLength => "Content-Length",
    ContentType => "Content-Type",
    CSeq => "CSeq",
    Diversion => "Diversion",
    Event => "Event",
    Expires => "Expires",
    From => "From",
    Identity => "Identity",
    IdentityInfo => "Identity-Info",
    MaxForwards => "Max-Forwards",
    MinExpires => "Min-Expires",
    MinSe => "Min-SE",
    PAssertedIdentity => "P-Asserted-Identity",
    PPreferredIdentity => "P-Preferred-Identity",
    Path => "Path",
    Privacy => "Privacy",
    ProxyAuthenticate => "Proxy-Authenticate",
    ProxyAuthorization => "Proxy-Authorization",
    ProxyRequire => "Proxy-Require",
    RAck => "RAck",
    Reason => "Reason",
    RecordRoute => "Record-Route",
    ReferTo => "Refer-To",
    ReferredBy => "Referred-By",
    RejectContact => "Reject-Contact",
    RequestDisposition => "Request-Disposition",
    Require => "Require",
    RetryAfter => "Retry-After",
    Route => "Route",
    RSeq => "RSeq",
    Server => "Server",
    ServiceRoute => "Service-Route",
    SessionExpires => "Session-Expires",
    Subject => "Subject",
    Supported => "Supported",
    Timestamp => "Timestamp",
    To => "To",
    Unsupported => "Unsupported",
    UserAgent => "User-Agent",
    Via => "Via",
    WwwAuthenticate => "WWW-Authenticate",
}

impl HeaderName {
    /// Classifies a header name: case-insensitive, compact forms map to their long names.
    /// (length, first letter, and a second letter where two names share those) leaves one
    /// candidate, compared in its canonical spelling by a few word loads (names come
    /// spelled so almost always), then case-insensitively. It runs for every header line
    /// parsed: a library `memcmp` call per candidate was most of its cost.
    #[inline]
    pub fn from_bytes(name: &[u8]) -> HeaderName {
        let h = Self::candidate(name);
        if h == HeaderName::Other || name.len() == 1 {
            return h;
        }
        let canon = h.as_str().as_bytes();
        if eq_same_len(canon, name) || eq_ignore_case(canon, name) {
            h
        } else {
            HeaderName::Other
        }
    }

    /// The one known name `name` can be (`Other` when none): a compact form is final, a
    /// longer name must still be compared.
    #[inline]
    fn candidate(name: &[u8]) -> HeaderName {
        use HeaderName as H;
        let lower = |i: usize| name.get(i).map_or(0, u8::to_ascii_lowercase);
        match (name.len(), lower(0)) {
            (0, _) => H::Other,
            (1, c) => Self::from_compact(c),
            (2, b't') => H::To,
            (3, b'v') => H::Via,
            (4, b'f') => H::From,
            (4, b'c') => H::CSeq,
            (4, b'p') => H::Path,
            (4, b'r') if lower(1) == b'a' => H::RAck,
            (4, b'r') => H::RSeq,
            (5, b'a') => H::Allow,
            (5, b'r') => H::Route,
            (5, b'e') => H::Event,
            (6, b'a') => H::Accept,
            (6, b's') => H::Server,
            (6, b'r') => H::Reason,
            (6, b'm') => H::MinSe,
            (7, b'c') if lower(1) == b'a' => H::CallId,
            (7, b'c') => H::Contact,
            (7, b'e') => H::Expires,
            (7, b's') => H::Subject,
            (7, b'r') => H::Require,
            (7, b'p') => H::Privacy,
            (8, b'i') => H::Identity,
            (8, b'r') => H::ReferTo,
            (9, b's') => H::Supported,
            (9, b't') => H::Timestamp,
            (9, b'd') => H::Diversion,
            (10, b'u') => H::UserAgent,
            (11, b'r') if lower(2) == b'f' => H::ReferredBy,
            (11, b'r') => H::RetryAfter,
            (11, b'u') => H::Unsupported,
            (11, b'm') => H::MinExpires,
            (12, b'm') => H::MaxForwards,
            (12, b'c') => H::ContentType,
            (12, b'r') => H::RecordRoute,
            (12, b'a') => H::AllowEvents,
            (13, b'i') => H::IdentityInfo,
            (13, b'a') => H::Authorization,
            (13, b'p') => H::ProxyRequire,
            (13, b's') => H::ServiceRoute,
            (14, b'c') => H::ContentLength,
            (14, b'a') => H::AcceptContact,
            (14, b'r') => H::RejectContact,
            (15, b's') => H::SessionExpires,
            (16, b'c') => H::ContentEncoding,
            (16, b'w') => H::WwwAuthenticate,
            (18, b'p') => H::ProxyAuthenticate,
            (19, b'p') if lower(1) == b'r' => H::ProxyAuthorization,
            (19, b'p') => H::PAssertedIdentity,
            (19, b'r') => H::RequestDisposition,
            (20, b'p') => H::PPreferredIdentity,
            _ => H::Other,
        }
    }

    /// RFC 3261 §7.3.3 and later RFCs' compact forms.
    pub(crate) fn from_compact(c: u8) -> HeaderName {
        use HeaderName as H;
        match c.to_ascii_lowercase() {
            b'i' => H::CallId,
            b'm' => H::Contact,
            b'e' => H::ContentEncoding,
            b'l' => H::ContentLength,
            b'c' => H::ContentType,
            b'f' => H::From,
            b's' => H::Subject,
            b'k' => H::Supported,
            b't' => H::To,
            b'v' => H::Via,
            b'o' => H::Event,
            b'r' => H::ReferTo,
            b'b' => H::ReferredBy,
            b'x' => H::SessionExpires,
            b'u' => H::AllowEvents,
            b'y' => H::Identity,
            b'a' => H::AcceptContact,
            b'j' => H::RejectContact,
            b'd' => H::RequestDisposition,
            b'n' => H::IdentityInfo,
            _ => H::Other,
        }
    }
}

/// `a == b` for slices of the same length up to 24 bytes (header names): two or three
/// possibly overlapping word loads a side instead of a `memcmp` call.
#[inline]
fn eq_same_len(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let w8 = |s: &[u8], i: usize| {
        s.get(i..i + 8)
            .map(|w| u64::from_ne_bytes(w.try_into().unwrap_or([0; 8])))
    };
    let w4 = |s: &[u8], i: usize| {
        s.get(i..i + 4)
            .map(|w| u32::from_ne_bytes(w.try_into().unwrap_or([0; 4])))
    };
    match n {
        0 => true,
        1..=3 => a.first() == b.first() && a.last() == b.last() && a.get(1) == b.get(1),
        4..=7 => w4(a, 0) == w4(b, 0) && w4(a, n - 4) == w4(b, n - 4),
        8..=16 => w8(a, 0) == w8(b, 0) && w8(a, n - 8) == w8(b, n - 8),
        17..=24 => w8(a, 0) == w8(b, 0) && w8(a, 8) == w8(b, 8) && w8(a, n - 8) == w8(b, n - 8),
        _ => a == b,
    }
}

/// Short names make the library's chunked comparison slower than a plain loop.
#[inline]
#[allow(clippy::manual_ignore_case_cmp)]
fn eq_ignore_case(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.to_ascii_lowercase() == y.to_ascii_lowercase())
}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One header line in the index. 16 bytes, so 32 of them fit in 512 bytes inline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HeaderEntry {
    /// Start of the name, which is also the start of the line.
    pub(crate) name_start: u32,
    /// Value without leading/trailing whitespace; may span folded continuation lines.
    pub(crate) value_start: u32,
    pub(crate) value_end: u32,
    pub(crate) name_len: u16,
    pub kind: HeaderName,
}

impl HeaderEntry {
    const EMPTY: HeaderEntry = HeaderEntry {
        name_start: 0,
        value_start: 0,
        value_end: 0,
        name_len: 0,
        kind: HeaderName::Other,
    };

    #[inline]
    pub(crate) fn name_span(&self) -> Span {
        Span {
            start: self.name_start,
            end: self.name_start + self.name_len as u32,
        }
    }

    #[inline]
    pub(crate) fn value_span(&self) -> Span {
        Span {
            start: self.value_start,
            end: self.value_end,
        }
    }
}

/// Header lines kept inline before the index spills to the heap.
pub(crate) const INLINE_HEADERS: usize = 32;

/// Inline-first vector of header entries. Written by hand rather than pulling in a crate:
/// the entries are `Copy`, so it needs no unsafe code and stays tiny.
#[derive(Clone)]
// Boxing the inline array would defeat its purpose (no allocation per parse).
#[allow(clippy::large_enum_variant)]
pub(crate) enum Lines {
    Inline {
        len: u8,
        items: [HeaderEntry; INLINE_HEADERS],
    },
    Heap(Vec<HeaderEntry>),
}

/// One slot per [`HeaderName`], `Other` included (it is the last variant).
const KINDS: usize = HeaderName::Other as usize + 1;

/// `first` slot of a kind with no line among the first `NOT_FIRST` lines.
const NOT_FIRST: u8 = u8::MAX;

/// The header lines, and where each known header's first line is: the proxy reads a
/// header by kind ~26 times per call, each a scan from the first line (a miss scanned
/// them all) before this.
#[derive(Clone)]
pub(crate) struct HeaderIndex {
    lines: Lines,
    /// Position of the first line of each kind, or `NOT_FIRST` when there is none
    /// among the first 255 lines (a longer message scans the rest).
    first: [u8; KINDS],
}

impl HeaderIndex {
    pub(crate) fn new() -> HeaderIndex {
        HeaderIndex {
            lines: Lines::Inline {
                len: 0,
                items: [HeaderEntry::EMPTY; INLINE_HEADERS],
            },
            first: [NOT_FIRST; KINDS],
        }
    }

    #[inline]
    pub(crate) fn push(&mut self, e: HeaderEntry) {
        let at = match &mut self.lines {
            Lines::Inline { len, items } if usize::from(*len) < INLINE_HEADERS => {
                let n = usize::from(*len);
                items[n] = e;
                *len += 1;
                n
            }
            _ => self.push_spilled(e),
        };
        // `kind as usize < KINDS` always: `Other` is the last variant.
        let first = &mut self.first[e.kind as usize];
        if *first == NOT_FIRST && at < usize::from(NOT_FIRST) {
            *first = at as u8;
        }
    }

    /// `push` past the inline lines: moves them to the heap once. Returns the position.
    #[cold]
    fn push_spilled(&mut self, e: HeaderEntry) -> usize {
        match &mut self.lines {
            Lines::Inline { items, .. } => {
                let mut v = Vec::with_capacity(INLINE_HEADERS * 4);
                v.extend_from_slice(items);
                v.push(e);
                self.lines = Lines::Heap(v);
                INLINE_HEADERS
            }
            Lines::Heap(v) => {
                v.push(e);
                v.len() - 1
            }
        }
    }

    /// The last line, for a continuation line to extend.
    #[inline]
    pub(crate) fn last_mut(&mut self) -> Option<&mut HeaderEntry> {
        match &mut self.lines {
            Lines::Inline { len, items } => items[..usize::from(*len)].last_mut(),
            Lines::Heap(v) => v.last_mut(),
        }
    }

    #[inline]
    pub(crate) fn as_slice(&self) -> &[HeaderEntry] {
        match &self.lines {
            Lines::Inline { len, items } => &items[..*len as usize],
            Lines::Heap(v) => v,
        }
    }

    /// The lines from the first one of `kind` on; empty when there is none.
    #[inline]
    pub(crate) fn lines_from_first(&self, kind: HeaderName) -> &[HeaderEntry] {
        let all = self.as_slice();
        let at = self.first.get(kind as usize).copied().unwrap_or(0);
        let from = if at != NOT_FIRST {
            usize::from(at)
        } else {
            // None among the first 255 lines: only a longer message can have one.
            usize::from(NOT_FIRST).min(all.len())
        };
        all.get(from..).unwrap_or(&[])
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.as_slice().len()
    }
}

impl fmt::Debug for HeaderIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

/// Request line or status line, as ranges into the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartLine {
    /// `Method SP Request-URI SP SIP-Version`.
    Request {
        /// The method, `Other` for extensions.
        method: Method,
        /// Where the method token is (for extension methods).
        method_span: Span,
        /// The Request-URI.
        uri: Span,
    },
    /// `SIP-Version SP Status-Code SP Reason-Phrase`.
    Response {
        /// The status code (100–699).
        code: u16,
        /// The reason phrase.
        reason: Span,
    },
}

/// A parsed message. Cloning is cheap-ish (the buffer is reference counted; the index is
/// copied).
#[derive(Clone)]
pub struct Message {
    buf: Bytes,
    start: StartLine,
    headers: HeaderIndex,
    /// Offset where the body starts, just after the blank line.
    head_len: u32,
    content_length: Option<u32>,
}

/// One header line as seen through [`Message::fields`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    /// The header, when the parser knows its name.
    pub kind: HeaderName,
    /// The name as spelled on the wire (may be a compact form).
    pub name: &'a [u8],
    /// The value, trimmed; folded lines keep their CRLF and leading whitespace, which
    /// views must treat as linear whitespace.
    pub value: &'a [u8],
    pub(crate) name_span: Span,
    pub(crate) value_span: Span,
}

impl Message {
    /// `buf` holds exactly the message: start line, headers, blank line, body.
    pub(crate) fn from_parts(
        buf: Bytes,
        start: StartLine,
        headers: HeaderIndex,
        head_len: usize,
        content_length: Option<usize>,
    ) -> Message {
        Message {
            buf,
            start,
            headers,
            head_len: head_len as u32,
            content_length: content_length.map(|n| n as u32),
        }
    }

    /// The whole message as received (trailing bytes beyond the body excluded).
    #[inline]
    pub fn bytes(&self) -> &Bytes {
        &self.buf
    }

    /// The request or status line.
    #[inline]
    pub fn start_line(&self) -> StartLine {
        self.start
    }

    /// Has a request line.
    #[inline]
    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    /// Has a status line.
    #[inline]
    pub fn is_response(&self) -> bool {
        !self.is_request()
    }

    /// The request method, `None` for a response.
    #[inline]
    pub fn method(&self) -> Option<Method> {
        match self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// The method as spelled on the wire (needed for `Method::Other`); empty for a response.
    pub fn method_bytes(&self) -> &[u8] {
        match self.start {
            StartLine::Request { method_span, .. } => self.span(method_span),
            StartLine::Response { .. } => b"",
        }
    }

    /// The Request-URI as on the wire; empty for a response.
    pub fn request_uri(&self) -> &[u8] {
        match self.start {
            StartLine::Request { uri, .. } => self.span(uri),
            StartLine::Response { .. } => b"",
        }
    }

    /// The status code (100..=699), `None` for a request.
    #[inline]
    pub fn status(&self) -> Option<u16> {
        match self.start {
            StartLine::Response { code, .. } => Some(code),
            StartLine::Request { .. } => None,
        }
    }

    /// The reason phrase (possibly empty, not necessarily UTF-8); empty for a request.
    pub fn reason(&self) -> &[u8] {
        match self.start {
            StartLine::Response { reason, .. } => self.span(reason),
            StartLine::Request { .. } => b"",
        }
    }

    /// First value of a known header.
    #[inline]
    pub fn header(&self, name: HeaderName) -> Option<&[u8]> {
        self.headers(name).next()
    }

    /// Values of every line of a known header, in order. A line may hold several
    /// comma-separated values; splitting them is the views' job.
    #[inline]
    pub fn headers(&self, name: HeaderName) -> Headers<'_, 'static> {
        Headers {
            buf: &self.buf,
            entries: self.headers.lines_from_first(name).iter(),
            want: Want::Kind(name),
        }
    }

    /// First value of a header by name: compact forms and case are handled, and names the
    /// parser does not know (`X-Foo`) are compared case-insensitively.
    pub fn header_named(&self, name: &[u8]) -> Option<&[u8]> {
        self.headers_named(name).next()
    }

    /// Every value of a header by name, in order (lists split as [`Message::headers`] does).
    pub fn headers_named<'a, 'n>(&'a self, name: &'n [u8]) -> Headers<'a, 'n> {
        let kind = HeaderName::from_bytes(name);
        let want = match kind {
            HeaderName::Other => Want::Name(name),
            kind => Want::Kind(kind),
        };
        Headers {
            buf: &self.buf,
            entries: self.headers.lines_from_first(kind).iter(),
            want,
        }
    }

    /// Number of header lines of a known header.
    pub fn header_count(&self, name: HeaderName) -> usize {
        self.headers
            .lines_from_first(name)
            .iter()
            .filter(|e| e.kind == name)
            .count()
    }

    /// Every header line in order.
    pub fn fields(&self) -> impl Iterator<Item = Field<'_>> + '_ {
        self.headers.as_slice().iter().map(move |e| Field {
            kind: e.kind,
            name: self.span(e.name_span()),
            value: self.span(e.value_span()),
            name_span: e.name_span(),
            value_span: e.value_span(),
        })
    }

    /// Number of header lines.
    pub fn field_count(&self) -> usize {
        self.headers.len()
    }

    /// The body: Content-Length bytes, or the rest of a datagram without Content-Length.
    pub fn body(&self) -> &[u8] {
        self.buf.get(self.head_len as usize..).unwrap_or(b"")
    }

    /// The Content-Length value, if the message had one.
    pub fn content_length(&self) -> Option<usize> {
        self.content_length.map(|n| n as usize)
    }

    /// Bytes of the start line and headers including the blank line.
    pub fn head(&self) -> &[u8] {
        self.buf.get(..self.head_len as usize).unwrap_or(b"")
    }

    #[inline]
    pub(crate) fn head_len(&self) -> usize {
        self.head_len as usize
    }

    #[inline]
    pub(crate) fn entries(&self) -> &[HeaderEntry] {
        self.headers.as_slice()
    }

    /// The header lines from the first one of `kind` on (empty when there is none).
    #[inline]
    pub(crate) fn entries_from(&self, kind: HeaderName) -> &[HeaderEntry] {
        self.headers.lines_from_first(kind)
    }

    /// Bytes of a span; empty if the span is not inside the message (never panics).
    #[inline]
    pub(crate) fn span(&self, s: Span) -> &[u8] {
        self.buf.get(s.range()).unwrap_or(b"")
    }

    /// A cheap owned handle on a sub-slice of this message (e.g. a header value), sharing
    /// the buffer. `None` if `sub` does not point into this message's bytes.
    pub fn slice_ref(&self, sub: &[u8]) -> Option<Bytes> {
        if sub.is_empty() {
            return Some(Bytes::new());
        }
        let base = self.buf.as_ptr() as usize;
        let p = sub.as_ptr() as usize;
        if p >= base && p + sub.len() <= base + self.buf.len() {
            Some(self.buf.slice_ref(sub))
        } else {
            None
        }
    }

    /// Owned handle on a span of this message.
    pub fn slice(&self, s: Span) -> Bytes {
        if s.start <= s.end && (s.end as usize) <= self.buf.len() {
            self.buf.slice(s.range())
        } else {
            Bytes::new()
        }
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("start", &self.start)
            .field("headers", &self.headers)
            .field("head_len", &self.head_len)
            .field("content_length", &self.content_length)
            .field("bytes", &String::from_utf8_lossy(&self.buf))
            .finish()
    }
}

#[derive(Clone, Copy)]
enum Want<'n> {
    Kind(HeaderName),
    Name(&'n [u8]),
}

/// Iterator over the values of every line of one header.
#[derive(Clone)]
pub struct Headers<'a, 'n> {
    buf: &'a [u8],
    entries: std::slice::Iter<'a, HeaderEntry>,
    want: Want<'n>,
}

impl<'a> Iterator for Headers<'a, '_> {
    type Item = &'a [u8];

    #[inline]
    fn next(&mut self) -> Option<&'a [u8]> {
        for e in self.entries.by_ref() {
            let hit = match self.want {
                Want::Kind(k) => e.kind == k,
                Want::Name(n) => {
                    e.kind == HeaderName::Other
                        && self
                            .buf
                            .get(e.name_span().range())
                            .is_some_and(|name| name.eq_ignore_ascii_case(n))
                }
            };
            if hit {
                return Some(self.buf.get(e.value_span().range()).unwrap_or(b""));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_canonical_name_round_trips() {
        for &h in HeaderName::ALL {
            assert_eq!(HeaderName::from_bytes(h.as_str().as_bytes()), h, "{h}");
            let upper = h.as_str().to_ascii_uppercase();
            assert_eq!(HeaderName::from_bytes(upper.as_bytes()), h, "{upper}");
            let lower = h.as_str().to_ascii_lowercase();
            assert_eq!(HeaderName::from_bytes(lower.as_bytes()), h, "{lower}");
        }
    }

    #[test]
    fn a_name_one_byte_off_a_known_one_is_other() {
        for &h in HeaderName::ALL {
            let canon = h.as_str().as_bytes();
            for i in 0..canon.len() {
                for b in [b'x', b'\r', b'-', canon[i] ^ 0x20, canon[i] + 1] {
                    let mut name = canon.to_vec();
                    name[i] = b;
                    if name.eq_ignore_ascii_case(canon) {
                        continue;
                    }
                    let got = HeaderName::from_bytes(&name);
                    let want = HeaderName::ALL
                        .iter()
                        .copied()
                        .find(|k| k.as_str().as_bytes().eq_ignore_ascii_case(&name))
                        .unwrap_or(HeaderName::Other);
                    assert_eq!(got, want, "{:?}", String::from_utf8_lossy(&name));
                }
            }
        }
    }

    #[test]
    fn same_length_comparison_agrees_with_slices() {
        for n in 0..30usize {
            let a: Vec<u8> = (0..n as u8).map(|i| b'A' + i).collect();
            assert!(eq_same_len(&a, &a.clone()));
            for i in 0..n {
                let mut b = a.clone();
                b[i] ^= 0x01;
                assert!(!eq_same_len(&a, &b), "length {n}, byte {i}");
            }
            assert!(!eq_same_len(&a, &a[..n.saturating_sub(1)]) || n == 0);
        }
    }

    #[test]
    fn compact_forms_map_to_long_names() {
        let table: &[(&[u8], HeaderName)] = &[
            (b"i", HeaderName::CallId),
            (b"M", HeaderName::Contact),
            (b"e", HeaderName::ContentEncoding),
            (b"l", HeaderName::ContentLength),
            (b"c", HeaderName::ContentType),
            (b"f", HeaderName::From),
            (b"s", HeaderName::Subject),
            (b"k", HeaderName::Supported),
            (b"T", HeaderName::To),
            (b"v", HeaderName::Via),
            (b"o", HeaderName::Event),
            (b"r", HeaderName::ReferTo),
            (b"b", HeaderName::ReferredBy),
            (b"x", HeaderName::SessionExpires),
            (b"u", HeaderName::AllowEvents),
            (b"y", HeaderName::Identity),
            (b"a", HeaderName::AcceptContact),
            (b"j", HeaderName::RejectContact),
            (b"d", HeaderName::RequestDisposition),
            (b"n", HeaderName::IdentityInfo),
            (b"z", HeaderName::Other),
        ];
        for (n, h) in table {
            assert_eq!(HeaderName::from_bytes(n), *h);
        }
    }

    #[test]
    fn unknown_and_near_miss_names_are_other() {
        for n in [
            &b"X-Foo"[..],
            b"Vias",
            b"Tos",
            b"Call-Id-",
            b"",
            b"Max-Forward",
        ] {
            assert_eq!(HeaderName::from_bytes(n), HeaderName::Other);
        }
        assert_eq!(HeaderName::from_bytes(b"call-id"), HeaderName::CallId);
    }

    #[test]
    fn methods_are_case_sensitive() {
        assert_eq!(Method::from_bytes(b"INVITE"), Method::Invite);
        assert_eq!(Method::from_bytes(b"invite"), Method::Other);
        assert_eq!(Method::from_bytes(b"PRACK"), Method::Prack);
        for m in [
            Method::Invite,
            Method::Ack,
            Method::Bye,
            Method::Cancel,
            Method::Options,
            Method::Register,
            Method::Prack,
            Method::Subscribe,
            Method::Notify,
            Method::Publish,
            Method::Info,
            Method::Refer,
            Method::Message,
            Method::Update,
        ] {
            assert_eq!(Method::from_bytes(m.as_str().as_bytes()), m);
        }
    }

    fn entry(i: u32) -> HeaderEntry {
        HeaderEntry {
            name_start: i,
            value_start: i + 1,
            value_end: i + 2,
            name_len: 1,
            kind: HeaderName::Via,
        }
    }

    #[test]
    fn lookups_from_the_first_line_of_a_kind_see_every_line_of_it() {
        let mut idx = HeaderIndex::new();
        let kind_at = |i: u32| match i {
            0 | 3 | 299 => HeaderName::To,
            270 | 280 => HeaderName::From,
            7 | 256 => HeaderName::Other,
            _ => HeaderName::Via,
        };
        for i in 0..300 {
            idx.push(HeaderEntry {
                kind: kind_at(i),
                ..entry(i)
            });
            for &k in HeaderName::ALL.iter().chain([&HeaderName::Other]) {
                let all: Vec<u32> = idx
                    .as_slice()
                    .iter()
                    .filter(|e| e.kind == k)
                    .map(|e| e.name_start)
                    .collect();
                let from: Vec<u32> = idx
                    .lines_from_first(k)
                    .iter()
                    .filter(|e| e.kind == k)
                    .map(|e| e.name_start)
                    .collect();
                assert_eq!(from, all, "{k:?} after {} lines", i + 1);
                if let Some(e) = idx.lines_from_first(k).first() {
                    assert!(e.kind == k || idx.len() > 255, "{k:?} starts at its line");
                }
            }
        }
    }

    #[test]
    fn header_index_spills_to_heap_keeping_order() {
        let mut idx = HeaderIndex::new();
        for i in 0..(INLINE_HEADERS as u32 + 5) {
            idx.push(entry(i));
        }
        assert!(matches!(idx.lines, Lines::Heap(_)));
        assert_eq!(idx.len(), INLINE_HEADERS + 5);
        for (i, e) in idx.as_slice().iter().enumerate() {
            assert_eq!(e.name_start, i as u32);
        }
    }

    #[test]
    fn header_entry_is_compact() {
        assert_eq!(std::mem::size_of::<HeaderEntry>(), 16);
    }

    #[test]
    fn span_accessors_never_panic() {
        let m = Message::from_parts(
            Bytes::from_static(b"abc"),
            StartLine::Response {
                code: 200,
                reason: Span { start: 2, end: 9 },
            },
            HeaderIndex::new(),
            10,
            None,
        );
        assert_eq!(m.reason(), b"");
        assert_eq!(m.body(), b"");
        assert_eq!(m.slice(Span { start: 1, end: 9 }), Bytes::new());
        assert_eq!(m.slice_ref(b"other"), None);
        let inside = &m.bytes()[1..3];
        assert_eq!(m.slice_ref(inside).unwrap(), &b"bc"[..]);
    }
}
