//! Cache coherence across replicas (`[cache] coherence = "redis"`): each tenant has a
//! write epoch in Redis, and one epoch covers every tenant (catalog changes). Both are part
//! of every cache key, so once a replica knows an epoch moved, its older entries of that
//! tenant are unreachable.
//!
//! A cached read costs no Redis round trip, and a write is never followed by an older
//! cached read on any replica:
//! - **Pushed.** A write moves the epoch and publishes the new value on [`CHANNEL`] in one
//!   script, which returns how many replicas the push was delivered to. Every replica
//!   keeps the values it has seen (reading an epoch from Redis only the first time it
//!   needs it) and acknowledges each push once it holds the new value.
//! - **Acknowledged before the write answers.** The writer waits for as many
//!   acknowledgements as the push reached, at most [`ACK_WAIT`].
//! - **Leased.** A replica that could not acknowledge in time (stalled, cut off from
//!   Redis) must not serve from its cache. Every [`BEAT_EVERY`] a replica publishes a beat
//!   to itself through Redis; Redis delivers a subscriber's messages in the order it
//!   published them, so a beat received means every push published before it has been
//!   applied. A replica serves cached reads only within [`LEASE`] of sending the last beat
//!   it received, and [`LEASE`] is shorter than [`ACK_WAIT`]: a push published before a
//!   writer gave up waiting is either applied or the lease has run out, and the cache is
//!   bypassed.
//!
//! While the subscription is down the replica does not cache at all, and forgets what it
//! knew: pushes may have been missed. When Redis cannot answer, reads are not cached (they
//! go to the provider) rather than risk a stale answer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use redis::AsyncCommands;
use skyport_core::clock::SharedClock;
use tokio::sync::Semaphore;

use crate::redis_link::RedisLink;

/// The key of the epoch that covers every tenant.
const EVERYONE: &str = "skyport:cache-epoch:*";

/// Where moved epochs are published, as `<key> <value> <ack channel> <ack id>`.
pub const CHANNEL: &str = "skyport:cache-epochs";

/// Where a replica's acknowledgements (`ack <id>`) and its own beats (`beat <lease end>`)
/// reach it: the prefix of its own channel.
const ACKS: &str = "skyport:cache-acks:";

/// How often a replica renews its lease.
pub const BEAT_EVERY: Duration = Duration::from_millis(200);

/// How long after sending a beat (received back) a replica may serve cached reads.
pub const LEASE: Duration = Duration::from_secs(1);

/// The longest a write waits for the replicas' acknowledgements: longer than [`LEASE`].
pub const ACK_WAIT: Duration = Duration::from_millis(1200);

/// How often a lost subscription is made again.
const RESUBSCRIBE_EVERY: Duration = Duration::from_secs(1);

/// Moves an epoch and publishes its new value, in one round trip; returns the value and
/// how many subscribers the push reached.
const BUMP: &str = r"
local value = redis.call('INCR', KEYS[1])
local reached = redis.call('PUBLISH', ARGV[1], KEYS[1] .. ' ' .. value .. ' ' .. ARGV[2] .. ' ' .. ARGV[3])
return {value, reached}
";

/// Write epochs in Redis, pushed to this replica and acknowledged by it.
pub struct SharedEpochs {
    link: RedisLink,
    bump: redis::Script,
    clock: SharedClock,
    /// This replica's acknowledgement channel.
    acks: String,
    state: Arc<Pushed>,
    next_ack: AtomicU64,
}

/// What the subscription keeps, read by requests.
#[derive(Default)]
struct Pushed {
    view: Mutex<View>,
    /// Writes of this replica waiting for acknowledgements, by ack id.
    waiting: Mutex<HashMap<u64, Arc<Semaphore>>>,
}

/// The epochs this replica knows and until when it may trust them.
#[derive(Default)]
struct View {
    known: HashMap<String, u64>,
    /// The clock's monotonic time (ns) until which cached reads may be served; 0 while
    /// unsubscribed.
    lease_until: u64,
}

impl View {
    fn learn(&mut self, key: &str, value: u64) -> u64 {
        let entry = self.known.entry(key.to_string()).or_insert(value);
        *entry = (*entry).max(value);
        *entry
    }

    fn forget(&mut self) {
        self.known.clear();
        self.lease_until = 0;
    }
}

