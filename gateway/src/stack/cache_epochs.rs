//! Cache coherence across replicas: each tenant has a write epoch in Redis, and one epoch
//! covers every tenant (catalog changes). Both are part of every cache key, so a write
//! through one replica (which moves the epoch before it answers) makes every replica's
//! older entries of that tenant unreachable.
//!
//! How a replica learns the epochs:
//! - `[cache] coherence = "redis"` ([`EpochMode::Strict`]): both epochs are read from
//!   Redis (one `MGET`) for every cached read: a read after a write never sees the state
//!   before it, whichever replica answers.
//! - `"redis-pushed"` ([`EpochMode::Pushed`]): a write moves the epoch and publishes the
//!   new value on [`CHANNEL`] in one script; every replica keeps the values it has seen,
//!   subscribed to the channel, and reads an epoch from Redis only the first time it
//!   needs it. A cached read costs no Redis round trip. Another replica sees a write once
//!   the push reaches it and is processed there (on a busy host, after the writer has
//!   answered). While the subscription is down the replica does not cache at all, and
//!   forgets what it knew: pushes may have been missed.
//!
//! When Redis cannot answer, reads are not cached (they go to the provider) rather than
//! risk a stale answer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use redis::AsyncCommands;

use crate::redis_link::RedisLink;

/// The key of the epoch that covers every tenant.
const EVERYONE: &str = "skyport:cache-epoch:*";

/// Where moved epochs are published, as `<key> <value>`.
pub const CHANNEL: &str = "skyport:cache-epochs";

/// How often a lost subscription is made again.
const RESUBSCRIBE_EVERY: Duration = Duration::from_secs(1);

/// Moves an epoch and publishes its new value, in one round trip.
const BUMP: &str = r"
local value = redis.call('INCR', KEYS[1])
redis.call('PUBLISH', ARGV[1], KEYS[1] .. ' ' .. value)
return value
";

/// How a replica learns the epochs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpochMode {
    /// Pushed by Redis pub/sub, kept here.
    Pushed,
    /// Read from Redis for every cached read.
    Strict,
}

/// Write epochs in Redis.
pub struct SharedEpochs {
    link: RedisLink,
    mode: EpochMode,
    bump: redis::Script,
    /// Epochs by key, as last read or pushed (pushed mode).
    known: Arc<Mutex<HashMap<String, u64>>>,
    /// Whether the subscription is live (pushed mode): `known` is trusted only then.
    subscribed: Arc<AtomicBool>,
}

fn tenant_key(tenant: &str) -> String {
    format!("skyport:cache-epoch:t:{tenant}")
}

impl SharedEpochs {
    /// Epochs on `link`'s Redis, learnt as `mode` says; in pushed mode the subscription
    /// is started (and kept) in the background.
    pub fn new(link: RedisLink, mode: EpochMode) -> Self {
        let epochs = Self {
            link,
            mode,
            bump: redis::Script::new(BUMP),
            known: Arc::default(),
            subscribed: Arc::default(),
        };
        if mode == EpochMode::Pushed {
            tokio::spawn(subscribe(
                epochs.link.client(),
                Arc::clone(&epochs.known),
                Arc::clone(&epochs.subscribed),
            ));
        }
        epochs
    }

    /// `tenant`'s epoch and everyone's; `None` when they cannot be known now.
    pub async fn current(&self, tenant: &str) -> Option<(u64, u64)> {
        let key = tenant_key(tenant);
        if self.mode == EpochMode::Pushed {
            if !self.subscribed.load(Ordering::Acquire) {
                return None;
            }
            let known = lock(&self.known);
            if let (Some(mine), Some(everyone)) = (known.get(&key), known.get(EVERYONE)) {
                return Some((*mine, *everyone));
            }
        }
        let (mine, everyone) = self.read(&key).await?;
        if self.mode == EpochMode::Pushed {
            // A push that arrived during the read may be newer: the larger value stands.
            let mut known = lock(&self.known);
            let mine = *known
                .entry(key)
                .and_modify(|v| *v = (*v).max(mine))
                .or_insert(mine);
            let everyone = *known
                .entry(EVERYONE.to_string())
                .and_modify(|v| *v = (*v).max(everyone))
                .or_insert(everyone);
            return Some((mine, everyone));
        }
        Some((mine, everyone))
    }

