//! Record types: what kinds of events the ledger accepts, and which attributes identify
//! the resource (primary key), its billable state (state key) and who pays (group key).

use serde::{Deserialize, Serialize};

/// A registered record type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordType {
    /// Type id, e.g. `instance.lifecycle`: 1-63 of `[a-z0-9._-]`.
    pub id: String,
    /// Attributes naming the resource (e.g. `instance_id`); every event must carry them.
    #[serde(default)]
    pub primary_key: Vec<String>,
    /// Attributes that make up the billable state (e.g. `state`, `instance_type`).
    #[serde(default)]
    pub state_key: Vec<String>,
    /// What usage is grouped by (e.g. `tenant`, `department`).
    #[serde(default)]
    pub group_key: Vec<String>,
}

/// Record type of one request, as gateways before request counting sent it (and still
/// accepted from any sender): the bill counts each as one request.
pub const API_REQUEST: &str = "api.request";
/// Record type of a gateway's request counts: `attributes.count` requests of one tenant,
/// department, route, method, status and identity source, answered in the minute that
/// starts at the event's time. The bill adds up the counts.
pub const API_REQUEST_COUNT: &str = "api.request.count";

/// The types every Skyport gateway emits, registered at start unless the configuration
/// registers them differently.
pub fn built_in() -> Vec<RecordType> {
    let strings = |items: &[&str]| items.iter().map(|s| s.to_string()).collect();
    vec![
        RecordType {
            id: API_REQUEST.into(),
            primary_key: vec![],
            state_key: strings(&["route", "status"]),
            group_key: strings(&["tenant", "department"]),
        },
        RecordType {
            id: "instance.lifecycle".into(),
            primary_key: strings(&["instance_id"]),
            state_key: strings(&["state", "instance_type", "vcpus", "memory_mib"]),
            group_key: strings(&["tenant", "department"]),
        },
        RecordType {
            id: API_REQUEST_COUNT.into(),
            primary_key: vec![],
            state_key: strings(&["route", "status"]),
            group_key: strings(&["tenant", "department"]),
        },
    ]
}

impl RecordType {
    /// Why this registration is invalid, if it is.
    pub fn problem(&self) -> Option<String> {
        let valid = |s: &str| {
            (1..=63).contains(&s.len())
                && s.chars().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')
                })
        };
        if !valid(&self.id) {
            return Some(format!(
                "record type id '{}': use 1-63 of [a-z0-9._-]",
                self.id
            ));
        }
        let keys = self
            .primary_key
            .iter()
            .chain(&self.state_key)
            .chain(&self.group_key);
        keys.filter(|k| k.is_empty() || k.len() > 63)
            .map(|k| format!("record type {}: bad attribute name '{k}'", self.id))
            .next()
    }
}
