//! A real Mosquitto broker with the test PKI: mTLS round trips, refused certificates, the
//! per-thing ACL, and cleanup. Absence of a message is proven with a later marker message from
//! the same path, never with a sleep.

use std::net::TcpStream;
use std::time::Duration;

use warden_testkit::{KeyKind, Message, Mosquitto, MosquittoOptions, Pki, require_mosquitto, thing_acl};

const TIMEOUT: Duration = Duration::from_secs(10);

fn start(pki: &Pki, acl: Option<String>) -> Mosquitto {
    let options = MosquittoOptions { acl, ..MosquittoOptions::default() };
    Mosquitto::start(pki, options).unwrap_or_else(|e| panic!("start mosquitto: {e}"))
}

fn message(topic: &str, payload: &[u8]) -> Message {
    Message { topic: topic.to_owned(), payload: payload.to_vec() }
}

#[test]
fn round_trip_over_mtls_keeps_binary_payloads_intact() {
    if !require_mosquitto() {
        return;
    }
    let pki = Pki::new();
    let broker = start(&pki, None);
    let topic = "$aws/things/thing-1/defender/metrics/cbor";
    let every_byte: Vec<u8> = (0..=255).collect();
    for kind in [KeyKind::EcdsaP256, KeyKind::Rsa2048] {
        let client = pki.client("thing-1", kind);
        let subscription = broker.subscribe(&client, "$aws/things/thing-1/#").unwrap();
        broker.publish(&client, topic, &every_byte).unwrap();
        broker.publish(&client, topic, b"").unwrap();
        let log = || broker.log();
        assert_eq!(subscription.recv(TIMEOUT), Some(message(topic, &every_byte)), "{kind:?}\n{}", log());
        assert_eq!(subscription.recv(TIMEOUT), Some(message(topic, b"")), "{kind:?}");
    }
    // use_identity_as_username: the broker knows the client by its certificate's CN.
    assert!(broker.log().contains("u'thing-1'"), "{}", broker.log());
}

#[test]
fn wait_for_log_sees_a_client_connect() {
    if !require_mosquitto() {
        return;
    }
    let pki = Pki::new();
    let broker = start(&pki, None);
    assert!(!broker.wait_for_log("as thing-1/", Duration::from_millis(50)));
    let client = pki.client("thing-1", KeyKind::EcdsaP256);
    broker.publish(&client, "$aws/things/thing-1/x", b"hi").unwrap();
    assert!(broker.wait_for_log("as thing-1/testkit-pub-", TIMEOUT), "{}", broker.log());
}

#[test]
fn client_certificate_from_an_unrelated_ca_is_refused() {
    if !require_mosquitto() {
        return;
    }
    let pki = Pki::new();
    let broker = start(&pki, None);
    let foreign = pki.foreign_client("thing-1");
    broker.publish(&foreign, "$aws/things/thing-1/x", b"forged").unwrap_err();
    broker.subscribe(&foreign, "$aws/things/thing-1/#").unwrap_err();
    assert!(broker.wait_for_log("certificate verify failed", TIMEOUT), "{}", broker.log());
    // The broker still serves certificates from its own CA.
    let client = pki.client("thing-1", KeyKind::EcdsaP256);
    broker.publish(&client, "$aws/things/thing-1/x", b"ok").unwrap();
}

#[test]
fn client_certificate_without_cn_is_refused() {
    if !require_mosquitto() {
        return;
    }
    let pki = Pki::new();
    let broker = start(&pki, None);
    let error = broker.publish(&pki.client_without_cn(), "x", b"anonymous").unwrap_err();
    assert!(error.to_string().contains("Connection Refused"), "{error}");
    assert!(broker.wait_for_log("disconnected, not authorised", TIMEOUT), "{}", broker.log());
}

#[test]
fn acl_keeps_each_thing_on_its_own_topics() {
    if !require_mosquitto() {
        return;
    }
    let pki = Pki::new();
    let broker = start(&pki, Some(thing_acl("observer")));
    let observer = pki.client("observer", KeyKind::EcdsaP256);
    let thing_a = pki.client("thing-a", KeyKind::EcdsaP256);
    let thing_b = pki.client("thing-b", KeyKind::EcdsaP256);
    let seen = broker.subscribe(&observer, "$aws/things/+/defender/#").unwrap();
    // Mosquitto 2.0's ACL file does not check SUBSCRIBE: it grants the subscription and then
    // delivers only what the ACL lets thing-a read. A broker refusing it would do as well.
    let a_sees = match broker.subscribe(&thing_a, "$aws/things/#") {
        Ok(subscription) => Some(subscription),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => None,
        Err(e) => panic!("{e}"),
    };

    let b_topic = "$aws/things/thing-b/defender/metrics/json";
    let a_topic = "$aws/things/thing-a/defender/metrics/json";
    // Denied, yet acknowledged: Mosquitto drops it silently.
    broker.publish(&thing_a, b_topic, b"forged by a").unwrap();
    broker.publish(&thing_b, b_topic, b"from b").unwrap();
    broker.publish(&thing_a, a_topic, b"from a").unwrap();

    // Each publish was acknowledged before the next began, so the broker queued deliveries in
    // this order: the first message seen after a dropped one proves it was dropped.
    assert_eq!(seen.recv(TIMEOUT), Some(message(b_topic, b"from b")), "{}", broker.log());
    assert_eq!(seen.recv(TIMEOUT), Some(message(a_topic, b"from a")));
    if let Some(a_sees) = a_sees {
        assert_eq!(a_sees.recv(TIMEOUT), Some(message(a_topic, b"from a")), "{}", broker.log());
    }
    assert!(broker.log().contains("Denied PUBLISH from thing-a/"), "{}", broker.log());
}

#[test]
fn bad_config_fails_with_the_brokers_own_message() {
    if !require_mosquitto() {
        return;
    }
    let pki = Pki::new();
    let options = MosquittoOptions {
        extra_config: "warden_no_such_option 1".to_owned(),
        ..MosquittoOptions::default()
    };
    let error = Mosquitto::start(&pki, options).unwrap_err();
    assert!(error.to_string().contains("warden_no_such_option"), "{error}");
}

#[test]
fn dropping_the_broker_stops_it_and_removes_its_files() {
    if !require_mosquitto() {
        return;
    }
    let pki = Pki::new();
    let broker = start(&pki, None);
    let addr = broker.addr();
    let dir = broker.dir().to_owned();
    TcpStream::connect(addr).expect("broker listens");
    drop(broker);
    // Drop reaped the process, so its listening socket is closed by now.
    TcpStream::connect(addr).expect_err("broker still listens after drop");
    assert!(!dir.exists());
}
