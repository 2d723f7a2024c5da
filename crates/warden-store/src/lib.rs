//! Warden's storage: the registry (things, thing groups, certificates, policies), per-thing
//! ingest state, metric datapoints, and Detect's security profiles, custom metrics,
//! dimensions, violations, mitigation actions and tasks and alert topics, behind the [`Store`]
//! trait.
//!
//! [`SqliteStore`] is the embedded default: one file, WAL mode, one writer thread that batches
//! writes into transactions, datapoints in per-day tables so that retention drops whole tables.
//! A PostgreSQL implementation for scale-out is to come behind the same trait.
//!
//! The store knows nothing of HTTP, MQTT or ARNs: it keeps names and ids, and treats policy and
//! security profile targets as opaque strings. Documents whose meaning belongs to other crates
//! (policies, security profiles, behaviors, metric values, mitigation parameters) are JSON text
//! it checks for syntax and keeps byte for byte. It never reads the clock; callers pass `now_ms`.

mod day;
mod defender;
mod error;
mod model;
mod names;
mod page;
pub mod sqlite;
mod store;

pub use day::UtcDay;
pub use defender::{
    ActiveViolation, ActiveViolationFilter, ActiveViolationUpdate, AlertSubscription, AlertTopic,
    CustomMetric, DetectMitigationTask, Dimension, MitigationAction, MitigationActionUpdate,
    MitigationExecution, MitigationExecutionFilter, MitigationExecutionStatus, MitigationExecutionUpdate,
    MitigationTaskStatistics, MitigationTaskStatus, MitigationTaskUpdate, NewDetectMitigationTask,
    NewMitigationAction, NewSecurityProfile, NewViolationEvent, SecurityProfile, SecurityProfileUpdate,
    SubscriptionProtocol, TaskStart, VerificationState, ViolationChange, ViolationEvent,
    ViolationEventFilter, ViolationEventType,
};
pub use error::{ResourceKind, Result, StoreError};
pub use model::{
    AttributeUpdate, Certificate, CertificateStatus, DEFAULT_POLICY_VERSION_ID, Datapoint, DatapointQuery,
    IngestState, MetricDatum, MetricValue, NewCertificate, NewThingGroup, Policy, Thing, ThingFilter,
    ThingGroup, ThingGroupFilter, ThingGroupUpdate,
};
pub use page::{MAX_PAGE_SIZE, Page, PageRequest, all_pages};
pub use sqlite::SqliteStore;
pub use store::{RegistryBulk, Store};
