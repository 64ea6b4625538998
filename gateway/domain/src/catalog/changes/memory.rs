//! A [`CatalogChangeStore`] in memory, for tests of what sits above the store.

use std::sync::Mutex;

use async_trait::async_trait;
use skyport_core::error::GatewayError;

use super::{CatalogChangeStore, Change};

/// Changes with the time each was stored.
#[derive(Default)]
pub struct MemoryCatalogChanges {
    changes: Mutex<Vec<(String, Change)>>,
}

#[async_trait]
impl CatalogChangeStore for MemoryCatalogChanges {
    async fn load(&self) -> Result<Vec<Change>, GatewayError> {
        let mut changes = self.changes.lock().unwrap().clone();
        changes.sort_by(|(a, x), (b, y)| {
            (a, x.kind.plural(), &x.name).cmp(&(b, y.kind.plural(), &y.name))
        });
        Ok(changes.into_iter().map(|(_, c)| c).collect())
    }

    async fn save(&self, change: &Change, at: &str) -> Result<(), GatewayError> {
        let mut changes = self.changes.lock().unwrap();
        changes.retain(|(_, c)| !(c.kind == change.kind && c.name == change.name));
        changes.push((at.to_string(), change.clone()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn the_memory_store_passes_the_conformance_suite() {
        super::super::conformance::run(|| async {
            Arc::new(MemoryCatalogChanges::default()) as Arc<dyn CatalogChangeStore>
        })
        .await;
    }
}
