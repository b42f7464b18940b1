//! Plain values the core and the edge exchange: peers (defined with the routing model,
//! re-exported here), transmits, table sizes and call records. The bottom of the crate: it uses no other module.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
pub use trunkstore_routing::{Peer, Transport};

/// One message for the edge to send.
#[derive(Debug, Clone)]
pub struct Transmit {
    /// Where it goes.
    pub to: Peer,
    /// The local listener it must leave from (the one named in our Via/Record-Route);
    /// `None` lets the edge pick the first listener of that transport and address family.
    pub from: Option<SocketAddr>,
    /// The message, ready to send.
    pub data: Bytes,
    /// TLS only: the configured domain the server must prove and that is sent as SNI
    /// (RFC 5922 §4: the host of the gateway or failover URI the proxy's routing chose,
    /// never a name read from a received message); `None`: the server proves the IP
    /// address it is reached at (IP SAN). See [`TlsName`].
    pub tls_name: Option<TlsName>,
}

impl Transmit {
    /// A message to `to` whose TLS server, if any, proves its IP address.
    pub fn new(to: Peer, from: Option<SocketAddr>, data: Bytes) -> Transmit {
        Transmit {
            to,
            from,
            data,
            tls_name: None,
        }
    }
}

/// A domain a TLS server must prove (RFC 5922 §4): lower case, without a trailing dot.
/// Made only from the configuration (a carrier gateway's or a failover URI's host), so
/// nothing a peer sends can choose what a certificate is checked against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TlsName(Arc<str>);

impl TlsName {
    /// The name of a configured host; `None` for an IP literal (verified by its IP SAN).
    pub(crate) fn of_host(host: &str) -> Option<TlsName> {
        let host = host.trim_end_matches('.');
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || bare.parse::<std::net::IpAddr>().is_ok() {
            return None;
        }
        Some(TlsName(host.to_ascii_lowercase().into()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for TlsName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Table sizes, for leak tests and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Server transactions (one per request being handled statefully, CANCEL included).
    pub server_transactions: usize,
    /// Client transactions (one per branch sent, CANCEL included).
    pub client_transactions: usize,
    /// Calls in the dialog table: admitted and not yet over (ringing or answered).
    pub calls: usize,
    /// NG requests to rtpengine waiting for their reply (§4.7).
    pub media_requests: usize,
    /// Calls pinned to an rtpengine instance (anchored and not yet deleted).
    pub media_calls: usize,
}

/// One finished call, as the core saw it. Times are the core's `Instant`s: the edge turns
/// them into wall-clock times with a (`SystemTime`, `Instant`) pair it took at start.
#[derive(Debug, Clone)]
pub struct CallRecord {
    /// The call's Call-ID.
    pub call_id: Bytes,
    /// `"inbound"` (carrier → server), `"outbound"` (server → carriers) or `"onnet"`
    /// (server → one of our DIDs).
    pub direction: &'static str,
    /// The account of the server in the call.
    pub account: Option<Arc<str>>,
    /// The document that server is in.
    pub document: Option<Arc<str>>,
    /// The server's name.
    pub server: Option<Arc<str>>,
    /// The dialled DID, normalised.
    pub did: Option<Arc<str>>,
    /// From URI user and Request-URI user, as received.
    pub from: Bytes,
    /// Request-URI user, as received.
    pub to: Bytes,
    /// INVITE received, 2xx relayed (if answered), call over.
    pub started: Instant,
    /// When the 2xx was relayed, if the call was answered.
    pub answered: Option<Instant>,
    /// When the call ended.
    pub ended: Instant,
    /// The final status of the INVITE the caller got.
    pub status: u16,
    /// How it ended: `failed`, `bye`, `bye_failed`, `max_duration`.
    pub reason: &'static str,
    /// 1-based number of the attempt that answered.
    pub answered_attempt: Option<u16>,
    /// The failover attempt was tried.
    pub failover: bool,
    /// The call held one of its account's trunks (§6).
    pub trunk_held: bool,
    /// `anchored` (media through rtpengine), `bypass` (its server does not anchor) or
    /// `unanchored` (it should have been, but no rtpengine took it, or no SDP came).
    pub media: &'static str,
    /// The rtpengine instance (NG control address) of an anchored call.
    pub media_instance: Option<std::net::SocketAddr>,
}

/// A DNS name the core needs resolved before an attempt can go out (RFC 3263).
#[derive(Debug, Clone)]
pub struct ResolveRequest {
    /// Hand back with the outcome.
    pub key: ResolveKey,
    /// What to resolve.
    pub target: crate::dns::Target,
}

/// Which waiting request a resolution is for (opaque).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResolveKey(pub(crate) u128);

#[cfg(test)]
mod tests {
    use super::TlsName;

    #[test]
    fn a_tls_name_is_a_lower_case_domain_and_never_an_ip_literal() {
        let name = |h: &str| TlsName::of_host(h).map(|n| n.as_str().to_string());
        assert_eq!(
            name("Sip.Carrier.Example."),
            Some("sip.carrier.example".into())
        );
        assert_eq!(name("192.0.2.1"), None);
        assert_eq!(name("[2001:db8::1]"), None);
        assert_eq!(name("2001:db8::1"), None);
        assert_eq!(name(""), None);
    }
}
