//! The provider contract: every op the gateway calls on a provider plugin, with its
//! parameters, its result, the errors it may answer and its deadline.
//!
//! A provider serves `health@1` and `regions@1` (see the parent module) and the ops below.
//! The gateway validates every result against these types: a result that does not parse
//! (for example a create without `id`) is refused with 502 naming the plugin and the op,
//! and nothing is recorded from it. A provider that does not serve every op in
//! [`PLACEMENT_OPS`] is warned about at load and is never chosen by placement.
//!
//! Errors (any op): `INVALID_INPUT` (bad params, unknown image or type), `NOT_FOUND` (no
//! such instance at the provider), `CONFLICT` (the instance's state does not allow the
//! op), `LIMIT_EXCEEDED`, `THROTTLED`, `UNAVAILABLE` (the backend cannot serve now).
//! Their messages are shown to tenants; any other code is logged and hidden.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `instance.create@1`: params [`CreateInstance`], result [`InstanceView`].
pub const INSTANCE_CREATE: &str = "instance.create";
/// `instance.get@1`: params [`InstanceRef`], result [`InstanceView`].
pub const INSTANCE_GET: &str = "instance.get";
/// `instance.start@1`: params [`InstanceRef`], result [`InstanceView`].
pub const INSTANCE_START: &str = "instance.start";
/// `instance.stop@1`: params [`InstanceRef`], result [`InstanceView`].
pub const INSTANCE_STOP: &str = "instance.stop";
/// `instance.reboot@1`: params [`InstanceRef`], result [`InstanceView`].
pub const INSTANCE_REBOOT: &str = "instance.reboot";
/// `instance.terminate@1`: params [`InstanceRef`], result [`InstanceView`]. Terminating
/// an instance the provider no longer has answers `NOT_FOUND`.
pub const INSTANCE_TERMINATE: &str = "instance.terminate";
/// `instance.resize@1` (a stopped instance): params [`ResizeInstance`], result
/// [`InstanceView`] or `{}`.
pub const INSTANCE_RESIZE: &str = "instance.resize";
/// `instance.console@1`: params [`ConsoleRequest`], result [`ConsoleOutput`].
pub const INSTANCE_CONSOLE: &str = "instance.console";
/// `images.list@1`: params `{}`, result `Vec<`[`ImageView`]`>`.
pub const IMAGES_LIST: &str = "images.list";
/// `inventory.list@1`: params `{}`, result `Vec<`[`InventoryItem`]`>`: every instance the
/// provider runs, including ones Skyport did not create.
pub const INVENTORY_LIST: &str = "inventory.list";
/// `instance.find@1` (since 1.3, optional): params [`FindInstance`], result
/// [`InstanceView`] or `null`: the instance a create with this idempotency key made, if
/// the provider has it. The gateway asks after a restart, for every create it had recorded
/// but not seen answered: the instance found is adopted, and a create that made nothing is
/// removed. Without this op such a create stays `pending` until an operator or the tenant
/// terminates it. Deadline [`LISTING_DEADLINE`].
pub const INSTANCE_FIND: &str = "instance.find";

/// The ops a provider must serve (`name@version`) to be a placement candidate.
pub const PLACEMENT_OPS: [&str; 6] = [
    "health@1",
    "regions@1",
    "instance.create@1",
    "instance.get@1",
    "instance.terminate@1",
    "images.list@1",
];

/// Deadline of every `instance.*` op.
pub const INSTANCE_DEADLINE: Duration = Duration::from_secs(60);
/// Deadline of `images.list`, `inventory.list` and `regions`.
pub const LISTING_DEADLINE: Duration = Duration::from_secs(30);

/// An instance's state, with EC2's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InstanceState {
    /// Being created or started.
    Pending,
    /// Running.
    Running,
    /// Being stopped.
    Stopping,
    /// Stopped; can be started again.
    Stopped,
    /// Being terminated.
    ShuttingDown,
    /// Gone.
    Terminated,
}

impl InstanceState {
    /// The EC2 name (`shutting-down`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
            Self::ShuttingDown => "shutting-down",
            Self::Terminated => "terminated",
        }
    }
}

/// Params of [`INSTANCE_CREATE`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateInstance {
    /// Skyport's id of the instance (`i-...`); tag the VM with it where the backend can.
    pub skyport_id: String,
    /// The same for every retry of one create: a provider that sees a key again answers
    /// the instance it created for it, never a second one.
    pub idempotency_key: String,
    /// Image name (one of `images.list`).
    pub image: String,
    /// Skyport instance type name.
    pub instance_type: String,
    /// Virtual CPUs of that type.
    pub vcpus: u32,
    /// Memory of that type, MiB.
    pub memory_mib: u32,
    /// The tenant's tags for the instance.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// OpenSSH public keys (`ssh-ed25519 AAAA... comment`) to authorise for the guest's
    /// login user at first boot (the key pair the caller named). Since 1.4.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ssh_public_keys: Vec<String>,
    /// User data for the guest's first boot, base64 (standard alphabet, padded), at most
    /// [`MAX_USER_DATA_BYTES`] once decoded: handed to the guest as cloud-init reads it
    /// (a NoCloud seed, a metadata service or the cloud's own `UserData`). Since 1.4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
}

