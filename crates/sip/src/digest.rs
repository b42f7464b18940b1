//! HTTP Digest authentication for SIP (RFC 2617, RFC 7616, RFC 3261 §22): parse challenges
//! (WWW-Authenticate / Proxy-Authenticate) and credentials (Authorization /
//! Proxy-Authorization), format them, compute and check responses.
//!
//! Quoted values are returned as written between the quotes (quoted-pairs still escaped;
//! use [`crate::scan::unescape_quoted`] on the rare value that has one). Hashing never
//! allocates: hex digests live in a fixed [`DigestHex`].

use md5::Md5;
use sha2::{Digest, Sha256, Sha512_256};

use crate::error::Error;
use crate::scan::{
    eq_ignore_case, read_quoted, read_token, skip_lws, split_list, trim_lws, write_quoted,
};

/// Digest algorithm (RFC 7616 §3.2). An absent `algorithm` parameter means MD5.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// MD5 (RFC 2617), the default.
    Md5,
    /// MD5 with the client nonce folded into HA1.
    Md5Sess,
    /// SHA-256 (RFC 7616).
    Sha256,
    /// SHA-256 with the client nonce folded into HA1.
    Sha256Sess,
    /// SHA-512/256 (RFC 7616).
    Sha512_256,
    /// SHA-512/256 with the client nonce folded into HA1.
    Sha512_256Sess,
    /// Anything else; responses cannot be computed.
    Unknown,
}

impl Algorithm {
    /// From the `algorithm` parameter value; `None` (absent) is MD5.
    pub(crate) fn from_param(v: Option<&[u8]>) -> Algorithm {
        let Some(v) = v else {
            return Algorithm::Md5;
        };
        const ALL: [(&[u8], Algorithm); 6] = [
            (b"MD5", Algorithm::Md5),
            (b"MD5-sess", Algorithm::Md5Sess),
            (b"SHA-256", Algorithm::Sha256),
            (b"SHA-256-sess", Algorithm::Sha256Sess),
            (b"SHA-512-256", Algorithm::Sha512_256),
            (b"SHA-512-256-sess", Algorithm::Sha512_256Sess),
        ];
        ALL.iter()
            .find(|(n, _)| eq_ignore_case(n, v))
            .map_or(Algorithm::Unknown, |&(_, a)| a)
    }

    /// The canonical parameter value (`"MD5"`, `"SHA-256-sess"`...); empty for Unknown.
    pub fn as_str(&self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Md5Sess => "MD5-sess",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha256Sess => "SHA-256-sess",
            Algorithm::Sha512_256 => "SHA-512-256",
            Algorithm::Sha512_256Sess => "SHA-512-256-sess",
            Algorithm::Unknown => "",
        }
    }

    pub(crate) fn is_sess(&self) -> bool {
        matches!(
            self,
            Algorithm::Md5Sess | Algorithm::Sha256Sess | Algorithm::Sha512_256Sess
        )
    }
}

/// A `Digest` challenge. Quoted fields are the text between the quotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Challenge<'a> {
    /// The protection space; clients pick credentials by it.
    pub realm: &'a [u8],
    /// The server's nonce, echoed back in the credentials.
    pub nonce: &'a [u8],
    /// Opaque server data the client must return unchanged.
    pub opaque: Option<&'a [u8]>,
    /// `stale=true`: the nonce expired but the credentials were right; retry silently.
    pub stale: bool,
    /// The `algorithm` value as written; see [`Challenge::algorithm`].
    pub algorithm: Option<&'a [u8]>,
    /// The `qop` option list as written (`auth,auth-int`); see [`Challenge::qop_options`].
    pub qop: Option<&'a [u8]>,
    /// The `domain` URI list, as written.
    pub domain: Option<&'a [u8]>,
}

/// `Digest` credentials. Quoted fields are the text between the quotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Credentials<'a> {
    /// The user the response was computed for.
    pub username: &'a [u8],
    /// The realm of the challenge being answered.
    pub realm: &'a [u8],
    /// The nonce of the challenge being answered.
    pub nonce: &'a [u8],
    /// The `digest-uri` the client hashed (compare with the Request-URI).
    pub uri: &'a [u8],
    /// The hex response to check.
    pub response: &'a [u8],
    /// The `algorithm` value as written; see [`Credentials::algorithm`].
    pub algorithm: Option<&'a [u8]>,
    /// Client nonce; required with qop.
    pub cnonce: Option<&'a [u8]>,
    /// The challenge's `opaque`, returned.
    pub opaque: Option<&'a [u8]>,
    /// The chosen qop (`auth`), absent for RFC 2069 style responses.
    pub qop: Option<&'a [u8]>,
    /// The nonce count as sent (8 hex digits); it is hashed as text.
    pub nc: Option<&'a [u8]>,
}

