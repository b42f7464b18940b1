//! The proxy's own machines (RFC 3261 §16), as plain values in the style of
//! [`crate::transaction`]: they hold their position, each event method says what the
//! caller must do, and they never send, read the clock or look anything up.
//!
//! * [`branch::BranchState`]: where one branch (one attempt's client transaction) stands
//!   for the proxy: trying, proceeding, cancel pending, cancelling, done.
//! * [`deadlines::Deadlines`]: a branch's own timers (C, progress, answer) in one table,
//!   behind one queued timer.
//! * [`plan::PlanCursor`]: the position in the attempt plan and the best response so far.

pub(crate) mod best;
pub(crate) mod branch;
pub(crate) mod deadlines;
pub(crate) mod plan;
