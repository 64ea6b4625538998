//! Keeping the inventory in step with what providers report.
//!
//! Providers are the source of truth for an instance's state; the inventory is Skyport's
//! record of it. Every `[inventory] sync_interval_secs`, each healthy provider's
//! `inventory.list` is compared with the inventory: changed states are observed (see
//! [`InstanceService::observe`]), instances the provider no longer has become
//! `terminated`, and instances it runs that the inventory does not know are counted.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use skyport_core::error::GatewayError;
use skyport_core::metrics::Metrics;
use skyport_plugin_api::sdk::CallContext;
use skyport_plugin_host::{PluginFacts, Plugins};

use super::InstanceRecord;
use crate::operations::instances::InstanceService;

/// Deadline of one `inventory.list` call.
const LIST_TIMEOUT: Duration = Duration::from_secs(30);

/// One provider's `inventory.list` joined with the inventory.
pub struct JoinedListing {
    /// Every active inventory record of the provider, with the state the provider reports
    /// for it (`None`: the provider no longer has it).
    pub records: Vec<(InstanceRecord, Option<String>)>,
    /// Ids the provider runs that the inventory does not know, orphans included.
    pub unmanaged: Vec<String>,
}

/// The inventory sync.
pub struct InventorySync {
    instances: Arc<InstanceService>,
    plugins: Arc<dyn Plugins>,
    metrics: Arc<Metrics>,
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
        }
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
        let unmanaged = remote
            .keys()
            .copied()
            .chain(orphans.iter().filter_map(|vm| vm["id"].as_str()))
            .map(str::to_owned)
            .collect();
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
        if !joined.unmanaged.is_empty() {
            tracing::warn!(
                provider,
                unmanaged = ?joined.unmanaged,
                "the provider runs instances Skyport's inventory does not know"
            );
        }
        self.metrics
            .instances_unmanaged
            .get_or_create(&vec![("provider", provider.to_string())])
            .set(joined.unmanaged.len() as i64);
        Ok(())
    }

    /// Syncs every healthy provider that serves `inventory.list@1` once.
    pub async fn sync_all(&self) {
        for plugin in self.listing_providers() {
            if !plugin.health.healthy {
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
