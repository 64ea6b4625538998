//! Prices for placement: asked of the metering plugin through the host (op `rates.get@1`),
//! never read from its files, and the ranking of candidates by them.

use std::collections::HashMap;
use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::json;

use super::Candidate;
use crate::auth::TenantContext;
use crate::state::AppState;

/// The op that answers prices.
pub const RATES_OP: &str = "rates.get@1";

/// How long placement waits for prices before ranking without them.
const RATES_TIMEOUT: Duration = Duration::from_secs(2);

/// Hourly prices of one instance type by provider.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prices {
    /// ISO 4217 currency; `None` when no metering plugin answered.
    pub currency: Option<String>,
    /// Price per hour by provider instance; missing: the card has no price for it.
    pub by_provider: HashMap<String, Decimal>,
}

/// The hourly prices of `instance_type` at `providers`, from the first healthy metering
/// plugin that serves [`RATES_OP`]; empty (logged) when there is none or it fails.
pub async fn prices(
    state: &AppState,
    ctx: &TenantContext,
    request_id: &str,
    instance_type: &str,
    providers: &[String],
) -> Prices {
    let Some(plugin) = state.plugins.plugins().iter().find(|p| {
        p.manifest.kind == "metering" && p.ops.iter().any(|o| o == RATES_OP) && p.health().healthy
    }) else {
        return Prices::default();
    };
    let pairs: Vec<_> = providers
        .iter()
        .map(|p| json!({"sku": instance_type, "provider": p}))
        .collect();
    let answer = state
        .plugins
        .call(
            &plugin.name,
            "rates.get",
            1,
            json!({ "pairs": pairs }),
            crate::operations::context(ctx, request_id),
            RATES_TIMEOUT,
        )
        .await;
    let answer = match answer {
        Ok(answer) => answer,
        Err(e) => {
            tracing::warn!(request_id, plugin = %plugin.name, error = %e.public,
                "rates unavailable; placement falls back to configuration order");
            return Prices::default();
        }
    };
    let by_provider = answer["rates"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["unit"] == "hour")
        .filter_map(|r| {
            let provider = r["provider"].as_str()?;
            let price = r["price"].as_str()?.parse::<Decimal>().ok()?;
            Some((provider.to_string(), price))
        })
        .collect();
    Prices {
        currency: answer["currency"].as_str().map(str::to_owned),
        by_provider,
    }
}

/// Ranks the candidates that have not lost yet: cheapest first, configuration order among
/// equals, unpriced ones last. Fills in each one's price, marks every other one with why
/// it lost, and returns the index of the winner.
pub fn rank(candidates: &mut [Candidate], prices: &Prices) -> Option<usize> {
    for c in candidates.iter_mut() {
        c.price = prices.by_provider.get(&c.provider).map(Decimal::to_string);
    }
    let price = |c: &Candidate| prices.by_provider.get(&c.provider).copied();
    let winner = candidates
        .iter()
        .enumerate()
        .filter(|(_, c)| c.lost.is_none())
        .min_by_key(|(i, c)| (price(c).is_none(), price(c), *i))
        .map(|(i, _)| i)?;
    let best = price(&candidates[winner]);
    let currency = prices.currency.as_deref().unwrap_or("");
    for (i, c) in candidates.iter_mut().enumerate() {
        if i == winner || c.lost.is_some() {
            continue;
        }
        let mine = prices.by_provider.get(&c.provider).copied();
        c.lost = Some(match (mine, best) {
            (Some(m), Some(b)) if m > b => {
                format!("costs {m} {currency}/hour, more than the chosen {b}")
            }
            (None, Some(_)) => "no price on the rate card".to_string(),
            _ => "same price; an earlier candidate in configuration order was chosen".to_string(),
        });
    }
    Some(winner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(provider: &str, lost: Option<&str>) -> Candidate {
        Candidate {
            provider: provider.into(),
            region: format!("{provider}-1"),
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

    #[test]
    fn the_cheapest_wins_configuration_order_breaks_ties_unpriced_ones_come_last() {
        let table: [(&[(&str, &str)], usize); 4] = [
            (&[("a", "0.02"), ("b", "0.01"), ("c", "0.01")], 1),
            (&[("a", "0.01"), ("b", "0.01"), ("c", "0.01")], 0),
            (&[("b", "0.05")], 1),
            (&[], 0),
        ];
        for (rates, expected) in table {
            let mut cs = vec![
                candidate("a", None),
                candidate("b", None),
                candidate("c", None),
            ];
            assert_eq!(rank(&mut cs, &prices(rates)), Some(expected), "{rates:?}");
            assert!(cs[expected].lost.is_none());
            assert_eq!(cs.iter().filter(|c| c.lost.is_none()).count(), 1);
        }
    }

    #[test]
    fn a_candidate_that_already_lost_never_wins_and_keeps_its_reason() {
        let mut cs = vec![
            candidate("a", Some("unhealthy: down")),
            candidate("b", None),
        ];
        assert_eq!(
            rank(&mut cs, &prices(&[("a", "0.001"), ("b", "9")])),
            Some(1)
        );
        assert_eq!(cs[0].lost.as_deref(), Some("unhealthy: down"));
        let mut none = vec![candidate("a", Some("region not in your plan"))];
        assert_eq!(rank(&mut none, &prices(&[])), None);
    }

    #[test]
    fn losers_say_what_they_cost() {
        let mut cs = vec![candidate("a", None), candidate("b", None)];
        rank(&mut cs, &prices(&[("a", "0.0200"), ("b", "0.0050")]));
        assert_eq!(
            cs[0].lost.as_deref(),
            Some("costs 0.0200 USD/hour, more than the chosen 0.0050")
        );
        assert_eq!(cs[1].price.as_deref(), Some("0.0050"));
    }
}
