//! Report ingest: every allowed PUBLISH on a Device Defender topic is decoded, validated,
//! checked for duplicates and throttling, stored as datapoints and answered on `/accepted` or
//! `/rejected` in the request's encoding.
//!
//! Per-thing ordering lives in memory: the duplicate and throttle checks read and update an
//! in-memory map on the single event thread, so two reports from one thing can never both pass.
//! The store writes and the reply then run concurrently (bounded by [`MAX_IN_FLIGHT`]), so a
//! slow disk turns into backpressure on the broker's event channel rather than unbounded memory.
//! The map is filled from the store, in one read, at the first report after a start, so
//! duplicate detection survives restarts.
//!
//! An accepted report is one store write (`Store::record_report`: its ingest state and
//! datapoints together), which shares its commit with the reports around it; the `/accepted`
//! reply is sent once that commit is durable.
//!
//! Overload, from the device's side: beyond what the server can store and answer, the
//! `MAX_IN_FLIGHT` reports in progress and the broker's event channel fill up, and then the
//! publishing sessions wait for room (the broker stops reading from them, so TCP slows the
//! devices down): throughput stays at capacity and every report that got in is answered. A
//! report that waits longer than the broker's `published_backpressure` for room is dropped by
//! the broker, and answered here on `/rejected` with `Throttled` (counted with the other
//! `Throttled` rejections, and in `warden_mqtt_events_dropped_total{kind="report"}`), so
//! even then the device learns that this report was not taken.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use tokio::sync::Semaphore;
use warden_broker::Broker;
use warden_store::{Datapoint, IngestState, MetricValue};
use warden_wire::{
    CustomMetricValue, ErrorCode, Limits, MetricReport, Rejection, Reply, ReplyStatus, ReportTopic,
    TopicKind, decode_report, encode_reply,
};

use crate::detect::Detection;
use crate::metrics::Histogram;
use crate::state::AppState;

/// Reports being stored and answered at once; more wait (backpressure).
pub const MAX_IN_FLIGHT: usize = 1024;

/// Counts of reports by outcome, for `/metrics`.
#[derive(Debug, Default)]
pub struct IngestStats {
    pub accepted: AtomicU64,
    pub rejected_invalid: AtomicU64,
    pub rejected_duplicate: AtomicU64,
    pub rejected_throttled: AtomicU64,
    pub store_errors: AtomicU64,
    /// From the broker taking a report to ingest starting on it: the server's own queueing.
    pub queue_wait: Histogram,
}

