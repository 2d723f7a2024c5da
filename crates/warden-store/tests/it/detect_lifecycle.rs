//! Detect's tables over time: everything survives a reopen, and migration 3 upgrades a
//! database that an older build (schema version 2) left behind, once.

use std::path::Path;

use warden_store::sqlite::MIGRATIONS;
use warden_store::{
    ActiveViolationFilter, MitigationExecution, MitigationExecutionFilter, MitigationExecutionStatus,
    NewDetectMitigationTask, NewMitigationAction, NewSecurityProfile, NewViolationEvent, PageRequest,
    SqliteStore, Store, SubscriptionProtocol, VerificationState, ViolationChange, ViolationEventFilter,
    ViolationEventType,
};

use crate::{T0, strings};

const VIOLATION: &str = "37e18651d207bbc74236c13faf146127";

fn raised(violation_id: &str, behavior: &str) -> ViolationChange {
    ViolationChange::Event(NewViolationEvent {
        violation_id: violation_id.to_owned(),
        event_type: ViolationEventType::InAlarm,
        thing: "dev-IZWB".into(),
        security_profile: "MySecProfile".into(),
        behavior: behavior.to_owned(),
        behavior_json: format!(r#"{{"name":"{behavior}","metric":"aws:num-messages-sent"}}"#),
        metric_value: r#"{"count":54}"#.into(),
        event_time_ms: T0,
        suppress_alerts: false,
    })
}

fn task() -> NewDetectMitigationTask {
    NewDetectMitigationTask {
        task_id: "task-1".into(),
        target: format!(r#"{{"violationIds":["{VIOLATION}"]}}"#),
        actions: strings(&["quarantine"]),
        violation_start_ms: None,
        violation_end_ms: None,
        include_only_active_violations: true,
        include_suppressed_alerts: false,
        client_request_token: "token-1".into(),
    }
}

/// Writes one of everything Detect stores.
async fn populate(store: &SqliteStore) {
    let profile = NewSecurityProfile {
        name: "MySecProfile".into(),
        description: Some("lab".into()),
        document: r#"{"behaviors":[]}"#.into(),
    };
    store.create_security_profile(profile, T0).await.unwrap();
    store.attach_security_profile("MySecProfile", "arn:aws:iot:local:000000000000:all/things").await.unwrap();
    store.create_custom_metric("batteryPercentage", "number", None, T0).await.unwrap();
    store.create_dimension("Topics", "TOPIC_FILTER", strings(&["a/#"]), T0).await.unwrap();
    store.record_violation_events(vec![raised(VIOLATION, "MessagesPub")]).await.unwrap();
    store.put_verification_state(VIOLATION, VerificationState::TruePositive, Some("seen")).await.unwrap();
    let action = NewMitigationAction {
        name: "quarantine".into(),
        action_type: "ADD_THINGS_TO_THING_GROUP".into(),
        params: r#"{"addThingsToThingGroupParams":{"thingGroupNames":["Quarantine"]}}"#.into(),
        role_arn: "arn:aws:iam::000000000000:role/m".into(),
    };
    store.create_mitigation_action(action, T0).await.unwrap();
    store.start_detect_mitigation_task(task(), T0).await.unwrap();
    store
        .append_mitigation_execution(MitigationExecution {
            task_id: "task-1".into(),
            violation_id: VIOLATION.into(),
            action_name: "quarantine".into(),
            thing: "dev-IZWB".into(),
            status: MitigationExecutionStatus::Successful,
            error_code: None,
            message: None,
            started_at_ms: T0,
            ended_at_ms: Some(T0 + 1),
        })
        .await
        .unwrap();
    store.create_alert_topic("DDD_Alerts", T0).await.unwrap();
    let sub = store.subscribe("DDD_Alerts", SubscriptionProtocol::Mqtt, "ops/alerts", T0).await.unwrap();
    store.record_delivery(&sub.subscription_id, true, None, T0 + 2).await.unwrap();
}

/// Reads back what `populate` wrote.
async fn check_populated(store: &SqliteStore) {
    let profile = store.describe_security_profile("MySecProfile").await.unwrap();
    assert_eq!((profile.version, profile.description.as_deref()), (1, Some("lab")));
    assert_eq!(
        store
            .security_profiles_for_targets(&strings(&["arn:aws:iot:local:000000000000:all/things"]))
            .await
            .unwrap(),
        strings(&["MySecProfile"])
    );
    assert_eq!(store.describe_custom_metric("batteryPercentage").await.unwrap().metric_type, "number");
    assert_eq!(store.describe_dimension("Topics").await.unwrap().string_values, strings(&["a/#"]));
    let active = store.describe_active_violation(VIOLATION).await.unwrap();
    assert_eq!(active.verification_state, VerificationState::TruePositive);
    let events = store
        .list_violation_events(&ViolationEventFilter::between(T0, T0 + 1), &PageRequest::default())
        .await
        .unwrap();
    assert_eq!(events.items.len(), 1);
    assert_eq!(events.items[0].verification_description.as_deref(), Some("seen"));
    assert_eq!(
        store.describe_mitigation_action("quarantine").await.unwrap().action_type,
        "ADD_THINGS_TO_THING_GROUP"
    );
    assert_eq!(
        store.describe_detect_mitigation_task("task-1").await.unwrap().client_request_token,
        "token-1"
    );
    let executions = store
        .list_mitigation_executions(&MitigationExecutionFilter::default(), &PageRequest::default())
        .await
        .unwrap();
    assert_eq!(executions.items.len(), 1);
    let subs = store.list_subscriptions("DDD_Alerts", &PageRequest::default()).await.unwrap();
    assert_eq!((subs.items[0].delivered, subs.items[0].last_attempt_ms), (1, Some(T0 + 2)));
}

#[tokio::test]
async fn reopen_keeps_detect_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warden.db");
    let store = SqliteStore::open(&path).unwrap();
    populate(&store).await;
    store.close().await.unwrap();

    let store = SqliteStore::open(&path).unwrap();
    check_populated(&store).await;
    // The reopened store keeps enforcing what it enforced before.
    assert!(store.record_violation_events(vec![raised(VIOLATION, "MessagesPub")]).await.is_err());
    let retry = store.start_detect_mitigation_task(task(), T0 + 9).await.unwrap();
    assert!(!retry.created, "the task's token is remembered");
    store.close().await.unwrap();
}

/// Creates a database as the build before Detect left it: the first two migrations only, with a
/// thing and a datapoint series in it.
fn version_2_database(path: &Path) {
    let mut conn = rusqlite::Connection::open(path).unwrap();
    let tx = conn.transaction().unwrap();
    for migration in &MIGRATIONS[..2] {
        tx.execute_batch(migration.sql).unwrap();
    }
    tx.pragma_update(None, "user_version", 2).unwrap();
    tx.execute(
        "INSERT INTO things (name, thing_id, version, created_at_ms) VALUES ('old', 'id-old', 4, 0)",
        [],
    )
    .unwrap();
    tx.execute("INSERT INTO ingest_state (thing, last_report_id, accepted_at_ms) VALUES ('old', 9, 0)", [])
        .unwrap();
    tx.commit().unwrap();
}

#[tokio::test]
async fn migration_3_upgrades_a_version_2_database_once() {
    assert_eq!(MIGRATIONS[2].name, "detect");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warden.db");
    version_2_database(&path);

    // Migration 3 creates tables without IF NOT EXISTS, so applying it twice would fail: each
    // successful open below shows it ran exactly once.
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.schema_version().await.unwrap(), MIGRATIONS.len());
    let old = store.describe_thing("old").await.unwrap();
    assert_eq!((old.id.as_str(), old.version), ("id-old", 4));
    assert_eq!(store.ingest_state("old").await.unwrap().map(|s| s.last_report_id), Some(9));
    populate(&store).await;
    store.close().await.unwrap();

    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.schema_version().await.unwrap(), MIGRATIONS.len());
    check_populated(&store).await;
    assert_eq!(
        store
            .list_active_violations(&ActiveViolationFilter::default(), &PageRequest::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    store.close().await.unwrap();
}
