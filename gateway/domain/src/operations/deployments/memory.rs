//! A [`DeploymentStore`] in memory, for tests of what sits above the store.

use std::sync::Mutex;

use async_trait::async_trait;
use skyport_core::error::GatewayError;

use super::{Deployment, DeploymentStatus, DeploymentStore};

/// Deployments in a vector.
#[derive(Default)]
pub struct MemoryDeployments {
    deployments: Mutex<Vec<Deployment>>,
}

#[async_trait]
impl DeploymentStore for MemoryDeployments {
    async fn insert(&self, deployment: &Deployment) -> Result<(), GatewayError> {
        self.deployments.lock().unwrap().push(deployment.clone());
        Ok(())
    }

    async fn get(&self, tenant: &str, id: &str) -> Result<Option<Deployment>, GatewayError> {
        Ok(self
            .deployments
            .lock()
            .unwrap()
            .iter()
            .find(|d| d.tenant == tenant && d.id == id)
            .cloned())
    }

    async fn list(&self, tenant: &str) -> Result<Vec<Deployment>, GatewayError> {
        let mut found: Vec<Deployment> = self
            .deployments
            .lock()
            .unwrap()
            .iter()
            .filter(|d| d.tenant == tenant)
            .cloned()
            .collect();
        found.sort_by(|a, b| (&a.created_at, &a.id).cmp(&(&b.created_at, &b.id)));
        Ok(found)
    }

    async fn update(&self, deployment: &Deployment) -> Result<(), GatewayError> {
        let mut all = self.deployments.lock().unwrap();
        if let Some(stored) = all.iter_mut().find(|d| d.id == deployment.id) {
            *stored = deployment.clone();
        }
        Ok(())
    }

    async fn delete(&self, id: &str) -> Result<(), GatewayError> {
        self.deployments.lock().unwrap().retain(|d| d.id != id);
        Ok(())
    }

    async fn take_abandoned(&self, before: &str) -> Result<Vec<Deployment>, GatewayError> {
        let mut all = self.deployments.lock().unwrap();
        let (taken, kept): (Vec<Deployment>, Vec<Deployment>) = all.drain(..).partition(|d| {
            d.status == DeploymentStatus::Creating && d.created_at.as_str() < before
        });
        *all = kept;
        Ok(taken)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn the_memory_store_passes_the_conformance_suite() {
        super::super::conformance::run(|| async {
            Arc::new(MemoryDeployments::default()) as Arc<dyn DeploymentStore>
        })
        .await;
    }
}
