//! The agent's loop: sample, report, keep the connection alive as cheaply as possible, and
//! reconnect with backoff when it drops.
//!
//! A report is only sent over a live session. When the device is offline at report time the
//! report is skipped rather than queued (AWS does not accept back-filled reports), and the
//! traffic baseline is kept, so the next report's deltas cover the whole gap: no bytes go
//! uncounted.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use tokio::time::{Instant, sleep_until};
use tokio_rustls::TlsConnector;
use warden_wire::{Format, MetricReport, ReplyStatus, ReportTopic, TopicKind, decode_reply, encode_report};

use crate::collect::{self, CollectOptions, Collector, InterfaceMap, Sample};
use crate::config::{Config, MqttConfig};
use crate::custom;
use crate::mqtt::{Incoming, Session, SessionError};
use crate::report_id::ReportIds;

/// How long to wait for CONNACK, including TCP and TLS.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// A reply (or PUBACK) not seen this long after a report makes us probe the connection.
const REPLY_TIMEOUT: Duration = Duration::from_secs(20);
/// A probe PINGREQ unanswered this long means the connection is dead (e.g. a NAT dropped it).
const PING_TIMEOUT: Duration = Duration::from_secs(20);
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// Builds reports: owns the collector, the traffic baseline, the report ids and the collector
/// options.
struct Reporter<'c> {
    config: &'c Config,
    collector: Collector,
    options: CollectOptions,
    ids: ReportIds,
    baseline: Option<Sample>,
}

impl<'c> Reporter<'c> {
    fn new(config: &'c Config, ids: ReportIds) -> Self {
        let options = CollectOptions {
            include_loopback: config.include_loopback,
            max_list_entries: config.max_list_entries,
        };
        Reporter { config, collector: Collector::system(), options, ids, baseline: None }
    }

    fn sample(&mut self) -> anyhow::Result<Sample> {
        let interfaces = InterfaceMap::current()?;
        Ok(self.collector.sample(&interfaces)?)
    }

    /// Takes the baseline that the next report's deltas are measured from.
    fn start(&mut self) -> anyhow::Result<()> {
        self.baseline = Some(self.sample()?.into_baseline());
        Ok(())
    }

    /// A report of the traffic since the baseline; without one (the first report after start)
    /// it has no `network_stats`, since a cumulative counter is not a delta. The new sample becomes the baseline only
    /// through [`Reporter::sent`], once the report is out.
    async fn report(&mut self) -> anyhow::Result<(MetricReport, Sample)> {
        let sample = self.sample()?;
        let mut report = MetricReport::new(self.ids.next(epoch_secs()));
        report.metrics = Some(collect::metrics(&sample, self.baseline.as_ref(), &self.options));
        report.custom_metrics = custom::read_all(&self.config.custom_metrics).await;
        Ok((report, sample))
    }

    fn sent(&mut self, sample: Sample) {
        self.baseline = Some(sample.into_baseline());
    }

    fn encode(&self, report: &MetricReport) -> Vec<u8> {
        encode_report(report, self.config.format, self.config.names)
    }
}

fn epoch_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The interval plus up to `jitter` at random, so a fleet spreads its reports.
fn next_delay(config: &Config) -> Duration {
    let jitter_ms = config.jitter.as_millis() as u64;
    config.interval + Duration::from_millis(if jitter_ms == 0 { 0 } else { fastrand::u64(0..=jitter_ms) })
}

/// `--dry-run`: baseline, one interval, one report on stdout.
pub async fn dry_run(config: &Config) -> anyhow::Result<Vec<u8>> {
    let mut reporter = Reporter::new(config, ReportIds::ephemeral());
    reporter.start()?;
    tokio::time::sleep(config.interval).await;
    let (report, _) = reporter.report().await?;
    let mut out = reporter.encode(&report);
    if config.format == Format::Json {
        out.push(b'\n');
    }
    Ok(out)
}

/// Exponential backoff with jitter: each wait is drawn from the upper half of the current step,
/// so devices cut off together do not all come back in the same second.
struct Backoff {
    step: Duration,
}

