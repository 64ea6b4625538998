//! FOCUS 1.2 CSV: the 21 mandatory columns, then the optional ones our data supports, then
//! custom `x_` columns. Decimals carry no units or separators, NULL is an empty field, and
//! timestamps are `YYYY-MM-DDTHH:mm:ssZ`. Charge periods are shown to the second: starts
//! rounded down, exclusive ends rounded up, so a period never looks empty.

use rust_decimal::Decimal;

use super::{focus_time, RecordHandler};
use crate::bill::{Bill, BillLine};

/// Column order of the export.
pub const COLUMNS: [&str; 40] = [
    // Mandatory (FOCUS 1.2).
    "BilledCost",
    "BillingAccountId",
    "BillingAccountName",
    "BillingCurrency",
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "ContractedCost",
    "EffectiveCost",
    "InvoiceIssuerName",
    "ListCost",
    "PricingQuantity",
    "PricingUnit",
    "ProviderName",
    "PublisherName",
    "ServiceCategory",
    "ServiceName",
    // Optional columns our data supports.
    "ChargeFrequency",
    "ConsumedQuantity",
    "ConsumedUnit",
    "ContractedUnitPrice",
    "InvoiceId",
    "ListUnitPrice",
    "RegionId",
    "RegionName",
    "ResourceId",
    "ResourceName",
    "ResourceType",
    "ServiceSubcategory",
    "SkuId",
    "SkuPriceId",
    "SubAccountId",
    "SubAccountName",
    "Tags",
    // Custom.
    "x_Department",
    "x_MeteringException",
];

/// The broker: issuer and provider of every charge, and publisher of its own services.
const BROKER: &str = "Skyport";

pub(super) struct Focus;

fn end_rounded_up(time: time::OffsetDateTime) -> String {
    let whole = time.replace_nanosecond(0).unwrap_or(time);
    focus_time(if whole < time {
        whole + time::Duration::SECOND
    } else {
        whole
    })
}

fn row(bill: &Bill, line: &BillLine) -> Vec<String> {
    let d = |v: Decimal| v.normalize().to_string();
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    let compute = line.resource_id.is_some();
    // Local VMs and Skyport's own API are the operator's: publisher = broker.
    let publisher = match line.provider.as_str() {
        "local-vmm" | "skyport" => BROKER.to_string(),
        other => other.to_string(),
    };
    let (consumed, consumed_unit) = if compute {
        (d(line.pricing_quantity), "Hours")
    } else {
        (d(line.pricing_quantity * Decimal::from(1000)), "Requests")
    };
    let exceptions: Vec<String> = line.exceptions.iter().map(|e| format!("{e:?}")).collect();
    let list_cost = line.unit_price * line.pricing_quantity;
    // Only a finalized period's bill is a statement the charges are on; an open period's
    // charges are on no invoice yet, so their InvoiceId is null (FOCUS InvoiceId-C-004).
    let invoice = if bill.finalized {
        format!("{}-{}", bill.tenant, bill.period)
    } else {
        String::new()
    };
    // A JSON object of the resource's tags, or null.
    let tags = if line.tags.is_empty() {
        String::new()
    } else {
        serde_json::to_string(&line.tags).unwrap_or_default()
    };
    vec![
        d(line.cost),
        bill.tenant.clone(),
        bill.tenant.clone(),
        bill.currency.clone(),
        focus_time(bill.period_end),
        focus_time(bill.period_start),
        "Usage".into(),
        opt(&line.charge_class),
        line.description.clone(),
        end_rounded_up(line.charge_period_end),
        focus_time(line.charge_period_start),
        d(line.cost),
        d(line.cost),
        BROKER.into(),
        d(list_cost),
        d(line.pricing_quantity),
        line.pricing_unit.clone(),
        BROKER.into(),
        publisher,
        if compute {
            "Compute"
        } else {
            "Management and Governance"
        }
        .into(),
        if compute {
            "Skyport Compute"
        } else {
            "Skyport API"
        }
        .into(),
        "Usage-Based".into(),
        consumed,
        consumed_unit.into(),
        d(line.unit_price),
        invoice,
        d(line.unit_price),
        opt(&line.region),
        opt(&line.region),
        opt(&line.resource_id),
        String::new(),
        if compute { "Virtual Machine" } else { "" }.into(),
        if compute {
            "Virtual Machines"
        } else {
            "Other (Management and Governance)"
        }
        .into(),
        line.sku.clone(),
        format!("{}@{}", line.sku, line.provider),
        opt(&line.department),
        opt(&line.department),
        tags,
        opt(&line.department),
        exceptions.join(";"),
    ]
}

