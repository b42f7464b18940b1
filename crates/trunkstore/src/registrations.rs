//! The registrar's bindings outside the core: kept in `<data_dir>/registrations.json`
//! across restarts (written atomically whenever they changed), listed by the admin API,
//! counted on `/metrics` (behaviour.md §5.4).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use trunkstore_api::{RegistrationSource, RegistrationView};
use trunkstore_edge::cdr::push_json_string;
use trunkstore_proxy::registrar::Registration;
use trunkstore_proxy::{Peer, Proxy, Transport};

/// How often the bindings are checked for changes to write.
pub const SAVE_EVERY: Duration = Duration::from_secs(2);

/// The file the bindings are kept in.
pub fn file(data_dir: &Path) -> PathBuf {
    data_dir.join("registrations.json")
}

/// Puts back the bindings saved by the last run (those not expired since). A missing file
/// is a first start; an unreadable one is logged and left for the operator (the next
/// save replaces it).
pub fn restore(proxy: &Proxy, path: &Path) {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read saved registrations");
            return;
        }
    };
    let saved = match serde_json::from_str::<Value>(&text) {
        Ok(v) => from_json(&v, unix_now()),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "saved registrations are not JSON: ignored");
            return;
        }
    };
    let n = proxy.restore_registrations(saved, Instant::now());
    tracing::info!(path = %path.display(), bindings = n, "registrations restored");
}

/// Bindings that only got a new expiry are written at most this often: under
/// re-registration load nearly every second brings one, and a binding restored with an
/// older expiry only needs its PBX's next REGISTER sooner.
pub const REFRESHES_SAVED_EVERY: Duration = Duration::from_secs(30);

/// What the file holds: the generations written, and when.
#[derive(Debug, Clone, Copy)]
pub struct Written {
    generation: u64,
    refreshes: u64,
    at: Instant,
}

impl Written {
    /// The state at start (what was restored is what the file holds).
    pub fn now(proxy: &Proxy) -> Written {
        Written {
            generation: proxy.registrations_generation(),
            refreshes: proxy.registrations_refreshes(),
            at: Instant::now(),
        }
    }
}

/// Writes the bindings if one was added, removed or moved since `last`, or only
/// refreshed and `REFRESHES_SAVED_EVERY` has passed; returns what the file holds now.
pub fn save_if_changed(proxy: &Proxy, path: &Path, last: Written) -> Written {
    let current = Written::now(proxy);
    let changed = current.generation != last.generation;
    let refreshed =
        current.refreshes != last.refreshes && last.at.elapsed() >= REFRESHES_SAVED_EVERY;
    if !changed && !refreshed {
        return last;
    }
    match save(proxy, path) {
        Ok(()) => current,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot save registrations");
            last
        }
    }
}

/// Writes every live binding: to a temporary file in the same directory, then renamed
/// over the old one, so a crash leaves either the old file or the new one.
pub fn save(proxy: &Proxy, path: &Path) -> std::io::Result<()> {
    let regs = proxy.registrations(Instant::now());
    let text = to_json_text(&regs, unix_now());
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// This node's live bindings as the text other nodes read (the file's form).
pub fn shared_text(proxy: &Proxy) -> String {
    to_json_text(&proxy.registrations(Instant::now()), unix_now())
}

/// Another node's bindings from its text; anything unreadable is skipped.
pub fn from_shared_text(text: &str) -> Vec<Registration> {
    serde_json::from_str::<Value>(text).map_or_else(|_| Vec::new(), |v| from_json(&v, unix_now()))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The file's text, written directly: with 10,000 bindings a `serde_json::Value` tree
/// (a map per binding) cost more than everything else the registrar does under load.
fn to_json_text(regs: &[Registration], now_unix: u64) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(64 + regs.len() * 256);
    out.push_str("{\"version\":1,\"bindings\":[");
    for (i, r) in regs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('{');
        for (key, value) in [
            ("account", r.account.as_str()),
            ("server", r.server.as_str()),
            ("aor", r.aor.as_str()),
            ("contact", r.contact.as_str()),
            ("source", source_text(r.source).as_str()),
            ("call_id", r.call_id.as_str()),
        ] {
            let _ = write!(out, "\"{key}\":");
            push_json_string(&mut out, value);
            out.push(',');
        }
        out.push_str("\"user_agent\":");
        match &r.user_agent {
            Some(ua) => push_json_string(&mut out, ua),
            None => out.push_str("null"),
        }
        let _ = write!(
            out,
            ",\"expires_at\":{},\"cseq\":{}}}",
            now_unix + r.expires_in.as_secs(),
            r.cseq
        );
    }
    out.push_str("]}");
    out
}

/// The file's form: expiries as absolute unix seconds, so time spent stopped counts.
#[cfg(test)]
fn to_json(regs: &[Registration], now_unix: u64) -> Value {
    let bindings: Vec<Value> = regs
        .iter()
        .map(|r| {
            serde_json::json!({
                "account": r.account,
                "server": r.server,
                "aor": r.aor,
                "contact": r.contact,
                "source": source_text(r.source),
                "user_agent": r.user_agent,
                "expires_at": now_unix + r.expires_in.as_secs(),
                "call_id": r.call_id,
                "cseq": r.cseq,
            })
        })
        .collect();
    serde_json::json!({"version": 1, "bindings": bindings})
}

