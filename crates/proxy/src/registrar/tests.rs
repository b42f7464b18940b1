//! The registrar's rules on a virtual clock (RFC 3261 §10.3, behaviour.md §5.4).

use super::*;

const SRC: &str = "127.0.0.7:5062";

fn cfg() -> RegistrarConfig {
    RegistrarConfig {
        min_expires: 60,
        max_expires: 3600,
        default_expires: 600,
        max_contacts: 3,
        keepalive_interval: Some(Duration::from_secs(30)),
        keepalive_failures: 3,
    }
}

fn udp(addr: &str) -> Peer {
    Peer {
        transport: Transport::Udp,
        addr: addr.parse().unwrap(),
    }
}

fn req(contacts: &[&str], call_id: &str, cseq: u32) -> RegisterRequest {
    let values: Vec<&[u8]> = contacts.iter().map(|c| c.as_bytes()).collect();
    RegisterRequest {
        aor: Arc::from("pbx1@example.net"),
        account: Arc::from("acme"),
        server: Arc::from("office"),
        contacts: parse_contacts(values.into_iter(), None).unwrap(),
        header_expires: None,
        call_id: Arc::from(call_id),
        cseq,
        source: udp(SRC),
        user_agent: Some(Arc::from("PBX/1.0")),
    }
}

fn contacts_of(r: &Registrar, now: Instant) -> Vec<String> {
    r.list(now).into_iter().map(|b| b.contact).collect()
}

#[test]
fn a_binding_is_reached_at_the_source_with_the_contact_as_request_uri() {
    let r = Registrar::new(cfg());
    let now = Instant::now();
    let done = r
        .register(
            req(&["<sip:pbx1@192.168.1.20:5080;transport=udp>"], "c1", 1),
            now,
        )
        .unwrap();
    assert!(done.added);
    assert_eq!(
        done.bindings,
        vec![(Arc::from("sip:pbx1@192.168.1.20:5080;transport=udp"), 600)]
    );
    let t = r.targets("pbx1@example.net", now);
    assert_eq!(t.len(), 1);
    assert_eq!(&*t[0].host, "192.168.1.20");
    assert_eq!(t[0].port, Some(5080));
    assert_eq!(&*t[0].params, ";transport=udp");
    assert_eq!(t[0].source, udp(SRC), "never the Contact's address");
    assert!(r.list(now)[0].nat, "a private Contact is behind NAT");
}

#[test]
fn a_contact_naming_its_source_is_not_behind_nat() {
    let r = Registrar::new(cfg());
    let now = Instant::now();
    r.register(req(&["<sip:pbx1@127.0.0.7:5062>"], "c1", 1), now)
        .unwrap();
    assert!(!r.list(now)[0].nat);
    // Another port of the same address is NAT (a port-mapping router).
    r.register(req(&["<sip:pbx1@127.0.0.7:5060>"], "c1", 2), now)
        .unwrap();
    let nat: Vec<bool> = r.list(now).iter().map(|b| b.nat).collect();
    assert_eq!(nat.iter().filter(|n| **n).count(), 1);
}

#[test]
fn expiry_comes_from_the_contact_then_the_header_then_the_default_and_is_capped() {
    let r = Registrar::new(cfg());
    let now = Instant::now();
    let mut q = req(
        &["<sip:a@10.0.0.1>;expires=120", "<sip:b@10.0.0.1>"],
        "c1",
        1,
    );
    q.header_expires = Some(300);
    let done = r.register(q, now).unwrap();
    let mut got: Vec<(String, u32)> = done
        .bindings
        .iter()
        .map(|(c, e)| (c.to_string(), *e))
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("sip:a@10.0.0.1".into(), 120),
            ("sip:b@10.0.0.1".into(), 300)
        ]
    );
    let done = r
        .register(req(&["<sip:c@10.0.0.1>"], "c1", 2), now)
        .unwrap();
    assert!(done.bindings.contains(&(Arc::from("sip:c@10.0.0.1"), 600)));
    let done = r
        .register(req(&["<sip:d@10.0.0.1>;expires=999999"], "c1", 3), now)
        .unwrap();
    assert_eq!(done.bindings[0], (Arc::from("sip:d@10.0.0.1"), 3600));
}

