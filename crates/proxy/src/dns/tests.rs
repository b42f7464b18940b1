//! The resolution sequence against a fake resolver: a table of name → records.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use super::*;

/// A fake DNS: answers by (name, kind); a name absent from the table is NXDOMAIN, a name
/// present without that kind is "no data".
#[derive(Default)]
struct FakeDns {
    records: HashMap<(String, QueryKind), Answer>,
}

impl FakeDns {
    fn set(&mut self, name: &str, kind: QueryKind, answer: Answer) -> &mut Self {
        self.records.insert((name.to_string(), kind), answer);
        self
    }

    fn naptr(&mut self, name: &str, records: &[(u16, u16, &str, &str)]) -> &mut Self {
        let records = records
            .iter()
            .map(|(order, preference, service, replacement)| Naptr {
                order: *order,
                preference: *preference,
                flags: "s".into(),
                service: service.to_string(),
                regexp: String::new(),
                replacement: replacement.to_string(),
                ttl: 300,
            })
            .collect();
        self.set(name, QueryKind::Naptr, Answer::Naptr(records))
    }

    fn srv(&mut self, name: &str, records: &[(u16, u16, u16, &str)]) -> &mut Self {
        let records = records
            .iter()
            .map(|(priority, weight, port, target)| Srv {
                priority: *priority,
                weight: *weight,
                port: *port,
                target: target.to_string(),
                ttl: 300,
            })
            .collect();
        self.set(name, QueryKind::Srv, Answer::Srv(records))
    }

    fn a(&mut self, name: &str, ips: &[&str]) -> &mut Self {
        self.addresses(name, QueryKind::A, ips, 300)
    }

    fn aaaa(&mut self, name: &str, ips: &[&str]) -> &mut Self {
        self.addresses(name, QueryKind::Aaaa, ips, 300)
    }

    fn addresses(&mut self, name: &str, kind: QueryKind, ips: &[&str], ttl: u32) -> &mut Self {
        let records = ips
            .iter()
            .map(|ip| Address {
                ip: ip.parse().unwrap(),
                ttl,
            })
            .collect();
        self.set(name, kind, Answer::Addresses(records))
    }

    fn answer(&self, q: &Query) -> Answer {
        if let Some(a) = self.records.get(&(q.name.clone(), q.kind)) {
            return a.clone();
        }
        if self.records.keys().any(|(n, _)| *n == q.name) {
            Answer::NoData
        } else {
            Answer::NxDomain
        }
    }
}

/// Runs a resolution to its end (bounded: a machine that never ends fails the test);
/// returns the outcome and the queries made.
fn run(dns: &FakeDns, target: Target, opts: Options) -> (Step, Vec<Query>) {
    let mut r = Resolution::new(target, opts);
    let mut asked = Vec::new();
    for _ in 0..=MAX_QUERIES {
        match r.step() {
            Step::Query(q) => {
                let a = dns.answer(&q);
                assert!(r.on_answer(&q, a));
                asked.push(q);
            }
            end => return (end, asked),
        }
    }
    panic!("no end after {} queries: {asked:?}", asked.len());
}

