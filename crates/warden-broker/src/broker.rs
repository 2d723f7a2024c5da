//! [`Broker`]: starting the embedded rmqtt endpoint, publishing from the server, dropping
//! sessions, and shutting down.
//!
//! One [`Broker`] owns one rmqtt `ServerContext` (rmqtt keeps no process-wide state apart from a
//! load cache we disable), so tests can run several brokers in one process.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use bytes::Bytes;
use rmqtt::codec::types::QoS;
use rmqtt::context::ServerContext;
use rmqtt::hook::{Register, Type};
use rmqtt::server::MqttServer;
use rmqtt::session::SessionState;
use rmqtt::types::{CodecPublish, From, Id, Message, Publish, TopicName};
use rmqtt::utils::timestamp_millis;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::events::{Counters, EventSink};
use crate::hooks::{Hooks, State};
use crate::router::FleetRouter;
use crate::{AccessControl, BrokerConfig, BrokerEvent, BrokerStats, Identity};

/// The client id under which in-process publishes appear in rmqtt's logs.
const SERVER_CLIENT_ID: &str = "warden-server";

/// How long [`Broker::shutdown`] waits for kicked sessions to report their disconnection.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Errors of the MQTT endpoint.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The TLS material could not be staged for rmqtt.
    #[error("cannot stage the TLS material for the listener: {0}")]
    Io(#[from] std::io::Error),
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {message}")]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// rmqtt's description of the failure.
        message: String,
    },
    /// The certificate, key or CA PEM was rejected.
    #[error("invalid TLS configuration: {0}")]
    Tls(String),
    /// A configuration value is out of range.
    #[error("invalid broker configuration: {0}")]
    Config(String),
    /// [`Broker::publish`] got a topic that is empty or contains a wildcard.
    #[error("invalid topic name {0:?}")]
    InvalidTopic(String),
    /// [`Broker::publish`] got a QoS other than 0, 1 or 2.
    #[error("invalid QoS {0}")]
    InvalidQos(u8),
    /// rmqtt failed to route an in-process publish.
    #[error("publish failed: {0}")]
    Publish(String),
}

/// The running MQTT endpoint.
///
/// Dropping it without [`Broker::shutdown`] closes the listening socket but leaves connected
/// sessions running until they disconnect.
pub struct Broker {
    local_addr: SocketAddr,
    scx: ServerContext,
    state: Arc<State>,
    /// Runs rmqtt's accept loop and owns the listening socket; aborted (closing the socket) at
    /// shutdown or drop.
    server: JoinHandle<()>,
    /// Keeps our hook handler registered with rmqtt; stopped at shutdown so that late hook
    /// calls from exiting sessions no longer reach the access control.
    hooks: Box<dyn Register>,
    /// The rmqtt session id that in-process publishes come from.
    server_id: Id,
}

