//! The proxy's sides (RFC 5658): what a message on one listener names us as (Via,
//! Record-Route) and where it leaves from. A request forwarded from one side to another
//! (UDP ↔ TCP ↔ TLS, IPv4 ↔ IPv6, or two listeners with different advertised addresses) is
//! record-routed twice, so that each leg's UA reaches us at an address and over a
//! transport it can use: the entry nearest the callee names the outgoing side, the one
//! below it the incoming side.

use std::net::SocketAddr;
use std::sync::OnceLock;

use crate::config::{Advertise, ProxyConfig};
use crate::types::{Peer, Transport};

/// One side: a listener (or, without listeners in the configuration, one transport).
pub(crate) struct Side {
    transport: Transport,
    /// The listener's address; `None` lets the edge pick.
    pub local: Option<SocketAddr>,
    /// `SIP/2.0/UDP host:port;rport;branch=`: the branch follows.
    pub via_prefix: Box<[u8]>,
    /// `<sip:host:port;lr>` (`;transport=tcp` for TCP, `;transport=tls` for TLS).
    pub record_route: Box<[u8]>,
}

impl Side {
    fn new(transport: Transport, local: Option<SocketAddr>, adv: &Advertise) -> Side {
        Side {
            transport,
            local,
            via_prefix: via_prefix(transport, adv),
            record_route: record_route(transport, adv),
        }
    }
}

/// Every side of the proxy, built once from the configuration.
pub(crate) struct Sides {
    /// One per listener, in the settings' order.
    listeners: Vec<Side>,
    /// Per transport (UDP, TCP, TLS): the configuration's `advertise_*` and `local_*`, for
    /// peers no listener's address family fits.
    fallback: [Side; 3],
    /// Our Record-Route entries that name us (as [`sipview::route_is_us`] decides by
    /// parsing, asked once): the Route values UAs send back in every in-dialog request,
    /// recognised by comparing bytes instead of parsing a name-addr and a URI.
    ///
    /// [`sipview::route_is_us`]: crate::sipview::route_is_us
    own_routes: OnceLock<Vec<Box<[u8]>>>,
}

impl Sides {
    pub(crate) fn new(cfg: &ProxyConfig) -> Sides {
        let fallback = [Transport::Udp, Transport::Tcp, Transport::Tls]
            .map(|t| Side::new(t, cfg.local(t), cfg.advertise(t)));
        let listeners = cfg
            .listeners
            .iter()
            .map(|l| Side::new(l.transport, Some(l.local), &l.advertise))
            .collect();
        Sides {
            listeners,
            fallback,
            own_routes: OnceLock::new(),
        }
    }

    /// Is `route` byte for byte one of our Record-Route entries for which `names_us` (the
    /// parsing check, asked once per entry on first use) is true? Only those are known by
    /// their bytes, so this never answers otherwise than `names_us` would.
    pub(crate) fn is_own_route(&self, route: &[u8], names_us: impl Fn(&[u8]) -> bool) -> bool {
        let own = self.own_routes.get_or_init(|| {
            let mut own: Vec<Box<[u8]>> = Vec::new();
            for side in self.listeners.iter().chain(&self.fallback) {
                let rr = &side.record_route;
                if !own.contains(rr) && names_us(rr) {
                    own.push(rr.clone());
                }
            }
            own
        });
        own.iter().any(|r| **r == *route)
    }

    /// The side a message to `peer` leaves from: the first listener of its transport and
    /// address family (as the edge picks one).
    pub(crate) fn toward(&self, peer: Peer) -> &Side {
        let v4 = peer.addr.is_ipv4();
        self.listeners
            .iter()
            .find(|s| s.transport == peer.transport && s.local.is_some_and(|l| l.is_ipv4() == v4))
            .unwrap_or(&self.fallback[index(peer.transport)])
    }

    /// The side a request from `source` arrived on: the listener `local` names, else the
    /// one a reply to `source` would leave from.
    pub(crate) fn arrived(&self, source: Peer, local: SocketAddr) -> &Side {
        self.listeners
            .iter()
            .find(|s| s.transport == source.transport && s.local == Some(local))
            .unwrap_or_else(|| self.toward(source))
    }

    /// The Record-Route entries of a request from `source` (arrived at `local`) going to
    /// `hop`: the incoming side's, and the outgoing side's when it names us differently
    /// (RFC 5658 §4: that one goes on top, nearest the callee).
    pub(crate) fn record_route(
        &self,
        source: Peer,
        local: SocketAddr,
        hop: Peer,
    ) -> (&[u8], Option<&[u8]>) {
        let incoming = &self.arrived(source, local).record_route;
        let outgoing = &self.toward(hop).record_route;
        (incoming, (outgoing != incoming).then_some(&**outgoing))
    }
}

fn index(t: Transport) -> usize {
    match t {
        Transport::Udp => 0,
        Transport::Tcp => 1,
        Transport::Tls => 2,
    }
}

fn via_prefix(t: Transport, adv: &Advertise) -> Box<[u8]> {
    let name = t.via_name();
    format!("SIP/2.0/{name} {}:{};rport;branch=", adv.host, adv.port)
        .into_bytes()
        .into_boxed_slice()
}

