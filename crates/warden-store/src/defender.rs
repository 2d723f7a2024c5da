//! The plain data the store keeps for Device Defender Detect: security profiles and their
//! targets, custom metrics, dimensions, violations (the active set and the history), mitigation
//! actions, detect mitigation tasks and their executions, and Warden's alert topics (its
//! stand-in for SNS) with their subscriptions.
//!
//! Several fields are JSON text: a profile document, a behavior, a metric value, a task target,
//! action parameters. The store keeps them byte for byte and never interprets them; it only
//! checks that they are JSON. Their meaning belongs to the detection engine (which compiles
//! profiles) and to the API (which shapes responses), and keeping them opaque means a new AWS
//! member or a Warden extension in a profile needs no migration. What the store must search or
//! order by (names, times, states, the thing a violation is about) has columns of its own.
//!
//! As everywhere in the store, names are names (the server builds ARNs), and times are
//! milliseconds since the Unix epoch, given by the caller.

use std::fmt;
use std::str::FromStr;

use crate::error::StoreError;

/// Implements `as_str`, `Display` and `FromStr` for an enum stored as its AWS spelling.
macro_rules! aws_enum {
    ($name:ident, $what:literal, { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $name {
            /// The AWS spelling, also what the database stores.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = StoreError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(StoreError::invalid(format!(concat!("unknown ", $what, " {:?}"), other))),
                }
            }
        }
    };
}

// ---------------------------------------------------------------------------------------------
// Security profiles

/// A security profile (AWS `DescribeSecurityProfile`, without the ARN).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityProfile {
    /// `[a-zA-Z0-9:_-]{1,128}`.
    pub name: String,
    /// `securityProfileDescription`; `None` when there is none.
    pub description: Option<String>,
    /// The rest of the profile as JSON text: `behaviors`, `alertTargets`,
    /// `additionalMetricsToRetainV2`, `metricsExportConfig` and Warden's automatic-mitigation
    /// extension. Kept as given; the detection engine compiles it.
    pub document: String,
    /// Starts at 1 and grows by one per update (AWS `version`, checked against
    /// `expectedVersion`).
    pub version: u64,
    pub created_at_ms: i64,
    pub last_modified_ms: i64,
}

/// The input of `create_security_profile`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewSecurityProfile {
    pub name: String,
    /// `None` or `Some("")`: no description.
    pub description: Option<String>,
    /// Must be JSON; see [`SecurityProfile::document`].
    pub document: String,
}

/// The input of `update_security_profile`: the profile's new description and document, both
/// replaced. AWS's `UpdateSecurityProfile` changes only the members it is given; the server
/// merges those into the profile it read and passes that read's version as the expected
/// version, so that two concurrent updates cannot silently overwrite each other.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecurityProfileUpdate {
    /// `None` or `Some("")`: no description.
    pub description: Option<String>,
    pub document: String,
}

// ---------------------------------------------------------------------------------------------
// Custom metrics and dimensions

/// A custom metric (AWS `DescribeCustomMetric`, without the ARN).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomMetric {
    /// `[a-zA-Z0-9:_-]{1,128}`; the name devices use in `custom_metrics` and behaviors use as
    /// `metric`.
    pub name: String,
    /// `string-list`, `ip-address-list`, `number-list` or `number`; the API checks which.
    pub metric_type: String,
    pub display_name: Option<String>,
    pub created_at_ms: i64,
    pub last_modified_ms: i64,
}

/// A dimension (AWS `DescribeDimension`, without the ARN).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dimension {
    /// `[a-zA-Z0-9:_-]{1,128}`; behaviors refer to it as `metricDimension.dimensionName`.
    pub name: String,
    /// `TOPIC_FILTER`, the only type AWS has; the API checks it.
    pub dimension_type: String,
    /// The topic filters (MQTT wildcards allowed), in the order given; at least one.
    pub string_values: Vec<String>,
    pub created_at_ms: i64,
    pub last_modified_ms: i64,
}

// ---------------------------------------------------------------------------------------------
// Violations

/// What a person concluded about a violation (AWS `VerificationState`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum VerificationState {
    /// Nobody has looked yet; every violation starts here.
    #[default]
    Unknown,
    FalsePositive,
    BenignPositive,
    TruePositive,
}

