//! Configuration: TOML, validated at load with errors that name the key path.
//!
//! The embedded default (`config/skyport.toml`) is compiled in; `--config FILE` replaces it.
//! Unknown keys are errors, never silently ignored.
//!
//! This module is the schema and the checks that need nothing but the schema. What needs
//! the layers above (the catalog's references, the placement rules' CEL) is checked there,
//! by `skyport_domain::config_check`, which every command that loads a configuration calls.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

mod auth;
mod budgets;
mod catalog;
mod console;
mod placement;
mod plugins;
mod redis;
mod server;
mod storage;
mod webhooks;

pub use auth::{
    AuthConfig, JwtConfig, JwtKeyConfig, MtlsConfig, Sigv2Config, Sigv4Config, TlsConfig,
    MAX_TOKEN_CACHE_ENTRIES,
};
pub use budgets::{BudgetConfig, BudgetMode};
pub use catalog::{
    BlueprintConfig, LeaseAction, LeaseTerms, OfferingConfig, ParamValue, Params, PlanConfig,
    ResourceConfig, SeparateConfig, Separation, RAW, RESOURCE_TYPES,
};
pub use console::{ConsoleConfig, OidcConfig};
pub use placement::{ChooseAction, ExcludeAction, RuleConfig};
pub use plugins::{Isolation, PluginConfig, RemotePluginConfig};
pub use redis::{CacheCoherence, LimitsBackend, OnRedisError, RedisConfig};
pub use server::ServerConfig;
pub use storage::{StorageBackend, StorageConfig};
pub use webhooks::WebhooksConfig;

/// The embedded default configuration, as shipped.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../../../config/skyport.toml");

/// A configuration error with the key path it concerns.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    /// Dotted key path, e.g. `tenants.demo.burst`.
    pub path: String,
    /// What is wrong and, where possible, what to do.
    pub message: String,
}

/// All configuration errors found in one file.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
pub struct ConfigErrors(pub Vec<ConfigError>);

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listeners, state directory, logging and HTTP limits.
    pub server: ServerConfig,
    /// TLS material; empty paths select development material.
    #[serde(default)]
    pub tls: TlsConfig,
    /// Authentication.
    pub auth: AuthConfig,
    /// Default per-tenant rate limits.
    pub limits: LimitsConfig,
    /// Read cache.
    pub cache: CacheConfig,
    /// Metering tap.
    pub tap: TapConfig,
    /// Inventory reconciliation with the providers.
    #[serde(default)]
    pub inventory: InventoryConfig,
    /// Where the gateway's state is kept.
    #[serde(default)]
    pub storage: StorageConfig,
    /// The Redis replicas share (rate limits, cache coherence).
    pub redis: Option<RedisConfig>,
    /// Tenants by id.
    #[serde(default)]
    pub tenants: BTreeMap<String, TenantConfig>,
    /// Catalog: generic providers by name.
    #[serde(default)]
    pub blueprints: BTreeMap<String, BlueprintConfig>,
    /// Catalog: what tenants order, by name.
    #[serde(default)]
    pub offerings: BTreeMap<String, OfferingConfig>,
    /// Catalog: what each tenant may use, by name.
    #[serde(default)]
    pub plans: BTreeMap<String, PlanConfig>,
    /// Placement: the administrators' rules.
    #[serde(default)]
    pub placement: PlacementConfig,
    /// Plugins to load, in order.
    #[serde(default)]
    pub plugins: Vec<PluginConfig>,
    /// The EC2 Query API: AWS names for Skyport's regions and instance types.
    #[serde(default)]
    pub ec2: Ec2Config,
    /// Budgets (governance): spending limits per tenant or department and month.
    #[serde(default)]
    pub budgets: Vec<BudgetConfig>,
    /// Orders that wait for an approver.
    #[serde(default)]
    pub approvals: ApprovalsConfig,
    /// Event webhooks: retries, timeouts and the endpoints' CAs.
    #[serde(default)]
    pub webhooks: WebhooksConfig,
    /// The providers' service level: the target availability.
    #[serde(default)]
    pub sla: SlaConfig,
    /// The web console: whether it is served, and its sessions' timeouts.
    #[serde(default)]
    pub console: ConsoleConfig,
}

/// `[sla]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlaConfig {
    /// Availability each provider and region should reach in a month, in percent of the
    /// minutes observed: below it, the month's report says so and `sla.breach` fires.
    pub availability_target: rust_decimal::Decimal,
}

impl Default for SlaConfig {
    fn default() -> Self {
        Self {
            availability_target: rust_decimal::Decimal::new(995, 1),
        }
    }
}

/// `[approvals]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalsConfig {
    /// Seconds an order may wait for a decision before it expires.
    pub expire_after_secs: u64,
}

