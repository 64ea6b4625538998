//! Billing periods: calendar months in UTC, `[start, end)`.

use time::{Date, Month, OffsetDateTime, Time};

/// One billing period, e.g. `2026-11`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Period {
    year: i32,
    month: Month,
}

impl Period {
    /// Parses `YYYY-MM`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("period '{text}' is not YYYY-MM");
        let (year, month) = text.split_once('-').ok_or_else(bad)?;
        if year.len() != 4 || month.len() != 2 {
            return Err(bad());
        }
        let year: i32 = year.parse().map_err(|_| bad())?;
        let month: u8 = month.parse().map_err(|_| bad())?;
        let month = Month::try_from(month).map_err(|_| bad())?;
        Ok(Self { year, month })
    }

    /// The period holding `time`.
    pub fn of(time: OffsetDateTime) -> Self {
        Self {
            year: time.year(),
            month: time.month(),
        }
    }

    /// First instant (inclusive).
    pub fn start(&self) -> OffsetDateTime {
        Date::from_calendar_date(self.year, self.month, 1)
            .expect("day 1 exists")
            .with_time(Time::MIDNIGHT)
            .assume_utc()
    }

    /// The next period.
    pub fn next(&self) -> Self {
        match self.month {
            Month::December => Self {
                year: self.year + 1,
                month: Month::January,
            },
            month => Self {
                year: self.year,
                month: month.next(),
            },
        }
    }

    /// End (exclusive): the next period's start.
    pub fn end(&self) -> OffsetDateTime {
        self.next().start()
    }
}

impl std::fmt::Display for Period {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month as u8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn months_are_exact_utc_ranges() {
        let p = Period::parse("2026-12").unwrap();
        assert_eq!(p.start(), datetime!(2026-12-01 0:00 UTC));
        assert_eq!(p.end(), datetime!(2027-01-01 0:00 UTC));
        assert_eq!(p.to_string(), "2026-12");
        assert_eq!(
            Period::of(datetime!(2027-01-01 0:00 UTC)).to_string(),
            "2027-01"
        );
        for bad in ["2026-13", "2026-1", "26-11", "2026/11", "x"] {
            assert!(Period::parse(bad).is_err(), "{bad}");
        }
    }
}
