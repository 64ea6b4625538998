//! Keeping the inventory in step with what providers report.
//!
//! Providers are the source of truth for an instance's state; the inventory is Skyport's
//! record of it. Every `[inventory] sync_interval_secs`, each healthy provider's
//! `inventory.list` is compared with the inventory: changed states are observed (see
//! [`InstanceService::observe`]), instances the provider no longer has become
//! `terminated`, and instances it runs that the inventory does not know are counted.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use skyport_core::error::{ErrorKind, GatewayError};
use skyport_core::metrics::Metrics;
use skyport_core::tenancy::TenantContext;
use skyport_plugin_api::sdk::CallContext;
use skyport_plugin_host::{PluginFacts, Plugins};

use super::InstanceRecord;
use crate::leases::{LeaseStore, SoleHolder};
use crate::operations::instances::{Adoption, InstanceService};

/// Deadline of one `inventory.list` call.
const LIST_TIMEOUT: Duration = Duration::from_secs(30);

/// One provider's `inventory.list` joined with the inventory.
pub struct JoinedListing {
    /// Every active inventory record of the provider, with the state the provider reports
    /// for it (`None`: the provider no longer has it).
    pub records: Vec<(InstanceRecord, Option<String>)>,
    /// What the provider runs that the inventory does not know, orphans included.
    pub unmanaged: Vec<UnmanagedVm>,
}

/// An operator's request to adopt an unmanaged VM.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdoptRequest {
    /// The tenant it is billed to.
    pub tenant: String,
    /// Its department.
    #[serde(default)]
    pub department: Option<String>,
    /// Its image, when the provider does not report it.
    #[serde(default)]
    pub image: Option<String>,
    /// Its Skyport instance type, when the provider does not report it.
    #[serde(default)]
    pub instance_type: Option<String>,
    /// Its region, when the provider does not report it.
    #[serde(default)]
    pub region: Option<String>,
    /// A name for it.
    #[serde(default)]
    pub name: Option<String>,
}

/// A VM a provider runs that is no instance of Skyport's.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct UnmanagedVm {
    /// The provider's id.
    pub id: String,
    /// Its state, as the provider reports it.
    pub state: Option<String>,
    /// A process the provider runs but does not manage (it cannot be adopted).
    pub orphan: bool,
    /// Its image, when the provider says.
    pub image: Option<String>,
    /// Its instance type, when the provider says.
    pub instance_type: Option<String>,
    /// Its region, when the provider says.
    pub region: Option<String>,
}

impl UnmanagedVm {
    fn from(vm: &Value) -> Option<Self> {
        let text = |key: &str| vm[key].as_str().map(str::to_owned);
        Some(Self {
            id: text("id")?,
            state: text("state"),
            orphan: vm["orphan"].as_bool() == Some(true),
            image: text("image"),
            instance_type: text("instance_type"),
            region: text("region"),
        })
    }
}

/// The inventory sync.
pub struct InventorySync {
    instances: Arc<InstanceService>,
    plugins: Arc<dyn Plugins>,
    metrics: Arc<Metrics>,
    /// `provider/id` of every unmanaged VM already logged: each is logged once.
    logged: Mutex<HashSet<String>>,
    /// Who syncs which provider, when replicas share the inventory.
    leases: Arc<dyn LeaseStore>,
    /// This replica, as a lease holder.
    holder: String,
    /// How long a provider's sync lease lasts unrenewed.
    lease_ttl: Duration,
    /// The providers this replica synced at its last pass.
    held: Mutex<HashSet<String>>,
}