impl Default for ApprovalsConfig {
    fn default() -> Self {
        Self {
            expire_after_secs: 7 * 24 * 3600,
        }
    }
}

/// `[ec2]`: names the EC2 Query API also accepts, for tools that only know AWS's.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ec2Config {
    /// AWS region names that also name a Skyport region (`"us-east-1" = "local-1"`): a
    /// SigV4 credential scoped to the alias acts in the region.
    #[serde(default)]
    pub region_aliases: BTreeMap<String, String>,
    /// AWS instance type names that also name a Skyport type (`"t3.micro" = "sp.micro"`),
    /// accepted wherever an EC2 request names a type.
    #[serde(default)]
    pub instance_type_aliases: BTreeMap<String, String>,
}

/// `[placement]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlacementConfig {
    /// `[[placement.rules]]`, in the order they run (`docs/placement.md`).
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
}

/// `[limits]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Sustained rate for tenants without their own.
    pub default_requests_per_second: u32,
    /// Burst for tenants without their own.
    pub default_burst: u32,
    /// Requests of one tenant in the gateway at once.
    #[serde(default = "default_max_concurrent_requests")]
    pub max_concurrent_requests: usize,
    /// Where the buckets live: this process (`local`, default) or `[redis]`, shared by
    /// every replica.
    #[serde(default)]
    pub backend: LimitsBackend,
    /// With `backend = "redis"`: what happens while Redis cannot be reached.
    #[serde(default)]
    pub on_redis_error: OnRedisError,
}

fn default_max_concurrent_requests() -> usize {
    256
}

/// `[cache]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// Entries across all tenants.
    pub max_entries: u64,
    /// How a write invalidates cached reads: in this replica (`local`, default), or on
    /// every replica through `[redis]`.
    #[serde(default)]
    pub coherence: CacheCoherence,
}

/// `[tap]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TapConfig {
    /// Requests the tap queue holds before it drops (and counts) new ones.
    pub queue_capacity: usize,
    /// Most requests counted into one batch handed to a metering plugin.
    pub batch_max_events: usize,
}

/// `[inventory]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InventoryConfig {
    /// Seconds between two comparisons of every provider's `inventory.list` with the
    /// inventory (changes a provider made by itself are recorded and metered then).
    pub sync_interval_secs: u64,
    /// Seconds between two looks at the instances' leases (warnings and expiries fire
    /// within this much of their time).
    #[serde(default = "default_lease_check_secs")]
    pub lease_check_secs: u64,
    /// Seconds between two looks at the budgets' thresholds (a threshold's event fires
    /// within this much of the bill reaching it).
    #[serde(default = "default_budget_check_secs")]
    pub budget_check_secs: u64,
}

fn default_lease_check_secs() -> u64 {
    15
}

fn default_budget_check_secs() -> u64 {
    60
}

impl Default for InventoryConfig {
    fn default() -> Self {
        Self {
            sync_interval_secs: 5,
            lease_check_secs: default_lease_check_secs(),
            budget_check_secs: default_budget_check_secs(),
        }
    }
}

/// `[tenants.<id>]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// Departments (chargeback splits).
    #[serde(default)]
    pub departments: Vec<String>,
    /// Sustained request rate; default from `[limits]`.
    pub requests_per_second: Option<u32>,
    /// Burst; default from `[limits]`.
    pub burst: Option<u32>,
    /// Most instances (not terminated) at once.
    pub max_instances: Option<u32>,
    /// Most vCPUs across those instances.
    pub max_vcpus: Option<u32>,
    /// Most memory (MiB) across those instances.
    pub max_memory_mib: Option<u32>,
    /// Where a raw request (no offering) goes when it names no region (a provider region
    /// name): the user context's `region` of the built-in offering `raw`; through EC2 only
    /// when that region holds the image. None: placement chooses.
    pub default_region: Option<String>,
    /// The tenant's plan (`[plans.<name>]`); none: every offering, every region, raw
    /// requests allowed.
    pub plan: Option<String>,
    /// Whether the tenant's `admin` role makes its holders operators: the admin API
    /// reaches every tenant, so only the operating team's tenant should be marked so.
    #[serde(default)]
    pub operator: bool,
}

impl Config {
    /// The embedded default.
    pub fn embedded() -> Self {
        Self::parse(EMBEDDED_DEFAULT).expect("the embedded default configuration is valid")
    }

