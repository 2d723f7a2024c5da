//! What the server's parts share: the store, the CA, the clock, ARNs, the registry-change
//! notifications that keep the MQTT endpoint's authorization in step with the API, and the
//! live-event bus the dashboard streams from.

use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::Value;
use tokio::sync::{broadcast, watch};
use warden_store::{Datapoint, Store, ViolationChange};

use crate::config::ServerConfig;
use crate::dashboard::Sessions;
use crate::pki::Pki;

/// Live events held for subscribers that have not read them yet. A subscriber further behind
/// loses the oldest and is told to resync, so a slow browser never holds up ingest.
pub const LIVE_BUFFER: usize = 1024;

/// The server's one time source. Logic takes `now` from here, never from `SystemTime` directly,
/// so tests can move time by hand.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

/// Wall-clock time.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
    }
}

/// A clock tests set by hand.
#[derive(Debug, Default)]
pub struct ManualClock(Mutex<i64>);

impl ManualClock {
    pub fn new(now_ms: i64) -> Self {
        ManualClock(Mutex::new(now_ms))
    }
    pub fn set(&self, now_ms: i64) {
        *self.0.lock().expect("clock lock") = now_ms;
    }
    pub fn advance(&self, ms: i64) {
        *self.0.lock().expect("clock lock") += ms;
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        *self.0.lock().expect("clock lock")
    }
}

/// ARNs of registry resources, with the configured region and account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arns {
    prefix: String,
    sns_prefix: String,
}

impl Arns {
    pub fn new(region: &str, account_id: &str) -> Self {
        Arns {
            prefix: format!("arn:aws:iot:{region}:{account_id}:"),
            sns_prefix: format!("arn:aws:sns:{region}:{account_id}:"),
        }
    }
    pub fn thing(&self, name: &str) -> String {
        format!("{}thing/{name}", self.prefix)
    }
    pub fn thing_group(&self, name: &str) -> String {
        format!("{}thinggroup/{name}", self.prefix)
    }
    pub fn certificate(&self, id: &str) -> String {
        format!("{}cert/{id}", self.prefix)
    }
    pub fn policy(&self, name: &str) -> String {
        format!("{}policy/{name}", self.prefix)
    }
    /// An alert topic, named like the SNS topic a profile's `alertTargetArn` points at.
    pub fn sns_topic(&self, name: &str) -> String {
        format!("{}{name}", self.sns_prefix)
    }
    /// The common prefix, `arn:aws:iot:{region}:{account}:`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
}

/// A change to the registry that may change what a connected device is allowed to do.
///
/// Each names what changed, so that the authorizer re-reads only that; `Policies` and
/// `Memberships` name nothing and make it re-read the whole registry (seconds at 100,000
/// things), so they are for writers that cannot say more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryChange {
    /// A policy was created or deleted (an attached policy cannot be deleted, so no target
    /// changed).
    Policy { policy: String },
    /// `policy` was attached to or detached from `target`, a certificate or thing group ARN.
    PolicyTarget { policy: String, target: String },
    /// `thing` joined or left a thing group.
    ThingGroups { thing: String },
    /// A thing group was deleted with its memberships (a group with child groups cannot be).
    /// The policies attached to it are detached afterwards, each announced as `PolicyTarget`.
    ThingGroupDeleted { group: String },
    /// Policies were created, deleted, attached or detached, without saying which.
    Policies,
    /// Things joined or left groups, or groups were deleted, without saying which.
    Memberships,
    /// A certificate was registered, changed status, was deleted, or was attached to or
    /// detached from a thing.
    Certificate { certificate_id: String },
    /// A thing was deleted.
    ThingDeleted { thing: String },
    /// A security profile was created, updated, deleted, attached or detached, or a custom
    /// metric or dimension its behaviors use changed: detection reloads its profiles.
    SecurityProfiles,
}

/// Told about every registry change, after it is committed. The API awaits every listener
/// before it answers, so when a request that deactivates a certificate returns, the device's
/// session is already gone and its next PUBLISH is judged by the new policies.
#[async_trait::async_trait]
pub trait RegistryListener: Send + Sync + 'static {
    async fn registry_changed(&self, change: &RegistryChange);
}

/// Something the dashboard shows as it happens, streamed as server-sent events
/// (`docs/dashboard.md` lists the shapes). Times are epoch seconds, as in the REST API.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum LiveEvent {
    /// A report was accepted and stored: its device-side datapoints, metric name to value.
    Report { thing: String, timestamp: f64, metrics: serde_json::Map<String, Value> },
    /// A violation event was recorded.
    #[serde(rename_all = "camelCase")]
    Violation {
        violation_id: String,
        /// `in-alarm`, `alarm-cleared` or `alarm-invalidated`.
        event: String,
        thing: String,
        security_profile: String,
        behavior: String,
        value: Value,
        timestamp: f64,
    },
    /// A device session connected (`connected: true`) or ended.
    Session { thing: String, connected: bool },
    /// A thing joined or left a group (`thing: null`: possibly many things).
    Groups { thing: Option<String> },
    /// A certificate changed status, was attached, detached or deleted.
    #[serde(rename_all = "camelCase")]
    Certificate { certificate_id: String },
    /// Cloud-side metrics of one period were stored for every connected thing.
    CloudMetrics { timestamp: f64 },
}

