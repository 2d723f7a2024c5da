//! Mitigation: what a mitigation action does to a thing in violation, and the runner of detect
//! mitigation tasks (AWS `StartDetectMitigationActionsTask`) and of Warden's automatic
//! mitigation (the profile extension `automaticMitigationActions`).
//!
//! The pure part is the meaning of an action's parameters ([`ActionParams::check`] turns them
//! into a [`Mitigation`]), the target of a task ([`TaskTarget`]), and the bookkeeping of a run
//! ([`Tally`]). The I/O goes through [`AppState`]: the store for the registry writes, the task
//! and its executions, and [`AppState::registry_changed`] after every registry write, exactly as
//! the registry API handlers do, so the MQTT authorizer applies a quarantine group's policies or
//! drops a deactivated certificate's sessions before the next action runs.
//!
//! Two action types act in a Detect task: `ADD_THINGS_TO_THING_GROUP` (AWS's only Detect
//! action) and `UPDATE_DEVICE_CERTIFICATE` with `DEACTIVATE` (a Warden extension: AWS allows it
//! for Audit only). The other AWS types can be created, as AWS allows them for Audit, but a
//! Detect task answers each with a `SKIPPED` execution whose message says so; the actions after
//! it still run, since skipping one that cannot apply is not a failure of the mitigation.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use warden_store::{
    ActiveViolationFilter, CertificateStatus, DetectMitigationTask, MitigationExecution,
    MitigationExecutionFilter, MitigationExecutionStatus, MitigationExecutionUpdate,
    MitigationTaskStatistics, MitigationTaskStatus, MitigationTaskUpdate, NewDetectMitigationTask,
    PageRequest, StoreError, ViolationEventFilter, all_pages,
};

use crate::state::{AppState, RegistryChange};

/// How long one action on one violation may take, registry notifications included. A task of
/// `n` violations and `k` actions therefore ends within `n * k` times this, and an automatic
/// mitigation (one violation, at most 5 actions) within 5 times this.
pub const ACTION_TIMEOUT: Duration = Duration::from_secs(30);

/// The most mitigation actions a task, or a profile's automatic mitigation, may name (AWS).
pub const MAX_ACTIONS: usize = 5;

/// The prefix of the task ids of automatic mitigations: `auto-{violationId}`.
pub const AUTOMATIC_TASK_PREFIX: &str = "auto-";

/// The `errorCode` of executions, for the outcomes Warden distinguishes.
pub mod error_code {
    /// The thing is not registered, or a thing group or the action no longer exists.
    pub const RESOURCE_NOT_FOUND: &str = "ResourceNotFound";
    /// The store failed, or a stored action cannot be read; the server log has the details.
    pub const INTERNAL_FAILURE: &str = "InternalFailure";
    /// The action did not finish within [`super::ACTION_TIMEOUT`].
    pub const TIMEOUT: &str = "Timeout";
    /// `SKIPPED`: an Audit-only action type in a Detect task.
    pub const NOT_SUPPORTED_FOR_DETECT: &str = "NotSupportedForDetect";
    /// `SKIPPED`: an earlier action of the task failed for this violation.
    pub const PREVIOUS_ACTION_FAILED: &str = "PreviousActionFailed";
}

/// AWS `MitigationActionType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActionType {
    UpdateDeviceCertificate,
    UpdateCaCertificate,
    AddThingsToThingGroup,
    ReplaceDefaultPolicyVersion,
    EnableIotLogging,
    PublishFindingToSns,
}

impl ActionType {
    pub const ALL: [ActionType; 6] = [
        ActionType::UpdateDeviceCertificate,
        ActionType::UpdateCaCertificate,
        ActionType::AddThingsToThingGroup,
        ActionType::ReplaceDefaultPolicyVersion,
        ActionType::EnableIotLogging,
        ActionType::PublishFindingToSns,
    ];

    /// The AWS spelling, also what the store keeps.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionType::UpdateDeviceCertificate => "UPDATE_DEVICE_CERTIFICATE",
            ActionType::UpdateCaCertificate => "UPDATE_CA_CERTIFICATE",
            ActionType::AddThingsToThingGroup => "ADD_THINGS_TO_THING_GROUP",
            ActionType::ReplaceDefaultPolicyVersion => "REPLACE_DEFAULT_POLICY_VERSION",
            ActionType::EnableIotLogging => "ENABLE_IOT_LOGGING",
            ActionType::PublishFindingToSns => "PUBLISH_FINDING_TO_SNS",
        }
    }

    pub fn parse(s: &str) -> Option<ActionType> {
        ActionType::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Whether Warden applies this type to a violation (in a Detect task or automatically).
    pub fn runs_in_detect(self) -> bool {
        matches!(self, ActionType::AddThingsToThingGroup | ActionType::UpdateDeviceCertificate)
    }
}

/// AWS `UpdateDeviceCertificateParams` and `UpdateCACertificateParams`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateUpdateParams {
    pub action: String,
}

/// AWS `AddThingsToThingGroupParams`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AddThingsToThingGroupParams {
    pub thing_group_names: Vec<String>,
    /// Accepted and kept, and changes nothing: Warden has no dynamic groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub override_dynamic_groups: Option<bool>,
}

/// AWS `ReplaceDefaultPolicyVersionParams`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ReplaceDefaultPolicyVersionParams {
    pub template_name: String,
}

