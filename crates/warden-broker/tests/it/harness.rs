//! Shared test fixtures: a broker on 127.0.0.1 with a throwaway PKI, a test access control with
//! the default policy's shape, and rumqttc devices (MQTT 3.1.1 and 5) whose event loops run in
//! their own tasks so tests can wait on packets and errors with timeouts.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use warden_broker::{AccessControl, Broker, BrokerConfig, BrokerEvent, Identity};
use warden_testkit::{ClientCert, Pki};

/// How long any single expected thing may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// The username the AWS IoT Device SDK v2 (awscrt) sends on every CONNECT.
pub const AWS_SDK_USERNAME: &str = "?SDK=IoTDeviceSDK/Python&Platform=Unix&Metadata=(CRTVersion=0.36.1;IoTSDKVersion=1.31.0;IoTSDKFeature=F/3,G/A,I/A;IoTSDKMetricsVersion=1)";

/// The topic prefix a thing owns under the test policy.
pub fn own(thing: &str, rest: &str) -> String {
    format!("$aws/things/{thing}/{rest}")
}

/// The default policy's shape: client id = thing or `{thing}/{suffix}`; publish, subscribe and
/// receive only under `$aws/things/{thing}/`. `revoke_receive` simulates a policy change.
#[derive(Default)]
pub struct TestAcl {
    revoked_receive: Mutex<HashSet<String>>,
    gate: Option<Gate>,
}

/// Makes `publish` on topics ending in `/gated` block until the test releases it.
struct Gate {
    entered: std::sync::mpsc::SyncSender<()>,
    release: Mutex<std::sync::mpsc::Receiver<()>>,
}

/// The test's ends of a [`TestAcl`] gate.
pub struct GateControl {
    pub entered: std::sync::mpsc::Receiver<()>,
    pub release: std::sync::mpsc::SyncSender<()>,
}

impl TestAcl {
    pub fn new() -> Arc<TestAcl> {
        Arc::new(TestAcl::default())
    }

    pub fn gated() -> (Arc<TestAcl>, GateControl) {
        let (entered_tx, entered_rx) = std::sync::mpsc::sync_channel(1);
        let (release_tx, release_rx) = std::sync::mpsc::sync_channel(1);
        let acl = TestAcl {
            gate: Some(Gate { entered: entered_tx, release: Mutex::new(release_rx) }),
            ..TestAcl::default()
        };
        (Arc::new(acl), GateControl { entered: entered_rx, release: release_tx })
    }

    pub fn revoke_receive(&self, thing: &str) {
        self.revoked_receive.lock().unwrap().insert(thing.to_owned());
    }
}

fn owns(id: &Identity, topic: &str) -> bool {
    topic.starts_with(&own(&id.thing, ""))
}

impl AccessControl for TestAcl {
    fn connect(&self, id: &Identity) -> Result<(), String> {
        if id.client_id == id.thing || id.client_id.starts_with(&format!("{}/", id.thing)) {
            Ok(())
        } else {
            Err(format!("client id {:?} is not allowed for thing {:?}", id.client_id, id.thing))
        }
    }

    fn publish(&self, id: &Identity, topic: &str) -> bool {
        if let Some(gate) = &self.gate
            && topic.ends_with("/gated")
        {
            // Holds up this connection's task, as a slow policy store would. `block_in_place`
            // because plainly blocking a runtime worker also stalls the runtime's timers, and
            // with them the test's own timeouts.
            tokio::task::block_in_place(|| {
                gate.entered.send(()).unwrap();
                gate.release.lock().unwrap().recv_timeout(WAIT).expect("the test releases the gate");
            });
        }
        owns(id, topic)
    }

    fn subscribe(&self, id: &Identity, filter: &str) -> bool {
        owns(id, filter)
    }

    fn receive(&self, id: &Identity, topic: &str) -> bool {
        owns(id, topic) && !self.revoked_receive.lock().unwrap().contains(&id.thing)
    }
}

/// A running broker and the test's end of its event channel.
pub struct TestBroker {
    pub broker: Broker,
    pub events: mpsc::Receiver<BrokerEvent>,
    pub pki: Arc<Pki>,
}

static CRYPTO: Once = Once::new();

