//! Prometheus metrics (SPEC §8), exposed at `/metrics` in the Prometheus text
//! format, or OpenMetrics when the scraper's `Accept` asks for it.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// Label values come from payloads too (a subject's key is made of backup and
/// server names), and the encoder writes them as they are: escaped here as both
/// text formats require (`\\`, `\"`, `\n`), or one quote would break the whole
/// exposition and the scrape would drop every metric.
fn labels(pairs: &[(&'static str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (*k, escape_label(v))).collect()
}

fn escape_label(v: &str) -> String {
    if !v.contains(['\\', '"', '\n']) {
        return v.to_string();
    }
    let mut out = String::with_capacity(v.len() + 4);
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

pub struct Metrics {
    registry: Registry,
    received: Family<Labels, Counter>,
    rejected: Family<Labels, Counter>,
    unrouted: Family<Labels, Counter>,
    deliveries: Family<Labels, Counter>,
    duration: Family<Labels, Histogram, fn() -> Histogram>,
    queue_depth: Family<Labels, Gauge>,
    backups: Family<Labels, Gauge>,
    last_success: Family<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>,
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
        let backups = Family::<Labels, Gauge>::default();
        let last_success = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "backups",
            "Backup-watch subjects per state (ok, failing, missing, new)",
            backups.clone(),
        );
        registry.register(
            "backup_last_success_timestamp_seconds",
            "Unix time of each subject's last successful backup",
            last_success.clone(),
        );
        Metrics {
            registry,
            backups,
            last_success,
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

    /// Replaces the queue depth gauges with a fresh reading from storage: every
    /// configured destination (0 when nothing is pending, so a dashboard or an
    /// alert rule sees the series instead of a gap), and any other destination
    /// that still has deliveries queued.
    pub fn set_queue_depth<'a>(
        &self,
        configured: impl IntoIterator<Item = &'a str>,
        depths: &[(String, i64)],
    ) {
        self.queue_depth.clear();
        for d in configured {
            self.queue_depth
                .get_or_create(&labels(&[("destination", d)]))
                .set(0);
        }
        for (d, n) in depths {
            self.queue_depth
                .get_or_create(&labels(&[("destination", d)]))
                .set(*n);
        }
    }

    /// Replaces the backup-watch gauges with a fresh reading of the subjects:
    /// every state is present (0 included); subjects that never succeeded have no
    /// last-success sample.
    pub fn set_subjects(&self, subjects: &[crate::watch::Subject]) {
        self.backups.clear();
        for state in crate::watch::SubjectState::ALL {
            let n = subjects.iter().filter(|s| s.state == state).count();
            self.backups
                .get_or_create(&labels(&[("state", state.as_str())]))
                .set(n as i64);
        }
        self.last_success.clear();
        for s in subjects {
            if let Some(ms) = s.last_success_at {
                self.last_success
                    .get_or_create(&labels(&[("subject", &s.key)]))
                    .set(ms as f64 / 1000.0);
            }
        }
    }

    /// The OpenMetrics text format (`application/openmetrics-text`).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }

    /// The Prometheus text format 0.0.4 (`text/plain; version=0.0.4`), what
    /// scrapers read unless they ask for OpenMetrics.
    pub fn encode_prometheus(&self) -> String {
        to_prometheus_text(&self.encode())
    }
}

/// The content type of the OpenMetrics text format.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The content type of the Prometheus text format.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether an `Accept` header prefers OpenMetrics to the Prometheus text format:
/// it lists `application/openmetrics-text` with a quality above zero and at least
/// that of `text/plain` (Prometheus itself sends both, OpenMetrics first).
pub fn wants_openmetrics(accept: &str) -> bool {
    let mut om: Option<f32> = None;
    let mut text: Option<f32> = None;
    for part in accept.split(',') {
        let mut fields = part.split(';').map(str::trim);
        let media = fields.next().unwrap_or("").to_ascii_lowercase();
        let q = fields
            .filter_map(|f| f.strip_prefix("q="))
            .find_map(|v| v.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        let slot = match media.as_str() {
            "application/openmetrics-text" => &mut om,
            "text/plain" | "text/*" | "*/*" => &mut text,
            _ => continue,
        };
        *slot = Some(slot.map_or(q, |x: f32| x.max(q)));
    }
    match (om, text) {
        (Some(o), Some(t)) => o > 0.0 && o >= t,
        (Some(o), None) => o > 0.0,
        _ => false,
    }
}

/// Rewrites OpenMetrics text as Prometheus text 0.0.4: a counter's `# HELP` and
/// `# TYPE` name its samples' `_total` name, and the `# UNIT` and `# EOF` lines,
/// which 0.0.4 does not have, are left out. Gauges and histograms read the same
/// in both.
fn to_prometheus_text(om: &str) -> String {
    let counters: std::collections::HashSet<&str> = om
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(om.len());
    for line in om.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            (counters.contains(name) && !name.ends_with("_total"))
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(l) => out.push_str(l.trim_end()),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_configured_destination_has_a_queue_depth() {
        let m = Metrics::new();
        m.set_queue_depth(["a", "b"], &[("b".into(), 3), ("gone".into(), 1)]);
        let text = m.encode_prometheus();
        for want in [
            r#"hookrelay_queue_depth{destination="a"} 0"#,
            r#"hookrelay_queue_depth{destination="b"} 3"#,
            r#"hookrelay_queue_depth{destination="gone"} 1"#,
        ] {
            assert!(text.contains(want), "{want} not in {text}");
        }
        // A destination removed from the config and drained disappears.
        m.set_queue_depth(["a"], &[]);
        assert!(!m.encode().contains("gone"));
    }

    #[test]
    fn label_values_from_payloads_are_escaped() {
        let m = Metrics::new();
        m.received("sb", "fail\"ure\\x\ny");
        let text = m.encode_prometheus();
        assert!(
            text.contains(
                r#"hookrelay_events_received_total{source="sb",status="fail\"ure\\x\ny"} 1"#
            ),
            "{text}"
        );
        assert_eq!(escape_label("plain/name"), "plain/name");
    }

    #[test]
    fn prometheus_text_names_counters_by_their_samples() {
        let m = Metrics::new();
        m.received("c66", "failure");
        m.delivery("slack", "delivered", 0.2);
        let text = m.encode_prometheus();
        assert!(
            text.contains("# HELP hookrelay_events_received_total Webhooks accepted"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE hookrelay_events_received_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains(r#"hookrelay_events_received_total{source="c66",status="failure"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("# TYPE hookrelay_delivery_duration_seconds histogram\n"),
            "{text}"
        );
        assert!(!text.contains("# EOF"), "{text}");
        assert!(!text.contains("# UNIT"), "{text}");
        // Every sample line names a metric declared by a TYPE line.
        let declared: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .collect();
        for sample in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let name = sample.split(['{', ' ']).next().unwrap();
            assert!(
                declared.iter().any(|d| name == *d
                    || ["_bucket", "_sum", "_count"]
                        .iter()
                        .any(|s| name.strip_suffix(s) == Some(d))),
                "{name} not declared in {text}"
            );
        }
        let om = m.encode();
        assert!(
            om.contains("# TYPE hookrelay_events_received counter"),
            "{om}"
        );
        assert!(om.ends_with("# EOF\n"), "{om}");
    }

    #[test]
    fn accept_decides_the_format() {
        assert!(!wants_openmetrics(""));
        assert!(!wants_openmetrics("*/*"));
        assert!(!wants_openmetrics("text/plain;version=0.0.4"));
        assert!(wants_openmetrics("application/openmetrics-text"));
        // What Prometheus sends.
        assert!(wants_openmetrics(
            "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
        ));
        assert!(!wants_openmetrics(
            "text/plain;version=0.0.4;q=0.9,application/openmetrics-text;q=0.5"
        ));
        assert!(!wants_openmetrics("application/openmetrics-text;q=0"));
    }
}
