//! Digest challenges and verification for password servers (behaviour.md §5.1).

use std::net::IpAddr;

use trunkstore_config::DigestAlgorithm;
use trunkstore_routing::{ServerId, ServerInfo, Snapshot};
use trunkstore_sip::digest::{ct_eq_hex, expected_response, Algorithm, Challenge, Credentials};

use super::nonce::{NonceCheck, NonceKey};
use super::replay::{NcCheck, NonceCounts, DEFAULT_CAPACITY};

/// Header name of the challenges.
pub(super) const PROXY_AUTHENTICATE: &[u8] = b"Proxy-Authenticate";

/// The request being authenticated.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AuthRequest<'a> {
    /// `INVITE`...
    pub method: &'a [u8],
    /// The Request-URI as received (the credentials' `uri` must be the same).
    pub request_uri: &'a [u8],
    /// The `Proxy-Authorization` value.
    pub credentials: &'a [u8],
    /// Source address of the packet (the nonce is bound to it).
    pub source: IpAddr,
}

/// What to do with a request after [`Authenticator::verify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthOutcome {
    /// Authenticated as this password server.
    Ok { server: ServerId },
    /// No usable credentials (unparseable, not Digest, a nonce we did not issue to this
    /// source): 407 with a fresh challenge. Not an auth failure (the first INVITE of every
    /// call lands here).
    Challenge,
    /// Right password, expired nonce: 407 with `stale=true` (the client retries without
    /// asking anyone for the password).
    Stale,
    /// Right password, but this nonce-count was already used: the request is refused
    /// with a 407 `stale=true` and a fresh nonce. A replayed capture cannot answer it
    /// without the password, while an honest client that reused a nonce retries
    /// transparently. Not counted as an auth failure: the password was right.
    Replay,
    /// 403: counted as an auth failure (bans, §8).
    Forbidden(Forbidden),
}

impl AuthOutcome {
    /// The status to answer with (`None`: go on with the request).
    #[cfg(test)]
    pub(crate) fn status(&self) -> Option<u16> {
        match self {
            AuthOutcome::Ok { .. } => None,
            AuthOutcome::Challenge | AuthOutcome::Stale | AuthOutcome::Replay => Some(407),
            AuthOutcome::Forbidden(_) => Some(403),
        }
    }

    /// Does the 407 carry `stale=true`?
    pub(crate) fn stale(&self) -> bool {
        matches!(self, AuthOutcome::Stale | AuthOutcome::Replay)
    }

    /// Counts towards a ban of the source.
    #[cfg(test)]
    pub(crate) fn is_failure(&self) -> bool {
        matches!(self, AuthOutcome::Forbidden(_))
    }
}

/// Why credentials were refused (for logs and metrics; never sent to the peer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Forbidden {
    /// The realm is neither an account's `auth_realm` nor the default realm.
    UnknownRealm,
    /// No password server with that `auth_user` in that realm.
    UnknownUser,
    WrongPassword,
    /// The credentials' `uri` is not the Request-URI.
    UriMismatch,
    /// An algorithm we did not offer (the settings' `auth.algorithms`: MD5 and/or SHA-256;
    /// no `algorithm` parameter means MD5).
    UnsupportedAlgorithm,
    /// A qop other than `auth` (none is accepted too).
    UnsupportedQop,
}

impl Forbidden {
    pub(crate) fn as_str(&self) -> &'static str {
        match self {
            Forbidden::UnknownRealm => "unknown realm",
            Forbidden::UnknownUser => "unknown user",
            Forbidden::WrongPassword => "wrong password",
            Forbidden::UriMismatch => "uri mismatch",
            Forbidden::UnsupportedAlgorithm => "unsupported algorithm",
            Forbidden::UnsupportedQop => "unsupported qop",
        }
    }
}

/// The `Proxy-Authenticate` values of a 407, one per algorithm offered (the settings'
/// `auth.algorithms`, in RFC 8760 order: SHA-256 before MD5), in one buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChallengeHeaders {
    buf: Vec<u8>,
    /// Where each value ends in `buf`, in the order sent.
    ends: Vec<usize>,
}

