//! Governance end to end: an `enforce` budget prices every order before anything is
//! created and refuses the one that would cross it (native API and EC2 Query API alike),
//! while another department orders freely; `GET /v1/budgets` shows where each stands.
#![forbid(unsafe_code)]

use serde_json::{json, Value};
use skyport_e2e::ec2::aws_cli;
use skyport_e2e::{default_config, expect_problem, Gateway, GatewayOptions};

/// A price no order fits in a budget of cents, unless the month ends within a second.
const RATE_CARD: &str = r#"rate_card = { currency = "USD", rates = [
  { sku = "sp.micro", unit = "hour", price = "36" },
  { sku = "api.requests", unit = "1000-requests", price = "0.001" } ] }"#;

const BUDGETS: &str = r#"
[[budgets]]
name = "finance-cap"
tenant = "demo"
department = "finance"
amount = "0.01"
thresholds = ["50%", "0.01"]
mode = "enforce"

[[budgets]]
name = "demo-watch"
tenant = "demo"
amount = "1000.00"
thresholds = ["80%"]
"#;

fn governed_gateway() -> Gateway {
    let config = default_config().replace(
        "file = \"libskyport_metering.so\"",
        &format!(
            "file = \"libskyport_metering.so\"\nconfig = {{ {} }}",
            RATE_CARD.replace('\n', " ")
        ),
    ) + BUDGETS;
    Gateway::start_with(GatewayOptions {
        config: Some(config),
        ..Default::default()
    })
}

async fn access_key(gw: &Gateway, department: &str) -> Value {
    let admin = gw.token("demo", None, &["admin"]);
    let response = gw
        .post(
            "/admin/keys",
            &admin,
            Some(json!({"tenant": "demo", "department": department})),
        )
        .await;
    assert_eq!(response.status(), 201);
    response.json().await.unwrap()
}

