//! UTC calendar days, the unit of datapoint partitioning and retention.
//!
//! Datapoints live in one table per UTC day of their timestamp, so retention drops whole tables
//! instead of deleting rows (no index churn, space goes back to the free list at once). A day is
//! a count of days since 1970-01-01, so that ordering and stepping are integer arithmetic; the
//! calendar (which count is which date) is the `time` crate's.

use std::fmt;

use time::{Date, Month, OffsetDateTime};

const MS_PER_DAY: i64 = 86_400_000;

/// The first millisecond of year 10000: timestamps must be before it so that a day always has
/// an eight-digit `YYYYMMDD` name.
pub(crate) const END_OF_TIME_MS: i64 = 253_402_300_800_000;

/// The Julian day number of 1970-01-01, day 0 of [`UtcDay`].
const EPOCH_JULIAN_DAY: i32 = OffsetDateTime::UNIX_EPOCH.date().to_julian_day();

/// `time` knows only the years -9999 to 9999, but a day may be anything an i64 timestamp or an
/// i32 year gives (a retention cutoff far in the future, a clock gone wrong). The Gregorian
/// calendar repeats every 400 years, which are 146 097 days, so such a day takes the month and
/// day of its twin a whole number of cycles away, inside the years `time` knows.
const YEARS_PER_CYCLE: i32 = 400;
const DAYS_PER_CYCLE: i64 = 146_097;

/// A calendar day in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UtcDay {
    /// Days since 1970-01-01.
    days: i64,
}

impl UtcDay {
    /// The UTC day that contains `timestamp_ms` (milliseconds since the Unix epoch).
    pub fn of_timestamp_ms(timestamp_ms: i64) -> Self {
        UtcDay { days: timestamp_ms.div_euclid(MS_PER_DAY) }
    }

    /// The day `year-month-day`, or `None` if there is no such date.
    pub fn from_ymd(year: i32, month: u32, day: u32) -> Option<Self> {
        let month = Month::try_from(u8::try_from(month).ok()?).ok()?;
        let twin = Date::from_calendar_date(year.rem_euclid(YEARS_PER_CYCLE), month, u8::try_from(day).ok()?)
            .ok()?;
        let cycles = i64::from(year.div_euclid(YEARS_PER_CYCLE));
        Some(UtcDay { days: i64::from(twin.to_julian_day() - EPOCH_JULIAN_DAY) + cycles * DAYS_PER_CYCLE })
    }

    /// `(year, month, day)`.
    pub fn ymd(self) -> (i32, u32, u32) {
        let cycles = self.days.div_euclid(DAYS_PER_CYCLE);
        // Invariant: the remainder is under one cycle, so the twin lies in the years 1970 to 2369.
        let offset = i32::try_from(self.days.rem_euclid(DAYS_PER_CYCLE)).expect("under one cycle");
        let twin = Date::from_julian_day(EPOCH_JULIAN_DAY + offset).expect("the twin is in 1970..2370");
        // Invariant: `days` comes from an i64 millisecond timestamp or an i32 year, so the year
        // fits in i32 (±292 million years).
        let year = i64::from(twin.year()) + cycles * i64::from(YEARS_PER_CYCLE);
        (
            i32::try_from(year).expect("year fits i32"),
            u32::from(u8::from(twin.month())),
            u32::from(twin.day()),
        )
    }

    /// The first millisecond of the day.
    pub fn start_ms(self) -> i64 {
        self.days.saturating_mul(MS_PER_DAY)
    }

    /// The next day.
    pub fn next(self) -> Self {
        UtcDay { days: self.days + 1 }
    }

    /// `YYYYMMDD`, the suffix of the day's datapoint table; only meaningful for years 0..=9999.
    pub(crate) fn compact(self) -> String {
        let (y, m, d) = self.ymd();
        format!("{y:04}{m:02}{d:02}")
    }

    /// Parses [`UtcDay::compact`].
    pub(crate) fn from_compact(s: &str) -> Option<Self> {
        if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        UtcDay::from_ymd(s[..4].parse().ok()?, s[4..6].parse().ok()?, s[6..].parse().ok()?)
    }
}

impl fmt::Display for UtcDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d) = self.ymd();
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_days() {
        let check = |ms: i64, expect: &str| {
            assert_eq!(UtcDay::of_timestamp_ms(ms).to_string(), expect, "{ms}");
        };
        check(0, "1970-01-01");
        check(MS_PER_DAY - 1, "1970-01-01");
        check(MS_PER_DAY, "1970-01-02");
        check(951_782_400_000, "2000-02-29");
        check(1_767_225_599_999, "2025-12-31");
        check(1_767_225_600_000, "2026-01-01");
        check(END_OF_TIME_MS - 1, "9999-12-31");
    }

    #[test]
    fn invalid_dates_are_refused() {
        assert!(UtcDay::from_ymd(2025, 2, 29).is_none());
        assert!(UtcDay::from_ymd(2024, 2, 29).is_some());
        assert!(UtcDay::from_ymd(2024, 13, 1).is_none());
        assert!(UtcDay::from_ymd(2024, 4, 31).is_none());
        assert!(UtcDay::from_compact("2024023").is_none());
        assert!(UtcDay::from_compact("2024x230").is_none());
    }

    proptest! {
        #[test]
        fn days_round_trip(ms in 0..END_OF_TIME_MS) {
            let day = UtcDay::of_timestamp_ms(ms);
            let (y, m, d) = day.ymd();
            prop_assert_eq!(UtcDay::from_ymd(y, m, d), Some(day));
            prop_assert_eq!(UtcDay::from_compact(&day.compact()), Some(day));
            prop_assert!(day.start_ms() <= ms && ms < day.next().start_ms());
        }
    }
}