/// AWS `EnableIoTLoggingParams`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EnableIotLoggingParams {
    pub role_arn_for_logging: String,
    pub log_level: String,
}

/// AWS `PublishFindingToSnsParams`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PublishFindingToSnsParams {
    pub topic_arn: String,
}

/// AWS `MitigationActionParams`: exactly one member is set, and it decides the action's type.
/// Its canonical JSON (members not given left out) is what the store keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ActionParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_device_certificate_params: Option<CertificateUpdateParams>,
    #[serde(default, rename = "updateCACertificateParams", skip_serializing_if = "Option::is_none")]
    pub update_ca_certificate_params: Option<CertificateUpdateParams>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_things_to_thing_group_params: Option<AddThingsToThingGroupParams>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace_default_policy_version_params: Option<ReplaceDefaultPolicyVersionParams>,
    #[serde(default, rename = "enableIoTLoggingParams", skip_serializing_if = "Option::is_none")]
    pub enable_iot_logging_params: Option<EnableIotLoggingParams>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish_finding_to_sns_params: Option<PublishFindingToSnsParams>,
}

/// What an action does to the thing of a violation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mitigation {
    /// Makes the thing a direct member of each group, whose policies then apply to it.
    AddThingsToThingGroup { thing_groups: Vec<String> },
    /// Sets every ACTIVE certificate attached to the thing INACTIVE.
    DeactivateDeviceCertificates,
    /// A valid AWS action that applies to Audit findings only.
    AuditOnly(ActionType),
}

impl Mitigation {
    pub fn action_type(&self) -> ActionType {
        match self {
            Mitigation::AddThingsToThingGroup { .. } => ActionType::AddThingsToThingGroup,
            Mitigation::DeactivateDeviceCertificates => ActionType::UpdateDeviceCertificate,
            Mitigation::AuditOnly(t) => *t,
        }
    }
}

impl ActionParams {
    /// Checks the parameters as AWS does and says what they do; errors name the member by its
    /// path (`actionParams.addThingsToThingGroupParams.thingGroupNames[2]: ...`).
    pub fn check(&self) -> Result<Mitigation, String> {
        let set: Vec<&str> = [
            ("updateDeviceCertificateParams", self.update_device_certificate_params.is_some()),
            ("updateCACertificateParams", self.update_ca_certificate_params.is_some()),
            ("addThingsToThingGroupParams", self.add_things_to_thing_group_params.is_some()),
            ("replaceDefaultPolicyVersionParams", self.replace_default_policy_version_params.is_some()),
            ("enableIoTLoggingParams", self.enable_iot_logging_params.is_some()),
            ("publishFindingToSnsParams", self.publish_finding_to_sns_params.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, given)| given.then_some(name))
        .collect();
        match set.as_slice() {
            [_] => {}
            [] => {
                return Err("actionParams must set one of updateDeviceCertificateParams, \
                            updateCACertificateParams, addThingsToThingGroupParams, \
                            replaceDefaultPolicyVersionParams, enableIoTLoggingParams, publishFindingToSnsParams"
                    .into());
            }
            more => {
                return Err(format!(
                    "actionParams must set exactly one kind of parameters, not {}",
                    more.join(", ")
                ));
            }
        }
        if let Some(p) = &self.add_things_to_thing_group_params {
            let path = "actionParams.addThingsToThingGroupParams.thingGroupNames";
            if !(1..=10).contains(&p.thing_group_names.len()) {
                return Err(format!("{path} must name 1 to 10 thing groups"));
            }
            let mut seen = HashSet::new();
            for (i, group) in p.thing_group_names.iter().enumerate() {
                if !warden_wire::is_valid_thing_name(group) {
                    return Err(format!(
                        "{path}[{i}]: {group:?} must be 1 to 128 characters of [a-zA-Z0-9:_-]"
                    ));
                }
                if !seen.insert(group) {
                    return Err(format!("{path}[{i}]: {group} is named twice"));
                }
            }
            return Ok(Mitigation::AddThingsToThingGroup { thing_groups: p.thing_group_names.clone() });
        }
        if let Some(p) = &self.update_device_certificate_params {
            deactivate("actionParams.updateDeviceCertificateParams.action", &p.action)?;
            return Ok(Mitigation::DeactivateDeviceCertificates);
        }
        if let Some(p) = &self.update_ca_certificate_params {
            deactivate("actionParams.updateCACertificateParams.action", &p.action)?;
            return Ok(Mitigation::AuditOnly(ActionType::UpdateCaCertificate));
        }
        if let Some(p) = &self.replace_default_policy_version_params {
            if p.template_name != "BLANK_POLICY" {
                return Err(format!(
                    "actionParams.replaceDefaultPolicyVersionParams.templateName must be BLANK_POLICY, not {:?}",
                    p.template_name
                ));
            }
            return Ok(Mitigation::AuditOnly(ActionType::ReplaceDefaultPolicyVersion));
        }
        if let Some(p) = &self.enable_iot_logging_params {
            let path = "actionParams.enableIoTLoggingParams";
            if !(20..=2048).contains(&p.role_arn_for_logging.chars().count()) {
                return Err(format!("{path}.roleArnForLogging must be 20 to 2048 characters"));
            }
            // AWS's enum has DISABLED, but a mitigation that turns logging off is refused.
            if !matches!(p.log_level.as_str(), "DEBUG" | "INFO" | "ERROR" | "WARN") {
                return Err(format!(
                    "{path}.logLevel must be DEBUG, INFO, ERROR or WARN, not {:?}",
                    p.log_level
                ));
            }
            return Ok(Mitigation::AuditOnly(ActionType::EnableIotLogging));
        }
        if let Some(p) = &self.publish_finding_to_sns_params {
            if !(1..=350).contains(&p.topic_arn.chars().count()) {
                return Err(
                    "actionParams.publishFindingToSnsParams.topicArn must be 1 to 350 characters".into()
                );
            }
            return Ok(Mitigation::AuditOnly(ActionType::PublishFindingToSns));
        }
        unreachable!("exactly one member is set, checked above")
    }

