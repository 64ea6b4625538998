//! The consolidated bill: one per tenant and period, across every provider, with
//! subtotals per provider and per department.
//!
//! Lines keep full `Decimal` precision. Only the invoice total is rounded to the
//! currency's minor unit (cents, half away from zero); subtotals are that rounded total
//! split by largest remainder, so they always sum to it exactly. The bill is a pure
//! function of its inputs: the same ledger gives the same bytes.

use std::collections::BTreeMap;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::Serialize;
use time::OffsetDateTime;

use crate::period::Period;
use crate::rating::{RateCard, Unit, API_REQUESTS};
use crate::usage::{cut_slices, Exception, Slice};

/// Minor-unit digits of the currency.
const MINOR_UNIT_DIGITS: u32 = 2;
/// Decimals of a quantity in hours.
const HOURS_DIGITS: u32 = 12;
/// Subtotal key for usage without a department.
pub const NO_DEPARTMENT: &str = "(none)";

/// One instance's running time, as the bill needs it.
#[derive(Debug, Clone)]
pub struct InstanceUsage {
    /// Skyport instance id.
    pub instance_id: String,
    /// Provider instance name.
    pub provider: String,
    /// Region.
    pub region: String,
    /// Department billed.
    pub department: Option<String>,
    /// Its tags, as its latest lifecycle event carried them.
    pub tags: BTreeMap<String, String>,
    /// The offering it was ordered as, when its events name one.
    pub offering: Option<String>,
    /// Running slices (any period; the bill keeps what falls in its own).
    pub slices: Vec<Slice>,
}

/// API requests of one department in the period.
#[derive(Debug, Clone)]
pub struct ApiUsage {
    /// Department, if the requests named one.
    pub department: Option<String>,
    /// Number of requests.
    pub requests: u64,
}

/// One priced line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BillLine {
    /// Provider instance name (`skyport` for API requests).
    pub provider: String,
    /// Region, when the line is a resource's.
    pub region: Option<String>,
    /// Department billed.
    pub department: Option<String>,
    /// Skyport resource id, when the line is a resource's.
    pub resource_id: Option<String>,
    /// SKU: instance type or `api.requests`.
    pub sku: String,
    /// Human description.
    pub description: String,
    /// Start of the charge period (inclusive).
    #[serde(with = "time::serde::rfc3339")]
    pub charge_period_start: OffsetDateTime,
    /// End of the charge period (exclusive).
    #[serde(with = "time::serde::rfc3339")]
    pub charge_period_end: OffsetDateTime,
    /// Quantity in `pricing_unit`.
    pub pricing_quantity: Decimal,
    /// `Hours` or `1000 Requests`.
    pub pricing_unit: String,
    /// Price per unit.
    pub unit_price: Decimal,
    /// `unit_price x pricing_quantity`, exactly.
    pub cost: Decimal,
    /// Metering exceptions.
    pub exceptions: Vec<Exception>,
    /// `Correction` for a late change to a finalized period; absent for regular lines.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub charge_class: Option<String>,
    /// The resource's tags (none for API requests).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// The offering the resource was ordered as (none for API requests and raw orders
    /// metered before offerings were recorded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offering: Option<String>,
}

/// Subtotals.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Subtotals {
    /// Per provider.
    pub providers: BTreeMap<String, Decimal>,
    /// Per department ([`NO_DEPARTMENT`] for usage without one).
    pub departments: BTreeMap<String, Decimal>,
}

/// A tenant's bill for one period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bill {
    /// Tenant.
    pub tenant: String,
    /// Department, when the bill is one department's view.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    /// `YYYY-MM`.
    pub period: String,
    /// Period start.
    #[serde(with = "time::serde::rfc3339")]
    pub period_start: OffsetDateTime,
    /// Period end (exclusive).
    #[serde(with = "time::serde::rfc3339")]
    pub period_end: OffsetDateTime,
    /// Currency.
    pub currency: String,
    /// Priced lines, ordered by provider, resource and time.
    pub lines: Vec<BillLine>,
    /// Rounded subtotals that sum to `total`.
    pub subtotals: Subtotals,
    /// Sum of the lines, rounded to the minor unit.
    pub total: Decimal,
    /// Whether the period is finalized: its bill no longer changes, and it is the
    /// statement its lines are charged on.
    pub finalized: bool,
}

