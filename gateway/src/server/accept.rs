//! The accept loop's answer to failing accepts (out of descriptors, say): a growing pause
//! and one log line per run of failures, never a busy loop writing a line per failure.

use std::time::Duration;

/// Pauses after failed accepts, longer while they keep failing (out of descriptors, say),
/// and logs one line per run of failures rather than one per failure.
#[derive(Default)]
pub(crate) struct AcceptBackoff {
    failures: u32,
}

impl AcceptBackoff {
    /// Logs (the first of a run) and pauses after a failed accept.
    pub(crate) async fn failed(&mut self, error: &std::io::Error) {
        if self.failures == 0 {
            tracing::warn!(error = %error, "accept failed; backing off until accepts succeed again");
        }
        self.failures = self.failures.saturating_add(1);
        let pause =
            Duration::from_millis(10u64 << self.failures.min(7)).min(Duration::from_secs(1));
        tokio::time::sleep(pause).await;
    }

    /// Ends a run of failures.
    pub(crate) fn accepted(&mut self) {
        if self.failures > 0 {
            tracing::info!(failures = self.failures, "accepting again");
            self.failures = 0;
        }
    }
}
