//! Alerts: violation events delivered to the alert topics their security profile names, as the
//! notification SNS would deliver, to every subscriber of the topic: HTTP(S) webhooks and MQTT
//! topics of Warden's own broker.
//!
//! A profile's `alertTargets.SNS.alertTargetArn` names a topic by the last segment of its ARN
//! (`arn:aws:sns:{region}:{account}:{topic}`); region and account are not checked, so profiles
//! written for AWS keep working. The webhook body is SNS's HTTP notification
//! (`{"Type":"Notification","MessageId",...,"Message":"<the alert JSON of spec §5.5>"}`) with SNS's
//! `x-amz-sns-*` headers, unsigned: Warden has no SNS signing certificate, so receivers should
//! rely on HTTPS and a secret in the URL instead of `Signature`. MQTT subscribers get the same
//! envelope.
//!
//! Delivery never holds up detection: [`Alerts::send`] only queues (bounded; a full queue drops
//! the alert, counted and logged). Each delivery is tried up to `alerts.attempts` times with
//! doubling delays from `alerts.retry_delay`, and every attempt is recorded on its subscription
//! (delivered, failed, last error), which the alert topics API shows.
//!
//! Report-to-alert latency is what this path is judged on (`bench/alert-latency.sh`), so the
//! store stays off the way of an alert as far as it can: alerts queued together share one read
//! of their topic's subscriptions; a delivery slot is held only while an attempt is in flight,
//! not while its outcome is written (the store's single writer is busy with reports under load)
//! nor while a failing subscriber waits for its next retry, so a dead webhook cannot hold up a
//! live one; and webhook connections are kept alive for as many deliveries as run at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use tokio::sync::{Semaphore, mpsc};
use warden_broker::Broker;
use warden_store::{AlertSubscription, StoreError, SubscriptionProtocol, all_pages};

use crate::state::AppState;

/// Alerts waiting for their subscriptions to be looked up; more are dropped.
const QUEUE: usize = 4096;
/// Alerts taken from the queue at once, sharing one subscription lookup per topic.
const BATCH: usize = 256;
/// Delivery attempts in flight at once (each webhook call holds a blocking thread).
const CONCURRENT_DELIVERIES: usize = 32;
/// Deliveries started and not finished (in flight, waiting to retry, or being recorded); when
/// this many are, the queue waits, then fills and drops.
const PENDING_DELIVERIES: usize = 4096;
/// A bound on one webhook call, connection included.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// One alert: the AWS alert JSON for one violation event, for one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// The profile's `alertTargetArn`.
    pub topic_arn: String,
    /// The `Message`: AWS's alert JSON (spec §5.5).
    pub message: String,
    /// When the violation event happened.
    pub at_ms: i64,
}

/// Counts for `/metrics`.
#[derive(Debug, Default)]
pub struct AlertStats {
    /// Alerts queued for delivery.
    pub queued: AtomicU64,
    /// Alerts dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Alerts whose topic does not exist (nothing to deliver to).
    pub unknown_topic: AtomicU64,
    /// Deliveries that reached their subscriber.
    pub delivered: AtomicU64,
    /// Failed attempts (a delivery retried three times and then delivered counts three).
    pub failed_attempts: AtomicU64,
    /// Deliveries given up after the last attempt.
    pub abandoned: AtomicU64,
}

/// The sending side; cheap to clone.
#[derive(Debug, Clone)]
pub struct Alerts {
    tx: mpsc::Sender<Alert>,
    pub stats: Arc<AlertStats>,
}

impl Alerts {
    /// Starts the delivery task. It ends when every `Alerts` is dropped, after starting the
    /// deliveries of what was queued.
    pub fn start(state: AppState, broker: Arc<Broker>) -> (Alerts, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let stats = Arc::new(AlertStats::default());
        let task = tokio::spawn(run(state, broker, rx, stats.clone()));
        (Alerts { tx, stats }, task)
    }

    /// Queues an alert; never waits.
    pub fn send(&self, alert: Alert) {
        match self.tx.try_send(alert) {
            Ok(()) => {
                self.stats.queued.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(topic = %e.into_inner().topic_arn, "alert queue full: an alert was dropped");
            }
        }
    }
}

