//! The providers' service level, per provider and region and calendar month:
//! availability (the share of observed minutes in which the provider was healthy by its
//! probes and did not fail every call), error rate, and p50/p99 latency of its ops,
//! against the availability target of `[sla]`.
//!
//! - [`SlaRecorder`] counts every instance op's outcome and latency and every health
//!   probe in per-minute samples, in memory, and writes each minute once it has passed
//!   ([`SlaStore::insert`]): one row per minute, provider, region and replica.
//! - [`SlaService`] reads a month's samples back, adds up the replicas' ([`report`]),
//!   and publishes `sla.breach` once per provider, region and month when availability
//!   falls below the target.

use async_trait::async_trait;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use skyport_core::error::GatewayError;

#[cfg(any(test, feature = "testkit"))]
pub mod conformance;
#[cfg(any(test, feature = "testkit"))]
pub mod memory;
mod recorder;
mod report;
mod service;
#[cfg(test)]
mod tests;

pub use recorder::{provider_failed, SlaRecorder};
pub use report::{report, SiteReport, SlaReport};
pub use service::SlaService;

/// Upper bounds (milliseconds) of the latency buckets; one more bucket holds the rest.
pub const LATENCY_BOUNDS_MS: [u64; 16] = [
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 30_000, 60_000,
];

/// What one replica saw of one provider region in one minute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinuteSample {
    /// The provider instance.
    pub provider: String,
    /// Its region.
    pub region: String,
    /// The minute's first instant (RFC 3339, milliseconds).
    pub minute: String,
    /// The replica that saw it.
    pub replica: String,
    /// Ops called.
    pub calls: u64,
    /// Ops the provider failed (an upstream error, a timeout, the provider unavailable,
    /// a broken answer); refusals of bad input or of the instance's state are not its
    /// failures.
    pub errors: u64,
    /// Health probes.
    pub probes: u64,
    /// Health probes that found it unhealthy.
    pub unhealthy_probes: u64,
    /// Calls per latency bucket ([`LATENCY_BOUNDS_MS`], then the rest).
    pub latency: Vec<u64>,
}

impl MinuteSample {
    /// An empty sample.
    pub fn new(provider: &str, region: &str, minute: String, replica: &str) -> Self {
        Self {
            provider: provider.into(),
            region: region.into(),
            minute,
            replica: replica.into(),
            calls: 0,
            errors: 0,
            probes: 0,
            unhealthy_probes: 0,
            latency: vec![0; LATENCY_BOUNDS_MS.len() + 1],
        }
    }

    /// Adds `other`'s counts (another replica's view of the same minute).
    pub fn add(&mut self, other: &MinuteSample) {
        self.calls += other.calls;
        self.errors += other.errors;
        self.probes += other.probes;
        self.unhealthy_probes += other.unhealthy_probes;
        for (mine, theirs) in self.latency.iter_mut().zip(&other.latency) {
            *mine += theirs;
        }
    }

    /// Whether the provider was available in this minute: no probe found it unhealthy,
    /// and it did not fail every call it got.
    pub fn available(&self) -> bool {
        self.unhealthy_probes == 0 && (self.calls == 0 || self.errors < self.calls)
    }

    /// The sample as the stores keep it: one JSON text.
    pub fn to_record(&self) -> String {
        serde_json::to_string(self).expect("a sample serialises")
    }

    /// A sample read back from [`MinuteSample::to_record`]'s text.
    pub fn from_record(text: &str) -> Result<Self, GatewayError> {
        serde_json::from_str(text).map_err(GatewayError::internal)
    }
}

/// Where minute samples are kept.
#[async_trait]
pub trait SlaStore: Send + Sync {
    /// Adds `samples` (each minute of each replica is written once).
    async fn insert(&self, samples: &[MinuteSample]) -> Result<(), GatewayError>;

    /// Every sample of minutes in `[from, to)` (RFC 3339, milliseconds).
    async fn between(&self, from: &str, to: &str) -> Result<Vec<MinuteSample>, GatewayError>;
}

/// `value` as a percentage of `whole`, to three decimals (`None` when `whole` is 0).
fn percent(value: u64, whole: u64) -> Option<Decimal> {
    (whole > 0)
        .then(|| (Decimal::from(value) * Decimal::ONE_HUNDRED / Decimal::from(whole)).round_dp(3))
}
