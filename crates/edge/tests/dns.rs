//! The edge's DNS driver against a real DNS server: dnsmasq (Debian package
//! `dnsmasq-base`: the binary only, no service), started by each test on a loopback port
//! of its own, serving NAPTR, SRV, A and AAAA records from a config file and a hosts file
//! written by the test. Nothing is ever asked of the machine's own resolver.
//!
//! dnsmasq's command line: see `trunkstore_testkit::Dnsmasq`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use trunkstore_edge::dns::{Dns, DnsError, Failure, Families, Hop, Target, Transport};
use trunkstore_testkit::{free_port, Dnsmasq};

fn settings(servers: Vec<SocketAddr>) -> trunkstore_config::Dns {
    trunkstore_config::Dns {
        servers,
        timeout_ms: 500,
        attempts: 1,
        negative_ttl_secs: 30,
        min_ttl_secs: 0,
        max_ttl_secs: 3600,
    }
}

fn dns_for(server: SocketAddr) -> Dns {
    Dns::new(
        &settings(vec![server]),
        &[Transport::Udp, Transport::Tcp],
        Families::BOTH,
    )
    .unwrap()
}

fn target(host: &str) -> Target {
    Target {
        host: host.into(),
        port: None,
        transport: None,
        secure: false,
    }
}

fn hop(addr: &str, transport: Transport) -> Hop {
    Hop {
        addr: addr.parse().unwrap(),
        transport,
    }
}

const CONF: &str = "\
# carrier.test: NAPTR to UDP's SRV, two gateways at priorities 10 and 20 (listed the
# other way round: the order must come from the priorities).
naptr-record=carrier.test,10,10,S,SIP+D2U,,_sip._udp.carrier.test
naptr-record=carrier.test,20,10,S,SIP+D2T,,_sip._tcp.carrier.test
srv-host=_sip._udp.carrier.test,gw2.carrier.test,5082,20,0
srv-host=_sip._udp.carrier.test,gw1.carrier.test,5081,10,0
srv-host=_sip._tcp.carrier.test,gw1.carrier.test,5091,10,0
host-record=gw1.carrier.test,127.0.0.2
host-record=gw2.carrier.test,127.0.0.3
# pbx.test: an address only.
host-record=pbx.test,127.0.0.4,::1
";

#[tokio::test]
async fn naptr_srv_and_address_only_names_resolve_through_a_real_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = Dnsmasq::start(dir.path(), CONF, "");
    let dns = dns_for(server.addr());

    let started = Instant::now();
    let r = dns.resolve(&target("carrier.test")).await.unwrap();
    assert_eq!(
        r.hops,
        vec![
            hop("127.0.0.2:5081", Transport::Udp),
            hop("127.0.0.3:5082", Transport::Udp)
        ]
    );
    // Every record has TTL 1: kept for 1 s.
    assert!(r.expires <= Instant::now() + Duration::from_secs(1));
    assert!(r.expires >= started + Duration::from_secs(1));
    assert_eq!(server.queries_for("carrier.test"), 1, "{}", server.log());
    assert_eq!(server.queries_for("_sip._udp.carrier.test"), 1);
    assert_eq!(server.queries_for("_sip._tcp.carrier.test"), 0);

    // Within the TTL: from the cache, no query.
    let again = dns.resolve(&target("carrier.test")).await.unwrap();
    if Instant::now() < r.expires {
        assert_eq!(again, r);
        assert_eq!(server.queries_for("carrier.test"), 1);
    }

    // An explicit transport: its SRV only.
    let tcp = Target {
        transport: Some(Transport::Tcp),
        ..target("carrier.test")
    };
    let r = dns.resolve(&tcp).await.unwrap();
    assert_eq!(r.hops, vec![hop("127.0.0.2:5091", Transport::Tcp)]);

    // A name with addresses only: NAPTR and SRV find nothing, A and AAAA on 5060 over
    // UDP, IPv4 first.
    let r = dns.resolve(&target("pbx.test")).await.unwrap();
    assert_eq!(
        r.hops,
        vec![
            hop("127.0.0.4:5060", Transport::Udp),
            hop("[::1]:5060", Transport::Udp)
        ]
    );
    // With a port: A/AAAA only.
    let with_port = Target {
        port: Some(5070),
        ..target("pbx.test")
    };
    let before = server.queries_for("_sip._udp.pbx.test");
    let r = dns.resolve(&with_port).await.unwrap();
    assert_eq!(r.hops[0], hop("127.0.0.4:5070", Transport::Udp));
    assert_eq!(server.queries_for("_sip._udp.pbx.test"), before);
}

