//! The running fleet: every device a real MQTT 5 client over TLS with its own certificate,
//! publishing the reports of its [`DeviceModel`] and, optionally, telemetry on a second
//! connection, as a device's agent and application would.
//!
//! Per device there is one task that owns its model and its schedule (reports, telemetry,
//! misbehaviour deadlines, commands), and one task per connection that drives rumqttc's event
//! loop: it (re)connects, subscribes to the report replies and turns what comes back into
//! counters and [`DeviceEvent`]s. The tasks share a [`DeviceShared`] of atomics, which is also
//! what [`Fleet::status`] reads, so a status of 10,000 devices costs no task a message.
//!
//! Connections: the agent's (client id = thing, reports and their replies) and, with telemetry
//! on, the application's (`{thing}/app`, `things/{thing}/telemetry` at QoS 1). MQTT 5, so that a
//! refused PUBLISH comes back as PUBACK 0x87 (a quarantined device's telemetry, `auth-errors`)
//! while the session stays up; on MQTT 3.1.1 the server would close it.
//!
//! Like the agent, a device never queues reports while offline: a report due while its agent
//! connection is down is skipped, and the next one covers the gap.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rumqttc::tokio_rustls::rustls::{
    self, ClientConfig, RootCertStore,
    client::{Resumption, WebPkiServerVerifier},
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _},
};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, PubAckReason};
use rumqttc::v5::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions};
use rumqttc::{Outgoing, TlsConfiguration, Transport};
use serde::Serialize;
use tokio::sync::{Semaphore, broadcast, mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use warden_wire::{Format, Names, ReplyStatus, ReportTopic, TopicKind, decode_reply, encode_report};

use crate::class::{ClassMix, DeviceClass};
use crate::identity::Identity;
use crate::misbehaviour::{Misbehaviour, forbidden_topics};
use crate::model::{DeviceModel, MqttLink, Timing, WireTraffic};
use crate::rng::{Rng, Stream};

/// Where and how the fleet runs.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// The MQTT endpoint's host (also the name its TLS certificate must carry) and port.
    pub mqtt_host: String,
    pub mqtt_port: u16,
    /// The CA the endpoint's certificate chains to (`GET /warden/ca.pem`).
    pub ca_pem: String,
    pub seed: u64,
    pub mix: ClassMix,
    pub timing: Timing,
    /// Telemetry interval of the application connection; `None`: no application connection.
    pub telemetry: Option<Duration>,
    pub format: Format,
    pub names: Names,
    /// TLS handshakes in flight at once: they are CPU-heavy on both ends, and 10,000 at once
    /// would only time out.
    pub connect_concurrency: usize,
}

impl FleetConfig {
    /// A fleet against `mqtt_host:mqtt_port` with the defaults of `warden sim`.
    pub fn new(mqtt_host: &str, mqtt_port: u16, ca_pem: &str) -> FleetConfig {
        FleetConfig {
            mqtt_host: mqtt_host.to_owned(),
            mqtt_port,
            ca_pem: ca_pem.to_owned(),
            seed: 1,
            mix: ClassMix::default(),
            timing: Timing { period: Duration::from_secs(301), speedup: 1.0, start_epoch_ms: now_epoch_ms() },
            telemetry: Some(Duration::from_secs(5)),
            format: Format::Cbor,
            names: Names::Short,
            connect_concurrency: 64,
        }
    }
}

/// One device to run: its number in the fleet (which draws its traits) and its identity.
#[derive(Debug, Clone)]
pub struct SimDevice {
    pub index: u64,
    pub identity: Identity,
}

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("the CA certificate: {0}")]
    Ca(String),
    #[error("the certificate or key of {thing}: {why}")]
    Identity { thing: String, why: String },
    #[error("no device {0} in this fleet")]
    UnknownThing(String),
    #[error("device {0} has stopped")]
    Stopped(String),
}

/// One of a device's two MQTT connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Link {
    /// The agent's: client id = thing; reports and their replies.
    Agent,
    /// The application's: client id `{thing}/app`; telemetry.
    App,
}

/// What happened to a device, as the demo and the live summary watch it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum DeviceEvent {
    Connected {
        thing: String,
        link: Link,
    },
    /// The server refused the CONNECT (e.g. the certificate was deactivated).
    ConnectionRefused {
        thing: String,
        link: Link,
        reason: String,
    },
    /// An open connection ended, or could not be opened.
    ConnectionClosed {
        thing: String,
        link: Link,
        reason: String,
    },
    #[serde(rename_all = "camelCase")]
    ReportAccepted {
        thing: String,
        report_id: u64,
    },
    #[serde(rename_all = "camelCase")]
    ReportRejected {
        thing: String,
        report_id: Option<u64>,
        code: String,
        message: String,
    },
    /// The server refused a PUBLISH (PUBACK 0x87): a forbidden topic, or a quarantine.
    PublishDenied {
        thing: String,
        link: Link,
        topic: Option<String>,
    },
    MisbehaviourStarted {
        thing: String,
        kind: Misbehaviour,
    },
    MisbehaviourStopped {
        thing: String,
        kind: Misbehaviour,
    },
}

