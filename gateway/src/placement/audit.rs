//! The placement audit: every decision, explained or acted on, stored in the gateway
//! database (table `placements`) with its full record, so an operator can see later why an
//! order went where it went (`GET /admin/placements/{id}`).

use std::path::Path;
use std::time::SystemTime;

use rusqlite::{params, OptionalExtension};
use serde_json::{json, Value};

use super::Decision;
use crate::db::Db;
use crate::error::GatewayError;

/// Whether a decision was only explained or also acted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `POST /v1/placement/explain`: nothing was created.
    Explain,
    /// An order that went on to create.
    Create,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Self::Explain => "explain",
            Self::Create => "create",
        }
    }
}

/// The placement audit store.
#[derive(Clone)]
pub struct PlacementAudit {
    db: Db,
}

/// A new placement id: `pl-` and 17 hex digits.
fn new_placement_id() -> String {
    crate::ids::new_id("pl")
}

impl PlacementAudit {
    /// Opens (and creates) the table in `<state_dir>/skyport.db`.
    pub fn open(state_dir: &Path) -> anyhow::Result<Self> {
        let db = Db::open(
            state_dir,
            "placement audit",
            "CREATE TABLE IF NOT EXISTS placements (
                id TEXT PRIMARY KEY,
                created_at TEXT NOT NULL,
                tenant TEXT NOT NULL,
                request_id TEXT NOT NULL,
                mode TEXT NOT NULL,
                offering TEXT NOT NULL,
                provider TEXT NOT NULL,
                region TEXT NOT NULL,
                record TEXT NOT NULL
            );",
        )?;
        Ok(Self { db })
    }

    /// Stores `decision` for `tenant`; returns its id.
    pub async fn record(
        &self,
        tenant: &str,
        request_id: &str,
        mode: Mode,
        decision: &Decision,
    ) -> Result<String, GatewayError> {
        let id = new_placement_id();
        let created_at = crate::ids::rfc3339_millis(SystemTime::now());
        let record = json!({
            "id": id,
            "created_at": created_at,
            "tenant": tenant,
            "request_id": request_id,
            "mode": mode.as_str(),
            "decision": decision,
        });
        let row = (
            id.clone(),
            created_at,
            tenant.to_string(),
            request_id.to_string(),
            mode.as_str(),
            decision.offering.clone(),
            decision.provider.clone(),
            decision.region.clone(),
            record.to_string(),
        );
        self.db
            .with(move |conn| {
                conn.execute(
                    "INSERT INTO placements (id, created_at, tenant, request_id, mode, offering,
                         provider, region, record) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    params![row.0, row.1, row.2, row.3, row.4, row.5, row.6, row.7, row.8],
                )
            })
            .await?;
        Ok(id)
    }

    /// The full record of placement `id`.
    pub async fn get(&self, id: &str) -> Result<Option<Value>, GatewayError> {
        let id = id.to_string();
        let text: Option<String> = self
            .db
            .with(move |conn| {
                conn.query_row("SELECT record FROM placements WHERE id = ?1", [id], |row| {
                    row.get(0)
                })
                .optional()
            })
            .await?;
        text.map(|t| serde_json::from_str(&t).map_err(GatewayError::internal))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::params::ParamSet;

    #[tokio::test]
    async fn a_recorded_decision_survives_a_reopen() {
        let dir = std::env::temp_dir().join(format!("skyport-audit-{}", new_placement_id()));
        let decision = Decision {
            offering: "dev-vm".into(),
            resource: "vm".into(),
            params: ParamSet::default(),
            rules: Vec::new(),
            provider: "local-vmm".into(),
            region: "local-1".into(),
            candidates: Vec::new(),
            currency: None,
        };
        let id = PlacementAudit::open(&dir)
            .unwrap()
            .record("demo", "req-1", Mode::Create, &decision)
            .await
            .unwrap();
        assert!(id.starts_with("pl-") && id.len() == 20, "{id}");
        let reopened = PlacementAudit::open(&dir).unwrap();
        let record = reopened.get(&id).await.unwrap().unwrap();
        assert_eq!(record["mode"], "create");
        assert_eq!(record["decision"]["provider"], "local-vmm");
        assert!(reopened
            .get("pl-00000000000000000")
            .await
            .unwrap()
            .is_none());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
