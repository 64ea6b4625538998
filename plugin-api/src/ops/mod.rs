//! Well-known operation names and their schema-version-1 payloads.
//!
//! Operations are the extension point of the ABI: a new capability is a new name or a new
//! schema version here, never a new field in [`crate::abi`].

use serde::{Deserialize, Serialize};

/// `health` v1: every plugin answers it. Params: `{}`. Result: [`Health`].
pub const HEALTH: &str = "health";
/// `regions` v1: providers list the regions they serve. Params: `{}`. Result: `Vec<Region>`.
pub const REGIONS: &str = "regions";
/// `meter.batch` v1: metering plugins receive the gateway's tap. Params: [`MeterBatch`].
/// Result: `{"acknowledged": <count>}` once the batch is durable.
pub const METER_BATCH: &str = "meter.batch";

/// Result of [`HEALTH`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Health {
    /// Whether the plugin can serve requests now.
    pub healthy: bool,
    /// Why not, when unhealthy (e.g. `qemu-system-x86_64 not found; install qemu-system-x86`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What operators should know of how it serves, healthy or not: a fallback in use, a
    /// feature off (e.g. `user-mode networking: VMs cannot reach each other`). Since 1.4.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// A batch of metering events, in the order the gateway saw them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MeterBatch {
    /// Monotonic per gateway process; a retried batch keeps its sequence number.
    pub sequence: u64,
    /// The events; each carries a unique id so that retries count once.
    pub events: Vec<MeterEvent>,
}

/// One metering event.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MeterEvent {
    /// Globally unique event id (UUID).
    pub id: String,
    /// Record type, e.g. `api.request`.
    #[serde(rename = "type")]
    pub record_type: String,
    /// When it happened, RFC 3339 UTC.
    pub time: String,
    /// Tenant the event is billed to.
    pub tenant: String,
    /// Department inside the tenant, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    /// Type-specific attributes.
    pub attributes: serde_json::Value,
}

/// One region a provider serves (result item of [`REGIONS`]).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Region {
    /// Skyport region name, e.g. `local-1`.
    pub name: String,
    /// Availability zones in it.
    #[serde(default)]
    pub zones: Vec<String>,
    /// The region's private network (IPv4 CIDR, e.g. `10.213.0.0/24`), where instances
    /// get their private addresses: shown to EC2 callers as the region's default VPC.
    /// Since 1.4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr: Option<String>,
    /// The part of that network each zone's instances are in (shown as each zone's
    /// default subnet); a zone not listed uses the whole network. Since 1.4.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subnets: Vec<ZoneSubnet>,
}

/// One zone's part of its region's network (item of [`Region::subnets`]).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ZoneSubnet {
    /// The zone.
    pub zone: String,
    /// Its IPv4 CIDR, inside the region's.
    pub cidr: String,
}

pub mod provider;