fn record_route(t: Transport, adv: &Advertise) -> Box<[u8]> {
    // A `sip:` URI with `;transport=tls` rather than a `sips:` one: it asks for TLS on
    // the next hop only, which is all a Record-Route can promise (RFC 5630 §3.1.2); a
    // `sips:` entry would forbid any later hop in the dialog from being UDP or TCP.
    let param = match t {
        Transport::Udp => "",
        Transport::Tcp => ";transport=tcp",
        Transport::Tls => ";transport=tls",
    };
    format!("<sip:{}:{}{param};lr>", adv.host, adv.port)
        .into_bytes()
        .into_boxed_slice()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Listener;

    fn peer(t: Transport, a: &str) -> Peer {
        Peer {
            transport: t,
            addr: a.parse().unwrap(),
        }
    }

    fn adv(host: &str, port: u16) -> Advertise {
        Advertise {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn one_entry_without_a_change_two_with_one() {
        let cfg = ProxyConfig::for_tests("192.0.2.10", 5060);
        let s = Sides::new(&cfg);
        let local = "192.0.2.10:5060".parse().unwrap();
        let udp = peer(Transport::Udp, "198.51.100.1:5060");
        let tcp = peer(Transport::Tcp, "198.51.100.2:5060");
        let same = s.record_route(udp, local, udp);
        assert_eq!(same, (&b"<sip:192.0.2.10:5060;lr>"[..], None));
        let change = s.record_route(udp, local, tcp);
        assert_eq!(
            change,
            (
                &b"<sip:192.0.2.10:5060;lr>"[..],
                Some(&b"<sip:192.0.2.10:5060;transport=tcp;lr>"[..])
            )
        );
    }

    #[test]
    fn each_family_has_its_listener() {
        let mut cfg = ProxyConfig::for_tests("192.0.2.10", 5060);
        cfg.listeners = vec![
            Listener {
                transport: Transport::Udp,
                local: "0.0.0.0:5060".parse().unwrap(),
                advertise: adv("192.0.2.10", 5060),
            },
            Listener {
                transport: Transport::Udp,
                local: "[::]:5060".parse().unwrap(),
                advertise: adv("[2001:db8::10]", 5060),
            },
        ];
        let s = Sides::new(&cfg);
        let v6 = peer(Transport::Udp, "[2001:db8::1]:5060");
        let v4 = peer(Transport::Udp, "198.51.100.1:5060");
        assert_eq!(s.toward(v6).local, Some("[::]:5060".parse().unwrap()));
        assert_eq!(
            &*s.toward(v6).via_prefix,
            b"SIP/2.0/UDP [2001:db8::10]:5060;rport;branch="
        );
        let (incoming, outgoing) = s.record_route(v4, "0.0.0.0:5060".parse().unwrap(), v6);
        assert_eq!(incoming, b"<sip:192.0.2.10:5060;lr>");
        assert_eq!(outgoing, Some(&b"<sip:[2001:db8::10]:5060;lr>"[..]));
        // No TCP listener: TCP falls back to the configuration's advertise.
        let tcp = peer(Transport::Tcp, "198.51.100.2:5060");
        assert_eq!(
            &*s.toward(tcp).record_route,
            b"<sip:192.0.2.10:5060;transport=tcp;lr>"
        );
    }

    /// Our entries sent back are known by their bytes; anything else (another port or
    /// host, other spelling) is left to the parsing check, which decides as before.
    #[test]
    fn own_routes_are_known_by_their_bytes_and_only_those() {
        let mut cfg = ProxyConfig::for_tests("192.0.2.10", 5060);
        cfg.advertise_tls.port = 5061;
        let s = Sides::new(&cfg);
        let parsed = |v: &[u8]| {
            crate::sipview::route_uri(v).is_some_and(|u| crate::sipview::uri_is_us(&cfg, &u))
        };
        for own in [
            &b"<sip:192.0.2.10:5060;lr>"[..],
            b"<sip:192.0.2.10:5060;transport=tcp;lr>",
            b"<sip:192.0.2.10:5061;transport=tls;lr>",
        ] {
            assert!(
                s.is_own_route(own, parsed),
                "{}",
                String::from_utf8_lossy(own)
            );
            assert!(parsed(own));
        }
        for (value, us) in [
            (&b"<sip:192.0.2.10;lr>"[..], true),
            (b"<SIP:192.0.2.10:5060;lr>", true),
            (b"<sip:192.0.2.10:5062;lr>", false),
            (b"<sip:192.0.2.11:5060;lr>", false),
            (b"<sip:192.0.2.10:5060;lr>x", false),
        ] {
            assert!(!s.is_own_route(value, parsed));
            assert_eq!(
                crate::sipview::route_is_us(&cfg, &s, value),
                us,
                "{}",
                String::from_utf8_lossy(value)
            );
            assert_eq!(parsed(value), us);
        }
    }

    #[test]
    fn tls_names_itself_in_via_and_record_route() {
        let mut cfg = ProxyConfig::for_tests("192.0.2.10", 5060);
        cfg.advertise_tls.port = 5061;
        let s = Sides::new(&cfg);
        let tls = peer(Transport::Tls, "198.51.100.3:5061");
        assert_eq!(
            &*s.toward(tls).via_prefix,
            b"SIP/2.0/TLS 192.0.2.10:5061;rport;branch="
        );
        let udp = peer(Transport::Udp, "198.51.100.1:5060");
        let local = "192.0.2.10:5060".parse().unwrap();
        assert_eq!(
            s.record_route(udp, local, tls),
            (
                &b"<sip:192.0.2.10:5060;lr>"[..],
                Some(&b"<sip:192.0.2.10:5061;transport=tls;lr>"[..])
            )
        );
    }
}
