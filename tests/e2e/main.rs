//! End-to-end tests: the real `trunkstore` binary with real SIPp peers on loopback.
