//! Composition: the data dir, the store, the CA, the MQTT endpoint, ingest and the HTTP API,
//! started together and stopped together.
//!
//! One cancellation signal fans out at shutdown: the HTTP server stops accepting and finishes
//! its requests, the broker stops, the ingest loop drains what the broker already handed over,
//! and the store commits its last batch before the process exits.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use warden_broker::{Broker, BrokerConfig, BrokerEvent};
use warden_store::{SqliteStore, Store, StoreError};

use crate::alerts::{AlertStats, Alerts};
use crate::authz::Authorizer;
use crate::cloud::CloudMetrics;
use crate::config::ServerConfig;
use crate::detect::{DetectStats, Detection, DetectionTasks};
use crate::ingest::{Ingest, IngestStats};
use crate::pki::Pki;
use crate::state::{AppState, Clock};

/// The policy a thing gets when it is created with `warden things create`: connect as itself
/// (`{thing}` or `{thing}/{suffix}`, so its agent and its application may hold separate
/// connections), and use its own `$aws/things/{thing}/...` topics and application topics
/// `things/{thing}/...`.
pub const DEFAULT_THING_POLICY: &str = "WardenThingPolicy";
pub const DEFAULT_THING_POLICY_DOCUMENT: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow", "Action": "iot:Connect",
     "Resource": ["arn:aws:iot:*:*:client/${iot:Connection.Thing.ThingName}",
                  "arn:aws:iot:*:*:client/${iot:Connection.Thing.ThingName}/*"]},
    {"Effect": "Allow", "Action": ["iot:Publish", "iot:Receive"],
     "Resource": ["arn:aws:iot:*:*:topic/$aws/things/${iot:Connection.Thing.ThingName}/*",
                  "arn:aws:iot:*:*:topic/things/${iot:Connection.Thing.ThingName}/*"]},
    {"Effect": "Allow", "Action": "iot:Subscribe",
     "Resource": ["arn:aws:iot:*:*:topicfilter/$aws/things/${iot:Connection.Thing.ThingName}/*",
                  "arn:aws:iot:*:*:topicfilter/things/${iot:Connection.Thing.ThingName}/*"]}
  ]
}"#;

/// A running server. Dropping it without [`RunningServer::shutdown`] aborts its tasks.
pub struct RunningServer {
    pub mqtt_addr: SocketAddr,
    pub http_addr: SocketAddr,
    /// The API token (also in `DATA_DIR/api-token`).
    pub api_token: String,
    pub state: AppState,
    pub broker: Arc<Broker>,
    pub ingest_stats: Arc<IngestStats>,
    pub detection: Detection,
    pub alerts: Alerts,
    authorizer: Arc<Authorizer>,
    /// The store behind `state.store`, kept concrete so that shutdown can close it (commit the
    /// writer's queue and join its thread).
    sqlite: Arc<SqliteStore>,
    detection_tasks: DetectionTasks,
    alerts_task: tokio::task::JoinHandle<()>,
    shutdown: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for RunningServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningServer").field("mqtt", &self.mqtt_addr).field("http", &self.http_addr).finish()
    }
}

