//! Telemetry statements: per-thing ingest state and metric datapoints in per-day tables.
//!
//! Datapoints are stored a report at a time: a row of `points_YYYYMMDD` (the table of the UTC
//! day of its timestamp) is `(thing, ts_ms, points)`, where `points` packs every datapoint the
//! thing has at that timestamp, one per series (metric and dimension), in the format of
//! [`PointsBlob`]. Day tables are created on first write and dropped whole by retention. A query
//! walks the existing day tables of its range in order, reading the thing's rows in time order
//! and picking its series out of each; inside a read transaction the list of tables and their
//! contents come from one snapshot, so a concurrent retention drop cannot tear a page.
//!
//! Why a row per report and not per datapoint: writes are the hot path of ingest. With one row
//! per datapoint and an index by series, a report of ten datapoints was ten inserts into the
//! table and ten into the index, and the index entries landed in ten places of the B-tree, so a
//! commit wrote several dirtied 4 KiB pages to the WAL for every report. Now a report is one
//! insert appended at the end of the table and one index entry, next to the thing's previous
//! one. Reads, which are rare (`ListMetricValues`), pay instead: they decode every row of the
//! thing in the range and skip the other series. Databases from before (one row per datapoint
//! in `datapoints_YYYYMMDD`, series in `metric_series`) are converted by migration 4
//! ([`convert_series_tables`]).
//!
//! Ingest state is written the same way, for the same reason. Updating a thing's row of
//! `ingest_state` (keyed by thing name) for every report dirtied one page of that table per
//! report, at a random place, and every commit wrote all of them to the WAL. So a report appends
//! its new state to `ingest_log` instead (a rowid table without index: appends land on its last
//! page), and the writer thread folds the log into `ingest_state` about once a second
//! ([`fold_ingest_log`]), which dirties each page of `ingest_state` once per fold rather than
//! once per report. Readers take the greater (by report id) of a thing's row and its log rows,
//! so the log never shows: a state is the same before and after a fold.
//!
//! The writer thread remembers which day tables exist, and whether the log may hold rows, in a
//! [`WriteCache`], so a report costs its two statements and nothing else.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, params};

use super::writer::WriteContext;
use crate::day::{END_OF_TIME_MS, UtcDay};
use crate::error::{Result, StoreError};
use crate::model::{Datapoint, DatapointQuery, IngestState, MetricDatum, MetricValue};
use crate::names;
use crate::page::Page;

const TABLE_PREFIX: &str = "points_";

fn table_name(day: UtcDay) -> String {
    format!("{TABLE_PREFIX}{}", day.compact())
}

// ---------------------------------------------------------------------------------------------
// Ingest state

/// The thing's state: its `ingest_state` row or a row of the log, whichever has the greater
/// report id, preferring on a tie what a fold would keep (the table's row, else the first
/// logged). The log holds about a second of reports and has no index, so this scans it.
pub(crate) fn ingest_state(conn: &Connection, thing: &str) -> Result<Option<IngestState>> {
    Ok(conn
        .prepare_cached(
            "SELECT last_report_id, accepted_at_ms FROM (
                 SELECT last_report_id, accepted_at_ms, -1 AS seq FROM ingest_state WHERE thing = ?1
                 UNION ALL
                 SELECT last_report_id, accepted_at_ms, rowid AS seq FROM ingest_log WHERE thing = ?1
             )
             ORDER BY last_report_id DESC, seq
             LIMIT 1",
        )?
        .query_row([thing], |row| state_at(row, 0))
        .optional()?)
}

