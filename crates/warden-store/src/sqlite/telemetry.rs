//! Telemetry statements: per-thing ingest state and metric datapoints in per-day tables.
//!
//! A datapoint row is `(series, ts_ms, value)` in `datapoints_YYYYMMDD`, the table of the UTC
//! day of `ts_ms`; `series` points into `metric_series` (thing, metric, dimension). Day tables
//! are created on first write and dropped whole by retention. A query walks the existing day
//! tables of its range in order; inside a read transaction the list of tables and their
//! contents come from one snapshot, so a concurrent retention drop cannot tear a page.
//!
//! Writes are the hot path of ingest (a report is an ingest-state upsert and about ten
//! datapoint rows), so the writer thread remembers series ids and existing day tables in a
//! [`WriteCache`]: a report costs its inserts and nothing else.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt::Write as _;

use rusqlite::{Connection, OptionalExtension, params};

use super::writer::WriteContext;
use crate::day::{END_OF_TIME_MS, UtcDay};
use crate::error::{Result, StoreError};
use crate::model::{Datapoint, DatapointQuery, IngestState, MetricDatum, MetricValue};
use crate::names;
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
         SET last_report_id = excluded.last_report_id, accepted_at_ms = excluded.accepted_at_ms
         WHERE excluded.last_report_id > ingest_state.last_report_id",
    )?
    .execute(params![thing, state.last_report_id, state.accepted_at_ms])?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Datapoints

/// The most series ids the writer remembers: about 10 per thing for device metrics plus the
/// cloud-side ones, so 100,000 things fit; beyond that the cache starts over (≈ 100 bytes
/// per entry, so it stays under ≈ 200 MB) and refills from `metric_series` as series recur.
const MAX_CACHED_SERIES: usize = 2_000_000;

/// What the writer thread knows about the database, so that appends do not ask it again.
///
/// Only the writer changes `metric_series` and the day tables, so entries stay true as long as
/// the transactions that created them commit. The writer clears the whole cache whenever a job
/// or a batch fails (a rollback may have undone rows or tables it remembers), and retention
/// forgets the day tables it drops. Series rows are never deleted.
#[derive(Debug, Default)]
pub(crate) struct WriteCache {
    /// Series ids by `thing \0 len(metric) : metric dimension`: thing names cannot contain
    /// NUL and the length says where the (free-form) metric name ends, so keys cannot collide;
    /// a lookup needs no allocation, the key is built in `key`.
    series: HashMap<String, i64>,
    key: String,
    /// The insert statement of each day table known to exist.
    days: HashMap<UtcDay, String>,
}

impl WriteCache {
    pub(crate) fn clear(&mut self) {
        self.series.clear();
        self.days.clear();
    }

    /// The id of a series, created on first use.
    fn series_id(&mut self, conn: &Connection, thing: &str, metric: &str, dimension: &str) -> Result<i64> {
        self.key.clear();
        self.key.push_str(thing);
        self.key.push('\0');
        // Writing to a String cannot fail.
        let _ = write!(self.key, "{}:", metric.len());
        self.key.push_str(metric);
        self.key.push_str(dimension);
        if let Some(&id) = self.series.get(self.key.as_str()) {
            return Ok(id);
        }
        let id = match series_id(conn, thing, metric, dimension)? {
            Some(id) => id,
            None => {
                conn.prepare_cached(
                    "INSERT INTO metric_series (thing, metric, dimension) VALUES (?1, ?2, ?3)",
                )?
                .execute([thing, metric, dimension])?;
                conn.last_insert_rowid()
            }
        };
        if self.series.len() >= MAX_CACHED_SERIES {
            self.series.clear();
        }
        self.series.insert(self.key.clone(), id);
        Ok(id)
    }

    /// The insert statement of the day table of `day`, which is created if needed.
    fn insert_sql(&mut self, conn: &Connection, day: UtcDay) -> Result<&str> {
        let sql = match self.days.entry(day) {
            Entry::Occupied(known) => known.into_mut(),
            Entry::Vacant(slot) => {
                ensure_day_table(conn, day)?;
                slot.insert(format!(
                    "INSERT INTO {} (series, ts_ms, value) VALUES (?1, ?2, ?3)",
                    table_name(day)
                ))
            }
        };
        Ok(sql.as_str())
    }
}

