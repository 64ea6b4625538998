//! Budgets: what a tenant, or one of its departments, may spend per calendar month, and
//! the admission check that prices every order before anything is created.
//!
//! - **Spent** is the month's bill so far (the metering plugin's `bill.get@1`).
//! - **Committed** is what the instances running now will cost to the month's end, at the
//!   rate card's hourly prices (`rates.get@1`).
//! - **Forecast** is spent plus committed: the month's bill if nothing changes.
//! - An order (create, deployment, EC2 `RunInstances`, start of a stopped instance) costs
//!   its hourly price to the month's end (or its lease's, when that comes first). One
//!   that would take an `enforce` budget's
//!   forecast past its amount is refused, naming the budget, what is left and what the
//!   order would cost. The check runs inside the inventory's atomic admission, over the
//!   instances as they are at that moment, so concurrent orders never pass it together.

mod costs;
mod month;
#[cfg(test)]
mod tests;
mod thresholds;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use rust_decimal::Decimal;
use serde::Serialize;

use skyport_core::clock::SharedClock;
use skyport_core::config::{BudgetConfig, BudgetMode};
use skyport_core::error::{ErrorKind, GatewayError};
use skyport_core::tenancy::{TenantContext, TenantDirectory};
use skyport_plugin_host::Plugins;

pub use costs::{Costs, PricePair, Spent, PRICE_TTL, SPENT_TTL};
pub use month::Month;

use crate::catalog::{Catalog, CatalogService};
use crate::instance_leases::InstanceLeaseStore;
use crate::inventory::{AdmissionCheck, InstanceRecord, InventoryStore};

/// Where a budget warns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Threshold {
    /// A percentage of the amount (`"80%"`).
    Percent(Decimal),
    /// An amount (`"50.00"`).
    Amount(Decimal),
}

impl Threshold {
    /// Parses `"80%"` (more than 0, at most 1000) or `"50.00"` (more than 0).
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "threshold '{text}': use a percentage (\"80%\") or an amount in whole cents \
                 (\"50.00\") above 0"
            )
        };
        let (number, percent) = match text.trim().strip_suffix('%') {
            Some(number) => (number.trim(), true),
            None => (text.trim(), false),
        };
        let value: Decimal = number.parse().map_err(|_| bad())?;
        if value <= Decimal::ZERO
            || (percent && value > Decimal::from(1000))
            || (!percent && value.scale() > 2)
        {
            return Err(bad());
        }
        Ok(if percent {
            Self::Percent(value)
        } else {
            Self::Amount(value)
        })
    }

    /// The amount it stands for in a budget of `amount` (exact, not rounded: 50% of
    /// 0.01 is 0.005, which a spend of 0.00 has not reached).
    pub fn of(&self, amount: Decimal) -> Decimal {
        match self {
            Self::Percent(p) => (amount * p / Decimal::from(100)).normalize(),
            Self::Amount(a) => *a,
        }
    }

    /// As configured (`80%`, `50.00`).
    pub fn label(&self) -> String {
        match self {
            Self::Percent(p) => format!("{}%", p.normalize()),
            Self::Amount(a) => a.to_string(),
        }
    }
}

/// A checked budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    /// As configured (or set through `/admin/budgets`).
    pub config: BudgetConfig,
    /// Its thresholds, parsed.
    pub thresholds: Vec<Threshold>,
    /// Where orders start to need an approver, parsed.
    pub approval_above: Option<Threshold>,
}

impl Budget {
    /// Checks `config` against the tenants it may name.
    pub fn check(config: BudgetConfig, tenants: &TenantDirectory) -> Result<Self, String> {
        let name_ok = (1..=63).contains(&config.name.len())
            && config
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_'));
        if !name_ok {
            return Err(format!(
                "budget name '{}': use 1-63 of [a-z0-9_-]",
                config.name
            ));
        }
        if config.amount <= Decimal::ZERO || config.amount.scale() > 2 {
            return Err(format!(
                "budget '{}': amount must be above 0, in whole cents (\"100.00\")",
                config.name
            ));
        }
        if tenants.get(&config.tenant).is_none() {
            return Err(format!(
                "budget '{}': tenant '{}' is not configured",
                config.name, config.tenant
            ));
        }
        tenants
            .check_member(&config.tenant, config.department.as_deref())
            .map_err(|e| format!("budget '{}': {}", config.name, e.public))?;
        let thresholds = config
            .thresholds
            .iter()
            .map(|t| Threshold::parse(t).map_err(|e| format!("budget '{}': {e}", config.name)))
            .collect::<Result<Vec<_>, _>>()?;
        let approval_above = config
            .approval_above
            .as_deref()
            .map(|t| {
                Threshold::parse(t)
                    .map_err(|e| format!("budget '{}': approval_above: {e}", config.name))
            })
            .transpose()?;
        Ok(Self {
            config,
            thresholds,
            approval_above,
        })
    }

