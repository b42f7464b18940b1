//! Trunk limits across nodes (behaviour.md §9.2) on a virtual clock, with a fake cluster
//! answering the core's trunk takes: who waits, what each verdict does, and that every
//! hold asked of the cluster is given back exactly once.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use common::*;
use trunkstore_proxy::{HoldId, ProxyConfig, TrunkOp, TrunkTake, Verdict};

/// The cluster as the edge would answer it: one count per account over every node.
#[derive(Default)]
struct FakeCluster {
    /// Holds taken per account (this node's and `others`).
    held: HashMap<Arc<str>, HashSet<u64>>,
    /// Holds of other nodes per account.
    others: HashMap<Arc<str>, u32>,
    releases: Vec<u64>,
}

impl FakeCluster {
    /// Drains the core's queue: takes are returned (for the test to answer), releases
    /// applied.
    fn drain(&mut self, h: &H) -> Vec<TrunkTake> {
        let mut takes = Vec::new();
        while let Some(op) = h.proxy.poll_trunk_op() {
            match op {
                TrunkOp::Take(t) => takes.push(t),
                TrunkOp::Release(r) => {
                    self.releases.push(r.hold.0);
                    if let Some(s) = self.held.get_mut(&r.account) {
                        s.remove(&r.hold.0);
                    }
                }
            }
        }
        takes
    }

    /// The take script: under the limit, the hold is added.
    fn decide(&mut self, t: &TrunkTake) -> Verdict {
        let others = self.others.get(&t.account).copied().unwrap_or(0);
        let mine = self.held.entry(t.account.clone()).or_default();
        if (mine.len() as u32) + others < t.limit {
            mine.insert(t.hold.0);
            Verdict::Granted
        } else {
            Verdict::Refused
        }
    }

    fn in_use(&self, account: &str) -> usize {
        self.held.get(account).map_or(0, |s| s.len())
    }
}

fn harness(limit: Option<u32>) -> H {
    let mut cfg = ProxyConfig::for_tests("10.0.0.1", 5060);
    cfg.cluster = Some(trunkstore_proxy::ClusterNode {
        node_id: "test-node".into(),
        secret: trunkstore_config::Secret::new("test-cluster-secret-0123"),
    });
    let dir = match limit {
        Some(n) => directory().with_trunks("acc1", n),
        None => directory(),
    };
    H::with(cfg, dir)
}

fn verdict(h: &mut H, t: &TrunkTake, v: Verdict) -> Vec<trunkstore_proxy::Transmit> {
    let now = h.now;
    h.proxy
        .handle_trunk_verdict(&mut h.shard, now, t.key, t.hold, v);
    h.drain()
}

fn invites_to_server(out: &[trunkstore_proxy::Transmit]) -> Vec<trunkstore_proxy::Transmit> {
    out.iter()
        .filter(|t| t.to == udp(SERVER) && status(t).is_none() && method(t) == "INVITE")
        .cloned()
        .collect()
}

fn finals_to_carrier(out: &[trunkstore_proxy::Transmit]) -> Vec<u16> {
    out.iter()
        .filter(|t| t.to == udp(CARRIER))
        .filter_map(status)
        .filter(|s| *s >= 200)
        .collect()
}

/// INVITE from the carrier of a limited account: 100 Trying only, and one take queued.
fn invite_waiting(h: &mut H, fake: &mut FakeCluster, call: &str) -> TrunkTake {
    let out = h.feed(udp(CARRIER), &invite(call, &format!("z9hG4bK-{call}")));
    let statuses: Vec<_> = out.iter().map(status).collect();
    assert_eq!(
        statuses,
        vec![Some(100)],
        "only the 100 Trying while waiting"
    );
    let mut takes = fake.drain(h);
    assert_eq!(takes.len(), 1);
    let t = takes.remove(0);
    assert_eq!((&*t.account, t.limit), ("acc1", 2));
    t
}

#[test]
fn accounts_without_a_limit_never_wait_nor_touch_the_cluster() {
    let mut h = harness(None);
    let out = h.feed(udp(CARRIER), &invite("u1", "z9hG4bK-u1"));
    assert_eq!(invites_to_server(&out).len(), 1, "forwarded at once");
    assert_eq!(h.proxy.poll_trunk_op(), None);
    let fwd = invites_to_server(&out).remove(0);
    h.feed(udp(SERVER), &reply(&fwd, 486));
    h.feed(udp(CARRIER), &ack_non2xx("u1", "z9hG4bK-u1", "callee1"));
    assert_eq!(h.proxy.poll_trunk_op(), None, "no release either");
    assert!(h.proxy.cluster_holds().is_empty());
}

