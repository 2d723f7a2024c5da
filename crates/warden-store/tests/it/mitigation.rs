//! Mitigation actions, detect mitigation tasks (with their idempotent start) and executions.

use warden_store::{
    MitigationActionUpdate, MitigationExecution, MitigationExecutionFilter, MitigationExecutionStatus,
    MitigationExecutionUpdate, MitigationTaskStatistics, MitigationTaskStatus, MitigationTaskUpdate,
    NewDetectMitigationTask, NewMitigationAction, PageRequest, ResourceKind, SqliteStore, Store, StoreError,
};

use crate::{T0, all_pages, assert_matches, bad_page, open, strings};

const QUARANTINE: &str =
    r#"{"addThingsToThingGroupParams":{"thingGroupNames":["Quarantine"],"overrideDynamicGroups":false}}"#;
const DEACTIVATE: &str = r#"{"updateDeviceCertificateParams":{"action":"DEACTIVATE"}}"#;
const ROLE: &str = "arn:aws:iam::000000000000:role/mitigation";

fn action(name: &str, action_type: &str, params: &str) -> NewMitigationAction {
    NewMitigationAction {
        name: name.to_owned(),
        action_type: action_type.to_owned(),
        params: params.to_owned(),
        role_arn: ROLE.to_owned(),
    }
}

fn task(task_id: &str, token: &str) -> NewDetectMitigationTask {
    NewDetectMitigationTask {
        task_id: task_id.to_owned(),
        target: r#"{"violationIds":["0000000000000000000000000000000a"]}"#.to_owned(),
        actions: strings(&["quarantine"]),
        violation_start_ms: Some(T0 - 1000),
        violation_end_ms: Some(T0),
        include_only_active_violations: true,
        include_suppressed_alerts: false,
        client_request_token: token.to_owned(),
    }
}

fn execution(
    task_id: &str,
    violation: u128,
    action_name: &str,
    thing: &str,
    at_ms: i64,
) -> MitigationExecution {
    MitigationExecution {
        task_id: task_id.to_owned(),
        violation_id: format!("{violation:032x}"),
        action_name: action_name.to_owned(),
        thing: thing.to_owned(),
        status: MitigationExecutionStatus::InProgress,
        error_code: None,
        message: None,
        started_at_ms: at_ms,
        ended_at_ms: None,
    }
}

#[tokio::test]
async fn mitigation_action_lifecycle() {
    let (_dir, store) = open();
    let created = store
        .create_mitigation_action(action("quarantine", "ADD_THINGS_TO_THING_GROUP", QUARANTINE), T0)
        .await
        .unwrap();
    assert_eq!(created.name, "quarantine");
    assert_eq!(created.action_type, "ADD_THINGS_TO_THING_GROUP");
    assert_eq!(created.params, QUARANTINE);
    assert_eq!(created.role_arn, ROLE);
    assert_eq!((created.created_at_ms, created.last_modified_ms), (T0, T0));
    assert_eq!(created.id.len(), 36, "a UUID: {}", created.id);
    assert_eq!(store.describe_mitigation_action("quarantine").await.unwrap(), created);

    // `None` keeps a field.
    let update = MitigationActionUpdate { role_arn: Some("arn:other".into()), ..Default::default() };
    let updated = store.update_mitigation_action("quarantine", update, T0 + 1).await.unwrap();
    assert_eq!((updated.role_arn.as_str(), updated.params.as_str()), ("arn:other", QUARANTINE));
    assert_eq!(
        (updated.id, updated.created_at_ms, updated.last_modified_ms),
        (created.id.clone(), T0, T0 + 1)
    );
    let update = MitigationActionUpdate {
        action_type: Some("UPDATE_DEVICE_CERTIFICATE".into()),
        params: Some(DEACTIVATE.into()),
        role_arn: None,
    };
    let updated = store.update_mitigation_action("quarantine", update, T0 + 2).await.unwrap();
    assert_eq!(
        (updated.action_type.as_str(), updated.params.as_str(), updated.role_arn.as_str()),
        ("UPDATE_DEVICE_CERTIFICATE", DEACTIVATE, "arn:other")
    );

    store.delete_mitigation_action("quarantine").await.unwrap();
    assert_matches!(
        store.describe_mitigation_action("quarantine").await,
        Err(StoreError::NotFound { kind: ResourceKind::MitigationAction, .. })
    );
    let again = store
        .create_mitigation_action(action("quarantine", "ADD_THINGS_TO_THING_GROUP", QUARANTINE), T0)
        .await
        .unwrap();
    assert_ne!(again.id, created.id, "a new action gets a new id");
}