fn tenant_key(tenant: &str) -> String {
    format!("skyport:cache-epoch:t:{tenant}")
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SharedEpochs {
    /// Epochs on `link`'s Redis for the replica named `replica`; its subscription and its
    /// beats are started (and kept) in the background.
    pub fn new(link: RedisLink, replica: &str, clock: SharedClock) -> Self {
        let epochs = Self {
            link,
            bump: redis::Script::new(BUMP),
            clock,
            acks: format!("{ACKS}{replica}"),
            state: Arc::default(),
            next_ack: AtomicU64::new(1),
        };
        tokio::spawn(subscribe(
            epochs.link.clone(),
            epochs.acks.clone(),
            Arc::clone(&epochs.state),
        ));
        tokio::spawn(beat(
            epochs.link.clone(),
            epochs.acks.clone(),
            epochs.clock.clone(),
        ));
        epochs
    }

    /// `tenant`'s epoch and everyone's; `None` when they cannot be trusted now (the cache
    /// must be bypassed).
    pub async fn current(&self, tenant: &str) -> Option<(u64, u64)> {
        let key = tenant_key(tenant);
        {
            let view = lock(&self.state.view);
            if nanos(self.clock.monotonic()) >= view.lease_until {
                return None;
            }
            if let (Some(mine), Some(everyone)) = (view.known.get(&key), view.known.get(EVERYONE)) {
                return Some((*mine, *everyone));
            }
        }
        let (mine, everyone) = self.read(&key).await?;
        // A push that arrived during the read may be newer: the larger value stands.
        let mut view = lock(&self.state.view);
        if view.lease_until == 0 {
            return None; // the subscription went down meanwhile
        }
        Some((view.learn(&key, mine), view.learn(EVERYONE, everyone)))
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

    /// Moves `key`'s epoch and waits until every replica the push reached holds it, or
    /// [`ACK_WAIT`] has passed (by then a replica that did not acknowledge has stopped
    /// serving from its cache).
    async fn bump(&self, key: &str) {
        let Some(mut redis) = self.link.connection() else {
            tracing::warn!(key,
                "cache epochs: Redis is not connected; other replicas may serve older reads until their TTL");
            return;
        };
        let id = self.next_ack.fetch_add(1, Ordering::Relaxed);
        let acknowledged = Arc::new(Semaphore::new(0));
        lock(&self.state.waiting).insert(id, Arc::clone(&acknowledged));
        let mut invocation = self.bump.key(key);
        invocation.arg(CHANNEL).arg(&self.acks).arg(id);
        let moved = invocation.invoke_async::<(u64, u32)>(&mut redis);
        match tokio::time::timeout(self.link.timeout, moved).await {
            Ok(Ok((value, reached))) => {
                // This replica's own reads see its write at once.
                lock(&self.state.view).learn(key, value);
                let all = acknowledged.acquire_many(reached);
                if tokio::time::timeout(ACK_WAIT, all).await.is_err() {
                    tracing::info!(key, reached, available = acknowledged.available_permits(),
                        "cache epochs: not every replica acknowledged a write; those that did not have stopped serving cached reads");
                }
            }
            Ok(Err(e)) => tracing::warn!(error = %e, key,
                "cache epochs: a write could not reach Redis; other replicas may serve older reads until their TTL"),
            Err(_) => tracing::warn!(key,
                "cache epochs: Redis did not answer in time; other replicas may serve older reads until their TTL"),
        }
        lock(&self.state.waiting).remove(&id);
    }
}

/// Keeps a subscription to [`CHANNEL`] and to this replica's `acks` channel on `link`'s
/// Redis: records each pushed epoch and acknowledges it, counts acknowledgements of this
/// replica's writes, and extends the lease by each beat received.
async fn subscribe(link: RedisLink, acks: String, state: Arc<Pushed>) {
    let client = link.client();
    let mut warned = false;
    loop {
        let pubsub = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&[CHANNEL, acks.as_str()]).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        match tokio::time::timeout(Duration::from_secs(5), pubsub).await {
            Ok(Ok(pubsub)) => {
                lock(&state.view).forget();
                if warned {
                    tracing::info!("cache epochs: subscribed again; caching across replicas");
                    warned = false;
                }
                let mut messages = pubsub.into_on_message();
                while let Some(message) = messages.next().await {
                    let Ok(text) = message.get_payload::<String>() else {
                        continue;
                    };
                    if message.get_channel_name() == CHANNEL {
                        if let Some((ack_channel, id)) = apply_push(&state, &text) {
                            tokio::spawn(acknowledge(link.clone(), ack_channel, id));
                        }
                    } else {
                        apply_ack(&state, &text);
                    }
                }
            }
            Ok(Err(e)) if !warned => {
                tracing::warn!(error = %e, "cache epochs: cannot subscribe; not caching until Redis answers");
                warned = true;
            }
            _ => {}
        }
        if lock(&state.view).lease_until != 0 {
            tracing::warn!("cache epochs: subscription lost; not caching until it is made again");
            warned = true;
        }
        lock(&state.view).forget();
        tokio::time::sleep(RESUBSCRIBE_EVERY).await;
    }
}

/// Records the epoch in a push (`<key> <value> <ack channel> <ack id>`); returns where
/// and what to acknowledge.
fn apply_push(state: &Pushed, text: &str) -> Option<(String, u64)> {
    let mut fields = text.rsplitn(4, ' ');
    let id = fields.next()?.parse().ok()?;
    let ack_channel = fields.next()?.to_string();
    let value = fields.next()?.parse().ok()?;
    let key = fields.next()?;
    lock(&state.view).learn(key, value);
    Some((ack_channel, id))
}

/// Counts an acknowledgement (`ack <id>`) or extends the lease by a beat (`beat <end>`).
fn apply_ack(state: &Pushed, text: &str) {
    match text.split_once(' ') {
        Some(("ack", id)) => {
            if let Some(waiting) = id
                .parse()
                .ok()
                .and_then(|id: u64| lock(&state.waiting).get(&id).cloned())
            {
                waiting.add_permits(1);
            }
        }
        Some(("beat", until)) => {
            if let Ok(until) = until.parse::<u64>() {
                let mut view = lock(&state.view);
                view.lease_until = view.lease_until.max(until);
            }
        }
        _ => {}
    }
}

/// Tells the writer on `channel` that this replica holds push `id`'s epoch.
async fn acknowledge(link: RedisLink, channel: String, id: u64) {
    let Some(mut redis) = link.connection() else {
        return;
    };
    let sent = redis.publish::<_, _, u32>(&channel, format!("ack {id}"));
    if let Ok(Err(e)) = tokio::time::timeout(link.timeout, sent).await {
        tracing::debug!(error = %e, "cache epochs: an acknowledgement was not sent");
    }
}

/// Every [`BEAT_EVERY`], publishes a beat to this replica's own `channel`, carrying the end
/// of the lease it grants once received: [`LEASE`] after it was sent.
async fn beat(link: RedisLink, channel: String, clock: SharedClock) {
    let mut every = tokio::time::interval(BEAT_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let Some(mut redis) = link.connection() else {
            continue;
        };
        let until = nanos(clock.monotonic() + LEASE);
        let sent = redis.publish::<_, _, u32>(&channel, format!("beat {until}"));
        let _ = tokio::time::timeout(link.timeout, sent).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_push_is_learnt_and_names_its_acknowledgement() {
        let state = Pushed::default();
        let pushed = apply_push(
            &state,
            "skyport:cache-epoch:t:a b 7 skyport:cache-acks:r1 42",
        );
        assert_eq!(pushed, Some(("skyport:cache-acks:r1".to_string(), 42)));
        let pushed = apply_push(
            &state,
            "skyport:cache-epoch:t:a b 5 skyport:cache-acks:r1 43",
        );
        assert!(pushed.is_some());
        // An older value never replaces a newer one.
        assert_eq!(lock(&state.view).known["skyport:cache-epoch:t:a b"], 7);
        assert_eq!(apply_push(&state, "garbage"), None);
    }

    #[test]
    fn beats_extend_the_lease_and_acks_reach_their_write() {
        let state = Pushed::default();
        apply_ack(&state, "beat 500");
        apply_ack(&state, "beat 300");
        assert_eq!(lock(&state.view).lease_until, 500);
        let waiting = Arc::new(Semaphore::new(0));
        lock(&state.waiting).insert(9, Arc::clone(&waiting));
        apply_ack(&state, "ack 9");
        apply_ack(&state, "ack 10");
        assert_eq!(waiting.available_permits(), 1);
        lock(&state.view).forget();
        assert_eq!(lock(&state.view).lease_until, 0);
    }
}
