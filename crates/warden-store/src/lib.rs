//! Warden's storage: the registry (things, thing groups, certificates, policies), per-thing
//! ingest state and metric datapoints, behind the [`Store`] trait.
//!
//! [`SqliteStore`] is the embedded default: one file, WAL mode, one writer thread that batches
//! writes into transactions, datapoints in per-day tables so that retention drops whole tables.
//! A PostgreSQL implementation for scale-out is to come behind the same trait.
//!
//! The store knows nothing of HTTP, MQTT or ARNs: it keeps names and ids, and treats policy
//! targets as opaque strings. It never reads the clock; callers pass `now_ms`.

mod day;
mod error;
mod model;
mod names;
mod page;
pub mod sqlite;
mod store;

pub use day::UtcDay;
pub use error::{ResourceKind, Result, StoreError};
pub use model::{
    AttributeUpdate, Certificate, CertificateStatus, DEFAULT_POLICY_VERSION_ID, Datapoint, DatapointQuery,
    IngestState, MetricDatum, MetricValue, NewCertificate, NewThingGroup, Policy, Thing, ThingFilter,
    ThingGroup, ThingGroupFilter, ThingGroupUpdate,
};
pub use page::{MAX_PAGE_SIZE, Page, PageRequest};
pub use sqlite::SqliteStore;
pub use store::Store;
