//! A bill's cost grouped by one dimension (`bill.get@1` with `group_by`): provider, region,
//! department, offering, the value of one tag, or the UTC day. Groups are the bill's
//! rounded total split by largest remainder, so they always add up to it exactly.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::Serialize;

use crate::bill::{largest_remainder, Bill, BillLine, NO_DEPARTMENT};

/// Group of lines without a region (API requests).
pub const NO_REGION: &str = "(none)";
/// Group of lines whose resource does not carry the tag (and of API requests).
pub const UNTAGGED: &str = "(untagged)";
/// Group of lines without an offering (API requests).
pub const NO_OFFERING: &str = "(none)";
/// Day group of lines charged for the whole period at once (API requests).
pub const WHOLE_PERIOD: &str = "(month)";

/// What a bill is grouped by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupBy {
    /// The provider instance.
    Provider,
    /// The region.
    Region,
    /// The department.
    Department,
    /// The offering the resource was ordered as.
    Offering,
    /// The value of tag `KEY` (`tag:KEY`).
    Tag(String),
    /// The UTC day (`YYYY-MM-DD`): a line's cost is split over the days its charge period
    /// covers, in proportion to the time in each; a line charged for the whole period
    /// (API requests) is its own group, [`WHOLE_PERIOD`].
    Day,
}

impl GroupBy {
    /// Parses `provider`, `region`, `department` or `tag:KEY`.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "provider" => Ok(Self::Provider),
            "region" => Ok(Self::Region),
            "department" => Ok(Self::Department),
            "offering" => Ok(Self::Offering),
            "day" => Ok(Self::Day),
            _ => match text.strip_prefix("tag:") {
                Some(key) if !key.is_empty() && key.len() <= 128 => Ok(Self::Tag(key.into())),
                _ => Err(format!(
                    "group_by '{text}' is not available; use provider, region, department, \
                     offering, day or tag:KEY (a tag key of 1-128 characters)"
                )),
            },
        }
    }

    fn key_of(&self, line: &BillLine) -> String {
        match self {
            Self::Provider => line.provider.clone(),
            Self::Region => line.region.clone().unwrap_or_else(|| NO_REGION.into()),
            Self::Department => line
                .department
                .clone()
                .unwrap_or_else(|| NO_DEPARTMENT.into()),
            Self::Offering => line.offering.clone().unwrap_or_else(|| NO_OFFERING.into()),
            Self::Tag(key) => line
                .tags
                .get(key)
                .cloned()
                .unwrap_or_else(|| UNTAGGED.into()),
            Self::Day => unreachable!("lines are split over days by `by_day`"),
        }
    }

    fn name(&self) -> String {
        match self {
            Self::Provider => "provider".into(),
            Self::Region => "region".into(),
            Self::Department => "department".into(),
            Self::Offering => "offering".into(),
            Self::Tag(key) => format!("tag:{key}"),
            Self::Day => "day".into(),
        }
    }
}

/// A bill's cost by group.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Grouped {
    /// What the groups are (`provider`, `tag:project`, ...).
    pub by: String,
    /// Rounded cost per group; they add up to the bill's total.
    pub groups: BTreeMap<String, Decimal>,
}

/// `bill`'s cost grouped `by`.
pub fn group(bill: &Bill, by: &GroupBy) -> Grouped {
    let mut exact: BTreeMap<String, Decimal> = BTreeMap::new();
    for line in &bill.lines {
        if *by == GroupBy::Day {
            by_day(bill, line, &mut exact);
        } else {
            *exact.entry(by.key_of(line)).or_insert(Decimal::ZERO) += line.cost;
        }
    }
    Grouped {
        by: by.name(),
        groups: largest_remainder(bill.total, &exact),
    }
}

/// Adds `line`'s cost to the UTC days its charge period covers, in proportion to its
/// time in each.
fn by_day(bill: &Bill, line: &BillLine, exact: &mut BTreeMap<String, Decimal>) {
    let (start, end) = (line.charge_period_start, line.charge_period_end);
    if start <= bill.period_start && end >= bill.period_end {
        *exact.entry(WHOLE_PERIOD.into()).or_insert(Decimal::ZERO) += line.cost;
        return;
    }
    let whole = (end - start).whole_milliseconds();
    if whole <= 0 {
        *exact.entry(day_of(start)).or_insert(Decimal::ZERO) += line.cost;
        return;
    }
    let mut at = start;
    while at < end {
        let midnight = at
            .date()
            .next_day()
            .map_or(end, |d| d.midnight().assume_utc());
        let until = midnight.min(end);
        let share =
            Decimal::from((until - at).whole_milliseconds() as i64) / Decimal::from(whole as i64);
        *exact.entry(day_of(at)).or_insert(Decimal::ZERO) += line.cost * share;
        at = until;
    }
}

