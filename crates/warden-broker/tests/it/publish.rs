//! PUBLISH from devices: what the server is told, what other devices receive, and what the
//! publisher hears back.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rumqttc::v5::mqttbytes::QoS as QoS5;
use rumqttc::v5::mqttbytes::v5::{Packet as Packet5, PubAckReason};
use rumqttc::{Packet, QoS};
use warden_broker::BrokerEvent;
use warden_testkit::KeyKind;

use crate::harness::{Device3, Device5, TestAcl, TestBroker, config, own};

/// Subscribes `thing` (MQTT 3.1.1) to its own `in` topic and waits for the grant.
async fn subscriber(t: &mut TestBroker, thing: &str) -> Device3 {
    let cert = t.pki.client(thing, KeyKind::EcdsaP256);
    let mut device = Device3::connected(t.v3(thing, &cert)).await;
    device.client.subscribe(own(thing, "in"), QoS::AtLeastOnce).await.unwrap();
    device.wait_packet("SUBACK", |p| matches!(p, Packet::SubAck(_)).then_some(())).await;
    device
}

/// Proves that nothing reached `device` on `topic` before now: the server publishes a marker,
/// and the marker must be the first message the device gets.
async fn assert_first_message_is_marker(t: &TestBroker, device: &mut Device3, topic: &str) {
    t.broker.publish(topic, Bytes::from_static(b"marker"), 1).await.unwrap();
    let payload = device
        .wait_packet("PUBLISH", |p| match p {
            Packet::Publish(p) => Some(p.payload.clone()),
            _ => None,
        })
        .await;
    assert_eq!(payload, Bytes::from_static(b"marker"), "a denied message was delivered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_publish_emits_published_with_identity_and_payload() {
    let mut t = TestBroker::start(TestAcl::new()).await;
    let cert = t.pki.client("thing-1", KeyKind::EcdsaP256);

    // QoS 0 over 3.1.1, as the AWS agent sends its reports.
    let device3 = Device3::connected(t.v3("thing-1", &cert)).await;
    let topic = own("thing-1", "defender/metrics/json");
    device3.client.publish(topic.as_str(), QoS::AtMostOnce, false, r#"{"header":{}}"#).await.unwrap();
    let (identity, got_topic, payload, qos) = t
        .wait_event("Published", |e| match e {
            BrokerEvent::Published { identity, topic, payload, qos, .. } => {
                Some((identity.clone(), topic.clone(), payload.clone(), *qos))
            }
            _ => None,
        })
        .await;
    assert_eq!(
        (identity.thing.as_str(), identity.client_id.as_str(), identity.mqtt5),
        ("thing-1", "thing-1", false)
    );
    assert_eq!(got_topic, topic);
    assert_eq!(payload, Bytes::from_static(br#"{"header":{}}"#));
    assert_eq!(qos, 0);

    // QoS 1 over 5, from a second connection of the same thing.
    let mut device5 = Device5::connected(t.v5("thing-1/app", &cert)).await;
    let topic = own("thing-1", "defender/metrics/cbor");
    device5.client.publish(topic.as_str(), QoS5::AtLeastOnce, false, vec![0xa1, 0x01]).await.unwrap();
    let reason = device5
        .wait_packet("PUBACK", |p| match p {
            Packet5::PubAck(ack) => Some(ack.reason),
            _ => None,
        })
        .await;
    assert_eq!(reason, PubAckReason::Success);
    let (client_id, payload, qos) = t
        .wait_event("Published", |e| match e {
            BrokerEvent::Published { identity, payload, qos, .. } => {
                Some((identity.client_id.clone(), payload.clone(), *qos))
            }
            _ => None,
        })
        .await;
    assert_eq!((client_id.as_str(), payload.as_ref(), qos), ("thing-1/app", &[0xa1, 0x01][..], 1));
}

/// Trap (notes §1.3 #1): `MessagePublish` runs before the ACL and sees denied messages. A denied
/// publish must produce no `Published` event and reach no subscriber; MQTT 3.1.1 publishers are
/// disconnected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt311_publish_to_another_things_topic_disconnects_and_is_not_delivered() {
    let mut t = TestBroker::start(TestAcl::new()).await;
    let mut victim = subscriber(&mut t, "thing-b").await;

    let cert = t.pki.client("thing-a", KeyKind::EcdsaP256);
    let mut attacker = Device3::connected(t.v3("thing-a", &cert)).await;
    let target = own("thing-b", "in");
    attacker.client.publish(target.as_str(), QoS::AtLeastOnce, false, "forged").await.unwrap();
    // The broker closes the connection (whatever error the client reports for that).
    attacker.wait_error().await;

    let (_, before) = t
        .events_until("PublishDenied", |e| match e {
            BrokerEvent::PublishDenied { identity, topic }
                if identity.thing == "thing-a" && *topic == target =>
            {
                Some(())
            }
            _ => None,
        })
        .await;
    assert!(!before.iter().any(|e| matches!(e, BrokerEvent::Published { .. })), "{before:#?}");
    t.wait_event("Disconnected", |e| {
        matches!(e, BrokerEvent::Disconnected { identity, .. } if identity.thing == "thing-a").then_some(())
    })
    .await;
    assert_first_message_is_marker(&t, &mut victim, &target).await;
    assert_eq!(t.broker.stats().publish_denied, 1);
}

/// MQTT 5 can refuse one publish: PUBACK 0x87 and the connection stays up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt5_publish_to_another_things_topic_gets_puback_0x87_and_stays_connected() {
    let mut t = TestBroker::start(TestAcl::new()).await;
    let mut victim = subscriber(&mut t, "thing-b").await;

    let cert = t.pki.client("thing-a", KeyKind::EcdsaP256);
    let mut attacker = Device5::connected(t.v5("thing-a", &cert)).await;
    let target = own("thing-b", "in");
    attacker.client.publish(target.as_str(), QoS5::AtLeastOnce, false, "forged").await.unwrap();
    let reason = attacker
        .wait_packet("PUBACK", |p| match p {
            Packet5::PubAck(ack) => Some(ack.reason),
            _ => None,
        })
        .await;
    assert_eq!(reason, PubAckReason::NotAuthorized);

    // Still connected: its own topic works.
    attacker.client.publish(own("thing-a", "x").as_str(), QoS5::AtLeastOnce, false, "ok").await.unwrap();
    let reason = attacker
        .wait_packet("PUBACK", |p| match p {
            Packet5::PubAck(ack) => Some(ack.reason),
            _ => None,
        })
        .await;
    assert_eq!(reason, PubAckReason::Success);

    let (_, before) = t
        .events_until("Published", |e| {
            matches!(e, BrokerEvent::Published { identity, .. } if identity.thing == "thing-a").then_some(())
        })
        .await;
    let denied: Vec<_> = before.iter().filter(|e| matches!(e, BrokerEvent::PublishDenied { .. })).collect();
    assert_eq!(denied.len(), 1, "{before:#?}");
    assert!(
        !before.iter().any(|e| matches!(e, BrokerEvent::Published { .. } | BrokerEvent::Disconnected { .. }))
    );
    assert_first_message_is_marker(&t, &mut victim, &target).await;
}

/// The QoS 1 PUBACK is written only after the access control has decided and the `Published`
/// event is queued, so an acknowledged report is never lost between broker and server.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn qos1_puback_is_sent_only_after_the_acl_decision() {
    let (acl, gate) = TestAcl::gated();
    let mut t = TestBroker::start(acl).await;
    let cert = t.pki.client("thing-1", KeyKind::EcdsaP256);
    let mut device = Device5::connected(t.v5("thing-1", &cert)).await;
    t.wait_connected("thing-1").await;

    device.client.publish(own("thing-1", "gated").as_str(), QoS5::AtLeastOnce, false, "r").await.unwrap();
    let entered = gate.entered;
    tokio::task::spawn_blocking(move || entered.recv_timeout(crate::harness::WAIT)).await.unwrap().unwrap();

    // The decision is pending: no PUBACK may arrive.
    let early = device.incoming_within(Duration::from_millis(300)).await;
    assert!(!early.iter().any(|p| matches!(p, Packet5::PubAck(_))), "{early:?}");
    assert!(t.events.try_recv().is_err(), "no event before the decision");

    gate.release.send(()).unwrap();
    let reason = device
        .wait_packet("PUBACK", |p| match p {
            Packet5::PubAck(ack) => Some(ack.reason),
            _ => None,
        })
        .await;
    assert_eq!(reason, PubAckReason::Success);
    // The event was queued before the PUBACK was written.
    assert!(matches!(t.events.try_recv(), Ok(BrokerEvent::Published { .. })));
}

/// The event channel is bounded. Other events are dropped and counted when it is full; a report
/// waits `published_backpressure`, then is dropped and counted, and the device still gets its
/// PUBACK.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_event_channel_drops_and_counts_instead_of_blocking() {
    let pki = Arc::new(warden_testkit::Pki::new());
    let mut cfg = config(&pki, "127.0.0.1:0".parse().unwrap());
    cfg.event_capacity = 1;
    cfg.published_backpressure = Duration::from_millis(200);
    let mut t = TestBroker::start_with(pki, cfg, TestAcl::new()).await;

    let cert = t.pki.client("thing-1", KeyKind::EcdsaP256);
    let mut device = Device5::connected(t.v5("thing-1", &cert)).await;
    // `Connected` now fills the channel; nobody reads it.
    device.client.subscribe(own("thing-2", "x"), QoS5::AtLeastOnce).await.unwrap();
    device.wait_packet("SUBACK", |p| matches!(p, Packet5::SubAck(_)).then_some(())).await;
    assert_eq!(t.broker.stats().events_dropped, 1, "SubscribeDenied was dropped");

    device.client.publish(own("thing-1", "r").as_str(), QoS5::AtLeastOnce, false, "report").await.unwrap();
    let reason = device
        .wait_packet("PUBACK", |p| match p {
            Packet5::PubAck(ack) => Some(ack.reason),
            _ => None,
        })
        .await;
    assert_eq!(reason, PubAckReason::Success);
    let stats = t.broker.stats();
    assert_eq!((stats.published_dropped, stats.subscribe_denied), (1, 1));

    // The one event that fit is still there, and the broker keeps working once drained.
    assert!(matches!(t.events.recv().await, Some(BrokerEvent::Connected(_))));
    device.client.publish(own("thing-1", "r").as_str(), QoS5::AtLeastOnce, false, "next").await.unwrap();
    let payload = t
        .wait_event("Published", |e| match e {
            BrokerEvent::Published { payload, .. } => Some(payload.clone()),
            _ => None,
        })
        .await;
    assert_eq!(payload, Bytes::from_static(b"next"));
}

