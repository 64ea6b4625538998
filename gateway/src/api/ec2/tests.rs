//! The EC2 door through the real stack, over the domain's test world: SigV4 as botocore
//! signs it, regions from the credential scope, the action table, EC2's error codes and
//! throttling, as an EC2 client sees them.

use crate::testkit::TestGateway;

fn code(body: &str) -> &str {
    body.split("<Code>")
        .nth(1)
        .and_then(|rest| rest.split("</Code>").next())
        .unwrap_or("")
}

/// A test gateway, an access key of tenant `demo`, and the id of the first image `demo`
/// sees in `local-1`.
async fn demo_with_an_image() -> (TestGateway, (String, String), String) {
    let gw = TestGateway::new().await;
    let (key, secret) = gw.access_key("demo").await;
    let images = gw
        .ec2(
            &[("Action", "DescribeImages")],
            Some((&key, &secret)),
            "local-1",
        )
        .await;
    let ami = first(&images.body, "imageId");
    (gw, (key, secret), ami)
}

/// The text of the first `<tag>` element in `body`.
fn first(body: &str, tag: &str) -> String {
    body.split(&format!("<{tag}>"))
        .nth(1)
        .and_then(|rest| rest.split(&format!("</{tag}>")).next())
        .unwrap_or_else(|| panic!("no <{tag}> in {body}"))
        .to_string()
}

#[tokio::test]
async fn an_unsigned_or_badly_signed_request_is_an_auth_failure_in_ec2_form() {
    let gw = TestGateway::new().await;
    let unsigned = gw
        .ec2(&[("Action", "DescribeRegions")], None, "local-1")
        .await;
    assert_eq!(
        (unsigned.status, code(&unsigned.body)),
        (401, "AuthFailure")
    );
    assert!(unsigned.body.starts_with("<?xml"), "{}", unsigned.body);
    let (key, _) = gw.access_key("demo").await;
    let forged = gw
        .ec2(
            &[("Action", "DescribeRegions")],
            Some((&key, "not the secret")),
            "local-1",
        )
        .await;
    assert_eq!(
        (forged.status, code(&forged.body)),
        (403, "SignatureDoesNotMatch")
    );
    let (key, secret) = gw.access_key("demo").await;
    let nowhere = gw
        .ec2(
            &[("Action", "DescribeRegions")],
            Some((&key, &secret)),
            "mars-1",
        )
        .await;
    assert_eq!((nowhere.status, code(&nowhere.body)), (401, "AuthFailure"));
}

#[tokio::test]
async fn a_signed_read_is_served_then_cached_per_tenant() {
    let gw = TestGateway::new().await;
    let (key, secret) = gw.access_key("demo").await;
    let regions = gw
        .ec2(
            &[("Action", "DescribeRegions")],
            Some((&key, &secret)),
            "local-1",
        )
        .await;
    assert_eq!(regions.status, 200, "{}", regions.body);
    assert!(regions
        .body
        .contains("<regionName>aws-us-east-1</regionName>"));
    assert_eq!(regions.header("x-skyport-cache"), Some("miss"));
    let again = gw
        .ec2(
            &[("Action", "DescribeRegions")],
            Some((&key, &secret)),
            "local-1",
        )
        .await;
    assert_eq!(
        again.header("x-skyport-cache"),
        Some("hit"),
        "re-signed, same parameters"
    );
    // A cached answer carries its own request's id, not the one that filled the cache.
    let request_id = |body: &str| first(body, "requestId");
    assert_eq!(
        Some(request_id(&again.body).as_str()),
        again.header("x-request-id")
    );
    assert_ne!(request_id(&again.body), request_id(&regions.body));
    assert_eq!(again.body.len(), regions.body.len());
    let (acme_key, acme_secret) = gw.access_key("acme").await;
    let theirs = gw
        .ec2(
            &[("Action", "DescribeRegions")],
            Some((&acme_key, &acme_secret)),
            "local-1",
        )
        .await;
    assert_eq!(theirs.header("x-skyport-cache"), Some("miss"));
}