    /// Parses TOML text and checks what the schema alone can check (see the module docs).
    pub fn parse(text: &str) -> Result<Self, ConfigErrors> {
        let config = Self::from_toml(text)?;
        let errors = config.check();
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// Parses TOML text into the schema: unknown keys and wrong types are errors (the
    /// first one, with its key path); values are not checked yet (see [`Config::check`]).
    pub fn from_toml(text: &str) -> Result<Self, ConfigErrors> {
        let deserializer = toml::Deserializer::new(text);
        serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            ConfigErrors(vec![ConfigError {
                path: if path == "." {
                    "(top level)".into()
                } else {
                    path
                },
                message: inner.message().to_string(),
            }])
        })
    }

    /// Every problem with the values that the schema alone can see, each with its key path.
    pub fn check(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        let mut err = |path: String, message: &str| {
            errors.push(ConfigError {
                path,
                message: message.to_string(),
            })
        };
        if !matches!(self.server.log_format.as_str(), "text" | "json") {
            err("server.log_format".into(), "must be \"text\" or \"json\"");
        }
        if self.server.health_probe_interval_secs == 0 {
            err(
                "server.health_probe_interval_secs".into(),
                "must be at least 1",
            );
        }
        if self.server.max_header_bytes < 8192 {
            err("server.max_header_bytes".into(), "must be at least 8192");
        }
        if self.limits.max_concurrent_requests == 0 {
            err(
                "limits.max_concurrent_requests".into(),
                "must be at least 1",
            );
        }
        if self.server.max_connections == Some(0) {
            err("server.max_connections".into(), "must be at least 1");
        }
        if self.server.max_connections_per_peer == 0 {
            err(
                "server.max_connections_per_peer".into(),
                "must be at least 1",
            );
        }
        if self.server.new_connections_per_peer_per_sec == 0 {
            err(
                "server.new_connections_per_peer_per_sec".into(),
                "must be at least 1",
            );
        }
        for (key, value) in [
            ("handshake_timeout_secs", self.server.handshake_timeout_secs),
            ("idle_timeout_secs", self.server.idle_timeout_secs),
            ("body_read_timeout_secs", self.server.body_read_timeout_secs),
        ] {
            if !(1..=3600).contains(&value) {
                err(format!("server.{key}"), "must be 1-3600");
            }
        }
        if self.server.max_buffered_body_bytes < (1 << 20) {
            err(
                "server.max_buffered_body_bytes".into(),
                "must be at least 1048576 (one request body of the largest size)",
            );
        }
        if !(1..=MAX_TOKEN_CACHE_ENTRIES).contains(&self.auth.jwt.token_cache_entries) {
            err(
                "auth.jwt.token_cache_entries".into(),
                "must be 1-10000000 (each entry is a slot allocated at start)",
            );
        }
        if !(60..=366 * 24 * 3600).contains(&self.auth.jwt.max_token_lifetime_secs) {
            err(
                "auth.jwt.max_token_lifetime_secs".into(),
                "must be 60-31622400 (a minute to a year)",
            );
        }
        if self.auth.jwt.leeway_secs > 30 {
            err("auth.jwt.leeway_secs".into(), "must be at most 30");
        }
        if !(1..=3600).contains(&self.auth.sigv4.max_skew_secs) {
            err("auth.sigv4.max_skew_secs".into(), "must be 1-3600");
        }
        if self.auth.jwt.issuer.is_empty() {
            err("auth.jwt.issuer".into(), "must not be empty");
        }
        if self.auth.jwt.audience.is_empty() {
            err("auth.jwt.audience".into(), "must not be empty");
        }
        for (i, key) in self.auth.jwt.keys.iter().enumerate() {
            let sources = [
                key.pem.is_some(),
                key.jwks_file.is_some(),
                key.jwks_url.is_some(),
            ];
            if sources.iter().filter(|s| **s).count() != 1 {
                err(
                    format!("auth.jwt.keys[{i}]"),
                    "set exactly one of pem, jwks_file, jwks_url",
                );
            }
            if key.pem.is_some() && (key.kid.is_none() || key.algorithm.is_none()) {
                err(
                    format!("auth.jwt.keys[{i}]"),
                    "a pem key needs kid and algorithm",
                );
            }
            if let Some(alg) = &key.algorithm {
                if !matches!(alg.as_str(), "RS256" | "ES256" | "EdDSA") {
                    err(
                        format!("auth.jwt.keys[{i}].algorithm"),
                        "must be RS256, ES256 or EdDSA",
                    );
                }
            }
        }
        if self.limits.default_requests_per_second == 0 || self.limits.default_burst == 0 {
            err("limits".into(), "rates and bursts must be positive");
        }
        for (id, tenant) in &self.tenants {
            if !valid_name(id) {
                err(format!("tenants.{id}"), "tenant ids are 1-63 of [a-z0-9-]");
            }
            if tenant.requests_per_second == Some(0) || tenant.burst == Some(0) {
                err(format!("tenants.{id}"), "rates and bursts must be positive");
            }
            for d in &tenant.departments {
                if !valid_name(d) {
                    err(
                        format!("tenants.{id}.departments"),
                        "department names are 1-63 of [a-z0-9-]",
                    );
                }
            }
        }
        if self.tap.queue_capacity == 0 || self.tap.batch_max_events == 0 {
            err(
                "tap".into(),
                "queue_capacity and batch_max_events must be positive",
            );
        }
        if self.approvals.expire_after_secs == 0 {
            err("approvals.expire_after_secs".into(), "must be at least 1");
        }
        if !(1..=3600).contains(&self.inventory.lease_check_secs) {
            err("inventory.lease_check_secs".into(), "must be 1-3600");
        }
        if self.sla.availability_target <= rust_decimal::Decimal::ZERO
            || self.sla.availability_target > rust_decimal::Decimal::ONE_HUNDRED
        {
            err(
                "sla.availability_target".into(),
                "must be a percentage above 0 and at most 100",
            );
        }
        if !(1..=3600).contains(&self.inventory.budget_check_secs) {
            err("inventory.budget_check_secs".into(), "must be 1-3600");
        }
        if self.inventory.sync_interval_secs == 0 {
            err("inventory.sync_interval_secs".into(), "must be at least 1");
        }
        errors.extend(plugins::check(&self.plugins));
        errors.extend(self.storage.check());
        errors.extend(self.webhooks.check());
        errors.extend(self.console.check());
        if self.console.oidc.is_some() && self.auth.jwt.keys.is_empty() {
            errors.push(ConfigError {
                path: "console.oidc".into(),
                message: "the identity provider's keys must be in [[auth.jwt.keys]]: the console \
                          verifies its access tokens as the API does"
                    .into(),
            });
        }

        errors.extend(redis::check(
            self.redis.as_ref(),
            self.limits.backend,
            self.cache.coherence,
        ));
        errors
    }

    /// The name of `tenant`'s plan, if it has one.
    pub fn plan_name(&self, tenant: &str) -> Option<&str> {
        self.tenants.get(tenant)?.plan.as_deref()
    }

    /// `p` resolved against the state directory when relative.
    pub fn state_path(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.server.state_dir.join(p)
        }
    }
}

