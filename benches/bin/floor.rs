//! The floor: a datagram forwarder with no SIP work, run by the edge exactly as the proxy
//! is (the same `recvmmsg`/`sendmmsg` workers, `SO_REUSEPORT` sockets and pacing), so
//! what the rig measures for it is what our socket strategy costs per call, and
//! trunkstore's figure minus it is our SIP work.
//!
//! ```sh
//! floor [--listen 127.0.0.1:5060] [--uac 127.0.0.1:5070] [--uas 127.0.0.1:5090]
//!       [--workers N] [--linger-us US]
//! ```
//!
//! Every datagram from the UAC's address goes to the UAS and every one from the UAS's
//! address to the UAC, byte for byte, from the listening socket; anything else is
//! dropped. No SIP is read or written: it works with the rig's SIPp scenarios because
//! SIPp answers a request to the address it came from and sends every request of a call
//! to its remote address (the floor), so with no Record-Route (the UAC's empty route set)
//! ACK and BYE still cross the floor, as in the rig's `--direct` run. Runs in the
//! foreground until killed (SIGTERM, as the rig stops a proxy).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use trunkstore_config::Settings;
use trunkstore_edge::{Core, Edge, EdgeConfig};
use trunkstore_proxy::{Peer, Transmit, Transport};
use trunkstore_sip::message::Message;

/// Relays by source address: the UAC's datagrams to the UAS and back.
struct Floor {
    uac: SocketAddr,
    uas: SocketAddr,
}

impl Floor {
    /// Where a datagram from `from` goes, if anywhere.
    fn destination(&self, from: SocketAddr) -> Option<SocketAddr> {
        if from == self.uac {
            Some(self.uas)
        } else if from == self.uas {
            Some(self.uac)
        } else {
            None
        }
    }
}

impl Core for Floor {
    type Shard = VecDeque<Transmit>;

    fn new_shard(&self) -> Self::Shard {
        VecDeque::new()
    }

    fn handle_datagram(
        &self,
        out: &mut Self::Shard,
        _now: Instant,
        from: Peer,
        local: SocketAddr,
        data: Bytes,
    ) {
        if let Some(to) = self.destination(from.addr) {
            out.push_back(Transmit {
                to: Peer {
                    transport: Transport::Udp,
                    addr: to,
                },
                from: Some(local),
                data,
                tls_name: None,
            });
        }
    }

    // No TCP listener, no timers, nothing fails in a way we would act on.
    fn handle_message(&self, _: &mut Self::Shard, _: Instant, _: Peer, _: SocketAddr, _: Message) {}
    fn handle_timeouts(&self, _: &mut Self::Shard, _: Instant) {}
    fn handle_transport_error(&self, _: &mut Self::Shard, _: Instant, _: Peer) {}

    fn poll_transmit(out: &mut Self::Shard) -> Option<Transmit> {
        out.pop_front()
    }

    fn poll_timeout(_: &Self::Shard) -> Option<Instant> {
        None
    }

    fn begin_shutdown(&self) {}
}

/// The command line.
struct Args {
    listen: SocketAddr,
    uac: SocketAddr,
    uas: SocketAddr,
    /// `None`: as the proxy's default (`workers: 0`, one per CPU we may run on).
    workers: Option<usize>,
    /// `None`: the default `transport.udp_batch_linger_us`.
    linger: Option<Duration>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        listen: "127.0.0.1:5060".parse().expect("literal"),
        uac: "127.0.0.1:5070".parse().expect("literal"),
        uas: "127.0.0.1:5090".parse().expect("literal"),
        workers: None,
        linger: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
        match flag.as_str() {
            "--listen" => args.listen = value.parse().map_err(|e| bad(&e))?,
            "--uac" => args.uac = value.parse().map_err(|e| bad(&e))?,
            "--uas" => args.uas = value.parse().map_err(|e| bad(&e))?,
            "--workers" => args.workers = Some(value.parse().map_err(|e| bad(&e))?),
            "--linger-us" => {
                args.linger = Some(Duration::from_micros(value.parse().map_err(|e| bad(&e))?))
            }
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(args)
}

/// The edge exactly as the proxy builds it from default settings, on one UDP address
/// and no TCP.
fn edge_config(args: &Args) -> Result<EdgeConfig, String> {
    let defaults = Settings::from_value(&serde_json::json!({}), std::path::Path::new("."))
        .map_err(|e| format!("default settings: {e}"))?;
    let mut config = EdgeConfig::from_settings(&defaults);
    config.udp = vec![args.listen];
    config.tcp = Vec::new();
    if let Some(w) = args.workers {
        config.workers = w.max(1);
    }
    if let Some(l) = args.linger {
        config.udp_linger = l;
    }
    Ok(config)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("floor: {e}");
            return ExitCode::from(2);
        }
    };
    let config = match edge_config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("floor: {e}");
            return ExitCode::FAILURE;
        }
    };
    let workers = config.workers;
    let floor = Arc::new(Floor {
        uac: args.uac,
        uas: args.uas,
    });
    let edge = match Edge::start(config, floor) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("floor: cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    eprintln!(
        "floor: {:?} relaying {} <-> {} with {} workers",
        edge.udp_addrs(),
        args.uac,
        args.uas,
        workers
    );
    // The workers do everything; this thread only keeps the process (and the edge) alive.
    loop {
        std::thread::park();
    }
}
