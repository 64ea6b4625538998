//! The calendar month (UTC) a budget counts in: the bill's period.

use std::time::{Duration, SystemTime};

use rust_decimal::Decimal;
use time::{Date, Month as CivilMonth, OffsetDateTime, Time};

/// One UTC calendar month, `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Month {
    /// Its first instant.
    pub start: SystemTime,
    /// The first instant of the next month.
    pub end: SystemTime,
    year: i32,
    month: u8,
}

impl Month {
    /// The month `at` falls in.
    pub fn of(at: SystemTime) -> Self {
        let date = OffsetDateTime::from(at).date();
        let first = |year: i32, month: CivilMonth| {
            let day = Date::from_calendar_date(year, month, 1).expect("the first of a month");
            SystemTime::from(day.with_time(Time::MIDNIGHT).assume_utc())
        };
        let (next_year, next_month) = match date.month() {
            CivilMonth::December => (date.year() + 1, CivilMonth::January),
            month => (date.year(), month.next()),
        };
        Self {
            start: first(date.year(), date.month()),
            end: first(next_year, next_month),
            year: date.year(),
            month: date.month() as u8,
        }
    }

    /// The month `text` (`YYYY-MM`) names.
    pub fn parse(text: &str) -> Option<Self> {
        let (year, month) = text.split_once('-')?;
        if year.len() != 4 || month.len() != 2 {
            return None;
        }
        let month = CivilMonth::try_from(month.parse::<u8>().ok()?).ok()?;
        let day = Date::from_calendar_date(year.parse().ok()?, month, 1).ok()?;
        Some(Self::of(SystemTime::from(
            day.with_time(Time::MIDNIGHT).assume_utc(),
        )))
    }

    /// `YYYY-MM`, as the bill names it.
    pub fn label(&self) -> String {
        format!("{:04}-{:02}", self.year, self.month)
    }

    /// Hours from `now` to the month's end (0 once it ended), to the millisecond.
    pub fn hours_left(&self, now: SystemTime) -> Decimal {
        hours(self.end.duration_since(now).unwrap_or(Duration::ZERO))
    }
}

/// `span` in hours, to the millisecond.
fn hours(span: Duration) -> Decimal {
    Decimal::from(span.as_millis() as u64) / Decimal::from(3_600_000u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn months_are_utc_calendar_months() {
        // 2026-12-31T23:00:00Z.
        let month = Month::of(at(1_798_758_000));
        assert_eq!(month.label(), "2026-12");
        assert_eq!(month.end, at(1_798_761_600)); // 2027-01-01T00:00:00Z
        assert_eq!(month.hours_left(at(1_798_758_000)), Decimal::ONE);
        assert_eq!(month.hours_left(at(1_798_761_600)), Decimal::ZERO);
        let february = Month::of(at(1_772_323_200 - 1)); // 2026-02-28T23:59:59Z
        assert_eq!(february.label(), "2026-02");
        assert_eq!(
            february.end.duration_since(february.start).unwrap(),
            Duration::from_secs(28 * 86_400)
        );
    }
}
