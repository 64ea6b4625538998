//! Administrator rules and multi-resource deployments, end to end with real QEMU, moto and
//! the Eucalyptus shim: a rule overrides cost, a DR deployment lands its two instances
//! apart (or fails clearly when it cannot), a failure part-way rolls back what was
//! created, and quotas count the whole deployment.
#![forbid(unsafe_code)]

use serde_json::{json, Value};
use skyport_e2e::ec2::{EucaShim, Moto};
use skyport_e2e::{config_with_acme_plan, expect_problem, Gateway, GatewayOptions};

const RULES: &str = r#"
[[placement.rules]]
name = "prod-off-this-host"
description = "Production does not run on the gateway's own host"
when = 'params.tier == "prod"'
exclude = { providers = ["local-vmm"] }

[[placement.rules]]
name = "finance-on-aws"
description = "Finance runs in AWS on a bigger type, whatever it costs"
offerings = ["dev-vm"]
when = 'params.department == "finance"'
choose = { provider = "aws-us-east-1", instance_type = "sp.small" }

[[placement.rules]]
name = "reads-a-typo"
when = 'params.colour == "red"'
exclude = { regions = ["euca-1"] }
"#;

#[tokio::test]
async fn rules_exclude_and_choose_over_cost() {
    let moto = Moto::start();
    let gw = Gateway::start_with(GatewayOptions {
        config: None,
        extra: format!("{}{RULES}", moto.provider_config("aws-us-east-1")),
    });
    let explain = |token: String, body: Value| {
        let gw = &gw;
        async move {
            let response = gw.post("/v1/placement/explain", &token, Some(body)).await;
            assert_eq!(response.status(), 200);
            response.json::<Value>().await.unwrap()
        }
    };
    let lost = |decision: &Value, provider: &str| {
        decision["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["provider"] == provider)
            .map(|c| c["lost"].clone())
            .unwrap()
    };

    // With no rule in play, this host is the cheapest (the embedded rate card).
    let engineering = gw.token("demo", Some("engineering"), &[]);
    let dev = explain(engineering.clone(), json!({"offering": "dev-vm"})).await;
    assert_eq!(dev["provider"], "local-vmm", "{dev}");

    // prod-vm has tier "prod": the exclusion moves it off this host.
    let prod = explain(engineering.clone(), json!({"offering": "prod-vm"})).await;
    assert_eq!(prod["provider"], "aws-us-east-1", "{prod}");
    assert_eq!(
        lost(&prod, "local-vmm"),
        "excluded by rule 'prod-off-this-host'"
    );
    assert_eq!(prod["rules"][0]["rule"], "prod-off-this-host");
    assert_eq!(prod["rules"][0]["effect"], "exclude");

    // finance's dev-vm: the choice beats the cheaper host and sets the instance type.
    let finance = gw.token("demo", Some("finance"), &[]);
    let chosen = explain(finance.clone(), json!({"offering": "dev-vm"})).await;
    assert_eq!(chosen["provider"], "aws-us-east-1", "{chosen}");
    assert_eq!(
        lost(&chosen, "local-vmm"),
        "rule 'finance-on-aws' chose provider 'aws-us-east-1'"
    );
    let itype = &chosen["params"]["instance_type"];
    assert_eq!(itype["value"], "sp.small");
    assert_eq!(itype["set_by"], "rule");
    assert_eq!(itype["source"], "rule finance-on-aws");
    assert_eq!(itype["overrode"][0]["value"], "sp.micro");

    // The create lands where explain said, with the rule's type, and says which rule.
    let created = gw
        .post(
            "/v1/instances",
            &finance,
            Some(json!({"offering": "dev-vm"})),
        )
        .await;
    assert_eq!(created.status(), 202);
    let created: Value = created.json().await.unwrap();
    assert_eq!(
        (
            created["provider"].as_str(),
            created["instance_type"].as_str()
        ),
        (Some("aws-us-east-1"), Some("sp.small"))
    );
    assert_eq!(created["placement"]["rules"][0]["rule"], "finance-on-aws");
    let id = created["id"].as_str().unwrap();
    assert!(gw
        .delete(&format!("/v1/instances/{id}"), &finance)
        .await
        .status()
        .is_success());

    // reads-a-typo would exclude euca-1, which no provider serves here: it cannot change
    // the decision, so it is not evaluated (the next test makes it run).
    let metrics = gw.metrics_text().await;
    assert!(
        !metrics.contains("skyport_placement_rule_errors_total{rule=\"reads-a-typo\"}"),
        "a rule naming only absent candidates is not evaluated"
    );
}

#[tokio::test]
async fn a_rule_that_fails_is_recorded_counted_and_does_not_fire() {
    let moto = Moto::start();
    let gw = Gateway::start_with(GatewayOptions {
        config: None,
        extra: format!(
            "{}{}",
            moto.provider_config("aws-us-east-1"),
            r#"
[[placement.rules]]
name = "reads-a-typo"
when = 'params.colour == "red"'
exclude = { regions = ["local-1"] }
"#
        ),
    });
    let demo = gw.token("demo", None, &[]);
    let r = gw
        .post(
            "/v1/placement/explain",
            &demo,
            Some(json!({"offering": "dev-vm"})),
        )
        .await;
    assert_eq!(r.status(), 200);
    let decision: Value = r.json().await.unwrap();
    assert_eq!(decision["provider"], "local-vmm", "{decision}");
    assert_eq!(decision["rules"][0]["rule"], "reads-a-typo");
    assert_eq!(decision["rules"][0]["effect"], "error");
    assert!(decision["rules"][0]["error"]
        .as_str()
        .unwrap()
        .contains("colour"));
    let metrics = gw.metrics_text().await;
    assert!(
        metrics.contains("skyport_placement_rule_errors_total{rule=\"reads-a-typo\"} 1"),
        "{metrics}"
    );
    assert!(gw.log().contains("placement rule failed"));
}

/// Catalog additions for the deployment tests: a DR offering whose standby a rule sends to
/// AWS on a type that provider does not offer (so its create fails part-way), and a plan
/// for acme that allows only this host's region.
const DR_CATALOG: &str = r#"
[blueprints.pair-broken]
resources = [{ name = "primary", type = "compute" }, { name = "standby", type = "compute", params = { role = "standby", instance_type = "sp.large" } }]
separate = { resources = ["primary", "standby"], by = "region" }

[offerings.pair-broken]
blueprint = "pair-broken"
defaults = { image = "skyport-tiny", instance_type = "sp.micro" }

[plans.one-region]
offerings = ["web-dr"]
regions = ["local-1"]

[[placement.rules]]
name = "standby-on-aws"
when = 'has(params.role) && params.role == "standby"'
choose = { provider = "aws-us-east-1" }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dr_deployment_lands_apart_all_or_none_within_quota() {
    skyport_e2e::assert_guest_image_prepared();
    let moto = Moto::start();
    let euca = EucaShim::start();
    // AWS here offers no sp.large: the broken pair's standby fails at create.
    let aws = moto
        .provider_config("aws-us-east-1")
        .replacen(r#", "sp.large" = "t3.large""#, "", 1);
    assert!(!aws.contains("sp.large"));
    // The plan's quota: 3 live instances per tenant.
    let config = config_with_acme_plan("one-region").replacen(
        "offerings = [\"dev-vm\", \"prod-vm\", \"web-dr\"]",
        "offerings = [\"dev-vm\", \"prod-vm\", \"web-dr\", \"pair-broken\"]\nmax_instances = 3",
        1,
    );
    let gw = Gateway::start_with(GatewayOptions {
        config: Some(config),
        extra: format!("{aws}{}{DR_CATALOG}", euca.provider_config("eucalyptus")),
    });
    let demo = gw.token("demo", None, &[]);

    // Explain equals create, for both resources.
    let order = json!({"offering": "web-dr", "name": "shop"});
    let explained = gw
        .post("/v1/placement/explain", &demo, Some(order.clone()))
        .await;
    assert_eq!(explained.status(), 200);
    let explained: Value = explained.json().await.unwrap();
    let resources = explained["resources"].as_array().unwrap();
    assert_eq!(resources.len(), 2, "{explained}");
    let created = gw.post("/v1/deployments", &demo, Some(order)).await;
    assert_eq!(created.status(), 202);
    let deployment: Value = created.json().await.unwrap();
    let placed = deployment["resources"].as_array().unwrap();
    let region = |r: &Value| r["region"].as_str().unwrap().to_string();
    assert_eq!(
        placed.iter().map(region).collect::<Vec<_>>(),
        resources.iter().map(region).collect::<Vec<_>>()
    );
    // Never both in one region: the primary takes this host (cheapest), the standby
    // loses this host to the separation and goes to the next.
    assert_eq!(region(&placed[0]), "local-1");
    assert_ne!(region(&placed[1]), "local-1");
    let standby_lost = resources[1]["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["region"] == "local-1")
        .unwrap()["lost"]
        .clone();
    assert_eq!(standby_lost, "'primary' is in region 'local-1'");
    assert_eq!(placed[0]["placement"]["resource"], "primary");
    let id = deployment["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("d-"), "{id}");
    let got = gw.get_json(&format!("/v1/deployments/{id}"), &demo).await;
    assert_eq!(got["resources"].as_array().unwrap().len(), 2);
    let instance = |i: usize| {
        got["resources"][i]["instance"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let listed = gw.get_json("/v1/instances", &demo).await.to_string();
    assert!(listed.contains(&instance(0)) && listed.contains(&instance(1)));

    // Another tenant sees nothing of it; and with only one region, web-dr cannot be
    // placed: a clear error, nothing created.
    let acme = gw.token("acme", None, &[]);
    expect_problem(gw.get(&format!("/v1/deployments/{id}"), &acme).await, 404).await;
    let impossible = expect_problem(
        gw.post(
            "/v1/deployments",
            &acme,
            Some(json!({"offering": "web-dr"})),
        )
        .await,
        409,
    )
    .await;
    let detail = impossible["detail"].as_str().unwrap();
    assert!(
        detail.contains("primary and standby in different regions")
            && detail.contains("'standby' can use local-vmm/local-1"),
        "{detail}"
    );
    assert_eq!(
        gw.get_json("/v1/instances", &acme).await["instances"],
        json!([])
    );

    // Quota: 2 instances live, max 3; another pair needs 2: refused before any create.
    let refused = expect_problem(
        gw.post(
            "/v1/deployments",
            &demo,
            Some(json!({"offering": "web-dr"})),
        )
        .await,
        409,
    )
    .await;
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains("max_instances is 3, 2 in use, this request needs 2 more"),
        "{refused}"
    );

    // Free the quota, then the broken pair: the primary is created on this host, the
    // standby fails on AWS, and the primary is terminated again.
    for i in 0..2 {
        let r = gw
            .delete(&format!("/v1/instances/{}", instance(i)), &demo)
            .await;
        assert!(r.status().is_success());
    }
    let failed = gw
        .post(
            "/v1/deployments",
            &demo,
            Some(json!({"offering": "pair-broken"})),
        )
        .await;
    assert!(failed.status().is_client_error(), "{}", failed.status());
    let problem: Value = failed.json().await.unwrap();
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("resource 'standby' could not be created on aws-us-east-1")
            && detail.contains("rolled back: terminated i-"),
        "{detail}"
    );
    let instances = gw.get_json("/v1/instances", &demo).await;
    let live: Vec<&Value> = instances["instances"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["state"] != "terminated")
        .collect();
    assert!(live.is_empty(), "{instances}");
    let deployments = gw.get_json("/v1/deployments", &demo).await;
    assert_eq!(deployments["deployments"].as_array().unwrap().len(), 1);
}