aws_enum!(VerificationState, "verification state", {
    Unknown => "UNKNOWN",
    FalsePositive => "FALSE_POSITIVE",
    BenignPositive => "BENIGN_POSITIVE",
    TruePositive => "TRUE_POSITIVE",
});

/// AWS `violationEventType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ViolationEventType {
    InAlarm,
    AlarmCleared,
    AlarmInvalidated,
}

aws_enum!(ViolationEventType, "violation event type", {
    InAlarm => "in-alarm",
    AlarmCleared => "alarm-cleared",
    AlarmInvalidated => "alarm-invalidated",
});

/// A behavior of a thing in alarm (AWS `ActiveViolation`). There is at most one per thing,
/// profile and behavior.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveViolation {
    /// `[a-zA-Z0-9-]{1,128}`; Warden's are 32 hex digits. The same id names the violation's
    /// events, from `in-alarm` to `alarm-cleared` or `alarm-invalidated`.
    pub violation_id: String,
    /// The thing name (it need not be registered: unregistered devices are monitored too).
    pub thing: String,
    pub security_profile: String,
    /// The behavior's name.
    pub behavior: String,
    /// The behavior as configured, as JSON text (AWS returns the whole `Behavior`).
    pub behavior_json: String,
    /// The last violating value, an AWS `MetricValue` as JSON text.
    pub last_violation_value: String,
    /// When the alarm was raised.
    pub violation_start_ms: i64,
    /// When the last violating value was seen.
    pub last_violation_ms: i64,
    /// The behavior's `suppressAlerts`: the violation is kept and listed, but not alerted on.
    pub suppress_alerts: bool,
    pub verification_state: VerificationState,
    pub verification_description: Option<String>,
}

/// One entry of the violation history (AWS `ViolationEvent`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViolationEvent {
    pub violation_id: String,
    pub event_type: ViolationEventType,
    pub thing: String,
    pub security_profile: String,
    pub behavior: String,
    /// The behavior as configured when the event happened, as JSON text.
    pub behavior_json: String,
    /// The value judged, an AWS `MetricValue` as JSON text.
    pub metric_value: String,
    pub event_time_ms: i64,
    pub suppress_alerts: bool,
    /// The violation's verification state, the same on all its events and its active entry.
    pub verification_state: VerificationState,
    pub verification_description: Option<String>,
}

/// An event as the detection engine produced it, the input of `record_violation_events`.
/// Its verification state is the violation's (`UNKNOWN` for a new one): it is the store's to
/// keep, so that a state set through the API is never overwritten by the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewViolationEvent {
    pub violation_id: String,
    pub event_type: ViolationEventType,
    pub thing: String,
    pub security_profile: String,
    pub behavior: String,
    pub behavior_json: String,
    pub metric_value: String,
    pub event_time_ms: i64,
    pub suppress_alerts: bool,
}

/// A behavior still in alarm saw another violating value: the input that moves an active
/// violation's last value and time on (AWS `lastViolationValue`, `lastViolationTime`) without
/// an event. It also carries the behavior's current configuration, which may have changed in a
/// profile update that kept the alarm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveViolationUpdate {
    pub violation_id: String,
    pub behavior_json: String,
    pub last_violation_value: String,
    pub last_violation_ms: i64,
    pub suppress_alerts: bool,
}

/// One change `record_violation_events` applies. The active set follows the events, so the two
/// cannot disagree: see the variants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ViolationChange {
    /// Appended to the history. An `in-alarm` event also makes the violation active, with its
    /// event time as start and last violation time and its value as last value. An
    /// `alarm-cleared` or `alarm-invalidated` event also removes the active violation of its id,
    /// if there is one.
    Event(NewViolationEvent),
    /// Updates an active violation; the history does not change.
    Update(ActiveViolationUpdate),
}

/// Which active violations `list_active_violations` returns; `None` fields do not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActiveViolationFilter {
    pub thing: Option<String>,
    pub security_profile: Option<String>,
    /// Only with a profile: the violations of one behavior (a mitigation task's target).
    pub behavior: Option<String>,
    /// `Some(true)`: only violations of behaviors with `suppressAlerts`; `Some(false)`: only
    /// the others. The server maps AWS's `listSuppressedAlerts` onto this.
    pub suppressed: Option<bool>,
    pub verification_state: Option<VerificationState>,
}

