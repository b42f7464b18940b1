//! First-come registry of DIDs and IP-auth addresses, shared by the per-document check
//! ([`validate_document`](crate::validate_document)) and the system-wide one
//! ([`Catalog`](crate::Catalog)), whose DID index it becomes.
//!
//! A reload claims about a million DIDs, so a claim costs no allocation: a DID is keyed by
//! its number packed into a `u64` and maps to its *ordinal* (its position among every DID
//! claimed so far). The claimant's account, document and path, needed only for a conflict
//! message, are looked up from the ordinal when a conflict happens.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::net::IpAddr;

use serde_json::{json, Value};

use crate::document::{AuthMethod, Did, Document, Server};
use crate::error::ValidationErrors;
use crate::numbers::pack_did;
use crate::walk::join;

/// Position of one DID in a [`Catalog`](crate::Catalog).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DidRef {
    /// Index into [`Catalog::documents`](crate::Catalog::documents).
    pub document: usize,
    /// Index into that document's `servers`.
    pub server: usize,
    /// Index into that server's `dids`.
    pub did: usize,
}

/// Hashes packed keys with a seeded 64-bit finaliser (murmur3 `fmix64`): a few cycles
/// instead of SipHash's ~20 ns, and still a bijection, so distinct keys never share a
/// full hash. The per-map random seed keeps bucket collisions unpredictable.
#[derive(Clone)]
struct MixState(u64);

impl MixState {
    fn new() -> Self {
        MixState(RandomState::new().hash_one(0x7472_756e_6b73u64))
    }
}

impl BuildHasher for MixState {
    type Hasher = MixHasher;
    fn build_hasher(&self) -> MixHasher {
        MixHasher(self.0)
    }
}

struct MixHasher(u64);

impl Hasher for MixHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed; this keeps the hasher correct for anything else.
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u64(&mut self, n: u64) {
        let mut k = self.0 ^ n;
        k ^= k >> 33;
        k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
        k ^= k >> 33;
        k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        k ^= k >> 33;
        self.0 = k;
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// DID → ordinal, plus what turns an ordinal back into a position (document, server,
/// DID). Ordinals count every DID of every claimed server, claimed or not, so the
/// position arithmetic holds even after conflicts.
#[derive(Clone)]
pub(crate) struct DidIndex {
    packed: HashMap<u64, u32, MixState>,
    long: HashMap<Box<str>, u32>,
    /// Ordinal of the first DID of every claimed server, in claim order.
    server_starts: Vec<u32>,
    /// Index into `server_starts` of the first server of every claimed document.
    doc_first_server: Vec<u32>,
    /// Ordinal of the next DID.
    next: u32,
}

impl DidIndex {
    fn with_capacity(dids: usize) -> Self {
        DidIndex {
            packed: HashMap::with_capacity_and_hasher(dids, MixState::new()),
            long: HashMap::new(),
            server_starts: Vec::new(),
            doc_first_server: Vec::new(),
            next: 0,
        }
    }

    /// Number of distinct DIDs.
    pub(crate) fn len(&self) -> usize {
        self.packed.len() + self.long.len()
    }

    /// The ordinal of a normalised DID's owner.
    pub(crate) fn get(&self, number: &str) -> Option<u32> {
        match pack_did(number) {
            Some(key) => self.packed.get(&key).copied(),
            None => self.long.get(number).copied(),
        }
    }

    /// Claims `number` for the next ordinal, or returns the ordinal of its earlier owner.
    /// The ordinal is used up either way.
    fn claim_next(&mut self, number: &str) -> Result<(), u32> {
        let ordinal = self.next;
        self.next += 1;
        let slot = match pack_did(number) {
            Some(key) => self.packed.entry(key),
            None => return claim_long(&mut self.long, number, ordinal),
        };
        match slot {
            Entry::Occupied(first) => Err(*first.get()),
            Entry::Vacant(v) => {
                v.insert(ordinal);
                Ok(())
            }
        }
    }

    fn start_document(&mut self) {
        self.doc_first_server.push(to_u32(self.server_starts.len()));
    }

    fn start_server(&mut self) {
        self.server_starts.push(self.next);
    }

    /// Where the DID with this ordinal is, as positions in the claimed documents'
    /// `servers` and `dids` vectors.
    pub(crate) fn locate(&self, ordinal: u32) -> DidRef {
        // The last server (document) starting at or before the ordinal (server) holds
        // it; empty servers and documents share their start with the next one.
        let server = self.server_starts.partition_point(|&s| s <= ordinal) - 1;
        let document = self
            .doc_first_server
            .partition_point(|&f| f as usize <= server)
            - 1;
        DidRef {
            document,
            server: server - self.doc_first_server[document] as usize,
            did: (ordinal - self.server_starts[server]) as usize,
        }
    }
}

impl std::fmt::Debug for DidIndex {
    /// A million entries are no use in a debug dump; the count is.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DidIndex")
            .field("dids", &self.len())
            .finish_non_exhaustive()
    }
}

