//! What the cloud says about networks, in Skyport's terms: an instance's addresses (from
//! the `DescribeInstances`/`RunInstances` item), the region's network (the cloud's default
//! VPC and its default subnets), the mapping of the cloud's zones to Skyport's, and the
//! name under which a tenant's SSH key is imported into the cloud.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};
use skyport_plugin_api::ops::provider::InstanceNetwork;
use skyport_plugin_api::ops::ZoneSubnet;

use crate::xml::Element;

/// The cloud's availability zones as Skyport's zones of the region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneMap {
    /// The region's Skyport zones, in the order `regions@1` lists them.
    zones: Vec<String>,
    /// The cloud's zone -> Skyport zone, when configured (`clusters`).
    clusters: BTreeMap<String, String>,
    /// The cloud's region name (`us-east-1`).
    cloud_region: String,
    /// The Skyport region name (`aws-us-east-1`).
    skyport_region: String,
}

impl ZoneMap {
    /// A map for the Skyport region `skyport_region` (zones `zones`) over the cloud's
    /// region `cloud_region`; `clusters` is the configuration's Skyport zone -> cloud zone.
    pub fn new(
        zones: Vec<String>,
        clusters: &BTreeMap<String, String>,
        cloud_region: &str,
        skyport_region: &str,
    ) -> Self {
        Self {
            zones,
            clusters: clusters
                .iter()
                .map(|(skyport, cloud)| (cloud.clone(), skyport.clone()))
                .collect(),
            cloud_region: cloud_region.to_string(),
            skyport_region: skyport_region.to_string(),
        }
    }

    /// The region's Skyport zones.
    pub fn zones(&self) -> &[String] {
        &self.zones
    }

    /// The Skyport zone of the cloud's zone `cloud`, if it is one of the region's: the
    /// configured cluster's zone; else the name itself when Skyport uses the cloud's
    /// names; else the cloud's region prefix swapped for Skyport's (`us-east-1a` ->
    /// `aws-us-east-1a`). A zone the region does not list has no Skyport name (`None`):
    /// nothing is invented.
    pub fn to_skyport(&self, cloud: &str) -> Option<String> {
        if cloud.is_empty() {
            return None;
        }
        if !self.clusters.is_empty() {
            return self.clusters.get(cloud).cloned();
        }
        if self.zones.iter().any(|z| z == cloud) {
            return Some(cloud.to_string());
        }
        let suffix = cloud.strip_prefix(self.cloud_region.as_str())?;
        let candidate = format!("{}{suffix}", self.skyport_region);
        self.zones.contains(&candidate).then_some(candidate)
    }
}

/// The text at `path` of `element`, unless absent or empty (EC2 answers `<dnsName/>` for
/// an instance without a public name).
fn text(element: &Element, path: &str) -> Option<String> {
    element
        .text_at(path)
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
}

/// An instance's addresses from its `instancesSet` item, as the cloud gives them: none for
/// a terminated instance (the cloud may still name the addresses it had), and `None` for
/// whatever the cloud leaves out or empty. The MAC is the primary interface's (device
/// index 0; the first interface when none says so).
pub fn instance_network(item: &Element, zones: &ZoneMap) -> Option<InstanceNetwork> {
    if item.text_at("instanceState/name") == Some("terminated") {
        return None;
    }
    let interfaces: Vec<&Element> = item.items("networkInterfaceSet").collect();
    let primary = interfaces
        .iter()
        .find(|i| i.text_at("attachment/deviceIndex") == Some("0"))
        .or_else(|| interfaces.first());
    let network = InstanceNetwork {
        private_ip: text(item, "privateIpAddress"),
        public_ip: text(item, "ipAddress"),
        private_dns: text(item, "privateDnsName"),
        public_dns: text(item, "dnsName"),
        mac: primary.and_then(|i| text(i, "macAddress")),
        zone: text(item, "placement/availabilityZone").and_then(|z| zones.to_skyport(&z)),
        ssh_endpoint: None,
    };
    (network != InstanceNetwork::default()).then_some(network)
}