impl Serialize for Misbehaviour {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl Serialize for DeviceClass {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The state of one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LinkState {
    Connecting,
    Connected,
    /// The last CONNECT was refused by the server.
    Refused,
    /// The connection is down, and will be tried again.
    Closed,
}

impl LinkState {
    fn from_u8(v: u8) -> LinkState {
        match v {
            1 => LinkState::Connected,
            2 => LinkState::Refused,
            3 => LinkState::Closed,
            _ => LinkState::Connecting,
        }
    }
}

/// One connection's counters, shared by its task and the device's.
#[derive(Debug, Default)]
struct LinkShared {
    state: AtomicU8,
    connects: AtomicU64,
    closes: AtomicU64,
    refusals: AtomicU64,
    denied: AtomicU64,
    last_error: Mutex<Option<String>>,
    /// Topics of QoS 1 publishes handed to the client and not yet seen on the wire, in order:
    /// how a PUBACK's packet id is traced back to its topic. The device task pushes, the
    /// connection task pops; a plain mutex, held for a push or a pop and never across an await.
    pending: Mutex<VecDeque<Arc<str>>>,
}

impl LinkShared {
    fn state(&self) -> LinkState {
        LinkState::from_u8(self.state.load(Relaxed))
    }

    fn set(&self, state: LinkState) {
        self.state.store(state as u8, Relaxed);
    }

    fn status(&self) -> LinkStatus {
        LinkStatus {
            state: self.state(),
            connects: self.connects.load(Relaxed),
            closes: self.closes.load(Relaxed),
            refusals: self.refusals.load(Relaxed),
            publish_denied: self.denied.load(Relaxed),
            last_error: lock(&self.last_error).clone(),
        }
    }
}

/// What a device's tasks share. Counters only grow.
#[derive(Debug)]
struct DeviceShared {
    thing: String,
    class: DeviceClass,
    agent: LinkShared,
    app: Option<LinkShared>,
    reports_sent: AtomicU64,
    reports_skipped: AtomicU64,
    reports_accepted: AtomicU64,
    reports_rejected: AtomicU64,
    last_rejection: Mutex<Option<String>>,
    telemetry_sent: AtomicU64,
    telemetry_skipped: AtomicU64,
    /// The last telemetry message was refused: the device is quarantined, as it sees it.
    telemetry_denied: AtomicBool,
    /// Real MQTT traffic since the last report; both connection tasks and the device task add
    /// to it, the device task takes it for each report. Never held across an await.
    wire: Mutex<WireTraffic>,
    /// Active misbehaviours and when each ends, mirrored from the device task for status.
    active: Mutex<Vec<(Misbehaviour, Option<Instant>)>>,
    /// On while `reconnect-storm` is: the connection tasks watch it.
    storm: watch::Sender<bool>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panicking holder cannot leave these plain values inconsistent.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A device's connection, as status shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LinkStatus {
    pub state: LinkState,
    pub connects: u64,
    pub closes: u64,
    pub refusals: u64,
    pub publish_denied: u64,
    pub last_error: Option<String>,
}

/// An active misbehaviour, as status shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActiveStatus {
    pub kind: Misbehaviour,
    /// Seconds until it stops by itself, if it was started `--for` a while.
    pub remaining_s: Option<f64>,
}

/// One device's status.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceStatus {
    pub thing: String,
    pub class: DeviceClass,
    pub agent: LinkStatus,
    pub app: Option<LinkStatus>,
    pub reports_sent: u64,
    /// Reports due while the agent connection was down (not sent, covered by the next one).
    pub reports_skipped: u64,
    pub reports_accepted: u64,
    pub reports_rejected: u64,
    pub last_rejection: Option<String>,
    pub telemetry_sent: u64,
    pub telemetry_skipped: u64,
    /// The last telemetry message was refused, or the agent's CONNECT is: contained, as far
    /// as the device can tell.
    pub contained: bool,
    pub misbehaving: Vec<ActiveStatus>,
}

/// The whole fleet in numbers.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FleetTotals {
    pub devices: u64,
    pub agent_connected: u64,
    pub app_links: u64,
    pub app_connected: u64,
    pub reports_sent: u64,
    pub reports_skipped: u64,
    pub reports_accepted: u64,
    pub reports_rejected: u64,
    pub telemetry_sent: u64,
    pub telemetry_skipped: u64,
    pub publish_denied: u64,
    pub connects: u64,
    pub refusals: u64,
    pub misbehaving: u64,
    pub contained: u64,
}