/// One `name = value` auth-param.
struct AuthParam<'a> {
    name: &'a [u8],
    value: &'a [u8],
    quoted: bool,
}

/// Splits `Digest <params>` and checks the scheme.
fn digest_params(s: &[u8]) -> Result<&[u8], Error> {
    let s = trim_lws(s);
    let (scheme, i) = read_token(s, 0).ok_or(Error::BadSyntax("bad auth scheme"))?;
    if !eq_ignore_case(scheme, b"Digest") {
        return Err(Error::BadSyntax("auth scheme is not Digest"));
    }
    let j = skip_lws(s, i);
    if j == i && j != s.len() {
        return Err(Error::BadSyntax("bad auth scheme"));
    }
    Ok(&s[j..])
}

/// Walks the comma-separated auth-params (commas inside quotes are content), calling `f`
/// on each. Empty list elements are allowed (RFC 7235 #rule).
fn for_each_param<'a>(
    s: &'a [u8],
    mut f: impl FnMut(AuthParam<'a>) -> Result<(), Error>,
) -> Result<(), Error> {
    for item in split_list(s) {
        let v = item.value;
        if v.is_empty() {
            continue;
        }
        let bad = Error::BadSyntax("bad auth-param");
        let (name, i) = read_token(v, 0).ok_or(bad)?;
        let i = skip_lws(v, i);
        if v.get(i) != Some(&b'=') {
            return Err(bad);
        }
        let i = skip_lws(v, i + 1);
        let (value, end, quoted) = if v.get(i) == Some(&b'"') {
            let (q, end) = read_quoted(v, i)?;
            (q, end, true)
        } else {
            let (t, end) = read_token(v, i).ok_or(bad)?;
            (t, end, false)
        };
        if end != v.len() {
            return Err(bad);
        }
        f(AuthParam {
            name,
            value,
            quoted,
        })?;
    }
    Ok(())
}

impl<'a> Challenge<'a> {
    /// Parses a WWW-Authenticate / Proxy-Authenticate value. `realm` and `nonce` are
    /// required; unknown parameters are ignored; the first occurrence of a name wins.
    pub fn parse(s: &'a [u8]) -> Result<Self, Error> {
        let mut c = Challenge::default();
        let (mut realm, mut nonce) = (None, None);
        for_each_param(digest_params(s)?, |p| {
            let slot = match p.name {
                n if eq_ignore_case(n, b"realm") => &mut realm,
                n if eq_ignore_case(n, b"nonce") => &mut nonce,
                n if eq_ignore_case(n, b"opaque") => &mut c.opaque,
                n if eq_ignore_case(n, b"algorithm") => &mut c.algorithm,
                n if eq_ignore_case(n, b"qop") => &mut c.qop,
                n if eq_ignore_case(n, b"domain") => &mut c.domain,
                n if eq_ignore_case(n, b"stale") => {
                    c.stale = eq_ignore_case(p.value, b"true");
                    return Ok(());
                }
                _ => return Ok(()),
            };
            slot.get_or_insert(p.value);
            Ok(())
        })?;
        c.realm = realm.ok_or(Error::BadSyntax("challenge without realm"))?;
        c.nonce = nonce.ok_or(Error::BadSyntax("challenge without nonce"))?;
        Ok(c)
    }

    /// The challenge's algorithm; an absent parameter is MD5.
    pub fn algorithm(&self) -> Algorithm {
        Algorithm::from_param(self.algorithm)
    }

