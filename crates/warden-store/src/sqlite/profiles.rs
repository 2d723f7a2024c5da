//! Security profile statements: profiles and their targets, custom metrics and dimensions.
//!
//! Like the registry's, plain synchronous functions over a connection, called with checked
//! arguments: writes on the writer thread, reads in a read transaction.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::sql::{check_version, exists, string_page, strings_column, strings_json};
use crate::defender::{CustomMetric, Dimension, NewSecurityProfile, SecurityProfile, SecurityProfileUpdate};
use crate::error::{ResourceKind, Result, StoreError};
use crate::page::Page;

// ---------------------------------------------------------------------------------------------
// Security profiles

const PROFILE_COLUMNS: &str = "name, description, document, version, created_at_ms, last_modified_ms";

fn profile_from_row(row: &Row<'_>) -> rusqlite::Result<SecurityProfile> {
    Ok(SecurityProfile {
        name: row.get(0)?,
        description: row.get(1)?,
        document: row.get(2)?,
        version: row.get(3)?,
        created_at_ms: row.get(4)?,
        last_modified_ms: row.get(5)?,
    })
}

/// The internal id and version of a profile, or `NotFound`.
fn profile_key(conn: &Connection, name: &str) -> Result<(i64, u64)> {
    conn.prepare_cached("SELECT id, version FROM security_profiles WHERE name = ?1")?
        .query_row([name], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?
        .ok_or_else(|| StoreError::not_found(ResourceKind::SecurityProfile, name))
}

pub(crate) fn describe_security_profile(conn: &Connection, name: &str) -> Result<SecurityProfile> {
    conn.prepare_cached(&format!("SELECT {PROFILE_COLUMNS} FROM security_profiles WHERE name = ?1"))?
        .query_row([name], profile_from_row)
        .optional()?
        .ok_or_else(|| StoreError::not_found(ResourceKind::SecurityProfile, name))
}

pub(crate) fn create_security_profile(
    conn: &Connection,
    profile: &NewSecurityProfile,
    now_ms: i64,
) -> Result<SecurityProfile> {
    if exists(profile_key(conn, &profile.name))? {
        return Err(StoreError::already_exists(ResourceKind::SecurityProfile, &profile.name));
    }
    conn.prepare_cached(&format!(
        "INSERT INTO security_profiles ({PROFILE_COLUMNS}) VALUES (?1, ?2, ?3, 1, ?4, ?4)"
    ))?
    .execute(params![profile.name, profile.description, profile.document, now_ms])?;
    describe_security_profile(conn, &profile.name)
}

pub(crate) fn update_security_profile(
    conn: &Connection,
    name: &str,
    update: &SecurityProfileUpdate,
    expected_version: Option<u64>,
    now_ms: i64,
) -> Result<SecurityProfile> {
    let (id, version) = profile_key(conn, name)?;
    check_version(ResourceKind::SecurityProfile, name, expected_version, version)?;
    conn.prepare_cached(
        "UPDATE security_profiles
         SET description = ?2, document = ?3, version = version + 1, last_modified_ms = ?4
         WHERE id = ?1",
    )?
    .execute(params![id, update.description, update.document, now_ms])?;
    describe_security_profile(conn, name)
}

pub(crate) fn delete_security_profile(
    conn: &Connection,
    name: &str,
    expected_version: Option<u64>,
) -> Result<()> {
    let (id, version) = profile_key(conn, name)?;
    check_version(ResourceKind::SecurityProfile, name, expected_version, version)?;
    // Target attachments go with the row (ON DELETE CASCADE).
    conn.prepare_cached("DELETE FROM security_profiles WHERE id = ?1")?.execute([id])?;
    Ok(())
}

pub(crate) fn list_security_profiles(
    conn: &Connection,
    cursor: Option<String>,
    limit: usize,
) -> Result<Page<SecurityProfile>> {
    let cursor = cursor.unwrap_or_default();
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {PROFILE_COLUMNS} FROM security_profiles WHERE name > ?1 ORDER BY name LIMIT ?2"
    ))?;
    let rows = stmt
        .query_map(params![cursor, limit + 1], profile_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Page::from_rows(rows, limit, |p| p.name.clone()))
}