#[test]
fn too_brief_is_423_with_the_minimum_and_changes_nothing() {
    let r = Registrar::new(cfg());
    let now = Instant::now();
    r.register(req(&["<sip:a@10.0.0.1>"], "c1", 1), now)
        .unwrap();
    let g = r.generation();
    let brief = req(
        &[
            "<sip:b@10.0.0.1>;expires=3600",
            "<sip:c@10.0.0.1>;expires=59",
        ],
        "c1",
        2,
    );
    assert_eq!(r.register(brief, now), Err(RegisterError::TooBrief(60)));
    assert_eq!(
        contacts_of(&r, now),
        vec!["sip:a@10.0.0.1"],
        "all or nothing"
    );
    assert_eq!(r.generation(), g);
}

#[test]
fn the_same_call_id_needs_a_higher_cseq_another_call_id_replaces() {
    let r = Registrar::new(cfg());
    let now = Instant::now();
    r.register(req(&["<sip:a@10.0.0.1>"], "c1", 5), now)
        .unwrap();
    for cseq in [4, 5] {
        assert_eq!(
            r.register(req(&["<sip:a@10.0.0.1>;expires=0"], "c1", cseq), now),
            Err(RegisterError::OutOfOrder),
            "CSeq {cseq}"
        );
    }
    assert_eq!(contacts_of(&r, now).len(), 1);
    // A PBX that rebooted has a new Call-ID (and may restart its CSeq).
    let later = now + Duration::from_secs(10);
    let done = r
        .register(req(&["<sip:a@10.0.0.1>;expires=300"], "c2", 1), later)
        .unwrap();
    assert_eq!(done.bindings, vec![(Arc::from("sip:a@10.0.0.1"), 300)]);
    assert_eq!(r.list(later)[0].call_id, "c2");
}

#[test]
fn expires_zero_removes_one_and_star_removes_all() {
    let r = Registrar::new(cfg());
    let now = Instant::now();
    r.register(req(&["<sip:a@10.0.0.1>", "<sip:b@10.0.0.1>"], "c1", 1), now)
        .unwrap();
    let done = r
        .register(req(&["<SIP:a@10.0.0.1>;expires=0"], "c1", 2), now)
        .unwrap();
    assert!(done.removed, "the scheme compares without case");
    assert_eq!(contacts_of(&r, now), vec!["sip:b@10.0.0.1"]);
    let mut star = req(&[], "c1", 3);
    star.contacts = parse_contacts(std::iter::once(&b"*"[..]), Some(0)).unwrap();
    assert_eq!(star.contacts, Contacts::Wildcard);
    let done = r.register(star, now).unwrap();
    assert!(done.removed && done.bindings.is_empty());
    assert!(r.targets("pbx1@example.net", now).is_empty());
}

#[test]
fn star_is_only_valid_alone_with_expires_zero() {
    let star = |v: &'static [u8], e| parse_contacts(std::iter::once(v), e);
    assert_eq!(star(b"*", None), Err(ContactError::BadWildcard));
    assert_eq!(star(b"*", Some(60)), Err(ContactError::BadWildcard));
    assert_eq!(
        star(b"*, <sip:a@10.0.0.1>", Some(0)),
        Err(ContactError::BadWildcard)
    );
    assert_eq!(
        star(b"<tel:+14155550000>", None),
        Err(ContactError::Unreadable)
    );
    assert_eq!(
        star(b"<sip:a@10.0.0.1>;expires=soon", None),
        Err(ContactError::Unreadable)
    );
    assert_eq!(
        parse_contacts(std::iter::empty(), None),
        Ok(Contacts::Query)
    );
}