impl IngestStats {
    fn count(&self, code: &ErrorCode) {
        let c = match code {
            ErrorCode::DuplicateReportId => &self.rejected_duplicate,
            ErrorCode::Throttled => &self.rejected_throttled,
            _ => &self.rejected_invalid,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// The ingest stage: owned by the event loop task, one per server.
pub struct Ingest {
    state: AppState,
    broker: Arc<Broker>,
    limits: Limits,
    last: HashMap<String, IngestState>,
    /// Whether `last` holds every stored state (read in one go at the first report after a
    /// start); from then on a thing missing from it has never reported.
    loaded: bool,
    in_flight: Arc<Semaphore>,
    detection: Detection,
    pub stats: Arc<IngestStats>,
    /// The server's runtime, where each report is stored and answered (ingest itself may run
    /// on a thread of its own).
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest").field("things", &self.last.len()).finish_non_exhaustive()
    }
}

impl Ingest {
    pub fn new(state: AppState, broker: Arc<Broker>, detection: Detection, stats: Arc<IngestStats>) -> Self {
        let limits = Limits { max_payload_bytes: state.config.mqtt.max_payload_bytes };
        // The handler lives in the broker, so it holds the broker weakly (shutdown needs the
        // last strong reference) and nothing else that holds it.
        let (weak_broker, clock, shed_stats) = (Arc::downgrade(&broker), state.clock.clone(), stats.clone());
        broker.on_dropped_publish(move |_identity, topic, payload| {
            let Some((reply_topic, reply)) = overload_reply(topic, payload, &limits, clock.now_ms()) else {
                return;
            };
            shed_stats.rejected_throttled.fetch_add(1, Ordering::Relaxed);
            let Some(broker) = weak_broker.upgrade() else { return };
            tokio::spawn(async move {
                if let Err(e) = broker.publish(&reply_topic, reply, 0).await {
                    tracing::warn!(topic = %reply_topic, error = %e, "cannot answer a dropped report");
                }
            });
        });
        Ingest {
            state,
            broker,
            limits,
            last: HashMap::new(),
            loaded: false,
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            detection,
            stats,
            runtime: tokio::runtime::Handle::current(),
        }
    }

    /// Handles one allowed PUBLISH, which the broker took at `received`; anything that is not
    /// a report topic is ignored here.
    pub async fn publish(&mut self, topic: &str, payload: Bytes, received: std::time::Instant) {
        let Some(t) = ReportTopic::parse(topic).filter(|t| t.kind == TopicKind::Report) else {
            return;
        };
        self.stats.queue_wait.record(received.elapsed());
        let now_ms = self.state.now_ms();
        let thing: Arc<str> = t.thing.into();
        let outcome = match decode_report(&payload, t.format, &self.limits) {
            Err(rejection) => Err(rejection),
            Ok(report) => self.admit(&thing, &report, now_ms).await.map(|()| report),
        };
        // Evaluated here, in the order reports arrive, before their storing runs concurrently.
        let points = match &outcome {
            Ok(report) => {
                let points = datapoints(&thing, report, now_ms);
                self.detection.observe(&thing, &points, now_ms).await;
                points
            }
            Err(_) => Vec::new(),
        };
        // Only the id goes on: the decoded report is freed here, on the thread that built it.
        let outcome = outcome.map(|report| report.header.report_id);
        // Wait for room before spawning: this is the backpressure point.
        let permit = self.in_flight.clone().acquire_owned().await.expect("semaphore never closed");
        let state = self.state.clone();
        let broker = self.broker.clone();
        let stats = self.stats.clone();
        let reply_topic = t.reply(outcome.is_ok()).to_string();
        let format = t.format;
        self.runtime.spawn(async move {
            let _permit = permit;
            let reply = match outcome {
                Ok(report_id) => {
                    // One store write for the whole report; it shares its commit with the
                    // reports around it, and the reply waits for that commit.
                    let ingest_state = IngestState { last_report_id: report_id, accepted_at_ms: now_ms };
                    let live = state.live_report(&thing, now_ms, &points);
                    let stored = state.store.record_report(&thing, ingest_state, points).await;
                    if let Err(ref e) = stored {
                        // The report passed validation; losing its datapoints is logged and
                        // counted, and the device is still told it was accepted (as AWS would
                        // not tell it about its own storage trouble either).
                        stats.store_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(%thing, error = %e, "cannot store report");
                    }
                    stats.accepted.fetch_add(1, Ordering::Relaxed);
                    // After the store write, so a dashboard that refetches sees these points;
                    // points that could not be stored are not shown as if they were.
                    if let (Some(event), Ok(())) = (live, &stored) {
                        state.emit(event);
                    }
                    Reply {
                        thing_name: thing.to_string(),
                        report_id: Some(report_id),
                        status: ReplyStatus::Accepted,
                        timestamp_ms: now_ms as u64,
                    }
                }
                Err(rejection) => {
                    stats.count(&rejection.code);
                    tracing::info!(%thing, code = %rejection.code, reason = %rejection.message, "report rejected");
                    Reply {
                        thing_name: thing.to_string(),
                        report_id: rejection.report_id,
                        status: ReplyStatus::Rejected { code: rejection.code, message: rejection.message },
                        timestamp_ms: now_ms as u64,
                    }
                }
            };
            if let Err(e) = broker.publish(&reply_topic, Bytes::from(encode_reply(&reply, format)), 0).await {
                tracing::warn!(thing = %reply.thing_name, error = %e, "cannot send the reply");
            }
        });
    }

    /// The duplicate and throttle checks, updating the in-memory state when the report passes.
    async fn admit(&mut self, thing: &str, report: &MetricReport, now_ms: i64) -> Result<(), Rejection> {
        let report_id = report.header.report_id;
        if !self.loaded {
            // One read for the whole fleet: this runs on the one event thread, so reading each
            // thing's state on its first report would queue a reconnecting fleet behind a store
            // read per thing.
            match self.state.store.all_ingest_states().await {
                Ok(states) => {
                    for (t, s) in states {
                        // A state admitted meanwhile is newer than the stored one.
                        self.last.entry(t).or_insert(s);
                    }
                    self.loaded = true;
                }
                Err(e) => tracing::warn!(error = %e, "cannot read the ingest states; reading thing by thing"),
            }
        }
        if !self.loaded && !self.last.contains_key(thing) {
            match self.state.store.ingest_state(thing).await {
                Ok(Some(s)) => {
                    self.last.insert(thing.to_owned(), s);
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(%thing, error = %e, "cannot read ingest state; checking this report alone")
                }
            }
        }
        if let Some(last) = self.last.get_mut(thing) {
            if report_id <= last.last_report_id {
                return Err(Rejection {
                    code: ErrorCode::DuplicateReportId,
                    message: format!(
                        "report_id {report_id} is not greater than the last accepted report_id {}",
                        last.last_report_id
                    ),
                    report_id: Some(report_id),
                });
            }
            let min = self.state.config.ingest.min_report_period.as_millis() as i64;
            let since = now_ms - last.accepted_at_ms;
            if since < min {
                return Err(Rejection {
                    code: ErrorCode::Throttled,
                    message: format!(
                        "reports must be at least {}s apart; the last one was accepted {:.1}s ago",
                        min / 1000,
                        since as f64 / 1000.0
                    ),
                    report_id: Some(report_id),
                });
            }
            // Updated in place: a known thing costs no allocation here.
            *last = IngestState { last_report_id: report_id, accepted_at_ms: now_ms };
            return Ok(());
        }
        self.last.insert(thing.to_owned(), IngestState { last_report_id: report_id, accepted_at_ms: now_ms });
        Ok(())
    }
}

/// The `/rejected` reply (`Throttled`) to a report the server could not take in time, with the
/// report's id when it can be read; `None` for a topic that is not a report's.
pub fn overload_reply(topic: &str, payload: &[u8], limits: &Limits, now_ms: i64) -> Option<(String, Bytes)> {
    let t = ReportTopic::parse(topic).filter(|t| t.kind == TopicKind::Report)?;
    let report_id = match decode_report(payload, t.format, limits) {
        Ok(report) => Some(report.header.report_id),
        Err(rejection) => rejection.report_id,
    };
    let reply = Reply {
        thing_name: t.thing.to_owned(),
        report_id,
        status: ReplyStatus::Rejected {
            code: ErrorCode::Throttled,
            message: "the server is overloaded and did not process this report; send the next one as usual"
                .into(),
        },
        timestamp_ms: now_ms as u64,
    };
    Some((t.reply(false).to_string(), Bytes::from(encode_reply(&reply, t.format))))
}

/// The device-side datapoints of a report (spec §3.1): counters from `network_stats`, counts and
/// sets from the socket snapshots, and every custom metric. They share `thing`, and the
/// catalogue's metric names are borrowed: per report this is the hot path of ingest.
pub fn datapoints(thing: &Arc<str>, report: &MetricReport, now_ms: i64) -> Vec<Datapoint> {
    // A full report has ten device-side datapoints, plus its custom metrics.
    let custom = report.custom_metrics.as_ref().map_or(0, |c| c.len());
    let mut out = Vec::with_capacity(10 + custom);
    let mut push = |metric: Cow<'static, str>, value: MetricValue| {
        out.push(Datapoint { thing: thing.clone(), metric, dimension: None, timestamp_ms: now_ms, value });
    };
    let count = MetricValue::count;
    if let Some(m) = &report.metrics {
        if let Some(ns) = &m.network_stats {
            for (metric, v) in [
                ("aws:all-bytes-in", ns.bytes_in),
                ("aws:all-bytes-out", ns.bytes_out),
                ("aws:all-packets-in", ns.packets_in),
                ("aws:all-packets-out", ns.packets_out),
            ] {
                if let Some(v) = v {
                    push(metric.into(), count(v));
                }
            }
        }
        for (ports, num_metric, set_metric) in [
            (&m.listening_tcp_ports, "aws:num-listening-tcp-ports", "aws:listening-tcp-ports"),
            (&m.listening_udp_ports, "aws:num-listening-udp-ports", "aws:listening-udp-ports"),
        ] {
            if let Some(p) = ports {
                let list: Vec<u16> = p.ports.iter().flatten().map(|p| p.port).collect();
                push(num_metric.into(), count(p.total.unwrap_or(list.len() as u64)));
                push(set_metric.into(), MetricValue::ports(list));
            }
        }
        if let Some(ec) = m.tcp_connections.as_ref().and_then(|tc| tc.established_connections.as_ref()) {
            let conns = ec.connections.as_deref().unwrap_or_default();
            push("aws:num-established-tcp-connections".into(), count(ec.total.unwrap_or(conns.len() as u64)));
            let mut ips: Vec<String> = conns.iter().map(|c| c.remote_addr.ip().to_string()).collect();
            ips.sort();
            ips.dedup();
            push("aws:destination-ip-addresses".into(), MetricValue::cidrs(ips));
        }
    }
    for (name, v) in report.custom_metrics.iter().flatten() {
        let value = match v {
            CustomMetricValue::Number(n) => MetricValue::number(*n),
            CustomMetricValue::NumberList(ns) => MetricValue::numbers(ns.clone()),
            CustomMetricValue::StringList(ss) => MetricValue::strings(ss.clone()),
            CustomMetricValue::IpList(ips) => MetricValue::cidrs(ips.iter().map(|ip| ip.to_string())),
        };
        push(name.clone().into(), value);
    }
    out
}

#[cfg(test)]
mod tests {
    use warden_wire::{Format, Names, decode_reply, encode_report};

