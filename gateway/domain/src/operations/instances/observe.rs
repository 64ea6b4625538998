//! What providers report of the instances, recorded: a tenant's read asks the provider
//! ([`InstanceService::refresh`]); a change the provider made by itself (a guest powered
//! off from inside, a QEMU that was killed, an instance deleted in its cloud) is recorded
//! and metered once, whether a read notices it first or the inventory sync does
//! ([`InstanceService::observe`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;

use skyport_core::error::{ErrorKind, GatewayError};
use skyport_core::tenancy::TenantContext;

use super::{context, InstanceService};
use crate::inventory::lifecycle::Initiator;
use crate::inventory::{InstanceNetwork, InstanceRecord};

impl InstanceService {
    /// Refreshes the state from the provider (the source of truth for running VMs).
    pub async fn refresh(
        &self,
        ctx: &TenantContext,
        request_id: &str,
        record: InstanceRecord,
    ) -> Result<InstanceRecord, GatewayError> {
        let Some(remote) = record.remote_id.clone() else {
            return Ok(record);
        };
        if record.state == "terminated" {
            return Ok(record);
        }
        let live = self
            .provider(&record.provider, &record.region, context(ctx, request_id))
            .get(&remote)
            .await;
        let (observed, network) = match live {
            Ok(live) => (live.state, live.network),
            Err(e) if e.kind == ErrorKind::NotFound => ("terminated".to_string(), None),
            Err(e) => return Err(e),
        };
        let mut record = self.observe(record, &observed).await?;
        self.record_network(&mut record, network).await?;
        Ok(record)
    }

    /// Records the addresses the provider reports for `record` when they changed; a
    /// terminated instance has none.
    pub(super) async fn record_network(
        &self,
        record: &mut InstanceRecord,
        network: Option<InstanceNetwork>,
    ) -> Result<(), GatewayError> {
        let network = network.filter(|_| record.state != "terminated");
        if record.network != network {
            self.inventory
                .set_network(&record.id, network.clone())
                .await?;
            record.network = network;
        }
        Ok(())
    }

    /// [`InstanceService::refresh`] for listings: when the provider cannot answer now
    /// (unhealthy, unreachable, timing out), the inventory's last known state is shown
    /// instead of failing the whole listing, so one cloud being down never hides the
    /// others.
    pub async fn refresh_for_listing(
        &self,
        ctx: &TenantContext,
        request_id: &str,
        record: InstanceRecord,
    ) -> Result<InstanceRecord, GatewayError> {
        match self.refresh(ctx, request_id, record.clone()).await {
            Err(e) if shows_last_known(&e) => {
                tracing::debug!(request_id, instance = %record.id, provider = %record.provider, error = %e.public, "listing shows the last known state");
                Ok(record)
            }
            other => other,
        }
    }

    /// [`InstanceService::refresh_for_listing`] for many records at once, in their order.
    /// A provider holding at least [`LISTING_BATCH_MIN`] of them to refresh (and serving
    /// `inventory.list@1`) is asked once for its whole inventory instead of once per
    /// instance, and that answer serves every tenant's listings for
    /// [`LISTING_FRESH_FOR`] (listings at once share one call): a record the listing
    /// reports in its recorded state is shown as it is;
    /// one it reports otherwise, or does not report, or a running one with no addresses
    /// recorded is asked for on its own (which records the change). When that provider
    /// cannot answer now, its records show their last known state.
    pub async fn refresh_listing(
        &self,
        ctx: &TenantContext,
        request_id: &str,
        records: Vec<InstanceRecord>,
    ) -> Result<Vec<InstanceRecord>, GatewayError> {
        let mut wanted: HashMap<&str, (usize, &str)> = HashMap::new();
        for record in records.iter().filter(|r| needs_refresh(r)) {
            wanted
                .entry(&record.provider)
                .or_insert((0, &record.region))
                .0 += 1;
        }
        // Per provider listed: the states it reports, or `None` when it cannot answer now.
        let mut listings: HashMap<String, Option<Arc<HashMap<String, String>>>> = HashMap::new();
        for (name, (count, region)) in wanted {
            let lists = self
                .plugins
                .facts(name)
                .is_some_and(|p| p.serves("inventory.list@1"));
            if count < LISTING_BATCH_MIN || !lists {
                continue;
            }
            let provider = self.provider(name, region, context(ctx, request_id));
            let listing = match self
                .listings
                .get_with(name, async {
                    provider.inventory_states().await.map(Arc::new)
                })
                .await
            {
                Ok(states) => Some(states),
                Err(e) if shows_last_known(&e) => {
                    tracing::debug!(request_id, provider = name, error = %e.public, "listing shows the last known states");
                    None
                }
                // Anything else: each instance is asked for on its own.
                Err(_) => continue,
            };
            listings.insert(name.to_string(), listing);
        }
        let mut out = Vec::with_capacity(records.len());
        for record in records {
            if !needs_refresh(&record) {
                out.push(record);
                continue;
            }
            let current = match listings.get(&record.provider) {
                None => false,
                Some(None) => true,
                Some(Some(states)) => {
                    let listed = record.remote_id.as_deref().and_then(|id| states.get(id));
                    listed == Some(&record.state)
                        && !(record.state == "running" && record.network.is_none())
                }
            };
            if current {
                out.push(record);
            } else {
                out.push(self.refresh_for_listing(ctx, request_id, record).await?);
            }
        }
        Ok(out)
    }

