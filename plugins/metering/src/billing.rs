//! From the ledger to a bill: reads a tenant's events, replays each instance's lifecycle
//! into running slices, counts API requests, and prices them with the rate card.

use std::collections::BTreeMap;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::bill::{build_bill, ApiUsage, Bill, BillInputs, InstanceUsage};
use crate::ledger::Ledger;
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

/// Every instance of `tenant` with its running slices, as known on `now`, up to `until`.
pub fn instance_usage(
    ledger: &Ledger,
    tenant: &str,
    until: OffsetDateTime,
) -> Result<Vec<InstanceUsage>, String> {
    let rows = ledger
        .lifecycle_rows(tenant, &ledger_time(until))
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
                    slices: Vec::new(),
                },
                Vec::new(),
            )
        });
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

/// The bill of `tenant` (one department's view if `department` is set) for `period`, as
/// of `now`: usage still running is counted up to `now` (or the period's end).
pub fn tenant_bill(
    ledger: &Ledger,
    card: &RateCard,
    tenant: &str,
    department: Option<&str>,
    period: Period,
    now: OffsetDateTime,
) -> Result<Bill, String> {
    let until = now.min(period.end());
    let instances = instance_usage(ledger, tenant, until)?;
    let api: Vec<ApiUsage> = ledger
        .api_request_counts(
            tenant,
            &ledger_time(period.start()),
            &ledger_time(period.end()),
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

/// Usage records of `tenant` (one department's if set) over `[from, to)`, cut into
/// intervals of `interval_secs`, as of `now`.
pub fn usage(
    ledger: &Ledger,
    tenant: &str,
    department: Option<&str>,
    from: OffsetDateTime,
    to: OffsetDateTime,
    interval_secs: i64,
    now: OffsetDateTime,
) -> Result<serde_json::Value, String> {
    let mut out = Vec::new();
    for instance in instance_usage(ledger, tenant, to.min(now))? {
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