/// The topic name an `alertTargetArn` names: its last `:` segment.
pub fn topic_name(arn: &str) -> &str {
    arn.rsplit(':').next().unwrap_or(arn)
}

async fn run(state: AppState, broker: Arc<Broker>, mut rx: mpsc::Receiver<Alert>, stats: Arc<AlertStats>) {
    let agent = webhook_agent();
    let slots = Arc::new(Semaphore::new(CONCURRENT_DELIVERIES));
    let pending = Arc::new(Semaphore::new(PENDING_DELIVERIES));
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        // Looked up when the batch's first alert for the topic is reached, so every alert of
        // the batch sees subscriptions at least as recent as itself.
        let mut lookups: HashMap<String, Result<Arc<[AlertSubscription]>, StoreError>> = HashMap::new();
        for alert in batch.drain(..) {
            let topic = topic_name(&alert.topic_arn).to_owned();
            if !lookups.contains_key(&topic) {
                let found = subscriptions(&state, &topic).await.map(Arc::from);
                lookups.insert(topic.clone(), found);
            }
            let subscriptions = match &lookups[&topic] {
                Ok(s) => s.clone(),
                Err(StoreError::NotFound { .. }) => {
                    stats.unknown_topic.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(topic = %alert.topic_arn, "alert for a topic that does not exist");
                    continue;
                }
                Err(e) => {
                    stats.abandoned.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(%topic, error = %e, "cannot read the topic's subscriptions; alert dropped");
                    continue;
                }
            };
            // As in SNS, one message id for the alert, whichever subscriber receives it.
            let message_id = random_uuid();
            for subscription in subscriptions.iter() {
                let Ok(permit) = pending.clone().acquire_owned().await else { return };
                let topic_arn = state.arns.sns_topic(&topic);
                let delivery = Delivery {
                    envelope: envelope(&alert, &message_id, &topic_arn, subscription),
                    topic_arn,
                    subscription: subscription.clone(),
                };
                // Weak: a delivery waiting to retry must not keep the broker from stopping.
                let (state, broker, agent, stats, slots) =
                    (state.clone(), Arc::downgrade(&broker), agent.clone(), stats.clone(), slots.clone());
                tokio::spawn(async move {
                    let _permit = permit;
                    delivery.run(&state, &broker, &agent, &stats, &slots).await;
                });
            }
        }
    }
}

/// Every subscription of a topic (one store read); `NotFound` if the topic does not exist.
async fn subscriptions(state: &AppState, topic: &str) -> Result<Vec<AlertSubscription>, StoreError> {
    all_pages(|page| async move { state.store.list_subscriptions(topic, &page).await }).await
}

/// SNS's HTTP notification around the alert message (unsigned; see the module doc).
fn envelope(alert: &Alert, message_id: &str, topic_arn: &str, subscription: &AlertSubscription) -> Envelope {
    let body = json!({
        "Type": "Notification",
        "MessageId": message_id,
        "TopicArn": topic_arn,
        "Message": alert.message,
        "Timestamp": sns_timestamp(alert.at_ms),
        "SignatureVersion": "1",
    })
    .to_string();
    Envelope {
        message_id: message_id.to_owned(),
        subscription_arn: format!("{topic_arn}:{}", subscription.subscription_id),
        body,
    }
}

#[derive(Debug, Clone)]
struct Envelope {
    message_id: String,
    subscription_arn: String,
    body: String,
}

struct Delivery {
    subscription: AlertSubscription,
    topic_arn: String,
    envelope: Envelope,
}

