//! Prometheus metrics (SPEC §8), exposed in the text format at `/metrics`.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

fn labels(pairs: &[(&'static str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
}

pub struct Metrics {
    registry: Registry,
    received: Family<Labels, Counter>,
    rejected: Family<Labels, Counter>,
    unrouted: Family<Labels, Counter>,
    deliveries: Family<Labels, Counter>,
    duration: Family<Labels, Histogram, fn() -> Histogram>,
    queue_depth: Family<Labels, Gauge>,
}

fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("hookrelay");
        let received = Family::<Labels, Counter>::default();
        let rejected = Family::<Labels, Counter>::default();
        let unrouted = Family::<Labels, Counter>::default();
        let deliveries = Family::<Labels, Counter>::default();
        let duration = Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(
            duration_histogram,
        );
        let queue_depth = Family::<Labels, Gauge>::default();
        registry.register(
            "events_received",
            "Webhooks accepted, by source and normalized status",
            received.clone(),
        );
        registry.register(
            "events_rejected",
            "Webhooks refused, by source and reason",
            rejected.clone(),
        );
        registry.register(
            "events_unrouted",
            "Accepted events that matched no route",
            unrouted.clone(),
        );
        registry.register(
            "deliveries",
            "Delivery attempts by destination and outcome (delivered, retry, dead)",
            deliveries.clone(),
        );
        registry.register(
            "delivery_duration_seconds",
            "Time one delivery attempt took",
            duration.clone(),
        );
        registry.register(
            "queue_depth",
            "Pending deliveries per destination",
            queue_depth.clone(),
        );
        Metrics {
            registry,
            received,
            rejected,
            unrouted,
            deliveries,
            duration,
            queue_depth,
        }
    }

    pub fn received(&self, source: &str, status: &str) {
        self.received
            .get_or_create(&labels(&[("source", source), ("status", status)]))
            .inc();
    }

    pub fn rejected(&self, source: &str, reason: &str) {
        self.rejected
            .get_or_create(&labels(&[("source", source), ("reason", reason)]))
            .inc();
    }

    pub fn unrouted(&self, source: &str) {
        self.unrouted
            .get_or_create(&labels(&[("source", source)]))
            .inc();
    }

    pub fn delivery(&self, destination: &str, outcome: &str, seconds: f64) {
        self.deliveries
            .get_or_create(&labels(&[
                ("destination", destination),
                ("outcome", outcome),
            ]))
            .inc();
        self.duration
            .get_or_create(&labels(&[("destination", destination)]))
            .observe(seconds);
    }

    /// Replaces the queue depth gauges with a fresh reading from storage.
    pub fn set_queue_depth(&self, depths: &[(String, i64)]) {
        self.queue_depth.clear();
        for (d, n) in depths {
            self.queue_depth
                .get_or_create(&labels(&[("destination", d)]))
                .set(*n);
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
