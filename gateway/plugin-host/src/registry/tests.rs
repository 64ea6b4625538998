//! Unit tests of the registry.

use skyport_plugin_api::PluginError;

use super::calls::map_plugin_error;
use super::state_dir::searchable_by;
use super::*;

#[test]
fn a_directory_is_searchable_by_owner_group_or_others_as_its_mode_says() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("skyport-searchable-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let set = |mode| std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode));
    set(0o700).unwrap();
    // Owned by root here: another uid in another group needs the others' bit.
    assert_eq!(searchable_by(&dir, 65534, 65534), Err(0o700));
    assert_eq!(searchable_by(&dir, 0, 0), Ok(()));
    set(0o711).unwrap();
    assert_eq!(searchable_by(&dir, 65534, 65534), Ok(()));
    set(0o750).unwrap();
    assert_eq!(searchable_by(&dir, 65534, 0), Ok(()), "group");
    assert_eq!(searchable_by(&dir, 65534, 65534), Err(0o750));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn plugin_errors_map_to_gateway_kinds_keeping_the_cause_for_the_log() {
    let cases = [
        (
            error_code::INVALID_INPUT,
            ErrorKind::InvalidInput,
            "bad size",
        ),
        (error_code::NOT_FOUND, ErrorKind::NotFound, "bad size"),
        (error_code::CONFLICT, ErrorKind::Conflict, "bad size"),
        (error_code::UNAVAILABLE, ErrorKind::Unavailable, "bad size"),
        (
            error_code::THROTTLED,
            ErrorKind::Unavailable,
            "is throttling",
        ),
        (error_code::TIMEOUT, ErrorKind::Timeout, "timed out"),
        (
            error_code::UNSUPPORTED_OP,
            ErrorKind::NotImplemented,
            "does not support",
        ),
        (
            error_code::PANICKED,
            ErrorKind::Internal,
            "marked unhealthy",
        ),
        ("SOMETHING_NEW", ErrorKind::Upstream, "failed while serving"),
    ];
    for (code, kind, shown) in cases {
        let mapped = map_plugin_error(
            "vmm",
            "instance.create",
            &PluginError::new(code, "bad size"),
        );
        assert_eq!(mapped.kind, kind, "{code}");
        assert!(mapped.public.contains(shown), "{code}: {}", mapped.public);
        assert!(
            mapped.cause.as_deref().unwrap().starts_with("vmm: "),
            "{code}"
        );
    }
    let internal = map_plugin_error("vmm", "x", &PluginError::new("OOPS", "secret path /etc"));
    assert!(!internal.public.contains("secret"), "{}", internal.public);
}

#[test]
fn plugin_configuration_is_checked_against_its_schema_naming_the_key() {
    let schema = serde_json::json!({
        "type": "object",
        "properties": {"region": {"type": "string"}},
        "required": ["region"],
        "additionalProperties": false
    });
    assert!(validate_config(&schema, &serde_json::json!({"region": "r1"})).is_ok());
    let wrong = validate_config(&schema, &serde_json::json!({"region": 7})).unwrap_err();
    assert!(wrong.contains("config.region"), "{wrong}");
    let extra = validate_config(&schema, &serde_json::json!({"region": "r", "x": 1}));
    assert!(extra.unwrap_err().starts_with("invalid config: config:"));
}
