//! An [`AccessKeyStore`] in memory, for tests of what sits above the store.

use std::sync::Mutex;

use async_trait::async_trait;
use skyport_core::error::GatewayError;

use super::{AccessKey, AccessKeyStore, KeySecret, Revocation};

/// Keys in a vector, in insertion order.
#[derive(Default)]
pub struct MemoryAccessKeys {
    keys: Mutex<Vec<(AccessKey, String)>>,
}

#[async_trait]
impl AccessKeyStore for MemoryAccessKeys {
    async fn insert(&self, key: AccessKey, secret: String) -> Result<(), GatewayError> {
        self.keys.lock().unwrap().push((key, secret));
        Ok(())
    }

    async fn list(&self, tenant: Option<&str>) -> Result<Vec<AccessKey>, GatewayError> {
        let mut keys: Vec<AccessKey> = self
            .keys
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _)| tenant.is_none_or(|t| k.tenant == t))
            .map(|(k, _)| k.clone())
            .collect();
        keys.sort_by(|a, b| {
            (&a.created_at, &a.access_key_id).cmp(&(&b.created_at, &b.access_key_id))
        });
        Ok(keys)
    }

    async fn revoke(&self, access_key_id: &str, at: &str) -> Result<Revocation, GatewayError> {
        let mut keys = self.keys.lock().unwrap();
        Ok(
            match keys
                .iter_mut()
                .find(|(k, _)| k.access_key_id == access_key_id)
            {
                None => Revocation::Unknown,
                Some((k, _)) if k.revoked_at.is_some() => Revocation::AlreadyRevoked(k.clone()),
                Some((k, _)) => {
                    k.revoked_at = Some(at.to_string());
                    Revocation::Revoked(k.clone())
                }
            },
        )
    }

    async fn secret(&self, access_key_id: &str) -> Result<Option<KeySecret>, GatewayError> {
        Ok(self
            .keys
            .lock()
            .unwrap()
            .iter()
            .find(|(k, _)| k.access_key_id == access_key_id && k.revoked_at.is_none())
            .map(|(k, secret)| KeySecret {
                tenant: k.tenant.clone(),
                department: k.department.clone(),
                secret: secret.clone(),
            }))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn the_memory_store_passes_the_conformance_suite() {
        super::super::conformance::run(|| async {
            Arc::new(MemoryAccessKeys::default()) as Arc<dyn AccessKeyStore>
        })
        .await;
    }
}
