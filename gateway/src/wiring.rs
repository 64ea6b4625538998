//! Wiring: the gateway built from its configuration, once, at startup. Every store, service,
//! shared stack step and front door is made here and handed what it uses; nothing below
//! reaches back up for more.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use skyport_auth::access_keys::AccessKeys;
use skyport_auth::jwt::JwtVerifier;
use skyport_auth::Authenticator;
use skyport_core::clock::SharedClock;
use skyport_core::config::{CacheCoherence, Config, ConfigErrors, JwtKeyConfig, LimitsBackend};
use skyport_core::metrics::Metrics;
use skyport_core::tenancy::TenantDirectory;
use skyport_domain::approvals::ApprovalService;
use skyport_domain::budgets::BudgetService;
use skyport_domain::catalog::CatalogService;
use skyport_domain::events::dispatch::{DispatchSettings, Dispatcher};
use skyport_domain::events::EventService;
use skyport_domain::inventory::host_op::GatewayHostOps;
use skyport_domain::inventory::lifecycle::LifecycleMeter;
use skyport_domain::inventory::sync::InventorySync;
use skyport_domain::leases::LeaseStore;
use skyport_domain::metering_tap::{MeteringTap, TapReceiver};
use skyport_domain::operations::deployments::DeploymentService;
use skyport_domain::operations::diagnostics::Diagnostics;
use skyport_domain::operations::images::ImageService;
use skyport_domain::operations::instances::InstanceService;
use skyport_domain::operations::key_pairs::KeyPairService;
use skyport_domain::operations::metering::MeteringService;
use skyport_domain::placement::rules::RuleSet;
use skyport_domain::placement::PlacementService;
use skyport_domain::regions::Regions;
use skyport_domain::sessions::{SessionService, SessionTimeouts};
use skyport_domain::sla::{SlaRecorder, SlaService};
use skyport_plugin_host::{PluginRegistry, Plugins};

use crate::api::ec2::Ec2Api;
use crate::api::native::NativeApi;
use crate::console::Console;
use crate::redis_link::RedisLink;
use crate::services::Services;
use crate::stack::cache::ResponseCache;
use crate::stack::cache_epochs::SharedEpochs;
use crate::stack::limit::TenantRateLimiter;
use crate::stack::Stack;
use crate::storage::Stores;

/// The running gateway's parts.
pub struct Gateway {
    /// The shared steps of the request stack.
    pub stack: Stack,
    /// The native and admin API.
    pub native: NativeApi,
    /// The EC2 Query API.
    pub ec2: Ec2Api,
    /// The web console.
    pub console: Console,
    /// Writes in progress (each runs to its end even when its client goes away); waited
    /// for at shutdown before the plugins stop.
    pub writes: tokio_util::task::TaskTracker,
    /// The services behind both.
    pub services: Arc<Services>,
    /// The JWT verifier (reloaded on SIGHUP).
    pub jwt: Arc<JwtVerifier>,
    /// The inventory sync, run on a timer.
    pub sync: Arc<InventorySync>,
    /// Sends the outbox's webhook deliveries.
    pub dispatcher: Arc<Dispatcher>,
    /// Where run-once work is leased, and who this replica is there.
    pub leases: Arc<dyn LeaseStore>,
    /// This replica's name in the leases.
    pub replica: String,
}

/// The JWT key sources in force: the configured ones (paths resolved against the state
/// directory), or the development key when none is configured.
pub fn jwt_key_sources(config: &Config, certs_dir: &Path) -> Vec<JwtKeyConfig> {
    use crate::tls::dev_certs;
    if config.auth.jwt.keys.is_empty() {
        return vec![JwtKeyConfig {
            kid: Some(dev_certs::DEV_JWT_KID.to_string()),
            algorithm: Some("ES256".to_string()),
            pem: Some(certs_dir.join(dev_certs::files::JWT_PUBLIC)),
            jwks_file: None,
            jwks_url: None,
        }];
    }
    config
        .auth
        .jwt
        .keys
        .iter()
        .map(|k| JwtKeyConfig {
            pem: k.pem.as_deref().map(|p| config.state_path(p)),
            jwks_file: k.jwks_file.as_deref().map(|p| config.state_path(p)),
            ..k.clone()
        })
        .collect()
}

