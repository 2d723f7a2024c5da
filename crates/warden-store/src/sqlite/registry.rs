//! Registry statements: things, thing groups, certificates, policies and their relations.
//!
//! Plain synchronous functions over a connection: the write functions run on the writer thread
//! (inside a savepoint of its batch), the read functions inside a read transaction on a reader
//! connection. Arguments arrive checked by the caller (names, page sizes). The bulk reads of
//! `RegistryBulk` are implemented here too, next to the statements they mirror.

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::error::{ResourceKind, Result, StoreError};
use crate::model::{
    AttributeUpdate, Certificate, CertificateStatus, DEFAULT_POLICY_VERSION_ID, NewCertificate,
    NewThingGroup, Policy, Thing, ThingFilter, ThingGroup, ThingGroupFilter, ThingGroupUpdate,
};
use crate::page::Page;
use crate::store::RegistryBulk;

use super::SqliteStore;
use super::sql::{check_version, exists, string_page};

// ---------------------------------------------------------------------------------------------
// Attributes

/// Applies an AWS `AttributePayload` to a set of attributes.
fn apply_attributes(current: &mut BTreeMap<String, String>, update: AttributeUpdate) {
    if update.merge {
        for (name, value) in update.attributes {
            if value.is_empty() {
                current.remove(&name);
            } else {
                current.insert(name, value);
            }
        }
    } else {
        *current = update.attributes;
    }
}

// ---------------------------------------------------------------------------------------------
// Things

