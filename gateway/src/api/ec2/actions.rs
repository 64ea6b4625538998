//! Every EC2 action Skyport serves: one line each, with its metrics route, whether it
//! writes (the tenant's cached reads are invalidated after it) and how long its answer
//! is cached. Adding an action is one line here and its function.

use std::time::Duration;

use super::{
    addresses, attributes, describe, instances, interfaces, key_pairs, security_groups, tags,
    volumes, vpcs, ActionFn,
};

/// One action.
pub(crate) struct Action {
    /// Its `Action` parameter.
    pub(crate) name: &'static str,
    /// Metrics and log route: `ec2:<Action>`.
    pub(crate) route: &'static str,
    /// Whether it changes state.
    pub(crate) writes: bool,
    /// Cached for this long (reads only).
    pub(crate) cache_ttl: Option<Duration>,
    /// What it does.
    pub(crate) run: ActionFn,
}

const fn read(name: &'static str, route: &'static str, ttl_secs: u64, run: ActionFn) -> Action {
    Action {
        name,
        route,
        writes: false,
        cache_ttl: Some(Duration::from_secs(ttl_secs)),
        run,
    }
}

const fn uncached(name: &'static str, route: &'static str, run: ActionFn) -> Action {
    Action {
        name,
        route,
        writes: false,
        cache_ttl: None,
        run,
    }
}

const fn write(name: &'static str, route: &'static str, run: ActionFn) -> Action {
    Action {
        name,
        route,
        writes: true,
        cache_ttl: None,
        run,
    }
}

macro_rules! a {
    ($action:path) => {
        |call| Box::pin($action(call))
    };
}

/// Every action.
static ACTIONS: &[Action] = &[
    write(
        "RunInstances",
        "ec2:RunInstances",
        a!(instances::run_instances),
    ),
    read(
        "DescribeInstances",
        "ec2:DescribeInstances",
        2,
        a!(describe::instances),
    ),
    read(
        "DescribeInstanceStatus",
        "ec2:DescribeInstanceStatus",
        2,
        a!(describe::instance_status),
    ),
    write(
        "StartInstances",
        "ec2:StartInstances",
        a!(instances::start_instances),
    ),
    write(
        "StopInstances",
        "ec2:StopInstances",
        a!(instances::stop_instances),
    ),
    write(
        "RebootInstances",
        "ec2:RebootInstances",
        a!(instances::reboot_instances),
    ),
    write(
        "TerminateInstances",
        "ec2:TerminateInstances",
        a!(instances::terminate_instances),
    ),
    write(
        "ModifyInstanceAttribute",
        "ec2:ModifyInstanceAttribute",
        a!(instances::modify_instance_attribute),
    ),
    // Console output changes as the guest writes; never cached.
    uncached(
        "GetConsoleOutput",
        "ec2:GetConsoleOutput",
        a!(instances::get_console_output),
    ),
    read(
        "DescribeImages",
        "ec2:DescribeImages",
        10,
        a!(describe::images),
    ),
    read(
        "DescribeInstanceTypes",
        "ec2:DescribeInstanceTypes",
        60,
        a!(describe::instance_types),
    ),
    read(
        "DescribeRegions",
        "ec2:DescribeRegions",
        60,
        a!(describe::regions),
    ),
    read(
        "DescribeAvailabilityZones",
        "ec2:DescribeAvailabilityZones",
        60,
        a!(describe::availability_zones),
    ),
    read(
        "DescribeInstanceAttribute",
        "ec2:DescribeInstanceAttribute",
        2,
        a!(attributes::describe_instance_attribute),
    ),
    read(
        "DescribeSecurityGroups",
        "ec2:DescribeSecurityGroups",
        60,
        a!(security_groups::describe_security_groups),
    ),
    // Both follow the tenant's instances.
    read(
        "DescribeVolumes",
        "ec2:DescribeVolumes",
        2,
        a!(volumes::describe_volumes),
    ),
    read(
        "DescribeNetworkInterfaces",
        "ec2:DescribeNetworkInterfaces",
        2,
        a!(interfaces::describe_network_interfaces),
    ),
    read(
        "DescribeImageAttribute",
        "ec2:DescribeImageAttribute",
        10,
        a!(attributes::describe_image_attribute),
    ),
    read(
        "DescribeVpcAttribute",
        "ec2:DescribeVpcAttribute",
        60,
        a!(attributes::describe_vpc_attribute),
    ),
    read(
        "DescribeAddresses",
        "ec2:DescribeAddresses",
        60,
        a!(addresses::describe_addresses),
    ),
    read(
        "DescribeVpcs",
        "ec2:DescribeVpcs",
        60,
        a!(vpcs::describe_vpcs),
    ),
    // Available address counts follow the tenant's instances.
    read(
        "DescribeSubnets",
        "ec2:DescribeSubnets",
        2,
        a!(vpcs::describe_subnets),
    ),
    write("CreateTags", "ec2:CreateTags", a!(tags::create_tags)),
    write("DeleteTags", "ec2:DeleteTags", a!(tags::delete_tags)),
    read(
        "DescribeTags",
        "ec2:DescribeTags",
        2,
        a!(tags::describe_tags),
    ),
    write("CreateKeyPair", "ec2:CreateKeyPair", a!(key_pairs::create)),
    write("ImportKeyPair", "ec2:ImportKeyPair", a!(key_pairs::import)),
    read(
        "DescribeKeyPairs",
        "ec2:DescribeKeyPairs",
        2,
        a!(key_pairs::describe),
    ),
    write("DeleteKeyPair", "ec2:DeleteKeyPair", a!(key_pairs::delete)),
];

/// The actions sorted by name, searched by halves (every EC2 request looks its action up).
static BY_NAME: std::sync::LazyLock<Vec<&'static Action>> = std::sync::LazyLock::new(|| {
    let mut sorted: Vec<&'static Action> = ACTIONS.iter().collect();
    sorted.sort_unstable_by_key(|a| a.name);
    sorted
});

/// The action named `name`.
pub(crate) fn find(name: &str) -> Option<&'static Action> {
    BY_NAME
        .binary_search_by(|a| a.name.cmp(name))
        .ok()
        .map(|i| BY_NAME[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_is_found_by_its_name_and_only_by_it() {
        for action in ACTIONS {
            assert!(std::ptr::eq(find(action.name).unwrap(), action));
        }
        for name in [
            "",
            "describeregions",
            "DescribeRegion",
            "DescribeRegionsX",
            "Zzz",
        ] {
            assert!(find(name).is_none(), "{name}");
        }
    }

    #[test]
    fn every_action_is_routed_as_itself_and_only_reads_are_cached() {
        for action in ACTIONS {
            assert_eq!(action.route, format!("ec2:{}", action.name));
            assert!(
                !(action.writes && action.cache_ttl.is_some()),
                "{}",
                action.name
            );
            assert!(std::ptr::eq(find(action.name).unwrap(), action));
        }
        assert!(find("LaunchMissiles").is_none());
    }
}
