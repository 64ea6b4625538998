//! [`EventStore`] in the shared database: tables `webhook_subscriptions`,
//! `webhook_deliveries` (the outbox) and `event_marks`. Batches are one statement each
//! (`unnest` of arrays), and claims skip rows another replica holds locked.

use async_trait::async_trait;
use skyport_core::error::GatewayError;
use skyport_domain::events::{Delivery, DeliveryQuery, DeliveryStatus, EventStore, Subscription};
use tokio_postgres::Row;

use crate::db::{db_error, Pg};

/// Subscriptions and the outbox, shared by every replica.
pub struct PgEvents {
    db: Pg,
}

impl PgEvents {
    /// The tables in `db` (migrated by [`crate::schema::migrate`]).
    pub fn new(db: Pg) -> Self {
        Self { db }
    }
}

const WHAT: &str = "webhooks";

fn parse(rows: &[Row]) -> Result<Vec<Delivery>, GatewayError> {
    rows.iter()
        .map(|r| Delivery::from_record(r.get(0), r.get(1), r.get(2)))
        .collect()
}

#[async_trait]
impl EventStore for PgEvents {
    async fn insert_subscription(&self, subscription: &Subscription) -> Result<(), GatewayError> {
        self.db
            .execute(
                WHAT,
                "INSERT INTO webhook_subscriptions (id, tenant, created_at, record)
                 VALUES ($1, $2, $3, $4)",
                &[
                    &subscription.id,
                    &subscription.tenant,
                    &subscription.created_at,
                    &subscription.to_record(),
                ],
            )
            .await
            .map(|_| ())
    }

    async fn subscriptions(&self) -> Result<Vec<Subscription>, GatewayError> {
        let rows = self
            .db
            .query(
                WHAT,
                "SELECT record FROM webhook_subscriptions ORDER BY created_at, id",
                &[],
            )
            .await?;
        rows.iter()
            .map(|r| Subscription::from_record(r.get(0)))
            .collect()
    }

    async fn delete_subscription(&self, id: &str) -> Result<bool, GatewayError> {
        let rows = self
            .db
            .query(
                WHAT,
                "WITH gone AS (DELETE FROM webhook_subscriptions WHERE id = $1 RETURNING id),
                      dropped AS (DELETE FROM webhook_deliveries
                                  WHERE subscription_id = $1 AND status = 'pending')
                 SELECT count(*) FROM gone",
                &[&id],
            )
            .await?;
        Ok(rows[0].get::<_, i64>(0) == 1)
    }

    async fn enqueue(&self, deliveries: &[Delivery]) -> Result<(), GatewayError> {
        let columns = Columns::of(deliveries);
        self.db
            .execute(WHAT, INSERT_DELIVERIES, &columns.params())
            .await
            .map(|_| ())
    }