    /// Reads parameters the store keeps, which the API checked when it wrote them.
    pub fn parse_stored(params: &str) -> Result<(ActionParams, Mitigation), String> {
        let params: ActionParams =
            serde_json::from_str(params).map_err(|e| format!("stored parameters do not parse: {e}"))?;
        let mitigation = params.check()?;
        Ok((params, mitigation))
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("action parameters always serialize")
    }
}

fn deactivate(path: &str, action: &str) -> Result<(), String> {
    if action == "DEACTIVATE" { Ok(()) } else { Err(format!("{path} must be DEACTIVATE, not {action:?}")) }
}

/// AWS `DetectMitigationActionsTaskTarget`: violation ids, or a profile and maybe one of its
/// behaviors. Its canonical JSON is what the store keeps as the task's target.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TaskTarget {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub violation_ids: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_profile_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behavior_name: Option<String>,
}

impl TaskTarget {
    /// One violation, the target of an automatic mitigation.
    pub fn violation(violation_id: &str) -> TaskTarget {
        TaskTarget { violation_ids: Some(vec![violation_id.to_owned()]), ..TaskTarget::default() }
    }

    /// Checks the AWS rules: `violationIds` (1 to 25 valid, distinct ids) or
    /// `securityProfileName` (with an optional `behaviorName`), not both.
    pub fn check(&self) -> Result<(), String> {
        match (&self.violation_ids, &self.security_profile_name, &self.behavior_name) {
            (Some(_), Some(_), _) | (Some(_), None, Some(_)) => {
                Err("target: give violationIds, or securityProfileName (and behaviorName), not both".into())
            }
            (None, None, Some(_)) => Err("target.behaviorName needs target.securityProfileName".into()),
            (None, None, None) => Err("target needs violationIds or securityProfileName".into()),
            (Some(ids), None, None) => {
                if !(1..=25).contains(&ids.len()) {
                    return Err("target.violationIds must have 1 to 25 violation ids".into());
                }
                let mut seen = HashSet::new();
                for (i, id) in ids.iter().enumerate() {
                    if !is_valid_violation_id(id) {
                        return Err(format!(
                            "target.violationIds[{i}]: {id:?} must be 1 to 128 characters of [a-zA-Z0-9-]"
                        ));
                    }
                    if !seen.insert(id) {
                        return Err(format!("target.violationIds[{i}]: {id} is named twice"));
                    }
                }
                Ok(())
            }
            (None, Some(profile), behavior) => {
                if !warden_wire::is_valid_thing_name(profile) {
                    return Err(format!(
                        "target.securityProfileName {profile:?} must be 1 to 128 characters of [a-zA-Z0-9:_-]"
                    ));
                }
                if let Some(b) = behavior
                    && !warden_wire::is_valid_thing_name(b)
                {
                    return Err(format!(
                        "target.behaviorName {b:?} must be 1 to 128 characters of [a-zA-Z0-9:_-]"
                    ));
                }
                Ok(())
            }
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a task target always serializes")
    }
}

/// AWS's `ViolationId` pattern: `[a-zA-Z0-9-]{1,128}`.
pub fn is_valid_violation_id(id: &str) -> bool {
    (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// A violation a task acts on: its id and its thing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetViolation {
    pub violation_id: String,
    pub thing: String,
}

/// The result of one action on one violation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub status: MitigationExecutionStatus,
    pub error_code: Option<&'static str>,
    pub message: String,
}

impl Outcome {
    fn successful(message: String) -> Outcome {
        Outcome { status: MitigationExecutionStatus::Successful, error_code: None, message }
    }

    fn failed(code: &'static str, message: String) -> Outcome {
        Outcome { status: MitigationExecutionStatus::Failed, error_code: Some(code), message }
    }

    fn skipped(code: &'static str, message: String) -> Outcome {
        Outcome { status: MitigationExecutionStatus::Skipped, error_code: Some(code), message }
    }

