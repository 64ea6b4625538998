//! Cache coherence across replicas (`[cache] coherence = "redis"`): each tenant has a
//! write epoch in Redis, and one epoch covers every tenant (catalog changes). Both are part
//! of every cache key, so once a replica knows an epoch moved, its older entries of that
//! tenant are unreachable.
//!
//! A cached read costs no Redis round trip, and a write is never followed by an older
//! cached read on any replica:
//! - **Registered.** Every [`BEAT_EVERY`], a subscribed replica runs a script that records
//!   it in [`LIVE`] until [`LEASE`] after Redis' own time, and publishes a beat to the
//!   replica itself.
//! - **Leased.** Redis delivers a subscriber's messages in the order it published them, so
//!   a beat received means every push published before it has been applied. A replica
//!   serves cached reads only within [`LEASE`] of sending the last beat it received.
//! - **Pushed.** A write moves the epoch and publishes the new value on [`CHANNEL`] in one
//!   script, which returns the replicas registered at that moment. Every replica keeps
//!   the values it has seen (reading an epoch from Redis only the first time it needs it)
//!   and acknowledges each push, by name, once it holds the new value.
//! - **Acknowledged before the write answers.** The writer waits for every registered
//!   replica but itself, at most [`ACK_WAIT`], which is longer than [`LEASE`]. A replica
//!   that still serves from its cache after the writer answered was registered when the
//!   push was published (its registration outlasts its lease), so it either acknowledged
//!   the push or its lease has run out.
//!
//! While the subscription is down the replica does not cache at all, and forgets what it
//! knew: pushes may have been missed. Each subscription is a new view, and the view is
//! part of the cache key, so entries from before (whose epochs Redis may have lost in a
//! restart) are never reached again. When Redis cannot answer, reads are not cached (they
//! go to the provider) rather than risk a stale answer.
//!
//! Assumes one Redis primary (not Redis Cluster, whose pub/sub and scripts span nodes).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use redis::AsyncCommands;
use skyport_core::clock::SharedClock;
use tokio::sync::mpsc;

use crate::redis_link::RedisLink;

/// The key of the epoch that covers every tenant.
const EVERYONE: &str = "skyport:cache-epoch:*";

/// Where moved epochs are published, as `<key> <value> <ack channel> <ack id>`.
pub const CHANNEL: &str = "skyport:cache-epochs";

/// The replicas that may serve cached reads: a sorted set, each scored by when (Redis
/// time, ms) its registration ends.
pub const LIVE: &str = "skyport:cache-replicas";

/// Where a replica's acknowledgements (`ack <id> <replica>`) and its own beats
/// (`beat <lease end> <view>`) reach it: the prefix of its own channel.
const ACKS: &str = "skyport:cache-acks:";

/// How often a replica renews its lease and its registration.
pub const BEAT_EVERY: Duration = Duration::from_millis(200);

/// How long after sending a beat (received back) a replica may serve cached reads, and how
/// long after Redis ran it its registration lasts.
pub const LEASE: Duration = Duration::from_secs(1);

/// The longest a write waits for the replicas' acknowledgements (and for Redis to run its
/// script): longer than [`LEASE`].
pub const ACK_WAIT: Duration = Duration::from_millis(1200);

const _: () = assert!(LEASE.as_millis() < ACK_WAIT.as_millis());

/// With no message (there is a beat every [`BEAT_EVERY`]) for this long, a subscription is
/// taken as broken and made again.
const SILENCE: Duration = Duration::from_secs(2);

/// How often a lost subscription is made again.
const RESUBSCRIBE_EVERY: Duration = Duration::from_secs(1);

/// Registers the replica `ARGV[2]` in `KEYS[1]` until `ARGV[1]` ms after Redis' time, and
/// publishes `ARGV[4]` on its channel `ARGV[3]`.
const BEAT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
";

/// Moves epoch `KEYS[1]` and publishes its new value; returns the value and the replicas
/// registered in `KEYS[2]` (expired registrations are dropped).
const BUMP: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local value = redis.call('INCR', KEYS[1])
redis.call('PUBLISH', ARGV[1], KEYS[1] .. ' ' .. string.format('%d', value) .. ' ' .. ARGV[2] .. ' ' .. ARGV[3])
return {value, redis.call('ZRANGE', KEYS[2], 0, -1)}
";

