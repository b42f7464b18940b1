//! Small reads of a parsed message the proxy logic needs, over the codec's views.

use std::net::SocketAddr;

use trunkstore_sip::headers::CSeq;
use trunkstore_sip::message::{HeaderName, Message};
use trunkstore_sip::nameaddr::{tag_param, NameAddr};
use trunkstore_sip::scan::{eq_ignore_case, split_list};
use trunkstore_sip::uri::{Host, Scheme, Uri};
use trunkstore_sip::via::{self, Via};

use crate::config::ProxyConfig;
use crate::types::{Peer, Transport};

/// The top Via value (the first value of the first Via line).
pub(crate) fn top_via(msg: &Message) -> Option<Via<'_>> {
    let line = msg.header(HeaderName::Via)?;
    via::vias(line).next()?.ok().map(|(v, _)| v)
}

/// Every Via value, across lines (comma-joined values included).
pub(crate) fn all_vias(msg: &Message) -> impl Iterator<Item = Via<'_>> + '_ {
    msg.headers(HeaderName::Via)
        .flat_map(via::vias)
        .filter_map(|r| r.ok().map(|(v, _)| v))
}

/// Every Route value, across lines.
pub(crate) fn routes(msg: &Message) -> impl Iterator<Item = &[u8]> + '_ {
    msg.headers(HeaderName::Route)
        .flat_map(split_list)
        .map(|i| i.value)
}

/// What names a request's dialog (§12): its Call-ID and tags, read once per request and
/// handed to whatever needs them (loop detection, dialog matching, the dialog key). A
/// tag read is a parameter scan of the From or To value, ~400 instructions; a request
/// used to have each read up to three times.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DialogIds<'a> {
    pub call_id: &'a [u8],
    pub from_tag: Option<&'a [u8]>,
    pub to_tag: Option<&'a [u8]>,
}

impl<'a> DialogIds<'a> {
    /// Read from the message (its From and To not parsed before).
    pub(crate) fn of(msg: &'a Message) -> DialogIds<'a> {
        DialogIds {
            call_id: call_id(msg),
            from_tag: from_tag(msg),
            to_tag: to_tag(msg),
        }
    }

    /// Read from the From and To validation parsed (the first of each, as validation
    /// and loop detection always read them).
    pub(crate) fn of_checked(
        msg: &'a Message,
        from: &NameAddr<'a>,
        to: &NameAddr<'a>,
    ) -> DialogIds<'a> {
        DialogIds {
            call_id: call_id(msg),
            from_tag: from.tag(),
            to_tag: to.tag(),
        }
    }
}

pub(crate) fn tag_of(v: Option<&[u8]>) -> Option<&[u8]> {
    tag_param(v?)
}

pub(crate) fn from_tag(msg: &Message) -> Option<&[u8]> {
    tag_of(msg.header(HeaderName::From))
}

pub(crate) fn to_tag(msg: &Message) -> Option<&[u8]> {
    tag_of(msg.header(HeaderName::To))
}

pub(crate) fn cseq(msg: &Message) -> Option<CSeq<'_>> {
    CSeq::parse(msg.header(HeaderName::CSeq)?).ok()
}

pub(crate) fn call_id(msg: &Message) -> &[u8] {
    msg.header(HeaderName::CallId).unwrap_or(b"")
}

/// Is `host:port` one of our addresses? `port` is what the message says, else the
/// default of its scheme or transport (5060, or 5061 for `sips:` and TLS).
pub(crate) fn is_us(cfg: &ProxyConfig, host: &Host<'_>, port: u16) -> bool {
    let text = host.as_bytes();
    let same = |h: &str, p: u16| {
        p == port
            && eq_ignore_case(
                h.trim_start_matches('[').trim_end_matches(']').as_bytes(),
                text,
            )
    };
    same(&cfg.advertise_udp.host, cfg.advertise_udp.port)
        || same(&cfg.advertise_tcp.host, cfg.advertise_tcp.port)
        || same(&cfg.advertise_tls.host, cfg.advertise_tls.port)
        || cfg.aliases.iter().any(|(h, p)| same(h, *p))
        || cfg
            .listeners
            .iter()
            .any(|l| same(&l.advertise.host, l.advertise.port))
}

pub(crate) fn via_is_us(cfg: &ProxyConfig, v: &Via<'_>) -> bool {
    let sb = v.sent_by();
    let default = match v.transport_kind() {
        via::Transport::Tls => Transport::Tls,
        _ => Transport::Udp,
    }
    .default_port();
    is_us(cfg, &sb.host, sb.port.unwrap_or(default))
}

/// The URI inside a Route/Record-Route value.
pub(crate) fn route_uri(value: &[u8]) -> Option<Uri<'_>> {
    NameAddr::parse(value).ok()?.sip_uri().copied()
}

/// Does a Route value name us? One of our own Record-Route entries sent back unchanged
/// (the usual case) is known by its bytes; anything else is parsed.
pub(crate) fn route_is_us(cfg: &ProxyConfig, sides: &crate::sides::Sides, value: &[u8]) -> bool {
    let parsed = |v: &[u8]| route_uri(v).is_some_and(|u| uri_is_us(cfg, &u));
    sides.is_own_route(value, parsed) || parsed(value)
}

