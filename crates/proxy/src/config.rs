//! What the core needs to know about itself: the addresses it advertises and listens on,
//! the RFC 3261 timers and the bounds on what peers can make it hold.

use std::net::SocketAddr;
use std::time::Duration;

use trunkstore_config::Settings;
use trunkstore_sip::limits::Limits;

use crate::auth::ProtectionConfig;
use crate::policy::FailoverRule;
use crate::types::Transport;

/// The host and port we put in Via and Record-Route for one transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advertise {
    /// Host as written in SIP (IPv6 in brackets).
    pub host: String,
    /// The port advertised with it.
    pub port: u16,
}

/// One listener and the address it advertises (the settings' `listen` entries): a
/// message to a peer of its transport and address family leaves from it and names it
/// in Via and Record-Route (RFC 5658: one Record-Route per side when they differ).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// Its transport.
    pub transport: Transport,
    /// The bound address (the `from` of a [`crate::Transmit`] leaving from it).
    pub local: SocketAddr,
    /// What it advertises.
    pub advertise: Advertise,
}

/// Configuration of the proxy core. Build it with [`ProxyConfig::from_settings`] or, in
/// tests, [`ProxyConfig::for_tests`] and adjust the fields.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Advertised address for UDP (Via `SIP/2.0/UDP`, Record-Route without transport).
    pub advertise_udp: Advertise,
    /// Advertised address for TCP (Via `SIP/2.0/TCP`, Record-Route `;transport=tcp`).
    pub advertise_tcp: Advertise,
    /// Advertised address for TLS (Via `SIP/2.0/TLS`, Record-Route `;transport=tls`).
    pub advertise_tls: Advertise,
    /// Local listener messages leave from (the `from` of a [`crate::Transmit`]).
    pub local_udp: Option<SocketAddr>,
    /// Local TCP listener messages leave from (see `local_udp`).
    pub local_tcp: Option<SocketAddr>,
    /// Local TLS listener messages leave from (see `local_udp`).
    pub local_tls: Option<SocketAddr>,
    /// Other host:port pairs that also mean "us" in a Route or Request-URI (the listen
    /// addresses themselves, aliases).
    pub aliases: Vec<(String, u16)>,
    /// The listeners with what each advertises; empty: `advertise_*` and `local_*` for
    /// everything (one side per transport).
    pub listeners: Vec<Listener>,
    /// RFC 3261 T1 (RTT estimate), T2 (cap of non-INVITE retransmit interval), T4
    /// (network lifetime of a message).
    pub t1: Duration,
    /// RFC 3261 T2: the longest retransmit interval of non-INVITE requests and INVITE responses.
    pub t2: Duration,
    /// RFC 3261 T4: how long a message may stay in the network.
    pub t4: Duration,
    /// Proxy timer C (RFC 3261 §16.6 step 11: more than 3 minutes).
    pub timer_c: Duration,
    /// Dialogs whose BYE never came are dropped from the call table after this.
    pub max_call_duration: Duration,
    /// Parser limits for datagrams.
    pub limits: Limits,
    /// Hard cap on server transactions (`limits.max_transactions`); new requests beyond
    /// it get 503 (stateless).
    pub max_transactions: usize,
    /// Most calls in progress (`limits.max_calls`): an initial INVITE beyond gets 503,
    /// so every call that runs is tracked.
    pub max_calls: usize,
    /// Option tags accepted in Proxy-Require (none by default).
    pub proxy_supported: Vec<&'static str>,
    /// The settings' `failover_on`: which failures of an inbound attempt run the failover.
    pub failover_on: FailoverRule,
    /// Queue a [`crate::CallRecord`] per finished call on the shard (the edge must drain
    /// them with [`crate::Shard::poll_call_record`]); off unless CDRs are configured.
    pub call_records: bool,
    /// Rate limits, bans and scanner user agents for unauthenticated sources (§8).
    pub protection: ProtectionConfig,
    /// REGISTER expiries, contacts per address of record, keep-alives (§5.4).
    pub registrar: crate::registrar::RegistrarConfig,
    /// rtpengine instances anchoring the media of `process` calls (§4.7).
    pub media: MediaConfig,
    /// This node's place in a cluster (issue 18); `None`: a node alone. With one, a
    /// limited account's call waits for the cluster's trunk verdict
    /// ([`crate::Proxy::poll_trunk_op`]) before its first attempt (§9.2).
    pub cluster: Option<ClusterNode>,
}

