//! Typed model of a connectivity document (connectivity-schema.md), as produced by
//! [`validate_document`](crate::validate_document).
//!
//! Every value here has been validated: ids are safe path components, DIDs are normalised
//! to E.164, IP-auth servers have an address, password servers have credentials, and no
//! string that can reach a SIP message contains CR, LF or NUL. Fields that cascade
//! (DID → server → proxy default) stay `Option` so that the router can tell "not set"
//! from "set to the default"; [`Server::effective`] does the cascade.
//!
//! The exact JSON the document was read from is kept in [`Document::raw`], so unknown
//! fields written by other tools round-trip unchanged.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::OnceLock;

use serde_json::Value;

use crate::numbers::NumberFormat;
use crate::secret::Secret;
use crate::settings::{Timers, Transport};

/// One connectivity document: `<connectivity_dir>/<account_id>/<id>.json`.
///
/// `Debug` leaves out [`raw`](Document::raw), which holds passwords in clear.
#[derive(Clone)]
pub struct Document {
    /// Owning account (the directory name).
    pub account_id: String,
    /// Document id (the file name without `.json`).
    pub id: String,
    /// The file it was loaded from, when it came from disk.
    pub source: Option<PathBuf>,
    /// `name`: human-friendly name of the trunkstore account.
    pub name: Option<String>,
    /// `account`: realm and account-level caller id.
    pub account: Account,
    /// `servers`, in document order.
    pub servers: Vec<Server>,
    raw: RawJson,
}

/// The document's JSON, kept compact: as a `Value` it costs ~150 bytes per DID (an
/// `IndexMap` entry and a `String` key), as text ~20. It is parsed back on the first
/// [`Document::raw`] call (API reads and writes of that one document).
#[derive(Clone)]
struct RawJson {
    /// Compact serialisation; empty when `value` was kept instead.
    text: Box<str>,
    value: OnceLock<Value>,
}

impl RawJson {
    fn new(value: &Value) -> Self {
        if !reparses_exactly(value, 0) {
            return RawJson {
                text: Box::default(),
                value: OnceLock::from(value.clone()),
            };
        }
        let text = serde_json::to_string(value).expect("a Value always serialises");
        RawJson {
            text: text.into_boxed_str(),
            value: OnceLock::new(),
        }
    }

    fn get(&self) -> &Value {
        self.value.get_or_init(|| {
            serde_json::from_str(&self.text).expect("text serialised from a Value parses")
        })
    }
}