#[tokio::test]
async fn run_describe_and_refuse_in_ec2_terms() {
    let (gw, (key, secret), ami) = demo_with_an_image().await;
    let creds = Some((key.as_str(), secret.as_str()));
    let run = gw
        .ec2(
            &[
                ("Action", "RunInstances"),
                ("ImageId", &ami),
                ("InstanceType", "sp.micro"),
                ("MinCount", "1"),
                ("MaxCount", "1"),
            ],
            creds,
            "local-1",
        )
        .await;
    assert_eq!(run.status, 200, "{}", run.body);
    let id = first(&run.body, "instanceId");
    let described = gw
        .ec2(
            &[("Action", "DescribeInstances"), ("InstanceId.1", &id)],
            creds,
            "local-1",
        )
        .await;
    assert!(
        described.body.contains("<name>running</name>"),
        "{}",
        described.body
    );
    let elsewhere = gw
        .ec2(
            &[("Action", "DescribeInstances"), ("InstanceId.1", &id)],
            creds,
            "aws-us-east-1",
        )
        .await;
    assert_eq!(code(&elsewhere.body), "InvalidInstanceID.NotFound");
    let malformed = gw
        .ec2(
            &[("Action", "StopInstances"), ("InstanceId.1", "i-123")],
            creds,
            "local-1",
        )
        .await;
    assert_eq!(
        (malformed.status, code(&malformed.body)),
        (400, "InvalidInstanceID.Malformed")
    );
    let running = gw
        .ec2(
            &[
                ("Action", "ModifyInstanceAttribute"),
                ("InstanceId", &id),
                ("InstanceType.Value", "sp.small"),
            ],
            creds,
            "local-1",
        )
        .await;
    assert_eq!(code(&running.body), "IncorrectInstanceState");
    let unknown = gw
        .ec2(&[("Action", "LaunchMissiles")], creds, "local-1")
        .await;
    assert_eq!(code(&unknown.body), "InvalidAction");
    let dry = gw
        .ec2(
            &[("Action", "DescribeRegions"), ("DryRun", "true")],
            creds,
            "local-1",
        )
        .await;
    assert_eq!((dry.status, code(&dry.body)), (412, "DryRunOperation"));
}

#[tokio::test]
async fn throttling_is_ec2s_503_with_when_to_retry() {
    let gw = TestGateway::with_config(|c| {
        c.replace(
            "requests_per_second = 100\nburst = 200",
            "requests_per_second = 1\nburst = 1",
        )
    })
    .await;
    let (key, secret) = gw.access_key("demo").await;
    let creds = Some((key.as_str(), secret.as_str()));
    assert_eq!(
        gw.ec2(&[("Action", "DescribeRegions")], creds, "local-1")
            .await
            .status,
        200
    );
    let refused = gw
        .ec2(&[("Action", "DescribeRegions")], creds, "local-1")
        .await;
    assert_eq!(
        (refused.status, code(&refused.body)),
        (503, "RequestLimitExceeded")
    );
    assert_eq!(refused.header("retry-after"), Some("1"));
}

#[tokio::test]
async fn a_repeated_action_is_refused_rather_than_run_as_another_than_it_was_cached() {
    let gw = TestGateway::new().await;
    let (key, secret) = gw.access_key("demo").await;
    let twice = gw
        .ec2(
            &[
                ("Action", "DescribeRegions"),
                ("Action", "DescribeKeyPairs"),
            ],
            Some((&key, &secret)),
            "local-1",
        )
        .await;
    assert_eq!(
        (twice.status, code(&twice.body)),
        (400, "InvalidParameterValue"),
        "{}",
        twice.body
    );
    assert!(twice.body.contains("more than once"), "{}", twice.body);
}

/// Every text of `<tag>` in `body`, in order.
fn values(body: &str, tag: &str) -> Vec<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    body.split(&open)
        .skip(1)
        .filter_map(|rest| rest.split(&close).next())
        .map(str::to_owned)
        .collect()
}

/// Launches one instance of the first image in `region` by `creds`; its id.
async fn launch(gw: &TestGateway, creds: Option<(&str, &str)>, region: &str) -> String {
    let images = gw.ec2(&[("Action", "DescribeImages")], creds, region).await;
    let ami = values(&images.body, "imageId").remove(0);
    let run = gw
        .ec2(
            &[
                ("Action", "RunInstances"),
                ("ImageId", &ami),
                ("MinCount", "1"),
                ("MaxCount", "1"),
            ],
            creds,
            region,
        )
        .await;
    assert_eq!(run.status, 200, "{}", run.body);
    values(&run.body, "instanceId").remove(0)
}

