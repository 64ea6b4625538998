//! Adoption: an operator takes a VM a provider runs, that Skyport did not create, into a
//! tenant's inventory; it is metered from then on like any instance.

use skyport_core::error::{ErrorKind, GatewayError};
use skyport_core::ids::rfc3339_millis;
use skyport_core::tenancy::TenantContext;

use super::{context, InstanceService};
use crate::catalog::instance_type;
use crate::inventory::lifecycle::Initiator;
use crate::inventory::{new_instance_id, InstanceRecord};

/// What an operator says of a VM being adopted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adoption {
    /// The tenant it is billed to.
    pub tenant: String,
    /// Its department, if any.
    pub department: Option<String>,
    /// The provider running it.
    pub provider: String,
    /// The provider's id of the VM.
    pub remote_id: String,
    /// The region it runs in.
    pub region: String,
    /// Its image (as the provider reported it, or as the operator says).
    pub image: String,
    /// Its Skyport instance type (priced like any instance of that type).
    pub instance_type: String,
    /// A name for it.
    pub name: Option<String>,
}

impl InstanceService {
    /// Records `adoption` as an instance of its tenant, in the state the provider reports
    /// now, and meters it from now on. 409 when the VM is already an instance; 400 for an
    /// unknown tenant, department or instance type; 404 when the provider does not know
    /// the VM.
    pub async fn adopt(
        &self,
        operator: &TenantContext,
        request_id: &str,
        adoption: Adoption,
    ) -> Result<InstanceRecord, GatewayError> {
        self.tenants
            .check_member(&adoption.tenant, adoption.department.as_deref())?;
        let itype = instance_type(&adoption.instance_type).ok_or_else(|| {
            GatewayError::invalid(format!(
                "unknown instance type '{}'",
                adoption.instance_type
            ))
        })?;
        // One adoption of a VM at a time: a second one waits for none and gets a 409.
        let _adopting = self.claims.claim(&format!(
            "adopt:{}:{}",
            adoption.provider, adoption.remote_id
        ))?;
        let known = self
            .inventory
            .active_for_provider(&adoption.provider)
            .await?;
        if let Some(existing) = known
            .iter()
            .find(|r| r.remote_id.as_deref() == Some(adoption.remote_id.as_str()))
        {
            return Err(GatewayError::new(
                ErrorKind::Conflict,
                format!(
                    "{} on {} is already instance {}",
                    adoption.remote_id, adoption.provider, existing.id
                ),
            ));
        }
        let live = self
            .provider(
                &adoption.provider,
                &adoption.region,
                context(operator, request_id),
            )
            .get(&adoption.remote_id)
            .await?;
        let record = InstanceRecord {
            id: new_instance_id(),
            tenant: adoption.tenant,
            department: adoption.department,
            provider: adoption.provider,
            region: adoption.region,
            remote_id: Some(live.id),
            image: adoption.image,
            instance_type: itype.name.to_string(),
            name: adoption.name,
            tags: Default::default(),
            state: live.state,
            created_at: rfc3339_millis(self.clock.wall()),
            key_name: None,
            client_token: None,
            network: live.network,
            user_data: None,
            offering: None,
        };
        self.inventory.insert(record.clone()).await?;
        // Metered from now on if it runs; a stopped one starts its meter when started.
        if matches!(record.state.as_str(), "pending" | "running") {
            self.meter.emit_run(&record, Initiator::Api).await;
        }
        tracing::info!(
            instance = %record.id,
            tenant = %record.tenant,
            provider = %record.provider,
            "unmanaged VM adopted"
        );
        Ok(record)
    }
}