/// The internal id and version of a thing, or `NotFound`.
fn thing_key(conn: &Connection, name: &str) -> Result<(i64, u64)> {
    conn.prepare_cached("SELECT id, version FROM things WHERE name = ?1")?
        .query_row([name], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?
        .ok_or_else(|| StoreError::not_found(ResourceKind::Thing, name))
}

fn thing_attributes(conn: &Connection, thing: i64) -> Result<BTreeMap<String, String>> {
    let mut stmt = conn.prepare_cached("SELECT name, value FROM thing_attributes WHERE thing = ?1")?;
    let rows = stmt.query_map([thing], |row| Ok((row.get(0)?, row.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

fn thing_from_row(conn: &Connection, row: &Row<'_>) -> Result<Thing> {
    let id: i64 = row.get(0)?;
    Ok(Thing {
        name: row.get(1)?,
        id: row.get(2)?,
        attributes: thing_attributes(conn, id)?,
        version: row.get(3)?,
        created_at_ms: row.get(4)?,
    })
}

pub(crate) fn describe_thing(conn: &Connection, name: &str) -> Result<Thing> {
    let mut stmt =
        conn.prepare_cached("SELECT id, name, thing_id, version, created_at_ms FROM things WHERE name = ?1")?;
    let mut rows = stmt.query([name])?;
    match rows.next()? {
        Some(row) => thing_from_row(conn, row),
        None => Err(StoreError::not_found(ResourceKind::Thing, name)),
    }
}

fn write_thing_attributes(
    conn: &Connection,
    thing: i64,
    attributes: &BTreeMap<String, String>,
) -> Result<()> {
    conn.prepare_cached("DELETE FROM thing_attributes WHERE thing = ?1")?.execute([thing])?;
    let mut insert =
        conn.prepare_cached("INSERT INTO thing_attributes (thing, name, value) VALUES (?1, ?2, ?3)")?;
    for (name, value) in attributes {
        insert.execute(params![thing, name, value])?;
    }
    Ok(())
}

pub(crate) fn create_thing(
    conn: &Connection,
    name: &str,
    id: &str,
    attributes: &BTreeMap<String, String>,
    now_ms: i64,
) -> Result<Thing> {
    if exists(thing_key(conn, name))? {
        return Err(StoreError::already_exists(ResourceKind::Thing, name));
    }
    conn.prepare_cached(
        "INSERT INTO things (name, thing_id, version, created_at_ms) VALUES (?1, ?2, 1, ?3)",
    )?
    .execute(params![name, id, now_ms])?;
    write_thing_attributes(conn, conn.last_insert_rowid(), attributes)?;
    describe_thing(conn, name)
}

pub(crate) fn update_thing(
    conn: &Connection,
    name: &str,
    update: AttributeUpdate,
    expected_version: Option<u64>,
) -> Result<Thing> {
    let (id, version) = thing_key(conn, name)?;
    check_version(ResourceKind::Thing, name, expected_version, version)?;
    let mut attributes = thing_attributes(conn, id)?;
    apply_attributes(&mut attributes, update);
    write_thing_attributes(conn, id, &attributes)?;
    conn.prepare_cached("UPDATE things SET version = version + 1 WHERE id = ?1")?.execute([id])?;
    describe_thing(conn, name)
}

pub(crate) fn delete_thing(conn: &Connection, name: &str, expected_version: Option<u64>) -> Result<()> {
    let (id, version) = thing_key(conn, name)?;
    check_version(ResourceKind::Thing, name, expected_version, version)?;
    let principals: i64 = conn
        .prepare_cached("SELECT count(*) FROM thing_principals WHERE thing = ?1")?
        .query_row([id], |row| row.get(0))?;
    if principals > 0 {
        return Err(StoreError::Conflict(format!(
            "thing {name} has {principals} attached certificate(s); detach them first"
        )));
    }
    // Attributes and group memberships go with the row (ON DELETE CASCADE).
    conn.prepare_cached("DELETE FROM things WHERE id = ?1")?.execute([id])?;
    // Both places a state can be, or a state not yet folded would come back with the log.
    conn.prepare_cached("DELETE FROM ingest_state WHERE thing = ?1")?.execute([name])?;
    conn.prepare_cached("DELETE FROM ingest_log WHERE thing = ?1")?.execute([name])?;
    Ok(())
}

pub(crate) fn list_things(
    conn: &Connection,
    filter: &ThingFilter,
    cursor: Option<String>,
    limit: usize,
) -> Result<Page<Thing>> {
    let cursor = cursor.unwrap_or_default();
    let mut stmt = conn.prepare_cached(
        "SELECT t.id, t.name, t.thing_id, t.version, t.created_at_ms FROM things t
         WHERE t.name > ?1
           AND (?2 IS NULL OR EXISTS (
                SELECT 1 FROM thing_attributes a
                WHERE a.thing = t.id AND a.name = ?2 AND (?3 IS NULL OR a.value = ?3)))
         ORDER BY t.name LIMIT ?4",
    )?;
    let mut rows = stmt.query(params![cursor, filter.attribute_name, filter.attribute_value, limit + 1])?;
    let mut things = Vec::new();
    while let Some(row) = rows.next()? {
        things.push(thing_from_row(conn, row)?);
    }
    Ok(Page::from_rows(things, limit, |t| t.name.clone()))
}

// ---------------------------------------------------------------------------------------------
// Thing groups

/// The internal id and version of a group, or `NotFound`.
fn group_key(conn: &Connection, name: &str) -> Result<(i64, u64)> {
    conn.prepare_cached("SELECT id, version FROM thing_groups WHERE name = ?1")?
        .query_row([name], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?
        .ok_or_else(|| StoreError::not_found(ResourceKind::ThingGroup, name))
}

/// The names of a group's ancestors, root first. `UNION` (not `UNION ALL`) and the depth bound
/// keep the walk finite even if the forest invariant were ever broken by hand.
fn root_to_parent(conn: &Connection, group: i64) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "WITH RECURSIVE up(id, depth) AS (
             SELECT parent, 1 FROM thing_groups WHERE id = ?1 AND parent IS NOT NULL
             UNION
             SELECT g.parent, up.depth + 1 FROM thing_groups g JOIN up ON g.id = up.id
             WHERE g.parent IS NOT NULL AND up.depth < 64)
         SELECT g.name FROM up JOIN thing_groups g ON g.id = up.id ORDER BY up.depth DESC",
    )?;
    let rows = stmt.query_map([group], |row| row.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

fn parse_json_attributes(text: &str) -> Result<BTreeMap<String, String>> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Database(format!("corrupt thing group attributes: {e}")))
}

fn to_json_attributes(attributes: &BTreeMap<String, String>) -> Result<String> {
    serde_json::to_string(attributes)
        .map_err(|e| StoreError::Database(format!("cannot encode attributes: {e}")))
}

pub(crate) fn describe_thing_group(conn: &Connection, name: &str) -> Result<ThingGroup> {
    let row = conn
        .prepare_cached(
            "SELECT g.id, g.name, g.group_id, p.name, g.description, g.attributes, g.version,
                    g.created_at_ms
             FROM thing_groups g LEFT JOIN thing_groups p ON p.id = g.parent
             WHERE g.name = ?1",
        )?
        .query_row([name], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                ThingGroup {
                    name: row.get(1)?,
                    id: row.get(2)?,
                    parent: row.get(3)?,
                    root_to_parent: Vec::new(),
                    description: row.get(4)?,
                    attributes: BTreeMap::new(),
                    version: row.get(6)?,
                    created_at_ms: row.get(7)?,
                },
                row.get::<_, String>(5)?,
            ))
        })
        .optional()?;
    let Some((id, mut group, attributes)) = row else {
        return Err(StoreError::not_found(ResourceKind::ThingGroup, name));
    };
    group.attributes = parse_json_attributes(&attributes)?;
    group.root_to_parent = root_to_parent(conn, id)?;
    Ok(group)
}