/// What a cached read's key holds of the shared epochs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Epochs {
    /// The replica's view (one per subscription).
    view: u64,
    tenant: u64,
    everyone: u64,
}

/// Write epochs in Redis, pushed to this replica and acknowledged by it.
#[derive(Clone)]
pub struct SharedEpochs {
    inner: Arc<Inner>,
}

struct Inner {
    link: RedisLink,
    bump: redis::Script,
    clock: SharedClock,
    /// This replica's name in [`LIVE`] and in acknowledgements.
    replica: String,
    /// This replica's own channel.
    acks: String,
    state: Arc<Pushed>,
    next_ack: AtomicU64,
}

/// What the subscription keeps, read by requests.
#[derive(Default)]
struct Pushed {
    view: Mutex<View>,
    /// Writes of this replica waiting for acknowledgements, by ack id: where to send the
    /// names of the replicas that acknowledged.
    waiting: Mutex<HashMap<u64, mpsc::UnboundedSender<String>>>,
}

/// The epochs this replica knows and until when it may trust them.
#[derive(Default)]
struct View {
    /// Moves on every time the subscription is made or lost.
    number: u64,
    subscribed: bool,
    known: HashMap<String, u64>,
    /// The clock's monotonic time (ns) until which cached reads may be served.
    lease_until: u64,
}

impl View {
    fn learn(&mut self, key: &str, value: u64) -> u64 {
        let entry = self.known.entry(key.to_string()).or_insert(value);
        *entry = (*entry).max(value);
        *entry
    }

    /// A new view, knowing nothing and trusting nothing.
    fn renew(&mut self, subscribed: bool) {
        self.number += 1;
        self.subscribed = subscribed;
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

/// Removes a write's waiting entry however the write ends.
struct Waiting<'a> {
    state: &'a Pushed,
    id: u64,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        lock(&self.state.waiting).remove(&self.id);
    }
}

impl SharedEpochs {
    /// Epochs on `link`'s Redis for the replica named `replica`; its subscription and its
    /// beats are started (and kept) in the background.
    pub fn new(link: RedisLink, replica: &str, clock: SharedClock) -> Self {
        let inner = Arc::new(Inner {
            link,
            bump: redis::Script::new(BUMP),
            clock,
            replica: replica.to_string(),
            acks: format!("{ACKS}{replica}"),
            state: Arc::default(),
            next_ack: AtomicU64::new(1),
        });
        tokio::spawn(subscribe(
            inner.link.clone(),
            inner.acks.clone(),
            inner.replica.clone(),
            Arc::clone(&inner.state),
        ));
        tokio::spawn(beat(Arc::clone(&inner)));
        Self { inner }
    }

    /// `tenant`'s epochs as of now; `None` when they cannot be trusted (the cache must be
    /// bypassed).
    pub async fn current(&self, tenant: &str) -> Option<Epochs> {
        let inner = &self.inner;
        let key = tenant_key(tenant);
        let number = {
            let view = lock(&inner.state.view);
            if nanos(inner.clock.monotonic()) >= view.lease_until {
                return None;
            }
            if let (Some(mine), Some(everyone)) = (view.known.get(&key), view.known.get(EVERYONE)) {
                return Some(Epochs {
                    view: view.number,
                    tenant: *mine,
                    everyone: *everyone,
                });
            }
            view.number
        };
        let (mine, everyone) = inner.read(&key).await?;
        let mut view = lock(&inner.state.view);
        if view.number != number {
            return None; // read under a subscription that has been lost since
        }
        // A push that arrived during the read may be newer: the larger value stands.
        Some(Epochs {
            view: number,
            tenant: view.learn(&key, mine),
            everyone: view.learn(EVERYONE, everyone),
        })
    }

    /// Moves `tenant`'s epoch on (every replica's older entries of it become unreachable),
    /// and waits for the replicas to know. Runs to its end even if the caller goes away.
    pub async fn bump_tenant(&self, tenant: &str) {
        self.bump(tenant_key(tenant)).await;
    }

