//! Shared helpers for the benchmarks (data-set generation).