/// Starts everything; the listeners are bound when this returns.
pub async fn start(config: ServerConfig, clock: Arc<dyn Clock>) -> anyhow::Result<RunningServer> {
    let config = Arc::new(config);
    let data_dir = &config.data_dir;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("data_dir: cannot create {}", data_dir.display()))?;
    let pki = Arc::new(Pki::load_or_create(&data_dir.join("pki")).context("certificate authority")?);
    let server_cert = pki.server_cert(&config.mqtt.server_names).context("server certificate")?;
    let api_token = api_token(data_dir)?;
    let sqlite = Arc::new(SqliteStore::open(data_dir.join("warden.db")).context("opening the database")?);
    let store: Arc<dyn Store> = sqlite.clone();
    let token_hash: [u8; 32] = ring::digest::digest(&ring::digest::SHA256, api_token.as_bytes())
        .as_ref()
        .try_into()
        .expect("SHA-256 is 32 bytes");
    let state = AppState::new(config.clone(), store.clone(), pki.clone(), clock, token_hash);
    ensure_default_policy(&state).await?;

    let authorizer = Authorizer::new(state.clone()).await.context("loading the registry")?;
    state.subscribe_registry(authorizer.clone());
    let broker_config = BrokerConfig::new(
        config.mqtt.listen,
        server_cert.cert_pem.clone(),
        server_cert.key_pem.clone(),
        pki.ca_cert_pem().to_owned(),
    );
    let broker_config =
        BrokerConfig { max_packet_size: config.mqtt.max_payload_bytes + 1024, ..broker_config };
    let (broker, mut events) = Broker::start(broker_config, authorizer.clone())
        .await
        .with_context(|| format!("mqtt.listen: cannot start the MQTT endpoint on {}", config.mqtt.listen))?;
    let broker = Arc::new(broker);
    authorizer.set_broker(broker.clone());
    let mqtt_addr = broker.local_addr();

    let (shutdown, mut stop) = tokio::sync::watch::channel(false);
    let mut events_stop = shutdown.subscribe();
    let (alerts, alerts_task) = Alerts::start(state.clone(), broker.clone());
    let (detection, detection_tasks) = Detection::start(state.clone(), alerts.clone(), shutdown.subscribe())
        .await
        .context("starting detection")?;
    state.subscribe_registry(Arc::new(detection.clone()));
    // Mitigation tasks a stop interrupted run to their end, now that sessions can be told.
    let resume_state = state.clone();
    tokio::spawn(async move { crate::mitigation::resume_unfinished(&resume_state).await });
    let ingest_stats = Arc::new(IngestStats::default());
    let mut ingest = Ingest::new(state.clone(), broker.clone(), detection.clone(), ingest_stats.clone());
    let events_detection = detection.clone();
    let mut cloud = CloudMetrics::new();
    cloud.set_series(detection.dimension_series());
    broker.set_system_delivery_events(cloud.needs_delivery_topics());
    let period = config.cloud_metrics.period;
    let (events_state, events_broker, events_authz) = (state.clone(), broker.clone(), authorizer.clone());
    // One loop sees every broker event in order: ingest needs per-thing order, and the
    // cloud-side aggregation must count each event once. It runs on a thread of its own (its
    // own single-threaded runtime; stores, replies and cloud periods go to the server's
    // runtime): as a task among thousands of session tasks it waited behind them whenever an
    // await yielded to tokio's cooperative budget, and that queue was most of the alert
    // latency's tail (bench/RESULTS.md, session 7).
    let runtime = tokio::runtime::Handle::current();
    let (events_done, events_ended) = tokio::sync::oneshot::channel::<()>();
    let events_loop = async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = events_stop.changed() => break,
                event = events.recv() => {
                    let Some(event) = event else { break };
                    events_state.emit_session(&event);
                    if cloud.set_series(events_detection.dimension_series()) {
                        events_broker.set_system_delivery_events(cloud.needs_delivery_topics());
                    }
                    cloud.observe(&event, |id| events_authz.thing_of(id));
                    if let BrokerEvent::Published { topic, payload, received, .. } = event {
                        ingest.publish(&topic, payload, received).await;
                    }
                }
                _ = tick.tick() => {
                    // The server's own messages (replies) delivered this period, counted by
                    // the broker rather than sent one event each.
                    for (identity, n) in events_broker.take_system_deliveries() {
                        cloud.count_received(&events_authz.thing_of(&identity), n);
                    }
                    let connected = events_broker.sessions().iter().map(|s| (events_authz.thing_of(s).into_owned(), s.remote_addr.ip())).collect::<Vec<_>>();
                    let now_ms = events_state.now_ms();
                    let period = cloud.flush(connected, now_ms);
                    // Evaluated and stored off the event path: with many things this is large,
                    // and awaiting it here would hold up every report behind it.
                    let (state, detection) = (events_state.clone(), events_detection.clone());
                    runtime.spawn(async move {
                        detection.observe_period(&period, now_ms).await;
                        match state.store.append_datapoints(period.points).await {
                            Ok(()) => state.emit(crate::state::LiveEvent::CloudMetrics { timestamp: now_ms as f64 / 1000.0 }),
                            Err(e) => tracing::error!(error = %e, "cannot store cloud-side metrics"),
                        }
                    });
                }
            }
        }
    };
    let events_runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the event thread's runtime")?;
    std::thread::Builder::new()
        .name("warden-events".into())
        .spawn(move || {
            events_runtime.block_on(events_loop);
            let _ = events_done.send(());
        })
        .context("starting the event thread")?;
    let events_task = tokio::spawn(async move {
        let _ = events_ended.await;
    });

    // Retention: whole day tables older than `storage.retention_days` are dropped at start and
    // every hour after.
    let (retention_state, mut retention_stop) = (state.clone(), shutdown.subscribe());
    let retention_task = tokio::spawn(async move {
        let mut hourly = tokio::time::interval(std::time::Duration::from_secs(3600));
        loop {
            tokio::select! {
                _ = retention_stop.changed() => break,
                _ = hourly.tick() => apply_retention(&retention_state).await,
            }
        }
    });

    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("http.listen: cannot listen on {}", config.http.listen))?;
    let http_addr = listener.local_addr()?;
    let app = crate::api::router(state.clone())
        .merge(crate::dashboard::router(state.clone(), &broker))
        .merge(operator_routes(&state, &broker, &ingest_stats, &detection.stats, &alerts.stats));
    let http_task = tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        });
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "HTTP server failed");
        }
    });

    Ok(RunningServer {
        mqtt_addr,
        http_addr,
        api_token,
        state,
        broker,
        ingest_stats,
        detection,
        alerts,
        authorizer,
        sqlite,
        detection_tasks,
        alerts_task,
        shutdown,
        tasks: vec![http_task, events_task, retention_task],
    })
}

