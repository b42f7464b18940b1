//! Limits and character rules shared by the settings file and connectivity documents
//! (the bottom layer of validation: no model types here).

/// Longest accepted timer, in seconds. The schema sets no bound; a day is far beyond any
/// sane call-setup timer and keeps arithmetic on timers overflow-free.
pub(crate) const MAX_TIMER_SECS: i64 = 86_400;

/// RFC 3261 `token` characters: what a header name may contain.
pub(crate) fn is_sip_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b))
}

/// `sip:`/`sips:` followed by a non-empty URI without spaces, quotes or angle brackets
/// (it becomes a Request-URI verbatim).
pub(crate) fn is_sip_uri(s: &str) -> bool {
    let lower = s.get(..5).map(str::to_ascii_lowercase).unwrap_or_default();
    let rest = if lower == "sips:" {
        &s[5..]
    } else if lower.starts_with("sip:") {
        &s[4..]
    } else {
        return false;
    };
    !rest.is_empty()
        && rest
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"<>\"\\{}|^`".contains(&b))
}
