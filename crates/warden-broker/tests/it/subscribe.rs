//! SUBSCRIBE and delivery: the access control decides both, and the server can publish to
//! devices in process.

use std::time::Duration;

use bytes::Bytes;
use rumqttc::v5::mqttbytes::QoS as QoS5;
use rumqttc::v5::mqttbytes::v5::{Packet as Packet5, SubscribeReasonCode as Code5};
use rumqttc::{Packet, QoS, SubscribeFilter, SubscribeReasonCode};
use warden_broker::{BrokerError, BrokerEvent};
use warden_testkit::KeyKind;

use crate::harness::{Device3, Device5, TestAcl, TestBroker, own};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_subscribe_gets_a_failure_in_suback() {
    let mut t = TestBroker::start(TestAcl::new()).await;
    let cert = t.pki.client("thing-1", KeyKind::EcdsaP256);

    // MQTT 3.1.1: 0x80 for the refused filter, the allowed one is granted in the same SUBACK.
    let mut device3 = Device3::connected(t.v3("thing-1", &cert)).await;
    let filters = vec![
        SubscribeFilter::new(own("thing-1", "defender/metrics/json/accepted"), QoS::AtLeastOnce),
        SubscribeFilter::new("$aws/things/+/defender/metrics/json/accepted".to_owned(), QoS::AtLeastOnce),
    ];
    device3.client.subscribe_many(filters).await.unwrap();
    let codes = device3
        .wait_packet("SUBACK", |p| match p {
            Packet::SubAck(ack) => Some(ack.return_codes.clone()),
            _ => None,
        })
        .await;
    assert_eq!(codes, vec![SubscribeReasonCode::Success(QoS::AtLeastOnce), SubscribeReasonCode::Failure]);
    let filter = t
        .wait_event("SubscribeDenied", |e| match e {
            BrokerEvent::SubscribeDenied { filter, .. } => Some(filter.clone()),
            _ => None,
        })
        .await;
    assert_eq!(filter, "$aws/things/+/defender/metrics/json/accepted");

    // MQTT 5: 0x87 Not authorized.
    let mut device5 = Device5::connected(t.v5("thing-1/app", &cert)).await;
    device5.client.subscribe(own("thing-2", "#"), QoS5::AtLeastOnce).await.unwrap();
    let codes = device5
        .wait_packet("SUBACK", |p| match p {
            Packet5::SubAck(ack) => Some(ack.return_codes.clone()),
            _ => None,
        })
        .await;
    assert_eq!(codes, vec![Code5::NotAuthorized]);
    assert_eq!(t.broker.stats().subscribe_denied, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_publish_reaches_a_subscribed_device() {
    let mut t = TestBroker::start(TestAcl::new()).await;
    let cert = t.pki.client("thing-1", KeyKind::EcdsaP256);
    let topic = own("thing-1", "defender/metrics/json/accepted");

    let mut device3 = Device3::connected(t.v3("thing-1", &cert)).await;
    device3.client.subscribe(topic.as_str(), QoS::AtLeastOnce).await.unwrap();
    device3.wait_packet("SUBACK", |p| matches!(p, Packet::SubAck(_)).then_some(())).await;
    let mut device5 = Device5::connected(t.v5("thing-1/app", &cert)).await;
    device5.client.subscribe(topic.as_str(), QoS5::AtLeastOnce).await.unwrap();
    device5.wait_packet("SUBACK", |p| matches!(p, Packet5::SubAck(_)).then_some(())).await;

    let reply = Bytes::from_static(br#"{"thingName":"thing-1","status":"ACCEPTED"}"#);
    t.broker.publish(&topic, reply.clone(), 1).await.unwrap();

    let got3 = device3
        .wait_packet("PUBLISH", |p| match p {
            Packet::Publish(p) => Some((p.topic.clone(), p.payload.clone(), p.qos)),
            _ => None,
        })
        .await;
    assert_eq!(got3, (topic.clone(), reply.clone(), QoS::AtLeastOnce));
    let got5 = device5
        .wait_packet("PUBLISH", |p| match p {
            Packet5::Publish(p) => Some((p.topic.clone(), p.payload.clone())),
            _ => None,
        })
        .await;
    assert_eq!(got5, (Bytes::from(topic.clone()), reply.clone()));

    let mut delivered = Vec::new();
    for _ in 0..2 {
        delivered.push(
            t.wait_event("Delivered", |e| match e {
                BrokerEvent::Delivered { identity, topic: got, bytes } if *got == topic => {
                    Some((identity.client_id.clone(), *bytes))
                }
                _ => None,
            })
            .await,
        );
    }
    delivered.sort();
    assert_eq!(delivered, vec![("thing-1".to_owned(), reply.len()), ("thing-1/app".to_owned(), reply.len())]);
}

/// With delivery events off, the broker's own messages delivered to a device are counted per
/// session instead, and devices' messages still come as events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_deliveries_can_be_counted_instead_of_sent_as_events() {
    let mut t = TestBroker::start(TestAcl::new()).await;
    t.broker.set_system_delivery_events(false);
    let cert = t.pki.client("thing-1", KeyKind::EcdsaP256);
    let topic = own("thing-1", "defender/metrics/json/accepted");
    let mut device = Device3::connected(t.v3("thing-1", &cert)).await;
    device.client.subscribe(topic.as_str(), QoS::AtLeastOnce).await.unwrap();
    device.wait_packet("SUBACK", |p| matches!(p, Packet::SubAck(_)).then_some(())).await;

    for _ in 0..3 {
        t.broker.publish(&topic, Bytes::from_static(b"{}"), 0).await.unwrap();
        device.wait_packet("PUBLISH", |p| matches!(p, Packet::Publish(_)).then_some(())).await;
    }
    // The count is taken after the delivery hook ran, which follows the write to the device.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut counted = 0;
    while counted < 3 {
        counted += t
            .broker
            .take_system_deliveries()
            .iter()
            .map(|(identity, n)| {
                assert_eq!(identity.client_id, "thing-1");
                n
            })
            .sum::<u64>();
        assert!(tokio::time::Instant::now() < deadline, "{counted} of 3 deliveries counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(counted, 3, "each delivery counted once");
    assert!(t.broker.take_system_deliveries().is_empty(), "taking the counts resets them");

    // A device's own message to a subscriber is still an event.
    device.client.publish(topic.as_str(), QoS::AtLeastOnce, false, b"x".to_vec()).await.unwrap();
    t.wait_event("Delivered", |e| match e {
        BrokerEvent::Delivered { topic: got, .. } if *got == topic => Some(()),
        _ => None,
    })
    .await;
    assert!(t.broker.take_system_deliveries().is_empty(), "not counted as the server's");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_publish_rejects_wildcards_and_bad_qos() {
    let t = TestBroker::start(TestAcl::new()).await;
    for topic in ["", "a/+/b", "a/#"] {
        let error = t.broker.publish(topic, Bytes::new(), 0).await.unwrap_err();
        assert!(matches!(error, BrokerError::InvalidTopic(_)), "{topic:?}: {error:?}");
    }
    assert!(matches!(t.broker.publish("a", Bytes::new(), 3).await, Err(BrokerError::InvalidQos(3))));
    // No subscriber is not an error.
    t.broker.publish("$aws/things/nobody/x", Bytes::new(), 1).await.unwrap();
}

/// A policy change reaches subscriptions granted before it: every delivery asks
/// `AccessControl::receive` (through rmqtt's `MessageExpiryCheck` hook).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_receive_stops_delivery_on_an_existing_subscription() {
    let acl = TestAcl::new();
    let mut t = TestBroker::start(acl.clone()).await;
    let cert = t.pki.client("thing-1", KeyKind::EcdsaP256);
    let topic = own("thing-1", "commands");
    let mut device = Device3::connected(t.v3("thing-1", &cert)).await;
    device.client.subscribe(topic.as_str(), QoS::AtLeastOnce).await.unwrap();
    device.wait_packet("SUBACK", |p| matches!(p, Packet::SubAck(_)).then_some(())).await;

    t.broker.publish(&topic, Bytes::from_static(b"before"), 1).await.unwrap();
    let payload = device
        .wait_packet("PUBLISH", |p| match p {
            Packet::Publish(p) => Some(p.payload.clone()),
            _ => None,
        })
        .await;
    assert_eq!(payload, Bytes::from_static(b"before"));

    acl.revoke_receive("thing-1");
    t.broker.publish(&topic, Bytes::from_static(b"after"), 1).await.unwrap();
    let denied = t
        .wait_event("ReceiveDenied", |e| match e {
            BrokerEvent::ReceiveDenied { identity, topic } => Some((identity.thing.clone(), topic.clone())),
            _ => None,
        })
        .await;
    assert_eq!(denied, ("thing-1".to_owned(), topic.clone()));
    // The delivery was dropped when `ReceiveDenied` was emitted; nothing may follow.
    let late = device.incoming_within(Duration::from_millis(300)).await;
    assert!(!late.iter().any(|p| matches!(p, Packet::Publish(_))), "{late:?}");
    assert_eq!(t.broker.stats().receive_denied, 1);
}

/// Exact and wildcard subscriptions side by side, as the broker's own router (not rmqtt's
/// trie) matches them: every subscriber gets the message, an unsubscribed filter gets none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_and_wildcard_subscribers_each_get_their_copy() {
    let t = TestBroker::start(TestAcl::new()).await;
    let cert = t.pki.client("thing-1", KeyKind::EcdsaP256);
    let topic = own("thing-1", "commands");
    let mut exact = Device3::connected(t.v3("thing-1", &cert)).await;
    let mut wildcard = Device3::connected(t.v3("thing-1/app", &cert)).await;
    exact.client.subscribe(topic.as_str(), QoS::AtLeastOnce).await.unwrap();
    exact.wait_packet("SUBACK", |p| matches!(p, Packet::SubAck(_)).then_some(())).await;
    // MQTT 3.1.1 lets overlapping filters each deliver a copy, so waits look for a payload.
    let got = |want: &'static [u8]| {
        move |p: &Packet| matches!(p, Packet::Publish(p) if p.payload == want).then_some(())
    };

    // Exact only.
    t.broker.publish(&topic, Bytes::from_static(b"1"), 1).await.unwrap();
    exact.wait_packet("PUBLISH 1", got(b"1")).await;

    // A wildcard filter joins: both get the next message, once each.
    for filter in [own("thing-1", "+"), own("thing-1", "#")] {
        wildcard.client.subscribe(filter.as_str(), QoS::AtLeastOnce).await.unwrap();
        wildcard.wait_packet("SUBACK", |p| matches!(p, Packet::SubAck(_)).then_some(())).await;
    }
    t.broker.publish(&topic, Bytes::from_static(b"2"), 1).await.unwrap();
    exact.wait_packet("PUBLISH 2", got(b"2")).await;
    wildcard.wait_packet("PUBLISH 2", got(b"2")).await;
    // A topic only the wildcard matches, published by a device.
    let other = own("thing-1", "telemetry");
    exact.client.publish(other.as_str(), QoS::AtLeastOnce, false, "3").await.unwrap();
    wildcard.wait_packet("PUBLISH 3", got(b"3")).await;

    // One wildcard filter left.
    wildcard.client.unsubscribe(own("thing-1", "+")).await.unwrap();
    wildcard.wait_packet("UNSUBACK", |p| matches!(p, Packet::UnsubAck(_)).then_some(())).await;
    t.broker.publish(&other, Bytes::from_static(b"4"), 1).await.unwrap();
    wildcard.wait_packet("PUBLISH 4", got(b"4")).await;

    // No wildcard left: the unsubscribed session gets nothing.
    wildcard.client.unsubscribe(own("thing-1", "#")).await.unwrap();
    wildcard.wait_packet("UNSUBACK", |p| matches!(p, Packet::UnsubAck(_)).then_some(())).await;
    t.broker.publish(&topic, Bytes::from_static(b"5"), 1).await.unwrap();
    exact.wait_packet("PUBLISH 5", got(b"5")).await;
    let late = wildcard.incoming_within(Duration::from_millis(300)).await;
    assert!(!late.iter().any(|p| matches!(p, Packet::Publish(_))), "{late:?}");
    let late = exact.incoming_within(Duration::from_millis(300)).await;
    assert!(!late.iter().any(|p| matches!(p, Packet::Publish(_))), "a copy too many: {late:?}");
}