/// Rounds to the currency's minor unit, half away from zero.
/// The result always shows the minor unit's digits (`0.50`, not `0.5`).
pub fn round_minor(amount: Decimal) -> Decimal {
    let mut rounded =
        amount.round_dp_with_strategy(MINOR_UNIT_DIGITS, RoundingStrategy::MidpointAwayFromZero);
    rounded.rescale(MINOR_UNIT_DIGITS);
    rounded
}

/// Rounds each of `parts` (exact amounts that add up to about `total`, the rounded sum) so
/// that the rounded parts sum to `total` exactly: each part gets its floor, and the minor
/// units left over go to the largest remainders (ties to the earlier key). Works with
/// negative parts (corrections) too.
pub fn largest_remainder(
    total: Decimal,
    parts: &BTreeMap<String, Decimal>,
) -> BTreeMap<String, Decimal> {
    let unit = Decimal::new(1, MINOR_UNIT_DIGITS);
    let mut shares: Vec<(String, Decimal, Decimal)> = parts
        .iter()
        .map(|(key, exact)| {
            let floor = exact
                .round_dp_with_strategy(MINOR_UNIT_DIGITS, RoundingStrategy::ToNegativeInfinity);
            (key.clone(), floor, *exact - floor)
        })
        .collect();
    let assigned: Decimal = shares.iter().map(|(_, floor, _)| *floor).sum();
    // Between 0 and the number of parts: each floor lost less than one minor unit.
    let left = ((total - assigned) / unit).round().mantissa().max(0) as usize;
    let mut order: Vec<usize> = (0..shares.len()).collect();
    order.sort_by(|a, b| shares[*b].2.cmp(&shares[*a].2).then(a.cmp(b)));
    for i in order.into_iter().take(left) {
        shares[i].1 += unit;
    }
    shares
        .into_iter()
        .map(|(k, v, _)| (k, round_minor(v)))
        .collect()
}

/// Splits `total` (in minor units) by `weights`: 1.00 over three equal weights is 0.34,
/// 0.33, 0.33.
pub fn split_by_weight(
    total: Decimal,
    weights: &BTreeMap<String, Decimal>,
) -> BTreeMap<String, Decimal> {
    let sum: Decimal = weights.values().sum();
    if sum.is_zero() {
        return weights
            .keys()
            .map(|k| (k.clone(), round_minor(Decimal::ZERO)))
            .collect();
    }
    let exact = weights
        .iter()
        .map(|(k, w)| (k.clone(), total * w / sum))
        .collect();
    largest_remainder(total, &exact)
}

/// Lines that turn the `before` bill of a finalized period into the `after` one (late
/// events), as `Correction` lines: per resource, SKU, department and price, the change in
/// quantity and cost, over the finalized period.
pub fn correction_lines(before: &Bill, after: &Bill) -> Vec<BillLine> {
    type Key = (
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        String,
        Decimal,
    );
    let key = |l: &BillLine| -> Key {
        (
            l.provider.clone(),
            l.region.clone(),
            l.department.clone(),
            l.resource_id.clone(),
            l.sku.clone(),
            l.unit_price,
        )
    };
    let mut delta: BTreeMap<Key, (Decimal, Decimal, BillLine)> = BTreeMap::new();
    for (sign, bill) in [(Decimal::NEGATIVE_ONE, before), (Decimal::ONE, after)] {
        for line in bill.lines.iter().filter(|l| l.charge_class.is_none()) {
            let entry = delta
                .entry(key(line))
                .or_insert_with(|| (Decimal::ZERO, Decimal::ZERO, line.clone()));
            entry.0 += sign * line.pricing_quantity;
            entry.1 += sign * line.cost;
        }
    }
    delta
        .into_values()
        .filter(|(quantity, cost, _)| !quantity.is_zero() || !cost.is_zero())
        .map(|(quantity, cost, line)| BillLine {
            description: format!("Correction for {}: {}", after.period, line.description),
            charge_class: Some("Correction".into()),
            charge_period_start: after.period_start,
            charge_period_end: after.period_end,
            pricing_quantity: quantity.normalize(),
            cost: cost.normalize(),
            exceptions: vec![],
            ..line
        })
        .collect()
}

