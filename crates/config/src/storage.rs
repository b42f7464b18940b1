//! Files on disk: `<connectivity_dir>/<account_id>/<document_id>.json`, one document per
//! file, and crash-safe writes for the REST API.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;

use crate::catalog::Catalog;
use crate::document::Document;
use crate::error::FileErrors;
use crate::files::{document_path, read_json, single};
use crate::ids::{self, is_valid_id};
use crate::settings::Settings;
use crate::validate::validate_document;

/// Entries of `dir` whose names are not hidden (temp files of atomic writes start with
/// `.`), sorted by name so loading order, and so conflict reporting, is deterministic.
fn visible_entries(dir: &Path) -> io::Result<Vec<(String, PathBuf, fs::FileType)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        out.push((name, entry.path(), entry.file_type()?));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Loads and validates every document under `dir`: each subdirectory is an account, each
/// `*.json` in it a document. Returns the valid documents and the errors of every invalid
/// file (all of them, not the first). Other files (e.g. a README) are ignored.
pub fn load_connectivity_dir(dir: &Path) -> (Vec<Document>, Vec<FileErrors>) {
    let mut docs = Vec::new();
    let mut failures = Vec::new();
    let accounts = match visible_entries(dir) {
        Ok(a) => a,
        Err(e) => {
            let msg = format!("cannot read connectivity directory: {e}");
            failures.push(FileErrors::new(dir, single("io", msg)));
            return (docs, failures);
        }
    };
    for (account, account_path, kind) in accounts {
        if !kind.is_dir() {
            continue;
        }
        if !is_valid_id(&account) {
            let msg = format!("account directory name must match {}", ids::ID_PATTERN);
            failures.push(FileErrors::new(&account_path, single("pattern", msg)));
            continue;
        }
        match visible_entries(&account_path) {
            Ok(files) => {
                for (name, path, kind) in files {
                    let Some(id) = name.strip_suffix(".json") else {
                        continue;
                    };
                    if !kind.is_file() {
                        continue;
                    }
                    match load_document(&path, &account, id) {
                        Ok(doc) => docs.push(doc),
                        Err(e) => failures.push(e),
                    }
                }
            }
            Err(e) => {
                let msg = format!("cannot read account directory: {e}");
                failures.push(FileErrors::new(&account_path, single("io", msg)));
            }
        }
    }
    (docs, failures)
}

/// Reads and validates one document file as document `id` of `account`.
pub fn load_document(path: &Path, account: &str, id: &str) -> Result<Document, FileErrors> {
    let wrap = |e| FileErrors::for_document(path, account, id, e);
    let value = read_json(path).map_err(wrap)?;
    let mut doc = validate_document(account, id, &value).map_err(wrap)?;
    doc.source = Some(path.to_path_buf());
    Ok(doc)
}

/// Loads the settings file and every document, and checks the whole system. Nothing
/// half-loads: any error anywhere returns every error found.
pub fn load_all(settings_path: &Path) -> Result<Catalog, Vec<FileErrors>> {
    let settings = Settings::load(settings_path).map_err(|e| vec![e])?;
    let (docs, failures) = load_connectivity_dir(&settings.connectivity_dir);
    // Cross-document checks still run over the valid documents so one pass shows
    // everything that needs fixing.
    match (Catalog::build(settings, docs), failures.is_empty()) {
        (Ok(catalog), true) => Ok(catalog),
        (Ok(_), false) => Err(failures),
        (Err(more), _) => Err(failures.into_iter().chain(more).collect()),
    }
}

/// Makes temp file names unique among concurrent writers of one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `value` as `<dir>/<account>/<id>.json` so that a crash leaves either the old or
/// the new file, never a torn one: write a temp file in the same directory, fsync it,
/// rename over the target, fsync the directory. Creates the account directory if needed.
/// Returns the final path. Validation is the caller's job.
pub fn write_document_atomically(
    dir: &Path,
    account: &str,
    id: &str,
    value: &Value,
) -> io::Result<PathBuf> {
    let target = document_path(dir, account, id)?;
    let account_dir = dir.join(account);
    if !account_dir.is_dir() {
        fs::create_dir_all(&account_dir)?;
        sync_dir(dir)?;
    }
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let temp = account_dir.join(format!(".{id}.json.{}.{n}.tmp", std::process::id()));
    let result = write_and_rename(&temp, &target, value);
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result?;
    sync_dir(&account_dir)?;
    Ok(target)
}

fn write_and_rename(temp: &Path, target: &Path, value: &Value) -> io::Result<()> {
    let mut text = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
    text.push(b'\n');
    let mut file = File::create(temp)?;
    file.write_all(&text)?;
    file.sync_all()?;
    drop(file);
    fs::rename(temp, target)
}

/// Deletes document `account/id`; `Ok(false)` when it did not exist.
pub fn delete_document(dir: &Path, account: &str, id: &str) -> io::Result<bool> {
    let target = document_path(dir, account, id)?;
    match fs::remove_file(&target) {
        Ok(()) => {
            sync_dir(&dir.join(account))?;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Makes a rename or unlink in `dir` durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