/// rustls refuses to pick a process-wide crypto provider when both ring and aws-lc-rs are
/// compiled in (rumqttc's client config needs one); the broker uses aws-lc-rs, so the test
/// clients do too.
fn install_crypto_provider() {
    CRYPTO.call_once(|| {
        let _ = rumqttc::tokio_rustls::rustls::crypto::aws_lc_rs::default_provider().install_default();
    });
}

pub fn config(pki: &Pki, listen: SocketAddr) -> BrokerConfig {
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap();
    BrokerConfig::new(listen, read(pki.server_cert_path()), read(pki.server_key_path()), pki.ca_pem())
}

impl TestBroker {
    pub async fn start(acl: Arc<TestAcl>) -> TestBroker {
        let pki = Arc::new(Pki::new());
        let config = config(&pki, "127.0.0.1:0".parse().unwrap());
        TestBroker::start_with(pki, config, acl).await
    }

    pub async fn start_with(pki: Arc<Pki>, config: BrokerConfig, acl: Arc<TestAcl>) -> TestBroker {
        install_crypto_provider();
        let (broker, events) = Broker::start(config, acl).await.expect("broker starts");
        TestBroker { broker, events, pki }
    }

    pub fn port(&self) -> u16 {
        self.broker.local_addr().port()
    }

    /// Receives events until `f` picks one, and returns it with every event received before it.
    pub async fn events_until<T>(
        &mut self,
        what: &str,
        mut f: impl FnMut(&BrokerEvent) -> Option<T>,
    ) -> (T, Vec<BrokerEvent>) {
        let mut before = Vec::new();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .unwrap_or_else(|_| panic!("no {what} event within {WAIT:?}; got {before:#?}"))
                .unwrap_or_else(|| panic!("event channel closed while waiting for {what}"));
            if let Some(found) = f(&event) {
                return (found, before);
            }
            before.push(event);
        }
    }

    /// Receives events until `f` picks one.
    pub async fn wait_event<T>(&mut self, what: &str, f: impl FnMut(&BrokerEvent) -> Option<T>) -> T {
        self.events_until(what, f).await.0
    }

    pub async fn wait_connected(&mut self, client_id: &str) -> Arc<Identity> {
        self.wait_event("Connected", |e| match e {
            BrokerEvent::Connected(id) if id.client_id == client_id => Some(id.clone()),
            _ => None,
        })
        .await
    }

    pub fn tls(&self, cert: Option<&ClientCert>, alpn: Option<&str>) -> rumqttc::TlsConfiguration {
        tls(&self.pki.ca_pem(), cert, alpn)
    }

    /// An MQTT 3.1.1 device with clean session on and no username.
    pub fn v3(&self, client_id: &str, cert: &ClientCert) -> rumqttc::MqttOptions {
        let mut options = rumqttc::MqttOptions::new(client_id, "127.0.0.1", self.port());
        options.set_transport(rumqttc::Transport::tls_with_config(self.tls(Some(cert), None)));
        options.set_keep_alive(Duration::from_secs(30));
        options
    }

    /// An MQTT 5 device with clean start on and no username.
    pub fn v5(&self, client_id: &str, cert: &ClientCert) -> rumqttc::v5::MqttOptions {
        let mut options = rumqttc::v5::MqttOptions::new(client_id, "127.0.0.1", self.port());
        options.set_transport(rumqttc::Transport::tls_with_config(self.tls(Some(cert), None)));
        options.set_keep_alive(Duration::from_secs(30));
        options
    }
}

/// A raw TLS connection to the broker with `cert`, for tests that speak below MQTT, and the
/// client's local address (how the broker's logs name the connection).
pub async fn tls_connect(
    t: &TestBroker,
    cert: &ClientCert,
) -> (SocketAddr, std::io::Result<rumqttc::tokio_rustls::client::TlsStream<tokio::net::TcpStream>>) {
    use rumqttc::tokio_rustls::rustls::pki_types::pem::PemObject;
    use rumqttc::tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use rumqttc::tokio_rustls::rustls::{ClientConfig, RootCertStore};

    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(t.pki.ca_pem().as_bytes()).unwrap()).unwrap();
    let chain =
        CertificateDer::pem_slice_iter(cert.cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>().unwrap();
    let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).unwrap();
    let config =
        ClientConfig::builder().with_root_certificates(roots).with_client_auth_cert(chain, key).unwrap();
    let tcp = tokio::net::TcpStream::connect(t.broker.local_addr()).await.unwrap();
    let local = tcp.local_addr().unwrap();
    let stream = rumqttc::tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await;
    (local, stream)
}

