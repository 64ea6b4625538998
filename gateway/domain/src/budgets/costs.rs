//! What budgets are checked against, asked of the metering plugin (never read from its
//! files): the spend so far (`bill.get@1`, the bill's total) and hourly prices
//! (`rates.get@1`, the rate card placement ranks with). Both are kept briefly, so that an
//! order's check makes no plugin call while they are fresh.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::{json, Value};

use skyport_core::clock::SharedClock;
use skyport_core::error::{ErrorKind, GatewayError};
use skyport_core::tenancy::TenantContext;
use skyport_plugin_host::Plugins;

/// How long a tenant's (or department's) spend so far is reused.
pub const SPENT_TTL: Duration = Duration::from_secs(5);
/// How long a price is reused.
pub const PRICE_TTL: Duration = Duration::from_secs(60);
/// How long a call to the metering plugin may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// An instance type at a provider: what a price is for.
pub type PricePair = (String, String);

/// Whose spend: a tenant, or one of its departments.
type SpendScope = (String, Option<String>);

/// A spend so far: the bill's total and currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spent {
    /// The bill's total so far.
    pub amount: Decimal,
    /// Its currency.
    pub currency: String,
}

/// Spend and prices from the metering plugin, kept for [`SPENT_TTL`] and [`PRICE_TTL`].
pub struct Costs {
    plugins: Arc<dyn Plugins>,
    clock: SharedClock,
    spent: Mutex<HashMap<SpendScope, (Duration, Spent)>>,
    /// `None`: the rate card has no hourly price for the pair.
    prices: Mutex<HashMap<PricePair, (Duration, Option<Decimal>)>>,
}

impl Costs {
    /// Costs asked of the metering plugin among `plugins`, aged by `clock`.
    pub fn new(plugins: Arc<dyn Plugins>, clock: SharedClock) -> Self {
        Self {
            plugins,
            clock,
            spent: Mutex::default(),
            prices: Mutex::default(),
        }
    }

    /// The provider plugins loaded now.
    pub fn providers(&self) -> Vec<String> {
        self.plugins
            .loaded()
            .into_iter()
            .filter(|p| p.is_provider())
            .map(|p| p.name)
            .collect()
    }

    /// The current month's spend so far of the caller's tenant (of `department` when
    /// given).
    pub async fn spent(
        &self,
        ctx: &TenantContext,
        request_id: &str,
        department: Option<&str>,
    ) -> Result<Spent, GatewayError> {
        let key = (ctx.tenant.to_string(), department.map(str::to_owned));
        let now = self.clock.monotonic();
        if let Some((at, spent)) = self.spent.lock().expect("spend cache").get(&key) {
            if now.saturating_sub(*at) < SPENT_TTL {
                return Ok(spent.clone());
            }
        }
        let bill = self
            .call(
                ctx,
                request_id,
                "bill.get",
                json!({"tenant": &*ctx.tenant, "department": department}),
            )
            .await?;
        let amount = bill["total"]
            .as_str()
            .and_then(|t| t.parse::<Decimal>().ok())
            .ok_or_else(|| unavailable("the metering plugin's bill has no total"))?;
        let spent = Spent {
            amount,
            currency: bill["currency"].as_str().unwrap_or_default().to_string(),
        };
        self.spent
            .lock()
            .expect("spend cache")
            .insert(key, (now, spent.clone()));
        Ok(spent)
    }

    /// The hourly price of each pair in `pairs` that the rate card prices (a pair it
    /// has no hourly price for is left out).
    pub async fn prices(
        &self,
        ctx: &TenantContext,
        request_id: &str,
        pairs: &BTreeSet<PricePair>,
    ) -> Result<HashMap<PricePair, Decimal>, GatewayError> {
        let now = self.clock.monotonic();
        let mut found = HashMap::with_capacity(pairs.len());
        let mut missing = Vec::new();
        {
            let cache = self.prices.lock().expect("price cache");
            for pair in pairs {
                match cache.get(pair) {
                    Some((at, price)) if now.saturating_sub(*at) < PRICE_TTL => {
                        if let Some(price) = price {
                            found.insert(pair.clone(), *price);
                        }
                    }
                    _ => missing.push(pair.clone()),
                }
            }
        }
        if missing.is_empty() {
            return Ok(found);
        }
        let asked: Vec<Value> = missing
            .iter()
            .map(|(sku, provider)| json!({"sku": sku, "provider": provider}))
            .collect();
        let answer = self
            .call(ctx, request_id, "rates.get", json!({ "pairs": asked }))
            .await?;
        let mut answered: HashMap<PricePair, Decimal> = HashMap::new();
        for rate in answer["rates"].as_array().into_iter().flatten() {
            let (Some(sku), Some(provider)) = (rate["sku"].as_str(), rate["provider"].as_str())
            else {
                continue;
            };
            let price = rate["price"]
                .as_str()
                .and_then(|p| p.parse::<Decimal>().ok());
            if let (Some(price), true) = (price, rate["unit"] == "hour") {
                answered.insert((sku.to_string(), provider.to_string()), price);
            }
        }
        let mut cache = self.prices.lock().expect("price cache");
        for pair in missing {
            let price = answered.get(&pair).copied();
            cache.insert(pair.clone(), (now, price));
            if let Some(price) = price {
                found.insert(pair, price);
            }
        }
        Ok(found)
    }

    async fn call(
        &self,
        ctx: &TenantContext,
        request_id: &str,
        op: &str,
        params: Value,
    ) -> Result<Value, GatewayError> {
        crate::operations::metering::call_metering(
            &*self.plugins,
            ctx,
            request_id,
            op,
            params,
            CALL_TIMEOUT,
        )
        .await
    }
}

fn unavailable(message: &str) -> GatewayError {
    GatewayError::new(ErrorKind::Unavailable, message)
}