#[test]
fn granted_proceeds_and_gives_back_once_after_bye() {
    let mut h = harness(Some(2));
    let mut fake = FakeCluster::default();
    let t = invite_waiting(&mut h, &mut fake, "g1");
    assert_eq!(h.proxy.cluster_holds().len(), 1, "live while waiting");
    // The caller's retransmission while waiting gets the 100 again, nothing goes out.
    let out = h.feed(udp(CARRIER), &invite("g1", "z9hG4bK-g1"));
    assert_eq!(out.iter().map(status).collect::<Vec<_>>(), vec![Some(100)]);
    let v = fake.decide(&t);
    assert_eq!(v, Verdict::Granted);
    let out = verdict(&mut h, &t, v);
    let fwd = invites_to_server(&out);
    assert_eq!(fwd.len(), 1, "the first attempt starts on the grant");
    h.feed(
        udp(SERVER),
        &answer(&fwd[0], 200, "sip:callee@10.0.0.5:5080"),
    );
    h.feed(
        udp(CARRIER),
        &in_dialog_from_carrier("ACK", "g1", "z9hG4bK-g1a", 1),
    );
    assert!(
        fake.drain(&h).is_empty(),
        "the call is up: nothing given back"
    );
    assert_eq!(fake.in_use("acc1"), 1);
    let out = h.feed(udp(SERVER), &bye_from_server("g1", "z9hG4bK-g1bye"));
    let bye = out
        .iter()
        .find(|t| method(t) == "BYE")
        .expect("BYE relayed");
    h.feed(udp(CARRIER), &reply(bye, 200));
    fake.drain(&h);
    assert_eq!(fake.releases, vec![t.hold.0]);
    assert_eq!(fake.in_use("acc1"), 0);
    assert!(h.proxy.cluster_holds().is_empty());
    // A verdict arriving twice (or late) changes nothing.
    assert!(verdict(&mut h, &t, Verdict::Granted).is_empty());
}

#[test]
fn refused_by_the_cluster_is_the_local_refusal() {
    let mut h = harness(Some(2));
    let mut fake = FakeCluster::default();
    // Two calls up on the other nodes.
    fake.others.insert(Arc::from("acc1"), 2);
    let t = invite_waiting(&mut h, &mut fake, "r1");
    let v = fake.decide(&t);
    assert_eq!(v, Verdict::Refused);
    let out = verdict(&mut h, &t, v);
    assert!(invites_to_server(&out).is_empty());
    let refusal = out
        .iter()
        .find(|t| status(t) == Some(486))
        .expect("486 as for the local limit");
    assert!(text(refusal).contains("486 Trunk limit reached") || text(refusal).contains("486 "));
    assert_eq!(h.proxy.cluster_trunk_stats().refusals, 1);
    assert!(fake.drain(&h).is_empty(), "refused: nothing to give back");
    assert!(h.proxy.cluster_holds().is_empty());
    let local: u32 = h.proxy.trunks_in_use().iter().map(|(_, n)| n).sum();
    assert_eq!(local, 0, "the local hold is given back too");
    h.feed(udp(CARRIER), &ack_non2xx("r1", "z9hG4bK-r1", "x"));
    h.assert_drained();
}

#[test]
fn unavailable_lets_the_call_through_counted_and_gives_back_after() {
    let mut h = harness(Some(2));
    let mut fake = FakeCluster::default();
    let t = invite_waiting(&mut h, &mut fake, "f1");
    let out = verdict(&mut h, &t, Verdict::Unavailable);
    let fwd = invites_to_server(&out);
    assert_eq!(fwd.len(), 1, "fail-open");
    assert_eq!(h.proxy.cluster_trunk_stats().fail_open, 1);
    assert_eq!(
        h.proxy.cluster_holds().len(),
        1,
        "live: reconciled when Redis is back"
    );
    h.feed(udp(SERVER), &reply(&fwd[0], 486));
    let ops = fake.drain(&h);
    assert!(ops.is_empty());
    assert_eq!(
        fake.releases,
        vec![t.hold.0],
        "given back like any live hold"
    );
    // The local limit still bounds this node while Redis is away.
    assert!(h.proxy.cluster_holds().is_empty());
}

#[test]
fn cancel_while_waiting_ends_with_487_and_gives_back() {
    let mut h = harness(Some(2));
    let mut fake = FakeCluster::default();
    let t = invite_waiting(&mut h, &mut fake, "c1");
    let out = h.feed(udp(CARRIER), &cancel("c1", "z9hG4bK-c1"));
    let mut finals = finals_to_carrier(&out);
    finals.sort();
    assert_eq!(
        finals,
        vec![200, 487],
        "200 to the CANCEL, 487 to the INVITE"
    );
    assert!(invites_to_server(&out).is_empty());
    // The take is still in flight at the cluster: the release is queued after it.
    let v = fake.decide(&t);
    fake.drain(&h);
    assert_eq!(fake.releases, vec![t.hold.0]);
    assert_eq!(fake.in_use("acc1"), 0);
    // Its verdict comes back for a call that is over: ignored.
    assert!(verdict(&mut h, &t, v).is_empty());
    h.feed(udp(CARRIER), &ack_non2xx("c1", "z9hG4bK-c1", "x"));
    h.assert_drained();
    assert!(h.proxy.cluster_holds().is_empty());
}