/// Largest user data, decoded, a create may carry (EC2's limit).
pub const MAX_USER_DATA_BYTES: usize = 16 * 1024;

/// Params of [`INSTANCE_FIND`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindInstance {
    /// The idempotency key a create carried ([`CreateInstance::idempotency_key`]).
    pub idempotency_key: String,
}

/// Params naming one instance by the provider's id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRef {
    /// The provider's id of the instance (the `id` its create answered).
    pub id: String,
}

/// Params of [`INSTANCE_RESIZE`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResizeInstance {
    /// The provider's id.
    pub id: String,
    /// New Skyport instance type name.
    pub instance_type: String,
    /// Its virtual CPUs.
    pub vcpus: u32,
    /// Its memory, MiB.
    pub memory_mib: u32,
}

/// Params of [`INSTANCE_CONSOLE`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleRequest {
    /// The provider's id.
    pub id: String,
    /// At most this many bytes, from the end.
    pub tail_bytes: u64,
}

/// Result of [`INSTANCE_CONSOLE`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleOutput {
    /// The tail of the serial console, as text.
    pub output: String,
}

/// What a provider says of one instance: the result of every `instance.*` op but
/// console. Extra fields are allowed and ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceView {
    /// The provider's id of the instance: required, non-empty.
    pub id: String,
    /// Its state now.
    pub state: InstanceState,
    /// Where it can be reached, as far as the provider knows now (none before its
    /// addresses are assigned, nor once it is terminated). Since 1.4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<InstanceNetwork>,
}

/// An instance's addresses: what the provider (or its cloud) assigned. Every field is
/// optional; the gateway shows what is given and invents nothing. Since 1.4.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceNetwork {
    /// Its address on the region's private network (IPv4, dotted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_ip: Option<String>,
    /// Its public address, where it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_ip: Option<String>,
    /// The DNS name of its private address, where the provider has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_dns: Option<String>,
    /// The DNS name of its public address, where the provider has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_dns: Option<String>,
    /// The MAC address of its network interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// The availability zone it runs in (one of its region's `zones`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// `host:port` where the gateway's host reaches the guest's SSH server, when that is
    /// not port 22 of `private_ip` (a provider whose guests sit behind forwarded ports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_endpoint: Option<String>,
}

/// One image (item of [`IMAGES_LIST`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageView {
    /// Its name: required, non-empty.
    pub name: String,
    /// What the provider says of its disk (shown to operators).
    #[serde(default)]
    pub disk_template: serde_json::Value,
    /// Where it came from (shown to operators).
    #[serde(default)]
    pub source: serde_json::Value,
}

/// One instance the provider runs (item of [`INVENTORY_LIST`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryItem {
    /// The provider's id.
    pub id: String,
    /// Its state.
    pub state: InstanceState,
    /// The region it runs in, when the provider serves several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_view_without_an_id_or_with_an_unknown_state_does_not_parse() {
        let ok: InstanceView =
            serde_json::from_str(r#"{"id":"vm-1","state":"shutting-down","extra":1}"#).unwrap();
        assert_eq!(ok.state, InstanceState::ShuttingDown);
        assert_eq!(ok.state.as_str(), "shutting-down");
        assert!(serde_json::from_str::<InstanceView>(r#"{"state":"running"}"#).is_err());
        assert!(serde_json::from_str::<InstanceView>(r#"{"id":"x","state":"asleep"}"#).is_err());
    }

    #[test]
    fn create_params_carry_skyport_id_key_and_tags() {
        let params = CreateInstance {
            skyport_id: "i-0123".into(),
            idempotency_key: "k".into(),
            image: "skyport-tiny".into(),
            instance_type: "t1.small".into(),
            vcpus: 1,
            memory_mib: 256,
            tags: BTreeMap::from([("team".into(), "a".into())]),
            ssh_public_keys: Vec::new(),
            user_data: None,
        };
        let json = serde_json::to_value(&params).unwrap();
        assert_eq!(json["skyport_id"], "i-0123");
        assert_eq!(json["tags"]["team"], "a");
        let back: CreateInstance = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back, params);
        // A 1.3 plugin's parser sees nothing new when no key or user data is given.
        assert!(json.get("ssh_public_keys").is_none() && json.get("user_data").is_none());
    }

    #[test]
    fn a_view_carries_its_addresses_and_a_1_3_view_has_none() {
        let view: InstanceView = serde_json::from_str(
            r#"{"id":"vm-1","state":"running","network":{"private_ip":"10.213.0.10","zone":"local-1a"}}"#,
        )
        .unwrap();
        let network = view.network.unwrap();
        assert_eq!(network.private_ip.as_deref(), Some("10.213.0.10"));
        assert_eq!(network.public_ip, None);
        let old: InstanceView = serde_json::from_str(r#"{"id":"vm-1","state":"running"}"#).unwrap();
        assert_eq!(old.network, None);
    }
}
