//! Interval arithmetic of the usage history: minutes, hours and days are
//! fixed lengths of Unix time (UTC, no leap seconds), months are calendar
//! months of the proleptic Gregorian calendar in UTC. The Redis store's
//! scripts compute the same indexes (`lua/common.lua`, "Usage history").

use crate::clock::UnixMillis;

/// The length of an interval of the usage history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Step {
    /// 60 s.
    Minute,
    /// 3,600 s.
    Hour,
    /// 86,400 s, starting at midnight UTC.
    Day,
}

impl Step {
    /// Every step, shortest first.
    pub const ALL: [Step; 3] = [Step::Minute, Step::Hour, Step::Day];

    /// The length in milliseconds.
    pub fn ms(self) -> u64 {
        match self {
            Step::Minute => 60_000,
            Step::Hour => 3_600_000,
            Step::Day => 86_400_000,
        }
    }

    /// The name used in the API, the CLI and the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Minute => "minute",
            Step::Hour => "hour",
            Step::Day => "day",
        }
    }

    /// The letter of the step in the Redis store's key names.
    pub fn letter(self) -> &'static str {
        match self {
            Step::Minute => "m",
            Step::Hour => "h",
            Step::Day => "d",
        }
    }

    /// Parses `minute`, `hour` or `day`.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// The index of the interval that holds `at` (intervals since the epoch).
    pub fn index(self, at: UnixMillis) -> u64 {
        at / self.ms()
    }

    /// When interval `index` starts.
    pub fn start(self, index: u64) -> UnixMillis {
        index.saturating_mul(self.ms())
    }

    /// When interval `index` ends (exclusive), which is when the next starts.
    pub fn end(self, index: u64) -> UnixMillis {
        self.start(index.saturating_add(1))
    }
}

/// A calendar month in UTC, as `year * 12 + (month - 1)`: consecutive months
/// are consecutive numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month(pub i64);

impl Month {
    /// The month that holds day `day` (days since 1970-01-01).
    pub fn of_day(day: u64) -> Self {
        let (year, month, _) = civil_from_days(day as i64);
        Month(year * 12 + (month as i64 - 1))
    }

    /// The month that holds `at`.
    pub fn of(at: UnixMillis) -> Self {
        Self::of_day(Step::Day.index(at))
    }

    /// Its year and month (1 to 12).
    pub fn year_month(self) -> (i64, u32) {
        (self.0.div_euclid(12), (self.0.rem_euclid(12) + 1) as u32)
    }

    /// The first day of the month (days since 1970-01-01).
    pub fn first_day(self) -> u64 {
        let (year, month) = self.year_month();
        days_from_civil(year, month, 1).max(0) as u64
    }

    /// The next month.
    pub fn next(self) -> Self {
        Month(self.0 + 1)
    }

    /// Parses `YYYY-MM`.
    pub fn parse(text: &str) -> Option<Self> {
        let (year, month) = text.split_once('-')?;
        if year.len() != 4 || month.len() != 2 {
            return None;
        }
        let year: i64 = year.parse().ok()?;
        let month: i64 = month.parse().ok()?;
        ((1970..=9999).contains(&year) && (1..=12).contains(&month))
            .then_some(Month(year * 12 + month - 1))
    }
}

impl std::fmt::Display for Month {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (year, month) = self.year_month();
        write!(f, "{year:04}-{month:02}")
    }
}

/// Year, month (1–12) and day (1–31) of a day since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`, exact over the proleptic Gregorian calendar).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Days since 1970-01-01 of a date (the inverse of [`civil_from_days`]).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let month = i64::from(month);
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> UnixMillis {
        humantime::parse_rfc3339(text)
            .expect("a time")
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after the epoch")
            .as_millis() as u64
    }

    #[test]
    fn months_follow_the_calendar() {
        assert_eq!(Month::of(0).to_string(), "1970-01");
        assert_eq!(Month::of(at("2024-02-29T23:59:59Z")).to_string(), "2024-02");
        assert_eq!(Month::of(at("2024-03-01T00:00:00Z")).to_string(), "2024-03");
        assert_eq!(Month::of(at("2026-12-31T12:00:00Z")).to_string(), "2026-12");
        assert_eq!(Month::of(at("2027-01-01T00:00:00Z")).to_string(), "2027-01");
        let march = Month::parse("2024-03").expect("parses");
        assert_eq!(
            Step::Day.start(march.first_day()),
            at("2024-03-01T00:00:00Z")
        );
        assert_eq!(
            Month::parse("2026-12")
                .map(Month::next)
                .map(|m| m.to_string()),
            Some("2027-01".into())
        );
        for bad in ["2026-13", "2026-1", "26-01", "2026/01", "1969-12", ""] {
            assert_eq!(Month::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn every_day_of_four_centuries_round_trips() {
        for day in 0..(400 * 366) {
            let (y, m, d) = civil_from_days(day);
            assert_eq!(days_from_civil(y, m, d), day);
            assert_eq!(
                Month::of_day(day as u64).first_day() as i64,
                days_from_civil(y, m, 1)
            );
        }
    }

    #[test]
    fn steps_cut_time_into_fixed_intervals() {
        let t = at("2026-12-01T10:15:30Z");
        assert_eq!(
            Step::Hour.start(Step::Hour.index(t)),
            at("2026-12-01T10:00:00Z")
        );
        assert_eq!(
            Step::Day.end(Step::Day.index(t)),
            at("2026-12-02T00:00:00Z")
        );
        assert_eq!(Step::parse("minute"), Some(Step::Minute));
        assert_eq!(Step::parse("week"), None);
    }
}