#[tokio::test]
async fn mitigation_action_errors_and_listing() {
    let (_dir, store) = open();
    for (name, kind, params) in [
        ("q2", "ADD_THINGS_TO_THING_GROUP", QUARANTINE),
        ("deactivate", "UPDATE_DEVICE_CERTIFICATE", DEACTIVATE),
        ("q1", "ADD_THINGS_TO_THING_GROUP", QUARANTINE),
    ] {
        store.create_mitigation_action(action(name, kind, params), T0).await.unwrap();
    }
    assert_matches!(
        store.create_mitigation_action(action("q1", "ADD_THINGS_TO_THING_GROUP", QUARANTINE), T0).await,
        Err(StoreError::AlreadyExists { kind: ResourceKind::MitigationAction, ref name }) if name == "q1"
    );
    assert_matches!(
        store.create_mitigation_action(action("q3", "ADD_THINGS_TO_THING_GROUP", "{nope"), T0).await,
        Err(StoreError::Invalid(ref m)) if m.contains("JSON")
    );
    // Colons are fine in thing names but not in action names.
    for bad in ["", "a:b", "a b"] {
        assert_matches!(
            store.create_mitigation_action(action(bad, "ADD_THINGS_TO_THING_GROUP", QUARANTINE), T0).await,
            Err(StoreError::Invalid(_))
        );
    }
    assert_matches!(
        store.create_mitigation_action(action("q3", "", QUARANTINE), T0).await,
        Err(StoreError::Invalid(_))
    );
    let bad_params = MitigationActionUpdate { params: Some("[".into()), ..Default::default() };
    assert_matches!(store.update_mitigation_action("q1", bad_params, T0).await, Err(StoreError::Invalid(_)));
    assert_matches!(
        store.update_mitigation_action("nope", MitigationActionUpdate::default(), T0).await,
        Err(StoreError::NotFound { kind: ResourceKind::MitigationAction, .. })
    );
    assert_matches!(
        store.delete_mitigation_action("nope").await,
        Err(StoreError::NotFound { kind: ResourceKind::MitigationAction, .. })
    );

    let listed = |action_type: Option<&'static str>, size: usize| {
        let store = &store;
        async move {
            let all =
                all_pages(size, |p| async move { store.list_mitigation_actions(action_type, &p).await })
                    .await;
            all.into_iter().map(|a| a.name).collect::<Vec<_>>()
        }
    };
    for size in [1, 2, 3] {
        assert_eq!(listed(None, size).await, strings(&["deactivate", "q1", "q2"]));
        assert_eq!(listed(Some("ADD_THINGS_TO_THING_GROUP"), size).await, strings(&["q1", "q2"]));
    }
    assert_eq!(listed(Some("ENABLE_IOT_LOGGING"), 1).await, Vec::<String>::new());
    assert_matches!(store.list_mitigation_actions(None, &bad_page("z")).await, Err(StoreError::Invalid(_)));
}

