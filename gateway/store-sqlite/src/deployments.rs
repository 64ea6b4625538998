//! [`DeploymentStore`] in the gateway database (table `deployments`).

use std::path::Path;

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension};
use skyport_core::error::GatewayError;
use skyport_domain::operations::deployments::{Deployment, DeploymentStore};

use crate::db::Db;

/// Deployments in `<state_dir>/skyport.db`.
pub struct SqliteDeployments {
    db: Db,
}

impl SqliteDeployments {
    /// Opens (and creates) the table in `<state_dir>/skyport.db`.
    pub fn open(state_dir: &Path) -> anyhow::Result<Self> {
        let db = Db::open(
            state_dir,
            "deployments",
            "CREATE TABLE IF NOT EXISTS deployments (
                id TEXT PRIMARY KEY,
                tenant TEXT NOT NULL,
                created_at TEXT NOT NULL,
                record TEXT NOT NULL
            );
            CREATE INDEX IF NOT EXISTS deployments_by_tenant ON deployments (tenant, created_at);",
        )?;
        // Added after the first release: deployments journalled while they are created.
        db.add_missing_columns(
            "deployments",
            &[("status", "TEXT NOT NULL DEFAULT 'ready'")],
        )?;
        Ok(Self { db })
    }

    /// The deployments whose records `sql` (one parameter, `arg`) returns, in its order.
    async fn records(&self, sql: &'static str, arg: &str) -> Result<Vec<Deployment>, GatewayError> {
        let arg = arg.to_string();
        let texts: Vec<String> = self
            .db
            .with(move |conn| {
                let mut stmt = conn.prepare(sql)?;
                let rows = stmt.query_map([arg], |row| row.get(0))?;
                rows.collect()
            })
            .await?;
        texts
            .iter()
            .map(|t| serde_json::from_str(t).map_err(GatewayError::internal))
            .collect()
    }
}

#[async_trait]
impl DeploymentStore for SqliteDeployments {
    async fn insert(&self, deployment: &Deployment) -> Result<(), GatewayError> {
        let row = (
            deployment.id.clone(),
            deployment.tenant.clone(),
            deployment.created_at.clone(),
            serde_json::to_string(deployment).map_err(GatewayError::internal)?,
            deployment.status.as_str(),
        );
        self.db
            .with(move |conn| {
                conn.execute(
                    "INSERT INTO deployments (id, tenant, created_at, record, status)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![row.0, row.1, row.2, row.3, row.4],
                )
            })
            .await?;
        Ok(())
    }

    async fn get(&self, tenant: &str, id: &str) -> Result<Option<Deployment>, GatewayError> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        let text: Option<String> = self
            .db
            .with(move |conn| {
                conn.query_row(
                    "SELECT record FROM deployments WHERE id = ?1 AND tenant = ?2",
                    [id, tenant],
                    |row| row.get(0),
                )
                .optional()
            })
            .await?;
        text.map(|t| serde_json::from_str(&t).map_err(GatewayError::internal))
            .transpose()
    }

    async fn list(&self, tenant: &str) -> Result<Vec<Deployment>, GatewayError> {
        self.records(
            "SELECT record FROM deployments WHERE tenant = ?1 ORDER BY created_at, id",
            tenant,
        )
        .await
    }

    async fn update(&self, deployment: &Deployment) -> Result<(), GatewayError> {
        let row = (
            deployment.id.clone(),
            serde_json::to_string(deployment).map_err(GatewayError::internal)?,
            deployment.status.as_str(),
        );
        self.db
            .with(move |conn| {
                conn.execute(
                    "UPDATE deployments SET record = ?2, status = ?3 WHERE id = ?1",
                    params![row.0, row.1, row.2],
                )
            })
            .await?;
        Ok(())
    }

    async fn delete(&self, id: &str) -> Result<(), GatewayError> {
        let id = id.to_string();
        self.db
            .with(move |conn| conn.execute("DELETE FROM deployments WHERE id = ?1", [id]))
            .await?;
        Ok(())
    }

    async fn take_abandoned(&self, before: &str) -> Result<Vec<Deployment>, GatewayError> {
        self.records(
            "UPDATE deployments SET status = 'recovering'
             WHERE status = 'creating' AND created_at < ?1 RETURNING record",
            before,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn sqlite_deployments_pass_the_conformance_suite() {
        let dirs = crate::TestDirs::default();
        let dirs = &dirs;
        skyport_domain::operations::deployments::conformance::run(move || async move {
            let dir = dirs.make("deployments");
            Arc::new(SqliteDeployments::open(&dir).unwrap()) as Arc<dyn DeploymentStore>
        })
        .await;
    }
}
