//! The pure part of placement: which provider regions can serve a resource, in which order
//! of preference, and which combination serves every resource of a blueprint while keeping
//! its separated resources apart. No I/O: equal inputs give equal decisions, which is what
//! makes an explanation equal the create that follows it.

use rust_decimal::Decimal;

use super::params::ParamSet;
use super::rates::Prices;
use super::rules::RuleOutcome;
use super::Candidate;
use crate::catalog::{PlanConfig, SeparateConfig, Separation};

/// A provider region placement may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    /// Provider instance.
    pub provider: String,
    /// Region.
    pub region: String,
    /// Why the provider cannot serve now, if it cannot.
    pub unhealthy: Option<String>,
}

/// Every site as a candidate for a resource with `params`, each marked with the first
/// reason it cannot serve it: outside the plan, not holding the image (when the regions
/// that hold it, `image_regions`, are known), set elsewhere by a parameter, or, last (so
/// that it means "could serve, but not now"), unhealthy.
pub fn candidates(
    sites: &[Site],
    params: &ParamSet,
    plan: Option<&PlanConfig>,
    image_regions: Option<&[String]>,
) -> Vec<Candidate> {
    let pinned_provider = params.text("provider");
    let pinned_region = params.text("region");
    sites
        .iter()
        .map(|site| {
            let lost = if !plan.is_none_or(|p| p.allows_region(&site.region)) {
                Some("region not in your plan".to_string())
            } else if !image_regions.is_none_or(|within| within.contains(&site.region)) {
                Some("the image is not offered here".to_string())
            } else if let Some(p) = pinned_provider.filter(|p| *p != site.provider) {
                Some(format!("provider set to '{p}'"))
            } else if let Some(r) = pinned_region.filter(|r| *r != site.region) {
                Some(format!("region set to '{r}'"))
            } else {
                site.unhealthy
                    .as_ref()
                    .map(|reason| format!("{UNHEALTHY}{reason}"))
            };
            Candidate {
                provider: site.provider.clone(),
                region: site.region.clone(),
                price: None,
                lost,
            }
        })
        .collect()
}

/// How the reason of a candidate that could serve but whose provider is unhealthy starts.
pub const UNHEALTHY: &str = "unhealthy: ";

/// The candidates still in the running, as (provider, region), for the rules.
pub fn open(candidates: &[Candidate]) -> Vec<(&str, &str)> {
    candidates
        .iter()
        .filter(|c| c.lost.is_none())
        .map(|c| (c.provider.as_str(), c.region.as_str()))
        .collect()
}

/// Puts out the candidates the rules excluded or did not choose.
pub fn apply_rules(candidates: &mut [Candidate], rules: &RuleOutcome) {
    for c in candidates.iter_mut().filter(|c| c.lost.is_none()) {
        c.lost = rules.verdict(&c.provider, &c.region);
    }
}

/// The candidates that have not lost, best first: cheapest, then configuration order,
/// unpriced ones last. Fills in every candidate's price.
pub fn preference_order(candidates: &mut [Candidate], prices: &Prices) -> Vec<usize> {
    for c in candidates.iter_mut() {
        c.price = prices.by_provider.get(&c.provider).map(Decimal::to_string);
    }
    let price = |c: &Candidate| prices.by_provider.get(&c.provider).copied();
    let mut order: Vec<usize> = (0..candidates.len())
        .filter(|&i| candidates[i].lost.is_none())
        .collect();
    order.sort_by_key(|&i| {
        let p = price(&candidates[i]);
        (p.is_none(), p, i)
    });
    order
}

/// One resource on its way to a decision: its candidates and their order of preference.
#[derive(Debug, Clone)]
pub struct Ranked<'a> {
    /// The blueprint's name for it.
    pub resource: &'a str,
    /// Every candidate.
    pub candidates: &'a [Candidate],
    /// Indexes into `candidates`, best first.
    pub order: &'a [usize],
}

