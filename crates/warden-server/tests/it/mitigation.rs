//! Mitigation actions, detect mitigation tasks and their executions, and automatic mitigation:
//! through the API over violations recorded straight into the store (as the detection engine
//! records them), and against live MQTT sessions of the real server.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rumqttc::{Packet, QoS};
use serde_json::{Value, json};
use warden_server::state::{RegistryChange, RegistryListener};
use warden_store::{NewViolationEvent, ViolationChange, ViolationEventType};
use warden_wire::{Format, ReplyStatus};

use crate::devices::lab;
use crate::support::{ARN, NOW_MS, Paged, TestServer, collect_pages};

const ROLE: &str = "arn:aws:iam::123456789012:role/MitigationRole";
const V1: &str = "37e18651d207bbc74236c13faf146127";
const V2: &str = "00000000000000000000000000000002";
const V3: &str = "00000000000000000000000000000003";
const V4: &str = "00000000000000000000000000000004";
const WAIT: Duration = Duration::from_secs(15);

fn quarantine(groups: &[&str]) -> Value {
    json!({ "roleArn": ROLE, "actionParams": { "addThingsToThingGroupParams": { "thingGroupNames": groups } } })
}

fn deactivate() -> Value {
    json!({ "roleArn": ROLE, "actionParams": { "updateDeviceCertificateParams": { "action": "DEACTIVATE" } } })
}

fn publish_finding() -> Value {
    json!({ "roleArn": ROLE, "actionParams": { "publishFindingToSnsParams": { "topicArn": "arn:aws:sns:local:000000000000:t" } } })
}

fn event(
    id: &str,
    kind: ViolationEventType,
    thing: &str,
    behavior: &str,
    at_ms: i64,
    suppress: bool,
) -> ViolationChange {
    ViolationChange::Event(NewViolationEvent {
        violation_id: id.into(),
        event_type: kind,
        thing: thing.into(),
        security_profile: "OutboundBytesSecProfile".into(),
        behavior: behavior.into(),
        behavior_json: json!({
            "name": behavior,
            "metric": "aws:all-bytes-out",
            "criteria": { "comparisonOperator": "less-than-equals", "value": { "count": 35000 }, "durationSeconds": 300 },
        })
        .to_string(),
        metric_value: json!({ "count": 50_000 }).to_string(),
        event_time_ms: at_ms,
        suppress_alerts: suppress,
    })
}

fn in_alarm(id: &str, thing: &str) -> ViolationChange {
    event(id, ViolationEventType::InAlarm, thing, "OutboundBytesBehavior", NOW_MS - 60_000, false)
}

