//! CONNECT: who gets in, with which identity, and what a refusal looks like.

use rumqttc::v5::mqttbytes::v5::ConnectReturnCode as ConnectReturnCode5;
use rumqttc::{ConnectReturnCode, ConnectionError};
use warden_broker::{BrokerEvent, RefusalReason};
use warden_testkit::KeyKind;

use crate::harness::{AWS_SDK_USERNAME, Device3, Device5, TestAcl, TestBroker, own};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt311_device_connects_as_the_thing_named_by_its_certificate() {
    let mut t = TestBroker::start(TestAcl::new()).await;
    let cert = t.pki.client("thing-1", KeyKind::EcdsaP256);
    let _device = Device3::connected(t.v3("thing-1", &cert)).await;

    let identity = t.wait_connected("thing-1").await;
    assert_eq!(identity.thing, "thing-1");
    assert!(!identity.mqtt5);
    assert!(!identity.cert_serial.is_empty());
    assert!(identity.remote_addr.ip().is_loopback());
    assert_eq!(t.broker.sessions(), vec![identity]);
    assert_eq!(t.broker.stats().connected, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt5_device_connects_as_the_thing_named_by_its_certificate() {
    let mut t = TestBroker::start(TestAcl::new()).await;
    let cert = t.pki.client("thing-1", KeyKind::Rsa2048);
    let _device = Device5::connected(t.v5("thing-1/app", &cert)).await;

    let identity = t.wait_connected("thing-1/app").await;
    assert_eq!(identity.thing, "thing-1");
    assert!(identity.mqtt5);
}

/// What the official AWS agent sends (tools/README-aws-agent.md): MQTT 3.1.1, clean session
/// off, the SDK's username without password, keep-alive 6 s, ALPN `x-amzn-mqtt-ca`, often an
/// RSA certificate. The username is accepted and ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_agent_style_connect_is_accepted_and_its_username_ignored() {
    let mut t = TestBroker::start(TestAcl::new()).await;
    let cert = t.pki.client("thing-1", KeyKind::Rsa2048);
    let mut options = t.v3("thing-1", &cert);
    options
        .set_clean_session(false)
        .set_credentials(AWS_SDK_USERNAME, "")
        .set_keep_alive(std::time::Duration::from_secs(6))
        .set_transport(rumqttc::Transport::tls_with_config(t.tls(Some(&cert), Some("x-amzn-mqtt-ca"))));
    let _device = Device3::connected(options).await;

    let identity = t.wait_connected("thing-1").await;
    assert_eq!(identity.thing, "thing-1");
}

/// A username naming another thing changes nothing: identity comes from the certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn username_cannot_claim_another_thing() {
    let mut t = TestBroker::start(TestAcl::new()).await;
    let cert = t.pki.client("thing-1", KeyKind::EcdsaP256);
    let mut options = t.v5("thing-1", &cert);
    options.set_credentials("thing-2", "secret");
    let device = Device5::connected(options).await;
    assert_eq!(t.wait_connected("thing-1").await.thing, "thing-1");

    // thing-2's topics stay closed to it.
    let topic = own("thing-2", "defender/metrics/json");
    device
        .client
        .publish(topic.as_str(), rumqttc::v5::mqttbytes::QoS::AtLeastOnce, false, "x")
        .await
        .unwrap();
    let denied = t
        .wait_event("PublishDenied", |e| match e {
            BrokerEvent::PublishDenied { identity, topic } => Some((identity.thing.clone(), topic.clone())),
            _ => None,
        })
        .await;
    assert_eq!(denied, ("thing-1".to_owned(), topic));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpn_x_amzn_mqtt_ca_offered_by_an_mqtt5_client_is_accepted() {
    let mut t = TestBroker::start(TestAcl::new()).await;
    let cert = t.pki.client("thing-1", KeyKind::EcdsaP256);
    let mut options = t.v5("thing-1", &cert);
    options.set_transport(rumqttc::Transport::tls_with_config(t.tls(Some(&cert), Some("x-amzn-mqtt-ca"))));
    let _device = Device5::connected(options).await;
    t.wait_connected("thing-1").await;
}

/// The client id is the access control's decision; the test policy allows the thing name and
/// `{thing}/{suffix}` only. These devices send no username, so this is also the test for trap
/// (notes §1.3 #5): with anonymous access allowed, rmqtt would skip the authentication hook for
/// them and let every client id in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_id_policy_is_enforced_by_the_access_control() {
    let mut t = TestBroker::start(TestAcl::new()).await;
    let cert = t.pki.client("thing-1", KeyKind::EcdsaP256);

    for client_id in ["thing-2", "thing-10", "thing-1-x"] {
        let mut device = Device3::connect(t.v3(client_id, &cert));
        let error = device.wait_error().await;
        assert!(
            matches!(error, ConnectionError::ConnectionRefused(ConnectReturnCode::NotAuthorized)),
            "{client_id}: {error:?}"
        );
        let reason = t
            .wait_event("ConnectRefused", |e| match e {
                BrokerEvent::ConnectRefused { client_id: c, common_name, reason, .. } if c == client_id => {
                    assert_eq!(common_name.as_deref(), Some("thing-1"));
                    Some(reason.clone())
                }
                _ => None,
            })
            .await;
        assert!(matches!(reason, RefusalReason::Denied(_)), "{reason:?}");
    }
    // Trap (notes §1.3 #2): refusals fire no ClientConnack hook, yet they are counted.
    assert_eq!(t.broker.stats().connect_refused, 3);

    let mut device = Device5::connect(t.v5("thing-9", &cert));
    let error = device.wait_error().await;
    assert!(
        matches!(error, rumqttc::v5::ConnectionError::ConnectionRefused(ConnectReturnCode5::NotAuthorized)),
        "{error:?}"
    );

    let _device = Device3::connected(t.v3("thing-1/agent", &cert)).await;
    assert_eq!(t.wait_connected("thing-1/agent").await.thing, "thing-1");
    assert_eq!(t.broker.stats().connect_refused, 4);
}