impl ChallengeHeaders {
    /// The values, in the order sent.
    pub(crate) fn values(&self) -> Vec<&[u8]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(self.ends.iter().copied())
            .map(|(start, end)| &self.buf[start..end])
            .collect()
    }

    /// `(name, value)` pairs for `ResponseOptions::headers` of a 407.
    pub(crate) fn headers(&self) -> Vec<(&[u8], &[u8])> {
        self.headers_named(PROXY_AUTHENTICATE)
    }

    /// The same challenges under another header name (`WWW-Authenticate` in a 401 to a
    /// REGISTER: the registrar is the UAS, not a proxy).
    pub(crate) fn headers_named<'a>(&'a self, name: &'a [u8]) -> Vec<(&'a [u8], &'a [u8])> {
        self.values().into_iter().map(|v| (name, v)).collect()
    }
}

/// Issues challenges and verifies credentials. One per process, shared by all workers.
#[derive(Debug)]
pub(crate) struct Authenticator {
    key: NonceKey,
    counts: NonceCounts,
}

impl Default for Authenticator {
    fn default() -> Self {
        Authenticator::new(NonceKey::random(), DEFAULT_CAPACITY)
    }
}

impl Authenticator {
    /// `capacity`: most nonces whose counts are tracked at once.
    pub(crate) fn new(key: NonceKey, capacity: usize) -> Authenticator {
        Authenticator {
            key,
            counts: NonceCounts::new(capacity),
        }
    }

    /// The 407's challenges for a request whose From host is `from_host`, from `source`,
    /// at wall-clock second `now_secs`. The realm is the account's `auth_realm` when the
    /// From host is one, else the default realm.
    pub(crate) fn challenge(
        &self,
        snapshot: &Snapshot,
        from_host: &[u8],
        source: IpAddr,
        now_secs: u64,
        stale: bool,
    ) -> ChallengeHeaders {
        let default = snapshot.settings().default_realm.as_str();
        let realm =
            std::str::from_utf8(from_host).map_or(default, |host| snapshot.challenge_realm(host));
        let nonce = self.key.issue(source, now_secs);
        let algorithms = &snapshot.settings().auth.algorithms;
        let mut c = Challenge {
            realm: realm.as_bytes(),
            nonce: nonce.as_bytes(),
            stale,
            qop: Some(b"auth"),
            ..Default::default()
        };
        let each = realm.len() + nonce.as_bytes().len() + 80;
        let mut buf = Vec::with_capacity(algorithms.len() * each);
        let mut ends = Vec::with_capacity(algorithms.len());
        // One nonce for all: the client answers one of them, and a nonce names no
        // algorithm (the offered list is checked again in `verify`).
        for alg in algorithms {
            c.algorithm = Some(alg.as_str().as_bytes());
            c.write_value(&mut buf);
            ends.push(buf.len());
        }
        ChallengeHeaders { buf, ends }
    }

    /// Verifies a request's `Proxy-Authorization` at wall-clock second `now_secs`.
    ///
    /// Order matters: a nonce we did not issue stops everything (nothing in it can be
    /// trusted); the password is checked before staleness and replay, so `stale=true` is
    /// only ever said to a client that knows the password (RFC 7616 §3.3) and the
    /// nonce-count table only grows with successful authentications.
    pub(crate) fn verify(
        &self,
        snapshot: &Snapshot,
        req: &AuthRequest<'_>,
        now_secs: u64,
    ) -> AuthOutcome {
        let Ok(creds) = Credentials::parse(req.credentials) else {
            return AuthOutcome::Challenge;
        };
        let ttl = u64::from(snapshot.settings().nonce_ttl);
        let (stale, nonce) = match self.key.check(creds.nonce, req.source, now_secs, ttl) {
            NonceCheck::Invalid => return AuthOutcome::Challenge,
            NonceCheck::Stale => (true, None),
            NonceCheck::Valid { issued, seq } => (false, Some((seq, issued + ttl))),
        };
        let server = match check_digest(snapshot, &creds, req) {
            Ok(server) => server,
            Err(reason) => return AuthOutcome::Forbidden(reason),
        };
        let Some((seq, expires)) = nonce.filter(|_| !stale) else {
            return AuthOutcome::Stale;
        };
        // Another node's nonce (a cluster): genuine, but its uses are counted there; a
        // fresh nonce of ours keeps a replay from ever being accepted here.
        if !self.key.is_own(seq) {
            return AuthOutcome::Stale;
        }
        // RFC 2069 (no qop) has no count: such a nonce is good for one request.
        let nc = if creds.qop.is_some() {
            creds.nc()
        } else {
            Some(1)
        };
        match self.counts.check(seq, nc.unwrap_or(0), expires, now_secs) {
            NcCheck::Fresh => AuthOutcome::Ok { server },
            NcCheck::Replay => AuthOutcome::Replay,
            NcCheck::Evicted => AuthOutcome::Stale,
        }
    }

