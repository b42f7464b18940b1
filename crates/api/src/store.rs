//! The connectivity documents as the API and the reloader see them: the live catalog,
//! the files it came from, and the one writer lock that serialises every change.
//!
//! Every change (an API write, a reload) follows the same order: validate and build the
//! new catalog and routing snapshot aside, persist (API writes), and only then make it
//! live. A failure at any step leaves the disk (atomic writes) and memory as they were.
//! One lock for all accounts is enough: DID uniqueness is global, so writes to two
//! accounts must see each other anyway, and this is not the packet path (readers of the
//! routing index never take it).
//!
//! With `cluster.store: "redis"` the documents live in Redis (see [`crate::shared`]): the
//! same order holds, but "persist" is one conditional script, and the live catalog is
//! also replaced whenever the node's follower sees another node's change.

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use serde_json::Value;
use trunkstore_config::{
    delete_document, document_path, load_document, validate_document, write_document_atomically,
    Catalog, Document, FileErrors, ValidationErrors,
};
use trunkstore_routing::{Router, Snapshot};

use crate::revision::revision;
use crate::scan::{self, Scan, Stamp};
use crate::shared::{self, SharedDocuments};
use trunkstore_cluster::documents::{Expected, Outcome};
use trunkstore_cluster::RedisError;

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
    /// The shared store (Redis) did not answer: nothing changed, or (`Timeout`) the
    /// change may have been applied without the answer reaching this node.
    Unavailable(RedisError),
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
    /// The documents live in Redis and it did not answer: the previous index stays live.
    Unreachable(RedisError),
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
    /// `cluster.store: "redis"`: the documents live there, not in `dir`.
    shared: Option<SharedDocuments>,
    /// The global revision (in Redis) of the live catalog; 0 with files.
    shared_at: AtomicU64,
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
            shared: None,
            shared_at: AtomicU64::new(0),
        }
    }

    /// The store of a node whose documents live in Redis (`cluster.store: "redis"`):
    /// `catalog` was loaded from there at global revision `at`. Writes go to Redis only
    /// (never to `connectivity_dir`); reads are served from the live catalog.
    pub fn shared(
        catalog: Catalog,
        router: Arc<Router>,
        documents: SharedDocuments,
        at: u64,
    ) -> Store {
        Store {
            dir: catalog.settings().connectivity_dir.clone(),
            router,
            current: ArcSwap::from_pointee(catalog),
            writer: Mutex::new(Files {
                by_path: HashMap::new(),
                seen: None,
            }),
            stats: ReloadStats::default(),
            shared: Some(documents),
            shared_at: AtomicU64::new(at),
        }
    }

    /// The global revision of the live catalog (documents in Redis; 0 with files).
    pub fn shared_revision(&self) -> u64 {
        self.shared_at.load(Ordering::Acquire)
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
        if let Some(shared) = &self.shared {
            return self.change_shared(&mut files, shared, account, id, &expect, Op::Put(value));
        }
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
        change: impl Fn(&Value) -> Value,
    ) -> Result<Arc<Document>, WriteError> {
        let mut files = self.lock();
        if let Some(shared) = &self.shared {
            let expect = Expect::Present(expected);
            return self.change_shared(
                &mut files,
                shared,
                account,
                id,
                &expect,
                Op::Patch(&change),
            );
        }
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
        if let Some(shared) = &self.shared {
            let expect = Expect::Present(expected);
            return self.change_shared(&mut files, shared, account, id, &expect, Op::Delete);
        }
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
        if let Some(shared) = &self.shared {
            return self.reload_shared_locked(&mut files, shared, full);
        }
        let scan = scan::scan(&self.dir);
        self.reload_locked(&mut files, scan, full)
    }

    /// The watcher's tick: a scan (stat only), and a reload when it differs from the last
    /// one handled. `None` when nothing changed.
    pub(crate) fn reload_if_changed(&self) -> Option<Reload> {
        if self.shared.is_some() {
            // The change stream's follower does this job for documents in Redis.
            return None;
        }
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

/// A change to apply to the shared store.
enum Op<'a> {
    Put(&'a Value),
    /// A PATCH: the new content is made from the current one (again after a retry).
    Patch(&'a dyn Fn(&Value) -> Value),
    Delete,
}

/// One attempt of a shared change that may be retried once the live catalog caught up.
enum Attempt {
    Done(Result<Arc<Document>, WriteError>),
    /// Another node changed the documents since this node's view: refresh, try again.
    Stale(WriteError),
}

impl Store {
    /// A write or delete with the documents in Redis. It is validated against this node's
    /// catalog and committed only if Redis's global revision is still that catalog's
    /// (and the document's revision is the client's): otherwise the catalog is reloaded
    /// from Redis and the change validated and tried once more, then refused with 409.
    fn change_shared(
        &self,
        files: &mut Files,
        shared: &SharedDocuments,
        account: &str,
        id: &str,
        expect: &Expect,
        op: Op<'_>,
    ) -> Result<Arc<Document>, WriteError> {
        match self.attempt_shared(shared, account, id, expect, &op) {
            Attempt::Done(result) => result,
            Attempt::Stale(_) => {
                self.catch_up(files, shared)?;
                match self.attempt_shared(shared, account, id, expect, &op) {
                    Attempt::Done(result) => result,
                    Attempt::Stale(e) => Err(e),
                }
            }
        }
    }

    fn attempt_shared(
        &self,
        shared: &SharedDocuments,
        account: &str,
        id: &str,
        expect: &Expect,
        op: &Op<'_>,
    ) -> Attempt {
        let catalog = self.catalog();
        let at = self.shared_revision();
        let existing = catalog.document(account, id).cloned();
        // A refusal by this node's view is only final if the view is Redis's.
        let local = |e: WriteError| match shared.wait(shared.documents.revision()) {
            Ok(now) if now == at => Attempt::Done(Err(e)),
            Ok(_) => Attempt::Stale(e),
            Err(r) => Attempt::Done(Err(WriteError::Unavailable(r))),
        };
        if let Err(e) = check_expectation(existing.as_ref(), expect) {
            return local(e);
        }
        let wanted = match expect {
            Expect::Absent => Expected::Absent,
            Expect::Present(rev) => Expected::Present(rev.as_deref()),
        };
        let value = match op {
            Op::Delete => None,
            Op::Put(v) => Some((*v).clone()),
            Op::Patch(change) => match &existing {
                Some(doc) => Some(change(doc.raw())),
                None => return Attempt::Done(Err(WriteError::NotFound)),
            },
        };
        let (next, written) = match value {
            None => (catalog.remove(account, id), None),
            Some(value) => {
                let doc = match validate_document(account, id, &value) {
                    Ok(doc) => doc,
                    Err(e) => return Attempt::Done(Err(WriteError::Invalid(e))),
                };
                let stored = shared::stored_document(&doc);
                match catalog.replace(doc) {
                    Ok(next) => (next, Some(stored)),
                    Err(e) => return local(WriteError::Invalid(e)),
                }
            }
        };
        let snapshot = Snapshot::build(&next);
        let outcome = match &written {
            Some(stored) => shared.wait(shared.documents.put(stored, wanted, at)),
            None => {
                let rev = match expect {
                    Expect::Present(rev) => rev.as_deref(),
                    Expect::Absent => None,
                };
                shared.wait(shared.documents.delete(account, id, rev, at))
            }
        };
        match outcome {
            Err(e) => Attempt::Done(Err(WriteError::Unavailable(e))),
            Ok(Outcome::Conflict { current }) => {
                Attempt::Done(Err(WriteError::Conflict { current }))
            }
            Ok(Outcome::NotFound) => Attempt::Done(Err(WriteError::NotFound)),
            Ok(Outcome::Moved { .. }) => Attempt::Stale(WriteError::Conflict {
                current: existing.as_deref().map(revision),
            }),
            Ok(Outcome::Written { revision: now }) => {
                let result = match &written {
                    Some(_) => next
                        .document(account, id)
                        .cloned()
                        .ok_or(WriteError::NotFound),
                    None => existing.ok_or(WriteError::NotFound),
                };
                self.go_live(next, snapshot);
                self.shared_at.store(now, Ordering::Release);
                self.stats.ok.fetch_add(1, Ordering::Relaxed);
                Attempt::Done(result)
            }
        }
    }

    /// Loads every document from Redis and makes them live (a write found its view old).
    /// `_held`: the writer lock, held by the caller.
    fn catch_up(&self, _held: &mut Files, shared: &SharedDocuments) -> Result<(), WriteError> {
        let outcome = self
            .load_shared(shared, true)
            .map_err(WriteError::Unavailable)?;
        log_reload("a write found another node's change", &outcome);
        Ok(())
    }

    /// The change stream follower's job: with documents in Redis, loads them all and
    /// makes them live if Redis is at another revision than the live catalog. An invalid
    /// set (it should not happen: every write was validated) is refused and logged, the
    /// live catalog stays. Blocking: call it from a blocking thread.
    /// Returns false when Redis did not answer (the caller may try again).
    pub fn follow_shared(&self, reason: &str) -> bool {
        let Some(shared) = &self.shared else {
            return true;
        };
        let mut files = self.lock();
        let outcome = self.reload_shared_locked(&mut files, shared, false);
        log_reload(reason, &outcome);
        !matches!(outcome, Reload::Unreachable(_))
    }

    /// SIGHUP (`full`) and the follower; a Redis that does not answer fails the reload.
    /// `_held`: the writer lock, held by the caller.
    fn reload_shared_locked(
        &self,
        _held: &mut Files,
        shared: &SharedDocuments,
        full: bool,
    ) -> Reload {
        self.load_shared(shared, full).unwrap_or_else(|e| {
            self.stats.failed.fetch_add(1, Ordering::Relaxed);
            Reload::Unreachable(e)
        })
    }

    /// Call with the writer lock held.
    fn load_shared(&self, shared: &SharedDocuments, full: bool) -> Result<Reload, RedisError> {
        let started = Instant::now();
        // One small round trip first: the follower also sees this node's own writes,
        // which are live already (same global revision).
        if !full && shared.wait(shared.documents.revision())? == self.shared_revision() {
            self.stats.unchanged.fetch_add(1, Ordering::Relaxed);
            return Ok(Reload::Unchanged);
        }
        let stored = shared.wait(shared.documents.load())?;
        let settings = self.catalog().settings().clone();
        let next = match shared::catalog_from(settings, &stored) {
            Ok(next) => next,
            Err(failures) => return Ok(self.failed(failures)),
        };
        let snapshot = Snapshot::build(&next);
        let (documents, dids) = (next.documents().len(), snapshot.did_count());
        self.go_live(next, snapshot);
        self.shared_at.store(stored.revision, Ordering::Release);
        let took = started.elapsed();
        self.stats.ok.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.stats.last_micros.store(micros, Ordering::Relaxed);
        Ok(Reload::Applied {
            documents,
            dids,
            took,
        })
    }
}

/// Every error of a failed reload is logged, one line each, with its file.
pub(crate) fn log_reload(reason: &str, outcome: &Reload) {
    match outcome {
        Reload::Unchanged => tracing::debug!(reason, "reload: nothing changed"),
        Reload::Applied {
            documents,
            dids,
            took,
        } => tracing::info!(
            reason,
            documents,
            dids,
            took_ms = took.as_millis() as u64,
            "reload: new routing index live"
        ),
        Reload::Unreachable(e) => tracing::error!(
            reason,
            error = %e,
            "reload: the documents cannot be loaded from Redis; the previous configuration stays live"
        ),
        Reload::Failed(failures) => {
            for f in failures {
                for line in f.lines() {
                    tracing::error!(reason, error = %line, "reload: invalid connectivity file");
                }
            }
            let errors: usize = failures.iter().map(|f| f.errors.len()).sum();
            tracing::error!(
                reason,
                errors,
                files = failures.len(),
                "reload refused: the previous configuration stays live"
            );
        }
    }
}
