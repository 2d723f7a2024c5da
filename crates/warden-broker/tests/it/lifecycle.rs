//! Sessions and the broker's own life: dropping sessions, hostile bytes, shutdown and restart.

use std::sync::Arc;

use rumqttc::v5::mqttbytes::QoS as QoS5;
use rumqttc::v5::mqttbytes::v5::{Packet as Packet5, PubAckReason};
use rumqttc::{Packet, QoS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warden_broker::BrokerEvent;
use warden_testkit::{KeyKind, Pki};

use crate::harness::{Device3, Device5, TestAcl, TestBroker, WAIT, config, own, tls_connect};

/// Needed when a certificate is deactivated: its live sessions must go at once, and their
/// persistent state with them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_where_drops_matching_live_sessions_and_their_state() {
    let mut t = TestBroker::start(TestAcl::new()).await;
    let cert_a = t.pki.client("thing-a", KeyKind::EcdsaP256);
    let cert_b = t.pki.client("thing-b", KeyKind::EcdsaP256);

    let mut a5 = Device5::connected(t.v5("thing-a/app", &cert_a)).await;
    let mut options = t.v3("thing-a", &cert_a);
    options.set_clean_session(false);
    let mut a3 = Device3::connected(options.clone()).await;
    a3.client.subscribe(own("thing-a", "in"), QoS::AtLeastOnce).await.unwrap();
    a3.wait_packet("SUBACK", |p| matches!(p, Packet::SubAck(_)).then_some(())).await;
    let mut b = Device5::connected(t.v5("thing-b", &cert_b)).await;
    for client_id in ["thing-a/app", "thing-a", "thing-b"] {
        t.wait_connected(client_id).await;
    }

    let serial = cert_serial_of(&t, "thing-a");
    assert_eq!(t.broker.disconnect_where(|id| id.cert_serial == serial).await, 2);

    // rmqtt 0.24 closes the socket before it writes the MQTT 5 DISCONNECT (reason 0x98) it
    // prepares, so both devices just see the connection end.
    a5.wait_error().await;
    a3.wait_error().await;
    let mut gone = Vec::new();
    for _ in 0..2 {
        gone.push(
            t.wait_event("Disconnected", |e| match e {
                BrokerEvent::Disconnected { identity, .. } => Some(identity.client_id.clone()),
                _ => None,
            })
            .await,
        );
    }
    gone.sort();
    assert_eq!(gone, ["thing-a", "thing-a/app"]);
    let left: Vec<_> = t.broker.sessions().iter().map(|id| id.client_id.clone()).collect();
    assert_eq!(left, ["thing-b"]);

    // The other thing is untouched.
    b.client.publish(own("thing-b", "x").as_str(), QoS5::AtLeastOnce, false, "still here").await.unwrap();
    let ack = b
        .wait_packet("PUBACK", |p| match p {
            Packet5::PubAck(ack) => Some(ack.reason),
            _ => None,
        })
        .await;
    assert_eq!(ack, PubAckReason::Success);

    // The persistent session was discarded, not kept for a reconnect.
    let mut again = Device3::connect(options);
    let present = again
        .wait_packet("CONNACK", |p| match p {
            Packet::ConnAck(ack) => Some(ack.session_present),
            _ => None,
        })
        .await;
    assert!(!present);
}

fn cert_serial_of(t: &TestBroker, thing: &str) -> String {
    t.broker
        .sessions()
        .iter()
        .find(|id| id.thing == thing)
        .expect("a session of the thing")
        .cert_serial
        .clone()
}