    /// The offered qop values (`auth`, `auth-int`...).
    pub fn qop_options(&self) -> impl Iterator<Item = &'a [u8]> {
        self.qop
            .unwrap_or(&[])
            .split(|&b| b == b',')
            .map(trim_lws)
            .filter(|t| !t.is_empty())
    }

    /// Does the challenge offer `qop=auth`?
    pub fn offers_auth(&self) -> bool {
        self.qop_options().any(|q| eq_ignore_case(q, b"auth"))
    }

    /// Writes the value: `Digest realm="…", nonce="…", opaque="…", stale=true,
    /// qop="auth", algorithm=MD5` (optional parts only when set).
    pub fn write_value(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(b"Digest realm=");
        write_quoted(buf, self.realm);
        if let Some(d) = self.domain {
            buf.extend_from_slice(b", domain=");
            write_quoted(buf, d);
        }
        buf.extend_from_slice(b", nonce=");
        write_quoted(buf, self.nonce);
        if let Some(o) = self.opaque {
            buf.extend_from_slice(b", opaque=");
            write_quoted(buf, o);
        }
        if self.stale {
            buf.extend_from_slice(b", stale=true");
        }
        if let Some(q) = self.qop {
            buf.extend_from_slice(b", qop=");
            write_quoted(buf, q);
        }
        if let Some(a) = self.algorithm {
            buf.extend_from_slice(b", algorithm=");
            buf.extend_from_slice(a);
        }
    }

    /// Writes a whole header line, `Proxy-Authenticate: …\r\n` (or `WWW-Authenticate`).
    pub fn write_header(&self, buf: &mut Vec<u8>, proxy: bool) {
        buf.extend_from_slice(if proxy {
            b"Proxy-Authenticate: "
        } else {
            b"WWW-Authenticate: "
        });
        self.write_value(buf);
        buf.extend_from_slice(b"\r\n");
    }
}

impl<'a> Credentials<'a> {
    /// Parses an Authorization / Proxy-Authorization value. `username`, `realm`, `nonce`,
    /// `uri` and `response` are required; with a `qop`, `cnonce` and `nc` are too. `nc`
    /// must be 8 hex digits.
    pub fn parse(s: &'a [u8]) -> Result<Self, Error> {
        let mut c = Credentials::default();
        let mut req: [Option<&'a [u8]>; 5] = [None; 5];
        for_each_param(digest_params(s)?, |p| {
            const REQ: [&[u8]; 5] = [b"username", b"realm", b"nonce", b"uri", b"response"];
            if let Some(k) = REQ.iter().position(|n| eq_ignore_case(n, p.name)) {
                req[k].get_or_insert(p.value);
                return Ok(());
            }
            let slot = match p.name {
                n if eq_ignore_case(n, b"algorithm") => &mut c.algorithm,
                n if eq_ignore_case(n, b"cnonce") => &mut c.cnonce,
                n if eq_ignore_case(n, b"opaque") => &mut c.opaque,
                n if eq_ignore_case(n, b"qop") => &mut c.qop,
                n if eq_ignore_case(n, b"nc") => {
                    if p.quoted || parse_nc(p.value).is_none() {
                        return Err(Error::BadSyntax("bad nc"));
                    }
                    &mut c.nc
                }
                _ => return Ok(()),
            };
            slot.get_or_insert(p.value);
            Ok(())
        })?;
        let missing = Error::BadSyntax("incomplete credentials");
        let [u, r, n, uri, resp] = req;
        (c.username, c.realm, c.nonce, c.uri, c.response) = (
            u.ok_or(missing)?,
            r.ok_or(missing)?,
            n.ok_or(missing)?,
            uri.ok_or(missing)?,
            resp.ok_or(missing)?,
        );
        if c.qop.is_some() && (c.cnonce.is_none() || c.nc.is_none()) {
            return Err(missing);
        }
        Ok(c)
    }

    /// The algorithm the response was computed with; an absent parameter is MD5.
    pub fn algorithm(&self) -> Algorithm {
        Algorithm::from_param(self.algorithm)
    }

    /// The nonce count as a number.
    pub fn nc(&self) -> Option<u32> {
        self.nc.and_then(parse_nc)
    }

    /// The response this request should carry for `password`, given the request `method`
    /// (and the body, used only with qop=auth-int).
    pub fn expected_response(&self, password: &[u8], method: &[u8], body: &[u8]) -> DigestHex {
        expected_response(
            self.algorithm(),
            self.username,
            self.realm,
            password,
            &self.response_params(method, body),
        )
    }

    /// The per-request inputs of the response hash.
    pub fn response_params<'b>(&'b self, method: &'b [u8], body: &'b [u8]) -> ResponseParams<'b> {
        ResponseParams {
            method,
            uri: self.uri,
            nonce: self.nonce,
            nc: self.nc.unwrap_or(&[]),
            cnonce: self.cnonce.unwrap_or(&[]),
            qop: self.qop,
            body,
        }
    }

    /// Constant-time check of the client's response against `expected`.
    pub fn response_matches(&self, expected: &DigestHex) -> bool {
        ct_eq_hex(expected.as_bytes(), self.response)
    }

    /// Writes the value (`Digest username="…", realm="…", …`).
    pub fn write_value(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(b"Digest username=");
        write_quoted(buf, self.username);
        for (name, v) in [
            (&b", realm="[..], self.realm),
            (b", nonce=", self.nonce),
            (b", uri=", self.uri),
            (b", response=", self.response),
        ] {
            buf.extend_from_slice(name);
            write_quoted(buf, v);
        }
        if let Some(a) = self.algorithm {
            buf.extend_from_slice(b", algorithm=");
            buf.extend_from_slice(a);
        }
        if let Some(c) = self.cnonce {
            buf.extend_from_slice(b", cnonce=");
            write_quoted(buf, c);
        }
        if let Some(o) = self.opaque {
            buf.extend_from_slice(b", opaque=");
            write_quoted(buf, o);
        }
        if let Some(q) = self.qop {
            buf.extend_from_slice(b", qop=");
            buf.extend_from_slice(q);
        }
        if let Some(nc) = self.nc {
            buf.extend_from_slice(b", nc=");
            buf.extend_from_slice(nc);
        }
    }
}

