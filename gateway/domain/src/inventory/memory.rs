//! An [`InventoryStore`] in memory, for tests of what sits above the store.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use serde_json::{Map, Value};
use skyport_core::error::{ErrorKind, GatewayError};

use super::{Admission, AdmissionCheck, InstanceNetwork, InstanceRecord, InventoryStore};

/// Records by id.
#[derive(Default)]
pub struct MemoryInventory {
    records: Mutex<BTreeMap<String, InstanceRecord>>,
}

#[async_trait]
impl InventoryStore for MemoryInventory {
    async fn insert(&self, record: InstanceRecord) -> Result<(), GatewayError> {
        let mut records = self.records.lock().unwrap();
        let duplicate_token = record.client_token.is_some()
            && records
                .values()
                .any(|r| r.tenant == record.tenant && r.client_token == record.client_token);
        if duplicate_token || records.contains_key(&record.id) {
            return Err(GatewayError::new(
                ErrorKind::Conflict,
                "an instance with this id or idempotency token exists",
            ));
        }
        records.insert(record.id.clone(), record);
        Ok(())
    }

    async fn admit(
        &self,
        record: InstanceRecord,
        check: AdmissionCheck,
    ) -> Result<Admission, GatewayError> {
        let mut records = self.records.lock().unwrap();
        if let Some(token) = &record.client_token {
            if let Some(existing) = records
                .values()
                .find(|r| r.tenant == record.tenant && r.client_token.as_ref() == Some(token))
            {
                return Ok(Admission::Existing(Box::new(existing.clone())));
            }
        }
        let live: Vec<InstanceRecord> = records
            .values()
            .filter(|r| r.tenant == record.tenant && r.state != "terminated")
            .cloned()
            .collect();
        check(&live)?;
        if records.contains_key(&record.id) {
            return Err(GatewayError::new(
                ErrorKind::Conflict,
                "an instance with this id or idempotency token exists",
            ));
        }
        records.insert(record.id.clone(), record);
        Ok(Admission::Inserted)
    }

    async fn get(&self, tenant: &str, id: &str) -> Result<Option<InstanceRecord>, GatewayError> {
        Ok(self
            .records
            .lock()
            .unwrap()
            .get(id)
            .filter(|r| r.tenant == tenant)
            .cloned())
    }

    async fn list(&self, tenant: &str) -> Result<Vec<InstanceRecord>, GatewayError> {
        Ok(self
            .records
            .lock()
            .unwrap()
            .values()
            .filter(|r| r.tenant == tenant)
            .cloned()
            .collect())
    }

    async fn by_client_token(
        &self,
        tenant: &str,
        token: &str,
    ) -> Result<Option<InstanceRecord>, GatewayError> {
        Ok(self
            .records
            .lock()
            .unwrap()
            .values()
            .find(|r| r.tenant == tenant && r.client_token.as_deref() == Some(token))
            .cloned())
    }

    async fn update(
        &self,
        id: &str,
        remote_id: Option<String>,
        state: &str,
        instance_type: Option<String>,
    ) -> Result<(), GatewayError> {
        if let Some(r) = self.records.lock().unwrap().get_mut(id) {
            if remote_id.is_some() {
                r.remote_id = remote_id;
            }
            r.state = state.to_string();
            if let Some(t) = instance_type {
                r.instance_type = t;
            }
        }
        Ok(())
    }

    async fn transition(&self, id: &str, from: &str, to: &str) -> Result<bool, GatewayError> {
        Ok(match self.records.lock().unwrap().get_mut(id) {
            Some(r) if r.state == from => {
                r.state = to.to_string();
                true
            }
            _ => false,
        })
    }

    async fn set_network(
        &self,
        id: &str,
        network: Option<InstanceNetwork>,
    ) -> Result<(), GatewayError> {
        if let Some(r) = self.records.lock().unwrap().get_mut(id) {
            r.network = network;
        }
        Ok(())
    }

    async fn set_tags(&self, id: &str, tags: Map<String, Value>) -> Result<(), GatewayError> {
        if let Some(r) = self.records.lock().unwrap().get_mut(id) {
            r.tags = tags;
        }
        Ok(())
    }

    async fn delete(&self, id: &str) -> Result<(), GatewayError> {
        self.records.lock().unwrap().remove(id);
        Ok(())
    }

    async fn active_for_provider(
        &self,
        provider: &str,
    ) -> Result<Vec<InstanceRecord>, GatewayError> {
        Ok(self
            .records
            .lock()
            .unwrap()
            .values()
            .filter(|r| r.provider == provider && r.remote_id.is_some() && r.state != "terminated")
            .cloned()
            .collect())
    }

    async fn unfinished_creates(&self) -> Result<Vec<InstanceRecord>, GatewayError> {
        let mut found: Vec<InstanceRecord> = self
            .records
            .lock()
            .unwrap()
            .values()
            .filter(|r| r.remote_id.is_none() && r.state == "pending")
            .cloned()
            .collect();
        found.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn the_memory_store_passes_the_conformance_suite() {
        super::super::conformance::run(|| async {
            Arc::new(MemoryInventory::default()) as Arc<dyn InventoryStore>
        })
        .await;
    }
}
