//! Logging a failed request without letting its sender write the log: values a caller
//! controls (a token's key id, a parameter, a path) are cut to [`MAX_VALUE_CHARS`], and
//! failures the caller caused (4xx) are logged at most [`CLIENT_LINES_PER_SECOND`] a second,
//! the lines left out counted in the next one. Failures of the gateway or its providers
//! (5xx) are always logged.

use std::borrow::Cow;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// The most characters of one caller-controlled value in a log line.
pub const MAX_VALUE_CHARS: usize = 256;
/// Lines a second for failures callers cause.
pub const CLIENT_LINES_PER_SECOND: u32 = 20;

static CLIENT_LINES: LazyLock<DefaultDirectRateLimiter> = LazyLock::new(|| {
    RateLimiter::direct(Quota::per_second(
        NonZeroU32::new(CLIENT_LINES_PER_SECOND).expect("non-zero"),
    ))
});
static LEFT_OUT: AtomicU64 = AtomicU64::new(0);

/// `value`, cut to [`MAX_VALUE_CHARS`] characters (saying how long it was).
pub fn clip(value: &str) -> Cow<'_, str> {
    match value.char_indices().nth(MAX_VALUE_CHARS) {
        None => Cow::Borrowed(value),
        Some((cut, _)) => Cow::Owned(format!(
            "{}... ({} bytes in all)",
            &value[..cut],
            value.len()
        )),
    }
}

/// Logs a failed request: `status` its HTTP status, `code` its error code, `message`
/// what the caller was told and `cause` what only the log sees.
pub fn failed(
    request_id: &str,
    status: http::StatusCode,
    code: &str,
    message: &str,
    cause: Option<&str>,
) {
    let (message, cause) = (clip(message), cause.map(clip));
    // EC2 answers throttling with 503: the caller's doing, not the gateway's.
    let caller_caused = !status.is_server_error() || code == "RequestLimitExceeded";
    if !caller_caused {
        tracing::warn!(request_id = %clip(request_id), status = status.as_u16(), code, error = %message, cause = ?cause, "request failed");
        return;
    }
    if CLIENT_LINES.check().is_err() {
        LEFT_OUT.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let left_out = LEFT_OUT.swap(0, Ordering::Relaxed);
    tracing::info!(request_id = %clip(request_id), status = status.as_u16(), code, error = %message, cause = ?cause, similar_lines_left_out = left_out, "request refused");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_are_cut_on_a_character_boundary_saying_how_long_they_were() {
        assert_eq!(clip("kid-1"), "kid-1");
        let long = "é".repeat(10_000);
        let clipped = clip(&long);
        assert!(clipped.starts_with(&"é".repeat(MAX_VALUE_CHARS)));
        assert!(clipped.ends_with("... (20000 bytes in all)"), "{clipped}");
        assert!(clipped.len() < 600);
    }
}
