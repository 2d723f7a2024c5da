//! Alert topic statements: topics, their subscriptions, and delivery counters.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::sql::{enum_column, exists, fetch};
use crate::defender::{AlertSubscription, AlertTopic, SubscriptionProtocol};
use crate::error::{ResourceKind, Result, StoreError};
use crate::page::Page;

// ---------------------------------------------------------------------------------------------
// Topics

fn topic_key(conn: &Connection, name: &str) -> Result<i64> {
    conn.prepare_cached("SELECT id FROM alert_topics WHERE name = ?1")?
        .query_row([name], |row| row.get(0))
        .optional()?
        .ok_or_else(|| StoreError::not_found(ResourceKind::AlertTopic, name))
}

pub(crate) fn describe_topic(conn: &Connection, name: &str) -> Result<AlertTopic> {
    conn.prepare_cached("SELECT name, created_at_ms FROM alert_topics WHERE name = ?1")?
        .query_row([name], |row| Ok(AlertTopic { name: row.get(0)?, created_at_ms: row.get(1)? }))
        .optional()?
        .ok_or_else(|| StoreError::not_found(ResourceKind::AlertTopic, name))
}

pub(crate) fn create_topic(conn: &Connection, name: &str, now_ms: i64) -> Result<AlertTopic> {
    if exists(topic_key(conn, name))? {
        return Err(StoreError::already_exists(ResourceKind::AlertTopic, name));
    }
    conn.prepare_cached("INSERT INTO alert_topics (name, created_at_ms) VALUES (?1, ?2)")?
        .execute(params![name, now_ms])?;
    describe_topic(conn, name)
}

pub(crate) fn delete_topic(conn: &Connection, name: &str) -> Result<()> {
    // Subscriptions go with the row (ON DELETE CASCADE).
    match conn.prepare_cached("DELETE FROM alert_topics WHERE name = ?1")?.execute([name])? {
        0 => Err(StoreError::not_found(ResourceKind::AlertTopic, name)),
        _ => Ok(()),
    }
}

pub(crate) fn list_topics(
    conn: &Connection,
    cursor: Option<String>,
    limit: usize,
) -> Result<Page<AlertTopic>> {
    let cursor = cursor.unwrap_or_default();
    let mut stmt = conn.prepare_cached(
        "SELECT name, created_at_ms FROM alert_topics WHERE name > ?1 ORDER BY name LIMIT ?2",
    )?;
    let rows = stmt
        .query_map(params![cursor, fetch(limit)], |row| {
            Ok(AlertTopic { name: row.get(0)?, created_at_ms: row.get(1)? })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Page::from_rows(rows, limit, |t| t.name.clone()))
}

// ---------------------------------------------------------------------------------------------
// Subscriptions

const SUBSCRIPTION_COLUMNS: &str = "s.subscription_id, t.name, s.protocol, s.endpoint, s.created_at_ms, \
                                    s.delivered, s.failed, s.last_error, s.last_attempt_ms";

fn subscription_from_row(row: &Row<'_>) -> rusqlite::Result<AlertSubscription> {
    Ok(AlertSubscription {
        subscription_id: row.get(0)?,
        topic: row.get(1)?,
        protocol: enum_column(row, 2)?,
        endpoint: row.get(3)?,
        created_at_ms: row.get(4)?,
        delivered: row.get(5)?,
        failed: row.get(6)?,
        last_error: row.get(7)?,
        last_attempt_ms: row.get(8)?,
    })
}

fn find_subscription(
    conn: &Connection,
    topic: i64,
    protocol: SubscriptionProtocol,
    endpoint: &str,
) -> Result<Option<AlertSubscription>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {SUBSCRIPTION_COLUMNS}
             FROM alert_subscriptions s JOIN alert_topics t ON t.id = s.topic
             WHERE s.topic = ?1 AND s.protocol = ?2 AND s.endpoint = ?3"
        ))?
        .query_row(params![topic, protocol.as_str(), endpoint], subscription_from_row)
        .optional()?)
}

pub(crate) fn subscribe(
    conn: &Connection,
    topic: &str,
    protocol: SubscriptionProtocol,
    endpoint: &str,
    id: &str,
    now_ms: i64,
) -> Result<AlertSubscription> {
    let topic = topic_key(conn, topic)?;
    if let Some(existing) = find_subscription(conn, topic, protocol, endpoint)? {
        return Ok(existing);
    }
    conn.prepare_cached(
        "INSERT INTO alert_subscriptions
             (subscription_id, topic, protocol, endpoint, created_at_ms, delivered, failed)
         VALUES (?1, ?2, ?3, ?4, ?5, 0, 0)",
    )?
    .execute(params![id, topic, protocol.as_str(), endpoint, now_ms])?;
    find_subscription(conn, topic, protocol, endpoint)?
        .ok_or_else(|| StoreError::Database("a new subscription cannot be read back".into()))
}

pub(crate) fn unsubscribe(conn: &Connection, subscription_id: &str) -> Result<()> {
    match conn
        .prepare_cached("DELETE FROM alert_subscriptions WHERE subscription_id = ?1")?
        .execute([subscription_id])?
    {
        0 => Err(StoreError::not_found(ResourceKind::AlertSubscription, subscription_id)),
        _ => Ok(()),
    }
}

pub(crate) fn list_subscriptions(
    conn: &Connection,
    topic: &str,
    cursor: Option<String>,
    limit: usize,
) -> Result<Page<AlertSubscription>> {
    let topic = topic_key(conn, topic)?;
    // The key is the row id: subscriptions are listed in the order they were made.
    let after: i64 = match cursor {
        None => 0,
        Some(key) => key.parse().map_err(|_| StoreError::invalid("malformed next_token"))?,
    };
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {SUBSCRIPTION_COLUMNS}, s.id
         FROM alert_subscriptions s JOIN alert_topics t ON t.id = s.topic
         WHERE s.topic = ?1 AND s.id > ?2
         ORDER BY s.id LIMIT ?3"
    ))?;
    let rows = stmt
        .query_map(params![topic, after, fetch(limit)], |row| {
            Ok((row.get::<_, i64>(9)?, subscription_from_row(row)?))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Page::from_rows(rows, limit, |(id, _)| id.to_string()).map(|(_, s)| s))
}

pub(crate) fn record_delivery(
    conn: &Connection,
    subscription_id: &str,
    ok: bool,
    error: Option<&str>,
    now_ms: i64,
) -> Result<()> {
    let changed = conn
        .prepare_cached(
            "UPDATE alert_subscriptions
             SET delivered = delivered + ?2, failed = failed + (1 - ?2),
                 last_error = CASE WHEN ?2 THEN NULL ELSE ?3 END, last_attempt_ms = ?4
             WHERE subscription_id = ?1",
        )?
        .execute(params![subscription_id, ok, error, now_ms])?;
    if changed == 0 {
        return Err(StoreError::not_found(ResourceKind::AlertSubscription, subscription_id));
    }
    Ok(())
}
