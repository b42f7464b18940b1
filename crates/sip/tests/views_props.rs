//! Property tests for the typed header views: no panics on any bytes, generated values
//! read back, digest format/parse identity.

use std::net::{Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use trunkstore_sip::digest::{Challenge, Credentials};
use trunkstore_sip::headers::{
    call_id, content_length, expires, max_forwards, option_tags, CSeq, ContentType,
};
use trunkstore_sip::nameaddr::{contacts, header_params, name_addrs, NameAddr};
use trunkstore_sip::params::{ParamSyntax, Params};
use trunkstore_sip::scan::{list_removal_range, split_list, unescape_percent, unescape_quoted};
use trunkstore_sip::uri::{AnyUri, Host, HostKind, Uri};
use trunkstore_sip::via::{vias, Rport, Via};

/// Runs every view over `b`; only a panic fails.
fn exercise(b: &[u8]) {
    if let Ok(u) = Uri::parse(b) {
        let _ = (
            u.host_port(),
            u.user_unescaped(),
            u.params().iter().count(),
            u.maddr(),
        );
    }
    let _ = Uri::parse_in_header(b);
    let _ = AnyUri::parse(b).map(|u| u.scheme().len());
    if let Ok(n) = NameAddr::parse(b) {
        let _ = (n.tag(), n.display_name_unescaped());
        // The parameter-only reading finds the same parameters wherever the full one works.
        assert_eq!(
            header_params(b),
            Some(n.params()),
            "{:?}",
            String::from_utf8_lossy(b)
        );
    } else {
        let _ = header_params(b);
    }
    let _ = name_addrs(b).count();
    let _ = contacts(b).count();
    let _ = Via::parse(b);
    for (v, r) in vias(b).flatten() {
        let _ = (v.received().and_then(|h| h.ip()), v.has_magic_cookie());
        let _ = list_removal_range(b, r);
    }
    let _ = CSeq::parse(b);
    let _ = call_id(b);
    let _ = max_forwards(b);
    let _ = content_length(b);
    let _ = expires(b);
    let _ = ContentType::parse(b);
    let _ = option_tags(b).count();
    if let Ok(c) = Challenge::parse(b) {
        let _ = (c.qop_options().count(), c.algorithm());
    }
    if let Ok(c) = Credentials::parse(b) {
        let _ = c.expected_response(b"pw", b"INVITE", b);
    }
    let _ = Params::parse(b, ParamSyntax::Header);
    let _ = Params::parse(b, ParamSyntax::Uri);
    let _ = Params::new(b).iter().count();
    let _ = Params::new(b).get(b"tag");
    for item in split_list(b) {
        let _ = list_removal_range(b, item.range);
    }
    let _ = (unescape_quoted(b), unescape_percent(b));
    if let Ok(h) = Host::parse(b) {
        let _ = h.ip();
    }
    if let Ok(h) = Host::parse_ip(b) {
        let _ = h.ip();
    }
}

/// Bytes biased towards SIP syntax so parsers get past their first checks.
fn sipish() -> impl Strategy<Value = Vec<u8>> {
    let alphabet: &[u8] =
        b"sip:SIP/2.0UDP@;=,<>\"\\[]. \r\n\t0123456789abcdefz%?&*tag;branch=z9hG4bK";
    prop::collection::vec(prop::sample::select(alphabet.to_vec()), 0..80)
}

fn token() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9][a-zA-Z0-9.!%*_+`'~-]{0,12}"
}

fn domain() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9-]{0,8}[a-z0-9](\\.[a-z][a-z0-9]{0,8}){0,3}"
}

#[derive(Debug, Clone)]
enum GenHost {
    Name(String),
    V4(Ipv4Addr),
    V6(Ipv6Addr),
}

impl GenHost {
    fn wire(&self) -> String {
        match self {
            GenHost::Name(n) => n.clone(),
            GenHost::V4(a) => a.to_string(),
            GenHost::V6(a) => format!("[{a}]"),
        }
    }
    fn text(&self) -> String {
        match self {
            GenHost::Name(n) => n.clone(),
            GenHost::V4(a) => a.to_string(),
            GenHost::V6(a) => a.to_string(),
        }
    }
    fn kind(&self) -> HostKind {
        match self {
            GenHost::Name(_) => HostKind::Domain,
            GenHost::V4(_) => HostKind::Ipv4,
            GenHost::V6(_) => HostKind::Ipv6,
        }
    }
}

fn host() -> impl Strategy<Value = GenHost> {
    prop_oneof![
        domain().prop_map(GenHost::Name),
        any::<[u8; 4]>().prop_map(|o| GenHost::V4(Ipv4Addr::from(o))),
        any::<[u16; 8]>().prop_map(|g| GenHost::V6(Ipv6Addr::from(g))),
        // Few groups so compressed forms and IPv4-mapped tails show up often.
        (any::<u16>(), any::<[u8; 4]>()).prop_map(|(a, o)| {
            GenHost::V6(if a % 2 == 0 {
                Ipv4Addr::from(o).to_ipv6_mapped()
            } else {
                Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, a, 1)
            })
        }),
    ]
}

/// Lowercase/uppercase param names and optional values, URI-safe.
fn uri_params() -> impl Strategy<Value = Vec<(String, Option<String>)>> {
    prop::collection::vec(
        (
            "[a-z][a-z0-9-]{0,8}",
            prop::option::of("[a-zA-Z0-9.~_-]{1,10}"),
        ),
        0..4,
    )
}

/// Optional LWS, including folds.
fn lws() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["", " ", "  ", "\t", "\r\n ", " \r\n\t"])
}

fn printable() -> impl Strategy<Value = String> {
    "[ -~]{0,20}"
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn views_never_panic_on_arbitrary_bytes(b in prop::collection::vec(any::<u8>(), 0..128)) {
        exercise(&b);
    }

    #[test]
    fn views_never_panic_on_sipish_bytes(b in sipish()) {
        exercise(&b);
    }

    #[test]
    fn generated_uris_read_back(
        secure in any::<bool>(),
        user in prop::option::of("[a-zA-Z0-9_.!~*'()&=+$,;?/-]{1,12}"),
        password in prop::option::of("[a-zA-Z0-9&=+$,]{0,8}"),
        h in host(),
        port in prop::option::of(1u16..),
        params in uri_params(),
    ) {
        let mut s = String::from(if secure { "sips:" } else { "sip:" });
        if let Some(u) = &user {
            s.push_str(u);
            if let Some(p) = &password {
                s.push(':');
                s.push_str(p);
            }
            s.push('@');
        }
        s.push_str(&h.wire());
        if let Some(p) = port {
            s.push_str(&format!(":{p}"));
        }
        for (n, v) in &params {
            s.push(';');
            s.push_str(n);
            if let Some(v) = v {
                s.push('=');
                s.push_str(v);
            }
        }
        let u = Uri::parse(s.as_bytes()).map_err(|e| TestCaseError::fail(format!("{s}: {e}")))?;
        prop_assert_eq!(u.user(), user.as_deref().map(str::as_bytes));
        let want_pw = user.as_ref().and(password.as_deref()).map(str::as_bytes);
        prop_assert_eq!(u.password(), want_pw);
        let got = u.host().unwrap();
        prop_assert_eq!(got.kind(), h.kind());
        prop_assert_eq!(got.as_bytes().to_vec(), h.text().into_bytes());
        if let GenHost::V6(a) = h {
            prop_assert_eq!(got.ip(), Some(std::net::IpAddr::V6(a)));
        }
        prop_assert_eq!(u.port(), port);
        let read: Vec<_> = u.params().iter().map(|p| (p.name.to_vec(), p.value.map(<[u8]>::to_vec))).collect();
        let want: Vec<_> = params.iter().map(|(n, v)| (n.as_bytes().to_vec(), v.as_ref().map(|v| v.as_bytes().to_vec()))).collect();
        prop_assert_eq!(read, want);
        prop_assert_eq!(u.as_bytes(), s.as_bytes());
    }

    #[test]
    fn generated_vias_read_back(
        transport in prop::sample::select(vec!["UDP", "tcp", "TLS", "SCTP", "WS", "WSS", "X-NEW"]),
        h in host(),
        port in prop::option::of(1u16..),
        branch in "[a-zA-Z0-9.!%*_+`'~-]{1,20}",
        received in prop::option::of((any::<bool>(), any::<[u8; 4]>(), any::<[u16; 8]>(), any::<bool>())),
        rport in prop::option::of(prop::option::of(1u16..)),
        sp in (lws(), lws(), lws(), lws()),
        n in 1usize..4,
    ) {
        let mut one = format!("SIP{}/{}2.0{}/{}{} {}", sp.0, sp.1, sp.2, sp.1, transport, h.wire());
        if let Some(p) = port {
            one.push_str(&format!("{}:{}{p}", sp.3, sp.0));
        }
        one.push_str(&format!("{};{}branch{}={}{}", sp.2, sp.1, sp.3, sp.0, branch));
        let want_received = received.map(|(v4, o, g, brackets)| {
            if v4 {
                (Ipv4Addr::from(o).to_string(), Ipv4Addr::from(o).to_string())
            } else {
                let a = Ipv6Addr::from(g).to_string();
                (if brackets { format!("[{a}]") } else { a.clone() }, a)
            }
        });
        if let Some((wire, _)) = &want_received {
            one.push_str(&format!(";received={wire}"));
        }
        match rport {
            None => {}
            Some(None) => one.push_str(";rport"),
            Some(Some(p)) => one.push_str(&format!(";rport={p}")),
        }
        let line = vec![one.clone(); n].join(&format!("{},{}", sp.3, sp.0));
        let all: Vec<_> = vias(line.as_bytes()).collect();
        prop_assert_eq!(all.len(), n);
        for r in all {
            let (v, range) = r.map_err(|e| TestCaseError::fail(format!("{line:?}: {e}")))?;
            prop_assert_eq!(&line.as_bytes()[range], one.as_bytes());
            prop_assert!(v.is_sip_2_0());
            prop_assert_eq!(v.transport(), transport.as_bytes());
            prop_assert_eq!(v.host().as_bytes().to_vec(), h.text().into_bytes());
            prop_assert_eq!(v.port(), port);
            prop_assert_eq!(v.branch(), Some(branch.as_bytes()));
            prop_assert_eq!(
                v.received().map(|h| h.as_bytes().to_vec()),
                want_received.as_ref().map(|(_, t)| t.as_bytes().to_vec())
            );
            let want_rport = match rport {
                None => Rport::Absent,
                Some(None) => Rport::Requested,
                Some(Some(p)) => Rport::Value(p),
            };
            prop_assert_eq!(v.rport(), want_rport);
        }
    }

    #[test]
    fn generated_name_addrs_read_back(
        display in prop::option::of(printable()),
        token_display in prop::option::of("[a-zA-Z0-9.!%*_+`'~-]{1,8}( [a-zA-Z0-9]{1,8}){0,2}"),
        user in "[a-z0-9]{1,10}",
        h in host(),
        uparams in uri_params(),
        tag in prop::option::of(token()),
        bracket in any::<bool>(),
        sp in (lws(), lws()),
    ) {
        let mut uri = format!("sip:{user}@{}", h.wire());
        let bracketed = bracket || display.is_some() || token_display.is_some() || !uparams.is_empty();
        for (n, v) in &uparams {
            uri.push(';');
            uri.push_str(n);
            if let Some(v) = v {
                uri.push('=');
                uri.push_str(v);
            }
        }
        let mut s = Vec::new();
        if let Some(d) = &display {
            trunkstore_sip::scan::write_quoted(&mut s, d.as_bytes());
            s.extend_from_slice(sp.0.as_bytes());
        } else if let Some(t) = &token_display {
            s.extend_from_slice(t.as_bytes());
            s.extend_from_slice(sp.0.as_bytes());
        }
        if bracketed {
            s.push(b'<');
        }
        s.extend_from_slice(uri.as_bytes());
        if bracketed {
            s.push(b'>');
        }
        if let Some(t) = &tag {
            s.extend_from_slice(format!("{};{}tag{}={}{}", sp.1, sp.0, sp.1, sp.0, t).as_bytes());
        }
        let na = NameAddr::parse(&s).map_err(|e| TestCaseError::fail(format!("{:?}: {e}", String::from_utf8_lossy(&s))))?;
        match (&display, &token_display) {
            (Some(d), _) => prop_assert_eq!(na.display_name_unescaped().unwrap().into_owned(), d.as_bytes().to_vec()),
            (None, Some(t)) => prop_assert_eq!(na.display_name(), Some(t.as_bytes())),
            (None, None) => prop_assert_eq!(na.display_name(), None),
        }
        prop_assert_eq!(na.is_bracketed(), bracketed);
        prop_assert_eq!(na.uri().as_bytes(), uri.as_bytes());
        let u = na.sip_uri().unwrap();
        prop_assert_eq!(u.user(), Some(user.as_bytes()));
        prop_assert_eq!(u.host().unwrap().as_bytes().to_vec(), h.text().into_bytes());
        prop_assert_eq!(u.params().iter().count(), uparams.len());
        prop_assert_eq!(na.tag(), tag.as_deref().map(str::as_bytes));
        prop_assert_eq!(header_params(&s), Some(na.params()));
        // The same value twice in a list reads back twice.
        let mut list = s.clone();
        list.extend_from_slice(b" ,\r\n ");
        list.extend_from_slice(&s);
        prop_assert_eq!(name_addrs(&list).filter(|r| r.is_ok()).count(), 2);
    }

    #[test]
    fn digest_challenge_format_parse_identity(
        realm in printable(),
        nonce in printable(),
        opaque in prop::option::of(printable()),
        stale in any::<bool>(),
        qop in prop::option::of(prop::sample::select(vec!["auth", "auth,auth-int", "auth-int"])),
        algorithm in prop::option::of(prop::sample::select(vec!["MD5", "MD5-sess", "SHA-256", "SHA-256-sess"])),
        domain in prop::option::of(printable()),
    ) {
        let c = Challenge {
            realm: realm.as_bytes(),
            nonce: nonce.as_bytes(),
            opaque: opaque.as_deref().map(str::as_bytes),
            stale,
            algorithm: algorithm.map(str::as_bytes),
            qop: qop.map(str::as_bytes),
            domain: domain.as_deref().map(str::as_bytes),
        };
        let mut buf = Vec::new();
        c.write_value(&mut buf);
        let p = Challenge::parse(&buf).map_err(|e| TestCaseError::fail(format!("{:?}: {e}", String::from_utf8_lossy(&buf))))?;
        prop_assert_eq!(unescape_quoted(p.realm).into_owned(), c.realm.to_vec());
        prop_assert_eq!(unescape_quoted(p.nonce).into_owned(), c.nonce.to_vec());
        prop_assert_eq!(p.opaque.map(|v| unescape_quoted(v).into_owned()), c.opaque.map(<[u8]>::to_vec));
        prop_assert_eq!(p.domain.map(|v| unescape_quoted(v).into_owned()), c.domain.map(<[u8]>::to_vec));
        prop_assert_eq!(p.stale, c.stale);
        prop_assert_eq!(p.algorithm, c.algorithm);
        prop_assert_eq!(p.qop, c.qop);
    }

    #[test]
    fn digest_credentials_format_parse_identity(
        username in printable(),
        realm in printable(),
        nonce in printable(),
        uri in printable(),
        response in "[0-9a-f]{32}",
        with_qop in any::<bool>(),
        cnonce in printable(),
        nc in any::<u32>(),
        opaque in prop::option::of(printable()),
        algorithm in prop::option::of(prop::sample::select(vec!["MD5", "SHA-256"])),
    ) {
        let nc_text = format!("{nc:08x}");
        let c = Credentials {
            username: username.as_bytes(),
            realm: realm.as_bytes(),
            nonce: nonce.as_bytes(),
            uri: uri.as_bytes(),
            response: response.as_bytes(),
            algorithm: algorithm.map(str::as_bytes),
            cnonce: with_qop.then_some(cnonce.as_bytes()),
            opaque: opaque.as_deref().map(str::as_bytes),
            qop: with_qop.then_some(&b"auth"[..]),
            nc: with_qop.then_some(nc_text.as_bytes()),
        };
        let mut buf = Vec::new();
        c.write_value(&mut buf);
        let p = Credentials::parse(&buf).map_err(|e| TestCaseError::fail(format!("{:?}: {e}", String::from_utf8_lossy(&buf))))?;
        for (got, want) in [
            (p.username, c.username),
            (p.realm, c.realm),
            (p.nonce, c.nonce),
            (p.uri, c.uri),
            (p.response, c.response),
        ] {
            prop_assert_eq!(unescape_quoted(got).into_owned(), want.to_vec());
        }
        prop_assert_eq!(p.cnonce.map(|v| unescape_quoted(v).into_owned()), c.cnonce.map(<[u8]>::to_vec));
        prop_assert_eq!(p.opaque.map(|v| unescape_quoted(v).into_owned()), c.opaque.map(<[u8]>::to_vec));
        prop_assert_eq!(p.qop, c.qop);
        prop_assert_eq!(p.algorithm, c.algorithm);
        prop_assert_eq!(p.nc(), with_qop.then_some(nc));
        // The response computed from parsed and original fields agrees (when unescaped equal).
        if !buf.contains(&b'\\') {
            prop_assert_eq!(
                p.expected_response(b"pw", b"INVITE", b""),
                c.expected_response(b"pw", b"INVITE", b"")
            );
        }
    }
}