    async fn claim(
        &self,
        now: &str,
        until: &str,
        limit: usize,
        skip: &[String],
    ) -> Result<Vec<Delivery>, GatewayError> {
        let rows = self
            .db
            .query(
                WHAT,
                "WITH due AS (
                     SELECT id, next_attempt_at AS was FROM webhook_deliveries
                     WHERE status = 'pending' AND next_attempt_at <= $1
                       AND subscription_id <> ALL($3::TEXT[])
                     ORDER BY next_attempt_at, id LIMIT $4
                     FOR UPDATE SKIP LOCKED)
                 UPDATE webhook_deliveries AS d SET next_attempt_at = $2
                 FROM due WHERE d.id = due.id
                 RETURNING d.record, d.status, d.next_attempt_at, due.was, d.id",
                &[&now, &until, &skip, &(limit as i64)],
            )
            .await?;
        let mut rows: Vec<&Row> = rows.iter().collect();
        rows.sort_by(|a, b| (a.get::<_, &str>(3), a.get::<_, &str>(4)).cmp(&(b.get(3), b.get(4))));
        rows.into_iter()
            .map(|r| Delivery::from_record(r.get(0), r.get(1), r.get(2)))
            .collect()
    }

    async fn settle(&self, deliveries: &[Delivery]) -> Result<(), GatewayError> {
        let ids: Vec<&str> = deliveries.iter().map(|d| d.id.as_str()).collect();
        let statuses: Vec<&str> = deliveries.iter().map(|d| d.status.as_str()).collect();
        let next: Vec<&str> = deliveries
            .iter()
            .map(|d| d.next_attempt_at.as_str())
            .collect();
        let finished: Vec<Option<&str>> = deliveries
            .iter()
            .map(|d| d.finished_at.as_deref())
            .collect();
        let records: Vec<String> = deliveries.iter().map(Delivery::to_record).collect();
        self.db
            .execute(
                WHAT,
                "UPDATE webhook_deliveries AS d
                 SET status = u.status, next_attempt_at = u.next, finished_at = u.finished,
                     record = u.record
                 FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[])
                      AS u(id, status, next, finished, record)
                 WHERE d.id = u.id AND d.status = 'pending'",
                &[&ids, &statuses, &next, &finished, &records],
            )
            .await
            .map(|_| ())
    }

    async fn deliveries(&self, query: &DeliveryQuery) -> Result<Vec<Delivery>, GatewayError> {
        let status = query.status.map(DeliveryStatus::as_str);
        let rows = self
            .db
            .query(
                WHAT,
                "SELECT record, status, next_attempt_at FROM webhook_deliveries
                 WHERE ($1::TEXT IS NULL OR subscription_id = $1)
                   AND ($2::TEXT IS NULL OR status = $2)
                 ORDER BY created_at DESC, id DESC LIMIT $3",
                &[&query.subscription_id, &status, &(query.limit as i64)],
            )
            .await?;
        parse(&rows)
    }

    async fn delivery(&self, id: &str) -> Result<Option<Delivery>, GatewayError> {
        let rows = self
            .db
            .query(
                WHAT,
                "SELECT record, status, next_attempt_at FROM webhook_deliveries WHERE id = $1",
                &[&id],
            )
            .await?;
        Ok(parse(&rows)?.pop())
    }

    async fn revive(&self, id: &str, now: &str) -> Result<bool, GatewayError> {
        let Some(mut delivery) = self.delivery(id).await? else {
            return Ok(false);
        };
        delivery.status = DeliveryStatus::Pending;
        delivery.finished_at = None;
        delivery.created_at = now.to_string();
        self.db
            .execute(
                WHAT,
                "UPDATE webhook_deliveries
                 SET status = 'pending', next_attempt_at = $2, created_at = $2,
                     finished_at = NULL, record = $3
                 WHERE id = $1 AND status = 'dead'",
                &[&id, &now, &delivery.to_record()],
            )
            .await
            .map(|n| n == 1)
    }

    async fn purge_delivered(&self, before: &str) -> Result<u64, GatewayError> {
        self.db
            .execute(
                WHAT,
                "DELETE FROM webhook_deliveries WHERE status = 'delivered' AND finished_at < $1",
                &[&before],
            )
            .await
    }

    async fn enqueue_once(
        &self,
        key: &str,
        at: &str,
        deliveries: &[Delivery],
    ) -> Result<bool, GatewayError> {
        let mut client = self.db.client(WHAT).await?;
        let tx = client.transaction().await.map_err(|e| db_error(WHAT, e))?;
        let new = tx
            .execute(
                "INSERT INTO event_marks (key, at) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
                &[&key, &at],
            )
            .await
            .map_err(|e| db_error(WHAT, e))?
            == 1;
        if new {
            let columns = Columns::of(deliveries);
            tx.execute(INSERT_DELIVERIES, &columns.params())
                .await
                .map_err(|e| db_error(WHAT, e))?;
            tx.commit().await.map_err(|e| db_error(WHAT, e))?;
        }
        Ok(new)
    }
}

/// Inserts the deliveries of [`Columns::params`], leaving those already there.
const INSERT_DELIVERIES: &str = "INSERT INTO webhook_deliveries
     (id, subscription_id, status, next_attempt_at, created_at, record)
 SELECT * FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::TEXT[])
 ON CONFLICT (id) DO NOTHING";

/// Deliveries as one array per column.
struct Columns {
    ids: Vec<String>,
    subscriptions: Vec<String>,
    statuses: Vec<String>,
    next: Vec<String>,
    created: Vec<String>,
    records: Vec<String>,
}

impl Columns {
    fn of(deliveries: &[Delivery]) -> Self {
        let column = |f: fn(&Delivery) -> String| deliveries.iter().map(f).collect::<Vec<_>>();
        Self {
            ids: column(|d| d.id.clone()),
            subscriptions: column(|d| d.subscription_id.clone()),
            statuses: column(|d| d.status.as_str().to_string()),
            next: column(|d| d.next_attempt_at.clone()),
            created: column(|d| d.created_at.clone()),
            records: column(Delivery::to_record),
        }
    }

    fn params(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); 6] {
        [
            &self.ids,
            &self.subscriptions,
            &self.statuses,
            &self.next,
            &self.created,
            &self.records,
        ]
    }
}
