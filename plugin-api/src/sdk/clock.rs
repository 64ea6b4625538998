//! Time, injected. The gateway reads every time it uses (rate limits, cache
//! TTLs, token expiry, SigV4's date window, timestamps, event times, call deadlines) from a
//! [`Clock`], and so can a plugin: hold a [`SharedClock`], use a [`SystemClock`] in
//! production and a [`ManualClock`] in tests, which moves only when told, so that tests of
//! expiry, windows and time slices run in microseconds instead of sleeping.
//!
//! Timers (`tokio::time::sleep`, `interval`) stay tokio's: tests pause and advance them
//! with tokio's own test clock.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// A source of time.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// Wall-clock time: timestamps, token `exp`, SigV4 dates, billing periods.
    fn wall(&self) -> SystemTime;

    /// Monotonic time since a fixed origin of this clock: durations, deadlines, TTLs and
    /// rate-limit buckets. Never goes back.
    fn monotonic(&self) -> Duration;
}

/// A clock shared by every part of one gateway.
pub type SharedClock = Arc<dyn Clock>;

/// The machine's clocks.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    origin: Instant,
}

impl SystemClock {
    /// The system clock, its monotonic origin now.
    #[allow(clippy::disallowed_methods)] // the one place that reads the machine's clocks
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
        }
    }

    /// A [`SystemClock`] behind a [`SharedClock`].
    pub fn shared() -> SharedClock {
        Arc::new(Self::new())
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the one place that reads the machine's clocks
    fn wall(&self) -> SystemTime {
        SystemTime::now()
    }

    #[allow(clippy::disallowed_methods)] // the one place that reads the machine's clocks
    fn monotonic(&self) -> Duration {
        Instant::now().saturating_duration_since(self.origin)
    }
}

/// A clock that moves only when told ([`ManualClock::advance`]); wall and monotonic time
/// move together.
#[derive(Debug)]
pub struct ManualClock {
    wall: Mutex<SystemTime>,
    monotonic_nanos: AtomicU64,
}

impl ManualClock {
    /// A clock standing at wall time `wall`, monotonic time zero.
    pub fn at(wall: SystemTime) -> Arc<Self> {
        Arc::new(Self {
            wall: Mutex::new(wall),
            monotonic_nanos: AtomicU64::new(0),
        })
    }

    /// A clock standing at `unix_secs` seconds after the Unix epoch.
    pub fn at_unix(unix_secs: u64) -> Arc<Self> {
        Self::at(SystemTime::UNIX_EPOCH + Duration::from_secs(unix_secs))
    }

    /// Moves both times forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut wall = self.wall.lock().unwrap_or_else(|p| p.into_inner());
        *wall += by;
        self.monotonic_nanos
            .fetch_add(by.as_nanos() as u64, Ordering::SeqCst);
    }

    /// Sets the wall time alone (a clock step, as NTP may make); monotonic time stays.
    pub fn set_wall(&self, wall: SystemTime) {
        *self.wall.lock().unwrap_or_else(|p| p.into_inner()) = wall;
    }
}

impl Clock for ManualClock {
    fn wall(&self) -> SystemTime {
        *self.wall.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn monotonic(&self) -> Duration {
        Duration::from_nanos(self.monotonic_nanos.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let clock = ManualClock::at_unix(1_795_433_941);
        let (wall, mono) = (clock.wall(), clock.monotonic());
        assert_eq!(clock.wall(), wall);
        clock.advance(Duration::from_millis(1500));
        assert_eq!(clock.wall(), wall + Duration::from_millis(1500));
        assert_eq!(clock.monotonic(), mono + Duration::from_millis(1500));
        clock.set_wall(SystemTime::UNIX_EPOCH);
        assert_eq!(clock.monotonic(), mono + Duration::from_millis(1500));
    }

    #[test]
    fn the_system_clocks_monotonic_time_never_goes_back() {
        let clock = SystemClock::new();
        let a = clock.monotonic();
        assert!(clock.monotonic() >= a);
    }
}
