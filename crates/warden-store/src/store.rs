//! The storage trait the server programs against; SQLite implements it today and PostgreSQL
//! will for scale-out.
//!
//! Contract shared by every implementation:
//! - a write is durable once its future resolves `Ok` (acknowledged means committed);
//! - a read started after a write resolved sees that write;
//! - names are checked here (thing, group, security profile, behavior, custom metric and
//!   dimension names `[a-zA-Z0-9:_-]{1,128}`, policy names `[\w+=,.@-]{1,128}`, certificate ids
//!   64 hex digits, mitigation action names and task ids `[a-zA-Z0-9_-]{1,128}`, violation ids
//!   `[a-zA-Z0-9-]{1,128}`, alert topic names `[a-zA-Z0-9_-]{1,256}`), and JSON texts are
//!   checked to be JSON; everything else an API would check (attribute character sets, enum
//!   spellings kept as strings, the contents of JSON documents, AWS quotas) is the caller's;
//! - times are given by the caller, in milliseconds since the Unix epoch.

use std::collections::BTreeMap;

use async_trait::async_trait;

use crate::day::UtcDay;
use crate::defender::{
    ActiveViolation, ActiveViolationFilter, AlertSubscription, AlertTopic, CustomMetric,
    DetectMitigationTask, Dimension, MitigationAction, MitigationActionUpdate, MitigationExecution,
    MitigationExecutionFilter, MitigationExecutionUpdate, MitigationTaskUpdate, NewDetectMitigationTask,
    NewMitigationAction, NewSecurityProfile, SecurityProfile, SecurityProfileUpdate, SubscriptionProtocol,
    TaskStart, VerificationState, ViolationChange, ViolationEvent, ViolationEventFilter,
};
use crate::error::Result;
use crate::model::{
    AttributeUpdate, Certificate, CertificateStatus, Datapoint, DatapointQuery, IngestState, MetricDatum,
    NewCertificate, NewThingGroup, Policy, Thing, ThingFilter, ThingGroup, ThingGroupFilter,
    ThingGroupUpdate,
};
use crate::page::{Page, PageRequest};

