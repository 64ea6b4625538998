//! Orders by offering, end to end with real QEMU: the five decision points, explain equals
//! create, a missing parameter stops the order (nothing created), plan limits.
#![forbid(unsafe_code)]

use serde_json::{json, Value};
use skyport_e2e::ec2::{access_key, scenario, Moto};
use skyport_e2e::{config_with_acme_plan, default_config, expect_problem, Gateway, GatewayOptions};

fn gateway() -> Gateway {
    let config = config_with_acme_plan("dev-only");
    Gateway::start_with(GatewayOptions {
        config: Some(config),
        extra: r#"
[plans.dev-only]
offerings = ["dev-vm", "bare-vm"]

[offerings.bare-vm]
description = "No image default: the caller must choose one"
blueprint = "single-vm"
defaults = { instance_type = "sp.micro" }
user_params = ["image"]
"#
        .into(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offering_is_placed_as_explained_and_remembers_each_decision_point() {
    skyport_e2e::assert_guest_image_prepared();
    let gw = gateway();
    let demo = gw.token("demo", Some("finance"), &[]);
    let order =
        json!({"offering": "dev-vm", "params": {"instance_type": "sp.small"}, "name": "dev-1"});

    let explained = gw
        .post("/v1/placement/explain", &demo, Some(order.clone()))
        .await;
    assert_eq!(explained.status(), 200);
    let explained: Value = explained.json().await.unwrap();
    assert_eq!(explained["offering"], "dev-vm");
    assert_eq!(explained["resource"], "vm");
    let params = &explained["params"];
    let point = |name: &str| params[name]["set_by"].as_str().unwrap_or("").to_string();
    assert_eq!(params["tier"]["value"], "dev");
    assert_eq!(point("tier"), "offering");
    assert_eq!(params["department"]["value"], "finance");
    assert_eq!(point("department"), "user_context");
    assert_eq!(params["instance_type"]["value"], "sp.small");
    assert_eq!(point("instance_type"), "user_preference");
    assert_eq!(params["image"]["value"], "skyport-tiny");
    assert_eq!(point("image"), "default");
    assert_eq!(params["image"]["source"], "offering dev-vm defaults");
    let chosen: Vec<&Value> = explained["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c.get("lost").is_none())
        .collect();
    assert_eq!(chosen.len(), 1, "{explained}");
    assert_eq!(chosen[0]["provider"], explained["provider"]);

    // Nothing was created by explaining.
    let listed = gw.get_json("/v1/instances", &demo).await;
    assert!(listed["instances"].as_array().unwrap().is_empty());

    let created = gw
        .post("/v1/instances?wait=running", &demo, Some(order))
        .await;
    assert_eq!(created.status(), 202);
    let created: Value = created.json().await.unwrap();
    assert_eq!(created["state"], "running");
    assert_eq!(created["instance_type"], "sp.small");
    assert_eq!(created["image"], "skyport-tiny");
    assert_eq!(created["department"], "finance");
    // Explain equals create.
    assert_eq!(created["provider"], explained["provider"]);
    assert_eq!(created["region"], explained["region"]);
    assert_eq!(created["placement"]["offering"], "dev-vm");
    assert_eq!(created["placement"]["params"]["tier"], "dev");
    for (name, param) in params.as_object().unwrap() {
        assert_eq!(
            created["placement"]["params"][name], param["value"],
            "{name}"
        );
    }
    // Both decisions are stored; operators read them back in full.
    let admin = gw.token("demo", None, &["admin"]);
    for (placement, mode) in [
        (&explained["id"], "explain"),
        (&created["placement"]["id"], "create"),
    ] {
        let path = format!("/admin/placements/{}", placement.as_str().unwrap());
        let record = gw.get_json(&path, &admin).await;
        assert_eq!(record["mode"], mode);
        assert_eq!(record["tenant"], "demo");
        assert_eq!(record["decision"]["provider"], explained["provider"]);
        assert_eq!(record["decision"]["params"], explained["params"]);
        expect_problem(gw.get(&path, &demo).await, 403).await;
    }
    expect_problem(
        gw.get("/admin/placements/pl-00000000000000000", &admin)
            .await,
        404,
    )
    .await;
    let id = created["id"].as_str().unwrap();
    let terminated = gw.delete(&format!("/v1/instances/{id}"), &demo).await;
    assert!(terminated.status().is_success(), "{}", terminated.status());
}

#[tokio::test]
async fn the_cli_explains_an_order_as_the_api_does() {
    let gw = gateway();
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(skyport_e2e::skyport_bin())
            .args(["placement", "explain"])
            .args(args)
            .args([
                "--url",
                &format!("https://{}", gw.api),
                "--tenant",
                "acme",
                "--state-dir",
            ])
            .arg(&gw.state_dir)
            .output()
            .unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    };
    let (code, table, err) = cli(&["--offering", "dev-vm", "--set", "instance_type=sp.small"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        table.starts_with("offering dev-vm resource vm: "),
        "{table}"
    );
    let line = table
        .lines()
        .find(|l| l.trim_start().starts_with("instance_type"))
        .unwrap();
    assert!(
        line.contains("sp.small") && line.contains("user_preference"),
        "{line}"
    );
    assert!(
        table.contains("chosen") && table.contains("placement id: pl-"),
        "{table}"
    );

    let (code, json, _) = cli(&["--offering", "dev-vm", "--json"]);
    assert_eq!(code, Some(0));
    let decision: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(decision["params"]["instance_type"]["value"], "sp.micro");

    let (code, _, err) = cli(&["--offering", "prod-vm"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("not in your plan 'dev-only'"), "{err}");
}

#[tokio::test]
async fn bad_orders_are_refused_before_anything_is_created() {
    let gw = gateway();
    let acme = gw.token("acme", None, &[]);

    // No value and no default for a required parameter: stopped, counted, logged.
    let problem = expect_problem(
        gw.post("/v1/instances", &acme, Some(json!({"offering": "bare-vm"})))
            .await,
        400,
    )
    .await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("parameter 'image' has no value"),
        "{problem}"
    );
    let metrics = gw.metrics_text().await;
    assert!(
        metrics.contains("skyport_placement_missing_parameter_total{parameter=\"image\"} 1"),
        "{metrics}"
    );
    assert!(gw.log().contains("a required parameter has no value"));

    // A parameter the offering does not let callers set.
    let problem = expect_problem(
        gw.post(
            "/v1/instances",
            &acme,
            Some(json!({"offering": "dev-vm", "params": {"provider": "ec2"}})),
        )
        .await,
        400,
    )
    .await;
    assert!(problem["detail"]
        .as_str()
        .unwrap()
        .contains("does not let you set 'provider'"));

    // An offering outside the plan, an unknown one, and explain of the same.
    for path in ["/v1/instances", "/v1/placement/explain"] {
        let problem = expect_problem(
            gw.post(path, &acme, Some(json!({"offering": "prod-vm"})))
                .await,
            403,
        )
        .await;
        assert!(problem["detail"]
            .as_str()
            .unwrap()
            .contains("not in your plan 'dev-only'"));
        expect_problem(
            gw.post(path, &acme, Some(json!({"offering": "nope"})))
                .await,
            400,
        )
        .await;
    }
    // A deployment of two resources is not orderable as one instance.
    let demo = gw.token("demo", None, &[]);
    let problem = expect_problem(
        gw.post("/v1/instances", &demo, Some(json!({"offering": "web-dr"})))
            .await,
        400,
    )
    .await;
    assert!(problem["detail"]
        .as_str()
        .unwrap()
        .contains("order it with POST /v1/deployments"));

    for token in [acme, demo] {
        let listed = gw.get_json("/v1/instances", &token).await;
        assert!(
            listed["instances"].as_array().unwrap().is_empty(),
            "{listed}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ec2_run_instances_orders_an_offering_in_the_federated_region() {
    let moto = Moto::start();
    let config = default_config().replacen(
        "burst = 200\nplan = \"standard\"",
        "burst = 200\nplan = \"cloud-only\"",
        1,
    );
    let gw = Gateway::start_with(GatewayOptions {
        config: Some(config),
        extra: format!(
            "{}\n[plans.cloud-only]\nofferings = [\"dev-vm\"]\nregions = [\"aws-us-east-1\"]\n",
            moto.provider_config("aws-us-east-1")
        ),
    });
    let demo = access_key(&gw, "demo").await;
    scenario(
        &gw,
        "offering",
        json!({"demo": demo, "region": "aws-us-east-1", "outside_plan": "prod-vm"}),
    );
}

/// The default configuration with the metering plugin's rate card made of `rows`, USD.
fn config_with_rate_card(rows: &[&str]) -> String {
    default_config().replacen(
        "file = \"libskyport_metering.so\"",
        &format!(
            "file = \"libskyport_metering.so\"\n\
             config = {{ rate_card = {{ currency = \"USD\", rates = [{}] }} }}",
            rows.join(", ")
        ),
        1,
    )
}

#[tokio::test]
async fn the_cheapest_provider_by_the_live_rate_card_wins_unless_the_caller_pins_one() {
    let moto = Moto::start();
    // moto's region is cheaper than this host for sp.micro; local-1 comes first in order.
    let card = [
        r#"{ sku = "sp.micro", unit = "hour", price = "0.0100" }"#,
        r#"{ sku = "sp.micro", provider = "local-vmm", unit = "hour", price = "0.0050" }"#,
        r#"{ sku = "sp.micro", provider = "aws-us-east-1", unit = "hour", price = "0.0010" }"#,
    ];
    let config = config_with_rate_card(&card);
    let gw = Gateway::start_with(GatewayOptions {
        config: Some(config),
        extra: moto.provider_config("aws-us-east-1"),
    });
    let demo = gw.token("demo", None, &[]);
    let explain = |body: Value| {
        let gw = &gw;
        let demo = demo.clone();
        async move {
            let response = gw.post("/v1/placement/explain", &demo, Some(body)).await;
            assert_eq!(response.status(), 200);
            response.json::<Value>().await.unwrap()
        }
    };

    let cheapest = explain(json!({"offering": "dev-vm"})).await;
    assert_eq!(cheapest["provider"], "aws-us-east-1", "{cheapest}");
    assert_eq!(cheapest["currency"], "USD");
    let local = cheapest["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["provider"] == "local-vmm")
        .unwrap()
        .clone();
    assert_eq!(local["price"], "0.0050");
    assert_eq!(
        local["lost"],
        "costs 0.0050 USD/hour, more than the chosen 0.0010"
    );

    // A caller's region choice pins the provider, whatever it costs.
    let pinned = explain(json!({"offering": "dev-vm", "region": "local-1"})).await;
    assert_eq!(pinned["provider"], "local-vmm", "{pinned}");

    // The create follows the same decision and reports the price.
    let created = gw
        .post("/v1/instances", &demo, Some(json!({"offering": "dev-vm"})))
        .await;
    assert_eq!(created.status(), 202);
    let created: Value = created.json().await.unwrap();
    assert_eq!(created["provider"], "aws-us-east-1");
    assert_eq!(created["placement"]["price_per_hour"], "0.0010");
    let id = created["id"].as_str().unwrap();
    assert!(gw
        .delete(&format!("/v1/instances/{id}"), &demo)
        .await
        .status()
        .is_success());
}

#[tokio::test]
async fn raw_requests_are_the_built_in_offering_placed_by_rules_cost_and_defaults() {
    let moto = Moto::start();
    // moto's region is the cheapest for sp.micro; a rule keeps acme's raw requests off it;
    // initech's default region is this host.
    let card = [
        r#"{ sku = "sp.micro", unit = "hour", price = "0.0100" }"#,
        r#"{ sku = "sp.micro", provider = "aws-us-east-1", unit = "hour", price = "0.0010" }"#,
    ];
    let config = config_with_rate_card(&card);
    let gw = Gateway::start_with(GatewayOptions {
        config: Some(config),
        extra: format!(
            r#"{}
[tenants.initech]
default_region = "local-1"

[[placement.rules]]
name = "acme-raw-at-home"
offerings = ["raw"]
when = 'params.tenant == "acme"'
exclude = {{ providers = ["aws-us-east-1"] }}
"#,
            moto.provider_config("aws-us-east-1")
        ),
    });
    let explain = |tenant: &'static str, body: Value| {
        let gw = &gw;
        let token = gw.token(tenant, None, &[]);
        async move {
            let response = gw.post("/v1/placement/explain", &token, Some(body)).await;
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap();
            (status, body)
        }
    };
    let raw = json!({"image": "skyport-tiny", "instance_type": "sp.micro"});

    // demo: the cheapest region wins, as for any offering.
    let (status, demo) = explain("demo", raw.clone()).await;
    assert_eq!(status, 200, "{demo}");
    assert_eq!(demo["offering"], "raw");
    assert_eq!(demo["provider"], "aws-us-east-1", "{demo}");
    assert_eq!(demo["params"]["image"]["set_by"], "user_preference");

    // acme: the rule for raw requests fires, and its offerings are not touched by it.
    let (_, acme) = explain("acme", raw.clone()).await;
    assert_eq!(acme["provider"], "local-vmm", "{acme}");
    assert_eq!(acme["rules"][0]["rule"], "acme-raw-at-home", "{acme}");
    let (_, acme_dev) = explain("acme", json!({"offering": "dev-vm"})).await;
    assert_eq!(acme_dev["provider"], "aws-us-east-1", "{acme_dev}");

    // initech: its default region is user context; the request's own region beats it.
    let (_, initech) = explain("initech", raw.clone()).await;
    assert_eq!(initech["provider"], "local-vmm", "{initech}");
    assert_eq!(initech["params"]["region"]["set_by"], "user_context");
    let mut to_aws = raw.clone();
    to_aws["region"] = "aws-us-east-1".into();
    let (_, chosen) = explain("initech", to_aws).await;
    assert_eq!(chosen["provider"], "aws-us-east-1", "{chosen}");
    assert_eq!(
        chosen["params"]["region"]["overrode"][0]["value"],
        "local-1"
    );

    // Names that nothing serves are refused, naming what is there.
    for (field, value, expected) in [
        (
            "region",
            "mars-1",
            "unknown region 'mars-1'; choose one of local-1, aws-us-east-1",
        ),
        (
            "provider",
            "gcp",
            "no provider 'gcp' is loaded; choose one of local-vmm, aws-us-east-1",
        ),
    ] {
        let mut body = raw.clone();
        body[field] = value.into();
        let (status, problem) = explain("demo", body).await;
        assert_eq!(status, 400, "{problem}");
        assert_eq!(problem["detail"], expected);
    }

    // A raw create is placed exactly as explained, and its decision is kept for the audit.
    let demo_token = gw.token("demo", None, &[]);
    let created = gw.post("/v1/instances", &demo_token, Some(raw)).await;
    assert_eq!(created.status(), 202);
    let created: Value = created.json().await.unwrap();
    assert_eq!(created["provider"], "aws-us-east-1", "{created}");
    assert_eq!(created["placement"]["offering"], "raw");
    assert_eq!(created["placement"]["price_per_hour"], "0.0010");
    let record = gw
        .get_json(
            &format!(
                "/admin/placements/{}",
                created["placement"]["id"].as_str().unwrap()
            ),
            &gw.token("demo", None, &["admin"]),
        )
        .await;
    assert_eq!(record["decision"]["offering"], "raw", "{record}");
    let id = created["id"].as_str().unwrap();
    assert!(gw
        .delete(&format!("/v1/instances/{id}"), &demo_token)
        .await
        .status()
        .is_success());
}
