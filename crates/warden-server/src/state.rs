//! What the server's parts share: the store, the CA, the clock, ARNs, and the registry-change
//! notifications that keep the MQTT endpoint's authorization in step with the API.

use std::sync::{Arc, Mutex};

use warden_store::Store;

use crate::config::ServerConfig;
use crate::pki::Pki;

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
    listeners: Arc<Mutex<Vec<Arc<dyn RegistryListener>>>>,
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
        AppState { config, store, pki, clock, arns, api_token_sha256, listeners: Arc::default() }
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