/// A command to one device, answered when the device applied it.
#[derive(Debug)]
enum Command {
    Misbehave { kind: Misbehaviour, duration: Option<Duration>, done: oneshot::Sender<()> },
    Calm { kind: Option<Misbehaviour>, done: oneshot::Sender<bool> },
}

/// A device as the fleet holds it.
#[derive(Debug)]
struct Member {
    shared: Arc<DeviceShared>,
    commands: mpsc::Sender<Command>,
}

/// What every task of the fleet shares.
#[derive(Debug)]
struct FleetCtx {
    config: FleetConfig,
    /// The MQTT endpoint's address, as reports list the connection to it.
    remote: SocketAddr,
    start: Instant,
    connect_slots: Semaphore,
    events: broadcast::Sender<DeviceEvent>,
}

impl FleetCtx {
    fn emit(&self, event: impl FnOnce() -> DeviceEvent) {
        // Built only when someone listens: 10,000 devices make many.
        if self.events.receiver_count() > 0 {
            let _ = self.events.send(event());
        }
    }
}

/// A running fleet. Dropping it without [`Fleet::shutdown`] aborts its tasks.
#[derive(Debug)]
pub struct Fleet {
    ctx: Arc<FleetCtx>,
    /// In the order the devices were given.
    members: Vec<Member>,
    by_thing: HashMap<String, usize>,
    /// Every device and connection task, stopped and awaited at shutdown (which takes them out:
    /// a plain mutex, never held across an await).
    tasks: Mutex<JoinSet<()>>,
    stop: watch::Sender<bool>,
}

/// QoS 1 publishes a connection has in flight at most; more wait in the client's queue.
const INFLIGHT: u16 = 16;

/// Events kept for a slow listener before it starts losing them.
const EVENT_BUFFER: usize = 4096;

