//! The SQLite schema, as an ordered list of migrations.
//!
//! `PRAGMA user_version` holds how many migrations a database has had. Opening a database
//! applies the missing ones in order, each in its own transaction together with the new
//! `user_version`, so a crash leaves the database at a whole version. Migrations are append-only:
//! a released one is never edited, a change is a new migration.
//!
//! Registry rows are keyed by an internal integer `id` that relations use; the public name and
//! the random public id (AWS `thingId`, `thingGroupId`) are unique columns. Every table is
//! `STRICT` so a type confusion is an error rather than silently stored. Metric datapoints are
//! not here: they live in per-day tables created on demand (see `telemetry`).

use rusqlite::Connection;

use crate::error::{Result, StoreError};

/// One step of the schema.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// What the step is for, shown in errors.
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration, oldest first; a database at version `n` has had the first `n`.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        name: "registry",
        sql: r#"
CREATE TABLE things (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    thing_id      TEXT NOT NULL UNIQUE,
    version       INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL
) STRICT;

-- A table rather than a JSON column because ListThings filters on attribute name and value.
CREATE TABLE thing_attributes (
    thing INTEGER NOT NULL REFERENCES things(id) ON DELETE CASCADE,
    name  TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (thing, name)
) STRICT, WITHOUT ROWID;
CREATE INDEX thing_attributes_by_value ON thing_attributes(name, value);

-- No foreign-key action on parent: deleting a group with children is refused before it gets here.
-- Group attributes are a JSON object: nothing filters on them.
CREATE TABLE thing_groups (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    group_id      TEXT NOT NULL UNIQUE,
    parent        INTEGER REFERENCES thing_groups(id),
    description   TEXT,
    attributes    TEXT NOT NULL,
    version       INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL
) STRICT;
CREATE INDEX thing_groups_by_parent ON thing_groups(parent);

CREATE TABLE thing_group_members (
    thing_group INTEGER NOT NULL REFERENCES thing_groups(id) ON DELETE CASCADE,
    thing       INTEGER NOT NULL REFERENCES things(id) ON DELETE CASCADE,
    PRIMARY KEY (thing_group, thing)
) STRICT, WITHOUT ROWID;
CREATE INDEX thing_group_members_by_thing ON thing_group_members(thing, thing_group);

CREATE TABLE certificates (
    id                INTEGER PRIMARY KEY,
    certificate_id    TEXT NOT NULL UNIQUE,
    pem               TEXT NOT NULL,
    status            TEXT NOT NULL
        CHECK (status IN ('ACTIVE', 'INACTIVE', 'REVOKED', 'PENDING_ACTIVATION')),
    ca_certificate_id TEXT,
    subject_cn        TEXT,
    created_at_ms     INTEGER NOT NULL,
    last_modified_ms  INTEGER NOT NULL
) STRICT;
CREATE INDEX certificates_by_creation ON certificates(created_at_ms, certificate_id);

-- No cascades: a thing or certificate with attachments cannot be deleted.
CREATE TABLE thing_principals (
    thing       INTEGER NOT NULL REFERENCES things(id),
    certificate INTEGER NOT NULL REFERENCES certificates(id),
    PRIMARY KEY (thing, certificate)
) STRICT, WITHOUT ROWID;
CREATE INDEX thing_principals_by_certificate ON thing_principals(certificate, thing);

CREATE TABLE policies (
    id                 INTEGER PRIMARY KEY,
    name               TEXT NOT NULL UNIQUE,
    document           TEXT NOT NULL,
    default_version_id TEXT NOT NULL,
    created_at_ms      INTEGER NOT NULL,
    last_modified_ms   INTEGER NOT NULL
) STRICT;

-- Targets are opaque strings (certificate or thing group ARNs built by the server).
CREATE TABLE policy_targets (
    policy INTEGER NOT NULL REFERENCES policies(id),
    target TEXT NOT NULL,
    PRIMARY KEY (policy, target)
) STRICT, WITHOUT ROWID;
CREATE INDEX policy_targets_by_target ON policy_targets(target, policy);
"#,
    },
    Migration {
        name: "telemetry",
        sql: r#"
-- Keyed by thing name, not things.id: the ingest path writes it for every report and should not
-- pay a registry lookup; delete_thing removes the row explicitly.
CREATE TABLE ingest_state (
    thing          TEXT PRIMARY KEY,
    last_report_id INTEGER NOT NULL,
    accepted_at_ms INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- One row per (thing, metric, dimension) so that the per-day datapoint tables store a small
-- integer instead of repeating three strings in every row. '' stands for "no dimension": NULLs
-- would not be equal to each other in the UNIQUE constraint.
CREATE TABLE metric_series (
    id        INTEGER PRIMARY KEY,
    thing     TEXT NOT NULL,
    metric    TEXT NOT NULL,
    dimension TEXT NOT NULL,
    UNIQUE (thing, metric, dimension)
) STRICT;
"#,
    },
];

/// The schema version of a database: how many migrations it has had.
pub(crate) fn schema_version(conn: &Connection) -> Result<usize> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    usize::try_from(version).map_err(|_| StoreError::Database(format!("negative schema version {version}")))
}

/// Brings the database up to `migrations.len()`, applying only the missing migrations.
pub(crate) fn migrate(conn: &mut Connection, migrations: &[Migration]) -> Result<()> {
    let current = schema_version(conn)?;
    if current > migrations.len() {
        return Err(StoreError::Database(format!(
            "the database has schema version {current}, newer than this build knows ({}); \
             use a newer Warden",
            migrations.len()
        )));
    }
    for (index, migration) in migrations.iter().enumerate().skip(current) {
        let tx = conn.transaction()?;
        tx.execute_batch(migration.sql).map_err(|e| {
            StoreError::Database(format!("migration {} ({}) failed: {e}", index + 1, migration.name))
        })?;
        tx.pragma_update(None, "user_version", index + 1)?;
        tx.commit()?;
    }
    Ok(())
}
