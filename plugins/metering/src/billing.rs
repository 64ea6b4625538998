//! From the ledger to a bill: reads a tenant's events, replays each instance's lifecycle
//! into running slices, counts API requests, and prices them with the rate card.

use std::collections::BTreeMap;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::bill::{build_bill, correction_lines, ApiUsage, Bill, BillInputs, InstanceUsage};
use crate::ledger::Ledger;
#[cfg(test)]
use crate::ledger::SqliteLedger;
use crate::period::Period;
use crate::rating::RateCard;
use crate::usage::{cut_slices, running_slices, usage_records, Capacity, LifecycleEvent};

/// A time as the ledger stores it: RFC 3339 UTC with milliseconds (sorts as text).
pub fn ledger_time(time: OffsetDateTime) -> String {
    let t = time.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// The `tags` attribute of a lifecycle event as text pairs (a value that is not text is
/// shown as JSON).
fn tags_of(attributes: &serde_json::Value) -> BTreeMap<String, String> {
    let Some(tags) = attributes["tags"].as_object() else {
        return BTreeMap::new();
    };
    tags.iter()
        .map(|(key, value)| {
            let text = value
                .as_str()
                .map_or_else(|| value.to_string(), str::to_owned);
            (key.clone(), text)
        })
        .collect()
}

/// Every instance of `tenant` with its running slices up to `until`, from the events
/// received before `received_before`.
pub fn instance_usage(
    ledger: &dyn Ledger,
    tenant: &str,
    until: OffsetDateTime,
    received_before: OffsetDateTime,
) -> Result<Vec<InstanceUsage>, String> {
    let rows = ledger
        .lifecycle_rows(tenant, &ledger_time(until), &ledger_time(received_before))
        .map_err(|e| e.to_string())?;
    let mut instances: BTreeMap<String, (InstanceUsage, Vec<LifecycleEvent>)> = BTreeMap::new();
    for (department, attributes, time) in rows {
        let text = |key: &str| attributes[key].as_str().unwrap_or_default().to_string();
        let Ok(time) = OffsetDateTime::parse(&time, &Rfc3339) else {
            continue;
        };
        let event = LifecycleEvent {
            time,
            event: text("event"),
            capacity: Capacity {
                instance_type: text("instance_type"),
                vcpus: attributes["vcpus"].as_u64().unwrap_or(0),
                memory_mib: attributes["memory_mib"].as_u64().unwrap_or(0),
            },
        };
        let id = text("instance_id");
        let entry = instances.entry(id.clone()).or_insert_with(|| {
            (
                InstanceUsage {
                    instance_id: id,
                    provider: text("provider"),
                    region: text("region"),
                    department,
                    tags: BTreeMap::new(),
                    offering: None,
                    slices: Vec::new(),
                },
                Vec::new(),
            )
        });
        // Rows come in event order: the latest event's tags are the instance's.
        entry.0.tags = tags_of(&attributes);
        if let Some(offering) = attributes["offering"].as_str() {
            entry.0.offering = Some(offering.to_string());
        }
        entry.1.push(event);
    }
    Ok(instances
        .into_values()
        .map(|(mut usage, events)| {
            usage.slices = running_slices(&events, until);
            usage
        })
        .collect())
}

/// The period's lines from the events received before `received_before`, with running
/// usage counted up to `until`.
fn regular_bill(
    ledger: &dyn Ledger,
    card: &RateCard,
    tenant: &str,
    department: Option<&str>,
    period: Period,
    until: OffsetDateTime,
    received_before: OffsetDateTime,
) -> Result<Bill, String> {
    let instances = instance_usage(ledger, tenant, until, received_before)?;
    let api: Vec<ApiUsage> = ledger
        .api_request_counts(
            tenant,
            &ledger_time(period.start()),
            &ledger_time(period.end()),
            &ledger_time(received_before),
        )
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|(department, requests)| ApiUsage {
            department,
            requests,
        })
        .collect();
    build_bill(&BillInputs {
        tenant,
        department,
        period,
        instances: &instances,
        api: &api,
        card,
    })
}

