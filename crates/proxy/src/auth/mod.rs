//! Authentication of password servers and protection of the proxy (behaviour.md §3, §5.1,
//! §8), as sans-IO building blocks: no sockets, no clock. Times come in as arguments:
//! `now: Instant` for rate limits and bans, wall-clock seconds (`now_secs`) for nonces.
//!
//! * [`Authenticator`]: 407 challenges ([`Authenticator::challenge`]) and verification
//!   of `Proxy-Authorization` ([`Authenticator::verify`] → [`AuthOutcome`]), with
//!   stateless HMAC nonces ([`nonce`]) and a bounded nonce-count table ([`replay`]).
//! * [`Protection`]: per-source rate limit, bans after repeated auth failures, scanner
//!   user agents.
//!
//! Use by the engine: every request first goes through [`Protection::check_request`]
//! (`crate::admission::screen_request`, with `exempt = true` for carriers and IP-auth
//! servers): `Drop` → send nothing. Then, for an out-of-dialog request from a source that
//! is not a carrier or IP-auth server (those skip digest auth):
//!
//! 1. (screened above)
//! 2. No `Proxy-Authorization` → 407 with [`Authenticator::challenge`] (`stale = false`).
//! 3. [`Authenticator::verify`]: `Ok` → [`Protection::record_success`], route as that
//!    server; `Challenge`/`Stale`/`Replay` → 407 with `challenge(.., outcome.stale())`;
//!    `Forbidden` → 403 and [`Protection::record_failure`].
//!
//! Verify new requests only, after the transaction layer has absorbed retransmissions: a
//! retransmitted INVITE carries the same nonce-count and would be refused as a replay.
//! Passwords are never logged or formatted here; `Forbidden` reasons are for logs only.

mod nonce;
mod protect;
mod replay;
mod verify;

#[cfg(test)]
mod tests;

pub(crate) use nonce::NonceKey;
pub use protect::{source_key, ProtectionConfig, ProtectionStats, SecurityEvent};
pub(crate) use protect::{DropReason, Protection, Verdict};
pub(crate) use replay::DEFAULT_CAPACITY as DEFAULT_NONCE_CAPACITY;
pub(crate) use verify::{AuthOutcome, AuthRequest, Authenticator, ChallengeHeaders};