/// Checked datapoints with their values already serialised, so the writer thread only inserts.
///
/// The names are moved out of the caller's [`Datapoint`]s, and all values share one JSON buffer:
/// a report of ten datapoints costs one allocation here instead of forty.
#[derive(Debug, Default)]
pub(crate) struct EncodedDatapoints {
    rows: Vec<EncodedRow>,
    /// The JSON texts of all values, back to back; each row knows its range.
    values: Vec<u8>,
}

#[derive(Debug)]
struct EncodedRow {
    thing: String,
    metric: String,
    /// `""` for no dimension, as in `metric_series`.
    dimension: String,
    timestamp_ms: i64,
    value: std::ops::Range<usize>,
}

impl EncodedDatapoints {
    /// Checks and encodes `datapoints`: names, a timestamp in years 1970..=9999, a finite,
    /// non-empty value.
    pub(crate) fn encode(datapoints: Vec<Datapoint>) -> Result<EncodedDatapoints> {
        let mut out = EncodedDatapoints {
            rows: Vec::with_capacity(datapoints.len()),
            // Most values are a count or a short list: `{"count":1234567}`.
            values: Vec::with_capacity(datapoints.len() * 24),
        };
        for dp in datapoints {
            names::check_thing_name(&dp.thing)?;
            names::check_metric_name("metric", &dp.metric)?;
            if let Some(dimension) = &dp.dimension {
                names::check_metric_name("dimension", dimension)?;
            }
            if !(0..END_OF_TIME_MS).contains(&dp.timestamp_ms) {
                return Err(StoreError::invalid(format!(
                    "datapoint timestamp {} ms is outside the years 1970 to 9999",
                    dp.timestamp_ms
                )));
            }
            crate::model::check_value(&dp.value)?;
            let start = out.values.len();
            serde_json::to_writer(&mut out.values, &dp.value)
                .map_err(|e| StoreError::invalid(format!("cannot encode metric value: {e}")))?;
            out.rows.push(EncodedRow {
                thing: dp.thing,
                metric: dp.metric,
                dimension: dp.dimension.unwrap_or_default(),
                timestamp_ms: dp.timestamp_ms,
                value: start..out.values.len(),
            });
        }
        Ok(out)
    }
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

pub(crate) fn append_datapoints(cx: &mut WriteContext<'_>, datapoints: &EncodedDatapoints) -> Result<()> {
    let conn = cx.conn;
    // Rows of one day (all of a report's, usually all of a batch's) share one statement.
    let mut rows = datapoints.rows.iter().peekable();
    while let Some(first) = rows.peek() {
        let day = UtcDay::of_timestamp_ms(first.timestamp_ms);
        let mut insert = conn.prepare_cached(cx.cache.insert_sql(conn, day)?)?;
        while let Some(row) = rows.next_if(|row| UtcDay::of_timestamp_ms(row.timestamp_ms) == day) {
            let series = cx.cache.series_id(conn, &row.thing, &row.metric, &row.dimension)?;
            // serde_json writes UTF-8 only; the check is a formality the TEXT column needs.
            let value = std::str::from_utf8(&datapoints.values[row.value.clone()])
                .map_err(|e| StoreError::Database(format!("metric value is not UTF-8: {e}")))?;
            insert.execute(params![series, row.timestamp_ms, value])?;
        }
    }
    Ok(())
}

/// One accepted report: the thing's new ingest state and the report's datapoints, in the job's
/// one savepoint, so both are stored or neither.
pub(crate) fn record_report(
    cx: &mut WriteContext<'_>,
    thing: &str,
    state: IngestState,
    datapoints: &EncodedDatapoints,
) -> Result<()> {
    set_ingest_state(cx.conn, thing, state)?;
    append_datapoints(cx, datapoints)
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

pub(crate) fn drop_datapoints_before(cx: &mut WriteContext<'_>, day: UtcDay) -> Result<Vec<UtcDay>> {
    let conn = cx.conn;
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
            cx.cache.days.remove(&table_day);
            dropped.push(table_day);
        }
    }
    Ok(dropped)
}