/// Would `value` come back identical from its text? Not always for fractional numbers
/// (serde_json's default float parsing may be one ulp off), nor beyond the parser's
/// nesting limit (128); such documents keep their `Value`.
fn reparses_exactly(value: &Value, depth: usize) -> bool {
    const MAX_DEPTH: usize = 100;
    match value {
        Value::Number(n) => !n.is_f64(),
        Value::Array(_) | Value::Object(_) if depth >= MAX_DEPTH => false,
        Value::Array(list) => list.iter().all(|v| reparses_exactly(v, depth + 1)),
        Value::Object(map) => map.values().all(|v| reparses_exactly(v, depth + 1)),
        Value::Null | Value::Bool(_) | Value::String(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn round_trip(value: Value) {
        let raw = RawJson::new(&value);
        assert_eq!(raw.get(), &value);
    }

    #[test]
    fn raw_json_round_trips() {
        round_trip(json!({"z": 1, "a": [true, null, "x\u{1}\"é"], "n": u64::MAX, "m": -5}));
        round_trip(json!({"f": 0.1, "g": 1e300, "h": -0.0, "i": 30.0}));
        let mut deep = json!(1);
        for _ in 0..200 {
            deep = json!([deep]);
        }
        round_trip(deep);
    }

    #[test]
    fn did_options_read_as_call_options() {
        let none = DidOptions::default();
        assert!(!none.is_set());
        assert_eq!(none, CallOptions::default());
        assert_eq!(format!("{none:?}"), format!("{:?}", CallOptions::default()));
        assert!(!DidOptions::from(CallOptions::default()).is_set());
        let delayed = CallOptions {
            delay: Some(3),
            ..CallOptions::default()
        };
        let mut set = DidOptions::from(delayed.clone());
        assert!(set.is_set() && set.delay == Some(3) && set == delayed);
        set.delay = None;
        assert_eq!(set, none);
        let mut grown = DidOptions::from(CallOptions::default());
        grown.timeout = Some(9);
        assert_eq!(grown.timeout, Some(9));
    }

    #[test]
    fn integral_documents_are_kept_as_text() {
        let raw = RawJson::new(&json!({"servers": [{"DIDs": {"+1": {}}}], "n": 5}));
        assert!(!raw.text.is_empty());
        assert!(raw.value.get().is_none());
        let floats = RawJson::new(&json!({"x": 0.5}));
        assert!(floats.text.is_empty());
    }
}

impl Document {
    pub(crate) fn new(
        account_id: String,
        id: String,
        name: Option<String>,
        account: Account,
        servers: Vec<Server>,
        raw: &Value,
    ) -> Self {
        Document {
            account_id,
            id,
            source: None,
            name,
            account,
            servers,
            raw: RawJson::new(raw),
        }
    }

    /// The JSON exactly as it was read or submitted, unknown fields included. This is what
    /// the API returns and writes back.
    pub fn raw(&self) -> &Value {
        self.raw.get()
    }

    /// `<account_id>/<id>.json`, the path relative to the connectivity directory.
    pub(crate) fn relative_path(&self) -> PathBuf {
        crate::files::relative_document_path(&self.account_id, &self.id)
    }
}

impl fmt::Debug for Document {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Document")
            .field("account_id", &self.account_id)
            .field("id", &self.id)
            .field("source", &self.source)
            .field("name", &self.name)
            .field("account", &self.account)
            .field("servers", &self.servers)
            .finish_non_exhaustive()
    }
}

/// `account`: settings for the account as a whole.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Account {
    /// `account.auth_realm`: realm of digest challenges when the From host matches it.
    pub auth_realm: Option<String>,
    /// `account.caller_id` (parts 0..35 characters).
    pub caller_id: Option<CallerId>,
    /// `account.emergency_caller_id` (parts 0..35 characters).
    pub emergency_caller_id: Option<CallerId>,
    /// `account.trunks`: two-way trunks; `None` = unlimited, 0 = no carrier calls.
    pub trunks: Option<u32>,
    /// `account.sip_headers` (not in the schema; the lowest level of §4.4's cascade).
    pub sip_headers: Vec<SipHeader>,
}

/// `caller_id` / `emergency_caller_id`. A part left out is not changed (§5.3).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallerId {
    /// `cid_name`: From display name.
    pub name: Option<String>,
    /// `cid_number`: From user.
    pub number: Option<String>,
}

impl CallerId {
    /// Neither a name nor a number is set.
    pub fn is_empty(&self) -> bool {
        self.name.is_none() && self.number.is_none()
    }
}

/// `servers[]`: one customer PBX.
#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    /// Position in `servers[]` (used in error paths and log lines).
    pub index: usize,
    /// `server_name`, for logs.
    pub name: Option<String>,
    /// `auth`: how the server is recognised and where calls to it go.
    pub auth: Auth,
    /// `options`: call options and the target address fallback.
    pub options: ServerOptions,
    /// `DIDs`, in document order.
    pub dids: Vec<Did>,
}

/// `auth_method` as written in JSON (`password`/`Password` and `IP`/`ip` are synonyms).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthMethod {
    /// Digest authentication.
    Password,
    /// Source-address authentication.
    Ip,
}

impl AuthMethod {
    /// Canonical spelling (`password` / `ip`).
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Password => "password",
            AuthMethod::Ip => "ip",
        }
    }
}

