//! Mitigation actions: `CreateMitigationAction`, `DescribeMitigationAction`,
//! `UpdateMitigationAction`, `DeleteMitigationAction`, `ListMitigationActions`; and detect
//! mitigation tasks: `StartDetectMitigationActionsTask`, `DescribeDetectMitigationActionsTask`,
//! `ListDetectMitigationActionsTasks`, `CancelDetectMitigationActionsTask`,
//! `ListDetectMitigationActionsExecutions`.
//!
//! What an action does and how a task runs is [`crate::mitigation`]'s; here are the AWS shapes
//! and checks. A task is recorded, then run in a spawned task, so the start request answers at
//! once; repeating a start with the same id, token and parameters returns the same task without
//! running it again. `roleArn` is required and kept, as AWS has it, but not used: Warden has no
//! IAM, and actions act with the server's own rights.

use std::collections::{HashMap, HashSet};

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use warden_store::{
    DetectMitigationTask, MitigationAction, MitigationActionUpdate, MitigationExecution,
    MitigationExecutionFilter, MitigationTaskStatus, MitigationTaskUpdate, NewDetectMitigationTask,
    NewMitigationAction, PageRequest, ResourceKind, StoreError, ViolationEventFilter,
};

use super::profiles::all_profiles;
use super::protocol::{
    ApiError, ApiResult, Json, Name, PageStyle, Paging, Query, check_name, empty, epoch_seconds,
    parse_timestamp_ms, reply,
};
use crate::mitigation::{self, ActionParams, ActionType, MAX_ACTIONS, TaskTarget};
use crate::state::{AppState, Arns};

/// `arn:aws:iot:{region}:{account}:mitigationaction/{name}`.
pub fn action_arn(arns: &Arns, name: &str) -> String {
    format!("{}mitigationaction/{name}", arns.prefix())
}

/// Checks a name against `[a-zA-Z0-9_-]{1,128}`, the pattern of action names and task ids.
fn check_id(field: &str, value: &str) -> Result<(), ApiError> {
    if (1..=128).contains(&value.len())
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
    {
        Ok(())
    } else {
        Err(ApiError::invalid(format!("{field} {value:?} must be 1 to 128 characters of [a-zA-Z0-9_-]")))
    }
}

fn check_role_arn(role_arn: &str) -> Result<(), ApiError> {
    if (20..=2048).contains(&role_arn.chars().count()) {
        Ok(())
    } else {
        Err(ApiError::invalid("roleArn must be 20 to 2048 characters"))
    }
}

/// A stored JSON text as the value it is; the API wrote it, so a failure is a hand-edited
/// database.
fn stored_json(what: &str, text: &str) -> Result<Value, ApiError> {
    serde_json::from_str(text).map_err(|e| {
        tracing::error!(%what, error = %e, "stored mitigation JSON is unreadable");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalFailureException",
            "internal failure; the server log has the details",
        )
    })
}

// ---------------------------------------------------------------------------------------------
// Mitigation actions

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateMitigationAction {
    role_arn: String,
    action_params: ActionParams,
}

/// As for things and profiles, creating an action again exactly as it is succeeds.
pub async fn create_action(
    State(s): State<AppState>,
    Name(name): Name,
    Json(input): Json<CreateMitigationAction>,
) -> ApiResult {
    check_id("actionName", &name)?;
    check_role_arn(&input.role_arn)?;
    let mitigation = input.action_params.check().map_err(ApiError::invalid)?;
    let action = NewMitigationAction {
        name: name.clone(),
        action_type: mitigation.action_type().as_str().to_owned(),
        params: input.action_params.to_json(),
        role_arn: input.role_arn,
    };
    let created = match s.store.create_mitigation_action(action.clone(), s.now_ms()).await {
        Ok(created) => created,
        Err(e @ StoreError::AlreadyExists { .. }) => match s.store.describe_mitigation_action(&name).await {
            Ok(existing)
                if existing.action_type == action.action_type
                    && existing.params == action.params
                    && existing.role_arn == action.role_arn =>
            {
                existing
            }
            _ => return Err(ApiError::from(e).with_arn(action_arn(&s.arns, &name))),
        },
        Err(e) => return Err(e.into()),
    };
    reply(json!({ "actionArn": action_arn(&s.arns, &name), "actionId": created.id }))
}

