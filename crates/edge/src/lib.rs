//! The I/O edge: sockets, threads and the clock.