pub(crate) fn attach_security_profile(conn: &Connection, profile: &str, target: &str) -> Result<()> {
    let (profile, _) = profile_key(conn, profile)?;
    conn.prepare_cached("INSERT OR IGNORE INTO security_profile_targets (profile, target) VALUES (?1, ?2)")?
        .execute(params![profile, target])?;
    Ok(())
}

pub(crate) fn detach_security_profile(conn: &Connection, profile: &str, target: &str) -> Result<()> {
    let (profile, _) = profile_key(conn, profile)?;
    conn.prepare_cached("DELETE FROM security_profile_targets WHERE profile = ?1 AND target = ?2")?
        .execute(params![profile, target])?;
    Ok(())
}

pub(crate) fn list_targets_for_security_profile(
    conn: &Connection,
    profile: &str,
    cursor: Option<String>,
    limit: usize,
) -> Result<Page<String>> {
    let (profile, _) = profile_key(conn, profile)?;
    string_page(
        conn,
        "SELECT target FROM security_profile_targets WHERE profile = ?1 AND target > ?2
         ORDER BY target LIMIT ?3",
        &[&profile],
        cursor,
        limit,
    )
}

pub(crate) fn list_security_profiles_for_target(
    conn: &Connection,
    target: &str,
    cursor: Option<String>,
    limit: usize,
) -> Result<Page<String>> {
    string_page(
        conn,
        "SELECT p.name FROM security_profile_targets t JOIN security_profiles p ON p.id = t.profile
         WHERE t.target = ?1 AND p.name > ?2
         ORDER BY p.name LIMIT ?3",
        &[&target],
        cursor,
        limit,
    )
}

pub(crate) fn security_profiles_for_targets(conn: &Connection, targets: &[String]) -> Result<Vec<String>> {
    // One JSON array parameter, so one cached statement serves any number of targets.
    let targets = strings_json(targets)?;
    let mut stmt = conn.prepare_cached(
        "SELECT p.name FROM security_profiles p
         WHERE p.id IN (SELECT t.profile FROM security_profile_targets t
                        WHERE t.target IN (SELECT value FROM json_each(?1)))
         ORDER BY p.name",
    )?;
    let rows = stmt.query_map([targets], |row| row.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

// ---------------------------------------------------------------------------------------------
// Custom metrics

const METRIC_COLUMNS: &str = "name, metric_type, display_name, created_at_ms, last_modified_ms";

fn metric_from_row(row: &Row<'_>) -> rusqlite::Result<CustomMetric> {
    Ok(CustomMetric {
        name: row.get(0)?,
        metric_type: row.get(1)?,
        display_name: row.get(2)?,
        created_at_ms: row.get(3)?,
        last_modified_ms: row.get(4)?,
    })
}

pub(crate) fn describe_custom_metric(conn: &Connection, name: &str) -> Result<CustomMetric> {
    conn.prepare_cached(&format!("SELECT {METRIC_COLUMNS} FROM custom_metrics WHERE name = ?1"))?
        .query_row([name], metric_from_row)
        .optional()?
        .ok_or_else(|| StoreError::not_found(ResourceKind::CustomMetric, name))
}

pub(crate) fn create_custom_metric(
    conn: &Connection,
    name: &str,
    metric_type: &str,
    display_name: Option<&str>,
    now_ms: i64,
) -> Result<CustomMetric> {
    if exists(describe_custom_metric(conn, name))? {
        return Err(StoreError::already_exists(ResourceKind::CustomMetric, name));
    }
    conn.prepare_cached(&format!(
        "INSERT INTO custom_metrics ({METRIC_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?4)"
    ))?
    .execute(params![name, metric_type, display_name, now_ms])?;
    describe_custom_metric(conn, name)
}

pub(crate) fn update_custom_metric(
    conn: &Connection,
    name: &str,
    display_name: Option<&str>,
    now_ms: i64,
) -> Result<CustomMetric> {
    let changed = conn
        .prepare_cached("UPDATE custom_metrics SET display_name = ?2, last_modified_ms = ?3 WHERE name = ?1")?
        .execute(params![name, display_name, now_ms])?;
    if changed == 0 {
        return Err(StoreError::not_found(ResourceKind::CustomMetric, name));
    }
    describe_custom_metric(conn, name)
}

pub(crate) fn delete_custom_metric(conn: &Connection, name: &str) -> Result<()> {
    match conn.prepare_cached("DELETE FROM custom_metrics WHERE name = ?1")?.execute([name])? {
        0 => Err(StoreError::not_found(ResourceKind::CustomMetric, name)),
        _ => Ok(()),
    }
}

pub(crate) fn list_custom_metrics(
    conn: &Connection,
    cursor: Option<String>,
    limit: usize,
) -> Result<Page<CustomMetric>> {
    let cursor = cursor.unwrap_or_default();
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {METRIC_COLUMNS} FROM custom_metrics WHERE name > ?1 ORDER BY name LIMIT ?2"
    ))?;
    let rows =
        stmt.query_map(params![cursor, limit + 1], metric_from_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Page::from_rows(rows, limit, |m| m.name.clone()))
}

