//! Prices for placement: asked of the metering plugin through the host (op `rates.get@1`),
//! never read from its files, and the ranking of candidates by them.

use std::collections::HashMap;
use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::json;

use skyport_core::tenancy::TenantContext;
use skyport_plugin_host::Plugins;

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
    plugins: &dyn Plugins,
    ctx: &TenantContext,
    request_id: &str,
    instance_type: &str,
    providers: &[String],
) -> Prices {
    let Some(plugin) = plugins
        .loaded()
        .into_iter()
        .find(|p| p.is_metering() && p.serves(RATES_OP) && p.health.healthy)
    else {
        return Prices::default();
    };
    let pairs: Vec<_> = providers
        .iter()
        .map(|p| json!({"sku": instance_type, "provider": p}))
        .collect();
    let answer = plugins
        .call(
            &plugin.name,
            "rates.get",
            1,
            json!({ "pairs": pairs }),
            crate::call_context(ctx, request_id),
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
