//! Cache coherence across replicas (`[cache] coherence = "redis"`): each tenant has a
//! write epoch in Redis, and one epoch covers every tenant (catalog changes). Both are
//! part of every cache key, read from Redis when the key is made, so a write through one
//! replica (which bumps the epoch before it answers) makes every replica's older entries
//! of that tenant unreachable at once: a read after a write never sees the state before
//! it, whichever replica answers. When Redis cannot answer, reads are not cached (they go
//! to the provider) rather than risk a stale answer.

use redis::AsyncCommands;

use crate::redis_link::RedisLink;

/// The key of the epoch that covers every tenant.
const EVERYONE: &str = "skyport:cache-epoch:*";

/// Write epochs in Redis.
pub struct SharedEpochs {
    link: RedisLink,
}

fn tenant_key(tenant: &str) -> String {
    format!("skyport:cache-epoch:t:{tenant}")
}

impl SharedEpochs {
    /// Epochs on `link`'s Redis.
    pub fn new(link: RedisLink) -> Self {
        Self { link }
    }

    /// `tenant`'s epoch and everyone's; `None` when Redis does not answer in time.
    pub async fn current(&self, tenant: &str) -> Option<(u64, u64)> {
        let mut redis = self.link.connection()?;
        let keys = [tenant_key(tenant), EVERYONE.to_string()];
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
        let incr = redis.incr::<_, _, u64>(key, 1);
        match tokio::time::timeout(self.link.timeout, incr).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, key,
                "cache epochs: a write could not reach Redis; other replicas may serve older reads until their TTL"),
            Err(_) => tracing::warn!(key,
                "cache epochs: Redis did not answer in time; other replicas may serve older reads until their TTL"),
        }
    }
}