pub(crate) fn create_thing_group(
    conn: &Connection,
    group: &NewThingGroup,
    id: &str,
    now_ms: i64,
) -> Result<ThingGroup> {
    if exists(group_key(conn, &group.name))? {
        return Err(StoreError::already_exists(ResourceKind::ThingGroup, &group.name));
    }
    let parent = match &group.parent {
        Some(parent) => Some(group_key(conn, parent)?.0),
        None => None,
    };
    conn.prepare_cached(
        "INSERT INTO thing_groups
             (name, group_id, parent, description, attributes, version, created_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6)",
    )?
    .execute(params![
        group.name,
        id,
        parent,
        group.description.as_deref().filter(|d| !d.is_empty()),
        to_json_attributes(&group.attributes)?,
        now_ms
    ])?;
    describe_thing_group(conn, &group.name)
}

pub(crate) fn update_thing_group(
    conn: &Connection,
    name: &str,
    update: ThingGroupUpdate,
    expected_version: Option<u64>,
) -> Result<ThingGroup> {
    let current = describe_thing_group(conn, name)?;
    check_version(ResourceKind::ThingGroup, name, expected_version, current.version)?;
    let description = match update.description {
        Some(d) if d.is_empty() => None,
        Some(d) => Some(d),
        None => current.description,
    };
    let mut attributes = current.attributes;
    if let Some(change) = update.attributes {
        apply_attributes(&mut attributes, change);
    }
    conn.prepare_cached(
        "UPDATE thing_groups SET description = ?2, attributes = ?3, version = version + 1
         WHERE name = ?1",
    )?
    .execute(params![name, description, to_json_attributes(&attributes)?])?;
    describe_thing_group(conn, name)
}

pub(crate) fn delete_thing_group(conn: &Connection, name: &str, expected_version: Option<u64>) -> Result<()> {
    let (id, version) = group_key(conn, name)?;
    check_version(ResourceKind::ThingGroup, name, expected_version, version)?;
    let children: i64 = conn
        .prepare_cached("SELECT count(*) FROM thing_groups WHERE parent = ?1")?
        .query_row([id], |row| row.get(0))?;
    if children > 0 {
        return Err(StoreError::Conflict(format!(
            "thing group {name} has {children} child group(s); delete them first"
        )));
    }
    // Memberships go with the row (ON DELETE CASCADE).
    conn.prepare_cached("DELETE FROM thing_groups WHERE id = ?1")?.execute([id])?;
    Ok(())
}

