//! Minute samples in memory, for tests.

use std::sync::Mutex;

use async_trait::async_trait;
use skyport_core::error::GatewayError;

use super::{MinuteSample, SlaStore};

/// Samples in a list.
#[derive(Default)]
pub struct MemorySla {
    samples: Mutex<Vec<MinuteSample>>,
}

#[async_trait]
impl SlaStore for MemorySla {
    async fn insert(&self, samples: &[MinuteSample]) -> Result<(), GatewayError> {
        self.samples.lock().unwrap().extend_from_slice(samples);
        Ok(())
    }

    async fn between(&self, from: &str, to: &str) -> Result<Vec<MinuteSample>, GatewayError> {
        let samples = self.samples.lock().unwrap();
        Ok(samples
            .iter()
            .filter(|s| s.minute.as_str() >= from && s.minute.as_str() < to)
            .cloned()
            .collect())
    }
}
