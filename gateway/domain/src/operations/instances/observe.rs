//! What providers report of the instances, recorded: a tenant's read asks the provider
//! ([`InstanceService::refresh`]); a change the provider made by itself (a guest powered
//! off from inside, a QEMU that was killed, an instance deleted in its cloud) is recorded
//! and metered once, whether a read notices it first or the inventory sync does
//! ([`InstanceService::observe`]).

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
            Err(e)
                if matches!(
                    e.kind,
                    ErrorKind::Unavailable | ErrorKind::Timeout | ErrorKind::Upstream
                ) =>
            {
                tracing::debug!(request_id, instance = %record.id, provider = %record.provider, error = %e.public, "listing shows the last known state");
                Ok(record)
            }
            other => other,
        }
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