pub fn tls(ca_pem: &str, cert: Option<&ClientCert>, alpn: Option<&str>) -> rumqttc::TlsConfiguration {
    rumqttc::TlsConfiguration::Simple {
        ca: ca_pem.as_bytes().to_vec(),
        alpn: alpn.map(|p| vec![p.as_bytes().to_vec()]),
        client_auth: cert.map(|c| (c.cert_pem.clone().into_bytes(), c.key_pem.clone().into_bytes())),
    }
}

/// Generates a device type over one rumqttc flavour: the event loop runs in a task that
/// forwards every event, and stops at the first error (no reconnects).
macro_rules! device {
    ($name:ident, $($m:ident)::+, $packet:ty) => {
        pub struct $name {
            pub client: $($m)::+::AsyncClient,
            events: mpsc::UnboundedReceiver<Result<$($m)::+::Event, $($m)::+::ConnectionError>>,
            _poller: JoinHandle<()>,
        }

        impl $name {
            pub fn connect(options: $($m)::+::MqttOptions) -> $name {
                let (client, mut eventloop) = $($m)::+::AsyncClient::new(options, 16);
                let (tx, events) = mpsc::unbounded_channel();
                let poller = tokio::spawn(async move {
                    loop {
                        let event = eventloop.poll().await;
                        let stop = event.is_err();
                        if tx.send(event).is_err() || stop {
                            break;
                        }
                    }
                });
                $name { client, events, _poller: poller }
            }

            /// The next event or error of the event loop.
            pub async fn next(&mut self) -> Result<$($m)::+::Event, $($m)::+::ConnectionError> {
                tokio::time::timeout(WAIT, self.events.recv())
                    .await
                    .unwrap_or_else(|_| panic!("device: nothing happened within {WAIT:?}"))
                    .expect("the event loop task ended")
            }

            /// Skips events until `f` picks an incoming packet; panics on a connection error.
            pub async fn wait_packet<T>(&mut self, what: &str, mut f: impl FnMut(&$packet) -> Option<T>) -> T {
                loop {
                    match self.next().await {
                        Ok($($m)::+::Event::Incoming(packet)) => {
                            if let Some(found) = f(&packet) {
                                return found;
                            }
                        }
                        Ok(_) => {}
                        Err(e) => panic!("connection error while waiting for {what}: {e:?}"),
                    }
                }
            }

            /// Skips events until the connection fails, and returns the error.
            pub async fn wait_error(&mut self) -> $($m)::+::ConnectionError {
                loop {
                    if let Err(e) = self.next().await {
                        return e;
                    }
                }
            }

            /// The incoming packets that arrive within `d`, stopping at an error. For checks
            /// that something does *not* happen, after a positive sync point.
            pub async fn incoming_within(&mut self, d: Duration) -> Vec<$packet> {
                let mut packets = Vec::new();
                let deadline = tokio::time::Instant::now() + d;
                while let Ok(Some(event)) = tokio::time::timeout_at(deadline, self.events.recv()).await {
                    match event {
                        Ok($($m)::+::Event::Incoming(packet)) => packets.push(packet),
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
                packets
            }
        }
    };
}

device!(Device3, rumqttc, rumqttc::Packet);
device!(Device5, rumqttc::v5, rumqttc::v5::mqttbytes::v5::Packet);

impl Device3 {
    /// Connects and waits for a successful CONNACK.
    pub async fn connected(options: rumqttc::MqttOptions) -> Device3 {
        let mut device = Device3::connect(options);
        device.wait_packet("CONNACK", |p| matches!(p, rumqttc::Packet::ConnAck(_)).then_some(())).await;
        device
    }
}

impl Device5 {
    /// Connects and waits for a successful CONNACK.
    pub async fn connected(options: rumqttc::v5::MqttOptions) -> Device5 {
        use rumqttc::v5::mqttbytes::v5::Packet;
        let mut device = Device5::connect(options);
        device.wait_packet("CONNACK", |p| matches!(p, Packet::ConnAck(_)).then_some(())).await;
        device
    }
}
