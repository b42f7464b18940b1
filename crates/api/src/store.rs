//! The connectivity documents as the API and the reloader see them: the live catalog,
//! the files it came from, and the one writer lock that serialises every change.
//!
//! Every change (an API write, a reload) follows the same order: validate and build the
//! new catalog and routing snapshot aside, persist (API writes), and only then make it
//! live. A failure at any step leaves the disk (atomic writes) and memory as they were.
//! One lock for all accounts is enough: DID uniqueness is global, so writes to two
//! accounts must see each other anyway, and this is not the packet path (readers of the
//! routing index never take it).

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use serde_json::Value;
use sha2::{Digest, Sha256};
use trunkstore_config::{
    delete_document, document_path, load_document, validate_document, write_document_atomically,
    Catalog, Document, FileErrors, ValidationErrors,
};
use trunkstore_routing::{Router, Snapshot};

use crate::scan::{self, Scan, Stamp};

/// The revision of a document: a digest of its content, so it also changes when the
/// file is edited by hand. Clients send it back to make a write conditional.
pub(crate) fn revision(doc: &Document) -> String {
    let bytes = serde_json::to_vec(doc.raw()).unwrap_or_default();
    hex::encode(&Sha256::digest(&bytes)[..12])
}

/// What a write expects to find.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Expect {
    /// The document must not exist (create).
    Absent,
    /// The document must exist, with this revision when one is given.
    Present(Option<String>),
}

#[derive(Debug)]
pub(crate) enum WriteError {
    /// The document fails validation or conflicts with others (DIDs, IP addresses).
    Invalid(ValidationErrors),
    NotFound,
    /// The document exists already (create) or its revision is not the client's.
    Conflict {
        current: Option<String>,
    },
    /// Persisting failed; nothing changed.
    Io(io::Error),
}

/// Reload and write counters for the metrics.
#[derive(Debug, Default)]
pub(crate) struct ReloadStats {
    pub(crate) ok: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) unchanged: AtomicU64,
    /// Duration of the last reload that built a new index, in microseconds.
    pub(crate) last_micros: AtomicU64,
}

/// How a reload ended.
#[derive(Debug)]
pub(crate) enum Reload {
    /// Nothing changed on disk since the last look.
    Unchanged,
    /// A new index is live.
    Applied {
        documents: usize,
        dids: usize,
        took: Duration,
    },
    /// The files are invalid: the previous index stays live. Every error, per file.
    Failed(Vec<FileErrors>),
}

/// The file behind one live document.
#[derive(Clone)]
struct Cached {
    stamp: Option<Stamp>,
    doc: Arc<Document>,
}

/// One document of a reload in progress.
enum Slot {
    /// Unchanged on disk: the live one is reused.
    Cached(Arc<Document>),
    /// Read and validated by this reload.
    Fresh(Box<Document>),
    /// Failed to load (the reload is refused).
    Missing,
}

impl Slot {
    /// [`Catalog::build`] takes documents by value: fresh ones move in, unchanged ones
    /// are cloned from the live catalog (still far cheaper than parsing them again).
    fn into_owned(self) -> Option<Document> {
        match self {
            Slot::Cached(doc) => Some(Document::clone(&doc)),
            Slot::Fresh(doc) => Some(*doc),
            Slot::Missing => None,
        }
    }
}

/// What the writer lock guards.
struct Files {
    by_path: HashMap<PathBuf, Cached>,
    /// Fingerprint of the last scan handled, so an invalid edit is reported once, not
    /// every second.
    seen: Option<u64>,
}

/// The live catalog and the connectivity directory behind it: every read, write and
/// reload of documents goes through here, and each change swaps in a new routing snapshot.
pub struct Store {
    dir: PathBuf,
    router: Arc<Router>,
    /// Readers (GET, metrics) never wait for a writer or a long reload.
    current: ArcSwap<Catalog>,
    writer: Mutex<Files>,
    pub(crate) stats: ReloadStats,
}

impl Store {
    /// Takes over the catalog loaded at startup and the router built from it.
    /// Leftover temp files of writes a crash interrupted are removed.
    pub fn new(catalog: Catalog, router: Arc<Router>) -> Store {
        let dir = catalog.settings().connectivity_dir.clone();
        let stale = scan::remove_stale_temp_files(&dir);
        if stale > 0 {
            tracing::info!(files = stale, "removed temp files of interrupted writes");
        }
        let by_path = catalog
            .documents()
            .iter()
            .filter_map(|doc| {
                let path = doc.source.clone()?;
                let stamp = Stamp::read(&path).ok();
                Some((
                    path,
                    Cached {
                        stamp,
                        doc: doc.clone(),
                    },
                ))
            })
            .collect();
        Store {
            dir,
            router,
            current: ArcSwap::from_pointee(catalog),
            writer: Mutex::new(Files {
                by_path,
                seen: None,
            }),
            stats: ReloadStats::default(),
        }
    }

