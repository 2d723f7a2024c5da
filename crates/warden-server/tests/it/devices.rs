//! The server as devices see it: the real `warden_server::server` on 127.0.0.1 with its MQTT/TLS
//! endpoint, registry, policies, ingest and store, driven by real MQTT clients (rumqttc) and
//! the official AWS Device Defender agent.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Once};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use warden_server::config::ServerConfig;
use warden_server::server::{DEFAULT_THING_POLICY, RunningServer};
use warden_server::state::{RegistryChange, SystemClock};
use warden_store::{CertificateStatus, DatapointQuery, NewCertificate, PageRequest};
use warden_wire::{Format, ReplyStatus, decode_reply};

const WAIT: Duration = Duration::from_secs(15);

static CRYPTO: Once = Once::new();

/// A server with its own data dir, short periods for tests.
pub struct Lab {
    pub server: RunningServer,
    pub dir: tempfile::TempDir,
    config: ServerConfig,
}

pub async fn lab(min_report_period: Duration) -> Lab {
    CRYPTO.call_once(|| {
        let _ = rumqttc::tokio_rustls::rustls::crypto::aws_lc_rs::default_provider().install_default();
    });
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig { data_dir: dir.path().join("data"), ..ServerConfig::default() };
    config.mqtt.listen = "127.0.0.1:0".parse().unwrap();
    config.http.listen = "127.0.0.1:0".parse().unwrap();
    config.ingest.min_report_period = min_report_period;
    config.cloud_metrics.period = Duration::from_millis(500);
    // Each report is one whole period: a 300 s behavior judges every report on its own.
    config.detect.period = Duration::from_secs(1);
    config.alerts.retry_delay = Duration::from_millis(100);
    let server = warden_server::server::start(config.clone(), Arc::new(SystemClock)).await.unwrap();
    Lab { server, dir, config }
}

/// Files of a device's identity.
pub struct Device {
    pub certificate_id: String,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

impl Lab {
    /// Stops the server cleanly and starts it again on the same data dir (new ports).
    pub async fn restart(self) -> Lab {
        let Lab { server, dir, config } = self;
        server.shutdown().await;
        let server = warden_server::server::start(config.clone(), Arc::new(SystemClock)).await.unwrap();
        Lab { server, dir, config }
    }

    /// Registers `thing` with a new certificate (CN = thing) carrying the default policy.
    pub async fn device(&self, thing: &str) -> Device {
        let state = &self.server.state;
        let now = state.now_ms();
        state.store.create_thing(thing, BTreeMap::new(), now).await.unwrap();
        let issued = state.pki.issue_thing_cert(thing).unwrap();
        state
            .store
            .create_certificate(NewCertificate {
                certificate_id: issued.certificate_id.clone(),
                pem: issued.cert_pem.clone(),
                status: CertificateStatus::Active,
                ca_certificate_id: None,
                subject_cn: Some(thing.to_owned()),
                created_at_ms: now,
            })
            .await
            .unwrap();
        state.store.attach_thing_principal(thing, &issued.certificate_id).await.unwrap();
        state
            .store
            .attach_policy(DEFAULT_THING_POLICY, &state.arns.certificate(&issued.certificate_id))
            .await
            .unwrap();
        state
            .registry_changed(RegistryChange::Certificate { certificate_id: issued.certificate_id.clone() })
            .await;
        let dir = self.dir.path().join(thing);
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key, ca) = (dir.join("cert.pem"), dir.join("key.pem"), dir.join("ca.pem"));
        std::fs::write(&cert, &issued.cert_pem).unwrap();
        std::fs::write(&key, &issued.key_pem).unwrap();
        std::fs::write(&ca, state.pki.ca_cert_pem()).unwrap();
        Device { certificate_id: issued.certificate_id, cert, key, ca }
    }

