//! Keeping the inventory in step with what providers report.
//!
//! Providers are the source of truth for an instance's state; the inventory is Skyport's
//! record of it. A change a provider made by itself (a guest powered off from inside, a
//! QEMU that was killed, an instance deleted in its cloud) is recorded and metered once,
//! whether a tenant's read notices it first ([`observe`]) or the periodic sync does
//! ([`sync_provider`]). An instance an API operation holds (see
//! [`Inventory::claim`](super::Inventory::claim)) is left to that operation.

use skyport_plugin_host::Plugins as _;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use skyport_plugin_api::sdk::CallContext;

use super::lifecycle::{emit, Initiator};
use super::InstanceRecord;
use crate::error::GatewayError;
use crate::plugins::PluginHandle;
use crate::state::AppState;

/// Deadline of one `inventory.list` call.
const LIST_TIMEOUT: Duration = Duration::from_secs(30);

/// Records that `record`'s provider now reports it `observed` (`terminated` when the
/// provider no longer knows it). The state moves only if nobody recorded a change first,
/// and only that winner meters it: running -> stopped is a `stop`, anything -> terminated
/// a `terminate`, both `initiated_by: provider`. Returns the record as it now stands.
pub async fn observe(
    state: &AppState,
    mut record: InstanceRecord,
    observed: &str,
) -> Result<InstanceRecord, GatewayError> {
    if observed == record.state || state.inventory.is_claimed(&record.id) {
        return Ok(record);
    }
    let moved = state
        .inventory
        .transition(&record.id, &record.state, observed)
        .await?;
    let was = std::mem::replace(&mut record.state, observed.to_string());
    if !moved {
        return Ok(record);
    }
    let event = match (was.as_str(), observed) {
        (_, "terminated") => Some("terminate"),
        ("running" | "stopping", "stopped") => Some("stop"),
        _ => None,
    };
    if let Some(event) = event {
        tracing::warn!(
            instance = %record.id,
            provider = %record.provider,
            from = %was,
            to = observed,
            "instance changed by its provider"
        );
        state
            .metrics
            .instance_changes_detected
            .get_or_create(&vec![
                ("provider", record.provider.clone()),
                ("state", observed.to_string()),
            ])
            .inc();
        emit(state, &record, event, Initiator::Provider).await;
    }
    Ok(record)
}

/// One provider's `inventory.list` joined with the inventory.
pub struct JoinedListing {
    /// Every active inventory record of the provider, with the state the provider reports
    /// for it (`None`: the provider no longer has it).
    pub records: Vec<(InstanceRecord, Option<String>)>,
    /// Ids the provider runs that the inventory does not know, orphans included.
    pub unmanaged: Vec<String>,
}

/// Asks `provider` for its `inventory.list` and joins it with the inventory.
pub async fn join_listing(state: &AppState, provider: &str) -> Result<JoinedListing, GatewayError> {
    // The snapshot comes first: every record in it had its remote id before the provider
    // was asked, so a VM being created right now cannot be mistaken for a vanished one.
    let records = state.inventory.active_for_provider(provider).await?;
    let listed = state
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
    // A provider may also report processes it runs but does not manage (`"orphan": true`).
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

/// The plugins that serve `inventory.list@1`.
pub fn listing_providers(state: &AppState) -> impl Iterator<Item = &Arc<PluginHandle>> {
    state
        .plugins
        .plugins()
        .iter()
        .filter(|p| p.ops.iter().any(|op| op == "inventory.list@1"))
}

/// Compares one provider's `inventory.list` with the inventory: changed states are
/// observed, instances the provider no longer has become `terminated`, and instances the
/// provider has but the inventory does not know are counted (`skyport_instances_unmanaged`)
/// and logged.
pub async fn sync_provider(state: &AppState, provider: &str) -> Result<(), GatewayError> {
    let joined = join_listing(state, provider).await?;
    for (record, reported) in joined.records {
        let observed = reported.unwrap_or_else(|| "terminated".to_string());
        observe(state, record, &observed).await?;
    }
    if !joined.unmanaged.is_empty() {
        tracing::warn!(
            provider,
            unmanaged = ?joined.unmanaged,
            "the provider runs instances Skyport's inventory does not know"
        );
    }
    state
        .metrics
        .instances_unmanaged
        .get_or_create(&vec![("provider", provider.to_string())])
        .set(joined.unmanaged.len() as i64);
    Ok(())
}

/// Syncs every healthy provider that serves `inventory.list@1`, every `interval`.
pub fn spawn(state: Arc<AppState>, interval: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            for plugin in listing_providers(&state) {
                if !plugin.health().healthy {
                    continue;
                }
                if let Err(e) = sync_provider(&state, &plugin.name).await {
                    tracing::warn!(provider = %plugin.name, error = %e, "inventory sync failed");
                }
            }
        }
    })
}