impl Broker {
    /// Binds the TLS listener and starts accepting devices.
    ///
    /// Returns the broker and the receiving end of its event channel. The channel ends after
    /// [`Broker::shutdown`].
    pub async fn start(
        config: BrokerConfig,
        acl: Arc<dyn AccessControl>,
    ) -> Result<(Broker, mpsc::Receiver<BrokerEvent>), BrokerError> {
        let max_packet_size =
            u32::try_from(config.max_packet_size).ok().filter(|&n| n > 0).ok_or_else(|| {
                BrokerError::Config(format!("max_packet_size {} out of range", config.max_packet_size))
            })?;
        if config.event_capacity == 0 {
            return Err(BrokerError::Config("event_capacity must be at least 1".into()));
        }
        // rmqtt-net builds its rustls config with the process-wide default provider. When a
        // workspace build unifies rustls's `ring` feature (the agent's) with `aws_lc_rs`
        // (rmqtt's), rustls cannot pick one and panics, so install aws-lc-rs explicitly; an
        // error only means some provider is already installed, which is fine.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();

        // rmqtt refuses CONNECTs as "server busy" while the host's load average or CPU use is
        // above its thresholds (80 / 90 %), which a 2-core machine running a build (or a busy
        // server) easily exceeds. Overload protection is the server's job, not a CPU probe's,
        // and the probe's result is cached in a process-wide static shared by all brokers.
        let scx = ServerContext::new().busy_check_enable(false).build().await;
        *scx.extends.router_mut().await = Box::new(FleetRouter::new(scx.clone()));

        let (tx, rx) = mpsc::channel(config.event_capacity);
        let state = Arc::new(State {
            acl,
            sessions: RwLock::default(),
            session_left: tokio::sync::Notify::new(),
            events: EventSink::new(tx, config.published_backpressure),
            counters: Counters::default(),
            system_delivery_events: AtomicBool::new(true),
            system_deliveries: Mutex::default(),
        });
        let hooks = scx.extends.hook_mgr().register();
        for typ in [
            Type::ClientAuthenticate,
            Type::ClientConnected,
            Type::ClientDisconnected,
            Type::MessagePublishCheckAcl,
            Type::ClientSubscribeCheckAcl,
            Type::MessageExpiryCheck,
            Type::MessageDelivered,
        ] {
            hooks.add(typ, Box::new(Hooks { state: state.clone() })).await;
        }
        hooks.start().await;

        // rmqtt-net reads the TLS material from files only, so it is staged in a private
        // (0700) temp dir that is deleted as soon as the listener has loaded it.
        let tls_dir = tempfile::Builder::new().prefix("warden-broker-tls-").tempdir()?;
        let path = |name: &str, pem: &str| -> Result<String, BrokerError> {
            let path = tls_dir.path().join(name);
            std::fs::write(&path, pem)?;
            Ok(path.to_string_lossy().into_owned())
        };
        let builder = rmqtt::net::Builder::new()
            .name("warden-mqtts")
            .laddr(config.listen)
            // Trap (notes §1.3 #6): without SO_REUSEADDR a restart while old connections sit in
            // TIME_WAIT fails with EADDRINUSE.
            .reuseaddr(Some(true))
            // Trap (notes §1.3 #5): with anonymous access allowed, rmqtt skips the
            // authentication hook entirely for a CONNECT without username, which is every
            // device that authenticates by certificate alone.
            .allow_anonymous(false)
            // Require a client certificate that chains to `client_ca_pem`.
            .tls_cross_certificate(true)
            .tls_cert(Some(path("server.crt", &config.server_cert_pem)?))
            .tls_key(Some(path("server.key", &config.server_key_pem)?))
            .tls_client_ca_certs(Some(path("client-ca.crt", &config.client_ca_pem)?))
            // Hand the certificate's CN and serial to the hooks. `cert_cn_as_username` stays off:
            // identity comes from the certificate, never from the username (see `identity.rs`).
            .collect_cert_info(true)
            .max_packet_size(max_packet_size)
            .handshake_timeout(config.handshake_timeout)
            .session_expiry_interval(config.session_expiry)
            // AWS IoT's limits: client ids up to 128 bytes, no QoS 2.
            .max_clientid_len(128)
            .max_qos_allowed(QoS::AtLeastOnce);
        // No ALPN is configured on the rustls server (rmqtt-net sets none), so the
        // `x-amzn-mqtt-ca` protocol the AWS SDKs offer is accepted and simply not negotiated.
        let listener = builder
            .bind()
            .map_err(|e| BrokerError::Bind { addr: config.listen, message: format!("{e:#}") })?;
        let mut listener = listener.tls().map_err(|e| BrokerError::Tls(format!("{e:#}")))?;
        drop(tls_dir);
        let local_addr = listener
            .local_addr()
            .map_err(|e| BrokerError::Bind { addr: config.listen, message: format!("{e:#}") })?;
        // Record the bound port (not 0) in the listener config that sessions and logs see.
        listener.cfg = Arc::new(listener.cfg.as_ref().clone().laddr(local_addr));

        // `MqttServer::start` would exit the process if the server loop failed, and gives no
        // handle to stop it; running `run()` in our own task gives both.
        let server = MqttServer::new(scx.clone()).listener_by_id(listener, local_addr.port()).build();
        let server = tokio::spawn(async move {
            if let Err(e) = server.run().await {
                tracing::error!(error = %e, "MQTT listener stopped");
            }
        });
        tracing::info!(addr = %local_addr, "MQTT endpoint listening (mTLS)");

        let server_id = Id::new(scx.node.id(), 0, None, None, SERVER_CLIENT_ID.into(), None);
        Ok((Broker { local_addr, scx, state, server, hooks, server_id }, rx))
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Publishes a message from the server to every session subscribed to `topic` (for
    /// example a report reply). Each delivery is still checked by
    /// [`AccessControl::receive`]. Messages with no subscriber are discarded.
    pub async fn publish(&self, topic: &str, payload: Bytes, qos: u8) -> Result<(), BrokerError> {
        if topic.is_empty() || topic.contains(['+', '#', '\0']) || topic.len() > usize::from(u16::MAX) {
            return Err(BrokerError::InvalidTopic(topic.to_owned()));
        }
        let qos = match qos {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            2 => QoS::ExactlyOnce,
            other => return Err(BrokerError::InvalidQos(other)),
        };
        let publish = CodecPublish {
            dup: false,
            retain: false,
            qos,
            topic: TopicName::from(topic),
            packet_id: None,
            payload,
            properties: None,
        };
        let publish = Publish::from(publish).create_time(timestamp_millis());
        SessionState::forwards(&self.scx, From::from_system(self.server_id.clone()), publish, false, None)
            .await
            .map_err(|e| BrokerError::Publish(format!("{e:#}")))
    }

    /// Disconnects every live session whose identity matches `pred`, for example all sessions
    /// of a deactivated certificate or of a thing, and discards their session state
    /// (subscriptions and queued messages), so a reconnect starts clean. Returns how many
    /// sessions were told to go; their [`BrokerEvent::Disconnected`] events follow.
    pub async fn disconnect_where(&self, pred: impl Fn(&Identity) -> bool) -> usize {
        let targets: Vec<(Id, Arc<Identity>)> =
            self.state.live_sessions().into_iter().filter(|(_, identity)| pred(identity)).collect();
        let mut kicked = 0;
        for (id, identity) in targets {
            if kick(&self.scx, &id).await {
                tracing::info!(thing = %identity.thing, client_id = %identity.client_id, "session dropped by the server");
                kicked += 1;
            }
        }
        kicked
    }

    /// Installs what to do with a device's PUBLISH (identity, topic, payload) that was dropped
    /// because the event channel stayed full for `published_backpressure`, for example answer
    /// it. Called on the publishing session's task: it must not block (spawn anything slow),
    /// and must not hold the broker (use a `Weak`), or the broker could never be shut down.
    /// Once per broker: `false` if a handler was installed already.
    pub fn on_dropped_publish(
        &self,
        handler: impl Fn(&Arc<Identity>, &str, &Bytes) + Send + Sync + 'static,
    ) -> bool {
        self.state.events.on_dropped(Arc::new(handler))
    }

    /// The identities of the live sessions.
    pub fn sessions(&self) -> Vec<Arc<Identity>> {
        self.state.live_sessions().into_iter().map(|(_, identity)| identity).collect()
    }

    /// Whether deliveries of this broker's own messages ([`Broker::publish`]) are sent as
    /// [`BrokerEvent::Delivered`] events (the default), or only counted per session for
    /// [`Broker::take_system_deliveries`]. Events carry the topic; counts are cheaper.
    pub fn set_system_delivery_events(&self, on: bool) {
        self.state.system_delivery_events.store(on, Ordering::Relaxed);
    }

    /// How many of this broker's own messages were delivered to each session since the last
    /// call, while [`Broker::set_system_delivery_events`] was off; the counts restart at zero.
    /// Sessions that have ended since are included.
    pub fn take_system_deliveries(&self) -> Vec<(Arc<Identity>, u64)> {
        let mut counts = self.state.system_deliveries.lock().unwrap_or_else(PoisonError::into_inner);
        std::mem::take(&mut *counts).into_values().collect()
    }

    /// Counters since start.
    pub fn stats(&self) -> BrokerStats {
        self.state.counters.snapshot()
    }

    /// Stops accepting connections, drops every session (live and persistent), waits briefly
    /// for their disconnect events, and ends the event stream.
    pub async fn shutdown(mut self) {
        self.server.abort();
        // The task owns the listener; awaiting it makes sure the socket is closed on return, so
        // the port can be bound again at once.
        let _ = (&mut self.server).await;

        self.disconnect_where(|_| true).await;
        // Sessions of clients that connected with clean session off live on offline after their
        // connection ends; kick those too, so their tasks end.
        let offline: Vec<Id> = self.scx.extends.shared().await.iter().map(|entry| entry.id()).collect();
        for id in offline {
            kick(&self.scx, &id).await;
        }

        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        loop {
            let left = self.state.session_left.notified();
            if self.state.live_sessions().is_empty() {
                break;
            }
            if tokio::time::timeout_at(deadline, left).await.is_err() {
                tracing::warn!(
                    sessions = self.state.live_sessions().len(),
                    "sessions still open at shutdown"
                );
                break;
            }
        }
        self.hooks.stop().await;
        self.state.events.close();
        tracing::info!(addr = %self.local_addr, "MQTT endpoint stopped");
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("local_addr", &self.local_addr)
            .field("sessions", &self.state.live_sessions().len())
            .finish_non_exhaustive()
    }
}

/// Ends the session `id` as an administrative kick: rmqtt then discards the session state
/// instead of keeping it for a reconnect. Returns whether the session acknowledged.
async fn kick(scx: &ServerContext, id: &Id) -> bool {
    // The client id's entry lock keeps a concurrent CONNECT with the same client id from
    // replacing the session between our check and our kick (we would kick the newcomer).
    // A CONNECT holds the lock only for its handshake, so a few short retries suffice.
    const ATTEMPTS: u32 = 20;
    for attempt in 1..=ATTEMPTS {
        let entry = scx.extends.shared().await.entry(id.clone());
        let locked = match entry.try_lock().await {
            Ok(locked) => locked,
            Err(_) if attempt < ATTEMPTS => {
                tokio::time::sleep(Duration::from_millis(25)).await;
                continue;
            }
            Err(e) => {
                tracing::warn!(client_id = %id.client_id, error = %e, "cannot lock the session to drop it");
                return false;
            }
        };
        if locked.id_same() != Some(true) {
            // Already gone, or replaced by a newer connection with the same client id.
            return false;
        }
        let Some(tx) = locked.tx() else { return false };
        let (ack_tx, ack_rx) = oneshot::channel();
        if tx.unbounded_send(Message::Kick(ack_tx, id.clone(), true, true)).is_err() {
            return false;
        }
        drop(locked);
        return matches!(tokio::time::timeout(Duration::from_secs(5), ack_rx).await, Ok(Ok(())));
    }
    false
}
