//! Account and document ids. They become directory and file names (and the REST API
//! takes them from URLs), so only a safe charset is allowed: no `.`, no `/`, no `..`.

/// The accepted form, as shown in error messages.
pub const ID_PATTERN: &str = "^[A-Za-z0-9_-]{1,64}$";

/// Is `id` a safe account or document id (`[A-Za-z0-9_-]{1,64}`)?
pub fn is_valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        for ok in ["acme", "4fe1c2_a-B", &"a".repeat(64)] {
            assert!(is_valid_id(ok), "{ok}");
        }
        for bad in [
            "",
            "..",
            ".",
            "a/b",
            "a\\b",
            "a.json",
            "é",
            " a",
            &"a".repeat(65),
        ] {
            assert!(!is_valid_id(bad), "{bad}");
        }
    }
}