impl Fleet {
    /// Starts every device: each connects (at most `connect_concurrency` at once) and reports
    /// on its schedule. Returns at once; [`Fleet::totals`] shows them come up.
    pub async fn start(config: FleetConfig, devices: Vec<SimDevice>) -> Result<Fleet, FleetError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(config.ca_pem.as_bytes()) {
            let cert = cert.map_err(|e| FleetError::Ca(e.to_string()))?;
            roots.add(cert).map_err(|e| FleetError::Ca(e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(FleetError::Ca("no certificate in the PEM".into()));
        }
        let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| FleetError::Ca(e.to_string()))?;
        let remote = tokio::net::lookup_host((config.mqtt_host.as_str(), config.mqtt_port))
            .await
            .ok()
            .and_then(|mut addrs| addrs.next())
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], config.mqtt_port)));
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let ctx = Arc::new(FleetCtx {
            connect_slots: Semaphore::new(config.connect_concurrency.max(1)),
            remote,
            start: Instant::now(),
            events,
            config,
        });
        let (stop, _) = watch::channel(false);
        let mut fleet = Fleet {
            ctx: ctx.clone(),
            members: Vec::new(),
            by_thing: HashMap::new(),
            tasks: Mutex::new(JoinSet::new()),
            stop,
        };
        for device in devices {
            let tls = client_config(&provider, &verifier, &device.identity)?;
            fleet.spawn(device, tls);
        }
        Ok(fleet)
    }

    fn spawn(&mut self, device: SimDevice, tls: Arc<ClientConfig>) {
        let ctx = &self.ctx;
        let tasks = self.tasks.get_mut().unwrap_or_else(PoisonError::into_inner);
        let config = &ctx.config;
        let thing = device.identity.thing.clone();
        let model = DeviceModel::new(config.seed, device.index, &config.mix, config.timing);
        let (storm, _) = watch::channel(false);
        let shared = Arc::new(DeviceShared {
            thing: thing.clone(),
            class: model.traits.class,
            agent: LinkShared::default(),
            app: config.telemetry.map(|_| LinkShared::default()),
            reports_sent: AtomicU64::new(0),
            reports_skipped: AtomicU64::new(0),
            reports_accepted: AtomicU64::new(0),
            reports_rejected: AtomicU64::new(0),
            last_rejection: Mutex::new(None),
            telemetry_sent: AtomicU64::new(0),
            telemetry_skipped: AtomicU64::new(0),
            telemetry_denied: AtomicBool::new(false),
            wire: Mutex::new(WireTraffic::default()),
            active: Mutex::new(Vec::new()),
            storm,
        });
        // Reports reset the keepalive; a margin over the period keeps an idle device silent.
        let keep_alive =
            |every: Duration| (every * 2 + Duration::from_secs(30)).min(Duration::from_secs(65_535));
        let agent_options = mqtt_options(config, &thing, tls.clone(), keep_alive(config.timing.period));
        let (agent, agent_loop) = AsyncClient::new(agent_options, 8);
        let reply_filter = format!("$aws/things/{thing}/defender/metrics/{}/+", config.format.as_str());
        tasks.spawn(link_task(
            ctx.clone(),
            shared.clone(),
            Link::Agent,
            agent.clone(),
            agent_loop,
            Some(reply_filter),
            self.stop.subscribe(),
        ));
        let app = config.telemetry.map(|every| {
            let options = mqtt_options(config, &format!("{thing}/app"), tls, keep_alive(every));
            let (app, app_loop) = AsyncClient::new(options, 16);
            tasks.spawn(link_task(
                ctx.clone(),
                shared.clone(),
                Link::App,
                app.clone(),
                app_loop,
                None,
                self.stop.subscribe(),
            ));
            app
        });
        let (commands, command_rx) = mpsc::channel(8);
        tasks.spawn(device_task(
            ctx.clone(),
            shared.clone(),
            model,
            agent,
            app,
            command_rx,
            self.stop.subscribe(),
        ));
        self.by_thing.insert(thing, self.members.len());
        self.members.push(Member { shared, commands });
    }

    /// The fleet's devices, in the order given.
    pub fn things(&self) -> impl Iterator<Item = &str> {
        self.members.iter().map(|m| m.shared.thing.as_str())
    }

    /// Events from now on. A listener that falls more than 4,096 events behind loses the oldest
    /// (`RecvError::Lagged`).
    pub fn events(&self) -> broadcast::Receiver<DeviceEvent> {
        self.ctx.events.subscribe()
    }

    fn member(&self, thing: &str) -> Result<&Member, FleetError> {
        self.by_thing
            .get(thing)
            .map(|&i| &self.members[i])
            .ok_or_else(|| FleetError::UnknownThing(thing.to_owned()))
    }

    /// Starts `kind` on `thing`, for `duration` or until calmed; returns once the device has
    /// applied it (its next report shows it).
    pub async fn misbehave(
        &self,
        thing: &str,
        kind: Misbehaviour,
        duration: Option<Duration>,
    ) -> Result<(), FleetError> {
        let (done, applied) = oneshot::channel();
        let stopped = || FleetError::Stopped(thing.to_owned());
        self.member(thing)?
            .commands
            .send(Command::Misbehave { kind, duration, done })
            .await
            .map_err(|_| stopped())?;
        applied.await.map_err(|_| stopped())
    }

    /// Stops `kind` (or every misbehaviour) on `thing`; whether anything was on.
    pub async fn calm(&self, thing: &str, kind: Option<Misbehaviour>) -> Result<bool, FleetError> {
        let (done, applied) = oneshot::channel();
        let stopped = || FleetError::Stopped(thing.to_owned());
        self.member(thing)?.commands.send(Command::Calm { kind, done }).await.map_err(|_| stopped())?;
        applied.await.map_err(|_| stopped())
    }

    /// One device's status.
    pub fn device(&self, thing: &str) -> Result<DeviceStatus, FleetError> {
        Ok(status(&self.member(thing)?.shared))
    }

    /// Every device's status, in the order given.
    pub fn devices(&self) -> Vec<DeviceStatus> {
        self.members.iter().map(|m| status(&m.shared)).collect()
    }

    /// The whole fleet in numbers.
    pub fn totals(&self) -> FleetTotals {
        let mut t = FleetTotals { devices: self.members.len() as u64, ..FleetTotals::default() };
        for m in &self.members {
            let s = &m.shared;
            t.agent_connected += u64::from(s.agent.state() == LinkState::Connected);
            t.reports_sent += s.reports_sent.load(Relaxed);
            t.reports_skipped += s.reports_skipped.load(Relaxed);
            t.reports_accepted += s.reports_accepted.load(Relaxed);
            t.reports_rejected += s.reports_rejected.load(Relaxed);
            t.telemetry_sent += s.telemetry_sent.load(Relaxed);
            t.telemetry_skipped += s.telemetry_skipped.load(Relaxed);
            t.misbehaving += u64::from(!lock(&s.active).is_empty());
            t.contained += u64::from(contained(s));
            for link in std::iter::once(&s.agent).chain(s.app.as_ref()) {
                t.publish_denied += link.denied.load(Relaxed);
                t.connects += link.connects.load(Relaxed);
                t.refusals += link.refusals.load(Relaxed);
            }
            if let Some(app) = &s.app {
                t.app_links += 1;
                t.app_connected += u64::from(app.state() == LinkState::Connected);
            }
        }
        t
    }

    /// How long the fleet has been running.
    pub fn uptime(&self) -> Duration {
        self.ctx.start.elapsed()
    }

    /// Stops every device: each connection says DISCONNECT (bounded wait), then every task is
    /// awaited. Later calls return at once.
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        let mut tasks = std::mem::take(&mut *lock(&self.tasks));
        while tasks.join_next().await.is_some() {}
    }
}

