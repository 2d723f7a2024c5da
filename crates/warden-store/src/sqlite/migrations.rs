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
//! not here: they live in per-day tables created on demand (see `telemetry`). Migration 3 adds
//! Detect: profiles, custom metrics, dimensions, violations, mitigation and alert topics;
//! migration 4 stores datapoints a report per row (converting the tables of earlier versions);
//! migration 5 adds the ingest log, where reports append their ingest state (see `telemetry`).

use rusqlite::Connection;

use crate::error::{Result, StoreError};

/// One step of the schema.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// What the step is for, shown in errors.
    pub name: &'static str,
    pub sql: &'static str,
    /// Work SQL alone cannot express (tables whose names the database holds), run in the same
    /// transaction before `sql`.
    pub convert: Option<fn(&Connection) -> Result<()>>,
}

/// Every migration, oldest first; a database at version `n` has had the first `n`.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        name: "registry",
        convert: None,
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
        convert: None,
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
    Migration {
        name: "detect",
        convert: None,
        sql: r#"
-- The profile body (behaviors, alert targets, metrics to retain, export config, Warden's
-- automatic mitigation) is JSON text that nothing in SQL reads: the detection engine compiles it.
CREATE TABLE security_profiles (
    id               INTEGER PRIMARY KEY,
    name             TEXT NOT NULL UNIQUE,
    description      TEXT,
    document         TEXT NOT NULL,
    version          INTEGER NOT NULL,
    created_at_ms    INTEGER NOT NULL,
    last_modified_ms INTEGER NOT NULL
) STRICT;

-- Targets are opaque strings (thing group or all/... ARNs built by the server). Attachments go
-- with their profile.
CREATE TABLE security_profile_targets (
    profile INTEGER NOT NULL REFERENCES security_profiles(id) ON DELETE CASCADE,
    target  TEXT NOT NULL,
    PRIMARY KEY (profile, target)
) STRICT, WITHOUT ROWID;
CREATE INDEX security_profile_targets_by_target ON security_profile_targets(target, profile);

CREATE TABLE custom_metrics (
    name             TEXT PRIMARY KEY,
    metric_type      TEXT NOT NULL,
    display_name     TEXT,
    created_at_ms    INTEGER NOT NULL,
    last_modified_ms INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- string_values is a JSON array of topic filters: nothing filters on them.
CREATE TABLE dimensions (
    name             TEXT PRIMARY KEY,
    dimension_type   TEXT NOT NULL,
    string_values    TEXT NOT NULL,
    created_at_ms    INTEGER NOT NULL,
    last_modified_ms INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- Violations name their thing, profile and behavior by name, not by registry id: the history
-- outlives profiles and things, and unregistered things have violations too. behavior_json and
-- the metric values are JSON text kept as the engine gave them. The verification state is
-- repeated on the active row and on every event of the violation so that both lists filter on
-- a plain column; put_verification_state updates them together.
CREATE TABLE active_violations (
    violation_id             TEXT PRIMARY KEY,
    thing                    TEXT NOT NULL,
    security_profile         TEXT NOT NULL,
    behavior                 TEXT NOT NULL,
    behavior_json            TEXT NOT NULL,
    last_violation_value     TEXT NOT NULL,
    violation_start_ms       INTEGER NOT NULL,
    last_violation_ms        INTEGER NOT NULL,
    suppress_alerts          INTEGER NOT NULL CHECK (suppress_alerts IN (0, 1)),
    verification_state       TEXT NOT NULL
        CHECK (verification_state IN ('UNKNOWN', 'FALSE_POSITIVE', 'BENIGN_POSITIVE', 'TRUE_POSITIVE')),
    verification_description TEXT,
    UNIQUE (thing, security_profile, behavior)
) STRICT;
CREATE INDEX active_violations_by_profile ON active_violations(security_profile, behavior);

-- id is the recording order, which breaks ties between events of the same time.
CREATE TABLE violation_events (
    id                       INTEGER PRIMARY KEY,
    violation_id             TEXT NOT NULL,
    event_type               TEXT NOT NULL
        CHECK (event_type IN ('in-alarm', 'alarm-cleared', 'alarm-invalidated')),
    thing                    TEXT NOT NULL,
    security_profile         TEXT NOT NULL,
    behavior                 TEXT NOT NULL,
    behavior_json            TEXT NOT NULL,
    metric_value             TEXT NOT NULL,
    event_time_ms            INTEGER NOT NULL,
    suppress_alerts          INTEGER NOT NULL CHECK (suppress_alerts IN (0, 1)),
    verification_state       TEXT NOT NULL
        CHECK (verification_state IN ('UNKNOWN', 'FALSE_POSITIVE', 'BENIGN_POSITIVE', 'TRUE_POSITIVE')),
    verification_description TEXT
) STRICT;
CREATE INDEX violation_events_by_time ON violation_events(event_time_ms, id);
CREATE INDEX violation_events_by_violation ON violation_events(violation_id);
CREATE INDEX violation_events_by_thing ON violation_events(thing, event_time_ms, id);
CREATE INDEX violation_events_by_profile ON violation_events(security_profile, event_time_ms, id);

-- params is AWS actionParams as JSON text.
CREATE TABLE mitigation_actions (
    id               INTEGER PRIMARY KEY,
    name             TEXT NOT NULL UNIQUE,
    action_id        TEXT NOT NULL UNIQUE,
    action_type      TEXT NOT NULL,
    params           TEXT NOT NULL,
    role_arn         TEXT NOT NULL,
    created_at_ms    INTEGER NOT NULL,
    last_modified_ms INTEGER NOT NULL
) STRICT;
CREATE INDEX mitigation_actions_by_type ON mitigation_actions(action_type, name);

-- target is AWS DetectMitigationActionsTaskTarget as JSON text, actions a JSON array of action
-- names. Tasks are never deleted (AWS has no API for it), so executions need no cascade.
CREATE TABLE detect_mitigation_tasks (
    id                             INTEGER PRIMARY KEY,
    task_id                        TEXT NOT NULL UNIQUE,
    client_request_token           TEXT NOT NULL UNIQUE,
    target                         TEXT NOT NULL,
    actions                        TEXT NOT NULL,
    violation_start_ms             INTEGER,
    violation_end_ms               INTEGER,
    include_only_active_violations INTEGER NOT NULL CHECK (include_only_active_violations IN (0, 1)),
    include_suppressed_alerts      INTEGER NOT NULL CHECK (include_suppressed_alerts IN (0, 1)),
    status                         TEXT NOT NULL
        CHECK (status IN ('IN_PROGRESS', 'SUCCESSFUL', 'FAILED', 'CANCELED')),
    started_at_ms                  INTEGER NOT NULL,
    ended_at_ms                    INTEGER,
    actions_executed               INTEGER NOT NULL,
    actions_skipped                INTEGER NOT NULL,
    actions_failed                 INTEGER NOT NULL
) STRICT;
CREATE INDEX detect_mitigation_tasks_by_start ON detect_mitigation_tasks(started_at_ms, task_id);

CREATE TABLE mitigation_executions (
    id            INTEGER PRIMARY KEY,
    task          INTEGER NOT NULL REFERENCES detect_mitigation_tasks(id),
    violation_id  TEXT NOT NULL,
    action_name   TEXT NOT NULL,
    thing         TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('IN_PROGRESS', 'SUCCESSFUL', 'FAILED', 'SKIPPED')),
    error_code    TEXT,
    message       TEXT,
    started_at_ms INTEGER NOT NULL,
    ended_at_ms   INTEGER,
    UNIQUE (task, violation_id, action_name)
) STRICT;
CREATE INDEX mitigation_executions_by_start ON mitigation_executions(started_at_ms, id);
CREATE INDEX mitigation_executions_by_violation ON mitigation_executions(violation_id);
CREATE INDEX mitigation_executions_by_thing ON mitigation_executions(thing, started_at_ms, id);

-- Warden's stand-in for SNS. Subscriptions go with their topic; the delivery counters live on
-- the subscription row, one small update per alert.
CREATE TABLE alert_topics (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    created_at_ms INTEGER NOT NULL
) STRICT;

CREATE TABLE alert_subscriptions (
    id              INTEGER PRIMARY KEY,
    subscription_id TEXT NOT NULL UNIQUE,
    topic           INTEGER NOT NULL REFERENCES alert_topics(id) ON DELETE CASCADE,
    protocol        TEXT NOT NULL CHECK (protocol IN ('http', 'https', 'mqtt')),
    endpoint        TEXT NOT NULL,
    created_at_ms   INTEGER NOT NULL,
    delivered       INTEGER NOT NULL,
    failed          INTEGER NOT NULL,
    last_error      TEXT,
    last_attempt_ms INTEGER,
    UNIQUE (topic, protocol, endpoint)
) STRICT;
"#,
    },
    Migration {
        name: "datapoints by report",
        // A row per report instead of a row per datapoint (see `telemetry`): the old day tables
        // are converted and dropped, and with them the last use of the series table.
        convert: Some(super::telemetry::convert_series_tables),
        sql: "DROP TABLE metric_series;",
    },
    Migration {
        name: "ingest log",
        convert: None,
        sql: r#"
-- Each accepted report appends its thing's new ingest state here instead of updating
-- ingest_state, and the writer folds the log into ingest_state about once a second (see
-- `telemetry`). A rowid table with no index: every append lands on the last page.
CREATE TABLE ingest_log (
    thing          TEXT NOT NULL,
    last_report_id INTEGER NOT NULL,
    accepted_at_ms INTEGER NOT NULL
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
        if let Some(convert) = migration.convert {
            convert(&tx).map_err(|e| {
                StoreError::Database(format!("migration {} ({}) failed: {e}", index + 1, migration.name))
            })?;
        }
        tx.execute_batch(migration.sql).map_err(|e| {
            StoreError::Database(format!("migration {} ({}) failed: {e}", index + 1, migration.name))
        })?;
        tx.pragma_update(None, "user_version", index + 1)?;
        tx.commit()?;
    }
    Ok(())
}
