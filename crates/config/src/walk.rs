//! A small JSON walker that validates while it reads, collecting every error with its
//! dotted path instead of stopping at the first (serde would stop at the first error and
//! cannot coerce `"30"` into 30 while reporting the rest).

use serde_json::{json, Map, Value};

use crate::error::ValidationErrors;

/// Joins a dotted path and a key or index.
pub(crate) fn join(base: &str, key: impl std::fmt::Display) -> String {
    if base.is_empty() {
        key.to_string()
    } else {
        format!("{base}.{key}")
    }
}

/// A character rule for strings: a predicate and the description shown as the error target.
pub(crate) type CharRule = (fn(&str) -> bool, &'static str);

/// How a string field is checked.
#[derive(Clone, Copy)]
pub(crate) struct Str {
    pub min: usize,
    pub max: Option<usize>,
    pub pattern: Option<CharRule>,
    /// Secrets are never echoed back in errors (they end up in logs and API responses).
    pub secret: bool,
}

impl Str {
    pub(crate) const ANY: Str = Str {
        min: 0,
        max: None,
        pattern: None,
        secret: false,
    };
    pub(crate) const NON_EMPTY: Str = Str { min: 1, ..Str::ANY };
    pub(crate) fn len(min: usize, max: usize) -> Str {
        Str {
            min,
            max: Some(max),
            ..Str::ANY
        }
    }
    pub(crate) fn pattern(self, rule: CharRule) -> Str {
        Str {
            pattern: Some(rule),
            ..self
        }
    }
    pub(crate) fn secret(self) -> Str {
        Str {
            secret: true,
            ..self
        }
    }
}

/// Bytes that would let a value break out of its SIP header line.
pub(crate) fn has_forbidden_chars(s: &str) -> bool {
    s.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0))
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[derive(Default)]
pub(crate) struct Walker {
    pub errors: ValidationErrors,
}

impl Walker {
    pub(crate) fn error(
        &mut self,
        path: &str,
        keyword: &'static str,
        message: impl Into<String>,
        target: Option<Value>,
        value: Option<Value>,
    ) {
        self.errors.add(path, keyword, message, target, value);
    }

    pub(crate) fn type_error(&mut self, path: &str, expected: &'static str, value: &Value) {
        self.error(
            path,
            "type",
            format!(
                "Value is not of type '{expected}' (found {})",
                type_name(value)
            ),
            Some(json!(expected)),
            Some(value.clone()),
        );
    }

    pub(crate) fn required(&mut self, path: &str) {
        self.error(
            path,
            "required",
            "Field is required but missing",
            None,
            None,
        );
    }

