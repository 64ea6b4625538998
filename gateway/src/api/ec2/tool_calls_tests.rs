//! The calls the wider EC2 tool ecosystem makes (Ansible's amazon.aws, Libcloud), through
//! the real stack over the domain's test world: `DryRun` that checks first, transitional
//! states, `DescribeInstanceAttribute`, `DescribeAddresses`, tag specifications for
//! volumes, and AWS names through `[ec2]` aliases.

use crate::testkit::TestGateway;

fn code(body: &str) -> &str {
    body.split("<Code>")
        .nth(1)
        .and_then(|rest| rest.split("</Code>").next())
        .unwrap_or("")
}

fn between<'a>(body: &'a str, open: &str, close: &str) -> &'a str {
    body.split(open)
        .nth(1)
        .and_then(|rest| rest.split(close).next())
        .unwrap_or("")
}

/// The gateway with AWS names for local-1 and sp.micro.
async fn with_aliases() -> TestGateway {
    TestGateway::with_config(|c| {
        c + "\n[ec2.region_aliases]\n\"us-east-1\" = \"local-1\"\n\
             [ec2.instance_type_aliases]\n\"t3.micro\" = \"sp.micro\"\n"
    })
    .await
}

/// skyport-tiny's image id, as `DescribeImages` shows it.
async fn tiny(gw: &TestGateway, creds: Option<(&str, &str)>) -> String {
    let images = gw
        .ec2(&[("Action", "DescribeImages")], creds, "local-1")
        .await;
    between(&images.body, "<imageId>", "</imageId>").to_string()
}

#[tokio::test]
async fn a_dry_run_is_refused_for_what_the_call_would_be_refused_for_and_does_nothing() {
    let gw = TestGateway::new().await;
    let (key, secret) = gw.access_key("demo").await;
    let creds = Some((key.as_str(), secret.as_str()));
    let ami = tiny(&gw, creds).await;
    let run = |image: &'static str, itype: &'static str| {
        vec![
            ("Action", "RunInstances"),
            ("ImageId", image),
            ("InstanceType", itype),
            ("MinCount", "1"),
            ("MaxCount", "1"),
            ("DryRun", "true"),
        ]
    };
    let unknown_image = gw
        .ec2(&run("ami-0000000000000000a", "sp.micro"), creds, "local-1")
        .await;
    assert_eq!(code(&unknown_image.body), "InvalidAMIID.NotFound");
    let ami: &'static str = Box::leak(ami.into_boxed_str());
    let bad_type = gw.ec2(&run(ami, "sp.huge"), creds, "local-1").await;
    assert_eq!(code(&bad_type.body), "InvalidParameterValue");
    let mut bad_key = run(ami, "sp.micro");
    bad_key.push(("KeyName", "nope"));
    let bad_key = gw.ec2(&bad_key, creds, "local-1").await;
    assert_eq!(code(&bad_key.body), "InvalidKeyPair.NotFound");
    let good = gw.ec2(&run(ami, "sp.micro"), creds, "local-1").await;
    assert_eq!(
        (good.status, code(&good.body)),
        (412, "DryRunOperation"),
        "{}",
        good.body
    );
    let listed = gw
        .ec2(&[("Action", "DescribeInstances")], creds, "local-1")
        .await;
    assert!(
        !listed.body.contains("<instanceId>"),
        "nothing was launched"
    );
    let stop_unknown = gw
        .ec2(
            &[
                ("Action", "StopInstances"),
                ("InstanceId.1", "i-0000000000000000a"),
                ("DryRun", "true"),
            ],
            creds,
            "local-1",
        )
        .await;
    assert_eq!(code(&stop_unknown.body), "InvalidInstanceID.NotFound");
}

