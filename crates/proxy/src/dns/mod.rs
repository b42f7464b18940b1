//! Locating a SIP server (RFC 3263 §4, client usage) as a plain-value machine: no I/O.
//!
//! A [`Resolution`] is made for one [`Target`] (the host, port, transport and `sips:`-ness
//! of a URI the proxy sends to). The caller loops: [`Resolution::step`] says which DNS
//! query to make ([`Step::Query`]) or gives the outcome ([`Step::Done`] with the ordered
//! hops, or [`Step::Failed`]); the answer goes back through [`Resolution::on_answer`]. The
//! edge (crate `trunkstore-edge`, `dns.rs`) drives it with a real resolver; unit tests
//! drive it with a table of records.
//!
//! The sequence (RFC 3263 §4.1, §4.2):
//!
//! * An IP-literal host: no DNS. Port as given, else 5060 (5061 for TLS); transport as
//!   given, else UDP (TLS for `sips:`).
//! * A port given: A/AAAA of the host only (no NAPTR, no SRV).
//! * A transport given, no port: SRV of that transport (`_sip._udp`, `_sip._tcp`,
//!   `_sips._tcp` for TLS), then A/AAAA of the host on the default port.
//! * Neither: NAPTR of the host; its records with flag `s`, an empty regexp and a service
//!   we support (`SIP+D2U`, `SIP+D2T`, `SIPS+D2T`; only `SIPS+D2T` for `sips:`) in order,
//!   then preference, each giving an SRV name to query. When no NAPTR record leads to SRV
//!   records, the SRV names of the supported transports (`_sip._udp`, `_sip._tcp`,
//!   `_sips._tcp`, in that order; only `_sips._tcp` for `sips:`). The first SRV query with
//!   records decides the transport (RFC 3263: "a particular transport is supported if the
//!   query is successful"). When no SRV query gives records: A/AAAA of the host on 5060
//!   over UDP (5061 over TLS for `sips:`).
//! * SRV records: ascending priority; within one priority, RFC 2782's weighted random
//!   order, the random numbers drawn from a generator seeded by the caller (so tests are
//!   deterministic). A lone record with target `.` means "no such service here" (RFC 2782):
//!   the resolution fails, without falling back to A/AAAA.
//! * Each SRV target's addresses, in SRV order, every family usable ([`Families`]); IPv4
//!   first, then IPv6 (see [`Families`] for why). An address lookup that fails skips that
//!   target: the others are still tried.
//!
//! Failures: NXDOMAIN or "no data" at the NAPTR or SRV stage only moves on to the next
//! stage (dnsmasq and others answer NXDOMAIN for a name that only has SRV records below
//! it); a timeout or server failure at the NAPTR or SRV stage fails the resolution at
//! once, because guessing "no SRV" could send to the wrong server. At the address stage a
//! failed lookup skips its target; with no address at all the resolution fails with the
//! last reason seen (NXDOMAIN for an unknown name).
//!
//! Bounds (a hostile DNS answer must not make it loop or grow): at most
//! [`MAX_RECORDS`] records of an answer are looked at, at most [`MAX_HOPS`] hops come out,
//! at most [`MAX_QUERIES`] queries are made, an address query already answered in this
//! resolution is answered from memory, and NAPTR records are followed one level only
//! (flag `s` straight to SRV; RFC 3263 uses no other flag), so no NAPTR loop can form.
//! CNAME chains are the resolver's to bound (hickory stops at its own limit).
//!
//! TTL: the outcome carries the smallest TTL of every record it was built from (NAPTR,
//! SRV, A/AAAA); negative answers along the way do not shorten it (the edge clamps it
//! between its settings' minimum and maximum). No DNS at all (an IP literal) gives
//! `u32::MAX`.

mod machine;
mod srv;
mod values;

pub use machine::Resolution;
pub use srv::Rng;
pub use values::{
    Address, Answer, Failure, Families, Hop, Naptr, Options, Query, QueryKind, Resolved, Srv, Step,
    Target, Transport, MAX_HOPS, MAX_QUERIES, MAX_RECORDS,
};

#[cfg(test)]
mod tests;