    /// Both epochs from Redis (absent: 0).
    async fn read(&self, key: &str) -> Option<(u64, u64)> {
        let mut redis = self.link.connection()?;
        let keys = [key.to_string(), EVERYONE.to_string()];
        let read = redis.mget::<_, Vec<Option<u64>>>(&keys);
        match tokio::time::timeout(self.link.timeout, read).await {
            Ok(Ok(values)) => Some((
                values.first().copied().flatten().unwrap_or(0),
                values.get(1).copied().flatten().unwrap_or(0),
            )),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "cache epochs: Redis failed; not caching");
                None
            }
            Err(_) => None,
        }
    }

    /// Moves `tenant`'s epoch on (every replica's older entries of it become unreachable).
    pub async fn bump_tenant(&self, tenant: &str) {
        self.bump(&tenant_key(tenant)).await;
    }

    /// Moves everyone's epoch on.
    pub async fn bump_everyone(&self) {
        self.bump(EVERYONE).await;
    }

    async fn bump(&self, key: &str) {
        let Some(mut redis) = self.link.connection() else {
            tracing::warn!(key,
                "cache epochs: Redis is not connected; other replicas may serve older reads until their TTL");
            return;
        };
        let mut invocation = self.bump.key(key);
        invocation.arg(CHANNEL);
        let moved = invocation.invoke_async::<u64>(&mut redis);
        match tokio::time::timeout(self.link.timeout, moved).await {
            Ok(Ok(value)) => {
                // This replica's own reads see its write at once, push or not.
                let mut known = lock(&self.known);
                let entry = known.entry(key.to_string()).or_insert(value);
                *entry = (*entry).max(value);
            }
            Ok(Err(e)) => tracing::warn!(error = %e, key,
                "cache epochs: a write could not reach Redis; other replicas may serve older reads until their TTL"),
            Err(_) => tracing::warn!(key,
                "cache epochs: Redis did not answer in time; other replicas may serve older reads until their TTL"),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Keeps a subscription to [`CHANNEL`] on `client`'s Redis, recording each pushed epoch
/// in `known`; while it is down, `subscribed` is false and `known` is emptied (pushes
/// may have been missed).
async fn subscribe(
    client: redis::Client,
    known: Arc<Mutex<HashMap<String, u64>>>,
    subscribed: Arc<AtomicBool>,
) {
    let mut warned = false;
    loop {
        let pubsub = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(CHANNEL).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        match tokio::time::timeout(Duration::from_secs(5), pubsub).await {
            Ok(Ok(pubsub)) => {
                lock(&known).clear();
                subscribed.store(true, Ordering::Release);
                if warned {
                    tracing::info!("cache epochs: subscribed again; caching across replicas");
                    warned = false;
                }
                let mut messages = pubsub.into_on_message();
                while let Some(message) = messages.next().await {
                    let Ok(text) = message.get_payload::<String>() else {
                        continue;
                    };
                    if let Some((key, value)) = text.rsplit_once(' ') {
                        if let Ok(value) = value.parse::<u64>() {
                            let mut known = lock(&known);
                            let entry = known.entry(key.to_string()).or_insert(value);
                            *entry = (*entry).max(value);
                        }
                    }
                }
            }
            Ok(Err(e)) if !warned => {
                tracing::warn!(error = %e, "cache epochs: cannot subscribe; not caching until Redis answers");
                warned = true;
            }
            _ => {}
        }
        if subscribed.swap(false, Ordering::AcqRel) {
            tracing::warn!("cache epochs: subscription lost; not caching until it is made again");
            warned = true;
        }
        lock(&known).clear();
        tokio::time::sleep(RESUBSCRIBE_EVERY).await;
    }
}