    /// Nonces whose counts are tracked (metrics, tests).
    #[cfg(test)]
    pub(crate) fn tracked_nonces(&self) -> usize {
        self.counts.len()
    }

    /// Tracked nonces evicted before expiry (non-zero: the capacity is too small).
    #[cfg(test)]
    pub(crate) fn nonce_evictions(&self) -> u64 {
        self.counts.evictions()
    }
}

/// Everything but the nonce: form, realm, user, password (not `enabled`: see the end).
fn check_digest(
    snapshot: &Snapshot,
    creds: &Credentials<'_>,
    req: &AuthRequest<'_>,
) -> Result<ServerId, Forbidden> {
    let alg = creds.algorithm();
    if !offered(snapshot, alg) {
        return Err(Forbidden::UnsupportedAlgorithm);
    }
    if creds.qop.is_some_and(|q| !q.eq_ignore_ascii_case(b"auth")) {
        return Err(Forbidden::UnsupportedQop);
    }
    // The credentials' uri must be the Request-URI (RFC 2617 §3.2.2.5, RFC 3261 §22.4):
    // lenient on case (scheme and host are case-insensitive), strict on everything else.
    // Kept strict on purpose: the widely deployed PBX stacks answer a challenge with the
    // request line's URI (PJSIP, Asterisk's res_pjsip: pjsip_auth_clt_init_req; sofia-sip,
    // FreeSWITCH's: auc_digest_authorization). SIPp by default writes the proxy's address
    // instead (`sip:<remote_ip>:<port>`): give it `-auth_uri <user@host:port>`. Accepting any uri would let a
    // response captured for one Request-URI be replayed for another destination within
    // the nonce's life (qop=auth-int aside, the uri is what binds it to the request).
    if !creds.uri.eq_ignore_ascii_case(req.request_uri) {
        return Err(Forbidden::UriMismatch);
    }
    let candidates = candidates(snapshot, creds)?;
    let server = candidates
        .iter()
        .map(|&id| snapshot.server(id))
        .find(|s| password_matches(s, alg, creds, req.method))
        .ok_or(Forbidden::WrongPassword)?;
    // A disabled server with the right password is authenticated: the routing refuses its
    // calls with 403, except emergency calls, which must never be blocked (§3). Refusing
    // here would also count towards a ban of its address, and a banned PBX could not
    // reach 911 either.
    Ok(server.id)
}

/// Was `alg` offered? Only the configured algorithms are accepted: an operator who turns
/// SHA-256 off (or MD5, to refuse the weaker hash) must not find it still honoured.
fn offered(snapshot: &Snapshot, alg: Algorithm) -> bool {
    let alg = match alg {
        Algorithm::Md5 => DigestAlgorithm::Md5,
        Algorithm::Sha256 => DigestAlgorithm::Sha256,
        _ => return false,
    };
    snapshot.settings().auth.offers(alg)
}

/// The password servers the credentials may be for. The realm must be one we challenge
/// with. A PBX whose From host is not its account's realm was challenged with the default
/// realm; when no server has that user in the default realm, every realm's servers with
/// that user are candidates (the password still decides).
fn candidates<'s>(
    snapshot: &'s Snapshot,
    creds: &Credentials<'_>,
) -> Result<&'s [ServerId], Forbidden> {
    let realm = std::str::from_utf8(creds.realm).map_err(|_| Forbidden::UnknownRealm)?;
    let is_default = realm.eq_ignore_ascii_case(&snapshot.settings().default_realm);
    if !is_default && !snapshot.is_known_realm(realm) {
        return Err(Forbidden::UnknownRealm);
    }
    let user = std::str::from_utf8(creds.username).map_err(|_| Forbidden::UnknownUser)?;
    let mut found = snapshot.password_servers(realm, user);
    if found.is_empty() && is_default {
        found = snapshot.password_servers_any_realm(user);
    }
    if found.is_empty() {
        return Err(Forbidden::UnknownUser);
    }
    Ok(found)
}

/// Constant-time comparison of the client's response with the one `server`'s password
/// gives. The hash uses the user name and realm as the client sent them (it hashed those).
fn password_matches(
    server: &ServerInfo,
    alg: Algorithm,
    creds: &Credentials<'_>,
    method: &[u8],
) -> bool {
    let Some(password) = &server.password else {
        return false;
    };
    let expected = expected_response(
        alg,
        creds.username,
        creds.realm,
        password.expose().as_bytes(),
        &creds.response_params(method, b""),
    );
    ct_eq_hex(expected.as_bytes(), creds.response)
}