impl Gateway {
    /// Builds the gateway over `config`'s state directory: stores opened (and migrated),
    /// plugins loaded, regions gathered, services and front doors made. `plugin_dir` is
    /// where relative plugin file names resolve; `host_exe` is the `skyport` executable
    /// that hosts plugin processes. The tap's receiving end comes back beside
    /// the gateway: the caller runs it (`forward_batches`), and it ends once the gateway
    /// is dropped.
    pub async fn build(
        config: Config,
        plugin_dir: &Path,
        host_exe: &Path,
        metrics: Arc<Metrics>,
        clock: SharedClock,
    ) -> anyhow::Result<(Self, TapReceiver)> {
        let state_dir = config.server.state_dir.clone();
        let jwt = Arc::new(
            JwtVerifier::new(
                &config.auth.jwt,
                jwt_key_sources(&config, &state_dir.join("certs")),
                clock.clone(),
            )
            .context("loading JWT keys")?,
        );
        jwt.prefetch().await;

        let stores = Stores::open(&config).await?;
        // The Redis replicas share, when something configured uses it.
        let redis = match &config.redis {
            Some(r)
                if config.limits.backend == LimitsBackend::Redis
                    || config.cache.coherence != CacheCoherence::Local =>
            {
                Some(RedisLink::connect(r, &state_dir).await?)
            }
            _ => None,
        };
        let registry = Arc::new(
            PluginRegistry::load_all(
                &config.plugins,
                plugin_dir,
                &state_dir,
                host_exe,
                Arc::clone(&metrics),
                clock.clone(),
            )
            .await
            .map_err(|refusal| anyhow::anyhow!("{refusal} (required = true)"))?,
        );
        let plugins: Arc<dyn Plugins> = registry.clone();
        let regions = Arc::new(Regions::gather(&*plugins).await);

        let (tap, tap_receiver) = MeteringTap::new(
            config.tap.queue_capacity,
            Arc::clone(&plugins),
            Arc::clone(&metrics),
        );
        let tenants = Arc::new(TenantDirectory::new(config.tenants.clone()));
        let catalog = Arc::new(
            CatalogService::open(&config, Arc::clone(&tenants), stores.catalog, clock.clone())
                .await
                .context("reading the catalog changes")?,
        );
        let rules = RuleSet::compile(&config.placement.rules, "placement.rules")
            .map_err(|errors| anyhow::anyhow!(ConfigErrors(errors)))?;
        warn_about_unserved(&config, &regions, &rules, &registry);
        let placement = Arc::new(PlacementService::new(
            Arc::clone(&catalog),
            rules,
            Arc::clone(&tenants),
            Arc::clone(&regions),
            Arc::clone(&plugins),
            stores.placements,
            Arc::clone(&metrics),
            clock.clone(),
        ));
        // Who this replica is in the shared leases (creates in flight, inventory syncs) and
        // in the cache coherence.
        let replica = skyport_core::ids::new_id("replica");
        let budgets = Arc::new(
            BudgetService::new(
                Arc::clone(&catalog),
                Arc::clone(&tenants),
                Arc::clone(&stores.inventory),
                Arc::clone(&plugins),
                clock.clone(),
            )
            .with_instance_leases(Arc::clone(&stores.instance_leases)),
        );
        let events = Arc::new(EventService::new(stores.events, clock.clone()));
        let dispatcher = Dispatcher::new(
            Arc::clone(&events),
            Arc::new(crate::webhook_client::HttpsTransport::new(&config)?),
            DispatchSettings::from(&config.webhooks),
        );
        let sla = Arc::new(SlaService::new(
            Arc::new(SlaRecorder::new(stores.sla, replica.clone(), clock.clone())),
            config.sla.availability_target,
            clock.clone(),
        ));
        let instances = Arc::new(
            InstanceService::new(
                stores.inventory,
                Arc::clone(&plugins),
                Arc::clone(&tenants),
                Arc::clone(&catalog),
                LifecycleMeter::new(tap.clone(), clock.clone()),
                Arc::clone(&metrics),
                clock.clone(),
            )
            .with_leases(Arc::clone(&stores.leases), replica.clone())
            .with_budgets(Arc::clone(&budgets))
            .with_instance_leases(stores.instance_leases)
            .with_events(Arc::clone(&events))
            .with_sla(Arc::clone(sla.recorder())),
        );
        // Replicas sharing the inventory sync each provider once: whoever holds its
        // lease, for three sync intervals unrenewed.
        let sync = Arc::new(
            InventorySync::new(
                Arc::clone(&instances),
                Arc::clone(&plugins),
                Arc::clone(&metrics),
            )
            .with_leases(
                Arc::clone(&stores.leases),
                replica.clone(),
                Duration::from_secs(3 * config.inventory.sync_interval_secs),
            ),
        );
        registry.bind_host_ops(Arc::new(GatewayHostOps(Arc::downgrade(&sync))));
        let access_keys = Arc::new(AccessKeys::new(stores.access_keys, clock.clone()));
        let config = Arc::new(config);
        let services = Arc::new(Services {
            deployments: DeploymentService::new(
                Arc::clone(&placement),
                Arc::clone(&instances),
                stores.deployments,
                clock.clone(),
            ),
            key_pairs: KeyPairService::new(stores.key_pairs, clock.clone()),
            images: ImageService::new(Arc::clone(&plugins), Arc::clone(&regions)),
            metering: MeteringService::new(Arc::clone(&plugins)),
            diagnostics: Diagnostics::new(Arc::clone(&plugins)),
            access_keys: Arc::clone(&access_keys),
            config: Arc::clone(&config),
            tenants: Arc::clone(&tenants),
            regions,
            catalog,
            placement,
            instances,
            budgets,
            approvals: ApprovalService::new(
                stores.approvals,
                clock.clone(),
                Duration::from_secs(config.approvals.expire_after_secs),
            )
            .with_events(Arc::clone(&events)),
            events,
            sla,
            sessions: Arc::new(SessionService::new(
                stores.sessions,
                clock.clone(),
                SessionTimeouts::from(&config.console),
            )),
            sync: Arc::clone(&sync),
            plugins: registry,
            clock: clock.clone(),
        });
        let auth = Arc::new(Authenticator::new(
            Arc::clone(&jwt),
            config.auth.mtls.admin_services.clone(),
            access_keys,
            Duration::from_secs(config.auth.sigv4.max_skew_secs),
            clock.clone(),
        ));
        let stack = Stack {
            tenants,
            limiter: TenantRateLimiter::connect(&config, redis.as_ref(), clock.clone()).await,
            cache: {
                let cache = ResponseCache::new(config.cache.max_entries, clock.clone());
                match (&redis, config.cache.coherence) {
                    (Some(link), CacheCoherence::Redis) => cache.with_shared_epochs(
                        SharedEpochs::new(link.clone(), &replica, clock.clone()),
                    ),
                    _ => cache,
                }
            },
            tap,
            metrics: Arc::clone(&metrics),
            clock,
            bodies: crate::stack::request::BodyLimits::new(
                config.server.max_buffered_body_bytes,
                Duration::from_secs(config.server.body_read_timeout_secs),
            ),
            concurrency: crate::stack::concurrency::TenantConcurrency::new(
                config.limits.max_concurrent_requests,
            ),
        };
        let gateway = Self {
            stack,
            native: NativeApi::new(Arc::clone(&services), Arc::clone(&auth)),
            console: Console::new(
                Arc::clone(&services),
                Arc::clone(&auth),
                Arc::clone(&jwt),
                config.auth.jwt.keys.is_empty(),
            )?,
            ec2: Ec2Api::new(Arc::clone(&services), auth, Arc::clone(&metrics)),
            writes: tokio_util::task::TaskTracker::new(),
            services,
            jwt,
            sync,
            dispatcher,
            leases: stores.leases,
            replica,
        };
        Ok((gateway, tap_receiver))
    }
}

/// Logs configuration that names what is not served now: a tenant's default region, a
/// placement rule's provider.
fn warn_about_unserved(
    config: &Config,
    regions: &Regions,
    rules: &RuleSet,
    plugins: &PluginRegistry,
) {
    for (tenant, t) in &config.tenants {
        if let Some(region) = &t.default_region {
            if !regions.serves(region) {
                tracing::warn!(tenant = %tenant, region = %region, "tenants.{tenant}.default_region names no provider region served now; its raw requests are placed as if it were not set");
            }
        }
    }
    for (alias, region) in &config.ec2.region_aliases {
        if !regions.serves(region) {
            tracing::warn!(alias = %alias, region = %region, "ec2.region_aliases.{alias} names no provider region served now; requests scoped to it are refused");
        }
    }
    for (rule, provider) in rules.named_providers() {
        if plugins.get(provider).is_none() {
            tracing::warn!(
                rule,
                provider,
                "a placement rule names a provider that is not loaded"
            );
        }
    }
}