/// Which events `list_violation_events` returns: a time range and optional filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViolationEventFilter {
    /// Inclusive.
    pub start_ms: i64,
    /// Exclusive.
    pub end_ms: i64,
    pub thing: Option<String>,
    pub security_profile: Option<String>,
    /// Only with a profile, as in [`ActiveViolationFilter::behavior`].
    pub behavior: Option<String>,
    /// The events of one violation (a mitigation task's `violationIds`).
    pub violation_id: Option<String>,
    /// As in [`ActiveViolationFilter::suppressed`].
    pub suppressed: Option<bool>,
    pub verification_state: Option<VerificationState>,
}

impl ViolationEventFilter {
    /// Every event in `[start_ms, end_ms)`.
    pub fn between(start_ms: i64, end_ms: i64) -> Self {
        ViolationEventFilter {
            start_ms,
            end_ms,
            thing: None,
            security_profile: None,
            behavior: None,
            violation_id: None,
            suppressed: None,
            verification_state: None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Mitigation actions

/// A mitigation action (AWS `DescribeMitigationAction`, without the ARN).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MitigationAction {
    /// `[a-zA-Z0-9_-]{1,128}`.
    pub name: String,
    /// A random UUID (AWS `actionId`).
    pub id: String,
    /// `ADD_THINGS_TO_THING_GROUP` and the other AWS `MitigationActionType`s; the API derives it
    /// from the parameters and checks it.
    pub action_type: String,
    /// AWS `actionParams` as JSON text, kept as given.
    pub params: String,
    pub role_arn: String,
    pub created_at_ms: i64,
    pub last_modified_ms: i64,
}

/// The input of `create_mitigation_action`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewMitigationAction {
    pub name: String,
    pub action_type: String,
    /// Must be JSON.
    pub params: String,
    pub role_arn: String,
}

/// The input of `update_mitigation_action`; `None` keeps a field. Parameters of another type
/// change the type too, so the server passes both.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MitigationActionUpdate {
    pub action_type: Option<String>,
    pub params: Option<String>,
    pub role_arn: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Detect mitigation tasks

/// AWS `DetectMitigationActionsTaskStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MitigationTaskStatus {
    InProgress,
    Successful,
    Failed,
    Canceled,
}

aws_enum!(MitigationTaskStatus, "mitigation task status", {
    InProgress => "IN_PROGRESS",
    Successful => "SUCCESSFUL",
    Failed => "FAILED",
    Canceled => "CANCELED",
});

/// AWS `DetectMitigationActionExecutionStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MitigationExecutionStatus {
    InProgress,
    Successful,
    Failed,
    Skipped,
}

aws_enum!(MitigationExecutionStatus, "mitigation execution status", {
    InProgress => "IN_PROGRESS",
    Successful => "SUCCESSFUL",
    Failed => "FAILED",
    Skipped => "SKIPPED",
});

/// AWS `DetectMitigationActionsTaskStatistics`, kept up to date by whoever runs the task.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MitigationTaskStatistics {
    pub actions_executed: u64,
    pub actions_skipped: u64,
    pub actions_failed: u64,
}

/// The input of `start_detect_mitigation_task` (AWS `StartDetectMitigationActionsTask`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewDetectMitigationTask {
    /// `[a-zA-Z0-9_-]{1,128}`, chosen by the caller.
    pub task_id: String,
    /// AWS `DetectMitigationActionsTaskTarget` (`violationIds`, or `securityProfileName` and
    /// `behaviorName`) as JSON text.
    pub target: String,
    /// The names of the mitigation actions to run, in order (1 to 5 in AWS).
    pub actions: Vec<String>,
    /// `violationEventOccurrenceRange.startTime`, if given.
    pub violation_start_ms: Option<i64>,
    /// `violationEventOccurrenceRange.endTime`, if given.
    pub violation_end_ms: Option<i64>,
    pub include_only_active_violations: bool,
    pub include_suppressed_alerts: bool,
    /// `[a-zA-Z0-9_-]{1,64}`; unique among tasks.
    pub client_request_token: String,
}