/// Finalized periods and the instant each was finalized.
fn finalized(ledger: &dyn Ledger) -> Result<Vec<(Period, OffsetDateTime)>, String> {
    ledger
        .finalized_periods()
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|(period, at)| {
            Ok((
                Period::parse(&period)?,
                OffsetDateTime::parse(&at, &Rfc3339).map_err(|e| e.to_string())?,
            ))
        })
        .collect()
}

/// The bill of `tenant` (one department's view if `department` is set) for `period`, as
/// of `now`.
///
/// - A finalized period's bill uses only the events received before it was finalized, so
///   it never changes.
/// - Events received later for a finalized period F become `Correction` lines in the bill
///   of the period in which they were received: the difference between F's bill from the
///   events received before and after that stretch of time.
/// - Usage still running is counted up to `now` (or the period's end).
pub fn tenant_bill(
    ledger: &dyn Ledger,
    card: &RateCard,
    tenant: &str,
    department: Option<&str>,
    period: Period,
    now: OffsetDateTime,
) -> Result<Bill, String> {
    let finalized = finalized(ledger)?;
    let finalized_at = finalized
        .iter()
        .find(|(p, _)| *p == period)
        .map(|(_, at)| *at);
    let horizon = finalized_at.unwrap_or(now);
    let mut bill = regular_bill(
        ledger,
        card,
        tenant,
        department,
        period,
        now.min(period.end()),
        horizon,
    )?;
    let mut corrections = Vec::new();
    for (earlier, at) in finalized.iter().filter(|(p, _)| *p < period) {
        let from = (*at).max(period.start());
        let to = horizon.min(period.end());
        if to <= from {
            continue;
        }
        let before = regular_bill(
            ledger,
            card,
            tenant,
            department,
            *earlier,
            earlier.end(),
            from,
        )?;
        let after = regular_bill(
            ledger,
            card,
            tenant,
            department,
            *earlier,
            earlier.end(),
            to,
        )?;
        corrections.extend(correction_lines(&before, &after));
    }
    if !corrections.is_empty() {
        let mut lines = std::mem::take(&mut bill.lines);
        lines.extend(corrections);
        bill = Bill::from_lines(tenant, department, period, &card.currency, lines);
    }
    bill.finalized = finalized_at.is_some();
    Ok(bill)
}

/// Finalizes `period` as of `now`: refused until the period has ended, and once done.
pub fn finalize(
    ledger: &dyn Ledger,
    period: Period,
    now: OffsetDateTime,
) -> Result<String, String> {
    if now < period.end() {
        return Err(format!(
            "period {period} has not ended yet (it ends at {})",
            ledger_time(period.end())
        ));
    }
    ledger.finalize(&period.to_string(), now.into())
}

/// Every tenant's bill for `period`, as of `now`.
pub fn all_bills(
    ledger: &dyn Ledger,
    card: &RateCard,
    period: Period,
    now: OffsetDateTime,
) -> Result<Vec<Bill>, String> {
    // Corrections for earlier periods can concern tenants with no event in this one.
    let from = finalized(ledger)?
        .first()
        .map_or(period.start(), |(p, _)| p.start().min(period.start()));
    let tenants = ledger
        .tenants(&ledger_time(from), &ledger_time(period.end()))
        .map_err(|e| e.to_string())?;
    tenants
        .iter()
        .map(|tenant| tenant_bill(ledger, card, tenant, None, period, now))
        .collect()
}

