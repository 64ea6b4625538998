//! `[[budgets]]`: what a tenant, or one of its departments, may spend per calendar month
//! (UTC), in the bill's currency.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// One budget.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetConfig {
    /// Its name: 1-63 of `[a-z0-9_-]`, unique (through `/admin/budgets/{name}`, the
    /// path names it).
    #[serde(default)]
    pub name: String,
    /// The tenant it governs.
    pub tenant: String,
    /// The department it governs; the whole tenant when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    /// What may be spent per month, in the bill's currency (`"100.00"`).
    pub amount: Decimal,
    /// Where it warns: percentages of the amount (`"80%"`) or amounts (`"50.00"`).
    #[serde(default)]
    pub thresholds: Vec<String>,
    /// `alert` (default): thresholds only; `enforce`: an order that would take the
    /// forecast past the amount is refused.
    #[serde(default)]
    pub mode: BudgetMode,
    /// Where orders start to need an approver: a percentage of the amount (`"80%"`) or an
    /// amount. An order that would take the month's forecast past it waits as
    /// `pending_approval` (native API) or is refused where it cannot wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_above: Option<String>,
}

/// What a budget does when it would be exceeded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BudgetMode {
    /// Its thresholds fire; nothing is refused.
    #[default]
    Alert,
    /// Orders that would take it past its amount are refused.
    Enforce,
}