#[tokio::test]
async fn state_changes_answer_with_ec2s_transitional_states_and_attributes_are_described() {
    let gw = with_aliases().await;
    let (key, secret) = gw.access_key("demo").await;
    let creds = Some((key.as_str(), secret.as_str()));
    let ami = tiny(&gw, creds).await;
    // An AWS type name and a volume tag specification, as Ansible sends them.
    let run = gw
        .ec2(
            &[
                ("Action", "RunInstances"),
                ("ImageId", &ami),
                ("InstanceType", "t3.micro"),
                ("MinCount", "1"),
                ("MaxCount", "1"),
                ("UserData", "IyEvYmluL3NoCmVjaG8gaGkK"),
                ("TagSpecification.1.ResourceType", "volume"),
                ("TagSpecification.1.Tag.1.Key", "Name"),
                ("TagSpecification.1.Tag.1.Value", "root"),
                ("TagSpecification.2.ResourceType", "instance"),
                ("TagSpecification.2.Tag.1.Key", "Name"),
                ("TagSpecification.2.Tag.1.Value", "web"),
            ],
            creds,
            "local-1",
        )
        .await;
    assert_eq!(run.status, 200, "{}", run.body);
    assert!(run.body.contains("<instanceType>sp.micro</instanceType>"));
    let id = between(&run.body, "<instanceId>", "</instanceId>").to_string();
    let attribute = |name: &'static str| {
        let id = id.clone();
        let gw = &gw;
        async move {
            gw.ec2(
                &[
                    ("Action", "DescribeInstanceAttribute"),
                    ("InstanceId", &id),
                    ("Attribute", name),
                ],
                creds,
                "local-1",
            )
            .await
        }
    };
    let itype = attribute("instanceType").await;
    assert!(
        itype
            .body
            .contains("<instanceType><value>sp.micro</value></instanceType>"),
        "{}",
        itype.body
    );
    let data = attribute("userData").await;
    assert!(data
        .body
        .contains("<userData><value>IyEvYmluL3NoCmVjaG8gaGkK</value></userData>"));
    let guard = attribute("disableApiTermination").await;
    assert!(guard.body.contains("<value>false</value>"));
    let groups = attribute("groupSet").await;
    // On its region's network, it is in the VPC's default group.
    assert!(
        groups.body.contains("<groupSet><item><groupId>sg-"),
        "{}",
        groups.body
    );
    assert!(groups.body.contains("<groupName>default</groupName>"));
    let unknown = attribute("colour").await;
    assert_eq!(code(&unknown.body), "InvalidParameterValue");
    let stop = gw
        .ec2(
            &[("Action", "StopInstances"), ("InstanceId.1", &id)],
            creds,
            "local-1",
        )
        .await;
    assert_eq!(
        between(&stop.body, "<currentState>", "</currentState>"),
        "<code>64</code><name>stopping</name>",
        "{}",
        stop.body
    );
    let start = gw
        .ec2(
            &[("Action", "StartInstances"), ("InstanceId.1", &id)],
            creds,
            "local-1",
        )
        .await;
    assert!(start
        .body
        .contains("<currentState><code>0</code><name>pending</name>"));
    let terminate = gw
        .ec2(
            &[("Action", "TerminateInstances"), ("InstanceId.1", &id)],
            creds,
            "local-1",
        )
        .await;
    assert!(terminate
        .body
        .contains("<currentState><code>32</code><name>shutting-down</name>"));
}

#[tokio::test]
async fn aws_names_reach_skyport_regions_and_no_elastic_address_exists() {
    let gw = with_aliases().await;
    let (key, secret) = gw.access_key("demo").await;
    let creds = Some((key.as_str(), secret.as_str()));
    // A credential scoped to the alias acts in local-1.
    let zones = gw
        .ec2(
            &[("Action", "DescribeAvailabilityZones")],
            creds,
            "us-east-1",
        )
        .await;
    assert_eq!(zones.status, 200, "{}", zones.body);
    assert!(zones.body.contains("local-1a"), "{}", zones.body);
    let regions = gw
        .ec2(&[("Action", "DescribeRegions")], creds, "us-east-1")
        .await;
    assert!(regions.body.contains("<regionName>us-east-1</regionName>"));
    let unaliased = gw
        .ec2(&[("Action", "DescribeRegions")], creds, "eu-west-1")
        .await;
    assert_eq!(code(&unaliased.body), "AuthFailure");
    let addresses = gw
        .ec2(&[("Action", "DescribeAddresses")], creds, "local-1")
        .await;
    assert!(
        addresses.body.contains("<addressesSet></addressesSet>"),
        "{}",
        addresses.body
    );
    let named = gw
        .ec2(
            &[
                ("Action", "DescribeAddresses"),
                ("PublicIp.1", "203.0.113.7"),
            ],
            creds,
            "local-1",
        )
        .await;
    assert_eq!(code(&named.body), "InvalidAddress.NotFound");
    let bad_filter = gw
        .ec2(
            &[
                ("Action", "DescribeAddresses"),
                ("Filter.1.Name", "colour"),
                ("Filter.1.Value.1", "red"),
            ],
            creds,
            "local-1",
        )
        .await;
    assert_eq!(code(&bad_filter.body), "InvalidParameterValue");
}

