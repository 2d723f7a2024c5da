//! Report ingest: every allowed PUBLISH on a Device Defender topic is decoded, validated,
//! checked for duplicates and throttling, stored as datapoints and answered on `/accepted` or
//! `/rejected` in the request's encoding.
//!
//! Per-thing ordering lives in memory: the duplicate and throttle checks read and update an
//! in-memory map in the single ingest task, so two reports from one thing can never both pass.
//! The store writes and the reply then run concurrently (bounded by [`MAX_IN_FLIGHT`]), so a
//! slow disk turns into backpressure on the broker's event channel rather than unbounded memory.
//! The map is filled from the store the first time a thing reports after a start, so duplicate
//! detection survives restarts.

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
    in_flight: Arc<Semaphore>,
    pub stats: Arc<IngestStats>,
}

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest").field("things", &self.last.len()).finish_non_exhaustive()
    }
}

impl Ingest {
    pub fn new(state: AppState, broker: Arc<Broker>, stats: Arc<IngestStats>) -> Self {
        let limits = Limits { max_payload_bytes: state.config.mqtt.max_payload_bytes };
        Ingest {
            state,
            broker,
            limits,
            last: HashMap::new(),
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            stats,
        }
    }

    /// Handles one allowed PUBLISH; anything that is not a report topic is ignored here.
    pub async fn publish(&mut self, topic: &str, payload: Bytes) {
        let Some(t) = ReportTopic::parse(topic).filter(|t| t.kind == TopicKind::Report) else {
            return;
        };
        let now_ms = self.state.now_ms();
        let thing = t.thing.to_owned();
        let outcome = match decode_report(&payload, t.format, &self.limits) {
            Err(rejection) => Err(rejection),
            Ok(report) => self.admit(&thing, &report, now_ms).await.map(|()| report),
        };
        // Wait for room before spawning: this is the backpressure point.
        let permit = self.in_flight.clone().acquire_owned().await.expect("semaphore never closed");
        let state = self.state.clone();
        let broker = self.broker.clone();
        let stats = self.stats.clone();
        let reply_topic = t.reply(outcome.is_ok()).to_string();
        let format = t.format;
        tokio::spawn(async move {
            let _permit = permit;
            let reply = match outcome {
                Ok(report) => {
                    let report_id = report.header.report_id;
                    let stored = state
                        .store
                        .set_ingest_state(
                            &thing,
                            IngestState { last_report_id: report_id, accepted_at_ms: now_ms },
                        )
                        .await
                        .and(state.store.append_datapoints(datapoints(&thing, &report, now_ms)).await);
                    if let Err(e) = stored {
                        // The report passed validation; losing its datapoints is logged and
                        // counted, and the device is still told it was accepted (as AWS would
                        // not tell it about its own storage trouble either).
                        stats.store_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(%thing, error = %e, "cannot store report");
                    }
                    stats.accepted.fetch_add(1, Ordering::Relaxed);
                    Reply {
                        thing_name: thing.clone(),
                        report_id: Some(report_id),
                        status: ReplyStatus::Accepted,
                        timestamp_ms: now_ms as u64,
                    }
                }
                Err(rejection) => {
                    stats.count(&rejection.code);
                    tracing::info!(%thing, code = %rejection.code, reason = %rejection.message, "report rejected");
                    Reply {
                        thing_name: thing.clone(),
                        report_id: rejection.report_id,
                        status: ReplyStatus::Rejected { code: rejection.code, message: rejection.message },
                        timestamp_ms: now_ms as u64,
                    }
                }
            };
            if let Err(e) = broker.publish(&reply_topic, Bytes::from(encode_reply(&reply, format)), 0).await {
                tracing::warn!(%thing, error = %e, "cannot send the reply");
            }
        });
    }

    /// The duplicate and throttle checks, updating the in-memory state when the report passes.
    async fn admit(&mut self, thing: &str, report: &MetricReport, now_ms: i64) -> Result<(), Rejection> {
        let report_id = report.header.report_id;
        if !self.last.contains_key(thing) {
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
        if let Some(last) = self.last.get(thing) {
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
        }
        self.last.insert(thing.to_owned(), IngestState { last_report_id: report_id, accepted_at_ms: now_ms });
        Ok(())
    }
}

/// The device-side datapoints of a report (spec §3.1): counters from `network_stats`, counts and
/// sets from the socket snapshots, and every custom metric.
pub fn datapoints(thing: &str, report: &MetricReport, now_ms: i64) -> Vec<Datapoint> {
    let mut out = Vec::new();
    let mut push = |metric: &str, value: MetricValue| {
        out.push(Datapoint {
            thing: thing.to_owned(),
            metric: metric.to_owned(),
            dimension: None,
            timestamp_ms: now_ms,
            value,
        });
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
                    push(metric, count(v));
                }
            }
        }
        for (ports, num_metric, set_metric) in [
            (&m.listening_tcp_ports, "aws:num-listening-tcp-ports", "aws:listening-tcp-ports"),
            (&m.listening_udp_ports, "aws:num-listening-udp-ports", "aws:listening-udp-ports"),
        ] {
            if let Some(p) = ports {
                let list: Vec<u16> = p.ports.iter().flatten().map(|p| p.port).collect();
                push(num_metric, count(p.total.unwrap_or(list.len() as u64)));
                push(set_metric, MetricValue::ports(list));
            }
        }
        if let Some(ec) = m.tcp_connections.as_ref().and_then(|tc| tc.established_connections.as_ref()) {
            let conns = ec.connections.as_deref().unwrap_or_default();
            push("aws:num-established-tcp-connections", count(ec.total.unwrap_or(conns.len() as u64)));
            let mut ips: Vec<String> = conns.iter().map(|c| c.remote_addr.ip().to_string()).collect();
            ips.sort();
            ips.dedup();
            push("aws:destination-ip-addresses", MetricValue::cidrs(ips));
        }
    }
    for (name, v) in report.custom_metrics.iter().flatten() {
        let value = match v {
            CustomMetricValue::Number(n) => MetricValue::number(*n),
            CustomMetricValue::NumberList(ns) => MetricValue::numbers(ns.clone()),
            CustomMetricValue::StringList(ss) => MetricValue::strings(ss.clone()),
            CustomMetricValue::IpList(ips) => MetricValue::cidrs(ips.iter().map(|ip| ip.to_string())),
        };
        push(name, value);
    }
    out
}
