//! How the CLI prints: the API's JSON as it came (`--output json`, for scripts), or aligned
//! columns (`--output table`, for people). Commands describe their columns once, as
//! [`Column`]s over JSON pointers into the API's reply, and [`Printer`] does the rest: a list
//! prints one row per item under a header row, a single resource prints one `FIELD  value` line
//! per column.

use std::io::Write as _;

use clap::ValueEnum;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns with a header row.
    Table,
    /// The API's JSON reply, pretty-printed.
    Json,
}

/// How a cell shows its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Strings as they are, numbers and booleans in JSON, maps as `k=v,k=v`, lists joined by `,`.
    Plain,
    /// Epoch seconds (rest-json timestamps) as RFC 3339 UTC: `2026-11-27T10:00:00Z`.
    Time,
}

/// One column of a table: a header and where its value is in each item.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub header: &'static str,
    /// A JSON pointer (RFC 6901) into the item; `""` is the item itself (for lists of names).
    pub pointer: &'static str,
    pub kind: Kind,
}

/// A column of plain values.
pub const fn col(header: &'static str, pointer: &'static str) -> Column {
    Column { header, pointer, kind: Kind::Plain }
}

/// A column of timestamps.
pub const fn time(header: &'static str, pointer: &'static str) -> Column {
    Column { header, pointer, kind: Kind::Time }
}

/// Prints command results in the chosen format.
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    pub format: Format,
}

impl Printer {
    /// A list reply: the items under `items_key`, one row each.
    pub fn list(&self, reply: &Value, items_key: &str, columns: &[Column]) -> anyhow::Result<()> {
        match self.format {
            Format::Json => self.json(reply),
            Format::Table => {
                let items =
                    reply.get(items_key).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
                let mut rows = vec![columns.iter().map(|c| c.header.to_owned()).collect()];
                rows.extend(items.iter().map(|item| columns.iter().map(|c| cell(item, c)).collect()));
                let mut text = render(&rows);
                // Same hint as `aws --max-items`: the listing was cut short, not complete.
                if reply.get("nextToken").or_else(|| reply.get("nextMarker")).is_some() {
                    text.push_str("(more not shown: raise --max)\n");
                }
                emit(&text)
            }
        }
    }

    /// One resource: `FIELD  value` per column, in the columns' order.
    pub fn record(&self, reply: &Value, fields: &[Column]) -> anyhow::Result<()> {
        match self.format {
            Format::Json => self.json(reply),
            Format::Table => emit(&render_record(reply, fields)),
        }
    }

    /// An operation whose reply has nothing worth a table (deletes, attachments): the reply in
    /// JSON, or a sentence saying what happened.
    pub fn done(&self, reply: &Value, message: impl AsRef<str>) -> anyhow::Result<()> {
        match self.format {
            Format::Json => self.json(reply),
            Format::Table => emit(&format!("{}\n", message.as_ref())),
        }
    }

    pub fn json(&self, value: &Value) -> anyhow::Result<()> {
        // A `Value` always serialises.
        emit(&format!("{}\n", serde_json::to_string_pretty(value).unwrap()))
    }
}

/// The `FIELD  value` lines of one resource, headers in the first column. Fields whose value is
/// missing are left out, since a resource description has many optional members.
pub fn render_record(value: &Value, fields: &[Column]) -> String {
    let rows: Vec<Vec<String>> = fields
        .iter()
        .filter(|f| value.pointer(f.pointer).is_some_and(|v| !v.is_null()))
        .map(|f| vec![f.header.to_owned(), cell(value, f)])
        .collect();
    render(&rows)
}

/// Writes to stdout. A closed pipe (`warden things list | head -1`) is not an error for a
/// command whose output was cut short on purpose, so it ends the output quietly.
pub fn emit(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// Rows of cells in columns two spaces apart, each as wide as its widest cell; the last column
/// is not padded, so lines carry no trailing spaces.
fn render(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| rows.iter().filter_map(|r| r.get(i)).map(|c| c.chars().count()).max().unwrap_or(0))
        .collect();
    let mut text = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 < row.len() {
                line.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            } else {
                line.push_str(cell);
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

fn cell(item: &Value, column: &Column) -> String {
    match (item.pointer(column.pointer), column.kind) {
        (None | Some(Value::Null), _) => "-".to_owned(),
        (Some(Value::Number(n)), Kind::Time) => n.as_f64().map_or_else(|| n.to_string(), rfc3339),
        (Some(v), _) => plain(v),
    }
}

fn plain(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.is_empty() => "-".to_owned(),
        Value::Array(items) => items.iter().map(plain).collect::<Vec<_>>().join(","),
        Value::Object(map) if map.is_empty() => "-".to_owned(),
        Value::Object(map) => {
            map.iter().map(|(k, v)| format!("{k}={}", plain(v))).collect::<Vec<_>>().join(",")
        }
        other => other.to_string(),
    }
}

/// Epoch seconds as `YYYY-MM-DDTHH:MM:SSZ` (UTC, whole seconds). A time outside the years 0 to
/// 9999, which RFC 3339 cannot write, prints as the number it is.
fn rfc3339(epoch_seconds: f64) -> String {
    OffsetDateTime::from_unix_timestamp(epoch_seconds.floor() as i64)
        .ok()
        .and_then(|time| time.format(&Rfc3339).ok())
        .unwrap_or_else(|| epoch_seconds.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_print_as_utc() {
        assert_eq!(rfc3339(0.0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_773_600.25), "2026-11-27T10:00:00Z");
        assert_eq!(rfc3339(1_709_164_800.0), "2024-02-29T00:00:00Z");
        assert_eq!(rfc3339(951_782_400.0), "2000-02-29T00:00:00Z");
    }
}