impl RunningServer {
    /// Stops accepting, finishes what is in progress, and closes the store.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        // Live-event streams never end on their own; HTTP waits for its connections.
        self.state.stop_live();
        let RunningServer {
            broker,
            tasks,
            authorizer,
            detection,
            alerts,
            detection_tasks,
            alerts_task,
            sqlite,
            ..
        } = self;
        // HTTP finishes its requests; the event thread stops taking events (reports already
        // accepted finish their store writes and replies in their own tasks).
        for t in tasks {
            let _ = t.await;
        }
        // Detection evaluates what it was handed, then its recorder writes the last violations.
        drop(detection);
        let _ = detection_tasks.engine.await;
        let _ = detection_tasks.recorder.await;
        // Queued alerts are handed to their deliveries; retries still waiting end with the process.
        drop(alerts);
        let _ = alerts_task.await;
        authorizer.clear_broker();
        // Reply tasks still in flight hold the broker for a moment.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while Arc::strong_count(&broker) > 1 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        match Arc::try_unwrap(broker) {
            Ok(broker) => broker.shutdown().await,
            Err(_) => tracing::warn!("broker still in use after 5 s; its sessions end with the process"),
        }
        // Last: the writer commits what is still queued (a report whose reply was cut off
        // above is stored all the same) and the database file is closed before we return.
        if let Err(e) = sqlite.close().await {
            tracing::error!(error = %e, "cannot close the database cleanly");
        }
    }
}

/// Unauthenticated routes for operators and devices: Prometheus `/metrics` (counts only, no
/// thing names) and `/warden/ca.pem`, the CA certificate devices must trust (a Warden
/// extension: AWS devices use Amazon's published roots instead).
fn operator_routes(
    state: &AppState,
    broker: &Arc<Broker>,
    ingest: &Arc<IngestStats>,
    detect: &Arc<DetectStats>,
    alerts: &Arc<AlertStats>,
) -> axum::Router {
    use axum::http::header;
    use axum::routing::get;
    let ca = state.pki.ca_cert_pem().to_owned();
    let (broker, ingest, detect, alerts) = (broker.clone(), ingest.clone(), detect.clone(), alerts.clone());
    let mitigation = state.mitigation_stats.clone();
    axum::Router::new()
        .route(
            "/warden/ca.pem",
            get(move || async move { ([(header::CONTENT_TYPE, "application/x-pem-file")], ca) }),
        )
        .route(
            "/metrics",
            get(move || async move {
                let mut text = crate::metrics::render(&broker.stats(), broker.sessions().len(), &ingest);
                text.push_str(&crate::metrics::render_detection(&detect, &alerts, &mitigation));
                ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
            }),
        )
}

/// Drops the datapoints of every UTC day that ended more than `storage.retention_days` ago.
pub async fn apply_retention(state: &AppState) {
    let keep_ms = i64::from(state.config.storage.retention_days) * 86_400_000;
    let first_kept = warden_store::UtcDay::of_timestamp_ms(state.now_ms() - keep_ms);
    match state.store.drop_datapoints_before(first_kept).await {
        Ok(days) if !days.is_empty() => {
            tracing::info!(days = days.len(), before = %first_kept, "dropped old datapoints")
        }
        Ok(_) => {}
        Err(e) => tracing::error!(error = %e, "cannot apply datapoint retention"),
    }
}

/// Reads `DATA_DIR/api-token`, creating it (mode 0600) with 256 random bits on first start.
fn api_token(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join("api-token");
    if let Ok(token) = std::fs::read_to_string(&path) {
        return Ok(token.trim().to_owned());
    }
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| anyhow::anyhow!("no randomness for the API token"))?;
    let token = format!("wdn_{}", hex::encode(bytes));
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    writeln!(f, "{token}")?;
    Ok(token)
}

async fn ensure_default_policy(state: &AppState) -> anyhow::Result<()> {
    match state.store.create_policy(DEFAULT_THING_POLICY, DEFAULT_THING_POLICY_DOCUMENT, state.now_ms()).await
    {
        Ok(_) | Err(StoreError::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(e).context("creating the default thing policy"),
    }
}
