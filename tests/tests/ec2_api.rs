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

/// A key made by `skyport keys create ARGS --state-dir STATE_DIR`, as `aws_cli` takes it.
fn cli_key(args: &[&str], state_dir: &str) -> serde_json::Value {
    let command: Vec<&str> = ["keys", "create"]
        .iter()
        .chain(args)
        .chain(&["--state-dir", state_dir])
        .copied()
        .collect();
    let (code, out) = skyport_e2e::run_cli(&command);
    assert_eq!(code, 0, "{out}");
    let field = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
            .unwrap()
    };
    json!({"access_key_id": field("access_key_id"), "secret_access_key": field("secret_access_key")})
}

#[tokio::test]
async fn keys_from_the_cli_work_and_revocation_takes_effect() {
    let gw = Gateway::start();
    let state_dir = gw.state_dir.display().to_string();
    let key = cli_key(&["--tenant", "demo", "--dept", "finance"], &state_dir);
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

    // Revoked from the command line (another process) right after use: the running
    // gateway, which holds the key among its recent ones, stops honouring it within the
    // lookup TTL (5 s).
    let key = cli_key(&["--tenant", "demo"], &state_dir);
    let (code, _, err) = aws_cli(&gw, &key, "local-1", &["ec2", "describe-regions"]);
    assert_eq!(code, 0, "{err}");
    let id = key["access_key_id"].as_str().unwrap();
    let (code, out) = skyport_e2e::run_cli(&["keys", "revoke", id, "--state-dir", &state_dir]);
    assert_eq!(code, 0, "{out}");
    let revoked = std::time::Instant::now();
    let refused_after = loop {
        let (code, _, err) = aws_cli(&gw, &key, "local-1", &["ec2", "describe-regions"]);
        if code != 0 {
            assert!(err.contains("AuthFailure"), "{err}");
            break revoked.elapsed();
        }
        assert!(
            revoked.elapsed() < std::time::Duration::from_secs(12),
            "a key revoked from the command line is still honoured after 12 s (the TTL is 5 s)"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    };
    eprintln!("refused {refused_after:?} after the command line revoked it");
}
