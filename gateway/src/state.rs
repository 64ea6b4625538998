//! Everything a request handler may touch, built once at startup.

use std::sync::Arc;

use crate::auth::{Authenticator, TenantDirectory};
use crate::cache::ResponseCache;
use crate::config::Config;
use crate::limit::TenantRateLimiter;
use crate::metering_tap::MeteringTap;
use crate::metrics::Metrics;
use crate::plugins::PluginRegistry;
use crate::tls::ReloadableTls;

/// Shared gateway state.
pub struct AppState {
    /// Effective configuration.
    pub config: Arc<Config>,
    /// Authentication.
    pub auth: Authenticator,
    /// Tenants.
    pub tenants: TenantDirectory,
    /// Rate limits.
    pub limiter: TenantRateLimiter,
    /// Read cache.
    pub cache: ResponseCache,
    /// Instance inventory (SQLite).
    pub inventory: crate::inventory::Inventory,
    /// EC2 access keys.
    pub access_keys: Arc<crate::auth::access_keys::AccessKeys>,
    /// Tenants' SSH key pairs.
    pub key_pairs: crate::operations::keypairs::KeyPairStore,
    /// The catalog in force (configuration plus administrators' changes).
    pub catalog: arc_swap::ArcSwap<crate::catalog::Catalog>,
    /// The administrators' catalog changes, stored.
    pub catalog_store: crate::catalog::store::CatalogStore,
    /// Catalog changes are applied one at a time.
    pub catalog_writes: tokio::sync::Mutex<()>,
    /// The administrators' placement rules, compiled.
    pub rules: crate::placement::rules::RuleSet,
    /// Every placement decision, for `GET /admin/placements/{id}`.
    pub placements: crate::placement::audit::PlacementAudit,
    /// Deployments (orders for offerings of several resources).
    pub deployments: crate::operations::deployments::DeploymentStore,
    /// Loaded plugins.
    pub plugins: Arc<PluginRegistry>,
    /// Provider regions, gathered at startup.
    pub regions: Vec<crate::api::native::RegionView>,
    /// Metering tap.
    pub tap: MeteringTap,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// TLS configuration (reloadable).
    pub tls: Arc<ReloadableTls>,
}
