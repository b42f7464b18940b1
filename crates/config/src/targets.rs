//! Documents may not point the proxy at a carrier or at itself (behaviour.md §1).
//!
//! A connectivity document says where the proxy sends calls: a server's `auth.ip` and
//! `options.ip`, and `failover.sip` at server and DID level. If one of those named a
//! carrier gateway, a carrier's trusted source or one of the proxy's own addresses, anyone
//! allowed to write a document (an account-scoped API token) could make the proxy send
//! traffic to a carrier as a free "on-net" call, or loop it back into itself. This check
//! runs with the system-wide ones (load, reload, every API write), because it needs the
//! settings.
//!
//! Ports are compared where the document gives one (`auth.port`, else `options.port`; a
//! failover URI's own port). Without a port, the IP alone decides: the proxy would send
//! to 5060, but a document is not allowed to aim at another port of a carrier's or our
//! own address by leaving the port out either.

use std::net::{IpAddr, SocketAddr};

use serde_json::{json, Value};

use crate::document::{AuthMethod, Document, Failover, Server};
use crate::error::ValidationErrors;
use crate::settings::{Host, Settings};
use crate::walk::join;

/// The keyword of these errors (`trunkstore check`, API `data`).
pub(crate) const KEYWORD: &str = "forbidden_address";

/// Where a document makes the proxy send: an IP literal or a DNS name (failover URIs
/// only; the core does no DNS, but a name that is a carrier gateway is still refused),
/// and the port the document gives, if any.
#[derive(Debug, Clone, Copy)]
enum Target<'a> {
    Ip(IpAddr, Option<u16>),
    Name(&'a str, Option<u16>),
}

/// What a target was found to be.
struct Clash {
    message: String,
    target: Value,
}

/// Reports every server address and failover URI of `doc` that is a carrier gateway, a
/// carrier source or one of our own addresses (paths relative to `doc`).
pub(crate) fn check_targets(doc: &Document, settings: &Settings, errors: &mut ValidationErrors) {
    for server in &doc.servers {
        let base = join("servers", server.index);
        let port = server.auth.port().or(server.options.port);
        if let Some(ip) = server.auth.ip() {
            // An IP-auth address inside a carrier source is already refused by the
            // carrier-overlap rule (as `unique`): do not report it twice.
            let sources = server.auth.method() != AuthMethod::Ip;
            let clash = classify(Target::Ip(ip, port), settings, sources);
            report(errors, join(&base, "auth.ip"), clash, json!(ip.to_string()));
        }
        if let Some(ip) = server.options.ip {
            let clash = classify(Target::Ip(ip, port), settings, true);
            report(
                errors,
                join(&base, "options.ip"),
                clash,
                json!(ip.to_string()),
            );
        }
        let options = join(&base, "options");
        check_failover(
            server.options.call.failover.as_ref(),
            &options,
            settings,
            errors,
        );
        check_did_failovers(server, &base, settings, errors);
    }
}

fn check_did_failovers(
    server: &Server,
    base: &str,
    settings: &Settings,
    errors: &mut ValidationErrors,
) {
    // Most DIDs set no options: their paths are only built when there is a failover.
    for did in server.dids.iter().filter(|d| d.options.failover.is_some()) {
        let path = join(&join(base, "DIDs"), &did.key);
        check_failover(did.options.failover.as_ref(), &path, settings, errors);
    }
}

/// `failover.sip`, wherever it is set (even when `e164` wins: a document must not keep a
/// forbidden target that a later edit of `e164` would arm).
fn check_failover(
    failover: Option<&Failover>,
    base: &str,
    settings: &Settings,
    errors: &mut ValidationErrors,
) {
    let Some(uri) = failover.and_then(|f| f.sip.as_deref()) else {
        return;
    };
    let Some(target) = uri_target(uri) else {
        // Not parseable as the core parses it: it can never be sent to.
        return;
    };
    let clash = classify(target, settings, true);
    report(errors, join(base, "failover.sip"), clash, json!(uri));
}

/// The host and port the proxy would send a failover URI to, parsed exactly as the core
/// parses it (so the two can never disagree on where it goes).
fn uri_target(uri: &str) -> Option<Target<'_>> {
    let parsed = trunkstore_sip::uri::Uri::parse(uri.as_bytes()).ok()?;
    let host = parsed.host()?;
    let port = parsed.port();
    if let Some(ip) = host.ip() {
        return Some(Target::Ip(ip, port));
    }
    let name = std::str::from_utf8(host.as_bytes()).ok()?;
    Some(Target::Name(name, port))
}

