//! Creates the gateway recorded but never saw answered (it stopped, or was killed, between
//! the inventory row and the provider's answer): at the next start each provider is asked
//! what the create's idempotency key made (`instance.find@1`). The VM found is adopted into
//! the record and metered from then on; a create that made nothing is removed, as a create
//! that failed is. Nothing stays `pending` for ever, and no VM runs unbilled.

use skyport_core::error::GatewayError;
use skyport_plugin_api::sdk::CallContext;

use super::InstanceService;
use crate::inventory::lifecycle::Initiator;
use crate::inventory::InstanceRecord;

/// What became of the unfinished creates.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// Records whose VM was found and adopted.
    pub adopted: Vec<String>,
    /// Records removed: their create made nothing.
    pub removed: Vec<String>,
    /// Records left pending: the provider does not serve `instance.find@1`, or could not
    /// answer now.
    pub left: Vec<String>,
}

impl InstanceService {
    /// The creates recorded whose provider answer never was. Taken before the gateway
    /// serves, so that none of them is a create still in flight.
    pub async fn unfinished_creates(&self) -> Result<Vec<InstanceRecord>, GatewayError> {
        self.inventory.unfinished_creates().await
    }

    /// Resolves `unfinished` (from [`InstanceService::unfinished_creates`]).
    pub async fn recover_creates(&self, unfinished: Vec<InstanceRecord>) -> Recovered {
        let mut recovered = Recovered::default();
        let loaded = self.plugins.loaded();
        for record in unfinished {
            let finds = loaded
                .iter()
                .any(|p| p.name == record.provider && p.serves("instance.find@1"));
            if !finds {
                tracing::warn!(instance = %record.id, provider = %record.provider,
                    "a create was recorded but never answered, and its provider cannot say what it made (no instance.find@1): the instance stays pending until it is terminated");
                recovered.left.push(record.id);
                continue;
            }
            // Claimed while resolved, and looked at again once claimed: a tenant may have
            // terminated it in between (then it is left as they made it).
            let Ok(_claim) = self.claims.claim(&record.id) else {
                recovered.left.push(record.id);
                continue;
            };
            // Leased like a create, so a retry resuming it on another replica and this
            // sweep never resolve it together.
            let lease = super::create_lease(&record.id);
            match self
                .leases
                .acquire(&lease, &self.holder, super::CREATE_LEASE)
                .await
            {
                Ok(true) => {}
                _ => {
                    recovered.left.push(record.id);
                    continue;
                }
            }
            self.resolve_unfinished(record, &mut recovered).await;
            if let Err(e) = self.leases.release(&lease, &self.holder).await {
                tracing::debug!(lease, error = %e.public, "releasing a create's lease failed; it expires");
            }
        }
        recovered
    }

    /// Resolves one unfinished create, claimed and leased, into `recovered`: its VM found
    /// and adopted, or the record removed; left as it is when looked at again it is no
    /// longer unfinished (a tenant terminated it), or when its provider cannot say now.
    async fn resolve_unfinished(&self, mut record: InstanceRecord, recovered: &mut Recovered) {
        match self.inventory.get(&record.tenant, &record.id).await {
            Ok(Some(now)) if now.remote_id.is_none() && now.state == "pending" => {}
            _ => {
                recovered.left.push(record.id);
                return;
            }
        }
        let provider = self.provider(&record.provider, &record.region, CallContext::default());
        match provider.find(&record).await {
            Ok(Some(found)) => {
                record.remote_id = Some(found.id);
                record.state = found.state;
                if matches!(record.state.as_str(), "pending" | "running") {
                    // Before it is recorded as answered, as a create meters it.
                    self.meter.emit_run(&record, Initiator::Api).await;
                }
                if let Err(e) = self
                    .inventory
                    .update(&record.id, record.remote_id.clone(), &record.state, None)
                    .await
                {
                    tracing::warn!(instance = %record.id, error = %e.public, "recording a recovered create failed");
                    recovered.left.push(record.id);
                    return;
                }
                tracing::info!(instance = %record.id, provider = %record.provider,
                    remote_id = record.remote_id.as_deref().unwrap_or_default(),
                    state = %record.state, "unfinished create recovered: its VM is adopted");
                recovered.adopted.push(record.id);
            }
            Ok(None) => match self.inventory.delete(&record.id).await {
                Ok(()) => {
                    tracing::info!(instance = %record.id, provider = %record.provider,
                        "unfinished create removed: its provider made nothing");
                    recovered.removed.push(record.id);
                }
                Err(e) => {
                    tracing::warn!(instance = %record.id, error = %e.public, "removing an unfinished create failed");
                    recovered.left.push(record.id);
                }
            },
            Err(e) => {
                tracing::warn!(instance = %record.id, provider = %record.provider,
                    error = %e.public, "an unfinished create could not be resolved now; it stays pending");
                recovered.left.push(record.id);
            }
        }
    }
}