fn contained(s: &DeviceShared) -> bool {
    s.telemetry_denied.load(Relaxed) || s.agent.state() == LinkState::Refused
}

fn status(s: &DeviceShared) -> DeviceStatus {
    let now = Instant::now();
    DeviceStatus {
        thing: s.thing.clone(),
        class: s.class,
        agent: s.agent.status(),
        app: s.app.as_ref().map(LinkShared::status),
        reports_sent: s.reports_sent.load(Relaxed),
        reports_skipped: s.reports_skipped.load(Relaxed),
        reports_accepted: s.reports_accepted.load(Relaxed),
        reports_rejected: s.reports_rejected.load(Relaxed),
        last_rejection: lock(&s.last_rejection).clone(),
        telemetry_sent: s.telemetry_sent.load(Relaxed),
        telemetry_skipped: s.telemetry_skipped.load(Relaxed),
        contained: contained(s),
        misbehaving: lock(&s.active)
            .iter()
            .map(|(kind, until)| ActiveStatus {
                kind: *kind,
                remaining_s: until.map(|u| u.saturating_duration_since(now).as_secs_f64()),
            })
            .collect(),
    }
}

/// A device's TLS client configuration: its certificate and key, the fleet's trust in the
/// server, and a session cache for the one server it talks to (TLS 1.3 resumption on
/// reconnect, as the agent does), kept small: a default cache per device would cost 10,000
/// devices tens of megabytes.
fn client_config(
    provider: &Arc<rustls::crypto::CryptoProvider>,
    verifier: &Arc<WebPkiServerVerifier>,
    identity: &Identity,
) -> Result<Arc<ClientConfig>, FleetError> {
    let bad = |why: String| FleetError::Identity { thing: identity.thing.clone(), why };
    let chain = CertificateDer::pem_slice_iter(identity.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    let key = PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes()).map_err(|e| bad(e.to_string()))?;
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_webpki_verifier(verifier.clone())
        .with_client_auth_cert(chain, key)
        .map_err(|e| bad(e.to_string()))?;
    config.resumption = Resumption::in_memory_sessions(8);
    Ok(Arc::new(config))
}

fn mqtt_options(
    config: &FleetConfig,
    client_id: &str,
    tls: Arc<ClientConfig>,
    keep_alive: Duration,
) -> MqttOptions {
    let mut options = MqttOptions::new(client_id, config.mqtt_host.clone(), config.mqtt_port);
    options.set_transport(Transport::Tls(TlsConfiguration::Rustls(tls)));
    options.set_keep_alive(keep_alive);
    options.set_clean_start(true);
    // Replies are small; large-payload telemetry goes out, never in.
    options.set_max_packet_size(Some(128 * 1024));
    options.set_connection_timeout(30);
    // rumqttc keeps a slot per possible packet id in flight, 65,535 by default: 13 MB per
    // connection. A device has a few QoS 1 publishes in flight at most.
    options.set_outgoing_inflight_upper_limit(INFLIGHT);
    options
}