    /// Whether it governs an order of `tenant` billed to `department`: a tenant-wide
    /// budget governs all of the tenant's, a department's only that department's.
    pub fn governs(&self, tenant: &str, department: Option<&str>) -> bool {
        self.config.tenant == tenant
            && (self.config.department.is_none() || self.config.department.as_deref() == department)
    }
}

/// `[[budgets]]` entries that reuse an earlier entry's name, each with its key path (the
/// catalog checks each budget itself).
pub fn duplicate_names(configs: &[BudgetConfig]) -> Vec<skyport_core::config::ConfigError> {
    let mut names = BTreeSet::new();
    configs
        .iter()
        .enumerate()
        .filter(|(_, b)| !names.insert(b.name.as_str()))
        .map(|(i, b)| skyport_core::config::ConfigError {
            path: format!("budgets[{i}].name"),
            message: format!("budget '{}' is defined twice", b.name),
        })
        .collect()
}

/// Every budget of `catalog`, checked (a budget that does not check, which the catalog's
/// validation refuses, is left out and logged).
pub fn from_catalog(catalog: &Catalog, tenants: &TenantDirectory) -> Vec<Budget> {
    catalog
        .budgets
        .values()
        .filter_map(|config| match Budget::check(config.clone(), tenants) {
            Ok(budget) => Some(budget),
            Err(message) => {
                tracing::warn!(%message, "a budget in the catalog does not check; it is ignored");
                None
            }
        })
        .collect()
}

/// One thing an order would run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderItem {
    /// Instance type.
    pub instance_type: String,
    /// Provider instance, as placement decided.
    pub provider: String,
    /// Seconds it may run (its lease), when that ends before the month does.
    pub lease_secs: Option<u64>,
}

/// A threshold and whether the month's spend has reached it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThresholdStatus {
    /// As configured.
    pub threshold: String,
    /// The amount it stands for.
    pub amount: Decimal,
    /// Whether the spend so far has reached it.
    pub fired: bool,
}

/// A budget and where the month stands (`GET /v1/budgets`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BudgetStatus {
    /// Name.
    pub name: String,
    /// Tenant.
    pub tenant: String,
    /// Department; absent for a tenant-wide budget.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    /// `alert` or `enforce`.
    pub mode: BudgetMode,
    /// The month (`YYYY-MM`).
    pub period: String,
    /// The bill's currency.
    pub currency: String,
    /// What may be spent this month.
    pub amount: Decimal,
    /// Spent so far (the bill's total).
    pub spent: Decimal,
    /// What the running instances will cost to the month's end.
    pub committed: Decimal,
    /// Spent plus committed.
    pub forecast: Decimal,
    /// Amount less forecast (negative once exceeded).
    pub remaining: Decimal,
    /// Its thresholds.
    pub thresholds: Vec<ThresholdStatus>,
}

/// What `items` cost to the month's end (`hours_left`), or to their lease's end when that
/// comes first, at `prices`; 503 naming `budget` when one has no price.
fn order_cost(
    items: &[OrderItem],
    prices: &HashMap<(String, String), Decimal>,
    hours_left: Decimal,
    budget: &Budget,
) -> Result<Decimal, GatewayError> {
    let mut cost = Decimal::ZERO;
    for item in items {
        let pair = (item.instance_type.clone(), item.provider.clone());
        let price = prices.get(&pair).ok_or_else(|| {
            GatewayError::new(
                ErrorKind::Unavailable,
                format!(
                    "the rate card has no hourly price for {} at {}, so the order cannot be \
                     checked against budget '{}'",
                    item.instance_type, item.provider, budget.config.name
                ),
            )
        })?;
        let hours = match item.lease_secs {
            Some(secs) => hours_left.min(Decimal::from(secs) / Decimal::from(3600)),
            None => hours_left,
        };
        cost += *price * hours;
    }
    Ok(cost)
}

/// `amount` to the cent, showing both digits (`0.00`), as the bill shows money.
fn cents(amount: Decimal) -> Decimal {
    let mut rounded =
        amount.round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
    rounded.rescale(2);
    rounded
}

