//! [`DeploymentStore`] in the shared database (table `deployments`).

use async_trait::async_trait;
use skyport_core::error::GatewayError;
use skyport_domain::operations::deployments::{Deployment, DeploymentStore};

use crate::db::Pg;

/// Deployments shared by every replica.
pub struct PgDeployments {
    db: Pg,
}

impl PgDeployments {
    /// The table in `db` (migrated by [`crate::schema::migrate`]).
    pub fn new(db: Pg) -> Self {
        Self { db }
    }
}

const WHAT: &str = "deployments";

fn parse(text: &str) -> Result<Deployment, GatewayError> {
    serde_json::from_str(text).map_err(GatewayError::internal)
}

#[async_trait]
impl DeploymentStore for PgDeployments {
    async fn insert(&self, deployment: &Deployment) -> Result<(), GatewayError> {
        let record = serde_json::to_string(deployment).map_err(GatewayError::internal)?;
        self.db
            .execute(
                WHAT,
                "INSERT INTO deployments (id, tenant, created_at, record, status)
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    &deployment.id,
                    &deployment.tenant,
                    &deployment.created_at,
                    &record,
                    &deployment.status.as_str(),
                ],
            )
            .await
            .map(drop)
    }

    async fn get(&self, tenant: &str, id: &str) -> Result<Option<Deployment>, GatewayError> {
        let rows = self
            .db
            .query(
                WHAT,
                "SELECT record FROM deployments WHERE id = $1 AND tenant = $2",
                &[&id, &tenant],
            )
            .await?;
        rows.first().map(|row| parse(row.get(0))).transpose()
    }

    async fn list(&self, tenant: &str) -> Result<Vec<Deployment>, GatewayError> {
        let rows = self
            .db
            .query(
                WHAT,
                "SELECT record FROM deployments WHERE tenant = $1 ORDER BY created_at, id",
                &[&tenant],
            )
            .await?;
        rows.iter().map(|row| parse(row.get(0))).collect()
    }

    async fn update(&self, deployment: &Deployment) -> Result<(), GatewayError> {
        let record = serde_json::to_string(deployment).map_err(GatewayError::internal)?;
        self.db
            .execute(
                WHAT,
                "UPDATE deployments SET record = $2, status = $3 WHERE id = $1",
                &[&deployment.id, &record, &deployment.status.as_str()],
            )
            .await
            .map(drop)
    }

    async fn delete(&self, id: &str) -> Result<(), GatewayError> {
        self.db
            .execute(WHAT, "DELETE FROM deployments WHERE id = $1", &[&id])
            .await
            .map(drop)
    }

    async fn take_abandoned(&self, before: &str) -> Result<Vec<Deployment>, GatewayError> {
        // One statement: a row is updated by one transaction only, so each abandoned
        // deployment is returned to one replica.
        let rows = self
            .db
            .query(
                WHAT,
                "UPDATE deployments SET status = 'recovering'
                 WHERE status = 'creating' AND created_at < $1 RETURNING record",
                &[&before],
            )
            .await?;
        rows.iter().map(|row| parse(row.get(0))).collect()
    }
}
