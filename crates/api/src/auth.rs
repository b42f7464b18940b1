//! `X-Auth-Token` against `api.tokens`. Tokens are compared as SHA-256 digests, every
//! configured token every time, without an early exit: neither the position of the first
//! differing byte nor the length of a token leaks through timing.

use sha2::{Digest, Sha256};
use trunkstore_config::ApiToken;

struct Entry {
    digest: [u8; 32],
    /// `None`: every account.
    account: Option<String>,
}

/// Who a valid token lets in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Grant {
    Admin,
    Account(String),
}

impl Grant {
    pub(crate) fn allows(&self, account: &str) -> bool {
        match self {
            Grant::Admin => true,
            Grant::Account(a) => a == account,
        }
    }
}

pub(crate) struct Tokens {
    entries: Vec<Entry>,
}

fn digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

/// Equal in time independent of where the digests differ.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

impl Tokens {
    pub(crate) fn new(tokens: &[ApiToken]) -> Tokens {
        let entries = tokens
            .iter()
            .map(|t| Entry {
                digest: digest(t.token.expose().as_bytes()),
                account: t.account.clone(),
            })
            .collect();
        Tokens { entries }
    }

    /// The grant of `presented`, or `None` when it matches no configured token.
    pub(crate) fn check(&self, presented: &[u8]) -> Option<Grant> {
        let wanted = digest(presented);
        let mut found = None;
        for e in &self.entries {
            if same(&e.digest, &wanted) && found.is_none() {
                found = Some(match &e.account {
                    None => Grant::Admin,
                    Some(a) => Grant::Account(a.clone()),
                });
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trunkstore_config::Secret;

    fn token(t: &str, account: Option<&str>) -> ApiToken {
        ApiToken {
            token: Secret::new(t),
            account: account.map(str::to_string),
        }
    }

    #[test]
    fn grants() {
        let tokens = Tokens::new(&[
            token("admin-token-0123456789", None),
            token("acme-token-0123456789", Some("acme")),
        ]);
        assert_eq!(tokens.check(b"admin-token-0123456789"), Some(Grant::Admin));
        let acme = tokens.check(b"acme-token-0123456789").unwrap();
        assert!(acme.allows("acme") && !acme.allows("other"));
        assert_eq!(tokens.check(b"admin-token-012345678"), None);
        assert_eq!(tokens.check(b""), None);
        assert_eq!(Tokens::new(&[]).check(b"anything-at-all-here"), None);
    }
}
