//! The plain data the store keeps and returns: registry records (things, thing groups,
//! certificates, policies), per-thing ingest state and metric datapoints.
//!
//! Records carry names and ids only; ARNs are the server's business, built from a configured
//! region and account. Times are milliseconds since the Unix epoch and are always given by the
//! caller: the store never reads the clock (DESIGN.md, "Time").

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use crate::error::StoreError;

/// A registered device (AWS `DescribeThing`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thing {
    /// `[a-zA-Z0-9:_-]{1,128}`; also the certificate CN and MQTT client id of the device.
    pub name: String,
    /// A random UUID (AWS `thingId`), stable for the life of the thing.
    pub id: String,
    pub attributes: BTreeMap<String, String>,
    /// Starts at 1 and grows by one per update; the handle for optimistic concurrency.
    pub version: u64,
    pub created_at_ms: i64,
}

/// A change to a resource's attributes (AWS `AttributePayload`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttributeUpdate {
    pub attributes: BTreeMap<String, String>,
    /// `true`: add or replace the given attributes and remove those given with an empty value
    /// (AWS semantics). `false`: the given attributes replace all existing ones.
    pub merge: bool,
}

/// Which things `list_things` returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ThingFilter {
    /// Only things that have this attribute...
    pub attribute_name: Option<String>,
    /// ...with exactly this value. Requires `attribute_name`.
    pub attribute_value: Option<String>,
}

/// A static thing group (AWS `DescribeThingGroup`). Groups nest: a group has at most one parent,
/// fixed at creation, so the hierarchy is a forest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThingGroup {
    pub name: String,
    /// A random UUID (AWS `thingGroupId`).
    pub id: String,
    pub parent: Option<String>,
    /// The ancestors from the root down to `parent` (AWS `rootToParentThingGroups`); empty for
    /// a root group.
    pub root_to_parent: Vec<String>,
    pub description: Option<String>,
    pub attributes: BTreeMap<String, String>,
    pub version: u64,
    pub created_at_ms: i64,
}

/// The input of `create_thing_group`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewThingGroup {
    pub name: String,
    /// Must exist. AWS does not let a group change parent later, and neither does the store.
    pub parent: Option<String>,
    pub description: Option<String>,
    pub attributes: BTreeMap<String, String>,
}

/// The input of `update_thing_group` (AWS `ThingGroupProperties`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ThingGroupUpdate {
    /// `None` keeps the description; `Some("")` removes it.
    pub description: Option<String>,
    /// `None` keeps the attributes.
    pub attributes: Option<AttributeUpdate>,
}

/// Which groups `list_thing_groups` returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ThingGroupFilter {
    /// `None`: all groups. `Some(p)`: the children of `p` (all descendants if `recursive`).
    pub parent: Option<String>,
    pub name_prefix: Option<String>,
    pub recursive: bool,
}

/// A certificate's status (AWS `CertificateStatus`, the subset Warden uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CertificateStatus {
    Active,
    Inactive,
    Revoked,
    PendingActivation,
}

impl CertificateStatus {
    /// The AWS spelling, also what the database stores.
    pub fn as_str(self) -> &'static str {
        match self {
            CertificateStatus::Active => "ACTIVE",
            CertificateStatus::Inactive => "INACTIVE",
            CertificateStatus::Revoked => "REVOKED",
            CertificateStatus::PendingActivation => "PENDING_ACTIVATION",
        }
    }
}

impl fmt::Display for CertificateStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CertificateStatus {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ACTIVE" => Ok(CertificateStatus::Active),
            "INACTIVE" => Ok(CertificateStatus::Inactive),
            "REVOKED" => Ok(CertificateStatus::Revoked),
            "PENDING_ACTIVATION" => Ok(CertificateStatus::PendingActivation),
            other => Err(StoreError::invalid(format!("unknown certificate status {other:?}"))),
        }
    }
}

/// A registered X.509 certificate (AWS `CertificateDescription`, without ARNs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    /// SHA-256 of the DER encoding, 64 lowercase hex digits (as AWS computes it).
    pub certificate_id: String,
    pub pem: String,
    pub status: CertificateStatus,
    /// The id of the registered CA certificate that issued it, if any.
    pub ca_certificate_id: Option<String>,
    /// The subject's common name, which for device certificates is the thing name.
    pub subject_cn: Option<String>,
    pub created_at_ms: i64,
    pub last_modified_ms: i64,
}

/// The input of `create_certificate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCertificate {
    /// 64 hex digits; upper case is accepted and stored lower case.
    pub certificate_id: String,
    pub pem: String,
    pub status: CertificateStatus,
    pub ca_certificate_id: Option<String>,
    pub subject_cn: Option<String>,
    pub created_at_ms: i64,
}

/// An AWS IoT policy with its default version; further versions are out of scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub name: String,
    /// The policy document as JSON text, kept byte for byte as given.
    pub document: String,
    /// Always `"1"` while policy versions are out of scope.
    pub default_version_id: String,
    pub created_at_ms: i64,
    pub last_modified_ms: i64,
}

/// The version id of a policy's one and only version.
pub const DEFAULT_POLICY_VERSION_ID: &str = "1";

/// What the ingest path remembers per thing to reject duplicate reports and throttle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestState {
    /// The `header.report_id` of the last accepted report. At most `i64::MAX`.
    pub last_report_id: u64,
    pub accepted_at_ms: i64,
}

/// A metric value in AWS's `MetricValue` shape: the detection engine's own type, stored as
/// JSON with the AWS field names and without the unset ones, e.g. `{"count":1024}`.
pub use warden_detect::MetricValue;

/// A value is stored as JSON, which has no NaN or infinity, so those would come back as
/// something else; refuse them instead. An empty value says nothing and is refused too.
pub(crate) fn check_value(value: &MetricValue) -> Result<(), StoreError> {
    let finite = value.number.is_none_or(f64::is_finite)
        && value.numbers.as_ref().is_none_or(|ns| ns.iter().all(|n| n.is_finite()));
    if !finite {
        return Err(StoreError::invalid("metric values must be finite numbers"));
    }
    if *value == MetricValue::default() {
        return Err(StoreError::invalid("a metric value needs at least one field"));
    }
    Ok(())
}

/// One observation of one metric of one thing.
#[derive(Debug, Clone, PartialEq)]
pub struct Datapoint {
    /// Shared by all the datapoints of a report (or of a thing's cloud-side period).
    pub thing: Arc<str>,
    /// `aws:all-bytes-out`, another `aws:` name, or a custom metric name; the catalogue's
    /// names are borrowed, so a report's datapoints allocate no names.
    pub metric: Cow<'static, str>,
    /// The name of a dimension (for cloud-side per-topic-filter metrics); `None` for the rest.
    pub dimension: Option<String>,
    pub timestamp_ms: i64,
    pub value: MetricValue,
}

/// The series and time range `query_datapoints` reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatapointQuery {
    pub thing: String,
    pub metric: String,
    pub dimension: Option<String>,
    /// Inclusive.
    pub start_ms: i64,
    /// Exclusive.
    pub end_ms: i64,
}

/// One stored value of a series (AWS `MetricDatum`).
#[derive(Debug, Clone, PartialEq)]
pub struct MetricDatum {
    pub timestamp_ms: i64,
    pub value: MetricValue,
}