/// The state in columns `at` (`last_report_id`) and `at + 1` (`accepted_at_ms`) of `row`.
fn state_at(row: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<IngestState> {
    Ok(IngestState { last_report_id: row.get(at)?, accepted_at_ms: row.get(at + 1)? })
}

/// Every thing's state, ordered by thing, the log applied over the table as a fold would.
pub(crate) fn all_ingest_states(conn: &Connection) -> Result<Vec<(String, IngestState)>> {
    let mut states = BTreeMap::new();
    let mut table = conn.prepare("SELECT thing, last_report_id, accepted_at_ms FROM ingest_state")?;
    let mut rows = table.query([])?;
    while let Some(row) = rows.next()? {
        states.insert(row.get(0)?, Some(state_at(row, 1)?));
    }
    for_each_logged_state(conn, |thing, logged| {
        keep_newer(states.entry(thing.to_owned()).or_default(), logged);
    })?;
    Ok(states.into_iter().filter_map(|(thing, state)| Some((thing, state?))).collect())
}

/// The states of `things`, in their order (`None` for a thing that has not reported): each
/// read from the table by its key, and the log read once for all of them (it has no index, so
/// reading it per thing costs a scan per thing).
pub(crate) fn ingest_states(conn: &Connection, things: &[String]) -> Result<Vec<Option<IngestState>>> {
    let mut table =
        conn.prepare_cached("SELECT last_report_id, accepted_at_ms FROM ingest_state WHERE thing = ?1")?;
    let mut states = HashMap::with_capacity(things.len());
    for thing in things {
        let stored = table.query_row([thing], |row| state_at(row, 0)).optional()?;
        states.insert(thing.as_str(), stored);
    }
    for_each_logged_state(conn, |thing, logged| {
        if let Some(state) = states.get_mut(thing) {
            keep_newer(state, logged);
        }
    })?;
    Ok(things.iter().map(|thing| states[thing.as_str()]).collect())
}

/// Calls `f` with every row of the ingest log, oldest first.
fn for_each_logged_state(conn: &Connection, mut f: impl FnMut(&str, IngestState)) -> Result<()> {
    let mut log =
        conn.prepare_cached("SELECT thing, last_report_id, accepted_at_ms FROM ingest_log ORDER BY rowid")?;
    let mut rows = log.query([])?;
    while let Some(row) = rows.next()? {
        let thing = row.get_ref(0)?.as_str().map_err(rusqlite::Error::from)?;
        f(thing, state_at(row, 1)?);
    }
    Ok(())
}

/// What a fold does with a logged state: it replaces the known one only with a greater report
/// id (in a tie the table's, or the earlier log row's, stays).
fn keep_newer(known: &mut Option<IngestState>, logged: IngestState) {
    if known.is_none_or(|k| logged.last_report_id > k.last_report_id) {
        *known = Some(logged);
    }
}

/// The direct API, rare: an upsert into the table, which the log's rows still override when
/// their report id is greater.
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

/// Appends a report's state to the log (the ingest hot path; see the module doc).
fn log_ingest_state(cx: &mut WriteContext<'_>, thing: &str, state: IngestState) -> Result<()> {
    cx.conn
        .prepare_cached("INSERT INTO ingest_log (thing, last_report_id, accepted_at_ms) VALUES (?1, ?2, ?3)")?
        .execute(params![thing, state.last_report_id, state.accepted_at_ms])?;
    cx.cache.ingest_log_empty = false;
    Ok(())
}

/// Moves the log into `ingest_state`, keeping per thing the greatest report id (the first
/// logged on a tie, and the table's row against a log row with the same id), and empties it.
/// Things are upserted in order, so the fold walks the table's B-tree once. (`WHERE true`:
/// SQLite's grammar needs it before an upsert clause after a SELECT.)
pub(crate) fn fold_ingest_log(cx: &mut WriteContext<'_>) -> Result<()> {
    cx.conn
        .prepare_cached(
            "INSERT INTO ingest_state (thing, last_report_id, accepted_at_ms)
             SELECT thing, last_report_id, accepted_at_ms FROM ingest_log WHERE true
             ORDER BY thing, rowid
             ON CONFLICT (thing) DO UPDATE
             SET last_report_id = excluded.last_report_id, accepted_at_ms = excluded.accepted_at_ms
             WHERE excluded.last_report_id > ingest_state.last_report_id",
        )?
        .execute([])?;
    // Without a WHERE clause SQLite drops the table's pages whole rather than row by row.
    cx.conn.prepare_cached("DELETE FROM ingest_log")?.execute([])?;
    cx.cache.ingest_log_empty = true;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Datapoints

/// What the writer thread knows about the database, so that appends do not ask it again.
///
/// Only the writer creates and drops day tables, so an entry stays true as long as the
/// transaction that created the table commits. The writer clears the cache whenever a job or a
/// batch fails (a rollback may have undone a table it remembers, or a fold), and retention
/// forgets the day tables it drops.
#[derive(Debug, Default)]
pub(crate) struct WriteCache {
    /// The insert statement of each day table known to exist.
    days: HashMap<UtcDay, String>,
    /// Whether `ingest_log` is known to be empty (folded, and not written since), so the writer
    /// need not fold it. `false` when not known, as at the start: a crash may have left rows.
    pub(crate) ingest_log_empty: bool,
}

impl WriteCache {
    pub(crate) fn clear(&mut self) {
        self.days.clear();
        self.ingest_log_empty = false;
    }

    /// The insert statement of the day table of `day`, which is created if needed.
    fn insert_sql(&mut self, conn: &Connection, day: UtcDay) -> Result<&str> {
        let sql = match self.days.entry(day) {
            Entry::Occupied(known) => known.into_mut(),
            Entry::Vacant(slot) => {
                ensure_day_table(conn, day)?;
                slot.insert(format!(
                    "INSERT INTO {} (thing, ts_ms, points) VALUES (?1, ?2, ?3)",
                    table_name(day)
                ))
            }
        };
        Ok(sql.as_str())
    }
}

/// The `points` column: the datapoints of one thing at one timestamp, at most one per series,
/// back to back, each as
///
/// ```text
/// metric length (1 byte) | metric | dimension length (1 byte, 0 for none) | dimension
///   | value length (4 bytes, little-endian) | value (the MetricValue as JSON)
/// ```
///
/// Names are at most 128 bytes (checked before encoding), so one byte holds their length.
struct PointsBlob;

impl PointsBlob {
    fn push(blob: &mut Vec<u8>, metric: &str, dimension: &str, value: &[u8]) -> Result<()> {
        let too_long = || StoreError::invalid("a datapoint's name or value is too long to store");
        blob.push(u8::try_from(metric.len()).map_err(|_| too_long())?);
        blob.extend_from_slice(metric.as_bytes());
        blob.push(u8::try_from(dimension.len()).map_err(|_| too_long())?);
        blob.extend_from_slice(dimension.as_bytes());
        blob.extend_from_slice(&u32::try_from(value.len()).map_err(|_| too_long())?.to_le_bytes());
        blob.extend_from_slice(value);
        Ok(())
    }

    /// Whether `blob` already holds a datapoint of this series.
    fn contains(blob: &[u8], metric: &str, dimension: &str) -> bool {
        PointsBlob::find(blob, metric, dimension).ok().flatten().is_some()
    }

    /// The value (JSON) of the series' datapoint in `blob`, if it has one.
    fn find<'b>(blob: &'b [u8], metric: &str, dimension: &str) -> Result<Option<&'b [u8]>> {
        let corrupt = || StoreError::Database("corrupt datapoint row".into());
        let mut rest = blob;
        let take = |n: usize, rest: &mut &'b [u8]| -> Result<&'b [u8]> {
            if rest.len() < n {
                return Err(corrupt());
            }
            let (head, tail) = rest.split_at(n);
            *rest = tail;
            Ok(head)
        };
        while !rest.is_empty() {
            let len = usize::from(take(1, &mut rest)?[0]);
            let m = take(len, &mut rest)?;
            let len = usize::from(take(1, &mut rest)?[0]);
            let d = take(len, &mut rest)?;
            let len = take(4, &mut rest)?;
            let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]);
            let value = take(usize::try_from(len).map_err(|_| corrupt())?, &mut rest)?;
            if m == metric.as_bytes() && d == dimension.as_bytes() {
                return Ok(Some(value));
            }
        }
        Ok(None)
    }
}