    /// Moves everyone's epoch on.
    pub async fn bump_everyone(&self) {
        self.bump(EVERYONE.to_string()).await;
    }

    async fn bump(&self, key: String) {
        let inner = Arc::clone(&self.inner);
        let _ = tokio::spawn(async move { inner.bump(&key).await }).await;
    }
}

impl Inner {
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

    /// Moves `key`'s epoch and waits until every other registered replica holds it, or
    /// [`ACK_WAIT`] has passed (by then a replica that did not acknowledge has stopped
    /// serving from its cache).
    async fn bump(&self, key: &str) {
        let Some(mut redis) = self.link.connection() else {
            tracing::warn!(key,
                "cache epochs: Redis is not connected; other replicas may serve older reads until their TTL");
            return;
        };
        let id = self.next_ack.fetch_add(1, Ordering::Relaxed);
        let (acked, mut acks) = mpsc::unbounded_channel();
        lock(&self.state.waiting).insert(id, acked);
        let _waiting = Waiting {
            state: &self.state,
            id,
        };
        let number = lock(&self.state.view).number;
        let mut invocation = self.bump.key(key);
        invocation.key(LIVE).arg(CHANNEL).arg(&self.acks).arg(id);
        let moved = invocation.invoke_async::<(u64, Vec<String>)>(&mut redis);
        // Redis is given as long as the replicas: a late answer is still waited for.
        let (value, live) = match tokio::time::timeout(ACK_WAIT, moved).await {
            Ok(Ok(moved)) => moved,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, key,
                    "cache epochs: a write could not reach Redis; other replicas may serve older reads until their TTL");
                return;
            }
            Err(_) => {
                tracing::warn!(key,
                    "cache epochs: Redis did not answer in time; other replicas may serve older reads until their TTL");
                return;
            }
        };
        {
            // This replica's own reads see its write at once.
            let mut view = lock(&self.state.view);
            if view.number == number {
                view.learn(key, value);
            }
        }
        let mut missing: HashSet<String> = live.into_iter().collect();
        missing.remove(&self.replica);
        let all = async {
            while !missing.is_empty() {
                match acks.recv().await {
                    Some(replica) => {
                        missing.remove(&replica);
                    }
                    None => break,
                }
            }
        };
        if tokio::time::timeout(ACK_WAIT, all).await.is_err() {
            tracing::info!(key, ?missing,
                "cache epochs: not every replica acknowledged a write; those that did not have stopped serving cached reads");
        }
    }
}

/// Keeps a subscription to [`CHANNEL`] and to this replica's `acks` channel on `link`'s
/// Redis: records each pushed epoch and acknowledges it as `replica`, passes
/// acknowledgements of this replica's writes on, and extends the lease by each beat.
async fn subscribe(link: RedisLink, acks: String, replica: String, state: Arc<Pushed>) {
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
                lock(&state.view).renew(true);
                if warned {
                    tracing::info!("cache epochs: subscribed again; caching across replicas");
                    warned = false;
                }
                let mut messages = pubsub.into_on_message();
                loop {
                    let message = match tokio::time::timeout(SILENCE, messages.next()).await {
                        Ok(Some(message)) => message,
                        Ok(None) => break,
                        Err(_) => {
                            tracing::warn!(
                                "cache epochs: no message for {SILENCE:?}; subscribing again"
                            );
                            break;
                        }
                    };
                    let Ok(text) = message.get_payload::<String>() else {
                        continue;
                    };
                    if message.get_channel_name() == CHANNEL {
                        if let Some((ack_channel, id)) = apply_push(&state, &text) {
                            let ack = format!("ack {id} {replica}");
                            tokio::spawn(publish(link.clone(), ack_channel, ack));
                        }
                    } else {
                        apply_own(&state, &text);
                    }
                }
            }
            Ok(Err(e)) if !warned => {
                tracing::warn!(error = %e, "cache epochs: cannot subscribe; not caching until Redis answers");
                warned = true;
            }
            Ok(Err(_)) => {}
            Err(_) if !warned => {
                tracing::warn!("cache epochs: Redis did not take the subscription in time; not caching until it does");
                warned = true;
            }
            Err(_) => {}
        }
        let was_subscribed = {
            let mut view = lock(&state.view);
            let was = view.subscribed;
            view.renew(false);
            was
        };
        if was_subscribed {
            tracing::warn!("cache epochs: subscription lost; not caching until it is made again");
            warned = true;
        }
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

