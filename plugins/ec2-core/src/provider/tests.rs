//! Unit tests of `provider`.

use std::collections::BTreeMap;

use std::time::Duration;

use super::config::parse_credentials_file;
use super::region_network::REGION_NETWORK_BUDGET;
use super::*;
use std::io::{Read, Write};
use std::sync::Arc;

use skyport_plugin_api::sdk::CallContext;

/// Every request a [`FakeCloud`] got: its form parameters.
type Requests = Arc<Mutex<Vec<BTreeMap<String, String>>>>;

/// A fake EC2 endpoint on a loopback port, answering each request with
/// `answer(action, params)` -> (HTTP status, body) and recording it.
struct FakeCloud {
    endpoint: String,
    requests: Requests,
}

impl FakeCloud {
    fn start(answer: fn(&str, &BTreeMap<String, String>) -> (u16, String)) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let requests = Requests::default();
        let seen = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let params = read_form(&mut stream);
                let action = params.get("Action").cloned().unwrap_or_default();
                let (status, body) = answer(&action, &params);
                seen.lock().unwrap().push(params);
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Self { endpoint, requests }
    }

    /// The requests for `action`.
    fn asked(&self, action: &str) -> Vec<BTreeMap<String, String>> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|p| p.get("Action").map(String::as_str) == Some(action))
            .cloned()
            .collect()
    }
}