#[tokio::test]
async fn an_instance_with_addresses_shows_them_with_its_vpc_subnet_and_interface() {
    use super::networks::{subnet_id, vpc_id};
    let gw = TestGateway::new().await;
    let (key, secret) = gw.access_key("demo").await;
    let creds = Some((key.as_str(), secret.as_str()));
    let id = launch(&gw, creds, "local-1").await;
    let described = gw
        .ec2(
            &[("Action", "DescribeInstances"), ("InstanceId.1", &id)],
            creds,
            "local-1",
        )
        .await;
    let body = &described.body;
    assert_eq!(described.status, 200, "{body}");
    // The fake local-vmm gives its VMs a private address only (10.0.0.<n>).
    let private = values(body, "privateIpAddress");
    assert_eq!(private.len(), 3, "instance, interface, its address: {body}");
    assert!(private[0].starts_with("10.0.0."), "{body}");
    assert!(private.iter().all(|p| *p == private[0]), "{body}");
    assert!(
        values(body, "ipAddress").is_empty(),
        "no public address: {body}"
    );
    assert!(!body.contains("<association>"), "{body}");
    let subnet = subnet_id("local-1", "local-1a");
    let vpc = vpc_id("local-1");
    assert_eq!(values(body, "subnetId"), [subnet.clone(), subnet], "{body}");
    assert_eq!(values(body, "vpcId"), [vpc.clone(), vpc], "{body}");
    assert_eq!(values(body, "sourceDestCheck"), ["true", "true"], "{body}");
    let interface = values(body, "networkInterfaceId");
    assert_eq!(interface.len(), 1, "{body}");
    assert!(interface[0].starts_with("eni-"), "{body}");
    assert!(body.contains("<deviceIndex>0</deviceIndex><status>attached</status>"));
    assert_eq!(values(body, "availabilityZone"), ["local-1a"]);
}

#[tokio::test]
async fn a_public_address_is_shown_with_its_association_in_ec2s_order() {
    use skyport_domain::inventory::{InstanceNetwork, InstanceRecord};

    use super::model::write_instance;
    use super::networks::{subnet_id, vpc_id};
    use super::query::Params;
    use super::xml::Xml;
    use super::Ec2Call;

    let gw = TestGateway::new().await;
    let ctx = skyport_domain::testkit::caller("demo", None);
    let params = Params::default();
    let call = Ec2Call {
        services: &gw.services,
        ctx: &ctx,
        request_id: "req-1",
        region: gw.services.regions.get("aws-us-east-1").unwrap(),
        params: &params,
    };
    let mut record = InstanceRecord {
        id: "i-0123456789abcdef0".into(),
        tenant: "demo".into(),
        department: None,
        provider: "ec2".into(),
        region: "aws-us-east-1".into(),
        remote_id: Some("i-remote".into()),
        image: "debian-12".into(),
        instance_type: "sp.micro".into(),
        name: None,
        tags: serde_json::Map::new(),
        state: "running".into(),
        created_at: "2026-11-23T11:39:01.000Z".into(),
        key_name: None,
        client_token: None,
        user_data: None,
        offering: None,
        network: Some(InstanceNetwork {
            private_ip: Some("172.31.5.9".into()),
            public_ip: Some("54.1.2.3".into()),
            private_dns: Some("ip-172-31-5-9.ec2.internal".into()),
            public_dns: Some("ec2-54-1-2-3.compute-1.amazonaws.com".into()),
            mac: Some("02:00:00:00:00:01".into()),
            zone: Some("us-east-1a".into()),
            ssh_endpoint: None,
        }),
    };
    let doc = Xml::response("DescribeInstances", "req-1", |x| {
        write_instance(x, &call, &record)
    });
    let (vpc, subnet) = (
        vpc_id("aws-us-east-1"),
        subnet_id("aws-us-east-1", "us-east-1a"),
    );
    assert!(
        doc.contains(&format!(
            "<subnetId>{subnet}</subnetId><vpcId>{vpc}</vpcId>\
             <privateIpAddress>172.31.5.9</privateIpAddress><ipAddress>54.1.2.3</ipAddress>\
             <sourceDestCheck>true</sourceDestCheck>"
        )),
        "{doc}"
    );
    assert!(doc.contains("<privateDnsName>ip-172-31-5-9.ec2.internal</privateDnsName><dnsName>ec2-54-1-2-3.compute-1.amazonaws.com</dnsName>"), "{doc}");
    let association = "<association><publicIp>54.1.2.3</publicIp>\
         <publicDnsName>ec2-54-1-2-3.compute-1.amazonaws.com</publicDnsName>\
         <ipOwnerId>amazon</ipOwnerId></association>";
    assert_eq!(
        doc.matches(association).count(),
        2,
        "interface and address: {doc}"
    );
    assert!(
        doc.contains("<macAddress>02:00:00:00:00:01</macAddress>"),
        "{doc}"
    );
    assert!(
        doc.contains("<attachTime>2026-11-23T11:39:01.000Z</attachTime>"),
        "{doc}"
    );
    assert!(doc.contains("<primary>true</primary>"), "{doc}");
    // Terminated: no addresses, no VPC, no subnet, no interface.
    record.state = "terminated".into();
    let gone = Xml::response("DescribeInstances", "req-1", |x| {
        write_instance(x, &call, &record)
    });
    for absent in [
        "<privateIpAddress>",
        "<ipAddress>",
        "<vpcId>",
        "<subnetId>",
        "<networkInterfaceSet>",
    ] {
        assert!(!gone.contains(absent), "{absent}: {gone}");
    }
    assert!(
        gone.contains("<privateDnsName></privateDnsName><dnsName></dnsName>"),
        "{gone}"
    );
}

