//! Transport errors the edge passes to the core: their kinds, their counters (`/metrics`,
//! behaviour.md §7) and the per-driver coalescing that bounds what a burst costs.
//!
//! The core answers a transport error by scanning its whole client-transaction index for
//! the peer (fine for the odd refused connect). ICMP errors are not rare in that way: a
//! stream of datagrams to a dead PBX brings one ICMP error per datagram. So each driver
//! passes an error for a peer on at once, and further errors for that peer within
//! [`WINDOW`] are folded into one, passed on when the window ends: at most one scan per
//! peer per window and per driver, and no error is lost (a transaction created inside the
//! window still fails, at most one window later). The alternative, an index of client
//! transactions by peer in the core, would add a second map to keep in step on every
//! transaction's creation and end (the hot path) for the benefit of a rare event.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use trunkstore_proxy::Peer;

/// Errors for one peer closer together than this are passed to the core as one.
pub(crate) const WINDOW: Duration = Duration::from_millis(100);

/// Peers remembered per driver. Past this (many peers failing within one window) errors
/// are passed on unfolded rather than dropped: correctness first, cost bounded by the
/// number of distinct peers we send to.
const MAX_PEERS: usize = 4096;

/// What failed, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    /// An ICMP unreachable (or parameter problem) for a datagram we sent (IP_RECVERR).
    Icmp,
    /// An outgoing TCP connect refused, reset or timed out.
    TcpConnect,
    /// A TCP connection we opened was reset or closed by its peer.
    TcpClosed,
    /// A write on a TCP connection failed or made no progress.
    TcpWrite,
    /// A send failed at once (no listener of the family, a full TCP queue, the
    /// connection cap, a refused UDP send).
    Send,
    /// An outbound TLS handshake failed: the server's certificate refused (unknown CA,
    /// wrong name or IP, expired), no common protocol, or a reset during it.
    TlsHandshake,
}

impl ErrorKind {
    const ALL: [ErrorKind; 6] = [
        ErrorKind::Icmp,
        ErrorKind::TcpConnect,
        ErrorKind::TcpClosed,
        ErrorKind::TcpWrite,
        ErrorKind::Send,
        ErrorKind::TlsHandshake,
    ];

    /// The `kind` label on `/metrics`.
    fn label(self) -> &'static str {
        match self {
            ErrorKind::Icmp => "icmp",
            ErrorKind::TcpConnect => "tcp_connect",
            ErrorKind::TcpClosed => "tcp_closed",
            ErrorKind::TcpWrite => "tcp_write",
            ErrorKind::Send => "send",
            ErrorKind::TlsHandshake => "tls_handshake",
        }
    }
}

/// Transport errors seen by the edge and reported to the core, by kind; shared by every
/// driver. Read with [`TransportErrors::by_kind`].
#[derive(Debug, Default)]
pub struct TransportErrors {
    counts: [AtomicU64; 6],
}

impl TransportErrors {
    pub(crate) fn count(&self, kind: ErrorKind) {
        let i = ErrorKind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
    }

    /// `(kind label, count)` for every kind, in a fixed order: `icmp`, `tcp_connect`,
    /// `tcp_closed`, `tcp_write`, `send`, `tls_handshake`.
    pub fn by_kind(&self) -> Vec<(&'static str, u64)> {
        ErrorKind::ALL
            .iter()
            .zip(self.counts.iter())
            .map(|(k, n)| (k.label(), n.load(Ordering::Relaxed)))
            .collect()
    }
}

/// One peer's recent errors.
struct Slot {
    /// When its last error was passed to the core.
    passed: Instant,
    /// Another error came since: pass it on at `passed + WINDOW`, as this kind (ICMP
    /// only if every folded error was ICMP: the core trusts ICMP less).
    pending: Option<ErrorKind>,
}

/// The kind a folded error is passed on as.
fn fold(pending: Option<ErrorKind>, kind: ErrorKind) -> ErrorKind {
    match pending {
        Some(p) if p != ErrorKind::Icmp => p,
        _ => kind,
    }
}

/// Folds bursts of errors per peer (see the module docs). Owned by one driver.
#[derive(Default)]
pub(crate) struct Coalescer {
    peers: HashMap<Peer, Slot>,
}

impl Coalescer {
    /// An error of `kind` for `peer` at `now`: true when it goes to the core now; false
    /// when it is folded into one passed on later by [`due`](Coalescer::due).
    pub(crate) fn admit(&mut self, peer: Peer, kind: ErrorKind, now: Instant) -> bool {
        if let Some(slot) = self.peers.get_mut(&peer) {
            if now < slot.passed + WINDOW {
                slot.pending = Some(fold(slot.pending, kind));
                return false;
            }
            slot.passed = now;
            slot.pending = None;
            return true;
        }
        if self.peers.len() >= MAX_PEERS {
            self.forget_quiet(now);
            if self.peers.len() >= MAX_PEERS {
                return true;
            }
        }
        self.peers.insert(
            peer,
            Slot {
                passed: now,
                pending: None,
            },
        );
        true
    }

