//! Zero-copy SIP codec: no I/O, no async runtime.
//!
//! A [`Message`](message::Message) is a `bytes::Bytes` buffer plus the start line and an
//! index of header ranges; typed views parse the few headers a proxy touches lazily, and
//! edits are spliced into one output buffer.

#![warn(missing_docs, unreachable_pub)]

pub mod error;

// Message representation, parsing, framing, limits, edits, builders.
pub mod build;
pub mod edit;
pub mod framing;
pub mod limits;
pub mod message;
pub mod parse;
pub mod validate;

// Typed views over header values (each works on a `&[u8]` header value).
pub mod digest;
pub mod headers;
pub mod nameaddr;
pub mod params;
pub mod scan;
pub mod uri;
pub mod via;

pub use error::Error;
