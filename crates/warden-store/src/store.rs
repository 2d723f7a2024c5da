//! The storage trait the server programs against; SQLite implements it today and PostgreSQL
//! will for scale-out.
//!
//! Contract shared by every implementation:
//! - a write is durable once its future resolves `Ok` (acknowledged means committed);
//! - a read started after a write resolved sees that write;
//! - names are checked here (thing and group names `[a-zA-Z0-9:_-]{1,128}`, policy names
//!   `[\w+=,.@-]{1,128}`, certificate ids 64 hex digits), everything else an API would check
//!   (attribute character sets, AWS quotas) is the caller's;
//! - times are given by the caller, in milliseconds since the Unix epoch.

use std::collections::BTreeMap;

use async_trait::async_trait;

use crate::day::UtcDay;
use crate::error::Result;
use crate::model::{
    AttributeUpdate, Certificate, CertificateStatus, Datapoint, DatapointQuery, IngestState, MetricDatum,
    NewCertificate, NewThingGroup, Policy, Thing, ThingFilter, ThingGroup, ThingGroupFilter,
    ThingGroupUpdate,
};
use crate::page::{Page, PageRequest};

/// Registry, ingest state and metric datapoints.
#[async_trait]
pub trait Store: Send + Sync + 'static {
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

    /// Records the last accepted report of `thing` (the thing need not be registered).
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
}
