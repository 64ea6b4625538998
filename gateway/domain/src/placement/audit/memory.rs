//! A [`PlacementAuditStore`] in memory, for tests of what sits above the store.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use serde_json::Value;
use skyport_core::error::GatewayError;

use super::{AuditEntry, AuditFilter, PlacementAuditStore};

/// Records by id.
#[derive(Default)]
pub struct MemoryPlacementAudit {
    entries: Mutex<HashMap<String, AuditEntry>>,
}

impl MemoryPlacementAudit {
    /// Every entry stored, in no particular order.
    pub fn entries(&self) -> Vec<AuditEntry> {
        self.entries.lock().unwrap().values().cloned().collect()
    }
}

#[async_trait]
impl PlacementAuditStore for MemoryPlacementAudit {
    async fn insert(&self, entry: AuditEntry) -> Result<(), GatewayError> {
        self.entries.lock().unwrap().insert(entry.id.clone(), entry);
        Ok(())
    }

    async fn prune_explained(&self, before: &str) -> Result<u64, GatewayError> {
        let mut entries = self.entries.lock().unwrap();
        let count = entries.len();
        entries.retain(|_, e| e.mode != super::Mode::Explain || e.created_at.as_str() >= before);
        Ok((count - entries.len()) as u64)
    }

    async fn get(&self, id: &str) -> Result<Option<Value>, GatewayError> {
        Ok(self
            .entries
            .lock()
            .unwrap()
            .get(id)
            .map(|e| e.record.clone()))
    }

    async fn search(&self, filter: &AuditFilter) -> Result<Vec<Value>, GatewayError> {
        let entries = self.entries.lock().unwrap();
        let mut found: Vec<&AuditEntry> = entries.values().filter(|e| filter.selects(e)).collect();
        found.sort_by(|a, b| (&b.created_at, &b.id).cmp(&(&a.created_at, &a.id)));
        Ok(found
            .into_iter()
            .take(filter.limit)
            .map(|e| e.record.clone())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn the_memory_store_passes_the_conformance_suite() {
        super::super::conformance::run(|| async {
            Arc::new(MemoryPlacementAudit::default()) as Arc<dyn PlacementAuditStore>
        })
        .await;
    }
}
