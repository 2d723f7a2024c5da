//! Detection end to end, through the boundaries users see: metrics reports over MQTT/TLS are
//! evaluated against the security profiles attached through the API; violations are listed by
//! the API, alerted to webhook and MQTT subscribers as SNS notifications, mitigated
//! automatically, and survive a restart.

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::HeaderMap;
use rumqttc::{Packet, QoS};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use warden_wire::{Format, ReplyStatus};

use crate::devices::{Client, Lab, lab};

const WAIT: Duration = Duration::from_secs(15);
const PROFILE: &str = "OutboundBytesSecProfile";

/// A webhook receiver on 127.0.0.1: every POST's headers and body, in order.
struct Webhook {
    url: String,
    received: mpsc::UnboundedReceiver<(HeaderMap, String)>,
}

impl Webhook {
    async fn start() -> Webhook {
        let (tx, received) = mpsc::unbounded_channel();
        let app = axum::Router::new().route(
            "/alerts",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send((headers, body));
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Webhook { url: format!("http://{addr}/alerts"), received }
    }

    /// The next alert: the SNS envelope's headers and body, and its `Message` parsed.
    async fn next(&mut self) -> (HeaderMap, Value, Value) {
        let (headers, body) =
            tokio::time::timeout(WAIT, self.received.recv()).await.expect("no alert arrived").unwrap();
        let envelope: Value = serde_json::from_str(&body).unwrap();
        let message = serde_json::from_str(envelope["Message"].as_str().unwrap()).unwrap();
        (headers, envelope, message)
    }
}

fn report(id: u64, bytes_out: u64) -> Vec<u8> {
    json!({ "header": { "report_id": id, "version": "1.0" },
            "metrics": { "network_stats": { "bytes_out": bytes_out, "bytes_in": 10, "packets_out": 1, "packets_in": 1 } } })
    .to_string()
    .into_bytes()
}

async fn send_report(c: &mut Client, thing: &str, id: u64, bytes_out: u64) {
    let reply = c.report(thing, Format::Json, &report(id, bytes_out)).await;
    assert_eq!(reply.status, ReplyStatus::Accepted, "{reply:?}");
}

/// The lab's profile: at most 35,000 bytes out per 5 minutes, alerting to `topic`, with
/// `automatic` mitigation actions, attached to all things.
async fn outbound_bytes_profile(lab: &Lab, topic: &str, automatic: &[&str]) {
    let mut body = json!({
        "behaviors": [{
            "name": "OutboundBytesBehavior",
            "metric": "aws:all-bytes-out",
            "criteria": { "comparisonOperator": "less-than-equals", "value": { "count": 35000 }, "durationSeconds": 300 },
        }],
        "alertTargets": { "SNS": {
            "alertTargetArn": format!("arn:aws:sns:us-east-1:123456789012:{topic}"),
            "roleArn": "arn:aws:iam::123456789012:role/DDDtoSNSRole",
        }},
    });
    if !automatic.is_empty() {
        body["automaticMitigationActions"] = json!(automatic);
    }
    lab.api("POST", &format!("/security-profiles/{PROFILE}"), Some(body)).await;
    let all = format!("{}all/things", lab.server.state.arns.prefix());
    lab.api("PUT", &format!("/security-profiles/{PROFILE}/targets?securityProfileTargetArn={all}"), None)
        .await;
}

async fn subscribe(lab: &Lab, topic: &str, protocol: &str, endpoint: &str) -> String {
    let body = json!({ "protocol": protocol, "endpoint": endpoint });
    let s = lab.api("POST", &format!("/warden/alert-topics/{topic}/subscriptions"), Some(body)).await;
    s["subscriptionId"].as_str().unwrap().to_owned()
}

/// A server with device `dev-1` and the alert topic `DeviceAlerts`, whose one subscriber is a
/// webhook.
async fn alerting_lab() -> (Lab, crate::devices::Device, Webhook) {
    let lab = lab(Duration::ZERO).await;
    let device = lab.device("dev-1").await;
    let webhook = Webhook::start().await;
    lab.api("POST", "/warden/alert-topics/DeviceAlerts", None).await;
    subscribe(&lab, "DeviceAlerts", "http", &webhook.url).await;
    (lab, device, webhook)
}

async fn active_violations(lab: &Lab) -> Vec<Value> {
    lab.api("GET", "/active-violations", None).await["activeViolations"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_violation_is_alerted_listed_cleared_and_survives_a_restart() {
    let (lab, device, mut webhook) = alerting_lab().await;
    outbound_bytes_profile(&lab, "DeviceAlerts", &[]).await;

    let mut c = lab.client(&device, "dev-1");
    c.connect().await.unwrap();
    c.subscribe("$aws/things/dev-1/defender/metrics/+/+").await;
    send_report(&mut c, "dev-1", 1, 1_000).await;
    send_report(&mut c, "dev-1", 2, 90_000).await;

    let (headers, envelope, alert) = webhook.next().await;
    assert_eq!(headers["x-amz-sns-message-type"], "Notification");
    assert_eq!(headers["x-amz-sns-topic-arn"], "arn:aws:sns:local:000000000000:DeviceAlerts");
    assert_eq!(envelope["Type"], "Notification");
    assert_eq!(envelope["TopicArn"], "arn:aws:sns:local:000000000000:DeviceAlerts");
    let violation_id = alert["violationId"].as_str().unwrap().to_owned();
    assert_eq!(violation_id.len(), 32);
    assert!(alert["violationEventTime"].as_i64().unwrap() > 1_700_000_000_000, "milliseconds: {alert}");
    assert_eq!(
        alert,
        json!({
            "violationEventTime": alert["violationEventTime"],
            "thingName": "dev-1",
            "behavior": {
                "name": "OutboundBytesBehavior",
                "metric": "aws:all-bytes-out",
                "criteria": { "comparisonOperator": "less-than-equals", "value": { "count": 35000 }, "durationSeconds": 300 },
            },
            "violationEventType": "in-alarm",
            "metricValue": { "count": 90000 },
            "violationId": violation_id,
            "securityProfileName": PROFILE,
        })
    );
    let active = active_violations(&lab).await;
    assert_eq!(active.len(), 1, "{active:?}");
    assert_eq!(active[0]["violationId"], json!(violation_id));
    assert_eq!(active[0]["lastViolationValue"], json!({ "count": 90000 }));

    // Still violating: no new alert, the active violation's last value moves on.
    send_report(&mut c, "dev-1", 3, 50_000).await;
    send_report(&mut c, "dev-1", 4, 2_000).await;
    let (_, _, cleared) = webhook.next().await;
    assert_eq!(cleared["violationEventType"], "alarm-cleared");
    assert_eq!(cleared["violationId"], json!(violation_id));
    assert_eq!(cleared["metricValue"], json!({ "count": 2000 }));
    assert!(active_violations(&lab).await.is_empty());
    let events = lab.api("GET", "/violation-events?startTime=0&endTime=4000000000", None).await;
    let kinds: Vec<_> = events["violationEvents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["violationEventType"].as_str().unwrap().to_owned(), e["violationId"].clone()))
        .collect();
    assert_eq!(
        kinds,
        [("in-alarm".into(), json!(violation_id)), ("alarm-cleared".into(), json!(violation_id))]
    );

    // In alarm again, then a restart: the alarm is restored, so the next conforming report
    // clears that same violation instead of leaving it active forever.
    send_report(&mut c, "dev-1", 5, 70_000).await;
    let (_, _, again) = webhook.next().await;
    assert_eq!(again["violationEventType"], "in-alarm");
    assert_ne!(again["violationId"], json!(violation_id), "a new alarm is a new violation");
    drop(c);
    let lab = lab.restart().await;
    let mut c = lab.client(&device, "dev-1");
    c.connect().await.unwrap();
    c.subscribe("$aws/things/dev-1/defender/metrics/+/+").await;
    send_report(&mut c, "dev-1", 6, 100).await;
    let (_, _, cleared) = webhook.next().await;
    assert_eq!(cleared["violationEventType"], "alarm-cleared");
    assert_eq!(cleared["violationId"], again["violationId"]);
    assert!(active_violations(&lab).await.is_empty());
}

#[tokio::test]
async fn automatic_mitigation_quarantines_the_device_whose_reports_are_still_accepted() {
    let lab = lab(Duration::ZERO).await;
    let device = lab.device("dev-1").await;
    let ops = lab.device("ops").await;

    // The lab's quarantine: a group whose policy denies the device's telemetry.
    lab.api("POST", "/thing-groups/Quarantine", None).await;
    let deny = json!({ "Version": "2012-10-17", "Statement": [{
        "Effect": "Deny", "Action": "iot:Publish",
        "Resource": "arn:aws:iot:*:*:topic/things/${iot:Connection.Thing.ThingName}/*" }] });
    lab.api("POST", "/policies/QuarantinePolicy", Some(json!({ "policyDocument": deny.to_string() }))).await;
    let group_arn = lab.server.state.arns.thing_group("Quarantine");
    lab.api("PUT", "/target-policies/QuarantinePolicy", Some(json!({ "target": group_arn }))).await;
    lab.api(
        "POST",
        "/mitigationactions/actions/QuarantineAction",
        Some(json!({
            "roleArn": "arn:aws:iam::123456789012:role/Mitigation",
            "actionParams": { "addThingsToThingGroupParams": { "thingGroupNames": ["Quarantine"] } },
        })),
    )
    .await;
    // Alerts go to an MQTT topic another device listens on.
    lab.api("POST", "/warden/alert-topics/DeviceAlerts", None).await;
    subscribe(&lab, "DeviceAlerts", "mqtt", "things/ops/alerts").await;
    let mut listener = lab.client(&ops, "ops");
    listener.connect().await.unwrap();
    listener.subscribe("things/ops/alerts").await;
    outbound_bytes_profile(&lab, "DeviceAlerts", &["QuarantineAction"]).await;

    let mut c = lab.client(&device, "dev-1");
    c.connect().await.unwrap();
    c.subscribe("$aws/things/dev-1/defender/metrics/+/+").await;
    telemetry(&mut c).await.expect("telemetry is allowed before the violation");
    send_report(&mut c, "dev-1", 1, 500_000).await;

    let envelope = listener
        .until(|p| match p {
            Packet::Publish(p) if p.topic == "things/ops/alerts" => {
                Some(serde_json::from_slice::<Value>(&p.payload).unwrap())
            }
            _ => None,
        })
        .await
        .unwrap();
    let alert: Value = serde_json::from_str(envelope["Message"].as_str().unwrap()).unwrap();
    assert_eq!(
        (alert["thingName"].as_str(), alert["violationEventType"].as_str()),
        (Some("dev-1"), Some("in-alarm"))
    );

    // The automatic task moves the thing, visible through the task and execution APIs.
    let task = format!("/detect/mitigationactions/tasks/auto-{}", alert["violationId"].as_str().unwrap());
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let t = lab.api("GET", &task, None).await;
        if t["taskSummary"]["taskStatus"] == "SUCCESSFUL" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "task did not succeed: {t}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let groups = lab.api("GET", "/things/dev-1/thing-groups", None).await;
    assert_eq!(groups["thingGroups"][0]["groupName"], "Quarantine", "{groups}");
    // Operators see it on /metrics.
    let metrics = crate::support::request(lab.server.http_addr, "GET", "/metrics", &[], Vec::new()).await;
    assert!(
        metrics.text().contains("warden_mitigation_executions_total{status=\"SUCCESSFUL\"} 1\n"),
        "{}",
        metrics.text()
    );

    // The live session is judged by the new policy at once: telemetry is refused (3.1.1: the
    // connection is closed), while metrics reports from a new session are still accepted.
    assert!(telemetry(&mut c).await.is_err(), "quarantined telemetry must be refused");
    let mut c = lab.client(&device, "dev-1");
    c.connect().await.unwrap();
    c.subscribe("$aws/things/dev-1/defender/metrics/+/+").await;
    send_report(&mut c, "dev-1", 2, 100).await;
}

/// Publishes one telemetry reading at QoS 1; `Err` when the server closes the connection.
async fn telemetry(c: &mut Client) -> Result<(), String> {
    c.client
        .publish("things/dev-1/telemetry", QoS::AtLeastOnce, false, br#"{"temperature":21.5}"#.to_vec())
        .await
        .unwrap();
    c.until(|p| matches!(p, Packet::PubAck(_)).then_some(())).await
}

#[tokio::test]
async fn failed_deliveries_are_retried_counted_and_do_not_hold_up_others() {
    let lab = lab(Duration::ZERO).await;
    let device = lab.device("dev-1").await;
    let mut webhook = Webhook::start().await;
    // A port nobody listens on.
    let closed: SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    lab.api("POST", "/warden/alert-topics/DeviceAlerts", None).await;
    let failing = subscribe(&lab, "DeviceAlerts", "http", &format!("http://{closed}/alerts")).await;
    subscribe(&lab, "DeviceAlerts", "http", &webhook.url).await;
    outbound_bytes_profile(&lab, "DeviceAlerts", &[]).await;

    let mut c = lab.client(&device, "dev-1");
    c.connect().await.unwrap();
    c.subscribe("$aws/things/dev-1/defender/metrics/+/+").await;
    send_report(&mut c, "dev-1", 1, 90_000).await;
    let (_, _, alert) = webhook.next().await;
    assert_eq!(alert["violationEventType"], "in-alarm");

    // Five attempts, 0.1 s apart and doubling: all failed, visible on the subscription.
    let deadline = tokio::time::Instant::now() + WAIT;
    let subscription = loop {
        let list = lab.api("GET", "/warden/alert-topics/DeviceAlerts/subscriptions", None).await;
        let s = list["subscriptions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["subscriptionId"] == json!(failing))
            .unwrap()
            .clone();
        if s["failed"] == 5 {
            break s;
        }
        assert!(tokio::time::Instant::now() < deadline, "retries did not finish: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(subscription["delivered"], 0);
    assert!(subscription["lastError"].as_str().is_some_and(|e| !e.is_empty()), "{subscription}");
    let abandoned = lab.server.alerts.stats.abandoned.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(abandoned, 1, "one delivery given up after its last attempt");
}

#[tokio::test]
async fn a_topic_dimension_narrows_a_cloud_side_message_count() {
    let (lab, device, mut webhook) = alerting_lab().await;
    lab.api(
        "POST",
        "/dimensions/Telemetry",
        Some(json!({ "type": "TOPIC_FILTER", "stringValues": ["things/+/telemetry"], "clientRequestToken": "t1" })),
    )
    .await;
    // At most two telemetry messages per period; other topics do not count.
    lab.api(
        "POST",
        "/security-profiles/Chatty",
        Some(json!({
            "behaviors": [{
                "name": "TelemetryMessages",
                "metric": "aws:num-messages-sent",
                "metricDimension": { "dimensionName": "Telemetry" },
                "criteria": { "comparisonOperator": "less-than-equals", "value": { "count": 2 }, "durationSeconds": 300 },
            }],
            "alertTargets": { "SNS": {
                "alertTargetArn": "arn:aws:sns:local:000000000000:DeviceAlerts",
                "roleArn": "arn:aws:iam::000000000000:role/Alerts",
            }},
        })),
    )
    .await;
    let all = format!("{}all/things", lab.server.state.arns.prefix());
    lab.api("PUT", &format!("/security-profiles/Chatty/targets?securityProfileTargetArn={all}"), None).await;

    let mut c = lab.client(&device, "dev-1");
    c.connect().await.unwrap();
    for _ in 0..5 {
        c.client.publish("things/dev-1/logs", QoS::AtLeastOnce, false, b"x".to_vec()).await.unwrap();
        c.until(|p| matches!(p, Packet::PubAck(_)).then_some(())).await.unwrap();
    }
    for _ in 0..5 {
        telemetry(&mut c).await.unwrap();
    }
    // Keep the session polled while the cloud-side period (0.5 s) ends.
    let poll = tokio::spawn(async move {
        loop {
            if c.eventloop.poll().await.is_err() {
                break;
            }
        }
    });
    let (_, _, alert) = webhook.next().await;
    poll.abort();
    assert_eq!(alert["violationEventType"], "in-alarm");
    assert_eq!(alert["behavior"]["name"], "TelemetryMessages");
    let sent = alert["metricValue"]["count"].as_u64().unwrap();
    assert!((3..=5).contains(&sent), "telemetry only, counted in one or two periods: {alert}");
    // Stored right after it is evaluated: wait for the write.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let stored = lab.datapoints_in("dev-1", "aws:num-messages-sent", Some("Telemetry")).await;
        if stored.iter().filter_map(|d| d.value.count).sum::<u64>() >= 3 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the IN series is stored under the dimension's name");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn leaving_the_targeted_group_invalidates_the_alarm_at_once() {
    let (lab, device, mut webhook) = alerting_lab().await;
    lab.api("POST", "/thing-groups/cameras", None).await;
    lab.api("POST", "/thing-groups/lobby", Some(json!({ "parentGroupName": "cameras" }))).await;
    let membership = |action: &str| {
        (format!("/thing-groups/{action}"), json!({ "thingGroupName": "lobby", "thingName": "dev-1" }))
    };
    let (path, body) = membership("addThingToThingGroup");
    lab.api("PUT", &path, Some(body)).await;
    outbound_bytes_profile(&lab, "DeviceAlerts", &[]).await;
    // Only the cameras (and so the nested lobby) are monitored, not all things.
    let all = format!("{}all/things", lab.server.state.arns.prefix());
    lab.api("DELETE", &format!("/security-profiles/{PROFILE}/targets?securityProfileTargetArn={all}"), None)
        .await;
    let cameras = lab.server.state.arns.thing_group("cameras");
    lab.api("PUT", &format!("/security-profiles/{PROFILE}/targets?securityProfileTargetArn={cameras}"), None)
        .await;

    let mut c = lab.client(&device, "dev-1");
    c.connect().await.unwrap();
    c.subscribe("$aws/things/dev-1/defender/metrics/+/+").await;
    send_report(&mut c, "dev-1", 1, 90_000).await;
    let (_, _, alert) = webhook.next().await;
    assert_eq!(alert["violationEventType"], "in-alarm");

    let (path, body) = membership("removeThingFromThingGroup");
    lab.api("PUT", &path, Some(body)).await;
    // The API answered after detection applied the change: the alarm is gone already.
    assert!(active_violations(&lab).await.is_empty());
    let (_, _, ended) = webhook.next().await;
    assert_eq!(ended["violationEventType"], "alarm-invalidated");
    assert_eq!(ended["violationId"], alert["violationId"]);
}

/// A burst of alerts reaches every subscriber of its topic, each alert once, though alerts
/// queued together share one lookup of the subscriptions and a subscriber between the two
/// fails every attempt (its retries wait without holding a delivery slot).
#[tokio::test]
async fn a_burst_of_alerts_reaches_every_subscriber_once() {
    const REPORTS: u64 = 40;
    let lab = lab(Duration::ZERO).await;
    let device = lab.device("dev-1").await;
    let (mut first, mut second) = (Webhook::start().await, Webhook::start().await);
    let closed: SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    lab.api("POST", "/warden/alert-topics/DeviceAlerts", None).await;
    subscribe(&lab, "DeviceAlerts", "http", &first.url).await;
    let failing = subscribe(&lab, "DeviceAlerts", "http", &format!("http://{closed}/alerts")).await;
    subscribe(&lab, "DeviceAlerts", "http", &second.url).await;
    outbound_bytes_profile(&lab, "DeviceAlerts", &[]).await;

    let mut c = lab.client(&device, "dev-1");
    c.connect().await.unwrap();
    c.subscribe("$aws/things/dev-1/defender/metrics/+/+").await;
    // Every report flips the alarm, and its bytes_out names it in the alert's metricValue.
    let bytes_out = |id: u64| if id % 2 == 1 { 90_000 + id } else { 1_000 + id };
    for id in 1..=REPORTS {
        send_report(&mut c, "dev-1", id, bytes_out(id)).await;
    }
    // The message id of each alert (by its value) as each webhook saw it.
    let mut message_ids = Vec::new();
    for webhook in [&mut first, &mut second] {
        let mut seen = std::collections::BTreeMap::new();
        for _ in 0..REPORTS {
            let (_, envelope, alert) = webhook.next().await;
            let value = alert["metricValue"]["count"].as_u64().unwrap();
            let kind = if value > 35_000 { "in-alarm" } else { "alarm-cleared" };
            assert_eq!(alert["violationEventType"], kind, "{alert}");
            assert!(seen.insert(value, envelope["MessageId"].clone()).is_none(), "{value} twice");
        }
        let expected: Vec<u64> = (1..=REPORTS).map(bytes_out).collect();
        assert!(expected.iter().all(|v| seen.contains_key(v)), "each alert once: {seen:?}");
        message_ids.push(seen);
    }
    // As in SNS, an alert has one message id, whichever subscriber receives it.
    assert_eq!(message_ids[0], message_ids[1]);
    // Outcomes are written after the POST: wait until all are.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let list = lab.api("GET", "/warden/alert-topics/DeviceAlerts/subscriptions", None).await;
        let subscriptions = list["subscriptions"].as_array().unwrap().clone();
        let recorded = subscriptions.iter().all(|s| {
            if s["subscriptionId"] == json!(failing) {
                s["delivered"] == 0 && s["failed"].as_u64().unwrap() >= REPORTS
            } else {
                s["delivered"] == json!(REPORTS) && s["failed"] == 0
            }
        });
        if recorded {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "deliveries not recorded: {subscriptions:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
