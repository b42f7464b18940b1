//! Property tests for the message core: parse∘serialise identity, edits that read back,
//! and stream framing that does not depend on how the bytes were chunked.

use bytes::Bytes;
use proptest::prelude::*;
use trunkstore_sip::edit::Editor;
use trunkstore_sip::framing::StreamFramer;
use trunkstore_sip::limits::Limits;
use trunkstore_sip::message::{HeaderName, Message, Method};
use trunkstore_sip::parse::parse_datagram;
use trunkstore_sip::scan::split_list;

#[derive(Debug, Clone)]
enum Start {
    Request { method: String, uri: String },
    Response { code: u16, reason: Vec<u8> },
}

#[derive(Debug, Clone)]
struct Hdr {
    name: String,
    /// Whitespace between the name and the colon.
    pre: &'static str,
    /// Whitespace after the colon.
    post: &'static str,
    value: Vec<u8>,
}

#[derive(Debug, Clone)]
struct Model {
    start: Start,
    headers: Vec<Hdr>,
    body: Vec<u8>,
}

impl Model {
    fn wire(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match &self.start {
            Start::Request { method, uri } => {
                out.extend_from_slice(format!("{method} {uri} SIP/2.0\r\n").as_bytes())
            }
            Start::Response { code, reason } => {
                out.extend_from_slice(format!("SIP/2.0 {code} ").as_bytes());
                out.extend_from_slice(reason);
                out.extend_from_slice(b"\r\n");
            }
        }
        for h in &self.headers {
            out.extend_from_slice(h.name.as_bytes());
            out.extend_from_slice(h.pre.as_bytes());
            out.push(b':');
            out.extend_from_slice(h.post.as_bytes());
            out.extend_from_slice(&h.value);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

fn hdr(name: &str, value: &[u8]) -> Hdr {
    Hdr {
        name: name.to_string(),
        pre: "",
        post: " ",
        value: value.to_vec(),
    }
}

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9!%*_+`'~.-]{1,12}"
}

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("INVITE".to_string()),
        Just("ACK".to_string()),
        Just("BYE".to_string()),
        Just("OPTIONS".to_string()),
        Just("REGISTER".to_string()),
        Just("PRACK".to_string()),
        token(),
    ]
}

fn uri() -> impl Strategy<Value = String> {
    "sip:[a-z0-9]{1,8}@[a-z0-9.]{1,12}(:[0-9]{1,5})?(;[a-z]{1,4}(=[a-z0-9]{1,4})?)?"
}

fn start() -> impl Strategy<Value = Start> {
    prop_oneof![
        (method(), uri()).prop_map(|(method, uri)| Start::Request { method, uri }),
        (
            100u16..=699,
            proptest::collection::vec(
                any::<u8>().prop_filter("no line end", |b| *b != b'\r' && *b != b'\n'),
                0..24
            )
        )
            .prop_map(|(code, reason)| Start::Response { code, reason }),
    ]
}

/// A value: words of any bytes but whitespace and line ends, joined by spaces or folds.
fn value() -> impl Strategy<Value = Vec<u8>> {
    let word = proptest::collection::vec(
        any::<u8>().prop_filter("not LWS", |b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n')),
        1..10,
    );
    let sep = prop_oneof![
        Just(&b" "[..]),
        Just(&b"  "[..]),
        Just(&b"\r\n "[..]),
        Just(&b"\r\n\t"[..]),
    ];
    proptest::collection::vec((word, sep), 0..4).prop_map(|parts| {
        let mut v = Vec::new();
        let n = parts.len();
        for (i, (w, s)) in parts.into_iter().enumerate() {
            v.extend_from_slice(&w);
            if i + 1 < n {
                v.extend_from_slice(s);
            }
        }
        v
    })
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("Subject".to_string()),
        Just("s".to_string()),
        Just("SUBJECT".to_string()),
        Just("Supported".to_string()),
        Just("k".to_string()),
        Just("Allow".to_string()),
        Just("Contact".to_string()),
        Just("m".to_string()),
        Just("P-Asserted-Identity".to_string()),
        Just("Call-ID".to_string()),
        Just("i".to_string()),
        "X-[A-Za-z0-9-]{1,10}",
    ]
}

fn ws() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just(""), Just(" "), Just("\t"), Just("  ")]
}

fn header() -> impl Strategy<Value = Hdr> {
    (name(), ws(), ws(), value()).prop_map(|(name, pre, post, value)| Hdr {
        name,
        pre,
        post,
        value,
    })
}

fn via_value() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(("[a-z]{1,6}", 0u32..99999, any::<bool>()), 1..4).prop_map(|vs| {
        let parts: Vec<String> = vs
            .into_iter()
            .map(|(h, b, rport)| {
                let r = if rport { ";rport" } else { "" };
                format!("SIP/2.0/UDP {h}.example.com;branch=z9hG4bK{b}{r}")
            })
            .collect();
        parts.join(", ").into_bytes()
    })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..64)
}

/// A message with a correct Content-Length at a random position, spelled in a random way.
fn model() -> impl Strategy<Value = Model> {
    (
        start(),
        proptest::collection::vec(header(), 0..8),
        proptest::collection::vec(via_value(), 0..3),
        body(),
        any::<prop::sample::Index>(),
        prop_oneof![
            Just("Content-Length"),
            Just("l"),
            Just("content-length"),
            Just("L")
        ],
        ws(),
    )
        .prop_map(|(start, mut headers, vias, body, at, cl_name, pre)| {
            for (i, v) in vias.into_iter().enumerate() {
                headers.insert(
                    i.min(headers.len()),
                    hdr(if i % 2 == 0 { "Via" } else { "v" }, &v),
                );
            }
            let cl = Hdr {
                name: cl_name.to_string(),
                pre,
                post: " ",
                value: body.len().to_string().into_bytes(),
            };
            let at = at.index(headers.len() + 1);
            headers.insert(at, cl);
            Model {
                start,
                headers,
                body,
            }
        })
}

fn parse(b: &[u8]) -> Message {
    parse_datagram(Bytes::copy_from_slice(b), &Limits::default())
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(b)))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn parse_reads_back_and_serialises_identically(m in model()) {
        let wire = m.wire();
        let msg = parse(&wire);
        match &m.start {
            Start::Request { method, uri } => {
                prop_assert_eq!(msg.method_bytes(), method.as_bytes());
                prop_assert_eq!(msg.method(), Some(Method::from_bytes(method.as_bytes())));
                prop_assert_eq!(msg.request_uri(), uri.as_bytes());
            }
            Start::Response { code, reason } => {
                prop_assert_eq!(msg.status(), Some(*code));
                prop_assert_eq!(msg.reason(), &reason[..]);
            }
        }
        let fields: Vec<(Vec<u8>, Vec<u8>)> =
            msg.fields().map(|f| (f.name.to_vec(), f.value.to_vec())).collect();
        let expected: Vec<(Vec<u8>, Vec<u8>)> =
            m.headers.iter().map(|h| (h.name.clone().into_bytes(), h.value.clone())).collect();
        prop_assert_eq!(fields, expected);
        for f in msg.fields() {
            prop_assert_eq!(f.kind, HeaderName::from_bytes(f.name));
        }
        prop_assert_eq!(msg.body(), &m.body[..]);
        prop_assert_eq!(&msg.bytes()[..], &wire[..]);
        // Serialising without edits reproduces the bytes exactly.
        prop_assert_eq!(&Editor::new(&msg).finish()[..], &wire[..]);
    }

    #[test]
    fn trailing_datagram_bytes_are_not_the_message(m in model(), junk in body()) {
        let wire = m.wire();
        let mut d = wire.clone();
        d.extend_from_slice(&junk);
        let msg = parse(&d);
        prop_assert_eq!(&msg.bytes()[..], &wire[..]);
        prop_assert_eq!(msg.body(), &m.body[..]);
    }
}

/// Headers an edit test message has besides the ones the edits look at.
fn other_header() -> impl Strategy<Value = Hdr> {
    (
        prop_oneof![
            Just("Subject".to_string()),
            Just("Supported".to_string()),
            Just("Allow".to_string()),
            "X-[A-Za-z]{1,8}",
        ],
        value(),
    )
        .prop_map(|(name, value)| hdr(&name, &value))
}

#[derive(Debug, Clone)]
struct EditCase {
    model: Model,
    max_forwards: Option<u8>,
    routes: Vec<Vec<u8>>,
    set_ruri: bool,
    push_via: bool,
    remove_top_via: bool,
    received: bool,
    decrement_mf: bool,
    record_route: bool,
    pop_route: bool,
    new_body: Option<Vec<u8>>,
    set_x: bool,
    remove_subject: bool,
}

fn edit_case() -> impl Strategy<Value = EditCase> {
    (
        (
            method(),
            uri(),
            proptest::collection::vec(other_header(), 0..6),
            proptest::collection::vec(via_value(), 1..3),
            prop::option::of(1u8..=255),
            proptest::collection::vec(r"<sip:[a-z]{1,6}\.example\.com;lr>", 0..3),
            any::<bool>(),
            body(),
        ),
        proptest::collection::vec(any::<bool>(), 10),
        prop::option::of(body()),
    )
        .prop_map(
            |((method, uri, others, vias, mf, routes, routes_one_line, body), f, new_body)| {
                let mut headers = Vec::new();
                for (i, v) in vias.iter().enumerate() {
                    headers.push(hdr(if i == 0 { "v" } else { "Via" }, v));
                }
                if let Some(mf) = mf {
                    headers.push(hdr("Max-Forwards", mf.to_string().as_bytes()));
                }
                if routes_one_line && !routes.is_empty() {
                    headers.push(hdr("Route", routes.join(", ").as_bytes()));
                } else {
                    for r in &routes {
                        headers.push(hdr("Route", r.as_bytes()));
                    }
                }
                headers.extend(others);
                headers.push(hdr("Content-Length", body.len().to_string().as_bytes()));
                let remove_top_via = f[2];
                EditCase {
                    model: Model {
                        start: Start::Request { method, uri },
                        headers,
                        body,
                    },
                    max_forwards: mf,
                    routes: routes.into_iter().map(String::into_bytes).collect(),
                    set_ruri: f[0],
                    push_via: f[1],
                    remove_top_via,
                    // Both touch the top Via; the editor refuses overlapping edits.
                    received: f[3] && !remove_top_via,
                    decrement_mf: f[4],
                    record_route: f[5],
                    pop_route: f[6],
                    new_body,
                    set_x: f[8],
                    remove_subject: f[9],
                }
            },
        )
}

fn via_values(m: &Message) -> Vec<Vec<u8>> {
    m.headers(HeaderName::Via)
        .flat_map(|v| split_list(v).map(|i| i.value.to_vec()).collect::<Vec<_>>())
        .collect()
}

fn route_values(m: &Message) -> Vec<Vec<u8>> {
    m.headers(HeaderName::Route)
        .flat_map(|v| split_list(v).map(|i| i.value.to_vec()).collect::<Vec<_>>())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn edits_parse_and_read_back(c in edit_case()) {
        let wire = c.model.wire();
        let msg = parse(&wire);
        let mut ed = Editor::new(&msg);
        let ruri = b"sip:next@192.0.2.1:5080;transport=tcp";
        let new_via = b"SIP/2.0/TCP proxy.example.net;branch=z9hG4bKedit";
        if c.set_ruri { ed.set_request_uri(ruri).unwrap(); }
        if c.push_via { ed.push_via(new_via).unwrap(); }
        if c.remove_top_via { ed.remove_top_via().unwrap(); }
        if c.received { ed.set_via_received(b"203.0.113.5", 6000).unwrap(); }
        let mf = if c.decrement_mf { Some(ed.decrement_max_forwards()) } else { None };
        if c.record_route { ed.prepend_record_route(b"<sip:rr.example.net;lr>").unwrap(); }
        let popped = if c.pop_route { ed.pop_route().unwrap() } else { false };
        if let Some(b) = &c.new_body { ed.set_body(b).unwrap(); }
        if c.set_x { ed.set_header(b"X-Set", b"set value").unwrap(); }
        if c.remove_subject { ed.remove_header(b"Subject").unwrap(); }

        let bytes = ed.finish();
        prop_assert_eq!(bytes.len(), ed.output_len());
        let out = parse(&bytes);

        let expected_ruri: &[u8] = if c.set_ruri { ruri } else { msg.request_uri() };
        prop_assert_eq!(out.request_uri(), expected_ruri);

        let mut vias = via_values(&msg);
        if c.remove_top_via { vias.remove(0); }
        if c.received {
            let v = &mut vias[0];
            // Generated sent-by hosts are names, never the source address.
            if let Some(p) = find(v, b";rport") {
                v.splice(p + 6..p + 6, b"=6000".iter().copied());
            }
            v.extend_from_slice(b";received=203.0.113.5");
        }
        if c.push_via { vias.insert(0, new_via.to_vec()); }
        prop_assert_eq!(via_values(&out), vias);

        if let Some(mf) = mf {
            let expect = c.max_forwards.map_or(70, |n| n - 1);
            if c.max_forwards == Some(0) {
                prop_assert!(mf.is_err());
            } else {
                prop_assert_eq!(mf.unwrap(), expect);
                let expect_text = expect.to_string();
                prop_assert_eq!(out.header(HeaderName::MaxForwards), Some(expect_text.as_bytes()));
            }
        }

        if c.record_route {
            prop_assert_eq!(out.header(HeaderName::RecordRoute), Some(&b"<sip:rr.example.net;lr>"[..]));
        }
        let mut routes = c.routes.clone();
        if c.pop_route {
            prop_assert_eq!(popped, !routes.is_empty());
            if !routes.is_empty() { routes.remove(0); }
        }
        prop_assert_eq!(route_values(&out), routes);

        let body = c.new_body.as_deref().unwrap_or(&c.model.body);
        prop_assert_eq!(out.body(), body);
        prop_assert_eq!(out.content_length(), Some(body.len()));
        prop_assert_eq!(out.header_count(HeaderName::ContentLength), 1);

        if c.set_x {
            prop_assert_eq!(out.headers_named(b"x-set").collect::<Vec<_>>(), vec![&b"set value"[..]]);
        }
        if c.remove_subject {
            prop_assert_eq!(out.header(HeaderName::Subject), None);
        }
        // Untouched headers keep their values and order.
        let untouched = |m: &Message| -> Vec<(Vec<u8>, Vec<u8>)> {
            m.fields()
                .filter(|f| matches!(f.kind, HeaderName::Supported | HeaderName::Allow)
                    || (f.kind == HeaderName::Other && !f.name.eq_ignore_ascii_case(b"x-set")))
                .map(|f| (f.name.to_vec(), f.value.to_vec()))
                .collect()
        };
        prop_assert_eq!(untouched(&out), untouched(&msg));
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn keepalive() -> impl Strategy<Value = &'static [u8]> {
    prop_oneof![
        Just(&b""[..]),
        Just(&b"\r\n"[..]),
        Just(&b"\r\n\r\n"[..]),
        Just(&b"\r\n\r\n\r\n\r\n"[..])
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn stream_framing_ignores_chunking(
        parts in proptest::collection::vec((keepalive(), model()), 1..5),
        tail in keepalive(),
        chunks in proptest::collection::vec(1usize..40, 1..64),
    ) {
        let mut stream = Vec::new();
        let mut expected = Vec::new();
        let mut pings = 0;
        for (ka, m) in &parts {
            stream.extend_from_slice(ka);
            pings += ka.len() / 4;
            let w = m.wire();
            stream.extend_from_slice(&w);
            expected.push(w);
        }
        stream.extend_from_slice(tail);
        pings += tail.len() / 4;

        // Random chunk sizes, cycling.
        let mut f = StreamFramer::new(Limits::default());
        let mut got = Vec::new();
        let mut pos = 0;
        let mut i = 0;
        while pos < stream.len() {
            let n = chunks[i % chunks.len()].min(stream.len() - pos);
            f.push(&stream[pos..pos + n]);
            pos += n;
            i += 1;
            while let Some(m) = f.next_message().unwrap() {
                got.push(m.bytes().to_vec());
            }
        }
        prop_assert_eq!(&got, &expected);
        prop_assert_eq!(f.take_pings(), pings);
        prop_assert_eq!(f.buffered(), 0);

        // Every single cut point.
        for cut in 0..=stream.len() {
            let mut f = StreamFramer::new(Limits::default());
            let mut got = Vec::new();
            for part in [&stream[..cut], &stream[cut..]] {
                f.push(part);
                while let Some(m) = f.next_message().unwrap() {
                    got.push(m.bytes().to_vec());
                }
            }
            prop_assert_eq!(&got, &expected, "cut at {}", cut);
        }
    }
}