#[tokio::test]
async fn starting_a_task_is_idempotent_per_token() {
    let (_dir, store) = open();
    let started = store.start_detect_mitigation_task(task("task-1", "token-1"), T0).await.unwrap();
    assert!(started.created);
    let t = &started.task;
    assert_eq!(t.task_id, "task-1");
    assert_eq!(t.status, MitigationTaskStatus::InProgress);
    assert_eq!((t.started_at_ms, t.ended_at_ms), (T0, None));
    assert_eq!(t.statistics, MitigationTaskStatistics::default());
    assert_eq!(t.actions, strings(&["quarantine"]));
    assert_eq!((t.violation_start_ms, t.violation_end_ms), (Some(T0 - 1000), Some(T0)));
    assert_eq!((t.include_only_active_violations, t.include_suppressed_alerts), (true, false));
    assert_eq!(t.target, task("x", "y").target);
    assert_eq!(store.describe_detect_mitigation_task("task-1").await.unwrap(), started.task);

    // The same call again (a retry) gets the task as it is, and is told it did not create it.
    let retry = store.start_detect_mitigation_task(task("task-1", "token-1"), T0 + 5).await.unwrap();
    assert!(!retry.created);
    assert_eq!(retry.task, started.task);

    // The same id with another token, or the same token with other parameters, is a new task
    // that clashes with the existing one.
    assert_matches!(
        store.start_detect_mitigation_task(task("task-1", "token-2"), T0).await,
        Err(StoreError::AlreadyExists { kind: ResourceKind::DetectMitigationTask, ref name }) if name == "task-1"
    );
    let other_actions = NewDetectMitigationTask {
        actions: strings(&["quarantine", "deactivate"]),
        ..task("task-1", "token-1")
    };
    assert_matches!(
        store.start_detect_mitigation_task(other_actions, T0).await,
        Err(StoreError::AlreadyExists { kind: ResourceKind::DetectMitigationTask, .. })
    );
    // A token belongs to one task.
    assert_matches!(
        store.start_detect_mitigation_task(task("task-2", "token-1"), T0).await,
        Err(StoreError::Invalid(ref m)) if m.contains("task-1")
    );

    for bad in [
        task("bad id", "t"),
        task("ok", "bad token"),
        task("ok", &"t".repeat(65)),
        NewDetectMitigationTask { actions: Vec::new(), ..task("ok", "t") },
        NewDetectMitigationTask { actions: strings(&["a:b"]), ..task("ok", "t") },
        NewDetectMitigationTask { target: "{".into(), ..task("ok", "t") },
        NewDetectMitigationTask { violation_start_ms: Some(T0 + 1), ..task("ok", "t") },
    ] {
        assert_matches!(store.start_detect_mitigation_task(bad, T0).await, Err(StoreError::Invalid(_)));
    }
    assert_matches!(
        store.describe_detect_mitigation_task("nope").await,
        Err(StoreError::NotFound { kind: ResourceKind::DetectMitigationTask, .. })
    );
    // Without a range, the task keeps none.
    let open_range = NewDetectMitigationTask {
        violation_start_ms: None,
        violation_end_ms: None,
        ..task("task-3", "token-3")
    };
    let started = store.start_detect_mitigation_task(open_range, T0).await.unwrap();
    assert_eq!((started.task.violation_start_ms, started.task.violation_end_ms), (None, None));
}

#[tokio::test]
async fn a_task_ends_once() {
    let (_dir, store) = open();
    store.start_detect_mitigation_task(task("t", "k"), T0).await.unwrap();
    let stats = |executed, skipped, failed| MitigationTaskStatistics {
        actions_executed: executed,
        actions_skipped: skipped,
        actions_failed: failed,
    };
    let running = MitigationTaskUpdate {
        status: MitigationTaskStatus::InProgress,
        ended_at_ms: None,
        statistics: stats(1, 0, 0),
    };
    let updated = store.update_detect_mitigation_task("t", running).await.unwrap();
    assert_eq!(
        (updated.status, updated.statistics, updated.ended_at_ms),
        (MitigationTaskStatus::InProgress, stats(1, 0, 0), None)
    );

    let cancel = MitigationTaskUpdate {
        status: MitigationTaskStatus::Canceled,
        ended_at_ms: Some(T0 + 10),
        statistics: stats(1, 1, 0),
    };
    let canceled = store.update_detect_mitigation_task("t", cancel).await.unwrap();
    assert_eq!((canceled.status, canceled.ended_at_ms), (MitigationTaskStatus::Canceled, Some(T0 + 10)));

    // An ended task keeps its status...
    let succeed = MitigationTaskUpdate {
        status: MitigationTaskStatus::Successful,
        ended_at_ms: Some(T0 + 20),
        statistics: stats(2, 1, 0),
    };
    assert_matches!(
        store.update_detect_mitigation_task("t", succeed).await,
        Err(StoreError::InvalidState(_))
    );
    // ...but its statistics can catch up with actions that were under way; no end time keeps it.
    let catch_up = MitigationTaskUpdate {
        status: MitigationTaskStatus::Canceled,
        ended_at_ms: None,
        statistics: stats(2, 1, 1),
    };
    let caught_up = store.update_detect_mitigation_task("t", catch_up).await.unwrap();
    assert_eq!((caught_up.statistics, caught_up.ended_at_ms), (stats(2, 1, 1), Some(T0 + 10)));

    assert_matches!(
        store.update_detect_mitigation_task("nope", running).await,
        Err(StoreError::NotFound { kind: ResourceKind::DetectMitigationTask, .. })
    );
}

