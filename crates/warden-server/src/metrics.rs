//! `/metrics`: the counters operators watch, in the Prometheus text exposition format.
//!
//! A dozen counters read from the broker's and ingest's own atomics at scrape time; rendering
//! them is a few lines, so no metrics registry is kept in step with them. Labels never carry a
//! thing name: a fleet of a million things must not become a million series.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use warden_broker::BrokerStats;

use crate::alerts::AlertStats;
use crate::detect::DetectStats;
use crate::ingest::IngestStats;
use crate::mitigation::MitigationStats;

/// Writes one metric family: its help, its type and its samples (`labels`, value).
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(&str, u64)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{labels} {value}");
    }
}

fn load(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// A histogram of durations in atomics, with fixed bucket bounds: from 1 ms (nothing waits
/// longer at rest) to 5 s (the broker's default `published_backpressure`, after which a report
/// is dropped).
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative), the last one above every bound.
    counts: [AtomicU64; BOUNDS_MS.len() + 1],
    sum_us: AtomicU64,
}

const BOUNDS_MS: [u64; 12] = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000];

impl Histogram {
    pub fn record(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let bucket = BOUNDS_MS.iter().position(|&ms| us <= ms * 1000).unwrap_or(BOUNDS_MS.len());
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Writes the family in seconds, with cumulative buckets as Prometheus wants them.
    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, count) in self.counts.iter().enumerate() {
            cumulative += load(count);
            match BOUNDS_MS.get(i) {
                Some(ms) => {
                    let _ = writeln!(out, "{name}_bucket{{le=\"{}\"}} {cumulative}", *ms as f64 / 1000.0);
                }
                None => {
                    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
                }
            }
        }
        let _ = writeln!(out, "{name}_sum {}", load(&self.sum_us) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {cumulative}");
    }
}

/// Renders the MQTT and ingest metrics; `sessions` is the number of live MQTT sessions.
pub fn render(broker: &BrokerStats, sessions: usize, ingest: &IngestStats) -> String {
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
        family(&mut out, name, kind, help, samples)
    };
    metric("warden_mqtt_sessions", "gauge", "Live MQTT sessions.", &[("", sessions as u64)]);
    metric("warden_mqtt_connects_total", "counter", "MQTT sessions established.", &[("", broker.connected)]);
    metric(
        "warden_mqtt_connects_refused_total",
        "counter",
        "CONNECTs refused (certificate, thing or policy).",
        &[("", broker.connect_refused)],
    );
    metric(
        "warden_mqtt_authorization_failures_total",
        "counter",
        "Requests denied by policy, by kind.",
        &[
            ("{kind=\"publish\"}", broker.publish_denied),
            ("{kind=\"subscribe\"}", broker.subscribe_denied),
            ("{kind=\"receive\"}", broker.receive_denied),
        ],
    );
    metric(
        "warden_mqtt_tls_handshake_failures_total",
        "counter",
        "TLS handshakes refused on the MQTT listener (unknown CA, no client certificate, not TLS).",
        &[("", TLS_HANDSHAKE_FAILURES.load(Ordering::Relaxed))],
    );
    metric(
        "warden_mqtt_events_dropped_total",
        "counter",
        "Broker events dropped because the server fell behind, by kind.",
        &[("{kind=\"report\"}", broker.published_dropped), ("{kind=\"other\"}", broker.events_dropped)],
    );
    metric(
        "warden_reports_accepted_total",
        "counter",
        "Metrics reports accepted.",
        &[("", load(&ingest.accepted))],
    );
    metric(
        "warden_reports_rejected_total",
        "counter",
        "Metrics reports rejected, by error code.",
        &[
            ("{code=\"InvalidPayload\"}", load(&ingest.rejected_invalid)),
            ("{code=\"DuplicateReportId\"}", load(&ingest.rejected_duplicate)),
            ("{code=\"Throttled\"}", load(&ingest.rejected_throttled)),
        ],
    );
    metric(
        "warden_store_errors_total",
        "counter",
        "Accepted reports whose datapoints could not be stored.",
        &[("", load(&ingest.store_errors))],
    );
    ingest.queue_wait.render(
        &mut out,
        "warden_report_queue_seconds",
        "Time reports waited between the MQTT endpoint and ingest (the server falling behind shows here first).",
    );
    out
}

