//! CSR lines (the Tivoli Usage and Accounting Manager input): per bill line, record type,
//! start and end date (`YYYYMMDD`), start and end time (`HH:MM:SS`, the end inclusive),
//! shift, the identifiers (name and quoted value), then the resources (rate code and
//! unquoted quantity). `Account_Code` is `tenant/department` (`tenant` alone without one).

use rust_decimal::Decimal;
use time::OffsetDateTime;

use super::RecordHandler;
use crate::bill::{Bill, BillLine};

pub(super) struct Csr;

/// CSR record type.
const RECORD_TYPE: &str = "SKYPORT";
/// Shift digit: one shift.
const SHIFT: u8 = 1;

/// `SPSMALLH` for `sp.small` hours; `SPAPIREQ` for API requests.
fn rate_code(line: &BillLine) -> String {
    if line.resource_id.is_none() {
        return "SPAPIREQ".into();
    }
    let mut code: String = line
        .sku
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_uppercase())
        .collect();
    code.push('H');
    code
}

fn date(t: OffsetDateTime) -> String {
    format!("{:04}{:02}{:02}", t.year(), t.month() as u8, t.day())
}

fn clock(t: OffsetDateTime) -> String {
    format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second())
}

fn quote(value: &str) -> String {
    format!("\"{}\"", value.replace('"', "'"))
}

fn record(bill: &Bill, line: &BillLine) -> String {
    let start = line.charge_period_start;
    // The inclusive last second of [start, end).
    let last = (line.charge_period_end - time::Duration::MILLISECOND).max(start);
    let account = match &line.department {
        Some(department) => format!("{}/{department}", bill.tenant),
        None => bill.tenant.clone(),
    };
    let mut identifiers = vec![
        ("Account_Code", account),
        ("Provider", line.provider.clone()),
    ];
    if let Some(region) = &line.region {
        identifiers.push(("Region", region.clone()));
    }
    if let Some(id) = &line.resource_id {
        identifiers.push(("Instance", id.clone()));
    }
    let quantity = if line.resource_id.is_some() {
        format!("{:.6}", line.pricing_quantity)
    } else {
        (line.pricing_quantity * Decimal::from(1000))
            .normalize()
            .to_string()
    };
    let mut fields = vec![
        RECORD_TYPE.to_string(),
        date(start),
        date(last),
        clock(start),
        clock(last),
        SHIFT.to_string(),
        identifiers.len().to_string(),
    ];
    for (name, value) in identifiers {
        fields.push(name.into());
        fields.push(quote(&value));
    }
    fields.extend(["1".into(), rate_code(line), quantity]);
    fields.join(",")
}

impl RecordHandler for Csr {
    fn name(&self) -> &'static str {
        "csr"
    }
    fn content_type(&self) -> &'static str {
        "text/plain"
    }
    fn render(&self, bill: &Bill) -> Result<String, String> {
        Ok(bill
            .lines
            .iter()
            .map(|line| record(bill, line) + "\n")
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bill::{build_bill, ApiUsage, BillInputs, InstanceUsage};
    use crate::period::Period;
    use crate::rating::RateCard;
    use crate::usage::{running_slices, LifecycleEvent};
    use time::macros::datetime;

    #[test]
    fn lines_have_the_csr_shape() {
        let event = |time, event: &str| LifecycleEvent::sample(time, event, "sp.small", 1, 256);
        let instances = [InstanceUsage {
            instance_id: "i-0a1b2c3d4e5f60718".into(),
            provider: "local-vmm".into(),
            region: "local-1".into(),
            department: Some("finance".into()),
            tags: Default::default(),
            offering: None,
            slices: running_slices(
                &[
                    event(datetime!(2026-11-03 0:00 UTC), "run"),
                    event(datetime!(2026-11-03 2:00 UTC), "stop"),
                ],
                datetime!(2026-11-30 0:00 UTC),
            ),
        }];
        let api = [ApiUsage {
            department: Some("finance".into()),
            requests: 35,
        }];
        let bill = build_bill(&BillInputs {
            tenant: "acme",
            department: None,
            period: Period::parse("2026-11").unwrap(),
            instances: &instances,
            api: &api,
            card: &RateCard::embedded(),
        })
        .unwrap();
        let text = Csr.render(&bill).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            r#"SKYPORT,20261103,20261103,00:00:00,01:59:59,1,4,Account_Code,"acme/finance",Provider,"local-vmm",Region,"local-1",Instance,"i-0a1b2c3d4e5f60718",1,SPSMALLH,2.000000"#
        );
        assert_eq!(
            lines[1],
            r#"SKYPORT,20261101,20261130,00:00:00,23:59:59,1,2,Account_Code,"acme/finance",Provider,"skyport",1,SPAPIREQ,35"#
        );
    }
}