/// Everything a bill is computed from.
pub struct BillInputs<'a> {
    /// Tenant.
    pub tenant: &'a str,
    /// Only this department's usage, if set.
    pub department: Option<&'a str>,
    /// Period.
    pub period: Period,
    /// Instances with their slices.
    pub instances: &'a [InstanceUsage],
    /// API requests per department in the period.
    pub api: &'a [ApiUsage],
    /// Prices.
    pub card: &'a RateCard,
}

/// Prices the period's usage into a bill.
pub fn build_bill(inputs: &BillInputs<'_>) -> Result<Bill, String> {
    let (start, end) = (inputs.period.start(), inputs.period.end());
    let in_scope = |department: &Option<String>| {
        inputs.department.is_none() || department.as_deref() == inputs.department
    };
    let mut cuts = vec![start, end];
    cuts.extend(inputs.card.boundaries());
    let mut lines = Vec::new();
    for instance in inputs.instances.iter().filter(|i| in_scope(&i.department)) {
        for slice in cut_slices(instance.slices.clone(), &cuts) {
            if slice.start < start || slice.start >= end {
                continue;
            }
            let rate = inputs.card.lookup(
                &slice.capacity.instance_type,
                &instance.provider,
                slice.start,
            )?;
            if rate.unit != Unit::Hour {
                return Err(format!(
                    "the rate for {} must be per hour",
                    slice.capacity.instance_type
                ));
            }
            // Hours to 12 decimals (3.6 ns), so that cost = unit price x quantity exactly.
            let millis = Decimal::from_i128_with_scale(slice.millis(), 0);
            let hours = (millis / Decimal::from(3_600_000))
                .round_dp_with_strategy(HOURS_DIGITS, RoundingStrategy::MidpointAwayFromZero);
            lines.push(BillLine {
                provider: instance.provider.clone(),
                region: Some(instance.region.clone()),
                department: instance.department.clone(),
                resource_id: Some(instance.instance_id.clone()),
                sku: slice.capacity.instance_type.clone(),
                description: format!(
                    "{} ({} vCPU, {} MiB) on {}",
                    slice.capacity.instance_type,
                    slice.capacity.vcpus,
                    slice.capacity.memory_mib,
                    instance.provider
                ),
                charge_period_start: slice.start,
                charge_period_end: slice.end,
                pricing_quantity: hours.normalize(),
                pricing_unit: rate.unit.pricing_unit().into(),
                unit_price: rate.price,
                cost: (rate.price * hours).normalize(),
                exceptions: slice.exceptions.clone(),
                charge_class: None,
                tags: instance.tags.clone(),
                offering: instance.offering.clone(),
            });
        }
    }
    for api in inputs
        .api
        .iter()
        .filter(|a| in_scope(&a.department) && a.requests > 0)
    {
        let rate = inputs.card.lookup(API_REQUESTS, "skyport", start)?;
        let thousands = Decimal::from(api.requests) / Decimal::from(1000);
        lines.push(BillLine {
            provider: "skyport".into(),
            region: None,
            department: api.department.clone(),
            resource_id: None,
            sku: API_REQUESTS.into(),
            description: format!("{} API requests", api.requests),
            charge_period_start: start,
            charge_period_end: end,
            pricing_quantity: thousands.normalize(),
            pricing_unit: rate.unit.pricing_unit().into(),
            unit_price: rate.price,
            cost: (rate.price * thousands).normalize(),
            exceptions: vec![],
            charge_class: None,
            tags: BTreeMap::new(),
            offering: None,
        });
    }
    Ok(Bill::from_lines(
        inputs.tenant,
        inputs.department,
        inputs.period,
        &inputs.card.currency,
        lines,
    ))
}

