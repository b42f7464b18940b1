//! Validation errors in the original (Kazoo) API shape.
//!
//! A [`ValidationErrors`] serialises as a map *dotted path → keyword → detail*:
//!
//! ```json
//! {"servers.0.options.progress_timeout":
//!     {"minimum": {"message": "Value must be at least 1", "target": 1, "value": 0}}}
//! ```
//!
//! The same type is used for settings, single documents and system-level conflicts so that
//! the `check` command and the REST API report errors identically.

use std::fmt;
use std::path::PathBuf;

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::Value;

/// One problem with one field.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidationError {
    /// Dotted path of the field (`servers.0.auth.auth_user`); empty for the document root.
    pub path: String,
    /// JSON-schema style keyword: `type`, `minimum`, `maximum`, `minLength`, `maxLength`,
    /// `enum`, `required`, `pattern`, `format`, `unique`, `forbidden_characters`,
    /// `additionalProperties`, `minItems`, `forbidden_address` (a document pointing at a
    /// carrier or at the proxy, behaviour.md §1).
    pub keyword: &'static str,
    /// Human-readable explanation.
    pub message: String,
    /// What the rule wanted (a bound, the enum list, a type name...), when meaningful.
    pub target: Option<Value>,
    /// The offending value, when there is one. Never set for secrets.
    pub value: Option<Value>,
}

/// Every error found in one document or settings file, in discovery order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ValidationErrors {
    errors: Vec<ValidationError>,
}

impl ValidationErrors {
    /// No errors yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// No error was found.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// Number of errors.
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// The errors in discovery order.
    pub fn iter(&self) -> std::slice::Iter<'_, ValidationError> {
        self.errors.iter()
    }

    /// Adds one error.
    pub fn push(&mut self, error: ValidationError) {
        self.errors.push(error);
    }

    /// Shorthand for [`push`](Self::push).
    pub fn add(
        &mut self,
        path: impl Into<String>,
        keyword: &'static str,
        message: impl Into<String>,
        target: Option<Value>,
        value: Option<Value>,
    ) {
        self.push(ValidationError {
            path: path.into(),
            keyword,
            message: message.into(),
            target,
            value,
        });
    }

    /// Adds every error of `other`, keeping their order.
    pub fn extend(&mut self, other: ValidationErrors) {
        self.errors.extend(other.errors);
    }

    /// Is there an error for exactly this path and keyword? (Handy in tests and the API.)
    pub fn has(&self, path: &str, keyword: &str) -> bool {
        self.errors
            .iter()
            .any(|e| e.path == path && e.keyword == keyword)
    }

    /// The error for `path`/`keyword`, if any.
    pub fn get(&self, path: &str, keyword: &str) -> Option<&ValidationError> {
        self.errors
            .iter()
            .find(|e| e.path == path && e.keyword == keyword)
    }

    /// `Ok(value)` when no error was recorded.
    pub(crate) fn into_result<T>(self, value: T) -> Result<T, Self> {
        if self.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }

    /// The API body: `{path: {keyword: {message, target?, value?}}}`.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("validation errors always serialise")
    }
}

impl IntoIterator for ValidationErrors {
    type Item = ValidationError;
    type IntoIter = std::vec::IntoIter<ValidationError>;
    fn into_iter(self) -> Self::IntoIter {
        self.errors.into_iter()
    }
}

impl<'a> IntoIterator for &'a ValidationErrors {
    type Item = &'a ValidationError;
    type IntoIter = std::slice::Iter<'a, ValidationError>;
    fn into_iter(self) -> Self::IntoIter {
        self.errors.iter()
    }
}

impl Serialize for ValidationErrors {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Group by path, keeping first-seen order; the first error per keyword wins because
        // a JSON object cannot hold the same keyword twice.
        let mut grouped: Vec<(&str, serde_json::Map<String, Value>)> = Vec::new();
        for e in &self.errors {
            let idx = match grouped.iter().position(|(p, _)| *p == e.path) {
                Some(i) => i,
                None => {
                    grouped.push((&e.path, serde_json::Map::new()));
                    grouped.len() - 1
                }
            };
            let slot = &mut grouped[idx].1;
            if !slot.contains_key(e.keyword) {
                slot.insert(e.keyword.to_string(), e.detail_json());
            }
        }
        let mut map = serializer.serialize_map(Some(grouped.len()))?;
        for (path, keywords) in grouped {
            map.serialize_entry(path, &keywords)?;
        }
        map.end()
    }
}

impl ValidationError {
    fn detail_json(&self) -> Value {
        let mut detail = serde_json::Map::new();
        detail.insert("message".into(), Value::String(self.message.clone()));
        if let Some(t) = &self.target {
            detail.insert("target".into(), t.clone());
        }
        if let Some(v) = &self.value {
            detail.insert("value".into(), v.clone());
        }
        Value::Object(detail)
    }
}

impl fmt::Display for ValidationError {
    /// `dotted.path: keyword: message (value …)`, the line format of `trunkstore check`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() {
            "(document)"
        } else {
            &self.path
        };
        write!(f, "{}: {}: {}", path, self.keyword, self.message)?;
        if let Some(v) = &self.value {
            write!(f, " (value {})", short_json(v))?;
        }
        Ok(())
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationErrors {}

/// Keeps error lines on one screen line even for large values.
fn short_json(v: &Value) -> String {
    const MAX: usize = 80;
    let s = v.to_string();
    if s.chars().count() <= MAX {
        s
    } else {
        let cut: String = s.chars().take(MAX).collect();
        format!("{cut}…")
    }
}

/// Errors of one file: a settings file, a connectivity document, or a directory problem.
#[derive(Debug, Clone, PartialEq)]
pub struct FileErrors {
    /// The file (or directory) the errors belong to.
    pub file: PathBuf,
    /// Account and document ids when the file is a connectivity document.
    pub document: Option<(String, String)>,
    /// What was wrong with it.
    pub errors: ValidationErrors,
}

impl FileErrors {
    /// Errors of `file`, not tied to a document id.
    pub fn new(file: impl Into<PathBuf>, errors: ValidationErrors) -> Self {
        Self {
            file: file.into(),
            document: None,
            errors,
        }
    }

    /// Errors of document `account/document`, stored at `file`.
    pub(crate) fn for_document(
        file: impl Into<PathBuf>,
        account: &str,
        document: &str,
        errors: ValidationErrors,
    ) -> Self {
        Self {
            file: file.into(),
            document: Some((account.to_string(), document.to_string())),
            errors,
        }
    }

    /// One line per error: `file: dotted.path: keyword: message (value …)`.
    pub fn lines(&self) -> impl Iterator<Item = String> + '_ {
        self.errors
            .iter()
            .map(move |e| format!("{}: {}", self.file.display(), e))
    }
}

impl fmt::Display for FileErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, line) in self.lines().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            f.write_str(&line)?;
        }
        Ok(())
    }
}

impl std::error::Error for FileErrors {}