#[tokio::test]
async fn an_enforced_department_budget_refuses_orders_on_both_front_doors() {
    skyport_e2e::assert_guest_image_prepared();
    let gw = governed_gateway();
    let finance = gw.token("demo", Some("finance"), &[]);
    let order = json!({"image": "skyport-tiny", "instance_type": "sp.micro"});

    // Native: 409 problem naming the budget, what is left and what the order would cost.
    let refused = expect_problem(
        gw.post("/v1/instances", &finance, Some(order.clone()))
            .await,
        409,
    )
    .await;
    assert_eq!(
        refused["type"], "https://skyport.dev/problems/budget-exceeded",
        "{refused}"
    );
    let detail = refused["detail"].as_str().unwrap();
    for part in [
        "budget 'finance-cap' of department 'finance'",
        "0.01 USD for",
        "is left",
        "this order would cost",
    ] {
        assert!(detail.contains(part), "{part}: {detail}");
    }

    // EC2: the unmodified AWS CLI shows the error code and message.
    let key = access_key(&gw, "finance").await;
    let (code, images, stderr) = aws_cli(&gw, &key, "local-1", &["ec2", "describe-images"]);
    assert_eq!(code, 0, "{stderr}");
    let images: Value = serde_json::from_str(&images).unwrap();
    let image_id = images["Images"][0]["ImageId"].as_str().unwrap().to_string();
    let (code, _, stderr) = aws_cli(
        &gw,
        &key,
        "local-1",
        &[
            "ec2",
            "run-instances",
            "--image-id",
            &image_id,
            "--instance-type",
            "sp.micro",
            "--count",
            "1",
        ],
    );
    assert_ne!(code, 0);
    assert!(
        stderr.contains("(BudgetExceeded)") && stderr.contains("finance-cap"),
        "{stderr}"
    );

    // Nothing was created for finance.
    let listed = gw.get_json("/v1/instances", &finance).await;
    assert_eq!(listed["instances"], json!([]), "{listed}");

    // Engineering orders freely, under the tenant-wide budget that only alerts.
    let engineering = gw.token("demo", Some("engineering"), &[]);
    let created = gw
        .post_json(
            "/v1/instances?wait=running",
            &engineering,
            Some(order.clone()),
        )
        .await;
    assert_eq!(created["state"], "running", "{created}");

    // Where each budget stands: finance commits nothing; the tenant-wide one counts the
    // engineering instance's hours to the month's end.
    let demo = gw.token("demo", None, &[]);
    let budgets = gw.get_json("/v1/budgets", &demo).await;
    let all = budgets["budgets"].as_array().unwrap();
    assert_eq!(all.len(), 2, "{budgets:#}");
    let by_name = |name: &str| all.iter().find(|b| b["name"] == name).unwrap().clone();
    let cap = by_name("finance-cap");
    assert_eq!(
        (
            &cap["mode"],
            &cap["amount"],
            &cap["committed"],
            &cap["currency"]
        ),
        (
            &json!("enforce"),
            &json!("0.01"),
            &json!("0.00"),
            &json!("USD")
        ),
        "{cap:#}"
    );
    let watch = by_name("demo-watch");
    let committed: f64 = watch["committed"].as_str().unwrap().parse().unwrap();
    assert!(committed > 0.0, "{watch:#}");
    assert_eq!(watch["thresholds"][0]["threshold"], "80%");
    // A department's credential sees its own budgets only.
    let seen = gw.get_json("/v1/budgets", &finance).await;
    assert_eq!(seen["budgets"].as_array().unwrap().len(), 1, "{seen:#}");
    assert_eq!(seen["budgets"][0]["name"], "finance-cap");

    // Operators change budgets at run time, validated like the catalog.
    let admin = gw.token("ops", None, &["admin"]);
    let raised = gw
        .client()
        .put(gw.url("/admin/budgets/finance-cap"))
        .bearer_auth(&admin)
        .json(
            &json!({"tenant": "demo", "department": "finance", "amount": "2.50",
                      "mode": "alert"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(raised.status(), 200);
    let seen = gw.get_json("/v1/budgets", &finance).await;
    assert_eq!(
        (&seen["budgets"][0]["amount"], &seen["budgets"][0]["mode"]),
        (&json!("2.50"), &json!("alert")),
        "{seen:#}"
    );
    let bad = gw
        .client()
        .put(gw.url("/admin/budgets/sales-cap"))
        .bearer_auth(&admin)
        .json(&json!({"tenant": "demo", "department": "sales", "amount": "1.00"}))
        .send()
        .await
        .unwrap();
    let problem = expect_problem(bad, 400).await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("budgets.sales-cap"),
        "{problem}"
    );

    let id = created["id"].as_str().unwrap();
    assert_eq!(
        gw.delete(&format!("/v1/instances/{id}"), &engineering)
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn a_lease_stops_its_instance_at_expiry_and_extends_only_within_the_plan() {
    skyport_e2e::assert_guest_image_prepared();
    let config = default_config()
        .replace(
            "sync_interval_secs = 5",
            "sync_interval_secs = 5\nlease_check_secs = 1",
        )
        .replace("[plans.standard]", "[plans.standard]\nmax_lease_secs = 120");
    assert!(
        config.contains("lease_check_secs = 1"),
        "the [inventory] table changed"
    );
    let gw = Gateway::start_with(GatewayOptions {
        config: Some(config),
        ..Default::default()
    });
    let demo = gw.token("demo", None, &[]);
    let created = gw
        .post_json(
            "/v1/instances?wait=running",
            &demo,
            Some(json!({"image": "skyport-tiny", "instance_type": "sp.micro",
                        "lease": {"duration_secs": 40, "on_expiry": "stop",
                                  "warn_before_secs": 5}})),
        )
        .await;
    assert_eq!(created["state"], "running", "{created}");
    let lease = &created["lease"];
    // (The boot may have taken long enough under load for the warning to have fired.)
    assert_eq!(
        (&lease["on_expiry"], &lease["expired"]),
        (&json!("stop"), &json!(false)),
        "{created:#}"
    );
    let path = format!("/v1/instances/{}", created["id"].as_str().unwrap());

    // Extended by 10 s: within the plan's 120; by 80 more: beyond it.
    let extended = gw
        .post_json(
            &format!("{path}/lease"),
            &demo,
            Some(json!({"extend_secs": 10})),
        )
        .await;
    assert!(
        extended["lease"]["expires_at"].as_str() > lease["expires_at"].as_str(),
        "{extended:#}"
    );
    let refused = expect_problem(
        gw.post(
            &format!("{path}/lease"),
            &demo,
            Some(json!({"extend_secs": 80})),
        )
        .await,
        403,
    )
    .await;
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains("at most 120 s"),
        "{refused}"
    );
    // Another tenant cannot see or extend it.
    let acme = gw.token("acme", None, &[]);
    expect_problem(
        gw.post(
            &format!("{path}/lease"),
            &acme,
            Some(json!({"extend_secs": 1})),
        )
        .await,
        404,
    )
    .await;

    // At expiry (50 s after the create, looked at every second) the VM is stopped.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    let stopped = loop {
        let now = gw.get_json(&path, &demo).await;
        if now["state"] == "stopped" || std::time::Instant::now() > deadline {
            break now;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    };
    assert_eq!(stopped["state"], "stopped", "{stopped:#}\n{}", gw.log());
    assert_eq!(
        (&stopped["lease"]["warned"], &stopped["lease"]["expired"]),
        (&json!(true), &json!(true)),
        "{stopped:#}"
    );
    let log = gw.log();
    assert!(log.contains("lease warning"), "{log}");
    assert!(log.contains("lease expired"), "{log}");
    assert_eq!(gw.delete(&path, &demo).await.status(), 200);
}

#[tokio::test]
async fn an_order_waits_for_approval_then_is_created_or_denied() {
    skyport_e2e::assert_guest_image_prepared();
    let gw = Gateway::start_with(GatewayOptions {
        config: Some(skyport_e2e::config_with_prod_vm_approval()),
        ..Default::default()
    });
    let demo = gw.token("demo", Some("finance"), &[]);
    // Approvers: the `approver` role of an operator tenant, for the queue only.
    let admin = gw.token("ops", None, &["approver"]);
    expect_problem(gw.get("/admin/plugins", &admin).await, 403).await;
    expect_problem(
        gw.get("/admin/orders", &gw.token("acme", None, &["approver"]))
            .await,
        403,
    )
    .await;
    let order = |tag: &str| {
        json!({"offering": "prod-vm", "params": {"instance_type": "sp.micro"},
               "tags": {"purpose": tag}})
    };

    // Two orders of prod-vm wait; nothing is placed or created. The first carries a
    // client token: sent again, it is the same order, not a second one in the queue.
    let mut tokened = order("approve");
    tokened["client_token"] = json!("approve-order-1");
    let first = gw
        .post_json("/v1/instances", &demo, Some(tokened.clone()))
        .await;
    let resent = gw
        .post_json("/v1/instances", &demo, Some(tokened.clone()))
        .await;
    assert_eq!(resent["order"]["id"], first["order"]["id"], "{resent:#}");
    let second = gw
        .post_json("/v1/instances", &demo, Some(order("deny")))
        .await;
    for pending in [&first, &second] {
        assert_eq!(
            pending["order"]["status"], "pending_approval",
            "{pending:#}"
        );
        assert_eq!(pending["order"]["offering"], "prod-vm");
    }
    let (first_id, second_id) = (
        first["order"]["id"].as_str().unwrap().to_string(),
        second["order"]["id"].as_str().unwrap().to_string(),
    );
    let listed = gw.get_json("/v1/instances", &demo).await;
    assert_eq!(listed["instances"], json!([]), "{listed:#}");
    let mine = gw.get_json("/v1/orders", &demo).await;
    assert_eq!(mine["orders"].as_array().unwrap().len(), 2, "{mine:#}");
    // Another tenant sees none of them; a tenant cannot approve.
    let acme = gw.token("acme", None, &[]);
    expect_problem(gw.get(&format!("/v1/orders/{first_id}"), &acme).await, 404).await;
    expect_problem(
        gw.post(&format!("/admin/orders/{first_id}/approve"), &demo, None)
            .await,
        403,
    )
    .await;
    let queue = gw
        .get_json("/admin/orders?status=pending_approval", &admin)
        .await;
    assert_eq!(queue["orders"].as_array().unwrap().len(), 2, "{queue:#}");

    // Denied: kept with its reason, nothing created; a denial needs a reason.
    expect_problem(
        gw.post(
            &format!("/admin/orders/{second_id}/deny"),
            &admin,
            Some(json!({})),
        )
        .await,
        400,
    )
    .await;
    let denied = gw
        .post_json(
            &format!("/admin/orders/{second_id}/deny"),
            &admin,
            Some(json!({"reason": "not this quarter"})),
        )
        .await;
    assert_eq!(denied["order"]["status"], "denied", "{denied:#}");
    let seen = gw.get_json(&format!("/v1/orders/{second_id}"), &demo).await;
    assert_eq!(
        (&seen["status"], &seen["reason"]),
        (&json!("denied"), &json!("not this quarter"))
    );

    // Approved: placed and created as the tenant's order, once.
    let approved = gw
        .post_json(
            &format!("/admin/orders/{first_id}/approve"),
            &admin,
            Some(json!({"reason": "ok"})),
        )
        .await;
    assert_eq!(approved["order"]["status"], "approved", "{approved:#}");
    let instance_id = approved["order"]["instance_id"].as_str().unwrap();
    assert_eq!(approved["instance"]["id"], instance_id);
    // Sent again now, the tokened order answers with the instance its approval made.
    let resent = gw.post_json("/v1/instances", &demo, Some(tokened)).await;
    assert_eq!(resent["id"], instance_id, "{resent:#}");
    assert_eq!(approved["instance"]["tags"], json!({"purpose": "approve"}));
    assert_eq!(approved["instance"]["department"], "finance");
    assert_eq!(approved["instance"]["placement"]["offering"], "prod-vm");
    expect_problem(
        gw.post(&format!("/admin/orders/{first_id}/approve"), &admin, None)
            .await,
        409,
    )
    .await;
    let path = format!("/v1/instances/{instance_id}?wait=running");
    let running = gw.get_json(&path, &demo).await;
    assert_eq!(running["state"], "running", "{running:#}");
    let listed = gw.get_json("/v1/instances", &demo).await;
    assert_eq!(
        listed["instances"].as_array().unwrap().len(),
        1,
        "{listed:#}"
    );
    assert_eq!(
        gw.delete(&format!("/v1/instances/{instance_id}"), &demo)
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn a_budget_that_names_an_unknown_department_is_refused_at_start() {
    let config = default_config()
        + r#"
[[budgets]]
name = "sales-cap"
tenant = "demo"
department = "sales"
amount = "10.00"
mode = "enforce"
"#;
    let Err(log) = Gateway::try_start(GatewayOptions {
        config: Some(config),
        ..Default::default()
    }) else {
        panic!("a gateway started with a budget for an unknown department");
    };
    assert!(
        log.contains("budgets.sales-cap") && log.contains("does not belong"),
        "{log}"
    );
}

#[tokio::test]
async fn an_order_past_a_budgets_approval_threshold_waits_and_ec2_is_refused() {
    skyport_e2e::assert_guest_image_prepared();
    let config = default_config().replace(
        "file = \"libskyport_metering.so\"",
        &format!(
            "file = \"libskyport_metering.so\"\nconfig = {{ {} }}",
            RATE_CARD.replace('\n', " ")
        ),
    ) + r#"
[[budgets]]
name = "engineering-gate"
tenant = "demo"
department = "engineering"
amount = "100000.00"
approval_above = "1%"
"#;
    let gw = Gateway::start_with(GatewayOptions {
        config: Some(config),
        ..Default::default()
    });
    let engineering = gw.token("demo", Some("engineering"), &[]);
    let order = json!({"image": "skyport-tiny", "instance_type": "sp.micro",
                       "tags": {"purpose": "gated"}});

    // The native order waits, with the reason; nothing is created.
    let waiting = gw
        .post_json("/v1/instances", &engineering, Some(order))
        .await;
    let pending = &waiting["order"];
    assert_eq!(pending["status"], "pending_approval", "{waiting}");
    let reason = pending["reason"].as_str().unwrap();
    assert!(
        reason.contains("'engineering-gate'") && reason.contains("approval threshold 1%"),
        "{reason}"
    );
    let listed = gw.get_json("/v1/instances", &engineering).await;
    assert_eq!(listed["instances"], json!([]), "{listed}");

    // EC2 cannot wait: refused with the reason, which the AWS CLI shows.
    let key = access_key(&gw, "engineering").await;
    let (code, images, stderr) = aws_cli(&gw, &key, "local-1", &["ec2", "describe-images"]);
    assert_eq!(code, 0, "{stderr}");
    let images: Value = serde_json::from_str(&images).unwrap();
    let image_id = images["Images"][0]["ImageId"].as_str().unwrap().to_string();
    let (code, _, stderr) = aws_cli(
        &gw,
        &key,
        "local-1",
        &[
            "ec2",
            "run-instances",
            "--image-id",
            &image_id,
            "--instance-type",
            "sp.micro",
        ],
    );
    assert_ne!(code, 0);
    assert!(
        stderr.contains("engineering-gate") && stderr.contains("POST /v1/instances"),
        "{stderr}"
    );

    // Approved, it is created as ordered (the gate is not asked twice).
    let admin = gw.token("ops", None, &["admin"]);
    let approved = gw
        .post_json(
            &format!("/admin/orders/{}/approve", pending["id"].as_str().unwrap()),
            &admin,
            Some(json!({"reason": "capacity planned"})),
        )
        .await;
    assert_eq!(approved["order"]["status"], "approved", "{approved}");
    let instance = approved["instance"]["id"].as_str().unwrap();
    assert_eq!(approved["instance"]["tags"]["purpose"], "gated");
    assert_eq!(
        gw.delete(&format!("/v1/instances/{instance}"), &engineering)
            .await
            .status(),
        200
    );
}
