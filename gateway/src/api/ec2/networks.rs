//! Skyport's networks in EC2's terms, without I/O: each provider region's private network
//! is its **default VPC**, and each of the region's zones has one **default subnet** in it
//! (the part of the network its provider says the zone uses, else the whole network).
//!
//! Ids are derived from names, like image ids, so they are the same in every answer, for
//! every tenant and across restarts: `vpc-` + 17 hex digits of SHA-256(`vpc/<region>`),
//! `subnet-` + 17 hex digits of SHA-256(`subnet/<region>/<zone>`). An instance's network
//! interface is derived from its instance id the same way. The federated region spans
//! every provider region and has no network of its own.

use std::net::Ipv4Addr;

use sha2::{Digest, Sha256};
use skyport_domain::inventory::InstanceRecord;
use skyport_domain::regions::RegionView;

/// `<prefix>-` + the first 17 hex digits of SHA-256(`seed`).
fn derived_id(prefix: &str, seed: &str) -> String {
    format!(
        "{prefix}-{}",
        &hex::encode(Sha256::digest(seed.as_bytes()))[..17]
    )
}

/// The default VPC id of provider region `region`.
pub(super) fn vpc_id(region: &str) -> String {
    derived_id("vpc", &format!("vpc/{region}"))
}

/// The default subnet id of `zone` in provider region `region`.
pub(super) fn subnet_id(region: &str, zone: &str) -> String {
    derived_id("subnet", &format!("subnet/{region}/{zone}"))
}

/// The zone id of the `index`th (0-based) zone of `region`, as `DescribeAvailabilityZones`
/// shows it (`<region>-az1`, ...).
pub(super) fn zone_id(region: &str, index: usize) -> String {
    format!("{region}-az{}", index + 1)
}

/// The id of instance `instance_id`'s (one) network interface.
pub(super) fn interface_id(instance_id: &str) -> String {
    derived_id("eni", &format!("eni/{instance_id}"))
}

/// The id of the attachment of instance `instance_id`'s interface to it.
pub(super) fn attachment_id(instance_id: &str) -> String {
    derived_id("eni-attach", &format!("eni-attach/{instance_id}"))
}

/// The id of instance `instance_id`'s root volume.
pub(super) fn volume_id(instance_id: &str) -> String {
    derived_id("vol", &format!("vol/{instance_id}"))
}

/// The id of the default security group of provider region `region`'s VPC.
pub(super) fn security_group_id(region: &str) -> String {
    derived_id("sg", &format!("sg/{region}"))
}

/// Whether `id` has the shape of an EC2 id with `prefix`: `<prefix>-` + 8 or 17 lower-case
/// hex digits (EC2's short and long id formats).
pub(super) fn is_id(prefix: &str, id: &str) -> bool {
    id.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|hex| {
            matches!(hex.len(), 8 | 17)
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

/// The addresses in IPv4 network `cidr` an instance can use: all of them but the five
/// EC2 reserves in every subnet (network, router, DNS, future use, broadcast; "Subnet CIDR
/// blocks", Amazon VPC User Guide). `None` when `cidr` is not an IPv4 CIDR.
pub(super) fn usable_addresses(cidr: &str) -> Option<u64> {
    let (address, prefix) = cidr.split_once('/')?;
    address.parse::<Ipv4Addr>().ok()?;
    let prefix: u32 = prefix.parse().ok().filter(|p| *p <= 32)?;
    Some((1u64 << (32 - prefix)).saturating_sub(5))
}

/// A provider region's default VPC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Vpc<'r> {
    /// `vpc-...`.
    pub(super) id: String,
    /// Its region.
    pub(super) region: &'r str,
    /// The region's network, when its provider says what it is.
    pub(super) cidr: Option<&'r str>,
}

impl Vpc<'_> {
    /// The id of the association of its (one) CIDR block with it.
    pub(super) fn cidr_association_id(&self) -> String {
        derived_id("vpc-cidr-assoc", &format!("vpc-cidr-assoc/{}", self.region))
    }
}

/// A zone's default subnet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Subnet<'r> {
    /// `subnet-...`.
    pub(super) id: String,
    /// Its VPC's id.
    pub(super) vpc_id: String,
    /// Its region.
    pub(super) region: &'r str,
    /// Its zone.
    pub(super) zone: &'r str,
    /// Its zone's id.
    pub(super) zone_id: String,
    /// The zone's part of the network, else the whole network, when known.
    pub(super) cidr: Option<&'r str>,
}

