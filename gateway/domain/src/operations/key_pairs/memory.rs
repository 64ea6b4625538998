//! A [`KeyPairStore`] in memory, for tests of what sits above the store.

use std::sync::Mutex;

use async_trait::async_trait;
use skyport_core::error::GatewayError;

use super::{KeyPair, KeyPairStore};

/// (tenant, pair) in insertion order.
#[derive(Default)]
pub struct MemoryKeyPairs {
    pairs: Mutex<Vec<(String, KeyPair)>>,
}

#[async_trait]
impl KeyPairStore for MemoryKeyPairs {
    async fn insert(&self, tenant: &str, pair: KeyPair) -> Result<bool, GatewayError> {
        let mut pairs = self.pairs.lock().unwrap();
        if pairs
            .iter()
            .any(|(t, p)| t == tenant && p.name == pair.name)
        {
            return Ok(false);
        }
        pairs.push((tenant.to_string(), pair));
        Ok(true)
    }

    async fn list(&self, tenant: &str) -> Result<Vec<KeyPair>, GatewayError> {
        let mut found: Vec<KeyPair> = self
            .pairs
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, _)| t == tenant)
            .map(|(_, p)| p.clone())
            .collect();
        found.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(found)
    }

    async fn get(&self, tenant: &str, name: &str) -> Result<Option<KeyPair>, GatewayError> {
        Ok(self
            .pairs
            .lock()
            .unwrap()
            .iter()
            .find(|(t, p)| t == tenant && p.name == name)
            .map(|(_, p)| p.clone()))
    }

    async fn delete(&self, tenant: &str, name_or_id: &str) -> Result<bool, GatewayError> {
        let mut pairs = self.pairs.lock().unwrap();
        let before = pairs.len();
        pairs.retain(|(t, p)| !(t == tenant && (p.name == name_or_id || p.id == name_or_id)));
        Ok(pairs.len() < before)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn the_memory_store_passes_the_conformance_suite() {
        super::super::conformance::run(|| async {
            Arc::new(MemoryKeyPairs::default()) as Arc<dyn KeyPairStore>
        })
        .await;
    }
}