/// A password named by configuration `what` (e.g. `storage`): the content of `file`
/// (resolved against `state_dir`, trailing newlines dropped), or the value of the
/// environment variable `env`; `None` when neither is set. The error names the key.
pub fn read_secret(
    what: &str,
    file: Option<&Path>,
    env: Option<&str>,
    state_dir: &Path,
) -> Result<Option<String>, String> {
    if let Some(file) = file {
        let path = if file.is_absolute() {
            file.to_path_buf()
        } else {
            state_dir.join(file)
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("{what}.password_file: cannot read {}: {e}", path.display()))?;
        return Ok(Some(text.trim_end_matches(['\n', '\r']).to_string()));
    }
    if let Some(var) = env {
        let value = std::env::var(var)
            .map_err(|_| format!("{what}.password_env: the variable {var} is not set"))?;
        return Ok(Some(value));
    }
    Ok(None)
}

/// The text of configuration file `path`.
pub fn read(path: &Path) -> Result<String, ConfigErrors> {
    std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            path: path.display().to_string(),
            message: format!("cannot read: {e}"),
        }])
    })
}

/// Tenant, department and service names: 1-63 of `[a-z0-9-]`, not starting with `-`.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && !s.starts_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_is_valid() {
        let c = Config::embedded();
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:8443");
        assert_eq!(c.tenants["demo"].burst, Some(200));
        assert_eq!(c.tenants["acme"].departments, vec!["ops"]);
    }

    #[test]
    fn unknown_key_is_an_error_naming_its_path() {
        let text = EMBEDDED_DEFAULT.replace("[tenants.acme]", "[tenants.acme]\ncolour = \"red\"");
        let err = Config::parse(&text).unwrap_err().to_string();
        assert!(err.starts_with("tenants.acme"), "{err}");
        assert!(err.contains("colour"), "{err}");
    }

    #[test]
    fn semantic_errors_are_all_reported() {
        let text = EMBEDDED_DEFAULT
            .replace("leeway_secs = 30", "leeway_secs = 300")
            .replace("log_format = \"text\"", "log_format = \"xml\"")
            .replace("idle_timeout_secs = 60", "idle_timeout_secs = 0")
            .replace(
                "token_cache_entries = 100000",
                "token_cache_entries = 9223372036854775807",
            );
        let errs = Config::parse(&text).unwrap_err();
        let paths: Vec<_> = errs.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "server.log_format",
                "server.idle_timeout_secs",
                "auth.jwt.token_cache_entries",
                "auth.jwt.leeway_secs"
            ]
        );
    }
}
