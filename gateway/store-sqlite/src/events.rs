//! [`EventStore`] in the gateway database: tables `webhook_subscriptions`,
//! `webhook_deliveries` (the outbox) and `event_marks`.

use std::path::Path;

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension, Row};
use skyport_core::error::GatewayError;
use skyport_domain::events::{Delivery, DeliveryQuery, DeliveryStatus, EventStore, Subscription};

use crate::db::Db;

/// Subscriptions and the outbox in `<state_dir>/skyport.db`.
pub struct SqliteEvents {
    db: Db,
}

impl SqliteEvents {
    /// Opens (and creates) the tables in `<state_dir>/skyport.db`.
    pub fn open(state_dir: &Path) -> anyhow::Result<Self> {
        let db = Db::open(
            state_dir,
            "webhooks",
            "CREATE TABLE IF NOT EXISTS webhook_subscriptions (
                id TEXT PRIMARY KEY,
                tenant TEXT,
                created_at TEXT NOT NULL,
                record TEXT NOT NULL
            );
            CREATE TABLE IF NOT EXISTS webhook_deliveries (
                id TEXT PRIMARY KEY,
                subscription_id TEXT NOT NULL,
                status TEXT NOT NULL,
                next_attempt_at TEXT NOT NULL,
                created_at TEXT NOT NULL,
                finished_at TEXT,
                record TEXT NOT NULL
            );
            CREATE INDEX IF NOT EXISTS webhook_deliveries_due
                ON webhook_deliveries (status, next_attempt_at);
            CREATE INDEX IF NOT EXISTS webhook_deliveries_by_subscription
                ON webhook_deliveries (subscription_id, created_at);
            CREATE TABLE IF NOT EXISTS event_marks (
                key TEXT PRIMARY KEY,
                at TEXT NOT NULL
            );",
        )?;
        Ok(Self { db })
    }
}

/// The columns [`delivery_of`] reads, in its order.
const DELIVERY: &str = "record, status, next_attempt_at";

fn delivery_of(row: &Row<'_>) -> rusqlite::Result<(String, String, String)> {
    delivery_of_at(row, 0)
}

fn parse(rows: Vec<(String, String, String)>) -> Result<Vec<Delivery>, GatewayError> {
    rows.into_iter()
        .map(|(record, status, next)| Delivery::from_record(&record, &status, next))
        .collect()
}

#[async_trait]
impl EventStore for SqliteEvents {
    async fn insert_subscription(&self, subscription: &Subscription) -> Result<(), GatewayError> {
        let (id, tenant, created, record) = (
            subscription.id.clone(),
            subscription.tenant.clone(),
            subscription.created_at.clone(),
            subscription.to_record(),
        );
        self.db
            .with(move |c| {
                c.execute(
                    "INSERT INTO webhook_subscriptions (id, tenant, created_at, record)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![id, tenant, created, record],
                )
            })
            .await
            .map(|_| ())
    }

    async fn subscriptions(&self) -> Result<Vec<Subscription>, GatewayError> {
        let rows = self
            .db
            .with(|c| {
                let mut stmt = c.prepare_cached(
                    "SELECT record FROM webhook_subscriptions ORDER BY created_at, id",
                )?;
                let rows = stmt.query_map([], |row| row.get(0))?;
                rows.collect::<Result<Vec<String>, _>>()
            })
            .await?;
        rows.iter().map(|t| Subscription::from_record(t)).collect()
    }

    async fn delete_subscription(&self, id: &str) -> Result<bool, GatewayError> {
        let id = id.to_string();
        self.db
            .with(move |c| {
                let tx = c.unchecked_transaction()?;
                let n = tx.execute("DELETE FROM webhook_subscriptions WHERE id = ?1", [&id])?;
                tx.execute(
                    "DELETE FROM webhook_deliveries
                     WHERE subscription_id = ?1 AND status = 'pending'",
                    [&id],
                )?;
                tx.commit()?;
                Ok(n == 1)
            })
            .await
    }

    async fn enqueue(&self, deliveries: &[Delivery]) -> Result<(), GatewayError> {
        let rows = rows_of(deliveries);
        self.db
            .with(move |c| {
                let tx = c.unchecked_transaction()?;
                insert_rows(&tx, &rows)?;
                tx.commit()
            })
            .await
    }

    async fn claim(
        &self,
        now: &str,
        until: &str,
        limit: usize,
        skip: &[String],
    ) -> Result<Vec<Delivery>, GatewayError> {
        let (now, until) = (now.to_string(), until.to_string());
        let skip = serde_json::to_string(skip).map_err(GatewayError::internal)?;
        let rows = self
            .db
            .with(move |c| {
                let tx = c.unchecked_transaction()?;
                let rows = {
                    let mut due = tx.prepare_cached(&format!(
                        "SELECT id, {DELIVERY} FROM webhook_deliveries
                         WHERE status = 'pending' AND next_attempt_at <= ?1
                           AND subscription_id NOT IN (SELECT value FROM json_each(?2))
                         ORDER BY next_attempt_at, id LIMIT ?3"
                    ))?;
                    let rows = due.query_map(params![now, skip, limit as i64], |row| {
                        Ok((row.get::<_, String>(0)?, delivery_of_at(row, 1)?))
                    })?;
                    rows.collect::<Result<Vec<_>, _>>()?
                };
                {
                    let mut hold = tx.prepare_cached(
                        "UPDATE webhook_deliveries SET next_attempt_at = ?2 WHERE id = ?1",
                    )?;
                    for (id, _) in &rows {
                        hold.execute(params![id, until])?;
                    }
                }
                tx.commit()?;
                Ok(rows
                    .into_iter()
                    .map(|(_, (record, status, _))| (record, status, until.clone()))
                    .collect())
            })
            .await?;
        parse(rows)
    }

