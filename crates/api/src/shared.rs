//! Documents shared by several nodes in Redis (`cluster.store: "redis"`, behaviour.md
//! §9): how a node's catalog is built from what Redis holds, and how a document becomes
//! what Redis stores. The Redis side (keys, scripts, stream) is trunkstore-cluster's.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;
use trunkstore_cluster::documents::{Stored, StoredDocument};
use trunkstore_cluster::Documents;
use trunkstore_config::{validate_document, Catalog, Document, FileErrors, Settings};

use crate::revision::revision;

/// The shared store of a node: the documents in Redis and the runtime that drives their
/// connection (the store's writers are blocking threads: they wait on it).
#[derive(Clone, Debug)]
pub struct SharedDocuments {
    pub(crate) documents: Documents,
    pub(crate) runtime: tokio::runtime::Handle,
}

impl SharedDocuments {
    /// `documents`, whose connection was made on (and is driven by) `runtime`.
    pub fn new(documents: Documents, runtime: tokio::runtime::Handle) -> SharedDocuments {
        SharedDocuments { documents, runtime }
    }

    /// Runs one Redis operation to completion from a blocking thread (never from an
    /// async task: the API runs store operations on its blocking pool).
    pub(crate) fn wait<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        self.runtime.block_on(f)
    }
}

/// Where a document from Redis is said to be in error messages: `redis:account/id`.
pub fn redis_place(account: &str, id: &str) -> PathBuf {
    PathBuf::from(format!("redis:{account}/{id}"))
}

/// Validates every document of `stored` and the whole catalog against `settings`, like
/// loading a connectivity directory: every error, or the catalog.
pub fn catalog_from(
    settings: impl Into<Arc<Settings>>,
    stored: &Stored,
) -> Result<Catalog, Vec<FileErrors>> {
    let mut docs = Vec::with_capacity(stored.documents.len());
    let mut failures = Vec::new();
    for s in &stored.documents {
        match document_from(s) {
            Ok(doc) => docs.push(doc),
            Err(e) => failures.push(e),
        }
    }
    match (Catalog::build(settings, docs), failures.is_empty()) {
        (Ok(catalog), true) => Ok(catalog),
        (Ok(_), false) => Err(failures),
        (Err(more), _) => Err(failures.into_iter().chain(more).collect()),
    }
}

/// One stored document, parsed and validated.
pub fn document_from(s: &StoredDocument) -> Result<Document, FileErrors> {
    let place = redis_place(&s.account, &s.id);
    let fail = |errors| FileErrors {
        file: place.clone(),
        document: Some((s.account.clone(), s.id.clone())),
        errors,
    };
    let value: Value = serde_json::from_str(&s.json).map_err(|e| {
        let mut errors = trunkstore_config::ValidationErrors::new();
        errors.add("", "json", format!("not JSON: {e}"), None, None);
        fail(errors)
    })?;
    validate_document(&s.account, &s.id, &value).map_err(fail)
}

/// A validated document as Redis stores it: its JSON text and revision (the same digest
/// the API shows, so a revision read on one node is good on every other).
pub fn stored_document(doc: &Document) -> StoredDocument {
    StoredDocument {
        account: doc.account_id.clone(),
        id: doc.id.clone(),
        json: doc.raw().to_string(),
        revision: revision(doc),
    }
}