/// A detect mitigation actions task (AWS `DetectMitigationActionsTaskSummary`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetectMitigationTask {
    pub task_id: String,
    pub target: String,
    pub actions: Vec<String>,
    pub violation_start_ms: Option<i64>,
    pub violation_end_ms: Option<i64>,
    pub include_only_active_violations: bool,
    pub include_suppressed_alerts: bool,
    pub client_request_token: String,
    /// `IN_PROGRESS` from the start; the other states are final.
    pub status: MitigationTaskStatus,
    pub started_at_ms: i64,
    pub ended_at_ms: Option<i64>,
    pub statistics: MitigationTaskStatistics,
}

/// What `start_detect_mitigation_task` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskStart {
    pub task: DetectMitigationTask,
    /// `true`: this call created the task, and the caller runs it. `false`: the call repeated
    /// the one that created it (same id, token and parameters, e.g. an SDK retry after a lost
    /// answer); the task is returned as it is and must not run again.
    pub created: bool,
}

/// The input of `update_detect_mitigation_task`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MitigationTaskUpdate {
    /// A task that has ended keeps its status: only an `IN_PROGRESS` task may change it.
    pub status: MitigationTaskStatus,
    /// `None` keeps the end time.
    pub ended_at_ms: Option<i64>,
    pub statistics: MitigationTaskStatistics,
}

/// One action applied to one violation by a detect mitigation task (AWS
/// `DetectMitigationActionExecution`). Also the input of `append_mitigation_execution`; there
/// is at most one per task, violation and action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MitigationExecution {
    pub task_id: String,
    pub violation_id: String,
    pub action_name: String,
    pub thing: String,
    pub status: MitigationExecutionStatus,
    pub error_code: Option<String>,
    pub message: Option<String>,
    pub started_at_ms: i64,
    pub ended_at_ms: Option<i64>,
}

/// The input of `update_mitigation_execution`: the execution's outcome, replacing status,
/// error code and message. `None` keeps the end time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MitigationExecutionUpdate {
    pub status: MitigationExecutionStatus,
    pub error_code: Option<String>,
    pub message: Option<String>,
    pub ended_at_ms: Option<i64>,
}

/// Which executions `list_mitigation_executions` returns; `None` fields do not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MitigationExecutionFilter {
    pub task_id: Option<String>,
    pub violation_id: Option<String>,
    pub thing: Option<String>,
    /// Executions started at or after this time.
    pub start_ms: Option<i64>,
    /// Executions started before this time.
    pub end_ms: Option<i64>,
}

// ---------------------------------------------------------------------------------------------
// Alert topics

/// An alert topic: where a profile's `alertTargets.SNS.alertTargetArn` points. Warden delivers
/// the SNS-shaped alert itself, to the topic's subscriptions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertTopic {
    /// `[a-zA-Z0-9_-]{1,256}`, as SNS topic names.
    pub name: String,
    pub created_at_ms: i64,
}

/// How an alert reaches a subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubscriptionProtocol {
    /// A webhook: POST of the SNS envelope to a URL.
    Http,
    Https,
    /// A publish on an MQTT topic of Warden's own broker.
    Mqtt,
}

aws_enum!(SubscriptionProtocol, "subscription protocol", {
    Http => "http",
    Https => "https",
    Mqtt => "mqtt",
});

/// A subscription of an endpoint to a topic, with its delivery counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertSubscription {
    /// A random UUID, fixed at subscription.
    pub subscription_id: String,
    pub topic: String,
    pub protocol: SubscriptionProtocol,
    /// A URL for `http`/`https`, a topic name for `mqtt`; the server checks which.
    pub endpoint: String,
    pub created_at_ms: i64,
    /// Alerts delivered.
    pub delivered: u64,
    /// Deliveries that failed (each attempt counts once).
    pub failed: u64,
    /// The error of the last attempt if it failed; `None` once an attempt succeeds. So
    /// `last_error.is_some()` means "failing now", which is what an operator looks for.
    pub last_error: Option<String>,
    pub last_attempt_ms: Option<i64>,
}
