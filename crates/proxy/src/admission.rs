//! Protection at the door (behaviour.md §8): what the edge asks before any parsing work
//! (is this source banned? may it open one more TCP connection?) and the one screen every
//! request passes before the core handles it (bans, scanner user agents, per-source rate
//! limit). The data and counters are in [`crate::auth::Protection`]; this module adds
//! who is exempt: carriers and IP-auth servers, known by source address through the
//! routing directory, are never banned, never limited, never taken for scanners.

use std::net::SocketAddr;
use std::time::Instant;

use trunkstore_sip::message::{HeaderName, Message};

use crate::auth::{DropReason, Verdict};
use crate::context::Ctx;
use crate::route::SourceClass;
use crate::state::State;
use crate::types::Peer;

/// A carrier's trusted source or an IP-auth server (by address, never by header).
fn is_exempt(state: &State, from: SocketAddr) -> bool {
    state.dir.classify_source(from) != SourceClass::Unknown
}

/// Is traffic from `from` let in now? Lock-free when nothing is banned and for every
/// source not banned (the directory is only asked when the address is banned, to let a
/// carrier or IP-auth server through). A refusal is counted.
pub(crate) fn admits(state: &State, from: SocketAddr, now: Instant) -> bool {
    if !state.protection.is_banned(from.ip(), now) || is_exempt(state, from) {
        return true;
    }
    state.protection.refuse(DropReason::Banned);
    false
}

/// May `from`, which has `open` inbound TCP connections already, open one more? Not
/// while banned, nor at `limit` or beyond; exempt sources always may (the global cap
/// still applies to them, in the edge). A refusal is counted.
pub(crate) fn admits_connection(
    state: &State,
    from: SocketAddr,
    open: usize,
    limit: usize,
    now: Instant,
) -> bool {
    let banned = state.protection.is_banned(from.ip(), now);
    if (!banned && open < limit) || is_exempt(state, from) {
        return true;
    }
    let reason = if banned {
        DropReason::BannedConnection
    } else {
        DropReason::SourceConnections
    };
    state.protection.refuse(reason);
    false
}

/// Every request, before anything else is done with it: false means drop it without an
/// answer (a banned source, a scanner, a source over its rate). Requests of every
/// method count, in-dialog ones and CANCEL included: an unknown source gets no answer it
/// was not entitled to, and no free work.
pub(crate) fn screen_request(
    cx: &Ctx<'_>,
    from: Peer,
    source: &SourceClass,
    msg: &Message,
) -> bool {
    // Carriers and IP-auth servers: nothing to look up (most of the traffic).
    if *source != SourceClass::Unknown {
        return true;
    }
    let ua = msg.header(HeaderName::UserAgent);
    match cx
        .state
        .protection
        .check_request(from.addr.ip(), false, ua, cx.now)
    {
        Verdict::Allow => true,
        Verdict::Drop(reason) => {
            tracing::debug!(source = %from.addr, ?reason, "request dropped");
            false
        }
    }
}
