//! Skyport's instance types, shared by every provider.

use serde::Serialize;

/// One instance type.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct InstanceType {
    /// Name, e.g. `sp.small`.
    pub name: &'static str,
    /// Virtual CPUs.
    pub vcpus: u32,
    /// Memory in MiB.
    pub memory_mib: u32,
}

/// Every instance type, smallest first.
pub const INSTANCE_TYPES: [InstanceType; 4] = [
    InstanceType {
        name: "sp.micro",
        vcpus: 1,
        memory_mib: 128,
    },
    InstanceType {
        name: "sp.small",
        vcpus: 1,
        memory_mib: 256,
    },
    InstanceType {
        name: "sp.medium",
        vcpus: 2,
        memory_mib: 512,
    },
    InstanceType {
        name: "sp.large",
        vcpus: 2,
        memory_mib: 1024,
    },
];

/// The instance type named `name`.
pub fn instance_type(name: &str) -> Option<InstanceType> {
    INSTANCE_TYPES.iter().copied().find(|t| t.name == name)
}

/// Names of all instance types, for error messages.
pub fn instance_type_names() -> Vec<&'static str> {
    INSTANCE_TYPES.iter().map(|t| t.name).collect()
}

/// The instance type `name`, or 400 naming the valid choices.
pub fn parse_instance_type(name: &str) -> Result<InstanceType, skyport_core::error::GatewayError> {
    instance_type(name).ok_or_else(|| {
        skyport_core::error::GatewayError::invalid(format!(
            "unknown instance type '{name}'; choose one of {}",
            instance_type_names().join(", ")
        ))
    })
}
