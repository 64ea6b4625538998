//! Identifiers and timestamps: Skyport's own resource ids, time-ordered event ids and the
//! RFC 3339 form every API and record uses.

use std::time::SystemTime;

/// A new random id: `prefix`, a dash and 17 hex digits (68 bits), e.g. `i-0123456789abcdef0`.
pub fn new_id(prefix: &str) -> String {
    format!(
        "{prefix}-{:017x}",
        rand::random::<u128>() & ((1u128 << 68) - 1)
    )
}

/// A time-ordered (v7) UUID for something that happened at `time`: 48 bits of Unix
/// milliseconds, then 74 random bits from the thread-local generator (no system call).
/// Ids that grow with time land at the end of the ledger's unique index instead of on a
/// random page of it, which keeps durable ingest fast as the ledger grows.
pub fn time_ordered_uuid(time: SystemTime) -> uuid::Uuid {
    let millis = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    uuid::Builder::from_unix_timestamp_millis(millis, &rand::random()).into_uuid()
}

/// RFC 3339 UTC with milliseconds, e.g. `2026-11-23T11:39:01.123Z`.
pub fn rfc3339_millis(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Whether `id` is `prefix`, a dash and 17 lower-case hex digits (the shape of
/// [`new_id`]'s ids).
pub fn has_id_shape(id: &str, prefix: &str) -> bool {
    id.len() == prefix.len() + 18
        && id.starts_with(prefix)
        && id.as_bytes()[prefix.len()] == b'-'
        && id[prefix.len() + 1..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn event_ids_are_unique_and_grow_with_time() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_433_941_123);
        let a = time_ordered_uuid(t);
        let b = time_ordered_uuid(t + Duration::from_millis(2));
        assert!(a.to_string() < b.to_string(), "{a} !< {b}");
        assert_eq!(a.get_version_num(), 7);
        assert_ne!(time_ordered_uuid(t), time_ordered_uuid(t));
    }

    #[test]
    fn rfc3339_formatting() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_433_941_123);
        assert_eq!(rfc3339_millis(t), "2026-11-23T11:39:01.123Z");
        assert_eq!(
            rfc3339_millis(SystemTime::UNIX_EPOCH),
            "1970-01-01T00:00:00.000Z"
        );
    }

    #[test]
    fn new_ids_have_their_shape() {
        for _ in 0..100 {
            let id = new_id("i");
            assert!(has_id_shape(&id, "i"), "{id}");
        }
        assert!(!has_id_shape("i-123", "i"));
        assert!(!has_id_shape("i-0123456789ABCDEF0", "i"));
        assert!(!has_id_shape("ix0123456789abcdef0", "i"));
    }
}