pub(crate) fn list_thing_groups(
    conn: &Connection,
    filter: &ThingGroupFilter,
    cursor: Option<String>,
    limit: usize,
) -> Result<Page<ThingGroup>> {
    let parent = match &filter.parent {
        Some(parent) => Some(group_key(conn, parent)?.0),
        None => None,
    };
    let (children_of, descendants_of) = if filter.recursive { (None, parent) } else { (parent, None) };
    let names = string_page(
        conn,
        "WITH RECURSIVE below(id) AS (
             SELECT id FROM thing_groups WHERE parent = ?3
             UNION
             SELECT g.id FROM thing_groups g JOIN below ON g.parent = below.id)
         SELECT g.name FROM thing_groups g
         WHERE (?1 IS NULL OR substr(g.name, 1, length(?1)) = ?1)
           AND (?2 IS NULL OR g.parent = ?2)
           AND (?3 IS NULL OR g.id IN below)
           AND g.name > ?4
         ORDER BY g.name LIMIT ?5",
        &[&filter.name_prefix, &children_of, &descendants_of],
        cursor,
        limit,
    )?;
    let next_token = names.next_token;
    let items = names.items.iter().map(|name| describe_thing_group(conn, name)).collect::<Result<_>>()?;
    Ok(Page { items, next_token })
}

pub(crate) fn add_thing_to_group(conn: &Connection, group: &str, thing: &str) -> Result<()> {
    let (group, _) = group_key(conn, group)?;
    let (thing, _) = thing_key(conn, thing)?;
    conn.prepare_cached("INSERT OR IGNORE INTO thing_group_members (thing_group, thing) VALUES (?1, ?2)")?
        .execute([group, thing])?;
    Ok(())
}

pub(crate) fn remove_thing_from_group(conn: &Connection, group: &str, thing: &str) -> Result<()> {
    let (group, _) = group_key(conn, group)?;
    let (thing, _) = thing_key(conn, thing)?;
    conn.prepare_cached("DELETE FROM thing_group_members WHERE thing_group = ?1 AND thing = ?2")?
        .execute([group, thing])?;
    Ok(())
}

pub(crate) fn list_things_in_group(
    conn: &Connection,
    group: &str,
    recursive: bool,
    cursor: Option<String>,
    limit: usize,
) -> Result<Page<String>> {
    let (group, _) = group_key(conn, group)?;
    string_page(
        conn,
        "WITH RECURSIVE scope(id) AS (
             SELECT ?1
             UNION
             SELECT g.id FROM thing_groups g JOIN scope ON g.parent = scope.id WHERE ?2)
         SELECT DISTINCT t.name FROM thing_group_members m JOIN things t ON t.id = m.thing
         WHERE m.thing_group IN scope AND t.name > ?3
         ORDER BY t.name LIMIT ?4",
        &[&group, &recursive],
        cursor,
        limit,
    )
}

pub(crate) fn list_groups_for_thing(
    conn: &Connection,
    thing: &str,
    cursor: Option<String>,
    limit: usize,
) -> Result<Page<String>> {
    let (thing, _) = thing_key(conn, thing)?;
    string_page(
        conn,
        "SELECT g.name FROM thing_group_members m JOIN thing_groups g ON g.id = m.thing_group
         WHERE m.thing = ?1 AND g.name > ?2
         ORDER BY g.name LIMIT ?3",
        &[&thing],
        cursor,
        limit,
    )
}

