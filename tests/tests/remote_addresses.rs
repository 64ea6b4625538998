//! The `ec2` provider's network view end to end, against a real moto server as the
//! remote cloud: an instance created through the native API with a key pair and user data
//! shows the addresses moto itself reports, moto's instance carries the key imported as
//! `skyport-<sha256 prefix>` and the user data, and the region shows moto's default VPC.
#![forbid(unsafe_code)]

use std::process::Command;

use serde_json::{json, Value};
use skyport_e2e::ec2::{access_key, venv_bin, Moto};
use skyport_e2e::{Gateway, GatewayOptions};

/// boto3 on both sides: `key` makes a key pair through Skyport's EC2 API, `moto` asks moto
/// directly about the instance Skyport tagged `skyport:id`.
const PROBE: &str = r#"
import base64, hashlib, json, sys
import boto3

mode, args = sys.argv[1], json.loads(sys.argv[2])
if mode == "key":
    ec2 = boto3.client("ec2", region_name=args["region"], endpoint_url=args["endpoint"],
                       aws_access_key_id=args["key"]["access_key_id"],
                       aws_secret_access_key=args["key"]["secret_access_key"], verify=args["ca"])
    ec2.create_key_pair(KeyName=args["name"], KeyType="ed25519")
    pair = ec2.describe_key_pairs(KeyNames=[args["name"]], IncludePublicKey=True)["KeyPairs"][0]
    line = pair["PublicKey"].strip()
    print(json.dumps({"public_key": line,
                      "remote_name": "skyport-" + hashlib.sha256(line.encode()).hexdigest()[:16]}))
elif mode == "moto":
    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=args["moto"],
                       aws_access_key_id="moto-test", aws_secret_access_key="moto-test-secret")
    found = [i for r in ec2.describe_instances(
                 Filters=[{"Name": "tag:skyport:id", "Values": [args["id"]]}])["Reservations"]
             for i in r["Instances"]]
    assert len(found) == 1, found
    instance = found[0]
    user_data = ec2.describe_instance_attribute(
        InstanceId=instance["InstanceId"], Attribute="userData")["UserData"].get("Value")
    keys = [k["KeyName"] for k in ec2.describe_key_pairs()["KeyPairs"]]
    print(json.dumps({
        "private_ip": instance.get("PrivateIpAddress"),
        "public_ip": instance.get("PublicIpAddress"),
        "private_dns": instance.get("PrivateDnsName"),
        "public_dns": instance.get("PublicDnsName"),
        "mac": next((n["MacAddress"] for n in instance.get("NetworkInterfaces", [])
                     if n.get("Attachment", {}).get("DeviceIndex") == 0), None),
        "zone": instance["Placement"]["AvailabilityZone"],
        "key_name": instance.get("KeyName"),
        "user_data": base64.b64decode(user_data).decode() if user_data else None,
        "key_pairs": keys,
    }))
"#;

/// Runs [`PROBE`] in `mode` with `args`; its JSON answer.
fn probe(mode: &str, args: Value) -> Value {
    let out = Command::new(venv_bin("python"))
        .args(["-c", PROBE, mode, &args.to_string()])
        .env_remove("AWS_PROFILE")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "probe {mode} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim().lines().last().unwrap_or_default()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_addresses_key_user_data_and_default_vpc_reach_the_native_api() {
    let moto = Moto::start();
    let gw = Gateway::start_with(GatewayOptions {
        config: None,
        extra: moto.provider_config("aws-us-east-1"),
    });
    let token = gw.token("demo", None, &[]);
    let demo = access_key(&gw, "demo").await;

    // The region shows moto's default VPC and its default subnet in the region's zone.
    let regions = gw.get_json("/v1/regions", &token).await;
    let region = regions["regions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "aws-us-east-1")
        .unwrap_or_else(|| panic!("no aws-us-east-1 in {regions}"))
        .clone();
    assert_eq!(region["cidr"], "172.31.0.0/16", "{region}");
    assert_eq!(
        region["subnets"],
        json!([{"zone": "aws-us-east-1a", "cidr": "172.31.0.0/20"}]),
        "{region}"
    );

    // A key pair of demo's, made through Skyport's EC2 API.
    let key = probe(
        "key",
        json!({"endpoint": format!("https://{}", gw.api), "ca": gw.cert_path("ca.pem"),
               "region": "aws-us-east-1", "key": demo, "name": "addresses-key"}),
    );
    let user_data = "#cloud-config\nruncmd:\n  - echo hello from skyport\n";
    let response = gw
        .post(
            "/v1/instances?wait=running",
            &token,
            Some(json!({"image": "skyport-tiny", "instance_type": "sp.micro",
                        "region": "aws-us-east-1", "key_name": "addresses-key",
                        "user_data": user_data})),
        )
        .await;
    let status = response.status();
    let created: Value = response.json().await.unwrap();
    assert_eq!(status, 202, "{created}");
    assert_eq!(created["state"], "running", "{created}");
    let id = created["id"].as_str().unwrap().to_string();

    let path = format!("/v1/instances/{id}");
    let got = gw.get_json(&path, &token).await;
    let network = &got["network"];
    let remote = probe("moto", json!({"moto": moto.endpoint, "id": id}));
    assert!(remote["private_ip"].is_string(), "{remote}");
    assert_eq!(
        network["private_ip"], remote["private_ip"],
        "{got}\n{remote}"
    );
    assert_eq!(network["public_ip"], remote["public_ip"], "{got}\n{remote}");
    assert_eq!(network["private_dns"], remote["private_dns"], "{got}");
    assert_eq!(network["public_dns"], remote["public_dns"], "{got}");
    assert_eq!(network["mac"], remote["mac"], "{got}\n{remote}");
    assert_eq!(remote["zone"], "us-east-1a", "{remote}");
    assert_eq!(network["zone"], "aws-us-east-1a", "{got}");
    assert!(
        network.get("ssh_endpoint").is_none(),
        "nothing invented: {got}"
    );

    // moto's instance has demo's key (imported under its hash name) and the user data.
    assert_eq!(remote["key_name"], key["remote_name"], "{remote}\n{key}");
    assert!(
        remote["key_pairs"]
            .as_array()
            .unwrap()
            .contains(&key["remote_name"]),
        "{remote}"
    );
    assert_eq!(remote["user_data"], user_data, "{remote}");

    // Stopped: still addressed as moto says; terminated: no addresses.
    let stopped = gw
        .post(&format!("{path}/stop?wait=stopped"), &token, None)
        .await;
    assert_eq!(stopped.status(), 202);
    let got = gw.get_json(&path, &token).await;
    let remote = probe("moto", json!({"moto": moto.endpoint, "id": id}));
    assert_eq!(got["network"]["private_ip"], remote["private_ip"], "{got}");
    let deleted = gw.delete(&path, &token).await;
    assert_eq!(deleted.status(), 200);
    let got = gw.get_json(&path, &token).await;
    assert_eq!(got["state"], "terminated", "{got}");
    assert!(got["network"].is_null(), "{got}");
}
