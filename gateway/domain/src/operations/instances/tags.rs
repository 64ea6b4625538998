//! What an instance's tags may be, on both front doors alike (EC2's rules): at most
//! [`MAX_TAGS`], keys of 1 to 128 characters and values of at most 256, both text without
//! control characters, values strings, and no key in the `aws:` or `skyport:` namespaces
//! (the clouds' and Skyport's own) but the tags Skyport lets callers set
//! ([`CALLER_SKYPORT_TAGS`]).

use serde_json::{Map, Value};
use skyport_core::error::GatewayError;

/// Most tags an instance may carry (as on EC2).
pub const MAX_TAGS: usize = 50;
/// Longest tag key, in characters (as on EC2).
pub const MAX_KEY_CHARS: usize = 128;
/// Longest tag value, in characters (as on EC2).
pub const MAX_VALUE_CHARS: usize = 256;
/// The `skyport:` tags a caller may set: `skyport:offering` orders an offering through
/// EC2's `RunInstances` and stays on the instance as what was ordered.
pub const CALLER_SKYPORT_TAGS: &[&str] = &["skyport:offering"];

/// Checks `tags`; the first rule broken, naming the tag.
pub fn check(tags: &Map<String, Value>) -> Result<(), GatewayError> {
    if tags.len() > MAX_TAGS {
        return Err(GatewayError::invalid(format!(
            "{} tags given; an instance carries at most {MAX_TAGS} tags",
            tags.len()
        )));
    }
    for (key, value) in tags {
        let shown: String = key.chars().take(40).collect();
        let keys = key.chars().count();
        if keys == 0 || keys > MAX_KEY_CHARS {
            return Err(GatewayError::invalid(format!(
                "tag key '{shown}' has {keys} characters; keys have 1 to {MAX_KEY_CHARS}"
            )));
        }
        if key.chars().any(char::is_control) {
            return Err(GatewayError::invalid(format!(
                "tag key '{}' holds a control character",
                shown.escape_default()
            )));
        }
        let lower = key.to_ascii_lowercase();
        if lower.starts_with("aws:")
            || (lower.starts_with("skyport:") && !CALLER_SKYPORT_TAGS.contains(&key.as_str()))
        {
            return Err(GatewayError::invalid(format!(
                "tag key '{shown}' is in a reserved namespace (aws:, skyport:)"
            )));
        }
        let Value::String(value) = value else {
            return Err(GatewayError::invalid(format!(
                "tag '{shown}' must have a string value"
            )));
        };
        let chars = value.chars().count();
        if chars > MAX_VALUE_CHARS {
            return Err(GatewayError::invalid(format!(
                "tag '{shown}' has a value of {chars} characters; values have at most {MAX_VALUE_CHARS}"
            )));
        }
        if value.chars().any(char::is_control) {
            return Err(GatewayError::invalid(format!(
                "the value of tag '{shown}' holds a control character"
            )));
        }
    }
    Ok(())
}

/// Checks an instance's name: a tag value by another name (EC2 keeps it as the `Name`
/// tag), so the same rules hold.
pub fn check_name(name: Option<&str>) -> Result<(), GatewayError> {
    let Some(name) = name else { return Ok(()) };
    let chars = name.chars().count();
    if chars > MAX_VALUE_CHARS || name.chars().any(char::is_control) {
        return Err(GatewayError::invalid(format!(
            "an instance name has at most {MAX_VALUE_CHARS} characters and no control characters"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn tags(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn ec2s_tag_rules_hold_and_each_refusal_names_its_tag() {
        assert!(check(&tags(json!({"env": "dev", "Name": "", "ü": "ok"}))).is_ok());
        assert!(check(&tags(json!({"skyport:offering": "dev-vm"}))).is_ok());
        let many: Map<String, Value> = (0..51).map(|i| (format!("k{i}"), json!("v"))).collect();
        for (given, says) in [
            (many, "at most 50 tags"),
            (tags(json!({"": "v"})), "keys have 1 to 128"),
            (tags(json!({"k".repeat(129): "v"})), "keys have 1 to 128"),
            (tags(json!({"a\u{0}b": "v"})), "control character"),
            (tags(json!({"env": "line\nbreak"})), "control character"),
            (
                tags(json!({"aws:cloudformation": "v"})),
                "reserved namespace",
            ),
            (tags(json!({"Skyport:id": "v"})), "reserved namespace"),
            (tags(json!({"env": {"nested": true}})), "string value"),
            (tags(json!({"env": 3})), "string value"),
            (tags(json!({"env": "v".repeat(257)})), "at most 256"),
        ] {
            let refused = check(&given).unwrap_err();
            assert!(refused.public.contains(says), "{}: {says}", refused.public);
        }
        assert!(check_name(Some("web-1")).is_ok() && check_name(None).is_ok());
        assert!(check_name(Some("a\u{7}")).is_err());
        assert!(check_name(Some(&"n".repeat(257))).is_err());
    }
}