pub(crate) fn effective_groups_for_thing(conn: &Connection, thing: &str) -> Result<Vec<String>> {
    let (thing, _) = thing_key(conn, thing)?;
    let mut stmt = conn.prepare_cached(
        "WITH RECURSIVE up(id) AS (
             SELECT thing_group FROM thing_group_members WHERE thing = ?1
             UNION
             SELECT g.parent FROM thing_groups g JOIN up ON g.id = up.id
             WHERE g.parent IS NOT NULL)
         SELECT g.name FROM thing_groups g WHERE g.id IN up ORDER BY g.name",
    )?;
    let rows = stmt.query_map([thing], |row| row.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

// ---------------------------------------------------------------------------------------------
// Certificates

const CERTIFICATE_COLUMNS: &str = "certificate_id, pem, status, ca_certificate_id, subject_cn, \
                                   created_at_ms, last_modified_ms";

fn certificate_from_row(row: &Row<'_>) -> rusqlite::Result<Certificate> {
    let status: String = row.get(2)?;
    Ok(Certificate {
        certificate_id: row.get(0)?,
        pem: row.get(1)?,
        status: status.parse().map_err(|e: StoreError| {
            rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, e.into())
        })?,
        ca_certificate_id: row.get(3)?,
        subject_cn: row.get(4)?,
        created_at_ms: row.get(5)?,
        last_modified_ms: row.get(6)?,
    })
}

fn certificate_key(conn: &Connection, certificate_id: &str) -> Result<i64> {
    conn.prepare_cached("SELECT id FROM certificates WHERE certificate_id = ?1")?
        .query_row([certificate_id], |row| row.get(0))
        .optional()?
        .ok_or_else(|| StoreError::not_found(ResourceKind::Certificate, certificate_id))
}

pub(crate) fn describe_certificate(conn: &Connection, certificate_id: &str) -> Result<Certificate> {
    conn.prepare_cached(&format!("SELECT {CERTIFICATE_COLUMNS} FROM certificates WHERE certificate_id = ?1"))?
        .query_row([certificate_id], certificate_from_row)
        .optional()?
        .ok_or_else(|| StoreError::not_found(ResourceKind::Certificate, certificate_id))
}

pub(crate) fn create_certificate(conn: &Connection, cert: &NewCertificate) -> Result<Certificate> {
    if exists(certificate_key(conn, &cert.certificate_id))? {
        return Err(StoreError::already_exists(ResourceKind::Certificate, &cert.certificate_id));
    }
    conn.prepare_cached(&format!(
        "INSERT INTO certificates ({CERTIFICATE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)"
    ))?
    .execute(params![
        cert.certificate_id,
        cert.pem,
        cert.status.as_str(),
        cert.ca_certificate_id,
        cert.subject_cn,
        cert.created_at_ms
    ])?;
    describe_certificate(conn, &cert.certificate_id)
}

pub(crate) fn update_certificate_status(
    conn: &Connection,
    certificate_id: &str,
    status: CertificateStatus,
    now_ms: i64,
) -> Result<Certificate> {
    let current = describe_certificate(conn, certificate_id)?;
    if status == CertificateStatus::PendingActivation {
        return Err(StoreError::InvalidState(
            "PENDING_ACTIVATION is set only when a certificate is registered".into(),
        ));
    }
    if current.status == CertificateStatus::Revoked && status != CertificateStatus::Revoked {
        return Err(StoreError::InvalidState(format!(
            "certificate {certificate_id} is REVOKED and cannot become {status}"
        )));
    }
    conn.prepare_cached(
        "UPDATE certificates SET status = ?2, last_modified_ms = ?3 WHERE certificate_id = ?1",
    )?
    .execute(params![certificate_id, status.as_str(), now_ms])?;
    describe_certificate(conn, certificate_id)
}

