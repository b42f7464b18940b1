//! Routing index of trunkstore: an immutable [`Snapshot`] built from a validated
//! [`Catalog`](trunkstore_config::Catalog), held by a [`Router`] that swaps snapshots
//! atomically on reload (behaviour.md §3–§6, §8).
//!
//! One lookup each:
//! * [`Snapshot::did`] / [`Snapshot::did_dialled`]: DID → [`RouteInfo`] (server, target,
//!   format, timers, failover, caller id, headers, flags; cascade resolved), with the
//!   proxy core's view of it, [`InboundRoute`], built once per route in the core's units
//!   (timers as `Option<Duration>`, the next hop as a [`Peer`]).
//! * [`Snapshot::source`]: packet source → carrier or IP-auth server.
//! * [`Snapshot::password_servers`] / [`Snapshot::password_servers_any_realm`]: digest
//!   user → password servers.
//! * [`Snapshot::trunk_limit`]: account → trunks.

#![warn(missing_docs, unreachable_pub)]

mod addrhash;
mod key;
mod model;
mod router;
mod snapshot;
mod table;

pub use key::{pack as pack_did, MAX_PACKED_DIGITS};
pub use model::{aor, secs, InboundRoute, Peer, Transport};
pub use router::Router;
pub use snapshot::{AccountInfo, RouteInfo, ServerId, ServerInfo, Snapshot, SourceMatch, Target};
