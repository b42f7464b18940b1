//! Validation of one connectivity document (behaviour.md §1). System-wide rules (a DID
//! claimed twice across documents, IP conflicts with other documents and carriers) live in
//! [`Catalog`](crate::Catalog).

use std::net::IpAddr;

use serde_json::{json, Map, Value};

use crate::claims::Claims;
use crate::document::*;
use crate::error::ValidationErrors;
use crate::ids;
use crate::numbers::{self, NumberFormat};
use crate::secret::Secret;
use crate::syntax::{is_sip_token, is_sip_uri, MAX_TIMER_SECS};
use crate::walk::{join, CharRule, Str, Walker};

const AUTH_METHODS: &[(&str, AuthMethod)] = &[
    ("password", AuthMethod::Password),
    ("Password", AuthMethod::Password),
    ("IP", AuthMethod::Ip),
    ("ip", AuthMethod::Ip),
];
const INBOUND_FORMATS: &[(&str, NumberFormat)] = &[
    ("e164", NumberFormat::E164),
    ("npan", NumberFormat::Npan),
    ("1npan", NumberFormat::OneNpan),
    ("username", NumberFormat::Username),
];
const MEDIA_HANDLING: &[(&str, MediaHandling)] = &[
    ("process", MediaHandling::Process),
    ("bypass", MediaHandling::Bypass),
];

/// RFC 3261 `user` characters (unreserved, user-unreserved, `%` escapes): an `auth_user`
/// is used as a Request-URI user (`username` format) and inside quoted digest parameters,
/// so quotes, spaces, `@`, `:` and `<>` are refused.
fn is_sip_user(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.!~*'()&=+$,;?/%".contains(&b))
}

/// A caller-id number goes in the From user: digits, `+`, letters (`anonymous`) and the
/// few punctuation marks PBXs use. Nothing that could close the URI.
fn is_cid_number(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"+*#-_.".contains(&b))
}

/// A realm is compared with the From host and quoted in challenges: host characters only.
fn is_realm(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
}