pub(crate) fn delete_certificate(conn: &Connection, certificate_id: &str, policy_target: &str) -> Result<()> {
    let current = describe_certificate(conn, certificate_id)?;
    if current.status == CertificateStatus::Active {
        return Err(StoreError::InvalidState(format!(
            "certificate {certificate_id} is ACTIVE; deactivate or revoke it before deleting it"
        )));
    }
    let id = certificate_key(conn, certificate_id)?;
    let things: i64 = conn
        .prepare_cached("SELECT count(*) FROM thing_principals WHERE certificate = ?1")?
        .query_row([id], |row| row.get(0))?;
    if things > 0 {
        return Err(StoreError::Conflict(format!(
            "certificate {certificate_id} is attached to {things} thing(s); detach it first"
        )));
    }
    let policies: i64 = conn
        .prepare_cached("SELECT count(*) FROM policy_targets WHERE target = ?1")?
        .query_row([policy_target], |row| row.get(0))?;
    if policies > 0 {
        return Err(StoreError::Conflict(format!(
            "certificate {certificate_id} has {policies} attached polic(ies); detach them first"
        )));
    }
    conn.prepare_cached("DELETE FROM certificates WHERE id = ?1")?.execute([id])?;
    Ok(())
}

pub(crate) fn list_certificates(
    conn: &Connection,
    cursor: Option<String>,
    limit: usize,
) -> Result<Page<Certificate>> {
    // The key is `created_at_ms:certificate_id`; ids are hex, so the first ':' splits it.
    let (after_ms, after_id) = match cursor {
        None => (i64::MIN, String::new()),
        Some(key) => key
            .split_once(':')
            .and_then(|(ms, id)| Some((ms.parse::<i64>().ok()?, id.to_owned())))
            .ok_or_else(|| StoreError::invalid("malformed next_token"))?,
    };
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {CERTIFICATE_COLUMNS} FROM certificates
         WHERE (created_at_ms, certificate_id) > (?1, ?2)
         ORDER BY created_at_ms, certificate_id LIMIT ?3"
    ))?;
    let rows = stmt
        .query_map(params![after_ms, after_id, limit + 1], certificate_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Page::from_rows(rows, limit, |c| format!("{}:{}", c.created_at_ms, c.certificate_id)))
}

pub(crate) fn attach_thing_principal(conn: &Connection, thing: &str, certificate_id: &str) -> Result<()> {
    let (thing, _) = thing_key(conn, thing)?;
    let certificate = certificate_key(conn, certificate_id)?;
    conn.prepare_cached("INSERT OR IGNORE INTO thing_principals (thing, certificate) VALUES (?1, ?2)")?
        .execute([thing, certificate])?;
    Ok(())
}

pub(crate) fn detach_thing_principal(conn: &Connection, thing: &str, certificate_id: &str) -> Result<()> {
    let (thing, _) = thing_key(conn, thing)?;
    let certificate = certificate_key(conn, certificate_id)?;
    conn.prepare_cached("DELETE FROM thing_principals WHERE thing = ?1 AND certificate = ?2")?
        .execute([thing, certificate])?;
    Ok(())
}

pub(crate) fn list_thing_principals(
    conn: &Connection,
    thing: &str,
    cursor: Option<String>,
    limit: usize,
) -> Result<Page<String>> {
    let (thing, _) = thing_key(conn, thing)?;
    string_page(
        conn,
        "SELECT c.certificate_id FROM thing_principals p JOIN certificates c ON c.id = p.certificate
         WHERE p.thing = ?1 AND c.certificate_id > ?2
         ORDER BY c.certificate_id LIMIT ?3",
        &[&thing],
        cursor,
        limit,
    )
}

pub(crate) fn list_principal_things(
    conn: &Connection,
    certificate_id: &str,
    cursor: Option<String>,
    limit: usize,
) -> Result<Page<String>> {
    let certificate = certificate_key(conn, certificate_id)?;
    string_page(
        conn,
        "SELECT t.name FROM thing_principals p JOIN things t ON t.id = p.thing
         WHERE p.certificate = ?1 AND t.name > ?2
         ORDER BY t.name LIMIT ?3",
        &[&certificate],
        cursor,
        limit,
    )
}