#[tokio::test]
async fn the_vpc_and_subnet_an_instance_shows_are_the_ones_described() {
    let gw = TestGateway::new().await;
    let (key, secret) = gw.access_key("demo").await;
    let creds = Some((key.as_str(), secret.as_str()));
    let id = launch(&gw, creds, "local-1").await;
    let instance = gw
        .ec2(
            &[("Action", "DescribeInstances"), ("InstanceId.1", &id)],
            creds,
            "local-1",
        )
        .await;
    let vpc = values(&instance.body, "vpcId").remove(0);
    let subnet = values(&instance.body, "subnetId").remove(0);
    let vpcs = gw
        .ec2(&[("Action", "DescribeVpcs")], creds, "local-1")
        .await;
    assert_eq!(vpcs.status, 200, "{}", vpcs.body);
    assert_eq!(values(&vpcs.body, "vpcId"), [vpc.as_str()], "{}", vpcs.body);
    assert_eq!(
        values(&vpcs.body, "cidrBlock"),
        ["10.0.0.0/24", "10.0.0.0/24"],
        "the VPC's and its association's: {}",
        vpcs.body
    );
    assert_eq!(values(&vpcs.body, "isDefault"), ["true"]);
    let owner = values(&instance.body, "ownerId").remove(0);
    assert_eq!(values(&vpcs.body, "ownerId"), [owner.as_str()]);
    let subnets = gw
        .ec2(&[("Action", "DescribeSubnets")], creds, "local-1")
        .await;
    assert_eq!(subnets.status, 200, "{}", subnets.body);
    assert_eq!(values(&subnets.body, "subnetId"), [subnet.as_str()]);
    assert_eq!(values(&subnets.body, "vpcId"), [vpc]);
    assert_eq!(values(&subnets.body, "cidrBlock"), ["10.0.0.0/24"]);
    assert_eq!(values(&subnets.body, "availabilityZone"), ["local-1a"]);
    assert_eq!(values(&subnets.body, "availabilityZoneId"), ["local-1-az1"]);
    assert_eq!(
        values(&subnets.body, "availableIpAddressCount"),
        ["250"],
        "256 less EC2's 5 reserved less the instance's: {}",
        subnets.body
    );
    assert_eq!(
        values(&subnets.body, "subnetArn"),
        [format!("arn:aws:ec2:local-1:{owner}:subnet/{subnet}")]
    );
}