fn opts() -> Options {
    Options {
        supported: vec![Transport::Udp, Transport::Tcp, Transport::Tls],
        families: Families::BOTH,
        seed: 1,
    }
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

fn done(step: Step) -> Resolved {
    match step {
        Step::Done(r) => r,
        other => panic!("not done: {other:?}"),
    }
}

fn q(name: &str, kind: QueryKind) -> Query {
    Query {
        name: name.into(),
        kind,
    }
}

#[test]
fn ip_literal_needs_no_dns() {
    let dns = FakeDns::default();
    let (step, asked) = run(&dns, target("192.0.2.1"), opts());
    assert!(asked.is_empty());
    let r = done(step);
    assert_eq!(r.hops, vec![hop("192.0.2.1:5060", Transport::Udp)]);
    assert_eq!(r.ttl, u32::MAX);

    let sips = Target {
        secure: true,
        ..target("[2001:db8::1]")
    };
    let r = done(run(&dns, sips, opts()).0);
    assert_eq!(r.hops, vec![hop("[2001:db8::1]:5061", Transport::Tls)]);

    let tcp = Target {
        port: Some(5080),
        transport: Some(Transport::Tcp),
        ..target("192.0.2.1")
    };
    let r = done(run(&dns, tcp, opts()).0);
    assert_eq!(r.hops, vec![hop("192.0.2.1:5080", Transport::Tcp)]);
}

#[test]
fn ip_literal_of_an_unusable_family_fails() {
    let dns = FakeDns::default();
    let v4 = Options {
        families: Families::V4,
        ..opts()
    };
    let (step, _) = run(&dns, target("2001:db8::1"), v4);
    assert!(
        matches!(step, Step::Failed(Failure::Unsupported(_))),
        "{step:?}"
    );
}

#[test]
fn explicit_port_queries_addresses_only() {
    let mut dns = FakeDns::default();
    dns.naptr("gw.example", &[(10, 10, "SIP+D2T", "_sip._tcp.gw.example")])
        .srv("_sip._udp.gw.example", &[(10, 10, 5070, "other.example")])
        .a("gw.example", &["192.0.2.10"])
        .aaaa("gw.example", &["2001:db8::10"]);
    let t = Target {
        port: Some(5080),
        ..target("GW.example.")
    };
    let (step, asked) = run(&dns, t, opts());
    assert_eq!(
        asked,
        vec![
            q("gw.example", QueryKind::A),
            q("gw.example", QueryKind::Aaaa)
        ]
    );
    assert_eq!(
        done(step).hops,
        vec![
            hop("192.0.2.10:5080", Transport::Udp),
            hop("[2001:db8::10]:5080", Transport::Udp)
        ]
    );
}

#[test]
fn naptr_srv_address_chain() {
    let mut dns = FakeDns::default();
    dns.naptr(
        "carrier.example",
        &[
            (20, 10, "SIP+D2U", "_sip._udp.carrier.example"),
            (10, 20, "SIP+D2U", "_sip._udp.carrier.example"),
            (10, 10, "SIP+D2T", "_sip._tcp.carrier.example."),
        ],
    )
    .srv(
        "_sip._tcp.carrier.example",
        &[
            (20, 0, 5062, "b.carrier.example."),
            (10, 0, 5061, "a.carrier.example."),
        ],
    )
    .srv("_sip._udp.carrier.example", &[(10, 0, 5060, "u.example")])
    .a("a.carrier.example", &["192.0.2.1"])
    .a("b.carrier.example", &["192.0.2.2"]);
    let (step, asked) = run(&dns, target("carrier.example"), opts());
    let r = done(step);
    // Order 10 preference 10 is TCP: its SRV wins, UDP is never queried.
    assert_eq!(
        r.hops,
        vec![
            hop("192.0.2.1:5061", Transport::Tcp),
            hop("192.0.2.2:5062", Transport::Tcp)
        ]
    );
    assert_eq!(
        asked,
        vec![
            q("carrier.example", QueryKind::Naptr),
            q("_sip._tcp.carrier.example", QueryKind::Srv),
            q("a.carrier.example", QueryKind::A),
            q("a.carrier.example", QueryKind::Aaaa),
            q("b.carrier.example", QueryKind::A),
            q("b.carrier.example", QueryKind::Aaaa),
        ]
    );
}

#[test]
fn naptr_filtered_by_supported_transports_and_flags() {
    let mut dns = FakeDns::default();
    let naptr = |flags: &str, service: &str, regexp: &str, replacement: &str| Naptr {
        order: 10,
        preference: 10,
        flags: flags.into(),
        service: service.into(),
        regexp: regexp.into(),
        replacement: replacement.into(),
        ttl: 300,
    };
    dns.set(
        "c.example",
        QueryKind::Naptr,
        Answer::Naptr(vec![
            naptr("s", "SIPS+D2T", "", "_sips._tcp.c.example"), // TLS: not supported here
            naptr("u", "SIP+D2T", "!.*!sip:x@y!", "."),         // not an s record
            naptr("s", "E2U+sip", "", "_x.c.example"),          // unknown service
            naptr("S", "sip+d2u", "", "_sip._udp.c.example"),   // case-insensitive
        ]),
    )
    .srv("_sips._tcp.c.example", &[(10, 0, 5061, "tls.example")])
    .srv("_sip._udp.c.example", &[(10, 0, 5060, "udp.example")])
    .a("udp.example", &["192.0.2.5"])
    .a("tls.example", &["192.0.2.6"]);
    let o = Options {
        supported: vec![Transport::Udp, Transport::Tcp],
        families: Families::V4,
        ..opts()
    };
    let (step, asked) = run(&dns, target("c.example"), o);
    assert_eq!(done(step).hops, vec![hop("192.0.2.5:5060", Transport::Udp)]);
    assert!(!asked
        .iter()
        .any(|q| q.name.contains("_sips") || q.name.starts_with("_x")));
}

#[test]
fn no_naptr_falls_back_to_srv_in_transport_order() {
    let mut dns = FakeDns::default();
    dns.a("s.example", &["192.0.2.99"])
        .srv("_sip._tcp.s.example", &[(10, 0, 5080, "t.s.example")])
        .a("t.s.example", &["192.0.2.7"]);
    let (step, asked) = run(&dns, target("s.example"), opts());
    assert_eq!(done(step).hops, vec![hop("192.0.2.7:5080", Transport::Tcp)]);
    assert_eq!(
        asked[..3],
        [
            q("s.example", QueryKind::Naptr),
            q("_sip._udp.s.example", QueryKind::Srv),
            q("_sip._tcp.s.example", QueryKind::Srv),
        ]
    );
}

#[test]
fn naptr_whose_srv_is_empty_falls_back_to_plain_srv() {
    let mut dns = FakeDns::default();
    dns.naptr(
        "n.example",
        &[(10, 10, "SIP+D2T", "_sip._tcp.broken.example")],
    )
    .srv("_sip._udp.n.example", &[(10, 0, 5060, "u.n.example")])
    .a("u.n.example", &["192.0.2.8"]);
    let (step, asked) = run(&dns, target("n.example"), opts());
    assert_eq!(done(step).hops, vec![hop("192.0.2.8:5060", Transport::Udp)]);
    assert_eq!(asked[1], q("_sip._tcp.broken.example", QueryKind::Srv));
    assert_eq!(asked[2], q("_sip._udp.n.example", QueryKind::Srv));
}

#[test]
fn no_naptr_no_srv_falls_back_to_addresses_on_5060() {
    let mut dns = FakeDns::default();
    dns.a("pbx.example", &["192.0.2.20", "192.0.2.21"])
        .aaaa("pbx.example", &["2001:db8::20"]);
    let (step, asked) = run(&dns, target("pbx.example"), opts());
    let r = done(step);
    // IPv4 first, then IPv6 (Families' doc).
    assert_eq!(
        r.hops,
        vec![
            hop("192.0.2.20:5060", Transport::Udp),
            hop("192.0.2.21:5060", Transport::Udp),
            hop("[2001:db8::20]:5060", Transport::Udp),
        ]
    );
    assert_eq!(asked.len(), 6, "{asked:?}"); // NAPTR, 3 SRV, A, AAAA

    // v4-only listeners: no AAAA query at all.
    let v4 = Options {
        families: Families::V4,
        ..opts()
    };
    let (step, asked) = run(&dns, target("pbx.example"), v4);
    assert_eq!(done(step).hops.len(), 2);
    assert!(!asked.iter().any(|q| q.kind == QueryKind::Aaaa));
}

#[test]
fn sips_uses_only_tls_and_5061() {
    let mut dns = FakeDns::default();
    dns.naptr(
        "sec.example",
        &[
            (10, 10, "SIP+D2U", "_sip._udp.sec.example"),
            (20, 10, "SIPS+D2T", "_sips._tcp.sec.example"),
        ],
    )
    .srv("_sip._udp.sec.example", &[(10, 0, 5060, "u.sec.example")])
    .srv("_sips._tcp.sec.example", &[(10, 0, 5071, "t.sec.example")])
    .a("u.sec.example", &["192.0.2.30"])
    .a("t.sec.example", &["192.0.2.31"])
    .a("plain.example", &["192.0.2.32"]);
    let sips = |host: &str| Target {
        secure: true,
        ..target(host)
    };
    let (step, _) = run(&dns, sips("sec.example"), opts());
    assert_eq!(
        done(step).hops,
        vec![hop("192.0.2.31:5071", Transport::Tls)]
    );

    let (step, asked) = run(&dns, sips("plain.example"), opts());
    assert_eq!(
        done(step).hops,
        vec![hop("192.0.2.32:5061", Transport::Tls)]
    );
    assert!(asked.contains(&q("_sips._tcp.plain.example", QueryKind::Srv)));
    assert!(!asked.iter().any(|q| q.name.starts_with("_sip.")));

    // No TLS at the edge: nothing to ask.
    let no_tls = Options {
        supported: vec![Transport::Udp, Transport::Tcp],
        ..opts()
    };
    let (step, asked) = run(&dns, sips("sec.example"), no_tls);
    assert!(
        matches!(step, Step::Failed(Failure::Unsupported(_))),
        "{step:?}"
    );
    assert!(asked.is_empty());
}

#[test]
fn explicit_transport_queries_its_srv_then_addresses() {
    let mut dns = FakeDns::default();
    dns.naptr("t.example", &[(10, 10, "SIP+D2U", "_sip._udp.t.example")])
        .srv("_sip._udp.t.example", &[(10, 0, 5060, "u.t.example")])
        .srv("_sip._tcp.t.example", &[(10, 0, 5090, "tcp.t.example")])
        .a("tcp.t.example", &["192.0.2.40"])
        .a("t.example", &["192.0.2.41"]);
    let tcp = |host: &str| Target {
        transport: Some(Transport::Tcp),
        ..target(host)
    };
    let (step, asked) = run(&dns, tcp("t.example"), opts());
    assert_eq!(
        done(step).hops,
        vec![hop("192.0.2.40:5090", Transport::Tcp)]
    );
    assert_eq!(asked[0], q("_sip._tcp.t.example", QueryKind::Srv));

    // No SRV for that transport: the host on the default port.
    let mut dns = FakeDns::default();
    dns.a("t.example", &["192.0.2.41"]);
    let (step, asked) = run(&dns, tcp("t.example"), opts());
    assert_eq!(
        done(step).hops,
        vec![hop("192.0.2.41:5060", Transport::Tcp)]
    );
    assert_eq!(
        asked,
        vec![
            q("_sip._tcp.t.example", QueryKind::Srv),
            q("t.example", QueryKind::A),
            q("t.example", QueryKind::Aaaa),
        ]
    );

    // A transport the edge does not have.
    let o = Options {
        supported: vec![Transport::Udp],
        ..opts()
    };
    let (step, asked) = run(&dns, tcp("t.example"), o);
    assert!(
        matches!(step, Step::Failed(Failure::Unsupported(_))),
        "{step:?}"
    );
    assert!(asked.is_empty());
}

#[test]
fn srv_priorities_then_weights_with_a_seed() {
    let mut dns = FakeDns::default();
    dns.srv(
        "_sip._udp.w.example",
        &[
            (20, 0, 5060, "p20.example"),
            (10, 90, 5060, "heavy.example"),
            (10, 10, 5060, "light.example"),
            (10, 0, 5060, "zero.example"),
        ],
    )
    .a("p20.example", &["192.0.2.60"])
    .a("heavy.example", &["192.0.2.61"])
    .a("light.example", &["192.0.2.62"])
    .a("zero.example", &["192.0.2.63"]);
    let mut first = HashMap::new();
    for seed in 0..1000 {
        let o = Options {
            seed,
            families: Families::V4,
            ..opts()
        };
        let (step, _) = run(&dns, target("w.example"), o.clone());
        let hops = done(step).hops;
        assert_eq!(hops.len(), 4);
        // Priority 20 always last.
        assert_eq!(
            hops[3].addr,
            "192.0.2.60:5060".parse::<SocketAddr>().unwrap()
        );
        *first.entry(hops[0].addr.ip()).or_insert(0) += 1;
        // Same seed, same order.
        let (again, _) = run(&dns, target("w.example"), o);
        assert_eq!(done(again).hops, hops);
    }
    let count = |ip: &str| {
        first
            .get(&ip.parse::<IpAddr>().unwrap())
            .copied()
            .unwrap_or(0)
    };
    // Weights 90:10:0 → about 900:100:~0 firsts (a 0-weight record wins only on a draw
    // of exactly 0, 1 in 101).
    assert!((820..=970).contains(&count("192.0.2.61")), "{first:?}");
    assert!((50..=170).contains(&count("192.0.2.62")), "{first:?}");
    assert!(count("192.0.2.63") < 40, "{first:?}");
}

#[test]
fn srv_target_without_address_is_skipped() {
    let mut dns = FakeDns::default();
    dns.srv(
        "_sip._udp.f.example",
        &[(10, 0, 5060, "gone.example"), (20, 0, 5070, "ok.example")],
    )
    .set("gone.example", QueryKind::A, Answer::Timeout)
    .a("ok.example", &["192.0.2.70"]);
    let (step, _) = run(&dns, target("f.example"), opts());
    assert_eq!(
        done(step).hops,
        vec![hop("192.0.2.70:5070", Transport::Udp)]
    );
}

#[test]
fn unknown_name_fails_with_nxdomain() {
    let dns = FakeDns::default();
    let (step, asked) = run(&dns, target("nowhere.example"), opts());
    assert_eq!(
        step,
        Step::Failed(Failure::NxDomain("nowhere.example".into()))
    );
    assert_eq!(asked.len(), 6, "{asked:?}");
}

#[test]
fn name_without_address_fails_with_no_address() {
    let mut dns = FakeDns::default();
    dns.set("empty.example", QueryKind::Naptr, Answer::NoData);
    let (step, _) = run(&dns, target("empty.example"), opts());
    assert_eq!(
        step,
        Step::Failed(Failure::NoAddress("empty.example".into()))
    );
}

#[test]
fn timeouts_at_naptr_or_srv_fail_at_once() {
    let mut dns = FakeDns::default();
    dns.set("slow.example", QueryKind::Naptr, Answer::Timeout)
        .a("slow.example", &["192.0.2.80"]);
    let (step, asked) = run(&dns, target("slow.example"), opts());
    assert_eq!(step, Step::Failed(Failure::Timeout("slow.example".into())));
    assert_eq!(asked.len(), 1);

    let mut dns = FakeDns::default();
    dns.set("_sip._udp.slow.example", QueryKind::Srv, Answer::Timeout)
        .a("slow.example", &["192.0.2.80"]);
    let (step, asked) = run(&dns, target("slow.example"), opts());
    assert_eq!(
        step,
        Step::Failed(Failure::Timeout("_sip._udp.slow.example".into()))
    );
    assert_eq!(asked.len(), 2);

    // At the address stage: the target is skipped, none left → the timeout.
    let mut dns = FakeDns::default();
    dns.set("slow.example", QueryKind::A, Answer::Timeout).set(
        "slow.example",
        QueryKind::Aaaa,
        Answer::Timeout,
    );
    let t = Target {
        port: Some(5060),
        ..target("slow.example")
    };
    let (step, _) = run(&dns, t, opts());
    assert_eq!(step, Step::Failed(Failure::Timeout("slow.example".into())));
}

#[test]
fn srv_dot_target_means_no_service() {
    let mut dns = FakeDns::default();
    dns.srv("_sip._udp.dot.example", &[(0, 0, 0, ".")])
        .a("dot.example", &["192.0.2.90"]);
    let t = Target {
        transport: Some(Transport::Udp),
        ..target("dot.example")
    };
    let (step, _) = run(&dns, t, opts());
    assert_eq!(
        step,
        Step::Failed(Failure::NoService("_sip._udp.dot.example".into()))
    );
}

#[test]
fn ttl_is_the_minimum_of_the_records_used() {
    let mut dns = FakeDns::default();
    dns.naptr(
        "ttl.example",
        &[(10, 10, "SIP+D2U", "_sip._udp.ttl.example")],
    )
    .set(
        "_sip._udp.ttl.example",
        QueryKind::Srv,
        Answer::Srv(vec![
            Srv {
                priority: 10,
                weight: 0,
                port: 5060,
                target: "a.ttl.example".into(),
                ttl: 120,
            },
            Srv {
                priority: 20,
                weight: 0,
                port: 5060,
                target: "b.ttl.example".into(),
                ttl: 200,
            },
        ]),
    )
    .addresses("a.ttl.example", QueryKind::A, &["192.0.2.1"], 60)
    .addresses("b.ttl.example", QueryKind::A, &["192.0.2.2"], 7);
    let r = done(run(&dns, target("ttl.example"), opts()).0);
    assert_eq!(r.hops.len(), 2);
    assert_eq!(r.ttl, 7);
}

#[test]
fn hostile_answers_are_bounded() {
    // 100 SRV records, each its own target with 100 addresses: at most MAX_RECORDS
    // records looked at, MAX_HOPS hops out, MAX_QUERIES queries made.
    let mut dns = FakeDns::default();
    let srv: Vec<Srv> = (0..100)
        .map(|i| Srv {
            priority: 10,
            weight: 1,
            port: 5060,
            target: format!("t{i}.big.example"),
            ttl: 300,
        })
        .collect();
    dns.set("_sip._udp.big.example", QueryKind::Srv, Answer::Srv(srv));
    for i in 0..100u32 {
        let ips: Vec<String> = (0..100u32)
            .map(|j| IpAddr::from((i << 12 | j).to_be_bytes()).to_string())
            .collect();
        let ips: Vec<&str> = ips.iter().map(String::as_str).collect();
        dns.a(&format!("t{i}.big.example"), &ips);
    }
    let (step, asked) = run(&dns, target("big.example"), opts());
    let r = done(step);
    assert_eq!(r.hops.len(), MAX_HOPS);
    assert!(asked.len() <= MAX_QUERIES);
    let distinct: std::collections::HashSet<_> = r.hops.iter().collect();
    assert_eq!(distinct.len(), r.hops.len(), "no duplicate hop");
}

#[test]
fn targets_named_many_times_are_asked_once() {
    // Every SRV record names the same dead target (no address): each address query is
    // made once, the rest answered from memory, and the machine ends.
    let mut dns = FakeDns::default();
    let srv: Vec<Srv> = (0..MAX_RECORDS as u16 * 4)
        .map(|i| Srv {
            priority: i,
            weight: 0,
            port: 5060 + i,
            target: "loop.example.".into(),
            ttl: 300,
        })
        .collect();
    dns.set("_sip._udp.loop.example", QueryKind::Srv, Answer::Srv(srv))
        .set("loop.example", QueryKind::Naptr, Answer::NoData);
    let (step, asked) = run(&dns, target("loop.example"), opts());
    assert_eq!(
        step,
        Step::Failed(Failure::NoAddress("loop.example".into()))
    );
    let address_queries = asked.iter().filter(|q| q.name == "loop.example").count();
    assert_eq!(address_queries, 3, "{asked:?}"); // NAPTR, A, AAAA

    // The same target on MAX_RECORDS ports: one hop per port, one A query.
    dns.a("loop.example", &["192.0.2.100"]);
    let (step, asked) = run(&dns, target("loop.example"), opts());
    assert_eq!(done(step).hops.len(), MAX_RECORDS);
    assert_eq!(asked.iter().filter(|q| q.kind == QueryKind::A).count(), 1);
}

#[test]
fn naptr_pointing_at_itself_does_not_loop() {
    // A NAPTR whose replacement is its own name (a loop in a recursive NAPTR reader):
    // followed one level only, as an SRV name.
    let mut dns = FakeDns::default();
    dns.set(
        "self.example",
        QueryKind::Naptr,
        Answer::Naptr(
            (0..100)
                .map(|i| Naptr {
                    order: i,
                    preference: 0,
                    flags: "s".into(),
                    service: "SIP+D2U".into(),
                    regexp: String::new(),
                    replacement: "self.example".into(),
                    ttl: 300,
                })
                .collect(),
        ),
    );
    let (step, asked) = run(&dns, target("self.example"), opts());
    assert!(matches!(step, Step::Failed(_)), "{step:?}");
    let srv: Vec<_> = asked.iter().filter(|q| q.kind == QueryKind::Srv).collect();
    assert_eq!(srv.len(), 4, "{srv:?}"); // self.example once, then the 3 plain names
}

#[test]
fn answers_of_the_wrong_family_or_query_are_ignored() {
    let mut dns = FakeDns::default();
    dns.set(
        "mix.example",
        QueryKind::A,
        Answer::Addresses(vec![
            Address {
                ip: "2001:db8::1".parse().unwrap(),
                ttl: 1,
            },
            Address {
                ip: "192.0.2.1".parse().unwrap(),
                ttl: 300,
            },
        ]),
    );
    let t = Target {
        port: Some(5060),
        ..target("mix.example")
    };
    let r = done(run(&dns, t.clone(), opts()).0);
    assert_eq!(r.hops, vec![hop("192.0.2.1:5060", Transport::Udp)]);
    assert_eq!(r.ttl, 300);

    let mut r = Resolution::new(t, opts());
    let Step::Query(asked) = r.step() else {
        panic!("a query first")
    };
    assert!(!r.on_answer(&q("other.example", QueryKind::A), Answer::NoData));
    assert_eq!(r.step(), Step::Query(asked));
}