/// Executions of a task as `[violationId, actionName, status, errorCode]`, in order.
async fn executions(server: &TestServer, task_id: &str) -> Vec<Value> {
    let listed =
        server.ok("GET", &format!("/detect/mitigationactions/executions?taskId={task_id}"), None).await;
    listed["actionsExecutions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| json!([e["violationId"], e["actionName"], e["status"], e.get("errorCode")]))
        .collect()
}

/// Waits until the task has ended; its summary.
async fn ended(server: &TestServer, task_id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let summary = server.ok("GET", &format!("/detect/mitigationactions/tasks/{task_id}"), None).await;
        let summary = summary["taskSummary"].clone();
        if summary["taskStatus"] != "IN_PROGRESS" {
            return summary;
        }
        assert!(tokio::time::Instant::now() < deadline, "task {task_id} is still running: {summary}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn start(server: &TestServer, task_id: &str, body: Value) -> Value {
    server.ok("PUT", &format!("/detect/mitigationactions/tasks/{task_id}"), Some(body)).await
}

#[tokio::test]
async fn mitigation_actions_are_created_described_updated_listed_and_deleted() {
    let server = TestServer::start().await;
    let created =
        server.ok("POST", "/mitigationactions/actions/quarantine", Some(quarantine(&["Quarantine"]))).await;
    assert_eq!(created["actionArn"], json!(format!("{ARN}mitigationaction/quarantine")));
    let id = created["actionId"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    // Again exactly as it is: the same action; otherwise a conflict naming its ARN.
    let again =
        server.ok("POST", "/mitigationactions/actions/quarantine", Some(quarantine(&["Quarantine"]))).await;
    assert_eq!(again, created);
    let conflict = server.call("POST", "/mitigationactions/actions/quarantine", Some(deactivate())).await;
    conflict.error(409, "ResourceAlreadyExistsException");
    assert_eq!(conflict.json()["resourceArn"], json!(format!("{ARN}mitigationaction/quarantine")));

    let t = NOW_MS as f64 / 1000.0;
    assert_eq!(
        server.ok("GET", "/mitigationactions/actions/quarantine", None).await,
        json!({
            "actionName": "quarantine",
            "actionType": "ADD_THINGS_TO_THING_GROUP",
            "actionArn": format!("{ARN}mitigationaction/quarantine"),
            "actionId": id,
            "roleArn": ROLE,
            "actionParams": { "addThingsToThingGroupParams": { "thingGroupNames": ["Quarantine"] } },
            "creationDate": t,
            "lastModifiedDate": t,
        })
    );

    server.ok("POST", "/mitigationactions/actions/deactivate", Some(deactivate())).await;
    server.ok("POST", "/mitigationactions/actions/audit-sns", Some(publish_finding())).await;
    let (names, pages) = collect_pages(
        &server,
        "GET",
        "/mitigationactions/actions?maxResults=2",
        "actionIdentifiers",
        Paged::Token,
        |a| a["actionName"].as_str().unwrap().to_owned(),
    )
    .await;
    assert_eq!((names, pages), (vec!["audit-sns".into(), "deactivate".into(), "quarantine".into()], 2));
    let listed =
        server.ok("GET", "/mitigationactions/actions?actionType=UPDATE_DEVICE_CERTIFICATE", None).await;
    assert_eq!(
        listed,
        json!({ "actionIdentifiers": [{
            "actionName": "deactivate",
            "actionArn": format!("{ARN}mitigationaction/deactivate"),
            "creationDate": t,
        }]})
    );

    // New parameters may change the type; the role alone may change.
    server.advance_ms(1000);
    let updated = server
        .ok(
            "PATCH",
            "/mitigationactions/actions/quarantine",
            Some(json!({ "actionParams": { "addThingsToThingGroupParams": { "thingGroupNames": ["Quarantine", "Forensics"], "overrideDynamicGroups": true } } })),
        )
        .await;
    assert_eq!(updated, created);
    let described = server.ok("GET", "/mitigationactions/actions/quarantine", None).await;
    assert_eq!(
        described["actionParams"],
        json!({ "addThingsToThingGroupParams": { "thingGroupNames": ["Quarantine", "Forensics"], "overrideDynamicGroups": true } })
    );
    assert_eq!(described["lastModifiedDate"], json!(t + 1.0));
    server.ok("PATCH", "/mitigationactions/actions/audit-sns", Some(deactivate())).await;
    let described = server.ok("GET", "/mitigationactions/actions/audit-sns", None).await;
    assert_eq!(described["actionType"], "UPDATE_DEVICE_CERTIFICATE");
    let role = "arn:aws:iam::123456789012:role/Other";
    server.ok("PATCH", "/mitigationactions/actions/audit-sns", Some(json!({ "roleArn": role }))).await;
    let described = server.ok("GET", "/mitigationactions/actions/audit-sns", None).await;
    assert_eq!(
        (described["roleArn"].as_str(), described["actionType"].as_str()),
        (Some(role), Some("UPDATE_DEVICE_CERTIFICATE"))
    );

    server.ok("DELETE", "/mitigationactions/actions/audit-sns", None).await;
    server
        .call("GET", "/mitigationactions/actions/audit-sns", None)
        .await
        .error(404, "ResourceNotFoundException");
    // As in AWS, deleting what is not there succeeds.
    server.ok("DELETE", "/mitigationactions/actions/audit-sns", None).await;
    server
        .call("PATCH", "/mitigationactions/actions/audit-sns", Some(json!({ "roleArn": role })))
        .await
        .error(404, "ResourceNotFoundException");
}

#[tokio::test]
async fn bad_mitigation_actions_are_refused_with_a_message() {
    let server = TestServer::start().await;
    let params = |p: Value| json!({ "roleArn": ROLE, "actionParams": p });
    for (name, body, message) in [
        ("a.b", quarantine(&["Q"]), "actionName \"a.b\" must be 1 to 128 characters of [a-zA-Z0-9_-]"),
        (
            "a",
            json!({ "actionParams": { "updateDeviceCertificateParams": { "action": "DEACTIVATE" } } }),
            "missing field `roleArn`",
        ),
        (
            "a",
            json!({ "roleArn": "short" , "actionParams": { "updateDeviceCertificateParams": { "action": "DEACTIVATE" } } }),
            "roleArn must be 20 to 2048 characters",
        ),
        ("a", json!({ "roleArn": ROLE }), "missing field `actionParams`"),
        ("a", params(json!({})), "actionParams must set one of updateDeviceCertificateParams"),
        (
            "a",
            params(
                json!({ "updateDeviceCertificateParams": { "action": "DEACTIVATE" }, "addThingsToThingGroupParams": { "thingGroupNames": ["Q"] } }),
            ),
            "actionParams must set exactly one kind of parameters, not updateDeviceCertificateParams, addThingsToThingGroupParams",
        ),
        (
            "a",
            params(json!({ "updateDeviceCertificateParams": { "action": "INACTIVE" } })),
            "actionParams.updateDeviceCertificateParams.action must be DEACTIVATE, not \"INACTIVE\"",
        ),
        (
            "a",
            params(json!({ "addThingsToThingGroupParams": { "thingGroupNames": [] } })),
            "actionParams.addThingsToThingGroupParams.thingGroupNames must name 1 to 10 thing groups",
        ),
        (
            "a",
            params(
                json!({ "addThingsToThingGroupParams": { "thingGroupNames": ["1","2","3","4","5","6","7","8","9","10","11"] } }),
            ),
            "must name 1 to 10 thing groups",
        ),
        (
            "a",
            params(json!({ "addThingsToThingGroupParams": { "thingGroupNames": ["a/b"] } })),
            "thingGroupNames[0]: \"a/b\" must be 1 to 128 characters",
        ),
        (
            "a",
            params(
                json!({ "enableIoTLoggingParams": { "roleArnForLogging": ROLE, "logLevel": "DISABLED" } }),
            ),
            "actionParams.enableIoTLoggingParams.logLevel must be DEBUG, INFO, ERROR or WARN, not \"DISABLED\"",
        ),
        (
            "a",
            params(json!({ "replaceDefaultPolicyVersionParams": { "templateName": "MY_POLICY" } })),
            "templateName must be BLANK_POLICY",
        ),
        ("a", params(json!({ "quarantineParams": {} })), "unknown field `quarantineParams`"),
        (
            "a",
            json!({ "roleArn": ROLE, "actionParams": { "updateDeviceCertificateParams": { "action": "DEACTIVATE" } }, "tags": [] }),
            "unknown field `tags`",
        ),
    ] {
        let got = server
            .call("POST", &format!("/mitigationactions/actions/{name}"), Some(body.clone()))
            .await
            .error(400, "InvalidRequestException");
        assert!(got.contains(message), "{body}: {got}");
    }
    for (target, message) in [
        (
            "/mitigationactions/actions?actionType=QUARANTINE",
            "actionType must be one of UPDATE_DEVICE_CERTIFICATE",
        ),
        ("/mitigationactions/actions?maxResults=251", "maxResults must be between 1 and 250"),
        ("/mitigationactions/actions?thingName=x", "query parameter thingName is not supported"),
    ] {
        let got = server.call("GET", target, None).await.error(400, "InvalidRequestException");
        assert!(got.contains(message), "{target}: {got}");
    }
    assert_eq!(
        server.ok("GET", "/mitigationactions/actions", None).await,
        json!({ "actionIdentifiers": [] })
    );
}

/// Registered things `dev-1` and `dev-2` in alarm (V1, V2), groups, and the actions
/// `quarantine` (into `Quarantine`), `deactivate` and `audit-sns`.
async fn seeded() -> TestServer {
    let server = TestServer::start().await;
    for thing in ["dev-1", "dev-2"] {
        server.thing(thing).await;
    }
    server.group("Quarantine", None).await;
    server.ok("POST", "/mitigationactions/actions/quarantine", Some(quarantine(&["Quarantine"]))).await;
    server.ok("POST", "/mitigationactions/actions/deactivate", Some(deactivate())).await;
    server.ok("POST", "/mitigationactions/actions/audit-sns", Some(publish_finding())).await;
    server
        .state
        .store
        .record_violation_events(vec![in_alarm(V1, "dev-1"), in_alarm(V2, "dev-2")])
        .await
        .unwrap();
    server.changes.take();
    server
}

#[tokio::test]
async fn a_task_moves_the_things_in_violation_into_the_quarantine_group() {
    let server = seeded().await;
    let body = json!({
        "target": { "violationIds": [V1] },
        "actions": ["quarantine"],
        "clientRequestToken": "token-1",
    });
    assert_eq!(
        start(&server, "quarantine-dev-1", body.clone()).await,
        json!({ "taskId": "quarantine-dev-1" })
    );
    let summary = ended(&server, "quarantine-dev-1").await;
    let t = NOW_MS as f64 / 1000.0;
    let action_id = server.ok("GET", "/mitigationactions/actions/quarantine", None).await["actionId"].clone();
    assert_eq!(
        summary,
        json!({
            "taskId": "quarantine-dev-1",
            "taskStatus": "SUCCESSFUL",
            "taskStartTime": t,
            "taskEndTime": t,
            "target": { "violationIds": [V1] },
            "onlyActiveViolationsIncluded": false,
            "suppressedAlertsIncluded": false,
            "actionsDefinition": [{
                "name": "quarantine",
                "id": action_id,
                "roleArn": ROLE,
                "actionParams": { "addThingsToThingGroupParams": { "thingGroupNames": ["Quarantine"] } },
            }],
            "taskStatistics": { "actionsExecuted": 1, "actionsSkipped": 0, "actionsFailed": 0 },
        })
    );
    let groups = server.ok("GET", "/things/dev-1/thing-groups", None).await;
    assert_eq!(
        groups["thingGroups"],
        json!([{ "groupName": "Quarantine", "groupArn": format!("{ARN}thinggroup/Quarantine") }])
    );
    // The MQTT authorizer was told, exactly as by AddThingToThingGroup.
    assert_eq!(server.changes.take(), vec![RegistryChange::ThingGroups { thing: "dev-1".into() }]);
    let listed = server.ok("GET", "/detect/mitigationactions/executions?taskId=quarantine-dev-1", None).await;
    assert_eq!(
        listed,
        json!({ "actionsExecutions": [{
            "taskId": "quarantine-dev-1",
            "violationId": V1,
            "actionName": "quarantine",
            "thingName": "dev-1",
            "executionStartDate": t,
            "executionEndDate": t,
            "status": "SUCCESSFUL",
            "message": "added dev-1 to thing group(s) Quarantine",
        }]})
    );

    // The same request again (an SDK retry): the same task, not run again.
    server.advance_ms(1000);
    assert_eq!(
        start(&server, "quarantine-dev-1", body.clone()).await,
        json!({ "taskId": "quarantine-dev-1" })
    );
    assert_eq!(ended(&server, "quarantine-dev-1").await, summary);
    assert_eq!(executions(&server, "quarantine-dev-1").await.len(), 1);
    // The same id with another token or other parameters is another task.
    let mut other = body.clone();
    other["clientRequestToken"] = json!("token-2");
    let message = server
        .call("PUT", "/detect/mitigationactions/tasks/quarantine-dev-1", Some(other))
        .await
        .error(400, "TaskAlreadyExistsException");
    assert!(message.contains("detect mitigation task quarantine-dev-1 already exists"), "{message}");
    let mut other = body.clone();
    other["includeSuppressedAlerts"] = json!(true);
    server
        .call("PUT", "/detect/mitigationactions/tasks/quarantine-dev-1", Some(other))
        .await
        .error(400, "TaskAlreadyExistsException");
    // A token belongs to one task.
    let message = server
        .call("PUT", "/detect/mitigationactions/tasks/another", Some(body))
        .await
        .error(400, "InvalidRequestException");
    assert!(
        message.contains("client request token token-1 was already used by task quarantine-dev-1"),
        "{message}"
    );

    // The second violation, by the profile and behavior, among the active ones: dev-1 is again
    // in the group (adding is idempotent), dev-2 joins.
    let body = json!({
        "target": { "securityProfileName": "OutboundBytesSecProfile", "behaviorName": "OutboundBytesBehavior" },
        "actions": ["quarantine"],
        "includeOnlyActiveViolations": true,
        "violationEventOccurrenceRange": { "startTime": t - 3600.0, "endTime": t + 1.0 },
        "clientRequestToken": "token-3",
    });
    start(&server, "all-in-alarm", body).await;
    let summary = ended(&server, "all-in-alarm").await;
    assert_eq!(summary["taskStatus"], "SUCCESSFUL");
    assert_eq!(
        summary["violationEventOccurrenceRange"],
        json!({ "startTime": t - 3600.0, "endTime": t + 1.0 })
    );
    assert_eq!(summary["onlyActiveViolationsIncluded"], json!(true));
    let things = server.ok("GET", "/thing-groups/Quarantine/things", None).await;
    assert_eq!(things["things"], json!(["dev-1", "dev-2"]));

    // Tasks are listed by start time; executions by filters.
    let range = format!("startTime={}&endTime={}", NOW_MS / 1000 - 10, NOW_MS / 1000 + 10);
    let (tasks, pages) = collect_pages(
        &server,
        "GET",
        &format!("/detect/mitigationactions/tasks?{range}&maxResults=1"),
        "tasks",
        Paged::Token,
        |t| t["taskId"].as_str().unwrap().to_owned(),
    )
    .await;
    assert_eq!((tasks, pages), (vec!["quarantine-dev-1".to_owned(), "all-in-alarm".to_owned()], 2));
    let later = format!("startTime={}&endTime={}", NOW_MS / 1000 + 1, NOW_MS / 1000 + 10);
    let listed = server.ok("GET", &format!("/detect/mitigationactions/tasks?{later}"), None).await;
    assert_eq!(listed["tasks"].as_array().unwrap().len(), 1);
    for (query, count) in [
        ("thingName=dev-1".to_owned(), 2),
        (format!("violationId={V2}"), 1),
        ("taskId=all-in-alarm&thingName=dev-1".to_owned(), 1),
        ("startTime=2026-11-27T10:00:01Z".to_owned(), 2),
        ("endTime=2026-11-27T10:00:01Z".to_owned(), 1),
        ("thingName=dev-3".to_owned(), 0),
    ] {
        let listed = server.ok("GET", &format!("/detect/mitigationactions/executions?{query}"), None).await;
        assert_eq!(listed["actionsExecutions"].as_array().unwrap().len(), count, "{query}: {listed}");
    }
}

#[tokio::test]
async fn after_a_failed_action_the_rest_are_skipped_and_audit_actions_do_not_run() {
    let server = seeded().await;
    server.ok("POST", "/mitigationactions/actions/forensics", Some(quarantine(&["Forensics"]))).await;
    // V3 is about a thing that is not registered.
    server.state.store.record_violation_events(vec![in_alarm(V3, "unregistered")]).await.unwrap();
    let body = json!({
        "target": { "violationIds": [V1, V3] },
        "actions": ["audit-sns", "forensics", "quarantine"],
        "clientRequestToken": "t",
    });
    start(&server, "mixed", body).await;
    let summary = ended(&server, "mixed").await;
    assert_eq!(summary["taskStatus"], "FAILED");
    assert_eq!(
        summary["taskStatistics"],
        json!({ "actionsExecuted": 0, "actionsSkipped": 4, "actionsFailed": 2 })
    );
    assert_eq!(
        executions(&server, "mixed").await,
        [
            json!([V1, "audit-sns", "SKIPPED", "NotSupportedForDetect"]),
            json!([V1, "forensics", "FAILED", "ResourceNotFound"]),
            json!([V1, "quarantine", "SKIPPED", "PreviousActionFailed"]),
            json!([V3, "audit-sns", "SKIPPED", "NotSupportedForDetect"]),
            json!([V3, "forensics", "FAILED", "ResourceNotFound"]),
            json!([V3, "quarantine", "SKIPPED", "PreviousActionFailed"]),
        ]
    );
    let listed = server
        .ok("GET", &format!("/detect/mitigationactions/executions?taskId=mixed&violationId={V1}"), None)
        .await;
    let messages: Vec<&str> = listed["actionsExecutions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        messages,
        [
            "PUBLISH_FINDING_TO_SNS is an Audit mitigation action; Detect tasks run only ADD_THINGS_TO_THING_GROUP and UPDATE_DEVICE_CERTIFICATE",
            "thing group Forensics does not exist",
            "skipped because mitigation action forensics failed for this violation",
        ]
    );
    let listed = server
        .ok("GET", &format!("/detect/mitigationactions/executions?violationId={V3}&maxResults=2"), None)
        .await;
    assert_eq!(
        listed["actionsExecutions"][1]["message"],
        "thing unregistered is not registered, so it cannot be mitigated"
    );
    assert!(listed.get("nextToken").is_some());
    assert_eq!(server.ok("GET", "/thing-groups/Quarantine/things", None).await["things"], json!([]));

    // Skipped audit actions alone leave a task SUCCESSFUL.
    start(&server, "audit-only", json!({ "target": { "violationIds": [V1] }, "actions": ["audit-sns", "quarantine"], "clientRequestToken": "t2" }))
        .await;
    let summary = ended(&server, "audit-only").await;
    assert_eq!(summary["taskStatus"], "SUCCESSFUL");
    assert_eq!(
        summary["taskStatistics"],
        json!({ "actionsExecuted": 1, "actionsSkipped": 1, "actionsFailed": 0 })
    );
}

#[tokio::test]
async fn targets_select_violations_by_range_activity_and_suppression() {
    let server = seeded().await;
    let store = &server.state.store;
    // V1 (dev-1) and V2 (dev-2) are active since NOW-60s. V3 (dev-3) was raised and cleared an
    // hour ago; V4 (dev-4) is active on a behavior with suppressAlerts.
    let hour_ago = NOW_MS - 3_600_000;
    store
        .record_violation_events(vec![
            event(V3, ViolationEventType::InAlarm, "dev-3", "OutboundBytesBehavior", hour_ago, false),
            event(
                V3,
                ViolationEventType::AlarmCleared,
                "dev-3",
                "OutboundBytesBehavior",
                hour_ago + 1000,
                false,
            ),
            event(V4, ViolationEventType::InAlarm, "dev-4", "QuietBehavior", NOW_MS - 1000, true),
        ])
        .await
        .unwrap();
    let t = NOW_MS as f64 / 1000.0;
    let profile = json!({ "securityProfileName": "OutboundBytesSecProfile" });
    let behavior =
        json!({ "securityProfileName": "OutboundBytesSecProfile", "behaviorName": "OutboundBytesBehavior" });
    for (i, (target, extra, selected)) in [
        (profile.clone(), json!({}), vec![V1, V2, V3]),
        (profile.clone(), json!({ "includeSuppressedAlerts": true }), vec![V1, V2, V4, V3]),
        (profile.clone(), json!({ "includeOnlyActiveViolations": true }), vec![V1, V2]),
        (profile.clone(), json!({ "includeOnlyActiveViolations": true, "includeSuppressedAlerts": true }), vec![V1, V2, V4]),
        (behavior.clone(), json!({ "violationEventOccurrenceRange": { "startTime": t - 7200.0, "endTime": t - 1800.0 } }), vec![V3]),
        (
            profile.clone(),
            json!({ "violationEventOccurrenceRange": { "startTime": t - 120.0, "endTime": t }, "includeSuppressedAlerts": true }),
            vec![V1, V2, V4],
        ),
        (
            behavior.clone(),
            json!({ "violationEventOccurrenceRange": { "startTime": t - 7200.0, "endTime": t }, "includeOnlyActiveViolations": true }),
            vec![V1, V2],
        ),
        (json!({ "violationIds": [V3, V1] }), json!({}), vec![V3, V1]),
        (json!({ "violationIds": [V3, V4] }), json!({ "includeOnlyActiveViolations": true }), vec![]),
        (json!({ "violationIds": [V4] }), json!({ "includeSuppressedAlerts": true }), vec![V4]),
    ]
    .into_iter()
    .enumerate()
    {
        let mut body = json!({ "target": target, "actions": ["quarantine"], "clientRequestToken": format!("t{i}") });
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let task_id = format!("task-{i}");
        start(&server, &task_id, body.clone()).await;
        ended(&server, &task_id).await;
        let got: Vec<Value> = executions(&server, &task_id).await.iter().map(|e| e[0].clone()).collect();
        assert_eq!(got, selected.iter().map(|v| json!(v)).collect::<Vec<_>>(), "{body}");
    }
}

#[tokio::test]
async fn bad_task_requests_are_refused_with_a_message() {
    let server = seeded().await;
    let ok =
        json!({ "target": { "violationIds": [V1] }, "actions": ["quarantine"], "clientRequestToken": "t" });
    let with = |member: &str, value: Value| {
        let mut body = ok.clone();
        body[member] = value;
        body
    };
    for (task_id, body, message) in [
        ("a.b", ok.clone(), "taskId \"a.b\" must be 1 to 128 characters of [a-zA-Z0-9_-]"),
        ("t", json!({ "actions": ["quarantine"], "clientRequestToken": "t" }), "missing field `target`"),
        ("t", with("target", json!({})), "target needs violationIds or securityProfileName"),
        ("t", with("target", json!({ "violationIds": [V1], "securityProfileName": "p" })), "not both"),
        (
            "t",
            with("target", json!({ "behaviorName": "b" })),
            "target.behaviorName needs target.securityProfileName",
        ),
        (
            "t",
            with("target", json!({ "violationIds": [] })),
            "target.violationIds must have 1 to 25 violation ids",
        ),
        ("t", with("target", json!({ "violationIds": ["x_y"] })), "target.violationIds[0]: \"x_y\" must be"),
        (
            "t",
            with("target", json!({ "violationIds": [V1, "ffff"] })),
            "target.violationIds[1]: violation ffff does not exist",
        ),
        ("t", with("target", json!({ "thingName": "dev-1" })), "unknown field `thingName`"),
        ("t", with("actions", json!([])), "actions must name 1 to 5 mitigation actions"),
        (
            "t",
            with("actions", json!(["a", "b", "c", "d", "e", "f"])),
            "actions must name 1 to 5 mitigation actions",
        ),
        ("t", with("actions", json!(["quarantine", "quarantine"])), "actions[1]: quarantine is named twice"),
        ("t", with("actions", json!(["nope"])), "actions[0]: mitigation action nope does not exist"),
        ("t", with("clientRequestToken", json!("")), "clientRequestToken must be 1 to 64 characters"),
        ("t", with("clientRequestToken", json!("a b")), "clientRequestToken must be 1 to 64 characters"),
        (
            "t",
            with("violationEventOccurrenceRange", json!({ "startTime": 10, "endTime": 10 })),
            "violationEventOccurrenceRange.startTime must be before violationEventOccurrenceRange.endTime",
        ),
        ("t", with("violationEventOccurrenceRange", json!({ "startTime": 10 })), "missing field `endTime`"),
        (
            "t",
            with("violationEventOccurrenceRange", json!({ "startTime": -5, "endTime": 10 })),
            "startTime must be a time between 1970 and 9999",
        ),
        ("t", with("includeOnlyActiveViolations", json!("yes")), "invalid type"),
    ] {
        let got = server
            .call("PUT", &format!("/detect/mitigationactions/tasks/{task_id}"), Some(body.clone()))
            .await
            .error(400, "InvalidRequestException");
        assert!(got.contains(message), "{body}: {got}");
    }
    for (target, message) in [
        ("/detect/mitigationactions/tasks", "startTime is required"),
        ("/detect/mitigationactions/tasks?startTime=2026-11-27T10:00:00Z", "endTime is required"),
        (
            "/detect/mitigationactions/tasks?startTime=yesterday&endTime=1",
            "startTime must be an ISO 8601 time",
        ),
        ("/detect/mitigationactions/tasks?startTime=20&endTime=10", "startTime must not be after endTime"),
        ("/detect/mitigationactions/executions?taskId=a.b", "taskId \"a.b\" must be"),
        ("/detect/mitigationactions/executions?violationId=a_b", "violationId \"a_b\" must be"),
        ("/detect/mitigationactions/executions?thingName=a%20b", "thingName \"a b\" must be"),
        ("/detect/mitigationactions/executions?startTime=x", "startTime must be an ISO 8601 time"),
        (
            "/detect/mitigationactions/executions?startTime=20&endTime=10",
            "startTime must not be after endTime",
        ),
        ("/detect/mitigationactions/executions?status=FAILED", "query parameter status is not supported"),
    ] {
        let got = server.call("GET", target, None).await.error(400, "InvalidRequestException");
        assert!(got.contains(message), "{target}: {got}");
    }
    server
        .call("GET", "/detect/mitigationactions/tasks/nope", None)
        .await
        .error(404, "ResourceNotFoundException");
    server
        .call("PUT", "/detect/mitigationactions/tasks/nope/cancel", None)
        .await
        .error(404, "ResourceNotFoundException");
    // Nothing was started by the refused requests.
    let range = format!("startTime=0&endTime={}", NOW_MS / 1000 + 10);
    assert_eq!(
        server.ok("GET", &format!("/detect/mitigationactions/tasks?{range}"), None).await,
        json!({ "tasks": [] })
    );
}

/// Holds the first membership change announced after it is armed until released, so that a
/// test can act while a task is in the middle of an action.
struct Gate {
    armed: AtomicBool,
    entered: tokio::sync::Notify,
    release: tokio::sync::Semaphore,
}

#[async_trait::async_trait]
impl RegistryListener for Gate {
    async fn registry_changed(&self, change: &RegistryChange) {
        if matches!(change, RegistryChange::ThingGroups { .. }) && self.armed.swap(false, Ordering::SeqCst) {
            self.entered.notify_one();
            self.release.acquire().await.unwrap().forget();
        }
    }
}

#[tokio::test]
async fn a_canceled_task_runs_no_further_action() {
    let server = seeded().await;
    let gate = Arc::new(Gate {
        armed: AtomicBool::new(false),
        entered: tokio::sync::Notify::new(),
        release: tokio::sync::Semaphore::new(0),
    });
    server.state.subscribe_registry(gate.clone());
    gate.armed.store(true, Ordering::SeqCst);
    let body = json!({ "target": { "violationIds": [V1, V2] }, "actions": ["quarantine"], "clientRequestToken": "t" });
    start(&server, "slow", body).await;
    tokio::time::timeout(WAIT, gate.entered.notified()).await.expect("the first action runs");
    // The task is in the middle of its first action.
    server.advance_ms(1000);
    server.ok("PUT", "/detect/mitigationactions/tasks/slow/cancel", None).await;
    gate.release.add_permits(1);
    let deadline = tokio::time::Instant::now() + WAIT;
    let summary = loop {
        let summary =
            server.ok("GET", "/detect/mitigationactions/tasks/slow", None).await["taskSummary"].clone();
        if summary["taskStatistics"]["actionsExecuted"] == 1 {
            break summary;
        }
        assert!(tokio::time::Instant::now() < deadline, "{summary}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(summary["taskStatus"], "CANCELED");
    assert_eq!(summary["taskEndTime"], json!(NOW_MS as f64 / 1000.0 + 1.0));
    // The action under way finished; the second violation was not touched.
    assert_eq!(executions(&server, "slow").await, [json!([V1, "quarantine", "SUCCESSFUL", null])]);
    assert_eq!(server.ok("GET", "/thing-groups/Quarantine/things", None).await["things"], json!(["dev-1"]));
    let message = server
        .call("PUT", "/detect/mitigationactions/tasks/slow/cancel", None)
        .await
        .error(400, "InvalidRequestException");
    assert_eq!(message, "detect mitigation task slow has already ended (CANCELED)");

    start(
        &server,
        "fast",
        json!({ "target": { "violationIds": [V2] }, "actions": ["quarantine"], "clientRequestToken": "t2" }),
    )
    .await;
    ended(&server, "fast").await;
    let message = server
        .call("PUT", "/detect/mitigationactions/tasks/fast/cancel", None)
        .await
        .error(400, "InvalidRequestException");
    assert_eq!(message, "detect mitigation task fast has already ended (SUCCESSFUL)");
}

#[tokio::test]
async fn profiles_run_their_automatic_mitigation_actions() {
    let server = seeded().await;
    let behaviors = json!([{
        "name": "OutboundBytesBehavior",
        "metric": "aws:all-bytes-out",
        "criteria": { "comparisonOperator": "less-than-equals", "value": { "count": 35000 }, "durationSeconds": 300 },
    }]);
    let profile = |actions: Value| json!({ "behaviors": behaviors, "automaticMitigationActions": actions });
    for (actions, message) in [
        (json!(["nope"]), "automaticMitigationActions[0]: mitigation action nope does not exist"),
        (
            json!(["quarantine", "audit-sns"]),
            "automaticMitigationActions[1]: mitigation action audit-sns is of type PUBLISH_FINDING_TO_SNS; automatic mitigation runs only ADD_THINGS_TO_THING_GROUP and UPDATE_DEVICE_CERTIFICATE actions",
        ),
        (json!(["quarantine", "quarantine"]), "automaticMitigationActions[1]: quarantine is named twice"),
        (
            json!(["a", "b", "c", "d", "e", "f"]),
            "automaticMitigationActions must name at most 5 mitigation actions",
        ),
        (json!("quarantine"), "invalid type"),
    ] {
        let got = server
            .call("POST", "/security-profiles/OutboundBytesSecProfile", Some(profile(actions.clone())))
            .await
            .error(400, "InvalidRequestException");
        assert!(got.contains(message), "{actions}: {got}");
    }
    server
        .ok("POST", "/security-profiles/OutboundBytesSecProfile", Some(profile(json!(["quarantine"]))))
        .await;
    let described = server.ok("GET", "/security-profiles/OutboundBytesSecProfile", None).await;
    assert_eq!(described["automaticMitigationActions"], json!(["quarantine"]));

    // What the detection loop does on an in-alarm event of the profile.
    let actions = vec!["quarantine".to_owned()];
    warden_server::mitigation::run_automatic(
        &server.state,
        V1,
        "dev-1",
        "OutboundBytesSecProfile",
        "OutboundBytesBehavior",
        &actions,
    )
    .await;
    let task_id = format!("auto-{V1}");
    let summary = ended(&server, &task_id).await;
    assert_eq!(summary["taskStatus"], "SUCCESSFUL");
    assert_eq!(summary["target"], json!({ "violationIds": [V1] }));
    assert_eq!(summary["suppressedAlertsIncluded"], json!(true));
    assert_eq!(executions(&server, &task_id).await, [json!([V1, "quarantine", "SUCCESSFUL", null])]);
    assert_eq!(server.ok("GET", "/thing-groups/Quarantine/things", None).await["things"], json!(["dev-1"]));
    assert_eq!(
        server.state.store.describe_detect_mitigation_task(&task_id).await.unwrap().client_request_token,
        V1
    );
    // Once per violation.
    warden_server::mitigation::run_automatic(
        &server.state,
        V1,
        "dev-1",
        "OutboundBytesSecProfile",
        "OutboundBytesBehavior",
        &actions,
    )
    .await;
    assert_eq!(executions(&server, &task_id).await.len(), 1);

    // An action a profile runs cannot be deleted, nor become an Audit action.
    let message = server
        .call("DELETE", "/mitigationactions/actions/quarantine", None)
        .await
        .error(400, "InvalidRequestException");
    assert_eq!(
        message,
        "mitigation action quarantine is in the automaticMitigationActions of security profile OutboundBytesSecProfile; remove it from the profile first"
    );
    let message = server
        .call(
            "PATCH",
            "/mitigationactions/actions/quarantine",
            Some(json!({ "actionParams": publish_finding()["actionParams"] })),
        )
        .await
        .error(400, "InvalidRequestException");
    assert!(message.contains("security profile OutboundBytesSecProfile"), "{message}");
    server
        .ok(
            "PATCH",
            "/mitigationactions/actions/quarantine",
            Some(json!({ "actionParams": deactivate()["actionParams"] })),
        )
        .await;

    // Updates replace the list; [] removes it, and other updates keep it.
    let updated = server
        .ok(
            "PATCH",
            "/security-profiles/OutboundBytesSecProfile",
            Some(json!({ "automaticMitigationActions": ["deactivate", "quarantine"] })),
        )
        .await;
    assert_eq!(updated["automaticMitigationActions"], json!(["deactivate", "quarantine"]));
    let updated = server
        .ok(
            "PATCH",
            "/security-profiles/OutboundBytesSecProfile",
            Some(json!({ "deleteAlertTargets": true })),
        )
        .await;
    assert_eq!(updated["automaticMitigationActions"], json!(["deactivate", "quarantine"]));
    server
        .call(
            "PATCH",
            "/security-profiles/OutboundBytesSecProfile",
            Some(json!({ "automaticMitigationActions": ["audit-sns"] })),
        )
        .await
        .error(400, "InvalidRequestException");
    let updated = server
        .ok(
            "PATCH",
            "/security-profiles/OutboundBytesSecProfile",
            Some(json!({ "automaticMitigationActions": [] })),
        )
        .await;
    assert_eq!(updated.get("automaticMitigationActions"), None);
    server.ok("DELETE", "/mitigationactions/actions/quarantine", None).await;
}

#[tokio::test]
async fn tasks_a_stopped_server_left_unfinished_are_resumed() {
    let server = seeded().await;
    let store = &server.state.store;
    let started = store
        .start_detect_mitigation_task(
            warden_store::NewDetectMitigationTask {
                task_id: "interrupted".into(),
                target: json!({ "violationIds": [V1, V2] }).to_string(),
                actions: vec!["quarantine".into()],
                client_request_token: "t".into(),
                ..Default::default()
            },
            NOW_MS,
        )
        .await
        .unwrap();
    assert!(started.created);
    // The first violation was done before the stop.
    store
        .append_mitigation_execution(warden_store::MitigationExecution {
            task_id: "interrupted".into(),
            violation_id: V1.into(),
            action_name: "quarantine".into(),
            thing: "dev-1".into(),
            status: warden_store::MitigationExecutionStatus::Successful,
            error_code: None,
            message: None,
            started_at_ms: NOW_MS,
            ended_at_ms: Some(NOW_MS),
        })
        .await
        .unwrap();
    warden_server::mitigation::resume_unfinished(&server.state).await;
    let summary = ended(&server, "interrupted").await;
    assert_eq!(summary["taskStatus"], "SUCCESSFUL");
    assert_eq!(
        summary["taskStatistics"],
        json!({ "actionsExecuted": 2, "actionsSkipped": 0, "actionsFailed": 0 })
    );
    assert_eq!(
        executions(&server, "interrupted").await,
        [json!([V1, "quarantine", "SUCCESSFUL", null]), json!([V2, "quarantine", "SUCCESSFUL", null])]
    );
    // Only dev-2 was added now: dev-1's execution was not repeated.
    assert_eq!(server.ok("GET", "/thing-groups/Quarantine/things", None).await["things"], json!(["dev-2"]));
}

// ---------------------------------------------------------------------------------------------
// Against live MQTT sessions of the real server

/// The API of a running server, with its token.
struct Api {
    addr: std::net::SocketAddr,
    token: String,
}

impl Api {
    async fn call(&self, method: &str, target: &str, body: Option<Value>) -> (u16, Value) {
        let stream = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(connection);
        let request = hyper::Request::builder()
            .method(method)
            .uri(target)
            .header("host", self.addr.to_string())
            .header("authorization", format!("Bearer {}", self.token))
            .body(Full::new(Bytes::from(body.map(|b| b.to_string()).unwrap_or_default())))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    async fn ok(&self, method: &str, target: &str, body: Option<Value>) -> Value {
        let (status, body) = self.call(method, target, body).await;
        assert_eq!(status, 200, "{method} {target}: {body}");
        body
    }

    async fn ended(&self, task_id: &str) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let summary = self.ok("GET", &format!("/detect/mitigationactions/tasks/{task_id}"), None).await;
            if summary["taskSummary"]["taskStatus"] != "IN_PROGRESS" {
                return summary["taskSummary"].clone();
            }
            assert!(tokio::time::Instant::now() < deadline, "task {task_id} is still running");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The whole quarantine pattern of the AWS lab, without the Lambda: a group whose policy denies
/// application traffic, an action that moves a thing there, a task on its violation. The live
/// session is judged by the group's policy at its very next PUBLISH, while the device's Defender
/// reports keep flowing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quarantined_thing_is_denied_its_next_publish_but_still_reports() {
    let lab = lab(Duration::ZERO).await;
    let device = lab.device("dev-1").await;
    let api = Api { addr: lab.server.http_addr, token: lab.server.api_token.clone() };
    api.ok("POST", "/thing-groups/Quarantine", None).await;
    let deny = json!({ "Version": "2012-10-17", "Statement": [
        { "Effect": "Deny", "Action": "iot:Publish", "Resource": "arn:aws:iot:*:*:topic/things/*" },
    ]});
    api.ok("POST", "/policies/QuarantinePolicy", Some(json!({ "policyDocument": deny.to_string() }))).await;
    api.ok(
        "PUT",
        "/target-policies/QuarantinePolicy",
        Some(json!({ "target": format!("{ARN}thinggroup/Quarantine") })),
    )
    .await;
    api.ok("POST", "/mitigationactions/actions/quarantine", Some(quarantine(&["Quarantine"]))).await;

    let mut app = lab.client(&device, "dev-1/app");
    app.connect().await.unwrap();
    app.subscribe("things/dev-1/telemetry").await;
    app.client.publish("things/dev-1/telemetry", QoS::AtLeastOnce, false, b"21.5".to_vec()).await.unwrap();
    app.until(|p| matches!(p, Packet::Publish(p) if p.topic == "things/dev-1/telemetry").then_some(()))
        .await
        .unwrap();

    lab.server.state.store.record_violation_events(vec![in_alarm(V1, "dev-1")]).await.unwrap();
    let body =
        json!({ "target": { "violationIds": [V1] }, "actions": ["quarantine"], "clientRequestToken": "q" });
    api.ok("PUT", "/detect/mitigationactions/tasks/quarantine-dev-1", Some(body)).await;
    assert_eq!(api.ended("quarantine-dev-1").await["taskStatus"], "SUCCESSFUL");

    app.client.publish("things/dev-1/telemetry", QoS::AtLeastOnce, false, b"21.6".to_vec()).await.unwrap();
    assert!(app.until(|_| None::<()>).await.is_err(), "telemetry denied: the 3.1.1 session is closed");
    let mut agent = lab.client(&device, "dev-1/agent");
    agent.connect().await.unwrap();
    agent.subscribe("$aws/things/dev-1/defender/metrics/+/+").await;
    let reply =
        agent.report("dev-1", Format::Json, br#"{"hed":{"rid":1,"v":"1.0"},"met":{"ns":{"bo":1}}}"#).await;
    assert_eq!(reply.status, ReplyStatus::Accepted);
    let listed = api.ok("GET", "/detect/mitigationactions/executions?thingName=dev-1", None).await;
    assert_eq!(listed["actionsExecutions"][0]["status"], "SUCCESSFUL");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deactivating_the_certificates_of_a_thing_drops_its_live_session() {
    let lab = lab(Duration::ZERO).await;
    let device = lab.device("dev-1").await;
    let api = Api { addr: lab.server.http_addr, token: lab.server.api_token.clone() };
    api.ok("POST", "/mitigationactions/actions/deactivate", Some(deactivate())).await;
    let mut c = lab.client(&device, "dev-1");
    c.connect().await.unwrap();
    c.subscribe("$aws/things/dev-1/defender/metrics/+/+").await;

    lab.server.state.store.record_violation_events(vec![in_alarm(V1, "dev-1")]).await.unwrap();
    let body =
        json!({ "target": { "violationIds": [V1] }, "actions": ["deactivate"], "clientRequestToken": "d" });
    api.ok("PUT", "/detect/mitigationactions/tasks/deactivate-dev-1", Some(body)).await;
    assert!(c.until(|_| None::<()>).await.is_err(), "the live session is dropped");
    assert_eq!(api.ended("deactivate-dev-1").await["taskStatus"], "SUCCESSFUL");
    let described = api.ok("GET", &format!("/certificates/{}", device.certificate_id), None).await;
    assert_eq!(described["certificateDescription"]["status"], "INACTIVE");
    let listed = api.ok("GET", "/detect/mitigationactions/executions?taskId=deactivate-dev-1", None).await;
    assert_eq!(
        listed["actionsExecutions"][0]["message"],
        json!(format!("deactivated certificate(s) {} of dev-1", device.certificate_id))
    );
    assert!(lab.client(&device, "dev-1").connect().await.is_err(), "an INACTIVE certificate cannot connect");
}
