//! Subscriptions and the outbox in memory, for tests.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use async_trait::async_trait;
use skyport_core::error::GatewayError;

use super::{Delivery, DeliveryQuery, DeliveryStatus, EventStore, Subscription};

/// Everything in maps.
#[derive(Default)]
pub struct MemoryEvents {
    subscriptions: Mutex<Vec<Subscription>>,
    deliveries: Mutex<BTreeMap<String, Delivery>>,
    marks: Mutex<BTreeSet<String>>,
}

#[async_trait]
impl EventStore for MemoryEvents {
    async fn insert_subscription(&self, subscription: &Subscription) -> Result<(), GatewayError> {
        self.subscriptions
            .lock()
            .unwrap()
            .push(subscription.clone());
        Ok(())
    }

    async fn subscriptions(&self) -> Result<Vec<Subscription>, GatewayError> {
        Ok(self.subscriptions.lock().unwrap().clone())
    }

    async fn delete_subscription(&self, id: &str) -> Result<bool, GatewayError> {
        let mut subscriptions = self.subscriptions.lock().unwrap();
        let before = subscriptions.len();
        subscriptions.retain(|s| s.id != id);
        self.deliveries
            .lock()
            .unwrap()
            .retain(|_, d| d.subscription_id != id || d.status != DeliveryStatus::Pending);
        Ok(subscriptions.len() != before)
    }

    async fn enqueue(&self, deliveries: &[Delivery]) -> Result<(), GatewayError> {
        let mut stored = self.deliveries.lock().unwrap();
        for d in deliveries {
            stored.entry(d.id.clone()).or_insert_with(|| d.clone());
        }
        Ok(())
    }

    async fn claim(
        &self,
        now: &str,
        until: &str,
        limit: usize,
        skip: &[String],
    ) -> Result<Vec<Delivery>, GatewayError> {
        let mut stored = self.deliveries.lock().unwrap();
        let mut due: Vec<&mut Delivery> = stored
            .values_mut()
            .filter(|d| {
                d.status == DeliveryStatus::Pending
                    && d.next_attempt_at.as_str() <= now
                    && !skip.contains(&d.subscription_id)
            })
            .collect();
        due.sort_by(|a, b| (&a.next_attempt_at, &a.id).cmp(&(&b.next_attempt_at, &b.id)));
        Ok(due
            .into_iter()
            .take(limit)
            .map(|d| {
                d.next_attempt_at = until.to_string();
                d.clone()
            })
            .collect())
    }

    async fn settle(&self, deliveries: &[Delivery]) -> Result<(), GatewayError> {
        let mut stored = self.deliveries.lock().unwrap();
        for d in deliveries {
            if let Some(s) = stored.get_mut(&d.id) {
                if s.status == DeliveryStatus::Pending {
                    *s = d.clone();
                }
            }
        }
        Ok(())
    }

    async fn deliveries(&self, query: &DeliveryQuery) -> Result<Vec<Delivery>, GatewayError> {
        let stored = self.deliveries.lock().unwrap();
        let mut found: Vec<Delivery> = stored
            .values()
            .filter(|d| {
                query
                    .subscription_id
                    .as_ref()
                    .is_none_or(|s| &d.subscription_id == s)
                    && query.status.is_none_or(|s| d.status == s)
            })
            .cloned()
            .collect();
        found.sort_by(|a, b| (&b.created_at, &b.id).cmp(&(&a.created_at, &a.id)));
        found.truncate(query.limit);
        Ok(found)
    }

    async fn delivery(&self, id: &str) -> Result<Option<Delivery>, GatewayError> {
        Ok(self.deliveries.lock().unwrap().get(id).cloned())
    }

    async fn revive(&self, id: &str, now: &str) -> Result<bool, GatewayError> {
        let mut stored = self.deliveries.lock().unwrap();
        match stored.get_mut(id) {
            Some(d) if d.status == DeliveryStatus::Dead => {
                d.status = DeliveryStatus::Pending;
                d.next_attempt_at = now.to_string();
                d.created_at = now.to_string();
                d.finished_at = None;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn purge_delivered(&self, before: &str) -> Result<u64, GatewayError> {
        let mut stored = self.deliveries.lock().unwrap();
        let count = stored.len();
        stored.retain(|_, d| {
            d.status != DeliveryStatus::Delivered
                || d.finished_at.as_deref().is_none_or(|f| f >= before)
        });
        Ok((count - stored.len()) as u64)
    }

    async fn enqueue_once(
        &self,
        key: &str,
        _at: &str,
        deliveries: &[Delivery],
    ) -> Result<bool, GatewayError> {
        if !self.marks.lock().unwrap().insert(key.to_string()) {
            return Ok(false);
        }
        self.enqueue(deliveries).await?;
        Ok(true)
    }
}