/// Trap (notes §1.3 #3): TLS handshake failures reach no rmqtt hook, so they produce no event and
/// no count; the next event is the valid device's connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_from_a_foreign_ca_fails_the_tls_handshake() {
    let mut t = TestBroker::start(TestAcl::new()).await;
    let foreign = t.pki.foreign_client("thing-1");
    let mut device = Device3::connect(t.v3("thing-1", &foreign));
    let error = device.wait_error().await;
    assert!(format!("{error:?}").contains("AlertReceived(UnknownCA)"), "{error:?}");

    let cert = t.pki.client("thing-2", KeyKind::EcdsaP256);
    let _ok = Device3::connected(t.v3("thing-2", &cert)).await;
    let (_, before) = t
        .events_until("Connected", |e| {
            matches!(e, BrokerEvent::Connected(id) if id.thing == "thing-2").then_some(())
        })
        .await;
    assert!(before.is_empty(), "{before:#?}");
    assert_eq!(t.broker.stats().connect_refused, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_without_a_client_certificate_fails_the_tls_handshake() {
    let t = TestBroker::start(TestAcl::new()).await;
    let mut options = rumqttc::MqttOptions::new("thing-1", "127.0.0.1", t.port());
    options.set_transport(rumqttc::Transport::tls_with_config(t.tls(None, None)));
    options.set_credentials("thing-1", "password");
    let mut device = Device3::connect(options);
    let error = device.wait_error().await;
    // In TLS 1.3 the client's handshake is over before the server checks the client's
    // certificate, so the client reads the server's alert with its first packet.
    assert!(format!("{error:?}").contains("AlertReceived(CertificateRequired)"), "{error:?}");
    assert!(t.broker.sessions().is_empty());
}

/// Trap (notes §1.3 #4): with a CN-less certificate rmqtt would keep the client's username as
/// the identity. The username must not stand in for the CN.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_without_cn_is_refused_even_with_a_username() {
    let mut t = TestBroker::start(TestAcl::new()).await;
    let cert = t.pki.client_without_cn();

    let mut options = t.v3("thing-1", &cert);
    options.set_credentials("thing-1", "");
    let mut device = Device3::connect(options);
    let error = device.wait_error().await;
    assert!(
        matches!(error, ConnectionError::ConnectionRefused(ConnectReturnCode::NotAuthorized)),
        "{error:?}"
    );

    let mut options = t.v5("thing-1", &cert);
    options.set_credentials("thing-1", "");
    let mut device = Device5::connect(options);
    let error = device.wait_error().await;
    assert!(
        matches!(error, rumqttc::v5::ConnectionError::ConnectionRefused(ConnectReturnCode5::NotAuthorized)),
        "{error:?}"
    );

    for _ in 0..2 {
        let reason = t
            .wait_event("ConnectRefused", |e| match e {
                BrokerEvent::ConnectRefused { reason, common_name: None, .. } => Some(reason.clone()),
                _ => None,
            })
            .await;
        assert_eq!(reason, RefusalReason::MissingCommonName);
    }
    assert!(t.broker.sessions().is_empty());
}

/// A CN with `/`, `+`, `#` or other characters outside the thing-name alphabet could widen the
/// topics a policy grants, so it is refused before the access control is asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cn_that_is_not_a_valid_thing_name_is_refused() {
    let mut t = TestBroker::start(TestAcl::new()).await;
    for cn in ["a+b", "a/b", "#", "thing 1"] {
        let cert = t.pki.client(cn, KeyKind::EcdsaP256);
        let mut device = Device3::connect(t.v3(cn, &cert));
        let error = device.wait_error().await;
        assert!(
            matches!(error, ConnectionError::ConnectionRefused(ConnectReturnCode::NotAuthorized)),
            "{cn}: {error:?}"
        );
        let reason = t
            .wait_event("ConnectRefused", |e| match e {
                BrokerEvent::ConnectRefused { reason, .. } => Some(reason.clone()),
                _ => None,
            })
            .await;
        assert_eq!(reason, RefusalReason::InvalidThingName(cn.to_owned()));
    }
}

/// Trap (found while embedding): rmqtt publishes last-will messages without the publish ACL
/// hook, so the will topic is checked at CONNECT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_will_on_a_topic_the_thing_may_not_publish_to_is_refused() {
    let mut t = TestBroker::start(TestAcl::new()).await;
    let cert = t.pki.client("thing-1", KeyKind::EcdsaP256);

    let mut options = t.v3("thing-1", &cert);
    options.set_last_will(rumqttc::LastWill::new(
        own("thing-2", "status"),
        "gone",
        rumqttc::QoS::AtLeastOnce,
        false,
    ));
    let mut device = Device3::connect(options);
    let error = device.wait_error().await;
    assert!(
        matches!(error, ConnectionError::ConnectionRefused(ConnectReturnCode::NotAuthorized)),
        "{error:?}"
    );
    let reason = t
        .wait_event("ConnectRefused", |e| match e {
            BrokerEvent::ConnectRefused { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .await;
    assert_eq!(reason, RefusalReason::WillTopicDenied(own("thing-2", "status")));

    let mut options = t.v3("thing-1", &cert);
    options.set_last_will(rumqttc::LastWill::new(
        own("thing-1", "status"),
        "gone",
        rumqttc::QoS::AtLeastOnce,
        false,
    ));
    let _device = Device3::connected(options).await;
    t.wait_connected("thing-1").await;
}
