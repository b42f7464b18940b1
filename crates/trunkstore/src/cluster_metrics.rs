//! This node's cluster figures on `/metrics` (behaviour.md §9.2, issue 18 item 6).

use std::fmt::Write;
use std::sync::Arc;

use trunkstore_api::metrics::{header, labelled, single};
use trunkstore_api::MetricsSource;
use trunkstore_cluster::{RoundTrips, ROUND_TRIP_BUCKETS_US};
use trunkstore_edge::ClusterMetrics;
use trunkstore_proxy::Proxy;

/// Redis round trips, errors, renewals and this node's trunk holds.
pub(crate) struct ClusterSource {
    pub(crate) proxy: Arc<Proxy>,
    pub(crate) metrics: Arc<ClusterMetrics>,
}

impl MetricsSource for ClusterSource {
    fn render(&self, out: &mut String) {
        let trips = self.metrics.round_trips().unwrap_or_default();
        let trips = &*trips;
        render_round_trips(out, trips);
        labelled(
            out,
            "trunkstore_cluster_redis_errors_total",
            "counter",
            "Redis round trips without an answer, by kind.",
            "kind",
            [("timeout", trips.timeouts()), ("error", trips.errors())],
        );
        single(
            out,
            "trunkstore_cluster_redis_up",
            "gauge",
            "1 while Redis answers this node's trunk work, 0 while trunk limits fail open.",
            u8::from(self.metrics.up()),
        );
        single(
            out,
            "trunkstore_cluster_lease_renewals_total",
            "counter",
            "Renewals of this node's trunk leases that Redis answered.",
            self.metrics.renewals(),
        );
        let t = self.proxy.cluster_trunk_stats();
        single(
            out,
            "trunkstore_cluster_trunk_holds",
            "gauge",
            "This node's live trunk holds asked of the cluster.",
            t.holds,
        );
        single(
            out,
            "trunkstore_cluster_fail_open_total",
            "counter",
            "Calls of limited accounts let through because Redis did not answer.",
            t.fail_open,
        );
        single(
            out,
            "trunkstore_cluster_trunk_refusals_total",
            "counter",
            "Calls refused because the cluster's trunk limit was reached.",
            t.refusals,
        );
    }
}

/// `trunkstore_cluster_redis_round_trip_seconds`: a Prometheus histogram (cumulative
/// buckets in seconds, sum, count) of the answered round trips.
fn render_round_trips(out: &mut String, trips: &RoundTrips) {
    let name = "trunkstore_cluster_redis_round_trip_seconds";
    header(
        out,
        name,
        "histogram",
        "Answered Redis round trips of this node.",
    );
    let buckets = trips.buckets();
    let mut cumulative = 0u64;
    for (i, n) in buckets.iter().enumerate() {
        cumulative += n;
        let le = match ROUND_TRIP_BUCKETS_US.get(i) {
            Some(us) => format!("{}", *us as f64 / 1e6),
            None => "+Inf".to_string(),
        };
        let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
    }
    let _ = writeln!(out, "{name}_sum {}", trips.sum_us() as f64 / 1e6);
    let _ = writeln!(out, "{name}_count {cumulative}");
}
