//! What the proxy core reads about a route, in the units it uses: built once per route
//! when a snapshot is built (timers as `Option<Duration>` with "0 means none" decided
//! here, the next hop as a [`Peer`]), and shared by every call to it (an `Arc` clone per
//! call, no allocation).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use trunkstore_config::numbers::NumberFormat;
use trunkstore_config::{Failover, SipHeader};

/// The transport a message arrived on or must leave on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP datagrams.
    Udp,
    /// A TCP connection (stream framing).
    Tcp,
    /// A TLS connection over TCP (stream framing, RFC 3261 §26.2; `sips:` targets go only
    /// this way, RFC 5630).
    Tls,
}

impl Transport {
    /// Reliable transports (TCP, TLS) get no retransmissions (RFC 3261 §17.1.1.2).
    pub fn is_reliable(self) -> bool {
        !matches!(self, Transport::Udp)
    }

    /// Uppercase name as in a Via (`SIP/2.0/TLS`).
    pub fn via_name(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }

    /// The port a URI without one means on this transport (RFC 3261 §19.1.2).
    pub fn default_port(self) -> u16 {
        match self {
            Transport::Tls => 5061,
            _ => 5060,
        }
    }
}

/// The other end of a hop. For TCP, the remote address names the connection: replies to a
/// request go back on the connection it came in on; for new requests the edge reuses an
/// open connection to that address or opens one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    /// UDP, TCP or TLS.
    pub transport: Transport,
    /// The remote address.
    pub addr: SocketAddr,
}

/// Where calls to one DID go (behaviour.md §4), as the core reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundRoute {
    /// The account the DID's server is in (its trunks are taken, §6).
    pub account: Arc<str>,
    /// The server's name (`-` without one).
    pub server: Arc<str>,
    /// `options.enabled`; a disabled server gets 480 for inbound calls.
    pub enabled: bool,
    /// Target host as written in the Request-URI (IPv6 in brackets) and its port.
    pub host: Arc<str>,
    /// The target's port.
    pub port: u16,
    /// Resolved next hop (the core does no DNS); `None`: not reachable (no ip, no
    /// registration), the attempt fails at once.
    pub next_hop: Option<Peer>,
    /// The Request-URI user's format (§4.3).
    pub format: NumberFormat,
    /// The server's auth user (the `username` format writes it).
    pub auth_user: Option<Arc<str>>,
    /// The document the server is in (for the call record).
    pub document: Option<Arc<str>>,
    /// Wait this long before the attempt (§4.5); `None`: no delay.
    pub delay: Option<Duration>,
    /// Give up without a provisional other than 100 by then; `None`: never.
    pub progress_timeout: Option<Duration>,
    /// Give up without a 2xx by then; `None`: never.
    pub answer_timeout: Option<Duration>,
    /// 183 / 1xx with SDP reaches the caller as 180 without body (§4.6).
    pub ignore_early_media: bool,
    /// `media_handling: process`: the call's media is anchored at rtpengine (§4.7).
    pub media: bool,
    /// Merged DID → server → account (§4.4), shared by every call of the route; `None`
    /// when there are none.
    pub sip_headers: Option<Arc<[SipHeader]>>,
    /// First non-empty failover of DID, then server (§4.8); resolved only when needed.
    pub failover: Option<Arc<Failover>>,
    /// DID or server says so: on-net calls (and e164 failovers) to it go over carriers.
    pub force_outbound: bool,
    /// A password server without an ip is reached at the bindings it REGISTERed for this
    /// address of record (`auth_user@realm`, see [`aor()`]); `None` for every other server.
    pub registered_aor: Option<Arc<str>>,
}

/// The address of record a password server registers as: `auth_user@realm`, the realm
/// lower-cased (realms compare case-insensitively, the user does not).
pub fn aor(auth_user: &str, realm: &str) -> Arc<str> {
    Arc::from(format!("{auth_user}@{}", realm.to_ascii_lowercase()))
}

impl InboundRoute {
    /// A route with no timers, headers or failover.
    pub fn new(
        account: &str,
        server: &str,
        host: &str,
        port: u16,
        next_hop: Option<Peer>,
    ) -> InboundRoute {
        InboundRoute {
            account: account.into(),
            server: server.into(),
            enabled: true,
            host: host.into(),
            port,
            next_hop,
            format: NumberFormat::Npan,
            auth_user: None,
            document: None,
            delay: None,
            progress_timeout: None,
            answer_timeout: None,
            ignore_early_media: false,
            media: false,
            sip_headers: None,
            failover: None,
            force_outbound: false,
            registered_aor: None,
        }
    }
}

/// Seconds from the settings as a timer: 0 means "not set" (decided here, once).
pub fn secs(s: u32) -> Option<Duration> {
    (s > 0).then(|| Duration::from_secs(u64::from(s)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_seconds_is_no_timer() {
        assert_eq!(secs(0), None);
        assert_eq!(secs(3), Some(Duration::from_secs(3)));
    }
}