    fn internal(what: &str, e: &StoreError) -> Outcome {
        tracing::error!(error = %e, "{what}");
        Outcome::failed(error_code::INTERNAL_FAILURE, format!("{what}; the server log has the details"))
    }
}

/// Mitigation executions this server ran since it started, by how they ended (`/metrics`).
#[derive(Debug, Default)]
pub struct MitigationStats {
    pub successful: AtomicU64,
    pub failed: AtomicU64,
    pub skipped: AtomicU64,
}

impl MitigationStats {
    fn count(&self, status: MitigationExecutionStatus) {
        let counter = match status {
            MitigationExecutionStatus::Successful => &self.successful,
            MitigationExecutionStatus::Failed => &self.failed,
            MitigationExecutionStatus::Skipped => &self.skipped,
            MitigationExecutionStatus::InProgress => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The running count of a task's executions (AWS `taskStatistics`) and the status it ends with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub statistics: MitigationTaskStatistics,
}

impl Tally {
    pub fn count(&mut self, status: MitigationExecutionStatus) {
        let s = &mut self.statistics;
        match status {
            MitigationExecutionStatus::Successful => s.actions_executed += 1,
            MitigationExecutionStatus::Skipped => s.actions_skipped += 1,
            MitigationExecutionStatus::Failed => s.actions_failed += 1,
            MitigationExecutionStatus::InProgress => {}
        }
    }

    /// `SUCCESSFUL` when no action failed (a task without violations too), `FAILED` otherwise.
    pub fn final_status(&self) -> MitigationTaskStatus {
        if self.statistics.actions_failed == 0 {
            MitigationTaskStatus::Successful
        } else {
            MitigationTaskStatus::Failed
        }
    }
}

/// Runs a task the API just started (`created: true`), to its end: resolves its target to
/// violations, runs its actions in order on each, records every execution and the statistics,
/// and ends it `SUCCESSFUL` or `FAILED`, or stops when it is `CANCELED`. Spawned, never awaited
/// by the request that started it. A task that has executions already (a run cut short by a
/// restart) resumes: finished executions are counted, not repeated.
pub async fn run_task(state: AppState, task: DetectMitigationTask) {
    let violations = match resolve_target(&state, &task).await {
        Ok(violations) => violations,
        Err(e) => {
            tracing::error!(task = %task.task_id, error = %e, "cannot resolve the target of a mitigation task");
            end(&state, &task.task_id, MitigationTaskStatus::Failed, MitigationTaskStatistics::default())
                .await;
            return;
        }
    };
    execute(&state, &task, &violations).await;
}

/// Warden's automatic mitigation (what the AWS lab's Lambda did on an SNS alert): the detection
/// loop calls it on an `in-alarm` event of a profile with `automaticMitigationActions`. It is
/// recorded as the detect mitigation task `auto-{violationId}` (client request token = the
/// violation id, target = the violation), so its executions are listed by the same APIs. A
/// second call for the same violation does nothing. It takes at most
/// `action_names.len() * ACTION_TIMEOUT`.
pub async fn run_automatic(
    state: &AppState,
    violation_id: &str,
    thing: &str,
    profile: &str,
    behavior: &str,
    action_names: &[String],
) {
    if action_names.is_empty() {
        return;
    }
    let task = NewDetectMitigationTask {
        task_id: format!("{AUTOMATIC_TASK_PREFIX}{violation_id}"),
        target: TaskTarget::violation(violation_id).to_json(),
        actions: action_names.to_vec(),
        violation_start_ms: None,
        violation_end_ms: None,
        // The violation is acted on even if it cleared meanwhile, and whatever the behavior's
        // suppressAlerts (which is about alerts, not mitigation).
        include_only_active_violations: false,
        include_suppressed_alerts: true,
        client_request_token: violation_id.to_owned(),
    };
    let started = match state.store.start_detect_mitigation_task(task, state.now_ms()).await {
        Ok(started) if started.created => started.task,
        Ok(_) => return,
        Err(e) => {
            tracing::error!(violation = %violation_id, %thing, %profile, %behavior, error = %e,
                "cannot record an automatic mitigation");
            return;
        }
    };
    tracing::info!(task = %started.task_id, %thing, %profile, %behavior, "automatic mitigation");
    let target = TargetViolation { violation_id: violation_id.to_owned(), thing: thing.to_owned() };
    execute(state, &started, &[target]).await;
}

/// Runs every task still `IN_PROGRESS`, one after the other: those a stopped server left
/// unfinished. Meant for server start.
pub async fn resume_unfinished(state: &AppState) {
    let tasks =
        all_pages(|page| async move { state.store.list_detect_mitigation_tasks(0, i64::MAX, &page).await });
    let unfinished = match tasks.await {
        Ok(tasks) => tasks.into_iter().filter(|t| t.status == MitigationTaskStatus::InProgress),
        Err(e) => {
            tracing::error!(error = %e, "cannot list mitigation tasks to resume");
            return;
        }
    };
    for task in unfinished {
        tracing::info!(task = %task.task_id, "resuming an unfinished mitigation task");
        run_task(state.clone(), task).await;
    }
}

/// The violations a task acts on, each once, in a stable order: its `violationIds` in the order
/// given, or its profile's (and behavior's) violations, in the order of their events in the
/// range, or without a range the active ones first, then those of the history.
///
/// A violation is in the `violationEventOccurrenceRange` if one of its events (`in-alarm`,
/// `alarm-cleared`, `alarm-invalidated`) happened in `[startTime, endTime)`; without a range,
/// every violation qualifies. `includeOnlyActiveViolations` keeps those still active, and the
/// violations of behaviors with `suppressAlerts` are taken only with `includeSuppressedAlerts`.
pub async fn resolve_target(
    state: &AppState,
    task: &DetectMitigationTask,
) -> Result<Vec<TargetViolation>, String> {
    let target: TaskTarget =
        serde_json::from_str(&task.target).map_err(|e| format!("stored target does not parse: {e}"))?;
    target.check()?;
    let store = &state.store;
    let suppressed = if task.include_suppressed_alerts { None } else { Some(false) };
    let mut selected = Selection::default();
    let ids: Vec<Option<String>> = match &target.violation_ids {
        Some(ids) => ids.iter().cloned().map(Some).collect(),
        None => vec![None],
    };
    let (profile, behavior) = (target.security_profile_name.clone(), target.behavior_name.clone());
    let err = |e: StoreError| e.to_string();

    if let (Some(start_ms), Some(end_ms)) = (task.violation_start_ms, task.violation_end_ms) {
        for id in ids {
            let filter = ViolationEventFilter {
                security_profile: profile.clone(),
                behavior: behavior.clone(),
                violation_id: id,
                suppressed,
                ..ViolationEventFilter::between(start_ms, end_ms)
            };
            let filter = &filter;
            let events = all_pages(|page| async move { store.list_violation_events(filter, &page).await });
            for e in events.await.map_err(err)? {
                selected.add(e.violation_id, e.thing);
            }
        }
        if task.include_only_active_violations {
            let mut active = Vec::new();
            for v in selected.items {
                match store.describe_active_violation(&v.violation_id).await {
                    Ok(_) => active.push(v),
                    Err(StoreError::NotFound { .. }) => {}
                    Err(e) => return Err(e.to_string()),
                }
            }
            return Ok(active);
        }
        return Ok(selected.items);
    }

    for id in ids {
        match id {
            Some(id) => match store.describe_active_violation(&id).await {
                Ok(v) => {
                    if suppressed.is_none() || !v.suppress_alerts {
                        selected.add(v.violation_id, v.thing);
                    }
                }
                Err(StoreError::NotFound { .. }) if !task.include_only_active_violations => {
                    let filter = ViolationEventFilter {
                        violation_id: Some(id),
                        suppressed,
                        ..ViolationEventFilter::between(0, i64::MAX)
                    };
                    let page =
                        store.list_violation_events(&filter, &PageRequest::first(1)).await.map_err(err)?;
                    for e in page.items {
                        selected.add(e.violation_id, e.thing);
                    }
                }
                Err(StoreError::NotFound { .. }) => {}
                Err(e) => return Err(e.to_string()),
            },
            None => {
                let filter = ActiveViolationFilter {
                    security_profile: profile.clone(),
                    behavior: behavior.clone(),
                    suppressed,
                    ..ActiveViolationFilter::default()
                };
                let filter = &filter;
                let active =
                    all_pages(|page| async move { store.list_active_violations(filter, &page).await });
                for v in active.await.map_err(err)? {
                    selected.add(v.violation_id, v.thing);
                }
                if !task.include_only_active_violations {
                    let filter = ViolationEventFilter {
                        security_profile: profile.clone(),
                        behavior: behavior.clone(),
                        suppressed,
                        ..ViolationEventFilter::between(0, i64::MAX)
                    };
                    let filter = &filter;
                    let events =
                        all_pages(|page| async move { store.list_violation_events(filter, &page).await });
                    for e in events.await.map_err(err)? {
                        selected.add(e.violation_id, e.thing);
                    }
                }
            }
        }
    }
    Ok(selected.items)
}

/// Violations in the order first seen, each once.
#[derive(Debug, Default)]
struct Selection {
    seen: HashSet<String>,
    items: Vec<TargetViolation>,
}

impl Selection {
    fn add(&mut self, violation_id: String, thing: String) {
        if self.seen.insert(violation_id.clone()) {
            self.items.push(TargetViolation { violation_id, thing });
        }
    }
}

/// An action as the task runs it: loaded once at the task's start.
type LoadedAction = Result<Mitigation, Outcome>;

async fn load_action(state: &AppState, name: &str) -> LoadedAction {
    match state.store.describe_mitigation_action(name).await {
        Ok(action) => ActionParams::parse_stored(&action.params).map(|(_, m)| m).map_err(|e| {
            tracing::error!(action = %name, error = %e, "stored mitigation action is unreadable");
            Outcome::failed(
                error_code::INTERNAL_FAILURE,
                format!("mitigation action {name} is unreadable: {e}"),
            )
        }),
        Err(StoreError::NotFound { .. }) => Err(Outcome::failed(
            error_code::RESOURCE_NOT_FOUND,
            format!("mitigation action {name} does not exist (deleted after the task started)"),
        )),
        Err(e) => Err(Outcome::internal(&format!("cannot read mitigation action {name}"), &e)),
    }
}

/// The executions a task already has, by violation and action: a resumed task counts them
/// instead of running them again (except those cut off `IN_PROGRESS`).
async fn existing_executions(
    state: &AppState,
    task_id: &str,
) -> Result<HashMap<(String, String), MitigationExecutionStatus>, StoreError> {
    let filter = MitigationExecutionFilter { task_id: Some(task_id.to_owned()), ..Default::default() };
    let filter = &filter;
    let executions =
        all_pages(|page| async move { state.store.list_mitigation_executions(filter, &page).await });
    Ok(executions.await?.into_iter().map(|e| ((e.violation_id, e.action_name), e.status)).collect())
}

/// Runs the task's actions on `violations` and ends the task.
async fn execute(state: &AppState, task: &DetectMitigationTask, violations: &[TargetViolation]) {
    let task_id = task.task_id.as_str();
    let mut actions: Vec<(&str, LoadedAction)> = Vec::with_capacity(task.actions.len());
    for name in &task.actions {
        actions.push((name, load_action(state, name).await));
    }
    let existing = match existing_executions(state, task_id).await {
        Ok(existing) => existing,
        Err(e) => {
            tracing::error!(task = %task_id, error = %e, "cannot read the executions of a mitigation task");
            HashMap::new()
        }
    };
    let mut tally = Tally::default();
    'violations: for violation in violations {
        // The first action that failed for this violation: the later ones are skipped.
        let mut failed: Option<&str> = None;
        for (name, action) in &actions {
            let key = (violation.violation_id.clone(), (*name).to_owned());
            let previous = existing.get(&key).copied();
            if let Some(status) = previous.filter(|s| *s != MitigationExecutionStatus::InProgress) {
                tally.count(status);
                if status == MitigationExecutionStatus::Failed {
                    failed.get_or_insert(name);
                }
                continue;
            }
            if is_canceled(state, task_id).await {
                break 'violations;
            }
            let started_ms = state.now_ms();
            let decided: Result<&Mitigation, Outcome> = match (failed, action) {
                (Some(first), _) => Err(Outcome::skipped(
                    error_code::PREVIOUS_ACTION_FAILED,
                    format!("skipped because mitigation action {first} failed for this violation"),
                )),
                (None, Err(outcome)) => Err(outcome.clone()),
                (None, Ok(Mitigation::AuditOnly(t))) => Err(Outcome::skipped(
                    error_code::NOT_SUPPORTED_FOR_DETECT,
                    format!(
                        "{} is an Audit mitigation action; Detect tasks run only ADD_THINGS_TO_THING_GROUP \
                         and UPDATE_DEVICE_CERTIFICATE",
                        t.as_str()
                    ),
                )),
                (None, Ok(mitigation)) => Ok(mitigation),
            };
            let outcome = match decided {
                Err(outcome) => {
                    record(state, task_id, violation, name, started_ms, previous, &outcome).await;
                    outcome
                }
                Ok(mitigation) => {
                    if previous.is_none() {
                        let in_progress = Outcome {
                            status: MitigationExecutionStatus::InProgress,
                            error_code: None,
                            message: String::new(),
                        };
                        record(state, task_id, violation, name, started_ms, None, &in_progress).await;
                    }
                    let applied = apply(state, mitigation, &violation.thing);
                    let outcome = tokio::time::timeout(ACTION_TIMEOUT, applied).await.unwrap_or_else(|_| {
                        Outcome::failed(
                            error_code::TIMEOUT,
                            format!("did not finish within {} s", ACTION_TIMEOUT.as_secs()),
                        )
                    });
                    let recorded = Some(MitigationExecutionStatus::InProgress);
                    record(state, task_id, violation, name, started_ms, recorded, &outcome).await;
                    outcome
                }
            };
            tracing::info!(
                task = %task_id,
                violation = %violation.violation_id,
                thing = %violation.thing,
                action = %name,
                status = %outcome.status,
                message = %outcome.message,
                "mitigation action"
            );
            state.mitigation_stats.count(outcome.status);
            tally.count(outcome.status);
            if outcome.status == MitigationExecutionStatus::Failed {
                failed.get_or_insert(name);
            }
            if !progress(state, task_id, tally).await {
                break 'violations;
            }
        }
    }
    end(state, task_id, tally.final_status(), tally.statistics).await;
}

/// Records an execution: a new one (`previous` is `None`), or the outcome of one recorded
/// `IN_PROGRESS`. Failures are logged: the action itself has been applied or not regardless.
async fn record(
    state: &AppState,
    task_id: &str,
    violation: &TargetViolation,
    action: &str,
    started_ms: i64,
    previous: Option<MitigationExecutionStatus>,
    outcome: &Outcome,
) {
    let ended_ms = (outcome.status != MitigationExecutionStatus::InProgress).then(|| state.now_ms());
    let message = Some(outcome.message.clone()).filter(|m| !m.is_empty());
    let result = match previous {
        None => {
            state
                .store
                .append_mitigation_execution(MitigationExecution {
                    task_id: task_id.to_owned(),
                    violation_id: violation.violation_id.clone(),
                    action_name: action.to_owned(),
                    thing: violation.thing.clone(),
                    status: outcome.status,
                    error_code: outcome.error_code.map(str::to_owned),
                    message,
                    started_at_ms: started_ms,
                    ended_at_ms: ended_ms,
                })
                .await
        }
        Some(_) => state
            .store
            .update_mitigation_execution(
                task_id,
                &violation.violation_id,
                action,
                MitigationExecutionUpdate {
                    status: outcome.status,
                    error_code: outcome.error_code.map(str::to_owned),
                    message,
                    ended_at_ms: ended_ms,
                },
            )
            .await
            .map(drop),
    };
    if let Err(e) = result {
        tracing::error!(task = %task_id, violation = %violation.violation_id, %action, error = %e,
            "cannot record a mitigation execution");
    }
}

async fn is_canceled(state: &AppState, task_id: &str) -> bool {
    match state.store.describe_detect_mitigation_task(task_id).await {
        Ok(task) => task.status == MitigationTaskStatus::Canceled,
        Err(e) => {
            tracing::error!(task = %task_id, error = %e, "cannot read a mitigation task's status");
            false
        }
    }
}

/// Brings the task's statistics up to date; `false` if the task has ended meanwhile (it was
/// canceled), in which case its statistics are brought up to date under that status.
async fn progress(state: &AppState, task_id: &str, tally: Tally) -> bool {
    let update = MitigationTaskUpdate {
        status: MitigationTaskStatus::InProgress,
        ended_at_ms: None,
        statistics: tally.statistics,
    };
    match state.store.update_detect_mitigation_task(task_id, update).await {
        Ok(_) => true,
        Err(StoreError::InvalidState(_)) => false,
        Err(e) => {
            tracing::error!(task = %task_id, error = %e, "cannot record a mitigation task's statistics");
            true
        }
    }
}

/// Ends the task with `status`, unless it has ended already (canceled): then only its
/// statistics are brought up to date.
async fn end(
    state: &AppState,
    task_id: &str,
    status: MitigationTaskStatus,
    statistics: MitigationTaskStatistics,
) {
    let store = &state.store;
    let update = MitigationTaskUpdate { status, ended_at_ms: Some(state.now_ms()), statistics };
    let result = match store.update_detect_mitigation_task(task_id, update).await {
        Err(StoreError::InvalidState(_)) => match store.describe_detect_mitigation_task(task_id).await {
            Ok(current) => {
                store
                    .update_detect_mitigation_task(
                        task_id,
                        MitigationTaskUpdate { status: current.status, ended_at_ms: None, statistics },
                    )
                    .await
            }
            Err(e) => Err(e),
        },
        other => other,
    };
    match result {
        Ok(task) => tracing::info!(
            task = %task_id,
            status = %task.status,
            executed = task.statistics.actions_executed,
            skipped = task.statistics.actions_skipped,
            failed = task.statistics.actions_failed,
            "mitigation task ended"
        ),
        Err(e) => tracing::error!(task = %task_id, error = %e, "cannot end a mitigation task"),
    }
}

/// Applies one action to `thing`, announcing each registry write.
async fn apply(state: &AppState, mitigation: &Mitigation, thing: &str) -> Outcome {
    let store = &state.store;
    match store.describe_thing(thing).await {
        Ok(_) => {}
        Err(StoreError::NotFound { .. }) => {
            return Outcome::failed(
                error_code::RESOURCE_NOT_FOUND,
                format!("thing {thing} is not registered, so it cannot be mitigated"),
            );
        }
        Err(e) => return Outcome::internal(&format!("cannot read thing {thing}"), &e),
    }
    match mitigation {
        Mitigation::AddThingsToThingGroup { thing_groups } => {
            // Every group is checked before the first is joined, so that a missing group does
            // not leave the thing in some of them.
            for group in thing_groups {
                match store.describe_thing_group(group).await {
                    Ok(_) => {}
                    Err(StoreError::NotFound { .. }) => {
                        return Outcome::failed(
                            error_code::RESOURCE_NOT_FOUND,
                            format!("thing group {group} does not exist"),
                        );
                    }
                    Err(e) => return Outcome::internal(&format!("cannot read thing group {group}"), &e),
                }
            }
            for group in thing_groups {
                if let Err(e) = store.add_thing_to_group(group, thing).await {
                    return Outcome::internal(&format!("cannot add {thing} to thing group {group}"), &e);
                }
                state.registry_changed(RegistryChange::ThingGroups { thing: thing.to_owned() }).await;
            }
            Outcome::successful(format!("added {thing} to thing group(s) {}", thing_groups.join(", ")))
        }
        Mitigation::DeactivateDeviceCertificates => {
            let certificates = match all_pages(|page| async move {
                store.list_thing_principals(thing, &page).await
            })
            .await
            {
                Ok(certificates) => certificates,
                Err(e) => {
                    return Outcome::internal(&format!("cannot list the certificates of {thing}"), &e);
                }
            };
            let mut deactivated = Vec::new();
            for id in certificates {
                match store.describe_certificate(&id).await {
                    // INACTIVE and REVOKED ones cannot connect already; PENDING_ACTIVATION
                    // ones cannot either, and only their owner may activate them.
                    Ok(c) if c.status != CertificateStatus::Active => continue,
                    Ok(_) => {}
                    Err(StoreError::NotFound { .. }) => continue,
                    Err(e) => return Outcome::internal(&format!("cannot read certificate {id}"), &e),
                }
                match store.update_certificate_status(&id, CertificateStatus::Inactive, state.now_ms()).await
                {
                    Ok(updated) => {
                        state
                            .registry_changed(RegistryChange::Certificate {
                                certificate_id: updated.certificate_id.clone(),
                            })
                            .await;
                        deactivated.push(updated.certificate_id);
                    }
                    Err(e) => return Outcome::internal(&format!("cannot deactivate certificate {id}"), &e),
                }
            }
            if deactivated.is_empty() {
                Outcome::successful(format!("{thing} has no ACTIVE certificate; nothing to deactivate"))
            } else {
                Outcome::successful(format!(
                    "deactivated certificate(s) {} of {thing}",
                    deactivated.join(", ")
                ))
            }
        }
        Mitigation::AuditOnly(t) => Outcome::skipped(
            error_code::NOT_SUPPORTED_FOR_DETECT,
            format!("{} is an Audit mitigation action", t.as_str()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn check(params: serde_json::Value) -> Result<Mitigation, String> {
        serde_json::from_value::<ActionParams>(params).map_err(|e| e.to_string())?.check()
    }

    #[test]
    fn parameters_say_what_an_action_does() {
        assert_eq!(
            check(
                json!({ "addThingsToThingGroupParams": { "thingGroupNames": ["Quarantine"], "overrideDynamicGroups": true } })
            ),
            Ok(Mitigation::AddThingsToThingGroup { thing_groups: vec!["Quarantine".into()] })
        );
        assert_eq!(
            check(json!({ "updateDeviceCertificateParams": { "action": "DEACTIVATE" } })),
            Ok(Mitigation::DeactivateDeviceCertificates)
        );
        for (params, t) in [
            (
                json!({ "updateCACertificateParams": { "action": "DEACTIVATE" } }),
                ActionType::UpdateCaCertificate,
            ),
            (
                json!({ "replaceDefaultPolicyVersionParams": { "templateName": "BLANK_POLICY" } }),
                ActionType::ReplaceDefaultPolicyVersion,
            ),
            (
                json!({ "enableIoTLoggingParams": { "roleArnForLogging": "arn:aws:iam::1:role/logging", "logLevel": "WARN" } }),
                ActionType::EnableIotLogging,
            ),
            (
                json!({ "publishFindingToSnsParams": { "topicArn": "arn:aws:sns:local:0:t" } }),
                ActionType::PublishFindingToSns,
            ),
        ] {
            assert_eq!(check(params), Ok(Mitigation::AuditOnly(t)));
            assert!(!t.runs_in_detect());
        }
    }

    #[test]
    fn bad_parameters_are_named_by_path() {
        for (params, message) in [
            (json!({}), "actionParams must set one of"),
            (
                json!({ "updateDeviceCertificateParams": { "action": "DEACTIVATE" }, "updateCACertificateParams": { "action": "DEACTIVATE" } }),
                "actionParams must set exactly one kind of parameters, not updateDeviceCertificateParams, updateCACertificateParams",
            ),
            (
                json!({ "addThingsToThingGroupParams": { "thingGroupNames": [] } }),
                "actionParams.addThingsToThingGroupParams.thingGroupNames must name 1 to 10",
            ),
            (
                json!({ "addThingsToThingGroupParams": { "thingGroupNames": ["a", "b c"] } }),
                "actionParams.addThingsToThingGroupParams.thingGroupNames[1]: \"b c\" must be",
            ),
            (
                json!({ "addThingsToThingGroupParams": { "thingGroupNames": ["a", "a"] } }),
                "thingGroupNames[1]: a is named twice",
            ),
            (
                json!({ "updateDeviceCertificateParams": { "action": "INACTIVE" } }),
                "actionParams.updateDeviceCertificateParams.action must be DEACTIVATE, not \"INACTIVE\"",
            ),
            (
                json!({ "enableIoTLoggingParams": { "roleArnForLogging": "arn:aws:iam::1:role/logging", "logLevel": "DISABLED" } }),
                "actionParams.enableIoTLoggingParams.logLevel must be DEBUG, INFO, ERROR or WARN",
            ),
            (
                json!({ "replaceDefaultPolicyVersionParams": { "templateName": "X" } }),
                "templateName must be BLANK_POLICY",
            ),
            (
                json!({ "addThingsToThingGroupParams": { "thingGroupNames": ["a"], "x": 1 } }),
                "unknown field `x`",
            ),
        ] {
            let got = check(params.clone()).unwrap_err();
            assert!(got.contains(message), "{params}: {got}");
        }
    }

    #[test]
    fn targets_are_violation_ids_or_a_profile() {
        let target = |v: serde_json::Value| serde_json::from_value::<TaskTarget>(v).unwrap().check();
        assert_eq!(target(json!({ "violationIds": ["abc-1"] })), Ok(()));
        assert_eq!(target(json!({ "securityProfileName": "p", "behaviorName": "b" })), Ok(()));
        for (v, message) in [
            (json!({}), "target needs violationIds or securityProfileName"),
            (json!({ "behaviorName": "b" }), "target.behaviorName needs target.securityProfileName"),
            (json!({ "violationIds": ["a"], "securityProfileName": "p" }), "not both"),
            (json!({ "violationIds": [] }), "1 to 25"),
            (json!({ "violationIds": ["a_b"] }), "target.violationIds[0]: \"a_b\" must be"),
            (json!({ "violationIds": ["a", "a"] }), "target.violationIds[1]: a is named twice"),
        ] {
            let got = target(v.clone()).unwrap_err();
            assert!(got.contains(message), "{v}: {got}");
        }
    }

    #[test]
    fn a_task_fails_when_one_action_failed() {
        let mut tally = Tally::default();
        assert_eq!(tally.final_status(), MitigationTaskStatus::Successful, "no violations");
        tally.count(MitigationExecutionStatus::Successful);
        tally.count(MitigationExecutionStatus::Skipped);
        assert_eq!(tally.final_status(), MitigationTaskStatus::Successful);
        tally.count(MitigationExecutionStatus::Failed);
        assert_eq!(tally.final_status(), MitigationTaskStatus::Failed);
        assert_eq!(
            tally.statistics,
            MitigationTaskStatistics { actions_executed: 1, actions_skipped: 1, actions_failed: 1 }
        );
    }
}