/// `servers[].auth`.
#[derive(Debug, Clone, PartialEq)]
pub enum Auth {
    /// Digest authentication with `auth_user`/`auth_password`. `ip`/`port`, if present, say
    /// where inbound calls go; otherwise the registered contact is used.
    Password {
        /// `auth_user`: digest username.
        user: String,
        /// `auth_password`.
        password: Secret,
        /// `ip`: target address for inbound calls.
        ip: Option<IpAddr>,
        /// `port`: target port for inbound calls.
        port: Option<u16>,
    },
    /// Identified by source address: `ip`, and `port` when given (no port = any port).
    /// `user` (`auth_user`) is optional here and only used by the `username` format.
    Ip {
        /// `ip`: the address calls come from (and go to).
        ip: IpAddr,
        /// `port`: the source port, and the target port.
        port: Option<u16>,
        /// `auth_user`.
        user: Option<String>,
    },
}

impl Auth {
    /// Which of the two methods.
    pub fn method(&self) -> AuthMethod {
        match self {
            Auth::Password { .. } => AuthMethod::Password,
            Auth::Ip { .. } => AuthMethod::Ip,
        }
    }
    /// `auth.ip`, if any (always set for IP auth).
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Auth::Password { ip, .. } => *ip,
            Auth::Ip { ip, .. } => Some(*ip),
        }
    }
    /// `auth.port`, if any.
    pub fn port(&self) -> Option<u16> {
        match self {
            Auth::Password { port, .. } | Auth::Ip { port, .. } => *port,
        }
    }
    /// `auth_user`, if any.
    pub fn user(&self) -> Option<&str> {
        match self {
            Auth::Password { user, .. } => Some(user),
            Auth::Ip { user, .. } => user.as_deref(),
        }
    }
}

/// `servers[].options`: the cascading call options plus the server-only target address.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerOptions {
    /// The options shared with DIDs.
    pub call: CallOptions,
    /// `options.ip`: target host when `auth.ip` is absent.
    pub ip: Option<IpAddr>,
    /// `options.port`: target port when `auth.port` is absent.
    pub port: Option<u16>,
    /// `options.transport` (our extension, issue 17): `udp` (default), `tcp` or `tls`
    /// toward the server.
    pub transport: Option<Transport>,
}

/// Options that exist at server level and (honoured when present) at DID level. `None`
/// means "not set here": look at the next level.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallOptions {
    /// `caller_id`: replaces the From of outbound calls.
    pub caller_id: Option<CallerId>,
    /// Not in the schema at server/DID level, honoured when present (§5.3).
    pub emergency_caller_id: Option<CallerId>,
    /// Seconds to wait before sending the INVITE.
    pub delay: Option<u32>,
    /// Seconds to wait for a non-100 provisional response (>= 1).
    pub progress_timeout: Option<u32>,
    /// Seconds to wait for a 2xx.
    pub timeout: Option<u32>,
    /// `ignore_early_media`: do not relay 183 with SDP.
    pub ignore_early_media: Option<bool>,
    /// `media_handling`.
    pub media_handling: Option<MediaHandling>,
    /// `inbound_format`: Request-URI user format of inbound calls.
    pub inbound_format: Option<NumberFormat>,
    /// Headers added to INVITEs, in document order.
    pub sip_headers: Vec<SipHeader>,
    /// `None` when absent or when the object was empty (an empty failover is "not set").
    pub failover: Option<Failover>,
    /// `force_outbound`: send calls between two DIDs of this proxy out to the carrier.
    pub force_outbound: Option<bool>,
    /// `enabled`: `false` takes the server (or DID) out of service.
    pub enabled: Option<bool>,
}

/// `media_handling`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MediaHandling {
    /// Leave SDP untouched (default).
    #[default]
    Bypass,
    /// Anchor RTP at the proxy's media relay.
    Process,
}

impl MediaHandling {
    /// Canonical spelling (`bypass` / `process`).
    pub fn as_str(self) -> &'static str {
        match self {
            MediaHandling::Bypass => "bypass",
            MediaHandling::Process => "process",
        }
    }
}

/// One header to add: a SIP token name and a value free of CR/LF/NUL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipHeader {
    /// A SIP token.
    pub name: String,
    /// The value, without CR, LF or NUL.
    pub value: String,
}

