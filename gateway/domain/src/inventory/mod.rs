//! The inventory: which Skyport instance id is which provider's VM, for which tenant.
//!
//! The row is written before the provider call (state `pending`, no remote id yet) and
//! completed after it, so a crash in between leaves a visible, reconcilable row rather
//! than an unknown VM. Another tenant's id is indistinguishable from an unknown id: every
//! tenant query is keyed by (tenant, id). Where rows are kept is an [`InventoryStore`];
//! the idempotency tokens of creates (EC2 `ClientToken`) are kept with the instance they
//! created, unique per tenant.

pub mod claims;
pub mod host_op;
pub mod lifecycle;
pub mod sync;

#[cfg(any(test, feature = "testkit"))]
pub mod conformance;
#[cfg(any(test, feature = "testkit"))]
pub mod memory;

use async_trait::async_trait;
use serde::Serialize;
use serde_json::{Map, Value};
use skyport_core::error::GatewayError;
pub use skyport_plugin_api::ops::provider::InstanceNetwork;

/// One instance as Skyport knows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct InstanceRecord {
    /// `i-` + 17 hex.
    pub id: String,
    /// Owning tenant (never shown to others).
    #[serde(skip)]
    pub tenant: String,
    /// Department billed.
    pub department: Option<String>,
    /// Provider instance name.
    pub provider: String,
    /// Region.
    pub region: String,
    /// The provider's own id (never shown to tenants).
    #[serde(skip)]
    pub remote_id: Option<String>,
    /// Image.
    pub image: String,
    /// Instance type.
    pub instance_type: String,
    /// Name given at creation.
    pub name: Option<String>,
    /// Tags.
    pub tags: Map<String, Value>,
    /// EC2-named state.
    pub state: String,
    /// Creation time (RFC 3339 UTC).
    pub created_at: String,
    /// Key pair named at creation (EC2 `KeyName`).
    pub key_name: Option<String>,
    /// The caller's idempotency token (EC2 `ClientToken`): a retried create with the same
    /// token returns this instance instead of creating another.
    #[serde(skip)]
    pub client_token: Option<String>,
    /// Its addresses, as its provider last reported them (none before they are assigned
    /// and once it is terminated).
    pub network: Option<InstanceNetwork>,
    /// The user data it was created with, base64 (EC2 `DescribeInstanceAttribute`
    /// `userData` shows it to its tenant).
    #[serde(skip)]
    pub user_data: Option<String>,
    /// The offering it was ordered as (`raw` for a raw order); `None` for instances
    /// adopted or made before offerings were recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offering: Option<String>,
}

impl InstanceRecord {
    /// What metering records and the metering plugin's inventory view say about an
    /// instance: its id, provider, region, type, the type's size, and its tags when it has
    /// any (the bill shows a line's tags as of its latest event). Callers add their own
    /// fields (event, state, tenant).
    pub fn meter_attributes(&self) -> Map<String, Value> {
        let size = crate::catalog::instance_type(&self.instance_type);
        let Value::Object(mut map) = serde_json::json!({
            "instance_id": self.id,
            "provider": self.provider,
            "region": self.region,
            "instance_type": self.instance_type,
            "vcpus": size.map(|t| t.vcpus),
            "memory_mib": size.map(|t| t.memory_mib),
        }) else {
            unreachable!("a json! object literal is an object")
        };
        if !self.tags.is_empty() {
            map.insert("tags".into(), Value::Object(self.tags.clone()));
        }
        if let Some(offering) = &self.offering {
            map.insert("offering".into(), Value::from(offering.clone()));
        }
        map
    }
}

/// What [`InventoryStore::admit`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    /// The record was inserted.
    Inserted,
    /// The tenant already had this instance for the record's client token; nothing was
    /// inserted.
    Existing(Box<InstanceRecord>),
}

/// The check a create must pass, given the tenant's instances that are not terminated
/// (its quota); an error refuses the create.
pub type AdmissionCheck =
    Box<dyn FnOnce(&[InstanceRecord]) -> Result<(), GatewayError> + Send + 'static>;

/// Where instance records are kept.
#[async_trait]
pub trait InventoryStore: Send + Sync {
    /// Inserts a new record; 409 when the tenant already has an instance with its
    /// `client_token`.
    async fn insert(&self, record: InstanceRecord) -> Result<(), GatewayError>;

    /// Inserts `record` if the tenant has no instance for its client token (that one is
    /// returned instead) and `check` passes on the tenant's instances that are not
    /// terminated. Atomic against every other `admit` for the same tenant, from any
    /// process sharing the store: concurrent orders never pass a quota together, nor a
    /// token twice.
    async fn admit(
        &self,
        record: InstanceRecord,
        check: AdmissionCheck,
    ) -> Result<Admission, GatewayError>;

    /// The tenant's instance `id`, or `None` (also for another tenant's id).
    async fn get(&self, tenant: &str, id: &str) -> Result<Option<InstanceRecord>, GatewayError>;

    /// The tenant's instances, ordered by id.
    async fn list(&self, tenant: &str) -> Result<Vec<InstanceRecord>, GatewayError>;

    /// The tenant's instance created with idempotency token `token`, if any.
    async fn by_client_token(
        &self,
        tenant: &str,
        token: &str,
    ) -> Result<Option<InstanceRecord>, GatewayError>;

    /// Sets the state, and the remote id and instance type when given.
    async fn update(
        &self,
        id: &str,
        remote_id: Option<String>,
        state: &str,
        instance_type: Option<String>,
    ) -> Result<(), GatewayError>;

    /// Moves instance `id` from state `from` to `to`; false when its state was no longer
    /// `from` (someone else recorded a change first), so a change is recorded, and
    /// metered, once.
    async fn transition(&self, id: &str, from: &str, to: &str) -> Result<bool, GatewayError>;

    /// Records the addresses instance `id`'s provider reports (`None`: it has none).
    async fn set_network(
        &self,
        id: &str,
        network: Option<InstanceNetwork>,
    ) -> Result<(), GatewayError>;

    /// Replaces the tags of instance `id`.
    async fn set_tags(&self, id: &str, tags: Map<String, Value>) -> Result<(), GatewayError>;

    /// Deletes record `id`.
    async fn delete(&self, id: &str) -> Result<(), GatewayError>;

    /// Every instance of `provider` that has a remote id and is not terminated: what a
    /// reconciliation compares with the provider's own inventory.
    async fn active_for_provider(
        &self,
        provider: &str,
    ) -> Result<Vec<InstanceRecord>, GatewayError>;

    /// Every instance still `pending` without a remote id, of every tenant and provider:
    /// creates recorded whose provider answer was never recorded.
    async fn unfinished_creates(&self) -> Result<Vec<InstanceRecord>, GatewayError>;
}

/// A new Skyport instance id: `i-` + 17 lower-case hex digits.
pub fn new_instance_id() -> String {
    skyport_core::ids::new_id("i")
}

/// Whether `id` has the shape of a Skyport instance id.
pub fn is_instance_id(id: &str) -> bool {
    skyport_core::ids::has_id_shape(id, "i")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_the_ec2_shape() {
        for _ in 0..100 {
            let id = new_instance_id();
            assert!(is_instance_id(&id), "{id}");
        }
        assert!(!is_instance_id("i-123"));
        assert!(!is_instance_id("i-0123456789ABCDEF0"));
    }
}
