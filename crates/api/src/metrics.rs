//! `GET /metrics` in the Prometheus text format (version 0.0.4), written by hand: a few
//! dozen counters and gauges kept as atomics by their owners need no registry, and the
//! proxy core (which must stay free of HTTP and of a metrics framework) renders its own.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Mutex;

use crate::store::Store;

/// Anything that adds lines to the metrics page (the proxy core, the edge).
pub trait MetricsSource: Send + Sync {
    /// Appends its lines, in Prometheus text format, to `out`.
    fn render(&self, out: &mut String);
}

impl<F: Fn(&mut String) + Send + Sync> MetricsSource for F {
    fn render(&self, out: &mut String) {
        self(out)
    }
}

/// Requests served by the API, by method and status code.
#[derive(Default)]
pub(crate) struct ApiMetrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
}

impl ApiMetrics {
    pub(crate) fn record(&self, method: &str, status: u16) {
        let mut map = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        // Methods outside the usual set are folded so a client cannot grow the map.
        let method = match method {
            "GET" | "HEAD" | "PUT" | "POST" | "PATCH" | "DELETE" | "OPTIONS" => method,
            _ => "other",
        };
        *map.entry((method.to_string(), status)).or_default() += 1;
    }

    fn render(&self, out: &mut String) {
        header(
            out,
            "trunkstore_api_requests_total",
            "counter",
            "Admin API requests by method and status code.",
        );
        let map = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        for ((method, code), n) in map.iter() {
            let _ = writeln!(
                out,
                "trunkstore_api_requests_total{{method=\"{method}\",code=\"{code}\"}} {n}"
            );
        }
    }
}

/// `# HELP` and `# TYPE` lines of one metric family.
pub fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// One sample without labels, with its header.
pub fn single(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    header(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

/// A family with one label, with its header: one sample per `(label value, value)`.
/// Label values are written as they are (the callers' are identifiers, addresses and
/// fixed words: nothing to escape).
pub fn labelled<L: std::fmt::Display, V: std::fmt::Display>(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    label: &str,
    samples: impl IntoIterator<Item = (L, V)>,
) {
    header(out, name, kind, help);
    for (label_value, value) in samples {
        let _ = writeln!(out, "{name}{{{label}=\"{label_value}\"}} {value}");
    }
}

/// Routing index and reload figures.
fn render_store(store: &Store, out: &mut String) {
    let snapshot = store.router().load();
    single(
        out,
        "trunkstore_index_dids",
        "gauge",
        "DIDs in the live routing index.",
        snapshot.did_count(),
    );
    single(
        out,
        "trunkstore_index_routes",
        "gauge",
        "Routes in the live routing index.",
        snapshot.route_count(),
    );
    drop(snapshot);
    let catalog = store.catalog();
    single(
        out,
        "trunkstore_documents",
        "gauge",
        "Connectivity documents loaded.",
        catalog.documents().len(),
    );
    let s = &store.stats;
    header(
        out,
        "trunkstore_reloads_total",
        "counter",
        "Reloads of the connectivity directory by result (unchanged: nothing to do).",
    );
    for (result, n) in [
        ("ok", &s.ok),
        ("failed", &s.failed),
        ("unchanged", &s.unchanged),
    ] {
        let _ = writeln!(
            out,
            "trunkstore_reloads_total{{result=\"{result}\"}} {}",
            n.load(Ordering::Relaxed)
        );
    }
    let secs = s.last_micros.load(Ordering::Relaxed) as f64 / 1e6;
    single(
        out,
        "trunkstore_reload_last_duration_seconds",
        "gauge",
        "Duration of the last reload that built a new index.",
        secs,
    );
}

/// The whole page.
pub(crate) fn render(
    store: &Store,
    api: &ApiMetrics,
    sources: &[std::sync::Arc<dyn MetricsSource>],
) -> String {
    let mut out = String::with_capacity(8192);
    render_store(store, &mut out);
    api.render(&mut out);
    for s in sources {
        s.render(&mut out);
    }
    out
}