/// Shared by the API handlers, ingest and the MQTT authorizer. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<ServerConfig>,
    pub store: Arc<dyn Store>,
    pub pki: Arc<Pki>,
    pub clock: Arc<dyn Clock>,
    pub arns: Arns,
    /// SHA-256 of the API token; the token itself is only in `DATA_DIR/api-token`.
    pub api_token_sha256: [u8; 32],
    /// The dashboard's signed-in browser sessions (in memory: a restart signs everyone out).
    pub sessions: Arc<Sessions>,
    /// Mitigation executions run since start, by outcome (`/metrics`).
    pub mitigation_stats: Arc<crate::mitigation::MitigationStats>,
    listeners: Arc<Mutex<Vec<Arc<dyn RegistryListener>>>>,
    /// The live-event bus: bounded, so publishers never wait; subscribers are the dashboard's
    /// event streams, which end when `live_stop` turns true at shutdown.
    live: broadcast::Sender<LiveEvent>,
    live_stop: Arc<watch::Sender<bool>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").field("arns", &self.arns).finish_non_exhaustive()
    }
}

impl AppState {
    pub fn new(
        config: Arc<ServerConfig>,
        store: Arc<dyn Store>,
        pki: Arc<Pki>,
        clock: Arc<dyn Clock>,
        api_token_sha256: [u8; 32],
    ) -> Self {
        let arns = Arns::new(&config.region, &config.account_id);
        let (live, _) = broadcast::channel(LIVE_BUFFER);
        let state = AppState {
            config,
            store,
            pki,
            clock,
            arns,
            api_token_sha256,
            sessions: Arc::new(Sessions::default()),
            mitigation_stats: Arc::default(),
            listeners: Arc::default(),
            live,
            live_stop: Arc::new(watch::channel(false).0),
        };
        state.subscribe_registry(Arc::new(LiveRegistry(state.live.clone())));
        state
    }

    /// A receiver of every live event from now on.
    pub fn subscribe_live(&self) -> broadcast::Receiver<LiveEvent> {
        self.live.subscribe()
    }

    /// Turns true when the server shuts down: live streams end so HTTP can finish.
    pub fn live_stopped(&self) -> watch::Receiver<bool> {
        self.live_stop.subscribe()
    }

    /// Ends every live stream (server shutdown).
    pub fn stop_live(&self) {
        self.live_stop.send_replace(true);
    }

    /// Whether anyone listens; publishers skip building events when nobody does.
    pub fn live_wanted(&self) -> bool {
        self.live.receiver_count() > 0
    }

    /// Publishes a live event; never waits (a full buffer drops the oldest for lagging readers).
    pub fn emit(&self, event: LiveEvent) {
        let _ = self.live.send(event);
    }

    /// The live event of an accepted report, or `None` when nobody listens.
    pub fn live_report(&self, thing: &str, now_ms: i64, points: &[Datapoint]) -> Option<LiveEvent> {
        if !self.live_wanted() {
            return None;
        }
        let metrics = points
            .iter()
            .map(|p| (p.metric.to_string(), serde_json::to_value(&p.value).unwrap_or(Value::Null)))
            .collect();
        Some(LiveEvent::Report { thing: thing.to_owned(), timestamp: now_ms as f64 / 1000.0, metrics })
    }

    /// The live events of recorded violation events (none when nobody listens).
    pub fn live_violations(&self, changes: &[ViolationChange]) -> Vec<LiveEvent> {
        if !self.live_wanted() {
            return Vec::new();
        }
        changes
            .iter()
            .filter_map(|c| match c {
                ViolationChange::Event(e) => Some(LiveEvent::Violation {
                    violation_id: e.violation_id.clone(),
                    event: e.event_type.as_str().to_owned(),
                    thing: e.thing.clone(),
                    security_profile: e.security_profile.clone(),
                    behavior: e.behavior.clone(),
                    value: serde_json::from_str(&e.metric_value).unwrap_or(Value::Null),
                    timestamp: e.event_time_ms as f64 / 1000.0,
                }),
                _ => None,
            })
            .collect()
    }

    /// The live event of a broker session starting or ending, if `event` is one.
    pub fn emit_session(&self, event: &warden_broker::BrokerEvent) {
        use warden_broker::BrokerEvent;
        let (identity, connected) = match event {
            BrokerEvent::Connected(identity) => (identity, true),
            BrokerEvent::Disconnected { identity, .. } => (identity, false),
            _ => return,
        };
        if self.live_wanted() {
            self.emit(LiveEvent::Session { thing: identity.thing.clone(), connected });
        }
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Registers a listener for registry changes (the MQTT authorizer).
    pub fn subscribe_registry(&self, listener: Arc<dyn RegistryListener>) {
        self.listeners.lock().expect("listeners lock").push(listener);
    }

    /// Tells every listener about a committed change and waits for them. Call it after the
    /// store write succeeded, before answering the request.
    pub async fn registry_changed(&self, change: RegistryChange) {
        // Clone the list so no lock is held across the awaits.
        let listeners = self.listeners.lock().expect("listeners lock").clone();
        for l in listeners {
            l.registry_changed(&change).await;
        }
    }
}

/// Forwards the registry changes the dashboard shows (memberships, certificates) to the bus.
struct LiveRegistry(broadcast::Sender<LiveEvent>);

#[async_trait::async_trait]
impl RegistryListener for LiveRegistry {
    async fn registry_changed(&self, change: &RegistryChange) {
        let event = match change {
            RegistryChange::ThingGroups { thing } => LiveEvent::Groups { thing: Some(thing.clone()) },
            RegistryChange::ThingGroupDeleted { .. } | RegistryChange::Memberships => {
                LiveEvent::Groups { thing: None }
            }
            RegistryChange::Certificate { certificate_id } => {
                LiveEvent::Certificate { certificate_id: certificate_id.clone() }
            }
            _ => return,
        };
        let _ = self.0.send(event);
    }
}