    /// When the next folded error falls due; `None` when none waits (nothing to scan
    /// when no error came: the common case costs one emptiness check).
    pub(crate) fn deadline(&self) -> Option<Instant> {
        if self.peers.is_empty() {
            return None;
        }
        self.peers
            .values()
            .filter(|s| s.pending.is_some())
            .map(|s| s.passed + WINDOW)
            .min()
    }

    /// Moves the peers whose folded error is due by `now` into `out` (each now counts
    /// as passed on) and forgets peers quiet for a whole window.
    pub(crate) fn due(&mut self, now: Instant, out: &mut Vec<(Peer, ErrorKind)>) {
        if self.peers.is_empty() {
            return;
        }
        for (peer, slot) in self.peers.iter_mut() {
            if slot.passed + WINDOW > now {
                continue;
            }
            if let Some(kind) = slot.pending.take() {
                slot.passed = now;
                out.push((*peer, kind));
            }
        }
        self.forget_quiet(now);
    }

    fn forget_quiet(&mut self, now: Instant) {
        self.peers
            .retain(|_, s| s.pending.is_some() || now < s.passed + WINDOW);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trunkstore_proxy::Transport;

    const ICMP: ErrorKind = ErrorKind::Icmp;

    fn udp(port: u16) -> Peer {
        Peer {
            transport: Transport::Udp,
            addr: ([127, 0, 0, 1], port).into(),
        }
    }

    #[test]
    fn a_burst_for_one_peer_reaches_the_core_once_then_once_more_after_the_window() {
        let mut c = Coalescer::default();
        let t0 = Instant::now();
        assert!(c.admit(udp(5060), ICMP, t0), "the first error goes at once");
        for i in 1..1000u64 {
            assert!(!c.admit(udp(5060), ICMP, t0 + Duration::from_micros(i * 50)));
        }
        assert_eq!(c.deadline(), Some(t0 + WINDOW));
        let mut out = Vec::new();
        c.due(t0 + WINDOW - Duration::from_millis(1), &mut out);
        assert!(out.is_empty(), "not before the window ends");
        c.due(t0 + WINDOW, &mut out);
        assert_eq!(out, vec![(udp(5060), ICMP)], "the folded errors, once");
        assert_eq!(c.deadline(), None);
        out.clear();
        c.due(t0 + WINDOW * 5, &mut out);
        assert!(out.is_empty());
        assert!(c.peers.is_empty(), "a quiet peer is forgotten");
    }

    #[test]
    fn other_peers_are_not_held_back_by_one_peers_burst() {
        let mut c = Coalescer::default();
        let t0 = Instant::now();
        assert!(c.admit(udp(1), ICMP, t0));
        assert!(!c.admit(udp(1), ICMP, t0 + Duration::from_millis(1)));
        assert!(c.admit(udp(2), ICMP, t0 + Duration::from_millis(2)));
        let tcp = Peer {
            transport: Transport::Tcp,
            ..udp(1)
        };
        assert!(c.admit(tcp, ICMP, t0 + Duration::from_millis(3)));
    }

    #[test]
    fn an_error_after_a_quiet_window_goes_at_once() {
        let mut c = Coalescer::default();
        let t0 = Instant::now();
        assert!(c.admit(udp(1), ICMP, t0));
        assert!(c.admit(udp(1), ICMP, t0 + WINDOW));
        assert_eq!(c.deadline(), None, "nothing folded");
    }

    #[test]
    fn a_full_table_passes_errors_on_unfolded() {
        let mut c = Coalescer::default();
        let t0 = Instant::now();
        for p in 0..MAX_PEERS as u16 {
            assert!(c.admit(udp(p + 1), ICMP, t0));
        }
        assert!(c.admit(udp(60_000), ICMP, t0), "never dropped");
        assert!(c.admit(udp(60_000), ICMP, t0), "and not folded while full");
        assert_eq!(c.peers.len(), MAX_PEERS);
        // Once the others are quiet, room again.
        assert!(c.admit(udp(60_001), ICMP, t0 + WINDOW));
        assert!(c.peers.len() <= 2);
    }

    #[test]
    fn a_folded_burst_is_icmp_only_if_every_error_was() {
        let mut c = Coalescer::default();
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        assert!(c.admit(udp(1), ICMP, t0));
        assert!(!c.admit(udp(1), ICMP, t0 + ms(1)));
        assert!(!c.admit(udp(1), ErrorKind::Send, t0 + ms(2)));
        assert!(!c.admit(udp(1), ICMP, t0 + ms(3)));
        assert!(c.admit(udp(2), ICMP, t0));
        assert!(!c.admit(udp(2), ICMP, t0 + ms(1)));
        let mut out = Vec::new();
        c.due(t0 + WINDOW, &mut out);
        out.sort_by_key(|(p, _)| p.addr.port());
        assert_eq!(out, vec![(udp(1), ErrorKind::Send), (udp(2), ICMP)]);
    }

    #[test]
    fn counters_by_kind() {
        let e = TransportErrors::default();
        e.count(ErrorKind::Icmp);
        e.count(ErrorKind::Icmp);
        e.count(ErrorKind::TcpClosed);
        assert_eq!(
            e.by_kind(),
            vec![
                ("icmp", 2),
                ("tcp_connect", 0),
                ("tcp_closed", 1),
                ("tcp_write", 0),
                ("send", 0),
                ("tls_handshake", 0)
            ]
        );
    }
}
