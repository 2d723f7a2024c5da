//! [`BrokerConfig`]: where the endpoint listens, its TLS material, and the few limits the server
//! may want to change. Everything else about rmqtt is fixed in `broker.rs`, with the reason.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// Configuration of the MQTT endpoint. Build it with [`BrokerConfig::new`] and adjust fields.
#[derive(Clone)]
pub struct BrokerConfig {
    /// Address to listen on. Port 0 picks a free port; [`Broker::local_addr`](crate::Broker)
    /// reports the bound one.
    pub listen: SocketAddr,
    /// The server certificate chain, PEM, leaf first.
    pub server_cert_pem: String,
    /// The server's private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub server_key_pem: String,
    /// The CA certificates client certificates must chain to, PEM, one or more. Clients
    /// without a certificate from one of these CAs fail the TLS handshake.
    pub client_ca_pem: String,
    /// Largest MQTT packet accepted, in bytes. Default 128 KiB, the AWS IoT message size limit.
    pub max_packet_size: usize,
    /// Capacity of the event channel. Default 4096.
    pub event_capacity: usize,
    /// How long a publishing session waits for room in a full event channel before its report
    /// is dropped (see [`BrokerEvent::Published`](crate::BrokerEvent)). Default 5 s.
    pub published_backpressure: Duration,
    /// How long the session of a client that connected with clean session off (as the AWS
    /// agents do) is kept after it disconnects, with its subscriptions and queued messages.
    /// Default 1 hour, the AWS IoT default for persistent sessions.
    pub session_expiry: Duration,
    /// Time allowed for the TLS handshake, and then again for the CONNECT packet once its first
    /// bytes have arrived. Default 10 s.
    ///
    /// Limit (rmqtt 0.24.0): between the end of the TLS handshake and the first bytes of
    /// CONNECT, rmqtt-net's protocol-version probe reads with no timeout at all, so a client
    /// that completes the handshake and then sends nothing keeps its connection until it goes
    /// away (TCP keepalive only detects dead peers). Only holders of a certificate from the
    /// trusted CA get that far; a raw TCP connection or a stalled handshake is closed after
    /// this timeout (`tests/it/idle.rs`). rmqtt exposes no setting for the probe.
    pub handshake_timeout: Duration,
}

impl BrokerConfig {
    /// A configuration with the defaults documented on each field.
    pub fn new(
        listen: SocketAddr,
        server_cert_pem: impl Into<String>,
        server_key_pem: impl Into<String>,
        client_ca_pem: impl Into<String>,
    ) -> BrokerConfig {
        BrokerConfig {
            listen,
            server_cert_pem: server_cert_pem.into(),
            server_key_pem: server_key_pem.into(),
            client_ca_pem: client_ca_pem.into(),
            max_packet_size: 128 * 1024,
            event_capacity: 4096,
            published_backpressure: Duration::from_secs(5),
            session_expiry: Duration::from_secs(60 * 60),
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

impl fmt::Debug for BrokerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The private key must never reach a log; the certificates are public but long.
        f.debug_struct("BrokerConfig")
            .field("listen", &self.listen)
            .field("server_cert_pem", &format_args!("<{} bytes>", self.server_cert_pem.len()))
            .field("server_key_pem", &"<redacted>")
            .field("client_ca_pem", &format_args!("<{} bytes>", self.client_ca_pem.len()))
            .field("max_packet_size", &self.max_packet_size)
            .field("event_capacity", &self.event_capacity)
            .field("published_backpressure", &self.published_backpressure)
            .field("session_expiry", &self.session_expiry)
            .field("handshake_timeout", &self.handshake_timeout)
            .finish()
    }
}
