//! PATCH semantics (RFC 7386 JSON merge patch): objects merge key by key, `null` deletes
//! a key, anything else (arrays included) replaces.

use serde_json::Value;

pub(crate) fn merge(target: &Value, patch: &Value) -> Value {
    let Value::Object(changes) = patch else {
        return patch.clone();
    };
    let mut out = match target {
        Value::Object(m) => m.clone(),
        _ => serde_json::Map::new(),
    };
    for (key, change) in changes {
        if change.is_null() {
            out.remove(key);
        } else {
            let merged = merge(out.get(key).unwrap_or(&Value::Null), change);
            out.insert(key.clone(), merged);
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch() {
        let doc = json!({"a": {"b": 1, "c": 2}, "list": [1, 2], "keep": true, "gone": 1});
        let patch = json!({"a": {"b": null, "d": {"e": 3}}, "list": [3], "gone": null});
        assert_eq!(
            merge(&doc, &patch),
            json!({"a": {"c": 2, "d": {"e": 3}}, "list": [3], "keep": true})
        );
        assert_eq!(merge(&doc, &json!([1])), json!([1]));
        assert_eq!(
            merge(&json!(1), &json!({"x": null, "y": 1})),
            json!({"y": 1})
        );
    }
}