fn describe_body(arns: &Arns, a: &MitigationAction) -> Result<Value, ApiError> {
    Ok(json!({
        "actionName": a.name,
        "actionType": a.action_type,
        "actionArn": action_arn(arns, &a.name),
        "actionId": a.id,
        "roleArn": a.role_arn,
        "actionParams": stored_json(&a.name, &a.params)?,
        "creationDate": epoch_seconds(a.created_at_ms),
        "lastModifiedDate": epoch_seconds(a.last_modified_ms),
    }))
}

pub async fn describe_action(State(s): State<AppState>, Name(name): Name) -> ApiResult {
    check_id("actionName", &name)?;
    let action = s.store.describe_mitigation_action(&name).await?;
    reply(describe_body(&s.arns, &action)?)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpdateMitigationAction {
    role_arn: Option<String>,
    action_params: Option<ActionParams>,
}

/// New parameters may change the action's type; a profile that runs the action automatically
/// keeps it to a type that acts on violations.
pub async fn update_action(
    State(s): State<AppState>,
    Name(name): Name,
    Json(input): Json<UpdateMitigationAction>,
) -> ApiResult {
    check_id("actionName", &name)?;
    if let Some(role_arn) = &input.role_arn {
        check_role_arn(role_arn)?;
    }
    let mut update = MitigationActionUpdate { role_arn: input.role_arn, ..Default::default() };
    if let Some(params) = &input.action_params {
        let action_type = params.check().map_err(ApiError::invalid)?.action_type();
        if !action_type.runs_in_detect()
            && let Some(profile) = profile_running(&s, &name).await?
        {
            return Err(ApiError::invalid(format!(
                "mitigation action {name} is in the automaticMitigationActions of security profile \
                 {profile}, which runs only ADD_THINGS_TO_THING_GROUP and UPDATE_DEVICE_CERTIFICATE actions; \
                 remove it from the profile first"
            )));
        }
        update.action_type = Some(action_type.as_str().to_owned());
        update.params = Some(params.to_json());
    }
    let updated = s.store.update_mitigation_action(&name, update, s.now_ms()).await?;
    reply(json!({ "actionArn": action_arn(&s.arns, &name), "actionId": updated.id }))
}

/// The first security profile (by name) whose `automaticMitigationActions` names `action`.
async fn profile_running(s: &AppState, action: &str) -> Result<Option<String>, ApiError> {
    Ok(all_profiles(s)
        .await?
        .into_iter()
        .find(|(_, d)| d.automatic_mitigation_actions().iter().any(|a| a == action))
        .map(|(p, _)| p.name))
}

/// Refused while a profile runs the action automatically (as deleting a custom metric a profile
/// uses is); as in AWS, which models no `ResourceNotFoundException` here, deleting an action
/// that does not exist succeeds. Tasks that named the action keep its name.
pub async fn delete_action(State(s): State<AppState>, Name(name): Name) -> ApiResult {
    check_id("actionName", &name)?;
    if let Some(profile) = profile_running(&s, &name).await? {
        return Err(ApiError::invalid(format!(
            "mitigation action {name} is in the automaticMitigationActions of security profile {profile}; \
             remove it from the profile first"
        )));
    }
    match s.store.delete_mitigation_action(&name).await {
        Ok(()) | Err(StoreError::NotFound { .. }) => empty(),
        Err(e) => Err(e.into()),
    }
}

pub async fn list_actions(State(s): State<AppState>, mut q: Query) -> ApiResult {
    let paging = Paging::from_query(&mut q, PageStyle::Token)?;
    let action_type = q.take("actionType").map(|t| parse_action_type(&t)).transpose()?;
    q.finish()?;
    let page = s.store.list_mitigation_actions(action_type.map(ActionType::as_str), &paging.request).await?;
    paging.reply("actionIdentifiers", page, |a| {
        json!({
            "actionName": a.name,
            "actionArn": action_arn(&s.arns, &a.name),
            "creationDate": epoch_seconds(a.created_at_ms),
        })
    })
}

fn parse_action_type(value: &str) -> Result<ActionType, ApiError> {
    ActionType::parse(value).ok_or_else(|| {
        let all: Vec<&str> = ActionType::ALL.iter().map(|t| t.as_str()).collect();
        ApiError::invalid(format!("actionType must be one of {}, not {value:?}", all.join(", ")))
    })
}

/// Checks a profile's `automaticMitigationActions` (a Warden extension): at most
/// [`MAX_ACTIONS`] distinct names of existing actions of a type that acts on violations.
pub async fn check_automatic_actions(s: &AppState, names: &[String]) -> Result<(), ApiError> {
    const MEMBER: &str = "automaticMitigationActions";
    if names.len() > MAX_ACTIONS {
        return Err(ApiError::invalid(format!(
            "{MEMBER} must name at most {MAX_ACTIONS} mitigation actions"
        )));
    }
    let mut seen = HashSet::new();
    for (i, name) in names.iter().enumerate() {
        check_id(&format!("{MEMBER}[{i}]"), name)?;
        if !seen.insert(name) {
            return Err(ApiError::invalid(format!("{MEMBER}[{i}]: {name} is named twice")));
        }
        let action = match s.store.describe_mitigation_action(name).await {
            Ok(action) => action,
            Err(StoreError::NotFound { .. }) => {
                return Err(ApiError::invalid(format!(
                    "{MEMBER}[{i}]: mitigation action {name} does not exist"
                )));
            }
            Err(e) => return Err(e.into()),
        };
        if !ActionType::parse(&action.action_type).is_some_and(ActionType::runs_in_detect) {
            return Err(ApiError::invalid(format!(
                "{MEMBER}[{i}]: mitigation action {name} is of type {}; automatic mitigation runs only \
                 ADD_THINGS_TO_THING_GROUP and UPDATE_DEVICE_CERTIFICATE actions",
                action.action_type
            )));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Detect mitigation tasks

/// AWS `ViolationEventOccurrenceRange`; times are epoch seconds in the body.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OccurrenceRange {
    start_time: f64,
    end_time: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StartTask {
    target: TaskTarget,
    actions: Vec<String>,
    violation_event_occurrence_range: Option<OccurrenceRange>,
    include_only_active_violations: Option<bool>,
    include_suppressed_alerts: Option<bool>,
    client_request_token: String,
}

/// Epoch seconds (a body timestamp) as milliseconds, if representable.
fn body_time_ms(field: &str, seconds: f64) -> Result<i64, ApiError> {
    let ms = (seconds * 1000.0).round();
    // Years 1970 to 9999, as the store keeps times.
    if ms.is_finite() && (0.0..=253_402_300_799_000.0).contains(&ms) {
        Ok(ms as i64)
    } else {
        Err(ApiError::invalid(format!("{field} must be a time between 1970 and 9999 in epoch seconds")))
    }
}

/// Whether a violation with this id is active or has an event in the history.
async fn violation_exists(s: &AppState, id: &str) -> Result<bool, ApiError> {
    match s.store.describe_active_violation(id).await {
        Ok(_) => return Ok(true),
        Err(StoreError::NotFound { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    let filter = ViolationEventFilter {
        violation_id: Some(id.to_owned()),
        ..ViolationEventFilter::between(0, i64::MAX)
    };
    Ok(!s.store.list_violation_events(&filter, &PageRequest::first(1)).await?.items.is_empty())
}

/// `StartDetectMitigationActionsTask`. The task is recorded `IN_PROGRESS` and run in its own
/// tokio task; the answer does not wait for it.
pub async fn start_task(
    State(s): State<AppState>,
    Name(task_id): Name,
    Json(input): Json<StartTask>,
) -> ApiResult {
    check_id("taskId", &task_id)?;
    input.target.check().map_err(ApiError::invalid)?;
    let token = &input.client_request_token;
    if !(1..=64).contains(&token.len())
        || !token.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
    {
        return Err(ApiError::invalid("clientRequestToken must be 1 to 64 characters of [a-zA-Z0-9_-]"));
    }
    if !(1..=MAX_ACTIONS).contains(&input.actions.len()) {
        return Err(ApiError::invalid(format!("actions must name 1 to {MAX_ACTIONS} mitigation actions")));
    }
    let mut seen = HashSet::new();
    for (i, name) in input.actions.iter().enumerate() {
        check_id(&format!("actions[{i}]"), name)?;
        if !seen.insert(name) {
            return Err(ApiError::invalid(format!("actions[{i}]: {name} is named twice")));
        }
        match s.store.describe_mitigation_action(name).await {
            Ok(_) => {}
            Err(StoreError::NotFound { .. }) => {
                return Err(ApiError::invalid(format!(
                    "actions[{i}]: mitigation action {name} does not exist"
                )));
            }
            Err(e) => return Err(e.into()),
        }
    }
    let range = match &input.violation_event_occurrence_range {
        None => None,
        Some(r) => {
            let start = body_time_ms("violationEventOccurrenceRange.startTime", r.start_time)?;
            let end = body_time_ms("violationEventOccurrenceRange.endTime", r.end_time)?;
            if start >= end {
                return Err(ApiError::invalid(
                    "violationEventOccurrenceRange.startTime must be before violationEventOccurrenceRange.endTime",
                ));
            }
            Some((start, end))
        }
    };
    for (i, id) in input.target.violation_ids.iter().flatten().enumerate() {
        if !violation_exists(&s, id).await? {
            return Err(ApiError::invalid(format!(
                "target.violationIds[{i}]: violation {id} does not exist"
            )));
        }
    }
    let task = NewDetectMitigationTask {
        task_id: task_id.clone(),
        target: input.target.to_json(),
        actions: input.actions,
        violation_start_ms: range.map(|r| r.0),
        violation_end_ms: range.map(|r| r.1),
        include_only_active_violations: input.include_only_active_violations.unwrap_or(false),
        include_suppressed_alerts: input.include_suppressed_alerts.unwrap_or(false),
        client_request_token: input.client_request_token,
    };
    match s.store.start_detect_mitigation_task(task, s.now_ms()).await {
        Ok(started) => {
            if started.created {
                tokio::spawn(mitigation::run_task(s.clone(), started.task));
            }
            reply(json!({ "taskId": task_id }))
        }
        Err(StoreError::AlreadyExists { kind: ResourceKind::DetectMitigationTask, .. }) => {
            Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "TaskAlreadyExistsException",
                format!(
                    "detect mitigation task {task_id} already exists, started with another clientRequestToken or \
                 other parameters"
                ),
            ))
        }
        Err(e) => Err(e.into()),
    }
}

/// AWS `DetectMitigationActionsTaskSummary`. `actions` are the task's action definitions as they
/// are now, by name (`{"name"}` alone for one deleted since).
fn task_summary(
    t: &DetectMitigationTask,
    actions: &HashMap<String, Option<MitigationAction>>,
) -> Result<Value, ApiError> {
    let mut definitions = Vec::new();
    for name in &t.actions {
        definitions.push(match actions.get(name).cloned().flatten() {
            Some(a) => json!({
                "name": a.name,
                "id": a.id,
                "roleArn": a.role_arn,
                "actionParams": stored_json(&a.name, &a.params)?,
            }),
            None => json!({ "name": name }),
        });
    }
    let mut body = json!({
        "taskId": t.task_id,
        "taskStatus": t.status.as_str(),
        "taskStartTime": epoch_seconds(t.started_at_ms),
        "target": stored_json(&t.task_id, &t.target)?,
        "onlyActiveViolationsIncluded": t.include_only_active_violations,
        "suppressedAlertsIncluded": t.include_suppressed_alerts,
        "actionsDefinition": definitions,
        "taskStatistics": {
            "actionsExecuted": t.statistics.actions_executed,
            "actionsSkipped": t.statistics.actions_skipped,
            "actionsFailed": t.statistics.actions_failed,
        },
    });
    if let Some(end) = t.ended_at_ms {
        body["taskEndTime"] = epoch_seconds(end);
    }
    if let (Some(start), Some(end)) = (t.violation_start_ms, t.violation_end_ms) {
        body["violationEventOccurrenceRange"] = json!({
            "startTime": epoch_seconds(start),
            "endTime": epoch_seconds(end),
        });
    }
    Ok(body)
}

/// The current definitions of every action the tasks name, each read once.
async fn action_definitions(
    s: &AppState,
    tasks: &[DetectMitigationTask],
) -> Result<HashMap<String, Option<MitigationAction>>, ApiError> {
    let mut out = HashMap::new();
    for name in tasks.iter().flat_map(|t| &t.actions) {
        if out.contains_key(name) {
            continue;
        }
        let action = match s.store.describe_mitigation_action(name).await {
            Ok(a) => Some(a),
            Err(StoreError::NotFound { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        out.insert(name.clone(), action);
    }
    Ok(out)
}

pub async fn describe_task(State(s): State<AppState>, Name(task_id): Name) -> ApiResult {
    check_id("taskId", &task_id)?;
    let task = s.store.describe_detect_mitigation_task(&task_id).await?;
    let actions = action_definitions(&s, std::slice::from_ref(&task)).await?;
    reply(json!({ "taskSummary": task_summary(&task, &actions)? }))
}

/// Tasks started in `[startTime, endTime)`, both required as in AWS.
pub async fn list_tasks(State(s): State<AppState>, mut q: Query) -> ApiResult {
    let paging = Paging::from_query(&mut q, PageStyle::Token)?;
    let start = q.timestamp_ms("startTime")?;
    let end = q.timestamp_ms("endTime")?;
    q.finish()?;
    if start > end {
        return Err(ApiError::invalid("startTime must not be after endTime"));
    }
    let page = s.store.list_detect_mitigation_tasks(start, end, &paging.request).await?;
    let actions = action_definitions(&s, &page.items).await?;
    let mut tasks = Vec::with_capacity(page.items.len());
    for t in &page.items {
        tasks.push(task_summary(t, &actions)?);
    }
    let mut body = json!({ "tasks": tasks });
    if let Some(token) = page.next_token {
        body["nextToken"] = json!(token);
    }
    reply(body)
}

/// Stops a task that is `IN_PROGRESS`: the action running now finishes, the rest do not run.
/// Nothing already done is undone, as in AWS.
pub async fn cancel_task(State(s): State<AppState>, Name(task_id): Name) -> ApiResult {
    check_id("taskId", &task_id)?;
    let task = s.store.describe_detect_mitigation_task(&task_id).await?;
    let ended = |status: MitigationTaskStatus| {
        ApiError::invalid(format!("detect mitigation task {task_id} has already ended ({status})"))
    };
    if task.status != MitigationTaskStatus::InProgress {
        return Err(ended(task.status));
    }
    let update = MitigationTaskUpdate {
        status: MitigationTaskStatus::Canceled,
        ended_at_ms: Some(s.now_ms()),
        statistics: task.statistics,
    };
    match s.store.update_detect_mitigation_task(&task_id, update).await {
        Ok(_) => empty(),
        // It ended between the read and the write.
        Err(StoreError::InvalidState(_)) => {
            Err(ended(s.store.describe_detect_mitigation_task(&task_id).await?.status))
        }
        Err(e) => Err(e.into()),
    }
}

fn optional_time(q: &mut Query, key: &str) -> Result<Option<i64>, ApiError> {
    q.take(key)
        .map(|value| {
            parse_timestamp_ms(&value).ok_or_else(|| {
                ApiError::invalid(format!(
                    "{key} must be an ISO 8601 time such as 2026-11-27T10:00:00Z, or epoch seconds; got {value:?}"
                ))
            })
        })
        .transpose()
}

fn execution(e: MitigationExecution) -> Value {
    let mut body = json!({
        "taskId": e.task_id,
        "violationId": e.violation_id,
        "actionName": e.action_name,
        "thingName": e.thing,
        "executionStartDate": epoch_seconds(e.started_at_ms),
        "status": e.status.as_str(),
    });
    if let Some(end) = e.ended_at_ms {
        body["executionEndDate"] = epoch_seconds(end);
    }
    if let Some(code) = e.error_code {
        body["errorCode"] = json!(code);
    }
    if let Some(message) = e.message {
        body["message"] = json!(message);
    }
    body
}

/// Executions, oldest first; `startTime` and `endTime` bound when they started, `[start, end)`.
pub async fn list_executions(State(s): State<AppState>, mut q: Query) -> ApiResult {
    let paging = Paging::from_query(&mut q, PageStyle::Token)?;
    let task_id = q.take("taskId");
    if let Some(id) = &task_id {
        check_id("taskId", id)?;
    }
    let violation_id = q.take("violationId");
    if let Some(id) = &violation_id
        && !mitigation::is_valid_violation_id(id)
    {
        return Err(ApiError::invalid(format!(
            "violationId {id:?} must be 1 to 128 characters of [a-zA-Z0-9-]"
        )));
    }
    let thing = q.take("thingName");
    if let Some(thing) = &thing {
        check_name("thingName", thing)?;
    }
    let start_ms = optional_time(&mut q, "startTime")?;
    let end_ms = optional_time(&mut q, "endTime")?;
    q.finish()?;
    if let (Some(start), Some(end)) = (start_ms, end_ms)
        && start > end
    {
        return Err(ApiError::invalid("startTime must not be after endTime"));
    }
    let filter = MitigationExecutionFilter { task_id, violation_id, thing, start_ms, end_ms };
    let page = s.store.list_mitigation_executions(&filter, &paging.request).await?;
    paging.reply("actionsExecutions", page, execution)
}
