//! Instance leases in memory, for tests.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use skyport_core::error::GatewayError;

use super::{InstanceLease, InstanceLeaseStore};

/// Leases in a map.
#[derive(Default)]
pub struct MemoryInstanceLeases {
    leases: Mutex<BTreeMap<String, InstanceLease>>,
}

#[async_trait]
impl InstanceLeaseStore for MemoryInstanceLeases {
    async fn put(&self, lease: &InstanceLease) -> Result<(), GatewayError> {
        self.leases
            .lock()
            .unwrap()
            .insert(lease.instance_id.clone(), lease.clone());
        Ok(())
    }

    async fn get(&self, tenant: &str, id: &str) -> Result<Option<InstanceLease>, GatewayError> {
        let leases = self.leases.lock().unwrap();
        Ok(leases.get(id).filter(|l| l.tenant == tenant).cloned())
    }

    async fn of_tenant(&self, tenant: &str) -> Result<Vec<InstanceLease>, GatewayError> {
        let leases = self.leases.lock().unwrap();
        Ok(leases
            .values()
            .filter(|l| l.tenant == tenant)
            .cloned()
            .collect())
    }

    async fn due(&self, now_ms: i64) -> Result<Vec<InstanceLease>, GatewayError> {
        let leases = self.leases.lock().unwrap();
        let mut due: Vec<InstanceLease> = leases
            .values()
            .filter(|l| !l.expired && (l.warn_ms <= now_ms || l.expires_ms <= now_ms))
            .cloned()
            .collect();
        due.sort_by_key(|l| l.expires_ms);
        Ok(due)
    }

    async fn extend(&self, lease: &InstanceLease, from: i64) -> Result<bool, GatewayError> {
        let mut leases = self.leases.lock().unwrap();
        match leases.get_mut(&lease.instance_id) {
            Some(stored) if stored.expires_ms == from && !stored.expired => {
                *stored = lease.clone();
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn mark(&self, id: &str, expires_ms: i64, expired: bool) -> Result<bool, GatewayError> {
        let mut leases = self.leases.lock().unwrap();
        match leases.get_mut(id) {
            Some(lease) if lease.expires_ms == expires_ms => {
                lease.warned = true;
                lease.expired |= expired;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}
