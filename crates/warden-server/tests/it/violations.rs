//! The violations lists and verification states, over violations recorded straight into the
//! store as the detection engine records them.

use serde_json::{Value, json};
use warden_store::{NewViolationEvent, ViolationChange, ViolationEventType};

use crate::support::{NOW_MS, TestServer};

const ID_1: &str = "37e18651d207bbc74236c13faf146127";
const ID_2: &str = "00000000000000000000000000000002";

fn behavior() -> Value {
    json!({
        "name": "MessagesPub",
        "metric": "aws:num-messages-sent",
        "criteria": { "comparisonOperator": "less-than", "value": { "count": 10 }, "durationSeconds": 300 },
    })
}

fn event(
    id: &str,
    kind: ViolationEventType,
    thing: &str,
    count: u64,
    at_ms: i64,
    suppress: bool,
) -> ViolationChange {
    ViolationChange::Event(NewViolationEvent {
        violation_id: id.into(),
        event_type: kind,
        thing: thing.into(),
        security_profile: "MySecProfile".into(),
        behavior: "MessagesPub".into(),
        behavior_json: behavior().to_string(),
        metric_value: json!({ "count": count }).to_string(),
        event_time_ms: at_ms,
        suppress_alerts: suppress,
    })
}

async fn seeded() -> TestServer {
    let server = TestServer::start().await;
    server
        .state
        .store
        .record_violation_events(vec![
            event(ID_1, ViolationEventType::InAlarm, "dev-1", 54, NOW_MS, false),
            event(ID_2, ViolationEventType::InAlarm, "dev-2", 12, NOW_MS + 1000, true),
            event(ID_2, ViolationEventType::AlarmCleared, "dev-2", 3, NOW_MS + 2500, true),
        ])
        .await
        .unwrap();
    server
}

#[tokio::test]
async fn active_violations_have_the_aws_shape() {
    let server = seeded().await;
    let t = NOW_MS as f64 / 1000.0;
    assert_eq!(
        server.ok("GET", "/active-violations", None).await,
        json!({ "activeViolations": [{
            "violationId": ID_1,
            "thingName": "dev-1",
            "securityProfileName": "MySecProfile",
            "behavior": behavior(),
            "lastViolationValue": { "count": 54 },
            "verificationState": "UNKNOWN",
            "lastViolationTime": t,
            "violationStartTime": t,
        }]})
    );
    for query in ["thingName=dev-2", "listSuppressedAlerts=true", "behaviorCriteriaType=MACHINE_LEARNING"] {
        assert_eq!(
            server.ok("GET", &format!("/active-violations?{query}"), None).await,
            json!({ "activeViolations": [] }),
            "{query}"
        );
    }
    let message = server
        .call("GET", "/active-violations?verificationState=MAYBE", None)
        .await
        .error(400, "InvalidRequestException");
    assert!(message.starts_with("verificationState must be"), "{message}");
}

#[tokio::test]
async fn violation_events_are_listed_by_time_and_filters() {
    let server = seeded().await;
    let t = NOW_MS as f64 / 1000.0;
    let range = "startTime=2026-11-27T10:00:00Z&endTime=2026-11-27T10:00:02.5Z";
    let events = server.ok("GET", &format!("/violation-events?{range}"), None).await;
    assert_eq!(
        events,
        json!({ "violationEvents": [
            {
                "violationId": ID_1,
                "thingName": "dev-1",
                "securityProfileName": "MySecProfile",
                "behavior": behavior(),
                "metricValue": { "count": 54 },
                "violationEventType": "in-alarm",
                "verificationState": "UNKNOWN",
                "violationEventTime": t,
            },
            {
                "violationId": ID_2,
                "thingName": "dev-2",
                "securityProfileName": "MySecProfile",
                "behavior": behavior(),
                "metricValue": { "count": 12 },
                "violationEventType": "in-alarm",
                "verificationState": "UNKNOWN",
                "violationEventTime": t + 1.0,
            },
        ]})
    );
    let ids = |v: &Value| -> Vec<String> {
        v["violationEvents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["violationEventType"].as_str().unwrap().to_owned())
            .collect()
    };
    let all = "startTime=2026-11-27T10:00:00Z&endTime=2026-11-27T11:00:00Z";
    let dev2 = server.ok("GET", &format!("/violation-events?{all}&thingName=dev-2"), None).await;
    assert_eq!(ids(&dev2), ["in-alarm", "alarm-cleared"]);
    let unsuppressed =
        server.ok("GET", &format!("/violation-events?{all}&listSuppressedAlerts=false"), None).await;
    assert_eq!(unsuppressed["violationEvents"].as_array().unwrap().len(), 1);
    let message = server
        .call("GET", "/violation-events?startTime=2026-11-27T11:00:00Z", None)
        .await
        .error(400, "InvalidRequestException");
    assert_eq!(message, "endTime is required");
}

#[tokio::test]
async fn verification_states_round_trip() {
    let server = seeded().await;
    let body = json!({ "verificationState": "BENIGN_POSITIVE", "verificationStateDescription": "load test" });
    assert_eq!(
        server.ok("POST", &format!("/violations/verification-state/{ID_2}"), Some(body)).await,
        json!({})
    );
    let all = "startTime=2026-11-27T10:00:00Z&endTime=2026-11-27T11:00:00Z";
    let events =
        server.ok("GET", &format!("/violation-events?{all}&verificationState=BENIGN_POSITIVE"), None).await;
    let events = events["violationEvents"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert!(
        events.iter().all(|e| e["violationId"] == ID_2 && e["verificationStateDescription"] == "load test")
    );

    let body = json!({ "verificationState": "TRUE_POSITIVE" });
    server.ok("POST", &format!("/violations/verification-state/{ID_1}"), Some(body)).await;
    let active = server.ok("GET", "/active-violations?verificationState=TRUE_POSITIVE", None).await;
    assert_eq!(active["activeViolations"][0]["violationId"], ID_1);
    assert_eq!(active["activeViolations"][0].get("verificationStateDescription"), None);

    let unknown = json!({ "verificationState": "TRUE_POSITIVE" });
    server
        .call("POST", "/violations/verification-state/ffff", Some(unknown))
        .await
        .error(400, "InvalidRequestException");
    let bad = json!({ "verificationState": "SURE" });
    server
        .call("POST", &format!("/violations/verification-state/{ID_1}"), Some(bad))
        .await
        .error(400, "InvalidRequestException");
}