#[tokio::test]
async fn tasks_listed_by_start_time() {
    let (_dir, store) = open();
    for (id, at) in [("c", T0 + 2), ("a", T0), ("b", T0 + 2), ("d", T0 + 3), ("early", T0 - 1)] {
        store.start_detect_mitigation_task(task(id, &format!("token-{id}")), at).await.unwrap();
    }
    for size in [1, 2, 10] {
        let listed = all_pages(size, |p| {
            let store = &store;
            async move { store.list_detect_mitigation_tasks(T0, T0 + 3, &p).await }
        })
        .await;
        let ids: Vec<String> = listed.into_iter().map(|t| t.task_id).collect();
        assert_eq!(ids, strings(&["a", "b", "c"]), "page size {size}");
    }
    assert_matches!(
        store.list_detect_mitigation_tasks(T0 + 1, T0, &PageRequest::default()).await,
        Err(StoreError::Invalid(_))
    );
    assert_matches!(
        store.list_detect_mitigation_tasks(T0, T0 + 1, &bad_page("6162")).await,
        Err(StoreError::Invalid(_))
    );
}

async fn executions(
    store: &SqliteStore,
    filter: MitigationExecutionFilter,
    size: usize,
) -> Vec<(String, String, String)> {
    let filter = &filter;
    all_pages(size, |p| async move { store.list_mitigation_executions(filter, &p).await })
        .await
        .into_iter()
        .map(|e| (e.task_id, e.violation_id[30..].to_owned(), e.action_name))
        .collect()
}

fn triple(task: &str, violation: &str, action: &str) -> (String, String, String) {
    (task.to_owned(), violation.to_owned(), action.to_owned())
}