/// Picks one candidate per resource, each resource's best that keeps the blueprint's
/// separated resources apart, backtracking to the next candidate of an earlier resource
/// when a later one has none left. Returns indexes into each resource's `candidates`.
pub fn pick(resources: &[Ranked<'_>], separate: Option<&SeparateConfig>) -> Option<Vec<usize>> {
    fn search(
        resources: &[Ranked<'_>],
        separate: Option<&SeparateConfig>,
        chosen: &mut Vec<usize>,
    ) -> bool {
        let depth = chosen.len();
        let Some(current) = resources.get(depth) else {
            return true;
        };
        for &i in current.order {
            let clash = (0..depth).any(|d| {
                clashes(
                    separate,
                    (current.resource, &current.candidates[i]),
                    (resources[d].resource, &resources[d].candidates[chosen[d]]),
                )
            });
            if clash {
                continue;
            }
            chosen.push(i);
            if search(resources, separate, chosen) {
                return true;
            }
            chosen.pop();
        }
        false
    }
    let mut chosen = Vec::with_capacity(resources.len());
    search(resources, separate, &mut chosen).then_some(chosen)
}

/// Whether two resources' candidates break the separation requirement.
fn clashes(
    separate: Option<&SeparateConfig>,
    (a, at_a): (&str, &Candidate),
    (b, at_b): (&str, &Candidate),
) -> bool {
    let Some(separate) = separate else {
        return false;
    };
    let kept_apart = |r: &str| separate.resources.iter().any(|x| x == r);
    if !kept_apart(a) || !kept_apart(b) {
        return false;
    }
    match separate.by {
        Separation::Provider => at_a.provider == at_b.provider,
        Separation::Region => at_a.region == at_b.region,
    }
}

/// Marks why every candidate but the `winner` lost: a separation clash with an already
/// placed resource, a higher price, no price, or configuration order among equals.
pub fn mark_losers(
    candidates: &mut [Candidate],
    winner: usize,
    prices: &Prices,
    separate: Option<&SeparateConfig>,
    resource: &str,
    placed: &[(String, Candidate)],
) {
    let best = prices
        .by_provider
        .get(&candidates[winner].provider)
        .copied();
    let currency = prices.currency.as_deref().unwrap_or("");
    for (i, candidate) in candidates.iter_mut().enumerate() {
        if i == winner || candidate.lost.is_some() {
            continue;
        }
        let clash = placed
            .iter()
            .find(|(other, at)| clashes(separate, (resource, candidate), (other, at)));
        let mine = prices.by_provider.get(&candidate.provider).copied();
        candidate.lost = Some(match (clash, mine, best) {
            (Some((other, at)), _, _) => match separate.map(|s| s.by) {
                Some(Separation::Provider) => {
                    format!("'{other}' is on provider '{}'", at.provider)
                }
                _ => format!("'{other}' is in region '{}'", at.region),
            },
            (None, Some(m), Some(b)) if m > b => {
                format!("costs {m} {currency}/hour, more than the chosen {b}")
            }
            (None, None, Some(_)) => "no price on the rate card".to_string(),
            (None, Some(_), None) => {
                "a candidate earlier in preference order was chosen".to_string()
            }
            _ => "same price; an earlier candidate in configuration order was chosen".to_string(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{ParamValue, Params};

    fn candidate(provider: &str, region: &str, lost: Option<&str>) -> Candidate {
        Candidate {
            provider: provider.into(),
            region: region.into(),
            price: None,
            lost: lost.map(str::to_owned),
        }
    }

    fn prices(pairs: &[(&str, &str)]) -> Prices {
        Prices {
            currency: Some("USD".into()),
            by_provider: pairs
                .iter()
                .map(|(p, v)| (p.to_string(), v.parse().unwrap()))
                .collect(),
        }
    }

    fn site(provider: &str, region: &str) -> Site {
        Site {
            provider: provider.into(),
            region: region.into(),
            unhealthy: None,
        }
    }

    #[test]
    fn the_cheapest_comes_first_configuration_order_breaks_ties_unpriced_ones_come_last() {
        type Case<'a> = (&'a [(&'a str, &'a str)], [usize; 3]);
        let table: [Case; 4] = [
            (&[("a", "0.02"), ("b", "0.01"), ("c", "0.01")], [1, 2, 0]),
            (&[("a", "0.01"), ("b", "0.01"), ("c", "0.01")], [0, 1, 2]),
            (&[("b", "0.05")], [1, 0, 2]),
            (&[], [0, 1, 2]),
        ];
        for (rates, expected) in table {
            let mut cs = vec![
                candidate("a", "a-1", None),
                candidate("b", "b-1", None),
                candidate("c", "c-1", None),
            ];
            assert_eq!(
                preference_order(&mut cs, &prices(rates)),
                expected,
                "{rates:?}"
            );
        }
    }

    #[test]
    fn a_candidate_that_already_lost_is_never_ranked_and_keeps_its_reason() {
        let mut cs = vec![
            candidate("a", "a-1", Some("unhealthy: down")),
            candidate("b", "b-1", None),
        ];
        let p = prices(&[("a", "0.001"), ("b", "9")]);
        assert_eq!(preference_order(&mut cs, &p), [1]);
        mark_losers(&mut cs, 1, &p, None, "vm", &[]);
        assert_eq!(cs[0].lost.as_deref(), Some("unhealthy: down"));
        assert_eq!(cs[0].price.as_deref(), Some("0.001"));
    }

    #[test]
    fn losers_say_what_they_cost() {
        let mut cs = vec![candidate("a", "a-1", None), candidate("b", "b-1", None)];
        let p = prices(&[("a", "0.0200"), ("b", "0.0050")]);
        let order = preference_order(&mut cs, &p);
        mark_losers(&mut cs, order[0], &p, None, "vm", &[]);
        assert_eq!(
            cs[0].lost.as_deref(),
            Some("costs 0.0200 USD/hour, more than the chosen 0.0050")
        );
        assert_eq!(cs[1].lost, None);
    }

    #[test]
    fn pins_plans_health_and_images_each_put_a_candidate_out() {
        let sites = [
            Site {
                unhealthy: Some("probe failed".into()),
                ..site("sick", "k-1")
            },
            site("far", "far-1"),
            site("other", "o-1"),
            site("bare", "b-1"),
            site("kept", "k-1"),
        ];
        let plan = PlanConfig {
            description: String::new(),
            offerings: Vec::new(),
            regions: vec!["o-1".into(), "b-1".into(), "k-1".into()],
            raw: true,
            max_instances: None,
            max_vcpus: None,
            max_memory_mib: None,
            max_lease_secs: None,
        };
        let params = ParamSet::from_params(&Params::from([(
            "region".to_string(),
            ParamValue::Text("k-1".into()),
        )]));
        let image_regions = ["o-1".to_string(), "k-1".to_string(), "far-1".to_string()];
        let cs = candidates(&sites, &params, Some(&plan), Some(&image_regions));
        let reasons: Vec<_> = cs.iter().map(|c| c.lost.as_deref()).collect();
        assert_eq!(
            reasons,
            [
                Some("unhealthy: probe failed"),
                Some("region not in your plan"),
                Some("region set to 'k-1'"),
                Some("the image is not offered here"),
                None,
            ]
        );
    }

    fn separated(by: Separation) -> SeparateConfig {
        SeparateConfig {
            resources: vec!["primary".into(), "standby".into()],
            by,
        }
    }

    #[test]
    fn separated_resources_never_share_and_the_search_backtracks() {
        // primary prefers p/r1 then q/r2; standby can only use p/r1. The first pick for
        // primary leaves standby nothing, so the search goes back and moves primary.
        let primary = [candidate("p", "r1", None), candidate("q", "r2", None)];
        let standby = [candidate("p", "r1", None)];
        let ranked = [
            Ranked {
                resource: "primary",
                candidates: &primary,
                order: &[0, 1],
            },
            Ranked {
                resource: "standby",
                candidates: &standby,
                order: &[0],
            },
        ];
        assert_eq!(
            pick(&ranked, Some(&separated(Separation::Region))),
            Some(vec![1, 0])
        );
        assert_eq!(pick(&ranked, None), Some(vec![0, 0]));
        // Same provider in two regions: apart by region is fine, apart by provider is not.
        let two_regions = [candidate("p", "r1", None), candidate("p", "r2", None)];
        let both = [
            Ranked {
                resource: "primary",
                candidates: &two_regions,
                order: &[0, 1],
            },
            Ranked {
                resource: "standby",
                candidates: &two_regions,
                order: &[0, 1],
            },
        ];
        assert_eq!(
            pick(&both, Some(&separated(Separation::Region))),
            Some(vec![0, 1])
        );
        assert_eq!(pick(&both, Some(&separated(Separation::Provider))), None);
    }

    #[test]
    fn a_loser_to_separation_names_the_resource_it_would_share_with() {
        let placed = [("primary".to_string(), candidate("p", "r1", None))];
        let mut cs = vec![candidate("p", "r1", None), candidate("q", "r2", None)];
        let p = prices(&[("p", "0.01"), ("q", "0.02")]);
        mark_losers(
            &mut cs,
            1,
            &p,
            Some(&separated(Separation::Region)),
            "standby",
            &placed,
        );
        assert_eq!(cs[0].lost.as_deref(), Some("'primary' is in region 'r1'"));
    }
}
