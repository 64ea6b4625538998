//! The `eucalyptus` provider end to end, against the test-only Eucalyptus shim in front of
//! moto (SigV2, `/services/compute`, API 2014-06-15, `emi-` ids, clusters): its dialect,
//! not a live Eucalyptus. With local-vmm (QEMU) and the `ec2` provider (moto) beside it,
//! one tenant's instances on all three appear in the federated region and on one bill.
#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use serde_json::json;
use skyport_e2e::ec2::{access_key, aws_cli, scenario, EucaShim, Moto};
use skyport_e2e::{assert_guest_image_prepared, default_config, Gateway, GatewayOptions};

async fn create_running(gw: &Gateway, token: &str, region: &str) -> String {
    let r = gw
        .post(
            "/v1/instances?wait=running",
            token,
            Some(json!({"image": "skyport-tiny", "instance_type": "sp.micro", "region": region})),
        )
        .await;
    assert_eq!(r.status(), 202, "{region}");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["region"], region);
    assert_eq!(body["state"], "running");
    body["id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_providers_one_federated_view_one_bill_and_a_failing_cloud_fails_fast() {
    assert_guest_image_prepared();
    let moto = Moto::start();
    let mut shim = EucaShim::start();
    let config = default_config()
        .replace(
            "[tenants.demo]\n",
            "[tenants.demo]\ndefault_region = \"aws-us-east-1\"\n",
        )
        .replace(
            "health_probe_interval_secs = 30",
            "health_probe_interval_secs = 1",
        );
    let gw = Gateway::start_with(GatewayOptions {
        config: Some(config),
        extra: moto.provider_config("aws-us-east-1") + &shim.provider_config("eucalyptus"),
    });
    let token = gw.token("demo", None, &[]);
    let admin = gw.token("demo", None, &["admin"]);

    // The native API: the whole lifecycle on the Eucalyptus cloud.
    let euca = create_running(&gw, &token, "euca-1").await;
    let path = format!("/v1/instances/{euca}");
    let r = gw
        .post(&format!("{path}/stop?wait=stopped"), &token, None)
        .await;
    assert_eq!(r.status(), 202);
    let r = gw
        .client()
        .patch(gw.url(&path))
        .bearer_auth(&token)
        .json(&json!({"instance_type": "sp.small"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = gw
        .post(&format!("{path}/start?wait=running"), &token, None)
        .await;
    assert_eq!(r.status(), 202);
    let got = gw.get_json(&path, &token).await;
    assert_eq!(
        (got["provider"].as_str(), got["instance_type"].as_str()),
        (Some("eucalyptus"), Some("sp.small"))
    );

    // The EC2 API, unmodified boto3 and AWS CLI, in region euca-1.
    let demo = access_key(&gw, "demo").await;
    scenario(&gw, "lifecycle", json!({"demo": demo, "region": "euca-1"}));
    // The AWS CLI: run, stop, resize, start, terminate.
    let cli = |args: &[&str]| -> serde_json::Value {
        let (code, out, err) = aws_cli(&gw, &demo, "euca-1", args);
        assert_eq!(code, 0, "aws {args:?}: {err}");
        if out.trim().is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&out).unwrap()
        }
    };
    let image = cli(&["ec2", "describe-images"])["Images"][0]["ImageId"]
        .as_str()
        .unwrap()
        .to_string();
    let run = cli(&[
        "ec2",
        "run-instances",
        "--image-id",
        &image,
        "--instance-type",
        "sp.micro",
        "--count",
        "1",
    ]);
    let cli_id = run["Instances"][0]["InstanceId"]
        .as_str()
        .unwrap()
        .to_string();
    cli(&["ec2", "stop-instances", "--instance-ids", &cli_id]);
    cli(&["ec2", "wait", "instance-stopped", "--instance-ids", &cli_id]);
    cli(&[
        "ec2",
        "modify-instance-attribute",
        "--instance-id",
        &cli_id,
        "--instance-type",
        "Value=sp.small",
    ]);
    cli(&["ec2", "start-instances", "--instance-ids", &cli_id]);
    cli(&["ec2", "wait", "instance-running", "--instance-ids", &cli_id]);
    let described = cli(&["ec2", "describe-instances", "--instance-ids", &cli_id]);
    assert_eq!(
        described["Reservations"][0]["Instances"][0]["InstanceType"],
        "sp.small"
    );
    let gone = cli(&["ec2", "terminate-instances", "--instance-ids", &cli_id]);
    assert_eq!(
        gone["TerminatingInstances"][0]["InstanceId"],
        cli_id.as_str()
    );

    let (code, out, err) = aws_cli(&gw, &demo, "euca-1", &["ec2", "describe-instances"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&euca) && out.contains("euca-1a"), "{out}");
    assert!(
        !out.contains("emi-") && !out.contains("cluster01"),
        "the cloud's own names leaked: {out}"
    );

    // One instance on each provider: together in the federated region.
    let local = create_running(&gw, &token, "local-1").await;
    let aws = create_running(&gw, &token, "aws-us-east-1").await;
    let per_region = json!({"local-1": local, "aws-us-east-1": aws, "euca-1": euca});
    scenario(
        &gw,
        "federated",
        json!({"demo": demo, "expect": [local, aws, euca], "per_region": per_region, "default_region": "aws-us-east-1"}),
    );
    scenario(
        &gw,
        "cleanup",
        json!({"demo": demo, "per_region": per_region}),
    );

    // One bill, a subtotal per provider, adding up to the total.
    let bill = gw.get_json("/v1/bill", &token).await;
    let subtotals = bill["subtotals"]["providers"].as_object().unwrap();
    for provider in ["local-vmm", "aws-us-east-1", "eucalyptus"] {
        assert!(subtotals.contains_key(provider), "{bill}");
    }
    assert_eq!(
        subtotals.values().map(skyport_e2e::cents).sum::<i64>(),
        skyport_e2e::cents(&bill["total"]),
        "{bill}"
    );

    // The cloud goes away: the health probe marks it, and its requests fail fast with the
    // reason, while the other providers keep serving.
    shim.stop();
    let deadline = Instant::now() + Duration::from_secs(20);
    let reason = loop {
        let plugins = gw.get_json("/admin/plugins", &admin).await;
        let euca = plugins["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "eucalyptus")
            .unwrap()
            .clone();
        if euca["health"]["healthy"] == false {
            break euca["health"]["reason"].as_str().unwrap().to_string();
        }
        assert!(
            Instant::now() < deadline,
            "eucalyptus never became unhealthy"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(reason.contains("could not be reached"), "{reason}");
    assert!(gw
        .metrics_text()
        .await
        .contains(r#"skyport_plugin_healthy{plugin="eucalyptus"} 0"#));
    let started = Instant::now();
    let r = gw
        .post(
            "/v1/instances",
            &token,
            Some(json!({"image": "skyport-tiny", "instance_type": "sp.micro", "region": "euca-1"})),
        )
        .await;
    let problem = skyport_e2e::expect_problem(r, 503).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "did not fail fast"
    );
    assert!(
        problem["detail"].as_str().unwrap().contains("unhealthy"),
        "{problem}"
    );
    let (code, _, err) = aws_cli(
        &gw,
        &demo,
        "euca-1",
        &[
            "ec2",
            "run-instances",
            "--image-id",
            "ami-00000000000000000",
            "--count",
            "1",
        ],
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("InvalidAMIID") || err.contains("Unavailable"),
        "{err}"
    );
    // Nothing half-created; the other providers still serve.
    let listed = gw
        .get_json("/v1/instances?region=euca-1&state=pending", &token)
        .await;
    assert!(
        listed["instances"].as_array().unwrap().is_empty(),
        "{listed}"
    );
    assert_eq!(gw.get("/v1/regions", &token).await.status(), 200);
}
