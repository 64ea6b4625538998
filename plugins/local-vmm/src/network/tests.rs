//! Unit tests of `network`.

use super::*;

#[test]
fn cidrs_are_checked_and_give_the_host_the_first_address() {
    let cidr = Cidr::parse("10.213.0.0/24").unwrap();
    assert_eq!(cidr.gateway(), Ipv4Addr::new(10, 213, 0, 1));
    assert_eq!(cidr.netmask(), Ipv4Addr::new(255, 255, 255, 0));
    assert_eq!(cidr.to_string(), "10.213.0.0/24");
    assert!(Cidr::parse("10.213.0.1/24")
        .unwrap_err()
        .contains("did you mean 10.213.0.0/24"));
    assert!(Cidr::parse("10.213.0.0/8").is_err());
    assert!(Cidr::parse("fd00::/64").is_err());
}

#[test]
fn addresses_are_the_lowest_free_and_never_the_hosts_or_broadcast() {
    let cidr = Cidr::parse("10.213.0.0/24").unwrap();
    let first = free_address(&cidr, &[]).unwrap();
    assert_eq!(first, Ipv4Addr::new(10, 213, 0, 10));
    let second = free_address(&cidr, &[first]).unwrap();
    assert_eq!(second, Ipv4Addr::new(10, 213, 0, 11));
    // A freed address is given again, with the same MAC.
    assert_eq!(free_address(&cidr, &[second]).unwrap(), first);
    assert_eq!(mac_for(first), "52:54:00:d5:00:0a");
    let small = Cidr::parse("10.0.0.0/29").unwrap();
    let all: Vec<Ipv4Addr> = small.vm_range().collect();
    assert_eq!(all.first(), Some(&Ipv4Addr::new(10, 0, 0, 2)));
    assert_eq!(all.last(), Some(&Ipv4Addr::new(10, 0, 0, 6)));
    assert_eq!(free_address(&small, &all), None);
}

#[test]
fn bad_settings_are_refused_by_name() {
    let dir = std::env::temp_dir();
    let long = NetworkConfig {
        bridge: "a-bridge-name-too-long".into(),
        ..NetworkConfig::default()
    };
    assert!(HostNetwork::new(long, dir.clone())
        .err()
        .unwrap()
        .contains("1-15"));
    let mode = NetworkConfig {
        mode: "nat".into(),
        ..NetworkConfig::default()
    };
    assert!(HostNetwork::new(mode, dir.clone())
        .err()
        .unwrap()
        .contains("auto, bridge, user"));
    let user = NetworkConfig {
        mode: "user".into(),
        ..NetworkConfig::default()
    };
    let network = HostNetwork::new(user, dir).unwrap();
    assert!(matches!(network.mode(), Mode::User(_)));
    let nic = network.allocate(&[]).unwrap();
    assert!(nic.ssh_port.is_some(), "user mode forwards SSH");
    let args = network.qemu_args("vm-0123456789ab", &nic).unwrap();
    assert!(
        args[1].contains("dhcpstart=10.213.0.10") && args[1].contains("hostfwd=tcp:127.0.0.1:"),
        "{args:?}"
    );
}
