//! Where a document lives on disk and how a JSON file is read: shared by the settings
//! loader and the document store ([`storage`](crate::storage)).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::ValidationErrors;
use crate::ids::{self, is_valid_id};

/// Largest document file read; a connectivity document is a few kilobytes, and an
/// unbounded read of a wrong file could exhaust memory.
pub(crate) const MAX_DOCUMENT_BYTES: u64 = 16 * 1024 * 1024;

/// `<account>/<id>.json`.
pub fn relative_document_path(account: &str, id: &str) -> PathBuf {
    Path::new(account).join(format!("{id}.json"))
}

/// `<dir>/<account>/<id>.json`, or an `InvalidInput` error if an id is not safe.
pub fn document_path(dir: &Path, account: &str, id: &str) -> io::Result<PathBuf> {
    for (what, v) in [("account id", account), ("document id", id)] {
        if !is_valid_id(v) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid {what} {v:?}: must match {}", ids::ID_PATTERN),
            ));
        }
    }
    Ok(dir.join(relative_document_path(account, id)))
}

pub(crate) fn single(keyword: &'static str, message: String) -> ValidationErrors {
    let mut e = ValidationErrors::new();
    e.add("", keyword, message, None, None);
    e
}

/// Reads and parses one JSON file; problems become a one-entry error at the root path
/// (keyword `io` for unreadable files, `format` for invalid JSON).
pub fn read_json(path: &Path) -> Result<Value, ValidationErrors> {
    let meta = fs::metadata(path).map_err(|e| single("io", format!("cannot read file: {e}")))?;
    if meta.len() > MAX_DOCUMENT_BYTES {
        return Err(single(
            "maxLength",
            format!("file is larger than {MAX_DOCUMENT_BYTES} bytes"),
        ));
    }
    let text = fs::read(path).map_err(|e| single("io", format!("cannot read file: {e}")))?;
    serde_json::from_slice(&text).map_err(|e| single("format", format!("invalid JSON: {e}")))
}