    /// The page of `candidates` (in id order) that `keep` keeps, refreshed by
    /// [`InstanceService::refresh_listing`] `limit + 1` at a time, at most `limit` long,
    /// with the id to continue after when more are kept. `GatewayError`s become `E` by
    /// `error`.
    pub async fn listing_page<E>(
        &self,
        ctx: &TenantContext,
        request_id: &str,
        candidates: Vec<InstanceRecord>,
        limit: usize,
        mut keep: impl FnMut(&InstanceRecord) -> Result<bool, E>,
        error: impl Fn(GatewayError) -> E,
    ) -> Result<(Vec<InstanceRecord>, Option<String>), E> {
        let mut out: Vec<InstanceRecord> = Vec::new();
        let mut candidates = candidates.into_iter().peekable();
        while candidates.peek().is_some() {
            let chunk: Vec<InstanceRecord> = candidates.by_ref().take(limit + 1).collect();
            let refreshed = self
                .refresh_listing(ctx, request_id, chunk)
                .await
                .map_err(&error)?;
            for record in refreshed {
                if !keep(&record)? {
                    continue;
                }
                if out.len() == limit {
                    let next = out.last().map(|r| r.id.clone());
                    return Ok((out, next));
                }
                out.push(record);
            }
        }
        Ok((out, None))
    }

    /// Records that `record`'s provider now reports it `observed` (`terminated` when the
    /// provider no longer knows it). The state moves only if nobody recorded a change
    /// first, and only that winner meters it: running -> stopped is a `stop`, anything ->
    /// terminated a `terminate`, both `initiated_by: provider`. An instance an API
    /// operation holds is left to that operation. Returns the record as it now stands.
    pub async fn observe(
        &self,
        mut record: InstanceRecord,
        observed: &str,
    ) -> Result<InstanceRecord, GatewayError> {
        if observed == record.state || self.claims.is_claimed(&record.id) {
            return Ok(record);
        }
        let moved = self
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
            self.metrics
                .instance_changes_detected
                .get_or_create(&vec![
                    ("provider", record.provider.clone()),
                    ("state", observed.to_string()),
                ])
                .inc();
            self.meter.emit(&record, event, Initiator::Provider).await;
        }
        Ok(record)
    }

    /// Every instance of `provider` that has a remote id and is not terminated, as
    /// recorded: what a reconciliation compares with the provider's own listing.
    pub async fn active_for_provider(
        &self,
        provider: &str,
    ) -> Result<Vec<InstanceRecord>, GatewayError> {
        self.inventory.active_for_provider(provider).await
    }
}

/// A provider with at least this many of a listing's instances to refresh is asked once
/// for its inventory (`inventory.list@1`) rather than once per instance.
pub const LISTING_BATCH_MIN: usize = 4;

/// How long a provider's `inventory.list` answer serves listings. It lists every instance
/// the provider runs, for every tenant: consoles refreshing their pages must not each ask
/// for it. A state the answer reports differently from the inventory is asked for on its
/// own, so only a change the provider made by itself within this time goes unseen.
pub const LISTING_FRESH_FOR: Duration = Duration::from_secs(1);

/// Each provider's last `inventory.list` answer (remote id -> state), kept
/// [`LISTING_FRESH_FOR`]; callers at once share one call, and a failed call is not kept.
pub(super) struct ProviderListings(Cache<String, Arc<HashMap<String, String>>>);

impl ProviderListings {
    pub(super) fn new() -> Self {
        Self(
            Cache::builder()
                .max_capacity(1024)
                .time_to_live(LISTING_FRESH_FOR)
                .build(),
        )
    }

    /// `provider`'s listing: the one kept, else `list`'s answer (shared with the callers
    /// that ask meanwhile).
    async fn get_with(
        &self,
        provider: &str,
        list: impl std::future::Future<Output = Result<Arc<HashMap<String, String>>, GatewayError>>,
    ) -> Result<Arc<HashMap<String, String>>, GatewayError> {
        self.0
            .try_get_with_by_ref(provider, list)
            .await
            .map_err(|e| (*e).clone())
    }
}

/// Whether a listing asks `record`'s provider for its state (it has one there and is not
/// terminated).
fn needs_refresh(record: &InstanceRecord) -> bool {
    record.remote_id.is_some() && record.state != "terminated"
}

/// Whether a listing shows the last known state rather than failing on `e`: the provider
/// cannot answer now (unhealthy, unreachable, timing out).
fn shows_last_known(e: &GatewayError) -> bool {
    matches!(
        e.kind,
        ErrorKind::Unavailable | ErrorKind::Timeout | ErrorKind::Upstream
    )
}
