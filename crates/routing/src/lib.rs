//! Routing index and decisions.