impl Subnet<'_> {
    /// Its ARN, in the account `owner`.
    pub(super) fn arn(&self, owner: &str) -> String {
        format!("arn:aws:ec2:{}:{owner}:subnet/{}", self.region, self.id)
    }
}

/// Where an instance is on its region's network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct InstancePlace {
    /// Its VPC's id.
    pub(super) vpc_id: String,
    /// Its subnet's id (none in a region that lists no zones).
    pub(super) subnet_id: Option<String>,
}

/// A provider region's network: its default VPC and subnets.
#[derive(Debug, Clone, Copy)]
pub(super) struct RegionNetwork<'r> {
    region: &'r RegionView,
}

impl<'r> RegionNetwork<'r> {
    /// The network of `region`; none for the federated region.
    pub(super) fn of(region: &'r RegionView) -> Option<Self> {
        region.is_provider_region().then_some(Self { region })
    }

    /// Its default VPC.
    pub(super) fn vpc(&self) -> Vpc<'r> {
        Vpc {
            id: vpc_id(&self.region.name),
            region: &self.region.name,
            cidr: self.region.cidr.as_deref(),
        }
    }

    /// Its default subnets, one per zone, in the region's zone order.
    pub(super) fn subnets(&self) -> impl Iterator<Item = Subnet<'r>> + 'r {
        let region = self.region;
        region
            .zones
            .iter()
            .enumerate()
            .map(move |(index, zone)| Subnet {
                id: subnet_id(&region.name, zone),
                vpc_id: vpc_id(&region.name),
                region: &region.name,
                zone,
                zone_id: zone_id(&region.name, index),
                cidr: region
                    .subnets
                    .iter()
                    .find(|s| s.zone == *zone)
                    .map(|s| s.cidr.as_str())
                    .or(region.cidr.as_deref()),
            })
    }

    /// The zone `record` is in: the one its provider reports when that is one of the
    /// region's zones, else the region's first zone (none when it lists no zones).
    pub(super) fn zone_of<'a>(&self, record: &'a InstanceRecord) -> Option<&'a str>
    where
        'r: 'a,
    {
        let reported = record.network.as_ref().and_then(|n| n.zone.as_deref());
        reported
            .filter(|z| self.region.zones.iter().any(|known| known == z))
            .or_else(|| self.region.zones.first().map(String::as_str))
    }

    /// Where `record` is on this network: only while it has addresses (not before they
    /// are assigned, nor once it is terminated, as EC2 drops them then).
    pub(super) fn place(&self, record: &InstanceRecord) -> Option<InstancePlace> {
        if record.network.is_none() || record.state == "terminated" {
            return None;
        }
        Some(InstancePlace {
            vpc_id: vpc_id(&self.region.name),
            subnet_id: self
                .zone_of(record)
                .map(|zone| subnet_id(&self.region.name, zone)),
        })
    }
}

#[cfg(test)]
mod tests {
    use skyport_domain::inventory::InstanceNetwork;
    use skyport_plugin_api::ops::ZoneSubnet;

    use super::*;

    fn region(name: &str, zones: &[&str], cidr: Option<&str>) -> RegionView {
        RegionView {
            name: name.into(),
            kind: "provider",
            providers: vec!["p".into()],
            zones: zones.iter().map(|z| z.to_string()).collect(),
            cidr: cidr.map(str::to_owned),
            subnets: Vec::new(),
        }
    }

    fn instance(state: &str, network: Option<InstanceNetwork>) -> InstanceRecord {
        InstanceRecord {
            id: "i-0123456789abcdef0".into(),
            tenant: "demo".into(),
            department: None,
            provider: "p".into(),
            region: "local-1".into(),
            remote_id: None,
            image: "debian-12".into(),
            instance_type: "sp.micro".into(),
            name: None,
            tags: serde_json::Map::new(),
            state: state.into(),
            created_at: "2026-12-04T10:00:00.000Z".into(),
            key_name: None,
            client_token: None,
            network,
            user_data: None,
            offering: None,
        }
    }