/// Checked datapoints, already grouped into rows and serialised, so the writer thread only
/// inserts.
#[derive(Debug, Default)]
pub(crate) struct EncodedDatapoints {
    rows: Vec<EncodedRow>,
}

#[derive(Debug)]
struct EncodedRow {
    thing: Arc<str>,
    timestamp_ms: i64,
    /// See [`PointsBlob`].
    points: Vec<u8>,
}

impl EncodedDatapoints {
    /// Checks and encodes `datapoints`: names, a timestamp in years 1970..=9999, a finite,
    /// non-empty value. Consecutive datapoints of one thing and timestamp share a row (all of a
    /// report's do), unless a series comes twice: its second datapoint starts a new row.
    pub(crate) fn encode(datapoints: Vec<Datapoint>) -> Result<EncodedDatapoints> {
        let mut out = EncodedDatapoints { rows: Vec::with_capacity(1) };
        let mut value = Vec::with_capacity(32);
        for dp in datapoints {
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
            value.clear();
            serde_json::to_writer(&mut value, &dp.value)
                .map_err(|e| StoreError::invalid(format!("cannot encode metric value: {e}")))?;
            let dimension = dp.dimension.as_deref().unwrap_or_default();
            let row = match out.rows.last_mut() {
                Some(row)
                    if row.thing == dp.thing
                        && row.timestamp_ms == dp.timestamp_ms
                        && !PointsBlob::contains(&row.points, &dp.metric, dimension) =>
                {
                    row
                }
                _ => {
                    // Checked once per row: its datapoints share the thing.
                    names::check_thing_name(&dp.thing)?;
                    out.rows.push(EncodedRow {
                        thing: dp.thing,
                        timestamp_ms: dp.timestamp_ms,
                        // Most reports: ten datapoints of about 40 bytes.
                        points: Vec::with_capacity(512),
                    });
                    out.rows.last_mut().expect("a row was just pushed")
                }
            };
            PointsBlob::push(&mut row.points, &dp.metric, dimension, &value)?;
        }
        Ok(out)
    }
}