#[tokio::test]
async fn an_instances_volume_interface_and_group_are_described_as_part_of_it() {
    let gw = TestGateway::new().await;
    let (key, secret) = gw.access_key("demo").await;
    let creds = Some((key.as_str(), secret.as_str()));
    let ami = tiny(&gw, creds).await;
    let run = gw
        .ec2(
            &[
                ("Action", "RunInstances"),
                ("ImageId", &ami),
                ("MinCount", "1"),
                ("MaxCount", "1"),
            ],
            creds,
            "local-1",
        )
        .await;
    let id = between(&run.body, "<instanceId>", "</instanceId>").to_string();
    let described = gw
        .ec2(
            &[("Action", "DescribeInstances"), ("InstanceId.1", &id)],
            creds,
            "local-1",
        )
        .await;
    let eni = between(
        &described.body,
        "<networkInterfaceId>",
        "</networkInterfaceId>",
    );
    let vpc = between(&described.body, "<vpcId>", "</vpcId>");
    assert!(
        eni.starts_with("eni-") && vpc.starts_with("vpc-"),
        "{}",
        described.body
    );
    let by_instance = |action: &'static str| {
        let id = id.clone();
        let gw = &gw;
        async move {
            gw.ec2(
                &[
                    ("Action", action),
                    ("Filter.1.Name", "attachment.instance-id"),
                    ("Filter.1.Value.1", &id),
                ],
                creds,
                "local-1",
            )
            .await
        }
    };
    let interfaces = by_instance("DescribeNetworkInterfaces").await;
    assert_eq!(
        between(
            &interfaces.body,
            "<networkInterfaceId>",
            "</networkInterfaceId>"
        ),
        eni
    );
    assert!(interfaces
        .body
        .contains(&format!("<instanceId>{id}</instanceId>")));
    let volumes = by_instance("DescribeVolumes").await;
    assert!(
        volumes.body.contains("<device>/dev/vda</device>"),
        "{}",
        volumes.body
    );
    assert!(volumes.body.contains("<status>in-use</status>"));
    let groups = gw
        .ec2(
            &[
                ("Action", "DescribeSecurityGroups"),
                ("Filter.1.Name", "vpc-id"),
                ("Filter.1.Value.1", vpc),
            ],
            creds,
            "local-1",
        )
        .await;
    assert_eq!(
        between(&groups.body, "<groupName>", "</groupName>"),
        "default"
    );
    let unknown_group = gw
        .ec2(
            &[
                ("Action", "DescribeSecurityGroups"),
                ("GroupId.1", "sg-0000000000000000a"),
            ],
            creds,
            "local-1",
        )
        .await;
    assert_eq!(code(&unknown_group.body), "InvalidGroup.NotFound");
    let dns = gw
        .ec2(
            &[
                ("Action", "DescribeVpcAttribute"),
                ("VpcId", vpc),
                ("Attribute", "enableDnsSupport"),
            ],
            creds,
            "local-1",
        )
        .await;
    assert!(dns
        .body
        .contains("<enableDnsSupport><value>true</value></enableDnsSupport>"));
    let launch = gw
        .ec2(
            &[
                ("Action", "DescribeImageAttribute"),
                ("ImageId", &ami),
                ("Attribute", "launchPermission"),
            ],
            creds,
            "local-1",
        )
        .await;
    assert!(
        launch.body.contains("<group>all</group>"),
        "{}",
        launch.body
    );
    let owned_by_self = gw
        .ec2(
            &[("Action", "DescribeImages"), ("Owner.1", "self")],
            creds,
            "local-1",
        )
        .await;
    assert!(
        !owned_by_self.body.contains("<imageId>"),
        "no tenant owns an image"
    );
    let by_alias = gw
        .ec2(
            &[
                ("Action", "DescribeImages"),
                ("Filter.1.Name", "owner-alias"),
                ("Filter.1.Value.1", "amazon"),
            ],
            creds,
            "local-1",
        )
        .await;
    assert!(by_alias.body.contains(&ami));
    // Terminated: its volume and interface are gone.
    gw.ec2(
        &[("Action", "TerminateInstances"), ("InstanceId.1", &id)],
        creds,
        "local-1",
    )
    .await;
    let gone = by_instance("DescribeVolumes").await;
    assert!(!gone.body.contains("<volumeId>"), "{}", gone.body);
}