    #[test]
    fn ids_are_derived_from_names_and_have_ec2s_shape() {
        assert_eq!(vpc_id("local-1"), vpc_id("local-1"));
        assert_ne!(vpc_id("local-1"), vpc_id("aws-us-east-1"));
        assert!(is_id("vpc", &vpc_id("local-1")));
        assert!(is_id("subnet", &subnet_id("local-1", "local-1a")));
        assert_ne!(
            subnet_id("local-1", "local-1a"),
            subnet_id("local-1", "local-1b")
        );
        assert!(is_id("eni", &interface_id("i-0123456789abcdef0")));
        assert!(is_id("eni-attach", &attachment_id("i-0123456789abcdef0")));
        assert!(is_id("vpc", "vpc-1a2b3c4d"));
        for malformed in [
            "vpc-",
            "vpc-XYZ",
            "vpc1a2b3c4d",
            "subnet-1a2b3c4d",
            "vpc-1a2b3c4",
        ] {
            assert!(!is_id("vpc", malformed), "{malformed}");
        }
    }

    #[test]
    fn a_zone_uses_its_own_subnet_else_the_whole_network() {
        let mut r = region("aws-us-east-1", &["z-a", "z-b"], Some("172.31.0.0/16"));
        r.subnets.push(ZoneSubnet {
            zone: "z-a".into(),
            cidr: "172.31.0.0/20".into(),
        });
        let net = RegionNetwork::of(&r).unwrap();
        let subnets: Vec<Subnet> = net.subnets().collect();
        assert_eq!(subnets.len(), 2);
        assert_eq!(
            (subnets[0].zone, subnets[0].cidr),
            ("z-a", Some("172.31.0.0/20"))
        );
        assert_eq!(
            (subnets[1].zone, subnets[1].cidr),
            ("z-b", Some("172.31.0.0/16"))
        );
        assert_eq!(subnets[1].zone_id, "aws-us-east-1-az2");
        assert!(subnets.iter().all(|s| s.vpc_id == net.vpc().id));
        assert_eq!(net.vpc().cidr, Some("172.31.0.0/16"));
    }

    #[test]
    fn the_federated_region_has_no_network() {
        let mut federated = region("skyport", &[], None);
        federated.kind = "federated";
        assert!(RegionNetwork::of(&federated).is_none());
    }

    #[test]
    fn an_instance_is_in_its_reported_zone_when_the_region_has_it() {
        let r = region("local-1", &["local-1a", "local-1b"], Some("10.0.0.0/24"));
        let net = RegionNetwork::of(&r).unwrap();
        let at = |zone: Option<&str>| {
            instance(
                "running",
                Some(InstanceNetwork {
                    private_ip: Some("10.0.0.7".into()),
                    zone: zone.map(str::to_owned),
                    ..InstanceNetwork::default()
                }),
            )
        };
        assert_eq!(net.zone_of(&at(Some("local-1b"))), Some("local-1b"));
        assert_eq!(net.zone_of(&at(Some("mars-1a"))), Some("local-1a"));
        assert_eq!(net.zone_of(&at(None)), Some("local-1a"));
        assert_eq!(
            net.place(&at(Some("local-1b"))),
            Some(InstancePlace {
                vpc_id: vpc_id("local-1"),
                subnet_id: Some(subnet_id("local-1", "local-1b")),
            })
        );
    }

    #[test]
    fn an_instance_without_addresses_or_terminated_is_on_no_network() {
        let r = region("local-1", &["local-1a"], Some("10.0.0.0/24"));
        let net = RegionNetwork::of(&r).unwrap();
        assert_eq!(net.place(&instance("pending", None)), None);
        let addressed = Some(InstanceNetwork {
            private_ip: Some("10.0.0.7".into()),
            ..InstanceNetwork::default()
        });
        assert_eq!(net.place(&instance("terminated", addressed.clone())), None);
        assert!(net.place(&instance("stopped", addressed)).is_some());
    }

    #[test]
    fn usable_addresses_leave_out_the_five_ec2_reserves() {
        assert_eq!(usable_addresses("10.0.0.0/24"), Some(251));
        assert_eq!(usable_addresses("172.31.0.0/16"), Some(65531));
        assert_eq!(usable_addresses("10.0.0.0/28"), Some(11));
        assert_eq!(usable_addresses("10.0.0.1/32"), Some(0));
        assert_eq!(usable_addresses("10.0.0.0/33"), None);
        assert_eq!(usable_addresses("fd00::/64"), None);
        assert_eq!(usable_addresses("10.0.0.0"), None);
    }
}
