//! A month's samples added up into one line per provider and region.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::Serialize;

use super::{percent, MinuteSample, LATENCY_BOUNDS_MS};

/// One provider region's month.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SiteReport {
    /// The provider instance.
    pub provider: String,
    /// Its region.
    pub region: String,
    /// Minutes in which a replica probed or called it.
    pub minutes_observed: u64,
    /// Of those, minutes in which it was available.
    pub minutes_available: u64,
    /// `minutes_available` in percent of `minutes_observed` (three decimals).
    pub availability: Option<Decimal>,
    /// Ops called.
    pub calls: u64,
    /// Ops it failed.
    pub errors: u64,
    /// `errors` in percent of `calls`.
    pub error_rate: Option<Decimal>,
    /// Median op latency: the upper bound of its bucket, in milliseconds.
    pub p50_ms: Option<u64>,
    /// 99th percentile op latency, likewise.
    pub p99_ms: Option<u64>,
    /// The availability target.
    pub target: Decimal,
    /// Unavailable minutes the target allows in the whole month.
    pub allowed_unavailable_minutes: u64,
    /// Whether the month can no longer meet the target: more minutes were unavailable
    /// than it allows (minutes nobody observed count as available).
    pub breached: bool,
}

/// A month's service level.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SlaReport {
    /// The month (`YYYY-MM`).
    pub period: String,
    /// The availability target, in percent.
    pub target: Decimal,
    /// One line per provider and region observed, by name.
    pub sites: Vec<SiteReport>,
}

/// The report of `period` (a month of `month_minutes` minutes) from its `samples` (any
/// replicas'), against `target`.
pub fn report(
    period: &str,
    samples: &[MinuteSample],
    target: Decimal,
    month_minutes: u64,
) -> SlaReport {
    let allowed = ((Decimal::ONE_HUNDRED - target) * Decimal::from(month_minutes)
        / Decimal::ONE_HUNDRED)
        .floor()
        .try_into()
        .unwrap_or(0u64);
    // Each minute once per site, the replicas' counts added.
    let mut minutes: BTreeMap<(&str, &str, &str), MinuteSample> = BTreeMap::new();
    for s in samples {
        minutes
            .entry((&s.provider, &s.region, &s.minute))
            .and_modify(|m| m.add(s))
            .or_insert_with(|| s.clone());
    }
    let mut sites: BTreeMap<(String, String), (u64, u64, MinuteSample)> = BTreeMap::new();
    for ((provider, region, _), minute) in &minutes {
        let (observed, available, total) = sites
            .entry((provider.to_string(), region.to_string()))
            .or_insert_with(|| (0, 0, MinuteSample::new(provider, region, String::new(), "")));
        *observed += 1;
        *available += u64::from(minute.available());
        total.add(minute);
    }
    SlaReport {
        period: period.to_string(),
        target,
        sites: sites
            .into_iter()
            .map(|((provider, region), (observed, available, total))| {
                let availability = percent(available, observed);
                SiteReport {
                    provider,
                    region,
                    minutes_observed: observed,
                    minutes_available: available,
                    breached: observed - available > allowed,
                    allowed_unavailable_minutes: allowed,
                    availability,
                    calls: total.calls,
                    errors: total.errors,
                    error_rate: percent(total.errors, total.calls),
                    p50_ms: quantile(&total.latency, 50),
                    p99_ms: quantile(&total.latency, 99),
                    target,
                }
            })
            .collect(),
    }
}

/// The upper bound (ms) of the bucket holding the `q`th percentile of `buckets`; the
/// overflow bucket reports the last bound.
fn quantile(buckets: &[u64], q: u64) -> Option<u64> {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = (total * q).div_ceil(100).max(1);
    let mut seen = 0;
    for (i, count) in buckets.iter().enumerate() {
        seen += count;
        if seen >= rank {
            return Some(LATENCY_BOUNDS_MS[i.min(LATENCY_BOUNDS_MS.len() - 1)]);
        }
    }
    LATENCY_BOUNDS_MS.last().copied()
}