// ---------------------------------------------------------------------------------------------
// Policies

const POLICY_COLUMNS: &str = "p.name, p.document, p.default_version_id, p.created_at_ms, p.last_modified_ms";

fn policy_from_row(row: &Row<'_>) -> rusqlite::Result<Policy> {
    Ok(Policy {
        name: row.get(0)?,
        document: row.get(1)?,
        default_version_id: row.get(2)?,
        created_at_ms: row.get(3)?,
        last_modified_ms: row.get(4)?,
    })
}

fn policy_key(conn: &Connection, name: &str) -> Result<i64> {
    conn.prepare_cached("SELECT id FROM policies WHERE name = ?1")?
        .query_row([name], |row| row.get(0))
        .optional()?
        .ok_or_else(|| StoreError::not_found(ResourceKind::Policy, name))
}

pub(crate) fn get_policy(conn: &Connection, name: &str) -> Result<Policy> {
    conn.prepare_cached(&format!("SELECT {POLICY_COLUMNS} FROM policies p WHERE p.name = ?1"))?
        .query_row([name], policy_from_row)
        .optional()?
        .ok_or_else(|| StoreError::not_found(ResourceKind::Policy, name))
}

pub(crate) fn create_policy(conn: &Connection, name: &str, document: &str, now_ms: i64) -> Result<Policy> {
    if exists(policy_key(conn, name))? {
        return Err(StoreError::already_exists(ResourceKind::Policy, name));
    }
    conn.prepare_cached(
        "INSERT INTO policies (name, document, default_version_id, created_at_ms, last_modified_ms)
         VALUES (?1, ?2, ?3, ?4, ?4)",
    )?
    .execute(params![name, document, DEFAULT_POLICY_VERSION_ID, now_ms])?;
    get_policy(conn, name)
}

pub(crate) fn delete_policy(conn: &Connection, name: &str) -> Result<()> {
    let id = policy_key(conn, name)?;
    let targets: i64 = conn
        .prepare_cached("SELECT count(*) FROM policy_targets WHERE policy = ?1")?
        .query_row([id], |row| row.get(0))?;
    if targets > 0 {
        return Err(StoreError::Conflict(format!(
            "policy {name} is attached to {targets} target(s); detach it first"
        )));
    }
    conn.prepare_cached("DELETE FROM policies WHERE id = ?1")?.execute([id])?;
    Ok(())
}

pub(crate) fn list_policies(conn: &Connection, cursor: Option<String>, limit: usize) -> Result<Page<Policy>> {
    let cursor = cursor.unwrap_or_default();
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {POLICY_COLUMNS} FROM policies p WHERE p.name > ?1 ORDER BY p.name LIMIT ?2"
    ))?;
    let rows =
        stmt.query_map(params![cursor, limit + 1], policy_from_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Page::from_rows(rows, limit, |p| p.name.clone()))
}

pub(crate) fn attach_policy(conn: &Connection, policy: &str, target: &str) -> Result<()> {
    let policy = policy_key(conn, policy)?;
    conn.prepare_cached("INSERT OR IGNORE INTO policy_targets (policy, target) VALUES (?1, ?2)")?
        .execute(params![policy, target])?;
    Ok(())
}

pub(crate) fn detach_policy(conn: &Connection, policy: &str, target: &str) -> Result<()> {
    let policy = policy_key(conn, policy)?;
    conn.prepare_cached("DELETE FROM policy_targets WHERE policy = ?1 AND target = ?2")?
        .execute(params![policy, target])?;
    Ok(())
}

pub(crate) fn list_attached_policies(
    conn: &Connection,
    target: &str,
    cursor: Option<String>,
    limit: usize,
) -> Result<Page<String>> {
    string_page(
        conn,
        "SELECT p.name FROM policy_targets t JOIN policies p ON p.id = t.policy
         WHERE t.target = ?1 AND p.name > ?2
         ORDER BY p.name LIMIT ?3",
        &[&target],
        cursor,
        limit,
    )
}

