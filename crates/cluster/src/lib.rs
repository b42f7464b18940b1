//! Several trunkstore nodes as one system (issue 18): what they share lives in Redis.
//!
//! This crate is the only one that talks to Redis. It sits beside the edge: the sans-IO
//! core asks (a trunk to take, a hold to give back), the edge hands the question to this
//! crate's async code and the answer back to the core, exactly as it does for DNS. The
//! single-node default never builds a [`Redis`]: nothing here runs unless the settings
//! have a `cluster` section.
//!
//! * [`Redis`]: one multiplexed, reconnecting connection (redis-rs `ConnectionManager`)
//!   per node, every round trip bounded by `cluster.timeout_ms` and timed into
//!   [`RoundTrips`] for `/metrics`. A timeout or error is an answer too: callers decide
//!   what "Redis is away" means for them (fail-open for trunk limits, 503 for API writes).
//! * [`BindingsTable`]: every node's registrar bindings, reached from every node.
//! * [`SecurityStream`]: auth failures and bans of every node, applied by every node.
//! * Keys: every key starts with `cluster.key_prefix` ([`Redis::key`]), so two clusters
//!   can share one Redis.
//! * [`Documents`]: connectivity documents with revisions, conditional atomic writes
//!   and a change stream every node follows (`cluster.store: "redis"`).
#![warn(missing_docs, unreachable_pub)]

mod bindings;
mod connection;
pub mod documents;
mod security;
mod trunks;

pub use bindings::BindingsTable;
pub use connection::{Redis, RedisError, RoundTrips, ROUND_TRIP_BUCKETS_US};
pub use documents::Documents;
pub use security::{SecurityStream, Shared, STREAM_MAX_LEN};
pub use trunks::TrunkStore;