/// The id and IPv4 CIDR of the default VPC in a `DescribeVpcs` reply (asked with filter
/// `isDefault=true`; the flag is checked again, in case the cloud ignores the filter).
pub fn default_vpc(reply: &Element) -> Option<(String, Option<String>)> {
    reply
        .items("vpcSet")
        .find(|vpc| vpc.text_at("isDefault") != Some("false"))
        .and_then(|vpc| Some((text(vpc, "vpcId")?, text(vpc, "cidrBlock"))))
}

/// Each Skyport zone's default subnet in a `DescribeSubnets` reply for the default VPC
/// `vpc_id`: one per zone (the one the cloud marks default for its zone), in the region's
/// zone order; subnets in zones the region does not list are left out.
pub fn zone_subnets(reply: &Element, vpc_id: &str, zones: &ZoneMap) -> Vec<ZoneSubnet> {
    let mut by_zone: BTreeMap<String, String> = BTreeMap::new();
    for subnet in reply.items("subnetSet") {
        if subnet.text_at("vpcId").is_some_and(|v| v != vpc_id)
            || subnet.text_at("defaultForAz") != Some("true")
        {
            continue;
        }
        let (Some(cloud_zone), Some(cidr)) =
            (text(subnet, "availabilityZone"), text(subnet, "cidrBlock"))
        else {
            continue;
        };
        if let Some(zone) = zones.to_skyport(&cloud_zone) {
            by_zone.entry(zone).or_insert(cidr);
        }
    }
    zones
        .zones()
        .iter()
        .filter_map(|zone| {
            by_zone.get(zone).map(|cidr| ZoneSubnet {
                zone: zone.clone(),
                cidr: cidr.clone(),
            })
        })
        .collect()
}

