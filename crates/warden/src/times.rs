//! `--since` and `--until`: a time given as an age (`1h`, `30m`, `7d`: that long before now), a
//! date (`2026-11-27`, midnight UTC) or an RFC 3339 time (`2026-11-27T10:00:00Z`), sent to the
//! API as epoch seconds. The clock is read once per command, by the caller.

use clap::Args;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime};

/// A point in time as the user wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// The end of the current second: the API's ranges end before their end time, in whole
    /// seconds, and "until now" must include what happened a moment ago.
    Now,
    /// That long before now.
    Ago(std::time::Duration),
    At(OffsetDateTime),
}

impl When {
    /// An age reaching back before 1970 (`100000y`) is 1970.
    pub fn epoch_seconds(self, now: OffsetDateTime) -> i64 {
        match self {
            When::Now => now.unix_timestamp() + 1,
            When::Ago(age) => time::Duration::try_from(age)
                .ok()
                .and_then(|age| now.checked_sub(age))
                .map_or(0, |at| at.unix_timestamp().max(0)),
            When::At(at) => at.unix_timestamp(),
        }
    }
}

/// Parses `now`, an age, a date or an RFC 3339 time (clap's value parser).
pub fn parse_when(s: &str) -> Result<When, String> {
    if s == "now" {
        return Ok(When::Now);
    }
    if let Ok(at) = OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(When::At(at));
    }
    if let Ok(day) = Date::parse(s, format_description!("[year]-[month]-[day]")) {
        return Ok(When::At(day.midnight().assume_utc()));
    }
    humantime::parse_duration(s).map(When::Ago).map_err(|_| {
        format!(
            "expected an age such as 1h, 30m or 7d, a date such as 2026-11-27, or a time such as \
             2026-11-27T10:00:00Z, got {s:?}"
        )
    })
}

/// A time range of a listing.
#[derive(Debug, Args)]
pub struct RangeArgs {
    /// From this time: an age (1h, 30m, 7d), a date (2026-11-27, UTC) or a time
    /// (2026-11-27T10:00:00Z) [default: 24h].
    #[arg(long, value_name = "WHEN", value_parser = parse_when)]
    since: Option<When>,
    /// Until this time, written as for --since [default: now].
    #[arg(long, value_name = "WHEN", value_parser = parse_when)]
    until: Option<When>,
}

/// How far back a listing goes when no `--since` is given.
const DEFAULT_SINCE: When = When::Ago(std::time::Duration::from_secs(24 * 3600));

impl RangeArgs {
    /// The range as epoch seconds, `(start, end)`.
    pub fn resolve(&self, now: OffsetDateTime) -> anyhow::Result<(i64, i64)> {
        let start = self.since.unwrap_or(DEFAULT_SINCE).epoch_seconds(now);
        let end = self.until.unwrap_or(When::Now).epoch_seconds(now);
        if start > end {
            anyhow::bail!("--since is after --until");
        }
        Ok((start, end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whens_resolve_against_now() {
        let now = OffsetDateTime::from_unix_timestamp(1_795_773_600).unwrap();
        let at = |s: &str| parse_when(s).unwrap().epoch_seconds(now);
        assert_eq!(at("now"), 1_795_773_601);
        assert_eq!(at("1h"), 1_795_770_000);
        assert_eq!(at("7d"), 1_795_773_600 - 7 * 86_400);
        assert_eq!(at("2026-11-27T10:00:00Z"), 1_795_773_600);
        assert_eq!(at("2026-11-27"), 1_795_737_600);
        assert_eq!(at("100000y"), 0);
        assert!(parse_when("yesterday").unwrap_err().starts_with("expected an age"));
    }
}
