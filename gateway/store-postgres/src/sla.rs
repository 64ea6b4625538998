//! [`SlaStore`] in the shared database (table `sla_minutes`): every replica writes its
//! own minutes.

use async_trait::async_trait;
use skyport_core::error::GatewayError;
use skyport_domain::sla::{MinuteSample, SlaStore};

use crate::db::Pg;

/// Minute samples, shared by every replica.
pub struct PgSla {
    db: Pg,
}

impl PgSla {
    /// The table in `db` (migrated by [`crate::schema::migrate`]).
    pub fn new(db: Pg) -> Self {
        Self { db }
    }
}

const WHAT: &str = "sla";

#[async_trait]
impl SlaStore for PgSla {
    async fn insert(&self, samples: &[MinuteSample]) -> Result<(), GatewayError> {
        let column = |f: fn(&MinuteSample) -> String| samples.iter().map(f).collect::<Vec<_>>();
        let (minutes, providers, regions, replicas, records) = (
            column(|s| s.minute.clone()),
            column(|s| s.provider.clone()),
            column(|s| s.region.clone()),
            column(|s| s.replica.clone()),
            column(MinuteSample::to_record),
        );
        self.db
            .execute(
                WHAT,
                "INSERT INTO sla_minutes (minute, provider, region, replica, record)
                 SELECT * FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[])",
                &[&minutes, &providers, &regions, &replicas, &records],
            )
            .await
            .map(|_| ())
    }

    async fn between(&self, from: &str, to: &str) -> Result<Vec<MinuteSample>, GatewayError> {
        let rows = self
            .db
            .query(
                WHAT,
                "SELECT record FROM sla_minutes WHERE minute >= $1 AND minute < $2",
                &[&from, &to],
            )
            .await?;
        rows.iter()
            .map(|r| MinuteSample::from_record(r.get(0)))
            .collect()
    }
}