    async fn settle(&self, deliveries: &[Delivery]) -> Result<(), GatewayError> {
        let rows: Vec<_> = deliveries
            .iter()
            .map(|d| {
                (
                    d.id.clone(),
                    d.status.as_str(),
                    d.next_attempt_at.clone(),
                    d.finished_at.clone(),
                    d.to_record(),
                )
            })
            .collect();
        self.db
            .with(move |c| {
                let tx = c.unchecked_transaction()?;
                {
                    let mut update = tx.prepare_cached(
                        "UPDATE webhook_deliveries
                         SET status = ?2, next_attempt_at = ?3, finished_at = ?4, record = ?5
                         WHERE id = ?1 AND status = 'pending'",
                    )?;
                    for row in &rows {
                        update.execute(params![row.0, row.1, row.2, row.3, row.4])?;
                    }
                }
                tx.commit()
            })
            .await
    }

    async fn deliveries(&self, query: &DeliveryQuery) -> Result<Vec<Delivery>, GatewayError> {
        let (subscription, status, limit) = (
            query.subscription_id.clone(),
            query.status.map(DeliveryStatus::as_str),
            query.limit as i64,
        );
        let rows = self
            .db
            .with(move |c| {
                let mut stmt = c.prepare_cached(&format!(
                    "SELECT {DELIVERY} FROM webhook_deliveries
                     WHERE (?1 IS NULL OR subscription_id = ?1) AND (?2 IS NULL OR status = ?2)
                     ORDER BY created_at DESC, id DESC LIMIT ?3"
                ))?;
                let rows = stmt.query_map(params![subscription, status, limit], delivery_of)?;
                rows.collect::<Result<Vec<_>, _>>()
            })
            .await?;
        parse(rows)
    }

    async fn delivery(&self, id: &str) -> Result<Option<Delivery>, GatewayError> {
        let id = id.to_string();
        let row = self
            .db
            .with(move |c| {
                c.query_row(
                    &format!("SELECT {DELIVERY} FROM webhook_deliveries WHERE id = ?1"),
                    [id],
                    delivery_of,
                )
                .optional()
            })
            .await?;
        Ok(parse(row.into_iter().collect())?.pop())
    }

    async fn revive(&self, id: &str, now: &str) -> Result<bool, GatewayError> {
        let (id, now) = (id.to_string(), now.to_string());
        let Some(mut delivery) = self.delivery(&id).await? else {
            return Ok(false);
        };
        delivery.status = DeliveryStatus::Pending;
        delivery.finished_at = None;
        delivery.created_at = now.clone();
        let record = delivery.to_record();
        self.db
            .with(move |c| {
                c.execute(
                    "UPDATE webhook_deliveries
                     SET status = 'pending', next_attempt_at = ?2, created_at = ?2,
                         finished_at = NULL, record = ?3
                     WHERE id = ?1 AND status = 'dead'",
                    params![id, now, record],
                )
                .map(|n| n == 1)
            })
            .await
    }

    async fn purge_delivered(&self, before: &str) -> Result<u64, GatewayError> {
        let before = before.to_string();
        self.db
            .with(move |c| {
                c.execute(
                    "DELETE FROM webhook_deliveries
                     WHERE status = 'delivered' AND finished_at < ?1",
                    [before],
                )
                .map(|n| n as u64)
            })
            .await
    }

    async fn enqueue_once(
        &self,
        key: &str,
        at: &str,
        deliveries: &[Delivery],
    ) -> Result<bool, GatewayError> {
        let (key, at) = (key.to_string(), at.to_string());
        let rows = rows_of(deliveries);
        self.db
            .with(move |c| {
                let tx = c.unchecked_transaction()?;
                let new = tx.execute(
                    "INSERT OR IGNORE INTO event_marks (key, at) VALUES (?1, ?2)",
                    params![key, at],
                )? == 1;
                if new {
                    insert_rows(&tx, &rows)?;
                    tx.commit()?;
                }
                Ok(new)
            })
            .await
    }
}

/// A delivery's columns, as [`insert_rows`] writes them.
type DeliveryRow = (String, String, &'static str, String, String, String);

fn rows_of(deliveries: &[Delivery]) -> Vec<DeliveryRow> {
    deliveries
        .iter()
        .map(|d| {
            (
                d.id.clone(),
                d.subscription_id.clone(),
                d.status.as_str(),
                d.next_attempt_at.clone(),
                d.created_at.clone(),
                d.to_record(),
            )
        })
        .collect()
}

fn insert_rows(c: &rusqlite::Connection, rows: &[DeliveryRow]) -> rusqlite::Result<()> {
    let mut insert = c.prepare_cached(
        "INSERT OR IGNORE INTO webhook_deliveries
         (id, subscription_id, status, next_attempt_at, created_at, record)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for row in rows {
        insert.execute(params![row.0, row.1, row.2, row.3, row.4, row.5])?;
    }
    Ok(())
}

fn delivery_of_at(row: &Row<'_>, first: usize) -> rusqlite::Result<(String, String, String)> {
    Ok((row.get(first)?, row.get(first + 1)?, row.get(first + 2)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sqlite_events_pass_the_conformance_suite() {
        let guard = crate::test_dir("events");
        let dir = guard.path();
        let store = SqliteEvents::open(dir).unwrap();
        skyport_domain::events::conformance::run(&store).await;
    }
}
