//! What the ledger refuses: events of unregistered types, malformed events, timestamps too
//! far in the future, negative or absurd quantities. A refusal names the rule it broke.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use skyport_plugin_api::ops::MeterEvent;

use crate::record_types::{RecordType, API_REQUEST_COUNT};

/// Bounds an event must respect.
#[derive(Debug, Clone)]
pub struct Limits {
    /// How far in the future an event's time may lie (clock skew between hosts).
    pub max_future_skew: Duration,
    /// The largest quantity any numeric attribute may carry.
    pub max_quantity: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_future_skew: Duration::from_secs(300),
            max_quantity: 1e12,
        }
    }
}

/// Checks `event` against the registered `types`; returns its time normalised to RFC 3339
/// UTC with milliseconds (whatever offset it was sent with), or why it is refused.
pub fn check_event(
    event: &MeterEvent,
    types: &BTreeMap<String, RecordType>,
    limits: &Limits,
    now: SystemTime,
) -> Result<String, String> {
    if event.id.is_empty() || event.id.len() > 128 {
        return Err("malformed: the event id must be 1-128 characters".into());
    }
    let Some(record_type) = types.get(&event.record_type) else {
        return Err(format!(
            "unregistered record type '{}'; register it first",
            event.record_type
        ));
    };
    if event.tenant.is_empty() {
        return Err("malformed: no tenant".into());
    }
    // Any RFC 3339 offset is accepted; the ledger stores UTC.
    let time: SystemTime =
        time::OffsetDateTime::parse(&event.time, &time::format_description::well_known::Rfc3339)
            .map_err(|e| format!("malformed: time '{}' is not RFC 3339 ({e})", event.time))?
            .into();
    if let Ok(ahead) = time.duration_since(now) {
        if ahead > limits.max_future_skew {
            return Err(format!(
                "time {} is {} s in the future (at most {} s of clock skew is accepted)",
                event.time,
                ahead.as_secs(),
                limits.max_future_skew.as_secs()
            ));
        }
    }
    let Some(attributes) = event.attributes.as_object() else {
        return Err("malformed: attributes must be an object".into());
    };
    for key in &record_type.primary_key {
        if attributes.get(key).is_none_or(serde_json::Value::is_null) {
            return Err(format!(
                "malformed: {} events need the primary-key attribute '{key}'",
                record_type.id
            ));
        }
    }
    for (key, value) in attributes {
        if let Some(n) = value.as_f64() {
            if n < 0.0 || n > limits.max_quantity || !n.is_finite() {
                return Err(format!("quantity {key} = {n} is negative or absurd"));
            }
        }
    }
    if event.record_type == API_REQUEST_COUNT
        && attributes
            .get("count")
            .and_then(serde_json::Value::as_u64)
            .is_none_or(|n| n < 1)
    {
        return Err(format!(
            "malformed: {API_REQUEST_COUNT} events need a whole 'count' of at least 1"
        ));
    }
    Ok(humantime::format_rfc3339_millis(time).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record_types::built_in;

    fn event(time: &str, attributes: serde_json::Value) -> MeterEvent {
        MeterEvent {
            id: "e-1".into(),
            record_type: "instance.lifecycle".into(),
            time: time.into(),
            tenant: "demo".into(),
            department: None,
            attributes,
        }
    }

    #[test]
    fn refusals_name_the_rule() {
        let types: BTreeMap<_, _> = built_in().into_iter().map(|t| (t.id.clone(), t)).collect();
        let now = humantime::parse_rfc3339("2026-11-23T12:00:00Z").unwrap();
        let limits = Limits::default();
        let ok = event(
            "2026-11-23T12:04:00Z",
            serde_json::json!({"instance_id": "i-1", "vcpus": 1}),
        );
        assert_eq!(
            check_event(&ok, &types, &limits, now).unwrap(),
            "2026-11-23T12:04:00.000Z"
        );
        let cases = [
            (
                event(
                    "2026-11-23T12:06:00Z",
                    serde_json::json!({"instance_id": "i-1"}),
                ),
                "in the future",
            ),
            (
                event("yesterday", serde_json::json!({"instance_id": "i-1"})),
                "not RFC 3339",
            ),
            (
                event(
                    "2026-11-23T14:06:00+02:00",
                    serde_json::json!({"instance_id": "i-1"}),
                ),
                "in the future",
            ),
            (
                event("2026-11-23T12:00:00Z", serde_json::json!({"vcpus": 1})),
                "primary-key attribute 'instance_id'",
            ),
            (
                event(
                    "2026-11-23T12:00:00Z",
                    serde_json::json!({"instance_id": "i-1", "vcpus": -1}),
                ),
                "negative or absurd",
            ),
            (
                event(
                    "2026-11-23T12:00:00Z",
                    serde_json::json!({"instance_id": "i-1", "memory_mib": 1e15}),
                ),
                "negative or absurd",
            ),
            (
                event("2026-11-23T12:00:00Z", serde_json::json!([1])),
                "must be an object",
            ),
        ];
        let counted = |count: serde_json::Value| MeterEvent {
            record_type: API_REQUEST_COUNT.into(),
            attributes: serde_json::json!({"count": count, "route": "/v1/whoami"}),
            ..event("2026-11-23T12:00:00Z", serde_json::json!({}))
        };
        assert!(check_event(&counted(serde_json::json!(3)), &types, &limits, now).is_ok());
        let cases = cases.into_iter().chain([
            (counted(serde_json::json!(0)), "whole 'count' of at least 1"),
            (
                counted(serde_json::json!(1.5)),
                "whole 'count' of at least 1",
            ),
            (
                counted(serde_json::json!("2")),
                "whole 'count' of at least 1",
            ),
            (
                counted(serde_json::Value::Null),
                "whole 'count' of at least 1",
            ),
        ]);
        for (e, needle) in cases {
            let reason = check_event(&e, &types, &limits, now).unwrap_err();
            assert!(reason.contains(needle), "{reason} lacks {needle}");
        }
        // METERING.md case 10: other offsets are stored as UTC, to the millisecond.
        let offset = event(
            "2026-11-23T10:30:00.5-01:30",
            serde_json::json!({"instance_id": "i-1"}),
        );
        assert_eq!(
            check_event(&offset, &types, &limits, now).unwrap(),
            "2026-11-23T12:00:00.500Z"
        );
        let unknown = MeterEvent {
            record_type: "storage.volume".into(),
            ..ok
        };
        assert!(check_event(&unknown, &types, &limits, now)
            .unwrap_err()
            .contains("unregistered record type 'storage.volume'"));
    }
}