#[test]
fn a_query_lists_without_changing() {
    let r = Registrar::new(cfg());
    let now = Instant::now();
    r.register(req(&["<sip:a@10.0.0.1>"], "c1", 1), now)
        .unwrap();
    let g = r.generation();
    let done = r
        .register(req(&[], "c1", 2), now + Duration::from_secs(100))
        .unwrap();
    assert_eq!(done.bindings, vec![(Arc::from("sip:a@10.0.0.1"), 500)]);
    assert!(!done.added && !done.removed);
    assert_eq!(r.generation(), g);
}

#[test]
fn past_max_contacts_the_oldest_binding_goes() {
    let r = Registrar::new(cfg());
    let mut now = Instant::now();
    for (i, c) in [
        "<sip:a@10.0.0.1>",
        "<sip:b@10.0.0.1>",
        "<sip:c@10.0.0.1>",
        "<sip:d@10.0.0.1>",
    ]
    .iter()
    .enumerate()
    {
        now += Duration::from_secs(1);
        r.register(req(&[c], "c1", i as u32 + 1), now).unwrap();
    }
    let t: Vec<String> = r
        .targets("pbx1@example.net", now)
        .iter()
        .map(|t| t.host.to_string())
        .collect();
    assert_eq!(t.len(), 3);
    let contacts = contacts_of(&r, now);
    assert!(
        !contacts.contains(&"sip:a@10.0.0.1".to_string()),
        "{contacts:?}"
    );
}

#[test]
fn newest_binding_first() {
    let r = Registrar::new(cfg());
    let now = Instant::now();
    r.register(req(&["<sip:a@10.0.0.1>"], "c1", 1), now)
        .unwrap();
    r.register(req(&["<sip:b@10.0.0.2>"], "c1", 2), now)
        .unwrap();
    let hosts: Vec<String> = r
        .targets("pbx1@example.net", now)
        .iter()
        .map(|t| t.host.to_string())
        .collect();
    assert_eq!(hosts, vec!["10.0.0.2", "10.0.0.1"]);
    // A refresh of the older one makes it the newest.
    r.register(req(&["<sip:a@10.0.0.1>"], "c1", 3), now)
        .unwrap();
    assert_eq!(&*r.targets("pbx1@example.net", now)[0].host, "10.0.0.1");
}

#[test]
fn a_binding_expires_on_time_and_the_sweep_forgets_it() {
    let r = Registrar::new(cfg());
    let now = Instant::now();
    r.register(req(&["<sip:a@10.0.0.1>;expires=60"], "c1", 1), now)
        .unwrap();
    assert_eq!(
        r.targets("pbx1@example.net", now + Duration::from_secs(59))
            .len(),
        1
    );
    let after = now + Duration::from_secs(60);
    assert!(r.targets("pbx1@example.net", after).is_empty());
    let g = r.generation();
    r.sweep(after);
    assert!(r.generation() > g, "persistence sees the change");
    assert!(r.list(after).is_empty());
    assert_eq!(r.count_by_account(after), vec![]);
}

#[test]
fn a_refresh_racing_its_expiry_keeps_the_binding() {
    let r = Registrar::new(cfg());
    let now = Instant::now();
    r.register(req(&["<sip:a@10.0.0.1>;expires=60"], "c1", 1), now)
        .unwrap();
    let edge = now + Duration::from_millis(59_999);
    r.register(req(&["<sip:a@10.0.0.1>;expires=60"], "c1", 2), edge)
        .unwrap();
    r.sweep(now + Duration::from_secs(61));
    assert_eq!(
        r.targets("pbx1@example.net", now + Duration::from_secs(61))
            .len(),
        1
    );
}