/// Whether an instance in `state` is billed from now on (running, or about to).
pub fn billed(state: &str) -> bool {
    matches!(state, "pending" | "running" | "rebooting" | "stopping")
}

/// The budgets in force (the catalog's: configured, laid over by `/admin/budgets`), and
/// their checks.
pub struct BudgetService {
    catalog: Arc<CatalogService>,
    tenants: Arc<TenantDirectory>,
    /// The budgets of the catalog last seen, checked once per catalog.
    checked: ArcSwap<(Arc<Catalog>, Vec<Budget>)>,
    inventory: Arc<dyn InventoryStore>,
    /// Where instances' leases are kept (a leased instance commits only to its expiry).
    instance_leases: Option<Arc<dyn InstanceLeaseStore>>,
    costs: Costs,
    clock: SharedClock,
}

impl BudgetService {
    /// Counts running instances' commitments only to their lease's expiry, from `store`.
    pub fn with_instance_leases(mut self, store: Arc<dyn InstanceLeaseStore>) -> Self {
        self.instance_leases = Some(store);
        self
    }

    /// The horizon of the tenant's running instances as of `now`.
    async fn horizon(&self, tenant: &str, now: SystemTime) -> Result<Horizon, GatewayError> {
        let hours_left = Month::of(now).hours_left(now);
        let mut leased = HashMap::new();
        if let Some(store) = &self.instance_leases {
            let now_ms = now
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis() as i64;
            for lease in store.of_tenant(tenant).await? {
                if !lease.expired {
                    let ms = (lease.expires_ms - now_ms).max(0);
                    leased.insert(
                        lease.instance_id,
                        Decimal::from(ms) / Decimal::from(3_600_000u32),
                    );
                }
            }
        }
        Ok(Horizon { hours_left, leased })
    }

    /// The budgets of `catalog` (of `tenants`), checked against the instances in
    /// `inventory` and the costs the metering plugin among `plugins` answers.
    pub fn new(
        catalog: Arc<CatalogService>,
        tenants: Arc<TenantDirectory>,
        inventory: Arc<dyn InventoryStore>,
        plugins: Arc<dyn Plugins>,
        clock: SharedClock,
    ) -> Self {
        let current = catalog.current();
        let budgets = from_catalog(&current, &tenants);
        Self {
            catalog,
            tenants,
            checked: ArcSwap::from_pointee((current, budgets)),
            inventory,
            instance_leases: None,
            costs: Costs::new(plugins, clock.clone()),
            clock,
        }
    }

    /// Every budget in force.
    pub fn list(&self) -> Arc<(Arc<Catalog>, Vec<Budget>)> {
        let current = self.catalog.current();
        let checked = self.checked.load_full();
        if Arc::ptr_eq(&checked.0, &current) {
            return checked;
        }
        let budgets = from_catalog(&current, &self.tenants);
        let fresh = Arc::new((current, budgets));
        self.checked.store(Arc::clone(&fresh));
        fresh
    }

    /// The budgets the caller sees: all of its tenant's with a tenant-wide credential,
    /// its department's only with a department's.
    fn visible(&self, ctx: &TenantContext) -> Vec<Budget> {
        self.list()
            .1
            .iter()
            .filter(|b| b.config.tenant == *ctx.tenant)
            .filter(|b| ctx.department.is_none() || b.config.department == ctx.department)
            .cloned()
            .collect()
    }

    /// Where each budget the caller sees stands this month.
    pub async fn status(
        &self,
        ctx: &TenantContext,
        request_id: &str,
    ) -> Result<Vec<BudgetStatus>, GatewayError> {
        let budgets = self.visible(ctx);
        if budgets.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.clock.wall();
        let month = Month::of(now);
        let live = self.live(&ctx.tenant).await?;
        let prices = self.prices_for(ctx, request_id, &live, &[]).await?;
        let horizon = self.horizon(&ctx.tenant, now).await?;
        let mut out = Vec::with_capacity(budgets.len());
        for budget in budgets {
            let spent = self
                .costs
                .spent(ctx, request_id, budget.config.department.as_deref())
                .await?;
            let committed = cents(committed(&budget, &live, &prices, &horizon));
            let forecast = cents(spent.amount + committed);
            out.push(BudgetStatus {
                thresholds: budget
                    .thresholds
                    .iter()
                    .map(|t| ThresholdStatus {
                        threshold: t.label(),
                        amount: t.of(budget.config.amount),
                        fired: spent.amount >= t.of(budget.config.amount),
                    })
                    .collect(),
                name: budget.config.name,
                tenant: budget.config.tenant,
                department: budget.config.department,
                mode: budget.config.mode,
                period: month.label(),
                currency: spent.currency,
                amount: budget.config.amount,
                spent: cents(spent.amount),
                committed,
                forecast,
                remaining: cents(budget.config.amount - forecast),
            });
        }
        Ok(out)
    }