/// What the core knows of its cluster: who it is and the secret all nodes share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterNode {
    /// `cluster.node_id`.
    pub node_id: String,
    /// `cluster.secret`: digest nonces of any node verify on every node.
    pub secret: trunkstore_config::Secret,
}

/// The rtpengine instances (NG control addresses and weights) and how they are driven
/// (behaviour.md §4.7). No instance: `process` calls get 503 (or pass in bypass).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaConfig {
    /// NG control sockets and their relative shares of new calls.
    pub rtpengine: Vec<(SocketAddr, u32)>,
    /// Wait this long for a reply before sending again.
    pub timeout: Duration,
    /// Sends after the first to one instance before it counts as down.
    pub retries: u32,
    /// How long a silent instance is skipped.
    pub down_for: Duration,
    /// When no instance answers, the call goes on with its SDP untouched (logged)
    /// instead of getting 503.
    pub bypass_on_failure: bool,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig::from(&trunkstore_config::Media::default())
    }
}

impl From<&trunkstore_config::Media> for MediaConfig {
    fn from(m: &trunkstore_config::Media) -> Self {
        MediaConfig {
            rtpengine: m.rtpengine.iter().map(|r| (r.address, r.weight)).collect(),
            timeout: Duration::from_millis(u64::from(m.timeout_ms.max(1))),
            retries: m.retries,
            down_for: Duration::from_secs(u64::from(m.down_secs)),
            bypass_on_failure: m.on_failure == trunkstore_config::MediaFailure::Bypass,
        }
    }
}

impl ProxyConfig {
    /// Configuration from the proxy settings file.
    pub fn from_settings(settings: &Settings) -> ProxyConfig {
        let Advertise { host, port } = Advertise::from(&settings.advertise);
        let mut aliases = Vec::new();
        let tls_addrs: Vec<SocketAddr> = settings.listen.tls.iter().map(|l| l.address).collect();
        for a in settings
            .listen
            .udp
            .iter()
            .chain(settings.listen.tcp.iter())
            .chain(tls_addrs.iter())
        {
            aliases.push((host_text(a), a.port()));
        }
        let t = &settings.timers;
        let udp = settings.listen.udp.iter().map(|a| (Transport::Udp, *a));
        let tcp = settings.listen.tcp.iter().map(|a| (Transport::Tcp, *a));
        let tls = tls_addrs.iter().map(|a| (Transport::Tls, *a));
        let listeners = udp
            .chain(tcp)
            .chain(tls)
            .map(|(transport, local)| {
                let ty = settings_transport(transport);
                Listener {
                    transport,
                    local,
                    advertise: Advertise::from(&settings.advertise_for(ty, local)),
                }
            })
            .collect();
        ProxyConfig {
            listeners,
            advertise_udp: Advertise {
                host: host.clone(),
                port,
            },
            advertise_tcp: Advertise { host, port },
            advertise_tls: tls_advertise(settings),
            local_udp: settings.listen.udp.first().copied(),
            local_tcp: settings.listen.tcp.first().copied(),
            local_tls: tls_addrs.first().copied(),
            aliases,
            t1: Duration::from_millis(u64::from(t.t1_ms.max(1))),
            t2: Duration::from_millis(u64::from(t.t2_ms.max(1))),
            t4: Duration::from_millis(u64::from(t.t4_ms)),
            timer_c: Duration::from_secs(u64::from(t.timer_c.max(181))),
            max_call_duration: Duration::from_secs(u64::from(settings.max_call_duration.max(1))),
            limits: Limits {
                max_message_size: settings.limits.max_message_size as usize,
                max_headers: settings.limits.max_headers as usize,
                ..Limits::default()
            },
            max_transactions: settings.limits.max_transactions as usize,
            max_calls: settings.limits.max_calls as usize,
            proxy_supported: Vec::new(),
            failover_on: FailoverRule::from_settings(&settings.failover_on),
            call_records: settings.cdr.file.is_some(),
            protection: ProtectionConfig::from(&settings.protection),
            registrar: crate::registrar::RegistrarConfig::from(&settings.registrar),
            media: MediaConfig::from(&settings.media),
            cluster: settings.cluster.as_ref().map(|c| ClusterNode {
                node_id: c.node_id.clone(),
                secret: c.secret.clone(),
            }),
        }
    }