    use super::*;

    const REPORT: &str = r#"{"header":{"report_id":1234,"version":"1.0"},"metrics":{}}"#;

    #[test]
    fn a_dropped_report_is_answered_throttled_in_its_own_encoding() {
        let report = decode_report(REPORT.as_bytes(), Format::Json, &Limits::default()).unwrap();
        let limits = Limits::default();
        for format in [Format::Json, Format::Cbor] {
            let payload = encode_report(&report, format, Names::Short);
            let topic = format!("$aws/things/dev-1/defender/metrics/{}", format.as_str());
            let (reply_topic, reply) = overload_reply(&topic, &payload, &limits, 1_000).unwrap();
            assert_eq!(reply_topic, format!("{topic}/rejected"));
            let reply = decode_reply(&reply, format).unwrap();
            assert_eq!(
                (reply.thing_name.as_str(), reply.report_id, reply.timestamp_ms),
                ("dev-1", Some(1234), 1_000)
            );
            assert!(
                matches!(reply.status, ReplyStatus::Rejected { code: ErrorCode::Throttled, .. }),
                "{:?}",
                reply.status
            );
        }
        // Unreadable: answered all the same, without an id.
        let (_, reply) = overload_reply("$aws/things/dev-1/defender/metrics/json", b"{", &limits, 1).unwrap();
        assert_eq!(decode_reply(&reply, Format::Json).unwrap().report_id, None);
        // Not a report: not ingest's to answer.
        assert!(overload_reply("things/dev-1/telemetry", b"x", &limits, 1).is_none());
        assert!(
            overload_reply("$aws/things/dev-1/defender/metrics/json/accepted", b"x", &limits, 1).is_none()
        );
    }
}