/// `nc-value = 8LHEX`.
fn parse_nc(v: &[u8]) -> Option<u32> {
    if v.len() != 8 {
        return None;
    }
    let s = std::str::from_utf8(v).ok()?;
    if !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(s, 16).ok()
}

// ---------------------------------------------------------------------------------------
// Response computation
// ---------------------------------------------------------------------------------------

/// A lowercase hex digest (32 chars for MD5, 64 for SHA-256) without heap allocation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct DigestHex {
    buf: [u8; 64],
    len: u8,
}

impl DigestHex {
    /// The hex digits.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }

    /// The hex digits as text.
    pub fn as_str(&self) -> &str {
        // Only ever filled with ASCII hex digits.
        std::str::from_utf8(self.as_bytes()).unwrap_or("")
    }

    /// The empty digest returned for [`Algorithm::Unknown`]; it matches no response.
    fn empty() -> Self {
        DigestHex {
            buf: [0; 64],
            len: 0,
        }
    }
}

impl std::fmt::Debug for DigestHex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DigestHex({})", self.as_str())
    }
}

impl std::fmt::Display for DigestHex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Hashes `parts` joined by `:` and hex-encodes the result.
fn hash_joined<D: Digest>(parts: &[&[u8]]) -> DigestHex {
    let mut h = D::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h.update(b":");
        }
        h.update(p);
    }
    let out = h.finalize();
    let mut d = DigestHex::empty();
    let n = out.len() * 2;
    if let Some(dst) = d.buf.get_mut(..n) {
        if hex::encode_to_slice(out, dst).is_ok() {
            d.len = n as u8;
        }
    }
    d
}

fn hash(alg: Algorithm, parts: &[&[u8]]) -> DigestHex {
    match alg {
        Algorithm::Md5 | Algorithm::Md5Sess => hash_joined::<Md5>(parts),
        Algorithm::Sha256 | Algorithm::Sha256Sess => hash_joined::<Sha256>(parts),
        Algorithm::Sha512_256 | Algorithm::Sha512_256Sess => hash_joined::<Sha512_256>(parts),
        Algorithm::Unknown => DigestHex::empty(),
    }
}

/// The per-request inputs of a digest response.
#[derive(Debug, Clone, Copy)]
pub struct ResponseParams<'a> {
    /// The request's method, as hashed into HA2.
    pub method: &'a [u8],
    /// The `uri` parameter of the credentials, as sent.
    pub uri: &'a [u8],
    /// The nonce the credentials answer.
    pub nonce: &'a [u8],
    /// Nonce count as sent (8 hex digits); unused without qop.
    pub nc: &'a [u8],
    /// Unused without qop (and for non-sess algorithms without qop).
    pub cnonce: &'a [u8],
    /// `None` for RFC 2069 compatibility (no qop).
    pub qop: Option<&'a [u8]>,
    /// Message body, hashed only for `qop=auth-int`.
    pub body: &'a [u8],
}

/// HA1 = H(username:realm:password). Registrars often store this instead of passwords.
pub(crate) fn ha1(alg: Algorithm, username: &[u8], realm: &[u8], password: &[u8]) -> DigestHex {
    hash(alg, &[username, realm, password])
}

