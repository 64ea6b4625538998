//! Time, injected: the gateway's one clock abstraction, the same one plugins use
//! (`skyport_plugin_api::sdk::clock`). Everything in the gateway that reads the time (the
//! rate limiter, the read cache's TTLs, the verified-token cache, SigV4's date window,
//! timestamps and event times, plugin call deadlines) reads it from a [`Clock`] handed to
//! it at startup, so that tests can use a [`ManualClock`].
//!
//! `gateway/clippy.toml` refuses `SystemTime::now` and `Instant::now` in the gateway's
//! crates: a new reading of the time has to come through here.

pub use skyport_plugin_api::sdk::clock::{Clock, ManualClock, SharedClock, SystemClock};
