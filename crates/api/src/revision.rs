//! Document revisions: what a client sends back to make a write conditional, the same on
//! every node (files or Redis).

use sha2::{Digest, Sha256};
use trunkstore_config::Document;

/// The revision of a document: a digest of its content, so it also changes when the
/// file is edited by hand. Clients send it back to make a write conditional.
pub fn revision(doc: &Document) -> String {
    let bytes = serde_json::to_vec(doc.raw()).unwrap_or_default();
    hex::encode(&Sha256::digest(&bytes)[..12])
}
