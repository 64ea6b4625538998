//! The service catalog end to end: each tenant sees exactly what its plan lets it order.

use skyport_e2e::{default_config, expect_problem, Gateway, GatewayOptions};

#[tokio::test]
async fn offerings_follow_each_tenants_plan() {
    let config = default_config().replacen(
        "departments = [\"ops\"]\nplan = \"standard\"",
        "departments = [\"ops\"]\nplan = \"dev-only\"",
        1,
    );
    let gw = Gateway::start_with(GatewayOptions {
        config: Some(config),
        extra:
            "\n[plans.dev-only]\nofferings = [\"dev-vm\"]\nregions = [\"local-1\"]\nraw = false\n"
                .into(),
    });
    let demo = gw
        .get_json("/v1/offerings", &gw.token("demo", None, &[]))
        .await;
    assert_eq!(demo["plan"], "standard");
    assert_eq!(demo["raw_requests"], true);
    let names: Vec<&str> = demo["offerings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["dev-vm", "prod-vm", "web-dr"]);
    let dev = &demo["offerings"][0];
    assert_eq!(dev["params"]["tier"], "dev");
    assert_eq!(dev["defaults"]["instance_type"], "sp.micro");
    assert_eq!(dev["user_params"][2], "region");
    let dr = &demo["offerings"][2];
    assert_eq!(dr["resources"].as_array().unwrap().len(), 2);
    assert_eq!(dr["separate"]["by"], "region");

    // acme's plan: one offering, one region, no raw requests; never demo's cached answer.
    let acme = gw
        .get_json("/v1/offerings", &gw.token("acme", None, &[]))
        .await;
    assert_eq!(acme["tenant"], "acme");
    assert_eq!(acme["plan"], "dev-only");
    assert_eq!(acme["raw_requests"], false);
    assert_eq!(acme["offerings"].as_array().unwrap().len(), 1);
    assert_eq!(acme["offerings"][0]["name"], "dev-vm");
    let regions = acme["regions"].as_array().unwrap();
    assert!(regions.iter().all(|r| r == "local-1"), "{regions:?}");
}

#[tokio::test]
async fn raw_requests_are_held_to_the_plan() {
    let config = default_config().replacen(
        "departments = [\"ops\"]\nplan = \"standard\"",
        "departments = [\"ops\"]\nplan = \"no-raw\"",
        1,
    );
    let gw = Gateway::start_with(GatewayOptions {
        config: Some(config),
        extra: r#"
[plans.no-raw]
offerings = ["dev-vm"]
raw = false

[plans.far-away]
regions = ["nowhere-1"]

[tenants.initech]
plan = "far-away"
"#
        .into(),
    });
    let gw = &gw;
    let create = |tenant: &'static str, body: serde_json::Value| {
        let token = gw.token(tenant, None, &[]);
        async move {
            let response = gw.post("/v1/instances", &token, Some(body)).await;
            let status = response.status().as_u16();
            (status, expect_problem(response, status).await)
        }
    };
    let raw = serde_json::json!({"image": "skyport-tiny", "instance_type": "sp.micro"});

    let (status, problem) = create("acme", raw.clone()).await;
    assert_eq!(status, 403, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("plan 'no-raw'"),
        "{problem}"
    );

    let mut in_local = raw.clone();
    in_local["region"] = "local-1".into();
    let (status, problem) = create("initech", in_local).await;
    assert_eq!(status, 403, "{problem}");
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("does not include region 'local-1'"),
        "{problem}"
    );
    let (status, problem) = create("initech", raw).await;
    assert_eq!(status, 400, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("nowhere-1"),
        "{problem}"
    );

    // Nothing was created for anyone.
    for tenant in ["acme", "initech"] {
        let list = gw
            .get_json("/v1/instances", &gw.token(tenant, None, &[]))
            .await;
        assert_eq!(list["instances"].as_array().unwrap().len(), 0, "{list}");
    }
}