#[test]
fn nat_bindings_get_keepalives_and_go_after_three_unanswered() {
    let r = Registrar::new(cfg());
    let t0 = Instant::now();
    r.register(req(&["<sip:a@192.168.1.20>;expires=3600"], "c1", 1), t0)
        .unwrap();
    r.register(req(&["<sip:b@127.0.0.7:5062>;expires=3600"], "c1", 2), t0)
        .unwrap();
    assert!(r.sweep(t0 + Duration::from_secs(29)).is_empty());
    let mut t = t0;
    for round in 1..=3 {
        t += Duration::from_secs(30);
        let due = r.sweep(t);
        assert_eq!(
            due.len(),
            1,
            "round {round}: only the NATed binding is pinged"
        );
        assert_eq!(due[0].to, udp(SRC));
        assert_eq!(&*due[0].contact, "sip:a@192.168.1.20");
    }
    t += Duration::from_secs(30);
    assert!(r.sweep(t).is_empty(), "third failure: no more pings");
    r.sweep(t + Duration::from_secs(1));
    assert_eq!(contacts_of(&r, t), vec!["sip:b@127.0.0.7:5062"]);
}

#[test]
fn an_answer_from_the_binding_keeps_it_an_answer_from_elsewhere_does_not() {
    let r = Registrar::new(cfg());
    let t0 = Instant::now();
    r.register(req(&["<sip:a@192.168.1.20>;expires=3600"], "c1", 1), t0)
        .unwrap();
    let mut t = t0;
    for _ in 0..10 {
        t += Duration::from_secs(30);
        let due = r.sweep(t);
        assert_eq!(due.len(), 1);
        let stranger: SocketAddr = "127.0.0.66:5062".parse().unwrap();
        assert!(!r.keepalive_answered(due[0].id, stranger));
        assert!(r.keepalive_answered(due[0].id, udp(SRC).addr));
        assert!(!r.keepalive_answered(due[0].id, udp(SRC).addr), "once");
    }
    assert_eq!(contacts_of(&r, t).len(), 1);
}

#[test]
fn a_failed_tcp_flow_drops_its_bindings() {
    let r = Registrar::new(cfg());
    let now = Instant::now();
    let mut q = req(&["<sip:a@192.168.1.20;transport=tcp>"], "c1", 1);
    q.source.transport = Transport::Tcp;
    r.register(q, now).unwrap();
    r.transport_failed(udp(SRC));
    assert_eq!(contacts_of(&r, now).len(), 1, "another flow");
    r.transport_failed(Peer {
        transport: Transport::Tcp,
        addr: SRC.parse().unwrap(),
    });
    assert!(contacts_of(&r, now).is_empty());
}

#[test]
fn answers_are_kept_for_retransmissions_then_forgotten() {
    let r = Registrar::new(cfg());
    let now = Instant::now();
    let key = TxKey(7);
    r.keep_answer(key, udp(SRC), Bytes::from_static(b"SIP/2.0 200 OK"), now);
    assert_eq!(
        r.answer_of(key, udp(SRC)).as_deref(),
        Some(&b"SIP/2.0 200 OK"[..])
    );
    assert_eq!(
        r.answer_of(key, udp("127.0.0.66:5062")),
        None,
        "only for its source"
    );
    r.sweep(now + Duration::from_secs(33));
    assert_eq!(r.answer_of(key, udp(SRC)), None);
}

#[test]
fn bindings_survive_a_restart_with_their_time_left() {
    let r = Registrar::new(cfg());
    let now = Instant::now();
    r.register(
        req(&["<sip:a@192.168.1.20:5080>;expires=600"], "c1", 4),
        now,
    )
    .unwrap();
    let saved = r.list(now + Duration::from_secs(100));
    assert_eq!(saved[0].expires_in, Duration::from_secs(500));
    let again = Registrar::new(cfg());
    let later = Instant::now();
    assert_eq!(again.restore(saved.clone(), later), 1);
    assert_eq!(again.list(later), saved);
    let t = again.targets("pbx1@example.net", later);
    assert_eq!(t[0].source, udp(SRC));
    assert!(again
        .targets("pbx1@example.net", later + Duration::from_secs(500))
        .is_empty());
    // The ordering rule holds across the restart.
    assert_eq!(
        again.register(req(&["<sip:a@192.168.1.20:5080>"], "c1", 4), later),
        Err(RegisterError::OutOfOrder)
    );
}

