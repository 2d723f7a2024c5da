//! Registry changes made through the REST API reach live MQTT sessions before the API answers:
//! each change is applied to the authorizer incrementally (one certificate, one thing's groups,
//! one target's policies), so these tests drive the real server with the API and real devices.

use std::time::Duration;

use rumqttc::{Packet, QoS};
use serde_json::{Value, json};
use warden_wire::{Format, ReplyStatus};

use crate::devices::{Client, Device, Lab, lab};
use crate::support::ARN;

/// Denies what the default thing policy allows on `things/...` topics: a quarantine.
const DENY_THINGS: &str = r#"{"Statement": [{"Effect": "Deny", "Action": "iot:Publish",
    "Resource": "arn:aws:iot:*:*:topic/things/*"}]}"#;

/// What the default thing policy does not allow: a topic tree of the thing's own.
const TELEMETRY: &str = r#"{"Statement": [{"Effect": "Allow",
    "Action": ["iot:Publish", "iot:Subscribe", "iot:Receive"],
    "Resource": ["arn:aws:iot:*:*:topic/telemetry/${iot:Connection.Thing.ThingName}",
                 "arn:aws:iot:*:*:topicfilter/telemetry/${iot:Connection.Thing.ThingName}"]}]}"#;

fn group_arn(name: &str) -> String {
    format!("{ARN}thinggroup/{name}")
}

fn cert_arn(id: &str) -> String {
    format!("{ARN}cert/{id}")
}

async fn create_group(lab: &Lab, name: &str, parent: Option<&str>) {
    lab.api("POST", &format!("/thing-groups/{name}"), parent.map(|p| json!({ "parentGroupName": p }))).await;
}

async fn create_policy(lab: &Lab, name: &str, document: &str) {
    lab.api("POST", &format!("/policies/{name}"), Some(json!({ "policyDocument": document }))).await;
}

async fn attach(lab: &Lab, policy: &str, target: &str) {
    lab.api("PUT", &format!("/target-policies/{policy}"), Some(json!({ "target": target }))).await;
}

async fn detach(lab: &Lab, policy: &str, target: &str) {
    lab.api("POST", &format!("/target-policies/{policy}"), Some(json!({ "target": target }))).await;
}

async fn join(lab: &Lab, group: &str, thing: &str) {
    let body = json!({ "thingGroupName": group, "thingName": thing });
    lab.api("PUT", "/thing-groups/addThingToThingGroup", Some(body)).await;
}

/// A connected session of `device` subscribed to `topic`.
async fn subscribed(lab: &Lab, device: &Device, client_id: &str, topic: &str) -> Client {
    let mut c = lab.client(device, client_id);
    c.connect().await.unwrap();
    assert_eq!(c.subscribe(topic).await, vec![rumqttc::SubscribeReasonCode::Success(QoS::AtLeastOnce)]);
    c
}

/// Publishes on `topic` and waits for the message to come back through the subscription.
async fn echoed(c: &mut Client, topic: &str, payload: &str) -> Result<(), String> {
    c.client.publish(topic, QoS::AtLeastOnce, false, payload.as_bytes().to_vec()).await.unwrap();
    c.until(|p| matches!(p, Packet::Publish(p) if p.topic == topic && p.payload == payload).then_some(()))
        .await
}