/// The response from a stored (non-sess) HA1. For `-sess` algorithms, HA1 is first
/// rehashed with the nonce and cnonce (RFC 7616 §3.4.2).
pub(crate) fn response_from_ha1(alg: Algorithm, ha1: &[u8], p: &ResponseParams<'_>) -> DigestHex {
    let sess;
    let ha1 = if alg.is_sess() {
        sess = hash(alg, &[ha1, p.nonce, p.cnonce]);
        sess.as_bytes()
    } else {
        ha1
    };
    let ha2 = match p.qop {
        Some(q) if eq_ignore_case(q, b"auth-int") => {
            let hb = hash(alg, &[p.body]);
            hash(alg, &[p.method, p.uri, hb.as_bytes()])
        }
        _ => hash(alg, &[p.method, p.uri]),
    };
    match p.qop {
        Some(q) => hash(alg, &[ha1, p.nonce, p.nc, p.cnonce, q, ha2.as_bytes()]),
        None => hash(alg, &[ha1, p.nonce, ha2.as_bytes()]),
    }
}

/// The expected response for a cleartext password.
pub fn expected_response(
    alg: Algorithm,
    username: &[u8],
    realm: &[u8],
    password: &[u8],
    p: &ResponseParams<'_>,
) -> DigestHex {
    let h = ha1(alg, username, realm, password);
    response_from_ha1(alg, h.as_bytes(), p)
}