pub(crate) fn uri_is_us(cfg: &ProxyConfig, uri: &Uri<'_>) -> bool {
    match uri.host() {
        // The default port reads the transport parameter: only when there is no port.
        Some(h) => is_us(cfg, &h, uri.port().unwrap_or_else(|| uri_default_port(uri))),
        None => false,
    }
}

/// The port a URI without one means: 5061 for `sips:` and `;transport=tls`, else 5060
/// (RFC 3261 §19.1.2).
fn uri_default_port(uri: &Uri<'_>) -> u16 {
    uri_transport(uri).map_or(5060, Transport::default_port)
}

/// The transport a SIP URI asks for: its `transport` parameter, TLS for any `sips:` URI
/// (`sips:…;transport=tcp` is TLS over TCP, RFC 5630 §3.1.1); `None` for what cannot be
/// honoured (`sips:` over UDP, an unknown transport, a `tel:` URI).
pub(crate) fn uri_transport(uri: &Uri<'_>) -> Option<Transport> {
    let param = uri.transport();
    let named = |name: &[u8]| param.is_some_and(|t| eq_ignore_case(t, name));
    match uri.scheme() {
        Scheme::Sips if param.is_none() || named(b"tcp") || named(b"tls") => Some(Transport::Tls),
        Scheme::Sip if param.is_none() || named(b"udp") => Some(Transport::Udp),
        Scheme::Sip if named(b"tcp") => Some(Transport::Tcp),
        Scheme::Sip if named(b"tls") => Some(Transport::Tls),
        _ => None,
    }
}

/// The next hop a SIP URI names: its host (an IP literal; the core does no DNS), port
/// (5060, or 5061 for TLS, by default) and transport ([`uri_transport`]).
pub(crate) fn uri_next_hop(uri: &Uri<'_>) -> Option<Peer> {
    let ip = uri.host()?.ip()?;
    let transport = uri_transport(uri)?;
    Some(Peer {
        transport,
        addr: SocketAddr::new(ip, uri.port().unwrap_or(transport.default_port())),
    })
}

/// RFC 5630 §3.1.3: a request for a `sips:` URI goes only over TLS, never downgraded to
/// UDP or TCP, whatever the route says. `request_uri` is the Request-URI as it will be
/// sent to `hop`; true means it must not be.
pub(crate) fn sips_downgrade(request_uri: &[u8], hop: Peer) -> bool {
    let secure = request_uri
        .get(..5)
        .is_some_and(|s| s.eq_ignore_ascii_case(b"sips:"));
    secure && hop.transport != Transport::Tls
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hop(uri: &str) -> Option<Peer> {
        uri_next_hop(&Uri::parse(uri.as_bytes()).unwrap())
    }

    fn peer(t: Transport, a: &str) -> Option<Peer> {
        Some(Peer {
            transport: t,
            addr: a.parse().unwrap(),
        })
    }

    #[test]
    fn next_hop_transport_and_default_port_follow_scheme_and_parameter() {
        use Transport::*;
        assert_eq!(hop("sip:a@10.0.0.7"), peer(Udp, "10.0.0.7:5060"));
        assert_eq!(
            hop("sip:a@10.0.0.7;transport=tcp"),
            peer(Tcp, "10.0.0.7:5060")
        );
        assert_eq!(
            hop("sip:a@10.0.0.7;transport=TLS"),
            peer(Tls, "10.0.0.7:5061")
        );
        assert_eq!(hop("sips:a@10.0.0.7"), peer(Tls, "10.0.0.7:5061"));
        assert_eq!(
            hop("sips:a@10.0.0.7:5070;transport=tcp"),
            peer(Tls, "10.0.0.7:5070")
        );
        // Never downgraded, and no guessing at transports we do not have.
        assert_eq!(hop("sips:a@10.0.0.7;transport=udp"), None);
        assert_eq!(hop("sip:a@10.0.0.7;transport=sctp"), None);
    }

    #[test]
    fn sips_only_over_tls() {
        let p = |t| Peer {
            transport: t,
            addr: "10.0.0.7:5061".parse().unwrap(),
        };
        assert!(sips_downgrade(b"sips:a@x", p(Transport::Udp)));
        assert!(sips_downgrade(b"SIPS:a@x", p(Transport::Tcp)));
        assert!(!sips_downgrade(b"sips:a@x", p(Transport::Tls)));
        assert!(!sips_downgrade(b"sip:a@x", p(Transport::Udp)));
    }

    #[test]
    fn a_sips_uri_without_a_port_is_us_on_5061() {
        let mut cfg = ProxyConfig::for_tests("10.0.0.1", 5060);
        cfg.advertise_tls.port = 5061;
        let us = |u: &str| uri_is_us(&cfg, &Uri::parse(u.as_bytes()).unwrap());
        assert!(us("sips:10.0.0.1"));
        assert!(us("sip:10.0.0.1"));
        assert!(us("sip:10.0.0.1:5061;transport=tls"));
        assert!(!us("sips:10.0.0.2"));
    }
}