impl InventorySync {
    /// Syncs what `instances` records with what `plugins` report.
    pub fn new(
        instances: Arc<InstanceService>,
        plugins: Arc<dyn Plugins>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            instances,
            plugins,
            metrics,
            logged: Mutex::default(),
            leases: Arc::new(SoleHolder),
            holder: String::new(),
            lease_ttl: Duration::ZERO,
            held: Mutex::default(),
        }
    }

    /// Syncs each provider only while `holder` holds its lease in `leases`
    /// (`inventory-sync:<provider>`, `ttl` long, renewed at every pass): replicas sharing
    /// the inventory sync a provider once, and another takes over when its syncer dies.
    pub fn with_leases(
        mut self,
        leases: Arc<dyn LeaseStore>,
        holder: String,
        ttl: Duration,
    ) -> Self {
        self.leases = leases;
        self.holder = holder;
        self.lease_ttl = ttl;
        self
    }

    /// Whether this replica syncs `provider` now (it holds, or has just taken, its lease).
    async fn holds_lease(&self, provider: &str) -> bool {
        let held = match self
            .leases
            .acquire(
                &format!("inventory-sync:{provider}"),
                &self.holder,
                self.lease_ttl,
            )
            .await
        {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(provider, error = %e.public, "inventory sync: the lease could not be read; skipping this pass");
                false
            }
        };
        let mut mine = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if held && mine.insert(provider.to_string()) {
            tracing::info!(provider, holder = %self.holder, "inventory sync: this replica syncs the provider");
        } else if !held && mine.remove(provider) {
            tracing::info!(
                provider,
                "inventory sync: another replica syncs the provider now"
            );
        }
        held
    }

    /// The plugins that serve `inventory.list@1`.
    pub fn listing_providers(&self) -> Vec<PluginFacts> {
        self.plugins
            .loaded()
            .into_iter()
            .filter(|p| p.serves("inventory.list@1"))
            .collect()
    }

    /// Whether plugin `name` is a metering plugin (the only callers of the inventory's host
    /// op).
    pub fn is_metering(&self, name: &str) -> bool {
        self.plugins.facts(name).is_some_and(|p| p.is_metering())
    }

    /// Asks `provider` for its `inventory.list` and joins it with the inventory.
    pub async fn join_listing(&self, provider: &str) -> Result<JoinedListing, GatewayError> {
        // The snapshot comes first: every record in it had its remote id before the
        // provider was asked, so a VM being created right now cannot be mistaken for a
        // vanished one.
        let records = self.instances.active_for_provider(provider).await?;
        let listed = self
            .plugins
            .call(
                provider,
                "inventory.list",
                1,
                json!({}),
                CallContext::default(),
                LIST_TIMEOUT,
            )
            .await?;
        // A provider may also report processes it runs but does not manage
        // (`"orphan": true`).
        let (orphans, managed): (Vec<&Value>, Vec<&Value>) = listed
            .as_array()
            .into_iter()
            .flatten()
            .partition(|vm| vm["orphan"].as_bool() == Some(true));
        let mut remote: HashMap<&str, &Value> = managed
            .into_iter()
            .filter_map(|vm| Some((vm["id"].as_str()?, vm)))
            .collect();
        let records = records
            .into_iter()
            .map(|record| {
                let reported = remote
                    .remove(record.remote_id.as_deref().unwrap_or_default())
                    .map(|vm| vm["state"].as_str().unwrap_or(&record.state).to_string());
                (record, reported)
            })
            .collect();
        let mut unmanaged: Vec<UnmanagedVm> = remote
            .values()
            .chain(orphans.iter())
            .filter_map(|vm| UnmanagedVm::from(vm))
            .collect();
        unmanaged.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(JoinedListing { records, unmanaged })
    }

    /// Compares one provider's `inventory.list` with the inventory: changed states are
    /// observed, instances the provider no longer has become `terminated`, and instances
    /// the provider has but the inventory does not know are counted
    /// (`skyport_instances_unmanaged`) and logged.
    pub async fn sync_provider(&self, provider: &str) -> Result<(), GatewayError> {
        let joined = self.join_listing(provider).await?;
        for (record, reported) in joined.records {
            let observed = reported.unwrap_or_else(|| "terminated".to_string());
            self.instances.observe(record, &observed).await?;
        }
        let mut logged = self.logged.lock().unwrap_or_else(|p| p.into_inner());
        // Only what the provider still runs is remembered: the set never outgrows it.
        let prefix = format!("{provider}/");
        logged.retain(|key| {
            !key.starts_with(&prefix)
                || joined
                    .unmanaged
                    .iter()
                    .any(|vm| key[prefix.len()..] == vm.id)
        });
        for vm in &joined.unmanaged {
            if logged.insert(format!("{provider}/{}", vm.id)) {
                tracing::warn!(
                    provider,
                    id = %vm.id,
                    orphan = vm.orphan,
                    "the provider runs a VM Skyport's inventory does not know (GET /admin/providers/{provider}/unmanaged; adopt it or remove it)"
                );
            }
        }
        drop(logged);
        self.metrics
            .instances_unmanaged
            .get_or_create(&vec![("provider", provider.to_string())])
            .set(joined.unmanaged.len() as i64);
        Ok(())
    }

    /// The VMs `provider` runs that are no instance of Skyport's (404 for a provider that
    /// does not list its inventory).
    pub async fn unmanaged(&self, provider: &str) -> Result<Vec<UnmanagedVm>, GatewayError> {
        if !self.listing_providers().iter().any(|p| p.name == provider) {
            return Err(GatewayError::not_found(format!(
                "no loaded provider named '{provider}' lists its inventory"
            )));
        }
        Ok(self.join_listing(provider).await?.unmanaged)
    }

    /// Adopts `provider`'s unmanaged VM `id` as `request` says: what the request leaves
    /// out (image, instance type, region) is taken from what the provider reports, and is
    /// a 400 naming the field when the provider does not say either.
    pub async fn adopt(
        &self,
        operator: &TenantContext,
        request_id: &str,
        provider: &str,
        id: &str,
        request: AdoptRequest,
    ) -> Result<InstanceRecord, GatewayError> {
        let vm = self
            .unmanaged(provider)
            .await?
            .into_iter()
            .find(|vm| vm.id == id)
            .ok_or_else(|| {
                GatewayError::not_found(format!(
                    "provider '{provider}' runs no unmanaged VM '{id}'"
                ))
            })?;
        if vm.orphan {
            return Err(GatewayError::new(
                ErrorKind::Conflict,
                format!("'{id}' is a process {provider} runs but does not manage; it cannot be adopted (stop it instead)"),
            ));
        }
        let given = |asked: Option<String>, reported: Option<String>, field: &str| {
            asked.or(reported).ok_or_else(|| {
                GatewayError::invalid(format!(
                    "{field}: the provider does not report it; give it in the request"
                ))
            })
        };
        let adoption = Adoption {
            tenant: request.tenant,
            department: request.department,
            provider: provider.to_string(),
            remote_id: vm.id,
            region: given(request.region, vm.region, "region")?,
            image: given(request.image, vm.image, "image")?,
            instance_type: given(request.instance_type, vm.instance_type, "instance_type")?,
            name: request.name,
        };
        self.instances.adopt(operator, request_id, adoption).await
    }

    /// Syncs every healthy provider that serves `inventory.list@1` once.
    pub async fn sync_all(&self) {
        for plugin in self.listing_providers() {
            if !plugin.health.healthy || !self.holds_lease(&plugin.name).await {
                continue;
            }
            if let Err(e) = self.sync_provider(&plugin.name).await {
                tracing::warn!(provider = %plugin.name, error = %e, "inventory sync failed");
            }
        }
    }

    /// Runs [`InventorySync::sync_all`] every `interval` until aborted.
    pub fn spawn(self: Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                self.sync_all().await;
            }
        })
    }
}