    pub(crate) fn router(&self) -> &Arc<Router> {
        &self.router
    }

    pub(crate) fn catalog(&self) -> Arc<Catalog> {
        self.current.load_full()
    }

    /// Ids and revisions of an account's documents, sorted by id.
    pub(crate) fn list(&self, account: &str) -> Vec<(String, String)> {
        let catalog = self.catalog();
        let mut out: Vec<(String, String)> = catalog
            .documents()
            .iter()
            .filter(|d| d.account_id == account)
            .map(|d| (d.id.clone(), revision(d)))
            .collect();
        out.sort();
        out
    }

    pub(crate) fn get(&self, account: &str, id: &str) -> Option<Arc<Document>> {
        self.catalog().document(account, id).cloned()
    }

    /// A poisoned lock only means a writer panicked; the data it guards is replaced
    /// whole, never half-updated, so it is still consistent.
    fn lock(&self) -> MutexGuard<'_, Files> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates or replaces document `account/id` with `value`.
    pub(crate) fn put(
        &self,
        account: &str,
        id: &str,
        value: &Value,
        expect: Expect,
    ) -> Result<Arc<Document>, WriteError> {
        let mut files = self.lock();
        let catalog = self.catalog();
        check_expectation(catalog.document(account, id), &expect)?;
        self.write_locked(&mut files, &catalog, account, id, value)
    }

    /// Applies `change` to the current content of `account/id` (a PATCH) and writes the
    /// result; the read and the write happen under the same lock.
    pub(crate) fn update(
        &self,
        account: &str,
        id: &str,
        expected: Option<String>,
        change: impl FnOnce(&Value) -> Value,
    ) -> Result<Arc<Document>, WriteError> {
        let mut files = self.lock();
        let catalog = self.catalog();
        let existing = catalog.document(account, id);
        check_expectation(existing, &Expect::Present(expected))?;
        let value = change(existing.ok_or(WriteError::NotFound)?.raw());
        self.write_locked(&mut files, &catalog, account, id, &value)
    }

    fn write_locked(
        &self,
        files: &mut Files,
        catalog: &Catalog,
        account: &str,
        id: &str,
        value: &Value,
    ) -> Result<Arc<Document>, WriteError> {
        let path = document_path(&self.dir, account, id).map_err(WriteError::Io)?;
        let mut doc = validate_document(account, id, value).map_err(WriteError::Invalid)?;
        doc.source = Some(path.clone());
        let next = catalog.replace(doc).map_err(WriteError::Invalid)?;
        let snapshot = Snapshot::build(&next);
        write_document_atomically(&self.dir, account, id, value).map_err(WriteError::Io)?;
        let doc = next
            .document(account, id)
            .cloned()
            .expect("the written document is in the new catalog");
        let stamp = Stamp::read(&path).ok();
        files.by_path.insert(
            path,
            Cached {
                stamp,
                doc: doc.clone(),
            },
        );
        self.go_live(next, snapshot);
        Ok(doc)
    }

    /// Deletes `account/id`; returns what it was.
    pub(crate) fn delete(
        &self,
        account: &str,
        id: &str,
        expected: Option<String>,
    ) -> Result<Arc<Document>, WriteError> {
        let mut files = self.lock();
        let catalog = self.catalog();
        let existing = catalog.document(account, id).cloned();
        check_expectation(existing.as_ref(), &Expect::Present(expected))?;
        let existing = existing.ok_or(WriteError::NotFound)?;
        let next = catalog.remove(account, id);
        let snapshot = Snapshot::build(&next);
        delete_document(&self.dir, account, id).map_err(WriteError::Io)?;
        if let Ok(path) = document_path(&self.dir, account, id) {
            files.by_path.remove(&path);
        }
        self.go_live(next, snapshot);
        Ok(existing)
    }

    fn go_live(&self, catalog: Catalog, snapshot: Snapshot) {
        self.router.swap(snapshot);
        self.current.store(Arc::new(catalog));
    }