impl Backoff {
    fn new() -> Self {
        Backoff { step: BACKOFF_MIN }
    }
    fn reset(&mut self) {
        self.step = BACKOFF_MIN;
    }
    fn next(&mut self) -> Duration {
        let ms = self.step.as_millis() as u64;
        self.step = (self.step * 2).min(BACKOFF_MAX);
        Duration::from_millis(fastrand::u64(ms / 2..=ms))
    }
}

/// Liveness checks on a session that is otherwise silent.
#[derive(Default)]
struct Probe {
    /// A reply or PUBACK is expected by then.
    reply_due: Option<Instant>,
    /// A PINGRESP is expected by then.
    ping_due: Option<Instant>,
}

/// Runs until `shutdown` completes, or until `max_reports` reports were sent and answered.
pub async fn run(config: &Config, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
    let m: &MqttConfig = config.mqtt.as_ref().context("no connection settings")?;
    let tls = TlsConnector::from(crate::mqtt::tls_config(m)?);
    let report_topic = ReportTopic::new(&m.thing, config.format, TopicKind::Report).to_string();
    let reply_filters: Vec<String> = [TopicKind::Accepted, TopicKind::Rejected]
        .map(|kind| ReportTopic::new(&m.thing, config.format, kind).to_string())
        .into();
    let expects_reply = m.replies || m.qos > 0;

    // The first report goes out as soon as the agent is connected, so the server learns the
    // device's ports and connections right after a boot; it carries no `network_stats`.
    let mut reporter = Reporter::new(config, ReportIds::load(&config.state_dir));
    let mut next_report = Instant::now() + next_delay(config);
    let mut backoff = Backoff::new();
    let mut reconnect_at = Instant::now();
    let mut session: Option<Session> = None;
    let mut probe = Probe::default();
    let mut sent: u64 = 0;
    let done = |sent: u64| config.max_reports.is_some_and(|max| sent >= max);
    tokio::pin!(shutdown);

    loop {
        if session.is_none() && Instant::now() >= reconnect_at {
            let connect = tokio::select! {
                _ = &mut shutdown => return Ok(()),
                r = Session::connect(m, &tls, CONNECT_TIMEOUT) => r,
            };
            match connect {
                Ok(mut s) => {
                    tracing::info!(endpoint = %m.endpoint, port = m.port, client_id = %m.client_id, "connected");
                    if m.replies
                        && let Err(e) = s.subscribe(&reply_filters).await
                    {
                        tracing::warn!(error = %e, "subscribing to replies failed");
                        reconnect_at = Instant::now() + backoff.next();
                        continue;
                    }
                    backoff.reset();
                    probe = Probe::default();
                    session = Some(s);
                    if reporter.baseline.is_none() {
                        next_report = Instant::now();
                    }
                }
                Err(e) => {
                    let wait = backoff.next();
                    tracing::warn!(error = %e, retry_in = ?wait, "connection failed");
                    reconnect_at = Instant::now() + wait;
                }
            }
        }

        // The earliest moment the session needs a liveness action.
        let liveness_due = session.as_ref().map(|s| {
            [Some(s.last_write + m.keepalive), probe.reply_due, probe.ping_due]
                .into_iter()
                .flatten()
                .min()
                .expect("keepalive deadline always present")
        });
        let connected = session.is_some();
        let incoming = async {
            match session.as_mut() {
                Some(s) => s.next().await,
                None => std::future::pending().await,
            }
        };

        enum Wake {
            Shutdown,
            Report,
            Reconnect,
            Liveness,
            Incoming(Result<Incoming, SessionError>),
        }
        let wake = tokio::select! {
            _ = &mut shutdown => Wake::Shutdown,
            _ = sleep_until(next_report) => Wake::Report,
            _ = sleep_until(reconnect_at), if !connected => Wake::Reconnect,
            _ = sleep_until(liveness_due.unwrap_or(next_report)), if liveness_due.is_some() => Wake::Liveness,
            r = incoming => Wake::Incoming(r),
        };

        let failure = match wake {
            Wake::Shutdown => {
                if let Some(s) = session.take() {
                    s.disconnect().await;
                }
                tracing::info!("stopped");
                return Ok(());
            }
            Wake::Reconnect => None,
            Wake::Report => {
                next_report = Instant::now() + next_delay(config);
                match session.as_mut() {
                    None => {
                        tracing::warn!(
                            "not connected: report skipped; its traffic is counted in the next one"
                        );
                        None
                    }
                    Some(s) => match reporter.report().await {
                        // The baseline stays, so the next report still covers this interval.
                        Err(e) => {
                            tracing::warn!(error = %format!("{e:#}"), "cannot collect metrics: report skipped");
                            None
                        }
                        Ok((report, sample)) => {
                            let payload = reporter.encode(&report);
                            let len = payload.len();
                            match s.publish(&report_topic, payload, m.qos).await {
                                Ok(()) => {
                                    reporter.sent(sample);
                                    sent += 1;
                                    tracing::info!(
                                        report_id = report.header.report_id,
                                        bytes = len,
                                        "report published"
                                    );
                                    if expects_reply {
                                        probe.reply_due.get_or_insert(Instant::now() + REPLY_TIMEOUT);
                                    } else if done(sent) {
                                        s_disconnect(&mut session).await;
                                        return Ok(());
                                    }
                                    None
                                }
                                Err(e) => Some(e),
                            }
                        }
                    },
                }
            }
            Wake::Liveness => {
                let now = Instant::now();
                let s = session.as_mut().expect("liveness only with a session");
                if probe.ping_due.is_some_and(|due| now >= due) {
                    Some(SessionError::Timeout(PING_TIMEOUT))
                } else if probe.reply_due.is_some_and(|due| now >= due) && done(sent) {
                    tracing::warn!("no reply to the last report");
                    s_disconnect(&mut session).await;
                    return Ok(());
                } else {
                    // Keepalive expiry, or a missing reply: one PINGREQ tells whether the
                    // connection is still there.
                    if probe.reply_due.is_some_and(|due| now >= due) {
                        tracing::debug!("no reply to the last report; probing the connection");
                    }
                    probe.reply_due = None;
                    probe.ping_due.get_or_insert(now + PING_TIMEOUT);
                    s.ping().await.err()
                }
            }
            Wake::Incoming(Err(e)) => Some(e),
            Wake::Incoming(Ok(incoming)) => {
                // Anything from the broker proves the connection is alive.
                probe.ping_due = None;
                match incoming {
                    Incoming::Publish { topic, payload } => {
                        probe.reply_due = None;
                        handle_reply(&topic, &payload, config.format);
                    }
                    Incoming::PubAck { refusal } => {
                        if !m.replies {
                            probe.reply_due = None;
                        }
                        if let Some(why) = refusal {
                            tracing::warn!(reason = %why, "broker refused the report");
                        }
                    }
                    Incoming::SubAck { refused } if refused > 0 => {
                        tracing::warn!(
                            "broker refused the subscription to /accepted and /rejected; rejections will not be logged"
                        );
                    }
                    Incoming::SubAck { .. } | Incoming::PingResp => {}
                    Incoming::Disconnect(reason) => {
                        tracing::warn!(%reason, "broker closed the session");
                    }
                }
                if done(sent) && probe.reply_due.is_none() {
                    s_disconnect(&mut session).await;
                    return Ok(());
                }
                None
            }
        };
        if let Some(e) = failure {
            let wait = backoff.next();
            tracing::warn!(error = %e, retry_in = ?wait, "connection lost");
            session = None;
            reconnect_at = Instant::now() + wait;
        }
    }
}

async fn s_disconnect(session: &mut Option<Session>) {
    if let Some(s) = session.take() {
        s.disconnect().await;
    }
}

fn handle_reply(topic: &str, payload: &[u8], format: Format) {
    let kind = ReportTopic::parse(topic).map(|t| t.kind);
    match decode_reply(payload, format) {
        Ok(reply) => match reply.status {
            ReplyStatus::Accepted => tracing::debug!(report_id = ?reply.report_id, "report accepted"),
            ReplyStatus::Rejected { code, message } => {
                tracing::warn!(report_id = ?reply.report_id, code = %code, reason = %message, "report rejected")
            }
        },
        Err(e) => tracing::warn!(%topic, ?kind, error = %e, "unreadable reply"),
    }
}