/// Renders the detection and alert delivery metrics.
pub fn render_detection(detect: &DetectStats, alerts: &AlertStats, mitigation: &MitigationStats) -> String {
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
        family(&mut out, name, kind, help, samples)
    };
    metric(
        "warden_detect_evaluations_total",
        "counter",
        "Batches of datapoints evaluated against security profiles (a report, or a cloud-side period of a thing).",
        &[("", load(&detect.evaluations))],
    );
    metric(
        "warden_violation_events_total",
        "counter",
        "Violation events, by type.",
        &[
            ("{type=\"in-alarm\"}", load(&detect.in_alarm)),
            ("{type=\"alarm-cleared\"}", load(&detect.alarm_cleared)),
            ("{type=\"alarm-invalidated\"}", load(&detect.alarm_invalidated)),
        ],
    );
    metric(
        "warden_violation_store_errors_total",
        "counter",
        "Batches of violation changes that could not be stored.",
        &[("", load(&detect.store_errors))],
    );
    metric(
        "warden_alerts_total",
        "counter",
        "Alerts by outcome: queued, dropped (queue full), unknown_topic.",
        &[
            ("{outcome=\"queued\"}", load(&alerts.queued)),
            ("{outcome=\"dropped\"}", load(&alerts.dropped)),
            ("{outcome=\"unknown_topic\"}", load(&alerts.unknown_topic)),
        ],
    );
    metric(
        "warden_alert_deliveries_total",
        "counter",
        "Alert deliveries to subscribers: delivered, failed attempts, abandoned after the last attempt.",
        &[
            ("{outcome=\"delivered\"}", load(&alerts.delivered)),
            ("{outcome=\"failed_attempt\"}", load(&alerts.failed_attempts)),
            ("{outcome=\"abandoned\"}", load(&alerts.abandoned)),
        ],
    );
    metric(
        "warden_mitigation_executions_total",
        "counter",
        "Mitigation actions run on violations (tasks and automatic), by how they ended.",
        &[
            ("{status=\"SUCCESSFUL\"}", load(&mitigation.successful)),
            ("{status=\"FAILED\"}", load(&mitigation.failed)),
            ("{status=\"SKIPPED\"}", load(&mitigation.skipped)),
        ],
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let ingest = IngestStats::default();
        ingest.accepted.store(7, Ordering::Relaxed);
        ingest.rejected_throttled.store(2, Ordering::Relaxed);
        let broker = BrokerStats { connected: 3, publish_denied: 1, ..Default::default() };
        let text = render(&broker, 2, &ingest);
        assert!(text.contains("# TYPE warden_mqtt_sessions gauge\nwarden_mqtt_sessions 2\n"), "{text}");
        assert!(text.contains("warden_mqtt_authorization_failures_total{kind=\"publish\"} 1\n"));
        assert!(text.contains("warden_reports_accepted_total 7\n"));
        assert!(text.contains("warden_reports_rejected_total{code=\"Throttled\"} 2\n"));
        assert!(text.contains("# TYPE warden_report_queue_seconds histogram\n"), "{text}");
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = line.rsplit_once(' ').unwrap();
            assert!(name.starts_with("warden_") && value.parse::<f64>().is_ok(), "{line}");
        }
    }

    #[test]
    fn a_histogram_renders_cumulative_buckets_in_seconds() {
        let h = Histogram::default();
        for us in [0, 1_000, 1_001, 30_000, 7_000_000] {
            h.record(Duration::from_micros(us));
        }
        let mut text = String::new();
        h.render(&mut text, "w", "Help.");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[..2], ["# HELP w Help.", "# TYPE w histogram"]);
        // A bound is inclusive: 1 ms is in `le="0.001"`, 1.001 ms in the next.
        for expected in [
            "w_bucket{le=\"0.001\"} 2",
            "w_bucket{le=\"0.002\"} 3",
            "w_bucket{le=\"0.025\"} 3",
            "w_bucket{le=\"0.05\"} 4",
            "w_bucket{le=\"5\"} 4",
            "w_bucket{le=\"+Inf\"} 5",
            "w_sum 7.032001",
            "w_count 5",
        ] {
            assert!(lines.contains(&expected), "{expected} in\n{text}");
        }
        assert_eq!(lines.len(), 2 + BOUNDS_MS.len() + 1 + 2, "{text}");
    }
}

/// TLS handshakes refused on the MQTT listener (unknown CA, no client certificate, not TLS at
/// all). rmqtt reports them only as a `log` record, so the binary's log pipeline counts them
/// with [`TlsFailureLayer`]; a process-wide counter because there is one MQTT listener per
/// process and one global logger.
pub static TLS_HANDSHAKE_FAILURES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A `tracing` layer that counts rmqtt's TLS handshake failures (bridged from `log` by
/// `tracing-log`) into [`TLS_HANDSHAKE_FAILURES`].
#[derive(Debug, Default, Clone, Copy)]
pub struct TlsFailureLayer;

impl TlsFailureLayer {
    /// The layer with a filter that lets only rmqtt's listener warnings through. Unfiltered, it
    /// would raise the subscriber's level hint to TRACE, and every `log::debug!` rmqtt makes per
    /// message would then be bridged into `tracing` only to be dropped by the log filter.
    pub fn filtered<S>() -> impl tracing_subscriber::Layer<S>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        use tracing_subscriber::Layer as _;
        let only = tracing_subscriber::filter::Targets::new()
            .with_target(warden_broker::TLS_FAILURE_LOG_TARGET, tracing::Level::WARN);
        TlsFailureLayer.with_filter(only)
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for TlsFailureLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: tracing_subscriber::layer::Context<'_, S>) {
        use tracing_log::NormalizeEvent as _;
        let meta = event.normalized_metadata();
        let target = meta.as_ref().map_or(event.metadata().target(), |m| m.target());
        if target != "rmqtt::server" {
            return;
        }
        struct Message(String);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0 = format!("{value:?}");
                }
            }
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        if warden_broker::is_tls_handshake_failure(target, &message.0) {
            TLS_HANDSHAKE_FAILURES.fetch_add(1, Ordering::Relaxed);
        }
    }
}
