//! Small reads of a parsed message the proxy logic needs, over the codec's views.

use std::net::SocketAddr;

use trunkstore_sip::headers::CSeq;
use trunkstore_sip::message::{HeaderName, Message};
use trunkstore_sip::nameaddr::{header_params, NameAddr};
use trunkstore_sip::scan::{eq_ignore_case, split_list};
use trunkstore_sip::uri::{Host, Uri};
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

pub(crate) fn tag_of(v: Option<&[u8]>) -> Option<&[u8]> {
    header_params(v?)?.value(b"tag")
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

/// Is `host:port` (port defaulting to 5060) one of our addresses?
pub(crate) fn is_us(cfg: &ProxyConfig, host: &Host<'_>, port: Option<u16>) -> bool {
    let port = port.unwrap_or(5060);
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
        || cfg.aliases.iter().any(|(h, p)| same(h, *p))
        || cfg
            .listeners
            .iter()
            .any(|l| same(&l.advertise.host, l.advertise.port))
}

pub(crate) fn via_is_us(cfg: &ProxyConfig, v: &Via<'_>) -> bool {
    let sb = v.sent_by();
    is_us(cfg, &sb.host, sb.port)
}

/// The URI inside a Route/Record-Route value.
pub(crate) fn route_uri(value: &[u8]) -> Option<Uri<'_>> {
    NameAddr::parse(value).ok()?.sip_uri().copied()
}

pub(crate) fn uri_is_us(cfg: &ProxyConfig, uri: &Uri<'_>) -> bool {
    match uri.host() {
        Some(h) => is_us(cfg, &h, uri.port()),
        None => false,
    }
}

/// The next hop a SIP URI names: its host (an IP literal; the core does no DNS), port
/// (5060 by default) and `transport` parameter.
pub(crate) fn uri_next_hop(uri: &Uri<'_>) -> Option<Peer> {
    let ip = uri.host()?.ip()?;
    let transport = match uri.transport() {
        Some(t) if eq_ignore_case(t, b"tcp") => Transport::Tcp,
        _ => Transport::Udp,
    };
    Some(Peer {
        transport,
        addr: SocketAddr::new(ip, uri.port().unwrap_or(5060)),
    })
}