/// The form parameters of one HTTP request.
fn read_form(stream: &mut std::net::TcpStream) -> BTreeMap<String, String> {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let header_end = loop {
        let n = stream.read(&mut buf).unwrap_or(0);
        if n == 0 {
            return BTreeMap::new();
        }
        data.extend_from_slice(&buf[..n]);
        if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&data[..header_end]).to_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while data.len() < header_end + length {
        let n = stream.read(&mut buf).unwrap_or(0);
        if n == 0 {
            break;
        }
        data.extend_from_slice(&buf[..n]);
    }
    let body = String::from_utf8_lossy(&data[header_end..]).into_owned();
    reqwest::Url::parse(&format!("http://x/?{body}"))
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn provider(endpoint: &str) -> Provider {
    let creds = std::env::temp_dir().join(format!(
        "skyport-ec2-core-test-{}-{}",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::write(
        &creds,
        "[default]\naws_access_key_id = AK\naws_secret_access_key = SK\n",
    )
    .unwrap();
    let config = json!({
        "endpoint": endpoint,
        "region": "us-east-1",
        "skyport_region": "aws-us-east-1",
        "zones": ["aws-us-east-1a", "aws-us-east-1b"],
        "credentials": {"file": creds.display().to_string()},
        "instance_types": {"sp.micro": "t2.micro"},
        "images": {"skyport-tiny": "ami-03cf127a"},
    });
    let dialect = Dialect {
        name: "test",
        path: "/",
        api_version: "2016-11-15",
        signing: Signing::V4,
        region: "us-east-1",
        skyport_region: |r| format!("aws-{r}"),
        image_prefixes: &["ami-"],
    };
    let provider = Provider::new(config, dialect).unwrap();
    let _ = std::fs::remove_file(creds);
    provider
}

fn op(op: &str, params: Value) -> OpCall {
    OpCall {
        id: 1,
        op: op.into(),
        version: 1,
        params,
        context: CallContext::default(),
    }
}

const ERROR: &str = "<Response><Errors><Error><Code>{code}</Code><Message>m</Message></Error></Errors><RequestID>r</RequestID></Response>";

fn error(status: u16, code: &str) -> (u16, String) {
    (status, ERROR.replace("{code}", code))
}

/// A cloud with a default VPC in two of the Skyport zones' cloud zones and one more.
fn vpc_cloud(action: &str, params: &BTreeMap<String, String>) -> (u16, String) {
    match action {
        "DescribeVpcs" => {
            assert_eq!(params["Filter.1.Name"], "isDefault");
            (200, "<DescribeVpcsResponse><vpcSet><item><vpcId>vpc-1</vpcId><isDefault>true</isDefault><cidrBlock>172.31.0.0/16</cidrBlock></item></vpcSet></DescribeVpcsResponse>".into())
        }
        "DescribeSubnets" => {
            assert_eq!(params["Filter.1.Name"], "vpc-id");
            assert_eq!(params["Filter.1.Value.1"], "vpc-1");
            let subnet = |zone: &str, cidr: &str| {
                format!("<item><vpcId>vpc-1</vpcId><availabilityZone>{zone}</availabilityZone><cidrBlock>{cidr}</cidrBlock><defaultForAz>true</defaultForAz></item>")
            };
            (200, format!("<DescribeSubnetsResponse><subnetSet>{}{}{}</subnetSet></DescribeSubnetsResponse>",
                subnet("us-east-1b", "172.31.16.0/20"), subnet("us-east-1a", "172.31.0.0/20"), subnet("us-east-1c", "172.31.32.0/20")))
        }
        _ => error(400, "InvalidAction"),
    }
}

#[tokio::test]
async fn regions_carry_the_default_vpc_and_its_subnets_asked_once() {
    let cloud = FakeCloud::start(vpc_cloud);
    let provider = provider(&cloud.endpoint);
    let regions = provider.call(op("regions", json!({}))).await.unwrap();
    assert_eq!(
        regions,
        json!([{
            "name": "aws-us-east-1",
            "zones": ["aws-us-east-1a", "aws-us-east-1b"],
            "cidr": "172.31.0.0/16",
            "subnets": [
                {"zone": "aws-us-east-1a", "cidr": "172.31.0.0/20"},
                {"zone": "aws-us-east-1b", "cidr": "172.31.16.0/20"}
            ]
        }])
    );
    let again = provider.call(op("regions", json!({}))).await.unwrap();
    assert_eq!(again, regions);
    assert_eq!(cloud.asked("DescribeVpcs").len(), 1, "cached");
}

#[tokio::test]
async fn regions_without_vpcs_or_without_an_answer_still_answer() {
    // An older Eucalyptus: no VPC actions at all.
    let cloud = FakeCloud::start(|_, _| error(400, "InvalidAction"));
    let provider = provider(&cloud.endpoint);
    let plain = json!([{"name": "aws-us-east-1", "zones": ["aws-us-east-1a", "aws-us-east-1b"]}]);
    assert_eq!(
        provider.call(op("regions", json!({}))).await.unwrap(),
        plain
    );
    assert_eq!(
        provider.call(op("regions", json!({}))).await.unwrap(),
        plain
    );
    assert_eq!(cloud.asked("DescribeVpcs").len(), 1, "a refusal is kept");

    // A cloud that fails (here: always 500) is asked again next time, and the region
    // is answered within the budget either way.
    let failing = FakeCloud::start(|_, _| error(500, "InternalError"));
    let provider = super::tests::provider(&failing.endpoint);
    let started = Instant::now();
    assert_eq!(
        provider.call(op("regions", json!({}))).await.unwrap(),
        plain
    );
    assert!(started.elapsed() <= REGION_NETWORK_BUDGET + Duration::from_secs(1));
    provider.call(op("regions", json!({}))).await.unwrap();
    assert!(failing.asked("DescribeVpcs").len() > 1);
}

/// A pending instance with a private address and empty public ones.
const ITEM: &str = "<item><instanceId>i-1</instanceId><instanceState><code>0</code><name>pending</name></instanceState><privateIpAddress>172.31.0.9</privateIpAddress><ipAddress/><dnsName></dnsName><placement><availabilityZone>us-east-1a</availabilityZone></placement></item>";

fn run_reply() -> String {
    format!("<RunInstancesResponse><instancesSet>{ITEM}</instancesSet></RunInstancesResponse>")
}

fn create_params(keys: &[&str], user_data: Option<&str>) -> Value {
    json!({
        "skyport_id": "i-0123456789abcdef0",
        "idempotency_key": "i-0123456789abcdef0",
        "image": "skyport-tiny",
        "instance_type": "sp.micro",
        "vcpus": 1,
        "memory_mib": 512,
        "ssh_public_keys": keys,
        "user_data": user_data,
    })
}

#[tokio::test]
async fn create_imports_the_first_key_and_passes_the_user_data() {
    let cloud = FakeCloud::start(|action, _| match action {
        "DescribeInstances" => (
            200,
            "<DescribeInstancesResponse><reservationSet/></DescribeInstancesResponse>".into(),
        ),
        // Imported by an earlier create: fine.
        "ImportKeyPair" => error(400, "InvalidKeyPair.Duplicate"),
        "RunInstances" => (200, run_reply()),
        _ => error(400, "InvalidAction"),
    });
    let provider = provider(&cloud.endpoint);
    let key =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl a@b";
    let user_data = base64::engine::general_purpose::STANDARD.encode("#!/bin/sh\necho hi\n");
    let view = provider
        .call(op(
            "instance.create",
            create_params(
                &[&format!("{key}\n"), "ssh-ed25519 AAAA second"],
                Some(&user_data),
            ),
        ))
        .await
        .unwrap();
    assert_eq!(
        view,
        json!({"id": "i-1", "state": "pending", "network": {"private_ip": "172.31.0.9", "zone": "aws-us-east-1a"}})
    );
    let imported = cloud.asked("ImportKeyPair");
    assert_eq!(imported.len(), 1, "only the first key");
    let name = network::key_pair_name(key);
    assert_eq!(imported[0]["KeyName"], name);
    assert_eq!(
        imported[0]["PublicKeyMaterial"],
        base64::engine::general_purpose::STANDARD.encode(key)
    );
    let run = &cloud.asked("RunInstances")[0];
    assert_eq!(run["KeyName"], name);
    assert_eq!(run["UserData"], user_data);
    assert_eq!(run["ClientToken"], "i-0123456789abcdef0");
}

#[tokio::test]
async fn create_without_keys_imports_nothing_and_refuses_bad_user_data() {
    let cloud = FakeCloud::start(|action, _| match action {
        "DescribeInstances" => (
            200,
            "<DescribeInstancesResponse><reservationSet/></DescribeInstancesResponse>".into(),
        ),
        "RunInstances" => (200, run_reply()),
        _ => error(400, "InvalidAction"),
    });
    let provider = provider(&cloud.endpoint);
    provider
        .call(op("instance.create", create_params(&[], None)))
        .await
        .unwrap();
    assert!(cloud.asked("ImportKeyPair").is_empty());
    let run = &cloud.asked("RunInstances")[0];
    assert!(!run.contains_key("KeyName") && !run.contains_key("UserData"));

    let too_big =
        base64::engine::general_purpose::STANDARD.encode(vec![b'x'; MAX_USER_DATA_BYTES + 1]);
    for bad in ["not base64!", too_big.as_str()] {
        let e = provider
            .call(op("instance.create", create_params(&[], Some(bad))))
            .await
            .unwrap_err();
        assert_eq!(e.code.as_str(), error_code::INVALID_INPUT);
    }
    assert_eq!(cloud.asked("RunInstances").len(), 1);
}

#[tokio::test]
async fn state_changes_read_the_addresses_back_but_not_once_terminated() {
    let cloud = FakeCloud::start(|action, _| {
        match action {
        "StopInstances" => (200, "<StopInstancesResponse><instancesSet><item><instanceId>i-1</instanceId><currentState><name>stopping</name></currentState></item></instancesSet></StopInstancesResponse>".into()),
        "TerminateInstances" => (200, "<TerminateInstancesResponse><instancesSet><item><instanceId>i-1</instanceId><currentState><name>terminated</name></currentState></item></instancesSet></TerminateInstancesResponse>".into()),
        "DescribeInstances" => (200, format!("<DescribeInstancesResponse><reservationSet><item><instancesSet>{ITEM}</instancesSet></item></reservationSet></DescribeInstancesResponse>")),
        _ => error(400, "InvalidAction"),
    }
    });
    let provider = provider(&cloud.endpoint);
    let stopped = provider
        .call(op("instance.stop", json!({"id": "i-1"})))
        .await
        .unwrap();
    assert_eq!(stopped["state"], "stopping");
    assert_eq!(stopped["network"]["private_ip"], "172.31.0.9");
    let got = provider
        .call(op("instance.get", json!({"id": "i-1"})))
        .await
        .unwrap();
    assert_eq!(got["network"]["private_ip"], "172.31.0.9");
    let gone = provider
        .call(op("instance.terminate", json!({"id": "i-1"})))
        .await
        .unwrap();
    assert_eq!(gone, json!({"id": "i-1", "state": "terminated"}));
}

#[test]
fn credentials_file_profiles() {
    let text = "[default]\naws_access_key_id = A1\naws_secret_access_key = S1\n\n[other]\naws_access_key_id=A2\naws_secret_access_key=S2\n";
    assert_eq!(
        parse_credentials_file(text, "default")
            .unwrap()
            .access_key_id,
        "A1"
    );
    assert_eq!(
        parse_credentials_file(text, "other")
            .unwrap()
            .secret_access_key,
        "S2"
    );
    assert!(parse_credentials_file(text, "missing").is_none());
    let both = CredentialSource {
        file: Some("x".into()),
        profile: None,
        access_key_id_env: Some("A".into()),
        secret_access_key_env: None,
    };
    assert!(both.load().is_err());
}
