//! The carriers an outbound call (or an e164 failover) is tried on, in order
//! (behaviour.md §5.2): a pure function of the settings and the number.

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use trunkstore_config::numbers::format_user;
use trunkstore_config::{Carrier, Gateway, Host, Settings, SipHeader};
use trunkstore_routing::secs;

use crate::route::Attempt;
use crate::types::{Peer, Transport};

/// The carriers for `number` (normalised) as attempts, one per gateway: those whose rule
/// takes the number, emergency carriers first for an emergency number, then by priority,
/// weighted random within a priority (seeded: the same call always gets the same order).
/// `params`: the dialled user parameters (escaped, leading `;`), kept on every carrier's
/// Request-URI (§2).
pub(crate) fn carrier_attempts(
    settings: &Settings,
    number: &str,
    params: &str,
    emergency: bool,
    seed: u64,
    headers: Option<Arc<[SipHeader]>>,
) -> Vec<Attempt> {
    let mut carriers: Vec<&Carrier> = settings
        .carriers
        .iter()
        .filter(|c| c.accepts(number))
        .collect();
    order_carriers(&mut carriers, emergency, seed);
    let timers = &settings.timers;
    let progress = secs(timers.progress_timeout);
    let answer = secs(timers.timeout);
    let mut out = Vec::with_capacity(carriers.len());
    for c in carriers {
        for gw in &c.gateways {
            let mut a = Attempt::to(Some(carrier_uri(c, gw, number, params)), gateway_peer(gw));
            a.resolve = gateway_name(gw);
            a.progress_timeout = progress;
            a.answer_timeout = answer;
            a.headers = headers.clone();
            out.push(a);
        }
    }
    out
}

/// Sorts by (emergency first when it matters, priority); shuffles each run of equal keys
/// by weight.
fn order_carriers(carriers: &mut [&Carrier], emergency: bool, seed: u64) {
    let key = |c: &Carrier| (emergency && !c.emergency, c.priority);
    carriers.sort_by_key(|c| key(c));
    let mut rng = seed | 1;
    let mut start = 0;
    while start < carriers.len() {
        let k = key(carriers[start]);
        let end = start + carriers[start..].iter().take_while(|c| key(c) == k).count();
        weighted_shuffle(&mut carriers[start..end], &mut rng);
        start = end;
    }
}

/// Weighted order without replacement: each next carrier is drawn with probability
/// proportional to its weight; weight 0 ones stay last, in configuration order.
fn weighted_shuffle(group: &mut [&Carrier], rng: &mut u64) {
    for i in 0..group.len() {
        let total: u64 = group[i..].iter().map(|c| u64::from(c.weight)).sum();
        if total == 0 {
            return;
        }
        let mut r = next_random(rng) % total;
        let pick = group[i..]
            .iter()
            .position(|c| {
                let w = u64::from(c.weight);
                if r < w {
                    true
                } else {
                    r -= w;
                    false
                }
            })
            .unwrap_or(0);
        // The pick to the front; the others keep their relative order (zero weights stay
        // in configuration order).
        group[i..=i + pick].rotate_right(1);
    }
}