/// A TLS-authenticated client that sends garbage instead of MQTT is dropped; nothing panics and
/// other devices carry on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_after_tls_is_dropped_without_hurting_other_devices() {
    let mut t = TestBroker::start(TestAcl::new()).await;
    let cert = t.pki.client("thing-1", KeyKind::EcdsaP256);
    let mut good = Device5::connected(t.v5("thing-1", &cert)).await;
    t.wait_connected("thing-1").await;

    let garbage: [&[u8]; 4] = [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        // CONNECT with a remaining length whose varint never ends.
        &[0x10, 0xff, 0xff, 0xff, 0xff, 0xff],
        // CONNECT claiming protocol "MQTT" level 42.
        &[0x10, 0x0c, 0x00, 0x04, b'M', b'Q', b'T', b'T', 42, 0x02, 0x00, 0x3c, 0x00, 0x00],
        &[0xff; 64],
    ];
    for bytes in garbage {
        let mut stream = tls_connect(&t, &cert).await.1.expect("TLS handshake with a valid certificate");
        stream.write_all(bytes).await.unwrap();
        stream.flush().await.unwrap();
        let mut buf = [0u8; 256];
        // The broker closes the connection (possibly after a CONNACK refusal).
        let closed = tokio::time::timeout(WAIT, async {
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "connection left open after {bytes:?}");
    }

    good.client.publish(own("thing-1", "x").as_str(), QoS5::AtLeastOnce, false, "ok").await.unwrap();
    let ack = good
        .wait_packet("PUBACK", |p| match p {
            Packet5::PubAck(ack) => Some(ack.reason),
            _ => None,
        })
        .await;
    assert_eq!(ack, PubAckReason::Success);
    let _late = Device3::connected(t.v3("thing-1/late", &cert)).await;
    t.wait_connected("thing-1/late").await;
}

/// Trap (notes §1.3 #6): without SO_REUSEADDR, binding the port again right after shutdown fails
/// while the old connections are in TIME_WAIT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_on_the_same_port_right_after_shutdown() {
    let pki = Arc::new(Pki::new());
    let mut t =
        TestBroker::start_with(pki.clone(), config(&pki, "127.0.0.1:0".parse().unwrap()), TestAcl::new())
            .await;
    let addr = t.broker.local_addr();
    let cert = pki.client("thing-1", KeyKind::EcdsaP256);
    let mut device = Device5::connected(t.v5("thing-1", &cert)).await;
    t.wait_connected("thing-1").await;

    t.broker.shutdown().await;
    // The server closed the connection first, so its side holds the TIME_WAIT.
    device.wait_error().await;
    let mut rest = Vec::new();
    while let Some(event) = tokio::time::timeout(WAIT, t.events.recv()).await.expect("the event stream ends")
    {
        rest.push(event);
    }
    assert!(matches!(rest.as_slice(), [BrokerEvent::Disconnected { .. }]), "{rest:#?}");

    let mut t = TestBroker::start_with(pki.clone(), config(&pki, addr), TestAcl::new()).await;
    assert_eq!(t.broker.local_addr(), addr);
    let _device = Device3::connected(t.v3("thing-1", &cert)).await;
    t.wait_connected("thing-1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_reports_bad_tls_material_and_busy_ports() {
    let pki = Arc::new(Pki::new());
    let mut bad_key = config(&pki, "127.0.0.1:0".parse().unwrap());
    bad_key.server_key_pem = "not a key".into();
    let error = warden_broker::Broker::start(bad_key, TestAcl::new()).await.unwrap_err();
    assert!(matches!(error, warden_broker::BrokerError::Tls(_)), "{error:?}");

    let mut no_ca = config(&pki, "127.0.0.1:0".parse().unwrap());
    no_ca.client_ca_pem = String::new();
    let error = warden_broker::Broker::start(no_ca, TestAcl::new()).await.unwrap_err();
    assert!(matches!(error, warden_broker::BrokerError::Tls(_)), "{error:?}");

    // Not a TIME_WAIT leftover but a live listener: binding must fail, not take over.
    let t = TestBroker::start_with(pki.clone(), config(&pki, "127.0.0.1:0".parse().unwrap()), TestAcl::new())
        .await;
    let error =
        warden_broker::Broker::start(config(&pki, t.broker.local_addr()), TestAcl::new()).await.unwrap_err();
    assert!(matches!(error, warden_broker::BrokerError::Bind { .. }), "{error:?}");
}
