//! [`SlaStore`] in the gateway database (table `sla_minutes`).

use std::path::Path;

use async_trait::async_trait;
use rusqlite::params;
use skyport_core::error::GatewayError;
use skyport_domain::sla::{MinuteSample, SlaStore};

use crate::db::Db;

/// Minute samples in `<state_dir>/skyport.db`.
pub struct SqliteSla {
    db: Db,
}

impl SqliteSla {
    /// Opens (and creates) the table in `<state_dir>/skyport.db`.
    pub fn open(state_dir: &Path) -> anyhow::Result<Self> {
        let db = Db::open(
            state_dir,
            "sla",
            "CREATE TABLE IF NOT EXISTS sla_minutes (
                minute TEXT NOT NULL,
                provider TEXT NOT NULL,
                region TEXT NOT NULL,
                replica TEXT NOT NULL,
                record TEXT NOT NULL
            );
            CREATE INDEX IF NOT EXISTS sla_minutes_by_minute ON sla_minutes (minute);",
        )?;
        Ok(Self { db })
    }
}

#[async_trait]
impl SlaStore for SqliteSla {
    async fn insert(&self, samples: &[MinuteSample]) -> Result<(), GatewayError> {
        let rows: Vec<_> = samples
            .iter()
            .map(|s| {
                (
                    s.minute.clone(),
                    s.provider.clone(),
                    s.region.clone(),
                    s.replica.clone(),
                    s.to_record(),
                )
            })
            .collect();
        self.db
            .with(move |c| {
                let tx = c.unchecked_transaction()?;
                {
                    let mut insert = tx.prepare_cached(
                        "INSERT INTO sla_minutes (minute, provider, region, replica, record)
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                    )?;
                    for row in &rows {
                        insert.execute(params![row.0, row.1, row.2, row.3, row.4])?;
                    }
                }
                tx.commit()
            })
            .await
    }

    async fn between(&self, from: &str, to: &str) -> Result<Vec<MinuteSample>, GatewayError> {
        let (from, to) = (from.to_string(), to.to_string());
        let rows = self
            .db
            .with(move |c| {
                let mut stmt = c.prepare_cached(
                    "SELECT record FROM sla_minutes WHERE minute >= ?1 AND minute < ?2",
                )?;
                let rows = stmt.query_map(params![from, to], |row| row.get(0))?;
                rows.collect::<Result<Vec<String>, _>>()
            })
            .await?;
        rows.iter().map(|t| MinuteSample::from_record(t)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sqlite_sla_passes_the_conformance_suite() {
        let guard = crate::test_dir("sla");
        let dir = guard.path();
        let store = SqliteSla::open(dir).unwrap();
        skyport_domain::sla::conformance::run(&store).await;
    }
}
