//! Telemetry statements: per-thing ingest state and metric datapoints in per-day tables.
//!
//! A datapoint row is `(series, ts_ms, value)` in `datapoints_YYYYMMDD`, the table of the UTC
//! day of `ts_ms`; `series` points into `metric_series` (thing, metric, dimension). Day tables
//! are created on first write and dropped whole by retention. A query walks the existing day
//! tables of its range in order; inside a read transaction the list of tables and their
//! contents come from one snapshot, so a concurrent retention drop cannot tear a page.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use rusqlite::{Connection, OptionalExtension, params};

use crate::day::{END_OF_TIME_MS, UtcDay};
use crate::error::{Result, StoreError};
use crate::model::{DatapointQuery, IngestState, MetricDatum, MetricValue};
use crate::page::Page;

const TABLE_PREFIX: &str = "datapoints_";

fn table_name(day: UtcDay) -> String {
    format!("{TABLE_PREFIX}{}", day.compact())
}

// ---------------------------------------------------------------------------------------------
// Ingest state

pub(crate) fn ingest_state(conn: &Connection, thing: &str) -> Result<Option<IngestState>> {
    Ok(conn
        .prepare_cached("SELECT last_report_id, accepted_at_ms FROM ingest_state WHERE thing = ?1")?
        .query_row([thing], |row| {
            Ok(IngestState { last_report_id: row.get(0)?, accepted_at_ms: row.get(1)? })
        })
        .optional()?)
}

pub(crate) fn set_ingest_state(conn: &Connection, thing: &str, state: IngestState) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO ingest_state (thing, last_report_id, accepted_at_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT (thing) DO UPDATE
         SET last_report_id = excluded.last_report_id, accepted_at_ms = excluded.accepted_at_ms",
    )?
    .execute(params![thing, state.last_report_id, state.accepted_at_ms])?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Datapoints

/// A checked datapoint with its value already serialised, so the writer thread only inserts.
#[derive(Debug)]
pub(crate) struct EncodedDatapoint {
    pub(crate) thing: String,
    pub(crate) metric: String,
    /// `""` for no dimension, as in `metric_series`.
    pub(crate) dimension: String,
    pub(crate) timestamp_ms: i64,
    pub(crate) value: String,
}

fn ensure_day_table(conn: &Connection, day: UtcDay) -> Result<()> {
    let table = table_name(day);
    // rowid is kept (not WITHOUT ROWID): appends go to the end of the table B-tree, and the
    // rowid breaks ties between datapoints with the same timestamp.
    conn.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {table} (
             series INTEGER NOT NULL,
             ts_ms  INTEGER NOT NULL,
             value  TEXT NOT NULL
         ) STRICT;
         CREATE INDEX IF NOT EXISTS {table}_by_series ON {table} (series, ts_ms);"
    ))?;
    Ok(())
}

fn series_id(conn: &Connection, thing: &str, metric: &str, dimension: &str) -> Result<Option<i64>> {
    Ok(conn
        .prepare_cached("SELECT id FROM metric_series WHERE thing = ?1 AND metric = ?2 AND dimension = ?3")?
        .query_row([thing, metric, dimension], |row| row.get(0))
        .optional()?)
}

pub(crate) fn append_datapoints(conn: &Connection, datapoints: &[EncodedDatapoint]) -> Result<()> {
    let mut inserts: HashMap<UtcDay, String> = HashMap::new();
    let mut series: HashMap<(&str, &str, &str), i64> = HashMap::new();
    for dp in datapoints {
        let day = UtcDay::of_timestamp_ms(dp.timestamp_ms);
        if let Entry::Vacant(slot) = inserts.entry(day) {
            ensure_day_table(conn, day)?;
            slot.insert(format!(
                "INSERT INTO {} (series, ts_ms, value) VALUES (?1, ?2, ?3)",
                table_name(day)
            ));
        }
        let key = (dp.thing.as_str(), dp.metric.as_str(), dp.dimension.as_str());
        let id = match series.get(&key) {
            Some(&id) => id,
            None => {
                let id = match series_id(conn, key.0, key.1, key.2)? {
                    Some(id) => id,
                    None => {
                        conn.prepare_cached(
                            "INSERT INTO metric_series (thing, metric, dimension)
                             VALUES (?1, ?2, ?3)",
                        )?
                        .execute([key.0, key.1, key.2])?;
                        conn.last_insert_rowid()
                    }
                };
                series.insert(key, id);
                id
            }
        };
        conn.prepare_cached(&inserts[&day])?.execute(params![id, dp.timestamp_ms, dp.value])?;
    }
    Ok(())
}

