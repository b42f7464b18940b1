//! Settings and connectivity documents written by each test into its own directory
//! (format: config/README.md). Everything points at loopback ports of that test only.

use std::fs;
use std::path::PathBuf;

use serde_json::{json, Map, Value};

use crate::harness::TestDir;

/// The account directory every test document goes into.
const ACCOUNT: &str = "e2e";

/// One IP-auth PBX (a SIPp UAS) at 127.0.0.1:`port` with its DIDs.
pub struct Pbx {
    pub name: &'static str,
    pub port: u16,
    /// `inbound_format`: "e164", "npan", "1npan" or "username".
    pub format: &'static str,
    /// `auth.auth_user`, what the "username" format sends.
    pub auth_user: Option<&'static str>,
    pub dids: Vec<String>,
    /// `options.failover.sip`, tried once when this PBX fails (behaviour.md 4.8).
    pub failover_sip: Option<String>,
    /// More `options` (timers, failover, enabled, sip_headers...), merged over the above.
    pub options: Map<String, Value>,
    /// Options of every DID of this PBX (DID level of the cascade).
    pub did_options: Map<String, Value>,
}

impl Pbx {
    pub fn new(name: &'static str, port: u16, format: &'static str, dids: Vec<String>) -> Pbx {
        Pbx {
            name,
            port,
            format,
            auth_user: None,
            dids,
            failover_sip: None,
            options: Map::new(),
            did_options: Map::new(),
        }
    }

    fn to_json(&self) -> Value {
        let mut auth = json!({"auth_method": "IP", "ip": "127.0.0.1", "port": self.port});
        if let Some(user) = self.auth_user {
            auth["auth_user"] = json!(user);
        }
        let mut options = json!({"inbound_format": self.format});
        if let Some(uri) = &self.failover_sip {
            options["failover"] = json!({"sip": uri});
        }
        for (k, v) in &self.options {
            options[k] = v.clone();
        }
        let did_options = Value::Object(self.did_options.clone());
        let dids: Map<String, Value> = self
            .dids
            .iter()
            .map(|d| (d.clone(), did_options.clone()))
            .collect();
        json!({
            "name": self.name,
            "auth": auth,
            "options": options,
            "DIDs": dids,
        })
    }
}

/// The proxy side of a test: where it listens and which carrier source it trusts.
pub struct ProxySetup {
    /// UDP and TCP listen port (same number).
    pub port: u16,
    /// The trusted carrier source port on 127.0.0.1 (exact `ip:port`, so any other
    /// loopback port is an unknown source).
    pub carrier_port: u16,
    /// The admin API must not clash with other tests' proxies either.
    pub api_port: u16,
    /// More settings (timers, failover_on, cdr...), merged over the defaults.
    pub extra: Map<String, Value>,
}

/// Writes `trunkstore.json` and `connectivity/e2e/pbx.json` with the document's
/// `account` object (e.g. its `sip_headers`); returns the settings path.
pub fn write_with_account(
    dir: &TestDir,
    proxy: &ProxySetup,
    pbxs: &[Pbx],
    account: Value,
) -> PathBuf {
    let settings = settings_json(proxy);
    let path = dir.file("trunkstore.json");
    write_json(&path, &settings);
    let docs = dir.path().join("connectivity").join(ACCOUNT);
    fs::create_dir_all(&docs).expect("create connectivity dir");
    let servers: Vec<Value> = pbxs.iter().map(Pbx::to_json).collect();
    write_json(
        &docs.join("pbx.json"),
        &json!({"name": "end-to-end", "account": account, "servers": servers}),
    );
    path
}

/// Writes `settings` as `trunkstore.json` and each `(account, document)` as
/// `connectivity/<account>/pbx.json`; returns the settings path.
pub fn write_files(dir: &TestDir, settings: &Value, documents: &[(&str, &Value)]) -> PathBuf {
    let path = dir.file("trunkstore.json");
    write_json(&path, settings);
    for (account, doc) in documents {
        let docs = dir.path().join("connectivity").join(account);
        fs::create_dir_all(&docs).expect("create connectivity dir");
        write_json(&docs.join("pbx.json"), doc);
    }
    path
}

/// The base settings of a test (listeners, the trusted carrier, the API), with
/// `proxy.extra` merged over them.
pub fn settings_json(proxy: &ProxySetup) -> Value {
    let listen = format!("127.0.0.1:{}", proxy.port);
    let mut settings = json!({
        "listen": {"udp": [listen], "tcp": [listen]},
        "advertise": listen,
        "connectivity_dir": "connectivity",
        "carriers": [{
            "name": "e2e-carrier",
            "gateways": [{"host": "127.0.0.1", "port": proxy.carrier_port, "transport": "udp"}],
            "sources": [format!("127.0.0.1:{}", proxy.carrier_port)],
        }],
        "api": {"listen": format!("127.0.0.1:{}", proxy.api_port), "tokens": []},
        "log": {"level": "info", "format": "text"},
    });
    for (k, v) in &proxy.extra {
        settings[k] = v.clone();
    }
    settings
}

fn write_json(path: &std::path::Path, value: &Value) {
    let text = serde_json::to_string_pretty(value).expect("serialise json");
    fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// `count` consecutive NANP DIDs in E.164 from +1415555`first`.
pub fn dids(first: u32, count: u32) -> Vec<String> {
    (first..first + count)
        .map(|n| format!("+1415555{n:04}"))
        .collect()
}
