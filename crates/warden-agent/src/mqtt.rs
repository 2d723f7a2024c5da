//! One MQTT session over TLS, MQTT 3.1.1 or 5, built on rumqttc's packet codecs.
//!
//! rumqttc's own event loop sends PINGREQ every keepalive period whatever else was sent (see
//! its `EventLoop::select`), which on a metered link costs a radio wake-up and ~100 bytes per
//! ping for nothing: MQTT counts any control packet as a sign of life. This session owns the
//! connection instead and pings only when nothing was written for a whole keepalive period, so
//! with the default keepalive (longer than the report interval) reports alone keep it alive.
//!
//! TLS comes from rustls with the `ring` provider (no C toolchain, small). The `ClientConfig` is
//! built once and shared by every reconnect, so its session cache gives TLS 1.3 resumption:
//! a reconnect costs about a kilobyte instead of a full handshake with certificates.
//!
//! A dead connection is noticed without spending bytes on it: TCP keepalive stays off, and
//! `TCP_USER_TIMEOUT` makes the kernel give up on a connection whose data goes unacknowledged
//! (see [`TCP_USER_TIMEOUT`]).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::v4;
use rumqttc::v5::mqttbytes::v5;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use socket2::SockRef;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::config::MqttConfig;

/// Replies and acks are small; anything bigger from the broker is refused.
const MAX_INCOMING_PACKET: usize = 256 * 1024;