fn claim_long(long: &mut HashMap<Box<str>, u32>, number: &str, ordinal: u32) -> Result<(), u32> {
    if let Some(first) = long.get(number) {
        return Err(*first);
    }
    long.insert(number.into(), ordinal);
    Ok(())
}

/// Positions are stored as `u32`: a document is at most 16 MiB, and four billion DIDs
/// or servers are far beyond what one process loads.
fn to_u32(n: usize) -> u32 {
    u32::try_from(n).expect("fewer than 2^32 DIDs and servers")
}

/// An IP-auth claim: the claimed document and the server's position in it.
#[derive(Clone, Copy)]
struct IpClaim {
    document: u32,
    server: u32,
    port: Option<u16>,
}

/// First-come registry of DIDs and IP-auth addresses over documents claimed in order.
pub(crate) struct Claims<'a> {
    documents: Vec<&'a Document>,
    dids: DidIndex,
    /// Claims of each address, in claim order (the first overlapping one is reported).
    ips: HashMap<IpAddr, Vec<IpClaim>>,
}

impl<'a> Claims<'a> {
    /// A registry sized for about `dids` DIDs.
    pub(crate) fn with_capacity(dids: usize) -> Self {
        Claims {
            documents: Vec::new(),
            dids: DidIndex::with_capacity(dids),
            ips: HashMap::new(),
        }
    }

    /// The DID index: positions are those of the claimed documents, in claim order.
    pub(crate) fn into_index(self) -> DidIndex {
        self.dids
    }

    /// Registers every DID and IP-auth address of `doc`, reporting conflicts with earlier
    /// claims into `errors` (paths are relative to `doc`).
    pub(crate) fn claim_document(&mut self, doc: &'a Document, errors: &mut ValidationErrors) {
        let document = to_u32(self.documents.len());
        self.documents.push(doc);
        self.dids.start_document();
        for (position, server) in doc.servers.iter().enumerate() {
            self.dids.start_server();
            for did in &server.dids {
                if let Err(first) = self.dids.claim_next(&did.number) {
                    self.did_conflict(server, did, first, errors);
                }
            }
            if server.auth.method() == AuthMethod::Ip {
                self.claim_ip(document, to_u32(position), server, errors);
            }
        }
    }

    fn did_conflict(&self, server: &Server, did: &Did, first: u32, errors: &mut ValidationErrors) {
        let at = self.dids.locate(first);
        let owner = self.documents[at.document];
        let owner_server = &owner.servers[at.server];
        let first = Claimant {
            document: owner,
            path: did_path(owner_server, &owner_server.dids[at.did]),
        };
        errors.add(
            did_path(server, did),
            "unique",
            format!(
                "DID {} is already claimed by {}",
                did.number,
                first.describe()
            ),
            Some(first.to_json()),
            Some(json!(did.key)),
        );
    }