impl Bill {
    /// A bill of `lines`: ordered (regular lines, then corrections; by provider, resource
    /// and time), totalled and split into subtotals.
    pub fn from_lines(
        tenant: &str,
        department: Option<&str>,
        period: Period,
        currency: &str,
        mut lines: Vec<BillLine>,
    ) -> Self {
        lines.sort_by(|a, b| {
            let key = |l: &BillLine| {
                (
                    l.charge_class.clone(),
                    l.provider.clone(),
                    l.resource_id.clone(),
                    l.charge_period_start,
                    l.department.clone(),
                    l.sku.clone(),
                )
            };
            key(a).cmp(&key(b))
        });
        let exact: Decimal = lines.iter().map(|l| l.cost).sum();
        let total = round_minor(exact);
        let mut by_provider = BTreeMap::new();
        let mut by_department = BTreeMap::new();
        for line in &lines {
            *by_provider
                .entry(line.provider.clone())
                .or_insert(Decimal::ZERO) += line.cost;
            let department = line
                .department
                .clone()
                .unwrap_or_else(|| NO_DEPARTMENT.into());
            *by_department.entry(department).or_insert(Decimal::ZERO) += line.cost;
        }
        Bill {
            tenant: tenant.to_string(),
            department: department.map(str::to_owned),
            period: period.to_string(),
            period_start: period.start(),
            period_end: period.end(),
            currency: currency.to_string(),
            lines,
            subtotals: Subtotals {
                providers: largest_remainder(total, &by_provider),
                departments: largest_remainder(total, &by_department),
            },
            total,
            finalized: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::{running_slices, LifecycleEvent};
    use time::macros::datetime;

    fn dec(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn card(price: &str) -> RateCard {
        RateCard::from_json(&serde_json::json!({"currency": "USD", "rates": [
            {"sku": "sp.micro", "unit": "hour", "price": price},
            {"sku": "api.requests", "unit": "1000-requests", "price": "0.0040"}
        ]}))
        .unwrap()
    }

    fn instance(
        id: &str,
        provider: &str,
        department: Option<&str>,
        slices: Vec<Slice>,
    ) -> InstanceUsage {
        InstanceUsage {
            instance_id: id.into(),
            provider: provider.into(),
            region: format!("{provider}-1"),
            department: department.map(str::to_owned),
            tags: BTreeMap::new(),
            offering: None,
            slices,
        }
    }

    fn run(from: OffsetDateTime, to: OffsetDateTime) -> Vec<Slice> {
        let event = |time, event: &str| LifecycleEvent::sample(time, event, "sp.micro", 1, 128);
        running_slices(&[event(from, "run"), event(to, "terminate")], to)
    }

    /// METERING.md case 3: 22:00 on the last day of a month to 03:00 the next day.
    #[test]
    fn a_run_across_a_month_boundary_is_split_between_the_periods() {
        let card = card("0.10");
        let instances = [instance(
            "i-1",
            "local-vmm",
            None,
            run(
                datetime!(2026-11-30 22:00 UTC),
                datetime!(2026-12-01 03:00 UTC),
            ),
        )];
        let bill = |period: &str| {
            build_bill(&BillInputs {
                tenant: "demo",
                department: None,
                period: Period::parse(period).unwrap(),
                instances: &instances,
                api: &[],
                card: &card,
            })
            .unwrap()
        };
        let (november, december) = (bill("2026-11"), bill("2026-12"));
        assert_eq!(november.lines.len(), 1);
        assert_eq!(november.lines[0].pricing_quantity, dec("2"));
        assert_eq!(
            november.lines[0].charge_period_end,
            datetime!(2026-12-01 0:00 UTC)
        );
        assert_eq!(december.lines[0].pricing_quantity, dec("3"));
        assert_eq!(
            december.lines[0].charge_period_start,
            datetime!(2026-12-01 0:00 UTC)
        );
        assert_eq!(november.total + december.total, dec("0.50"));
        assert_eq!(november.total.to_string(), "0.20", "money shows its cents");
    }

    /// METERING.md case 9: three 20-minute slices at 0.10/h on three providers, and a
    /// 1.00 split three ways.
    #[test]
    fn decimal_consolidation_and_largest_remainder_splits_are_exact() {
        let card = card("0.10");
        let t = datetime!(2026-11-03 10:00 UTC);
        let twenty = time::Duration::minutes(20);
        let instances = [
            instance("i-1", "ec2", Some("eng"), run(t, t + twenty)),
            instance("i-2", "eucalyptus", Some("finance"), run(t, t + twenty)),
            instance("i-3", "local-vmm", Some("ops"), run(t, t + twenty)),
        ];
        let bill = build_bill(&BillInputs {
            tenant: "demo",
            department: None,
            period: Period::parse("2026-11").unwrap(),
            instances: &instances,
            api: &[],
            card: &card,
        })
        .unwrap();
        assert_eq!(bill.lines.len(), 3);
        let exact: Decimal = bill.lines.iter().map(|l| l.cost).sum();
        assert_eq!(round_minor(exact), dec("0.10"));
        assert_eq!(bill.total, dec("0.10"));
        let providers: Vec<Decimal> = bill.subtotals.providers.values().copied().collect();
        assert_eq!(providers, [dec("0.04"), dec("0.03"), dec("0.03")]);
        assert_eq!(providers.iter().sum::<Decimal>(), bill.total);

        let parts: BTreeMap<String, Decimal> = [("a", "1"), ("b", "1"), ("c", "1")]
            .map(|(k, v)| (k.to_string(), dec(v)))
            .into();
        let split = split_by_weight(dec("1.00"), &parts);
        assert_eq!(
            split.values().copied().collect::<Vec<_>>(),
            [dec("0.34"), dec("0.33"), dec("0.33")]
        );
    }

    #[test]
    fn department_views_and_api_requests() {
        let card = card("0.10");
        let t = datetime!(2026-11-03 10:00 UTC);
        let instances = [
            instance(
                "i-1",
                "local-vmm",
                Some("eng"),
                run(t, t + time::Duration::hours(1)),
            ),
            instance(
                "i-2",
                "local-vmm",
                Some("finance"),
                run(t, t + time::Duration::hours(2)),
            ),
        ];
        let api = [
            ApiUsage {
                department: Some("eng".into()),
                requests: 2500,
            },
            ApiUsage {
                department: None,
                requests: 500,
            },
        ];
        let inputs = |department| BillInputs {
            tenant: "demo",
            department,
            period: Period::parse("2026-11").unwrap(),
            instances: &instances,
            api: &api,
            card: &card,
        };
        let all = build_bill(&inputs(None)).unwrap();
        // 0.10 + 0.20 compute, 2.5 x 0.004 + 0.5 x 0.004 requests.
        assert_eq!(all.total, dec("0.31"));
        assert_eq!(
            all.subtotals.departments.values().sum::<Decimal>(),
            all.total
        );
        assert_eq!(all.subtotals.departments[NO_DEPARTMENT], dec("0.00"));
        let eng = build_bill(&inputs(Some("eng"))).unwrap();
        assert!(eng
            .lines
            .iter()
            .all(|l| l.department.as_deref() == Some("eng")));
        assert_eq!(eng.total, dec("0.11"));
        // The same inputs give the same bytes.
        assert_eq!(
            serde_json::to_string(&all).unwrap(),
            serde_json::to_string(&build_bill(&inputs(None)).unwrap()).unwrap()
        );
    }
}