/// Publishes on `topic` and expects the refusal: MQTT 3.1.1 has none for one PUBLISH, so the
/// server closes the session.
async fn refused(c: &mut Client, topic: &str) {
    c.client.publish(topic, QoS::AtLeastOnce, false, b"x".to_vec()).await.unwrap();
    assert!(c.until(|_| None::<()>).await.is_err(), "publish on {topic} should close the session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_a_connected_thing_into_a_child_of_a_denying_group_denies_its_next_publish() {
    let lab = lab(Duration::ZERO).await;
    let device = lab.device("dev-1").await;
    create_group(&lab, "Quarantine", None).await;
    create_group(&lab, "Quarantine-2026", Some("Quarantine")).await;
    create_group(&lab, "Quarantine-2026-11", Some("Quarantine-2026")).await;
    create_policy(&lab, "QuarantinePolicy", DENY_THINGS).await;
    attach(&lab, "QuarantinePolicy", &group_arn("Quarantine")).await;

    let mut c = subscribed(&lab, &device, "dev-1", "things/dev-1/telemetry").await;
    echoed(&mut c, "things/dev-1/telemetry", "21.5").await.unwrap();
    join(&lab, "Quarantine-2026-11", "dev-1").await;
    refused(&mut c, "things/dev-1/telemetry").await;

    // Its reports still go through: the Deny covers `things/*` only.
    let mut agent = subscribed(&lab, &device, "dev-1/agent", "$aws/things/dev-1/defender/metrics/+/+").await;
    let reply =
        agent.report("dev-1", Format::Json, br#"{"hed":{"rid":1,"v":"1.0"},"met":{"ns":{"bo":1}}}"#).await;
    assert_eq!(reply.status, ReplyStatus::Accepted);

    // Leaving the group lifts the Deny.
    let body = json!({ "thingGroupName": "Quarantine-2026-11", "thingName": "dev-1" });
    lab.api("PUT", "/thing-groups/removeThingFromThingGroup", Some(body)).await;
    let mut c = subscribed(&lab, &device, "dev-1", "things/dev-1/telemetry").await;
    echoed(&mut c, "things/dev-1/telemetry", "21.6").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_attached_to_an_ancestor_group_reaches_members_of_its_descendants() {
    let lab = lab(Duration::ZERO).await;
    let device = lab.device("dev-1").await;
    create_group(&lab, "fleet", None).await;
    create_group(&lab, "site", Some("fleet")).await;
    create_group(&lab, "lab", Some("site")).await;
    join(&lab, "lab", "dev-1").await;
    create_policy(&lab, "Stop", DENY_THINGS).await;

    let mut c = subscribed(&lab, &device, "dev-1", "things/dev-1/telemetry").await;
    echoed(&mut c, "things/dev-1/telemetry", "1").await.unwrap();
    attach(&lab, "Stop", &group_arn("fleet")).await;
    refused(&mut c, "things/dev-1/telemetry").await;

    detach(&lab, "Stop", &group_arn("fleet")).await;
    let mut c = subscribed(&lab, &device, "dev-1", "things/dev-1/telemetry").await;
    echoed(&mut c, "things/dev-1/telemetry", "2").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detaching_a_policy_from_a_certificate_denies_the_next_publish() {
    let lab = lab(Duration::ZERO).await;
    let device = lab.device("dev-1").await;
    create_policy(&lab, "Telemetry", TELEMETRY).await;
    let mut c = lab.client(&device, "dev-1");
    c.connect().await.unwrap();
    assert_eq!(c.subscribe("telemetry/dev-1").await, vec![rumqttc::SubscribeReasonCode::Failure]);

    attach(&lab, "Telemetry", &cert_arn(&device.certificate_id)).await;
    let mut c = subscribed(&lab, &device, "dev-1", "telemetry/dev-1").await;
    echoed(&mut c, "telemetry/dev-1", "a").await.unwrap();
    echoed(&mut c, "telemetry/dev-1", "b").await.unwrap();
    detach(&lab, "Telemetry", &cert_arn(&device.certificate_id)).await;
    refused(&mut c, "telemetry/dev-1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_group_lifts_its_policies_from_connected_members() {
    let lab = lab(Duration::ZERO).await;
    let device = lab.device("dev-1").await;
    create_group(&lab, "Quarantine", None).await;
    create_policy(&lab, "QuarantinePolicy", DENY_THINGS).await;
    attach(&lab, "QuarantinePolicy", &group_arn("Quarantine")).await;
    join(&lab, "Quarantine", "dev-1").await;

    let mut denied = subscribed(&lab, &device, "dev-1", "things/dev-1/telemetry").await;
    let mut waiting = subscribed(&lab, &device, "dev-1/b", "things/dev-1/telemetry").await;
    refused(&mut denied, "things/dev-1/telemetry").await;
    lab.api("DELETE", "/thing-groups/Quarantine", None).await;
    echoed(&mut waiting, "things/dev-1/telemetry", "free").await.unwrap();
    assert_eq!(lab.api("POST", "/policy-targets/QuarantinePolicy", None).await, json!({ "targets": [] }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_deactivated_through_the_api_is_dropped_and_reactivated_connects_again() {
    let lab = lab(Duration::ZERO).await;
    let device = lab.device("dev-1").await;
    let mut c = subscribed(&lab, &device, "dev-1", "things/dev-1/telemetry").await;
    let certificate = format!("/certificates/{}", device.certificate_id);

    lab.api("PUT", &format!("{certificate}?newStatus=INACTIVE"), None).await;
    assert!(c.until(|_| None::<()>).await.is_err(), "live session dropped when the API answers");
    assert!(lab.client(&device, "dev-1").connect().await.is_err(), "an INACTIVE certificate cannot connect");

    lab.api("PUT", &format!("{certificate}?newStatus=ACTIVE"), None).await;
    let mut c = subscribed(&lab, &device, "dev-1", "things/dev-1/telemetry").await;
    echoed(&mut c, "things/dev-1/telemetry", "back").await.unwrap();

    lab.api("PUT", &format!("{certificate}?newStatus=REVOKED"), None).await;
    assert!(c.until(|_| None::<()>).await.is_err(), "revoked: dropped too");
    assert!(lab.client(&device, "dev-1").connect().await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_registered_through_the_api_connects_once_attached_and_allowed() {
    let lab = lab(Duration::ZERO).await;
    lab.api("POST", "/things/dev-9", None).await;
    let created = lab.api("POST", "/keys-and-certificate?setAsActive=true&thingName=dev-9", None).await;
    let id = created["certificateId"].as_str().unwrap().to_owned();
    let dir = lab.dir.path().join("dev-9");
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, value: &Value| {
        let path = dir.join(name);
        std::fs::write(&path, value.as_str().unwrap()).unwrap();
        path
    };
    let device = Device {
        certificate_id: id.clone(),
        cert: write("cert.pem", &created["certificatePem"]),
        key: write("key.pem", &created["keyPair"]["PrivateKey"]),
        ca: lab.server.state.pki.ca_cert_path(),
    };
    assert!(lab.client(&device, "dev-9").connect().await.is_err(), "not attached to its thing yet");

    let principal = cert_arn(&id);
    let auth = format!("Bearer {}", lab.server.api_token);
    let headers = [("authorization", auth.as_str()), ("x-amzn-principal", principal.as_str())];
    let resp = crate::support::request(
        lab.server.http_addr,
        "PUT",
        "/things/dev-9/principals",
        &headers,
        Vec::new(),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(lab.client(&device, "dev-9").connect().await.is_err(), "no policy allows iot:Connect yet");

    attach(&lab, "WardenThingPolicy", &principal).await;
    let mut agent = subscribed(&lab, &device, "dev-9", "$aws/things/dev-9/defender/metrics/+/+").await;
    let reply =
        agent.report("dev-9", Format::Json, br#"{"hed":{"rid":1,"v":"1.0"},"met":{"ns":{"bo":1}}}"#).await;
    assert_eq!(reply.status, ReplyStatus::Accepted);

    let resp = crate::support::request(
        lab.server.http_addr,
        "DELETE",
        "/things/dev-9/principals",
        &headers,
        Vec::new(),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(agent.until(|_| None::<()>).await.is_err(), "detached from its thing: dropped");
}