#[tokio::test]
async fn executions_are_recorded_updated_and_listed() {
    let (_dir, store) = open();
    store.start_detect_mitigation_task(task("t1", "k1"), T0).await.unwrap();
    store.start_detect_mitigation_task(task("t2", "k2"), T0).await.unwrap();
    store.append_mitigation_execution(execution("t1", 0xa, "quarantine", "dev-1", T0 + 1)).await.unwrap();
    store.append_mitigation_execution(execution("t1", 0xa, "deactivate", "dev-1", T0 + 1)).await.unwrap();
    store.append_mitigation_execution(execution("t1", 0xb, "quarantine", "dev-2", T0 + 3)).await.unwrap();
    store.append_mitigation_execution(execution("t2", 0xa, "quarantine", "dev-1", T0 + 2)).await.unwrap();

    assert_matches!(
        store.append_mitigation_execution(execution("t1", 0xa, "quarantine", "dev-1", T0 + 9)).await,
        Err(StoreError::AlreadyExists { kind: ResourceKind::MitigationExecution, ref name })
            if name.starts_with("t1/") && name.ends_with("/quarantine")
    );
    assert_matches!(
        store.append_mitigation_execution(execution("nope", 0xa, "quarantine", "dev-1", T0)).await,
        Err(StoreError::NotFound { kind: ResourceKind::DetectMitigationTask, .. })
    );
    assert_matches!(
        store.append_mitigation_execution(execution("t1", 0xc, "quarantine", "a b", T0)).await,
        Err(StoreError::Invalid(_))
    );

    let done = MitigationExecutionUpdate {
        status: MitigationExecutionStatus::Failed,
        error_code: Some("ResourceNotFoundException".into()),
        message: Some("no group Quarantine".into()),
        ended_at_ms: Some(T0 + 5),
    };
    let updated = store
        .update_mitigation_execution("t1", &format!("{:032x}", 0xa), "quarantine", done.clone())
        .await
        .unwrap();
    assert_eq!(
        updated,
        MitigationExecution {
            status: MitigationExecutionStatus::Failed,
            error_code: Some("ResourceNotFoundException".into()),
            message: Some("no group Quarantine".into()),
            ended_at_ms: Some(T0 + 5),
            ..execution("t1", 0xa, "quarantine", "dev-1", T0 + 1)
        }
    );
    let skipped = MitigationExecutionUpdate {
        status: MitigationExecutionStatus::Skipped,
        error_code: None,
        message: None,
        ended_at_ms: None,
    };
    let updated = store
        .update_mitigation_execution("t1", &format!("{:032x}", 0xa), "quarantine", skipped)
        .await
        .unwrap();
    assert_eq!(
        (updated.status, updated.error_code, updated.ended_at_ms),
        (MitigationExecutionStatus::Skipped, None, Some(T0 + 5))
    );
    assert_matches!(
        store.update_mitigation_execution("t1", &format!("{:032x}", 0xf), "quarantine", done.clone()).await,
        Err(StoreError::NotFound { kind: ResourceKind::MitigationExecution, .. })
    );
    assert_matches!(
        store.update_mitigation_execution("t9", &format!("{:032x}", 0xa), "quarantine", done).await,
        Err(StoreError::NotFound { kind: ResourceKind::DetectMitigationTask, .. })
    );

    let check = |filter: MitigationExecutionFilter, expect: Vec<(String, String, String)>| {
        let store = &store;
        async move {
            for size in [1, 2, 10] {
                assert_eq!(
                    executions(store, filter.clone(), size).await,
                    expect,
                    "{filter:?}, page size {size}"
                );
            }
        }
    };
    // By start time, ties in recording order.
    check(
        MitigationExecutionFilter::default(),
        vec![
            triple("t1", "0a", "quarantine"),
            triple("t1", "0a", "deactivate"),
            triple("t2", "0a", "quarantine"),
            triple("t1", "0b", "quarantine"),
        ],
    )
    .await;
    check(
        MitigationExecutionFilter { task_id: Some("t1".into()), ..Default::default() },
        vec![
            triple("t1", "0a", "quarantine"),
            triple("t1", "0a", "deactivate"),
            triple("t1", "0b", "quarantine"),
        ],
    )
    .await;
    check(
        MitigationExecutionFilter {
            violation_id: Some(format!("{:032x}", 0xa)),
            task_id: Some("t2".into()),
            ..Default::default()
        },
        vec![triple("t2", "0a", "quarantine")],
    )
    .await;
    check(
        MitigationExecutionFilter { thing: Some("dev-2".into()), ..Default::default() },
        vec![triple("t1", "0b", "quarantine")],
    )
    .await;
    check(
        MitigationExecutionFilter { start_ms: Some(T0 + 2), end_ms: Some(T0 + 3), ..Default::default() },
        vec![triple("t2", "0a", "quarantine")],
    )
    .await;
    check(
        MitigationExecutionFilter { start_ms: Some(T0 + 2), ..Default::default() },
        vec![triple("t2", "0a", "quarantine"), triple("t1", "0b", "quarantine")],
    )
    .await;
    check(MitigationExecutionFilter { task_id: Some("none".into()), ..Default::default() }, Vec::new()).await;
    assert_matches!(
        store
            .list_mitigation_executions(
                &MitigationExecutionFilter { start_ms: Some(T0 + 1), end_ms: Some(T0), ..Default::default() },
                &PageRequest::default()
            )
            .await,
        Err(StoreError::Invalid(_))
    );
}

#[test]
fn statuses_use_the_aws_spellings() {
    for (status, text) in [
        (MitigationTaskStatus::InProgress, "IN_PROGRESS"),
        (MitigationTaskStatus::Successful, "SUCCESSFUL"),
        (MitigationTaskStatus::Failed, "FAILED"),
        (MitigationTaskStatus::Canceled, "CANCELED"),
    ] {
        assert_eq!(status.as_str(), text);
        assert_eq!(text.parse::<MitigationTaskStatus>().unwrap(), status);
    }
    for (status, text) in [
        (MitigationExecutionStatus::InProgress, "IN_PROGRESS"),
        (MitigationExecutionStatus::Successful, "SUCCESSFUL"),
        (MitigationExecutionStatus::Failed, "FAILED"),
        (MitigationExecutionStatus::Skipped, "SKIPPED"),
    ] {
        assert_eq!(status.as_str(), text);
        assert_eq!(text.parse::<MitigationExecutionStatus>().unwrap(), status);
    }
    assert_matches!("CANCELLED".parse::<MitigationTaskStatus>(), Err(StoreError::Invalid(_)));
}