fn from_json(v: &Value, now_unix: u64) -> Vec<Registration> {
    let Some(list) = v.get("bindings").and_then(Value::as_array) else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|b| binding_from_json(b, now_unix))
        .collect()
}

fn binding_from_json(b: &Value, now_unix: u64) -> Option<Registration> {
    let text = |k: &str| b.get(k).and_then(Value::as_str).map(str::to_string);
    let expires_at = b.get("expires_at")?.as_u64()?;
    Some(Registration {
        account: text("account")?,
        server: text("server")?,
        aor: text("aor")?,
        contact: text("contact")?,
        source: parse_source(&text("source")?)?,
        user_agent: text("user_agent"),
        expires_in: Duration::from_secs(expires_at.saturating_sub(now_unix)),
        nat: false,
        call_id: text("call_id")?,
        cseq: u32::try_from(b.get("cseq")?.as_u64()?).ok()?,
    })
}

/// `udp:127.0.0.7:5060` (IPv6: `udp:[::1]:5060`).
fn source_text(p: Peer) -> String {
    format!("{}:{}", transport_text(p.transport), p.addr)
}

fn transport_text(t: Transport) -> &'static str {
    match t {
        Transport::Udp => "udp",
        Transport::Tcp => "tcp",
        Transport::Tls => "tls",
    }
}

fn parse_source(s: &str) -> Option<Peer> {
    let (t, addr) = s.split_once(':')?;
    let transport = match t {
        "udp" => Transport::Udp,
        "tcp" => Transport::Tcp,
        "tls" => Transport::Tls,
        _ => return None,
    };
    Some(Peer {
        transport,
        addr: addr.parse::<SocketAddr>().ok()?,
    })
}

/// The admin API's view of the bindings.
pub struct Source(pub Arc<Proxy>);

impl RegistrationSource for Source {
    fn registrations(&self, account: &str) -> Vec<RegistrationView> {
        self.0
            .registrations(Instant::now())
            .into_iter()
            .filter(|r| r.account == account)
            .map(|r| RegistrationView {
                server: r.server,
                aor: r.aor,
                contact: r.contact,
                source: source_text(r.source),
                transport: transport_text(r.source.transport).to_string(),
                user_agent: r.user_agent,
                expires_in: r.expires_in.as_secs(),
                nat: r.nat,
            })
            .collect()
    }
}

/// `trunkstore_registrar_bindings{account="..."}`. Account ids are path-safe identifiers.
pub fn render_metrics(proxy: &Proxy, out: &mut String) {
    trunkstore_api::metrics::labelled(
        out,
        "trunkstore_registrar_bindings",
        "gauge",
        "Live registrar bindings per account.",
        "account",
        proxy.bindings_by_account(Instant::now()),
    );
    trunkstore_api::metrics::single(
        out,
        "trunkstore_registrar_remote_bindings",
        "gauge",
        "Live bindings made on the other nodes of the cluster, reachable through this one.",
        proxy.remote_registrations(Instant::now()),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reg(expires_in: u64) -> Registration {
        Registration {
            account: "acme".into(),
            server: "office".into(),
            aor: "office1@acme.example".into(),
            contact: "sip:office1@192.168.1.20:5080".into(),
            source: Peer {
                transport: Transport::Tcp,
                addr: "[::1]:5062".parse().unwrap(),
            },
            user_agent: Some("PBX".into()),
            expires_in: Duration::from_secs(expires_in),
            nat: false,
            call_id: "c1".into(),
            cseq: 7,
        }
    }

    #[test]
    fn time_stopped_counts_against_the_expiry() {
        let v = to_json(&[reg(600)], 1_000_000);
        assert_eq!(v["bindings"][0]["source"], "tcp:[::1]:5062");
        let back = from_json(&v, 1_000_100);
        assert_eq!(back, vec![reg(500)]);
        let expired = from_json(&v, 1_000_700);
        assert_eq!(expired[0].expires_in, Duration::ZERO, "the core skips it");
    }

    #[test]
    fn the_written_text_is_the_json_form() {
        let mut odd = reg(600);
        odd.user_agent = Some("PBX \"7\" \\ \u{1}".into());
        let regs = [odd, reg(30)];
        let text = to_json_text(&regs, 1_000_000);
        let parsed: Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(parsed, to_json(&regs, 1_000_000));
        assert_eq!(from_json(&parsed, 1_000_000), regs.to_vec());
        let empty: Value = serde_json::from_str(&to_json_text(&[], 0)).unwrap();
        assert_eq!(empty["bindings"], json!([]));
    }

    #[test]
    fn unreadable_entries_are_skipped() {
        let v = json!({"bindings": [{"aor": "x"}, {"source": "sctp:1.2.3.4:5"}]});
        assert!(from_json(&v, 0).is_empty());
        assert!(from_json(&json!([]), 0).is_empty());
    }
}