    /// An API request with the server's token that must succeed; its JSON body.
    pub async fn api(
        &self,
        method: &str,
        target: &str,
        body: Option<serde_json::Value>,
    ) -> serde_json::Value {
        let auth = format!("Bearer {}", self.server.api_token);
        let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let resp =
            crate::support::request(self.server.http_addr, method, target, &[("authorization", &auth)], body)
                .await;
        assert_eq!(resp.status, 200, "{method} {target}: {}", resp.text());
        if resp.body.is_empty() { serde_json::Value::Null } else { resp.json() }
    }

    pub async fn set_status(&self, device: &Device, status: CertificateStatus) {
        let state = &self.server.state;
        state.store.update_certificate_status(&device.certificate_id, status, state.now_ms()).await.unwrap();
        state
            .registry_changed(RegistryChange::Certificate { certificate_id: device.certificate_id.clone() })
            .await;
    }

    /// An MQTT 3.1.1 client for `device` with `client_id`.
    pub fn client(&self, device: &Device, client_id: &str) -> Client {
        let mut options = MqttOptions::new(client_id, "localhost", self.server.mqtt_addr.port());
        options.set_keep_alive(Duration::from_secs(30));
        options.set_max_packet_size(1024 * 1024, 1024 * 1024);
        options.set_transport(Transport::Tls(TlsConfiguration::Simple {
            ca: std::fs::read(&device.ca).unwrap(),
            alpn: None,
            client_auth: Some((std::fs::read(&device.cert).unwrap(), std::fs::read(&device.key).unwrap())),
        }));
        let (client, eventloop) = AsyncClient::new(options, 64);
        Client { client, eventloop }
    }

    /// The thing's datapoints of `metric` stored so far.
    pub async fn datapoints(&self, thing: &str, metric: &str) -> Vec<warden_store::MetricDatum> {
        self.datapoints_in(thing, metric, None).await
    }

    /// The thing's datapoints of `metric` in the series of `dimension` stored so far.
    pub async fn datapoints_in(
        &self,
        thing: &str,
        metric: &str,
        dimension: Option<&str>,
    ) -> Vec<warden_store::MetricDatum> {
        let query = DatapointQuery {
            thing: thing.to_owned(),
            metric: metric.to_owned(),
            dimension: dimension.map(str::to_owned),
            start_ms: 0,
            end_ms: i64::MAX / 2,
        };
        self.server.state.store.query_datapoints(&query, &PageRequest::first(250)).await.unwrap().items
    }