/// The wall clock in epoch milliseconds, as reports carry it.
pub fn now_epoch_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// The schedule of one device: reports, telemetry, misbehaviour deadlines and commands.
async fn device_task(
    ctx: Arc<FleetCtx>,
    shared: Arc<DeviceShared>,
    mut model: DeviceModel,
    agent: AsyncClient,
    app: Option<AsyncClient>,
    mut commands: mpsc::Receiver<Command>,
    mut stop: watch::Receiver<bool>,
) {
    let config = &ctx.config;
    let timing = model.timing();
    let report_phase = model.traits.report_phase;
    let mut n = timing.next_report(report_phase, ctx.start.elapsed());
    let telemetry_phase = model.traits.telemetry_phase;
    let mut k = 0u64;
    let mut next_telemetry = config.telemetry.map(|every| ctx.start + every.mul_f64(telemetry_phase));
    let report_topic = ReportTopic::new(&shared.thing, config.format, TopicKind::Report).to_string();
    let telemetry_topic: Arc<str> = format!("things/{}/telemetry", shared.thing).into();
    let forbidden: Vec<Arc<str>> = forbidden_topics(&shared.thing).into_iter().map(Arc::from).collect();
    let mut deadlines: Vec<(Misbehaviour, Instant)> = Vec::new();
    loop {
        let next_report = ctx.start + timing.due(report_phase, n);
        let next_deadline = deadlines.iter().map(|(_, at)| *at).min();
        tokio::select! {
            _ = stop.changed() => break,
            _ = tokio::time::sleep_until(next_report) => {
                expire(&ctx, &shared, &mut model, &mut deadlines);
                report(&ctx, &shared, &mut model, n, &agent, &report_topic, app.is_none().then_some(&forbidden));
                n = timing.next_report(report_phase, ctx.start.elapsed()).max(n + 1);
            }
            _ = sleep_until_opt(next_telemetry) => {
                let every = config.telemetry.expect("telemetry is scheduled only when on");
                expire(&ctx, &shared, &mut model, &mut deadlines);
                if let (Some(app), Some(link)) = (&app, &shared.app) {
                    let sim_s = timing.start_epoch_ms as f64 / 1000.0 + ctx.start.elapsed().as_secs_f64() * timing.speedup;
                    let payload = model.telemetry(k, sim_s, every);
                    telemetry(&shared, &model, link, app, &telemetry_topic, payload, &forbidden);
                }
                k += 1;
                let elapsed = ctx.start.elapsed().as_secs_f64() / every.as_secs_f64() - telemetry_phase;
                k = k.max(elapsed.ceil().max(0.0) as u64);
                next_telemetry = Some(ctx.start + every.mul_f64(telemetry_phase + k as f64));
            }
            _ = sleep_until_opt(next_deadline) => expire(&ctx, &shared, &mut model, &mut deadlines),
            command = commands.recv() => match command {
                None => break,
                Some(Command::Misbehave { kind, duration, done }) => {
                    model.misbehave(kind, n);
                    deadlines.retain(|(k, _)| *k != kind);
                    let until = duration.map(|d| Instant::now() + d);
                    if let Some(at) = until {
                        deadlines.push((kind, at));
                    }
                    {
                        let mut active = lock(&shared.active);
                        active.retain(|(k, _)| *k != kind);
                        active.push((kind, until));
                    }
                    if kind == Misbehaviour::ReconnectStorm {
                        shared.storm.send_replace(true);
                    }
                    tracing::info!(thing = %shared.thing, %kind, ?duration, "misbehaving");
                    ctx.emit(|| DeviceEvent::MisbehaviourStarted { thing: shared.thing.clone(), kind });
                    let _ = done.send(());
                }
                Some(Command::Calm { kind, done }) => {
                    let stopped: Vec<Misbehaviour> = model.active().filter(|a| kind.is_none_or(|k| k == *a)).collect();
                    model.calm(kind);
                    deadlines.retain(|(k, _)| !stopped.contains(k));
                    stopped_misbehaving(&ctx, &shared, &stopped);
                    let _ = done.send(!stopped.is_empty());
                }
            },
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Stops the misbehaviours whose time is up.
fn expire(
    ctx: &FleetCtx,
    shared: &DeviceShared,
    model: &mut DeviceModel,
    deadlines: &mut Vec<(Misbehaviour, Instant)>,
) {
    let now = Instant::now();
    let due: Vec<Misbehaviour> = deadlines.iter().filter(|(_, at)| *at <= now).map(|(k, _)| *k).collect();
    if due.is_empty() {
        return;
    }
    deadlines.retain(|(_, at)| *at > now);
    for kind in &due {
        model.calm(Some(*kind));
    }
    stopped_misbehaving(ctx, shared, &due);
}

fn stopped_misbehaving(ctx: &FleetCtx, shared: &DeviceShared, stopped: &[Misbehaviour]) {
    lock(&shared.active).retain(|(k, _)| !stopped.contains(k));
    for &kind in stopped {
        if kind == Misbehaviour::ReconnectStorm {
            shared.storm.send_replace(false);
        }
        tracing::info!(thing = %shared.thing, %kind, "calm");
        ctx.emit(|| DeviceEvent::MisbehaviourStopped { thing: shared.thing.clone(), kind });
    }
}

/// Report `n`, if the agent is connected; without an application connection, also what the
/// application's misbehaviours would have sent.
fn report(
    ctx: &FleetCtx,
    shared: &DeviceShared,
    model: &mut DeviceModel,
    n: u64,
    agent: &AsyncClient,
    topic: &str,
    forbidden_without_app: Option<&Vec<Arc<str>>>,
) {
    if shared.agent.state() != LinkState::Connected {
        shared.reports_skipped.fetch_add(1, Relaxed);
        return;
    }
    let mut wire = std::mem::take(&mut *lock(&shared.wire));
    if shared.app.is_none() {
        wire.add(model.offline_large_payload());
    }
    let link = MqttLink { remote: ctx.remote, connects: shared.agent.connects.load(Relaxed) };
    let report = model.report(n, now_epoch_ms(), wire, Some(link));
    let payload = encode_report(&report, ctx.config.format, ctx.config.names);
    let len = payload.len();
    match agent.try_publish(topic, QoS::AtMostOnce, false, payload) {
        Ok(()) => {
            shared.reports_sent.fetch_add(1, Relaxed);
            lock(&shared.wire).publish(topic, len);
        }
        Err(_) => {
            shared.reports_skipped.fetch_add(1, Relaxed);
        }
    }
    if let Some(forbidden) = forbidden_without_app.filter(|_| model.is_active(Misbehaviour::AuthErrors)) {
        for topic in forbidden {
            publish_qos1(shared, &shared.agent, agent, topic, b"{\"temperature\":0}".to_vec());
        }
    }
}

/// One telemetry reading on the application connection, and the forbidden publishes of
/// `auth-errors`.
fn telemetry(
    shared: &DeviceShared,
    model: &DeviceModel,
    link: &LinkShared,
    app: &AsyncClient,
    topic: &Arc<str>,
    payload: Vec<u8>,
    forbidden: &[Arc<str>],
) {
    if link.state() != LinkState::Connected {
        shared.telemetry_skipped.fetch_add(1, Relaxed);
        return;
    }
    if publish_qos1(shared, link, app, topic, payload) {
        shared.telemetry_sent.fetch_add(1, Relaxed);
    } else {
        shared.telemetry_skipped.fetch_add(1, Relaxed);
    }
    if model.is_active(Misbehaviour::AuthErrors) {
        for topic in forbidden {
            publish_qos1(shared, link, app, topic, b"{\"temperature\":0}".to_vec());
        }
    }
}

/// A QoS 1 publish whose PUBACK the connection task traces back to `topic`; whether the
/// client took it.
fn publish_qos1(
    shared: &DeviceShared,
    link: &LinkShared,
    client: &AsyncClient,
    topic: &Arc<str>,
    payload: Vec<u8>,
) -> bool {
    let len = payload.len();
    lock(&link.pending).push_back(topic.clone());
    if client.try_publish(topic.to_string(), QoS::AtLeastOnce, false, payload).is_err() {
        lock(&link.pending).pop_back();
        return false;
    }
    lock(&shared.wire).publish(topic, len);
    true
}

/// Drives one connection: connects (holding one of the fleet's connect slots), subscribes to
/// the replies, handles what comes back, and reconnects with a growing delay when it drops.
async fn link_task(
    ctx: Arc<FleetCtx>,
    shared: Arc<DeviceShared>,
    which: Link,
    client: AsyncClient,
    mut eventloop: EventLoop,
    subscribe: Option<String>,
    mut stop: watch::Receiver<bool>,
) {
    let link = match which {
        Link::Agent => &shared.agent,
        Link::App => shared.app.as_ref().expect("an app task only for a device with an app link"),
    };
    let mut storm = shared.storm.subscribe();
    let mut attempt = 0u32;
    let mut r = Rng::keyed(
        ctx.config.seed,
        Stream::Traits,
        u64::MAX - u64::from(which == Link::App),
        fnv(&shared.thing),
    );
    'connect: loop {
        // Connect, holding a slot. The state stays what the last attempt left (refused, closed)
        // until this one succeeds, so a refused device shows as such while it retries.
        let connected = {
            let slot = tokio::select! {
                _ = stop.changed() => return,
                slot = ctx.connect_slots.acquire() => slot,
            };
            // The semaphore is never closed.
            let Ok(_slot) = slot else { return };
            loop {
                let event = tokio::select! {
                    _ = stop.changed() => return,
                    event = eventloop.poll() => event,
                };
                match event {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => break Ok(()),
                    Ok(_) => {}
                    Err(e) => break Err(e),
                }
            }
        };
        if let Err(e) = connected {
            let refused = matches!(e, ConnectionError::ConnectionRefused(_));
            let reason = e.to_string();
            if refused {
                link.refusals.fetch_add(1, Relaxed);
                link.set(LinkState::Refused);
                ctx.emit(|| DeviceEvent::ConnectionRefused {
                    thing: shared.thing.clone(),
                    link: which,
                    reason: reason.clone(),
                });
            } else {
                link.set(LinkState::Closed);
                ctx.emit(|| DeviceEvent::ConnectionClosed {
                    thing: shared.thing.clone(),
                    link: which,
                    reason: reason.clone(),
                });
            }
            *lock(&link.last_error) = Some(reason);
            attempt += 1;
            if !pause(&mut stop, backoff(attempt, &mut r)).await {
                return;
            }
            continue 'connect;
        }
        attempt = 0;
        link.set(LinkState::Connected);
        link.connects.fetch_add(1, Relaxed);
        lock(&shared.wire).connect();
        lock(&link.pending).clear();
        ctx.emit(|| DeviceEvent::Connected { thing: shared.thing.clone(), link: which });
        if let Some(filter) = &subscribe {
            // Requests queued before a failed attempt are gone: ask on every new session.
            let _ = client.try_subscribe(filter.clone(), QoS::AtMostOnce);
        }
        let mut in_flight: HashMap<u16, Arc<str>> = HashMap::new();
        let mut drop_at = storm_deadline(*storm.borrow(), &mut r);
        let reason = loop {
            let event = tokio::select! {
                _ = stop.changed() => {
                    let _ = client.try_disconnect();
                    // Give the DISCONNECT a moment to go out, as a device shutting down would.
                    let _ = tokio::time::timeout(Duration::from_millis(500), async {
                        while let Ok(event) = eventloop.poll().await {
                            if matches!(event, Event::Outgoing(Outgoing::Disconnect)) {
                                break;
                            }
                        }
                    })
                    .await;
                    return;
                }
                _ = storm.changed() => {
                    drop_at = storm_deadline(*storm.borrow(), &mut r);
                    continue;
                }
                _ = sleep_until_opt(drop_at) => {
                    // A storm drops the connection without DISCONNECT, as a flaky device does.
                    eventloop.clean();
                    break "dropped (reconnect-storm)".to_owned();
                }
                event = eventloop.poll() => event,
            };
            match event {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let topic = String::from_utf8_lossy(&p.topic).into_owned();
                    lock(&shared.wire).receive(&topic, p.payload.len());
                    on_reply(&ctx, &shared, &p.payload);
                }
                Ok(Event::Outgoing(Outgoing::Publish(pkid))) if pkid != 0 => {
                    if let Some(topic) = lock(&link.pending).pop_front() {
                        in_flight.insert(pkid, topic);
                    }
                }
                Ok(Event::Incoming(Packet::PubAck(ack))) => {
                    let topic = in_flight.remove(&ack.pkid);
                    let denied =
                        !matches!(ack.reason, PubAckReason::Success | PubAckReason::NoMatchingSubscribers);
                    let is_telemetry = topic
                        .as_deref()
                        .is_some_and(|t| t.starts_with("things/") && t.ends_with("/telemetry"));
                    if is_telemetry {
                        shared.telemetry_denied.store(denied, Relaxed);
                    }
                    if denied {
                        link.denied.fetch_add(1, Relaxed);
                        ctx.emit(|| DeviceEvent::PublishDenied {
                            thing: shared.thing.clone(),
                            link: which,
                            topic: topic.as_deref().map(str::to_owned),
                        });
                    }
                }
                Ok(_) => {}
                Err(e) => break e.to_string(),
            }
        };
        link.closes.fetch_add(1, Relaxed);
        link.set(LinkState::Closed);
        *lock(&link.last_error) = Some(reason.clone());
        ctx.emit(|| DeviceEvent::ConnectionClosed { thing: shared.thing.clone(), link: which, reason });
        // A storm reconnects at once; otherwise wait a little, as the agent does.
        let wait = if *storm.borrow() { Duration::from_millis(100) } else { backoff(1, &mut r) };
        if !pause(&mut stop, wait).await {
            return;
        }
    }
}

/// When a storm next drops the connection: 1 to 3 seconds after it opened.
fn storm_deadline(storm: bool, r: &mut Rng) -> Option<Instant> {
    storm.then(|| Instant::now() + Duration::from_secs_f64(r.range_f64(1.0, 3.0)))
}

/// The delay before connection attempt `attempt + 1`: 1 s doubling to 60 s, with ±25% jitter so
/// that a fleet cut off at once does not come back at once.
fn backoff(attempt: u32, r: &mut Rng) -> Duration {
    let base = 2f64.powi(attempt.saturating_sub(1).min(6) as i32).min(60.0);
    Duration::from_secs_f64(base * r.range_f64(0.75, 1.25))
}

/// Sleeps unless the fleet stops first; whether to go on.
async fn pause(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    tokio::select! {
        _ = stop.changed() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

/// A reply on the agent connection.
fn on_reply(ctx: &FleetCtx, shared: &DeviceShared, payload: &[u8]) {
    let Ok(reply) = decode_reply(payload, ctx.config.format) else {
        tracing::warn!(thing = %shared.thing, "unreadable reply");
        return;
    };
    match reply.status {
        ReplyStatus::Accepted => {
            shared.reports_accepted.fetch_add(1, Relaxed);
            ctx.emit(|| DeviceEvent::ReportAccepted {
                thing: shared.thing.clone(),
                report_id: reply.report_id.unwrap_or(0),
            });
        }
        ReplyStatus::Rejected { code, message } => {
            shared.reports_rejected.fetch_add(1, Relaxed);
            tracing::warn!(thing = %shared.thing, code = code.as_str(), %message, "report rejected");
            *lock(&shared.last_rejection) = Some(format!("{}: {message}", code.as_str()));
            ctx.emit(|| DeviceEvent::ReportRejected {
                thing: shared.thing.clone(),
                report_id: reply.report_id,
                code: code.as_str().to_owned(),
                message,
            });
        }
    }
}

/// FNV-1a of a thing name: a key for the connection's jitter stream.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}