/// `failover`: at least one of the two is set (an empty object becomes `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failover {
    /// `failover.e164`, normalised (§2).
    pub e164: Option<String>,
    /// `failover.sip`: a `sip:`/`sips:` URI.
    pub sip: Option<String>,
}

/// What a failover does; `e164` wins over `sip` (§4.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailoverTarget<'a> {
    /// Call this E.164 number instead.
    Number(&'a str),
    /// Send the call to this SIP URI instead.
    Uri(&'a str),
}

impl Failover {
    /// The target to use: the number if set, else the URI.
    pub fn target(&self) -> FailoverTarget<'_> {
        match (&self.e164, &self.sip) {
            (Some(n), _) => FailoverTarget::Number(n),
            (None, Some(u)) => FailoverTarget::Uri(u),
            (None, None) => unreachable!("validation never builds an empty failover"),
        }
    }
}

/// One key of `servers[].DIDs`.
#[derive(Debug, Clone, PartialEq)]
pub struct Did {
    /// The key as written in the document (used in error paths).
    pub key: String,
    /// The key normalised to E.164 (§2); unique in the whole system.
    pub number: String,
    /// Reads as a [`CallOptions`] (`did.options.delay`, `did.options == CallOptions::default()`).
    pub options: DidOptions,
    /// `DIDs.<key>.options`: free-form strings (kept, no behaviour attached).
    pub flags: Vec<String>,
}

/// A DID's [`CallOptions`], stored compactly. A `CallOptions` is ~200 bytes and about 95%
/// of DIDs set none, so "no options" is a null pointer instead (a million DIDs take
/// 200 MB less). Dereferences to the options, or to an all-`None` value.
#[derive(Clone, Default)]
pub struct DidOptions(Option<Box<CallOptions>>);

/// What a DID without options reads as.
static NO_OPTIONS: CallOptions = CallOptions {
    caller_id: None,
    emergency_caller_id: None,
    delay: None,
    progress_timeout: None,
    timeout: None,
    ignore_early_media: None,
    media_handling: None,
    inbound_format: None,
    sip_headers: Vec::new(),
    failover: None,
    force_outbound: None,
    enabled: None,
};

impl DidOptions {
    /// Does the DID set any option of its own?
    pub fn is_set(&self) -> bool {
        self.0.is_some()
    }
}

impl From<CallOptions> for DidOptions {
    fn from(options: CallOptions) -> Self {
        DidOptions((options != NO_OPTIONS).then(|| Box::new(options)))
    }
}

impl std::ops::Deref for DidOptions {
    type Target = CallOptions;
    fn deref(&self) -> &CallOptions {
        self.0.as_deref().unwrap_or(&NO_OPTIONS)
    }
}

impl std::ops::DerefMut for DidOptions {
    fn deref_mut(&mut self) -> &mut CallOptions {
        self.0.get_or_insert_with(Box::default)
    }
}

impl PartialEq for DidOptions {
    fn eq(&self, other: &DidOptions) -> bool {
        **self == **other
    }
}

impl PartialEq<CallOptions> for DidOptions {
    fn eq(&self, other: &CallOptions) -> bool {
        **self == *other
    }
}

impl PartialEq<DidOptions> for CallOptions {
    fn eq(&self, other: &DidOptions) -> bool {
        *self == **other
    }
}

impl fmt::Debug for DidOptions {
    /// Exactly as the `CallOptions` it stands for.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// The result of the DID → server → proxy-default cascade for one inbound attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct EffectiveOptions<'a> {
    /// `delay`: seconds before sending the INVITE.
    pub delay: u32,
    /// `progress_timeout`: seconds to wait for a provisional response other than 100.
    pub progress_timeout: u32,
    /// `timeout`: seconds to wait for a 2xx.
    pub timeout: u32,
    /// Do not relay early media.
    pub ignore_early_media: bool,
    /// Relay RTP or leave SDP as it is.
    pub media_handling: MediaHandling,
    /// Request-URI user format towards the PBX.
    pub inbound_format: NumberFormat,
    /// First non-empty failover of DID, then server.
    pub failover: Option<&'a Failover>,
    /// True when the DID *or* its server says so (§5.2).
    pub force_outbound: bool,
    /// False when the server, or the DID, is disabled.
    pub enabled: bool,
}