    /// Waits until the counts of `thing`'s `metric` datapoints add up to at least `min` (cloud
    /// metrics of one event burst may fall into several periods).
    pub async fn wait_total(&self, thing: &str, metric: &str, min: u64) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let total: u64 = self.datapoints(thing, metric).await.iter().filter_map(|d| d.value.count).sum();
            if total >= min {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "{metric} of {thing} stayed at {total} < {min}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `thing` has a datapoint of `metric` matching `f`.
    pub async fn wait_datapoint(
        &self,
        thing: &str,
        metric: &str,
        f: impl Fn(&warden_store::MetricValue) -> bool,
    ) -> warden_store::MetricValue {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(d) = self.datapoints(thing, metric).await.into_iter().find(|d| f(&d.value)) {
                return d.value;
            }
            assert!(tokio::time::Instant::now() < deadline, "no {metric} datapoint for {thing}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

pub struct Client {
    pub client: AsyncClient,
    pub eventloop: EventLoop,
}

impl Client {
    /// Polls until CONNACK; `Err` with the connection error if refused.
    pub async fn connect(&mut self) -> Result<(), String> {
        loop {
            match tokio::time::timeout(WAIT, self.eventloop.poll()).await.expect("connect timed out") {
                Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    /// Polls until a packet matching `f`, failing on a connection error.
    pub async fn until<T>(&mut self, mut f: impl FnMut(&Packet) -> Option<T>) -> Result<T, String> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.eventloop.poll()).await {
                Err(_) => panic!("timed out waiting for a packet"),
                Ok(Ok(Event::Incoming(p))) => {
                    if let Some(t) = f(&p) {
                        return Ok(t);
                    }
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e.to_string()),
            }
        }
    }

    pub async fn subscribe(&mut self, filter: &str) -> Vec<rumqttc::SubscribeReasonCode> {
        self.client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
        self.until(|p| match p {
            Packet::SubAck(ack) => Some(ack.return_codes.clone()),
            _ => None,
        })
        .await
        .unwrap()
    }

    /// Publishes `payload` as a report on `format` and returns the decoded reply.
    pub async fn report(&mut self, thing: &str, format: Format, payload: &[u8]) -> warden_wire::Reply {
        let topic = format!("$aws/things/{thing}/defender/metrics/{}", format.as_str());
        self.client.publish(&topic, QoS::AtLeastOnce, false, payload.to_vec()).await.unwrap();
        let reply = self
            .until(|p| match p {
                Packet::Publish(p) if p.topic.starts_with(&topic) => Some(p.payload.clone()),
                _ => None,
            })
            .await
            .unwrap();
        decode_reply(&reply, format).unwrap()
    }
}

fn captures() -> Vec<(String, Format, Vec<u8>)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../warden-wire/tests/data/captures");
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let path = e.unwrap().path();
            let format = match path.extension()?.to_str()? {
                "json" => Format::Json,
                "cbor" => Format::Cbor,
                _ => return None,
            };
            Some((path.file_name()?.to_string_lossy().into_owned(), format, std::fs::read(&path).unwrap()))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_capture_of_the_official_agent_is_accepted_and_stored() {
    let lab = lab(Duration::ZERO).await;
    for (i, (name, format, payload)) in captures().into_iter().enumerate() {
        // One thing per capture: their report ids are not in file order.
        let thing = format!("capture-{i}");
        let device = lab.device(&thing).await;
        let mut c = lab.client(&device, &thing);
        c.connect().await.unwrap();
        c.subscribe(&format!("$aws/things/{thing}/defender/metrics/+/+")).await;
        let reply = c.report(&thing, format, &payload).await;
        assert_eq!(reply.status, ReplyStatus::Accepted, "{name}: {reply:?}");
        assert_eq!(reply.thing_name, thing);
        let ports = lab.wait_datapoint(&thing, "aws:num-listening-tcp-ports", |v| v.count.is_some()).await;
        assert!(ports.count.unwrap() > 0, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_duplicate_and_throttled_reports_are_rejected_with_their_codes() {
    let lab = lab(Duration::from_secs(3600)).await;
    let device = lab.device("dev-1").await;
    let mut c = lab.client(&device, "dev-1");
    c.connect().await.unwrap();
    c.subscribe("$aws/things/dev-1/defender/metrics/+/+").await;

    let reply = c
        .report("dev-1", Format::Json, br#"{"hed":{"rid":5,"v":"1.0"},"met":{"tp":{"pts":[{"pt":0}]}}}"#)
        .await;
    let ReplyStatus::Rejected { code, message } = reply.status else { panic!("{reply:?}") };
    assert_eq!(code.as_str(), "InvalidPayload");
    assert_eq!(message, "Malformed metrics report: met.tp.pts[0].pt: must be a port number 1-65535, got 0");
    assert_eq!(reply.report_id, Some(5));

    let reply =
        c.report("dev-1", Format::Json, br#"{"hed":{"rid":10,"v":"1.0"},"met":{"ns":{"bo":1}}}"#).await;
    assert_eq!(reply.status, ReplyStatus::Accepted);
    let reply =
        c.report("dev-1", Format::Json, br#"{"hed":{"rid":10,"v":"1.0"},"met":{"ns":{"bo":1}}}"#).await;
    let ReplyStatus::Rejected { code, message } = reply.status else { panic!("{reply:?}") };
    assert_eq!(
        (code.as_str(), message.as_str()),
        ("DuplicateReportId", "report_id 10 is not greater than the last accepted report_id 10")
    );
    let reply = c
        .report(
            "dev-1",
            Format::Cbor,
            &warden_wire::encode_report(
                &warden_wire::MetricReport {
                    metrics: Some(Default::default()),
                    ..warden_wire::MetricReport::new(11)
                },
                Format::Cbor,
                warden_wire::Names::Short,
            ),
        )
        .await;
    let ReplyStatus::Rejected { code, .. } = reply.status else { panic!("{reply:?}") };
    assert_eq!(code.as_str(), "Throttled");

    // Oversized: over the payload limit but within the MQTT packet limit, so it is answered.
    let big = format!(r#"{{"hed":{{"rid":12,"v":"1.0"}},"met":{{}},"pad":"{}"}}"#, "x".repeat(128 * 1024));
    let reply = c.report("dev-1", Format::Json, big.as_bytes()).await;
    let ReplyStatus::Rejected { message, .. } = reply.status else { panic!("{reply:?}") };
    assert!(message.contains("exceeds the limit of 131072 bytes"), "{message}");
    let text = warden_server::metrics::render(&lab.server.broker.stats(), 1, &lab.server.ingest_stats);
    assert!(text.contains("warden_reports_rejected_total{code=\"InvalidPayload\"} 2"), "{text}");
    assert!(text.contains("warden_reports_rejected_total{code=\"DuplicateReportId\"} 1"), "{text}");
    // Every report, whatever its fate, went through ingest's queue once.
    assert!(text.contains("warden_report_queue_seconds_count 5\n"), "{text}");
}

/// The last accepted report id of every thing is read back at the first report after a start,
/// so a report replayed across a restart is still a duplicate, for this thing and no other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_are_rejected_across_a_restart() {
    let lab = lab(Duration::ZERO).await;
    let (one, two) = (lab.device("dev-1").await, lab.device("dev-2").await);
    let report = |id: u64| format!(r#"{{"hed":{{"rid":{id},"v":"1.0"}},"met":{{"ns":{{"bo":1}}}}}}"#);
    for (device, thing) in [(&one, "dev-1"), (&two, "dev-2")] {
        let mut c = lab.client(device, thing);
        c.connect().await.unwrap();
        c.subscribe(&format!("$aws/things/{thing}/defender/metrics/+/+")).await;
        assert_eq!(c.report(thing, Format::Json, report(10).as_bytes()).await.status, ReplyStatus::Accepted);
    }
    let lab = lab.restart().await;
    // dev-2 reports first after the start; dev-1's replay must still be caught.
    let mut c = lab.client(&two, "dev-2");
    c.connect().await.unwrap();
    c.subscribe("$aws/things/dev-2/defender/metrics/+/+").await;
    assert_eq!(c.report("dev-2", Format::Json, report(11).as_bytes()).await.status, ReplyStatus::Accepted);
    let mut c = lab.client(&one, "dev-1");
    c.connect().await.unwrap();
    c.subscribe("$aws/things/dev-1/defender/metrics/+/+").await;
    let replay = c.report("dev-1", Format::Json, report(10).as_bytes()).await;
    let ReplyStatus::Rejected { code, .. } = replay.status else { panic!("{replay:?}") };
    assert_eq!(code.as_str(), "DuplicateReportId");
    assert_eq!(c.report("dev-1", Format::Json, report(11).as_bytes()).await.status, ReplyStatus::Accepted);
    // The replies count as messages the device received (the broker counts the server's own
    // deliveries rather than sending an event each).
    lab.wait_total("dev-1", "aws:num-messages-received", 2).await;
}

/// Reports of many things sent back to back at once, over two worker threads, reach the
/// duplicate check in each thing's order (a report overtaking an earlier one of its thing would
/// make that one a duplicate) while their store writes and replies run concurrently; after a
/// restart the last report of every thing is known again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_to_back_reports_of_many_things_are_checked_in_order_across_a_restart() {
    const THINGS: usize = 8;
    const REPORTS: u64 = 25;
    let lab = lab(Duration::ZERO).await;
    let report = |id: u64| format!(r#"{{"hed":{{"rid":{id},"v":"1.0"}},"met":{{"ns":{{"bo":{id}}}}}}}"#);
    let things: Vec<String> = (0..THINGS).map(|i| format!("dev-{i}")).collect();
    let mut devices = Vec::new();
    let mut clients = Vec::new();
    for thing in &things {
        let device = lab.device(thing).await;
        let mut c = lab.client(&device, thing);
        c.connect().await.unwrap();
        c.subscribe(&format!("$aws/things/{thing}/defender/metrics/+/+")).await;
        let topic = format!("$aws/things/{thing}/defender/metrics/json");
        // Queued in the client; they all go out once its event loop is polled, below.
        for id in 1..=REPORTS {
            c.client.publish(&topic, QoS::AtLeastOnce, false, report(id)).await.unwrap();
        }
        devices.push(device);
        clients.push(c);
    }
    let mut sending = tokio::task::JoinSet::new();
    for mut c in clients {
        sending.spawn(async move {
            let mut replies = Vec::new();
            while replies.len() < REPORTS as usize {
                let payload = c
                    .until(|p| match p {
                        Packet::Publish(p) => Some(p.payload.clone()),
                        _ => None,
                    })
                    .await
                    .unwrap();
                replies.push(decode_reply(&payload, Format::Json).unwrap());
            }
            replies
        });
    }
    while let Some(replies) = sending.join_next().await {
        let mut replies = replies.unwrap();
        // Replies go out as their commits end, not necessarily in order.
        replies.sort_by_key(|r| r.report_id);
        for (reply, id) in replies.iter().zip(1..) {
            assert_eq!((reply.report_id, &reply.status), (Some(id), &ReplyStatus::Accepted), "{replies:?}");
        }
    }
    let lab = lab.restart().await;
    for (device, thing) in devices.iter().zip(&things) {
        let mut c = lab.client(device, thing);
        c.connect().await.unwrap();
        c.subscribe(&format!("$aws/things/{thing}/defender/metrics/+/+")).await;
        let replay = c.report(thing, Format::Json, report(REPORTS).as_bytes()).await;
        let ReplyStatus::Rejected { code, .. } = replay.status else { panic!("{thing}: {replay:?}") };
        assert_eq!(code.as_str(), "DuplicateReportId", "{thing}");
        let next = c.report(thing, Format::Json, report(REPORTS + 1).as_bytes()).await;
        assert_eq!(next.status, ReplyStatus::Accepted, "{thing}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thing_cannot_use_another_things_topics_or_client_id() {
    let lab = lab(Duration::ZERO).await;
    let a = lab.device("thing-a").await;
    let _b = lab.device("thing-b").await;

    // Another thing's client id is refused at CONNECT.
    let mut c = lab.client(&a, "thing-b");
    assert!(c.connect().await.is_err(), "client id of another thing");
    // Its own name with a suffix is fine (agent beside application).
    let mut c = lab.client(&a, "thing-a/agent");
    c.connect().await.unwrap();
    let codes = c.subscribe("$aws/things/thing-b/defender/metrics/json/accepted").await;
    assert_eq!(codes, vec![rumqttc::SubscribeReasonCode::Failure]);
    // MQTT 3.1.1 has no refusal for one PUBLISH: the session is closed.
    c.client
        .publish("$aws/things/thing-b/defender/metrics/json", QoS::AtLeastOnce, false, b"{}".to_vec())
        .await
        .unwrap();
    assert!(c.until(|_| None::<()>).await.is_err(), "publishing to another thing's topic ends the session");
    // Refused CONNECT, denied SUBSCRIBE, denied PUBLISH.
    lab.wait_total("thing-a", "aws:num-authorization-failures", 3).await;
    lab.wait_total("thing-a", "aws:num-connection-attempts", 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deactivated_certificate_is_refused_and_its_session_dropped() {
    let lab = lab(Duration::ZERO).await;
    let device = lab.device("dev-1").await;
    let mut c = lab.client(&device, "dev-1");
    c.connect().await.unwrap();
    c.subscribe("$aws/things/dev-1/defender/metrics/+/+").await;
    lab.set_status(&device, CertificateStatus::Inactive).await;
    assert!(c.until(|_| None::<()>).await.is_err(), "live session dropped at deactivation");
    let mut again = lab.client(&device, "dev-1");
    assert!(again.connect().await.is_err(), "an INACTIVE certificate cannot connect");
    lab.wait_total("dev-1", "aws:num-authorization-failures", 1).await;
    lab.wait_total("dev-1", "aws:num-disconnects", 1).await;
    lab.set_status(&device, CertificateStatus::Active).await;
    let mut back = lab.client(&device, "dev-1");
    back.connect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_garbage_from_one_client_does_not_stop_others() {
    let lab = lab(Duration::ZERO).await;
    let noisy = lab.device("noisy").await;
    let calm = lab.device("calm").await;
    let mut n = lab.client(&noisy, "noisy");
    n.connect().await.unwrap();
    let Client { client, mut eventloop } = n;
    let poller = tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    let flood = tokio::spawn(async move {
        for i in 0..3000u32 {
            let garbage = i.to_le_bytes().repeat(50);
            if client
                .publish("$aws/things/noisy/defender/metrics/cbor", QoS::AtMostOnce, false, garbage)
                .await
                .is_err()
            {
                break;
            }
        }
    });
    let mut c = lab.client(&calm, "calm");
    c.connect().await.unwrap();
    c.subscribe("$aws/things/calm/defender/metrics/+/+").await;
    let reply = c.report("calm", Format::Json, br#"{"hed":{"rid":1,"v":"1.0"},"met":{"ns":{"bo":1}}}"#).await;
    assert_eq!(reply.status, ReplyStatus::Accepted);
    flood.await.unwrap();
    poller.abort();
}

/// The official AWS IoT Device Defender agent (Python, PyPI) in JSON and CBOR, with replies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_aws_agent_is_accepted() {
    let script =
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/tools/run-aws-agent.sh"));
    if !script.exists() {
        assert!(
            std::env::var("WARDEN_REQUIRE_EXTERNAL").as_deref() != Ok("1"),
            "{} is missing",
            script.display()
        );
        eprintln!("skipping: {} not found", script.display());
        return;
    }
    if warden_testkit::require_external("python3").is_none() {
        return;
    }
    let lab = lab(Duration::ZERO).await;
    for (thing, format) in [("aws-agent-json", "json"), ("aws-agent-cbor", "cbor")] {
        let device = lab.device(thing).await;
        let out = tokio::process::Command::new("bash")
            .arg(&script)
            .env("HOST", "localhost")
            .env("PORT", lab.server.mqtt_addr.port().to_string())
            .env("CA", &device.ca)
            .env("CERT", &device.cert)
            .env("KEY", &device.key)
            .env("THING", thing)
            .env("FORMAT", format)
            // The launcher gives up 2 + (COUNT + 2) x INTERVAL + REPLY_WAIT s after start: slack
            // for a Python agent starting on a machine busy with the rest of the test suite.
            .env("INTERVAL", "3")
            .env("REPLY_WAIT", "10")
            .env("COUNT", "2")
            .env("REQUIRE_REPLY", "1")
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{format}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let reports = lab.datapoints(thing, "aws:num-established-tcp-connections").await;
        assert_eq!(reports.len(), 2, "{format}: both reports stored");
    }
    let text = warden_server::metrics::render(&lab.server.broker.stats(), 0, &lab.server.ingest_stats);
    assert!(text.contains("warden_reports_accepted_total 4"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_from_another_ca_and_missing_certificates_are_refused() {
    let lab = lab(Duration::ZERO).await;
    let device = lab.device("dev-1").await;
    // Same thing name, but signed by a CA the server does not know.
    let other = warden_testkit::Pki::new();
    let foreign = other.client("dev-1", warden_testkit::KeyKind::EcdsaP256);
    let forged = Device { cert: foreign.cert_path.clone(), key: foreign.key_path.clone(), ..device };
    assert!(lab.client(&forged, "dev-1").connect().await.is_err(), "foreign CA");

    let mut options = MqttOptions::new("dev-1", "localhost", lab.server.mqtt_addr.port());
    options.set_transport(Transport::Tls(TlsConfiguration::Simple {
        ca: std::fs::read(&forged.ca).unwrap(),
        alpn: None,
        client_auth: None,
    }));
    let (client, eventloop) = AsyncClient::new(options, 8);
    assert!(Client { client, eventloop }.connect().await.is_err(), "no client certificate");
    assert_eq!(lab.server.broker.stats().connected, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datapoints_older_than_the_retention_are_dropped_a_day_at_a_time() {
    let lab = lab(Duration::ZERO).await;
    let state = &lab.server.state;
    let day_ms = 86_400_000;
    let point = |age_days: i64| warden_store::Datapoint {
        thing: "dev-1".into(),
        metric: "aws:all-bytes-out".into(),
        dimension: None,
        timestamp_ms: state.now_ms() - age_days * day_ms,
        value: warden_store::MetricValue { count: Some(age_days as u64), ..Default::default() },
    };
    state.store.append_datapoints(vec![point(45), point(31), point(29), point(0)]).await.unwrap();
    warden_server::server::apply_retention(state).await;
    let kept: Vec<u64> =
        lab.datapoints("dev-1", "aws:all-bytes-out").await.iter().filter_map(|d| d.value.count).collect();
    assert_eq!(kept, vec![29, 0], "default retention is 30 days");
}

/// Policies attached to a thing group apply to the members of its subgroups too, and to
/// sessions already connected: the quarantine mechanism.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_policy_applies_to_live_sessions_of_nested_members() {
    let lab = lab(Duration::ZERO).await;
    let device = lab.device("dev-1").await;
    let state = &lab.server.state;
    let now = state.now_ms();
    let group = |name: &str, parent: Option<&str>| warden_store::NewThingGroup {
        name: name.into(),
        parent: parent.map(Into::into),
        description: None,
        attributes: BTreeMap::new(),
    };
    state.store.create_thing_group(group("Quarantine", None), now).await.unwrap();
    state.store.create_thing_group(group("Quarantine-2026", Some("Quarantine")), now).await.unwrap();
    let deny = r#"{"Statement": [{"Effect": "Deny", "Action": "iot:Publish", "Resource": "arn:aws:iot:*:*:topic/things/*"}]}"#;
    state.store.create_policy("QuarantinePolicy", deny, now).await.unwrap();
    state.store.attach_policy("QuarantinePolicy", &state.arns.thing_group("Quarantine")).await.unwrap();
    state.registry_changed(RegistryChange::Policies).await;

    let mut c = lab.client(&device, "dev-1/app");
    c.connect().await.unwrap();
    c.subscribe("things/dev-1/telemetry").await;
    c.client.publish("things/dev-1/telemetry", QoS::AtLeastOnce, false, b"21.5".to_vec()).await.unwrap();
    c.until(|p| matches!(p, Packet::Publish(p) if p.topic == "things/dev-1/telemetry").then_some(()))
        .await
        .unwrap();

    state.store.add_thing_to_group("Quarantine-2026", "dev-1").await.unwrap();
    state.registry_changed(RegistryChange::Memberships).await;
    c.client.publish("things/dev-1/telemetry", QoS::AtLeastOnce, false, b"21.6".to_vec()).await.unwrap();
    assert!(c.until(|_| None::<()>).await.is_err(), "telemetry denied: the 3.1.1 session is closed");

    // Its Defender reports still go through.
    let mut agent = lab.client(&device, "dev-1/agent");
    agent.connect().await.unwrap();
    agent.subscribe("$aws/things/dev-1/defender/metrics/+/+").await;
    let reply =
        agent.report("dev-1", Format::Json, br#"{"hed":{"rid":1,"v":"1.0"},"met":{"ns":{"bo":1}}}"#).await;
    assert_eq!(reply.status, ReplyStatus::Accepted);
}