    /// Re-reads the directory. `full` re-reads every file (SIGHUP); otherwise only the
    /// files whose stamp changed (the watcher). Nothing changes unless everything is valid.
    pub(crate) fn reload(&self, full: bool) -> Reload {
        let mut files = self.lock();
        let scan = scan::scan(&self.dir);
        self.reload_locked(&mut files, scan, full)
    }

    /// The watcher's tick: a scan (stat only), and a reload when it differs from the last
    /// one handled. `None` when nothing changed.
    pub(crate) fn reload_if_changed(&self) -> Option<Reload> {
        let mut files = self.lock();
        let scan = scan::scan(&self.dir);
        if files.seen == Some(scan.fingerprint()) {
            return None;
        }
        Some(self.reload_locked(&mut files, scan, false))
    }

    fn reload_locked(&self, files: &mut Files, scan: Scan, full: bool) -> Reload {
        let started = Instant::now();
        files.seen = Some(scan.fingerprint());
        let mut slots: Vec<Slot> = Vec::with_capacity(scan.entries.len());
        let mut to_load = Vec::new();
        for (i, e) in scan.entries.iter().enumerate() {
            match files.by_path.get(&e.path) {
                Some(c) if !full && c.stamp == Some(e.stamp) => {
                    slots.push(Slot::Cached(c.doc.clone()))
                }
                _ => {
                    slots.push(Slot::Missing);
                    to_load.push(i);
                }
            }
        }
        let same_set = scan.entries.len() == files.by_path.len();
        if !full && to_load.is_empty() && same_set && scan.problems.is_empty() {
            self.stats.unchanged.fetch_add(1, Ordering::Relaxed);
            return Reload::Unchanged;
        }
        let mut failures = scan.problems;
        for (i, loaded) in load_parallel(&scan.entries, &to_load) {
            match loaded {
                Ok(doc) => slots[i] = Slot::Fresh(Box::new(doc)),
                Err(e) => failures.push(e),
            }
        }
        if !failures.is_empty() {
            return self.failed(failures);
        }
        let settings = self.catalog().settings().clone();
        let next = match Catalog::build(settings, slots.into_iter().filter_map(Slot::into_owned)) {
            Ok(next) => next,
            Err(failures) => return self.failed(failures),
        };
        let snapshot = Snapshot::build(&next);
        let (documents, dids) = (next.documents().len(), snapshot.did_count());
        files.by_path = next
            .documents()
            .iter()
            .zip(&scan.entries)
            .map(|(doc, e)| {
                let cached = Cached {
                    stamp: Some(e.stamp),
                    doc: doc.clone(),
                };
                (e.path.clone(), cached)
            })
            .collect();
        self.go_live(next, snapshot);
        let took = started.elapsed();
        self.stats.ok.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.stats.last_micros.store(micros, Ordering::Relaxed);
        Reload::Applied {
            documents,
            dids,
            took,
        }
    }

    fn failed(&self, failures: Vec<FileErrors>) -> Reload {
        self.stats.failed.fetch_add(1, Ordering::Relaxed);
        Reload::Failed(failures)
    }
}

fn check_expectation(existing: Option<&Arc<Document>>, expect: &Expect) -> Result<(), WriteError> {
    match (existing, expect) {
        (Some(doc), Expect::Absent) => Err(WriteError::Conflict {
            current: Some(revision(doc)),
        }),
        (None, Expect::Present(_)) => Err(WriteError::NotFound),
        (Some(doc), Expect::Present(Some(wanted))) => {
            let current = revision(doc);
            if current == *wanted {
                Ok(())
            } else {
                Err(WriteError::Conflict {
                    current: Some(current),
                })
            }
        }
        _ => Ok(()),
    }
}

/// Loads the entries at `indexes` on every core: parsing and validating a large data set
/// is most of a reload's time, and each file is independent.
fn load_parallel(
    entries: &[scan::Entry],
    indexes: &[usize],
) -> Vec<(usize, Result<Document, FileErrors>)> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = indexes.len().div_ceil(threads).max(1);
    let load = |i: &usize| {
        let e = &entries[*i];
        (*i, load_document(&e.path, &e.account, &e.id))
    };
    if indexes.len() <= 4 || threads == 1 {
        return indexes.iter().map(load).collect();
    }
    std::thread::scope(|s| {
        let workers: Vec<_> = indexes
            .chunks(chunk)
            .map(|part| s.spawn(move || part.iter().map(load).collect::<Vec<_>>()))
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("document loader panicked"))
            .collect()
    })
}