impl Server {
    /// Is the server enabled (default true)?
    pub fn enabled(&self) -> bool {
        self.options.call.enabled.unwrap_or(true)
    }

    /// Host to send inbound calls to: `auth.ip`, else `options.ip` (§4.2). `None` means
    /// "use the registered contact" (password servers).
    pub fn target_ip(&self) -> Option<IpAddr> {
        self.auth.ip().or(self.options.ip)
    }

    /// Port to send inbound calls to: `auth.port`, else `options.port`, else 5060 (5061
    /// over TLS).
    pub fn target_port(&self) -> u16 {
        let default = self.target_transport().default_port();
        self.auth.port().or(self.options.port).unwrap_or(default)
    }

    /// Transport to send inbound calls over: `options.transport`, else UDP.
    pub fn target_transport(&self) -> Transport {
        self.options.transport.unwrap_or_default()
    }

    /// Looks up one of this server's DIDs by its normalised number.
    pub fn did(&self, number: &str) -> Option<&Did> {
        self.dids.iter().find(|d| d.number == number)
    }

    /// Per-attempt options for a call to `did` (or to the server without a DID), with the
    /// proxy `defaults` as the last level.
    pub fn effective<'a>(
        &'a self,
        did: Option<&'a Did>,
        defaults: &Timers,
    ) -> EffectiveOptions<'a> {
        let s = &self.options.call;
        let d = did.map(|d| &*d.options);
        let pick = |f: fn(&CallOptions) -> Option<u32>, default: u32| {
            d.and_then(f).or(f(s)).unwrap_or(default)
        };
        EffectiveOptions {
            delay: pick(|o| o.delay, defaults.delay),
            progress_timeout: pick(|o| o.progress_timeout, defaults.progress_timeout),
            timeout: pick(|o| o.timeout, defaults.timeout),
            ignore_early_media: d
                .and_then(|o| o.ignore_early_media)
                .or(s.ignore_early_media)
                .unwrap_or(false),
            media_handling: d
                .and_then(|o| o.media_handling)
                .or(s.media_handling)
                .unwrap_or_default(),
            inbound_format: d
                .and_then(|o| o.inbound_format)
                .or(s.inbound_format)
                .unwrap_or_default(),
            failover: d.and_then(|o| o.failover.as_ref()).or(s.failover.as_ref()),
            force_outbound: d.and_then(|o| o.force_outbound).unwrap_or(false)
                || s.force_outbound.unwrap_or(false),
            enabled: self.enabled() && d.and_then(|o| o.enabled).unwrap_or(true),
        }
    }
}

/// Headers for a call: DID level, then server, then account; for the same header name
/// (case-insensitive) the most specific level wins and the others are dropped (§4.4).
pub fn merged_sip_headers<'a>(
    did: Option<&'a Did>,
    server: &'a Server,
    account: &'a Account,
) -> Vec<&'a SipHeader> {
    let levels: [&'a [SipHeader]; 3] = [
        did.map(|d| d.options.sip_headers.as_slice()).unwrap_or(&[]),
        &server.options.call.sip_headers,
        &account.sip_headers,
    ];
    let mut out: Vec<&SipHeader> = Vec::new();
    for (level, headers) in levels.iter().enumerate() {
        // Names already set by a more specific level (earlier in `out`) shadow this level;
        // repeats within one level are all kept (a header may legitimately repeat).
        let shadowed = out.len();
        for h in headers.iter() {
            let taken = out[..shadowed]
                .iter()
                .any(|o| o.name.eq_ignore_ascii_case(&h.name));
            if level == 0 || !taken {
                out.push(h);
            }
        }
    }
    out
}
