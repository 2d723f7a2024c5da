//! A Warden server on 127.0.0.1 with short periods, and fleets of simulated devices against it.

use std::future::Future;
use std::sync::{Arc, Once};
use std::time::Duration;

use serde_json::Value;
use warden_server::config::ServerConfig;
use warden_server::server::RunningServer;
use warden_server::state::SystemClock;
use warden_sim::api::Api;
use warden_sim::class::ClassMix;
use warden_sim::fleet::{DeviceEvent, Fleet, FleetConfig, SimDevice};
use warden_sim::identity::{ProvisionProgress, StateDir, Wanted, provision};
use warden_sim::model::Timing;
use warden_sim::traffic::DeviceTraits;
use warden_store::{DatapointQuery, MetricDatum, PageRequest};

pub const WAIT: Duration = Duration::from_secs(30);

static CRYPTO: Once = Once::new();

/// A server with its own data dir: reports accepted at any rate, each report one detection
/// period, cloud-side metrics every half second.
pub struct Lab {
    pub server: RunningServer,
    pub dir: tempfile::TempDir,
    pub api: Api,
}

pub async fn lab() -> Lab {
    CRYPTO.call_once(|| {
        // The process-wide provider of the server's TLS; the fleet names its own.
        let _ = rumqttc::tokio_rustls::rustls::crypto::aws_lc_rs::default_provider().install_default();
    });
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig { data_dir: dir.path().join("data"), ..ServerConfig::default() };
    config.mqtt.listen = "127.0.0.1:0".parse().unwrap();
    config.http.listen = "127.0.0.1:0".parse().unwrap();
    config.ingest.min_report_period = Duration::ZERO;
    config.cloud_metrics.period = Duration::from_millis(500);
    config.detect.period = Duration::from_secs(1);
    config.alerts.retry_delay = Duration::from_millis(100);
    let server = warden_server::server::start(config, Arc::new(SystemClock)).await.unwrap();
    let api = Api::new(&format!("http://{}", server.http_addr), &server.api_token);
    Lab { server, dir, api }
}

/// A fleet's shape for a test.
#[derive(Debug, Clone)]
pub struct Shape {
    pub devices: u64,
    pub mix: ClassMix,
    pub period: Duration,
    pub speedup: f64,
    pub telemetry: Option<Duration>,
    pub seed: u64,
}

impl Default for Shape {
    fn default() -> Self {
        Shape {
            devices: 5,
            mix: ClassMix::default(),
            period: Duration::from_secs(1),
            // Each 1-second report is five simulated minutes, the cadence the classes (and the
            // workshop's profile) are calibrated for.
            speedup: 300.0,
            telemetry: Some(Duration::from_millis(500)),
            seed: 11,
        }
    }
}

impl Lab {
    pub fn state_dir(&self) -> StateDir {
        StateDir::new(self.dir.path().join("sim"))
    }

    /// Registers (or reuses) the shape's devices through the API, as `warden sim` does, and
    /// starts them; also how far provisioning got.
    pub async fn fleet(&self, shape: &Shape) -> (Fleet, Arc<ProvisionProgress>) {
        let api = self.api.clone();
        let ca_pem = tokio::task::spawn_blocking(move || api.ca_pem()).await.unwrap().unwrap();
        let identities = self.state_dir().identities(&ca_pem).unwrap();
        let wanted: Vec<Wanted> = (0..shape.devices)
            .map(|i| Wanted {
                thing: format!("sim-{i:05}"),
                class: DeviceTraits::draw(shape.seed, i, &shape.mix).class,
            })
            .collect();
        let progress = Arc::new(ProvisionProgress::default());
        let ids = {
            let (api, progress) = (self.api.clone(), progress.clone());
            tokio::task::spawn_blocking(move || {
                provision(&api, &identities, &wanted, "WardenThingPolicy", 4, &progress)
            })
            .await
            .unwrap()
            .unwrap()
        };
        let mut config = FleetConfig::new("127.0.0.1", self.server.mqtt_addr.port(), &ca_pem);
        config.seed = shape.seed;
        config.mix = shape.mix.clone();
        config.timing = Timing {
            period: shape.period,
            speedup: shape.speedup,
            start_epoch_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as i64,
        };
        config.telemetry = shape.telemetry;
        let devices =
            ids.into_iter().zip(0u64..).map(|(identity, index)| SimDevice { index, identity }).collect();
        (Fleet::start(config, devices).await.unwrap(), progress)
    }

    /// Any API request with the server's token; its JSON body (`null` if empty) and status.
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("http://{}{path}", self.server.http_addr);
        let (method, token) = (method.to_owned(), self.server.api_token.clone());
        tokio::task::spawn_blocking(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
            let request = ureq::http::Request::builder()
                .method(method.as_str())
                .uri(url)
                .header("authorization", format!("Bearer {token}"))
                .header("content-type", "application/json")
                .body(body.map(|b| b.to_string()).unwrap_or_default())
                .unwrap();
            let mut response = agent.run(request).unwrap();
            let status = response.status().as_u16();
            let text = response.body_mut().read_to_string().unwrap();
            (status, serde_json::from_str(&text).unwrap_or(Value::Null))
        })
        .await
        .unwrap()
    }

    /// An API request that must succeed.
    pub async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, value) = self.call(method, path, body).await;
        assert!((200..300).contains(&status), "{method} {path}: {status} {value}");
        value
    }

    /// The thing's stored datapoints of `metric`, oldest first.
    pub async fn datapoints(&self, thing: &str, metric: &str) -> Vec<MetricDatum> {
        let query = DatapointQuery {
            thing: thing.to_owned(),
            metric: metric.to_owned(),
            dimension: None,
            start_ms: 0,
            end_ms: i64::MAX / 2,
        };
        let mut items =
            self.server.state.store.query_datapoints(&query, &PageRequest::first(250)).await.unwrap().items;
        items.sort_by_key(|d| d.timestamp_ms);
        items
    }

    /// The counts of a metric's datapoints, oldest first.
    pub async fn counts(&self, thing: &str, metric: &str) -> Vec<u64> {
        self.datapoints(thing, metric).await.iter().filter_map(|d| d.value.count).collect()
    }
}

/// Polls `check` until it gives a value, failing after [`WAIT`] with `what`.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits for the first event matching `f`.
pub async fn next_event<T>(
    events: &mut tokio::sync::broadcast::Receiver<DeviceEvent>,
    what: &str,
    mut f: impl FnMut(&DeviceEvent) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, events.recv()).await {
            Err(_) => panic!("timed out waiting for {what}"),
            Ok(Ok(event)) => {
                if let Some(v) = f(&event) {
                    return v;
                }
            }
            Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {}
            Ok(Err(e)) => panic!("events ended while waiting for {what}: {e}"),
        }
    }
}
