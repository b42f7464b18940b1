//! The proxy logic: requests, responses, timers and transport errors.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use trunkstore_sip::message::Message;

use crate::state::State;
use crate::{Peer, Shard};

pub(crate) fn handle_datagram(
    state: &State,
    shard: &mut Shard,
    now: Instant,
    from: Peer,
    local: SocketAddr,
    data: Bytes,
) {
    let _ = (state, shard, now, from, local, data);
}

pub(crate) fn handle_message(
    state: &State,
    shard: &mut Shard,
    now: Instant,
    from: Peer,
    local: SocketAddr,
    msg: Message,
) {
    let _ = (state, shard, now, from, local, msg);
}

pub(crate) fn handle_timeouts(state: &State, shard: &mut Shard, now: Instant) {
    let _ = (state, shard, now);
}

pub(crate) fn handle_transport_error(state: &State, shard: &mut Shard, now: Instant, peer: Peer) {
    let _ = (state, shard, now, peer);
}