// ---------------------------------------------------------------------------------------------
// Dimensions

const DIMENSION_COLUMNS: &str = "name, dimension_type, string_values, created_at_ms, last_modified_ms";

fn dimension_from_row(row: &Row<'_>) -> rusqlite::Result<Dimension> {
    Ok(Dimension {
        name: row.get(0)?,
        dimension_type: row.get(1)?,
        string_values: strings_column(row, 2)?,
        created_at_ms: row.get(3)?,
        last_modified_ms: row.get(4)?,
    })
}

pub(crate) fn describe_dimension(conn: &Connection, name: &str) -> Result<Dimension> {
    conn.prepare_cached(&format!("SELECT {DIMENSION_COLUMNS} FROM dimensions WHERE name = ?1"))?
        .query_row([name], dimension_from_row)
        .optional()?
        .ok_or_else(|| StoreError::not_found(ResourceKind::Dimension, name))
}

pub(crate) fn create_dimension(
    conn: &Connection,
    name: &str,
    dimension_type: &str,
    string_values: &[String],
    now_ms: i64,
) -> Result<Dimension> {
    if exists(describe_dimension(conn, name))? {
        return Err(StoreError::already_exists(ResourceKind::Dimension, name));
    }
    conn.prepare_cached(&format!(
        "INSERT INTO dimensions ({DIMENSION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?4)"
    ))?
    .execute(params![name, dimension_type, strings_json(string_values)?, now_ms])?;
    describe_dimension(conn, name)
}

pub(crate) fn update_dimension(
    conn: &Connection,
    name: &str,
    string_values: &[String],
    now_ms: i64,
) -> Result<Dimension> {
    let changed = conn
        .prepare_cached("UPDATE dimensions SET string_values = ?2, last_modified_ms = ?3 WHERE name = ?1")?
        .execute(params![name, strings_json(string_values)?, now_ms])?;
    if changed == 0 {
        return Err(StoreError::not_found(ResourceKind::Dimension, name));
    }
    describe_dimension(conn, name)
}

pub(crate) fn delete_dimension(conn: &Connection, name: &str) -> Result<()> {
    match conn.prepare_cached("DELETE FROM dimensions WHERE name = ?1")?.execute([name])? {
        0 => Err(StoreError::not_found(ResourceKind::Dimension, name)),
        _ => Ok(()),
    }
}

pub(crate) fn list_dimensions(
    conn: &Connection,
    cursor: Option<String>,
    limit: usize,
) -> Result<Page<Dimension>> {
    let cursor = cursor.unwrap_or_default();
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {DIMENSION_COLUMNS} FROM dimensions WHERE name > ?1 ORDER BY name LIMIT ?2"
    ))?;
    let rows = stmt
        .query_map(params![cursor, limit + 1], dimension_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Page::from_rows(rows, limit, |d| d.name.clone()))
}
