//! Violation statements: the active set, the event history, and verification states.
//!
//! The active set follows the events (see `ViolationChange`): an `in-alarm` event inserts the
//! active row, an `alarm-cleared` or `alarm-invalidated` event deletes it, and the history row
//! is appended in the same savepoint, so the two never disagree. A violation's verification
//! state is copied onto each new event from the violation's active row or latest event: it is
//! the store's, never the engine's, so a state set through the API survives later events.

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::sql::{Conditions, enum_column, fetch, key_parts, time_key};
use crate::defender::{
    ActiveViolation, ActiveViolationFilter, ActiveViolationUpdate, NewViolationEvent, VerificationState,
    ViolationChange, ViolationEvent, ViolationEventFilter, ViolationEventType,
};
use crate::error::{ResourceKind, Result, StoreError};
use crate::page::Page;

const ACTIVE_COLUMNS: &str = "violation_id, thing, security_profile, behavior, behavior_json, \
                              last_violation_value, violation_start_ms, last_violation_ms, suppress_alerts, \
                              verification_state, verification_description";

const EVENT_COLUMNS: &str = "violation_id, event_type, thing, security_profile, behavior, behavior_json, \
                             metric_value, event_time_ms, suppress_alerts, verification_state, \
                             verification_description";

fn active_from_row(row: &Row<'_>) -> rusqlite::Result<ActiveViolation> {
    Ok(ActiveViolation {
        violation_id: row.get(0)?,
        thing: row.get(1)?,
        security_profile: row.get(2)?,
        behavior: row.get(3)?,
        behavior_json: row.get(4)?,
        last_violation_value: row.get(5)?,
        violation_start_ms: row.get(6)?,
        last_violation_ms: row.get(7)?,
        suppress_alerts: row.get(8)?,
        verification_state: enum_column(row, 9)?,
        verification_description: row.get(10)?,
    })
}

fn event_from_row(row: &Row<'_>) -> rusqlite::Result<ViolationEvent> {
    Ok(ViolationEvent {
        violation_id: row.get(0)?,
        event_type: enum_column(row, 1)?,
        thing: row.get(2)?,
        security_profile: row.get(3)?,
        behavior: row.get(4)?,
        behavior_json: row.get(5)?,
        metric_value: row.get(6)?,
        event_time_ms: row.get(7)?,
        suppress_alerts: row.get(8)?,
        verification_state: enum_column(row, 9)?,
        verification_description: row.get(10)?,
    })
}

// ---------------------------------------------------------------------------------------------
// Writes

pub(crate) fn record(conn: &Connection, changes: &[ViolationChange]) -> Result<()> {
    for change in changes {
        match change {
            ViolationChange::Event(event) => record_event(conn, event)?,
            ViolationChange::Update(update) => update_active(conn, update)?,
        }
    }
    Ok(())
}

/// The violation's verification state: from its active row, else its latest event, else new.
fn verification_of(conn: &Connection, violation_id: &str) -> Result<(VerificationState, Option<String>)> {
    let read = |row: &Row<'_>| Ok((enum_column(row, 0)?, row.get(1)?));
    let active = conn
        .prepare_cached(
            "SELECT verification_state, verification_description FROM active_violations
             WHERE violation_id = ?1",
        )?
        .query_row([violation_id], read)
        .optional()?;
    if let Some(state) = active {
        return Ok(state);
    }
    let latest = conn
        .prepare_cached(
            "SELECT verification_state, verification_description FROM violation_events
             WHERE violation_id = ?1 ORDER BY id DESC LIMIT 1",
        )?
        .query_row([violation_id], read)
        .optional()?;
    Ok(latest.unwrap_or_default())
}

fn record_event(conn: &Connection, event: &NewViolationEvent) -> Result<()> {
    let (state, description) = verification_of(conn, &event.violation_id)?;
    match event.event_type {
        ViolationEventType::InAlarm => {
            let holder: Option<String> = conn
                .prepare_cached(
                    "SELECT violation_id FROM active_violations
                     WHERE violation_id = ?1 OR (thing = ?2 AND security_profile = ?3 AND behavior = ?4)",
                )?
                .query_row(
                    params![event.violation_id, event.thing, event.security_profile, event.behavior],
                    |row| row.get(0),
                )
                .optional()?;
            if let Some(holder) = holder {
                return Err(StoreError::Conflict(if holder == event.violation_id {
                    format!("violation {holder} is already in alarm")
                } else {
                    format!(
                        "thing {} is already in alarm for behavior {} of security profile {} \
                         (violation {holder})",
                        event.thing, event.behavior, event.security_profile
                    )
                }));
            }
            conn.prepare_cached(&format!(
                "INSERT INTO active_violations ({ACTIVE_COLUMNS})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8, ?9, ?10)"
            ))?
            .execute(params![
                event.violation_id,
                event.thing,
                event.security_profile,
                event.behavior,
                event.behavior_json,
                event.metric_value,
                event.event_time_ms,
                event.suppress_alerts,
                state.as_str(),
                description,
            ])?;
        }
        ViolationEventType::AlarmCleared | ViolationEventType::AlarmInvalidated => {
            conn.prepare_cached("DELETE FROM active_violations WHERE violation_id = ?1")?
                .execute([&event.violation_id])?;
        }
    }
    conn.prepare_cached(&format!(
        "INSERT INTO violation_events ({EVENT_COLUMNS})
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
    ))?
    .execute(params![
        event.violation_id,
        event.event_type.as_str(),
        event.thing,
        event.security_profile,
        event.behavior,
        event.behavior_json,
        event.metric_value,
        event.event_time_ms,
        event.suppress_alerts,
        state.as_str(),
        description,
    ])?;
    Ok(())
}