fn ensure_day_table(conn: &Connection, day: UtcDay) -> Result<()> {
    let table = table_name(day);
    // rowid is kept (not WITHOUT ROWID): rows are appended at the end of the table B-tree, only
    // the small index entry goes next to the thing's earlier ones, and the rowid breaks ties
    // between rows with the same timestamp.
    conn.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {table} (
             thing  TEXT NOT NULL,
             ts_ms  INTEGER NOT NULL,
             points BLOB NOT NULL
         ) STRICT;
         CREATE INDEX IF NOT EXISTS {table}_by_thing ON {table} (thing, ts_ms);"
    ))?;
    Ok(())
}

pub(crate) fn append_datapoints(cx: &mut WriteContext<'_>, datapoints: &EncodedDatapoints) -> Result<()> {
    let conn = cx.conn;
    // Rows of one day (all of a report's, usually all of a batch's) share one statement.
    let mut rows = datapoints.rows.iter().peekable();
    while let Some(first) = rows.peek() {
        let day = UtcDay::of_timestamp_ms(first.timestamp_ms);
        let mut insert = conn.prepare_cached(cx.cache.insert_sql(conn, day)?)?;
        while let Some(row) = rows.next_if(|row| UtcDay::of_timestamp_ms(row.timestamp_ms) == day) {
            insert.execute(params![row.thing, row.timestamp_ms, row.points])?;
        }
    }
    Ok(())
}

/// One accepted report: the thing's new ingest state (appended to the log) and the report's
/// datapoints, in the job's one savepoint, so both are stored or neither.
pub(crate) fn record_report(
    cx: &mut WriteContext<'_>,
    thing: &str,
    state: IngestState,
    datapoints: &EncodedDatapoints,
) -> Result<()> {
    log_ingest_state(cx, thing, state)?;
    append_datapoints(cx, datapoints)
}

/// The days that have a datapoint table, between `first` and `last` inclusive, in order.
fn day_tables(conn: &Connection, first: UtcDay, last: UtcDay) -> Result<Vec<UtcDay>> {
    let mut stmt = conn.prepare_cached(
        "SELECT name FROM sqlite_master
         WHERE type = 'table' AND name GLOB 'points_[0-9]*' AND name >= ?1 AND name <= ?2
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
    // The key of a datapoint is its row's `ts_ms:rowid` (a row has at most one datapoint of a
    // series); a timestamp belongs to one day table, so the pair orders datapoints across
    // tables too.
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
    let days = day_tables(conn, UtcDay::of_timestamp_ms(start_ms), UtcDay::of_timestamp_ms(end_ms - 1))?;
    let corrupt =
        |e: rusqlite::types::FromSqlError| StoreError::Database(format!("corrupt datapoint row: {e}"));
    let mut rows: Vec<(i64, i64, MetricValue)> = Vec::new();
    'days: for day in days {
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT ts_ms, rowid, points FROM {}
             WHERE thing = ?1 AND ts_ms >= ?2 AND ts_ms < ?3
               AND (ts_ms > ?4 OR (ts_ms = ?4 AND rowid > ?5))
             ORDER BY ts_ms, rowid",
            table_name(day)
        ))?;
        let mut found = stmt.query(params![query.thing, start_ms, end_ms, after_ms, after_rowid])?;
        while let Some(row) = found.next()? {
            let points = row.get_ref(2)?.as_blob().map_err(corrupt)?;
            let Some(value) = PointsBlob::find(points, &query.metric, dimension)? else { continue };
            let value: MetricValue = serde_json::from_slice(value)
                .map_err(|e| StoreError::Database(format!("corrupt datapoint value: {e}")))?;
            rows.push((row.get(0)?, row.get(1)?, value));
            if rows.len() > limit {
                break 'days;
            }
        }
    }
    let page = Page::from_rows(rows, limit, |(ts, rowid, _)| format!("{ts}:{rowid}"));
    let items =
        page.items.into_iter().map(|(timestamp_ms, _, value)| MetricDatum { timestamp_ms, value }).collect();
    Ok(Page { items, next_token: page.next_token })
}

