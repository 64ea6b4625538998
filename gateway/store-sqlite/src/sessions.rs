//! [`SessionStore`] in the gateway database (tables `console_sessions` and
//! `console_tickets`).

use std::path::Path;

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension};
use skyport_core::error::GatewayError;
use skyport_domain::sessions::{SessionRecord, SessionStore};

use crate::db::Db;

/// Console sessions in `<state_dir>/skyport.db`.
pub struct SqliteSessions {
    db: Db,
}

impl SqliteSessions {
    /// Opens (and creates) the tables in `<state_dir>/skyport.db`.
    pub fn open(state_dir: &Path) -> anyhow::Result<Self> {
        let db = Db::open(
            state_dir,
            "console sessions",
            "CREATE TABLE IF NOT EXISTS console_sessions (
                id_hash TEXT PRIMARY KEY,
                created_ms INTEGER NOT NULL,
                last_seen_ms INTEGER NOT NULL,
                record TEXT NOT NULL
            );
            CREATE TABLE IF NOT EXISTS console_tickets (
                jti TEXT PRIMARY KEY,
                expires_ms INTEGER NOT NULL
            );",
        )?;
        Ok(Self { db })
    }
}

#[async_trait]
impl SessionStore for SqliteSessions {
    async fn insert(&self, session: &SessionRecord) -> Result<(), GatewayError> {
        let s = session.clone();
        self.db
            .with(move |c| {
                c.prepare_cached(
                    "INSERT INTO console_sessions (id_hash, created_ms, last_seen_ms, record)
                     VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![
                    s.id_hash,
                    s.created_ms,
                    s.last_seen_ms,
                    s.to_record()
                ])
                .map(|_| ())
            })
            .await
    }

    async fn get(&self, id_hash: &str) -> Result<Option<SessionRecord>, GatewayError> {
        let id = id_hash.to_string();
        let row = self
            .db
            .with(move |c| {
                c.prepare_cached(
                    "SELECT record, last_seen_ms FROM console_sessions WHERE id_hash = ?1",
                )?
                .query_row(params![id], |r| Ok((r.get::<_, String>(0)?, r.get(1)?)))
                .optional()
            })
            .await?;
        row.map(|(record, last_seen_ms)| {
            let mut s = SessionRecord::from_record(&record)?;
            s.last_seen_ms = last_seen_ms;
            Ok(s)
        })
        .transpose()
    }

    async fn touch(&self, id_hash: &str, last_seen_ms: i64) -> Result<(), GatewayError> {
        let id = id_hash.to_string();
        self.db
            .with(move |c| {
                c.prepare_cached(
                    "UPDATE console_sessions SET last_seen_ms = ?2 WHERE id_hash = ?1",
                )?
                .execute(params![id, last_seen_ms])
                .map(|_| ())
            })
            .await
    }

    async fn delete(&self, id_hash: &str) -> Result<(), GatewayError> {
        let id = id_hash.to_string();
        self.db
            .with(move |c| {
                c.prepare_cached("DELETE FROM console_sessions WHERE id_hash = ?1")?
                    .execute(params![id])
                    .map(|_| ())
            })
            .await
    }

    async fn use_ticket(&self, jti: &str, expires_ms: i64) -> Result<bool, GatewayError> {
        let jti = jti.to_string();
        self.db
            .with(move |c| {
                c.prepare_cached(
                    "INSERT INTO console_tickets (jti, expires_ms) VALUES (?1, ?2)
                     ON CONFLICT (jti) DO NOTHING",
                )?
                .execute(params![jti, expires_ms])
                .map(|n| n == 1)
            })
            .await
    }

    async fn purge(
        &self,
        idle_before_ms: i64,
        created_before_ms: i64,
        now_ms: i64,
    ) -> Result<(), GatewayError> {
        self.db
            .with(move |c| {
                c.prepare_cached(
                    "DELETE FROM console_sessions WHERE last_seen_ms < ?1 OR created_ms < ?2",
                )?
                .execute(params![idle_before_ms, created_before_ms])?;
                c.prepare_cached("DELETE FROM console_tickets WHERE expires_ms < ?1")?
                    .execute(params![now_ms])
                    .map(|_| ())
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sqlite_sessions_pass_the_conformance_suite() {
        let guard = crate::test_dir("sessions");
        let dir = guard.path();
        let store = SqliteSessions::open(dir).unwrap();
        skyport_domain::sessions::conformance::run(&store).await;
    }
}
