//! Connections that never get as far as CONNECT: the broker must not keep them open forever,
//! or anyone who can reach the port could hold sockets, memory and tasks at no cost.
//! `BrokerConfig::handshake_timeout` bounds them up to the end of the TLS handshake. (After a
//! complete handshake, which needs a certificate from our CA, rmqtt 0.24 waits for the first
//! MQTT bytes without a timeout: see `BrokerConfig::handshake_timeout`.)

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use warden_broker::BrokerConfig;
use warden_testkit::Pki;

use crate::harness::{TestAcl, TestBroker, WAIT, config};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(500);

async fn broker() -> TestBroker {
    let pki = Arc::new(Pki::new());
    let config =
        BrokerConfig { handshake_timeout: HANDSHAKE_TIMEOUT, ..config(&pki, "127.0.0.1:0".parse().unwrap()) };
    TestBroker::start_with(pki, config, TestAcl::new()).await
}

/// Reads until the broker closes the connection (end of stream or reset), which must happen
/// within `WAIT`; returns how long the connection stayed open.
async fn wait_closed(tcp: &mut TcpStream) -> Duration {
    let started = tokio::time::Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(WAIT, tcp.read(&mut buf)).await {
            Err(_) => panic!("the broker kept a silent connection open for {WAIT:?}"),
            Ok(Ok(0) | Err(_)) => return started.elapsed(),
            // A TLS alert may come before the end of the stream.
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_connection_that_sends_nothing_is_closed() {
    let t = broker().await;
    let mut tcp = TcpStream::connect(t.broker.local_addr()).await.unwrap();
    let open_for = wait_closed(&mut tcp).await;
    // Closed by the timeout, not refused on sight.
    assert!(open_for >= HANDSHAKE_TIMEOUT / 2, "closed after {open_for:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_handshake_that_stalls_is_closed() {
    let t = broker().await;
    let mut tcp = TcpStream::connect(t.broker.local_addr()).await.unwrap();
    // The first bytes of a TLS record header (handshake, TLS 1.0 record version), then nothing.
    tcp.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
    let open_for = wait_closed(&mut tcp).await;
    assert!(open_for >= HANDSHAKE_TIMEOUT / 2, "closed after {open_for:?}");
}