pub(crate) fn drop_datapoints_before(cx: &mut WriteContext<'_>, day: UtcDay) -> Result<Vec<UtcDay>> {
    let conn = cx.conn;
    // Filtered by parsed day rather than by name in SQL: `day` may lie outside the years whose
    // names compare correctly as strings.
    let mut stmt = conn.prepare_cached(
        "SELECT name FROM sqlite_master
         WHERE type = 'table' AND name GLOB 'points_[0-9]*'
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

// ---------------------------------------------------------------------------------------------
// Migration 4

/// Converts the datapoint tables of schema version 3 (`datapoints_YYYYMMDD`: a row per datapoint
/// with a `metric_series` id) into this module's row-per-report tables, keeping every datapoint,
/// and drops the old tables. Runs inside the migration's transaction. Datapoints of one thing
/// and timestamp are packed in the order they were stored.
pub(crate) fn convert_series_tables(conn: &Connection) -> Result<()> {
    let old: Vec<String> = conn
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name GLOB 'datapoints_[0-9]*' ORDER BY name",
        )?
        .query_map([], |row| row.get::<_, String>(0))?
        .collect::<rusqlite::Result<_>>()?;
    for name in old {
        let Some(day) = name.strip_prefix("datapoints_").and_then(UtcDay::from_compact) else { continue };
        ensure_day_table(conn, day)?;
        let rows = convert_table(conn, &name, day)?;
        conn.execute_batch(&format!("DROP TABLE {name}"))?;
        // A large database takes a while: say what is happening.
        tracing::info!(table = %name, datapoints = rows, "datapoints converted to one row per report");
    }
    Ok(())
}

/// Copies one old day table into the new one of `day`. Its statements end here, before the old
/// table is dropped.
fn convert_table(conn: &Connection, name: &str, day: UtcDay) -> Result<u64> {
    let text = |e: rusqlite::types::FromSqlError| StoreError::Database(format!("{name}: {e}"));
    let mut insert =
        conn.prepare(&format!("INSERT INTO {} (thing, ts_ms, points) VALUES (?1, ?2, ?3)", table_name(day)))?;
    let mut select = conn.prepare(&format!(
        "SELECT s.thing, d.ts_ms, s.metric, s.dimension, d.value
         FROM {name} d JOIN metric_series s ON s.id = d.series
         ORDER BY s.thing, d.ts_ms, d.rowid"
    ))?;
    let mut rows = select.query([])?;
    let mut current: Option<EncodedRow> = None;
    let mut converted = 0;
    while let Some(row) = rows.next()? {
        converted += 1;
        let thing = row.get_ref(0)?.as_str().map_err(text)?;
        let ts_ms: i64 = row.get(1)?;
        let metric = row.get_ref(2)?.as_str().map_err(text)?;
        let dimension = row.get_ref(3)?.as_str().map_err(text)?;
        let value = row.get_ref(4)?.as_str().map_err(text)?;
        let continues = current.as_ref().is_some_and(|c| {
            *c.thing == *thing
                && c.timestamp_ms == ts_ms
                && !PointsBlob::contains(&c.points, metric, dimension)
        });
        if !continues {
            if let Some(done) = current.take() {
                insert.execute(params![done.thing, done.timestamp_ms, done.points])?;
            }
            current = Some(EncodedRow { thing: thing.into(), timestamp_ms: ts_ms, points: Vec::new() });
        }
        if let Some(c) = current.as_mut() {
            PointsBlob::push(&mut c.points, metric, dimension, value.as_bytes())?;
        }
    }
    if let Some(done) = current {
        insert.execute(params![done.thing, done.timestamp_ms, done.points])?;
    }
    Ok(converted)
}