    /// The check an order of `items` billed to `department` must pass inside the
    /// inventory's admission, when an `enforce` budget governs it; `None` when none does.
    pub async fn admission(
        &self,
        ctx: &TenantContext,
        request_id: &str,
        department: Option<&str>,
        items: &[OrderItem],
    ) -> Result<Option<AdmissionCheck>, GatewayError> {
        let enforced: Vec<Budget> = self
            .list()
            .1
            .iter()
            .filter(|b| b.config.mode == BudgetMode::Enforce && b.governs(&ctx.tenant, department))
            .cloned()
            .collect();
        if enforced.is_empty() {
            return Ok(None);
        }
        let now = self.clock.wall();
        let month = Month::of(now);
        let horizon = self.horizon(&ctx.tenant, now).await?;
        // Priced at every loaded provider (and the order's): no inventory read before the
        // admission's own.
        let prices = self.prices_for(ctx, request_id, &[], items).await?;
        let order_cost = order_cost(items, &prices, month.hours_left(now), &enforced[0])?;
        let mut checks = Vec::with_capacity(enforced.len());
        for budget in enforced {
            let spent = self
                .costs
                .spent(ctx, request_id, budget.config.department.as_deref())
                .await?;
            checks.push((budget, spent));
        }
        let label = month.label();
        let department_caller = ctx.department.is_some();
        Ok(Some(Box::new(move |live: &[InstanceRecord]| {
            for (budget, spent) in &checks {
                let committed = committed(budget, live, &prices, &horizon);
                let left = budget.config.amount - spent.amount - committed;
                if order_cost > left {
                    // A department's credential never sees the tenant's figures.
                    if department_caller && budget.config.department.is_none() {
                        return Err(tenant_refusal(budget, spent, order_cost, &label));
                    }
                    return Err(refusal(budget, spent, committed, left, order_cost, &label));
                }
            }
            Ok(())
        })))
    }

    /// Why an order of `items` billed to `department` needs an approver: it would take
    /// the month's forecast of a budget past that budget's `approval_above` (`None`: it
    /// does not). Checked against the tenant's instances as they are, before the order
    /// is placed in the queue or created.
    pub async fn approval_needed(
        &self,
        ctx: &TenantContext,
        request_id: &str,
        department: Option<&str>,
        items: &[OrderItem],
    ) -> Result<Option<String>, GatewayError> {
        let gated: Vec<Budget> = self
            .list()
            .1
            .iter()
            .filter(|b| b.approval_above.is_some() && b.governs(&ctx.tenant, department))
            .cloned()
            .collect();
        if gated.is_empty() {
            return Ok(None);
        }
        let now = self.clock.wall();
        let month = Month::of(now);
        let live = self.live(&ctx.tenant).await?;
        let prices = self.prices_for(ctx, request_id, &live, items).await?;
        let horizon = self.horizon(&ctx.tenant, now).await?;
        let cost = order_cost(items, &prices, month.hours_left(now), &gated[0])?;
        for budget in gated {
            let spent = self
                .costs
                .spent(ctx, request_id, budget.config.department.as_deref())
                .await?;
            let forecast = spent.amount + committed(&budget, &live, &prices, &horizon) + cost;
            let threshold = budget.approval_above.expect("filtered on it");
            if forecast > threshold.of(budget.config.amount) {
                return Ok(Some(format!(
                    "this order ({} {}) takes budget '{}' past its approval threshold {} for {}",
                    cents(cost),
                    spent.currency,
                    budget.config.name,
                    threshold.label(),
                    month.label()
                )));
            }
        }
        Ok(None)
    }

    /// Refuses `items` billed to `department` when that would take an `enforce` budget
    /// past its amount now, over the tenant's instances as they are (not atomic with
    /// concurrent orders: for starts of stopped instances, which the inventory admits
    /// by no insert).
    pub async fn check_now(
        &self,
        ctx: &TenantContext,
        request_id: &str,
        department: Option<&str>,
        items: &[OrderItem],
    ) -> Result<(), GatewayError> {
        match self.admission(ctx, request_id, department, items).await? {
            Some(check) => check(&self.live(&ctx.tenant).await?),
            None => Ok(()),
        }
    }