fn update_active(conn: &Connection, update: &ActiveViolationUpdate) -> Result<()> {
    let changed = conn
        .prepare_cached(
            "UPDATE active_violations
             SET behavior_json = ?2, last_violation_value = ?3, last_violation_ms = ?4, suppress_alerts = ?5
             WHERE violation_id = ?1",
        )?
        .execute(params![
            update.violation_id,
            update.behavior_json,
            update.last_violation_value,
            update.last_violation_ms,
            update.suppress_alerts,
        ])?;
    if changed == 0 {
        return Err(StoreError::not_found(ResourceKind::Violation, &update.violation_id));
    }
    Ok(())
}

pub(crate) fn put_verification_state(
    conn: &Connection,
    violation_id: &str,
    state: VerificationState,
    description: Option<&str>,
) -> Result<()> {
    let active = conn
        .prepare_cached(
            "UPDATE active_violations SET verification_state = ?2, verification_description = ?3
             WHERE violation_id = ?1",
        )?
        .execute(params![violation_id, state.as_str(), description])?;
    let events = conn
        .prepare_cached(
            "UPDATE violation_events SET verification_state = ?2, verification_description = ?3
             WHERE violation_id = ?1",
        )?
        .execute(params![violation_id, state.as_str(), description])?;
    if active + events == 0 {
        return Err(StoreError::not_found(ResourceKind::Violation, violation_id));
    }
    Ok(())
}

pub(crate) fn drop_events_before(conn: &Connection, before_ms: i64) -> Result<u64> {
    let dropped =
        conn.prepare_cached("DELETE FROM violation_events WHERE event_time_ms < ?1")?.execute([before_ms])?;
    Ok(u64::try_from(dropped).unwrap_or(u64::MAX))
}

// ---------------------------------------------------------------------------------------------
// Reads

pub(crate) fn describe_active(conn: &Connection, violation_id: &str) -> Result<ActiveViolation> {
    conn.prepare_cached(&format!("SELECT {ACTIVE_COLUMNS} FROM active_violations WHERE violation_id = ?1"))?
        .query_row([violation_id], active_from_row)
        .optional()?
        .ok_or_else(|| StoreError::not_found(ResourceKind::Violation, violation_id))
}

/// Filters shared by both lists.
fn common_conditions(
    thing: &Option<String>,
    security_profile: &Option<String>,
    behavior: &Option<String>,
    suppressed: Option<bool>,
    state: Option<VerificationState>,
) -> Conditions {
    let mut conditions = Conditions::default();
    conditions.equal("thing", thing.clone());
    conditions.equal("security_profile", security_profile.clone());
    conditions.equal("behavior", behavior.clone());
    conditions.equal("suppress_alerts", suppressed.map(i64::from));
    conditions.equal("verification_state", state.map(|s| s.as_str().to_owned()));
    conditions
}

pub(crate) fn list_active(
    conn: &Connection,
    filter: &ActiveViolationFilter,
    cursor: Option<String>,
    limit: usize,
) -> Result<Page<ActiveViolation>> {
    let mut conditions = common_conditions(
        &filter.thing,
        &filter.security_profile,
        &filter.behavior,
        filter.suppressed,
        filter.verification_state,
    );
    // The key is `thing/profile/behavior`: none of the three names can contain a '/'.
    if let Some(key) = &cursor {
        let parts = key_parts(key, '/', 3)?;
        conditions.push(
            "(thing, security_profile, behavior) > (?, ?, ?)",
            parts.into_iter().map(|p| Value::Text(p.to_owned())),
        );
    }
    let rows = conditions.query(
        conn,
        &format!("{ACTIVE_COLUMNS} FROM active_violations"),
        "ORDER BY thing, security_profile, behavior LIMIT ?",
        [Value::Integer(fetch(limit))],
        active_from_row,
    )?;
    Ok(Page::from_rows(rows, limit, |v| format!("{}/{}/{}", v.thing, v.security_profile, v.behavior)))
}

pub(crate) fn list_events(
    conn: &Connection,
    filter: &ViolationEventFilter,
    cursor: Option<String>,
    limit: usize,
) -> Result<Page<ViolationEvent>> {
    let mut conditions = common_conditions(
        &filter.thing,
        &filter.security_profile,
        &filter.behavior,
        filter.suppressed,
        filter.verification_state,
    );
    conditions.equal("violation_id", filter.violation_id.clone());
    conditions
        .push("event_time_ms >= ? AND event_time_ms < ?", [filter.start_ms.into(), filter.end_ms.into()]);
    let (after_ms, after_id) = time_key(cursor)?;
    conditions.push("(event_time_ms, id) > (?, ?)", [after_ms.into(), after_id.into()]);
    let rows = conditions.query(
        conn,
        &format!("{EVENT_COLUMNS}, id FROM violation_events"),
        "ORDER BY event_time_ms, id LIMIT ?",
        [Value::Integer(fetch(limit))],
        |row| Ok((row.get::<_, i64>(11)?, event_from_row(row)?)),
    )?;
    let page = Page::from_rows(rows, limit, |(id, e)| format!("{}:{id}", e.event_time_ms));
    Ok(page.map(|(_, event)| event))
}