    fn claim_ip(
        &mut self,
        document: u32,
        position: u32,
        server: &Server,
        errors: &mut ValidationErrors,
    ) {
        let (Some(ip), port) = (server.auth.ip(), server.auth.port()) else {
            return;
        };
        let earlier = self.ips.entry(ip).or_default();
        // No port means "any port on that ip", which overlaps every port.
        let clash = earlier
            .iter()
            .find(|c| c.port.is_none() || port.is_none() || c.port == port)
            .copied();
        let Some(clash) = clash else {
            earlier.push(IpClaim {
                document,
                server: position,
                port,
            });
            return;
        };
        let owner = self.documents[clash.document as usize];
        let first = Claimant {
            document: owner,
            path: ip_path(&owner.servers[clash.server as usize]),
        };
        errors.add(
            ip_path(server),
            "unique",
            format!(
                "IP-auth address {} is already used by {}",
                show_addr(ip, port),
                first.describe()
            ),
            Some(first.to_json()),
            Some(json!(ip.to_string())),
        );
    }
}

/// `servers.N.DIDs.KEY` (N is the server's position in the JSON array).
fn did_path(server: &Server, did: &Did) -> String {
    join(&join(&join("servers", server.index), "DIDs"), &did.key)
}

/// `servers.N.auth.ip`.
pub(crate) fn ip_path(server: &Server) -> String {
    join(&join("servers", server.index), "auth.ip")
}

/// Shows `ip:port`, or says that any port is meant.
pub(crate) fn show_addr(ip: IpAddr, port: Option<u16>) -> String {
    match port {
        Some(p) => std::net::SocketAddr::new(ip, p).to_string(),
        None => format!("{ip} (any port)"),
    }
}

/// The earlier owner named in a conflict.
struct Claimant<'d> {
    document: &'d Document,
    /// Dotted path inside the document (`servers.0.DIDs.4155551234`).
    path: String,
}

impl Claimant<'_> {
    fn describe(&self) -> String {
        format!(
            "account '{}', document '{}', {}",
            self.document.account_id, self.document.id, self.path
        )
    }
    fn to_json(&self) -> Value {
        json!({
            "account": self.document.account_id,
            "document": self.document.id,
            "path": self.path,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_spellings_get_distinct_keys() {
        let spellings = ["+1000", "1000", "01000", "+01000", "", "+", "0", "+0"];
        let keys: Vec<u64> = spellings.iter().map(|s| pack_did(s).unwrap()).collect();
        for i in 0..keys.len() {
            for j in 0..i {
                assert_ne!(keys[i], keys[j], "{} vs {}", spellings[i], spellings[j]);
            }
        }
        assert_eq!(pack_did(&"9".repeat(17)).map(|_| ()), Some(()));
        assert_eq!(pack_did(&"9".repeat(18)), None);
        assert_eq!(pack_did("12a"), None);
    }

    #[test]
    fn long_numbers_are_claimed_once() {
        let mut index = DidIndex::with_capacity(4);
        index.start_document();
        index.start_server();
        let long = "+123456789012345678901";
        assert_eq!(index.claim_next(long), Ok(()));
        assert_eq!(index.claim_next("+1"), Ok(()));
        assert_eq!(index.claim_next(long), Err(0));
        assert_eq!(index.get(long), Some(0));
        assert_eq!(index.get("+1"), Some(1));
        assert_eq!(index.len(), 2);
    }

    #[test]
    fn ordinals_locate_through_empty_servers_and_documents() {
        let mut index = DidIndex::with_capacity(8);
        // Document 0: servers with 2, 0 and 1 DIDs; document 1: none; document 2: 0, 2.
        let layout: &[&[u32]] = &[&[2, 0, 1], &[], &[0, 2]];
        let mut n = 0;
        for servers in layout {
            index.start_document();
            for &dids in *servers {
                index.start_server();
                for _ in 0..dids {
                    index.claim_next(&n.to_string()).unwrap();
                    n += 1;
                }
            }
        }
        let at = |o| {
            let r = index.locate(o);
            (r.document, r.server, r.did)
        };
        assert_eq!(at(0), (0, 0, 0));
        assert_eq!(at(1), (0, 0, 1));
        assert_eq!(at(2), (0, 2, 0));
        assert_eq!(at(3), (2, 1, 0));
        assert_eq!(at(4), (2, 1, 1));
    }
}