#[tokio::test]
async fn unknown_name_fails_and_is_kept_negatively() {
    let dir = tempfile::tempdir().unwrap();
    let server = Dnsmasq::start(dir.path(), CONF, "");
    let dns = dns_for(server.addr());

    let err = dns.resolve(&target("nowhere.test")).await.unwrap_err();
    assert_eq!(
        err,
        DnsError::Failed(Failure::NxDomain("nowhere.test".into()))
    );
    let asked = server.queries_for("nowhere.test");
    assert!(asked >= 1, "{}", server.log());

    // Kept for negative_ttl_secs (30 s): no new query.
    let again = dns.resolve(&target("nowhere.test")).await.unwrap_err();
    assert_eq!(again, err);
    assert_eq!(server.queries_for("nowhere.test"), asked);
    assert_eq!(
        dns.cached(&target("nowhere.test"), Instant::now()),
        Some(Err(err))
    );
}

#[tokio::test]
async fn a_silent_server_fails_as_a_timeout() {
    // A loopback port with nothing behind it: every query fails (ICMP port unreachable or
    // no answer within timeout_ms).
    let dns = dns_for(SocketAddr::from(([127, 0, 0, 1], free_port())));
    let started = Instant::now();
    let err = dns.resolve(&target("carrier.test")).await.unwrap_err();
    assert_eq!(
        err,
        DnsError::Failed(Failure::Timeout("carrier.test".into()))
    );
    // At the NAPTR stage: one query's worth of waiting, not one per fallback.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(dns
        .cached(&target("carrier.test"), Instant::now())
        .is_some());
}

#[tokio::test]
async fn a_changed_record_is_picked_up_after_its_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let server = Dnsmasq::start(dir.path(), CONF, "127.0.0.5 moving.test\n");
    let dns = dns_for(server.addr());
    let moving = target("moving.test");

    let first = dns.resolve(&moving).await.unwrap();
    assert_eq!(first.hops, vec![hop("127.0.0.5:5060", Transport::Udp)]);

    server.replace_hosts("127.0.0.6 moving.test\n");
    // Before the TTL (1 s) runs out: still the kept answer.
    let kept = dns.resolve(&moving).await.unwrap();
    if Instant::now() < first.expires {
        assert_eq!(kept, first);
    }

    // After it: asked again, the new address.
    tokio::time::sleep_until((first.expires + Duration::from_millis(50)).into()).await;
    let second = dns.resolve(&moving).await.unwrap();
    assert_eq!(second.hops, vec![hop("127.0.0.6:5060", Transport::Udp)]);
    assert!(second.expires > first.expires);
}

#[tokio::test]
async fn a_changed_srv_record_is_picked_up_after_its_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Dnsmasq::start(dir.path(), CONF, "");
    let dns = dns_for(server.addr());
    let first = dns.resolve(&target("carrier.test")).await.unwrap();
    assert_eq!(first.hops[0], hop("127.0.0.2:5081", Transport::Udp));

    // gw2 moves ahead of gw1 (priority 5); the config file is read only at start.
    let swapped = CONF.replace("gw2.carrier.test,5082,20,0", "gw2.carrier.test,5082,5,0");
    server.restart(&swapped);
    tokio::time::sleep_until((first.expires + Duration::from_millis(50)).into()).await;
    let second = dns.resolve(&target("carrier.test")).await.unwrap();
    assert_eq!(
        second.hops,
        vec![
            hop("127.0.0.3:5082", Transport::Udp),
            hop("127.0.0.2:5081", Transport::Udp)
        ]
    );
}
