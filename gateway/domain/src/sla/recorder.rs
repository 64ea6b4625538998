//! Counting provider ops and probes per minute, in memory, and writing each minute once
//! it has passed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use skyport_core::clock::SharedClock;
use skyport_core::error::{ErrorKind, GatewayError};
use skyport_core::ids::rfc3339_millis;

use super::{MinuteSample, SlaStore, LATENCY_BOUNDS_MS};

/// Whether an error of `kind` from a provider op is the provider's failure (rather than
/// a refusal of what was asked).
pub fn provider_failed(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::Upstream | ErrorKind::Timeout | ErrorKind::Unavailable | ErrorKind::Internal
    )
}

/// Per-minute samples of one replica, written to a store once each minute has passed.
pub struct SlaRecorder {
    store: Arc<dyn SlaStore>,
    replica: String,
    clock: SharedClock,
    /// Minutes not yet written, by (provider, region, minute number since the epoch).
    open: Mutex<HashMap<(String, String, u64), MinuteSample>>,
}

impl SlaRecorder {
    /// A recorder writing to `store` as `replica`.
    pub fn new(store: Arc<dyn SlaStore>, replica: String, clock: SharedClock) -> Self {
        Self {
            store,
            replica,
            clock,
            open: Mutex::new(HashMap::new()),
        }
    }

    /// The store it writes to.
    pub fn store(&self) -> &Arc<dyn SlaStore> {
        &self.store
    }

    fn minute_now(&self) -> u64 {
        self.clock
            .wall()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs()
            / 60
    }

    fn with_sample(&self, provider: &str, region: &str, f: impl FnOnce(&mut MinuteSample)) {
        let minute = self.minute_now();
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let sample = open
            .entry((provider.to_string(), region.to_string(), minute))
            .or_insert_with(|| {
                MinuteSample::new(
                    provider,
                    region,
                    rfc3339_millis(UNIX_EPOCH + Duration::from_secs(minute * 60)),
                    &self.replica,
                )
            });
        f(sample);
    }

    /// Counts one op on `provider`'s `region`: whether the provider failed it, and how
    /// long it took.
    pub fn record_call(&self, provider: &str, region: &str, failed: bool, took: Duration) {
        let ms = took.as_millis() as u64;
        let bucket = LATENCY_BOUNDS_MS
            .iter()
            .position(|bound| ms <= *bound)
            .unwrap_or(LATENCY_BOUNDS_MS.len());
        self.with_sample(provider, region, |s| {
            s.calls += 1;
            s.errors += u64::from(failed);
            s.latency[bucket] += 1;
        });
    }

    /// Counts one health probe of `provider`, for its `region`.
    pub fn record_probe(&self, provider: &str, region: &str, healthy: bool) {
        self.with_sample(provider, region, |s| {
            s.probes += 1;
            s.unhealthy_probes += u64::from(!healthy);
        });
    }

    /// The samples not written yet (this minute's among them).
    pub fn pending(&self) -> Vec<MinuteSample> {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.values().cloned().collect()
    }

    /// Writes the minutes that have passed (every minute when `everything`, at
    /// shutdown): how many samples. What fails to be written is kept for the next time.
    pub async fn flush(&self, everything: bool) -> Result<usize, GatewayError> {
        let now = self.minute_now();
        let done: Vec<((String, String, u64), MinuteSample)> = {
            let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
            let keys: Vec<_> = open
                .keys()
                .filter(|(_, _, minute)| everything || *minute < now)
                .cloned()
                .collect();
            keys.into_iter()
                .filter_map(|k| open.remove(&k).map(|s| (k, s)))
                .collect()
        };
        if done.is_empty() {
            return Ok(0);
        }
        let samples: Vec<MinuteSample> = done.iter().map(|(_, s)| s.clone()).collect();
        if let Err(e) = self.store.insert(&samples).await {
            let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
            for (key, sample) in done {
                open.entry(key)
                    .and_modify(|s| s.add(&sample))
                    .or_insert(sample);
            }
            return Err(e);
        }
        Ok(samples.len())
    }

    /// Flushes every `every` until the task is dropped.
    pub fn spawn(self: Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                if let Err(e) = self.flush(false).await {
                    tracing::warn!(error = %e.public, cause = ?e.cause, "writing SLA samples failed; kept for the next time");
                }
            }
        })
    }
}