    /// A configuration advertising `host:port` on both transports, with default timers.
    pub fn for_tests(host: &str, port: u16) -> ProxyConfig {
        let local: Option<SocketAddr> = format!("{host}:{port}").parse().ok();
        ProxyConfig {
            advertise_udp: Advertise {
                host: host.to_string(),
                port,
            },
            advertise_tcp: Advertise {
                host: host.to_string(),
                port,
            },
            advertise_tls: Advertise {
                host: host.to_string(),
                port,
            },
            local_udp: local,
            local_tcp: local,
            local_tls: local,
            aliases: Vec::new(),
            listeners: Vec::new(),
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            timer_c: Duration::from_secs(185),
            max_call_duration: Duration::from_secs(12 * 3600),
            limits: Limits::default(),
            max_transactions: 200_000,
            max_calls: 200_000,
            proxy_supported: Vec::new(),
            failover_on: FailoverRule::default_inbound(),
            call_records: false,
            protection: ProtectionConfig::default(),
            registrar: crate::registrar::RegistrarConfig::default(),
            media: MediaConfig::default(),
            cluster: None,
        }
    }

    /// What the proxy advertises for transport `t` (Via, Record-Route).
    pub fn advertise(&self, t: Transport) -> &Advertise {
        match t {
            Transport::Udp => &self.advertise_udp,
            Transport::Tcp => &self.advertise_tcp,
            Transport::Tls => &self.advertise_tls,
        }
    }

    /// The local listener messages on transport `t` leave from.
    pub fn local(&self, t: Transport) -> Option<SocketAddr> {
        match t {
            Transport::Udp => self.local_udp,
            Transport::Tcp => self.local_tcp,
            Transport::Tls => self.local_tls,
        }
    }
}

fn settings_transport(t: Transport) -> trunkstore_config::Transport {
    match t {
        Transport::Udp => trunkstore_config::Transport::Udp,
        Transport::Tcp => trunkstore_config::Transport::Tcp,
        Transport::Tls => trunkstore_config::Transport::Tls,
    }
}

/// What TLS advertises without a listener of its own to say: the first TLS listener's
/// address as the settings give it, else the global `advertise` host on port 5061 (a TLS
/// peer that reaches us at the UDP port would find no TLS there).
fn tls_advertise(settings: &Settings) -> Advertise {
    match settings.listen.tls.first() {
        Some(l) => {
            Advertise::from(&settings.advertise_for(trunkstore_config::Transport::Tls, l.address))
        }
        None => {
            let a = Advertise::from(&settings.advertise);
            Advertise { port: 5061, ..a }
        }
    }
}

impl From<&trunkstore_config::HostPort> for Advertise {
    fn from(h: &trunkstore_config::HostPort) -> Advertise {
        let host = match &h.host {
            trunkstore_config::Host::Ip(std::net::IpAddr::V6(ip)) => format!("[{ip}]"),
            other => other.to_string(),
        };
        Advertise { host, port: h.port }
    }
}

fn host_text(a: &SocketAddr) -> String {
    match a {
        SocketAddr::V4(v4) => v4.ip().to_string(),
        SocketAddr::V6(v6) => format!("[{}]", v6.ip()),
    }
}