/// The name of a tenant's SSH key imported into the cloud: `skyport-` and the first 16
/// hex digits of the SHA-256 of the key line, so one key is imported once however many
/// instances use it, and different keys never share a name.
pub fn key_pair_name(key_line: &str) -> String {
    let digest = Sha256::digest(key_line.as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("skyport-{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::parse;

    /// moto 5.2.5's RunInstances reply, trimmed (captured here).
    const MOTO_RUN: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<RunInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15"><reservationId>r-bd9e588145fde8bd7</reservationId><ownerId>123456789012</ownerId><groupSet/><instancesSet><item><architecture>x86_64</architecture><clientToken>tok1</clientToken><networkInterfaceSet><item><association><ipOwnerId>123456789012</ipOwnerId><publicDnsName>ip-54-214-56-46.ec2.internal</publicDnsName><publicIp>54.214.56.46</publicIp></association><attachment><attachmentId>eni-attach-27987b2e8776abc7b</attachmentId><deviceIndex>0</deviceIndex><status>attached</status></attachment><description>Primary network interface</description><macAddress>02:00:00:2e:6e:3c</macAddress><networkInterfaceId>eni-aaac1505fad0e1b12</networkInterfaceId><privateDnsName>ip-10-71-11-115.ec2.internal</privateDnsName><privateIpAddress>10.71.11.115</privateIpAddress><privateIpAddressesSet><item><primary>true</primary><privateIpAddress>10.71.11.115</privateIpAddress></item></privateIpAddressesSet><subnetId>subnet-947fbe45627623c53</subnetId></item></networkInterfaceSet><instanceId>i-8c78e51332b9514d9</instanceId><imageId>ami-03cf127a</imageId><instanceState><code>0</code><name>pending</name></instanceState><privateDnsName>ip-10-71-11-115.ec2.internal</privateDnsName><dnsName>ec2-54-214-56-46.compute-1.amazonaws.com</dnsName><reason/><keyName>skyport-abc</keyName><instanceType>t2.micro</instanceType><placement><groupName/><tenancy>default</tenancy><availabilityZone>us-east-1a</availabilityZone></placement><subnetId>subnet-947fbe45627623c53</subnetId><privateIpAddress>10.71.11.115</privateIpAddress><ipAddress>54.214.56.46</ipAddress></item></instancesSet><requestId>request-id</requestId></RunInstancesResponse>"#;

    fn aws_zones() -> ZoneMap {
        ZoneMap::new(
            vec!["aws-us-east-1a".into(), "aws-us-east-1b".into()],
            &BTreeMap::new(),
            "us-east-1",
            "aws-us-east-1",
        )
    }

    #[test]
    fn an_instance_item_gives_its_addresses_and_skyport_zone() {
        let doc = parse(MOTO_RUN).unwrap();
        let item = doc.items("instancesSet").next().unwrap();
        let network = instance_network(item, &aws_zones()).unwrap();
        assert_eq!(
            network,
            InstanceNetwork {
                private_ip: Some("10.71.11.115".into()),
                public_ip: Some("54.214.56.46".into()),
                private_dns: Some("ip-10-71-11-115.ec2.internal".into()),
                public_dns: Some("ec2-54-214-56-46.compute-1.amazonaws.com".into()),
                mac: Some("02:00:00:2e:6e:3c".into()),
                zone: Some("aws-us-east-1a".into()),
                ssh_endpoint: None,
            }
        );
    }

    #[test]
    fn empty_elements_are_absent_and_a_terminated_instance_has_no_network() {
        // A stopped EC2 instance: no public address, empty public name, a second
        // interface listed first.
        let stopped = parse(
            r#"<item><instanceId>i-1</instanceId><instanceState><code>80</code><name>stopped</name></instanceState>
<networkInterfaceSet><item><attachment><deviceIndex>1</deviceIndex></attachment><macAddress>0a:00:00:00:00:01</macAddress></item>
<item><attachment><deviceIndex>0</deviceIndex></attachment><macAddress>0a:00:00:00:00:00</macAddress></item></networkInterfaceSet>
<privateDnsName>ip-172-31-0-5.ec2.internal</privateDnsName><dnsName/><ipAddress></ipAddress><privateIpAddress>172.31.0.5</privateIpAddress>
<placement><availabilityZone>us-east-1c</availabilityZone></placement></item>"#,
        )
        .unwrap();
        let network = instance_network(&stopped, &aws_zones()).unwrap();
        assert_eq!(network.private_ip.as_deref(), Some("172.31.0.5"));
        assert_eq!((network.public_ip, network.public_dns), (None, None));
        assert_eq!(network.mac.as_deref(), Some("0a:00:00:00:00:00"));
        // us-east-1c is no zone of this Skyport region: no zone rather than a wrong one.
        assert_eq!(network.zone, None);

        // moto still names a terminated instance's private address: not passed on.
        let terminated = parse(
            r#"<item><instanceId>i-1</instanceId><instanceState><code>48</code><name>terminated</name></instanceState>
<privateIpAddress>10.138.225.87</privateIpAddress><privateDnsName>ip-10-138-225-87.ec2.internal</privateDnsName></item>"#,
        )
        .unwrap();
        assert_eq!(instance_network(&terminated, &aws_zones()), None);

        // Nothing given at all: no network, not an empty one.
        let bare = parse(
            r#"<item><instanceId>i-1</instanceId><instanceState><name>pending</name></instanceState><dnsName/></item>"#,
        )
        .unwrap();
        assert_eq!(instance_network(&bare, &aws_zones()), None);
    }

    #[test]
    fn cloud_zones_map_to_skyport_zones() {
        let aws = aws_zones();
        assert_eq!(
            aws.to_skyport("us-east-1b").as_deref(),
            Some("aws-us-east-1b")
        );
        assert_eq!(aws.to_skyport("us-east-1f"), None);
        assert_eq!(aws.to_skyport("eu-west-1a"), None);
        assert_eq!(aws.to_skyport(""), None);
        // Zones configured with the cloud's own names are kept as they are.
        let same = ZoneMap::new(
            vec!["us-east-1a".into()],
            &BTreeMap::new(),
            "us-east-1",
            "aws-us-east-1",
        );
        assert_eq!(same.to_skyport("us-east-1a").as_deref(), Some("us-east-1a"));
        // Eucalyptus clusters: only the configured ones, by their Skyport names.
        let clusters = BTreeMap::from([
            ("euca-1a".to_string(), "cluster01".to_string()),
            ("euca-1b".to_string(), "cluster02".to_string()),
        ]);
        let euca = ZoneMap::new(
            clusters.keys().cloned().collect(),
            &clusters,
            "eucalyptus",
            "euca-1",
        );
        assert_eq!(euca.to_skyport("cluster02").as_deref(), Some("euca-1b"));
        assert_eq!(euca.to_skyport("euca-1a"), None);
    }

    #[test]
    fn the_default_vpc_and_its_default_subnets_per_zone() {
        let vpcs = parse(
            r#"<DescribeVpcsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15"><vpcSet><item><ownerId>123456789012</ownerId><cidrBlockAssociationSet><item><cidrBlock>172.31.0.0/16</cidrBlock></item></cidrBlockAssociationSet><isDefault>true</isDefault><vpcId>vpc-0a6e46ac89d834bbc</vpcId><state>available</state><cidrBlock>172.31.0.0/16</cidrBlock></item></vpcSet><requestId>request-id</requestId></DescribeVpcsResponse>"#,
        )
        .unwrap();
        let (vpc, cidr) = default_vpc(&vpcs).unwrap();
        assert_eq!(vpc, "vpc-0a6e46ac89d834bbc");
        assert_eq!(cidr.as_deref(), Some("172.31.0.0/16"));
        let none = parse(r#"<DescribeVpcsResponse><vpcSet/></DescribeVpcsResponse>"#).unwrap();
        assert_eq!(default_vpc(&none), None);

        let subnets = parse(
            r#"<DescribeSubnetsResponse><subnetSet>
<item><subnetId>subnet-b</subnetId><vpcId>vpc-0a6e46ac89d834bbc</vpcId><availabilityZone>us-east-1b</availabilityZone><cidrBlock>172.31.16.0/20</cidrBlock><defaultForAz>true</defaultForAz></item>
<item><subnetId>subnet-x</subnetId><vpcId>vpc-0a6e46ac89d834bbc</vpcId><availabilityZone>us-east-1a</availabilityZone><cidrBlock>172.31.200.0/24</cidrBlock><defaultForAz>false</defaultForAz></item>
<item><subnetId>subnet-a</subnetId><vpcId>vpc-0a6e46ac89d834bbc</vpcId><availabilityZone>us-east-1a</availabilityZone><cidrBlock>172.31.0.0/20</cidrBlock><defaultForAz>true</defaultForAz></item>
<item><subnetId>subnet-c</subnetId><vpcId>vpc-0a6e46ac89d834bbc</vpcId><availabilityZone>us-east-1c</availabilityZone><cidrBlock>172.31.32.0/20</cidrBlock><defaultForAz>true</defaultForAz></item>
<item><subnetId>subnet-o</subnetId><vpcId>vpc-other</vpcId><availabilityZone>us-east-1b</availabilityZone><cidrBlock>10.0.0.0/24</cidrBlock><defaultForAz>true</defaultForAz></item>
</subnetSet></DescribeSubnetsResponse>"#,
        )
        .unwrap();
        assert_eq!(
            zone_subnets(&subnets, "vpc-0a6e46ac89d834bbc", &aws_zones()),
            vec![
                ZoneSubnet {
                    zone: "aws-us-east-1a".into(),
                    cidr: "172.31.0.0/20".into()
                },
                ZoneSubnet {
                    zone: "aws-us-east-1b".into(),
                    cidr: "172.31.16.0/20".into()
                },
            ]
        );
    }

    #[test]
    fn imported_key_names_follow_the_key() {
        let key =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl a@b";
        let name = key_pair_name(key);
        assert!(name.starts_with("skyport-") && name.len() == "skyport-".len() + 16);
        assert!(name["skyport-".len()..]
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_eq!(name, key_pair_name(key));
        assert_ne!(name, key_pair_name(&key.replace("a@b", "c@d")));
        // sha256("abc") = ba7816bf8f01cfea...
        assert_eq!(key_pair_name("abc"), "skyport-ba7816bf8f01cfea");
    }
}