fn day_of(t: time::OffsetDateTime) -> String {
    let d = t.date();
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bill::Bill;
    use crate::period::Period;

    fn line(provider: &str, cost: &str, tags: &[(&str, &str)]) -> BillLine {
        let period = Period::parse("2026-11").unwrap();
        BillLine {
            provider: provider.into(),
            region: (provider != "skyport").then(|| format!("{provider}-1")),
            department: None,
            resource_id: None,
            sku: "sp.micro".into(),
            description: String::new(),
            charge_period_start: period.start(),
            charge_period_end: period.end(),
            pricing_quantity: Decimal::ONE,
            pricing_unit: "Hours".into(),
            unit_price: cost.parse().unwrap(),
            cost: cost.parse().unwrap(),
            exceptions: vec![],
            charge_class: None,
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            offering: (provider != "skyport").then(|| "dev-vm".into()),
        }
    }

    #[test]
    fn tag_groups_add_up_to_the_total() {
        let lines = vec![
            line("local-vmm", "0.003333", &[("project", "apollo")]),
            line("ec2", "0.003333", &[("project", "apollo")]),
            line("ec2", "0.003334", &[("project", "zeus")]),
            line("skyport", "0.0049", &[]),
        ];
        let bill = Bill::from_lines(
            "acme",
            None,
            Period::parse("2026-11").unwrap(),
            "USD",
            lines,
        );
        let grouped = group(&bill, &GroupBy::parse("tag:project").unwrap());
        assert_eq!(grouped.by, "tag:project");
        let total: Decimal = grouped.groups.values().sum();
        assert_eq!(total, bill.total);
        assert_eq!(
            grouped.groups.keys().collect::<Vec<_>>(),
            ["(untagged)", "apollo", "zeus"]
        );
        let offerings = group(&bill, &GroupBy::parse("offering").unwrap());
        assert_eq!(offerings.groups.values().sum::<Decimal>(), bill.total);
        assert_eq!(
            offerings.groups.keys().collect::<Vec<_>>(),
            ["(none)", "dev-vm"]
        );
        let regions = group(&bill, &GroupBy::Region);
        assert_eq!(regions.groups.values().sum::<Decimal>(), bill.total);
        assert!(regions.groups.contains_key(NO_REGION));
    }

    #[test]
    fn days_split_lines_by_time_and_add_up_to_the_total() {
        let period = Period::parse("2026-11").unwrap();
        let at = |d: u8, h: u8| {
            time::Date::from_calendar_date(2026, time::Month::November, d)
                .unwrap()
                .with_hms(h, 0, 0)
                .unwrap()
                .assume_utc()
        };
        let mut vm = line("local-vmm", "3.00", &[]);
        // 18:00 on the 2nd to 12:00 on the 4th: 6 h, 24 h and 12 h.
        vm.charge_period_start = at(2, 18);
        vm.charge_period_end = at(4, 12);
        let requests = line("skyport", "0.50", &[]);
        let bill = Bill::from_lines("acme", None, period, "USD", vec![vm, requests]);
        let days = group(&bill, &GroupBy::parse("day").unwrap());
        assert_eq!(days.by, "day");
        let cost = |k: &str| days.groups.get(k).copied().unwrap_or_default().to_string();
        assert_eq!(cost("2026-11-02"), "0.43");
        assert_eq!(cost("2026-11-03"), "1.71");
        assert_eq!(cost("2026-11-04"), "0.86");
        assert_eq!(
            cost(WHOLE_PERIOD),
            "0.50",
            "requests are billed for the month"
        );
        assert_eq!(days.groups.values().sum::<Decimal>(), bill.total);
    }

    #[test]
    fn unknown_groupings_are_refused_with_the_choices() {
        for bad in [
            "tag:",
            "offerings",
            "Provider",
            &format!("tag:{}", "k".repeat(129)),
        ] {
            let message = GroupBy::parse(bad).unwrap_err();
            assert!(message.contains("use provider, region"), "{message}");
        }
        assert_eq!(
            GroupBy::parse("tag:cost center").unwrap(),
            GroupBy::Tag("cost center".into())
        );
    }
}
