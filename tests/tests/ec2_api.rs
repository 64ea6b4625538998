//! The EC2 Query API end to end: the unmodified boto3 and AWS CLI against Skyport over TLS,
//! with real QEMU behind region `local-1` and a real moto server behind `aws-us-east-1`.
#![forbid(unsafe_code)]

use serde_json::json;
use skyport_e2e::ec2::{access_key, aws_cli, scenario, Moto};
use skyport_e2e::{assert_guest_image_prepared, default_config, Gateway, GatewayOptions};

fn gateway_with_moto(moto: &Moto, config: Option<String>) -> Gateway {
    Gateway::start_with(GatewayOptions {
        config,
        extra: moto.provider_config("aws-us-east-1"),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_in_both_regions_federated_view_isolation_and_one_bill() {
    assert_guest_image_prepared();
    let moto = Moto::start();
    let config = default_config().replace(
        "[tenants.demo]\n",
        "[tenants.demo]\ndefault_region = \"aws-us-east-1\"\n",
    );
    let gw = gateway_with_moto(&moto, Some(config));
    let demo = access_key(&gw, "demo").await;
    let acme = access_key(&gw, "acme").await;

    let mut keepers = serde_json::Map::new();
    for region in ["local-1", "aws-us-east-1"] {
        let out = scenario(&gw, "lifecycle", json!({"demo": demo, "region": region}));
        let result: serde_json::Value =
            serde_json::from_str(out.trim().lines().last().unwrap()).unwrap();
        keepers.insert(region.to_string(), result["keeper"].clone());
    }
    let expect: Vec<&serde_json::Value> = keepers.values().collect();
    scenario(
        &gw,
        "federated",
        json!({"demo": demo, "expect": expect, "per_region": keepers, "default_region": "aws-us-east-1"}),
    );
    for (region, instance) in &keepers {
        scenario(
            &gw,
            "isolation",
            json!({"demo": demo, "acme": acme, "region": region, "instance": instance}),
        );
    }

    // The AWS CLI, unmodified, sees the same instances.
    let (code, out, err) = aws_cli(&gw, &demo, "skyport", &["ec2", "describe-instances"]);
    assert_eq!(code, 0, "{err}");
    for instance in keepers.values() {
        assert!(out.contains(instance.as_str().unwrap()), "{out}");
    }
    assert!(
        !out.contains("ami-03cf127a"),
        "a remote image id leaked: {out}"
    );

    scenario(&gw, "cleanup", json!({"demo": demo, "per_region": keepers}));

    // One bill for demo with lines from both providers; the subtotals add up to the total.
    let token = gw.token("demo", None, &[]);
    let bill = gw.get_json("/v1/bill", &token).await;
    let providers: std::collections::BTreeSet<&str> = bill["lines"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["provider"].as_str())
        .collect();
    assert!(
        providers.contains("local-vmm") && providers.contains("aws-us-east-1"),
        "{bill}"
    );
    let subtotal: i64 = bill["subtotals"]["providers"]
        .as_object()
        .unwrap()
        .values()
        .map(skyport_e2e::cents)
        .sum();
    assert_eq!(subtotal, skyport_e2e::cents(&bill["total"]), "{bill}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signature_date_action_id_errors_and_throttling_with_retry() {
    let config = default_config().replace(
        "[tenants.acme]\ndepartments = [\"ops\"]",
        "[tenants.acme]\ndepartments = [\"ops\"]\nrequests_per_second = 2\nburst = 3",
    );
    let gw = Gateway::start_with(GatewayOptions {
        config: Some(config),
        ..Default::default()
    });
    let demo = access_key(&gw, "demo").await;
    let acme = access_key(&gw, "acme").await;
    scenario(&gw, "errors", json!({"demo": demo, "region": "local-1"}));
    let out = scenario(
        &gw,
        "throttle",
        json!({"acme": acme, "region": "local-1", "burst": 10}),
    );
    assert!(out.contains("\"throttled\""), "{out}");
    let metrics = gw.metrics_text().await;
    assert!(
        metrics.contains("route=\"ec2:DescribeRegions\""),
        "EC2 actions are counted by action"
    );
}

#[tokio::test]
async fn keys_from_the_cli_work_and_revocation_takes_effect() {
    let gw = Gateway::start();
    let state_dir = gw.state_dir.display().to_string();
    let (code, out) = skyport_e2e::run_cli(&[
        "keys",
        "create",
        "--tenant",
        "demo",
        "--dept",
        "finance",
        "--state-dir",
        &state_dir,
    ]);
    assert_eq!(code, 0, "{out}");
    let field = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
            .unwrap()
    };
    let key = json!({"access_key_id": field("access_key_id"), "secret_access_key": field("secret_access_key")});
    let (code, out, err) = aws_cli(&gw, &key, "local-1", &["ec2", "describe-regions"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("local-1"));

    // Listed without the secret, by the CLI and the admin API.
    let (code, listed) = skyport_e2e::run_cli(&["keys", "list", "--state-dir", &state_dir]);
    assert_eq!(code, 0);
    assert!(
        listed.contains(key["access_key_id"].as_str().unwrap())
            && listed.contains("department=finance")
    );
    assert!(!listed.contains(key["secret_access_key"].as_str().unwrap()));
    let admin = gw.token("demo", None, &["admin"]);
    let keys = gw.get_json("/admin/keys?tenant=demo", &admin).await;
    assert!(!keys
        .to_string()
        .contains(key["secret_access_key"].as_str().unwrap()));
    let tenant = gw.token("demo", None, &[]);
    assert_eq!(gw.get("/admin/keys", &tenant).await.status(), 403);
    let (code, _) = skyport_e2e::run_cli(&[
        "keys",
        "create",
        "--tenant",
        "nobody",
        "--state-dir",
        &state_dir,
    ]);
    assert_eq!(code, 1);

    // Revoked through the admin API: refused at once.
    let id = key["access_key_id"].as_str().unwrap();
    assert_eq!(
        gw.delete(&format!("/admin/keys/{id}"), &admin)
            .await
            .status(),
        200
    );
    let (code, _, err) = aws_cli(&gw, &key, "local-1", &["ec2", "describe-regions"]);
    assert_ne!(code, 0);
    assert!(err.contains("AuthFailure"), "{err}");
    assert_eq!(
        gw.delete(&format!("/admin/keys/{id}"), &admin)
            .await
            .status(),
        409
    );
}