impl Delivery {
    /// Tries until delivered or out of attempts, recording every attempt.
    async fn run(
        self,
        state: &AppState,
        broker: &Weak<Broker>,
        agent: &ureq::Agent,
        stats: &AlertStats,
        slots: &Arc<Semaphore>,
    ) {
        let attempts = state.config.alerts.attempts.max(1);
        let mut delay = state.config.alerts.retry_delay;
        for attempt in 1..=attempts {
            // The slot is given back before the outcome is written and before any retry wait.
            let Ok(slot) = slots.acquire().await else { return };
            let outcome = self.attempt(broker, agent).await;
            drop(slot);
            let error = outcome.as_ref().err().map(String::as_str);
            let now = state.now_ms();
            if let Err(e) = state
                .store
                .record_delivery(&self.subscription.subscription_id, error.is_none(), error, now)
                .await
            {
                tracing::warn!(subscription = %self.subscription.subscription_id, error = %e, "cannot record an alert delivery");
            }
            match outcome {
                Ok(()) => {
                    stats.delivered.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Err(e) => {
                    stats.failed_attempts.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        subscription = %self.subscription.subscription_id,
                        endpoint = %self.subscription.endpoint,
                        attempt,
                        error = %e,
                        "alert delivery failed"
                    );
                }
            }
            if attempt < attempts {
                tokio::time::sleep(delay).await;
                delay = delay.saturating_mul(2);
            }
        }
        stats.abandoned.fetch_add(1, Ordering::Relaxed);
        tracing::error!(
            subscription = %self.subscription.subscription_id,
            endpoint = %self.subscription.endpoint,
            "alert not delivered after {attempts} attempts"
        );
    }

    async fn attempt(&self, broker: &Weak<Broker>, agent: &ureq::Agent) -> Result<(), String> {
        let e = &self.envelope;
        match self.subscription.protocol {
            SubscriptionProtocol::Mqtt => {
                let broker = broker.upgrade().ok_or("the MQTT endpoint has stopped")?;
                broker
                    .publish(&self.subscription.endpoint, Bytes::from(e.body.clone()), 0)
                    .await
                    .map_err(|e| e.to_string())
            }
            SubscriptionProtocol::Http | SubscriptionProtocol::Https => {
                let (agent, url, topic_arn, e) =
                    (agent.clone(), self.subscription.endpoint.clone(), self.topic_arn.clone(), e.clone());
                tokio::task::spawn_blocking(move || post(&agent, &url, &topic_arn, &e))
                    .await
                    .unwrap_or_else(|e| Err(format!("delivery task failed: {e}")))
            }
        }
    }
}

fn webhook_agent() -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(WEBHOOK_TIMEOUT))
        // ureq keeps 3 idle connections per host by default: with more deliveries than that
        // to one webhook at once, the rest would connect (and for HTTPS, handshake) per POST.
        .max_idle_connections(CONCURRENT_DELIVERIES * 2)
        .max_idle_connections_per_host(CONCURRENT_DELIVERIES)
        .max_redirects(0)
        .user_agent(concat!("warden/", env!("CARGO_PKG_VERSION")))
        .build();
    ureq::Agent::new_with_config(config)
}

/// One webhook POST; any 2xx answer is a delivery.
fn post(agent: &ureq::Agent, url: &str, topic_arn: &str, e: &Envelope) -> Result<(), String> {
    let response = agent
        .post(url)
        .header("Content-Type", "text/plain; charset=UTF-8")
        .header("x-amz-sns-message-type", "Notification")
        .header("x-amz-sns-message-id", &e.message_id)
        .header("x-amz-sns-topic-arn", topic_arn)
        .header("x-amz-sns-subscription-arn", &e.subscription_arn)
        .send(&e.body)
        .map_err(|e| e.to_string())?;
    let status = response.status();
    if status.is_success() { Ok(()) } else { Err(format!("HTTP {status}")) }
}

/// SNS's `Timestamp`: ISO 8601 UTC with milliseconds.
fn sns_timestamp(at_ms: i64) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(at_ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(format).ok())
        .unwrap_or_default()
}

/// A random (version 4) UUID, as SNS message ids are.
fn random_uuid() -> String {
    let mut b = [0u8; 16];
    // The system RNG does not fail on Linux; zeros would still make a well-formed id.
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_name_is_the_last_arn_segment() {
        assert_eq!(topic_name("arn:aws:sns:us-east-1:123456789012:DeviceAlerts"), "DeviceAlerts");
        assert_eq!(topic_name("DeviceAlerts"), "DeviceAlerts");
    }

    #[test]
    fn timestamps_are_sns_shaped() {
        assert_eq!(sns_timestamp(1_573_786_800_123), "2019-11-15T03:00:00.123Z");
    }

    #[test]
    fn uuids_are_version_4() {
        let id = random_uuid();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"));
        assert_ne!(id, random_uuid());
    }
}
