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
    let gw = TestGateway::new().await;
    let (key, secret) = gw.access_key("demo").await;
    let creds = Some((key.as_str(), secret.as_str()));
    let images = gw
        .ec2(&[("Action", "DescribeImages")], creds, "local-1")
        .await;
    let ami = images
        .body
        .split("<imageId>")
        .nth(1)
        .and_then(|r| r.split("</imageId>").next())
        .unwrap()
        .to_string();
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
    let id = run
        .body
        .split("<instanceId>")
        .nth(1)
        .and_then(|r| r.split("</instanceId>").next())
        .unwrap()
        .to_string();
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