#[tokio::test]
async fn instances_are_selected_by_their_subnet_vpc_and_address() {
    use super::networks::{subnet_id, vpc_id};
    let gw = TestGateway::new().await;
    let (key, secret) = gw.access_key("demo").await;
    let creds = Some((key.as_str(), secret.as_str()));
    let id = launch(&gw, creds, "local-1").await;
    let gw = &gw;
    let with = |name: &'static str, value: String| async move {
        let answer = gw
            .ec2(
                &[
                    ("Action", "DescribeInstances"),
                    ("Filter.1.Name", name),
                    ("Filter.1.Value.1", &value),
                ],
                creds,
                "skyport",
            )
            .await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        values(&answer.body, "instanceId")
    };
    let here = (subnet_id("local-1", "local-1a"), vpc_id("local-1"));
    let there = (
        subnet_id("aws-us-east-1", "us-east-1a"),
        vpc_id("aws-us-east-1"),
    );
    assert_eq!(with("subnet-id", here.0.clone()).await, [id.as_str()]);
    assert_eq!(with("vpc-id", here.1.clone()).await, [id.as_str()]);
    assert_eq!(
        with("network-interface.subnet-id", here.0).await,
        [id.as_str()]
    );
    assert_eq!(
        with("network-interface.vpc-id", here.1).await,
        [id.as_str()]
    );
    assert!(with("subnet-id", there.0).await.is_empty());
    assert!(with("vpc-id", there.1).await.is_empty());
    assert_eq!(
        with("private-ip-address", "10.0.0.*".into()).await,
        [id.as_str()]
    );
    assert_eq!(
        with(
            "network-interface.addresses.private-ip-address",
            "10.0.0.*".into()
        )
        .await,
        [id.as_str()]
    );
    assert!(with("private-ip-address", "172.31.*".into())
        .await
        .is_empty());
    assert!(
        with("ip-address", "*".into()).await.is_empty(),
        "no public address"
    );
    let unknown = gw
        .ec2(
            &[
                ("Action", "DescribeInstances"),
                ("Filter.1.Name", "network-interface.colour"),
                ("Filter.1.Value.1", "blue"),
            ],
            creds,
            "local-1",
        )
        .await;
    assert_eq!(
        (unknown.status, code(&unknown.body)),
        (400, "InvalidParameterValue")
    );
}

#[tokio::test]
async fn a_terminated_instance_shows_no_addresses_and_is_on_no_subnet() {
    use super::networks::subnet_id;
    let gw = TestGateway::new().await;
    let (key, secret) = gw.access_key("demo").await;
    let creds = Some((key.as_str(), secret.as_str()));
    let id = launch(&gw, creds, "local-1").await;
    let terminated = gw
        .ec2(
            &[("Action", "TerminateInstances"), ("InstanceId.1", &id)],
            creds,
            "local-1",
        )
        .await;
    assert_eq!(terminated.status, 200, "{}", terminated.body);
    let described = gw
        .ec2(
            &[("Action", "DescribeInstances"), ("InstanceId.1", &id)],
            creds,
            "local-1",
        )
        .await;
    let body = &described.body;
    assert!(body.contains("<name>terminated</name>"), "{body}");
    for absent in [
        "<privateIpAddress>",
        "<vpcId>",
        "<subnetId>",
        "<networkInterfaceSet>",
    ] {
        assert!(!body.contains(absent), "{absent}: {body}");
    }
    let by_subnet = gw
        .ec2(
            &[
                ("Action", "DescribeInstances"),
                ("Filter.1.Name", "subnet-id"),
                ("Filter.1.Value.1", &subnet_id("local-1", "local-1a")),
            ],
            creds,
            "local-1",
        )
        .await;
    assert!(
        values(&by_subnet.body, "instanceId").is_empty(),
        "{}",
        by_subnet.body
    );
    let subnets = gw
        .ec2(&[("Action", "DescribeSubnets")], creds, "local-1")
        .await;
    assert_eq!(values(&subnets.body, "availableIpAddressCount"), ["251"]);
}