/// How long data the agent sent may stay unacknowledged before the kernel aborts the connection
/// (`TCP_USER_TIMEOUT`).
///
/// Without it, a report written into a connection that died silently (a NAT or carrier dropped
/// its state, the radio link went away) is retransmitted for about 15 minutes
/// (`net.ipv4.tcp_retries2`) before a read fails, and with `--replies false` nothing else
/// notices sooner: every report in between is written into the void and counted as sent. With
/// it, the read fails 30 s after the report and the agent reconnects. It
/// costs nothing on the wire: the timer only runs while data is in flight. TCP keepalive is
/// the opposite (probes of an idle connection, every two hours by default), so it stays off:
/// the MQTT keepalive, which every report resets, covers an idle session.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("cannot connect to {0}: {1}")]
    Connect(String, std::io::Error),
    #[error("TLS handshake failed: {0}")]
    Tls(std::io::Error),
    #[error("broker refused the connection: {0}")]
    Refused(String),
    #[error("connection lost: {0}")]
    Io(#[from] std::io::Error),
    #[error("connection closed by the broker")]
    Closed,
    #[error("malformed packet from the broker: {0}")]
    Protocol(String),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

/// What the broker sent that the agent cares about.
#[derive(Debug)]
pub enum Incoming {
    Publish {
        topic: String,
        payload: Bytes,
    },
    /// QoS 1 acknowledgement; `refusal` carries an MQTT 5 reason such as "not authorized".
    PubAck {
        refusal: Option<String>,
    },
    SubAck {
        refused: usize,
    },
    PingResp,
    /// MQTT 5 broker-initiated DISCONNECT, with its reason.
    Disconnect(String),
}

/// Builds the TLS client configuration: CA roots, client certificate, optional ALPN.
pub fn tls_config(m: &MqttConfig) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in
        CertificateDer::pem_file_iter(&m.ca).with_context(|| format!("ca: cannot read {}", m.ca.display()))?
    {
        let cert = cert.with_context(|| format!("ca: {} is not PEM certificates", m.ca.display()))?;
        roots.add(cert).with_context(|| format!("ca: bad certificate in {}", m.ca.display()))?;
    }
    if roots.is_empty() {
        anyhow::bail!("ca: {} holds no certificate", m.ca.display());
    }
    let chain = CertificateDer::pem_file_iter(&m.cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("cert: cannot read certificates from {}", m.cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(&m.key)
        .with_context(|| format!("key: no private key in {}", m.key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .context("cert/key: the key does not match the certificate or is unsupported")?;
    if let Some(alpn) = &m.alpn {
        config.alpn_protocols = vec![alpn.as_bytes().to_vec()];
    }
    Ok(Arc::new(config))
}

/// Sets the options of the connection to the broker: no Nagle delay (an MQTT packet is written
/// whole, and waiting for an ACK before the next one only adds latency), [`TCP_USER_TIMEOUT`],
/// and no TCP keepalive probes.
fn configure_tcp(tcp: &TcpStream) -> std::io::Result<()> {
    let socket = SockRef::from(tcp);
    socket.set_tcp_nodelay(true)?;
    socket.set_tcp_user_timeout(Some(TCP_USER_TIMEOUT))?;
    socket.set_keepalive(false)
}

/// A connected, authenticated MQTT session.
#[derive(Debug)]
pub struct Session {
    stream: TlsStream<TcpStream>,
    read_buf: BytesMut,
    write_buf: BytesMut,
    mqtt5: bool,
    next_pkid: u16,
    /// When the last packet went out: the keepalive clock.
    pub last_write: Instant,
    /// Bytes written and read at the MQTT layer since connect (for logs and benchmarks).
    pub bytes_out: u64,
}

impl Session {
    /// TCP connect, TLS handshake, CONNECT and CONNACK, all within `timeout`.
    pub async fn connect(
        m: &MqttConfig,
        tls: &TlsConnector,
        timeout: Duration,
    ) -> Result<Session, SessionError> {
        tokio::time::timeout(timeout, Self::connect_inner(m, tls))
            .await
            .map_err(|_| SessionError::Timeout(timeout))?
    }

    async fn connect_inner(m: &MqttConfig, tls: &TlsConnector) -> Result<Session, SessionError> {
        let addr = format!("{}:{}", m.endpoint, m.port);
        let tcp = TcpStream::connect(&addr).await.map_err(|e| SessionError::Connect(addr.clone(), e))?;
        configure_tcp(&tcp)?;
        let server_name = ServerName::try_from(m.server_name.clone())
            .map_err(|e| SessionError::Tls(std::io::Error::new(std::io::ErrorKind::InvalidInput, e)))?;
        let stream = tls.connect(server_name, tcp).await.map_err(SessionError::Tls)?;
        let mut session = Session {
            stream,
            read_buf: BytesMut::with_capacity(1024),
            write_buf: BytesMut::with_capacity(1024),
            mqtt5: m.mqtt5,
            next_pkid: 0,
            last_write: Instant::now(),
            bytes_out: 0,
        };
        let keep_alive = u16::try_from(m.keepalive.as_secs()).unwrap_or(u16::MAX);
        if m.mqtt5 {
            let connect = v5::Connect {
                keep_alive,
                client_id: m.client_id.clone(),
                clean_start: true,
                properties: None,
            };
            session.write(|b| v5::Packet::Connect(connect, None, None).write(b, None).map(drop)).await?;
        } else {
            let mut connect = v4::Connect::new(m.client_id.clone());
            connect.keep_alive = keep_alive;
            connect.clean_session = true;
            session.write(|b| v4::Packet::Connect(connect).write(b, usize::MAX).map(drop)).await?;
        }
        session.read_connack().await?;
        Ok(session)
    }

    async fn read_connack(&mut self) -> Result<(), SessionError> {
        loop {
            if self.mqtt5 {
                match self.parse_v5()? {
                    Some(v5::Packet::ConnAck(ack)) if ack.code == v5::ConnectReturnCode::Success => {
                        return Ok(());
                    }
                    Some(v5::Packet::ConnAck(ack)) => {
                        let reason = ack.properties.and_then(|p| p.reason_string);
                        return Err(SessionError::Refused(format!(
                            "{:?}{}",
                            ack.code,
                            reason.map(|r| format!(": {r}")).unwrap_or_default()
                        )));
                    }
                    Some(other) => {
                        return Err(SessionError::Protocol(format!("expected CONNACK, got {other:?}")));
                    }
                    None => {}
                }
            } else {
                match self.parse_v4()? {
                    Some(v4::Packet::ConnAck(ack)) if ack.code == v4::ConnectReturnCode::Success => {
                        return Ok(());
                    }
                    Some(v4::Packet::ConnAck(ack)) => {
                        return Err(SessionError::Refused(format!("{:?}", ack.code)));
                    }
                    Some(other) => {
                        return Err(SessionError::Protocol(format!("expected CONNACK, got {other:?}")));
                    }
                    None => {}
                }
            }
            self.fill().await?;
        }
    }

    /// Subscribes to `filters` in one SUBSCRIBE packet; the SUBACK arrives through [`next`].
    pub async fn subscribe(&mut self, filters: &[String]) -> Result<(), SessionError> {
        let pkid = self.pkid();
        if self.mqtt5 {
            let mut sub = v5::Subscribe::new_many(
                filters.iter().map(|f| v5::Filter::new(f.clone(), rumqttc::v5::mqttbytes::QoS::AtMostOnce)),
                None,
            );
            sub.pkid = pkid;
            self.write(|b| v5::Packet::Subscribe(sub).write(b, None).map(drop)).await
        } else {
            let mut sub = v4::Subscribe::new_many(
                filters.iter().map(|f| v4::SubscribeFilter::new(f.clone(), rumqttc::QoS::AtMostOnce)),
            );
            sub.pkid = pkid;
            self.write(|b| v4::Packet::Subscribe(sub).write(b, usize::MAX).map(drop)).await
        }
    }

    pub async fn publish(&mut self, topic: &str, payload: Vec<u8>, qos: u8) -> Result<(), SessionError> {
        let pkid = if qos > 0 { self.pkid() } else { 0 };
        if self.mqtt5 {
            let qos = if qos > 0 {
                rumqttc::v5::mqttbytes::QoS::AtLeastOnce
            } else {
                rumqttc::v5::mqttbytes::QoS::AtMostOnce
            };
            let mut p = v5::Publish::new(topic, qos, payload, None);
            p.pkid = pkid;
            self.write(|b| v5::Packet::Publish(p).write(b, None).map(drop)).await
        } else {
            let qos = if qos > 0 { rumqttc::QoS::AtLeastOnce } else { rumqttc::QoS::AtMostOnce };
            let mut p = v4::Publish::new(topic, qos, payload);
            p.pkid = pkid;
            self.write(|b| v4::Packet::Publish(p).write(b, usize::MAX).map(drop)).await
        }
    }

    pub async fn ping(&mut self) -> Result<(), SessionError> {
        if self.mqtt5 {
            self.write(|b| v5::Packet::PingReq(v5::PingReq).write(b, None).map(drop)).await
        } else {
            self.write(|b| v4::Packet::PingReq.write(b, usize::MAX).map(drop)).await
        }
    }

    /// Sends DISCONNECT and closes TLS, so the broker does not publish a will or wait out the
    /// keepalive. Errors are irrelevant at this point.
    pub async fn disconnect(mut self) {
        let _ = if self.mqtt5 {
            self.write(|b| {
                v5::Packet::Disconnect(v5::Disconnect::new(v5::DisconnectReasonCode::NormalDisconnection))
                    .write(b, None)
                    .map(drop)
            })
            .await
        } else {
            self.write(|b| v4::Packet::Disconnect.write(b, usize::MAX).map(drop)).await
        };
        let _ = self.stream.shutdown().await;
    }

    /// The next packet of interest. Cancel-safe: bytes read stay buffered if the caller's
    /// `select!` picks another branch.
    pub async fn next(&mut self) -> Result<Incoming, SessionError> {
        loop {
            let incoming = if self.mqtt5 {
                match self.parse_v5()? {
                    None => None,
                    Some(v5::Packet::Publish(p)) => Some(Incoming::Publish {
                        topic: String::from_utf8_lossy(&p.topic).into_owned(),
                        payload: p.payload,
                    }),
                    Some(v5::Packet::PubAck(ack)) => Some(Incoming::PubAck {
                        refusal: (ack.reason != v5::PubAckReason::Success
                            && ack.reason != v5::PubAckReason::NoMatchingSubscribers)
                            .then(|| {
                                let why = ack.properties.and_then(|p| p.reason_string);
                                format!(
                                    "{:?}{}",
                                    ack.reason,
                                    why.map(|w| format!(": {w}")).unwrap_or_default()
                                )
                            }),
                    }),
                    Some(v5::Packet::SubAck(ack)) => Some(Incoming::SubAck {
                        refused: ack
                            .return_codes
                            .iter()
                            .filter(|c| !matches!(c, v5::SubscribeReasonCode::Success(_)))
                            .count(),
                    }),
                    Some(v5::Packet::PingResp(_)) => Some(Incoming::PingResp),
                    Some(v5::Packet::Disconnect(d)) => {
                        let why = d.properties.and_then(|p| p.reason_string);
                        Some(Incoming::Disconnect(format!(
                            "{:?}{}",
                            d.reason_code,
                            why.map(|w| format!(": {w}")).unwrap_or_default()
                        )))
                    }
                    Some(_) => continue,
                }
            } else {
                match self.parse_v4()? {
                    None => None,
                    Some(v4::Packet::Publish(p)) => {
                        Some(Incoming::Publish { topic: p.topic, payload: p.payload })
                    }
                    Some(v4::Packet::PubAck(_)) => Some(Incoming::PubAck { refusal: None }),
                    Some(v4::Packet::SubAck(ack)) => Some(Incoming::SubAck {
                        refused: ack
                            .return_codes
                            .iter()
                            .filter(|c| matches!(c, v4::SubscribeReasonCode::Failure))
                            .count(),
                    }),
                    Some(v4::Packet::PingResp) => Some(Incoming::PingResp),
                    Some(_) => continue,
                }
            };
            match incoming {
                Some(incoming) => return Ok(incoming),
                None => self.fill().await?,
            }
        }
    }

    fn parse_v4(&mut self) -> Result<Option<v4::Packet>, SessionError> {
        match v4::Packet::read(&mut self.read_buf, MAX_INCOMING_PACKET) {
            Ok(p) => Ok(Some(p)),
            Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => Ok(None),
            Err(e) => Err(SessionError::Protocol(format!("{e:?}"))),
        }
    }

    fn parse_v5(&mut self) -> Result<Option<v5::Packet>, SessionError> {
        match v5::Packet::read(&mut self.read_buf, Some(MAX_INCOMING_PACKET as u32)) {
            Ok(p) => Ok(Some(p)),
            Err(rumqttc::v5::mqttbytes::Error::InsufficientBytes(_)) => Ok(None),
            Err(e) => Err(SessionError::Protocol(format!("{e:?}"))),
        }
    }

    /// Reads more bytes into the buffer; cancel-safe (`read_buf` reads nothing if dropped).
    async fn fill(&mut self) -> Result<(), SessionError> {
        if self.stream.read_buf(&mut self.read_buf).await? == 0 {
            return Err(SessionError::Closed);
        }
        Ok(())
    }

    async fn write<E: std::fmt::Debug>(
        &mut self,
        encode: impl FnOnce(&mut BytesMut) -> Result<(), E>,
    ) -> Result<(), SessionError> {
        self.write_buf.clear();
        encode(&mut self.write_buf).map_err(|e| SessionError::Protocol(format!("cannot encode: {e:?}")))?;
        self.stream.write_all(&self.write_buf).await?;
        self.stream.flush().await?;
        self.bytes_out += self.write_buf.len() as u64;
        self.last_write = Instant::now();
        Ok(())
    }

    fn pkid(&mut self) -> u16 {
        self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
        self.next_pkid
    }
}

#[cfg(test)]
mod tests {
    use warden_testkit::{KeyKind, Mosquitto, MosquittoOptions, Pki, require_mosquitto};

    use super::*;

    /// The connection `Session::connect` opens gives up on unacknowledged data after
    /// [`TCP_USER_TIMEOUT`] and sends no keepalive probes.
    #[tokio::test]
    async fn broker_connection_fails_fast_without_keepalive_probes() {
        if !require_mosquitto() {
            return;
        }
        let pki = Pki::new();
        let broker = Mosquitto::start(&pki, MosquittoOptions::default()).unwrap();
        let cert = pki.client("dev-1", KeyKind::EcdsaP256);
        let m = MqttConfig {
            thing: "dev-1".into(),
            client_id: "dev-1".into(),
            endpoint: "localhost".into(),
            port: broker.port(),
            ca: pki.ca_pem_path().to_owned(),
            cert: cert.cert_path.clone(),
            key: cert.key_path.clone(),
            server_name: "localhost".into(),
            alpn: None,
            keepalive: Duration::from_secs(60),
            qos: 0,
            mqtt5: false,
            replies: false,
        };
        let tls = TlsConnector::from(tls_config(&m).unwrap());
        let session = Session::connect(&m, &tls, Duration::from_secs(20)).await.unwrap();
        let socket = SockRef::from(session.stream.get_ref().0);
        assert_eq!(socket.tcp_user_timeout().unwrap(), Some(TCP_USER_TIMEOUT));
        assert!(!socket.keepalive().unwrap());
        assert!(socket.tcp_nodelay().unwrap());
        session.disconnect().await;
    }
}