/// Constant-time equality (time depends only on the lengths).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Constant-time comparison of an expected lowercase hex digest with a client's response,
/// ignoring the case of the client's hex letters. An empty `expected` never matches.
pub fn ct_eq_hex(expected: &[u8], client: &[u8]) -> bool {
    if expected.is_empty() || expected.len() != client.len() {
        return false;
    }
    // Folding ASCII letters to lowercase with `| 0x20` is branch-free; it also maps some
    // non-hex bytes together, but those can never equal a lowercase hex digit.
    let diff = expected.iter().zip(client).fold(0u8, |acc, (&x, &y)| {
        let y = if y.is_ascii_uppercase() { y | 0x20 } else { y };
        acc | (x ^ y)
    });
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC2617_AUTH: &[u8] = br#"Digest username="Mufasa",
                 realm="testrealm@host.com",
                 nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
                 uri="/dir/index.html",
                 qop=auth,
                 nc=00000001,
                 cnonce="0a4f113b",
                 response="6629fae49393a05397450978507c4ef1",
                 opaque="5ccc069c403ebaf9f0171e9517f40e41""#;

    #[test]
    fn rfc2617_example() {
        let c = Credentials::parse(RFC2617_AUTH).unwrap();
        assert_eq!(c.username, b"Mufasa");
        assert_eq!(c.nc(), Some(1));
        assert_eq!(c.algorithm(), Algorithm::Md5);
        let exp = c.expected_response(b"Circle Of Life", b"GET", b"");
        assert_eq!(exp.as_str(), "6629fae49393a05397450978507c4ef1");
        assert!(c.response_matches(&exp));
        let wrong = c.expected_response(b"circle of life", b"GET", b"");
        assert!(!c.response_matches(&wrong));
        // Stored-HA1 path gives the same.
        let h = ha1(
            Algorithm::Md5,
            b"Mufasa",
            b"testrealm@host.com",
            b"Circle Of Life",
        );
        let r = response_from_ha1(
            Algorithm::Md5,
            h.as_bytes(),
            &c.response_params(b"GET", b""),
        );
        assert_eq!(r, exp);
    }

    #[test]
    fn rfc7616_sha256_example() {
        let v = br#"Digest username="Mufasa",
       realm="http-auth@example.org",
       uri="/dir/index.html",
       algorithm=SHA-256,
       nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
       nc=00000001,
       cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
       qop=auth,
       response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
       opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#;
        let c = Credentials::parse(v).unwrap();
        assert_eq!(c.algorithm(), Algorithm::Sha256);
        let exp = c.expected_response(b"Circle of Life", b"GET", b"");
        assert_eq!(
            exp.as_str(),
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
        assert!(c.response_matches(&exp));
        // RFC 7616 §3.9.1 MD5 variant of the same exchange.
        let md5 = expected_response(
            Algorithm::Md5,
            b"Mufasa",
            b"http-auth@example.org",
            b"Circle of Life",
            &c.response_params(b"GET", b""),
        );
        assert_eq!(md5.as_str(), "8ca523f5e9506fed4657c9700eebdbec");
    }

    #[test]
    fn no_qop_and_sess() {
        // RFC 2069 style: H(HA1:nonce:HA2).
        let p = ResponseParams {
            method: b"REGISTER",
            uri: b"sip:example.com",
            nonce: b"abc",
            nc: b"",
            cnonce: b"",
            qop: None,
            body: b"",
        };
        let h1 = ha1(Algorithm::Md5, b"u", b"r", b"p");
        let ha2 = hash(Algorithm::Md5, &[b"REGISTER", b"sip:example.com"]);
        let want = hash(Algorithm::Md5, &[h1.as_bytes(), b"abc", ha2.as_bytes()]);
        assert_eq!(
            expected_response(Algorithm::Md5, b"u", b"r", b"p", &p),
            want
        );
        // -sess differs from plain, and Unknown never verifies.
        let s = expected_response(Algorithm::Md5Sess, b"u", b"r", b"p", &p);
        assert_ne!(s, want);
        let unk = expected_response(Algorithm::Unknown, b"u", b"r", b"p", &p);
        assert!(!ct_eq_hex(unk.as_bytes(), b""));
        assert_eq!(
            expected_response(Algorithm::Sha256Sess, b"u", b"r", b"p", &p)
                .as_bytes()
                .len(),
            64
        );
    }

    #[test]
    fn challenge_parse_and_format() {
        let v = br#"Digest realm="atlanta.com", domain="sip:ss1.carrier.com", qop="auth,auth-int", nonce="f84f1cec41e6cbe5aea9c8e88d359", opaque="", stale=FALSE, algorithm=MD5"#;
        let c = Challenge::parse(v).unwrap();
        assert_eq!(c.realm, b"atlanta.com");
        assert_eq!(c.domain, Some(&b"sip:ss1.carrier.com"[..]));
        assert_eq!(c.opaque, Some(&b""[..]));
        assert!(!c.stale);
        assert!(c.offers_auth());
        assert_eq!(c.qop_options().count(), 2);
        assert_eq!(c.algorithm(), Algorithm::Md5);
        let mut buf = Vec::new();
        let out = Challenge {
            realm: b"trunk.example.net",
            nonce: b"5f1c2a",
            qop: Some(b"auth"),
            algorithm: Some(b"MD5"),
            ..Default::default()
        };
        out.write_header(&mut buf, true);
        assert_eq!(
            buf,
            b"Proxy-Authenticate: Digest realm=\"trunk.example.net\", nonce=\"5f1c2a\", qop=\"auth\", algorithm=MD5\r\n"
        );
        let mut v = Vec::new();
        out.write_value(&mut v);
        assert_eq!(Challenge::parse(&v).unwrap(), out);
        assert_eq!(
            Algorithm::from_param(Some(b"sha-256-SESS")),
            Algorithm::Sha256Sess
        );
    }

    #[test]
    fn credentials_format_roundtrip() {
        let c = Credentials::parse(RFC2617_AUTH).unwrap();
        let mut buf = Vec::new();
        c.write_value(&mut buf);
        assert_eq!(Credentials::parse(&buf).unwrap(), c);
    }

    #[test]
    fn rejects() {
        for bad in [
            &b""[..],
            b"Basic realm=\"x\"",
            b"NoOneKnowsThisScheme opaque-data=here", // rfc4475 regaut01
            b"Digest",
            b"Digest realm=\"x\"",
            b"Digestrealm=\"x\", nonce=\"y\"",
            b"Digest realm=\"x\", nonce=\"y",
            b"Digest realm=\"x\" nonce=\"y\"",
            b"Digest realm, nonce=\"y\"",
            b"Digest realm=\"x\", nonce=",
        ] {
            assert!(
                Challenge::parse(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let base =
            "Digest username=\"u\", realm=\"r\", nonce=\"n\", uri=\"sip:x\", response=\"00\"";
        assert!(Credentials::parse(base.as_bytes()).is_ok());
        for extra in [", nc=1", ", nc=0000000g", ", nc=\"00000001\"", ", qop=auth"] {
            let v = format!("{base}{extra}");
            assert!(Credentials::parse(v.as_bytes()).is_err(), "{v}");
        }
        assert!(Credentials::parse(b"Digest username=\"u\"").is_err());
        // Commas inside quotes, odd order, case-insensitive names.
        let c = Credentials::parse(
            b"digest URI=\"sip:a,b@x\" , Response=\"00\",nonce=n,REALM=\"r\",username=\"u\"",
        )
        .unwrap();
        assert_eq!(c.uri, b"sip:a,b@x");
        assert_eq!(c.nonce, b"n");
    }

    #[test]
    fn constant_time_compare() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
        assert!(ct_eq_hex(b"0a4f", b"0A4F"));
        assert!(!ct_eq_hex(b"0a4f", b"0a4e"));
        assert!(!ct_eq_hex(b"", b""));
    }
}