/// How one granted call ends.
#[derive(Clone, Copy, Debug)]
enum End {
    Busy,
    ByeFromCallee,
    CancelAfterForward,
    NoAnswer,
    Refused,
    CancelWaiting,
}

/// Runs one call of `acc1` to its end; returns the holds asked for.
fn run_call(h: &mut H, fake: &mut FakeCluster, call: &str, end: End) -> Option<HoldId> {
    let br = format!("z9hG4bK-{call}");
    h.feed(udp(CARRIER), &invite(call, &br));
    let takes = fake.drain(h);
    let t = takes.first()?.clone();
    if let End::CancelWaiting = end {
        h.feed(udp(CARRIER), &cancel(call, &br));
        fake.decide(&t);
        verdict(h, &t, Verdict::Granted);
        h.feed(udp(CARRIER), &ack_non2xx(call, &br, "x"));
        return Some(t.hold);
    }
    let v = if let End::Refused = end {
        Verdict::Refused
    } else {
        fake.decide(&t)
    };
    let out = verdict(h, &t, v);
    let Some(fwd) = invites_to_server(&out).pop() else {
        h.feed(udp(CARRIER), &ack_non2xx(call, &br, "x"));
        return Some(t.hold);
    };
    match end {
        End::Busy => {
            h.feed(udp(SERVER), &reply(&fwd, 486));
        }
        End::ByeFromCallee => {
            h.feed(udp(SERVER), &answer(&fwd, 200, "sip:callee@10.0.0.5:5080"));
            h.feed(
                udp(CARRIER),
                &in_dialog_from_carrier("ACK", call, &format!("{br}a"), 1),
            );
            let out = h.feed(udp(SERVER), &bye_from_server(call, &format!("{br}b")));
            if let Some(bye) = out.iter().find(|t| method(t) == "BYE") {
                h.feed(udp(CARRIER), &reply(bye, 200));
            }
        }
        End::CancelAfterForward => {
            h.feed(udp(SERVER), &reply(&fwd, 180));
            let out = h.feed(udp(CARRIER), &cancel(call, &br));
            if let Some(c) = out.iter().find(|t| method(t) == "CANCEL") {
                h.feed(udp(SERVER), &reply(c, 200));
            }
            h.feed(udp(SERVER), &reply(&fwd, 487));
        }
        End::NoAnswer => {
            h.advance_by(200_000);
        }
        End::Refused | End::CancelWaiting => unreachable!(),
    }
    h.feed(udp(CARRIER), &ack_non2xx(call, &br, "callee1"));
    Some(t.hold)
}

#[test]
fn every_ending_gives_back_exactly_once() {
    for end in [
        End::Busy,
        End::ByeFromCallee,
        End::CancelAfterForward,
        End::NoAnswer,
        End::CancelWaiting,
    ] {
        let mut h = harness(Some(2));
        let mut fake = FakeCluster::default();
        let hold = run_call(&mut h, &mut fake, "e1", end).expect("asked");
        h.assert_drained();
        fake.drain(&h);
        assert_eq!(fake.releases, vec![hold.0], "{end:?}");
        assert_eq!(fake.in_use("acc1"), 0, "{end:?}");
        assert!(h.proxy.cluster_holds().is_empty(), "{end:?}");
    }
    // Refused: never added, nothing given back.
    let mut h = harness(Some(2));
    let mut fake = FakeCluster::default();
    run_call(&mut h, &mut fake, "e2", End::Refused).expect("asked");
    h.assert_drained();
    assert!(fake.drain(&h).is_empty() && fake.releases.is_empty());
}

#[test]
fn ten_thousand_calls_leave_no_holds() {
    let mut h = harness(Some(2));
    let mut fake = FakeCluster::default();
    let ends = [
        End::Busy,
        End::ByeFromCallee,
        End::CancelAfterForward,
        End::Refused,
        End::CancelWaiting,
    ];
    let mut asked = 0;
    for i in 0..10_000 {
        let end = ends[i % ends.len()];
        if run_call(&mut h, &mut fake, &format!("k{i:05}"), end).is_some() {
            asked += 1;
        } else {
            panic!(
                "call {i} ({end:?}) not asked: {:?}",
                h.proxy.trunks_in_use()
            );
        }
        // Past the per-source request rate of unauthenticated sources (the callee's
        // BYEs), and the lingering transactions' timers.
        h.advance_by(if i % 1000 == 999 { 60_000 } else { 1_000 });
    }
    assert_eq!(asked, 10_000);
    h.assert_drained();
    fake.drain(&h);
    assert_eq!(fake.in_use("acc1"), 0);
    assert!(h.proxy.cluster_holds().is_empty());
    let local: u32 = h.proxy.trunks_in_use().iter().map(|(_, n)| n).sum();
    assert_eq!(local, 0);
    assert_eq!(h.proxy.cluster_trunk_stats().holds, 0);
    // Exactly one release per asked hold that was not refused.
    let unique: HashSet<_> = fake.releases.iter().collect();
    assert_eq!(unique.len(), fake.releases.len(), "never twice");
    assert_eq!(fake.releases.len(), 10_000 - 2_000);
}