fn is_number(s: &str) -> bool {
    let digits = s.strip_prefix('+').unwrap_or(s);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

const SIP_USER: CharRule = (is_sip_user, "made of SIP URI user characters");
const CID_NUMBER: CharRule = (is_cid_number, "letters, digits and + * # - _ .");
const REALM: CharRule = (is_realm, "a domain name (letters, digits, '-', '.', '_')");
const E164: CharRule = (is_number, "a number: digits with an optional leading '+'");

/// Validates one connectivity document on its own: schema, coercions, DIDs unique within
/// the document and IP-auth servers not sharing an address within it. This is what the
/// REST API runs on every write before the system-level check of
/// [`Catalog::replace`](crate::Catalog::replace).
///
/// `account_id` and `doc_id` must be safe path components ([`ids::is_valid_id`]).
pub fn validate_document(
    account_id: &str,
    doc_id: &str,
    raw: &Value,
) -> Result<Document, ValidationErrors> {
    let mut w = Walker::default();
    check_id(&mut w, "account id", account_id);
    check_id(&mut w, "document id", doc_id);
    let Some(root) = w.object(raw, "") else {
        return Err(w.errors);
    };
    let name = w.opt_string(root, "name", "", Str::ANY);
    let account = Walker::field(root, "account")
        .and_then(|v| w.object(v, "account"))
        .map(|obj| account(&mut w, obj))
        .unwrap_or_default();
    let servers = Walker::field(root, "servers")
        .and_then(|v| w.array(v, "servers"))
        .map(|list| servers(&mut w, list))
        .unwrap_or_default();
    let doc = Document::new(
        account_id.to_string(),
        doc_id.to_string(),
        name,
        account,
        servers,
        raw,
    );
    // Within-document uniqueness uses the same rules as the system-wide check, so a
    // document that passes here can only conflict with *other* documents later.
    let dids = doc.servers.iter().map(|s| s.dids.len()).sum();
    let mut claims = Claims::with_capacity(dids);
    claims.claim_document(&doc, &mut w.errors);
    drop(claims);
    w.errors.into_result(doc)
}

fn check_id(w: &mut Walker, what: &str, id: &str) {
    if !ids::is_valid_id(id) {
        w.error(
            "",
            "pattern",
            format!("Invalid {what}: must match {}", ids::ID_PATTERN),
            Some(json!(ids::ID_PATTERN)),
            Some(json!(id)),
        );
    }
}

fn account(w: &mut Walker, obj: &Map<String, Value>) -> Account {
    let base = "account";
    Account {
        auth_realm: w.opt_string(obj, "auth_realm", base, Str::NON_EMPTY.pattern(REALM)),
        caller_id: caller_id(w, obj, "caller_id", base, 0),
        emergency_caller_id: caller_id(w, obj, "emergency_caller_id", base, 0),
        trunks: w
            .opt_integer(obj, "trunks", base, 0, u32::MAX as i64)
            .map(|n| n as u32),
        sip_headers: sip_headers(w, obj, base),
    }
}

/// `caller_id` objects: parts of `min..=35` characters (0 at account level, 1 below).
fn caller_id(
    w: &mut Walker,
    parent: &Map<String, Value>,
    key: &str,
    base: &str,
    min: usize,
) -> Option<CallerId> {
    let value = Walker::field(parent, key)?;
    let path = join(base, key);
    let obj = w.object(value, &path)?;
    let cid = CallerId {
        name: w.opt_string(obj, "cid_name", &path, Str::len(min, 35)),
        number: w.opt_string(
            obj,
            "cid_number",
            &path,
            Str::len(min, 35).pattern(CID_NUMBER),
        ),
    };
    (!cid.is_empty()).then_some(cid)
}

fn servers(w: &mut Walker, list: &[Value]) -> Vec<Server> {
    // Sized up front: `filter_map` would grow the vector by doubling.
    let mut out = Vec::with_capacity(list.len());
    out.extend(list.iter().enumerate().filter_map(|(i, v)| {
        let path = join("servers", i);
        let obj = w.object(v, &path)?;
        server(w, i, obj, &path)
    }));
    out
}

fn server(w: &mut Walker, index: usize, obj: &Map<String, Value>, path: &str) -> Option<Server> {
    let name = w.opt_string(obj, "name", path, Str::NON_EMPTY);
    let auth = auth(w, obj, path);
    let options = Walker::field(obj, "options")
        .and_then(|v| w.object(v, &join(path, "options")))
        .map(|o| server_options(w, o, &join(path, "options")))
        .unwrap_or_default();
    let dids = Walker::field(obj, "DIDs")
        .and_then(|v| w.object(v, &join(path, "DIDs")))
        .map(|o| dids(w, o, &join(path, "DIDs")))
        .unwrap_or_default();
    Some(Server {
        index,
        name,
        auth: auth?,
        options,
        dids,
    })
}

fn ip_addr(w: &mut Walker, obj: &Map<String, Value>, key: &str, base: &str) -> Option<IpAddr> {
    let path = join(base, key);
    let s = w.string(Walker::field(obj, key)?, &path, Str::NON_EMPTY)?;
    match s.parse::<IpAddr>() {
        Ok(ip) => Some(ip),
        Err(_) => {
            w.error(
                &path,
                "format",
                "Value must be an IPv4 or IPv6 address",
                Some(json!("ipv4 or ipv6")),
                Some(json!(s)),
            );
            None
        }
    }
}

fn port(w: &mut Walker, obj: &Map<String, Value>, key: &str, base: &str) -> Option<u16> {
    w.opt_integer(obj, key, base, 1, 65535).map(|p| p as u16)
}

fn auth(w: &mut Walker, server: &Map<String, Value>, base: &str) -> Option<Auth> {
    let path = join(base, "auth");
    let Some(v) = Walker::field(server, "auth") else {
        w.required(&path);
        return None;
    };
    let obj = w.object(v, &path)?;
    let method = match Walker::field(obj, "auth_method") {
        Some(m) => w.enumeration(m, &join(&path, "auth_method"), AUTH_METHODS),
        None => {
            w.required(&join(&path, "auth_method"));
            None
        }
    };
    let user = w.opt_string(obj, "auth_user", &path, Str::NON_EMPTY.pattern(SIP_USER));
    let password = w.opt_string(obj, "auth_password", &path, Str::NON_EMPTY.secret());
    let ip = ip_addr(w, obj, "ip", &path);
    let port = port(w, obj, "port", &path);
    // A field that is present but invalid already has its own error; only report
    // `required` when it is really absent.
    let require = |w: &mut Walker, key: &str, got: bool| {
        if !got && Walker::field(obj, key).is_none() {
            w.required(&join(&path, key));
        }
        got
    };
    match method? {
        AuthMethod::Password => {
            let has_user = require(w, "auth_user", user.is_some());
            let has_password = require(w, "auth_password", password.is_some());
            (has_user && has_password).then(|| Auth::Password {
                user: user.unwrap(),
                password: Secret::new(password.unwrap()),
                ip,
                port,
            })
        }
        AuthMethod::Ip => require(w, "ip", ip.is_some()).then(|| Auth::Ip {
            ip: ip.unwrap(),
            port,
            user,
        }),
    }
}

fn server_options(w: &mut Walker, obj: &Map<String, Value>, path: &str) -> ServerOptions {
    ServerOptions {
        call: call_options(w, obj, path),
        ip: ip_addr(w, obj, "ip", path),
        port: port(w, obj, "port", path),
        transport: Walker::field(obj, "transport").and_then(|v| {
            w.enumeration(
                v,
                &join(path, "transport"),
                &[
                    ("udp", crate::Transport::Udp),
                    ("tcp", crate::Transport::Tcp),
                    ("tls", crate::Transport::Tls),
                ],
            )
        }),
    }
}

/// Options shared by server and DID level (the DID level is honoured when present, so it
/// is validated by the same rules).
fn call_options(w: &mut Walker, obj: &Map<String, Value>, path: &str) -> CallOptions {
    let timer = |w: &mut Walker, key: &str, min: i64| {
        w.opt_integer(obj, key, path, min, MAX_TIMER_SECS)
            .map(|n| n as u32)
    };
    CallOptions {
        caller_id: caller_id(w, obj, "caller_id", path, 1),
        emergency_caller_id: caller_id(w, obj, "emergency_caller_id", path, 1),
        delay: timer(w, "delay", 0),
        progress_timeout: timer(w, "progress_timeout", 1),
        timeout: timer(w, "timeout", 0),
        ignore_early_media: w.opt_bool(obj, "ignore_early_media", path),
        media_handling: Walker::field(obj, "media_handling")
            .and_then(|v| w.enumeration(v, &join(path, "media_handling"), MEDIA_HANDLING)),
        inbound_format: Walker::field(obj, "inbound_format")
            .and_then(|v| w.enumeration(v, &join(path, "inbound_format"), INBOUND_FORMATS)),
        sip_headers: sip_headers(w, obj, path),
        failover: failover(w, obj, path),
        force_outbound: w.opt_bool(obj, "force_outbound", path),
        enabled: w.opt_bool(obj, "enabled", path),
    }
}

fn failover(w: &mut Walker, parent: &Map<String, Value>, base: &str) -> Option<Failover> {
    let value = Walker::field(parent, "failover")?;
    let path = join(base, "failover");
    let obj = w.object(value, &path)?;
    let e164 = w
        .opt_string(obj, "e164", &path, Str::NON_EMPTY.pattern(E164))
        .map(|n| numbers::normalize(&n).into_owned());
    let sip = w
        .opt_string(obj, "sip", &path, Str::NON_EMPTY)
        .filter(|uri| sip_uri_format(w, &join(&path, "sip"), uri));
    (e164.is_some() || sip.is_some()).then_some(Failover { e164, sip })
}

/// A failover URI is a `format` (JSON-schema `uri` style) rather than a `pattern` error.
fn sip_uri_format(w: &mut Walker, path: &str, uri: &str) -> bool {
    let ok = is_sip_uri(uri);
    if !ok {
        w.error(
            path,
            "format",
            "Value must be a sip: or sips: URI (sip:user@host)",
            Some(json!("sip-uri")),
            Some(json!(uri)),
        );
    }
    ok
}

/// `sip_headers`: the schema's array of `{name: value}` objects, or one object (§1).
fn sip_headers(w: &mut Walker, parent: &Map<String, Value>, base: &str) -> Vec<SipHeader> {
    let Some(value) = Walker::field(parent, "sip_headers") else {
        return Vec::new();
    };
    let path = join(base, "sip_headers");
    let mut out = Vec::new();
    match value {
        Value::Object(obj) => header_object(w, obj, &path, &mut out),
        Value::Array(list) => {
            for (i, item) in list.iter().enumerate() {
                let item_path = join(&path, i);
                if let Some(obj) = w.object(item, &item_path) {
                    header_object(w, obj, &item_path, &mut out);
                }
            }
        }
        other => w.type_error(&path, "array", other),
    }
    out
}

fn header_object(w: &mut Walker, obj: &Map<String, Value>, path: &str, out: &mut Vec<SipHeader>) {
    for (name, value) in obj {
        let header_path = join(path, name);
        if !is_sip_token(name) || crate::walk::has_forbidden_chars(name) {
            w.error(
                &header_path,
                "pattern",
                "Header name must be a SIP token",
                Some(json!("SIP token")),
                Some(json!(name)),
            );
            continue;
        }
        // Booleans are accepted as header values too ("X-Flag": true reads naturally).
        let value = match value {
            Value::Bool(b) => Some(b.to_string()),
            v => w.string(v, &header_path, Str::ANY),
        };
        if let Some(value) = value {
            out.push(SipHeader {
                name: name.clone(),
                value: value.trim().to_string(),
            });
        }
    }
}

/// DID keys: `^\+?\d*$` per the schema, and at least one digit (an empty key would be a
/// DID nobody can dial).
fn is_did_key(key: &str) -> bool {
    is_number(key)
}

fn dids(w: &mut Walker, obj: &Map<String, Value>, path: &str) -> Vec<Did> {
    let mut out = Vec::with_capacity(obj.len());
    for (key, value) in obj {
        if let Some(did) = did(w, key, value, path) {
            out.push(did);
        }
    }
    out
}

/// One `DIDs` member. Most DIDs have no options (`{}` or `null`): they are built without
/// formatting their path, which is only needed for an error or an option to check.
fn did(w: &mut Walker, key: &str, value: &Value, path: &str) -> Option<Did> {
    let no_options = match value {
        Value::Null => true,
        Value::Object(opts) => opts.is_empty(),
        _ => false,
    };
    if no_options && is_did_key(key) {
        return Some(Did {
            key: key.to_string(),
            number: numbers::normalize(key).into_owned(),
            options: DidOptions::default(),
            flags: Vec::new(),
        });
    }
    let did_path = join(path, key);
    if !is_did_key(key) {
        w.error(
            &did_path,
            "pattern",
            "DID must be digits with an optional leading '+'",
            Some(json!("^\\+?\\d+$")),
            Some(json!(key)),
        );
        return None;
    }
    let opts = w.object(value, &did_path)?;
    Some(Did {
        key: key.to_string(),
        number: numbers::normalize(key).into_owned(),
        options: call_options(w, opts, &did_path).into(),
        flags: did_flags(w, opts, &did_path),
    })
}

fn did_flags(w: &mut Walker, obj: &Map<String, Value>, base: &str) -> Vec<String> {
    let Some(value) = Walker::field(obj, "options") else {
        return Vec::new();
    };
    let path = join(base, "options");
    let Some(list) = w.array(value, &path) else {
        return Vec::new();
    };
    list.iter()
        .enumerate()
        .filter_map(|(i, v)| w.string(v, &join(&path, i), Str::ANY))
        .collect()
}