/// Passes on an acknowledgement (`ack <id> <replica>`) or extends the lease by a beat of
/// the current view (`beat <end> <view>`).
fn apply_own(state: &Pushed, text: &str) {
    let mut fields = text.splitn(3, ' ');
    match (fields.next(), fields.next(), fields.next()) {
        (Some("ack"), Some(id), Some(replica)) => {
            let waiting = id
                .parse()
                .ok()
                .and_then(|id: u64| lock(&state.waiting).get(&id).cloned());
            if let Some(waiting) = waiting {
                let _ = waiting.send(replica.to_string());
            }
        }
        (Some("beat"), Some(until), Some(number)) => {
            if let (Ok(until), Ok(number)) = (until.parse::<u64>(), number.parse::<u64>()) {
                let mut view = lock(&state.view);
                if view.subscribed && view.number == number {
                    view.lease_until = view.lease_until.max(until);
                }
            }
        }
        _ => {}
    }
}

/// Publishes `text` on `channel`.
async fn publish(link: RedisLink, channel: String, text: String) {
    let Some(mut redis) = link.connection() else {
        return;
    };
    let sent = redis.publish::<_, _, u32>(&channel, text);
    if let Ok(Err(e)) = tokio::time::timeout(link.timeout, sent).await {
        tracing::debug!(error = %e, "cache epochs: an acknowledgement was not sent");
    }
}

/// Every [`BEAT_EVERY`] while subscribed, registers this replica in [`LIVE`] and
/// publishes a beat to its own channel, carrying the end of the lease it grants once
/// received ([`LEASE`] after it was sent) and the view it was sent in.
async fn beat(inner: Arc<Inner>) {
    let script = redis::Script::new(BEAT);
    let mut every = tokio::time::interval(BEAT_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let (subscribed, number) = {
            let view = lock(&inner.state.view);
            (view.subscribed, view.number)
        };
        let Some(mut redis) = inner.link.connection().filter(|_| subscribed) else {
            continue;
        };
        let until = nanos(inner.clock.monotonic() + LEASE);
        let mut invocation = script.key(LIVE);
        invocation
            .arg(u64::try_from(LEASE.as_millis()).unwrap_or(u64::MAX))
            .arg(&inner.replica)
            .arg(&inner.acks)
            .arg(format!("beat {until} {number}"));
        let sent = invocation.invoke_async::<i64>(&mut redis);
        if let Ok(Err(e)) = tokio::time::timeout(inner.link.timeout, sent).await {
            tracing::debug!(error = %e, "cache epochs: a beat was not sent");
        }
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
    fn only_beats_of_the_current_subscription_extend_the_lease() {
        let state = Pushed::default();
        lock(&state.view).renew(true);
        let number = lock(&state.view).number;
        apply_own(&state, &format!("beat 500 {number}"));
        apply_own(&state, &format!("beat 300 {number}"));
        assert_eq!(lock(&state.view).lease_until, 500);
        // A beat sent before the subscription was made again is not trusted.
        lock(&state.view).renew(true);
        apply_own(&state, &format!("beat 900 {number}"));
        assert_eq!(lock(&state.view).lease_until, 0);
        assert!(lock(&state.view).known.is_empty());
    }

    #[test]
    fn acknowledgements_reach_their_write_by_replica() {
        let state = Pushed::default();
        let (acked, mut acks) = mpsc::unbounded_channel();
        lock(&state.waiting).insert(9, acked);
        apply_own(&state, "ack 9 replica-b");
        apply_own(&state, "ack 10 replica-c");
        assert_eq!(acks.try_recv().ok().as_deref(), Some("replica-b"));
        assert!(acks.try_recv().is_err());
        drop(Waiting {
            state: &state,
            id: 9,
        });
        assert!(lock(&state.waiting).is_empty());
    }
}