/// xorshift64*: enough to spread calls over carriers; not for secrets.
fn next_random(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    x.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

/// `sip:<number in the carrier's format><params>@<gateway>` (`;transport=tcp` for TCP,
/// `;transport=tls` for TLS: TLS to the gateway, not a `sips:` demand on its hops beyond).
/// The number was decoded from what the PBX sent (§2): it is escaped again, so nothing
/// in it (`;`, `@`, `?`...) can change the URI's structure.
fn carrier_uri(c: &Carrier, gw: &Gateway, number: &str, params: &str) -> Bytes {
    let user = crate::dialled::escape_user(format_user(number, c.format, None));
    let host = match &gw.host {
        Host::Ip(IpAddr::V6(ip)) => format!("[{ip}]"),
        h => h.to_string(),
    };
    let transport = match gw.transport {
        _ if srv_named(gw) && !gw.transport_given => "",
        trunkstore_config::Transport::Tcp => ";transport=tcp",
        trunkstore_config::Transport::Tls => ";transport=tls",
        trunkstore_config::Transport::Udp => "",
    };
    // A name without a port is located by its SRV records (RFC 3263): the Request-URI
    // names it alone, as a next proxy would look it up the same way.
    if srv_named(gw) {
        return Bytes::from(format!("sip:{user}{params}@{host}{transport}"));
    }
    Bytes::from(format!("sip:{user}{params}@{host}:{}{transport}", gw.port))
}

/// A gateway named by DNS without a port: its SRV (or NAPTR) records locate it.
fn srv_named(gw: &Gateway) -> bool {
    matches!(gw.host, Host::Name(_)) && !gw.port_given
}

/// A gateway named by a DNS name: the target the edge resolves (RFC 3263) before the
/// attempt goes out: A/AAAA on its port when one is written, else its SRV records for
/// the transport written, else NAPTR first.
fn gateway_name(gw: &Gateway) -> Option<Arc<crate::dns::Target>> {
    let Host::Name(name) = &gw.host else {
        return None;
    };
    let transport = match gw.transport {
        trunkstore_config::Transport::Udp => crate::dns::Transport::Udp,
        trunkstore_config::Transport::Tcp => crate::dns::Transport::Tcp,
        trunkstore_config::Transport::Tls => crate::dns::Transport::Tls,
    };
    Some(Arc::new(crate::dns::Target {
        host: name.clone(),
        port: gw.port_given.then_some(gw.port),
        transport: gw.transport_given.then_some(transport),
        secure: false,
    }))
}

/// The gateway as a next hop when it is an IP literal; a name is resolved first
/// ([`gateway_name`]).
fn gateway_peer(gw: &Gateway) -> Option<Peer> {
    let Host::Ip(ip) = gw.host else {
        return None;
    };
    let transport = match gw.transport {
        trunkstore_config::Transport::Udp => Transport::Udp,
        trunkstore_config::Transport::Tcp => Transport::Tcp,
        trunkstore_config::Transport::Tls => Transport::Tls,
    };
    Some(Peer {
        transport,
        addr: std::net::SocketAddr::new(ip, gw.port),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn carrier(name: &str, priority: u32, weight: u32, emergency: bool) -> Carrier {
        Carrier {
            name: name.into(),
            gateways: Vec::new(),
            sources: Vec::new(),
            priority,
            weight,
            format: trunkstore_config::NumberFormat::E164,
            rule: None,
            emergency,
        }
    }

    fn order(list: &[Carrier], emergency: bool, seed: u64) -> Vec<String> {
        let mut v: Vec<&Carrier> = list.iter().collect();
        order_carriers(&mut v, emergency, seed);
        v.iter().map(|c| c.name.clone()).collect()
    }

    #[test]
    fn priority_then_emergency_then_weight() {
        let list = [
            carrier("b", 20, 1, false),
            carrier("a", 10, 1, false),
            carrier("e", 30, 1, true),
        ];
        assert_eq!(order(&list, false, 7), ["a", "b", "e"]);
        assert_eq!(order(&list, true, 7), ["e", "a", "b"]);
    }

    #[test]
    fn weights_spread_and_zero_is_last() {
        let list = [
            carrier("z", 10, 0, false),
            carrier("h", 10, 3, false),
            carrier("l", 10, 1, false),
        ];
        let mut first_h = 0;
        for seed in 0..4000u64 {
            let o = order(&list, false, seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            assert_eq!(o[2], "z");
            assert_eq!(o.len(), 3);
            if o[0] == "h" {
                first_h += 1;
            }
        }
        // 3:1 → about 3000 of 4000.
        assert!((2700..3300).contains(&first_h), "{first_h}");
        // Deterministic for a seed.
        assert_eq!(order(&list, false, 42), order(&list, false, 42));
    }
}
