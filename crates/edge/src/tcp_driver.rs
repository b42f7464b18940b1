//! The task owning the TCP side's shard: feeds it framed messages, transport errors and
//! timer expiries, and sends what it produces (through `drive`, like a UDP worker).

use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};

use crate::core::Core;
use crate::drive::Driver;
use crate::tcp::TcpEvent;

/// Events the driver handles before it sends what they produced.
const EVENT_BATCH: usize = 64;

/// Runs until every connection's sender is gone (the runtime shutting down).
pub(crate) async fn drive<C: Core>(mut driver: Driver<C>, mut events: mpsc::Receiver<TcpEvent>) {
    loop {
        let deadline = driver.deadline().map(Instant::from_std);
        tokio::select! {
            ev = events.recv() => {
                let Some(ev) = ev else { break };
                handle_event(&mut driver, ev);
                // Whatever else is queued, before sending (fewer wake-ups under load).
                for _ in 1..EVENT_BATCH {
                    let Ok(ev) = events.try_recv() else { break };
                    handle_event(&mut driver, ev);
                }
            }
            _ = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {}
        }
        driver.settle(std::time::Instant::now(), None);
    }
}

fn handle_event<C: Core>(driver: &mut Driver<C>, ev: TcpEvent) {
    let now = std::time::Instant::now();
    match ev {
        TcpEvent::Message { from, local, msg } => driver.message(now, from, local, *msg),
        TcpEvent::Error(peer, kind) => driver.transport_error(now, peer, kind),
        TcpEvent::Resolved(key, outcome) => driver.resolved(now, key, outcome),
        TcpEvent::TrunkVerdict(key, hold, verdict) => driver.trunk_verdict(now, key, hold, verdict),
    }
}
