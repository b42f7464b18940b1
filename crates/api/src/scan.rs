//! A cheap look at the connectivity directory: which document files exist and a stamp of
//! each (size, mtime, ctime, inode), without reading them. The watcher compares scans to
//! notice edits by hand or by git; a reload re-reads only the files whose stamp changed.
//!
//! The layout and the skipping rules are those of
//! [`load_connectivity_dir`](trunkstore_config::load_connectivity_dir): one directory per
//! account, one `<id>.json` per document, hidden entries (the temp files of atomic
//! writes) and other files ignored.

use std::collections::hash_map::DefaultHasher;
use std::fs;
use std::hash::{Hash, Hasher};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use trunkstore_config::ids::{is_valid_id, ID_PATTERN};
use trunkstore_config::{FileErrors, ValidationErrors};

/// What identifies one version of a file without reading it. A rename (git checkout,
/// our own atomic writes) changes the inode and ctime; an in-place edit the mtime/size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Stamp {
    len: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    inode: u64,
}

impl Stamp {
    pub(crate) fn of(meta: &fs::Metadata) -> Stamp {
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        Stamp {
            len: meta.len(),
            mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
            inode: meta.ino(),
        }
    }

    /// The stamp of the file at `path` now.
    pub(crate) fn read(path: &Path) -> std::io::Result<Stamp> {
        fs::metadata(path).map(|m| Stamp::of(&m))
    }
}

/// One document file found by a scan.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub account: String,
    pub id: String,
    pub path: PathBuf,
    pub(crate) stamp: Stamp,
}

/// Every document file of the directory (sorted by account, then id) and the problems
/// that are not a document's (unreadable directories, bad account directory names).
#[derive(Debug, Default)]
pub(crate) struct Scan {
    pub entries: Vec<Entry>,
    pub problems: Vec<FileErrors>,
}

impl Scan {
    /// A hash of the whole scan: equal fingerprints mean nothing visible changed.
    pub(crate) fn fingerprint(&self) -> u64 {
        let mut h = DefaultHasher::new();
        for e in &self.entries {
            e.path.hash(&mut h);
            e.stamp.hash(&mut h);
        }
        for p in &self.problems {
            p.file.hash(&mut h);
            p.errors.len().hash(&mut h);
        }
        h.finish()
    }
}

fn problem(path: &Path, keyword: &'static str, message: String) -> FileErrors {
    let mut e = ValidationErrors::new();
    e.add("", keyword, message, None, None);
    FileErrors::new(path, e)
}

/// Non-hidden entries of `dir`, sorted by name (deterministic conflict reporting).
fn visible(dir: &Path) -> std::io::Result<Vec<(String, PathBuf, fs::FileType)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') {
            out.push((name, entry.path(), entry.file_type()?));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Lists and stamps every document file under `dir`.
pub(crate) fn scan(dir: &Path) -> Scan {
    let mut scan = Scan::default();
    let accounts = match visible(dir) {
        Ok(a) => a,
        Err(e) => {
            let msg = format!("cannot read connectivity directory: {e}");
            scan.problems.push(problem(dir, "io", msg));
            return scan;
        }
    };
    for (account, path, kind) in accounts {
        if !kind.is_dir() {
            continue;
        }
        if !is_valid_id(&account) {
            let msg = format!("account directory name must match {ID_PATTERN}");
            scan.problems.push(problem(&path, "pattern", msg));
            continue;
        }
        scan_account(&mut scan, account, &path);
    }
    scan
}

fn scan_account(scan: &mut Scan, account: String, dir: &Path) {
    let files = match visible(dir) {
        Ok(f) => f,
        Err(e) => {
            let msg = format!("cannot read account directory: {e}");
            scan.problems.push(problem(dir, "io", msg));
            return;
        }
    };
    for (name, path, kind) in files {
        let Some(id) = name.strip_suffix(".json") else {
            continue;
        };
        if !kind.is_file() {
            continue;
        }
        // A file that vanished between listing and stat is simply not there any more.
        let Ok(stamp) = Stamp::read(&path) else {
            continue;
        };
        scan.entries.push(Entry {
            account: account.clone(),
            id: id.to_string(),
            path,
            stamp,
        });
    }
}

/// Removes the temp files that writes interrupted by a crash left behind
/// (`.<id>.json.<pid>.<n>.tmp`, never visible to loading). Returns how many.
pub(crate) fn remove_stale_temp_files(dir: &Path) -> usize {
    let Ok(accounts) = fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for account in accounts.flatten() {
        let Ok(files) = fs::read_dir(account.path()) else {
            continue;
        };
        for f in files.flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            let stale = name.starts_with('.') && name.ends_with(".tmp") && name.contains(".json.");
            if stale && fs::remove_file(f.path()).is_ok() {
                removed += 1;
            }
        }
    }
    removed
}