/// Usage records of `tenant` (one department's if set) over `[from, to)`, cut into
/// intervals of `interval_secs`, as of `now`.
pub fn usage(
    ledger: &dyn Ledger,
    tenant: &str,
    department: Option<&str>,
    from: OffsetDateTime,
    to: OffsetDateTime,
    interval_secs: i64,
    now: OffsetDateTime,
) -> Result<serde_json::Value, String> {
    let mut out = Vec::new();
    for instance in instance_usage(ledger, tenant, to.min(now), now)? {
        if department.is_some() && instance.department.as_deref() != department {
            continue;
        }
        let slices: Vec<_> = cut_slices(instance.slices.clone(), &[from, to])
            .into_iter()
            .filter(|s| s.start >= from && s.start < to)
            .collect();
        for record in usage_records(&slices, interval_secs) {
            let mut value = serde_json::to_value(&record).map_err(|e| e.to_string())?;
            value["instance_id"] = instance.instance_id.clone().into();
            value["provider"] = instance.provider.clone().into();
            value["region"] = instance.region.clone().into();
            value["department"] = instance.department.clone().into();
            out.push(value);
        }
    }
    Ok(serde_json::Value::Array(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record_types::built_in;
    use crate::validate::Limits;
    use skyport_plugin_api::ops::MeterEvent;
    use time::macros::datetime;

    fn ledger(tag: &str) -> (SqliteLedger, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("billing-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut ledger = SqliteLedger::open(&dir).unwrap();
        for t in built_in() {
            ledger
                .register(&t, std::time::SystemTime::UNIX_EPOCH)
                .unwrap();
        }
        (ledger, dir)
    }

    fn lifecycle(id: &str, instance: &str, event: &str, time: OffsetDateTime) -> MeterEvent {
        MeterEvent {
            id: id.into(),
            record_type: "instance.lifecycle".into(),
            time: ledger_time(time),
            tenant: "demo".into(),
            department: Some("finance".into()),
            attributes: serde_json::json!({
                "event": event, "instance_id": instance, "provider": "local-vmm",
                "region": "local-1", "instance_type": "sp.micro", "vcpus": 1, "memory_mib": 128,
            }),
        }
    }

    fn ingest(ledger: &mut dyn Ledger, events: &[MeterEvent], received: OffsetDateTime) {
        let outcome = ledger
            .ingest(events, &Limits::default(), received.into())
            .unwrap();
        assert!(outcome.rejected.is_empty(), "{outcome:?}");
    }

    /// METERING.md case 8: a late event for a finalized period leaves that bill unchanged
    /// and lands as a Correction in the period it arrived in.
    #[test]
    fn late_events_for_a_finalized_period_become_corrections_in_the_open_one() {
        let (mut ledger, dir) = ledger("late");
        let card = RateCard::embedded();
        ingest(
            &mut ledger,
            &[
                lifecycle("e1", "i-1", "run", datetime!(2026-10-30 10:00 UTC)),
                lifecycle("e2", "i-1", "terminate", datetime!(2026-10-30 12:00 UTC)),
            ],
            datetime!(2026-10-30 12:00:01 UTC),
        );
        let october = Period::parse("2026-10").unwrap();
        let november = Period::parse("2026-11").unwrap();
        assert!(finalize(&ledger, november, datetime!(2026-11-02 0:00 UTC))
            .unwrap_err()
            .contains("has not ended"));
        finalize(&ledger, october, datetime!(2026-11-02 0:00 UTC)).unwrap();
        assert!(finalize(&ledger, october, datetime!(2026-11-03 0:00 UTC))
            .unwrap_err()
            .contains("was finalized at 2026-11-02T00:00:00.000Z"));
        let bill_of = |ledger: &dyn Ledger, period, now| {
            serde_json::to_string(&tenant_bill(ledger, &card, "demo", None, period, now).unwrap())
                .unwrap()
        };
        let final_october = bill_of(&ledger, october, datetime!(2026-11-05 0:00 UTC));
        assert!(
            final_october.contains(r#""total":"0.01""#)
                && final_october.contains(r#""finalized":true"#),
            "{final_october}"
        );

        // Late: i-2 ran 20:00-22:00 on October 31, reported on November 10.
        ingest(
            &mut ledger,
            &[
                lifecycle("e3", "i-2", "run", datetime!(2026-10-31 20:00 UTC)),
                lifecycle("e4", "i-2", "terminate", datetime!(2026-10-31 22:00 UTC)),
            ],
            datetime!(2026-11-10 0:00 UTC),
        );
        let now = datetime!(2026-11-20 0:00 UTC);
        assert_eq!(
            bill_of(&ledger, october, now),
            final_october,
            "a finalized bill never changes"
        );
        let november_bill = tenant_bill(&ledger, &card, "demo", None, november, now).unwrap();
        assert_eq!(november_bill.lines.len(), 1, "{november_bill:?}");
        assert!(!november_bill.finalized);
        let correction = &november_bill.lines[0];
        assert_eq!(correction.charge_class.as_deref(), Some("Correction"));
        assert_eq!(correction.resource_id.as_deref(), Some("i-2"));
        assert_eq!(correction.pricing_quantity, "2".parse().unwrap());
        assert_eq!(correction.charge_period_start, october.start());
        assert_eq!(november_bill.total.to_string(), "0.01");
        // December's bill does not repeat November's correction.
        let december = Period::parse("2026-12").unwrap();
        let december_bill = tenant_bill(
            &ledger,
            &card,
            "demo",
            None,
            december,
            datetime!(2026-12-05 0:00 UTC),
        )
        .unwrap();
        assert!(december_bill.lines.is_empty(), "{december_bill:?}");
        // Every tenant's bill, for operators.
        let all = all_bills(&ledger, &card, november, now).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].tenant, "demo");
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A line carries the tags of its instance's latest lifecycle event.
    #[test]
    fn lines_carry_the_latest_tags() {
        let (mut ledger, dir) = ledger("tags");
        let tagged = |id: &str, event: &str, time, tags: serde_json::Value| {
            let mut e = lifecycle(id, "i-1", event, time);
            e.attributes["tags"] = tags;
            e
        };
        ingest(
            &mut ledger,
            &[
                tagged(
                    "e1",
                    "run",
                    datetime!(2026-11-02 10:00 UTC),
                    serde_json::json!({"project": "old"}),
                ),
                tagged(
                    "e2",
                    "stop",
                    datetime!(2026-11-02 11:00 UTC),
                    serde_json::json!({"project": "apollo", "tier": 2}),
                ),
            ],
            datetime!(2026-11-02 11:00:01 UTC),
        );
        let period = Period::parse("2026-11").unwrap();
        let bill = tenant_bill(
            &ledger,
            &RateCard::embedded(),
            "demo",
            None,
            period,
            datetime!(2026-11-03 0:00 UTC),
        )
        .unwrap();
        let tags = &bill.lines[0].tags;
        assert_eq!(tags["project"], "apollo");
        assert_eq!(tags["tier"], "2");
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// METERING.md case 10: stored times are UTC, and month boundaries are exact to the
    /// millisecond.
    #[test]
    fn month_boundaries_are_exact_in_utc() {
        let (mut ledger, dir) = ledger("utc");
        let card = RateCard::embedded();
        ingest(
            &mut ledger,
            &[
                lifecycle("e1", "i-1", "run", datetime!(2026-11-30 23:59:59.999 UTC)),
                lifecycle(
                    "e2",
                    "i-1",
                    "terminate",
                    datetime!(2026-12-01 00:00:00.001 UTC),
                ),
            ],
            datetime!(2026-12-01 0:00:01 UTC),
        );
        let now = datetime!(2026-12-02 0:00 UTC);
        let nov = tenant_bill(
            &ledger,
            &card,
            "demo",
            None,
            Period::parse("2026-11").unwrap(),
            now,
        )
        .unwrap();
        let dec = tenant_bill(
            &ledger,
            &card,
            "demo",
            None,
            Period::parse("2026-12").unwrap(),
            now,
        )
        .unwrap();
        let ms = |b: &Bill| {
            (b.lines[0].charge_period_end - b.lines[0].charge_period_start).whole_milliseconds()
        };
        assert_eq!((ms(&nov), ms(&dec)), (1, 1));
        assert_eq!(
            nov.lines[0].charge_period_end,
            datetime!(2026-12-01 0:00 UTC)
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
