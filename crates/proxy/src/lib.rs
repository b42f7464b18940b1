//! Sans-IO SIP proxy core.
//!
//! The core never touches a socket or the clock. The edge (crate `trunkstore-edge`) feeds it
//! events — a datagram or stream message arrived, time passed, a transport failed — with the
//! current time, and drains what it must do: datagrams to send and the next deadline at
//! which to call back. Every RFC 3261 rule and routing rule is therefore a deterministic
//! unit test on a virtual clock.
//!
//! Concurrency model (no global lock on the packet path): one [`Proxy`] is shared by all
//! workers (`Sync`; its tables are concurrent maps, its routing data an atomically swapped
//! snapshot). Each worker thread owns one [`Shard`]: its own timer queue and outgoing
//! queue. A timer fires on the shard that set it and finds its transaction through the
//! shared tables; timers are never cancelled eagerly: a fired timer whose transaction has
//! moved on is ignored.

use std::net::SocketAddr;

use bytes::Bytes;

/// The transport a message arrived on or must leave on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
}

/// The other end of a hop. For TCP, the remote address names the connection: replies to a
/// request go back on the connection it came in on; for new requests the edge reuses an
/// open connection to that address or opens one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    pub transport: Transport,
    pub addr: SocketAddr,
}

/// One message for the edge to send.
#[derive(Debug, Clone)]
pub struct Transmit {
    pub to: Peer,
    /// The local listener it must leave from (the one named in our Via/Record-Route);
    /// `None` lets the edge pick the first listener of that transport and address family.
    pub from: Option<SocketAddr>,
    pub data: Bytes,
}