fn report(errors: &mut ValidationErrors, path: String, clash: Option<Clash>, value: Value) {
    if let Some(c) = clash {
        errors.add(path, KEYWORD, c.message, Some(c.target), Some(value));
    }
}

/// The first thing `target` is that a document may not point at. `sources`: check the
/// carriers' trusted sources too.
fn classify(target: Target<'_>, settings: &Settings, sources: bool) -> Option<Clash> {
    gateway_clash(target, settings)
        .or_else(|| sources.then(|| source_clash(target, settings)).flatten())
        .or_else(|| own_clash(target, settings))
}

/// Same IP (IPv4-mapped IPv6 counts as IPv4) and, when the document gives a port, the
/// same port.
fn same_addr(ip: IpAddr, port: Option<u16>, addr: SocketAddr) -> bool {
    canonical(ip) == canonical(addr.ip()) && port_matches(port, addr.port())
}

/// No port given matches every port. (`Option::is_none_or` would need Rust 1.82; the
/// workspace targets 1.80.)
fn port_matches(port: Option<u16>, actual: u16) -> bool {
    match port {
        Some(p) => p == actual,
        None => true,
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn gateway_clash(target: Target<'_>, settings: &Settings) -> Option<Clash> {
    for carrier in &settings.carriers {
        for gw in &carrier.gateways {
            let hit = match (target, &gw.host) {
                (Target::Ip(ip, port), Host::Ip(g)) => {
                    same_addr(ip, port, SocketAddr::new(*g, gw.port))
                }
                (Target::Name(n, port), Host::Name(g)) => {
                    n.eq_ignore_ascii_case(g) && port_matches(port, gw.port)
                }
                _ => false,
            };
            if hit {
                let gateway = format!("{}:{}", gw.host, gw.port);
                return Some(Clash {
                    message: format!("Address is gateway {gateway} of carrier '{}'", carrier.name),
                    target: json!({"carrier": carrier.name, "gateway": gateway}),
                });
            }
        }
    }
    None
}

fn source_clash(target: Target<'_>, settings: &Settings) -> Option<Clash> {
    let Target::Ip(ip, port) = target else {
        return None;
    };
    let ip = canonical(ip);
    for carrier in &settings.carriers {
        if let Some(src) = carrier.sources.iter().find(|s| s.overlaps(ip, port)) {
            return Some(Clash {
                message: format!(
                    "Address is covered by source {src} of carrier '{}'",
                    carrier.name
                ),
                target: json!({"carrier": carrier.name, "source": src.to_string()}),
            });
        }
    }
    None
}

/// One of the proxy's own addresses: a listen address, the advertised address, or, for a
/// wildcard listen (`0.0.0.0:P`, `[::]:P`), any loopback address on P (the proxy takes
/// every local address on that port; loopback is the one validation can know without
/// asking the host's interfaces, the public one is the advertised address). The
/// unspecified address itself (`0.0.0.0`, `::`) reaches the local host on any port and is
/// always refused.
fn own_clash(target: Target<'_>, settings: &Settings) -> Option<Clash> {
    let own = |what: String| {
        Some(Clash {
            message: format!("Address is the proxy's own ({what})"),
            target: json!({"proxy": what}),
        })
    };
    let advertised = settings.advertised_addresses();
    let (ip, port) = match target {
        Target::Ip(ip, port) => (canonical(ip), port),
        Target::Name(n, port) => {
            let hit = advertised.iter().find(|a| {
                matches!(&a.host, Host::Name(h) if h.eq_ignore_ascii_case(n))
                    && port_matches(port, a.port)
            });
            return hit.and_then(|a| own(format!("advertise {a}")));
        }
    };
    if ip.is_unspecified() {
        return own("unspecified address".into());
    }
    let tls = settings.listen.tls.iter().map(|l| &l.address);
    let listens = settings
        .listen
        .udp
        .iter()
        .chain(&settings.listen.tcp)
        .chain(tls);
    for addr in listens {
        let wildcard_hit =
            addr.ip().is_unspecified() && ip.is_loopback() && port_matches(port, addr.port());
        if same_addr(ip, port, *addr) || wildcard_hit {
            return own(format!("listen {addr}"));
        }
    }
    // The global advertised address and every listener's own (RFC 5658 sides).
    for a in &advertised {
        if let Host::Ip(h) = a.host {
            if same_addr(ip, port, SocketAddr::new(h, a.port)) {
                return own(format!("advertise {a}"));
            }
        }
    }
    None
}