/// Registry, ingest state, metric datapoints, and Device Defender Detect's profiles,
/// violations, mitigation and alert topics; and bulk reads of the registry (`RegistryBulk`).
#[async_trait]
pub trait Store: RegistryBulk + Send + Sync + 'static {
    // ----- Things -----

    /// Creates a thing at version 1. `AlreadyExists` if the name is taken.
    async fn create_thing(
        &self,
        name: &str,
        attributes: BTreeMap<String, String>,
        now_ms: i64,
    ) -> Result<Thing>;

    async fn describe_thing(&self, name: &str) -> Result<Thing>;

    /// Changes the attributes and bumps the version. With `expected_version`, fails with
    /// `VersionConflict` unless the thing is at that version (optimistic concurrency).
    async fn update_thing(
        &self,
        name: &str,
        attributes: AttributeUpdate,
        expected_version: Option<u64>,
    ) -> Result<Thing>;

    /// Deletes a thing with its group memberships and ingest state. Refused with `Conflict`
    /// while certificates are attached to it (AWS makes callers detach principals first).
    /// Its datapoints stay until retention drops their day.
    async fn delete_thing(&self, name: &str, expected_version: Option<u64>) -> Result<()>;

    /// Things ordered by name, optionally only those with an attribute (and value).
    async fn list_things(&self, filter: &ThingFilter, page: &PageRequest) -> Result<Page<Thing>>;

    // ----- Thing groups -----

    /// Creates a group at version 1 under an existing parent (`NotFound` otherwise). Because a
    /// group's parent must exist first and never changes, the hierarchy cannot have cycles; a
    /// group naming itself as parent is `Invalid`.
    async fn create_thing_group(&self, group: NewThingGroup, now_ms: i64) -> Result<ThingGroup>;

    async fn describe_thing_group(&self, name: &str) -> Result<ThingGroup>;

    async fn update_thing_group(
        &self,
        name: &str,
        update: ThingGroupUpdate,
        expected_version: Option<u64>,
    ) -> Result<ThingGroup>;

    /// Deletes a group and its memberships. Refused with `Conflict` while it has child groups.
    /// Policies attached to the group's ARN are the caller's to detach: targets are opaque here.
    async fn delete_thing_group(&self, name: &str, expected_version: Option<u64>) -> Result<()>;

    /// Groups ordered by name.
    async fn list_thing_groups(
        &self,
        filter: &ThingGroupFilter,
        page: &PageRequest,
    ) -> Result<Page<ThingGroup>>;

    /// Makes `thing` a direct member of `group`; adding it again is not an error.
    async fn add_thing_to_group(&self, group: &str, thing: &str) -> Result<()>;

    /// Removes a direct membership; removing a non-member is not an error.
    async fn remove_thing_from_group(&self, group: &str, thing: &str) -> Result<()>;

    /// Names of the things in `group`, ordered; with `recursive`, also the members of all its
    /// descendant groups (each thing once).
    async fn list_things_in_group(
        &self,
        group: &str,
        recursive: bool,
        page: &PageRequest,
    ) -> Result<Page<String>>;

    /// Names of the groups `thing` is a direct member of, ordered.
    async fn list_groups_for_thing(&self, thing: &str, page: &PageRequest) -> Result<Page<String>>;

    /// Names of every group whose policies and security profiles apply to `thing`: its direct
    /// groups and all their ancestors, each once, ordered by name. Not paginated: AWS allows a
    /// thing in 10 groups of depth 7 at most, so the set is small.
    async fn effective_groups_for_thing(&self, thing: &str) -> Result<Vec<String>>;

    // ----- Certificates -----

    /// Registers a certificate. `AlreadyExists` if its id is taken.
    async fn create_certificate(&self, certificate: NewCertificate) -> Result<Certificate>;

    async fn describe_certificate(&self, certificate_id: &str) -> Result<Certificate>;

    /// Sets the status. A REVOKED certificate stays revoked, and nobody sets
    /// PENDING_ACTIVATION (AWS reserves it): both are `InvalidState`.
    async fn update_certificate_status(
        &self,
        certificate_id: &str,
        status: CertificateStatus,
        now_ms: i64,
    ) -> Result<Certificate>;

    /// Deletes a certificate. As in AWS, refused with `InvalidState` while it is ACTIVE, and with
    /// `Conflict` while it is attached to a thing or while a policy is attached to
    /// `policy_target`, the target string under which the caller attaches policies to this
    /// certificate (its ARN).
    async fn delete_certificate(&self, certificate_id: &str, policy_target: &str) -> Result<()>;

    /// Certificates ordered by creation time, then id.
    async fn list_certificates(&self, page: &PageRequest) -> Result<Page<Certificate>>;

    /// Attaches a certificate to a thing (AWS `AttachThingPrincipal`); idempotent.
    async fn attach_thing_principal(&self, thing: &str, certificate_id: &str) -> Result<()>;

    /// Detaches a certificate from a thing; detaching a non-attached one is not an error.
    async fn detach_thing_principal(&self, thing: &str, certificate_id: &str) -> Result<()>;

    /// Ids of the certificates attached to `thing`, ordered.
    async fn list_thing_principals(&self, thing: &str, page: &PageRequest) -> Result<Page<String>>;

    /// Names of the things `certificate_id` is attached to, ordered.
    async fn list_principal_things(&self, certificate_id: &str, page: &PageRequest) -> Result<Page<String>>;

    // ----- Policies -----

    /// Creates a policy whose default version is `"1"`. `document` must be JSON; its meaning
    /// is the caller's.
    async fn create_policy(&self, name: &str, document: &str, now_ms: i64) -> Result<Policy>;

    async fn get_policy(&self, name: &str) -> Result<Policy>;

    /// Deletes a policy. Refused with `Conflict` while it is attached to any target.
    async fn delete_policy(&self, name: &str) -> Result<()>;

    /// Policies ordered by name.
    async fn list_policies(&self, page: &PageRequest) -> Result<Page<Policy>>;

    /// Attaches a policy to a target (a certificate or thing group ARN; opaque here);
    /// idempotent.
    async fn attach_policy(&self, policy: &str, target: &str) -> Result<()>;

    /// Detaches a policy; detaching a non-attached one is not an error.
    async fn detach_policy(&self, policy: &str, target: &str) -> Result<()>;

    /// Names of the policies attached to `target`, ordered.
    async fn list_attached_policies(&self, target: &str, page: &PageRequest) -> Result<Page<String>>;

    /// Targets `policy` is attached to, ordered.
    async fn list_targets_for_policy(&self, policy: &str, page: &PageRequest) -> Result<Page<String>>;

    /// Every policy attached to any of `targets`, each once, ordered by name: what the
    /// authorizer needs for a connection (its certificate plus its thing's effective groups) in
    /// one read.
    async fn policies_for_targets(&self, targets: &[String]) -> Result<Vec<Policy>>;

    // ----- Ingest state -----

    /// The last accepted report of `thing`, or `None` before its first.
    async fn ingest_state(&self, thing: &str) -> Result<Option<IngestState>>;

    /// Every thing's last accepted report, in one read: for a server that keeps them all in
    /// memory rather than reading each thing's on its first report after a start.
    async fn all_ingest_states(&self) -> Result<Vec<(String, IngestState)>>;

    /// The last accepted report of each of `things`, in their order (`None` before a thing's
    /// first), in one read: for a page of things.
    async fn ingest_states(&self, things: &[String]) -> Result<Vec<Option<IngestState>>>;

    /// Records the last accepted report of `thing` (the thing need not be registered). It never
    /// moves back: a state whose report id is not greater than the stored one is ignored, since
    /// reports admitted in order are stored concurrently and may commit out of order.
    async fn set_ingest_state(&self, thing: &str, state: IngestState) -> Result<()>;

    // ----- Metric datapoints -----

    /// Stores datapoints, all or none. Timestamps must be in years 1970..=9999, values finite
    /// and non-empty (`Invalid` otherwise).
    async fn append_datapoints(&self, datapoints: Vec<Datapoint>) -> Result<()>;

    /// The datapoints of one series in `[start_ms, end_ms)`, ordered by time (ties in insertion
    /// order).
    async fn query_datapoints(&self, query: &DatapointQuery, page: &PageRequest)
    -> Result<Page<MetricDatum>>;

    /// Retention: drops every datapoint of the days before `day`. Returns the days dropped.
    async fn drop_datapoints_before(&self, day: UtcDay) -> Result<Vec<UtcDay>>;

    /// One accepted report: sets the ingest state of `thing` (as [`Store::set_ingest_state`])
    /// and stores the report's datapoints (as [`Store::append_datapoints`]) in one write, so
    /// both are stored or neither, and once this resolves `Ok` both are durable. This is the
    /// ingest hot path: an implementation should make it one round trip and let concurrent
    /// reports share a commit.
    async fn record_report(&self, thing: &str, state: IngestState, datapoints: Vec<Datapoint>) -> Result<()>;

    // ----- Security profiles -----

    /// Creates a profile at version 1. `AlreadyExists` if the name is taken; `Invalid` unless
    /// the document is JSON (which is all the store checks of it).
    async fn create_security_profile(
        &self,
        profile: NewSecurityProfile,
        now_ms: i64,
    ) -> Result<SecurityProfile>;

    async fn describe_security_profile(&self, name: &str) -> Result<SecurityProfile>;

    /// Replaces description and document and bumps the version. With `expected_version`, fails
    /// with `VersionConflict` unless the profile is at that version.
    async fn update_security_profile(
        &self,
        name: &str,
        update: SecurityProfileUpdate,
        expected_version: Option<u64>,
        now_ms: i64,
    ) -> Result<SecurityProfile>;

    /// Deletes a profile and its target attachments. Its violations are not touched: the
    /// server ends the active ones (`alarm-invalidated`) and the history stays.
    async fn delete_security_profile(&self, name: &str, expected_version: Option<u64>) -> Result<()>;

    /// Profiles ordered by name.
    async fn list_security_profiles(&self, page: &PageRequest) -> Result<Page<SecurityProfile>>;

    /// Attaches a profile to a target (a thing group ARN or one of the `all/...` ARNs; opaque
    /// here); idempotent. AWS's limit of profiles per target is the caller's to enforce.
    async fn attach_security_profile(&self, profile: &str, target: &str) -> Result<()>;

    /// Detaches a profile; detaching a non-attached one is not an error.
    async fn detach_security_profile(&self, profile: &str, target: &str) -> Result<()>;

    /// Targets `profile` is attached to, ordered.
    async fn list_targets_for_security_profile(
        &self,
        profile: &str,
        page: &PageRequest,
    ) -> Result<Page<String>>;

    /// Names of the profiles attached to exactly `target`, ordered. Recursion over thing
    /// groups is the server's (it knows which ARN names which group).
    async fn list_security_profiles_for_target(
        &self,
        target: &str,
        page: &PageRequest,
    ) -> Result<Page<String>>;

    /// Names of every profile attached to any of `targets`, each once, ordered: which profiles
    /// monitor a thing, given its effective groups' ARNs and the `all/...` ARNs, in one read.
    async fn security_profiles_for_targets(&self, targets: &[String]) -> Result<Vec<String>>;

    // ----- Custom metrics -----

    /// `AlreadyExists` if the name is taken.
    async fn create_custom_metric(
        &self,
        name: &str,
        metric_type: &str,
        display_name: Option<&str>,
        now_ms: i64,
    ) -> Result<CustomMetric>;

    async fn describe_custom_metric(&self, name: &str) -> Result<CustomMetric>;

    /// Sets the display name (`None` or `""` removes it), the only thing AWS lets change.
    async fn update_custom_metric(
        &self,
        name: &str,
        display_name: Option<&str>,
        now_ms: i64,
    ) -> Result<CustomMetric>;

    /// Deletes a custom metric. Profiles that use it are the server's to check: their
    /// documents are opaque here.
    async fn delete_custom_metric(&self, name: &str) -> Result<()>;

    /// Custom metrics ordered by name.
    async fn list_custom_metrics(&self, page: &PageRequest) -> Result<Page<CustomMetric>>;

    // ----- Dimensions -----

    /// `AlreadyExists` if the name is taken; `Invalid` without any value.
    async fn create_dimension(
        &self,
        name: &str,
        dimension_type: &str,
        string_values: Vec<String>,
        now_ms: i64,
    ) -> Result<Dimension>;

    async fn describe_dimension(&self, name: &str) -> Result<Dimension>;

    /// Replaces the values, the only thing AWS lets change.
    async fn update_dimension(
        &self,
        name: &str,
        string_values: Vec<String>,
        now_ms: i64,
    ) -> Result<Dimension>;

    /// Deletes a dimension. As with custom metrics, whether a profile uses it is the server's
    /// to check.
    async fn delete_dimension(&self, name: &str) -> Result<()>;

    /// Dimensions ordered by name.
    async fn list_dimensions(&self, page: &PageRequest) -> Result<Page<Dimension>>;

    // ----- Violations -----

    /// Applies what one evaluation changed, all or nothing, in order: appends the events to the
    /// history and keeps the active set in step with them (see [`ViolationChange`]). Refused
    /// with `Conflict` if an `in-alarm` event names a violation that is already active, or a
    /// thing, profile and behavior that already have an active violation; with `NotFound` if an
    /// update names no active violation. Thing, profile and behavior names need not exist:
    /// violations outlive profiles and are raised for unregistered things too.
    async fn record_violation_events(&self, changes: Vec<ViolationChange>) -> Result<()>;

    async fn describe_active_violation(&self, violation_id: &str) -> Result<ActiveViolation>;

    /// Active violations ordered by thing, profile and behavior.
    async fn list_active_violations(
        &self,
        filter: &ActiveViolationFilter,
        page: &PageRequest,
    ) -> Result<Page<ActiveViolation>>;

    /// Events in the filter's time range, ordered by time (ties in recording order).
    async fn list_violation_events(
        &self,
        filter: &ViolationEventFilter,
        page: &PageRequest,
    ) -> Result<Page<ViolationEvent>>;

    /// Sets the verification state of a violation, on its active entry and all its events
    /// (later events inherit it). `NotFound` if the id names neither.
    async fn put_verification_state(
        &self,
        violation_id: &str,
        state: VerificationState,
        description: Option<&str>,
    ) -> Result<()>;

    /// Retention: deletes the events that happened before `before_ms`; returns how many. The
    /// active set is not touched.
    async fn drop_violation_events_before(&self, before_ms: i64) -> Result<u64>;

    // ----- Mitigation actions -----

    /// Creates an action with a new random id. `AlreadyExists` if the name is taken; `Invalid`
    /// unless the parameters are JSON.
    async fn create_mitigation_action(
        &self,
        action: NewMitigationAction,
        now_ms: i64,
    ) -> Result<MitigationAction>;

    async fn describe_mitigation_action(&self, name: &str) -> Result<MitigationAction>;

    async fn update_mitigation_action(
        &self,
        name: &str,
        update: MitigationActionUpdate,
        now_ms: i64,
    ) -> Result<MitigationAction>;

    /// Deletes an action. Tasks that named it keep its name.
    async fn delete_mitigation_action(&self, name: &str) -> Result<()>;

    /// Actions ordered by name, optionally of one type only.
    async fn list_mitigation_actions(
        &self,
        action_type: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<MitigationAction>>;

    // ----- Detect mitigation tasks -----

    /// Records a new task, `IN_PROGRESS`, started at `now_ms`. A task id that exists is
    /// `AlreadyExists` (AWS `TaskAlreadyExistsException`), unless the call repeats the one that
    /// created it (same token and parameters): then the existing task is returned with
    /// `created: false`. A token that another task used is `Invalid`.
    async fn start_detect_mitigation_task(
        &self,
        task: NewDetectMitigationTask,
        now_ms: i64,
    ) -> Result<TaskStart>;

    async fn describe_detect_mitigation_task(&self, task_id: &str) -> Result<DetectMitigationTask>;

    /// Sets status, end time and statistics. A task that has ended keeps its status
    /// (`InvalidState` on a change, e.g. cancelling a finished task), but its statistics may
    /// still be brought up to date.
    async fn update_detect_mitigation_task(
        &self,
        task_id: &str,
        update: MitigationTaskUpdate,
    ) -> Result<DetectMitigationTask>;

    /// Tasks started in `[start_ms, end_ms)`, ordered by start time, then id.
    async fn list_detect_mitigation_tasks(
        &self,
        start_ms: i64,
        end_ms: i64,
        page: &PageRequest,
    ) -> Result<Page<DetectMitigationTask>>;

    /// Records an execution of a task. `NotFound` without the task; `AlreadyExists` if the
    /// task already has one for this violation and action.
    async fn append_mitigation_execution(&self, execution: MitigationExecution) -> Result<()>;

    async fn update_mitigation_execution(
        &self,
        task_id: &str,
        violation_id: &str,
        action_name: &str,
        update: MitigationExecutionUpdate,
    ) -> Result<MitigationExecution>;

    /// Executions ordered by start time (ties in recording order).
    async fn list_mitigation_executions(
        &self,
        filter: &MitigationExecutionFilter,
        page: &PageRequest,
    ) -> Result<Page<MitigationExecution>>;

    // ----- Alert topics -----

    /// `AlreadyExists` if the name is taken.
    async fn create_alert_topic(&self, name: &str, now_ms: i64) -> Result<AlertTopic>;

    async fn describe_alert_topic(&self, name: &str) -> Result<AlertTopic>;

    /// Deletes a topic with its subscriptions.
    async fn delete_alert_topic(&self, name: &str) -> Result<()>;

    /// Topics ordered by name.
    async fn list_alert_topics(&self, page: &PageRequest) -> Result<Page<AlertTopic>>;

    /// Subscribes an endpoint to a topic with a new random id. Subscribing the same protocol
    /// and endpoint again returns the existing subscription, as SNS does.
    async fn subscribe(
        &self,
        topic: &str,
        protocol: SubscriptionProtocol,
        endpoint: &str,
        now_ms: i64,
    ) -> Result<AlertSubscription>;

    /// `NotFound` if there is no such subscription.
    async fn unsubscribe(&self, subscription_id: &str) -> Result<()>;

    /// The subscriptions of a topic in the order they were made.
    async fn list_subscriptions(&self, topic: &str, page: &PageRequest) -> Result<Page<AlertSubscription>>;

    /// Counts one delivery attempt: delivered or failed with `error`, at `now_ms`.
    async fn record_delivery(
        &self,
        subscription_id: &str,
        ok: bool,
        error: Option<&str>,
        now_ms: i64,
    ) -> Result<()>;
}