/// Packets above `max_packet_size` (128 KiB by default, AWS IoT's message limit) end the
/// connection; packets up to it pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packets_over_the_size_limit_end_the_connection() {
    let mut t = TestBroker::start(TestAcl::new()).await;
    let cert = t.pki.client("thing-1", KeyKind::EcdsaP256);
    let mut options = t.v3("thing-1", &cert);
    options.set_max_packet_size(1 << 20, 1 << 20);
    let mut device = Device3::connected(options).await;
    let topic = own("thing-1", "big");

    device.client.publish(topic.as_str(), QoS::AtLeastOnce, false, vec![7u8; 120 * 1024]).await.unwrap();
    device.wait_packet("PUBACK", |p| matches!(p, Packet::PubAck(_)).then_some(())).await;
    let size = t
        .wait_event("Published", |e| match e {
            BrokerEvent::Published { payload, .. } => Some(payload.len()),
            _ => None,
        })
        .await;
    assert_eq!(size, 120 * 1024);

    device.client.publish(topic.as_str(), QoS::AtLeastOnce, false, vec![7u8; 129 * 1024]).await.unwrap();
    device.wait_error().await;
    let (_, before) =
        t.events_until("Disconnected", |e| matches!(e, BrokerEvent::Disconnected { .. }).then_some(())).await;
    assert!(!before.iter().any(|e| matches!(e, BrokerEvent::Published { .. })), "{before:#?}");
}