#[tokio::test]
async fn subnets_are_filtered_by_zone_and_vpc() {
    use super::networks::{subnet_id, vpc_id};
    let gw = TestGateway::new().await;
    let (key, secret) = gw.access_key("demo").await;
    let creds = Some((key.as_str(), secret.as_str()));
    let all = gw
        .ec2(&[("Action", "DescribeSubnets")], creds, "skyport")
        .await;
    assert_eq!(
        values(&all.body, "subnetId"),
        [
            subnet_id("local-1", "local-1a"),
            subnet_id("aws-us-east-1", "us-east-1a")
        ],
        "{}",
        all.body
    );
    let in_zone = gw
        .ec2(
            &[
                ("Action", "DescribeSubnets"),
                ("Filter.1.Name", "availability-zone"),
                ("Filter.1.Value.1", "us-east-1a"),
            ],
            creds,
            "skyport",
        )
        .await;
    assert_eq!(
        values(&in_zone.body, "subnetId"),
        [subnet_id("aws-us-east-1", "us-east-1a")]
    );
    assert_eq!(
        values(&in_zone.body, "cidrBlock"),
        ["172.31.0.0/20"],
        "the zone's own part of the network"
    );
    assert_eq!(values(&in_zone.body, "availableIpAddressCount"), ["4091"]);
    let in_vpc = gw
        .ec2(
            &[
                ("Action", "DescribeSubnets"),
                ("Filter.1.Name", "vpc-id"),
                ("Filter.1.Value.1", &vpc_id("local-1")),
            ],
            creds,
            "skyport",
        )
        .await;
    assert_eq!(
        values(&in_vpc.body, "subnetId"),
        [subnet_id("local-1", "local-1a")]
    );
    let elsewhere = gw
        .ec2(
            &[
                ("Action", "DescribeSubnets"),
                ("Filter.1.Name", "availability-zone"),
                ("Filter.1.Value.1", "us-east-1a"),
            ],
            creds,
            "local-1",
        )
        .await;
    assert!(
        values(&elsewhere.body, "subnetId").is_empty(),
        "{}",
        elsewhere.body
    );
    let unknown = gw
        .ec2(
            &[
                ("Action", "DescribeSubnets"),
                ("Filter.1.Name", "colour"),
                ("Filter.1.Value.1", "blue"),
            ],
            creds,
            "local-1",
        )
        .await;
    assert_eq!(
        (unknown.status, code(&unknown.body)),
        (400, "InvalidParameterValue")
    );
}