/// Bulk reads of the registry's relations, for a reader that mirrors the whole registry in
/// memory (the MQTT authorizer, at start-up): a handful of statements however many things there
/// are, where the per-resource lists need one per certificate or thing. Pairs come in no
/// particular order.
///
/// A supertrait of [`Store`] rather than part of it, so that an implementation can keep these
/// next to its registry statements.
#[async_trait]
pub trait RegistryBulk: Send + Sync + 'static {
    /// Up to `limit` certificates whose id is greater than `after` (`""` to start), ordered by
    /// id. In chunks because each carries its PEM. `Invalid` if `limit` is 0.
    async fn certificates_after(&self, after: &str, limit: usize) -> Result<Vec<Certificate>>;

    /// Every attachment of a certificate to a thing, as (certificate id, thing name).
    async fn all_thing_principals(&self) -> Result<Vec<(String, String)>>;

    /// Every thing group with its parent, as (group, parent).
    async fn all_thing_group_parents(&self) -> Result<Vec<(String, Option<String>)>>;

    /// Every direct membership of a thing in a group, as (thing, group).
    async fn all_thing_group_members(&self) -> Result<Vec<(String, String)>>;

    /// Every attachment of a policy to a target, as (policy, target).
    async fn all_policy_targets(&self) -> Result<Vec<(String, String)>>;
}
