//! UTC calendar days, the unit of datapoint partitioning and retention.
//!
//! Datapoints live in one table per UTC day of their timestamp, so retention drops whole tables
//! instead of deleting rows (no index churn, space goes back to the free list at once). The date
//! arithmetic is Howard Hinnant's `days_from_civil`/`civil_from_days`, which saves a date-time
//! dependency for the one conversion the store needs.

use std::fmt;

const MS_PER_DAY: i64 = 86_400_000;

/// The first millisecond of year 10000: timestamps must be before it so that a day always has
/// an eight-digit `YYYYMMDD` name.
pub(crate) const END_OF_TIME_MS: i64 = 253_402_300_800_000;

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
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return None;
        }
        Some(UtcDay { days: days_from_civil(i64::from(year), i64::from(month), i64::from(day)) })
    }

    /// `(year, month, day)`.
    pub fn ymd(self) -> (i32, u32, u32) {
        let (y, m, d) = civil_from_days(self.days);
        // Invariant: `days` comes from an i64 millisecond timestamp or an i32 year, so the year
        // fits in i32 (±292 million years), and month and day are 1..=12 and 1..=31.
        (
            i32::try_from(y).expect("year fits i32"),
            u32::try_from(m).expect("month is 1..=12"),
            u32::try_from(d).expect("day is 1..=31"),
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

fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { yoe + era * 400 + 1 } else { yoe + era * 400 }, m, d)
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
