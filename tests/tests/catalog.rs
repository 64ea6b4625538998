//! The service catalog end to end: each tenant sees exactly what its plan lets it order.
#![forbid(unsafe_code)]

use skyport_e2e::{config_with_acme_plan, expect_problem, Gateway, GatewayOptions};

#[tokio::test]
async fn offerings_follow_each_tenants_plan() {
    let config = config_with_acme_plan("dev-only");
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
    // The built-in offering of raw requests comes last, with what a caller may set.
    assert_eq!(names, ["dev-vm", "prod-vm", "web-dr", "raw"]);
    let raw = &demo["offerings"][3];
    assert_eq!(raw["resources"][0]["type"], "compute");
    assert_eq!(
        raw["user_params"],
        serde_json::json!(["image", "instance_type", "region", "provider"])
    );
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
    let config = config_with_acme_plan("no-raw");
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

/// A PUT or DELETE on the admin catalog API.
async fn admin_send(
    gw: &Gateway,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<serde_json::Value>,
) -> reqwest::Response {
    let mut request = gw.client().request(method, gw.url(path)).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn administrators_change_the_catalog_at_run_time_and_it_survives_a_restart() {
    let mut gw = Gateway::start();
    let admin = gw.token("demo", None, &["admin"]);
    let demo = gw.token("demo", None, &[]);
    let names = |offerings: &serde_json::Value| -> Vec<String> {
        offerings["offerings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        names(&gw.get_json("/v1/offerings", &demo).await),
        ["dev-vm", "prod-vm", "web-dr", "raw"]
    );

    // Tenants may not touch the catalog.
    expect_problem(
        admin_send(
            &gw,
            reqwest::Method::PUT,
            "/admin/offerings/big-vm",
            &demo,
            Some(serde_json::json!({"blueprint": "single-vm"})),
        )
        .await,
        403,
    )
    .await;

    // A new offering, then the plan that lists it: the tenant sees it at once.
    let big = serde_json::json!({
        "description": "A large VM",
        "blueprint": "single-vm",
        "params": {"tier": "prod"},
        "defaults": {"image": "skyport-tiny", "instance_type": "sp.large"},
        "user_params": ["image"],
    });
    let r = admin_send(
        &gw,
        reqwest::Method::PUT,
        "/admin/offerings/big-vm",
        &admin,
        Some(big),
    )
    .await;
    assert_eq!(r.status(), 201);
    let mut standard = gw.get_json("/admin/plans/standard", &admin).await;
    standard["offerings"]
        .as_array_mut()
        .unwrap()
        .push("big-vm".into());
    let r = admin_send(
        &gw,
        reqwest::Method::PUT,
        "/admin/plans/standard",
        &admin,
        Some(standard),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        names(&gw.get_json("/v1/offerings", &demo).await),
        ["big-vm", "dev-vm", "prod-vm", "web-dr", "raw"]
    );
    let explained = gw
        .post(
            "/v1/placement/explain",
            &demo,
            Some(serde_json::json!({"offering": "big-vm"})),
        )
        .await;
    assert_eq!(explained.status(), 200);
    let explained: serde_json::Value = explained.json().await.unwrap();
    assert_eq!(explained["params"]["instance_type"]["value"], "sp.large");

    // Bad changes name the field, and change nothing.
    for (path, body, field) in [
        (
            "/admin/offerings/ghost",
            serde_json::json!({"blueprint": "nowhere"}),
            "offerings.ghost.blueprint",
        ),
        (
            "/admin/offerings/typo",
            serde_json::json!({"blueprint": "single-vm", "colour": 1}),
            "offerings.typo",
        ),
        (
            "/admin/blueprints/web-dr",
            serde_json::json!({"resources": [{"name": "a", "type": "storage"}]}),
            "blueprints.web-dr.resources[0].type",
        ),
        (
            "/admin/plans/standard",
            serde_json::json!({"offerings": ["dev-vm"], "raw": "yes"}),
            "plans.standard.raw",
        ),
    ] {
        let problem = expect_problem(
            admin_send(&gw, reqwest::Method::PUT, path, &admin, Some(body)).await,
            400,
        )
        .await;
        assert!(
            problem["detail"].as_str().unwrap().contains(field),
            "{field}: {problem}"
        );
    }
    // A deletion others still refer to is refused, naming them.
    let problem = expect_problem(
        admin_send(
            &gw,
            reqwest::Method::DELETE,
            "/admin/blueprints/single-vm",
            &admin,
            None,
        )
        .await,
        409,
    )
    .await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("offerings.dev-vm.blueprint"),
        "{problem}"
    );
    expect_problem(
        admin_send(
            &gw,
            reqwest::Method::DELETE,
            "/admin/plans/nope",
            &admin,
            None,
        )
        .await,
        404,
    )
    .await;

    // Deleting web-dr from the plan and then the offering: both go.
    let mut standard = gw.get_json("/admin/plans/standard", &admin).await;
    standard["offerings"] = serde_json::json!(["big-vm", "dev-vm", "prod-vm"]);
    let r = admin_send(
        &gw,
        reqwest::Method::PUT,
        "/admin/plans/standard",
        &admin,
        Some(standard),
    )
    .await;
    assert_eq!(r.status(), 200);
    let r = admin_send(
        &gw,
        reqwest::Method::DELETE,
        "/admin/offerings/web-dr",
        &admin,
        None,
    )
    .await;
    assert_eq!(r.status(), 200);

    // The changes are stored: after a kill -9 and restart they are still in force, the
    // deleted offering (still in the configuration file) included.
    gw.kill9_and_restart();
    let demo = gw.token("demo", None, &[]);
    let admin = gw.token("demo", None, &["admin"]);
    assert_eq!(
        names(&gw.get_json("/v1/offerings", &demo).await),
        ["big-vm", "dev-vm", "prod-vm", "raw"]
    );
    let offerings = gw.get_json("/admin/offerings", &admin).await;
    assert!(
        offerings["offerings"].get("web-dr").is_none(),
        "{offerings}"
    );
    assert_eq!(
        offerings["offerings"]["big-vm"]["defaults"]["instance_type"],
        "sp.large"
    );
}