#[tokio::test]
async fn unknown_and_malformed_network_ids_are_refused_in_ec2_terms() {
    use super::networks::{subnet_id, vpc_id};
    let gw = TestGateway::new().await;
    let (key, secret) = gw.access_key("demo").await;
    let creds = Some((key.as_str(), secret.as_str()));
    let gw = &gw;
    let ask = |action: &'static str, param: &'static str, id: String| async move {
        let answer = gw
            .ec2(&[("Action", action), (param, &id)], creds, "local-1")
            .await;
        (answer.status, code(&answer.body).to_string(), answer.body)
    };
    let (status, code_, body) =
        ask("DescribeVpcs", "VpcId.1", "vpc-0123456789abcdef0".into()).await;
    assert_eq!(
        (status, code_.as_str()),
        (400, "InvalidVpcID.NotFound"),
        "{body}"
    );
    assert!(
        body.contains("The vpc ID &apos;vpc-0123456789abcdef0&apos; does not exist"),
        "{body}"
    );
    let (_, code_, _) = ask("DescribeVpcs", "VpcId.1", vpc_id("aws-us-east-1")).await;
    assert_eq!(code_, "InvalidVpcID.NotFound", "another region's VPC");
    let (_, code_, _) = ask("DescribeVpcs", "VpcId.1", "default".into()).await;
    assert_eq!(code_, "InvalidVpcID.Malformed");
    let (status, _, body) = ask("DescribeVpcs", "VpcId.1", vpc_id("local-1")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(values(&body, "vpcId"), [vpc_id("local-1")]);
    let (_, code_, _) = ask(
        "DescribeSubnets",
        "SubnetId.1",
        subnet_id("aws-us-east-1", "us-east-1a"),
    )
    .await;
    assert_eq!(code_, "InvalidSubnetID.NotFound");
    let (_, code_, _) = ask("DescribeSubnets", "SubnetId.1", "subnet-xyz".into()).await;
    assert_eq!(code_, "InvalidSubnetID.Malformed");
    let unknown_filter = gw
        .ec2(
            &[
                ("Action", "DescribeVpcs"),
                ("Filter.1.Name", "colour"),
                ("Filter.1.Value.1", "blue"),
            ],
            creds,
            "local-1",
        )
        .await;
    assert_eq!(code(&unknown_filter.body), "InvalidParameterValue");
}

#[tokio::test]
async fn the_federated_region_lists_every_provider_regions_vpc() {
    use super::networks::vpc_id;
    let gw = TestGateway::new().await;
    let (key, secret) = gw.access_key("demo").await;
    let creds = Some((key.as_str(), secret.as_str()));
    let all = gw
        .ec2(&[("Action", "DescribeVpcs")], creds, "skyport")
        .await;
    assert_eq!(all.status, 200, "{}", all.body);
    assert_eq!(
        values(&all.body, "vpcId"),
        [vpc_id("local-1"), vpc_id("aws-us-east-1")],
        "{}",
        all.body
    );
    let by_cidr = gw
        .ec2(
            &[
                ("Action", "DescribeVpcs"),
                ("Filter.1.Name", "cidr"),
                ("Filter.1.Value.1", "172.31.*"),
            ],
            creds,
            "skyport",
        )
        .await;
    assert_eq!(values(&by_cidr.body, "vpcId"), [vpc_id("aws-us-east-1")]);
    let tagged = gw
        .ec2(
            &[
                ("Action", "DescribeVpcs"),
                ("Filter.1.Name", "tag:Name"),
                ("Filter.1.Value.1", "*"),
            ],
            creds,
            "skyport",
        )
        .await;
    assert_eq!(tagged.status, 200, "{}", tagged.body);
    assert!(
        values(&tagged.body, "vpcId").is_empty(),
        "default VPCs have no tags"
    );
    let one_region = gw
        .ec2(&[("Action", "DescribeVpcs")], creds, "aws-us-east-1")
        .await;
    assert_eq!(values(&one_region.body, "vpcId"), [vpc_id("aws-us-east-1")]);
}

#[test]
fn a_read_is_cached_by_its_parameters_in_any_order_without_its_signature() {
    let key = super::unsigned_parameters;
    let sorted = "Action=DescribeInstances&Filter.1.Name=tag%3Ateam&Version=2016-11-15";
    assert_eq!(key("", sorted), sorted);
    assert_eq!(
        key(
            "Version=2016-11-15",
            "Filter.1.Name=tag%3Ateam&Action=DescribeInstances"
        ),
        sorted,
        "query and form together, in any order"
    );
    // SigV4's presigned parameters and SigV2's are left out; empty pairs too.
    assert_eq!(
        key(
            "X-Amz-Signature=abc&X-Amz-Date=20261206T000000Z",
            "Action=DescribeInstances&&Signature=x&SignatureVersion=2&AWSAccessKeyId=AK&\
             Timestamp=t&Version=2016-11-15&Filter.1.Name=tag%3Ateam&SignatureMethod=m&Expires=e"
        ),
        sorted
    );
    // A parameter named like a signature's only in part is kept; a value is not a name.
    assert_eq!(
        key("", "SignatureX=1&Action=Signature"),
        "Action=Signature&SignatureX=1"
    );
    assert_ne!(
        key("", "Action=DescribeInstances&Version=2016-11-15"),
        key("", sorted)
    );
    assert_eq!(key("", ""), "");
}

#[tokio::test]
async fn a_client_token_names_one_launch_and_refuses_another() {
    let (gw, (key, secret), ami) = demo_with_an_image().await;
    let creds = Some((key.as_str(), secret.as_str()));
    // User data is compared by its bytes: the retry spells "#!/bin/sh\n" with whitespace
    // around its base64, and is the same launch.
    let run = |itype: &'static str, user_data: &'static str| {
        let ami = ami.clone();
        let gw = &gw;
        async move {
            gw.ec2(
                &[
                    ("Action", "RunInstances"),
                    ("ImageId", &ami),
                    ("InstanceType", itype),
                    ("MinCount", "1"),
                    ("MaxCount", "1"),
                    ("UserData", user_data),
                    ("ClientToken", "deploy-42"),
                ],
                creds,
                "local-1",
            )
            .await
        }
    };
    let instance_id = |body: &str| first(body, "instanceId");
    let first = run("sp.micro", "IyEvYmluL3NoCg==").await;
    assert_eq!(first.status, 200, "{}", first.body);
    let retried = run("sp.micro", " IyEvYmluL3NoCg==\n").await;
    assert_eq!(retried.status, 200, "{}", retried.body);
    assert_eq!(instance_id(&retried.body), instance_id(&first.body));
    for (itype, user_data) in [
        ("sp.small", "IyEvYmluL3NoCg=="),
        ("sp.micro", "IyEvYmluL2Jhc2gK"),
    ] {
        let other = run(itype, user_data).await;
        assert_eq!(
            (other.status, code(&other.body)),
            (400, "IdempotentParameterMismatch"),
            "{itype} {user_data}: {}",
            other.body
        );
    }
    let described = gw
        .ec2(&[("Action", "DescribeInstances")], creds, "local-1")
        .await;
    assert_eq!(described.body.matches("<instanceId>").count(), 1);
}
