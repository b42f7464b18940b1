//! Any datagram: parse it, validate it, run every typed view over every header value, and
//! when it parses, the proxy's edits and the builders. Only a panic (or a sanitizer report)
//! is a finding; errors are the expected outcome for most inputs.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use trunkstore_sip::build::{self, ResponseOptions};
use trunkstore_sip::digest::{Challenge, Credentials};
use trunkstore_sip::edit::Editor;
use trunkstore_sip::headers::{
    call_id, content_length, expires, max_forwards, option_tags, p_asserted_identities,
    single_token, CSeq, ContentType,
};
use trunkstore_sip::limits::Limits;
use trunkstore_sip::message::Message;
use trunkstore_sip::nameaddr::{contacts, name_addrs, NameAddr};
use trunkstore_sip::params::{ParamSyntax, Params};
use trunkstore_sip::parse::parse_datagram;
use trunkstore_sip::scan::{list_removal_range, split_list, unescape_percent, unescape_quoted};
use trunkstore_sip::uri::{AnyUri, Host, Uri};
use trunkstore_sip::validate::{validate_request, validate_response};
use trunkstore_sip::via::vias;

fuzz_target!(|data: &[u8]| {
    views(data);
    let Ok(m) = parse_datagram(Bytes::copy_from_slice(data), &Limits::default()) else {
        return;
    };
    let _ = validate_request(&m).map_err(|r| r.unsupported_value());
    let _ = validate_response(&m);
    for f in m.fields() {
        views(f.value);
    }
    if m.is_request() {
        views(m.request_uri());
    }
    edits(&m);
    builders(&m);
});

/// Every view that takes a header value.
fn views(b: &[u8]) {
    if let Ok(u) = Uri::parse(b) {
        let _ = (u.host_port(), u.user_unescaped(), u.params().iter().count());
        let _ = (u.maddr(), u.has_lr(), u.transport(), u.is_user_phone());
        let mut w = Vec::new();
        u.write_to(&mut w);
    }
    let _ = Uri::parse_in_header(b);
    let _ = AnyUri::parse(b).map(|u| u.scheme().len());
    if let Ok(n) = NameAddr::parse(b) {
        let _ = (
            n.tag(),
            n.display_name_unescaped(),
            n.params().iter().count(),
        );
    }
    let _ = name_addrs(b).count();
    let _ = contacts(b).count();
    let _ = p_asserted_identities(b).count();
    for (v, r) in vias(b).flatten() {
        let _ = (v.received().and_then(|h| h.ip()), v.has_magic_cookie());
        let _ = (
            v.transport_kind(),
            v.sent_by().to_string(),
            v.params().iter().count(),
        );
        let _ = list_removal_range(b, r);
    }
    let _ = (
        CSeq::parse(b),
        call_id(b),
        max_forwards(b),
        content_length(b),
    );
    let _ = (expires(b), single_token(b), option_tags(b).count());
    if let Ok(ct) = ContentType::parse(b) {
        let _ = (ct.is_sdp(), ct.boundary());
    }
    if let Ok(c) = Challenge::parse(b) {
        let _ = (c.qop_options().count(), c.algorithm(), c.offers_auth());
        let mut w = Vec::new();
        c.write_header(&mut w, true);
    }
    if let Ok(c) = Credentials::parse(b) {
        let _ = c.expected_response(b"pw", b"INVITE", b);
        let mut w = Vec::new();
        c.write_value(&mut w);
    }
    let _ = Params::parse(b, ParamSyntax::Header);
    let _ = Params::parse(b, ParamSyntax::Uri);
    let _ = Params::new(b).iter().count();
    for item in split_list(b) {
        let _ = list_removal_range(b, item.range);
    }
    let _ = (unescape_quoted(b), unescape_percent(b));
    for h in [Host::parse(b), Host::parse_ip(b)].into_iter().flatten() {
        let _ = (h.ip(), h.to_string());
    }
}

/// The proxy's request and response edits; each output must parse again.
fn edits(m: &Message) {
    let mut ed = Editor::new(m);
    if m.is_request() {
        let _ = ed.set_request_uri(b"sip:+15551234567@10.0.0.5:5060");
        let _ = ed.push_via(b"SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKfuzz");
        let _ = ed.decrement_max_forwards();
        let _ = ed.prepend_record_route(b"<sip:192.0.2.1;lr>");
        let _ = ed.set_via_received(b"2001:db8::7", 5062);
        let _ = ed.pop_route();
    } else {
        let _ = ed.remove_top_via();
    }
    let _ = ed.set_header(b"X-Fuzz", b"1");
    let _ = ed.remove_header(b"Supported");
    let out = ed.finish();
    assert_eq!(out.len(), ed.output_len());
    let _ = parse_datagram(out, &Limits::default());
}

fn builders(m: &Message) {
    let opts = ResponseOptions {
        to_tag: Some(b"fuzz"),
        headers: &[(b"Warning", b"399 fuzz")],
        body: Some((b"application/sdp", b"v=0\r\n")),
    };
    for code in [100, 200, 404] {
        if let Ok(r) = build::response(m, code, b"Reason", &opts) {
            let _ = parse_datagram(r, &Limits::default());
        }
    }
    let _ = build::cancel(m);
    if let Ok(resp) = build::response(m, 486, b"Busy Here", &ResponseOptions::default()) {
        if let Ok(resp) = parse_datagram(resp, &Limits::default()) {
            let _ = build::ack_for_non_2xx(m, &resp);
        }
    }
}