    /// A present, non-null member. `null` counts as absent: PATCH uses it to delete keys.
    pub(crate) fn field<'v>(obj: &'v Map<String, Value>, key: &str) -> Option<&'v Value> {
        obj.get(key).filter(|v| !v.is_null())
    }

    pub(crate) fn object<'v>(
        &mut self,
        v: &'v Value,
        path: &str,
    ) -> Option<&'v Map<String, Value>> {
        match v {
            Value::Object(m) => Some(m),
            other => {
                self.type_error(path, "object", other);
                None
            }
        }
    }

    pub(crate) fn array<'v>(&mut self, v: &'v Value, path: &str) -> Option<&'v Vec<Value>> {
        match v {
            Value::Array(a) => Some(a),
            other => {
                self.type_error(path, "array", other);
                None
            }
        }
    }

    /// Strings; integers are accepted and written as their decimal form (`"cid_number":
    /// 4155551234` is a common hand-editing slip, and harmless).
    pub(crate) fn string(&mut self, v: &Value, path: &str, spec: Str) -> Option<String> {
        let s = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
            other => {
                self.type_error(path, "string", other);
                return None;
            }
        };
        let shown = || (!spec.secret).then(|| json!(s));
        if has_forbidden_chars(&s) {
            self.error(
                path,
                "forbidden_characters",
                "Value must not contain CR, LF or NUL characters",
                Some(json!("no CR, LF or NUL")),
                shown(),
            );
            return None;
        }
        let len = s.chars().count();
        if len < spec.min {
            let message = if spec.min == 1 {
                "String must not be empty".to_string()
            } else {
                format!("String must be at least {} characters", spec.min)
            };
            self.error(path, "minLength", message, Some(json!(spec.min)), shown());
            return None;
        }
        if let Some(max) = spec.max.filter(|max| len > *max) {
            self.error(
                path,
                "maxLength",
                format!("String must not be more than {max} characters"),
                Some(json!(max)),
                shown(),
            );
            return None;
        }
        if let Some((ok, what)) = spec.pattern {
            if !ok(&s) {
                self.error(
                    path,
                    "pattern",
                    format!("Value must be {what}"),
                    Some(json!(what)),
                    shown(),
                );
                return None;
            }
        }
        Some(s)
    }

    /// Integers in `min..=max`; `"30"` is coerced (the original API accepted it), and so is
    /// an integral float such as `30.0`.
    pub(crate) fn integer(&mut self, v: &Value, path: &str, min: i64, max: i64) -> Option<i64> {
        let n = match v {
            Value::Number(n) => n
                .as_i64()
                .or_else(|| n.as_u64().map(|_| i64::MAX))
                .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
            Value::String(s) => s.parse::<i64>().ok(),
            _ => None,
        };
        let Some(n) = n else {
            self.type_error(path, "integer", v);
            return None;
        };
        if n < min {
            self.error(
                path,
                "minimum",
                format!("Value must be at least {min}"),
                Some(json!(min)),
                Some(v.clone()),
            );
            return None;
        }
        if n > max {
            self.error(
                path,
                "maximum",
                format!("Value must be at most {max}"),
                Some(json!(max)),
                Some(v.clone()),
            );
            return None;
        }
        Some(n)
    }

    /// Booleans; `"true"`/`"false"` (any case) are coerced.
    pub(crate) fn boolean(&mut self, v: &Value, path: &str) -> Option<bool> {
        match v {
            Value::Bool(b) => Some(*b),
            Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
            Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
            other => {
                self.type_error(path, "boolean", other);
                None
            }
        }
    }

    /// One of a fixed list of spellings.
    pub(crate) fn enumeration<T: Copy>(
        &mut self,
        v: &Value,
        path: &str,
        options: &[(&str, T)],
    ) -> Option<T> {
        let s = self.string(v, path, Str::ANY)?;
        if let Some((_, t)) = options.iter().find(|(name, _)| *name == s) {
            return Some(*t);
        }
        let allowed: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
        self.error(
            path,
            "enum",
            "Value not found in enumerated list of values",
            Some(json!(allowed)),
            Some(v.clone()),
        );
        None
    }

    pub(crate) fn opt_string(
        &mut self,
        obj: &Map<String, Value>,
        key: &str,
        base: &str,
        spec: Str,
    ) -> Option<String> {
        Self::field(obj, key).and_then(|v| self.string(v, &join(base, key), spec))
    }

    pub(crate) fn opt_integer(
        &mut self,
        obj: &Map<String, Value>,
        key: &str,
        base: &str,
        min: i64,
        max: i64,
    ) -> Option<i64> {
        Self::field(obj, key).and_then(|v| self.integer(v, &join(base, key), min, max))
    }

    /// A bounded integer member read as `u32` (`min >= 0`, `max <= u32::MAX`); `default`
    /// when absent (an out-of-range or mistyped one is an error, and the default stands in).
    pub(crate) fn opt_u32(
        &mut self,
        obj: &Map<String, Value>,
        key: &str,
        base: &str,
        min: i64,
        max: i64,
        default: u32,
    ) -> u32 {
        self.opt_integer(obj, key, base, min, max)
            .map_or(default, |n| n as u32)
    }

    pub(crate) fn opt_bool(
        &mut self,
        obj: &Map<String, Value>,
        key: &str,
        base: &str,
    ) -> Option<bool> {
        Self::field(obj, key).and_then(|v| self.boolean(v, &join(base, key)))
    }

    /// Reports members that are not in `known` (used for the proxy settings, where an
    /// unknown key is almost always a typo; connectivity documents keep unknown keys).
    pub(crate) fn no_unknown_keys(&mut self, obj: &Map<String, Value>, base: &str, known: &[&str]) {
        for key in obj.keys() {
            if !known.contains(&key.as_str()) {
                self.error(
                    &join(base, key),
                    "additionalProperties",
                    "Unknown setting",
                    Some(json!(known)),
                    None,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coercions() {
        let mut w = Walker::default();
        assert_eq!(w.integer(&json!("30"), "a", 0, 100), Some(30));
        assert_eq!(w.integer(&json!(30.0), "a", 0, 100), Some(30));
        assert_eq!(w.boolean(&json!("true"), "b"), Some(true));
        assert_eq!(w.boolean(&json!("FALSE"), "b"), Some(false));
        assert_eq!(
            w.string(&json!(5060), "c", Str::ANY).as_deref(),
            Some("5060")
        );
        assert!(w.errors.is_empty());
        assert_eq!(w.integer(&json!("3x"), "d", 0, 100), None);
        assert_eq!(w.integer(&json!(1.5), "e", 0, 100), None);
        assert_eq!(w.boolean(&json!("yes"), "f"), None);
        assert_eq!(w.integer(&json!(u64::MAX), "g", 0, 100), None);
        assert!(w.errors.has("d", "type"));
        assert!(w.errors.has("e", "type"));
        assert!(w.errors.has("f", "type"));
        assert!(w.errors.has("g", "maximum"));
    }

    #[test]
    fn secrets_are_not_echoed() {
        let mut w = Walker::default();
        w.string(&json!("a\r\nb"), "p", Str::ANY.secret());
        let e = w.errors.get("p", "forbidden_characters").unwrap();
        assert_eq!(e.value, None);
    }
}