/// The days that have a datapoint table, between `first` and `last` inclusive, in order.
fn day_tables(conn: &Connection, first: UtcDay, last: UtcDay) -> Result<Vec<UtcDay>> {
    let mut stmt = conn.prepare_cached(
        "SELECT name FROM sqlite_master
         WHERE type = 'table' AND name GLOB 'datapoints_[0-9]*' AND name >= ?1 AND name <= ?2
         ORDER BY name",
    )?;
    let names = stmt
        .query_map([table_name(first), table_name(last)], |row| row.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(names.iter().filter_map(|name| UtcDay::from_compact(name.strip_prefix(TABLE_PREFIX)?)).collect())
}

pub(crate) fn query_datapoints(
    conn: &Connection,
    query: &DatapointQuery,
    cursor: Option<String>,
    limit: usize,
) -> Result<Page<MetricDatum>> {
    // The key of a datapoint is `ts_ms:rowid`; a timestamp belongs to one day table, so the
    // pair orders datapoints across tables too.
    let (after_ms, after_rowid) = match cursor {
        None => (i64::MIN, i64::MIN),
        Some(key) => key
            .split_once(':')
            .and_then(|(ms, rowid)| Some((ms.parse::<i64>().ok()?, rowid.parse::<i64>().ok()?)))
            .ok_or_else(|| StoreError::invalid("malformed next_token"))?,
    };
    let empty = Page { items: Vec::new(), next_token: None };
    let start_ms = query.start_ms.max(0).max(after_ms);
    let end_ms = query.end_ms.min(END_OF_TIME_MS);
    if start_ms >= end_ms {
        return Ok(empty);
    }
    let dimension = query.dimension.as_deref().unwrap_or("");
    let Some(series) = series_id(conn, &query.thing, &query.metric, dimension)? else {
        return Ok(empty);
    };
    let days = day_tables(conn, UtcDay::of_timestamp_ms(start_ms), UtcDay::of_timestamp_ms(end_ms - 1))?;
    let mut rows: Vec<(i64, i64, String)> = Vec::new();
    for day in days {
        let wanted = limit + 1 - rows.len();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT ts_ms, rowid, value FROM {}
             WHERE series = ?1 AND ts_ms >= ?2 AND ts_ms < ?3
               AND (ts_ms > ?4 OR (ts_ms = ?4 AND rowid > ?5))
             ORDER BY ts_ms, rowid LIMIT ?6",
            table_name(day)
        ))?;
        let found = stmt
            .query_map(params![series, start_ms, end_ms, after_ms, after_rowid, wanted], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })?;
        for row in found {
            rows.push(row?);
        }
        if rows.len() > limit {
            break;
        }
    }
    let page = Page::from_rows(rows, limit, |(ts, rowid, _)| format!("{ts}:{rowid}"));
    let next_token = page.next_token;
    let items = page
        .items
        .into_iter()
        .map(|(timestamp_ms, _, value)| {
            let value: MetricValue = serde_json::from_str(&value)
                .map_err(|e| StoreError::Database(format!("corrupt datapoint value: {e}")))?;
            Ok(MetricDatum { timestamp_ms, value })
        })
        .collect::<Result<_>>()?;
    Ok(Page { items, next_token })
}

pub(crate) fn drop_datapoints_before(conn: &Connection, day: UtcDay) -> Result<Vec<UtcDay>> {
    // Filtered by parsed day rather than by name in SQL: `day` may lie outside the years whose
    // names compare correctly as strings.
    let mut stmt = conn.prepare_cached(
        "SELECT name FROM sqlite_master
         WHERE type = 'table' AND name GLOB 'datapoints_[0-9]*'
         ORDER BY name",
    )?;
    let names = stmt.query_map([], |row| row.get::<_, String>(0))?.collect::<rusqlite::Result<Vec<_>>>()?;
    let mut dropped = Vec::new();
    for name in names {
        let Some(table_day) = name.strip_prefix(TABLE_PREFIX).and_then(UtcDay::from_compact) else {
            continue;
        };
        if table_day < day {
            conn.execute_batch(&format!("DROP TABLE {name}"))?;
            dropped.push(table_day);
        }
    }
    Ok(dropped)
}
