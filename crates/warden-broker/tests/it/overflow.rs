//! A report the broker has to drop (the event channel stayed full for `published_backpressure`)
//! is handed to the server's handler, so that the server can answer it instead of losing it
//! silently; and a device that subscribed gets that answer.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use rumqttc::v5::mqttbytes::QoS as QoS5;
use rumqttc::v5::mqttbytes::v5::{Packet as Packet5, PubAckReason};
use warden_broker::Broker;
use warden_testkit::KeyKind;

use crate::harness::{Device5, TestAcl, TestBroker, config, own};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_report_goes_to_the_handler_which_can_answer_it() {
    let pki = Arc::new(warden_testkit::Pki::new());
    let mut cfg = config(&pki, "127.0.0.1:0".parse().unwrap());
    cfg.event_capacity = 1;
    cfg.published_backpressure = Duration::from_millis(200);
    let t = TestBroker::start_with(pki, cfg, TestAcl::new()).await;
    let broker = Arc::new(t.broker);
    let dropped: Arc<Mutex<Vec<(String, String, Bytes)>>> = Arc::default();
    let (seen, weak): (_, Weak<Broker>) = (dropped.clone(), Arc::downgrade(&broker));
    let installed = broker.on_dropped_publish(move |identity, topic, payload| {
        seen.lock().unwrap().push((identity.thing.clone(), topic.to_owned(), payload.clone()));
        // What the server does: answer on the device's reply topic, off the session's task.
        let (Some(broker), reply) = (weak.upgrade(), format!("{topic}/rejected")) else { return };
        tokio::spawn(
            async move { broker.publish(&reply, Bytes::from_static(b"throttled"), 0).await.unwrap() },
        );
    });
    assert!(installed);
    assert!(!broker.on_dropped_publish(|_, _, _| {}), "one handler per broker");

    let cert = t.pki.client("thing-1", KeyKind::EcdsaP256);
    let mut options = rumqttc::v5::MqttOptions::new("thing-1", "127.0.0.1", broker.local_addr().port());
    options.set_transport(rumqttc::Transport::tls_with_config(crate::harness::tls(
        &t.pki.ca_pem(),
        Some(&cert),
        None,
    )));
    let mut device = Device5::connected(options).await;
    // `Connected` fills the channel, and nobody reads it.
    device.client.subscribe(own("thing-1", "report/+"), QoS5::AtLeastOnce).await.unwrap();
    device.wait_packet("SUBACK", |p| matches!(p, Packet5::SubAck(_)).then_some(())).await;

    let topic = own("thing-1", "report");
    device.client.publish(topic.as_str(), QoS5::AtLeastOnce, false, "r1").await.unwrap();
    let reason = device
        .wait_packet("PUBACK", |p| match p {
            Packet5::PubAck(ack) => Some(ack.reason),
            _ => None,
        })
        .await;
    assert_eq!(reason, PubAckReason::Success, "the device did nothing wrong");
    let answer = device
        .wait_packet("the answer", |p| match p {
            Packet5::Publish(p) => Some((p.topic.clone(), p.payload.clone())),
            _ => None,
        })
        .await;
    assert_eq!(answer, (Bytes::from(format!("{topic}/rejected")), Bytes::from_static(b"throttled")));
    assert_eq!(broker.stats().published_dropped, 1);
    assert_eq!(*dropped.lock().unwrap(), [("thing-1".to_owned(), topic, Bytes::from_static(b"r1"))]);
}
