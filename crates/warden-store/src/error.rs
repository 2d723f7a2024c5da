//! The store's error type: one enum for every backend, so the server maps each variant to one
//! AWS error code (`ResourceNotFoundException`, `ResourceAlreadyExistsException`,
//! `VersionConflictException`, `DeleteConflictException`, `CertificateStateException`,
//! `InvalidRequestException`, `InternalFailureException`) without knowing which database is behind
//! the trait. Where AWS uses a more specific code for one kind of resource (a duplicate detect
//! mitigation task is `TaskAlreadyExistsException`), the server tells by the [`ResourceKind`].

use std::fmt;

/// Shorthand for results of store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The kind of resource an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    Thing,
    ThingGroup,
    Certificate,
    Policy,
    SecurityProfile,
    CustomMetric,
    Dimension,
    /// A violation, active or in the history, by its violation id.
    Violation,
    MitigationAction,
    /// A detect mitigation actions task. `AlreadyExists` of this kind is AWS's
    /// `TaskAlreadyExistsException`, not `ResourceAlreadyExistsException`.
    DetectMitigationTask,
    /// One action on one violation within a detect mitigation task; its name is
    /// `task/violation/action`.
    MitigationExecution,
    AlertTopic,
    AlertSubscription,
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ResourceKind::Thing => "thing",
            ResourceKind::ThingGroup => "thing group",
            ResourceKind::Certificate => "certificate",
            ResourceKind::Policy => "policy",
            ResourceKind::SecurityProfile => "security profile",
            ResourceKind::CustomMetric => "custom metric",
            ResourceKind::Dimension => "dimension",
            ResourceKind::Violation => "violation",
            ResourceKind::MitigationAction => "mitigation action",
            ResourceKind::DetectMitigationTask => "detect mitigation task",
            ResourceKind::MitigationExecution => "mitigation action execution",
            ResourceKind::AlertTopic => "alert topic",
            ResourceKind::AlertSubscription => "alert subscription",
        })
    }
}

/// Why a store operation failed.
///
/// `Clone` because one failed commit fails every command of its batch, and each caller gets its
/// own copy of the error.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    #[error("{kind} {name} does not exist")]
    NotFound { kind: ResourceKind, name: String },

    #[error("{kind} {name} already exists")]
    AlreadyExists { kind: ResourceKind, name: String },

    #[error("{kind} {name} is at version {actual}, not the expected version {expected}")]
    VersionConflict { kind: ResourceKind, name: String, expected: u64, actual: u64 },

    /// The operation would break a relation, e.g. deleting a thing group that has child groups,
    /// or a policy that is still attached.
    #[error("{0}")]
    Conflict(String),

    /// The resource's state forbids the operation, e.g. deleting an ACTIVE certificate or
    /// re-activating a REVOKED one (AWS `CertificateStateException`), or changing the status of
    /// a detect mitigation task that has ended (an `InvalidRequestException` there).
    #[error("{0}")]
    InvalidState(String),

    /// The request itself is malformed: a bad name, page size or page token.
    #[error("invalid request: {0}")]
    Invalid(String),

    /// The database failed, or the store is closed. Not the caller's fault.
    #[error("database error: {0}")]
    Database(String),
}

impl StoreError {
    pub(crate) fn not_found(kind: ResourceKind, name: &str) -> Self {
        StoreError::NotFound { kind, name: name.to_owned() }
    }

    pub(crate) fn already_exists(kind: ResourceKind, name: &str) -> Self {
        StoreError::AlreadyExists { kind, name: name.to_owned() }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        StoreError::Invalid(message.into())
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Database(e.to_string())
    }
}