    /// The tenant's instances that are not terminated.
    async fn live(&self, tenant: &str) -> Result<Vec<InstanceRecord>, GatewayError> {
        Ok(self
            .inventory
            .list(tenant)
            .await?
            .into_iter()
            .filter(|r| r.state != "terminated")
            .collect())
    }

    /// Hourly prices of every type at every loaded provider plugin and every provider
    /// among `live` and `items` (all the instance types there, so that an instance a
    /// concurrent order adds is priced too).
    async fn prices_for(
        &self,
        ctx: &TenantContext,
        request_id: &str,
        live: &[InstanceRecord],
        items: &[OrderItem],
    ) -> Result<HashMap<PricePair, Decimal>, GatewayError> {
        let loaded = self.costs.providers();
        let providers: BTreeSet<&str> = live
            .iter()
            .map(|r| r.provider.as_str())
            .chain(items.iter().map(|i| i.provider.as_str()))
            .chain(loaded.iter().map(String::as_str))
            .collect();
        let pairs = providers
            .iter()
            .flat_map(|provider| {
                crate::catalog::INSTANCE_TYPES
                    .iter()
                    .map(|t| (t.name.to_string(), provider.to_string()))
            })
            .collect();
        self.costs.prices(ctx, request_id, &pairs).await
    }
}

/// What the billed instances among `live` that `budget` governs cost to the month's end;
/// one whose price is unknown (a provider a concurrent order brought in) is priced at the
/// highest price known, so the check errs on the side of the budget.
fn committed(
    budget: &Budget,
    live: &[InstanceRecord],
    prices: &HashMap<PricePair, Decimal>,
    horizon: &Horizon,
) -> Decimal {
    let highest = prices.values().max().copied().unwrap_or_default();
    let mut hours_by_pair: BTreeMap<(&str, &str), Decimal> = BTreeMap::new();
    for record in live.iter().filter(|r| billed(&r.state)) {
        if budget.governs(&record.tenant, record.department.as_deref()) {
            *hours_by_pair
                .entry((record.instance_type.as_str(), record.provider.as_str()))
                .or_default() += horizon.hours_of(&record.id);
        }
    }
    hours_by_pair
        .into_iter()
        .map(|((sku, provider), hours)| {
            let price = prices
                .get(&(sku.to_string(), provider.to_string()))
                .copied()
                .unwrap_or(highest);
            price * hours
        })
        .sum()
}

/// How long running instances are committed for: to the month's end, or to their
/// lease's when that comes first.
struct Horizon {
    /// Hours to the month's end.
    hours_left: Decimal,
    /// Hours to each leased instance's expiry, by instance id.
    leased: HashMap<String, Decimal>,
}

impl Horizon {
    fn hours_of(&self, instance_id: &str) -> Decimal {
        self.leased
            .get(instance_id)
            .map_or(self.hours_left, |h| (*h).min(self.hours_left))
    }
}

/// The refusal a department's credential gets from a tenant-wide budget: its name and
/// what the order would cost, none of the tenant's figures.
fn tenant_refusal(
    budget: &Budget,
    spent: &Spent,
    order_cost: Decimal,
    month: &str,
) -> GatewayError {
    GatewayError::new(
        ErrorKind::BudgetExceeded,
        format!(
            "the tenant-wide budget '{}' for {month} would be exceeded; this order would cost \
             {} {}",
            budget.config.name,
            cents(order_cost),
            spent.currency
        ),
    )
}

fn refusal(
    budget: &Budget,
    spent: &Spent,
    committed: Decimal,
    left: Decimal,
    order_cost: Decimal,
    month: &str,
) -> GatewayError {
    let currency = &spent.currency;
    let scope = match &budget.config.department {
        Some(department) => format!("department '{department}'"),
        None => format!("tenant '{}'", budget.config.tenant),
    };
    GatewayError::new(
        ErrorKind::BudgetExceeded,
        format!(
            "budget '{}' of {scope} would be exceeded: {} {currency} for {month}, {} spent and \
             {} committed by running instances until the month ends (or their leases do), so \
             {} {currency} is left; this order would cost {} {currency} until then",
            budget.config.name,
            budget.config.amount,
            spent.amount,
            cents(committed),
            cents(left.max(Decimal::ZERO)),
            cents(order_cost),
        ),
    )
}
