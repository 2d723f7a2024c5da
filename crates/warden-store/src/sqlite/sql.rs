//! Small helpers shared by the statement modules: existence checks, version checks, keyset
//! pages, filters assembled from optional parts, and columns that hold enums or JSON.

use std::str::FromStr;

use rusqlite::types::{Type, Value};
use rusqlite::{Connection, Row, params_from_iter};

use crate::error::{ResourceKind, Result, StoreError};
use crate::page::Page;

/// Turns a key lookup into "does it exist?", keeping database errors as errors.
pub(super) fn exists<T>(lookup: Result<T>) -> Result<bool> {
    match lookup {
        Ok(_) => Ok(true),
        Err(StoreError::NotFound { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

pub(super) fn check_version(
    kind: ResourceKind,
    name: &str,
    expected: Option<u64>,
    actual: u64,
) -> Result<()> {
    match expected {
        Some(expected) if expected != actual => {
            Err(StoreError::VersionConflict { kind, name: name.to_owned(), expected, actual })
        }
        _ => Ok(()),
    }
}

/// Fetches up to `limit + 1` strings with a keyset query whose parameters are
/// `(…, cursor, limit + 1)`, and makes a page of them.
pub(super) fn string_page(
    conn: &Connection,
    sql: &str,
    leading: &[&dyn rusqlite::ToSql],
    cursor: Option<String>,
    limit: usize,
) -> Result<Page<String>> {
    let cursor = cursor.unwrap_or_default();
    let fetch = limit + 1;
    let mut args: Vec<&dyn rusqlite::ToSql> = leading.to_vec();
    args.push(&cursor);
    args.push(&fetch);
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt
        .query_map(args.as_slice(), |row| row.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Page::from_rows(rows, limit, Clone::clone))
}

/// A `WHERE` clause built from the filters a caller set, so that SQLite sees only the
/// conditions that apply and can pick the index that fits them (a generic `?1 IS NULL OR …`
/// statement would hide that from the planner). Each distinct combination is one cached
/// statement.
#[derive(Debug, Default)]
pub(super) struct Conditions {
    clauses: Vec<String>,
    args: Vec<Value>,
}

impl Conditions {
    /// Adds `condition`, whose `?` placeholders take `args` in order.
    pub(super) fn push(&mut self, condition: &str, args: impl IntoIterator<Item = Value>) {
        let clause = self.bind(condition, args);
        self.clauses.push(clause);
    }

    /// Adds `column = value` if `value` is set.
    pub(super) fn equal(&mut self, column: &str, value: Option<impl Into<Value>>) {
        if let Some(value) = value {
            self.push(&format!("{column} = ?"), [value.into()]);
        }
    }

    /// Runs `SELECT {select} WHERE {conditions} {tail}`; `tail` (ORDER BY, LIMIT) takes
    /// `tail_args` for its `?` placeholders.
    pub(super) fn query<T>(
        mut self,
        conn: &Connection,
        select: &str,
        tail: &str,
        tail_args: impl IntoIterator<Item = Value>,
        map: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>> {
        let tail = self.bind(tail, tail_args);
        let condition = if self.clauses.is_empty() { "1".to_owned() } else { self.clauses.join(" AND ") };
        let mut stmt = conn.prepare_cached(&format!("SELECT {select} WHERE {condition} {tail}"))?;
        let rows = stmt.query_map(params_from_iter(self.args.iter()), map)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Numbers the `?` placeholders of `text` after those already bound, and binds `args`.
    fn bind(&mut self, text: &str, args: impl IntoIterator<Item = Value>) -> String {
        let mut out = String::with_capacity(text.len() + 8);
        let mut rest = text;
        for arg in args {
            // The statements are this crate's own constants; a missing placeholder is a bug.
            let (before, after) = rest.split_once('?').expect("a placeholder per argument");
            self.args.push(arg);
            out.push_str(before);
            out.push_str(&format!("?{}", self.args.len()));
            rest = after;
        }
        out.push_str(rest);
        out
    }
}

/// Reads a text column holding an enum in its AWS spelling.
pub(super) fn enum_column<T: FromStr<Err = StoreError>>(row: &Row<'_>, index: usize) -> rusqlite::Result<T> {
    let text: String = row.get(index)?;
    text.parse()
        .map_err(|e: StoreError| rusqlite::Error::FromSqlConversionFailure(index, Type::Text, e.into()))
}

/// Reads a text column holding a JSON array of strings.
pub(super) fn strings_column(row: &Row<'_>, index: usize) -> rusqlite::Result<Vec<String>> {
    let text: String = row.get(index)?;
    serde_json::from_str(&text)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(index, Type::Text, e.into()))
}

/// Encodes a list of strings for a JSON array column.
pub(super) fn strings_json(values: &[String]) -> Result<String> {
    serde_json::to_string(values).map_err(|e| StoreError::Database(format!("cannot encode a list: {e}")))
}

/// Splits a page token's key into its `n` parts, separated by `separator`.
pub(super) fn key_parts(key: &str, separator: char, n: usize) -> Result<Vec<&str>> {
    let parts: Vec<&str> = key.splitn(n, separator).collect();
    if parts.len() == n { Ok(parts) } else { Err(StoreError::invalid("malformed next_token")) }
}

/// The `(time, id)` key of rows listed by time with ties broken by rowid.
pub(super) fn time_key(cursor: Option<String>) -> Result<(i64, i64)> {
    match cursor {
        None => Ok((i64::MIN, i64::MIN)),
        Some(key) => {
            let parts = key_parts(&key, ':', 2)?;
            match (parts[0].parse(), parts[1].parse()) {
                (Ok(ms), Ok(id)) => Ok((ms, id)),
                _ => Err(StoreError::invalid("malformed next_token")),
            }
        }
    }
}

/// Rows to fetch for a page: one more than the page holds (see `Page::from_rows`).
pub(super) fn fetch(limit: usize) -> i64 {
    // Page sizes are at most MAX_PAGE_SIZE, checked before any statement runs.
    i64::try_from(limit).unwrap_or(i64::MAX - 1) + 1
}