pub(crate) fn list_targets_for_policy(
    conn: &Connection,
    policy: &str,
    cursor: Option<String>,
    limit: usize,
) -> Result<Page<String>> {
    let policy = policy_key(conn, policy)?;
    string_page(
        conn,
        "SELECT target FROM policy_targets WHERE policy = ?1 AND target > ?2
         ORDER BY target LIMIT ?3",
        &[&policy],
        cursor,
        limit,
    )
}

pub(crate) fn policies_for_targets(conn: &Connection, targets: &[String]) -> Result<Vec<Policy>> {
    // The targets travel as one JSON array so that one cached statement serves any number.
    let targets = serde_json::to_string(targets)
        .map_err(|e| StoreError::Database(format!("cannot encode targets: {e}")))?;
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {POLICY_COLUMNS} FROM policies p
         WHERE p.id IN (SELECT t.policy FROM policy_targets t
                        WHERE t.target IN (SELECT value FROM json_each(?1)))
         ORDER BY p.name"
    ))?;
    let rows = stmt.query_map([targets], policy_from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

// ---------------------------------------------------------------------------------------------
// Bulk reads (`RegistryBulk`): one statement per relation, for a reader that mirrors the registry

pub(crate) fn certificates_after(conn: &Connection, after: &str, limit: usize) -> Result<Vec<Certificate>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {CERTIFICATE_COLUMNS} FROM certificates
         WHERE certificate_id > ?1 ORDER BY certificate_id LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![after, limit], certificate_from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The rows of a two-column statement without parameters.
fn pairs<A: rusqlite::types::FromSql, B: rusqlite::types::FromSql>(
    conn: &Connection,
    sql: &str,
) -> Result<Vec<(A, B)>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub(crate) fn all_thing_principals(conn: &Connection) -> Result<Vec<(String, String)>> {
    pairs(
        conn,
        "SELECT c.certificate_id, t.name FROM thing_principals p
         JOIN certificates c ON c.id = p.certificate JOIN things t ON t.id = p.thing",
    )
}

pub(crate) fn all_thing_group_parents(conn: &Connection) -> Result<Vec<(String, Option<String>)>> {
    pairs(conn, "SELECT g.name, p.name FROM thing_groups g LEFT JOIN thing_groups p ON p.id = g.parent")
}

pub(crate) fn all_thing_group_members(conn: &Connection) -> Result<Vec<(String, String)>> {
    pairs(
        conn,
        "SELECT t.name, g.name FROM thing_group_members m
         JOIN things t ON t.id = m.thing JOIN thing_groups g ON g.id = m.thing_group",
    )
}

pub(crate) fn all_policy_targets(conn: &Connection) -> Result<Vec<(String, String)>> {
    pairs(conn, "SELECT p.name, t.target FROM policy_targets t JOIN policies p ON p.id = t.policy")
}

#[async_trait::async_trait]
impl RegistryBulk for SqliteStore {
    async fn certificates_after(&self, after: &str, limit: usize) -> Result<Vec<Certificate>> {
        if limit == 0 {
            return Err(StoreError::invalid("limit must be at least 1"));
        }
        let after = after.to_owned();
        self.read(move |tx| certificates_after(tx, &after, limit)).await
    }

    async fn all_thing_principals(&self) -> Result<Vec<(String, String)>> {
        self.read(|tx| all_thing_principals(tx)).await
    }

    async fn all_thing_group_parents(&self) -> Result<Vec<(String, Option<String>)>> {
        self.read(|tx| all_thing_group_parents(tx)).await
    }

    async fn all_thing_group_members(&self) -> Result<Vec<(String, String)>> {
        self.read(|tx| all_thing_group_members(tx)).await
    }

    async fn all_policy_targets(&self) -> Result<Vec<(String, String)>> {
        self.read(|tx| all_policy_targets(tx)).await
    }
}