#[test]
fn a_refresh_of_the_same_flow_is_told_apart_from_a_change() {
    let r = Registrar::new(cfg());
    let now = Instant::now();
    r.register(req(&["<sip:a@10.0.0.1>"], "c1", 1), now)
        .unwrap();
    let (g, f) = (r.generation(), r.refresh_generation());
    r.register(req(&["<sip:a@10.0.0.1>"], "c1", 2), now)
        .unwrap();
    assert_eq!((r.generation(), r.refresh_generation()), (g, f + 1));
    // The same Contact from another source port (the NAT mapping changed) is a change.
    let mut moved = req(&["<sip:a@10.0.0.1>"], "c1", 3);
    moved.source = udp("127.0.0.7:6000");
    r.register(moved, now).unwrap();
    assert_eq!(r.generation(), g + 1);
}

#[test]
fn a_refused_first_register_leaves_nothing_behind() {
    let r = Registrar::new(cfg());
    let now = Instant::now();
    let brief = req(&["<sip:a@10.0.0.1>;expires=5"], "c1", 1);
    assert_eq!(r.register(brief, now), Err(RegisterError::TooBrief(60)));
    assert!(r.aors.is_empty());
    r.register(req(&[], "c1", 2), now).unwrap();
    assert!(r.aors.is_empty(), "a query of nothing keeps nothing");
}

/// Issue 18: bindings made on another node of the cluster are reached after this node's
/// own, expire on their own time, are never listed, saved or kept alive here, and a new
/// set from Redis replaces the old one.
#[test]
fn another_nodes_bindings_come_after_ours_and_are_replaced_as_a_whole() {
    let r = Registrar::new(cfg());
    let now = Instant::now();
    let theirs = |contact: &str, source: &str, secs: u64| Registration {
        account: "acme".into(),
        server: "office".into(),
        aor: "pbx1@example.net".into(),
        contact: contact.into(),
        source: udp(source),
        user_agent: None,
        expires_in: Duration::from_secs(secs),
        nat: false,
        call_id: "elsewhere".into(),
        cseq: 1,
    };
    assert_eq!(
        r.set_remote(
            vec![
                theirs("sip:pbx1@127.0.0.8:5060", "127.0.0.8:5060", 60),
                theirs("sip:pbx1@127.0.0.9:5060", "127.0.0.9:5060", 120),
                theirs("not a uri", "127.0.0.10:5060", 60),
                theirs("sip:pbx1@127.0.0.11:5060", "127.0.0.11:5060", 0),
            ],
            now
        ),
        2
    );
    let sources = |at: Instant| -> Vec<String> {
        r.targets("pbx1@example.net", at)
            .iter()
            .map(|t| t.source.addr.to_string())
            .collect()
    };
    assert_eq!(
        sources(now),
        ["127.0.0.9:5060", "127.0.0.8:5060"],
        "newest first"
    );
    r.register(req(&["<sip:pbx1@127.0.0.7:5062>"], "c1", 1), now)
        .unwrap();
    assert_eq!(
        sources(now),
        ["127.0.0.7:5062", "127.0.0.9:5060", "127.0.0.8:5060"],
        "ours first"
    );
    assert_eq!(
        contacts_of(&r, now),
        ["sip:pbx1@127.0.0.7:5062"],
        "never listed here"
    );
    assert_eq!(
        sources(now + Duration::from_secs(61)),
        ["127.0.0.7:5062", "127.0.0.9:5060"],
        "theirs expire on their own time"
    );
    r.set_remote(Vec::new(), now);
    assert_eq!(sources(now), ["127.0.0.7:5062"]);
    assert!(r.targets("other@example.net", now).is_empty());
}