impl RecordHandler for Focus {
    fn name(&self) -> &'static str {
        "focus"
    }
    fn content_type(&self) -> &'static str {
        "text/csv"
    }
    fn render(&self, bill: &Bill) -> Result<String, String> {
        let mut out = csv::Writer::from_writer(Vec::new());
        out.write_record(COLUMNS).map_err(|e| e.to_string())?;
        for line in &bill.lines {
            out.write_record(row(bill, line))
                .map_err(|e| e.to_string())?;
        }
        String::from_utf8(out.into_inner().map_err(|e| e.to_string())?).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::bill::{build_bill, ApiUsage, BillInputs, InstanceUsage};
    use crate::period::Period;
    use crate::rating::RateCard;
    use crate::usage::{running_slices, LifecycleEvent};
    use time::macros::datetime;

    fn sample_bill() -> Bill {
        let event = |time, event: &str| LifecycleEvent::sample(time, event, "sp.small", 1, 256);
        let slices = running_slices(
            &[
                event(datetime!(2026-11-03 00:00:00.250 UTC), "run"),
                event(datetime!(2026-11-03 02:00:00.750 UTC), "stop"),
            ],
            datetime!(2026-11-30 0:00 UTC),
        );
        let instances = [
            InstanceUsage {
                instance_id: "i-0a1b2c3d4e5f60718".into(),
                provider: "local-vmm".into(),
                region: "local-1".into(),
                department: Some("finance".into()),
                tags: BTreeMap::from([("project".into(), "apollo".into())]),
                offering: Some("dev-vm".into()),
                slices: slices.clone(),
            },
            InstanceUsage {
                instance_id: "i-0a1b2c3d4e5f60719".into(),
                provider: "aws-us-east-1".into(),
                region: "aws-us-east-1".into(),
                department: None,
                tags: BTreeMap::new(),
                offering: None,
                slices,
            },
        ];
        let api = [ApiUsage {
            department: Some("finance".into()),
            requests: 35,
        }];
        build_bill(&BillInputs {
            tenant: "acme",
            department: None,
            period: Period::parse("2026-11").unwrap(),
            instances: &instances,
            api: &api,
            card: &RateCard::embedded(),
        })
        .unwrap()
    }

    fn is_focus_time(s: &str) -> bool {
        s.len() == 20
            && s.ends_with('Z')
            && time::PrimitiveDateTime::parse(
                &s[..19],
                time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
            )
            .is_ok()
    }

    /// Strict per-row checks: types, nulls, Z timestamps, exclusive ends, ListCost =
    /// ListUnitPrice x PricingQuantity, and costs per InvoiceId that sum to the bill.
    #[test]
    fn every_row_follows_the_focus_rules() {
        let mut bill = sample_bill();
        // An open period's charges are on no invoice yet.
        let open = Focus.render(&bill).unwrap();
        let mut reader = csv::Reader::from_reader(open.as_bytes());
        let invoice = COLUMNS.iter().position(|c| *c == "InvoiceId").unwrap();
        for record in reader.records() {
            assert_eq!(&record.unwrap()[invoice], "", "{open}");
        }
        bill.finalized = true;
        let text = Focus.render(&bill).unwrap();
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let header: Vec<String> = reader
            .headers()
            .unwrap()
            .iter()
            .map(str::to_owned)
            .collect();
        assert_eq!(header, COLUMNS);
        let mut per_invoice: BTreeMap<String, Decimal> = BTreeMap::new();
        let mut rows = 0;
        for record in reader.records() {
            let record = record.unwrap();
            let field: BTreeMap<&str, &str> = COLUMNS.iter().copied().zip(record.iter()).collect();
            rows += 1;
            for column in &COLUMNS[..21] {
                let nullable = *column == "ChargeClass";
                assert!(nullable || !field[column].is_empty(), "{column} is null");
            }
            for column in [
                "BilledCost",
                "ContractedCost",
                "EffectiveCost",
                "ListCost",
                "PricingQuantity",
                "ConsumedQuantity",
                "ListUnitPrice",
                "ContractedUnitPrice",
            ] {
                let value = field[column];
                assert!(
                    value.parse::<Decimal>().is_ok() && !value.contains(['$', ',', ' ', 'e', 'E']),
                    "{column} = {value}"
                );
            }
            for column in [
                "BillingPeriodStart",
                "BillingPeriodEnd",
                "ChargePeriodStart",
                "ChargePeriodEnd",
            ] {
                assert!(is_focus_time(field[column]), "{column} = {}", field[column]);
            }
            assert!(field["ChargePeriodEnd"] > field["ChargePeriodStart"]);
            assert!(field["BillingPeriodEnd"] > field["BillingPeriodStart"]);
            assert!(field["ChargePeriodStart"] >= field["BillingPeriodStart"]);
            assert!(field["ChargePeriodEnd"] <= field["BillingPeriodEnd"]);
            let dec = |c: &str| field[c].parse::<Decimal>().unwrap();
            assert_eq!(
                dec("ListCost"),
                dec("ListUnitPrice") * dec("PricingQuantity")
            );
            assert_eq!(dec("BilledCost"), dec("ListCost"));
            assert_eq!(field["ProviderName"], "Skyport");
            assert_eq!(field["InvoiceIssuerName"], "Skyport");
            // NULL is empty, never a placeholder.
            for value in record.iter() {
                assert!(
                    !["null", "NULL", "None", "N/A"].contains(&value),
                    "{record:?}"
                );
            }
            *per_invoice
                .entry(field["InvoiceId"].to_string())
                .or_default() += dec("BilledCost");
        }
        assert_eq!(rows, bill.lines.len());
        assert_eq!(per_invoice.len(), 1);
        assert_eq!(
            crate::bill::round_minor(per_invoice["acme-2026-11"]),
            bill.total
        );
        // Publisher: the operator for local VMs, the cloud's name otherwise.
        assert!(text.contains(",Skyport,Skyport,Compute,Skyport Compute,"));
        assert!(text.contains(",Skyport,aws-us-east-1,Compute,"));
        // Tags as a JSON object, null where there are none.
        assert!(
            text.contains(r#","{""project"":""apollo""}",finance,"#),
            "{text}"
        );
        assert!(
            text.contains(",sp.small,sp.small@aws-us-east-1,,,,,"),
            "{text}"
        );
        // Sub-second charge periods: start rounded down, exclusive end rounded up.
        assert!(text.contains("2026-11-03T02:00:01Z,2026-11-03T00:00:00Z"));
    }
}
